//! State of a host that lives outside its files: services and crontabs. How to read
//! it and how to set it, through a [`Target`] only.
//!
//! Both the operations ([`crate::ops`]) and the undo of their journal records
//! ([`crate::journal::undo`]) need this, so it sits below the journal: a revert asks
//! the same questions and runs the same commands as the step it reverts.

pub mod crontab;
pub mod service;

use std::time::Duration;

use crate::cancel::CancelToken;
use crate::transport::{ExecOutput, ExecRequest, Target, TargetError};

/// Why state could not be read or set.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Target(#[from] TargetError),
    /// The state is not what the caller expects (a revert finds somebody changed it).
    #[error("{0}")]
    Refused(String),
    /// No such service (or unit) on the host.
    #[error("{0}")]
    Missing(String),
    /// A command failed, or the request cannot be done on this host.
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Stopped(#[from] crate::cancel::Stop),
}

pub type StateResult<T> = Result<T, StateError>;

/// How long a service command (a start, an init script) may take before it is
/// taken as hung; the run's own deadline cuts it shorter.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How a command is run: as root or not, and within which run.
#[derive(Clone, Default)]
pub struct Runner {
    /// Ask `sudo -n` for this command (a revert of a change made as root; the
    /// target may be the sudo view already, which is the same).
    pub become_: bool,
    pub cancel: Option<CancelToken>,
}

impl Runner {
    pub fn exec(
        &self,
        t: &dyn Target,
        command: String,
        stdin: Option<Vec<u8>>,
    ) -> StateResult<ExecOutput> {
        let (timeout, cancel) = match &self.cancel {
            Some(c) => {
                c.check()?;
                (c.bound(Some(COMMAND_TIMEOUT)), Some(c.clone()))
            }
            None => (Some(COMMAND_TIMEOUT), None),
        };
        let req = ExecRequest {
            command: command.clone(),
            env: Vec::new(),
            stdin,
            timeout,
            become_: self.become_,
            cancel: cancel.clone(),
        };
        let out = t.exec(&req)?;
        if out.timed_out {
            if let Some(c) = &cancel {
                c.check()?;
            }
            return Err(StateError::Failed(format!(
                "{}: `{command}` did not finish within {}",
                t.info().name,
                humantime::format_duration(timeout.unwrap_or_default())
            )));
        }
        Ok(out)
    }

    /// Run `command`; a non-zero exit is an error naming it and its last lines.
    pub fn check(
        &self,
        t: &dyn Target,
        command: String,
        stdin: Option<Vec<u8>>,
    ) -> StateResult<ExecOutput> {
        let out = self.exec(t, command.clone(), stdin)?;
        if out.code != 0 {
            return Err(StateError::Failed(format!(
                "{}: `{command}` exited with status {}{}",
                t.info().name,
                out.code,
                tail(&out)
            )));
        }
        Ok(out)
    }
}

/// `: last lines of stderr (or stdout)`, for an error message.
pub fn tail(out: &ExecOutput) -> String {
    let text = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        &out.stderr
    } else {
        &out.stdout
    };
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let from = lines.len().saturating_sub(3);
    if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines[from..].join(" | "))
    }
}
