//! A recipe's declared write scope (`//! scope: /var/log/app/**, /etc/logrotate.d/app`):
//! the paths its operations may create, change or remove. When a recipe declares one,
//! every mutating call is checked against it *before* the operation plans or applies,
//! so a vetted recipe cannot be steered by a parameter into touching anything else.
//!
//! Rules (the same in dry-runs and real runs):
//! - Patterns are absolute globs; `*` stays within one path component, `**` crosses
//!   directories. `/dir/**` covers what is below `/dir`, not `/dir` itself: a recipe
//!   that creates or removes the directory lists it too (`/dir, /dir/**`).
//! - Paths a scoped recipe mutates must be absolute and free of `..`; `a//b/./c` is
//!   read as `a/b/c`.
//! - Symlinks in the parent directories are resolved on the target, and the path they
//!   lead to must be in scope as well: a link inside the scope that points elsewhere
//!   does not open a way out.
//! - An operation on a directory tree (`fs::remove`, `fs::rename` of a directory)
//!   checks every path inside it; `fs::dir` checks the parents it would create.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::transport::path::resolve;
use crate::transport::{join, Kind, Target};

#[derive(Debug, Clone)]
pub struct Scope {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Scope {
    /// Compile the declared patterns; an error names the bad one.
    pub fn new(patterns: &[String]) -> Result<Scope, String> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            if !p.starts_with('/') {
                return Err(format!(
                    "scope pattern {p:?} must be an absolute path (like /var/log/app/**)"
                ));
            }
            if p.split('/').any(|c| c == "..") {
                return Err(format!("scope pattern {p:?} must not contain `..`"));
            }
            let glob = GlobBuilder::new(&normalize(p))
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("scope pattern {p:?}: {e}"))?;
            b.add(glob);
        }
        let set = b.build().map_err(|e| format!("scope: {e}"))?;
        Ok(Scope {
            patterns: patterns.to_vec(),
            set,
        })
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The patterns as written, for messages: `/var/log/app/**, /etc/x`.
    pub fn describe(&self) -> String {
        if self.patterns.is_empty() {
            "nothing: the recipe declares an empty scope".into()
        } else {
            self.patterns.join(", ")
        }
    }

    /// Whether a normalised absolute path matches one of the patterns.
    pub fn matches(&self, path: &str) -> bool {
        self.set.is_match(path)
    }

    /// Refuse `path` unless it, and the path its parent symlinks lead to, are in scope.
    /// With `contents_of`, every path below that directory (when it is one) is checked
    /// as if it were below `path`: for `fs::remove` of a tree that is `path` itself,
    /// for `fs::rename` of a directory the source, whose contents end up under `path`.
    /// With `follow_last`, a symlink as the last component is followed as well (for
    /// operations such as chown that act on what a link points to). Returns the
    /// reason on refusal (without the operation's name).
    pub fn check(
        &self,
        t: &dyn Target,
        path: &str,
        contents_of: Option<&str>,
        follow_last: bool,
    ) -> Result<(), String> {
        let outside = |extra: &str| {
            format!(
                "{path}: outside the recipe's declared scope ({}){extra}",
                self.describe()
            )
        };
        if !path.starts_with('/') {
            return Err(outside(
                ": a recipe with a declared scope must use absolute paths",
            ));
        }
        if path.split('/').any(|c| c == "..") {
            return Err(outside(": `..` is not allowed in a scoped recipe's paths"));
        }
        let lexical = normalize(path);
        if !self.matches(&lexical) {
            return Err(outside(""));
        }
        let physical = resolve(t, &lexical, follow_last).map_err(|e| outside(&format!(": {e}")))?;
        if !self.matches(&physical) {
            return Err(outside(&format!(" (through a symlink it is {physical})")));
        }
        let dir = contents_of.filter(|d| matches!(t.stat(d), Ok(Some(m)) if m.kind == Kind::Dir));
        if let Some(dir) = dir {
            let mut inside = Vec::new();
            descendants(t, dir, "", &mut inside).map_err(|e| outside(&format!(": {e}")))?;
            for rel in inside {
                for base in [&lexical, &physical] {
                    let p = join(base, &rel);
                    if !self.matches(&p) {
                        return Err(format!(
                            "{path}: {p} inside it is outside the recipe's declared scope ({})",
                            self.describe()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `a//b/./c/` → `/a/b/c`. Only for paths without `..`.
pub fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Every path below directory `dir`, relative to it; symlinks are not followed.
fn descendants(t: &dyn Target, dir: &str, rel: &str, out: &mut Vec<String>) -> Result<(), String> {
    let here = if rel.is_empty() {
        dir.to_string()
    } else {
        join(dir, rel)
    };
    for name in t.list_dir(&here).map_err(|e| e.to_string())? {
        let r = if rel.is_empty() {
            name.clone()
        } else {
            join(rel, &name)
        };
        out.push(r.clone());
        if matches!(t.stat(&join(dir, &r)), Ok(Some(m)) if m.kind == Kind::Dir) {
            descendants(t, dir, &r, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(p: &[&str]) -> Scope {
        Scope::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn globs() {
        let s = scope(&["/var/log/app/**", "/etc/logrotate.d/app", "/srv/*.conf"]);
        assert!(s.matches("/var/log/app/a.log"));
        assert!(s.matches("/var/log/app/x/y/z.log"));
        assert!(!s.matches("/var/log/app"));
        assert!(!s.matches("/var/log/other"));
        assert!(s.matches("/etc/logrotate.d/app"));
        assert!(!s.matches("/etc/logrotate.d/app2"));
        assert!(s.matches("/srv/a.conf"));
        assert!(!s.matches("/srv/x/a.conf"));
        assert!(Scope::new(&["relative/**".into()]).is_err());
        assert!(Scope::new(&["/a/../b".into()]).is_err());
        assert!(Scope::new(&["/a/[".into()]).is_err());
    }

    #[test]
    fn normalizes() {
        assert_eq!(normalize("/a//b/./c/"), "/a/b/c");
        assert_eq!(normalize("/"), "/");
    }
}
