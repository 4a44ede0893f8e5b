//! One long-lived `/bin/sh` per host and user (login user, root under `sudo -n`) that
//! runs the commands after the first.
//!
//! An exec channel costs the server a fork of its session process and the start of
//! the login shell, and costs the wire a channel open, an exec request and a close:
//! 4.5 ms for a `true` on loopback here, of which `true` is a tenth. A recipe with many
//! `sh()` steps paid that per step, and a `--become` run per file primitive (each one
//! a `sudo` helper, and sudo's own start is dearer still). The shell pays it once;
//! each command is then one write and one read on its channel, plus the subshell's
//! fork.
//!
//! A host's first command of each kind still gets a channel of its own: most recipes
//! run one command or none, and for one command a shell is a process more.
//!
//! # Protocol
//!
//! Per command the shell reads, from its stdin:
//!
//! ```text
//! (
//! export TEND_EXEC_ID=<marker>     with a timeout (see `exec`)
//! export K='v'                     the environment: read by the shell, never in argv
//! set -- 'arg'…
//! eval '<script>'
//! ) </dev/null
//! printf '%s %d\n' TOKEN "$?"; printf '%s\n' TOKEN >&2
//! ```
//!
//! * The subshell keeps `sh -c` semantics: `cd`, variables, `exit`, `set -e` end with
//!   the command; through `eval`, a syntax error is the command's (status 2), not the
//!   shell's, and an unbalanced `)` cannot leave the subshell.
//! * `</dev/null`: dash reads its script ahead in blocks, so a command must never
//!   read the shell's stdin. A command's own stdin (a file's content for a `sudo`
//!   write) travels in the script as a builtin `printf` piped into the subshell; past
//!   `STDIN_IN_SCRIPT` bytes it gets a channel of its own, where it streams.
//! * TOKEN is random per shell; a command's output is what comes before it.
//! * A timeout kills the marker's process groups, and the shell's is one of them: the
//!   shell dies with the command and the next command starts a new one.
//! * Before each command, what arrived since the last one is read and dropped (late
//!   output of a background process is no command's), and a shell that ended
//!   meanwhile is replaced (`Shell::ended`).
//! * If the shell dies mid-command (the command killed `$$`, sudo refused), its exit
//!   status is the command's, as it would be on a channel of its own.

use std::io::Read;
use std::os::unix::io::RawFd;
use std::time::Duration;

use ssh2::{Channel, Session};

use super::exec::{self, ChannelOutput, NonBlocking};
use crate::transport::shell_quote;

/// The most stdin a command may bring into the shell (as octal escapes, up to four
/// times as long in the script).
pub(crate) const STDIN_IN_SCRIPT: usize = 256 * 1024;

pub(crate) struct Shell {
    channel: Channel,
    token: String,
}

impl Shell {
    pub fn open(
        sess: &Session,
        fd: RawFd,
        become_: bool,
        io_timeout: Duration,
    ) -> Result<Shell, ssh2::Error> {
        let line = if become_ {
            "exec sudo -n /bin/sh"
        } else {
            "exec /bin/sh"
        };
        Ok(Shell {
            channel: exec::open_channel(sess, fd, line, io_timeout)?,
            token: format!("tend-done-{}", super::unique_suffix()),
        })
    }

    /// What the shell is sent for one command; `exports` from `exec::env_exports`.
    pub fn input(
        &self,
        script: &str,
        exports: &str,
        args: &[&str],
        marker: Option<&str>,
        stdin: &[u8],
    ) -> String {
        let mut s = String::new();
        if !stdin.is_empty() {
            s.push_str(&printf_of(stdin));
            s.push_str(" | ");
        }
        s.push_str("(\n");
        if let Some(m) = marker {
            s.push_str(&exec::marker_export(m));
        }
        s.push_str(exports);
        s.push_str("set --");
        for a in args {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s.push_str("\neval ");
        s.push_str(&shell_quote(script));
        s.push_str(if stdin.is_empty() {
            "\n) </dev/null"
        } else {
            "\n)"
        });
        s.push_str(&format!(
            "\nprintf '%s %d\\n' {t} \"$?\"; printf '%s\\n' {t} >&2\n",
            t = self.token
        ));
        s
    }

    /// Run one command; `Ok((output, alive))`, where a shell that is not alive must be
    /// closed and not used again.
    pub fn run(
        &mut self,
        sess: &Session,
        fd: RawFd,
        input: &str,
        until: exec::Until<'_>,
        on_timeout: &mut dyn FnMut(),
    ) -> Result<(ChannelOutput, bool), ssh2::Error> {
        let out_end = format!("{} ", self.token).into_bytes();
        let err_end = format!("{}\n", self.token).into_bytes();
        let mut out_scan = Scan::default();
        let mut err_scan = Scan::default();
        let mut finished = |o: &ChannelOutput| {
            out_scan
                .find(&o.stdout, &out_end)
                .is_some_and(|p| o.stdout[p..].contains(&b'\n'))
                && err_scan.find(&o.stderr, &err_end).is_some()
        };
        let (mut out, closed) = {
            let _mode = NonBlocking::new(sess);
            exec::pump(
                sess,
                fd,
                &mut self.channel,
                input.as_bytes(),
                false,
                until,
                on_timeout,
                &mut finished,
            )?
        };
        let done = finished(&out);
        if let (Some(p), true) = (out_scan.at, done) {
            let code = &out.stdout[p + out_end.len()..];
            let code = code.split(|&b| b == b'\n').next().unwrap_or(b"");
            out.code = std::str::from_utf8(code).ok().and_then(|c| c.parse().ok());
            out.signal = None;
            out.stdout.truncate(p);
        }
        if let (Some(p), true) = (err_scan.at, done) {
            out.stderr.truncate(p);
        }
        let alive = done && !closed && !out.timed_out;
        Ok((out, alive))
    }

    /// Whether the shell has ended since its last command (killed on the host).
    /// Reading first takes in what arrived meanwhile, so the answer is current; what
    /// it reads is output of no command (a background process that wrote after its
    /// command finished), dropped rather than passed off as the next command's.
    pub fn ended(&mut self, sess: &Session) -> bool {
        let _mode = NonBlocking::new(sess);
        let mut stray = [0u8; 4096];
        for id in [0, 1] {
            let mut stream = self.channel.stream(id);
            while matches!(stream.read(&mut stray), Ok(n) if n > 0) {}
        }
        self.channel.eof()
    }

    /// End the shell (EOF on its stdin) and free its channel, waiting at most `wait`
    /// for sshd to close it: a command's background process that kept the output open
    /// (`sh("daemon &")`) keeps the channel open as long as it runs.
    pub fn close(mut self, sess: &Session, wait: Duration) {
        let _ = self.channel.send_eof();
        exec::free_channel(sess, self.channel, wait);
    }
}

/// A `printf` that writes `data` byte for byte: the shell's builtin, so the bytes
/// travel inside the script (a command must not read the shell's own stdin, see the
/// module notes) and cost no process. Bytes other than a few plain ones are octal
/// escapes, which POSIX printf decodes in its format; NUL included.
fn printf_of(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 2 + 9);
    s.push_str("printf '");
    for &b in data {
        match b {
            b'%' => s.push_str("%%"),
            b if b.is_ascii_alphanumeric() || b" ,.-_/:=+@".contains(&b) => s.push(b as char),
            b => s.push_str(&format!("\\{b:03o}")),
        }
    }
    s.push('\'');
    s
}

/// A search through a growing buffer that does not rescan what it has seen.
#[derive(Default)]
struct Scan {
    from: usize,
    at: Option<usize>,
}

impl Scan {
    fn find(&mut self, buf: &[u8], needle: &[u8]) -> Option<usize> {
        if self.at.is_none() && buf.len() >= needle.len() {
            let start = self.from.min(buf.len() - needle.len());
            self.at = buf[start..]
                .windows(needle.len())
                .position(|w| w == needle)
                .map(|p| start + p);
            // The next search starts where a match could still begin.
            self.from = buf.len() + 1 - needle.len();
        }
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_escapes_what_the_shell_or_printf_would_read() {
        assert_eq!(printf_of(b"a b%"), "printf 'a b%%'");
        assert_eq!(
            printf_of(b"'\\\n\0\xff9"),
            "printf '\\047\\134\\012\\000\\3779'"
        );
    }

    #[test]
    fn scan_finds_a_needle_split_across_reads() {
        let mut s = Scan::default();
        let mut buf = b"output tend-do".to_vec();
        assert_eq!(s.find(&buf, b"tend-done"), None);
        buf.extend_from_slice(b"ne 0\n");
        assert_eq!(s.find(&buf, b"tend-done"), Some(7));
        assert_eq!(s.find(&buf, b"tend-done"), Some(7));
        let mut s = Scan::default();
        assert_eq!(s.find(b"ab", b"abc"), None);
        assert_eq!(s.find(b"abc", b"abc"), Some(0));
    }
}
