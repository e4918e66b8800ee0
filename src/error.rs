//! The crate's one error type. Every variant that wraps a lower-level error also names what we
//! were doing (path, URL, table, uid), so a message is useful without a debugger. Only `main`
//! turns an [`Error`] into an exit code.

use std::path::PathBuf;

/// Errors produced by any stage of the tool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file or directory failed.
    #[error("reading {}", .path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing, creating or renaming a file or directory failed.
    #[error("writing {}", .path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document on disk could not be parsed.
    #[error("invalid JSON in {}", .path.display())]
    JsonFile {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A Parquet file could not be written or read.
    #[error("parquet file {}", .path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The Parquet error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building an Arrow batch for a table failed.
    #[error("building arrow batch for table {table}")]
    Arrow {
        /// The table name.
        table: String,
        /// The Arrow error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// A snapshot directory is incomplete, corrupt or of an unknown format.
    #[error("snapshot {}: {message}", .path.display())]
    Snapshot {
        /// The snapshot directory or file inside it.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The network request itself failed (connection refused, timeout, TLS, ...).
    #[error("{method} {url} failed")]
    Http {
        /// HTTP method.
        method: &'static str,
        /// The URL, without credentials.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an HTTP status we treat as an error.
    #[error("{method} {url} returned HTTP {status}{}", fmt_detail(.detail))]
    HttpStatus {
        /// HTTP method.
        method: &'static str,
        /// The URL, without credentials.
        url: String,
        /// The status code.
        status: u16,
        /// The server's message, if its body had one.
        detail: Option<String>,
    },
    /// The server answered 200 but the body was an API error (`success: false`).
    #[error("{url} answered with an API error: {message}")]
    Api {
        /// The URL, without credentials.
        url: String,
        /// The server's message.
        message: String,
    },
    /// The body was not the JSON we expected.
    #[error("unexpected response from {url}: {message}")]
    BadResponse {
        /// The URL, without credentials.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// The credentials were refused.
    #[error("the server at {url} refused the credentials of user {user:?} (HTTP 401)")]
    Unauthorized {
        /// The URL probed.
        url: String,
        /// The user name (never the password).
        user: String,
    },
    /// Credentials could not be obtained.
    #[error("credentials: {0}")]
    Credentials(String),
    /// Invalid command-line input.
    #[error("{0}")]
    Usage(String),
    /// The extract work directory belongs to a different request.
    #[error("{}: {message}", .path.display())]
    Resume {
        /// The work directory.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// The destination has no (compatible) receiver.
    #[error("destination {url}: {message}")]
    Receiver {
        /// The destination site URL.
        url: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A load could not go on.
    #[error("load: {message}")]
    Load {
        /// What failed, and how to resume.
        message: String,
    },
    /// The sandbox server could not start.
    #[error("sandbox server on {addr}: {message}")]
    Sandbox {
        /// The address.
        addr: String,
        /// What went wrong.
        message: String,
    },
}

fn fmt_detail(detail: &Option<String>) -> String {
    match detail {
        Some(d) if !d.is_empty() => format!(": {d}"),
        _ => String::new(),
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error from reading `path`.
    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Read {
            path: path.into(),
            source,
        }
    }

    /// Wraps an I/O error from writing `path`.
    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Write {
            path: path.into(),
            source,
        }
    }

    /// A snapshot-level problem at `path`.
    pub(crate) fn snapshot(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Snapshot {
            path: path.into(),
            message: message.into(),
        }
    }
}
