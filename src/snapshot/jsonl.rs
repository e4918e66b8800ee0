//! zstd-compressed JSON Lines: one compact JSON document per line. Used for the verbatim API
//! streams under `raw/` and for extract's staging files. Writers go to a temp name and are renamed
//! into place by `finish`, so a reader never sees half a file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::jsonx;
use crate::snapshot::layout;

/// zstd level for JSONL streams: 3 is zstd's default speed/ratio balance.
pub const ZSTD_LEVEL: i32 = 3;

/// Writes one JSON document per line into a `.jsonl.zst` file.
pub struct JsonlWriter {
    path: PathBuf,
    tmp: PathBuf,
    encoder: zstd::stream::write::Encoder<'static, BufWriter<File>>,
    lines: u64,
}

impl JsonlWriter {
    /// Creates the writer; the file appears at `path` only when [`JsonlWriter::finish`] succeeds.
    ///
    /// # Errors
    /// When the temp file cannot be created.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
        }
        let tmp = layout::tmp_path(path);
        let file = File::create(&tmp).map_err(|e| Error::write(&tmp, e))?;
        let encoder = zstd::stream::write::Encoder::new(BufWriter::new(file), ZSTD_LEVEL)
            .map_err(|e| Error::write(&tmp, e))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            tmp,
            encoder,
            lines: 0,
        })
    }

    /// Appends one document.
    ///
    /// # Errors
    /// When writing fails.
    pub fn write_value(&mut self, value: &Value) -> Result<()> {
        let mut line = jsonx::canonical(value);
        line.push(b'\n');
        self.write_line_bytes(&line)
    }

    /// Appends an already-serialized line (must not contain a newline; one is added).
    ///
    /// # Errors
    /// When writing fails.
    pub fn write_line_bytes(&mut self, line: &[u8]) -> Result<()> {
        self.encoder
            .write_all(line)
            .map_err(|e| Error::write(&self.tmp, e))?;
        if !line.ends_with(b"\n") {
            self.encoder
                .write_all(b"\n")
                .map_err(|e| Error::write(&self.tmp, e))?;
        }
        self.lines += 1;
        Ok(())
    }

    /// Flushes, closes the zstd frame and renames the file into place; returns the line count.
    ///
    /// # Errors
    /// When finishing, syncing or renaming fails.
    pub fn finish(self) -> Result<u64> {
        let buf = self
            .encoder
            .finish()
            .map_err(|e| Error::write(&self.tmp, e))?;
        let file = buf
            .into_inner()
            .map_err(|e| Error::write(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::write(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::write(&self.path, e))?;
        Ok(self.lines)
    }
}

/// Reads a `.jsonl.zst` file line by line.
pub struct JsonlReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<zstd::stream::read::Decoder<'static, BufReader<File>>>>,
    line_no: u64,
}

impl JsonlReader {
    /// Opens a file for reading.
    ///
    /// # Errors
    /// When the file cannot be opened or is not zstd.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::read(path, e))?;
        let decoder = zstd::stream::read::Decoder::new(file).map_err(|e| Error::read(path, e))?;
        Ok(JsonlReader {
            path: path.to_path_buf(),
            lines: BufReader::new(decoder).lines(),
            line_no: 0,
        })
    }

    /// Reads every document of a file into memory (for small files).
    ///
    /// # Errors
    /// When the file cannot be read or a line is not JSON.
    pub fn read_all(path: &Path) -> Result<Vec<Value>> {
        JsonlReader::open(path)?.collect()
    }
}

impl Iterator for JsonlReader {
    type Item = Result<Value>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = match self.lines.next()? {
            Ok(line) => line,
            Err(e) => return Some(Err(Error::read(&self.path, e))),
        };
        self.line_no += 1;
        Some(serde_json::from_str(&line).map_err(|e| {
            Error::snapshot(
                &self.path,
                format!("line {} is not valid JSON: {e}", self.line_no),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl.zst");
        let mut w = JsonlWriter::create(&path).unwrap();
        let docs = vec![json!({"b": 1, "a": "x\ny"}), json!([1, 2]), json!(null)];
        for d in &docs {
            w.write_value(d).unwrap();
        }
        assert!(!path.exists(), "visible before finish");
        assert_eq!(w.finish().unwrap(), 3);
        let back = JsonlReader::read_all(&path).unwrap();
        assert_eq!(back, docs);
    }

    #[test]
    fn corrupt_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl.zst");
        let mut w = JsonlWriter::create(&path).unwrap();
        w.write_line_bytes(b"{\"ok\":1}").unwrap();
        w.write_line_bytes(b"{broken").unwrap();
        w.finish().unwrap();
        let err = JsonlReader::read_all(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.jsonl.zst") && err.contains("line 2"),
            "{err}"
        );
    }
}
