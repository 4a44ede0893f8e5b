//! Packages: `pkg::installed`, `pkg::absent`, `pkg::latest`, `pkg::updated` and the
//! facts `pkg::list` / `pkg::version`, through the host's package manager
//! ([`crate::pkgmgr`]).
//!
//! The plan is the package manager's own simulation, parsed into the exact
//! packages installed, moved between versions and removed; the dry-run records what
//! each would be left as ([`Ctx::set_planned`], key `pkg:NAME`, an empty value for
//! absent) so later steps and facts of the same plan see it. A real run journals
//! that list before the change ([`Undo::Packages`]), makes it, then checks the
//! packages are what the simulation said. A change whose old version can no longer
//! be downloaded is reported irreversible before it runs.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Ctx, OpError, OpResult, StepReport};
use crate::journal::undo::Undo;
use crate::pkgmgr::{Change, Manager, PkgError, Pm, Request, Want};

impl From<PkgError> for OpError {
    fn from(e: PkgError) -> Self {
        match e {
            PkgError::Target(t) => OpError::Target(t),
            PkgError::Stopped(s) => OpError::Stopped(s),
            other => OpError::Invalid(other.to_string()),
        }
    }
}

/// What a package step ensures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Installed (at `version` when given); an installed package is left alone.
    Installed,
    Absent,
    /// Installed at the newest version the sources offer.
    Latest,
    /// Every upgradable package upgraded (`names` is empty).
    Updated,
}

impl Goal {
    pub fn op(self) -> &'static str {
        match self {
            Goal::Installed => "pkg::installed",
            Goal::Absent => "pkg::absent",
            Goal::Latest => "pkg::latest",
            Goal::Updated => "pkg::updated",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PkgSpec {
    pub names: Vec<String>,
    pub version: Option<String>,
    /// Extra package manager options (apt: `Key=Value` items for `-o`).
    pub options: Vec<String>,
    pub lock_timeout: Duration,
}

/// The key of a package in the plan's state outside files.
fn key(name: &str) -> String {
    format!("pkg:{name}")
}

fn pm<'a>(ctx: &'a Ctx, options: &'a [String], lock_timeout: Duration) -> Pm<'a> {
    Pm {
        target: ctx.target.as_ref(),
        cancel: Some(ctx.cancel()),
        options,
        lock_timeout,
    }
}

/// An earlier step of this dry-run left `name` as this: `Some(None)` absent.
fn planned(ctx: &Ctx, name: &str) -> Option<Option<String>> {
    ctx.planned(&key(name))
        .map(|v| if v.is_empty() { None } else { Some(v) })
}

/// The installed versions of `names`, as the plan so far leaves them.
fn current(ctx: &Ctx, pm: &Pm, m: Manager, names: &[String]) -> OpResult<BTreeMap<String, String>> {
    let mut now = pm.installed(m, Some(names))?;
    for n in names {
        match planned(ctx, n) {
            Some(Some(v)) => {
                now.insert(n.clone(), v);
            }
            Some(None) => {
                now.remove(n);
            }
            None => {}
        }
    }
    Ok(now)
}

/// Ensure `goal` for `spec.names`. `found`: the packages the step changes (or in a
/// dry-run would), for the recipe's result map.
pub fn ensure(
    ctx: &Ctx,
    goal: Goal,
    spec: &PkgSpec,
    found: &mut Vec<Change>,
) -> OpResult<StepReport> {
    let op = goal.op();
    let pm = pm(ctx, &spec.options, spec.lock_timeout);
    let m = pm.supported()?;
    let subject = match goal {
        Goal::Updated => format!("upgradable packages ({})", m.as_str()),
        _ => {
            let names: Vec<String> = spec
                .names
                .iter()
                .map(|n| match &spec.version {
                    Some(v) => format!("{n}={v}"),
                    None => n.clone(),
                })
                .collect();
            format!("{} ({})", names.join(", "), m.as_str())
        }
    };
    let now = current(ctx, &pm, m, &spec.names)?;
    let request = match goal {
        Goal::Installed => Request::Transaction {
            install: spec
                .names
                .iter()
                .filter(|n| match (now.get(*n), &spec.version) {
                    (None, _) => true,
                    (Some(have), Some(want)) => have != want,
                    (Some(_), None) => false,
                })
                .map(|n| Want {
                    name: n.clone(),
                    version: spec.version.clone(),
                })
                .collect(),
            remove: Vec::new(),
            latest: false,
        },
        Goal::Absent => Request::Transaction {
            install: Vec::new(),
            remove: spec
                .names
                .iter()
                .filter(|n| now.contains_key(*n))
                .cloned()
                .collect(),
            latest: false,
        },
        Goal::Latest => Request::Transaction {
            install: spec
                .names
                .iter()
                .map(|n| Want {
                    name: n.clone(),
                    version: None,
                })
                .collect(),
            remove: Vec::new(),
            latest: true,
        },
        Goal::Updated => Request::UpgradeAll,
    };
    if let Request::Transaction {
        install, remove, ..
    } = &request
    {
        if install.is_empty() && remove.is_empty() {
            return Ok(StepReport::unchanged(op, subject));
        }
    }
    let mut changes = pm.simulate(m, &request)?;
    // The simulation ran on the machine as it is; earlier steps of a dry-run may
    // have planned some of these packages already.
    for c in changes.iter_mut() {
        if let Some(p) = planned(ctx, &c.name) {
            c.before = p;
        }
    }
    if ctx.dry_run() {
        from_plan(ctx, &pm, m, &request, &mut changes)?;
    }
    changes.retain(|c| c.before != c.after);
    if changes.is_empty() {
        return Ok(StepReport::unchanged(op, subject));
    }
    pm.mark_lost(m, &mut changes)?;
    let mut report = StepReport::changed(op, subject, Vec::new());
    report.reversible = !changes.iter().any(|c| c.lost);
    let mut diff: String = changes.iter().map(|c| c.line() + "\n").collect();
    for c in changes.iter().filter(|c| c.lost) {
        diff.push_str(&format!(
            "! {} {} can no longer be downloaded: a rollback cannot bring it back\n",
            c.name,
            c.before.as_deref().unwrap_or_default()
        ));
    }
    report.diff = Some(diff);
    *found = changes.clone();
    if ctx.dry_run() {
        for c in &changes {
            ctx.set_planned(&key(&c.name), c.after.clone().unwrap_or_default());
        }
        // The packages' files and what their scripts do are not in the plan's view:
        // a later command or check, which asks the machine as it is, is not vouched for.
        ctx.target.note_unknown_effect();
        return Ok(report);
    }
    ctx.will(
        op,
        Undo::Packages {
            manager: m,
            changes: changes.clone(),
            options: spec.options.clone(),
        },
    )?;
    pm.apply(m, &request).map_err(|e| as_root_hint(ctx, e))?;
    pm.verify(m, &changes)?;
    Ok(report)
}

/// Dry-run: what the simulation (on the machine as it is) could not say because an
/// earlier step of the plan changed the package: removing one only the plan has
/// installed, installing one only the plan has removed.
fn from_plan(
    ctx: &Ctx,
    pm: &Pm,
    m: Manager,
    request: &Request,
    changes: &mut Vec<Change>,
) -> OpResult<()> {
    let Request::Transaction {
        install, remove, ..
    } = request
    else {
        return Ok(());
    };
    let missing = |name: &str, changes: &[Change]| !changes.iter().any(|c| c.name == name);
    for name in remove {
        if let Some(Some(v)) = planned(ctx, name).filter(|_| missing(name, changes)) {
            changes.push(Change {
                name: name.clone(),
                before: Some(v),
                after: None,
                lost: false,
            });
        }
    }
    let gone: Vec<String> = install
        .iter()
        .filter(|w| planned(ctx, &w.name) == Some(None) && missing(&w.name, changes))
        .map(|w| w.name.clone())
        .collect();
    if !gone.is_empty() {
        for (name, v) in pm.installed(m, Some(&gone))? {
            changes.push(Change {
                name,
                before: None,
                after: Some(v),
                lost: false,
            });
        }
    }
    Ok(())
}

/// apt run as somebody else than root says "are you root?": say how to be.
fn as_root_hint(ctx: &Ctx, e: PkgError) -> OpError {
    match e {
        PkgError::Failed(msg)
            if !ctx.is_root_view()
                && (msg.contains("are you root") || msg.contains("Permission denied")) =>
        {
            OpError::Invalid(format!(
                "{msg} (changing packages needs root: #{{become: true}} or become(|| …))"
            ))
        }
        e => e.into(),
    }
}

/// Every installed package and its version, as the plan so far leaves them.
pub fn list(
    ctx: &Ctx,
    options: &[String],
    lock_timeout: Duration,
) -> OpResult<BTreeMap<String, String>> {
    let pm = pm(ctx, options, lock_timeout);
    let m = pm.supported()?;
    let mut all = pm.installed(m, None)?;
    for (k, v) in ctx.planned_under("pkg:") {
        let name = k.trim_start_matches("pkg:").to_string();
        if v.is_empty() {
            all.remove(&name);
        } else {
            all.insert(name, v);
        }
    }
    Ok(all)
}

/// The installed version of `name` (`None`: not installed), as the plan so far
/// leaves it.
pub fn version(
    ctx: &Ctx,
    name: &str,
    options: &[String],
    lock_timeout: Duration,
) -> OpResult<Option<String>> {
    if let Some(p) = planned(ctx, name) {
        return Ok(p);
    }
    let pm = pm(ctx, options, lock_timeout);
    let m = pm.supported()?;
    Ok(pm.installed(m, Some(&[name.to_string()]))?.remove(name))
}
