//! Inventory and host targeting, through the library: tend.toml, Ansible INI and YAML,
//! ~/.ssh/config, variable precedence, and `-H` / `--limit` patterns. Files live in
//! temporary folders; nothing touches the network or the real ~/.ssh/config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tend::error::Error;
use tend::inventory::{Host, Inventory};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn names(hosts: &[Host]) -> Vec<&str> {
    hosts.iter().map(|h| h.name.as_str()).collect()
}

fn all_names(inv: &Inventory) -> Vec<String> {
    inv.hosts().iter().map(|h| h.name.clone()).collect()
}

/// A variable as text (`5` for the int 5), as connection settings read it.
fn var(h: &Host, k: &str) -> Option<String> {
    h.vars.get(k).map(tend::inventory::var_text)
}

fn usage_message(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Usage(m)) => m,
        other => panic!("expected a usage error, got {other:?}"),
    }
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
}

const TOML: &str = r#"
[defaults]
forks = 5

[[schedule]]
cron = "@daily"
recipe = "recipes/log-rotate.rhai"
hosts = "web"

[hosts.web1]
address = "10.0.0.5"
port = 2222
user = "deploy"
identity_file = "keys/web"
become = true
tier = "front"
max = 5
[hosts.web1.vars]
role = "nginx"

[hosts.db1]
groups = ["backup"]
address = "10.0.1.1"
proxy_jump = "bastion"
connect_timeout = "5s"
identities_only = true

[groups.web]
hosts = ["web1", "web2"]
children = ["canary"]
vars = { http_port = 80, env = "web" }

[groups.canary]
hosts = ["web2"]
vars = { env = "canary" }

[groups.prod]
children = ["web", "dbs"]
vars = { env = "prod", region = "eu" }
user = "ops"

[groups.dbs]
hosts = ["db1"]

[groups.all]
vars = { ntp = "pool.ntp.org", env = "all" }
"#;

#[test]
fn toml_hosts_groups_children_and_vars() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tend.toml", TOML);
    let inv = Inventory::load_exact(Some(&cfg), &[], None).unwrap();

    // Order: as the file first names them; web2 is only listed in a group.
    assert_eq!(all_names(&inv), ["web1", "db1", "web2"]);

    let web1 = inv.get("web1").unwrap();
    assert_eq!(web1.address, "10.0.0.5");
    assert_eq!(web1.port, Some(2222));
    assert_eq!(
        web1.user.as_deref(),
        Some("deploy"),
        "host setting beats group `user`"
    );
    assert_eq!(web1.identity_files, [dir.path().join("keys/web")]);
    assert!(web1.become_);
    assert!(!web1.identities_only);
    assert_eq!(web1.groups, ["prod", "web"]);
    assert_eq!(var(web1, "tier").as_deref(), Some("front"));
    assert_eq!(var(web1, "max").as_deref(), Some("5"));
    assert_eq!(var(web1, "role").as_deref(), Some("nginx"));
    assert_eq!(var(web1, "http_port").as_deref(), Some("80"));
    assert_eq!(
        var(web1, "env").as_deref(),
        Some("web"),
        "child group `web` beats parent `prod` and `all`"
    );
    assert_eq!(var(web1, "region").as_deref(), Some("eu"));
    assert_eq!(var(web1, "ntp").as_deref(), Some("pool.ntp.org"));
    assert!(!web1.vars.contains_key("address") && !web1.vars.contains_key("become"));
    assert!(web1.source.ends_with("tend.toml:10"), "{}", web1.source);

    let db1 = inv.get("db1").unwrap();
    assert_eq!(db1.user.as_deref(), Some("ops"), "group connection setting");
    assert_eq!(db1.proxy_jump.as_deref(), Some("bastion"));
    assert_eq!(db1.connect_timeout, Some(Duration::from_secs(5)));
    assert!(db1.identities_only);
    assert_eq!(var(db1, "env").as_deref(), Some("prod"));
    assert_eq!(db1.groups, ["backup", "prod", "dbs"], "depth, then name");

    let web2 = inv.get("web2").unwrap();
    assert_eq!(web2.address, "web2", "undefined host: address = name");
    assert_eq!(web2.port, None);
    assert_eq!(web2.groups, ["prod", "web", "canary"]);
    assert_eq!(
        var(web2, "env").as_deref(),
        Some("canary"),
        "deepest group wins"
    );
    assert!(
        web2.source
            .ends_with("tend.toml:29 (only listed in group `web`)"),
        "{}",
        web2.source
    );

    let groups = inv.groups();
    assert_eq!(groups["prod"], ["web1", "db1", "web2"]);
    assert_eq!(groups["web"], ["web1", "web2"]);
    assert_eq!(groups["canary"], ["web2"]);
    assert_eq!(groups["all"], ["web1", "db1", "web2"]);
    assert_eq!(groups["backup"], ["db1"]);
    // Always a group, as in Ansible (so `-H @ungrouped` selects no host, not a typo).
    assert_eq!(groups["ungrouped"], Vec::<String>::new());
}

#[test]
fn toml_errors_name_the_line_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str, needles: &[&str]| {
        let cfg = write(dir.path(), "tend.toml", text);
        let m = usage_message(Inventory::load_exact(Some(&cfg), &[], None));
        for n in needles {
            assert!(m.contains(n), "`{n}` not in: {m}");
        }
    };
    check(
        "[groups.prod]\nchildren = [\"webs\"]\n",
        &["tend.toml:2", "`webs`", "define [groups.webs]"],
    );
    check(
        "[hosts.web1]\n[groups.prod]\nchildren = [\"web1\"]\n",
        &["tend.toml:3", "is a host"],
    );
    check("[hosts.web1]\nport = \"abc\"\n", &["tend.toml:2", "port"]);
    check(
        "[groups.web]\nhost = [\"a\"]\n",
        &["tend.toml:2", "unknown key `host`", "hosts"],
    );
    check("[hosts.web1\n", &["tend.toml:1"]);
    check(
        "[groups.a]\nchildren = [\"b\"]\n[groups.b]\nchildren = [\"a\"]\n",
        &["contain each other", "a → b → a"],
    );
    check("[hosts.\"web[03:01]\"]\n", &["tend.toml:1", "greater"]);
    let missing = usage_message(Inventory::load_exact(
        Some(&dir.path().join("nope.toml")),
        &[],
        None,
    ));
    assert!(
        missing.contains("nope.toml") && missing.contains("does not exist"),
        "{missing}"
    );
}

const INI: &str = r#"# an Ansible inventory
bastion.example.com

[web]
web[01:03] ansible_user=deploy
web01 ansible_host=10.0.0.5 ansible_port=2222 foo=bar   # inline comment

[db]
db-[a:c].example.com ansible_ssh_private_key_file=~/.ssh/db ansible_become=yes

; another comment style
[prod:children]
web
db

[prod:vars]
env=prod
ntp = "pool.ntp.org"

[web:vars]
env=web
http_port=80

[all:vars]
env=all
region=eu
"#;

const YAML: &str = r#"
all:
  hosts:
    bastion.example.com:
  vars:
    env: all
    region: eu
  children:
    web:
      hosts:
        web[01:03]:
          ansible_user: deploy
        web01:
          ansible_host: 10.0.0.5
          ansible_port: 2222
          foo: bar
      vars:
        env: web
        http_port: 80
    db:
      hosts:
        db-[a:c].example.com:
          ansible_ssh_private_key_file: ~/.ssh/db
          ansible_become: "yes"
    prod:
      children:
        web:
        db:
      vars:
        env: prod
        ntp: pool.ntp.org
"#;

const EXPECTED: [&str; 7] = [
    "bastion.example.com",
    "web01",
    "web02",
    "web03",
    "db-a.example.com",
    "db-b.example.com",
    "db-c.example.com",
];

fn check_ansible_inventory(inv: &Inventory, file: &str) {
    assert_eq!(all_names(inv), EXPECTED);

    let bastion = inv.get("bastion.example.com").unwrap();
    assert_eq!(bastion.groups, ["ungrouped"]);
    assert_eq!(var(bastion, "env").as_deref(), Some("all"));

    let web01 = inv.get("web01").unwrap();
    assert_eq!(web01.address, "10.0.0.5");
    assert_eq!(web01.port, Some(2222));
    assert_eq!(web01.user.as_deref(), Some("deploy"));
    assert_eq!(web01.groups, ["prod", "web"]);
    assert_eq!(var(web01, "foo").as_deref(), Some("bar"));
    assert_eq!(var(web01, "env").as_deref(), Some("web"));
    assert_eq!(var(web01, "http_port").as_deref(), Some("80"));
    assert_eq!(var(web01, "region").as_deref(), Some("eu"));
    assert_eq!(var(web01, "ntp").as_deref(), Some("pool.ntp.org"));
    assert_eq!(
        var(web01, "ansible_host").as_deref(),
        Some("10.0.0.5"),
        "Ansible keeps connection vars"
    );

    let web03 = inv.get("web03").unwrap();
    assert_eq!(web03.address, "web03");
    assert_eq!(web03.port, None);
    assert_eq!(web03.user.as_deref(), Some("deploy"));

    let db = inv.get("db-b.example.com").unwrap();
    assert!(db.become_);
    assert_eq!(db.identity_files, [home().join(".ssh/db")]);
    assert_eq!(var(db, "env").as_deref(), Some("prod"));
    assert_eq!(db.groups, ["prod", "db"]);
    assert!(db.source.starts_with(file), "{}", db.source);

    let groups = inv.groups();
    assert_eq!(groups["prod"], &EXPECTED[1..]);
    assert_eq!(groups["web"], ["web01", "web02", "web03"]);
    assert_eq!(groups["ungrouped"], ["bastion.example.com"]);
    assert_eq!(groups["all"].len(), 7);
}

#[test]
fn ini_with_children_vars_ranges_and_alpha_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write(dir.path(), "inventory.ini", INI);
    let inv = Inventory::load_exact(None, std::slice::from_ref(&ini), None).unwrap();
    check_ansible_inventory(&inv, &ini.display().to_string());
    assert_eq!(
        inv.get("web01").unwrap().source,
        format!("{}:5", ini.display())
    );
    assert_eq!(
        inv.get("db-a.example.com").unwrap().source,
        format!("{}:9", ini.display())
    );
}

#[test]
fn yaml_resolves_to_the_same_hosts_and_vars_as_ini() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write(dir.path(), "hosts", INI); // no extension: detected by content
    let yml = write(dir.path(), "inventory.yml", YAML);
    let from_ini = Inventory::load_exact(None, &[ini], None).unwrap();
    let from_yaml = Inventory::load_exact(None, std::slice::from_ref(&yml), None).unwrap();
    check_ansible_inventory(&from_yaml, &yml.display().to_string());

    let strip = |inv: &Inventory| -> Vec<Host> {
        inv.hosts()
            .into_iter()
            .map(|h| Host {
                source: String::new(),
                ..h.clone()
            })
            .collect()
    };
    assert_eq!(strip(&from_ini), strip(&from_yaml));
    assert_eq!(from_ini.groups(), from_yaml.groups());
    // The YAML parser has no positions; the source points at the host's key line.
    assert_eq!(
        from_yaml.get("web02").unwrap().source,
        format!("{}:11", yml.display())
    );
}

#[test]
fn ansible_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write(dir.path(), "bad.ini", "[web]\nweb1 ansible_port=http\n");
    let m = usage_message(Inventory::load_exact(None, &[ini], None));
    assert!(m.contains("bad.ini:2") && m.contains("ansible_port"), "{m}");

    let ini = write(dir.path(), "bad2.ini", "[web]\nweb1\n[web:kids]\nx\n");
    let m = usage_message(Inventory::load_exact(None, &[ini], None));
    assert!(
        m.contains("bad2.ini:3") && m.contains("[web:children]"),
        "{m}"
    );

    let ini = write(dir.path(), "bad3.ini", "[web]\nweb1 novalue\n");
    let m = usage_message(Inventory::load_exact(None, &[ini], None));
    assert!(m.contains("bad3.ini:2") && m.contains("key=value"), "{m}");

    let yml = write(
        dir.path(),
        "bad.yml",
        "all:\n  children:\n    web:\n      hosts:\n        - web1\n",
    );
    let m = usage_message(Inventory::load_exact(None, &[yml], None));
    assert!(m.contains("bad.yml:5"), "{m}");

    let yml = write(dir.path(), "bad2.yml", "all:\n  host:\n    web1:\n");
    let m = usage_message(Inventory::load_exact(None, &[yml], None));
    assert!(m.contains("bad2.yml:2") && m.contains("host"), "{m}");

    let m = usage_message(Inventory::load_exact(
        None,
        &[dir.path().join("missing.ini")],
        None,
    ));
    assert!(m.contains("missing.ini") && m.contains("-i"), "{m}");
}

#[test]
fn variable_precedence_child_over_parent_host_over_group() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write(
        dir.path(),
        "inv.ini",
        "[leaf]\nh1 level=host\nh2\n\n[mid:children]\nleaf\n\n[top:children]\nmid\n\n\
         [top:vars]\nlevel=top\nfrom_top=1\nansible_user=topuser\n\n[mid:vars]\nlevel=mid\n\n\
         [leaf:vars]\nlevel=leaf\n\n[all:vars]\nlevel=all\nfrom_all=1\n",
    );
    let inv = Inventory::load_exact(None, &[ini], None).unwrap();
    let h1 = inv.get("h1").unwrap();
    let h2 = inv.get("h2").unwrap();
    assert_eq!(var(h1, "level").as_deref(), Some("host"));
    assert_eq!(var(h2, "level").as_deref(), Some("leaf"));
    assert_eq!(var(h2, "from_top").as_deref(), Some("1"));
    assert_eq!(var(h2, "from_all").as_deref(), Some("1"));
    assert_eq!(
        h2.user.as_deref(),
        Some("topuser"),
        "connection vars inherit like vars"
    );
    assert_eq!(h2.groups, ["top", "mid", "leaf"]);

    // A later source overrides an earlier one for the same host.
    let cfg = write(
        dir.path(),
        "tend.toml",
        "[hosts.h1]\nuser = \"a\"\nlevel = \"toml\"\nkeep = \"me\"\n",
    );
    let ini2 = write(
        dir.path(),
        "more.ini",
        "[extra]\nh1 ansible_user=b level=ini\n",
    );
    let inv = Inventory::load_exact(Some(&cfg), &[ini2], None).unwrap();
    let h1 = inv.get("h1").unwrap();
    assert_eq!(h1.user.as_deref(), Some("b"));
    assert_eq!(var(h1, "level").as_deref(), Some("ini"));
    assert_eq!(var(h1, "keep").as_deref(), Some("me"));
    assert_eq!(h1.groups, ["extra"]);
    assert!(h1.source.ends_with("tend.toml:1"), "{}", h1.source);
}

const SSH: &str = "\
Host jump
  HostName 192.0.2.10
  User jumper
  Port 2200

Host web01 web01.alias
  User sshuser
  IdentityFile ~/.ssh/web01
  IdentitiesOnly yes
Match host *
  ConnectTimeout 99
  User frommatch

Host *.example.com
  User exampleuser
  ProxyJump jump
  ConnectTimeout 7

Host *
  Port 2201
";

#[test]
fn ssh_config_aliases_and_pattern_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "tend.toml",
        "[hosts.web01]\naddress = \"10.0.0.5\"\nuser = \"tomluser\"\n\
         [hosts.\"api.example.com\"]\n[hosts.\"db.example.com\"]\nport = 5022\n",
    );
    let ssh = write(dir.path(), "ssh_config", SSH);
    let inv = Inventory::load_exact(Some(&cfg), &[], Some(&ssh)).unwrap();
    assert_eq!(
        all_names(&inv),
        [
            "web01",
            "api.example.com",
            "db.example.com",
            "jump",
            "web01.alias"
        ]
    );

    let jump = inv.get("jump").unwrap();
    assert_eq!(jump.address, "192.0.2.10");
    assert_eq!(jump.user.as_deref(), Some("jumper"));
    assert_eq!(jump.port, Some(2200), "first value wins over `Host *`");
    assert_eq!(jump.groups, ["ssh_config"]);
    assert_eq!(jump.source, format!("{}:1", ssh.display()));

    let web01 = inv.get("web01").unwrap();
    assert_eq!(
        web01.address, "10.0.0.5",
        "inventory address beats nothing-set HostName"
    );
    assert_eq!(
        web01.user.as_deref(),
        Some("tomluser"),
        "inventory beats ssh config"
    );
    assert_eq!(web01.identity_files, [home().join(".ssh/web01")]);
    assert!(web01.identities_only);
    assert_eq!(web01.port, Some(2201));
    assert_eq!(web01.connect_timeout, None, "the Match block is ignored");
    assert_eq!(web01.groups, ["ungrouped"]);

    let api = inv.get("api.example.com").unwrap();
    assert_eq!(api.user.as_deref(), Some("exampleuser"));
    assert_eq!(api.proxy_jump.as_deref(), Some("jump"));
    assert_eq!(api.connect_timeout, Some(Duration::from_secs(7)));
    assert_eq!(api.port, Some(2201));
    assert_eq!(api.address, "api.example.com");

    let db = inv.get("db.example.com").unwrap();
    assert_eq!(db.port, Some(5022));
    assert_eq!(db.user.as_deref(), Some("exampleuser"));

    let alias = inv.get("web01.alias").unwrap();
    assert_eq!(alias.user.as_deref(), Some("sshuser"));
    assert_eq!(alias.address, "web01.alias");

    // Selecting, leaving ssh-only hosts out, and ad-hoc hosts get ssh defaults too.
    assert_eq!(names(&inv.select("jump", None).unwrap()), ["jump"]);
    assert_eq!(
        names(&inv.select("all,!@ssh_config", None).unwrap()),
        ["web01", "api.example.com", "db.example.com"]
    );
    // `all` is the fleet: hosts known only from ~/.ssh/config are left out of it.
    assert_eq!(
        names(&inv.select("all", None).unwrap()),
        ["web01", "api.example.com", "db.example.com"]
    );
    assert!(names(&inv.select("@ssh_config", None).unwrap()).contains(&"jump"));
    let adhoc = inv.select("root@new.example.com", None).unwrap();
    assert_eq!(adhoc[0].address, "new.example.com");
    assert_eq!(adhoc[0].user.as_deref(), Some("root"));
    assert_eq!(adhoc[0].proxy_jump.as_deref(), Some("jump"));
    assert_eq!(adhoc[0].port, Some(2201));

    let bad = write(dir.path(), "bad_ssh", "Host a\n  Port 22\n  Port x\n");
    let m = usage_message(Inventory::load_exact(None, &[], Some(&bad)));
    assert!(m.contains("bad_ssh:3"), "{m}");
}

fn pattern_inventory() -> (tempfile::TempDir, Inventory) {
    let dir = tempfile::tempdir().unwrap();
    let ini = write(dir.path(), "inventory.ini", INI);
    let inv = Inventory::load_exact(None, &[ini], None).unwrap();
    (dir, inv)
}

#[test]
fn patterns_list_glob_group_exclusion_intersection() {
    let (_dir, inv) = pattern_inventory();
    let sel = |p: &str| {
        names(&inv.select(p, None).unwrap())
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };

    // Inventory order, whatever the order of the terms; duplicates once.
    assert_eq!(sel("db-a.example.com,web01"), ["web01", "db-a.example.com"]);
    assert_eq!(sel("web01,web01,@web"), ["web01", "web02", "web03"]);
    // Globs over host names.
    assert_eq!(sel("web0[12]"), ["web01", "web02"]);
    assert_eq!(sel("db-?.example.com"), EXPECTED[4..]);
    assert_eq!(sel("*"), EXPECTED);
    assert_eq!(sel("all"), EXPECTED);
    // Groups, with @ or bare; @ globs over group names.
    assert_eq!(sel("@db"), EXPECTED[4..]);
    assert_eq!(sel("db"), EXPECTED[4..]);
    assert_eq!(sel("@pro*"), EXPECTED[1..]);
    assert_eq!(sel("ungrouped"), ["bastion.example.com"]);
    // Exclusion and intersection, wherever they are written.
    assert_eq!(
        sel("prod,!web02"),
        [
            "web01",
            "web03",
            "db-a.example.com",
            "db-b.example.com",
            "db-c.example.com"
        ]
    );
    assert_eq!(sel("!@prod"), ["bastion.example.com"]);
    assert_eq!(sel("&@web,prod,!web01"), ["web02", "web03"]);
    assert_eq!(sel("web:!web02"), ["web01", "web03"], "colon separator");
    assert_eq!(sel("~web0[13]"), ["web01", "web03"]);
    // An inventory host by its address.
    assert_eq!(sel("10.0.0.5"), ["web01"]);
}

#[test]
fn limit_is_a_further_intersection() {
    let (_dir, inv) = pattern_inventory();
    let got = inv
        .select("prod", Some("web0[23],bastion.example.com"))
        .unwrap();
    assert_eq!(names(&got), ["web02", "web03"]);
    let got = inv.select("all", Some("!@db")).unwrap();
    assert_eq!(names(&got), EXPECTED[..4]);

    let m = usage_message(inv.select("@db", Some("@web")));
    assert!(m.contains("--limit") && m.contains("@web"), "{m}");
    let m = usage_message(inv.select("web", Some("nosuch")));
    assert!(m.contains("`nosuch`"), "{m}");
}

#[test]
fn unknown_terms_are_errors_that_list_the_groups() {
    let (_dir, inv) = pattern_inventory();
    let m = usage_message(inv.select("nosuch", None));
    assert!(m.contains("no host or group matches `nosuch`"), "{m}");
    assert!(
        m.contains("known groups: all, db, prod, ungrouped, web"),
        "{m}"
    );

    // A typo in an exclusion must not quietly run everywhere.
    let m = usage_message(inv.select("all,!web011", None));
    assert!(
        m.contains("`web011`") && m.contains("did you mean `web01`"),
        "{m}"
    );
    let m = usage_message(inv.select("@nosuch", None));
    assert!(m.contains("`@nosuch`"), "{m}");
    let m = usage_message(inv.select("web9*", None));
    assert!(m.contains("`web9*`"), "{m}");
    let m = usage_message(inv.select("web,&db", None));
    assert!(m.contains("selects no host"), "{m}");
    let m = usage_message(inv.select(" ", None));
    assert!(m.contains("empty"), "{m}");
}

#[test]
fn adhoc_hosts_without_an_inventory() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Inventory>();

    let inv = Inventory::default();
    let h = inv.select("10.0.0.7", None).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (
            h[0].name.as_str(),
            h[0].address.as_str(),
            h[0].port,
            h[0].user.as_deref()
        ),
        ("10.0.0.7", "10.0.0.7", None, None)
    );
    assert_eq!(h[0].source, "command line");
    assert!(h[0].groups.is_empty() && h[0].vars.is_empty());

    let h = inv
        .select("deploy@10.0.0.8:2222,backup.example.com", None)
        .unwrap();
    assert_eq!(names(&h), ["deploy@10.0.0.8:2222", "backup.example.com"]);
    assert_eq!(h[0].address, "10.0.0.8");
    assert_eq!(h[0].user.as_deref(), Some("deploy"));
    assert_eq!(h[0].port, Some(2222));
    assert_eq!(h[0].port_or_default(), 2222);
    assert_eq!(h[1].port_or_default(), 22);

    let h = inv.select("root@[::1]:2200", None).unwrap();
    assert_eq!((h[0].address.as_str(), h[0].port), ("::1", Some(2200)));

    // A bare word is a typo, not a host.
    let m = usage_message(inv.select("webserver", None));
    assert!(
        m.contains("`webserver`") && m.contains("inventory is empty"),
        "{m}"
    );

    // With an inventory: user@NAME reaches the inventory host as another user.
    let (_dir, inv) = pattern_inventory();
    let h = inv.select("admin@web01", None).unwrap();
    assert_eq!(
        (h[0].name.as_str(), h[0].address.as_str()),
        ("admin@web01", "10.0.0.5")
    );
    assert_eq!(
        (h[0].user.as_deref(), h[0].port),
        (Some("admin"), Some(2222))
    );
    let h = inv.select("web01,10.9.9.9", Some("10.9.9.9")).unwrap();
    assert_eq!(names(&h), ["10.9.9.9"]);
}

#[test]
fn load_directory_and_toml_inventory_files() {
    let dir = tempfile::tempdir().unwrap();
    let inv_dir = dir.path().join("inventory");
    std::fs::create_dir(&inv_dir).unwrap();
    write(&inv_dir, "01-web.ini", "[web]\nweb1\n");
    write(&inv_dir, "02-db.yaml", "db:\n  hosts:\n    db1:\n");
    write(&inv_dir, "03-extra.toml", "[hosts.extra1]\nuser = \"x\"\n");
    write(&inv_dir, "04-old.ini~", "[junk]\njunk1\n");
    let inv = Inventory::load_exact(None, &[inv_dir], None).unwrap();
    assert_eq!(all_names(&inv), ["web1", "db1", "extra1"]);
    assert_eq!(inv.sources().len(), 3);
    assert_eq!(inv.get("db1").unwrap().groups, ["db"]);
}

#[test]
fn ssh_alias_of_an_inventory_address_is_the_same_host() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write(
        dir.path(),
        "inv.ini",
        "[web]\nweb1 ansible_host=web1.example.com\n",
    );
    let ssh = write(
        dir.path(),
        "ssh_config",
        "Host web1.example.com\n  User byaddress\n  Port 2022\nHost web1\n  Port 2023\n",
    );
    let inv = Inventory::load_exact(None, &[ini], Some(&ssh)).unwrap();
    assert_eq!(all_names(&inv), ["web1"]);
    let web1 = inv.get("web1").unwrap();
    assert_eq!(web1.port, Some(2023), "looked up by name first");
    assert_eq!(web1.user.as_deref(), Some("byaddress"), "then by address");
    assert!(!inv.groups().contains_key("ssh_config"));
}
