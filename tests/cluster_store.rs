//! The cluster store (src/store/pg/) on a real PostgreSQL started for each test,
//! through the library's store traits: migrations applied once by concurrent
//! connects and a newer schema refused; each fire claimed exactly once by racing
//! nodes; a run whose lease ran out read as interrupted and taken over by exactly
//! one node; host locks with fencing tokens (the old owner's journal append refused
//! after a takeover); one audit chain under concurrent writers, verified, exported,
//! and an edited row named; the journal read back as the file journal reads it; a
//! server restart survived; no password in any error.

#[path = "support/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use postgres::{Pg, PG_PW};
use serde_json::json;
use tend::error::Error;
use tend::journal::undo::Undo;
use tend::journal::{Contents, Journal, JournalWrite};
use tend::lock::{Holder, Take};
use tend::outcome::RunState;
use tend::state::RunMeta;
use tend::state::StateDir;
use tend::store::pg::{migrate, PgStore};
use tend::store::{Cluster, ClusterSettings, JournalStore, Stores};

const LEASE: Duration = Duration::from_secs(3);

fn settings(pg: &Pg, db: &str, node: &str) -> ClusterSettings {
    ClusterSettings {
        postgres: pg.url(db),
        password: Some(pg.password_env()),
        key: Some(pg.key_env()),
        sslmode: Some("disable".into()),
        sslrootcert: None,
        node: Some(node.into()),
        lease: Some(LEASE),
    }
}

/// A server with database `tend` and the stores of each node, each with its own
/// connections, as on separate machines.
fn cluster(nodes: &[&str]) -> (Pg, Vec<Stores>, tempfile::TempDir) {
    let pg = Pg::start();
    pg.create_db("tend");
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let stores = nodes
        .iter()
        .map(|n| {
            let store = PgStore::connect(&settings(&pg, "tend", n)).unwrap();
            Stores::cluster(&state, Arc::new(store))
        })
        .collect();
    (pg, stores, dir)
}

/// The node's side of the cluster.
fn node(s: &Stores) -> &dyn Cluster {
    s.cluster.as_deref().expect("cluster mode")
}

fn run_meta(run_id: &str, outcome: &str) -> RunMeta {
    serde_json::from_value(json!({
        "run_id": run_id, "recipe": "t", "recipe_path": "/t.rhai", "hash": "h",
        "params": {}, "user": "root", "started": "2026-12-03T06:00:00Z",
        "outcome": outcome, "dry_run": false, "hosts": ["web1"], "pid": 1,
    }))
    .unwrap()
}

/// Wait (bounded) until `done` holds: a lease running out takes LEASE of real time.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + LEASE * 4;
    while !done() {
        assert!(Instant::now() < end, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn migrations_apply_once_under_concurrent_connects_and_a_newer_schema_is_refused() {
    let pg = Pg::start();
    pg.create_db("tend");
    let pg = Arc::new(pg);
    let connects: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|n| {
            let s = settings(&pg, "tend", n);
            std::thread::spawn(move || PgStore::connect(&s).map(|_| ()))
        })
        .collect();
    for c in connects {
        c.join().unwrap().unwrap();
    }
    let latest = migrate::latest();
    assert_eq!(
        pg.sql("tend", "SELECT version FROM tend_schema"),
        latest.to_string()
    );
    // The first migration's row of the audit head exists once.
    assert_eq!(pg.sql("tend", "SELECT count(*) FROM tend_audit_head"), "1");
    let store = PgStore::connect(&settings(&pg, "tend", "a")).unwrap();
    assert_eq!(store.migrate().unwrap(), (latest, latest));

    pg.sql("tend", "UPDATE tend_schema SET version = 99");
    let Err(e) = PgStore::connect(&settings(&pg, "tend", "a")) else {
        panic!("a newer schema was accepted");
    };
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "the cluster database is at schema 99; this tend knows up to {latest}: upgrade tend"
        )),
        "{text}"
    );
}

/// A database made by the first release (schema 1) keeps what it holds: a paused
/// entry is still paused, and its record reads as a first version.
#[test]
fn a_schema_one_database_migrates_and_keeps_its_records() {
    let pg = Pg::start();
    pg.create_db("tend");
    pg.sql(
        "tend",
        "CREATE TABLE tend_schema (id smallint PRIMARY KEY CHECK (id = 1), version integer NOT NULL);
         INSERT INTO tend_schema VALUES (1, 1);",
    );
    pg.sql("tend", include_str!("../src/store/pg/schema_1.sql"));
    pg.sql(
        "tend",
        "INSERT INTO tend_schedule_state VALUES ('nightly', '{\"paused\": true}')",
    );
    let store = PgStore::connect(&settings(&pg, "tend", "a")).unwrap();
    assert_eq!(
        pg.sql("tend", "SELECT version FROM tend_schema"),
        migrate::latest().to_string()
    );
    assert_eq!(store.paused().unwrap(), ["nightly"]);
    let (states, _) = store.schedule_states(None).unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(
        (states[0].version, &states[0].state),
        (1, &json!({"paused": true}))
    );
}

#[test]
fn a_fresh_database_migrates_from_zero_and_connection_errors_name_the_place_not_the_password() {
    let pg = Pg::start();
    pg.create_db("tend");
    let store = PgStore::connect(&settings(&pg, "tend", "a")).unwrap();
    assert!(store
        .describe()
        .contains(&format!("127.0.0.1:{}/tend", pg.port)));

    let mut s = settings(&pg, "tend", "a");
    s.postgres = format!("postgres://postgres:{PG_PW}@127.0.0.1:{}/tend", pg.port);
    let Err(e) = PgStore::connect(&s) else {
        panic!("a password in the connection string was accepted");
    };
    assert!(matches!(e, Error::Usage(_)), "{e:?}");
    assert!(!e.to_string().contains(PG_PW), "{e}");

    // A wrong database: the error names where, and says nothing of the password.
    let s = settings(&pg, "nosuchdb", "a");
    let Err(e) = PgStore::connect(&s) else {
        panic!("connected to a database that does not exist");
    };
    let text = e.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{}/nosuchdb", pg.port)),
        "{text}"
    );
    assert!(!text.contains(PG_PW), "{text}");
}

#[test]
fn every_fire_is_claimed_by_exactly_one_of_three_racing_nodes() {
    let (_pg, stores, _state) = cluster(&["a", "b", "c"]);
    let base = Utc.with_ymd_and_hms(2026, 12, 3, 6, 0, 0).unwrap();
    let fires: Vec<DateTime<Utc>> = (0..200)
        .map(|i| base + chrono::Duration::seconds(i))
        .collect();
    let won: Vec<Vec<DateTime<Utc>>> = std::thread::scope(|s| {
        let racers: Vec<_> = stores
            .iter()
            .map(|store| {
                let fires = &fires;
                s.spawn(move || {
                    fires
                        .iter()
                        .filter(|at| node(store).claim_fire("backup", **at, "due").unwrap())
                        .copied()
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut all: Vec<DateTime<Utc>> = won.concat();
    all.sort();
    assert_eq!(all, fires, "each fire won exactly once");
    // A later claim of a claimed fire loses, whoever makes it.
    assert!(!node(&stores[0])
        .claim_fire("backup", base, "catch_up")
        .unwrap());
    assert!(node(&stores[1]).claim_fire("other", base, "due").unwrap());
    assert_eq!(
        node(&stores[2]).last_claimed("backup").unwrap(),
        Some(base + chrono::Duration::seconds(199))
    );
    assert_eq!(node(&stores[2]).last_claimed("never").unwrap(), None);
    node(&stores[0])
        .fire_ran("backup", base, "20261203-060000-000-00000001")
        .unwrap();
}

/// While a run of an entry goes on one node, only that node claims the entry's fires
/// (its `overlap` rule then holds for the cluster); a draining node's run, a run
/// that ended, a report of missed fires and other entries bind nobody.
#[test]
fn an_entrys_fires_stay_with_the_node_running_it() {
    let (_pg, stores, _state) = cluster(&["a", "b"]);
    let (a, b) = (&stores[0], &stores[1]);
    let info = |id: &str| tend::store::NodeInfo {
        id: id.into(),
        address: String::new(),
        version: String::new(),
        schedule_hash: String::new(),
    };
    node(a).heartbeat(&info("a")).unwrap();
    node(b).heartbeat(&info("b")).unwrap();
    let base = Utc.with_ymd_and_hms(2026, 12, 3, 6, 0, 0).unwrap();
    let at = |s: i64| base + chrono::Duration::seconds(s);
    let run_id = a.runs.reserve_run_id().unwrap();
    let mut meta = run_meta(&run_id, "running");
    meta.schedule = Some("backup".into());
    a.runs.write(&meta).unwrap();

    assert!(!node(b).claim_fire("backup", at(1), "cron").unwrap());
    assert!(node(b).claim_fire("backup", at(2), "missed").unwrap());
    assert!(node(b).claim_fire("other", at(1), "cron").unwrap());
    assert_eq!(
        node(b)
            .claim_fires(&[
                ("backup".into(), at(3), "catch_up".into()),
                ("other".into(), at(3), "cron".into()),
            ])
            .unwrap(),
        [false, true]
    );
    assert!(node(a).claim_fire("backup", at(4), "cron").unwrap());

    node(b).set_draining("a", true).unwrap();
    assert!(node(b).claim_fire("backup", at(5), "cron").unwrap());
    node(b).set_draining("a", false).unwrap();
    assert!(!node(b).claim_fire("backup", at(6), "cron").unwrap());

    meta.outcome = tend::outcome::RunState::Ended(tend::outcome::Outcome::Ok);
    a.runs.write(&meta).unwrap();
    assert!(node(b).claim_fire("backup", at(7), "cron").unwrap());
}

#[test]
fn nodes_heartbeat_drain_and_keep_schedule_state() {
    let (pg, stores, _state) = cluster(&["a", "b"]);
    let info = |id: &str| tend::store::NodeInfo {
        id: id.into(),
        address: format!("{id}.example"),
        version: "0.1.0".into(),
        schedule_hash: format!("hash-{id}"),
    };
    assert!(!node(&stores[0]).heartbeat(&info("a")).unwrap());
    assert!(!node(&stores[1]).heartbeat(&info("b")).unwrap());
    assert!(node(&stores[1]).set_draining("a", true).unwrap());
    assert!(!node(&stores[1]).set_draining("nosuch", true).unwrap());
    assert!(
        node(&stores[0]).heartbeat(&info("a")).unwrap(),
        "a is draining"
    );
    let nodes = node(&stores[1]).nodes().unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.info.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(nodes.iter().all(|n| n.alive));
    assert!(nodes[0].draining && !nodes[1].draining);
    assert_eq!(nodes[1].info.schedule_hash, "hash-b");

    // A heartbeat, and the renewal a process that is no daemon runs, renew the run
    // leases and host locks this process holds; another process of the same node
    // (a restart) does not: what the dead one held must run out.
    let a = &stores[0];
    let run_id = a.runs.reserve_run_id().unwrap();
    a.runs.write(&run_meta(&run_id, "running")).unwrap();
    let _lock = a
        .locks
        .lock("web1", &holder(&run_id, "web1"), &Take::default());
    let leases = || {
        pg.sql(
            "tend",
            "SELECT (SELECT lease_until FROM tend_runs WHERE state = 'running') || ' ' || \
             (SELECT lease_until FROM tend_host_locks)",
        )
    };
    let first = leases();
    std::thread::sleep(Duration::from_millis(1100));
    node(a).heartbeat(&info("a")).unwrap();
    let second = leases();
    assert!(second > first, "{second} > {first}");
    std::thread::sleep(Duration::from_millis(1100));
    let restarted = PgStore::connect(&settings(&pg, "tend", "a")).unwrap();
    restarted.renew_leases().unwrap();
    assert_eq!(
        leases(),
        second,
        "another process renewed what it does not hold"
    );
    std::thread::sleep(Duration::from_millis(1100));
    node(a).heartbeat(&info("a")).unwrap();
    let third = leases();
    assert!(third > second, "{third} > {second}");

    assert_eq!(node(&stores[0]).schedule_state("backup").unwrap(), None);
    let state = json!({"last_fire": "2026-12-03T06:00:00Z", "failures": 2});
    let version = node(&stores[0])
        .update_schedule_state("backup", &mut |old| {
            assert_eq!(old, None);
            state.clone()
        })
        .unwrap();
    assert_eq!(version, 1);
    assert_eq!(
        node(&stores[1]).schedule_state("backup").unwrap(),
        Some(state)
    );
}

/// Schedule records are changed by every node at once: the changes add up (none is
/// written over another's), and a node reads back only what changed since.
#[test]
fn schedule_records_changed_by_three_nodes_at_once_add_up() {
    let (_pg, stores, _state) = cluster(&["a", "b", "c"]);
    let (_, start) = node(&stores[0]).schedule_states(None).unwrap();
    std::thread::scope(|s| {
        for st in &stores {
            s.spawn(move || {
                for _ in 0..40 {
                    node(st)
                        .update_schedule_state("nightly", &mut |old| {
                            let n = old.map_or(0, |v| v["failures"].as_u64().unwrap());
                            json!({ "failures": n + 1 })
                        })
                        .unwrap();
                }
            });
        }
    });
    let (all, _) = node(&stores[1]).schedule_states(None).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state["failures"], 120, "{:?}", all[0]);
    assert_eq!(all[0].version, 120);

    std::thread::sleep(Duration::from_millis(50));
    let (_, later) = node(&stores[2]).schedule_states(None).unwrap();
    node(&stores[2])
        .update_schedule_state("weekly", &mut |_| json!({"paused": true}))
        .unwrap();
    let (changed, _) = node(&stores[0]).schedule_states(Some(later)).unwrap();
    let names: Vec<&str> = changed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["weekly"]);
    assert_eq!(node(&stores[0]).paused().unwrap(), ["weekly"]);
    let (since_start, _) = node(&stores[0]).schedule_states(Some(start)).unwrap();
    assert_eq!(since_start.len(), 2);
}

#[test]
fn a_run_whose_lease_ran_out_is_taken_over_by_one_node_and_again_if_that_node_dies() {
    let (_pg, stores, _state) = cluster(&["a", "b", "c"]);
    let (a, b, c) = (&stores[0], &stores[1], &stores[2]);
    let unused = a.runs.reserve_run_id().unwrap();
    let run_id = a.runs.reserve_run_id().unwrap();
    assert_ne!(unused, run_id);
    a.runs.write(&run_meta(&run_id, "running")).unwrap();
    let lock = a
        .locks
        .lock("web1", &holder(&run_id, "web1"), &Take::default());
    let journal = a.journals.open(&run_id, "web1").unwrap();
    journal
        .append(1, "fs::file", &remove("/etc/x"), false, &[])
        .unwrap();
    drop((journal, lock));
    assert_eq!(b.runs.read(&run_id).unwrap().outcome, RunState::Running);
    // Reserved ids are not runs.
    let listed: Vec<String> = b
        .runs
        .list()
        .unwrap()
        .into_iter()
        .map(|m| m.run_id)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&run_id));
    a.runs.discard(&unused);
    assert!(matches!(b.runs.read(&unused), Err(Error::UnknownRun(_))));

    // Node a stops renewing: its lease runs out in the database's time.
    wait_until("the lease to run out", || {
        !node(b).expired_runs().unwrap().is_empty()
    });
    assert_eq!(b.runs.read(&run_id).unwrap().outcome, RunState::Interrupted);
    let listed = b.runs.list().unwrap();
    assert_eq!(listed[0].outcome, RunState::Interrupted);
    assert_eq!(listed[0].changed, 1, "the step its journal records");
    let expired = node(c).expired_runs().unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].run_id.as_str(), expired[0].node.as_str()),
        (run_id.as_str(), "a")
    );

    let won: Vec<bool> = std::thread::scope(|s| {
        let racers: Vec<_> = [b, c]
            .into_iter()
            .map(|st| {
                let id = run_id.clone();
                s.spawn(move || node(st).take_over(&id).unwrap())
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert!(node(c).expired_runs().unwrap().is_empty());
    assert_eq!(c.runs.read(&run_id).unwrap().outcome, RunState::Running);
    // The old owner's late heartbeat of the run is refused: it is not a's any more.
    let late = a.runs.write(&run_meta(&run_id, "running")).unwrap_err();
    assert!(
        late.to_string().contains("another node holds it now"),
        "{late}"
    );
    for outcome in ["interrupted", "rolled_back"] {
        let late = a.runs.write(&run_meta(&run_id, outcome));
        assert!(late.is_err(), "{outcome} of the node that lost the run");
    }
    let (winner, other) = if won[0] { (b, c) } else { (c, b) };
    // The winner holds the run while it rolls it back: its renewals keep the lease.
    let held_until = || {
        _pg.sql(
            "tend",
            &format!("select lease_until from tend_runs where run_id = '{run_id}'"),
        )
    };
    let first = held_until();
    std::thread::sleep(Duration::from_millis(1100));
    let me = tend::store::NodeInfo {
        id: node(winner).node_id().to_string(),
        address: String::new(),
        version: String::new(),
        schedule_hash: String::new(),
    };
    node(winner).heartbeat(&me).unwrap();
    assert!(held_until() > first, "the taker's lease was not renewed");
    // The winner dies in the middle: the run's lease runs out again, and the other
    // node takes it over to finish the rollback.
    wait_until("the taker's lease to run out", || {
        !node(other).expired_runs().unwrap().is_empty()
    });
    assert!(node(other).take_over(&run_id).unwrap());
    let (winner, other) = (other, winner);
    let late = other.runs.write(&run_meta(&run_id, "rolled_back"));
    assert!(late.is_err(), "the dead taker's late record was taken");
    winner
        .runs
        .write(&run_meta(&run_id, "rolled_back"))
        .unwrap();
    assert_eq!(
        a.runs.read(&run_id).unwrap().outcome.as_str(),
        "rolled_back"
    );
}

fn holder(run_id: &str, host: &str) -> Holder {
    Holder::me(run_id, host, std::path::Path::new("/var/lib/tend"))
}

fn remove(path: &str) -> Undo {
    Undo::Remove { path: path.into() }
}

#[test]
fn a_lock_taken_over_gets_a_newer_token_and_the_old_owners_journal_is_fenced() {
    let (pg, stores, _state) = cluster(&["a", "b"]);
    let (a, b) = (&stores[0], &stores[1]);
    let run = "20261203-060000-000-0000000a";
    let guard_a = a
        .locks
        .lock("web1", &holder(run, "web1"), &Take::default())
        .unwrap();
    let token_a: i64 = pg
        .sql("tend", "SELECT token FROM tend_host_locks")
        .parse()
        .unwrap();
    let journal_a = a.journals.open(run, "web1").unwrap();
    journal_a.header("/var/tmp/tend-backup", None).unwrap();
    assert_eq!(
        journal_a
            .append(1, "fs::file", &remove("/etc/x"), false, &[])
            .unwrap(),
        1
    );

    // Another run is refused while a's lease holds, naming the node.
    let other = "20261203-060001-000-0000000b";
    let e = b
        .locks
        .lock("web1", &holder(other, "web1"), &Take::default())
        .err()
        .expect("locked");
    assert!(matches!(&e, Error::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("on node a; wait for it"), "{e}");
    // So is the rollback of a's run on b, until the lease ran out.
    let rollback = Take {
        take_over: Some(run.into()),
        ..Take::default()
    };
    assert!(b
        .locks
        .lock("web1", &holder(run, "web1"), &rollback)
        .is_err());
    assert!(
        b.journals.open(run, "web1").is_err(),
        "no journal without the lock"
    );

    wait_until("a's lock lease to run out", || {
        !b.locks.holder("web1", false).unwrap().unwrap().1
    });
    // An expired lock still bars other runs: its changes were not rolled back.
    let e = b
        .locks
        .lock("web1", &holder(other, "web1"), &Take::default())
        .err()
        .expect("stale");
    assert!(
        e.to_string().contains(&format!("`tend rollback {run}`")),
        "{e}"
    );

    let guard_b = b
        .locks
        .lock("web1", &holder(run, "web1"), &rollback)
        .unwrap();
    let token_b: i64 = pg
        .sql("tend", "SELECT token FROM tend_host_locks")
        .parse()
        .unwrap();
    assert!(token_b > token_a, "{token_b} > {token_a}");

    let late = journal_a
        .append(2, "fs::file", &remove("/etc/y"), false, &[])
        .unwrap_err();
    assert!(
        late.to_string()
            .starts_with("fenced: the lock of host web1"),
        "{late}"
    );
    assert!(journal_a.mark_done().is_err());
    let journal_b = b.journals.open(run, "web1").unwrap();
    journal_b.mark_undone(1).unwrap();

    // a's guard, dropped late, leaves b's lock alone.
    drop(guard_a);
    let (h, alive) = a.locks.holder("web1", false).unwrap().unwrap();
    assert!(alive && h.run_id == run);
    let read = a.journals.read(run, "web1").unwrap();
    assert_eq!(read.entries.len(), 1, "the fenced record is not there");
    assert!(read.entries[0].undone);
    drop(guard_b);
    assert!(a.locks.holder("web1", false).unwrap().is_none());
}

/// The same calls on a file journal and on the cluster's read back the same.
/// What a rollback would act on cannot be planted through the database: a journal
/// line or a run record written or changed without the cluster's key is refused,
/// named; a node with another key cannot read them either.
#[test]
fn journals_and_run_records_changed_in_the_database_are_refused() {
    let (pg, stores, _state) = cluster(&["a"]);
    let store = &stores[0];
    let run_id = store.runs.reserve_run_id().unwrap();
    store.runs.write(&run_meta(&run_id, "failed")).unwrap();
    let _guard = store
        .locks
        .lock("web1", &holder(&run_id, "web1"), &Take::default())
        .unwrap();
    let j = store.journals.open(&run_id, "web1").unwrap();
    j.append(1, "fs::file", &remove("/etc/a"), false, &[])
        .unwrap();
    assert_eq!(
        store.journals.read(&run_id, "web1").unwrap().entries.len(),
        1
    );
    assert_eq!(store.runs.read(&run_id).unwrap().hosts, ["web1"]);

    // Another key: nothing it reads is this cluster's.
    let mut other = settings(&pg, "tend", "x");
    std::env::set_var("TEND_T_OTHER_KEY", "another-key-another-key-another-key");
    other.key = Some("env:TEND_T_OTHER_KEY".into());
    let stranger = PgStore::connect(&other).unwrap();
    let e = JournalStore::read(&stranger, &run_id, "web1").unwrap_err();
    assert!(e.to_string().contains("fails its signature"), "{e}");

    // A planted undo record: the path changed in the row.
    pg.sql(
        "tend",
        &format!(
            "update tend_journal set line = replace(line, '/etc/a', '/etc/shadow') \
             where run_id = '{run_id}' and line like '%/etc/a%'"
        ),
    );
    let e = store
        .journals
        .read(&run_id, "web1")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fails its signature") && e.contains("tend_journal row n ="),
        "{e}"
    );
    // A run record pointed at another host.
    pg.sql(
        "tend",
        &format!(
            "update tend_runs set meta = jsonb_set(meta, '{{hosts}}', '[\"evil\"]') \
             where run_id = '{run_id}'"
        ),
    );
    let e = store.runs.read(&run_id).unwrap_err().to_string();
    assert!(
        e.contains(&format!("run record {run_id}")) && e.contains("signature"),
        "{e}"
    );
    let listed = store.runs.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].outcome, RunState::Damaged);
    assert!(listed[0].hosts.is_empty(), "the planted host was listed");
}

#[test]
fn a_journal_reads_back_as_the_file_journal_does() {
    let (pg, stores, _state) = cluster(&["a"]);
    let store = &stores[0];
    let run = "20261203-060000-000-0000000c";
    let _guard = store
        .locks
        .lock("db1", &holder(run, "db1"), &Take::default())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let write = |j: &dyn JournalWrite| {
        j.header("/var/tmp/b", Some(&["/etc/**".to_string()]))
            .unwrap();
        let first = j.append(1, "fs::file", &remove("/etc/a"), false, &["/etc".into()]);
        let barrier = Undo::Barrier { what: "sh".into() };
        let second = j.append(2, "sh", &barrier, true, &[]);
        assert_eq!((first.unwrap(), second.unwrap()), (1, 2));
        j.record_left(1, None).unwrap();
        j.mark_done().unwrap();
        j.mark_undone(1).unwrap();
    };
    write(&Journal::open(&path).unwrap());
    write(store.journals.open(run, "db1").unwrap().as_ref());
    let file = Journal::read(&path).unwrap();
    let db = store.journals.read(run, "db1").unwrap();
    let same = |c: &Contents| {
        (
            c.entries.clone(),
            c.damaged.clone(),
            c.scope.clone(),
            c.backups.clone(),
        )
    };
    assert_eq!(same(&db), same(&file));
    assert_eq!(db.entries.len(), 2);
    assert!(store.journals.exists(run, "db1") && !store.journals.exists(run, "db2"));
    // Reopened, it numbers on.
    let again = store.journals.open(run, "db1").unwrap();
    assert_eq!(
        again.append(3, "x", &remove("/etc/b"), false, &[]).unwrap(),
        3
    );
    // The text is the file's, line for line.
    let file_text = std::fs::read_to_string(&path).unwrap();
    let db_text = pg.sql(
        "tend",
        "SELECT string_agg(line, E'\\n' ORDER BY n) FROM tend_journal WHERE line NOT LIKE '%\"seq\":3%'",
    );
    assert_eq!(format!("{db_text}\n"), file_text);
}

#[test]
fn one_audit_chain_under_concurrent_writers_verifies_exports_and_names_an_edited_row() {
    let (pg, stores, _state) = cluster(&["a", "b", "c"]);
    std::thread::scope(|s| {
        for (t, store) in stores.iter().enumerate() {
            s.spawn(move || {
                for i in 0..50 {
                    store
                        .audit
                        .append(json!({"event": "step", "run_id": format!("r{t}"), "n": i}))
                        .unwrap();
                }
            });
        }
    });
    let anchor = stores[0].audit.verify(None).unwrap();
    assert_eq!(anchor.count, 150);
    assert_eq!(stores[1].audit.read(Some("r1")).unwrap().len(), 50);
    assert_eq!(stores[1].audit.read(None).unwrap().len(), 150);
    assert!(stores[1].audit.verify(Some(&anchor)).is_ok());

    let mut out = Vec::new();
    assert_eq!(stores[2].audit.export(&mut out).unwrap(), 150);
    let rows = pg.sql(
        "tend",
        "SELECT string_agg(line, E'\\n' ORDER BY seq) FROM tend_audit",
    );
    assert_eq!(String::from_utf8(out.clone()).unwrap(), format!("{rows}\n"));
    // The export is the embedded log's format: a file log holding it verifies.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("audit.jsonl"), &out).unwrap();
    let last = stores[2].audit.read(None).unwrap().pop().unwrap();
    std::fs::write(
        dir.path().join("audit.head"),
        json!({"seq": 150, "hash": last["hash"]}).to_string(),
    )
    .unwrap();
    let file = tend::audit::AuditLog::new(dir.path());
    assert_eq!(file.verify().unwrap(), 150);

    pg.sql(
        "tend",
        r#"UPDATE tend_audit SET line = replace(line, '"event":"step"', '"event":"stop"') WHERE seq = 17"#,
    );
    let e = stores[0].audit.verify(None).unwrap_err();
    assert!(matches!(e, Error::Tampered { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("row seq 17: content does not match its hash (edited)"),
        "{e}"
    );
}

#[test]
fn a_server_restart_is_survived_by_reconnecting() {
    let (pg, stores, _state) = cluster(&["a"]);
    let store = &stores[0];
    store.audit.append(json!({"event": "before"})).unwrap();
    pg.stop();
    assert!(store.audit.append(json!({"event": "down"})).is_err());
    pg.start_again();
    store.audit.append(json!({"event": "after"})).unwrap();
    let events: Vec<String> = store
        .audit
        .read(None)
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["before", "after"]);
    assert_eq!(store.audit.verify(None).unwrap().count, 2);
}

#[test]
fn a_node_cut_off_by_the_proxy_gets_errors_and_the_others_go_on() {
    let pg = Pg::start();
    pg.create_db("tend");
    let proxy = postgres::Proxy::start(pg.port);
    let mut s = settings(&pg, "tend", "a");
    s.postgres = pg.url_via(proxy.port, "tend");
    let cut_off = PgStore::connect(&s).unwrap();
    let other = PgStore::connect(&settings(&pg, "tend", "b")).unwrap();
    let at = Utc.with_ymd_and_hms(2026, 12, 3, 6, 0, 0).unwrap();
    assert!(Cluster::claim_fire(&cut_off, "e", at, "due").unwrap());
    proxy.cut();
    let e =
        Cluster::claim_fire(&cut_off, "e", at + chrono::Duration::seconds(1), "due").unwrap_err();
    assert!(!e.to_string().contains(PG_PW), "{e}");
    // New connections are refused too, and say where they tried.
    let e = PgStore::connect(&s).err().expect("cut off");
    assert!(
        e.to_string()
            .contains(&format!("127.0.0.1:{}/tend", proxy.port)),
        "{e}"
    );
    assert!(Cluster::claim_fire(&other, "e", at + chrono::Duration::seconds(1), "due").unwrap());
}

/// While the database cannot be reached, connection attempts back off (0.5 s, then
/// doubling up to a quarter of the lease): the calls in between fail at once, saying
/// when the next attempt is, instead of each trying again.
#[test]
fn an_unreachable_database_is_retried_with_backoff() {
    let pg = Pg::start();
    // A server that hangs up at once: each connection attempt is one accept.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let attempts = attempts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(conn);
            }
        });
    }
    let count = || attempts.load(std::sync::atomic::Ordering::SeqCst);
    let mut s = settings(&pg, "tend", "a");
    s.postgres = pg.url_via(port, "tend");
    let store = PgStore::open(&s).unwrap();
    let at = Utc.with_ymd_and_hms(2026, 12, 3, 6, 0, 0).unwrap();
    let claim = || {
        Cluster::claim_fire(&store, "e", at, "cron")
            .unwrap_err()
            .to_string()
    };
    let first = claim();
    assert_eq!(count(), 1, "{first}");
    let second = claim();
    assert_eq!(count(), 1, "a second attempt during the backoff");
    assert!(second.contains("next attempt in"), "{second}");
    assert!(
        second.contains(&format!("127.0.0.1:{port}/tend")),
        "{second}"
    );
    assert!(!second.contains(PG_PW), "{second}");
    std::thread::sleep(Duration::from_millis(600));
    claim();
    assert_eq!(count(), 2);
    claim();
    assert_eq!(count(), 2, "the backoff doubled");
    std::thread::sleep(Duration::from_millis(800));
    claim();
    assert_eq!(count(), 3, "at most a quarter of the lease (0.75 s) apart");
}

/// sslmode as libpq means it, against a server that only speaks TLS, with a
/// certificate for 127.0.0.1 (so `localhost` is the wrong name).
#[test]
fn tls_modes_check_the_ca_and_the_host_name_as_libpq_does() {
    let pg = Pg::start();
    pg.create_db("tend");
    let ca = pg.enable_tls("IP:127.0.0.1");
    let other = tempfile::tempdir().unwrap();
    let wrong_ca = postgres::test_ca(other.path(), "other");
    let try_mode = |host: &str, mode: &str, root: Option<&std::path::Path>| {
        let mut s = settings(&pg, "tend", "a");
        s.postgres = pg.url("tend").replace("127.0.0.1", host);
        s.sslmode = Some(mode.into());
        s.sslrootcert = root.map(|p| p.to_path_buf());
        PgStore::connect(&s).map(|_| ())
    };
    let ip = "127.0.0.1";
    assert!(
        try_mode(ip, "disable", None).is_err(),
        "the server takes TLS only"
    );
    try_mode(ip, "prefer", None).unwrap();
    try_mode("localhost", "require", None).unwrap();
    try_mode(ip, "verify-full", Some(&ca)).unwrap();
    // verify-ca checks the CA, not the name.
    try_mode("localhost", "verify-ca", Some(&ca)).unwrap();
    for (host, mode, root) in [
        ("localhost", "verify-full", &ca),
        (ip, "verify-full", &wrong_ca),
        (ip, "verify-ca", &wrong_ca),
        (ip, "require", &wrong_ca),
    ] {
        let e = try_mode(host, mode, Some(root)).expect_err(mode);
        assert!(!e.to_string().contains(PG_PW), "{e}");
    }
    let e = try_mode(ip, "verify-everything", None).unwrap_err();
    assert!(matches!(e, Error::Usage(_)), "{e:?}");
}
