//! Scheduled runs: the `[[schedule]]` entries of tend.toml, as typed values, and when
//! each one fires. This is what `tend schedule check|list|next` show and what the
//! daemon's loop will run; it starts nothing itself.
//!
//! ```toml
//! [[schedule]]
//! name = "nightly-backup"           # unique, [a-z0-9-]+
//! cron = "30 2 * * *"               # cron(8) syntax, see cron.rs; 6 fields = seconds first
//! timezone = "Europe/Paris"         # IANA; default: the machine's zone
//! recipe = "recipes/backup.rhai"    # relative to tend.toml
//! hosts = "@db"                     # as -H; default: this machine
//! params = { keep = 7, token = "env:BACKUP_TOKEN" }   # secrets only as env:/file:
//! timeout = "1h"
//! become = false
//! overlap = "skip"                  # | "queue" (at most one waiting) | "replace"
//! jitter = "5m"                     # fixed per entry and day
//! catch_up = "2h"                   # after downtime, run once for fires missed within
//! enabled = true
//! notify = ["mailto:ops@example.com", "https://chat.example.com/hooks/x", "exec:/usr/local/bin/page"]
//! notify_on = "failure"             # | "always"
//! alert_after = 3                   # periods without a success (or a duration, "2d")
//! ```
//!
//! [`entries_from`] turns the parsed file into [`Entry`] values, or every problem at
//! once, each naming file:line, the entry and the field.

pub mod cron;
mod entry;
pub mod saved;
pub mod zone;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

pub use cron::Cron;
pub use entry::{entries_from, entries_from_source, valid_name};

/// One `[[schedule]]` entry, checked.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub cron: Cron,
    pub timezone: Tz,
    /// The zone was not written: it is the machine's.
    pub timezone_default: bool,
    /// Resolved against the folder of tend.toml.
    pub recipe: PathBuf,
    /// A host pattern as `-H` takes it; `local` when not given.
    pub hosts: String,
    /// Parameters as `-p NAME=VALUE` would give them; secrets as `env:`/`file:`.
    pub params: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub become_: bool,
    pub overlap: Overlap,
    pub jitter: Duration,
    pub catch_up: Option<Duration>,
    pub enabled: bool,
    pub notify: Vec<Notify>,
    pub notify_on: NotifyOn,
    pub alert_after: Option<AlertAfter>,
    /// Where the entry is: `tend.toml:12` (or the file alone when the line is unknown).
    pub source: String,
}

/// What a fire does while the previous run of the same entry is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// The new fire is dropped (logged and audited as skipped).
    #[default]
    Skip,
    /// The new fire waits for the running one; at most one waits.
    Queue,
    /// The running one is cancelled (and rolls back), then the new one starts.
    Replace,
}

/// Where outcomes are reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    /// Addresses, through the machine's `sendmail`.
    Mail(Vec<String>),
    /// A JSON POST (Slack/Mattermost incoming-webhook shaped).
    Webhook(String),
    /// A command run with `TEND_*` variables in its environment.
    Exec(PathBuf),
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notify::Mail(to) => write!(f, "mailto:{}", to.join(",")),
            Notify::Webhook(url) => f.write_str(url),
            Notify::Exec(p) => write!(f, "exec:{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// Failures, refusals (`unvetted`) and dead-man alerts (`stale`).
    #[default]
    Failure,
    /// Every outcome.
    Always,
}

/// Dead-man threshold: no successful run for this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertAfter {
    /// This many scheduled periods.
    Periods(u32),
    Duration(Duration),
}

/// A problem with one entry (or with the `schedule` table itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    /// `tend.toml:12`, or the file alone.
    pub location: String,
    /// `"nightly-backup"` (quoted), or `#2` when the entry has no usable name.
    pub entry: Option<String>,
    /// `cron "0 25 * * *"`, `timezone "Europe/Pari"`, `unknown key "crn"`…
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if let Some(e) = &self.entry {
            write!(f, "schedule {e}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl Entry {
    /// The delay added to every fire of this entry on `day` (a date in its zone):
    /// spread like systemd's `RandomizedDelaySec`, but a pure function of the entry's
    /// name and the day, so `tend schedule next` shows exactly what the daemon will do.
    pub fn jitter_on(&self, day: chrono::NaiveDate) -> Duration {
        let secs = self.jitter.as_secs();
        if secs == 0 {
            return Duration::ZERO;
        }
        let digest = Sha256::new()
            .chain_update(self.name.as_bytes())
            .chain_update([0])
            .chain_update(day.format("%Y-%m-%d").to_string().as_bytes())
            .finalize();
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        Duration::from_secs(u64::from_be_bytes(head) % secs)
    }

    /// The next `n` times this entry starts strictly after `after` (jitter included),
    /// in order. Empty for `@reboot`, which fires only when the daemon starts.
    pub fn next_fires(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        // A jittered start after `after` may come from a nominal fire before it.
        let jitter = chrono::Duration::from_std(self.jitter).unwrap_or_default();
        let mut out = Vec::with_capacity(n.min(1024));
        let mut t = after - jitter;
        while out.len() < n {
            let Some(nominal) = zone::next_fire(&self.cron, self.timezone, t) else {
                break;
            };
            t = nominal;
            let day = nominal.with_timezone(&self.timezone).date_naive();
            let at = nominal + chrono::Duration::from_std(self.jitter_on(day)).unwrap_or_default();
            if at > after {
                out.push(at);
            }
        }
        // Jitter longer than the gap between two fires can swap them.
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cron: &str, jitter: u64) -> Entry {
        let table: toml::Table = toml::from_str(&format!(
            "[[schedule]]\nname = \"j\"\ncron = \"{cron}\"\ntimezone = \"UTC\"\nrecipe = \"r.rhai\"\njitter = \"{jitter}s\"\n"
        ))
        .unwrap();
        entries_from_source(&table, std::path::Path::new("tend.toml"), None)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn jitter_is_fixed_per_day_and_within_bounds() {
        let e = entry("0 * * * *", 600);
        let d = chrono::NaiveDate::from_ymd_opt(2027, 5, 1).unwrap();
        assert_eq!(e.jitter_on(d), e.jitter_on(d));
        assert!(e.jitter_on(d) < Duration::from_secs(600));
        let days: std::collections::BTreeSet<_> = (0..20)
            .map(|i| e.jitter_on(d + chrono::Days::new(i)))
            .collect();
        assert!(days.len() > 1, "jitter varies from day to day");
        let after = DateTime::parse_from_rfc3339("2027-05-01T00:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let fires = e.next_fires(after, 3);
        let j = chrono::Duration::from_std(e.jitter_on(d)).unwrap();
        assert_eq!(
            fires[0],
            DateTime::parse_from_rfc3339("2027-05-01T01:00:00Z").unwrap() + j
        );
        assert_eq!(fires[1] - fires[0], chrono::Duration::hours(1));
    }
}
