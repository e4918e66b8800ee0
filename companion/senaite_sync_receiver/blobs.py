# -*- coding: utf-8 -*-
"""Blob staging: chunked uploads kept on disk until a record uses them.

A blob being uploaded lives in ``<staging>/<sha256>.part``; once all bytes
arrived and the sha256 matched it is renamed to ``<staging>/<sha256>``.
This module never touches the ZODB.
"""
import hashlib
import os
import re
import tempfile

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COPY_BUFFER = 1024 * 1024


class BlobError(Exception):
    """A blob request that cannot be served; carries the HTTP status."""

    def __init__(self, status, message):
        super(BlobError, self).__init__(message)
        self.status = status


def staging_dir():
    """The staging directory (created on demand)."""
    path = os.environ.get("SENAITE_SYNC_STAGING") or os.path.join(
        tempfile.gettempdir(), "senaite-sync-receiver")
    if not os.path.isdir(path):
        try:
            os.makedirs(path)
        except OSError:
            if not os.path.isdir(path):
                raise
    return path


def check_sha(sha):
    """Raise BlobError unless sha is a lowercase sha256 hex digest."""
    if not SHA256_RE.match(sha or ""):
        raise BlobError(400, "Invalid sha256: {!r}".format(sha))
    return sha


def complete_path(sha):
    """Path of the complete blob, or None when it is not (yet) staged."""
    path = os.path.join(staging_dir(), check_sha(sha))
    return path if os.path.isfile(path) else None


def status(sha):
    """The {sha256, received, complete} answer for a blob."""
    done = complete_path(sha)
    if done:
        return {"sha256": sha, "received": os.path.getsize(done),
                "complete": True}
    part = os.path.join(staging_dir(), sha + ".part")
    received = os.path.getsize(part) if os.path.isfile(part) else 0
    return {"sha256": sha, "received": received, "complete": False}


def file_sha256(path):
    """sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(COPY_BUFFER)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def write_chunk(sha, offset, size, stream, length, max_chunk):
    """Append one chunk read from stream (length bytes) at offset.

    Raises BlobError 409 when offset is not the number of bytes received,
    400 on a bad size or a sha256 mismatch (the partial file is dropped),
    413 when the chunk is larger than max_chunk.

    The offset check, the append and the completion run under an exclusive
    lock on the ``.part`` file: a chunk resent while the first attempt is
    still being written (a client retry after a timeout), or the same blob
    uploaded to two instances sharing the staging directory, cannot append
    twice or write into a file another writer just completed or dropped.
    """
    check_sha(sha)
    if size < 0 or offset < 0 or length < 0:
        raise BlobError(400, "Negative offset, size or length")
    if length > max_chunk:
        raise BlobError(413, "Chunk of {} bytes exceeds max_chunk_bytes {}"
                        .format(length, max_chunk))
    part = os.path.join(staging_dir(), sha + ".part")
    while True:
        current = status(sha)
        if current["complete"]:
            return current
        handle = open(part, "ab")
        try:
            lock(handle)
            if not same_file(handle, part) or complete_path(sha):
                continue  # completed or dropped meanwhile: look again
            return append_locked(sha, offset, size, stream, length, part,
                                 handle)
        finally:
            handle.close()  # also releases the lock


def lock(handle):
    """Exclusive lock on an open file (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def same_file(handle, path):
    """True when path still names the open file (not renamed/removed)."""
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def append_locked(sha, offset, size, stream, length, part, handle):
    received = os.fstat(handle.fileno()).st_size
    if offset != received:
        raise BlobError(409, "Offset {} does not match received={}"
                        .format(offset, received))
    if offset + length > size:
        raise BlobError(400, "Chunk ends at {} beyond X-Sync-Size {}"
                        .format(offset + length, size))
    remaining = length
    while remaining > 0:
        data = stream.read(min(COPY_BUFFER, remaining))
        if not data:
            break
        handle.write(data)
        remaining -= len(data)
    handle.flush()
    received = os.fstat(handle.fileno()).st_size
    if remaining > 0:
        raise BlobError(400, "Body shorter than Content-Length "
                        "(received={})".format(received))
    if received == size:
        if file_sha256(part) != sha:
            os.remove(part)
            raise BlobError(400, "sha256 mismatch, partial upload discarded")
        os.rename(part, os.path.join(staging_dir(), sha))
        return {"sha256": sha, "received": received, "complete": True}
    return {"sha256": sha, "received": received, "complete": False}
