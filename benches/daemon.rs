//! Scheduler benchmark (run: `cargo bench --bench daemon`): a real `tend daemon` with
//! 10,000 `[[schedule]]` entries.
//!
//! 1. Idle: every entry daily at its own minute. Start-up time (spawn to the
//!    "daemon started" log line, i.e. config read, next fires computed, records
//!    read, catch-up applied), resident memory, and CPU over `TEND_BENCH_IDLE_SECS`
//!    (default 20) of doing nothing.
//! 2. Busy: 50 of the 10,000 fire every second (`* * * * * *`, a recipe that does
//!    nothing) for `TEND_BENCH_BUSY_SECS` (default 15): fire lateness p50/p99 (the
//!    daemon logs `late_ms`, from the due instant to the fire's thread running), and
//!    how many runs ended.
//!
//! Targets (issue 16): start-up < 1 s, RSS < 100 MiB, idle CPU < 1 % of a core,
//! p99 lateness < 100 ms.

#[path = "common/mod.rs"]
mod common;

use common::{secs, start_daemon, stop};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

const TEND: &str = env!("CARGO_BIN_EXE_tend");
const ENTRIES: usize = 10_000;
const BUSY: usize = 50;

fn config(busy: usize) -> String {
    let mut t = String::from("[daemon]\nmax_concurrent_runs = 64\n\n");
    for i in 0..ENTRIES {
        let cron = if i < busy {
            "* * * * * *".to_string()
        } else {
            format!("{} {} * * *", i % 60, (i / 60) % 24)
        };
        let _ = writeln!(
            t,
            "[[schedule]]\nname = \"e{i}\"\ncron = \"{cron}\"\ntimezone = \"UTC\"\nrecipe = \"nothing.rhai\"\n"
        );
    }
    t
}

fn tend(dir: &Path) -> Command {
    let mut c = Command::new(TEND);
    c.current_dir(dir)
        .env("TEND_STATE_DIR", dir.join("state"))
        .env("TEND_LOCK_DIR", dir.join("locks"))
        .env_remove("TEND_LOG");
    c
}

/// A daemon on `busy` every-second entries; returns it once it says it started.
fn start(dir: &Path, busy: usize) -> (Child, Duration, std::path::PathBuf) {
    std::fs::write(dir.join("tend.toml"), config(busy)).unwrap();
    let log = dir.join(format!("daemon-{busy}.log"));
    let (child, took) = start_daemon(tend(dir), &log);
    (child, took, log)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("nothing.rhai"), "//! Does nothing.\nlet x = 1;\n").unwrap();
    // The trust file sits beside tend.toml: it must exist before the vetting.
    std::fs::write(d.join("tend.toml"), config(0)).unwrap();
    let vet = tend(d)
        .args(["vet", "nothing.rhai", "--by", "bench"])
        .output()
        .unwrap();
    assert!(vet.status.success(), "{vet:?}");
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;

    let idle = secs("TEND_BENCH_IDLE_SECS", 20);
    let (child, startup, _) = start(d, 0);
    let pid = child.id();
    let rss_start = rss_kib(pid);
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(idle));
    let cpu = (cpu_ticks(pid) - t0) as f64 / hz;
    let rss_idle = rss_kib(pid);
    stop(child);
    println!("{ENTRIES} entries, idle:");
    println!(
        "  start-up            {:>8.0} ms   (target < 1000)",
        startup.as_secs_f64() * 1e3
    );
    println!(
        "  RSS after start     {:>8.1} MiB  (target < 100)",
        rss_start as f64 / 1024.0
    );
    println!(
        "  RSS after {idle:>3} s idle {:>7.1} MiB",
        rss_idle as f64 / 1024.0
    );
    println!(
        "  idle CPU            {:>8.3} %    of one core over {idle} s (target < 1)",
        cpu / idle as f64 * 100.0
    );

    let busy_secs = secs("TEND_BENCH_BUSY_SECS", 15);
    let (child, _, log) = start(d, BUSY);
    let pid = child.id();
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(busy_secs));
    let cpu = (cpu_ticks(pid) - t0) as f64 / hz;
    let rss = rss_kib(pid);
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut late: Vec<i64> = lines
        .iter()
        .filter(|v| v["message"] == "fire" && v["reason"] == "cron")
        .filter_map(|v| v["late_ms"].as_i64())
        .collect();
    late.sort();
    let count = |m: &str| lines.iter().filter(|v| v["message"] == m).count();
    let ok = lines
        .iter()
        .filter(|v| v["message"] == "run ended" && v["outcome"] == "ok")
        .count();
    println!("{BUSY} of {ENTRIES} entries firing each second, {busy_secs} s:");
    println!("  fires               {:>8}", late.len());
    println!("  lateness p50        {:>8} ms", percentile(&late, 0.50));
    println!(
        "  lateness p99        {:>8} ms   (target < 100)",
        percentile(&late, 0.99)
    );
    println!(
        "  lateness max        {:>8} ms",
        late.last().copied().unwrap_or(-1)
    );
    println!("  runs ended ok       {ok:>8}");
    println!("  skipped (overlap)   {:>8}", count("fire skipped"));
    let refused = lines
        .iter()
        .filter(|v| v["reason"] == "unvetted" || v["reason"] == "error")
        .count();
    println!("  refused             {refused:>8}");
    println!(
        "  CPU                 {:>8.1} %    of one core",
        cpu / busy_secs as f64 * 100.0
    );
    println!("  RSS                 {:>8.1} MiB", rss as f64 / 1024.0);
}
