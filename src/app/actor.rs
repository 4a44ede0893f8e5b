//! Who asks for a run, and through what. Built once at the edge (the CLI from the
//! process, the scheduler for its entries) and passed down, so nothing deeper reads
//! `$USER` and the core can hold a scheduled run to stricter rules than a person's.

use serde::Serialize;

/// What started the request: decides which vetting rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// A person at the command line.
    Cli,
    /// A `schedule` entry: runs only vetted recipes whose hash still matches.
    Schedule,
    /// A request through the daemon's API.
    Api,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Cli => "cli",
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
        }
    }
}

/// How the actor's identity was established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Auth {
    /// The operating-system account running this process (the name is what the
    /// environment says; the uid is what the kernel says).
    Process { uid: u32 },
    /// Established by whoever built the actor (an API token, a daemon's own
    /// identity…), described for the record.
    Other { how: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The name the audit log records.
    pub user: String,
    pub auth: Auth,
    pub trigger: Trigger,
    /// The `[[schedule]]` entry that fired the run (with [`Trigger::Schedule`]), for
    /// the audit log's `run_start`.
    pub schedule: Option<String>,
}

impl Actor {
    pub fn new(user: impl Into<String>, auth: Auth, trigger: Trigger) -> Actor {
        Actor {
            user: user.into(),
            auth,
            trigger,
            schedule: None,
        }
    }

    /// This actor firing the schedule entry `name`.
    pub fn with_schedule(mut self, name: &str) -> Actor {
        self.schedule = Some(name.to_string());
        self
    }

    /// The account running this process: `$USER`, else `$LOGNAME`, else the name of
    /// its uid in the password database. Called once, at the edge.
    pub fn from_process(trigger: Trigger) -> Actor {
        // SAFETY: geteuid cannot fail and touches no memory.
        let uid = unsafe { libc::geteuid() };
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(crate::transport::local::user_of_this_process);
        Actor::new(user, Auth::Process { uid }, trigger)
    }
}
