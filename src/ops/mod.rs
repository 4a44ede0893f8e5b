//! Operations: idempotent steps that read facts from a [`Target`], decide whether a
//! change is needed, write an undo record ahead of the change, then make it.
//!
//! There is one implementation per operation. A dry-run runs it against an
//! [`Overlay`](crate::transport::overlay::Overlay) with no journal: the same code decides
//! what changes, so the plan cannot drift from the run.

pub mod archive;
pub mod catalog;
pub mod check;
pub mod cron;
pub mod download;
pub mod edit;
pub mod extract;
pub mod fs;
pub mod pkg;
pub mod sandbox;
pub mod service;
pub mod sh;
pub mod ssh_key;
pub mod structured;
pub mod unit;
pub mod user;
pub mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::cancel::CancelToken;
use crate::journal::undo::{self, Fingerprint, Undo};
use crate::journal::JournalWrite;
use crate::transport::{Meta, Target, TargetError};

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Target(#[from] TargetError),
    #[error("{0}")]
    Invalid(String),
    #[error("journal: {0}")]
    Journal(String),
    /// The run was cancelled or ran out of time while the step waited.
    #[error("{0}")]
    Stopped(#[from] crate::cancel::Stop),
}

pub type OpResult<T> = Result<T, OpError>;

/// The diff shown for content that contains a secret.
pub const SECRET_DIFF: &str = "(content hidden: it contains a secret)\n";

/// What one step did (or, in a dry-run, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StepReport {
    pub op: &'static str,
    /// What the step acts on, for people: a path, `from -> to`, a command.
    pub subject: String,
    /// Every path the step creates, modifies or removes.
    pub paths: Vec<String>,
    pub changed: bool,
    /// Dry-run only: an opaque command whose effect cannot be known without running it.
    pub unknown: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// False when the step left a barrier: rollback cannot undo it.
    pub reversible: bool,
    /// Dry-run only: a `sh` step of a recipe with a declared write scope that the
    /// recipe did not mark `in_scope: true`; a real run refuses it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outside_scope: bool,
}

impl StepReport {
    pub fn unchanged(op: &'static str, subject: impl Into<String>) -> Self {
        StepReport {
            op,
            subject: subject.into(),
            reversible: true,
            ..Default::default()
        }
    }

    pub fn changed(op: &'static str, subject: impl Into<String>, paths: Vec<String>) -> Self {
        StepReport {
            op,
            subject: subject.into(),
            paths,
            changed: true,
            reversible: true,
            ..Default::default()
        }
    }
}

/// What an operation needs besides its arguments: the target, and (in a real run) the
/// journal that makes its change undoable.
///
/// A `Ctx` is cheap to derive: [`Ctx::as_root`] gives a view whose target works
/// through `sudo` and whose journal records say so, sharing the step counter, backups
/// and journal with the plain one (`become(|| …)` and `#{become: true}` in recipes).
pub struct Ctx {
    pub target: Arc<dyn Target>,
    shared: Arc<Shared>,
    become_: bool,
    /// The run's cancellation and deadline, for every wait of a step.
    cancel: CancelToken,
}

/// What every view of one host's run shares.
struct Shared {
    /// The target as logged in (not through sudo): backups go to its own directory.
    login: Arc<dyn Target>,
    journal: Option<Arc<dyn JournalWrite>>,
    /// Where old contents are saved, on the target itself so rollback needs no transfer.
    backup_dir: String,
    backup_dir_ready: AtomicBool,
    /// A stash (move into the backup dir) failed once: copy from then on.
    stash_failed: AtomicBool,
    backups: AtomicU64,
    step: AtomicU64,
    /// The last record appended, whose change is being made: what it left is recorded
    /// once the change is done (at the next record or the end of the step).
    pending: Mutex<Option<Pending>>,
    /// Where relative paths start on this target, asked once when one shows up.
    base: OnceLock<String>,
    /// Where the backup directory really leads: tend's own directory, made by this
    /// run, so asked once rather than for every file a removal stashes there.
    backup_dir_real: OnceLock<String>,
    /// The step and seq of the last record appended (see [`Ctx::unrecord_step`]).
    last_record: Mutex<Option<(u64, u64)>>,
    /// Dry-run only: state outside the file system (a package, a service, a user) as
    /// earlier steps of the plan left it, which the overlay cannot hold. See
    /// [`Ctx::planned`].
    planned: Mutex<std::collections::BTreeMap<String, String>>,
}

/// A record just journaled: its sequence number, the record as written (paths made
/// absolute), and the view its change is made through.
type Appended = (u64, Undo, Arc<dyn Target>);

struct Pending {
    seq: u64,
    path: String,
    /// The view the change was made through (root's under become): it may be the
    /// only one that can read what the change left.
    target: Arc<dyn Target>,
    /// Hash of the bytes the change wrote at `path`, when the operation knows them.
    wrote: Option<String>,
}

impl Ctx {
    fn new(
        target: Arc<dyn Target>,
        journal: Option<Arc<dyn JournalWrite>>,
        backup_dir: String,
    ) -> Self {
        Ctx {
            shared: Arc::new(Shared {
                login: target.clone(),
                backup_dir_ready: AtomicBool::new(journal.is_none()),
                stash_failed: AtomicBool::new(false),
                journal,
                backup_dir,
                backups: AtomicU64::new(0),
                step: AtomicU64::new(0),
                pending: Mutex::new(None),
                base: OnceLock::new(),
                backup_dir_real: OnceLock::new(),
                last_record: Mutex::new(None),
                planned: Mutex::new(Default::default()),
            }),
            target,
            become_: false,
            cancel: CancelToken::default(),
        }
    }

    /// Steps of this context stop when `cancel` says so (see [`crate::cancel`]).
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }

    pub fn cancel(&self) -> &CancelToken {
        &self.cancel
    }

    /// A real run: changes are journaled before they are made.
    pub fn apply(
        target: Arc<dyn Target>,
        journal: Arc<dyn JournalWrite>,
        backup_dir: String,
    ) -> Self {
        Ctx::new(target, Some(journal), backup_dir)
    }

    /// A dry-run: `target` should be an overlay; nothing is journaled.
    pub fn plan(target: Arc<dyn Target>) -> Self {
        Ctx::new(target, None, String::new())
    }

    /// The same run as root through `sudo -n`: its undo records are marked so that a
    /// rollback reverts them as root too.
    pub fn as_root(&self) -> OpResult<Ctx> {
        let target = if self.become_ {
            self.target.clone()
        } else {
            self.target.elevated()?
        };
        Ok(Ctx {
            target,
            shared: self.shared.clone(),
            become_: true,
            cancel: self.cancel.clone(),
        })
    }

    pub fn is_root_view(&self) -> bool {
        self.become_
    }

    pub fn dry_run(&self) -> bool {
        self.shared.journal.is_none()
    }

    /// Dry-run: what an earlier step of this plan left `key` as (`"pkg:nginx"`,
    /// `"service:nginx"`, `"user:backup"`), when it planned a change to state that
    /// lives outside files. A later step reads this before asking the machine, so the
    /// plan of `pkg::installed` then `service::running` is what the run will do.
    /// Always `None` in a real run, which asks the machine.
    pub fn planned(&self, key: &str) -> Option<String> {
        if !self.dry_run() {
            return None;
        }
        self.shared
            .planned
            .lock()
            .expect("planned lock")
            .get(key)
            .cloned()
    }

    /// Dry-run: record what a planned step would leave `key` as (see [`Ctx::planned`]).
    /// Does nothing in a real run.
    pub fn set_planned(&self, key: &str, value: impl Into<String>) {
        if self.dry_run() {
            self.shared
                .planned
                .lock()
                .expect("planned lock")
                .insert(key.to_string(), value.into());
        }
    }

    /// Dry-run: every key under `prefix` an earlier step planned (see
    /// [`Ctx::planned`]), for a fact that lists them all (`pkg::list()`).
    pub fn planned_under(&self, prefix: &str) -> Vec<(String, String)> {
        if !self.dry_run() {
            return Vec::new();
        }
        let planned = self.shared.planned.lock().expect("planned lock");
        planned
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Save `data` (what only root may read, like a shadow line) to a new file of the
    /// run's backup directory, mode 0600, for a rollback to read back; its path and
    /// SHA-256. Nothing is written in a dry-run.
    pub fn save_backup(&self, name: &str, data: &[u8]) -> OpResult<(String, String)> {
        if self.dry_run() {
            return Ok((String::new(), undo::sha256(data)));
        }
        let dest = self.backup_slot(name)?;
        self.target.write(&dest, data, 0o600)?;
        Ok((dest, undo::sha256(data)))
    }

    pub fn host(&self) -> &str {
        &self.target.info().name
    }

    /// Start a new step; journal entries name the step they belong to.
    pub fn begin_step(&self) -> u64 {
        self.shared.step.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The step's changes are all made: later rollbacks know it completed.
    pub fn finish_step(&self) {
        self.record_left();
        if let Some(j) = &self.shared.journal {
            let _ = j.mark_done();
        }
    }

    /// Journal what the pending record's change left at its path.
    fn record_left(&self) {
        let (Some(j), Some(p)) = (
            &self.shared.journal,
            self.shared.pending.lock().expect("pending lock").take(),
        ) else {
            return;
        };
        match Fingerprint::of(p.target.as_ref(), &p.path, p.wrote) {
            Ok(f) => {
                let _ = j.record_left(p.seq, f.as_ref());
            }
            // Without it, rollback of this record cannot tell drift: it says so.
            Err(e) => tracing::debug!(host = %self.host(), "cannot record {}: {e}", p.path),
        }
    }

    /// The change of the last record wrote `data` at `path`: what it left is known
    /// without reading it back from the host.
    pub fn wrote(&self, path: &str, data: &[u8]) {
        if let Some(p) = self.shared.pending.lock().expect("pending lock").as_mut() {
            if p.path == path {
                p.wrote = Some(undo::sha256(data));
            }
        }
    }

    /// Where the directory of `path` really leads (see [`Ctx::will_as`]).
    fn resolve_parent(&self, t: &dyn Target, path: &str) -> OpResult<String> {
        let dir = crate::transport::parent(path);
        let shared = &self.shared;
        if dir != shared.backup_dir {
            return Ok(t.resolve_dir(dir)?);
        }
        if let Some(real) = shared.backup_dir_real.get() {
            return Ok(real.clone());
        }
        let real = t.resolve_dir(dir)?;
        Ok(shared.backup_dir_real.get_or_init(|| real).clone())
    }

    /// A relative path as the target reads it now, absolute.
    fn absolute(&self, undo: &mut Undo) -> OpResult<()> {
        if undo.paths().iter().all(|p| p.starts_with('/')) {
            return Ok(());
        }
        let base = match self.shared.base.get() {
            Some(b) => b.clone(),
            None => {
                let b = self.shared.login.working_dir()?;
                self.shared.base.get_or_init(|| b).clone()
            }
        };
        undo.absolutize(&base);
        Ok(())
    }

    pub fn current_step(&self) -> u64 {
        self.shared.step.load(Ordering::SeqCst)
    }

    /// The step turned out to change nothing (a command whose `changed_when` said
    /// so): its record is marked undone, so a rollback neither runs its undo nor
    /// counts it as a change it cannot undo.
    pub fn unrecord_step(&self) -> OpResult<()> {
        let (Some(j), Some((step, seq))) = (
            &self.shared.journal,
            *self.shared.last_record.lock().expect("last record"),
        ) else {
            return Ok(());
        };
        if step != self.current_step() {
            return Ok(());
        }
        j.mark_undone(seq)
            .map_err(|e| OpError::Journal(e.to_string()))
    }

    /// Write-ahead: make `undo` durable before the change it reverses is made.
    pub fn will(&self, op: &str, undo: Undo) -> OpResult<()> {
        self.will_as(op, undo, self.become_)
    }

    /// [`Ctx::will`] for a change made as root (`become_`) whatever this view is: a
    /// `sh(…, #{become: true})` step whose undo command must run through sudo too.
    ///
    /// With the record go the directories its paths really lead to now (symlinks
    /// resolved): a rollback refuses to revert through a symlink swapped in since.
    pub fn will_as(&self, op: &str, undo: Undo, become_: bool) -> OpResult<()> {
        let Some((seq, undo, target)) = self.append(op, undo, become_)? else {
            return Ok(());
        };
        if let Some(path) = undo.subject() {
            *self.shared.pending.lock().expect("pending lock") = Some(Pending {
                seq,
                path: path.to_string(),
                target,
                wrote: None,
            });
        }
        Ok(())
    }

    /// Write `undo` to the journal (none in a dry-run): its sequence number, the
    /// record as written (paths absolute), and the view its change is made through.
    fn append(&self, op: &str, mut undo: Undo, become_: bool) -> OpResult<Option<Appended>> {
        let Some(j) = &self.shared.journal else {
            return Ok(None);
        };
        self.record_left();
        self.absolute(&mut undo)?;
        let target = if become_ && !self.become_ && !undo.paths().is_empty() {
            self.target.elevated()?
        } else {
            self.target.clone()
        };
        let dirs = undo
            .paths()
            .iter()
            .map(|p| self.resolve_parent(target.as_ref(), p))
            .collect::<Result<Vec<_>, _>>()?;
        let seq = j
            .append(self.current_step(), op, &undo, become_, &dirs)
            .map_err(|e| OpError::Journal(e.to_string()))?;
        *self.shared.last_record.lock().expect("last record") = Some((self.current_step(), seq));
        Ok(Some((seq, undo, target)))
    }

    /// Save the current contents of the regular file `path` (described by `meta`)
    /// for rollback; the record that restores them, with the copy's hash.
    /// `old`: those contents, when the operation has read them (spares a hash on the host).
    pub fn restore_undo(&self, path: &str, meta: Meta, old: Option<&[u8]>) -> OpResult<Undo> {
        let (backup, hash) = if self.dry_run() {
            (String::new(), None)
        } else {
            let dest = self.backup_slot(path)?;
            // Under become the copy is made by root (it may be the only one who can
            // read the file); it lands root-owned in tend's directory, root-only.
            self.target.copy_file(path, &dest)?;
            let hash = match old {
                Some(bytes) => undo::sha256(bytes),
                None => self.target.hash(&dest)?,
            };
            (dest, Some(hash))
        };
        Ok(Undo::Restore {
            path: path.into(),
            backup,
            meta,
            hash,
        })
    }

    /// Remove a regular file by moving it into the backup directory, journaled as a
    /// rename to undo: one rename instead of a copy and a delete, and the file comes
    /// back as it was (same inode, owner, times). False when that cannot be done (a
    /// dry-run, or the backup directory is on another file system): then copy.
    pub fn stash(&self, op: &str, path: &str) -> OpResult<bool> {
        let shared = &self.shared;
        if self.dry_run() || shared.stash_failed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let dest = self.backup_slot(path)?;
        self.will(
            op,
            Undo::Rename {
                from: path.into(),
                to: dest.clone(),
            },
        )?;
        match self.target.rename(path, &dest) {
            Ok(()) => Ok(true),
            Err(e) => {
                // Most likely another file system (EXDEV). The record above reverts
                // to nothing: its `from` still exists.
                tracing::debug!(host = %self.host(), "stash of {path} failed, copying: {e}");
                shared.stash_failed.store(true, Ordering::SeqCst);
                Ok(false)
            }
        }
    }

    /// Write-ahead, for an operation that records many paths before one change (see
    /// [`watch`]): the record is not the pending one, so what the change left is
    /// recorded by the operation itself with [`Ctx::left`]. Its sequence number;
    /// `None` in a dry-run.
    pub fn will_unpinned(&self, op: &str, undo: Undo, become_: bool) -> OpResult<Option<u64>> {
        Ok(self.append(op, undo, become_)?.map(|(seq, _, _)| seq))
    }

    /// Journal what the change of record `seq` left at its path.
    pub fn left(&self, seq: u64, state: Option<&Fingerprint>) -> OpResult<()> {
        if let Some(j) = &self.shared.journal {
            j.record_left(seq, state)
                .map_err(|e| OpError::Journal(e.to_string()))?;
        }
        Ok(())
    }

    /// Record `seq` turned out to need no revert (its path did not change): a
    /// rollback passes over it.
    pub fn drop_record(&self, seq: u64) -> OpResult<()> {
        if let Some(j) = &self.shared.journal {
            j.mark_undone(seq)
                .map_err(|e| OpError::Journal(e.to_string()))?;
        }
        Ok(())
    }

    /// A path in the run's backup directory that freeing the backups after a
    /// complete rollback keeps (`drift-…`, as `--force` saves are kept): for things
    /// a rollback moved aside rather than delete.
    pub fn kept_path(&self, name: &str) -> OpResult<String> {
        let slot = self.backup_slot(name)?;
        let (dir, file) = slot.rsplit_once('/').unwrap_or(("", &slot));
        Ok(format!("{dir}/drift-{file}"))
    }

    /// A new, unused path in the run's backup directory for a copy of `path`.
    fn backup_slot(&self, path: &str) -> OpResult<String> {
        let shared = &self.shared;
        if !shared.backup_dir_ready.load(Ordering::SeqCst) {
            // As the login user even under become: the directory is tend's own. Its
            // parent usually exists (the run's directory on the host): try that first.
            let login = shared.login.as_ref();
            if login.mkdir(&shared.backup_dir, 0o700).is_err() {
                mkdir_p(login, &shared.backup_dir, 0o700)?;
            }
            shared.backup_dir_ready.store(true, Ordering::SeqCst);
        }
        let n = shared.backups.fetch_add(1, Ordering::SeqCst) + 1;
        let name = path.rsplit('/').next().unwrap_or("file");
        Ok(crate::transport::join(
            &shared.backup_dir,
            &format!("{n:06}-{name}"),
        ))
    }
}

/// Create `path` and any missing parents; returns the directories it created,
/// outermost first.
pub fn mkdir_p(target: &dyn Target, path: &str, mode: u32) -> OpResult<Vec<String>> {
    let mut missing = Vec::new();
    let mut p = path.trim_end_matches('/').to_string();
    loop {
        match target.stat(&p)? {
            Some(m) if m.kind == crate::transport::Kind::Dir => break,
            Some(_) => {
                return Err(OpError::Invalid(format!(
                    "{p} exists and is not a directory"
                )))
            }
            None => {
                missing.push(p.clone());
                let parent = crate::transport::parent(&p).to_string();
                if parent == p || parent == "." {
                    break;
                }
                p = parent;
            }
        }
    }
    missing.reverse();
    for dir in &missing {
        if let Err(e) = target.mkdir(dir, mode) {
            // Made meanwhile by someone else, as `mkdir -p` allows: hosts that share a
            // home create the same parents of their backup directories at once.
            match target.stat(dir)? {
                Some(m) if m.kind == crate::transport::Kind::Dir => {}
                _ => return Err(e.into()),
            }
        }
    }
    Ok(missing)
}

/// A unified diff between two versions of a file, for people to read; capped so a
/// rewritten log does not flood the terminal.
pub fn unified_diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> String {
    const MAX_LINES: usize = 400;
    let (Ok(old_text), Ok(new_text)) = (
        std::str::from_utf8(old.unwrap_or_default()),
        std::str::from_utf8(new),
    ) else {
        return format!(
            "Binary files differ ({} -> {} bytes)\n",
            old.map(|o| o.len()).unwrap_or(0),
            new.len()
        );
    };
    let diff = similar::TextDiff::from_lines(old_text, new_text);
    let sep = if path.starts_with('/') { "" } else { "/" };
    let from = if old.is_some() {
        format!("a{sep}{path}")
    } else {
        "/dev/null".to_string()
    };
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&from, &format!("b{sep}{path}"))
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= MAX_LINES {
        return text;
    }
    let mut capped = lines[..MAX_LINES].join("\n");
    capped.push_str(&format!(
        "\n… ({} more diff lines)\n",
        lines.len() - MAX_LINES
    ));
    capped
}
