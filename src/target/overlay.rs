//! The dry-run view of a target: reads go to the real target, writes land in memory.
//!
//! A dry-run executes the very same operation code as a real run, only against an
//! `Overlay`. That is what makes the plan exact: there is no second, "planning"
//! implementation of each operation that could drift from the real one, and a later
//! step that reads what an earlier step would have written sees it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{ExecOutput, ExecRequest, HostInfo, Kind, Meta, TResult, Target, TargetError};

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

pub struct Overlay {
    inner: Arc<dyn Target>,
    /// Owner of files and directories the plan creates.
    ids: (u32, u32),
    /// Shared with the sudo view ([`Target::elevated`]): one plan, seen by both.
    nodes: Arc<Mutex<BTreeMap<String, Node>>>,
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
        }
    }

    fn host(&self) -> &str {
        &self.inner.info().name
    }

    fn not_found(&self, path: &str) -> TargetError {
        TargetError::path(self.host(), path, "no such file or directory")
    }

    fn view(&self, nodes: &BTreeMap<String, Node>, path: &str) -> View {
        if let Some(node) = nodes.get(path) {
            return match node {
                Node::Absent => View::Missing,
                n => View::Node(n.clone()),
            };
        }
        let mut p = path;
        while p != "/" && p != "." {
            p = super::parent(p);
            match nodes.get(p) {
                None | Some(Node::Dir { fresh: false, .. }) => {}
                Some(_) => return View::Missing,
            }
        }
        View::Inner(path.to_string())
    }

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
                uid: 0,
                gid: 0,
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

    fn update(&self, path: &str, f: impl FnOnce(&mut Node)) -> TResult<()> {
        let path = norm(path);
        let mut nodes = self.nodes.lock().expect("overlay lock");
        let mut node = self.node_of(&nodes, &path)?;
        f(&mut node);
        nodes.insert(path, node);
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
        let path = norm(path);
        let nodes = self.nodes.lock().expect("overlay lock");
        self.meta(&nodes, &path)
    }

    fn read(&self, path: &str) -> TResult<Vec<u8>> {
        let path = norm(path);
        let nodes = self.nodes.lock().expect("overlay lock");
        match self.view(&nodes, &path) {
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
                Err(TargetError::path(self.host(), &path, "is a directory"))
            }
            View::Node(Node::Link { target }) => {
                let resolved = if target.starts_with('/') {
                    target
                } else {
                    super::join(super::parent(&path), &target)
                };
                drop(nodes);
                self.read(&resolved)
            }
            View::Missing | View::Node(Node::Absent) => Err(self.not_found(&path)),
        }
    }

    fn read_link(&self, path: &str) -> TResult<String> {
        let path = norm(path);
        let nodes = self.nodes.lock().expect("overlay lock");
        match self.view(&nodes, &path) {
            View::Inner(p) => self.inner.read_link(&p),
            View::Node(Node::Link { target }) => Ok(target),
            View::Missing => Err(self.not_found(&path)),
            _ => Err(TargetError::path(self.host(), &path, "not a symlink")),
        }
    }

    fn list_dir(&self, path: &str) -> TResult<Vec<String>> {
        let path = norm(path);
        let nodes = self.nodes.lock().expect("overlay lock");
        self.names(&nodes, &path)
    }

    fn write(&self, path: &str, data: &[u8], mode: u32) -> TResult<()> {
        let path = norm(path);
        let mut nodes = self.nodes.lock().expect("overlay lock");
        self.require_dir(&nodes, super::parent(&path))?;
        let old = self.meta(&nodes, &path)?;
        if matches!(&old, Some(m) if m.kind == Kind::Dir) {
            return Err(TargetError::path(self.host(), &path, "is a directory"));
        }
        let (uid, gid) = old.map(|m| (m.uid, m.gid)).unwrap_or(self.ids);
        nodes.insert(
            path,
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
        let (from, to) = (norm(from), norm(to));
        let mut nodes = self.nodes.lock().expect("overlay lock");
        self.require_dir(&nodes, super::parent(&to))?;
        match self.node_of(&nodes, &from)? {
            Node::File {
                content,
                mode,
                uid,
                gid,
                ..
            } => {
                nodes.insert(
                    to,
                    Node::File {
                        content,
                        mode,
                        uid,
                        gid,
                        mtime: super::local::now_epoch(),
                    },
                );
                Ok(())
            }
            _ => Err(TargetError::path(self.host(), &from, "not a regular file")),
        }
    }

    fn mkdir(&self, path: &str, mode: u32) -> TResult<()> {
        let path = norm(path);
        let mut nodes = self.nodes.lock().expect("overlay lock");
        self.require_dir(&nodes, super::parent(&path))?;
        if self.meta(&nodes, &path)?.is_some() {
            return Err(TargetError::path(self.host(), &path, "already exists"));
        }
        nodes.insert(
            path,
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
        let path = norm(path);
        let mut nodes = self.nodes.lock().expect("overlay lock");
        match self.meta(&nodes, &path)? {
            None => Err(self.not_found(&path)),
            Some(m) if m.kind == Kind::Dir => {
                Err(TargetError::path(self.host(), &path, "is a directory"))
            }
            Some(_) => {
                nodes.insert(path, Node::Absent);
                Ok(())
            }
        }
    }

    fn remove_dir(&self, path: &str) -> TResult<()> {
        let path = norm(path);
        let mut nodes = self.nodes.lock().expect("overlay lock");
        if !self.names(&nodes, &path)?.is_empty() {
            return Err(TargetError::path(self.host(), &path, "directory not empty"));
        }
        nodes.insert(path, Node::Absent);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> TResult<()> {
        let (from, to) = (norm(from), norm(to));
        let mut nodes = self.nodes.lock().expect("overlay lock");
        self.require_dir(&nodes, super::parent(&to))?;
        let node = self.node_of(&nodes, &from)?;
        if let Some(m) = self.meta(&nodes, &to)? {
            let from_dir = matches!(node, Node::Dir { .. });
            if m.kind == Kind::Dir && (!from_dir || !self.names(&nodes, &to)?.is_empty()) {
                return Err(TargetError::path(self.host(), &to, "is a directory"));
            }
        }
        if matches!(node, Node::Dir { .. }) {
            self.materialize(&mut nodes, &from, &to)?;
            let prefix = format!("{from}/");
            nodes.retain(|k, _| !k.starts_with(&prefix));
        } else {
            nodes.insert(to, node);
        }
        nodes.insert(from, Node::Absent);
        Ok(())
    }

    fn symlink(&self, link_target: &str, path: &str) -> TResult<()> {
        let path = norm(path);
        let mut nodes = self.nodes.lock().expect("overlay lock");
        self.require_dir(&nodes, super::parent(&path))?;
        if self.meta(&nodes, &path)?.is_some() {
            return Err(TargetError::path(self.host(), &path, "already exists"));
        }
        nodes.insert(
            path,
            Node::Link {
                target: link_target.to_string(),
            },
        );
        Ok(())
    }

    fn chmod(&self, path: &str, new_mode: u32) -> TResult<()> {
        self.update(path, |n| match n {
            Node::File { mode, .. } | Node::Dir { mode, .. } => *mode = new_mode,
            _ => {}
        })
    }

    fn chown(&self, path: &str, new_uid: u32, new_gid: u32) -> TResult<()> {
        self.update(path, |n| match n {
            Node::File { uid, gid, .. } | Node::Dir { uid, gid, .. } => {
                *uid = new_uid;
                *gid = new_gid;
            }
            _ => {}
        })
    }

    fn set_mtime(&self, path: &str, new_mtime: i64) -> TResult<()> {
        self.update(path, |n| match n {
            Node::File { mtime, .. } | Node::Dir { mtime, .. } => *mtime = new_mtime,
            _ => {}
        })
    }

    /// Only read-only commands reach here (operations never run a mutating command
    /// in a dry-run); they see the real target, not the planned writes.
    fn exec(&self, request: &ExecRequest) -> TResult<ExecOutput> {
        self.inner.exec(request)
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
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::local::Local;

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
