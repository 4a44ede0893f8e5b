//! The connection of an [`SshTarget`] and how commands run on it.
//!
//! * **One session per host, one thread at a time.** libssh2 sessions fail when two
//!   threads use channels at once, so every operation takes the one mutex around the
//!   connection ([`Conn`]). A small keepalive thread only ever `try_lock`s it.
//! * **Commands**: a host's first command of each kind (login user, root) gets an exec
//!   channel of its own, later ones run in that kind's shared shell ([`shell`]); see
//!   [`exec`] for how environment values stay out of argv, how stdin/stdout/stderr are
//!   driven without deadlock and how a timeout kills the whole remote process group.
//! * [`ConnExec`] lends that to a [`ShellFs`](crate::transport::posix::ShellFs): the
//!   file primitives that run as commands (all of them under become) share the
//!   session's shells with `sh()` steps.

use std::cell::RefCell;
use std::os::unix::io::RawFd;
use std::sync::{mpsc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use ssh2::{ErrorCode, Session, Sftp};

use super::session::{fmt_duration, is_transport, Link, IO_TIMEOUT};
use super::{exec, posix_rename, shell, SshTarget};
use crate::transport::posix::{Exec, ScriptOutput, ShellFs};
use crate::transport::{Fault, Meta, TResult, TargetError};

pub(super) struct Conn {
    // Declared before `link`: dropped before the session they run on.
    pub(super) sftp: Option<Sftp>,
    /// Long-lived shells, [login user, root], opened at the second command of each.
    pub(super) shells: [Option<shell::Shell>; 2],
    /// Commands run so far, [login user, root]: the first gets a channel of its own.
    pub(super) commands: [u32; 2],
    /// Second SFTP channel for `posix-rename@openssh.com`, opened at first rename.
    pub(super) posix: Option<posix_rename::PosixRename>,
    /// The server lacks the extension: rename falls back to SFTP v3 or `mv`.
    pub(super) posix_unsupported: bool,
    /// Starting SFTP failed (no `Subsystem sftp`, or a noisy login shell).
    pub(super) sftp_unavailable: bool,
    pub(super) link: Link,
    /// Set when the transport failed: later calls fail fast with this reason.
    pub(super) broken: Option<String>,
    /// Calls that may have changed the host (see [`SshTarget::lock_mut`]).
    pub(super) mutations: u64,
    /// The last `stat`: (mutations then, path, result). An operation stats a file and
    /// then replaces it; `write` reuses that answer instead of asking again, when
    /// nothing changed in between.
    pub(super) last_stat: Option<(u64, String, Option<Meta>)>,
    /// Per directory: permission bits a file created there is known to keep (see
    /// `write_sftp`).
    pub(super) exact_modes: std::collections::HashMap<String, u32>,
}

impl Conn {
    pub(super) fn new(link: Link) -> Conn {
        Conn {
            sftp: None,
            shells: [None, None],
            commands: [0, 0],
            sftp_unavailable: false,
            posix: None,
            posix_unsupported: false,
            link,
            broken: None,
            mutations: 0,
            last_stat: None,
            exact_modes: Default::default(),
        }
    }

    /// Whether `cmd` gets a channel of its own: the first command of its kind (for
    /// one command, a shell would be a process more), and one whose stdin is too big
    /// to travel in the shell's script. The others run in the shared shell.
    pub(super) fn own_channel(&self, cmd: &Cmd<'_>) -> bool {
        self.commands[cmd.become_ as usize] == 0 || cmd.stdin.len() > shell::STDIN_IN_SCRIPT
    }

    pub(super) fn sftp(&mut self) -> Result<&Sftp, ssh2::Error> {
        if self.sftp.is_none() {
            // Driven here, not inside libssh2's blocking wait, so that each wait is
            // preceded by `quick_ack`: the first channel after authentication otherwise
            // waits 40 ms for sshd's Nagle (see `exec::quick_ack`).
            let sess = &self.link.session;
            let started = {
                let _mode = exec::NonBlocking::new(sess);
                let deadline = Instant::now() + IO_TIMEOUT;
                exec::retry(sess, self.link.fd, deadline, || sess.sftp())
            };
            match started {
                Ok(s) => self.sftp = Some(s),
                Err(e) => {
                    self.sftp_unavailable = !is_transport(e.code());
                    return Err(e);
                }
            }
        }
        Ok(self.sftp.as_ref().expect("just opened"))
    }
}

/// One command to run on the host, as `sh -c SCRIPT tend ARGS…`.
pub(super) struct Cmd<'a> {
    pub(super) script: &'a str,
    pub(super) env: &'a [(String, String)],
    pub(super) args: &'a [&'a str],
    pub(super) stdin: &'a [u8],
    pub(super) become_: bool,
    pub(super) timeout: Option<Duration>,
    /// The run's token (recipe commands only): a cancel kills the command.
    pub(super) cancel: Option<&'a crate::cancel::CancelToken>,
}

/// Kill what carries `marker`, from a channel of its own (see `exec::KILL_SCRIPT`).
fn kill_marked(sess: &Session, fd: RawFd, become_: bool, marker: &str) {
    if let Ok((line, _)) = exec::command_line(exec::KILL_SCRIPT, &[], become_, &[marker], None) {
        let _ = exec::run_channel(
            sess,
            fd,
            &line,
            &[],
            exec::Until::timeout(Duration::from_secs(10)),
            IO_TIMEOUT,
            &mut || {},
        );
    }
}

pub(super) fn spawn_keepalive(conn: Weak<Mutex<Conn>>, interval: Duration) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    if interval.is_zero() {
        return tx;
    }
    let _ = std::thread::Builder::new()
        .name("tend-ssh-keepalive".into())
        .spawn(move || loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let Some(conn) = conn.upgrade() else { return };
            // Never wait: a busy connection is not idle and needs no keepalive.
            if let Ok(c) = conn.try_lock() {
                if c.broken.is_none() {
                    let _ = c.link.session.keepalive_send();
                }
            };
        });
    tx
}

impl SshTarget {
    pub(super) fn lock(&self) -> TResult<MutexGuard<'_, Conn>> {
        let c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &c.broken {
            return Err(TargetError::host_fault(
                self.name(),
                Fault::Connection,
                format!("the SSH connection was lost earlier ({why}); nothing more can run on it"),
            ));
        }
        Ok(c)
    }

    /// [`SshTarget::lock`] for a call that may change the host: it invalidates the
    /// remembered `stat`.
    pub(super) fn lock_mut(&self) -> TResult<MutexGuard<'_, Conn>> {
        let mut c = self.lock()?;
        c.mutations += 1;
        Ok(c)
    }

    /// What `path` was at the last `stat`, if that was the call right before this
    /// change (reads in between are fine).
    pub(super) fn stat_before_change(c: &mut Conn, path: &str) -> Option<Option<Meta>> {
        match c.last_stat.take() {
            Some((at, p, meta)) if at + 1 == c.mutations && p == path => Some(meta),
            _ => None,
        }
    }

    /// A libssh2 error outside SFTP status codes: the connection is in trouble.
    pub(super) fn lost(&self, c: &mut Conn, e: &ssh2::Error) -> TargetError {
        if c.sftp.is_none() && c.sftp_unavailable {
            return TargetError::host(
                self.name(),
                format!(
                    "cannot start SFTP: {} (is `Subsystem sftp` enabled in the host's \
                     sshd_config? A login shell that prints at startup also breaks SFTP)",
                    e.message()
                ),
            );
        }
        if is_transport(e.code()) {
            let why = match e.code() {
                ErrorCode::Session(-9 | -30) => {
                    format!("no answer for {}", fmt_duration(IO_TIMEOUT))
                }
                _ => e.message().to_string(),
            };
            c.broken = Some(why.clone());
            TargetError::host_fault(
                self.name(),
                Fault::Connection,
                format!("SSH connection lost: {why}"),
            )
        } else {
            TargetError::host(self.name(), format!("SSH error: {}", e.message()))
        }
    }

    /// Run a command on a channel of its own or in its kind's shared shell (see
    /// `Conn::own_channel` and `shell`). `direct`: the login shell is `/bin/sh` and
    /// the command is plain, so a channel of its own runs it as it is
    /// (`exec::direct_line`).
    pub(super) fn run_in(
        &self,
        c: &mut Conn,
        cmd: &Cmd<'_>,
        direct: bool,
    ) -> TResult<exec::ChannelOutput> {
        let kind = cmd.become_ as usize;
        // Whatever may be stopped carries a marker to find its processes by.
        let marker = (cmd.timeout.is_some() || cmd.cancel.is_some()).then(exec::new_marker);
        let until = exec::Until {
            timeout: cmd.timeout,
            cancel: cmd.cancel,
        };
        let bad = |m: String| TargetError::host(self.name(), m);
        let own_channel = c.own_channel(cmd);
        c.commands[kind] += 1;
        let Conn { link, shells, .. } = &mut *c;
        let (sess, fd) = (&link.session, link.fd);
        let mut kill = || {
            if let Some(m) = &marker {
                kill_marked(sess, fd, cmd.become_, m);
            }
        };
        let result = if own_channel {
            let (line, mut stdin) = if direct {
                exec::direct_line(cmd.script, cmd.env, marker.as_deref())
            } else {
                exec::command_line(
                    cmd.script,
                    cmd.env,
                    cmd.become_,
                    cmd.args,
                    marker.as_deref(),
                )
            }
            .map_err(bad)?;
            stdin.extend_from_slice(cmd.stdin);
            exec::run_channel(sess, fd, &line, &stdin, until, IO_TIMEOUT, &mut kill)
        } else {
            let exports = exec::env_exports(cmd.env).map_err(bad)?;
            let live = shells[kind].take().and_then(|mut sh| {
                if !sh.ended(sess) {
                    return Some(sh);
                }
                // Gone since its last command (killed on the host): a new one, rather
                // than reporting its death as this command's failure.
                sh.close(sess, Duration::from_secs(1));
                None
            });
            let opened = match live {
                Some(sh) => Ok(sh),
                None => shell::Shell::open(sess, fd, cmd.become_, IO_TIMEOUT),
            };
            opened.and_then(|mut sh| {
                let input = sh.input(cmd.script, &exports, cmd.args, marker.as_deref(), cmd.stdin);
                let (out, alive) = sh.run(sess, fd, &input, until, &mut kill)?;
                if alive {
                    shells[kind] = Some(sh);
                } else {
                    sh.close(sess, Duration::from_secs(5));
                }
                Ok(out)
            })
        };
        result.map_err(|e| self.lost(c, &e))
    }

    /// Run a helper script (`/bin/sh -c`, `LC_ALL=C`), through `sudo -n` if
    /// `privileged`.
    /// The file primitives as commands on this connection: through `sudo -n` if
    /// `sudo`, else as the login user.
    pub(super) fn shell<'a>(&'a self, c: &'a mut Conn, sudo: bool) -> ShellFs<ConnExec<'a>> {
        ShellFs::new(ConnExec {
            target: self,
            conn: RefCell::new(c),
            sudo,
        })
    }
}

/// Said goodbye when the last view of the session (the login one or its sudo view)
/// is gone.
impl Drop for Conn {
    fn drop(&mut self) {
        self.link.session.set_timeout(2_000);
        for shell in self.shells.iter_mut().filter_map(Option::take) {
            if self.broken.is_none() {
                shell.close(&self.link.session, Duration::from_millis(500));
            }
        }
        self.sftp = None;
        self.posix = None;
        if self.broken.is_none() {
            let _ = self.link.session.disconnect(None, "tend: done", None);
        }
    }
}

/// Commands of a [`ShellFs`] on a connection already locked by the caller (a
/// primitive may mix SFTP requests and commands under one lock).
pub(super) struct ConnExec<'a> {
    target: &'a SshTarget,
    conn: RefCell<&'a mut Conn>,
    sudo: bool,
}

impl Exec for ConnExec<'_> {
    fn host(&self) -> &str {
        self.target.name()
    }

    fn sudo_user(&self) -> Option<&str> {
        self.sudo.then_some(self.target.info.user.as_str())
    }

    fn run(&self, script: &str, args: &[&str], stdin: &[u8]) -> TResult<ScriptOutput> {
        let cmd = Cmd {
            script,
            env: &[],
            args,
            stdin,
            become_: self.sudo,
            timeout: None,
            cancel: None,
        };
        let mut c = self.conn.borrow_mut();
        let out = self.target.run_in(&mut c, &cmd, false)?;
        Ok(ScriptOutput {
            code: out.code,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}
