//! The audit log: what `tend` did, where and when, in a form that shows tampering.
//!
//! It is an append-only JSON Lines file, `<state_dir>/audit.jsonl`, one event per line.
//! Each line carries `seq` (1, 2, 3, …), `prev` (the previous line's `hash`) and its
//! own `hash`, so editing, removing or reordering a line breaks the chain at the first
//! line touched and `tend audit verify` can name it. A chain alone cannot show that
//! lines were cut off the end, so `<state_dir>/audit.head` records the `seq` and `hash`
//! of the last line written; a log shorter than its head has lost lines.
//!
//! The hash covers the line's JSON *value*, not its bytes: it is the SHA-256 of the
//! line re-serialized without `hash` with object keys sorted (see `canonical`). That
//! lets verification work from the parsed line without trusting how it was formatted.
//!
//! Several `tend` processes (a daemon, a manual run, a rollback) may append at once.
//! An exclusive `flock` on `<state_dir>/audit.lock` is held across "read the last line,
//! append, fsync, update the head", so lines never interleave and two writers never
//! pick the same `seq`. Readers take the lock shared so they never see half a line.
//!
//! This is tamper-*evident* against edits by hand or by tools that do not know the
//! format; someone who can rewrite the whole file (or cut lines off the end and
//! rewrite `audit.head` to match) can forge it. An [`Anchor`] (`HASH:COUNT`, the hash
//! of the last line and the number of lines) kept off the machine closes that gap for
//! every line up to it: `tend audit verify --anchor HASH:COUNT` fails unless line
//! COUNT still carries HASH, which no rewrite of the earlier lines can keep.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// `prev` of the first line: there is no previous hash, and a fixed value keeps the
/// first line as checkable as the others.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Fields `append` adds itself; an event carrying its own would be overwritten
/// silently or, worse, could be used to fake chain fields.
const RESERVED: [&str; 4] = ["seq", "ts", "prev", "hash"];

/// How much of the end of the log is read at a time to find the last line. Events are
/// small, so one chunk nearly always holds it; big ones just take a few more reads.
const TAIL_CHUNK: u64 = 8 * 1024;

/// Contents of `audit.head`.
#[derive(Debug, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// The chain fields of the last line, which the next line links to.
pub(crate) struct Tail {
    pub(crate) seq: u64,
    pub(crate) hash: String,
}

/// A point of the chain to be kept elsewhere: line `count` has hash `hash`. Written
/// and read as `HASH:COUNT`; an empty log is the all-zero hash with count 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub hash: String,
    pub count: u64,
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.hash, self.count)
    }
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Anchor, String> {
        let bad = || {
            format!(
                "{s:?} is not an anchor; write it as `tend audit anchor` prints it: \
                 HASH:COUNT (64 hex digits, a colon, the number of lines)"
            )
        };
        let (hash, count) = s.trim().split_once(':').ok_or_else(bad)?;
        let count: u64 = count.parse().map_err(|_| bad())?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let hash = hash.to_ascii_lowercase();
        if count == 0 && hash != GENESIS {
            return Err(format!("{s:?}: an anchor of 0 lines has the all-zero hash"));
        }
        Ok(Anchor { hash, count })
    }
}

pub struct AuditLog {
    path: PathBuf,
    lock_path: PathBuf,
    head_path: PathBuf,
    dir: PathBuf,
}

impl AuditLog {
    pub fn new(state_dir: &Path) -> AuditLog {
        AuditLog {
            path: state_dir.join("audit.jsonl"),
            lock_path: state_dir.join("audit.lock"),
            head_path: state_dir.join("audit.head"),
            dir: state_dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `event` must be a JSON object; seq/ts/prev/hash are added. Returns the seq.
    pub fn append(&self, event: Value) -> Result<u64, Error> {
        self.append_many(vec![event])
    }

    /// Append several events under one lock and one fsync (a fleet run's steps would
    /// otherwise queue on the lock one fsync at a time). Returns the last seq.
    pub fn append_many(&self, events: Vec<Value>) -> Result<u64, Error> {
        let objects = checked_events(events).map_err(|e| self.audit_error(e))?;

        fs::create_dir_all(&self.dir).map_err(|e| {
            Error::io(
                format!("cannot create state directory {}", self.dir.display()),
                e,
            )
        })?;
        let _lock = self.lock(true)?;

        let (mut log, created) = self.open_for_append()?;
        let tail = self.last_line(&mut log)?;
        // The head is only cross-checked, never the source of seq/prev: the chain must
        // continue from what is really in the file. Appending after lost lines would
        // move the head onto the shortened log and hide the loss for good.
        self.check_head_before_append(tail.as_ref())?;

        let (lines, Tail { seq, hash: prev }) = chain(objects, tail);
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        // One write: under the lock nobody else appends, and a crash can at worst
        // leave an incomplete last line, which verify reports.
        log.write_all(text.as_bytes())
            .and_then(|()| log.sync_data())
            .map_err(|e| Error::io(format!("cannot append to {}", self.path.display()), e))?;
        if created {
            // A new file's directory entry is not durable until the directory is
            // synced; without it a crash could lose the whole log but keep the head.
            sync_dir(&self.dir);
        }

        self.write_head(&Head { seq, hash: prev })?;
        Ok(seq)
    }

    /// All events, optionally only those whose "run_id" equals run_id. Missing file → empty.
    pub fn read(&self, run_id: Option<&str>) -> Result<Vec<Value>, Error> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock(false)?;
        let Some(mut lines) = self.lines()? else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        while let Some((number, bytes)) = lines.next_line()? {
            if bytes.is_empty() {
                continue;
            }
            let event: Value = serde_json::from_slice(&bytes).map_err(|_| {
                self.audit_error(format!(
                    "line {number} is not valid JSON; run `tend audit verify`"
                ))
            })?;
            let wanted = match run_id {
                None => true,
                Some(id) => event.get("run_id").and_then(Value::as_str) == Some(id),
            };
            if wanted {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Every line as it is in the file, oldest first (`tend audit export`); the
    /// number of lines written.
    pub fn export(&self, out: &mut dyn Write) -> Result<u64, Error> {
        let _lock = self.lock(false)?;
        let Some(mut lines) = self.lines()? else {
            return Ok(0);
        };
        let mut n = 0;
        while let Some((_, bytes)) = lines.next_line()? {
            out.write_all(&bytes)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| Error::io("cannot write the export", e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Ok(number of lines verified) or Err(Error::Tampered{..}) whose message names the
    /// first bad line number (1-based) and why.
    pub fn verify(&self) -> Result<u64, Error> {
        self.verify_against(None).map(|a| a.count)
    }

    /// [`AuditLog::verify`], and also that the log still holds `anchor` (taken earlier
    /// and kept elsewhere): line `anchor.count` must carry `anchor.hash`. Returns the
    /// anchor of the log as it is now.
    pub fn verify_against(&self, anchor: Option<&Anchor>) -> Result<Anchor, Error> {
        let empty = Anchor {
            hash: GENESIS.to_string(),
            count: 0,
        };
        if !self.path.exists() && !self.head_path.exists() {
            return match anchor {
                Some(a) if a.count > 0 => Err(self.anchor_missing(a, 0)),
                _ => Ok(empty),
            };
        }
        let _lock = self.lock(false)?;
        // Checked again under the lock: a first append may have created it meanwhile.
        let log_exists = self.path.exists();
        let head = self.read_head()?;

        let mut last: Option<Tail> = None;
        // The head lags behind the log when a writer died between appending and
        // updating the head; then the line it names must still carry its hash.
        let mut hash_at_head_seq: Option<String> = None;
        let mut count = 0u64;

        if let Some(mut lines) = self.lines()? {
            while let Some((number, bytes)) = lines.next_line()? {
                let tail = self.check_line(number, &bytes, last.as_ref())?;
                if let Some(a) = anchor.filter(|a| a.count == tail.seq && a.hash != tail.hash) {
                    return Err(self.tampered(format!(
                        "line {number} does not carry the hash of anchor {a} \
                         (the log was rewritten up to or before that line)"
                    )));
                }
                if head.as_ref().is_some_and(|h| h.seq == tail.seq) {
                    hash_at_head_seq = Some(tail.hash.clone());
                }
                last = Some(tail);
                count = number;
            }
        }

        let last_seq = last.as_ref().map_or(0, |t| t.seq);
        let problem = match (&head, &last) {
            (None, None) => None,
            (None, Some(_)) => Some(format!(
                "audit.head is missing but the log has {count} lines (head deleted)"
            )),
            (Some(h), _) if !log_exists => Some(format!(
                "the log file is missing but audit.head says seq {} (log deleted)",
                h.seq
            )),
            (Some(h), _) if h.seq > last_seq => Some(format!(
                "the log ends at seq {last_seq} but audit.head says {} \
                 (lines removed from the end)",
                h.seq
            )),
            (Some(h), Some(t)) if h.seq == t.seq => (h.hash != t.hash)
                .then(|| "last line's hash differs from audit.head (edited)".to_string()),
            (Some(h), _) => (hash_at_head_seq.as_deref() != Some(h.hash.as_str())).then(|| {
                format!(
                    "the hash of the line with seq {} differs from audit.head (edited)",
                    h.seq
                )
            }),
        };
        if let Some(problem) = problem {
            return Err(self.tampered(problem));
        }
        // Checked after the head: a log that lost lines says so in the head's words
        // first, and only a head rewritten to match the cut is left to the anchor.
        if let Some(a) = anchor.filter(|a| a.count > last_seq) {
            return Err(self.anchor_missing(a, last_seq));
        }
        Ok(last.map_or(empty, |t| Anchor {
            hash: t.hash,
            count: t.seq,
        }))
    }

    fn anchor_missing(&self, anchor: &Anchor, lines: u64) -> Error {
        self.tampered(format!(
            "the log has {lines} lines but anchor {anchor} was taken when it had {} \
             (lines removed from the end and audit.head rewritten to match)",
            anchor.count
        ))
    }

    /// The anchor of the log as it is, without reading all of it: the last line,
    /// cross-checked with `audit.head` as an append does. For `[audit] anchor_command`
    /// after each run; `tend audit anchor` verifies the whole chain first.
    pub fn current_anchor(&self) -> Result<Anchor, Error> {
        if !self.path.exists() && !self.head_path.exists() {
            return Ok(Anchor {
                hash: GENESIS.to_string(),
                count: 0,
            });
        }
        let _lock = self.lock(false)?;
        let mut log = File::open(&self.path)
            .map_err(|e| Error::io(format!("cannot open {}", self.path.display()), e))?;
        let tail = self.last_line(&mut log)?;
        self.check_head_before_append(tail.as_ref())?;
        Ok(match tail {
            Some(t) => Anchor {
                hash: t.hash,
                count: t.seq,
            },
            None => Anchor {
                hash: GENESIS.to_string(),
                count: 0,
            },
        })
    }

    fn check_line(&self, number: u64, bytes: &[u8], before: Option<&Tail>) -> Result<Tail, Error> {
        check_line(number, bytes, before, |n| format!("line {n}")).map_err(|e| self.tampered(e))
    }

    fn check_head_before_append(&self, tail: Option<&Tail>) -> Result<(), Error> {
        let head = self.read_head()?;
        let refuse = |why: String| {
            self.tampered(format!(
                "{why}; refusing to append until this is resolved (`tend audit verify`)"
            ))
        };
        match (head, tail) {
            (None, None) => Ok(()),
            (None, Some(t)) => Err(refuse(format!(
                "audit.head is missing but the log ends at seq {}",
                t.seq
            ))),
            (Some(h), t) if h.seq > t.map_or(0, |t| t.seq) => Err(refuse(format!(
                "the log ends at seq {} but audit.head says {} (lines removed from the end)",
                t.map_or(0, |t| t.seq),
                h.seq
            ))),
            (Some(h), Some(t)) if h.seq == t.seq && h.hash != t.hash => Err(refuse(
                "last line's hash differs from audit.head (edited)".to_string(),
            )),
            // Head equal to the tail, or one behind after a writer died between the
            // log fsync and the head update: the next head write repairs it.
            _ => Ok(()),
        }
    }

    /// Seq and hash of the last line, read from the end of the file so appending
    /// stays cheap however large the log grows.
    fn last_line(&self, log: &mut File) -> Result<Option<Tail>, Error> {
        let bytes = read_last_line(log)
            .map_err(|e| Error::io(format!("cannot read {}", self.path.display()), e))?;
        let Some((bytes, complete)) = bytes else {
            return Ok(None);
        };
        if !complete {
            return Err(self.audit_error(
                "the last line is incomplete (a write was interrupted?); run `tend audit verify`",
            ));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
            self.audit_error("the last line is not valid JSON; run `tend audit verify`")
        })?;
        let seq = value.get("seq").and_then(Value::as_u64);
        let hash = value.get("hash").and_then(Value::as_str);
        match (seq, hash) {
            (Some(seq), Some(hash)) => Ok(Some(Tail {
                seq,
                hash: hash.to_string(),
            })),
            _ => Err(self.audit_error("the last line has no seq or hash; run `tend audit verify`")),
        }
    }

    fn open_for_append(&self) -> Result<(File, bool), Error> {
        let created = !self.path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| Error::io(format!("cannot open {}", self.path.display()), e))?;
        Ok((file, created))
    }

    fn lines(&self) -> Result<Option<Lines>, Error> {
        match File::open(&self.path) {
            Ok(file) => Ok(Some(Lines {
                reader: BufReader::new(file),
                number: 0,
                path: self.path.clone(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("cannot open {}", self.path.display()), e)),
        }
    }

    fn read_head(&self) -> Result<Option<Head>, Error> {
        let text = match fs::read(&self.head_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    format!("cannot read {}", self.head_path.display()),
                    e,
                ))
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|_| self.tampered("audit.head is not valid (edited or corrupted)"))
    }

    /// Temp file + rename, so a reader or a crash sees the old head or the new one,
    /// never half of one. The rename itself is not made durable: if a crash undoes it
    /// the head lags one line behind, which `verify` and `append` accept.
    fn write_head(&self, head: &Head) -> Result<(), Error> {
        let tmp = self.dir.join("audit.head.tmp");
        let text = serde_json::to_string(head).expect("a Head always serializes");
        let write = || -> io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            // Without this a crash could keep the rename but lose the content,
            // leaving an empty head that verify would report as tampering.
            file.sync_all()?;
            fs::rename(&tmp, &self.head_path)
        };
        write().map_err(|e| Error::io(format!("cannot write {}", self.head_path.display()), e))
    }

    /// The lock lives in its own file so that it never has to be taken on a file
    /// that is renamed or replaced, and the log stays purely append-only.
    fn lock(&self, exclusive: bool) -> Result<File, Error> {
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock_path);
        let file = match opened {
            Ok(file) => file,
            // A reader without write access to the state dir (e.g. an auditor's
            // account) can still lock an existing lock file for reading.
            Err(e)
                if !exclusive
                    && matches!(
                        e.kind(),
                        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
                    ) =>
            {
                File::open(&self.lock_path).map_err(|e| {
                    Error::io(format!("cannot open {}", self.lock_path.display()), e)
                })?
            }
            Err(e) => {
                return Err(Error::io(
                    format!("cannot open {}", self.lock_path.display()),
                    e,
                ))
            }
        };
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| Error::io(format!("cannot lock {}", self.lock_path.display()), e))?;
        // Closing the file (dropping it) releases the lock, also if we panic.
        Ok(file)
    }

    fn audit_error(&self, message: impl Into<String>) -> Error {
        Error::Audit {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn tampered(&self, message: impl Into<String>) -> Error {
        Error::Tampered {
            path: self.path.clone(),
            message: message.into(),
        }
    }
}

/// `[audit]` in tend.toml (read by `app::Config`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A shell command that is given the log's anchor (`HASH:COUNT`) on stdin and in
    /// `$TEND_AUDIT_ANCHOR` after every run and rollback, to keep it where whoever
    /// controls this machine cannot rewrite it: `logger -t tend-audit` (syslog or
    /// journald forwarded elsewhere), an append-only remote store…
    pub anchor_command: Option<String>,
}

/// How long an anchor command may take: a hung command must not hold the run's
/// report (and its exit code) back forever.
const ANCHOR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl AuditConfig {
    /// The keys of `[audit]`, for "did you mean" suggestions.
    pub const KEYS: &[&str] = &["anchor_command"];

    /// Run `anchor_command`, if there is one, with `anchor`. Err: why it did not
    /// succeed, for a warning (the run it follows is over; its record is in the log).
    pub fn send_anchor(&self, anchor: &Anchor, run_id: &str) -> Result<(), String> {
        let Some(command) = self.anchor_command.as_deref() else {
            return Ok(());
        };
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .env("TEND_AUDIT_ANCHOR", anchor.to_string())
            .env("TEND_RUN_ID", run_id);
        crate::child::run_bounded(&mut cmd, format!("{anchor}\n").as_bytes(), ANCHOR_TIMEOUT)
            .map_err(|why| format!("[audit] anchor_command `{command}` {why}"))
    }
}

/// Numbered raw lines of the log. Raw bytes rather than `String`s so that a line with
/// invalid UTF-8 is reported as a bad line instead of aborting the whole read.
struct Lines {
    reader: BufReader<File>,
    number: u64,
    path: PathBuf,
}

impl Lines {
    fn next_line(&mut self) -> Result<Option<(u64, Vec<u8>)>, Error> {
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", self.path.display()), e))?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        self.number += 1;
        Ok(Some((self.number, buf)))
    }
}

/// The last line of `file` without its newline, and whether it had one (a missing
/// newline means the last write did not finish). Reads backwards in chunks.
fn read_last_line(file: &mut File) -> io::Result<Option<(Vec<u8>, bool)>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    loop {
        let step = TAIL_CHUNK.min(pos);
        pos -= step;
        let mut chunk = vec![0; step as usize];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;

        let complete = tail.last() == Some(&b'\n');
        let content_end = tail.len() - usize::from(complete);
        // Only the newly read chunk can hold a newline not yet seen.
        let search_end = (step as usize).min(content_end);
        if let Some(i) = tail[..search_end].iter().rposition(|&b| b == b'\n') {
            return Ok(Some((tail[i + 1..content_end].to_vec(), complete)));
        }
        if pos == 0 {
            return Ok(Some((tail[..content_end].to_vec(), complete)));
        }
    }
}

/// Checks one line (`name(number)` in messages: "line 5", "row seq 5") against itself
/// and the line before it; returns its chain fields, or why it is not a link of the
/// chain.
pub(crate) fn check_line(
    number: u64,
    bytes: &[u8],
    before: Option<&Tail>,
    name: impl Fn(u64) -> String,
) -> Result<Tail, String> {
    let this = name(number);
    if bytes.is_empty() {
        return Err(format!("{this} is empty"));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|_| format!("{this} is not valid JSON"))?;
    let Value::Object(mut fields) = value else {
        return Err(format!("{this} is not a JSON object"));
    };

    let Some(Value::String(stored)) = fields.remove("hash") else {
        return Err(format!("{this} has no hash"));
    };
    if hash_of(&fields) != stored {
        return Err(format!("{this}: content does not match its hash (edited)"));
    }

    let Some(seq) = fields.get("seq").and_then(Value::as_u64) else {
        return Err(format!("{this} has no valid seq"));
    };
    let expected = before.map_or(1, |b| b.seq + 1);
    if seq != expected {
        let why = match before {
            None => {
                format!("the log starts at seq {seq}, not 1 (lines removed from the start)")
            }
            Some(b) if seq > b.seq => {
                format!("seq {seq} follows {} (a line was deleted)", b.seq)
            }
            Some(b) => format!(
                "seq {seq} follows {} (lines duplicated or reordered)",
                b.seq
            ),
        };
        return Err(format!("{this}: {why}"));
    }

    let prev = fields.get("prev").and_then(Value::as_str);
    let expected_prev = before.map_or(GENESIS, |b| b.hash.as_str());
    if prev != Some(expected_prev) {
        let why = if before.is_none() {
            format!("{this}: prev is not the start-of-log value (lines removed from the start)")
        } else {
            format!(
                "{this}: prev does not match {}'s hash (a line was removed or replaced)",
                name(number - 1)
            )
        };
        return Err(why);
    }

    Ok(Tail { seq, hash: stored })
}

/// Events as they may enter the chain: JSON objects without the chain's own fields.
pub(crate) fn checked_events(events: Vec<Value>) -> Result<Vec<Map<String, Value>>, String> {
    let mut objects = Vec::with_capacity(events.len());
    for event in events {
        let Value::Object(fields) = event else {
            return Err("an audit event must be a JSON object".into());
        };
        if let Some(key) = RESERVED.iter().find(|k| fields.contains_key(**k)) {
            return Err(format!(
                "event field `{key}` is reserved for the hash chain"
            ));
        }
        objects.push(fields);
    }
    Ok(objects)
}

/// Chain `objects` after `tail` (none: the start of the log): each gets seq, ts, prev
/// and hash, and is written in canonical form. Returns the lines (without newlines)
/// and the new tail.
pub(crate) fn chain(objects: Vec<Map<String, Value>>, tail: Option<Tail>) -> (Vec<String>, Tail) {
    let (mut seq, mut prev) = match tail {
        Some(t) => (t.seq, t.hash),
        None => (0, GENESIS.to_string()),
    };
    let mut lines = Vec::with_capacity(objects.len());
    for mut fields in objects {
        seq += 1;
        fields.insert("seq".into(), Value::from(seq));
        fields.insert(
            "ts".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        fields.insert("prev".into(), Value::from(prev));
        let hash = hash_of(&fields);
        fields.insert("hash".into(), Value::from(hash.clone()));
        let mut text = String::new();
        canonical(&Value::Object(fields), &mut text);
        lines.push(text);
        prev = hash;
    }
    (lines, Tail { seq, hash: prev })
}

/// Hex SHA-256 of the canonical form of a line's fields (without `hash`).
fn hash_of(fields: &Map<String, Value>) -> String {
    let mut text = String::new();
    canonical_object(fields, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Compact JSON with object keys sorted at every level. `serde_json`'s map is already
/// sorted, unless some crate in the build enables its `preserve_order` feature; the
/// hash must not depend on what other dependencies happen to switch on.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => canonical_object(map, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn canonical_object(map: &Map<String, Value>, out: &mut String) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::from(key.as_str()).to_string());
        out.push(':');
        canonical(value, out);
    }
    out.push('}');
}

/// Best effort: not every platform or file system can sync a directory, and the log
/// line itself is already durable.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log_with(n: u64) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path());
        for i in 1..=n {
            let run = if i % 2 == 0 { "even" } else { "odd" };
            let seq = log
                .append(json!({"event": "step", "run_id": run, "name": format!("step-{i}")}))
                .unwrap();
            assert_eq!(seq, i);
        }
        (dir, log)
    }

    fn lines_of(log: &AuditLog) -> Vec<String> {
        fs::read_to_string(log.path())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write_lines(log: &AuditLog, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(log.path(), text).unwrap();
    }

    fn tampered_message(log: &AuditLog) -> String {
        match log.verify() {
            Err(Error::Tampered { message, .. }) => message,
            other => panic!("expected Tampered, got {other:?}"),
        }
    }

    /// What someone who knows the format would do: change a line and recompute its hash.
    fn rehash(line: &str, change: impl FnOnce(&mut Map<String, Value>)) -> String {
        let Value::Object(mut fields) = serde_json::from_str(line).unwrap() else {
            panic!("not an object")
        };
        fields.remove("hash");
        change(&mut fields);
        let hash = hash_of(&fields);
        fields.insert("hash".into(), Value::from(hash));
        let mut out = String::new();
        canonical(&Value::Object(fields), &mut out);
        out
    }

    #[test]
    fn chain_is_valid_after_appends() {
        let (_dir, log) = log_with(5);
        assert_eq!(log.verify().unwrap(), 5);

        let events = log.read(None).unwrap();
        assert_eq!(events.len(), 5);
        assert_eq!(events[0]["prev"], GENESIS);
        for pair in events.windows(2) {
            assert_eq!(pair[1]["prev"], pair[0]["hash"]);
            assert_eq!(
                pair[1]["seq"].as_u64(),
                pair[0]["seq"].as_u64().map(|s| s + 1)
            );
        }
        let ts = events[0]["ts"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert!(ts.ends_with('Z'), "{ts}");

        let odd = log.read(Some("odd")).unwrap();
        assert_eq!(odd.len(), 3);
        assert!(odd.iter().all(|e| e["run_id"] == "odd"));
        assert!(log.read(Some("none")).unwrap().is_empty());
    }

    #[test]
    fn missing_log_reads_empty_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&dir.path().join("not-yet"));
        assert!(log.read(None).unwrap().is_empty());
        assert_eq!(log.verify().unwrap(), 0);
    }

    #[test]
    fn editing_one_byte_of_a_middle_line_names_it() {
        let (_dir, log) = log_with(5);
        let mut lines = lines_of(&log);
        lines[2] = lines[2].replace("step-3", "step-8");
        write_lines(&log, &lines);
        let msg = tampered_message(&log);
        assert_eq!(msg, "line 3: content does not match its hash (edited)");
    }

    #[test]
    fn breaking_the_json_of_a_line_names_it() {
        let (_dir, log) = log_with(5);
        let mut lines = lines_of(&log);
        lines[3].replace_range(0..1, "[");
        write_lines(&log, &lines);
        assert_eq!(tampered_message(&log), "line 4 is not valid JSON");
    }

    #[test]
    fn deleting_a_middle_line_is_caught() {
        let (_dir, log) = log_with(5);
        let mut lines = lines_of(&log);
        lines.remove(2);
        write_lines(&log, &lines);
        assert_eq!(
            tampered_message(&log),
            "line 3: seq 4 follows 2 (a line was deleted)"
        );
    }

    #[test]
    fn deleting_the_first_line_is_caught() {
        let (_dir, log) = log_with(3);
        let mut lines = lines_of(&log);
        lines.remove(0);
        write_lines(&log, &lines);
        assert_eq!(
            tampered_message(&log),
            "line 1: the log starts at seq 2, not 1 (lines removed from the start)"
        );
    }

    #[test]
    fn replacing_a_line_with_a_forged_one_is_caught() {
        let (_dir, log) = log_with(5);
        let mut lines = lines_of(&log);
        // Forge line 3 with a valid own hash; line 4's prev no longer matches.
        lines[2] = rehash(&lines[2], |f| {
            f.insert("name".into(), json!("harmless"));
        });
        write_lines(&log, &lines);
        assert_eq!(
            tampered_message(&log),
            "line 4: prev does not match line 3's hash (a line was removed or replaced)"
        );
    }

    #[test]
    fn deleting_the_last_line_is_caught_via_head() {
        let (_dir, log) = log_with(5);
        let mut lines = lines_of(&log);
        lines.pop();
        write_lines(&log, &lines);
        assert_eq!(
            tampered_message(&log),
            "the log ends at seq 4 but audit.head says 5 (lines removed from the end)"
        );
        // Appending now would move the head onto the shortened log and hide the loss.
        assert!(matches!(
            log.append(json!({"event": "x"})),
            Err(Error::Tampered { .. })
        ));
    }

    #[test]
    fn rehashed_last_line_is_caught_via_head() {
        let (_dir, log) = log_with(5);
        let mut lines = lines_of(&log);
        lines[4] = rehash(&lines[4], |f| {
            f.insert("name".into(), json!("harmless"));
        });
        write_lines(&log, &lines);
        assert_eq!(
            tampered_message(&log),
            "last line's hash differs from audit.head (edited)"
        );
    }

    #[test]
    fn deleted_head_is_caught() {
        let (dir, log) = log_with(2);
        fs::remove_file(dir.path().join("audit.head")).unwrap();
        assert!(tampered_message(&log).contains("audit.head is missing"));
    }

    #[test]
    fn head_one_behind_after_a_crash_is_accepted() {
        let (dir, log) = log_with(3);
        let second = &log.read(None).unwrap()[1];
        let head = json!({"seq": 2, "hash": second["hash"]});
        fs::write(dir.path().join("audit.head"), head.to_string()).unwrap();
        assert_eq!(log.verify().unwrap(), 3);
        assert_eq!(log.append(json!({"event": "after"})).unwrap(), 4);
        assert_eq!(log.verify().unwrap(), 4);
    }

    #[test]
    fn interrupted_last_write_blocks_append_and_fails_verify() {
        let (_dir, log) = log_with(2);
        let mut file = OpenOptions::new().append(true).open(log.path()).unwrap();
        file.write_all(b"{\"event\":\"half").unwrap();
        assert!(matches!(
            log.append(json!({"event": "x"})),
            Err(Error::Audit { .. })
        ));
        assert_eq!(tampered_message(&log), "line 3 is not valid JSON");
    }

    #[test]
    fn last_line_is_found_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path());
        let big = "x".repeat(3 * TAIL_CHUNK as usize + 17);
        assert_eq!(log.append(json!({"blob": big})).unwrap(), 1);
        assert_eq!(log.append(json!({"blob": big})).unwrap(), 2);
        assert_eq!(log.append(json!({"small": 1})).unwrap(), 3);
        assert_eq!(log.append(json!({"blob": big})).unwrap(), 4);
        assert_eq!(log.verify().unwrap(), 4);
    }

    #[test]
    fn anchor_pins_the_lines_up_to_it() {
        let (dir, log) = log_with(4);
        let at_two: Anchor = {
            let second = &log.read(None).unwrap()[1];
            format!("{}:2", second["hash"].as_str().unwrap())
                .parse()
                .unwrap()
        };
        let now = log.verify_against(Some(&at_two)).unwrap();
        assert_eq!(now.count, 4);
        assert_eq!(now.to_string().parse::<Anchor>().unwrap(), now);
        assert_eq!(log.current_anchor().unwrap(), now);

        // Cut to one line and point the head at it: verify alone is satisfied.
        let lines = lines_of(&log);
        write_lines(&log, &lines[..1]);
        let first = &log.read(None).unwrap()[0];
        let head = json!({"seq": 1, "hash": first["hash"]});
        fs::write(dir.path().join("audit.head"), head.to_string()).unwrap();
        assert_eq!(log.verify().unwrap(), 1);
        let msg = match log.verify_against(Some(&at_two)) {
            Err(Error::Tampered { message, .. }) => message,
            other => panic!("expected Tampered, got {other:?}"),
        };
        assert!(msg.starts_with("the log has 1 lines but anchor"), "{msg}");

        // Same length, other content (the whole log rewritten with fresh hashes).
        let forged: Vec<String> = lines[..2]
            .iter()
            .map(|l| rehash(l, |f| drop(f.insert("name".into(), json!("x")))))
            .collect();
        let mut prev = GENESIS.to_string();
        let chained: Vec<String> = forged
            .iter()
            .map(|l| {
                let l = rehash(l, |f| drop(f.insert("prev".into(), json!(prev.clone()))));
                prev = serde_json::from_str::<Value>(&l).unwrap()["hash"]
                    .as_str()
                    .unwrap()
                    .to_string();
                l
            })
            .collect();
        write_lines(&log, &chained);
        let head = json!({"seq": 2, "hash": prev});
        fs::write(dir.path().join("audit.head"), head.to_string()).unwrap();
        assert_eq!(log.verify().unwrap(), 2);
        assert!(matches!(
            log.verify_against(Some(&at_two)),
            Err(Error::Tampered { .. })
        ));
    }

    #[test]
    fn anchors_parse_strictly() {
        for bad in [
            "",
            "abc:1",
            "zz:1",
            &format!("{}:x", "a".repeat(64)),
            &format!("{}:0", "a".repeat(64)),
        ] {
            assert!(bad.parse::<Anchor>().is_err(), "{bad:?}");
        }
        let a: Anchor = format!("{}:7", "A".repeat(64)).parse().unwrap();
        assert_eq!(
            a,
            Anchor {
                hash: "a".repeat(64),
                count: 7
            }
        );
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_level() {
        let value = json!({"b": {"z": 1, "a": [true, null, "\"q\""]}, "a": 1.5});
        let mut out = String::new();
        canonical(&value, &mut out);
        assert_eq!(out, r#"{"a":1.5,"b":{"a":[true,null,"\"q\""],"z":1}}"#);
    }

    #[test]
    fn non_objects_and_reserved_fields_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path());
        assert!(matches!(log.append(json!([1])), Err(Error::Audit { .. })));
        assert!(matches!(
            log.append(json!({"seq": 9})),
            Err(Error::Audit { .. })
        ));
        assert_eq!(log.verify().unwrap(), 0);
    }

    #[test]
    fn concurrent_writers_keep_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                // Each thread has its own AuditLog and so its own lock file descriptor,
                // which makes flock behave as between separate processes.
                let log = AuditLog::new(dir.path());
                std::thread::spawn(move || {
                    for i in 0..50 {
                        log.append(json!({"run_id": format!("t{t}"), "i": i}))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }

        let log = AuditLog::new(dir.path());
        assert_eq!(log.verify().unwrap(), 200);
        let seqs: Vec<u64> = log
            .read(None)
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        for t in 0..4 {
            assert_eq!(log.read(Some(&format!("t{t}"))).unwrap().len(), 50);
        }
    }
}
