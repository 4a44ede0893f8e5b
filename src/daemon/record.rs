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
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::state::{mkdirs, write_atomic, StateDir};

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

    /// A fire's run ended (or was refused) with `outcome`.
    pub fn ended(&mut self, run_id: Option<String>, fired: DateTime<Utc>, outcome: &str, ms: u64) {
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
}

/// The records of every entry, cached, each file rewritten when its record changes.
/// The file is written outside the cache's lock, so the scheduler reading a record
/// never waits for a run's fsync; a version per record keeps an older snapshot from
/// being written over a newer one.
pub struct Records {
    dir: PathBuf,
    cache: Mutex<HashMap<String, (Record, u64)>>,
    /// The version of each record last written, under the lock that orders writes.
    written: Mutex<HashMap<String, u64>>,
}

impl Records {
    pub fn new(state: &StateDir) -> Records {
        Records {
            dir: dir(state),
            cache: Mutex::default(),
            written: Mutex::default(),
        }
    }

    /// The record of `name` as it is now.
    pub fn get(&self, name: &str) -> Record {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(name.to_string())
            .or_insert_with(|| (read(&self.dir, name), 0))
            .0
            .clone()
    }

    /// Change the record of `name` and write it; a failed write is logged (the
    /// scheduler keeps going on what it has in memory).
    pub fn update<T>(&self, name: &str, change: impl FnOnce(&mut Record) -> T) -> T {
        let (out, snapshot, version) = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let (r, version) = cache
                .entry(name.to_string())
                .or_insert_with(|| (read(&self.dir, name), 0));
            let out = change(r);
            *version += 1;
            (out, r.clone(), *version)
        };
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if written.get(name).is_some_and(|w| *w >= version) {
            return out;
        }
        let result = mkdirs(&self.dir).map_err(|e| e.to_string()).and_then(|()| {
            let text = serde_json::to_vec_pretty(&snapshot).map_err(|e| e.to_string())?;
            write_atomic(&self.dir.join(format!("{name}.json")), &text).map_err(|e| e.to_string())
        });
        match result {
            Ok(()) => {
                written.insert(name.to_string(), version);
            }
            Err(e) => tracing::error!(schedule = name, "cannot write the schedule's state: {e}"),
        }
        out
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
