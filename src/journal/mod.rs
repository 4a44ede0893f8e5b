//! The write-ahead journal of one host in one run: the undo records of its changes,
//! appended and fsync'ed before each change is made, so that a run killed at any
//! point can still be rolled back, by itself or later by `tend rollback`.
//!
//! Format: JSON Lines. `{"seq":1,"step":3,"op":"fs::file","undo":{…},"dirs":[…]}`
//! before a change, `{"left":1,"state":{…}}` once it is made (what it left at its
//! path), `{"done":1}` after the step, `{"undone":1}` once rollback reverted it.
//!
//! Only a torn *last* line is the normal trace of a crash (the process died while
//! writing it, so its change had not started); opening the journal cuts it off. Any
//! other line that cannot be read is damage: [`Journal::read`] reports it, and a
//! rollback of a damaged journal is incomplete, never silently "complete".

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub mod sweep;
pub mod undo;

use undo::{Fingerprint, Undo};

/// Where a run writes its undo records: appended, durably where it says so, before
/// each change. [`Journal`] is the file; a store may keep them elsewhere.
pub trait JournalWrite: Send + Sync {
    /// Record where backups go and the recipe's write scope (before any change).
    fn header(&self, backups: &str, scope: Option<&[String]>) -> std::io::Result<()>;
    /// Append an undo record durably; returns its sequence number.
    fn append(
        &self,
        step: u64,
        op: &str,
        undo: &Undo,
        become_: bool,
        dirs: &[String],
    ) -> std::io::Result<u64>;
    /// What record `seq`'s change left.
    fn record_left(&self, seq: u64, state: Option<&Fingerprint>) -> std::io::Result<()>;
    /// The last appended change completed.
    fn mark_done(&self) -> std::io::Result<()>;
    /// Record `seq` was reverted by a rollback.
    fn mark_undone(&self, seq: u64) -> std::io::Result<()>;
}

/// Where a journal's lines go: the journal file, or a store's table. Each line is
/// one record's text (no newline), appended after the ones before it.
pub trait LineSink: Send + Sync {
    fn write_line(&self, line: &str, durable: bool) -> std::io::Result<()>;
}

/// The journal file, opened for appending.
struct FileLines(Mutex<File>);

impl LineSink for FileLines {
    fn write_line(&self, line: &str, durable: bool) -> std::io::Result<()> {
        let mut f = self.0.lock().expect("journal lock");
        f.write_all(format!("{line}\n").as_bytes())?;
        if durable {
            f.sync_data()?;
        }
        Ok(())
    }
}

pub struct Journal {
    lines: Box<dyn LineSink>,
    seq: AtomicU64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub step: u64,
    pub op: String,
    pub undo: Undo,
    /// The change was made as root through sudo (`become`): revert it that way too.
    pub become_: bool,
    /// Where the parent directory of each of `undo.paths()` really led when the record
    /// was written (symlinks resolved). Empty in journals of older versions.
    pub dirs: Vec<String>,
    /// What the change left at `undo.subject()`: `Some(None)` when it left nothing
    /// there, `None` when that was never recorded (the run died during the change).
    pub left: Option<Option<Fingerprint>>,
    /// The change finished. False for the step that was running when the run died.
    pub done: bool,
    /// Already reverted by an earlier rollback.
    pub undone: bool,
}

/// A journal as read back: its records, and the lines that could not be read.
#[derive(Debug, Default)]
pub struct Contents {
    pub entries: Vec<Entry>,
    /// `line N: why`, for every line that is neither a record nor a torn last line.
    pub damaged: Vec<String>,
    /// The write scope of the recipe that made the changes, when it declared one.
    pub scope: Option<Vec<String>>,
    /// The run's backup directory on the host (older journals do not say).
    pub backups: Option<String>,
}

impl Contents {
    /// How many steps made a change not undone since: the count of a run that
    /// never wrote its end (killed, interrupted, still running).
    pub fn steps_changed(&self) -> u64 {
        let steps: std::collections::BTreeSet<u64> = self
            .entries
            .iter()
            .filter(|e| !e.undone)
            .map(|e| e.step)
            .collect();
        steps.len() as u64
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Line {
    Record {
        seq: u64,
        step: u64,
        op: String,
        undo: Undo,
        #[serde(default, rename = "become", skip_serializing_if = "std::ops::Not::not")]
        become_: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dirs: Vec<String>,
    },
    Left {
        left: u64,
        state: Option<Fingerprint>,
    },
    /// First in a journal: where the run keeps its backups on the host, and the
    /// recipe's declared write scope, which rollback checks every path against again.
    Header {
        backups: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<Vec<String>>,
    },
    Done {
        done: u64,
    },
    Undone {
        undone: u64,
    },
}

impl Journal {
    /// Open (creating if needed) the journal at `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Journal> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        if text.last().is_some_and(|b| *b != b'\n') {
            // A torn last line: the write that died with the process. Cut it off, so
            // that the next line does not turn it into damage in the middle.
            let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            file.set_len(keep as u64)?;
            file.sync_data()?;
            text.truncate(keep);
        }
        Ok(Journal::over(
            Box::new(FileLines(Mutex::new(file))),
            &parse(&text),
        ))
    }

    /// A journal whose lines go to `lines`, numbering records after `existing`'s.
    pub fn over(lines: Box<dyn LineSink>, existing: &Contents) -> Journal {
        Journal {
            lines,
            seq: AtomicU64::new(existing.entries.iter().map(|e| e.seq).max().unwrap_or(0)),
        }
    }

    fn write_line(&self, line: &Line, durable: bool) -> std::io::Result<()> {
        let text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        self.lines.write_line(&text, durable)
    }

    pub fn read(path: &Path) -> std::io::Result<Contents> {
        Ok(parse(&std::fs::read(path)?))
    }

    /// A journal's text (its lines, each ending in a newline) as read back.
    pub fn parse(text: &str) -> Contents {
        parse(text.as_bytes())
    }
}

impl JournalWrite for Journal {
    /// Record where backups go and the recipe's write scope (before any change).
    fn header(&self, backups: &str, scope: Option<&[String]>) -> std::io::Result<()> {
        self.write_line(
            &Line::Header {
                backups: backups.to_string(),
                scope: scope.map(<[String]>::to_vec),
            },
            true,
        )
    }

    /// Append an undo record durably; returns its sequence number.
    fn append(
        &self,
        step: u64,
        op: &str,
        undo: &Undo,
        become_: bool,
        dirs: &[String],
    ) -> std::io::Result<u64> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.write_line(
            &Line::Record {
                seq,
                step,
                op: op.to_string(),
                undo: undo.clone(),
                become_,
                dirs: dirs.to_vec(),
            },
            true,
        )?;
        Ok(seq)
    }

    /// What record `seq`'s change left. Not fsync'ed by itself: the next record's
    /// fsync carries it, and losing it at a crash only makes rollback more careful.
    fn record_left(&self, seq: u64, state: Option<&Fingerprint>) -> std::io::Result<()> {
        self.write_line(
            &Line::Left {
                left: seq,
                state: state.cloned(),
            },
            false,
        )
    }

    /// The last appended change completed. Not fsync'ed: losing it only makes a
    /// later rollback more careful, never wrong.
    fn mark_done(&self) -> std::io::Result<()> {
        let seq = self.seq.load(Ordering::SeqCst);
        if seq == 0 {
            return Ok(());
        }
        self.write_line(&Line::Done { done: seq }, false)
    }

    fn mark_undone(&self, seq: u64) -> std::io::Result<()> {
        self.write_line(&Line::Undone { undone: seq }, true)
    }
}

fn parse(text: &[u8]) -> Contents {
    let mut out = Contents::default();
    let torn_tail = text.last().is_some_and(|b| *b != b'\n');
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    // `split` yields an empty piece after a final newline.
    let count = lines.len() - usize::from(!torn_tail);
    for (i, raw) in lines.iter().take(count).enumerate() {
        let number = i + 1;
        let parsed = std::str::from_utf8(raw)
            .map_err(|e| e.to_string())
            .and_then(|l| serde_json::from_str::<Line>(l).map_err(|e| e.to_string()));
        let line = match parsed {
            Ok(l) => l,
            Err(_) if torn_tail && number == count => continue, // died mid-write
            Err(e) => {
                out.damaged.push(format!("line {number}: {e}"));
                continue;
            }
        };
        let entries = &mut out.entries;
        match line {
            Line::Record {
                seq,
                step,
                op,
                undo,
                become_,
                dirs,
            } => entries.push(Entry {
                seq,
                step,
                op,
                undo,
                become_,
                dirs,
                left: None,
                done: false,
                undone: false,
            }),
            Line::Header { backups, scope } => {
                out.backups = Some(backups);
                out.scope = scope;
            }
            Line::Left { left, state } => {
                if let Some(e) = entries.iter_mut().find(|e| e.seq == left) {
                    e.left = Some(state);
                }
            }
            Line::Done { done } => {
                // `done` marks every record up to it: a step may append several.
                for e in entries.iter_mut().filter(|e| e.seq <= done) {
                    e.done = true;
                }
            }
            Line::Undone { undone } => {
                if let Some(e) = entries.iter_mut().find(|e| e.seq == undone) {
                    e.undone = true;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remove(p: &str) -> Undo {
        Undo::Remove { path: p.into() }
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path).unwrap();
        j.append(1, "fs::file", &remove("/x"), false, &["/".into()])
            .unwrap();
        j.record_left(1, None).unwrap();
        j.mark_done().unwrap();
        j.append(2, "sh", &Undo::Barrier { what: "sh".into() }, true, &[])
            .unwrap();
        j.mark_undone(2).unwrap();
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq\":3,\"st")
            .unwrap();
        let read = Journal::read(&path).unwrap();
        assert!(read.damaged.is_empty(), "{:?}", read.damaged);
        let entries = read.entries;
        assert_eq!(entries.len(), 2);
        assert!(entries[0].done && !entries[0].undone);
        assert_eq!(entries[0].left, Some(None));
        assert_eq!(entries[0].dirs, vec!["/".to_string()]);
        assert!(!entries[1].done && entries[1].undone);
        assert!(!entries[0].become_ && entries[1].become_);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.append(3, "x", &remove("/y"), false, &[]).unwrap(), 3);
        drop(j);
        // The torn line was cut off, not left in the middle as damage.
        let read = Journal::read(&path).unwrap();
        assert!(read.damaged.is_empty(), "{:?}", read.damaged);
        assert_eq!(read.entries.len(), 3);
    }

    #[test]
    fn a_bad_line_in_the_middle_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path).unwrap();
        j.append(1, "fs::file", &remove("/x"), false, &[]).unwrap();
        j.append(2, "fs::file", &remove("/y"), false, &[]).unwrap();
        drop(j);
        let text = std::fs::read_to_string(&path).unwrap();
        let broken = text.replacen(
            "\"undo\":{\"undo\":\"remove\"",
            "\"undo\":{\"undo\":\"rem",
            1,
        );
        std::fs::write(&path, broken).unwrap();
        let read = Journal::read(&path).unwrap();
        assert_eq!(read.entries.len(), 1);
        assert_eq!(read.damaged.len(), 1);
        assert!(read.damaged[0].starts_with("line 1:"), "{:?}", read.damaged);
    }
}
