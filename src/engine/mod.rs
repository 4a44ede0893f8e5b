//! The Rhai engine: sandbox limits, and the registration of operations per area
//! (`fs`, `sh`/`archive`, and the core functions `params`, `host`, `log`, `time`).
//!
//! One engine is built per host and run; its functions close over that host's
//! [`HostContext`] (the "control layer" pattern), so the compiled AST is shared while
//! each host has its own target, journal and counters. The engine never sees a
//! concrete target: only [`crate::ops::Ctx`].

mod catalog_check;
mod check;
mod core;
mod edit;
mod facts;
mod fs;
pub mod handlers;
mod logrotate_conf;
mod names;
mod pkg;
mod service;
mod sh;
mod structured;
mod transfer;
mod user;
mod vars;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rhai::{Dynamic, Engine, EvalAltResult, Map, NativeCallContext, Position};

use crate::event::{Event, Sink};
use crate::ops::{Ctx, OpResult, StepReport};
use crate::recipe::params::ParamDecl;
use crate::recipe::resolver_fmt_pos;
pub use crate::recipe::scope::Scope;

use crate::recipe::dialect::{base, sandbox};
pub use crate::recipe::dialect::{err, Limits, RResult};

/// The longest timeout tend accepts (`--timeout`, `sh(…, #{timeout})`): a year is
/// "never" for a maintenance step, and deadlines beyond what `Instant` can hold
/// would panic. A year as humantime counts one (365.25 days), so it prints `1year`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(31_557_600);

/// A timeout must be more than zero (zero would stop everything at once) and at most
/// [`MAX_TIMEOUT`].
pub fn check_timeout(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("a timeout must be more than 0".into())
    } else if d > MAX_TIMEOUT {
        Err(format!(
            "a timeout may be at most {}",
            humantime::format_duration(MAX_TIMEOUT)
        ))
    } else {
        Ok(d)
    }
}

/// Why the declaration pass ([`Mode::Declare`]) stopped the script: carried as the
/// error's typed value, so no text a recipe throws can pass for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclarePass {
    /// `params()` was reached: its declarations are recorded.
    Declared,
    /// An operation was reached first: the recipe declares no parameters.
    NoParams,
}

/// A problem with the parameters given (or their declared defaults): the caller's
/// to fix (exit 64), not the recipe's. Carried as the error's typed value.
#[derive(Debug, Clone)]
pub struct ParamProblem(pub String);

pub(crate) fn stop_with<T: Clone + Send + Sync + 'static>(
    call: &NativeCallContext,
    v: T,
) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(v), call.call_position()).into()
}

/// The error a script's call chain ends in.
fn innermost(mut e: &EvalAltResult) -> &EvalAltResult {
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = e
    {
        e = inner;
    }
    e
}

/// The declaration pass's stop, if that is what ended the script.
pub fn declare_pass(e: &EvalAltResult) -> Option<DeclarePass> {
    match innermost(e) {
        EvalAltResult::ErrorRuntime(v, _) => v.clone().try_cast::<DeclarePass>(),
        _ => None,
    }
}

/// Whether the script ended on a parameter problem (see [`ParamProblem`]).
pub fn is_param_problem(e: &EvalAltResult) -> bool {
    matches!(innermost(e), EvalAltResult::ErrorRuntime(v, _) if v.is::<ParamProblem>())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Evaluate only up to `params()`, to learn the declarations; touch nothing.
    Declare,
    Run,
}

/// Everything the functions of one host's engine share.
pub struct HostContext {
    pub ctx: Ctx,
    pub recipe_dir: PathBuf,
    pub mode: Mode,
    pub given: Vec<(String, String)>,
    /// Secret parameters the caller read itself (at a prompt), by name.
    pub supplied: BTreeMap<String, crate::secret::Secret>,
    pub param_docs: BTreeMap<String, String>,
    pub sink: Sink,
    pub changed: AtomicU64,
    pub unknown: AtomicU64,
    declared: Mutex<Option<Vec<ParamDecl>>>,
    params_done: AtomicBool,
    /// Secret values of this run, scrubbed from every error message.
    secrets: Mutex<Vec<String>>,
    /// The recipe's declared write scope; `None` when it declares none.
    scope: Option<Scope>,
    /// The recipe said `//! become: false`: no step may run as root either.
    no_become: bool,
    /// Inside `become(|| …)` (nested blocks count): every step runs as root.
    root_blocks: AtomicUsize,
    /// Set (with why) when the run must make no further change, e.g. because the
    /// audit log can no longer record it: the next step fails instead of running.
    halt: Option<Halt>,
    /// `handler(…)` declarations and which of them were notified.
    handlers: handlers::Handlers,
    /// `host()`'s facts, gathered when first read (also by templates).
    facts: std::sync::Arc<facts::Facts>,
}

/// See [`HostContext::with_halt`].
pub type Halt = std::sync::Arc<std::sync::OnceLock<String>>;

impl HostContext {
    pub fn new(
        ctx: Ctx,
        recipe_dir: PathBuf,
        mode: Mode,
        given: Vec<(String, String)>,
        param_docs: BTreeMap<String, String>,
        sink: Sink,
    ) -> Self {
        HostContext {
            facts: std::sync::Arc::new(facts::Facts::new(ctx.target.clone())),
            ctx,
            recipe_dir,
            mode,
            given,
            supplied: BTreeMap::new(),
            param_docs,
            sink,
            changed: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            declared: Mutex::new(None),
            params_done: AtomicBool::new(false),
            secrets: Mutex::new(Vec::new()),
            scope: None,
            no_become: false,
            root_blocks: AtomicUsize::new(0),
            halt: None,
            handlers: Default::default(),
        }
    }

    /// Fail every step once `halt` is set, and the step during which it was set.
    pub fn with_halt(mut self, halt: Halt) -> Self {
        self.halt = Some(halt);
        self
    }

    /// Whether a further step may start: not after a halt, a cancel or the deadline.
    fn halted(&self, pos: Position) -> RResult<()> {
        let at = |m: String| EvalAltResult::ErrorRuntime(m.into(), pos).into();
        match self.halt.as_ref().and_then(|h| h.get()) {
            Some(why) => Err(at(why.clone())),
            None => self
                .ctx
                .cancel()
                .check()
                .map_err(|stop| at(stop.to_string())),
        }
    }

    /// Refuse `sh(…, #{become: true})` (the recipe declared `//! become: false`).
    pub fn without_become(mut self, forbidden: bool) -> Self {
        self.no_become = forbidden;
        self
    }

    pub fn become_forbidden(&self) -> bool {
        self.no_become
    }

    /// Secret parameters the caller read itself, for `params()` to take.
    pub fn with_secrets(mut self, supplied: BTreeMap<String, crate::secret::Secret>) -> Self {
        self.supplied = supplied;
        self
    }

    /// Enforce a declared write scope (see [`scope`]).
    pub fn with_scope(mut self, scope: Option<Scope>) -> Self {
        self.scope = scope;
        self
    }

    pub fn scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// Refuse, at the calling line and before anything is planned or changed, an
    /// operation that would mutate a path outside the declared scope. `contents_of`:
    /// the directory whose contents the operation acts on too, as if below `path`
    /// (see [`Scope::check`]).
    fn check_scope(
        &self,
        call: &NativeCallContext,
        op: &str,
        path: &str,
        contents_of: Option<&str>,
        follow_last: bool,
    ) -> RResult<()> {
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        if self.mode == Mode::Declare {
            return Ok(()); // guard() refuses the operation itself
        }
        scope
            .check(self.ctx.target.as_ref(), path, contents_of, follow_last)
            .map_err(|why| err(call, self.redact(&format!("{op} {why}"))))
    }

    pub fn host(&self) -> String {
        self.ctx.host().to_string()
    }

    pub fn declared(&self) -> Option<Vec<ParamDecl>> {
        self.declared.lock().expect("lock").clone()
    }

    fn add_secret(&self, value: &str) {
        if !value.is_empty() {
            self.secrets.lock().expect("lock").push(value.to_string());
        }
    }

    /// Whether this run has secret parameters.
    pub fn has_secrets(&self) -> bool {
        !self.secrets.lock().expect("lock").is_empty()
    }

    /// A secret put into a string (`"a" + p.token`, `${p.token}`) becomes `***` there,
    /// never its value. Text that will be written somewhere and contains `***` in a run
    /// with secrets is probably such a mistake: say so (a warning; the text may mean it).
    fn warn_stringified(&self, what: &str, text: &[u8]) {
        let marker = crate::secret::REDACTED.as_bytes();
        if self.has_secrets() && text.windows(marker.len()).any(|w| w == marker) {
            self.emit(Event::Log {
                host: self.host(),
                level: "warn".into(),
                message: self.redact(&format!(
                    "{what} contains `***`, which is what a secret becomes when it is put into a string; \
                     to write a secret, pass it whole (fs::file(path, p.token)) or in a template's variables"
                )),
            });
        }
    }

    pub fn redact(&self, text: &str) -> String {
        crate::secret::scrub(text, &self.secrets.lock().expect("lock"))
    }

    fn emit(&self, event: Event) {
        (self.sink)(&event);
    }

    fn guard(&self, call: &NativeCallContext) -> RResult<()> {
        if self.mode == Mode::Declare {
            return Err(stop_with(call, DeclarePass::NoParams));
        }
        Ok(())
    }

    /// Run `f` with every step and fact as root (`become(|| …)`).
    fn as_root<T>(
        &self,
        call: &NativeCallContext,
        what: &str,
        f: impl FnOnce() -> T,
    ) -> RResult<T> {
        if self.no_become {
            return Err(err(
                call,
                format!("{what}, but the recipe declares `//! become: false`"),
            ));
        }
        self.root_blocks.fetch_add(1, Ordering::SeqCst);
        let out = f();
        self.root_blocks.fetch_sub(1, Ordering::SeqCst);
        Ok(out)
    }

    /// The context a step or fact runs with: the sudo view inside `become(|| …)` or
    /// when the call says `become: true`.
    fn ctx_for(&self, call: &NativeCallContext, become_: bool) -> RResult<Option<Ctx>> {
        if become_ && self.no_become {
            return Err(err(
                call,
                "`become: true`, but the recipe declares `//! become: false`",
            ));
        }
        if !become_ && !self.in_root_block() {
            return Ok(None);
        }
        self.ctx
            .as_root()
            .map(Some)
            .map_err(|e| err(call, self.redact(&e.to_string())))
    }

    /// Run one operation as a numbered step: report it, count it, and turn its error
    /// into a script error at the calling line.
    fn step(
        &self,
        call: &NativeCallContext,
        f: impl FnOnce(&Ctx) -> OpResult<StepReport>,
    ) -> RResult<Map> {
        self.step_as(call, false, f)
    }

    /// [`HostContext::step`], as root when `become_` (`#{become: true}`).
    fn step_as(
        &self,
        call: &NativeCallContext,
        become_: bool,
        f: impl FnOnce(&Ctx) -> OpResult<StepReport>,
    ) -> RResult<Map> {
        self.guard(call)?;
        let root = self.ctx_for(call, become_)?;
        self.run_step(call, root.as_ref().unwrap_or(&self.ctx), f)
    }

    /// Whether the caller is inside `become(|| …)`.
    fn in_root_block(&self) -> bool {
        self.root_blocks.load(Ordering::SeqCst) > 0
    }

    /// A step as the login user whatever the block: a command asks sudo itself
    /// (`ExecRequest::become_`), which works on every target.
    fn step_login(
        &self,
        call: &NativeCallContext,
        f: impl FnOnce(&Ctx) -> OpResult<StepReport>,
    ) -> RResult<Map> {
        self.guard(call)?;
        self.run_step(call, &self.ctx, f)
    }

    fn run_step(
        &self,
        call: &NativeCallContext,
        ctx: &Ctx,
        f: impl FnOnce(&Ctx) -> OpResult<StepReport>,
    ) -> RResult<Map> {
        self.run_step_at(call.fn_name(), call.call_position(), ctx, f)
    }

    /// [`HostContext::run_step`] for a step no script call makes (a handler tend
    /// declares itself): `function` and `pos` stand for the call.
    fn run_step_at(
        &self,
        function: &str,
        pos: Position,
        ctx: &Ctx,
        f: impl FnOnce(&Ctx) -> OpResult<StepReport>,
    ) -> RResult<Map> {
        self.halted(pos)?;
        let step = ctx.begin_step();
        self.emit(Event::StepStart {
            host: self.host(),
            step,
            function: function.to_string(),
            line: pos.line(),
        });
        match f(ctx) {
            Ok(mut report) => {
                ctx.finish_step();
                if report.changed {
                    self.changed.fetch_add(1, Ordering::SeqCst);
                }
                if report.unknown {
                    self.unknown.fetch_add(1, Ordering::SeqCst);
                }
                // A diff that shows a secret is hidden whole, not just scrubbed: its other
                // side may hold a value this run does not know (the previous secret of a
                // rotated file copied or edited over).
                report.diff = report.diff.map(|d| {
                    if self.redact(&d) != d {
                        crate::ops::SECRET_DIFF.to_string()
                    } else {
                        d
                    }
                });
                report.stdout = report.stdout.map(|d| self.redact(&d));
                report.stderr = report.stderr.map(|d| self.redact(&d));
                report.subject = self.redact(&report.subject);
                // As the file system names them (`a//b/./c/` is `a/b/c`), so that the
                // reported paths compare equal to the ones that changed.
                report.paths = report
                    .paths
                    .iter()
                    .map(|p| crate::transport::overlay::norm(p))
                    .collect();
                let map = report_map(&report);
                self.emit(Event::Step {
                    host: self.host(),
                    step,
                    report,
                });
                // A change that could not be recorded fails, and so is rolled back.
                self.halted(pos)?;
                Ok(map)
            }
            Err(e) => {
                let message = self.redact(&e.to_string());
                Err(EvalAltResult::ErrorRuntime(message.into(), pos).into())
            }
        }
    }

    /// A read-only fact: no step number, no event.
    fn fact<T>(&self, call: &NativeCallContext, f: impl FnOnce(&Ctx) -> OpResult<T>) -> RResult<T> {
        self.guard(call)?;
        let root = self.ctx_for(call, false)?;
        f(root.as_ref().unwrap_or(&self.ctx)).map_err(|e| err(call, self.redact(&e.to_string())))
    }
}

fn report_map(r: &StepReport) -> Map {
    let mut m = Map::new();
    m.insert("op".into(), r.op.into());
    m.insert("changed".into(), r.changed.into());
    m.insert("unknown".into(), r.unknown.into());
    m.insert(
        "paths".into(),
        Dynamic::from_array(r.paths.iter().map(|p| p.clone().into()).collect()),
    );
    m.insert("diff".into(), r.diff.clone().unwrap_or_default().into());
    if let Some(s) = &r.stdout {
        m.insert("stdout".into(), s.clone().into());
    }
    if let Some(s) = &r.stderr {
        m.insert("stderr".into(), s.clone().into());
    }
    if let Some(c) = r.code {
        m.insert("code".into(), (c as i64).into());
    }
    m
}

/// The engine one host runs its recipe with.
pub fn for_host(host: std::sync::Arc<HostContext>, limits: &Limits) -> Engine {
    let mut engine = base();
    sandbox(&mut engine, limits, Some(host.ctx.cancel().clone()));
    // `print` and `debug` are messages of the run like `log::info`: they go through
    // the sink (so `--json` stays JSON and the audit sees them) and are scrubbed.
    let h = host.clone();
    engine.on_print(move |text| {
        (h.sink)(&Event::Log {
            host: h.host(),
            level: "info".into(),
            message: h.redact(text),
        })
    });
    let h = host.clone();
    engine.on_debug(move |text, _source, pos| {
        (h.sink)(&Event::Log {
            host: h.host(),
            level: "info".into(),
            message: h.redact(&format!("debug {}: {text}", resolver_fmt_pos(pos))),
        })
    });
    crate::recipe::dialect::register_types(&mut engine);
    core::register(&mut engine, host.clone());
    check::register(&mut engine, host.clone());
    vars::register(&mut engine);
    fs::register(&mut engine, host.clone());
    service::register(&mut engine, host.clone());
    handlers::register(&mut engine, host.clone());
    pkg::register(&mut engine, host.clone());
    user::register(&mut engine, host.clone());
    logrotate_conf::register(&mut engine, host.clone());
    sh::register(&mut engine, host);
    names::remember(&engine);
    engine
}

/// A sink that scrubs `secrets` from every string of every event before passing it
/// on: the last line of defence for what reaches the terminal, `--json` and the
/// audit log (errors from the engine and step output are scrubbed already).
pub fn redacting(sink: Sink, secrets: Vec<String>) -> Sink {
    if secrets.iter().all(|s| s.is_empty()) {
        return sink;
    }
    std::sync::Arc::new(move |e: &Event| {
        let f = |t: &str| crate::secret::scrub(t, &secrets);
        sink(&redact_event(e, &f))
    })
}

/// `e` with `f` applied to each of its strings (new fields that carry text must be
/// added here; numbers, flags, ids and hashes cannot hold a secret).
pub fn redact_event(e: &Event, f: &dyn Fn(&str) -> String) -> Event {
    let mut e = e.clone();
    let s = |x: &mut String| *x = f(x);
    let v = |x: &mut Vec<String>| x.iter_mut().for_each(|y| *y = f(y));
    let o = |x: &mut Option<String>| {
        if let Some(y) = x {
            *y = f(y)
        }
    };
    match &mut e {
        Event::StepStart { host, function, .. } => {
            s(host);
            s(function);
        }
        Event::RunStart {
            recipe,
            hosts,
            params,
            ..
        } => {
            s(recipe);
            v(hosts);
            params.values_mut().for_each(s);
        }
        Event::HostStart { host } => s(host),
        Event::Step { host, report, .. } => {
            s(host);
            s(&mut report.subject);
            v(&mut report.paths);
            o(&mut report.diff);
            o(&mut report.stdout);
            o(&mut report.stderr);
        }
        Event::StepFailed { host, error, .. } => {
            s(host);
            s(error);
        }
        Event::Log { host, message, .. } => {
            s(host);
            s(message);
        }
        Event::Undo {
            host,
            op,
            action,
            result,
            ..
        } => {
            s(host);
            s(op);
            s(action);
            s(result);
        }
        Event::Rollback {
            host,
            incomplete,
            warnings,
            ..
        } => {
            s(host);
            v(incomplete);
            v(warnings);
        }
        Event::HostEnd { host, error, .. } => {
            s(host);
            o(error);
        }
        Event::RunEnd { .. } => {}
    }
    e
}

/// How a script run ended, for people: `file:line:col: message`, with the call chain
/// when the error happened inside a stdlib or recipe function.
pub fn describe(error: &EvalAltResult, recipe: &str, limits: &Limits) -> String {
    let mut source = recipe.to_string();
    let mut chain = Vec::new();
    let mut e = error;
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                chain.push(format!(
                    "{name}() called at {source}:{}",
                    resolver_fmt_pos(*pos)
                ));
                if !src.is_empty() {
                    source = src.clone();
                }
                e = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, pos) => {
                chain.push(format!(
                    "module {name} imported at {source}:{}",
                    resolver_fmt_pos(*pos)
                ));
                e = inner;
            }
            _ => break,
        }
    }
    let message = match e {
        EvalAltResult::ErrorRuntime(v, _) if v.is::<crate::secret::Secret>() => {
            crate::secret::REDACTED.to_string() // `throw p.token`
        }
        EvalAltResult::ErrorRuntime(v, _) if v.is::<ParamProblem>() => v.clone().cast::<ParamProblem>().0,
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        EvalAltResult::ErrorFunctionNotFound(sig, _) => names::unknown_function(sig),
        // Imports written as string literals were all resolved when the recipe was
        // compiled: one looked up now has a computed path.
        EvalAltResult::ErrorModuleNotFound(name, _) => format!(
            "import of {name:?}, a computed path: imports must be string literals \
             (import \"name\" as m), resolved when the recipe is loaded"
        ),
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "the recipe ran more than {} operations and was stopped (a runaway loop?); raise --max-operations if it really needs more",
            limits.max_operations
        ),
        EvalAltResult::ErrorTerminated(v, _) if v.is::<crate::cancel::Stop>() => {
            v.clone().cast::<crate::cancel::Stop>().to_string()
        }
        EvalAltResult::ErrorTerminated(_, _) => format!(
            "the run exceeded its time limit of {} and was stopped",
            humantime::format_duration(limits.timeout.unwrap_or_default())
        ),
        other => {
            // Rhai appends "(line L, position P)"; the location is printed up front.
            let text = other.to_string();
            match text.rfind(" (line ") {
                Some(i) if text.ends_with(')') => text[..i].to_string(),
                _ => text,
            }
        }
    };
    let mut out = format!("{source}:{}: {message}", resolver_fmt_pos(e.position()));
    for c in chain.iter().rev() {
        out.push_str(&format!("\n    in {c}"));
    }
    out
}

pub fn position_of(e: &EvalAltResult) -> Position {
    e.position()
}
