//! Where operations act. Every effect on a machine goes through [`Target`]: the
//! local machine ([`local::Local`]), an SSH host, or the dry-run [`overlay::Overlay`]
//! that wraps either and keeps planned writes in memory.
//!
//! Paths are POSIX strings, not `PathBuf`s, because a target may be another machine.
//! `stat` never follows a final symlink (it is `lstat`): operations must see links as
//! links to plan them correctly.

pub mod local;
pub mod local_root;
pub mod overlay;
pub mod path;
pub mod posix;
pub mod ssh;

use std::collections::BTreeMap;
use std::time::Duration;

/// Facts about a host, shown to recipes as `host()`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostInfo {
    pub name: String,
    pub address: String,
    pub user: String,
    /// Inventory variables, typed as the inventory wrote them.
    pub vars: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Other => "other",
        }
    }
}

/// What `lstat` says about a path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits only (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
}

/// One command to run on a target through `sh -c`.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: String,
    /// Passed through the environment, never through argv, so secrets stay out of `ps`.
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    /// Run this one command as root through `sudo -n` (`sh(cmd, #{become: true})`),
    /// whatever the host's own setting.
    pub become_: bool,
    /// The run's token: once cancelled, the command is stopped like a timed-out one
    /// (`timed_out` in the output). `timeout` already holds the run's deadline.
    pub cancel: Option<crate::cancel::CancelToken>,
}

impl ExecRequest {
    pub fn new(command: impl Into<String>) -> Self {
        ExecRequest {
            command: command.into(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

/// What kind of failure a [`TargetError`] is, so that callers decide on a kind, never
/// on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    NotFound,
    /// The file system, or sudo, said no.
    PermissionDenied,
    AlreadyExists,
    /// A file where a directory was expected, or the other way round.
    WrongType,
    NoSpace,
    /// The host could not be reached, or the connection to it was lost.
    Connection,
    /// The host's key is unknown, changed or revoked.
    HostKey,
    /// The login was refused.
    Auth,
    Other,
}

impl Fault {
    /// The kind of a path error from its message, which the targets phrase from a
    /// fixed vocabulary (`describe_io`, the shell scripts' `clean_stderr`, SFTP status
    /// codes): one mapping in one place, not a guess at arbitrary text.
    fn of_path_message(message: &str) -> Fault {
        match message {
            "no such file or directory" => Fault::NotFound,
            "permission denied" | "operation not permitted" => Fault::PermissionDenied,
            "already exists" => Fault::AlreadyExists,
            "is a directory" | "not a directory" | "not a regular file" | "directory not empty" => {
                Fault::WrongType
            }
            m if m.starts_with("no space left") || m.contains("disk full") => Fault::NoSpace,
            _ => Fault::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::NotFound => "not_found",
            Fault::PermissionDenied => "permission_denied",
            Fault::AlreadyExists => "already_exists",
            Fault::WrongType => "wrong_type",
            Fault::NoSpace => "no_space",
            Fault::Connection => "connection",
            Fault::HostKey => "host_key",
            Fault::Auth => "auth",
            Fault::Other => "other",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{host}: {path}: {message}")]
    Path {
        host: String,
        path: String,
        message: String,
        fault: Fault,
    },
    #[error("{host}: {message}")]
    Host {
        host: String,
        message: String,
        fault: Fault,
    },
}

impl TargetError {
    pub fn path(host: &str, path: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        TargetError::Path {
            host: host.to_string(),
            path: path.to_string(),
            fault: Fault::of_path_message(&message),
            message,
        }
    }

    pub fn host(host: &str, message: impl Into<String>) -> Self {
        Self::host_fault(host, Fault::Other, message)
    }

    /// A failure of the host as a whole, of a known kind.
    pub fn host_fault(host: &str, fault: Fault, message: impl Into<String>) -> Self {
        TargetError::Host {
            host: host.to_string(),
            message: message.into(),
            fault,
        }
    }

    /// The same error, said to be of kind `fault`.
    pub fn with_fault(mut self, kind: Fault) -> Self {
        match &mut self {
            TargetError::Path { fault, .. } | TargetError::Host { fault, .. } => *fault = kind,
        }
        self
    }

    pub fn fault(&self) -> Fault {
        match self {
            TargetError::Path { fault, .. } | TargetError::Host { fault, .. } => *fault,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            TargetError::Path { message, .. } | TargetError::Host { message, .. } => message,
        }
    }
}

pub type TResult<T> = std::result::Result<T, TargetError>;

/// The primitives every target provides. Operations are written against this and
/// nothing else, so a new target (SSH, container…) needs no change to any operation.
pub trait Target: Send + Sync {
    fn info(&self) -> &HostInfo;

    /// The operating system, as `host().os` shows it (`linux`). Not part of
    /// [`HostInfo`]: a remote host is asked only when a recipe wants to know.
    fn os(&self) -> String;

    /// `lstat`: `None` when the path does not exist.
    fn stat(&self, path: &str) -> TResult<Option<Meta>>;
    fn read(&self, path: &str) -> TResult<Vec<u8>>;
    fn read_link(&self, path: &str) -> TResult<String>;
    /// Names (not paths) of the entries of a directory, sorted.
    fn list_dir(&self, path: &str) -> TResult<Vec<String>>;

    /// Create or replace a regular file atomically (temporary file + rename) and
    /// durably (fsync), with `mode`. An existing file keeps its owner where permitted.
    fn write(&self, path: &str, data: &[u8], mode: u32) -> TResult<()>;
    /// Copy a regular file, keeping its mode; durable like `write`.
    fn copy_file(&self, from: &str, to: &str) -> TResult<()> {
        let data = self.read(from)?;
        let mode = self.stat(from)?.map(|m| m.mode).unwrap_or(0o644);
        self.write(to, &data, mode)
    }
    /// Create one directory (its parent must exist).
    fn mkdir(&self, path: &str, mode: u32) -> TResult<()>;
    /// Remove a file or a symlink.
    fn remove_file(&self, path: &str) -> TResult<()>;
    /// Remove an empty directory.
    fn remove_dir(&self, path: &str) -> TResult<()>;
    fn rename(&self, from: &str, to: &str) -> TResult<()>;
    fn symlink(&self, link_target: &str, path: &str) -> TResult<()>;
    fn chmod(&self, path: &str, mode: u32) -> TResult<()>;
    fn chown(&self, path: &str, uid: u32, gid: u32) -> TResult<()>;
    fn set_mtime(&self, path: &str, mtime: i64) -> TResult<()>;

    fn exec(&self, request: &ExecRequest) -> TResult<ExecOutput>;

    /// This host as root through `sudo -n`, on the same connection: every primitive
    /// of the view works as root (`become` for one operation or a block of them).
    fn elevated(&self) -> TResult<std::sync::Arc<dyn Target>> {
        Err(TargetError::host(
            &self.info().name,
            "this target cannot run file operations as root (become)",
        ))
    }

    /// SHA-256 (hex) of a regular file's bytes: what the journal records of a file a
    /// step left or saved, so a rollback can tell whether it is still that file.
    fn hash(&self, path: &str) -> TResult<String> {
        use sha2::Digest;
        Ok(hex::encode(sha2::Sha256::digest(self.read(path)?)))
    }

    /// Where the absolute directory path `dir` really leads, every symlink resolved
    /// (components that do not exist are kept as written). Recorded with each undo
    /// record and compared before it is reverted.
    fn resolve_dir(&self, dir: &str) -> TResult<String> {
        path::resolve(self, dir, true).map_err(|m| TargetError::path(&self.info().name, dir, m))
    }

    /// The directory relative paths are taken from (the working directory here, the
    /// login directory over SSH), so the journal records absolute paths only.
    fn working_dir(&self) -> TResult<String> {
        Err(TargetError::host(
            &self.info().name,
            "this target has no working directory: use absolute paths",
        ))
    }

    /// The owner new files get on this target, so a dry-run's planned files carry the
    /// owner the real ones will (and an owner-setting step plans exactly).
    fn creator_ids(&self) -> (u32, u32) {
        login_dir_owner(self)
    }

    /// A dry-run view: how far its planned state has moved from the real target. A
    /// real target is its own state.
    fn divergence(&self) -> Divergence {
        Divergence::None
    }

    /// A dry-run view: a step whose effect cannot be planned (a command that was not
    /// run) was passed over; from here on the view cannot vouch for anything.
    fn note_unknown_effect(&self) {}
}

/// How a dry-run's planned state differs from the real target, at one point of the
/// run: what decides whether a check made on the real target is the real run's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// Nothing planned yet: the real target is the planned state.
    None,
    /// Planned changes the view holds exactly: its path checks are exact, but a
    /// command, which runs on the real target, does not see them.
    Known,
    /// An earlier step had effects the plan cannot know (a command not run).
    Unknown,
}

/// Owner of the directory a target starts in (the login user's home over SSH): who
/// new files belong to when nothing else says.
pub fn login_dir_owner<T: Target + ?Sized>(t: &T) -> (u32, u32) {
    t.stat(".")
        .ok()
        .flatten()
        .map(|m| (m.uid, m.gid))
        .unwrap_or((0, 0))
}

/// An io::Error as a sysadmin would phrase it, without Rust's "(os error N)" noise.
pub fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such file or directory".into(),
        PermissionDenied => "permission denied".into(),
        AlreadyExists => "already exists".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

/// The parent directory of a POSIX path (`/` for `/x`, `.` for a bare name).
pub fn parent(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) => "/",
        Some(i) => &trimmed[..i],
        None => ".",
    }
}

/// `dir` joined with `name`, without doubling the slash.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Quote a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("a"), ".");
        assert_eq!(parent("/a/b/"), "/a");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/var/log/app.log"), "/var/log/app.log");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
    }
}

#[cfg(test)]
mod fault_tests {
    use super::*;

    #[test]
    fn path_errors_carry_the_kind_their_words_mean() {
        let io = |k: std::io::ErrorKind| {
            TargetError::path("h", "/x", describe_io(&std::io::Error::from(k))).fault()
        };
        assert_eq!(io(std::io::ErrorKind::NotFound), Fault::NotFound);
        assert_eq!(
            io(std::io::ErrorKind::PermissionDenied),
            Fault::PermissionDenied
        );
        assert_eq!(io(std::io::ErrorKind::AlreadyExists), Fault::AlreadyExists);
        assert_eq!(TargetError::path("h", "/x", "failed").fault(), Fault::Other);
        let e = TargetError::host("h", "x").with_fault(Fault::Auth);
        assert_eq!((e.fault(), e.to_string().as_str()), (Fault::Auth, "h: x"));
    }
}
