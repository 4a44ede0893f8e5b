//! A POSIX file system driven by shell commands: every [`Target`](super::Target) file
//! primitive as a small `/bin/sh` script (GNU/busybox `stat -c`, `mktemp`, `mv -T`
//! where there is one), run through any [`Exec`].
//!
//! This is what `become` is: the same scripts through `sudo -n`, over SSH (the
//! session's shared root shell, see `ssh::shell`) or on the local machine
//! ([`super::local_root`]). A transport that can only run commands (a container,
//! `kubectl exec`) gets a file system from it too.
//!
//! * `write` streams the new content through the script's stdin into a temporary file
//!   next to the target (no copy left in a user-writable place), keeps the replaced
//!   file's owner, fsyncs and renames it over: atomic and durable as the other
//!   targets' `write`.
//! * Paths are passed as positional arguments, never spliced into the script, and a
//!   relative one gets `./` so that a leading `-` is never an option.
//! * Tool errors are turned into the phrases the local target uses ("no such file or
//!   directory"), so a message does not depend on how the host was reached.

mod scripts;

use super::{Meta, TResult, TargetError};
pub(crate) use scripts::{clean_stderr, kind_of, safe_arg, sudo_refusal};
use scripts::{COPY_SCRIPT, LIST_SCRIPT, RN, STAT_FORMAT, WRITE_SCRIPT};

/// What a script produced.
#[derive(Debug, Default)]
pub struct ScriptOutput {
    /// `None` when the process died of a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Something that runs a script on a host: `/bin/sh -c SCRIPT tend ARGS…`, with
/// `stdin`, waiting for it to end.
pub trait Exec {
    /// The host, for messages.
    fn host(&self) -> &str;
    /// The account that asks `sudo -n` when the scripts run through it (named when
    /// sudo refuses); `None` when they run as that account itself.
    fn sudo_user(&self) -> Option<&str>;
    fn run(&self, script: &str, args: &[&str], stdin: &[u8]) -> TResult<ScriptOutput>;
}

/// The file primitives of a host, as scripts run through `E`.
pub struct ShellFs<E> {
    exec: E,
}

impl<E: Exec> ShellFs<E> {
    pub fn new(exec: E) -> Self {
        ShellFs { exec }
    }

    fn name(&self) -> &str {
        self.exec.host()
    }

    /// Run a helper script (`/bin/sh -c`, `LC_ALL=C`, with `rn` defined); a refusal
    /// of sudo is an error of its own.
    pub fn script(&self, script: &str, args: &[&str], stdin: &[u8]) -> TResult<ScriptOutput> {
        tracing::debug!(host = %self.name(), script = %script.lines().next().unwrap_or(""), "helper command");
        let full = format!("export LC_ALL=C\n{RN}{script}");
        let out = self.exec.run(&full, args, stdin)?;
        if let Some(user) = self.exec.sudo_user() {
            if let Some(e) = sudo_refusal(self.name(), user, out.code, &out.stdout, &out.stderr) {
                return Err(e);
            }
        }
        Ok(out)
    }

    /// A helper script that must succeed; its error names `path`.
    pub fn script_ok(
        &self,
        path: &str,
        script: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> TResult<ScriptOutput> {
        let out = self.script(script, args, stdin)?;
        if out.code != Some(0) {
            return Err(TargetError::path(
                self.name(),
                path,
                clean_stderr(&out.stderr, out.code),
            ));
        }
        Ok(out)
    }

    /// `lstat`: `None` when the path does not exist.
    pub fn stat(&self, path: &str) -> TResult<Option<Meta>> {
        let script = format!("stat -c '{STAT_FORMAT}' -- \"$1\"");
        let arg = safe_arg(path);
        let out = self.script(&script, &[&arg], &[])?;
        if out.code != Some(0) {
            let why = clean_stderr(&out.stderr, out.code);
            if why == "no such file or directory" || why == "not a directory" {
                return Ok(None);
            }
            return Err(TargetError::path(self.name(), path, why));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = text.trim().split('|').collect();
        let parsed = (|| {
            let raw = u32::from_str_radix(f.first()?, 16).ok()?;
            Some(Meta {
                kind: kind_of(raw),
                size: f.get(1)?.parse().ok()?,
                mode: raw & 0o7777,
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                mtime: f.get(4)?.parse().ok()?,
            })
        })();
        parsed.map(Some).ok_or_else(|| {
            TargetError::path(
                self.name(),
                path,
                format!("cannot parse `stat` output: {}", text.trim()),
            )
        })
    }

    pub fn read(&self, path: &str) -> TResult<Vec<u8>> {
        let arg = safe_arg(path);
        let out = self.script_ok(path, "cat -- \"$1\"", &[&arg], &[])?;
        Ok(out.stdout)
    }

    pub fn read_link(&self, path: &str) -> TResult<String> {
        let arg = safe_arg(path);
        let out = self.script_ok(path, "readlink -- \"$1\"", &[&arg], &[])?;
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        if s.ends_with('\n') {
            s.pop();
        }
        Ok(s)
    }

    /// Names of the entries of a directory, sorted.
    pub fn list_dir(&self, path: &str) -> TResult<Vec<String>> {
        let arg = safe_arg(path);
        let out = self.script_ok(path, LIST_SCRIPT, &[&arg], &[])?;
        let mut names: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn write(&self, path: &str, data: &[u8], mode: u32) -> TResult<()> {
        let (p, d) = (safe_arg(path), safe_arg(super::parent(path)));
        let m = format!("{:o}", mode & 0o7777);
        self.script_ok(path, WRITE_SCRIPT, &[&p, &d, &m], data)?;
        Ok(())
    }

    /// `cp` on the host, keeping the mode; durable like `write`.
    pub fn copy_file(&self, from: &str, to: &str) -> TResult<()> {
        let (a, b, d) = (safe_arg(from), safe_arg(to), safe_arg(super::parent(to)));
        self.script_ok(from, COPY_SCRIPT, &[&a, &b, &d], &[])?;
        Ok(())
    }

    pub fn mkdir(&self, path: &str, mode: u32) -> TResult<()> {
        let (p, m) = (safe_arg(path), format!("{:o}", mode & 0o7777));
        self.script_ok(path, "mkdir -m \"$2\" -- \"$1\"", &[&p, &m], &[])?;
        Ok(())
    }

    pub fn remove_file(&self, path: &str) -> TResult<()> {
        self.script_ok(path, "rm -- \"$1\"", &[&safe_arg(path)], &[])?;
        Ok(())
    }

    pub fn remove_dir(&self, path: &str) -> TResult<()> {
        self.script_ok(path, "rmdir -- \"$1\"", &[&safe_arg(path)], &[])?;
        Ok(())
    }

    /// rename(2) semantics (see `rn`).
    pub fn rename(&self, from: &str, to: &str) -> TResult<()> {
        let (a, b) = (safe_arg(from), safe_arg(to));
        self.script_ok(from, "rn \"$1\" \"$2\"", &[&a, &b], &[])?;
        Ok(())
    }

    pub fn symlink(&self, link_target: &str, path: &str) -> TResult<()> {
        let p = safe_arg(path);
        let script = r#"if [ -e "$2" ] || [ -L "$2" ]; then echo "ln: $2: File exists" >&2; exit 1; fi
ln -s -- "$1" "$2""#;
        self.script_ok(path, script, &[link_target, &p], &[])?;
        Ok(())
    }

    pub fn chmod(&self, path: &str, mode: u32) -> TResult<()> {
        let (p, m) = (safe_arg(path), format!("{:o}", mode & 0o7777));
        self.script_ok(path, "chmod \"$2\" -- \"$1\"", &[&p, &m], &[])?;
        Ok(())
    }

    /// `chown -h`: a symlink itself, not what it points to.
    pub fn chown(&self, path: &str, uid: u32, gid: u32) -> TResult<()> {
        let (p, o) = (safe_arg(path), format!("{uid}:{gid}"));
        self.script_ok(path, "chown -h \"$2\" -- \"$1\"", &[&p, &o], &[])?;
        Ok(())
    }

    pub fn set_mtime(&self, path: &str, mtime: i64) -> TResult<()> {
        let stamp = chrono::DateTime::from_timestamp(mtime.max(0), 0)
            .map(|t| t.format("%Y%m%d%H%M.%S").to_string())
            .unwrap_or_else(|| "197001010000.00".into());
        let p = safe_arg(path);
        let script = r#"if [ ! -e "$1" ]; then echo "touch: $1: No such file or directory" >&2; exit 1; fi
TZ=UTC0 touch -c -m -t "$2" -- "$1""#;
        self.script_ok(path, script, &[&p, &stamp], &[])?;
        Ok(())
    }

    /// SHA-256 (hex) computed on the host: the bytes do not travel.
    pub fn hash(&self, path: &str) -> TResult<String> {
        let arg = safe_arg(path);
        let out = self.script_ok(path, "sha256sum -- \"$1\"", &[&arg], &[])?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.split_whitespace().next() {
            Some(h) if h.len() == 64 => Ok(h.to_string()),
            _ => Err(TargetError::path(
                self.name(),
                path,
                "sha256sum gave no hash",
            )),
        }
    }

    /// Where the directory `dir` really is (`pwd -P`); `None` when it does not exist.
    pub fn real_dir(&self, dir: &str) -> TResult<Option<String>> {
        let arg = safe_arg(dir);
        let script = r#"if [ ! -e "$1" ]; then exit 0; fi
cd -P -- "$1" && pwd -P"#;
        let out = self.script_ok(dir, script, &[&arg], &[])?;
        let text = String::from_utf8_lossy(&out.stdout)
            .trim_end_matches('\n')
            .to_string();
        Ok((!text.is_empty()).then_some(text))
    }

    /// [`Target::resolve_dir`](super::Target::resolve_dir).
    pub fn resolve_dir(&self, dir: &str) -> TResult<String> {
        super::path::resolve_missing(dir, |p| self.real_dir(p))
    }
}
