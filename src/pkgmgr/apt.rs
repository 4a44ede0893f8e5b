//! apt and dpkg: `dpkg-query` says what is installed, `apt-cache madison` what can be
//! downloaded, `apt-get -s` what a change would do (its `Inst`/`Remv`/`Purg` lines),
//! and `apt-get` makes it, never asking anything (`DEBIAN_FRONTEND=noninteractive`,
//! `-y`, the old configuration files kept) and waiting for the dpkg lock rather
//! than failing at once.

use std::collections::{BTreeMap, BTreeSet};

use super::{Change, PkgError, PkgResult, Pm, Request};
use crate::transport::shell_quote;

/// The options every apt-get call gets, then the caller's own `-o` items.
fn options(pm: &Pm, simulate: bool) -> String {
    let mut o = String::from("-q -y --allow-downgrades");
    if simulate {
        o.push_str(" -s");
    } else {
        // Not cut to the run's budget: the command's own deadline stops the wait
        // first, and the step then ends as the run's time limit, not as a lock error.
        o.push_str(&format!(
            " -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout={}",
            pm.lock_timeout.as_secs().max(1)
        ));
    }
    for item in pm.options {
        o.push_str(" -o ");
        o.push_str(&shell_quote(item));
    }
    o
}

/// The `apt-get` words for a request: `install a b=1.0 c-` (a trailing `-` removes
/// in the same transaction) or `upgrade`.
fn action(request: &Request) -> String {
    match request {
        Request::UpgradeAll => "upgrade".into(),
        Request::Transaction {
            install, remove, ..
        } => {
            let mut words = vec!["install".to_string()];
            for w in install {
                words.push(shell_quote(&match &w.version {
                    Some(v) => format!("{}={v}", w.name),
                    None => w.name.clone(),
                }));
            }
            for r in remove {
                words.push(shell_quote(&format!("{r}-")));
            }
            words.join(" ")
        }
    }
}

/// apt's own complaint (its `E:` lines), or the end of what it said.
fn complaint(out: &crate::transport::ExecOutput) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E:"))
        .map(|l| l.trim_start_matches("E:").trim())
        .collect();
    if !errors.is_empty() {
        return errors.join(" | ");
    }
    let tail: Vec<&str> = text.trim_end().lines().rev().take(5).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

pub(super) fn installed(pm: &Pm, names: Option<&[String]>) -> PkgResult<BTreeMap<String, String>> {
    let mut cmd = String::from("dpkg-query -W -f='${Package}\\t${Status}\\t${Version}\\n'");
    if let Some(names) = names {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        for n in names {
            cmd.push(' ');
            cmd.push_str(&shell_quote(n));
        }
    }
    let out = pm.exec(&cmd)?;
    // 1: some of the names are unknown to dpkg, which is an answer (not installed).
    if out.code != 0 && out.code != 1 {
        return Err(PkgError::Failed(format!(
            "{}: dpkg-query exited with status {}: {}",
            pm.target.info().name,
            out.code,
            complaint(&out)
        )));
    }
    Ok(parse_dpkg_query(&String::from_utf8_lossy(&out.stdout)))
}

/// `name\tinstall ok installed\t1.0` lines: the installed packages (not those
/// removed with their configuration files kept, `deinstall ok config-files`).
fn parse_dpkg_query(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (name, status, version) = (f.next()?, f.next()?, f.next()?);
            (status.split_whitespace().nth(2) == Some("installed") && !version.is_empty())
                .then(|| (name.to_string(), version.to_string()))
        })
        .collect()
}

/// The versions of `names` the configured sources offer (not the dpkg status: an
/// installed version nobody serves any more cannot be reinstalled).
pub(super) fn available(
    pm: &Pm,
    names: &[String],
) -> PkgResult<BTreeMap<String, BTreeSet<String>>> {
    let words: Vec<String> = names.iter().map(|n| shell_quote(n)).collect();
    let out = pm.exec(&format!(
        "apt-cache {} madison {}",
        options_cache(pm),
        words.join(" ")
    ))?;
    Ok(parse_madison(&String::from_utf8_lossy(&out.stdout)))
}

fn options_cache(pm: &Pm) -> String {
    let words: Vec<String> = pm
        .options
        .iter()
        .map(|o| format!("-o {}", shell_quote(o)))
        .collect();
    words.join(" ")
}

/// `name | version | source` lines.
fn parse_madison(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split('|').map(str::trim).collect();
        if f.len() >= 3 && !f[0].is_empty() && !f[1].is_empty() {
            found
                .entry(f[0].to_string())
                .or_default()
                .insert(f[1].to_string());
        }
    }
    found
}

pub(super) fn simulate(pm: &Pm, request: &Request) -> PkgResult<Vec<Change>> {
    let out = pm.exec(&format!(
        "apt-get {} {}",
        options(pm, true),
        action(request)
    ))?;
    if out.code != 0 {
        return Err(PkgError::Failed(format!(
            "{}: apt-get {} (simulated): {}",
            pm.target.info().name,
            action(request),
            complaint(&out)
        )));
    }
    Ok(parse_simulation(&String::from_utf8_lossy(&out.stdout)))
}

/// The `Inst name [old] (new release [arch])`, `Remv name [old]` and `Purg name
/// [old]` lines of `apt-get -s`, in its order.
fn parse_simulation(text: &str) -> Vec<Change> {
    let mut changes = Vec::new();
    for l in text.lines() {
        let (install, rest) = if let Some(r) = l.strip_prefix("Inst ") {
            (true, r)
        } else if let Some(r) = l.strip_prefix("Remv ").or_else(|| l.strip_prefix("Purg ")) {
            (false, r)
        } else {
            continue;
        };
        let mut rest = rest.trim();
        let name = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        rest = rest[name.len()..].trim_start();
        let before = rest.strip_prefix('[').and_then(|r| {
            let end = r.find(']')?;
            rest = r[end + 1..].trim_start();
            Some(r[..end].to_string())
        });
        let after = if install {
            rest.strip_prefix('(')
                .and_then(|r| r.split_whitespace().next())
                .map(|v| v.trim_end_matches(')').to_string())
        } else {
            None
        };
        if name.is_empty() || (install && after.is_none()) {
            continue;
        }
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
    let out = pm.exec(&format!(
        "DEBIAN_FRONTEND=noninteractive; export DEBIAN_FRONTEND; apt-get {} {}",
        options(pm, false),
        action(request)
    ))?;
    if out.code != 0 {
        let said = complaint(&out);
        let hint =
            if said.contains("Unable to acquire the dpkg") || said.contains("Could not get lock") {
                format!(
                    " (another package manager held the lock for longer than lock_timeout, {})",
                    humantime::format_duration(pm.lock_timeout)
                )
            } else {
                String::new()
            };
        return Err(PkgError::Failed(format!(
            "{}: apt-get {}: {said}{hint}",
            pm.target.info().name,
            action(request),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real `apt-get -s` output (apt 2.6, Debian 12), with an upgrade, a new
    /// dependency, a downgrade and removals.
    #[test]
    fn simulation_lines() {
        let text = "NOTE: This is only a simulation!\n\
Reading package lists...\n\
The following NEW packages will be installed:\n\
  tend-testdep tend-testpkg\n\
0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.\n\
Inst tend-testdep (1.0 localhost [all])\n\
Inst tend-testpkg [1.0] (2.0 localhost [all])\n\
Inst libc6 [2.36-9+deb12u3] (2.36-9+deb12u4 Debian-Security:12/stable-security [amd64]) []\n\
Conf tend-testdep (1.0 localhost [all])\n\
Conf tend-testpkg (2.0 localhost [all])\n\
Remv tend-old [0.9]\n\
Purg tend-gone [1:2.0-1]\n";
        let c = parse_simulation(text);
        let lines: Vec<String> = c.iter().map(Change::line).collect();
        assert_eq!(
            lines,
            [
                "+ tend-testdep 1.0",
                "~ tend-testpkg 1.0 -> 2.0",
                "~ libc6 2.36-9+deb12u3 -> 2.36-9+deb12u4",
                "- tend-old 0.9",
                "- tend-gone 1:2.0-1",
            ]
        );
    }

    #[test]
    fn dpkg_query_and_madison() {
        let q = parse_dpkg_query(
            "tend-testpkg\tinstall ok installed\t2.0\nold\tdeinstall ok config-files\t1.0\nx\tunknown ok not-installed\t\n",
        );
        assert_eq!(q.len(), 1);
        assert_eq!(q["tend-testpkg"], "2.0");
        let m = parse_madison(
            "tend-testpkg |        2.0 | file:/tmp/repo ./ Packages\ntend-testpkg |        1.0 | file:/tmp/repo ./ Packages\n",
        );
        assert_eq!(m["tend-testpkg"].iter().collect::<Vec<_>>(), ["1.0", "2.0"]);
    }

    #[test]
    fn requests_as_apt_words() {
        let r = Request::Transaction {
            install: vec![
                super::super::Want {
                    name: "a".into(),
                    version: None,
                },
                super::super::Want {
                    name: "b".into(),
                    version: Some("1:2.0-1".into()),
                },
            ],
            remove: vec!["c".into()],
            latest: false,
        };
        assert_eq!(action(&r), "install a b=1:2.0-1 c-");
    }
}
