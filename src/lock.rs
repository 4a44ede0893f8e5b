//! The per-host lock that lives on the host itself, so two controllers (a laptop and
//! the scheduler, say) never work on one host at once. It is a symlink made atomically
//! through the [`Target`], pointing at (not to a file, but as text) who holds it.
//!
//! A lock left by a run that died is reported as stale, with what to check, and never
//! broken silently: the dead run may have left a journal that needs a rollback first.

use crate::error::Error;
use crate::target::Target;

pub struct TargetLock {
    path: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Owner {
    run_id: String,
    controller: String,
    pid: u32,
    since: String,
}

/// This machine's host name, to tell our own dead runs from other controllers' runs.
pub fn controller_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Take the lock at `path`: a symlink whose target is the owner's record. Creating a
/// symlink is atomic and fails when the path exists (the trick of Emacs's `.#file`
/// locks), and it carries the owner in the same request: one round trip to take the
/// lock, one to read who holds it, one to release it.
pub fn acquire(t: &dyn Target, path: &str, run_id: &str) -> Result<TargetLock, Error> {
    let host = t.info().name.clone();
    let owner = Owner {
        run_id: run_id.to_string(),
        controller: controller_name(),
        pid: std::process::id(),
        since: chrono::Utc::now().to_rfc3339(),
    };
    let text = serde_json::to_string(&owner).map_err(|e| Error::Other(e.to_string()))?;
    let lock = TargetLock {
        path: path.to_string(),
    };
    if t.symlink(&text, path).is_ok() {
        return Ok(lock);
    }
    match t.stat(path)? {
        // The state directory is new on this host: make it, then try again.
        None => {
            let parent = crate::target::parent(path);
            crate::ops::mkdir_p(t, parent, 0o700)
                .map_err(|e| Error::Other(format!("{host}: {e}")))?;
            t.symlink(&text, path)?;
            Ok(lock)
        }
        Some(_) => {
            let holder = match read_owner(t, path) {
                Some(o)
                    if o.controller == controller_name()
                        && !std::path::Path::new(&format!("/proc/{}", o.pid)).exists() =>
                {
                    format!(
                        "STALE: run {} (pid {} on this controller) is gone; roll it back with `tend rollback {} --host {host}` (that releases the lock)",
                        o.run_id, o.pid, o.run_id
                    )
                }
                Some(o) => format!(
                    "run {} from {} (pid {}) since {}",
                    o.run_id, o.controller, o.pid, o.since
                ),
                None => "unknown owner".into(),
            };
            Err(Error::Locked {
                host,
                holder,
                lock: path.to_string(),
            })
        }
    }
}

fn read_owner(t: &dyn Target, path: &str) -> Option<Owner> {
    t.read_link(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
}

/// Remove the lock if `run_id` holds it: after that run has been rolled back by hand,
/// its lock is known to be stale.
pub fn release_if_held_by(t: &dyn Target, path: &str, run_id: &str) -> bool {
    if read_owner(t, path).is_some_and(|o| o.run_id == run_id) {
        TargetLock {
            path: path.to_string(),
        }
        .release(t);
        return true;
    }
    false
}

impl TargetLock {
    pub fn release(self, t: &dyn Target) {
        let _ = t.remove_file(&self.path);
    }
}
