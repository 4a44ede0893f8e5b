//! The write-ahead journal of one host in one run: the undo records of its changes,
//! appended and fsync'ed before each change is made, so that a run killed at any
//! point can still be rolled back, by itself or later by `tend rollback`.
//!
//! Format: JSON Lines. `{"seq":1,"step":3,"op":"fs::file","undo":{…}}` before a change,
//! `{"done":1}` after it, `{"undone":1}` once rollback reverted it. A torn last line
//! (the process died mid-write) is ignored: its change had not started.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::ops::undo::Undo;

pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
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
    /// The change finished. False for the step that was running when the run died.
    pub done: bool,
    /// Already reverted by an earlier rollback.
    pub undone: bool,
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
        let existing = if path.exists() {
            Self::read(path)?
        } else {
            Vec::new()
        };
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        let text_end = std::fs::read(path)?.last().copied();
        if text_end.is_some_and(|b| b != b'\n') {
            // Close a torn line so the next record starts on its own.
            file.write_all(b"\n")?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            seq: AtomicU64::new(existing.iter().map(|e| e.seq).max().unwrap_or(0)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_line(&self, line: &Line, durable: bool) -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        text.push('\n');
        let mut f = self.file.lock().expect("journal lock");
        f.write_all(text.as_bytes())?;
        if durable {
            f.sync_data()?;
        }
        Ok(())
    }

    /// Append an undo record durably; returns its sequence number.
    pub fn append(&self, step: u64, op: &str, undo: &Undo, become_: bool) -> std::io::Result<u64> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.write_line(
            &Line::Record {
                seq,
                step,
                op: op.to_string(),
                undo: undo.clone(),
                become_,
            },
            true,
        )?;
        Ok(seq)
    }

    /// The last appended change completed. Not fsync'ed: losing it only makes a
    /// later rollback more careful, never wrong.
    pub fn mark_done(&self) -> std::io::Result<()> {
        let seq = self.seq.load(Ordering::SeqCst);
        if seq == 0 {
            return Ok(());
        }
        self.write_line(&Line::Done { done: seq }, false)
    }

    pub fn mark_undone(&self, seq: u64) -> std::io::Result<()> {
        self.write_line(&Line::Undone { undone: seq }, true)
    }

    pub fn read(path: &Path) -> std::io::Result<Vec<Entry>> {
        let mut entries: Vec<Entry> = Vec::new();
        let reader = BufReader::new(File::open(path)?);
        for line in reader.lines() {
            let line = line?;
            let Ok(parsed) = serde_json::from_str::<Line>(&line) else {
                continue; // torn write at a crash
            };
            match parsed {
                Line::Record {
                    seq,
                    step,
                    op,
                    undo,
                    become_,
                } => entries.push(Entry {
                    seq,
                    step,
                    op,
                    undo,
                    become_,
                    done: false,
                    undone: false,
                }),
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
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path).unwrap();
        j.append(1, "fs::file", &Undo::Remove { path: "/x".into() }, false)
            .unwrap();
        j.mark_done().unwrap();
        j.append(2, "sh", &Undo::Barrier { what: "sh".into() }, true)
            .unwrap();
        j.mark_undone(2).unwrap();
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq\":3,\"st")
            .unwrap();
        let entries = Journal::read(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0].done && !entries[0].undone);
        assert!(!entries[1].done && entries[1].undone);
        assert!(!entries[0].become_ && entries[1].become_);
        let j = Journal::open(&path).unwrap();
        assert_eq!(
            j.append(3, "x", &Undo::Remove { path: "/y".into() }, false)
                .unwrap(),
            3
        );
    }
}
