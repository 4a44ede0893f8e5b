//! Inventories read as Ansible reads them: `tend hosts --json` and `--graph` against
//! the real `ansible-inventory` (ansible-core from PyPI, installed by .ci/run) on INI
//! and YAML inventories; typed variables in recipes; empty groups; `local`; no
//! inventory; `--private-key`; known_hosts files named by ssh config, checked against
//! a real sshd.
//!
//! Without `ansible-inventory` the comparisons are skipped with a note, except under
//! CI (`CI` set), where a missing tool fails them.

#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sshd::Sshd;
use support::{Run, World};

/// `ansible-inventory` on PATH or where .ci/run installs it; `None` (skip) only
/// outside CI.
fn ansible_inventory() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ansible-inventory"))
            .find(|p| p.is_file())
    });
    let found = on_path.or_else(|| {
        let p = PathBuf::from("/opt/ansible/bin/ansible-inventory");
        p.is_file().then_some(p)
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "ansible-inventory is missing; .ci/run installs ansible-core into /opt/ansible"
        );
        eprintln!("ansible-inventory not found: comparison skipped (CI installs it)");
    }
    found
}

/// A world whose HOME is empty: no ~/.ssh/config, no known_hosts, no tend.toml.
fn world() -> World {
    let w = World::new();
    std::fs::create_dir_all(w.dir.path().join("home")).unwrap();
    w
}

fn home(w: &World) -> PathBuf {
    w.dir.path().join("home")
}

fn tend(w: &World, args: &[&str]) -> Run {
    let mut c = w.command();
    c.env("HOME", home(w)).args(args);
    Run::from(c.output().unwrap())
}

fn ansible(bin: &Path, w: &World, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .env("HOME", home(w))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "1")
        .current_dir(w.dir.path())
        .output()
        .expect("run ansible-inventory");
    assert!(
        out.status.success(),
        "ansible-inventory {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Host → (its variables, every group it is in but `all`).
type View = BTreeMap<String, (Value, BTreeSet<String>)>;

fn ansible_view(list: &str) -> View {
    let doc: Value = serde_json::from_str(list).unwrap();
    let groups = doc.as_object().unwrap();
    // Direct members and children, then membership through children.
    let mut direct: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut parents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (g, body) in groups.iter().filter(|(g, _)| *g != "_meta") {
        for h in body["hosts"].as_array().into_iter().flatten() {
            direct
                .entry(h.as_str().unwrap().to_string())
                .or_default()
                .insert(g.clone());
        }
        for c in body["children"].as_array().into_iter().flatten() {
            parents
                .entry(c.as_str().unwrap().to_string())
                .or_default()
                .push(g.clone());
        }
    }
    let hostvars = doc["_meta"]["hostvars"].as_object().unwrap();
    let mut hosts: BTreeSet<String> = hostvars.keys().cloned().collect();
    hosts.extend(direct.keys().cloned());
    hosts
        .into_iter()
        .map(|h| {
            let mut todo: Vec<String> = direct.get(&h).into_iter().flatten().cloned().collect();
            let mut all = BTreeSet::new();
            while let Some(g) = todo.pop() {
                if g != "all" && all.insert(g.clone()) {
                    todo.extend(parents.get(&g).into_iter().flatten().cloned());
                }
            }
            let vars = hostvars.get(&h).cloned().unwrap_or_else(|| json!({}));
            (h, (vars, all))
        })
        .collect()
}

fn tend_view(lines: &str) -> View {
    lines
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let groups = v["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_str().unwrap().to_string())
                .collect();
            (
                v["name"].as_str().unwrap().to_string(),
                (v["vars"].clone(), groups),
            )
        })
        .collect()
}

/// `tend hosts --json` and `--graph` agree with `ansible-inventory --list` and
/// `--graph` on `file` (written into a fresh world), and return tend's view.
fn agree(name: &str, text: &str) -> Option<View> {
    let bin = ansible_inventory()?;
    let w = world();
    let inv = w.beside(name, text);
    let inv = inv.to_str().unwrap();

    let list = ansible(&bin, &w, &["-i", inv, "--list"]);
    let r = tend(&w, &["hosts", "-i", inv, "--json"]);
    r.assert_code(0);
    let (theirs, ours) = (ansible_view(&list), tend_view(&r.stdout));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{name}: hosts"
    );
    for (h, (vars, groups)) in &theirs {
        let (our_vars, our_groups) = &ours[h];
        assert_eq!(our_vars, vars, "{name}: variables of {h}");
        assert_eq!(our_groups, groups, "{name}: groups of {h}");
    }

    let graph = ansible(&bin, &w, &["-i", inv, "--graph"]);
    let r = tend(&w, &["hosts", "-i", inv, "--graph"]);
    r.assert_code(0);
    assert_eq!(r.stdout.trim_end(), graph.trim_end(), "{name}: --graph");
    Some(ours)
}

const INI: &str = r#"# before any section: ungrouped
solo count=4 ratio=0.5 flag=True word=true answer=yes ports="[80, 443]" spaced='x y' nothing=None octal=010 hex=0x10 neg=-3 big=1_000 quoted="4" map="{'a': 1}" empty=

[web]
web[1:3] tier=front
web1 ansible_port=2222

[db]
db1 shards=2
web2

[empty]

[prod:children]
web
db

[canary:children]
empty

[web:vars]
http_port=8080
who = "web"
list = [1, 'two']
words = hello world
ansible_group_priority = 1

[db:vars]
who=db
http_port=5432
ansible_group_priority=10

[prod:vars]
http_port=80
who=prod
env=prod
"#;

#[test]
fn ini_hosts_groups_typed_vars_and_graph_agree_with_ansible() {
    let Some(ours) = agree("hosts.ini", INI) else {
        return;
    };
    // What the comparison covered, spelled out: literal evaluation…
    let solo = &ours["solo"].0;
    assert_eq!(solo["count"], json!(4));
    assert_eq!(solo["ratio"], json!(0.5));
    assert_eq!(solo["flag"], json!(true));
    assert_eq!(solo["word"], json!("true"));
    assert_eq!(solo["answer"], json!("yes"));
    assert_eq!(solo["ports"], json!([80, 443]));
    assert_eq!(solo["octal"], json!("010"));
    // …and `ansible_group_priority`: db (10) beats web (1) for web2, and is no variable.
    let web2 = &ours["web2"].0;
    assert_eq!(web2["who"], json!("db"));
    assert_eq!(web2["http_port"], json!(5432));
    assert!(web2.get("ansible_group_priority").is_none());
    assert_eq!(ours["web1"].0["who"], json!("web"));
}

const YAML: &str = r#"
all:
  vars:
    level: all
    count: 1
  hosts:
    solo:
      ratio: 0.5
      ports: [80, 443]
      nested: {a: [1, {b: true}]}
      nothing: null
      plain_yes: yes
      plain_off: off
      quoted_yes: "yes"
      single_on: 'on'
      octal: 010
      thousand: 1_000
      base60: 1:30
  children:
    web:
      vars:
        level: web
        http_port: 8080
        ansible_group_priority: 5
      hosts:
        web[01:03]:
          tier: front
    db:
      vars:
        level: db
        quoted: "4"
      hosts:
        db1:
        web02:
    prod:
      children:
        web:
        db:
        empty:
      vars:
        level: prod
        env: prod
"#;

#[test]
fn yaml_hosts_groups_typed_vars_and_graph_agree_with_ansible() {
    let Some(ours) = agree("hosts.yml", YAML) else {
        return;
    };
    let web02 = &ours["web02"].0;
    assert_eq!(web02["level"], json!("web"), "priority 5 beats db's 1");
    assert_eq!(web02["http_port"], json!(8080));
    assert_eq!(web02["quoted"], json!("4"));
    let solo = &ours["solo"].0;
    assert_eq!(solo["nested"], json!({"a": [1, {"b": true}]}));
    // YAML 1.1, as Ansible reads it: plain `yes`/`off` are booleans, quoted ones not.
    assert_eq!(solo["plain_yes"], json!(true));
    assert_eq!(solo["plain_off"], json!(false));
    assert_eq!(solo["quoted_yes"], json!("yes"));
    assert_eq!(solo["octal"], json!(8));
}

#[test]
fn inventory_without_ungrouped_hosts_agrees_with_ansible() {
    agree(
        "only-groups.ini",
        "[a]\nh1\n[b]\nh1\nh2\n[a:vars]\nx=a\n[b:vars]\nx=b\n[c]\n[c:vars]\ny=1\n",
    );
}

#[test]
fn variables_reach_recipes_typed_and_local_is_this_machine_with_its_vars() {
    let w = world();
    w.beside(
        "tend.toml",
        "[hosts.local]\napp_dir = \"/srv/app\"\nreplicas = 3\n",
    );
    let inv = w.beside(
        "extra.ini",
        "[edge]\nlocal http_port=8080 ratio=0.5 ports=\"[80, 443]\" flag=True word=yes\n",
    );
    let out = w.path("out.txt");
    let recipe = w.recipe(
        "typed.rhai",
        &format!(
            "let v = host().vars;\n\
             fs::file(\"{out}\", `${{v.http_port + 1}} ${{v.ratio * 2.0}} ${{v.ports[1]}} \
             ${{v.flag == true}} ${{v.word}} ${{v.replicas + 1}} ${{v.app_dir}}`);\n"
        ),
    );
    let inv = inv.to_str().unwrap();

    let r = tend(
        &w,
        &[
            "run",
            recipe.to_str().unwrap(),
            "-H",
            "local",
            "-i",
            inv,
            "--unvetted",
        ],
    );
    r.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "8081 1.0 443 true yes 4 /srv/app"
    );
    // Without -H too: `local` has one meaning, this machine with its variables.
    std::fs::remove_file(&out).unwrap();
    let r = tend(
        &w,
        &["run", recipe.to_str().unwrap(), "-i", inv, "--unvetted"],
    );
    r.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "8081 1.0 443 true yes 4 /srv/app"
    );

    // `tend hosts` says the same: this machine, its groups and variables, and where.
    let r = tend(&w, &["hosts", "-i", inv, "--json"]);
    r.assert_code(0);
    let local: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(local["name"], "local");
    assert_eq!(local["local"], true);
    assert_eq!(local["groups"], json!(["edge"]));
    assert_eq!(local["vars"]["http_port"], json!(8080));
    assert_eq!(local["vars"]["replicas"], json!(3));
    assert!(
        local["source"].as_str().unwrap().ends_with("tend.toml:1"),
        "{local}"
    );
    let r = tend(&w, &["hosts", "-i", inv]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("local (this machine, no SSH)"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("ssh root@local"), "{}", r.stdout);
}

#[test]
fn empty_groups_select_no_host() {
    let w = world();
    let inv = w.beside("hosts.ini", "[web]\nweb1\n[empty]\n");
    let inv = inv.to_str().unwrap();
    for pattern in ["@empty", "empty", "@ungrouped", "@empty,@ungrouped"] {
        let r = tend(&w, &["hosts", pattern, "-i", inv, "--json"]);
        r.assert_code(0);
        assert_eq!(r.stdout, "", "{pattern}");
    }
    let r = tend(&w, &["ping", "-H", "@empty", "-i", inv, "--json"]);
    r.assert_code(0);
    assert_eq!(r.stdout, "");
    // A typo is still one.
    let r = tend(&w, &["hosts", "@emtpy", "-i", inv]);
    r.assert_code(64);
    assert!(r.stderr.contains("did you mean `empty`"), "{}", r.stderr);
    // A run must not take "no host" for "this machine".
    let out = w.path("touched");
    let recipe = w.recipe("touch.rhai", &format!("fs::file(\"{out}\", \"x\");\n"));
    let r = tend(
        &w,
        &[
            "run",
            recipe.to_str().unwrap(),
            "-H",
            "@empty",
            "-i",
            inv,
            "--unvetted",
        ],
    );
    r.assert_code(64);
    assert!(r.stderr.contains("selects no host"), "{}", r.stderr);
    assert!(!Path::new(&out).exists());
}

#[test]
fn a_host_only_a_group_lists_is_flagged_where_it_came_from() {
    let w = world();
    w.beside(
        "tend.toml",
        "[hosts.web1]\naddress = \"10.0.0.5\"\n\n[groups.web]\nhosts = [\"web1\", \"web9\"]\n",
    );
    let r = tend(&w, &["hosts", "--json"]);
    r.assert_code(0);
    let web9: Value = serde_json::from_str(r.stdout.lines().nth(1).unwrap()).unwrap();
    assert_eq!(web9["name"], "web9");
    assert_eq!(
        web9["address"], "web9",
        "Ansible's meaning: a host of that name"
    );
    assert_eq!(
        web9["source"], "tend.toml:5 (only listed in group `web`)",
        "{web9}"
    );
    assert!(
        r.stderr
            .contains("group `web` lists host `web9`, which no [hosts.web9]"),
        "{}",
        r.stderr
    );
}

#[test]
fn no_inventory_means_this_machine_for_hosts_and_ping() {
    let w = world();
    let r = tend(&w, &["hosts", "--json"]);
    r.assert_code(0);
    let h: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        (h["name"].as_str(), h["local"].as_bool()),
        (Some("local"), Some(true))
    );
    let r = tend(&w, &["ping", "--json"]);
    r.assert_code(0);
    let p: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        (p["host"].as_str(), p["ok"].as_bool()),
        (Some("local"), Some(true))
    );
    let r = tend(&w, &["hosts", "--graph"]);
    r.assert_code(0);
    assert_eq!(r.stdout, "@all:\n  |--@ungrouped:\n");
}

#[test]
fn a_private_key_that_does_not_exist_is_an_error_naming_it() {
    let w = world();
    let missing = w.dir.path().join("keys/nope");
    let missing = missing.to_str().unwrap();
    for args in [
        vec!["ping", "--private-key", missing],
        vec![
            "exec",
            "-H",
            "10.0.0.7",
            "--private-key",
            missing,
            "--",
            "true",
        ],
        vec!["hosts", "--private-key", missing],
    ] {
        let r = tend(&w, &args);
        r.assert_code(64);
        assert!(
            r.stderr
                .contains(&format!("--private-key {missing} does not exist")),
            "{args:?}: {}",
            r.stderr
        );
    }
}

/// An inventory host reached through a real sshd whose key is only in the files an
/// ssh config names; HOME has no known_hosts of its own.
fn ping_with_ssh_config(s: &Sshd, w: &World, config: &str) -> Run {
    let cfg = w.beside("ssh_config", config);
    let inv = w.beside(
        "hosts.ini",
        &format!(
            "[box]\nbox1 ansible_host=127.0.0.1 ansible_port={} ansible_user=root \
             ansible_ssh_private_key_file={}\n",
            s.port,
            s.client_key.display()
        ),
    );
    tend(
        w,
        &[
            "ping",
            "-H",
            "box1",
            "-i",
            inv.to_str().unwrap(),
            "-F",
            cfg.to_str().unwrap(),
            "--json",
        ],
    )
}

fn ping_ok(r: &Run) -> bool {
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap_or(Value::Null);
    v["ok"] == json!(true)
}

#[test]
fn user_known_hosts_file_from_ssh_config_is_read() {
    let s = Sshd::start();
    let w = world();
    let user_file = w.beside("user_known_hosts", &s.known_hosts_line());
    let r = ping_with_ssh_config(
        &s,
        &w,
        &format!("Host *\n  UserKnownHostsFile {}\n", user_file.display()),
    );
    assert!(ping_ok(&r), "{}{}", r.stdout, r.stderr);

    // The same without the key there: refused as unknown, so the file was what let
    // it in.
    std::fs::write(&user_file, "").unwrap();
    let r = ping_with_ssh_config(
        &s,
        &w,
        &format!("Host *\n  UserKnownHostsFile {}\n", user_file.display()),
    );
    assert!(!ping_ok(&r));
    assert!(r.stdout.contains("unknown host key"), "{}", r.stdout);
}

#[test]
fn the_system_wide_known_hosts_file_is_read_for_inventory_hosts() {
    // The system-wide file is /etc/ssh/ssh_known_hosts unless ssh config's
    // GlobalKnownHostsFile moves it: a test can't write the real one.
    let s = Sshd::start();
    let w = world();
    let global = w.beside("global_known_hosts", &s.known_hosts_line());
    let empty_user = w.beside("user_known_hosts", "");
    let r = ping_with_ssh_config(
        &s,
        &w,
        &format!(
            "Host *\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile {}\n",
            empty_user.display(),
            global.display()
        ),
    );
    assert!(ping_ok(&r), "{}{}", r.stdout, r.stderr);

    // With only the user's file moved, the system-wide default is still looked at,
    // after it (the order ssh uses).
    let cfg = w.beside(
        "ssh_config2",
        &format!("Host *\n  UserKnownHostsFile {}\n", empty_user.display()),
    );
    let inv =
        tend::inventory::Inventory::load_exact(None, &[w.beside("one.ini", "web1\n")], Some(&cfg))
            .unwrap();
    assert_eq!(
        inv.get("web1").unwrap().known_hosts,
        [empty_user, PathBuf::from("/etc/ssh/ssh_known_hosts")]
    );
}
