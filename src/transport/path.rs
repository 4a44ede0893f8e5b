//! Path resolution as the kernel does it, over any view of a file system: the dry-run
//! overlay (planned entries over real ones) and the scope check both need to know
//! where a path really leads, and must agree with the system calls of the real run.

use super::TResult;

/// How many symlinks one path may pass through (Linux's own limit, `ELOOP` beyond).
pub const MAX_LINKS: usize = 40;

/// What one path component is, as `lstat` would say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    Dir,
    /// A symlink, with its target as stored.
    Link(String),
    /// Anything else that exists (a file, a device…): nothing can be below it.
    Other,
    Missing,
}

/// Where a walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Walked {
    /// The path with every symlink it passes through replaced by where it leads (the
    /// last component too when followed): no symlink and no `..` among its directories.
    /// The last component may not exist. Relative paths stay relative.
    At(String),
    /// A directory on the way does not exist (`ENOENT`).
    NoEntry,
    /// Something on the way is not a directory (`ENOTDIR`), or a path ending in `/`
    /// names a non-directory.
    NotDir,
    /// More than [`MAX_LINKS`] symlinks on the way (`ELOOP`).
    Loop,
}

/// What the system calls say for [`Walked::Loop`].
pub const LOOP_MESSAGE: &str = "too many levels of symbolic links";

/// Walk `path` one component at a time, asking `lookup` what each (already resolved)
/// prefix is. `..` is taken after the symlink before it is followed, so it leads to the
/// parent of the link's target, not of its name: that is what the kernel does and what
/// a textual `a/l/..` → `a` gets wrong. A path ending in `/`, `/.` or `/..` follows its
/// last component whatever `follow_last` says, and must be a directory.
pub fn walk(
    path: &str,
    follow_last: bool,
    mut lookup: impl FnMut(&str) -> TResult<Hop>,
) -> TResult<Walked> {
    let dir_only = path.contains('/') && matches!(path.rsplit('/').next(), Some("" | "." | ".."));
    let follow_last = follow_last || dir_only;
    let mut absolute = path.starts_with('/');
    let mut todo: Vec<String> = components(path);
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            match done.last() {
                Some(p) if p != ".." => {
                    done.pop();
                }
                // Above the start of a relative path: the real target knows where.
                _ if !absolute => done.push(part),
                _ => {} // `/..` is `/`
            }
            continue;
        }
        let last = todo.is_empty();
        if last && !follow_last {
            done.push(part);
            break;
        }
        let here = key(absolute, &done, Some(&part));
        match lookup(&here)? {
            Hop::Link(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Ok(Walked::Loop);
                }
                if target.starts_with('/') {
                    absolute = true;
                    done.clear();
                }
                todo.extend(components(&target));
                // A link's target ending in `/` is itself only a directory's name.
            }
            Hop::Dir => done.push(part),
            Hop::Missing if last => done.push(part),
            Hop::Other if last && !dir_only => done.push(part),
            Hop::Missing => return Ok(Walked::NoEntry),
            Hop::Other => return Ok(Walked::NotDir),
        }
    }
    Ok(Walked::At(key(absolute, &done, None)))
}

/// The components of a path in reverse (so that `pop` gives the next), without the
/// empty and `.` ones.
fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .rev()
        .map(String::from)
        .collect()
}

fn key(absolute: bool, done: &[String], next: Option<&str>) -> String {
    let mut parts: Vec<&str> = done.iter().map(String::as_str).collect();
    parts.extend(next);
    match (absolute, parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".to_string(),
        (false, false) => parts.join("/"),
    }
}

/// The path with every symlink in its parent directories (and, with `follow_last`,
/// the last component) replaced by where it leads, as the kernel would walk it, on
/// any target. Components that do not exist yet are taken as they are.
pub fn resolve<T: super::Target + ?Sized>(
    t: &T,
    path: &str,
    follow_last: bool,
) -> Result<String, String> {
    use super::Kind;
    let mut missing = false;
    let walked = walk(path, follow_last, |p| {
        if missing {
            return Ok(Hop::Dir);
        }
        Ok(match t.stat(p)? {
            Some(m) if m.kind == Kind::Symlink => Hop::Link(t.read_link(p)?),
            // What is below a missing component is what a step would create there.
            None => {
                missing = true;
                Hop::Dir
            }
            Some(_) => Hop::Dir,
        })
    })
    .map_err(|e| e.to_string())?;
    match walked {
        Walked::At(physical) => Ok(physical),
        Walked::Loop => Err(LOOP_MESSAGE.into()),
        // Every component counts as a directory above.
        Walked::NoEntry | Walked::NotDir => Err(format!("{path}: cannot be resolved")),
    }
}

/// [`Target::resolve_dir`](super::Target::resolve_dir) from a `realpath` that answers
/// `None` for a missing path: the deepest existing ancestor is resolved, the missing
/// rest kept as written.
pub fn resolve_missing(
    dir: &str,
    mut realpath: impl FnMut(&str) -> TResult<Option<String>>,
) -> TResult<String> {
    let mut base = dir.trim_end_matches('/').to_string();
    if base.is_empty() {
        base.push('/');
    }
    let mut rest: Vec<String> = Vec::new();
    loop {
        if let Some(real) = realpath(&base)? {
            rest.reverse();
            let mut out = real;
            for name in rest {
                out = super::join(&out, &name);
            }
            return Ok(out);
        }
        let up = super::parent(&base).to_string();
        if up == base || up == "." {
            return Ok(dir.to_string());
        }
        rest.push(base.rsplit('/').next().unwrap_or_default().to_string());
        base = up;
    }
}

/// `rel` taken from `base` when it is relative; `.` and `..` left to the target.
pub fn absolute(base: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        rel.to_string()
    } else {
        super::join(base, rel.trim_start_matches("./"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn fs(entries: &[(&str, Hop)]) -> BTreeMap<String, Hop> {
        entries
            .iter()
            .map(|(p, h)| (p.to_string(), h.clone()))
            .collect()
    }

    fn resolve(fs: &BTreeMap<String, Hop>, path: &str, follow: bool) -> Walked {
        walk(path, follow, |p| {
            Ok(fs
                .get(p)
                .cloned()
                .unwrap_or(if p == "/" { Hop::Dir } else { Hop::Missing }))
        })
        .unwrap()
    }

    #[test]
    fn follows_links_like_the_kernel() {
        let f = fs(&[
            ("/a", Hop::Dir),
            ("/a/b", Hop::Dir),
            ("/a/f", Hop::Other),
            ("/l", Hop::Link("a/b".into())),
            ("/abs", Hop::Link("/a".into())),
            ("x", Hop::Dir),
        ]);
        let at = |p: &str| Walked::At(p.to_string());
        assert_eq!(resolve(&f, "/l/x", false), at("/a/b/x"));
        assert_eq!(resolve(&f, "/l", false), at("/l"));
        assert_eq!(resolve(&f, "/l", true), at("/a/b"));
        assert_eq!(resolve(&f, "/l/", false), at("/a/b"));
        // `..` after a link: the parent of where it leads.
        assert_eq!(resolve(&f, "/l/../f", false), at("/a/f"));
        assert_eq!(resolve(&f, "/abs/b/../../..", false), at("/"));
        assert_eq!(resolve(&f, "/nope/x", false), Walked::NoEntry);
        assert_eq!(resolve(&f, "/a/f/x", false), Walked::NotDir);
        assert_eq!(resolve(&f, "/a/f/", false), Walked::NotDir);
        assert_eq!(resolve(&f, "x/../../y", false), at("../y"));
    }

    #[test]
    fn loops_are_an_error() {
        let f = fs(&[("/a", Hop::Link("b".into())), ("/b", Hop::Link("a".into()))]);
        let r = walk("/a/x", false, |p| Ok(f.get(p).cloned().unwrap_or(Hop::Dir)));
        assert_eq!(r.unwrap(), Walked::Loop);
    }
}
