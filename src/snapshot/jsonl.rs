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

/// Pending uncompressed bytes that make one zstd frame.
const FRAME_BYTES: usize = 1 << 20;

/// Writes one JSON document per line into a `.jsonl.zst` file: a sequence of independent zstd
/// frames (a valid zstd stream any zstd reader decodes), so callers may compress frames in
/// parallel ([`compress_frame`]) and append them in order ([`JsonlWriter::append_frame`]).
pub struct JsonlWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    pending: Vec<u8>,
    level: i32,
    lines: u64,
    /// Whether a frame was written.
    wrote: bool,
}

/// Compresses whole lines (each ending in `\n`) into one zstd frame.
///
/// # Errors
/// When zstd fails (out of memory).
pub fn compress_frame(lines: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(lines, level)
}

impl JsonlWriter {
    /// Creates the writer; the file appears at `path` only when [`JsonlWriter::finish`] succeeds.
    ///
    /// # Errors
    /// When the temp file cannot be created.
    pub fn create(path: &Path) -> Result<Self> {
        JsonlWriter::create_with_level(path, ZSTD_LEVEL)
    }

    /// As [`JsonlWriter::create`] with another zstd level.
    ///
    /// # Errors
    /// When the temp file cannot be created.
    pub fn create_with_level(path: &Path, level: i32) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
        }
        let tmp = layout::tmp_path(path);
        let file = File::create(&tmp).map_err(|e| Error::write(&tmp, e))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            tmp,
            out: BufWriter::new(file),
            pending: Vec::with_capacity(FRAME_BYTES),
            level,
            lines: 0,
            wrote: false,
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
        self.pending.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            self.pending.push(b'\n');
        }
        self.lines += 1;
        if self.pending.len() >= FRAME_BYTES {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Appends a frame made by [`compress_frame`] holding `lines` lines, after what is pending.
    ///
    /// # Errors
    /// When writing fails.
    pub fn append_frame(&mut self, frame: &[u8], lines: u64) -> Result<()> {
        self.flush_pending()?;
        self.out
            .write_all(frame)
            .map_err(|e| Error::write(&self.tmp, e))?;
        self.wrote = true;
        self.lines += lines;
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let frame =
            compress_frame(&self.pending, self.level).map_err(|e| Error::write(&self.tmp, e))?;
        self.out
            .write_all(&frame)
            .map_err(|e| Error::write(&self.tmp, e))?;
        self.wrote = true;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is pending, syncs and renames the file into place; returns the line count.
    /// A file without lines still holds one (empty) zstd frame, so every reader can open it.
    ///
    /// # Errors
    /// When writing, syncing or renaming fails.
    pub fn finish(mut self) -> Result<u64> {
        self.flush_pending()?;
        if !self.wrote {
            let frame = compress_frame(&[], self.level).map_err(|e| Error::write(&self.tmp, e))?;
            self.out
                .write_all(&frame)
                .map_err(|e| Error::write(&self.tmp, e))?;
        }
        let file = self
            .out
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

    /// A file without lines is a valid zstd stream of nothing (a zero-byte file is not, and
    /// `extract --since` of a source with no filtered types failed on one).
    #[test]
    fn a_file_without_lines_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.jsonl.zst");
        assert_eq!(JsonlWriter::create(&path).unwrap().finish().unwrap(), 0);
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        assert!(JsonlReader::read_all(&path).unwrap().is_empty());
    }

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
    fn frames_compressed_elsewhere_append_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl.zst");
        let mut w = JsonlWriter::create(&path).unwrap();
        w.write_value(&json!(1)).unwrap();
        w.append_frame(&compress_frame(b"2\n3\n", 3).unwrap(), 2)
            .unwrap();
        w.write_value(&json!(4)).unwrap();
        assert_eq!(w.finish().unwrap(), 4);
        let back = JsonlReader::read_all(&path).unwrap();
        assert_eq!(back, vec![json!(1), json!(2), json!(3), json!(4)]);
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
