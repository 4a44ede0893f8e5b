//! Cluster mode (`[cluster]` in tend.toml): this daemon is one node of several that
//! share one PostgreSQL store. This module is the node's own loop:
//!
//! - **heartbeat** every lease/3: the node row, and the leases of the runs and host
//!   locks it holds, renewed in one transaction;
//! - **self-fencing**: when no heartbeat has succeeded for two thirds of the lease,
//!   the node cancels its runs (each stops before its next step: every journal append
//!   is fenced in the database anyway) well before another node may take them over;
//! - **takeover**: a run whose lease expired is claimed by one node, which rolls it
//!   back from the journal in the database with a newer fencing token. A run on the
//!   dead node's own machine (`local`) is left to that node, which rolls it back when
//!   it returns;
//! - **schedule sets**: each node publishes a hash of its `[[schedule]]` entries; a
//!   node whose set differs from another live node's says so in its log.
//!
//! Fires are claimed by the scheduler ([`super::scheduler`]) through [`Node::claim`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::fire::Ctx;
use crate::app::{self, RollbackRequest};
use crate::schedule::Entry;
use crate::store::{Cluster, NodeInfo};

/// Told whether the database answers, when that changes.
type DbHook = Box<dyn Fn(bool) + Send>;

/// What became of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This node runs the fire.
    Won,
    /// Another node has it (or this one is draining).
    Lost,
    /// The database could not be asked: the fire waits for it (`catch_up`).
    Down,
}

/// One node's view of the cluster, shared by the scheduler and the node's thread.
pub struct Node {
    cluster: Arc<dyn Cluster>,
    info: Mutex<NodeInfo>,
    /// The last heartbeat that reached the database.
    last_ok: Mutex<Instant>,
    db_up: AtomicBool,
    draining: AtomicBool,
    /// Self-fenced since the database was lost (logged once).
    fencing: AtomicBool,
    /// Runs already reported as not to be taken over (local to a dead node).
    reported: Mutex<HashSet<String>>,
    /// The entries paused cluster-wide, read at each heartbeat.
    paused: Mutex<HashSet<String>>,
    /// The other nodes whose schedule set differs, as last logged.
    mismatched: Mutex<Vec<String>>,
    /// The schema is still to be brought up to date (the database could not be
    /// reached at start): nothing else is done with the database before.
    unprepared: AtomicBool,
    /// The other live nodes whose key differs, as last logged.
    other_keys: Mutex<Vec<String>>,
    /// The database's clock when the schedule records were last read.
    records_read: Mutex<Option<DateTime<Utc>>>,
    /// Called with the database's state after each heartbeat (the metric).
    on_db: Mutex<Option<DbHook>>,
}

/// The hash a node publishes for its `[[schedule]]` set: entries as parsed (names,
/// cron lines, recipes, hosts, parameters, rules), so two files that differ only in
/// comments, layout, order or where the file is agree.
pub fn schedule_hash(entries: &[Entry]) -> String {
    let mut sorted: Vec<Entry> = entries
        .iter()
        .map(|e| Entry {
            // `file:line` of the entry, for messages: not what it schedules.
            source: String::new(),
            ..e.clone()
        })
        .collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    hex::encode(Sha256::digest(format!("{sorted:?}").as_bytes()))
}

impl Node {
    pub fn new(cluster: Arc<dyn Cluster>, address: String, entries: &[Entry]) -> Node {
        let info = NodeInfo {
            id: cluster.node_id().to_string(),
            address,
            version: env!("CARGO_PKG_VERSION").to_string(),
            schedule_hash: schedule_hash(entries),
        };
        Node {
            cluster,
            info: Mutex::new(info),
            // Until the first heartbeat, the node has no lease to lose.
            last_ok: Mutex::new(Instant::now()),
            db_up: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            fencing: AtomicBool::new(false),
            reported: Mutex::default(),
            paused: Mutex::default(),
            mismatched: Mutex::default(),
            records_read: Mutex::default(),
            other_keys: Mutex::default(),
            unprepared: AtomicBool::new(false),
            on_db: Mutex::new(None),
        }
    }

    /// A node whose database could not be reached at start: its first heartbeat
    /// that gets through migrates the schema first.
    pub fn unprepared(self, yes: bool) -> Node {
        self.unprepared.store(yes, Ordering::SeqCst);
        self
    }

    pub fn id(&self) -> String {
        self.info.lock().expect("node info").id.clone()
    }

    pub fn on_db_change(&self, f: impl Fn(bool) + Send + 'static) {
        *self.on_db.lock().expect("node hook") = Some(Box::new(f));
    }

    /// A reload changed the schedule set: published at the next heartbeat.
    pub fn set_entries(&self, entries: &[Entry]) {
        self.info.lock().expect("node info").schedule_hash = schedule_hash(entries);
    }

    fn beat_period(&self) -> Duration {
        self.cluster.lease() / 3
    }

    /// Whether this node may start work: the database answered within the lease's
    /// safe part (two thirds of it). Past that, another node may soon take over.
    pub fn fenced(&self) -> bool {
        let since = self.last_ok.lock().expect("node clock").elapsed();
        since >= self.cluster.lease() * 2 / 3 || !self.db_up.load(Ordering::SeqCst)
    }

    /// Claim fires in one round trip: what became of each.
    pub fn claim_many(&self, fires: &[(String, DateTime<Utc>, String)]) -> Vec<Claim> {
        if fires.is_empty() {
            return Vec::new();
        }
        if self.draining.load(Ordering::SeqCst) {
            tracing::info!(
                fires = fires.len(),
                "draining: fires are left to other nodes"
            );
            return vec![Claim::Lost; fires.len()];
        }
        if self.fenced() {
            tracing::warn!(
                fires = fires.len(),
                "the cluster database is unreachable: this node claims no fire"
            );
            return vec![Claim::Down; fires.len()];
        }
        match self.cluster.claim_fires(fires) {
            Ok(won) => won
                .into_iter()
                .map(|w| if w { Claim::Won } else { Claim::Lost })
                .collect(),
            Err(e) => {
                tracing::warn!(fires = fires.len(), "cannot claim fires: {e}");
                vec![Claim::Down; fires.len()]
            }
        }
    }

    /// Whether `name` is paused cluster-wide (`tend schedule pause` on any node), as
    /// the last heartbeat read it.
    pub fn paused(&self, name: &str) -> bool {
        self.paused.lock().expect("paused").contains(name)
    }

    /// The latest fire of `name` claimed by any node (the base for `catch_up`).
    pub fn last_claimed(&self, name: &str) -> Option<DateTime<Utc>> {
        self.cluster.last_claimed(name).unwrap_or_else(|e| {
            tracing::warn!(schedule = name, "cannot read the last claimed fire: {e}");
            None
        })
    }

    /// The run a claimed fire started.
    pub fn ran(&self, name: &str, at: DateTime<Utc>, run_id: &str) {
        if let Err(e) = self.cluster.fire_ran(name, at, run_id) {
            tracing::warn!(schedule = name, run_id, "cannot record the fire's run: {e}");
        }
    }

    /// One heartbeat; then the takeover of expired runs and the schedule-set check.
    /// `cancel_all` cancels this node's running runs (self-fencing).
    pub fn tick(&self, ctx: &Ctx, cancel_all: &dyn Fn(&str)) {
        let info = self.info.lock().expect("node info").clone();
        let prepared = if self.unprepared.load(Ordering::SeqCst) {
            self.cluster.prepare().map(|()| {
                self.unprepared.store(false, Ordering::SeqCst);
                tracing::info!(node = %info.id, "cluster database reachable: schema up to date");
            })
        } else {
            Ok(())
        };
        match prepared.and_then(|()| self.cluster.heartbeat(&info)) {
            Ok(draining) => {
                *self.last_ok.lock().expect("node clock") = Instant::now();
                self.fencing.store(false, Ordering::SeqCst);
                if !self.db_up.swap(true, Ordering::SeqCst) {
                    tracing::info!(node = %info.id, "cluster database reachable: heartbeat renewed");
                    self.tell_db(true);
                }
                if self.draining.swap(draining, Ordering::SeqCst) != draining {
                    tracing::info!(node = %info.id, draining, "drain changed");
                }
            }
            Err(e) => {
                let was = self.db_up.swap(false, Ordering::SeqCst);
                if !matches!(e, crate::error::Error::Unavailable(_)) {
                    // Not an outage that passes (a newer schema, a refused login):
                    // said at every heartbeat until someone acts.
                    tracing::error!(node = %info.id, "cannot use the cluster database: {e}");
                }
                if was {
                    tracing::error!(node = %info.id, "cluster database unreachable: {e}");
                    self.tell_db(false);
                }
                if self.fenced() {
                    if !self.fencing.swap(true, Ordering::SeqCst) {
                        tracing::error!(
                            node = %info.id,
                            "this node lost the cluster database: it claims nothing and \
                             cancels its runs before its lease expires"
                        );
                    }
                    cancel_all(
                        "this node lost the cluster database: it stops before its lease expires",
                    );
                }
                return;
            }
        }
        match self.cluster.paused() {
            Ok(p) => *self.paused.lock().expect("paused") = p.into_iter().collect(),
            Err(e) => tracing::warn!("cannot read the paused entries: {e}"),
        }
        self.refresh_records(ctx);
        self.check_schedule_sets(&info);
        self.take_over_expired(ctx);
    }

    /// This node's copy of the schedule records (its status page, metrics, alerts):
    /// what other nodes changed since the last heartbeat.
    fn refresh_records(&self, ctx: &Ctx) {
        let mut read = self.records_read.lock().expect("records read");
        // `updated_at` is when the change's transaction began, a little before it
        // could be seen: read back a margin rather than miss one.
        let since = read.map(|t| t - chrono::TimeDelta::seconds(5));
        match self.cluster.schedule_states(since) {
            Ok((states, now)) => {
                ctx.records.refresh(states);
                *read = Some(now);
            }
            Err(e) => tracing::warn!("cannot read the schedule records: {e}"),
        }
    }

    fn tell_db(&self, up: bool) {
        if let Some(f) = &*self.on_db.lock().expect("node hook") {
            f(up);
        }
    }

    fn check_schedule_sets(&self, me: &NodeInfo) {
        let Ok(nodes) = self.cluster.nodes() else {
            return;
        };
        self.check_keys(me, &nodes);
        let mut differ: Vec<String> = nodes
            .iter()
            .filter(|n| n.alive && n.info.id != me.id && n.info.schedule_hash != me.schedule_hash)
            .map(|n| n.info.id.clone())
            .collect();
        differ.sort();
        let mut last = self.mismatched.lock().expect("mismatch");
        if *last != differ {
            if !differ.is_empty() {
                tracing::error!(
                    node = %me.id,
                    others = %differ.join(", "),
                    "the [[schedule]] set of this node differs from that of other live nodes: \
                     each claims fires of its own set; make the tend.toml files agree \
                     (`tend cluster status` shows the hashes)"
                );
            }
            *last = differ;
        }
    }

    /// Nodes signing with another key cannot read this node's journals, nor it
    /// theirs: neither could take the other's runs over. Said once per change.
    fn check_keys(&self, me: &NodeInfo, nodes: &[crate::store::NodeStatus]) {
        let mine = self.cluster.key_id();
        let mut differ: Vec<String> = nodes
            .iter()
            .filter(|n| n.alive && n.info.id != me.id && n.key_id != mine)
            .map(|n| n.info.id.clone())
            .collect();
        differ.sort();
        let mut last = self.other_keys.lock().expect("other keys");
        if *last != differ && !differ.is_empty() {
            tracing::error!(
                node = %me.id,
                others = %differ.join(", "),
                "these live nodes sign with another [cluster] key: none can read the \
                 others' journals, so none can take the others' runs over; copy the same \
                 key file to every node (`tend cluster status` shows each key's id)"
            );
        }
        *last = differ;
    }

    /// Roll back every run whose lease expired (its node died or lost the database),
    /// after winning it in the database: one node does each.
    fn take_over_expired(&self, ctx: &Ctx) {
        let expired = match self.cluster.expired_runs() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cannot list expired runs: {e}");
                return;
            }
        };
        let me = self.id();
        for run in expired {
            let meta = match ctx.stores.runs.read(&run.run_id) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(run_id = %run.run_id, "expired run unreadable: {e}");
                    continue;
                }
            };
            let local = meta
                .targets
                .iter()
                .any(|t| matches!(t.transport, crate::reach::Transport::Local));
            if local && run.node != me {
                if self
                    .reported
                    .lock()
                    .expect("reported")
                    .insert(run.run_id.clone())
                {
                    tracing::warn!(
                        run_id = %run.run_id,
                        node = %run.node,
                        "expired run changed node {}'s own machine: it cannot be taken over \
                         from here; that node rolls it back when it returns",
                        run.node
                    );
                    record(
                        ctx,
                        json!({"event": "cluster_takeover_refused", "run_id": run.run_id,
                               "node": run.node, "reason": "local_target"}),
                    );
                }
                continue;
            }
            match self.cluster.take_over(&run.run_id) {
                Ok(true) => self.roll_back(ctx, &run.run_id, &run.node),
                Ok(false) => {}
                Err(e) => tracing::warn!(run_id = %run.run_id, "cannot take the run over: {e}"),
            }
        }
    }

    fn roll_back(&self, ctx: &Ctx, run_id: &str, from: &str) {
        tracing::warn!(
            run_id,
            node = from,
            "run's lease expired: taking it over to roll it back"
        );
        // Still `running`, under this process's lease, while it is rolled back: if this
        // node dies too, the lease runs out again and another node goes on.
        let mut meta = match ctx.stores.runs.read(run_id) {
            Ok(meta) => meta,
            Err(e) => {
                tracing::error!(run_id, "cannot read the run: {e}");
                return;
            }
        };
        record(
            ctx,
            json!({"event": "cluster_takeover", "run_id": run_id, "from_node": from,
                   "node": self.id(), "user": ctx.actor.user}),
        );
        let req = RollbackRequest {
            run_id: run_id.to_string(),
            passphrase: ctx.passphrase.clone(),
            wait: Some(self.cluster.lease() * 2),
            taken_over: true,
            ..RollbackRequest::default()
        };
        let sink: crate::event::Sink = Arc::new(|_| {});
        let outcome = match app::rollback(&ctx.stores, &ctx.actor, &req, sink) {
            Ok(r) if r.incomplete.is_empty() => {
                tracing::info!(
                    run_id,
                    reverted = r.reverted,
                    from_node = from,
                    "taken over and rolled back"
                );
                "rolled_back"
            }
            Ok(r) => {
                tracing::error!(run_id, incomplete = ?r.incomplete, "taken over: rollback incomplete");
                "rollback_incomplete"
            }
            Err(e) => {
                // Left for `tend rollback`, as a run that died on its own machine is;
                // the record ends this process's lease.
                tracing::error!(run_id, "taken over: cannot roll back: {e}");
                meta.outcome = crate::outcome::RunState::Interrupted;
                meta.ended.get_or_insert_with(|| Utc::now().to_rfc3339());
                if let Err(e) = ctx.stores.runs.write(&meta) {
                    tracing::error!(run_id, "cannot mark the run interrupted: {e}");
                }
                return;
            }
        };
        meta.ended.get_or_insert_with(|| Utc::now().to_rfc3339());
        super::recover::settle_record(ctx, &meta, outcome);
    }

    /// The node's thread: a heartbeat every lease/3 until `stop`.
    pub fn spawn(
        self: &Arc<Self>,
        ctx: Arc<Ctx>,
        stop: Arc<AtomicBool>,
        cancel_all: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> crate::error::Result<std::thread::JoinHandle<()>> {
        let node = self.clone();
        std::thread::Builder::new()
            .name("tend-cluster".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    node.tick(&ctx, cancel_all.as_ref());
                    let until = Instant::now() + node.beat_period();
                    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
            .map_err(|e| crate::error::Error::io("cannot start the cluster thread", e))
    }
}

/// An audit event of the cluster itself; a log that cannot record it is logged.
fn record(ctx: &Ctx, event: serde_json::Value) {
    if let Err(e) = ctx.stores.audit.append(event) {
        tracing::error!("audit log: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::schedule_hash;
    use std::path::Path;

    fn entries(file: &str, text: &str) -> Vec<crate::schedule::Entry> {
        let doc: toml::Table = text.parse().unwrap();
        crate::schedule::entries_from_source(&doc, Path::new(file), Some(text)).unwrap()
    }

    #[test]
    fn the_same_entries_hash_alike_wherever_and_however_they_are_written() {
        let one = "[[schedule]]\nname = \"a\"\ncron = \"0 0 3 * * *\"\nrecipe = \"/r.rhai\"\nhosts = \"local\"\n\n[[schedule]]\nname = \"b\"\ncron = \"@daily\"\nrecipe = \"/r.rhai\"\nhosts = \"local\"\n";
        let two = "# the same, the other way round\n[[schedule]]\nname = \"b\"\ncron = \"@daily\"\nrecipe = \"/r.rhai\"\nhosts = \"local\"\n[[schedule]]\nname = \"a\"\ncron = \"0 0 3 * * *\"\nrecipe = \"/r.rhai\"\nhosts = \"local\"\n";
        let a = schedule_hash(&entries("/etc/tend/tend.toml", one));
        assert_eq!(a, schedule_hash(&entries("/srv/other.toml", two)));
        let changed = one.replace("0 0 3", "0 30 3");
        assert_ne!(a, schedule_hash(&entries("/etc/tend/tend.toml", &changed)));
    }
}
