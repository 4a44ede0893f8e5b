//! Path resolution done through the [`Target`] trait, so it means the same on every
//! target: where a path really leads (as the kernel would walk it), used by the write
//! scope and by the journal's guard against symlinks swapped in after a run.

use super::{Kind, Target};

/// How many symlinks one path may pass through (Linux's own limit).
const MAX_LINKS: usize = 40;

/// The path with every symlink in its parent directories (and, with `follow_last`,
/// the last component) replaced by where it leads, as the kernel would walk it.
/// Components that do not exist yet are taken as they are.
pub fn resolve<T: Target + ?Sized>(t: &T, path: &str, follow_last: bool) -> Result<String, String> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    let mut missing = false;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "." | "" => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let here = format!(
            "/{}",
            [done.as_slice(), std::slice::from_ref(&part)]
                .concat()
                .join("/")
        );
        let last = todo.is_empty();
        if missing || (last && !follow_last) {
            done.push(part);
            continue;
        }
        match t.stat(&here).map_err(|e| e.to_string())? {
            Some(m) if m.kind == Kind::Symlink => {
                links += 1;
                if links > MAX_LINKS {
                    return Err("too many levels of symbolic links".into());
                }
                let target = t.read_link(&here).map_err(|e| e.to_string())?;
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(
                    target
                        .split('/')
                        .filter(|p| !p.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            Some(_) => done.push(part),
            None => {
                missing = true;
                done.push(part);
            }
        }
    }
    Ok(format!("/{}", done.join("/")))
}

/// [`Target::resolve_dir`] from a `realpath` that answers `None` for a missing path:
/// the deepest existing ancestor is resolved, the missing rest kept as written.
pub fn resolve_missing(
    dir: &str,
    mut realpath: impl FnMut(&str) -> super::TResult<Option<String>>,
) -> super::TResult<String> {
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
