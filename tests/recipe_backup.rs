//! The backup recipes (recipes/backup.rhai, recipes/backup-postgres.rhai, steps in
//! stdlib/restic.rhai) with the real restic: the plan is what the run does, a second
//! backup adds a snapshot and nothing else, a failed restore test and a full
//! repository disk fail the run and leave the sources and the earlier snapshots as
//! they were, the retention plan is `restic forget --dry-run`'s list; locally, over a
//! real sshd host and with an `sftp:` repository; pg_dump into the repository with a
//! real PostgreSQL. The restore recipe: tests/recipe_restore.rs.

#[path = "support/restic.rs"]
mod restic_support;
#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use restic_support::*;
use serde_json::Value;
use support::{assert_same, Run, World};

// ---- backup -----------------------------------------------------------------

/// (1) The plan is the run: the dry-run creates nothing (no repository), plans init
/// and backup as unknown and irreversible; on an existing repository `restic backup
/// --dry-run`'s counts are the real backup's, and the plan's retention list and
/// forget command are the run's. (2) A second backup adds one snapshot and changes
/// nothing else.
fn backup_cycle(bk: &Bk) {
    let before = bk.w.snapshot();
    let keep = [
        ("keep_last", "1"),
        ("keep_daily", "0"),
        ("keep_weekly", "0"),
        ("keep_monthly", "0"),
    ];

    let dry = bk.backup(&keep, &["--dry-run"]);
    dry.assert_code(0);
    assert!(
        !Path::new(&bk.repo).exists(),
        "a dry-run created the repository"
    );
    // Read-only questions (hostname, cat config…) are steps that change nothing.
    let planned: Vec<_> = steps(&dry).into_iter().filter(|s| s.1 || s.2).collect();
    assert!(planned.iter().all(|s| s.2 && !s.1), "{planned:?}");
    assert_eq!(planned.len(), 2, "init and backup: {planned:?}");
    assert!(
        planned[0].0.ends_with(" init") && !planned[0].3,
        "{planned:?}"
    );
    assert!(
        planned[1].0.contains(" backup --json ") && !planned[1].3,
        "{planned:?}"
    );
    assert_eq!(
        retention(&dry),
        BTreeMap::from([("new".into(), "keep (last snapshot)".into())])
    );

    let first = bk.backup(&keep, &[]);
    first.assert_code(0);
    let id1 = new_snapshot(&first);
    assert_eq!(
        first.changed_count(),
        2,
        "init and backup: {}",
        first.stdout
    );
    assert_eq!(
        logs(&first, "restore test of snapshot").len(),
        1,
        "{}",
        first.stdout
    );
    assert!(logs(&first, "restore test")[0].ends_with("4 files identical to their sources"));
    assert_same(&before, &bk.w.snapshot());
    let snaps = snapshots(&bk.repo);
    assert_eq!(snaps.len(), 1);
    assert!(snaps[0]["id"].as_str().unwrap().starts_with(&id1));
    assert_eq!(snaps[0]["tags"], serde_json::json!(["tend"]));
    // What the snapshot holds: every source file but the excluded one.
    let ls = restic_ok(&bk.repo, &["ls", "--no-lock", "latest", "--json"]);
    let files: BTreeSet<String> = ls
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|n| n["type"] == "file")
        .map(|n| n["path"].as_str().unwrap().to_string())
        .collect();
    let src = bk.src();
    let want: BTreeSet<String> = [
        "data/deep/blob.bin",
        "data/run.sh",
        "etc/app.conf",
        "etc/secret.key",
    ]
    .iter()
    .map(|f| format!("{src}/{f}"))
    .collect();
    assert_eq!(files, want);

    // A change, then the plan of the second backup against what it does.
    bk.w.write_mode("src/etc/app.conf", "listen = 9090\n", 0o644);
    bk.w.write_mode("src/etc/new.conf", "x\n", 0o644);
    let before = bk.w.snapshot();
    let dry = bk.backup(&keep, &["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(
        snapshots(&bk.repo).len(),
        1,
        "a dry-run changed the repository"
    );
    let preview = logs(&dry, "backup of ");
    assert!(
        preview[0].ends_with("(restic backup --dry-run)"),
        "{preview:?}"
    );
    let second = bk.backup(&keep, &[]);
    second.assert_code(0);
    let id2 = new_snapshot(&second);
    assert_eq!(counts(&preview[0]), counts(&logs(&second, "snapshot ")[0]));
    if bk.ssh.is_none() {
        // (Over SSH the chown that hands the files over changes every ctime, which
        // restic counts as changed: in the plan and the run alike.)
        assert_eq!(counts(&preview[0]), "1 new, 1 changed, 3 unmodified");
    }
    // The same retention list, the new snapshot standing for "new".
    let plan: BTreeMap<String, String> = retention(&dry)
        .into_iter()
        .map(|(k, v)| (if k == "new" { id2.clone() } else { k }, v))
        .collect();
    assert_eq!(plan, retention(&second));
    assert_eq!(plan.get(&id1).map(String::as_str), Some("forget"));
    // The forget command: one and the same, irreversible, planned before it runs.
    let forget = |r: &Run| -> Vec<(String, bool, bool, bool)> {
        steps(r)
            .into_iter()
            .filter(|s| s.0.contains(" forget ") && (s.1 || s.2))
            .collect()
    };
    let (pf, rf) = (forget(&dry), forget(&second));
    assert_eq!(pf.len(), 1, "{}", dry.stdout);
    assert_eq!(rf.len(), 1, "{}", second.stdout);
    assert_eq!(pf[0].0, rf[0].0);
    assert!(!pf[0].3 && !rf[0].3, "forget must be marked irreversible");
    // (2) Sources untouched, one snapshot more, the first one forgotten by keep_last=1;
    // the backup and the forget are the run's only changes.
    assert_same(&before, &bk.w.snapshot());
    let snaps = snapshots(&bk.repo);
    assert_eq!(snaps.len(), 1);
    assert!(snaps[0]["id"].as_str().unwrap().starts_with(&id2));
    assert_eq!(second.changed_count(), 2, "{}", second.stdout);

    // With retention keeping everything: a run only adds its snapshot.
    let third = bk.backup(&[("keep_last", "10")], &[]);
    third.assert_code(0);
    assert_eq!(third.changed_count(), 1, "{}", third.stdout);
    assert_eq!(snapshots(&bk.repo).len(), 2);
    assert_same(&before, &bk.w.snapshot());
    assert!(
        !Path::new(&bk.scratch).read_dir().unwrap().any(|_| true),
        "scratch left behind"
    );
    // The password never shows: not in output, run records or the audit log.
    assert_secret_nowhere(bk, &[&first, &second, &third]);
}

#[test]
fn backup_plans_what_it_does_and_a_second_run_only_adds_a_snapshot() {
    backup_cycle(&Bk::local());
}

#[test]
fn backup_plans_what_it_does_and_a_second_run_only_adds_a_snapshot_over_ssh() {
    backup_cycle(&Bk::over_ssh());
}

/// An `sftp:` repository, reached by restic through the real sshd harness (as the
/// test user, with its own key and known_hosts).
#[test]
fn backup_to_an_sftp_repository_through_a_real_sshd() {
    let h = sshd::Sshd::start_tendtest();
    let mut bk = Bk::local();
    bk.repo = format!("sftp:{}@127.0.0.1:{}/repo", h.user, h.root.display());
    let cmd = format!(
        "ssh -p {} -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={} {}@127.0.0.1 -s sftp",
        h.port,
        h.client_key.display(),
        h.known_hosts.display(),
        h.user
    );
    let p = [("sftp_command", cmd.as_str()), ("keep_last", "1")];
    let dry = bk.backup(&p, &["--dry-run"]);
    dry.assert_code(0);
    assert!(!h.root.join("repo").exists());
    bk.backup(&p, &[]).assert_code(0);
    assert!(
        h.root.join("repo/config").exists(),
        "no repository over sftp"
    );
    let r = bk.backup(&p, &[]);
    r.assert_code(0);
    assert_eq!(logs(&r, "restore test").len(), 1, "{}", r.stdout);
    let snaps = snapshots(&h.root.join("repo").display().to_string());
    assert_eq!(snaps.len(), 1, "keep_last=1 forgot the first");
    assert!(snaps[0]["id"]
        .as_str()
        .unwrap()
        .starts_with(&new_snapshot(&r)));
}

/// (3) The riskiest step is the verification of what the backup wrote: with the data
/// the new snapshot shares with the first one damaged in the repository, the backup
/// succeeds (it does not reread unchanged data) and `restic check` without
/// read-data passes, but the restore test fails: the run fails, the new snapshot is
/// forgotten again, nothing else is forgotten (retention would have forgotten the
/// first one) and the sources are as they were.
#[test]
fn a_failed_restore_test_fails_the_run_and_forgets_only_the_new_snapshot() {
    let bk = Bk::local();
    let keep = [("keep_last", "1")];
    bk.backup(&keep, &[]).assert_code(0);
    let first = ids(&snapshots(&bk.repo));
    corrupt_data_packs(&bk.repo);
    let before = bk.w.snapshot();

    let r = bk.backup(&keep, &[]);
    assert_eq!(
        r.code, 4,
        "barriers (backup, forget of the new snapshot) are named: {}\n{}",
        r.stdout, r.stderr
    );
    let failed: Vec<Value> = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "step_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{}", r.stdout);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("restore test"),
        "{failed:?}"
    );
    assert_eq!(logs(&r, "snapshot ").len(), 2, "{}", r.stdout); // made, then forgotten
    assert!(
        logs(&r, "retention: ").is_empty(),
        "retention ran after a failed verification"
    );
    assert_eq!(ids(&snapshots(&bk.repo)), first);
    assert_same(&before, &bk.w.snapshot());
    assert_eq!(r.event("run_end")["outcome"], "rollback_incomplete");
    assert!(
        !Path::new(&bk.scratch).read_dir().unwrap().any(|_| true),
        "scratch left behind"
    );
}

/// The repository on a full file system: the run fails with restic's "no space left
/// on device", the sources are unchanged and the earlier snapshot still checks clean.
#[test]
fn a_full_repository_disk_fails_the_run_and_keeps_earlier_snapshots() {
    let mut bk = Bk::local();
    let disk = bk.w.dir.path().join("backups/small");
    let _fs = Tmpfs::mount(&disk, "3m");
    bk.repo = disk.join("repo").display().to_string();
    let keep = [("keep_last", "1")];
    bk.backup(&keep, &[]).assert_code(0);
    let first = ids(&snapshots(&bk.repo));
    // 6 MiB of random bytes: neither compression nor dedup makes it fit in 3 MiB.
    let mut big = vec![0u8; 6 << 20];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut big).unwrap();
    std::fs::write(bk.w.root().join("src/data/big.bin"), &big).unwrap();
    let before = bk.w.snapshot();

    let r = bk.backup(&keep, &[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    let failed: Vec<Value> = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "step_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{}", r.stdout);
    let err = failed[0]["error"].as_str().unwrap();
    assert!(
        err.contains(" backup --json ") && err.contains("no space left on device"),
        "{err}"
    );
    assert!(logs(&r, "retention: ").is_empty());
    assert_same(&before, &bk.w.snapshot());
    assert_eq!(ids(&snapshots(&bk.repo)), first);
    drop(std::fs::remove_file(bk.w.root().join("src/data/big.bin")));
    // restic unlocks on its way out; check the earlier snapshot's data in full.
    restic_ok(&bk.repo, &["unlock"]);
    restic_ok(&bk.repo, &["check", "--read-data"]);
}

/// The retention plan is `restic forget --dry-run --json`'s own list: snapshots
/// spread over hours, days, weeks, months and years (and time zones), the dry-run's
/// forecast compared with what restic says once the new snapshot exists.
#[test]
fn the_retention_plan_is_restic_forget_dry_run_list() {
    let bk = Bk::local();
    let src = bk.src();
    let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout).unwrap();
    let host = host.trim();
    restic_ok(&bk.repo, &["init"]);
    let times = [
        ("UTC", "2019-06-30 12:00:00"),
        ("UTC", "2020-12-31 23:30:00"),
        ("America/New_York", "2020-12-31 20:30:00"),
        ("UTC", "2021-01-01 00:30:00"),
        ("UTC", "2024-02-29 10:00:00"),
        ("UTC", "2025-12-29 08:00:00"),
        ("UTC", "2026-01-04 09:00:00"),
        ("Asia/Tokyo", "2026-01-05 01:00:00"),
        ("UTC", "2026-11-30 10:00:00"),
        ("UTC", "2026-12-01 10:00:00"),
        ("UTC", "2026-12-01 10:20:00"),
        ("UTC", "2026-12-01 11:05:00"),
    ];
    for (tz, t) in times {
        let out = Command::new("restic")
            .args([
                "-r",
                &bk.repo,
                "backup",
                "--json",
                "--tag",
                "tend",
                "--exclude",
                "*.tmp",
            ])
            .args(["--host", host, "--time", t, &src])
            .env("RESTIC_PASSWORD", PW)
            .env("TZ", tz)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Another host's and another tag's snapshots are not this backup's to forget.
    restic_ok(
        &bk.repo,
        &[
            "backup",
            "--host",
            "elsewhere",
            "--tag",
            "tend",
            "--time",
            "2020-01-01 00:00:00",
            &src,
        ],
    );
    restic_ok(
        &bk.repo,
        &[
            "backup",
            "--host",
            host,
            "--tag",
            "other",
            "--time",
            "2020-01-01 00:00:00",
            &src,
        ],
    );
    let policy = [
        ("keep_last", "2"),
        ("keep_hourly", "2"),
        ("keep_daily", "3"),
        ("keep_weekly", "3"),
        ("keep_monthly", "3"),
        ("keep_yearly", "3"),
    ];
    let dry = bk.backup(&policy, &["--dry-run"]);
    dry.assert_code(0);
    let plan = retention(&dry);
    assert_eq!(plan.len(), times.len() + 1, "{}", dry.stdout);

    // Now the new snapshot, as the recipe makes it, and restic's own dry-run list.
    let out = restic_ok(
        &bk.repo,
        &[
            "backup",
            "--json",
            "--tag",
            "tend",
            "--exclude",
            "*.tmp",
            "--host",
            host,
            &src,
        ],
    );
    let new: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let new_id = new["snapshot_id"].as_str().unwrap().to_string();
    let mut args = vec![
        "forget",
        "--dry-run",
        "--json",
        "--no-lock",
        "--host",
        host,
        "--tag",
        "tend",
        "--path",
        &src,
    ];
    let flags: Vec<String> = policy
        .iter()
        .map(|(k, v)| format!("--{}={v}", k.replace('_', "-")))
        .collect();
    args.extend(flags.iter().map(String::as_str));
    let theirs: Value = serde_json::from_str(&restic_ok(&bk.repo, &args)).unwrap();
    let mut restic_list = BTreeMap::new();
    for g in theirs.as_array().unwrap() {
        let mut why = BTreeMap::new();
        for r in g["reasons"].as_array().unwrap() {
            let rules: Vec<&str> = r["matches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_str().unwrap())
                .collect();
            why.insert(
                r["snapshot"]["time"].as_str().unwrap().to_string(),
                rules.join(", "),
            );
        }
        for s in g["keep"].as_array().unwrap() {
            let rules = &why[s["time"].as_str().unwrap()];
            restic_list.insert(
                s["short_id"].as_str().unwrap().to_string(),
                format!("keep ({rules})"),
            );
        }
        for s in g["remove"].as_array().into_iter().flatten() {
            restic_list.insert(
                s["short_id"].as_str().unwrap().to_string(),
                "forget".to_string(),
            );
        }
    }
    let plan: BTreeMap<String, String> = plan
        .into_iter()
        .map(|(k, v)| (if k == "new" { new_id.clone() } else { k }, v))
        .collect();
    assert_eq!(plan, restic_list);
    assert!(plan.values().any(|v| v == "forget") && plan.values().any(|v| v.contains("yearly")));
}

/// (5) `tend show` is the manual: every parameter of both recipes has its doc, the
/// header names the tools and the irreversible steps are listed.
#[test]
fn tend_show_documents_every_parameter() {
    let w = World::new();
    for name in ["backup", "restore", "backup-postgres"] {
        let r = w.tend(&["show", recipe(name).to_str().unwrap(), "--json"]);
        r.assert_code(0);
        let v: Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
        let params = v["params"].as_array().unwrap();
        assert!(params.len() >= 8, "{name}: {params:?}");
        for p in params {
            let doc = p["doc"].as_str().unwrap_or("");
            assert!(doc.len() > 15, "{name}: parameter {} has no doc", p["name"]);
        }
        assert!(v["description"].as_str().unwrap().contains("restic"));
        assert!(v["scope"].is_array(), "{name}: no scope: {v}");
        let irreversible = v["irreversible_steps"].as_array().unwrap();
        assert!(
            irreversible
                .iter()
                .any(|s| s.as_str().unwrap().contains("backup_command")),
            "{irreversible:?}"
        );
        assert!(
            !irreversible
                .iter()
                .any(|s| s.as_str().unwrap().contains("changed_when: |r| false")),
            "checks are no barrier: {irreversible:?}"
        );
    }
}

/// pg_dump streamed into the repository: the dump restores into a scratch database
/// and the query's answer is the live database's; the scratch database is gone
/// again; a second run adds one snapshot; a dump that fails (a database that is not
/// there) fails the run and leaves no snapshot. Neither password leaks.
#[test]
fn postgres_dump_streamed_into_the_repository_and_restore_tested() {
    let pg = Pg::start();
    pg.sql("postgres", "create database shop");
    pg.sql("shop", "create table orders (id int primary key, item text); insert into orders select g, 'item ' || g from generate_series(1, 500) g; create table customers (id int)");
    let bk = Bk::local();
    let port = pg.port.to_string();
    let pgpw = format!("env:{PW_VAR}_PG");
    let run = |extra: &[(&str, &str)], flags: &[&str]| -> Run {
        let mut c = bk.w.command();
        c.arg("run").arg(recipe("backup-postgres")).arg("--json");
        let mut params = vec![
            ("repo", bk.repo.as_str()),
            ("password", "env:TEND_T_RESTIC_PW"),
            ("pg_password", pgpw.as_str()),
            ("database", "shop"),
            ("pg_host", "127.0.0.1"),
            ("pg_port", port.as_str()),
            ("keep_last", "1"),
            (
                "verify_query",
                "select count(*) || ' ' || sum(id) from orders",
            ),
        ];
        params.extend_from_slice(extra);
        for (k, v) in params {
            c.arg("-p").arg(format!("{k}={v}"));
        }
        c.args(flags)
            .env(PW_VAR, PW)
            .env(format!("{PW_VAR}_PG"), PG_PW);
        Run::from(c.output().unwrap())
    };

    let dry = run(&[], &["--dry-run"]);
    dry.assert_code(0);
    assert!(!Path::new(&bk.repo).exists());
    assert_eq!(logs(&dry, "database shop: ").len(), 1, "{}", dry.stdout);
    assert!(logs(&dry, "database shop: ")[0].ends_with(" = 500 125250"));

    let first = run(&[], &[]);
    first.assert_code(0);
    let test = logs(&first, "restore test of snapshot");
    assert_eq!(test.len(), 1, "{}", first.stdout);
    assert!(test[0].contains("= 500 125250, as on shop"), "{test:?}");
    let snaps = snapshots(&bk.repo);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/shop.dump"]));
    assert_eq!(
        pg.sql(
            "postgres",
            "select count(*) from pg_database where datname = 'tend_restore_test'"
        ),
        "0"
    );
    // The dump in the repository is a real pg_dump -Fc archive.
    let dump = restic(&bk.repo, &["dump", "--no-lock", "latest", "/shop.dump"]);
    assert!(
        dump.stdout.starts_with(b"PGDMP"),
        "not a custom-format dump"
    );

    pg.sql("shop", "insert into orders values (501, 'late')");
    let second = run(&[("keep_last", "5")], &[]);
    second.assert_code(0);
    assert!(logs(&second, "restore test")[0].contains("= 501 125751"));
    assert_eq!(snapshots(&bk.repo).len(), 2);
    assert_eq!(second.changed_count(), 1, "{}", second.stdout);

    // pg_dump fails midway (a user who may not read one table): the snapshot restic
    // made of the partial dump is forgotten again, the run fails.
    pg.sql(
        "postgres",
        &format!("create role tendbk login password '{PG_PW}'"),
    );
    pg.sql("shop", "grant select on orders to tendbk");
    let before = ids(&snapshots(&bk.repo));
    let bad = run(
        &[
            ("pg_user", "tendbk"),
            ("verify_query", "select count(*) from orders"),
        ],
        &[],
    );
    assert_ne!(bad.code, 0, "{}", bad.stdout);
    let failed = bad.event("step_failed");
    assert!(
        failed["error"].as_str().unwrap().contains("pg_dump failed"),
        "{failed}"
    );
    assert_eq!(ids(&snapshots(&bk.repo)), before);

    for r in [&dry, &first, &second, &bad] {
        assert!(!r.stdout.contains(PG_PW) && !r.stderr.contains(PG_PW));
    }
    for f in walkdir(&bk.w.state()) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
        assert!(
            !text.contains(PG_PW) && !text.contains(PW),
            "a password is in {}",
            f.display()
        );
    }
}
