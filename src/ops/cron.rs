//! `cron::entry`: one marked job line in a user's crontab (`# tend: NAME` above it),
//! read and installed through `crontab(1)`.
//!
//! The step shows the crontab's diff; a dry-run reads the crontab (`crontab -l`)
//! and keeps the text it plans with [`Ctx::set_planned`], so two entries in one
//! crontab plan as they will run. The old text is saved on the target before it is
//! replaced; a rollback installs it again byte for byte, or removes the crontab if
//! the user had none.

use super::service::runner;
use super::{unified_diff, Ctx, OpError, OpResult, StepReport};
use crate::journal::undo::Undo;
use crate::system::crontab::{check_schedule, sha256, with_entry, Change, Crontab};

const OP: &str = "cron::entry";

#[derive(Debug, Clone)]
pub struct CronSpec {
    pub name: String,
    pub schedule: String,
    pub command: String,
    /// Whose crontab; `None`: the login user's.
    pub user: Option<String>,
    pub present: bool,
}

/// Refuse what would not make one crontab line, before anything is read.
pub fn check(spec: &CronSpec) -> Result<(), String> {
    if spec.name.trim().is_empty() || spec.name.contains('\n') {
        return Err("the entry's name must be one non-empty line".into());
    }
    if let Some(u) = &spec.user {
        if u.is_empty()
            || u.starts_with('-')
            || !u
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-$".contains(c))
        {
            return Err(format!("{u:?} is not a user name"));
        }
    }
    if !spec.present {
        return Ok(());
    }
    if spec.command.trim().is_empty() || spec.command.contains(['\n', '\r']) {
        return Err("the command must be one non-empty line".into());
    }
    if spec.schedule.contains(['\n', '\r']) {
        return Err("the schedule must be one line".into());
    }
    check_schedule(&spec.schedule).map_err(|why| format!("schedule {why}"))
}

/// The planned text of a crontab, as [`Ctx::planned`] keeps it.
fn encode(text: Option<&str>) -> String {
    match text {
        Some(t) => format!("+{t}"),
        None => "-".into(),
    }
}

pub fn entry(ctx: &Ctx, spec: &CronSpec) -> OpResult<StepReport> {
    check(spec).map_err(|why| OpError::Invalid(format!("{OP} {:?}: {why}", spec.name)))?;
    let t = ctx.target.as_ref();
    let run = runner(ctx);
    let login = &t.info().user;
    // `-u` only for another user's crontab: only root may give it, even for its own.
    let user = spec
        .user
        .clone()
        .filter(|u| ctx.is_root_view() || u != login);
    let tab = Crontab { user };
    let key = format!("crontab:{}", spec.user.as_deref().unwrap_or(login.as_str()));
    let old = match ctx.planned(&key) {
        Some(v) => v.strip_prefix('+').map(str::to_string),
        None => tab.read(t, &run)?,
    };
    let job = format!("{} {}", spec.schedule.trim(), spec.command);
    let text = with_entry(
        old.as_deref().unwrap_or(""),
        &spec.name,
        spec.present.then_some(job.as_str()),
    )
    .map_err(|why| OpError::Invalid(format!("{}: {}: {why}", t.info().name, tab.describe())))?;
    let subject = format!("{} in {}", spec.name, tab.describe());
    if text == old.as_deref().unwrap_or("") {
        return Ok(StepReport::unchanged(OP, subject));
    }
    // A crontab left empty is removed, as if tend had never written one.
    let new = Some(text).filter(|t| !t.is_empty());
    let label = format!("crontab:{}", spec.user.as_deref().unwrap_or(login.as_str()));
    let mut report = StepReport::changed(OP, subject, Vec::new());
    report.diff = Some(unified_diff(
        &label,
        old.as_deref().map(str::as_bytes),
        new.as_deref().unwrap_or("").as_bytes(),
    ));
    if ctx.dry_run() {
        ctx.set_planned(&key, encode(new.as_deref()));
        return Ok(report);
    }
    let backup = match &old {
        Some(o) => Some(ctx.save_backup(&label.replace(':', "-"), o.as_bytes())?.0),
        None => None,
    };
    ctx.will(
        OP,
        Undo::Crontab(Change {
            crontab: tab.clone(),
            backup,
            before: old.as_deref().map(sha256),
            after: new.as_deref().map(sha256),
        }),
    )?;
    tab.write(t, &run, new.as_deref())?;
    Ok(report)
}
