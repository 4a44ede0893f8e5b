//! The daemon's control socket, `STATE/daemon.sock`: `tend schedule run|pause|resume`
//! reach the running scheduler through it, so a hand-triggered fire obeys the
//! entry's overlap rule. Mode 0600 in the 0700 state dir, and each caller's uid is
//! checked with SO_PEERCRED: only the daemon's own user, or root, gets an answer.
//!
//! One request per connection, one JSON line each way:
//! `{"op":"run"|"pause"|"resume","name":"nightly","user":"alice"}` →
//! `{"ok":true,"message":"started"}`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::fire::{audit, Ctx};
use super::scheduler::Scheduler;
use crate::error::{Error, Result};
use crate::state::StateDir;

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub op: String,
    pub name: String,
    /// Who asks, as the client's environment says; the uid beside it is the kernel's.
    #[serde(default)]
    pub user: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub message: String,
}

pub fn socket_path(state: &StateDir) -> PathBuf {
    state.root().join("daemon.sock")
}

/// Listen on `path`; refused if a daemon already answers there (a socket file left
/// by one that died is replaced).
pub fn bind(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(Error::Usage(format!(
                "a tend daemon is already running for this state dir (it answers on {})",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(path);
    }
    let io = |e| Error::io(format!("cannot listen on {}", path.display()), e);
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// The uid of the process at the other end of `s`, as the kernel knows it.
fn peer_uid(s: &UnixStream) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the size given.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Answer requests until the process ends (one short thread per connection).
pub fn serve(listener: UnixListener, sched: Scheduler, ctx: Arc<Ctx>) {
    // SAFETY: geteuid cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    for stream in listener.incoming().flatten() {
        let (sched, ctx) = (sched.clone(), ctx.clone());
        std::thread::spawn(move || {
            let uid = match peer_uid(&stream) {
                Ok(uid) => uid,
                Err(e) => {
                    tracing::warn!("control socket: cannot tell who connected: {e}");
                    return;
                }
            };
            if uid != me && uid != 0 {
                tracing::warn!(
                    uid,
                    "control socket: refused a caller that is neither the daemon's user nor root"
                );
                let _ = answer(
                    &stream,
                    false,
                    "refused: only the daemon's user or root may use it",
                );
                return;
            }
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_err() {
                return;
            }
            let (ok, message) = match serde_json::from_str::<Request>(&line) {
                Err(e) => (false, format!("bad request: {e}")),
                Ok(req) => handle(&sched, &ctx, &req, uid),
            };
            let _ = answer(&stream, ok, &message);
        });
    }
}

fn answer(mut s: &UnixStream, ok: bool, message: &str) -> std::io::Result<()> {
    writeln!(s, "{}", json!({"ok": ok, "message": message}))
}

fn handle(sched: &Scheduler, ctx: &Ctx, req: &Request, uid: u32) -> (bool, String) {
    let user = if req.user.is_empty() {
        format!("uid {uid}")
    } else {
        req.user.clone()
    };
    match req.op.as_str() {
        "run" => {
            tracing::info!(schedule = %req.name, user = %user, uid, "fire requested");
            match sched.request(&req.name) {
                Ok(m) => (true, m),
                Err(m) => (false, m),
            }
        }
        "pause" | "resume" if !sched.has(&req.name) => (
            false,
            format!("no schedule entry {:?} in tend.toml", req.name),
        ),
        "pause" | "resume" => {
            set_paused(ctx, &req.name, req.op == "pause", &user, Some(uid));
            (true, format!("{}d", req.op))
        }
        other => (false, format!("unknown request {other:?}")),
    }
}

/// Pause or resume `name`: persisted in its record, logged, audited with who asked.
pub fn set_paused(ctx: &Ctx, name: &str, paused: bool, user: &str, uid: Option<u32>) {
    // In a cluster the record is the cluster's: every node reads it at its heartbeat.
    ctx.records.update(name, |r| r.paused = paused);
    let what = if paused {
        "schedule_pause"
    } else {
        "schedule_resume"
    };
    tracing::info!(
        schedule = name,
        user,
        "{}",
        if paused { "paused" } else { "resumed" }
    );
    audit(ctx, what, name, json!({"user": user, "uid": uid}));
}

/// Send `req` to the daemon of `state`; `None` when no daemon listens there.
pub fn send(state: &StateDir, req: &Request) -> Result<Option<Reply>> {
    let path = socket_path(state);
    let mut s = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    let io = |e| Error::io(format!("talking to the daemon on {}", path.display()), e);
    let text = serde_json::to_string(req).map_err(|e| Error::Other(e.to_string()))?;
    writeln!(s, "{text}").map_err(io)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| Error::Other(format!("the daemon answered {line:?}: {e}")))
}
