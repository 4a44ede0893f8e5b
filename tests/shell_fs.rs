//! `become` as a shell file system over sudo (issue 10): on the local machine a tend
//! that is not root changes root's files through `sudo -n`, journals them and rolls
//! them back, and its dry-run plans exactly that; and the defaults an inventory host
//! is reached with are OpenSSH's (the system-wide known_hosts is read).

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{assert_same, Run, World};

/// A directory only root may enter (like /etc/ssl/private) inside a world whose other
/// files belong to the test user: every read and write there needs sudo.
fn root_only_dir(w: &World) -> PathBuf {
    sshd::ensure_test_users();
    let (uid, gid) = sshd::uid_of(sshd::TEST_USER);
    std::fs::set_permissions(w.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ok = std::process::Command::new("chown")
        .args(["-R", &format!("{uid}:{gid}")])
        .arg(w.dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let sys = w.root().join("sys");
    std::fs::create_dir(&sys).unwrap();
    std::fs::set_permissions(&sys, std::fs::Permissions::from_mode(0o700)).unwrap();
    sys
}

fn root_file(path: &Path, content: &str, mode: u32) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `tend ARGS` as the non-root test user (who has passwordless sudo).
fn as_test_user(w: &World, args: &[&str]) -> Run {
    let (uid, gid) = sshd::uid_of(sshd::TEST_USER);
    let out = w
        .command()
        .env("HOME", w.dir.path())
        .env("USER", sshd::TEST_USER)
        .args(args)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    Run::from(out)
}

fn run_as_test_user(w: &World, recipe: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["run", recipe.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    as_test_user(w, &args)
}

fn owner(path: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// What each step did or would do, in order.
fn steps(r: &Run) -> Vec<Value> {
    r.events()
        .into_iter()
        .filter(|e| e["event"] == "step")
        .map(|e| {
            serde_json::json!({
                "op": e["op"], "subject": e["subject"], "changed": e["changed"],
                "paths": e["paths"], "diff": e["diff"],
            })
        })
        .collect()
}

#[test]
fn local_become_as_non_root_writes_a_root_file_and_rolls_it_back() {
    let w = World::new();
    let sys = root_only_dir(&w);
    let conf = sys.join("app.conf");
    root_file(&conf, "setting = 1\n", 0o640);
    let original = w.snapshot();
    let first = w.recipe_in_root(
        "first.rhai",
        "fs::file(\"ROOT/sys/app.conf\", #{content: \"setting = 2\\n\", mode: 0o640, become: true});\n\
         fs::file(\"ROOT/sys/new.conf\", #{content: \"new\\n\", become: true});\n",
    );
    let run = run_as_test_user(&w, &first, &[]);
    run.assert_code(0);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "setting = 2\n");
    assert_eq!(owner(&conf), (0, 0, 0o640), "root's file stays root's");
    assert_eq!(
        owner(&sys.join("new.conf")),
        (0, 0, 0o644),
        "created as root"
    );

    // A failing run is rolled back through sudo, byte for byte.
    let after_first = w.snapshot();
    let failing = w.recipe_in_root(
        "failing.rhai",
        "fs::file(\"ROOT/sys/app.conf\", #{content: \"setting = 3\\n\", become: true});\n\
         fs::file(\"ROOT/sys/new.conf\", #{content: \"newer\\n\", mode: 0o600, become: true});\n\
         fs::file(\"ROOT/sys/other.conf\", #{content: \"other\\n\", become: true});\n\
         throw \"fail after the changes\";\n",
    );
    let failed = run_as_test_user(&w, &failing, &[]);
    assert_ne!(failed.code, 0);
    assert_eq!(failed.event("run_end")["outcome"], "rolled_back");
    assert_eq!(failed.event("rollback")["reverted"], 3, "{}", failed.stdout);
    assert_same(&after_first, &w.snapshot());
    assert_eq!(owner(&conf), (0, 0, 0o640));
    assert_eq!(owner(&sys.join("new.conf")), (0, 0, 0o644));

    // And the first run, later, by hand.
    as_test_user(&w, &["rollback", &run.run_id()]).assert_code(0);
    assert_same(&original, &w.snapshot());
    assert_eq!(owner(&conf), (0, 0, 0o640));
}

#[test]
fn dry_run_of_local_become_plans_what_the_run_does() {
    let w = World::new();
    let sys = root_only_dir(&w);
    root_file(&sys.join("app.conf"), "a = 1\nb = 2\n", 0o600);
    root_file(&sys.join("same.conf"), "same\n", 0o644);
    let recipe = w.recipe_in_root(
        "recipe.rhai",
        "fs::dir(\"ROOT/sys/conf.d\", #{mode: 0o750, become: true});\n\
         fs::file(\"ROOT/sys/conf.d/x.conf\", #{content: \"x\\n\", become: true});\n\
         fs::line(\"ROOT/sys/app.conf\", \"b = 3\", #{regex: \"^b =\", become: true});\n\
         fs::file(\"ROOT/sys/same.conf\", #{content: \"same\\n\", become: true});\n",
    );
    let before = w.snapshot();
    let dry = run_as_test_user(&w, &recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert_same(&before, &w.snapshot());
    let real = run_as_test_user(&w, &recipe, &[]);
    real.assert_code(0);
    assert_eq!(
        steps(&dry),
        steps(&real),
        "the dry-run planned other steps than the run took\ndry-run:\n{}\nreal:\n{}",
        dry.stdout,
        real.stdout
    );
    assert_eq!(dry.changed_paths(), real.changed_paths());
    assert_eq!(real.changed_count(), 3, "{}", real.stdout);
    assert_eq!(
        std::fs::read_to_string(sys.join("app.conf")).unwrap(),
        "a = 1\nb = 3\n"
    );
    assert_eq!(owner(&sys.join("conf.d")), (0, 0, 0o750));
    // Planned again on the changed files: nothing left to do.
    let again = run_as_test_user(&w, &recipe, &["--dry-run"]);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "{}", again.stdout);
}

/// One line added to /etc/ssh/ssh_known_hosts for the test's lifetime (its port is
/// this test's alone), removed again whatever happens.
struct SystemKnownHost {
    line: String,
    existed: bool,
}

const SYSTEM_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

impl SystemKnownHost {
    fn add(line: String) -> Self {
        use std::io::Write;
        let existed = Path::new(SYSTEM_KNOWN_HOSTS).exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(SYSTEM_KNOWN_HOSTS)
            .unwrap();
        f.write_all(line.as_bytes()).unwrap();
        SystemKnownHost { line, existed }
    }
}

impl Drop for SystemKnownHost {
    fn drop(&mut self) {
        let text = std::fs::read_to_string(SYSTEM_KNOWN_HOSTS).unwrap_or_default();
        let kept: String = text
            .split_inclusive('\n')
            .filter(|l| *l != self.line)
            .collect();
        if kept.is_empty() && !self.existed {
            let _ = std::fs::remove_file(SYSTEM_KNOWN_HOSTS);
        } else {
            let _ = std::fs::write(SYSTEM_KNOWN_HOSTS, kept);
        }
    }
}

#[test]
fn system_known_hosts_is_read_for_an_inventory_host() {
    let h = sshd::Sshd::start_tendtest();
    let w = World::new();
    std::fs::write(
        w.dir.path().join("tend.toml"),
        format!(
            "[hosts.h1]\naddress = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity_file = \"{}\"\n",
            h.port,
            h.user,
            h.client_key.display()
        ),
    )
    .unwrap();
    // A home without ~/.ssh/known_hosts: only the system-wide file knows the host.
    let home = tempfile::tempdir().unwrap();
    let ping = || {
        Run::from(
            w.command()
                .env("HOME", home.path())
                .args(["exec", "-H", "h1", "--", "true"])
                .output()
                .unwrap(),
        )
    };
    let unknown = ping();
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("unknown host key") || unknown.stdout.contains("unknown host key"),
        "{}{}",
        unknown.stdout,
        unknown.stderr
    );
    let _known = SystemKnownHost::add(h.known_hosts_line());
    ping().assert_code(0);
}
