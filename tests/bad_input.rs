//! Every mistake a user can make with a recipe or its parameters ends in one clear
//! message (naming file:line where there is one), its own exit code, and no change
//! left behind.

mod support;

use support::{assert_same, Run};

const USAGE: i32 = 64;
const RECIPE: i32 = 65;
const NOT_FOUND: i32 = 66;
const ROLLED_BACK: i32 = 3;

use support::{one_error, refused, world_with_app_conf as world};

const PARAMS: &str = r#"//! Takes parameters.
let p = params(#{
    keep: 7,          // how many to keep
    name: "app",
    max: "10M",
    token: secret(),
});
fs::file("ROOT/app.conf", "changed\n");
"#;

#[test]
fn syntax_error() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        "fs::file(\"ROOT/app.conf\", \"changed\\n\");\nlet x = 1;\nlet y = (x + ;\n",
    );
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["run", recipe.to_str().unwrap()];
        args.extend_from_slice(extra);
        let r = w.tend(&args);
        r.assert_code(RECIPE);
        one_error(&r, &["recipe.rhai:3:"]);
        refused(&w, &before);
    }
    let r = w.tend(&["check", recipe.to_str().unwrap()]);
    r.assert_code(RECIPE);
    one_error(&r, &["recipe.rhai:3:"]);
}

#[test]
fn unknown_function_after_a_change_is_rolled_back() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        "fs::file(\"ROOT/app.conf\", \"changed\\n\");\nfs::file(\"ROOT/new\", \"x\");\n\nfs::frobnicate(\"ROOT/app.conf\");\n",
    );
    let r = w.tend(&["run", recipe.to_str().unwrap()]);
    r.assert_code(ROLLED_BACK);
    assert!(
        r.stderr.contains("recipe.rhai:4:") && r.stderr.contains("frobnicate"),
        "{}",
        r.stderr
    );
    assert_same(&before, &w.snapshot());

    // --json says the same in its step_failed event.
    let r = w.run(&recipe, &[]);
    r.assert_code(ROLLED_BACK);
    let failed = r.event("step_failed");
    let msg = failed["error"].as_str().unwrap();
    assert!(
        msg.contains("recipe.rhai:4:") && msg.contains("frobnicate"),
        "{msg}"
    );
    assert_same(&before, &w.snapshot());
}

#[test]
fn unknown_parameter_names_the_declared_ones() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root("recipe.rhai", PARAMS);
    let r = w.tend(&[
        "run",
        recipe.to_str().unwrap(),
        "-p",
        "kepe=3",
        "-p",
        "token=env:HOME",
    ]);
    r.assert_code(USAGE);
    one_error(&r, &["kepe", "keep", "name", "max", "token"]);
    refused(&w, &before);

    // `check` finds it too, without running anything.
    let r = w.tend(&["check", recipe.to_str().unwrap(), "-p", "kepe=3"]);
    r.assert_code(USAGE);
    one_error(&r, &["kepe", "keep"]);
}

#[test]
fn parameter_given_to_a_recipe_without_parameters() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root("recipe.rhai", "fs::file(\"ROOT/app.conf\", \"x\");\n");
    let r = w.tend(&["run", recipe.to_str().unwrap(), "-p", "keep=3"]);
    r.assert_code(USAGE);
    one_error(&r, &["keep", "no parameters"]);
    refused(&w, &before);
}

#[test]
fn missing_secret_parameter() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root("recipe.rhai", PARAMS);
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["run", recipe.to_str().unwrap()];
        args.extend_from_slice(extra);
        let r = w.tend(&args);
        r.assert_code(USAGE);
        one_error(&r, &["token", "secret", "-p token="]);
        refused(&w, &before);
    }
    // A secret from an unset variable is as missing.
    let r = w
        .command()
        .env_remove("TEND_TEST_UNSET")
        .args([
            "run",
            recipe.to_str().unwrap(),
            "-p",
            "token=env:TEND_TEST_UNSET",
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(USAGE));
    assert!(String::from_utf8_lossy(&r.stderr).contains("TEND_TEST_UNSET"));
    refused(&w, &before);
}

#[test]
fn mistyped_parameter() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root("recipe.rhai", PARAMS);
    for (given, says) in [
        ("keep=abc", &["keep", "int", "abc"][..]),
        ("max=lots", &["max", "size", "lots"][..]),
    ] {
        let r = w
            .command()
            .env("TEND_TEST_TOKEN", "s3cret")
            .args([
                "run",
                recipe.to_str().unwrap(),
                "-p",
                given,
                "-p",
                "token=env:TEND_TEST_TOKEN",
            ])
            .output()
            .unwrap();
        let r = Run {
            code: r.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        };
        r.assert_code(USAGE);
        one_error(&r, says);
        assert!(!r.stderr.contains("s3cret"));
        refused(&w, &before);
    }
    let r = w.tend(&["check", recipe.to_str().unwrap(), "-p", "keep=abc"]);
    r.assert_code(USAGE);
    one_error(&r, &["keep", "abc"]);
}

#[test]
fn param_without_equals_is_a_usage_error() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root("recipe.rhai", PARAMS);
    let r = w.tend(&["run", recipe.to_str().unwrap(), "-p", "keep"]);
    r.assert_code(USAGE);
    assert!(r.stderr.contains("NAME=VALUE"), "{}", r.stderr);
    refused(&w, &before);
}

#[test]
fn import_outside_the_recipe_folder_is_refused() {
    let w = world();
    // Both exist, so only the rule can refuse them.
    w.beside("outside.rhai", "fn f() { 1 }\n");
    let before = w.snapshot();
    for (import, shown) in [
        ("../outside", "\"../outside\""),
        ("/etc/x", "\"/etc/x\""),
        ("/proc/self/cwd/outside", "\"/proc/self/cwd/outside\""),
    ] {
        let text = format!(
            "fs::file(\"ROOT/app.conf\", \"changed\\n\");\nimport \"{import}\" as m;\nm::f();\n"
        );
        let sub = w.dir.path().join("recipes");
        std::fs::create_dir_all(&sub).unwrap();
        let recipe = sub.join("recipe.rhai");
        std::fs::write(
            &recipe,
            text.replace("ROOT", &w.root().display().to_string()),
        )
        .unwrap();
        let r = w.tend(&["run", recipe.to_str().unwrap()]);
        r.assert_code(RECIPE);
        one_error(&r, &["recipe.rhai", shown, "not allowed"]);
        refused(&w, &before);
    }
}

#[test]
fn import_of_a_missing_module() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root("recipe.rhai", "import \"nosuch\" as m;\nm::f();\n");
    let r = w.tend(&["run", recipe.to_str().unwrap()]);
    r.assert_code(RECIPE);
    one_error(&r, &["recipe.rhai", "nosuch"]);
    refused(&w, &before);
}

#[test]
fn runaway_loop_hits_the_operation_limit_and_rolls_back() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        "fs::file(\"ROOT/app.conf\", \"changed\\n\");\nloop {}\n",
    );
    let r = w.tend(&[
        "run",
        recipe.to_str().unwrap(),
        "--max-operations",
        "100000",
    ]);
    r.assert_code(ROLLED_BACK);
    assert!(
        r.stderr.contains("recipe.rhai:2:") && r.stderr.contains("100000 operations"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--max-operations"), "{}", r.stderr);
    assert_same(&before, &w.snapshot());
}

#[test]
fn timeout_stops_a_loop_and_rolls_back() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        "fs::file(\"ROOT/app.conf\", \"changed\\n\");\nloop {}\n",
    );
    let r = w.tend(&[
        "run",
        recipe.to_str().unwrap(),
        "--timeout",
        "1s",
        "--max-operations",
        "1000000000000000",
    ]);
    r.assert_code(ROLLED_BACK);
    assert!(
        r.stderr.contains("recipe.rhai:2:") && r.stderr.contains("time limit of 1s"),
        "{}",
        r.stderr
    );
    assert_same(&before, &w.snapshot());
}

#[test]
fn nonexistent_recipe() {
    let w = world();
    let before = w.snapshot();
    let missing = w.dir.path().join("nope.rhai");
    for cmd in ["run", "check", "show"] {
        let r = w.tend(&[cmd, missing.to_str().unwrap()]);
        r.assert_code(NOT_FOUND);
        one_error(&r, &["nope.rhai"]);
        refused(&w, &before);
    }
}

#[test]
fn bad_option_of_an_operation_names_the_line() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        "fs::file(\"ROOT/new\", \"x\");\nfs::file(\"ROOT/app.conf\", #{content: \"y\", mdoe: 0o600});\n",
    );
    let r = w.tend(&["run", recipe.to_str().unwrap()]);
    r.assert_code(ROLLED_BACK);
    assert!(
        r.stderr.contains("recipe.rhai:2:") && r.stderr.contains("mdoe"),
        "{}",
        r.stderr
    );
    assert_same(&before, &w.snapshot());
}

#[test]
fn file_src_outside_the_recipe_folder_is_refused() {
    let w = world();
    w.beside("secret.txt", "not for recipes");
    let before = w.snapshot();
    let sub = w.dir.path().join("recipes");
    std::fs::create_dir_all(&sub).unwrap();
    let recipe = sub.join("recipe.rhai");
    std::fs::write(
        &recipe,
        format!(
            "fs::file(\"{}/copy\", #{{src: \"../secret.txt\"}});\n",
            w.root().display()
        ),
    )
    .unwrap();
    let r = w.tend(&["run", recipe.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("recipe.rhai:1:") && r.stderr.contains("../secret.txt"),
        "{}",
        r.stderr
    );
    assert_same(&before, &w.snapshot());
}

/// The refusal of an import names its line like every other recipe error, although
/// Rhai resolves imports at compile time without a position.
#[test]
fn import_refusal_names_the_line() {
    let w = world();
    let recipe = w.recipe_in_root("recipe.rhai", "let x = 1;\n\nimport \"/etc/x\" as m;\n");
    let r = w.tend(&["run", recipe.to_str().unwrap()]);
    r.assert_code(RECIPE);
    one_error(&r, &["recipe.rhai:3:"]);
}

/// Imports are resolved when the recipe is compiled. One whose path is computed at
/// run time cannot be, and finds no module loader at run time either: nothing is
/// read from disk, not even a file beside the recipe.
#[test]
fn an_import_computed_at_run_time_loads_nothing() {
    let w = world();
    w.recipe(
        "evil.rhai",
        &format!("fs::file(\"{}\", \"taken\\n\");\n", w.path("app.conf")),
    );
    let before = w.snapshot();
    let r = w.run(
        &w.recipe("r.rhai", "let name = \"ev\" + \"il\";\nimport name as e;\n"),
        &[],
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains("evil") || r.stderr.contains("evil"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert_same(&before, &w.snapshot());
}
