//! Issue 9, bad input: each hostile or mistaken input ends in one clear error with
//! exit 64 (usage, parameter) or 65 (recipe), never a panic (101) or an abort (134),
//! and changes nothing. One test per item of the issue.

mod support;

use std::path::Path;

use support::{assert_same, Run, World};

const USAGE: i32 = 64;
const RECIPE: i32 = 65;

use support::{one_error, refused, world_with_app_conf as world};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A run id names a folder of the state dir; one that is a path would replay a
/// journal from anywhere (here: another state dir, whose run changed app.conf).
#[test]
fn item02_run_id_is_not_a_path() {
    let w = world();
    let recipe = w.recipe_in_root("r.rhai", "fs::file(\"ROOT/app.conf\", \"changed\\n\");\n");
    let other = w.dir.path().join("other-state");
    let r = w.tend(&["--state-dir", s(&other), "run", s(&recipe), "--json"]);
    r.assert_code(0);
    let id = r.run_id();
    // Put the file back as the other run found it: a replay would change it again.
    w.write("app.conf", "edited since\n");
    // So that `runs/../..` resolves, as it does in any state dir that has had a run.
    std::fs::create_dir_all(w.state().join("runs")).unwrap();
    let before = w.snapshot();
    for bad in [
        format!("../../other-state/runs/{id}"),
        format!("{}/runs/{id}", other.display()),
        format!("{id}/../{id}"),
        String::new(),
    ] {
        let r = w.tend(&["rollback", &bad]);
        r.assert_code(USAGE);
        one_error(&r, &["not a run id", "tend runs"]);
        refused(&w, &before);
    }
    // A well-formed id that does not exist is still "not found".
    w.tend(&["rollback", "20200101-000000-beef"])
        .assert_code(66);
}

/// The own-folder rule holds after symlinks are resolved: for imports and for
/// files a recipe ships (`src:`).
#[test]
fn item03_symlinked_import_outside_the_folder_is_refused() {
    let w = world();
    w.beside("outside.rhai", "fn f() { \"from outside\" }\n");
    w.beside("secret.txt", "not for recipes\n");
    let sub = w.dir.path().join("recipes");
    std::fs::create_dir_all(&sub).unwrap();
    std::os::unix::fs::symlink("../outside.rhai", sub.join("helper.rhai")).unwrap();
    std::os::unix::fs::symlink(w.dir.path().join("secret.txt"), sub.join("data.txt")).unwrap();
    let before = w.snapshot();
    let recipe = sub.join("recipe.rhai");
    std::fs::write(
        &recipe,
        format!(
            "import \"helper\" as h;\nfs::file(\"{}\", h::f());\n",
            w.path("app.conf")
        ),
    )
    .unwrap();
    for cmd in [&["run"][..], &["run", "--dry-run"], &["check"], &["show"]] {
        let mut args = cmd.to_vec();
        args.insert(1, s(&recipe));
        let r = w.tend(&args);
        r.assert_code(RECIPE);
        one_error(
            &r,
            &["recipe.rhai:1:", "helper", "outside the recipe's folder"],
        );
        refused(&w, &before);
    }
    let r = w.tend(&["vet", s(&recipe), "--by", "alice"]);
    r.assert_code(RECIPE);
    assert!(!w.state().join("vetted.toml").exists());

    // `src:` through a symlink leading out of the folder.
    std::fs::write(
        &recipe,
        format!(
            "fs::file(\"{}\", #{{src: \"data.txt\"}});\n",
            w.path("app.conf")
        ),
    )
    .unwrap();
    let r = w.tend(&["run", s(&recipe)]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("recipe.rhai:1:") && r.stderr.contains("outside the recipe's folder"),
        "{}",
        r.stderr
    );
    assert_same(&before, &w.snapshot());

    // A symlink that stays inside the folder is fine, and what it loads is hashed.
    std::fs::write(sub.join("real.rhai"), "fn f() { \"inside\\n\" }\n").unwrap();
    std::os::unix::fs::symlink("real.rhai", sub.join("alias.rhai")).unwrap();
    std::fs::write(
        &recipe,
        format!(
            "import \"alias\" as h;\nfs::file(\"{}\", h::f());\n",
            w.path("app.conf")
        ),
    )
    .unwrap();
    let hash = |w: &World| {
        let r = w.tend(&["show", s(&recipe), "--json"]);
        r.assert_code(0);
        r.events()[0]["hash"].as_str().unwrap().to_string()
    };
    let h1 = hash(&w);
    std::fs::write(sub.join("real.rhai"), "fn f() { \"edited\\n\" }\n").unwrap();
    assert_ne!(h1, hash(&w), "the module behind the symlink is not hashed");
    w.tend(&["run", s(&recipe)]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(w.root().join("app.conf")).unwrap(),
        "edited\n"
    );
}

/// `[trust] file` naming a folder that does not exist is refused, not created.
#[test]
fn item04_trust_file_with_missing_parents_is_refused() {
    let w = world();
    let missing = w.dir.path().join("nonexistent");
    let config = w.dir.path().join("tend.toml");
    std::fs::write(
        &config,
        format!(
            "[trust]\nfile = \"{}/dir/vetted.toml\"\n",
            missing.display()
        ),
    )
    .unwrap();
    let recipe = w.recipe_in_root("r.rhai", "fs::file(\"ROOT/app.conf\", \"changed\\n\");\n");
    let r = w.tend(&["-c", s(&config), "vet", s(&recipe), "--by", "alice"]);
    r.assert_code(USAGE);
    one_error(&r, &["nonexistent/dir", "does not exist", "[trust] file"]);
    assert!(!missing.exists(), "the missing folder was created");
    assert!(!w.state().join("vetted").exists(), "texts kept for nothing");
}

const SIZES: &str = r#"//! Retention.
let p = params(#{
    age: "7d",
    sz: "10M",
});
fs::file("ROOT/app.conf", `${p.age} ${p.sz}`);
"#;

/// Sizes and durations that do not fit a recipe's int are refused, not wrapped to
/// negative numbers.
#[test]
fn item14_duration_and_size_out_of_range_are_refused() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root("r.rhai", SIZES);
    for (given, name) in [
        ("age=500000000000y", "age"),
        ("age=99999999999999999999y", "age"),
        ("sz=9999999T", "sz"),
        ("sz=99999999999999999999P", "sz"),
    ] {
        for cmd in ["run", "check"] {
            let r = w.tend(&[cmd, s(&recipe), "-p", given]);
            r.assert_code(USAGE);
            one_error(&r, &[name, "too large"]);
            refused(&w, &before);
        }
    }
    // A default out of range is refused as well, before anything runs.
    let recipe2 = w.recipe_in_root("r2.rhai", &SIZES.replace("\"7d\"", "\"500000000000y\""));
    let r = w.tend(&["run", s(&recipe2)]);
    r.assert_code(USAGE);
    one_error(&r, &["default", "age", "too large"]);
    refused(&w, &before);
    // In range still works, and the recipe gets the number.
    w.tend(&["run", s(&recipe), "-p", "age=1w", "-p", "sz=1K"])
        .assert_code(0);
    assert_eq!(
        std::fs::read_to_string(w.root().join("app.conf")).unwrap(),
        "604800 1024"
    );
}

/// `--timeout` too large for a deadline is a usage error, not a panic that leaves a
/// run "running"; zero is refused too.
#[test]
fn item15_timeout_overflow_is_a_usage_error() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root("r.rhai", "fs::file(\"ROOT/app.conf\", \"changed\\n\");\n");
    for t in ["500000000000y", "2000y", "0s"] {
        let r = w.tend(&["run", s(&recipe), "--timeout", t]);
        r.assert_code(USAGE);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(
            r.stderr.contains("--timeout") && r.stderr.contains("timeout"),
            "{}",
            r.stderr
        );
        refused(&w, &before);
    }
    let r = w.tend(&["exec", "--timeout", "500000000000y", "--", "true"]);
    r.assert_code(USAGE);
    refused(&w, &before);
}

/// A recipe that imports itself, or modules that import each other: a clear error
/// naming the cycle, in every command that compiles the recipe.
#[test]
fn item16_import_cycle_is_named() {
    let w = world();
    let before = w.snapshot();
    let selfish = w.recipe_in_root(
        "selfish.rhai",
        "import \"selfish\" as me;\nfs::file(\"ROOT/app.conf\", \"changed\\n\");\n",
    );
    w.beside("a.rhai", "import \"b\" as b;\nfn f() { 1 }\n");
    w.beside("b.rhai", "import \"a\" as a;\nfn g() { 2 }\n");
    let mutual = w.recipe_in_root(
        "mutual.rhai",
        "import \"a\" as a;\nfs::file(\"ROOT/app.conf\", \"changed\\n\");\n",
    );
    for (recipe, says) in [
        (
            &selfish,
            &["selfish.rhai:1:", "cycle", "selfish.rhai imports"][..],
        ),
        (
            &mutual,
            &[
                "mutual.rhai:1:",
                "cycle",
                "a.rhai imports",
                "b.rhai imports",
            ],
        ),
    ] {
        for cmd in [&["run"][..], &["run", "--dry-run"], &["check"], &["show"]] {
            let mut args = cmd.to_vec();
            args.insert(1, s(recipe));
            let r = w.tend(&args);
            r.assert_code(RECIPE);
            one_error(&r, says);
            refused(&w, &before);
        }
    }
}

/// The expansion of one name (its ranges multiplied) and of a whole inventory is
/// capped before anything is allocated.
#[test]
fn item17_inventory_range_product_is_capped() {
    let w = world();
    let ini = w.beside("hosts.ini", "[web]\nh[0:99999]x[0:99999]\n");
    let r = w.tend(&["hosts", "-i", s(&ini)]);
    r.assert_code(USAGE);
    one_error(
        &r,
        &["hosts.ini:2", "h[0:99999]x[0:99999]", "more than 100000"],
    );

    // Each line under the cap, together over the inventory's.
    let lines: String = (0..11).map(|i| format!("n{i}-[0:99999]\n")).collect();
    let ini = w.beside("many.ini", &format!("[web]\n{lines}"));
    let r = w.tend(&["hosts", "-i", s(&ini)]);
    r.assert_code(USAGE);
    one_error(&r, &["many.ini:12", "more than 1000000 host names"]);
}

/// `--max-operations` holds while the recipe is first evaluated to read its
/// parameters too, and 0 (which Rhai takes as "no limit") is refused.
#[test]
fn item18_max_operations_applies_at_param_evaluation() {
    let w = world();
    let before = w.snapshot();
    // No params(): evaluated up to its first operation to learn that.
    let recipe = w.recipe_in_root(
        "r.rhai",
        "let n = 0;\nfor i in 0..100000 { n += i; }\nfs::file(\"ROOT/app.conf\", `${n}`);\n",
    );
    let r = w.tend(&["run", s(&recipe), "--max-operations", "1000"]);
    r.assert_code(RECIPE);
    one_error(&r, &["r.rhai:2:", "1000 operations", "--max-operations"]);
    refused(&w, &before);

    let r = w.tend(&["run", s(&recipe), "--max-operations", "0"]);
    r.assert_code(USAGE);
    assert!(r.stderr.contains("no limit"), "{}", r.stderr);
    refused(&w, &before);
}

/// `sh` timeouts of zero or less are refused (the dry-run says so too); a recipe
/// file that is binary, not a regular file or too large is an invalid recipe.
#[test]
fn item19_sh_timeout_and_recipe_files_that_are_no_recipes() {
    let w = world();
    let before = w.snapshot();

    // Binary first: on the old code the cases below would hang or exhaust memory.
    let binary = w.beside("binary.rhai", "");
    std::fs::write(&binary, [0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0, 1, 2]).unwrap();
    let fifo = w.dir.path().join("fifo.rhai");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let big = w.beside("big.rhai", &"// padding\n".repeat(200_000));
    for (path, says) in [
        (binary.as_path(), "not a text file"),
        (fifo.as_path(), "FIFO"),
        (Path::new("/dev/zero"), "device"),
        (big.as_path(), "larger than"),
        (w.dir.path(), "directory"),
    ] {
        for cmd in ["run", "check", "show"] {
            let r = w.tend(&[cmd, s(path)]);
            r.assert_code(RECIPE);
            one_error(&r, &[s(path), says]);
            refused(&w, &before);
        }
    }

    for timeout in ["-1", "0", "\"0s\""] {
        let recipe = w.recipe_in_root(
            "sh.rhai",
            &format!(
                "fs::file(\"ROOT/app.conf\", \"changed\\n\");\nsh(\"true\", #{{timeout: {timeout}}});\n"
            ),
        );
        let r = w.tend(&["run", s(&recipe), "--dry-run"]);
        assert_ne!(r.code, 0, "dry-run accepted timeout {timeout}");
        assert!(
            r.stderr.contains("sh.rhai:2:") && r.stderr.contains("must be more than 0"),
            "{}",
            r.stderr
        );
        let r = w.tend(&["run", s(&recipe)]);
        r.assert_code(3);
        assert!(r.stderr.contains("must be more than 0"), "{}", r.stderr);
        assert_same(&before, &w.snapshot());
    }
}

/// Secrets shorter than 4 bytes are refused: one letter would be masked as `***`
/// everywhere it appears, paths in the audit log included.
#[test]
fn item20_secrets_shorter_than_four_bytes_are_refused() {
    let w = world();
    let before = w.snapshot();
    let recipe = w.recipe_in_root(
        "r.rhai",
        "let p = params(#{ token: secret() });\nfs::file(\"ROOT/app.conf\", \"changed\\n\");\n",
    );
    let file = w.beside("token.txt", "ab\n");
    for (env, param, says) in [
        ("", "token=env:TEND_TEST_TOKEN", "is empty"),
        ("a", "token=env:TEND_TEST_TOKEN", "is only 1 byte"),
        ("abc", "token=env:TEND_TEST_TOKEN", "is only 3 bytes"),
        (
            "",
            &format!("token=file:{}", file.display()),
            "is only 2 bytes",
        ),
    ] {
        for dry in [false, true] {
            let mut c = w.command();
            c.env("TEND_TEST_TOKEN", env)
                .args(["run", s(&recipe), "-p", param]);
            if dry {
                c.arg("--dry-run");
            }
            let r = Run::from(c.output().unwrap());
            r.assert_code(USAGE);
            one_error(&r, &["token", says, "at least 4 bytes"]);
            refused(&w, &before);
        }
    }
    let r = Run::from(
        w.command()
            .env("TEND_TEST_TOKEN", "abcd")
            .args(["run", s(&recipe), "-p", "token=env:TEND_TEST_TOKEN"])
            .output()
            .unwrap(),
    );
    r.assert_code(0);
}
