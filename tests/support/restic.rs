//! Harness of tests/recipe_backup.rs: the real restic with a test password, a
//! world with sources, repository and scratch directory reached locally or over a
//! real sshd (`Bk`), readers of the recipes' `--json` lines, a tmpfs and a real
//! PostgreSQL started for one test (tests/support/postgres.rs). Include with
//! `#[path = "support/restic.rs"] mod restic_support;` beside `mod support; mod sshd;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::sshd;
use crate::support::{Run, World};

pub const PW: &str = "correct horse battery staple";
pub const PW_VAR: &str = "TEND_T_RESTIC_PW";

pub fn recipe(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("recipes/{name}.rhai"))
}

/// The real restic on this machine, with the test password.
pub fn restic(repo: &str, args: &[&str]) -> Output {
    Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", PW)
        .output()
        .expect("restic is installed (Debian package restic)")
}

#[track_caller]
pub fn restic_ok(repo: &str, args: &[&str]) -> String {
    let out = restic(repo, args);
    assert!(
        out.status.success(),
        "restic {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The repository's snapshots, read without a lock (the repository may be the SSH
/// user's).
pub fn snapshots(repo: &str) -> Vec<Value> {
    let out = restic_ok(repo, &["snapshots", "--json", "--no-lock"]);
    serde_json::from_str(&out).unwrap_or_default()
}

pub fn ids(snaps: &[Value]) -> BTreeSet<String> {
    snaps
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Where a test's sources, repository and scratch directory live, and how tend
/// reaches them (locally, or over a real sshd as an ordinary user).
pub struct Bk {
    pub w: World,
    /// The repository, under a directory the SSH user owns.
    pub repo: String,
    pub scratch: String,
    pub ssh: Option<sshd::Sshd>,
}

impl Bk {
    pub fn local() -> Bk {
        let w = World::new();
        let base = w.dir.path().join("backups");
        std::fs::create_dir_all(base.join("scratch")).unwrap();
        let bk = Bk {
            repo: base.join("repo").display().to_string(),
            scratch: base.join("scratch").display().to_string(),
            w,
            ssh: None,
        };
        bk.sources();
        bk
    }

    pub fn over_ssh() -> Bk {
        let mut bk = Bk::local();
        let h = sshd::Sshd::start_tendtest();
        bk.w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
        bk.ssh = Some(h);
        bk
    }

    /// Sources of several kinds: modes, a nested directory, an excluded file.
    pub fn sources(&self) {
        let w = &self.w;
        w.write_mode("src/etc/app.conf", "listen = 8080\n", 0o644);
        w.write_mode("src/etc/secret.key", "k3y\n", 0o600);
        w.write_mode("src/data/deep/blob.bin", &"0123456789".repeat(5000), 0o640);
        w.write_mode("src/data/run.sh", "#!/bin/sh\necho hi\n", 0o755);
        w.write("src/cache/junk.tmp", "not backed up\n");
    }

    pub fn src(&self) -> String {
        self.w.path("src")
    }

    /// `tend run NAME --json` with the repository, password and scratch directory,
    /// then `params` (later ones win) and `flags`.
    pub fn run(&self, name: &str, params: &[(&str, &str)], flags: &[&str]) -> Run {
        self.hand_over();
        let mut c = self.w.command();
        c.arg("run").arg(recipe(name)).arg("--json");
        c.args(self.w.run_args.borrow().iter());
        let password = format!("env:{PW_VAR}");
        for (k, v) in [
            ("repo", self.repo.as_str()),
            ("password", password.as_str()),
            ("scratch_dir", self.scratch.as_str()),
        ]
        .into_iter()
        .chain(params.iter().copied())
        {
            c.arg("-p").arg(format!("{k}={v}"));
        }
        c.args(flags).env(PW_VAR, PW);
        Run::from(c.output().unwrap())
    }

    /// Over SSH, give the files the test made (as root) to the SSH user, but only
    /// when some are root's: a chown changes every file's ctime, which restic takes
    /// as a change, and the plan and the run must see the same files.
    pub fn hand_over(&self) {
        let Some(h) = &self.ssh else { return };
        let dir = self.w.dir.path();
        let (uid, _) = sshd::uid_of(&h.user);
        let ours = |p: &Path| {
            walkdir(p).iter().chain([p.to_path_buf()].iter()).all(|f| {
                std::fs::symlink_metadata(f)
                    .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid)
                    .unwrap_or(true)
            })
        };
        if !ours(&self.w.root())
            || !ours(&dir.join("backups"))
            || !dir.join("remote-state").exists()
        {
            self.w.hand_over();
            h.hand_over(&[&dir.join("backups")]);
        }
    }

    pub fn backup(&self, params: &[(&str, &str)], flags: &[&str]) -> Run {
        let src = self.src();
        let mut all = vec![("paths", src.as_str()), ("exclude", "*.tmp")];
        all.extend_from_slice(params);
        self.run("backup", &all, flags)
    }
}

/// Messages of `log` events starting with `prefix`.
pub fn logs(r: &Run, prefix: &str) -> Vec<String> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "log")
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.starts_with(prefix))
        .map(String::from)
        .collect()
}

/// Steps as (subject, changed, unknown, reversible).
pub fn steps(r: &Run) -> Vec<(String, bool, bool, bool)> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| {
            (
                e["subject"].as_str().unwrap().to_string(),
                e["changed"] == true,
                e["unknown"] == true,
                e["reversible"] == true,
            )
        })
        .collect()
}

/// The retention lines as short id -> "keep (rules)" / "forget".
pub fn retention(r: &Run) -> BTreeMap<String, String> {
    logs(r, "retention: ")
        .iter()
        .map(|l| {
            let mut w = l.splitn(5, ' ');
            let _ = w.next();
            let what = w.next().unwrap().to_string();
            let id = w.next().unwrap().to_string();
            let _time = w.next();
            let rest = w.next().unwrap_or("");
            let v = if what == "keep" {
                format!("keep {rest}")
            } else {
                "forget".into()
            };
            (id, v)
        })
        .collect()
}

/// The snapshot a real backup run made (from its `snapshot ID: …` line).
pub fn new_snapshot(r: &Run) -> String {
    let l = logs(r, "snapshot ");
    assert_eq!(l.len(), 1, "{}", r.stdout);
    l[0].split([' ', ':']).nth(1).unwrap().to_string()
}

/// The counts a backup line gives: "N new, M changed, K unmodified files".
pub fn counts(line: &str) -> String {
    let head = line.split(" files").next().unwrap();
    head[head.rfind(": ").unwrap() + 2..].to_string()
}

#[track_caller]
pub fn assert_secret_nowhere(bk: &Bk, runs: &[&Run]) {
    for r in runs {
        assert!(!r.stdout.contains(PW) && !r.stderr.contains(PW));
    }
    for e in walkdir(&bk.w.state()) {
        let text = std::fs::read(&e).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains(PW),
            "the password is in {}",
            e.display()
        );
    }
}

pub fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Flip bytes in the middle of every pack file that holds only file data (the index
/// says which): sizes stay, so only reading the data finds it.
pub fn corrupt_data_packs(repo: &str) {
    let mut n = 0;
    for idx in restic_ok(repo, &["list", "index", "--no-lock"]).lines() {
        let text = restic_ok(repo, &["cat", "index", idx, "--no-lock"]);
        let v: Value = serde_json::from_str(&text).unwrap();
        for pack in v["packs"].as_array().unwrap() {
            let blobs = pack["blobs"].as_array().unwrap();
            if blobs.iter().all(|b| b["type"] == "data") {
                let id = pack["id"].as_str().unwrap();
                let path = Path::new(repo).join("data").join(&id[..2]).join(id);
                let mut bytes = std::fs::read(&path).unwrap();
                for b in bytes.iter_mut().take(40).skip(8) {
                    *b ^= 0xff;
                }
                std::fs::write(&path, bytes).unwrap();
                n += 1;
            }
        }
    }
    assert!(n > 0, "no data pack found to corrupt");
}

/// A tmpfs, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs (the tests run as root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

// ---- PostgreSQL -------------------------------------------------------------

#[path = "postgres.rs"]
mod postgres;
#[allow(unused_imports)]
pub use postgres::{pg_bin, Pg, PG_PW};
