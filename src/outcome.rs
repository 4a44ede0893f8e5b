//! How a run ended, or one host's part of it, and where a run stands: the words of
//! `run.json`, `--json` events and the audit log, typed. Exit codes follow from them.

/// How one host's part of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    RolledBack,
    RollbackIncomplete,
    /// Not reached: connection, host key or authentication failed. Nothing ran.
    Unreachable,
    /// Another run holds the host's lock (here or on the host). Nothing ran.
    Locked,
    /// Never started: an earlier batch or the failure policy stopped the run.
    Skipped,
    /// The run was cancelled (a signal, the caller): stopped, then rolled back.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollbackIncomplete => "rollback_incomplete",
            Outcome::Unreachable => "unreachable",
            Outcome::Locked => "locked",
            Outcome::Skipped => "skipped",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Skipped)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a run stands, as its record says: running, ended (how), or neither known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    /// Its process died (its lease is dead) before it ended: `tend rollback` it.
    Interrupted,
    /// Its record cannot be read; its journals can still be replayed.
    Damaged,
    #[serde(untagged)]
    Ended(Outcome),
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Interrupted => "interrupted",
            RunState::Damaged => "damaged",
            RunState::Ended(o) => o.as_str(),
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Outcome> for RunState {
    fn from(o: Outcome) -> RunState {
        RunState::Ended(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_states_read_and_write_the_words_older_records_hold() {
        for word in [
            "running",
            "interrupted",
            "damaged",
            "ok",
            "failed",
            "rolled_back",
            "rollback_incomplete",
            "cancelled",
            "locked",
        ] {
            let s: RunState = serde_json::from_value(word.into()).unwrap();
            assert_eq!(s.as_str(), word);
            assert_eq!(serde_json::to_value(s).unwrap(), word);
        }
        assert!(serde_json::from_value::<RunState>("exploded".into()).is_err());
    }
}
