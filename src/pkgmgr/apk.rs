//! apk (Alpine): the installed database (`/lib/apk/db/installed`, `P:`/`V:` lines)
//! says what is installed, `apk policy` what can be downloaded, `apk … --simulate`
//! what a change would do (its `(1/3) Installing name (1.0)` and `(2/3) Upgrading
//! name (1.0 -> 2.0)` lines, as apk-tools' commit.c prints them), and apk makes it,
//! waiting for the database lock (`--wait`).
//!
//! Not tested against a real apk here (the test machine is Debian): the parsers
//! are, on apk's own output.

use std::collections::{BTreeMap, BTreeSet};

use super::{Change, PkgError, PkgResult, Pm, Request};
use crate::transport::shell_quote;

/// `options` items `key=value` as apk's long options (`--key=value`).
fn options(pm: &Pm, simulate: bool) -> String {
    let mut o = Vec::new();
    if simulate {
        o.push("--simulate".to_string());
    } else {
        o.push(format!("--wait {}", pm.lock_timeout.as_secs().max(1)));
    }
    for item in pm.options {
        o.push(shell_quote(&format!("--{item}")));
    }
    o.join(" ")
}

/// The apk commands for a request, in order: removals first (`apk del`), then
/// `apk add` (`--upgrade` for the newest version).
fn commands(request: &Request) -> Vec<String> {
    match request {
        Request::UpgradeAll => vec!["upgrade".into()],
        Request::Transaction {
            install,
            remove,
            latest,
        } => {
            let mut out = Vec::new();
            if !remove.is_empty() {
                let words: Vec<String> = remove.iter().map(|r| shell_quote(r)).collect();
                out.push(format!("del {}", words.join(" ")));
            }
            if !install.is_empty() {
                let words: Vec<String> = install
                    .iter()
                    .map(|w| {
                        shell_quote(&match &w.version {
                            Some(v) => format!("{}={v}", w.name),
                            None => w.name.clone(),
                        })
                    })
                    .collect();
                let upgrade = if *latest { "--upgrade " } else { "" };
                out.push(format!("add {upgrade}{}", words.join(" ")));
            }
            out
        }
    }
}

fn complaint(out: &crate::transport::ExecOutput) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text
        .trim_end()
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    lines.join(" | ")
}

pub(super) fn installed(pm: &Pm, names: Option<&[String]>) -> PkgResult<BTreeMap<String, String>> {
    let out = pm.exec("cat /lib/apk/db/installed")?;
    if out.code != 0 {
        return Err(PkgError::Failed(format!(
            "{}: cannot read apk's database /lib/apk/db/installed: {}",
            pm.target.info().name,
            complaint(&out)
        )));
    }
    let mut all = parse_installed(&String::from_utf8_lossy(&out.stdout));
    if let Some(names) = names {
        all.retain(|k, _| names.contains(k));
    }
    Ok(all)
}

/// The installed database: one record per package, `P:name` and `V:version` lines
/// among others, records separated by an empty line.
fn parse_installed(text: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let (mut name, mut version) = (None, None);
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if let (Some(n), Some(v)) = (name.take(), version.take()) {
                found.insert(n, v);
            }
            continue;
        }
        if let Some(n) = line.strip_prefix("P:") {
            name = Some(n.to_string());
        } else if let Some(v) = line.strip_prefix("V:") {
            version = Some(v.to_string());
        }
    }
    found
}

pub(super) fn available(
    pm: &Pm,
    names: &[String],
) -> PkgResult<BTreeMap<String, BTreeSet<String>>> {
    let words: Vec<String> = names.iter().map(|n| shell_quote(n)).collect();
    let out = pm.exec(&format!("apk policy {}", words.join(" ")))?;
    Ok(parse_policy(&String::from_utf8_lossy(&out.stdout)))
}

/// `name policy:`, then `  version:` lines each followed by `    where` lines: a
/// repository, or the installed database (`lib/apk/db/installed`, apk 3:
/// `LAYER/installed`), which cannot serve the package again.
fn parse_policy(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut version: Option<String> = None;
    for line in text.lines() {
        if let Some(n) = line
            .strip_suffix(" policy:")
            .filter(|_| !line.starts_with(' '))
        {
            name = Some(n.to_string());
            version = None;
        } else if let Some(v) = line
            .strip_prefix("  ")
            .filter(|l| !l.starts_with(' '))
            .and_then(|l| l.strip_suffix(':'))
        {
            // `1.2.3.5 (upgradeable):`
            version = v.split_whitespace().next().map(str::to_string);
        } else if let (Some(n), Some(v), Some(place)) =
            (&name, &version, line.strip_prefix("    ").map(str::trim))
        {
            if !place.is_empty() && !place.ends_with("/installed") {
                found.entry(n.clone()).or_default().insert(v.clone());
            }
        }
    }
    found
}

pub(super) fn simulate(pm: &Pm, request: &Request) -> PkgResult<Vec<Change>> {
    let mut changes = Vec::new();
    for cmd in commands(request) {
        let out = pm.exec(&format!("apk {} {cmd}", options(pm, true)))?;
        if out.code != 0 {
            return Err(PkgError::Failed(format!(
                "{}: apk {cmd} (simulated): {}",
                pm.target.info().name,
                complaint(&out)
            )));
        }
        changes.extend(parse_simulation(&String::from_utf8_lossy(&out.stdout)));
    }
    Ok(changes)
}

/// `(1/3) Purging libold (1)`, `(2/3) Installing libnew (1)`, `(3/3) Upgrading app
/// (1 -> 2)`, also `Downgrading` and `Replacing`; a name may carry its repository
/// tag (`name@edge`). Reinstalls and pinning updates change no version.
fn parse_simulation(text: &str) -> Vec<Change> {
    let mut changes = Vec::new();
    for line in text.lines() {
        let Some(rest) = line
            .strip_prefix('(')
            .and_then(|l| l.split_once(") "))
            .map(|(_, r)| r)
        else {
            continue;
        };
        let mut words = rest.splitn(2, ' ');
        let (Some(verb), Some(rest)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((name, versions)) = rest.split_once(" (") else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name).to_string();
        let versions = versions.trim_end().trim_end_matches(')');
        let (before, after) = match (verb, versions.split_once(" -> ")) {
            ("Installing", None) => (None, Some(versions.to_string())),
            ("Purging", None) => (Some(versions.to_string()), None),
            ("Upgrading" | "Downgrading" | "Replacing", Some((b, a))) => {
                (Some(b.to_string()), Some(a.to_string()))
            }
            _ => continue,
        };
        changes.push(Change {
            name,
            before,
            after,
            lost: false,
        });
    }
    changes
}

pub(super) fn apply(pm: &Pm, request: &Request) -> PkgResult<()> {
    for cmd in commands(request) {
        let out = pm.exec(&format!("apk {} {cmd}", options(pm, false)))?;
        if out.code != 0 {
            return Err(PkgError::Failed(format!(
                "{}: apk {cmd}: {}",
                pm.target.info().name,
                complaint(&out)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// apk-tools' own expected outputs (test/solver/upgrade1.test, fix6.test) and
    /// the other verbs of commit.c's print_change.
    #[test]
    fn simulation_lines() {
        let text = "(1/3) Purging libold (1)\n\
(2/3) Installing libnew (1)\n\
(3/3) Upgrading app (1 -> 2)\n\
OK: 0 MiB in 2 packages\n\
(1/2) Reinstalling b (1)\n\
(1/2) Downgrading musl@edge (1.2.4-r2 -> 1.2.3-r5)\n\
(2/2) Updating pinning c@testing (2)\n";
        let lines: Vec<String> = parse_simulation(text).iter().map(Change::line).collect();
        assert_eq!(
            lines,
            [
                "- libold 1",
                "+ libnew 1",
                "~ app 1 -> 2",
                "~ musl 1.2.4-r2 -> 1.2.3-r5"
            ]
        );
    }

    #[test]
    fn installed_database_and_policy() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\n\nC:Q1def=\nP:busybox\nV:1.36.1-r5\nA:x86_64\n";
        let i = parse_installed(db);
        assert_eq!(i["musl"], "1.2.4-r2");
        assert_eq!(i["busybox"], "1.36.1-r5");
        // The layout apk-tools' app_policy.c documents and prints.
        let p = "zlib1g policy:\n  2.0:\n    @testing http://nl.alpinelinux.org/alpine/edge/testing\n  \
1.7:\n    @edge http://nl.alpinelinux.org/alpine/edge/main\n  \
1.2.3.5 (upgradeable):\n    http://nl.alpinelinux.org/alpine/v2.6/main\n  \
1.2.3.4 (installed):\n    /media/cdrom/...\n    http://nl.alpinelinux.org/alpine/v2.5/main\n  \
1.1:\n    http://nl.alpinelinux.org/alpine/v2.4/main\n\
local policy:\n  0.9-r0:\n    lib/apk/db/installed\n";
        let a = parse_policy(p);
        assert_eq!(
            a["zlib1g"].iter().collect::<Vec<_>>(),
            ["1.1", "1.2.3.4", "1.2.3.5", "1.7", "2.0"]
        );
        assert!(
            !a.contains_key("local"),
            "only the installed database has it"
        );
    }

    #[test]
    fn requests_as_apk_commands() {
        let r = Request::Transaction {
            install: vec![super::super::Want {
                name: "app".into(),
                version: Some("1-r0".into()),
            }],
            remove: vec!["libnew".into()],
            latest: false,
        };
        assert_eq!(commands(&r), ["del libnew", "add app=1-r0"]);
    }
}
