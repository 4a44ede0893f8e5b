//! The one error type the CLI sees, and the exit code each kind of failure maps to.
//!
//! Lower layers have their own small error enums (`TargetError`, `OpError`); they
//! convert into `Error` at the boundary so that every message a user reads says
//! what went wrong, where (file:line, host, path) and, when it can, what to do.

use std::path::PathBuf;

use crate::transport::TargetError;

/// Exit codes. Documented in `tend --help` and the README; scripts depend on them.
pub mod exit {
    /// Success; for a dry-run with `--detailed-exitcode`: nothing would change.
    pub const OK: i32 = 0;
    /// The run failed and nothing needed rolling back, or rollback was disabled.
    pub const FAILED: i32 = 1;
    /// Dry-run with `--detailed-exitcode`: there are changes to make.
    pub const CHANGES: i32 = 2;
    /// The run failed and every change it made was rolled back.
    pub const ROLLED_BACK: i32 = 3;
    /// The run failed and rollback could not undo everything (see the report).
    pub const ROLLBACK_INCOMPLETE: i32 = 4;
    /// Bad command line or parameter (`-p`).
    pub const USAGE: i32 = 64;
    /// The recipe does not compile or is otherwise invalid.
    pub const RECIPE: i32 = 65;
    /// A file, run id or host that was named does not exist.
    pub const NOT_FOUND: i32 = 66;
    /// The audit log failed verification.
    pub const TAMPERED: i32 = 67;
    /// A service tend needs cannot be reached (the cluster database), as sysexits'
    /// EX_UNAVAILABLE: try again later.
    pub const UNAVAILABLE: i32 = 69;
    /// A file the user named cannot be created (`tend new`), as sysexits' EX_CANTCREAT.
    pub const CANT_CREATE: i32 = 73;
    /// Another run holds the lock of a host.
    pub const LOCKED: i32 = 75;
    /// The recipe is not vetted and the policy refuses to run it (or a vetting
    /// signature was refused).
    pub const UNVETTED: i32 = 77;
    /// tend itself failed (state dir not writable, I/O error…).
    pub const INTERNAL: i32 = 70;
    /// The run was cancelled by SIGINT (Ctrl-C): stopped and rolled back.
    pub const INTERRUPTED: i32 = 130;
    /// The run was cancelled by SIGTERM: stopped and rolled back.
    pub const TERMINATED: i32 = 143;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("cannot read recipe {path}: {}", describe_io(source))]
    RecipeRead {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A compile error, a bad import or a bad parameter: `location` is `file:line:col`.
    #[error("{location}: {message}")]
    Recipe { location: String, message: String },

    #[error("{0}")]
    Param(String),

    #[error("no run with id {0}; `tend runs` lists them")]
    UnknownRun(String),

    #[error("{0}")]
    Target(#[from] TargetError),

    /// `holder` says who holds it and what to do: wait, roll a dead run back, unlock.
    #[error("host {host} is locked by {holder}")]
    Locked { host: String, holder: String },

    #[error("audit log {path}: {message}")]
    Audit { path: PathBuf, message: String },

    #[error("audit log {path} failed verification: {message}")]
    Tampered { path: PathBuf, message: String },

    #[error("{context}: {}", describe_io(source))]
    Io {
        context: String,
        source: std::io::Error,
    },

    /// Vetting refused: the recipe is not vetted and the policy requires it, or a
    /// vetting signature does not verify.
    #[error("{0}")]
    Unvetted(String),

    /// A file the user named cannot be created (it exists already, its directory does
    /// not…); an existing file is left as it is.
    #[error("cannot create {}: {why}", path.display())]
    CantCreate { path: PathBuf, why: String },

    /// The cluster database cannot be reached (down, cut off, refusing connections).
    #[error("{0}")]
    Unavailable(String),

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A stable name for the kind of failure, for `--json` (`{"event":"error","kind":…}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Param(_) => "param",
            Error::Recipe { .. } => "recipe",
            Error::RecipeRead { .. } | Error::UnknownRun(_) => "not_found",
            Error::Target(_) => "target",
            Error::Locked { .. } => "locked",
            Error::Audit { .. } => "audit",
            Error::Tampered { .. } => "tampered",
            Error::Io { .. } => "io",
            Error::Unvetted(_) => "unvetted",
            Error::CantCreate { .. } => "cant_create",
            Error::Unavailable(_) => "unavailable",
            Error::Other(_) => "internal",
        }
    }

    /// What kind of failure a target reported, for `--json` (`"fault": "auth"`).
    pub fn fault(&self) -> Option<crate::transport::Fault> {
        match self {
            Error::Target(e) => Some(e.fault()),
            _ => None,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Param(_) => exit::USAGE,
            Error::Recipe { .. } => exit::RECIPE,
            Error::RecipeRead { .. } | Error::UnknownRun(_) => exit::NOT_FOUND,
            Error::Locked { .. } => exit::LOCKED,
            Error::Unvetted(_) => exit::UNVETTED,
            Error::Tampered { .. } => exit::TAMPERED,
            Error::Target(_) => exit::FAILED,
            Error::CantCreate { .. } => exit::CANT_CREATE,
            Error::Unavailable(_) => exit::UNAVAILABLE,
            Error::Audit { .. } | Error::Io { .. } | Error::Other(_) => exit::INTERNAL,
        }
    }
}

pub use crate::transport::describe_io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one of `known` that `word` is most likely a typo of (`hots` → `hosts`), if any
/// is close enough to be worth suggesting: a wrong suggestion misleads more than none.
pub fn did_you_mean<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let most = (word.chars().count() / 4).clamp(1, 3);
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .filter(|(d, _)| *d > 0 && *d <= most)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
