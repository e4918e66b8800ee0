//! Path conventions of a snapshot directory, and nothing else:
//!
//! ```text
//! <snap>/manifest.json                 written last; its presence means "complete"
//! <snap>/tables/<table>.parquet        typed tables (objects, workflow_history, ...)
//! <snap>/raw/<stream>.jsonl.zst        verbatim API answers, one JSON document per line
//! <snap>/blobs/<sha[0..2]>/<sha256>    file bytes, stored once per content hash
//! <snap>/.work/                        extract's resumable staging area (absent when complete)
//! ```

use std::path::{Path, PathBuf};

/// File name of the manifest.
pub const MANIFEST: &str = "manifest.json";
/// Directory of the Parquet tables.
pub const TABLES_DIR: &str = "tables";
/// Directory of the verbatim JSONL streams.
pub const RAW_DIR: &str = "raw";
/// Directory of the content-addressed blobs.
pub const BLOBS_DIR: &str = "blobs";
/// Directory of the extract staging area.
pub const WORK_DIR: &str = ".work";

/// `<snap>/manifest.json`.
pub fn manifest_path(snap: &Path) -> PathBuf {
    snap.join(MANIFEST)
}

/// Relative path of a table file, as listed in the manifest.
pub fn table_rel(table: &str) -> String {
    format!("{TABLES_DIR}/{table}.parquet")
}

/// Relative path of a raw stream, as listed in the manifest.
pub fn raw_rel(stream: &str) -> String {
    format!("{RAW_DIR}/{stream}.jsonl.zst")
}

/// Relative path of a blob with the given lower-case hex sha256.
pub fn blob_rel(sha256: &str) -> String {
    let prefix = sha256.get(..2).unwrap_or("xx");
    format!("{BLOBS_DIR}/{prefix}/{sha256}")
}

/// The temporary name a file is written under before it is renamed into place.
pub fn tmp_path(final_path: &Path) -> PathBuf {
    let mut name = final_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    final_path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_documented_layout() {
        assert_eq!(table_rel("objects"), "tables/objects.parquet");
        assert_eq!(raw_rel("jsonapi"), "raw/jsonapi.jsonl.zst");
        assert_eq!(blob_rel("abcdef"), "blobs/ab/abcdef");
        let tmp = tmp_path(Path::new("/s/manifest.json"));
        assert!(tmp.to_string_lossy().starts_with("/s/manifest.json."));
        assert!(tmp.to_string_lossy().ends_with(".tmp"));
    }
}
