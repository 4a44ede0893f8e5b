//! Issue 9, "the audit fails closed" and "output that cannot be spoofed or lost":
//! one regression test per item (12, 13, 21, 22, 23, 24), each through the real binary.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::path::Path;
use std::process::Command;

use support::World;

fn audit_lines(w: &World) -> Vec<String> {
    std::fs::read_to_string(w.state().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_audit(w: &World, lines: &[String]) {
    std::fs::write(w.state().join("audit.jsonl"), lines.join("\n") + "\n").unwrap();
}

/// A recipe that writes `root/NAME` with `text`.
fn writer(w: &World, name: &str) -> std::path::PathBuf {
    w.recipe_in_root(
        &format!("{name}.rhai"),
        &format!("fs::file(\"ROOT/{name}\", \"{name}\\n\");\n"),
    )
}

#[test]
fn item12_run_refuses_when_audit_cannot_be_appended() {
    let w = World::new();
    w.run(&writer(&w, "first"), &[]).assert_code(0);
    let runs_before = w.runs().len();

    // Lines cut off the end: the head says more than the log has.
    let mut lines = audit_lines(&w);
    lines.pop();
    write_audit(&w, &lines);
    let refused = w.run(&writer(&w, "second"), &[]);
    assert_ne!(refused.code, 0, "{}{}", refused.stdout, refused.stderr);
    assert!(!w.root().join("second").exists(), "nothing may change");
    assert!(
        refused
            .stderr
            .contains("cannot record the run, so it was not started")
            && refused.stderr.contains("lines removed from the end"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        w.runs().len(),
        runs_before,
        "a refused run leaves no record"
    );

    // audit.head cannot be written (as on a full disk): the line is not durable as
    // the chain's head, so the run does not start either.
    let w = World::new();
    w.run(&writer(&w, "first"), &[]).assert_code(0);
    std::fs::create_dir(w.state().join("audit.head.tmp")).unwrap();
    let refused = w.run(&writer(&w, "third"), &[]);
    assert_ne!(refused.code, 0, "{}{}", refused.stdout, refused.stderr);
    assert!(!w.root().join("third").exists(), "nothing may change");
    assert!(refused.stderr.contains("audit.head"), "{}", refused.stderr);
}

#[test]
fn item12_run_that_loses_its_audit_log_midway_stops_and_rolls_back() {
    let w = World::new();
    let log = w.state().join("audit.jsonl");
    // Step 2 empties the audit log (as an intruder or a runaway cleanup would);
    // step 3 must not run, and step 1 must be undone.
    let r = w.recipe_in_root(
        "midway.rhai",
        &format!(
            "fs::file(\"ROOT/one\", \"1\\n\");\n\
             sh(\": > {}\", #{{undo: \"true\"}});\n\
             fs::file(\"ROOT/three\", \"3\\n\");\n",
            log.display()
        ),
    );
    let run = w.run(&r, &[]);
    run.assert_code(3);
    assert!(!w.root().join("one").exists(), "step 1 was rolled back");
    assert!(!w.root().join("three").exists(), "step 3 never ran");
    let failed = run.event("step_failed");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("cannot record this run"), "{error}");
    assert_eq!(run.event("run_end")["outcome"], "rolled_back");
}

#[test]
fn item13_anchor_catches_a_cut_log_with_a_rewritten_head() {
    let w = World::new();
    let anchors = w.dir.path().join("anchors.txt");
    std::fs::write(
        w.dir.path().join("tend.toml"),
        format!(
            "[audit]\nanchor_command = \"cat >> '{}' && test -n \\\"$TEND_AUDIT_ANCHOR\\\"\"\n",
            anchors.display()
        ),
    )
    .unwrap();
    w.run(&writer(&w, "a"), &[]).assert_code(0);
    w.run(&writer(&w, "b"), &[]).assert_code(0);

    // Every run end sent the anchor of the log as it then was.
    let sent = std::fs::read_to_string(&anchors).unwrap();
    let sent: Vec<&str> = sent.lines().collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let printed = w.tend(&["audit", "anchor"]);
    printed.assert_code(0);
    let anchor = printed.stdout.trim().to_string();
    assert_eq!(anchor, sent[1]);
    assert!(anchor.ends_with(&format!(":{}", audit_lines(&w).len())));

    // The attack: cut the second run off the log and point audit.head at what is
    // left. The chain alone cannot tell.
    let lines = audit_lines(&w);
    let kept: Vec<String> = lines[..lines.len() / 2].to_vec();
    let last: serde_json::Value = serde_json::from_str(kept.last().unwrap()).unwrap();
    write_audit(&w, &kept);
    std::fs::write(
        w.state().join("audit.head"),
        serde_json::json!({"seq": last["seq"], "hash": last["hash"]}).to_string(),
    )
    .unwrap();
    w.tend(&["audit", "verify"]).assert_code(0);

    // The anchor kept elsewhere can.
    let v = w.tend(&["audit", "verify", "--anchor", &anchor]);
    v.assert_code(67);
    assert!(v.stderr.contains("anchor"), "{}", v.stderr);
    // An anchor from before the cut still holds: the lines up to it are intact.
    w.tend(&["audit", "verify", "--anchor", sent[0]])
        .assert_code(0);
    // Not an anchor at all: a usage error, not a verdict on the log.
    w.tend(&["audit", "verify", "--anchor", "nonsense"])
        .assert_code(64);
}

#[test]
fn item21_human_output_says_why_a_single_host_failed() {
    let w = World::new();
    let r = writer(&w, "x");
    let r = r.to_str().unwrap();

    // A stale or held lock on this machine.
    std::fs::create_dir_all(w.locks()).unwrap();
    let lock = std::fs::File::create(w.locks().join("local.lock")).unwrap();
    lock.lock().unwrap();
    let locked = w.tend(&["run", r]);
    locked.assert_code(75);
    assert!(
        locked.stderr.contains("locked by another run"),
        "{}{}",
        locked.stdout,
        locked.stderr
    );
    drop(lock);

    // One SSH host: unknown host key, refused login, nobody listening.
    let mut h = sshd::Sshd::start_tendtest();
    let toml = h.host_entry("h1", &h.root, &h.root.with_file_name("tend-state"));
    std::fs::write(w.dir.path().join("tend.toml"), toml).unwrap();
    let empty = w.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let known = h.known_hosts.display().to_string();
    let remote = w.recipe("remote.rhai", "fs::file(`${host().vars.root}/x`, \"x\");\n");
    let remote = remote.to_str().unwrap();

    let unknown = w.tend(&[
        "run",
        remote,
        "-H",
        "h1",
        "--known-hosts",
        empty.to_str().unwrap(),
    ]);
    unknown.assert_code(1);
    assert!(
        unknown.stderr.contains(&h.host_fingerprint())
            && unknown.stderr.contains("--accept-new-host-keys"),
        "{}{}",
        unknown.stdout,
        unknown.stderr
    );

    // A run that succeeds, to roll back later with the host down.
    h.hand_over(&[&h.root, &h.root.with_file_name("tend-state")]);
    let done = w.run(Path::new(remote), &["-H", "h1", "--known-hosts", &known]);
    done.assert_code(0);

    let good_key = std::fs::read(&h.client_key).unwrap();
    sshd::keygen(&h.client_key);
    let refused = w.tend(&["run", remote, "-H", "h1", "--known-hosts", &known]);
    refused.assert_code(1);
    assert!(
        refused.stderr.contains("authentication"),
        "{}{}",
        refused.stdout,
        refused.stderr
    );
    std::fs::write(&h.client_key, good_key).unwrap();

    h.stop();
    let down = w.tend(&["run", remote, "-H", "h1", "--known-hosts", &known]);
    down.assert_code(1);
    assert!(
        down.stderr.contains("127.0.0.1"),
        "{}{}",
        down.stdout,
        down.stderr
    );
    let rollback = w.tend(&["rollback", &done.run_id()]);
    rollback.assert_code(4);
    assert!(
        rollback.stdout.contains("h1: not reached"),
        "{}{}",
        rollback.stdout,
        rollback.stderr
    );
}

#[test]
fn item22_control_characters_are_escaped_and_colours_only_on_a_terminal() {
    let w = World::new();
    // A path with an ANSI colour, a right-to-left override and a newline that would
    // start a line looking like one of tend's; a log message clearing the screen.
    let r = w.recipe(
        "spoof.rhai",
        &format!(
            "fs::file(\"{}/a\\x1b[31mred\\u202Eevil\\n  ~ local  fs::file passwd\", \"x\");\n\
             log::info(\"done\\x1b[2J\\u0000\");\n",
            w.root().display()
        ),
    );
    let run = w.tend(&["run", r.to_str().unwrap()]);
    run.assert_code(0);
    let all = format!("{}{}", run.stdout, run.stderr);
    for raw in ['\x1b', '\u{202e}', '\0'] {
        assert!(!all.contains(raw), "{raw:?} printed raw:\n{all}");
    }
    assert!(
        run.stdout
            .contains(r"a\x1b[31mred\u{202e}evil\n  ~ local  fs::file passwd"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(r"done\x1b[2J\0"), "{}", run.stdout);
    assert_eq!(
        run.stdout.lines().filter(|l| l.contains("passwd")).count(),
        1,
        "the newline in the path started a line of its own:\n{}",
        run.stdout
    );

    // Stdout on a terminal, stderr into a file: only the terminal gets colours.
    let err = w.dir.path().join("stderr.txt");
    let out = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} run {} 2>{}",
            support::TEND,
            w.dir.path().join("missing.rhai").display(),
            err.display()
        ))
        .arg("/dev/null")
        .env("TEND_STATE_DIR", w.state())
        .env_remove("NO_COLOR")
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(stderr.contains("error:"), "{stderr}{out:?}");
    assert!(!stderr.contains('\x1b'), "colours in a file: {stderr:?}");
}

#[test]
fn item23_json_early_errors_are_one_error_event() {
    let w = World::new();
    let bad_syntax = w.recipe("syntax.rhai", "let x = ;\n");
    let params = w.recipe("params.rhai", "let p = params(#{ n: 1 });\n");
    let cases: Vec<(Vec<String>, &str, i32)> = vec![
        (
            vec!["run".into(), bad_syntax.display().to_string()],
            "recipe",
            65,
        ),
        (
            vec![
                "run".into(),
                params.display().to_string(),
                "-p".into(),
                "nope=1".into(),
            ],
            "param",
            64,
        ),
        (
            vec![
                "run".into(),
                params.display().to_string(),
                "-p".into(),
                "n=x".into(),
            ],
            "param",
            64,
        ),
        (vec!["run".into(), "missing.rhai".into()], "not_found", 66),
        (
            vec![
                "run".into(),
                params.display().to_string(),
                "-c".into(),
                "/nonexistent/tend.toml".into(),
            ],
            "usage",
            64,
        ),
        (
            vec![
                "run".into(),
                params.display().to_string(),
                "-p".into(),
                "zz".into(),
            ],
            "usage",
            64,
        ),
        (
            vec!["rollback".into(), "20200101-000000-0000".into()],
            "not_found",
            66,
        ),
    ];
    for (mut args, kind, code) in cases {
        args.push("--json".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = w.tend(&args);
        r.assert_code(code);
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", r.stdout);
        let e: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(e["event"], "error", "{args:?}: {e}");
        assert_eq!(e["kind"], kind, "{args:?}: {e}");
        assert_eq!(e["exit_code"], code, "{args:?}: {e}");
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn item24_corrupt_run_json_is_listed_damaged_and_rolls_back_from_the_journal() {
    let w = World::new();
    w.write("f", "original\n");
    let r = w.recipe_in_root("edit.rhai", "fs::file(\"ROOT/f\", \"changed\\n\");\n");
    let run = w.run(&r, &[]);
    run.assert_code(0);
    let id = run.run_id();
    let meta = w.state().join("runs").join(&id).join("run.json");
    let damaged = b"{\"run_id\": \"20261128-2122";
    std::fs::write(&meta, damaged).unwrap();

    let runs = w.runs();
    let listed = runs
        .iter()
        .find(|r| r["run_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {runs:?}"));
    assert_eq!(listed["outcome"], "damaged");
    let table = w.tend(&["runs"]);
    assert!(table.stdout.contains("damaged"), "{}", table.stdout);

    let back = w.tend(&["rollback", &id]);
    back.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(w.root().join("f")).unwrap(),
        "original\n"
    );
    // What was damaged is kept for whoever looks into it.
    assert_eq!(
        std::fs::read(meta.with_extension("json.damaged")).unwrap(),
        damaged
    );
    let runs = w.runs();
    let listed = runs.iter().find(|r| r["run_id"] == id.as_str()).unwrap();
    assert_eq!(listed["outcome"], "rolled_back");
}
