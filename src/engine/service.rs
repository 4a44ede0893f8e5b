//! The `service`, `cron` and `systemd` modules of recipes: argument checking, then
//! the operations of [`crate::ops::service`], [`crate::ops::cron`] and
//! [`crate::ops::unit`]. Each step takes `become: true` and `notify: "handler"`
//! (notified when the step changed something).

use std::sync::Arc;

use rhai::{Engine, Map, Module, NativeCallContext};

use super::fs::{check_keys, opt_bool, opt_str};
use super::{err, handlers, HostContext, RResult};
use crate::ops::cron::{self, CronSpec};
use crate::ops::service::{self as op, Want};
use crate::ops::unit::{self, TimerSpec};
use crate::ops::{Ctx, OpResult, StepReport};

/// A step with the options every step here has: `become` and `notify`.
fn step(
    h: &HostContext,
    call: &NativeCallContext,
    opts: &Map,
    f: impl FnOnce(&Ctx) -> OpResult<StepReport>,
) -> RResult<Map> {
    h.guard(call)?;
    let become_ = opt_bool(call, opts, "become", false)?;
    let notify = match opts.get("notify").filter(|v| !v.is_unit()) {
        Some(v) => handlers::names(call, v)?,
        None => Vec::new(),
    };
    // An unknown handler is refused before the step changes anything.
    for name in &notify {
        h.handlers.check(name).map_err(|m| err(call, m))?;
    }
    let m = h.step_as(call, become_, f)?;
    if m.get("changed").and_then(|c| c.as_bool().ok()) == Some(true) {
        for name in &notify {
            h.handlers
                .notify(name, call.call_position())
                .map_err(|m| err(call, m))?;
        }
    }
    Ok(m)
}

/// Register `f(name)` and `f(name, opts)` in module `m`.
fn with_opts<F>(m: &mut Module, name: &str, f: F)
where
    F: Fn(NativeCallContext, &str, Map) -> RResult<Map> + Clone + Send + Sync + 'static,
{
    let g = f.clone();
    m.set_native_fn(name, move |call: NativeCallContext, a: &str| {
        g(call, a, Map::new())
    });
    m.set_native_fn(name, move |call: NativeCallContext, a: &str, o: Map| {
        f(call, a, o)
    });
}

fn register_service(engine: &mut Engine, host: &Arc<HostContext>) {
    let mut m = Module::new();
    for (name, want) in [
        ("running", Want::Running),
        ("stopped", Want::Stopped),
        ("restarted", Want::Restarted),
        ("reloaded", Want::Reloaded),
    ] {
        let h = host.clone();
        with_opts(&mut m, name, move |call, svc, opts| {
            check_keys(&call, want.op(), &opts, &["become", "notify"])?;
            step(&h, &call, &opts, |c| op::active(c, svc, want))
        });
    }
    for (name, enable) in [("enabled", true), ("disabled", false)] {
        let h = host.clone();
        with_opts(&mut m, name, move |call, svc, opts| {
            check_keys(
                &call,
                &format!("service::{name}"),
                &opts,
                &["become", "notify", "root"],
            )?;
            let root = opt_str(&call, &opts, "root")?;
            step(&h, &call, &opts, |c| {
                op::enabled(c, svc, enable, root.as_deref())
            })
        });
    }
    let h = host.clone();
    with_opts(&mut m, "status", move |call, svc, opts| {
        check_keys(&call, "service::status", &opts, &["become", "root"])?;
        let root = opt_str(&call, &opts, "root")?;
        let become_ = opt_bool(&call, &opts, "become", false)?;
        h.guard(&call)?;
        let view = h.ctx_for(&call, become_)?;
        let s = op::status(view.as_ref().unwrap_or(&h.ctx), svc, root.as_deref())
            .map_err(|e| err(&call, h.redact(&e.to_string())))?;
        let mut out = Map::new();
        out.insert("name".into(), s.name.into());
        out.insert("manager".into(), s.manager.into());
        out.insert("exists".into(), s.exists.into());
        out.insert("active".into(), s.active.into());
        out.insert("enabled".into(), s.enabled.into());
        out.insert("state".into(), s.state.into());
        out.insert("pid".into(), s.pid.into());
        Ok(out)
    });
    engine.register_static_module("service", m.into());
}

fn register_cron(engine: &mut Engine, host: &Arc<HostContext>) {
    let mut m = Module::new();
    let h = host.clone();
    let entry = move |call: NativeCallContext,
                      name: &str,
                      schedule: &str,
                      command: &str,
                      opts: Map|
          -> RResult<Map> {
        const F: &str = "cron::entry";
        check_keys(&call, F, &opts, &["user", "state", "become", "notify"])?;
        let present = match opt_str(&call, &opts, "state")?.as_deref() {
            None | Some("present") => true,
            Some("absent") => false,
            Some(s) => {
                return Err(err(
                    &call,
                    format!("{F}: `state` must be \"present\" or \"absent\", not {s:?}"),
                ))
            }
        };
        let spec = CronSpec {
            name: name.to_string(),
            schedule: schedule.to_string(),
            command: command.to_string(),
            user: opt_str(&call, &opts, "user")?,
            present,
        };
        // A bad schedule is the recipe's mistake: said at its line, before anything.
        cron::check(&spec).map_err(|why| err(&call, format!("{F} {name:?}: {why}")))?;
        step(&h, &call, &opts, |c| cron::entry(c, &spec))
    };
    let e2 = entry.clone();
    m.set_native_fn(
        "entry",
        move |call: NativeCallContext, name: &str, schedule: &str, command: &str| {
            e2(call, name, schedule, command, Map::new())
        },
    );
    m.set_native_fn("entry", entry);
    engine.register_static_module("cron", m.into());
}

fn timer_spec(call: &NativeCallContext, opts: &Map) -> RResult<TimerSpec> {
    Ok(TimerSpec {
        description: opt_str(call, opts, "description")?,
        on_calendar: opt_str(call, opts, "on_calendar")?,
        on_boot_sec: opt_str(call, opts, "on_boot_sec")?,
        unit: opt_str(call, opts, "unit")?,
        persistent: opt_bool(call, opts, "persistent", false)?,
        randomized_delay_sec: opt_str(call, opts, "randomized_delay_sec")?,
    })
}

/// Write a unit file as a step; on a change, systemd is told to read it again (the
/// `systemd daemon-reload` handler) unless the file went under a `root`.
fn unit_step(
    h: &HostContext,
    call: &NativeCallContext,
    op: &'static str,
    name: &str,
    content: &str,
    opts: &Map,
) -> RResult<Map> {
    let root = opt_str(call, opts, "root")?;
    unit::check_unit_name(name).map_err(|why| err(call, format!("{op}: {why}")))?;
    let path = unit::unit_path(name, root.as_deref());
    h.check_scope(call, op, &path, None, false)?;
    let m = step(h, call, opts, |c| {
        unit::unit(c, op, name, content, root.as_deref())
    })?;
    if root.is_none() && m.get("changed").and_then(|c| c.as_bool().ok()) == Some(true) {
        h.handlers.notify_daemon_reload(call.call_position());
    }
    Ok(m)
}

fn register_systemd(engine: &mut Engine, host: &Arc<HostContext>) {
    let mut m = Module::new();
    let h = host.clone();
    let unit_fn = move |call: NativeCallContext, name: &str, content: &str, opts: Map| {
        check_keys(&call, "systemd::unit", &opts, &["root", "become", "notify"])?;
        unit_step(&h, &call, "systemd::unit", name, content, &opts)
    };
    let u2 = unit_fn.clone();
    m.set_native_fn(
        "unit",
        move |call: NativeCallContext, name: &str, content: &str| {
            u2(call, name, content, Map::new())
        },
    );
    m.set_native_fn("unit", unit_fn);

    let h = host.clone();
    m.set_native_fn(
        "timer",
        move |call: NativeCallContext, name: &str, opts: Map| -> RResult<Map> {
            const F: &str = "systemd::timer";
            check_keys(
                &call,
                F,
                &opts,
                &[
                    "on_calendar",
                    "on_boot_sec",
                    "unit",
                    "description",
                    "persistent",
                    "randomized_delay_sec",
                    "root",
                    "become",
                    "notify",
                ],
            )?;
            let name = if name.ends_with(".timer") {
                name.to_string()
            } else {
                format!("{name}.timer")
            };
            let text = unit::timer_text(&name, &timer_spec(&call, &opts)?)
                .map_err(|why| err(&call, format!("{F} {name:?}: {why}")))?;
            unit_step(&h, &call, F, &name, &text, &opts)
        },
    );

    let h = host.clone();
    m.set_native_fn(
        "daemon_reload",
        move |call: NativeCallContext| -> RResult<Map> {
            h.step(&call, crate::ops::unit::daemon_reload)
        },
    );
    engine.register_static_module("systemd", m.into());
}

pub fn register(engine: &mut Engine, host: Arc<HostContext>) {
    register_service(engine, &host);
    register_cron(engine, &host);
    register_systemd(engine, &host);
}
