//! Building a sandbox site from a snapshot: the verbatim v1 records of `raw/jsonapi`, the
//! plone.restapi answers of `raw/restapi`, the site records and catalogs of `raw/site`, and the
//! blob files behind each file field's download path. Serving a snapshot and extracting it again
//! therefore reproduces its tables (the round-trip the tests check).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::sandbox::data::{BlobBody, SiteBlob, SiteData, SiteObject};
use crate::snapshot::jsonl::JsonlReader;
use crate::snapshot::table::{BLOBS, OBJECTS, TableReader};
use crate::snapshot::{Snapshot, blobs, manifest_site_path};
use crate::source::client::origin_of;

/// Catalogs a type is never primarily served from, though `/catalogs` lists it there.
const SECONDARY_CATALOGS: &[&str] = &["portal_catalog", "senaite_catalog_auditlog", "uid_catalog"];

/// Loads the site a snapshot describes.
///
/// # Errors
/// When the snapshot is incomplete, corrupt, or its raw streams cannot be read.
pub fn site_from_snapshot(dir: &Path) -> Result<SiteData> {
    let snap = Snapshot::open(dir)?;
    let m = &snap.manifest;
    let mut data = SiteData {
        site_id: manifest_site_path(m).trim_start_matches('/').to_string(),
        recorded_origin: origin_of(&m.source.site_url).unwrap_or_default(),
        jsonapi_version: m
            .source
            .jsonapi_version
            .clone()
            .unwrap_or_else(|| "2.6.0".into()),
        ..SiteData::default()
    };
    read_site_stream(&snap, &mut data)?;
    let catalog_of = catalog_map(&data.catalogs);
    let mut rest = read_restapi(&snap)?;
    let fallback_errors = fallback_messages(m);
    let mut seen = std::collections::BTreeSet::new();
    let raw = snap.raw_path("jsonapi");
    if raw.exists() {
        for rec in JsonlReader::open(&raw)? {
            let rec = rec?;
            let uid = rec
                .get("uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let pt = rec.get("portal_type").and_then(Value::as_str).unwrap_or("");
            let catalog = Some(catalog_for(&catalog_of, pt, &data.catalogs));
            let r = rest.remove(&uid).unwrap_or(Value::Null);
            seen.insert(uid);
            data.objects.push(site_object(rec, catalog, None, &r));
        }
    }
    // Objects v1 could not read (the real `Setup`): a minimal record from the objects table.
    for row in TableReader::open(&snap.dir, &OBJECTS)? {
        let row = row?;
        let uid = row[0].as_str().unwrap_or("").to_string();
        if seen.contains(&uid) {
            continue;
        }
        let s = |i: usize| row[i].as_str().map(str::to_string);
        let record = json!({
            "uid": uid, "portal_type": s(1), "path": s(2), "parent_uid": s(3),
            "parent_path": s(4), "id": s(5), "title": s(6), "created": s(7),
            "modified": s(8), "review_state": s(9),
        });
        let error = fallback_errors
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| "the object cannot be read completely".into());
        let r = rest.remove(&uid).unwrap_or(Value::Null);
        data.objects
            .push(site_object(record, None, Some(error), &r));
    }
    read_blobs(&snap, &mut data)?;
    Ok(data)
}

fn site_object(
    record: Value,
    catalog: Option<String>,
    v1_error: Option<String>,
    rest: &Value,
) -> SiteObject {
    let part = |k: &str| rest.get(k).filter(|v| !v.is_null()).cloned();
    SiteObject {
        record,
        catalog,
        v1_error,
        restapi: part("content"),
        history: part("history"),
        sharing: part("sharing"),
    }
}

fn read_restapi(snap: &Snapshot) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    let path = snap.raw_path("restapi");
    if path.exists() {
        for line in JsonlReader::open(&path)? {
            let line = line?;
            if let Some(uid) = line.get("uid").and_then(Value::as_str) {
                out.insert(uid.to_string(), line.clone());
            }
        }
    }
    Ok(out)
}

fn read_site_stream(snap: &Snapshot, data: &mut SiteData) -> Result<()> {
    let path = snap.raw_path("site");
    if !path.exists() {
        return Ok(());
    }
    for line in JsonlReader::open(&path)? {
        let line = line?;
        let items = line.get("items").cloned().unwrap_or(Value::Null);
        let list = || items.as_array().cloned().unwrap_or_default();
        match line.get("kind").and_then(Value::as_str) {
            Some("catalogs") => data.catalogs = list(),
            Some("users") => data.users = list(),
            Some("restapi_users") => data.restapi_users = list(),
            Some("groups") => data.restapi_groups = list(),
            Some("registry") => data.registry = list(),
            Some("settings") => {
                if let Value::Object(m) = &items {
                    for (k, v) in m {
                        let answer = match (v.get("Value"), v.get("Error")) {
                            (Some(val), _) => Ok(val.clone()),
                            (_, Some(e)) => Err(e.as_str().unwrap_or("error").to_string()),
                            _ => continue,
                        };
                        data.settings.insert(k.clone(), answer);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// portal_type -> the catalogs that list it, in `/catalogs` order.
fn catalog_map(catalogs: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in catalogs {
        let Some(id) = c.get("id").and_then(Value::as_str) else {
            continue;
        };
        for t in c
            .get("portal_types")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = t.as_str() {
                out.entry(t.to_string()).or_default().push(id.to_string());
            }
        }
    }
    out
}

/// The catalog the real site searches a type in: its first SENAITE catalog, else (Dexterity
/// types, which no catalog lists) `senaite_catalog_setup`, else `portal_catalog`.
fn catalog_for(map: &BTreeMap<String, Vec<String>>, pt: &str, catalogs: &[Value]) -> String {
    if let Some(list) = map.get(pt) {
        if let Some(c) = list
            .iter()
            .find(|c| !SECONDARY_CATALOGS.contains(&c.as_str()))
        {
            return c.clone();
        }
        if let Some(c) = list.first() {
            return c.clone();
        }
    }
    let has = |id: &str| {
        catalogs
            .iter()
            .any(|c| c.get("id").and_then(Value::as_str) == Some(id))
    };
    if has("senaite_catalog_setup") {
        "senaite_catalog_setup".into()
    } else {
        "portal_catalog".into()
    }
}

fn fallback_messages(m: &crate::snapshot::Manifest) -> BTreeMap<String, String> {
    m.notes
        .iter()
        .filter(|n| n.kind == "fallback")
        .map(|n| {
            // "senaite.jsonapi could not read the object (<error>); plone.restapi used"
            let inner = n
                .message
                .split_once("returned HTTP 500: ")
                .map(|(_, r)| r.trim_end_matches("); plone.restapi used").to_string())
                .unwrap_or_else(|| n.message.clone());
            (n.subject.clone(), inner)
        })
        .collect()
}

fn read_blobs(snap: &Snapshot, data: &mut SiteData) -> Result<()> {
    let mut wanted: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for row in TableReader::open(&snap.dir, &BLOBS)? {
        let row = row?;
        let s = |i: usize| row[i].as_str().unwrap_or("").to_string();
        wanted.entry(s(0)).or_default().push((s(1), s(3), s(5)));
    }
    if wanted.is_empty() {
        return Ok(());
    }
    for row in TableReader::open(&snap.dir, &OBJECTS)? {
        let row = row?;
        let uid = row[0].as_str().unwrap_or("");
        let Some(list) = wanted.get(uid) else {
            continue;
        };
        let fields: Value =
            serde_json::from_str(row[11].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
        for (field, content_type, sha) in list {
            let Some(download) = fields
                .get(field)
                .and_then(|f| f.get("download"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let path = blobs::blob_path(&snap.dir, sha);
            if !path.is_file() {
                return Err(Error::snapshot(
                    &path,
                    format!("blob of {uid} field {field} is missing"),
                ));
            }
            data.blobs.insert(
                download.to_string(),
                SiteBlob {
                    content_type: content_type.clone(),
                    body: BlobBody::File(path),
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dexterity_types_fall_back_to_the_setup_catalog() {
        let cats = vec![
            json!({"id": "portal_catalog", "portal_types": ["Client", "BikaSetup"]}),
            json!({"id": "senaite_catalog_client", "portal_types": ["Client"]}),
            json!({"id": "senaite_catalog_setup", "portal_types": []}),
        ];
        let map = catalog_map(&cats);
        assert_eq!(catalog_for(&map, "Client", &cats), "senaite_catalog_client");
        assert_eq!(catalog_for(&map, "BikaSetup", &cats), "portal_catalog");
        assert_eq!(
            catalog_for(&map, "SampleType", &cats),
            "senaite_catalog_setup"
        );
    }
}
