//! Builds a [`SiteData`] from the recorded fixture site in `data/fixtures/senaite/site/`
//! (written by `data/fixtures/senaite/record.py` from a real seeded SENAITE 2.6): complete v1
//! records of every object with their catalog, catalogs, users, a registry slice, settings and
//! a few plone.restapi bodies. The tests pin the double with it; `serve` can demo it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::data::{SiteData, SiteObject};
use crate::error::Error;
use crate::jsonx::parse_lenient;

/// Reads one JSON file of the fixture site.
fn read_json(dir: &Path, name: &str) -> crate::Result<Value> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| Error::read(&path, e))?;
    parse_lenient(&bytes).map_err(|source| Error::JsonFile { path, source })
}

/// A JSON array of the fixture site as a vector.
fn read_array(dir: &Path, name: &str) -> crate::Result<Vec<Value>> {
    match read_json(dir, name)? {
        Value::Array(items) => Ok(items),
        _ => Err(Error::snapshot(dir.join(name), "expected a JSON array")),
    }
}

/// Loads the recorded fixture site in `dir` (the `site/` folder).
///
/// # Errors
/// A file is missing, is not JSON, or has the wrong shape.
pub fn site_from_fixtures(dir: &Path) -> crate::Result<SiteData> {
    let meta = read_json(dir, "meta.json")?;
    let text = |key: &str| meta[key].as_str().unwrap_or_default().to_owned();
    let mut objects = Vec::new();
    for entry in read_array(dir, "objects.json")? {
        let string = |key: &str| entry[key].as_str().map(str::to_owned);
        let body = |key: &str| entry.get(key).filter(|v| !v.is_null()).cloned();
        objects.push(SiteObject {
            record: entry["record"].clone(),
            catalog: string("catalog"),
            v1_error: string("v1_error"),
            restapi: body("restapi"),
            history: body("history"),
            sharing: body("sharing"),
        });
    }
    let mut settings = BTreeMap::new();
    if let Value::Object(map) = read_json(dir, "settings.json")? {
        for (key, value) in map {
            settings.insert(key, Ok(value));
        }
    }
    Ok(SiteData {
        site_id: text("site_id"),
        recorded_origin: text("recorded_origin"),
        jsonapi_version: text("jsonapi_version"),
        objects,
        catalogs: read_array(dir, "catalogs.json")?,
        users: read_array(dir, "users.json")?,
        restapi_users: read_array(dir, "restapi_users.json")?,
        restapi_groups: read_array(dir, "restapi_groups.json")?,
        registry: read_array(dir, "registry.json")?,
        settings,
        blobs: BTreeMap::new(),
    })
}
