//! What the scheduler remembers about each entry between fires and across restarts:
//! `STATE/schedules/NAME.json`, one file per entry, written atomically after every
//! change. The status page, metrics and notifications read these files as they are,
//! so the format below is a contract: add fields, never rename or drop one.
//!
//! ```json
//! {"name":"nightly","last_fire":"2027-01-01T02:30:00+00:00","last_run_id":"…",
//!  "last_outcome":"ok","last_duration_ms":1200,"last_success":"…",
//!  "consecutive_failures":0,"paused":false,"missed_fires":0,
//!  "history":[{"run_id":"…","fired":"…","outcome":"ok","duration_ms":1200}]}
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{mkdirs, replace_file, StateDir};
use crate::store::{Cluster, ScheduleState};

/// Runs kept in `history`, newest last.
pub const HISTORY: usize = 50;

/// `last_outcome` while a fire's run is going; one found at start belonged to a
/// daemon that died.
pub const RUNNING: &str = "running";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    pub name: String,
    /// When the entry last fired (RFC 3339); null before its first fire.
    pub last_fire: Option<String>,
    pub last_run_id: Option<String>,
    /// A run outcome (`ok`, `failed`, `rolled_back`, `cancelled`…), `refused` (not
    /// vetted, or the run could not start), or `running`.
    pub last_outcome: Option<String>,
    pub last_duration_ms: Option<u64>,
    pub last_success: Option<String>,
    pub consecutive_failures: u64,
    pub paused: bool,
    /// Fires that never ran (the daemon was down, the machine asleep), catch-ups aside.
    pub missed_fires: u64,
    pub history: Vec<Past>,
}

/// A scheduled run that died before it could record its end.
#[derive(Debug, Clone)]
pub struct Died {
    pub run_id: String,
    /// The entry that fired it (None: a run of an older tend).
    pub schedule: Option<String>,
    pub started: Option<DateTime<Utc>>,
    pub ms: u64,
}

/// One finished fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Past {
    /// None: refused before a run started.
    pub run_id: Option<String>,
    pub fired: String,
    pub outcome: String,
    pub duration_ms: u64,
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Record {
    pub fn last_fire(&self) -> Option<DateTime<Utc>> {
        let t = self.last_fire.as_deref()?;
        DateTime::parse_from_rfc3339(t).ok().map(|t| t.to_utc())
    }

    /// A fire's run ended (or was refused) with `outcome`. A run the record has
    /// already ended (a node that took it over said so first) is not counted twice.
    pub fn ended(&mut self, run_id: Option<String>, fired: DateTime<Utc>, outcome: &str, ms: u64) {
        if run_id.is_some() && self.history.iter().any(|p| p.run_id == run_id) {
            return;
        }
        self.last_run_id = run_id.clone();
        self.last_outcome = Some(outcome.to_string());
        self.last_duration_ms = Some(ms);
        if outcome == "ok" {
            self.last_success = Some(rfc3339(Utc::now()));
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures += 1;
        }
        self.history.push(Past {
            run_id,
            fired: rfc3339(fired),
            outcome: outcome.to_string(),
            duration_ms: ms,
        });
        let extra = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..extra);
    }

    /// See [`Records::settle`]: whether this record changed.
    fn settle(&mut self, died: &Died, outcome: &str) -> bool {
        let run_id = died.run_id.as_str();
        if self.last_run_id.as_deref() == Some(run_id)
            && self.last_outcome.as_deref() == Some(RUNNING)
        {
            let fired = self.last_fire().or(died.started).unwrap_or_else(Utc::now);
            self.ended(Some(run_id.to_string()), fired, outcome, died.ms);
            return true;
        }
        if self
            .history
            .iter()
            .any(|p| p.run_id.as_deref() == Some(run_id))
        {
            return false;
        }
        // A later fire is the last one now: the run takes its place in the history
        // by when it started; the last run's fields and the failure count stay.
        let Some(started) = died.started else {
            return false;
        };
        let fired = rfc3339(started);
        let at = self.history.partition_point(|p| p.fired <= fired);
        if at == 0 && self.history.len() >= HISTORY {
            return false;
        }
        self.history.insert(
            at,
            Past {
                run_id: Some(run_id.to_string()),
                fired,
                outcome: outcome.to_string(),
                duration_ms: died.ms,
            },
        );
        let extra = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..extra);
        true
    }
}

/// The records of every entry, cached, each file rewritten when its record changes.
/// The file is written outside the cache's lock, so the scheduler reading a record
/// never waits for a run's fsync; a version per record keeps an older snapshot from
/// being written over a newer one.
///
/// In a cluster the record is the cluster's: a change is made in the database with
/// the row locked (so a failure counted by one node and a success by another add up),
/// and the files are this node's copy, refreshed at each heartbeat for the status
/// page and metrics. A change made while the database is unreachable stays in this
/// node's copy, said in the log.
pub struct Records {
    dir: PathBuf,
    cache: Mutex<HashMap<String, Cached>>,
    /// The version of each record last written, under the lock that orders writes.
    written: Mutex<HashMap<String, u64>>,
    shared: Option<Arc<dyn Cluster>>,
}

struct Cached {
    record: Record,
    /// Counts this process's changes, to order the file writes.
    version: u64,
    /// The database's version of the record this copy holds (0: none).
    shared: i64,
}

impl Records {
    pub fn new(state: &StateDir) -> Records {
        Records {
            dir: dir(state),
            cache: Mutex::default(),
            written: Mutex::default(),
            shared: None,
        }
    }

    /// The records of the cluster behind `cluster`, with this node's copy in `state`.
    pub fn shared(state: &StateDir, cluster: Option<Arc<dyn Cluster>>) -> Records {
        Records {
            shared: cluster,
            ..Records::new(state)
        }
    }

    fn cached<'a>(&self, cache: &'a mut HashMap<String, Cached>, name: &str) -> &'a mut Cached {
        cache.entry(name.to_string()).or_insert_with(|| Cached {
            record: read(&self.dir, name),
            version: 0,
            shared: 0,
        })
    }

    /// The record of `name` as it is now (in a cluster: as this node last saw it).
    pub fn get(&self, name: &str) -> Record {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.cached(&mut cache, name).record.clone()
    }

    /// The names of the records this node knows.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|f| {
                let n = f.file_name().to_str()?.strip_suffix(".json")?.to_string();
                Some(n)
            })
            .collect();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        names.extend(cache.keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// Change the record of `name` and write it; a failed write is logged (the
    /// scheduler keeps going on what it has in memory).
    pub fn update<T>(&self, name: &str, change: impl FnOnce(&mut Record) -> T) -> T {
        if let Some(cluster) = &self.shared {
            return self.update_shared(cluster.as_ref(), name, change);
        }
        let (out, snapshot, version) = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let c = self.cached(&mut cache, name);
            let out = change(&mut c.record);
            c.version += 1;
            (out, c.record.clone(), c.version)
        };
        self.write(name, &snapshot, version);
        out
    }

    /// [`Records::update`] in the cluster's database; this node's copy on failure.
    fn update_shared<T>(
        &self,
        cluster: &dyn Cluster,
        name: &str,
        change: impl FnOnce(&mut Record) -> T,
    ) -> T {
        let mut change = Some(change);
        let mut done: Option<(T, Record)> = None;
        let base = self.get(name);
        let result = cluster.update_schedule_state(name, &mut |stored| {
            // No record in the database yet: this node's copy (an embedded state dir
            // switched to a cluster) is the start.
            let mut r = stored
                .and_then(|v| serde_json::from_value::<Record>(v).ok())
                .unwrap_or_else(|| base.clone());
            r.name = name.to_string();
            if let Some(c) = change.take() {
                let out = c(&mut r);
                done = Some((out, r.clone()));
            }
            serde_json::to_value(&r).unwrap_or_default()
        });
        let (out, record, shared) = match (result, done) {
            (Ok(v), Some((out, r))) => (out, r, v),
            (result, done) => {
                if let Err(e) = result {
                    tracing::warn!(
                        schedule = name,
                        "cannot change the schedule's record in the cluster database; \
                         kept on this node only: {e}"
                    );
                }
                match (done, change.take()) {
                    (Some((out, r)), _) => (out, r, 0),
                    (None, Some(c)) => {
                        let mut r = base;
                        (c(&mut r), r, 0)
                    }
                    (None, None) => unreachable!("the change is taken only with its result"),
                }
            }
        };
        self.keep(name, record, shared);
        out
    }

    /// Take `record` (the database's version `shared`, 0: this node's only) into the
    /// cache and its file, unless the cache holds a newer one.
    fn keep(&self, name: &str, record: Record, shared: i64) -> bool {
        let (snapshot, version) = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let c = self.cached(&mut cache, name);
            if shared != 0 && shared <= c.shared {
                return false;
            }
            c.record = record;
            c.shared = c.shared.max(shared);
            c.version += 1;
            (c.record.clone(), c.version)
        };
        self.write(name, &snapshot, version);
        true
    }

    /// The records other nodes changed, as the database has them.
    pub fn refresh(&self, states: Vec<ScheduleState>) {
        for s in states {
            // The name becomes a file name here: only what an entry can be called.
            if !crate::schedule::valid_name(&s.name) {
                tracing::warn!(schedule = %s.name, "a record in the cluster database has a name no entry can have: ignored");
                continue;
            }
            match serde_json::from_value::<Record>(s.state) {
                Ok(mut r) => {
                    r.name = s.name.clone();
                    self.keep(&s.name, r, s.version);
                }
                Err(e) => {
                    tracing::warn!(schedule = %s.name, "unreadable record in the cluster database: {e}")
                }
            }
        }
    }

    /// A run that died was rolled back since, with `outcome`: the record of the entry
    /// that fired it says so (its `running` ends, or, when a later fire has taken
    /// its place, its history gets the run). The names of the records changed.
    /// Runs of older versions name no entry: the record still saying `running` for
    /// it is found by its run id.
    pub fn settle(&self, died: &Died, outcome: &str) -> Vec<String> {
        let names = match &died.schedule {
            Some(name) => vec![name.clone()],
            None => self
                .names()
                .into_iter()
                .filter(|n| self.get(n).last_run_id.as_deref() == Some(died.run_id.as_str()))
                .collect(),
        };
        names
            .into_iter()
            .filter(|name| self.update(name, |r| r.settle(died, outcome)))
            .collect()
    }

    fn write(&self, name: &str, snapshot: &Record, version: u64) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.get(name).is_some_and(|w| *w >= version) {
            return;
        }
        let result = mkdirs(&self.dir).map_err(|e| e.to_string()).and_then(|()| {
            let text = serde_json::to_vec_pretty(snapshot).map_err(|e| e.to_string())?;
            // In a cluster the file is a copy of the database's record: no fsync.
            let durable = self.shared.is_none();
            replace_file(&self.dir.join(format!("{name}.json")), &text, durable)
                .map_err(|e| e.to_string())
        });
        match result {
            Ok(()) => {
                written.insert(name.to_string(), version);
            }
            Err(e) => tracing::error!(schedule = name, "cannot write the schedule's state: {e}"),
        }
    }
}

/// `STATE/schedules`.
pub fn dir(state: &StateDir) -> PathBuf {
    state.root().join("schedules")
}

/// The record of `name` on disk; a fresh one if there is none, or if it cannot be
/// read (said in the log: its history is lost, the schedule goes on).
pub fn read(dir: &std::path::Path, name: &str) -> Record {
    let path = dir.join(format!("{name}.json"));
    let fresh = || Record {
        name: name.to_string(),
        ..Record::default()
    };
    match std::fs::read(&path) {
        Err(_) => fresh(),
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(
                schedule = name,
                "{}: unreadable ({e}); starting afresh",
                path.display()
            );
            fresh()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_run_ends_its_record_or_takes_its_place_in_the_history() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let died = |id: &str, started: &str| Died {
            run_id: id.into(),
            schedule: Some("nightly".into()),
            started: Some(at(started)),
            ms: 5,
        };
        let mut r = Record::default();
        r.ended(Some("r1".into()), at("2026-12-01T00:00:00Z"), "ok", 1);
        r.last_fire = Some("2026-12-02T00:00:00.000Z".into());
        r.last_run_id = Some("r2".into());
        r.last_outcome = Some(RUNNING.into());
        // Still the last run: it ends.
        assert!(r.settle(&died("r2", "2026-12-02T00:00:01Z"), "rolled_back"));
        assert_eq!(r.last_outcome.as_deref(), Some("rolled_back"));
        assert_eq!(r.consecutive_failures, 1);
        assert!(!r.settle(&died("r2", "2026-12-02T00:00:01Z"), "rolled_back"));
        // A later fire took its place: into the history by its start, nothing else.
        r.ended(Some("r4".into()), at("2026-12-04T00:00:00Z"), "ok", 1);
        assert!(r.settle(&died("r3", "2026-12-03T00:00:00Z"), "rolled_back"));
        let order: Vec<&str> = r
            .history
            .iter()
            .map(|p| p.run_id.as_deref().unwrap())
            .collect();
        assert_eq!(order, ["r1", "r2", "r3", "r4"]);
        assert_eq!(r.last_run_id.as_deref(), Some("r4"));
        assert_eq!(r.consecutive_failures, 0);
    }

    #[test]
    fn history_keeps_the_newest_and_failures_count_until_a_success() {
        let mut r = Record::default();
        for i in 0..60 {
            r.ended(Some(format!("r{i}")), Utc::now(), "failed", i);
        }
        assert_eq!(r.history.len(), HISTORY);
        assert_eq!(r.history.last().unwrap().run_id.as_deref(), Some("r59"));
        assert_eq!(r.consecutive_failures, 60);
        r.ended(None, Utc::now(), "ok", 1);
        assert_eq!(r.consecutive_failures, 0);
        assert!(r.last_success.is_some());
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "name",
            "last_fire",
            "last_run_id",
            "last_outcome",
            "last_duration_ms",
            "last_success",
            "consecutive_failures",
            "paused",
            "missed_fires",
            "history",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
