//! Running commands over one exec channel each.
//!
//! # What is sent
//!
//! sshd runs the exec string through the login shell (`$SHELL -c STRING`), so the
//! string is visible in the remote `ps`. It therefore carries only the command, never
//! an environment value:
//!
//! ```text
//! exec [sudo -n] /bin/sh -c '<script>' [tend-exec-<id>]
//! ```
//!
//! * `/bin/sh -c` gives the same `sh -c` semantics as the local target, whatever the
//!   login shell is; `exec` saves a process.
//! * Environment variables (`sh(cmd, #{env: …})`, secrets) are not set with the SSH
//!   `env` request (sshd refuses names outside `AcceptEnv`) and never put in argv.
//!   They travel in the channel's stdin as a header of `export K='v'` lines of known
//!   byte length N; the script starts with
//!   `eval "$(dd bs=1 count=N 2>/dev/null)"`, which consumes exactly those N bytes
//!   (`dd bs=1` reads one byte per read(2), so not a byte of what follows) and exports
//!   them in the shell that then runs the command. Everything after the header is the
//!   command's own stdin, untouched. Under `sudo` the header is read by the shell
//!   sudo starts, so sudo's environment reset does not drop the variables.
//! * A command with a timeout carries a marker: `TEND_EXEC_ID=<random>` exported at
//!   the top of its script, so every process it starts inherits it, even through
//!   `exec` (shells exec the last command of `sh -c` directly, which would lose a
//!   marker kept in argv), and also as `$0`. When the deadline passes, a second
//!   channel finds the processes holding the marker (`/proc/*/environ`; `ps` args
//!   where there is no /proc) and kills their process groups, TERM then KILL: sshd
//!   makes each command a session leader, so that is the whole pipeline, plus
//!   anything that left the group (`setsid`). Under `sudo` the kill runs through
//!   `sudo -n` too. Closing the channel alone would leave a `sleep 1000` running.
//!
//! # How it is driven
//!
//! The session is switched to non-blocking mode for the command and one loop feeds
//! stdin and drains stdout and stderr as each becomes possible, waiting in `poll(2)`
//! on the socket when nothing moved. Reading one stream to its end before the other
//! (or writing all of stdin first) deadlocks once a window fills: a `cat` of a few
//! megabytes would hang.

use std::io::{Read, Write};
use std::os::unix::io::RawFd;
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel, ErrorCode, Session};

use crate::cancel::CancelToken;
use crate::transport::shell_quote;

const EAGAIN: i32 = -37;

/// How long a command may run: its timeout, and the run's token, whose cancel stops
/// it early the same way (`on_timeout` kills it, the output says `timed_out`).
#[derive(Clone, Copy, Default)]
pub(crate) struct Until<'a> {
    pub timeout: Option<Duration>,
    pub cancel: Option<&'a CancelToken>,
}

impl Until<'_> {
    pub fn timeout(timeout: Duration) -> Self {
        Until {
            timeout: Some(timeout),
            cancel: None,
        }
    }
}

/// What one channel produced.
#[derive(Debug, Default)]
pub(crate) struct ChannelOutput {
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

impl ChannelOutput {
    /// The exit code as a shell reports it: 128 + signal number for a killed command.
    pub fn shell_code(&self) -> i32 {
        if let Some(sig) = &self.signal {
            return 128 + signal_number(sig);
        }
        match self.code {
            Some(c) => c,
            None if self.timed_out => 128 + 9,
            None => -1,
        }
    }
}

fn signal_number(name: &str) -> i32 {
    match name.trim_start_matches("SIG") {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 0,
    }
}

/// An environment variable name the shell accepts in `export`.
pub(crate) fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The exec string and the bytes to send before the command's own stdin.
pub(crate) fn command_line(
    script: &str,
    env: &[(String, String)],
    become_: bool,
    args: &[&str],
    marker: Option<&str>,
) -> Result<(String, Vec<u8>), String> {
    let (script, header) = with_env(script, env, marker)?;
    let mut line = String::from("exec ");
    if become_ {
        line.push_str("sudo -n ");
    }
    line.push_str("/bin/sh -c ");
    line.push_str(&shell_quote(&script));
    if marker.is_some() || !args.is_empty() {
        line.push(' ');
        line.push_str(marker.unwrap_or("tend"));
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
    }
    Ok((line, header))
}

/// The exec string for a login shell that is `/bin/sh` itself: the script as it is,
/// which sshd already runs as `sh -c SCRIPT`. One process fewer than `exec /bin/sh -c`
/// (on a VM, where starting a process is what a command costs, about a third).
pub(crate) fn direct_line(
    script: &str,
    env: &[(String, String)],
    marker: Option<&str>,
) -> Result<(String, Vec<u8>), String> {
    with_env(script, env, marker)
}

/// `export K='v'` lines for `env`, checked.
pub(crate) fn env_exports(env: &[(String, String)]) -> Result<String, String> {
    let mut lines = String::new();
    for (k, v) in env {
        if !valid_env_name(k) {
            return Err(format!("`{k}` is not a valid environment variable name"));
        }
        if v.contains('\0') {
            return Err(format!("environment variable {k} contains a NUL byte"));
        }
        lines.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    Ok(lines)
}

/// `script` preceded by the marker and the reader of the environment header; and the
/// header.
fn with_env(
    script: &str,
    env: &[(String, String)],
    marker: Option<&str>,
) -> Result<(String, Vec<u8>), String> {
    let header = env_exports(env)?;
    let mut full = String::new();
    if let Some(m) = marker {
        full.push_str(&marker_export(m));
    }
    if !header.is_empty() {
        full.push_str(&format!(
            "eval \"$(dd bs=1 count={} 2>/dev/null)\"\n",
            header.len()
        ));
    }
    full.push_str(script);
    Ok((full, header.into_bytes()))
}

/// The line that exports `marker` to a command and everything it starts.
pub(crate) fn marker_export(marker: &str) -> String {
    format!("export TEND_EXEC_ID={}\n", shell_quote(marker))
}

/// A fresh marker for one command.
pub(crate) fn new_marker() -> String {
    format!("tend-exec-{}", super::unique_suffix())
}

/// The script that kills every process group holding the marker given as `$1`. The
/// marker is in this script's argv, never in its environment, so the environment scan
/// does not find the killer itself (the `ps` fallback skips its own group).
pub(crate) const KILL_SCRIPT: &str = r#"id=$1
me=$(ps -o pgid= -p $$ 2>/dev/null | tr -d ' ')
groups() {
  if [ -r /proc/self/environ ]; then
    grep -l -a -F "TEND_EXEC_ID=$id" /proc/[0-9]*/environ 2>/dev/null |
      while read -r f; do sed 's/.*) //' "${f%/environ}/stat" 2>/dev/null | cut -d' ' -f3; done
  else
    ps -eo pgid=,args= 2>/dev/null | awk -v id="$id" 'index($0, id) > 0 { print $1 }'
  fi | sort -u | grep -vx "${me:-x}" | grep -vx 0
}
for g in $(groups); do kill -s TERM -- "-$g" 2>/dev/null; done
i=0
while [ $i -lt 20 ] && [ -n "$(groups)" ]; do sleep 0.05; i=$((i+1)); done
for g in $(groups); do kill -s KILL -- "-$g" 2>/dev/null; done
exit 0
"#;

fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(EAGAIN)
}

/// Acknowledge the next segment from the server at once instead of after Linux's
/// delayed-ACK timer (40 ms). sshd leaves Nagle on for commands without a pty, so when
/// it sends two messages in a row (after authentication: its host keys, then more)
/// the second waits for our ACK of the first: every connection's first channel took
/// 45 ms longer than the others. The flag does not stick (the kernel goes back to
/// delaying once the exchange looks interactive), so it is set again before each wait.
pub(crate) fn quick_ack(fd: RawFd) {
    #[cfg(target_os = "linux")]
    {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local; a
        // descriptor that is not a TCP socket (a jump host tunnel) only gets an error.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// Wait until the socket is ready in the direction libssh2 is blocked on, or `max`.
pub(crate) fn wait_socket(sess: &Session, fd: RawFd, max: Duration) {
    quick_ack(fd);
    let events = match sess.block_directions() {
        BlockDirections::Outbound => libc::POLLOUT,
        BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
        // Inbound, or EAGAIN from a full channel window: its adjustment comes inbound.
        _ => libc::POLLIN,
    };
    poll_fds(&mut [(fd, events)], max);
}

/// poll(2) on a few descriptors; returns the revents of each.
pub(crate) fn poll_fds(fds: &mut [(RawFd, i16)], max: Duration) -> Vec<i16> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let ms = max.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfds` is a valid, exclusively borrowed array of `pfds.len()` pollfd
    // structs for the duration of the call; poll(2) only writes their `revents`.
    unsafe {
        libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms);
    }
    pfds.iter().map(|p| p.revents).collect()
}

/// Switches the session to non-blocking mode and restores the previous mode however
/// the exec ends (a kill command runs nested inside a timed-out exec).
pub(crate) struct NonBlocking<'a> {
    sess: &'a Session,
    was_blocking: bool,
}

impl<'a> NonBlocking<'a> {
    pub(crate) fn new(sess: &'a Session) -> Self {
        let was_blocking = sess.is_blocking();
        sess.set_blocking(false);
        NonBlocking { sess, was_blocking }
    }
}

impl Drop for NonBlocking<'_> {
    fn drop(&mut self) {
        self.sess.set_blocking(self.was_blocking);
    }
}

/// Retry a libssh2 call until it stops saying EAGAIN.
pub(crate) fn retry<T>(
    sess: &Session,
    fd: RawFd,
    deadline: Instant,
    mut f: impl FnMut() -> Result<T, ssh2::Error>,
) -> Result<T, ssh2::Error> {
    let mut idle = 0u32;
    loop {
        match f() {
            Err(e) if is_eagain(&e) => {
                if Instant::now() >= deadline {
                    return Err(ssh2::Error::new(
                        ErrorCode::Session(-9),
                        "timed out waiting for the SSH server",
                    ));
                }
                // Short first: see run_channel.
                wait_socket(sess, fd, Duration::from_millis(1 << idle.min(7)));
                idle += 1;
            }
            other => return other,
        }
    }
}

/// Run `line` on a new channel. `on_timeout` is called once when `until` says stop
/// (it kills the command); the output then gets a short grace period to finish.
/// `io_timeout` bounds how long the server may stay silent while opening the channel.
pub(crate) fn run_channel(
    sess: &Session,
    fd: RawFd,
    line: &str,
    stdin: &[u8],
    until: Until<'_>,
    io_timeout: Duration,
    on_timeout: &mut dyn FnMut(),
) -> Result<ChannelOutput, ssh2::Error> {
    let mut channel = open_channel(sess, fd, line, io_timeout)?;
    let out = {
        let _mode = NonBlocking::new(sess);
        pump(
            sess,
            fd,
            &mut channel,
            stdin,
            true,
            until,
            on_timeout,
            &mut |_| false,
        )
    };
    free_channel(sess, channel, Duration::from_secs(5));
    Ok(out?.0)
}

/// A new session channel running `line`.
pub(crate) fn open_channel(
    sess: &Session,
    fd: RawFd,
    line: &str,
    io_timeout: Duration,
) -> Result<Channel, ssh2::Error> {
    let _mode = NonBlocking::new(sess);
    let open_deadline = Instant::now() + io_timeout;
    let mut channel = retry(sess, fd, open_deadline, || sess.channel_session())?;
    retry(sess, fd, open_deadline, || channel.exec(line))?;
    Ok(channel)
}

/// Free a channel in blocking mode, or libssh2 may leave it half-closed; waiting at
/// most `wait` for the server to close its end.
pub(crate) fn free_channel(sess: &Session, channel: Channel, wait: Duration) {
    let was_blocking = sess.is_blocking();
    sess.set_blocking(true);
    let saved = sess.timeout();
    sess.set_timeout(wait.as_millis().clamp(1, u32::MAX as u128) as u32);
    drop(channel);
    sess.set_timeout(saved);
    sess.set_blocking(was_blocking);
}

/// Feed `input` to a channel and collect its output until `finished` says so or the
/// channel closes (`true` in the result: the exit status is in the output then).
/// `close_input`: send EOF after the input (a one-off command); a long-lived shell
/// keeps its stdin open. The session must be in non-blocking mode.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pump(
    sess: &Session,
    fd: RawFd,
    channel: &mut Channel,
    input: &[u8],
    close_input: bool,
    until: Until<'_>,
    on_timeout: &mut dyn FnMut(),
    finished: &mut dyn FnMut(&ChannelOutput) -> bool,
) -> Result<(ChannelOutput, bool), ssh2::Error> {
    let started = Instant::now();
    let mut deadline = until.timeout.and_then(|t| started.checked_add(t));
    let mut out = ChannelOutput::default();
    let mut pos = 0usize;
    let mut input_done = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_keepalive = Instant::now();
    let mut grace = false;
    let mut idle = 0u32;

    loop {
        let mut progress = false;

        if !input_done {
            if pos < input.len() {
                let end = input.len().min(pos + 256 * 1024);
                match channel.write(&input[pos..end]) {
                    Ok(0) => {}
                    Ok(n) => {
                        pos += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // The command is gone or closed its stdin: the rest has no reader.
                    Err(_) => input_done = true,
                }
            }
            if pos >= input.len() && !input_done {
                if !close_input {
                    input_done = true;
                } else {
                    match channel.send_eof() {
                        Ok(()) => {
                            input_done = true;
                            progress = true;
                        }
                        Err(e) if is_eagain(&e) => {}
                        Err(_) => input_done = true,
                    }
                }
            }
        }

        for (stream_id, sink) in [(0, &mut out.stdout), (1, &mut out.stderr)] {
            let mut stream = channel.stream(stream_id);
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        sink.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        return Err(ssh2::Error::new(
                            ErrorCode::Session(-43),
                            "reading the command's output failed",
                        ))
                    }
                }
            }
        }

        if progress && finished(&out) {
            return Ok((out, false));
        }

        if channel.eof() {
            // Output is complete; the exit status comes with (before) the close.
            match channel.wait_close() {
                Ok(()) => {
                    out.code = channel.exit_status().ok();
                    out.signal = channel.exit_signal().ok().and_then(|s| s.exit_signal);
                    return Ok((out, true));
                }
                Err(e) if is_eagain(&e) => {}
                Err(e) => return Err(e),
            }
        }

        let now = Instant::now();
        let over = deadline.is_some_and(|d| now >= d);
        if grace && over {
            return Ok((out, false)); // killed, but the channel did not finish
        }
        if !grace && (over || until.cancel.is_some_and(|c| c.is_cancelled())) {
            out.timed_out = true;
            grace = true;
            on_timeout();
            deadline = Some(Instant::now() + Duration::from_secs(3));
            continue;
        }
        if now.duration_since(last_keepalive) >= Duration::from_secs(5) {
            let _ = sess.keepalive_send();
            last_keepalive = now;
        }
        if progress {
            idle = 0;
        } else {
            // libssh2 may already hold the packet we wait for in its own buffer, where
            // poll(2) on the socket cannot see it: wait briefly, then longer and longer
            // (1 ms → 128 ms), so a quick command returns at once and a slow one costs
            // no CPU. Waiting the full period every time cost ~100 ms per command.
            let mut wait = Duration::from_millis(1 << idle.min(7));
            idle += 1;
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(now) + Duration::from_millis(1));
            }
            wait_socket(sess, fd, wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_goes_to_stdin_not_argv() {
        let env = vec![("TOKEN".to_string(), "s3cr3t 'x'".to_string())];
        let (line, header) = command_line("echo \"$TOKEN\"", &env, false, &[], None).unwrap();
        assert!(!line.contains("s3cr3t"), "{line}");
        let header = String::from_utf8(header).unwrap();
        assert_eq!(header, "export TOKEN='s3cr3t '\\''x'\\'''\n");
        assert!(line.contains(&format!("count={}", header.len())), "{line}");
        assert!(line.starts_with("exec /bin/sh -c "));
    }

    #[test]
    fn become_and_args() {
        let (line, header) = command_line("cat -- \"$1\"", &[], true, &["/a b"], None).unwrap();
        assert!(header.is_empty());
        assert_eq!(line, "exec sudo -n /bin/sh -c 'cat -- \"$1\"' tend '/a b'");
        assert!(command_line("x", &[("A-B".into(), "v".into())], false, &[], None).is_err());
    }

    #[test]
    fn marker_is_exported_not_only_in_argv() {
        let (line, _) = command_line("sleep 1", &[], false, &[], Some("tend-exec-1")).unwrap();
        assert_eq!(
            line,
            "exec /bin/sh -c 'export TEND_EXEC_ID=tend-exec-1\nsleep 1' tend-exec-1"
        );
    }
}
