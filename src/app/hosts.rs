//! Which hosts a run acts on: a host pattern read against the inventory (tend.toml,
//! `-i` files, ssh config), with connection flags that override it. Shared by the
//! CLI's `-H` and the scheduler's `hosts`.

use std::path::PathBuf;

use super::Config;
use crate::error::Result;
use crate::inventory::Inventory;
use crate::reach::{ConnectFlags, HostSpec};

/// A selection of hosts, as `-H PATTERN -i FILE --limit … -F …` give it.
#[derive(Debug, Clone, Default)]
pub struct HostQuery {
    /// `None`: this machine only (or every host, when the caller defaults to all).
    pub hosts: Option<String>,
    pub inventory: Vec<PathBuf>,
    pub limit: Option<String>,
    pub ssh_config: Option<PathBuf>,
    pub flags: ConnectFlags,
}

/// The hosts `q` selects: none (this machine) without a pattern, unless
/// `default_all`.
pub fn select_hosts(config: &Config, q: &HostQuery, default_all: bool) -> Result<Vec<HostSpec>> {
    let pattern = match (&q.hosts, default_all) {
        (Some(p), _) => p.clone(),
        (None, true) => "all".to_string(),
        (None, false) => return Ok(vec![]),
    };
    if pattern == "local" {
        return Ok(vec![HostSpec::local()]);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let inv = Inventory::load(
        config.inventory(),
        &q.inventory,
        q.ssh_config.as_deref(),
        home.as_deref(),
    )?;
    for w in inv.warnings() {
        tracing::warn!("{w}");
    }
    Ok(inv
        .select(&pattern, q.limit.as_deref())?
        .iter()
        .map(|h| HostSpec::from_inventory(h, &q.flags))
        .collect())
}
