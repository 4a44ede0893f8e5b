//! The deploy recipe (recipes/deploy.rhai) end to end: real tarballs, a real HTTP
//! server on 127.0.0.1 serving `current/public` of the app directory (so the
//! acceptance check is real), releases switched, a release whose check fails rolled
//! back with the previous one serving again, retention, users told through the motd;
//! locally and over a real sshd host.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use sshd::Sshd;
use support::{assert_same, snapshot, World};

fn recipe() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("recipes/deploy.rhai")
        .display()
        .to_string()
}

/// An app directory under /srv (the recipe's scope), removed at the end.
struct App {
    dir: PathBuf,
    /// Artifacts and the restart log: outside the app directory.
    work: tempfile::TempDir,
}

impl App {
    fn new(owner: Option<&str>) -> App {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/srv/tend-t-deploy-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("motd"), "Welcome.\n").unwrap();
        // An old release, before tend.
        std::fs::create_dir_all(dir.join("releases/r0/public")).unwrap();
        let work = tempfile::tempdir().unwrap();
        if let Some(user) = owner {
            for p in [dir.as_path(), work.path()] {
                let ok = Command::new("chown")
                    .args(["-R", user])
                    .arg(p)
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        }
        App { dir, work }
    }

    /// A tarball whose `public/health` says `body`; its sha256.
    fn artifact(&self, name: &str, body: &str) -> (String, String) {
        let src = self.work.path().join(format!("src-{name}"));
        std::fs::create_dir_all(src.join("public")).unwrap();
        std::fs::create_dir_all(src.join("log")).unwrap();
        std::fs::write(src.join("public/health"), body).unwrap();
        std::fs::write(src.join("public/index.html"), format!("<h1>{name}</h1>\n")).unwrap();
        let tar = self.work.path().join(format!("{name}.tar.gz"));
        let ok = Command::new("tar")
            .arg("-czf")
            .arg(&tar)
            .arg("-C")
            .arg(&src)
            .arg(".")
            .status()
            .unwrap();
        assert!(ok.success());
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("a+rX")
            .arg(self.work.path())
            .status();
        let sum = Command::new("sha256sum").arg(&tar).output().unwrap();
        let sum = String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        (tar.display().to_string(), sum)
    }

    fn restarts(&self) -> usize {
        std::fs::read_to_string(self.work.path().join("restarts"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn current(&self) -> String {
        std::fs::read_link(self.dir.join("current"))
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `python3 -m http.server` serving APP/current/public on a free port.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(app: &App) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(app.dir.join("current/public"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Server { child, port }
    }

    /// The body of GET /health, or "" when nothing answers.
    fn health(&self) -> String {
        for _ in 0..50 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if let Some((_, body)) = out.split_once("\r\n\r\n") {
                    return body.to_string();
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        String::new()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn deploy(
    w: &World,
    app: &App,
    art: &(String, String),
    release: &str,
    body: &str,
    port: u16,
    extra: &[&str],
) -> support::Run {
    let params = [
        format!("app_dir={}", app.dir.display()),
        format!("artifact={}", art.0),
        format!("sha256={}", art.1),
        format!("release={release}"),
        "shared_paths=log".to_string(),
        format!(
            "restart=echo restart >> {}/restarts",
            app.work.path().display()
        ),
        format!("check_url=http://127.0.0.1:{port}/health"),
        format!("check_body={body}"),
        "check_timeout=10s".into(),
        "motd=true".into(),
        format!("motd_file={}/motd", app.dir.display()),
        "keep=2".into(),
    ];
    let mut args: Vec<String> = Vec::new();
    for p in &params {
        args.push("-p".into());
        args.push(p.clone());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    w.run(Path::new(&recipe()), &args)
}

fn scenario(w: &World, app: &App) {
    let v1 = app.artifact("v1", "v1 ok");
    let v2 = app.artifact("v2", "v2 ok");
    let broken = app.artifact("v3", "v3 broken");
    let server = Server::start(app);

    // First release: live and checked.
    let r = deploy(w, app, &v1, "r1", "v1 ok", server.port, &[]);
    r.assert_code(0);
    assert_eq!(app.current(), format!("{}/releases/r1", app.dir.display()));
    assert_eq!(server.health(), "v1 ok");
    assert!(
        app.dir.join("releases/r1/log").is_symlink(),
        "shared log linked"
    );
    assert_eq!(
        std::fs::read_to_string(app.dir.join("motd")).unwrap(),
        "Welcome.\n"
    );

    // A dry-run of the next changes nothing.
    let before = snapshot(&app.dir);
    deploy(w, app, &v2, "r2", "v2 ok", server.port, &["--dry-run"]).assert_code(0);
    assert_same(&before, &snapshot(&app.dir));

    let r = deploy(w, app, &v2, "r2", "v2 ok", server.port, &[]);
    r.assert_code(0);
    assert_eq!(server.health(), "v2 ok");

    // The same release again: nothing to do.
    let again = deploy(w, app, &v2, "r2", "v2 ok", server.port, &[]);
    again.assert_code(0);
    assert_eq!(again.changed_count(), 0, "{}", again.stdout);

    // A release whose acceptance check fails: rolled back, the previous one serves.
    let before = snapshot(&app.dir);
    let restarts = app.restarts();
    let failed = deploy(w, app, &broken, "r3", "v3 ok", server.port, &[]);
    failed.assert_code(3);
    assert!(
        failed.stdout.contains("expected") || failed.stdout.contains("v3 ok"),
        "{}",
        failed.stdout
    );
    assert_same(&before, &snapshot(&app.dir));
    assert_eq!(server.health(), "v2 ok");
    assert_eq!(
        app.restarts(),
        restarts + 2,
        "restarted for r3, then again on r2"
    );

    // A wrong checksum deploys nothing.
    let wrong = (v1.0.clone(), "0".repeat(64));
    let r = deploy(w, app, &wrong, "r4", "v1 ok", server.port, &[]);
    assert_ne!(r.code, 0);
    assert_same(&before, &snapshot(&app.dir));

    // Retention: keep 2, never current or previous.
    deploy(w, app, &v1, "r5", "v1 ok", server.port, &[]).assert_code(0);
    let mut left: Vec<String> = std::fs::read_dir(app.dir.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["r2", "r5"], "r0 and r1 expired, r2 (previous) kept");
}

#[test]
fn deploys_checks_and_rolls_back_a_failing_release_locally() {
    let w = World::new();
    let app = App::new(None);
    scenario(&w, &app);
}

#[test]
fn deploys_checks_and_rolls_back_a_failing_release_over_ssh() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    let app = App::new(Some(&h.user));
    scenario(&w, &app);
}

#[test]
fn show_documents_every_parameter() {
    let w = World::new();
    let r = w.tend(&["show", &recipe(), "--json"]);
    r.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    for p in v["params"].as_array().unwrap() {
        assert!(!p["doc"].as_str().unwrap().is_empty(), "{p}");
    }
    assert_eq!(v["scope"], serde_json::json!(["/srv/**", "/etc/motd"]));
}
