//! `fs::block`, `fs::replace`, `fs::ini` end to end through the real binary: the
//! dry-run reports exactly the paths and diffs the real run then changes, a second
//! run changes nothing, and a failure after them (`throw`) rolls the files back byte
//! for byte; locally, and for `fs::block`/`fs::replace` over a real sshd too.
//!
//! The checks `http::get`, `net::wait_for` and `assert` against a real HTTP server
//! on 127.0.0.1 that this file runs (status, body, timeout, refused connection),
//! from the target and from the controller; decimal modes; missing host variables.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use sshd::Sshd;
use support::{assert_same, changes, exact, reset, Run, World};

// ------------------------------------------------------------------ protocol

fn read(w: &World, rel: &str) -> String {
    std::fs::read_to_string(w.root().join(rel)).unwrap()
}

// ------------------------------------------------------------------ fs::block

fn block_setup(w: &World) {
    w.write(
        "sshd_config",
        "Port 22\nPermitRootLogin yes\n# keep this last\nSubsystem sftp internal-sftp",
    );
    w.write(
        "hosts",
        "127.0.0.1 localhost\n# BEGIN hosts\n10.0.0.1 old\n# END hosts\n::1 localhost\n",
    );
    w.write(
        "motd",
        "welcome\n# BEGIN TEND MANAGED BLOCK\nremove me\n# END TEND MANAGED BLOCK\nbye\n",
    );
}

const BLOCK: &str = r##"
fs::block("ROOT/sshd_config", "Match User backup\n    PasswordAuthentication no", #{insertbefore: "^# keep this last"});
fs::block("ROOT/sshd_config", "AllowUsers admin", #{marker: "# {mark} users", insertafter: "^PermitRootLogin"});
fs::block("ROOT/hosts", "10.0.0.2 web\n10.0.0.3 db\n", #{marker: "# {mark} hosts"});
fs::block("ROOT/motd", "");
fs::block("ROOT/new.conf", "x = 1");
fs::block("ROOT/untouched", "y", #{state: "absent"});
"##;

fn block_after(w: &World) {
    assert_eq!(
        read(w, "sshd_config"),
        "Port 22\nPermitRootLogin yes\n# BEGIN users\nAllowUsers admin\n# END users\n\
         # BEGIN TEND MANAGED BLOCK\nMatch User backup\n    PasswordAuthentication no\n\
         # END TEND MANAGED BLOCK\n# keep this last\nSubsystem sftp internal-sftp"
    );
    assert_eq!(
        read(w, "hosts"),
        "127.0.0.1 localhost\n# BEGIN hosts\n10.0.0.2 web\n10.0.0.3 db\n# END hosts\n::1 localhost\n"
    );
    assert_eq!(read(w, "motd"), "welcome\nbye\n");
    assert_eq!(
        read(w, "new.conf"),
        "# BEGIN TEND MANAGED BLOCK\nx = 1\n# END TEND MANAGED BLOCK\n"
    );
    assert!(!w.root().join("untouched").exists());
}

#[test]
fn block_plan_run_again_and_rollback() {
    let w = World::new();
    exact(
        &w,
        &block_setup,
        BLOCK,
        &["sshd_config", "hosts", "motd", "new.conf"],
    );
    // `exact` ends on the real run's result.
    block_after(&w);
}

/// Half a block is not guessed at: the step fails, and nothing changes.
#[test]
fn block_with_a_lone_marker_is_refused() {
    let w = World::new();
    w.write("f", "a\n# BEGIN TEND MANAGED BLOCK\nb\n");
    let before = w.snapshot();
    let r = w.run(
        &w.recipe_in_root("r.rhai", "fs::block(\"ROOT/f\", \"x\");\n"),
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(
        said(&r).contains("r.rhai:1:") && said(&r).contains("line 2 is the marker"),
        "{}",
        r.stderr
    );
    assert_same(&before, &w.snapshot());
}

// ---------------------------------------------------------------- fs::replace

fn replace_setup(w: &World) {
    w.write(
        "app.conf",
        "# mirrors\nurl = http://old.example/a\nname = app\nmirror = http://old.example/b\nkeep = http://old.example.org/\n",
    );
}

const REPLACE: &str = r#"
let r = fs::replace("ROOT/app.conf", "http://old\\.example/", "https://new.example/");
if r.changed && !r.diff.contains("+url = https://new.example/a") { throw "diff misses the first match"; }
fs::replace("ROOT/app.conf", "^(name) = .*$", "$1 = tend");
"#;

#[test]
fn replace_plan_run_again_and_rollback() {
    let w = World::new();
    let real = exact(&w, &replace_setup, REPLACE, &["app.conf"]);
    let steps = changes(&real);
    assert_eq!(steps[0].1, w.path("app.conf") + " (2 matches)");
    for line in [
        "-url = http://old.example/a",
        "+url = https://new.example/a",
        "-mirror = http://old.example/b",
        "+mirror = https://new.example/b",
    ] {
        assert!(steps[0].2.contains(line), "{line} not in\n{}", steps[0].2);
    }
    reset(&w, &replace_setup);
    w.run(&w.recipe_in_root("r.rhai", REPLACE), &[])
        .assert_code(0);
    assert_eq!(
        read(&w, "app.conf"),
        "# mirrors\nurl = https://new.example/a\nname = tend\nmirror = https://new.example/b\nkeep = http://old.example.org/\n"
    );
}

/// A replacement the regex matches again would change the file on every run.
#[test]
fn replace_that_would_never_settle_is_refused() {
    let w = World::new();
    w.write("f", "a\n");
    let before = w.snapshot();
    let r = w.run(
        &w.recipe_in_root("r.rhai", "fs::replace(\"ROOT/f\", \"a\", \"aa\");\n"),
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(said(&r).contains("would change again"), "{}", said(&r));
    assert_same(&before, &w.snapshot());
}

// -------------------------------------------------------------------- fs::ini

fn ini_setup(w: &World) {
    w.write(
        "php.ini",
        "; PHP settings\n[PHP]\n; memory\nmemory_limit=128M   \nmax_execution_time = 30\n\n\
         [Date]\n;date.timezone =\n\n[Other]\nmemory_limit = 1G\n",
    );
}

const INI: &str = r#"
fs::ini("ROOT/php.ini", "PHP", "memory_limit", "512M");
fs::ini("ROOT/php.ini", "Date", "date.timezone", "UTC");
fs::ini("ROOT/php.ini", "Session", "gc_maxlifetime", 1440);
fs::ini("ROOT/php.ini", "PHP", "max_execution_time", 30);
"#;

#[test]
fn ini_plan_run_again_and_rollback() {
    let w = World::new();
    exact(&w, &ini_setup, INI, &["php.ini"]);
    reset(&w, &ini_setup);
    w.run(&w.recipe_in_root("r.rhai", INI), &[]).assert_code(0);
    // Comments, blank lines, spacing and the other section's key as they were.
    assert_eq!(
        read(&w, "php.ini"),
        "; PHP settings\n[PHP]\n; memory\nmemory_limit=512M\nmax_execution_time = 30\n\n\
         [Date]\n;date.timezone =\ndate.timezone = UTC\n\n[Other]\nmemory_limit = 1G\n\n\
         [Session]\ngc_maxlifetime = 1440\n"
    );
}

// ------------------------------------------------------------------ over SSH

#[test]
fn block_and_replace_over_ssh() {
    let h = Sshd::start_tendtest();
    for (setup, body, expect) in [
        (
            block_setup as fn(&World),
            BLOCK,
            &["sshd_config", "hosts", "motd", "new.conf"][..],
        ),
        (replace_setup, REPLACE, &["app.conf"][..]),
    ] {
        let w = World::new();
        w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
        exact(&w, &setup, body, expect);
    }
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    block_setup(&w);
    w.run(&w.recipe_in_root("r.rhai", BLOCK), &[])
        .assert_code(0);
    block_after(&w);
}

// ------------------------------------------------------------------- checks

/// A tiny HTTP/1.0 server on 127.0.0.1: `/ok` 200, `/missing` 404, `/slow` never
/// answers. Runs until the test process ends.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = match path.as_str() {
                    "/ok" => ("200 OK", "hello from the test server\n"),
                    "/slow" => {
                        std::thread::sleep(Duration::from_secs(60));
                        return;
                    }
                    _ => ("404 Not Found", "not here\n"),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn logs(r: &Run) -> Vec<String> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "log")
        .filter_map(|e| e["message"].as_str().map(String::from))
        .collect()
}

fn check_steps(r: &Run) -> Vec<serde_json::Value> {
    r.events()
        .into_iter()
        .filter(|e| e["event"] == "step" && (e["op"] == "http::get" || e["op"] == "net::wait_for"))
        .collect()
}

/// The whole output, for messages, with the errors of `--json` events unquoted.
fn said(r: &Run) -> String {
    let errors: Vec<String> = r
        .events()
        .iter()
        .filter_map(|e| e["error"].as_str().map(String::from))
        .collect();
    format!("{}{}{}", r.stdout, r.stderr, errors.join("\n"))
}

#[test]
fn http_get_status_and_body_from_the_target_and_the_controller() {
    let port = http_server();
    let w = World::new();
    for (from, via) in [("target", "curl"), ("controller", "controller")] {
        let r = w.recipe(
            "r.rhai",
            &format!(
                "let r = http::get(\"http://127.0.0.1:{port}/ok\", #{{from: \"{from}\", expect_body: \"hello\"}});\n\
                 log::info(`${{r.status}}|${{r.via}}|${{r.body}}`);\n\
                 let m = http::get(\"http://127.0.0.1:{port}/missing\", #{{from: \"{from}\", expect_status: [404, 410]}});\n\
                 log::info(`${{m.status}}`);\n"
            ),
        );
        // A dry-run runs checks too: they only read.
        for extra in [&["--dry-run"][..], &[][..]] {
            let run = w.run(&r, extra);
            run.assert_code(0);
            assert_eq!(
                logs(&run),
                vec![
                    format!("200|{via}|hello from the test server\n"),
                    "404".to_string()
                ]
            );
            let steps = check_steps(&run);
            assert_eq!(steps.len(), 2);
            assert!(steps
                .iter()
                .all(|s| s["changed"] == false && s["unknown"] == false));
            assert!(
                steps[0]["subject"]
                    .as_str()
                    .unwrap()
                    .contains(if from == "target" {
                        "from local (curl)"
                    } else {
                        "from the controller"
                    }),
                "{}",
                steps[0]
            );
            assert_eq!(run.changed_count(), 0);
        }
    }
}

#[test]
fn http_get_wrong_status_or_body_fails_the_run_and_rolls_it_back() {
    let port = http_server();
    for (from, check, message) in [
        ("target", "/missing\"", "answered HTTP 404, expected 200"),
        (
            "controller",
            "/missing\"",
            "answered HTTP 404, expected 200",
        ),
        (
            "target",
            "/ok\", #{expect_body: \"goodbye\"}",
            "the body does not contain \"goodbye\"",
        ),
    ] {
        let w = World::new();
        w.write("app.conf", "old\n");
        let before = w.snapshot();
        let opts = if from == "controller" {
            ", #{from: \"controller\"}"
        } else {
            ""
        };
        let r = w.recipe_in_root(
            "r.rhai",
            &format!(
                "fs::file(\"ROOT/app.conf\", \"new\\n\");\nhttp::get(\"http://127.0.0.1:{port}{check}{opts});\n"
            ),
        );
        let run = w.run(&r, &[]);
        run.assert_code(3);
        assert!(
            said(&run).contains("r.rhai:2:") && said(&run).contains(message),
            "{}",
            said(&run)
        );
        assert_same(&before, &w.snapshot());
    }
}

#[test]
fn http_get_timeout_and_refused_connection() {
    let port = http_server();
    let closed = closed_port();
    let w = World::new();
    for from in ["target", "controller"] {
        for (url, message) in [
            (
                format!("http://127.0.0.1:{port}/slow"),
                "no answer within 1s",
            ),
            (format!("http://127.0.0.1:{closed}/"), "could not connect"),
        ] {
            let r = w.recipe(
                "r.rhai",
                &format!("http::get(\"{url}\", #{{timeout: 1, from: \"{from}\"}});\n"),
            );
            let run = w.run(&r, &[]);
            assert_ne!(run.code, 0);
            assert!(said(&run).contains(message), "{from}: {}", said(&run));
        }
    }
}

#[test]
fn wait_for_an_open_and_a_closed_port() {
    let port = http_server();
    let closed = closed_port();
    let w = World::new();
    for (from, via) in [("target", "bash"), ("controller", "controller")] {
        let r = w.recipe(
            "r.rhai",
            &format!(
                "let r = net::wait_for(\"127.0.0.1\", {port}, #{{from: \"{from}\"}});\nlog::info(r.via);\n"
            ),
        );
        let run = w.run(&r, &[]);
        run.assert_code(0);
        assert_eq!(logs(&run), vec![via.to_string()]);
        assert_eq!(check_steps(&run)[0]["changed"], false);

        let r = w.recipe(
            "r.rhai",
            &format!(
                "net::wait_for(\"127.0.0.1\", {closed}, #{{timeout: \"1s\", from: \"{from}\"}});\n"
            ),
        );
        let run = w.run(&r, &[]);
        assert_ne!(run.code, 0);
        assert!(
            said(&run).contains(&format!("127.0.0.1:{closed}"))
                && said(&run).contains("no connection within 1s"),
            "{}",
            said(&run)
        );
    }
}

/// A PATH holding only `tools` (links to this machine's own).
fn path_with(w: &World, name: &str, tools: &[&str]) -> String {
    let bin = w.dir.path().join(name);
    std::fs::create_dir(&bin).unwrap();
    for tool in tools {
        let real = ["/bin", "/usr/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no {tool} on this machine"));
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    bin.display().to_string()
}

/// Without curl the target's wget answers; without either, plain HTTP goes through
/// bash's /dev/tcp.
#[test]
fn http_get_without_curl_uses_wget_then_bash() {
    let port = http_server();
    let w = World::new();
    let r = w.recipe(
        "r.rhai",
        &format!(
            "let r = http::get(\"http://127.0.0.1:{port}/ok\");\nlog::info(`${{r.via}}|${{r.status}}|${{r.body}}`);\n\
             let m = http::get(\"http://127.0.0.1:{port}/missing\", #{{expect_status: 404}});\nlog::info(`${{m.status}}`);\n"
        ),
    );
    for (dir, tools, via) in [
        ("wget-only", &["sh", "wget", "cat", "kill"][..], "wget"),
        ("bash-only", &["sh", "bash", "cat", "kill"][..], "bash"),
    ] {
        let path = path_with(&w, dir, tools);
        let run = w.run_env(&r, &[], &[("PATH", &path)]);
        run.assert_code(0);
        assert_eq!(
            logs(&run),
            vec![
                format!("{via}|200|hello from the test server\n"),
                "404".into()
            ]
        );
    }
}

/// In a dry-run that has planned a change, a failing check may be failing only
/// because the change is not made: the step is unknown, not a failure.
#[test]
fn a_check_after_a_planned_change_is_unknown_in_a_dry_run() {
    let port = http_server();
    let w = World::new();
    let r = w.recipe_in_root(
        "r.rhai",
        &format!(
            "fs::file(\"ROOT/site.conf\", \"on\\n\");\nhttp::get(\"http://127.0.0.1:{port}/missing\");\n"
        ),
    );
    let dry = w.run(&r, &["--dry-run"]);
    dry.assert_code(0);
    assert_eq!(check_steps(&dry)[0]["unknown"], true, "{}", dry.stdout);
    let real = w.run(&r, &[]);
    real.assert_code(3);
    assert!(!w.root().join("site.conf").exists());
}

#[test]
fn a_failed_assert_rolls_back_with_its_message_and_line() {
    let w = World::new();
    w.write("app.conf", "old\n");
    let before = w.snapshot();
    let r = w.recipe_in_root(
        "r.rhai",
        "fs::file(\"ROOT/app.conf\", \"new\\n\");\nassert(fs::read(\"ROOT/app.conf\") == \"new\\n\", \"written\");\nassert(1 + 1 == 3, \"arithmetic is broken\");\n",
    );
    let run = w.run(&r, &[]);
    run.assert_code(3);
    assert!(
        said(&run).contains("r.rhai:3:")
            && said(&run).contains("assertion failed: arithmetic is broken"),
        "{}",
        said(&run)
    );
    assert_same(&before, &w.snapshot());
}

// ---------------------------------------------------------- modes, host vars

#[test]
fn a_decimal_mode_is_refused_with_the_octal_it_meant() {
    let w = World::new();
    w.write("a", "x\n");
    let before = w.snapshot();
    for (text, message) in [
        (
            "fs::file(\"a\", #{content: \"y\", mode: 644});\n",
            "r.rhai:1:37: mode 644 is a decimal number (0o1204 in octal, not what it looks like): did you mean 0o644?",
        ),
        (
            "fs::chmod(\"ROOT/a\", 0755);\n",
            "did you mean 0o755?",
        ),
        (
            "let m = 0o17777;\nfs::chmod(\"ROOT/a\", m);\n",
            "mode 0o17777 is not a file mode",
        ),
    ] {
        let run = w.run(&w.recipe_in_root("r.rhai", text), &[]);
        assert_ne!(run.code, 0);
        let msg = said(&run).replace(&w.dir.path().display().to_string(), "");
        assert!(msg.contains(message), "{message:?} not in {msg}");
        assert_same(&before, &w.snapshot());
    }
    // Written in octal, it runs.
    w.run(
        &w.recipe_in_root("r.rhai", "fs::chmod(\"ROOT/a\", 0o600);\n"),
        &[],
    )
    .assert_code(0);
}

#[test]
fn a_missing_host_variable_is_an_error_naming_host_and_variable() {
    let w = World::new();
    let r = w.recipe(
        "r.rhai",
        "log::info(host().vars.get(\"color\", \"blue\"));\nlog::info(`${\"color\" in host().vars}`);\nlet root = host().vars.root;\nfs::file(`${root}/etc/x`, \"x\");\n",
    );
    let run = w.run(&r, &[]);
    assert_ne!(run.code, 0);
    assert_eq!(logs(&run), vec!["blue", "false"]);
    assert!(
        said(&run).contains("r.rhai:3:")
            && said(&run).contains("host local has no variable `root`")
            && said(&run).contains("host().vars.get(\"root\", default)"),
        "{}",
        said(&run)
    );
}

/// A check waits within the run's time: `--timeout` stops a long `wait_for` or a
/// server that never answers, as it stops a command, and the run rolls back.
#[test]
fn checks_stop_at_the_run_time_limit() {
    let port = http_server();
    let closed = closed_port();
    for from in ["target", "controller"] {
        for check in [
            format!("net::wait_for(\"127.0.0.1\", {closed}, #{{timeout: \"5m\", from: \"{from}\"}})"),
            format!("http::get(\"http://127.0.0.1:{port}/slow\", #{{timeout: \"5m\", from: \"{from}\"}})"),
        ] {
            let w = World::new();
            w.write("app.conf", "old\n");
            let before = w.snapshot();
            let r = w.recipe_in_root(
                "r.rhai",
                &format!("fs::file(\"ROOT/app.conf\", \"new\\n\");\n{check};\n"),
            );
            let run = w.run(&r, &["--timeout", "2s"]);
            run.assert_code(3);
            assert!(said(&run).contains("time limit of 2s"), "{check}: {}", said(&run));
            assert_same(&before, &w.snapshot());
        }
    }
}

/// Over SSH a check runs on the host, and says so.
#[test]
fn http_get_runs_on_the_ssh_host() {
    let port = http_server();
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    let r = w.recipe(
        "r.rhai",
        &format!(
            "let r = http::get(\"http://127.0.0.1:{port}/ok\");\nlog::info(`${{r.via}}|${{r.body}}`);\n\
             net::wait_for(\"127.0.0.1\", {port});\n"
        ),
    );
    let run = w.run(&r, &[]);
    run.assert_code(0);
    assert_eq!(logs(&run), vec!["curl|hello from the test server\n"]);
    let steps = check_steps(&run);
    assert!(
        steps[0]["subject"]
            .as_str()
            .unwrap()
            .ends_with("from h1 (curl)")
            && steps[1]["subject"]
                .as_str()
                .unwrap()
                .ends_with("from h1 (bash)"),
        "{steps:?}"
    );
}
