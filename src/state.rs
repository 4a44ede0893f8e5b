//! The state directory: where runs, their journals and backups, the audit log and
//! host locks live.
//!
//! ```text
//! STATE/audit.jsonl, audit.head, audit.lock
//! STATE/runs/RUN_ID/run.json                    (with the run's lease while it runs)
//! STATE/runs/RUN_ID/hosts/HOST/journal.jsonl
//! STATE/runs/RUN_ID/hosts/HOST/backup/…        (local host; remote hosts keep theirs)
//! ```
//!
//! Backups and whole runs are freed as `[retention]` says (see [`crate::app::prune`]).
//!
//! Host locks are not here: they belong to the machine (see [`crate::lock`]), so two
//! state dirs on one machine still never work on one host at once.

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::lock::host_file;
use crate::outcome::RunState;

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    /// This machine's host locks (see [`crate::lock::machine_lock_dir`]).
    locks: PathBuf,
}

/// What is recorded about a run, in `run.json`. Written when it starts and again when
/// it ends; one still saying `running` after its process died was interrupted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    pub recipe: String,
    pub recipe_path: String,
    pub hash: String,
    pub params: std::collections::BTreeMap<String, String>,
    pub user: String,
    /// The `[[schedule]]` entry that fired it: absent for a person's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub started: String,
    #[serde(default)]
    pub ended: Option<String>,
    #[serde(default)]
    pub duration_ms: u64,
    pub outcome: RunState,
    /// When `tend rollback` last replayed its journals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_at: Option<String>,
    #[serde(default)]
    pub changed: u64,
    pub dry_run: bool,
    pub hosts: Vec<String>,
    /// How each host was reached, so a later rollback can reach it again.
    #[serde(default)]
    pub targets: Vec<crate::reach::HostSpec>,
    /// Kept for older tend versions, which judge a run by it; see `lease`.
    pub pid: u32,
    /// Who runs it, while it runs: absent in runs of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<crate::lease::Lease>,
    /// Hosts whose backups are gone, freed by tend: a rollback of their changes that
    /// needs a backup says so instead of trying.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub backups_freed: std::collections::BTreeMap<String, Freed>,
}

/// When and why a host's backups of a run were freed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Freed {
    pub at: String,
    /// `prune` (retention), `success` (`backups = "0"`) or `rollback` (complete).
    pub by: String,
}

impl Freed {
    pub fn now(by: &str) -> Freed {
        Freed {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            by: by.to_string(),
        }
    }

    /// For messages: `freed by tend prune at 2026-12-02T20:00:00Z`.
    pub fn describe(&self) -> String {
        let how = match self.by.as_str() {
            "prune" => "by tend prune ([retention] backups)",
            "success" => "when the run succeeded ([retention] backups = \"0\")",
            "rollback" => "by a complete rollback",
            other => other,
        };
        format!("freed {how} at {}", self.at)
    }
}

impl RunMeta {
    /// Stands in for a `run.json` that cannot be read (edited, cut short by a full
    /// disk): the run is still listed, and its journals can still be replayed. Only
    /// this machine can be reached again; how other hosts were reached was in the
    /// file that is lost.
    pub(crate) fn damaged(run_id: &str, hosts: Vec<String>) -> RunMeta {
        let local = crate::reach::HostSpec::local();
        RunMeta {
            run_id: run_id.to_string(),
            recipe: "?".into(),
            recipe_path: String::new(),
            hash: String::new(),
            params: Default::default(),
            user: String::new(),
            schedule: None,
            started: String::new(),
            ended: None,
            duration_ms: 0,
            outcome: RunState::Damaged,
            rolled_back_at: None,
            changed: 0,
            dry_run: false,
            targets: hosts
                .contains(&local.name)
                .then_some(local)
                .into_iter()
                .collect(),
            hosts,
            pid: 0,
            lease: None,
            backups_freed: Default::default(),
        }
    }

    pub fn is_damaged(&self) -> bool {
        self.outcome == RunState::Damaged
    }

    /// `running` becomes `interrupted` when the run's lease is dead (an older run
    /// without one: when its pid is gone).
    pub fn effective_outcome(&self) -> RunState {
        let alive = match &self.lease {
            Some(l) => l.liveness() != crate::lease::Liveness::Dead,
            None => crate::lease::pid_alive(self.pid),
        };
        if self.outcome == RunState::Running && !alive {
            RunState::Interrupted
        } else {
            self.outcome
        }
    }

    /// Who runs it, for messages: `pid 123 on web1 since …`.
    pub fn holder(&self) -> String {
        match &self.lease {
            Some(l) => format!("{} since {}", l.owner.describe(), l.since),
            None => format!("pid {}", self.pid),
        }
    }
}

/// `/var/lib/tend` for root, else `$XDG_STATE_HOME/tend` (or `~/.local/state/tend`).
pub fn default_root() -> PathBuf {
    if crate::transport::local::running_as_root() {
        return PathBuf::from("/var/lib/tend");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("tend");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/state/tend")
}

pub(crate) fn mkdirs(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| {
            Error::io(
                format!("cannot create state directory {}", path.display()),
                e,
            )
        })
}

pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    replace_file(path, data, true)
}

/// Replace `path` with `data` whole (readers see the old file or the new one), and
/// when `durable`, on disk before this returns. A copy kept only to be read here
/// (a cluster node's copy of what the database holds) need not wait for the disk.
pub fn replace_file(path: &Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    if durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl StateDir {
    pub fn open(root: &Path) -> Result<StateDir> {
        // Absolute from the start: journals name backups inside it, and a rollback
        // may be started from another directory.
        let root = std::path::absolute(root)
            .map_err(|e| Error::io(format!("state directory {}", root.display()), e))?;
        mkdirs(&root)?;
        Ok(StateDir {
            root,
            locks: crate::lock::machine_lock_dir(),
        })
    }

    /// Keep this machine's host locks in `dir` instead of the default.
    pub fn with_lock_dir(mut self, dir: &Path) -> Result<StateDir> {
        self.locks = std::path::absolute(dir)
            .map_err(|e| Error::io(format!("lock directory {}", dir.display()), e))?;
        Ok(self)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn lock_dir(&self) -> &Path {
        &self.locks
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.runs_dir().join(run_id)
    }

    pub fn host_dir(&self, run_id: &str, host: &str) -> Result<PathBuf> {
        let d = self.run_dir(run_id).join("hosts").join(host_file(host));
        mkdirs(&d)?;
        Ok(d)
    }

    pub fn journal_path(&self, run_id: &str, host: &str) -> PathBuf {
        self.run_dir(run_id)
            .join("hosts")
            .join(host_file(host))
            .join("journal.jsonl")
    }

    pub fn write_meta(&self, meta: &RunMeta) -> Result<()> {
        let dir = self.run_dir(&meta.run_id);
        mkdirs(&dir)?;
        let text = serde_json::to_vec_pretty(meta).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&dir.join("run.json"), &text)
            .map_err(|e| Error::io(format!("cannot write {}", dir.display()), e))
    }

    pub fn read_meta(&self, run_id: &str) -> Result<RunMeta> {
        check_run_id(run_id)?;
        let path = self.run_dir(run_id).join("run.json");
        let text = fs::read(&path).map_err(|_| Error::UnknownRun(run_id.to_string()))?;
        serde_json::from_slice(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// [`StateDir::read_meta`], or for a run whose `run.json` is damaged but that has
    /// journals, a stand-in ([`RunMeta::damaged`]) to roll back from; the damaged file
    /// is kept as `run.json.damaged`, since the stand-in will be written over it.
    pub fn recover_meta(&self, run_id: &str) -> Result<RunMeta> {
        // An id that is a path is refused before any of it is looked at.
        check_run_id(run_id)?;
        let err = match self.read_meta(run_id) {
            Ok(meta) => return Ok(meta),
            Err(e) => e,
        };
        let Some(meta) = self.damaged_meta(run_id) else {
            return Err(err);
        };
        let file = self.run_dir(run_id).join("run.json");
        let kept = file.with_extension("json.damaged");
        if file.exists() && !kept.exists() {
            fs::copy(&file, &kept)
                .map_err(|e| Error::io(format!("cannot keep a copy of {}", file.display()), e))?;
        }
        Ok(meta)
    }

    /// The stand-in for an unreadable `run.json`, if the run left anything to show:
    /// the file itself, or a host's journal.
    fn damaged_meta(&self, run_id: &str) -> Option<RunMeta> {
        let dir = self.run_dir(run_id);
        let mut hosts: Vec<String> = fs::read_dir(dir.join("hosts"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("journal.jsonl").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        hosts.sort();
        (!hosts.is_empty() || dir.join("run.json").exists())
            .then(|| RunMeta::damaged(run_id, hosts))
    }

    /// All runs, oldest first (run ids sort by time); a run whose `run.json` cannot be
    /// read is listed as damaged rather than left out.
    pub fn list_runs(&self) -> Result<Vec<RunMeta>> {
        let mut ids: Vec<String> = match fs::read_dir(self.runs_dir()) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => return Ok(Vec::new()),
        };
        ids.sort();
        Ok(ids
            .iter()
            .filter_map(|id| self.read_meta(id).ok().or_else(|| self.damaged_meta(id)))
            .map(|mut meta| {
                if !meta.dry_run && meta.ended.is_none()
                    || meta.effective_outcome() == RunState::Interrupted
                {
                    meta.changed = meta.changed.max(self.journaled_steps(&meta));
                }
                meta
            })
            .collect())
    }

    /// How many steps the run's journals record a change for: the count of a run
    /// that never wrote its end (killed, interrupted, still running).
    fn journaled_steps(&self, meta: &RunMeta) -> u64 {
        meta.hosts
            .iter()
            .filter_map(|h| crate::journal::Journal::read(&self.journal_path(&meta.run_id, h)).ok())
            .map(|c| c.steps_changed())
            .sum()
    }

    /// A new run id, its folder made here: an id another process made in the same
    /// instant (its random part notwithstanding) is never handed out twice.
    pub fn reserve_run_id(&self) -> Result<String> {
        let runs = self.runs_dir();
        mkdirs(&runs)?;
        loop {
            let id = new_run_id();
            match fs::DirBuilder::new().mode(0o700).create(runs.join(&id)) {
                Ok(()) => return Ok(id),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot create run directory in {}", runs.display()),
                        e,
                    ))
                }
            }
        }
    }
}

/// `last` is the most recent run, `last~N` the one N before it (as git's `HEAD~N`);
/// anything else is returned as it is, for [`check_run_id`]. With `real_only`,
/// dry-runs are passed over: `tend rollback last` means the last run that could
/// have changed something.
pub fn resolve_run_id(state: &StateDir, id: &str, real_only: bool) -> Result<String> {
    resolve_run_id_in(|| state.list_runs(), id, real_only)
}

/// [`resolve_run_id`] over the runs `list` gives (the cluster's, in cluster mode).
pub fn resolve_run_id_in(
    list: impl FnOnce() -> Result<Vec<RunMeta>>,
    id: &str,
    real_only: bool,
) -> Result<String> {
    let Some(rest) = id.strip_prefix("last") else {
        return Ok(id.to_string());
    };
    let back: usize = match rest {
        "" => 0,
        _ => rest
            .strip_prefix('~')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{id:?} is not a run id: `last` is the most recent run, `last~1` the one before it"
                ))
            })?,
    };
    let runs: Vec<RunMeta> = list()?
        .into_iter()
        .filter(|r| !(real_only && r.dry_run))
        .collect();
    runs.iter()
        .rev()
        .nth(back)
        .map(|r| r.run_id.clone())
        .ok_or_else(|| {
            let what = if real_only {
                "real runs (dry-runs are not counted)"
            } else {
                "runs"
            };
            Error::UnknownRun(format!("{id} (there are {} {what})", runs.len()))
        })
}

/// Refuse anything that is not shaped like an id [`new_run_id`] makes (or an older
/// tend made): a run id names a folder of the state dir, so `../x` or `/tmp/x` would
/// replay a journal from anywhere.
pub fn check_run_id(run_id: &str) -> Result<()> {
    let b = run_id.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let hex =
        |r: std::ops::Range<usize>| b[r].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let stamp = b.len() >= 16 && digits(0..8) && b[8] == b'-' && digits(9..15) && b[15] == b'-';
    // `20261128-212233-4f2a` before run ids carried milliseconds.
    let old = b.len() == 20 && hex(16..20);
    let new = b.len() == 28 && digits(16..19) && b[19] == b'-' && hex(20..28);
    if stamp && (old || new) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{run_id:?} is not a run id (they look like 20261128-212233-042-4f2a09c1); `tend runs` lists them"
    )))
}

/// `20261128-212233-042-4f2a09c1`: UTC time to the millisecond, then 32 bits that are
/// random for the first id of a millisecond and count up within it (as ULIDs do), so
/// ids of one process sort in the order they were made even within a millisecond.
/// Across processes the random part keeps them apart, and
/// [`StateDir::reserve_run_id`] makes sure.
pub fn new_run_id() -> String {
    static LAST: std::sync::Mutex<(i64, u32)> = std::sync::Mutex::new((0, 0));
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let now_ms = chrono::Utc::now().timestamp_millis();
    let (ms, n) = if now_ms <= last.0 {
        // Same millisecond, or the clock stepped back: stay after the last id.
        match last.1.checked_add(1) {
            Some(n) => (last.0, n),
            None => (last.0 + 1, random_u32() >> 1),
        }
    } else {
        // Top bit clear: room to count up within the millisecond.
        (now_ms, random_u32() >> 1)
    };
    *last = (ms, n);
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    format!("{}-{n:08x}", t.format("%Y%m%d-%H%M%S-%3f"))
}

fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if got == 4 {
        return u32::from_ne_bytes(buf);
    }
    let nanos = chrono::Utc::now().timestamp_subsec_nanos() as u64;
    ((nanos ^ ((std::process::id() as u64) << 20)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_in_the_order_they_are_made_and_old_ones_still_read() {
        let ids: Vec<String> = (0..2000).map(|_| new_run_id()).collect();
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
            check_run_id(&w[1]).unwrap();
        }
        check_run_id("20261128-212233-4f2a").unwrap();
        for bad in ["../20261128-212233-4f2a", "20261128-212233-04-4f2a09c1", ""] {
            assert!(check_run_id(bad).is_err(), "{bad}");
        }
    }
}
