//! What a run reports as it goes. The runner emits events; the CLI renders them for
//! people or as JSON Lines (`--json`), and the audit log keeps the ones that matter.
//! Nothing below the CLI prints.

use std::collections::BTreeMap;

use crate::ops::StepReport;

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStart {
        run_id: String,
        recipe: String,
        recipe_hash: String,
        dry_run: bool,
        /// Whether the recipe, as it is now, is vetted (see `trust`); `false` for an
        /// ad-hoc `exec` command.
        vetted: bool,
        hosts: Vec<String>,
        params: BTreeMap<String, String>,
    },
    /// A host's part of the run begins (connecting, for a remote host).
    HostStart { host: String },
    /// A step begins (its `step` event follows when it ends). `function` is the
    /// Rhai function's name without its module (`line` for `fs::line`); `line`, the
    /// recipe line that called it.
    StepStart {
        host: String,
        step: u64,
        function: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<usize>,
    },
    Step {
        host: String,
        step: u64,
        #[serde(flatten)]
        report: StepReport,
    },
    StepFailed {
        host: String,
        step: u64,
        error: String,
    },
    Log {
        host: String,
        level: String,
        message: String,
    },
    /// One undo record reverted (or that would be, in `rollback --dry-run`).
    Undo {
        host: String,
        seq: u64,
        op: String,
        action: String,
        result: String,
    },
    Rollback {
        host: String,
        reverted: u64,
        /// What could not be undone, each with why.
        incomplete: Vec<String>,
        /// Commands that failed (or were stopped) mid-step: no known change of theirs
        /// is left, but what they did before failing is unknown.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
    HostEnd {
        host: String,
        outcome: String,
        changed: u64,
        unknown: u64,
        unchanged: u64,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// What kind of failure `error` is, when the host itself failed (not reached:
        /// `connection`, `host_key`, `auth`; refused by the file system or sudo).
        #[serde(skip_serializing_if = "Option::is_none")]
        fault: Option<crate::transport::Fault>,
    },
    RunEnd {
        run_id: String,
        outcome: String,
        changed: u64,
        unknown: u64,
        duration_ms: u64,
    },
}

/// Where events go. A plain function so the CLI, tests and the daemon can each plug in.
pub type Sink = std::sync::Arc<dyn Fn(&Event) + Send + Sync>;
