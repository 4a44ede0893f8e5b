//! The image-build and vm-maintenance recipes and their stdlib modules (image, vm),
//! end to end with the real tools: a small ext4-in-qcow2 image built from a tree and
//! checked with `qemu-img check`, `qemu-img info`, `e2fsck -fn` and `debugfs`; a second
//! build of the same version changes nothing; a failure after publishing rolls back to
//! the previous `latest`; retention keeps N and never the one `latest` leads to; VM
//! snapshots taken, reverted and deleted on a real qcow2. The build also runs over a
//! real sshd host.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{assert_same, Run, World};

/// Run a tool of this machine; its output, panicking (with it) if it failed.
#[track_caller]
fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd} {args:?} failed: {text}");
    text
}

/// `tend recipes copy NAME` beside the world's root, its scope moved to `scope` (as a
/// user adapts a copy before vetting it).
fn adapted_copy(w: &World, name: &str, scope: &str) -> PathBuf {
    let dir = w.dir.path().display().to_string();
    w.tend(&["recipes", "copy", name, &dir]).assert_code(0);
    let path = w.dir.path().join(format!("{name}.rhai"));
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("//! scope:"))
        .expect("a scope line");
    std::fs::write(&path, text.replace(line, &format!("//! scope: {scope}"))).unwrap();
    path
}

/// A tree to build from and the image-build recipe, allowed to write `ROOT/out`.
fn image_world(w: &World) -> PathBuf {
    w.write("tree/etc/motd", "Welcome to the master image\n");
    w.write("tree/srv/app/run.sh", "#!/bin/sh\necho app\n");
    std::os::unix::fs::symlink(
        "/usr/share/zoneinfo/UTC",
        w.root().join("tree/etc/localtime"),
    )
    .unwrap();
    let out = w.path("out");
    adapted_copy(w, "image-build", &format!("{out}, {out}/**"))
}

fn build(w: &World, recipe: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "-p".to_string(),
        format!("tree={}", w.path("tree")),
        "-p".into(),
        format!("out_dir={}", w.path("out")),
        "-p".into(),
        "size=8M".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    w.run(recipe, &args)
}

/// `(op, subject)` of each step a run reported.
fn steps(r: &Run) -> Vec<(String, String)> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| {
            (
                e["op"].as_str().unwrap().to_string(),
                e["subject"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn latest(w: &World) -> String {
    std::fs::read_link(w.root().join("out/master-latest.qcow2"))
        .unwrap()
        .display()
        .to_string()
}

/// What a real image must be: qcow2 of the asked size, clean for `qemu-img check`,
/// an ext4 that `e2fsck -fn` finds clean, holding the tree's files; and its checksum
/// file right.
fn check_image(w: &World, image: &str) {
    let out = w.root().join("out");
    let path = out.join(image);
    let p = path.to_str().unwrap();
    tool("qemu-img", &["check", p]);
    let info: serde_json::Value =
        serde_json::from_str(&tool("qemu-img", &["info", "--output=json", p])).unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["virtual-size"], 8 * 1024 * 1024, "{info}");
    let sums = std::fs::read_to_string(out.join(format!("{image}.sha256"))).unwrap();
    assert!(sums.ends_with(&format!("  {image}\n")), "{sums}");
    let ok = Command::new("sha256sum")
        .args(["-c", &format!("{image}.sha256")])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let scratch = tempfile::tempdir().unwrap();
    let raw = scratch.path().join("fs.raw");
    let r = raw.to_str().unwrap();
    tool("qemu-img", &["convert", "-O", "raw", p, r]);
    tool("e2fsck", &["-fn", r]);
    let motd = tool("debugfs", &["-R", "cat /etc/motd", r]);
    assert!(motd.contains("Welcome to the master image\n"), "{motd}");
    let dumpe2fs = tool("dumpe2fs", &["-h", r]);
    assert!(
        dumpe2fs.contains("Filesystem volume name:   master"),
        "{dumpe2fs}"
    );
}

/// Plan, build, check, build again, fail after publishing: on any target.
fn build_check_rebuild_and_fail_on(w: &World) {
    let recipe = image_world(w);
    let date = ["-p", "date=20261202"];

    let dry = build(w, &recipe, &[&date[..], &["--dry-run"]].concat());
    dry.assert_code(0);
    assert!(!w.root().join("out").exists(), "a dry-run wrote");
    let real = build(w, &recipe, &date);
    real.assert_code(0);
    // The plan names the steps the run takes: the build (unknown in the plan), the
    // checksum, the rename out of the staging name, the link.
    assert_eq!(steps(&dry), steps(&real), "{}\n{}", dry.stdout, real.stdout);
    let ops: Vec<String> = steps(&real)
        .into_iter()
        .filter(|(op, _)| op != "fs::dir")
        .map(|s| s.0)
        .collect();
    assert_eq!(
        ops,
        ["sh", "fs::file", "fs::rename", "fs::link"],
        "{}",
        real.stdout
    );
    let image = "master-1-20261202.qcow2";
    assert_eq!(latest(w), image);
    check_image(w, image);
    let names: Vec<String> = std::fs::read_dir(w.root().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no staging file left behind: {names:?}");

    // The same version again: nothing to do, nothing touched (not even on another day).
    let before = w.snapshot();
    let again = build(w, &recipe, &["-p", "date=20261203"]);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "{}", again.stdout);
    assert_same(&before, &w.snapshot());

    // A failure after publishing (the verify command): the new image, its checksum
    // and staging file go, latest leads to the previous image again.
    let failed = build(w, &recipe, &["-p", "version=2", "-p", "verify=false"]);
    failed.assert_code(3);
    assert_same(&before, &w.snapshot());
    assert_eq!(latest(w), image);

    // A verify that passes, on the published image.
    let verified = build(
        w,
        &recipe,
        &[
            "-p",
            "version=2",
            "-p",
            "date=20261203",
            "-p",
            "verify=qemu-img check \"$IMAGE\"",
        ],
    );
    verified.assert_code(0);
    assert_eq!(latest(w), "master-2-20261203.qcow2");
    check_image(w, "master-2-20261203.qcow2");
}

#[test]
fn image_build_checks_rebuilds_nothing_and_rolls_back() {
    build_check_rebuild_and_fail_on(&World::new());
}

#[test]
fn image_build_over_ssh() {
    let h = sshd::Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    build_check_rebuild_and_fail_on(&w);
}

#[test]
fn retention_keeps_n_and_never_the_latest() {
    let w = World::new();
    let recipe = image_world(&w);
    for (v, d) in [("1", "20261101"), ("2", "20261102"), ("3", "20261103")] {
        build(
            &w,
            &recipe,
            &["-p", &format!("version={v}"), "-p", &format!("date={d}")],
        )
        .assert_code(0);
    }
    let exists = |v: &str, d: &str| w.root().join(format!("out/master-{v}-{d}.qcow2")).exists();
    assert!(exists("1", "20261101") && exists("2", "20261102") && exists("3", "20261103"));
    assert_eq!(latest(&w), "master-3-20261103.qcow2");

    // Back to version 1 with keep 1: the newest stays, and so does version 1, which
    // latest now leads to; version 2 goes (with a backup: reversible).
    let before = w.snapshot();
    let back = build(&w, &recipe, &["-p", "version=1", "-p", "keep=1"]);
    back.assert_code(0);
    assert_eq!(latest(&w), "master-1-20261101.qcow2");
    assert!(exists("1", "20261101") && exists("3", "20261103"));
    assert!(!exists("2", "20261102"));
    assert!(!w.root().join("out/master-2-20261102.qcow2.sha256").exists());
    assert!(back
        .events()
        .iter()
        .filter(|e| e["event"] == "step" && e["op"] == "fs::remove")
        .all(|e| e["reversible"] != false));
    // ...so `tend rollback` brings it back, and latest with it.
    let rb = w.tend(&["rollback", &back.run_id()]);
    rb.assert_code(0);
    assert_same(&before, &w.snapshot());

    // free_expired: deleted outright, which the plan says cannot be undone.
    let args = ["-p", "version=1", "-p", "keep=1", "-p", "free_expired=true"];
    let plan = build(&w, &recipe, &[&args[..], &["--dry-run"]].concat());
    plan.assert_code(0);
    let events = plan.events();
    let removes: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "step" && e["op"] == "fs::remove")
        .collect();
    assert_eq!(removes.len(), 2, "{}", plan.stdout);
    assert!(
        removes.iter().all(|e| e["reversible"] == false),
        "{}",
        plan.stdout
    );
    build(&w, &recipe, &args).assert_code(0);
    assert!(!exists("2", "20261102") && exists("1", "20261101") && exists("3", "20261103"));
}

/// A qcow2 disk whose first 64 KiB hold `pattern`.
fn disk(w: &World, name: &str, pattern: u8) -> String {
    let path = w.path(name);
    tool("qemu-img", &["create", "-q", "-f", "qcow2", &path, "16M"]);
    write_pattern(&path, pattern);
    path
}

fn write_pattern(disk: &str, pattern: u8) {
    tool(
        "qemu-io",
        &["-c", &format!("write -P {pattern:#x} 0 64k"), disk],
    );
}

/// Whether the first 64 KiB of `disk` hold `pattern`.
fn holds(disk: &str, pattern: u8) -> bool {
    let out = Command::new("qemu-io")
        .args(["-c", &format!("read -P {pattern:#x} 0 64k"), disk])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned()
        + String::from_utf8_lossy(&out.stderr).as_ref();
    assert!(text.contains("read 65536/65536"), "qemu-io read: {text}");
    !text.contains("Pattern verification failed")
}

fn snapshot_names(disk: &str) -> Vec<String> {
    let info: serde_json::Value =
        serde_json::from_str(&tool("qemu-img", &["info", "--output=json", disk])).unwrap();
    info["snapshots"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

const SNAP: &str = r#"//! vm:: steps, one per action.
//! scope: ROOT/**
import "vm" as vm;
let p = params(#{ disk: "", name: "before-update", action: "snapshot" });
switch p.action {
    "snapshot" => vm::snapshot(p.disk, p.name),
    "revert" => vm::revert(p.disk, p.name),
    "delete" => vm::delete_snapshot(p.disk, p.name),
    "fail" => {
        vm::snapshot(p.disk, p.name);
        sh(`qemu-io -c "write -P 0x77 0 64k" '${p.disk}'`, #{in_scope: true, undo: ":"});
        throw "injected failure";
    }
}
"#;

#[test]
fn vm_snapshot_revert_and_delete_on_a_real_qcow2() {
    let w = World::new();
    let recipe = w.recipe(
        "snap.rhai",
        &SNAP.replace("ROOT", &w.root().display().to_string()),
    );
    let d = disk(&w, "vm.qcow2", 0xaa);
    let run = |action: &str, extra: &[&str]| {
        let disk = format!("disk={d}");
        let action = format!("action={action}");
        let mut args = vec!["-p", disk.as_str(), "-p", action.as_str()];
        args.extend_from_slice(extra);
        w.run(&recipe, &args)
    };

    let r = run("snapshot", &[]);
    r.assert_code(0);
    assert_eq!(snapshot_names(&d), ["before-update"]);
    // Taken once: the second run finds it.
    assert_eq!(run("snapshot", &[]).assert_code(0).changed_count(), 0);

    // Revert: what was written since is gone. The plan says it cannot be undone.
    write_pattern(&d, 0x55);
    let plan = run("revert", &["--dry-run"]);
    plan.assert_code(0);
    let step = plan
        .events()
        .into_iter()
        .find(|e| {
            e["event"] == "step"
                && e["subject"]
                    .as_str()
                    .is_some_and(|s| s.contains("snapshot -a"))
        })
        .unwrap_or_else(|| panic!("no revert step in {}", plan.stdout));
    assert_eq!(step["reversible"], false, "{step}");
    assert!(holds(&d, 0x55), "a dry-run reverted");
    run("revert", &[]).assert_code(0);
    assert!(holds(&d, 0xaa));
    assert!(!holds(&d, 0x55));
    assert_eq!(snapshot_names(&d), ["before-update"]);

    run("delete", &[]).assert_code(0);
    assert!(snapshot_names(&d).is_empty());
    assert_eq!(run("delete", &[]).assert_code(0).changed_count(), 0);
    // Reverting to a snapshot that is not there fails, changing nothing.
    run("revert", &[]).assert_code(1);
    assert!(holds(&d, 0xaa));

    // A run that snapshots, writes and fails: the snapshot's undo reverts the disk
    // and deletes the snapshot.
    let failed = run("fail", &[]);
    failed.assert_code(3);
    assert!(holds(&d, 0xaa), "{}", failed.stdout);
    assert!(snapshot_names(&d).is_empty());

    // A disk outside the recipe's scope is refused before anything is done.
    let outside = w.dir.path().join("outside.qcow2");
    let o = outside.to_str().unwrap();
    tool("qemu-img", &["create", "-q", "-f", "qcow2", o, "1M"]);
    let refused = w.run(&recipe, &["-p", &format!("disk={o}")]);
    refused.assert_code(1);
    assert!(
        refused
            .stdout
            .contains("outside the recipe's declared scope"),
        "{}",
        refused.stdout
    );
    assert!(snapshot_names(o).is_empty());
}

#[test]
fn vm_maintenance_reverts_on_failure_and_expires_old_snapshots() {
    let w = World::new();
    let recipe = adapted_copy(&w, "vm-maintenance", &format!("{}/**", w.root().display()));
    let d = disk(&w, "vm.qcow2", 0xaa);
    tool(
        "qemu-img",
        &["snapshot", "-c", "tend-maint-20200101-000000", &d],
    );
    tool("qemu-img", &["snapshot", "-c", "by-hand", &d]);
    let disk = format!("disk={d}");

    let ok = w.run(
        &recipe,
        &[
            "-p",
            &disk,
            "-p",
            "command=qemu-io -c 'write -P 0x55 0 64k' \"$DISK\"",
        ],
    );
    ok.assert_code(0);
    assert!(holds(&d, 0x55));
    let names = snapshot_names(&d);
    // The old one of this recipe expired (a step the run marks irreversible); the
    // one taken by hand is not the recipe's; the new one stays for keep_for.
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"by-hand".to_string()));
    assert!(names
        .iter()
        .any(|n| n.starts_with("tend-maint-2") && n != "tend-maint-20200101-000000"));
    let delete = ok
        .events()
        .into_iter()
        .find(|e| {
            e["event"] == "step"
                && e["subject"]
                    .as_str()
                    .is_some_and(|s| s.contains("snapshot -d"))
        })
        .expect("the expired snapshot's deletion");
    assert_eq!(delete["reversible"], false, "{delete}");

    // A maintenance command that fails: the disk goes back to the snapshot taken
    // before it, which is deleted.
    let before = snapshot_names(&d);
    let failed = w.run(
        &recipe,
        &[
            "-p",
            &disk,
            "-p",
            "command=qemu-io -c 'write -P 0x11 0 64k' \"$DISK\"; exit 1",
        ],
    );
    failed.assert_code(3);
    assert!(holds(&d, 0x55), "{}", failed.stdout);
    assert_eq!(snapshot_names(&d), before);
}

/// The build itself failing (a tree too big for `size`): mke2fs's half-written file
/// and the staging name are gone, nothing is published, the target is as before.
#[test]
fn a_build_that_fails_leaves_nothing_behind() {
    let w = World::new();
    let recipe = image_world(&w);
    let big: String = (0..300_000).map(|i| format!("{i:07}\n")).collect();
    w.write("tree/var/big.log", &big);
    let before = w.snapshot();
    let r = build(&w, &recipe, &["-p", "size=1M"]);
    assert!(r.code == 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.event("step_failed")["error"]
            .as_str()
            .unwrap()
            .contains("exited with status"),
        "{}",
        r.stdout
    );
    assert_same(&before, &w.snapshot());
}

/// What a command `creates:` is in the plan after it, so the steps that use it plan
/// (image-build's publishing): the dry-run plans the rename, the run makes it.
#[test]
fn a_dry_run_plans_steps_on_what_a_command_creates() {
    let w = World::new();
    let root = w.root().display().to_string();
    let recipe = w.recipe(
        "made.rhai",
        &format!(
            "//! t\nsh(\"echo built > {root}/made\", #{{creates: \"{root}/made\", undo: \"rm -f {root}/made\"}});\nfs::rename(\"{root}/made\", \"{root}/published\");\nfs::link(\"{root}/latest\", \"published\");\n"
        ),
    );
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert!(
        std::fs::read_dir(w.root()).unwrap().next().is_none(),
        "a dry-run wrote"
    );
    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert_eq!(steps(&dry), steps(&real));
    let planned: Vec<bool> = dry
        .events()
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["changed"] == true)
        .collect();
    assert_eq!(planned, [false, true, true], "{}", dry.stdout);
    assert_eq!(
        std::fs::read_to_string(w.root().join("latest")).unwrap(),
        "built\n"
    );
}
