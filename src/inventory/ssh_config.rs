//! `~/.ssh/config`: host aliases, and the defaults ssh would apply to any host.
//!
//! Parsing, `Include`, `~` and first-value-wins are the `ssh2-config` crate's. Two things
//! are ours. `Match` blocks are blanked out before the crate sees them (it does not know
//! `Match` and would apply the block's lines to the `Host` above it); `Match` inside an
//! included file is not seen by that pass. And `IdentitiesOnly`, which the crate does not
//! model, is read from the raw fields it keeps.
//!
//! Every `Host` alias without wildcards becomes a host of the inventory. For a host from
//! any source, ssh's settings fill what the inventory left unset, looked up first under
//! the inventory name and then under the address, as `ssh NAME` / `ssh ADDRESS` would.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2_config::{ParseRule, SshConfig};

use super::model::{parse_bool, usage};
use crate::error::Error;

/// What ssh would use for a host, for each field the inventory did not set.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SshDefaults {
    pub host_name: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_files: Vec<PathBuf>,
    pub identities_only: Option<bool>,
    pub proxy_jump: Option<String>,
    pub connect_timeout: Option<Duration>,
    /// `UserKnownHostsFile` (`none`: an empty list).
    pub user_known_hosts: Option<Vec<PathBuf>>,
    /// `GlobalKnownHostsFile` (`none`: an empty list).
    pub global_known_hosts: Option<Vec<PathBuf>>,
}

#[derive(Debug, Clone)]
pub(crate) struct SshConfigFile {
    config: SshConfig,
    /// The path as shown to the user (`~/.ssh/config`).
    pub display: String,
    /// Non-wildcard `Host` aliases in file order, with where each was written.
    pub aliases: Vec<(String, String)>,
}

const RULES: ParseRule = ParseRule::ALLOW_UNKNOWN_FIELDS.union(ParseRule::ALLOW_UNSUPPORTED_FIELDS);

impl SshConfigFile {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let display = display_path(path);
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Usage(format!(
                    "ssh config {display} does not exist; check the path"
                ))
            } else {
                Error::io(format!("cannot read ssh config {display}"), e)
            }
        })?;
        Self::parse(&text, &display)
    }

    pub fn parse(text: &str, display: &str) -> Result<Self, Error> {
        let text = blank_match_blocks(text);
        let config = match parse_text(&text) {
            Ok(c) => c,
            Err(e) => {
                // The crate does not say which line; find the shortest failing prefix.
                let lines: Vec<&str> = text.lines().collect();
                let (mut lo, mut hi) = (1, lines.len());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if parse_text(&lines[..mid].join("\n")).is_err() {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                return Err(usage(
                    &format!("{display}:{lo}"),
                    format!("{e}; fix this line (ssh -G would report it too) or pass another file"),
                ));
            }
        };

        // Where each `Host` pattern of the file itself was written.
        let mut lines_of: HashMap<String, usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let (key, args) = split_keyword(line);
            if key.eq_ignore_ascii_case("host") {
                for pat in args.split_whitespace() {
                    lines_of
                        .entry(pat.trim_matches('"').to_string())
                        .or_insert(i + 1);
                }
            }
        }
        let mut aliases: Vec<(String, String)> = Vec::new();
        for host in config.get_hosts() {
            for clause in &host.pattern {
                let p = &clause.pattern;
                if clause.negated || p.contains(['*', '?']) || p.is_empty() {
                    continue;
                }
                if aliases.iter().any(|(a, _)| a == p) {
                    continue;
                }
                let source = match lines_of.get(p) {
                    Some(n) => format!("{display}:{n}"),
                    None => format!("{display} (included file)"),
                };
                aliases.push((p.clone(), source));
            }
        }
        Ok(SshConfigFile {
            config,
            display: display.to_string(),
            aliases,
        })
    }

    /// ssh's settings for the host called `name` (then its `address`, if given and
    /// different), first value wins.
    pub fn defaults(&self, name: &str, address: Option<&str>) -> SshDefaults {
        let mut p = self.config.query(name);
        if let Some(a) = address.filter(|a| *a != name) {
            p.overwrite_if_none(&self.config.query(a));
        }
        let mut identity_files: Vec<PathBuf> = Vec::new();
        for f in p.identity_file.unwrap_or_default() {
            if !identity_files.contains(&f) {
                identity_files.push(f);
            }
        }
        let proxy_jump = p
            .proxy_jump
            .filter(|j| !j.is_empty() && !j[0].eq_ignore_ascii_case("none"))
            .map(|j| j.join(","));
        let identities_only = p
            .unsupported_fields
            .get("identitiesonly")
            .and_then(|v| v.first())
            .and_then(|v| parse_bool(v).ok());
        // The crate keeps these as unsupported fields; several files may be given.
        let files = |key: &str| {
            p.unsupported_fields.get(key).map(|v| {
                v.iter()
                    .flat_map(|a| a.split_whitespace())
                    .filter(|f| !f.eq_ignore_ascii_case("none"))
                    .map(|f| super::model::expand_tilde(&expand_tokens(f, name)))
                    .collect::<Vec<_>>()
            })
        };
        SshDefaults {
            user_known_hosts: files("userknownhostsfile"),
            global_known_hosts: files("globalknownhostsfile"),
            host_name: p.host_name.map(|h| expand_tokens(&h, name)),
            port: p.port,
            user: p.user,
            identity_files,
            identities_only,
            proxy_jump,
            connect_timeout: p.connect_timeout,
        }
    }
}

fn parse_text(text: &str) -> Result<SshConfig, ssh2_config::SshParserError> {
    SshConfig::default().parse(&mut BufReader::new(text.as_bytes()), RULES)
}

/// `Keyword args` or `Keyword=args`.
fn split_keyword(line: &str) -> (&str, &str) {
    let t = line.trim();
    let end = t
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(t.len());
    let rest = t[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    let rest = rest.split('#').next().unwrap_or("").trim();
    (&t[..end], rest)
}

/// Replace every line of a `Match` block with an empty one (line numbers stay right).
fn blank_match_blocks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_match = false;
    for line in text.lines() {
        let (key, _) = split_keyword(line);
        if key.eq_ignore_ascii_case("match") {
            in_match = true;
        } else if key.eq_ignore_ascii_case("host") {
            in_match = false;
        }
        if !in_match {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// `%h` (the name) and `%%` in `HostName`, as ssh expands them.
fn expand_tokens(s: &str, name: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(name),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

/// `/home/me/.ssh/config` → `~/.ssh/config`.
pub(crate) fn display_path(path: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME") {
        if let Ok(rest) = path.strip_prefix(&home) {
            if !home.is_empty() {
                return format!("~/{}", rest.display());
            }
        }
    }
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_ssh_match_blocks_are_ignored() {
        let cfg = SshConfigFile::parse(
            "Host a\n  User ua\nMatch exec \"true\"\n  User fromMatch\n  Port 2\nHost b\n  Port 3\n",
            "cfg",
        )
        .unwrap();
        let a = cfg.defaults("a", None);
        assert_eq!(a.user.as_deref(), Some("ua"));
        assert_eq!(a.port, None);
        assert_eq!(cfg.defaults("b", None).port, Some(3));
        assert_eq!(
            cfg.aliases,
            [
                ("a".to_string(), "cfg:1".to_string()),
                ("b".to_string(), "cfg:6".to_string())
            ]
        );
    }

    #[test]
    fn inventory_ssh_errors_name_the_line() {
        let e = SshConfigFile::parse("Host a\n  User u\n  Port nope\n", "cfg").unwrap_err();
        assert!(e.to_string().starts_with("cfg:3: "), "{e}");
    }

    #[test]
    fn inventory_ssh_hostname_tokens() {
        assert_eq!(expand_tokens("%h.example.com", "web1"), "web1.example.com");
        assert_eq!(expand_tokens("a%%b", "x"), "a%b");
    }
}
