//! The inventory part of `tend.toml`: `[hosts.NAME]` and `[groups.NAME]`.
//!
//! ```toml
//! [hosts.web1]
//! address = "10.0.0.5"      # what to connect to; default: the name
//! port = 2222
//! user = "deploy"
//! identity_file = "~/.ssh/deploy"   # or identity_files = [..]; relative to tend.toml
//! proxy_jump = "bastion"
//! become = true
//! groups = ["web"]          # same as listing it in [groups.web] hosts
//! tier = "front"            # any other key is a variable…
//! [hosts.web1.vars]         # …or put them here
//! max_conn = 100
//!
//! [groups.web]
//! hosts = ["web1", "web[02:04]"]
//! children = ["canary"]
//! vars = { http_port = 8080 }
//! user = "deploy"           # connection settings may be set for a whole group
//! ```
//!
//! The rest of the file (`[trust]`, `[audit]`…) and its top-level keys are checked by
//! `app::config`, the one loader of tend.toml; this reads only the two tables. Hosts come in the order the file first names them,
//! whether in a `[hosts.X]` table or a group's `hosts` list; a name listed in a group
//! and defined nowhere is a host whose address is its name, as in Ansible (`tend hosts`
//! says so). Variables keep their TOML types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Spanned, Value};

use super::model::{self, parse_bool, parse_duration, parse_port, usage, Model, Settings, Vars};
use crate::error::{did_you_mean, Error};

type Table = BTreeMap<Spanned<String>, Spanned<Value>>;

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    hosts: Option<BTreeMap<Spanned<String>, Spanned<Table>>>,
    #[serde(default)]
    groups: Option<BTreeMap<Spanned<String>, Spanned<Table>>>,
}

const GROUP_KEYS: &str = "hosts, children, vars, port, user, identity_file(s), identities_only, \
                          proxy_jump, connect_timeout, become";

/// The keys a host or group table gives a meaning to, for "did you mean" suggestions.
const KNOWN_KEYS: &[&str] = &[
    "address",
    "port",
    "user",
    "identity_file",
    "identity_files",
    "identities_only",
    "proxy_jump",
    "connect_timeout",
    "become",
    "groups",
    "hosts",
    "children",
    "vars",
];

struct Ctx<'a> {
    text: &'a str,
    display: &'a str,
    base: &'a Path,
}

impl Ctx<'_> {
    fn at(&self, pos: usize) -> String {
        let line = self.text[..pos.min(self.text.len())].matches('\n').count() + 1;
        format!("{}:{line}", self.display)
    }
}

/// Add the hosts and groups of the tend.toml `text` (shown as `display`, relative paths
/// resolved against `base`) to `model`.
pub(crate) fn parse(
    text: &str,
    display: &str,
    base: &Path,
    model: &mut Model,
) -> Result<(), Error> {
    let doc: Doc = toml::from_str(text).map_err(|e| {
        let at = match e.span() {
            Some(s) => Ctx {
                text,
                display,
                base,
            }
            .at(s.start),
            None => display.to_string(),
        };
        usage(&at, format!("{}; fix this line", e.message().trim_end()))
    })?;
    let cx = Ctx {
        text,
        display,
        base,
    };
    let hosts = doc.hosts.unwrap_or_default();
    let groups = doc.groups.unwrap_or_default();

    // Register every host name in the order the file first mentions it.
    // (position, host, the group whose `hosts` list names it there)
    let mut order: Vec<(usize, String, Option<&str>)> = Vec::new();
    let mut host_defs = Vec::new();
    for (key, table) in &hosts {
        let names = model.expand(key.get_ref(), &cx.at(key.span().start))?;
        for n in &names {
            order.push((key.span().start, n.clone(), None));
        }
        host_defs.push((names, key, table));
    }
    let mut group_defs = Vec::new();
    for (key, table) in &groups {
        let g = key.get_ref();
        let mut def = GroupTable::default();
        for (k, v) in table.get_ref() {
            let at = cx.at(k.span().start);
            match k.get_ref().as_str() {
                "hosts" => {
                    for (i, h) in string_list(v, "hosts", &at)?.into_iter().enumerate() {
                        for n in model.expand(&h, &at)? {
                            order.push((v.span().start + i, n.clone(), Some(g.as_str())));
                            def.hosts.push((n, at.clone()));
                        }
                    }
                }
                "children" => {
                    for c in string_list(v, "children", &at)? {
                        def.children.push((c, at.clone()));
                    }
                }
                "vars" => def.vars = vars_table(v, &at)?,
                "address" => {
                    return Err(usage(
                        &at,
                        format!(
                            "group `{g}` has an `address`; addresses belong to hosts \
                             ([hosts.NAME] address = …)"
                        ),
                    ))
                }
                other => {
                    if !apply_setting(&mut def.settings, other, v, &at, cx.base)? {
                        return Err(usage(
                            &at,
                            format!(
                                "unknown key `{other}` in [groups.{g}]{}; a group takes \
                                 {GROUP_KEYS} (put variables under `vars`)",
                                suggestion(other)
                            ),
                        ));
                    }
                }
            }
        }
        group_defs.push((key, def));
    }
    order.sort_by_key(|(pos, _, _)| *pos);
    for (pos, name, group) in &order {
        let h = model.host(name, &cx.at(*pos))?;
        if h.listed_in.is_none() {
            h.listed_in = group.map(str::to_string);
        }
    }

    for (names, key, table) in host_defs {
        let at = cx.at(key.span().start);
        let mut vars = Vars::new();
        let mut explicit = Settings::default();
        let mut member_of = Vec::new();
        for (k, v) in table.get_ref() {
            let kat = cx.at(k.span().start);
            match k.get_ref().as_str() {
                "vars" => vars.extend(vars_table(v, &kat)?),
                "address" => explicit.address = Some(string(v, "address", &kat)?),
                "groups" => {
                    for g in string_list(v, "groups", &kat)? {
                        member_of.push((g, kat.clone()));
                    }
                }
                other => {
                    if !apply_setting(&mut explicit, other, v, &kat, cx.base)? {
                        // Any other key is a variable, but one a letter away from a
                        // setting is far more likely a typo that would silently leave
                        // the host reached some other way.
                        if !other.starts_with("ansible_") {
                            if let Some(known) = did_you_mean(other, KNOWN_KEYS) {
                                return Err(usage(
                                    &kat,
                                    format!(
                                        "unknown key `{other}` in [hosts.{}]; did you mean \
                                         `{known}`? (a variable of that name goes under \
                                         [hosts.{}.vars])",
                                        key.get_ref(),
                                        key.get_ref()
                                    ),
                                ));
                            }
                        }
                        vars.insert(other.to_string(), typed(v.get_ref()));
                    }
                }
            }
        }
        let mut settings = ansible_settings(&vars, &at)?;
        settings.overlay(&explicit);
        for n in &names {
            let h = model.host(n, &at)?;
            h.defined = true;
            h.settings.overlay(&settings);
            h.vars
                .extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            for (g, gat) in &member_of {
                model.add_member(g, n, gat)?;
            }
        }
    }

    for (key, def) in group_defs {
        let g = key.get_ref();
        let at = cx.at(key.span().start);
        let gd = model.group(g, &at)?;
        for (k, v) in def.vars {
            gd.set_var(&k, v, &at)?;
        }
        gd.settings.overlay(&def.settings);
        for (h, hat) in def.hosts {
            model.list_member(g, &h, &hat)?;
        }
        for (c, cat) in def.children {
            model.add_child(g, &c, &cat, true)?;
        }
    }
    Ok(())
}

/// `; did you mean `x`?` when `key` is close to a known one, else nothing.
fn suggestion(key: &str) -> String {
    did_you_mean(key, KNOWN_KEYS)
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

#[derive(Default)]
struct GroupTable {
    hosts: Vec<(String, String)>,
    children: Vec<(String, String)>,
    vars: Vars,
    settings: Settings,
}

/// Connection settings carried by Ansible-style variables (`ansible_user = "x"`).
fn ansible_settings(vars: &Vars, at: &str) -> Result<Settings, Error> {
    let mut s = Settings::default();
    for (k, v) in vars {
        s.apply_ansible_var(k, v)
            .map_err(|m| usage(at, format!("`{k}`: {m}")))?;
    }
    Ok(s)
}

/// A connection key shared by hosts and groups; `Ok(false)` if `key` is not one.
fn apply_setting(
    s: &mut Settings,
    key: &str,
    v: &Spanned<Value>,
    at: &str,
    base: &Path,
) -> Result<bool, Error> {
    let bad = |m: String| usage(at, format!("`{key}`: {m}"));
    match key {
        "port" => {
            let p = match v.get_ref() {
                Value::Integer(i) => parse_port(&i.to_string()),
                Value::String(s) => parse_port(s),
                other => parse_port(&other.to_string()),
            };
            s.port = Some(p.map_err(bad)?);
        }
        "user" => s.user = Some(string(v, key, at)?),
        "identity_file" | "identity_files" => {
            let list = match v.get_ref() {
                Value::String(p) => vec![p.clone()],
                _ => string_list(v, key, at)?,
            };
            let files = s.identity_files.get_or_insert_with(Vec::new);
            files.extend(list.iter().map(|p| resolve_path(p, base)));
        }
        "identities_only" | "become" => {
            let b = match v.get_ref() {
                Value::Boolean(b) => Ok(*b),
                Value::String(x) => parse_bool(x),
                other => Err(format!("expected true or false, found `{other}`")),
            }
            .map_err(bad)?;
            if key == "become" {
                s.become_ = Some(b);
            } else {
                s.identities_only = Some(b);
            }
        }
        "proxy_jump" => s.proxy_jump = Some(string(v, key, at)?),
        "connect_timeout" => {
            let d = match v.get_ref() {
                Value::Integer(i) if *i >= 0 => Ok(std::time::Duration::from_secs(*i as u64)),
                Value::String(x) => parse_duration(x),
                other => Err(format!(
                    "expected seconds or a duration like \"10s\", found `{other}`"
                )),
            };
            s.connect_timeout = Some(d.map_err(bad)?);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn resolve_path(p: &str, base: &Path) -> PathBuf {
    let path = model::expand_tilde(p);
    if path.is_relative() {
        base.join(path)
    } else {
        path
    }
}

fn string(v: &Spanned<Value>, key: &str, at: &str) -> Result<String, Error> {
    match v.get_ref() {
        Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
        Value::String(_) => Err(usage(
            at,
            format!("`{key}` is empty; give it a value or remove it"),
        )),
        other => Err(usage(
            at,
            format!("`{key}` must be a string, found `{other}`"),
        )),
    }
}

fn string_list(v: &Spanned<Value>, key: &str, at: &str) -> Result<Vec<String>, Error> {
    let err = || {
        usage(
            at,
            format!("`{key}` must be a list of names, e.g. {key} = [\"a\", \"b\"]"),
        )
    };
    match v.get_ref() {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(err()),
            })
            .collect(),
        _ => Err(err()),
    }
}

fn vars_table(v: &Spanned<Value>, at: &str) -> Result<Vars, Error> {
    match v.get_ref() {
        Value::Table(t) => Ok(t.iter().map(|(k, v)| (k.clone(), typed(v))).collect()),
        other => Err(usage(
            at,
            format!("`vars` must be a table, e.g. vars = {{ key = \"value\" }}, found `{other}`"),
        )),
    }
}

/// A TOML value as the same JSON value; a datetime as its text.
pub(crate) fn typed(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::String(s) => J::String(s.clone()),
        Value::Integer(i) => J::from(*i),
        Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or_else(|| J::String(f.to_string()), J::Number)
        }
        Value::Boolean(b) => J::Bool(*b),
        Value::Datetime(d) => J::String(d.to_string()),
        Value::Array(items) => J::Array(items.iter().map(typed).collect()),
        Value::Table(t) => J::Object(t.iter().map(|(k, v)| (k.clone(), typed(v))).collect()),
    }
}
