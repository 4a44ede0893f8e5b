//! Handlers, as Ansible's, end to end through the real binary: `handler(name, || …)`
//! declares one, `notify(name)` (or a step's `notify:` option) asks for it, and a
//! notified handler runs once, in declaration order, at the end of the host's run or
//! at `flush_handlers()`; not at all when nothing notified it, nor when the run
//! fails first (which rolls back). A dry-run shows the steps the handlers would run.

mod support;

use support::{assert_same, Run, World};

/// Three config files, each notifying the same handler when it changed; the handler
/// appends a line to `handled` (a real command, so a second run would show).
const RECIPE: &str = r#"
let p = params(#{a: "a", b: "b", c: "c", fail: false});
handler("restart app", || {
    sh("echo ran >> ROOT/handled", #{undo: "rm -f ROOT/handled"});
});
if fs::file("ROOT/a.conf", p.a).changed { notify("restart app"); }
if fs::file("ROOT/b.conf", p.b).changed { notify("restart app"); }
if fs::file("ROOT/c.conf", p.c).changed { notify("restart app"); }
if p.fail { throw "injected"; }
"#;

fn handled(w: &World) -> String {
    std::fs::read_to_string(w.root().join("handled")).unwrap_or_default()
}

/// The messages of `log` events that say a handler ran.
fn handler_runs(r: &Run) -> Vec<String> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "log")
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.starts_with("running handler"))
        .map(String::from)
        .collect()
}

fn ops(r: &Run) -> Vec<String> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["op"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn world() -> World {
    let w = World::new();
    w.write("a.conf", "a");
    w.write("b.conf", "old b");
    w.write("c.conf", "old c");
    w
}

#[test]
fn two_of_three_changed_files_run_the_handler_once_at_the_end() {
    let w = world();
    let recipe = w.recipe_in_root("r.rhai", RECIPE);
    let before = w.snapshot();

    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_same(&before, &w.snapshot());
    assert_eq!(
        handler_runs(&dry),
        vec!["running handler \"restart app\" (notified)"]
    );
    // The handler's step is in the plan, after every step of the recipe.
    assert_eq!(ops(&dry), ["fs::file", "fs::file", "fs::file", "sh"]);

    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert_eq!(handled(&w), "ran\n", "once:\n{}", real.stdout);
    assert_eq!(handler_runs(&real).len(), 1);
    assert_eq!(ops(&real), ops(&dry));
    assert_eq!(real.changed_count(), 3, "two files and the handler");
}

#[test]
fn no_change_no_handler() {
    let w = World::new();
    w.write("a.conf", "a");
    w.write("b.conf", "b");
    w.write("c.conf", "c");
    let recipe = w.recipe_in_root("r.rhai", RECIPE);
    for extra in [&["--dry-run"][..], &[]] {
        let r = w.run(&recipe, extra);
        r.assert_code(0);
        assert!(handler_runs(&r).is_empty(), "{}", r.stdout);
        assert_eq!(r.changed_count(), 0);
    }
    assert!(!w.root().join("handled").exists());
}

#[test]
fn a_failure_before_the_end_runs_no_handler_and_rolls_everything_back() {
    let w = world();
    let recipe = w.recipe_in_root("r.rhai", RECIPE);
    let before = w.snapshot();
    let r = w.run(&recipe, &["-p", "fail=true"]);
    r.assert_code(3);
    assert!(handler_runs(&r).is_empty(), "{}", r.stdout);
    assert_same(&before, &w.snapshot());
    assert!(!w.root().join("handled").exists());
}

#[test]
fn a_failing_handler_fails_the_run_at_its_line_and_rolls_back() {
    let w = world();
    let recipe = w.recipe_in_root(
        "r.rhai",
        "handler(\"check\", || {\n    assert(false, \"app did not come up\");\n});\n\
         if fs::file(\"ROOT/b.conf\", \"b\").changed { notify(\"check\"); }\n",
    );
    let before = w.snapshot();
    let r = w.run(&recipe, &[]);
    r.assert_code(3);
    let failed = r.event("step_failed");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("r.rhai:2:")
            && error.contains("handler \"check\": assertion failed: app did not come up"),
        "{error}"
    );
    assert_same(&before, &w.snapshot());
}

#[test]
fn handlers_run_in_declaration_order_and_flush_runs_them_early() {
    let w = World::new();
    let recipe = w.recipe_in_root(
        "r.rhai",
        r#"
handler("first", || fs::line("ROOT/order", "first ran"));
handler("second", || fs::line("ROOT/order", "second ran"));
fs::file("ROOT/x", "x");
notify("second");
notify("first");
notify("second");
flush_handlers();
fs::line("ROOT/order", "after the flush");
notify(["first"]);
"#,
    );
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(w.root().join("order")).unwrap(),
        "first ran\nsecond ran\nafter the flush\n",
        "`first` ran again at the end? it already says so: fs::line changed nothing"
    );
    assert_eq!(
        handler_runs(&r),
        [
            "running handler \"first\" (notified)",
            "running handler \"second\" (notified)",
            "running handler \"first\" (notified)",
        ]
    );
}

#[test]
fn notifying_an_undeclared_handler_is_an_error_at_its_line() {
    let w = world();
    let recipe = w.recipe_in_root(
        "r.rhai",
        "handler(\"restart app\", || {});\nfs::file(\"ROOT/b.conf\", \"b\");\nnotify(\"restart ap\");\n",
    );
    let before = w.snapshot();
    let r = w.run(&recipe, &[]);
    r.assert_code(3);
    let error = r.event("step_failed")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("r.rhai:3:")
            && error.contains("notify(\"restart ap\"): no handler of that name is declared")
            && error.contains("did you mean \"restart app\"?"),
        "{error}"
    );
    assert_same(&before, &w.snapshot());

    // The `notify:` option of a step is checked before the step changes anything.
    let r = w.run(
        &w.recipe_in_root(
            "o.rhai",
            "systemd::unit(\"tend-t-h.service\", \"\", #{root: \"ROOT\", notify: \"nobody\"});\n",
        ),
        &[],
    );
    r.assert_code(1);
    let error = r.event("step_failed")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("o.rhai:1:") && error.contains("notify(\"nobody\")"),
        "{error}"
    );
    assert!(!w
        .root()
        .join("etc/systemd/system/tend-t-h.service")
        .exists());
}

#[test]
fn a_handler_declared_twice_is_refused() {
    let w = World::new();
    let recipe = w.recipe("r.rhai", "handler(\"x\", || {});\nhandler(\"x\", || {});\n");
    let r = w.run(&recipe, &[]);
    // Found by the pass that reads the recipe's declarations: refused before it runs.
    r.assert_code(65);
    let error = r.event("error")["message"].as_str().unwrap().to_string();
    assert!(
        error.contains("r.rhai:2:") && error.contains("handler \"x\" is declared twice"),
        "{error}"
    );
}

#[test]
fn the_notify_option_of_a_step_notifies_when_it_changed() {
    let w = World::new();
    w.mkdir("etc/systemd/system", 0o755);
    let recipe = w.recipe_in_root(
        "r.rhai",
        r#"
handler("note", || fs::line("ROOT/notes", "unit changed"));
systemd::unit("tend-t-n.service", "[Service]\nExecStart=/bin/true\n", #{root: "ROOT", notify: "note"});
"#,
    );
    w.run(&recipe, &[]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(w.root().join("notes")).unwrap(),
        "unit changed\n"
    );
    std::fs::remove_file(w.root().join("notes")).unwrap();
    let again = w.run(&recipe, &[]);
    again.assert_code(0);
    assert!(handler_runs(&again).is_empty());
    assert!(!w.root().join("notes").exists());
}
