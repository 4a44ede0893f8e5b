//! The dry-run view of a target: reads go to the real target, writes land in memory.
//!
//! A dry-run executes the very same operation code as a real run, only against an
//! `Overlay`. That is what makes the plan exact: there is no second, "planning"
//! implementation of each operation that could drift from the real one, and a later
//! step that reads what an earlier step would have written sees it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::path::{self, Hop, Walked};
use super::{
    Divergence, ExecOutput, ExecRequest, HostInfo, Kind, Meta, TResult, Target, TargetError,
};

#[derive(Debug, Clone)]
enum Content {
    Bytes(Vec<u8>),
    /// The bytes of this path on the real target (a planned rename or copy of a file
    /// that was never read: no need to pull a large log into memory to plan moving it).
    Inner(String),
}

#[derive(Debug, Clone)]
enum Node {
    File {
        content: Content,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
    },
    /// `fresh`: created by the plan, so the real target has nothing under it.
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
        fresh: bool,
    },
    Link {
        target: String,
    },
    Absent,
}

/// Where the truth about a path lives.
enum View {
    Node(Node),
    Inner(String),
    Missing,
}

/// Whether a primitive acts on a final symlink or on what it leads to, as its system
/// call does (`lstat`, `unlink`, `rename`, `lchown` do not follow; `open`, `chmod`,
/// `opendir` do).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Keep,
    Follow,
}

/// Planned entries are keyed by the path the kernel would reach (see [`path::walk`]):
/// no symlink and no `..` among their directories, so a file written through a link
/// and read through its target's name are one entry, and a directory's planned
/// children move with it when it is renamed.
pub struct Overlay {
    inner: Arc<dyn Target>,
    /// Owner of files and directories the plan creates.
    ids: (u32, u32),
    /// Shared with the sudo view ([`Target::elevated`]): one plan, seen by both.
    nodes: Arc<Mutex<BTreeMap<String, Node>>>,
    /// A command was not run: see [`Divergence::Unknown`]. Shared like `nodes`.
    unknown_effects: Arc<AtomicBool>,
    /// What the real target's directories and links are, by resolved path: walking a
    /// path asks about every component, and over SSH each question is a round trip.
    /// Only the real target is cached, which a dry-run never changes. Per view, not
    /// shared: root may see what the login user cannot.
    hops: Mutex<HashMap<String, Hop>>,
    /// The target's working directory, where relative paths start: asked once, and
    /// only if a recipe uses one. Without it `data/f` and `/home/u/data/f` (the same
    /// file, reached through an absolute link) would be two plan entries.
    cwd: std::sync::OnceLock<Option<String>>,
}

/// `a//b/./c/` → `a/b/c`. `..` is left alone: it cannot be resolved without the target.
pub fn norm(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if !out.is_empty() && !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

impl Overlay {
    pub fn new(inner: Arc<dyn Target>) -> Self {
        Overlay {
            ids: inner.creator_ids(),
            inner,
            nodes: Arc::new(Mutex::new(BTreeMap::new())),
            unknown_effects: Arc::new(AtomicBool::new(false)),
            hops: Mutex::new(HashMap::new()),
            cwd: std::sync::OnceLock::new(),
        }
    }

    fn host(&self) -> &str {
        &self.inner.info().name
    }

    fn not_found(&self, path: &str) -> TargetError {
        TargetError::path(self.host(), path, "no such file or directory")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Node>> {
        self.nodes.lock().expect("overlay lock")
    }

    /// The entry `path` names, as the system call would find it: `Ok(None)` when a
    /// directory on the way is missing or is not one (what `lstat` reports as absent).
    fn find(
        &self,
        nodes: &BTreeMap<String, Node>,
        path: &str,
        last: Last,
    ) -> TResult<Option<String>> {
        match self.walk(nodes, path, last)? {
            Walked::At(key) => Ok(Some(key)),
            Walked::NoEntry | Walked::NotDir => Ok(None),
            Walked::Loop => Err(TargetError::path(self.host(), path, path::LOOP_MESSAGE)),
        }
    }

    /// [`Overlay::find`] for primitives that fail where the path cannot be reached.
    fn at(&self, nodes: &BTreeMap<String, Node>, path: &str, last: Last) -> TResult<String> {
        match self.walk(nodes, path, last)? {
            Walked::At(key) => Ok(key),
            Walked::NoEntry => Err(self.not_found(path)),
            Walked::NotDir => Err(TargetError::path(self.host(), path, "not a directory")),
            Walked::Loop => Err(TargetError::path(self.host(), path, path::LOOP_MESSAGE)),
        }
    }

    fn walk(&self, nodes: &BTreeMap<String, Node>, path: &str, last: Last) -> TResult<Walked> {
        let anchored = if path.starts_with('/') {
            None
        } else {
            self.cwd().map(|cwd| super::join(cwd, path))
        };
        let path = anchored.as_deref().unwrap_or(path);
        path::walk(path, last == Last::Follow, |p| self.hop(nodes, p))
    }

    fn cwd(&self) -> Option<&str> {
        self.cwd
            .get_or_init(|| {
                let out = self.inner.exec(&ExecRequest::new("pwd -P")).ok()?;
                let dir = String::from_utf8(out.stdout).ok()?;
                let dir = dir.trim_end_matches('\n');
                (out.code == 0 && dir.starts_with('/')).then(|| dir.to_string())
            })
            .as_deref()
    }

    /// What one resolved path is, planned or real.
    fn hop(&self, nodes: &BTreeMap<String, Node>, key: &str) -> TResult<Hop> {
        let real = match self.view(nodes, key) {
            View::Missing => return Ok(Hop::Missing),
            View::Node(Node::Link { target }) => return Ok(Hop::Link(target)),
            View::Node(Node::Dir { .. }) => return Ok(Hop::Dir),
            View::Node(Node::File { .. }) => return Ok(Hop::Other),
            View::Node(Node::Absent) => return Ok(Hop::Missing),
            View::Inner(p) => p,
        };
        if let Some(hop) = self.hops.lock().expect("overlay lock").get(&real) {
            return Ok(hop.clone());
        }
        let hop = match self.inner.stat(&real)? {
            None => Hop::Missing,
            Some(m) if m.kind == Kind::Symlink => Hop::Link(self.inner.read_link(&real)?),
            Some(m) if m.kind == Kind::Dir => Hop::Dir,
            Some(_) => Hop::Other,
        };
        self.hops
            .lock()
            .expect("overlay lock")
            .insert(real, hop.clone());
        Ok(hop)
    }

    /// Where the truth about a resolved path lives.
    fn view(&self, nodes: &BTreeMap<String, Node>, key: &str) -> View {
        if let Some(node) = nodes.get(key) {
            return match node {
                Node::Absent => View::Missing,
                n => View::Node(n.clone()),
            };
        }
        let mut p = key;
        while p != "/" && p != "." {
            p = super::parent(p);
            match nodes.get(p) {
                None | Some(Node::Dir { fresh: false, .. }) => {}
                Some(_) => return View::Missing,
            }
        }
        View::Inner(key.to_string())
    }

    // From here on, paths are plan keys: resolved by `at` or `find` first, so that
    // the same file is never looked up under two names.

    fn meta(&self, nodes: &BTreeMap<String, Node>, path: &str) -> TResult<Option<Meta>> {
        match self.view(nodes, path) {
            View::Missing => Ok(None),
            View::Inner(p) => self.inner.stat(&p),
            View::Node(Node::File {
                content,
                mode,
                uid,
                gid,
                mtime,
            }) => {
                let size = match content {
                    Content::Bytes(b) => b.len() as u64,
                    Content::Inner(p) => self.inner.stat(&p)?.map(|m| m.size).unwrap_or(0),
                };
                Ok(Some(Meta {
                    kind: Kind::File,
                    size,
                    mode,
                    uid,
                    gid,
                    mtime,
                }))
            }
            View::Node(Node::Dir {
                mode,
                uid,
                gid,
                mtime,
                ..
            }) => Ok(Some(Meta {
                kind: Kind::Dir,
                size: 4096,
                mode,
                uid,
                gid,
                mtime,
            })),
            View::Node(Node::Link { target }) => Ok(Some(Meta {
                kind: Kind::Symlink,
                size: target.len() as u64,
                mode: 0o777,
                uid: self.ids.0,
                gid: self.ids.1,
                mtime: super::local::now_epoch(),
            })),
            View::Node(Node::Absent) => Ok(None),
        }
    }

    /// The node a path would have if it were copied or moved elsewhere.
    fn node_of(&self, nodes: &BTreeMap<String, Node>, path: &str) -> TResult<Node> {
        match self.view(nodes, path) {
            View::Missing | View::Node(Node::Absent) => Err(self.not_found(path)),
            View::Node(n) => Ok(n),
            View::Inner(p) => {
                let m = self.inner.stat(&p)?.ok_or_else(|| self.not_found(path))?;
                Ok(match m.kind {
                    Kind::Symlink => Node::Link {
                        target: self.inner.read_link(&p)?,
                    },
                    Kind::Dir => Node::Dir {
                        mode: m.mode,
                        uid: m.uid,
                        gid: m.gid,
                        mtime: m.mtime,
                        fresh: false,
                    },
                    _ => Node::File {
                        content: Content::Inner(p),
                        mode: m.mode,
                        uid: m.uid,
                        gid: m.gid,
                        mtime: m.mtime,
                    },
                })
            }
        }
    }

    fn require_dir(&self, nodes: &BTreeMap<String, Node>, path: &str) -> TResult<()> {
        match self.meta(nodes, path)? {
            Some(m) if m.kind == Kind::Dir => Ok(()),
            Some(_) => Err(TargetError::path(self.host(), path, "not a directory")),
            None => Err(self.not_found(path)),
        }
    }

    fn names(&self, nodes: &BTreeMap<String, Node>, path: &str) -> TResult<Vec<String>> {
        self.require_dir(nodes, path)?;
        let mut names: Vec<String> = match self.view(nodes, path) {
            View::Inner(p) => self.inner.list_dir(&p)?,
            View::Node(Node::Dir { fresh: false, .. }) => self.inner.list_dir(path)?,
            _ => Vec::new(),
        };
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        for (key, node) in nodes.range(prefix.clone()..) {
            let Some(rest) = key.strip_prefix(&prefix) else {
                break;
            };
            if rest.is_empty() || rest.contains('/') {
                continue;
            }
            match node {
                Node::Absent => names.retain(|n| n != rest),
                _ => {
                    if !names.iter().any(|n| n == rest) {
                        names.push(rest.to_string());
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Copy a directory tree (as the plan sees it) to `to` as overlay nodes.
    fn materialize(&self, nodes: &mut BTreeMap<String, Node>, from: &str, to: &str) -> TResult<()> {
        let node = self.node_of(nodes, from)?;
        let is_dir = matches!(node, Node::Dir { .. });
        let node = match node {
            Node::Dir {
                mode,
                uid,
                gid,
                mtime,
                ..
            } => Node::Dir {
                mode,
                uid,
                gid,
                mtime,
                fresh: true,
            },
            n => n,
        };
        if is_dir {
            let children = self.names(nodes, from)?;
            nodes.insert(to.to_string(), node);
            for name in children {
                self.materialize(nodes, &super::join(from, &name), &super::join(to, &name))?;
            }
        } else {
            nodes.insert(to.to_string(), node);
        }
        Ok(())
    }

    fn update(&self, path: &str, last: Last, f: impl FnOnce(&mut Node)) -> TResult<()> {
        let mut nodes = self.lock();
        let key = self.at(&nodes, path, last)?;
        let mut node = self.node_of(&nodes, &key)?;
        f(&mut node);
        nodes.insert(key, node);
        Ok(())
    }
}

impl Target for Overlay {
    fn working_dir(&self) -> TResult<String> {
        self.inner.working_dir()
    }

    fn info(&self) -> &HostInfo {
        self.inner.info()
    }

    fn stat(&self, path: &str) -> TResult<Option<Meta>> {
        let nodes = self.lock();
        match self.find(&nodes, path, Last::Keep)? {
            Some(key) => self.meta(&nodes, &key),
            None => Ok(None),
        }
    }

    fn read(&self, path: &str) -> TResult<Vec<u8>> {
        let nodes = self.lock();
        let key = self.at(&nodes, path, Last::Follow)?;
        match self.view(&nodes, &key) {
            View::Inner(p) => self.inner.read(&p),
            View::Node(Node::File {
                content: Content::Bytes(b),
                ..
            }) => Ok(b),
            View::Node(Node::File {
                content: Content::Inner(p),
                ..
            }) => self.inner.read(&p),
            View::Node(Node::Dir { .. }) => {
                Err(TargetError::path(self.host(), path, "is a directory"))
            }
            // A followed path never ends at a link.
            View::Node(Node::Link { .. } | Node::Absent) | View::Missing => {
                Err(self.not_found(path))
            }
        }
    }

    fn read_link(&self, path: &str) -> TResult<String> {
        let nodes = self.lock();
        let key = self.at(&nodes, path, Last::Keep)?;
        match self.view(&nodes, &key) {
            View::Inner(p) => self.inner.read_link(&p),
            View::Node(Node::Link { target }) => Ok(target),
            View::Missing | View::Node(Node::Absent) => Err(self.not_found(path)),
            View::Node(_) => Err(TargetError::path(self.host(), path, "not a symlink")),
        }
    }

    fn list_dir(&self, path: &str) -> TResult<Vec<String>> {
        let nodes = self.lock();
        let key = self.at(&nodes, path, Last::Follow)?;
        self.names(&nodes, &key)
    }

    /// Like the real write (a new file renamed into place), replaces a final symlink
    /// rather than writing through it.
    fn write(&self, path: &str, data: &[u8], mode: u32) -> TResult<()> {
        let mut nodes = self.lock();
        let key = self.at(&nodes, path, Last::Keep)?;
        let old = self.meta(&nodes, &key)?;
        if matches!(&old, Some(m) if m.kind == Kind::Dir) {
            return Err(TargetError::path(self.host(), path, "is a directory"));
        }
        // Only a replaced regular file passes its owner on (see `Local::write`).
        let (uid, gid) = old
            .filter(|m| m.kind == Kind::File)
            .map(|m| (m.uid, m.gid))
            .unwrap_or(self.ids);
        nodes.insert(
            key,
            Node::File {
                content: Content::Bytes(data.to_vec()),
                mode,
                uid,
                gid,
                mtime: super::local::now_epoch(),
            },
        );
        Ok(())
    }

    fn copy_file(&self, from: &str, to: &str) -> TResult<()> {
        let mut nodes = self.lock();
        let src = self.at(&nodes, from, Last::Follow)?;
        let dest = self.at(&nodes, to, Last::Keep)?;
        match self.node_of(&nodes, &src)? {
            Node::File { content, mode, .. } => {
                // A new file made by the copier: its owner, not the source's.
                nodes.insert(
                    dest,
                    Node::File {
                        content,
                        mode,
                        uid: self.ids.0,
                        gid: self.ids.1,
                        mtime: super::local::now_epoch(),
                    },
                );
                Ok(())
            }
            _ => Err(TargetError::path(self.host(), from, "not a regular file")),
        }
    }

    fn mkdir(&self, path: &str, mode: u32) -> TResult<()> {
        let mut nodes = self.lock();
        let key = self.at(&nodes, path, Last::Keep)?;
        if self.meta(&nodes, &key)?.is_some() {
            return Err(TargetError::path(self.host(), path, "already exists"));
        }
        nodes.insert(
            key,
            Node::Dir {
                mode,
                uid: self.ids.0,
                gid: self.ids.1,
                mtime: super::local::now_epoch(),
                fresh: true,
            },
        );
        Ok(())
    }

    fn remove_file(&self, path: &str) -> TResult<()> {
        let mut nodes = self.lock();
        let key = self.at(&nodes, path, Last::Keep)?;
        match self.meta(&nodes, &key)? {
            None => Err(self.not_found(path)),
            Some(m) if m.kind == Kind::Dir => {
                Err(TargetError::path(self.host(), path, "is a directory"))
            }
            Some(_) => {
                nodes.insert(key, Node::Absent);
                Ok(())
            }
        }
    }

    fn remove_dir(&self, path: &str) -> TResult<()> {
        let mut nodes = self.lock();
        let key = self.at(&nodes, path, Last::Keep)?;
        match self.meta(&nodes, &key)? {
            None => return Err(self.not_found(path)),
            Some(m) if m.kind != Kind::Dir => {
                return Err(TargetError::path(self.host(), path, "not a directory"))
            }
            Some(_) => {}
        }
        if !self.names(&nodes, &key)?.is_empty() {
            return Err(TargetError::path(self.host(), path, "directory not empty"));
        }
        nodes.insert(key, Node::Absent);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> TResult<()> {
        let mut nodes = self.lock();
        let src = self.at(&nodes, from, Last::Keep)?;
        let dest = self.at(&nodes, to, Last::Keep)?;
        let node = self.node_of(&nodes, &src)?;
        if src == dest {
            return Ok(()); // rename(2) of a path onto itself does nothing
        }
        let from_dir = matches!(node, Node::Dir { .. });
        if from_dir && dest.starts_with(&format!("{src}/")) {
            return Err(TargetError::path(self.host(), from, "invalid argument"));
        }
        if let Some(m) = self.meta(&nodes, &dest)? {
            let to_dir = m.kind == Kind::Dir;
            if to_dir && !from_dir {
                return Err(TargetError::path(self.host(), to, "is a directory"));
            }
            if from_dir && !to_dir {
                return Err(TargetError::path(self.host(), to, "not a directory"));
            }
            if to_dir && !self.names(&nodes, &dest)?.is_empty() {
                return Err(TargetError::path(self.host(), to, "directory not empty"));
            }
        }
        if from_dir {
            // The replaced empty directory's leftovers (removal marks) must not show
            // through the one moved in.
            let under_dest = format!("{dest}/");
            nodes.retain(|k, _| !k.starts_with(&under_dest));
            self.materialize(&mut nodes, &src, &dest)?;
            let under_src = format!("{src}/");
            nodes.retain(|k, _| !k.starts_with(&under_src));
        } else {
            nodes.insert(dest, node);
        }
        nodes.insert(src, Node::Absent);
        Ok(())
    }

    fn symlink(&self, link_target: &str, path: &str) -> TResult<()> {
        let mut nodes = self.lock();
        let key = self.at(&nodes, path, Last::Keep)?;
        if self.meta(&nodes, &key)?.is_some() {
            return Err(TargetError::path(self.host(), path, "already exists"));
        }
        nodes.insert(
            key,
            Node::Link {
                target: link_target.to_string(),
            },
        );
        Ok(())
    }

    fn chmod(&self, path: &str, new_mode: u32) -> TResult<()> {
        self.update(path, Last::Follow, |n| match n {
            Node::File { mode, .. } | Node::Dir { mode, .. } => *mode = new_mode,
            _ => {}
        })
    }

    fn chown(&self, path: &str, new_uid: u32, new_gid: u32) -> TResult<()> {
        self.update(path, Last::Keep, |n| match n {
            Node::File { uid, gid, .. } | Node::Dir { uid, gid, .. } => {
                *uid = new_uid;
                *gid = new_gid;
            }
            _ => {}
        })
    }

    fn set_mtime(&self, path: &str, new_mtime: i64) -> TResult<()> {
        self.update(path, Last::Follow, |n| match n {
            Node::File { mtime, .. } | Node::Dir { mtime, .. } => *mtime = new_mtime,
            _ => {}
        })
    }

    /// Commands run on the real target and never see the plan: callers ask
    /// [`Target::divergence`] first to know whether the answer is the real run's.
    fn exec(&self, request: &ExecRequest) -> TResult<ExecOutput> {
        self.inner.exec(request)
    }

    fn divergence(&self) -> Divergence {
        if self.unknown_effects.load(Ordering::SeqCst) {
            Divergence::Unknown
        } else if self.lock().is_empty() {
            Divergence::None
        } else {
            Divergence::Known
        }
    }

    fn note_unknown_effect(&self) {
        self.unknown_effects.store(true, Ordering::SeqCst);
    }

    fn creator_ids(&self) -> (u32, u32) {
        self.ids
    }

    fn os(&self) -> String {
        self.inner.os()
    }

    /// The plan of a `become` step: reads through the real target's sudo view (root
    /// may read what the login user cannot), new files owned as root's would be, and
    /// the same planned writes as the rest of the run.
    fn elevated(&self) -> TResult<Arc<dyn Target>> {
        let inner = self.inner.elevated()?;
        Ok(Arc::new(Overlay {
            ids: inner.creator_ids(),
            inner,
            nodes: self.nodes.clone(),
            unknown_effects: self.unknown_effects.clone(),
            hops: Mutex::new(HashMap::new()),
            cwd: std::sync::OnceLock::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::local::Local;

    fn setup() -> (tempfile::TempDir, Overlay, String) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        std::fs::write(format!("{root}/a"), "A").unwrap();
        std::fs::create_dir(format!("{root}/d")).unwrap();
        std::fs::write(format!("{root}/d/x"), "X").unwrap();
        (dir, Overlay::new(Arc::new(Local::new())), root)
    }

    #[test]
    fn writes_stay_in_memory_and_are_seen() {
        let (_d, o, root) = setup();
        let p = format!("{root}/new");
        o.write(&p, b"hello", 0o600).unwrap();
        assert_eq!(o.read(&p).unwrap(), b"hello");
        assert_eq!(o.stat(&p).unwrap().unwrap().mode, 0o600);
        assert!(!std::path::Path::new(&p).exists());
        assert_eq!(o.list_dir(&root).unwrap(), vec!["a", "d", "new"]);
    }

    #[test]
    fn rename_and_remove() {
        let (_d, o, root) = setup();
        o.rename(&format!("{root}/a"), &format!("{root}/b"))
            .unwrap();
        assert_eq!(o.read(&format!("{root}/b")).unwrap(), b"A");
        assert!(o.stat(&format!("{root}/a")).unwrap().is_none());
        o.rename(&format!("{root}/d"), &format!("{root}/e"))
            .unwrap();
        assert_eq!(o.read(&format!("{root}/e/x")).unwrap(), b"X");
        assert!(o.stat(&format!("{root}/d/x")).unwrap().is_none());
        assert_eq!(o.list_dir(&root).unwrap(), vec!["b", "e"]);
        o.remove_file(&format!("{root}/e/x")).unwrap();
        o.remove_dir(&format!("{root}/e")).unwrap();
        assert_eq!(o.list_dir(&root).unwrap(), vec!["b"]);
        assert!(std::path::Path::new(&format!("{root}/d/x")).exists());
    }

    #[test]
    fn fresh_dir_hides_nothing_and_errors_match_real() {
        let (_d, o, root) = setup();
        assert!(o.write(&format!("{root}/nodir/f"), b"", 0o644).is_err());
        o.mkdir(&format!("{root}/n"), 0o755).unwrap();
        o.write(&format!("{root}/n/f"), b"1", 0o644).unwrap();
        assert_eq!(o.list_dir(&format!("{root}/n")).unwrap(), vec!["f"]);
        assert!(o.remove_dir(&format!("{root}/n")).is_err());
    }
}
