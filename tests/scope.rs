//! A recipe's declared write scope (`//! scope: …`, `//! become: …`): operations that
//! would mutate a path outside it are refused before they plan or apply, whatever the
//! parameters say; `sh` runs only when the recipe vouches for it.

mod support;

use support::{assert_same, Run, World};

const FAILED: i32 = 1;
const ROLLED_BACK: i32 = 3;
const USAGE: i32 = 64;
const RECIPE: i32 = 65;

/// A world with app logs (in scope) and an /etc-like directory beside them (not).
fn world() -> World {
    let w = World::new();
    w.write("logs/app.log", "log line\n");
    w.write("logs/old/1.log", "old\n");
    w.write("etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    w
}

/// A log-cleaning recipe scoped to ROOT/logs/**, whose target is a parameter.
const CLEAN: &str = r#"//! Removes one old log file.
//! scope: ROOT/logs/**
let p = params(#{ target: "ROOT/logs/app.log" });
fs::remove(p.target);
"#;

fn errors(r: &Run) -> Vec<String> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "step_failed")
        .map(|e| e["error"].as_str().unwrap().to_string())
        .collect()
}

#[track_caller]
fn refused(r: &Run, code: i32, parts: &[&str]) -> String {
    r.assert_code(code);
    let errs = errors(r);
    assert_eq!(errs.len(), 1, "{}\n{}", r.stdout, r.stderr);
    for p in parts {
        assert!(errs[0].contains(p), "{p:?} not in {:?}", errs[0]);
    }
    errs[0].clone()
}

#[test]
fn a_parameter_pointing_outside_the_scope_changes_nothing_and_says_why() {
    let w = world();
    let recipe = w.recipe_in_root("clean.rhai", CLEAN);
    let etc = w.path("etc/passwd");
    let scope = format!("{}/**", w.path("logs"));
    let before = w.snapshot();
    let target = format!("target={etc}");
    for extra in [&["--dry-run"][..], &[][..]] {
        let mut args = vec!["-p", target.as_str()];
        args.extend_from_slice(extra);
        let r = w.run(&recipe, &args);
        let e = refused(
            &r,
            FAILED,
            &[
                "fs::remove",
                &etc,
                "outside the recipe's declared scope",
                &scope,
            ],
        );
        // At the call's line, before any step was planned.
        assert!(e.contains("clean.rhai:4:"), "{e}");
        assert!(
            !r.events().iter().any(|e| e["event"] == "step"),
            "a step was planned: {}",
            r.stdout
        );
        assert_same(&before, &w.snapshot());
    }
    // The human report says it too.
    let r = w.tend(&[
        "run",
        recipe.to_str().unwrap(),
        "-p",
        &format!("target={etc}"),
    ]);
    r.assert_code(FAILED);
    assert!(
        r.stderr.contains("outside the recipe's declared scope")
            || r.stdout.contains("outside the recipe's declared scope"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_same(&before, &w.snapshot());

    // The same recipe does its job inside its scope.
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    assert!(!w.root().join("logs/app.log").exists());
    assert!(w.root().join("etc/passwd").exists());
}

#[test]
fn a_later_step_outside_the_scope_rolls_back_the_earlier_ones() {
    let w = world();
    let recipe = w.recipe_in_root(
        "two.rhai",
        r#"//! scope: ROOT/logs/**
let p = params(#{ target: "ROOT/logs/x" });
fs::file("ROOT/logs/app.log", "rotated\n");
fs::remove("ROOT/logs/old");
fs::file(p.target, "owned\n");
"#,
    );
    let before = w.snapshot();
    let r = w.run(
        &recipe,
        &["-p", &format!("target={}", w.path("etc/passwd"))],
    );
    refused(
        &r,
        ROLLED_BACK,
        &["fs::file", &w.path("etc/passwd"), "outside"],
    );
    assert_same(&before, &w.snapshot());
}

#[test]
fn dot_dot_and_symlinks_do_not_lead_out_of_the_scope() {
    let w = world();
    let recipe = w.recipe_in_root(
        "write.rhai",
        r#"//! scope: ROOT/logs/**
let p = params(#{ target: "ROOT/logs/x" });
fs::file(p.target, "owned\n");
"#,
    );
    w.symlink("logs/etc-link", &w.path("etc"));
    w.symlink("logs/rel-link", "../etc");
    let before = w.snapshot();
    let traversal = format!("{}/../etc/passwd", w.path("logs"));
    let r = w.run(&recipe, &["-p", &format!("target={traversal}")]);
    refused(&r, FAILED, &[&traversal, "outside", "`..`"]);
    for link in ["etc-link", "rel-link"] {
        let through = format!("{}/{link}/passwd", w.path("logs"));
        let r = w.run(&recipe, &["-p", &format!("target={through}")]);
        refused(
            &r,
            FAILED,
            &[
                &through,
                "outside",
                "through a symlink",
                &w.path("etc/passwd"),
            ],
        );
    }
    // A relative path cannot be checked against absolute patterns.
    let r = w.run(&recipe, &["-p", "target=logs/x"]);
    refused(&r, FAILED, &["logs/x", "absolute"]);
    assert_same(&before, &w.snapshot());
    // `a//b/./c` is the same path as `a/b/c`, and in scope.
    let odd = format!("{}//./new.log", w.path("logs"));
    w.run(&recipe, &["-p", &format!("target={odd}")])
        .assert_code(0);
    assert!(w.root().join("logs/new.log").exists());
}

#[test]
fn directories_and_their_contents() {
    let w = world();
    w.write("logs/mixed/a.log", "a\n");
    w.write("logs/mixed/keep.conf", "c\n");
    let recipe = w.recipe_in_root(
        "dirs.rhai",
        r#"//! scope: ROOT/logs/**
let p = params(#{ op: "", a: "", b: "" });
if p.op == "remove" { fs::remove(p.a); }
if p.op == "rename" { fs::rename(p.a, p.b); }
if p.op == "dir" { fs::dir(p.a); }
"#,
    );
    let before = w.snapshot();
    let logs = w.path("logs");
    // `/dir/**` covers what is below the directory, not the directory itself.
    let r = w.run(&recipe, &["-p", "op=remove", "-p", &format!("a={logs}")]);
    refused(&r, FAILED, &["fs::remove", &logs, "outside"]);
    // A directory moved out of the scope takes its contents with it.
    let out = w.path("elsewhere");
    let r = w.run(
        &recipe,
        &[
            "-p",
            "op=rename",
            "-p",
            &format!("a={logs}/old"),
            "-p",
            &format!("b={out}"),
        ],
    );
    refused(&r, FAILED, &["fs::rename", &out, "outside"]);
    // fs::dir would create a parent outside the scope.
    let r = w.run(
        &recipe,
        &[
            "-p",
            "op=dir",
            "-p",
            &format!("a={}/new/sub", w.path("other")),
        ],
    );
    refused(&r, FAILED, &["fs::dir", "outside"]);
    assert_same(&before, &w.snapshot());

    // Inside: whole trees may go.
    w.run(
        &recipe,
        &["-p", "op=remove", "-p", &format!("a={logs}/old")],
    )
    .assert_code(0);
    assert!(!w.root().join("logs/old").exists());
    w.run(
        &recipe,
        &["-p", "op=dir", "-p", &format!("a={logs}/new/sub")],
    )
    .assert_code(0);
    assert!(w.root().join("logs/new/sub").is_dir());

    // A narrower scope: a directory in scope whose contents are not.
    let narrow = w.recipe_in_root(
        "narrow.rhai",
        r#"//! scope: ROOT/logs/*.log, ROOT/logs/mixed
fs::remove("ROOT/logs/mixed");
"#,
    );
    let before = w.snapshot();
    let r = w.run(&narrow, &[]);
    refused(&r, FAILED, &["mixed/a.log inside it", "outside"]);
    assert_same(&before, &w.snapshot());
}

#[test]
fn sh_in_a_scoped_recipe_runs_only_when_marked_in_scope() {
    let w = world();
    let unmarked = w.recipe_in_root(
        "sh.rhai",
        r#"//! scope: ROOT/logs/**
sh("touch ROOT/logs/touched");
"#,
    );
    let before = w.snapshot();
    // Dry-run: reported, flagged, with a warning.
    let plan = w.run(&unmarked, &["--dry-run"]);
    plan.assert_code(0);
    let step = plan.event("step");
    assert_eq!(step["outside_scope"], true, "{step}");
    assert_eq!(step["unknown"], true, "{step}");
    assert!(plan.events().iter().any(|e| e["event"] == "log"
        && e["level"] == "warn"
        && e["message"].as_str().unwrap().contains("in_scope: true")));
    // Real run: refused before it starts.
    let r = w.run(&unmarked, &[]);
    refused(&r, FAILED, &["sh `touch", "in_scope: true", "scope"]);
    assert_same(&before, &w.snapshot());

    // Marked by the recipe: it runs; read-only commands run too.
    let marked = w.recipe_in_root(
        "sh-ok.rhai",
        r#"//! scope: ROOT/logs/**
sh("touch ROOT/logs/touched", #{in_scope: true, undo: "rm -f ROOT/logs/touched"});
let r = sh("cat ROOT/etc/passwd", #{read_only: true});
"#,
    );
    let plan = w.run(&marked, &["--dry-run"]);
    plan.assert_code(0);
    assert!(plan
        .events()
        .iter()
        .filter(|e| e["event"] == "step")
        .all(|e| e.get("outside_scope").is_none()));
    w.run(&marked, &[]).assert_code(0);
    assert!(w.root().join("logs/touched").exists());

    // Unscoped recipes are not affected (and may say in_scope: true harmlessly).
    let free = w.recipe_in_root(
        "free.rhai",
        "sh(\"touch ROOT/etc/free\", #{in_scope: true});\nsh(\"touch ROOT/etc/free2\");\n",
    );
    w.run(&free, &[]).assert_code(0);
    assert!(w.root().join("etc/free2").exists());
}

#[test]
fn archive_compress_checks_both_names() {
    let w = world();
    let recipe = w.recipe_in_root(
        "gz.rhai",
        r#"//! scope: ROOT/logs/*.log
archive::compress("ROOT/logs/app.log");
"#,
    );
    let before = w.snapshot();
    let r = w.run(&recipe, &[]);
    refused(&r, FAILED, &["archive::compress", "app.log.gz", "outside"]);
    assert_same(&before, &w.snapshot());
}

#[test]
fn an_empty_scope_allows_no_change() {
    let w = world();
    let recipe = w.recipe_in_root(
        "ro.rhai",
        "//! Reports only.\n//! scope:\nlet n = fs::glob(\"ROOT/logs/*.log\").len();\nlog::info(`${n} logs`);\nfs::chmod(\"ROOT/logs/app.log\", 0o600);\n",
    );
    let before = w.snapshot();
    let r = w.run(&recipe, &[]);
    refused(&r, FAILED, &["fs::chmod", "outside", "nothing"]);
    assert_same(&before, &w.snapshot());
}

#[test]
fn show_prints_the_scope_and_bad_headers_are_recipe_errors() {
    let w = world();
    let recipe = w.recipe_in_root(
        "clean.rhai",
        "//! Cleans.\n//! scope: ROOT/logs/**, ROOT/tmp/x\n//! become: false\nfs::remove(\"ROOT/logs/app.log\");\n",
    );
    let r = w.tend(&["show", recipe.to_str().unwrap()]);
    r.assert_code(0);
    let line = format!("Scope: {}/**, {}", w.path("logs"), w.path("tmp/x"));
    assert!(r.stdout.contains(&line), "{line:?} not in\n{}", r.stdout);
    let r = w.tend(&["show", recipe.to_str().unwrap(), "--json"]);
    r.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        v["scope"],
        serde_json::json!([format!("{}/**", w.path("logs")), w.path("tmp/x")])
    );
    assert_eq!(v["become"], false);
    let unscoped = w.recipe("free.rhai", "//! Free.\nlet x = 1;\n");
    let r = w.tend(&["show", unscoped.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert!(v["scope"].is_null());

    for (text, needle) in [
        ("//! Bad.\n//! scope: logs/**\nlet x = 1;\n", "absolute"),
        ("//! Bad.\n//! scope: /a/[\nlet x = 1;\n", "scope pattern"),
        ("//! become: sometimes\nlet x = 1;\n", "become"),
    ] {
        let bad = w.recipe("bad.rhai", text);
        let r = w.tend(&["check", bad.to_str().unwrap()]);
        r.assert_code(RECIPE);
        assert!(
            r.stderr.contains("bad.rhai:") && r.stderr.contains(needle),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn become_false_refuses_a_run_through_sudo() {
    let w = world();
    // The check comes before any connection: the host need not exist.
    std::fs::write(
        w.dir.path().join("tend.toml"),
        "[hosts.h1]\naddress = \"127.0.0.1\"\nport = 1\nbecome = true\n[hosts.h2]\naddress = \"127.0.0.1\"\nport = 1\n",
    )
    .unwrap();
    let recipe = w.recipe_in_root(
        "nosudo.rhai",
        "//! become: false\nfs::file(\"ROOT/logs/x\", \"x\\n\");\n",
    );
    let before = w.snapshot();
    let r = w.tend(&["run", recipe.to_str().unwrap(), "-H", "h1"]);
    r.assert_code(USAGE);
    assert!(
        r.stderr.contains("become: false") && r.stderr.contains("h1"),
        "{}",
        r.stderr
    );
    let r = w.tend(&["run", recipe.to_str().unwrap(), "-H", "h2", "--become"]);
    r.assert_code(USAGE);
    assert!(r.stderr.contains("h2"), "{}", r.stderr);
    assert_same(&before, &w.snapshot());
    assert!(w.runs().is_empty());
    // Locally, without sudo, it runs.
    w.tend(&["run", recipe.to_str().unwrap()]).assert_code(0);
}
