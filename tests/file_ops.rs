//! `fs::json`, `fs::yaml`, `fs::extract` and `fs::download` end to end through the
//! real binary: the dry-run reports exactly the paths and diffs the real run then
//! changes, a second run changes nothing, and a failure after them (`throw`) rolls
//! the tree back byte for byte; locally and over a real sshd (with `become` too).
//!
//! Archives are made by the real `tar`, `zstd` and `zip`; hostile ones (`..`,
//! absolute names, symlinks out or through) are written header by header. Downloads
//! come from a real HTTP server on 127.0.0.1 that this file runs.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sshd::Sshd;
use support::{assert_same, exact, Run, World};

// ------------------------------------------------------------------ protocol

fn read(w: &World, rel: &str) -> String {
    std::fs::read_to_string(w.root().join(rel)).unwrap()
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

fn sh(cmd: &str) {
    let ok = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(ok.success(), "{cmd}");
}

// ------------------------------------------------------------------- fs::json

const APP_JSON: &str = r#"{
    // edited by hand too
    "name": "app",
    "server": {
        "port": 80,
        "hosts": ["a", "b"]
    },
    "debug": true
}
"#;

fn json_setup(w: &World) {
    w.write("app.json", APP_JSON);
    w.write("empty.json", "// nothing yet\n");
}

const JSON: &str = r#"
fs::json("ROOT/app.json", "/server/port", 8080);
fs::json("ROOT/app.json", "/server/tls", #{enabled: true});
fs::json("ROOT/app.json", "/server/hosts/-", "c");
fs::json("ROOT/app.json", "/debug", (), #{state: "absent"});
let r = fs::json("ROOT/app.json", "/name", "app");
if r.changed { throw "an equal value changed the file"; }
fs::json("ROOT/new.json", "/a/b~1c", [1, 2]);
fs::json("ROOT/empty.json", "/on", true);
"#;

#[test]
fn json_plan_run_again_and_rollback() {
    let w = World::new();
    exact(
        &w,
        &json_setup,
        JSON,
        &["app.json", "new.json", "empty.json"],
    );
    // The comment, the key order and the indentation of the rest are kept.
    assert_eq!(
        read(&w, "app.json"),
        r#"{
    // edited by hand too
    "name": "app",
    "server": {
        "port": 8080,
        "hosts": ["a", "b", "c"],
        "tls": {
            "enabled": true
        }
    }
}
"#
    );
    assert!(read(&w, "empty.json").starts_with("// nothing yet\n"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&read(&w, "new.json")).unwrap(),
        serde_json::json!({"a": {"b/c": [1, 2]}})
    );
}

#[test]
fn json_refusals_leave_the_file_alone() {
    let w = World::new();
    json_setup(&w);
    w.write("broken.json", "{\"a\": \n");
    let before = w.snapshot();
    for (call, message) in [
        (
            r#"fs::json("ROOT/app.json", "/name/x", 1)"#,
            "/name is a string, not an object or a list",
        ),
        (
            r#"fs::json("ROOT/app.json", "/server/hosts/5", "z")"#,
            "/server/hosts has 2 items: /server/hosts/5 is past its end",
        ),
        (
            r#"fs::json("ROOT/app.json", "server", 1)"#,
            "is not a JSON Pointer",
        ),
        (r#"fs::json("ROOT/broken.json", "/a", 1)"#, "not JSON"),
        (
            r#"fs::json("ROOT/missing.json", "/a", 1, #{create: false})"#,
            "does not exist",
        ),
    ] {
        let run = w.run(&w.recipe_in_root("r.rhai", &format!("{call};\n")), &[]);
        assert_ne!(run.code, 0);
        assert!(
            said(&run).contains(message),
            "{message:?} not in {}",
            said(&run)
        );
        assert_same(&before, &w.snapshot());
    }
}

// ------------------------------------------------------------------- fs::yaml

const APP_YAML: &str = "# app settings\nname: app  # the name\nserver:\n  port: 80\n  hosts:\n    - a\n    - b\ndebug: true\n";

fn yaml_setup(w: &World) {
    w.write("app.yaml", APP_YAML);
}

const YAML: &str = r#"
fs::yaml("ROOT/app.yaml", "server.port", 8080);
fs::yaml("ROOT/app.yaml", "/server/tls", #{enabled: true});
fs::yaml("ROOT/app.yaml", "server.hosts.-", "c");
fs::yaml("ROOT/app.yaml", "debug", (), #{state: "absent"});
fs::yaml("ROOT/new.yaml", "a.b", 1);
"#;

#[test]
fn yaml_plan_run_again_and_rollback() {
    let w = World::new();
    exact(&w, &yaml_setup, YAML, &["app.yaml", "new.yaml"]);
    let text = read(&w, "app.yaml");
    // Comments and untouched lines as they were.
    assert!(
        text.starts_with("# app settings\nname: app  # the name\nserver:\n  port: 8080\n"),
        "{text}"
    );
    assert!(!text.contains("debug"), "{text}");
    let v: serde_json::Value = yaml_serde::from_str(&text).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"name": "app", "server": {"port": 8080, "hosts": ["a", "b", "c"], "tls": {"enabled": true}}})
    );
    assert_eq!(read(&w, "new.yaml"), "a:\n  b: 1\n");
}

/// A layout yamlpatch cannot edit in place (a multi-line flow mapping) is refused,
/// the file untouched; `rewrite: true` writes the document anew (comments lost).
#[test]
fn yaml_that_cannot_keep_its_layout_needs_rewrite() {
    let w = World::new();
    w.write(
        "flow.yaml",
        "# keep me\nserver: {\n  port: 80,\n  host: a\n}\n",
    );
    let before = w.snapshot();
    let call = r#"fs::yaml("ROOT/flow.yaml", "server.tls", true"#;
    let r = w.run(&w.recipe_in_root("r.rhai", &format!("{call});\n")), &[]);
    assert_ne!(r.code, 0);
    assert!(said(&r).contains("pass rewrite: true"), "{}", said(&r));
    assert_same(&before, &w.snapshot());
    let r = w.run(
        &w.recipe_in_root("r.rhai", &format!("{call}, #{{rewrite: true}});\n")),
        &[],
    );
    r.assert_code(0);
    let v: serde_json::Value = yaml_serde::from_str(&read(&w, "flow.yaml")).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"server": {"port": 80, "host": "a", "tls": true}})
    );
}

// ---------------------------------------------------------------- fs::extract

/// The release tree the archives hold, under `pkg-1.0/` (stripped by the recipe).
fn release_tree(w: &World) -> std::path::PathBuf {
    let src = w.dir.path().join("src");
    let pkg = src.join("pkg-1.0");
    if pkg.exists() {
        return src;
    }
    for (rel, content) in [
        ("bin/tool", "#!/bin/sh\necho tool\n"),
        ("etc/app.conf", "port = 8080\n"),
        ("share/doc/README", "read me\n"),
    ] {
        let p = pkg.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    sh(&format!(
        "chmod 755 {0}/bin/tool && ln -s app.conf {0}/etc/link.conf",
        pkg.display()
    ));
    src
}

/// The same release as tar, tar.gz, tar.zst and zip (by the real tools), and a
/// destination per format with a file the release replaces and one it leaves.
fn extract_setup(w: &World) {
    let src = release_tree(w);
    let root = w.root();
    let (s, r) = (src.display(), root.display());
    sh(&format!(
        "cd {s} && tar -cf {r}/app.tar pkg-1.0 && tar -czf {r}/app.tar.gz pkg-1.0 \
         && tar --zstd -cf {r}/app.tar.zst pkg-1.0 && zip -qry {r}/app.zip pkg-1.0"
    ));
    for d in ["tar", "tgz", "zst", "zip"] {
        w.write(&format!("{d}/etc/app.conf"), "port = 80\n");
        w.write(&format!("{d}/keep.txt"), "mine\n");
    }
}

const EXTRACT: &str = r#"
fs::extract("ROOT/app.tar", "ROOT/tar", #{strip_components: 1});
fs::extract("ROOT/app.tar.gz", "ROOT/tgz", #{strip_components: 1});
fs::extract("ROOT/app.tar.zst", "ROOT/zst", #{strip_components: 1});
let r = fs::extract("ROOT/app.zip", "ROOT/zip", #{strip_components: 1});
if r.changed && !r.diff.contains("changed etc/app.conf") { throw `diff: ${r.diff}`; }
fs::extract("ROOT/app.tar.gz", "ROOT/new/release");
"#;

fn extracted(d: &str) -> Vec<String> {
    [
        "bin",
        "bin/tool",
        "etc/app.conf",
        "etc/link.conf",
        "share",
        "share/doc",
        "share/doc/README",
    ]
    .iter()
    .map(|p| format!("{d}/{p}"))
    .collect()
}

fn extract_expect() -> Vec<String> {
    let mut expect: Vec<String> = ["tar", "tgz", "zst", "zip"]
        .iter()
        .flat_map(|d| extracted(d))
        .collect();
    expect.extend(
        [
            "new",
            "new/release",
            "new/release/pkg-1.0",
            "new/release/pkg-1.0/etc",
        ]
        .map(String::from),
    );
    expect.extend(
        extracted("new/release/pkg-1.0")
            .into_iter()
            .filter(|p| !p.ends_with("/etc")),
    );
    expect
}

fn extract_after(w: &World) {
    for d in ["tar", "tgz", "zst", "zip", "new/release/pkg-1.0"] {
        assert_eq!(read(w, &format!("{d}/etc/app.conf")), "port = 8080\n");
        assert_eq!(read(w, &format!("{d}/bin/tool")), "#!/bin/sh\necho tool\n");
        let mode = std::fs::metadata(w.root().join(format!("{d}/bin/tool")))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o755, "{d}/bin/tool");
        assert_eq!(
            std::fs::read_link(w.root().join(format!("{d}/etc/link.conf"))).unwrap(),
            std::path::PathBuf::from("app.conf")
        );
    }
    for d in ["tar", "tgz", "zst", "zip"] {
        assert_eq!(read(w, &format!("{d}/keep.txt")), "mine\n");
    }
}

#[test]
fn extract_plan_run_again_and_rollback() {
    let w = World::new();
    let expect = extract_expect();
    let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
    exact(&w, &extract_setup, EXTRACT, &expect);
    extract_after(&w);
}

/// `creates`: the step is skipped (the archive not even read) once that path exists.
#[test]
fn extract_with_creates_is_skipped() {
    let w = World::new();
    extract_setup(&w);
    w.write("tar/bin/tool", "already\n");
    let before = w.snapshot();
    let r = w.run(
        &w.recipe_in_root(
            "r.rhai",
            "fs::extract(\"ROOT/app.tar\", \"ROOT/tar\", #{strip_components: 1, creates: \"ROOT/tar/bin/tool\"});\n",
        ),
        &[],
    );
    r.assert_code(0);
    assert_eq!(r.changed_count(), 0);
    assert_same(&before, &w.snapshot());
}

/// One entry of a hand-made tar: name, kind, data or link target.
type Raw<'a> = (&'a str, tar::EntryType, &'a str);

/// A tar archive written header by header: what the real tools refuse to make.
fn raw_tar(entries: &[Raw]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, x) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_mtime(0);
        let data: &[u8] = if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.as_old_mut().linkname[..x.len()].copy_from_slice(x.as_bytes());
            h.set_size(0);
            &[]
        } else {
            h.set_size(x.len() as u64);
            x.as_bytes()
        };
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_archives_are_refused_before_anything_is_written() {
    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as L};
    let cases: Vec<(&str, Vec<Raw>, &str)> = vec![
        (
            "dotdot",
            vec![("ok", F, "x"), ("../evil", F, "x")],
            "climbs out with `..`",
        ),
        (
            "deep-dotdot",
            vec![("a/../../evil", F, "x")],
            "climbs out with `..`",
        ),
        (
            "absolute",
            vec![("/tmp/tend-evil", F, "x")],
            "absolute path",
        ),
        (
            "link-abs",
            vec![("l", L, "/etc")],
            "points out of the destination",
        ),
        (
            "link-up",
            vec![("l", L, "../outside")],
            "points out of the destination",
        ),
        (
            "link-then-file",
            vec![("l", L, "."), ("l/evil", F, "x")],
            "through the symlink l of the archive",
        ),
        (
            "link-chain",
            vec![
                ("sub", D, ""),
                ("sub/up", L, ".."),
                ("evil", L, "sub/up/.."),
            ],
            "leads through the symlink sub/up",
        ),
        (
            "kind-swap",
            vec![("a", L, "."), ("a", D, ""), ("a/x", F, "x")],
            "twice, as a symlink and as a directory",
        ),
        (
            "hardlink-out",
            vec![("f", F, "x"), ("g", H, "../outside/secret")],
            "climbs out with `..`",
        ),
        (
            "hardlink-to-nothing",
            vec![("g", H, "f"), ("f", F, "x")],
            "not a file earlier in the archive",
        ),
    ];
    for (name, entries, message) in cases {
        let w = World::new();
        w.write("outside/secret", "secret\n");
        w.mkdir("dest", 0o755);
        std::fs::write(w.root().join("evil.tar"), raw_tar(&entries)).unwrap();
        let before = w.snapshot();
        for extra in [&["--dry-run"][..], &[][..]] {
            let r = w.run(
                &w.recipe_in_root("r.rhai", "fs::extract(\"ROOT/evil.tar\", \"ROOT/dest\");\n"),
                extra,
            );
            assert_ne!(r.code, 0, "{name}: {}", r.stdout);
            assert!(
                said(&r).contains(message),
                "{name}: {message:?} not in {}",
                said(&r)
            );
            assert!(!said(&r).contains("panicked"), "{}", said(&r));
            assert_same(&before, &w.snapshot());
        }
        assert!(!std::path::Path::new("/tmp/tend-evil").exists());
    }
}

/// A hard link is written as a copy of the file it names, from the archive.
#[test]
fn extract_writes_a_hard_link_as_a_copy() {
    use tar::EntryType::{Link as H, Regular as F};
    let w = World::new();
    std::fs::write(
        w.root().join("a.tar"),
        raw_tar(&[("pkg/f", F, "same\n"), ("pkg/g", H, "pkg/f")]),
    )
    .unwrap();
    let r = w.run(
        &w.recipe_in_root(
            "r.rhai",
            "fs::extract(\"ROOT/a.tar\", \"ROOT/dest\", #{strip_components: 1});\n",
        ),
        &[],
    );
    r.assert_code(0);
    assert_eq!(read(&w, "dest/g"), "same\n");
    let meta = |p: &str| std::fs::symlink_metadata(w.root().join(p)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        meta("dest/f").ino(),
        meta("dest/g").ino(),
        "a copy, not a link"
    );
}

/// A symlink already in the destination is not written through.
#[test]
fn extract_does_not_write_through_a_symlink_in_the_destination() {
    let w = World::new();
    w.write("outside/keep", "keep\n");
    w.mkdir("dest", 0o755);
    w.symlink("dest/d", "../outside");
    std::fs::write(
        w.root().join("a.tar"),
        raw_tar(&[("d/keep", tar::EntryType::Regular, "overwritten\n")]),
    )
    .unwrap();
    let before = w.snapshot();
    let r = w.run(
        &w.recipe_in_root("r.rhai", "fs::extract(\"ROOT/a.tar\", \"ROOT/dest\");\n"),
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(
        said(&r).contains("a symlink in the destination"),
        "{}",
        said(&r)
    );
    assert_same(&before, &w.snapshot());
}

// --------------------------------------------------------------- fs::download

const PAYLOAD: &str = "release 1.2.3\n";

/// An HTTP/1.0 server on 127.0.0.1: `/file` serves [`PAYLOAD`], `/app.tar.gz` a
/// small release archive, anything else 404. Counts the requests for `/file`.
fn http_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let archive = Arc::new(release_tar_gz());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let counter = counter.clone();
            let archive = archive.clone();
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
                let (status, body): (&str, &[u8]) = match path.as_str() {
                    "/file" => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", PAYLOAD.as_bytes())
                    }
                    "/app.tar.gz" => ("200 OK", &archive[..]),
                    _ => ("404 Not Found", b"not here\n"),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.0 {status}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(body);
            });
        }
    });
    (port, hits)
}

/// `app/bin/run` and `app/VERSION`, as tar.gz.
fn release_tar_gz() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (name, data, mode) in [
        ("app/bin/run", "#!/bin/sh\n", 0o755),
        ("app/VERSION", "1.2.3\n", 0o644),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A download then the extraction of what it downloaded: the dry-run plans the
/// extraction from the archive it only would have downloaded (kept in its overlay).
#[test]
fn download_then_extract_plans_exactly() {
    let (port, _) = http_server();
    let w = World::new();
    let body = format!(
        "fs::download(\"http://127.0.0.1:{port}/app.tar.gz\", \"ROOT/app.tar.gz\");\n\
         fs::extract(\"ROOT/app.tar.gz\", \"ROOT/opt\", #{{strip_components: 1}});\n"
    );
    exact(
        &w,
        &|_: &World| {},
        &body,
        &["app.tar.gz", "opt", "opt/bin", "opt/bin/run", "opt/VERSION"],
    );
    assert_eq!(read(&w, "opt/VERSION"), "1.2.3\n");
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn download_setup(w: &World) {
    w.write("dl/old.bin", "old\n");
}

#[test]
fn download_plan_run_again_and_rollback() {
    let (port, _) = http_server();
    let w = World::new();
    let body = format!(
        "fs::download(\"http://127.0.0.1:{port}/file\", \"ROOT/dl/old.bin\");\n\
         fs::download(\"http://127.0.0.1:{port}/file\", \"ROOT/dl/new.bin\", #{{from: \"controller\", mode: 0o600}});\n"
    );
    exact(&w, &download_setup, &body, &["dl/old.bin", "dl/new.bin"]);
    assert_eq!(read(&w, "dl/old.bin"), PAYLOAD);
    assert_eq!(read(&w, "dl/new.bin"), PAYLOAD);
}

/// With the checksum given and already at dest, nothing is fetched at all.
#[test]
fn download_with_a_matching_checksum_fetches_nothing() {
    let (port, hits) = http_server();
    let w = World::new();
    let sum = sha256_hex(PAYLOAD.as_bytes());
    let body = format!(
        "fs::download(\"http://127.0.0.1:{port}/file\", \"ROOT/dl/new.bin\", #{{sha256: \"{sum}\"}});\n"
    );
    exact(&w, &download_setup, &body, &["dl/new.bin"]);
    let recipe = w.recipe_in_root("again.rhai", &body);
    for from in ["", "--dry-run"] {
        let before = hits.load(Ordering::SeqCst);
        let args: Vec<&str> = [from].into_iter().filter(|a| !a.is_empty()).collect();
        let r = w.run(&recipe, &args);
        r.assert_code(0);
        assert_eq!(r.changed_count(), 0);
        assert_eq!(hits.load(Ordering::SeqCst), before, "fetched again");
    }
}

#[test]
fn download_with_a_wrong_checksum_leaves_dest_untouched() {
    let (port, _) = http_server();
    let wrong = sha256_hex(b"something else");
    let right = sha256_hex(PAYLOAD.as_bytes());
    for from in ["target", "controller"] {
        let w = World::new();
        download_setup(&w);
        let before = w.snapshot();
        for extra in [&["--dry-run"][..], &[][..]] {
            let r = w.run(
                &w.recipe_in_root(
                    "r.rhai",
                    &format!(
                        "fs::download(\"http://127.0.0.1:{port}/file\", \"ROOT/dl/old.bin\", #{{sha256: \"{wrong}\", from: \"{from}\"}});\n"
                    ),
                ),
                extra,
            );
            assert_ne!(r.code, 0);
            let msg = said(&r);
            assert!(
                msg.contains(&format!("its SHA-256 is {right}, not the expected {wrong}"))
                    && msg.contains("was not touched"),
                "{from}: {msg}"
            );
            assert_same(&before, &w.snapshot());
        }
        // A missing file fails too, and leaves nothing behind.
        let r = w.run(
            &w.recipe_in_root(
                "r.rhai",
                &format!("fs::download(\"http://127.0.0.1:{port}/nothing\", \"ROOT/dl/x\", #{{from: \"{from}\"}});\n"),
            ),
            &[],
        );
        assert_ne!(r.code, 0);
        assert!(said(&r).contains("404"), "{from}: {}", said(&r));
        assert_same(&before, &w.snapshot());
    }
}

// ------------------------------------------------------------------ over SSH

#[test]
fn json_and_extract_over_ssh() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    exact(
        &w,
        &json_setup,
        JSON,
        &["app.json", "new.json", "empty.json"],
    );
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    let expect = extract_expect();
    let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
    exact(&w, &extract_setup, EXTRACT, &expect);
    extract_after(&w);
}

/// `fs::yaml` and `fs::download` (fetched by the host's curl, and a wrong checksum
/// refused there) over a real sshd as well.
#[test]
fn yaml_and_download_over_ssh() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    exact(&w, &yaml_setup, YAML, &["app.yaml", "new.yaml"]);
    let (port, _) = http_server();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    let body = format!(
        "let r = fs::download(\"http://127.0.0.1:{port}/file\", \"ROOT/dl/old.bin\");\n\
         if r.changed && !r.diff.contains(\"+release 1.2.3\") {{ throw r.diff; }}\n"
    );
    exact(&w, &download_setup, &body, &["dl/old.bin"]);
    assert_eq!(read(&w, "dl/old.bin"), PAYLOAD);
    let before = w.snapshot();
    let wrong = sha256_hex(b"other");
    let r = w.run(
        &w.recipe_in_root(
            "r.rhai",
            &format!("fs::download(\"http://127.0.0.1:{port}/file\", \"ROOT/dl/old.bin\", #{{sha256: \"{wrong}\"}});\n"),
        ),
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(
        said(&r).contains("fetched by h1 (curl)") && said(&r).contains("was not touched"),
        "{}",
        said(&r)
    );
    assert_same(&before, &w.snapshot());
}

/// The same steps as root through `sudo -n` on the host (`become: true`): planned,
/// run and rolled back as root.
#[test]
fn json_and_extract_over_ssh_with_become() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    let body = format!(
        "become(|| {{\n{JSON}\n{}\n}});\n",
        EXTRACT.replace("if r.changed", "if false")
    );
    let mut expect = extract_expect();
    expect.extend(["app.json", "new.json", "empty.json"].map(String::from));
    let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
    let setup = |w: &World| {
        json_setup(w);
        extract_setup(w);
    };
    exact(&w, &setup, &body, &expect);
    extract_after(&w);
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(w.root().join("tar/bin/tool")).unwrap(),
    );
    assert_eq!(owner, 0, "written by root");
}
