//! Journals in `tend_journal`, one row per line of the journal file's format. Every
//! append is fenced in its own statement: it is written only while the run's host
//! lock still carries this process's token and its lease has not run out, so a node
//! that lost the host to a takeover cannot write another undo record.

use std::sync::Arc;

use super::sign::Signer;
use super::{Fail, PgStore, Pool};
use crate::error::{Error, Result};
use crate::journal::{Contents, Journal, JournalWrite, LineSink};
use crate::store::JournalStore;

/// The lines of one host's journal in one run, appended under the host lock.
struct Fenced {
    pool: Arc<Pool>,
    signer: Arc<Signer>,
    run_id: String,
    host: String,
    token: i64,
}

impl LineSink for Fenced {
    /// Every line is a durable commit (synchronous_commit), `durable` or not.
    fn write_line(&self, line: &str, _durable: bool) -> std::io::Result<()> {
        let n = self
            .pool
            .with(|c| {
                c.execute(
                    "INSERT INTO tend_journal (run_id, host, line, mac) SELECT $1, $2, $3, $5
                     WHERE EXISTS (SELECT 1 FROM tend_host_locks
                                   WHERE host = $2 AND token = $4 AND lease_until > now())",
                    &[
                        &self.run_id,
                        &self.host,
                        &line,
                        &self.token,
                        &self.signer.sign(&[&self.run_id, &self.host, line]),
                    ],
                )
                .map_err(Fail::from)
            })
            .map_err(std::io::Error::other)?;
        if n == 0 {
            return Err(std::io::Error::other(format!(
                "fenced: the lock of host {} is no longer this run's (another node took it \
                 over, or this node's lease expired); no further change is made",
                self.host
            )));
        }
        Ok(())
    }
}

/// The journal's text, every line checked against its signature: one written or
/// edited by something without the cluster's key is refused, named, and nothing is
/// replayed from the journal.
fn text_of(pool: &Pool, signer: &Signer, run_id: &str, host: &str) -> Result<String> {
    let rows = pool.with(|c| {
        Ok(c.query(
            "SELECT n, line, mac FROM tend_journal WHERE run_id = $1 AND host = $2 ORDER BY n",
            &[&run_id, &host],
        )?)
    })?;
    let mut text = String::new();
    for row in rows {
        let line: &str = row.get(1);
        if !signer.check(&[run_id, host, line], row.get(2)) {
            let n: i64 = row.get(0);
            return Err(Error::Other(format!(
                "the journal of run {run_id} on {host} (tend_journal row n = {n}) fails its \
                 signature: it was written or changed in the database without the cluster \
                 key; nothing is replayed from it"
            )));
        }
        text.push_str(line);
        text.push('\n');
    }
    Ok(text)
}

impl JournalStore for PgStore {
    fn open(&self, run_id: &str, host: &str) -> Result<Arc<dyn JournalWrite>> {
        let key = (run_id.to_string(), host.to_string());
        let Some(token) = self.tokens.lock().expect("tokens").get(&key).copied() else {
            return Err(Error::Other(format!(
                "journal of {host} in run {run_id}: this process holds no lock of {host} for \
                 that run, and a journal is only written under the host lock"
            )));
        };
        let existing = Journal::parse(&text_of(&self.pool, &self.signer, run_id, host)?);
        let lines = Fenced {
            pool: self.pool.clone(),
            signer: self.signer.clone(),
            run_id: key.0,
            host: key.1,
            token,
        };
        Ok(Arc::new(Journal::over(Box::new(lines), &existing)))
    }

    fn read(&self, run_id: &str, host: &str) -> Result<Contents> {
        Ok(Journal::parse(&text_of(
            &self.pool,
            &self.signer,
            run_id,
            host,
        )?))
    }

    fn exists(&self, run_id: &str, host: &str) -> bool {
        self.pool
            .with(|c| {
                let row = c.query_opt(
                    "SELECT 1 FROM tend_journal WHERE run_id = $1 AND host = $2 LIMIT 1",
                    &[&run_id, &host],
                )?;
                Ok(row.is_some())
            })
            .unwrap_or(false)
    }

    fn describe(&self, run_id: &str, host: &str) -> String {
        format!(
            "{} (tend_journal: run {run_id}, host {host})",
            self.describe()
        )
    }
}
