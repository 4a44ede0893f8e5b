//! Issue 9, "the dry-run tells the truth" (items 10 and 11): a recipe whose steps go
//! through symlinks planned or real, or ask a command or a guard about what earlier
//! steps planned, gets from the dry-run exactly the steps the real run then takes —
//! or, where a command cannot see the plan, an honest *unknown*, never a confident
//! wrong answer.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::path::Path;

use serde_json::Value;
use sshd::Sshd;
use support::{assert_same, Run, World};

/// What each step did or would do, in order: what a dry-run must agree on with the run.
fn steps(r: &Run) -> Vec<Value> {
    r.events()
        .into_iter()
        .filter(|e| e["event"] == "step")
        .map(|e| {
            serde_json::json!({
                "op": e["op"], "subject": e["subject"], "changed": e["changed"],
                "unknown": e["unknown"], "paths": e["paths"], "diff": e["diff"],
            })
        })
        .collect()
}

/// Dry-run, then the real run: the dry-run touches nothing and plans, step by step,
/// what the run then does.
fn same_plan(w: &World, recipe: &Path) -> (Run, Run) {
    let before = w.snapshot();
    let dry = w.run(recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_same(&before, &w.snapshot());
    let real = w.run(recipe, &[]);
    real.assert_code(0);
    assert_eq!(
        steps(&dry),
        steps(&real),
        "the dry-run planned other steps than the run took\ndry-run:\n{}\nreal:\n{}",
        dry.stdout,
        real.stdout
    );
    assert_eq!(dry.changed_paths(), real.changed_paths());
    assert_eq!(dry.changed_count(), real.changed_count());
    (dry, real)
}

/// [`same_plan`] on this machine and over SSH (the overlay's walk then asks a remote
/// file system about every link); returns the local runs' changed counts.
fn same_plan_both(setup: fn(&World), recipe: &str) -> u64 {
    let local = World::new();
    setup(&local);
    let (dry, _) = same_plan(&local, &local.recipe_in_root("recipe.rhai", recipe));
    let sshd = Sshd::start_tendtest();
    let remote = World::new();
    remote.over_ssh(
        &sshd.user,
        sshd.port,
        &sshd.client_key,
        &sshd.known_hosts_line(),
    );
    setup(&remote);
    same_plan(&remote, &remote.recipe_in_root("recipe.rhai", recipe));
    dry.changed_count()
}

fn read(w: &World, rel: &str) -> String {
    std::fs::read_to_string(w.root().join(rel)).unwrap()
}

// ---------------------------------------------------------------- item 10

#[test]
fn item10_dry_run_reads_through_a_planned_symlink() {
    let changed = same_plan_both(
        |_| {},
        r#"
        fs::dir("ROOT/releases/v2");
        fs::file("ROOT/releases/v2/app.conf", "port=2\n");
        fs::link("ROOT/current", "releases/v2");
        let conf = fs::read("ROOT/current/app.conf");
        fs::file("ROOT/seen.conf", conf);
        fs::line("ROOT/current/app.conf", "debug=0");
        if fs::list("ROOT/current") != ["app.conf"] { throw "listing through the link"; }
        "#,
    );
    assert_eq!(changed, 5);
}

/// The release switch done by renames: `current` keeps pointing at `releases/v1`,
/// which is now another directory. The plan must follow the link to the new one.
#[test]
fn item10_renaming_a_directory_an_existing_symlink_points_to() {
    let changed = same_plan_both(
        |w| {
            w.write("releases/v1/app.conf", "v1\n");
            w.write("releases/v1/only-v1", "");
            w.write("staged/app.conf", "v2\n");
            w.symlink("current", "releases/v1");
        },
        r#"
        fs::rename("ROOT/releases/v1", "ROOT/releases/v1.old");
        fs::rename("ROOT/staged", "ROOT/releases/v1");
        fs::file("ROOT/current/app.conf", "v2\n");
        fs::remove("ROOT/current/only-v1");
        if !fs::exists("ROOT/releases/v1.old/only-v1") { throw "moved with its directory"; }
        "#,
    );
    // The two renames; the file and the removal are already so through the link.
    assert_eq!(changed, 2);
}

#[test]
fn item10_a_symlinked_parent_and_its_target_are_one_directory() {
    let changed = same_plan_both(
        |w| {
            w.mkdir("data", 0o755);
            w.symlink("alias", "data");
        },
        r#"
        fs::file("ROOT/alias/f", "1\n");
        fs::file("ROOT/data/f", "1\n");
        fs::chmod("ROOT/data/f", 0o600);
        fs::chmod("ROOT/alias/f", 0o600);
        if fs::list("ROOT/data") != ["f"] { throw "one file, two names"; }
        "#,
    );
    assert_eq!(changed, 2);
}

#[test]
fn item10_dotdot_after_a_symlink_leads_from_its_target() {
    let w = World::new();
    w.mkdir("a/b", 0o755);
    w.symlink("l", "a/b");
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        fs::file("ROOT/l/../f", "x\n");
        fs::file("ROOT/a/f", fs::read("ROOT/a/f"));
        fs::dir("ROOT/n/m");
        fs::link("ROOT/k", "n/m");
        fs::file("ROOT/k/../g", "y\n");
        if fs::read("ROOT/n/g") != "y\n" { throw "`..` of a planned link"; }
        if fs::exists("ROOT/g") { throw "`..` taken textually"; }
        "#,
    );
    let (dry, _) = same_plan(&w, &recipe);
    assert_eq!(dry.changed_count(), 4);
    assert_eq!(read(&w, "a/f"), "x\n");
    assert_eq!(read(&w, "n/g"), "y\n");
}

#[test]
fn item10_a_dangling_link_leads_to_what_the_plan_creates() {
    let changed = same_plan_both(
        |w| w.symlink("logs", "var/logs"),
        r#"
        if !fs::exists("ROOT/logs") { throw "a dangling link still exists"; }
        if fs::exists("ROOT/logs/app.log") { throw "nothing behind it yet"; }
        fs::dir("ROOT/var/logs");
        fs::file("ROOT/logs/app.log", "started\n");
        fs::line("ROOT/var/logs/app.log", "started");
        "#,
    );
    assert_eq!(changed, 2);
}

/// `path/` is `path/.`: the kernel follows a final symlink there, even for `lstat`.
#[test]
fn item10_a_path_ending_in_a_slash_follows_its_link() {
    let changed = same_plan_both(
        |w| {
            w.mkdir("data", 0o755);
            w.symlink("alias", "data");
        },
        r#"
        fs::dir("ROOT/alias/");
        fs::dir("ROOT/alias/", #{mode: 0o750});
        "#,
    );
    assert_eq!(changed, 1);
}

#[test]
fn item10_a_renamed_directory_takes_children_planned_through_a_link() {
    let changed = same_plan_both(
        |w| {
            w.write("d/old", "o\n");
            w.symlink("l", "d");
        },
        r#"
        fs::file("ROOT/l/new", "n\n");
        fs::rename("ROOT/d", "ROOT/e");
        fs::file("ROOT/copy", fs::read("ROOT/e/new"));
        if fs::exists("ROOT/l/new") { throw "the link dangles now"; }
        fs::remove("ROOT/e");
        "#,
    );
    assert_eq!(changed, 4);
}

#[test]
fn item10_a_symlink_loop_fails_like_the_kernel() {
    let w = World::new();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        fs::link("ROOT/a", "b");
        fs::link("ROOT/b", "a");
        let caught = "";
        try { fs::read("ROOT/a"); } catch (e) { caught = `${e}`; }
        if !caught.contains("too many levels of symbolic links") { throw "no ELOOP: " + caught; }
        let looped = false;
        try { fs::exists("ROOT/a/x"); } catch { looped = true; }
        if !looped { throw "lstat through a loop is ELOOP too"; }
        fs::file("ROOT/done", "yes\n");
        "#,
    );
    let (dry, _) = same_plan(&w, &recipe);
    assert_eq!(dry.changed_count(), 3);
}

/// A relative path starts where the target's working directory is: the same file as
/// its absolute name, however a link reaches it.
#[test]
fn item10_a_relative_path_and_an_absolute_link_are_one_file() {
    let w = World::new();
    w.mkdir("data", 0o755);
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        fs::file("root/data/f", "1\n");
        fs::link("root/abs", "ROOT/data");
        fs::file("root/abs/f", "1\n");
        fs::file("ROOT/data/f", fs::read("root/abs/../data/f"));
        "#,
    );
    let (dry, _) = same_plan(&w, &recipe);
    assert_eq!(dry.changed_count(), 2);
}

// ---------------------------------------------------------------- item 11

fn step(r: &Run, n: usize) -> Value {
    steps(r).swap_remove(n)
}

/// The command cannot see the planned file, so its answer is not the real run's: the
/// step is unknown (and its failure does not fail the dry-run).
#[test]
fn item11_a_read_only_command_after_a_planned_write_is_unknown() {
    let w = World::new();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        fs::file("ROOT/app.conf", "port=8080\n");
        let r = sh("grep -q port=8080 ROOT/app.conf", #{read_only: true});
        fs::file("ROOT/checked", "yes\n");
        "#,
    );
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(step(&dry, 1)["unknown"], true, "{}", dry.stdout);
    assert_eq!(dry.event("run_end")["unknown"], 1);
    w.run(&recipe, &["--dry-run", "--detailed-exitcode"])
        .assert_code(2);
    assert!(!w.root().join("app.conf").exists());

    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert_eq!(step(&real, 1)["unknown"], false);
    assert_eq!(dry.changed_paths(), real.changed_paths());
}

#[test]
fn item11_a_read_only_command_after_an_unrun_command_is_unknown() {
    let w = World::new();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        sh("touch ROOT/flag");
        let r = sh("test -f ROOT/flag", #{read_only: true});
        "#,
    );
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(step(&dry, 1)["unknown"], true, "{}", dry.stdout);
    assert_eq!(dry.event("run_end")["unknown"], 2);
    w.run(&recipe, &[]).assert_code(0);
}

/// The guard passes on the disk as it is, but not after the planned removal: the old
/// dry-run said "skipped", the run then ran the command.
#[test]
fn item11_an_unless_guard_after_a_planned_change_is_unknown() {
    let w = World::new();
    w.write("installed", "");
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        fs::remove("ROOT/installed");
        sh("touch ROOT/ran", #{unless: "test -f ROOT/installed"});
        "#,
    );
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(step(&dry, 1)["unknown"], true, "{}", dry.stdout);
    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert_eq!(step(&real, 1)["changed"], true, "{}", real.stdout);
    assert!(w.root().join("ran").exists());
}

/// `creates:` is a path check: the plan answers it exactly, through planned links too.
#[test]
fn item11_creates_is_answered_from_the_plan() {
    let w = World::new();
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        fs::dir("ROOT/v1");
        fs::file("ROOT/v1/stamp", "");
        fs::link("ROOT/current", "v1");
        sh("touch ROOT/built", #{creates: "ROOT/current/stamp"});
        "#,
    );
    let (dry, _) = same_plan(&w, &recipe);
    assert_eq!(step(&dry, 3)["unknown"], false, "{}", dry.stdout);
    assert_eq!(dry.event("run_end")["unknown"], 0);
    assert!(!w.root().join("built").exists());
}

/// An earlier command the dry-run did not run may remove what `creates:` names.
#[test]
fn item11_creates_after_an_unrun_command_is_unknown() {
    let w = World::new();
    w.write("stamp", "");
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        r#"
        sh("rm ROOT/stamp");
        sh("touch ROOT/built", #{creates: "ROOT/stamp"});
        "#,
    );
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(step(&dry, 1)["unknown"], true, "{}", dry.stdout);
    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert_eq!(step(&real, 1)["changed"], true, "{}", real.stdout);
    assert!(w.root().join("built").exists());
}
