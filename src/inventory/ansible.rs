//! Ansible inventories, INI and YAML, so an existing fleet is usable as it is.
//!
//! INI: `[group]` sections of host lines (`web1 ansible_host=10.0.0.5 foo=bar`, host
//! ranges, `host:port`), `[group:children]`, `[group:vars]`; host lines before any
//! section are `ungrouped`; `#` and `;` start comment lines. YAML: the nested
//! `all: {hosts: {NAME: {VAR: VALUE}}, children: {GROUP: {...}}, vars: {...}}` form,
//! with ranges in host keys too.
//!
//! The connection variables (`ansible_host`, `ansible_port`, `ansible_user`,
//! `ansible_ssh_private_key_file`, `ansible_become`, …) become the host's settings and
//! stay in its variables as Ansible keeps them. INI values are typed as Ansible types
//! them ([`super::literal`]: `4` an int, `True` a bool, `[80, 443]` a list, `yes` a
//! string); YAML values keep their YAML types. A group's `ansible_group_priority` is
//! its priority, not a variable.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::literal;
use super::model::{usage, Model, Settings, Vars};
use super::yaml_value::{with_source, YamlValue};
use crate::error::Error;

/// Which format an inventory file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Ini,
    Yaml,
    Toml,
}

/// By extension (`.ini`, `.yml`/`.yaml`, `.toml`), else by the first meaningful line.
pub(crate) fn detect(path: &std::path::Path, text: &str) -> Format {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
    {
        Some(e) if e == "yml" || e == "yaml" => return Format::Yaml,
        Some(e) if e == "ini" || e == "cfg" => return Format::Ini,
        Some(e) if e == "toml" => return Format::Toml,
        _ => {}
    }
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
    match first {
        None => Format::Ini,
        Some(l) if l.starts_with("[[") || l.starts_with("[hosts.") || l.starts_with("[groups.") => {
            Format::Toml
        }
        Some(l) if l.starts_with('[') => Format::Ini,
        Some(l) if l == "---" || l.ends_with(':') || l.contains(": ") || l.starts_with('{') => {
            Format::Yaml
        }
        Some(_) => Format::Ini,
    }
}

// ---------------------------------------------------------------------------- INI

enum Section {
    Hosts(String),
    Children(String),
    Vars(String),
}

pub(crate) fn parse_ini(text: &str, display: &str, model: &mut Model) -> Result<(), Error> {
    let mut section = Section::Hosts("ungrouped".to_string());
    for (i, raw) in text.lines().enumerate() {
        let at = format!("{display}:{}", i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = parse_header(line).map_err(|m| usage(&at, m))?;
            let (Section::Hosts(g) | Section::Children(g) | Section::Vars(g)) = &section;
            model.group(g, &at)?;
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let words = shell_words(line).map_err(|m| usage(&at, m))?;
                let Some((pattern, rest)) = words.split_first() else {
                    continue;
                };
                let (pattern, port) = split_port(pattern).map_err(|m| usage(&at, m))?;
                let mut vars = Vars::new();
                let mut settings = Settings::default();
                if let Some(p) = port {
                    settings.port = Some(p);
                }
                for w in rest {
                    let Some((k, v)) = w.split_once('=') else {
                        return Err(usage(
                            &at,
                            format!(
                                "`{w}` after host `{pattern}` is not key=value; write `{w}=VALUE`"
                            ),
                        ));
                    };
                    if k.is_empty() {
                        return Err(usage(&at, format!("`{w}` has no variable name before `=`")));
                    }
                    // The shell-like split took the quotes off already, as Ansible's
                    // does: `p="4"` is the int 4.
                    let v = literal::eval(v);
                    settings
                        .apply_ansible_var(k, &v)
                        .map_err(|m| usage(&at, format!("`{k}`: {m}")))?;
                    vars.insert(k.to_string(), v);
                }
                for name in model.expand(pattern, &at)? {
                    model.add_member(group, &name, &at)?;
                    let h = model.host(&name, &at)?;
                    h.settings.overlay(&settings);
                    h.vars
                        .extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            Section::Children(group) => {
                let mut words = line.split_whitespace();
                let child = words.next().unwrap_or_default();
                if let Some(extra) = words
                    .next()
                    .filter(|w| !w.starts_with('#') && !w.starts_with(';'))
                {
                    return Err(usage(
                        &at,
                        format!(
                            "[{group}:children] takes one group name per line, found `{extra}` after `{child}`"
                        ),
                    ));
                }
                model.add_child(group, child, &at, false)?;
            }
            Section::Vars(group) => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(usage(
                        &at,
                        format!("[{group}:vars] takes `key=value` lines, found `{line}`"),
                    ));
                };
                // Here the quotes are the literal's: `name = "x"` is the string x.
                let (k, v) = (k.trim(), literal::eval(v.trim()));
                if k.is_empty() {
                    return Err(usage(&at, "variable line has no name before `="));
                }
                model.group(group, &at)?.set_var(k, v, &at)?;
            }
        }
    }
    Ok(())
}

fn parse_header(line: &str) -> Result<Section, String> {
    let body = line
        .strip_prefix('[')
        .and_then(|l| {
            let end = l.find(']')?;
            let rest = l[end + 1..].trim();
            (rest.is_empty() || rest.starts_with('#') || rest.starts_with(';')).then(|| &l[..end])
        })
        .ok_or_else(|| {
            format!("bad section header `{line}`; write [group], [group:children] or [group:vars]")
        })?;
    let (name, kind) = match body.split_once(':') {
        Some((n, k)) => (n.trim(), Some(k.trim())),
        None => (body.trim(), None),
    };
    if name.is_empty() {
        return Err(format!("section header `{line}` has no group name"));
    }
    Ok(match kind {
        None => Section::Hosts(name.to_string()),
        Some("children") => Section::Children(name.to_string()),
        Some("vars") => Section::Vars(name.to_string()),
        Some(other) => {
            return Err(format!(
                "unknown section kind `:{other}` in `{line}`; use [{name}], [{name}:children] or [{name}:vars]"
            ))
        }
    })
}

/// `web1:2222` → (`web1`, 2222). Colons inside range brackets don't count, and a name
/// with several colons outside brackets is an IPv6 address without a port.
fn split_port(pattern: &str) -> Result<(&str, Option<u16>), String> {
    let mut depth = 0;
    let mut colons = Vec::new();
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    if colons.len() != 1 {
        return Ok((pattern, None));
    }
    let (name, port) = (&pattern[..colons[0]], &pattern[colons[0] + 1..]);
    let port = super::model::parse_port(port).map_err(|m| format!("host `{pattern}`: {m}"))?;
    Ok((name, Some(port)))
}

/// Split a host line like a POSIX shell: quotes group, `#` at a word start ends the line.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unclosed `'` quote".to_string()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err("unclosed `\"` quote".to_string()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unclosed `\"` quote".to_string()),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

// ---------------------------------------------------------------------------- YAML

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct YGroup {
    #[serde(default)]
    hosts: Option<Ordered<Option<Ordered<YamlValue>>>>,
    #[serde(default)]
    children: Option<Ordered<Option<YGroup>>>,
    #[serde(default)]
    vars: Option<Ordered<YamlValue>>,
}

/// A YAML mapping kept in file order, with scalar keys read as strings.
struct Ordered<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Ordered(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Key>()? {
                    out.push((k.0, m.next_value()?));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_any(V_(PhantomData))
    }
}

/// A mapping key: any scalar, as text (`10.0.0.1`, `8080`, `true`).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KV;
        impl Visitor<'_> for KV {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
        }
        d.deserialize_any(KV)
    }
}

pub(crate) fn parse_yaml(text: &str, display: &str, model: &mut Model) -> Result<(), Error> {
    let top: Option<Ordered<Option<YGroup>>> =
        with_source(text, || serde_yaml_ng::from_str(text)).map_err(|e| {
        let at = match e.location() {
            Some(l) => format!("{display}:{}", l.line()),
            None => display.to_string(),
        };
        usage(
            &at,
            format!(
                "{e}; an Ansible YAML inventory looks like `all: {{hosts: {{NAME: {{VAR: VALUE}}}}, \
                 children: {{GROUP: {{hosts: …}}}}, vars: {{…}}}}`"
            ),
        )
    })?;
    let lines = KeyLines::new(text);
    for (name, body) in top.map(|t| t.0).unwrap_or_default() {
        walk(model, &name, body.as_ref(), None, display, &lines)?;
    }
    Ok(())
}

fn walk(
    model: &mut Model,
    name: &str,
    g: Option<&YGroup>,
    parent: Option<&str>,
    display: &str,
    lines: &KeyLines,
) -> Result<(), Error> {
    let at = lines.at(display, name);
    model.group(name, &at)?;
    if let Some(p) = parent {
        model.add_child(p, name, &at, false)?;
    }
    let Some(g) = g else { return Ok(()) };
    if let Some(vars) = &g.vars {
        let gd = model.group(name, &at)?;
        for (k, v) in &vars.0 {
            gd.set_var(k, v.0.clone(), &at)?;
        }
    }
    for (pattern, hvars) in g.hosts.iter().flat_map(|h| h.0.iter()) {
        let hat = lines.at(display, pattern);
        let mut settings = Settings::default();
        let mut vars = Vars::new();
        for (k, v) in hvars.iter().flat_map(|v| v.0.iter()) {
            let v = v.0.clone();
            settings
                .apply_ansible_var(k, &v)
                .map_err(|m| usage(&hat, format!("host `{pattern}` var `{k}`: {m}")))?;
            vars.insert(k.clone(), v);
        }
        for h in model.expand(pattern, &hat)? {
            model.add_member(name, &h, &hat)?;
            let hd = model.host(&h, &hat)?;
            hd.settings.overlay(&settings);
            hd.vars
                .extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    for (child, body) in g.children.iter().flat_map(|c| c.0.iter()) {
        walk(model, child, body.as_ref(), Some(name), display, lines)?;
    }
    Ok(())
}

/// The YAML parser gives no positions for values, so a host's or group's line is the
/// first line whose key is its name: good enough to point a person at it.
struct KeyLines(BTreeMap<String, usize>);

impl KeyLines {
    fn new(text: &str) -> Self {
        let mut m = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start().trim_start_matches("- ");
            if let Some((k, _)) = t.split_once(':').filter(|(k, _)| !k.is_empty()) {
                let mut k = k.trim();
                // A key with a range (`web[01:03]`) holds colons of its own.
                if k.contains('[') && !k.contains(']') {
                    if let Some(end) = t.find(']') {
                        k = t[end..].find(':').map(|c| t[..end + c].trim()).unwrap_or(k);
                    }
                }
                let k = k.trim_matches(|c| c == '"' || c == '\'');
                m.entry(k.to_string()).or_insert(i + 1);
            }
        }
        KeyLines(m)
    }

    fn at(&self, display: &str, key: &str) -> String {
        match self.0.get(key) {
            Some(n) => format!("{display}:{n}"),
            None => display.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_ini_words_and_ports() {
        assert_eq!(
            shell_words(r#"web1 a=1 b="x y" c='z' # comment"#).unwrap(),
            ["web1", "a=1", "b=x y", "c=z"]
        );
        assert!(shell_words("web1 a=\"x").is_err());
        assert_eq!(split_port("web1:2222").unwrap(), ("web1", Some(2222)));
        assert_eq!(split_port("web[01:03]").unwrap(), ("web[01:03]", None));
        assert_eq!(
            split_port("web[01:03]:22").unwrap(),
            ("web[01:03]", Some(22))
        );
        assert_eq!(split_port("fe80::1").unwrap(), ("fe80::1", None));
        assert!(split_port("web1:x").is_err());
    }

    #[test]
    fn inventory_format_detection() {
        let p = std::path::Path::new("hosts");
        assert_eq!(detect(p, "[web]\nweb1\n"), Format::Ini);
        assert_eq!(detect(p, "# c\nall:\n  hosts:\n"), Format::Yaml);
        assert_eq!(detect(p, "[hosts.web1]\n"), Format::Toml);
        assert_eq!(detect(p, "web1 ansible_host=x\n"), Format::Ini);
        assert_eq!(detect(std::path::Path::new("x.yml"), "[web]"), Format::Yaml);
    }
}
