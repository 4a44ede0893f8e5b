//! Shared harness for end-to-end tests: run the real `tend` binary in a temp dir with
//! its own state dir, and snapshot file trees byte for byte.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const TEND: &str = env!("CARGO_BIN_EXE_tend");

/// A scratch world: `root` for files the recipe acts on, `state` for tend's state.
pub struct World {
    pub dir: tempfile::TempDir,
    /// Added to every `run`: e.g. `-H h1 --known-hosts …` to run over SSH instead.
    pub run_args: std::cell::RefCell<Vec<String>>,
    /// Who `run` logs in as over SSH (see `over_ssh`).
    pub ssh_user: std::cell::RefCell<Option<String>>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The `--json` event lines of stdout.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first `--json` event named `name`.
    pub fn event(&self, name: &str) -> serde_json::Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no {name} event in:\n{}\n{}", self.stdout, self.stderr))
    }

    pub fn run_id(&self) -> String {
        self.events()
            .iter()
            .find(|e| e["event"] == "run_end")
            .and_then(|e| e["run_id"].as_str().map(String::from))
            .unwrap_or_else(|| panic!("no run_end event in:\n{}\n{}", self.stdout, self.stderr))
    }

    /// Paths reported changed by step events (dry-run: would change).
    pub fn changed_paths(&self) -> std::collections::BTreeSet<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "step" && e["changed"] == true)
            .flat_map(|e| {
                e["paths"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| p.as_str().map(String::from))
            })
            .collect()
    }

    pub fn changed_count(&self) -> u64 {
        self.events()
            .iter()
            .find(|e| e["event"] == "run_end")
            .and_then(|e| e["changed"].as_u64())
            .unwrap_or_else(|| panic!("no run_end in:\n{}\n{}", self.stdout, self.stderr))
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        World {
            dir,
            run_args: Default::default(),
            ssh_user: Default::default(),
        }
    }

    /// Where the files under test live.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// This world's stand-in for the machine's host lock directory.
    pub fn locks(&self) -> PathBuf {
        self.dir.path().join("locks")
    }

    /// `root/rel` as a string, for recipe parameters.
    pub fn path(&self, rel: &str) -> String {
        self.root().join(rel).display().to_string()
    }

    /// Write a recipe file (beside the root, not inside it) and return its path.
    pub fn recipe(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(TEND);
        // Host locks are per machine: each world gets its own, or parallel tests
        // would queue behind each other on the host `local`.
        c.env("TEND_STATE_DIR", self.state())
            .env("TEND_LOCK_DIR", self.locks())
            .env("NO_COLOR", "1")
            .env_remove("TEND_LOG")
            .current_dir(self.dir.path());
        c
    }

    pub fn tend(&self, args: &[&str]) -> Run {
        Run::from(self.command().args(args).output().unwrap())
    }

    /// `tend run RECIPE --json [extra…]`
    pub fn run(&self, recipe: &Path, extra: &[&str]) -> Run {
        self.hand_over();
        let run_args = self.run_args.borrow();
        let mut args = vec!["run", recipe.to_str().unwrap(), "--json"];
        args.extend(run_args.iter().map(String::as_str));
        args.extend_from_slice(extra);
        self.tend(&args)
    }

    /// From now on, `run` acts on a real sshd host `h1` as `user` (on this machine's
    /// files) instead of locally: the same test body covers both targets.
    ///
    /// A non-root user with /bin/sh as login shell: root's bash here sources a
    /// .bashrc (pyenv) that can stall every command for a minute on a stale lock.
    pub fn over_ssh(&self, user: &str, sshd_port: u16, client_key: &Path, known_hosts_line: &str) {
        let toml = format!(
            "[hosts.h1]\naddress = \"127.0.0.1\"\nport = {sshd_port}\nuser = \"{user}\"\nidentity_file = \"{}\"\ntend_state_dir = \"{}\"\n",
            client_key.display(),
            self.dir.path().join("remote-state").display()
        );
        std::fs::write(self.dir.path().join("tend.toml"), toml).unwrap();
        let kh = self.dir.path().join("known_hosts");
        std::fs::write(&kh, known_hosts_line).unwrap();
        *self.ssh_user.borrow_mut() = Some(user.to_string());
        *self.run_args.borrow_mut() = vec![
            "-H".into(),
            "h1".into(),
            "--known-hosts".into(),
            kh.display().to_string(),
        ];
    }

    /// Give the files under `root` to the SSH user, as they would be on a real host;
    /// `run` does it before each run over SSH (tests create files as root).
    pub fn hand_over(&self) {
        let Some(user) = self.ssh_user.borrow().clone() else {
            return;
        };
        let dir = self.dir.path();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(dir.join("remote-state")).unwrap();
        let ok = Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(self.root())
            .arg(dir.join("remote-state"))
            .status()
            .unwrap();
        assert!(ok.success(), "chown to {user} failed");
    }
    /// `tend run RECIPE --json [extra…]` with extra environment variables (e.g. a
    /// PATH that puts a failing stand-in for a tool first).
    pub fn run_env(&self, recipe: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let mut args = vec!["run", recipe.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        let mut c = self.command();
        c.args(&args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().unwrap())
    }

    pub fn snapshot(&self) -> Tree {
        snapshot(&self.root())
    }
}

/// Kind, mode and content (or link target) of every path under a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File { mode: u32, bytes: Vec<u8> },
    Dir { mode: u32 },
    Link { target: String },
}

pub type Tree = BTreeMap<String, Entry>;

pub fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::new();
    walk(root, &mut tree);
    tree
}

fn walk(dir: &Path, tree: &mut Tree) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let key = p.display().to_string();
        if m.file_type().is_symlink() {
            let target = std::fs::read_link(&p).unwrap().display().to_string();
            tree.insert(key, Entry::Link { target });
        } else if m.is_dir() {
            tree.insert(
                key,
                Entry::Dir {
                    mode: m.mode() & 0o7777,
                },
            );
            walk(&p, tree);
        } else {
            let bytes = std::fs::read(&p).unwrap();
            tree.insert(
                key,
                Entry::File {
                    mode: m.permissions().mode() & 0o7777,
                    bytes,
                },
            );
        }
    }
}

/// Paths whose entry differs between two snapshots (added, removed or changed).
pub fn diff(a: &Tree, b: &Tree) -> std::collections::BTreeSet<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Panic with a readable list when two trees differ.
#[track_caller]
pub fn assert_same(before: &Tree, after: &Tree) {
    let d = diff(before, after);
    assert!(d.is_empty(), "file trees differ at: {d:#?}");
}

/// Helpers for building trees and recipes with files beside them (ops, rollback and
/// bad-input tests).
impl World {
    /// Write `rel` next to the recipe (for `src:` files, templates, imports), creating
    /// parent folders.
    pub fn beside(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    /// A recipe whose text says `ROOT` for [`World::root`].
    pub fn recipe_in_root(&self, name: &str, text: &str) -> PathBuf {
        self.recipe(
            name,
            &text.replace("ROOT", &self.root().display().to_string()),
        )
    }

    /// The shipped recipes/log-rotate.rhai, its write scope (/var/log…) moved to this
    /// world's root as `tend test` rebases it, written beside the root.
    pub fn log_rotate_recipe(&self) -> PathBuf {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/log-rotate.rhai"),
        )
        .unwrap();
        let root = self.root().display().to_string();
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("//! scope:") {
                Some(_) => format!("//! scope: {root}, {root}/**\n"),
                None => format!("{l}\n"),
            })
            .collect();
        self.recipe("log-rotate.rhai", &text)
    }

    /// `root/rel` with `content` and exactly `mode`.
    pub fn write_mode(&self, rel: &str, content: &str, mode: u32) {
        self.write(rel, content);
        std::fs::set_permissions(self.root().join(rel), std::fs::Permissions::from_mode(mode))
            .unwrap();
    }

    /// Directory `root/rel` (and parents) with exactly `mode`.
    pub fn mkdir(&self, rel: &str, mode: u32) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Symlink `root/rel` -> `target` (taken as is).
    pub fn symlink(&self, rel: &str, target: &str) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    /// `tend runs --json`, one value per run.
    pub fn runs(&self) -> Vec<serde_json::Value> {
        let r = self.tend(&["runs", "--json"]);
        r.assert_code(0);
        r.events()
    }
}

/// Exactly one `error:` line on stderr, saying all of `parts`; no panic.
#[track_caller]
pub fn one_error(r: &Run, parts: &[&str]) -> String {
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "stderr:\n{}", r.stderr);
    for p in parts {
        assert!(errors[0].contains(p), "{p:?} not in {:?}", errors[0]);
    }
    errors[0].to_string()
}

/// Refused before anything started: no change, no run recorded.
#[track_caller]
pub fn refused(w: &World, before: &Tree) {
    assert_same(before, &w.snapshot());
    assert!(w.runs().is_empty(), "a run was recorded: {:?}", w.runs());
}

/// A world with one file (`app.conf`) the recipes of a bad-input test would change.
pub fn world_with_app_conf() -> World {
    let w = World::new();
    w.write("app.conf", "original\n");
    w
}

// ------------------------------------------------------------------ exact

/// What the changed steps of a run say: op, subject and diff, in order.
pub fn changes(r: &Run) -> Vec<(String, String, String)> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "step" && e["changed"] == true)
        .map(|e| {
            (
                e["op"].as_str().unwrap_or_default().to_string(),
                e["subject"].as_str().unwrap_or_default().to_string(),
                e["diff"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Empty `root/` and prepare it again.
pub fn reset(w: &World, setup: &dyn Fn(&World)) {
    std::fs::remove_dir_all(w.root()).unwrap();
    std::fs::create_dir(w.root()).unwrap();
    setup(w);
}

/// Dry-run, real run, second run, then a run that fails after the steps: the plan
/// is what happened (paths and diffs), the second run is a no-op, and the failed run
/// leaves every file as it was. Ends with the real run's result in `root/`.
/// (Shared by tests/edit_ops.rs and tests/file_ops.rs.)
pub fn exact(w: &World, setup: &dyn Fn(&World), body: &str, expect: &[&str]) -> Run {
    reset(w, setup);
    let recipe = w.recipe_in_root("r.rhai", body);
    let before = w.snapshot();

    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_same(&before, &w.snapshot());

    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    let after = w.snapshot();
    let expect: BTreeSet<String> = expect.iter().map(|r| w.path(r)).collect();
    assert_eq!(diff(&before, &after), expect, "what the run changed");
    assert_eq!(dry.changed_paths(), expect, "the plan:\n{}", dry.stdout);
    assert_eq!(real.changed_paths(), expect);
    assert_eq!(
        changes(&dry),
        changes(&real),
        "the plan's diffs are the run's"
    );
    assert!(!changes(&real).is_empty());

    let again = w.run(&recipe, &[]);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "second run:\n{}", again.stdout);
    assert_same(&after, &w.snapshot());

    // The same steps, then a failure: everything comes back byte for byte.
    reset(w, setup);
    let failing = w.recipe_in_root("fail.rhai", &format!("{body}\nthrow \"injected\";\n"));
    let failed = w.run(&failing, &[]);
    failed.assert_code(3);
    assert!(failed.changed_count() > 0, "{}", failed.stdout);
    assert_same(&before, &w.snapshot());

    reset(w, setup);
    w.run(&recipe, &[]).assert_code(0);
    real
}

// ------------------------------------------------------------------ browser

/// `chromium --headless --dump-dom URL` (an `http://` or `file://` URL): the DOM after
/// Chromium parsed and laid out the page. As root, with the flags that keep it off
/// the network (it would otherwise try to reach Google's hosts at every start).
pub fn dump_dom(url: &str) -> String {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium is not installed: .ci/run installs it (apt-get install chromium)");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("</html>"),
        "chromium printed no DOM for {url} ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// Wait up to `limit` for `cond`, looking every 50 ms; whether it became true.
pub fn wait_for(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cond()
}

/// A `tend daemon --log-format json` process, its stderr in `log`; killed if a test
/// fails first.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
    /// For messages: "the daemon", "node a".
    pub name: String,
}

impl Daemon {
    /// Spawn `cmd` (a `tend` command with its environment) as `tend daemon
    /// --log-format json EXTRA…`, its log in `log`; then wait up to 20 s for
    /// `ready` (given the log so far).
    pub fn spawn(
        mut cmd: Command,
        extra: &[&str],
        log: PathBuf,
        name: &str,
        ready: impl Fn(&str) -> bool,
    ) -> Daemon {
        let child = cmd
            .args(["daemon", "--log-format", "json"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            log,
            name: name.to_string(),
        };
        assert!(
            wait_for(std::time::Duration::from_secs(20), || ready(&d.log())),
            "{name} never started:\n{}",
            d.log()
        );
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// SIGTERM, and its exit code once it has ended (at most 30 s).
    pub fn stop(mut self) -> i32 {
        self.signal("TERM");
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "{} did not stop:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// kill -9: no rollback, no last word.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
