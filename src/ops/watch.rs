//! `sh(cmd, #{changes: ["/etc/app/**", "/var/lib/app/db.conf"]})`: a command that
//! says which paths it may change becomes a reversible, reported step.
//!
//! Before it runs, everything the declared patterns match is recorded: each regular
//! file copied to the run's backups and journaled as a restore, each symlink as a
//! relink, each directory as a remake, and one sweep record listing what existed,
//! all written ahead like every undo record. After it runs, the same walk says
//! exactly what it created, changed and removed: that is the step's report (paths
//! and diffs, or "no change"), the records of untouched paths are dropped, and what
//! it created is journaled for removal. A run killed while the command ran is
//! still covered: the sweep record moves anything new under the declared paths into
//! the backups on rollback (moved, never deleted: its bytes may be somebody else's).
//!
//! The parents of the declared paths are watched too (their direct entries): a
//! change there is outside what the command declared, so the step fails, and the
//! run rolls back what it can.

use std::collections::BTreeMap;

use super::{Ctx, OpError, OpResult};
use crate::journal::sweep::{has_glob, Patterns};
use crate::journal::undo::{Fingerprint, Undo};
use crate::transport::{Kind, Meta, Target};

/// The most paths a declared pattern set may cover: the walk, the backups and the
/// journal grow with it, and a pattern like `/**` is a mistake, not a plan.
pub const MAX_WATCHED: usize = 20_000;

fn invalid(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

/// What one path was, enough to tell any change (a file's bytes by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub meta: Meta,
    pub sha256: Option<String>,
    pub link: Option<String>,
}

impl Seen {
    pub fn same(&self, other: &Seen) -> bool {
        self.meta.kind == other.meta.kind
            && self.meta.mode == other.meta.mode
            && self.meta.uid == other.meta.uid
            && self.meta.gid == other.meta.gid
            && self.sha256 == other.sha256
            && self.link == other.link
            && (self.meta.kind == Kind::Dir || self.meta.size == other.meta.size)
    }
}

/// The declared patterns, compiled, with the directories their walks start from.
pub struct Declared {
    pub patterns: Vec<String>,
    set: Patterns,
    /// Per pattern: the directory holding everything it can match.
    roots: Vec<String>,
}

impl Declared {
    /// `patterns` must be absolute; a plain path that is a directory covers
    /// everything under it.
    pub fn new(patterns: &[String]) -> OpResult<Declared> {
        if patterns.is_empty() {
            return Err(invalid(
                "sh: `changes` is empty; name the paths the command may change",
            ));
        }
        let mut roots = Vec::new();
        for p in patterns {
            if !p.starts_with('/') {
                return Err(invalid(format!(
                    "sh: `changes` pattern {p:?} must be an absolute path"
                )));
            }
            let fixed: Vec<&str> = p
                .trim_end_matches('/')
                .split('/')
                .take_while(|part| !has_glob(part))
                .collect();
            let root = fixed.join("/");
            if root.is_empty() {
                return Err(invalid(format!(
                    "sh: `changes` pattern {p:?} covers the whole file system; name the paths the command changes"
                )));
            }
            roots.push(root);
        }
        Ok(Declared {
            patterns: patterns.to_vec(),
            set: Patterns::new(patterns).map_err(|e| invalid(format!("sh: `changes`: {e}")))?,
            roots,
        })
    }

    pub fn covers(&self, path: &str) -> bool {
        self.set.covers(path)
    }

    /// The directories (or paths) each pattern's matches lie under.
    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    /// Everything the patterns match now, and (for `parents`) the direct entries of
    /// each root's parent directory, which the command was not declared to change.
    pub fn scan(
        &self,
        t: &dyn Target,
    ) -> OpResult<(BTreeMap<String, Seen>, BTreeMap<String, Seen>)> {
        let mut inside = BTreeMap::new();
        for root in &self.roots {
            walk(t, root, &mut |path, seen| {
                if self.covers(path) {
                    inside.insert(path.to_string(), seen);
                }
                if inside.len() > MAX_WATCHED {
                    return Err(invalid(format!(
                        "sh: `changes` covers more than {MAX_WATCHED} paths under {root}; \
                         name the paths the command changes more narrowly"
                    )));
                }
                Ok(())
            })?;
        }
        let mut around = BTreeMap::new();
        for root in &self.roots {
            let parent = crate::transport::parent(root);
            let parent = if parent.is_empty() { "/" } else { parent };
            if let Some(m) = t.stat(parent)? {
                if m.kind == Kind::Dir {
                    for name in t.list_dir(parent)? {
                        let path = crate::transport::join(parent, &name);
                        if self.covers(&path)
                            || inside.contains_key(&path)
                            || self.roots.contains(&path)
                        {
                            continue;
                        }
                        if let Some(meta) = t.stat(&path)? {
                            // Bytes are not hashed here: a neighbour's size, mode,
                            // owner and time tell a write without reading it.
                            around.insert(
                                path,
                                Seen {
                                    meta,
                                    sha256: None,
                                    link: None,
                                },
                            );
                        }
                    }
                }
            }
        }
        Ok((inside, around))
    }
}

/// Visit `path` and, for a directory (never through a symlink), everything under it.
fn walk(
    t: &dyn Target,
    path: &str,
    visit: &mut dyn FnMut(&str, Seen) -> OpResult<()>,
) -> OpResult<()> {
    let Some(meta) = t.stat(path)? else {
        return Ok(());
    };
    let seen = match meta.kind {
        Kind::File => Seen {
            sha256: Some(t.hash(path)?),
            link: None,
            meta: meta.clone(),
        },
        Kind::Symlink => Seen {
            sha256: None,
            link: Some(t.read_link(path)?),
            meta: meta.clone(),
        },
        _ => Seen {
            sha256: None,
            link: None,
            meta: meta.clone(),
        },
    };
    visit(path, seen)?;
    if meta.kind == Kind::Dir {
        let mut names = t.list_dir(path)?;
        names.sort();
        for name in names {
            walk(t, &crate::transport::join(path, &name), visit)?;
        }
    }
    Ok(())
}

/// How the declared paths changed.
#[derive(Debug, Default)]
pub struct Changes {
    pub created: Vec<String>,
    pub modified: Vec<String>,
    pub removed: Vec<String>,
    /// Changed but not declared: the direct neighbours of the declared roots.
    pub outside: Vec<String>,
}

impl Changes {
    pub fn between(
        before: &(BTreeMap<String, Seen>, BTreeMap<String, Seen>),
        after: &(BTreeMap<String, Seen>, BTreeMap<String, Seen>),
    ) -> Changes {
        let mut c = Changes::default();
        for (p, a) in &after.0 {
            match before.0.get(p) {
                None => c.created.push(p.clone()),
                Some(b) if !b.same(a) => c.modified.push(p.clone()),
                _ => {}
            }
        }
        c.removed = before
            .0
            .keys()
            .filter(|p| !after.0.contains_key(*p))
            .cloned()
            .collect();
        for (p, a) in &after.1 {
            match before.1.get(p) {
                Some(b) if b.meta == a.meta => {}
                _ => c.outside.push(p.clone()),
            }
        }
        c.outside.extend(
            before
                .1
                .keys()
                .filter(|p| !after.1.contains_key(*p))
                .cloned(),
        );
        c
    }

    pub fn paths(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .created
            .iter()
            .chain(&self.modified)
            .chain(&self.removed)
            .cloned()
            .collect();
        all.sort();
        all
    }

    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

/// The records written before the command: by path, the journal sequence number of
/// its undo record; and the sweep record's.
pub struct Recorded {
    by_path: BTreeMap<String, u64>,
    sweep: Vec<u64>,
}

/// Journal what every declared path is now, ahead of the command (real runs only).
pub fn record_before(
    ctx: &Ctx,
    op: &str,
    declared: &Declared,
    inside: &BTreeMap<String, Seen>,
    become_: bool,
) -> OpResult<Recorded> {
    let mut rec = Recorded {
        by_path: BTreeMap::new(),
        sweep: Vec::new(),
    };
    // Files and links first, then directories deepest first, then the sweeps:
    // rollback reverts in reverse, so it moves new things aside, remakes the
    // directories from the outside in, then puts each file back into them.
    for (path, seen) in inside {
        let undo = match seen.meta.kind {
            Kind::File => ctx.restore_undo(path, seen.meta.clone(), None)?,
            Kind::Symlink => Undo::Relink {
                path: path.clone(),
                target: seen.link.clone().unwrap_or_default(),
            },
            _ => continue,
        };
        if let Some(seq) = ctx.will_unpinned(op, undo, become_)? {
            rec.by_path.insert(path.clone(), seq);
        }
    }
    let mut dirs: Vec<(&String, &Seen)> = inside
        .iter()
        .filter(|(_, s)| s.meta.kind == Kind::Dir)
        .collect();
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches('/').count()));
    for (path, seen) in dirs {
        let undo = Undo::MakeDir {
            path: path.clone(),
            meta: seen.meta.clone(),
        };
        if let Some(seq) = ctx.will_unpinned(op, undo, become_)? {
            rec.by_path.insert(path.clone(), seq);
        }
    }
    for root in &declared.roots {
        let undo = Undo::SweepNew {
            dir: root.clone(),
            patterns: declared.patterns.clone(),
            existed: inside
                .keys()
                .filter(|p| p.starts_with(root.as_str()))
                .cloned()
                .collect(),
            quarantine: ctx.kept_path("new-files")?,
        };
        if let Some(seq) = ctx.will_unpinned(op, undo, become_)? {
            rec.sweep.push(seq);
        }
    }
    Ok(rec)
}

/// After the command: keep the records of what changed (with what the command
/// left there), drop the others, journal what it created, and retire the sweeps.
pub fn record_after(
    ctx: &Ctx,
    op: &str,
    rec: &Recorded,
    changes: &Changes,
    become_: bool,
) -> OpResult<()> {
    let t = ctx.target.as_ref();
    for (path, seq) in &rec.by_path {
        if changes.modified.contains(path) || changes.removed.contains(path) {
            let left = Fingerprint::of(t, path, None).map_err(undo_err)?;
            ctx.left(*seq, left.as_ref())?;
        } else {
            ctx.drop_record(*seq)?;
        }
    }
    // Directories outermost first, so that rollback (in reverse) empties them first.
    let mut created: Vec<&String> = changes.created.iter().collect();
    created.sort_by_key(|p| p.matches('/').count());
    for path in created {
        let Some(m) = t.stat(path)? else { continue };
        let undo = if m.kind == Kind::Dir {
            Undo::RemoveDir { path: path.clone() }
        } else {
            Undo::Remove { path: path.clone() }
        };
        if let Some(seq) = ctx.will_unpinned(op, undo, become_)? {
            if m.kind != Kind::Dir {
                let left = Fingerprint::of(t, path, None).map_err(undo_err)?;
                ctx.left(seq, left.as_ref())?;
            }
        }
    }
    for seq in &rec.sweep {
        ctx.drop_record(*seq)?;
    }
    Ok(())
}

fn undo_err(e: crate::journal::undo::UndoError) -> OpError {
    OpError::Invalid(e.to_string())
}
