//! What the daemon remembers about each entry between fires and across restarts, as
//! it saves it in `STATE/schedules/<name>.json`. Read here for everything that shows
//! or judges it without running the loop: the status page, `/metrics`, the dead-man
//! check ([`crate::notify::stale`]).
//!
//! ```json
//! {"name": "nightly", "last_fire": "2027-01-02T02:30:00+01:00", "last_run_id": "…",
//!  "last_outcome": "ok", "last_duration_ms": 1200, "last_success": "…" | null,
//!  "consecutive_failures": 0, "paused": false, "missed_fires": 0,
//!  "history": [{"run_id": "…", "fired": "…", "outcome": "ok", "duration_ms": 1200}]}
//! ```
//! `history` is newest last and holds at most [`HISTORY_LEN`] fires. Every field has a
//! default, so a file saved before the entry's first fire reads too.

use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::StateDir;

/// How many fires `history` keeps.
pub const HISTORY_LEN: usize = 50;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EntryState {
    pub name: String,
    pub last_fire: Option<DateTime<FixedOffset>>,
    pub last_run_id: Option<String>,
    pub last_outcome: Option<String>,
    pub last_duration_ms: Option<u64>,
    pub last_success: Option<DateTime<FixedOffset>>,
    pub consecutive_failures: u64,
    pub paused: bool,
    pub missed_fires: u64,
    pub history: Vec<Fire>,
}

/// One fire and the run it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fire {
    /// Empty for a fire that started no run (refused): the daemon writes `null`.
    #[serde(deserialize_with = "null_as_empty")]
    pub run_id: String,
    pub fired: Option<DateTime<FixedOffset>>,
    pub outcome: String,
    pub duration_ms: u64,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// `STATE/schedules/<name>.json`.
pub fn path(state: &StateDir, name: &str) -> PathBuf {
    state.root().join("schedules").join(format!("{name}.json"))
}

impl EntryState {
    /// The saved state of entry `name`; `None` when it has never been saved (the
    /// daemon has not run it yet).
    pub fn load(state: &StateDir, name: &str) -> Result<Option<EntryState>> {
        // Names are checked as [a-z0-9-]+ when tend.toml is read; this keeps any other
        // caller from naming a file outside the folder.
        if name.is_empty() || name.contains(['/', '.']) {
            return Err(Error::Usage(format!("{name:?} is not a schedule name")));
        }
        let file = path(state, name);
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("cannot read {}", file.display()), e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::Other(format!("{}: {e}", file.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_format_reads_and_a_fresh_file_too() {
        let s: EntryState = serde_json::from_str(
            r#"{"name":"n","last_fire":"2027-01-02T02:30:00+01:00","last_run_id":"r",
                "last_outcome":"failed","last_duration_ms":12,"last_success":null,
                "consecutive_failures":2,"paused":true,"missed_fires":3,
                "history":[{"run_id":"r","fired":"2027-01-02T01:30:00Z","outcome":"failed","duration_ms":12}]}"#,
        )
        .unwrap();
        assert_eq!(s.last_success, None);
        assert_eq!(
            (s.consecutive_failures, s.missed_fires, s.paused),
            (2, 3, true)
        );
        assert_eq!(s.history[0].fired, s.last_fire);
        let fresh: EntryState = serde_json::from_str(r#"{"name":"n"}"#).unwrap();
        assert!(fresh.history.is_empty() && fresh.last_fire.is_none());
    }
}
