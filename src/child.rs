//! Short helper commands that tend starts on this machine and waits for: the audit
//! anchor command, a notification's `sendmail` or `exec:` command. Each gets its input
//! on stdin and a deadline, and a failure comes back as one sentence with what the
//! command said on stderr, so a hung or broken helper is reported instead of holding
//! up the run or the daemon that called it.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `cmd` with `input` on its stdin (small: it is written before waiting) and
/// wait at most `timeout`. Err: why it did not succeed, starting with a verb
/// (`could not start: …`, `failed (exit status: 1): …`) for the caller to prefix.
pub fn run_bounded(cmd: &mut Command, input: &[u8], timeout: Duration) -> Result<(), String> {
    // Its own process group: on timeout, whatever it started goes with it.
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("could not start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is fine: it may need only its
        // arguments or environment.
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // SAFETY: kill(2) on the group this child leads; no memory is touched.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                return Err(format!(
                    "did not finish within {}s and was stopped",
                    timeout.as_secs()
                ));
            }
            Err(e) => return Err(format!("could not be waited for: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(err) = child.stderr.take() {
        // Enough to say why; a command that writes megabytes is not read to its end.
        let _ = err.take(4096).read_to_string(&mut stderr);
    }
    let stderr = stderr.trim();
    Err(if stderr.is_empty() {
        format!("failed ({status})")
    } else {
        format!("failed ({status}): {stderr}")
    })
}
