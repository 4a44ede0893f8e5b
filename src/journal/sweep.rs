//! The revert of a [`Undo::SweepNew`](super::undo::Undo::SweepNew) record: a command
//! declared the paths it may change (`sh(…, #{changes: […]})`) and the run died
//! before tend could journal exactly what it created. Anything new under those
//! paths is moved into the run's backups: out of the way, never deleted, since it
//! may be somebody else's.

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::undo::{UndoError, UndoResult};
use crate::transport::{Kind, Target};

/// Declared path patterns: a glob, or a plain path that covers itself and everything
/// under it.
pub struct Patterns {
    set: GlobSet,
}

pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

impl Patterns {
    pub fn new(patterns: &[String]) -> Result<Patterns, String> {
        let mut b = GlobSetBuilder::new();
        let glob = |g: &str| Glob::new(g).map_err(|e| format!("pattern {g:?}: {e}"));
        for p in patterns {
            if has_glob(p) {
                b.add(glob(p)?);
            } else {
                let p = p.trim_end_matches('/');
                b.add(glob(p)?);
                b.add(glob(&format!("{p}/**"))?);
            }
        }
        Ok(Patterns {
            set: b.build().map_err(|e| e.to_string())?,
        })
    }

    pub fn covers(&self, path: &str) -> bool {
        self.set.is_match(path)
    }
}

/// Move what `patterns` cover under `dir` and is not in `existed` into `quarantine`.
/// Returns the paths moved.
pub fn sweep(
    t: &dyn Target,
    dir: &str,
    patterns: &[String],
    existed: &[String],
    quarantine: &str,
) -> UndoResult<Vec<String>> {
    let declared = Patterns::new(patterns).map_err(UndoError::Refused)?;
    let mut new = Vec::new();
    find_new(t, dir, &declared, existed, &mut new)?;
    if new.is_empty() {
        return Ok(new);
    }
    if t.stat(quarantine)?.is_none() {
        t.mkdir(quarantine, 0o700)?;
    }
    for (i, path) in new.iter().enumerate() {
        let name = path.rsplit('/').next().unwrap_or("entry");
        t.rename(
            path,
            &crate::transport::join(quarantine, &format!("{i:05}-{name}")),
        )?;
    }
    Ok(new)
}

fn find_new(
    t: &dyn Target,
    path: &str,
    declared: &Patterns,
    existed: &[String],
    out: &mut Vec<String>,
) -> UndoResult<()> {
    let Some(meta) = t.stat(path)? else {
        return Ok(());
    };
    if declared.covers(path) && !existed.iter().any(|e| e == path) {
        // New: moved whole, with whatever is under it.
        out.push(path.to_string());
        return Ok(());
    }
    if meta.kind == Kind::Dir {
        for name in t.list_dir(path)? {
            find_new(
                t,
                &crate::transport::join(path, &name),
                declared,
                existed,
                out,
            )?;
        }
    }
    Ok(())
}
