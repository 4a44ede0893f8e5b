//! Package managers on a target: which one a host has, what it has installed, the
//! manager's own simulation of a change parsed into the exact packages it would
//! install, change and remove, the command that makes the change, and its revert.
//!
//! It sits below both the recipe operations (`ops::pkg`) and the journal, whose undo
//! record of a package step calls [`revert`]: one implementation for the step and
//! its rollback. Everything goes through [`Target::exec`], so it works locally, over
//! SSH and through sudo alike.
//!
//! apt/dpkg and apk are implemented (apk's parsers tested on apk-tools' own output,
//! not against a real apk); a host with dnf gets a clear "not supported yet" error,
//! never a guess.

pub mod apk;
pub mod apt;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cancel::{CancelToken, Stop};
use crate::transport::{ExecOutput, ExecRequest, Target, TargetError};

#[derive(Debug, thiserror::Error)]
pub enum PkgError {
    #[error("{0}")]
    Target(#[from] TargetError),
    /// The package manager said no (an unknown package, a conflict, a held lock).
    #[error("{0}")]
    Failed(String),
    /// The host's package manager is one tend cannot drive (yet).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Stopped(#[from] Stop),
}

pub type PkgResult<T> = Result<T, PkgError>;

/// The package manager of a host, by the tool it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    Apt,
    Dnf,
    Apk,
}

impl Manager {
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Apt => "apt",
            Manager::Dnf => "dnf",
            Manager::Apk => "apk",
        }
    }
}

/// One package a change installs (`before` is `None`), removes (`after` is `None`)
/// or moves from one version to another.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The `before` version could no longer be downloaded when the step planned: a
    /// rollback cannot bring it back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

impl Change {
    /// For people, one line of a step's diff: `+ name 1.0`, `- name 1.0`,
    /// `~ name 1.0 -> 2.0`.
    pub fn line(&self) -> String {
        match (&self.before, &self.after) {
            (None, Some(a)) => format!("+ {} {a}", self.name),
            (Some(b), None) => format!("- {} {b}", self.name),
            (Some(b), Some(a)) => format!("~ {} {b} -> {a}", self.name),
            (None, None) => format!("  {}", self.name),
        }
    }
}

/// A package wanted installed, at a version or at whatever the manager picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub name: String,
    pub version: Option<String>,
}

/// A change asked of the package manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// One transaction: these installed (or moved to their version), those removed.
    Transaction {
        install: Vec<Want>,
        remove: Vec<String>,
        /// Installed ones moved to the newest version too (apt's `install` always does).
        latest: bool,
    },
    /// Upgrade every package that has a newer version (nothing new, nothing removed).
    UpgradeAll,
}

/// How to reach a host's package manager: the target, the run's cancel token (none
/// in a rollback, which must finish), and extra options for the manager.
pub struct Pm<'a> {
    pub target: &'a dyn Target,
    pub cancel: Option<&'a CancelToken>,
    /// apt: `Key=Value` configuration items, each passed as `-o Key=Value`; apk:
    /// long options without their dashes (`repository=/srv/apk`).
    pub options: &'a [String],
    /// How long to wait for another package manager's lock before failing.
    pub lock_timeout: Duration,
}

/// Wait this long for the dpkg lock by default: an unattended upgrade in progress
/// usually finishes within it.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(300);

impl Pm<'_> {
    /// Run `command` (a POSIX shell script) with the C locale, within the run's budget.
    fn exec(&self, command: &str) -> PkgResult<ExecOutput> {
        if let Some(c) = self.cancel {
            c.check()?;
        }
        let req = ExecRequest {
            command: format!("LC_ALL=C; export LC_ALL; {command}"),
            timeout: self.cancel.and_then(|c| c.bound(None)),
            cancel: self.cancel.cloned(),
            ..Default::default()
        };
        let out = self.target.exec(&req)?;
        if out.timed_out {
            if let Some(c) = self.cancel {
                c.check()?;
            }
            return Err(PkgError::Failed(format!(
                "{}: `{}` was stopped before it finished",
                self.target.info().name,
                command.split_whitespace().next().unwrap_or("")
            )));
        }
        Ok(out)
    }

    /// Which package manager the host has.
    pub fn detect(&self) -> PkgResult<Manager> {
        let out = self.exec(
            "if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then echo apt; \
             elif command -v dnf >/dev/null 2>&1; then echo dnf; \
             elif command -v apk >/dev/null 2>&1; then echo apk; fi",
        )?;
        match String::from_utf8_lossy(&out.stdout).trim() {
            "apt" => Ok(Manager::Apt),
            "dnf" => Ok(Manager::Dnf),
            "apk" => Ok(Manager::Apk),
            _ => Err(PkgError::Unsupported(format!(
                "{}: no package manager found (tend knows apt/dpkg and apk; dnf is not supported yet)",
                self.target.info().name
            ))),
        }
    }

    /// The manager of the host, when tend can drive it.
    pub fn supported(&self) -> PkgResult<Manager> {
        let m = self.detect()?;
        if m == Manager::Dnf {
            return Err(unsupported(self.target, m));
        }
        Ok(m)
    }

    /// Installed packages and their versions: all of them, or those of `names`.
    pub fn installed(
        &self,
        m: Manager,
        names: Option<&[String]>,
    ) -> PkgResult<BTreeMap<String, String>> {
        match m {
            Manager::Apt => apt::installed(self, names),
            Manager::Apk => apk::installed(self, names),
            other => Err(unsupported(self.target, other)),
        }
    }

    /// What `request` would change, from the manager's own simulation.
    pub fn simulate(&self, m: Manager, request: &Request) -> PkgResult<Vec<Change>> {
        match m {
            Manager::Apt => apt::simulate(self, request),
            Manager::Apk => apk::simulate(self, request),
            other => Err(unsupported(self.target, other)),
        }
    }

    /// Mark each change whose `before` version can no longer be downloaded as lost.
    pub fn mark_lost(&self, m: Manager, changes: &mut [Change]) -> PkgResult<()> {
        let names: Vec<String> = changes
            .iter()
            .filter(|c| c.before.is_some())
            .map(|c| c.name.clone())
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let available = match m {
            Manager::Apt => apt::available(self, &names)?,
            Manager::Apk => apk::available(self, &names)?,
            other => return Err(unsupported(self.target, other)),
        };
        for c in changes.iter_mut() {
            if let Some(b) = &c.before {
                c.lost = !available
                    .get(&c.name)
                    .is_some_and(|versions| versions.contains(b));
            }
        }
        Ok(())
    }

    /// Make the change.
    pub fn apply(&self, m: Manager, request: &Request) -> PkgResult<()> {
        match m {
            Manager::Apt => apt::apply(self, request),
            Manager::Apk => apk::apply(self, request),
            other => Err(unsupported(self.target, other)),
        }
    }

    /// After [`Pm::apply`]: the packages are what the simulation said they would be.
    pub fn verify(&self, m: Manager, changes: &[Change]) -> PkgResult<()> {
        let names: Vec<String> = changes.iter().map(|c| c.name.clone()).collect();
        let now = self.installed(m, Some(&names))?;
        let wrong: Vec<String> = changes
            .iter()
            .filter(|c| now.get(&c.name) != c.after.as_ref())
            .map(|c| {
                format!(
                    "{} is {} (planned: {})",
                    c.name,
                    now.get(&c.name).map(String::as_str).unwrap_or("absent"),
                    c.after.as_deref().unwrap_or("absent")
                )
            })
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        Err(PkgError::Failed(format!(
            "{}: {} did not do what its simulation said: {}",
            self.target.info().name,
            m.as_str(),
            wrong.join(", ")
        )))
    }
}

fn unsupported(t: &dyn Target, m: Manager) -> PkgError {
    PkgError::Unsupported(format!(
        "{}: the host's package manager is {}, which tend does not support yet (only apt/dpkg and apk)",
        t.info().name,
        m.as_str()
    ))
}

/// What reverting a package step came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reverted {
    Done,
    /// Every package is as it was before the step (it never ran, or was reverted).
    NotNeeded,
    /// What could be reverted was; these could not (their old version is gone).
    Partly(String),
}

/// Why a package step was not reverted.
#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    #[error("{0}")]
    Target(#[from] TargetError),
    /// A package is neither what the step left nor what it found: somebody changed
    /// it since, and reverting would undo their change too.
    #[error("{0}")]
    Drifted(String),
    #[error("{0}")]
    Failed(String),
}

impl From<PkgError> for RevertError {
    fn from(e: PkgError) -> Self {
        match e {
            PkgError::Target(t) => RevertError::Target(t),
            other => RevertError::Failed(other.to_string()),
        }
    }
}

/// Put the packages of `changes` back as they were before the step: installed ones
/// removed, removed ones reinstalled, moved ones moved back, all in one transaction.
/// Each package must still be what the step left (or already what it found: the
/// step never got to it); otherwise nothing is touched.
pub fn revert(
    t: &dyn Target,
    m: Manager,
    options: &[String],
    changes: &[Change],
) -> Result<Reverted, RevertError> {
    let pm = Pm {
        target: t,
        cancel: None,
        options,
        lock_timeout: LOCK_TIMEOUT,
    };
    let names: Vec<String> = changes.iter().map(|c| c.name.clone()).collect();
    let now = pm.installed(m, Some(&names))?;
    let mut install = Vec::new();
    let mut remove = Vec::new();
    let mut drifted = Vec::new();
    let mut lost = Vec::new();
    for c in changes {
        let have = now.get(&c.name);
        if have == c.before.as_ref() {
            continue;
        }
        if have != c.after.as_ref() {
            drifted.push(format!(
                "{} is {} now, the run left {}",
                c.name,
                have.map(String::as_str).unwrap_or("absent"),
                c.after.as_deref().unwrap_or("it absent")
            ));
            continue;
        }
        match &c.before {
            None => remove.push(c.name.clone()),
            Some(_) if c.lost => lost.push(format!(
                "{} back to {} (no longer available)",
                c.name,
                c.before.as_deref().unwrap_or_default()
            )),
            Some(v) => install.push(Want {
                name: c.name.clone(),
                version: Some(v.clone()),
            }),
        }
    }
    if !drifted.is_empty() {
        return Err(RevertError::Drifted(format!(
            "{}; not reverted",
            drifted.join(", ")
        )));
    }
    if install.is_empty() && remove.is_empty() {
        return Ok(if lost.is_empty() {
            Reverted::NotNeeded
        } else {
            Reverted::Partly(lost.join(", "))
        });
    }
    pm.apply(
        m,
        &Request::Transaction {
            install,
            remove,
            latest: false,
        },
    )?;
    Ok(if lost.is_empty() {
        Reverted::Done
    } else {
        Reverted::Partly(lost.join(", "))
    })
}

/// A package name as tend passes it on: a word of letters, digits and `+._:@-`
/// starting with a letter or digit, so it can be neither an option nor two words.
pub fn valid_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+._:@-".contains(c))
}

/// A version as tend passes it on (Debian's alphabet, `~` included).
pub fn valid_version(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+._:~-".contains(c))
}
