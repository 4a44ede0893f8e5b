//! The scripts [`ShellFs`](super::ShellFs) runs, and how their answers are read:
//! `stat` output, tool error lines, sudo's refusals.

use crate::transport::{Fault, Kind, TargetError};

/// The stat(1) format of `ShellFs::stat`: raw mode in hex, size, uid, gid, mtime.
pub(super) const STAT_FORMAT: &str = "%f|%s|%u|%g|%Y";

/// `rn FROM TO`: rename(2) semantics (replaces a file or symlink at TO, never moves
/// into a directory). `mv -T` where available (GNU, busybox), else plain `mv` after
/// refusing a directory target.
pub(super) const RN: &str = r#"rn() {
  if e=$(mv -fT -- "$1" "$2" 2>&1); then return 0; fi
  case $e in
    *"invalid option"*|*"unrecognized option"*|*"illegal option"*|*sage:*)
      if [ -d "$2" ]; then echo "mv: $2: Is a directory" >&2; return 1; fi
      mv -f -- "$1" "$2";;
    *) printf '%s\n' "$e" >&2; return 1;;
  esac
}
"#;

/// `write`: stdin → temporary file next to the target → owner, mode, fsync →
/// rename. Args: path, its directory, mode (octal). A directory at the path is
/// refused here rather than by a `stat` first: one command, not two.
pub(super) const WRITE_SCRIPT: &str = r#"set -e
if [ -d "$1" ] && [ ! -L "$1" ]; then echo "write: $1: Is a directory" >&2; exit 1; fi
tmp=$(mktemp "$2/.tend-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
if [ -f "$1" ] && [ ! -L "$1" ]; then chown "$(stat -c %u:%g -- "$1")" "$tmp"; fi
chmod "$3" "$tmp"
sync "$tmp" 2>/dev/null || sync
rn "$tmp" "$1"
"#;

/// `copy_file` on the host. Args: from, to, directory of `to`.
pub(super) const COPY_SCRIPT: &str = r#"set -e
if [ ! -f "$1" ]; then
  if [ -e "$1" ]; then echo "cp: $1: Not a regular file" >&2; else echo "cp: $1: No such file or directory" >&2; fi
  exit 1
fi
mode=$(stat -L -c %a -- "$1")
tmp=$(mktemp "$3/.tend-XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cp -- "$1" "$tmp"
chmod "$mode" "$tmp"
sync "$tmp" 2>/dev/null || sync
rn "$tmp" "$2"
"#;

pub(super) const LIST_SCRIPT: &str = r#"if [ ! -e "$1" ]; then echo "ls: $1: No such file or directory" >&2; exit 1; fi
if [ ! -d "$1" ]; then echo "ls: $1: Not a directory" >&2; exit 1; fi
cd -- "$1" || exit 1
for f in .* *; do
  case $f in .|..) continue;; esac
  if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
done
"#;

/// The errno text at the end of a tool's error line, phrased like the local target.
pub(crate) fn clean_stderr(stderr: &[u8], code: Option<i32>) -> String {
    let text = String::from_utf8_lossy(stderr);
    let Some(line) = text.lines().rev().map(str::trim).find(|l| !l.is_empty()) else {
        return match code {
            Some(c) => format!("failed (exit status {c})"),
            None => "failed".into(),
        };
    };
    const KNOWN: &[(&str, &str)] = &[
        ("No such file or directory", "no such file or directory"),
        ("Permission denied", "permission denied"),
        ("File exists", "already exists"),
        ("Directory not empty", "directory not empty"),
        ("Is a directory", "is a directory"),
        ("Not a directory", "not a directory"),
        ("Operation not permitted", "operation not permitted"),
        ("No space left on device", "no space left on device"),
        ("Read-only file system", "read-only file system"),
        ("Not a regular file", "not a regular file"),
        ("Invalid argument", "invalid argument"),
    ];
    for (needle, said) in KNOWN {
        if line.ends_with(needle) {
            return (*said).to_string();
        }
    }
    line.to_string()
}

pub(crate) fn kind_of(mode: u32) -> Kind {
    match mode & 0o170000 {
        0o100000 => Kind::File,
        0o040000 => Kind::Dir,
        0o120000 => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// `./name` for a relative path, so a leading `-` is never an option.
pub(crate) fn safe_arg(path: &str) -> String {
    if path.starts_with('/') || path.starts_with("./") {
        path.to_string()
    } else {
        format!("./{path}")
    }
}

/// sudo said no (needs a password, not allowed, not installed): the reason, phrased
/// for the user, from what a command run through `sudo -n` as `user` produced.
pub(crate) fn sudo_refusal(
    host: &str,
    user: &str,
    code: Option<i32>,
    stdout: &[u8],
    stderr: &[u8],
) -> Option<TargetError> {
    if !stdout.is_empty() {
        return None;
    }
    let err = String::from_utf8_lossy(stderr);
    let first = err.lines().next().unwrap_or("").trim();
    let msg = match code {
        Some(1)
            if first.starts_with("sudo:")
                && (first.contains("password is required")
                    || first.contains("terminal is required")) =>
        {
            format!(
                "sudo on {host} needs a password; tend uses `sudo -n`: allow NOPASSWD for \
                 {user} or run without --become"
            )
        }
        Some(1)
            if first.contains("is not in the sudoers file")
                || first.contains("is not allowed to execute")
                || first.starts_with("Sorry, user") =>
        {
            format!(
                "{user} may not use sudo on {host} ({first}); allow it in sudoers or run \
                 without --become"
            )
        }
        Some(127) if first.contains("sudo") && first.contains("not found") => {
            let msg = format!("sudo is not installed on {host}; --become needs it");
            return Some(TargetError::host(host, msg));
        }
        _ => return None,
    };
    Some(TargetError::host_fault(host, Fault::PermissionDenied, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(
            clean_stderr(b"mv: cannot stat 'x': No such file or directory\n", Some(1)),
            "no such file or directory"
        );
        assert_eq!(clean_stderr(b"", Some(3)), "failed (exit status 3)");
        assert_eq!(
            clean_stderr(b"rmdir: failed to remove 'd': Directory not empty", Some(1)),
            "directory not empty"
        );
        assert_eq!(safe_arg("-rf"), "./-rf");
        assert_eq!(safe_arg("/etc/x"), "/etc/x");
        assert_eq!(kind_of(0o100644), Kind::File);
        assert_eq!(kind_of(0o120777), Kind::Symlink);
    }

    #[test]
    fn sudo_refusals() {
        let said = |code, err: &str| {
            sudo_refusal("web1", "deploy", Some(code), b"", err.as_bytes())
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(said(1, "sudo: a password is required\n").contains("needs a password"));
        assert!(said(1, "deploy is not in the sudoers file.\n").contains("may not use sudo"));
        assert_eq!(said(1, "mv: cannot move\n"), "");
        assert!(sudo_refusal("h", "u", Some(1), b"x", b"sudo: a password is required").is_none());
    }
}
