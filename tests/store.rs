//! The stores are a seam, not a file layout: `app::run` and `app::rollback` work with
//! run records and an audit log that live somewhere else than the state directory
//! (here, in memory, as a shared database store would hold them), and keep the
//! fail-closed rule whatever the store.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use support::World;
use tend::app::{self, Actor, Auth, Config, RunRequest, Trigger};
use tend::error::{Error, Result};
use tend::event::Event;
use tend::recipe::Recipe;
use tend::state::{RunMeta, StateDir};
use tend::store::{AuditStore, RunStore, Stores};

#[derive(Default)]
struct MemoryRuns {
    runs: Mutex<BTreeMap<String, RunMeta>>,
    next: Mutex<u32>,
    discarded: Mutex<Vec<String>>,
}

impl RunStore for MemoryRuns {
    fn reserve_run_id(&self) -> Result<String> {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        // Shaped as tend's own ids are: a run id names a journal folder.
        Ok(format!("20261202-120000-{:04x}", *n))
    }
    fn discard(&self, run_id: &str) {
        self.discarded.lock().unwrap().push(run_id.to_string());
    }
    fn write(&self, meta: &RunMeta) -> Result<()> {
        self.runs
            .lock()
            .unwrap()
            .insert(meta.run_id.clone(), meta.clone());
        Ok(())
    }
    fn read(&self, run_id: &str) -> Result<RunMeta> {
        self.runs
            .lock()
            .unwrap()
            .get(run_id)
            .cloned()
            .ok_or_else(|| Error::UnknownRun(run_id.to_string()))
    }
    fn list(&self) -> Result<Vec<RunMeta>> {
        Ok(self.runs.lock().unwrap().values().cloned().collect())
    }
}

#[derive(Default)]
struct MemoryAudit {
    records: Mutex<Vec<serde_json::Value>>,
    refuse: bool,
}

impl AuditStore for MemoryAudit {
    fn append_many(&self, records: Vec<serde_json::Value>) -> Result<u64> {
        if self.refuse {
            return Err(Error::Audit {
                path: "memory".into(),
                message: "the store is read-only".into(),
            });
        }
        let mut all = self.records.lock().unwrap();
        all.extend(records);
        Ok(all.len() as u64)
    }
    fn read(&self, run_id: Option<&str>) -> Result<Vec<serde_json::Value>> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| run_id.is_none_or(|id| r["run_id"] == id))
            .cloned()
            .collect())
    }
    fn verify(&self, _: Option<&tend::audit::Anchor>) -> Result<tend::audit::Anchor> {
        Err(Error::Other("a memory log has no chain".into()))
    }
    fn export(&self, _: &mut dyn std::io::Write) -> Result<u64> {
        Err(Error::Other("a memory log has no chain".into()))
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

fn person() -> Actor {
    Actor::new("alice", Auth::Other { how: "test".into() }, Trigger::Api)
}

/// The embedded stores with run records and the audit log swapped for memory ones.
fn stores(w: &World, audit: MemoryAudit) -> (Stores, Arc<MemoryRuns>, Arc<MemoryAudit>) {
    let state = StateDir::open(&w.state())
        .unwrap()
        .with_lock_dir(&w.locks())
        .unwrap();
    let runs = Arc::new(MemoryRuns::default());
    let audit = Arc::new(audit);
    let mut s = Stores::embedded(&state);
    s.runs = runs.clone();
    s.audit = audit.clone();
    (s, runs, audit)
}

fn events(audit: &MemoryAudit) -> Vec<String> {
    audit
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_run_and_its_rollback_keep_their_records_in_the_stores_they_are_given() {
    let w = World::new();
    w.write("app.conf", "port = 80\n");
    let before = w.snapshot();
    let recipe = w.recipe(
        "fail.rhai",
        &format!(
            "//! Change a file, then fail.\nfs::line(\"{}\", \"port = 8080\", #{{ regex: \"^port\" }});\nfs::file(\"{}\", #{{ content: \"new\" }});\nthrow \"stop here\";\n",
            w.path("app.conf"),
            w.path("extra.txt")
        ),
    );
    let (stores, runs, audit) = stores(&w, MemoryAudit::default());
    let r = app::run(
        &stores,
        &Config::default(),
        &person(),
        &Recipe::load(&recipe).unwrap(),
        &RunRequest::local(vec![], false),
        Arc::new(|_: &Event| {}),
    )
    .unwrap();
    assert_eq!(r.outcome, app::Outcome::RolledBack, "{:?}", r.error());
    support::assert_same(&before, &w.snapshot());

    // The run's record and its audit trail are in the stores given, nowhere else.
    let meta = runs.read(&r.run_id).unwrap();
    assert_eq!(meta.outcome.as_str(), "rolled_back");
    assert_eq!(meta.user, "alice");
    assert!(meta.ended.is_some());
    let seen = events(&audit);
    assert_eq!(
        seen.first().map(String::as_str),
        Some("run_start"),
        "{seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("run_end"), "{seen:?}");
    assert!(seen.iter().any(|e| e == "rollback"), "{seen:?}");
    assert!(!w.state().join("audit.jsonl").exists());
    assert!(!w
        .state()
        .join("runs")
        .join(&r.run_id)
        .join("run.json")
        .exists());
    // The journal is the embedded store's: it is where the state dir keeps journals.
    assert!(w
        .state()
        .join("runs")
        .join(&r.run_id)
        .join("hosts")
        .read_dir()
        .unwrap()
        .next()
        .is_some());

    // A later `tend rollback` of the run reads the same stores: already undone,
    // nothing to revert, and the record says so.
    let report = app::rollback(
        &stores,
        &person(),
        &app::RollbackRequest {
            run_id: r.run_id.clone(),
            ..Default::default()
        },
        Arc::new(|_: &Event| {}),
    )
    .unwrap();
    assert_eq!(report.reverted, 0);
    assert!(report.incomplete.is_empty(), "{:?}", report.incomplete);
    support::assert_same(&before, &w.snapshot());
}

#[test]
fn an_audit_store_that_refuses_stops_the_run_before_it_changes_anything() {
    let w = World::new();
    let before = w.snapshot();
    let recipe = w.recipe(
        "write.rhai",
        &format!(
            "//! Write a file.\nfs::file(\"{}\", #{{ content: \"x\" }});\n",
            w.path("new.txt")
        ),
    );
    let refusing = MemoryAudit {
        refuse: true,
        ..MemoryAudit::default()
    };
    let (stores, runs, _) = stores(&w, refusing);
    let e = app::run(
        &stores,
        &Config::default(),
        &person(),
        &Recipe::load(&recipe).unwrap(),
        &RunRequest::local(vec![], false),
        Arc::new(|_: &Event| {}),
    )
    .err()
    .expect("the run must be refused");
    assert!(matches!(e, Error::Audit { .. }), "{e}");
    assert!(e.to_string().contains("memory"), "{e}");
    support::assert_same(&before, &w.snapshot());
    // The reserved id was handed back, and no record says the run happened.
    assert_eq!(runs.discarded.lock().unwrap().len(), 1);
    assert!(runs.list().unwrap().is_empty());
}
