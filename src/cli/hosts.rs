//! `tend ping` and `tend hosts`: reach the inventory's hosts, list them.

use super::*;

pub(crate) fn ping(cli: &Cli, human: &Human, fleet: &FleetArgs, json: bool) -> Result<i32> {
    let hosts = select_hosts(&config(cli)?, fleet, true)?;
    let results = crate::ping::ping(&hosts, fleet.forks);
    if json {
        for r in &results {
            outln!(
                "{}",
                serde_json::to_string(r).map_err(|e| Error::Other(e.to_string()))?
            );
        }
    } else {
        human.ping_table(&results);
    }
    Ok(if results.iter().all(|r| r.ok) {
        exit::OK
    } else {
        exit::FAILED
    })
}

pub(crate) fn hosts(
    cli: &Cli,
    pattern: Option<&str>,
    fleet: &FleetArgs,
    json: bool,
) -> Result<i32> {
    let mut fleet = fleet.clone();
    fleet.hosts = Some(pattern.unwrap_or("all").to_string());
    let specs = select_hosts(&config(cli)?, &fleet, true)?;
    if json {
        for s in &specs {
            outln!(
                "{}",
                serde_json::to_string(s).map_err(|e| Error::Other(e.to_string()))?
            );
        }
    } else {
        let mut t = table(&["HOST", "REACHED BY", "VARS"]);
        for s in &specs {
            let vars: Vec<String> = s.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
            t.add_row(vec![
                escape(&s.name).into_owned(),
                escape(&s.how()).into_owned(),
                escape(&vars.join(" ")).into_owned(),
            ]);
        }
        outln!("{t}");
    }
    Ok(exit::OK)
}
