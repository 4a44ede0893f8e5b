//! `host().vars`: the host's inventory variables. A variable the host does not have
//! is an error at the line that reads it, naming the host and the variable (a map
//! would give `()`, which becomes `""` in a path: `${root}/etc` is then `/etc`);
//! `host().vars.get("x", default)` is for the optional ones.

use rhai::{Array, Dynamic, Engine, Map, NativeCallContext};

use super::{err, RResult};

/// What `host().vars` is.
#[derive(Clone)]
pub struct HostVars {
    host: String,
    vars: Map,
}

impl HostVars {
    pub fn new(host: &str, vars: Map) -> Self {
        HostVars {
            host: host.to_string(),
            vars,
        }
    }

    fn names(&self) -> String {
        if self.vars.is_empty() {
            return "it has none".into();
        }
        let names: Vec<&str> = self.vars.keys().map(|k| k.as_str()).collect();
        format!("it has {}", names.join(", "))
    }
}

pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<HostVars>("vars")
        // Also what `v.name` falls back to, having no getter of that name.
        .register_indexer_get(
            |call: NativeCallContext, v: &mut HostVars, key: &str| -> RResult<Dynamic> {
                // (The declaring pass never gets here: reading `host().vars` ends it.)
                if let Some(x) = v.vars.get(key) {
                    return Ok(x.clone());
                }
                Err(err(
                    &call,
                    format!(
                        "host {} has no variable `{key}` ({}); for an optional one: \
                         host().vars.get(\"{key}\", default)",
                        v.host,
                        v.names()
                    ),
                ))
            },
        )
        .register_fn("get", |v: &mut HostVars, key: &str, default: Dynamic| {
            v.vars.get(key).cloned().unwrap_or(default)
        })
        .register_fn("contains", |v: &mut HostVars, key: &str| {
            v.vars.contains_key(key)
        })
        .register_fn("keys", |v: &mut HostVars| -> Array {
            v.vars.keys().map(|k| k.as_str().into()).collect()
        })
        .register_fn("len", |v: &mut HostVars| v.vars.len() as i64)
        .register_fn("is_empty", |v: &mut HostVars| v.vars.is_empty())
        .register_fn("to_map", |v: &mut HostVars| v.vars.clone())
        .register_fn("to_string", |v: &mut HostVars| {
            Dynamic::from_map(v.vars.clone()).to_string()
        })
        .register_fn("to_debug", |v: &mut HostVars| {
            format!("{:?}", Dynamic::from_map(v.vars.clone()))
        });
}
