//! The inventory: which hosts exist, how to reach them, their groups and variables, and
//! which of them a `-H` pattern means.
//!
//! Nobody should retype their fleet, so hosts come from up to three kinds of source,
//! merged in this order (a later one overrides what an earlier one set for a host):
//!
//! 1. `tend.toml`: `[hosts.NAME]` and `[groups.NAME]` tables ([`config`]);
//! 2. Ansible inventories given with `-i`, INI or YAML ([`ansible`]);
//! 3. `~/.ssh/config` ([`ssh_config`]): each alias without wildcards is a host, and its
//!    settings fill, for every host, the connection fields no inventory set.
//!
//! [`model`] merges them and resolves groups and variables the way Ansible does (`all`,
//! then parent groups before their children, then the host). [`pattern`] turns a `-H`
//! pattern into hosts. Errors are [`Error::Usage`] naming the file and line, or the
//! pattern term, and what to do about it.

mod ansible;
mod config;
mod graph;
mod literal;
mod model;
mod pattern;
mod range;
mod settings;
mod ssh_config;
mod yaml_value;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;

/// One host, ready to connect to: everything the runner and the SSH target need.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Inventory name (what `-H`, the journal and the reports use).
    pub name: String,
    /// What to connect to: `address` / `ansible_host` / ssh `HostName`; default the name.
    pub address: String,
    /// `None`: ssh's default, 22.
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_files: Vec<PathBuf>,
    pub identities_only: bool,
    pub proxy_jump: Option<String>,
    pub connect_timeout: Option<Duration>,
    /// Run operations through `sudo -n` (`become = true`, `ansible_become`).
    pub become_: bool,
    /// Every group the host belongs to, directly or through children, from the
    /// shallowest to the deepest (the order their variables were merged in). `all` is
    /// implied and not listed; a host in no group is in `ungrouped`.
    pub groups: Vec<String>,
    /// Group variables (`all` first, parents before children, then by
    /// `ansible_group_priority`), then the host's own; typed as the inventory wrote
    /// them (INI values as Ansible evaluates them).
    pub vars: BTreeMap<String, serde_json::Value>,
    /// known_hosts files from ssh config (`UserKnownHostsFile`, then
    /// `GlobalKnownHostsFile` or its default); empty: the SSH target's defaults.
    pub known_hosts: Vec<PathBuf>,
    /// Where the host was first defined: `tend.toml:12`, `inventory.ini:3`,
    /// `~/.ssh/config:7`, or `command line` for an ad-hoc host.
    pub source: String,
}

/// The host name that means this machine, reached without SSH (`-H local`); an
/// inventory host of that name gives it variables.
pub const LOCAL: &str = "local";

/// A variable's value as text: a string as is, anything else as JSON (`22`, `true`).
pub fn var_text(v: &serde_json::Value) -> String {
    model::text(v)
}

impl Host {
    /// The port to connect to: the configured one or 22.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(22)
    }
}

/// Hosts and groups from every inventory source, resolved.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    hosts: Vec<Host>,
    index: HashMap<String, usize>,
    groups: BTreeMap<String, Vec<String>>,
    tree: model::Tree,
    ssh: Option<ssh_config::SshConfigFile>,
    sources: Vec<String>,
    warnings: Vec<String>,
}

/// A tend.toml as read by its loader: where it is (relative paths in it are resolved
/// against its folder) and its text.
#[derive(Clone, Copy)]
pub struct ConfigText<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

/// The folder of a config file, against which relative paths in it are resolved.
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Check the `[hosts]` and `[groups]` tables of a tend.toml without loading anything
/// else, so a typo in them is reported by every command, not only those that select
/// hosts.
pub fn check_config(config: ConfigText) -> Result<(), Error> {
    let display = config.path.display().to_string();
    config::parse(
        config.text,
        &display,
        dir_of(config.path),
        &mut model::Model::default(),
    )
}

/// Where the ssh config comes from: named by the caller (must parse), or found by
/// default (skipped with a warning if it doesn't).
#[derive(Clone, Copy)]
enum SshSource<'a> {
    File(&'a Path),
    IfUsable(&'a Path),
}

impl Inventory {
    /// Load the inventory as the CLI does. `config`: the tend.toml already read (by
    /// `app::Config`, which looks it up); `extra`: `-i` files (INI, YAML or tend-style
    /// TOML, detected by extension or content; a directory loads each file in it);
    /// `ssh_config`: `None` means `HOME/.ssh/config` if present. A path given
    /// explicitly must exist.
    pub fn load(
        config: Option<ConfigText>,
        extra: &[PathBuf],
        ssh_config: Option<&Path>,
        home: Option<&Path>,
    ) -> Result<Inventory, Error> {
        let home_ssh = home.map(|h| h.join(".ssh").join("config"));
        // An ssh config named by the caller must parse; a broken ~/.ssh/config found by
        // default only warns, so it can't stop runs that don't need it.
        let ssh_config = match ssh_config {
            Some(p) => Some(SshSource::File(p)),
            None => home_ssh
                .as_deref()
                .filter(|p| p.is_file())
                .map(SshSource::IfUsable),
        };
        Self::load_sources(config, extra, ssh_config)
    }

    /// Load exactly the given sources, with no defaults looked up (`None`: no such
    /// source). For tests and for callers that resolved the paths themselves.
    pub fn load_exact(
        config: Option<&Path>,
        extra: &[PathBuf],
        ssh_config: Option<&Path>,
    ) -> Result<Inventory, Error> {
        let text = match config {
            Some(path) => Some(read(path, "config file", "check the --config path")?),
            None => None,
        };
        let config = config
            .zip(text.as_deref())
            .map(|(path, text)| ConfigText { path, text });
        Self::load_sources(config, extra, ssh_config.map(SshSource::File))
    }

    fn load_sources(
        config: Option<ConfigText>,
        extra: &[PathBuf],
        ssh_config: Option<SshSource>,
    ) -> Result<Inventory, Error> {
        let mut model = model::Model::default();
        let mut sources = Vec::new();

        if let Some(ConfigText { path, text }) = config {
            let display = path.display().to_string();
            config::parse(text, &display, dir_of(path), &mut model)?;
            sources.push(display);
        }
        for path in extra {
            for file in inventory_files(path)? {
                let display = file.display().to_string();
                let text = read(&file, "inventory file", "check the -i path")?;
                match ansible::detect(&file, &text) {
                    ansible::Format::Ini => ansible::parse_ini(&text, &display, &mut model)?,
                    ansible::Format::Yaml => ansible::parse_yaml(&text, &display, &mut model)?,
                    ansible::Format::Toml => {
                        config::parse(&text, &display, dir_of(&file), &mut model)?
                    }
                }
                sources.push(display);
            }
        }

        let mut warnings = Vec::new();
        let ssh = match ssh_config {
            Some(SshSource::File(path)) => Some(ssh_config::SshConfigFile::load(path)?),
            Some(SshSource::IfUsable(path)) => match ssh_config::SshConfigFile::load(path) {
                Ok(cfg) => Some(cfg),
                Err(e) => {
                    warnings.push(format!("{e}; its hosts and settings are not used"));
                    None
                }
            },
            None => None,
        };
        if let Some(cfg) = &ssh {
            // An alias that is already an inventory host (by name or address) is the
            // same machine, not another one.
            for (alias, source) in &cfg.aliases {
                if !model.knows_host(alias) {
                    model.add_member(model::SSH_CONFIG_GROUP, alias, source)?;
                } else {
                    model.define(alias);
                }
            }
            sources.push(cfg.display.clone());
        }

        let resolved = model.resolve(ssh.as_ref())?;
        warnings.extend(resolved.warnings);
        let (hosts, groups, tree) = (resolved.hosts, resolved.members, resolved.tree);
        let index = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        Ok(Inventory {
            hosts,
            index,
            groups,
            tree,
            ssh,
            sources,
            warnings,
        })
    }

    /// Every host, in inventory order (the order the sources first name them).
    pub fn hosts(&self) -> Vec<&Host> {
        self.hosts.iter().collect()
    }

    /// The host called `name`, if the inventory has it.
    pub fn get(&self, name: &str) -> Option<&Host> {
        self.index.get(name).map(|&i| &self.hosts[i])
    }

    /// Group → its member host names (through children too), in inventory order.
    /// Includes `all`, `ungrouped` (perhaps empty), every group even if empty, and `ssh_config`
    /// (the hosts only `~/.ssh/config` defines) when there are any.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        self.groups.clone()
    }

    /// The files the inventory was read from, as shown in messages.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// `ansible-inventory --graph` of `group` (`all` by default): the group tree with
    /// its hosts. `None`: no such group.
    pub fn graph(&self, group: &str) -> Option<String> {
        graph::render(&self.tree, group)
    }

    /// Problems that did not stop loading (a default `~/.ssh/config` that does not
    /// parse, a host only a group lists), for the CLI to show.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Resolve a pattern list as given to `-H`, then keep only the hosts `limit` (the
    /// `--limit` pattern) also selects. Fails on a term that matches nothing, and when
    /// `&`/`!` terms or the limit remove every host; an empty group selects no host.
    pub fn select(&self, patterns: &str, limit: Option<&str>) -> Result<Vec<Host>, Error> {
        pattern::select(self, patterns, limit)
    }
}

fn read(path: &Path, what: &str, hint: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Usage(format!("{what} {} does not exist; {hint}", path.display()))
        } else {
            Error::io(format!("cannot read {what} {}", path.display()), e)
        }
    })
}

/// A file, or each file of a directory (sorted; hidden files, backups and Ansible's
/// `group_vars`/`host_vars` folders skipped).
fn inventory_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        Error::io(
            format!("cannot list inventory directory {}", path.display()),
            e,
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            Error::io(
                format!("cannot list inventory directory {}", path.display()),
                e,
            )
        })?;
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let skip = name.starts_with('.')
            || name.ends_with('~')
            || [".bak", ".orig", ".retry", ".swp", ".md", ".txt"]
                .iter()
                .any(|s| name.ends_with(s));
        if !skip && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}
