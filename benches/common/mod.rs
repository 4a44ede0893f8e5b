//! What the benchmarks share: their windows from the environment, and stopping a
//! daemon they started.
#![allow(dead_code)]

use std::process::{Child, Command};

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
