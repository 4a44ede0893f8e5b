//! The inventory as the files wrote it, and how it resolves into [`Host`]s.
//!
//! Every format (tend.toml, Ansible INI, Ansible YAML, `~/.ssh/config`) is parsed into
//! one [`Model`]: hosts in the order they were first written, groups with their direct
//! members, children, connection [`Settings`] and variables. Several files add to the
//! same model; a later file overrides what an earlier one set for the same host or
//! group (as `ansible -i a -i b` does).
//!
//! Resolution then works like Ansible's: a host belongs to every group that lists it
//! and to all their ancestors; a host in no group is in `ungrouped`; every host is in
//! `all`. Variables and connection settings are merged from the shallowest group
//! (`all`) to the deepest (parents before children; groups at one depth by name), then
//! the host's own on top. `~/.ssh/config` fills whatever is still unset last.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use serde_json::Value;

pub(crate) use super::settings::{
    expand_tilde, parse_bool, parse_duration, parse_port, text, Settings,
};
use super::ssh_config::SshConfigFile;
use super::Host;
use crate::error::Error;

/// Variables as the inventory typed them (see [`super::literal`] for INI).
pub(crate) type Vars = BTreeMap<String, Value>;

/// The system-wide known_hosts file, as OpenSSH's `GlobalKnownHostsFile` default.
pub(crate) const SYSTEM_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

/// Ansible's default `ansible_group_priority`.
const DEFAULT_PRIORITY: i64 = 1;

/// Host and group names are used in `-H` patterns, so the characters that patterns give
/// a meaning to can't be part of a name.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("empty {kind} name"));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || *c == ',') {
        return Err(format!(
            "{kind} name `{name}` contains {}; names can't contain spaces or commas",
            if c == ',' { "a comma" } else { "whitespace" }
        ));
    }
    if name.starts_with(['!', '&', '@', '~']) {
        return Err(format!(
            "{kind} name `{name}` starts with `{}`, which `-H` patterns reserve; rename it",
            &name[..1]
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub(crate) struct HostDef {
    pub name: String,
    pub settings: Settings,
    pub vars: Vars,
    pub source: String,
    /// Some source defines the host (a `[hosts.X]` table, an Ansible host line or
    /// entry, an ssh config alias); `false` while only a tend.toml group lists it.
    pub defined: bool,
    /// The first group that lists it (for the message when nothing defines it).
    pub listed_in: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ChildRef {
    pub name: String,
    pub source: String,
    /// tend.toml is strict: a child group must be defined somewhere. Ansible creates
    /// undefined children silently, so INI and YAML are not.
    pub strict: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct GroupDef {
    pub hosts: Vec<String>,
    host_set: HashSet<String>,
    pub children: Vec<ChildRef>,
    pub settings: Settings,
    pub vars: Vars,
    pub source: Option<String>,
    /// `ansible_group_priority`: among groups at the same depth, the higher one's
    /// variables win. Consumed, as Ansible does: it is not a variable.
    pub priority: Option<i64>,
}

impl GroupDef {
    /// Set a group variable (written at `at`): connection variables also become
    /// settings, `ansible_group_priority` only the priority.
    pub fn set_var(&mut self, key: &str, value: Value, at: &str) -> Result<(), Error> {
        if key == "ansible_group_priority" {
            let p = match &value {
                Value::Number(n) => n.as_i64(),
                other => text(other).trim().parse::<i64>().ok(),
            };
            self.priority = Some(p.ok_or_else(|| {
                usage(
                    at,
                    format!(
                        "`ansible_group_priority` must be a whole number, found `{}`",
                        text(&value)
                    ),
                )
            })?);
            return Ok(());
        }
        self.settings
            .apply_ansible_var(key, &value)
            .map_err(|m| usage(at, format!("`{key}`: {m}")))?;
        self.vars.insert(key.to_string(), value);
        Ok(())
    }
}

/// The group tree as written, for `tend hosts --graph`: groups in the order they were
/// first named, each with its child groups and direct hosts in file order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    pub children: HashMap<String, Vec<String>>,
    pub hosts: HashMap<String, Vec<String>>,
}

/// The group every host of `~/.ssh/config` that no other source defines is put in, so
/// `-H 'all,!@ssh_config'` leaves them out.
pub(crate) const SSH_CONFIG_GROUP: &str = "ssh_config";

/// Group → member host names, in inventory order.
pub(crate) type Members = BTreeMap<String, Vec<String>>;

/// What [`Model::resolve`] makes of the model.
pub(crate) struct Resolved {
    pub hosts: Vec<Host>,
    pub members: Members,
    pub tree: Tree,
    pub warnings: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Model {
    pub hosts: Vec<HostDef>,
    index: HashMap<String, usize>,
    pub groups: BTreeMap<String, GroupDef>,
    /// Group names in the order they were first named.
    order: Vec<String>,
    /// Problems that do not stop loading (a host only a group lists).
    pub warnings: Vec<String>,
    /// Host names written out by ranges so far, in all sources (see `expand`).
    expanded: usize,
}

/// The most host names the ranges of a whole inventory may write out (a host in
/// several groups counts each time): many names each under the per-name cap must
/// not add up to more memory than the machine has.
pub(crate) const MAX_EXPANDED: usize = 1_000_000;

impl Model {
    /// The names `pattern` (written at `source`) expands to; see [`range::expand`].
    pub fn expand(&mut self, pattern: &str, source: &str) -> Result<Vec<String>, Error> {
        let names = super::range::expand(pattern).map_err(|m| usage(source, m))?;
        self.expanded += names.len();
        if self.expanded > MAX_EXPANDED {
            return Err(usage(
                source,
                format!(
                    "with `{pattern}` the inventory's host ranges make more than {MAX_EXPANDED} \
                     host names; split the inventory, or use smaller ranges"
                ),
            ));
        }
        Ok(names)
    }

    /// Whether a host is called `name` or has it as its address.
    pub fn knows_host(&self, name: &str) -> bool {
        self.index.contains_key(name)
            || self
                .hosts
                .iter()
                .any(|h| h.settings.address.as_deref() == Some(name))
    }

    /// Mark the host called `name`, if any, as defined (an ssh config alias of it).
    pub fn define(&mut self, name: &str) {
        if let Some(&i) = self.index.get(name) {
            self.hosts[i].defined = true;
        }
    }

    /// The host called `name`, created (first seen at `source`) if new.
    pub fn host(&mut self, name: &str, source: &str) -> Result<&mut HostDef, Error> {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                check_name("host", name).map_err(|m| usage(source, m))?;
                self.hosts.push(HostDef {
                    name: name.to_string(),
                    settings: Settings::default(),
                    vars: Vars::new(),
                    source: source.to_string(),
                    defined: false,
                    listed_in: None,
                });
                self.index.insert(name.to_string(), self.hosts.len() - 1);
                self.hosts.len() - 1
            }
        };
        Ok(&mut self.hosts[i])
    }

    pub fn group(&mut self, name: &str, source: &str) -> Result<&mut GroupDef, Error> {
        if !self.groups.contains_key(name) {
            check_name("group", name).map_err(|m| usage(source, m))?;
            self.order.push(name.to_string());
        }
        let g = self.groups.entry(name.to_string()).or_default();
        if g.source.is_none() {
            g.source = Some(source.to_string());
        }
        Ok(g)
    }

    /// Put `host` in `group`, the host defined here if it is new (an Ansible host line).
    pub fn add_member(&mut self, group: &str, host: &str, source: &str) -> Result<(), Error> {
        self.host(host, source)?.defined = true;
        self.list_member(group, host, source)
    }

    /// Put `host` in `group` without defining it (a tend.toml group's `hosts` list).
    pub fn list_member(&mut self, group: &str, host: &str, source: &str) -> Result<(), Error> {
        self.host(host, source)?;
        let g = self.group(group, source)?;
        if g.host_set.insert(host.to_string()) {
            g.hosts.push(host.to_string());
        }
        Ok(())
    }

    pub fn add_child(
        &mut self,
        parent: &str,
        child: &str,
        source: &str,
        strict: bool,
    ) -> Result<(), Error> {
        if child == "all" {
            return Err(usage(
                source,
                format!(
                    "`all` can't be a child of `{parent}`: every group is already inside `all`"
                ),
            ));
        }
        if child == parent {
            return Err(usage(
                source,
                format!("group `{parent}` lists itself as a child"),
            ));
        }
        check_name("group", child).map_err(|m| usage(source, m))?;
        let g = self.group(parent, source)?;
        if !g.children.iter().any(|c| c.name == child) {
            g.children.push(ChildRef {
                name: child.to_string(),
                source: source.to_string(),
                strict,
            });
        }
        Ok(())
    }

    /// Resolve groups, variables and settings into the final hosts (in inventory order),
    /// the transitive group → members map and the group tree.
    pub fn resolve(mut self, ssh: Option<&SshConfigFile>) -> Result<Resolved, Error> {
        self.group("all", "")?;
        self.group("ungrouped", "")?;

        // Children must exist (strictly for tend.toml; Ansible creates them).
        let mut missing = Vec::new();
        for (name, g) in &self.groups {
            for c in &g.children {
                if !self.groups.contains_key(&c.name) {
                    if c.strict {
                        let hint = if self.index.contains_key(&c.name) {
                            format!("`{}` is a host: list it in `hosts` instead", c.name)
                        } else {
                            format!("define [groups.{}] or fix the name", c.name)
                        };
                        return Err(usage(
                            &c.source,
                            format!(
                                "group `{name}` has child group `{}`, which is not defined; {hint}",
                                c.name
                            ),
                        ));
                    }
                    missing.push((c.name.clone(), c.source.clone()));
                }
            }
        }
        for (name, source) in missing {
            self.group(&name, &source)?;
        }

        let depth = self.depths()?;

        // Direct memberships, then every ancestor.
        let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
        for (name, g) in &self.groups {
            for c in &g.children {
                parents
                    .entry(c.name.as_str())
                    .or_default()
                    .push(name.as_str());
            }
        }
        let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
        for (name, g) in &self.groups {
            if name == "all" || name == "ungrouped" {
                continue;
            }
            for h in &g.hosts {
                direct.entry(h.as_str()).or_default().push(name.as_str());
            }
        }

        let empty = GroupDef::default();
        let mut warnings = std::mem::take(&mut self.warnings);
        let mut hosts = Vec::with_capacity(self.hosts.len());
        let mut members: BTreeMap<String, Vec<String>> = self
            .groups
            .keys()
            .map(|g| (g.clone(), Vec::new()))
            .collect();
        for h in &self.hosts {
            let mut groups: BTreeSet<&str> = BTreeSet::new();
            let mut todo: Vec<&str> = direct.get(h.name.as_str()).cloned().unwrap_or_default();
            while let Some(g) = todo.pop() {
                if g != "all" && groups.insert(g) {
                    if let Some(ps) = parents.get(g) {
                        todo.extend(ps.iter().copied());
                    }
                }
            }
            if groups.is_empty() {
                groups.insert("ungrouped");
            }
            // Ansible's order: by depth, then `ansible_group_priority`, then name; a
            // later group's variables override an earlier one's.
            let mut ordered: Vec<&str> = groups.into_iter().collect();
            ordered.sort_by_key(|g| {
                let prio = self
                    .groups
                    .get(*g)
                    .and_then(|gd| gd.priority)
                    .unwrap_or(DEFAULT_PRIORITY);
                (depth.get(*g).copied().unwrap_or(1), prio, *g)
            });

            let mut settings = Settings::default();
            let mut vars = Vars::new();
            for g in std::iter::once("all").chain(ordered.iter().copied()) {
                let gd = self.groups.get(g).unwrap_or(&empty);
                settings.overlay(&gd.settings);
                vars.extend(gd.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            settings.overlay(&h.settings);
            vars.extend(h.vars.iter().map(|(k, v)| (k.clone(), v.clone())));

            for g in std::iter::once("all").chain(ordered.iter().copied()) {
                members
                    .entry(g.to_string())
                    .or_default()
                    .push(h.name.clone());
            }
            let mut source = h.source.clone();
            if !h.defined {
                // Ansible's meaning: a host of that name, reached at its name. Most
                // likely a typo or a forgotten [hosts.X] table, so say so.
                let group = h.listed_in.as_deref().unwrap_or("all");
                warnings.push(format!(
                    "{}: group `{group}` lists host `{}`, which no [hosts.{}] table or \
                     other source defines; it is reached at its name",
                    h.source, h.name, h.name
                ));
                source = format!("{} (only listed in group `{group}`)", h.source);
            }
            if h.name == super::LOCAL && (h.settings.address.is_some() || h.settings.port.is_some())
            {
                warnings.push(format!(
                    "{}: host `local` is this machine (no SSH): its address and port are \
                     not used; give a host reached over SSH another name",
                    h.source
                ));
            }
            let groups = ordered.into_iter().map(str::to_string).collect();
            hosts.push(finish_host(&h.name, &settings, vars, groups, source, ssh));
        }
        let tree = self.tree(&members);
        Ok(Resolved {
            hosts,
            members,
            tree,
            warnings,
        })
    }

    /// The group tree, as Ansible builds it: `all` holds `ungrouped`, then every group
    /// no other group holds, in the order first named; `ungrouped` holds the hosts in
    /// no other group.
    fn tree(&self, members: &Members) -> Tree {
        let mut order = vec!["all".to_string(), "ungrouped".to_string()];
        order.extend(
            self.order
                .iter()
                .filter(|g| *g != "all" && *g != "ungrouped")
                .cloned(),
        );
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        let mut has_parent = HashSet::new();
        for g in &order {
            let kids: Vec<String> = self
                .groups
                .get(g)
                .map(|gd| gd.children.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            has_parent.extend(kids.iter().cloned());
            children.insert(g.clone(), kids);
        }
        let top: Vec<String> = order
            .iter()
            .filter(|g| *g != "all" && !has_parent.contains(*g))
            .cloned()
            .collect();
        let all = children.entry("all".to_string()).or_default();
        let mut all_kids = vec!["ungrouped".to_string()];
        for g in all.iter().chain(top.iter()) {
            if !all_kids.contains(g) {
                all_kids.push(g.clone());
            }
        }
        *all = all_kids;
        let mut hosts: HashMap<String, Vec<String>> = self
            .groups
            .iter()
            .filter(|(g, _)| *g != "all" && *g != "ungrouped")
            .map(|(g, gd)| (g.clone(), gd.hosts.clone()))
            .collect();
        hosts.insert(
            "ungrouped".to_string(),
            members.get("ungrouped").cloned().unwrap_or_default(),
        );
        Tree { children, hosts }
    }

    /// Depth of each group below `all` (the longest path), refusing cycles.
    fn depths(&self) -> Result<HashMap<String, usize>, Error> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Active,
            Done,
        }
        fn visit<'a>(
            m: &'a Model,
            g: &'a str,
            d: usize,
            marks: &mut HashMap<&'a str, Mark>,
            stack: &mut Vec<&'a str>,
            depth: &mut HashMap<String, usize>,
        ) -> Result<(), Error> {
            let cur = depth.entry(g.to_string()).or_insert(0);
            if d > *cur {
                *cur = d;
            } else if marks.get(g) == Some(&Mark::Done) {
                return Ok(());
            }
            if marks.get(g) == Some(&Mark::Active) {
                let start = stack.iter().position(|s| *s == g).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..].to_vec();
                cycle.push(g);
                let src = m
                    .groups
                    .get(g)
                    .and_then(|x| x.source.clone())
                    .unwrap_or_default();
                return Err(usage(
                    &src,
                    format!(
                        "groups contain each other: {}; remove one of these children",
                        cycle.join(" → ")
                    ),
                ));
            }
            marks.insert(g, Mark::Active);
            stack.push(g);
            if let Some(gd) = m.groups.get(g) {
                for c in &gd.children {
                    visit(m, &c.name, d + 1, marks, stack, depth)?;
                }
            }
            stack.pop();
            marks.insert(g, Mark::Done);
            Ok(())
        }
        let mut depth = HashMap::new();
        let mut marks = HashMap::new();
        let mut stack = Vec::new();
        depth.insert("all".to_string(), 0);
        for g in self.groups.keys() {
            if g != "all" {
                visit(self, g, 1, &mut marks, &mut stack, &mut depth)?;
            }
        }
        // Children of `all` are depth 1 like any top-level group; visit `all` too so a
        // cycle through it is still caught.
        visit(self, "all", 0, &mut marks, &mut stack, &mut depth)?;
        Ok(depth)
    }
}

/// The final host: the merged settings, then `~/.ssh/config` for what is still unset.
pub(crate) fn finish_host(
    name: &str,
    settings: &Settings,
    vars: Vars,
    groups: Vec<String>,
    source: String,
    ssh: Option<&SshConfigFile>,
) -> Host {
    let d = ssh
        .map(|s| s.defaults(name, settings.address.as_deref()))
        .unwrap_or_default();
    // As ssh: the user's files, then the system-wide ones; either may be changed in
    // ssh config. Neither changed: the SSH target's defaults, the same files.
    let known_hosts = if d.user_known_hosts.is_some() || d.global_known_hosts.is_some() {
        let user = d.user_known_hosts.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".ssh/known_hosts"))
                .into_iter()
                .collect()
        });
        let global = d
            .global_known_hosts
            .clone()
            .unwrap_or_else(|| vec![PathBuf::from(SYSTEM_KNOWN_HOSTS)]);
        user.into_iter().chain(global).collect()
    } else {
        Vec::new()
    };
    Host {
        known_hosts,
        name: name.to_string(),
        address: settings
            .address
            .clone()
            .or(d.host_name)
            .unwrap_or_else(|| name.to_string()),
        port: settings.port.or(d.port),
        user: settings.user.clone().or(d.user),
        identity_files: settings
            .identity_files
            .clone()
            .filter(|v| !v.is_empty())
            .unwrap_or(d.identity_files),
        identities_only: settings
            .identities_only
            .or(d.identities_only)
            .unwrap_or(false),
        proxy_jump: settings.proxy_jump.clone().or(d.proxy_jump),
        connect_timeout: settings.connect_timeout.or(d.connect_timeout),
        become_: settings.become_.unwrap_or(false),
        groups,
        vars,
        source,
    }
}

pub(crate) fn usage(source: &str, msg: impl std::fmt::Display) -> Error {
    if source.is_empty() {
        Error::Usage(msg.to_string())
    } else {
        Error::Usage(format!("{source}: {msg}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_names() {
        assert!(check_name("host", "a b").is_err());
        assert!(check_name("group", "!x").is_err());
        assert!(check_name("host", "web1").is_ok());
    }
}
