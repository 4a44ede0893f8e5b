//! The cluster store: every store trait on one PostgreSQL database shared by several
//! daemons (`[cluster]` in tend.toml). Each table is `tend_*`; the schema is tend's
//! own, migrated at connect ([`migrate`]). Leases are compared with the database's
//! clock (`now()`), never a node's, so nodes whose clocks differ still agree.
//!
//! One module per store: [`runs`], [`journal`] (appends fenced by the host lock's
//! token), [`locks`], [`audit`] (one chain for all nodes), [`cluster`].

mod audit;
mod cluster;
mod connect;
mod journal;
mod locks;
pub mod migrate;
mod runs;
mod sign;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::Client;

use super::{ClusterSettings, Stores};
use crate::error::{Error, Result};
use crate::state::StateDir;

/// Connections kept open for reuse; more are opened when threads need them at once.
const IDLE: usize = 4;

/// A connection to the cluster database, shared by every store of this process.
pub struct PgStore {
    pool: Arc<Pool>,
    node: String,
    lease: Duration,
    /// The fencing token of each host lock this process holds, by (run, host): a
    /// journal append carries it, and the database refuses it once it is not current.
    tokens: Arc<Mutex<HashMap<(String, String), i64>>>,
    /// The runs this process is running: only their leases are renewed. A run this
    /// node left behind (a crash, a restart within the lease, a final record that
    /// could not be written) is not, so its lease runs out and it is rolled back.
    live: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Signs journal lines and run records; a row that fails its check is refused.
    signer: Arc<sign::Signer>,
}

impl PgStore {
    /// Connect as `[cluster]` says and bring the schema up to date.
    pub fn connect(settings: &ClusterSettings) -> Result<PgStore> {
        let store = Self::open(settings)?;
        store.migrate()?;
        Ok(store)
    }

    /// Connect, and leave the schema as it is (`tend cluster migrate` says what it
    /// applies).
    pub fn open(settings: &ClusterSettings) -> Result<PgStore> {
        let pool = connect::pool(settings)?;
        let signer = sign::Signer::from_reference(settings.key.as_deref())?;
        pool.set_backoff(settings.lease() / 4);
        let store = PgStore {
            pool: Arc::new(pool),
            node: settings.node_id(),
            lease: settings.lease(),
            tokens: Arc::default(),
            live: Arc::default(),
            signer: Arc::new(signer),
        };
        Ok(store)
    }

    /// Renew, every lease/3 while this process lives, the leases of the runs and
    /// host locks it holds: a `tend run` in cluster mode as much as a daemon (whose
    /// heartbeat also does it, with the node's row).
    /// Started by the application for every process that works on the cluster; a
    /// store without it holds its leases only through `Cluster::heartbeat` and
    /// [`PgStore::renew_leases`] (as the store's own tests want, to let one expire).
    pub fn keep_leases(&self) -> Result<()> {
        let pool = Arc::downgrade(&self.pool);
        let (node, lease) = (self.node.clone(), self.lease);
        let (live, tokens) = (self.live.clone(), self.tokens.clone());
        std::thread::Builder::new()
            .name("tend-pg-leases".into())
            .spawn(move || loop {
                std::thread::sleep(lease / 3);
                let Some(pool) = pool.upgrade() else { return };
                let (runs, held) = held(&live, &tokens);
                if runs.is_empty() && held.is_empty() {
                    continue;
                }
                let renewed =
                    pool.with(|c| Ok(cluster::renew(c, &node, lease.as_secs_f64(), &runs, &held)?));
                if let Err(e) = renewed {
                    tracing::warn!("cannot renew the leases of this process's runs: {e}");
                }
            })
            .map_err(|e| Error::io("cannot start the lease renewal thread", e))?;
        Ok(())
    }

    /// The run ids and lock tokens this process holds now.
    fn held(&self) -> (Vec<String>, Vec<i64>) {
        held(&self.live, &self.tokens)
    }

    /// Apply the migrations this tend has and the database lacks: `(from, to)`
    /// schema versions.
    pub fn migrate(&self) -> Result<(i32, i32)> {
        self.pool.with(migrate::apply)
    }

    /// `postgres HOST:PORT/DB`, for messages (never the password).
    pub fn describe(&self) -> String {
        format!("postgres {}", self.pool.place)
    }

    /// The lease as an SQL interval in seconds (`now() + make_interval(secs => $n)`).
    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }
}

impl Stores {
    /// Every store in the cluster database; `state` still keeps this machine's trust
    /// file and the backups of changes made on this machine.
    pub fn cluster(state: &StateDir, store: Arc<PgStore>) -> Stores {
        Stores {
            runs: store.clone(),
            journals: store.clone(),
            audit: store.clone(),
            locks: store.clone(),
            cluster: Some(store),
            state: state.clone(),
        }
    }
}

/// `e` for people: what the server said (`FATAL: password authentication failed
/// for user "tend"`), not just "db error".
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

/// Whether `e` is the connection failing (closed, or an I/O error), not the server
/// refusing a statement.
fn lost(e: &postgres::Error) -> bool {
    e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

type Live = Mutex<std::collections::HashSet<String>>;
type Tokens = Mutex<HashMap<(String, String), i64>>;

fn held(live: &Live, tokens: &Tokens) -> (Vec<String>, Vec<i64>) {
    let runs = live.lock().expect("live runs").iter().cloned().collect();
    let held = tokens.lock().expect("tokens").values().copied().collect();
    (runs, held)
}

/// Why a database call failed: the database (unreachable, or it refused), or tend.
enum Fail {
    Db(postgres::Error),
    Tend(Error),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Db(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Tend(e)
    }
}

/// A few open connections. A connection that broke is dropped; the next call opens
/// a new one.
struct Pool {
    config: postgres::Config,
    tls: postgres_native_tls::MakeTlsConnector,
    idle: Mutex<Vec<Client>>,
    /// `HOST:PORT/DB`.
    place: String,
    backoff: Mutex<Backoff>,
}

/// After a connection attempt fails, the next waits: 0.5 s, doubling up to `max`.
/// Every thread of a node calls the database (claims, records, audit, journals); while
/// it is down they fail at once instead of each waiting out a connect timeout, and
/// the server coming back is not met by a storm of attempts.
struct Backoff {
    /// No attempt before this; the error of the last attempt.
    until: Option<(std::time::Instant, String)>,
    next: Duration,
    max: Duration,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff {
            until: None,
            next: FIRST_BACKOFF.min(max),
            max,
        }
    }
}

impl Pool {
    /// At most `max` between attempts once the database is unreachable: a node's
    /// heartbeat (every lease/3) must still get through soon after it is back.
    fn set_backoff(&self, max: Duration) {
        *self.backoff.lock().expect("backoff") = Backoff::new(max);
    }

    fn connect(&self) -> Result<Client> {
        let mut b = self.backoff.lock().expect("backoff");
        if let Some((until, why)) = &b.until {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if !left.is_zero() {
                return Err(Error::Unavailable(format!(
                    "cannot connect to postgres {}: {why} (next attempt in {:.1} s)",
                    self.place,
                    left.as_secs_f64()
                )));
            }
        }
        // Attempts are serialized: one thread finds out, the others wait for it.
        match self.config.connect(self.tls.clone()) {
            Ok(c) => {
                *b = Backoff::new(b.max);
                Ok(c)
            }
            Err(e) => {
                let why = describe(&e);
                b.until = Some((std::time::Instant::now() + b.next, why.clone()));
                b.next = (b.next * 2).min(b.max);
                let message = format!("cannot connect to postgres {}: {why}", self.place);
                // Unreachable, or refused by the server (a password, a database
                // name, TLS): only the first passes by waiting.
                Err(if lost(&e) {
                    Error::Unavailable(message)
                } else {
                    Error::Other(message)
                })
            }
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Client) -> std::result::Result<T, Fail>) -> Result<T> {
        let reused = self.idle.lock().expect("pool").pop();
        let mut client = match reused {
            Some(c) if !c.is_closed() => c,
            _ => self.connect()?,
        };
        let out = f(&mut client);
        if !client.is_closed() {
            let mut idle = self.idle.lock().expect("pool");
            if idle.len() < IDLE {
                idle.push(client);
            }
        }
        out.map_err(|e| match e {
            // The connection broke under the call: the database went away.
            Fail::Db(e) if lost(&e) => {
                Error::Unavailable(format!("postgres {}: {}", self.place, describe(&e)))
            }
            Fail::Db(e) => Error::Other(format!("postgres {}: {}", self.place, describe(&e))),
            Fail::Tend(e) => e,
        })
    }
}
