//! The per-host lock that lives on the host itself, so two controllers (a laptop and
//! the scheduler, say) never work on one host at once. A directory is created
//! atomically through the [`Target`]; an `owner` file inside says who holds it.
//!
//! A lock left by a run that died is reported as stale, with what to check, and never
//! broken silently: the dead run may have left a journal that needs a rollback first.

use crate::error::Error;
use crate::target::{join, Target};

pub struct TargetLock {
    dir: String,
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

pub fn acquire(t: &dyn Target, dir: &str, run_id: &str) -> Result<TargetLock, Error> {
    let host = t.info().name.clone();
    let parent = crate::target::parent(dir);
    crate::ops::mkdir_p(t, parent, 0o700).map_err(|e| Error::Other(format!("{host}: {e}")))?;
    match t.mkdir(dir, 0o700) {
        Ok(()) => {
            let owner = Owner {
                run_id: run_id.to_string(),
                controller: controller_name(),
                pid: std::process::id(),
                since: chrono::Utc::now().to_rfc3339(),
            };
            let text = serde_json::to_vec(&owner).map_err(|e| Error::Other(e.to_string()))?;
            t.write(&join(dir, "owner"), &text, 0o600)?;
            Ok(TargetLock {
                dir: dir.to_string(),
            })
        }
        Err(e) => {
            if t.stat(dir)?.is_none() {
                return Err(e.into());
            }
            let owner: Option<Owner> = t
                .read(&join(dir, "owner"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let holder = match owner {
                Some(o)
                    if o.controller == controller_name()
                        && !std::path::Path::new(&format!("/proc/{}", o.pid)).exists() =>
                {
                    format!(
                        "STALE: run {} (pid {} on this controller) is gone; roll it back with `tend rollback {} --host {host}` if needed, then remove the lock",
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
                lock: dir.to_string(),
            })
        }
    }
}

/// Remove the lock if `run_id` holds it: after that run has been rolled back by hand,
/// its lock is known to be stale.
pub fn release_if_held_by(t: &dyn Target, dir: &str, run_id: &str) -> bool {
    let owner: Option<Owner> = t
        .read(&join(dir, "owner"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if owner.is_some_and(|o| o.run_id == run_id) {
        TargetLock {
            dir: dir.to_string(),
        }
        .release(t);
        return true;
    }
    false
}

impl TargetLock {
    pub fn release(self, t: &dyn Target) {
        let _ = t.remove_file(&join(&self.dir, "owner"));
        let _ = t.remove_dir(&self.dir);
    }
}
