//! Services on the target, end to end through the real binary: `service::*` against
//! a real init script (a tiny daemon started and stopped for real, under the System V
//! path: systemd is not PID 1 here), `service::enabled` / `disabled` and
//! `systemd::unit` / `systemd::timer` against unit files offline (`systemctl
//! --root`): locally and over a real sshd, the dry-run's plan is what the run does, a
//! second run changes nothing, and a failure after the steps (or `tend rollback`)
//! puts everything back. `cron::entry`: tests/cron.rs.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use sshd::Sshd;
use support::{assert_same, changes, World};

/// Runlevel links (`update-rc.d` renumbers them) are this machine's own: one test
/// at a time touches them.
static MACHINE: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|p| p.into_inner())
}

fn sh(script: &str) -> (i32, String) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

// ------------------------------------------------------------------ a real daemon

/// A System V init script for a tiny daemon (a shell loop), with its pid file in
/// /run and a log of the reloads it was asked for. Removed with its links on drop.
struct Daemon {
    name: String,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn install(tag: &str) -> Daemon {
        let name = format!("tend-t-svc-{}-{tag}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("reloads");
        let script = format!(
            r#"#!/bin/sh
### BEGIN INIT INFO
# Provides:          {name}
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: tend test daemon
### END INIT INFO
PIDFILE=/run/{name}.pid
running() {{ [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }}
case "$1" in
  start) running && exit 0
         setsid sh -c 'while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &
         echo $! > "$PIDFILE" ;;
  stop) running && kill "$(cat "$PIDFILE")"; rm -f "$PIDFILE" ;;
  restart) "$0" stop; "$0" start ;;
  reload) running || exit 7; echo reload >> {log} ;;
  status) running && exit 0; exit 3 ;;
  *) echo "usage: $0 start|stop|restart|reload|status" >&2; exit 2 ;;
esac
"#,
            log = log.display()
        );
        let path = format!("/etc/init.d/{name}");
        std::fs::write(&path, script).unwrap();
        sh(&format!("chmod 755 {path}"));
        Daemon { name, dir }
    }

    fn running(&self) -> bool {
        sh(&format!("/etc/init.d/{} status", self.name)).0 == 0
    }

    fn pid(&self) -> String {
        std::fs::read_to_string(format!("/run/{}.pid", self.name)).unwrap_or_default()
    }

    /// Its runlevel links, `rc2.d/S01name`…
    fn links(&self) -> Vec<String> {
        let (_, out) = sh(&format!(
            "cd /etc && ls -d rc?.d/[SK][0-9][0-9]{} 2>/dev/null",
            self.name
        ));
        out.lines().map(String::from).collect()
    }

    fn reloads(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("reloads"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    fn param(&self) -> String {
        format!("name={}", self.name)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        sh(&format!(
            "/etc/init.d/{0} stop; update-rc.d -f {0} remove >/dev/null 2>&1; rm -f /etc/init.d/{0} /run/{0}.pid",
            self.name
        ));
    }
}

const UP: &str = r#"
let p = params(#{name: "", fail: false});
service::running(p.name);
service::enabled(p.name);
if p.fail { throw "injected"; }
"#;

/// The plan, a failed run, the run, a second run, then stop + disable and a
/// `tend rollback` of that: on whichever target `w` runs on.
fn up_and_down(w: &World, d: &Daemon, up: &str, down: &str) {
    let name = &d.name;
    let recipe = w.recipe("up.rhai", up);
    let p = d.param();

    let dry = w.run(&recipe, &["-p", &p, "--dry-run"]);
    dry.assert_code(0);
    assert_eq!(
        changes(&dry),
        vec![
            (
                "service::running".to_string(),
                format!("{name} (sysv): inactive -> active"),
                String::new()
            ),
            (
                "service::enabled".to_string(),
                format!("{name} (sysv): none -> enabled"),
                String::new()
            ),
        ],
        "{}",
        dry.stdout
    );
    assert!(!d.running(), "a dry-run started it");
    assert!(
        d.links().is_empty(),
        "a dry-run enabled it: {:?}",
        d.links()
    );

    let failed = w.run(&recipe, &["-p", &p, "-p", "fail=true"]);
    failed.assert_code(3);
    assert!(
        !d.running(),
        "not stopped by the rollback:\n{}",
        failed.stdout
    );
    assert!(d.links().is_empty(), "links left: {:?}", d.links());

    let real = w.run(&recipe, &["-p", &p]);
    real.assert_code(0);
    assert_eq!(changes(&real), changes(&dry), "the plan is the run");
    assert!(d.running());
    let links = d.links();
    assert_eq!(
        links.iter().filter(|l| l.contains("/S")).count(),
        4,
        "started in runlevels 2-5: {links:?}"
    );

    let again = w.run(&recipe, &["-p", &p]);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "{}", again.stdout);

    let down = w.recipe("down.rhai", down);
    let stop = w.run(&down, &["-p", &p]);
    stop.assert_code(0);
    assert_eq!(stop.changed_count(), 2, "{}", stop.stdout);
    assert!(!d.running());
    assert!(
        d.links().iter().all(|l| l.contains("/K")),
        "{:?}",
        d.links()
    );

    let back = w.tend(&["rollback", &stop.run_id(), "--json"]);
    back.assert_code(0);
    assert!(
        d.running(),
        "rollback did not start it again:\n{}",
        back.stdout
    );
    assert_eq!(d.links(), links, "rollback restores the links");
}

#[test]
fn a_real_daemon_is_started_enabled_stopped_and_rolled_back_locally() {
    let _g = serial();
    let w = World::new();
    let d = Daemon::install("local");
    up_and_down(
        &w,
        &d,
        UP,
        "let p = params(#{name: \"\"});\nservice::stopped(p.name);\nservice::disabled(p.name);\n",
    );

    // Restart and reload: a new process, one reload; nothing a rollback must undo.
    let pid = d.pid();
    let again = w.recipe(
        "again.rhai",
        "let p = params(#{name: \"\"});\nservice::restarted(p.name);\nservice::reloaded(p.name);\n\
         let s = service::status(p.name);\nlog::info(`${s.active} ${s.enabled} ${s.state} ${s.pid} ${s.manager}`);\n",
    );
    let r = w.run(&again, &["-p", &d.param()]);
    r.assert_code(0);
    assert_ne!(d.pid(), pid, "not restarted");
    assert_eq!(d.reloads(), 1);
    let status = r.event("log")["message"].as_str().unwrap().to_string();
    assert_eq!(
        status,
        format!("true true enabled {} sysv", d.pid().trim()),
        "service::status"
    );
    let back = w.tend(&["rollback", &r.run_id(), "--json"]);
    back.assert_code(0);
    assert!(d.running(), "a rollback of a restart leaves it running");

    // The commonest handler: reload the daemon once when its config changed.
    let conf = w.path("app.conf");
    let handled = w.recipe(
        "handled.rhai",
        &format!(
            "let p = params(#{{name: \"\", v: \"\"}});\n\
             handler(\"reload it\", || service::reloaded(p.name));\n\
             if fs::file(\"{conf}\", p.v).changed {{ notify(\"reload it\"); }}\n"
        ),
    );
    for (v, reloads) in [("1", 2), ("1", 2), ("2", 3)] {
        let r = w.run(&handled, &["-p", &d.param(), "-p", &format!("v={v}")]);
        r.assert_code(0);
        assert_eq!(d.reloads(), reloads, "{}", r.stdout);
    }

    // Stopped by a run, started by somebody since: that is the state before the run,
    // and its rollback has nothing to do (the daemon is not restarted).
    let stop = w.recipe(
        "stop.rhai",
        "let p = params(#{name: \"\"});\nservice::stopped(p.name);\nservice::disabled(p.name);\n",
    );
    let r = w.run(&stop, &["-p", &d.param()]);
    r.assert_code(0);
    sh(&format!("/etc/init.d/{} start", d.name));
    // Disabled by the run, its links removed by somebody since: neither the state
    // before nor the one the run left, so the rollback refuses to touch it.
    sh(&format!("update-rc.d -f {} remove", d.name));
    let pid = d.pid();
    let back = w.tend(&["rollback", &r.run_id()]);
    back.assert_code(4);
    assert!(
        back.stdout.contains(&format!(
            "service {} is without runlevel links now, not disabled at boot as the run left it; not changed",
            d.name
        )) && back.stdout.contains("active again: not needed"),
        "{}",
        back.stdout
    );
    assert_eq!(d.pid(), pid, "left as it was");
    assert!(d.links().is_empty());
}

#[test]
fn a_real_daemon_over_ssh_with_become() {
    let _g = serial();
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    let d = Daemon::install("ssh");
    up_and_down(
        &w,
        &d,
        &UP.replace(
            "service::running(p.name);\nservice::enabled(p.name);",
            "become(|| { service::running(p.name); service::enabled(p.name); });",
        ),
        "let p = params(#{name: \"\"});\nservice::stopped(p.name, #{become: true});\nservice::disabled(p.name, #{become: true});\n",
    );
}

#[test]
fn an_unknown_service_is_an_error_at_its_line() {
    let w = World::new();
    let r = w.run(
        &w.recipe("r.rhai", "\nservice::running(\"tend-t-no-such-svc\");\n"),
        &[],
    );
    r.assert_code(1);
    assert!(
        r.stdout.contains("r.rhai:2:") && r.stdout.contains("no service tend-t-no-such-svc"),
        "{}",
        r.stdout
    );
}

// ------------------------------------------------------------------ unit files offline

const UNITS: &str = r#"
let p = params(#{root: "", fail: false});
systemd::unit("tend-t-app.service", "[Unit]\nDescription=tend test\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n", #{root: p.root});
systemd::timer("tend-t-app", #{on_calendar: "*-*-* 03:00:00", persistent: true, root: p.root});
service::enabled("tend-t-app.service", #{root: p.root});
service::enabled("tend-t-app.timer", #{root: p.root});
if p.fail { throw "injected"; }
"#;

#[test]
fn unit_files_and_their_enabling_offline_with_systemctl_root() {
    let w = World::new();
    w.mkdir("etc/systemd/system", 0o755);
    let recipe = w.recipe("units.rhai", UNITS);
    let root = format!("root={}", w.root().display());
    let before = w.snapshot();

    let dry = w.run(&recipe, &["-p", &root, "--dry-run"]);
    dry.assert_code(0);
    assert_same(&before, &w.snapshot());
    let plan = changes(&dry);
    assert_eq!(plan.len(), 4, "{}", dry.stdout);
    assert_eq!(
        plan[2].1,
        "tend-t-app.service (systemd): disabled -> enabled"
    );
    assert_eq!(plan[3].1, "tend-t-app.timer (systemd): disabled -> enabled");
    assert!(plan[1]
        .2
        .contains("+OnCalendar=*-*-* 03:00:00\n+Persistent=true\n"));

    let failed = w.run(&recipe, &["-p", &root, "-p", "fail=true"]);
    failed.assert_code(3);
    assert_same(&before, &w.snapshot());

    let real = w.run(&recipe, &["-p", &root]);
    real.assert_code(0);
    assert_eq!(changes(&real), plan, "the plan is the run");
    let wants = w
        .root()
        .join("etc/systemd/system/timers.target.wants/tend-t-app.timer");
    assert_eq!(
        std::fs::read_link(&wants).unwrap(),
        PathBuf::from("/etc/systemd/system/tend-t-app.timer")
    );
    assert!(w
        .root()
        .join("etc/systemd/system/multi-user.target.wants/tend-t-app.service")
        .is_symlink());
    // Under a root nothing is reloaded: the handler is not notified.
    assert!(!real.stdout.contains("daemon_reload"), "{}", real.stdout);

    let again = w.run(&recipe, &["-p", &root]);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "{}", again.stdout);

    let disable = w.recipe(
        "disable.rhai",
        "let p = params(#{root: \"\"});\nservice::disabled(\"tend-t-app.timer\", #{root: p.root});\n",
    );
    let after_enable = w.snapshot();
    let off = w.run(&disable, &["-p", &root]);
    off.assert_code(0);
    assert!(!wants.exists());
    w.tend(&["rollback", &off.run_id()]).assert_code(0);
    assert_same(&after_enable, &w.snapshot());
    w.tend(&["rollback", &real.run_id()]).assert_code(0);
    assert_same(&before, &w.snapshot());
}

#[test]
fn a_unit_name_without_its_kind_and_a_timer_without_a_time_are_refused() {
    let w = World::new();
    w.mkdir("etc/systemd/system", 0o755);
    let r = w.run(
        &w.recipe_in_root(
            "r.rhai",
            "systemd::unit(\"app\", \"x\", #{root: \"ROOT\"});\n",
        ),
        &[],
    );
    assert!(
        r.stdout.contains("give its kind too"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let r = w.run(
        &w.recipe_in_root("t.rhai", "systemd::timer(\"app\", #{root: \"ROOT\"});\n"),
        &[],
    );
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("give `on_calendar`"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(!w.root().join("etc/systemd/system/app.timer").exists());
}
