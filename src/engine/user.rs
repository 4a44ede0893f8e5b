//! The `user`, `group` and `ssh` modules of recipes: argument checking, then the
//! operations of [`crate::ops::user`].

use std::sync::Arc;

use rhai::{Array, Engine, Map, Module, NativeCallContext};

use super::fs::{check_keys, opt_bool, opt_str};
use super::{err, HostContext, RResult};
use crate::ops::user::{self as op, UserSpec};

/// An id option (`uid`, `gid`): a whole number a `u32` holds.
fn opt_id(call: &NativeCallContext, opts: &Map, key: &str) -> RResult<Option<u32>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v
            .as_int()
            .ok()
            .and_then(|i| u32::try_from(i).ok())
            .map(Some)
            .ok_or_else(|| err(call, format!("option `{key}` must be a number from 0"))),
    }
}

/// `owner:`/`group:` and the like: a name or a number.
pub(super) fn opt_name(call: &NativeCallContext, opts: &Map, key: &str) -> RResult<Option<String>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) if v.is_int() => {
            let i = v.as_int().unwrap_or(-1);
            u32::try_from(i).map(|n| Some(n.to_string())).map_err(|_| {
                err(
                    call,
                    format!("option `{key}` must be a name or an id from 0"),
                )
            })
        }
        Some(v) => v
            .clone()
            .try_cast::<String>()
            .map(Some)
            .ok_or_else(|| err(call, format!("option `{key}` must be a name or a number"))),
    }
}

fn opt_list(call: &NativeCallContext, opts: &Map, key: &str) -> RResult<Option<Vec<String>>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) => {
            if let Some(s) = v.clone().try_cast::<String>() {
                return Ok(Some(
                    s.split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect(),
                ));
            }
            let a = v
                .clone()
                .try_cast::<Array>()
                .ok_or_else(|| err(call, format!("option `{key}` must be a list of names")))?;
            a.into_iter()
                .map(|x| {
                    x.try_cast::<String>()
                        .ok_or_else(|| err(call, format!("option `{key}` must be a list of names")))
                })
                .collect::<RResult<Vec<_>>>()
                .map(Some)
        }
    }
}

fn user_spec(call: &NativeCallContext, opts: &Map) -> RResult<(UserSpec, bool)> {
    check_keys(
        call,
        "user::present",
        opts,
        &[
            "uid",
            "group",
            "groups",
            "append",
            "shell",
            "home",
            "comment",
            "system",
            "create_home",
            "become",
        ],
    )?;
    let spec = UserSpec {
        uid: opt_id(call, opts, "uid")?,
        group: opt_name(call, opts, "group")?,
        groups: opt_list(call, opts, "groups")?,
        append: opt_bool(call, opts, "append", false)?,
        shell: opt_str(call, opts, "shell")?,
        home: opt_str(call, opts, "home")?,
        comment: opt_str(call, opts, "comment")?,
        system: opt_bool(call, opts, "system", false)?,
        create_home: opts
            .get("create_home")
            .map(|_| opt_bool(call, opts, "create_home", true))
            .transpose()?,
    };
    for (k, v) in [
        ("shell", &spec.shell),
        ("home", &spec.home),
        ("comment", &spec.comment),
    ] {
        if v.as_deref().is_some_and(|s| s.contains([':', '\n'])) {
            return Err(err(
                call,
                format!("user::present: `{k}` cannot contain `:` or a newline"),
            ));
        }
    }
    Ok((spec, opt_bool(call, opts, "become", false)?))
}

pub fn register(engine: &mut Engine, host: Arc<HostContext>) {
    let mut user = Module::new();
    let h = host.clone();
    let present = move |call: NativeCallContext, name: &str, opts: Map| {
        let (spec, become_) = user_spec(&call, &opts)?;
        h.check_scope(&call, "user::present", "/etc/passwd", None, false)?;
        h.step_as(&call, become_, |c| op::user_present(c, name, &spec))
    };
    let p2 = present.clone();
    user.set_native_fn("present", move |call: NativeCallContext, name: &str| {
        p2(call, name, Map::new())
    });
    user.set_native_fn("present", present);
    let h = host.clone();
    let absent = move |call: NativeCallContext, name: &str, opts: Map| {
        check_keys(&call, "user::absent", &opts, &["become"])?;
        let become_ = opt_bool(&call, &opts, "become", false)?;
        h.check_scope(&call, "user::absent", "/etc/passwd", None, false)?;
        h.step_as(&call, become_, |c| op::user_absent(c, name))
    };
    let a2 = absent.clone();
    user.set_native_fn("absent", move |call: NativeCallContext, name: &str| {
        a2(call, name, Map::new())
    });
    user.set_native_fn("absent", absent);
    engine.register_static_module("user", user.into());

    let mut group = Module::new();
    let h = host.clone();
    let present = move |call: NativeCallContext, name: &str, opts: Map| {
        check_keys(&call, "group::present", &opts, &["gid", "system", "become"])?;
        let gid = opt_id(&call, &opts, "gid")?;
        let system = opt_bool(&call, &opts, "system", false)?;
        let become_ = opt_bool(&call, &opts, "become", false)?;
        h.check_scope(&call, "group::present", "/etc/group", None, false)?;
        h.step_as(&call, become_, |c| op::group_present(c, name, gid, system))
    };
    let p2 = present.clone();
    group.set_native_fn("present", move |call: NativeCallContext, name: &str| {
        p2(call, name, Map::new())
    });
    group.set_native_fn("present", present);
    let h = host.clone();
    let absent = move |call: NativeCallContext, name: &str, opts: Map| {
        check_keys(&call, "group::absent", &opts, &["become"])?;
        let become_ = opt_bool(&call, &opts, "become", false)?;
        h.check_scope(&call, "group::absent", "/etc/group", None, false)?;
        h.step_as(&call, become_, |c| op::group_absent(c, name))
    };
    let a2 = absent.clone();
    group.set_native_fn("absent", move |call: NativeCallContext, name: &str| {
        a2(call, name, Map::new())
    });
    group.set_native_fn("absent", absent);
    engine.register_static_module("group", group.into());

    let mut ssh = Module::new();
    let h = host;
    let key = move |call: NativeCallContext, user: &str, key: &str, opts: Map| {
        check_keys(&call, "ssh::authorized_key", &opts, &["state", "become"])?;
        let present = match opt_str(&call, &opts, "state")?.as_deref() {
            None | Some("present") => true,
            Some("absent") => false,
            Some(s) => {
                return Err(err(
                    &call,
                    format!(
                        "ssh::authorized_key: state must be \"present\" or \"absent\", not {s:?}"
                    ),
                ))
            }
        };
        let become_ = opt_bool(&call, &opts, "become", false)?;
        if h.scope().is_some() {
            let home = h.fact(&call, |c| {
                op::db(c)?
                    .user(user)
                    .map(|u| u.home.clone())
                    .ok_or_else(|| {
                        crate::ops::OpError::Invalid(format!("no user {user} on {}", c.host()))
                    })
            })?;
            let dir = crate::transport::join(&home, ".ssh");
            h.check_scope(&call, "ssh::authorized_key", &dir, None, false)?;
            let file = crate::transport::join(&dir, "authorized_keys");
            h.check_scope(&call, "ssh::authorized_key", &file, None, false)?;
        }
        h.step_as(&call, become_, |c| {
            crate::ops::ssh_key::authorized_key(c, user, key, present)
        })
    };
    let k2 = key.clone();
    ssh.set_native_fn(
        "authorized_key",
        move |call: NativeCallContext, user: &str, k: &str| k2(call, user, k, Map::new()),
    );
    ssh.set_native_fn("authorized_key", key);
    engine.register_static_module("ssh", ssh.into());
}
