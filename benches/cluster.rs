//! Cluster benchmark (run: `cargo bench --bench cluster`): real `tend daemon` nodes
//! sharing a real PostgreSQL that the bench starts on loopback.
//!
//! 1. Throughput: 3 nodes, 1,000 `[[schedule]]` entries each firing every second
//!    (`* * * * * *`, a recipe that does nothing, each on its own host reached as
//!    `connection = "local"` so that host locks do not serialize them) for
//!    `TEND_BENCH_CLUSTER_SECS` (default 20): fires claimed per second, runs ended
//!    per second, and that no fire was claimed twice.
//! 2. Takeover delay: 2 nodes, one entry whose run sleeps on a real sshd host; the
//!    node running it is killed (-9); the delay is from the kill to the run being
//!    rolled back by the other node (lease 3 s: expected lease + one heartbeat).

#[path = "../tests/support/postgres.rs"]
mod postgres;
#[path = "../tests/support/sshd.rs"]
mod sshd;

#[path = "common/mod.rs"]
mod common;

use common::{secs, start_daemon, stop};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use postgres::{Pg, CLUSTER_KEY, PG_PW};

const TEND: &str = env!("CARGO_BIN_EXE_tend");
const ENTRIES: usize = 1_000;
const LEASE: &str = "3s";

fn cluster(port: u16) -> String {
    format!(
        "[cluster]\npostgres = \"host=127.0.0.1 port={port} user=postgres dbname=tend\"\npassword = \"env:TEND_BENCH_PG_PW\"\nkey = \"env:TEND_BENCH_CLUSTER_KEY\"\nlease = \"{LEASE}\"\n\n"
    )
}

fn tend(dir: &Path, node: &str, config: &Path) -> Command {
    let mut c = Command::new(TEND);
    c.current_dir(dir)
        .env("TEND_STATE_DIR", dir.join(format!("state-{node}")))
        .env("TEND_LOCK_DIR", dir.join("locks"))
        .env("TEND_CONFIG", config)
        .env("TEND_NODE", node)
        .env("TEND_BENCH_PG_PW", PG_PW)
        .env("TEND_BENCH_CLUSTER_KEY", CLUSTER_KEY)
        .env("HOME", dir)
        .env_remove("TEND_LOG");
    c
}

fn start(dir: &Path, node: &str, config: &Path) -> (Child, PathBuf) {
    let log = dir.join(format!("node-{node}.log"));
    let (child, _) = start_daemon(tend(dir, node, config), &log);
    (child, log)
}

fn vet(dir: &Path, config: &Path, recipe: &str) {
    let out = tend(dir, "a", config)
        .args(["vet", recipe, "--by", "bench"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn throughput(pg: &Pg, dir: &Path) {
    let window = secs("TEND_BENCH_CLUSTER_SECS", 20);
    let mut t = cluster(pg.port);
    t.push_str("[daemon]\nmax_concurrent_runs = 32\n\n");
    for i in 0..ENTRIES {
        let _ = writeln!(t, "[hosts.h{i}]\nconnection = \"local\"\n");
    }
    for i in 0..ENTRIES {
        let _ = writeln!(
            t,
            "[[schedule]]\nname = \"e{i}\"\ncron = \"* * * * * *\"\nrecipe = \"nothing.rhai\"\nhosts = \"h{i}\"\n"
        );
    }
    let config = dir.join("tend.toml");
    std::fs::write(&config, t).unwrap();
    std::fs::write(dir.join("nothing.rhai"), "//! Does nothing.\nlet x = 1;\n").unwrap();
    vet(dir, &config, "nothing.rhai");
    let nodes: Vec<(Child, PathBuf)> = ["a", "b", "c"]
        .iter()
        .map(|n| start(dir, n, &config))
        .collect();
    let from = pg.sql("tend", "select now()");
    std::thread::sleep(Duration::from_secs(window));
    let to = pg.sql("tend", "select now()");
    for (child, _) in nodes {
        stop(child);
    }
    let count = |sql: &str| -> u64 { pg.sql("tend", sql).parse().unwrap_or(0) };
    let claimed = count(&format!(
        "select count(*) from tend_fires where reason = 'cron' and claimed_at between '{from}' and '{to}'"
    ));
    let ended = count(&format!(
        "select count(*) from tend_runs where state = 'ok' and (meta->>'ended')::timestamptz between '{from}' and '{to}'"
    ));
    let twice = count(
        "select count(*) from (select run_id from tend_fires where run_id is not null \
         group by run_id having count(*) > 1) t",
    );
    let by_node = pg.sql(
        "tend",
        &format!(
            "select node || ': ' || count(*) from tend_fires where claimed_at between '{from}' and '{to}' group by node order by node"
        ),
    );
    let w = window as f64;
    println!("3 nodes, {ENTRIES} entries each firing every second, {window} s:");
    println!("  demanded            {:>8} fires/s", ENTRIES);
    println!("  claimed             {:>8.0} fires/s", claimed as f64 / w);
    println!("  runs ended ok       {:>8.0} runs/s", ended as f64 / w);
    println!("  a run claimed twice {twice:>8}");
    for l in by_node.lines() {
        println!("  claimed by {l}");
    }
}

fn takeover(pg: &Pg, dir: &Path) {
    let h = sshd::Sshd::start();
    std::fs::write(h.root.join("x.conf"), "original\n").unwrap();
    let state = h.root.with_file_name("host-state");
    h.hand_over(&[&h.root, &state]);
    std::fs::create_dir_all(dir.join(".ssh")).unwrap();
    std::fs::write(dir.join(".ssh/known_hosts"), h.known_hosts_line()).unwrap();
    std::fs::write(
        dir.join("slow.rhai"),
        "//! Slow.\nlet root = host().vars.root;\nfs::file(`${root}/x.conf`, \"changed\\n\");\nsh(\"sleep 60\", #{read_only: true});\n",
    )
    .unwrap();
    let config = dir.join("takeover.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}[[schedule]]\nname = \"slow\"\ncron = \"*/2 * * * * *\"\nrecipe = \"slow.rhai\"\nhosts = \"h1\"\n",
            cluster(pg.port),
            h.host_entry("h1", &h.root, &state)
        ),
    )
    .unwrap();
    vet(dir, &config, "slow.rhai");
    let mut nodes: Vec<(String, Child)> = ["x", "y"]
        .iter()
        .map(|n| (n.to_string(), start(dir, n, &config).0))
        .collect();
    let running = || {
        pg.sql(
            "tend",
            "select node || ' ' || run_id from tend_runs where state = 'running' and lease_until > now() limit 1",
        )
    };
    let began = Instant::now();
    let line = loop {
        let l = running();
        if !l.is_empty() && std::fs::read_to_string(h.root.join("x.conf")).unwrap() == "changed\n" {
            break l;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "no run started");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (node, run_id) = line.split_once(' ').unwrap();
    let i = nodes.iter().position(|(n, _)| n == node).unwrap();
    let (_, mut victim) = nodes.remove(i);
    let killed = Instant::now();
    victim.kill().unwrap();
    victim.wait().unwrap();
    loop {
        let state = pg.sql(
            "tend",
            &format!("select state from tend_runs where run_id = '{run_id}'"),
        );
        if state == "rolled_back" {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(60), "no takeover");
        std::thread::sleep(Duration::from_millis(20));
    }
    let delay = killed.elapsed();
    let restored = std::fs::read_to_string(h.root.join("x.conf")).unwrap() == "original\n";
    for (_, child) in nodes {
        stop(child);
    }
    println!("takeover (lease {LEASE}, heartbeat every lease/3):");
    println!(
        "  kill -9 to rolled back {:>6.2} s   (files restored: {restored})",
        delay.as_secs_f64()
    );
}

fn main() {
    let pg = Pg::start();
    pg.sql("postgres", "create database tend");
    let dir = tempfile::tempdir().unwrap();
    throughput(&pg, dir.path());
    let dir2 = tempfile::tempdir().unwrap();
    pg.sql("postgres", "drop database tend with (force)");
    pg.sql("postgres", "create database tend");
    takeover(&pg, dir2.path());
}
