//! Host locks: a run works on a host only while it holds that host's lock, so a
//! backup and a log rotation never touch one host at once.
//!
//! Two locks, each with a [`Holder`] record that says who holds it and since when:
//! - on this machine, per host name, for every run started here whatever its state
//!   dir: an `flock` on a file in [`machine_lock_dir`]. The kernel drops the flock when
//!   the process dies, but the record stays: the next run learns that a run died there
//!   without rolling back;
//! - on a remote host, per machine (not per home: NFS homes are shared): a symlink
//!   made atomically through the [`Target`], whose target is the record.
//!
//! A lock left by a dead run is reported as stale, never broken silently: the dead run
//! may need a rollback first. Its rollback (which takes the lock over) or `tend
//! unlock` frees it. Guards release both locks on every way out, panics included.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::lease::{host_name, pid_alive, Liveness, Owner};
use crate::transport::{Kind, Target};

/// A host name safe to use as a file name.
pub fn host_file(host: &str) -> String {
    host.chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The shared directory a remote host's lock lives in unless the inventory says
/// otherwise (`tend_lock_dir`, or `tend_state_dir`): local to the machine, unlike a
/// home directory, and writable by every login user.
pub const REMOTE_LOCK_DIR: &str = "/var/tmp/tend";

/// How often a waiting run looks again.
const POLL: Duration = Duration::from_millis(200);

/// Who holds a lock. The first four fields are what older versions wrote and read.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub controller: String,
    pub pid: u32,
    pub since: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// The inventory name the lock was taken for: two names may be one machine.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The state dir of the run, for the `tend rollback` hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
}

impl Holder {
    /// This process, holding a lock of `host` for `run_id`.
    pub fn me(run_id: &str, host: &str, state_dir: &Path) -> Holder {
        let owner = Owner::current().clone();
        Holder {
            run_id: run_id.to_string(),
            controller: owner.host.clone(),
            pid: owner.pid,
            since: chrono::Utc::now().to_rfc3339(),
            owner: Some(owner),
            host: host.to_string(),
            state_dir: Some(state_dir.display().to_string()),
        }
    }

    pub fn liveness(&self) -> Liveness {
        match &self.owner {
            Some(o) => o.liveness(),
            // An older tend's record: only its pid, and only here.
            None if self.controller == host_name() => {
                if pid_alive(self.pid) {
                    Liveness::Alive
                } else {
                    Liveness::Dead
                }
            }
            None => Liveness::Unknown,
        }
    }

    /// `run R from C (pid P) since T`
    pub fn describe(&self) -> String {
        format!(
            "run {} from {} (pid {}) since {}",
            self.run_id, self.controller, self.pid, self.since
        )
    }

    fn rollback_hint(&self) -> String {
        let dir = match &self.state_dir {
            Some(d) => format!("--state-dir {} ", crate::transport::shell_quote(d)),
            None => String::new(),
        };
        format!("tend {dir}rollback {}", self.run_id)
    }
}

/// Why `lock` of `host` cannot be taken.
fn refusal(host: &str, lock: &str, holder: Option<&Holder>, me: &Holder) -> Error {
    let holder = match holder {
        None => format!("another run (its record in {lock} cannot be read); if no run is working on {host}, `tend unlock {host}`"),
        Some(h) if h.run_id == me.run_id => format!(
            "this same run ({}, for host {}): {} and {host} share the lock {lock}, so they are one machine; \
             give each its own `tend_lock_dir` in the inventory if they are not",
            h.run_id, h.host, h.host
        ),
        Some(h) if h.liveness() == Liveness::Dead => format!(
            "a stale lease: {} is gone without releasing it, and its changes were not rolled back; \
             `{}` undoes them and releases the lock (or `tend unlock {host}` to leave them)",
            h.describe(),
            h.rollback_hint()
        ),
        Some(h) => format!(
            "another run, {}; wait for it (`--wait 10m`){}",
            h.describe(),
            if h.liveness() == Liveness::Unknown {
                format!(" or, if it is dead, `tend unlock {host} --force`")
            } else {
                String::new()
            }
        ),
    };
    Error::Locked {
        host: host.to_string(),
        holder,
    }
}

/// How to take a lock.
#[derive(Debug, Clone, Default)]
pub struct Take {
    /// Queue behind a live holder for this long.
    pub wait: Option<Duration>,
    /// A dead holder with this run id may be replaced: the rollback of that run.
    pub take_over: Option<String>,
    /// Cluster mode: the store's lock was won with a newer fencing token, so the old
    /// holder of `take_over` can no longer journal a change, alive or not, and its
    /// lock on the host is replaced.
    pub fenced: bool,
    /// The waiting run's token: a cancel (a daemon replacing the fire, or stopping)
    /// or its deadline ends the wait at once.
    pub cancel: Option<crate::cancel::CancelToken>,
}

impl Take {
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.wait.map(|w| Instant::now() + w)
    }
}

pub(crate) fn waiting(
    deadline: Option<Instant>,
    cancel: Option<&crate::cancel::CancelToken>,
) -> bool {
    match (deadline, cancel) {
        (Some(d), Some(c)) if Instant::now() < d => c.sleep(POLL).is_ok(),
        (Some(d), None) if Instant::now() < d => {
            std::thread::sleep(POLL);
            true
        }
        _ => false,
    }
}

/// Where this machine's host locks live: `/run/tend/locks` for root, else
/// `/tmp/tend-UID/locks` (users cannot take each other's locks without a shared,
/// writable place; root's runs are the ones that matter).
pub fn machine_lock_dir() -> PathBuf {
    let (uid, _) = crate::transport::local::process_ids();
    if uid == 0 {
        PathBuf::from("/run/tend/locks")
    } else {
        PathBuf::from(format!("/tmp/tend-{uid}/locks"))
    }
}

/// Make `dir` (0700), refusing one that is a symlink, someone else's, or writable
/// by others: in /tmp anyone may have made it first.
fn safe_local_dir(dir: &Path) -> Result<()> {
    let (uid, _) = crate::transport::local::process_ids();
    let mut path = PathBuf::new();
    for part in dir.components() {
        path.push(part);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("cannot create {}", path.display()), e)),
        }
    }
    let m = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
    let mode = m.permissions().mode();
    if !m.is_dir() || (m.uid() != uid && m.uid() != 0) || mode & 0o022 != 0 {
        return Err(Error::Other(format!(
            "lock directory {} is not safe to use (a symlink, owned by uid {}, or writable by others: mode {:o}); remove it",
            dir.display(),
            m.uid(),
            mode & 0o7777
        )));
    }
    Ok(())
}

/// Held while a run works on a host; released (its record cleared) when dropped.
pub struct MachineLock {
    file: File,
}

impl Drop for MachineLock {
    fn drop(&mut self) {
        // An empty record is how the next run tells a release from a death.
        let _ = self.file.set_len(0);
        let _ = self.file.sync_data();
    }
}

fn read_record(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn open_lock_file(dir: &Path, host: &str) -> Result<(File, PathBuf)> {
    safe_local_dir(dir)?;
    let path = dir.join(format!("{}.lock", host_file(host)));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot open lock {}", path.display()), e))?;
    Ok((file, path))
}

/// Take this machine's lock of `host` for `me`.
pub fn lock_here(dir: &Path, host: &str, me: &Holder, how: &Take) -> Result<MachineLock> {
    let (mut file, path) = open_lock_file(dir, host)?;
    let lock = path.display().to_string();
    let deadline = how.deadline();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                if waiting(deadline, how.cancel.as_ref()) {
                    continue;
                }
                let holder = read_record(&mut file).and_then(|t| serde_json::from_str(&t).ok());
                return Err(refusal(host, &lock, holder.as_ref(), me));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("cannot lock {lock}"), e))
            }
        }
    }
    // Ours now; a record left in it is a run that died holding it.
    if let Some(text) = read_record(&mut file) {
        let holder: Option<Holder> = serde_json::from_str(&text).ok();
        if holder.is_none() || holder.as_ref().map(|h| &h.run_id) != how.take_over.as_ref() {
            let _ = file.unlock();
            return Err(refusal(host, &lock, holder.as_ref(), me));
        }
    }
    let text = serde_json::to_string(me).map_err(|e| Error::Other(e.to_string()))?;
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{text}"))
        .and_then(|()| file.sync_data());
    written.map_err(|e| Error::io(format!("cannot write lock {lock}"), e))?;
    Ok(MachineLock { file })
}

/// Who holds this machine's lock of `host`: `Some((holder, alive))`, `None` if free.
/// A dead holder's record is cleared when `clear` is set.
pub fn holder_here(dir: &Path, host: &str, clear: bool) -> Result<Option<(Holder, bool)>> {
    let (mut file, path) = open_lock_file(dir, host)?;
    let alive = matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock));
    let Some(text) = read_record(&mut file) else {
        return Ok(None);
    };
    let holder: Holder = serde_json::from_str(&text).map_err(|e| {
        Error::Other(format!(
            "lock {}: unreadable record ({e}); remove it by hand",
            path.display()
        ))
    })?;
    if clear && !alive {
        file.set_len(0)
            .map_err(|e| Error::io(format!("cannot clear {}", path.display()), e))?;
    }
    Ok(Some((holder, alive)))
}

/// The lock on a remote host; removed when dropped, if it is still ours.
pub struct TargetLock {
    target: Arc<dyn Target>,
    path: String,
    run_id: String,
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        if read_owner(self.target.as_ref(), &self.path).is_some_and(|o| o.run_id == self.run_id) {
            let _ = self.target.remove_file(&self.path);
        }
    }
}

/// Make sure `dir` on the host is a directory (not a symlink to one) owned by root or
/// the login user, and sticky if others may write to it: in a shared directory like
/// /var/tmp anyone could have made it first.
fn safe_remote_dir(t: &dyn Target, dir: &str) -> Result<()> {
    let host = t.info().name.clone();
    let shared = dir == REMOTE_LOCK_DIR;
    let meta = match t.stat(dir)? {
        Some(m) => m,
        None => {
            let parent = crate::transport::parent(dir);
            crate::ops::mkdir_p(t, parent, 0o755)
                .map_err(|e| Error::Other(format!("{host}: {e}")))?;
            let mode = if shared { 0o1777 } else { 0o700 };
            // Lost a race to another run making it: checked below like any other.
            let _ = t.mkdir(dir, mode);
            if shared {
                // mkdir's mode went through the umask.
                let _ = t.chmod(dir, mode);
            }
            t.stat(dir)?
                .ok_or_else(|| Error::Other(format!("{host}: cannot create {dir}")))?
        }
    };
    // The login user's, not `creator_ids`: through sudo new files are root's, but the
    // login user's own directory is as safe.
    let ours = meta.uid == 0 || meta.uid == crate::transport::login_dir_owner(t).0;
    let open = meta.mode & 0o002 != 0 && meta.mode & 0o1000 == 0;
    if meta.kind != Kind::Dir || !ours || open {
        return Err(Error::Other(format!(
            "{host}: lock directory {dir} is not safe to use ({} owned by uid {}, mode {:o}): \
             it must be a directory of root or the login user, sticky if others may write to it; \
             remove it, or set `tend_lock_dir` for this host",
            meta.kind.as_str(),
            meta.uid,
            meta.mode
        )));
    }
    Ok(())
}

/// Take the lock `DIR/lock` on the host: a symlink whose target is the holder's
/// record. Creating a symlink is atomic and fails when the path exists (the trick of
/// Emacs's `.#file` locks), and it carries the holder in the same request.
pub fn acquire(t: &Arc<dyn Target>, dir: &str, me: &Holder, how: &Take) -> Result<TargetLock> {
    let host = t.info().name.clone();
    let path = crate::transport::join(dir, "lock");
    let text = serde_json::to_string(me).map_err(|e| Error::Other(e.to_string()))?;
    safe_remote_dir(t.as_ref(), dir)?;
    let deadline = how.deadline();
    loop {
        if t.symlink(&text, &path).is_ok() {
            return Ok(TargetLock {
                target: t.clone(),
                path,
                run_id: me.run_id.clone(),
            });
        }
        let holder = read_owner(t.as_ref(), &path);
        match &holder {
            // Released in the meantime.
            None if t.stat(&path)?.is_none() => continue,
            Some(h)
                if Some(&h.run_id) == how.take_over.as_ref()
                    && (how.fenced || h.liveness() != Liveness::Alive) =>
            {
                t.remove_file(&path)?;
                continue;
            }
            Some(h) if h.run_id == me.run_id || h.liveness() == Liveness::Dead => {}
            _ if waiting(deadline, how.cancel.as_ref()) => continue,
            _ => {}
        }
        return Err(refusal(&host, &path, holder.as_ref(), me));
    }
}

fn read_owner(t: &dyn Target, path: &str) -> Option<Holder> {
    t.read_link(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
}

/// Who holds the lock in `dir` on the host; a holder that is not alive (or, with
/// `force`, not known to be alive) is removed.
pub fn unlock_remote(t: &dyn Target, dir: &str, force: bool) -> Result<Option<(Holder, bool)>> {
    let path = crate::transport::join(dir, "lock");
    let Some(h) = read_owner(t, &path) else {
        if t.stat(&path)?.is_some() {
            return Err(Error::Other(format!(
                "{}: lock {path} has an unreadable record; remove it by hand",
                t.info().name
            )));
        }
        return Ok(None);
    };
    let alive = match h.liveness() {
        Liveness::Alive => true,
        Liveness::Unknown => !force,
        Liveness::Dead => false,
    };
    if !alive {
        t.remove_file(&path)?;
    }
    Ok(Some((h, alive)))
}
