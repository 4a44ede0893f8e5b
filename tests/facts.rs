//! `host()` facts and `fs::free`, compared with what this machine says (`uname`,
//! `nproc`, /etc/os-release, /proc/meminfo, `df`), locally and over a real sshd (the
//! same machine); gathered only when read, once per run; and templates that see
//! `host` and the host's variables without being passed them.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use sshd::Sshd;
use support::{Run, World};

fn machine(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(out.status.success(), "{cmd}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn logs(r: &Run) -> Vec<String> {
    r.events()
        .iter()
        .filter(|e| e["event"] == "log")
        .filter_map(|e| e["message"].as_str().map(String::from))
        .collect()
}

fn os_release(key: &str) -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(String::from))
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

/// `df -P -k PATH`: (size, available) in bytes.
fn df(path: &str) -> (u64, u64) {
    let out = machine(&format!("df -P -k {path} | tail -1"));
    let f: Vec<&str> = out.split_whitespace().collect();
    (
        f[1].parse::<u64>().unwrap() * 1024,
        f[3].parse::<u64>().unwrap() * 1024,
    )
}

const FACTS: &str = r#"
let h = host();
log::info(h.kernel);
log::info(h.arch);
log::info(`${h.cpus}`);
log::info(h.hostname);
log::info(h.distro);
log::info(h.distro_version);
log::info(`${h.memory}`);
log::info(h.init);
log::info(`${h.mounts.filter(|m| m.path == "/")[0].size}`);
log::info(`${fs::free("/")}`);
log::info(`${fs::free("/no/such/dir/yet")}`);
log::info(h.addresses.ipv4);
log::info(h.os);
"#;

fn check_facts(r: &Run) {
    r.assert_code(0);
    let l = logs(r);
    assert_eq!(l.len(), 13, "{}", r.stdout);
    assert_eq!(l[0], machine("uname -r"));
    assert_eq!(l[1], machine("uname -m"));
    assert_eq!(l[2], machine("nproc"));
    assert_eq!(l[3], machine("cat /proc/sys/kernel/hostname"));
    assert_eq!(l[4], os_release("ID"));
    assert_eq!(l[5], os_release("VERSION_ID"));
    let kb: u64 = machine("awk '/^MemTotal:/ {print $2}' /proc/meminfo")
        .parse()
        .unwrap();
    assert_eq!(l[6], (kb * 1024).to_string());
    let init = if std::path::Path::new("/run/systemd/system").exists() {
        "systemd"
    } else {
        "sysv"
    };
    assert_eq!(l[7], init);
    let (size, avail) = df("/");
    assert_eq!(l[8], size.to_string());
    // Free space moves while other processes write: within 1% of what df says.
    for free in [&l[9], &l[10]] {
        let free: u64 = free.parse().unwrap();
        assert!(
            free.abs_diff(avail) <= avail / 100,
            "fs::free {free}, df {avail}"
        );
    }
    let all = machine("hostname -I 2>/dev/null || true");
    if !l[11].is_empty() {
        assert!(
            all.split_whitespace().any(|a| a == l[11]),
            "{} in {all}",
            l[11]
        );
    }
    assert_eq!(l[12], "linux");
}

#[test]
fn host_facts_are_what_the_machine_says_locally() {
    let w = World::new();
    check_facts(&w.run(&w.recipe("r.rhai", FACTS), &[]));
    check_facts(&w.run(&w.recipe("r.rhai", FACTS), &["--dry-run"]));
}

#[test]
fn host_facts_are_what_the_machine_says_over_ssh() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    check_facts(&w.run(&w.recipe("r.rhai", FACTS), &[]));
}

/// A PATH whose `nproc` and `uname` note each call in `calls` before running the
/// real ones.
fn counting_path(w: &World) -> (String, std::path::PathBuf) {
    let bin = w.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = w.dir.path().join("calls");
    for tool in ["nproc", "uname", "df"] {
        let real = machine(&format!("command -v {tool}"));
        let p = bin.join(tool);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho {tool} >> {}\nexec {real} \"$@\"\n",
                calls.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    (path, calls)
}

#[test]
fn facts_are_gathered_only_when_read_and_once_per_run() {
    let w = World::new();
    let (path, calls) = counting_path(&w);
    let none = w.recipe(
        "none.rhai",
        "log::info(host().name);\nfs::file(\"x\", \"y\");\n",
    );
    w.run_env(&none, &["--dry-run"], &[("PATH", &path)])
        .assert_code(0);
    assert!(!calls.exists(), "{:?}", std::fs::read_to_string(&calls));

    let twice = w.recipe(
        "twice.rhai",
        "log::info(`${host().cpus} ${host().cpus} ${host().arch}`);\nlet m = host().mounts;\nlet n = host().mounts;\n",
    );
    let r = w.run_env(&twice, &[], &[("PATH", &path)]);
    r.assert_code(0);
    let n = machine("nproc");
    assert_eq!(logs(&r), vec![format!("{n} {n} {}", machine("uname -m"))]);
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "nproc\nuname\ndf\n",
        "each fact asked of the host once"
    );
}

#[test]
fn templates_see_host_and_its_vars_and_their_own_vars_win() {
    let h = Sshd::start_tendtest();
    let w = World::new();
    w.over_ssh(&h.user, h.port, &h.client_key, &h.known_hosts_line());
    let toml = w.dir.path().join("tend.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str("http_port = 8080\ncolor = \"red\"\n");
    std::fs::write(&toml, text).unwrap();
    w.beside(
        "app.conf.j2",
        "name={{ host.name }} kernel={{ host.kernel }} cpus={{ host.cpus }}\n\
         port={{ http_port }} vport={{ host.vars.http_port + 1 }} color={{ color }}\n",
    );
    let recipe = w.recipe(
        "r.rhai",
        &format!(
            "fs::template(\"{}\", \"app.conf.j2\", #{{color: \"blue\"}});\n",
            w.path("app.conf")
        ),
    );
    let dry = w.run(&recipe, &["--dry-run"]);
    dry.assert_code(0);
    assert!(!w.root().join("app.conf").exists());
    w.run(&recipe, &[]).assert_code(0);
    assert_eq!(
        std::fs::read_to_string(w.root().join("app.conf")).unwrap(),
        format!(
            "name=h1 kernel={} cpus={}\nport=8080 vport=8081 color=blue\n",
            machine("uname -r"),
            machine("nproc")
        )
    );
    let missing = w.recipe(
        "m.rhai",
        &format!(
            "fs::file(\"{}\", #{{template: \"m.j2\", vars: #{{}}}});\n",
            w.path("m")
        ),
    );
    w.beside("m.j2", "{{ host.no_such_fact }}\n");
    let r = w.run(&missing, &[]);
    assert_ne!(r.code, 0);
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("m.j2"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}
