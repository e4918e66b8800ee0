//! The snapshot format (v1): a directory of Parquet tables, verbatim JSONL streams and
//! content-addressed blobs, completed by a manifest written last. This module knows nothing about
//! HTTP; it opens, verifies and writes snapshots. See `layout` for the directory shape and the
//! README's "Snapshot format" section for the meaning of every table.

pub mod blobs;
pub mod digest;
pub mod jsonl;
pub mod layout;
pub mod manifest;
pub mod record;
pub(crate) mod stream;
pub mod table;
pub mod writer;

use std::path::{Path, PathBuf};

pub use manifest::Manifest;

use crate::error::{Error, Result};

/// An opened, complete snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The snapshot directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

/// One integrity problem found by [`Snapshot::verify_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// Path relative to the snapshot.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Snapshot {
    /// Opens a snapshot and verifies the size and sha256 of every file the manifest lists.
    ///
    /// # Errors
    /// When the manifest is missing or invalid, or any file is missing or differs (the error
    /// names the file).
    pub fn open(dir: &Path) -> Result<Snapshot> {
        let snap = Snapshot::open_unverified(dir)?;
        if let Some(p) = snap.verify_files()?.into_iter().next() {
            return Err(Error::snapshot(dir.join(&p.path), p.message));
        }
        Ok(snap)
    }

    /// Opens a snapshot reading only its manifest (callers that verify separately).
    ///
    /// # Errors
    /// When the manifest is missing or invalid.
    pub fn open_unverified(dir: &Path) -> Result<Snapshot> {
        let manifest = Manifest::read(dir)?;
        Ok(Snapshot {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// Re-hashes every listed file; returns every problem found (empty when intact).
    ///
    /// # Errors
    /// Only for unexpected I/O failures other than a missing file.
    pub fn verify_files(&self) -> Result<Vec<FileProblem>> {
        use rayon::prelude::*;
        let problems: Vec<Option<FileProblem>> = self
            .manifest
            .files
            .par_iter()
            .map(|f| {
                let path = self.dir.join(&f.path);
                if !path.is_file() {
                    return Some(FileProblem {
                        path: f.path.clone(),
                        message: "listed in the manifest but missing".into(),
                    });
                }
                match blobs::hash_file(&path) {
                    Ok((sha, size)) if sha == f.sha256 && size == f.bytes => None,
                    Ok((sha, size)) => Some(FileProblem {
                        path: f.path.clone(),
                        message: format!(
                            "checksum mismatch: manifest says sha256 {} ({} bytes), file has {} ({} bytes)",
                            f.sha256, f.bytes, sha, size
                        ),
                    }),
                    Err(e) => Some(FileProblem {
                        path: f.path.clone(),
                        message: format!("cannot be read: {e}"),
                    }),
                }
            })
            .collect();
        Ok(problems.into_iter().flatten().collect())
    }

    /// Path of a table file.
    pub fn table_path(&self, table: &str) -> PathBuf {
        self.dir.join(layout::table_rel(table))
    }

    /// Path of a raw stream.
    pub fn raw_path(&self, stream: &str) -> PathBuf {
        self.dir.join(layout::raw_rel(stream))
    }

    /// Total object count.
    pub fn object_count(&self) -> u64 {
        self.manifest.counts.values().sum()
    }
}

/// The site root's physical path (`/senaite`) of the snapshot's source.
pub fn manifest_site_path(m: &Manifest) -> String {
    site_path(&m.source.site_url)
}

/// The physical path of a site root from its URL (`http://h/senaite` -> `/senaite`).
pub fn site_path(site_url: &str) -> String {
    let after = site_url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(site_url);
    match after.split_once('/') {
        Some((_, p)) => format!("/{}", p.trim_end_matches('/')),
        None => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::table::{Cell, OBJECTS};
    use crate::snapshot::writer::{SnapshotParts, SnapshotWriter};

    fn tiny(dir: &Path) {
        let mut w = SnapshotWriter::create(dir).unwrap();
        let row = vec![
            Cell::s("a".repeat(32)),
            Cell::s("Client"),
            Cell::s("/senaite/clients/client-1"),
            Cell::opt(None::<String>),
            Cell::s("/senaite/clients"),
            Cell::s("client-1"),
            Cell::s("Happy Hills"),
            Cell::opt(None::<String>),
            Cell::opt(None::<String>),
            Cell::s("active"),
            Cell::s("h"),
            Cell::s("{}"),
            Cell::s("{}"),
        ];
        w.table(&OBJECTS).unwrap().push(row).unwrap();
        w.finish(SnapshotParts::default()).unwrap();
    }

    #[test]
    fn open_detects_tampering_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        tiny(dir.path());
        Snapshot::open(dir.path()).unwrap();
        let table = dir.path().join("tables/objects.parquet");
        let mut bytes = std::fs::read(&table).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&table, bytes).unwrap();
        let err = Snapshot::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("objects.parquet") && err.contains("checksum"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        tiny(dir.path());
        std::fs::remove_file(dir.path().join("tables/users.parquet")).unwrap();
        let err = Snapshot::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("users.parquet") && err.contains("missing"),
            "{err}"
        );
    }
}
