//! Secrets never leak: a unique value is planted and used every way a recipe may use
//! it (`sh` env and stdin, `fs::file`, templates, logs, interpolation, errors, a
//! failing command, a timeout), locally and over SSH, at `-vvv`, with and without
//! `--json`; then the state dir (audit log, run records, journals, backup *names*),
//! stdout, stderr and every `/proc/*/cmdline` seen while the runs went on are searched
//! for it. It must be nowhere.
//!
//! Backups are excluded by content, not by name: a backup is the old content of a file
//! the recipe replaced, so if that file held a secret, its backup does too (as the file
//! did); rollback needs it. Their names and metadata (the journal) are searched.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Run, World};

const ROLLED_BACK: i32 = 3;
const USAGE: i32 = 64;

/// `S3cr3t-` and 16 random bytes in hex: found only where it leaked.
fn unique_secret() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    format!(
        "S3cr3t-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Reads every `/proc/*/cmdline` in a loop until stopped, keeping those that hold any
/// of the secrets, and whether it ever saw a command of interest (so a test knows the
/// snapshots were taken while the runs' commands were alive).
struct CmdlineWatch {
    stop: Arc<AtomicBool>,
    found: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl CmdlineWatch {
    fn start(secrets: Vec<String>, interesting: &'static str) -> CmdlineWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let found = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, f, n) = (stop.clone(), found.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !s.load(Ordering::SeqCst) {
                rounds += 1;
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    if !e
                        .file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                    {
                        continue;
                    }
                    let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
                        continue;
                    };
                    let line = String::from_utf8_lossy(&raw).replace('\0', " ");
                    if secrets.iter().any(|x| line.contains(x.as_str())) {
                        f.lock().unwrap().push(line.clone());
                    }
                    if line.contains(interesting) {
                        n.lock().unwrap().push(line);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            rounds
        });
        CmdlineWatch {
            stop,
            found,
            seen,
            thread: Some(thread),
        }
    }

    /// Stop; panic if a command line held a secret or nothing interesting was seen.
    #[track_caller]
    fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let rounds = self.thread.take().unwrap().join().unwrap();
        let found = self.found.lock().unwrap().clone();
        assert!(found.is_empty(), "a secret in a command line: {found:#?}");
        let seen = self.seen.lock().unwrap().clone();
        assert!(
            !seen.is_empty(),
            "no snapshot caught the runs' commands ({rounds} rounds)"
        );
    }
}

/// Every place under `dir` (file names, and contents outside `backup/` folders) that
/// holds one of the secrets.
fn grep_tree(dir: &Path, secrets: &[String]) -> Vec<String> {
    fn walk(p: &Path, in_backup: bool, secrets: &[String], hits: &mut Vec<String>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if secrets.iter().any(|s| name.contains(s.as_str())) {
                hits.push(format!("name: {}", path.display()));
            }
            let m = std::fs::symlink_metadata(&path).unwrap();
            if m.is_dir() {
                walk(&path, in_backup || name == "backup", secrets, hits);
            } else if m.is_file() && !in_backup {
                let bytes = std::fs::read(&path).unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes);
                if secrets.iter().any(|s| text.contains(s.as_str())) {
                    hits.push(format!("content: {}", path.display()));
                }
            }
        }
    }
    let mut hits = Vec::new();
    walk(dir, false, secrets, &mut hits);
    hits
}

#[track_caller]
fn assert_clean(what: &str, r: &Run, secrets: &[String]) {
    for s in secrets {
        assert!(
            !r.stdout.contains(s.as_str()) && !r.stderr.contains(s.as_str()),
            "{what}: the secret leaked:\nstdout:\n{}\nstderr:\n{}",
            r.stdout,
            r.stderr
        );
    }
}

/// Every use of a secret a recipe has: ROOT is where its files go.
const USES: &str = r#"//! Uses a secret every way a recipe may.
let p = params(#{ token: secret() });
log::info(p.token);
log::warn(`interpolated: ${p.token}`);
log::info("concatenated: " + p.token);
log::info(p);
print(p.token);
debug(p.token);
let r = sh("printenv TOKEN", #{env: #{TOKEN: p.token}, undo: "true"});
log::info("the command printed: " + r.stdout);
if r.changed && r.stdout != "***\n" { throw "stdout reached the recipe unredacted: " + r.stdout; }
sh("cat > ROOT/from-stdin", #{stdin: p.token, undo: "rm -f ROOT/from-stdin"});
fs::file("ROOT/secret.txt", p.token);
fs::file("ROOT/app.conf", #{template: "app.conf.j2", vars: #{token: p.token}, mode: 0o600});
fs::template("ROOT/app2.conf", "app.conf.j2", #{token: p.token});
fs::copy("ROOT/secret.txt", "ROOT/copied.txt");
sh("sleep 1", #{env: #{TOKEN: p.token}, stdin: p.token, undo: "true"});
log::info("read back: " + fs::read("ROOT/secret.txt"));
if type_of(fs::read("ROOT/secret.txt")) != "secret" { throw "read back as a plain string"; }
fs::file("ROOT/copied-back.txt", fs::read("ROOT/secret.txt"));
"#;

/// Ways to fail with a secret at hand; each after a change, so rollback runs too.
const FAILS: &str = r#"let p = params(#{ token: secret(), how: "" });
fs::file("ROOT/before-fail.txt", p.token);
if p.how == "sh" { sh("echo $TOKEN >&2; echo out $TOKEN; exit 3", #{env: #{TOKEN: p.token}, read_only: true}); }
if p.how == "throw" { throw "bad " + p.token; }
if p.how == "throw-secret" { throw p.token; }
if p.how == "throw-read" { throw fs::read("ROOT/before-fail.txt"); }
if p.how == "op" { fs::chmod("ROOT/" + fs::read("ROOT/before-fail.txt"), 0o600); }
if p.how == "timeout" { sh("echo $TOKEN; sleep 30", #{env: #{TOKEN: p.token}, timeout: "1s", read_only: true}); }
if p.how == "line" { fs::line("ROOT/x", p.token); }
if p.how == "argv-read" { sh("echo " + fs::read("ROOT/before-fail.txt")); }
if p.how == "argv" { sh("echo " + p.token + " > ROOT/echoed"); }
if p.how == "argv-env" { sh("curl \"$URL\"", #{env: #{URL: `https://u:${p.token}@example`}}); }
"#;

const TEMPLATE: &str = "password = {{ token }}\n";

fn tend_env(w: &World, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = w.command();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_planted_secret_appears_nowhere_locally() {
    let w = World::new();
    let first = unique_secret();
    let second = unique_secret();
    let secrets = vec![first.clone(), second.clone()];
    w.beside("app.conf.j2", TEMPLATE);
    let uses = w.recipe_in_root("uses.rhai", USES);
    let fails = w.recipe_in_root("fails.rhai", FAILS);
    let uses_s = uses.to_str().unwrap();
    let fails_s = fails.to_str().unwrap();
    // The second value comes from a file (outside the state dir and the root).
    let token_file = w.dir.path().join("token.txt");
    std::fs::write(&token_file, format!("{second}\n")).unwrap();
    let by_file = format!("token=file:{}", token_file.display());
    let env = [("TEND_TEST_TOKEN", first.as_str())];

    let watch = CmdlineWatch::start(secrets.clone(), "sleep");
    let mut runs: Vec<(String, Run)> = Vec::new();
    let mut go = |what: &str, args: &[&str]| -> Run {
        let r = tend_env(&w, args, &env);
        runs.push((
            what.to_string(),
            Run {
                code: r.code,
                stdout: r.stdout.clone(),
                stderr: r.stderr.clone(),
            },
        ));
        r
    };

    // A plan, then the real run, as JSON and for people, at the highest verbosity.
    let plan = go(
        "dry-run",
        &[
            "-vvv",
            "run",
            uses_s,
            "-p",
            "token=env:TEND_TEST_TOKEN",
            "--dry-run",
        ],
    );
    plan.assert_code(0);
    assert!(plan.stdout.contains("content hidden"), "{}", plan.stdout);
    let real = go(
        "json run",
        &[
            "-vvv",
            "run",
            uses_s,
            "-p",
            "token=env:TEND_TEST_TOKEN",
            "--json",
        ],
    );
    real.assert_code(0);
    // The value did reach where it was meant to go, and only there.
    let read = |rel: &str| std::fs::read_to_string(w.root().join(rel)).unwrap();
    assert_eq!(read("secret.txt"), first);
    assert_eq!(read("copied.txt"), first);
    assert_eq!(read("copied-back.txt"), first);
    assert_eq!(read("from-stdin"), first);
    assert_eq!(read("app.conf"), format!("password = {first}\n"));
    assert_eq!(read("app2.conf"), format!("password = {first}\n"));
    let events = real.events();
    let logs: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "log")
        .filter_map(|e| e["message"].as_str())
        .collect();
    for want in [
        "***",
        "interpolated: ***",
        "concatenated: ***",
        "the command printed: ***\n",
        "read back: ***",
    ] {
        assert!(logs.contains(&want), "{want:?} not among {logs:#?}");
    }
    let diffs: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step")
        .filter_map(|e| e["diff"].as_str())
        .filter(|d| !d.is_empty())
        .collect();
    assert!(
        diffs
            .iter()
            .filter(|d| d.contains("content hidden"))
            .count()
            >= 3,
        "{diffs:#?}"
    );

    // Again with another value: files change (their old secret goes to a backup).
    let human = go("human run", &["-vvv", "run", uses_s, "-p", &by_file]);
    human.assert_code(0);
    assert_eq!(read("secret.txt"), second);

    // Failures: a failing command echoing it, a throw, an op error, a timeout.
    for how in [
        "sh",
        "throw",
        "throw-secret",
        "throw-read",
        "op",
        "timeout",
        "line",
        "argv",
        "argv-env",
        "argv-read",
    ] {
        let how_p = format!("how={how}");
        for json in [true, false] {
            let mut args = vec![
                "-vvv",
                "run",
                fails_s,
                "-p",
                "token=env:TEND_TEST_TOKEN",
                "-p",
                &how_p,
            ];
            if json {
                args.push("--json");
            }
            let r = go(&format!("fail {how} json={json}"), &args);
            r.assert_code(ROLLED_BACK);
            if how == "sh" && json {
                let err = r.event("step_failed");
                assert!(
                    err["error"]
                        .as_str()
                        .unwrap()
                        .contains("exited with status 3: ***"),
                    "{err}"
                );
            }
            if how == "line" && json {
                assert!(
                    r.stdout.contains("fs::line: the line cannot be a secret"),
                    "{}",
                    r.stdout
                );
            }
            // Put into a string, a secret is `***`; in a command that would be a glob.
            if how.starts_with("argv") && json {
                assert!(
                    r.stdout
                        .contains("contains `***`, which is what a secret becomes"),
                    "{}",
                    r.stdout
                );
            }
        }
    }
    assert!(!w.root().join("before-fail.txt").exists());
    assert!(!w.root().join("echoed").exists());

    // Runs listed and the audit shown: clean too.
    go("runs", &["runs", "--json"]).assert_code(0);
    go("audit", &["audit", "show", "--json"]).assert_code(0);
    go("audit verify", &["audit", "verify"]).assert_code(0);
    watch.finish();

    for (what, r) in &runs {
        assert_clean(what, r, &secrets);
    }
    let hits = grep_tree(&w.state(), &secrets);
    assert!(hits.is_empty(), "the secret is in the state dir: {hits:#?}");
    // The grep did look at real records: the audit log, run records, journals.
    let audit = std::fs::read_to_string(w.state().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"***\""),
        "audit log without the redacted parameter:\n{audit}"
    );
    let files = walk_files(&w.state());
    assert!(
        files.iter().any(|p| p.ends_with("journal.jsonl")),
        "{files:#?}"
    );
    assert!(files.iter().any(|p| p.ends_with("run.json")));
    // The old secret is in a backup, as the file it came from held it: by design.
    assert!(files
        .iter()
        .any(|p| p.components().any(|c| c.as_os_str() == "backup")));
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_secret_typed_on_the_command_line_is_refused_without_echoing_it() {
    let w = World::new();
    let r = w.recipe_in_root("r.rhai", "let p = params(#{ token: secret() });\n");
    let value = unique_secret();
    let out = w.tend(&["run", r.to_str().unwrap(), "-p", &format!("token={value}")]);
    out.assert_code(USAGE);
    assert!(out.stderr.contains("env:VAR"), "{}", out.stderr);
    assert_clean("literal", &out, &[value]);
    assert!(w.runs().is_empty());
}

#[test]
fn a_missing_secret_is_asked_for_on_a_terminal() {
    let w = World::new();
    let secret = unique_secret();
    let recipe = w.recipe_in_root(
        "r.rhai",
        "let p = params(#{ token: secret() });\nfs::file(\"ROOT/t\", p.token);\nlog::info(`got ${p.token}`);\n",
    );
    // A pseudo-terminal as tend's stdin and controlling terminal.
    let (mut master, slave) = openpty();
    let mut cmd = w.command();
    cmd.args(["run", recipe.to_str().unwrap(), "--json"])
        .stdin(slave.try_clone().unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(slave);
    // What the terminal shows: the prompt, never the value (echo is off).
    let shown = Arc::new(Mutex::new(Vec::new()));
    let mut reader = master.try_clone().unwrap();
    let s2 = shown.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            s2.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&shown.lock().unwrap()).contains("secret parameter `token`") {
        assert!(std::time::Instant::now() < deadline, "no prompt");
        std::thread::sleep(Duration::from_millis(20));
    }
    use std::io::Write;
    master.write_all(format!("{secret}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    r.assert_code(0);
    assert_eq!(std::fs::read_to_string(w.root().join("t")).unwrap(), secret);
    assert!(r.stdout.contains("got ***"), "{}", r.stdout);
    assert_clean("prompt", &r, std::slice::from_ref(&secret));
    std::thread::sleep(Duration::from_millis(100));
    let shown = String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
    assert!(
        !shown.contains(&secret),
        "echoed on the terminal: {shown:?}"
    );
    assert!(grep_tree(&w.state(), &[secret]).is_empty());
}

fn openpty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (0, 0);
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) }
}

#[test]
fn a_planted_secret_appears_nowhere_over_ssh() {
    let w = World::new();
    let h = sshd::Sshd::start_tendtest();
    let secret = unique_secret();
    let secrets = vec![secret.clone()];
    // Owned by the login user, who must be able to create it.
    let remote_state = h.root.join(".tend-state");
    std::fs::write(
        w.dir.path().join("tend.toml"),
        format!(
            "[hosts.h1]\naddress = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity_file = \"{}\"\ntend_state_dir = \"{}\"\n",
            h.port,
            h.user,
            h.client_key.display(),
            remote_state.display()
        ),
    )
    .unwrap();
    w.beside("app.conf.j2", TEMPLATE);
    let root = h.root.display().to_string();
    let uses = w.recipe("uses.rhai", &USES.replace("ROOT", &root));
    let fails = w.recipe("fails.rhai", &FAILS.replace("ROOT", &root));
    let kh = h.known_hosts.display().to_string();
    let env = [("TEND_TEST_TOKEN", secret.as_str())];
    let watch = CmdlineWatch::start(secrets.clone(), "sleep");
    let mut runs = Vec::new();
    for become_ in [false, true] {
        for (recipe, extra) in [
            (&uses, &["--json"][..]),
            (&uses, &[][..]),
            (&fails, &["-p", "how=sh", "--json"][..]),
            (&fails, &["-p", "how=timeout"][..]),
            (&fails, &["-p", "how=throw-read", "--json"][..]),
        ] {
            let mut args = vec![
                "-vvv",
                "run",
                recipe.to_str().unwrap(),
                "-H",
                "h1",
                "--known-hosts",
                &kh,
                "-p",
                "token=env:TEND_TEST_TOKEN",
            ];
            if become_ {
                args.push("--become");
            }
            args.extend_from_slice(extra);
            let r = tend_env(&w, &args, &env);
            let want = if recipe == &uses { 0 } else { ROLLED_BACK };
            r.assert_code(want);
            runs.push(r);
        }
        assert_eq!(
            std::fs::read_to_string(h.root.join("secret.txt")).unwrap(),
            secret
        );
        assert_eq!(
            std::fs::read_to_string(h.root.join("from-stdin")).unwrap(),
            secret
        );
    }
    watch.finish();
    for r in &runs {
        assert_clean("ssh", r, &secrets);
    }
    // The ssh debug logs (-vvv) were there to be searched.
    assert!(
        runs.iter().any(|r| r.stderr.contains("ssh exec")),
        "{}",
        runs[0].stderr
    );
    for dir in [w.state(), remote_state] {
        let hits = grep_tree(&dir, &secrets);
        assert!(
            hits.is_empty(),
            "the secret is in {}: {hits:#?}",
            dir.display()
        );
    }
    // sshd's own log (LogLevel VERBOSE) has no trace of it either.
    assert!(!h.log().contains(&secret));
}

/// An encrypted SSH key is opened with `$TEND_SSH_PASSPHRASE`, which the CLI reads
/// once and hands down: the run and a later rollback connect with it, and neither the
/// run record (which keeps how each host was reached) nor the audit log holds it.
#[test]
fn an_encrypted_key_is_opened_with_the_passphrase_the_cli_hands_down() {
    let h = sshd::Sshd::start_tendtest();
    let pass = "pass-phrase-7c1e";
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", pass, "-f"])
        .arg(&h.client_key)
        .status()
        .unwrap();
    assert!(ok.success());
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    let recipe = w.recipe(
        "touch.rhai",
        &format!(
            "//! Write a file.\nfs::file(\"{}\", #{{ content: \"x\" }});\n",
            w.path("x")
        ),
    );
    let refused = w.run(&recipe, &[]);
    refused.assert_code(1);
    assert_eq!(refused.event("host_end")["outcome"], "unreachable");
    assert!(!w.root().join("x").exists());

    let kh = w.dir.path().join("known_hosts").display().to_string();
    let over_ssh = ["-H", "h1", "--known-hosts", kh.as_str()];
    w.hand_over();
    let run = w.run_env(&recipe, &over_ssh, &[("TEND_SSH_PASSPHRASE", pass)]);
    run.assert_code(0);
    assert!(w.root().join("x").exists());
    let id = run.run_id();
    let mut c = w.command();
    c.args(["rollback", &id]).env("TEND_SSH_PASSPHRASE", pass);
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!w.root().join("x").exists());
    for file in [
        w.state().join("runs").join(&id).join("run.json"),
        w.state().join("audit.jsonl"),
    ] {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(pass),
            "{} holds the passphrase",
            file.display()
        );
    }
    // The record says how the host was reached, in the old and the new words.
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.state().join("runs").join(&id).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["targets"][0]["transport"], "ssh", "{meta}");
    assert_eq!(meta["targets"][0]["local"], false);
}
