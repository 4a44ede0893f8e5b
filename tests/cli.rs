//! The front door: the README's demo, help, show/check of shipped recipes, runs
//! listing and the exit-code contract.

mod support;

use support::World;

fn shipped(name: &str) -> String {
    format!("{}/recipes/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn demo_plans_then_rotates_the_sample() {
    let w = World::new();
    let dir = w.path("demo");
    let r = w.tend(&["demo", "--dir", &dir]);
    r.assert_code(0);
    assert!(r.stdout.contains("dry-run"), "{}", r.stdout);
    let logs = w.root().join("demo/logs");
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["app.log", "app.log.1", "app.log.2.gz", "worker.log"]
    );
    assert_eq!(std::fs::metadata(logs.join("app.log")).unwrap().len(), 0);
    // The demo's real run is listed (after its dry-run) and can be undone.
    let runs = w.tend(&["runs", "--json"]).events();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["dry_run"], true);
    let runs = &runs[1..];
    assert_eq!(runs[0]["outcome"], "ok");
    assert_eq!(runs[0]["recipe"], "log-rotate");
    let id = runs[0]["run_id"].as_str().unwrap();
    w.tend(&["rollback", id]).assert_code(0);
    assert!(!logs.join("app.log.2.gz").exists());
    assert!(std::fs::metadata(logs.join("app.log")).unwrap().len() > 100_000);
}

#[test]
fn help_teaches_exit_codes() {
    let w = World::new();
    let r = w.tend(&["--help"]);
    r.assert_code(0);
    for needle in ["run", "rollback", "audit", "Exit codes", "rolled back"] {
        assert!(
            r.stdout.contains(needle),
            "--help lacks {needle}:\n{}",
            r.stdout
        );
    }
    w.tend(&["frobnicate"]).assert_code(64);
}

#[test]
fn every_shipped_recipe_checks_and_shows() {
    let w = World::new();
    let dir = format!("{}/recipes", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rhai") {
            n += 1;
            w.tend(&["check", p.to_str().unwrap()]).assert_code(0);
            let show = w.tend(&["show", p.to_str().unwrap(), "--json"]);
            show.assert_code(0);
            let v: serde_json::Value = serde_json::from_str(show.stdout.trim()).unwrap();
            assert!(v["hash"].as_str().unwrap().starts_with("sha256:"));
            assert!(!v["description"].as_str().unwrap().is_empty());
        }
    }
    assert!(n >= 1);
}

#[test]
fn show_describes_log_rotate() {
    let w = World::new();
    let r = w.tend(&["show", &shipped("log-rotate.rhai")]);
    r.assert_code(0);
    assert!(r.stdout.contains("Rotate log files"), "{}", r.stdout);
    assert!(r.stdout.contains("min_size"), "{}", r.stdout);
    assert!(r.stdout.contains("size"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Imports: stdlib/logrotate.rhai"),
        "{}",
        r.stdout
    );
    let v: serde_json::Value = serde_json::from_str(
        w.tend(&["show", &shipped("log-rotate.rhai"), "--json"])
            .stdout
            .trim(),
    )
    .unwrap();
    let keep = v["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "keep")
        .unwrap();
    assert_eq!(keep["type"], "int");
    assert_eq!(keep["default"], 7, "typed, as the docs/json.md says");
    assert!(keep["doc"].as_str().unwrap().contains("rotated copies"));
}

#[test]
fn detailed_exitcode_says_whether_anything_would_change() {
    let w = World::new();
    let r = w.recipe(
        "r.rhai",
        "let p = params(#{path: \"\"});\nfs::file(p.path, \"x\\n\");\n",
    );
    let arg = format!("path={}", w.path("f"));
    let plan = |w: &World| {
        w.tend(&[
            "run",
            r.to_str().unwrap(),
            "-p",
            &arg,
            "--dry-run",
            "--detailed-exitcode",
        ])
    };
    plan(&w).assert_code(2);
    w.tend(&["run", r.to_str().unwrap(), "-p", &arg])
        .assert_code(0);
    plan(&w).assert_code(0);
}

#[test]
fn unknown_run_is_not_found() {
    let w = World::new();
    let r = w.tend(&["rollback", "20200101-000000-dead"]);
    r.assert_code(66);
    assert!(r.stderr.contains("tend runs"), "{}", r.stderr);
}

#[test]
fn run_json_has_the_documented_shape() {
    let w = World::new();
    let r = w.recipe("r.rhai", "let p = params(#{path: \"\"});\nfs::file(p.path, \"x\\n\");\nsh(\"true\", #{undo: \"true\"});\n");
    let arg = format!("path={}", w.path("f"));
    let plan = w.run(&r, &["-p", &arg, "--dry-run"]);
    plan.assert_code(0);
    let ev = plan.events();
    let file = ev.iter().find(|e| e["op"] == "fs::file").unwrap();
    assert_eq!(file["event"], "step");
    assert_eq!(file["host"], "local");
    assert_eq!(file["changed"], true);
    assert!(file["diff"].as_str().unwrap().contains("+x"));
    let sh = ev.iter().find(|e| e["op"] == "sh").unwrap();
    assert_eq!(sh["unknown"], true);
    let end = ev.last().unwrap();
    assert_eq!(end["event"], "run_end");
    assert_eq!(end["outcome"], "ok");
    assert_eq!(end["changed"], 1);
}

/// stdout whose reader has gone (`tend … | head -1` after head exits): nobody reads.
fn closed_pipe() -> std::fs::File {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills both descriptors; the read end is closed at once and the
    // write end is owned by the File from here on.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        std::fs::File::from_raw_fd(fds[1])
    }
}

/// `tend ARGS` with its stdout going to `stdout`; it must not panic, whatever happens
/// to what it writes.
fn tend_writing_to(w: &World, args: &[&str], stdout: std::fs::File) -> support::Run {
    let r = support::Run::from(w.command().args(args).stdout(stdout).output().unwrap());
    assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
    r
}

#[test]
fn a_reader_that_goes_away_neither_crashes_tend_nor_stops_a_run() {
    let w = World::new();
    let dir = w.path("demo");
    // The demo's run writes its report to the closed pipe, and still rotates.
    tend_writing_to(&w, &["demo", "--dir", &dir], closed_pipe()).assert_code(0);
    assert!(w.root().join("demo/logs/app.log.2.gz").exists());
    let runs = w.tend(&["runs", "--json"]).events();
    assert_eq!(runs[0]["outcome"], "ok");
    let show = shipped("log-rotate.rhai");
    for args in [
        &["runs", "--json"][..],
        &["audit", "show"],
        &["show", &show],
    ] {
        tend_writing_to(&w, args, closed_pipe()).assert_code(0);
    }
    // A full disk is not a reader that left: it is said, once.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let r = tend_writing_to(&w, &["show", &show], full);
    assert_eq!(
        r.stderr.matches("cannot write to standard output").count(),
        1,
        "{}",
        r.stderr
    );
}
