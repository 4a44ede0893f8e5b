//! Issue 14, `tend test`: a recipe's test cases run in a throwaway root, and every
//! case checks the contract of every recipe (plan = run, a second run changes nothing,
//! rollback after each step restores the tree, scope) before the author's own
//! expectations. A wrong `undo` fails with the tree diff; the same recipe with a right
//! one passes; expectations fail when they should; the shipped recipes pass.

mod support;

use support::{Run, World};

/// Appends a line to a config with a command; `UNDO` is the command's undo.
const APPEND: &str = r#"//! Add a debug line to the app's config with a shell command.
let p = params(#{ conf: "/etc/app.ini" });
sh(`printf 'debug = true\n' >> ${p.conf}`, #{
    unless: `grep -qx 'debug = true' ${p.conf}`,
    undo: UNDO,
});
fs::file(p.conf + ".done", #{ content: "yes\n" });
"#;

/// Its undo removes the whole file instead of the line it added.
const WRONG_UNDO: &str = "`rm -f ${p.conf}`";
const RIGHT_UNDO: &str = r#"`sed -i "/^debug = true$/d" ${p.conf}`"#;

const APPEND_TEST: &str = r#"test("adds the debug line", #{
    fixture: #{ "etc/app.ini": #{ content: "[main]\nname = app\n", mode: "0640" } },
}, |t| {
    t.expect_file("etc/app.ini", "[main]\nname = app\ndebug = true\n");
    t.expect_changed(["etc/app.ini", "etc/app.ini.done"]);
});
"#;

fn append_recipe(w: &World, undo: &str) -> std::path::PathBuf {
    w.beside("app.test.rhai", APPEND_TEST);
    w.recipe("app.rhai", &APPEND.replace("UNDO", undo))
}

fn last_line(r: &Run) -> &str {
    r.stdout.lines().last().unwrap_or_default()
}

fn tend_test(w: &World, args: &[&str]) -> Run {
    let mut all = vec!["test"];
    all.extend_from_slice(args);
    w.tend(&all)
}

#[test]
fn a_wrong_undo_fails_with_the_tree_diff() {
    let w = World::new();
    let recipe = append_recipe(&w, WRONG_UNDO);
    let r = tend_test(&w, &[recipe.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("case adds the debug line ... FAILED"),
        "{}",
        r.stdout
    );
    // The failure after step 1 ran the wrong undo: the config is gone, the diff says so.
    assert!(
        r.stdout
            .contains("rollback: a failure injected after step 1 of 2 (sh printf"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("    - etc/app.ini (file 0640, \"[main]\\nname = app\\n\")"),
        "{}",
        r.stdout
    );
    assert_eq!(last_line(&r), "0 passed, 1 failed");

    let r = tend_test(&w, &["--json", recipe.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let case = r.event("test_case");
    assert_eq!(case["passed"], false);
    assert_eq!(case["steps"], 2);
    let failures = case["failures"].as_array().unwrap();
    assert_eq!(
        failures.len(),
        1,
        "only the rollback is wrong: {failures:?}"
    );
    assert_eq!(failures[0]["check"], "rollback");
    assert_eq!(
        failures[0]["diff"][0],
        "- etc/app.ini (file 0640, \"[main]\\nname = app\\n\")"
    );
    let end = r.event("test_end");
    assert_eq!(
        (end["passed"].as_u64(), end["failed"].as_u64()),
        (Some(0), Some(1))
    );
    // The recipe's absolute default went to the throwaway root, never to the real /etc.
    assert!(!std::path::Path::new("/etc/app.ini.done").exists());
}

#[test]
fn the_same_recipe_with_a_right_undo_passes() {
    let w = World::new();
    let recipe = append_recipe(&w, RIGHT_UNDO);
    let r = tend_test(&w, &[recipe.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("case adds the debug line ... ok"),
        "{}",
        r.stdout
    );
    assert_eq!(last_line(&r), "1 passed, 0 failed");
}

#[test]
fn expectations_fail_when_they_should() {
    let w = World::new();
    let recipe = append_recipe(&w, RIGHT_UNDO);
    w.beside(
        "app.test.rhai",
        r#"fixture(#{ "etc/app.ini": "[main]\n" });
test("right", #{}, |t| {
    t.expect_file("etc/app.ini", "[main]\ndebug = true\n");
    t.expect_present("etc/app.ini.done");
    t.expect_absent("etc/other");
    t.assert(t.read("etc/app.ini.done") == "yes\n", "done marker");
    t.expect_changed(["etc/app.ini", "etc/app.ini.done"]);
});
test("wrong content", #{}, |t| {
    t.expect_file("etc/app.ini", "[main]\n");
});
test("not absent", #{}, |t| {
    t.expect_absent("etc/app.ini.done");
});
test("changed other paths", #{}, |t| {
    t.expect_changed(["etc/app.ini"]);
});
test("no error came", #{}, |t| {
    t.expect_error("boom");
});
test("an assertion", #{}, |t| {
    t.assert(t.size("etc/app.ini") == 0, "the config is empty");
});
test("a failed run, unexpected", #{ params: #{ conf: "/missing/dir/app.ini" } });
test("a failed run, expected", #{ params: #{ conf: "/missing/dir/app.ini" } }, |t| {
    t.expect_error("exited with status");
    t.expect_changed([]);
});
"#,
    );
    let r = tend_test(&w, &["--json", recipe.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let cases: Vec<serde_json::Value> = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "test_case")
        .collect();
    let verdict = |name: &str| -> (bool, String) {
        let c = cases.iter().find(|c| c["case"] == name).unwrap();
        (c["passed"].as_bool().unwrap(), c["failures"].to_string())
    };
    assert!(verdict("right").0, "{}", verdict("right").1);
    assert!(
        verdict("a failed run, expected").0,
        "{}",
        verdict("a failed run, expected").1
    );
    for (name, says) in [
        (
            "wrong content",
            r#"line 10: expect_file etc/app.ini: it holds \"[main]\\ndebug = true\\n\", expected \"[main]\\n\""#,
        ),
        (
            "not absent",
            "line 13: expect_absent etc/app.ini.done: it exists",
        ),
        (
            "changed other paths",
            "changed but not expected: [etc/app.ini.done]",
        ),
        (
            "no error came",
            r#"line 19: expect_error \"boom\": the run succeeded"#,
        ),
        ("an assertion", "line 22: assert: the config is empty"),
        ("a failed run, unexpected", "the recipe failed"),
    ] {
        let (passed, failures) = verdict(name);
        assert!(!passed, "{name} should fail");
        assert!(failures.contains(says), "{name}: {failures}");
    }
    let end = r.event("test_end");
    assert_eq!(
        (end["passed"].as_u64(), end["failed"].as_u64()),
        (Some(2), Some(6))
    );
}

#[test]
fn a_second_run_that_changes_again_and_a_change_outside_the_scope_fail() {
    let w = World::new();
    let recipe = w.recipe(
        "stamp.rhai",
        r#"//! Append a stamp on every run, and touch a stray file through a command.
//! scope: /srv/app/**
let p = params(#{ log: "/srv/app/stamps", stray: "/srv/other" });
sh(`echo stamp >> ${p.log}`, #{ in_scope: true, undo: `sed -i '$d' ${p.log}` });
sh(`touch ${p.stray}`, #{ in_scope: true, creates: p.stray, undo: `rm -f ${p.stray}` });
"#,
    );
    w.beside(
        "stamp.test.rhai",
        "test(\"stamps\", #{ fixture: #{ \"srv/app/stamps\": \"\" } });\n",
    );
    let r = tend_test(&w, &[recipe.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "scope: the run changed paths outside the declared scope (/srv/app/**): /srv/other"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "idempotence: a second run changed things again: sh echo stamp >> /srv/app/stamps"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(r#"    ~ srv/app/stamps: content "stamp\n" -> "stamp\nstamp\n""#),
        "{}",
        r.stdout
    );
}

#[test]
fn a_bad_test_file_is_a_data_error_with_file_and_line() {
    let w = World::new();
    let recipe = append_recipe(&w, RIGHT_UNDO);
    let test = w.beside(
        "app.test.rhai",
        "test(\"one\", #{});\ntest(\"two\", #{\n  fixtur: #{},\n});\n",
    );
    let r = tend_test(&w, &[recipe.to_str().unwrap()]);
    assert_eq!(r.code, 65, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{}:2:1: test \"two\": unknown option `fixtur`",
            test.display()
        )),
        "{}",
        r.stderr
    );
    w.beside(
        "app.test.rhai",
        "test(\"one\", #{ fixture: #{ \"a\": #{ size: \"lots\" } } });\n",
    );
    let r = tend_test(&w, &["--json", recipe.to_str().unwrap()]);
    assert_eq!(r.code, 65);
    let e = r.event("error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(":1:1: fixture \"a\": size \"lots\" is not a size"),
        "{e}"
    );
    // A size no fixture needs is refused before anything is built.
    w.beside(
        "app.test.rhai",
        "test(\"one\", #{ fixture: #{ \"a\": #{ size: \"2T\" } } });\n",
    );
    let r = tend_test(&w, &[recipe.to_str().unwrap()]);
    assert_eq!(r.code, 65, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("over the 1G a fixture may have"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_shipped_recipes_pass() {
    let w = World::new();
    let recipes = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes");
    let r = tend_test(&w, &[recipes]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // Every shipped recipe has tests.
    for e in std::fs::read_dir(recipes).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".rhai") && !name.ends_with(".test.rhai") {
            let stem = name.trim_end_matches(".rhai");
            assert!(
                r.stdout.contains(&format!("{stem}.test.rhai")),
                "{name} has no test file:\n{}",
                r.stdout
            );
        }
    }
    assert!(
        r.stdout
            .contains("case rotates a big log and leaves a small one ... ok"),
        "{}",
        r.stdout
    );
    // Not a fixed count: recipes and their cases are added to the folder.
    assert!(last_line(&r).ends_with(" passed, 0 failed"), "{}", r.stdout);
}

#[test]
fn vet_with_require_tests_refuses_a_recipe_whose_tests_fail() {
    let w = World::new();
    std::fs::write(
        w.dir.path().join("tend.toml"),
        "[trust]\nrequire_tests = true\n",
    )
    .unwrap();
    let trust_file = w.dir.path().join("vetted.toml");
    let recipe = append_recipe(&w, WRONG_UNDO);
    let r = w.tend(&["vet", recipe.to_str().unwrap(), "--by", "alice"]);
    assert_eq!(r.code, 77, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("[trust] require_tests = true and its tests fail (adds the debug line)"),
        "{}",
        r.stderr
    );
    let recorded = std::fs::read_to_string(&trust_file).unwrap_or_default();
    assert!(!recorded.contains("app.rhai"), "{recorded}");

    // Fixed, it is vetted, and the approval says what its tests said.
    append_recipe(&w, RIGHT_UNDO);
    let r = w.tend(&["vet", recipe.to_str().unwrap(), "--by", "alice"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("tests (require_tests): 1 passed, 0 failed"),
        "{}",
        r.stdout
    );
    let recorded = std::fs::read_to_string(&trust_file).unwrap();
    assert!(
        recorded.contains("tests = \"1 passed, 0 failed\""),
        "{recorded}"
    );

    // A recipe without tests is refused too.
    let bare = w.recipe("bare.rhai", "//! Nothing to test.\nlog::info(\"hi\");\n");
    let r = w.tend(&["vet", bare.to_str().unwrap(), "--by", "alice"]);
    assert_eq!(r.code, 77, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("it has no tests"), "{}", r.stderr);
}

#[test]
fn absolute_paths_are_rebased_unless_the_case_says_they_are_real() {
    let w = World::new();
    let recipe = w.recipe(
        "tool.rhai",
        r#"//! Run a tool that writes a marker.
let p = params(#{ tool: "/bin/true", marker: "/var/lib/app/marker" });
sh(p.tool, #{ read_only: true });
fs::file(p.marker, #{ content: "ok\n" });
"#,
    );
    w.beside(
        "tool.test.rhai",
        r#"let fixture = #{ "var/lib/app/": #{} };
test("the tool rebased into the root is not there", #{ fixture: fixture });
test("the tool is the machine's", #{ fixture: fixture, real_paths: ["tool"] }, |t| {
    t.expect_file("var/lib/app/marker", "ok\n");
});
"#,
    );
    let r = tend_test(&w, &["--json", recipe.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let cases: Vec<serde_json::Value> = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "test_case")
        .collect();
    assert_eq!(cases[0]["passed"], false);
    let why = cases[0]["failures"].to_string();
    assert!(why.contains("the recipe failed"), "{why}");
    assert!(why.contains("/bin/true"), "{why}");
    assert_eq!(cases[1]["passed"], true, "{}", cases[1]);
    // The default marker went to the throwaway root, never to the real path.
    assert!(!std::path::Path::new("/var/lib/app/marker").exists());
}

#[test]
fn a_hard_coded_path_outside_the_root_is_never_run_for_real() {
    let w = World::new();
    let real = w.dir.path().join("outside.conf");
    let recipe = w.recipe(
        "fixed.rhai",
        &format!(
            "//! Writes a fixed path, not one from its parameters.\nfs::file(\"{}\", #{{ content: \"x\\n\" }});\n",
            real.display()
        ),
    );
    w.beside("fixed.test.rhai", "test(\"writes\", #{});\n");
    let r = tend_test(&w, &[recipe.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "scope: the dry-run plans changes outside the test root, so the case was not run: {}",
            real.display()
        )),
        "{}",
        r.stdout
    );
    assert!(!real.exists(), "the real path was written");
}
