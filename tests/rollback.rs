//! Rollback, end to end: automatic on failure, by hand with `tend rollback`, after
//! `kill -9`, and honest about what it cannot undo.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{assert_same, diff, Run, Tree, World};

/// Eight steps of different kinds, each leaving a different undo record.
const STEPS: [&str; 8] = [
    r#"fs::file("ROOT/app.conf", "port=8080\nworkers=8\n");"#, // edit an existing file
    r#"fs::file("ROOT/new.conf", #{content: "fresh\n", mode: 0o600});"#, // new file
    r#"fs::line("ROOT/hosts", "10.0.0.2 db", #{regex: " db$"});"#, // replace a line
    r#"fs::link("ROOT/current", "releases/v2");"#,             // retarget a link
    r#"fs::rename("ROOT/app.log", "ROOT/app.log.1");"#,        // rename
    r#"fs::chmod("ROOT/id_key", 0o600);"#,                     // chmod
    r#"fs::remove("ROOT/junk.tmp");"#,                         // remove a file
    r#"fs::dir("ROOT/cache/a/b", #{mode: 0o750});"#,           // mkdir -p
];

fn setup(w: &World) {
    w.write_mode("app.conf", "port=80\nworkers=4\n", 0o640);
    w.write_mode("hosts", "127.0.0.1 localhost\n10.0.0.1 db\n", 0o644);
    w.mkdir("releases/v1", 0o755);
    w.mkdir("releases/v2", 0o755);
    w.write("releases/v1/app", "v1");
    w.write("releases/v2/app", "v2");
    w.symlink("current", "releases/v1");
    w.write_mode("app.log", "log line\n", 0o640);
    w.write_mode("id_key", "KEY\n", 0o644);
    w.write_mode("junk.tmp", "junk\n", 0o664);
}

/// The recipe with `fail` inserted before step `at` (1-based; 9: after all eight).
fn recipe(w: &World, at: usize, fail: &str) -> PathBuf {
    let mut lines: Vec<String> = STEPS.iter().map(|s| s.to_string()).collect();
    lines.insert(at - 1, fail.to_string());
    w.recipe_in_root("recipe.rhai", &lines.join("\n"))
}

fn step_failed_error(r: &Run) -> String {
    r.event("step_failed")["error"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The same body on this machine and over SSH (a real sshd; the files are this
/// machine's either way).
fn failure_at_step_5_on(w: &World) {
    setup(w);
    let before = w.snapshot();
    let r = w.run(&recipe(w, 5, r#"throw "boom";"#), &[]);
    r.assert_code(3);
    assert_eq!(r.changed_count(), 4);
    let err = step_failed_error(&r);
    assert!(
        err.contains("recipe.rhai:5:") && err.contains("boom"),
        "{err}"
    );
    assert_eq!(r.event("run_end")["outcome"], "rolled_back");
    let rb = r.event("rollback");
    assert_eq!(rb["reverted"], 4, "{}", r.stdout);
    assert_eq!(rb["incomplete"].as_array().unwrap().len(), 0);
    assert_same(&before, &w.snapshot());
    let runs = w.runs();
    assert_eq!(runs.last().unwrap()["outcome"], "rolled_back");
}

#[test]
fn failure_at_step_5_rolls_back_everything() {
    failure_at_step_5_on(&World::new());
}

#[test]
fn failure_at_step_5_rolls_back_everything_over_ssh() {
    let h = sshd::Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    failure_at_step_5_on(&w);
}

/// --no-rollback, then `tend rollback` over a new connection.
#[test]
fn no_rollback_then_rollback_over_ssh() {
    let h = sshd::Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    setup(&w);
    let before = w.snapshot();
    let r = w.run(&recipe(&w, 5, r#"throw "boom";"#), &["--no-rollback"]);
    r.assert_code(1);
    assert_ne!(before, w.snapshot());
    w.tend(&["rollback", &r.run_id()]).assert_code(0);
    assert_same(&before, &w.snapshot());
}

#[test]
fn failure_after_all_eight_steps_rolls_back_everything() {
    let w = World::new();
    setup(&w);
    let before = w.snapshot();
    let r = w.run(&recipe(&w, 9, r#"throw "boom";"#), &[]);
    r.assert_code(3);
    assert_eq!(r.changed_count(), 8);
    assert_same(&before, &w.snapshot());
}

/// A failing operation (not a script `throw`) at step 5.
#[test]
fn failing_operation_rolls_back() {
    let w = World::new();
    setup(&w);
    let before = w.snapshot();
    let r = w.run(
        &recipe(&w, 5, r#"fs::copy("ROOT/does-not-exist", "ROOT/x");"#),
        &[],
    );
    r.assert_code(3);
    let err = step_failed_error(&r);
    assert!(
        err.contains("recipe.rhai:5:") && err.contains("does-not-exist"),
        "{err}"
    );
    assert_same(&before, &w.snapshot());
}

/// Every possible failure point, each from the same start: whatever ran is undone.
#[test]
fn failure_at_any_step_rolls_back() {
    for at in 1..=9 {
        let w = World::new();
        setup(&w);
        let before = w.snapshot();
        let r = w.run(&recipe(&w, at, r#"throw "boom";"#), &[]);
        if at == 1 {
            // Before any operation: the check that runs the recipe up to its first
            // operation already fails, so nothing starts at all.
            r.assert_code(65);
            assert!(r.stderr.contains("recipe.rhai:1:"), "{}", r.stderr);
            assert!(w.runs().is_empty());
        } else {
            r.assert_code(3);
            assert_eq!(r.changed_count(), (at - 1) as u64);
        }
        let d = diff(&before, &w.snapshot());
        assert!(d.is_empty(), "fail before step {at}: differs at {d:#?}");
    }
}

/// The undo records the eight steps above do not leave: a removed tree with links in
/// it, compression, a file replaced by a link, a copy and a rename over existing
/// files, mode changes, and one path changed by several steps in a row.
#[test]
fn every_other_kind_of_change_rolls_back() {
    let w = World::new();
    w.mkdir("tree", 0o750);
    w.write_mode("tree/a", "a", 0o600);
    w.mkdir("tree/sub", 0o700);
    w.write_mode("tree/sub/b", "b", 0o640);
    w.symlink("tree/sub/link", "../a");
    w.symlink("tree/dangling", "/nonexistent");
    w.write_mode("big.log", &"compress me\n".repeat(500), 0o640);
    w.write_mode("other.log", &"and me\n".repeat(50), 0o600);
    w.write("plain", "was a file\n");
    w.write_mode("src.conf", "new content\n", 0o600);
    w.write_mode("dest.conf", "old content\n", 0o644);
    w.write("moved", "moved content\n");
    w.write_mode("over", "will be replaced\n", 0o604);
    w.mkdir("dmode", 0o755);
    w.write_mode("fmode", "same\n", 0o644);
    w.write("lines", "keep\ndrop me\nkeep too\n");
    let before = w.snapshot();
    let text = r#"
fs::remove("ROOT/tree");
archive::compress("ROOT/big.log", "gzip");
archive::compress("ROOT/other.log", "zstd");
fs::link("ROOT/plain", "ROOT/src.conf");
fs::copy("ROOT/src.conf", "ROOT/dest.conf");
fs::rename("ROOT/moved", "ROOT/over");
fs::dir("ROOT/dmode", #{mode: 0o700});
fs::file("ROOT/fmode", #{content: "same\n", mode: 0o600});
fs::line("ROOT/lines", "", #{regex: "^drop", state: "absent"});
fs::file("ROOT/twice", "one\n");
fs::line("ROOT/twice", "two");
fs::rename("ROOT/twice", "ROOT/thrice");
fs::line("ROOT/thrice", "three");
fs::file("ROOT/lines", "rewritten\n");
fs::remove("ROOT/thrice");
throw "boom";
"#;
    let r = w.run(&w.recipe_in_root("recipe.rhai", text), &[]);
    r.assert_code(3);
    assert_eq!(r.changed_count(), 15, "{}", r.stdout);
    assert_same(&before, &w.snapshot());
}

#[test]
fn no_rollback_then_tend_rollback() {
    let w = World::new();
    setup(&w);
    let before = w.snapshot();
    let r = w.run(&recipe(&w, 9, r#"throw "boom";"#), &["--no-rollback"]);
    r.assert_code(1);
    assert_eq!(r.event("run_end")["outcome"], "failed");
    let changed = w.snapshot();
    // Every step's change is still there.
    let d = diff(&before, &changed);
    for rel in [
        "app.conf",
        "new.conf",
        "hosts",
        "current",
        "app.log",
        "app.log.1",
        "id_key",
        "junk.tmp",
        "cache",
        "cache/a",
        "cache/a/b",
    ] {
        assert!(d.contains(&w.path(rel)), "{rel} not changed: {d:#?}");
    }
    let id = r.run_id();

    // A dry-run of the rollback lists what it would do and does nothing.
    let dry = w.tend(&["rollback", &id, "--dry-run", "--json"]);
    dry.assert_code(0);
    let undos: Vec<_> = dry
        .events()
        .into_iter()
        .filter(|e| e["event"] == "undo")
        .collect();
    assert!(undos.len() >= 8, "{}", dry.stdout);
    assert!(undos.iter().all(|u| u["result"] == "would revert"));
    assert_same(&changed, &w.snapshot());
    let dry_human = w.tend(&["rollback", &id, "--dry-run"]);
    dry_human.assert_code(0);
    assert_same(&changed, &w.snapshot());

    let rb = w.tend(&["rollback", &id]);
    rb.assert_code(0);
    assert_same(&before, &w.snapshot());
    assert_eq!(w.runs().last().unwrap()["outcome"], "rolled_back");

    // Again: the journal says it is all undone; nothing changes.
    let again = w.tend(&["rollback", &id, "--json"]);
    again.assert_code(0);
    assert!(
        again.events().iter().all(|e| e["event"] != "undo"),
        "{}",
        again.stdout
    );
    assert_same(&before, &w.snapshot());

    // And a dry-run now has nothing to list.
    let dry = w.tend(&["rollback", &id, "--dry-run", "--json"]);
    dry.assert_code(0);
    assert!(dry.events().iter().all(|e| e["event"] != "undo"));
}

#[test]
fn no_rollback_at_step_5_then_rollback() {
    let w = World::new();
    setup(&w);
    let before = w.snapshot();
    let r = w.run(&recipe(&w, 5, r#"throw "boom";"#), &["--no-rollback"]);
    r.assert_code(1);
    let changed = w.snapshot();
    assert_eq!(
        diff(&before, &changed),
        ["app.conf", "new.conf", "hosts", "current"]
            .iter()
            .map(|r| w.path(r))
            .collect()
    );
    w.tend(&["rollback", &r.run_id()]).assert_code(0);
    assert_same(&before, &w.snapshot());
}

#[test]
fn rollback_after_later_edits_of_a_rolled_back_run_changes_nothing() {
    // A run rolled back automatically: rolling it back by hand later must not undo
    // anything again (someone may have changed the files since).
    let w = World::new();
    setup(&w);
    let r = w.run(&recipe(&w, 5, r#"throw "boom";"#), &[]);
    r.assert_code(3);
    w.write("app.conf", "edited by hand afterwards\n");
    let now = w.snapshot();
    w.tend(&["rollback", &r.run_id()]).assert_code(0);
    assert_same(&now, &w.snapshot());
}

#[test]
fn unknown_run_id() {
    let w = World::new();
    let r = w.tend(&["rollback", "20990101-000000-dead"]);
    r.assert_code(66);
    assert!(r.stderr.contains("20990101-000000-dead"), "{}", r.stderr);
}

#[test]
fn sh_without_undo_makes_rollback_incomplete() {
    let w = World::new();
    setup(&w);
    let before = w.snapshot();
    let text = r#"
fs::file("ROOT/app.conf", "changed\n");
sh("true");
fs::file("ROOT/new.conf", "x\n");
throw "boom";
"#;
    let recipe = w.recipe_in_root("recipe.rhai", text);
    let r = w.run(&recipe, &[]);
    r.assert_code(4);
    assert_eq!(r.event("run_end")["outcome"], "rollback_incomplete");
    let rb = r.event("rollback");
    let incomplete: Vec<String> = rb["incomplete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(incomplete.len(), 1, "{incomplete:?}");
    assert!(
        incomplete[0].contains("step 2")
            && incomplete[0].contains("sh")
            && incomplete[0].contains("true"),
        "{incomplete:?}"
    );
    // Everything else was still undone, on both sides of the barrier.
    assert_eq!(rb["reverted"], 2);
    assert_same(&before, &w.snapshot());

    // People see it too.
    let w = World::new();
    setup(&w);
    let recipe = w.recipe_in_root("recipe.rhai", text);
    let r = w.tend(&["run", recipe.to_str().unwrap()]);
    r.assert_code(4);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("INCOMPLETE"), "{all}");
    assert!(
        all.contains("step 2 (sh)") && all.contains("sh `true`"),
        "{all}"
    );
}

#[test]
fn sh_with_undo_is_undone() {
    let w = World::new();
    let text = r#"
sh("echo on > ROOT/flag", #{undo: "rm ROOT/flag"});
throw "boom";
"#;
    let before = w.snapshot();
    let r = w.run(&w.recipe_in_root("recipe.rhai", text), &[]);
    r.assert_code(3);
    assert_same(&before, &w.snapshot());
}

// ---------------------------------------------------------------- kill -9

/// Kills the child (SIGKILL) if the test ends early, so no stray `tend` keeps going.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn journals(state: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(runs) = std::fs::read_dir(state.join("runs")) {
        for run in runs.flatten() {
            let j = run.path().join("hosts/local/journal.jsonl");
            if j.exists() {
                out.push(j);
            }
        }
    }
    out
}

/// Records in the journal and the highest sequence number marked done.
fn journal_progress(path: &Path) -> (usize, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut records = 0;
    let mut done = 0;
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        if v.get("seq").is_some() {
            records += 1;
        }
        if let Some(d) = v.get("done").and_then(|d| d.as_u64()) {
            done = done.max(d);
        }
    }
    (records, done)
}

#[test]
fn kill_9_then_rollback() {
    let w = World::new();
    setup(&w);
    let before = w.snapshot();
    // All eight steps, then a loop that runs until killed (the timeout is only a
    // safety net should the test itself die before killing it).
    let mut text: Vec<String> = STEPS.iter().map(|s| s.to_string()).collect();
    text.push("let n = 0; loop { n += 1; }".into());
    let recipe = w.recipe_in_root("recipe.rhai", &text.join("\n"));
    let child = w
        .command()
        .args([
            "run",
            recipe.to_str().unwrap(),
            "--max-operations",
            "1000000000000000",
            "--timeout",
            "120s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Killer(child);

    // Eight steps write at least nine records (mkdir -p journals each directory).
    let deadline = Instant::now() + Duration::from_secs(10);
    let journal = loop {
        let js = journals(&w.state());
        if let Some(j) = js.first() {
            let (records, done) = journal_progress(j);
            if records >= 10 && done as usize == records {
                break j.clone();
            }
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("tend ended before it was killed: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the journal did not show the changes within 10s: {:?}",
            js.first()
                .map(|j| std::fs::read_to_string(j).unwrap_or_default())
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(diff(&before, &w.snapshot()).len(), 0);

    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let killed: Tree = w.snapshot();
    assert!(!diff(&before, &killed).is_empty());

    let runs = w.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["outcome"], "interrupted", "{runs:?}");
    let id = runs[0]["run_id"].as_str().unwrap().to_string();
    assert!(journal.to_str().unwrap().contains(&id));

    // A dry-run of the rollback first: changes nothing.
    w.tend(&["rollback", &id, "--dry-run"]).assert_code(0);
    assert_same(&killed, &w.snapshot());

    let rb = w.tend(&["rollback", &id]);
    rb.assert_code(0);
    assert_same(&before, &w.snapshot());
    assert_eq!(w.runs()[0]["outcome"], "rolled_back");

    // The host lock died with the process: a new run can start.
    let again = w.run(&w.recipe_in_root("two.rhai", STEPS[0]), &[]);
    again.assert_code(0);
}

/// A command that failed may have done part of its work: its undo is not run blindly,
/// and the report says so (and does not call it interrupted).
#[test]
fn failed_sh_with_undo_is_reported_not_undone() {
    let w = World::new();
    w.write("app.conf", "original\n");
    let before = w.snapshot();
    let text = r#"
fs::file("ROOT/app.conf", "changed\n");
sh("exit 3", #{undo: "touch ROOT/undo-ran"});
"#;
    let r = w.run(&w.recipe_in_root("recipe.rhai", text), &[]);
    // No known change is left (exit 3); the command's own effects are unknown, and a
    // warning says so.
    r.assert_code(3);
    let rb = r.event("rollback");
    assert_eq!(rb["incomplete"], serde_json::json!([]), "{}", r.stdout);
    let warnings = rb["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{}", r.stdout);
    let msg = warnings[0].as_str().unwrap();
    assert!(
        msg.contains("step 2 (sh)")
            && msg.contains("before it finished")
            && msg.contains("undo-ran"),
        "{msg}"
    );
    assert!(step_failed_error(&r).contains("recipe.rhai:3:"));
    // The file step was still undone; the undo command was not run.
    assert_same(&before, &w.snapshot());
}

/// A rename that fails after its undo record was written (here: across file systems)
/// changed nothing, so rolling back must neither fail nor move anything over `from`.
#[test]
fn failed_rename_over_an_existing_file_rolls_back_cleanly() {
    let shm = Path::new("/dev/shm");
    let same_fs = |a: &Path, b: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(a).unwrap().dev() == std::fs::metadata(b).unwrap().dev()
    };
    let w = World::new();
    if !shm.is_dir() || same_fs(shm, &w.root()) {
        eprintln!("skipped: no second file system at /dev/shm");
        return;
    }
    let other = tempfile::tempdir_in(shm).unwrap();
    std::fs::write(other.path().join("b"), "B\n").unwrap();
    w.write("a", "A\n");
    w.write("c", "C\n");
    let before = (w.snapshot(), support::snapshot(other.path()));
    let text = format!(
        "fs::file(\"ROOT/c\", \"changed\\n\");\nfs::rename(\"ROOT/a\", \"{}/b\");\n",
        other.path().display()
    );
    let r = w.run(&w.recipe_in_root("recipe.rhai", &text), &[]);
    r.assert_code(3);
    assert!(step_failed_error(&r).contains("recipe.rhai:2:"));
    assert_same(&before.0, &w.snapshot());
    assert_same(&before.1, &support::snapshot(other.path()));
}

/// `fs::remove` moves a file into the run's backup directory (one rename, and the
/// file comes back as the same inode, times and all); with the backup directory on
/// another file system it falls back to a copy. Both roll back byte for byte.
#[test]
fn removed_files_come_back_from_the_same_or_another_file_system() {
    use std::os::unix::fs::MetadataExt;
    let text = "fs::remove(\"ROOT/a.log\");\nfs::remove(\"ROOT/dir\");\nthrow \"boom\";\n";

    let w = World::new();
    w.write_mode("a.log", "first\n", 0o640);
    w.write_mode("dir/b.log", "second\n", 0o600);
    let inode = std::fs::metadata(w.root().join("a.log")).unwrap().ino();
    let before = w.snapshot();
    w.run(&w.recipe_in_root("recipe.rhai", text), &[])
        .assert_code(3);
    assert_same(&before, &w.snapshot());
    assert_eq!(
        std::fs::metadata(w.root().join("a.log")).unwrap().ino(),
        inode,
        "moved back, not copied back"
    );

    // tmpfs for the state: renames into it fail with EXDEV.
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("no /dev/shm here: the other-file-system case is not run");
        return;
    }
    let state = tempfile::tempdir_in(shm).unwrap();
    let w = World::new();
    w.write_mode("a.log", "first\n", 0o640);
    w.write_mode("dir/b.log", "second\n", 0o600);
    let before = w.snapshot();
    let recipe = w.recipe_in_root("recipe.rhai", text);
    let r = w.run_env(
        &recipe,
        &[],
        &[("TEND_STATE_DIR", state.path().to_str().unwrap())],
    );
    r.assert_code(3);
    assert_same(&before, &w.snapshot());
}
