//! One fire of one entry: an ordinary run through [`app::run`] for the actor
//! "this daemon's user, trigger schedule", its record updated before and after, and
//! every refusal logged and audited. Blocking: called on a thread of its own by the
//! scheduler, and directly by `tend schedule run` when no daemon is up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::record::{Records, RUNNING};
use crate::app::{self, RunRequest};
use crate::app::{Actor, Config};
use crate::cancel::CancelToken;
use crate::engine::Limits;
use crate::error::Error;
use crate::event::{Event, Sink};
use crate::notify;
use crate::recipe::Recipe;
use crate::schedule::Entry;
use crate::state::StateDir;

/// How long a fire queues behind a run holding one of its hosts when the entry
/// has no `timeout` to bound the wait.
const LOCK_WAIT: Duration = Duration::from_secs(3600);

/// Why an entry fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its cron line says now.
    Cron,
    /// Once, for fires missed while the daemon was down (`catch_up`).
    CatchUp,
    /// `@reboot`: the daemon started.
    Reboot,
    /// `tend schedule run NAME`.
    Manual,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Cron => "cron",
            Reason::CatchUp => "catch_up",
            Reason::Reboot => "reboot",
            Reason::Manual => "manual",
        }
    }
}

/// What fires need that does not change from one fire to the next.
pub struct Ctx {
    pub state: StateDir,
    /// Where runs, journals, the audit log and host locks are kept.
    pub stores: crate::store::Stores,
    /// For encrypted SSH keys: the daemon's `$TEND_SSH_PASSPHRASE`, read at start.
    pub passphrase: Option<crate::secret::Secret>,
    /// The daemon's own identity; each fire adds its entry's name.
    pub actor: Actor,
    pub records: Arc<Records>,
    /// The last success each entry was reported stale for: one alert per silence.
    pub stale_sent: std::sync::Mutex<std::collections::HashMap<String, Option<String>>>,
    /// Cluster mode: this daemon as a node of the cluster (claims, drain, pause).
    pub node: Option<Arc<super::cluster::Node>>,
}

impl Ctx {
    /// What the fires of `state` need; `passphrase` opens encrypted SSH keys (the
    /// caller reads it, as for any run).
    pub fn new(state: StateDir, actor: Actor, passphrase: Option<crate::secret::Secret>) -> Ctx {
        Ctx {
            records: Arc::new(Records::new(&state)),
            stores: crate::store::Stores::embedded(&state),
            passphrase,
            state,
            actor,
            stale_sent: Default::default(),
            node: None,
        }
    }

    /// The same, working with `stores` (the cluster's) as a node of the cluster.
    pub fn in_cluster(
        mut self,
        stores: crate::store::Stores,
        node: Arc<super::cluster::Node>,
    ) -> Ctx {
        self.records = Arc::new(Records::shared(&self.state, stores.cluster.clone()));
        self.stores = stores;
        self.node = Some(node);
        self
    }
}

/// An audit event of the scheduler itself (a skip, a refusal, a pause), with the
/// fields every scheduled event carries. A log that cannot record it is logged.
pub fn audit(ctx: &Ctx, event: &str, name: &str, fields: serde_json::Value) {
    if let Err(e) = ctx.stores.audit.append(event_of(ctx, event, name, fields)) {
        tracing::error!(schedule = name, "audit log: {e}");
    }
}

/// The audit record of a scheduler event: `fields` with the fields every scheduled
/// event carries.
pub fn event_of(
    ctx: &Ctx,
    event: &str,
    name: &str,
    mut fields: serde_json::Value,
) -> serde_json::Value {
    if let Some(obj) = fields.as_object_mut() {
        obj.insert("event".into(), event.into());
        obj.insert("trigger".into(), "schedule".into());
        obj.insert("schedule".into(), name.into());
        obj.entry("user")
            .or_insert_with(|| ctx.actor.user.clone().into());
    }
    fields
}

/// Run `entry` now, as `reason` says, until it ends or `cancel` stops it; its
/// outcome (also `refused`, `error`) is returned and recorded.
/// `due` is when the clock said it should start, for the log's lateness.
pub fn fire(
    ctx: &Ctx,
    config: &Config,
    entry: &Entry,
    reason: Reason,
    due: Option<DateTime<Utc>>,
    cancel: CancelToken,
) -> String {
    let name = entry.name.as_str();
    let fired = Utc::now();
    let started = Instant::now();
    let late_ms = due.map(|d| (fired - d).num_milliseconds());
    tracing::info!(schedule = name, reason = reason.as_str(), late_ms, recipe = %entry.recipe.display(), "fire");
    let (run_id, outcome, told) = match start(ctx, config, entry, cancel, due, fired) {
        Ok(r) => {
            let outcome = r.outcome.as_str();
            let error = r.error().unwrap_or_default();
            if r.outcome.is_failure() {
                tracing::warn!(schedule = name, run_id = %r.run_id, outcome, error, "run ended");
            } else {
                tracing::info!(schedule = name, run_id = %r.run_id, outcome, "run ended");
            }
            let reason = if r.outcome.is_failure() {
                notify::Reason::Failed
            } else {
                notify::Reason::Finished
            };
            let event = ctx.stores.runs.read(&r.run_id).ok().map(|meta| {
                let message = r
                    .error()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("the run ended {outcome}"));
                notify::NotifyEvent::from_run(name, &meta, reason, message)
            });
            (Some(r.run_id), outcome.to_string(), event)
        }
        Err(e) => {
            // Not vetted (or edited since), or the run could not start at all: loud.
            let why = if matches!(e, Error::Unvetted(_)) {
                "unvetted"
            } else {
                "error"
            };
            tracing::error!(schedule = name, reason = why, "refused: {e}");
            audit(
                ctx,
                "schedule_refused",
                name,
                json!({"reason": why, "recipe": entry.recipe.display().to_string(), "message": e.to_string()}),
            );
            let event = notify::NotifyEvent {
                run_id: None,
                schedule: name.to_string(),
                outcome: "refused".into(),
                hosts: entry.hosts.split(',').map(str::to_string).collect(),
                reason: if why == "unvetted" {
                    notify::Reason::Unvetted
                } else {
                    notify::Reason::Failed
                },
                started: Some(fired),
                duration: None,
                message: e.to_string(),
            };
            (None, "refused".to_string(), Some(event))
        }
    };
    if let Some(event) = told {
        tell(ctx, entry, &event);
    }
    let ms = started.elapsed().as_millis() as u64;
    ctx.records.update(name, |r| {
        // A run that started said when it fired then (see `start`).
        if run_id.is_none() {
            r.last_fire = Some(super::record::rfc3339(fired));
        }
        r.ended(run_id, fired, &outcome, ms)
    });
    check_stale(ctx, entry);
    outcome
}

/// Send `event` to the entry's `notify` targets, if its `notify_on` wants it. A
/// target that fails is logged; the others are still told.
fn tell(ctx: &Ctx, entry: &Entry, event: &notify::NotifyEvent) {
    if entry.notify.is_empty() || !event.reason.wanted_by(entry.notify_on) {
        return;
    }
    for target in &entry.notify {
        match notify::send(target, event) {
            Ok(()) => {
                tracing::info!(schedule = %entry.name, reason = event.reason.as_str(), to = %notify::shown(target), "notified")
            }
            Err(e) => {
                tracing::error!(schedule = %entry.name, to = %notify::shown(target), "notification failed: {e}");
                audit(
                    ctx,
                    "schedule_notify_failed",
                    &entry.name,
                    json!({"reason": event.reason.as_str(), "to": notify::shown(target), "message": e.to_string()}),
                );
            }
        }
    }
}

/// `alert_after`: tell once per silence when the entry has had no successful run
/// for that long.
fn check_stale(ctx: &Ctx, entry: &Entry) {
    if entry.alert_after.is_none() || entry.notify.is_empty() {
        return;
    }
    let saved = crate::schedule::saved::EntryState::load(&ctx.state, &entry.name)
        .ok()
        .flatten();
    let now = Utc::now();
    if !notify::stale(entry, saved.as_ref(), now) {
        return;
    }
    let since = saved
        .as_ref()
        .and_then(|s| s.last_success)
        .map(|t| t.to_rfc3339());
    {
        let mut sent = ctx.stale_sent.lock().expect("stale alerts");
        if sent.get(&entry.name) == Some(&since) {
            return;
        }
        sent.insert(entry.name.clone(), since);
    }
    let event = notify::NotifyEvent::stale(entry, saved.as_ref(), now);
    tell(ctx, entry, &event);
}

fn start(
    ctx: &Ctx,
    config: &Config,
    entry: &Entry,
    cancel: CancelToken,
    due: Option<DateTime<Utc>>,
    fired: DateTime<Utc>,
) -> crate::error::Result<app::RunResult> {
    // Loaded at each fire: an edit since the last one is seen (and un-vets it).
    let recipe = Recipe::load(&entry.recipe)?;
    let query = app::HostQuery {
        hosts: Some(entry.hosts.clone()),
        flags: crate::reach::ConnectFlags {
            become_: entry.become_,
            passphrase: ctx.passphrase.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut hosts = app::select_hosts(config, &query, false)?;
    if entry.become_ {
        for h in &mut hosts {
            h.become_ = true;
        }
    }
    let req = RunRequest {
        // `env:`/`file:` references are read by the run, so at each fire.
        params: entry.params.clone(),
        limits: Limits {
            timeout: entry.timeout,
            ..Limits::default()
        },
        hosts,
        wait: Some(entry.timeout.unwrap_or(LOCK_WAIT)),
        cancel,
        ..RunRequest::local(vec![], false)
    };
    let actor = ctx.actor.clone().with_schedule(&entry.name);
    let name = entry.name.clone();
    let records = ctx.records.clone();
    let claimed = ctx.node.clone().zip(due);
    // The run id is known once the run starts: recorded then, with when it fired (one
    // change of the record, not two: in a cluster each is a transaction), so a daemon
    // that dies mid-run leaves a record saying which run was going.
    let sink: Sink = Arc::new(move |e: &Event| {
        if let Event::RunStart { run_id, .. } = e {
            records.update(&name, |r| {
                r.last_fire = Some(super::record::rfc3339(fired));
                r.last_run_id = Some(run_id.clone());
                r.last_outcome = Some(RUNNING.into());
            });
            if let Some((node, due)) = &claimed {
                node.ran(&name, *due, run_id);
            }
        }
    });
    app::run(&ctx.stores, config, &actor, &recipe, &req, sink)
}
