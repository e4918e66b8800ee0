//! Everything that talks to a SENAITE site over HTTP: the client (auth, retries, answer
//! checks), paging, credentials. Only this module and (later) `load` use reqwest.

pub mod client;
pub mod credentials;
pub mod paging;
pub mod retry;
mod transport;

pub use client::{ClientOptions, SenaiteClient};
pub use credentials::{Credentials, Secret};

/// Keys every senaite.jsonapi catalog record carries whatever the catalog's metadata columns:
/// senaite.jsonapi maps them itself, and a complete record overwrites them with the object's own
/// values. Shared by the incremental extract (which compares only the catalog's own values) and
/// the sandbox (which serves them).
pub const MAPPED_CATALOG_KEYS: &[&str] = &[
    "id",
    "uid",
    "title",
    "description",
    "created",
    "modified",
    "effective",
    "portal_type",
    "tags",
    "author",
    "path",
    "parent_path",
    "url",
    "api_url",
    "parent_id",
    "parent_uid",
    "parent_url",
];
