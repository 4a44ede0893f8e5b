//! Start-up repair: before any fire, finish the rollback of every run this state dir
//! holds whose lease is dead (a run cut short by a crash, `kill -9`, a power cut), so
//! a schedule never starts on a host still half-changed by its previous run.

use super::fire::{audit, Ctx};
use super::record::Died;
use crate::app::{self, RollbackRequest};
use crate::state::RunMeta;

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
        settle_record(ctx, &meta, &outcome);
    }
}

/// The record of the entry that fired a run that died says how it ended.
pub fn settle_record(ctx: &Ctx, meta: &RunMeta, outcome: &str) {
    // How long it ran, as far as its last heartbeat shows (or, in a cluster, until
    // the node that took it over marked it ended).
    let at = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.to_utc())
    };
    let span = match &meta.lease {
        Some(l) => at(&l.since).zip(at(&l.heartbeat)),
        None => at(&meta.started).zip(meta.ended.as_deref().and_then(at)),
    };
    let ms = span.map_or(0, |(a, b)| (b - a).num_milliseconds().max(0) as u64);
    let died = Died {
        run_id: meta.run_id.clone(),
        schedule: meta.schedule.clone(),
        started: at(&meta.started),
        ms,
    };
    for name in ctx.records.settle(&died, outcome) {
        audit(
            ctx,
            "schedule_recovered",
            &name,
            serde_json::json!({"run_id": meta.run_id, "outcome": outcome}),
        );
    }
}
