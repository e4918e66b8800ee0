//! The load ledger: an append-only JSON-lines file in the state directory with one entry per
//! record outcome (status, the `load_hash` sent, the destination's path and modification date,
//! and every error), flushed and synced after each batch. The latest entry of a uid wins. A run
//! killed at any point (kill -9 included) leaves at most a torn last line, which is dropped on the
//! next open; anything the destination committed but the ledger missed is sent again and answered
//! `unchanged` (the receiver is keyed by UID), so nothing is duplicated or lost. `state.json`
//! binds the directory to one destination.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::load::receiver::ApplyItem;

/// The ledger file name inside the state directory.
pub const LEDGER_FILE: &str = "ledger.jsonl";
/// The binding file name inside the state directory.
pub const STATE_FILE: &str = "state.json";

/// One record outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// UID.
    pub uid: String,
    /// Portal type (for reports).
    #[serde(default)]
    pub portal_type: String,
    /// The receiver's status (`created`, `updated`, `unchanged`, `deferred`, `partial`, `failed`).
    pub status: String,
    /// The load hash that was sent.
    pub load_hash: String,
    /// Pass (1, or 2 for deferred references).
    #[serde(default)]
    pub pass: u8,
    /// The destination's answer.
    pub result: ApplyItem,
    /// When (RFC 3339).
    pub at: String,
}

impl Entry {
    /// Whether the record is in the destination as sent.
    pub fn is_done(&self) -> bool {
        matches!(self.status.as_str(), "created" | "updated" | "unchanged")
    }

    /// Whether the destination rejected (part of) the record.
    pub fn is_failure(&self) -> bool {
        matches!(self.status.as_str(), "failed" | "partial")
    }
}

/// What a state directory is bound to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Binding {
    /// The destination site URL (no credentials).
    pub destination: String,
    /// The snapshot id last loaded.
    pub snapshot_id: String,
    /// The snapshot directory last loaded.
    pub snapshot_dir: String,
}

/// An open ledger.
pub struct Ledger {
    path: PathBuf,
    file: File,
    latest: HashMap<String, Entry>,
}

impl Ledger {
    /// Opens (or creates) the ledger of `state_dir`, checking that the directory belongs to
    /// `binding.destination`, and records the binding.
    ///
    /// # Errors
    /// When the directory belongs to another destination or cannot be read/written.
    pub fn open(state_dir: &Path, binding: &Binding) -> Result<Ledger> {
        std::fs::create_dir_all(state_dir).map_err(|e| Error::write(state_dir, e))?;
        let state_path = state_dir.join(STATE_FILE);
        if state_path.exists() {
            let text = std::fs::read(&state_path).map_err(|e| Error::read(&state_path, e))?;
            let old: Binding = serde_json::from_slice(&text).map_err(|source| Error::JsonFile {
                path: state_path.clone(),
                source,
            })?;
            if old.destination != binding.destination {
                return Err(Error::Resume {
                    path: state_dir.to_path_buf(),
                    message: format!(
                        "this state directory records loads into {}, not {}; use another --state",
                        old.destination, binding.destination
                    ),
                });
            }
        }
        let text = serde_json::to_vec_pretty(binding).map_err(|source| Error::JsonFile {
            path: state_path.clone(),
            source,
        })?;
        crate::snapshot::writer::write_atomic(&state_path, &text)?;

        let path = state_dir.join(LEDGER_FILE);
        let mut latest = HashMap::new();
        let mut good_len = 0u64;
        if path.exists() {
            let text = std::fs::read(&path).map_err(|e| Error::read(&path, e))?;
            let mut lines = text.split_inclusive(|&b| b == b'\n').enumerate().peekable();
            while let Some((no, line)) = lines.next() {
                let last = lines.peek().is_none();
                let complete = line.ends_with(b"\n");
                match serde_json::from_slice::<Entry>(line) {
                    Ok(e) if complete => {
                        latest.insert(e.uid.clone(), e);
                        good_len += line.len() as u64;
                    }
                    // A torn last line (killed while writing): dropped, its batch is resent.
                    _ if last => break,
                    Ok(_) | Err(_) => {
                        return Err(Error::Resume {
                            path: path.clone(),
                            message: format!(
                                "line {} of the ledger is damaged; restore the file or use a new --state",
                                no + 1
                            ),
                        });
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::write(&path, e))?;
        // Drop a torn tail (a line cut by a kill): everything after the last complete entry.
        file.set_len(good_len).map_err(|e| Error::write(&path, e))?;
        Ok(Ledger { path, file, latest })
    }

    /// The latest entry of a uid.
    pub fn get(&self, uid: &str) -> Option<&Entry> {
        self.latest.get(uid)
    }

    /// Every latest entry.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.latest.values()
    }

    /// Appends entries and syncs them to disk.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn append(&mut self, entries: Vec<Entry>) -> Result<()> {
        let mut buf = Vec::new();
        for e in &entries {
            serde_json::to_writer(&mut buf, e).map_err(|source| Error::JsonFile {
                path: self.path.clone(),
                source,
            })?;
            buf.push(b'\n');
        }
        self.file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::write(&self.path, e))?;
        for e in entries {
            self.latest.insert(e.uid.clone(), e);
        }
        Ok(())
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: &str, status: &str) -> Entry {
        Entry {
            uid: uid.into(),
            portal_type: "Client".into(),
            status: status.into(),
            load_hash: "h".into(),
            pass: 1,
            result: ApplyItem {
                uid: uid.into(),
                status: status.into(),
                ..ApplyItem::default()
            },
            at: "2026-11-26T00:00:00Z".into(),
        }
    }

    fn binding(dest: &str) -> Binding {
        Binding {
            destination: dest.into(),
            snapshot_id: "s".into(),
            snapshot_dir: "d".into(),
        }
    }

    #[test]
    fn latest_entry_wins_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut l = Ledger::open(dir.path(), &binding("http://a")).unwrap();
            l.append(vec![entry("u1", "failed"), entry("u2", "created")])
                .unwrap();
            l.append(vec![entry("u1", "updated")]).unwrap();
        }
        // A kill in the middle of a write.
        let path = dir.path().join(LEDGER_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"uid":"u3","sta"#).unwrap();
        drop(f);
        let mut l = Ledger::open(dir.path(), &binding("http://a")).unwrap();
        assert_eq!(l.get("u1").unwrap().status, "updated");
        assert!(l.get("u3").is_none());
        l.append(vec![entry("u3", "created")]).unwrap();
        let l = Ledger::open(dir.path(), &binding("http://a")).unwrap();
        assert_eq!(l.get("u3").unwrap().status, "created");
        assert_eq!(l.entries().count(), 3);
    }

    #[test]
    fn a_state_directory_belongs_to_one_destination() {
        let dir = tempfile::tempdir().unwrap();
        Ledger::open(dir.path(), &binding("http://a")).unwrap();
        let err = Ledger::open(dir.path(), &binding("http://b"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("http://a"), "{err}");
    }
}
