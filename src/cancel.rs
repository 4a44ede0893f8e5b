//! Cancellation of a run: a [`CancelToken`] that its caller can cancel (a signal, a
//! daemon replacing the run) and that also carries the run's deadline (`--timeout`).
//!
//! Every wait of a run takes the token: the engine between script operations, a
//! command on any target (its process group is killed), the delay between retries.
//! A wait that ends because of the token says why with a [`Stop`], so a cancelled
//! run can end `cancelled` and a run out of time can fail and roll back.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why a run must stop now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    /// Someone asked: the reason says who (`SIGTERM received`).
    #[error("the run was cancelled ({0})")]
    Cancelled(String),
    /// The run's time limit passed.
    #[error("the run exceeded its time limit of {} and was stopped", humantime::format_duration(*.0))]
    TimedOut(Duration),
}

/// Cheap to clone; every clone sees the same cancellation. A token made with
/// [`CancelToken::with_timeout`] shares the cancellation of the one it came from and
/// adds a deadline of its own.
#[derive(Clone, Default)]
pub struct CancelToken {
    shared: Arc<Shared>,
    /// When the run's budget ends, and how long it was (for the message).
    deadline: Option<(Instant, Duration)>,
}

#[derive(Default)]
struct Shared {
    reason: Mutex<Option<String>>,
    /// Wakes sleepers (retry delays) at once on cancel.
    woken: Condvar,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("stopped", &self.stopped())
            .field("deadline", &self.deadline.map(|(_, d)| d))
            .finish()
    }
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// This token with a deadline `limit` from now (none: unchanged). A deadline past
    /// what `Instant` can hold is none.
    pub fn with_timeout(&self, limit: Option<Duration>) -> Self {
        let deadline = limit
            .and_then(|l| Instant::now().checked_add(l).map(|at| (at, l)))
            .or(self.deadline);
        CancelToken {
            shared: self.shared.clone(),
            deadline,
        }
    }

    /// Ask the run to stop. The first reason wins; later calls change nothing.
    pub fn cancel(&self, reason: impl Into<String>) {
        let mut r = self.shared.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason.into());
        }
        self.shared.woken.notify_all();
    }

    /// Whether [`CancelToken::cancel`] was called (the deadline does not count).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled().is_some()
    }

    /// The reason given to [`CancelToken::cancel`], if it was called.
    pub fn cancelled(&self) -> Option<String> {
        self.shared
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the run must stop now, and why; a cancel wins over the deadline.
    pub fn stopped(&self) -> Option<Stop> {
        if let Some(why) = self.cancelled() {
            return Some(Stop::Cancelled(why));
        }
        match self.deadline {
            Some((at, limit)) if Instant::now() >= at => Some(Stop::TimedOut(limit)),
            _ => None,
        }
    }

    /// `Err` once the run must stop.
    pub fn check(&self) -> Result<(), Stop> {
        self.stopped().map_or(Ok(()), Err)
    }

    /// What is left of the run's budget; `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|(at, _)| at.saturating_duration_since(Instant::now()))
    }

    /// A wait's own timeout bounded by the run's remaining budget.
    pub fn bound(&self, timeout: Option<Duration>) -> Option<Duration> {
        match (timeout, self.remaining()) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        }
    }

    /// Sleep `d` (a retry's delay), waking early when the run must stop.
    pub fn sleep(&self, d: Duration) -> Result<(), Stop> {
        let until = Instant::now().checked_add(d);
        let mut reason = self.shared.reason.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(why) = reason.as_ref() {
                return Err(Stop::Cancelled(why.clone()));
            }
            let mut wait = until.map_or(Duration::MAX, |u| {
                u.saturating_duration_since(Instant::now())
            });
            if let Some((at, limit)) = self.deadline {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Stop::TimedOut(limit));
                }
                wait = wait.min(left);
            }
            if wait.is_zero() {
                return Ok(());
            }
            reason = self
                .shared
                .woken
                .wait_timeout(reason, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_a_cancel_and_the_first_reason_wins() {
        let t = CancelToken::new();
        let c = t.with_timeout(Some(Duration::from_secs(60)));
        assert_eq!(c.stopped(), None);
        t.cancel("SIGTERM received");
        t.cancel("later");
        assert!(c.is_cancelled());
        assert_eq!(
            c.stopped(),
            Some(Stop::Cancelled("SIGTERM received".into()))
        );
    }

    #[test]
    fn the_deadline_bounds_waits_and_stops_the_run() {
        let t = CancelToken::new().with_timeout(Some(Duration::from_millis(50)));
        assert!(t.bound(Some(Duration::from_secs(30))).unwrap() <= Duration::from_millis(50));
        assert_eq!(CancelToken::new().bound(None), None);
        let started = Instant::now();
        assert_eq!(
            t.sleep(Duration::from_secs(30)),
            Err(Stop::TimedOut(Duration::from_millis(50)))
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!t.is_cancelled());
    }

    #[test]
    fn cancel_wakes_a_sleeper() {
        let t = CancelToken::new();
        let t2 = t.clone();
        let sleeper = std::thread::spawn(move || t2.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        t.cancel("stop");
        assert_eq!(sleeper.join().unwrap(), Err(Stop::Cancelled("stop".into())));
        assert_eq!(CancelToken::new().sleep(Duration::from_millis(1)), Ok(()));
    }
}
