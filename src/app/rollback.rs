//! Rollback: replay a host's journal in reverse, each record checked first (its
//! directories still lead where they led, its path still holds what the run left,
//! the recipe's scope still allows it), and `tend rollback RUN` of a finished,
//! failed or dead run.

use super::*;
use std::sync::Arc;
use std::time::Duration;

use crate::app::Actor;
use crate::error::{Error, Result};
use crate::event::{Event, Sink};
use crate::journal::undo::{Reverted, Undo};
use crate::journal::Entry;
use crate::lock::Take;
use crate::reach::HostSpec;
use crate::store::{JournalStore, Stores};
use crate::transport::{Kind, Target};

#[derive(Debug, Default)]
pub struct RollbackReport {
    pub reverted: u64,
    /// What could not be undone, with why; empty when rollback was complete.
    pub incomplete: Vec<String>,
    /// Complete, so the host's backups of the run were freed.
    pub freed: bool,
    /// Commands that failed or were stopped mid-step: nothing known of theirs is left
    /// undone, but what they did before failing is unknown (said, not counted as
    /// incomplete).
    pub warnings: Vec<String>,
    /// Nothing was left to undo: when the run was rolled back before.
    pub already: Option<String>,
}

/// How a journal is replayed.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// The run whose journal it is, for messages.
    pub run_id: String,
    pub dry_run: bool,
    /// Revert paths that changed since the run, saving what they hold first.
    pub force: bool,
    /// Where `force` saves what it overwrites: the run's backup directory on the host.
    pub save_dir: String,
    /// The host's backups were freed (see [`crate::state::Freed::describe`]).
    pub freed: Option<String>,
}

/// Replay one host's journal in reverse. Goes on past a record it cannot revert, so
/// as much as possible is undone, and says exactly what was not.
///
/// Before reverting a record it checks, through the same view the change was made
/// with, that its directories still lead where they led when the run wrote it (no
/// symlink swapped in) and that the path still holds what the run left there (nobody
/// changed it since). A record that fails either is not touched.
pub fn rollback_host(
    target: &dyn Target,
    journals: &dyn JournalStore,
    host_name: &str,
    replay: &Replay,
    sink: &Sink,
) -> Result<RollbackReport> {
    let host = target.info().name.clone();
    let dry_run = replay.dry_run;
    let journal_path = journals.describe(&replay.run_id, host_name);
    let contents = journals.read(&replay.run_id, host_name)?;
    let journal = if dry_run {
        None
    } else {
        Some(journals.open(&replay.run_id, host_name)?)
    };
    let mut report = RollbackReport::default();
    for d in &contents.damaged {
        report.incomplete.push(format!(
            "journal {journal_path}: {d}: that line cannot be read, so whatever change it recorded was not undone: check by hand"
        ));
    }
    let scope = match &contents.scope {
        Some(patterns) => match crate::engine::Scope::new(patterns) {
            Ok(s) => Some(s),
            Err(e) => {
                report.incomplete.push(format!(
                    "journal {journal_path}: its scope cannot be read ({e}); nothing was reverted"
                ));
                return Ok(report);
            }
        },
        None => None,
    };
    let backups = contents.backups.as_deref().unwrap_or(&replay.save_dir);
    let mut root_view: Option<Arc<dyn Target>> = None;
    for e in contents.entries.iter().rev().filter(|e| !e.undone) {
        let action = e.undo.describe();
        let is_command = matches!(e.undo, Undo::Command { .. } | Undo::Barrier { .. });
        let result = if is_command && !e.done {
            report.warnings.push(failed_command(e));
            if let Some(j) = &journal {
                // Nothing will ever be run for it: a later rollback has nothing left.
                j.mark_undone(e.seq)
                    .map_err(|err| Error::io("cannot update journal", err))?;
            }
            "not undone: the command did not finish (it failed or was stopped); its effects are unknown".to_string()
        } else {
            // A change made as root is checked and reverted through the host's sudo
            // view; an undo command asks sudo itself.
            let view: Result<&dyn Target> = if e.become_ && !is_command {
                if root_view.is_none() {
                    root_view = Some(target.elevated()?);
                }
                Ok(root_view.as_deref().expect("set above"))
            } else {
                Ok(target)
            };
            let view = view?;
            match preflight(view, e, scope.as_ref(), backups, replay) {
                Err(why) => {
                    report
                        .incomplete
                        .push(format!("step {} ({}): {why}", e.step, e.op));
                    format!("refused: {why}")
                }
                Ok(note) if dry_run => match &e.undo {
                    Undo::Barrier { what } => {
                        report
                            .incomplete
                            .push(format!("step {} ({}): cannot undo {what}", e.step, e.op));
                        "cannot undo".to_string()
                    }
                    _ => {
                        report.reverted += 1;
                        format!("would revert{note}")
                    }
                },
                Ok(note) => match e.undo.revert(view, e.become_) {
                    Ok(r) => {
                        if let Some(j) = &journal {
                            j.mark_undone(e.seq)
                                .map_err(|err| Error::io("cannot update journal", err))?;
                        }
                        match r {
                            Reverted::Done => {
                                report.reverted += 1;
                                format!("reverted{note}")
                            }
                            Reverted::NotNeeded => "not needed".to_string(),
                            Reverted::Impossible(what) => {
                                report.incomplete.push(format!(
                                    "step {} ({}): cannot undo {what}",
                                    e.step, e.op
                                ));
                                "cannot undo".to_string()
                            }
                        }
                    }
                    Err(err) => {
                        report.incomplete.push(format!(
                            "step {} ({}): {action} failed: {err}",
                            e.step, e.op
                        ));
                        format!("failed: {err}")
                    }
                },
            }
        };
        sink(&Event::Undo {
            host: host.clone(),
            seq: e.seq,
            op: e.op.clone(),
            action,
            result,
        });
    }
    sink(&Event::Rollback {
        host,
        reverted: report.reverted,
        incomplete: report.incomplete.clone(),
        warnings: report.warnings.clone(),
    });
    // Everything is undone: the backups are of no more use (a --force save stays).
    if !dry_run && report.incomplete.is_empty() && !replay.save_dir.is_empty() {
        match super::free_backups(target, &replay.save_dir, true) {
            Ok(_) => report.freed = true,
            Err(e) => tracing::warn!("backups of run {} kept: {e}", replay.run_id),
        }
    }
    Ok(report)
}

/// The warning for a command whose step did not finish: it failed (or the run was
/// stopped in it), so no known change of it is left, but it may have done something
/// before failing that tend cannot know.
fn failed_command(e: &Entry) -> String {
    let what = match &e.undo {
        Undo::Barrier { what } => what.trim_end_matches(" (no undo given)").to_string(),
        Undo::Command { command } => {
            format!("the command of this step (its undo `{command}` was not run)")
        }
        other => other.describe(),
    };
    format!(
        "step {} ({}): {what} failed or was stopped before it finished; what it did before that is unknown: check by hand",
        e.step, e.op
    )
}

/// Whether record `e` may be reverted now; with `--force` the drifted content is saved
/// first, and the note says where. The refusal says why, for the report.
pub(crate) fn preflight(
    t: &dyn Target,
    e: &Entry,
    scope: Option<&crate::engine::Scope>,
    backups: &str,
    replay: &Replay,
) -> std::result::Result<String, String> {
    use crate::journal::undo::Fingerprint;
    let paths = e.undo.paths();
    if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
        return Err(format!(
            "{p} was recorded as a relative path (by an older tend); not reverted: it is unknown where it was"
        ));
    }
    if let Some(freed) = &replay.freed {
        freed_backup(t, &e.undo, backups, freed)?;
    }
    if let Some(scope) = scope {
        for p in paths.iter().filter(|p| !inside(p, backups)) {
            scope
                .check(t, p, None, false)
                .map_err(|why| format!("{why}; not reverted"))?;
        }
    }
    for (p, then) in paths.iter().zip(&e.dirs) {
        let dir = crate::transport::parent(p);
        let now = t.resolve_dir(dir).map_err(|err| err.to_string())?;
        if &now != then {
            return Err(format!(
                "{p}: its directory now leads to {now}, not to {then} as when the run wrote it \
                 (a symlink was put in its way since); not reverted"
            ));
        }
    }
    let (Some(path), Some(left)) = (e.undo.subject(), &e.left) else {
        return Ok(String::new());
    };
    let now = Fingerprint::of(t, path, None).map_err(|err| err.to_string())?;
    if now.is_none() || now == *left {
        // Gone since (nothing to lose), or as the run left it.
        return Ok(String::new());
    }
    let drift = format!(
        "{path}: changed since run {} wrote it (it left {}; now it is {})",
        replay.run_id,
        Fingerprint::describe(left.as_ref()),
        Fingerprint::describe(now.as_ref())
    );
    if !replay.force {
        return Err(format!(
            "{drift}; not rolled back (use --force to overwrite: the current content is saved first)"
        ));
    }
    if !matches!(now.as_ref().map(|f| f.kind), Some(Kind::File)) {
        return Ok(format!(" ({drift}; overwritten with --force)"));
    }
    let name = path.rsplit('/').next().unwrap_or("file");
    let saved = crate::transport::join(backups, &format!("drift-{:06}-{name}", e.seq));
    if replay.dry_run {
        return Ok(format!(
            " ({drift}; --force would save it to {saved} first)"
        ));
    }
    crate::ops::mkdir_p(t, backups, 0o700)
        .map_err(|err| format!("{drift}; cannot save it first: {err}"))?;
    t.copy_file(path, &saved)
        .map_err(|err| format!("{drift}; cannot save it first: {err}"))?;
    Ok(format!(" ({drift}; its content was saved to {saved})"))
}

/// Refuses a record whose revert needs a backup that was freed: the step can no
/// longer be undone, and the plan of the rollback says so before touching anything.
fn freed_backup(
    t: &dyn Target,
    undo: &Undo,
    backups: &str,
    freed: &str,
) -> std::result::Result<(), String> {
    let gone = |p: &str| t.stat(p).map(|m| m.is_none()).map_err(|e| e.to_string());
    let (path, backup) = match undo {
        Undo::Restore { path, backup, .. } => (path, backup),
        // A removal moved into the backups; `from` there again means it never was.
        Undo::Rename { from, to } if inside(to, backups) && gone(from)? => (from, to),
        _ => return Ok(()),
    };
    if gone(backup)? {
        return Err(format!(
            "{path} can no longer be restored: its backup {backup} was {freed}"
        ));
    }
    Ok(())
}

/// Whether `path` is `dir` or below it (tend's own backups are outside any scope).
pub(crate) fn inside(path: &str, dir: &str) -> bool {
    !dir.is_empty()
        && path
            .strip_prefix(dir.trim_end_matches('/'))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A host whose journal could not be replayed at all: said like any incomplete
/// rollback, so the terminal and the audit log both have the reason.
pub(crate) fn not_undone(sink: &Sink, host: &str, why: String, total: &mut RollbackReport) {
    sink(&Event::Rollback {
        host: host.to_string(),
        reverted: 0,
        incomplete: vec![why.clone()],
        warnings: Vec::new(),
    });
    total.incomplete.push(why);
}

/// What `tend rollback` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RollbackRequest {
    pub run_id: String,
    /// Only this host of the run.
    pub only_host: Option<String>,
    pub dry_run: bool,
    /// Revert paths that changed since the run too, saving what they hold first.
    pub force: bool,
    /// Queue this long behind another run holding a host.
    pub wait: Option<Duration>,
    /// This process took the run over (a cluster node whose lease ran out): it reads
    /// `running`, under the lease that is now this process's.
    pub taken_over: bool,
    /// For an encrypted SSH key (run.json never holds it).
    pub passphrase: Option<crate::secret::Secret>,
}

/// `tend rollback RUN`: replay the journals of a finished, failed or killed run.
/// A run that died holding host locks hands them to its rollback, which releases
/// them at the end, even when something could not be undone (the report says what).
pub fn rollback(
    stores: &Stores,
    actor: &Actor,
    req: &RollbackRequest,
    sink: Sink,
) -> Result<RollbackReport> {
    let RollbackRequest {
        run_id,
        only_host,
        dry_run,
        force,
        wait,
        passphrase,
        taken_over,
    } = req;
    let (run_id, only_host, dry_run, force, wait) = (
        run_id.as_str(),
        only_host.as_deref(),
        *dry_run,
        *force,
        *wait,
    );
    let mut meta = stores.runs.read(run_id)?;
    if meta.dry_run {
        return Err(Error::Usage(format!(
            "run {run_id} was a dry-run: it changed nothing, so there is nothing to roll back"
        )));
    }
    if meta.effective_outcome() == crate::outcome::RunState::Running && !taken_over {
        return Err(Error::Other(format!(
            "run {run_id} is still running ({}); roll it back when it ends",
            meta.holder()
        )));
    }
    let audit = (!dry_run).then(|| stores.audit.clone());
    let sink = audited(
        sink,
        audit,
        run_id.to_string(),
        actor.clone(),
        dry_run,
        None,
        Arc::default(),
    );
    let mut total = RollbackReport::default();
    if let Some(at) = already_rolled_back(stores.journals.as_ref(), &meta, only_host) {
        total.already = Some(at);
        return Ok(total);
    }
    let hosts: Vec<String> = meta
        .hosts
        .iter()
        .filter(|h| only_host.is_none_or(|o| o == h.as_str()))
        .cloned()
        .collect();
    if hosts.is_empty() {
        return Err(Error::Usage(format!(
            "run {run_id} has no host {}; its hosts: {}",
            only_host.unwrap_or_default(),
            meta.hosts.join(", ")
        )));
    }
    for host in hosts {
        let journals = stores.journals.as_ref();
        let has_journal = journals.exists(run_id, &host);
        // A host without a journal needs nothing undone, but the run may have died
        // there holding its locks: then they are released below.
        let died_here = || {
            stores
                .locks
                .holder(&host, false)
                .ok()
                .flatten()
                .is_some_and(|(h, _)| h.run_id == run_id)
        };
        if !has_journal && (dry_run || !died_here()) {
            continue;
        }
        let spec = match meta.targets.iter().find(|t| t.name == host) {
            Some(spec) => spec.clone().with_passphrase(passphrase.as_ref()),
            // Lost with a damaged run.json: guessing "here" could replay another
            // host's journal on this machine.
            None if meta.is_damaged() => {
                let why = format!(
                    "{host}: run.json is damaged, so how to reach this host is not known; \
                     its journal is kept in {}",
                    journals.describe(run_id, &host)
                );
                not_undone(&sink, &host, why, &mut total);
                continue;
            }
            None => HostSpec::local(),
        };
        let reached = match spec.connect() {
            Ok(r) => r,
            Err(e) => {
                let why = format!(
                    "{host}: not reached ({e}); its journal is kept: retry `tend rollback {run_id} --host {host}`"
                );
                not_undone(&sink, &host, why, &mut total);
                continue;
            }
        };
        let take = Take {
            wait,
            take_over: Some(run_id.to_string()),
            fenced: stores.cluster.is_some(),
            cancel: None,
        };
        let _locks = if dry_run {
            None
        } else {
            Some(lock_host(stores, &reached, &host, run_id, &take)?)
        };
        if !has_journal {
            continue;
        }
        let save_dir = match reached.remote_backup_dir(run_id, &host) {
            Ok(Some(remote)) => remote,
            _ => stores
                .local_backup_dir(run_id, &host)?
                .display()
                .to_string(),
        };
        let replay = Replay {
            run_id: run_id.to_string(),
            dry_run,
            force,
            save_dir,
            freed: meta.backups_freed.get(&host).map(|f| f.describe()),
        };
        let r = rollback_host(reached.target.as_ref(), journals, &host, &replay, &sink)?;
        if r.freed {
            let freed = crate::state::Freed::now("rollback");
            meta.backups_freed.entry(host.clone()).or_insert(freed);
        }
        total.reverted += r.reverted;
        total.incomplete.extend(r.incomplete);
        total.warnings.extend(r.warnings);
    }
    if !dry_run {
        meta.rolled_back_at = Some(chrono::Utc::now().to_rfc3339());
        meta.outcome = if total.incomplete.is_empty() {
            Outcome::RolledBack.into()
        } else {
            Outcome::RollbackIncomplete.into()
        };
        // A `tend prune` meanwhile may have freed backups: keep its word for it.
        if let Ok(now) = stores.runs.read(run_id) {
            for (host, freed) in now.backups_freed {
                meta.backups_freed.entry(host).or_insert(freed);
            }
        }
        stores.runs.write(&meta)?;
    }
    Ok(total)
}

/// When every record of the run's journals (of `only_host`'s, if given) was undone
/// already, when that was: the rollback's time, or the run's end for a run that
/// rolled itself back. `None` while anything is left to undo, or nothing ever was.
fn already_rolled_back(
    journals: &dyn JournalStore,
    meta: &crate::state::RunMeta,
    only_host: Option<&str>,
) -> Option<String> {
    let mut undone = 0;
    for host in meta
        .hosts
        .iter()
        .filter(|h| only_host.is_none_or(|o| o == h.as_str()))
    {
        if !journals.exists(&meta.run_id, host) {
            continue;
        }
        let c = journals.read(&meta.run_id, host).ok()?;
        if !c.damaged.is_empty() || c.entries.iter().any(|e| !e.undone) {
            return None;
        }
        undone += c.entries.len();
    }
    // Records a step itself marked as changing nothing are undone too: only a run
    // that a rollback replayed (or that rolled itself back) counts.
    let replayed = meta.rolled_back_at.is_some() || meta.outcome == Outcome::RolledBack.into();
    (undone > 0 && replayed).then(|| {
        meta.rolled_back_at
            .clone()
            .or_else(|| meta.ended.clone())
            .unwrap_or_else(|| "an unknown time".into())
    })
}
