//! Core recipe functions: `params`, `secret`, `host`, `log::*`, `time::*`, and the
//! `size`/`duration` converters.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rhai::{Dynamic, Engine, FnPtr, Map, Module, NativeCallContext};

use super::{err, stop_with, DeclarePass, HostContext, Mode, ParamProblem, RResult};
use crate::event::Event;
use crate::recipe::params;
use crate::secret::Secret;

pub fn register(engine: &mut Engine, host: Arc<HostContext>) {
    // `become(|| { … })`: the steps and facts of the block run as root through
    // `sudo -n` on the same connection; their undo records say so, so a rollback
    // reverts them as root too.
    let h = host.clone();
    engine.register_fn(
        "become",
        move |call: NativeCallContext, block: FnPtr| -> RResult<Dynamic> {
            h.as_root(&call, "become(…)", || {
                block.call_within_context::<Dynamic>(&call, ())
            })?
        },
    );
    let h = host.clone();
    engine.register_fn(
        "params",
        move |call: NativeCallContext, decl: Map| -> RResult<Map> {
            let decls = params::declarations(&decl, &h.param_docs)
                .map_err(|m| stop_with(&call, ParamProblem(m)))?;
            if h.mode == Mode::Declare {
                *h.declared.lock().expect("lock") = Some(decls);
                return Err(stop_with(&call, DeclarePass::Declared));
            }
            if h.ctx.current_step() > 0 {
                return Err(err(&call, "params() must come before any operation"));
            }
            if h.params_done.swap(true, Ordering::SeqCst) {
                return Err(err(&call, "params() may be called only once"));
            }
            let values = params::resolve(&decl, &decls, &h.given, &h.supplied)
                .map_err(|m| stop_with(&call, ParamProblem(m)))?;
            for v in values.values() {
                if let Some(s) = v.clone().try_cast::<Secret>() {
                    h.add_secret(s.expose());
                }
            }
            Ok(values)
        },
    );

    // `host()`: name, address, user, vars and the facts of [`super::facts`]. A type
    // with getters rather than a map so that a fact is asked of the host only by a
    // recipe that reads it.
    let h = host.clone();
    engine.register_fn("host", move || HostFacts {
        target: h.ctx.target.clone(),
        facts: h.facts.clone(),
        declaring: h.mode == Mode::Declare,
    });
    engine
        .register_type_with_name::<HostFacts>("host")
        .register_indexer_get(
            |call: NativeCallContext, f: &mut HostFacts, key: &str| -> RResult<Dynamic> {
                f.get(&call, key)?.ok_or_else(|| {
                    err(
                        &call,
                        format!(
                            "host() has no `{key}` (it has {})",
                            HostFacts::fields().join(", ")
                        ),
                    )
                })
            },
        )
        .register_fn("to_string", |f: &mut HostFacts| f.describe())
        .register_fn("to_debug", |f: &mut HostFacts| f.describe());
    for name in HostFacts::fields() {
        engine.register_get(
            name,
            move |call: NativeCallContext, f: &mut HostFacts| -> RResult<Dynamic> {
                Ok(f.get(&call, name)?.expect("one of the fields"))
            },
        );
    }

    let mut log = Module::new();
    for level in ["info", "warn", "error"] {
        let h = host.clone();
        log.set_native_fn(level, move |call: NativeCallContext, msg: Dynamic| {
            // Rhai's own to_string, as `print` and interpolation use, so a secret (also
            // one inside a map or array) shows as `***`, not as its Rust type name.
            let text = if msg.is_string() {
                msg.to_string()
            } else {
                call.call_native_fn::<String>("to_string", (msg,))?
            };
            let message = h.redact(&text);
            (h.sink)(&Event::Log {
                host: h.host(),
                level: level.to_string(),
                message,
            });
            Ok(())
        });
    }
    engine.register_static_module("log", log.into());

    let mut time = Module::new();
    time.set_native_fn("now", || Ok(chrono::Utc::now().timestamp()));
    time.set_native_fn("format", |epoch: i64, fmt: &str| {
        use chrono::TimeZone;
        Ok(chrono::Local
            .timestamp_opt(epoch, 0)
            .single()
            .map(|t| t.format(fmt).to_string())
            .unwrap_or_default())
    });
    // The inverse of `format`, in local time (logrotate's status file holds local
    // times); `()` when `text` does not fit `fmt`, so a recipe can say which line.
    time.set_native_fn("parse", |text: &str, fmt: &str| {
        use chrono::TimeZone;
        Ok(chrono::NaiveDateTime::parse_from_str(text.trim(), fmt)
            .ok()
            .and_then(|t| chrono::Local.from_local_datetime(&t).earliest())
            .map_or(Dynamic::UNIT, |t| t.timestamp().into()))
    });
    engine.register_static_module("time", time.into());
}

/// What `host()` returns.
#[derive(Clone)]
pub struct HostFacts {
    target: Arc<dyn crate::transport::Target>,
    facts: Arc<super::facts::Facts>,
    /// In the declaring pass, which has no host.
    declaring: bool,
}

impl HostFacts {
    const OWN: [&'static str; 4] = ["name", "address", "user", "vars"];

    fn fields() -> Vec<&'static str> {
        Self::OWN
            .iter()
            .chain(super::facts::NAMES.iter())
            .copied()
            .collect()
    }

    /// A field, or `None` for no such field. The declaring pass has no host and so
    /// no variables or facts: reading them ends it as an operation does, or
    /// `host().vars.port + 1` would fail there on a variable no host was asked for.
    fn get(&self, call: &NativeCallContext, key: &str) -> RResult<Option<Dynamic>> {
        let gathered = key != "os" && super::facts::NAMES.contains(&key);
        if self.declaring && (key == "vars" || gathered) {
            return Err(stop_with(call, DeclarePass::NoParams));
        }
        if let Some(v) = self.field(key) {
            return Ok(Some(v));
        }
        match self.facts.get(key) {
            Ok(Some(v)) => Ok(Some(rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT))),
            Ok(None) => Ok(None),
            Err(e) => Err(err(call, format!("host().{key}: {e}"))),
        }
    }

    fn field(&self, key: &str) -> Option<Dynamic> {
        let i = self.target.info();
        Some(match key {
            "name" => i.name.clone().into(),
            "address" => i.address.clone().into(),
            "user" => i.user.clone().into(),
            "vars" => Dynamic::from(super::vars::HostVars::new(
                &i.name,
                i.vars
                    .iter()
                    // Typed: `host().vars.port + 1` is arithmetic, not concatenation.
                    .map(|(k, v)| {
                        let v = rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT);
                        (k.as_str().into(), v)
                    })
                    .collect::<Map>(),
            )),
            _ => return None,
        })
    }

    /// For people; the facts are left out (printing `host()` gathers nothing).
    fn describe(&self) -> String {
        let i = self.target.info();
        format!(
            "#{{name: {:?}, address: {:?}, user: {:?}, os: {:?}, vars: {:?}}}",
            i.name,
            i.address,
            i.user,
            self.target.os(),
            i.vars
        )
    }
}
