//! The `fs` module of recipes: argument checking and conversion, then the operations
//! of [`crate::ops::fs`].

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, Map, Module, NativeCallContext};

use super::{err, HostContext, RResult};
use crate::ops::fs::{self as op, LineSpec, LineState};
use crate::ops::{Ctx, OpResult, StepReport};
use crate::secret::Secret;
use crate::transport::{parent, Kind};

/// Options a function accepts; anything else is a typo worth reporting.
pub(super) fn check_keys(
    call: &NativeCallContext,
    f: &str,
    opts: &Map,
    allowed: &[&str],
) -> RResult<()> {
    for k in opts.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(err(
                call,
                format!(
                    "{f}: unknown option `{k}` (allowed: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

pub fn mode_of(call: &NativeCallContext, v: &Dynamic) -> RResult<u32> {
    let mode = if let Ok(i) = v.as_int() {
        i
    } else if let Some(s) = v.clone().try_cast::<String>() {
        i64::from_str_radix(s.trim_start_matches("0o"), 8)
            .map_err(|_| err(call, format!("mode {s:?} is not octal")))?
    } else {
        return Err(err(call, "mode must be an int like 0o644"));
    };
    if !(0..=0o7777).contains(&mode) {
        return Err(err(
            call,
            format!(
                "mode {} is not a file mode: modes go from 0 to 0o7777 (setuid, setgid, \
                 sticky, then read/write/execute for owner, group and others)",
                if mode < 0 {
                    mode.to_string()
                } else {
                    format!("0o{mode:o}")
                }
            ),
        ));
    }
    Ok(mode as u32)
}

fn opt_mode(call: &NativeCallContext, opts: &Map) -> RResult<Option<u32>> {
    opts.get("mode").map(|v| mode_of(call, v)).transpose()
}

pub(super) fn opt_str(call: &NativeCallContext, opts: &Map, key: &str) -> RResult<Option<String>> {
    match opts.get(key) {
        None => Ok(None),
        Some(v) if v.is_unit() => Ok(None),
        Some(v) => v
            .clone()
            .try_cast::<String>()
            .map(Some)
            .ok_or_else(|| err(call, format!("option `{key}` must be a string"))),
    }
}

pub(super) fn opt_bool(
    call: &NativeCallContext,
    opts: &Map,
    key: &str,
    default: bool,
) -> RResult<bool> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_bool()
            .map_err(|_| err(call, format!("option `{key}` must be true or false"))),
    }
}

/// File content from a string or a secret. Secret content is written but never diffed.
fn content_of(call: &NativeCallContext, v: &Dynamic) -> RResult<(Vec<u8>, bool)> {
    if let Some(s) = v.clone().try_cast::<Secret>() {
        return Ok((s.expose().as_bytes().to_vec(), false));
    }
    if let Some(s) = v.clone().try_cast::<String>() {
        return Ok((s.into_bytes(), true));
    }
    if let Some(b) = v.clone().try_cast::<rhai::Blob>() {
        return Ok((b, true));
    }
    Err(err(
        call,
        format!("content must be a string, not {}", v.type_name()),
    ))
}

/// A file shipped beside the recipe (`src:`, templates). Only below the recipe's
/// folder, like imports.
fn recipe_file(call: &NativeCallContext, host: &HostContext, rel: &str) -> RResult<String> {
    let path = crate::recipe::in_folder(&host.recipe_dir, rel)
        .map_err(|why| err(call, format!("{rel:?}: {why}")))?
        .unwrap_or_else(|| host.recipe_dir.join(rel));
    std::fs::read_to_string(&path)
        .map_err(|e| err(call, format!("cannot read {}: {e}", path.display())))
}

/// Template variables with every secret (at any depth) replaced by its value, and
/// whether there was one: then the rendered file's diff is hidden.
fn expose_vars(v: &Dynamic) -> (Dynamic, bool) {
    if let Some(s) = v.clone().try_cast::<Secret>() {
        return (Dynamic::from(s.expose().to_string()), true);
    }
    if let Some(m) = v.clone().try_cast::<Map>() {
        let mut any = false;
        let out: Map = m
            .into_iter()
            .map(|(k, x)| {
                let (x, s) = expose_vars(&x);
                any |= s;
                (k, x)
            })
            .collect();
        return (Dynamic::from_map(out), any);
    }
    if let Some(a) = v.clone().try_cast::<Array>() {
        let mut any = false;
        let out: Array = a
            .iter()
            .map(|x| {
                let (x, s) = expose_vars(x);
                any |= s;
                x
            })
            .collect();
        return (Dynamic::from_array(out), any);
    }
    (v.clone(), false)
}

/// Render a template; the bool is false when a variable is a secret (the diff of the
/// result must not be shown).
/// The template sees the host's variables and `host` (see
/// [`super::facts::template_context`]); the variables the step passes win.
fn render(
    call: &NativeCallContext,
    h: &HostContext,
    name: &str,
    text: &str,
    vars: &Map,
) -> RResult<(String, bool)> {
    let (vars, secret) = expose_vars(&Dynamic::from_map(vars.clone()));
    let vars = vars.cast::<Map>();
    render_plain(call, h, name, text, &vars).map(|r| (r, !secret))
}

fn render_plain(
    call: &NativeCallContext,
    h: &HostContext,
    name: &str,
    text: &str,
    vars: &Map,
) -> RResult<String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_template(name, text)
        .map_err(|e| err(call, format!("template {name}: {e}")))?;
    // The declaring pass has no host to show the template: it ends here, as at any
    // operation.
    h.guard(call)?;
    let own: serde_json::Map<String, serde_json::Value> =
        rhai::serde::from_dynamic(&Dynamic::from_map(vars.clone()))
            .map_err(|e| err(call, format!("template {name}: variables: {e}")))?;
    let mut ctx = super::facts::template_context(h.ctx.target.info(), &h.facts);
    ctx.extend(
        own.into_iter()
            .map(|(k, v)| (k, minijinja::Value::from_serialize(v))),
    );
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| err(call, format!("template {name}: {e}")))
}

/// The `owner:`/`group:` options (names or numbers).
type Owner = (Option<String>, Option<String>);

fn opt_owner(call: &NativeCallContext, opts: &Map) -> RResult<Owner> {
    Ok((
        super::user::opt_name(call, opts, "owner")?,
        super::user::opt_name(call, opts, "group")?,
    ))
}

/// Run `f` (a step that leaves `path`), then give `path` the owner asked for,
/// resolved on the target (its /etc/passwd and /etc/group, or a planned account)
/// before anything changes.
fn owned(
    c: &Ctx,
    path: &str,
    owner: &Owner,
    f: impl FnOnce(&Ctx) -> OpResult<StepReport>,
) -> OpResult<StepReport> {
    let uid = owner
        .0
        .as_deref()
        .map(|n| crate::ops::user::uid_of(c, n))
        .transpose()?;
    let gid = owner
        .1
        .as_deref()
        .map(|n| crate::ops::user::gid_of(c, n))
        .transpose()?;
    let mut r = f(c)?;
    op::own(c, &mut r, path, uid, gid)?;
    Ok(r)
}

/// `fs::dir` creates missing parents as well: each of them must be in scope too.
fn check_dir_scope(h: &HostContext, call: &NativeCallContext, path: &str) -> RResult<()> {
    h.check_scope(call, "fs::dir", path, None, false)?;
    if h.scope().is_none() {
        return Ok(());
    }
    let mut p = crate::recipe::scope::normalize(path);
    loop {
        let up = parent(&p).to_string();
        if up == p || up == "/" {
            return Ok(());
        }
        match h.ctx.target.stat(&up) {
            Ok(None) => h.check_scope(call, "fs::dir", &up, None, false)?,
            _ => return Ok(()),
        }
        p = up;
    }
}

pub fn register(engine: &mut Engine, host: Arc<HostContext>) {
    let mut m = Module::new();
    super::edit::register(&mut m, host.clone());
    super::structured::register(&mut m, host.clone());
    super::transfer::register(&mut m, host.clone());

    let h = host.clone();
    m.set_native_fn("dir", move |call: NativeCallContext, path: &str| {
        check_dir_scope(&h, &call, path)?;
        h.step(&call, |c| op::dir(c, path, None))
    });
    let h = host.clone();
    m.set_native_fn(
        "dir",
        move |call: NativeCallContext, path: &str, opts: Map| {
            check_keys(
                &call,
                "fs::dir",
                &opts,
                &["mode", "owner", "group", "become"],
            )?;
            let mode = opt_mode(&call, &opts)?;
            let owner = opt_owner(&call, &opts)?;
            let become_ = opt_bool(&call, &opts, "become", false)?;
            check_dir_scope(&h, &call, path)?;
            h.step_as(&call, become_, |c| {
                owned(c, path, &owner, |c| op::dir(c, path, mode))
            })
        },
    );

    let h = host.clone();
    m.set_native_fn(
        "file",
        move |call: NativeCallContext, path: &str, arg: Dynamic| {
            let mut owner: Owner = (None, None);
            let (content, show, mode, become_) = if let Some(opts) = arg.clone().try_cast::<Map>() {
                check_keys(
                    &call,
                    "fs::file",
                    &opts,
                    &[
                        "content", "src", "template", "vars", "mode", "owner", "group", "become",
                    ],
                )?;
                let mode = opt_mode(&call, &opts)?;
                owner = opt_owner(&call, &opts)?;
                let become_ = opt_bool(&call, &opts, "become", false)?;
                let (content, show) = if let Some(v) = opts.get("content") {
                    content_of(&call, v)?
                } else if let Some(src) = opt_str(&call, &opts, "src")? {
                    (recipe_file(&call, &h, &src)?.into_bytes(), true)
                } else if let Some(tpl) = opt_str(&call, &opts, "template")? {
                    let vars = opts
                        .get("vars")
                        .and_then(|v| v.clone().try_cast::<Map>())
                        .unwrap_or_default();
                    let text = recipe_file(&call, &h, &tpl)?;
                    let (out, show) = render(&call, &h, &tpl, &text, &vars)?;
                    (out.into_bytes(), show)
                } else {
                    return Err(err(&call, "fs::file: give `content`, `src` or `template`"));
                };
                (content, show, mode, become_)
            } else {
                let (c, s) = content_of(&call, &arg)?;
                (c, s, None, false)
            };
            h.check_scope(&call, "fs::file", path, None, false)?;
            if show {
                h.warn_stringified(&format!("fs::file {path}: the content"), &content);
            }
            h.step_as(&call, become_, |c| {
                owned(c, path, &owner, |c| {
                    op::file(c, "fs::file", path, &content, mode, show)
                })
            })
        },
    );

    let h = host.clone();
    let template = move |call: NativeCallContext,
                         path: &str,
                         tpl: &str,
                         vars: Map,
                         mode: Option<u32>,
                         owner: Owner,
                         become_: bool| {
        let text = recipe_file(&call, &h, tpl)?;
        let (content, show) = render(&call, &h, tpl, &text, &vars)?;
        h.check_scope(&call, "fs::template", path, None, false)?;
        h.step_as(&call, become_, |c| {
            owned(c, path, &owner, |c| {
                op::file(c, "fs::template", path, content.as_bytes(), mode, show)
            })
        })
    };
    let t2 = template.clone();
    m.set_native_fn(
        "template",
        move |call: NativeCallContext, path: &str, tpl: &str, vars: Map| {
            t2(call, path, tpl, vars, None, (None, None), false)
        },
    );
    m.set_native_fn(
        "template",
        move |call: NativeCallContext, path: &str, tpl: &str, vars: Map, opts: Map| {
            check_keys(
                &call,
                "fs::template",
                &opts,
                &["mode", "owner", "group", "become"],
            )?;
            let mode = opt_mode(&call, &opts)?;
            let owner = opt_owner(&call, &opts)?;
            let become_ = opt_bool(&call, &opts, "become", false)?;
            template(call, path, tpl, vars, mode, owner, become_)
        },
    );

    let h = host.clone();
    let line = move |call: NativeCallContext, path: &str, text: &str, opts: Map| {
        check_keys(
            &call,
            "fs::line",
            &opts,
            &["regex", "state", "create", "become"],
        )?;
        let become_ = opt_bool(&call, &opts, "become", false)?;
        let regex = opt_str(&call, &opts, "regex")?
            .map(|r| {
                regex::Regex::new(&r).map_err(|e| err(&call, format!("fs::line: bad regex: {e}")))
            })
            .transpose()?;
        let state = match opt_str(&call, &opts, "state")?.as_deref() {
            None | Some("present") => LineState::Present,
            Some("absent") => LineState::Absent,
            Some(s) => {
                return Err(err(
                    &call,
                    format!("fs::line: state must be \"present\" or \"absent\", not {s:?}"),
                ))
            }
        };
        let spec = LineSpec {
            line: text.to_string(),
            regex,
            state,
            create: opt_bool(&call, &opts, "create", true)?,
        };
        h.check_scope(&call, "fs::line", path, None, false)?;
        h.warn_stringified(&format!("fs::line {path}: the line"), text.as_bytes());
        h.step_as(&call, become_, |c| op::line(c, path, &spec))
    };
    let l2 = line.clone();
    m.set_native_fn(
        "line",
        move |call: NativeCallContext, path: &str, text: &str| l2(call, path, text, Map::new()),
    );
    m.set_native_fn("line", line);
    // A line is shown in diffs and matched against the file's lines: no place for a
    // secret. Refused by name rather than as an unknown function.
    const LINE_SECRET: &str =
        "fs::line: the line cannot be a secret (fs::line shows the lines it changes); \
        write the whole file instead: fs::file(path, p.token), or a template with the secret \
        in its variables: fs::template(path, \"x.j2\", #{token: p.token}) (their diffs are hidden)";
    m.set_native_fn(
        "line",
        |call: NativeCallContext, _path: &str, _text: Secret| -> RResult<Map> {
            Err(err(&call, LINE_SECRET))
        },
    );
    m.set_native_fn(
        "line",
        |call: NativeCallContext, _path: &str, _text: Secret, _opts: Map| -> RResult<Map> {
            Err(err(&call, LINE_SECRET))
        },
    );

    let h = host.clone();
    m.set_native_fn(
        "link",
        move |call: NativeCallContext, path: &str, target: &str| {
            h.check_scope(&call, "fs::link", path, None, false)?;
            h.step(&call, |c| op::link(c, path, target))
        },
    );
    let h = host.clone();
    m.set_native_fn(
        "copy",
        move |call: NativeCallContext, src: &str, dest: &str| {
            h.check_scope(&call, "fs::copy", dest, None, false)?;
            h.step(&call, |c| op::copy(c, src, dest, None))
        },
    );
    let h = host.clone();
    m.set_native_fn(
        "copy",
        move |call: NativeCallContext, src: &str, dest: &str, opts: Map| {
            check_keys(
                &call,
                "fs::copy",
                &opts,
                &["mode", "owner", "group", "become"],
            )?;
            let mode = opt_mode(&call, &opts)?;
            let owner = opt_owner(&call, &opts)?;
            let become_ = opt_bool(&call, &opts, "become", false)?;
            h.check_scope(&call, "fs::copy", dest, None, false)?;
            h.step_as(&call, become_, |c| {
                owned(c, dest, &owner, |c| op::copy(c, src, dest, mode))
            })
        },
    );
    let h = host.clone();
    m.set_native_fn(
        "rename",
        move |call: NativeCallContext, from: &str, to: &str| {
            // A directory moves with its contents: they leave `from` and appear in `to`.
            h.check_scope(&call, "fs::rename", from, Some(from), false)?;
            h.check_scope(&call, "fs::rename", to, Some(from), false)?;
            h.step(&call, |c| op::rename(c, from, to))
        },
    );
    let h = host.clone();
    m.set_native_fn("remove", move |call: NativeCallContext, path: &str| {
        h.check_scope(&call, "fs::remove", path, Some(path), false)?;
        h.step(&call, |c| op::remove(c, path))
    });
    let h = host.clone();
    m.set_native_fn(
        "remove",
        move |call: NativeCallContext, path: &str, opts: Map| {
            check_keys(&call, "fs::remove", &opts, &["backup"])?;
            let backup = opt_bool(&call, &opts, "backup", true)?;
            h.check_scope(&call, "fs::remove", path, Some(path), false)?;
            h.step(&call, |c| op::remove_with(c, path, backup))
        },
    );
    let h = host.clone();
    m.set_native_fn(
        "chmod",
        move |call: NativeCallContext, path: &str, mode: Dynamic| {
            let mode = mode_of(&call, &mode)?;
            h.check_scope(&call, "fs::chmod", path, None, true)?;
            h.step(&call, |c| op::chmod(c, path, mode))
        },
    );
    let h = host.clone();
    m.set_native_fn(
        "chown",
        move |call: NativeCallContext, path: &str, owner: &str, group: &str| {
            h.check_scope(&call, "fs::chown", path, None, true)?;
            let uid = (!owner.is_empty())
                .then(|| h.fact(&call, |c| crate::ops::user::uid_of(c, owner)))
                .transpose()?;
            let gid = (!group.is_empty())
                .then(|| h.fact(&call, |c| crate::ops::user::gid_of(c, group)))
                .transpose()?;
            h.step(&call, |c| op::chown(c, path, uid, gid))
        },
    );

    // Facts: read-only, never a step.
    let h = host.clone();
    m.set_native_fn("exists", move |call: NativeCallContext, path: &str| {
        h.fact(&call, |c| Ok(c.target.stat(path)?.is_some()))
    });
    let h = host.clone();
    m.set_native_fn("read", move |call: NativeCallContext, path: &str| {
        let text = h.fact(&call, |c| {
            Ok(String::from_utf8_lossy(&c.target.read(path)?).into_owned())
        })?;
        // Content that holds a secret of the run is a secret itself: reading a file
        // back is no way around `***` (nor into a command line).
        Ok(if h.redact(&text) != text {
            Dynamic::from(Secret::new(text))
        } else {
            Dynamic::from(text)
        })
    });
    let h = host.clone();
    m.set_native_fn("size", move |call: NativeCallContext, path: &str| {
        h.fact(&call, |c| {
            Ok(c.target.stat(path)?.map(|m| m.size as i64).unwrap_or(0))
        })
    });
    let h = host.clone();
    m.set_native_fn("stat", move |call: NativeCallContext, path: &str| {
        h.fact(&call, |c| {
            let mut out = Map::new();
            let meta = c.target.stat(path)?;
            out.insert("exists".into(), meta.is_some().into());
            if let Some(meta) = meta {
                out.insert("type".into(), meta.kind.as_str().into());
                out.insert("size".into(), (meta.size as i64).into());
                out.insert("mode".into(), (meta.mode as i64).into());
                out.insert("uid".into(), (meta.uid as i64).into());
                out.insert("gid".into(), (meta.gid as i64).into());
                out.insert("mtime".into(), meta.mtime.into());
                if meta.kind == Kind::Symlink {
                    out.insert("target".into(), c.target.read_link(path)?.into());
                }
            }
            Ok(out)
        })
    });
    let h = host.clone();
    m.set_native_fn("glob", move |call: NativeCallContext, pattern: &str| {
        h.fact(&call, |c| {
            Ok(op::glob(c.target.as_ref(), pattern)?
                .into_iter()
                .map(Dynamic::from)
                .collect::<Array>())
        })
    });
    let h = host.clone();
    m.set_native_fn("free", move |call: NativeCallContext, path: &str| {
        h.fact(&call, |c| {
            Ok(super::facts::free(c.target.as_ref(), path)?.min(i64::MAX as u64) as i64)
        })
    });
    let h = host;
    m.set_native_fn("list", move |call: NativeCallContext, path: &str| {
        h.fact(&call, |c| {
            Ok(c.target
                .list_dir(path)?
                .into_iter()
                .map(Dynamic::from)
                .collect::<Array>())
        })
    });

    engine.register_static_module("fs", m.into());
}
