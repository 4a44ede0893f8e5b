//! What each operation a recipe can call promises about rollback, in one place: `tend
//! doc` shows it for every operation a recipe uses, and a test checks that every step
//! function the engine offers is listed here, so a new operation cannot ship without
//! saying whether it can be undone.

/// How a rollback treats what an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reversal {
    /// Rollback puts back what was there (bytes, mode, owner, link, state).
    Restored,
    /// Reversible unless the call opts out, or only with what the call gives (an
    /// `undo:` command): the recipe's line decides; see [`OpInfo::note`].
    Conditional,
    /// Never undone: the plan and the journal mark it.
    Irreversible,
    /// A check or fact: changes nothing, so there is nothing to undo.
    Nothing,
}

impl Reversal {
    pub fn as_str(self) -> &'static str {
        match self {
            Reversal::Restored => "reversible",
            Reversal::Conditional => "conditional",
            Reversal::Irreversible => "irreversible",
            Reversal::Nothing => "changes nothing",
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct OpInfo {
    /// As a recipe calls it: `fs::file`, `sh`.
    pub name: &'static str,
    pub reversal: Reversal,
    /// The undo, for people.
    pub note: &'static str,
}

const fn op(name: &'static str, reversal: Reversal, note: &'static str) -> OpInfo {
    OpInfo {
        name,
        reversal,
        note,
    }
}

use Reversal::*;

/// Every step a recipe can call. Facts (`fs::exists`, `host()`) are not steps.
pub const OPERATIONS: &[OpInfo] = &[
    op(
        "fs::dir",
        Restored,
        "the created directories removed, the old mode back",
    ),
    op("fs::file", Restored, "old bytes and mode restored"),
    op("fs::template", Restored, "as fs::file"),
    op("fs::line", Restored, "as fs::file"),
    op("fs::block", Restored, "as fs::file"),
    op("fs::replace", Restored, "as fs::file"),
    op("fs::ini", Restored, "as fs::file"),
    op("fs::json", Restored, "as fs::file"),
    op("fs::yaml", Restored, "as fs::file"),
    op(
        "fs::extract",
        Restored,
        "what it created removed, what it overwrote restored (each file through fs::file)",
    ),
    op("fs::download", Restored, "as fs::file"),
    op("fs::link", Restored, "the old link or file back"),
    op("fs::copy", Restored, "restored byte for byte"),
    op("fs::rename", Restored, "renamed back"),
    op(
        "fs::remove",
        Conditional,
        "restored byte for byte, unless `backup: false` (then never: a barrier)",
    ),
    op("fs::chmod", Restored, "the old mode back"),
    op("fs::chown", Restored, "the old owner back"),
    op("archive::compress", Restored, "the original restored"),
    op(
        "sh",
        Conditional,
        "the paths it declares in `changes:` restored, else its `undo:` command; without either (and not `read_only`) a barrier",
    ),
    op(
        "service::running",
        Restored,
        "stopped again if it started it, unless changed since",
    ),
    op(
        "service::stopped",
        Restored,
        "started again if it stopped it, unless changed since",
    ),
    op(
        "service::restarted",
        Restored,
        "nothing to undo for a running service (it still runs); a start is stopped again",
    ),
    op(
        "service::reloaded",
        Restored,
        "nothing to undo for a running service (it still runs); a start is stopped again",
    ),
    op(
        "service::enabled",
        Restored,
        "the old boot state back (disabled, or no runlevel links), unless changed since",
    ),
    op(
        "service::disabled",
        Restored,
        "the old boot state back, unless changed since",
    ),
    op(
        "cron::entry",
        Restored,
        "the old crontab back byte for byte, or removed if there was none; not if edited since",
    ),
    op("systemd::unit", Restored, "as fs::file"),
    op("systemd::timer", Restored, "as fs::file"),
    op(
        "systemd::daemon_reload",
        Nothing,
        "nothing to undo: systemd rereads the unit files as they are",
    ),
    op(
        "pkg::installed",
        Restored,
        "what it installed removed, upgrades downgraded to the recorded version; irreversible in the plan when that version can no longer be downloaded",
    ),
    op("pkg::absent", Restored, "reinstalled at the recorded version"),
    op("pkg::latest", Restored, "as pkg::installed"),
    op("pkg::updated", Restored, "as pkg::installed"),
    op(
        "user::present",
        Restored,
        "a created user removed (its home only if unchanged); a changed one given its old fields back",
    ),
    op(
        "user::absent",
        Restored,
        "re-created with its ids, groups, fields and password (shadow line kept in a 0600 backup on the host)",
    ),
    op("group::present", Restored, "removed, or its old gid back"),
    op("group::absent", Restored, "re-created with its gid and members"),
    op("ssh::authorized_key", Restored, "as fs::file"),
    op("http::get", Nothing, "a check"),
    op("net::wait_for", Nothing, "a check"),
    op("assert", Nothing, "a check: failing, it rolls the run back"),
];

/// The entry for `name` as a recipe writes it.
pub fn lookup(name: &str) -> Option<&'static OpInfo> {
    OPERATIONS.iter().find(|o| o.name == name)
}

/// The operations `source` calls, each with the 1-based lines it is called on, in
/// catalog order. A text scan, as [`crate::recipe::Recipe::irreversible_steps`] is:
/// comments are skipped, a call is its name followed by `(`.
pub fn used_in(source: &str) -> Vec<(&'static OpInfo, Vec<usize>)> {
    let mut out: Vec<(&'static OpInfo, Vec<usize>)> = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for info in OPERATIONS {
            if calls(code, info.name) {
                match out.iter_mut().find(|(o, _)| o.name == info.name) {
                    Some((_, lines)) => lines.push(i + 1),
                    None => out.push((info, vec![i + 1])),
                }
            }
        }
    }
    out.sort_by_key(|(o, _)| OPERATIONS.iter().position(|x| x.name == o.name));
    out
}

/// Whether `code` calls `name(`: not as the tail of a longer name (`lr::sh(`,
/// `fresh(`).
fn calls(code: &str, name: &str) -> bool {
    let mut from = 0;
    while let Some(at) = code[from..].find(name) {
        let start = from + at;
        let end = start + name.len();
        let before_ok = !code[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':' || c == '.');
        let after_ok = code[end..].trim_start().starts_with('(');
        if before_ok && after_ok {
            return true;
        }
        from = end;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_calls_not_longer_names() {
        let src = "let x = fs::file(\"/a\", \"b\");\n// sh(\"no\")\nfresh(1); lr::sh(2);\nsh (\"ls\", #{undo: \"x\"});\nfs::file(\"/c\", \"\");\n";
        let used = used_in(src);
        let names: Vec<_> = used.iter().map(|(o, l)| (o.name, l.clone())).collect();
        assert_eq!(names, vec![("fs::file", vec![1, 5]), ("sh", vec![4])]);
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in OPERATIONS.iter().enumerate() {
            assert!(
                OPERATIONS[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
        }
    }
}
