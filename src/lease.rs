//! Who holds a run or a host lock, and whether that holder is still alive.
//!
//! A bare pid cannot answer "is this run alive": pids are reused, every run of a
//! daemon shares one, and a pid says nothing on another machine. An [`Owner`] is the
//! machine id, the boot, the pid and the process start time: on this machine that
//! is decided exactly; for another machine only its heartbeat can tell.

use std::sync::OnceLock;
use std::time::Duration;

/// How often a running run refreshes its heartbeat in `run.json`.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A run of another machine whose heartbeat is older than this is taken as dead.
const STALE_AFTER: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// `/etc/machine-id` (the host name where there is none).
    pub machine: String,
    /// The host name, for people reading a message.
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`: start times count from boot.
    #[serde(default)]
    pub boot: String,
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat`: a reused pid has another start time.
    pub start: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// Held from another machine: only a heartbeat could tell.
    Unknown,
}

fn first_line(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// This machine's host name.
pub fn host_name() -> String {
    first_line("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into())
}

/// When process `pid` started (clock ticks since boot); `None` if there is no such
/// process.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Owner {
    /// This process.
    pub fn current() -> &'static Owner {
        static ME: OnceLock<Owner> = OnceLock::new();
        ME.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                machine: first_line("/etc/machine-id")
                    .or_else(|| first_line("/var/lib/dbus/machine-id"))
                    .unwrap_or_else(host_name),
                host: host_name(),
                boot: first_line("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
                pid,
                start: start_time(pid).unwrap_or_default(),
            }
        })
    }

    pub fn liveness(&self) -> Liveness {
        let me = Owner::current();
        if self.machine != me.machine {
            return Liveness::Unknown;
        }
        if self.boot != me.boot || start_time(self.pid) != Some(self.start) {
            return Liveness::Dead;
        }
        Liveness::Alive
    }

    /// `pid 123 on web1`
    pub fn describe(&self) -> String {
        format!("pid {} on {}", self.pid, self.host)
    }
}

/// Whether a process `pid` exists here: all an older tend recorded.
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The lease of a running run, kept in its `run.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub owner: Owner,
    pub since: String,
    pub heartbeat: String,
}

impl Lease {
    pub fn liveness(&self) -> Liveness {
        match self.owner.liveness() {
            Liveness::Unknown => {
                let fresh = chrono::DateTime::parse_from_rfc3339(&self.heartbeat)
                    .ok()
                    .and_then(|t| (chrono::Utc::now() - t.to_utc()).to_std().ok())
                    .is_some_and(|age| age < STALE_AFTER);
                if fresh {
                    Liveness::Unknown
                } else {
                    Liveness::Dead
                }
            }
            l => l,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = Owner::current().clone();
        assert_eq!(me.liveness(), Liveness::Alive);
        let reused = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert_eq!(reused.liveness(), Liveness::Dead);
        let elsewhere = Owner {
            machine: "another".into(),
            ..me
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
    }
}
