//! Which hosts a run acts on: a host pattern read against the inventory (tend.toml,
//! `-i` files, ssh config), with connection flags that override it. Shared by the
//! CLI's `-H` and the scheduler's `hosts`.

use std::path::{Path, PathBuf};

use super::Config;
use crate::error::{Error, Result};
use crate::inventory::{Inventory, LOCAL};
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
/// `default_all`; the inventory's host `local` if it has one. `local` is this machine, with the variables of the inventory's host
/// `local` if it has one; with no inventory at all, the default pattern of `tend
/// hosts`/`tend ping` means this machine too. A pattern that selects no host (an
/// empty group) is an empty list for `default_all` callers, which only show hosts,
/// and an error for the others, for which no host would mean this machine.
pub fn select_hosts(config: &Config, q: &HostQuery, default_all: bool) -> Result<Vec<HostSpec>> {
    check_private_key(q.flags.private_key.as_deref())?;
    let pattern = match (&q.hosts, default_all) {
        (Some(p), _) => p.clone(),
        (None, true) => "all".to_string(),
        (None, false) => {
            // This machine, with the variables the inventory gives `local`, if any.
            if config.inventory().is_none() && q.inventory.is_empty() {
                return Ok(vec![]);
            }
            let inv = load_inventory(config, q)?;
            return Ok(inv
                .get(LOCAL)
                .map(|h| vec![HostSpec::from_inventory(h, &q.flags)])
                .unwrap_or_default());
        }
    };
    let inv = load_inventory(config, q)?;
    let local = || match inv.get(LOCAL) {
        Some(h) => HostSpec::from_inventory(h, &q.flags),
        None => HostSpec::local(),
    };
    if pattern == LOCAL || (q.hosts.is_none() && inv.hosts().is_empty()) {
        return Ok(vec![local()]);
    }
    let hosts = inv.select(&pattern, q.limit.as_deref())?;
    if hosts.is_empty() && !default_all {
        return Err(Error::Usage(format!(
            "-H `{pattern}` selects no host (its groups are empty); nothing to do"
        )));
    }
    Ok(hosts
        .iter()
        .map(|h| HostSpec::from_inventory(h, &q.flags))
        .collect())
}

/// The inventory `q` reads (tend.toml, its `-i` files, its ssh config), its warnings
/// logged.
pub fn load_inventory(config: &Config, q: &HostQuery) -> Result<Inventory> {
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
    Ok(inv)
}

/// `--private-key` must name a readable file: a typo would otherwise log in with
/// whatever other key happens to work, or fail later as "authentication failed".
fn check_private_key(key: Option<&Path>) -> Result<()> {
    let Some(key) = key else { return Ok(()) };
    match std::fs::metadata(key) {
        Ok(m) if m.is_file() => std::fs::File::open(key).map(|_| ()).map_err(|e| {
            Error::Usage(format!(
                "--private-key {}: {}; check the path",
                key.display(),
                crate::error::describe_io(&e)
            ))
        }),
        Ok(_) => Err(Error::Usage(format!(
            "--private-key {} is not a file; give the private key file",
            key.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Usage(format!(
            "--private-key {} does not exist; check the path",
            key.display()
        ))),
        Err(e) => Err(Error::Usage(format!(
            "--private-key {}: {}; check the path",
            key.display(),
            crate::error::describe_io(&e)
        ))),
    }
}
