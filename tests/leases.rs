//! Run identity, leases and host locks: runs of one process, of two state dirs and
//! of several hosts sharing a home queue or run side by side as they should; a run
//! killed with -9 leaves a stale lease that is reported, rolled back and released.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sshd::Sshd;
use support::{Run, World};
use tend::app::{self, RunRequest};
use tend::event::Event;
use tend::state::{check_run_id, StateDir};

/// Logs its start and end to a shared file around two changes, with a pause between.
const SLOW: &str = r#"let p = params(#{dir: "", log: "", pause: 1});
sh(`echo start ${p.dir} >> ${p.log}`);
fs::file(`${p.dir}/a.txt`, "a\n");
sh(`sleep ${p.pause}`);
fs::file(`${p.dir}/b.txt`, "b\n");
sh(`echo end ${p.dir} >> ${p.log}`);
"#;

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(30), "{what}: timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}

fn spawn(w: &World, args: &[&str]) -> Child {
    w.command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Must show 1: two runs from two threads of one process, through the library, on
/// two directories: the second queues for the host lock, both succeed, their ids are
/// distinct and in start order, and their changes do not interleave.
#[test]
fn two_threads_of_one_process_queue_for_the_host() {
    let w = World::new();
    let recipe = tend::recipe::Recipe::load(&w.recipe("slow.rhai", SLOW)).unwrap();
    let state = StateDir::open(&w.state())
        .unwrap()
        .with_lock_dir(&w.locks())
        .unwrap();
    let log = w.dir.path().join("order.log").display().to_string();
    let (one, two) = (w.path("one"), w.path("two"));
    let run = |dir: &str, wait: Option<Duration>| {
        std::fs::create_dir_all(dir).unwrap();
        let mut req = RunRequest::local(
            vec![
                ("dir".into(), dir.to_string()),
                ("log".into(), log.clone()),
                ("pause".into(), "2".into()),
            ],
            false,
        );
        req.wait = wait;
        let config = tend::app::Config::default();
        let actor = tend::app::Actor::new(
            "test",
            tend::app::Auth::Other { how: "test".into() },
            tend::app::Trigger::Api,
        );
        app::run(
            &tend::store::Stores::embedded(&state),
            &config,
            &actor,
            &recipe,
            &req,
            Arc::new(|_: &Event| {}),
        )
        .unwrap()
    };
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| run(&one, None));
        wait_for("the first run starts", || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("start"))
        });
        let second = s.spawn(|| run(&two, Some(Duration::from_secs(30))));
        (first.join().unwrap(), second.join().unwrap())
    });
    for r in [&first, &second] {
        assert_eq!(r.outcome, app::Outcome::Ok, "{:?}", r.error());
        check_run_id(&r.run_id).unwrap();
    }
    assert!(
        first.run_id < second.run_id,
        "{} then {}",
        first.run_id,
        second.run_id
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("start {one}\nend {one}\nstart {two}\nend {two}\n")
    );
    for dir in ["one/a.txt", "one/b.txt", "two/a.txt", "two/b.txt"] {
        assert!(w.root().join(dir).exists(), "{dir}");
    }
}

/// The host lock is the machine's: a run with another state dir is refused while
/// the first works, and says by whom.
#[test]
fn two_state_dirs_on_one_machine_do_not_overlap() {
    let w = World::new();
    let r = w.recipe("slow.rhai", SLOW).display().to_string();
    let log = w.dir.path().join("order.log").display().to_string();
    std::fs::create_dir_all(w.path("one")).unwrap();
    let dir = format!("dir={}", w.path("one"));
    let logp = format!("log={log}");
    let first = spawn(
        &w,
        &[
            "run", &r, "-p", &dir, "-p", &logp, "-p", "pause=3", "--json",
        ],
    );
    wait_for("the first run starts", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("start"))
    });
    let other_state = w.dir.path().join("other-state");
    let second = Run::from(
        w.command()
            .env("TEND_STATE_DIR", &other_state)
            .args(["run", &r, "-p", &dir, "-p", &logp, "--json"])
            .output()
            .unwrap(),
    );
    second.assert_code(75);
    let holder = format!("{}{}", second.stdout, second.stderr);
    assert!(holder.contains("locked by another run"), "{holder}");
    let first = finish(first);
    first.assert_code(0);
    assert!(holder.contains(&first.run_id()), "{holder}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("start {0}\nend {0}\n", w.path("one"))
    );
}

/// Must show 3: three hosts logging in as one user (one home directory, as with NFS
/// homes) run in one fleet run; each keeps its own backups, so a rollback restores
/// each host's own content.
#[test]
fn hosts_sharing_a_home_all_run() {
    let w = World::new();
    let hosts: Vec<Sshd> = (0..3).map(|_| Sshd::start_tendtest()).collect();
    let mut toml = String::new();
    let mut known = String::new();
    for (i, h) in hosts.iter().enumerate() {
        // No tend_state_dir: tend's files go to the shared home. Each simulated host
        // gets its own lock dir, as each real machine has its own /var/tmp.
        let locks = h.root.with_file_name("locks");
        let entry = h
            .host_entry(&format!("h{}", i + 1), &h.root, &locks)
            .replace("tend_state_dir", "tend_lock_dir");
        toml.push_str(&entry);
        known.push_str(&h.known_hosts_line());
        std::fs::write(h.root.join("data.txt"), format!("original {i}\n")).unwrap();
        h.hand_over(&[&h.root, &locks]);
    }
    std::fs::write(w.dir.path().join("tend.toml"), toml).unwrap();
    let kh = w.dir.path().join("known_hosts");
    std::fs::write(&kh, known).unwrap();
    let kh = kh.display().to_string();
    let r = w.recipe(
        "r.rhai",
        "fs::file(`${host().vars.root}/data.txt`, `changed on ${host().name}\n`);\n",
    );
    let run = w.tend(&[
        "run",
        r.to_str().unwrap(),
        "--json",
        "-H",
        "h1,h2,h3",
        "--known-hosts",
        &kh,
    ]);
    run.assert_code(0);
    for (i, h) in hosts.iter().enumerate() {
        let data = std::fs::read_to_string(h.root.join("data.txt")).unwrap();
        assert_eq!(data, format!("changed on h{}\n", i + 1));
    }
    w.tend(&["rollback", &run.run_id()]).assert_code(0);
    for (i, h) in hosts.iter().enumerate() {
        let data = std::fs::read_to_string(h.root.join("data.txt")).unwrap();
        assert_eq!(data, format!("original {i}\n"), "h{}", i + 1);
    }
}

/// `kill -9` of a run during `sh("sleep 30")`: the next run reports the stale lease
/// (who, since when, that nothing was rolled back, how to); `tend rollback` of the
/// dead run works, though its last step cannot be undone, and releases the lock.
fn kill_9_then_rollback(
    w: &World,
    run_args: &[&str],
    data: &std::path::Path,
    lock: Option<&std::path::Path>,
) {
    std::fs::write(data, "original\n").unwrap();
    let r = w.recipe(
        "r.rhai",
        &format!(
            "fs::file({:?}, \"changed\\n\");\nsh(\"sleep 30\");\n",
            data.display().to_string()
        ),
    );
    let r = r.display().to_string();
    let mut args = vec!["run", r.as_str(), "--json"];
    args.extend_from_slice(run_args);
    let mut child = spawn(w, &args);
    wait_for("the run changes data.txt", || {
        std::fs::read_to_string(data).unwrap() == "changed\n"
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    let pid = child.id();
    let _ = child.wait();

    let quick = w.recipe("q.rhai", "log::info(\"hello\");\n");
    let quick = quick.display().to_string();
    let mut again = vec!["run", quick.as_str(), "--json"];
    again.extend_from_slice(run_args);
    let stale = w.tend(&again);
    stale.assert_code(75);
    let said = format!("{}{}", stale.stdout, stale.stderr);
    let runs = w.tend(&["runs", "--json"]);
    let dead: serde_json::Value = runs
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["recipe"] == "r")
        .unwrap();
    assert_eq!(dead["outcome"], "interrupted", "{dead}");
    let id = dead["run_id"].as_str().unwrap();
    for part in [
        "stale lease".to_string(),
        format!("run {id}"),
        format!("(pid {pid})"),
        "since 20".into(),
        "not rolled back".into(),
        format!("rollback {id}"),
    ] {
        assert!(said.contains(&part), "{part:?} not in: {said}");
    }

    // The killed command left no known change: a warning, and the rollback is
    // complete.
    let rb = w.tend(&["rollback", id]);
    assert!(rb.code == 0, "{}{}", rb.stdout, rb.stderr);
    assert!(
        rb.stdout.contains("warning:") && rb.stdout.contains("before it finished"),
        "{}",
        rb.stdout
    );
    assert_eq!(std::fs::read_to_string(data).unwrap(), "original\n");
    if let Some(lock) = lock {
        assert!(
            std::fs::symlink_metadata(lock).is_err(),
            "the host's lock is still there"
        );
    }
    w.tend(&again).assert_code(0);
}

#[test]
fn kill_9_leaves_a_stale_lease_that_rollback_releases_locally() {
    let w = World::new();
    let data = w.root().join("data.txt");
    kill_9_then_rollback(&w, &[], &data, None);
}

#[test]
fn kill_9_leaves_a_stale_lease_that_rollback_releases_over_ssh() {
    let w = World::new();
    let h = Sshd::start_tendtest();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    w.hand_over();
    let args: Vec<String> = w.run_args.borrow().clone();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let data = w.root().join("data.txt");
    std::fs::write(&data, "original\n").unwrap();
    w.hand_over();
    let lock = w.dir.path().join("remote-state/lock");
    kill_9_then_rollback(&w, &args, &data, Some(&lock));
}

/// Must show 3, last part: `--wait 30s` queues behind a live run, then succeeds.
#[test]
fn wait_queues_behind_a_live_run() {
    let w = World::new();
    let r = w.recipe("slow.rhai", SLOW).display().to_string();
    let log = w.dir.path().join("order.log").display().to_string();
    let logp = format!("log={log}");
    let (one, two) = (w.path("one"), w.path("two"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    let first = spawn(
        &w,
        &[
            "run",
            &r,
            "-p",
            &format!("dir={one}"),
            "-p",
            &logp,
            "-p",
            "pause=2",
            "--json",
        ],
    );
    wait_for("the first run starts", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("start"))
    });
    let second = w.tend(&[
        "run",
        &r,
        "-p",
        &format!("dir={two}"),
        "-p",
        &logp,
        "--wait",
        "30s",
        "--json",
    ]);
    second.assert_code(0);
    let first = finish(first);
    first.assert_code(0);
    assert!(first.run_id() < second.run_id());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("start {one}\nend {one}\nstart {two}\nend {two}\n")
    );
}
