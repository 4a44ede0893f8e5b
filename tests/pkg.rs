//! `pkg::` operations against the real apt and dpkg of this machine, with a local
//! repository each test builds (`dpkg-deb --build`, `apt-ftparchive`): the package
//! `tend-testpkg` in versions 1.0 and 2.0 (each installs
//! /usr/share/tend-testpkg/version) and its dependency `tend-testdep`. apt reads
//! only that repository (its own sources list and lists directory, given as the
//! steps' `options`), so nothing here reaches the network or the machine's sources.
//!
//! Shown: install, upgrade, removal; the dry-run's package list is what the run
//! then did; a second run changes nothing; `tend rollback` downgrades to 1.0 and
//! reinstalls what was removed; a failure later in the recipe puts the packages back;
//! an upgrade whose old version is gone is irreversible in the plan; a package
//! changed by hand since is not reverted; locally and over a real sshd with become.
//!
//! dpkg has one lock per machine and the packages are the machine's own: the tests
//! take turns (`DPKG`), and each purges the packages when it ends, failed or not.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sshd::Sshd;
use support::{changes, Run, World};

static DPKG: Mutex<()> = Mutex::new(());

const PKG: &str = "tend-testpkg";
const DEP: &str = "tend-testdep";

fn sh(cmd: &str) -> String {
    let out = Command::new("/bin/sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The machine's test packages for this test, and them purged before and after it
/// (also when it fails). A file lock, not only a mutex: two test processes (two
/// checkouts testing at once) share the one dpkg database.
struct Turn {
    _lock: std::sync::MutexGuard<'static, ()>,
    _file: std::fs::File,
}

impl Turn {
    fn take() -> Turn {
        let lock = DPKG.lock().unwrap_or_else(|p| p.into_inner());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/tend-test-dpkg.lock")
            .unwrap();
        file.lock().unwrap();
        purge();
        Turn {
            _lock: lock,
            _file: file,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        purge();
    }
}

fn purge() {
    let _ = Command::new("dpkg")
        .args(["--purge", PKG, DEP])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output();
}

/// The installed version of `name`, as dpkg says.
fn installed(name: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}\t${Version}", name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, version) = text.split_once('\t')?;
    status.ends_with(" installed").then(|| version.to_string())
}

fn installed_file() -> Option<String> {
    std::fs::read_to_string("/usr/share/tend-testpkg/version").ok()
}

/// A local apt repository and the apt options that make apt read only it.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("tend-t-apt-")
            .tempdir()
            .unwrap();
        // apt fetches file: sources as _apt; the SSH user reads the lists.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let repo = Repo { dir };
        std::fs::create_dir_all(repo.path("repo")).unwrap();
        std::fs::create_dir_all(repo.path("lists/partial")).unwrap();
        repo.build(DEP, "1.0", None);
        repo.build(PKG, "1.0", Some(DEP));
        repo.build(PKG, "2.0", Some(DEP));
        std::fs::write(
            repo.path("sources.list"),
            format!(
                "deb [trusted=yes] file:{} ./\n",
                repo.path("repo").display()
            ),
        )
        .unwrap();
        repo.index();
        repo
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn build(&self, name: &str, version: &str, depends: Option<&str>) {
        let root = self.path(&format!("build/{name}-{version}"));
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(root.join(format!("usr/share/{name}"))).unwrap();
        std::fs::write(
            root.join(format!("usr/share/{name}/version")),
            format!("{name} {version}\n"),
        )
        .unwrap();
        let mut control = format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: tend tests <tests@example.invalid>\nDescription: tend test package\n"
        );
        if let Some(d) = depends {
            control.push_str(&format!("Depends: {d}\n"));
        }
        std::fs::write(root.join("DEBIAN/control"), control).unwrap();
        let deb = self.path(&format!("repo/{name}_{version}_all.deb"));
        sh(&format!(
            "dpkg-deb --build --root-owner-group {} {} >/dev/null",
            root.display(),
            deb.display()
        ));
    }

    /// Index the repository and read it into this repository's own lists.
    fn index(&self) {
        sh(&format!(
            "cd {} && apt-ftparchive packages . > Packages && apt-ftparchive release . > Release",
            self.path("repo").display()
        ));
        sh(&format!(
            "apt-get -q {} update >/dev/null 2>&1",
            self.cli_options()
        ));
    }

    /// A version is gone from the repository (its old version no longer served).
    fn withdraw(&self, name: &str, version: &str) {
        std::fs::remove_file(self.path(&format!("repo/{name}_{version}_all.deb"))).unwrap();
        self.index();
    }

    fn items(&self) -> Vec<String> {
        vec![
            format!(
                "Dir::Etc::sourcelist={}",
                self.path("sources.list").display()
            ),
            "Dir::Etc::sourceparts=-".into(),
            format!("Dir::State::Lists={}", self.path("lists").display()),
        ]
    }

    fn cli_options(&self) -> String {
        self.items()
            .iter()
            .map(|i| format!("-o {i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `#{options: [...]}` plus `extra` map entries, as Rhai.
    fn opts(&self, extra: &str) -> String {
        let items: Vec<String> = self.items().iter().map(|i| format!("{i:?}")).collect();
        format!("#{{options: [{}]{extra}}}", items.join(", "))
    }
}

fn step_events(r: &Run) -> Vec<serde_json::Value> {
    r.events()
        .into_iter()
        .filter(|e| e["event"] == "step")
        .collect()
}

/// Dry-run then run `body`: the plan is what the run did (op, subject and the
/// package list with versions), and the machine is untouched by the dry-run.
/// Returns the real run.
fn plan_then_run(w: &World, name: &str, body: &str, expect_diff: &[&str]) -> Run {
    let recipe = w.recipe(name, body);
    let before = (installed(PKG), installed(DEP));
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(
        (installed(PKG), installed(DEP)),
        before,
        "the dry-run changed packages"
    );
    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert_eq!(changes(&dry), changes(&real), "plan:\n{}", dry.stdout);
    let diffs: Vec<String> = changes(&real).into_iter().map(|c| c.2).collect();
    assert_eq!(diffs.concat(), expect_diff.concat(), "{}", real.stdout);
    let again = w.run(&recipe, &[]);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "second run:\n{}", again.stdout);
    real
}

/// Install, upgrade, remove and their rollbacks, through `w` (local or over SSH);
/// `become_` is added to every step's options.
fn lifecycle(w: &World, repo: &Repo, become_: &str) {
    let o = |extra: &str| repo.opts(&format!("{become_}{extra}"));

    // Install 1.0 (with its dependency).
    let install = plan_then_run(
        w,
        "install.rhai",
        &format!(
            "let r = pkg::installed(\"{PKG}\", {});\nif r.changed {{ print(`to=${{r.packages[1].to}}`); }}",
            o(", version: \"1.0\"")
        ),
        &["+ tend-testdep 1.0\n+ tend-testpkg 1.0\n"],
    );
    assert_eq!(installed(PKG).as_deref(), Some("1.0"));
    assert_eq!(installed(DEP).as_deref(), Some("1.0"));
    assert_eq!(installed_file().as_deref(), Some("tend-testpkg 1.0\n"));
    assert!(install.stdout.contains("to=1.0"), "{}", install.stdout);

    // Upgrade to the newest, then roll it back: a downgrade to 1.0.
    let upgrade = plan_then_run(
        w,
        "latest.rhai",
        &format!("pkg::latest([\"{PKG}\"], {});", o("")),
        &["~ tend-testpkg 1.0 -> 2.0\n"],
    );
    assert_eq!(installed(PKG).as_deref(), Some("2.0"));
    assert_eq!(installed_file().as_deref(), Some("tend-testpkg 2.0\n"));
    w.tend(&["rollback", &upgrade.run_id()]).assert_code(0);
    assert_eq!(installed(PKG).as_deref(), Some("1.0"), "downgraded back");
    assert_eq!(installed_file().as_deref(), Some("tend-testpkg 1.0\n"));
    // Reverted once: a second rollback has nothing left to do.
    w.tend(&["rollback", &upgrade.run_id()]);
    assert_eq!(installed(PKG).as_deref(), Some("1.0"));

    // Remove, then roll back: reinstalled at the same version.
    let remove = plan_then_run(
        w,
        "absent.rhai",
        &format!("pkg::absent(\"{PKG}\", {});", o("")),
        &["- tend-testpkg 1.0\n"],
    );
    assert_eq!(installed(PKG), None);
    assert_eq!(
        installed(DEP).as_deref(),
        Some("1.0"),
        "the dependency stays"
    );
    w.tend(&["rollback", &remove.run_id()]).assert_code(0);
    assert_eq!(installed(PKG).as_deref(), Some("1.0"), "reinstalled");

    // A failure after the step: the run rolls it back by itself.
    let failing = w.recipe(
        "fail.rhai",
        &format!("pkg::latest(\"{PKG}\", {});\nthrow \"injected\";", o("")),
    );
    let failed = w.run(&failing, &[]);
    failed.assert_code(3);
    assert_eq!(failed.changed_count(), 1, "{}", failed.stdout);
    assert_eq!(installed(PKG).as_deref(), Some("1.0"), "{}", failed.stdout);

    // And from nothing: both packages go again.
    purge();
    let failing = w.recipe(
        "fail2.rhai",
        &format!("pkg::installed(\"{PKG}\", {});\nthrow \"injected\";", o("")),
    );
    w.run(&failing, &[]).assert_code(3);
    assert_eq!((installed(PKG), installed(DEP)), (None, None));
}

#[test]
fn install_upgrade_remove_and_rollbacks_locally() {
    let _turn = Turn::take();
    let repo = Repo::new();
    let w = World::new();
    lifecycle(&w, &repo, "");
}

#[test]
fn install_upgrade_remove_and_rollbacks_over_ssh_with_become() {
    let h = Sshd::start_tendtest();
    let _turn = Turn::take();
    let repo = Repo::new();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    lifecycle(&w, &repo, ", become: true");

    // Without root, apt says no and the error says how to ask for root.
    purge();
    let r = w.run(
        &w.recipe(
            "noroot.rhai",
            &format!("pkg::installed(\"{PKG}\", {});", repo.opts("")),
        ),
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stdout.contains("needs root"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(installed(PKG), None);
}

#[test]
fn plan_of_later_steps_and_facts_see_earlier_package_steps() {
    let _turn = Turn::take();
    let repo = Repo::new();
    let w = World::new();
    let o = repo.opts("");
    let recipe = w.recipe(
        "r.rhai",
        &format!(
            r#"
let before = pkg::version("{PKG}");
pkg::installed("{PKG}", {o} + #{{version: "1.0"}});
let mid = pkg::version("{PKG}");
pkg::latest("{PKG}", {o});
let listed = pkg::list()["{PKG}"];
pkg::absent(["{PKG}", "{DEP}"], {o});
print(`facts: ${{before}} ${{mid}} ${{listed}} ${{pkg::version("{DEP}")}} ${{"{PKG}" in pkg::list()}}`);
sh("dpkg-query -W {DEP}", #{{read_only: true, allow_fail: true}});
"#
        ),
    );
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert!(
        dry.stdout.contains("facts:  1.0 2.0  false"),
        "{}",
        dry.stdout
    );
    assert_eq!(installed(PKG), None);
    // A command asks the machine, which does not hold the planned packages: the
    // plan cannot vouch for its answer.
    let last = step_events(&dry).pop().unwrap();
    assert_eq!(
        (&last["op"], &last["unknown"]),
        (&"sh".into(), &true.into()),
        "{last}"
    );
    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert!(
        real.stdout.contains("facts:  1.0 2.0  false"),
        "{}",
        real.stdout
    );
    assert_eq!(step_events(&real).pop().unwrap()["unknown"], false);
    assert_eq!(changes(&dry), changes(&real));
    assert_eq!(
        changes(&real).into_iter().map(|c| c.2).collect::<Vec<_>>(),
        [
            "+ tend-testdep 1.0\n+ tend-testpkg 1.0\n",
            "~ tend-testpkg 1.0 -> 2.0\n",
            "- tend-testpkg 2.0\n- tend-testdep 1.0\n"
        ]
    );
}

#[test]
fn updated_upgrades_what_can_be() {
    let _turn = Turn::take();
    let repo = Repo::new();
    let w = World::new();
    sh(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get -q -y {} install {PKG}=1.0 >/dev/null",
        repo.cli_options()
    ));
    let run = plan_then_run(
        &w,
        "updated.rhai",
        &format!("pkg::updated({});", repo.opts("")),
        &["~ tend-testpkg 1.0 -> 2.0\n"],
    );
    assert_eq!(installed(PKG).as_deref(), Some("2.0"));
    w.tend(&["rollback", &run.run_id()]).assert_code(0);
    assert_eq!(installed(PKG).as_deref(), Some("1.0"));
}

#[test]
fn an_upgrade_whose_old_version_is_gone_is_irreversible_in_the_plan() {
    let _turn = Turn::take();
    let repo = Repo::new();
    let w = World::new();
    sh(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get -q -y {} install {PKG}=1.0 >/dev/null",
        repo.cli_options()
    ));
    repo.withdraw(PKG, "1.0");
    let recipe = w.recipe(
        "r.rhai",
        &format!("pkg::latest(\"{PKG}\", {});", repo.opts("")),
    );
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    let step = &step_events(&dry)[0];
    assert_eq!(step["reversible"], false, "{step}");
    assert!(
        step["diff"]
            .as_str()
            .unwrap()
            .contains("! tend-testpkg 1.0 can no longer be downloaded"),
        "{step}"
    );
    let real = w.run(&recipe, &[]);
    real.assert_code(0);
    assert_eq!(step_events(&real)[0]["reversible"], false);
    assert_eq!(installed(PKG).as_deref(), Some("2.0"));
    let rb = w.tend(&["rollback", &real.run_id()]);
    assert_ne!(rb.code, 0, "{}{}", rb.stdout, rb.stderr);
    let said = format!("{}{}", rb.stdout, rb.stderr);
    assert!(
        said.contains("tend-testpkg back to 1.0 (no longer available)"),
        "{said}"
    );
    assert_eq!(installed(PKG).as_deref(), Some("2.0"), "left as it is");
}

#[test]
fn a_package_changed_since_the_run_is_not_reverted() {
    let _turn = Turn::take();
    let repo = Repo::new();
    let w = World::new();
    let run = w.run(
        &w.recipe(
            "r.rhai",
            &format!(
                "pkg::installed(\"{PKG}\", {});",
                repo.opts(", version: \"1.0\"")
            ),
        ),
        &[],
    );
    run.assert_code(0);
    // Somebody upgrades it by hand afterwards.
    sh(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get -q -y {} install {PKG}=2.0 >/dev/null",
        repo.cli_options()
    ));
    let rb = w.tend(&["rollback", &run.run_id()]);
    assert_ne!(rb.code, 0);
    let said = format!("{}{}", rb.stdout, rb.stderr);
    assert!(
        said.contains("tend-testpkg is 2.0 now, the run left 1.0"),
        "{said}"
    );
    assert_eq!(installed(PKG).as_deref(), Some("2.0"), "not touched");
    assert_eq!(installed(DEP).as_deref(), Some("1.0"), "not touched");
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    let w = World::new();
    for (call, says) in [
        ("pkg::installed(\"-y\")", "is not a package name"),
        ("pkg::installed(\"a b\")", "is not a package name"),
        (
            "pkg::installed([\"a\", \"b\"], #{version: \"1\"})",
            "`version` is for one package",
        ),
        (
            "pkg::absent(\"a\", #{version: \"1\"})",
            "unknown option `version`",
        ),
        (
            "pkg::latest(\"a\", #{options: [\"-x\"]})",
            "`options` must be a list",
        ),
        ("pkg::installed([])", "no package named"),
    ] {
        let r = w.run(&w.recipe("r.rhai", &format!("{call};")), &["--dry-run"]);
        assert_ne!(r.code, 0, "{call}");
        assert!(
            format!("{}{}", r.stdout, r.stderr).contains(says),
            "{call}: {}{}",
            r.stdout,
            r.stderr
        );
    }
    let _ = Path::new("/");
}

/// Holds dpkg's frontend lock (an fcntl lock, as apt takes it) until dropped.
struct DpkgLockHolder(std::process::Child);

impl DpkgLockHolder {
    fn take() -> DpkgLockHolder {
        use std::io::BufRead;
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import fcntl,time\n\
                 f=open('/var/lib/dpkg/lock-frontend','w')\n\
                 fcntl.lockf(f, fcntl.LOCK_EX)\n\
                 print('locked', flush=True)\n\
                 time.sleep(600)",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        DpkgLockHolder(child)
    }
}

impl Drop for DpkgLockHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_held_dpkg_lock_is_waited_for_within_the_run_time_limit() {
    let _turn = Turn::take();
    let repo = Repo::new();
    let w = World::new();
    let recipe = w.recipe(
        "r.rhai",
        &format!("pkg::installed(\"{PKG}\", {});", repo.opts("")),
    );

    // Held for the whole run: the run's time limit stops the wait, nothing changed.
    let held = DpkgLockHolder::take();
    let stopped = w.run(&recipe, &["--timeout", "3s"]);
    assert_ne!(stopped.code, 0, "{}", stopped.stdout);
    assert!(
        stopped.stdout.contains("time limit"),
        "{}\n{}",
        stopped.stdout,
        stopped.stderr
    );
    assert_eq!(installed(PKG), None);

    // A step's own lock_timeout: apt gives up, and the error says why.
    let short = w.recipe(
        "short.rhai",
        &format!(
            "pkg::installed(\"{PKG}\", {});",
            repo.opts(", lock_timeout: 1")
        ),
    );
    let gave_up = w.run(&short, &[]);
    assert_ne!(gave_up.code, 0);
    assert!(
        gave_up
            .stdout
            .contains("held the lock for longer than lock_timeout, 1s"),
        "{}",
        gave_up.stdout
    );
    assert_eq!(installed(PKG), None);

    // Released while the step waits: the step goes on instead of failing at once.
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        drop(held);
    });
    let waited = w.run(&recipe, &[]);
    release.join().unwrap();
    waited.assert_code(0);
    assert_eq!(installed(PKG).as_deref(), Some("2.0"));
}
