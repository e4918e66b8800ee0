//! Content-addressed blob storage: file bytes are streamed to a temp file while hashed, then
//! renamed to `blobs/<sha[0..2]>/<sha256>`. A 1 GB attachment never sits in memory, and the same
//! bytes are stored once however many objects carry them.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::jsonx;
use crate::snapshot::layout;

/// Copy buffer size for streaming blobs.
const CHUNK: usize = 256 * 1024;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Streams `reader` into the blob store of snapshot `snap`.
///
/// # Errors
/// When reading the source (named by `what`, e.g. the download URL) or writing fails.
pub fn store_stream(snap: &Path, reader: &mut dyn Read, what: &str) -> Result<StoredBlob> {
    let dir = snap.join(layout::BLOBS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::write(&dir, e))?;
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".incoming-{}-{n}.tmp", std::process::id()));
    let result = copy_hashing(reader, &tmp, what);
    let (sha256, size) = match result {
        Ok(v) => v,
        Err(e) => {
            // Best effort: a failed partial download leaves no stray temp file behind.
            let _ignored = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let final_path = snap.join(layout::blob_rel(&sha256));
    if let Some(parent) = final_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
    }
    std::fs::rename(&tmp, &final_path).map_err(|e| Error::write(&final_path, e))?;
    Ok(StoredBlob { sha256, size })
}

fn copy_hashing(reader: &mut dyn Read, tmp: &Path, what: &str) -> Result<(String, u64)> {
    let mut file = File::create(tmp).map_err(|e| Error::write(tmp, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::read(what, e)),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| Error::write(tmp, e))?;
        size += n as u64;
    }
    file.sync_all().map_err(|e| Error::write(tmp, e))?;
    Ok((jsonx::hex(&hasher.finalize()), size))
}

/// Hashes a file on disk in streaming fashion; returns `(sha256, size)`.
///
/// # Errors
/// When the file cannot be read.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let file = File::open(path).map_err(|e| Error::read(path, e))?;
    let mut reader = BufReader::with_capacity(CHUNK, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::read(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((jsonx::hex(&hasher.finalize()), size))
}

/// Path of a blob inside a snapshot.
pub fn blob_path(snap: &Path, sha256: &str) -> PathBuf {
    snap.join(layout::blob_rel(sha256))
}

/// Puts the blob file `src` (of another snapshot) at `dst` (a blob path of the snapshot being
/// written): a hard link where the file system allows it, else a copy under a temporary name
/// renamed into place; an existing `dst` is kept. Returns the size of `dst`.
///
/// # Errors
/// `src` unreadable, `dst` or its folder not writable.
pub fn link_blob(src: &Path, dst: &Path) -> Result<u64> {
    if !dst.is_file() {
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
        }
        if std::fs::hard_link(src, dst).is_err() {
            let tmp = layout::tmp_path(dst);
            std::fs::copy(src, &tmp).map_err(|e| Error::read(src, e))?;
            std::fs::rename(&tmp, dst).map_err(|e| Error::write(dst, e))?;
        }
    }
    Ok(std::fs::metadata(dst)
        .map_err(|e| Error::read(dst, e))?
        .len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_once_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let a = store_stream(dir.path(), &mut &b"hello"[..], "test").unwrap();
        let b = store_stream(dir.path(), &mut &b"hello"[..], "test").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.size, 5);
        let p = blob_path(dir.path(), &a.sha256);
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(hash_file(&p).unwrap(), (a.sha256.clone(), 5));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("connection reset"))
        }
    }

    #[test]
    fn failed_stream_names_source_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = store_stream(dir.path(), &mut Failing, "http://x/at_download/File").unwrap_err();
        assert!(err.to_string().contains("at_download"));
        let n = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
        assert_eq!(n, 0);
    }
}
