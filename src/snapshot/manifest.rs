//! The manifest: `manifest.json`, written last and atomically. Its presence marks a snapshot as
//! complete; it records where the data came from (never credentials), what was asked for, and the
//! row count, size and sha256 of every table and raw file, plus a snapshot id derived from content.
//! Its shape is described by `schemas/manifest.schema.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::jsonx;
use crate::snapshot::layout;

/// Identifies our format in `manifest.json`.
pub const FORMAT_NAME: &str = "senaite-sync-snapshot";
/// The snapshot format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The snapshot manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Format version, [`FORMAT_VERSION`].
    pub format_version: u32,
    /// sha256 over the sorted `(path, sha256)` of every file: equal content, equal id.
    pub snapshot_id: String,
    /// The tool that wrote the snapshot.
    pub tool: ToolInfo,
    /// Where the data came from.
    pub source: SourceInfo,
    /// RFC 3339 UTC time the extract started.
    pub started_at: String,
    /// RFC 3339 UTC time the snapshot was completed.
    pub finished_at: String,
    /// What was asked for.
    pub request: RequestInfo,
    /// Every table and raw file.
    pub files: Vec<FileEntry>,
    /// Object count per portal_type.
    pub counts: BTreeMap<String, u64>,
    /// Blob totals (blob files are verified against their own content hash).
    pub blobs: BlobTotals,
    /// Anything the source could not give, or that did not add up, stated instead of dropped.
    pub notes: Vec<Note>,
    /// Set in a delta snapshot (`diff --out`): the snapshot it applies to. Absent in a full
    /// snapshot (and in manifests written before deltas existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseInfo>,
}

/// The base of a delta snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BaseInfo {
    /// The base snapshot's `snapshot_id`.
    pub snapshot_id: String,
    /// The base snapshot's `finished_at`.
    pub finished_at: String,
    /// The base snapshot's source site URL.
    pub site_url: String,
}

/// The writing tool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolInfo {
    /// `senaite-sync`.
    pub name: String,
    /// Crate version.
    pub version: String,
}

impl ToolInfo {
    /// This build.
    pub fn current() -> Self {
        ToolInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The source instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SourceInfo {
    /// `senaite` (v1 API) or another kind added later.
    pub kind: String,
    /// Site URL without credentials, e.g. `http://127.0.0.1:8081/senaite`.
    pub site_url: String,
    /// senaite.jsonapi version as `/version` reports it.
    pub jsonapi_version: Option<String>,
    /// Product versions the site reports (plone.restapi `@system`), e.g. `senaite.core`.
    pub versions: BTreeMap<String, String>,
}

/// The extract request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RequestInfo {
    /// `--include-type` values (empty: all).
    pub include_types: Vec<String>,
    /// `--exclude-type` values.
    pub exclude_types: Vec<String>,
    /// `--include-path` prefixes (empty: all).
    pub include_paths: Vec<String>,
    /// `--exclude-path` prefixes.
    pub exclude_paths: Vec<String>,
    /// Review-history precision asked for: `exact` or `v1`.
    pub history: String,
    /// Which objects' local roles were read: `containers`, `all` or `none`.
    pub local_roles: String,
    /// Whether users, groups, registry and settings were read.
    pub site_records: bool,
}

/// One file of the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the snapshot directory, `/`-separated.
    pub path: String,
    /// `table` or `raw`.
    pub kind: String,
    /// Rows (tables) or lines (raw).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
}

/// Blob totals.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct BlobTotals {
    /// Distinct blob files.
    pub count: u64,
    /// Their total size.
    pub bytes: u64,
}

/// A statement about the data: a loss, a fallback, a count that did not add up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// Machine-readable kind, e.g. `unreadable`, `count_mismatch`, `vanished`, `fallback`.
    pub kind: String,
    /// What it concerns: a portal_type, uid, path or record name.
    pub subject: String,
    /// Human text.
    pub message: String,
}

impl Manifest {
    /// Computes the content-derived snapshot id from the file list.
    pub fn compute_id(files: &[FileEntry]) -> String {
        let mut pairs: Vec<(&str, &str)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.sha256.as_str()))
            .collect();
        pairs.sort();
        let mut text = String::new();
        for (p, s) in pairs {
            text.push_str(p);
            text.push(' ');
            text.push_str(s);
            text.push('\n');
        }
        jsonx::sha256_hex(text.as_bytes())
    }

    /// Reads and parses `<snap>/manifest.json`.
    ///
    /// # Errors
    /// When it is missing (an incomplete snapshot), unreadable, or of another format.
    pub fn read(snap: &Path) -> Result<Manifest> {
        let path = layout::manifest_path(snap);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::snapshot(
                    snap,
                    "no manifest.json: not a snapshot, or an incomplete one (an extract that did \
                     not finish; re-run it to resume)",
                ));
            }
            Err(e) => return Err(Error::read(&path, e)),
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| Error::JsonFile {
                path: path.clone(),
                source,
            })?;
        if value.get("format").and_then(|v| v.as_str()) != Some(FORMAT_NAME) {
            return Err(Error::snapshot(
                &path,
                format!("not a {FORMAT_NAME} manifest"),
            ));
        }
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(Error::snapshot(
                &path,
                format!(
                    "format version {version:?} is not supported (this build reads {FORMAT_VERSION})"
                ),
            ));
        }
        serde_json::from_value(value).map_err(|source| Error::JsonFile { path, source })
    }

    /// Writes `<snap>/manifest.json` atomically (temp file, fsync, rename).
    ///
    /// # Errors
    /// When writing or renaming fails.
    pub fn write(&self, snap: &Path) -> Result<()> {
        let path = layout::manifest_path(snap);
        let mut text = serde_json::to_vec_pretty(self).map_err(|source| Error::JsonFile {
            path: path.clone(),
            source,
        })?;
        text.push(b'\n');
        crate::snapshot::writer::write_atomic(&path, &text)
    }

    /// The file entry for a relative path.
    pub fn file(&self, rel: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            snapshot_id: "x".into(),
            tool: ToolInfo::current(),
            source: SourceInfo {
                kind: "senaite".into(),
                site_url: "http://127.0.0.1:1/senaite".into(),
                jsonapi_version: Some("2.6.0".into()),
                versions: BTreeMap::new(),
            },
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:01Z".into(),
            request: RequestInfo::default(),
            files: vec![FileEntry {
                path: "tables/objects.parquet".into(),
                kind: "table".into(),
                rows: 3,
                bytes: 10,
                sha256: "ab".into(),
            }],
            counts: BTreeMap::from([("Client".to_string(), 3)]),
            blobs: BlobTotals::default(),
            notes: vec![],
            base: None,
        }
    }

    #[test]
    fn manifest_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
    }

    #[test]
    fn base_is_optional_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let text = serde_json::to_string(&sample()).unwrap();
        assert!(
            !text.contains("\"base\""),
            "a full snapshot's manifest has no base key"
        );
        let mut m = sample();
        m.base = Some(BaseInfo {
            snapshot_id: "b".repeat(64),
            finished_at: "2026-01-01T00:00:00Z".into(),
            site_url: "http://127.0.0.1:1/senaite".into(),
        });
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
    }

    #[test]
    fn missing_manifest_says_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("incomplete"), "{err}");
    }

    #[test]
    fn other_version_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(sample()).unwrap();
        v["format_version"] = 99.into();
        std::fs::write(dir.path().join("manifest.json"), v.to_string()).unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("99"), "{err}");
    }

    #[test]
    fn id_ignores_file_order() {
        let a = sample().files;
        let mut b = a.clone();
        b.push(FileEntry {
            path: "raw/x".into(),
            ..a[0].clone()
        });
        let mut c = b.clone();
        c.reverse();
        assert_eq!(Manifest::compute_id(&b), Manifest::compute_id(&c));
        assert_ne!(Manifest::compute_id(&a), Manifest::compute_id(&b));
    }
}
