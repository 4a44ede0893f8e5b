//! `tend unlock HOST`: release a dead run's host lock (never a live one), audited.

use crate::app::Actor;
use crate::error::Result;
use crate::reach::HostSpec;
use crate::store::Stores;

/// A lock `tend unlock` found: where, who held it, and whether it was released.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unlocked {
    pub host: String,
    /// `this machine` or the lock's path on the host.
    pub lock: String,
    pub holder: crate::lock::Holder,
    pub released: bool,
}

/// `tend unlock HOST`: release the locks of `spec` (on this machine and on the host)
/// held by a run that is gone; `force` also those of a run on another controller,
/// whose life cannot be checked from here. A live run's lock is never released.
/// Every release is audited: the dead run's changes stay as they were.
pub fn unlock(
    stores: &Stores,
    actor: &Actor,
    spec: &HostSpec,
    force: bool,
) -> Result<Vec<Unlocked>> {
    let name = spec.name.as_str();
    let mut found = Vec::new();
    if let Some((holder, alive)) = stores.locks.holder(name, true)? {
        found.push(Unlocked {
            host: name.to_string(),
            lock: "this machine".into(),
            holder,
            released: !alive,
        });
    }
    if !spec.is_local() {
        let reached = spec.connect()?;
        if let Some(dir) = reached.lock_dir() {
            if let Some((holder, alive)) =
                crate::lock::unlock_remote(reached.target.as_ref(), dir, force)?
            {
                found.push(Unlocked {
                    host: name.to_string(),
                    lock: crate::transport::join(dir, "lock"),
                    holder,
                    released: !alive,
                });
            }
        }
    }
    let user = actor.user.clone();
    let audit = &stores.audit;
    for u in found.iter().filter(|u| u.released) {
        audit.append(serde_json::json!({
            "event": "unlock",
            "host": u.host,
            "lock": u.lock,
            "run_id": u.holder.run_id,
            "holder": u.holder.describe(),
            "forced": force,
            "user": user,
        }))?;
    }
    Ok(found)
}
