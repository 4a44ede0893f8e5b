//! What the daemons sharing the database agree on: the node registry and its
//! heartbeats (which renew the node's run leases and host locks), fire claims,
//! takeovers of runs whose lease ran out, and each schedule entry's record.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::PgStore;
use crate::error::Result;
use crate::store::{Cluster, ExpiredRun, NodeInfo, NodeStatus, ScheduleState};

impl PgStore {
    /// Renew the leases of the runs and host locks this process holds, without
    /// registering a node (the lease thread of [`PgStore::connect`] does it).
    pub fn renew_leases(&self) -> Result<()> {
        let (runs, held) = self.held();
        self.pool
            .with(|c| Ok(renew(c, &self.node, self.lease_secs(), &runs, &held)?))
    }
}

/// Only leases still valid are renewed: one that ran out is gone for good (its run
/// may be taken over at any moment), whatever this node thinks. And only those of
/// `runs` and `tokens`, which this process holds.
pub(super) fn renew(
    c: &mut impl GenericClient,
    node: &str,
    lease: f64,
    runs: &[String],
    tokens: &[i64],
) -> std::result::Result<(), postgres::Error> {
    c.execute(
        "UPDATE tend_runs SET lease_until = now() + make_interval(secs => $2)
         WHERE node = $1 AND state = 'running' AND lease_until >= now()
               AND run_id = ANY($3)",
        &[&node, &lease, &runs],
    )?;
    c.execute(
        "UPDATE tend_host_locks SET lease_until = now() + make_interval(secs => $2)
         WHERE node = $1 AND lease_until >= now() AND token = ANY($3)",
        &[&node, &lease, &tokens],
    )?;
    Ok(())
}

/// Claims of `(schedule, scheduled time, reason)` for node `$4`: each fire is won by
/// one insert. While a run of the entry goes on another node (its lease alive, the
/// node not draining), only that node may claim the entry's fires, and its own
/// `overlap` rule decides (skip, queue, replace): the rule holds for the cluster.
/// Reports of missed fires are claimed freely.
const CLAIM: &str = "
    INSERT INTO tend_fires (schedule, scheduled_at, node, reason)
    SELECT s, t, $4, r FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS f(s, t, r)
    WHERE r = 'missed' OR NOT EXISTS (
        SELECT 1 FROM tend_runs x
        WHERE x.state = 'running' AND x.meta->>'schedule' = f.s AND x.node <> $4
          AND x.lease_until > now()
          AND NOT EXISTS (SELECT 1 FROM tend_nodes n WHERE n.id = x.node AND n.draining))
    ON CONFLICT DO NOTHING
    RETURNING schedule, scheduled_at";

impl Cluster for PgStore {
    fn node_id(&self) -> &str {
        &self.node
    }

    fn key_id(&self) -> String {
        self.signer.key_id()
    }

    fn prepare(&self) -> Result<()> {
        self.migrate().map(|_| ())
    }

    fn lease(&self) -> std::time::Duration {
        self.lease
    }

    /// In one transaction with [`PgStore::renew_leases`]'s renewal.
    fn heartbeat(&self, me: &NodeInfo) -> Result<bool> {
        self.pool.with(|c| {
            let mut tx = c.transaction()?;
            let lease = self.lease_secs();
            let row = tx.query_one(
                "INSERT INTO tend_nodes (id, address, version, schedule_hash, key_id)
                 VALUES ($1, $2, $3, $4, $6)
                 ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address,
                     version = EXCLUDED.version, schedule_hash = EXCLUDED.schedule_hash,
                     key_id = EXCLUDED.key_id,
                     started = CASE WHEN tend_nodes.heartbeat < now() - make_interval(secs => $5)
                                    THEN now() ELSE tend_nodes.started END,
                     heartbeat = now()
                 RETURNING draining",
                &[
                    &self.node,
                    &me.address,
                    &me.version,
                    &me.schedule_hash,
                    &lease,
                    &self.signer.key_id(),
                ],
            )?;
            let (runs, held) = self.held();
            renew(&mut tx, &self.node, lease, &runs, &held)?;
            tx.commit()?;
            Ok(row.get(0))
        })
    }

    fn claim_fire(&self, schedule: &str, at: DateTime<Utc>, reason: &str) -> Result<bool> {
        let won = self.claim_fires(&[(schedule.to_string(), at, reason.to_string())])?;
        Ok(won.first().copied().unwrap_or(false))
    }

    fn claim_fires(&self, fires: &[(String, DateTime<Utc>, String)]) -> Result<Vec<bool>> {
        if fires.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = fires.iter().map(|f| f.0.as_str()).collect();
        let times: Vec<DateTime<Utc>> = fires.iter().map(|f| f.1).collect();
        let reasons: Vec<&str> = fires.iter().map(|f| f.2.as_str()).collect();
        let won: std::collections::HashSet<(String, DateTime<Utc>)> = self.pool.with(|c| {
            let rows = c.query(CLAIM, &[&names, &times, &reasons, &self.node])?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        Ok(fires
            .iter()
            .map(|(s, at, _)| won.contains(&(s.clone(), *at)))
            .collect())
    }

    fn paused(&self) -> Result<Vec<String>> {
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT name FROM tend_schedule_state WHERE (state->>'paused')::boolean",
                &[],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn fire_ran(&self, schedule: &str, at: DateTime<Utc>, run_id: &str) -> Result<()> {
        self.pool.with(|c| {
            c.execute(
                "UPDATE tend_fires SET run_id = $3 WHERE schedule = $1 AND scheduled_at = $2",
                &[&schedule, &at, &run_id],
            )?;
            Ok(())
        })
    }

    fn last_claimed(&self, schedule: &str) -> Result<Option<DateTime<Utc>>> {
        self.pool.with(|c| {
            let row = c.query_one(
                "SELECT max(scheduled_at) FROM tend_fires WHERE schedule = $1",
                &[&schedule],
            )?;
            Ok(row.get(0))
        })
    }

    fn nodes(&self) -> Result<Vec<NodeStatus>> {
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT id, address, version, schedule_hash, key_id, started, heartbeat, draining,
                        heartbeat > now() - make_interval(secs => $1) AS alive,
                        (SELECT count(*) FROM tend_runs r WHERE r.node = n.id
                           AND r.state = 'running' AND r.lease_until > now()) AS runs_held
                 FROM tend_nodes n ORDER BY id",
                &[&self.lease_secs()],
            )?;
            Ok(rows
                .iter()
                .map(|r| NodeStatus {
                    info: NodeInfo {
                        id: r.get("id"),
                        address: r.get("address"),
                        version: r.get("version"),
                        schedule_hash: r.get("schedule_hash"),
                    },
                    started: r.get("started"),
                    heartbeat: r.get("heartbeat"),
                    alive: r.get("alive"),
                    draining: r.get("draining"),
                    runs_held: r.get::<_, i64>("runs_held") as u64,
                    key_id: r.get("key_id"),
                })
                .collect())
        })
    }

    fn set_draining(&self, node: &str, on: bool) -> Result<bool> {
        self.pool.with(|c| {
            let n = c.execute(
                "UPDATE tend_nodes SET draining = $2 WHERE id = $1",
                &[&node, &on],
            )?;
            Ok(n == 1)
        })
    }

    fn expired_runs(&self) -> Result<Vec<ExpiredRun>> {
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT run_id, node FROM tend_runs
                 WHERE state = 'running' AND lease_until < now() ORDER BY run_id",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| ExpiredRun {
                    run_id: r.get(0),
                    node: r.get(1),
                })
                .collect())
        })
    }

    fn take_over(&self, run_id: &str) -> Result<bool> {
        self.pool.with(|c| {
            let n = c.execute(
                "UPDATE tend_runs SET node = $2, lease_until = now() + make_interval(secs => $3)
                 WHERE run_id = $1 AND state = 'running' AND lease_until < now()",
                &[&run_id, &self.node, &self.lease_secs()],
            )?;
            // Held by this process until its rollback ends: should it die meanwhile,
            // the lease runs out again and another node takes the run over.
            if n == 1 {
                self.live
                    .lock()
                    .expect("live runs")
                    .insert(run_id.to_string());
            }
            Ok(n == 1)
        })
    }

    fn schedule_state(&self, name: &str) -> Result<Option<serde_json::Value>> {
        self.pool.with(|c| {
            let row = c.query_opt(
                "SELECT state FROM tend_schedule_state WHERE name = $1",
                &[&name],
            )?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn update_schedule_state(
        &self,
        name: &str,
        change: &mut dyn FnMut(Option<serde_json::Value>) -> serde_json::Value,
    ) -> Result<i64> {
        self.pool.with(|c| {
            let mut tx = c.transaction()?;
            // Creates the row when there is none, so that there is a row to lock.
            let row = tx.query_one(
                "INSERT INTO tend_schedule_state (name, state) VALUES ($1, '{}')
                 ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
                 RETURNING state, version",
                &[&name],
            )?;
            let version: i64 = row.get(1);
            let stored = (version > 0).then(|| row.get(0));
            let state = change(stored);
            let row = tx.query_one(
                "UPDATE tend_schedule_state SET state = $2, version = version + 1,
                     updated_at = now()
                 WHERE name = $1 RETURNING version",
                &[&name, &state],
            )?;
            tx.commit()?;
            Ok(row.get(0))
        })
    }

    fn schedule_states(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<(Vec<ScheduleState>, DateTime<Utc>)> {
        self.pool.with(|c| {
            let now: DateTime<Utc> = c.query_one("SELECT now()", &[])?.get(0);
            let rows = c.query(
                "SELECT name, version, state FROM tend_schedule_state
                 WHERE version > 0 AND ($1::timestamptz IS NULL OR updated_at >= $1)
                 ORDER BY name",
                &[&since],
            )?;
            let states = rows
                .iter()
                .map(|r| ScheduleState {
                    name: r.get(0),
                    version: r.get(1),
                    state: r.get(2),
                })
                .collect();
            Ok((states, now))
        })
    }
}
