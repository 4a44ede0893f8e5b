//! `cron::entry` end to end through the real binary and the real `crontab(1)`:
//! locally (another user's crontab) and over a real sshd (the login user's own, and
//! another's through `become`), the dry-run's diff is the run's, a second run changes
//! nothing, a failed run and `tend rollback` leave the crontab byte for byte as it
//! was (or remove it when there was none), and a crontab edited since is left alone.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::process::Command;
use std::sync::Mutex;

use sshd::Sshd;
use support::{changes, World};

/// The test user's crontab is this machine's own: one test at a time touches it.
static CRONTAB: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    CRONTAB.lock().unwrap_or_else(|p| p.into_inner())
}

const USER: &str = sshd::TEST_USER;

fn crontab() -> Option<String> {
    let out = Command::new("crontab")
        .args(["-u", USER, "-l"])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

fn set_crontab(text: Option<&str>) {
    match text {
        Some(t) => {
            use std::io::Write;
            let mut c = Command::new("crontab")
                .args(["-u", USER, "-"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(t.as_bytes()).unwrap();
            assert!(c.wait().unwrap().success());
        }
        None => {
            let _ = Command::new("crontab")
                .args(["-u", USER, "-r"])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Put back the test user's crontab as it was before the test, however it ends.
struct KeepCrontab(Option<String>);

impl Drop for KeepCrontab {
    fn drop(&mut self) {
        set_crontab(self.0.as_deref());
    }
}

const CRON: &str = r#"
let p = params(#{user: "", fail: false});
let o = if p.user == "" { #{} } else { #{user: p.user} };
cron::entry("tend-t-backup", "30 2 * * mon-fri", "/usr/local/bin/backup --all >/dev/null 2>&1", o);
cron::entry("tend-t-daily", "@daily", "find /tmp -name 'tend-t-*' -mtime +7 -delete", o);
cron::entry("tend-t-gone", "* * * * *", "true", o + #{state: "absent"});
if p.fail { throw "injected"; }
"#;

/// The plan equals the run (diffs included), a second run changes nothing, a failed
/// run and `tend rollback` leave the crontab byte for byte as it was: `initial` is
/// the crontab the user starts with (`None`: none at all).
fn cron_exact(w: &World, extra: &[&str], initial: Option<&str>) {
    set_crontab(initial);
    let recipe = w.recipe("cron.rhai", CRON);
    let dry = w.run(&recipe, &[&["--dry-run"], extra].concat());
    dry.assert_code(0);
    assert_eq!(crontab().as_deref(), initial, "a dry-run changed it");
    let plan = changes(&dry);
    assert_eq!(plan.len(), 2, "{}", dry.stdout);
    assert!(plan[0]
        .2
        .contains("+# tend: tend-t-backup\n+30 2 * * mon-fri /usr/local/bin/backup"));

    let failed = w.run(&recipe, &[&["-p", "fail=true"], extra].concat());
    failed.assert_code(3);
    assert_eq!(
        crontab().as_deref(),
        initial,
        "rollback:\n{}",
        failed.stdout
    );

    let real = w.run(&recipe, extra);
    real.assert_code(0);
    assert_eq!(changes(&real), plan, "the plan is the run");
    let now = crontab().unwrap();
    let expect = format!(
        "{}# tend: tend-t-backup\n30 2 * * mon-fri /usr/local/bin/backup --all >/dev/null 2>&1\n\
         # tend: tend-t-daily\n@daily find /tmp -name 'tend-t-*' -mtime +7 -delete\n",
        initial.unwrap_or("")
    );
    assert_eq!(now, expect);

    let again = w.run(&recipe, extra);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "{}", again.stdout);

    // A changed schedule replaces the line in place.
    let moved = w.recipe(
        "moved.rhai",
        &CRON.replace("30 2 * * mon-fri", "45 3 * * *"),
    );
    let m = w.run(&moved, extra);
    m.assert_code(0);
    assert_eq!(m.changed_count(), 1);
    assert_eq!(
        crontab().unwrap(),
        expect.replace("30 2 * * mon-fri", "45 3 * * *")
    );

    // Edited by hand since: a rollback leaves it alone (and says so).
    let edited = format!("{}0 0 * * * edited by hand\n", crontab().unwrap());
    set_crontab(Some(&edited));
    let refused = w.tend(&["rollback", &m.run_id()]);
    refused.assert_code(4);
    assert!(
        refused
            .stdout
            .contains("crontab was changed since the run wrote it; not restored"),
        "{}",
        refused.stdout
    );
    assert_eq!(crontab().unwrap(), edited);
    set_crontab(Some(&expect.replace("30 2 * * mon-fri", "45 3 * * *")));

    w.tend(&["rollback", &m.run_id()]).assert_code(0);
    assert_eq!(crontab().unwrap(), expect);
    w.tend(&["rollback", &real.run_id()]).assert_code(0);
    assert_eq!(crontab().as_deref(), initial, "byte for byte");
}

const INITIAL: &str = "# m h dom mon dow command\nMAILTO=\"\"\n\n0 5 * * 1 tar -zcf /var/backups/home.tgz /home/   \n# tend: tend-t-gone\n* * * * * true\n";

#[test]
fn cron_entries_locally_in_another_users_crontab() {
    let _g = serial();
    sshd::ensure_test_users();
    let _keep = KeepCrontab(crontab());
    let w = World::new();
    let user = format!("user={USER}");
    // The existing `tend-t-gone` entry is removed by the recipe; start without it
    // for the expected text to read simply.
    let initial = INITIAL.replace("# tend: tend-t-gone\n* * * * * true\n", "");
    cron_exact(&w, &["-p", &user], Some(&initial));
    cron_exact(&w, &["-p", &user], None);

    // An entry the recipe removes: the diff shows it going.
    set_crontab(Some(INITIAL));
    let gone = w.run(
        &w.recipe("gone.rhai", &format!("cron::entry(\"tend-t-gone\", \"\", \"\", #{{user: \"{USER}\", state: \"absent\"}});\n")),
        &[],
    );
    gone.assert_code(0);
    assert!(changes(&gone)[0]
        .2
        .contains("-# tend: tend-t-gone\n-* * * * * true\n"));
    assert_eq!(crontab().unwrap(), initial);
}

#[test]
fn cron_entries_over_ssh_in_the_login_users_own_crontab() {
    let _g = serial();
    let h = Sshd::start_tendtest();
    let _keep = KeepCrontab(crontab());
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    let initial = INITIAL.replace("# tend: tend-t-gone\n* * * * * true\n", "");
    cron_exact(&w, &[], Some(&initial));
    cron_exact(&w, &[], None);

    // Another user's crontab needs root: `become`, and its rollback runs as root too.
    let other = sshd::NOSUDO_USER;
    let listed = || {
        let out = Command::new("crontab")
            .args(["-u", other, "-l"])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    };
    // A test account: nothing of its own in its crontab (a failed test's leftover).
    let _ = Command::new("crontab")
        .args(["-u", other, "-r"])
        .stderr(std::process::Stdio::null())
        .status();
    let body = format!(
        "let p = params(#{{fail: false}});\n\
         cron::entry(\"tend-t-other\", \"@hourly\", \"true\", #{{user: \"{other}\", become: true}});\n\
         if p.fail {{ throw \"injected\"; }}\n"
    );
    let recipe = w.recipe("other.rhai", &body);
    w.run(&recipe, &["-p", "fail=true"]).assert_code(3);
    assert_eq!(listed(), None);
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    assert_eq!(
        listed().as_deref(),
        Some("# tend: tend-t-other\n@hourly true\n")
    );
    w.tend(&["rollback", &r.run_id()]).assert_code(0);
    assert_eq!(listed(), None, "removed: there was none");
}

#[test]
fn a_bad_cron_schedule_is_refused_at_its_line() {
    let w = World::new();
    for (schedule, says) in [
        (
            "0 25 * * *",
            "hour 25 in \"0 25 * * *\" is out of range 0-23",
        ),
        ("*/5 * * *", "has 4 fields"),
        ("@dayly", "\"@dayly\" is not a cron macro"),
    ] {
        let r = w.run(
            &w.recipe(
                "r.rhai",
                &format!("\ncron::entry(\"tend-t-x\", \"{schedule}\", \"true\");\n"),
            ),
            &[],
        );
        assert_ne!(r.code, 0);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(all.contains("r.rhai:2:") && all.contains(says), "{all}");
    }
}
