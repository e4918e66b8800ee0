//! Writing a snapshot: one [`TableWriter`] per table and a [`JsonlWriter`] per raw stream, all
//! under temp names; [`SnapshotWriter::finish`] closes them, hashes every file and writes the
//! manifest last. Every table exists in every snapshot (empty tables included), so readers never
//! guess.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::snapshot::blobs;
use crate::snapshot::digest;
use crate::snapshot::jsonl::JsonlWriter;
use crate::snapshot::layout;
use crate::snapshot::manifest::{
    BlobTotals, FORMAT_NAME, FORMAT_VERSION, FileEntry, Manifest, Note, RequestInfo, SourceInfo,
    ToolInfo,
};
use crate::snapshot::table::{ALL_TABLES, TableDef, TableWriter};

/// Everything the manifest needs besides the file list.
#[derive(Debug, Clone, Default)]
pub struct SnapshotParts {
    /// Source description.
    pub source: SourceInfo,
    /// The request.
    pub request: RequestInfo,
    /// Start time (RFC 3339).
    pub started_at: String,
    /// Objects per portal_type.
    pub counts: BTreeMap<String, u64>,
    /// Blob totals.
    pub blobs: BlobTotals,
    /// Notes.
    pub notes: Vec<Note>,
}

/// Writes the files of one snapshot.
pub struct SnapshotWriter {
    dir: PathBuf,
    tables: BTreeMap<&'static str, TableWriter>,
    raws: BTreeMap<String, JsonlWriter>,
}

impl SnapshotWriter {
    /// Starts writing into `dir` (created if needed). An existing manifest is removed first, so
    /// a half-rewritten directory is never mistaken for a complete snapshot.
    ///
    /// # Errors
    /// When the directory or a table file cannot be created.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::write(dir, e))?;
        let manifest = layout::manifest_path(dir);
        if manifest.exists() {
            std::fs::remove_file(&manifest).map_err(|e| Error::write(&manifest, e))?;
        }
        remove_temp_files(dir)?;
        let mut tables = BTreeMap::new();
        for def in ALL_TABLES {
            tables.insert(def.name, TableWriter::create(dir, def)?);
        }
        Ok(SnapshotWriter {
            dir: dir.to_path_buf(),
            tables,
            raws: BTreeMap::new(),
        })
    }

    /// The writer of a table.
    ///
    /// # Errors
    /// Never for the tables in `ALL_TABLES`.
    pub fn table(&mut self, def: &'static TableDef) -> Result<&mut TableWriter> {
        self.tables
            .get_mut(def.name)
            .ok_or_else(|| Error::snapshot(&self.dir, format!("unknown table {}", def.name)))
    }

    /// The writer of a raw stream (created on first use).
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn raw(&mut self, stream: &str) -> Result<&mut JsonlWriter> {
        if !self.raws.contains_key(stream) {
            let path = self.dir.join(layout::raw_rel(stream));
            self.raws
                .insert(stream.to_string(), JsonlWriter::create(&path)?);
        }
        self.raws
            .get_mut(stream)
            .ok_or_else(|| Error::snapshot(&self.dir, format!("raw stream {stream}")))
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Closes every file, then writes the manifest; returns it.
    ///
    /// # Errors
    /// When closing, hashing or writing fails.
    pub fn finish(self, parts: SnapshotParts) -> Result<Manifest> {
        let started = std::time::Instant::now();
        let mut files = Vec::new();
        for (name, w) in self.tables {
            let rows = w.finish()?;
            files.push(file_entry(
                &self.dir,
                layout::table_rel(name),
                "table",
                rows,
            )?);
        }
        files.extend(digest::write(&self.dir)?);
        tracing::debug!(
            elapsed_s = started.elapsed().as_secs_f64(),
            "Tables closed, digest index written."
        );
        for (name, w) in self.raws {
            let rows = w.finish()?;
            files.push(file_entry(&self.dir, layout::raw_rel(&name), "raw", rows)?);
        }
        tracing::debug!(
            elapsed_s = started.elapsed().as_secs_f64(),
            "Raw streams closed."
        );
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut notes = parts.notes;
        notes.sort();
        notes.dedup();
        let manifest = Manifest {
            format: FORMAT_NAME.to_string(),
            format_version: FORMAT_VERSION,
            snapshot_id: Manifest::compute_id(&files),
            tool: ToolInfo::current(),
            source: parts.source,
            started_at: parts.started_at,
            finished_at: now_rfc3339(),
            request: parts.request,
            files,
            counts: parts.counts,
            blobs: parts.blobs,
            notes,
            base: None,
        };
        manifest.write(&self.dir)?;
        Ok(manifest)
    }
}

/// Removes temp files a killed writer left behind (`*.tmp` under the snapshot's own
/// directories; the staging area is left alone).
pub fn remove_temp_files(dir: &Path) -> Result<()> {
    for sub in [layout::TABLES_DIR, layout::RAW_DIR, layout::BLOBS_DIR, "."] {
        let d = dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_file() && p.to_string_lossy().ends_with(".tmp") {
                std::fs::remove_file(&p).map_err(|e| Error::write(&p, e))?;
            }
        }
    }
    Ok(())
}

fn file_entry(dir: &Path, rel: String, kind: &str, rows: u64) -> Result<FileEntry> {
    let (sha256, bytes) = blobs::hash_file(&dir.join(&rel))?;
    Ok(FileEntry {
        path: rel,
        kind: kind.to_string(),
        rows,
        bytes,
        sha256,
    })
}

/// The current UTC time as RFC 3339 with second precision (manifest only; never in rows).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339_from_unix(secs)
}

/// Formats seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes a small file atomically: a temp name beside it, fsync, rename.
///
/// # Errors
/// When writing or renaming fails (naming the file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let tmp = crate::snapshot::layout::tmp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::write(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::write(&tmp, e))?;
    f.sync_all().map_err(|e| Error::write(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::write(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339_from_unix(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn leftovers_of_a_killed_writer_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tables")).unwrap();
        std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
        std::fs::write(dir.path().join("tables/objects.parquet.999.tmp"), b"x").unwrap();
        std::fs::write(dir.path().join("blobs/.incoming-1-2.tmp"), b"x").unwrap();
        SnapshotWriter::create(dir.path())
            .unwrap()
            .finish(SnapshotParts::default())
            .unwrap();
        assert!(!dir.path().join("tables/objects.parquet.999.tmp").exists());
        assert!(!dir.path().join("blobs/.incoming-1-2.tmp").exists());
    }

    #[test]
    fn every_table_exists_even_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let w = SnapshotWriter::create(dir.path()).unwrap();
        let m = w.finish(SnapshotParts::default()).unwrap();
        for def in ALL_TABLES {
            let e = m.file(&layout::table_rel(def.name)).unwrap();
            assert_eq!(e.rows, 0);
        }
        assert!(dir.path().join("manifest.json").is_file());
    }
}
