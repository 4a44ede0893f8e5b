//! Run records in `tend_runs`. A running run's record carries a lease in the
//! database's time; a record still `running` whose lease ran out is read as
//! `interrupted` (in a cluster the lease decides, not a pid on another machine), so
//! any node may roll it back.

use postgres::Row;

use super::sign::{canonical, Signer};
use super::{Fail, PgStore};
use crate::error::{Error, Result};
use crate::outcome::RunState;
use crate::state::RunMeta;
use crate::store::{JournalStore, RunStore};

/// The record of a row, checked against its signature: one written or changed in
/// the database without the cluster's key (a host pointed elsewhere) is refused.
/// `running` with an expired lease is `interrupted`.
fn meta_of(signer: &Signer, row: &Row) -> std::result::Result<RunMeta, Fail> {
    let value: serde_json::Value = row.get("meta");
    let run_id: String = row.get("run_id");
    if !signer.check(&[&run_id, &canonical(&value)], row.get("mac")) {
        return Err(Error::Other(format!(
            "run record {run_id} (tend_runs) fails its signature: it was written or changed \
             in the database without the cluster key; it is not used"
        ))
        .into());
    }
    let mut meta: RunMeta = serde_json::from_value(value).map_err(|e| {
        Error::Other(format!(
            "run record {} unreadable: {e}",
            row.get::<_, String>("run_id")
        ))
    })?;
    if meta.outcome == RunState::Running && row.get::<_, bool>("expired") {
        meta.outcome = RunState::Interrupted;
    }
    Ok(meta)
}

const SELECT: &str =
    "SELECT run_id, meta, mac, state = 'running' AND lease_until < now() AS expired
                      FROM tend_runs";

impl RunStore for PgStore {
    fn reserve_run_id(&self) -> Result<String> {
        self.pool.with(|c| loop {
            let id = crate::state::new_run_id();
            let n = c.execute(
                "INSERT INTO tend_runs (run_id, node, state) VALUES ($1, $2, 'reserved')
                 ON CONFLICT DO NOTHING",
                &[&id, &self.node],
            )?;
            if n == 1 {
                return Ok(id);
            }
        })
    }

    fn discard(&self, run_id: &str) {
        let gone = self.pool.with(|c| {
            c.execute(
                "DELETE FROM tend_runs WHERE run_id = $1 AND state = 'reserved'",
                &[&run_id],
            )
            .map_err(Fail::from)
        });
        if let Err(e) = gone {
            tracing::warn!("cannot give back run id {run_id}: {e}");
        }
    }

    /// A run is written by the node holding it. Another node writes only the
    /// outcome of its rollback (`tend rollback` of a run that is not running), so a
    /// run taken over is the taker's: the loser's late heartbeat or `interrupted`
    /// is refused.
    fn write(&self, meta: &RunMeta) -> Result<()> {
        let value = serde_json::to_value(meta).map_err(|e| Error::Other(e.to_string()))?;
        let mac = self.signer.sign(&[&meta.run_id, &canonical(&value)]);
        let state = meta.outcome.as_str();
        let n = self.pool.with(|c| {
            c.execute(
                "INSERT INTO tend_runs (run_id, meta, node, state, lease_until, mac)
                 VALUES ($1, $2, $3, $4,
                         CASE WHEN $4 = 'running' THEN now() + make_interval(secs => $5) END, $6)
                 ON CONFLICT (run_id) DO UPDATE SET meta = EXCLUDED.meta, node = EXCLUDED.node,
                     state = EXCLUDED.state, lease_until = EXCLUDED.lease_until,
                     mac = EXCLUDED.mac
                 WHERE tend_runs.node = EXCLUDED.node OR tend_runs.state = 'reserved'
                    OR (EXCLUDED.state IN ('rolled_back', 'rollback_incomplete')
                        AND NOT (tend_runs.state = 'running' AND tend_runs.lease_until > now()))",
                &[
                    &meta.run_id,
                    &value,
                    &self.node,
                    &state,
                    &self.lease_secs(),
                    &mac,
                ],
            )
            .map_err(Fail::from)
        })?;
        let mut live = self.live.lock().expect("live runs");
        if n == 0 {
            live.remove(&meta.run_id);
            return Err(Error::Other(format!(
                "run {}: another node holds it now (its lease ran out and it was taken over); \
                 this node no longer writes its record",
                meta.run_id
            )));
        }
        if meta.outcome == RunState::Running {
            live.insert(meta.run_id.clone());
        } else {
            live.remove(&meta.run_id);
        }
        Ok(())
    }

    fn read(&self, run_id: &str) -> Result<RunMeta> {
        crate::state::check_run_id(run_id)?;
        self.pool.with(|c| {
            let sql = format!("{SELECT} WHERE run_id = $1 AND meta IS NOT NULL");
            match c.query_opt(&sql, &[&run_id])? {
                Some(row) => meta_of(&self.signer, &row),
                None => Err(Error::UnknownRun(run_id.to_string()).into()),
            }
        })
    }

    /// As the state directory lists them: a run that never wrote its end counts the
    /// steps its journals record.
    fn list(&self) -> Result<Vec<RunMeta>> {
        let mut runs: Vec<RunMeta> = self.pool.with(|c| {
            let sql = format!("{SELECT} WHERE meta IS NOT NULL ORDER BY run_id");
            // One bad record is listed as damaged, not a reason to list nothing.
            Ok(c.query(&sql, &[])?
                .iter()
                .map(|row| {
                    meta_of(&self.signer, row).unwrap_or_else(|e| {
                        if let Fail::Tend(e) = e {
                            tracing::warn!("{e}");
                        }
                        RunMeta::damaged(row.get("run_id"), Vec::new())
                    })
                })
                .collect())
        })?;
        for meta in &mut runs {
            if !meta.dry_run && meta.ended.is_none() || meta.outcome == RunState::Interrupted {
                let mut steps = 0;
                for host in &meta.hosts {
                    steps += JournalStore::read(self, &meta.run_id, host)?.steps_changed();
                }
                meta.changed = meta.changed.max(steps);
            }
        }
        Ok(runs)
    }
}
