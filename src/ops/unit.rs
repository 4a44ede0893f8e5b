//! `systemd::unit` and `systemd::timer`: unit files under `/etc/systemd/system`,
//! written by [`super::fs::file`] (so their diff, journal, dry-run and undo are those
//! of any file), and `systemd::daemon_reload`, which the engine runs as a handler
//! after a unit changed.

use super::service::runner;
use super::{Ctx, OpError, OpResult, StepReport};
use crate::system::service::{check_name, systemd_running};

/// The kinds of unit a file name may end with.
const KINDS: [&str; 11] = [
    "service",
    "socket",
    "timer",
    "target",
    "path",
    "mount",
    "automount",
    "swap",
    "slice",
    "scope",
    "device",
];

/// `name` must be a unit name with its kind (`backup.service`, `backup.timer`).
pub fn check_unit_name(name: &str) -> Result<(), String> {
    check_name(name)?;
    match name.rsplit_once('.') {
        Some((stem, kind)) if !stem.is_empty() && KINDS.contains(&kind) => Ok(()),
        _ => Err(format!(
            "{name:?} is not a unit file name: give its kind too (backup.service, \
             backup.timer; one of {})",
            KINDS.join(", ")
        )),
    }
}

/// Where the unit file `name` goes: `/etc/systemd/system`, under `root` if given.
pub fn unit_path(name: &str, root: Option<&str>) -> String {
    let root = root.unwrap_or("").trim_end_matches('/');
    format!("{root}/etc/systemd/system/{name}")
}

/// Write the unit file `name` with `content`.
pub fn unit(
    ctx: &Ctx,
    op: &'static str,
    name: &str,
    content: &str,
    root: Option<&str>,
) -> OpResult<StepReport> {
    check_unit_name(name).map_err(|why| OpError::Invalid(format!("{op}: {why}")))?;
    let path = unit_path(name, root);
    let dir = crate::transport::parent(&path);
    if ctx.target.stat(dir)?.is_none() {
        return Err(OpError::Invalid(format!(
            "{op}: {}: {dir} does not exist (is systemd installed there?)",
            ctx.host()
        )));
    }
    super::fs::file(ctx, op, &path, content.as_bytes(), Some(0o644), true)
}

/// What `systemd::timer` writes.
#[derive(Debug, Clone, Default)]
pub struct TimerSpec {
    pub description: Option<String>,
    /// `OnCalendar=` (`daily`, `*-*-* 03:00:00`); one of this or `on_boot_sec`.
    pub on_calendar: Option<String>,
    pub on_boot_sec: Option<String>,
    /// The unit it starts; systemd's default is the `.service` of the same name.
    pub unit: Option<String>,
    pub persistent: bool,
    pub randomized_delay_sec: Option<String>,
}

/// The text of a timer unit.
pub fn timer_text(name: &str, spec: &TimerSpec) -> Result<String, String> {
    let one_line = |what: &str, v: &Option<String>| match v {
        Some(s) if s.trim().is_empty() || s.contains(['\n', '\r']) => {
            Err(format!("`{what}` must be one non-empty line"))
        }
        _ => Ok(()),
    };
    one_line("description", &spec.description)?;
    one_line("on_calendar", &spec.on_calendar)?;
    one_line("on_boot_sec", &spec.on_boot_sec)?;
    one_line("randomized_delay_sec", &spec.randomized_delay_sec)?;
    if spec.on_calendar.is_none() && spec.on_boot_sec.is_none() {
        return Err("give `on_calendar` (e.g. \"daily\") or `on_boot_sec`".into());
    }
    if let Some(u) = &spec.unit {
        check_unit_name(u)?;
    }
    let mut t = String::from("[Unit]\n");
    let stem = name.strip_suffix(".timer").unwrap_or(name);
    t.push_str(&format!(
        "Description={}\n\n[Timer]\n",
        spec.description
            .clone()
            .unwrap_or_else(|| format!("{stem} (tend)"))
    ));
    let mut line = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            t.push_str(&format!("{k}={v}\n"));
        }
    };
    line("OnCalendar", &spec.on_calendar);
    line("OnBootSec", &spec.on_boot_sec);
    line("RandomizedDelaySec", &spec.randomized_delay_sec);
    line("Unit", &spec.unit);
    if spec.persistent {
        t.push_str("Persistent=true\n");
    }
    t.push_str("\n[Install]\nWantedBy=timers.target\n");
    Ok(t)
}

/// `systemctl daemon-reload`, so systemd reads changed unit files. Where systemd
/// does not run there is nothing to reload: unchanged, and the subject says so.
/// Nothing to undo (a rollback restores the files; the next reload reads them).
pub fn daemon_reload(ctx: &Ctx) -> OpResult<StepReport> {
    const OP: &str = "systemd::daemon_reload";
    let t = ctx.target.as_ref();
    if !systemd_running(t)? {
        return Ok(StepReport::unchanged(
            OP,
            "systemctl daemon-reload: skipped, systemd is not running there",
        ));
    }
    let report = StepReport::changed(OP, "systemctl daemon-reload", Vec::new());
    if ctx.dry_run() {
        return Ok(report);
    }
    runner(ctx).check(t, "systemctl daemon-reload".into(), None)?;
    Ok(report)
}
