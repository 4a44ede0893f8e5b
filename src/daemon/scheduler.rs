//! The scheduler proper: which entry fires next, what a fire does while the entry's
//! previous run still goes (`overlap`), the global cap on runs at once, and the loop.
//!
//! Plain threads, one mutex and one condvar: every run is blocking work (Rhai, ssh2,
//! the audit log's fsync), so an async runtime would only wrap each in
//! `spawn_blocking`. The loop sleeps until the earliest next fire, at most
//! [`MAX_SLEEP`] at a time, and reads the wall clock again after every wake: the
//! condvar's clock stops while the machine sleeps and ignores clock steps, the wall
//! clock does not.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::cluster::Claim;
use super::fire::{self, audit, Ctx, Reason};
use crate::app::Config;
use crate::cancel::CancelToken;
use crate::schedule::{Entry, Overlap};

/// The longest single sleep: bounds how late a fire is after the machine wakes from
/// suspend (the condvar's clock did not run meanwhile).
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// A fire found due later than this (the machine slept, the clock jumped, the daemon
/// was down) was missed: `catch_up` decides whether it still runs.
const LATE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Missed fires are counted up to this many per wake (a year of an every-second
/// entry is not walked one fire at a time).
const COUNT_AT_MOST: u64 = 10_000;

#[derive(Clone)]
pub struct Scheduler {
    ctx: Arc<Ctx>,
    shared: Arc<Shared>,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
    /// Audit records of skipped fires not yet written (see [`Scheduler::flush`]).
    skips: Mutex<Vec<serde_json::Value>>,
}

struct Inner {
    config: Arc<Config>,
    slots: HashMap<String, Slot>,
    /// Runs going now, all entries together.
    running: usize,
    cap: usize,
    /// Fires waiting for a place under the cap, oldest first.
    backlog: VecDeque<(String, Reason)>,
    stopping: bool,
    reload: bool,
    /// Cluster mode: look for fires missed while the database was down.
    catch_up: bool,
}

struct Slot {
    entry: Entry,
    /// None: never on the clock (disabled, `@reboot`, removed by a reload).
    next: Option<DateTime<Utc>>,
    active: Active,
    /// The fire waiting for the running one to end (`queue`, `replace`).
    queued: Option<Reason>,
    /// Gone from tend.toml since; kept until its run ends.
    retired: bool,
    /// Cluster mode: fires no node could claim while the database was down (the
    /// first, the latest, how many), run once by `catch_up` when it is back.
    unclaimed: Option<Unclaimed>,
}

/// The fires of one entry that have passed, as [`Scheduler::plan_passed`] found them.
#[derive(Clone)]
struct Passed {
    name: String,
    first: DateTime<Utc>,
    latest: DateTime<Utc>,
    count: u64,
    /// Whether one of them runs, and why.
    run: Option<Reason>,
}

impl Passed {
    /// How many do not run.
    fn missed(&self) -> u64 {
        self.count - u64::from(self.run.is_some())
    }
}

/// What became of the claims of one entry's passed fires.
#[derive(Clone, Copy)]
struct Claims {
    run: Claim,
    missed: Claim,
}

/// Fires nobody could claim: the first, the latest, how many.
type Unclaimed = (DateTime<Utc>, DateTime<Utc>, u64);

enum Active {
    Idle,
    /// In the backlog, waiting for the cap.
    Waiting,
    Running(CancelToken),
}

fn next_of(e: &Entry, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !e.enabled {
        return None;
    }
    e.next_fires(now, 1).first().copied()
}

impl Scheduler {
    pub fn new(ctx: Arc<Ctx>, config: Config) -> Scheduler {
        let now = Utc::now();
        let slots = config
            .schedules
            .iter()
            .map(|e| (e.name.clone(), Slot::new(e.clone(), now)))
            .collect();
        Scheduler {
            ctx,
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    cap: config.daemon.max_concurrent_runs(),
                    config: Arc::new(config),
                    slots,
                    running: 0,
                    backlog: VecDeque::new(),
                    stopping: false,
                    reload: false,
                    catch_up: false,
                }),
                changed: Condvar::new(),
                skips: Mutex::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether tend.toml (as last loaded) has an entry `name`.
    pub fn has(&self, name: &str) -> bool {
        self.lock().slots.get(name).is_some_and(|s| !s.retired)
    }

    pub fn entries(&self) -> usize {
        self.lock().slots.len()
    }

    /// Reread tend.toml at the loop's next turn (SIGHUP).
    /// The entries as now configured (after the last good reload).
    pub fn schedules(&self) -> Vec<Entry> {
        self.lock().config.schedules.clone()
    }

    pub fn reload(&self) {
        self.lock().reload = true;
        self.shared.changed.notify_all();
    }

    /// Write the audit records of the fires skipped since the last time, in one
    /// append; not under the schedule's lock.
    pub fn flush(&self) {
        let events =
            std::mem::take(&mut *self.shared.skips.lock().unwrap_or_else(|p| p.into_inner()));
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.ctx.stores.audit.append_many(events) {
            tracing::error!("audit log: cannot record skipped fires: {e}");
        }
    }

    /// No more fires (SIGTERM): [`Scheduler::run`] returns.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.shared.changed.notify_all();
    }

    /// `tend schedule run NAME`: fire now, under the entry's overlap rule. Err: no such
    /// entry. Ok: what became of the fire.
    pub fn request(&self, name: &str) -> Result<String, String> {
        let mut inner = self.lock();
        if inner.slots.get(name).is_none_or(|s| s.retired) {
            return Err(format!("no schedule entry {name:?} in tend.toml"));
        }
        if inner.stopping {
            return Err("the daemon is stopping".into());
        }
        let what = self.fire_locked(&mut inner, name, Reason::Manual, None);
        drop(inner);
        self.flush();
        Ok(what)
    }

    /// Before the loop: `@reboot` entries fire, and entries whose fires were missed
    /// while the daemon was down get their `catch_up` (at most one run each).
    pub fn start_up(&self) {
        self.catch_up(true);
    }

    /// In a cluster, once the database is back: the fires no node could claim while
    /// it was down get their `catch_up`, claimed like any fire (so once).
    pub fn catch_up_later(&self) {
        self.lock().catch_up = true;
        self.shared.changed.notify_all();
    }

    /// Cancel every running run (they roll back): a cluster node that lost its
    /// database stops before another node may take its runs over.
    pub fn cancel_running(&self, why: &str) {
        let inner = self.lock();
        for s in inner.slots.values() {
            if let Active::Running(t) = &s.active {
                t.cancel(why.to_string());
            }
        }
    }

    fn catch_up(&self, starting: bool) {
        let now = Utc::now();
        let mut inner = self.lock();
        self.catch_up_locked(&mut inner, starting, now);
    }

    fn catch_up_locked(&self, inner: &mut Inner, starting: bool, now: DateTime<Utc>) {
        if !starting {
            self.claim_unclaimed(inner, now);
            return;
        }
        let names: Vec<String> = inner.slots.keys().cloned().collect();
        for name in names {
            let entry = inner.slots[&name].entry.clone();
            if !entry.enabled {
                continue;
            }
            if entry.cron.is_reboot() {
                if starting {
                    self.fire_locked(inner, &name, Reason::Reboot, None);
                }
                continue;
            }
            let last = match &self.ctx.node {
                // Cluster-wide: the last fire any node claimed.
                Some(node) => node.last_claimed(&name),
                None => self.ctx.records.get(&name).last_fire(),
            };
            let Some(last) = last else {
                continue;
            };
            if let Some(&first) = entry.next_fires(last, 1).first() {
                if first <= now {
                    self.passed(inner, &name, first, now);
                }
            }
        }
    }

    /// The loop, until [`Scheduler::stop`].
    pub fn run(&self) {
        let mut inner = self.lock();
        let mut last_now = Utc::now();
        loop {
            if inner.stopping {
                return;
            }
            if std::mem::take(&mut inner.reload) {
                self.reload_locked(&mut inner);
            }
            let now = Utc::now();
            if std::mem::take(&mut inner.catch_up) {
                self.catch_up_locked(&mut inner, false, now);
            }
            if now + chrono::TimeDelta::seconds(1) < last_now {
                tracing::warn!(
                    "the clock went back by {}s: next fires computed again",
                    (last_now - now).num_seconds()
                );
                for s in inner.slots.values_mut() {
                    s.next = if s.retired {
                        None
                    } else {
                        next_of(&s.entry, now)
                    };
                }
            }
            last_now = now;
            let due: Vec<(String, DateTime<Utc>)> = inner
                .slots
                .iter()
                .filter_map(|(n, s)| s.next.filter(|t| *t <= now).map(|t| (n.clone(), t)))
                .collect();
            if self.ctx.node.is_none() {
                for (name, at) in due {
                    self.passed(&mut inner, &name, at, now);
                }
            } else if !due.is_empty() {
                // The claims go to the database without holding the schedule: a run
                // ending meanwhile, SIGTERM or SIGHUP must not wait on the network.
                let plans: Vec<Passed> = due
                    .into_iter()
                    .filter_map(|(name, at)| self.plan_passed(&mut inner, &name, at, now))
                    .collect();
                drop(inner);
                let claims = self.claim(&plans);
                inner = self.lock();
                for (p, c) in plans.into_iter().zip(claims) {
                    self.settle(&mut inner, p, c);
                }
            }
            drop(inner);
            self.flush();
            inner = self.lock();
            let earliest = inner.slots.values().filter_map(|s| s.next).min();
            let sleep = earliest
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            if !sleep.is_zero() {
                inner = self
                    .shared
                    .changed
                    .wait_timeout(inner, sleep)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }

    /// SIGTERM: drop fires not started, let running ones finish for up to
    /// `[daemon] stop_timeout`,
    /// then cancel them (each rolls back) and wait for them to end.
    pub fn shut_down(&self) {
        let mut inner = self.lock();
        let grace = inner.config.daemon.stop_timeout();
        inner.stopping = true;
        inner.backlog.clear();
        for s in inner.slots.values_mut() {
            s.queued = None;
            if matches!(s.active, Active::Waiting) {
                s.active = Active::Idle;
            }
        }
        if inner.running > 0 {
            tracing::info!(
                running = inner.running,
                "stopping: waiting up to {} for running jobs",
                humantime::format_duration(grace)
            );
        }
        let deadline = Instant::now() + grace;
        while inner.running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inner = self
                .shared
                .changed
                .wait_timeout(inner, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if inner.running > 0 {
            tracing::warn!(
                running = inner.running,
                "stop timeout passed: cancelling the running jobs (they roll back)"
            );
            for s in inner.slots.values() {
                if let Active::Running(t) = &s.active {
                    t.cancel("the daemon is stopping");
                }
            }
        }
        while inner.running > 0 {
            inner = self
                .shared
                .changed
                .wait(inner)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(inner);
        self.flush();
    }

    /// The database is back: each entry with fires nobody could claim gets one run
    /// for them if `catch_up` covers the latest (claimed like any fire, so once in
    /// the cluster); the others are reported missed by the node that claims that.
    fn claim_unclaimed(&self, inner: &mut Inner, now: DateTime<Utc>) {
        let Some(node) = self.ctx.node.clone() else {
            return;
        };
        let pending: Vec<(String, Unclaimed)> = inner
            .slots
            .iter_mut()
            .filter_map(|(n, s)| s.unclaimed.take().map(|u| (n.clone(), u)))
            .collect();
        // Per entry: a run of the latest fire if `catch_up` covers it, a report of the
        // others; all claimed in one round trip.
        let mut asks = Vec::new();
        let mut plans = Vec::new();
        for (name, (first, latest, count)) in pending {
            let Some(entry) = inner.slots.get(&name).map(|s| s.entry.clone()) else {
                continue;
            };
            let covered = entry
                .catch_up
                .and_then(|w| chrono::TimeDelta::from_std(w).ok())
                .is_some_and(|w| now - latest <= w);
            let missed = count - u64::from(covered);
            let run = covered.then(|| {
                asks.push((name.clone(), latest, Reason::CatchUp.as_str().to_string()));
                asks.len() - 1
            });
            let report = (missed > 0).then(|| {
                asks.push((name.clone(), first, "missed".to_string()));
                asks.len() - 1
            });
            plans.push((name, latest, missed, run, report));
        }
        let won = node.claim_many(&asks);
        let won = |i: Option<usize>| i.is_some_and(|i| won.get(i) == Some(&Claim::Won));
        for (name, latest, missed, run, report) in plans {
            if won(report) {
                tracing::warn!(schedule = %name, missed, "fires missed while the cluster database was down");
                self.ctx.records.update(&name, |r| r.missed_fires += missed);
                audit(
                    &self.ctx,
                    "schedule_skip",
                    &name,
                    json!({"reason": "missed", "missed": missed}),
                );
            }
            if won(run) {
                self.fire_locked(inner, &name, Reason::CatchUp, Some(latest));
            }
        }
    }

    /// The entry `name` was due at `first`, and every fire of it up to `now` has
    /// passed: one fire runs if it is on time, or (late) if `catch_up` covers it;
    /// the others are counted as missed. Its next fire is set after `now`.
    fn passed(&self, inner: &mut Inner, name: &str, first: DateTime<Utc>, now: DateTime<Utc>) {
        let Some(p) = self.plan_passed(inner, name, first, now) else {
            return;
        };
        let claims = self.claim(std::slice::from_ref(&p));
        if let Some(c) = claims.first() {
            self.settle(inner, p, *c);
        }
    }

    /// What passing the fires of `name` from `first` up to `now` means: how many,
    /// the latest, and whether one runs (on time, or late under `catch_up`). Sets
    /// the entry's next fire after `now`.
    fn plan_passed(
        &self,
        inner: &mut Inner,
        name: &str,
        first: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Passed> {
        let slot = inner.slots.get_mut(name)?;
        let entry = slot.entry.clone();
        slot.next = next_of(&entry, now);
        let (mut count, mut latest) = (1u64, first);
        while count < COUNT_AT_MOST {
            match entry.next_fires(latest, 1).first() {
                Some(&t) if t <= now => {
                    count += 1;
                    latest = t;
                }
                _ => break,
            }
        }
        let late = now - latest;
        let run = if late <= LATE {
            Some(Reason::Cron)
        } else {
            entry
                .catch_up
                .and_then(|w| chrono::TimeDelta::from_std(w).ok())
                .filter(|w| late <= *w)
                .map(|_| Reason::CatchUp)
        };
        Some(Passed {
            name: name.to_string(),
            first,
            latest,
            count,
            run,
        })
    }

    /// In a cluster every node sees the same fires: one claim decides which node
    /// runs each (`run`), and which one reports its misses (`missed`). All of them
    /// in one round trip. Without a cluster, this node has them all.
    fn claim(&self, passed: &[Passed]) -> Vec<Claims> {
        let Some(node) = &self.ctx.node else {
            return vec![
                Claims {
                    run: Claim::Won,
                    missed: Claim::Won
                };
                passed.len()
            ];
        };
        let mut batch = Vec::new();
        for p in passed {
            if let Some(reason) = p.run {
                batch.push((p.name.clone(), p.latest, reason.as_str().to_string()));
            }
            if p.missed() > 0 {
                batch.push((p.name.clone(), p.first, "missed".to_string()));
            }
        }
        let mut results = node.claim_many(&batch).into_iter();
        passed
            .iter()
            .map(|p| Claims {
                run: match p.run {
                    Some(_) => results.next().unwrap_or(Claim::Down),
                    None => Claim::Lost,
                },
                missed: match p.missed() {
                    0 => Claim::Lost,
                    _ => results.next().unwrap_or(Claim::Down),
                },
            })
            .collect()
    }

    /// Act on passed fires as their claims say: record those nobody could claim
    /// (the database is down), report misses, fire.
    fn settle(&self, inner: &mut Inner, p: Passed, claims: Claims) {
        let name = p.name.as_str();
        if p.run.is_some() && claims.run == Claim::Down {
            if let Some(slot) = inner.slots.get_mut(name) {
                slot.unclaimed = Some(match slot.unclaimed {
                    Some((f, _, n)) => (f, p.latest, n + p.count),
                    None => (p.first, p.latest, p.count),
                });
            }
            return;
        }
        let missed = p.missed();
        if missed > 0 && claims.missed == Claim::Won {
            tracing::warn!(schedule = name, missed, last_missed = %p.latest, "fires missed");
            self.ctx.records.update(name, |r| r.missed_fires += missed);
            audit(
                &self.ctx,
                "schedule_skip",
                name,
                json!({"reason": "missed", "missed": missed}),
            );
        }
        if let (Some(reason), Claim::Won) = (p.run, claims.run) {
            self.fire_locked(inner, name, reason, Some(p.latest));
        }
    }

    /// A fire of `name`: started, queued or skipped as its overlap rule and the cap
    /// say. Returns what happened, for `tend schedule run`.
    fn fire_locked(
        &self,
        inner: &mut Inner,
        name: &str,
        reason: Reason,
        due: Option<DateTime<Utc>>,
    ) -> String {
        let paused = match &self.ctx.node {
            // The cluster's record, as the last heartbeat read it.
            Some(node) => node.paused(name),
            None => self.ctx.records.get(name).paused,
        };
        if reason != Reason::Manual && paused {
            return self.skip(name, reason, "paused");
        }
        let Some(slot) = inner.slots.get_mut(name) else {
            return "no such entry".into();
        };
        match (&slot.active, slot.entry.overlap) {
            (Active::Idle, _) => {}
            (_, Overlap::Skip) => return self.skip(name, reason, "overlap"),
            (_, Overlap::Queue) if slot.queued.is_some() => {
                return self.skip(name, reason, "queue_full")
            }
            (_, Overlap::Queue) => {
                slot.queued = Some(reason);
                tracing::info!(
                    schedule = name,
                    reason = reason.as_str(),
                    "queued behind the running run"
                );
                return "queued behind the running run".into();
            }
            (Active::Waiting, Overlap::Replace) => {
                // Not started yet: the waiting fire stands for this one.
                return self.skip(name, reason, "replaced_waiting");
            }
            (Active::Running(token), Overlap::Replace) => {
                tracing::info!(
                    schedule = name,
                    reason = reason.as_str(),
                    "replacing the running run: it is cancelled and rolls back"
                );
                token.cancel(format!("replaced by a new fire of schedule {name}"));
                slot.queued = Some(reason);
                return "replacing the running run".into();
            }
        }
        if let Some(due) = due {
            let late = (Utc::now() - due).num_milliseconds();
            tracing::debug!(schedule = name, late_ms = late, "due");
        }
        self.start_locked(inner, name, reason, due)
    }

    fn skip(&self, name: &str, reason: Reason, why: &str) -> String {
        tracing::info!(
            schedule = name,
            reason = reason.as_str(),
            skipped = why,
            "fire skipped"
        );
        // Written once per turn of the loop, all together: a second in which a
        // thousand entries skip is one append, not a thousand.
        let event = fire::event_of(
            &self.ctx,
            "schedule_skip",
            name,
            json!({"reason": why, "fire": reason.as_str()}),
        );
        self.shared
            .skips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
        format!("skipped ({why})")
    }

    fn start_locked(
        &self,
        inner: &mut Inner,
        name: &str,
        reason: Reason,
        due: Option<DateTime<Utc>>,
    ) -> String {
        let Some(slot) = inner.slots.get_mut(name) else {
            return "no such entry".into();
        };
        if inner.running >= inner.cap {
            slot.active = Active::Waiting;
            inner.backlog.push_back((name.to_string(), reason));
            tracing::info!(
                schedule = name,
                cap = inner.cap,
                "waiting: max_concurrent_runs reached"
            );
            return "waiting for a free place (max_concurrent_runs)".into();
        }
        let token = CancelToken::new();
        slot.active = Active::Running(token.clone());
        inner.running += 1;
        let entry = slot.entry.clone();
        let config = inner.config.clone();
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fire-{name}"))
            .spawn(move || {
                // A panic in a run must not leave the slot taken forever.
                let end = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    fire::fire(&me.ctx, &config, &entry, reason, due, token)
                }));
                if end.is_err() {
                    tracing::error!(schedule = %entry.name, "the run panicked");
                }
                me.finished(&entry.name);
            });
        if let Err(e) = spawned {
            tracing::error!(schedule = name, "cannot start a thread for the run: {e}");
            inner.running -= 1;
            if let Some(s) = inner.slots.get_mut(name) {
                s.active = Active::Idle;
            }
            return "not started (no thread)".into();
        }
        "started".into()
    }

    fn finished(&self, name: &str) {
        let mut inner = self.lock();
        inner.running -= 1;
        let mut queued = None;
        if let Some(slot) = inner.slots.get_mut(name) {
            slot.active = Active::Idle;
            queued = slot.queued.take();
            if slot.retired {
                inner.slots.remove(name);
            }
        }
        if !inner.stopping {
            if let Some(reason) = queued {
                self.start_locked(&mut inner, name, reason, None);
            }
            while inner.running < inner.cap {
                let Some((n, reason)) = inner.backlog.pop_front() else {
                    break;
                };
                self.start_locked(&mut inner, &n, reason, None);
            }
        }
        drop(inner);
        self.shared.changed.notify_all();
    }

    fn reload_locked(&self, inner: &mut Inner) {
        let Some(path) = inner.config.path().map(|p| p.to_path_buf()) else {
            return;
        };
        let config = match Config::read(&path) {
            Ok(c) => c,
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!(file = %path.display(), "reload: {line}");
                }
                tracing::error!(file = %path.display(), "reload refused: the schedule stays as it was");
                return;
            }
        };
        let now = Utc::now();
        let names: std::collections::HashSet<&str> =
            config.schedules.iter().map(|e| e.name.as_str()).collect();
        inner.slots.retain(|name, s| {
            if names.contains(name.as_str()) {
                return true;
            }
            s.retired = true;
            s.next = None;
            !matches!(s.active, Active::Idle)
        });
        for e in &config.schedules {
            let slot = inner
                .slots
                .entry(e.name.clone())
                .or_insert_with(|| Slot::new(e.clone(), now));
            slot.entry = e.clone();
            slot.retired = false;
            slot.next = next_of(e, now);
        }
        inner.cap = config.daemon.max_concurrent_runs();
        if let Some(node) = &self.ctx.node {
            node.set_entries(&config.schedules);
        }
        tracing::info!(file = %path.display(), entries = config.schedules.len(), "reloaded");
        inner.config = Arc::new(config);
    }
}

impl Slot {
    fn new(entry: Entry, now: DateTime<Utc>) -> Slot {
        Slot {
            next: next_of(&entry, now),
            entry,
            active: Active::Idle,
            queued: None,
            retired: false,
            unclaimed: None,
        }
    }
}
