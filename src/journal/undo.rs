//! Undo records: what an operation leaves in the journal before it changes anything,
//! and how each is reverted.
//!
//! Every revert is idempotent and tolerates the change never having happened: the
//! record is written *before* the change, so a run killed between the two leaves a
//! record whose change is absent, and a rollback must still succeed.

use crate::transport::{ExecRequest, Kind, Meta, Target, TargetError};

/// Why a record could not be reverted (or its state read).
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("{0}")]
    Target(#[from] TargetError),
    /// Reverting would be wrong: the path is not what the record expects.
    #[error("{0}")]
    Refused(String),
}

pub type UndoResult<T> = Result<T, UndoError>;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    /// `path` was a regular file; its bytes are saved at `backup` (on the target).
    Restore {
        path: String,
        backup: String,
        meta: Meta,
        /// SHA-256 of the backup when it was made: a backup altered since is refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hash: Option<String>,
    },
    /// `path` did not exist (file or symlink): remove whatever is there.
    Remove {
        path: String,
    },
    /// Directory `path` did not exist: remove it (it must be empty again by then).
    RemoveDir {
        path: String,
    },
    /// `path` was a symlink to `target`.
    Relink {
        path: String,
        target: String,
    },
    /// `path` was an empty-or-not directory with this mode and owner; recreate it.
    MakeDir {
        path: String,
        meta: Meta,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Chown {
        path: String,
        uid: u32,
        gid: u32,
    },
    /// `from` was renamed to `to`: rename it back.
    Rename {
        from: String,
        to: String,
    },
    /// A command the recipe gave as the undo of a `sh` step.
    Command {
        command: String,
    },
    /// A command declared that it may change what `patterns` cover (`sh(…,
    /// #{changes})`); these paths under `dir` existed before it ran. Reverting moves
    /// anything new there into `quarantine` (never deletes it). Retired once the
    /// command's exact creations are journaled; it acts only for a run that died
    /// while the command ran.
    SweepNew {
        dir: String,
        patterns: Vec<String>,
        existed: Vec<String>,
        quarantine: String,
    },
    /// Cannot be undone; rollback reports it and goes on with earlier steps.
    Barrier {
        what: String,
    },
    /// A service was started, stopped, enabled or disabled: put it back as it was
    /// (see [`crate::system::service::Change`]).
    Service(crate::system::service::Change),
    /// A crontab was written: restore the old text exactly, or remove it if there
    /// was none (see [`crate::system::crontab::Change`]).
    Crontab(crate::system::crontab::Change),
    /// Packages a `pkg::` step installed, moved or removed, as its simulation said:
    /// put back as they were ([`crate::pkgmgr::revert`]), each only if still as the
    /// step left it.
    Packages {
        manager: crate::pkgmgr::Manager,
        changes: Vec<crate::pkgmgr::Change>,
        /// The package manager options of the step (its sources, for a downgrade).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
    },
    /// A user or group a step created, changed or removed (see [`crate::account`]).
    Account {
        account: Box<crate::account::revert::AccountUndo>,
    },
}

/// What a step left at a path, recorded right after the change: before reverting,
/// rollback compares the path with it (equal or not: kind, size, mode, bytes, link
/// target), so a change somebody made since is never silently overwritten or deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    pub kind: Kind,
    /// Regular files only (a directory's size changes with its entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlinks: where the link points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// SHA-256 (hex) of bytes in memory, as [`Target::hash`] gives it of a file.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

impl Fingerprint {
    /// What `path` is now on `t`; `None` when it does not exist. `known`: the hash of
    /// the bytes just written there, which spares reading them back.
    pub fn of(
        t: &dyn Target,
        path: &str,
        known: Option<String>,
    ) -> UndoResult<Option<Fingerprint>> {
        let Some(m) = t.stat(path)? else {
            return Ok(None);
        };
        let mut f = Fingerprint {
            kind: m.kind,
            size: None,
            mode: m.mode,
            sha256: None,
            link: None,
        };
        match m.kind {
            Kind::File => {
                f.size = Some(m.size);
                f.sha256 = Some(match known {
                    Some(h) => h,
                    None => t.hash(path)?,
                });
            }
            Kind::Symlink => {
                f.link = Some(t.read_link(path)?);
                f.mode = 0; // meaningless for a link, and differs between systems
            }
            _ => {}
        }
        Ok(Some(f))
    }

    /// For people: `file of 12 bytes, mode 644`.
    pub fn describe(f: Option<&Fingerprint>) -> String {
        match f {
            None => "absent".into(),
            Some(f) => match f.kind {
                Kind::File => format!(
                    "a file of {} bytes, mode {:o}, sha256 {}",
                    f.size.unwrap_or(0),
                    f.mode,
                    f.sha256
                        .as_deref()
                        .map(|h| &h[..h.len().min(12)])
                        .unwrap_or("?")
                ),
                Kind::Symlink => format!("a symlink to {}", f.link.as_deref().unwrap_or("?")),
                k => format!("a {} with mode {:o}", k.as_str(), f.mode),
            },
        }
    }
}

/// What reverting one record came to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reverted {
    Done,
    /// Nothing to do: the change had not happened (run killed before it).
    NotNeeded,
    /// A barrier: reported, not undone.
    Impossible(String),
}

impl Undo {
    /// Every path reverting this record writes or removes.
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Undo::Restore { path, .. }
            | Undo::Remove { path }
            | Undo::RemoveDir { path }
            | Undo::Relink { path, .. }
            | Undo::MakeDir { path, .. }
            | Undo::Chmod { path, .. }
            | Undo::Chown { path, .. } => vec![path],
            Undo::Rename { from, to } => vec![from, to],
            Undo::SweepNew { dir, .. } => vec![dir],
            Undo::Command { .. }
            | Undo::Barrier { .. }
            | Undo::Packages { .. }
            | Undo::Account { .. }
            | Undo::Service(_)
            | Undo::Crontab(_) => Vec::new(),
        }
    }

    /// The path whose state after the change is recorded ([`Fingerprint`]): the one
    /// reverting overwrites or removes. Directories being made or removed need none
    /// (`rmdir` refuses a directory somebody filled; `mkdir` leaves an existing one).
    pub fn subject(&self) -> Option<&str> {
        match self {
            Undo::Restore { path, .. }
            | Undo::Remove { path }
            | Undo::Relink { path, .. }
            | Undo::Chmod { path, .. }
            | Undo::Chown { path, .. } => Some(path),
            Undo::Rename { to, .. } => Some(to),
            _ => None,
        }
    }

    /// Make every path absolute from `base`, so a rollback started anywhere (or on
    /// another day) acts on the files the run changed.
    pub fn absolutize(&mut self, base: &str) {
        let fix = |p: &mut String| {
            if !p.starts_with('/') {
                *p = crate::transport::path::absolute(base, p);
            }
        };
        match self {
            Undo::Restore { path, backup, .. } => {
                fix(path);
                fix(backup);
            }
            Undo::Remove { path }
            | Undo::RemoveDir { path }
            | Undo::Relink { path, .. }
            | Undo::MakeDir { path, .. }
            | Undo::Chmod { path, .. }
            | Undo::Chown { path, .. } => fix(path),
            Undo::Rename { from, to } => {
                fix(from);
                fix(to);
            }
            Undo::SweepNew { dir, .. } => fix(dir),
            Undo::Command { .. }
            | Undo::Barrier { .. }
            | Undo::Packages { .. }
            | Undo::Account { .. }
            | Undo::Service(_)
            | Undo::Crontab(_) => {}
        }
    }

    /// One line for people: what reverting this record does.
    pub fn describe(&self) -> String {
        match self {
            Undo::Restore { path, .. } => format!("restore {path}"),
            Undo::Remove { path } => format!("remove {path}"),
            Undo::RemoveDir { path } => format!("remove directory {path}"),
            Undo::Relink { path, target } => format!("relink {path} -> {target}"),
            Undo::MakeDir { path, .. } => format!("recreate directory {path}"),
            Undo::Chmod { path, mode } => format!("chmod {mode:o} {path}"),
            Undo::Chown { path, uid, gid } => format!("chown {uid}:{gid} {path}"),
            Undo::Rename { from, to } => format!("rename {to} back to {from}"),
            Undo::Command { command } => format!("run `{command}`"),
            Undo::SweepNew {
                dir, quarantine, ..
            } => {
                format!("move what a command created under {dir} into {quarantine}")
            }
            Undo::Barrier { what } => format!("cannot undo: {what}"),
            Undo::Service(c) => c.describe(),
            Undo::Crontab(c) => c.describe(),
            Undo::Packages { changes, .. } => {
                let back: Vec<String> = changes
                    .iter()
                    .map(|c| {
                        let v = |x: &Option<String>| x.clone().unwrap_or_else(|| "absent".into());
                        format!("{} {} -> {}", c.name, v(&c.after), v(&c.before))
                    })
                    .collect();
                format!("put packages back: {}", back.join(", "))
            }
            Undo::Account { account } => account.describe(),
        }
    }

    /// Revert on `t`. `become_`: the change was made as root; `t` is then already the
    /// sudo view of the host, except for an undo command, which asks sudo itself (so
    /// that it works on the local machine too, where only commands go through sudo).
    pub fn revert(&self, t: &dyn Target, become_: bool) -> UndoResult<Reverted> {
        match self {
            Undo::Restore {
                path,
                backup,
                meta,
                hash,
            } => {
                if t.stat(backup)?.is_none() {
                    // The backup is made before the record is written, so a missing
                    // backup means the state dir was tampered with or cleaned.
                    return Err(UndoError::Refused(format!(
                        "backup {backup} of {path} is missing; cannot restore it"
                    )));
                }
                if let Some(m) = t.stat(path)? {
                    if m.kind == Kind::Dir {
                        return Err(UndoError::Refused(format!(
                            "{path} is now a directory; not replacing it with the saved file"
                        )));
                    }
                }
                if let Some(want) = hash {
                    let have = t.hash(backup)?;
                    if &have != want {
                        return Err(UndoError::Refused(format!(
                            "backup {backup} of {path} was altered since the run saved it \
                             (sha256 {} now, {} then); not restoring it",
                            &have[..12],
                            &want[..want.len().min(12)]
                        )));
                    }
                }
                t.copy_file(backup, path)?;
                // Owner first: chown clears the set-id bits the mode may carry.
                let _ = t.chown(path, meta.uid, meta.gid); // only root may; best effort
                t.chmod(path, meta.mode)?;
                t.set_mtime(path, meta.mtime)?;
                Ok(Reverted::Done)
            }
            Undo::Remove { path } => match t.stat(path)? {
                None => Ok(Reverted::NotNeeded),
                Some(m) if m.kind == Kind::Dir => Err(UndoError::Refused(format!(
                    "{path} is a directory now; expected a file"
                ))),
                Some(_) => {
                    t.remove_file(path)?;
                    Ok(Reverted::Done)
                }
            },
            Undo::RemoveDir { path } => match t.stat(path)? {
                None => Ok(Reverted::NotNeeded),
                Some(_) => {
                    t.remove_dir(path)?;
                    Ok(Reverted::Done)
                }
            },
            Undo::Relink { path, target } => {
                match t.stat(path)? {
                    Some(m) if m.kind == Kind::Symlink => {
                        if t.read_link(path)? == *target {
                            return Ok(Reverted::NotNeeded);
                        }
                        t.remove_file(path)?;
                    }
                    Some(m) if m.kind == Kind::Dir => {
                        return Err(UndoError::Refused(format!(
                            "{path} is a directory now; expected a symlink"
                        )))
                    }
                    Some(_) => t.remove_file(path)?,
                    None => {}
                }
                t.symlink(target, path)?;
                Ok(Reverted::Done)
            }
            Undo::MakeDir { path, meta } => {
                if t.stat(path)?.is_some() {
                    return Ok(Reverted::NotNeeded);
                }
                t.mkdir(path, meta.mode)?;
                let _ = t.chown(path, meta.uid, meta.gid);
                Ok(Reverted::Done)
            }
            Undo::Chmod { path, mode } => {
                t.chmod(path, *mode)?;
                Ok(Reverted::Done)
            }
            Undo::Chown { path, uid, gid } => {
                t.chown(path, *uid, *gid)?;
                Ok(Reverted::Done)
            }
            Undo::Rename { from, to } => {
                // Later steps are undone by now, so a `from` that exists was never
                // renamed (the rename failed, or the run died before it): moving `to`
                // back would clobber it with what `to` held before.
                if t.stat(from)?.is_some() {
                    return Ok(Reverted::NotNeeded);
                }
                t.rename(to, from)?;
                Ok(Reverted::Done)
            }
            Undo::Command { command } => {
                let mut req = ExecRequest::new(command.clone());
                req.become_ = become_;
                let out = t.exec(&req)?;
                if out.code != 0 {
                    return Err(UndoError::Refused(format!(
                        "undo command `{command}` exited with {}: {}",
                        out.code,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                Ok(Reverted::Done)
            }
            Undo::SweepNew {
                dir,
                patterns,
                existed,
                quarantine,
            } => {
                let moved = super::sweep::sweep(t, dir, patterns, existed, quarantine)?;
                if moved.is_empty() {
                    Ok(Reverted::NotNeeded)
                } else {
                    tracing::warn!(
                        "moved {} new path(s) into {quarantine}: {}",
                        moved.len(),
                        moved.join(", ")
                    );
                    Ok(Reverted::Done)
                }
            }
            Undo::Barrier { what } => Ok(Reverted::Impossible(what.clone())),
            Undo::Service(c) => system_reverted(c.revert(t, &runner(become_))),
            Undo::Crontab(c) => system_reverted(c.revert(t, &runner(become_))),
            Undo::Packages {
                manager,
                changes,
                options,
            } => match crate::pkgmgr::revert(t, *manager, options, changes) {
                Ok(crate::pkgmgr::Reverted::Done) => Ok(Reverted::Done),
                Ok(crate::pkgmgr::Reverted::NotNeeded) => Ok(Reverted::NotNeeded),
                Ok(crate::pkgmgr::Reverted::Partly(what)) => Ok(Reverted::Impossible(what)),
                Err(crate::pkgmgr::RevertError::Target(e)) => Err(e.into()),
                Err(e) => Err(UndoError::Refused(e.to_string())),
            },
            Undo::Account { account } => match account.revert(t) {
                Ok(crate::account::revert::Outcome::Done) => Ok(Reverted::Done),
                Ok(crate::account::revert::Outcome::NotNeeded) => Ok(Reverted::NotNeeded),
                Err(e) => Err(UndoError::Refused(e.to_string())),
            },
        }
    }
}

fn runner(become_: bool) -> crate::system::Runner {
    crate::system::Runner {
        become_,
        cancel: None,
    }
}

/// A revert of state outside files (a service, a crontab), as a [`Reverted`].
fn system_reverted(r: crate::system::StateResult<bool>) -> UndoResult<Reverted> {
    use crate::system::StateError;
    match r {
        Ok(true) => Ok(Reverted::Done),
        Ok(false) => Ok(Reverted::NotNeeded),
        Err(StateError::Target(e)) => Err(UndoError::Target(e)),
        Err(e) => Err(UndoError::Refused(e.to_string())),
    }
}
