//! Cancellation, end to end: `--timeout` bounds every command and retry delay, and
//! SIGTERM/SIGINT to `tend run` stop the running command (its process, here or on a
//! real sshd host, is gone), roll the run back and end it `cancelled`.
//!
//! Timings are measured and printed, but asserted only with wide margins: these
//! machines are shared and noisy. Each wait has a guard that kills a `tend` that
//! does not end, so a regression fails instead of hanging.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{assert_same, wait_for, Run, World};

/// A `sleep` no other process on the machine runs: `sleep 30.NNNNNN` (GNU sleep takes
/// fractions), found again with `pgrep -f`.
fn unique_sleep(secs: u32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 1_000_000;
    format!("sleep {secs}.{n:06}")
}

/// Pids of processes whose command line contains `pattern`.
fn pgrep(pattern: &str) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-f", "--", pattern])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// A `tend run RECIPE --json` in the background, as `World::run` starts it.
struct Running {
    pid: u32,
    started: Instant,
    done: mpsc::Receiver<std::process::Output>,
}

fn start(w: &World, recipe: &Path, extra: &[&str]) -> Running {
    w.hand_over();
    let mut args = vec![
        "run".to_string(),
        recipe.display().to_string(),
        "--json".into(),
    ];
    args.extend(w.run_args.borrow().iter().cloned());
    args.extend(extra.iter().map(|s| s.to_string()));
    let child: Child = w
        .command()
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output().unwrap());
    });
    Running {
        pid,
        started: Instant::now(),
        done,
    }
}

impl Running {
    /// Its output once it ends; a `tend` still running after `guard` is killed and
    /// the test fails (the old code hung for minutes here).
    fn finish(self, guard: Duration) -> Run {
        match self.done.recv_timeout(guard) {
            Ok(out) => Run::from(out),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .status();
                panic!("tend did not end within {guard:?}");
            }
        }
    }
}

fn outcome_of(events: &[serde_json::Value], name: &str) -> Option<String> {
    events
        .iter()
        .find(|e| e["event"] == name)
        .and_then(|e| e["outcome"].as_str().map(String::from))
}

/// A recipe that changes a file, then runs `command`.
fn change_then(w: &World, command: &str) -> std::path::PathBuf {
    w.write("app.conf", "port=80\n");
    w.recipe_in_root(
        "recipe.rhai",
        &format!("fs::file(\"ROOT/app.conf\", \"port=8080\\n\");\n{command};\n"),
    )
}

// ---------------------------------------------------------------- --timeout

fn timeout_stops_the_command_on(w: &World) {
    let sleep = unique_sleep(30);
    let recipe = change_then(w, &format!("sh(\"{sleep}\")"));
    let before = w.snapshot();
    let run = start(w, &recipe, &["--timeout", "2s"]);
    let started = run.started;
    let r = run.finish(Duration::from_secs(25));
    let took = started.elapsed();
    eprintln!("--timeout 2s around `{sleep}`: ended after {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The killed command left no known change (what it did before is unknown: a
    // warning names it); the file is reverted, so the rollback is complete (exit 3).
    r.assert_code(3);
    assert_eq!(outcome_of(&r.events(), "run_end").unwrap(), "rolled_back");
    let rb = r.event("rollback");
    assert!(rb["warnings"][0].as_str().unwrap().contains(&sleep), "{rb}");
    let failed = r.event("step_failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("time limit of 2s"),
        "{failed}"
    );
    assert_same(&before, &w.snapshot());
    assert!(
        wait_for(Duration::from_secs(3), || pgrep(&sleep).is_empty()),
        "`{sleep}` still runs: {:?}",
        pgrep(&sleep)
    );
}

#[test]
fn run_timeout_stops_a_running_command_and_rolls_back() {
    let w = World::new();
    timeout_stops_the_command_on(&w);
}

#[test]
fn run_timeout_stops_a_running_command_and_rolls_back_over_ssh() {
    let h = sshd::Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    timeout_stops_the_command_on(&w);
}

#[test]
fn run_timeout_bounds_retries_and_their_delays() {
    let w = World::new();
    // Each attempt is within its own timeout; the retries and delays together are
    // not within the run's.
    let sleep = unique_sleep(3);
    let recipe = change_then(
        &w,
        &format!(
            "sh(\"{sleep}; exit 1\", #{{retries: 5, delay: \"20s\", timeout: \"20s\", read_only: true}})"
        ),
    );
    let before = w.snapshot();
    let run = start(&w, &recipe, &["--timeout", "2s"]);
    let started = run.started;
    let r = run.finish(Duration::from_secs(25));
    let took = started.elapsed();
    eprintln!("--timeout 2s around retries with 20s delays: ended after {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // A read-only command journals nothing: the rollback is complete.
    r.assert_code(3);
    assert!(r.event("step_failed")["error"]
        .as_str()
        .unwrap()
        .contains("time limit of 2s"));
    assert_same(&before, &w.snapshot());

    // The delay alone is bounded too.
    let recipe = change_then(
        &w,
        "sh(\"exit 1\", #{retries: 3, delay: \"30s\", read_only: true})",
    );
    let run = start(&w, &recipe, &["--timeout", "2s"]);
    let started = run.started;
    let r = run.finish(Duration::from_secs(25));
    let took = started.elapsed();
    eprintln!("--timeout 2s around a 30s retry delay: ended after {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    r.assert_code(3);
    assert_same(&before, &w.snapshot());
}

// ---------------------------------------------------------------- signals

/// SIGTERM while `sleep` runs: the sleep is killed, the file change rolled back, and
/// the run ends `cancelled` (exit 143) in its events, the audit log and `tend runs`.
fn sigterm_cancels_on(w: &World) {
    let sleep = unique_sleep(30);
    let recipe = change_then(w, &format!("sh(\"{sleep}\")"));
    let before = w.snapshot();
    let run = start(w, &recipe, &[]);
    assert!(
        wait_for(Duration::from_secs(20), || !pgrep(&sleep).is_empty()),
        "`{sleep}` never started"
    );
    assert_ne!(before, w.snapshot(), "the first step has changed the file");
    let sent = Instant::now();
    signal(run.pid, "TERM");
    let r = run.finish(Duration::from_secs(25));
    let took = sent.elapsed();
    eprintln!("SIGTERM during `{sleep}`: tend ended {took:?} after the signal");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    r.assert_code(143);
    assert!(
        wait_for(Duration::from_secs(3), || pgrep(&sleep).is_empty()),
        "`{sleep}` still runs after tend ended: {:?}",
        pgrep(&sleep)
    );
    assert_same(&before, &w.snapshot());

    let events = r.events();
    assert_eq!(outcome_of(&events, "run_end").unwrap(), "cancelled");
    assert_eq!(outcome_of(&events, "host_end").unwrap(), "cancelled");
    assert!(r.stderr.contains("SIGTERM received"), "{}", r.stderr);
    let id = r.run_id();

    let audit = w.tend(&["audit", "show", &id, "--json"]);
    audit.assert_code(0);
    let logged = audit.events();
    assert_eq!(
        outcome_of(&logged, "run_end").as_deref(),
        Some("cancelled"),
        "{}",
        audit.stdout
    );
    assert!(
        logged
            .iter()
            .any(|e| e["event"] == "rollback" && e["reverted"] == 1),
        "{}",
        audit.stdout
    );
    let runs = w.runs();
    let this = runs.iter().find(|r| r["run_id"] == id.as_str()).unwrap();
    assert_eq!(this["outcome"], "cancelled", "{runs:?}");
}

#[test]
fn sigterm_cancels_a_local_run() {
    let w = World::new();
    sigterm_cancels_on(&w);
}

#[test]
fn sigterm_cancels_a_run_over_ssh_and_kills_the_remote_command() {
    let h = sshd::Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    sigterm_cancels_on(&w);
}

/// The first SIGINT starts the rollback; a second one, while an undo command still
/// runs, stops tend at once (exit 130) and leaves the journal: `tend rollback` then
/// finishes the job.
#[test]
fn second_sigint_stops_at_once_and_leaves_the_journal() {
    let w = World::new();
    let undo = unique_sleep(3);
    let sleep = unique_sleep(30);
    w.write("app.conf", "port=80\n");
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        &format!(
            "sh(\"true\", #{{undo: \"{undo}\"}});\n\
             fs::file(\"ROOT/app.conf\", \"port=8080\\n\");\n\
             sh(\"{sleep}\");\n"
        ),
    );
    let before = w.snapshot();
    let run = start(&w, &recipe, &[]);
    assert!(
        wait_for(Duration::from_secs(20), || !pgrep(&sleep).is_empty()),
        "`{sleep}` never started"
    );
    signal(run.pid, "INT");
    // The rollback reverts the file, then runs the first step's undo command.
    assert!(
        wait_for(Duration::from_secs(10), || !pgrep(&undo).is_empty()),
        "the rollback never ran the undo command `{undo}`"
    );
    let sent = Instant::now();
    signal(run.pid, "INT");
    let r = run.finish(Duration::from_secs(25));
    eprintln!("second SIGINT: tend ended {:?} after it", sent.elapsed());
    r.assert_code(130);
    assert!(r.stderr.contains("stopped at once"), "{}", r.stderr);
    assert!(pgrep(&sleep).is_empty(), "the step's command still runs");

    // No run_end: the run record says the process went away mid-run.
    let runs = w.runs();
    assert_eq!(runs[0]["outcome"], "interrupted", "{runs:?}");
    let id = runs[0]["run_id"].as_str().unwrap().to_string();
    assert!(
        r.stderr.contains(&format!("tend rollback {id}")),
        "{}",
        r.stderr
    );
    // What the first rollback had done (the file, the killed step's barrier) is
    // marked in the journal; this one runs the undo command that was cut short.
    let rb = w.tend(&["rollback", &id]);
    rb.assert_code(0);
    assert!(rb.stdout.contains(&undo), "{}", rb.stdout);
    assert_same(&before, &w.snapshot());
}

/// The command's timeout kills it with the system call, not a `kill` program found on
/// the PATH: with a PATH where there is none, the command is still stopped.
#[test]
fn a_step_timeout_kills_the_command_whatever_the_path() {
    let w = World::new();
    let sleep = unique_sleep(30);
    let recipe = change_then(
        &w,
        &format!("sh(\"/bin/{sleep}\", #{{timeout: \"1s\", read_only: true}})"),
    );
    let before = w.snapshot();
    let started = Instant::now();
    let r = w.run_env(&recipe, &[], &[("PATH", "/nonexistent")]);
    // Not a speed check: a command left running would have held the run for all of
    // its 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the command ran to its end"
    );
    r.assert_code(3);
    assert!(
        pgrep(&sleep).is_empty(),
        "the timed-out command is still running: {:?}",
        pgrep(&sleep)
    );
    support::assert_same(&before, &w.snapshot());
}
