//! What the benchmarks share: their windows from the environment, and starting and
//! stopping the daemons they measure.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `var` as a number of seconds, else `default`.
pub fn secs(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SIGTERM, then wait for it to end.
pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// `tend daemon` as `cmd` sets it up, logging JSON to `log`: once its log says it
/// started, with how long that took.
pub fn start_daemon(mut cmd: Command, log: &Path) -> (Child, Duration) {
    let began = Instant::now();
    let child = cmd
        .args(["daemon", "--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(log).unwrap_or_default();
    while !text().contains("daemon started") {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "{} did not start:\n{}",
            log.display(),
            text()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    (child, began.elapsed())
}
