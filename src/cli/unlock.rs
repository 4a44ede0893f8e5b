//! `tend unlock HOST`: release the host locks of a run that died.

use super::*;

pub(crate) fn unlock(
    cli: &Cli,
    human: &Human,
    actor: &Actor,
    host: &str,
    force: bool,
    fleet: &FleetArgs,
    json: bool,
) -> Result<i32> {
    let state = state_dir(cli)?;
    let fleet = FleetArgs {
        hosts: Some(host.to_string()),
        ..fleet.clone()
    };
    let config = config(cli)?;
    let specs = select_hosts(&config, &fleet, false)?;
    let [spec] = specs.as_slice() else {
        return Err(Error::Usage(format!(
            "{host:?} names {} hosts; unlock one at a time",
            specs.len()
        )));
    };
    let found = app::unlock(&stores(cli, &state)?, actor, spec, force)?;
    let mut code = exit::OK;
    for u in &found {
        if !u.released {
            code = exit::LOCKED;
        }
        if json {
            let mut v = serde_json::to_value(u).unwrap_or_default();
            v["kind"] = "unlock".into();
            outln!("{v}");
            continue;
        }
        let what = if u.released {
            format!(
                "released the lock of {} ({}) held by {}; its changes were not rolled back: `tend rollback {}` if they should be",
                u.host, u.lock, u.holder.describe(), u.holder.run_id
            )
        } else {
            format!(
                "kept the lock of {} ({}): held by {}, which is alive{}",
                u.host,
                u.lock,
                u.holder.describe(),
                if u.holder.liveness() == crate::lease::Liveness::Unknown {
                    " or on another machine (--force releases it)"
                } else {
                    ""
                }
            )
        };
        human.line(&escape(&what));
    }
    if found.is_empty() && !json {
        human.line(&format!("{host} is not locked"));
    }
    Ok(code)
}
