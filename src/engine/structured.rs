//! `fs::json` and `fs::yaml` for recipes: the location and value checked and
//! converted, then the operations of [`crate::ops::structured`].

use std::sync::Arc;

use rhai::{Dynamic, Map, Module, NativeCallContext};

use super::fs::{check_keys, opt_bool, opt_str};
use super::{err, HostContext, RResult};
use crate::ops::structured::{self as op, Edit, StructSpec};

/// The value as JSON. A secret is refused: these edits show the lines they change.
fn value_of(call: &NativeCallContext, f: &str, v: &Dynamic) -> RResult<serde_json::Value> {
    if v.is::<crate::secret::Secret>() {
        return Err(err(
            call,
            format!(
                "{f}: a secret cannot be written this way ({f} shows the lines it changes); \
                 write the whole file instead: fs::file(path, …) or a template"
            ),
        ));
    }
    rhai::serde::from_dynamic(v).map_err(|e| {
        err(
            call,
            format!("{f}: the value must be a string, number, bool, (), array or map: {e}"),
        )
    })
}

fn spec(
    call: &NativeCallContext,
    f: &str,
    tokens: Result<Vec<String>, String>,
    value: &Dynamic,
    opts: &Map,
    yaml: bool,
) -> RResult<(StructSpec, bool)> {
    let allowed: &[&str] = if yaml {
        &["state", "create", "rewrite", "become"]
    } else {
        &["state", "create", "become"]
    };
    check_keys(call, f, opts, allowed)?;
    let tokens = tokens.map_err(|why| err(call, format!("{f}: {why}")))?;
    let edit = match opt_str(call, opts, "state")?.as_deref() {
        None | Some("present") => Edit::Set(value_of(call, f, value)?),
        Some("absent") => Edit::Remove,
        Some(s) => {
            return Err(err(
                call,
                format!("{f}: state must be \"present\" or \"absent\", not {s:?}"),
            ))
        }
    };
    let spec = StructSpec {
        tokens,
        edit,
        create: opt_bool(call, opts, "create", true)?,
        rewrite: yaml && opt_bool(call, opts, "rewrite", false)?,
    };
    Ok((spec, opt_bool(call, opts, "become", false)?))
}

pub fn register(m: &mut Module, host: Arc<HostContext>) {
    for yaml in [false, true] {
        let f: &'static str = if yaml { "fs::yaml" } else { "fs::json" };
        let h = host.clone();
        let edit =
            move |call: NativeCallContext, path: &str, at: &str, value: Dynamic, opts: Map| {
                let tokens = if yaml {
                    op::path_or_pointer(at)
                } else {
                    op::pointer(at)
                };
                let (spec, become_) = spec(&call, f, tokens, &value, &opts, yaml)?;
                h.check_scope(&call, f, path, None, false)?;
                h.step_as(&call, become_, |c| {
                    if yaml {
                        op::yaml(c, path, &spec)
                    } else {
                        op::json(c, path, &spec)
                    }
                })
            };
        let e2 = edit.clone();
        let name = if yaml { "yaml" } else { "json" };
        m.set_native_fn(
            name,
            move |call: NativeCallContext, path: &str, at: &str, value: Dynamic| {
                e2(call, path, at, value, Map::new())
            },
        );
        m.set_native_fn(name, edit);
    }
}
