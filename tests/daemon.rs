//! `tend daemon` as a real process, on real time at second granularity (issue 16,
//! must-show 1, 2, 4 and 5, and the refusal of an edited recipe): every fire is an
//! ordinary audited run with `trigger = "schedule"`, overlap rules hold, a killed
//! daemon's run is rolled back at restart, `catch_up` runs once, SIGHUP reloads.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::{wait_for, Daemon, World};

/// `tend daemon` for a world, once it listens on its socket.
fn start_daemon(w: &World) -> Daemon {
    start_daemon_with(w, &[])
}

fn start_daemon_with(w: &World, extra: &[&str]) -> Daemon {
    let log = w.dir.path().join(format!("daemon-{}.log", now_ms()));
    let sock = w.state().join("daemon.sock");
    Daemon::spawn(w.command(), extra, log, "the daemon", |_| sock.exists())
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn audit(w: &World) -> Vec<Value> {
    std::fs::read_to_string(w.state().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events(w: &World, event: &str, schedule: &str) -> Vec<Value> {
    audit(w)
        .into_iter()
        .filter(|e| e["event"] == event && e["schedule"] == schedule)
        .collect()
}

fn record(w: &World, name: &str) -> Value {
    let p = w.state().join("schedules").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or("{}".into())).unwrap()
}

/// tend.toml (in the world's folder, where the daemon looks) and a vetted recipe.
fn setup(w: &World, toml: &str, recipe: &str) -> PathBuf {
    w.write("x.conf", "port=80\n");
    let r = w.recipe_in_root("job.rhai", &format!("//! A scheduled job.\n{recipe}"));
    w.beside("tend.toml", toml);
    w.tend(&["vet", r.to_str().unwrap(), "--by", "test"])
        .assert_code(0);
    r
}

fn entry(name: &str, cron: &str, extra: &str) -> String {
    format!("[[schedule]]\nname = \"{name}\"\ncron = \"{cron}\"\nrecipe = \"job.rhai\"\n{extra}\n")
}

const QUICK: &str = "fs::file(\"ROOT/x.conf\", \"port=8080\\n\");\n";
const SLOW: &str =
    "fs::file(\"ROOT/x.conf\", \"changed\\n\");\nsh(\"sleep 5\", #{read_only: true});\n";

fn content(w: &World) -> String {
    std::fs::read_to_string(w.root().join("x.conf")).unwrap()
}

fn rfc(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .to_utc()
}

// ---------------------------------------------------------------- must-show 1

#[test]
fn every_two_seconds_fires_five_audited_runs_in_ten_seconds() {
    let w = World::new();
    setup(&w, &entry("every2", "*/2 * * * * *", ""), QUICK);
    let d = start_daemon(&w);
    let sock = std::fs::metadata(w.state().join("daemon.sock")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&sock.permissions()) & 0o777,
        0o600
    );
    std::thread::sleep(Duration::from_secs(10));
    let code = d.stop();
    assert_eq!(code, 0);
    let starts = events(&w, "run_start", "every2");
    assert!(
        (4..=6).contains(&starts.len()),
        "{} runs in 10 s: {starts:?}",
        starts.len()
    );
    for s in &starts {
        assert_eq!(s["trigger"], "schedule", "{s}");
        assert_eq!(s["vetted"], true, "{s}");
        let ends: Vec<Value> = audit(&w)
            .into_iter()
            .filter(|e| e["event"] == "run_end" && e["run_id"] == s["run_id"])
            .collect();
        assert_eq!(ends.len(), 1, "{s}");
        assert_eq!(ends[0]["outcome"], "ok");
    }
    let r = record(&w, "every2");
    assert_eq!(r["last_outcome"], "ok", "{r}");
    assert_eq!(r["consecutive_failures"], 0);
    assert_eq!(r["history"].as_array().unwrap().len(), starts.len());
    let list = w.tend(&["schedule", "list", "--json"]);
    list.assert_code(0);
    let listed = &list.events()[0];
    assert_eq!(listed["last_run"]["outcome"], "ok", "{listed}");
    assert_eq!(listed["last_run"]["run_id"], r["last_run_id"]);
    assert_eq!(listed["paused"], false);
}

// ---------------------------------------------------------------- must-show 2

/// A 5 s job fired every 2 s for about 11 s under `overlap`; its world after the
/// daemon stopped (stop_timeout 1 s: the last run is cancelled and rolls back).
fn overlapping(overlap: &str) -> (World, Vec<Value>) {
    let w = World::new();
    let toml = format!(
        "[daemon]\nstop_timeout = \"1s\"\n\n{}",
        entry("slow", "*/2 * * * * *", &format!("overlap = \"{overlap}\""))
    );
    setup(&w, &toml, SLOW);
    let d = start_daemon(&w);
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(d.stop(), 0);
    let history = record(&w, "slow")["history"].as_array().unwrap().clone();
    (w, history)
}

/// No run of the entry started before the one before it ended.
fn never_two_at_once(history: &[Value]) {
    for pair in history.windows(2) {
        let end = rfc(&pair[0]["fired"])
            + chrono::TimeDelta::milliseconds(pair[0]["duration_ms"].as_i64().unwrap());
        assert!(
            rfc(&pair[1]["fired"]) + chrono::TimeDelta::milliseconds(50) >= end,
            "two runs at once: {pair:?}"
        );
    }
}

#[test]
fn overlap_skip_queue_and_replace() {
    let skip = std::thread::spawn(|| {
        let (w, history) = overlapping("skip");
        never_two_at_once(&history);
        let skips: Vec<Value> = events(&w, "schedule_skip", "slow")
            .into_iter()
            .filter(|e| e["reason"] == "overlap")
            .collect();
        // Runs at about 0 and 6 s; the fires at 2, 4, 8 and 10 s are skipped.
        assert!((2..=3).contains(&history.len()), "{history:?}");
        assert!(skips.len() >= 3, "{skips:?}");
    });
    let queue = std::thread::spawn(|| {
        let (w, history) = overlapping("queue");
        never_two_at_once(&history);
        // The fire at 2 s waits and starts as the first run ends (back to back);
        // the one at 4 s finds the queue full.
        let back_to_back = history.windows(2).any(|p| {
            let end = rfc(&p[0]["fired"])
                + chrono::TimeDelta::milliseconds(p[0]["duration_ms"].as_i64().unwrap());
            (rfc(&p[1]["fired"]) - end).num_milliseconds() < 1000
        });
        assert!(back_to_back, "{history:?}");
        let full = events(&w, "schedule_skip", "slow")
            .into_iter()
            .filter(|e| e["reason"] == "queue_full")
            .count();
        assert!(full >= 2, "queue_full skips: {full}");
    });
    let replace = std::thread::spawn(|| {
        let (w, history) = overlapping("replace");
        never_two_at_once(&history);
        let cancelled = history
            .iter()
            .filter(|h| h["outcome"] == "cancelled")
            .count();
        // Each fire cancels the one before: every run ends cancelled, none ok.
        assert!(cancelled >= 4, "{history:?}");
        assert!(
            history.iter().all(|h| h["outcome"] == "cancelled"),
            "{history:?}"
        );
        assert_eq!(content(&w), "port=80\n", "the target is as before");
    });
    for t in [skip, queue, replace] {
        t.join().unwrap();
    }
}

// ---------------------------------------------------------------- must-show 4

#[test]
fn a_run_killed_with_the_daemon_is_rolled_back_at_restart() {
    let w = World::new();
    setup(
        &w,
        &entry("slow", "0 0 1 1 *", ""),
        "fs::file(\"ROOT/x.conf\", \"changed\\n\");\nsh(\"sleep 20\", #{read_only: true});\n",
    );
    let d = start_daemon(&w);
    let asked = w.tend(&["schedule", "run", "slow"]);
    asked.assert_code(0);
    assert!(asked.stdout.contains("started"), "{}", asked.stdout);
    assert!(
        wait_for(Duration::from_secs(10), || content(&w) == "changed\n"),
        "the run never changed the file:\n{}",
        d.log()
    );
    let run_id = record(&w, "slow")["last_run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(record(&w, "slow")["last_outcome"], "running");
    d.kill();
    assert_eq!(content(&w), "changed\n");

    let d = start_daemon(&w);
    assert!(
        wait_for(Duration::from_secs(10), || record(&w, "slow")
            ["last_outcome"]
            == "rolled_back"),
        "{}\n{}",
        record(&w, "slow"),
        d.log()
    );
    assert_eq!(content(&w), "port=80\n", "files restored");
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(w.state().join("runs").join(&run_id).join("run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["outcome"], "rolled_back");
    let recovered = events(&w, "schedule_recovered", "slow");
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0]["run_id"], run_id.as_str());
    assert_eq!(d.stop(), 0);
}

/// An hourly entry whose fire was 30 minutes ago, with a record saying it last fired
/// an hour ago: the daemon was down across one fire.
fn after_an_hour_down(catch_up: &str) -> (World, Daemon) {
    let w = World::new();
    let now = chrono::Utc::now();
    let minute = chrono::Timelike::minute(&(now - chrono::TimeDelta::minutes(30)));
    let cron = format!("{minute} * * * *");
    setup(
        &w,
        &entry("hourly", &cron, &format!("timezone = \"UTC\"\n{catch_up}")),
        QUICK,
    );
    let last = (now - chrono::TimeDelta::hours(1)).to_rfc3339();
    std::fs::create_dir_all(w.state().join("schedules")).unwrap();
    std::fs::write(
        w.state().join("schedules/hourly.json"),
        serde_json::json!({"name": "hourly", "last_fire": last, "last_run_id": null,
            "last_outcome": "ok", "last_duration_ms": 5, "last_success": last,
            "consecutive_failures": 0, "paused": false, "missed_fires": 0, "history": []})
        .to_string(),
    )
    .unwrap();
    let d = start_daemon(&w);
    (w, d)
}

#[test]
fn catch_up_runs_once_after_downtime_and_not_at_all_without_it() {
    let (w, d) = after_an_hour_down("catch_up = \"2h\"\n\n[[schedule]]\nname = \"boot\"\ncron = \"@reboot\"\nrecipe = \"job.rhai\"");
    assert!(
        wait_for(Duration::from_secs(10), || !events(
            &w,
            "run_start",
            "hourly"
        )
        .is_empty()),
        "{}",
        d.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    let log = d.log();
    assert_eq!(d.stop(), 0);
    assert!(log.contains("\"reason\":\"catch_up\""), "{log}");
    assert_eq!(events(&w, "run_start", "hourly").len(), 1);
    assert_eq!(record(&w, "hourly")["missed_fires"], 0);
    assert_eq!(
        events(&w, "run_start", "boot").len(),
        1,
        "@reboot: once at start"
    );

    let (w, d) = after_an_hour_down("");
    assert!(
        wait_for(Duration::from_secs(10), || record(&w, "hourly")
            ["missed_fires"]
            == 1),
        "{}",
        d.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.stop(), 0);
    assert!(events(&w, "run_start", "hourly").is_empty());
    let skipped = events(&w, "schedule_skip", "hourly");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["reason"], "missed");
}

// ---------------------------------------------------------------- must-show 5

#[test]
fn sighup_keeps_the_old_schedule_on_a_broken_file_and_applies_a_fixed_one() {
    let w = World::new();
    setup(&w, &entry("a", "* * * * * *", ""), QUICK);
    let d = start_daemon(&w);
    let runs = |name: &str| events(&w, "run_start", name).len();
    assert!(
        wait_for(Duration::from_secs(5), || runs("a") >= 1),
        "{}",
        d.log()
    );

    w.beside("tend.toml", &entry("a", "0 25 * * *", ""));
    d.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(5), || d
            .log()
            .contains("reload refused")),
        "{}",
        d.log()
    );
    assert!(d.log().contains("hour 25 is out of range"), "{}", d.log());
    let before = runs("a");
    assert!(
        wait_for(Duration::from_secs(5), || runs("a") >= before + 2),
        "the old schedule stopped:\n{}",
        d.log()
    );

    w.beside("tend.toml", &entry("b", "* * * * * *", ""));
    d.signal("HUP");
    assert!(
        wait_for(Duration::from_secs(5), || runs("b") >= 1),
        "{}",
        d.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let a = runs("a");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs("a"), a, "a is gone from the schedule");
    assert_eq!(d.stop(), 0);
}

// ---------------------------------------------------------------- vetting

#[test]
fn an_edited_recipe_is_refused_at_fire_time_and_pause_is_audited() {
    let w = World::new();
    let r = setup(&w, &entry("e", "* * * * * *", ""), QUICK);
    std::fs::write(
        &r,
        format!("{}// edited\n", std::fs::read_to_string(&r).unwrap()),
    )
    .unwrap();
    let d = start_daemon(&w);
    assert!(
        wait_for(Duration::from_secs(5), || !events(
            &w,
            "schedule_refused",
            "e"
        )
        .is_empty()),
        "{}",
        d.log()
    );
    let refused = &events(&w, "schedule_refused", "e")[0];
    assert_eq!(refused["reason"], "unvetted", "{refused}");
    assert_eq!(refused["trigger"], "schedule");
    assert!(d.log().contains("refused"), "{}", d.log());
    assert!(events(&w, "run_start", "e").is_empty());
    // The entry's record is saved just after the audit event: wait for it too.
    wait_for(Duration::from_secs(5), || {
        record(&w, "e")["last_outcome"] == "refused"
    });
    assert_eq!(record(&w, "e")["last_outcome"], "refused");
    assert!(record(&w, "e")["consecutive_failures"].as_u64().unwrap() >= 1);

    w.tend(&["schedule", "pause", "e"]).assert_code(0);
    assert_eq!(record(&w, "e")["paused"], true);
    assert_eq!(events(&w, "schedule_pause", "e").len(), 1);
    let refusals = events(&w, "schedule_refused", "e").len();
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(
        events(&w, "schedule_refused", "e").len(),
        refusals,
        "paused"
    );
    assert_eq!(d.stop(), 0);
}

/// A webhook on 127.0.0.1 that keeps the JSON body of every POST it gets.
fn webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/T", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    keep.lock().unwrap().push(v);
                }
            }
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    (url, got)
}

/// Must-show 6 (webhook part) and the daemon's --metrics: an edited recipe is refused
/// at fire time and the entry's webhook gets the JSON with reason `unvetted`; with
/// `alert_after = 1` and no success, one `stale` alert follows (not one per fire); the
/// daemon serves /metrics with the entry on it.
#[test]
fn refusals_and_staleness_reach_the_webhook_and_metrics_are_served() {
    let w = World::new();
    let (url, got) = webhook();
    let r = setup(
        &w,
        &entry(
            "hooked",
            "* * * * * *",
            &format!("notify = [\"{url}\"]\nalert_after = 1"),
        ),
        QUICK,
    );
    std::fs::write(
        &r,
        format!("{}// edited\n", std::fs::read_to_string(&r).unwrap()),
    )
    .unwrap();
    let d = start_daemon_with(&w, &["--metrics", "127.0.0.1:0"]);
    let reasons = |got: &std::sync::Mutex<Vec<Value>>| -> Vec<String> {
        got.lock()
            .unwrap()
            .iter()
            .map(|v| v["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(8), || {
            let r = reasons(&got);
            r.contains(&"unvetted".to_string()) && r.contains(&"stale".to_string())
        }),
        "webhook got {:?}\n{}",
        got.lock().unwrap(),
        d.log()
    );
    let unvetted = got
        .lock()
        .unwrap()
        .iter()
        .find(|v| v["reason"] == "unvetted")
        .cloned()
        .unwrap();
    assert_eq!(unvetted["schedule"], "hooked", "{unvetted}");
    assert!(unvetted["text"].as_str().is_some(), "{unvetted}");
    std::thread::sleep(Duration::from_millis(2500));
    let stale = reasons(&got).iter().filter(|r| *r == "stale").count();
    assert_eq!(stale, 1, "one alert per silence: {:?}", reasons(&got));

    // The address it bound is in its log.
    let log = d.log();
    let addr = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["address"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no address in the log:\n{log}"));
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    assert!(text.contains("tend_daemon_up 1"), "{text}");
    assert!(text.contains("schedule=\"hooked\""), "{text}");
    assert_eq!(d.stop(), 0);
}
