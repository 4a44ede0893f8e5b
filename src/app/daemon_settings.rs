//! `[daemon]` in tend.toml: how many scheduled runs go at once and how long a stop
//! waits for them. Read by the one config loader, which checks its keys.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Settings {
    /// Runs going at once, all entries together; further fires queue. Default 4.
    #[serde(default)]
    pub max_concurrent_runs: Option<NonZeroUsize>,
    /// On SIGTERM, how long running jobs may finish before they are cancelled (and
    /// roll back). Default 60 s.
    #[serde(default, deserialize_with = "duration")]
    pub stop_timeout: Option<Duration>,
}

impl Settings {
    pub const KEYS: &[&str] = &["max_concurrent_runs", "stop_timeout"];
    pub const HELP: &str =
        "[daemon] takes max_concurrent_runs = N (default 4), stop_timeout = \"60s\"";

    pub fn max_concurrent_runs(&self) -> usize {
        self.max_concurrent_runs.map_or(4, NonZeroUsize::get)
    }

    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout.unwrap_or(Duration::from_secs(60))
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e} (write like 30s, 2m)")))
}
