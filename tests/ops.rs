//! Every built-in operation, end to end through the real binary, on this machine and
//! over SSH (one test body, both targets): the dry-run changes nothing and reports
//! exactly the set of paths the real run then changes; the real run reports that same
//! set; a second run changes nothing.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sshd::Sshd;
use support::{assert_same, diff, Run, World};

/// One operation under test.
struct Case {
    /// Prepares `root/` (and files beside the recipe).
    setup: fn(&World),
    /// Recipe text; `ROOT` stands for the world's root.
    recipe: &'static str,
    /// The paths (relative to root) the run must change: guards against a dry-run and
    /// a real run that agree on doing nothing.
    expect: &'static [&'static str],
    /// Checks the result of the real run.
    after: fn(&World),
}

fn abs(w: &World, rels: &[&str]) -> BTreeSet<String> {
    rels.iter().map(|r| w.path(r)).collect()
}

fn mode(w: &World, rel: &str) -> u32 {
    std::fs::symlink_metadata(w.root().join(rel))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn read(w: &World, rel: &str) -> String {
    std::fs::read_to_string(w.root().join(rel)).unwrap()
}

fn link_of(w: &World, rel: &str) -> String {
    std::fs::read_link(w.root().join(rel))
        .unwrap()
        .display()
        .to_string()
}

fn gone(w: &World, rel: &str) -> bool {
    std::fs::symlink_metadata(w.root().join(rel)).is_err()
}

/// The dry-run / real / again protocol; returns the dry-run and the real run.
fn exact(w: &World, recipe: &Path) -> (Run, Run) {
    let before = w.snapshot();

    let dry = w.run(recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_same(&before, &w.snapshot());
    let planned = dry.changed_paths();

    let real = w.run(recipe, &[]);
    real.assert_code(0);
    let after = w.snapshot();
    assert_eq!(
        diff(&before, &after),
        planned,
        "the dry-run's reported paths differ from what the run changed\ndry-run:\n{}",
        dry.stdout
    );
    assert_eq!(
        real.changed_paths(),
        planned,
        "the real run reported other paths than the dry-run\nreal:\n{}",
        real.stdout
    );
    assert_eq!(real.changed_count(), dry.changed_count());

    let again = w.run(recipe, &[]);
    again.assert_code(0);
    assert_eq!(
        again.changed_count(),
        0,
        "second run changed:\n{}",
        again.stdout
    );
    assert!(again.changed_paths().is_empty());
    assert_same(&after, &w.snapshot());

    let dry_again = w.run(recipe, &["--dry-run"]);
    dry_again.assert_code(0);
    assert_eq!(dry_again.changed_count(), 0, "{}", dry_again.stdout);
    (dry, real)
}

/// Every case runs twice with the same body: on this machine, then over SSH against
/// a real sshd (the files are this machine's either way, so the checks are shared).
fn check(case: Case) {
    check_on(&case, None);
    let sshd = Sshd::start_tendtest();
    check_on(&case, Some(&sshd));
}

fn check_on(case: &Case, ssh: Option<&Sshd>) {
    let w = World::new();
    if let Some(h) = ssh {
        w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    }
    (case.setup)(&w);
    let recipe = w.recipe_in_root("recipe.rhai", case.recipe);
    let (dry, _) = exact(&w, &recipe);
    // `exact` compared the run with the plan; this pins both to the intent.
    assert_eq!(dry.changed_paths(), abs(&w, case.expect), "{}", dry.stdout);
    (case.after)(&w);
}

fn nothing(_: &World) {}

// ---------------------------------------------------------------- fs::dir

#[test]
fn dir_mkdir_p_nested() {
    check(Case {
        setup: |w| w.mkdir("top", 0o755),
        recipe: r#"fs::dir("ROOT/top/a/b/c");"#,
        expect: &["top/a", "top/a/b", "top/a/b/c"],
        after: |w| {
            for d in ["top/a", "top/a/b", "top/a/b/c"] {
                assert_eq!(mode(w, d), 0o755, "{d}");
            }
        },
    });
}

#[test]
fn dir_nested_with_mode() {
    check(Case {
        setup: nothing,
        recipe: r#"fs::dir("ROOT/x/y", #{mode: 0o700});"#,
        expect: &["x", "x/y"],
        after: |w| assert_eq!(mode(w, "x/y"), 0o700),
    });
}

#[test]
fn dir_mode_change_of_existing() {
    check(Case {
        setup: |w| {
            w.mkdir("d", 0o700);
            w.write_mode("d/keep", "k", 0o600);
        },
        recipe: r#"fs::dir("ROOT/d", #{mode: 0o750});"#,
        expect: &["d"],
        after: |w| {
            assert_eq!(mode(w, "d"), 0o750);
            assert_eq!(read(w, "d/keep"), "k");
        },
    });
}

// ---------------------------------------------------------------- fs::file

#[test]
fn file_new_with_content() {
    check(Case {
        setup: nothing,
        recipe: r#"fs::file("ROOT/new.txt", "hello\n");"#,
        expect: &["new.txt"],
        after: |w| {
            assert_eq!(read(w, "new.txt"), "hello\n");
            assert_eq!(mode(w, "new.txt"), 0o644);
        },
    });
}

#[test]
fn file_replace_content_keeps_mode() {
    check(Case {
        setup: |w| w.write_mode("app.conf", "old\n", 0o600),
        recipe: r#"fs::file("ROOT/app.conf", "new\n");"#,
        expect: &["app.conf"],
        after: |w| {
            assert_eq!(read(w, "app.conf"), "new\n");
            assert_eq!(mode(w, "app.conf"), 0o600);
        },
    });
}

#[test]
fn file_content_and_mode_map() {
    check(Case {
        setup: |w| {
            w.write_mode("a.conf", "x=1\n", 0o644);
        },
        recipe: r#"
            fs::file("ROOT/a.conf", #{content: "x=2\n", mode: 0o640});
            fs::file("ROOT/b.conf", #{content: "y=1\n", mode: 0o600});
        "#,
        expect: &["a.conf", "b.conf"],
        after: |w| {
            assert_eq!(read(w, "a.conf"), "x=2\n");
            assert_eq!(mode(w, "a.conf"), 0o640);
            assert_eq!(read(w, "b.conf"), "y=1\n");
            assert_eq!(mode(w, "b.conf"), 0o600);
        },
    });
}

#[test]
fn file_mode_only_change() {
    check(Case {
        setup: |w| w.write_mode("m.conf", "same\n", 0o644),
        recipe: r#"fs::file("ROOT/m.conf", #{content: "same\n", mode: 0o600});"#,
        expect: &["m.conf"],
        after: |w| {
            assert_eq!(read(w, "m.conf"), "same\n");
            assert_eq!(mode(w, "m.conf"), 0o600);
        },
    });
}

#[test]
fn file_from_src_beside_recipe() {
    check(Case {
        setup: |w| {
            w.beside("files/x.conf", "shipped = yes\n");
            w.mkdir("etc", 0o755);
        },
        recipe: r#"fs::file("ROOT/etc/x.conf", #{src: "files/x.conf"});"#,
        expect: &["etc/x.conf"],
        after: |w| assert_eq!(read(w, "etc/x.conf"), "shipped = yes\n"),
    });
}

#[test]
fn file_from_template_map() {
    check(Case {
        setup: |w| {
            w.beside("t.j2", "server {{ name }}:{{ port }}\n");
            w.write("site.conf", "server old:1\n");
        },
        recipe: r#"fs::file("ROOT/site.conf", #{template: "t.j2", vars: #{name: "web1", port: 8080}});"#,
        expect: &["site.conf"],
        after: |w| assert_eq!(read(w, "site.conf"), "server web1:8080\n"),
    });
}

#[test]
fn template_function() {
    check(Case {
        setup: |w| {
            w.beside(
                "t.j2",
                "{% for u in users %}user {{ u }}\n{% endfor %}max={{ max }}\n",
            );
        },
        recipe: r#"fs::template("ROOT/users.conf", "t.j2", #{users: ["ann", "bob"], max: 3});"#,
        expect: &["users.conf"],
        after: |w| assert_eq!(read(w, "users.conf"), "user ann\nuser bob\nmax=3\n"),
    });
}

// ---------------------------------------------------------------- fs::line

#[test]
fn line_present_appends() {
    check(Case {
        setup: |w| w.write_mode("hosts", "127.0.0.1 localhost\n", 0o640),
        recipe: r#"fs::line("ROOT/hosts", "10.0.0.1 db");"#,
        expect: &["hosts"],
        after: |w| {
            assert_eq!(read(w, "hosts"), "127.0.0.1 localhost\n10.0.0.1 db\n");
            assert_eq!(mode(w, "hosts"), 0o640);
        },
    });
}

#[test]
fn line_present_replaces_by_regex() {
    check(Case {
        setup: |w| w.write("sshd_config", "Port 22\nPermitRootLogin yes\nUsePAM yes\n"),
        recipe: r#"fs::line("ROOT/sshd_config", "PermitRootLogin no", #{regex: "^#?PermitRootLogin ", state: "present"});"#,
        expect: &["sshd_config"],
        after: |w| {
            assert_eq!(
                read(w, "sshd_config"),
                "Port 22\nPermitRootLogin no\nUsePAM yes\n"
            )
        },
    });
}

#[test]
fn line_present_creates_missing_file() {
    check(Case {
        setup: nothing,
        recipe: r#"fs::line("ROOT/fresh.conf", "a=1", #{regex: "^a="});"#,
        expect: &["fresh.conf"],
        after: |w| {
            assert_eq!(read(w, "fresh.conf"), "a=1\n");
            assert_eq!(mode(w, "fresh.conf"), 0o644);
        },
    });
}

#[test]
fn line_absent() {
    check(Case {
        setup: |w| w.write("cron", "keep 1\ndrop 1\nkeep 2\ndrop 2\n"),
        recipe: r#"fs::line("ROOT/cron", "", #{regex: "^drop ", state: "absent"});"#,
        expect: &["cron"],
        after: |w| assert_eq!(read(w, "cron"), "keep 1\nkeep 2\n"),
    });
}

// ---------------------------------------------------------------- fs::link

#[test]
fn link_new() {
    check(Case {
        setup: |w| w.mkdir("releases/v1", 0o755),
        recipe: r#"fs::link("ROOT/current", "ROOT/releases/v1");"#,
        expect: &["current"],
        after: |w| assert_eq!(link_of(w, "current"), w.path("releases/v1")),
    });
}

#[test]
fn link_retarget() {
    check(Case {
        setup: |w| {
            w.mkdir("releases/v1", 0o755);
            w.mkdir("releases/v2", 0o755);
            w.symlink("current", "releases/v1");
        },
        recipe: r#"fs::link("ROOT/current", "releases/v2");"#,
        expect: &["current"],
        after: |w| assert_eq!(link_of(w, "current"), "releases/v2"),
    });
}

// ---------------------------------------------------------------- copy, rename, remove, chmod

#[test]
fn copy_file() {
    check(Case {
        setup: |w| {
            w.write_mode("src.conf", "copied\n", 0o640);
            w.write("dest.conf", "stale\n");
        },
        recipe: r#"
            fs::copy("ROOT/src.conf", "ROOT/dest.conf");
            fs::copy("ROOT/src.conf", "ROOT/other.conf", #{mode: 0o600});
        "#,
        expect: &["dest.conf", "other.conf"],
        after: |w| {
            assert_eq!(read(w, "dest.conf"), "copied\n");
            assert_eq!(mode(w, "dest.conf"), 0o640);
            assert_eq!(read(w, "other.conf"), "copied\n");
            assert_eq!(mode(w, "other.conf"), 0o600);
        },
    });
}

#[test]
fn rename_file() {
    check(Case {
        setup: |w| w.write("old.log", "log\n"),
        recipe: r#"fs::rename("ROOT/old.log", "ROOT/old.log.1");"#,
        expect: &["old.log", "old.log.1"],
        after: |w| {
            assert!(gone(w, "old.log"));
            assert_eq!(read(w, "old.log.1"), "log\n");
        },
    });
}

#[test]
fn rename_over_existing_file() {
    check(Case {
        setup: |w| {
            w.write("a", "A\n");
            w.write("b", "B\n");
        },
        recipe: r#"fs::rename("ROOT/a", "ROOT/b");"#,
        expect: &["a", "b"],
        after: |w| assert_eq!(read(w, "b"), "A\n"),
    });
}

#[test]
fn rename_directory_tree() {
    check(Case {
        setup: |w| {
            w.write("release/app.bin", "bin");
            w.write_mode("release/conf/app.conf", "c", 0o600);
            w.symlink("release/conf/link", "app.conf");
        },
        recipe: r#"fs::rename("ROOT/release", "ROOT/release.old");"#,
        expect: &[
            "release",
            "release/app.bin",
            "release/conf",
            "release/conf/app.conf",
            "release/conf/link",
            "release.old",
            "release.old/app.bin",
            "release.old/conf",
            "release.old/conf/app.conf",
            "release.old/conf/link",
        ],
        after: |w| {
            assert!(gone(w, "release"));
            assert_eq!(read(w, "release.old/conf/app.conf"), "c");
            assert_eq!(mode(w, "release.old/conf/app.conf"), 0o600);
        },
    });
}

#[test]
fn remove_file() {
    check(Case {
        setup: |w| {
            w.write("junk.tmp", "junk");
            w.write("keep.txt", "keep");
        },
        recipe: r#"fs::remove("ROOT/junk.tmp");"#,
        expect: &["junk.tmp"],
        after: |w| {
            assert!(gone(w, "junk.tmp"));
            assert_eq!(read(w, "keep.txt"), "keep");
        },
    });
}

#[test]
fn remove_tree_with_symlink_inside() {
    check(Case {
        setup: |w| {
            w.write("outside/precious", "do not follow links\n");
            w.mkdir("cache", 0o750);
            w.write("cache/a", "a");
            w.write_mode("cache/sub/b", "b", 0o600);
            w.mkdir("cache/sub/empty", 0o700);
            let outside = w.path("outside");
            w.symlink("cache/sub/to-outside", &outside);
            w.symlink("cache/dangling", "nowhere");
        },
        recipe: r#"fs::remove("ROOT/cache");"#,
        expect: &[
            "cache",
            "cache/a",
            "cache/dangling",
            "cache/sub",
            "cache/sub/b",
            "cache/sub/empty",
            "cache/sub/to-outside",
        ],
        after: |w| {
            assert!(gone(w, "cache"));
            assert_eq!(read(w, "outside/precious"), "do not follow links\n");
        },
    });
}

#[test]
fn chmod() {
    check(Case {
        setup: |w| {
            w.write_mode("id_rsa", "KEY", 0o644);
            w.mkdir("private", 0o755);
        },
        recipe: r#"
            fs::chmod("ROOT/id_rsa", 0o600);
            fs::chmod("ROOT/private", "0700");
        "#,
        expect: &["id_rsa", "private"],
        after: |w| {
            assert_eq!(mode(w, "id_rsa"), 0o600);
            assert_eq!(mode(w, "private"), 0o700);
        },
    });
}

/// Linux has no symlink modes: chmod would change the link's target, which the plan
/// (and rollback) would not know about. Refused in plan and run alike.
#[test]
fn chmod_of_a_symlink_is_refused() {
    let w = World::new();
    w.write_mode("target", "t", 0o644);
    w.symlink("link", "target");
    let recipe = w.recipe_in_root("recipe.rhai", r#"fs::chmod("ROOT/link", 0o600);"#);
    let before = w.snapshot();
    for extra in [&["--dry-run"][..], &[][..]] {
        let r = w.run(&recipe, extra);
        assert_ne!(r.code, 0, "{extra:?}\n{}", r.stdout);
        assert!(r.stdout.contains("is a symlink"), "{}", r.stdout);
        assert_same(&before, &w.snapshot());
    }
}

// ---------------------------------------------------------------- archive::compress

fn decompress(cmd: &str, path: &Path) -> Vec<u8> {
    let out = Command::new(cmd).arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success(), "{cmd} -dc {}", path.display());
    out.stdout
}

#[test]
fn compress_gzip() {
    check(Case {
        setup: |w| w.write_mode("app.log.1", &"line of log\n".repeat(200), 0o640),
        recipe: r#"archive::compress("ROOT/app.log.1", "gzip");"#,
        expect: &["app.log.1", "app.log.1.gz"],
        after: |w| {
            assert!(gone(w, "app.log.1"));
            assert_eq!(mode(w, "app.log.1.gz"), 0o640);
            let plain = decompress("gzip", &w.root().join("app.log.1.gz"));
            assert_eq!(plain, "line of log\n".repeat(200).into_bytes());
        },
    });
}

#[test]
fn compress_zstd() {
    check(Case {
        setup: |w| w.write("app.log.2", &"zstd me\n".repeat(100)),
        recipe: r#"archive::compress("ROOT/app.log.2", "zstd");"#,
        expect: &["app.log.2", "app.log.2.zst"],
        after: |w| {
            assert!(gone(w, "app.log.2"));
            let plain = decompress("zstd", &w.root().join("app.log.2.zst"));
            assert_eq!(plain, "zstd me\n".repeat(100).into_bytes());
        },
    });
}

// ---------------------------------------------------------------- the overlay

/// Each step depends on what the one before would have done: only an overlay that
/// shows planned writes to later steps lets this dry-run succeed and be exact.
#[test]
fn dependent_steps_plan_through_the_overlay() {
    let w = World::new();
    w.write("existing.conf", "a=1\n");
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        fs::dir("ROOT/app/conf.d");
        fs::file("ROOT/app/conf.d/main.conf", "name=app\n");
        fs::line("ROOT/app/conf.d/main.conf", "port=8080", #{regex: "^port="});
        // Reads the planned file: the dry-run must see it to reach the same decision.
        let text = fs::read("ROOT/app/conf.d/main.conf");
        if !text.contains("port=8080") { throw "the plan did not see its own line"; }
        fs::rename("ROOT/app/conf.d/main.conf", "ROOT/app/main.conf");
        if fs::exists("ROOT/app/conf.d/main.conf") { throw "rename not planned"; }
        fs::copy("ROOT/app/main.conf", "ROOT/app/copy.conf");
        fs::line("ROOT/existing.conf", "b=2");
        fs::link("ROOT/app/current", "ROOT/app/main.conf");
        fs::remove("ROOT/app/conf.d");
        "#,
    );
    let before = w.snapshot();
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_same(&before, &w.snapshot());

    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    let after = w.snapshot();
    assert_eq!(dry.changed_paths(), real.changed_paths());
    assert_eq!(dry.changed_count(), real.changed_count());
    assert_eq!(dry.changed_count(), 8);
    // Paths that appeared and went again within the run are reported but not in the
    // final diff; every other reported path is.
    let transient: BTreeSet<String> = abs(&w, &["app/conf.d", "app/conf.d/main.conf"]);
    let lasting: BTreeSet<String> = real
        .changed_paths()
        .difference(&transient)
        .cloned()
        .collect();
    assert_eq!(diff(&before, &after), lasting);
    assert_eq!(
        lasting,
        abs(
            &w,
            &[
                "app",
                "app/main.conf",
                "app/copy.conf",
                "existing.conf",
                "app/current"
            ]
        )
    );
    assert_eq!(read(&w, "app/main.conf"), "name=app\nport=8080\n");
    assert_eq!(read(&w, "existing.conf"), "a=1\nb=2\n");

    // The step-by-step diffs of the plan are those of the run.
    let diffs = |r: &Run| -> Vec<(String, String)> {
        r.events()
            .iter()
            .filter(|e| e["event"] == "step")
            .map(|e| {
                (
                    e["op"].as_str().unwrap_or_default().to_string(),
                    e["diff"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(diffs(&dry), diffs(&real));
}

// ---------------------------------------------------------------- sh

fn step_events(r: &Run) -> Vec<serde_json::Value> {
    r.events()
        .into_iter()
        .filter(|e| e["event"] == "step")
        .collect()
}

#[test]
fn sh_is_unknown_in_dry_run_and_not_run() {
    let w = World::new();
    let recipe = w.recipe_in_root("recipe.rhai", r#"sh("touch ROOT/X");"#);
    let before = w.snapshot();
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    let steps = step_events(&dry);
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["op"], "sh");
    assert_eq!(steps[0]["unknown"], true);
    assert_eq!(steps[0]["changed"], false);
    let end = dry.event("run_end");
    assert_eq!(end["unknown"], 1);
    assert!(gone(&w, "X"), "a dry-run ran sh");
    assert_same(&before, &w.snapshot());

    // --detailed-exitcode counts an unknown step as a possible change.
    w.run(&recipe, &["--dry-run", "--detailed-exitcode"])
        .assert_code(2);
    assert!(gone(&w, "X"));

    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert!(!gone(&w, "X"), "the real run did not run sh");
    assert_eq!(step_events(&real)[0]["unknown"], false);
    assert_eq!(step_events(&real)[0]["changed"], true);
}

#[test]
fn sh_read_only_runs_in_dry_run() {
    let w = World::new();
    w.write("version", "4.2\n");
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        let r = sh("cat ROOT/version", #{read_only: true});
        fs::file("ROOT/seen", "version " + r.stdout);
        "#,
    );
    let before = w.snapshot();
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_same(&before, &w.snapshot());
    let steps = step_events(&dry);
    assert_eq!(steps[0]["op"], "sh");
    assert_eq!(steps[0]["unknown"], false);
    assert_eq!(steps[0]["changed"], false);
    assert_eq!(steps[0]["stdout"], "4.2\n");
    assert_eq!(steps[0]["code"], 0);
    // The planned file's diff shows the command's output: it ran.
    assert!(
        steps[1]["diff"].as_str().unwrap().contains("+version 4.2"),
        "{}",
        dry.stdout
    );
    let (_, real) = exact(&w, &recipe);
    assert_eq!(read(&w, "seen"), "version 4.2\n");
    assert_eq!(real.changed_paths(), abs(&w, &["seen"]));
}

#[test]
fn sh_creates_skips_second_run() {
    let w = World::new();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"sh("echo built >> ROOT/out; touch ROOT/stamp", #{creates: "ROOT/stamp"});"#,
    );
    let first = w.run(&recipe, &[]);
    first.assert_code(0);
    assert_eq!(first.changed_count(), 1);
    assert_eq!(read(&w, "out"), "built\n");
    let after = w.snapshot();

    let second = w.run(&recipe, &[]);
    second.assert_code(0);
    assert_eq!(second.changed_count(), 0, "{}", second.stdout);
    assert_eq!(read(&w, "out"), "built\n", "the command ran again");
    assert_same(&after, &w.snapshot());

    // And a dry-run knows it would be skipped: not unknown.
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(step_events(&dry)[0]["unknown"], false);
}

#[test]
fn sh_unless_skips() {
    let w = World::new();
    w.write("installed", "");
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        sh("touch ROOT/ran-1", #{unless: "test -f ROOT/installed"});
        sh("touch ROOT/ran-2", #{unless: "test -f ROOT/missing"});
        "#,
    );
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    let steps = step_events(&dry);
    assert_eq!(
        steps[0]["unknown"], false,
        "guarded and satisfied: known no-op"
    );
    assert_eq!(steps[1]["unknown"], true);
    assert!(gone(&w, "ran-1") && gone(&w, "ran-2"));

    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert_eq!(real.changed_count(), 1);
    assert!(gone(&w, "ran-1"), "unless: did not skip");
    assert!(!gone(&w, "ran-2"), "unless: skipped a failing guard");
}

/// Paths are reported as the file system names them, however the recipe spelled them.
#[test]
fn reported_paths_are_normalized() {
    check(Case {
        setup: |w| w.mkdir("d", 0o755),
        recipe: r#"
            fs::dir("ROOT/d/", #{mode: 0o700});
            fs::file("ROOT//d/./f", "x");
            fs::dir("ROOT/n//m/");
        "#,
        expect: &["d", "d/f", "n", "n/m"],
        after: |w| assert_eq!(read(w, "d/f"), "x"),
    });
}

/// `sh(…, #{become: true})` on this machine: through `sudo -n`, the environment still
/// arriving (on stdin, as over SSH: sudo resets the environment).
#[test]
fn sh_become_locally() {
    let w = World::new();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"sh("id -u; printenv ONLY_HERE", #{read_only: true, become: true, env: #{ONLY_HERE: "yes"}});"#,
    );
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    let step = r.event("step");
    assert_eq!(step["stdout"], "0\nyes\n", "{}", r.stdout);
}
