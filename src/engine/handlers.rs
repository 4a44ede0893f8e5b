//! Handlers, as Ansible's: `handler("reload nginx", || service::reloaded("nginx"))`
//! declares one, `notify("reload nginx")` asks for it (after a step that changed:
//! `if fs::file(…).changed { notify("reload nginx") }`, or a step's `notify:`
//! option), and each notified handler runs once, in declaration order, at the end
//! of the host's run or at `flush_handlers()`. A run that fails before then runs
//! none: it rolls back. A dry-run runs them too, so their steps show in the plan.

use std::sync::Mutex;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, NativeCallContext, Position, AST};

use super::{err, HostContext, Mode, RResult};
use crate::event::Event;

/// The handler tend declares itself, notified when a unit file changes.
pub const DAEMON_RELOAD: &str = "systemd daemon-reload";

#[derive(Clone)]
enum Action {
    Script(FnPtr),
    DaemonReload,
}

#[derive(Clone)]
struct Handler {
    name: String,
    action: Action,
    /// Where it was first notified since it last ran.
    notified: Option<Position>,
}

/// One host's handlers, in declaration order.
#[derive(Default)]
pub struct Handlers(Mutex<Vec<Handler>>);

impl Handlers {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Handler>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn declare(&self, name: &str, action: Action) -> Result<(), String> {
        let mut list = self.list();
        if list.iter().any(|h| h.name == name) {
            return Err(format!("handler {name:?} is declared twice"));
        }
        list.push(Handler {
            name: name.to_string(),
            action,
            notified: None,
        });
        Ok(())
    }

    /// Refuse a name no handler has, naming the ones there are.
    pub(super) fn check(&self, name: &str) -> Result<(), String> {
        let list = self.list();
        if list.iter().any(|h| h.name == name) {
            return Ok(());
        }
        let names: Vec<&str> = list.iter().map(|h| h.name.as_str()).collect();
        let hint = crate::error::did_you_mean(name, &names)
            .map(|m| format!("did you mean {m:?}? "))
            .unwrap_or_default();
        Err(format!(
            "notify({name:?}): no handler of that name is declared; {hint}declare it before \
             notifying it: handler({name:?}, || …){}",
            if names.is_empty() {
                String::new()
            } else {
                format!(" (declared: {})", names.join(", "))
            }
        ))
    }

    pub(super) fn notify(&self, name: &str, at: Position) -> Result<(), String> {
        self.check(name)?;
        for h in self.list().iter_mut().filter(|h| h.name == name) {
            h.notified.get_or_insert(at);
        }
        Ok(())
    }

    /// Notify tend's own `systemctl daemon-reload` handler, declared at first use.
    pub(super) fn notify_daemon_reload(&self, at: Position) {
        let _ = self.declare(DAEMON_RELOAD, Action::DaemonReload);
        let _ = self.notify(DAEMON_RELOAD, at);
    }

    /// The first notified handler from index `from` on, taken off the notified list.
    fn next(&self, from: usize) -> Option<(usize, Handler, Position)> {
        let mut list = self.list();
        let i = (from..list.len()).find(|&i| list[i].notified.is_some())?;
        let at = list[i].notified.take()?;
        Some((i, list[i].clone(), at))
    }

    fn any_notified(&self) -> bool {
        self.list().iter().any(|h| h.notified.is_some())
    }

    fn len(&self) -> usize {
        self.list().len()
    }
}

/// How a handler's closure is called: from a script call (`flush_handlers()`) or,
/// at the end of the run, with the engine and the recipe's AST.
enum Caller<'a> {
    Call(&'a NativeCallContext<'a>),
    End(&'a Engine, &'a AST),
}

/// One pass over the handlers in declaration order, running each notified one. A
/// handler may notify a later one, which then runs in the same pass.
fn flush(h: &HostContext, caller: &Caller) -> RResult<()> {
    let mut from = 0;
    while let Some((i, handler, at)) = h.handlers.next(from) {
        from = i + 1;
        h.emit(Event::Log {
            host: h.host(),
            level: "info".into(),
            message: format!("running handler {:?} (notified)", handler.name),
        });
        let named = |e: Box<EvalAltResult>| in_handler(&handler.name, *e);
        match (&handler.action, caller) {
            (Action::Script(f), Caller::Call(call)) => {
                let _: Dynamic = f.call_within_context(call, ()).map_err(named)?;
            }
            (Action::Script(f), Caller::End(engine, ast)) => {
                let _: Dynamic = f.call(engine, ast, ()).map_err(named)?;
            }
            (Action::DaemonReload, _) => {
                h.run_step_at("systemd::daemon_reload", at, &h.ctx, |c| {
                    crate::ops::unit::daemon_reload(c)
                })?;
            }
        }
    }
    Ok(())
}

/// An error inside a handler's closure, said as the handler's: `handler "x": …` at
/// the failing line, rather than a call of an anonymous function.
fn in_handler(name: &str, e: EvalAltResult) -> Box<EvalAltResult> {
    match e {
        EvalAltResult::ErrorInFunctionCall(f, _, inner, _) if f.starts_with("anon$") => {
            in_handler(name, *inner)
        }
        EvalAltResult::ErrorRuntime(v, pos) if v.is_string() => {
            EvalAltResult::ErrorRuntime(format!("handler {name:?}: {v}").into(), pos).into()
        }
        other => other.into(),
    }
}

/// Run the notified handlers at the end of the host's run (after the recipe
/// succeeded). Handlers that notify earlier ones (or themselves) get further passes,
/// within reason.
pub fn run_at_end(h: &HostContext, engine: &Engine, ast: &AST) -> RResult<()> {
    if h.mode != Mode::Run {
        return Ok(());
    }
    let rounds = h.handlers.len() + 1;
    for _ in 0..rounds {
        if !h.handlers.any_notified() {
            return Ok(());
        }
        flush(h, &Caller::End(engine, ast))?;
    }
    Err(EvalAltResult::ErrorRuntime(
        "handlers keep notifying each other (a loop); stopped".into(),
        Position::NONE,
    )
    .into())
}

/// Handler names from a `notify` value: a name or a list of names.
pub(super) fn names(call: &NativeCallContext, v: &Dynamic) -> RResult<Vec<String>> {
    let bad = || err(call, "notify: give a handler's name, or a list of names");
    if let Some(s) = v.clone().try_cast::<String>() {
        return Ok(vec![s]);
    }
    let list = v.clone().try_cast::<Array>().ok_or_else(bad)?;
    list.into_iter()
        .map(|x| x.try_cast::<String>().ok_or_else(bad))
        .collect()
}

pub fn register(engine: &mut Engine, host: std::sync::Arc<HostContext>) {
    let h = host.clone();
    engine.register_fn(
        "handler",
        move |call: NativeCallContext, name: &str, f: FnPtr| -> RResult<()> {
            if name.trim().is_empty() {
                return Err(err(&call, "handler: the name must not be empty"));
            }
            if name == DAEMON_RELOAD {
                return Err(err(
                    &call,
                    format!("handler: {name:?} is tend's own (systemd::unit notifies it)"),
                ));
            }
            h.handlers
                .declare(name, Action::Script(f))
                .map_err(|m| err(&call, m))
        },
    );
    let h = host.clone();
    let notify = move |call: NativeCallContext, v: Dynamic| -> RResult<()> {
        h.guard(&call)?;
        for name in names(&call, &v)? {
            h.handlers
                .notify(&name, call.call_position())
                .map_err(|m| err(&call, m))?;
        }
        Ok(())
    };
    engine.register_fn("notify", notify);
    let h = host;
    engine.register_fn(
        "flush_handlers",
        move |call: NativeCallContext| -> RResult<()> {
            h.guard(&call)?;
            flush(&h, &Caller::Call(&call))
        },
    );
}
