//! A secret value. It prints as `***` wherever a recipe or tend itself might show it
//! (strings, diffs, errors, logs, the audit log, the journal); only operations that
//! accept a secret get at the value, and they hand it to the target through stdin or
//! the environment, never argv.
//!
//! Where a secret comes from: `-p name=env:VAR`, `-p name=file:/path`, or the caller
//! (the CLI asks on the terminal, with no echo, for one that was not given when its
//! standard input is a terminal; nothing below the CLI reads a terminal). A value typed into the command line itself is refused: it would be visible
//! in `ps`, `/proc/*/cmdline` and the shell's history.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

pub const REDACTED: &str = "***";

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// `env:VAR` or `file:/path` (what a careful operator types so the value stays out
    /// of shell history and `ps`). Anything else is refused, for the same reason.
    pub fn from_reference(param: &str, raw: &str) -> Result<Secret, String> {
        if let Some(var) = raw.strip_prefix("env:") {
            let value = std::env::var(var).map_err(|_| {
                format!("secret parameter `{param}`: environment variable {var} is not set")
            })?;
            return checked(param, &format!("environment variable {var}"), value);
        }
        if let Some(path) = raw.strip_prefix("file:") {
            let value = std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("secret parameter `{param}`: cannot read {path}: {e}"))?;
            return checked(param, path, value);
        }
        // The value itself is not repeated: it may be the secret.
        Err(format!(
            "secret parameter `{param}` must be given as -p {param}=env:VAR or -p {param}=file:PATH \
             (a value on the command line shows in `ps` and the shell's history); \
             left out, it is asked for when tend runs on a terminal"
        ))
    }

    /// A value the caller read itself (typed at a prompt), as the secret `param`,
    /// if it is long enough.
    pub fn entered(param: &str, value: String) -> Result<Secret, String> {
        if value.is_empty() {
            return Err(format!("secret parameter `{param}`: nothing was entered"));
        }
        checked(param, "what was entered", value)
    }

    /// The value itself: only for handing to a target through stdin or environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The shortest secret accepted, in bytes. Every occurrence of a secret's value is
/// replaced by `***` in all output, so a one-letter secret would blank that letter
/// in every path and message, the audit log included (and could hardly be secret).
pub const MIN_SECRET_BYTES: usize = 4;

/// `value`, read from `source`, as the secret `param`, if it is long enough. The
/// message gives the length, never the value.
fn checked(param: &str, source: &str, value: String) -> Result<Secret, String> {
    if value.len() >= MIN_SECRET_BYTES {
        return Ok(Secret(value));
    }
    let got = if value.is_empty() {
        "is empty".to_string()
    } else {
        format!(
            "is only {} byte{}",
            value.len(),
            if value.len() == 1 { "" } else { "s" }
        )
    };
    Err(format!(
        "secret parameter `{param}`: the value from {source} {got}; a secret must be at least \
         {MIN_SECRET_BYTES} bytes (each occurrence of it is masked as *** in all output)"
    ))
}

/// Marks a declared parameter as a required secret: `token: secret()`.
#[derive(Clone, Debug)]
pub struct SecretDecl;

/// Replace every occurrence of any of `values` in `text` by `***`, longest value first
/// (so a secret that contains another is not half-replaced). Empty values are skipped.
pub fn scrub(text: &str, values: &[String]) -> String {
    let mut sorted: Vec<&String> = values.iter().filter(|v| !v.is_empty()).collect();
    sorted.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = text.to_string();
    for v in sorted {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), REDACTED);
        }
    }
    out
}

pub mod tty {
    use std::fs::OpenOptions;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::io::AsRawFd;

    /// Write `prompt` to the controlling terminal and read one line from it with echo
    /// off; echo is restored whatever happens.
    pub fn read_hidden(prompt: &str) -> std::io::Result<String> {
        let tty = OpenOptions::new().read(true).write(true).open("/dev/tty")?;
        let fd = tty.as_raw_fd();
        // SAFETY: termios is plain data, filled by tcgetattr before use.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        (&tty).write_all(prompt.as_bytes())?;
        (&tty).flush()?;
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        struct Restore(i32, libc::termios);
        impl Drop for Restore {
            fn drop(&mut self) {
                unsafe { libc::tcsetattr(self.0, libc::TCSANOW, &self.1) };
            }
        }
        let _restore = Restore(fd, saved);
        let mut line = String::new();
        BufReader::new(&tty).read_line(&mut line)?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_hidden() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }

    #[test]
    fn literal_values_are_refused_without_echoing_them() {
        let e = Secret::from_reference("token", "hunter2").unwrap_err();
        assert!(e.contains("env:VAR") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn scrubs_longest_first() {
        let v = vec!["abc".to_string(), "abcdef".to_string(), String::new()];
        assert_eq!(scrub("x abcdef y abc", &v), "x *** y ***");
    }
}
