//! Which stores a command works with: the state directory (the embedded default), or
//! the cluster's PostgreSQL when tend.toml has `[cluster]`. One place decides, so the
//! CLI and the daemon on the same config always see the same runs and audit log.

use std::sync::Arc;

use super::Config;
use crate::error::Result;
use crate::state::StateDir;
use crate::store::Stores;

/// The stores for `config`: the cluster's when it has `[cluster]` (connecting, and
/// migrating its schema), else the state directory's.
pub fn stores_for(state: &StateDir, config: &Config) -> Result<Stores> {
    match &config.cluster {
        None => Ok(Stores::embedded(state)),
        Some(settings) => {
            let pg = crate::store::pg::PgStore::connect(settings)?;
            pg.keep_leases()?;
            Ok(Stores::cluster(state, Arc::new(pg)))
        }
    }
}
