//! `[cluster]` in tend.toml: the shared PostgreSQL store several daemons (and the CLI
//! on the same config) use instead of the state directory.
//!
//! ```toml
//! [cluster]
//! postgres = "postgres://tend@db.example/tend"   # URL or libpq key=value string
//! password = "env:TEND_PG_PASSWORD"              # or "file:/etc/tend/pg.pw"
//! key = "file:/etc/tend/cluster.key"             # the same on every node; signs journals
//! sslmode = "verify-full"                        # disable | prefer | require | verify-ca | verify-full
//! sslrootcert = "/etc/tend/db-ca.pem"
//! node = "sched-a"                               # default: this machine's host name
//! lease = "30s"                                  # heartbeat every lease/3
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
pub struct ClusterSettings {
    /// The connection: a `postgres://` URL or libpq `key=value` pairs, without the
    /// password (a password written here is refused: tend.toml is not a secret).
    pub postgres: String,
    /// `env:NAME` or `file:PATH`: where the password is read from at start.
    #[serde(default)]
    pub password: Option<String>,
    /// `env:NAME` or `file:PATH`: the key every node signs journals and run records
    /// with (required; see `store::pg::sign`).
    #[serde(default)]
    pub key: Option<String>,
    /// libpq's names and meanings; default `prefer`.
    #[serde(default)]
    pub sslmode: Option<String>,
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// This node's id; default the host name. Stable across restarts.
    #[serde(default)]
    pub node: Option<String>,
    /// How long a heartbeat holds a node's runs and host locks.
    #[serde(default, deserialize_with = "duration")]
    pub lease: Option<Duration>,
}

impl ClusterSettings {
    pub const KEYS: &[&str] = &[
        "postgres",
        "password",
        "key",
        "sslmode",
        "sslrootcert",
        "node",
        "lease",
    ];
    pub const HELP: &str = "[cluster] takes postgres = \"postgres://USER@HOST/DB\", \
         password = \"env:NAME\"|\"file:PATH\", key = \"file:PATH\"|\"env:NAME\", sslmode, sslrootcert, node, lease = \"30s\"";

    /// The default lease: long enough for a busy database, short enough that a dead
    /// node's runs are rolled back within a minute.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

    pub fn lease(&self) -> Duration {
        self.lease.unwrap_or(Self::DEFAULT_LEASE)
    }

    /// `node`, else `TEND_NODE`, else this machine's host name.
    pub fn node_id(&self) -> String {
        self.node
            .clone()
            .or_else(|| std::env::var("TEND_NODE").ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(crate::lease::host_name)
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    let lease = humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e} (write like 30s, 2m)")))?;
    if lease < Duration::from_secs(3) {
        return Err(serde::de::Error::custom(format!(
            "lease {text:?} is shorter than 3s: a heartbeat every lease/3 would race the database"
        )));
    }
    Ok(Some(lease))
}
