//! `sh(cmd, #{changes: [...]})`: a third-party command that declares the paths it may
//! change becomes a reported, reversible step. Through the real binary, locally and
//! over a real sshd: the step reports exactly the paths the command changed (compared
//! with a snapshot of the tree), a command that changes nothing reports no change, a
//! failure after it restores the tree byte for byte, a change outside the declared
//! paths fails the step, and a run killed (SIGKILL) while the command runs is rolled
//! back with what it created moved aside, not deleted.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::collections::BTreeSet;

use sshd::Sshd;
use support::{assert_same, diff, World};

/// The error that ended the run: the failed host's, or the command's own.
#[track_caller]
fn run_error(run: &support::Run, parts: &[&str]) -> String {
    let from_host = run
        .events()
        .iter()
        .find(|e| e["event"] == "host_end" && e["error"].is_string())
        .map(|e| e["error"].as_str().unwrap().to_string());
    let err = from_host.unwrap_or_else(|| support::one_error(run, &[]));
    for p in parts {
        assert!(err.contains(p), "{p:?} not in {err:?}");
    }
    err
}

fn setup(w: &World) {
    w.write("etc/app/app.conf", "port = 80\n");
    w.write("etc/app/old.conf", "obsolete\n");
    w.write("etc/app/keep.conf", "untouched\n");
    w.write("etc/neighbour.conf", "not declared\n");
}

/// An installer-like script: rewrites one file, removes one, makes a directory with
/// a file in it, leaves one alone.
fn installer(w: &World) -> String {
    let app = w.path("etc/app");
    format!(
        "sh(\"cd {app} && sed -i 's/80/8080/' app.conf && rm old.conf && mkdir -p conf.d && printf 'x=1\\\\n' > conf.d/x.conf\", #{{changes: [\"{app}/**\"]}});\n"
    )
}

fn exact(w: &World) {
    setup(w);
    let before = w.snapshot();
    let body = installer(w);

    // A dry-run cannot know what a command does: unknown, nothing touched.
    let dry = w.run(&w.recipe_in_root("r.rhai", &body), &["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(dry.event("step")["unknown"], true, "{}", dry.stdout);
    assert_same(&before, &w.snapshot());

    // Reported paths are exactly what changed on disk.
    let real = w.run(&w.recipe_in_root("r.rhai", &body), &[]);
    real.assert_code(0);
    let after = w.snapshot();
    let changed = diff(&before, &after);
    let expect: BTreeSet<String> = [
        "etc/app/app.conf",
        "etc/app/old.conf",
        "etc/app/conf.d",
        "etc/app/conf.d/x.conf",
    ]
    .iter()
    .map(|p| w.path(p))
    .collect();
    assert_eq!(changed, expect, "what the command changed");
    assert_eq!(
        real.changed_paths(),
        expect,
        "what the step reports:\n{}",
        real.stdout
    );
    let step = real.event("step");
    let d = step["diff"].as_str().unwrap();
    assert!(
        d.contains(&format!("~ {}", w.path("etc/app/app.conf"))),
        "{d}"
    );
    assert!(
        d.contains(&format!("- {}", w.path("etc/app/old.conf"))),
        "{d}"
    );
    assert!(
        d.contains(&format!("+ {}", w.path("etc/app/conf.d/x.conf"))),
        "{d}"
    );
    assert_eq!(step["reversible"], true);

    // Rolled back later by id: byte for byte as before.
    let rb = w.tend(&["rollback", &real.run_id(), "--json"]);
    rb.assert_code(0);
    assert_same(&before, &w.snapshot());

    // The same, failing after the command: the automatic rollback restores it all.
    let failing = w.recipe_in_root("fail.rhai", &format!("{body}throw \"injected\";\n"));
    let failed = w.run(&failing, &[]);
    failed.assert_code(3);
    assert_same(&before, &w.snapshot());
}

#[test]
fn a_declared_command_reports_what_it_changed_and_rolls_back_locally() {
    exact(&World::new());
}

#[test]
fn a_declared_command_reports_what_it_changed_and_rolls_back_over_ssh() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    exact(&w);
}

#[test]
fn an_idempotent_command_reports_no_change_the_second_time() {
    let w = World::new();
    setup(&w);
    let conf = w.path("etc/app/app.conf");
    let body = format!(
        "sh(\"grep -q '^debug' {conf} || echo 'debug = 1' >> {conf}\", #{{changes: [\"{conf}\"]}});\n"
    );
    let first = w.run(&w.recipe_in_root("r.rhai", &body), &[]);
    first.assert_code(0);
    assert_eq!(first.changed_paths(), BTreeSet::from([conf.clone()]));
    let after = w.snapshot();
    let second = w.run(&w.recipe_in_root("r.rhai", &body), &[]);
    second.assert_code(0);
    assert_eq!(second.changed_count(), 0, "{}", second.stdout);
    assert_eq!(second.event("step")["changed"], false);
    assert_same(&after, &w.snapshot());
}

#[test]
fn a_change_outside_the_declared_paths_fails_the_step() {
    let w = World::new();
    setup(&w);
    let before = w.snapshot();
    let app = w.path("etc/app");
    let neighbour = w.path("etc/neighbour.conf");
    let body = format!(
        "sh(\"echo 2 > {app}/app.conf && echo sneaky >> {neighbour}\", #{{changes: [\"{app}/**\"]}});\n"
    );
    let run = w.run(&w.recipe_in_root("r.rhai", &body), &[]);
    run.assert_code(3);
    let err = run_error(&run, &["outside the paths it declares", &neighbour]);
    assert!(err.contains("cannot restore"), "{err}");
    // The declared file is back; the neighbour keeps what the command did (tend has
    // no backup of it, and says so).
    let now = w.snapshot();
    assert_eq!(diff(&before, &now), BTreeSet::from([neighbour]));
    assert_eq!(
        std::fs::read_to_string(w.root().join("etc/app/app.conf")).unwrap(),
        "port = 80\n"
    );
}

#[test]
fn a_run_killed_in_the_command_is_rolled_back_and_new_files_are_kept_aside() {
    let w = World::new();
    setup(&w);
    let before = w.snapshot();
    let app = w.path("etc/app");
    // The command kills tend itself (its parent) after changing things: nothing after
    // the command is journaled; the records written ahead must do.
    let body = format!(
        "sh(\"echo 2 > {app}/app.conf && echo mine > {app}/new.conf && kill -9 $PPID; sleep 1\", #{{changes: [\"{app}/**\"]}});\n"
    );
    let run = w.run(&w.recipe_in_root("r.rhai", &body), &[]);
    assert_ne!(run.code, 0);
    let runs = w.runs();
    assert_eq!(runs[0]["outcome"], "interrupted", "{runs:?}");
    let id = runs[0]["run_id"].as_str().unwrap().to_string();
    let rb = w.tend(&["rollback", &id, "--json"]);
    assert_eq!(rb.code, 0, "{}\n{}", rb.stdout, rb.stderr);
    assert_same(&before, &w.snapshot());
    // The new file was moved into the run's backups, not deleted: its bytes may be
    // somebody else's.
    let kept: Vec<_> = walk(&w.state())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-new.conf"))
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "new.conf kept aside once: {kept:?}\n{}\n{:?}",
        rb.stdout,
        walk(&w.state())
    );
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), "mine\n");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn bad_declarations_are_refused_before_anything_runs() {
    let w = World::new();
    setup(&w);
    let before = w.snapshot();
    let marker = w.path("ran");
    for (opts, msg) in [
        ("#{changes: [\"etc/app\"]}", "must be absolute"),
        ("#{changes: []}", "`changes` is empty"),
        ("#{changes: [\"/**\"]}", "whole file system"),
        ("#{changes: [\"/tmp/x\"], undo: \"true\"}", "not both"),
        ("#{changes: 3}", "must be a list"),
    ] {
        let r = w.recipe_in_root("r.rhai", &format!("sh(\"touch {marker}\", {opts});\n"));
        let run = w.run(&r, &[]);
        assert_ne!(run.code, 0, "{opts}");
        run_error(&run, &[msg]);
        assert_same(&before, &w.snapshot());
    }
    // In a scoped recipe, a declared path outside the scope is refused.
    let app = w.path("etc/app");
    let r = w.recipe_in_root(
        "scoped.rhai",
        &format!(
            "//! scope: {app}/**\nsh(\"touch {marker}\", #{{changes: [\"{}\"]}});\n",
            w.path("etc/neighbour.conf")
        ),
    );
    let run = w.run(&r, &[]);
    run.assert_code(1);
    run_error(&run, &["outside the recipe's write scope"]);
    assert_same(&before, &w.snapshot());
    // Inside it, the command runs without `in_scope: true`.
    let r = w.recipe_in_root(
        "scoped.rhai",
        &format!(
            "//! scope: {app}/**\nsh(\"echo 1 > {app}/app.conf\", #{{changes: [\"{app}/**\"]}});\n"
        ),
    );
    w.run(&r, &[]).assert_code(0);
}

/// `dry_run: "sandbox"`: the plan is the command run in a throwaway overlay, and it
/// is exactly what the real run then reports; nothing of the sandbox is left behind.
/// The sandbox tests look at /tmp for leftovers: one at a time.
static SANDBOX: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sandbox_plan_is_the_run(w: &World) {
    let _one = SANDBOX.lock().unwrap_or_else(|e| e.into_inner());
    setup(w);
    let before = w.snapshot();
    let body = installer(w).replace("]});", "], dry_run: \"sandbox\"});");
    let recipe = w.recipe_in_root("r.rhai", &body);
    let sandboxes = || {
        std::fs::read_dir("/tmp")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("tend-sandbox."))
            .count()
    };
    let left_before = sandboxes();
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_same(&before, &w.snapshot());
    let planned = dry.event("step");
    assert_eq!(planned["unknown"], false, "{}", dry.stdout);
    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    let done = real.event("step");
    assert_eq!(planned["paths"], done["paths"]);
    assert_eq!(planned["diff"], done["diff"]);
    assert_eq!(dry.changed_paths(), diff(&before, &w.snapshot()));
    assert!(sandboxes() <= left_before, "a sandbox dir was left in /tmp");
}

#[test]
fn a_sandboxed_dry_run_plans_exactly_what_the_run_does_locally() {
    sandbox_plan_is_the_run(&World::new());
}

#[test]
fn a_sandboxed_dry_run_plans_exactly_what_the_run_does_over_ssh() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    sandbox_plan_is_the_run(&w);
}

#[test]
fn a_sandboxed_command_that_needs_the_network_is_unknown_with_the_reason() {
    let _one = SANDBOX.lock().unwrap_or_else(|e| e.into_inner());
    let w = World::new();
    setup(&w);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = w.path("etc/app");
    let body = format!(
        "sh(\"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' && echo 1 > {app}/app.conf\", #{{changes: [\"{app}/**\"], dry_run: \"sandbox\"}});\n"
    );
    let r = w.recipe_in_root("r.rhai", &body);
    let dry = w.run(&r, &["--dry-run"]);
    let step = dry.event("step");
    assert_eq!(step["unknown"], true, "{}", dry.stdout);
    assert!(
        step["stderr"].as_str().unwrap().contains("no network"),
        "{step}"
    );
    // Outside the sandbox the same command connects: the sandbox made the difference.
    let real = w.run(&r, &[]);
    real.assert_code(0);
    assert_eq!(real.changed_paths().len(), 1, "{}", real.stdout);
    drop(listener);
    // Without `changes` there is nothing to sandbox: refused at the line.
    let r = w.recipe_in_root("bad.rhai", "sh(\"true\", #{dry_run: \"sandbox\"});\n");
    run_error(&w.run(&r, &["--dry-run"]), &["needs `changes`"]);
}
