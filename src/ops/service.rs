//! Service operations: `service::running`, `stopped`, `restarted`, `reloaded`,
//! `enabled`, `disabled`, and the fact `service::status`.
//!
//! A dry-run only asks (`systemctl is-active`, `/etc/init.d/NAME status`, the
//! runlevel links) and records what it plans with [`Ctx::set_planned`], so a later
//! step of the same plan sees the service as the run will have left it. A change is
//! journaled with the state before and after it: a rollback puts the old state back
//! while the service is still as the run left it. A restart or reload of a running
//! service leaves it running: there is nothing to undo, and nothing is journaled.

use super::{Ctx, OpError, OpResult, StepReport};
use crate::journal::undo::Undo;
use crate::system::service::{active_word, is_enabled, Aspect, Change, Manager, Service};
use crate::system::{Runner, StateError};

impl From<StateError> for OpError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Target(t) => OpError::Target(t),
            StateError::Stopped(s) => OpError::Stopped(s),
            other => OpError::Invalid(other.to_string()),
        }
    }
}

/// Commands of a step run within the run (its deadline, its cancel), as the
/// context's user: the sudo view under `become`.
pub fn runner(ctx: &Ctx) -> Runner {
    Runner {
        become_: false,
        cancel: Some(ctx.cancel().clone()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Running,
    Stopped,
    Restarted,
    Reloaded,
}

impl Want {
    pub fn op(self) -> &'static str {
        match self {
            Want::Running => "service::running",
            Want::Stopped => "service::stopped",
            Want::Restarted => "service::restarted",
            Want::Reloaded => "service::reloaded",
        }
    }
}

/// Whether `svc` runs, as the plan has it so far (a dry-run) or the target says.
fn is_active(ctx: &Ctx, svc: &Service, run: &Runner) -> OpResult<bool> {
    match ctx.planned(&svc.key(Aspect::Active)) {
        Some(word) => Ok(word == "active"),
        None => match svc.active(ctx.target.as_ref(), run) {
            Err(StateError::Missing(_)) if planned_file(ctx, svc)?.is_some() => Ok(false),
            r => Ok(r?),
        },
    }
}

fn enablement(ctx: &Ctx, svc: &Service, run: &Runner) -> OpResult<String> {
    match ctx.planned(&svc.key(Aspect::Enabled)) {
        Some(word) => Ok(word),
        None => match svc.enablement(ctx.target.as_ref(), run) {
            Err(StateError::Missing(m)) => match planned_file(ctx, svc)? {
                // A unit file written by this plan: disabled until enabled, or
                // static when it has nothing to be enabled by.
                Some(text) if svc.manager == Manager::Systemd => {
                    Ok(if text.contains("[Install]") {
                        "disabled"
                    } else {
                        "static"
                    }
                    .into())
                }
                Some(_) => Ok("none".into()),
                None => Err(StateError::Missing(m).into()),
            },
            r => Ok(r?),
        },
    }
}

/// Dry-run: the service's file as an earlier step of this plan wrote it, which the
/// machine (asked by the queries) does not have yet.
fn planned_file(ctx: &Ctx, svc: &Service) -> OpResult<Option<String>> {
    let t = ctx.target.as_ref();
    if !ctx.dry_run() || t.divergence() == crate::transport::Divergence::None {
        return Ok(None);
    }
    let path = svc.file();
    match t.stat(&path)? {
        Some(m) if m.kind == crate::transport::Kind::File => {
            Ok(Some(String::from_utf8_lossy(&t.read(&path)?).into_owned()))
        }
        _ => Ok(None),
    }
}

/// Running or stopped; restarted or reloaded (a service that is not running is
/// started instead, as Ansible does, and that start is undone by a rollback).
pub fn active(ctx: &Ctx, name: &str, want: Want) -> OpResult<StepReport> {
    let op = want.op();
    let t = ctx.target.as_ref();
    let run = runner(ctx);
    let svc = Service::on(t, name, None)?;
    let now = is_active(ctx, &svc, &run)?;
    let label = format!("{} ({})", svc.name, svc.manager.as_str());
    let (verb, after) = match (want, now) {
        (Want::Running, true) | (Want::Stopped, false) => {
            return Ok(StepReport::unchanged(
                op,
                format!("{label}: {}", active_word(now)),
            ))
        }
        (Want::Stopped, true) => ("stop", false),
        (_, false) => ("start", true),
        (Want::Restarted, true) => ("restart", true),
        (Want::Reloaded, true) => ("reload", true),
    };
    let subject = if now == after {
        format!("{label}: {verb}")
    } else {
        format!("{label}: {} -> {}", active_word(now), active_word(after))
    };
    let report = StepReport::changed(op, subject, Vec::new());
    if ctx.dry_run() {
        ctx.set_planned(&svc.key(Aspect::Active), active_word(after));
        return Ok(report);
    }
    if now != after {
        ctx.will(
            op,
            Undo::Service(Change {
                service: svc.clone(),
                aspect: Aspect::Active,
                before: active_word(now).into(),
                after: active_word(after).into(),
            }),
        )?;
    }
    svc.control(t, &run, verb)?;
    if svc.active(t, &run)? != after {
        return Err(OpError::Invalid(format!(
            "{}: {verb} of {} succeeded, but it is {} now",
            t.info().name,
            svc.name,
            active_word(!after)
        )));
    }
    Ok(report)
}

/// Started at boot (`enable`) or not. `root`: unit files under that directory,
/// without a running systemd (`systemctl --root`).
pub fn enabled(ctx: &Ctx, name: &str, enable: bool, root: Option<&str>) -> OpResult<StepReport> {
    let op = if enable {
        "service::enabled"
    } else {
        "service::disabled"
    };
    let t = ctx.target.as_ref();
    let run = runner(ctx);
    let svc = Service::on(t, name, root)?;
    let now = enablement(ctx, &svc, &run)?;
    let label = format!("{} ({})", svc.name, svc.manager.as_str());
    let done = match (enable, now.as_str()) {
        (true, "masked") => {
            return Err(OpError::Invalid(format!(
                "{}: {} is masked; unmask it first (systemctl unmask)",
                t.info().name,
                svc.name
            )))
        }
        (false, "static") => {
            return Err(OpError::Invalid(format!(
                "{}: {} is static (it has no [Install] section): it cannot be disabled, \
                 only masked",
                t.info().name,
                svc.name
            )))
        }
        (true, w) => is_enabled(w),
        // An init script without runlevel links does not start at boot either.
        (false, w) => !is_enabled(w),
    };
    if done {
        return Ok(StepReport::unchanged(op, format!("{label}: {now}")));
    }
    let after = if enable { "enabled" } else { "disabled" };
    let report = StepReport::changed(op, format!("{label}: {now} -> {after}"), Vec::new());
    if ctx.dry_run() {
        ctx.set_planned(&svc.key(Aspect::Enabled), after);
        return Ok(report);
    }
    ctx.will(
        op,
        Undo::Service(Change {
            service: svc.clone(),
            aspect: Aspect::Enabled,
            before: now.clone(),
            after: after.into(),
        }),
    )?;
    svc.set_enablement(t, &run, after)?;
    let left = svc.enablement(t, &run)?;
    if left != after {
        return Err(OpError::Invalid(format!(
            "{}: {} is {left} after being made {after}",
            t.info().name,
            svc.name
        )));
    }
    Ok(report)
}

/// What `service::status` tells.
#[derive(Debug, Clone)]
pub struct Status {
    pub name: String,
    pub manager: &'static str,
    pub exists: bool,
    pub active: bool,
    /// How it starts at boot, in its manager's word (`enabled`, `disabled`, `static`,
    /// `none` for an init script without runlevel links).
    pub state: String,
    pub enabled: bool,
    /// The main process id; 0 when not running or not known.
    pub pid: i64,
}

/// The service as it is (or, in a dry-run, as the plan has left it so far).
pub fn status(ctx: &Ctx, name: &str, root: Option<&str>) -> OpResult<Status> {
    let t = ctx.target.as_ref();
    let run = runner(ctx);
    let svc = Service::on(t, name, root)?;
    let mut s = Status {
        name: svc.name.clone(),
        manager: svc.manager.as_str(),
        exists: svc.exists(t, &run)? || planned_file(ctx, &svc)?.is_some(),
        active: false,
        state: "none".into(),
        enabled: false,
        pid: 0,
    };
    if !s.exists {
        return Ok(s);
    }
    s.state = enablement(ctx, &svc, &run)?;
    s.enabled = is_enabled(&s.state);
    if root.is_none() {
        s.active = is_active(ctx, &svc, &run)?;
        // A pid the plan cannot know: the one running now, if it is to keep running.
        if s.active && ctx.planned(&svc.key(Aspect::Active)).is_none() {
            s.pid = svc.main_pid(t, &run)?;
        }
    }
    Ok(s)
}
