//! Retention, end to end: a cleanup frees space (`fs::remove(…, #{backup: false})`),
//! `[retention]` frees backups and old runs (`backups = "0"` at once on success,
//! `tend prune` for the rest, here and on a real sshd host), a failing run still rolls
//! back byte for byte, a complete rollback frees its backups, and a rollback of a run
//! whose backups are gone names the steps it can no longer undo.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{assert_same, Run, World};

const MB: u64 = 1_000_000;

/// Bytes of the regular files below `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

fn write_big(w: &World, rel: &str, bytes: usize) -> Vec<u8> {
    // Not all one byte, so that a copy is a real copy.
    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    std::fs::write(w.root().join(rel), &data).unwrap();
    data
}

fn config(w: &World, text: &str) {
    std::fs::write(w.dir.path().join("tend.toml"), text).unwrap();
}

fn backup_dir(w: &World, run_id: &str) -> PathBuf {
    w.state()
        .join("runs")
        .join(run_id)
        .join("hosts/local/backup")
}

fn run_json(w: &World, run_id: &str) -> Value {
    let text = std::fs::read(w.state().join("runs").join(run_id).join("run.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn held(w: &World, run_id: &str) -> u64 {
    let runs = w.tend(&["runs", "--json"]);
    runs.assert_code(0);
    runs.events()
        .into_iter()
        .find(|r| r["run_id"] == run_id)
        .unwrap_or_else(|| panic!("{run_id} not in {}", runs.stdout))["held_bytes"]
        .as_u64()
        .unwrap()
}

/// Make run `run_id` look `days` old (as if it had ended then).
fn age_run(w: &World, run_id: &str, days: i64) {
    let path = w.state().join("runs").join(run_id).join("run.json");
    let mut v = run_json(w, run_id);
    let then = (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339();
    v["started"] = then.clone().into();
    v["ended"] = then.into();
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// The `prune` events of a `tend prune --json`, without the dry-run flag.
fn prune_actions(r: &Run) -> Vec<Value> {
    r.events()
        .into_iter()
        .filter(|e| e["event"] == "prune")
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("dry_run");
            e
        })
        .collect()
}

/// The `incomplete` list of a rollback's `rollback` event.
fn not_undone(r: &Run) -> Vec<String> {
    r.event("rollback")["incomplete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_cleanup_with_backup_false_frees_the_space_and_the_plan_says_it_is_irreversible() {
    let w = World::new();
    write_big(&w, "cache.bin", 20 * MB as usize);
    let recipe = w.recipe(
        "cleanup.rhai",
        &format!(
            "//! Cleanup.\nfs::remove(\"{}\", #{{backup: false}});\n",
            w.path("cache.bin")
        ),
    );

    // The plan says so, for people and in JSON, and touches nothing.
    let human = w.tend(&["run", recipe.to_str().unwrap(), "--dry-run"]);
    human.assert_code(0);
    let line = human
        .stdout
        .lines()
        .find(|l| l.contains("fs::remove"))
        .unwrap_or_else(|| panic!("{}", human.stdout));
    assert!(
        line.contains("(irreversible: rollback cannot undo it)"),
        "{line}"
    );
    let plan = w.run(&recipe, &["--dry-run"]);
    plan.assert_code(0);
    let step = plan.event("step");
    assert_eq!(step["changed"], true, "{step}");
    assert_eq!(step["reversible"], false, "{step}");
    assert!(w.root().join("cache.bin").exists());

    // The real run frees the 20 MB: nothing of it is kept in the state dir.
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    assert_eq!(r.event("step")["reversible"], false);
    assert!(!w.root().join("cache.bin").exists());
    let kept = dir_bytes(&w.state());
    assert!(kept < MB, "the state dir holds {kept} bytes");
    let run_id = r.run_id();
    assert!(held(&w, &run_id) < MB);

    // The journal says it cannot be undone; a rollback reports it as such.
    let rb = w.tend(&["rollback", &run_id, "--json"]);
    rb.assert_code(4);
    let missing = not_undone(&rb);
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with("step 1 (fs::remove): cannot undo")
            && missing[0].contains("backup: false"),
        "{missing:?}"
    );
    assert!(!w.root().join("cache.bin").exists());

    // The same removal with a backup holds the 20 MB until retention frees it.
    write_big(&w, "cache.bin", 20 * MB as usize);
    let kept_recipe = w.recipe(
        "keep.rhai",
        &format!("//! Cleanup.\nfs::remove(\"{}\");\n", w.path("cache.bin")),
    );
    let r = w.run(&kept_recipe, &[]);
    r.assert_code(0);
    assert!(held(&w, &r.run_id()) >= 20 * MB);
    let table = w.tend(&["runs"]);
    assert!(table.stdout.contains("HELD"), "{}", table.stdout);
    assert!(table.stdout.contains("20.0 MB"), "{}", table.stdout);
}

#[test]
fn backups_zero_a_successful_run_leaves_no_backups() {
    let w = World::new();
    config(&w, "[retention]\nbackups = \"0\"\n");
    w.write("app.conf", "old\n");
    write_big(&w, "cache.bin", MB as usize);
    let recipe = w.recipe(
        "r.rhai",
        &format!(
            "//! R.\nfs::file(\"{}\", \"new\\n\");\nfs::remove(\"{}\");\n",
            w.path("app.conf"),
            w.path("cache.bin")
        ),
    );
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    let run_id = r.run_id();
    assert!(!backup_dir(&w, &run_id).exists());
    assert_eq!(
        run_json(&w, &run_id)["backups_freed"]["local"]["by"],
        "success"
    );
    assert!(dir_bytes(&w.state()) < MB / 2);
    // The journal stays, and a rollback says what it can no longer restore.
    let rb = w.tend(&["rollback", &run_id, "--dry-run", "--json"]);
    rb.assert_code(4);
    let missing = not_undone(&rb);
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(
        missing
            .iter()
            .all(|m| m.contains("can no longer be restored")),
        "{missing:?}"
    );
}

#[test]
fn backups_zero_a_failing_run_still_rolls_back_byte_exact() {
    let w = World::new();
    config(&w, "[retention]\nbackups = \"0\"\n");
    w.write("app.conf", "old\n");
    write_big(&w, "cache.bin", 2 * MB as usize);
    let recipe = w.recipe(
        "r.rhai",
        &format!(
            "//! R.\nfs::file(\"{}\", \"new\\n\");\nfs::remove(\"{}\");\nfs::file(\"{}\", \"x\");\nthrow \"boom\";\n",
            w.path("app.conf"),
            w.path("cache.bin"),
            w.path("created.txt")
        ),
    );
    let before = w.snapshot();
    let r = w.run(&recipe, &[]);
    r.assert_code(3);
    assert_same(&before, &w.snapshot());
    // Complete: the backups it used are freed now.
    let run_id = r.run_id();
    assert!(!backup_dir(&w, &run_id).exists());
    assert_eq!(
        run_json(&w, &run_id)["backups_freed"]["local"]["by"],
        "rollback"
    );
}

#[test]
fn prune_dry_run_lists_exactly_what_prune_then_removes() {
    let w = World::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        write_big(&w, &format!("f{i}.bin"), (i + 1) * 100_000);
        let recipe = w.recipe(
            &format!("r{i}.rhai"),
            &format!(
                "//! R.\nfs::remove(\"{}\");\n",
                w.path(&format!("f{i}.bin"))
            ),
        );
        let r = w.run(&recipe, &[]);
        r.assert_code(0);
        ids.push(r.run_id());
    }
    // One past `runs` (its record goes too), one past `backups`, one recent.
    age_run(&w, &ids[0], 100);
    age_run(&w, &ids[1], 10);

    let plan = w.tend(&["prune", "--dry-run", "--json"]);
    plan.assert_code(0);
    let planned = prune_actions(&plan);
    let kinds: Vec<(String, String)> = planned
        .iter()
        .map(|a| {
            (
                a["run_id"].as_str().unwrap().to_string(),
                a["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ids[0].clone(), "backups".to_string()),
            (ids[0].clone(), "run".to_string()),
            (ids[1].clone(), "backups".to_string()),
        ]
    );
    assert_eq!(planned[0]["bytes"], 100_000);
    assert_eq!(planned[2]["bytes"], 200_000);
    // Nothing changed by the dry-run.
    for id in &ids {
        assert!(backup_dir(&w, id).exists(), "{id}");
    }
    let audit_before = w.tend(&["audit", "show", "--json"]).events().len();

    let real = w.tend(&["prune", "--json"]);
    real.assert_code(0);
    assert_eq!(prune_actions(&real), planned);
    assert!(!w.state().join("runs").join(&ids[0]).exists());
    assert!(!backup_dir(&w, &ids[1]).exists());
    assert!(w
        .state()
        .join("runs")
        .join(&ids[1])
        .join("run.json")
        .exists());
    assert!(backup_dir(&w, &ids[2]).exists());
    assert_eq!(
        real.event("prune_end")["bytes"].as_u64().unwrap(),
        planned
            .iter()
            .map(|a| a["bytes"].as_u64().unwrap())
            .sum::<u64>()
    );

    // Each removal is in the audit log, whose chain holds.
    let audit = w.tend(&["audit", "show", "--json"]).events();
    let pruned: Vec<&Value> = audit[audit_before..]
        .iter()
        .filter(|e| e["event"] == "prune")
        .collect();
    assert_eq!(pruned.len(), 3, "{pruned:?}");
    w.tend(&["audit", "verify"]).assert_code(0);

    // A second prune has nothing left to do.
    let again = w.tend(&["prune", "--json"]);
    again.assert_code(0);
    assert!(prune_actions(&again).is_empty(), "{}", again.stdout);
}

#[test]
fn rollback_after_prune_names_the_steps_that_can_no_longer_be_undone() {
    let w = World::new();
    w.write("app.conf", "old\n");
    w.write("cache.txt", "cached\n");
    let recipe = w.recipe(
        "r.rhai",
        &format!(
            "//! R.\nfs::file(\"{}\", \"new\\n\");\nfs::remove(\"{}\");\nfs::file(\"{}\", \"x\");\n",
            w.path("app.conf"),
            w.path("cache.txt"),
            w.path("created.txt")
        ),
    );
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    let run_id = r.run_id();
    age_run(&w, &run_id, 8);
    w.tend(&["prune"]).assert_code(0);
    assert!(!backup_dir(&w, &run_id).exists());

    // The plan says it first, and touches nothing.
    let after_run = w.snapshot();
    let plan = w.tend(&["rollback", &run_id, "--dry-run", "--json"]);
    plan.assert_code(4);
    assert_same(&after_run, &w.snapshot());
    let planned = not_undone(&plan);
    assert_eq!(planned.len(), 2, "{planned:?}");
    assert!(
        planned[0].starts_with(&format!(
            "step 2 (fs::remove): {} can no longer be restored: its backup",
            w.path("cache.txt")
        )),
        "{planned:?}"
    );
    assert!(
        planned[1].starts_with(&format!(
            "step 1 (fs::file): {} can no longer be restored: its backup",
            w.path("app.conf")
        )),
        "{planned:?}"
    );
    assert!(planned.iter().all(|m| m.contains("freed by tend prune")));
    let human = w.tend(&["rollback", &run_id, "--dry-run"]);
    assert!(
        human.stdout.contains("can no longer be restored"),
        "{}",
        human.stdout
    );

    // The rollback says the same, and reverts what needs no backup.
    let rb = w.tend(&["rollback", &run_id, "--json"]);
    rb.assert_code(4);
    assert_eq!(not_undone(&rb), planned);
    assert!(!w.root().join("created.txt").exists());
    assert_eq!(
        std::fs::read_to_string(w.root().join("app.conf")).unwrap(),
        "new\n"
    );
}

#[test]
fn a_running_run_is_not_pruned() {
    let w = World::new();
    config(&w, "[retention]\nbackups = \"0\"\nruns = \"0\"\n");
    w.write("cache.txt", "cached\n");
    let go = w.dir.path().join("go");
    let recipe = w.recipe(
        "r.rhai",
        &format!(
            "//! R.\nfs::remove(\"{}\");\nsh(\"i=0; while [ ! -f {} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\", #{{read_only: true}});\n",
            w.path("cache.txt"),
            go.display()
        ),
    );
    let child = w
        .command()
        .args(["run", recipe.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the removal is made (its backup exists): the run is now running.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        let found = std::fs::read_dir(w.state().join("runs"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|id| dir_bytes(&backup_dir(&w, id)) > 0);
        if let Some(id) = found {
            break id;
        }
        assert!(Instant::now() < deadline, "the run never made its backup");
        std::thread::sleep(Duration::from_millis(50));
    };
    let p = w.tend(&["prune", "--json"]);
    std::fs::write(&go, "").unwrap();
    let out = child.wait_with_output().unwrap();
    let r = Run::from(out);
    p.assert_code(0);
    assert!(prune_actions(&p).is_empty(), "{}", p.stdout);
    let skipped = p.event("prune_skipped");
    assert_eq!(skipped["run_id"], run_id.as_str());
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .starts_with("still running"),
        "{skipped}"
    );
    // It ran to its end with its backups, then freed them (backups = "0").
    r.assert_code(0);
    assert!(w.state().join("runs").join(&run_id).exists());
    assert!(!backup_dir(&w, &run_id).exists());
    // Finished now, and past `runs = "0"`: pruned.
    let p = w.tend(&["prune", "--json"]);
    p.assert_code(0);
    assert!(!w.state().join("runs").join(&run_id).exists());
}

#[test]
fn retention_settings_are_checked() {
    let w = World::new();
    config(&w, "[retention]\nbakups = \"7d\"\n");
    let r = w.tend(&["prune"]);
    r.assert_code(64);
    assert!(
        r.stderr
            .contains("tend.toml:2: unknown key `bakups` in [retention]")
            && r.stderr.contains("did you mean `backups`?"),
        "{}",
        r.stderr
    );
    config(&w, "[retention]\nruns = \"soon\"\n");
    let r = w.tend(&["prune"]);
    r.assert_code(64);
    assert!(r.stderr.contains("tend.toml:2:"), "{}", r.stderr);
}

#[test]
fn log_rotation_frees_the_expired_copies() {
    let w = World::new();
    w.write("app.log", "current\n");
    write_big(&w, "app.log.1", MB as usize);
    write_big(&w, "app.log.2", 3 * MB as usize);
    let recipe = w.log_rotate_recipe();
    let files = format!("files={}", w.path("*.log"));
    let args = [files.as_str(), "min_size=1B", "keep=2", "compress=false"];
    let mut flags: Vec<&str> = Vec::new();
    for a in &args {
        flags.extend(["-p", a]);
    }
    let mut plan_flags = flags.clone();
    plan_flags.push("--dry-run");
    let plan = w.run(&recipe, &plan_flags);
    plan.assert_code(0);
    let expiry = plan
        .events()
        .into_iter()
        .find(|e| e["event"] == "step" && e["op"] == "fs::remove")
        .unwrap_or_else(|| panic!("{}", plan.stdout));
    assert_eq!(expiry["subject"], w.path("app.log.2"));
    assert_eq!(expiry["reversible"], false);

    let r = w.run(&recipe, &flags);
    r.assert_code(0);
    assert!(!w.root().join("app.log.3").exists());
    assert_eq!(
        std::fs::metadata(w.root().join("app.log.2")).unwrap().len(),
        MB
    );
    // The 3 MB copy is gone, not kept as a backup.
    assert!(held(&w, &r.run_id()) < MB / 2);
}

/// Over a real sshd host: the backups live on the host, in tend's directory there; a
/// complete rollback (by hand, or of a failing run) leaves none of them, and `tend
/// prune` frees a finished run's.
#[test]
fn over_ssh_complete_rollback_and_prune_leave_no_backup_on_the_host() {
    let h = sshd::Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    let remote_runs = w.dir.path().join("remote-state/runs");
    w.write("app.conf", "old\n");
    write_big(&w, "cache.bin", MB as usize);
    let recipe = w.recipe(
        "r.rhai",
        &format!(
            "//! R.\nfs::file(\"{}\", \"new\\n\");\nfs::remove(\"{}\");\n",
            w.path("app.conf"),
            w.path("cache.bin")
        ),
    );
    let before = w.snapshot();
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    let run_id = r.run_id();
    let host_backups = remote_runs.join(&run_id).join("h1/backup");
    assert!(dir_bytes(&host_backups) > MB, "backups on the host");
    assert!(held(&w, &run_id) > MB);

    // A complete rollback by hand: restored, and nothing left on the host.
    let rb = w.tend(&["rollback", &run_id, "--json"]);
    rb.assert_code(0);
    assert_same(&before, &w.snapshot());
    assert!(!host_backups.exists());
    assert!(!remote_runs.join(&run_id).exists());
    assert_eq!(
        run_json(&w, &run_id)["backups_freed"]["h1"]["by"],
        "rollback"
    );
    assert!(held(&w, &run_id) < MB / 2);

    // A failing run rolls back byte for byte, then frees its backups there too.
    let failing = w.recipe(
        "fail.rhai",
        &format!(
            "//! R.\nfs::file(\"{}\", \"new\\n\");\nfs::remove(\"{}\");\nthrow \"boom\";\n",
            w.path("app.conf"),
            w.path("cache.bin")
        ),
    );
    let r = w.run(&failing, &[]);
    r.assert_code(3);
    assert_same(&before, &w.snapshot());
    assert!(!remote_runs.join(r.run_id()).exists());

    // A finished run's backups on the host go with `tend prune`.
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    let run_id = r.run_id();
    let host_backups = remote_runs.join(&run_id).join("h1/backup");
    assert!(host_backups.exists());
    let toml = w.dir.path().join("tend.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("\n[retention]\nbackups = \"0\"\n");
    std::fs::write(&toml, text).unwrap();
    let plan = w.tend(&["prune", "--dry-run", "--json"]);
    plan.assert_code(0);
    let planned = prune_actions(&plan);
    assert_eq!(planned.len(), 1, "{}", plan.stdout);
    assert_eq!(planned[0]["host"], "h1");
    assert_eq!(planned[0]["path"], host_backups.display().to_string());
    assert!(host_backups.exists());
    let real = w.tend(&["prune", "--json"]);
    real.assert_code(0);
    assert_eq!(prune_actions(&real), planned);
    assert!(!host_backups.exists());
    assert!(held(&w, &run_id) < MB / 2);
}

/// Fail closed: a removal the audit log cannot record is not made. And a folder in
/// `runs/` that tend did not name is never deleted.
#[test]
fn prune_removes_nothing_the_audit_log_cannot_record() {
    let w = World::new();
    config(&w, "[retention]\nbackups = \"0\"\nruns = \"0\"\n");
    w.write("cache.txt", "cached\n");
    let recipe = w.recipe(
        "r.rhai",
        &format!("//! R.\nfs::remove(\"{}\");\n", w.path("cache.txt")),
    );
    // Kept by a run that says nothing of retention.
    std::fs::remove_file(w.dir.path().join("tend.toml")).unwrap();
    let r = w.run(&recipe, &[]);
    r.assert_code(0);
    let run_id = r.run_id();
    assert!(backup_dir(&w, &run_id).exists());
    config(&w, "[retention]\nbackups = \"0\"\nruns = \"0\"\n");
    let stray = w.state().join("runs/not-a-run");
    std::fs::create_dir_all(&stray).unwrap();
    std::fs::write(stray.join("run.json"), "{}").unwrap();

    // Lines cut off the end of the log: it cannot be appended to.
    let audit = w.state().join("audit.jsonl");
    let text = std::fs::read_to_string(&audit).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    std::fs::write(&audit, lines.join("\n") + "\n").unwrap();
    let p = w.tend(&["prune"]);
    assert_ne!(p.code, 0, "{}{}", p.stdout, p.stderr);
    assert!(p.stderr.contains("audit"), "{}", p.stderr);
    assert!(backup_dir(&w, &run_id).exists());
    assert!(stray.join("run.json").exists());

    // Mended, it prunes; the stray folder stays.
    std::fs::write(&audit, text).unwrap();
    let p = w.tend(&["prune", "--json"]);
    p.assert_code(0);
    assert!(!w.state().join("runs").join(&run_id).exists());
    assert!(stray.join("run.json").exists());
    assert!(p
        .events()
        .iter()
        .any(|e| e["event"] == "prune_skipped" && e["run_id"] == "not-a-run"));
}
