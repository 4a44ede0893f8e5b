//! `[retention]` in tend.toml: how long a finished run's backups and its records are
//! kept. Read by the one config loader, which checks its keys; applied by
//! [`super::prune`] and, for `backups = "0"`, by the run itself when it succeeds.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Retention {
    /// How long a finished run's backups (old contents saved for rollback) are kept;
    /// 0: freed as soon as the run succeeds. Default 7 days.
    #[serde(default, deserialize_with = "duration")]
    pub backups: Option<Duration>,
    /// How long run records and journals are kept. Default 90 days.
    #[serde(default, deserialize_with = "duration")]
    pub runs: Option<Duration>,
}

impl Retention {
    pub const KEYS: &[&str] = &["backups", "runs"];
    pub const HELP: &str =
        "[retention] takes backups = \"7d\" (0: freed when the run succeeds), runs = \"90d\"";

    pub fn backups(&self) -> Duration {
        self.backups.unwrap_or(Duration::from_secs(7 * 86_400))
    }

    pub fn runs(&self) -> Duration {
        self.runs.unwrap_or(Duration::from_secs(90 * 86_400))
    }

    /// `backups = "0"`: a run that succeeds frees its backups at its end.
    pub fn free_on_success(&self) -> bool {
        self.backups().is_zero()
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim() == "0" {
        return Ok(Some(Duration::ZERO));
    }
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e} (write like 7d, 12h, or 0)")))
}
