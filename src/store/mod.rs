//! Where tend keeps what it must not lose, behind traits: run records (held by a
//! lease while a run lives), journals, the audit log, and this controller's host
//! locks. The application layer (`app`) works through [`Stores`] and never knows
//! where they live: the state directory ([`fs`]) is the embedded default; a store
//! shared by several schedulers implements the same traits.
//!
//! What lives on a managed host (its backups, its host-wide lock) stays there and is
//! reached through the `Target`, not through a store.

pub mod fs;
mod run_lease;

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::journal::{Contents, JournalWrite};
use crate::lock::{Holder, Take};
use crate::state::{RunMeta, StateDir};

pub use run_lease::RunLease;

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
            state: state.clone(),
        }
    }

    /// Where this machine keeps the backups of `host` in `run_id`.
    pub fn local_backup_dir(&self, run_id: &str, host: &str) -> Result<PathBuf> {
        Ok(self.state.host_dir(run_id, host)?.join("backup"))
    }
}
