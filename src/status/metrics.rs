//! `/metrics`: the schedules' saved state in the Prometheus text format (OpenMetrics),
//! encoded by `prometheus-client`. Rebuilt from the state files on every scrape, so it
//! shows what the daemon last saved even when served by `tend status` alone.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;

use crate::schedule::saved::EntryState;
use crate::schedule::Entry;

/// What the page answers with: Prometheus asks for OpenMetrics and reads it.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabel {
    schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    schedule: String,
    outcome: String,
}

type FloatGauge = Family<ScheduleLabel, Gauge<f64, AtomicU64>>;

/// `tend_runs_total`, counted by this process. A state file keeps only the last
/// fires, so a count read from it would go down as old fires drop out, which a
/// counter must never do. Instead each fire is counted once, the first time a scrape
/// sees it (run ids sort by time, so "newer than the newest seen" finds new ones);
/// the count starts again with the process, as Prometheus expects of counters.
#[derive(Default)]
pub struct RunCounts {
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Default)]
struct Seen {
    newest: String,
    by_outcome: BTreeMap<String, u64>,
}

impl RunCounts {
    fn update(&self, name: &str, state: &EntryState) -> BTreeMap<String, u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let s = seen.entry(name.to_string()).or_default();
        for fire in &state.history {
            if fire.run_id > s.newest {
                *s.by_outcome.entry(fire.outcome.clone()).or_default() += 1;
            }
        }
        if let Some(last) = state.history.iter().map(|f| &f.run_id).max() {
            if *last > s.newest {
                s.newest = last.clone();
            }
        }
        s.by_outcome.clone()
    }
}

/// The exposition text for `entries` with their saved states.
pub fn render(
    entries: &[(Entry, Option<EntryState>)],
    now: DateTime<Utc>,
    daemon_up: bool,
    cluster_db_up: Option<bool>,
    counts: &RunCounts,
) -> String {
    let mut reg = Registry::default();
    let last_success = FloatGauge::default();
    let last_duration = FloatGauge::default();
    let next_fire = FloatGauge::default();
    let failures = Family::<ScheduleLabel, Gauge>::default();
    let missed = Family::<ScheduleLabel, Counter>::default();
    let runs = Family::<RunLabels, Counter>::default();
    let up = Gauge::<i64>::default();
    reg.register(
        "tend_schedule_last_success_timestamp_seconds",
        "When the entry's last successful run ended (Unix time)",
        last_success.clone(),
    );
    reg.register(
        "tend_schedule_last_duration_seconds",
        "How long the entry's last run took",
        last_duration.clone(),
    );
    reg.register(
        "tend_schedule_next_fire_timestamp_seconds",
        "When the entry fires next (Unix time, jitter included); absent when paused, disabled or @reboot",
        next_fire.clone(),
    );
    reg.register(
        "tend_schedule_consecutive_failures",
        "Runs of the entry that failed since its last success",
        failures.clone(),
    );
    // prometheus-client adds `_total` to counters.
    reg.register(
        "tend_schedule_missed_fires",
        "Fires the entry missed (daemon down, overlap skipped)",
        missed.clone(),
    );
    reg.register(
        "tend_runs",
        "Runs started by the entry, by outcome (counted since this process started)",
        runs.clone(),
    );
    reg.register(
        "tend_daemon_up",
        "1 when these metrics are served by the scheduler daemon",
        up.clone(),
    );
    up.set(i64::from(daemon_up));
    if let Some(db_up) = cluster_db_up {
        let g = Gauge::<i64>::default();
        reg.register(
            "tend_cluster_db_up",
            "Cluster mode: 1 while this node's heartbeat reaches the shared PostgreSQL",
            g.clone(),
        );
        g.set(i64::from(db_up));
    }

    for (entry, state) in entries {
        let label = ScheduleLabel {
            schedule: entry.name.clone(),
        };
        let paused = state.as_ref().is_some_and(|s| s.paused);
        if entry.enabled && !paused {
            if let Some(t) = entry.next_fires(now, 1).first() {
                next_fire.get_or_create(&label).set(seconds(*t));
            }
        }
        let Some(state) = state else {
            continue;
        };
        if let Some(t) = state.last_success {
            last_success
                .get_or_create(&label)
                .set(seconds(t.with_timezone(&Utc)));
        }
        if let Some(ms) = state.last_duration_ms {
            last_duration.get_or_create(&label).set(ms as f64 / 1000.0);
        }
        failures
            .get_or_create(&label)
            .set(i64::try_from(state.consecutive_failures).unwrap_or(i64::MAX));
        missed.get_or_create(&label).inc_by(state.missed_fires);
        for (outcome, n) in counts.update(&entry.name, state) {
            runs.get_or_create(&RunLabels {
                schedule: entry.name.clone(),
                outcome,
            })
            .inc_by(n);
        }
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &reg);
    text
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}
