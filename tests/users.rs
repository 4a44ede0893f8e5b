//! `user::present`, `user::absent`, `group::present`, `group::absent`,
//! `ssh::authorized_key` and `owner:`/`group:` by name, end to end through the real
//! binary on this machine's real accounts: the dry-run plans exactly the steps and
//! diffs the run then takes and changes nothing, a second run changes nothing, and a
//! rollback (by hand, or after a `throw`) leaves /etc/passwd, /etc/group, /etc/shadow
//! and /etc/gshadow as they were byte for byte; locally and over a real sshd as a
//! user with sudo (`become`).
//!
//! Every test changes /etc/passwd: they take one lock (a file lock, so test binaries
//! that create their own accounts wait too), use names `tend-t-*`, and remove what
//! they made even when they fail.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use sshd::Sshd;
use support::{changes, World};

const DBS: [&str; 4] = ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"];
const USERS: [&str; 4] = ["tend-t-u1", "tend-t-u2", "tend-t-u3", "tend-t-u4"];
const GROUPS: [&str; 4] = ["tend-t-g1", "tend-t-g2", "tend-t-g3", "tend-t-u1"];
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlbmQtdGVzdC1rZXktb25lLW9ubHktZm9yLXRlc3Rz";
/// A hash planted in /etc/shadow that must never show up anywhere else.
const HASH: &str = "$6$tendsalt$TENDTESTHASHmustneverleak";

/// Held for the whole test: the accounts of this machine are one resource.
struct Accounts {
    _lock: std::fs::File,
}

impl Accounts {
    fn lock() -> Accounts {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/tend-test-users.lock")
            .unwrap();
        f.lock().unwrap();
        let a = Accounts { _lock: f };
        a.clean();
        a
    }

    fn clean(&self) {
        for u in USERS {
            let _ = Command::new("userdel").args(["-r", u]).output();
        }
        for g in GROUPS {
            let _ = Command::new("groupdel").arg(g).output();
        }
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        self.clean();
    }
}

fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dbs() -> BTreeMap<&'static str, Vec<u8>> {
    DBS.iter()
        .map(|p| (*p, std::fs::read(p).unwrap()))
        .collect()
}

#[track_caller]
fn assert_dbs(before: &BTreeMap<&'static str, Vec<u8>>) {
    for (p, bytes) in dbs() {
        assert!(
            before[p] == bytes,
            "{p} differs:\nbefore:\n{}\nnow:\n{}",
            String::from_utf8_lossy(&before[p]),
            String::from_utf8_lossy(&bytes)
        );
    }
}

fn passwd_line(user: &str) -> Option<String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.split(':').next() == Some(user))
        .map(String::from)
}

/// Existing accounts the recipe changes and removes: u2 (in g2, a password), u3 (a
/// password, ageing fields), g3.
fn setup() {
    sh("groupadd tend-t-g2 && useradd -m -s /bin/sh -G tend-t-g2 tend-t-u2");
    sh("useradd -M -s /bin/sh -c 'Old One' tend-t-u3 && chage -M 30 -W 5 tend-t-u3");
    sh(&format!("echo 'tend-t-u3:{HASH}' | chpasswd -e"));
    sh("groupadd tend-t-g3");
}

/// `own` holds the files given owners: outside the world's root, which a run over
/// SSH hands to the login user again before each run.
fn body(own: &std::path::Path) -> String {
    format!(
        r#"
group::present("tend-t-g1");
user::present("tend-t-u1", #{{groups: ["tend-t-g1"], comment: "Tend Test", shell: "/bin/bash"}});
ssh::authorized_key("tend-t-u1", "{KEY} first@comment");
ssh::authorized_key("tend-t-u1", "{KEY} same key, other comment");
fs::file("{owned}", #{{content: "x\n", owner: "tend-t-u1", group: "tend-t-g1"}});
fs::dir("{dir}", #{{owner: "tend-t-u2", group: 0}});
user::present("tend-t-u2", #{{shell: "/bin/bash", groups: ["tend-t-g1"]}});
user::absent("tend-t-u3");
group::absent("tend-t-g3");
group::present("tend-t-g2", #{{gid: 4242}});
"#,
        owned = own.join("owned").display(),
        dir = own.join("d").display(),
    )
}

/// The whole protocol with `wrap` around the recipe's body (`become(|| …)` over SSH).
fn exact(w: &World, wrap: fn(&str) -> String) {
    let accounts = Accounts::lock();
    setup();
    let own = tempfile::tempdir().unwrap();
    let before = dbs();
    let files = w.snapshot();
    let recipe = w.recipe("r.rhai", &wrap(&body(own.path())));

    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_dbs(&before);
    support::assert_same(&files, &w.snapshot());
    assert!(passwd_line("tend-t-u1").is_none());

    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert_eq!(changes(&dry), changes(&real), "the plan is the run");
    assert_eq!(dry.changed_paths(), real.changed_paths());
    assert_eq!(real.changed_count(), 9, "{}", real.stdout);

    let u1 = passwd_line("tend-t-u1").expect("tend-t-u1 made");
    assert!(u1.ends_with(":Tend Test:/home/tend-t-u1:/bin/bash"), "{u1}");
    let (uid, gid): (u32, u32) = {
        let f: Vec<&str> = u1.split(':').collect();
        (f[2].parse().unwrap(), f[3].parse().unwrap())
    };
    let keys = std::fs::read_to_string("/home/tend-t-u1/.ssh/authorized_keys").unwrap();
    assert_eq!(keys, format!("{KEY} first@comment\n"));
    let m = std::fs::metadata("/home/tend-t-u1/.ssh/authorized_keys").unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (uid, gid, 0o600));
    let m = std::fs::metadata("/home/tend-t-u1/.ssh").unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (uid, 0o700));
    let g1 = std::fs::read_to_string("/etc/group").unwrap();
    assert!(
        g1.contains("tend-t-g1:x:") && g1.contains(":tend-t-u1,tend-t-u2\n"),
        "{g1}"
    );
    assert!(g1.contains("tend-t-g2:x:4242:"), "{g1}");
    assert!(!g1.contains("tend-t-g3"));
    let owned = std::fs::metadata(own.path().join("owned")).unwrap();
    assert_eq!(owned.uid(), uid);
    assert!(passwd_line("tend-t-u2").unwrap().ends_with(":/bin/bash"));
    assert!(passwd_line("tend-t-u3").is_none());
    assert!(std::fs::read_to_string("/etc/shadow")
        .unwrap()
        .contains("tend-t-u1:"));

    let again = w.run(&recipe, &[]);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "second run:\n{}", again.stdout);

    // The hash of the removed user is in no output and no state file of tend.
    for r in [&dry, &real, &again] {
        assert!(!r.stdout.contains("TENDTESTHASH") && !r.stderr.contains("TENDTESTHASH"));
    }
    let grep = Command::new("grep")
        .args(["-rl", "TENDTESTHASH"])
        .arg(w.dir.path())
        .output()
        .unwrap();
    let holders = String::from_utf8_lossy(&grep.stdout).into_owned();
    for f in holders.lines() {
        assert!(f.contains("/backup/"), "the hash is in {f}");
        let mode = std::fs::metadata(f).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    assert_eq!(holders.lines().count(), 1, "{holders}");

    let rb = w.tend(&["rollback", &real.run_id(), "--json"]);
    rb.assert_code(0);
    assert_dbs(&before);
    support::assert_same(&files, &w.snapshot());
    assert!(std::fs::read_dir(own.path()).unwrap().next().is_none());
    assert!(!std::path::Path::new("/home/tend-t-u1").exists());
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    assert!(shadow.contains(&format!("tend-t-u3:{HASH}:")));

    // The same steps and a failure after them: everything comes back.
    let failing = w.recipe(
        "fail.rhai",
        &wrap(&format!("{}throw \"injected\";\n", body(own.path()))),
    );
    let failed = w.run(&failing, &[]);
    failed.assert_code(3);
    assert_eq!(failed.changed_count(), 9, "{}", failed.stdout);
    assert_dbs(&before);
    support::assert_same(&files, &w.snapshot());
    assert!(std::fs::read_dir(own.path()).unwrap().next().is_none());
    assert!(!std::path::Path::new("/home/tend-t-u1").exists());
    drop(accounts);
}

#[test]
fn users_and_groups_plan_run_again_and_roll_back_locally() {
    let w = World::new();
    exact(&w, |b| b.to_string());
}

#[test]
fn users_and_groups_over_ssh_through_become() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    exact(&w, |b| format!("become(|| {{\n{b}\n}});\n"));
}

#[test]
fn a_home_changed_since_is_not_removed_by_a_rollback() {
    let w = World::new();
    let _accounts = Accounts::lock();
    let r = w.run(&w.recipe("r.rhai", "user::present(\"tend-t-u4\");\n"), &[]);
    r.assert_code(0);
    std::fs::write("/home/tend-t-u4/notes.txt", "mine\n").unwrap();
    let rb = w.tend(&["rollback", &r.run_id()]);
    assert_ne!(rb.code, 0, "{}{}", rb.stdout, rb.stderr);
    let said = format!("{}{}", rb.stdout, rb.stderr);
    assert!(
        said.contains("home /home/tend-t-u4 of user tend-t-u4 changed since the run created it"),
        "{said}"
    );
    assert!(passwd_line("tend-t-u4").is_some());
    assert_eq!(
        std::fs::read_to_string("/home/tend-t-u4/notes.txt").unwrap(),
        "mine\n"
    );
}

#[test]
fn a_user_changed_since_is_not_reverted() {
    let w = World::new();
    let _accounts = Accounts::lock();
    sh("useradd -M -s /bin/sh tend-t-u4");
    let r = w.run(
        &w.recipe(
            "r.rhai",
            "user::present(\"tend-t-u4\", #{shell: \"/bin/bash\"});\n",
        ),
        &[],
    );
    r.assert_code(0);
    sh("usermod -s /bin/dash tend-t-u4");
    let rb = w.tend(&["rollback", &r.run_id()]);
    assert_ne!(rb.code, 0);
    assert!(
        format!("{}{}", rb.stdout, rb.stderr)
            .contains("user tend-t-u4 changed since the run left it"),
        "{}{}",
        rb.stdout,
        rb.stderr
    );
    assert!(passwd_line("tend-t-u4").unwrap().ends_with(":/bin/dash"));
}

#[test]
fn an_unknown_owner_is_an_error_at_its_line() {
    let w = World::new();
    let r = w.run(
        &w.recipe(
            "r.rhai",
            &format!(
                "fs::dir(\"{}\");\nfs::file(\"{}\", #{{content: \"x\", owner: \"tend-t-nobody\"}});\n",
                w.path("d"),
                w.path("f")
            ),
        ),
        &[],
    );
    assert_ne!(r.code, 0);
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains("r.rhai:2:") && said.contains("no user tend-t-nobody on local"),
        "{said}"
    );
    assert!(!w.root().join("f").exists() && !w.root().join("d").exists());
}

#[test]
fn a_key_is_removed_by_type_and_blob_whatever_its_comment() {
    let w = World::new();
    let _accounts = Accounts::lock();
    sh("useradd -m -s /bin/sh tend-t-u4");
    std::fs::create_dir_all("/home/tend-t-u4/.ssh").unwrap();
    std::fs::write(
        "/home/tend-t-u4/.ssh/authorized_keys",
        format!("ssh-rsa AAAAother keep@me\nfrom=\"10.0.0.1\" {KEY} old@comment\n"),
    )
    .unwrap();
    let recipe = w.recipe(
        "r.rhai",
        &format!(
            "ssh::authorized_key(\"tend-t-u4\", \"{KEY} new@comment\", #{{state: \"absent\"}});\n"
        ),
    );
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    assert_eq!(
        std::fs::read_to_string("/home/tend-t-u4/.ssh/authorized_keys").unwrap(),
        "ssh-rsa AAAAother keep@me\n"
    );
    assert_eq!(w.run(&recipe, &[]).changed_count(), 0);
}
