//! The audit log in `tend_audit`: one hash chain for every node. Appends take the
//! head row `FOR UPDATE`, so they are serialized in the database; each row's `line`
//! is byte for byte a line of the embedded log (same chaining, same canonical JSON,
//! see [`crate::audit`]), so `tend audit export` writes the same JSON Lines.

use std::path::PathBuf;

use serde_json::Value;

use super::{Fail, PgStore};
use crate::audit::{check_line, checked_events, Anchor, Tail, GENESIS};
use crate::error::{Error, Result};
use crate::store::AuditStore;

impl PgStore {
    fn tampered(&self, message: String) -> Error {
        Error::Tampered {
            path: PathBuf::from(AuditStore::describe(self)),
            message,
        }
    }
}

impl AuditStore for PgStore {
    fn append_many(&self, records: Vec<Value>) -> Result<u64> {
        let objects = checked_events(records).map_err(|message| Error::Audit {
            path: PathBuf::from(AuditStore::describe(self)),
            message,
        })?;
        self.pool.with(|c| {
            let mut tx = c.transaction()?;
            let head = tx.query_one(
                "SELECT seq, hash FROM tend_audit_head WHERE id = 1 FOR UPDATE",
                &[],
            )?;
            let (seq, hash): (i64, String) = (head.get(0), head.get(1));
            let tail = (seq > 0).then_some(Tail {
                seq: seq as u64,
                hash,
            });
            let first = seq + 1;
            let (lines, tail) = crate::audit::chain(objects, tail);
            let seqs: Vec<i64> = (first..first + lines.len() as i64).collect();
            tx.execute(
                "INSERT INTO tend_audit (seq, line) SELECT * FROM unnest($1::bigint[], $2::text[])",
                &[&seqs, &lines],
            )?;
            tx.execute(
                "UPDATE tend_audit_head SET seq = $1, hash = $2 WHERE id = 1",
                &[&(tail.seq as i64), &tail.hash],
            )?;
            tx.commit()?;
            Ok(tail.seq)
        })
    }

    fn read(&self, run_id: Option<&str>) -> Result<Vec<Value>> {
        self.pool.with(|c| {
            let rows = c.query(
                "SELECT seq, line FROM tend_audit
                 WHERE $1::text IS NULL OR line::jsonb ->> 'run_id' = $1 ORDER BY seq",
                &[&run_id],
            )?;
            rows.iter()
                .map(|r| {
                    serde_json::from_str(r.get(1)).map_err(|_| {
                        Fail::Tend(Error::Audit {
                            path: PathBuf::from(AuditStore::describe(self)),
                            message: format!(
                                "row seq {} is not valid JSON; run `tend audit verify`",
                                r.get::<_, i64>(0)
                            ),
                        })
                    })
                })
                .collect()
        })
    }

    fn verify(&self, anchor: Option<&Anchor>) -> Result<Anchor> {
        let (rows, head) = self.pool.with(|c| {
            // One snapshot: the rows and the head as one commit left them.
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let rows: Vec<(i64, String)> = tx
                .query("SELECT seq, line FROM tend_audit ORDER BY seq", &[])?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let head = tx.query_opt("SELECT seq, hash FROM tend_audit_head WHERE id = 1", &[])?;
            let head: Option<(i64, String)> = head.map(|r| (r.get(0), r.get(1)));
            tx.commit()?;
            Ok((rows, head))
        })?;
        let mut last: Option<Tail> = None;
        for (seq, line) in &rows {
            let tail = check_line(*seq as u64, line.as_bytes(), last.as_ref(), |n| {
                format!("row seq {n}")
            })
            .map_err(|e| self.tampered(e))?;
            if tail.seq != *seq as u64 {
                return Err(self.tampered(format!(
                    "row seq {seq}: its line says seq {} (rows renumbered)",
                    tail.seq
                )));
            }
            if let Some(a) = anchor.filter(|a| a.count == tail.seq && a.hash != tail.hash) {
                return Err(self.tampered(format!(
                    "row seq {seq} does not carry the hash of anchor {a} \
                     (the log was rewritten up to or before that row)"
                )));
            }
            last = Some(tail);
        }
        let (last_seq, last_hash) = last
            .as_ref()
            .map_or((0, GENESIS), |t| (t.seq, t.hash.as_str()));
        match &head {
            None => return Err(self.tampered("the head row (tend_audit_head) is missing".into())),
            Some((seq, _)) if *seq as u64 != last_seq => {
                return Err(self.tampered(format!(
                    "the log ends at seq {last_seq} but its head row says {seq} \
                     (rows removed from the end)"
                )))
            }
            Some((_, hash)) if hash != last_hash => {
                return Err(self
                    .tampered("the last row's hash differs from the head row's (edited)".into()))
            }
            Some(_) => {}
        }
        if let Some(a) = anchor.filter(|a| a.count > last_seq) {
            return Err(self.tampered(format!(
                "the log has {last_seq} rows but anchor {a} was taken when it had {} \
                 (rows removed from the end and the head row rewritten to match)",
                a.count
            )));
        }
        Ok(Anchor {
            hash: last_hash.to_string(),
            count: last_seq,
        })
    }

    fn export(&self, out: &mut dyn std::io::Write) -> Result<u64> {
        let lines: Vec<String> = self.pool.with(|c| {
            let rows = c.query("SELECT line FROM tend_audit ORDER BY seq", &[])?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        for line in &lines {
            out.write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| Error::io("cannot write the export", e))?;
        }
        Ok(lines.len() as u64)
    }

    fn describe(&self) -> String {
        format!("{} (tend_audit)", self.describe())
    }
}
