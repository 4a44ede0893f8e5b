//! File-system operations: `fs::dir`, `fs::file`, `fs::line`, `fs::link`, `fs::copy`,
//! `fs::rename`, `fs::remove`, `fs::chmod`, `fs::chown`, and the read-only facts
//! `fs::glob` and friends.

use globset::GlobBuilder;
use regex::Regex;

use super::{mkdir_p, unified_diff, Ctx, OpError, OpResult, StepReport};
use crate::journal::undo::Undo;
use crate::transport::{join, parent, Kind, Meta, Target};

fn invalid(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

/// Ensure a directory exists (with its parents) with `mode` when given.
pub fn dir(ctx: &Ctx, path: &str, mode: Option<u32>) -> OpResult<StepReport> {
    const OP: &str = "fs::dir";
    let t = ctx.target.as_ref();
    match t.stat(path)? {
        Some(m) if m.kind == Kind::Dir => match mode {
            Some(want) if want != m.mode => {
                ctx.will(
                    OP,
                    Undo::Chmod {
                        path: path.into(),
                        mode: m.mode,
                    },
                )?;
                t.chmod(path, want)?;
                let mut r = StepReport::changed(OP, path, vec![path.into()]);
                r.diff = Some(format!("mode {:o} -> {want:o}\n", m.mode));
                Ok(r)
            }
            _ => Ok(StepReport::unchanged(OP, path)),
        },
        Some(m) => Err(invalid(format!(
            "{path} exists and is a {}, not a directory",
            m.kind.as_str()
        ))),
        None => {
            // Journal every directory mkdir -p will create, outermost first, so the
            // reverse replay removes the innermost first.
            let created = missing_dirs(t, path)?;
            for d in &created {
                ctx.will(OP, Undo::RemoveDir { path: d.clone() })?;
            }
            mkdir_p(t, path, mode.unwrap_or(0o755))?;
            Ok(StepReport::changed(OP, path, created))
        }
    }
}

fn missing_dirs(t: &dyn Target, path: &str) -> OpResult<Vec<String>> {
    let mut missing = Vec::new();
    let mut p = path.trim_end_matches('/').to_string();
    while t.stat(&p)?.is_none() {
        missing.push(p.clone());
        let up = parent(&p).to_string();
        if up == p || up == "." {
            break;
        }
        p = up;
    }
    missing.reverse();
    Ok(missing)
}

/// Ensure a regular file has exactly `content`, and `mode` when given (a new file
/// gets 0644). `show_diff` is false for secret content: the diff would reveal it.
pub fn file(
    ctx: &Ctx,
    op: &'static str,
    path: &str,
    content: &[u8],
    mode: Option<u32>,
    show_diff: bool,
) -> OpResult<StepReport> {
    let t = ctx.target.as_ref();
    let meta = t.stat(path)?;
    let old = match &meta {
        None => None,
        Some(m) if m.kind == Kind::File => Some(t.read(path)?),
        Some(m) => {
            return Err(invalid(format!(
            "{path} is a {}; {op} only replaces regular files (remove it first with fs::remove)",
            m.kind.as_str()
        )))
        }
    };
    let want_mode = mode.or(meta.as_ref().map(|m| m.mode)).unwrap_or(0o644);
    let content_changed = old.as_deref() != Some(content);
    let mode_changed = meta.as_ref().is_some_and(|m| m.mode != want_mode);
    if !content_changed && !mode_changed {
        return Ok(StepReport::unchanged(op, path));
    }
    let mut report = StepReport::changed(op, path, vec![path.into()]);
    let mut diff = String::new();
    if content_changed {
        if show_diff {
            diff.push_str(&unified_diff(path, old.as_deref(), content));
        } else {
            diff.push_str(super::SECRET_DIFF);
        }
    }
    if let Some(m) = meta.as_ref().filter(|m| m.mode != want_mode) {
        diff.push_str(&format!("mode {:o} -> {want_mode:o}\n", m.mode));
    }
    report.diff = Some(diff);
    match (meta, content_changed) {
        (Some(m), true) => {
            ctx.will(op, ctx.restore_undo(path, m, old.as_deref())?)?;
            t.write(path, content, want_mode)?;
            ctx.wrote(path, content);
        }
        (Some(m), false) => {
            ctx.will(
                op,
                Undo::Chmod {
                    path: path.into(),
                    mode: m.mode,
                },
            )?;
            t.chmod(path, want_mode)?;
            ctx.wrote(path, content);
        }
        (None, _) => {
            ctx.will(op, Undo::Remove { path: path.into() })?;
            t.write(path, content, want_mode)?;
            ctx.wrote(path, content);
        }
    }
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineState {
    Present,
    Absent,
}

pub struct LineSpec {
    pub line: String,
    pub regex: Option<Regex>,
    pub state: LineState,
    /// Create the file (0644) when it is missing; otherwise a missing file is an error.
    pub create: bool,
}

/// Ensure one line is present (replacing the last line matching `regex`, else
/// appending) or that no line matching it (or equal to it) is left.
pub fn line(ctx: &Ctx, path: &str, spec: &LineSpec) -> OpResult<StepReport> {
    const OP: &str = "fs::line";
    let t = ctx.target.as_ref();
    let old = match t.stat(path)? {
        None if spec.state == LineState::Absent => return Ok(StepReport::unchanged(OP, path)),
        None if !spec.create => {
            return Err(invalid(format!(
                "{path} does not exist (pass create: true to create it)"
            )))
        }
        None => String::new(),
        Some(_) => String::from_utf8(t.read(path)?)
            .map_err(|_| invalid(format!("{path} is not UTF-8 text")))?,
    };
    let matches = |l: &str| match &spec.regex {
        Some(re) => re.is_match(l),
        None => l == spec.line,
    };
    let mut lines: Vec<&str> = old.lines().collect();
    match spec.state {
        LineState::Absent => lines.retain(|l| !matches(l)),
        LineState::Present => match lines.iter().rposition(|l| matches(l)) {
            Some(i) => lines[i] = &spec.line,
            None if lines.contains(&spec.line.as_str()) => {}
            None => lines.push(&spec.line),
        },
    }
    let mut new = lines.join("\n");
    if !new.is_empty() {
        new.push('\n');
    }
    if new == old {
        return Ok(StepReport::unchanged(OP, path));
    }
    file(ctx, OP, path, new.as_bytes(), None, true)
}

/// Ensure `path` is a symlink to `link_target`.
pub fn link(ctx: &Ctx, path: &str, link_target: &str) -> OpResult<StepReport> {
    const OP: &str = "fs::link";
    let t = ctx.target.as_ref();
    let subject = format!("{path} -> {link_target}");
    match t.stat(path)? {
        Some(m) if m.kind == Kind::Symlink => {
            let old = t.read_link(path)?;
            if old == link_target {
                return Ok(StepReport::unchanged(OP, subject));
            }
            ctx.will(
                OP,
                Undo::Relink {
                    path: path.into(),
                    target: old.clone(),
                },
            )?;
            replace_link(t, path, link_target)?;
            let mut r = StepReport::changed(OP, subject, vec![path.into()]);
            r.diff = Some(format!("-> {old}\n+> {link_target}\n"));
            Ok(r)
        }
        Some(m) if m.kind == Kind::File => {
            ctx.will(OP, ctx.restore_undo(path, m, None)?)?;
            replace_link(t, path, link_target)?;
            Ok(StepReport::changed(OP, subject, vec![path.into()]))
        }
        Some(m) => Err(invalid(format!(
            "{path} is a {}; fs::link will not replace it",
            m.kind.as_str()
        ))),
        None => {
            ctx.will(OP, Undo::Remove { path: path.into() })?;
            t.symlink(link_target, path)?;
            Ok(StepReport::changed(OP, subject, vec![path.into()]))
        }
    }
}

/// Switch a link atomically: create it beside, then rename over (what `ln -sfn` does
/// not do, and what a release switch needs so no request sees a missing link).
fn replace_link(t: &dyn Target, path: &str, link_target: &str) -> OpResult<()> {
    let tmp = join(
        parent(path),
        &format!(".tend-link-{}", path.rsplit('/').next().unwrap_or("l")),
    );
    if t.stat(&tmp)?.is_some() {
        t.remove_file(&tmp)?;
    }
    t.symlink(link_target, &tmp)?;
    t.rename(&tmp, path)?;
    Ok(())
}

/// Ensure `dest` is a copy of the regular file `src` (on the same target).
pub fn copy(ctx: &Ctx, src: &str, dest: &str, mode: Option<u32>) -> OpResult<StepReport> {
    const OP: &str = "fs::copy";
    let t = ctx.target.as_ref();
    let m = t
        .stat(src)?
        .ok_or_else(|| invalid(format!("{src} does not exist")))?;
    if m.kind != Kind::File {
        return Err(invalid(format!(
            "{src} is a {}, not a file",
            m.kind.as_str()
        )));
    }
    let content = t.read(src)?;
    let mut r = file(ctx, OP, dest, &content, Some(mode.unwrap_or(m.mode)), true)?;
    r.subject = format!("{src} -> {dest}");
    Ok(r)
}

/// Rename `from` to `to`. Already done (from gone, to present) counts as no change,
/// so a second run is a no-op. An existing `to` file is replaced and saved for undo.
pub fn rename(ctx: &Ctx, from: &str, to: &str) -> OpResult<StepReport> {
    const OP: &str = "fs::rename";
    let t = ctx.target.as_ref();
    let subject = format!("{from} -> {to}");
    let src = t.stat(from)?;
    let dst = t.stat(to)?;
    let Some(src) = src else {
        if dst.is_some() {
            return Ok(StepReport::unchanged(OP, subject));
        }
        return Err(invalid(format!("{from} does not exist")));
    };
    // A directory moves with everything in it: each of those paths changes too.
    let inside = if src.kind == Kind::Dir {
        descendants(t, from)?
    } else {
        Vec::new()
    };
    if let Some(d) = dst {
        match d.kind {
            Kind::File | Kind::Symlink => save_for_undo(ctx, OP, to, d)?,
            _ => {
                return Err(invalid(format!(
                    "{to} exists and is a {}; not replacing it",
                    d.kind.as_str()
                )))
            }
        }
    }
    ctx.will(
        OP,
        Undo::Rename {
            from: from.into(),
            to: to.into(),
        },
    )?;
    t.rename(from, to)?;
    let mut paths = vec![from.to_string()];
    paths.extend(inside.iter().map(|rel| join(from, rel)));
    paths.push(to.to_string());
    paths.extend(inside.iter().map(|rel| join(to, rel)));
    Ok(StepReport::changed(OP, subject, paths))
}

/// Every path below directory `dir`, relative to it (symlinks are not followed).
fn descendants(t: &dyn Target, dir: &str) -> OpResult<Vec<String>> {
    let mut out = Vec::new();
    for name in t.list_dir(dir)? {
        let child = join(dir, &name);
        if matches!(t.stat(&child)?, Some(m) if m.kind == Kind::Dir) {
            out.extend(descendants(t, &child)?.into_iter().map(|r| join(&name, &r)));
        }
        out.push(name);
    }
    Ok(out)
}

/// Journal how to bring back `path` (a file or symlink about to be replaced or removed).
fn save_for_undo(ctx: &Ctx, op: &str, path: &str, m: Meta) -> OpResult<()> {
    let undo = match m.kind {
        Kind::Symlink => Undo::Relink {
            path: path.into(),
            target: ctx.target.read_link(path)?,
        },
        _ => ctx.restore_undo(path, m, None)?,
    };
    ctx.will(op, undo)
}

/// Ensure `path` does not exist. A directory is removed with its contents, each
/// file saved first, so rollback brings the whole tree back.
pub fn remove(ctx: &Ctx, path: &str) -> OpResult<StepReport> {
    remove_with(ctx, path, true)
}

/// [`remove`]; with `backup` false nothing is saved: the space is freed at once, and
/// the journal holds a barrier, so rollback says this step cannot be undone.
pub fn remove_with(ctx: &Ctx, path: &str, backup: bool) -> OpResult<StepReport> {
    const OP: &str = "fs::remove";
    let t = ctx.target.as_ref();
    let Some(m) = t.stat(path)? else {
        return Ok(StepReport::unchanged(OP, path));
    };
    let mut paths = Vec::new();
    if backup {
        remove_tree(ctx, OP, path, m, &mut paths)?;
        return Ok(StepReport::changed(OP, path, paths));
    }
    ctx.will(
        OP,
        Undo::Barrier {
            what: format!("fs::remove {path} with backup: false (deleted, not saved)"),
        },
    )?;
    delete_tree(t, path, m, &mut paths)?;
    let mut r = StepReport::changed(OP, path, paths);
    r.reversible = false;
    Ok(r)
}

/// Delete `path` (a directory with its contents) without saving anything.
fn delete_tree(t: &dyn Target, path: &str, m: Meta, removed: &mut Vec<String>) -> OpResult<()> {
    match m.kind {
        Kind::Dir => {
            for name in t.list_dir(path)? {
                let child = join(path, &name);
                if let Some(cm) = t.stat(&child)? {
                    delete_tree(t, &child, cm, removed)?;
                }
            }
            t.remove_dir(path)?;
        }
        Kind::File | Kind::Symlink => t.remove_file(path)?,
        Kind::Other => {
            return Err(invalid(format!(
                "{path} is a special file; fs::remove will not remove it"
            )))
        }
    }
    removed.push(path.into());
    Ok(())
}

fn remove_tree(
    ctx: &Ctx,
    op: &str,
    path: &str,
    m: Meta,
    removed: &mut Vec<String>,
) -> OpResult<()> {
    let t = ctx.target.as_ref();
    match m.kind {
        Kind::Dir => {
            for name in t.list_dir(path)? {
                let child = join(path, &name);
                if let Some(cm) = t.stat(&child)? {
                    remove_tree(ctx, op, &child, cm, removed)?;
                }
            }
            // Recorded after its children, so the reverse replay recreates the
            // directory before restoring anything into it.
            ctx.will(
                op,
                Undo::MakeDir {
                    path: path.into(),
                    meta: m,
                },
            )?;
            t.remove_dir(path)?;
        }
        Kind::File if ctx.stash(op, path)? => {}
        Kind::File | Kind::Symlink => {
            save_for_undo(ctx, op, path, m)?;
            t.remove_file(path)?;
        }
        Kind::Other => {
            return Err(invalid(format!(
                "{path} is a special file; fs::remove will not remove it"
            )))
        }
    }
    removed.push(path.into());
    Ok(())
}

/// Ensure the permission bits of `path`.
pub fn chmod(ctx: &Ctx, path: &str, mode: u32) -> OpResult<StepReport> {
    const OP: &str = "fs::chmod";
    let t = ctx.target.as_ref();
    let m = t
        .stat(path)?
        .ok_or_else(|| invalid(format!("{path} does not exist")))?;
    if m.kind == Kind::Symlink {
        // chmod would follow the link and change (and on rollback, reset) its target.
        return Err(invalid(format!(
            "{path} is a symlink; a symlink has no mode of its own: chmod its target {}",
            t.read_link(path)?
        )));
    }
    if m.mode == mode {
        return Ok(StepReport::unchanged(OP, path));
    }
    ctx.will(
        OP,
        Undo::Chmod {
            path: path.into(),
            mode: m.mode,
        },
    )?;
    t.chmod(path, mode)?;
    let mut r = StepReport::changed(OP, path, vec![path.into()]);
    r.diff = Some(format!("mode {:o} -> {mode:o}\n", m.mode));
    Ok(r)
}

/// Ensure the owner of `path`; `None` leaves that id as it is.
pub fn chown(ctx: &Ctx, path: &str, uid: Option<u32>, gid: Option<u32>) -> OpResult<StepReport> {
    const OP: &str = "fs::chown";
    let t = ctx.target.as_ref();
    let m = t
        .stat(path)?
        .ok_or_else(|| invalid(format!("{path} does not exist")))?;
    let (u, g) = (uid.unwrap_or(m.uid), gid.unwrap_or(m.gid));
    if (u, g) == (m.uid, m.gid) {
        return Ok(StepReport::unchanged(OP, path));
    }
    ctx.will(
        OP,
        Undo::Chown {
            path: path.into(),
            uid: m.uid,
            gid: m.gid,
        },
    )?;
    t.chown(path, u, g)?;
    let mut r = StepReport::changed(OP, path, vec![path.into()]);
    r.diff = Some(format!("owner {}:{} -> {u}:{g}\n", m.uid, m.gid));
    Ok(r)
}

/// Ensure the owner of what a step just made or kept at `path` (`owner:`/`group:`
/// of `fs::file`, `fs::dir`…), as part of that step: its report says so.
pub fn own(
    ctx: &Ctx,
    report: &mut StepReport,
    path: &str,
    uid: Option<u32>,
    gid: Option<u32>,
) -> OpResult<()> {
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    let r = chown(ctx, path, uid, gid)?;
    if r.changed {
        report.changed = true;
        if !report.paths.iter().any(|p| p == path) {
            report.paths.push(path.into());
        }
        if let Some(d) = r.diff {
            report.diff.get_or_insert_with(String::new).push_str(&d);
        }
    }
    Ok(())
}

/// Paths matching a shell glob (`*`, `?`, `[..]`, `{a,b}`, `**`), sorted. Matching is
/// done per path component against directory listings of the target.
pub fn glob(t: &dyn Target, pattern: &str) -> OpResult<Vec<String>> {
    let absolute = pattern.starts_with('/');
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let start = if absolute {
        "/".to_string()
    } else {
        ".".to_string()
    };
    let mut found = Vec::new();
    walk(t, &start, &parts, &mut found)?;
    let mut out: Vec<String> = found
        .into_iter()
        .map(|p| {
            if absolute {
                p
            } else {
                p.trim_start_matches("./").to_string()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

fn is_pattern(part: &str) -> bool {
    part.contains(['*', '?', '[', '{'])
}

fn walk(t: &dyn Target, dir: &str, parts: &[&str], out: &mut Vec<String>) -> OpResult<()> {
    let Some((first, rest)) = parts.split_first() else {
        out.push(dir.to_string());
        return Ok(());
    };
    let is_dir =
        |p: &str| -> OpResult<bool> { Ok(matches!(t.stat(p)?, Some(m) if m.kind == Kind::Dir)) };
    if *first == "**" {
        walk(t, dir, rest, out)?; // zero directories
        if is_dir(dir)? {
            for name in t.list_dir(dir)? {
                let child = join(dir, &name);
                if is_dir(&child)? {
                    walk(t, &child, parts, out)?;
                }
            }
        }
        return Ok(());
    }
    if !is_pattern(first) {
        let child = join(dir, first);
        if t.stat(&child)?.is_some() {
            walk(t, &child, rest, out)?;
        }
        return Ok(());
    }
    if !is_dir(dir)? {
        return Ok(());
    }
    let matcher = GlobBuilder::new(first)
        .literal_separator(true)
        .build()
        .map_err(|e| invalid(format!("bad glob {first:?}: {e}")))?
        .compile_matcher();
    for name in t.list_dir(dir)? {
        // Like the shell: `*` does not match dot files unless the pattern says so.
        if name.starts_with('.') && !first.starts_with('.') {
            continue;
        }
        if matcher.is_match(&name) {
            walk(t, &join(dir, &name), rest, out)?;
        }
    }
    Ok(())
}
