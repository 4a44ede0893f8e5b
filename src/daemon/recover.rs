//! Start-up repair: before any fire, finish the rollback of every run this state dir
//! holds whose lease is dead (a run cut short by a crash, `kill -9`, a power cut), so
//! a schedule never starts on a host still half-changed by its previous run.

use super::fire::{audit, Ctx};
use super::record::{self, RUNNING};
use crate::app::{self, RollbackRequest};
use crate::state::StateDir;

/// Roll back each interrupted run; records still saying `running` for one of them
/// get its final outcome. Failures are logged; the daemon starts anyway (the run's
/// journal stays for `tend rollback`).
pub fn interrupted_runs(ctx: &Ctx) {
    let runs = match ctx.state.list_runs() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot list runs to recover: {e}");
            return;
        }
    };
    for meta in runs {
        // `running` with a dead lease, or `interrupted` as its guard wrote it on the way
        // out: either way nothing has undone its changes yet.
        if meta.dry_run || meta.effective_outcome() != crate::outcome::RunState::Interrupted {
            continue;
        }
        let id = meta.run_id.clone();
        let req = RollbackRequest {
            run_id: id.clone(),
            passphrase: ctx.passphrase.clone(),
            ..RollbackRequest::default()
        };
        let sink: crate::event::Sink = std::sync::Arc::new(|_| {});
        let outcome = match app::rollback(&ctx.stores, &ctx.actor, &req, sink) {
            Ok(r) if r.incomplete.is_empty() => {
                tracing::info!(run_id = %id, reverted = r.reverted, "interrupted run rolled back");
                "rolled_back".to_string()
            }
            Ok(r) => {
                tracing::error!(run_id = %id, incomplete = ?r.incomplete, "interrupted run: rollback incomplete");
                "rollback_incomplete".to_string()
            }
            Err(e) => {
                tracing::error!(run_id = %id, "interrupted run: cannot roll back: {e}");
                continue;
            }
        };
        // How long it ran, as far as its last heartbeat shows.
        let ms = meta.lease.as_ref().map_or(0, |l| {
            let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
            match (at(&l.since), at(&l.heartbeat)) {
                (Some(a), Some(b)) => (b - a).num_milliseconds().max(0) as u64,
                _ => 0,
            }
        });
        settle_record(ctx, &ctx.state, &id, &outcome, ms);
    }
}

/// The schedule whose record says `run_id` is running gets `outcome` for it.
fn settle_record(ctx: &Ctx, state: &StateDir, run_id: &str, outcome: &str, ms: u64) {
    let Ok(files) = std::fs::read_dir(record::dir(state)) else {
        return;
    };
    for f in files.flatten() {
        let path = f.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let r = ctx.records.get(name);
        if r.last_run_id.as_deref() == Some(run_id) && r.last_outcome.as_deref() == Some(RUNNING) {
            let fired = r.last_fire().unwrap_or_else(chrono::Utc::now);
            ctx.records.update(name, |r| {
                r.ended(Some(run_id.to_string()), fired, outcome, ms)
            });
            audit(
                ctx,
                "schedule_recovered",
                name,
                serde_json::json!({"run_id": run_id, "outcome": outcome}),
            );
        }
    }
}
