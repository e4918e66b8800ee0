//! Delta snapshots: what `diff --out` writes, and [`apply_delta`], which lays one over its base.
//!
//! A delta is an ordinary snapshot (same layout, tables and manifest; `Snapshot::open` accepts
//! it) whose manifest names its base (`base.snapshot_id`). Its `objects` table holds every
//! object created or changed since the base, with all its rows in the per-object tables and the
//! blob files those rows name; `users`, `groups` and `settings` are carried whole (they are
//! small); objects that vanished are listed in an extra table, `tables/tombstones.parquet`.
//! "Changed" is exact here: an object whose rows differ only in values the rules ignore is in
//! the delta too, so base + delta reproduces the newer snapshot's tables row for row.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::snapshot::Snapshot;
use crate::snapshot::blobs;
use crate::snapshot::layout;
use crate::snapshot::manifest::{BaseInfo, BlobTotals, FileEntry, Manifest};
use crate::snapshot::table::{
    BLOBS, Cell, GROUPS, Kind, OBJECTS, SETTINGS, TableDef, TableReader, TableWriter, USERS,
};
use crate::snapshot::writer::{SnapshotParts, SnapshotWriter};

use super::scan::{OldObject, SIDE_TABLES};

/// The extra table of a delta snapshot: objects of the base that the delta deletes.
pub const TOMBSTONES: TableDef = TableDef {
    name: "tombstones",
    doc: "delta snapshots only: one row per object of the base that no longer exists, sorted by uid",
    columns: &[
        ("uid", Kind::Str, false, "UID of the deleted object"),
        (
            "portal_type",
            Kind::Str,
            false,
            "its portal_type in the base",
        ),
        ("path", Kind::Str, false, "its path in the base"),
        (
            "content_hash",
            Kind::Str,
            false,
            "its content_hash in the base: the version that was deleted",
        ),
        (
            "reason",
            Kind::Str,
            false,
            "vanished (deactivated objects are changes: their new state is in the delta)",
        ),
    ],
};

/// The extra table of a delta snapshot that says what each carried object is to its base:
/// `created` (the base did not have it) or `changed` (with its path and content hash in the
/// base). `load` uses it to tell a change to an object the destination lacks (its base was never
/// loaded there) from a creation.
pub const CHANGES: TableDef = TableDef {
    name: "changes",
    doc: "delta snapshots only: one row per carried object, in the order the delta writes them",
    columns: &[
        ("uid", Kind::Str, false, "UID of the carried object"),
        ("change", Kind::Str, false, "created or changed"),
        (
            "base_path",
            Kind::Str,
            true,
            "its path in the base (changed objects)",
        ),
        (
            "base_content_hash",
            Kind::Str,
            true,
            "its content_hash in the base (changed objects)",
        ),
    ],
};

/// Tables a delta copies whole from the newer snapshot.
const SITE_TABLES: [&TableDef; 3] = [&USERS, &GROUPS, &SETTINGS];

/// Writes a delta snapshot into a staging directory, renamed into place when complete.
pub(crate) struct DeltaWriter {
    target: PathBuf,
    staging: PathBuf,
    writer: SnapshotWriter,
    tombstones: TableWriter,
    changes: TableWriter,
    change_count: u64,
    blobs: BTreeSet<String>,
    counts: BTreeMap<String, u64>,
    tombstone_count: u64,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeltaInfo {
    /// The delta directory.
    pub dir: String,
    /// Its snapshot id.
    pub snapshot_id: String,
    /// The base's snapshot id.
    pub base: String,
    /// Objects carried (created and changed).
    pub objects: u64,
    /// Tombstones (vanished objects).
    pub tombstones: u64,
    /// Blob files carried.
    pub blobs: u64,
}

impl DeltaWriter {
    /// Starts a delta for `target`; refuses an existing target unless `force`.
    ///
    /// # Errors
    /// When the target exists (without `force`) or the staging directory cannot be created.
    pub fn create(target: &Path, force: bool) -> Result<DeltaWriter> {
        if target.exists() && !force {
            return Err(Error::snapshot(
                target,
                "already exists; choose another --out or add --force to replace it",
            ));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "delta".into());
        let staging = target.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| Error::write(&staging, e))?;
        }
        let writer = SnapshotWriter::create(&staging)?;
        let tombstones = TableWriter::create(&staging, &TOMBSTONES)?;
        let changes = TableWriter::create(&staging, &CHANGES)?;
        Ok(DeltaWriter {
            target: target.to_path_buf(),
            staging,
            writer,
            tombstones,
            changes,
            change_count: 0,
            blobs: BTreeSet::new(),
            counts: BTreeMap::new(),
            tombstone_count: 0,
        })
    }

    /// Adds an object's `objects` row and its rows of the per-object tables; `base` is its
    /// (path, content_hash) in the base, `None` for a created object.
    ///
    /// # Errors
    /// When writing fails.
    pub fn push_object(
        &mut self,
        object: Vec<Cell>,
        sides: Vec<Vec<Vec<Cell>>>,
        base: Option<(String, String)>,
    ) -> Result<()> {
        let uid = object
            .first()
            .and_then(Cell::as_str)
            .unwrap_or_default()
            .to_string();
        let (change, base_path, base_hash) = match base {
            Some((p, h)) => ("changed", Some(p), Some(h)),
            None => ("created", None, None),
        };
        self.changes.push(vec![
            Cell::s(uid),
            Cell::s(change),
            Cell::Str(base_path),
            Cell::Str(base_hash),
        ])?;
        self.change_count += 1;
        let pt = object
            .get(1)
            .and_then(Cell::as_str)
            .unwrap_or_default()
            .to_string();
        *self.counts.entry(pt).or_default() += 1;
        self.writer.table(&OBJECTS)?.push(object)?;
        let sha_col = BLOBS.col("sha256").unwrap_or(5);
        for (def, rows) in SIDE_TABLES.iter().zip(sides) {
            for row in rows {
                if def.name == BLOBS.name
                    && let Some(sha) = row.get(sha_col).and_then(Cell::as_str)
                {
                    self.blobs.insert(sha.to_string());
                }
                self.writer.table(def)?.push(row)?;
            }
        }
        Ok(())
    }

    /// Adds a tombstone for a vanished object.
    ///
    /// # Errors
    /// When writing fails.
    pub fn tombstone(&mut self, uid: &str, old: &OldObject) -> Result<()> {
        self.tombstone_count += 1;
        self.tombstones.push(vec![
            Cell::s(uid),
            Cell::s(&old.portal_type),
            Cell::s(&old.path),
            Cell::s(&old.content_hash),
            Cell::s("vanished"),
        ])
    }

    /// Copies the site tables and blob files from `new`, writes the manifest naming `base`, and
    /// moves the delta into place.
    ///
    /// # Errors
    /// When copying, hashing or renaming fails.
    pub fn finish(mut self, base: &Snapshot, new: &Snapshot) -> Result<DeltaInfo> {
        for def in SITE_TABLES {
            let w = self.writer.table(def)?;
            for row in TableReader::open(&new.dir, def)? {
                w.push(row?)?;
            }
        }
        let totals = copy_blobs(&new.dir, &[], &self.staging, &self.blobs)?;
        self.tombstones.finish()?;
        self.changes.finish()?;
        let m = &new.manifest;
        let parts = SnapshotParts {
            source: m.source.clone(),
            request: m.request.clone(),
            started_at: m.started_at.clone(),
            counts: self.counts,
            blobs: totals,
            notes: m.notes.clone(),
        };
        let mut manifest = self.writer.finish(parts)?;
        add_table_file(
            &mut manifest,
            &self.staging,
            &TOMBSTONES,
            self.tombstone_count,
        )?;
        add_table_file(&mut manifest, &self.staging, &CHANGES, self.change_count)?;
        manifest.base = Some(BaseInfo {
            snapshot_id: base.manifest.snapshot_id.clone(),
            finished_at: base.manifest.finished_at.clone(),
            site_url: base.manifest.source.site_url.clone(),
        });
        manifest.write(&self.staging)?;
        if self.target.exists() {
            std::fs::remove_dir_all(&self.target).map_err(|e| Error::write(&self.target, e))?;
        }
        std::fs::rename(&self.staging, &self.target).map_err(|e| Error::write(&self.target, e))?;
        Ok(DeltaInfo {
            dir: self.target.display().to_string(),
            snapshot_id: manifest.snapshot_id,
            base: base.manifest.snapshot_id.clone(),
            objects: manifest.counts.values().sum(),
            tombstones: self.tombstone_count,
            blobs: manifest.blobs.count,
        })
    }

    /// Removes the staging directory (after an error elsewhere).
    pub fn abandon(self) {
        let staging = self.staging.clone();
        drop(self);
        // Best effort: a leftover staging directory is removed by the next run anyway.
        let _ignored = std::fs::remove_dir_all(staging);
    }
}

/// Lists an extra table file in a manifest and recomputes the snapshot id.
fn add_table_file(m: &mut Manifest, dir: &Path, def: &TableDef, rows: u64) -> Result<()> {
    let rel = layout::table_rel(def.name);
    let (sha256, bytes) = blobs::hash_file(&dir.join(&rel))?;
    m.files.retain(|f| f.path != rel);
    m.files.push(FileEntry {
        path: rel,
        kind: "table".into(),
        rows,
        bytes,
        sha256,
    });
    m.files.sort_by(|a, b| a.path.cmp(&b.path));
    m.snapshot_id = Manifest::compute_id(&m.files);
    Ok(())
}

/// Links (or copies) blob files into `to`, taking each from the first of `from` and `more`
/// that holds it; returns the totals.
fn copy_blobs(
    from: &Path,
    more: &[&Path],
    to: &Path,
    shas: &BTreeSet<String>,
) -> Result<BlobTotals> {
    let mut totals = BlobTotals::default();
    for sha in shas {
        let dst = blobs::blob_path(to, sha);
        let src = std::iter::once(from)
            .chain(more.iter().copied())
            .map(|d| blobs::blob_path(d, sha))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::snapshot(
                    blobs::blob_path(from, sha),
                    "blob file named by a row is missing",
                )
            })?;
        totals.count += 1;
        totals.bytes += blobs::link_blob(&src, &dst)?;
    }
    Ok(totals)
}

/// Reads the uid column (the first) of a table.
fn uids(snap: &Path, def: &'static TableDef) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for row in TableReader::open(snap, def)? {
        if let Some(u) = row?.first().and_then(Cell::as_str) {
            out.insert(u.to_string());
        }
    }
    Ok(out)
}

/// Lays the delta snapshot `delta` over its base `base` and writes the result to `out`: the
/// newer snapshot the delta was taken against, table for table (its raw streams excepted: a
/// delta does not carry them). Everything streams in uid order; memory holds the delta's uids.
///
/// # Errors
/// When either snapshot is corrupt, `delta` is not a delta of `base`, or writing fails.
pub fn apply_delta(base: &Path, delta: &Path, out: &Path) -> Result<Snapshot> {
    let base_snap = Snapshot::open(base)?;
    let delta_snap = Snapshot::open(delta)?;
    let Some(b) = &delta_snap.manifest.base else {
        return Err(Error::snapshot(
            delta,
            "not a delta snapshot (its manifest has no base)",
        ));
    };
    if b.snapshot_id != base_snap.manifest.snapshot_id {
        return Err(Error::snapshot(
            delta,
            format!(
                "is a delta of snapshot {}, not of {} ({})",
                b.snapshot_id,
                base_snap.manifest.snapshot_id,
                base.display()
            ),
        ));
    }
    let mut replaced = uids(delta, &OBJECTS)?;
    replaced.extend(uids(delta, &TOMBSTONES)?);
    let mut writer = SnapshotWriter::create(out)?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut shas = BTreeSet::new();
    let sha_col = BLOBS.col("sha256").unwrap_or(5);
    for def in std::iter::once(&OBJECTS).chain(SIDE_TABLES) {
        let w = writer.table(def)?;
        let mut from_base = TableReader::open(base, def)?.peekable();
        let mut from_delta = TableReader::open(delta, def)?.peekable();
        loop {
            skip_replaced(&mut from_base, &replaced)?;
            let first = |it: &mut std::iter::Peekable<TableReader>| -> Option<String> {
                match it.peek() {
                    Some(Ok(row)) => row.first().and_then(Cell::as_str).map(str::to_string),
                    _ => None,
                }
            };
            let take_base = match (first(&mut from_base), first(&mut from_delta)) {
                (None, None) => {
                    // Surface a read error, if that is what ended either stream.
                    if let Some(Err(e)) = from_base.next() {
                        return Err(e);
                    }
                    if let Some(Err(e)) = from_delta.next() {
                        return Err(e);
                    }
                    break;
                }
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(a), Some(b)) => a < b,
            };
            let source = if take_base {
                &mut from_base
            } else {
                &mut from_delta
            };
            let Some(row) = source.next() else { break };
            let row = row?;
            if def.name == OBJECTS.name {
                let pt = row.get(1).and_then(Cell::as_str).unwrap_or_default();
                *counts.entry(pt.to_string()).or_default() += 1;
            }
            if def.name == BLOBS.name
                && let Some(sha) = row.get(sha_col).and_then(Cell::as_str)
            {
                shas.insert(sha.to_string());
            }
            w.push(row)?;
        }
    }
    for def in SITE_TABLES {
        let w = writer.table(def)?;
        for row in TableReader::open(delta, def)? {
            w.push(row?)?;
        }
    }
    let blobs = copy_blobs(delta, &[base], out, &shas)?;
    let m = &delta_snap.manifest;
    writer.finish(SnapshotParts {
        source: m.source.clone(),
        request: m.request.clone(),
        started_at: m.started_at.clone(),
        counts,
        blobs,
        notes: m.notes.clone(),
    })?;
    Snapshot::open(out)
}

fn skip_replaced(
    it: &mut std::iter::Peekable<TableReader>,
    replaced: &BTreeSet<String>,
) -> Result<()> {
    while let Some(Ok(row)) = it.peek() {
        let hit = row
            .first()
            .and_then(Cell::as_str)
            .is_some_and(|u| replaced.contains(u));
        if !hit {
            break;
        }
        it.next();
    }
    Ok(())
}
