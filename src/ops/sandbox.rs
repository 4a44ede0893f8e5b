//! The dry-run of `sh(cmd, #{changes: […], dry_run: "sandbox"})`: the command really
//! runs, but in a private mount namespace with no network, where each declared
//! directory is an overlay whose writes go to a throwaway upper layer. What the upper
//! layer holds afterwards is what the command would change; the overlay and its
//! namespace vanish with the command. Read through the [`Target`](crate::transport)
//! like everything else, so it works on the local machine and over SSH alike; the
//! host needs `unshare` and overlayfs (root, or user namespaces).
//!
//! A command that needs the network or a running service fails in there: the step is
//! then *unknown*, with the reason. So is every command once the plan holds changes
//! the machine does not (the sandbox sees the machine, not the plan).

use std::collections::BTreeSet;

use super::watch::{Declared, Seen};
use super::{sh::ShSpec, Ctx, OpError, OpResult, StepReport};
use crate::transport::{shell_quote, Divergence, ExecRequest, Kind, Target};

/// The directories to lay overlays on: each declared root that is a directory, else
/// its parent; none inside another.
fn mount_points(t: &dyn Target, declared: &Declared) -> OpResult<Vec<String>> {
    let mut dirs = BTreeSet::new();
    for root in declared.roots() {
        let dir = match t.stat(root)? {
            Some(m) if m.kind == Kind::Dir => root.clone(),
            _ => crate::transport::parent(root).to_string(),
        };
        if t.stat(&dir)?.is_none_or(|m| m.kind != Kind::Dir) {
            return Err(OpError::Invalid(format!(
                "sandbox dry-run: {dir} does not exist, so there is nothing to lay an overlay on"
            )));
        }
        dirs.insert(dir);
    }
    let all: Vec<String> = dirs.iter().cloned().collect();
    Ok(all
        .iter()
        .filter(|d| {
            !all.iter()
                .any(|o| o != *d && d.starts_with(&format!("{}/", o.trim_end_matches('/'))))
        })
        .cloned()
        .collect())
}

/// The shell that sets the sandbox up on the host and runs the command in it. Prints
/// the throwaway directory, then the command's exit status.
fn script(points: &[String], command: &str) -> String {
    let mut mounts = String::new();
    for (i, p) in points.iter().enumerate() {
        let p = shell_quote(p);
        mounts.push_str(&format!(
            "mkdir \"$T/u{i}\" \"$T/w{i}\" && mount -t overlay overlay -o \"lowerdir={p},upperdir=$T/u{i},workdir=$T/w{i}\" {p} || exit 97\n"
        ));
    }
    let inner = format!(
        "mount --make-rprivate / || exit 97\n{mounts}ip link set lo up 2>/dev/null\ncd / && sh -c {} >\"$T/out\" 2>\"$T/err\"\n",
        shell_quote(command)
    );
    format!(
        "command -v unshare >/dev/null || {{ echo 'no unshare on this host' >&2; exit 98; }}\n\
         T=$(mktemp -d /tmp/tend-sandbox.XXXXXX) || exit 98\n\
         echo \"$T\"\n\
         if [ \"$(id -u)\" = 0 ]; then U=''; else U='--user --map-root-user'; fi\n\
         T=\"$T\" unshare $U --mount --net --fork sh -c {} 2>\"$T/setup\"\n\
         echo \"$?\"\n",
        shell_quote(&format!("T=\"$T\"\n{inner}"))
    )
}

fn unknown(spec: &ShSpec, why: String) -> StepReport {
    let mut r = StepReport::unchanged("sh", spec.command.clone());
    r.unknown = true;
    r.reversible = true;
    r.stderr = Some(why);
    r
}

/// The plan of a declared command, from running it in the sandbox.
pub fn plan(ctx: &Ctx, spec: &ShSpec) -> OpResult<StepReport> {
    let t = ctx.target.as_ref();
    if t.divergence() != Divergence::None {
        return Ok(unknown(
            spec,
            "sandbox dry-run skipped: earlier steps of the plan changed things the machine \
             does not hold yet, and the sandbox would run the command without them"
                .into(),
        ));
    }
    let declared = Declared::new(&spec.changes)?;
    let points = mount_points(t, &declared)?;
    let mut req = ExecRequest::new(script(&points, &spec.command));
    req.env = spec.env.clone();
    req.become_ = spec.become_;
    req.timeout = ctx.cancel().bound(spec.timeout);
    req.cancel = Some(ctx.cancel().clone());
    let out = t.exec(&req)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let Some(tmp) = lines.next().filter(|l| l.starts_with("/tmp/tend-sandbox.")) else {
        return Ok(unknown(
            spec,
            format!(
                "sandbox dry-run not possible on {}: {}",
                ctx.host(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    };
    let tmp = tmp.to_string();
    let result = judge(ctx, spec, &declared, &points, &tmp, lines.next());
    // Not root, the overlay's work dirs belong to the namespace's root: removed from
    // inside such a namespace again.
    let q = shell_quote(&tmp);
    let mut cleanup = ExecRequest::new(format!(
        "if [ \"$(id -u)\" = 0 ]; then rm -rf {q}; else unshare --user --map-root-user rm -rf {q} || rm -rf {q}; fi"
    ));
    cleanup.become_ = spec.become_;
    let _ = t.exec(&cleanup);
    result
}

fn judge(
    ctx: &Ctx,
    spec: &ShSpec,
    declared: &Declared,
    points: &[String],
    tmp: &str,
    status: Option<&str>,
) -> OpResult<StepReport> {
    let t = ctx.target.as_ref();
    // The command's output as the sandbox kept it, for the report: not read when it
    // is larger than a report should carry (a command may print without end).
    const MAX_OUTPUT: u64 = 1024 * 1024;
    let read = |name: &str| {
        let path = crate::transport::join(tmp, name);
        match t.stat(&path) {
            Ok(Some(m)) if m.size > MAX_OUTPUT => {
                format!("({} bytes of output, not shown)", m.size)
            }
            _ => t
                .read(&path)
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_default(),
        }
    };
    match status.and_then(|s| s.trim().parse::<i32>().ok()) {
        Some(0) => {}
        Some(97) | None => {
            return Ok(unknown(
                spec,
                format!(
                    "sandbox dry-run not possible on {} (needs a private mount namespace \
                     and overlayfs): {}",
                    ctx.host(),
                    read("setup")
                ),
            ))
        }
        Some(code) => {
            return Ok(unknown(
                spec,
                format!(
                    "in the sandbox (no network, no changes kept) the command exited with \
                     {code}: {}; it may need what the sandbox lacks, so the plan cannot tell",
                    read("err")
                ),
            ))
        }
    }
    let mut created = Vec::new();
    let mut modified = Vec::new();
    let mut removed = Vec::new();
    for (i, point) in points.iter().enumerate() {
        let upper = crate::transport::join(tmp, &format!("u{i}"));
        compare(t, &upper, point, &mut created, &mut modified, &mut removed)?;
    }
    let mut outside: Vec<&String> = created
        .iter()
        .chain(&modified)
        .chain(&removed)
        .filter(|p| !declared.covers(p))
        .collect();
    outside.sort();
    if !outside.is_empty() {
        let shown: Vec<&str> = outside.iter().map(|s| s.as_str()).collect();
        return Err(OpError::Invalid(format!(
            "`{}` would change {} outside the paths it declares in `changes` ({}) \
             (seen in the sandbox dry-run)",
            spec.command,
            shown.join(", "),
            spec.changes.join(", ")
        )));
    }
    let mut r = super::sh::watched_report(spec, &created, &modified, &removed);
    r.stdout = Some(read("out"));
    r.stderr = Some(read("err"));
    r.code = Some(0);
    Ok(r)
}

/// What an upper layer holds, against the real directory it lay over.
fn compare(
    t: &dyn Target,
    upper: &str,
    real: &str,
    created: &mut Vec<String>,
    modified: &mut Vec<String>,
    removed: &mut Vec<String>,
) -> OpResult<()> {
    let mut names = t.list_dir(upper)?;
    names.sort();
    for name in names {
        let up = crate::transport::join(upper, &name);
        let path = crate::transport::join(real, &name);
        let Some(um) = t.stat(&up)? else { continue };
        let rm = t.stat(&path)?;
        match (um.kind, rm) {
            // A whiteout: the command removed it.
            (Kind::Other, Some(_)) if um.size == 0 => {
                removed.push(path.clone());
                removed.extend(everything_under(t, &path)?);
            }
            (Kind::Other, _) => {}
            (Kind::Dir, Some(m)) if m.kind == Kind::Dir => {
                if (um.mode, um.uid, um.gid) != (m.mode, m.uid, m.gid) {
                    modified.push(path.clone());
                }
                compare(t, &up, &path, created, modified, removed)?;
            }
            (Kind::Dir, _) => {
                created.push(path.clone());
                for p in everything_under(t, &up)? {
                    created.push(format!("{path}{}", &p[up.len()..]));
                }
            }
            (_, None) => created.push(path),
            (_, Some(m)) => {
                let seen = |meta: crate::transport::Meta, p: &str| -> OpResult<Seen> {
                    Ok(Seen {
                        sha256: if meta.kind == Kind::File {
                            Some(t.hash(p)?)
                        } else {
                            None
                        },
                        link: if meta.kind == Kind::Symlink {
                            Some(t.read_link(p)?)
                        } else {
                            None
                        },
                        meta,
                    })
                };
                if !seen(um, &up)?.same(&seen(m, &path)?) {
                    modified.push(path);
                }
            }
        }
    }
    Ok(())
}

fn everything_under(t: &dyn Target, dir: &str) -> OpResult<Vec<String>> {
    let mut out = Vec::new();
    if t.stat(dir)?.is_some_and(|m| m.kind == Kind::Dir) {
        for name in t.list_dir(dir)? {
            let p = crate::transport::join(dir, &name);
            out.push(p.clone());
            out.extend(everything_under(t, &p)?);
        }
    }
    Ok(out)
}
