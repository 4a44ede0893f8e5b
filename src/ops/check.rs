//! Checks that change nothing: `http::get` and `net::wait_for`. They run from the
//! target, through its `curl` or `wget` (or a plain TCP connection from `bash`'s
//! `/dev/tcp` or `nc`), or from the controller (`from: "controller"`), and say which.
//! A failed check fails its step, and so rolls the run back.
//!
//! A dry-run runs them too (they only read). Once the plan holds changes the
//! machine does not (a service the plan would have restarted), a check's answer is
//! not the real run's: it is then tried once, and a failure makes the step *unknown*
//! rather than failing the dry-run.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{Ctx, OpError, OpResult, StepReport};
use crate::transport::{Divergence, ExecRequest};

fn invalid(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

/// Where a check runs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Target,
    Controller,
}

#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub url: String,
    pub timeout: Duration,
    /// Statuses that pass; empty: any.
    pub expect_status: Vec<u16>,
    /// Text the body must contain.
    pub expect_body: Option<String>,
    pub from: Origin,
}

/// What a check found, besides its step report.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// `curl`, `wget`, `bash`, `nc` (on the target) or `controller`.
    pub via: String,
    pub status: Option<u16>,
    pub body: Option<String>,
}

/// Whether a dry-run's view differs from the machine the check runs against.
fn blind(ctx: &Ctx) -> bool {
    ctx.dry_run() && ctx.target.divergence() != Divergence::None
}

/// The step for a check: unchanged when it passed; a failure fails the step, except
/// in a blind dry-run (see the module doc) where it makes the step unknown.
fn outcome(
    ctx: &Ctx,
    op: &'static str,
    subject: String,
    result: OpResult<()>,
) -> OpResult<StepReport> {
    match result {
        Ok(()) => Ok(StepReport::unchanged(op, subject)),
        Err(OpError::Invalid(why)) if blind(ctx) => {
            let mut r = StepReport::unchanged(op, subject);
            r.unknown = true;
            r.stderr = Some(format!(
                "{why} (the dry-run checked the machine as it is, without the changes planned before)"
            ));
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

// ------------------------------------------------------------------- http::get

/// TLS for requests tend makes from the controller: the system's roots, through the
/// OpenSSL that ssh2 links already (no second TLS stack).
pub(super) fn controller_tls() -> ureq::tls::TlsConfig {
    ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build()
}

/// `http://host[:port]/path`: host, port, path (for the target's plain `bash` path).
fn split_http(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().ok()?),
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port, path))
}

/// Picks a client on the target: `curl` and `bash` print the whole response (status
/// line and headers, then the body), `wget -S` the headers on stderr. The tool goes
/// first on stderr, as `TEND-VIA name`.
const HTTP_SCRIPT: &str = r#"
if command -v curl >/dev/null 2>&1; then
  echo 'TEND-VIA curl' >&2
  exec curl -sS -m "$TEND_TIMEOUT" -D - -A tend "$TEND_URL"
elif command -v wget >/dev/null 2>&1; then
  echo 'TEND-VIA wget' >&2
  exec wget -q -S -O - -T "$TEND_TIMEOUT" -U tend "$TEND_URL"
elif command -v bash >/dev/null 2>&1 && [ -n "$TEND_HOST" ]; then
  echo 'TEND-VIA bash' >&2
  exec bash -c 'exec 3<>"/dev/tcp/$TEND_HOST/$TEND_PORT" || exit 7
printf "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: tend\r\nConnection: close\r\n\r\n" "$TEND_PATH" "$TEND_HOST" >&3
cat <&3'
else
  echo 'TEND-NOTOOL' >&2
  exit 97
fi
"#;

/// A raw response: its status and body.
fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((&text, ""));
    Some((status_in(head)?, body.to_string()))
}

/// The status of the last `HTTP/x y` line of `head`.
fn status_in(head: &str) -> Option<u16> {
    head.lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix("HTTP/"))
        .find_map(|l| l.split_whitespace().nth(1)?.parse().ok())
}

fn http_on_target(ctx: &Ctx, spec: &HttpSpec, found: &mut Found) -> OpResult<()> {
    let cancel = ctx.cancel();
    let mut env = vec![
        ("TEND_URL".to_string(), spec.url.clone()),
        (
            "TEND_TIMEOUT".to_string(),
            spec.timeout.as_secs().max(1).to_string(),
        ),
    ];
    if let Some((host, port, path)) = split_http(&spec.url) {
        env.push(("TEND_HOST".into(), host));
        env.push(("TEND_PORT".into(), port.to_string()));
        env.push(("TEND_PATH".into(), path));
    }
    let req = ExecRequest {
        command: HTTP_SCRIPT.into(),
        env,
        stdin: None,
        // The client's own timeout ends it first; this one is for a client that
        // has none (bash), and for the run's deadline.
        timeout: cancel.bound(Some(spec.timeout + Duration::from_secs(2))),
        become_: false,
        cancel: Some(cancel.clone()),
    };
    let out = ctx.target.exec(&req)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    found.via = via(&stderr);
    if out.timed_out {
        cancel.check()?;
        return Err(invalid(format!(
            "no answer within {}",
            humantime::format_duration(spec.timeout)
        )));
    }
    if out.code == 97 {
        return Err(invalid(format!(
            "{} has no curl, wget or bash to fetch it with (bash only for http://); \
             check from the controller instead: #{{from: \"controller\"}}",
            ctx.host()
        )));
    }
    let (status, body) = if found.via == "wget" {
        (
            status_in(&stderr),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    } else {
        match parse_response(&out.stdout) {
            Some((s, b)) => (Some(s), b),
            None => (None, String::new()),
        }
    };
    // curl's own words for these two vary between versions.
    match (found.via.as_str(), out.code) {
        ("curl", 28) if status.is_none() => {
            return Err(invalid(format!(
                "no answer within {}",
                humantime::format_duration(spec.timeout)
            )))
        }
        ("curl" | "bash", 7) if status.is_none() => {
            let said: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.starts_with("TEND-VIA") && !l.trim().is_empty())
                .collect();
            return Err(invalid(format!("could not connect ({})", said.join(" | "))));
        }
        _ => {}
    }
    let Some(status) = status else {
        let why: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("TEND-VIA") && !l.trim().is_empty())
            .collect();
        let why = if why.is_empty() {
            format!("{} exited with status {}", found.via, out.code)
        } else {
            why.join(" | ")
        };
        return Err(invalid(why));
    };
    found.status = Some(status);
    found.body = Some(body);
    Ok(())
}

fn http_from_controller(ctx: &Ctx, spec: &HttpSpec, found: &mut Found) -> OpResult<()> {
    found.via = "controller".into();
    let cancel = ctx.cancel();
    let timeout = cancel.bound(Some(spec.timeout)).unwrap_or(spec.timeout);
    let url = spec.url.clone();
    // On its own thread, so that a cancel (Ctrl-C) does not wait for the timeout.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                // As the target's clients: a redirect is an answer, reported as such.
                .max_redirects(0)
                .tls_config(super::check::controller_tls())
                .build(),
        );
        let answer = agent
            .get(&url)
            .header("User-Agent", "tend")
            .call()
            .map_err(|e| match e {
                // Said by the caller: it knows whether the run's deadline was the cause.
                ureq::Error::Timeout(_) => String::new(),
                ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    format!("could not connect ({e})")
                }
                ureq::Error::ConnectionFailed => "could not connect".to_string(),
                e => e.to_string(),
            })
            .and_then(|mut r| {
                let status = r.status().as_u16();
                let mut body = Vec::new();
                r.body_mut()
                    .as_reader()
                    .take(16 << 20)
                    .read_to_end(&mut body)
                    .map_err(|e| e.to_string())?;
                Ok((status, String::from_utf8_lossy(&body).into_owned()))
            });
        let _ = tx.send(answer);
    });
    loop {
        cancel.check()?;
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok((status, body))) => {
                found.status = Some(status);
                found.body = Some(body);
                return Ok(());
            }
            Ok(Err(why)) => {
                cancel.check()?;
                if why.is_empty() {
                    return Err(invalid(format!(
                        "no answer within {}",
                        humantime::format_duration(spec.timeout)
                    )));
                }
                return Err(invalid(why));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(invalid("the request ended without an answer"))
            }
        }
    }
}

/// GET `spec.url` and check its status and body. `found` says what answered, also
/// when the check fails.
pub fn http_get(ctx: &Ctx, spec: &HttpSpec, found: &mut Found) -> OpResult<StepReport> {
    const OP: &str = "http::get";
    let result = match spec.from {
        Origin::Target => http_on_target(ctx, spec, found),
        Origin::Controller => http_from_controller(ctx, spec, found),
    }
    .and_then(|()| {
        let status = found.status.unwrap_or_default();
        if !spec.expect_status.is_empty() && !spec.expect_status.contains(&status) {
            let want: Vec<String> = spec.expect_status.iter().map(u16::to_string).collect();
            return Err(invalid(format!(
                "answered HTTP {status}, expected {}",
                want.join(" or ")
            )));
        }
        match &spec.expect_body {
            Some(want)
                if !found
                    .body
                    .as_deref()
                    .unwrap_or_default()
                    .contains(want.as_str()) =>
            {
                Err(invalid(format!("the body does not contain {want:?}")))
            }
            _ => Ok(()),
        }
    })
    .map_err(|e| match e {
        OpError::Invalid(why) => invalid(format!(
            "http::get {} from {}: {why}",
            spec.url,
            by(ctx, spec.from, found)
        )),
        e => e,
    });
    let subject = format!("GET {} from {}", spec.url, by(ctx, spec.from, found));
    let mut r = outcome(ctx, OP, subject, result)?;
    r.code = found.status.map(i32::from);
    // The whole body is the recipe's (`r.body`); events and the audit get its start.
    r.stdout = found.body.as_deref().map(|b| {
        let mut end = b.len().min(BODY_SHOWN);
        while !b.is_char_boundary(end) {
            end -= 1;
        }
        b[..end].to_string()
    });
    Ok(r)
}

/// How much of a body a step's report carries.
const BODY_SHOWN: usize = 64 << 10;

/// `h1 (curl)` or `the controller`.
fn by(ctx: &Ctx, from: Origin, found: &Found) -> String {
    match from {
        Origin::Target => format!("{} ({})", ctx.host(), found.via),
        Origin::Controller => "the controller".into(),
    }
}

// --------------------------------------------------------------- net::wait_for

/// Tries once a second until a TCP connection is accepted or the seconds are used
/// up: exit 0 reached, 1 not within the time, 97 no tool. (Counted, not read from
/// `date`: the caller's own timeout bounds the whole.)
const WAIT_SCRIPT: &str = r#"
if command -v bash >/dev/null 2>&1; then via=bash
elif command -v nc >/dev/null 2>&1; then via=nc
else echo 'TEND-NOTOOL' >&2; exit 97
fi
echo "TEND-VIA $via" >&2
t=""; command -v timeout >/dev/null 2>&1 && t="timeout 3"
n=0
while :; do
  if [ "$via" = bash ]; then
    $t bash -c 'exec 3<>"/dev/tcp/$TEND_HOST/$TEND_PORT"' 2>/dev/null && exit 0
  else
    nc -z -w 3 "$TEND_HOST" "$TEND_PORT" 2>/dev/null && exit 0
  fi
  [ "$TEND_ONCE" = 1 ] && exit 1
  n=$((n + 1))
  [ "$n" -ge "$TEND_TIMEOUT" ] && exit 1
  sleep 1 || exit 1
done
"#;

fn wait_on_target(
    ctx: &Ctx,
    host: &str,
    port: u16,
    timeout: Duration,
    once: bool,
    found: &mut Found,
) -> OpResult<bool> {
    let cancel = ctx.cancel();
    let req = ExecRequest {
        command: WAIT_SCRIPT.into(),
        env: vec![
            ("TEND_HOST".into(), host.into()),
            ("TEND_PORT".into(), port.to_string()),
            ("TEND_TIMEOUT".into(), timeout.as_secs().max(1).to_string()),
            ("TEND_ONCE".into(), if once { "1" } else { "0" }.into()),
        ],
        stdin: None,
        timeout: cancel.bound(Some(timeout + Duration::from_secs(5))),
        become_: false,
        cancel: Some(cancel.clone()),
    };
    let out = ctx.target.exec(&req)?;
    found.via = via(&String::from_utf8_lossy(&out.stderr));
    if out.timed_out {
        cancel.check()?;
        return Ok(false);
    }
    match out.code {
        0 => Ok(true),
        97 => Err(invalid(format!(
            "{} has neither bash nor nc to connect with; wait from the controller \
             instead: #{{from: \"controller\"}}",
            ctx.host()
        ))),
        _ => Ok(false),
    }
}

fn wait_from_controller(
    ctx: &Ctx,
    host: &str,
    port: u16,
    timeout: Duration,
    once: bool,
    found: &mut Found,
) -> OpResult<bool> {
    found.via = "controller".into();
    let cancel = ctx.cancel();
    let start = Instant::now();
    loop {
        cancel.check()?;
        let left = timeout.saturating_sub(start.elapsed());
        let try_for = left.clamp(Duration::from_millis(100), Duration::from_secs(3));
        let addrs: Vec<_> = (host, port)
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default();
        if addrs
            .iter()
            .any(|a| TcpStream::connect_timeout(a, try_for).is_ok())
        {
            return Ok(true);
        }
        if once || start.elapsed() >= timeout {
            return Ok(false);
        }
        cancel.sleep(Duration::from_millis(250).min(left))?;
    }
}

/// Wait until `host:port` accepts a TCP connection, for at most `timeout`.
pub fn wait_for(
    ctx: &Ctx,
    host: &str,
    port: u16,
    timeout: Duration,
    from: Origin,
    found: &mut Found,
) -> OpResult<StepReport> {
    const OP: &str = "net::wait_for";
    // A blind dry-run does not wait for what the plan would have started.
    let once = blind(ctx);
    let reached = match from {
        Origin::Target => wait_on_target(ctx, host, port, timeout, once, found)?,
        Origin::Controller => wait_from_controller(ctx, host, port, timeout, once, found)?,
    };
    let subject = format!("{host}:{port} from {}", by(ctx, from, found));
    let result = if reached {
        Ok(())
    } else {
        Err(invalid(format!(
            "net::wait_for {host}:{port} from {}: no connection within {}",
            by(ctx, from, found),
            humantime::format_duration(timeout)
        )))
    };
    outcome(ctx, OP, subject, result)
}

/// Which tool a check script used, from the `TEND-VIA name` line it writes first on
/// stderr (`sh` when it wrote none).
fn via(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("TEND-VIA "))
        .unwrap_or("sh")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_responses() {
        assert_eq!(
            split_http("http://127.0.0.1:8080/a?b=1"),
            Some(("127.0.0.1".into(), 8080, "/a?b=1".into()))
        );
        assert_eq!(split_http("http://h"), Some(("h".into(), 80, "/".into())));
        assert_eq!(split_http("https://h/"), None);
        assert_eq!(
            parse_response(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\nno"),
            Some((404, "no".into()))
        );
        assert_eq!(
            status_in("  HTTP/1.1 301 Moved\n  HTTP/1.1 200 OK"),
            Some(200)
        );
    }
}
