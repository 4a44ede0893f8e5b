//! A user's crontab, read and written through `crontab(1)` (`-l`, `-`, `-r`), and
//! the marked entries tend keeps in it (`# tend: NAME` over the job line, as
//! Ansible's `cron` module keeps `#Ansible: NAME`).

use serde::{Deserialize, Serialize};

use super::{Runner, StateError, StateResult};
use crate::transport::{shell_quote, Target};

/// Whose crontab: `None` is the login user's own (no `-u`, which only root may give).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Crontab {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Crontab {
    fn command(&self, args: &str) -> String {
        match &self.user {
            Some(u) => format!("crontab -u {} {args}", shell_quote(u)),
            None => format!("crontab {args}"),
        }
    }

    /// For people: `root's crontab`, `the login user's crontab`.
    pub fn describe(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}'s crontab"),
            None => "the login user's crontab".into(),
        }
    }

    /// The crontab's text as `crontab -l` gives it; `None` when the user has none.
    pub fn read(&self, t: &dyn Target, run: &Runner) -> StateResult<Option<String>> {
        let out = run.exec(t, self.command("-l"), None)?;
        if out.code == 0 {
            return String::from_utf8(out.stdout).map(Some).map_err(|_| {
                StateError::Failed(format!(
                    "{}: {} is not UTF-8 text; not editing it",
                    t.info().name,
                    self.describe()
                ))
            });
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("no crontab for") {
            return Ok(None);
        }
        Err(StateError::Failed(format!(
            "{}: cannot read {}: `{}` exited with {}{}",
            t.info().name,
            self.describe(),
            self.command("-l"),
            out.code,
            if out.code == 127 {
                ": no crontab command there (install cron)".to_string()
            } else {
                super::tail(&out)
            }
        )))
    }

    /// Install `text` (`None`: remove the crontab).
    pub fn write(&self, t: &dyn Target, run: &Runner, text: Option<&str>) -> StateResult<()> {
        match text {
            Some(text) => {
                run.check(t, self.command("-"), Some(text.as_bytes().to_vec()))?;
            }
            None => {
                if self.read(t, run)?.is_some() {
                    run.check(t, self.command("-r"), None)?;
                }
            }
        }
        Ok(())
    }
}

/// The marker line above an entry tend manages.
pub fn marker(name: &str) -> String {
    format!("# tend: {name}")
}

/// `text` with the entry `name` set to `job` (`None`: removed with its marker).
/// The rest of the text is kept byte for byte; a new entry goes at the end.
pub fn with_entry(text: &str, name: &str, job: Option<&str>) -> Result<String, String> {
    let mark = marker(name);
    let mut lines: Vec<&str> = text.lines().collect();
    let at: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == mark).collect();
    if at.len() > 1 {
        let nums: Vec<String> = at.iter().map(|i| (i + 1).to_string()).collect();
        return Err(format!(
            "the crontab has the marker {mark:?} {} times (lines {}); remove the extra ones by hand",
            at.len(),
            nums.join(", ")
        ));
    }
    // The job line is the one after the marker, unless that is another marker (or
    // nothing): then the entry has lost its job line.
    let has_job = |i: usize| {
        lines
            .get(i + 1)
            .is_some_and(|l| !l.starts_with("# tend: ") && !l.trim().is_empty())
    };
    match (at.first().copied(), job) {
        (Some(i), Some(job)) => {
            if has_job(i) {
                lines[i + 1] = job;
            } else {
                lines.insert(i + 1, job);
            }
        }
        (Some(i), None) => {
            let n = if has_job(i) { 2 } else { 1 };
            lines.drain(i..i + n);
        }
        (None, Some(job)) => {
            lines.push(&mark);
            lines.push(job);
        }
        (None, None) => return Ok(text.to_string()),
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n'); // crontab(1) refuses a last line without one
    }
    Ok(out)
}

const MACROS: [&str; 8] = [
    "@reboot",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

/// Check a schedule as cron(8) reads it: five fields (`minute hour day-of-month
/// month day-of-week`: `*`, `N`, `N-M`, steps `/S`, lists, month and day names) or a
/// macro such as `@daily`. The error says which field and why.
pub fn check_schedule(schedule: &str) -> Result<(), String> {
    let s = schedule.trim();
    if s.starts_with('@') {
        if MACROS.contains(&s) {
            return Ok(());
        }
        return Err(format!(
            "{s:?} is not a cron macro (cron knows {})",
            MACROS.join(" ")
        ));
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{s:?} has {} field{}; a crontab schedule has 5 (minute hour day-of-month \
             month day-of-week) or is a macro such as @daily",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        ));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let spec: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day-of-month", 1, 31, &[], 0),
        ("month", 1, 12, &MONTHS, 1),
        ("day-of-week", 0, 7, &DAYS, 0),
    ];
    for (field, (what, low, high, names, first)) in fields.iter().zip(spec) {
        let value = |v: &str| -> Result<u32, String> {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
                return Ok(i as u32 + first);
            }
            let n: u32 = v
                .parse()
                .map_err(|_| format!("{what} {v:?} in {s:?} is not a number"))?;
            if n < low || n > high {
                return Err(format!("{what} {n} in {s:?} is out of range {low}-{high}"));
            }
            Ok(n)
        };
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, st)) => (r, Some(st)),
                None => (part, None),
            };
            if let Some(st) = step {
                if !st.parse::<u32>().is_ok_and(|n| n > 0) {
                    return Err(format!(
                        "{what} step {st:?} in {s:?} is not a number above 0"
                    ));
                }
            }
            if range == "*" {
                continue;
            }
            match range.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (value(a)?, value(b)?);
                    if a > b {
                        return Err(format!("{what} range {range} in {s:?} runs backwards"));
                    }
                }
                None => {
                    value(range)?;
                    if step.is_some() {
                        return Err(format!(
                            "{what} {part:?} in {s:?}: a step needs a range or * (e.g. */15)"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A crontab change as the journal keeps it. The old text is saved on the target
/// (`backup`), not in the journal: a crontab may hold what the controller should not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub crontab: Crontab,
    /// Where the old text is saved; `None` when there was no crontab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// SHA-256 of the old text; `None`: no crontab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// SHA-256 of the text the step installed; `None`: it removed the crontab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

impl Change {
    pub fn describe(&self) -> String {
        match self.before {
            Some(_) => format!("restore {}", self.crontab.describe()),
            None => format!("remove {}", self.crontab.describe()),
        }
    }

    /// Put the old crontab back exactly; `Ok(false)` when it is there already.
    /// Refused when the crontab is neither the old one nor the one the step left.
    pub fn revert(&self, t: &dyn Target, run: &Runner) -> StateResult<bool> {
        let now = self.crontab.read(t, run)?.map(|s| sha256(&s));
        if now == self.before {
            return Ok(false);
        }
        if now != self.after {
            return Err(StateError::Refused(format!(
                "{} was changed since the run wrote it; not restored",
                self.crontab.describe()
            )));
        }
        let old = match (&self.backup, &self.before) {
            (Some(path), Some(hash)) => {
                let bytes = t.read(path)?;
                let text = String::from_utf8(bytes).unwrap_or_default();
                if &sha256(&text) != hash {
                    return Err(StateError::Refused(format!(
                        "the saved copy {path} of {} was altered since; not restoring it",
                        self.crontab.describe()
                    )));
                }
                Some(text)
            }
            _ => None,
        };
        self.crontab.write(t, run, old.as_deref())?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_added_replaced_and_removed_keeping_the_rest() {
        let text = "A=1\n0 1 * * * other\n";
        let added = with_entry(text, "x", Some("5 * * * * job")).unwrap();
        assert_eq!(added, "A=1\n0 1 * * * other\n# tend: x\n5 * * * * job\n");
        let replaced = with_entry(&added, "x", Some("6 * * * * job")).unwrap();
        assert_eq!(replaced, "A=1\n0 1 * * * other\n# tend: x\n6 * * * * job\n");
        assert_eq!(with_entry(&replaced, "x", None).unwrap(), text);
        assert_eq!(with_entry(text, "y", None).unwrap(), text);
        assert_eq!(
            with_entry("", "x", Some("@daily j")).unwrap(),
            "# tend: x\n@daily j\n"
        );
        assert!(with_entry("# tend: x\na\n# tend: x\nb\n", "x", None).is_err());
    }

    #[test]
    fn schedules_are_checked_field_by_field() {
        for ok in [
            "* * * * *",
            "*/5 1-3 1,15 jan-mar mon-fri",
            "@daily",
            "0 0 * * 7",
        ] {
            check_schedule(ok).unwrap();
        }
        for (bad, says) in [
            ("* * * *", "4 fields"),
            ("61 * * * *", "minute 61"),
            ("* 24 * * *", "hour 24"),
            ("@dayly", "not a cron macro"),
            ("5/10 * * * *", "a step needs a range"),
            ("* * * foo *", "month \"foo\""),
            ("5-1 * * * *", "backwards"),
        ] {
            let e = check_schedule(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
