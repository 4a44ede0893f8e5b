//! `tend import-script`: an existing shell script becomes a recipe that loads, shows
//! its parameters, runs the script with them, reports what it changed and rolls it
//! back — through the real binary on real files.

mod support;

use support::{assert_same, World};

/// A vendor-style cleanup script: an argument with a default, an environment
/// variable, variables of its own that are not parameters.
const SCRIPT: &str = r#"#!/bin/bash
# Trim an application's cache and record when it ran.
set -eu
DIR=${1:-/var/cache/app}
STAMP="$DIR/last-trim"
for f in "$DIR"/*.tmp; do
  [ -e "$f" ] || continue
  rm -- "$f"
done
echo "trimmed by ${OPERATOR:-nobody} \"quoted\" \\ backslash" > "$STAMP"
"#;

#[test]
fn a_script_becomes_a_reversible_recipe() {
    let w = World::new();
    w.write("cache/a.tmp", "aaa");
    w.write("cache/b.tmp", "bbb");
    w.write("cache/keep.dat", "keep");
    let script = w.dir.path().join("trim-cache.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    let cache = w.path("cache");

    let r = w.tend(&[
        "import-script",
        script.to_str().unwrap(),
        "--name",
        "trim-cache",
        "--changes",
        &format!("{cache}/**"),
        "--json",
    ]);
    r.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["shell"], "bash");
    assert_eq!(v["params"], serde_json::json!(["arg1", "operator"]));
    assert_eq!(v["reversible"], true);
    let recipe = w.dir.path().join("trim-cache.rhai");

    let show = w.tend(&["show", recipe.to_str().unwrap(), "--json"]);
    show.assert_code(0);
    let shown: serde_json::Value = serde_json::from_str(show.stdout.trim()).unwrap();
    assert_eq!(
        shown["description"]
            .as_str()
            .unwrap()
            .lines()
            .next()
            .unwrap(),
        "Trim an application's cache and record when it ran."
    );
    let params = shown["params"].as_array().unwrap();
    let arg1 = params.iter().find(|p| p["name"] == "arg1").unwrap();
    assert_eq!(arg1["default"], "/var/cache/app");
    assert_eq!(shown["scope"], serde_json::json!([format!("{cache}/**")]));

    // Run with parameters: the script gets them as $1 and $OPERATOR.
    let before = w.snapshot();
    let run = w.run(
        &recipe,
        &["-p", &format!("arg1={cache}"), "-p", "operator=ann"],
    );
    run.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(w.root().join("cache/last-trim")).unwrap(),
        "trimmed by ann \"quoted\" \\ backslash\n",
        "the script ran byte for byte as written"
    );
    let expect: std::collections::BTreeSet<String> =
        ["cache/a.tmp", "cache/b.tmp", "cache/last-trim"]
            .iter()
            .map(|p| w.path(p))
            .collect();
    assert_eq!(run.changed_paths(), expect, "{}", run.stdout);
    w.tend(&["rollback", &run.run_id()]).assert_code(0);
    assert_same(&before, &w.snapshot());

    // The script's text lives in the recipe: editing the file later changes nothing.
    std::fs::write(&script, "#!/bin/sh\nrm -rf /\n").unwrap();
    let again = w.tend(&["show", recipe.to_str().unwrap(), "--json"]);
    let again: serde_json::Value = serde_json::from_str(again.stdout.trim()).unwrap();
    assert_eq!(again["hash"], shown["hash"]);

    // Never over an existing file.
    let r = w.tend(&[
        "import-script",
        script.to_str().unwrap(),
        "--name",
        "trim-cache",
    ]);
    r.assert_code(73);
    support::one_error(&r, &["exists already"]);
}

#[test]
fn without_changes_it_says_rollback_cannot_undo_it() {
    let w = World::new();
    let script = w.dir.path().join("s.sh");
    std::fs::write(&script, "echo hi\n").unwrap();
    let r = w.tend(&["import-script", script.to_str().unwrap(), "--name", "s"]);
    r.assert_code(0);
    assert!(r.stdout.contains("cannot undo"), "{}", r.stdout);
    let show = w.tend(&[
        "show",
        w.dir.path().join("s.rhai").to_str().unwrap(),
        "--json",
    ]);
    let shown: serde_json::Value = serde_json::from_str(show.stdout.trim()).unwrap();
    assert_eq!(shown["reversible"], false);

    for (args, code) in [
        (vec!["--name", "bad name"], 64),
        (vec!["--name", "x", "--changes", "relative/path"], 64),
    ] {
        let mut a = vec!["import-script", script.to_str().unwrap()];
        a.extend(args);
        w.tend(&a).assert_code(code);
    }
    w.tend(&["import-script", "missing.sh", "--name", "m"])
        .assert_code(66);
}
