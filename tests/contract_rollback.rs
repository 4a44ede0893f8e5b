//! The rollback half of the safety contract (issue 9, items 1 and 5-9): a rollback
//! never writes through a symlink swapped in after the run, never destroys what
//! somebody changed since, reads its journal honestly, keeps set-id bits and refuses
//! a backup that was altered. Each test is named after the item it pins.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Run, World};

/// The unprivileged account that plays the other user (sshd.rs creates it).
const OTHER: &str = "tendnosudo";

/// `script` run as the unprivileged user, as an attacker (or a colleague) would.
fn as_other(script: &str) {
    sshd::ensure_test_users();
    let ok = Command::new("runuser")
        .args(["-u", OTHER, "--", "sh", "-c", script])
        .status()
        .unwrap();
    assert!(ok.success(), "as {OTHER}: {script}");
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn mode_of(p: impl AsRef<Path>) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every `incomplete` reason of the run's (or rollback's) `rollback` events.
fn incomplete(r: &Run) -> String {
    r.events()
        .iter()
        .filter(|e| e["event"] == "rollback")
        .flat_map(|e| e["incomplete"].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A log directory the other user may write in, like /var/log/app, and a directory
/// only root may write in, standing for /etc.
fn swap_world(w: &World) {
    std::fs::set_permissions(w.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    w.mkdir("sc3/app", 0o755);
    w.write("sc3/app/log", "old\n");
    w.mkdir("etc-somewhere", 0o755);
    w.write("etc-somewhere/log", "precious\n");
}

/// Give sc3 to the other user (after `hand_over`, which gives the root to the SSH user).
fn give_sc3(w: &World) {
    let ok = Command::new("chown")
        .args(["-R", &format!("{OTHER}:{OTHER}")])
        .arg(w.root().join("sc3"))
        .status()
        .unwrap();
    assert!(ok.success());
}

fn swap_script(w: &World) -> String {
    let sc3 = w.path("sc3");
    format!(
        "mv {sc3}/app {sc3}/app.old && ln -s {} {sc3}/app",
        w.path("etc-somewhere")
    )
}

/// The swap after a run that kept its changes, then `tend rollback RUN`: refused, and
/// neither the symlink's target nor anything else is written.
fn swap_then_rollback_on(w: &World, become_: bool) {
    swap_world(w);
    let body = r#"fs::file("ROOT/sc3/app/log", "new\n"); throw "boom";"#;
    let body = if become_ {
        format!("become(|| {{ {body} }});")
    } else {
        body.to_string()
    };
    let recipe = w.recipe_in_root("r.rhai", &format!("//! scope: ROOT/sc3/**\n{body}\n"));
    let r = w.run(&recipe, &["--no-rollback"]);
    r.assert_code(1);
    give_sc3(w);
    assert_eq!(read(w.root().join("sc3/app/log")), "new\n");
    as_other(&swap_script(w));

    let plan = w.tend(&["rollback", &r.run_id(), "--dry-run", "--json"]);
    plan.assert_code(4);
    assert!(incomplete(&plan).contains("symlink"), "{}", plan.stdout);

    let rb = w.tend(&["rollback", &r.run_id(), "--json"]);
    rb.assert_code(4);
    let why = incomplete(&rb);
    assert!(
        why.contains("sc3/app/log") && why.contains("symlink") && why.contains("not reverted"),
        "{why}"
    );
    assert_eq!(read(w.root().join("etc-somewhere/log")), "precious\n");
    assert_eq!(read(w.root().join("sc3/app.old/log")), "new\n");
}

#[test]
fn item01_rollback_refuses_a_symlink_swapped_in_after_the_run() {
    swap_then_rollback_on(&World::new(), false);
}

#[test]
fn item01_rollback_refuses_a_symlink_swapped_in_after_the_run_over_ssh() {
    let h = sshd::Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    swap_then_rollback_on(&w, true);
}

/// The swap made during the run, by the other user, before a later step fails: the
/// automatic rollback refuses too.
#[test]
fn item01_automatic_rollback_refuses_a_symlink_swapped_in_midway() {
    let w = World::new();
    swap_world(&w);
    give_sc3(&w);
    let recipe = w.recipe_in_root(
        "r.rhai",
        &format!(
            "//! scope: ROOT/sc3/**\nfs::file(\"ROOT/sc3/app/log\", \"new\\n\");\nsh(\"runuser -u {OTHER} -- sh -c '{}'\", #{{in_scope: true}});\nthrow \"boom\";\n",
            swap_script(&w)
        ),
    );
    let r = w.run(&recipe, &[]);
    r.assert_code(4);
    assert!(incomplete(&r).contains("symlink"), "{}", r.stdout);
    assert_eq!(read(w.root().join("etc-somewhere/log")), "precious\n");
}

/// A run changes a file and creates another; then somebody edits the first and
/// appends to the second. Rollback leaves both alone (exit 4) and says why; its
/// dry-run shows it; `--force` reverts and keeps what they wrote in the run's backup.
fn drift_on(w: &World) {
    w.write("app.ini", "setting=1\n");
    let recipe = w.recipe_in_root(
        "r.rhai",
        r#"fs::file("ROOT/app.ini", "setting=2\n"); fs::file("ROOT/new.log", "first\n");"#,
    );
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    let run = r.run_id();
    std::fs::write(w.root().join("app.ini"), "setting=3\n").unwrap();
    std::fs::write(w.root().join("new.log"), "first\nsomebody's line\n").unwrap();

    let plan = w.tend(&["rollback", &run, "--dry-run", "--json"]);
    plan.assert_code(4);
    assert!(
        incomplete(&plan).contains("changed since run"),
        "{}",
        plan.stdout
    );

    let rb = w.tend(&["rollback", &run, "--json"]);
    rb.assert_code(4);
    let why = incomplete(&rb);
    assert!(
        why.contains("app.ini: changed since run") && why.contains("--force"),
        "{why}"
    );
    assert!(why.contains("new.log: changed since run"), "{why}");
    assert_eq!(read(w.root().join("app.ini")), "setting=3\n");
    assert_eq!(read(w.root().join("new.log")), "first\nsomebody's line\n");

    let forced = w.tend(&["rollback", &run, "--force", "--json"]);
    forced.assert_code(0);
    assert_eq!(read(w.root().join("app.ini")), "setting=1\n");
    assert!(!w.root().join("new.log").exists());
    // Nothing anyone wrote is lost: both versions were saved first.
    let saved = saved_drift(w);
    assert!(saved.contains(&"setting=3\n".to_string()), "{saved:?}");
    assert!(
        saved.contains(&"first\nsomebody's line\n".to_string()),
        "{saved:?}"
    );
}

/// The contents of every `drift-*` file kept under the World's directory.
fn saved_drift(w: &World) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                walk(&p, out);
            } else if e.file_name().to_string_lossy().starts_with("drift-") {
                out.push(p);
            }
        }
    }
    let mut found = Vec::new();
    walk(w.dir.path(), &mut found);
    found.iter().map(read).collect()
}

#[test]
fn item05_rollback_leaves_files_changed_since_the_run() {
    drift_on(&World::new());
}

#[test]
fn item05_rollback_leaves_files_changed_since_the_run_over_ssh() {
    let h = sshd::Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    drift_on(&w);
}

/// A relative path and a relative state dir, given in directory A; the rollback is
/// started from directory B, which has a file of the same name.
#[test]
fn item06_relative_paths_are_rolled_back_where_they_were_written() {
    let w = World::new();
    w.write("a/target", "A's old\n");
    w.write("b/target", "B's own\n");
    let recipe = w.recipe(
        "r.rhai",
        "let p = params(#{path: \"x\"}); fs::file(p.path, \"new\\n\");",
    );
    let in_dir = |dir: &str, args: &[&str]| -> Run {
        Run::from(
            w.command()
                .env_remove("TEND_STATE_DIR")
                .current_dir(w.root().join(dir))
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let r = in_dir(
        "a",
        &[
            "--state-dir",
            "st",
            "run",
            recipe.to_str().unwrap(),
            "-p",
            "path=target",
            "--json",
        ],
    );
    r.assert_code(0);
    assert_eq!(read(w.root().join("a/target")), "new\n");
    in_dir(
        "b",
        &["--state-dir", "../a/st", "rollback", &r.run_id(), "--json"],
    )
    .assert_code(0);
    assert_eq!(read(w.root().join("a/target")), "A's old\n");
    assert_eq!(read(w.root().join("b/target")), "B's own\n");
}

/// The journal of the newest run on the local host.
fn journal_of(w: &World, run: &str) -> PathBuf {
    w.state()
        .join("runs")
        .join(run)
        .join("hosts/local/journal.jsonl")
}

#[test]
fn item07_a_damaged_journal_line_makes_rollback_incomplete() {
    let w = World::new();
    for f in ["a", "b", "c"] {
        w.write(f, "old\n");
    }
    let recipe = w.recipe_in_root(
        "r.rhai",
        r#"fs::file("ROOT/a", "new\n"); fs::file("ROOT/b", "new\n"); fs::file("ROOT/c", "new\n");"#,
    );
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    let journal = journal_of(&w, &r.run_id());
    let text = read(&journal);
    let lines: Vec<&str> = text.lines().collect();
    let (n, _) = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"undo\":"))
        .nth(1)
        .expect("a second record");
    let mut damaged: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    damaged[n] = damaged[n].replace("\"undo\":\"restore\"", "\"undo\":\"rest0re\"");
    std::fs::write(&journal, damaged.join("\n") + "\n").unwrap();

    let rb = w.tend(&["rollback", &r.run_id(), "--json"]);
    rb.assert_code(4);
    let why = incomplete(&rb);
    assert!(why.contains(&format!("line {}", n + 1)), "{why}");
    // The readable records were still undone.
    assert_eq!(read(w.root().join("a")), "old\n");
    assert_eq!(read(w.root().join("c")), "old\n");
    assert_eq!(read(w.root().join("b")), "new\n");
}

/// Root-owned setuid files keep their bits when their content changes, get the bits a
/// recipe asks for, and get them back exactly on rollback.
#[test]
fn item08_set_id_bits_are_kept_and_restored() {
    let w = World::new();
    w.write_mode("tool", "v1\n", 0o4750);
    w.write_mode("other", "v1\n", 0o755);
    let recipe = w.recipe_in_root(
        "r.rhai",
        r#"fs::file("ROOT/tool", "v2\n"); fs::file("ROOT/other", #{content: "v2\n", mode: 0o2755});"#,
    );
    let r = w.run(&recipe, &["--no-rollback"]);
    r.assert_code(0);
    assert_eq!(mode_of(w.root().join("tool")), 0o4750);
    assert_eq!(mode_of(w.root().join("other")), 0o2755);
    w.tend(&["rollback", &r.run_id(), "--json"]).assert_code(0);
    assert_eq!(read(w.root().join("tool")), "v1\n");
    assert_eq!(mode_of(w.root().join("tool")), 0o4750);
    assert_eq!(mode_of(w.root().join("other")), 0o755);
}

#[test]
fn item09_an_altered_backup_is_refused() {
    let w = World::new();
    w.write("app.ini", "setting=1\n");
    let recipe = w.recipe_in_root("r.rhai", r#"fs::file("ROOT/app.ini", "setting=2\n");"#);
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    let backup_dir = journal_of(&w, &r.run_id()).with_file_name("backup");
    let backups: Vec<PathBuf> = std::fs::read_dir(&backup_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    std::fs::write(&backups[0], "setting=9\n").unwrap(); // same size, other bytes
    let rb = w.tend(&["rollback", &r.run_id(), "--json"]);
    rb.assert_code(4);
    assert!(incomplete(&rb).contains("altered"), "{}", rb.stdout);
    assert_eq!(read(w.root().join("app.ini")), "setting=2\n");
}

/// A journal whose record was turned (by hand, or by a bug) towards a path outside the
/// recipe's declared scope: rollback checks the scope again and refuses it.
#[test]
fn item01_rollback_rechecks_the_declared_scope() {
    let w = World::new();
    w.write("sc/a", "old\n");
    w.write("out/a", "keep\n");
    let recipe = w.recipe_in_root(
        "r.rhai",
        "//! scope: ROOT/sc/**\nfs::file(\"ROOT/sc/a\", \"new\\n\");\n",
    );
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    let journal = journal_of(&w, &r.run_id());
    let text = read(&journal);
    assert!(text.contains("\"scope\""), "{text}");
    let (sc, out) = (w.path("sc"), w.path("out"));
    let turned: String = text
        .lines()
        .map(|l| {
            if l.contains("\"undo\":") {
                l.replace(&sc, &out)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&journal, turned + "\n").unwrap();
    let rb = w.tend(&["rollback", &r.run_id(), "--json"]);
    rb.assert_code(4);
    assert!(
        incomplete(&rb).contains("outside the recipe's declared scope"),
        "{}",
        rb.stdout
    );
    assert_eq!(read(w.root().join("out/a")), "keep\n");
}
