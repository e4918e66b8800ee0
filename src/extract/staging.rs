//! The resumable staging area of an extract, `<out>/.work/`. Every unit of work (a listing, a
//! page of one portal type, a batch of single-object reads, the site records) is written to its
//! own file under a temp name and renamed when complete, so a killed extract loses at most the
//! units in flight; a re-run with the same request skips every unit whose file exists.
//! `request.json` fingerprints the request: a different one refuses to resume instead of mixing.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::snapshot::jsonl::{JsonlReader, JsonlWriter};
use crate::snapshot::layout;

/// zstd level of staged units: they are read once and deleted, so speed beats ratio.
const STAGING_ZSTD_LEVEL: i32 = 1;

/// The staging area of one extract.
#[derive(Debug, Clone)]
pub struct Staging {
    root: PathBuf,
}

impl Staging {
    /// Opens (creating if needed) the staging area of `out` for `request`. Refuses when an
    /// earlier, different request left one behind, unless `restart` (which discards it).
    ///
    /// # Errors
    /// When the request differs, or the directory cannot be created.
    pub fn open(out: &Path, request: &Value, restart: bool) -> Result<Staging> {
        let root = out.join(layout::WORK_DIR);
        let req_path = root.join("request.json");
        if restart && root.exists() {
            std::fs::remove_dir_all(&root).map_err(|e| Error::write(&root, e))?;
        }
        if req_path.exists() {
            let old: Value = read_json(&req_path)?;
            if &old != request {
                return Err(Error::Resume {
                    path: root,
                    message: "an unfinished extract with different arguments is staged here; \
                              re-run it with the same arguments to resume, or pass --restart to \
                              discard it"
                        .into(),
                });
            }
        } else {
            std::fs::create_dir_all(&root).map_err(|e| Error::write(&root, e))?;
            write_json(&req_path, request)?;
        }
        Ok(Staging { root })
    }

    /// The staging directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of a unit file (relative name, e.g. `units/Client/p000000000.jsonl.zst`).
    pub fn unit_path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Whether a unit is complete.
    pub fn is_done(&self, name: &str) -> bool {
        self.unit_path(name).is_file()
    }

    /// Writes a unit of `(key, document)` lines atomically. Each line is `key<TAB>json`, so later
    /// passes can route a line by its key without parsing the JSON.
    ///
    /// # Errors
    /// When writing fails.
    pub fn write_unit(&self, name: &str, items: &[(String, String)]) -> Result<()> {
        let path = self.unit_path(name);
        let mut w = JsonlWriter::create_with_level(&path, STAGING_ZSTD_LEVEL)?;
        for (key, json) in items {
            let mut line = Vec::with_capacity(key.len() + json.len() + 2);
            line.extend_from_slice(key.as_bytes());
            line.push(b'\t');
            line.extend_from_slice(json.as_bytes());
            w.write_line_bytes(&line)?;
        }
        w.finish()?;
        Ok(())
    }

    /// Reads the `(key, raw json)` lines of a unit.
    ///
    /// # Errors
    /// When the file cannot be read or a line has no key.
    pub fn read_unit_lines(&self, name: &str) -> Result<Vec<(String, String)>> {
        read_keyed_lines(&self.unit_path(name))
    }

    /// Every complete unit file under a sub-directory, sorted by name.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn units_under(&self, dir: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let base = self.root.join(dir);
        if !base.exists() {
            return Ok(out);
        }
        let mut stack = vec![base];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).map_err(|e| Error::read(&d, e))? {
                let entry = entry.map_err(|e| Error::read(&d, e))?;
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.to_string_lossy().ends_with(".jsonl.zst")
                    && let Ok(rel) = p.strip_prefix(&self.root)
                {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reads a small JSON document of the staging area, if present.
    ///
    /// # Errors
    /// When it exists but cannot be read or parsed.
    pub fn read_doc<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.root.join(name);
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// Writes a small JSON document atomically.
    ///
    /// # Errors
    /// When writing fails.
    pub fn write_doc<T: Serialize>(&self, name: &str, doc: &T) -> Result<()> {
        write_json(&self.root.join(name), doc)
    }

    /// Removes the staging area (after the manifest is written).
    ///
    /// # Errors
    /// When it cannot be removed.
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.root).map_err(|e| Error::write(&self.root, e))
    }
}

/// Reads `key<TAB>json` lines from a `.jsonl.zst` file.
///
/// # Errors
/// When the file cannot be read or a line has no key.
pub fn read_keyed_lines(path: &Path) -> Result<Vec<(String, String)>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    let dec = zstd::stream::read::Decoder::new(file).map_err(|e| Error::read(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(dec).lines().enumerate() {
        let line = line.map_err(|e| Error::read(path, e))?;
        let Some((k, v)) = line.split_once('\t') else {
            return Err(Error::snapshot(path, format!("line {} has no key", i + 1)));
        };
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::read(path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::JsonFile {
        path: path.to_path_buf(),
        source,
    })
}

fn write_json<T: Serialize>(path: &Path, doc: &T) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
    }
    let bytes = serde_json::to_vec_pretty(doc).map_err(|source| Error::JsonFile {
        path: path.to_path_buf(),
        source,
    })?;
    crate::snapshot::writer::write_atomic(path, &bytes)
}

/// Reads all documents of a plain `.jsonl.zst` file (no keys).
///
/// # Errors
/// As [`JsonlReader::read_all`].
pub fn read_plain(path: &Path) -> Result<Vec<Value>> {
    JsonlReader::read_all(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn units_round_trip_and_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let req = json!({"site": "x"});
        let st = Staging::open(dir.path(), &req, false).unwrap();
        st.write_unit(
            "units/A/p1.jsonl.zst",
            &[("k1".to_string(), json!({"a": "t\tab"}).to_string())],
        )
        .unwrap();
        assert!(st.is_done("units/A/p1.jsonl.zst"));
        assert_eq!(
            st.units_under("units").unwrap(),
            vec!["units/A/p1.jsonl.zst"]
        );
        let lines = st.read_unit_lines("units/A/p1.jsonl.zst").unwrap();
        assert_eq!(lines[0].0, "k1");
        let v: Value = serde_json::from_str(&lines[0].1).unwrap();
        assert_eq!(v["a"], "t\tab");
    }

    #[test]
    fn a_different_request_refuses_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        Staging::open(dir.path(), &json!({"types": ["A"]}), false).unwrap();
        let err = Staging::open(dir.path(), &json!({"types": ["B"]}), false).unwrap_err();
        assert!(err.to_string().contains("--restart"));
        Staging::open(dir.path(), &json!({"types": ["B"]}), true).unwrap();
    }
}
