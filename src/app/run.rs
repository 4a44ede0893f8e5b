//! One run of a recipe on its hosts: decide vetting, check its parameters, take each
//! host's lock and lease, execute the script against the host's target (an overlay for
//! a dry-run), journal every change, roll back on failure, report events.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::{Actor, Config};
use crate::cancel::CancelToken;
use crate::engine::{self, HostContext, Limits, Mode};
use crate::error::{Error, Result};
use crate::event::{Event, Sink};
use crate::fleet::{batches, run_pool, BatchSize, Policy};
use crate::lock::{Holder, Take};
use crate::ops::Ctx;
pub use crate::outcome::Outcome;
use crate::reach::{HostSpec, Reached};
use crate::recipe::Recipe;
use crate::state::{new_run_id, RunMeta};
use crate::store::{RunLease, Stores};
use crate::transport::overlay::Overlay;
use crate::transport::Target;

pub struct RunRequest {
    pub params: Vec<(String, String)>,
    /// Secret parameters the caller read itself (the CLI asks on its terminal for
    /// ones not given); the run never reads a terminal.
    pub secrets: std::collections::BTreeMap<String, crate::secret::Secret>,
    pub dry_run: bool,
    pub no_rollback: bool,
    pub limits: Limits,
    /// Where to run; empty means this machine.
    pub hosts: Vec<HostSpec>,
    pub forks: usize,
    pub policy: Policy,
    pub serial: Vec<BatchSize>,
    /// If any host fails, roll back every host of the run.
    pub atomic: bool,
    /// Run it even if it is not vetted, as far as the `[trust]` policy lets a person
    /// at the command line do so (`--unvetted`). A request, not an assertion: the run
    /// decides vetting itself, and a scheduled run ignores this.
    pub unvetted: bool,
    /// Queue this long behind another run holding a host, instead of giving up.
    pub wait: Option<Duration>,
    /// Cancelling it stops the run: the current step is killed, the run rolls back
    /// and ends `cancelled`. `limits.timeout` is added to it as the run's deadline.
    pub cancel: CancelToken,
}

impl RunRequest {
    /// A run on this machine with default fleet settings.
    pub fn local(params: Vec<(String, String)>, dry_run: bool) -> Self {
        RunRequest {
            params,
            secrets: Default::default(),
            dry_run,
            no_rollback: false,
            limits: Limits::default(),
            hosts: vec![],
            forks: crate::fleet::DEFAULT_FORKS,
            policy: Policy::default(),
            serial: vec![],
            atomic: false,
            unvetted: false,
            wait: None,
            cancel: CancelToken::default(),
        }
    }
}

#[derive(Clone)]
pub struct HostResult {
    pub host: String,
    pub outcome: Outcome,
    pub changed: u64,
    pub unknown: u64,
    pub unchanged: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// The kind of failure behind `error`, when a target said what it was.
    pub fault: Option<crate::transport::Fault>,
    /// Kept open for `--atomic`, which may roll this host back after the others end.
    reached: Option<Arc<dyn Target>>,
    locks: Option<Arc<HostLocks>>,
    journaled: bool,
    /// Where the host keeps this run's backups (a real run that journaled).
    backup_dir: Option<String>,
    /// Its backups were freed at the end: it succeeded under `backups = "0"`, or
    /// its rollback was complete.
    freed: bool,
}

impl HostResult {
    pub(crate) fn new(host: &str, outcome: Outcome, error: Option<String>) -> Self {
        HostResult {
            host: host.to_string(),
            outcome,
            changed: 0,
            unknown: 0,
            unchanged: 0,
            duration_ms: 0,
            error,
            fault: None,
            reached: None,
            locks: None,
            journaled: false,
            backup_dir: None,
            freed: false,
        }
    }
}

#[derive(Clone)]
pub struct RunResult {
    pub run_id: String,
    /// Whether the recipe was vetted as it ran, and why not.
    pub vetting: Vetting,
    pub outcome: Outcome,
    pub changed: u64,
    pub unknown: u64,
    pub hosts: Vec<HostResult>,
}

impl RunResult {
    pub fn error(&self) -> Option<&str> {
        self.hosts.iter().find_map(|h| h.error.as_deref())
    }
}

/// The outcome of a whole run, for its exit code: the worst that happened anywhere.
pub(crate) fn overall(hosts: &[HostResult]) -> Outcome {
    let any = |o: Outcome| hosts.iter().any(|h| h.outcome == o);
    // Whoever cancelled asked for that: it is the run's end, whatever else happened
    // (each host's own outcome and rollback report stay in its events).
    if any(Outcome::Cancelled) {
        Outcome::Cancelled
    } else if any(Outcome::RollbackIncomplete) {
        Outcome::RollbackIncomplete
    } else if any(Outcome::Failed) || any(Outcome::Unreachable) {
        Outcome::Failed
    } else if any(Outcome::Locked) {
        // Only locks stood in the way: exit 75 says "try again later".
        Outcome::Locked
    } else if any(Outcome::RolledBack) {
        Outcome::RolledBack
    } else {
        Outcome::Ok
    }
}

pub(crate) fn null_sink() -> Sink {
    Arc::new(|_: &Event| {})
}

/// Run `recipe` for `actor` as `req` asks, with the settings of `config`: refused
/// before anything happens if vetting does not allow it (see [`vetting`]).
pub fn run(
    stores: &Stores,
    config: &Config,
    actor: &Actor,
    recipe: &Recipe,
    req: &RunRequest,
    sink: Sink,
) -> Result<RunResult> {
    let started = Instant::now();
    let vetting = vetting(stores, config, actor, recipe, req)?;
    let decls = declared_params_within(recipe, &req.params, &req.limits, &req.cancel)?;
    // The run's budget starts now and holds for every host, batch and wait.
    let cancel = req.cancel.with_timeout(req.limits.timeout);
    check_given(&decls, &req.params, &req.secrets, true)
        .map_err(|m| Error::Param(format!("{}: {m}", recipe.path.display())))?;
    let specs: Vec<HostSpec> = if req.hosts.is_empty() {
        vec![HostSpec::local()]
    } else {
        req.hosts.clone()
    };
    // `//! become: false`: the recipe must not run as root through sudo, whether
    // --become or the inventory asks for it.
    if recipe.become_policy() == Some(false) {
        let sudo: Vec<&str> = specs
            .iter()
            .filter(|s| s.become_)
            .map(|s| s.name.as_str())
            .collect();
        if !sudo.is_empty() {
            return Err(Error::Usage(format!(
                "{} declares `become: false` and may not run through sudo; {} would (--become or the inventory's `become`)",
                recipe.path.display(),
                sudo.join(", ")
            )));
        }
    }
    let names: Vec<String> = specs.iter().map(|h| h.name.clone()).collect();
    let user = actor.user.clone();
    // A real run's id is reserved in the state dir: no other run can be handed it.
    let run_id = if req.dry_run {
        new_run_id()
    } else {
        stores.runs.reserve_run_id()?
    };
    let params = recorded_params(&decls, &req.params);
    let meta = RunMeta {
        run_id: run_id.clone(),
        recipe: recipe.name.clone(),
        recipe_path: recipe.path.display().to_string(),
        hash: recipe.hash.clone(),
        params: params.clone(),
        user: user.clone(),
        schedule: actor.schedule.clone(),
        started: chrono::Utc::now().to_rfc3339(),
        ended: None,
        duration_ms: 0,
        outcome: crate::outcome::RunState::Running,
        rolled_back_at: None,
        changed: 0,
        dry_run: req.dry_run,
        hosts: names.clone(),
        targets: specs.clone(),
        pid: std::process::id(),
        lease: None,
        backups_freed: Default::default(),
    };
    let audit = stores.audit.clone();
    let halt: Option<engine::Halt> = (!req.dry_run).then(Default::default);
    let commits = Arc::new(GroupCommit::default());
    let sink = audited(
        sink,
        Some(audit.clone()),
        run_id.clone(),
        actor.clone(),
        req.dry_run,
        halt.clone(),
        commits.clone(),
    );
    // Scrubbed before the audit log and the terminal see anything.
    let sink = engine::redacting(
        sink,
        crate::recipe::params::secret_values(&decls, &req.params, &req.secrets),
    );
    sink(&Event::RunStart {
        run_id: run_id.clone(),
        recipe: recipe.name.clone(),
        recipe_hash: recipe.hash.clone(),
        dry_run: req.dry_run,
        vetted: vetting.vetted,
        hosts: names.clone(),
        params,
    });
    // Fail closed: a run the audit log cannot record does not start (and leaves no
    // run record behind).
    if let Some(why) = commits.failure().filter(|_| !req.dry_run) {
        stores.runs.discard(&run_id);
        return Err(Error::Audit {
            path: audit.describe().into(),
            message: format!("cannot record the run, so it was not started: {why}"),
        });
    }
    // Held until the end; any way out before it leaves a final run record.
    let (lease, dry_meta) = if req.dry_run {
        (None, Some(meta))
    } else {
        (Some(RunLease::start(stores.runs.clone(), meta)?), None)
    };

    let one = HostRunner {
        stores,
        run_id: &run_id,
        recipe,
        req,
        sink: &sink,
        halt,
        cancel: &cancel,
        free_on_success: config.retention.free_on_success(),
    };
    let total = specs.len();
    let mut results: Vec<Option<HostResult>> = vec![None; total];
    let failed = AtomicUsize::new(0);
    let policy = Policy {
        serial: !req.serial.is_empty(),
        ..req.policy.clone()
    };
    for batch in batches(total, &req.serial) {
        let stop = AtomicBool::new(policy.broken(failed.load(Ordering::SeqCst), total));
        let items: Vec<(usize, &HostSpec)> = batch.clone().map(|i| (i, &specs[i])).collect();
        let done = run_pool(items, req.forks, &stop, |(i, spec)| {
            let r = one.run_host(spec);
            if cancel.stopped().is_some() {
                stop.store(true, Ordering::SeqCst);
            }
            if r.outcome.is_failure() {
                let f = failed.fetch_add(1, Ordering::SeqCst) + 1;
                if policy.broken(f, total) {
                    stop.store(true, Ordering::SeqCst);
                }
            }
            (i, r)
        });
        for (i, r) in done.into_iter().flatten() {
            results[i] = Some(r);
        }
        if !policy.next_batch_allowed(failed.load(Ordering::SeqCst), total)
            || cancel.stopped().is_some()
        {
            break;
        }
    }
    let mut hosts: Vec<HostResult> = results
        .into_iter()
        .zip(&names)
        .map(|(r, name)| {
            r.unwrap_or_else(|| {
                let why = match cancel.stopped() {
                    Some(stop) => format!("not started: {stop}"),
                    None => "not started: the failure policy stopped the run".into(),
                };
                let skipped = HostResult::new(name, Outcome::Skipped, Some(why));
                host_end(&sink, &skipped);
                skipped
            })
        })
        .collect();

    if req.atomic && !req.dry_run && hosts.iter().any(|h| h.outcome.is_failure()) {
        // All or nothing: the hosts that succeeded are rolled back too.
        for h in hosts.iter_mut().filter(|h| h.outcome == Outcome::Ok) {
            let Some(target) = h.reached.clone().filter(|_| h.journaled) else {
                continue;
            };
            let replay = Replay {
                run_id: run_id.to_string(),
                save_dir: h.backup_dir.clone().unwrap_or_default(),
                ..Replay::default()
            };
            // One host's failure to roll back must not stop the others' rollback, nor
            // the end of the run (its run_end event and final record).
            let report = rollback_host(
                target.as_ref(),
                stores.journals.as_ref(),
                &h.host,
                &replay,
                &sink,
            )
            .unwrap_or_else(|e| {
                let mut r = RollbackReport::default();
                let why = format!("its journal could not be replayed: {e}");
                not_undone(&sink, &h.host, why, &mut r);
                r
            });
            h.freed = report.freed;
            h.outcome = if report.incomplete.is_empty() {
                Outcome::RolledBack
            } else {
                Outcome::RollbackIncomplete
            };
            h.error = Some("rolled back: another host of this --atomic run failed".into());
        }
    }

    if req.atomic && !req.dry_run && one.free_on_success {
        // Only now is it known that no host of the run will be rolled back.
        for h in hosts.iter_mut().filter(|h| h.outcome == Outcome::Ok) {
            if let (Some(t), Some(dir)) = (&h.reached, &h.backup_dir) {
                h.freed = free_now(t.as_ref(), dir);
            }
        }
    }
    if req.atomic && !req.dry_run {
        // Held back until now: an --atomic host's outcome is known only at the end.
        for h in hosts.iter().filter(|h| h.outcome != Outcome::Skipped) {
            host_end(&sink, h);
        }
    }
    let outcome = overall(&hosts);
    let changed = hosts.iter().map(|h| h.changed).sum();
    let unknown = hosts.iter().map(|h| h.unknown).sum();
    let duration_ms = started.elapsed().as_millis() as u64;
    sink(&Event::RunEnd {
        run_id: run_id.clone(),
        outcome: outcome.as_str().into(),
        changed,
        unknown,
        duration_ms,
    });
    if let Some(lease) = lease {
        lease.finish(|meta| {
            meta.outcome = outcome.into();
            meta.changed = changed;
            meta.ended = Some(chrono::Utc::now().to_rfc3339());
            meta.duration_ms = duration_ms;
            for h in hosts.iter().filter(|h| h.freed) {
                let by = if h.outcome == Outcome::Ok {
                    "success"
                } else {
                    "rollback"
                };
                let freed = crate::state::Freed::now(by);
                meta.backups_freed.insert(h.host.clone(), freed);
            }
        })?;
    }
    if let Some(mut meta) = dry_meta {
        // Listed by `tend runs` as a dry-run; a state dir it cannot write to does not
        // fail a dry-run, which writes nothing else.
        meta.outcome = outcome.into();
        meta.changed = changed;
        meta.ended = Some(chrono::Utc::now().to_rfc3339());
        meta.duration_ms = duration_ms;
        if let Err(e) = stores.runs.write(&meta) {
            tracing::warn!("dry-run {run_id}: cannot record it: {e}");
        }
    }
    for h in &mut hosts {
        h.reached = None;
        h.locks = None;
    }
    Ok(RunResult {
        run_id,
        vetting,
        outcome,
        changed,
        unknown,
        hosts,
    })
}

/// A host's locks, here and on the host, released when dropped.
pub(crate) struct HostLocks {
    _here: Box<dyn Send + Sync>,
    _there: Option<crate::lock::TargetLock>,
}

/// Take the lock of host `name` on this machine, then on the host itself.
pub(crate) fn lock_host(
    stores: &Stores,
    reached: &Reached,
    name: &str,
    run_id: &str,
    take: &Take,
) -> Result<HostLocks> {
    let me = Holder::me(run_id, name, stores.state.root());
    let here = stores.locks.lock(name, &me, take)?;
    let there = match reached.lock_dir() {
        Some(dir) => Some(crate::lock::acquire(&reached.target, dir, &me, take)?),
        None => None,
    };
    Ok(HostLocks {
        _here: here,
        _there: there,
    })
}

pub(crate) fn host_end(sink: &Sink, r: &HostResult) {
    sink(&Event::HostEnd {
        host: r.host.clone(),
        outcome: r.outcome.as_str().into(),
        changed: r.changed,
        unknown: r.unknown,
        unchanged: r.unchanged,
        duration_ms: r.duration_ms,
        error: r.error.clone(),
        fault: r.fault,
    });
}

/// What every host of a run shares.
pub(crate) struct HostRunner<'a> {
    stores: &'a Stores,
    run_id: &'a str,
    recipe: &'a Recipe,
    req: &'a RunRequest,
    sink: &'a Sink,
    halt: Option<engine::Halt>,
    cancel: &'a CancelToken,
    /// `[retention] backups = "0"`: a host that succeeds frees its backups at once.
    free_on_success: bool,
}

impl HostRunner<'_> {
    pub(crate) fn end(&self, mut r: HostResult, started: Instant) -> HostResult {
        r.duration_ms = started.elapsed().as_millis() as u64;
        // --atomic holds every host's end back until the others are known.
        if !self.req.atomic || self.req.dry_run {
            host_end(self.sink, &r);
        }
        r
    }

    /// Connect, lock, run the recipe, roll back on failure. Never returns an error:
    /// whatever happens to one host is that host's outcome, not the fleet's.
    pub(crate) fn run_host(&self, spec: &HostSpec) -> HostResult {
        let started = Instant::now();
        let name = spec.name.as_str();
        (self.sink)(&Event::HostStart {
            host: name.to_string(),
        });
        let reached = match spec.connect() {
            Ok(r) => r,
            Err(e) => {
                let mut r = HostResult::new(name, Outcome::Unreachable, Some(e.to_string()));
                r.fault = Some(e.fault());
                return self.end(r, started);
            }
        };
        match self.run_reached(spec, &reached) {
            Ok(r) => self.end(r, started),
            Err(e) => {
                let outcome = if matches!(e, Error::Locked { .. }) {
                    Outcome::Locked
                } else {
                    Outcome::Failed
                };
                self.end(HostResult::new(name, outcome, Some(e.to_string())), started)
            }
        }
    }

    pub(crate) fn run_reached(&self, spec: &HostSpec, reached: &Reached) -> Result<HostResult> {
        let name = spec.name.as_str();
        let target = reached.target.clone();
        let req = self.req;
        // A guard: released however this function is left (--atomic keeps it longer).
        let locks = if req.dry_run {
            None
        } else {
            let take = Take {
                wait: req.wait,
                take_over: None,
                fenced: false,
                cancel: Some(self.cancel.clone()),
            };
            Some(Arc::new(lock_host(
                self.stores,
                reached,
                name,
                self.run_id,
                &take,
            )?))
        };
        // A dry-run saves nothing: it never needs the directory.
        let remote_backup = if req.dry_run {
            None
        } else {
            reached.remote_backup_dir(self.run_id, name)?
        };
        let mut backup_dir = None;
        let journals = self.stores.journals.as_ref();
        let (ctx, journaling) = if req.dry_run {
            (Ctx::plan(Arc::new(Overlay::new(target.clone()))), false)
        } else {
            let journal = journals.open(self.run_id, name)?;

            // Old contents stay on the machine they came from: rollback needs no transfer.
            let backup = match remote_backup {
                Some(remote) => remote,
                None => self
                    .stores
                    .local_backup_dir(self.run_id, name)?
                    .display()
                    .to_string(),
            };
            let scope = self.recipe.scope_set();
            journal
                .header(&backup, scope.as_ref().map(|s| s.patterns()))
                .map_err(|e| {
                    let at = journals.describe(self.run_id, name);
                    Error::io(format!("cannot write journal {at}"), e)
                })?;
            backup_dir = Some(backup.clone());
            (Ctx::apply(target.clone(), journal, backup), true)
        };
        let mut hctx = HostContext::new(
            ctx.with_cancel(self.cancel.clone()),
            self.recipe.dir.clone(),
            Mode::Run,
            req.params.clone(),
            self.recipe.param_docs(),
            self.sink.clone(),
        )
        .with_secrets(req.secrets.clone())
        .with_scope(self.recipe.scope_set())
        .without_become(self.recipe.become_policy() == Some(false));
        if let Some(halt) = &self.halt {
            hctx = hctx.with_halt(halt.clone());
        }
        let hctx = Arc::new(hctx);
        let engine = engine::for_host(hctx.clone(), &req.limits);
        // Notified handlers run once the recipe succeeded, before the host's end.
        let result = engine
            .run_ast(&self.recipe.ast)
            .and_then(|()| engine::handlers::run_at_end(&hctx, &engine, &self.recipe.ast));
        drop(engine);
        let mut r = HostResult::new(name, Outcome::Ok, None);
        r.changed = hctx.changed.load(Ordering::SeqCst);
        r.unknown = hctx.unknown.load(Ordering::SeqCst);
        r.unchanged = hctx
            .ctx
            .current_step()
            .saturating_sub(r.changed + r.unknown);
        r.journaled = journaling;
        r.backup_dir = backup_dir.clone();
        if let Err(e) = result {
            let message = hctx.redact(&engine::describe(
                &e,
                &self.recipe.path.display().to_string(),
                &req.limits,
            ));
            (self.sink)(&Event::StepFailed {
                host: name.to_string(),
                step: hctx.ctx.current_step(),
                error: message.clone(),
            });
            r.unchanged = r.unchanged.saturating_sub(1);
            r.error = Some(message);
            // Nothing journaled means nothing changed: a plain failure, not a rollback.
            let journaled = journaling
                && journals
                    .read(self.run_id, name)
                    .is_ok_and(|c| !c.entries.is_empty());
            r.outcome = if journaled && !req.no_rollback {
                {
                    let replay = Replay {
                        run_id: self.run_id.to_string(),
                        dry_run: false,
                        force: false,
                        save_dir: backup_dir.clone().unwrap_or_default(),
                        freed: None,
                    };
                    let report =
                        rollback_host(target.as_ref(), journals, name, &replay, self.sink)?;
                    r.freed = report.freed;
                    if report.incomplete.is_empty() {
                        Outcome::RolledBack
                    } else {
                        Outcome::RollbackIncomplete
                    }
                }
            } else {
                Outcome::Failed
            };
            if self.cancel.is_cancelled() {
                r.outcome = Outcome::Cancelled;
            }
        }
        if r.outcome == Outcome::Ok && self.free_on_success && !req.atomic {
            if let Some(dir) = &backup_dir {
                r.freed = free_now(target.as_ref(), dir);
            }
        }
        if req.atomic {
            r.reached = Some(target);
            r.locks = locks;
        }
        Ok(r)
    }
}
