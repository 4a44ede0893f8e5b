//! `exec:/path`: a command of the operator's, run directly (no shell) with the event
//! in `TEND_*` variables and as JSON on stdin, and little else of the daemon's
//! environment.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::NotifyEvent;

/// Long enough for a paging script to reach its service; short enough that a hung one
/// is noticed.
const TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn send(path: &Path, event: &NotifyEvent) -> Result<(), String> {
    let mut cmd = Command::new(path);
    super::without_secrets(&mut cmd)
        .env("TEND_RUN_ID", event.run_id.as_deref().unwrap_or_default())
        .env("TEND_SCHEDULE", &event.schedule)
        .env("TEND_OUTCOME", &event.outcome)
        .env("TEND_HOSTS", event.hosts.join(","))
        .env("TEND_REASON", event.reason.as_str())
        .env("TEND_MESSAGE", &event.message)
        .env(
            "TEND_STARTED",
            event.started.map(|t| t.to_rfc3339()).unwrap_or_default(),
        )
        .env(
            "TEND_DURATION_MS",
            event
                .duration
                .map(|d| d.as_millis().to_string())
                .unwrap_or_default(),
        );
    let input = format!("{}\n", event.fields());
    crate::child::run_bounded(&mut cmd, input.as_bytes(), TIMEOUT)
}
