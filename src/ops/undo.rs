//! Undo records: what an operation leaves in the journal before it changes anything,
//! and how each is reverted.
//!
//! Every revert is idempotent and tolerates the change never having happened: the
//! record is written *before* the change, so a run killed between the two leaves a
//! record whose change is absent, and a rollback must still succeed.

use crate::target::{ExecRequest, Kind, Meta, Target};

use super::{OpError, OpResult};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    /// `path` was a regular file; its bytes are saved at `backup` (on the target).
    Restore {
        path: String,
        backup: String,
        meta: Meta,
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
    /// Cannot be undone; rollback reports it and goes on with earlier steps.
    Barrier {
        what: String,
    },
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
            Undo::Barrier { what } => format!("cannot undo: {what}"),
        }
    }

    /// Revert on `t`. `become_`: the change was made as root; `t` is then already the
    /// sudo view of the host, except for an undo command, which asks sudo itself (so
    /// that it works on the local machine too, where only commands go through sudo).
    pub fn revert(&self, t: &dyn Target, become_: bool) -> OpResult<Reverted> {
        match self {
            Undo::Restore { path, backup, meta } => {
                if t.stat(backup)?.is_none() {
                    // The backup is made before the record is written, so a missing
                    // backup means the state dir was tampered with or cleaned.
                    return Err(OpError::Invalid(format!(
                        "backup {backup} of {path} is missing; cannot restore it"
                    )));
                }
                if let Some(m) = t.stat(path)? {
                    if m.kind == Kind::Dir {
                        return Err(OpError::Invalid(format!(
                            "{path} is now a directory; not replacing it with the saved file"
                        )));
                    }
                }
                t.copy_file(backup, path)?;
                t.chmod(path, meta.mode)?;
                let _ = t.chown(path, meta.uid, meta.gid); // only root may; best effort
                t.set_mtime(path, meta.mtime)?;
                Ok(Reverted::Done)
            }
            Undo::Remove { path } => match t.stat(path)? {
                None => Ok(Reverted::NotNeeded),
                Some(m) if m.kind == Kind::Dir => Err(OpError::Invalid(format!(
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
                        return Err(OpError::Invalid(format!(
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
                    return Err(OpError::Invalid(format!(
                        "undo command `{command}` exited with {}: {}",
                        out.code,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                Ok(Reverted::Done)
            }
            Undo::Barrier { what } => Ok(Reverted::Impossible(what.clone())),
        }
    }
}
