//! Checks for recipes: `http::get`, `net::wait_for` (steps that never change
//! anything, see [`crate::ops::check`]) and `assert(cond, message)`.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, Engine, Map, Module, NativeCallContext};

use super::fs::{check_keys, opt_str};
use super::{err, HostContext, RResult};
use crate::ops::check::{self as op, Found, HttpSpec, Origin};
use crate::recipe::params::parse_duration;

pub(super) fn timeout(
    call: &NativeCallContext,
    f: &str,
    opts: &Map,
    default: u64,
) -> RResult<Duration> {
    let Some(v) = opts.get("timeout").filter(|v| !v.is_unit()) else {
        return Ok(Duration::from_secs(default));
    };
    let d = match v.as_int() {
        Ok(i) => Duration::from_secs(i.max(0) as u64),
        Err(_) => parse_duration(&v.to_string())
            .map(|n| Duration::from_secs(n as u64))
            .map_err(|_| {
                err(
                    call,
                    format!("{f}: `timeout` must be seconds or a duration like \"30s\", not {v}"),
                )
            })?,
    };
    super::check_timeout(d).map_err(|why| err(call, format!("{f}: `timeout`: {why}")))
}

pub(super) fn origin(call: &NativeCallContext, f: &str, opts: &Map) -> RResult<Origin> {
    match opt_str(call, opts, "from")?.as_deref() {
        None | Some("target") => Ok(Origin::Target),
        Some("controller") => Ok(Origin::Controller),
        Some(s) => Err(err(
            call,
            format!("{f}: `from` must be \"target\" or \"controller\", not {s:?}"),
        )),
    }
}

fn statuses(call: &NativeCallContext, opts: &Map) -> RResult<Vec<u16>> {
    let bad = || {
        err(
            call,
            "http::get: `expect_status` must be a status like 200, a list of them, or () for any",
        )
    };
    let one = |v: &Dynamic| -> RResult<u16> {
        v.as_int()
            .ok()
            .and_then(|i| u16::try_from(i).ok())
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(bad)
    };
    match opts.get("expect_status") {
        None => Ok(vec![200]),
        Some(v) if v.is_unit() => Ok(Vec::new()),
        Some(v) if v.is_array() => v.clone().cast::<rhai::Array>().iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

/// What a check returns besides the step's own map.
fn with_found(mut m: Map, found: &Found) -> Map {
    m.insert("via".into(), found.via.clone().into());
    if let Some(s) = found.status {
        m.insert("status".into(), (s as i64).into());
    }
    if let Some(b) = &found.body {
        m.insert("body".into(), b.clone().into());
    }
    m
}

pub fn register(engine: &mut Engine, host: Arc<HostContext>) {
    let mut http = Module::new();
    let h = host.clone();
    let get = move |call: NativeCallContext, url: &str, opts: Map| -> RResult<Map> {
        const F: &str = "http::get";
        check_keys(
            &call,
            F,
            &opts,
            &["timeout", "expect_status", "expect_body", "from"],
        )?;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(err(
                &call,
                format!("{F}: {url:?} is not an http:// or https:// URL"),
            ));
        }
        let spec = HttpSpec {
            url: url.to_string(),
            timeout: timeout(&call, F, &opts, 10)?,
            expect_status: statuses(&call, &opts)?,
            expect_body: opt_str(&call, &opts, "expect_body")?,
            from: origin(&call, F, &opts)?,
        };
        let mut found = Found::default();
        let m = h.step(&call, |c| op::http_get(c, &spec, &mut found))?;
        Ok(with_found(m, &found))
    };
    let g2 = get.clone();
    http.set_native_fn("get", move |call: NativeCallContext, url: &str| {
        g2(call, url, Map::new())
    });
    http.set_native_fn("get", get);
    engine.register_static_module("http", http.into());

    let mut net = Module::new();
    let h = host.clone();
    let wait = move |call: NativeCallContext, host: &str, port: i64, opts: Map| -> RResult<Map> {
        const F: &str = "net::wait_for";
        check_keys(&call, F, &opts, &["timeout", "from"])?;
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| err(&call, format!("{F}: {port} is not a TCP port")))?;
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(err(
                &call,
                format!("{F}: {host:?} is not a host name or address"),
            ));
        }
        let limit = timeout(&call, F, &opts, 30)?;
        let from = origin(&call, F, &opts)?;
        let mut found = Found::default();
        let m = h.step(&call, |c| {
            op::wait_for(c, host, port, limit, from, &mut found)
        })?;
        Ok(with_found(m, &found))
    };
    let w2 = wait.clone();
    net.set_native_fn(
        "wait_for",
        move |call: NativeCallContext, host: &str, port: i64| w2(call, host, port, Map::new()),
    );
    net.set_native_fn("wait_for", wait);
    engine.register_static_module("net", net.into());

    // A failed assert ends the script at its line, as a failed step does: the run
    // rolls back. It checks a value the recipe has, so it is no step of its own.
    let h = host;
    engine.register_fn(
        "assert",
        move |call: NativeCallContext, cond: bool, message: Dynamic| -> RResult<()> {
            if cond {
                return Ok(());
            }
            let text = if message.is_string() {
                message.to_string()
            } else {
                call.call_native_fn::<String>("to_string", (message,))?
            };
            Err(err(&call, h.redact(&format!("assertion failed: {text}"))))
        },
    );
    engine.register_fn(
        "assert",
        |call: NativeCallContext, cond: bool| -> RResult<()> {
            if cond {
                Ok(())
            } else {
                Err(err(&call, "assertion failed"))
            }
        },
    );
}
