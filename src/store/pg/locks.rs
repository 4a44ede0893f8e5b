//! Host locks in `tend_host_locks`: held by a run on a node until released or until
//! the node's lease runs out (its heartbeat renews it). Every taking of a lock gets a
//! newer fencing token from `tend_fencing`; the run's journal appends carry it.
//!
//! A lock whose lease ran out still bars other runs, as a stale lock file does: its
//! run's changes were not rolled back. Only that run's rollback (`Take::take_over`)
//! takes it.

use std::sync::{Arc, Mutex};

use super::{Fail, PgStore, Pool};
use crate::error::{Error, Result};
use crate::lock::{Holder, Take};
use crate::store::HostLocks;

type Tokens = Arc<Mutex<std::collections::HashMap<(String, String), i64>>>;

/// Releases the lock when dropped, if it is still this token's.
struct Guard {
    pool: Arc<Pool>,
    tokens: Tokens,
    key: (String, String),
    token: i64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.tokens.lock().expect("tokens").remove(&self.key);
        let released = self.pool.with(|c| {
            c.execute(
                "DELETE FROM tend_host_locks WHERE host = $1 AND token = $2",
                &[&self.key.1, &self.token],
            )
            .map_err(Fail::from)
        });
        if let Err(e) = released {
            tracing::warn!("cannot release the lock of {}: {e}", self.key.1);
        }
    }
}

/// Why the lock of `host` is not `me`'s: who holds it, and what to do.
fn refusal(host: &str, holder: (Holder, String, bool)) -> Error {
    let holder = match holder {
        (h, node, true) => format!(
            "another run, {} on node {node}; wait for it (`--wait 10m`)",
            h.describe()
        ),
        (h, node, false) => format!(
            "a stale lease: {} on node {node} lost its lease without releasing it, and its \
             changes were not rolled back; `tend rollback {}` undoes them and releases the lock \
             (or `tend unlock {host}` to leave them)",
            h.describe(),
            h.run_id
        ),
    };
    Error::Locked {
        host: host.to_string(),
        holder,
    }
}

impl PgStore {
    /// One try: the token when the lock is now `me`'s.
    fn try_lock(&self, host: &str, me: &Holder, take: &Take) -> Result<Option<i64>> {
        let holder = serde_json::to_value(me).map_err(|e| Error::Other(e.to_string()))?;
        self.pool.with(|c| {
            let row = c.query_opt(
                "INSERT INTO tend_host_locks (host, run_id, node, token, holder, lease_until)
                 VALUES ($1, $2, $3, nextval('tend_fencing'), $4,
                         now() + make_interval(secs => $5))
                 ON CONFLICT (host) DO UPDATE SET run_id = EXCLUDED.run_id,
                     node = EXCLUDED.node, token = EXCLUDED.token, holder = EXCLUDED.holder,
                     lease_until = EXCLUDED.lease_until
                 WHERE (tend_host_locks.run_id = EXCLUDED.run_id
                        AND tend_host_locks.node = EXCLUDED.node)
                    OR (tend_host_locks.lease_until < now() AND tend_host_locks.run_id = $6)
                 RETURNING token",
                &[
                    &host,
                    &me.run_id,
                    &self.node,
                    &holder,
                    &self.lease_secs(),
                    &take.take_over,
                ],
            )?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn held_by(&self, host: &str) -> Result<Option<(Holder, String, bool, i64)>> {
        self.pool.with(|c| {
            let Some(row) = c.query_opt(
                "SELECT holder, node, lease_until > now(), token FROM tend_host_locks
                 WHERE host = $1",
                &[&host],
            )?
            else {
                return Ok(None);
            };
            let holder: Holder = serde_json::from_value(row.get(0)).map_err(|e| {
                Error::Other(format!("the lock of {host} has an unreadable holder: {e}"))
            })?;
            Ok(Some((holder, row.get(1), row.get(2), row.get(3))))
        })
    }
}

impl HostLocks for PgStore {
    fn lock(&self, host: &str, me: &Holder, take: &Take) -> Result<Box<dyn Send + Sync>> {
        let deadline = take.deadline();
        loop {
            if let Some(token) = self.try_lock(host, me, take)? {
                let key = (me.run_id.clone(), host.to_string());
                self.tokens
                    .lock()
                    .expect("tokens")
                    .insert(key.clone(), token);
                return Ok(Box::new(Guard {
                    pool: self.pool.clone(),
                    tokens: self.tokens.clone(),
                    key,
                    token,
                }));
            }
            if crate::lock::waiting(deadline, take.cancel.as_ref()) {
                continue;
            }
            match self.held_by(host)? {
                // Released since: try again.
                None => continue,
                Some((h, node, alive, _)) => return Err(refusal(host, (h, node, alive))),
            }
        }
    }

    fn holder(&self, host: &str, clear: bool) -> Result<Option<(Holder, bool)>> {
        let Some((holder, _, alive, token)) = self.held_by(host)? else {
            return Ok(None);
        };
        if clear && !alive {
            self.pool.with(|c| {
                c.execute(
                    "DELETE FROM tend_host_locks WHERE host = $1 AND token = $2",
                    &[&host, &token],
                )?;
                Ok(())
            })?;
        }
        Ok(Some((holder, alive)))
    }
}
