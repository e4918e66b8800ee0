//! What the sandbox serves: an in-memory model of one SENAITE site, built from a snapshot
//! (`SiteData::from_snapshot`, in `sandbox::load`) or assembled by tests from recorded responses.
//! Records are kept as the real API produced them (complete v1 records with `workflow_info`), and
//! URLs inside them are rewritten from the recorded origin to the sandbox's own when served.
//! [`SiteData::empty`] is a fresh site with no content, the destination of load tests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// One content object of the site.
#[derive(Debug, Clone)]
pub struct SiteObject {
    /// The complete senaite.jsonapi v1 record (`complete=yes&workflow=yes`), verbatim.
    /// Must hold at least `uid`, `portal_type`, `path`, `id`.
    pub record: Value,
    /// The catalog that indexes this object (e.g. `senaite_catalog_sample`); `None` for types the
    /// v1 search cannot read completely (the real `Setup` answers 500 there).
    pub catalog: Option<String>,
    /// When set, a complete v1 read of this object answers HTTP 500 with this message
    /// (the real `Setup` object does: `'unicode' object has no attribute 'output'`).
    pub v1_error: Option<String>,
    /// plone.restapi serialization (`GET SITE/<path>`), if the real site gave one.
    pub restapi: Option<Value>,
    /// plone.restapi `GET SITE/<path>/@history` answer, if recorded.
    pub history: Option<Value>,
    /// plone.restapi `GET SITE/<path>/@sharing` answer, if recorded.
    pub sharing: Option<Value>,
}

/// Bytes behind a download URL.
#[derive(Debug, Clone)]
pub enum BlobBody {
    /// Bytes held in memory.
    Inline(Vec<u8>),
    /// A file on disk (streamed when served).
    File(PathBuf),
}

/// A file field's download.
#[derive(Debug, Clone)]
pub struct SiteBlob {
    /// MIME type sent as Content-Type.
    pub content_type: String,
    /// The bytes.
    pub body: BlobBody,
}

/// Everything one sandbox site serves.
#[derive(Debug, Clone, Default)]
pub struct SiteData {
    /// Plone site id, the first path segment (`senaite`).
    pub site_id: String,
    /// The origin (`http://127.0.0.1:8081`) that URLs inside recorded records use; served
    /// bodies have it replaced by the sandbox's own origin. Empty: no rewriting.
    pub recorded_origin: String,
    /// senaite.jsonapi version answered by `/version` (`2.6.0`).
    pub jsonapi_version: String,
    /// Content objects (the portal itself is not one of them).
    pub objects: Vec<SiteObject>,
    /// Catalog descriptions as `/catalogs` lists them (`{id, indexes, schema, portal_types}`),
    /// `uid_catalog` included (the real `/catalogs` hides it from the listing).
    pub catalogs: Vec<Value>,
    /// v1 `/users` items, verbatim.
    pub users: Vec<Value>,
    /// plone.restapi `@users` items, verbatim.
    pub restapi_users: Vec<Value>,
    /// plone.restapi `@groups` items (the detail form, `GET @groups/<id>`), verbatim.
    pub restapi_groups: Vec<Value>,
    /// plone.restapi `@registry` items (`{name, schema, value}`), in registry order.
    pub registry: Vec<Value>,
    /// v1 `/settings/<key>` answers by key; an `Err` is the error message the real site gives.
    pub settings: BTreeMap<String, Result<Value, String>>,
    /// Downloads by URL path (`/senaite/clients/client-1/W-0001/att-1/at_download/AttachmentFile`).
    pub blobs: BTreeMap<String, SiteBlob>,
}

/// The catalogs of a fresh SENAITE 2.6 (recorded from a real one, `/catalogs` plus
/// `uid_catalog`).
const FRESH_CATALOGS: &str = include_str!("../../data/fixtures/senaite/site/catalogs.json");

impl SiteData {
    /// A site with no content (the site root only), no users and no groups, but the catalogs
    /// of a fresh SENAITE 2.6: what a load starts from.
    pub fn empty(site_id: &str) -> SiteData {
        let catalogs = match crate::jsonx::parse_lenient(FRESH_CATALOGS.as_bytes()) {
            Ok(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        SiteData {
            site_id: site_id.to_owned(),
            jsonapi_version: "2.6.0".to_owned(),
            catalogs,
            ..SiteData::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_site_has_the_fresh_catalogs() {
        let data = SiteData::empty("lab");
        assert_eq!(data.site_id, "lab");
        assert!(data.objects.is_empty());
        assert!(data.catalogs.len() > 10, "{}", data.catalogs.len());
        assert!(data.catalogs.iter().any(|c| c["id"] == "uid_catalog"));
    }
}
