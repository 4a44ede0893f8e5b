//! A private Dovecot for tests: `dovecot -c CONF` with base_dir, state and a Maildir
//! store in a temp dir, users from a passwd-file userdb, no listeners; `doveadm -c
//! CONF` talks to it. Standalone, next to sshd.rs: `#[path = "support/dovecot.rs"]
//! mod dovecot;` (it needs `mod sshd;` for the test account).
//!
//! Old messages: Dovecot's save date is the time `doveadm save` caches for the
//! message (`mail_always_cache_fields = date.save`), which is the process clock, so
//! old mail is saved under `faketime` (doveadm `-k` keeps LD_PRELOAD through its own
//! re-exec). That is exactly what `savedbefore Nd` then matches.
//!
//! The mail users have the uid of `tendtest` (Dovecot refuses uid 0 for mail), the
//! account the sshd tests log in as, so one store serves a local run (as root:
//! doveadm switches to the user) and a run over SSH (as tendtest).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sshd::{self, TEST_USER};

/// A private Dovecot instance; stopped (by its master pid) when dropped.
pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub conf: String,
    pid: Option<u32>,
}

/// One message as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Msg {
    pub user: String,
    pub mailbox: String,
    pub subject: String,
    pub guid: String,
    pub flags: String,
}

impl Dovecot {
    pub fn start(users: &[&str]) -> Dovecot {
        sshd::ensure_test_users();
        let (uid, gid) = sshd::uid_of(TEST_USER);
        let dir = tempfile::Builder::new()
            .prefix("tend-dovecot-")
            .tempdir()
            .unwrap();
        let d = dir.path().display().to_string();
        // tendtest (over SSH) reads the config and talks to the sockets.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["base", "state", "mail"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        chown(&dir.path().join("mail"));
        let passwd: String = users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}pw:{uid}:{gid}::{d}/mail/{u}::\n"))
            .collect();
        std::fs::write(dir.path().join("passwd"), passwd).unwrap();
        let conf = format!(
            "base_dir = {d}/base\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
             protocols =\nssl = no\n\
             service anvil {{\n  chroot =\n}}\n\
             service auth {{\n  unix_listener auth-userdb {{\n    mode = 0666\n    user = {TEST_USER}\n  }}\n}}\n\
             service stats {{\n  unix_listener stats-writer {{\n    mode = 0666\n  }}\n}}\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = username_format=%u {d}/passwd\n}}\n\
             mail_location = maildir:{d}/mail/%u/Maildir\n\
             mail_always_cache_fields = date.save\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n"
        );
        let conf_path = dir.path().join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let conf = conf_path.display().to_string();
        // The master daemonizes: it keeps no pipe of ours open (output() would wait
        // for it forever).
        let ok = Command::new("dovecot")
            .args(["-c", &conf])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "dovecot -c {conf} failed");
        let mut dv = Dovecot {
            dir,
            conf,
            pid: None,
        };
        // Ready when the master wrote its pid (whole: the file may exist empty a
        // moment) and auth listens. The pid is kept first, so that a failed start
        // is still stopped by Drop.
        let pidfile = dv.dir.path().join("base/master.pid");
        let socket = dv.dir.path().join("base/auth-userdb");
        let start = Instant::now();
        loop {
            if dv.pid.is_none() {
                dv.pid = std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|t| t.trim().parse().ok());
            }
            if dv.pid.is_some() && socket.exists() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "dovecot did not start: {}",
                dv.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        dv
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// `doveadm -c CONF ARGS…`, which must succeed; its stdout.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "doveadm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Deliver a message to `folder` (created when missing) with `flags` (like
    /// `\Seen $Work`, "" for none); `old`: saved on 2024-01-01.
    pub fn save(&self, user: &str, folder: &str, subject: &str, flags: &str, old: bool) {
        if !self
            .doveadm(&["mailbox", "list", "-u", user])
            .lines()
            .any(|l| l == folder)
        {
            self.doveadm(&["mailbox", "create", "-u", user, folder]);
        }
        let mut cmd = if old {
            let mut c = Command::new("faketime");
            c.args(["2024-01-01 00:00:00", "doveadm", "-k"]);
            c
        } else {
            Command::new("doveadm")
        };
        let mut child = cmd
            .args(["-c", &self.conf, "save", "-u", user, "-m", folder])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("From: x@example.org\nSubject: {subject}\n\n{subject}\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        if !flags.is_empty() {
            self.doveadm(&[
                "flags", "add", "-u", user, flags, "mailbox", folder, "header", "Subject", subject,
            ]);
        }
    }

    /// Every message of `users`, in every mailbox, with its flags (`\Recent` left out:
    /// it only says no session has seen the message yet).
    pub fn store(&self, users: &[&str]) -> BTreeSet<Msg> {
        let mut all = BTreeSet::new();
        for u in users {
            let out = self.doveadm(&[
                "-f",
                "tab",
                "fetch",
                "-u",
                u,
                "mailbox guid flags hdr.subject",
                "all",
            ]);
            for l in out.lines().skip(1).filter(|l| !l.is_empty()) {
                let c: Vec<&str> = l.split('\t').collect();
                let flags: Vec<&str> = c[2]
                    .split(' ')
                    .filter(|f| *f != "\\Recent" && !f.is_empty())
                    .collect();
                all.insert(Msg {
                    user: u.to_string(),
                    mailbox: c[0].to_string(),
                    guid: c[1].to_string(),
                    flags: flags.join(" "),
                    subject: c[3].to_string(),
                });
            }
        }
        all
    }

    pub fn mailboxes(&self, user: &str) -> Vec<String> {
        self.doveadm(&["mailbox", "list", "-u", user])
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            // The master removes its pid file when it has stopped its children.
            let pidfile = self.dir.path().join("base/master.pid");
            let start = Instant::now();
            while pidfile.exists() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn chown(p: &Path) {
    let ok = Command::new("chown")
        .args(["-R", &format!("{TEST_USER}:{TEST_USER}")])
        .arg(p)
        .status()
        .unwrap();
    assert!(ok.success());
}
