//! The cluster database's schema: embedded, numbered migrations, applied in one
//! transaction under an advisory lock (several daemons starting at once apply each
//! exactly once). A database newer than this tend is refused, never downgraded.

use postgres::Client;

use super::Fail;
use crate::error::Error;

/// Any fixed number: every tend takes the same advisory lock to migrate.
const LOCK_KEY: i64 = 0x7465_6e64_5f6d_6967; // "tend_mig"

/// `(version, SQL)`, in order. Never edit one that was released: add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("schema_1.sql")),
    (2, include_str!("schema_2.sql")),
];

/// The schema version this tend knows up to.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Bring the schema up to date: `(from, to)`.
pub(super) fn apply(client: &mut Client) -> Result<(i32, i32), Fail> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS tend_schema (
             id smallint PRIMARY KEY CHECK (id = 1),
             version integer NOT NULL
         );
         INSERT INTO tend_schema VALUES (1, 0) ON CONFLICT DO NOTHING;",
    )?;
    let from: i32 = tx
        .query_one("SELECT version FROM tend_schema WHERE id = 1", &[])?
        .get(0);
    if from > latest() {
        return Err(Fail::Tend(Error::Other(format!(
            "the cluster database is at schema {from}; this tend knows up to {}: upgrade tend",
            latest()
        ))));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > from) {
        tx.batch_execute(sql)?;
        tx.execute(
            "UPDATE tend_schema SET version = $1 WHERE id = 1",
            &[version],
        )?;
    }
    tx.commit()?;
    Ok((from, latest()))
}
