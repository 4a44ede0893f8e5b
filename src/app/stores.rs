//! Which stores a command works with: the state directory (the embedded default), or
//! the cluster's PostgreSQL when tend.toml has `[cluster]`. One place decides, so the
//! CLI and the daemon on the same config always see the same runs and audit log.

use std::sync::Arc;

use super::Config;
use crate::error::{Error, Result};
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

/// For a daemon: as [`stores_for`], except that a cluster database that cannot be
/// reached yet does not stop it from starting. Its node claims nothing until the
/// database answers, and brings the schema up to date then. True when that is still
/// to do. Any other failure (a newer schema, a refused password) stops it here.
pub fn stores_for_daemon(state: &StateDir, config: &Config) -> Result<(Stores, bool)> {
    let Some(settings) = &config.cluster else {
        return Ok((Stores::embedded(state), false));
    };
    let pg = crate::store::pg::PgStore::open(settings)?;
    let pending = match pg.migrate() {
        Ok(_) => false,
        Err(Error::Unavailable(e)) => {
            tracing::warn!("{e}: starting without it; this node claims no fire until it answers");
            true
        }
        Err(e) => return Err(e),
    };
    pg.keep_leases()?;
    Ok((Stores::cluster(state, Arc::new(pg)), pending))
}
