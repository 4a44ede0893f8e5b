//! The restore recipe (recipes/restore.rhai, steps in stdlib/restic.rhai) with the
//! real restic: the plan lists exactly the files the run changes, a second run
//! changes nothing, `tend rollback` and a failure midway put every file back; some
//! paths into another directory; locally and over a real sshd host.

#[path = "support/restic.rs"]
mod restic_support;
#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::collections::BTreeSet;
use std::path::Path;

use restic_support::*;
use support::{assert_same, snapshot};

/// (1) The restore plan lists exactly the files the run changes; (2) a second run
/// changes nothing; rollback puts back what it overwrote.
fn restore_cycle(bk: &Bk) {
    bk.backup(&[("keep_last", "5")], &[]).assert_code(0);
    let pristine = bk.w.snapshot();
    // Damage: one file edited, one removed, one with another mode, one directory gone.
    bk.w.write_mode("src/etc/app.conf", "listen = 1\n", 0o644);
    std::fs::remove_file(bk.w.root().join("src/etc/secret.key")).unwrap();
    std::fs::set_permissions(
        bk.w.root().join("src/data/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::fs::remove_dir_all(bk.w.root().join("src/data/deep")).unwrap();
    bk.w.write("src/etc/extra.conf", "kept: the snapshot lacks it\n");
    bk.w.hand_over();
    let damaged = bk.w.snapshot();

    let dry = bk.run("restore", &[], &["--dry-run"]);
    dry.assert_code(0);
    assert_same(&damaged, &bk.w.snapshot());
    let src = bk.src();
    let plan: BTreeSet<String> = logs(&dry, "restore: ").into_iter().collect();
    let want: BTreeSet<String> = [
        "etc/app.conf (content)",
        "etc/secret.key (new)",
        "data/run.sh (mode)",
        "data/deep/blob.bin (new)",
    ]
    .iter()
    .map(|f| format!("restore: {src}/{f}"))
    .collect();
    assert_eq!(plan, want);

    let run = bk.run("restore", &[], &[]);
    run.assert_code(0);
    let after = bk.w.snapshot();
    // Everything as backed up, plus the file the snapshot lacks.
    let mut expect = pristine.clone();
    let extra = bk.w.path("src/etc/extra.conf");
    expect.insert(extra.clone(), damaged[&extra].clone());
    assert_same(&expect, &after);
    // The run changed exactly the planned files (and the planned directory).
    let changed: BTreeSet<String> = support::diff(&damaged, &after);
    let planned_files: BTreeSet<String> = plan
        .iter()
        .map(|l| {
            l["restore: ".len()..]
                .split(" (")
                .next()
                .unwrap()
                .to_string()
        })
        .chain([format!("{src}/data/deep")])
        .collect();
    assert_eq!(changed, planned_files);
    assert_eq!(
        dry.changed_paths(),
        BTreeSet::from([format!("{src}/data/deep")])
    );

    let again = bk.run("restore", &[], &[]);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "{}", again.stdout);
    assert_same(&after, &bk.w.snapshot());

    let rb = bk.w.tend(&["rollback", &run.run_id()]);
    rb.assert_code(0);
    assert_same(&damaged, &bk.w.snapshot());
    assert!(
        !Path::new(&bk.scratch).read_dir().unwrap().any(|_| true),
        "scratch left behind"
    );
}

#[test]
fn restore_plans_exactly_the_files_it_changes_and_rolls_back() {
    restore_cycle(&Bk::local());
}

#[test]
fn restore_plans_exactly_the_files_it_changes_and_rolls_back_over_ssh() {
    restore_cycle(&Bk::over_ssh());
}

/// Some paths, into another directory: only those files, under target_dir; the
/// sources are not touched.
#[test]
fn restore_some_paths_into_another_directory() {
    let bk = Bk::local();
    bk.backup(&[], &[]).assert_code(0);
    let before = bk.w.snapshot();
    let src = bk.src();
    let out = bk.w.dir.path().join("out").display().to_string();
    let p = [("paths", format!("{src}/etc")), ("target_dir", out.clone())];
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    bk.run("restore", &p, &[]).assert_code(0);
    assert_same(&before, &bk.w.snapshot());
    let got = snapshot(Path::new(&out));
    let files: BTreeSet<String> = got
        .iter()
        .filter(|(_, e)| matches!(e, support::Entry::File { .. }))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        files,
        BTreeSet::from([
            format!("{out}{src}/etc/app.conf"),
            format!("{out}{src}/etc/secret.key")
        ])
    );
    assert_eq!(
        got[&format!("{out}{src}/etc/secret.key")],
        before[&format!("{src}/etc/secret.key")]
    );
    // target_dir itself is made with the default mode, not a snapshot directory's.
    let m = std::fs::metadata(&out).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777,
        0o755
    );
}

/// (3) The riskiest step of a restore is writing files: one that cannot be written
/// (a file stands where the snapshot has the directory `src/etc`) fails the run
/// after another file was restored, and the rollback puts it back as it was.
#[test]
fn a_restore_that_fails_midway_is_rolled_back() {
    let bk = Bk::local();
    bk.backup(&[], &[]).assert_code(0);
    bk.w.write_mode("src/data/run.sh", "edited\n", 0o755);
    std::fs::remove_dir_all(bk.w.root().join("src/etc")).unwrap();
    bk.w.write("src/etc", "a file where a directory was\n");
    let before = bk.w.snapshot();
    let r = bk.run("restore", &[], &[]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    // run.sh (restored first) was put back; nothing else changed.
    assert!(
        steps(&r)
            .iter()
            .any(|s| s.0.ends_with("src/data/run.sh") && s.1),
        "{}",
        r.stdout
    );
    let failed = r.event("step_failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("not a directory"),
        "{failed}"
    );
    assert_same(&before, &bk.w.snapshot());
    assert!(
        !Path::new(&bk.scratch).read_dir().unwrap().any(|_| true),
        "scratch left behind"
    );
}
