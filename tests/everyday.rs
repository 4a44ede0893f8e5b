//! Everyday use (issue 13): honest rollback outcomes, `changed_when`/`failed_when`,
//! `tend exec` running what was typed, `last` as a run id, dry-runs in the run
//! history, sizes like `100k`, errors in Rhai's words, `tend demo`, `step_start`.
//! The real binary on real files (and one real sshd for `exec`).

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use sshd::Sshd;
use support::{Run, World};

fn exists(w: &World, rel: &str) -> bool {
    w.root().join(rel).exists()
}

/// The one `rollback` event of a `--json` run or rollback.
fn rollback_event(r: &Run) -> serde_json::Value {
    r.event("rollback")
}

#[test]
fn a_failed_command_after_file_changes_rolls_back_with_a_warning_not_incomplete() {
    let w = World::new();
    let r = w.recipe(
        "r.rhai",
        &format!(
            "fs::file(\"{a}\", \"hello\\n\");\nfs::line(\"{b}\", \"x=1\", #{{create: true}});\nsh(\"echo partial > {c}; false\");\n",
            a = w.path("a.txt"),
            b = w.path("b.txt"),
            c = w.path("c.txt"),
        ),
    );
    let run = w.run(&r, &[]);
    run.assert_code(3);
    assert!(
        !exists(&w, "a.txt") && !exists(&w, "b.txt"),
        "file changes reverted"
    );
    let rb = rollback_event(&run);
    assert_eq!(rb["reverted"], 2, "{rb}");
    assert_eq!(rb["incomplete"], serde_json::json!([]), "{rb}");
    let warnings = rb["warnings"].as_array().expect("warnings").clone();
    assert_eq!(warnings.len(), 1, "{rb}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains("echo partial > ") && warning.contains("; false"),
        "{warning}"
    );
    assert!(warning.contains("unknown"), "{warning}");
    assert_eq!(run.event("run_end")["outcome"], "rolled_back");
    // As people read it.
    std::fs::write(w.root().join("c.txt"), "").unwrap();
    let human = w.tend(&["run", r.to_str().unwrap()]);
    human.assert_code(3);
    assert!(
        human.stdout.contains("rolled back 2 change(s)"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("warning: step 3 (sh): sh `echo partial"),
        "{}",
        human.stdout
    );
    assert!(!human.stdout.contains("INCOMPLETE"), "{}", human.stdout);
}

#[test]
fn a_command_that_ran_without_undo_still_makes_a_rollback_incomplete() {
    let w = World::new();
    let r = w.recipe(
        "r.rhai",
        &format!(
            "fs::file(\"{a}\", \"hello\\n\");\nsh(\"true\");\nthrow \"stop here\";\n",
            a = w.path("a.txt")
        ),
    );
    let run = w.run(&r, &[]);
    run.assert_code(4);
    assert!(!exists(&w, "a.txt"));
    let rb = rollback_event(&run);
    let incomplete = rb["incomplete"].as_array().unwrap();
    assert_eq!(incomplete.len(), 1, "{rb}");
    assert!(
        incomplete[0]
            .as_str()
            .unwrap()
            .contains("cannot undo sh `true`"),
        "{rb}"
    );
}

#[test]
fn rollback_dry_run_counts_then_rollback_then_already_rolled_back() {
    let w = World::new();
    let r = w.recipe(
        "r.rhai",
        &format!(
            "fs::file(\"{a}\", \"hello\\n\");\nfs::line(\"{b}\", \"x=1\", #{{create: true}});\nsh(\"false\");\n",
            a = w.path("a.txt"),
            b = w.path("b.txt"),
        ),
    );
    let run = w.run(&r, &["--no-rollback"]);
    run.assert_code(1);
    let changed = run.changed_count();
    assert_eq!(changed, 2);
    let id = run.run_id();

    let plan = w.tend(&["rollback", "last", "--dry-run"]);
    plan.assert_code(0);
    let last = plan.stdout.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.ends_with(&format!("would roll back {changed}")),
        "{}",
        plan.stdout
    );
    assert!(last.contains(&id), "{last}");
    assert!(
        exists(&w, "a.txt") && exists(&w, "b.txt"),
        "a dry-run changes nothing"
    );

    let done = w.tend(&["rollback", &id]);
    done.assert_code(0);
    assert!(
        done.stdout
            .contains(&format!("complete ({changed} reverted)")),
        "{}",
        done.stdout
    );
    assert!(!done.stdout.contains("INCOMPLETE"), "{}", done.stdout);
    assert!(!exists(&w, "a.txt") && !exists(&w, "b.txt"));

    let again = w.tend(&["rollback", &id]);
    again.assert_code(0);
    assert!(
        again.stdout.contains("already rolled back at 20"),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains("0 reverted"), "{}", again.stdout);
    let json = w.tend(&["rollback", &id, "--json"]);
    let end = json.event("rollback_end");
    assert!(end["already_rolled_back_at"].is_string(), "{end}");

    // A run that rolled itself back: already rolled back too.
    std::fs::write(w.root().join("x"), "").unwrap();
    let auto = w.run(&r, &[]);
    auto.assert_code(3);
    let again = w.tend(&["rollback", "last"]);
    again.assert_code(0);
    assert!(
        again.stdout.contains("already rolled back at"),
        "{}",
        again.stdout
    );
}

#[test]
fn changed_when_lets_a_check_report_no_change() {
    let w = World::new();
    let detailed = |text: &str| {
        let r = w.recipe("check.rhai", text);
        w.tend(&["run", r.to_str().unwrap(), "-n", "--detailed-exitcode"])
            .code
    };
    // An opaque command: unknown in a dry-run, so "there may be changes".
    assert_eq!(detailed("sh(\"echo '0 upgraded'\");\n"), 2);
    // Vouched read-only: runs in the dry-run, and its result decides.
    assert_eq!(
        detailed("sh(\"echo '0 upgraded'\", #{changed_when: false});\n"),
        0
    );
    assert_eq!(
        detailed("sh(\"echo '0 upgraded'\", #{read_only: true, changed_when: |r| !r.stdout.contains(\"0 upgraded\")});\n"),
        0
    );
    assert_eq!(
        detailed("sh(\"echo '3 upgraded'\", #{read_only: true, changed_when: |r| !r.stdout.contains(\"0 upgraded\")});\n"),
        2
    );
    // A closure on a command that is not read-only cannot be judged without running
    // it: the dry-run stays truthful (unknown).
    assert_eq!(
        detailed("sh(\"echo hi\", #{changed_when: |r| false});\n"),
        2
    );

    // A real run: judged unchanged, so no undo runs and nothing is incomplete.
    let r = w.recipe(
        "r.rhai",
        &format!(
            "let r = sh(\"echo nothing\", #{{undo: \"touch {u}\", changed_when: |r| r.stdout.contains(\"upgraded\")}});\nif r.changed {{ throw \"judged changed\"; }}\nfs::file(\"{a}\", \"x\\n\");\nthrow \"stop\";\n",
            u = w.path("undo-ran"),
            a = w.path("a.txt")
        ),
    );
    let run = w.run(&r, &[]);
    run.assert_code(3);
    let step = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "step" && e["op"] == "sh")
        .unwrap();
    assert_eq!(step["changed"], false, "{step}");
    let rb = rollback_event(&run);
    assert_eq!(rb["reverted"], 1, "{rb}");
    assert_eq!(rb["incomplete"], serde_json::json!([]), "{rb}");
    assert!(
        !exists(&w, "undo-ran"),
        "the undo of an unchanged command ran"
    );
    assert!(!exists(&w, "a.txt"));
}

#[test]
fn failed_when_decides_failure_instead_of_the_exit_status() {
    let w = World::new();
    let ok = w.recipe(
        "ok.rhai",
        "let r = sh(\"exit 3\", #{failed_when: |r| r.code > 3, changed_when: false});\nprint(`code ${r.code}`);\n",
    );
    let run = w.run(&ok, &[]);
    run.assert_code(0);
    assert!(run.stdout.contains("code 3"), "{}", run.stdout);

    let bad = w.recipe(
        "bad.rhai",
        &format!(
            "fs::file(\"{a}\", \"x\\n\");\nsh(\"echo ERROR: disk full\", #{{failed_when: |r| r.stdout.contains(\"ERROR\")}});\n",
            a = w.path("a.txt")
        ),
    );
    let run = w.run(&bad, &[]);
    run.assert_code(3);
    let failed = run.event("step_failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("failed_when is true"),
        "{failed}"
    );
    assert!(!exists(&w, "a.txt"));

    let wrong = w.recipe("wrong.rhai", "sh(\"true\", #{failed_when: \"yes\"});\n");
    let run = w.run(&wrong, &[]);
    run.assert_code(65);
    assert!(
        run.stderr.contains("`failed_when` must be a closure"),
        "{}",
        run.stderr
    );
}

#[test]
fn exec_quotes_each_word_and_its_json_agrees_with_the_exit_code() {
    let w = World::new();
    let r = w.tend(&["exec", "--", "sh", "-c", "echo hi; exit 3"]);
    r.assert_code(1);
    assert!(r.stdout.contains("local (exit 3)"), "{}", r.stdout);
    assert!(r.stdout.contains("    hi"), "{}", r.stdout);

    let r = w.tend(&["exec", "--", "printf", "[%s]", "it's", "a b", "$HOME"]);
    r.assert_code(0);
    assert!(r.stdout.contains("[it's][a b][$HOME]"), "{}", r.stdout);

    // One argument stays a command line.
    let r = w.tend(&["exec", "--", "echo one; echo two | tr t T"]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("one") && r.stdout.contains("Two"),
        "{}",
        r.stdout
    );

    let j = w.tend(&["exec", "--json", "--", "sh", "-c", "echo hi; exit 3"]);
    j.assert_code(1);
    assert_eq!(j.event("step")["code"], 3);
    assert_eq!(j.event("host_end")["outcome"], "failed");
    assert_eq!(j.event("run_end")["outcome"], "failed");

    let j = w.tend(&["exec", "--json", "--", "true"]);
    j.assert_code(0);
    assert_eq!(j.event("host_end")["outcome"], "ok");
}

#[test]
fn exec_refuses_atomic() {
    let w = World::new();
    let r = w.tend(&["exec", "--atomic", "--", "touch", &w.path("made")]);
    r.assert_code(64);
    support::one_error(&r, &["--atomic", "no undo", "tend run --atomic"]);
    assert!(!exists(&w, "made"));
    assert!(w.runs().is_empty());
}

#[test]
fn exec_over_ssh_passes_each_word_as_one_argument() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    let state = w.dir.path().join("remote-state");
    let toml = h.host_entry("h1", &w.root(), &state);
    std::fs::write(w.dir.path().join("tend.toml"), toml).unwrap();
    let kh = w.dir.path().join("known_hosts");
    std::fs::write(&kh, h.known_hosts_line()).unwrap();
    h.hand_over(&[&w.root(), &state]);
    let kh = kh.display().to_string();
    let r = w.tend(&[
        "exec",
        "-H",
        "h1",
        "--known-hosts",
        &kh,
        "--",
        "sh",
        "-c",
        "printf '<%s>' \"$@\"; exit 5",
        "x",
        "two words",
        "it's",
    ]);
    r.assert_code(1);
    assert!(
        r.stdout.contains("h1 (exit 5)"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.contains("<two words><it's>"), "{}", r.stdout);
}

#[test]
fn last_is_a_run_id_and_dry_runs_are_listed_as_such() {
    let w = World::new();
    let r = w.recipe(
        "r.rhai",
        &format!(
            "fs::file(\"{a}\", \"1\\n\");\nfs::file(\"{b}\", \"2\\n\");\n",
            a = w.path("a"),
            b = w.path("b")
        ),
    );
    w.run(&r, &[]).assert_code(0);
    let first = w.runs()[0]["run_id"].as_str().unwrap().to_string();
    std::fs::remove_file(w.root().join("b")).unwrap();
    let second = w.run(&r, &[]);
    second.assert_code(0);
    let plan = w.run(&r, &["--dry-run"]);
    plan.assert_code(0);

    let runs = w.runs();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[2]["dry_run"], true);
    assert_eq!(runs[2]["run_id"], plan.run_id());
    let table = w.tend(&["runs"]);
    let row = table
        .stdout
        .lines()
        .find(|l| l.contains(&plan.run_id()))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(row.contains("dry-run ok"), "{row}");

    // `audit show last`: the dry-run, marked as one.
    let audit = w.tend(&["audit", "show", "last"]);
    audit.assert_code(0);
    assert!(audit.stdout.contains(&plan.run_id()), "{}", audit.stdout);
    let end = audit
        .stdout
        .lines()
        .find(|l| l.contains("run_end"))
        .unwrap();
    assert!(end.contains("dry-run ok"), "{end}");
    assert!(!end.contains("changed="), "{end}");
    // `last` for rollback passes over dry-runs; `last~1` is the one before.
    let rb = w.tend(&["rollback", "last", "--dry-run"]);
    rb.assert_code(0);
    assert!(rb.stdout.contains(&second.run_id()), "{}", rb.stdout);
    let rb = w.tend(&["rollback", "last~1", "--dry-run"]);
    assert!(rb.stdout.contains(&first), "{}", rb.stdout);
    assert!(rb.stdout.contains("would roll back 2"), "{}", rb.stdout);
    // A dry-run has nothing to roll back; bad and missing `last`s say so.
    let r = w.tend(&["rollback", &plan.run_id()]);
    r.assert_code(64);
    support::one_error(&r, &["dry-run", "nothing to roll back"]);
    support::one_error(&w.tend(&["rollback", "last~x"]), &["last~1"]).contains("not a run id");
    let r = w.tend(&["rollback", "last~5"]);
    r.assert_code(66);
    support::one_error(&r, &["last~5", "2 real runs"]);
}

#[test]
fn an_interrupted_run_shows_the_changes_it_made() {
    let w = World::new();
    let r = w.recipe(
        "r.rhai",
        &format!(
            "fs::file(\"{a}\", \"x\\n\");\nfs::file(\"{b}\", \"y\\n\");\nsh(\"kill -9 $PPID; sleep 5\");\n",
            a = w.path("a"),
            b = w.path("b")
        ),
    );
    let run = w.run(&r, &[]);
    assert_ne!(run.code, 0);
    let runs = w.runs();
    assert_eq!(runs[0]["outcome"], "interrupted", "{runs:?}");
    assert!(runs[0]["changed"].as_u64().unwrap() >= 2, "{runs:?}");
    let table = w.tend(&["runs"]);
    let row = table
        .stdout
        .lines()
        .find(|l| l.contains("interrupted"))
        .unwrap();
    assert!(!row.trim_end().ends_with(" 0"), "{row}");
}

#[test]
fn sizes_take_lower_case_k() {
    let w = World::new();
    let r = w.recipe(
        "r.rhai",
        "let p = params(#{ min: \"100K\" });\nprint(`min ${p.min} ${size(\"100k\")}`);\n",
    );
    let run = w.run(&r, &["-p", "min=100k"]);
    run.assert_code(0);
    assert!(run.stdout.contains("min 102400 102400"), "{}", run.stdout);
    // `m` stays minutes: refused as a size, saying so.
    let run = w.run(&r, &["-p", "min=10m"]);
    run.assert_code(64);
    assert!(run.stderr.contains("10m is ten minutes"), "{}", run.stderr);
}

#[test]
fn errors_speak_rhai() {
    let w = World::new();
    let r = w.recipe("typo.rhai", "fs::lin(\"/tmp/x\", \"a\");\n");
    let run = w.tend(&["check", r.to_str().unwrap()]);
    run.assert_code(65);
    support::one_error(
        &run,
        &["unknown function fs::lin(string, string) — did you mean fs::line?"],
    );
    assert!(!run.stderr.contains("ImmutableString"), "{}", run.stderr);

    let r = w.recipe("args.rhai", "fs::line(1);\n");
    let run = w.run(&r, &[]);
    run.assert_code(65);
    assert!(
        run.stderr.contains("no function fs::line(int)"),
        "{}",
        run.stderr
    );

    let r = w.recipe("import.rhai", "let p = #{m: \"x\"};\nimport p.m as q;\n");
    let run = w.run(&r, &[]);
    run.assert_code(65);
    assert!(
        run.stderr.contains("imports must be string literals"),
        "{}",
        run.stderr
    );
}

#[test]
fn demo_says_where_the_logs_are_and_what_to_roll_back() {
    let w = World::new();
    let link = w.dir.path().join("demo-link");
    std::fs::create_dir(w.dir.path().join("demo-real")).unwrap();
    std::os::unix::fs::symlink(w.dir.path().join("demo-real"), &link).unwrap();
    let run = w.tend(&["demo", "--dir", link.to_str().unwrap()]);
    run.assert_code(0);
    let real = w.dir.path().join("demo-real").canonicalize().unwrap();
    assert!(
        run.stdout
            .contains(&format!("Sample logs in {}/logs", real.display())),
        "{}",
        run.stdout
    );
    let id = w
        .runs()
        .iter()
        .rev()
        .find(|r| r["dry_run"] == false)
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .unwrap();
    assert!(
        run.stdout.contains(&format!("tend rollback {id}")),
        "{}",
        run.stdout
    );
}

#[test]
fn json_has_a_step_start_before_each_step() {
    let w = World::new();
    let r = w.recipe(
        "r.rhai",
        &format!(
            "fs::file(\"{a}\", \"x\\n\");\n\nsh(\"true\", #{{changed_when: false}});\n",
            a = w.path("a")
        ),
    );
    let run = w.run(&r, &[]);
    run.assert_code(0);
    let seq: Vec<(String, u64)> = run
        .events()
        .iter()
        .filter(|e| e["event"] == "step_start" || e["event"] == "step")
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["step"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [
        ("step_start", 1),
        ("step", 1),
        ("step_start", 2),
        ("step", 2),
    ]
    .iter()
    .map(|(e, n)| (e.to_string(), *n))
    .collect();
    assert_eq!(seq, want);
    let starts: Vec<_> = run
        .events()
        .into_iter()
        .filter(|e| e["event"] == "step_start")
        .collect();
    assert_eq!(starts[0]["function"], "file");
    assert_eq!(starts[1]["function"], "sh");
    assert_eq!(starts[1]["line"], 3);
    // Not in the audit log: it records what changed, not progress.
    let audit = w.tend(&["audit", "show", "--json"]);
    assert!(!audit.stdout.contains("step_start"), "{}", audit.stdout);
}

#[test]
fn show_lists_parameters_in_declaration_order_with_room_for_long_names() {
    let w = World::new();
    let r = w.recipe(
        "order.rhai",
        "//! Order.\nlet p = params(#{\n  zeta_parameter_name: 1,\n  alpha: \"x\", // first letter\n  middle_long_parameter: \"10M\",\n});\n",
    );
    let shown = w.tend(&["show", r.to_str().unwrap()]);
    shown.assert_code(0);
    let rows: Vec<&str> = shown
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Parameters:"))
        .skip(1)
        .take(3)
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["zeta_parameter_name", "alpha", "middle_long_parameter"]
    );
    // One column for the types, however long the names.
    let type_column = |l: &&str| {
        let name = l.split_whitespace().next().unwrap();
        let after = l.find(name).unwrap() + name.len();
        after + l[after..].find(|c: char| !c.is_whitespace()).unwrap()
    };
    let at: Vec<usize> = rows.iter().map(type_column).collect();
    assert!(at.windows(2).all(|w| w[0] == w[1]), "{rows:?}");
    let json = w.tend(&["show", r.to_str().unwrap(), "--json"]);
    let names: Vec<String> = json.events()[0]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["zeta_parameter_name", "alpha", "middle_long_parameter"]
    );
}
