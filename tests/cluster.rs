//! Cluster mode end to end (issue 15): real `tend daemon` processes sharing a real
//! PostgreSQL that the test starts, on real time. Every fire runs once, a killed
//! node's run is rolled back by another node, a node cut off from the database stops
//! before another takes over, a database restart loses nothing beyond `catch_up`,
//! differing schedule sets are reported, and one audit chain verifies.

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/sshd.rs"]
mod sshd;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postgres::{Pg, Proxy, CLUSTER_KEY, PG_PW};
use serde_json::Value;
use sshd::Sshd;
use support::{wait_for, Run, World, TEND};

const LEASE: &str = "3s";

/// One cluster: a database, a folder with tend.toml files, nodes with their own
/// state directories.
struct Cluster {
    w: World,
    pg: Pg,
}

/// A node: a `tend daemon` with its own state directory and `TEND_NODE`.
type Node = support::Daemon;

impl Cluster {
    fn new() -> Cluster {
        let pg = Pg::start();
        pg.sql("postgres", "create database tend");
        Cluster {
            w: World::new(),
            pg,
        }
    }

    /// `[cluster]` for a node reaching the database on `port`.
    fn cluster_toml(port: u16) -> String {
        format!(
            "[cluster]\npostgres = \"host=127.0.0.1 port={port} user=postgres dbname=tend connect_timeout=2\"\npassword = \"env:TEND_TEST_PG_PW\"\nkey = \"env:TEND_TEST_CLUSTER_KEY\"\nlease = \"{LEASE}\"\n\n"
        )
    }

    /// `NAME.toml` beside the worlds's root: the cluster table (through `port`) and
    /// `rest`.
    fn config(&self, name: &str, port: u16, rest: &str) -> PathBuf {
        self.w
            .beside(name, &format!("{}{rest}", Self::cluster_toml(port)))
    }

    /// tend.toml with one entry `name` firing every 2 s on `local` (`extra`: more
    /// keys of the entry).
    fn every_two_seconds(&self, name: &str, extra: &str) -> PathBuf {
        self.config(
            "tend.toml",
            self.pg.port,
            &entry(name, "*/2 * * * * *", "local", extra),
        )
    }

    fn state(&self, node: &str) -> PathBuf {
        self.w.dir.path().join(format!("state-{node}"))
    }

    fn command(&self, node: &str, config: &Path) -> Command {
        let mut c = Command::new(TEND);
        c.env("TEND_STATE_DIR", self.state(node))
            .env("TEND_LOCK_DIR", self.w.locks())
            .env("TEND_CONFIG", config)
            .env("TEND_NODE", node)
            .env("TEND_TEST_PG_PW", PG_PW)
            .env("TEND_TEST_CLUSTER_KEY", CLUSTER_KEY)
            .env("HOME", self.w.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("TEND_LOG")
            .current_dir(self.w.dir.path());
        c
    }

    fn tend(&self, config: &Path, args: &[&str]) -> Run {
        Run::from(self.command("cli", config).args(args).output().unwrap())
    }

    /// Vet `recipe` in `node`'s state directory (each node trusts on its own).
    fn vet(&self, node: &str, config: &Path, recipe: &Path) {
        let out = self
            .command(node, config)
            .args(["vet", recipe.to_str().unwrap(), "--by", "test"])
            .output()
            .unwrap();
        Run::from(out).assert_code(0);
    }

    fn start(&self, node: &str, config: &Path, extra: &[&str]) -> Node {
        let log = self.w.dir.path().join(format!("node-{node}.log"));
        // Started: connected, the schema migrated, the first heartbeat done.
        support::Daemon::spawn(
            self.command(node, config),
            extra,
            log,
            &format!("node {node}"),
            |log| log.contains("daemon started"),
        )
    }

    /// `nodes`, each having vetted `recipe`, running on `config` for `time`; each
    /// must stop cleanly.
    fn run_nodes(&self, nodes: &[&str], config: &Path, recipe: &Path, time: Duration) {
        let nodes: Vec<Node> = nodes
            .iter()
            .map(|n| {
                self.vet(n, config, recipe);
                self.start(n, config, &[])
            })
            .collect();
        std::thread::sleep(time);
        for n in nodes {
            let name = n.name.clone();
            let log = n.log();
            assert_eq!(n.stop(), 0, "node {name}:\n{log}");
        }
    }

    /// The cluster's audit log, as `tend audit export` writes it.
    fn audit(&self, config: &Path) -> Vec<Value> {
        let r = self.tend(config, &["audit", "export"]);
        r.assert_code(0);
        r.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn entry(name: &str, cron: &str, hosts: &str, extra: &str) -> String {
    format!(
        "[[schedule]]\nname = \"{name}\"\ncron = \"{cron}\"\nrecipe = \"job.rhai\"\nhosts = \"{hosts}\"\n{extra}\n"
    )
}

/// `x.conf` in the root and a vetted-to-be job that sets it: quick, idempotent.
fn quick_job(c: &Cluster) -> PathBuf {
    c.w.write("x.conf", "port=80\n");
    c.w.recipe_in_root(
        "job.rhai",
        "//! A quick job.\nfs::file(\"ROOT/x.conf\", \"port=8080\\n\");\n",
    )
}

/// Whether `run_id` has been rolled back, as the database records it.
fn rolled_back(c: &Cluster, run_id: &str) -> bool {
    c.pg.sql(
        "tend",
        &format!("select state from tend_runs where run_id = '{run_id}'"),
    ) == "rolled_back"
}

fn of<'a>(events: &'a [Value], event: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == event).collect()
}

// ---------------------------------------------------------------- must-show 1 and 6

/// Three nodes, one entry every 2 s for 30 s: 15 runs (±1 at the edges), no fire
/// twice, and the one audit chain they all wrote verifies; an edited row fails it,
/// named.
#[test]
fn three_nodes_run_each_fire_once_and_share_one_audit_chain() {
    let c = Cluster::new();
    let recipe = quick_job(&c);
    let config = c.every_two_seconds("every2", "");
    let started = Instant::now();
    c.run_nodes(&["a", "b", "c"], &config, &recipe, Duration::from_secs(30));
    let elapsed = started.elapsed().as_secs_f64();

    let fires = c.pg.sql(
        "tend",
        "select schedule || ' ' || scheduled_at || ' ' || node || ' ' || coalesce(run_id, '-') \
         from tend_fires where schedule = 'every2' order by scheduled_at",
    );
    let fires: Vec<&str> = fires.lines().collect();
    let audit = c.audit(&config);
    let starts = of(&audit, "run_start");
    assert!(
        (14..=17).contains(&starts.len()),
        "{} runs in {elapsed:.1} s:\n{}",
        starts.len(),
        fires.join("\n")
    );
    // Each claimed fire started exactly one run, and each run was one fire's.
    let run_ids: std::collections::BTreeSet<&str> = starts
        .iter()
        .map(|s| s["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(run_ids.len(), starts.len(), "a run id twice");
    let claimed: Vec<&str> = fires
        .iter()
        .map(|f| f.rsplit(' ').next().unwrap())
        .filter(|id| *id != "-")
        .collect();
    assert_eq!(claimed.len(), starts.len(), "{fires:?}");
    for id in &claimed {
        assert!(run_ids.contains(id), "fire's run {id} never started");
    }
    for s in &starts {
        assert_eq!(s["trigger"], "schedule", "{s}");
    }
    // More than one node ran fires: the claim, not a single leader, decides.
    let by: std::collections::BTreeSet<&str> =
        fires.iter().map(|f| f.split(' ').nth(3).unwrap()).collect();
    assert!(by.len() >= 2, "one node ran every fire: {fires:?}");

    // The CLI on the same tend.toml sees the cluster's runs.
    let runs = c.tend(&config, &["runs", "--json", "--limit", "1000"]);
    runs.assert_code(0);
    let listed: std::collections::BTreeSet<String> = runs
        .events()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    for id in &run_ids {
        assert!(listed.contains(*id), "tend runs lacks {id}");
    }
    // One record of the entry for the whole cluster: every node's runs count in it,
    // `tend schedule list` shows the cluster's last run, and each node's copy (its
    // status page) holds runs of the others.
    let newest = run_ids.iter().max().unwrap();
    let list = c.tend(&config, &["schedule", "list", "--json"]);
    list.assert_code(0);
    let listed = &list.events()[0];
    assert_eq!(listed["last_run"]["run_id"], **newest, "{listed}");
    assert_eq!(listed["last_run"]["outcome"], "ok", "{listed}");
    assert_eq!(listed["consecutive_failures"], 0, "{listed}");
    let history: Vec<String> =
        c.pg.sql(
            "tend",
            "select h->>'run_id' from tend_schedule_state, \
             jsonb_array_elements(state->'history') h where name = 'every2'",
        )
        .lines()
        .map(str::to_string)
        .collect();
    let recorded: std::collections::BTreeSet<&str> = history.iter().map(String::as_str).collect();
    assert_eq!(history.len(), starts.len(), "{history:?}");
    assert_eq!(
        recorded, run_ids,
        "the record's history is not the cluster's runs"
    );
    for n in ["a", "b", "c"] {
        let own = fires
            .iter()
            .filter(|f| f.split(' ').nth(3) == Some(n))
            .count();
        let copy = std::fs::read(c.state(n).join("schedules/every2.json")).unwrap();
        let copy: Value = serde_json::from_slice(&copy).unwrap();
        let seen = copy["history"].as_array().unwrap().len();
        assert!(
            seen > own,
            "node {n} ran {own} and its copy shows {seen}: {copy}"
        );
    }

    let migrate = c.tend(&config, &["cluster", "migrate"]);
    migrate.assert_code(0);
    assert!(
        format!("{}{}", migrate.stdout, migrate.stderr).contains("up to date"),
        "{} {}",
        migrate.stdout,
        migrate.stderr
    );

    let verify = c.tend(&config, &["audit", "verify", "--json"]);
    verify.assert_code(0);
    let v = &verify.events()[0];
    assert_eq!(v["intact"], true);
    assert_eq!(v["lines"].as_u64().unwrap() as usize, audit.len());

    // Edit one row in the database: verify names it.
    let seq = starts[3]["seq"].as_u64().unwrap();
    c.pg.sql(
        "tend",
        &format!(
            "update tend_audit set line = replace(line, '\"trigger\":\"schedule\"', '\"trigger\":\"cli\"') where seq = {seq}"
        ),
    );
    let broken = c.tend(&config, &["audit", "verify"]);
    broken.assert_code(67);
    assert!(
        broken.stderr.contains(&format!("seq {seq}")),
        "{}",
        broken.stderr
    );
}

// ---------------------------------------------------------------- overlap

/// An entry whose run outlasts its interval: `overlap = "skip"` holds for the
/// cluster, not per node. While the run goes on one node, the other nodes leave the
/// entry's fires to that node, which skips them: no two runs of the entry overlap.
#[test]
fn overlap_holds_across_nodes() {
    let c = Cluster::new();
    let recipe = c.w.recipe_in_root(
        "job.rhai",
        "//! Longer than the interval.\nsh(\"sleep 5\", #{read_only: true});\n",
    );
    let config = c.every_two_seconds("long", "");
    c.run_nodes(&["a", "b", "c"], &config, &recipe, Duration::from_secs(16));
    let runs = c.pg.sql(
        "tend",
        "select node || ' ' || (meta->>'started') || ' ' || coalesce(meta->>'ended', '-') \
         from tend_runs where meta->>'schedule' = 'long' order by meta->>'started'",
    );
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    let spans: Vec<(&str, _, _)> = runs
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0], at(f[1]), at(f[2]))
        })
        .collect();
    assert!(spans.len() >= 2, "{runs}");
    for w in spans.windows(2) {
        assert!(w[1].1 >= w[0].2, "two runs of the entry at once:\n{runs}");
    }
    let audit = c.audit(&config);
    let skips: Vec<_> = of(&audit, "schedule_skip")
        .into_iter()
        .filter(|e| e["reason"] == "overlap")
        .collect();
    assert!(!skips.is_empty(), "no fire skipped:\n{runs}");
}

// ---------------------------------------------------------------- must-show 5

/// Two nodes whose tend.toml files schedule different things: each says so in its
/// log, and `tend cluster status` marks them.
#[test]
fn differing_schedule_sets_and_keys_are_reported() {
    let c = Cluster::new();
    let recipe = quick_job(&c);
    let one = c.config(
        "one.toml",
        c.pg.port,
        &entry("nightly", "0 0 3 * * *", "local", ""),
    );
    let two = c.config(
        "two.toml",
        c.pg.port,
        &entry("nightly", "0 30 3 * * *", "local", ""),
    );
    c.vet("a", &one, &recipe);
    c.vet("b", &two, &recipe);
    let a = c.start("a", &one, &[]);
    let b = c.start("b", &two, &[]);
    assert!(
        wait_for(Duration::from_secs(10), || b.log().contains("differs")
            && a.log().contains("differs")),
        "no mismatch reported:\n{}\n{}",
        a.log(),
        b.log()
    );
    let status = c.tend(&one, &["cluster", "status", "--json"]);
    status.assert_code(0);
    let nodes = status.events();
    assert_eq!(nodes.len(), 2, "{}", status.stdout);
    for n in &nodes {
        assert_eq!(n["schedule_mismatch"], true, "{n}");
        assert_eq!(n["alive"], true, "{n}");
    }
    assert_ne!(nodes[0]["schedule_hash"], nodes[1]["schedule_hash"]);
    let table = c.tend(&one, &["cluster", "status"]);
    table.assert_code(0);
    assert!(table.stderr.contains("differ"), "{}", table.stderr);
    assert_eq!(nodes[0]["key_id"], nodes[1]["key_id"]);
    assert_eq!(nodes[0]["key_mismatch"], false);

    // A node given another key: it could not read the others' journals, nor they
    // its own. Each side says so, and the status marks it.
    c.vet("k", &one, &recipe);
    let mut other_key = c.command("k", &one);
    other_key.env(
        "TEND_TEST_CLUSTER_KEY",
        "a-different-key-a-different-key-0000",
    );
    let k = support::Daemon::spawn(
        other_key,
        &[],
        c.w.dir.path().join("node-k.log"),
        "node k",
        |log| log.contains("daemon started"),
    );
    let said = "sign with another [cluster] key";
    assert!(
        wait_for(Duration::from_secs(10), || k.log().contains(said)
            && a.log().contains(said)),
        "no key mismatch reported:\n{}\n{}",
        a.log(),
        k.log()
    );
    let nodes = c.tend(&one, &["cluster", "status", "--json"]).events();
    assert_eq!(nodes.len(), 3);
    let key_of = |id: &str| nodes.iter().find(|n| n["id"] == id).unwrap()["key_id"].clone();
    assert_eq!(key_of("a"), key_of("b"));
    assert_ne!(key_of("a"), key_of("k"));
    assert!(!key_of("k").as_str().unwrap().contains("different"));
    for n in &nodes {
        assert_eq!(n["key_mismatch"], true, "{n}");
    }
    assert!(c
        .tend(&one, &["cluster", "status"])
        .stderr
        .contains("different [cluster] keys"));
    assert_eq!(k.stop(), 0);
    // Drain: the node stays listed, marked.
    c.tend(&one, &["cluster", "drain", "b"]).assert_code(0);
    c.tend(&one, &["cluster", "drain", "nobody"])
        .assert_code(64);
    assert_eq!(a.stop(), 0);
    assert_eq!(b.stop(), 0);
    let after = c.tend(&one, &["cluster", "status", "--json"]).events();
    let b_row = after.iter().find(|n| n["id"] == "b").unwrap();
    assert_eq!(b_row["draining"], true, "{b_row}");
}

// ---------------------------------------------------------------- must-show 2

/// The recipe for a host reached over SSH: while `go` exists the run changes
/// `x.conf` and then takes long; later fires only leave a tick.
const SLOW_ON_HOST: &str = r#"//! Slow on the host while `go` is there.
let root = host().vars.root;
if fs::exists(`${root}/go`) {
    fs::file(`${root}/x.conf`, "changed\n");
    fs::file(`${root}/new.txt`, "new\n");
    sh("sleep 30", #{read_only: true});
} else {
    fs::file(`${root}/tick`, "tick\n");
}
"#;

/// Nodes `a` and `b` with an entry running `recipe` on the sshd host `h1` every 2 s.
fn ssh_cluster(
    c: &Cluster,
    h: &Sshd,
    recipe: &str,
    port_of: &dyn Fn(&str) -> u16,
) -> Vec<(String, PathBuf)> {
    std::fs::write(h.root.join("x.conf"), "original\n").unwrap();
    std::fs::write(h.root.join("go"), "").unwrap();
    let state = h.root.with_file_name("host-state");
    h.hand_over(&[&h.root, &state]);
    std::fs::create_dir_all(c.w.dir.path().join(".ssh")).unwrap();
    std::fs::write(
        c.w.dir.path().join(".ssh/known_hosts"),
        h.known_hosts_line(),
    )
    .unwrap();
    let recipe = c.w.recipe_in_root("job.rhai", recipe);
    let hosts = h.host_entry("h1", &h.root, &state);
    ["a", "b"]
        .iter()
        .map(|n| {
            let config = c.config(
                &format!("{n}.toml"),
                port_of(n),
                &format!("{hosts}{}", entry("slow", "*/2 * * * * *", "h1", "")),
            );
            c.vet(n, &config, &recipe);
            (n.to_string(), config)
        })
        .collect()
}

/// The node whose run holds the host: from the database.
fn running_node(c: &Cluster) -> Option<(String, String)> {
    let out = c.pg.sql(
        "tend",
        "select node || ' ' || run_id from tend_runs where state = 'running' and lease_until > now()",
    );
    let line = out.lines().next()?;
    let (node, run) = line.split_once(' ')?;
    Some((node.to_string(), run.to_string()))
}

/// kill -9 of the node running a job on a real sshd host: once its lease expires,
/// another node takes the run over and rolls it back (files restored), and later
/// fires go on.
#[test]
fn a_killed_nodes_run_is_rolled_back_by_another_node() {
    let c = Cluster::new();
    let h = Sshd::start();
    let configs = ssh_cluster(&c, &h, SLOW_ON_HOST, &|_| c.pg.port);
    let mut nodes: Vec<Node> = configs
        .iter()
        .map(|(n, cfg)| c.start(n, cfg, &[]))
        .collect();
    let mut holder = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            holder = running_node(&c);
            holder.is_some() && h.root.join("new.txt").exists()
        }),
        "no run started:\n{}",
        nodes.iter().map(|n| n.log()).collect::<Vec<_>>().join("\n")
    );
    let (node, run_id) = holder.unwrap();
    // Later fires take the quick branch.
    std::fs::remove_file(h.root.join("go")).unwrap();
    assert_eq!(
        std::fs::read_to_string(h.root.join("x.conf")).unwrap(),
        "changed\n"
    );
    let i = nodes
        .iter()
        .position(|n| n.name == format!("node {node}"))
        .unwrap();
    let killed = nodes.remove(i);
    killed.kill();
    let survivor = &nodes[0];
    assert!(
        wait_for(Duration::from_secs(30), || rolled_back(&c, &run_id)),
        "run {run_id} was not rolled back:\n{}",
        survivor.log()
    );
    assert_eq!(
        std::fs::read_to_string(h.root.join("x.conf")).unwrap(),
        "original\n"
    );
    assert!(!h.root.join("new.txt").exists());
    // Later fires continue, on the survivor.
    assert!(
        wait_for(Duration::from_secs(15), || h.root.join("tick").exists()),
        "no later fire:\n{}",
        survivor.log()
    );
    let cfg = &configs[0].1;
    let audit = c.audit(cfg);
    let takeover = of(&audit, "cluster_takeover");
    assert_eq!(takeover.len(), 1, "{takeover:?}");
    assert_eq!(takeover[0]["run_id"], run_id.as_str());
    assert_eq!(takeover[0]["from_node"], node.as_str());
    c.tend(cfg, &["audit", "verify"]).assert_code(0);
    // The entry's record, which said the run was going when its node died, says how
    // it ended.
    let ended = c.pg.sql(
        "tend",
        &format!(
            "select h->>'outcome' from tend_schedule_state, \
             jsonb_array_elements(state->'history') h where h->>'run_id' = '{run_id}'"
        ),
    );
    assert_eq!(
        ended,
        "rolled_back",
        "{}\n{}",
        c.pg.sql("tend", "select state from tend_schedule_state"),
        survivor.log()
    );
    let recovered = of(&audit, "schedule_recovered");
    assert_eq!(recovered.len(), 1, "{recovered:?}");
}

/// A node frozen mid-run (SIGSTOP: a paused VM, a process swapped out) cannot
/// fence itself. Its run is taken over and rolled back; when the node wakes, its run
/// goes on to its next step, which the fencing token refuses: the file it would have
/// written is never written, and a change made since the rollback stays.
const FROZEN_ON_HOST: &str = r#"//! Changes, waits, changes again while `go` is there.
let root = host().vars.root;
if fs::exists(`${root}/go`) {
    fs::file(`${root}/x.conf`, "changed\n");
    sh("sleep 6", #{read_only: true});
    fs::file(`${root}/late.txt`, "late\n");
} else {
    fs::file(`${root}/tick`, "tick\n");
}
"#;

#[test]
fn a_frozen_node_that_wakes_after_the_takeover_changes_nothing() {
    let c = Cluster::new();
    let h = Sshd::start();
    let configs = ssh_cluster(&c, &h, FROZEN_ON_HOST, &|_| c.pg.port);
    let nodes: Vec<Node> = configs
        .iter()
        .map(|(n, cfg)| c.start(n, cfg, &[]))
        .collect();
    let x = h.root.join("x.conf");
    let mut holder = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            holder = running_node(&c);
            holder.is_some() && std::fs::read_to_string(&x).unwrap() == "changed\n"
        }),
        "no run started:\n{}",
        nodes.iter().map(|n| n.log()).collect::<Vec<_>>().join("\n")
    );
    let (node, run_id) = holder.unwrap();
    std::fs::remove_file(h.root.join("go")).unwrap();
    let i = nodes
        .iter()
        .position(|n| n.name == format!("node {node}"))
        .unwrap();
    let (frozen, other) = (&nodes[i], &nodes[1 - i]);
    frozen.signal("STOP");
    assert!(
        wait_for(Duration::from_secs(30), || rolled_back(&c, &run_id)),
        "run {run_id} was not rolled back:\n{}",
        other.log()
    );
    assert_eq!(std::fs::read_to_string(&x).unwrap(), "original\n");
    std::fs::write(&x, "edited after the takeover\n").unwrap();

    frozen.signal("CONT");
    let ended = |log: &str| {
        log.lines()
            .any(|l| l.contains("\"run ended\"") && l.contains(&run_id))
    };
    assert!(
        wait_for(Duration::from_secs(30), || ended(&frozen.log())),
        "the frozen node's run did not end:\n{}",
        frozen.log()
    );
    assert!(
        !h.root.join("late.txt").exists(),
        "the frozen node wrote after the takeover:\n{}",
        frozen.log()
    );
    // Refused by the token, not by luck.
    assert!(
        frozen
            .log()
            .contains("fenced: the lock of host h1 is no longer this run's"),
        "{}",
        frozen.log()
    );
    assert_eq!(
        std::fs::read_to_string(&x).unwrap(),
        "edited after the takeover\n",
        "{}",
        frozen.log()
    );
    assert_eq!(
        c.pg.sql(
            "tend",
            &format!("select state from tend_runs where run_id = '{run_id}'")
        ),
        "rolled_back"
    );
    // Both nodes ended the run in the entry's record: it counts once.
    let ended = c.pg.sql(
        "tend",
        &format!(
            "select count(*) from tend_schedule_state, \
             jsonb_array_elements(state->'history') h where h->>'run_id' = '{run_id}'"
        ),
    );
    assert_eq!(ended, "1");
    // a.toml and b.toml schedule the same: only their names differ.
    for n in &nodes {
        assert!(
            !n.log().contains("differs from that of other live nodes"),
            "{}",
            n.log()
        );
    }
}

/// A run that changed the dead node's own machine (`local`) cannot be taken over
/// from another node: it is reported, left as it is, and rolled back by that node
/// when it comes back under the same id.
#[test]
fn a_dead_nodes_local_run_waits_for_that_node() {
    let c = Cluster::new();
    c.w.write("x.conf", "original\n");
    c.w.write("go", "");
    let recipe = c.w.recipe_in_root(
        "job.rhai",
        "//! Slow here while `go` is there.\nif fs::exists(\"ROOT/go\") {\n    fs::file(\"ROOT/x.conf\", \"changed\\n\");\n    sh(\"sleep 30\", #{read_only: true});\n} else {\n    fs::file(\"ROOT/tick\", \"tick\\n\");\n}\n",
    );
    let config = c.every_two_seconds("slow", "");
    c.vet("a", &config, &recipe);
    let a = c.start("a", &config, &[]);
    let x = c.w.root().join("x.conf");
    assert!(
        wait_for(Duration::from_secs(20), || {
            running_node(&c).is_some() && std::fs::read_to_string(&x).unwrap() == "changed\n"
        }),
        "a never ran:\n{}",
        a.log()
    );
    let (_, run_id) = running_node(&c).unwrap();
    std::fs::remove_file(c.w.root().join("go")).unwrap();
    let b = c.start("b", &config, &[]);
    a.kill();
    let refused = || {
        c.audit(&config)
            .iter()
            .any(|e| e["event"] == "cluster_takeover_refused" && e["run_id"] == run_id.as_str())
    };
    assert!(
        wait_for(Duration::from_secs(20), refused),
        "b did not report the run:\n{}",
        b.log()
    );
    assert!(b.log().contains("cannot be taken over"), "{}", b.log());
    assert_eq!(std::fs::read_to_string(&x).unwrap(), "changed\n");
    // a comes back: it rolls its own run back.
    let a = c.start("a", &config, &[]);
    assert!(
        wait_for(Duration::from_secs(20), || rolled_back(&c, &run_id)),
        "a did not roll its run back:\n{}",
        a.log()
    );
    assert_eq!(std::fs::read_to_string(&x).unwrap(), "original\n");
    assert_eq!(a.stop(), 0);
    assert_eq!(b.stop(), 0);
}

// ---------------------------------------------------------------- must-show 3

/// A node whose database connection is cut (through a proxy the test stops) stops
/// writing to the host before the other node takes its run over, and the run is
/// rolled back by the other node.
#[test]
fn a_node_cut_off_from_the_database_stops_before_the_takeover() {
    let c = Cluster::new();
    let h = Sshd::start();
    let proxy = Proxy::start(c.pg.port);
    let (pport, dport) = (proxy.port, c.pg.port);
    // Only node a goes through the proxy.
    let configs = ssh_cluster(&c, &h, SLOW_ON_HOST, &|n| {
        if n == "a" {
            pport
        } else {
            dport
        }
    });
    // b starts once a holds the run, so that a is the one cut off.
    let a = c.start("a", &configs[0].1, &[]);
    assert!(
        wait_for(Duration::from_secs(20), || {
            running_node(&c).is_some_and(|(n, _)| n == "a") && h.root.join("new.txt").exists()
        }),
        "a never ran:\n{}",
        a.log()
    );
    let (_, run_id) = running_node(&c).unwrap();
    std::fs::remove_file(h.root.join("go")).unwrap();
    let b = c.start("b", &configs[1].1, &[]);
    proxy.cut();
    let cut = std::time::SystemTime::now();
    assert!(
        wait_for(Duration::from_secs(30), || rolled_back(&c, &run_id)),
        "not rolled back:\n--- a\n{}\n--- b\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(
        std::fs::read_to_string(h.root.join("x.conf")).unwrap(),
        "original\n"
    );
    assert!(!h.root.join("new.txt").exists());
    // a said it stopped, and did so before b took over.
    let a_log = a.log();
    assert!(
        a_log.contains("lost the cluster database"),
        "a never fenced itself:\n{a_log}"
    );
    let fenced_at = line_time(&a_log, "lost the cluster database");
    let takeover_at = line_time(&b.log(), "taking it over");
    assert!(
        fenced_at < takeover_at,
        "a fenced at {fenced_at}, b took over at {takeover_at}"
    );
    let _ = cut;
    // Nothing a journaled after b's token: every row of the run's journal that
    // follows the takeover is b's rollback.
    drop(a);
    assert_eq!(b.stop(), 0);
}

/// The time of the first JSON log line containing `text`.
fn line_time(log: &str, text: &str) -> chrono::DateTime<chrono::Utc> {
    let line = log
        .lines()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no {text:?} in:\n{log}"));
    let v: Value = serde_json::from_str(line).unwrap();
    chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap())
        .unwrap()
        .to_utc()
}

// ---------------------------------------------------------------- must-show 4

/// PostgreSQL restarted mid-test: no fire twice, and none lost beyond those due
/// while it was down, which `catch_up` covers with one run; `tend_cluster_db_up`
/// says 0 meanwhile.
#[test]
fn a_database_restart_loses_and_repeats_nothing() {
    let c = Cluster::new();
    let recipe = quick_job(&c);
    let config = c.every_two_seconds("every2", "catch_up = \"1m\"");
    let metrics = free_port();
    let a_addr = format!("127.0.0.1:{metrics}");
    c.vet("a", &config, &recipe);
    c.vet("b", &config, &recipe);
    let a = c.start("a", &config, &["--metrics", &a_addr]);
    let b = c.start("b", &config, &[]);
    std::thread::sleep(Duration::from_secs(7));
    assert!(scrape(&a_addr).contains("tend_cluster_db_up 1"));
    c.pg.stop();
    assert!(
        wait_for(Duration::from_secs(15), || scrape(&a_addr)
            .contains("tend_cluster_db_up 0")),
        "{}",
        scrape(&a_addr)
    );
    std::thread::sleep(Duration::from_secs(3));
    c.pg.start_again();
    assert!(
        wait_for(Duration::from_secs(20), || scrape(&a_addr)
            .contains("tend_cluster_db_up 1")),
        "{}",
        a.log()
    );
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(a.stop(), 0);
    assert_eq!(b.stop(), 0);
    let audit = c.audit(&config);
    let starts = of(&audit, "run_start");
    let ids: std::collections::BTreeSet<&str> = starts
        .iter()
        .map(|s| s["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), starts.len());
    let reasons = c.pg.sql(
        "tend",
        "select reason || ' ' || count(*) from tend_fires where schedule = 'every2' group by reason order by reason",
    );
    assert!(
        reasons.contains("catch_up 1"),
        "one catch-up run for the fires missed while the database was down:\n{reasons}"
    );
    c.tend(&config, &["audit", "verify"]).assert_code(0);
}

/// A node started while the database is down does start: it claims nothing, says
/// so on `/metrics`, and once the database is back it migrates the schema and runs
/// the fires. A refused login is no outage: that daemon stops at once, saying why.
#[test]
fn a_node_started_while_the_database_is_down_waits_for_it() {
    let c = Cluster::new();
    let recipe = quick_job(&c);
    let config = c.every_two_seconds("every2", "");
    c.vet("a", &config, &recipe);
    c.pg.stop();
    let addr = format!("127.0.0.1:{}", free_port());
    let a = c.start("a", &config, &["--metrics", &addr]);
    assert!(a.log().contains("starting without it"), "{}", a.log());
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        scrape(&addr).contains("tend_cluster_db_up 0"),
        "{}",
        a.log()
    );
    c.pg.start_again();
    assert!(
        wait_for(Duration::from_secs(20), || scrape(&addr)
            .contains("tend_cluster_db_up 1")),
        "{}",
        a.log()
    );
    assert!(
        wait_for(Duration::from_secs(15), || c.pg.sql(
            "tend",
            "select count(*) from tend_fires where run_id is not null"
        ) != "0"),
        "no fire ran once the database was back:\n{}",
        a.log()
    );
    let log = a.log();
    assert_eq!(a.stop(), 0);
    assert!(log.contains("schema up to date"), "{log}");
    assert!(!of(&c.audit(&config), "run_end").is_empty());

    let mut wrong = c
        .command("b", &config)
        .env("TEND_TEST_PG_PW", "not-the-password")
        .arg("daemon")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = wait_for(Duration::from_secs(20), || {
        wrong.try_wait().unwrap().is_some()
    });
    if !ended {
        wrong.kill().unwrap();
    }
    let out = wrong.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        ended,
        "a daemon with a refused password kept running:\n{err}"
    );
    assert_eq!(out.status.code(), Some(70), "{err}");
    assert!(
        err.contains("password authentication failed") && !err.contains("not-the-password"),
        "{err}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

// ---------------------------------------------------------------- bad input

/// A misspelt key, a lease too short, a password in the URL, a database that does
/// not answer: each a clear error, nothing started.
#[test]
fn bad_cluster_settings_are_clear_errors() {
    let w = World::new();
    let run = |toml: &str| {
        let config = w.beside("tend.toml", toml);
        let r = Run::from(
            w.command()
                .env("TEND_CONFIG", &config)
                .env("TEND_TEST_PG_PW", "not-the-password")
                .env("TEND_TEST_CLUSTER_KEY", CLUSTER_KEY)
                .args(["cluster", "status"])
                .output()
                .unwrap(),
        );
        (r.code, r.stderr)
    };
    let (code, err) = run("[cluster]\npostgress = \"host=127.0.0.1\"\n");
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("tend.toml:2") && err.contains("postgres"),
        "{err}"
    );
    let (code, err) = run("[cluster]\npostgres = \"host=127.0.0.1\"\nlease = \"1s\"\n");
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("shorter than 3s"), "{err}");
    let (code, err) = run("[cluster]\npostgres = \"postgres://u:hunter2@127.0.0.1/tend\"\n");
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("password") && !err.contains("hunter2"),
        "{err}"
    );
    // No key: the journals in the database could not be signed.
    let (code, err) = run("[cluster]\npostgres = \"host=127.0.0.1\"\n");
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("[cluster] key") && err.contains("openssl rand"),
        "{err}"
    );
    let (code, err) =
        run("[cluster]\npostgres = \"host=127.0.0.1\"\nkey = \"env:TEND_NO_SUCH_VAR\"\n");
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("TEND_NO_SUCH_VAR"), "{err}");
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, err) = run(&format!(
        "[cluster]\npostgres = \"host=127.0.0.1 port={port} user=tend dbname=tend connect_timeout=2\"\npassword = \"env:TEND_TEST_PG_PW\"\nkey = \"env:TEND_TEST_CLUSTER_KEY\"\n"
    ));
    assert_eq!(code, 69, "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && !err.contains("panicked"),
        "{err}"
    );
}
