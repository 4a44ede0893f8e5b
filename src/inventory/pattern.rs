//! Host patterns, as `-H` and `--limit` take them (Ansible's syntax).
//!
//! A pattern is a list of terms separated by commas (or colons, when the colons can't
//! be part of an address). A term is a host name, a glob over host names (`web*`,
//! `db[12]`, `?`), `@group` (globs allowed: `@prod-*`), a bare group name when no host
//! has that name, `~regex` over host names, or `all` / `*`. `!term` removes hosts,
//! `&term` keeps only hosts that are also in the term. As in Ansible, the plain terms
//! are added first, then the `&` terms intersect and the `!` terms exclude, wherever
//! they are written; a pattern of only `!`/`&` terms starts from `all`.
//!
//! A group that exists but has no host (`@empty`, an empty `ungrouped`) selects no
//! host, as in Ansible. Any other term that matches nothing is an error naming it (a typo in `all,!web11` must not
//! quietly run on web11's neighbour), except a name that looks like a host (it has a
//! dot, or is `user@host[:port]`, `host:port` or an IPv6 address): that is an ad-hoc
//! host, so `tend exec -H 10.0.0.7 -- uptime` needs no inventory. The result is in
//! inventory order, without duplicates, ad-hoc hosts last.

use std::collections::BTreeSet;

use globset::{GlobBuilder, GlobMatcher};

use super::model::{finish_host, Settings};
use super::{Host, Inventory};
use crate::error::Error;

pub(crate) fn select(
    inv: &Inventory,
    patterns: &str,
    limit: Option<&str>,
) -> Result<Vec<Host>, Error> {
    let mut s = Selector {
        inv,
        adhoc: Vec::new(),
    };
    let mut chosen = s.eval(patterns, "-H")?;
    if let Some(limit) = limit {
        let keep = s.eval(limit, "--limit")?;
        let had = !chosen.is_empty();
        chosen = chosen.intersection(&keep).copied().collect();
        if chosen.is_empty() && had && !keep.is_empty() {
            return Err(Error::Usage(format!(
                "no host is both in `{patterns}` and in --limit `{limit}`; check both patterns"
            )));
        }
    }
    let n = inv.hosts.len();
    Ok(chosen
        .into_iter()
        .map(|i| {
            if i < n {
                inv.hosts[i].clone()
            } else {
                s.adhoc[i - n].clone()
            }
        })
        .collect())
}

/// Split a pattern list into its terms.
pub(crate) fn split_terms(patterns: &str) -> Vec<&str> {
    let sep = if patterns.contains(',') {
        ','
    } else if colon_separated(patterns) {
        ':'
    } else {
        return vec![patterns.trim()];
    };
    patterns
        .split(sep)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// Colons separate terms unless they belong to an address (`host:port`,
/// `user@host:port`, `[v6]:port`, `fe80::1`).
fn colon_separated(s: &str) -> bool {
    if !s.contains(':') || s.contains('@') || s.trim_start().starts_with('[') {
        return false;
    }
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() == 2 && !parts[1].is_empty() && parts[1].bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let hex = |p: &&str| p.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.');
    let v6 = s.contains("::")
        || (parts.len() >= 3 && parts.iter().all(hex) && s.bytes().any(|b| b.is_ascii_digit()));
    if v6 {
        return false;
    }
    true
}

struct Selector<'a> {
    inv: &'a Inventory,
    /// Ad-hoc hosts; index `inv.hosts.len() + i` in a selection.
    adhoc: Vec<Host>,
}

impl Selector<'_> {
    fn eval(&mut self, patterns: &str, flag: &str) -> Result<BTreeSet<usize>, Error> {
        let terms = split_terms(patterns);
        if terms.is_empty() || terms == [""] {
            return Err(Error::Usage(format!(
                "{flag} is empty; give host names, `@group`, a glob like `web*` or `all`"
            )));
        }
        let (mut plus, mut and, mut minus) = (Vec::new(), Vec::new(), Vec::new());
        for t in terms {
            if let Some(r) = t.strip_prefix('!') {
                minus.push(r);
            } else if let Some(r) = t.strip_prefix('&') {
                and.push(r);
            } else {
                plus.push(t);
            }
        }
        let mut set = BTreeSet::new();
        if plus.is_empty() {
            plus.push("all");
        }
        for t in plus {
            set.extend(self.term(t, true)?);
        }
        // Only empty groups (`@empty`): no host, as in Ansible; not an error.
        let none_to_start = set.is_empty();
        for t in and {
            let m = self.term(t, false)?;
            set = set.intersection(&m).copied().collect();
        }
        for t in minus {
            let m = self.term(t, false)?;
            set = set.difference(&m).copied().collect();
        }
        if set.is_empty() && !none_to_start {
            return Err(Error::Usage(format!(
                "{flag} `{patterns}` selects no host: the `&`/`!` terms removed every match"
            )));
        }
        Ok(set)
    }

    /// The hosts one term names. `adhoc`: a host-like name that matches nothing may be
    /// created (only for plain terms: excluding or intersecting an unknown host is a typo).
    fn term(&mut self, t: &str, adhoc: bool) -> Result<BTreeSet<usize>, Error> {
        let t = t.trim();
        let inv = self.inv;
        let n = inv.hosts.len();
        let names = || {
            inv.hosts
                .iter()
                .map(|h| h.name.as_str())
                .chain(self.adhoc.iter().map(|h| h.name.as_str()))
                .enumerate()
        };
        let mut out = BTreeSet::new();
        if t.is_empty() {
            return Err(Error::Usage(
                "empty term in the host pattern (a lone `!` or `&`, or `,,`)".to_string(),
            ));
        }
        if t == "all" || t == "*" {
            out.extend(0..n + self.adhoc.len());
            // Hosts known only from ~/.ssh/config (github.com, a home box…) are not the
            // fleet: `all` leaves them out unless they are all there is. Name them, or
            // use @ssh_config.
            let ssh_only: BTreeSet<usize> = inv
                .groups
                .get(super::model::SSH_CONFIG_GROUP)
                .into_iter()
                .flatten()
                .filter_map(|h| inv.index.get(h).copied())
                .collect();
            if ssh_only.len() < n {
                out.retain(|i| !ssh_only.contains(i));
            }
        } else if let Some(g) = t.strip_prefix('@') {
            if is_glob(g) {
                let m = glob(g, t)?;
                for (gname, members) in &inv.groups {
                    if m.is_match(gname) {
                        out.extend(members.iter().filter_map(|h| inv.index.get(h).copied()));
                    }
                }
            } else if let Some(members) = inv.groups.get(g) {
                out.extend(members.iter().filter_map(|h| inv.index.get(h).copied()));
                // A group that exists but is empty selects no host.
                return Ok(out);
            }
        } else if let Some(re) = t.strip_prefix('~') {
            let re = regex::Regex::new(&format!("^(?:{re})")).map_err(|e| {
                Error::Usage(format!("bad regular expression in host pattern `{t}`: {e}"))
            })?;
            out.extend(
                names()
                    .filter(|(_, name)| re.is_match(name))
                    .map(|(i, _)| i),
            );
        } else if let Some(i) = names().find(|(_, name)| *name == t).map(|(i, _)| i) {
            out.insert(i);
        } else if let Some(members) = inv.groups.get(t) {
            out.extend(members.iter().filter_map(|h| inv.index.get(h).copied()));
            return Ok(out);
        } else {
            if is_glob(t) {
                // `[` is also IPv6 (`user@[::1]:22`): a glob that matches nothing may
                // still be an address.
                if let Ok(m) = glob(t, t) {
                    out.extend(names().filter(|(_, name)| m.is_match(name)).map(|(i, _)| i));
                } else if parse_adhoc(t).is_none() {
                    glob(t, t)?;
                }
                if !out.is_empty() {
                    return Ok(out);
                }
            }
            // An address of an inventory host (`-H 10.0.0.5` for web1), else ad hoc.
            out.extend(
                inv.hosts
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.address == t)
                    .map(|(i, _)| i),
            );
            if out.is_empty() && adhoc {
                if let Some(h) = self.adhoc_host(t) {
                    self.adhoc.push(h);
                    out.insert(n + self.adhoc.len() - 1);
                }
            }
        }
        if out.is_empty() {
            return Err(self.no_match(t));
        }
        Ok(out)
    }

    /// A host given on the command line: `host.domain`, `user@host`, `host:port`,
    /// `user@[v6]:port`. Settings come from the inventory host of that name or address,
    /// if any, then from `~/.ssh/config`.
    fn adhoc_host(&self, term: &str) -> Option<Host> {
        let (user, host, port) = parse_adhoc(term)?;
        let base = self
            .inv
            .hosts
            .iter()
            .find(|h| h.name == host)
            .or_else(|| self.inv.hosts.iter().find(|h| h.address == host));
        let mut h = match base {
            Some(b) => {
                let mut h = b.clone();
                h.source = format!("command line ({} from {})", b.name, b.source);
                h
            }
            None => finish_host(
                host,
                &Settings::default(),
                Default::default(),
                Vec::new(),
                "command line".to_string(),
                self.inv.ssh.as_ref(),
            ),
        };
        h.name = term.to_string();
        if user.is_some() {
            h.user = user.map(str::to_string);
        }
        if port.is_some() {
            h.port = port;
        }
        Some(h)
    }

    fn no_match(&self, t: &str) -> Error {
        let inv = self.inv;
        let mut msg = format!("no host or group matches `{t}`");
        if inv.hosts.is_empty() {
            msg.push_str(&format!(
                " (the inventory is empty: {}); name hosts directly, e.g. -H user@10.0.0.7, \
                 or create tend.toml with [hosts.NAME] tables",
                if inv.sources.is_empty() {
                    "no tend.toml, -i file or ~/.ssh/config was found".to_string()
                } else {
                    format!("read {}", inv.sources.join(", "))
                }
            ));
            return Error::Usage(msg);
        }
        let groups: Vec<&str> = inv.groups.keys().map(String::as_str).collect();
        const MAX: usize = 20;
        let mut list = groups
            .iter()
            .take(MAX)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if groups.len() > MAX {
            list.push_str(&format!(", … ({} more)", groups.len() - MAX));
        }
        msg.push_str(&format!(" (known groups: {list})"));
        let bare = t.trim_start_matches('@');
        let candidates: Vec<(usize, &str)> = inv
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .chain(groups.iter().copied())
            .map(|c| (edit_distance(c, bare), c))
            .filter(|(d, c)| *d <= 2 && *c != bare)
            .collect();
        let best = candidates.iter().map(|(d, _)| *d).min();
        let close: Vec<&str> = candidates
            .iter()
            .filter(|(d, _)| Some(*d) == best)
            .map(|(_, c)| *c)
            .take(3)
            .collect();
        if !close.is_empty() {
            msg.push_str(&format!(
                "; did you mean {}?",
                close
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        } else if !t.starts_with(['@', '~']) && !is_glob(t) {
            msg.push_str(
                "; a host outside the inventory needs its full name or address \
                 (e.g. host.example.com or user@10.0.0.7)",
            );
        }
        Error::Usage(msg)
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn glob(g: &str, term: &str) -> Result<GlobMatcher, Error> {
    GlobBuilder::new(g)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| Error::Usage(format!("bad glob in host pattern `{term}`: {e}")))
}

/// `[user@]host[:port]` or `[user@][v6]:port`, if `term` looks like a host rather than
/// a mistyped name: it has a dot, a user, a port, or is an IPv6 address.
pub(crate) fn parse_adhoc(term: &str) -> Option<(Option<&str>, &str, Option<u16>)> {
    let (user, rest) = match term.split_once('@') {
        Some((u, r)) if !u.is_empty() && !r.is_empty() => (Some(u), r),
        Some(_) => return None,
        None => (None, term),
    };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        match after {
            "" => (h, None),
            a => (
                h,
                Some(
                    a.strip_prefix(':')?
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)?,
                ),
            ),
        }
    } else if rest.matches(':').count() == 1 {
        let (h, p) = rest.split_once(':')?;
        (h, Some(p.parse::<u16>().ok().filter(|p| *p > 0)?))
    } else {
        (rest, None)
    };
    let v6 = host.contains(':');
    let ok_chars = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'));
    if host.is_empty() || !ok_chars || host.starts_with(['-', '.']) {
        return None;
    }
    if user.is_some() || port.is_some() || v6 || host.contains('.') {
        Some((user, host, port))
    } else {
        None
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_pattern_split() {
        assert_eq!(split_terms("web1, web2"), ["web1", "web2"]);
        assert_eq!(split_terms("web:&prod:!web3"), ["web", "&prod", "!web3"]);
        assert_eq!(split_terms("10.0.0.7:2222"), ["10.0.0.7:2222"]);
        assert_eq!(split_terms("deploy@h:22"), ["deploy@h:22"]);
        assert_eq!(split_terms("fe80::1"), ["fe80::1"]);
        assert_eq!(split_terms("a:b"), ["a", "b"]);
    }

    #[test]
    fn inventory_pattern_adhoc_parsing() {
        assert_eq!(parse_adhoc("10.0.0.7"), Some((None, "10.0.0.7", None)));
        assert_eq!(
            parse_adhoc("root@db.example.com:2222"),
            Some((Some("root"), "db.example.com", Some(2222)))
        );
        assert_eq!(parse_adhoc("me@box"), Some((Some("me"), "box", None)));
        assert_eq!(parse_adhoc("[::1]:2200"), Some((None, "::1", Some(2200))));
        assert_eq!(parse_adhoc("fe80::1"), Some((None, "fe80::1", None)));
        assert_eq!(parse_adhoc("webx"), None);
        assert_eq!(parse_adhoc("h.example:notaport"), None);
        assert_eq!(parse_adhoc("@h.example"), None);
    }

    #[test]
    fn inventory_pattern_edit_distance() {
        assert_eq!(edit_distance("web1", "web11"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
