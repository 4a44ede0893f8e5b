//! `tend prune [--dry-run] [--json]`: apply `[retention]` of tend.toml to the runs of
//! this state dir and the hosts they ran on (see [`crate::app::prune`], which the
//! daemon calls too).

use clap::Args;

use crate::app::{self, Actor, Config, PruneReport, PruneRequest};
use crate::error::{exit, Result};
use crate::out::outln;
use crate::report::escape;
use crate::state::StateDir;

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// List what would be removed; remove nothing
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// One JSON object per removal (`prune`), per run or host left alone
    /// (`prune_skipped`), then a `prune_end` summary
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &PruneArgs, config: &Config, state: &StateDir, actor: &Actor) -> Result<i32> {
    let req = PruneRequest {
        dry_run: args.dry_run,
        passphrase: super::ssh_passphrase(),
    };
    let report = app::prune(state, &config.retention, actor, &req)?;
    if args.json {
        json(&report, args.dry_run);
    } else {
        human(&report, args.dry_run);
    }
    Ok(exit::OK)
}

fn json(report: &PruneReport, dry_run: bool) {
    for a in &report.actions {
        let mut v = serde_json::to_value(a).unwrap_or_default();
        v["event"] = "prune".into();
        v["dry_run"] = dry_run.into();
        outln!("{v}");
    }
    for s in &report.skipped {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        v["event"] = "prune_skipped".into();
        outln!("{v}");
    }
    outln!(
        "{}",
        serde_json::json!({
            "event": "prune_end",
            "dry_run": dry_run,
            "removed": report.actions.len(),
            "bytes": report.bytes(),
            "skipped": report.skipped.len(),
        })
    );
}

fn human(report: &PruneReport, dry_run: bool) {
    let verb = if dry_run { "would free" } else { "freed" };
    for a in &report.actions {
        let what = match &a.host {
            Some(h) => format!("backups of {}", escape(h)),
            None => "record and journals".to_string(),
        };
        outln!(
            "{verb} {:>9}  run {}  {what}: {}  ({})",
            app::human_bytes(a.bytes),
            escape(&a.run_id),
            escape(&a.path),
            a.reason
        );
    }
    for s in &report.skipped {
        let host = s
            .host
            .as_deref()
            .map(|h| format!(" host {}", escape(h)))
            .unwrap_or_default();
        outln!(
            "kept  run {}{host}: {}",
            escape(&s.run_id),
            escape(&s.reason)
        );
    }
    let total = app::human_bytes(report.bytes());
    match (report.actions.len(), dry_run) {
        (0, _) => outln!("nothing to prune"),
        (n, true) => {
            outln!("prune (dry-run): would free {total} in {n} removal(s); nothing changed")
        }
        (n, false) => outln!("pruned: freed {total} in {n} removal(s)"),
    }
}
