//! `archive::compress`: gzip or zstd a file in place (`f` → `f.gz`), the way
//! logrotate does, but reversibly: the original is saved before it is removed.
//!
//! The compressor runs on the target (no file travels over the network); the plan
//! needs no compression: it knows the names that appear and disappear.

use super::{Ctx, OpError, OpResult, StepReport};
use crate::journal::undo::Undo;
use crate::transport::{shell_quote, ExecRequest, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gzip,
    Zstd,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "gzip" | "gz" => Some(Format::Gzip),
            "zstd" | "zst" => Some(Format::Zstd),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Gzip => ".gz",
            Format::Zstd => ".zst",
        }
    }

    fn command(self) -> &'static str {
        match self {
            // -n: no name or time stamp inside, so the output depends on content only.
            Format::Gzip => "gzip -c -n --",
            Format::Zstd => "zstd -q -c --",
        }
    }
}

const OP: &str = "archive::compress";

/// Compress `src` to `src` + extension and remove `src`. Returns the report; the
/// compressed path is `report.paths[1]` when changed.
pub fn compress(ctx: &Ctx, src: &str, format: Format) -> OpResult<StepReport> {
    let t = ctx.target.as_ref();
    let dest = format!("{src}{}", format.extension());
    let subject = format!("{src} -> {dest}");
    let m = match t.stat(src)? {
        None if t.stat(&dest)?.is_some() => return Ok(StepReport::unchanged(OP, subject)),
        None => return Err(OpError::Invalid(format!("{src} does not exist"))),
        Some(m) if m.kind != Kind::File => {
            return Err(OpError::Invalid(format!("{src} is not a regular file")))
        }
        Some(m) => m,
    };
    if t.stat(&dest)?.is_some() {
        return Err(OpError::Invalid(format!(
            "{dest} already exists; not overwriting it"
        )));
    }
    ctx.will(OP, Undo::Remove { path: dest.clone() })?;
    if ctx.dry_run() {
        // The overlay only needs to know the file will be there.
        t.write(&dest, b"", m.mode)?;
    } else {
        let tmp = format!("{}.tend-tmp", dest);
        let (s, d, tq) = (shell_quote(src), shell_quote(&dest), shell_quote(&tmp));
        let cmd = format!(
            "{} {s} > {tq} && chmod {:o} {tq} && touch -r {s} {tq} && mv -f {tq} {d} || {{ rc=$?; rm -f {tq}; exit $rc; }}",
            format.command(),
            m.mode
        );
        let out = t.exec(&ExecRequest::new(cmd))?;
        if out.code != 0 {
            return Err(OpError::Invalid(format!(
                "compressing {src} failed (exit {}): {}",
                out.code,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    ctx.will(OP, ctx.restore_undo(src, m, None)?)?;
    t.remove_file(src)?;
    Ok(StepReport::changed(OP, subject, vec![src.into(), dest]))
}
