//! What happened: `tend runs`, `tend audit show|verify|anchor`, and undoing a run
//! with `tend rollback`.

use super::*;

pub(crate) fn rollback(
    cli: &Cli,
    human: &Human,
    actor: &Actor,
    req: &app::RollbackRequest,
    json: bool,
) -> Result<i32> {
    let state = state_dir(cli)?;
    let config = config(cli)?;
    let stores = app::stores_for(&state, &config)?;
    let req = &app::RollbackRequest {
        run_id: crate::state::resolve_run_id_in(|| stores.runs.list(), &req.run_id, true)?,
        ..req.clone()
    };
    let (sink, out) = sink_for(json, human, req.dry_run);
    let report = app::rollback(&stores, actor, req, sink)?;
    if !req.dry_run {
        send_anchor(&config.audit, human, &state, &req.run_id);
    }
    out.rollback_summary(&req.run_id, &report, req.dry_run);
    Ok(if report.incomplete.is_empty() {
        exit::OK
    } else {
        exit::ROLLBACK_INCOMPLETE
    })
}

pub(crate) fn runs(cli: &Cli, human: &Human, limit: usize, json: bool) -> Result<i32> {
    let state = state_dir(cli)?;
    let runs = stores(cli, &state)?.runs.list()?;
    let skip = runs.len().saturating_sub(limit);
    let runs = &runs[skip..];
    let held: Vec<u64> = runs.iter().map(|r| app::held_bytes(&state, r)).collect();
    if json {
        for (r, held) in runs.iter().zip(&held) {
            let mut v = serde_json::to_value(r).map_err(|e| Error::Other(e.to_string()))?;
            v["outcome"] = r.effective_outcome().as_str().into();
            v["held_bytes"] = (*held).into();
            v["kind"] = "run".into();
            json_targets(&mut v);
            outln!("{v}");
        }
    } else {
        human.runs_table(runs, &held);
    }
    Ok(exit::OK)
}

pub(crate) fn audit(cli: &Cli, human: &Human, cmd: &AuditCommand) -> Result<i32> {
    let state = state_dir(cli)?;
    let stores = stores(cli, &state)?;
    let log = stores.audit.clone();
    match cmd {
        AuditCommand::Show { run_id, json } => {
            let run_id = &match run_id {
                Some(id) => Some(crate::state::resolve_run_id_in(
                    || stores.runs.list(),
                    id,
                    false,
                )?),
                None => None,
            };
            let events = log.read(run_id.as_deref())?;
            if run_id.is_some() && events.is_empty() {
                return Err(Error::UnknownRun(run_id.clone().unwrap_or_default()));
            }
            if *json {
                for e in &events {
                    outln!("{e}");
                }
            } else {
                human.audit_table(&events);
            }
        }
        AuditCommand::Verify { anchor, json } => {
            let now = log.verify(anchor.as_ref())?;
            if *json {
                let v = serde_json::json!({
                    "kind": "audit_verify", "path": log.describe(),
                    "lines": now.count, "intact": true, "head": now.to_string(),
                    "anchor": anchor.as_ref().map(|a| a.to_string()),
                });
                outln!("{v}");
                return Ok(exit::OK);
            }
            let held = match anchor {
                Some(a) => format!(", anchor {a} holds"),
                None => String::new(),
            };
            human.line(&format!(
                "{}: {} lines, chain intact{held}",
                log.describe(),
                now.count
            ));
        }
        AuditCommand::Anchor { json } => {
            // Anchoring a log that was already edited would vouch for the edit.
            let anchor = log.verify(None)?;
            if *json {
                let v = serde_json::json!({
                    "kind": "audit_anchor", "anchor": anchor.to_string(),
                    "hash": anchor.hash, "count": anchor.count,
                });
                outln!("{v}");
            } else {
                outln!("{anchor}");
            }
        }
        AuditCommand::Export => {
            // Verified first: an export is what others will trust.
            log.verify(None)?;
            let mut out = std::io::stdout().lock();
            log.export(&mut out)?;
        }
    }
    Ok(exit::OK)
}

/// A run record's `targets` as `--json` shows them: `become` beside the Rust-named
/// `become_` of run.json (kept: scripts may read it; docs/json.md marks it deprecated).
fn json_targets(run: &mut serde_json::Value) {
    let Some(targets) = run.get_mut("targets").and_then(|t| t.as_array_mut()) else {
        return;
    };
    targets.iter_mut().for_each(spec_become);
}

/// `become` beside `become_` in a host spec and its jump hosts (`tend runs`, `tend hosts`).
pub(crate) fn spec_become(spec: &mut serde_json::Value) {
    let mut stack: Vec<&mut serde_json::Value> = vec![spec];
    while let Some(t) = stack.pop() {
        if let Some(b) = t.get("become_").cloned() {
            t["become"] = b;
        }
        if let Some(jump) = t.get_mut("proxy_jump").filter(|j| j.is_object()) {
            stack.push(jump);
        }
    }
}
