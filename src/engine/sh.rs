//! `sh(cmd, opts)` and `archive::compress`.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, Engine, FnPtr, Map, Module, NativeCallContext};

use super::{err, HostContext, RResult};
use crate::event::Event;
use crate::ops::archive::{self, Format};
use crate::ops::sh::{sh, ShSpec};
use crate::recipe::params::parse_duration;
use crate::secret::{Secret, REDACTED};

const SH_OPTIONS: &[&str] = &[
    "become",
    "changes",
    "dry_run",
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
    "in_scope",
    "changed_when",
    "failed_when",
];

/// `changed_when` / `failed_when`: a closure over the result (`|r| …`) or a plain
/// bool. They judge a command that ran; one that did not (a dry-run of a command
/// that is not `read_only`) stays unknown.
#[derive(Clone, Default)]
struct Judge {
    changed_when: Option<FnPtr>,
    failed_when: Option<FnPtr>,
}

/// A `changed_when` / `failed_when` value: a closure, or a bool standing for the
/// closure that always says so.
enum When {
    Closure(FnPtr),
    Always(bool),
}

fn when(call: &NativeCallContext, key: &str, v: &Dynamic) -> RResult<When> {
    if let Ok(b) = v.as_bool() {
        return Ok(When::Always(b));
    }
    v.clone().try_cast::<FnPtr>().map(When::Closure).ok_or_else(|| {
        err(
            call,
            format!("sh: `{key}` must be a closure over the result, like |r| r.stdout.contains(\"upgraded\"), or true/false"),
        )
    })
}

impl Judge {
    /// Apply the closures to what the command did; `Err` fails the step.
    fn apply(
        &self,
        call: &NativeCallContext,
        ctx: &crate::ops::Ctx,
        spec: &ShSpec,
        mut r: crate::ops::StepReport,
    ) -> crate::ops::OpResult<crate::ops::StepReport> {
        let Some(code) = r.code.filter(|_| !r.unknown) else {
            return Ok(r);
        };
        let ask = |key: &str, f: &FnPtr, r: &crate::ops::StepReport| {
            f.call_within_context::<bool>(call, (super::report_map(r),))
                .map_err(|e| {
                    crate::ops::OpError::Invalid(format!("sh `{}`: {key}: {e}", spec.command))
                })
        };
        if let Some(f) = &self.failed_when {
            if ask("failed_when", f, &r)? {
                return Err(crate::ops::OpError::Invalid(format!(
                    "`{}` failed: its failed_when is true (exit status {code})",
                    spec.command
                )));
            }
        }
        if let Some(f) = &self.changed_when {
            let changed = ask("changed_when", f, &r)?;
            if r.changed && !changed {
                // Nothing to undo: its record must not make a rollback run the undo
                // or report a barrier.
                ctx.unrecord_step()?;
                r.reversible = true;
            }
            r.changed = changed;
        }
        Ok(r)
    }
}

/// With secrets in the run, refuse a plain string that holds `***`: a secret put into
/// a string becomes that, and in a command `***` is a shell glob, not the value.
fn no_stringified(call: &NativeCallContext, guard: bool, what: &str, text: &str) -> RResult<()> {
    if guard && text.contains(REDACTED) {
        return Err(err(
            call,
            format!(
                "sh: the {what} contains `***`, which is what a secret becomes when it is put into a string \
                 (so that its value never reaches a command line); pass the secret itself through the \
                 environment or stdin: sh(\"cmd \\\"$TOKEN\\\"\", #{{env: #{{TOKEN: p.token}}}}) or #{{stdin: p.token}}"
            ),
        ));
    }
    Ok(())
}

fn text_or_secret(
    call: &NativeCallContext,
    guard: bool,
    key: &str,
    v: &Dynamic,
) -> RResult<String> {
    if let Some(s) = v.clone().try_cast::<Secret>() {
        return Ok(s.expose().to_string());
    }
    if v.is_string() || v.is_int() || v.is_bool() || v.is_float() {
        let text = v.to_string();
        no_stringified(call, guard, &format!("value of `{key}`"), &text)?;
        return Ok(text);
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
        .map_err(|q| {
            err(
                call,
                format!(
                    "sh: `{key}` must be a duration like \"30s\"; {s:?} is {}",
                    q.describe("a duration", "seconds")
                ),
            )
        })
}

/// `timeout:` as [`duration`], but a negative or zero one is refused rather than
/// taken as "time out at once".
fn timeout(call: &NativeCallContext, v: &Dynamic) -> RResult<Duration> {
    let d = match v.as_int() {
        Ok(i) if i <= 0 => Duration::ZERO,
        _ => duration(call, "timeout", v)?,
    };
    crate::engine::check_timeout(d).map_err(|why| {
        err(
            call,
            format!("sh: `timeout` of {v}: {why} (seconds, or like \"30s\")"),
        )
    })
}

/// `changes: ["/etc/app/**", "/var/lib/app/db.conf"]` (or one string): absolute paths
/// or globs.
fn changes(call: &NativeCallContext, v: &Dynamic) -> RResult<Vec<String>> {
    let items: Vec<Dynamic> = if v.is_string() {
        vec![v.clone()]
    } else {
        v.clone().try_cast::<rhai::Array>().ok_or_else(|| {
            err(
                call,
                "sh: `changes` must be a list of paths, like [\"/etc/app/**\"]",
            )
        })?
    };
    let mut out = Vec::new();
    for item in items {
        let p = item
            .try_cast::<String>()
            .ok_or_else(|| err(call, "sh: each path in `changes` must be a string"))?;
        if !p.starts_with('/') {
            return Err(err(
                call,
                format!("sh: `changes` path {p:?} must be absolute"),
            ));
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err(err(
            call,
            "sh: `changes` is empty; name the paths the command may change",
        ));
    }
    Ok(out)
}

/// The command's spec, and whether the recipe marked it `in_scope: true`.
/// `guard`: the run has secrets; refuse command text with `***` in it.
fn spec(
    call: &NativeCallContext,
    guard: bool,
    command: &str,
    opts: &Map,
) -> RResult<(ShSpec, bool, Judge)> {
    no_stringified(call, guard, "command", command)?;
    let mut spec = ShSpec {
        command: command.to_string(),
        ..Default::default()
    };
    let mut in_scope = false;
    let mut judge = Judge::default();
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
            "undo" => {
                let undo = s()?;
                no_stringified(call, guard, "undo command", &undo)?;
                spec.undo = Some(undo)
            }
            "read_only" => spec.read_only = b()?,
            "creates" => spec.creates = Some(s()?),
            "unless" => {
                let unless = s()?;
                no_stringified(call, guard, "unless command", &unless)?;
                spec.unless = Some(unless)
            }
            "allow_fail" => spec.allow_fail = b()?,
            "become" => spec.become_ = b()?,
            "in_scope" => in_scope = b()?,
            "changes" => spec.changes = changes(call, v)?,
            "dry_run" => match s()?.as_str() {
                "sandbox" => spec.sandbox = true,
                "skip" => spec.sandbox = false,
                other => {
                    return Err(err(
                        call,
                        format!("sh: `dry_run` must be \"sandbox\" or \"skip\", not {other:?}"),
                    ))
                }
            },
            // `changed_when: false` vouches that the command changes nothing: it is
            // `read_only` (so it runs in a dry-run too, and leaves no record).
            "changed_when" => match when(call, k, v)? {
                When::Always(false) => spec.read_only = true,
                When::Always(true) => {}
                When::Closure(f) => judge.changed_when = Some(f),
            },
            // The closure, not the exit status, decides whether the step failed.
            "failed_when" => match when(call, k, v)? {
                When::Always(fail) => {
                    if !fail {
                        spec.allow_fail = true
                    } else {
                        return Err(err(call, "sh: `failed_when: true` would fail every time; give a closure like |r| r.code > 1"));
                    }
                }
                When::Closure(f) => judge.failed_when = Some(f),
            },
            "timeout" => spec.timeout = Some(timeout(call, v)?),
            "delay" => spec.delay = duration(call, k, v)?,
            "retries" => {
                spec.retries = v
                    .as_int()
                    .map_err(|_| err(call, "sh: `retries` must be an int"))?
                    .clamp(0, 100) as u32
            }
            "stdin" => spec.stdin = Some(text_or_secret(call, guard, k, v)?.into_bytes()),
            "env" => {
                let env = v
                    .clone()
                    .try_cast::<Map>()
                    .ok_or_else(|| err(call, "sh: `env` must be a map like #{NAME: \"value\"}"))?;
                for (name, value) in env {
                    spec.env.push((
                        name.to_string(),
                        text_or_secret(call, guard, &name, &value)?,
                    ));
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
    if judge.failed_when.is_some() {
        spec.allow_fail = true;
    }
    if !spec.changes.is_empty() && spec.undo.is_some() {
        return Err(err(
            call,
            "sh: give `changes` or `undo`, not both: with `changes` tend records the paths \
             and a rollback restores them; an undo command on top would undo twice",
        ));
    }
    if spec.sandbox && spec.changes.is_empty() {
        return Err(err(
            call,
            "sh: `dry_run: \"sandbox\"` needs `changes`: the sandbox overlays the paths the \
             command declares, and its plan is what it would change there",
        ));
    }
    if !spec.changes.is_empty() && spec.read_only {
        return Err(err(
            call,
            "sh: `changes` and `read_only: true` contradict each other",
        ));
    }
    Ok((spec, in_scope, judge))
}

/// `sh` in a recipe with a declared write scope: tend cannot know what a command
/// changes, so only commands the recipe vouches for (`in_scope: true`, or
/// `read_only: true`) run. Any other is flagged in a dry-run (`outside_scope` in its
/// step report, and a warning) and refused in a real run, before it starts.
fn run_sh(
    h: &HostContext,
    call: &NativeCallContext,
    spec: &ShSpec,
    in_scope: bool,
    judge: &Judge,
) -> RResult<Map> {
    if spec.become_ && h.become_forbidden() {
        return Err(err(
            call,
            "sh: `become: true`, but the recipe declares `//! become: false`",
        ));
    }
    // Inside `become(|| …)` a command is a `become: true` one.
    let root_spec;
    let spec = if h.in_root_block() && !spec.become_ {
        root_spec = ShSpec {
            become_: true,
            ..spec.clone()
        };
        &root_spec
    } else {
        spec
    };
    let Some(scope) = h.scope() else {
        return h.step_login(call, |c| {
            sh(c, spec).and_then(|r| judge.apply(call, c, spec, r))
        });
    };
    if !spec.changes.is_empty() {
        // The command says what it changes: each path must be in the scope, and
        // what it really changed is checked against it afterwards.
        if let Some(p) = spec.changes.iter().find(|p| !scope.matches(p)) {
            return Err(err(
                call,
                h.redact(&format!(
                    "sh `{}`: `changes` path {p} is outside the recipe's write scope ({})",
                    spec.command,
                    scope.describe()
                )),
            ));
        }
        return h.step_login(call, |c| {
            sh(c, spec).and_then(|r| judge.apply(call, c, spec, r))
        });
    }
    if in_scope || spec.read_only {
        return h.step_login(call, |c| {
            sh(c, spec).and_then(|r| judge.apply(call, c, spec, r))
        });
    }
    let why = format!(
        "sh `{}`: the recipe declares a write scope ({}) and tend cannot tell what this command changes; \
         a scoped recipe runs only commands it marks `in_scope: true` (or `read_only: true`)",
        spec.command,
        scope.describe()
    );
    if !h.ctx.dry_run() {
        return Err(err(call, h.redact(&why)));
    }
    h.emit(Event::Log {
        host: h.host(),
        level: "warn".into(),
        message: h.redact(&format!("{why}; a real run refuses it")),
    });
    h.step_login(call, |c| {
        sh(c, spec).map(|mut r| {
            r.outside_scope = true;
            r
        })
    })
}

pub fn register(engine: &mut Engine, host: Arc<HostContext>) {
    let h = host.clone();
    engine.register_fn("sh", move |call: NativeCallContext, command: &str| {
        let (spec, in_scope, judge) = spec(&call, h.has_secrets(), command, &Map::new())?;
        run_sh(&h, &call, &spec, in_scope, &judge)
    });
    let h = host.clone();
    engine.register_fn(
        "sh",
        move |call: NativeCallContext, command: &str, opts: Map| {
            let (spec, in_scope, judge) = spec(&call, h.has_secrets(), command, &opts)?;
            run_sh(&h, &call, &spec, in_scope, &judge)
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
        // The file is replaced by its compressed copy: both paths change.
        host.check_scope(&call, "archive::compress", path, None, false)?;
        let dest = format!("{path}{}", format.extension());
        host.check_scope(&call, "archive::compress", &dest, None, false)?;
        host.step(&call, |c| archive::compress(c, path, format))
    };
    let c2 = compress.clone();
    m.set_native_fn("compress", move |call: NativeCallContext, path: &str| {
        c2(call, path, "gzip")
    });
    m.set_native_fn("compress", compress);
    engine.register_static_module("archive", m.into());
}
