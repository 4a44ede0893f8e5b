//! The `pkg` module of recipes: `pkg::installed`, `pkg::absent`, `pkg::latest`,
//! `pkg::updated` and the facts `pkg::list`, `pkg::version`; their arguments and
//! options checked and converted, then the operations of [`crate::ops::pkg`].

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, Map, Module, NativeCallContext};

use super::fs::{check_keys, opt_bool, opt_str};
use super::{err, HostContext, RResult};
use crate::ops::pkg::{self as op, Goal, PkgSpec};
use crate::pkgmgr::{valid_name, valid_version, Change, LOCK_TIMEOUT};
use crate::recipe::params::parse_duration;

/// One name or a list of them.
fn names_of(call: &NativeCallContext, f: &str, v: &Dynamic) -> RResult<Vec<String>> {
    let list: Vec<Dynamic> = if v.is_array() {
        v.clone().cast::<Array>()
    } else {
        vec![v.clone()]
    };
    let mut names = Vec::new();
    for n in list {
        let Some(s) = n.clone().try_cast::<String>() else {
            return Err(err(
                call,
                format!(
                    "{f}: a package name must be a string, not {}",
                    n.type_name()
                ),
            ));
        };
        if !valid_name(&s) {
            return Err(err(
                call,
                format!("{f}: {s:?} is not a package name (letters, digits and +._:@- only)"),
            ));
        }
        if !names.contains(&s) {
            names.push(s);
        }
    }
    if names.is_empty() {
        return Err(err(call, format!("{f}: no package named")));
    }
    Ok(names)
}

/// `options: ["Dir::Etc::sourcelist=/x", …]`: apt configuration items for `-o`, or
/// apk long options without their dashes.
fn manager_options(call: &NativeCallContext, f: &str, opts: &Map) -> RResult<Vec<String>> {
    let Some(v) = opts.get("options").filter(|v| !v.is_unit()) else {
        return Ok(Vec::new());
    };
    let bad = || {
        err(
            call,
            format!(
                "{f}: `options` must be a list of strings: apt's -o items \
                 (\"Dir::Etc::sourcelist=/x\"), apk's long options without their dashes \
                 (\"repository=/srv/apk\", \"allow-untrusted\")"
            ),
        )
    };
    let list = v.clone().try_cast::<Array>().ok_or_else(bad)?;
    list.into_iter()
        .map(|o| {
            o.try_cast::<String>()
                .filter(|s| !s.is_empty() && !s.starts_with('-') && !s.contains('\n'))
                .ok_or_else(bad)
        })
        .collect()
}

fn lock_timeout(call: &NativeCallContext, f: &str, opts: &Map) -> RResult<Duration> {
    let Some(v) = opts.get("lock_timeout").filter(|v| !v.is_unit()) else {
        return Ok(LOCK_TIMEOUT);
    };
    let d = match v.as_int() {
        Ok(i) => Duration::from_secs(i.max(0) as u64),
        Err(_) => parse_duration(&v.to_string())
            .map(|n| Duration::from_secs(n as u64))
            .map_err(|_| {
                err(
                    call,
                    format!(
                        "{f}: `lock_timeout` must be seconds or a duration like \"5m\", not {v}"
                    ),
                )
            })?,
    };
    super::check_timeout(d).map_err(|why| err(call, format!("{f}: `lock_timeout`: {why}")))
}

/// The step's map, with `packages`: what it changed (or would), each as
/// `#{name, from, to}` with `()` for absent.
fn with_packages(mut m: Map, changes: &[Change]) -> Map {
    let v = |x: &Option<String>| x.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let list: Array = changes
        .iter()
        .map(|c| {
            let mut p = Map::new();
            p.insert("name".into(), c.name.clone().into());
            p.insert("from".into(), v(&c.before));
            p.insert("to".into(), v(&c.after));
            Dynamic::from_map(p)
        })
        .collect();
    m.insert("packages".into(), Dynamic::from_array(list));
    m
}

fn step(
    h: &HostContext,
    call: &NativeCallContext,
    goal: Goal,
    names: Vec<String>,
    opts: &Map,
) -> RResult<Map> {
    let f = goal.op();
    let mut allowed = vec!["become", "options", "lock_timeout"];
    if goal == Goal::Installed {
        allowed.push("version");
    }
    check_keys(call, f, opts, &allowed)?;
    let version = opt_str(call, opts, "version")?;
    if let Some(v) = &version {
        if !valid_version(v) {
            return Err(err(call, format!("{f}: {v:?} is not a package version")));
        }
        if names.len() != 1 {
            return Err(err(
                call,
                format!(
                    "{f}: `version` is for one package; give one name, or one call per package"
                ),
            ));
        }
    }
    let spec = PkgSpec {
        names,
        version,
        options: manager_options(call, f, opts)?,
        lock_timeout: lock_timeout(call, f, opts)?,
    };
    let become_ = opt_bool(call, opts, "become", false)?;
    let mut found = Vec::new();
    let m = h.step_as(call, become_, |c| op::ensure(c, goal, &spec, &mut found))?;
    Ok(with_packages(m, &found))
}

pub fn register(engine: &mut Engine, host: Arc<HostContext>) {
    let mut m = Module::new();
    for goal in [Goal::Installed, Goal::Absent, Goal::Latest] {
        let name = goal.op().trim_start_matches("pkg::");
        let h = host.clone();
        let with_opts = move |call: NativeCallContext, names: Dynamic, opts: Map| {
            let names = names_of(&call, goal.op(), &names)?;
            step(&h, &call, goal, names, &opts)
        };
        let w2 = with_opts.clone();
        m.set_native_fn(name, move |call: NativeCallContext, names: Dynamic| {
            w2(call, names, Map::new())
        });
        m.set_native_fn(name, with_opts);
    }

    let h = host.clone();
    let updated =
        move |call: NativeCallContext, opts: Map| step(&h, &call, Goal::Updated, Vec::new(), &opts);
    let u2 = updated.clone();
    m.set_native_fn("updated", move |call: NativeCallContext| {
        u2(call, Map::new())
    });
    m.set_native_fn("updated", updated);

    let h = host.clone();
    let list = move |call: NativeCallContext, opts: Map| -> RResult<Map> {
        const F: &str = "pkg::list";
        check_keys(&call, F, &opts, &["options"])?;
        let options = manager_options(&call, F, &opts)?;
        let all = h.fact(&call, |c| op::list(c, &options, LOCK_TIMEOUT))?;
        Ok(all.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    };
    let l2 = list.clone();
    m.set_native_fn("list", move |call: NativeCallContext| l2(call, Map::new()));
    m.set_native_fn("list", list);

    let h = host;
    let version = move |call: NativeCallContext, name: &str, opts: Map| -> RResult<Dynamic> {
        const F: &str = "pkg::version";
        check_keys(&call, F, &opts, &["options"])?;
        if !valid_name(name) {
            return Err(err(&call, format!("{F}: {name:?} is not a package name")));
        }
        let options = manager_options(&call, F, &opts)?;
        let v = h.fact(&call, |c| op::version(c, name, &options, LOCK_TIMEOUT))?;
        Ok(v.map(Dynamic::from).unwrap_or(Dynamic::UNIT))
    };
    let v2 = version.clone();
    m.set_native_fn("version", move |call: NativeCallContext, name: &str| {
        v2(call, name, Map::new())
    });
    m.set_native_fn("version", version);
    engine.register_static_module("pkg", m.into());
}
