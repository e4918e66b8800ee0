//! Building a sandbox site from a snapshot: every object from its table rows (grouped into the
//! load records `sync/apply` receives, then rebuilt by `sandbox::rows`, the same code the
//! receiver runs), the site-wide records and catalogs from `raw/site`, and the blob files behind
//! each file field's download path. Serving a snapshot and extracting it again therefore
//! reproduces its tables (the round-trip the tests check), and so does applying its records to an
//! empty sandbox.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::sandbox::data::{BlobBody, SiteBlob, SiteData};
use crate::sandbox::rows;
use crate::snapshot::jsonl::JsonlReader;
use crate::snapshot::table::OBJECTS;
use crate::snapshot::{Snapshot, blobs, manifest_site_path};
use crate::source::client::origin_of;

/// Catalogs a type is never primarily served from, though `/catalogs` lists it there.
const SECONDARY_CATALOGS: &[&str] = &["portal_catalog", "senaite_catalog_auditlog", "uid_catalog"];

/// Loads the site a snapshot describes.
///
/// # Errors
/// When the snapshot is incomplete, corrupt, or its tables or raw streams cannot be read, or a
/// blob a file field needs is missing.
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
    let fallback_errors = fallback_messages(m);
    for record in load_records(&snap)? {
        let uid = record.get("uid").and_then(Value::as_str).unwrap_or("");
        let pt = record.get("portal_type").and_then(Value::as_str);
        let catalog = Some(catalog_for(&catalog_of, pt.unwrap_or(""), &data.catalogs));
        let rebuilt = rows::site_object(&record, &data.recorded_origin, catalog)
            .map_err(|message| Error::snapshot(snap.table_path(OBJECTS.name), message))?;
        let mut object = rebuilt.object;
        if object.v1_error.is_some() {
            object.v1_error = Some(
                fallback_errors
                    .get(uid)
                    .cloned()
                    .unwrap_or_else(|| rows::UNREADABLE.into()),
            );
        }
        for d in rebuilt.downloads {
            let path = blobs::blob_path(&snap.dir, &d.sha256);
            if !path.is_file() {
                return Err(Error::snapshot(
                    &path,
                    format!("blob of {uid} field {} is missing", d.field),
                ));
            }
            data.blobs.insert(
                d.path,
                SiteBlob {
                    content_type: d.content_type,
                    body: BlobBody::File(path),
                },
            );
        }
        data.objects.push(object);
    }
    Ok(data)
}

/// Every object of a snapshot as the load record `sync/apply` receives (`companion/PROTOCOL.md`):
/// its `objects` row with the JSON columns parsed, its rows of the other object tables (without
/// `uid`), and `load_hash`, the sha256 of the canonical JSON of the rest. Sorted by uid; paths
/// are the snapshot's own.
///
/// # Errors
/// When a table cannot be read.
pub fn load_records(snap: &Snapshot) -> Result<Vec<Value>> {
    // The loader's own builder, so the double applies exactly what `load` sends.
    let set = crate::load::records::read(snap, &manifest_site_path(&snap.manifest))?;
    let mut records: Vec<_> = set.records.into_iter().collect();
    records.sort_by(|a, b| a.uid.cmp(&b.uid));
    Ok(records.iter().map(|r| r.value()).collect())
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
pub(crate) fn catalog_map(catalogs: &[Value]) -> BTreeMap<String, Vec<String>> {
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
pub(crate) fn catalog_for(
    map: &BTreeMap<String, Vec<String>>,
    pt: &str,
    catalogs: &[Value],
) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
