//! Who holds a run or a host lock, and whether that holder is still alive.
//!
//! A bare pid cannot answer "is this run alive": pids are reused, every run of a
//! daemon shares one, and a pid says nothing on another machine. An [`Owner`] is the
//! machine id, the boot, the pid and the process start time: on this machine that
//! is decided exactly; for another machine only its heartbeat can tell.

use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::Result;
use crate::state::{RunMeta, StateDir};

/// How often a running run refreshes its heartbeat in `run.json`.
const HEARTBEAT: Duration = Duration::from_secs(30);
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

/// Holds a run's lease while it runs: refreshes the heartbeat, and on every way out
/// (an early `?`, a panic) leaves a final run record, `interrupted` unless
/// [`RunLease::finish`] wrote the real one.
pub struct RunLease {
    state: StateDir,
    meta: Arc<Mutex<RunMeta>>,
    stop: Option<mpsc::Sender<()>>,
    beat: Option<JoinHandle<()>>,
    finished: bool,
}

impl RunLease {
    /// Record `meta` as running, held by this process.
    pub fn start(state: &StateDir, mut meta: RunMeta) -> Result<RunLease> {
        let now = chrono::Utc::now().to_rfc3339();
        meta.lease = Some(Lease {
            owner: Owner::current().clone(),
            since: now.clone(),
            heartbeat: now,
        });
        state.write_meta(&meta)?;
        let meta = Arc::new(Mutex::new(meta));
        let (stop, stopped) = mpsc::channel::<()>();
        let beat = {
            let (state, meta) = (state.clone(), meta.clone());
            std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
                    let mut m = meta.lock().expect("run lease");
                    if let Some(l) = &mut m.lease {
                        l.heartbeat = chrono::Utc::now().to_rfc3339();
                    }
                    if let Err(e) = state.write_meta(&m) {
                        tracing::warn!("heartbeat of run {}: {e}", m.run_id);
                    }
                }
            })
        };
        Ok(RunLease {
            state: state.clone(),
            meta,
            stop: Some(stop),
            beat: Some(beat),
            finished: false,
        })
    }

    fn stop_heartbeat(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.beat.take() {
            let _ = t.join();
        }
    }

    /// Write the run's final record.
    pub fn finish(mut self, end: impl FnOnce(&mut RunMeta)) -> Result<()> {
        self.stop_heartbeat();
        self.finished = true;
        let mut m = self.meta.lock().expect("run lease");
        end(&mut m);
        self.state.write_meta(&m)
    }
}

impl Drop for RunLease {
    fn drop(&mut self) {
        self.stop_heartbeat();
        if self.finished {
            return;
        }
        let Ok(mut m) = self.meta.lock() else { return };
        m.outcome = "interrupted".into();
        m.ended = Some(chrono::Utc::now().to_rfc3339());
        if let Err(e) = self.state.write_meta(&m) {
            tracing::error!("run {}: cannot record its end: {e}", m.run_id);
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
