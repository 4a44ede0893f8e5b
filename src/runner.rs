//! One run of a recipe: check its parameters, take the host lock, execute the script
//! against the host's target (an overlay for a dry-run), journal every change, roll
//! back on failure, and report events to the CLI and the audit log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::app::{Actor, Config, Trigger};
use crate::audit::AuditLog;
use crate::cancel::CancelToken;
use crate::engine::{self, HostContext, Limits, Mode};
use crate::error::{Error, Result};
use crate::event::{Event, Sink};
use crate::fleet::{batches, run_pool, BatchSize, Policy};
use crate::journal::undo::{Reverted, Undo};
use crate::journal::{Entry, Journal};
use crate::lease::RunLease;
use crate::lock::{Holder, Take};
use crate::ops::Ctx;
use crate::reach::{HostSpec, Reached};
use crate::recipe::params::{ParamDecl, ParamType};
use crate::recipe::Recipe;
use crate::state::{new_run_id, RunMeta, StateDir};
use crate::target::local::Local;
use crate::target::overlay::Overlay;
use crate::target::{Kind, Target};
use crate::trust::RequireVetted;

pub struct RunRequest {
    pub params: Vec<(String, String)>,
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

/// How one host's part of a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Clone)]
pub struct HostResult {
    pub host: String,
    pub outcome: Outcome,
    pub changed: u64,
    pub unknown: u64,
    pub unchanged: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// Kept open for `--atomic`, which may roll this host back after the others end.
    reached: Option<Arc<dyn Target>>,
    locks: Option<Arc<HostLocks>>,
    journal: Option<PathBuf>,
}

impl HostResult {
    fn new(host: &str, outcome: Outcome, error: Option<String>) -> Self {
        HostResult {
            host: host.to_string(),
            outcome,
            changed: 0,
            unknown: 0,
            unchanged: 0,
            duration_ms: 0,
            error,
            reached: None,
            locks: None,
            journal: None,
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
fn overall(hosts: &[HostResult]) -> Outcome {
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

fn null_sink() -> Sink {
    Arc::new(|_: &Event| {})
}

/// Evaluate the recipe up to `params()` to learn and check its parameters, touching
/// nothing. Shared by `run`, `check` and `show`.
pub fn declared_params(recipe: &Recipe, given: &[(String, String)]) -> Result<Vec<ParamDecl>> {
    declared_params_within(recipe, given, &Limits::default(), &CancelToken::default())
}

/// [`declared_params`] under the run's own limits: a recipe that computes a lot
/// before `params()` (or has none) needs the `--max-operations` it was given here too.
fn declared_params_within(
    recipe: &Recipe,
    given: &[(String, String)],
    limits: &Limits,
    cancel: &CancelToken,
) -> Result<Vec<ParamDecl>> {
    let target: Arc<dyn Target> = Arc::new(Overlay::new(Arc::new(Local::new())));
    let host = Arc::new(HostContext::new(
        Ctx::plan(target).with_cancel(cancel.with_timeout(limits.timeout)),
        recipe.dir.clone(),
        Mode::Declare,
        given.to_vec(),
        recipe.param_docs(),
        null_sink(),
    ));
    let engine = engine::for_host(host.clone(), limits);
    let display = recipe.path.display().to_string();
    match engine.run_ast(&recipe.ast) {
        Ok(()) => {}
        Err(e) => match engine::is_declared_marker(&e) {
            Some(true) => {
                let decls = host.declared().unwrap_or_default();
                check_given(&decls, given, false)
                    .map_err(|m| Error::Param(format!("{display}: {m}")))?;
                return Ok(decls);
            }
            Some(false) => {}
            None => {
                let text = engine::describe(&e, &display, limits);
                // Parameter problems are the caller's, not the recipe's.
                return Err(if text.contains("parameter `") {
                    Error::Param(
                        text.split_once(": ")
                            .map(|(_, m)| m.to_string())
                            .unwrap_or(text),
                    )
                } else {
                    let (location, message) = text.split_once(": ").unwrap_or(("", &text));
                    Error::Recipe {
                        location: location.to_string(),
                        message: message.to_string(),
                    }
                });
            }
        },
    }
    if let Some((k, _)) = given.first() {
        return Err(Error::Param(format!(
            "unknown parameter `{k}`; {} declares no parameters",
            display
        )));
    }
    Ok(Vec::new())
}

/// Check `-p` values against the declarations before anything runs, so that a typo
/// is a usage error and not a failed run: unknown names, values of the wrong type and,
/// with `all`, required parameters (secrets) that were not given.
fn check_given(
    decls: &[ParamDecl],
    given: &[(String, String)],
    all: bool,
) -> std::result::Result<(), String> {
    if let Some((k, _)) = given
        .iter()
        .find(|(k, _)| !decls.iter().any(|d| d.name == *k))
    {
        let list: Vec<String> = decls
            .iter()
            .map(|d| format!("{} ({})", d.name, d.ty.as_str()))
            .collect();
        return Err(if list.is_empty() {
            format!("unknown parameter `{k}`; the recipe takes no parameters")
        } else {
            format!("unknown parameter `{k}`; it takes: {}", list.join(", "))
        });
    }
    let names: rhai::Map = decls
        .iter()
        .map(|d| (d.name.as_str().into(), rhai::Dynamic::UNIT))
        .collect();
    let checked: Vec<ParamDecl> = decls
        .iter()
        .filter(|d| all || given.iter().any(|(k, _)| *k == d.name))
        .cloned()
        .collect();
    crate::recipe::params::resolve(&names, &checked, given).map(|_| ())
}

/// Parameters as they may be recorded: secrets as `***`.
fn recorded_params(decls: &[ParamDecl], given: &[(String, String)]) -> BTreeMap<String, String> {
    given
        .iter()
        .map(|(k, v)| {
            let secret = decls
                .iter()
                .any(|d| d.name == *k && d.ty == ParamType::Secret);
            let v = if secret {
                crate::secret::REDACTED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

fn audit_record(
    run_id: &str,
    actor: &Actor,
    dry_run: bool,
    event: &Event,
) -> Option<serde_json::Value> {
    let keep = match event {
        // A plan is recorded (who looked at what), its steps are not: nothing changed.
        _ if dry_run => matches!(event, Event::RunStart { .. } | Event::RunEnd { .. }),
        Event::Step { report, .. } => report.changed || report.unknown,
        Event::Log { .. } | Event::Undo { .. } | Event::HostStart { .. } => false,
        _ => true,
    };
    if !keep {
        return None;
    }
    let mut v = serde_json::to_value(event).ok()?;
    let obj = v.as_object_mut()?;
    obj.insert("run_id".into(), run_id.into());
    obj.insert("user".into(), actor.user.clone().into());
    if let Event::RunStart { .. } = event {
        obj.insert("trigger".into(), actor.trigger.as_str().into());
        if let Some(name) = &actor.schedule {
            obj.insert("schedule".into(), name.clone().into());
        }
    }
    // A full diff may be large; the audit keeps its size, the terminal showed it.
    if let Some(diff) = obj.remove("diff") {
        let text = diff.as_str().unwrap_or_default();
        let added = text
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .count();
        let removed = text
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
            .count();
        obj.insert("diff_summary".into(), format!("+{added} -{removed}").into());
    }
    obj.remove("stdout");
    obj.remove("stderr");
    Some(v)
}

/// Audit appends from many host threads, written together (group commit): whoever
/// finds no write in progress writes every batch queued so far, with one lock, one
/// fsync and one head update; the others wait until theirs is durable. Hosts of a
/// fleet run step in parallel, so their appends share fsyncs.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<Queue>,
    written: std::sync::Condvar,
}

#[derive(Default)]
struct Queue {
    records: Vec<serde_json::Value>,
    /// Batches queued so far, and how many of them are on disk.
    queued: u64,
    durable: u64,
    writing: bool,
    /// Why an append failed. Every later one fails too: a record after a lost one
    /// would make a chain that reads as complete.
    failed: Option<String>,
}

impl GroupCommit {
    /// Ok once `batch` is durable in the log; Err(why) if it is not.
    fn append(&self, log: &AuditLog, batch: Vec<serde_json::Value>) -> Result<(), String> {
        let mut q = self.state.lock().expect("audit queue");
        if let Some(why) = &q.failed {
            return Err(why.clone());
        }
        q.records.extend(batch);
        q.queued += 1;
        let mine = q.queued;
        while q.durable < mine {
            if q.writing {
                q = self.written.wait(q).expect("audit queue");
                continue;
            }
            q.writing = true;
            let records = std::mem::take(&mut q.records);
            let upto = q.queued;
            drop(q);
            let written = log.append_many(records);
            q = self.state.lock().expect("audit queue");
            q.writing = false;
            q.durable = upto;
            if let Err(err) = written {
                q.failed.get_or_insert(audit_failure(&err));
            }
            self.written.notify_all();
        }
        match &q.failed {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// Why an append failed, if one did.
    fn failure(&self) -> Option<String> {
        self.state.lock().expect("audit queue").failed.clone()
    }
}

/// Why the log refused an append, without its path: the messages built from this
/// name the log themselves.
fn audit_failure(e: &Error) -> String {
    match e {
        Error::Tampered { message, .. } => format!("it failed verification: {message}"),
        Error::Audit { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A sink that also appends to the audit log, each recorded event as it happens, so
/// that no change is followed by another before its record is durable. When `halt`
/// is given (a real run) a failed append sets it: the step being recorded fails, no
/// further step runs, and the run rolls back as after any failure. Without it (a
/// dry-run, which changes nothing; a rollback, which must not be stopped halfway) the
/// failure is only reported.
fn audited(
    sink: Sink,
    audit: Option<Arc<AuditLog>>,
    run_id: String,
    actor: Actor,
    dry_run: bool,
    halt: Option<engine::Halt>,
    commits: Arc<GroupCommit>,
) -> Sink {
    Arc::new(move |e: &Event| {
        if let Some(log) = &audit {
            if let Some(rec) = audit_record(&run_id, &actor, dry_run, e) {
                if let Err(why) = commits.append(log, vec![rec]) {
                    match &halt {
                        // Not started (see `run`): nothing to show it began.
                        Some(_) if matches!(e, Event::RunStart { .. }) => return,
                        Some(halt) => {
                            let _ = halt.set(format!(
                                "the audit log {} cannot record this run: {why}",
                                log.path().display()
                            ));
                        }
                        None => tracing::error!("audit log: {why}"),
                    }
                }
            }
        }
        sink(e);
    })
}

/// The recipe behind `tend exec`: the command is a parameter, never spliced into code.
const EXEC_RECIPE: &str = "//! Ad-hoc command (tend exec).
let p = params(#{ command: \"\", timeout: 0 });
let opts = #{ allow_fail: true };
if p.timeout > 0 { opts.timeout = p.timeout; }
sh(p.command, opts);
";

/// The built-in recipe of `tend exec`, which runs `-p command=…` through `sh`.
pub fn exec_recipe() -> Result<Recipe> {
    Recipe::from_text("exec", EXEC_RECIPE)
}

/// A run's vetting, as decided by [`vetting`].
#[derive(Debug, Clone)]
pub struct Vetting {
    /// Vetted as it is now (what the audit log records).
    pub vetted: bool,
    /// Why it runs although it is not vetted, for a note to the person who ran it.
    pub unvetted_note: Option<String>,
}

/// Whether `actor` may run `recipe` as `req` asks, under the `[trust]` policy of
/// `config`; Err is the refusal (exit 77). Decided here, inside the run, from the
/// recipe's content hash and the trust file, so no caller can skip it:
/// - a scheduled run needs the recipe vetted as it is now (an edit since un-vets it),
///   unless the policy is `never`; it takes no `--unvetted` and no ad-hoc command;
/// - a person (`cli`, `api`) follows the policy: a dry-run always goes, a real run of
///   an unvetted recipe as `require_vetted` and `req.unvetted` say. `tend exec` is an
///   explicit ad-hoc command: it runs unvetted, as it always has.
pub fn vetting(
    state: &StateDir,
    config: &Config,
    actor: &Actor,
    recipe: &Recipe,
    req: &RunRequest,
) -> Result<Vetting> {
    let trust = config.trust(state)?;
    let status = trust.status(recipe)?;
    let shown = recipe.path.display();
    let adhoc = recipe.hash == exec_recipe()?.hash;
    let vetted = match actor.trigger {
        Trigger::Schedule if adhoc => {
            return Err(Error::Unvetted(format!(
                "{shown} is an ad-hoc command: a schedule runs only vetted recipes"
            )))
        }
        Trigger::Schedule if trust.allows_scheduled(&status) => status.is_vetted(),
        Trigger::Schedule => {
            return Err(Error::Unvetted(format!(
                "{shown} is not vetted ({}); a scheduled run needs it vetted as it is now: \
                 review it and `tend vet {shown} --by NAME`",
                status.describe()
            )))
        }
        Trigger::Cli | Trigger::Api if adhoc => false,
        Trigger::Cli | Trigger::Api => {
            trust.gate_run(&recipe.path, &status, req.dry_run, req.unvetted)?
        }
    };
    let unvetted_note =
        (!vetted && !adhoc && !req.dry_run && trust.require_vetted == RequireVetted::Scheduled)
            .then(|| {
                format!(
                "{shown} is not vetted ({}): it ran anyway, recorded as unvetted in the audit log",
                status.describe()
            )
            });
    Ok(Vetting {
        vetted,
        unvetted_note,
    })
}

/// Run `recipe` for `actor` as `req` asks, with the settings of `config`: refused
/// before anything happens if vetting does not allow it (see [`vetting`]).
pub fn run(
    state: &StateDir,
    config: &Config,
    actor: &Actor,
    recipe: &Recipe,
    req: &RunRequest,
    sink: Sink,
) -> Result<RunResult> {
    let started = Instant::now();
    let vetting = vetting(state, config, actor, recipe, req)?;
    let decls = declared_params_within(recipe, &req.params, &req.limits, &req.cancel)?;
    // The run's budget starts now and holds for every host, batch and wait.
    let cancel = req.cancel.with_timeout(req.limits.timeout);
    check_given(&decls, &req.params, true)
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
        state.reserve_run_id()?
    };
    let params = recorded_params(&decls, &req.params);
    let meta = RunMeta {
        run_id: run_id.clone(),
        recipe: recipe.name.clone(),
        recipe_path: recipe.path.display().to_string(),
        hash: recipe.hash.clone(),
        params: params.clone(),
        user: user.clone(),
        started: chrono::Utc::now().to_rfc3339(),
        ended: None,
        duration_ms: 0,
        outcome: "running".into(),
        changed: 0,
        dry_run: req.dry_run,
        hosts: names.clone(),
        targets: specs.clone(),
        pid: std::process::id(),
        lease: None,
    };
    let audit = Arc::new(AuditLog::new(state.root()));
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
        crate::recipe::params::secret_values(&decls, &req.params),
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
        let _ = std::fs::remove_dir(state.run_dir(&run_id));
        return Err(Error::Audit {
            path: audit.path().to_path_buf(),
            message: format!("cannot record the run, so it was not started: {why}"),
        });
    }
    // Held until the end; any way out before it leaves a final run record.
    let lease = if req.dry_run {
        None
    } else {
        Some(RunLease::start(state, meta)?)
    };

    let one = HostRunner {
        state,
        run_id: &run_id,
        recipe,
        req,
        sink: &sink,
        halt,
        cancel: &cancel,
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
            let (Some(target), Some(jpath)) = (h.reached.clone(), h.journal.clone()) else {
                continue;
            };
            let replay = Replay {
                run_id: run_id.to_string(),
                ..Replay::default()
            };
            // One host's failure to roll back must not stop the others' rollback, nor
            // the end of the run (its run_end event and final record).
            let report =
                rollback_host(target.as_ref(), &jpath, &replay, &sink).unwrap_or_else(|e| {
                    let mut r = RollbackReport::default();
                    let why = format!("its journal could not be replayed: {e}");
                    not_undone(&sink, &h.host, why, &mut r);
                    r
                });
            h.outcome = if report.incomplete.is_empty() {
                Outcome::RolledBack
            } else {
                Outcome::RollbackIncomplete
            };
            h.error = Some("rolled back: another host of this --atomic run failed".into());
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
            meta.outcome = outcome.as_str().into();
            meta.changed = changed;
            meta.ended = Some(chrono::Utc::now().to_rfc3339());
            meta.duration_ms = duration_ms;
        })?;
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
struct HostLocks {
    _here: crate::lock::MachineLock,
    _there: Option<crate::lock::TargetLock>,
}

/// Take the lock of host `name` on this machine, then on the host itself.
fn lock_host(
    state: &StateDir,
    reached: &Reached,
    name: &str,
    run_id: &str,
    take: &Take,
) -> Result<HostLocks> {
    let me = Holder::me(run_id, name, state.root());
    let here = crate::lock::lock_here(state.lock_dir(), name, &me, take)?;
    let there = match reached.lock_dir() {
        Some(dir) => Some(crate::lock::acquire(&reached.target, dir, &me, take)?),
        None => None,
    };
    Ok(HostLocks {
        _here: here,
        _there: there,
    })
}

fn host_end(sink: &Sink, r: &HostResult) {
    sink(&Event::HostEnd {
        host: r.host.clone(),
        outcome: r.outcome.as_str().into(),
        changed: r.changed,
        unknown: r.unknown,
        unchanged: r.unchanged,
        duration_ms: r.duration_ms,
        error: r.error.clone(),
    });
}

/// What every host of a run shares.
struct HostRunner<'a> {
    state: &'a StateDir,
    run_id: &'a str,
    recipe: &'a Recipe,
    req: &'a RunRequest,
    sink: &'a Sink,
    halt: Option<engine::Halt>,
    cancel: &'a CancelToken,
}

impl HostRunner<'_> {
    fn end(&self, mut r: HostResult, started: Instant) -> HostResult {
        r.duration_ms = started.elapsed().as_millis() as u64;
        // --atomic holds every host's end back until the others are known.
        if !self.req.atomic || self.req.dry_run {
            host_end(self.sink, &r);
        }
        r
    }

    /// Connect, lock, run the recipe, roll back on failure. Never returns an error:
    /// whatever happens to one host is that host's outcome, not the fleet's.
    fn run_host(&self, spec: &HostSpec) -> HostResult {
        let started = Instant::now();
        let name = spec.name.as_str();
        (self.sink)(&Event::HostStart {
            host: name.to_string(),
        });
        let reached = match spec.connect() {
            Ok(r) => r,
            Err(e) => {
                return self.end(
                    HostResult::new(name, Outcome::Unreachable, Some(e.to_string())),
                    started,
                )
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

    fn run_reached(&self, spec: &HostSpec, reached: &Reached) -> Result<HostResult> {
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
                cancel: Some(self.cancel.clone()),
            };
            Some(Arc::new(lock_host(
                self.state,
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
        let (ctx, journal_path) = if req.dry_run {
            (Ctx::plan(Arc::new(Overlay::new(target.clone()))), None)
        } else {
            let dir = self.state.host_dir(self.run_id, name)?;
            let jpath = self.state.journal_path(self.run_id, name);
            let journal = Journal::open(&jpath)
                .map_err(|e| Error::io(format!("cannot open journal {}", jpath.display()), e))?;

            // Old contents stay on the machine they came from: rollback needs no transfer.
            let backup = match remote_backup {
                Some(remote) => remote,
                None => dir.join("backup").display().to_string(),
            };
            let scope = self.recipe.scope_set();
            journal
                .header(&backup, scope.as_ref().map(|s| s.patterns()))
                .map_err(|e| Error::io(format!("cannot write journal {}", jpath.display()), e))?;
            backup_dir = Some(backup.clone());
            (
                Ctx::apply(target.clone(), Arc::new(journal), backup),
                Some(jpath),
            )
        };
        let mut hctx = HostContext::new(
            ctx.with_cancel(self.cancel.clone()),
            self.recipe.dir.clone(),
            Mode::Run,
            req.params.clone(),
            self.recipe.param_docs(),
            self.sink.clone(),
        )
        .with_scope(self.recipe.scope_set())
        .without_become(self.recipe.become_policy() == Some(false));
        if let Some(halt) = &self.halt {
            hctx = hctx.with_halt(halt.clone());
        }
        let hctx = Arc::new(hctx);
        let engine = engine::for_host(hctx.clone(), &req.limits);
        let result = engine.run_ast(&self.recipe.ast);
        drop(engine);
        let mut r = HostResult::new(name, Outcome::Ok, None);
        r.changed = hctx.changed.load(Ordering::SeqCst);
        r.unknown = hctx.unknown.load(Ordering::SeqCst);
        r.unchanged = hctx
            .ctx
            .current_step()
            .saturating_sub(r.changed + r.unknown);
        r.journal = journal_path.clone();
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
            let journaled = journal_path
                .as_deref()
                .is_some_and(|j| Journal::read(j).is_ok_and(|c| !c.entries.is_empty()));
            r.outcome = match (&journal_path, req.no_rollback || !journaled) {
                (Some(jpath), false) => {
                    let replay = Replay {
                        run_id: self.run_id.to_string(),
                        dry_run: false,
                        force: false,
                        save_dir: backup_dir.clone().unwrap_or_default(),
                    };
                    let report = rollback_host(target.as_ref(), jpath, &replay, self.sink)?;
                    if report.incomplete.is_empty() {
                        Outcome::RolledBack
                    } else {
                        Outcome::RollbackIncomplete
                    }
                }
                _ => Outcome::Failed,
            };
            if self.cancel.is_cancelled() {
                r.outcome = Outcome::Cancelled;
            }
        }
        if req.atomic {
            r.reached = Some(target);
            r.locks = locks;
        }
        Ok(r)
    }
}

#[derive(Debug, Default)]
pub struct RollbackReport {
    pub reverted: u64,
    /// What could not be undone, with why; empty when rollback was complete.
    pub incomplete: Vec<String>,
}

/// How a journal is replayed.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// The run whose journal it is, for messages.
    pub run_id: String,
    pub dry_run: bool,
    /// Revert paths that changed since the run, saving what they hold first.
    pub force: bool,
    /// Where `force` saves what it overwrites: the run's backup directory on the host.
    pub save_dir: String,
}

/// Replay one host's journal in reverse. Goes on past a record it cannot revert, so
/// as much as possible is undone, and says exactly what was not.
///
/// Before reverting a record it checks, through the same view the change was made
/// with, that its directories still lead where they led when the run wrote it (no
/// symlink swapped in) and that the path still holds what the run left there (nobody
/// changed it since). A record that fails either is not touched.
pub fn rollback_host(
    target: &dyn Target,
    journal_path: &Path,
    replay: &Replay,
    sink: &Sink,
) -> Result<RollbackReport> {
    let host = target.info().name.clone();
    let dry_run = replay.dry_run;
    let contents = Journal::read(journal_path)
        .map_err(|e| Error::io(format!("cannot read journal {}", journal_path.display()), e))?;
    let journal =
        if dry_run {
            None
        } else {
            Some(Journal::open(journal_path).map_err(|e| {
                Error::io(format!("cannot open journal {}", journal_path.display()), e)
            })?)
        };
    let mut report = RollbackReport::default();
    for d in &contents.damaged {
        report.incomplete.push(format!(
            "journal {}: {d}: that line cannot be read, so whatever change it recorded was not undone: check by hand",
            journal_path.display()
        ));
    }
    let scope = match &contents.scope {
        Some(patterns) => match crate::engine::Scope::new(patterns) {
            Ok(s) => Some(s),
            Err(e) => {
                report.incomplete.push(format!(
                    "journal {}: its scope cannot be read ({e}); nothing was reverted",
                    journal_path.display()
                ));
                return Ok(report);
            }
        },
        None => None,
    };
    let backups = contents.backups.as_deref().unwrap_or(&replay.save_dir);
    let mut root_view: Option<Arc<dyn Target>> = None;
    for e in contents.entries.iter().rev().filter(|e| !e.undone) {
        let action = e.undo.describe();
        let is_command = matches!(e.undo, Undo::Command { .. });
        let result = if is_command && !e.done {
            report.incomplete.push(format!(
                "step {} ({}) did not finish (it failed or the run was killed); its undo ({action}) was not run: check by hand",
                e.step, e.op
            ));
            "skipped".to_string()
        } else {
            // A change made as root is checked and reverted through the host's sudo
            // view; an undo command asks sudo itself.
            let view: Result<&dyn Target> = if e.become_ && !is_command {
                if root_view.is_none() {
                    root_view = Some(target.elevated()?);
                }
                Ok(root_view.as_deref().expect("set above"))
            } else {
                Ok(target)
            };
            let view = view?;
            match preflight(view, e, scope.as_ref(), backups, replay) {
                Err(why) => {
                    report
                        .incomplete
                        .push(format!("step {} ({}): {why}", e.step, e.op));
                    format!("refused: {why}")
                }
                Ok(note) if dry_run => match &e.undo {
                    Undo::Barrier { what } => {
                        report
                            .incomplete
                            .push(format!("step {} ({}): cannot undo {what}", e.step, e.op));
                        "cannot undo".to_string()
                    }
                    _ => format!("would revert{note}"),
                },
                Ok(note) => match e.undo.revert(view, e.become_) {
                    Ok(r) => {
                        if let Some(j) = &journal {
                            j.mark_undone(e.seq)
                                .map_err(|err| Error::io("cannot update journal", err))?;
                        }
                        match r {
                            Reverted::Done => {
                                report.reverted += 1;
                                format!("reverted{note}")
                            }
                            Reverted::NotNeeded => "not needed".to_string(),
                            Reverted::Impossible(what) => {
                                report.incomplete.push(format!(
                                    "step {} ({}): cannot undo {what}",
                                    e.step, e.op
                                ));
                                "cannot undo".to_string()
                            }
                        }
                    }
                    Err(err) => {
                        report.incomplete.push(format!(
                            "step {} ({}): {action} failed: {err}",
                            e.step, e.op
                        ));
                        format!("failed: {err}")
                    }
                },
            }
        };
        sink(&Event::Undo {
            host: host.clone(),
            seq: e.seq,
            op: e.op.clone(),
            action,
            result,
        });
    }
    sink(&Event::Rollback {
        host,
        reverted: report.reverted,
        incomplete: report.incomplete.clone(),
    });
    Ok(report)
}

/// Whether record `e` may be reverted now; with `--force` the drifted content is saved
/// first, and the note says where. The refusal says why, for the report.
fn preflight(
    t: &dyn Target,
    e: &Entry,
    scope: Option<&crate::engine::Scope>,
    backups: &str,
    replay: &Replay,
) -> std::result::Result<String, String> {
    use crate::journal::undo::Fingerprint;
    let paths = e.undo.paths();
    if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
        return Err(format!(
            "{p} was recorded as a relative path (by an older tend); not reverted: it is unknown where it was"
        ));
    }
    if let Some(scope) = scope {
        for p in paths.iter().filter(|p| !inside(p, backups)) {
            scope
                .check(t, p, None, false)
                .map_err(|why| format!("{why}; not reverted"))?;
        }
    }
    for (p, then) in paths.iter().zip(&e.dirs) {
        let dir = crate::target::parent(p);
        let now = t.resolve_dir(dir).map_err(|err| err.to_string())?;
        if &now != then {
            return Err(format!(
                "{p}: its directory now leads to {now}, not to {then} as when the run wrote it \
                 (a symlink was put in its way since); not reverted"
            ));
        }
    }
    let (Some(path), Some(left)) = (e.undo.subject(), &e.left) else {
        return Ok(String::new());
    };
    let now = Fingerprint::of(t, path, None).map_err(|err| err.to_string())?;
    if now.is_none() || same_state(left.as_ref(), now.as_ref()) {
        // Gone since (nothing to lose), or as the run left it.
        return Ok(String::new());
    }
    let drift = format!(
        "{path}: changed since run {} wrote it (it left {}; now it is {})",
        replay.run_id,
        Fingerprint::describe(left.as_ref()),
        Fingerprint::describe(now.as_ref())
    );
    if !replay.force {
        return Err(format!(
            "{drift}; not rolled back (use --force to overwrite: the current content is saved first)"
        ));
    }
    if !matches!(now.as_ref().map(|f| f.kind), Some(Kind::File)) {
        return Ok(format!(" ({drift}; overwritten with --force)"));
    }
    let name = path.rsplit('/').next().unwrap_or("file");
    let saved = crate::target::join(backups, &format!("drift-{:06}-{name}", e.seq));
    if replay.dry_run {
        return Ok(format!(
            " ({drift}; --force would save it to {saved} first)"
        ));
    }
    crate::ops::mkdir_p(t, backups, 0o700)
        .map_err(|err| format!("{drift}; cannot save it first: {err}"))?;
    t.copy_file(path, &saved)
        .map_err(|err| format!("{drift}; cannot save it first: {err}"))?;
    Ok(format!(" ({drift}; its content was saved to {saved})"))
}

/// Whether `path` is `dir` or below it (tend's own backups are outside any scope).
fn inside(path: &str, dir: &str) -> bool {
    !dir.is_empty()
        && path
            .strip_prefix(dir.trim_end_matches('/'))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether a path still is what a step left: same kind, and the same bytes and mode
/// for a file, the same mode for a directory, the same target for a link.
fn same_state(
    left: Option<&crate::journal::undo::Fingerprint>,
    now: Option<&crate::journal::undo::Fingerprint>,
) -> bool {
    match (left, now) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.kind == b.kind
                && a.mode == b.mode
                && a.size == b.size
                && a.link == b.link
                && (a.sha256.is_none() || b.sha256.is_none() || a.sha256 == b.sha256)
        }
        _ => false,
    }
}

/// A host whose journal could not be replayed at all: said like any incomplete
/// rollback, so the terminal and the audit log both have the reason.
fn not_undone(sink: &Sink, host: &str, why: String, total: &mut RollbackReport) {
    sink(&Event::Rollback {
        host: host.to_string(),
        reverted: 0,
        incomplete: vec![why.clone()],
    });
    total.incomplete.push(why);
}

/// What `tend rollback` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RollbackRequest {
    pub run_id: String,
    /// Only this host of the run.
    pub only_host: Option<String>,
    pub dry_run: bool,
    /// Revert paths that changed since the run too, saving what they hold first.
    pub force: bool,
    /// Queue this long behind another run holding a host.
    pub wait: Option<Duration>,
}

/// `tend rollback RUN`: replay the journals of a finished, failed or killed run.
/// A run that died holding host locks hands them to its rollback, which releases
/// them at the end, even when something could not be undone (the report says what).
pub fn rollback(
    state: &StateDir,
    actor: &Actor,
    req: &RollbackRequest,
    sink: Sink,
) -> Result<RollbackReport> {
    let RollbackRequest {
        run_id,
        only_host,
        dry_run,
        force,
        wait,
    } = req;
    let (run_id, only_host, dry_run, force, wait) = (
        run_id.as_str(),
        only_host.as_deref(),
        *dry_run,
        *force,
        *wait,
    );
    let mut meta = state.recover_meta(run_id)?;
    if meta.effective_outcome() == "running" {
        return Err(Error::Other(format!(
            "run {run_id} is still running ({}); roll it back when it ends",
            meta.holder()
        )));
    }
    let audit = (!dry_run).then(|| Arc::new(AuditLog::new(state.root())));
    let sink = audited(
        sink,
        audit,
        run_id.to_string(),
        actor.clone(),
        dry_run,
        None,
        Arc::default(),
    );
    let mut total = RollbackReport::default();
    let hosts: Vec<String> = meta
        .hosts
        .iter()
        .filter(|h| only_host.is_none_or(|o| o == h.as_str()))
        .cloned()
        .collect();
    if hosts.is_empty() {
        return Err(Error::Usage(format!(
            "run {run_id} has no host {}; its hosts: {}",
            only_host.unwrap_or_default(),
            meta.hosts.join(", ")
        )));
    }
    for host in hosts {
        let jpath = state.journal_path(run_id, &host);
        // A host without a journal needs nothing undone, but the run may have died
        // there holding its locks: then they are released below.
        let died_here = || {
            crate::lock::holder_here(state.lock_dir(), &host, false)
                .ok()
                .flatten()
                .is_some_and(|(h, _)| h.run_id == run_id)
        };
        if !jpath.exists() && (dry_run || !died_here()) {
            continue;
        }
        let spec = match meta.targets.iter().find(|t| t.name == host) {
            Some(spec) => spec.clone(),
            // Lost with a damaged run.json: guessing "here" could replay another
            // host's journal on this machine.
            None if meta.is_damaged() => {
                let why = format!(
                    "{host}: run.json is damaged, so how to reach this host is not known; \
                     its journal is kept in {}",
                    jpath.display()
                );
                not_undone(&sink, &host, why, &mut total);
                continue;
            }
            None => HostSpec::local(),
        };
        let reached = match spec.connect() {
            Ok(r) => r,
            Err(e) => {
                let why = format!(
                    "{host}: not reached ({e}); its journal is kept: retry `tend rollback {run_id} --host {host}`"
                );
                not_undone(&sink, &host, why, &mut total);
                continue;
            }
        };
        let take = Take {
            wait,
            take_over: Some(run_id.to_string()),
            cancel: None,
        };
        let _locks = if dry_run {
            None
        } else {
            Some(lock_host(state, &reached, &host, run_id, &take)?)
        };
        if !jpath.exists() {
            continue;
        }
        let save_dir = match reached.remote_backup_dir(run_id, &host) {
            Ok(Some(remote)) => remote,
            _ => state
                .journal_path(run_id, &host)
                .with_file_name("backup")
                .display()
                .to_string(),
        };
        let replay = Replay {
            run_id: run_id.to_string(),
            dry_run,
            force,
            save_dir,
        };
        let r = rollback_host(reached.target.as_ref(), &jpath, &replay, &sink)?;
        total.reverted += r.reverted;
        total.incomplete.extend(r.incomplete);
    }
    if !dry_run {
        meta.outcome = if total.incomplete.is_empty() {
            "rolled_back".into()
        } else {
            "rollback_incomplete".into()
        };
        state.write_meta(&meta)?;
    }
    Ok(total)
}

/// A lock `tend unlock` found: where, who held it, and whether it was released.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unlocked {
    pub host: String,
    /// `this machine` or the lock's path on the host.
    pub lock: String,
    pub holder: crate::lock::Holder,
    pub released: bool,
}

/// `tend unlock HOST`: release the locks of `spec` (on this machine and on the host)
/// held by a run that is gone; `force` also those of a run on another controller,
/// whose life cannot be checked from here. A live run's lock is never released.
/// Every release is audited: the dead run's changes stay as they were.
pub fn unlock(
    state: &StateDir,
    actor: &Actor,
    spec: &HostSpec,
    force: bool,
) -> Result<Vec<Unlocked>> {
    let name = spec.name.as_str();
    let mut found = Vec::new();
    if let Some((holder, alive)) = crate::lock::holder_here(state.lock_dir(), name, true)? {
        found.push(Unlocked {
            host: name.to_string(),
            lock: "this machine".into(),
            holder,
            released: !alive,
        });
    }
    if !spec.local {
        let reached = spec.connect()?;
        if let Some(dir) = reached.lock_dir() {
            if let Some((holder, alive)) =
                crate::lock::unlock_remote(reached.target.as_ref(), dir, force)?
            {
                found.push(Unlocked {
                    host: name.to_string(),
                    lock: crate::target::join(dir, "lock"),
                    holder,
                    released: !alive,
                });
            }
        }
    }
    let user = actor.user.clone();
    let audit = AuditLog::new(state.root());
    for u in found.iter().filter(|u| u.released) {
        audit.append(serde_json::json!({
            "event": "unlock",
            "host": u.host,
            "lock": u.lock,
            "run_id": u.holder.run_id,
            "holder": u.holder.describe(),
            "forced": force,
            "user": user,
        }))?;
    }
    Ok(found)
}
