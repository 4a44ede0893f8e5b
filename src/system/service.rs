//! Services: which init system runs one, whether it is active and enabled, and the
//! commands that change that.
//!
//! systemd through `systemctl` when systemd is PID 1 on the target (it then has
//! `/run/systemd/system`, as `sd_booted()` checks); otherwise the System V path:
//! `/etc/init.d/NAME start|stop|status`, enabled through its `/etc/rcN.d` links
//! (`update-rc.d`). With a `root` directory, unit files are enabled offline through
//! `systemctl --root`, which needs no running systemd.

use serde::{Deserialize, Serialize};

use super::{Runner, StateError, StateResult};
use crate::transport::{shell_quote, Kind, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Manager {
    Systemd,
    Sysv,
}

impl Manager {
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Systemd => "systemd",
            Manager::Sysv => "sysv",
        }
    }
}

/// A service as its manager names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub manager: Manager,
    /// Unit files under this directory, not the running system (`systemctl --root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

/// Whether systemd is PID 1 on the target.
pub fn systemd_running(t: &dyn Target) -> StateResult<bool> {
    Ok(matches!(t.stat("/run/systemd/system")?, Some(m) if m.kind == Kind::Dir))
}

/// A name a service may have: no path, no shell syntax (it goes into commands).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.starts_with(['-', '.'])
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._:-\\".contains(c))
    {
        return Err(format!(
            "{name:?} is not a service name (letters, digits and @ . _ : - only)"
        ));
    }
    Ok(())
}

impl Service {
    /// The service `name` on `t`, with the manager that runs it there.
    pub fn on(t: &dyn Target, name: &str, root: Option<&str>) -> StateResult<Service> {
        check_name(name).map_err(StateError::Failed)?;
        if let Some(root) = root {
            return Ok(Service {
                name: name.to_string(),
                manager: Manager::Systemd,
                root: Some(root.to_string()),
            });
        }
        if systemd_running(t)? {
            return Ok(Service {
                name: name.to_string(),
                manager: Manager::Systemd,
                root: None,
            });
        }
        // An init script knows nothing of unit suffixes.
        let name = name.strip_suffix(".service").unwrap_or(name);
        Ok(Service {
            name: name.to_string(),
            manager: Manager::Sysv,
            root: None,
        })
    }

    /// What a dry-run's planned state is keyed by (see `Ctx::planned`).
    pub fn key(&self, aspect: Aspect) -> String {
        let root = self
            .root
            .as_deref()
            .map(|r| format!("@{r}"))
            .unwrap_or_default();
        format!("service:{}{root}:{}", self.name, aspect.as_str())
    }

    /// The file that defines the service: its init script, or its unit file when
    /// it is one in `/etc/systemd/system` (under `root`).
    pub fn file(&self) -> String {
        match self.manager {
            Manager::Sysv => self.script(),
            Manager::Systemd => format!(
                "{}/etc/systemd/system/{}",
                self.root.as_deref().unwrap_or("").trim_end_matches('/'),
                self.name
            ),
        }
    }

    fn script(&self) -> String {
        format!("/etc/init.d/{}", self.name)
    }

    fn systemctl(&self) -> String {
        match &self.root {
            Some(r) => format!("systemctl --root={}", shell_quote(r)),
            None => "systemctl".to_string(),
        }
    }

    fn offline(&self, what: &str) -> StateResult<()> {
        match &self.root {
            Some(r) => Err(StateError::Failed(format!(
                "{what} {}: with `root` ({r}) only the unit files are there, no running \
                 system; only service::enabled and service::disabled work offline",
                self.name
            ))),
            None => Ok(()),
        }
    }

    /// Whether the service exists on the target.
    pub fn exists(&self, t: &dyn Target, run: &Runner) -> StateResult<bool> {
        match self.manager {
            Manager::Sysv => Ok(t.stat(&self.script())?.is_some()),
            Manager::Systemd => Ok(self.unit_state(t, run)?.is_some()),
        }
    }

    fn missing(&self, t: &dyn Target) -> StateError {
        let host = &t.info().name;
        StateError::Missing(match self.manager {
            Manager::Sysv => format!(
                "{host}: no service {} (no init script {}; systemd is not running there)",
                self.name,
                self.script()
            ),
            Manager::Systemd => format!(
                "{host}: no unit {}{}",
                self.name,
                self.root
                    .as_deref()
                    .map(|r| format!(" under {r}"))
                    .unwrap_or_default()
            ),
        })
    }

    /// `systemctl is-enabled`'s word, `None` for no such unit.
    fn unit_state(&self, t: &dyn Target, run: &Runner) -> StateResult<Option<String>> {
        let out = run.exec(
            t,
            format!(
                "{} is-enabled {}",
                self.systemctl(),
                shell_quote(&self.name)
            ),
            None,
        )?;
        let word = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if word.is_empty() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No such file")
                || err.contains("not found")
                || err.contains("does not exist")
            {
                return Ok(None);
            }
            return Err(StateError::Failed(format!(
                "{}: cannot tell whether {} is enabled{}",
                t.info().name,
                self.name,
                super::tail(&out)
            )));
        }
        Ok(Some(word))
    }

    /// Whether the service runs now.
    pub fn active(&self, t: &dyn Target, run: &Runner) -> StateResult<bool> {
        self.offline("whether it runs:")?;
        match self.manager {
            Manager::Systemd => {
                let out = run.exec(
                    t,
                    format!("systemctl is-active {}", shell_quote(&self.name)),
                    None,
                )?;
                Ok(out.code == 0)
            }
            Manager::Sysv => {
                if t.stat(&self.script())?.is_none() {
                    return Err(self.missing(t));
                }
                let out = run.exec(t, format!("{} status", shell_quote(&self.script())), None)?;
                // LSB: 0 running; 1, 2, 3 not running (pid or lock file left, or not);
                // 4 and above: the script cannot tell.
                match out.code {
                    0 => Ok(true),
                    1..=3 => Ok(false),
                    // Not there to run (only a dry-run's plan has it).
                    126 | 127 => Err(self.missing(t)),
                    c => Err(StateError::Failed(format!(
                        "{}: `{} status` exited with {c}: it cannot tell whether {} runs{}",
                        t.info().name,
                        self.script(),
                        self.name,
                        super::tail(&out)
                    ))),
                }
            }
        }
    }

    /// How the service starts at boot: `enabled`, `disabled` (systemd's other words
    /// as it says them: `static`, `masked`, …) or, for an init script without any
    /// runlevel link, `none`.
    pub fn enablement(&self, t: &dyn Target, run: &Runner) -> StateResult<String> {
        match self.manager {
            Manager::Systemd => self.unit_state(t, run)?.ok_or_else(|| self.missing(t)),
            Manager::Sysv => {
                if t.stat(&self.script())?.is_none() {
                    return Err(self.missing(t));
                }
                let (mut start, mut kill) = (false, false);
                for level in 2..=5 {
                    let dir = format!("/etc/rc{level}.d");
                    if t.stat(&dir)?.is_none() {
                        continue;
                    }
                    // `S01name` starts it in that runlevel, `K01name` stops it.
                    for entry in t.list_dir(&dir)? {
                        let b = entry.as_bytes();
                        if entry.get(3..) == Some(self.name.as_str())
                            && b[1].is_ascii_digit()
                            && b[2].is_ascii_digit()
                        {
                            start |= b[0] == b'S';
                            kill |= b[0] == b'K';
                        }
                    }
                }
                Ok(if start {
                    "enabled"
                } else if kill {
                    "disabled"
                } else {
                    "none"
                }
                .to_string())
            }
        }
    }

    /// The main process id, when the manager knows it (systemd's `MainPID`, an
    /// init script's `/run/NAME.pid`); 0 otherwise.
    pub fn main_pid(&self, t: &dyn Target, run: &Runner) -> StateResult<i64> {
        if self.root.is_some() {
            return Ok(0);
        }
        match self.manager {
            Manager::Systemd => {
                let out = run.exec(
                    t,
                    format!(
                        "systemctl show -p MainPID --value {}",
                        shell_quote(&self.name)
                    ),
                    None,
                )?;
                Ok(String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0))
            }
            Manager::Sysv => {
                for p in [
                    format!("/run/{}.pid", self.name),
                    format!("/var/run/{}.pid", self.name),
                ] {
                    if matches!(t.stat(&p)?, Some(m) if m.kind == Kind::File) {
                        let text = t.read(&p)?;
                        return Ok(String::from_utf8_lossy(&text).trim().parse().unwrap_or(0));
                    }
                }
                Ok(0)
            }
        }
    }

    /// `start`, `stop`, `restart` or `reload`.
    pub fn control(&self, t: &dyn Target, run: &Runner, verb: &str) -> StateResult<()> {
        self.offline(verb)?;
        let command = match self.manager {
            Manager::Systemd => format!("systemctl {verb} {}", shell_quote(&self.name)),
            Manager::Sysv => format!("{} {verb}", shell_quote(&self.script())),
        };
        run.check(t, command, None)?;
        Ok(())
    }

    /// Make the service start at boot (`enabled`) or not (`disabled`), or (init
    /// scripts, a revert) remove its runlevel links (`none`).
    pub fn set_enablement(&self, t: &dyn Target, run: &Runner, want: &str) -> StateResult<()> {
        let name = shell_quote(&self.name);
        let command = match (self.manager, want) {
            (Manager::Systemd, "enabled") => format!("{} enable {name}", self.systemctl()),
            (Manager::Systemd, "disabled") => format!("{} disable {name}", self.systemctl()),
            (Manager::Sysv, _) => {
                let urc = "update-rc.d";
                let have = self.enablement(t, run)?;
                match (want, have.as_str()) {
                    (_, h) if h == want => return Ok(()),
                    ("none", _) => format!("{urc} -f {name} remove"),
                    ("enabled", "none") => format!("{urc} {name} defaults"),
                    ("disabled", "none") => {
                        format!("{urc} {name} defaults && {urc} {name} disable")
                    }
                    ("enabled", _) => format!("{urc} {name} enable"),
                    ("disabled", _) => format!("{urc} {name} disable"),
                    _ => return Err(self.cannot_become(want)),
                }
            }
            _ => return Err(self.cannot_become(want)),
        };
        if self.manager == Manager::Sysv {
            let out = run.exec(t, "command -v update-rc.d".into(), None)?;
            if out.code != 0 {
                return Err(StateError::Failed(format!(
                    "{}: no update-rc.d there (Debian's init-system-helpers), which tend \
                     enables and disables init scripts with",
                    t.info().name
                )));
            }
        }
        run.check(t, command, None)?;
        Ok(())
    }

    fn cannot_become(&self, want: &str) -> StateError {
        StateError::Failed(format!("{} cannot be made {want} by tend", self.name))
    }
}

/// Which side of a service a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    /// `active` / `inactive`.
    Active,
    /// [`Service::enablement`]'s words.
    Enabled,
}

impl Aspect {
    pub fn as_str(self) -> &'static str {
        match self {
            Aspect::Active => "active",
            Aspect::Enabled => "enabled",
        }
    }
}

/// Whether an `is-enabled` word means the unit starts at boot (or is pulled in by
/// others, which `disable` cannot change).
pub fn is_enabled(word: &str) -> bool {
    matches!(
        word,
        "enabled" | "enabled-runtime" | "static" | "alias" | "generated" | "transient"
    )
}

/// A change to one side of a service, as the journal keeps it: a revert puts
/// `before` back only while the service is still as the step left it (`after`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub service: Service,
    pub aspect: Aspect,
    pub before: String,
    pub after: String,
}

impl Change {
    pub fn now(&self, t: &dyn Target, run: &Runner) -> StateResult<String> {
        Ok(match self.aspect {
            Aspect::Active => active_word(self.service.active(t, run)?).into(),
            Aspect::Enabled => self.service.enablement(t, run)?,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "make service {} {} again",
            self.service.name,
            match (self.aspect, self.before.as_str()) {
                (Aspect::Enabled, "none") => "without runlevel links",
                (_, b) => b,
            }
        )
    }

    /// Put `before` back; `Ok(false)` when it is there already (the change never
    /// happened). Refused when the service is in neither state: somebody changed it.
    pub fn revert(&self, t: &dyn Target, run: &Runner) -> StateResult<bool> {
        let now = self.now(t, run)?;
        if now == self.before {
            return Ok(false);
        }
        if now != self.after {
            return Err(StateError::Refused(format!(
                "service {} is {} now, not {} as the run left it; not changed",
                self.service.name,
                describe_state(self.aspect, &now),
                describe_state(self.aspect, &self.after)
            )));
        }
        match self.aspect {
            Aspect::Active => self.service.control(
                t,
                run,
                if self.before == "active" {
                    "start"
                } else {
                    "stop"
                },
            )?,
            Aspect::Enabled => self.service.set_enablement(t, run, &self.before)?,
        }
        Ok(true)
    }
}

pub fn active_word(active: bool) -> &'static str {
    if active {
        "active"
    } else {
        "inactive"
    }
}

fn describe_state(aspect: Aspect, word: &str) -> String {
    match (aspect, word) {
        (Aspect::Active, _) => word.to_string(),
        (Aspect::Enabled, "none") => "without runlevel links".to_string(),
        (Aspect::Enabled, _) => format!("{word} at boot"),
    }
}
