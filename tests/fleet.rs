//! Fleet runs over SSH, end to end: the real binary against real `sshd` processes on
//! 127.0.0.1, one per simulated host, each with its own port, host key, client key and
//! working directory.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::fmt::Write as _;

use sshd::Sshd;
use support::{assert_same, snapshot, Run, World};

/// `n` hosts h1..hn in a tend.toml, each with `root` (its own directory) and its own
/// tend state dir (they share one filesystem here, unlike real hosts).
struct Fleet {
    world: World,
    hosts: Vec<Sshd>,
}

impl Fleet {
    fn new(n: usize) -> Fleet {
        let world = World::new();
        // As `tendtest` (login shell /bin/sh): root's bash here sources a .bashrc
        // (pyenv) that can stall every command for a minute on a stale lock.
        let hosts: Vec<Sshd> = (0..n).map(|_| Sshd::start_tendtest()).collect();
        let f = Fleet { world, hosts };
        f.write_config();
        f
    }

    fn write_config(&self) {
        let mut toml = String::new();
        let mut known = String::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let state = h.root.with_file_name("tend-state");
            toml.push_str(&h.host_entry(&format!("h{}", i + 1), &h.root, &state));
            known.push_str(&h.known_hosts_line());
        }
        writeln!(
            toml,
            "[groups.web]\nhosts = [{}]",
            (1..=self.hosts.len())
                .map(|i| format!("\"h{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .unwrap();
        std::fs::write(self.world.dir.path().join("tend.toml"), toml).unwrap();
        std::fs::write(self.known_hosts(), known).unwrap();
    }

    fn known_hosts(&self) -> std::path::PathBuf {
        self.world.dir.path().join("known_hosts")
    }

    /// Files the test wrote (as root) belong to the login user, as on a real host.
    fn hand_over(&self) {
        for h in &self.hosts {
            h.hand_over(&[&h.root, &h.root.with_file_name("tend-state")]);
        }
    }

    /// `tend ARGS… -H PATTERN` with the fleet's config and known_hosts.
    fn tend(&self, args: &[&str], hosts: &str) -> Run {
        self.hand_over();
        let kh = self.known_hosts().display().to_string();
        // Flags right after the subcommand: anything after `--` belongs to `exec`.
        let mut all: Vec<&str> = vec![args[0], "-H", hosts, "--known-hosts", &kh];
        all.extend_from_slice(&args[1..]);
        self.world.tend(&all)
    }

    fn recipe(&self, text: &str) -> String {
        self.world.recipe("r.rhai", text).display().to_string()
    }

    fn trees(&self) -> Vec<support::Tree> {
        self.hosts.iter().map(|h| snapshot(&h.root)).collect()
    }
}

fn host_outcomes(r: &Run) -> std::collections::BTreeMap<String, String> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "host_end")
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const EDIT: &str = r#"//! Edits files under the host's root.
let root = host().vars.root;
fs::dir(`${root}/etc`, #{mode: 0o755});
fs::file(`${root}/etc/app.conf`, "name = " + host().name + "\n");
fs::line(`${root}/etc/workers.conf`, "workers = 4", #{regex: "^workers"});
fs::link(`${root}/current`, `${root}/etc`);
fs::file(`${root}/old.txt`, "old\n");
fs::chmod(`${root}/old.txt`, 0o600);
"#;

#[test]
fn core_operations_behave_the_same_over_ssh() {
    let f = Fleet::new(2);
    for h in &f.hosts {
        std::fs::write(h.root.join("keep.txt"), "keep\n").unwrap();
    }
    let r = f.recipe(EDIT);
    let before = f.trees();
    let plan = f.tend(&["run", &r, "--json", "--dry-run"], "@web");
    plan.assert_code(0);
    assert_eq!(f.trees(), before, "dry-run changed something");
    let planned = plan.changed_paths();
    let real = f.tend(&["run", &r, "--json"], "@web");
    real.assert_code(0);
    let after = f.trees();
    let mut touched = std::collections::BTreeSet::new();
    for (b, a) in before.iter().zip(&after) {
        touched.extend(support::diff(b, a));
    }
    assert_eq!(
        planned, touched,
        "dry-run over SSH must report exactly what changes"
    );
    assert_eq!(real.changed_paths(), touched);
    let conf = std::fs::read_to_string(f.hosts[1].root.join("etc/app.conf")).unwrap();
    assert_eq!(conf, "name = h2\n");
    let workers = std::fs::read_to_string(f.hosts[1].root.join("etc/workers.conf")).unwrap();
    assert_eq!(workers, "workers = 4\n");
    // Idempotent.
    let again = f.tend(&["run", &r, "--json"], "@web");
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0);
    // And reversible, later, over a new connection.
    let id = real.run_id();
    f.world.tend(&["rollback", &id]).assert_code(0);
    for (b, h) in before.iter().zip(&f.hosts) {
        assert_same(b, &snapshot(&h.root));
    }
}

#[test]
fn unknown_host_key_is_refused_then_accepted_and_remembered() {
    let f = Fleet::new(1);
    std::fs::write(f.known_hosts(), "").unwrap();
    let r = f.recipe("fs::file(`${host().vars.root}/x`, \"x\");\n");
    let refused = f.tend(&["run", &r, "--json"], "h1");
    refused.assert_code(1);
    assert_eq!(host_outcomes(&refused)["h1"], "unreachable");
    let end = refused.event("host_end");
    assert_eq!(end["fault"], "host_key", "{end}");
    let fp = f.hosts[0].host_fingerprint();
    assert!(
        refused.stdout.contains(&fp),
        "fingerprint {fp} not named:\n{}",
        refused.stdout
    );
    assert!(!f.hosts[0].root.join("x").exists());
    f.tend(&["run", &r, "--accept-new-host-keys"], "h1")
        .assert_code(0);
    assert!(std::fs::read_to_string(f.known_hosts())
        .unwrap()
        .contains(&format!("[127.0.0.1]:{}", f.hosts[0].port)));
    // Remembered: strict checking now passes.
    f.tend(&["run", &r], "h1").assert_code(0);
}

#[test]
fn changed_host_key_is_refused_and_nothing_runs() {
    let mut f = Fleet::new(1);
    f.hosts[0].replace_host_key();
    f.hosts[0].restart();
    let r = f.recipe("fs::file(`${host().vars.root}/x`, \"x\");\n");
    let run = f.tend(&["run", &r, "--json", "--accept-new-host-keys"], "h1");
    run.assert_code(1);
    assert!(run.stdout.contains("CHANGED"), "{}", run.stdout);
    assert!(!f.hosts[0].root.join("x").exists());
}

#[test]
fn refused_login_and_unreachable_host_are_reported_as_such() {
    let mut f = Fleet::new(2);
    // h1: a key the server does not know.
    sshd::keygen(&f.hosts[0].client_key);
    // h2: nobody listening.
    f.hosts[1].stop();
    let r = f.recipe("fs::file(`${host().vars.root}/x`, \"x\");\n");
    let run = f.tend(&["run", &r, "--json"], "@web");
    run.assert_code(1);
    let ends: Vec<serde_json::Value> = run
        .events()
        .into_iter()
        .filter(|e| e["event"] == "host_end")
        .collect();
    let err = |h: &str| {
        ends.iter().find(|e| e["host"] == h).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(err("h1").contains("authentication"), "{}", err("h1"));
    // The kind of failure is a field, so scripts need not read the message.
    let fault = |h: &str| ends.iter().find(|e| e["host"] == h).unwrap()["fault"].clone();
    assert_eq!(fault("h1"), "auth");
    assert_eq!(fault("h2"), "connection");
    assert!(
        err("h2").contains("cannot connect") || err("h2").contains("refused"),
        "{}",
        err("h2")
    );
}

/// Every process below `pid` (sshd forks one per connection, and the session below
/// it), then `pid` itself: SIGKILL, as a crash or a pulled cable would.
fn kill_tree(pid: u32) {
    let mut children = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split_whitespace().nth(1).unwrap().parse().unwrap();
        if ppid == pid {
            children.push(p);
        }
    }
    for c in children {
        kill_tree(c);
    }
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

fn sshd_pid(h: &Sshd) -> u32 {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("{}/", h.dir.path().display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .expect("sshd pid")
        .trim()
        .parse()
        .unwrap()
}

/// One of five hosts loses its sshd mid-run: that host is reported failed with its
/// journal kept; after sshd is back, `tend rollback RUN --host` restores it byte for
/// byte; the other hosts finished.
#[test]
fn a_host_that_dies_midway_is_rolled_back_later() {
    let mut f = Fleet::new(5);
    for h in &f.hosts {
        std::fs::write(h.root.join("data.txt"), "original\n").unwrap();
    }
    let before = f.trees();
    let r = f.recipe(
        r#"let root = host().vars.root;
fs::file(`${root}/data.txt`, "changed\n");
if host().name == "h3" { sh("sleep 20", #{read_only: true}); }
fs::file(`${root}/second.txt`, "2\n");
"#,
    );
    let kh = f.known_hosts().display().to_string();
    f.hand_over();
    let child = f
        .world
        .command()
        .args(["run", &r, "--json", "-H", "@web", "--known-hosts", &kh])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let data = f.hosts[2].root.join("data.txt");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&data).unwrap() != "changed\n" {
        assert!(t0.elapsed().as_secs() < 30, "h3 never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    kill_tree(sshd_pid(&f.hosts[2]));
    let out = child.wait_with_output().unwrap();
    let run = support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_ne!(run.code, 0, "{}", run.stdout);
    let outcomes = host_outcomes(&run);
    for h in ["h1", "h2", "h4", "h5"] {
        assert_eq!(outcomes[h], "ok", "{h}: {outcomes:?}");
    }
    assert_eq!(outcomes["h3"], "rollback_incomplete", "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "changed\n");
    f.hosts[2].restart();
    let id = run.run_id();
    let rb = f.world.tend(&["rollback", &id, "--host", "h3"]);
    rb.assert_code(0);
    assert_same(&before[2], &snapshot(&f.hosts[2].root));
    assert_eq!(
        std::fs::read_to_string(f.hosts[0].root.join("data.txt")).unwrap(),
        "changed\n"
    );
    // The dead run's lock on h3 went with its rollback: a new run is not refused.
    f.tend(&["run", &r, "--json"], "h3").assert_code(0);
}

#[test]
fn atomic_rolls_back_every_host_when_one_fails() {
    let f = Fleet::new(3);
    for h in &f.hosts {
        std::fs::write(h.root.join("data.txt"), "original\n").unwrap();
    }
    let before = f.trees();
    let r = f.recipe(
        r#"fs::file(`${host().vars.root}/data.txt`, "changed\n");
if host().name == "h2" { throw "h2 breaks"; }
"#,
    );
    let run = f.tend(&["run", &r, "--json", "--atomic"], "@web");
    run.assert_code(3);
    assert_eq!(f.trees(), before);
    assert!(
        host_outcomes(&run).values().all(|o| o == "rolled_back"),
        "{:?}",
        host_outcomes(&run)
    );
}

#[test]
fn serial_batches_stop_before_the_next_batch() {
    let f = Fleet::new(5);
    let r = f.recipe(
        r#"fs::file(`${host().vars.root}/touched`, "yes\n");
if host().name == "h2" { throw "bad change"; }
"#,
    );
    let run = f.tend(&["run", &r, "--json", "--serial", "1,2"], "@web");
    run.assert_code(3);
    let o = host_outcomes(&run);
    assert_eq!(o["h1"], "ok");
    assert_eq!(o["h2"], "rolled_back");
    // Batches: [h1] [h2 h3] [h4 h5]; the failing batch stops the run.
    assert_eq!(o["h4"], "skipped");
    assert_eq!(o["h5"], "skipped");
    assert!(!f.hosts[3].root.join("touched").exists());
    assert!(!f.hosts[4].root.join("touched").exists());
}

#[test]
fn exec_on_ten_hosts_with_one_failing() {
    let f = Fleet::new(10);
    // sshd tells the session its own port: that is how h7 knows it is h7.
    let cmd = format!(
        "echo hello; if [ \"${{SSH_CONNECTION##* }}\" = {} ]; then echo broken >&2; exit 7; fi",
        f.hosts[6].port
    );
    let run = f.tend(&["exec", "--", &cmd], "@web");
    run.assert_code(1);
    // Nine identical outputs folded into one block, the odd one apart.
    let lines: Vec<&str> = run.stdout.lines().collect();
    let ok = lines
        .iter()
        .find(|l| l.contains("(exit 0)"))
        .unwrap_or_else(|| panic!("no exit 0 group:\n{}\n{}", run.stdout, run.stderr));
    assert_eq!(ok.matches('h').count(), 9, "{}", run.stdout);
    assert!(
        !ok.contains("h7,") && !ok.ends_with("h7 (exit 0)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("h7 (exit 7)"), "{}", run.stdout);
    assert!(run.stdout.contains("broken"), "{}", run.stdout);
    // Audited like a run.
    let audit = f.world.tend(&["audit", "show", "--json"]).events();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e["event"] == "step" && e["op"] == "sh")
            .count(),
        10
    );
    // JSON: the exit code of each host.
    let json = f.tend(&["exec", "--json", "--", &cmd], "@web");
    json.assert_code(1);
    let codes: std::collections::BTreeMap<String, i64> = json
        .events()
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_string(),
                e["code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(codes["h7"], 7);
    assert!(codes
        .iter()
        .filter(|(h, _)| *h != "h7")
        .all(|(_, c)| *c == 0));
}

#[test]
fn become_changes_a_root_file_and_rolls_it_back() {
    let world = World::new();
    let h = Sshd::start_tendtest();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("root-owned.conf");
    std::fs::write(&file, "setting = 1\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let toml = format!(
        "[hosts.b1]\naddress = \"127.0.0.1\"\nport = {}\nuser = \"tendtest\"\nidentity_file = \"{}\"\ntend_state_dir = \"/tmp/tend-become-{}\"\n",
        h.port,
        h.client_key.display(),
        h.port
    );
    std::fs::write(world.dir.path().join("tend.toml"), toml).unwrap();
    let r = world.recipe(
        "b.rhai",
        &format!(
            "fs::line(\"{0}\", \"setting = 2\", #{{regex: \"^setting\"}});\nfs::file(\"{0}.new\", \"x\\n\");\nthrow \"fail after the change\";\n",
            file.display()
        ),
    );
    let kh = h.known_hosts.display().to_string();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "run",
            r.to_str().unwrap(),
            "--json",
            "-H",
            "b1",
            "--known-hosts",
            &kh,
            "--become",
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let no_rb: Vec<String> = args(&["--no-rollback"]);
    let run = world.tend(&no_rb.iter().map(String::as_str).collect::<Vec<_>>());
    run.assert_code(1);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "setting = 2\n");
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o777),
        (0, 0o600),
        "owner and mode kept"
    );
    world.tend(&["rollback", &run.run_id()]).assert_code(0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "setting = 1\n");
    assert!(!dir.path().join("root-owned.conf.new").exists());
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o600));
}

/// `become` for one step only: the host logs in as a user, that one command runs as
/// root (its environment still arriving through stdin, not argv), the others do not.
#[test]
fn become_for_one_operation() {
    let f = Fleet::new(1);
    let r = f.recipe(
        r#"let a = sh("id -u", #{read_only: true});
let b = sh("id -u; printenv ONLY_HERE", #{read_only: true, become: true, env: #{ONLY_HERE: "yes"}});
log::info(`user=${a.stdout.split("\n")[0]} root=${b.stdout.split("\n")[0]} env=${b.stdout.split("\n")[1]}`);
"#,
    );
    let run = f.tend(&["run", &r, "--json"], "h1");
    run.assert_code(0);
    let log = run.event("log");
    let msg = log["message"].as_str().unwrap();
    assert!(msg.contains("root=0 env=yes"), "{msg}");
    let uid: u32 = msg
        .split("user=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(uid, 0, "the other step ran as the login user: {msg}");
    // A recipe that declares it never needs root cannot ask for it step by step.
    let r = f.recipe("//! become: false\nsh(\"id -u\", #{read_only: true, become: true});\n");
    let refused = f.tend(&["run", &r, "--json"], "h1");
    assert_ne!(refused.code, 0);
    assert!(
        refused.stdout.contains("become: false"),
        "{}",
        refused.stdout
    );
}

/// `become` for file operations, one at a time (`#{become: true}`) and as a block
/// (`become(|| …)`), on a host where the login user is not root: the dry-run reports
/// exactly what the run changes, a second run changes nothing, steps outside the
/// block still run as the login user, and a rollback (later, or after a failure)
/// restores the root-owned files byte for byte, owner included.
#[test]
fn become_for_file_operations_plans_exactly_and_rolls_back() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let f = Fleet::new(1);
    // Root's own directory, outside what the login user was handed.
    let sys = tempfile::tempdir().unwrap();
    let d = sys.path().display().to_string();
    std::fs::set_permissions(sys.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(sys.path().join("app.conf"), "setting = 1\nother = x\n").unwrap();
    std::fs::set_permissions(
        sys.path().join("app.conf"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(sys.path().join("keys"), "k\n").unwrap();
    let body = format!(
        r#"let d = "{d}";
fs::line(`${{d}}/app.conf`, "setting = 2", #{{regex: "^setting", become: true}});
become(|| {{
    fs::dir(`${{d}}/conf.d`);
    fs::file(`${{d}}/conf.d/new.conf`, "new\n");
    fs::chmod(`${{d}}/keys`, 0o600);
    fs::copy(`${{d}}/app.conf`, `${{d}}/app.conf.bak`);
    sh(`touch ${{d}}/made-by-sh`, #{{undo: `rm -f ${{d}}/made-by-sh`}});
}});
let me = sh("id -u", #{{read_only: true}});
log::info(`login uid ${{me.stdout.trim()}}`);
"#
    );
    let r = f.recipe(&body);
    let before = snapshot(sys.path());

    let dry = f.tend(&["run", &r, "--dry-run", "--json"], "h1");
    dry.assert_code(0);
    assert_same(&before, &snapshot(sys.path()));
    let planned = dry.changed_paths();

    let run = f.tend(&["run", &r, "--json"], "h1");
    run.assert_code(0);
    let after = snapshot(sys.path());
    assert_eq!(run.changed_paths(), planned);
    // The sh step is opaque: it names no paths, in a dry-run or a real one.
    let mut made = planned.clone();
    made.insert(format!("{d}/made-by-sh"));
    assert_eq!(support::diff(&before, &after), made);
    let login_uid = run
        .events()
        .iter()
        .find_map(|e| {
            e["message"]
                .as_str()?
                .strip_prefix("login uid ")
                .map(str::to_string)
        })
        .expect("the login uid was logged");
    assert_ne!(
        login_uid, "0",
        "a step outside become runs as the login user"
    );
    for p in ["conf.d/new.conf", "app.conf.bak", "made-by-sh", "conf.d"] {
        let m = std::fs::metadata(sys.path().join(p)).unwrap();
        assert_eq!(m.uid(), 0, "{p} was made by root");
    }
    let m = std::fs::metadata(sys.path().join("app.conf")).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o7777),
        (0, 0o600),
        "owner and mode kept"
    );

    let again = f.tend(&["run", &r, "--json"], "h1");
    again.assert_code(0);
    assert_eq!(again.changed_count(), 1, "only the sh step runs again");

    // A later rollback of the first run, over a new connection: as root where the
    // change was made as root.
    f.world.tend(&["rollback", &run.run_id()]).assert_code(0);
    let m = std::fs::metadata(sys.path().join("app.conf")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o600));
    // The second run's sh step is still there; undo it too, then compare all.
    f.world.tend(&["rollback", &again.run_id()]).assert_code(0);
    assert_same(&before, &snapshot(sys.path()));

    // Refused, and nothing left changed:
    // - a failure after the block: the run rolls itself back, as root where needed
    //   (the failing step writes outside the block, as the login user);
    // - a recipe that declares it never needs root cannot ask for it by block either.
    for (recipe, says) in [
        (
            format!("{body}fs::file(`${{d}}/not-as-root`, \"x\");\n"),
            "ermission denied",
        ),
        (format!("//! become: false\n{body}"), "become: false"),
    ] {
        let refused = f.tend(&["run", &f.recipe(&recipe), "--json"], "h1");
        assert_ne!(refused.code, 0);
        assert!(refused.stdout.contains(says), "{}", refused.stdout);
        assert_same(&before, &snapshot(sys.path()));
    }
}

/// The host lock lives on the host: a run finds it held (by a live run elsewhere, or
/// by a dead run of this controller), says by whom, changes nothing, and exits 75.
#[test]
fn a_locked_host_is_reported_and_left_alone() {
    let f = Fleet::new(1);
    let h = &f.hosts[0];
    let state = h.root.with_file_name("tend-state");
    std::fs::create_dir_all(&state).unwrap();
    let lock = state.join("lock");
    let r = f.recipe(EDIT);
    let before = f.trees();

    let other = r#"{"run_id":"20260101-000000-beef","controller":"laptop-of-someone","pid":4242,"since":"2026-01-01T00:00:00Z"}"#;
    std::os::unix::fs::symlink(other, &lock).unwrap();
    let run = f.tend(&["run", &r, "--json"], "h1");
    run.assert_code(75);
    assert!(
        run.stdout
            .contains("20260101-000000-beef from laptop-of-someone"),
        "{}",
        run.stdout
    );
    assert_eq!(f.trees(), before, "nothing ran on a locked host");
    assert_eq!(std::fs::read_link(&lock).unwrap().to_str().unwrap(), other);

    // Held by a run of this controller whose process is gone: stale, and the way out
    // is its rollback, which releases the lock.
    std::fs::remove_file(&lock).unwrap();
    let first = f.tend(&["run", &r, "--json"], "h1");
    first.assert_code(0);
    assert!(
        std::fs::symlink_metadata(&lock).is_err(),
        "released after the run"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let dead = format!(
        r#"{{"run_id":"{}","controller":"{}","pid":999999999,"since":"2026-01-01T00:00:00Z"}}"#,
        first.run_id(),
        host.trim()
    );
    std::os::unix::fs::symlink(&dead, &lock).unwrap();
    let stale = f.tend(&["run", &r, "--json"], "h1");
    stale.assert_code(75);
    assert!(stale.stdout.contains("stale lease"), "{}", stale.stdout);
    f.world.tend(&["rollback", &first.run_id()]).assert_code(0);
    assert!(
        std::fs::symlink_metadata(&lock).is_err(),
        "rollback released it"
    );
    assert_eq!(f.trees(), before);
}

/// `host()` over SSH: the inventory's name, address, user and vars, and the os read
/// from the host (only when a recipe asks for it); a field it lacks is an error.
#[test]
fn host_facts_over_ssh() {
    let f = Fleet::new(1);
    let r = f.recipe(
        "let h = host();\nlog::info(`${h.name}|${h.address}|${h[\"user\"]}|${h.os}|${h.vars.root == \"\"}`);\n",
    );
    let run = f.tend(&["run", &r, "--json"], "h1");
    run.assert_code(0);
    let msg = run
        .events()
        .iter()
        .find_map(|e| e["message"].as_str().map(str::to_string))
        .expect("a log line");
    assert_eq!(msg, "h1|127.0.0.1|tendtest|linux|false");
    let bad = f.recipe("log::info(host()[\"color\"]);\n");
    let run = f.tend(&["run", &bad, "--json"], "h1");
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("r.rhai:1:") && run.stderr.contains("host() has no `color`"),
        "{}",
        run.stderr
    );
}

/// On the local machine a file step runs as root through `sudo -n` when tend is not
/// root (tests/shell_fs.rs); a user sudo asks for a password is refused with what
/// to do, and nothing changes.
#[test]
fn become_for_a_local_file_step_needs_sudo() {
    use std::os::unix::process::CommandExt;
    sshd::ensure_test_users();
    let (uid, gid) = sshd::uid_of(sshd::NOSUDO_USER);
    let w = World::new();
    w.write("kept", "as it was\n");
    let r = w.recipe(
        "r.rhai",
        &format!(
            "become(|| {{ fs::file(\"{}\", \"changed\\n\"); }});\n",
            w.path("kept")
        ),
    );
    let ok = std::process::Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(w.dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let before = w.snapshot();
    let out = w
        .command()
        .env("HOME", w.dir.path())
        .env("USER", sshd::NOSUDO_USER)
        .args(["run", r.to_str().unwrap(), "--json"])
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("sudo on local needs a password"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert_same(&before, &w.snapshot());
}

/// `--atomic` where one host's rollback fails (its journal is destroyed by the failing
/// host's step): the other hosts are still rolled back, the run ends with `run_end`
/// and a final run record, exit 4.
#[test]
fn atomic_goes_on_when_one_hosts_rollback_fails() {
    let f = Fleet::new(3);
    for h in &f.hosts {
        std::fs::write(h.root.join("data.txt"), "original\n").unwrap();
    }
    let before = f.trees();
    let state = f.world.state().display().to_string();
    let r = f.recipe(&format!(
        r#"fs::file(`${{host().vars.root}}/data.txt`, "changed\n");
if host().name == "h3" {{
    sh("for j in {state}/runs/*/hosts/h1/journal.jsonl; do rm -f $j && mkdir $j; done", #{{become: true}});
    throw "h3 breaks";
}}
"#
    ));
    let run = f.tend(&["run", &r, "--json", "--atomic", "--serial", "1"], "@web");
    run.assert_code(4);
    let trees = f.trees();
    assert_eq!(trees[1], before[1], "h2 was not rolled back");
    assert_eq!(trees[2], before[2], "h3 was not rolled back");
    let o = host_outcomes(&run);
    assert_eq!(o["h1"], "rollback_incomplete", "{o:?}");
    assert_eq!(o["h2"], "rolled_back", "{o:?}");
    assert_eq!(run.event("run_end")["outcome"], "rollback_incomplete");
    let runs = f.world.runs();
    assert_eq!(runs.last().unwrap()["outcome"], "rollback_incomplete");
}
