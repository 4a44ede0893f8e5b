//! `sh`: an opaque command. tend cannot know what it changes, so a dry-run does not
//! run it (unless the recipe says it is read-only) and reports it as *unknown*, and
//! a real run journals the recipe's `undo` command or, without one, a barrier.
//!
//! In a dry-run a command (a read-only one, an `unless:` guard) runs on the real
//! target, which does not hold the plan's writes; tend cannot tell which files a
//! command reads, so once the plan has changed anything the command's answer is not
//! vouched for: the step is *unknown*. `creates:` is a path check, answered from the
//! plan itself; a command the dry-run passes over leaves the path it `creates:` in the
//! plan (empty), so that later steps using it plan.

use std::time::Duration;

use super::{Ctx, OpError, OpResult, StepReport};
use crate::journal::undo::Undo;
use crate::transport::{Divergence, ExecOutput, ExecRequest};

#[derive(Debug, Clone, Default)]
pub struct ShSpec {
    pub command: String,
    pub undo: Option<String>,
    pub read_only: bool,
    /// Skip when this path exists.
    pub creates: Option<String>,
    /// Skip when this command exits 0.
    pub unless: Option<String>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub delay: Duration,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    /// Return a non-zero exit code in the result instead of failing the step.
    pub allow_fail: bool,
    /// This command only, through `sudo -n`.
    pub become_: bool,
    /// The paths the command may change (absolute globs): recorded before it runs,
    /// compared after, restored by rollback (see [`super::watch`]).
    pub changes: Vec<String>,
    /// `dry_run: "sandbox"`: a dry-run runs the command in a throwaway overlay of the
    /// declared paths (see [`super::sandbox`]).
    pub sandbox: bool,
}

const OP: &str = "sh";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn sh(ctx: &Ctx, spec: &ShSpec) -> OpResult<StepReport> {
    let t = ctx.target.as_ref();
    let subject = spec.command.clone();
    let unknown = || {
        let mut r = StepReport::unchanged(OP, spec.command.clone());
        r.unknown = true;
        r.reversible = spec.undo.is_some();
        r
    };
    let divergence = t.divergence();
    if let Some(path) = &spec.creates {
        if t.stat(path)?.is_some() {
            // The plan knows its own paths, but not what a command it passed over
            // would have removed.
            if divergence == Divergence::Unknown {
                return Ok(unknown());
            }
            return Ok(StepReport::unchanged(OP, subject));
        }
    }
    // What a command says on the real target is the real run's answer only while
    // the plan has changed nothing.
    let blind = divergence != Divergence::None;
    if let Some(check) = spec.unless.as_ref().filter(|_| !blind) {
        // A guard is a question, not a change: it runs in dry-runs too.
        let guard = ShSpec {
            command: check.clone(),
            stdin: None,
            ..spec.clone()
        };
        if exec(ctx, &guard)?.code == 0 {
            return Ok(StepReport::unchanged(OP, subject));
        }
    }
    if ctx.dry_run() && !spec.read_only && spec.sandbox && !spec.changes.is_empty() {
        let r = super::sandbox::plan(ctx, spec)?;
        if r.unknown || r.changed {
            // The plan cannot hold what the command wrote in its sandbox.
            t.note_unknown_effect();
        }
        return Ok(r);
    }
    if ctx.dry_run() && !spec.read_only {
        // From here on the plan cannot know what the real run will have done.
        t.note_unknown_effect();
        // But what it `creates:` is there after it (or the step fails): the path
        // goes into the plan, empty since its content is the command's, so that the
        // steps that then move, link or remove it plan as the real run takes them.
        // A parent the command would make itself is not guessed at.
        if let Some(path) = &spec.creates {
            let _ = t.write(path, b"", 0o644);
        }
        return Ok(unknown());
    }
    if !spec.read_only && !spec.changes.is_empty() {
        return watched(ctx, spec);
    }
    if !spec.read_only {
        let undo = match &spec.undo {
            Some(cmd) => Undo::Command {
                command: cmd.clone(),
            },
            None => Undo::Barrier {
                what: format!("sh `{}` (no undo given)", spec.command),
            },
        };
        // The undo of a command run as root runs as root too.
        ctx.will_as(OP, undo, spec.become_ || ctx.is_root_view())?;
    }
    if blind {
        // Still run, so that the recipe gets the best answer there is (most read-only
        // commands, `id -u` or `hostname`, do not read what the plan wrote); but
        // flagged, and its failure is not taken as the real run's (nor retried: the
        // file it waits for may be one only the plan holds).
        let out = run_with_retries(
            ctx,
            &ShSpec {
                retries: 0,
                ..spec.clone()
            },
        )?;
        let mut r = unknown();
        r.stdout = Some(text(&out.stdout));
        r.stderr = Some(text(&out.stderr));
        r.code = Some(out.code);
        return Ok(r);
    }
    let out = run_with_retries(ctx, spec)?;
    let r = if spec.read_only {
        StepReport::unchanged(OP, subject)
    } else {
        let mut r = StepReport::changed(OP, subject, spec.creates.iter().cloned().collect());
        r.reversible = spec.undo.is_some();
        r
    };
    finish(spec, r, out)
}

/// A command with declared `changes`: what they cover is recorded, the command runs,
/// and the step reports (and journals) exactly what it changed there.
fn watched(ctx: &Ctx, spec: &ShSpec) -> OpResult<StepReport> {
    use super::watch::{record_after, record_before, Changes, Declared};
    // Under `become: true` the paths are read and recorded as root too: root may be
    // the only one who can read them, and the rollback must write them as root.
    let root;
    let ctx = if spec.become_ && !ctx.is_root_view() {
        root = ctx.as_root()?;
        &root
    } else {
        ctx
    };
    let t = ctx.target.as_ref();
    let declared = Declared::new(&spec.changes)?;
    let before = declared.scan(t)?;
    let rec = record_before(ctx, OP, &declared, &before.0, ctx.is_root_view())?;
    let ran = run_with_retries(ctx, spec);
    // Whatever became of the command, what it did is journaled exactly.
    let after = declared.scan(t)?;
    let changes = Changes::between(&before, &after);
    record_after(ctx, OP, &rec, &changes, ctx.is_root_view())?;
    let out = ran?;
    if !changes.outside.is_empty() {
        return Err(OpError::Invalid(format!(
            "`{}` changed {} outside the paths it declares in `changes` ({}); \
             tend recorded no backup of them, so a rollback cannot restore them",
            spec.command,
            changes.outside.join(", "),
            spec.changes.join(", ")
        )));
    }
    let r = watched_report(spec, &changes.created, &changes.modified, &changes.removed);
    finish(spec, r, out)
}

/// The step of a command with declared `changes`: the paths it created, changed and
/// removed, and a diff of one `+`, `~` or `-` line each.
pub fn watched_report(
    spec: &ShSpec,
    created: &[String],
    modified: &[String],
    removed: &[String],
) -> StepReport {
    let mut paths: Vec<String> = created
        .iter()
        .chain(modified)
        .chain(removed)
        .cloned()
        .collect();
    paths.sort();
    paths.dedup();
    if paths.is_empty() {
        return StepReport::unchanged(OP, spec.command.clone());
    }
    let mut r = StepReport::changed(OP, spec.command.clone(), paths);
    let mut diff = String::new();
    for (mark, list) in [('+', created), ('~', modified), ('-', removed)] {
        let mut list = list.to_vec();
        list.sort();
        for p in list {
            diff.push_str(&format!("{mark} {p}\n"));
        }
    }
    r.diff = Some(diff);
    r
}

/// The command's output into the report, and its exit judged.
fn finish(spec: &ShSpec, mut r: StepReport, out: ExecOutput) -> OpResult<StepReport> {
    r.stdout = Some(text(&out.stdout));
    r.stderr = Some(text(&out.stderr));
    r.code = Some(out.code);
    if out.timed_out {
        return Err(OpError::Invalid(format!(
            "`{}` timed out after {}",
            spec.command,
            humantime::format_duration(spec.timeout.unwrap_or_default())
        )));
    }
    if out.code != 0 && !spec.allow_fail {
        let stderr = text(&out.stderr);
        let tail: Vec<&str> = stderr.trim_end().lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(OpError::Invalid(format!(
            "`{}` exited with status {}{}",
            spec.command,
            out.code,
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {}", tail.join(" | "))
            }
        )));
    }
    Ok(r)
}

fn run_with_retries(ctx: &Ctx, spec: &ShSpec) -> OpResult<ExecOutput> {
    let mut attempt = 0;
    loop {
        let out = exec(ctx, spec)?;
        if out.code == 0 || attempt >= spec.retries {
            return Ok(out);
        }
        attempt += 1;
        ctx.cancel().sleep(spec.delay)?;
    }
}

/// Run `spec.command` once, within what is left of the run: its own timeout is cut
/// to the run's remaining budget, and a cancel stops it (process group killed).
fn exec(ctx: &Ctx, spec: &ShSpec) -> OpResult<ExecOutput> {
    let cancel = ctx.cancel();
    cancel.check()?;
    let req = ExecRequest {
        command: spec.command.clone(),
        env: spec.env.clone(),
        stdin: spec.stdin.clone(),
        timeout: cancel.bound(spec.timeout),
        become_: spec.become_,
        cancel: Some(cancel.clone()),
    };
    let out = ctx.target.exec(&req)?;
    if out.timed_out {
        // Killed because the run must stop, not for the command's own timeout.
        cancel.check()?;
    }
    Ok(out)
}
