//! `fs::download`: a file at `dest` with the bytes a URL serves, fetched on the target
//! (its `curl` or `wget`) or on the controller (`from: "controller"`), checked against
//! the expected SHA-256 before anything at `dest` is touched, then written through
//! [`super::fs::file`] (diff, journal, undo, dry-run as `fs::file`).
//!
//! With `sha256` and a `dest` that already has it, nothing is fetched. Without
//! `sha256`, only the bytes can tell whether `dest` changes: the URL is fetched every
//! time, the dry-run included (a GET, which changes nothing here; the body is held in
//! memory, never written anywhere), so the plan shows the same change the run makes,
//! and a wrong checksum is found by the dry-run already.

use std::io::Read;
use std::time::Duration;

use super::fs::file;
use super::{Ctx, OpError, OpResult, StepReport};
use crate::journal::undo::sha256;
use crate::transport::{ExecRequest, Kind};

const OP: &str = "fs::download";

/// The largest body accepted: it is held in memory on the controller.
pub const MAX_BODY: u64 = 1 << 30;

fn invalid(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

#[derive(Debug, Clone)]
pub struct DownloadSpec {
    pub url: String,
    /// Lowercase hex.
    pub sha256: Option<String>,
    pub mode: Option<u32>,
    pub from: super::check::Origin,
    pub timeout: Duration,
}

/// Writes the body to stdout; the tool goes first on stderr as `TEND-VIA name`.
const FETCH_SCRIPT: &str = r#"
if command -v curl >/dev/null 2>&1; then
  echo 'TEND-VIA curl' >&2
  exec curl -fsSL --proto '=http,https' -m "$TEND_TIMEOUT" -A tend "$TEND_URL"
elif command -v wget >/dev/null 2>&1; then
  echo 'TEND-VIA wget' >&2
  exec wget -q -O - -T "$TEND_TIMEOUT" -U tend "$TEND_URL"
else
  echo 'TEND-NOTOOL' >&2
  exit 97
fi
"#;

fn on_target(ctx: &Ctx, spec: &DownloadSpec) -> OpResult<(Vec<u8>, String)> {
    let cancel = ctx.cancel();
    let req = ExecRequest {
        command: FETCH_SCRIPT.into(),
        env: vec![
            ("TEND_URL".into(), spec.url.clone()),
            (
                "TEND_TIMEOUT".into(),
                spec.timeout.as_secs().max(1).to_string(),
            ),
        ],
        stdin: None,
        timeout: cancel.bound(Some(spec.timeout + Duration::from_secs(5))),
        become_: false,
        cancel: Some(cancel.clone()),
    };
    let out = ctx.target.exec(&req)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let via = stderr
        .lines()
        .find_map(|l| l.strip_prefix("TEND-VIA "))
        .unwrap_or("sh")
        .to_string();
    let by = format!("{} ({via})", ctx.host());
    if out.timed_out {
        cancel.check()?;
        return Err(invalid(format!(
            "{OP} {}: no complete answer within {}",
            spec.url,
            humantime::format_duration(spec.timeout)
        )));
    }
    if out.code == 97 {
        return Err(invalid(format!(
            "{OP}: {} has no curl or wget to fetch with; fetch from the controller \
             instead: #{{from: \"controller\"}}",
            ctx.host()
        )));
    }
    if out.code != 0 {
        let said: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("TEND-VIA") && !l.trim().is_empty())
            .collect();
        return Err(invalid(format!(
            "{OP} {} from {by} failed (exit {}): {}",
            spec.url,
            out.code,
            said.join(" | ")
        )));
    }
    Ok((out.stdout, by))
}

fn from_controller(ctx: &Ctx, spec: &DownloadSpec) -> OpResult<(Vec<u8>, String)> {
    let cancel = ctx.cancel();
    let timeout = cancel.bound(Some(spec.timeout)).unwrap_or(spec.timeout);
    let url = spec.url.clone();
    // On its own thread, so that a cancel (Ctrl-C) does not wait for the transfer.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .tls_config(super::check::controller_tls())
                .build(),
        );
        let answer = agent
            .get(&url)
            .header("User-Agent", "tend")
            .call()
            .map_err(|e| match e {
                ureq::Error::Timeout(_) => String::new(),
                e => e.to_string(),
            })
            .and_then(|mut r| {
                let mut body = Vec::new();
                r.body_mut()
                    .as_reader()
                    .take(MAX_BODY + 1)
                    .read_to_end(&mut body)
                    .map_err(|e| e.to_string())?;
                Ok(body)
            });
        let _ = tx.send(answer);
    });
    loop {
        cancel.check()?;
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(body)) => return Ok((body, "the controller".into())),
            Ok(Err(why)) => {
                cancel.check()?;
                let why = if why.is_empty() {
                    format!(
                        "no complete answer within {}",
                        humantime::format_duration(spec.timeout)
                    )
                } else {
                    why
                };
                return Err(invalid(format!(
                    "{OP} {} from the controller: {why}",
                    spec.url
                )));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(invalid("the request ended without an answer"))
            }
        }
    }
}

/// Ensure `dest` holds what `spec.url` serves (see the module doc).
pub fn download(ctx: &Ctx, dest: &str, spec: &DownloadSpec) -> OpResult<StepReport> {
    let t = ctx.target.as_ref();
    let meta = t.stat(dest)?;
    if let Some(m) = &meta {
        if m.kind != Kind::File {
            return Err(invalid(format!(
                "{OP}: {dest} is a {}; only a regular file is replaced",
                m.kind.as_str()
            )));
        }
        if let Some(want) = &spec.sha256 {
            if t.hash(dest)? == *want {
                // The content is there: no fetch. Only the mode may be left to do.
                let mut r = match spec.mode {
                    Some(mode) if mode != m.mode => super::fs::chmod(ctx, dest, mode)?,
                    _ => StepReport::unchanged(OP, dest),
                };
                r.op = OP;
                r.subject = format!("{} -> {dest}", spec.url);
                return Ok(r);
            }
        }
    }
    let (body, by) = match spec.from {
        super::check::Origin::Target => on_target(ctx, spec)?,
        super::check::Origin::Controller => from_controller(ctx, spec)?,
    };
    if body.len() as u64 > MAX_BODY {
        return Err(invalid(format!(
            "{OP} {}: the body is larger than {MAX_BODY} bytes; {dest} not touched",
            spec.url
        )));
    }
    let got = sha256(&body);
    if let Some(want) = &spec.sha256 {
        if got != *want {
            return Err(invalid(format!(
                "{OP} {} (fetched by {by}): its SHA-256 is {got}, not the expected {want}; \
                 {dest} was not touched",
                spec.url
            )));
        }
    }
    let mut r = file(ctx, OP, dest, &body, spec.mode, true)?;
    r.subject = format!("{} -> {dest}", spec.url);
    Ok(r)
}
