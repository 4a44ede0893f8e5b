//! Telling people about scheduled runs: where a `[[schedule]]` entry's `notify` points
//! (mail through the machine's sendmail, a chat webhook, a command), what they are told
//! ([`NotifyEvent`]) and the dead-man check behind `alert_after` ([`stale`]).
//!
//! The daemon decides when to notify (see [`Reason::wanted_by`]); this module only
//! delivers, one target at a time, each within a short deadline so a dead mail relay
//! or chat server costs the daemon seconds, not a stuck thread. An event carries no
//! parameters, so no secret can reach a mailbox, a chat channel or a command's
//! environment through it; and a webhook URL, which is itself a credential for chat
//! services, is never printed whole in an error.

mod exec;
mod mail;
mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::schedule::saved::EntryState;
use crate::schedule::{AlertAfter, Entry, Notify, NotifyOn};
use crate::state::RunMeta;

/// Why people are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// A run ended in failure (failed, rolled back, unreachable, cancelled…).
    Failed,
    /// A fire was refused: the recipe (or a module it imports) changed since it was
    /// vetted.
    Unvetted,
    /// Dead-man: no successful run for `alert_after`.
    Stale,
    /// A run ended without failing; sent only with `notify_on = "always"`.
    Finished,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Failed => "failed",
            Reason::Unvetted => "unvetted",
            Reason::Stale => "stale",
            Reason::Finished => "finished",
        }
    }

    /// Whether an entry with this `notify_on` wants to hear about it.
    pub fn wanted_by(self, on: NotifyOn) -> bool {
        on == NotifyOn::Always || self != Reason::Finished
    }
}

/// What a notification says. Built by the daemon from a run's record; it holds no
/// parameters (so no secrets) by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyEvent {
    /// The run, when there was one (a refusal before it started or a stale alert has
    /// none).
    pub run_id: Option<String>,
    pub schedule: String,
    /// The run's outcome as `tend runs` shows it (`ok`, `failed`, `rolled_back`…), or
    /// `refused` / `stale` when no run is concerned.
    pub outcome: String,
    pub hosts: Vec<String>,
    pub reason: Reason,
    pub started: Option<DateTime<Utc>>,
    pub duration: Option<Duration>,
    /// One or a few lines for people: what happened and what to do.
    pub message: String,
}

impl NotifyEvent {
    /// About a run of entry `schedule`, from its record (`run.json`).
    pub fn from_run(schedule: &str, run: &RunMeta, reason: Reason, message: String) -> NotifyEvent {
        NotifyEvent {
            run_id: Some(run.run_id.clone()),
            schedule: schedule.to_string(),
            outcome: run.effective_outcome().to_string(),
            hosts: run.hosts.clone(),
            reason,
            started: DateTime::parse_from_rfc3339(&run.started)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            duration: run
                .ended
                .is_some()
                .then(|| Duration::from_millis(run.duration_ms)),
            message,
        }
    }

    /// The dead-man alert for `entry`, whose saved state is `state`.
    pub fn stale(entry: &Entry, state: Option<&EntryState>, now: DateTime<Utc>) -> NotifyEvent {
        let since = state.and_then(|s| s.last_success);
        let limit = match entry.alert_after {
            Some(AlertAfter::Periods(n)) => format!("{n} period{}", if n == 1 { "" } else { "s" }),
            Some(AlertAfter::Duration(d)) => humantime::format_duration(d).to_string(),
            None => "its alert_after".into(),
        };
        let message = match since {
            Some(t) => format!(
                "no successful run since {} (alert_after = {limit}); `tend schedule list` shows its last runs",
                t.to_rfc3339()
            ),
            None => format!(
                "no successful run yet (alert_after = {limit}); `tend schedule list` shows its last runs"
            ),
        };
        NotifyEvent {
            run_id: state.and_then(|s| s.last_run_id.clone()),
            schedule: entry.name.clone(),
            outcome: "stale".into(),
            hosts: entry.hosts.split(',').map(str::to_string).collect(),
            reason: Reason::Stale,
            started: None,
            duration: None,
            message: format!("{message} (as of {})", now.to_rfc3339()),
        }
    }

    /// One line for a chat message or a mail subject:
    /// `tend: nightly-backup failed on web1, web2 (run 2026…)`.
    pub fn summary(&self) -> String {
        let what = match self.reason {
            Reason::Failed | Reason::Finished => self.outcome.replace('_', " "),
            Reason::Unvetted => "refused: recipe not vetted".into(),
            Reason::Stale => "stale: no recent successful run".into(),
        };
        let mut s = format!("tend: {} {what}", self.schedule);
        if !self.hosts.is_empty() {
            s.push_str(&format!(" on {}", self.hosts.join(", ")));
        }
        if let Some(id) = &self.run_id {
            s.push_str(&format!(" (run {id})"));
        }
        s
    }

    /// The event as tend's fields, shared by the webhook body and an `exec:`
    /// command's stdin.
    fn fields(&self) -> serde_json::Value {
        serde_json::json!({
            "run_id": self.run_id,
            "schedule": self.schedule,
            "outcome": self.outcome,
            "hosts": self.hosts,
            "reason": self.reason,
            "started": self.started.map(|t| t.to_rfc3339()),
            "duration_ms": self.duration.map(|d| d.as_millis() as u64),
            "message": self.message,
        })
    }
}

/// A notification that did not get through.
#[derive(Debug, thiserror::Error)]
#[error("notify {target}: {message}")]
pub struct NotifyError {
    /// The target as it can be shown: a webhook without its path.
    pub target: String,
    pub message: String,
}

/// Deliver `event` to `target`. Blocking, bounded by a short timeout per kind.
pub fn send(target: &Notify, event: &NotifyEvent) -> Result<(), NotifyError> {
    let sent = match target {
        Notify::Mail(to) => mail::send(to, event),
        Notify::Webhook(url) => webhook::send(url, event),
        Notify::Exec(path) => exec::send(path, event),
    };
    sent.map_err(|message| NotifyError {
        target: shown(target),
        message,
    })
}

/// What a notification command keeps of the daemon's environment. The rest goes:
/// the daemon's environment holds the values of `env:` secret references, and a
/// paging script or the MTA has no need of them.
const KEPT_ENV: [&str; 7] = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ"];

/// `cmd` with only [`KEPT_ENV`] of this process's environment.
fn without_secrets(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env_clear();
    for k in KEPT_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd
}

/// How a target is named in messages and logs. A chat webhook's path is its secret
/// (anyone holding it can post), so only its scheme and host are shown.
pub fn shown(target: &Notify) -> String {
    match target {
        Notify::Webhook(url) => webhook::redacted(url),
        other => other.to_string(),
    }
}

/// Whether `entry` has gone `alert_after` without a successful run, as of `now`.
pub fn stale(entry: &Entry, state: Option<&EntryState>, now: DateTime<Utc>) -> bool {
    stale_at(entry, state).is_some_and(|at| at <= now)
}

/// When `entry` becomes (or became) stale if nothing succeeds before: the daemon can
/// sleep until then, and notify once per value rather than on every check.
///
/// The clock starts at the last success or, for an entry that never succeeded, at its
/// oldest remembered fire; nothing is known before the daemon first ran it, and a
/// paused or disabled entry is not expected to succeed. `alert_after = N` periods
/// means N whole periods went by after the one that should have succeeded: the
/// (N+1)-th scheduled fire after the clock starts, so a run that is due but still
/// going is not reported stale.
pub fn stale_at(entry: &Entry, state: Option<&EntryState>) -> Option<DateTime<Utc>> {
    let alert = entry.alert_after?;
    let state = state.filter(|s| !s.paused && entry.enabled)?;
    let since = state
        .last_success
        .or_else(|| state.history.iter().filter_map(|f| f.fired).min())
        .or(state.last_fire)?
        .with_timezone(&Utc);
    match alert {
        AlertAfter::Duration(d) => since.checked_add_signed(chrono::Duration::from_std(d).ok()?),
        AlertAfter::Periods(n) => entry
            .next_fires(since, n as usize + 1)
            .get(n as usize)
            .copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(alert: &str) -> Entry {
        let table: toml::Table = toml::from_str(&format!(
            "[[schedule]]\nname = \"j\"\ncron = \"0 2 * * *\"\ntimezone = \"UTC\"\nrecipe = \"r.rhai\"\nalert_after = {alert}\n"
        ))
        .unwrap();
        crate::schedule::entries_from_source(&table, std::path::Path::new("tend.toml"), None)
            .unwrap()
            .remove(0)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn succeeded(s: &str) -> EntryState {
        EntryState {
            last_success: Some(DateTime::parse_from_rfc3339(s).unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn periods_count_whole_periods_after_the_last_success() {
        let e = entry("2");
        let s = succeeded("2027-01-01T02:00:05Z");
        // Fires on the 2nd and 3rd failed or did not happen: stale at the 4th's time.
        assert_eq!(stale_at(&e, Some(&s)), Some(at("2027-01-04T02:00:00Z")));
        assert!(!stale(&e, Some(&s), at("2027-01-04T01:59:59Z")));
        assert!(stale(&e, Some(&s), at("2027-01-04T02:00:00Z")));
    }

    #[test]
    fn a_duration_counts_from_the_last_success_or_the_first_fire() {
        let e = entry("\"36h\"");
        let s = succeeded("2027-01-01T02:00:00Z");
        assert_eq!(stale_at(&e, Some(&s)), Some(at("2027-01-02T14:00:00Z")));
        let never = EntryState {
            history: vec![
                crate::schedule::saved::Fire {
                    fired: Some(DateTime::parse_from_rfc3339("2027-01-03T02:00:00Z").unwrap()),
                    ..Default::default()
                },
                crate::schedule::saved::Fire {
                    fired: Some(DateTime::parse_from_rfc3339("2027-01-02T03:00:00+01:00").unwrap()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(stale_at(&e, Some(&never)), Some(at("2027-01-03T14:00:00Z")));
    }

    #[test]
    fn nothing_known_paused_or_unset_is_never_stale() {
        let far = at("2030-01-01T00:00:00Z");
        assert!(!stale(&entry("1"), None, far));
        assert!(!stale(&entry("1"), Some(&EntryState::default()), far));
        let paused = EntryState {
            paused: true,
            ..succeeded("2027-01-01T02:00:00Z")
        };
        assert!(!stale(&entry("1"), Some(&paused), far));
        let mut unset = entry("1");
        unset.alert_after = None;
        assert!(!stale(
            &unset,
            Some(&succeeded("2027-01-01T02:00:00Z")),
            far
        ));
    }

    #[test]
    fn finished_runs_are_told_only_when_asked() {
        assert!(!Reason::Finished.wanted_by(NotifyOn::Failure));
        assert!(Reason::Finished.wanted_by(NotifyOn::Always));
        assert!(Reason::Stale.wanted_by(NotifyOn::Failure));
    }
}
