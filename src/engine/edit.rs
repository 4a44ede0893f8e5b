//! `fs::block`, `fs::replace` and `fs::ini` for recipes: their options checked and
//! converted, then the operations of [`crate::ops::edit`].

use std::sync::Arc;

use rhai::{Dynamic, Map, Module, NativeCallContext};

use super::fs::{check_keys, opt_bool, opt_str};
use super::{err, HostContext, RResult};
use crate::ops::edit::{self as op, BlockSpec, Place};

fn regex(call: &NativeCallContext, f: &str, key: &str, text: &str) -> RResult<regex::Regex> {
    regex::RegexBuilder::new(text)
        .multi_line(true)
        .build()
        .map_err(|e| err(call, format!("{f}: `{key}` is not a regex: {e}")))
}

/// These edits show the lines they change: a secret has no place in them.
fn no_secret(call: &NativeCallContext, f: &str, v: &Dynamic) -> RResult<()> {
    if v.is::<crate::secret::Secret>() {
        return Err(err(
            call,
            format!(
                "{f}: a secret cannot be written this way ({f} shows the lines it changes); \
                 write the whole file instead: fs::file(path, p.token), or a template with the \
                 secret in its variables"
            ),
        ));
    }
    Ok(())
}

fn text_of(call: &NativeCallContext, f: &str, what: &str, v: &Dynamic) -> RResult<String> {
    no_secret(call, f, v)?;
    if v.is_string() || v.is_int() || v.is_float() || v.is_bool() {
        return Ok(v.to_string());
    }
    Err(err(
        call,
        format!("{f}: the {what} must be a string, not {}", v.type_name()),
    ))
}

fn block_spec(call: &NativeCallContext, text: String, opts: &Map) -> RResult<(BlockSpec, bool)> {
    const F: &str = "fs::block";
    check_keys(
        call,
        F,
        opts,
        &[
            "marker",
            "marker_begin",
            "marker_end",
            "state",
            "insertafter",
            "insertbefore",
            "create",
            "become",
        ],
    )?;
    let present = match opt_str(call, opts, "state")?.as_deref() {
        None | Some("present") => true,
        Some("absent") => false,
        Some(s) => {
            return Err(err(
                call,
                format!("{F}: state must be \"present\" or \"absent\", not {s:?}"),
            ))
        }
    };
    let after = opt_str(call, opts, "insertafter")?;
    let before = opt_str(call, opts, "insertbefore")?;
    let place = match (after.as_deref(), before.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(err(
                call,
                format!("{F}: give insertafter or insertbefore, not both"),
            ))
        }
        (None | Some("EOF"), None) => Place::End,
        (None, Some("BOF")) => Place::Start,
        (Some(re), None) => Place::After(regex(call, F, "insertafter", re)?),
        (None, Some(re)) => Place::Before(regex(call, F, "insertbefore", re)?),
    };
    let marker = opt_str(call, opts, "marker")?.unwrap_or_else(|| op::DEFAULT_MARKER.into());
    if marker.contains('\n') {
        return Err(err(call, format!("{F}: a marker is one line")));
    }
    let spec = BlockSpec {
        text,
        present,
        marker,
        begin: opt_str(call, opts, "marker_begin")?.unwrap_or_else(|| "BEGIN".into()),
        end: opt_str(call, opts, "marker_end")?.unwrap_or_else(|| "END".into()),
        place,
        create: opt_bool(call, opts, "create", true)?,
    };
    Ok((spec, opt_bool(call, opts, "become", false)?))
}

pub fn register(m: &mut Module, host: Arc<HostContext>) {
    let h = host.clone();
    let block = move |call: NativeCallContext, path: &str, text: Dynamic, opts: Map| {
        let text = text_of(&call, "fs::block", "block", &text)?;
        let (spec, become_) = block_spec(&call, text, &opts)?;
        h.check_scope(&call, "fs::block", path, None, false)?;
        h.warn_stringified(
            &format!("fs::block {path}: the block"),
            spec.text.as_bytes(),
        );
        h.step_as(&call, become_, |c| op::block(c, path, &spec))
    };
    let b2 = block.clone();
    m.set_native_fn(
        "block",
        move |call: NativeCallContext, path: &str, text: Dynamic| b2(call, path, text, Map::new()),
    );
    m.set_native_fn("block", block);

    let h = host.clone();
    let replace = move |call: NativeCallContext, path: &str, re: &str, with: Dynamic, opts: Map| {
        check_keys(&call, "fs::replace", &opts, &["become"])?;
        let become_ = opt_bool(&call, &opts, "become", false)?;
        let re = regex(&call, "fs::replace", "regex", re)?;
        let with = text_of(&call, "fs::replace", "replacement", &with)?;
        h.check_scope(&call, "fs::replace", path, None, false)?;
        h.warn_stringified(
            &format!("fs::replace {path}: the replacement"),
            with.as_bytes(),
        );
        h.step_as(&call, become_, |c| op::replace(c, path, &re, &with))
    };
    let r2 = replace.clone();
    m.set_native_fn(
        "replace",
        move |call: NativeCallContext, path: &str, re: &str, with: Dynamic| {
            r2(call, path, re, with, Map::new())
        },
    );
    m.set_native_fn("replace", replace);

    let h = host;
    let ini = move |call: NativeCallContext,
                    path: &str,
                    section: &str,
                    key: &str,
                    value: Dynamic,
                    opts: Map| {
        check_keys(&call, "fs::ini", &opts, &["create", "become"])?;
        let become_ = opt_bool(&call, &opts, "become", false)?;
        let create = opt_bool(&call, &opts, "create", true)?;
        let value = text_of(&call, "fs::ini", "value", &value)?;
        h.check_scope(&call, "fs::ini", path, None, false)?;
        h.warn_stringified(&format!("fs::ini {path}: the value"), value.as_bytes());
        h.step_as(&call, become_, |c| {
            op::ini(c, path, section, key, &value, create)
        })
    };
    let i2 = ini.clone();
    m.set_native_fn(
        "ini",
        move |call: NativeCallContext, path: &str, section: &str, key: &str, value: Dynamic| {
            i2(call, path, section, key, value, Map::new())
        },
    );
    m.set_native_fn("ini", ini);
}
