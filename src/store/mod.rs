//! Where tend keeps what it must not lose, behind traits: run records (held by a
//! lease while a run lives), journals, the audit log, and this controller's host
//! locks. The application layer (`app`) works through [`Stores`] and never knows
//! where they live: the state directory ([`fs`]) is the embedded default; a store
//! shared by several schedulers implements the same traits.
//!
//! What lives on a managed host (its backups, its host-wide lock) stays there and is
//! reached through the `Target`, not through a store.

pub mod fs;
pub mod pg;
mod run_lease;
mod settings;

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::journal::{Contents, JournalWrite};
use crate::lock::{Holder, Take};
use crate::state::{RunMeta, StateDir};

pub use run_lease::RunLease;
pub use settings::ClusterSettings;

/// Run records: one per run, written when it starts, refreshed while it runs (its
/// lease's heartbeat) and once more when it ends.
pub trait RunStore: Send + Sync {
    /// A new run id, time-ordered, that this store hands to no other run.
    fn reserve_run_id(&self) -> Result<String>;
    /// Give back an id reserved for a run that never started.
    fn discard(&self, run_id: &str);
    /// Write `meta` (create or replace).
    fn write(&self, meta: &RunMeta) -> Result<()>;
    /// The record of `run_id`, or a stand-in for a damaged one that left journals to
    /// roll back from.
    fn read(&self, run_id: &str) -> Result<RunMeta>;
    /// Every run, oldest first.
    fn list(&self) -> Result<Vec<RunMeta>>;
}

/// Journals: one per host of a real run, written ahead of every change.
pub trait JournalStore: Send + Sync {
    /// Open the journal of `host` in `run_id` for appending, creating it if needed.
    fn open(&self, run_id: &str, host: &str) -> Result<Arc<dyn JournalWrite>>;
    fn read(&self, run_id: &str, host: &str) -> Result<Contents>;
    /// Whether `host` has a journal in `run_id`.
    fn exists(&self, run_id: &str, host: &str) -> bool;
    /// Where the journal is, for messages.
    fn describe(&self, run_id: &str, host: &str) -> String;
}

/// The hash-chained audit log: records are appended (durably, fail-closed) and read
/// back, never changed.
pub trait AuditStore: Send + Sync {
    /// Append `records` as one durable write; returns the last sequence number.
    fn append_many(&self, records: Vec<serde_json::Value>) -> Result<u64>;
    fn append(&self, record: serde_json::Value) -> Result<u64> {
        self.append_many(vec![record])
    }
    /// The records of `run_id` (all with `None`), checked against their chain.
    fn read(&self, run_id: Option<&str>) -> Result<Vec<serde_json::Value>>;
    /// Check the whole chain (and that it still holds `anchor`): the anchor of the
    /// log as it is now, or `Error::Tampered` naming the first bad line or row.
    fn verify(&self, anchor: Option<&crate::audit::Anchor>) -> Result<crate::audit::Anchor>;
    /// Write every record, oldest first, as the embedded log's JSON Lines; returns
    /// how many.
    fn export(&self, out: &mut dyn std::io::Write) -> Result<u64>;
    /// Where the log is, for messages.
    fn describe(&self) -> String;
}

/// This controller's locks of host names: a run works on a host only while it holds
/// the host's lock. A guard releases it when dropped.
pub trait HostLocks: Send + Sync {
    fn lock(&self, host: &str, me: &Holder, take: &Take) -> Result<Box<dyn Send + Sync>>;
    /// Who holds the lock of `host`: `Some((holder, alive))`; a dead holder's record
    /// is cleared when `clear` is set.
    fn holder(&self, host: &str, clear: bool) -> Result<Option<(Holder, bool)>>;
}

/// The stores a run, a rollback or an unlock works with.
#[derive(Clone)]
pub struct Stores {
    pub runs: Arc<dyn RunStore>,
    pub journals: Arc<dyn JournalStore>,
    pub audit: Arc<dyn AuditStore>,
    pub locks: Arc<dyn HostLocks>,
    /// Cluster mode (`[cluster]`): what the daemons sharing the store agree on.
    pub cluster: Option<Arc<dyn Cluster>>,
    /// This machine's state directory: the trust file and the backups of changes made
    /// on this machine live there, whatever the other stores are.
    pub state: StateDir,
}

impl Stores {
    /// Everything in the state directory (the embedded default).
    pub fn embedded(state: &StateDir) -> Stores {
        let fs = Arc::new(fs::FsStore::new(state.clone()));
        Stores {
            runs: fs.clone(),
            journals: fs.clone(),
            audit: Arc::new(crate::audit::AuditLog::new(state.root())),
            locks: fs,
            cluster: None,
            state: state.clone(),
        }
    }

    /// Where this machine keeps the backups of `host` in `run_id`.
    pub fn local_backup_dir(&self, run_id: &str, host: &str) -> Result<PathBuf> {
        Ok(self.state.host_dir(run_id, host)?.join("backup"))
    }
}

/// A node of a cluster, as it publishes itself at each heartbeat.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// `[cluster] node` (default: this machine's host name): stable across restarts,
    /// so a node that comes back finds the runs it left.
    pub id: String,
    /// Where the node runs (host name, or its `--metrics` address), for people.
    pub address: String,
    /// tend's version.
    pub version: String,
    /// SHA-256 of the node's `[[schedule]]` set (canonical JSON of the entries).
    pub schedule_hash: String,
}

/// A node as `tend cluster status` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub info: NodeInfo,
    pub started: chrono::DateTime<chrono::Utc>,
    pub heartbeat: chrono::DateTime<chrono::Utc>,
    /// Its heartbeat is younger than the lease.
    pub alive: bool,
    /// It claims no new fires (`tend cluster drain`).
    pub draining: bool,
    /// Runs it holds now (state running, its lease).
    pub runs_held: u64,
    /// A fingerprint of its `[cluster] key` (see [`Cluster::key_id`]).
    pub key_id: String,
}

/// A run whose lease ran out while it was still recorded as running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredRun {
    pub run_id: String,
    /// The node that held it.
    pub node: String,
}

/// What several daemons sharing one store agree on (cluster mode); the embedded
/// store has no such thing. Every method is one short transaction; an `Err` means
/// the database could not be reached or refused (the caller treats it as "down").
pub trait Cluster: Send + Sync {
    /// This node's id.
    fn node_id(&self) -> &str;
    /// A fingerprint of this node's `[cluster] key`, which gives nothing of the key
    /// away; the heartbeat publishes it.
    fn key_id(&self) -> String;
    /// Bring the database's schema up to date (a node that started while the
    /// database was unreachable does it once it answers).
    fn prepare(&self) -> Result<()>;
    /// How long a heartbeat holds this node's runs and host locks.
    fn lease(&self) -> std::time::Duration;
    /// Register or refresh this node, and renew until now + lease the runs and host
    /// locks it holds. Returns whether the node is draining.
    fn heartbeat(&self, me: &NodeInfo) -> Result<bool>;
    /// Claim the fire of `schedule` due at `at`: true for the one node whose claim
    /// wins, false for every other (and for any later claim of the same fire).
    fn claim_fire(
        &self,
        schedule: &str,
        at: chrono::DateTime<chrono::Utc>,
        reason: &str,
    ) -> Result<bool>;
    /// Claim many fires in one round trip: for each `(schedule, at, reason)`, whether
    /// this node won it. A cluster of many entries due in the same second claims
    /// them all at once.
    fn claim_fires(
        &self,
        fires: &[(String, chrono::DateTime<chrono::Utc>, String)],
    ) -> Result<Vec<bool>> {
        fires
            .iter()
            .map(|(s, at, r)| self.claim_fire(s, *at, r))
            .collect()
    }
    /// The entries paused cluster-wide (`tend schedule pause`).
    fn paused(&self) -> Result<Vec<String>>;
    /// The run a claimed fire started, once known.
    fn fire_ran(
        &self,
        schedule: &str,
        at: chrono::DateTime<chrono::Utc>,
        run_id: &str,
    ) -> Result<()>;
    /// The latest claimed fire of `schedule`, by any node (for `catch_up`).
    fn last_claimed(&self, schedule: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>>;
    fn nodes(&self) -> Result<Vec<NodeStatus>>;
    /// Start or stop draining `node`; false when there is no such node.
    fn set_draining(&self, node: &str, on: bool) -> Result<bool>;
    /// Runs still recorded as running whose lease has expired.
    fn expired_runs(&self) -> Result<Vec<ExpiredRun>>;
    /// Take the run over: it becomes this node's (lease renewed) only if its lease is
    /// still expired; true when this node won it. The lease is then this process's,
    /// renewed with its others until the run's record says it ended.
    fn take_over(&self, run_id: &str) -> Result<bool>;
    /// The scheduler's record of an entry (JSON of `daemon::record::Record`).
    fn schedule_state(&self, name: &str) -> Result<Option<serde_json::Value>>;
    /// Change the record of `name` with its row locked, so that changes made by
    /// several nodes at once add up instead of overwriting each other. `change` gets
    /// the stored record (None before the first) and returns the new one; it is
    /// called once. Returns the record's new version.
    fn update_schedule_state(
        &self,
        name: &str,
        change: &mut dyn FnMut(Option<serde_json::Value>) -> serde_json::Value,
    ) -> Result<i64>;
    /// The records changed since `since` (every record with None), and the
    /// database's clock at the read, for the next call.
    fn schedule_states(
        &self,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(Vec<ScheduleState>, chrono::DateTime<chrono::Utc>)>;
}

/// One entry's shared record, as [`Cluster::schedule_states`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleState {
    pub name: String,
    /// Grows with every change: a copy with a higher version is newer.
    pub version: i64,
    pub state: serde_json::Value,
}
