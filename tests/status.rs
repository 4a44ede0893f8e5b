//! The status page and `/metrics` (issue 16, must-show 7), served by `tend status`
//! over a state dir holding real runs (made by `tend run`) and schedule state files in
//! the daemon's format. `/metrics` is read by a Prometheus text parser
//! (prometheus-parse); the page is rendered by headless Chromium, and its DOM is
//! checked for each schedule's name, next fire and last outcome.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use support::{dump_dom, World};

/// `tend status --listen 127.0.0.1:0` in `w`, with the URL it printed. Killed on drop.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(w: &World, extra: &[&str]) -> Served {
        let mut child = w
            .command()
            .args(["status", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("http://127.0.0.1:"), "printed {line:?}");
        Served {
            child,
            url: line.trim().to_string(),
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{}", self.url, path.trim_start_matches('/'));
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(20)))
                .build(),
        );
        let mut r = agent.get(&url).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOML: &str = r#"
[[schedule]]
name = "nightly"
cron = "0 3 1 1 *"
timezone = "Europe/Paris"
recipe = "ok.rhai"

[[schedule]]
name = "flaky-cleanup"
cron = "*/7 * * * *"
timezone = "America/New_York"
recipe = "boom.rhai"
alert_after = 2

[[schedule]]
name = "never-run"
cron = "@monthly"
timezone = "UTC"
recipe = "ok.rhai"
"#;

/// A world with two real runs (one ok, one rolled back), tend.toml's three entries
/// and state files for two of them. Returns (ok run id, rolled-back run id).
fn world() -> (World, String, String) {
    let w = World::new();
    let ok = w.recipe(
        "ok.rhai",
        "//! Writes a file.\nlet p = params(#{dir: \"\", note: \"\", token: secret()});\nfs::file(p.dir + \"/a.txt\", \"hello <b>\\n\");\n",
    );
    let boom = w.recipe(
        "boom.rhai",
        "//! Fails after a change.\nlet p = params(#{dir: \"\"});\nfs::file(p.dir + \"/b.txt\", \"x\\n\");\nthrow \"boom\";\n",
    );
    std::fs::write(w.dir.path().join("tend.toml"), TOML).unwrap();
    let dir = format!("dir={}", w.root().display());
    let mut c = w.command();
    c.args(["run", ok.to_str().unwrap(), "--json", "-p", &dir])
        .args(["-p", "token=env:TOKEN", "-p", "note=<i>markup</i>"])
        .env("TOKEN", "s3cret-value");
    let r = support::Run::from(c.output().unwrap());
    r.assert_code(0);
    let ok_id = r.run_id();
    let r = w.run(&boom, &["-p", &dir]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    let boom_id = r.run_id();

    let schedules = w.state().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(
        schedules.join("nightly.json"),
        serde_json::json!({
            "name": "nightly", "last_fire": "2026-01-01T03:00:00+01:00",
            "last_run_id": ok_id, "last_outcome": "ok", "last_duration_ms": 1500,
            "last_success": "2026-01-01T03:00:02+01:00", "consecutive_failures": 0,
            "paused": false, "missed_fires": 3,
            "history": [
                {"run_id": boom_id, "fired": "2025-01-01T03:00:00+01:00", "outcome": "rolled_back", "duration_ms": 4000},
                {"run_id": ok_id, "fired": "2026-01-01T03:00:00+01:00", "outcome": "ok", "duration_ms": 1500},
            ],
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        schedules.join("flaky-cleanup.json"),
        serde_json::json!({
            "name": "flaky-cleanup", "last_fire": "2026-11-30T10:07:00-05:00",
            "last_run_id": boom_id, "last_outcome": "rolled_back", "last_duration_ms": 250,
            "last_success": null, "consecutive_failures": 1, "paused": true, "missed_fires": 0,
            "history": [{"run_id": boom_id, "fired": "2026-11-30T10:07:00-05:00", "outcome": "rolled_back", "duration_ms": 250}],
        })
        .to_string(),
    )
    .unwrap();
    (w, ok_id, boom_id)
}

/// `tend schedule next NAME --count 1`: the fire as tend prints it.
fn next_fire(w: &World, name: &str) -> String {
    let r = w.tend(&["schedule", "next", name, "--count", "1"]);
    r.assert_code(0);
    r.stdout
        .trim()
        .strip_suffix(&format!(" {name}"))
        .unwrap()
        .to_string()
}

fn scrape(s: &Served) -> prometheus_parse::Scrape {
    let (status, text) = s.get("/metrics");
    assert_eq!(status, 200);
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the one sample named `name` whose labels are `labels`, if any.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| {
            s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected {other:?}"),
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {labels:?} appears {} times",
        found.len()
    );
    found.first().copied()
}

fn epoch(rfc3339_or_fire: &str) -> f64 {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339_or_fire)
        .or_else(|_| chrono::DateTime::parse_from_str(rfc3339_or_fire, "%Y-%m-%d %H:%M:%S%:z"))
        .unwrap();
    t.timestamp() as f64
}

#[test]
fn metrics_parse_as_prometheus_text_with_each_schedules_values() {
    let (w, _ok, boom) = world();
    let s = Served::start(&w, &[]);
    let m = scrape(&s);
    let nightly = [("schedule", "nightly")];
    assert_eq!(
        value(&m, "tend_schedule_last_success_timestamp_seconds", &nightly),
        Some(epoch("2026-01-01T03:00:02+01:00"))
    );
    assert_eq!(
        value(&m, "tend_schedule_last_duration_seconds", &nightly),
        Some(1.5)
    );
    assert_eq!(
        value(&m, "tend_schedule_next_fire_timestamp_seconds", &nightly),
        Some(epoch(&next_fire(&w, "nightly")))
    );
    assert_eq!(
        value(&m, "tend_schedule_missed_fires_total", &nightly),
        Some(3.0)
    );
    let runs = |m: &prometheus_parse::Scrape, schedule, outcome| {
        value(
            m,
            "tend_runs_total",
            &[("schedule", schedule), ("outcome", outcome)],
        )
    };
    assert_eq!(runs(&m, "nightly", "ok"), Some(1.0));
    assert_eq!(runs(&m, "nightly", "rolled_back"), Some(1.0));
    assert_eq!(runs(&m, "flaky-cleanup", "rolled_back"), Some(1.0));
    assert_eq!(value(&m, "tend_daemon_up", &[]), Some(0.0));
    // Paused: no next fire. Never run: a next fire, and nothing else.
    let flaky = [("schedule", "flaky-cleanup")];
    assert_eq!(
        value(&m, "tend_schedule_next_fire_timestamp_seconds", &flaky),
        None
    );
    assert_eq!(
        value(&m, "tend_schedule_last_success_timestamp_seconds", &flaky),
        None
    );
    let never = [("schedule", "never-run")];
    assert_eq!(
        value(&m, "tend_schedule_next_fire_timestamp_seconds", &never),
        Some(epoch(&next_fire(&w, "never-run")))
    );
    assert_eq!(
        value(&m, "tend_schedule_last_duration_seconds", &never),
        None
    );
    // Every sample is one of tend's, and each metric is typed.
    for sample in &m.samples {
        assert!(sample.metric.starts_with("tend_"), "{}", sample.metric);
    }
    assert!(m.docs.contains_key("tend_runs") || m.docs.contains_key("tend_runs_total"));

    // A counter counts each fire once, however often it is scraped, and goes on
    // counting when the state file gains a fire.
    assert_eq!(runs(&scrape(&s), "nightly", "ok"), Some(1.0));
    let file = w.state().join("schedules/nightly.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    state["history"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"run_id": "29991231-000000-000-00000001",
            "fired": "2027-01-01T03:00:00+01:00", "outcome": "rolled_back", "duration_ms": 10}));
    std::fs::write(&file, state.to_string()).unwrap();
    let m = scrape(&s);
    assert_eq!(runs(&m, "nightly", "rolled_back"), Some(2.0));
    assert_eq!(runs(&m, "nightly", "ok"), Some(1.0));
    let _ = boom;
}

/// The `<section>` of entry `name` in the DOM.
fn section<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"s-{name}\""))
        .unwrap_or_else(|| panic!("no section for {name} in:\n{dom}"));
    let end = dom[start..].find("</section>").unwrap() + start;
    &dom[start..end]
}

#[test]
fn headless_chromium_shows_each_schedule_with_next_fire_and_last_outcome() {
    let (w, ok, boom) = world();
    let s = Served::start(&w, &[]);
    let dom = dump_dom(&s.url);

    let nightly = section(&dom, "nightly");
    assert!(
        nightly.contains("<span class=\"name\">nightly</span>"),
        "{nightly}"
    );
    let next = next_fire(&w, "nightly");
    assert!(
        nightly.contains(&format!("class=\"next\">{next}<")),
        "next fire {next} not in {nightly}"
    );
    assert!(nightly.contains("class=\"outcome\">ok<"), "{nightly}");
    // The strip: one mark per remembered fire, oldest first, each linking its run.
    let marks: Vec<&str> = nightly
        .split("class=\"mark ")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert_eq!(marks, ["o-rolled_back", "o-ok"]);
    assert!(
        nightly.contains(&format!("href=\"/runs/{ok}\"")),
        "{nightly}"
    );
    assert!(
        nightly.contains(&format!("href=\"/runs/{boom}\"")),
        "{nightly}"
    );
    assert!(nightly.contains("<svg class=\"plot\""), "{nightly}");
    assert_eq!(nightly.matches("<circle").count(), 2, "{nightly}");

    let flaky = section(&dom, "flaky-cleanup");
    assert!(flaky.contains("class=\"outcome\">rolled_back<"), "{flaky}");
    assert!(
        flaky.contains("class=\"next\">none while paused<"),
        "{flaky}"
    );
    assert!(flaky.contains(">paused</span>"), "{flaky}");

    let never = section(&dom, "never-run");
    let next = next_fire(&w, "never-run");
    assert!(
        never.contains(&format!("class=\"next\">{next}<")),
        "{never}"
    );
    assert!(never.contains("class=\"last\">not run yet<"), "{never}");
    // No script anywhere: the page works without one.
    assert!(!dom.contains("<script"), "{dom}");
}

#[test]
fn a_run_page_shows_its_steps_and_diffs_with_secrets_redacted_and_html_escaped() {
    let (w, ok, boom) = world();
    let s = Served::start(&w, &[]);
    let (status, html) = s.get(&format!("/runs/{ok}"));
    assert_eq!(status, 200);
    assert!(html.contains("<code>fs::file</code>"), "{html}");
    assert!(
        html.contains(&format!("{}/a.txt", w.root().display())),
        "{html}"
    );
    assert!(html.contains("diff <code>+1 -0</code>"), "{html}");
    assert!(
        !html.contains("s3cret-value"),
        "a secret reached the page:\n{html}"
    );
    assert!(html.contains("token=***"), "{html}");
    assert!(html.contains("note=&lt;i&gt;markup&lt;/i&gt;"), "{html}");
    assert!(!html.contains("<i>markup"), "{html}");
    let (_, html) = s.get(&format!("/runs/{boom}"));
    assert!(html.contains("rolled_back"), "{html}");
    assert!(html.contains("boom"), "{html}");
    // Unknown runs, ids that are paths, and other pages are 404s; writes are refused.
    assert_eq!(s.get("/runs/20270102-023000-123-0a1b2c3d").0, 404);
    assert_eq!(s.get("/runs/..%2F..%2Fetc").0, 404);
    assert_eq!(s.get("/nope").0, 404);
}

#[test]
fn only_loopback_unless_allowed_and_then_with_a_warning() {
    let (w, _, _) = world();
    let r = w.tend(&["status", "--listen", "0.0.0.0:0"]);
    r.assert_code(64);
    assert!(r.stderr.contains("not a loopback address"), "{}", r.stderr);
    let mut child = w
        .command()
        .args(["status", "--listen", "0.0.0.0:0", "--allow-remote"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(line.starts_with("http://0.0.0.0:"), "{line}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reachable from other machines, without authentication"),
        "{stderr}"
    );
}
