//! `sh(cmd, opts)` and `archive::compress`.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, Engine, Map, Module, NativeCallContext};

use super::{err, HostContext, RResult};
use crate::ops::archive::{self, Format};
use crate::ops::sh::{sh, ShSpec};
use crate::recipe::params::parse_duration;
use crate::secret::Secret;

const SH_OPTIONS: &[&str] = &[
    "undo",
    "read_only",
    "creates",
    "unless",
    "timeout",
    "retries",
    "delay",
    "env",
    "stdin",
    "allow_fail",
];

fn text_or_secret(call: &NativeCallContext, key: &str, v: &Dynamic) -> RResult<String> {
    if let Some(s) = v.clone().try_cast::<Secret>() {
        return Ok(s.expose().to_string());
    }
    if v.is_string() || v.is_int() || v.is_bool() || v.is_float() {
        return Ok(v.to_string());
    }
    Err(err(
        call,
        format!("sh: `{key}` must be a string or a secret"),
    ))
}

fn duration(call: &NativeCallContext, key: &str, v: &Dynamic) -> RResult<Duration> {
    if let Ok(i) = v.as_int() {
        return Ok(Duration::from_secs(i.max(0) as u64));
    }
    let s = v.to_string();
    parse_duration(&s)
        .map(|n| Duration::from_secs(n as u64))
        .ok_or_else(|| {
            err(
                call,
                format!("sh: `{key}` must be a duration like \"30s\", not {s:?}"),
            )
        })
}

fn spec(call: &NativeCallContext, command: &str, opts: &Map) -> RResult<ShSpec> {
    let mut spec = ShSpec {
        command: command.to_string(),
        ..Default::default()
    };
    for (k, v) in opts {
        if v.is_unit() {
            continue; // `undo: ()` and friends mean "not given", as for fs options
        }
        let s = || -> RResult<String> {
            v.clone()
                .try_cast::<String>()
                .ok_or_else(|| err(call, format!("sh: `{k}` must be a string")))
        };
        let b = || -> RResult<bool> {
            v.as_bool()
                .map_err(|_| err(call, format!("sh: `{k}` must be true or false")))
        };
        match k.as_str() {
            "undo" => spec.undo = Some(s()?),
            "read_only" => spec.read_only = b()?,
            "creates" => spec.creates = Some(s()?),
            "unless" => spec.unless = Some(s()?),
            "allow_fail" => spec.allow_fail = b()?,
            "timeout" => spec.timeout = Some(duration(call, k, v)?),
            "delay" => spec.delay = duration(call, k, v)?,
            "retries" => {
                spec.retries = v
                    .as_int()
                    .map_err(|_| err(call, "sh: `retries` must be an int"))?
                    .clamp(0, 100) as u32
            }
            "stdin" => spec.stdin = Some(text_or_secret(call, k, v)?.into_bytes()),
            "env" => {
                let env = v
                    .clone()
                    .try_cast::<Map>()
                    .ok_or_else(|| err(call, "sh: `env` must be a map like #{NAME: \"value\"}"))?;
                for (name, value) in env {
                    spec.env
                        .push((name.to_string(), text_or_secret(call, &name, &value)?));
                }
            }
            other => {
                return Err(err(
                    call,
                    format!(
                        "sh: unknown option `{other}` (allowed: {})",
                        SH_OPTIONS.join(", ")
                    ),
                ))
            }
        }
    }
    Ok(spec)
}

pub fn register(engine: &mut Engine, host: Arc<HostContext>) {
    let h = host.clone();
    engine.register_fn("sh", move |call: NativeCallContext, command: &str| {
        let spec = spec(&call, command, &Map::new())?;
        h.step(&call, |c| sh(c, &spec))
    });
    let h = host.clone();
    engine.register_fn(
        "sh",
        move |call: NativeCallContext, command: &str, opts: Map| {
            let spec = spec(&call, command, &opts)?;
            h.step(&call, |c| sh(c, &spec))
        },
    );

    let mut m = Module::new();
    let compress = move |call: NativeCallContext, path: &str, format: &str| {
        let format = Format::parse(format).ok_or_else(|| {
            err(
                &call,
                format!("archive::compress: format must be \"gzip\" or \"zstd\", not {format:?}"),
            )
        })?;
        host.step(&call, |c| archive::compress(c, path, format))
    };
    let c2 = compress.clone();
    m.set_native_fn("compress", move |call: NativeCallContext, path: &str| {
        c2(call, path, "gzip")
    });
    m.set_native_fn("compress", compress);
    engine.register_static_module("archive", m.into());
}
