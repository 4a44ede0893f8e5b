//! Notifications (issue 16): each kind delivered for real. A webhook served on
//! 127.0.0.1 by the test gets the JSON; an `exec:` command gets its environment; a
//! `mailto:` goes through the machine's sendmail (msmtp-mta, installed by .ci/run) to
//! a real SMTP server (aiosmtpd) the test starts on loopback, which stores it in a
//! Maildir the test reads.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tend::notify::{self, NotifyEvent, Reason};
use tend::schedule::{saved::EntryState, Entry, Notify};

/// The mail test points sendmail (msmtp) at its server through `$HOME`, which is the
/// whole process's: every test here holds this while it runs, so none reads the
/// environment (or starts a process) while it changes.
static ENV: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|e| e.into_inner())
}

fn event(reason: Reason) -> NotifyEvent {
    NotifyEvent {
        run_id: Some("20270102-023000-123-0a1b2c3d".into()),
        schedule: "nightly-backup".into(),
        outcome: "rolled_back".into(),
        hosts: vec!["web1".into(), "web2".into()],
        reason,
        started: Some("2027-01-02T01:30:00Z".parse().unwrap()),
        duration: Some(Duration::from_millis(3200)),
        message: "step 3 failed: <disk full> & rolled back".into(),
    }
}

/// One HTTP request as a tiny server on 127.0.0.1 reads it: (request line, body).
/// The server answers `status`.
fn serve_once(status: u16) -> (String, std::thread::JoinHandle<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/hooks/SECRET-TOKEN",
        listener.local_addr().unwrap()
    );
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        )
        .unwrap();
        (request_line, String::from_utf8(body).unwrap())
    });
    (url, handle)
}

#[test]
fn a_webhook_gets_slack_shaped_json_with_the_reason() {
    let _g = lock();
    let (url, server) = serve_once(200);
    notify::send(&Notify::Webhook(url), &event(Reason::Unvetted)).unwrap();
    let (request_line, body) = server.join().unwrap();
    assert!(
        request_line.starts_with("POST /hooks/SECRET-TOKEN "),
        "{request_line}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["reason"], "unvetted");
    assert_eq!(v["schedule"], "nightly-backup");
    assert_eq!(v["run_id"], "20270102-023000-123-0a1b2c3d");
    assert_eq!(v["hosts"], serde_json::json!(["web1", "web2"]));
    assert_eq!(v["outcome"], "rolled_back");
    assert_eq!(v["duration_ms"], 3200);
    assert_eq!(v["started"], "2027-01-02T01:30:00+00:00");
    // What Slack and Mattermost show: one message, markup characters escaped.
    let text = v["text"].as_str().unwrap();
    assert!(
        text.starts_with("tend: nightly-backup refused: recipe not vetted on web1, web2"),
        "{text}"
    );
    assert!(
        text.contains("&lt;disk full&gt; &amp; rolled back"),
        "{text}"
    );
}

#[test]
fn a_webhook_that_refuses_is_an_error_that_does_not_show_its_token() {
    let _g = lock();
    let (url, server) = serve_once(500);
    let err = notify::send(&Notify::Webhook(url), &event(Reason::Failed)).unwrap_err();
    server.join().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("HTTP 500"), "{msg}");
    assert!(!msg.contains("SECRET-TOKEN"), "{msg}");
    // Nobody listening: refused at once, well within the timeout.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/SECRET-TOKEN", closed.local_addr().unwrap());
    drop(closed);
    let t = Instant::now();
    let err = notify::send(&Notify::Webhook(url), &event(Reason::Failed)).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!err.to_string().contains("SECRET-TOKEN"), "{err}");
}

#[test]
fn an_exec_command_gets_the_event_in_its_environment() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script = dir.path().join("page");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ env | grep '^TEND_' | sort; cat; }} > '{}'\n",
            out.display()
        ),
    )
    .unwrap();
    make_executable(&script);
    notify::send(&Notify::Exec(script.clone()), &event(Reason::Failed)).unwrap();
    let got = std::fs::read_to_string(&out).unwrap();
    for line in [
        "TEND_RUN_ID=20270102-023000-123-0a1b2c3d",
        "TEND_SCHEDULE=nightly-backup",
        "TEND_OUTCOME=rolled_back",
        "TEND_HOSTS=web1,web2",
        "TEND_REASON=failed",
        "TEND_DURATION_MS=3200",
    ] {
        assert!(got.lines().any(|l| l == line), "{line} not in:\n{got}");
    }
    // The same JSON as a webhook's, on stdin.
    let json = got.lines().find(|l| l.starts_with('{')).unwrap();
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["reason"], "failed");

    // A command that fails is reported with what it said.
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'pager service down' >&2\nexit 3\n",
    )
    .unwrap();
    let err = notify::send(&Notify::Exec(script), &event(Reason::Failed)).unwrap_err();
    assert!(err.to_string().contains("pager service down"), "{err}");
    assert!(err.to_string().contains("exit status: 3"), "{err}");
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// aiosmtpd from Debian's python3-aiosmtpd, on a free loopback port, storing what it
/// receives in `maildir`. Killed when dropped.
struct SmtpServer {
    child: std::process::Child,
    port: u16,
}

impl SmtpServer {
    fn start(maildir: &Path) -> SmtpServer {
        let python = "/usr/bin/python3";
        let probe = std::process::Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .status();
        assert!(
            probe.is_ok_and(|s| s.success()),
            "{python} cannot import aiosmtpd: install python3-aiosmtpd (.ci/run does)"
        );
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = SmtpServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mailto_goes_through_sendmail_to_a_real_smtp_server() {
    let _g = lock();
    // The ~/.msmtprc below is how this test points sendmail at its server.
    let sendmail = std::fs::canonicalize("/usr/sbin/sendmail");
    assert!(
        sendmail.as_ref().is_ok_and(|p| p.ends_with("msmtp")),
        "/usr/sbin/sendmail is {sendmail:?}, not msmtp's: install msmtp-mta (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let server = SmtpServer::start(&maildir);
    // msmtp, the sendmail here, reads ~/.msmtprc: this one relays to the test's server.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let rc = home.join(".msmtprc");
    std::fs::write(
        &rc,
        format!(
            "defaults\nauth off\ntls off\nsyslog off\nlogfile {}\n\naccount default\nhost 127.0.0.1\nport {}\nfrom tend@example.com\n",
            dir.path().join("msmtp.log").display(),
            server.port
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let old_home = std::env::var_os("HOME");
    std::env::set_var("HOME", &home);
    let sent = notify::send(
        &Notify::Mail(vec!["ops@example.com".into(), "oncall@example.org".into()]),
        &event(Reason::Failed),
    );
    match old_home {
        Some(h) => std::env::set_var("HOME", h),
        None => std::env::remove_var("HOME"),
    }
    sent.unwrap();

    let new = maildir.join("new");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mail = loop {
        let found = std::fs::read_dir(&new)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .next();
        if let Some(f) = found {
            break std::fs::read_to_string(f.path()).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no mail arrived in {}",
            new.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (headers, body) = mail.split_once("\n\n").unwrap();
    for h in [
        "To: ops@example.com, oncall@example.org",
        "Subject: tend: nightly-backup rolled back on web1, web2 (run 20270102-023000-123-0a1b2c3d)",
        "X-Tend-Reason: failed",
        "Auto-Submitted: auto-generated",
    ] {
        assert!(headers.lines().any(|l| l == h), "{h} not in:\n{headers}");
    }
    // Both recipients were given to the SMTP server (sendmail -t read the To: line).
    assert!(
        headers.contains("X-RcptTo: ops@example.com, oncall@example.org"),
        "{headers}"
    );
    assert!(body.contains("Reason:   failed"), "{body}");
    assert!(body.contains("step 3 failed: <disk full>"), "{body}");
}

fn entry(toml_text: &str) -> Entry {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    tend::schedule::entries_from_source(&table, Path::new("tend.toml"), None)
        .unwrap()
        .remove(0)
}

#[test]
fn a_stale_entry_is_reported_with_reason_stale() {
    let _g = lock();
    let e = entry(
        "[[schedule]]\nname = \"nightly\"\ncron = \"0 2 * * *\"\ntimezone = \"UTC\"\nrecipe = \"r.rhai\"\nhosts = \"db1\"\nalert_after = 2\n",
    );
    let state: EntryState = serde_json::from_str(
        r#"{"name":"nightly","last_fire":"2027-01-03T02:00:00Z","last_run_id":"20270103-020000-000-00000001",
            "last_outcome":"failed","last_duration_ms":10,"last_success":"2027-01-01T02:00:09Z",
            "consecutive_failures":2,"paused":false,"missed_fires":0,"history":[]}"#,
    )
    .unwrap();
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    assert!(!notify::stale(&e, Some(&state), at("2027-01-04T01:59:59Z")));
    assert!(notify::stale(&e, Some(&state), at("2027-01-04T02:00:00Z")));

    let (url, server) = serve_once(200);
    let ev = NotifyEvent::stale(&e, Some(&state), at("2027-01-04T02:00:00Z"));
    notify::send(&Notify::Webhook(url), &ev).unwrap();
    let v: serde_json::Value = serde_json::from_str(&server.join().unwrap().1).unwrap();
    assert_eq!(v["reason"], "stale");
    assert_eq!(v["schedule"], "nightly");
    assert_eq!(v["hosts"], serde_json::json!(["db1"]));
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("no successful run since 2027-01-01T02:00:09+00:00"));
}

#[test]
fn an_event_built_from_a_real_failed_run_reaches_a_command() {
    let _g = lock();
    let w = support::World::new();
    let boom = w.recipe(
        "boom.rhai",
        "//! Fails after a change.\nlet p = params(#{dir: \"\", token: secret()});\nfs::file(p.dir + \"/b.txt\", \"x\\n\");\nthrow \"boom\";\n",
    );
    let dir = format!("dir={}", w.root().display());
    // The daemon holds `env:` secrets in its environment; a notification command
    // does not get them.
    std::env::set_var("BACKUP_TOKEN", "daemon-held-secret");
    let mut c = w.command();
    c.args(["run", boom.to_str().unwrap(), "--json", "-p", &dir])
        .args(["-p", "token=env:TOKEN"])
        .env("TOKEN", "s3cret-value");
    let r = support::Run::from(c.output().unwrap());
    assert_ne!(r.code, 0);
    let state = tend::state::StateDir::open(&w.state()).unwrap();
    let meta = state.read_meta(&r.run_id()).unwrap();
    let ev = NotifyEvent::from_run("cleanup", &meta, Reason::Failed, "boom".into());
    assert!(ev.started.is_some() && ev.duration.is_some());

    let out = w.dir.path().join("env");
    let script = w.dir.path().join("page");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n{{ env; cat; }} > '{}'\n", out.display()),
    )
    .unwrap();
    make_executable(&script);
    let sent = notify::send(&Notify::Exec(script), &ev);
    std::env::remove_var("BACKUP_TOKEN");
    sent.unwrap();
    let got = std::fs::read_to_string(&out).unwrap();
    for line in [
        format!("TEND_RUN_ID={}", r.run_id()),
        "TEND_SCHEDULE=cleanup".into(),
        "TEND_OUTCOME=rolled_back".into(),
        "TEND_HOSTS=local".into(),
        "TEND_REASON=failed".into(),
    ] {
        assert!(got.lines().any(|l| l == line), "{line} not in:\n{got}");
    }
    // The run had a secret parameter: nothing of it is passed on.
    assert!(!got.contains("s3cret-value"), "{got}");
    assert!(!got.contains("daemon-held-secret"), "{got}");
}
