//! `tend cluster migrate|status|drain`: the nodes of a cluster sharing one PostgreSQL.

use super::*;

pub(crate) fn cluster(cli: &Cli, human: &Human, cmd: &ClusterCommand) -> Result<i32> {
    let state = state_dir(cli)?;
    let config = config(cli)?;
    let Some(settings) = &config.cluster else {
        return Err(Error::Usage(
            "tend.toml has no [cluster]: this tend uses its state directory, not a cluster \
             (add [cluster] postgres = \"postgres://USER@HOST/DB\")"
                .into(),
        ));
    };
    if let ClusterCommand::Migrate = cmd {
        let pg = crate::store::pg::PgStore::open(settings)?;
        let (from, to) = pg.migrate()?;
        let what = if from == to {
            format!("schema at version {to}, up to date")
        } else {
            format!("schema migrated from version {from} to {to}")
        };
        human.line(&format!("{}: {what}", pg.describe()));
        return Ok(exit::OK);
    }
    // Connecting applies the migrations the database lacks.
    let stores = app::stores_for(&state, &config)?;
    let Some(c) = stores.cluster.clone() else {
        return Err(Error::Other("the cluster store has no cluster view".into()));
    };
    match cmd {
        // Done above, before connecting migrated it.
        ClusterCommand::Migrate => {}
        ClusterCommand::Status { json } => {
            let nodes = c.nodes()?;
            let hashes: std::collections::BTreeSet<&str> = nodes
                .iter()
                .filter(|n| n.alive)
                .map(|n| n.info.schedule_hash.as_str())
                .collect();
            let mismatch = hashes.len() > 1;
            let keys: std::collections::BTreeSet<&str> = nodes
                .iter()
                .filter(|n| n.alive)
                .map(|n| n.key_id.as_str())
                .collect();
            let key_mismatch = keys.len() > 1;
            if *json {
                for n in &nodes {
                    let mut v = serde_json::to_value(n).map_err(|e| Error::Other(e.to_string()))?;
                    v["kind"] = "cluster_node".into();
                    v["schedule_mismatch"] = (mismatch && n.alive).into();
                    v["key_mismatch"] = (key_mismatch && n.alive).into();
                    outln!("{v}");
                }
                return Ok(exit::OK);
            }
            let now = chrono::Utc::now();
            let mut t = table(&[
                "NODE",
                "ADDRESS",
                "VERSION",
                "HEARTBEAT",
                "STATE",
                "RUNS",
                "SCHEDULES",
                "KEY",
            ]);
            for row in nodes.iter().map(|n| {
                let age = (now - n.heartbeat).num_seconds().max(0);
                let mut state = if n.alive { "alive" } else { "DEAD" }.to_string();
                if n.draining {
                    state.push_str(", draining");
                }
                vec![
                    n.info.id.clone(),
                    n.info.address.clone(),
                    n.info.version.clone(),
                    format!("{age}s ago"),
                    state,
                    n.runs_held.to_string(),
                    n.info.schedule_hash.chars().take(12).collect::<String>(),
                    n.key_id.clone(),
                ]
            }) {
                t.add_row(row);
            }
            outln!("{t}");
            if mismatch {
                human.warn(
                    "the live nodes' [[schedule]] sets differ (SCHEDULES column): each node \
                     claims the fires of its own set; make their tend.toml files agree",
                );
            }
            if key_mismatch {
                human.warn(
                    "the live nodes sign with different [cluster] keys (KEY column): none can \
                     read the others' journals or take their runs over; copy the same key \
                     file to every node",
                );
            }
        }
        ClusterCommand::Drain { node, undo } => {
            if !c.set_draining(node, !undo)? {
                let known: Vec<String> = c.nodes()?.into_iter().map(|n| n.info.id).collect();
                return Err(Error::Usage(format!(
                    "no node {node:?} in the cluster; its nodes: {}",
                    known.join(", ")
                )));
            }
            let what = if *undo {
                "claims fires again"
            } else {
                "claims no new fire (its running runs go on)"
            };
            human.line(&format!("node {node} {what}"));
        }
    }
    Ok(exit::OK)
}
