//! `mailto:`: a plain-text mail handed to the machine's `sendmail -t -oi`, as cron
//! does for MAILTO. Whatever provides sendmail (postfix, exim, msmtp…) relays it;
//! tend speaks no SMTP itself and holds no mail credentials.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::NotifyEvent;

/// Where every MTA on Debian and most other systems puts it (cron's `_PATH_SENDMAIL`);
/// the older location second. Not looked up in `$PATH`: a daemon's is minimal.
const SENDMAIL: [&str; 2] = ["/usr/sbin/sendmail", "/usr/lib/sendmail"];

/// sendmail usually queues and returns at once; a relay-only one (msmtp) talks to its
/// server first, within its own timeouts.
const TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn send(to: &[String], event: &NotifyEvent) -> Result<(), String> {
    let Some(sendmail) = SENDMAIL.iter().map(Path::new).find(|p| p.exists()) else {
        return Err(format!(
            "there is no sendmail on this machine ({}); install a mail transfer agent \
             (postfix, exim4 or msmtp-mta) to send mailto: notifications",
            SENDMAIL.join(" or ")
        ));
    };
    let message = compose(to, event);
    // -t: recipients from the To: header; -oi: a line with a lone "." is not the end.
    let mut cmd = Command::new(sendmail);
    super::without_secrets(&mut cmd).args(["-t", "-oi"]);
    crate::child::run_bounded(&mut cmd, message.as_bytes(), TIMEOUT)
        .map_err(|why| format!("{} {why}", sendmail.display()))
}

/// The message, headers and body. `to` was checked when tend.toml was read (no
/// quotes, angle brackets or spaces); everything else put in a header is made safe
/// here, since a host name comes from an inventory file.
fn compose(to: &[String], event: &NotifyEvent) -> String {
    let mut m = String::new();
    let mut header = |name: &str, value: &str| {
        m.push_str(name);
        m.push_str(": ");
        m.push_str(&header_safe(value));
        m.push('\n');
    };
    header("To", &to.join(", "));
    header("Subject", &event.summary());
    header("MIME-Version", "1.0");
    header("Content-Type", "text/plain; charset=utf-8");
    header("Content-Transfer-Encoding", "8bit");
    // RFC 3834: no vacation or out-of-office replies to a machine.
    header("Auto-Submitted", "auto-generated");
    header("X-Tend-Schedule", &event.schedule);
    header("X-Tend-Reason", event.reason.as_str());
    header("X-Tend-Outcome", &event.outcome);
    if let Some(id) = &event.run_id {
        header("X-Tend-Run-Id", id);
    }
    m.push('\n');
    let mut line = |label: &str, value: &str| m.push_str(&format!("{label:<10}{value}\n"));
    line("Schedule:", &event.schedule);
    line("Reason:", event.reason.as_str());
    line("Outcome:", &event.outcome);
    line("Hosts:", &event.hosts.join(", "));
    if let Some(id) = &event.run_id {
        line(
            "Run:",
            &format!("{id}  (`tend audit show {id}` has every step)"),
        );
    }
    if let Some(t) = event.started {
        line("Started:", &t.to_rfc3339());
    }
    if let Some(d) = event.duration {
        line("Duration:", &format!("{:.1}s", d.as_secs_f64()));
    }
    m.push('\n');
    m.push_str(&event.message);
    m.push('\n');
    m
}

/// Printable ASCII only: no line break can start a header of its own, and no
/// character needs RFC 2047 encoding.
fn header_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Reason;

    #[test]
    fn no_header_can_be_injected() {
        let e = NotifyEvent {
            run_id: None,
            schedule: "s".into(),
            outcome: "failed".into(),
            hosts: vec!["web1\nBcc: x@evil.example".into()],
            reason: Reason::Failed,
            started: None,
            duration: None,
            message: "m".into(),
        };
        let m = compose(&["ops@example.com".into()], &e);
        let headers = m.split("\n\n").next().unwrap();
        assert!(!headers.lines().any(|l| l.starts_with("Bcc")), "{headers}");
        assert!(headers.contains("Subject: tend: s failed on web1?Bcc: x@evil.example"));
    }
}
