//! The throwaway root of a test case: building its fixture, snapshotting it, and the
//! difference between two snapshots, told as a person reads a tree diff.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// One fixture entry, as a test file declares it (paths relative to the root).
#[derive(Debug, Clone)]
pub enum Fixture {
    File {
        content: Vec<u8>,
        mode: Option<u32>,
        /// How long ago it was last modified.
        age: Option<Duration>,
    },
    Dir {
        mode: Option<u32>,
    },
    /// A symlink; an absolute target is rebased into the root.
    Link(String),
}

/// Kind, mode, content and (for files) modification time of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File {
        mode: u32,
        bytes: Vec<u8>,
        mtime: i64,
    },
    Dir {
        mode: u32,
    },
    Link {
        target: String,
    },
}

impl Entry {
    /// Equal but for the modification time (what "changed" means for a plan).
    fn same_content(&self, other: &Entry) -> bool {
        match (self, other) {
            (
                Entry::File { mode, bytes, .. },
                Entry::File {
                    mode: m2,
                    bytes: b2,
                    ..
                },
            ) => mode == m2 && bytes == b2,
            (a, b) => a == b,
        }
    }
}

/// Every path under a root, relative to it.
pub type Tree = BTreeMap<String, Entry>;

/// Write `fixture` under `root` (which exists and is empty), parents first.
pub fn build(root: &Path, fixture: &BTreeMap<String, Fixture>) -> std::io::Result<()> {
    let now = SystemTime::now();
    for (rel, f) in fixture {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match f {
            Fixture::Dir { mode } => {
                std::fs::create_dir_all(&path)?;
                if let Some(m) = mode {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*m))?;
                }
            }
            Fixture::Link(target) => {
                let target = match target.strip_prefix('/') {
                    Some(inside) => root.join(inside).display().to_string(),
                    None => target.clone(),
                };
                std::os::unix::fs::symlink(target, &path)?;
            }
            Fixture::File { content, mode, age } => {
                std::fs::write(&path, content)?;
                if let Some(m) = mode {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*m))?;
                }
                if let Some(age) = age {
                    let at = now.checked_sub(*age).unwrap_or(SystemTime::UNIX_EPOCH);
                    std::fs::File::options()
                        .write(true)
                        .open(&path)?
                        .set_modified(at)?;
                }
            }
        }
    }
    Ok(())
}

/// Empty `root` (kept itself, so that paths given to the recipe stay valid).
pub fn clear(root: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(root)? {
        let p = e?.path();
        if std::fs::symlink_metadata(&p)?.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

pub fn snapshot(root: &Path) -> std::io::Result<Tree> {
    let mut tree = Tree::new();
    walk(root, "", &mut tree)?;
    Ok(tree)
}

fn walk(dir: &Path, prefix: &str, tree: &mut Tree) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let rel = format!("{prefix}{}", name.to_string_lossy());
        let m = std::fs::symlink_metadata(&p)?;
        let entry = if m.file_type().is_symlink() {
            Entry::Link {
                target: std::fs::read_link(&p)?.display().to_string(),
            }
        } else if m.is_dir() {
            walk(&p, &format!("{rel}/"), tree)?;
            Entry::Dir {
                mode: m.mode() & 0o7777,
            }
        } else {
            Entry::File {
                mode: m.permissions().mode() & 0o7777,
                bytes: std::fs::read(&p)?,
                mtime: m.mtime(),
            }
        };
        tree.insert(rel, entry);
    }
    Ok(())
}

/// Paths added, removed or changed (content, mode, link target; not times).
pub fn changed(a: &Tree, b: &Tree) -> BTreeSet<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| match (a.get(*k), b.get(*k)) {
            (Some(x), Some(y)) => !x.same_content(y),
            (x, y) => x.is_some() != y.is_some(),
        })
        .cloned()
        .collect()
}

/// Every difference from `a` to `b`, times of files included, one line each:
/// `+ path (file 0644, 12 bytes)`, `- path`, `~ path: mode 0644 -> 0600`.
pub fn diff_lines(a: &Tree, b: &Tree) -> Vec<String> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (None, Some(e)) => out.push(format!("+ {k} ({})", describe(e))),
            (Some(e), None) => out.push(format!("- {k} ({})", describe(e))),
            (Some(x), Some(y)) if x != y => out.push(format!("~ {k}: {}", change(x, y))),
            _ => {}
        }
    }
    out
}

fn describe(e: &Entry) -> String {
    match e {
        Entry::File { mode, bytes, .. } => format!("file {mode:04o}, {}", show_bytes(bytes)),
        Entry::Dir { mode } => format!("directory {mode:04o}"),
        Entry::Link { target } => format!("symlink to {target}"),
    }
}

fn change(x: &Entry, y: &Entry) -> String {
    match (x, y) {
        (
            Entry::File {
                mode: m1,
                bytes: b1,
                mtime: t1,
            },
            Entry::File {
                mode: m2,
                bytes: b2,
                mtime: t2,
            },
        ) => {
            let mut parts = Vec::new();
            if b1 != b2 {
                parts.push(format!("content {} -> {}", show_bytes(b1), show_bytes(b2)));
            }
            if m1 != m2 {
                parts.push(format!("mode {m1:04o} -> {m2:04o}"));
            }
            if t1 != t2 {
                parts.push(format!("mtime {} -> {}", show_time(*t1), show_time(*t2)));
            }
            parts.join(", ")
        }
        (Entry::Dir { mode: m1 }, Entry::Dir { mode: m2 }) => {
            format!("mode {m1:04o} -> {m2:04o}")
        }
        (a, b) => format!("{} -> {}", describe(a), describe(b)),
    }
}

/// Short text as itself, anything else by its size.
fn show_bytes(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if s.len() <= 80 && !s.contains('\0') => format!("{s:?}"),
        _ => format!("{} bytes", b.len()),
    }
}

fn show_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| t.to_string())
}
