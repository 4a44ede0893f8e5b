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

    // `host()`: name, address, user, vars and os. A type with getters rather than a
    // map so that `os` is asked of the host only by a recipe that reads it.
    let h = host.clone();
    engine.register_fn("host", move || {
        HostFacts(h.ctx.target.clone(), h.mode == Mode::Declare)
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
                            HostFacts::FIELDS.join(", ")
                        ),
                    )
                })
            },
        )
        .register_fn("to_string", |f: &mut HostFacts| f.describe())
        .register_fn("to_debug", |f: &mut HostFacts| f.describe());
    for name in HostFacts::FIELDS {
        engine.register_get(
            name,
            move |call: NativeCallContext, f: &mut HostFacts| -> RResult<Dynamic> {
                Ok(f.get(&call, name)?.expect("one of FIELDS"))
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

/// What `host()` returns; `.1`: in the declaring pass, which has no host.
#[derive(Clone)]
pub struct HostFacts(Arc<dyn crate::transport::Target>, bool);

impl HostFacts {
    const FIELDS: [&'static str; 5] = ["name", "address", "user", "os", "vars"];

    /// A field, or `None` for no such field. The declaring pass has no host and so
    /// no variables: reading them ends it as an operation does, or
    /// `host().vars.port + 1` would fail there on a variable no host was asked for.
    fn get(&self, call: &NativeCallContext, key: &str) -> RResult<Option<Dynamic>> {
        if self.1 && key == "vars" {
            return Err(stop_with(call, DeclarePass::NoParams));
        }
        Ok(self.field(key))
    }

    fn field(&self, key: &str) -> Option<Dynamic> {
        let i = self.0.info();
        Some(match key {
            "name" => i.name.clone().into(),
            "address" => i.address.clone().into(),
            "user" => i.user.clone().into(),
            "os" => self.0.os().into(),
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

    fn describe(&self) -> String {
        let i = self.0.info();
        format!(
            "#{{name: {:?}, address: {:?}, user: {:?}, os: {:?}, vars: {:?}}}",
            i.name,
            i.address,
            i.user,
            self.0.os(),
            i.vars
        )
    }
}
