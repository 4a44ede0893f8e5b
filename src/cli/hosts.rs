//! `tend ping`: reach the inventory's hosts. `tend hosts`: what a pattern selects, how
//! each host is reached, its groups, variables and where the inventory defines it;
//! `--json` one object per host; `--graph` the group tree as `ansible-inventory --graph`
//! draws it.

use super::*;
use crate::app::HostQuery;
use crate::inventory::var_text;

pub(crate) fn ping(cli: &Cli, human: &Human, fleet: &FleetArgs, json: bool) -> Result<i32> {
    let hosts = select_hosts(&config(cli)?, fleet, true)?;
    let results = crate::ping::ping(&hosts, fleet.forks);
    if json {
        for r in &results {
            let mut v = serde_json::to_value(r).map_err(|e| Error::Other(e.to_string()))?;
            v["kind"] = "ping".into();
            outln!("{v}");
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

/// How `tend hosts` shows what it found.
#[derive(Debug, Clone, Copy)]
pub struct Show {
    pub json: bool,
    pub graph: bool,
}

/// `pattern`: the positional pattern, else `-H`, else every host (with no inventory at
/// all, this machine).
pub fn hosts(config: &Config, pattern: Option<&str>, mut q: HostQuery, how: Show) -> Result<i32> {
    if let Some(p) = pattern {
        q.hosts = Some(p.to_string());
    }
    if how.graph {
        let group = q.hosts.as_deref().unwrap_or("all");
        let group = group.strip_prefix('@').unwrap_or(group);
        let inv = app::load_inventory(config, &q)?;
        let Some(text) = inv.graph(group) else {
            return Err(Error::Usage(format!(
                "--graph takes a group name, and there is no group `{group}`; `tend hosts \
                 --graph` shows them all"
            )));
        };
        outln!("{text}");
        return Ok(exit::OK);
    }
    let specs = app::select_hosts(config, &q, true)?;
    if how.json {
        for s in &specs {
            let mut v = serde_json::to_value(s).map_err(|e| Error::Other(e.to_string()))?;
            v["kind"] = "host".into();
            super::history::spec_become(&mut v);
            outln!("{v}");
        }
        return Ok(exit::OK);
    }
    let mut t = table(&["HOST", "REACHED BY", "GROUPS", "VARS", "FROM"]);
    for s in &specs {
        let vars: Vec<String> = s
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={}", var_text(v)))
            .collect();
        let from = if s.source.is_empty() && s.is_local() {
            "built in".to_string()
        } else {
            s.source.clone()
        };
        t.add_row(vec![
            escape(&s.name).into_owned(),
            escape(&s.how()).into_owned(),
            escape(&s.groups.join(",")).into_owned(),
            escape(&vars.join(" ")).into_owned(),
            escape(&from).into_owned(),
        ]);
    }
    outln!("{t}");
    Ok(exit::OK)
}
