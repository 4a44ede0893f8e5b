//! Retention: freeing what finished runs hold. A run's backups (the old contents its
//! rollback restores) are kept while it runs and then for `[retention] backups`; its
//! record and journals for `[retention] runs`. [`prune`] applies that here and on the
//! hosts the runs recorded (`tend prune`, later the daemon); [`free_backups`] is what
//! a successful run (`backups = "0"`) and a complete rollback use at once.
//!
//! Only tend's own directories are ever deleted: a run's folder in the state dir, and
//! `…/runs/RUN/HOST/backup` in tend's directory on a host, both computed here from the
//! run id and host name, never taken from a file a run wrote. A running run is never
//! pruned, and each removal is written to the audit log first (none if it cannot be).

use std::path::Path;
use std::time::Duration;

use crate::app::{Actor, Retention};
use crate::audit::AuditLog;
use crate::error::{Error, Result};
use crate::reach::HostSpec;
use crate::state::{Freed, RunMeta, StateDir};
use crate::transport::{Kind, Target, TargetError};

/// What `tend prune` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PruneRequest {
    /// List what would be removed; remove nothing.
    pub dry_run: bool,
    /// For an encrypted SSH key (run.json never holds it).
    pub passphrase: Option<crate::secret::Secret>,
}

/// One removal (made, or that would be with `dry_run`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PruneAction {
    pub run_id: String,
    /// `backups` (a host's backups of the run) or `run` (its record and journals).
    pub kind: String,
    /// The host, for `backups`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What is removed (on the host, for a remote host's backups).
    pub path: String,
    pub bytes: u64,
    /// Which retention setting it follows: `backups = "7d"`, `runs = "90d"`.
    pub reason: String,
}

/// A run (or one host of it) left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PruneSkip {
    pub run_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub actions: Vec<PruneAction>,
    pub skipped: Vec<PruneSkip>,
}

impl PruneReport {
    pub fn bytes(&self) -> u64 {
        self.actions.iter().map(|a| a.bytes).sum()
    }
}

fn human_duration(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// How long ago run `meta` ended (started, if it never recorded an end); `None` when
/// neither can be read (a damaged record): then its folder's age.
fn age(state: &StateDir, meta: &RunMeta) -> Option<Duration> {
    let stamp = meta.ended.as_deref().unwrap_or(&meta.started);
    let when = match chrono::DateTime::parse_from_rfc3339(stamp) {
        Ok(t) => std::time::SystemTime::from(t),
        Err(_) => std::fs::symlink_metadata(state.run_dir(&meta.run_id))
            .and_then(|m| m.modified())
            .ok()?,
    };
    Some(
        std::time::SystemTime::now()
            .duration_since(when)
            .unwrap_or_default(),
    )
}

/// Apply `retention` to every finished run of `state` and the hosts they name.
pub fn prune(
    state: &StateDir,
    retention: &Retention,
    actor: &Actor,
    req: &PruneRequest,
) -> Result<PruneReport> {
    let audit = AuditLog::new(state.root());
    let mut report = PruneReport::default();
    for mut meta in state.list_runs()? {
        let run_id = meta.run_id.clone();
        let skip = |report: &mut PruneReport, host: Option<&str>, reason: String| {
            report.skipped.push(PruneSkip {
                run_id: run_id.clone(),
                host: host.map(str::to_string),
                reason,
            })
        };
        // A folder tend did not name is not tend's to delete.
        if crate::state::check_run_id(&run_id).is_err() {
            skip(&mut report, None, "not a run id; left alone".into());
            continue;
        }
        if meta.effective_outcome() == crate::outcome::RunState::Running {
            skip(
                &mut report,
                None,
                format!("still running ({})", meta.holder()),
            );
            continue;
        }
        let Some(age) = age(state, &meta) else {
            skip(&mut report, None, "its age cannot be told".into());
            continue;
        };
        let expire_run = age >= retention.runs();
        if !expire_run && age < retention.backups() {
            continue;
        }
        let reason = if expire_run {
            format!("runs = \"{}\"", human_duration(retention.runs()))
        } else {
            format!("backups = \"{}\"", human_duration(retention.backups()))
        };
        let run_dir = state.run_dir(&run_id);
        let mut local_backups = 0;
        let mut pending = false;
        for host in meta.hosts.clone() {
            if meta.backups_freed.contains_key(&host) {
                continue;
            }
            // Backups are made only after a host's journal is: no journal, no backups
            // (and no need to reach a host that may be long gone).
            if !state.journal_path(&run_id, &host).exists() {
                if !req.dry_run {
                    meta.backups_freed.insert(host.clone(), Freed::now("prune"));
                }
                continue;
            }
            let spec = match meta.targets.iter().find(|t| t.name == host) {
                Some(s) => s.clone().with_passphrase(req.passphrase.as_ref()),
                None if meta.is_damaged() => {
                    // Only journals of this machine are in a damaged run's folder.
                    skip(
                        &mut report,
                        Some(&host),
                        "run.json is damaged: how to reach this host is not known".into(),
                    );
                    pending = true;
                    continue;
                }
                None => HostSpec::local(),
            };
            let (target, dir) = match host_backups(state, &run_id, &spec) {
                Ok(x) => x,
                Err(e) => {
                    skip(&mut report, Some(&host), format!("not reached: {e}"));
                    pending = true;
                    continue;
                }
            };
            let bytes = match target.stat(&dir) {
                Ok(None) => None,
                Ok(Some(_)) => Some(tree_bytes(target.as_ref(), &dir).unwrap_or(0)),
                Err(e) => {
                    skip(&mut report, Some(&host), format!("{dir}: {e}"));
                    pending = true;
                    continue;
                }
            };
            if spec.is_local() {
                local_backups += bytes.unwrap_or(0);
            }
            if let Some(bytes) = bytes {
                let action = PruneAction {
                    run_id: run_id.clone(),
                    kind: "backups".into(),
                    host: Some(host.clone()),
                    path: dir.clone(),
                    bytes,
                    reason: reason.clone(),
                };
                if !req.dry_run {
                    record(&audit, actor, &action)?;
                    if let Err(e) = free_backups(target.as_ref(), &dir, false) {
                        skip(&mut report, Some(&host), format!("{dir}: {e}"));
                        pending = true;
                        continue;
                    }
                }
                report.actions.push(action);
            }
            if !req.dry_run {
                meta.backups_freed.insert(host.clone(), Freed::now("prune"));
            }
        }
        if !req.dry_run && !expire_run {
            state.write_meta(&meta)?;
        }
        if !expire_run {
            continue;
        }
        if pending {
            skip(
                &mut report,
                None,
                "record kept until every host's backups are freed".into(),
            );
            if !req.dry_run {
                state.write_meta(&meta)?;
            }
            continue;
        }
        let bytes =
            local_tree_bytes(&run_dir).saturating_sub(if req.dry_run { local_backups } else { 0 });
        let action = PruneAction {
            run_id: run_id.clone(),
            kind: "run".into(),
            host: None,
            path: run_dir.display().to_string(),
            bytes,
            reason,
        };
        if !req.dry_run {
            record(&audit, actor, &action)?;
            std::fs::remove_dir_all(&run_dir)
                .map_err(|e| Error::io(format!("cannot remove {}", run_dir.display()), e))?;
        }
        report.actions.push(action);
    }
    Ok(report)
}

/// The audit log hears of a removal before it is made: none it cannot record.
fn record(audit: &AuditLog, actor: &Actor, a: &PruneAction) -> Result<()> {
    audit.append(serde_json::json!({
        "event": "prune",
        "run_id": a.run_id,
        "kind": a.kind,
        "host": a.host,
        "path": a.path,
        "bytes": a.bytes,
        "reason": a.reason,
        "user": actor.user,
    }))?;
    Ok(())
}

/// Host `spec` of run `run_id`, reached, and where its backups of the run are.
fn host_backups(
    state: &StateDir,
    run_id: &str,
    spec: &HostSpec,
) -> std::result::Result<(std::sync::Arc<dyn Target>, String), TargetError> {
    let reached = spec.connect()?;
    let dir = match reached.remote_backup_dir(run_id, &spec.name)? {
        Some(d) => d,
        None => local_backup_dir(state, run_id, &spec.name),
    };
    Ok((reached.target, dir))
}

/// A local host's backups of a run, in the state dir.
pub(crate) fn local_backup_dir(state: &StateDir, run_id: &str, host: &str) -> String {
    state
        .journal_path(run_id, host)
        .with_file_name("backup")
        .display()
        .to_string()
}

/// Delete the files of backup directory `dir` on `t`, then the directory and its
/// emptied parents (`runs/RUN/HOST`, `runs/RUN` on a host). `keep_drift`: keep what a
/// `rollback --force` saved there (`drift-…`), which the person may still want.
/// Refuses any directory that is not shaped like one tend made; returns bytes freed.
pub(crate) fn free_backups(
    t: &dyn Target,
    dir: &str,
    keep_drift: bool,
) -> std::result::Result<u64, TargetError> {
    if !dir.starts_with('/') || !dir.ends_with("/backup") || !dir.contains("/runs/") {
        return Err(TargetError::path(
            &t.info().name,
            dir,
            "not a backup directory of tend; not freed",
        ));
    }
    match t.stat(dir)? {
        None => return Ok(0),
        Some(m) if m.kind == Kind::Dir => {}
        Some(_) => {
            return Err(TargetError::path(
                &t.info().name,
                dir,
                "not a directory (a symlink?); not freed",
            ))
        }
    }
    let mut freed: u64 = 0;
    for name in t.list_dir(dir)? {
        if keep_drift && name.starts_with("drift-") {
            continue;
        }
        let path = crate::transport::join(dir, &name);
        // Backups are plain files; anything else was not put there by tend.
        if let Some(m) = t.stat(&path)? {
            if matches!(m.kind, Kind::File | Kind::Symlink) {
                t.remove_file(&path)?;
                freed = freed.saturating_add(m.size);
            }
        }
    }
    // Not empty (a drift save kept): stays, with its parents.
    if t.remove_dir(dir).is_ok() {
        let host_dir = crate::transport::parent(dir);
        if t.remove_dir(host_dir).is_ok() {
            let _ = t.remove_dir(crate::transport::parent(host_dir));
        }
    }
    Ok(freed)
}

/// Free a successful host's backups at the end of its run (`backups = "0"`); a
/// failure only keeps them for `tend prune`.
pub(crate) fn free_now(t: &dyn Target, dir: &str) -> bool {
    match free_backups(t, dir, false) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("backups {dir} kept: {e}");
            false
        }
    }
}

/// Bytes of the files below `dir` on `t` (symlinks not followed).
fn tree_bytes(t: &dyn Target, dir: &str) -> std::result::Result<u64, TargetError> {
    let mut total = 0;
    for name in t.list_dir(dir)? {
        let path = crate::transport::join(dir, &name);
        match t.stat(&path)? {
            Some(m) if m.kind == Kind::Dir => total += tree_bytes(t, &path)?,
            Some(m) if m.kind == Kind::File => total += m.size,
            _ => {}
        }
    }
    Ok(total)
}

/// Bytes of the files below `dir` here (symlinks not followed).
pub(crate) fn local_tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => local_tree_bytes(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .fold(0, u64::saturating_add)
}

/// The space run `meta` still holds: its folder here (record, journals, this
/// machine's backups), and the backups it left on remote hosts, as its journals
/// recorded them (no host is asked), unless they were freed.
pub fn held_bytes(state: &StateDir, meta: &RunMeta) -> u64 {
    use crate::journal::undo::Undo;
    let mut total = local_tree_bytes(&state.run_dir(&meta.run_id));
    for spec in meta.targets.iter().filter(|t| !t.is_local()) {
        if meta.backups_freed.contains_key(&spec.name) {
            continue;
        }
        let Ok(contents) =
            crate::journal::Journal::read(&state.journal_path(&meta.run_id, &spec.name))
        else {
            continue;
        };
        let backups = contents.backups.unwrap_or_default();
        for e in &contents.entries {
            // Sizes come from a file anyone with the state dir may have edited.
            total = total.saturating_add(match &e.undo {
                Undo::Restore { meta, .. } => meta.size,
                // A removal moved into the backups, and not moved back by a rollback.
                Undo::Rename { to, .. } if !e.undone && super::inside(to, &backups) => e
                    .left
                    .as_ref()
                    .and_then(|l| l.as_ref())
                    .and_then(|f| f.size)
                    .unwrap_or(0),
                _ => 0,
            });
        }
    }
    total
}

/// `20.0 MB`, `512 B`: sizes for people (powers of 1000, as `df -H` and `du --si`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}
