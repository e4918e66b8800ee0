//! From one object's snapshot rows back to what a SENAITE site answers about it: the inverse of
//! `snapshot::record::object_rows`. The input is a load record (`companion/PROTOCOL.md`, "POST
//! sync/apply": the `objects` row with `fields`/`sources` parsed plus the object's
//! `workflow_history`, `workflow_states`, `local_roles` and `blobs` rows); the output is a
//! [`SiteObject`] whose v1 record, plone.restapi body, `@history` and `@sharing` extract turns into
//! exactly those rows again. Both the snapshot loader (`sandbox::load`) and the receiver's
//! `sync/apply` build objects here, so the snapshot round-trip test guards the receiver too.
//! Pure: no I/O, no site state.

use serde_json::{Map, Value, json};

use super::data::SiteObject;
use super::site::resource_name;

/// A v1 error for objects whose record came from plone.restapi, when nothing better is known.
pub(crate) const UNREADABLE: &str = "the object cannot be read completely";

/// Keys whose string values are URLs; their origin was stripped in the snapshot and is put back.
const URL_KEYS: &[&str] = &["url", "api_url", "parent_url", "download", "@id"];

/// An object rebuilt from its rows.
#[derive(Debug, Clone)]
pub(crate) struct Rebuilt {
    /// What the site serves.
    pub(crate) object: SiteObject,
    /// File-field downloads the object's fields point at.
    pub(crate) downloads: Vec<Download>,
}

/// One file field's download.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Download {
    /// The field.
    pub(crate) field: String,
    /// URL path of the download (`/senaite/.../at_download/AttachmentFile`).
    pub(crate) path: String,
    /// sha256 of the bytes.
    pub(crate) sha256: String,
    /// MIME type.
    pub(crate) content_type: String,
}

fn text<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

fn rows<'a>(m: &'a Map<String, Value>, key: &str) -> Vec<&'a Map<String, Value>> {
    m.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

/// Rebuilds one object from its load record. `origin` (`http://127.0.0.1:PORT`, or the recorded
/// origin the site rewrites when serving) is put in front of URL values; `catalog` is the
/// catalog that indexes the object.
///
/// # Errors
/// A message naming the uid when the record is not an object or lacks `uid`, `portal_type` or
/// `path`.
pub(crate) fn site_object(
    record: &Value,
    origin: &str,
    catalog: Option<String>,
) -> Result<Rebuilt, String> {
    let rec = record
        .as_object()
        .ok_or_else(|| "a record must be a JSON object".to_owned())?;
    let uid = text(rec, "uid").filter(|u| !u.is_empty());
    let uid = uid.ok_or_else(|| "the record has no uid".to_owned())?;
    let need = |key: &str| {
        text(rec, key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("record {uid} has no {key}"))
    };
    let (portal_type, path) = (need("portal_type")?, need("path")?);
    let mut fields = match rec.get("fields") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(format!("record {uid}: fields is not a JSON object")),
    };
    let sources = rec.get("sources").and_then(Value::as_object);
    let restapi_only = sources.and_then(|s| text(s, "record")) == Some("restapi");
    let filled: Vec<String> = sources
        .and_then(|s| s.get("restapi"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let downloads = take_blob_facts(rec, &mut fields);
    // The loader rewrites the identity columns to the destination's site; the copies inside
    // `fields` follow them, as the destination would report its own paths.
    for key in ["path", "parent_path"] {
        if let (Some(v), true) = (rec.get(key), fields.contains_key(key)) {
            fields.insert(key.to_owned(), v.clone());
        }
    }
    let object = if restapi_only {
        restapi_object(rec, uid, portal_type, path, fields, origin)
    } else {
        v1_object(
            rec,
            uid,
            portal_type,
            path,
            fields,
            &filled,
            origin,
            catalog,
        )
    };
    Ok(Rebuilt { object, downloads })
}

/// Removes what extract added to file-field values (`sha256`) and lists the downloads.
fn take_blob_facts(rec: &Map<String, Value>, fields: &mut Map<String, Value>) -> Vec<Download> {
    let mut out = Vec::new();
    for b in rows(rec, "blobs") {
        let (Some(field), Some(sha)) = (text(b, "field"), text(b, "sha256")) else {
            continue;
        };
        let Some(Value::Object(info)) = fields.get_mut(field) else {
            continue;
        };
        info.remove("sha256");
        let Some(download) = info.get("download").and_then(Value::as_str) else {
            continue;
        };
        let content_type = text(b, "content_type")
            .or_else(|| text(info, "content_type"))
            .or_else(|| text(info, "content-type"))
            .unwrap_or("application/octet-stream");
        out.push(Download {
            field: field.to_owned(),
            path: download.to_owned(),
            sha256: sha.to_owned(),
            content_type: content_type.to_owned(),
        });
    }
    out
}

/// An object senaite.jsonapi reads: its v1 record, plus a plone.restapi body holding what v1
/// loses (the values `sources.restapi` names).
#[allow(clippy::too_many_arguments)]
fn v1_object(
    rec: &Map<String, Value>,
    uid: &str,
    portal_type: &str,
    path: &str,
    mut fields: Map<String, Value>,
    filled: &[String],
    origin: &str,
    catalog: Option<String>,
) -> SiteObject {
    let mut rest = Map::new();
    rest.insert("@id".into(), Value::String(format!("{origin}{path}")));
    rest.insert("@type".into(), Value::String(portal_type.to_owned()));
    rest.insert("UID".into(), Value::String(uid.to_owned()));
    for key in filled {
        if let Some(v) = fields.insert(key.clone(), Value::Null) {
            rest.insert(key.clone(), v);
        }
    }
    let site_path = format!("/{}", path.split('/').nth(1).unwrap_or(""));
    fields.insert("url".into(), Value::String(path.to_owned()));
    fields.insert(
        "api_url".into(),
        Value::String(format!(
            "{site_path}/@@API/senaite/v1/{}/{uid}",
            resource_name(portal_type)
        )),
    );
    if let Some(parent) = text(rec, "parent_path") {
        fields.insert("parent_url".into(), Value::String(parent.to_owned()));
    }
    let (workflow_info, history) = workflow(rec);
    if let Some(info) = workflow_info {
        fields.insert("workflow_info".into(), info);
    }
    let mut record = Value::Object(fields);
    let mut restapi = Value::Object(rest);
    add_origin(&mut record, origin, false);
    add_origin(&mut restapi, origin, false);
    SiteObject {
        record,
        catalog,
        v1_error: None,
        restapi: Some(restapi),
        history,
        sharing: sharing(rec),
    }
}

/// An object only plone.restapi reads (the real `Setup`): a minimal v1 record for listings and
/// catalogs, complete reads failing, and its fields as the plone.restapi body.
fn restapi_object(
    rec: &Map<String, Value>,
    uid: &str,
    portal_type: &str,
    path: &str,
    mut fields: Map<String, Value>,
    origin: &str,
) -> SiteObject {
    let col = |k: &str| rec.get(k).cloned().unwrap_or(Value::Null);
    let record = json!({
        "uid": uid, "portal_type": portal_type, "path": path, "parent_uid": col("parent_uid"),
        "parent_path": col("parent_path"), "id": col("id"), "title": col("title"),
        "created": col("created"), "modified": col("modified"),
        "review_state": col("review_state"),
    });
    // extract took `uid` and `portal_type` from these two keys.
    let own_uid = fields.remove("uid").unwrap_or_else(|| Value::from(uid));
    let own_type = fields
        .remove("portal_type")
        .unwrap_or_else(|| Value::from(portal_type));
    fields.insert("@id".into(), Value::String(path.to_owned()));
    fields.insert("@type".into(), own_type);
    fields.insert("UID".into(), own_uid);
    let mut restapi = Value::Object(fields);
    add_origin(&mut restapi, origin, false);
    let (_, history) = workflow(rec);
    SiteObject {
        record,
        catalog: None,
        v1_error: Some(UNREADABLE.to_owned()),
        restapi: Some(restapi),
        history,
        sharing: sharing(rec),
    }
}

/// Puts `origin` in front of path values of URL keys (recursively).
fn add_origin(value: &mut Value, origin: &str, is_url: bool) {
    match value {
        Value::String(s) if is_url && s.starts_with('/') && !origin.is_empty() => {
            *s = format!("{origin}{s}");
        }
        Value::Array(items) => items.iter_mut().for_each(|v| add_origin(v, origin, is_url)),
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                add_origin(v, origin, URL_KEYS.contains(&k.as_str()));
            }
        }
        _ => {}
    }
}

/// The v1 `workflow_info` (primary workflow first) and the plone.restapi `@history` that give
/// back the history rows: `@history` exists when some rows carry a more exact `time` than
/// `time_v1` (extract matched it against the primary workflow only).
fn workflow(rec: &Map<String, Value>) -> (Option<Value>, Option<Value>) {
    let states = rows(rec, "workflow_states");
    let history = rows(rec, "workflow_history");
    if states.is_empty() && history.is_empty() {
        return (None, None);
    }
    let mut workflows: Vec<&str> = states.iter().filter_map(|s| text(s, "workflow")).collect();
    for h in &history {
        if let Some(w) = text(h, "workflow").filter(|w| !workflows.contains(w)) {
            workflows.push(w);
        }
    }
    let entries_of = |wf: &str| {
        let mut e: Vec<&Map<String, Value>> = history
            .iter()
            .copied()
            .filter(|h| text(h, "workflow") == Some(wf))
            .collect();
        e.sort_by_key(|h| h.get("seq").and_then(Value::as_i64).unwrap_or(0));
        e
    };
    let is_exact = |h: &&Map<String, Value>| text(h, "time") != text(h, "time_v1");
    let exact = workflows
        .iter()
        .position(|w| entries_of(w).iter().any(is_exact));
    let state_of = |wf: &str| {
        states
            .iter()
            .find(|s| text(s, "workflow") == Some(wf))
            .and_then(|s| text(s, "review_state"))
    };
    let primary = exact.or_else(|| {
        let object_state = text(rec, "review_state");
        workflows
            .iter()
            .position(|w| object_state.is_some() && state_of(w) == object_state)
    });
    if let Some(i) = primary {
        let w = workflows.remove(i);
        workflows.insert(0, w);
    }
    let mut info = Vec::new();
    for wf in &workflows {
        let state = states.iter().find(|s| text(s, "workflow") == Some(wf));
        let col = |k: &str| state.and_then(|s| s.get(k)).cloned().unwrap_or(Value::Null);
        let review_history: Vec<Value> = entries_of(wf).into_iter().map(v1_entry).collect();
        info.push(json!({"workflow": wf, "review_state": col("review_state"),
            "status": col("status"), "review_history": review_history, "transitions": []}));
    }
    let rest_history = exact.map(|_| {
        let entries: Vec<Value> = entries_of(workflows[0])
            .into_iter()
            .map(rest_entry)
            .collect();
        Value::Array(entries)
    });
    (Some(Value::Array(info)), rest_history)
}

/// A v1 review-history entry: the extra variables, the five columns, `time` from `time_v1`.
fn v1_entry(h: &Map<String, Value>) -> Value {
    let mut e = match h.get("extra") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    e.remove("restapi_action");
    for k in ["action", "actor", "comments", "review_state"] {
        e.insert(k.into(), h.get(k).cloned().unwrap_or(Value::Null));
    }
    e.insert(
        "time".into(),
        h.get("time_v1").cloned().unwrap_or(Value::Null),
    );
    Value::Object(e)
}

/// A plone.restapi `@history` workflow entry with the exact time. Its action is what extract
/// kept as `restapi_action` where v1 had none (and null where neither had one).
fn rest_entry(h: &Map<String, Value>) -> Value {
    let action = h
        .get("extra")
        .and_then(|x| x.get("restapi_action"))
        .or_else(|| h.get("action"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({"type": "workflow", "action": action, "actor": h.get("actor"),
        "comments": h.get("comments"), "review_state": h.get("review_state"),
        "time": h.get("time")})
}

/// plone.restapi `@sharing` from the local-roles rows (`None` when there are none).
fn sharing(rec: &Map<String, Value>) -> Option<Value> {
    let rows = rows(rec, "local_roles");
    let first = rows.first()?;
    let mut entries = Vec::new();
    for r in &rows {
        let Some(principal) = text(r, "principal").filter(|p| !p.is_empty()) else {
            continue;
        };
        let mut roles = Map::new();
        for (key, value) in [
            ("acquired_roles", json!("acquired")),
            ("roles", json!(true)),
        ] {
            for role in r.get(key).and_then(Value::as_array).into_iter().flatten() {
                if let Some(role) = role.as_str() {
                    roles.insert(role.to_owned(), value.clone());
                }
            }
        }
        entries.push(json!({"id": principal, "title": principal,
            "type": r.get("principal_type").cloned().unwrap_or(Value::Null), "roles": roles}));
    }
    let mut out = Map::new();
    out.insert("available_roles".into(), json!([]));
    out.insert("entries".into(), Value::Array(entries));
    if let Some(inherit) = first.get("inherit").filter(|v| v.is_boolean()) {
        out.insert("inherit".into(), inherit.clone());
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::record::{BlobRef, ObjectCapture, object_rows};
    use crate::snapshot::table::{
        BLOBS, LOCAL_ROLES, OBJECTS, TableDef, WORKFLOW_HISTORY, WORKFLOW_STATES, row_to_json,
    };

    const ORIGIN: &str = "http://127.0.0.1:9";

    /// The load record of a capture's rows, as `load::records` builds it.
    fn record_of(rows: &crate::snapshot::record::ObjectRows) -> Value {
        let mut obj = row_to_json(&OBJECTS, rows.object.clone());
        let strip = |def: &TableDef, list: &[Vec<crate::snapshot::table::Cell>]| {
            let items: Vec<Value> = list
                .iter()
                .map(|r| {
                    let mut m = row_to_json(def, r.clone());
                    m.remove("uid");
                    Value::Object(m)
                })
                .collect();
            Value::Array(items)
        };
        obj.insert(
            "workflow_history".into(),
            strip(&WORKFLOW_HISTORY, &rows.history),
        );
        obj.insert(
            "workflow_states".into(),
            strip(&WORKFLOW_STATES, &rows.states),
        );
        obj.insert("local_roles".into(), strip(&LOCAL_ROLES, &rows.local_roles));
        obj.insert("blobs".into(), strip(&BLOBS, &rows.blobs));
        Value::Object(obj)
    }

    /// What extract would capture from a rebuilt object.
    fn capture_of(b: &Rebuilt, blobs: Vec<BlobRef>) -> ObjectCapture {
        let o = &b.object;
        let uid = o.record["uid"].as_str().unwrap().to_owned();
        ObjectCapture {
            uid,
            portal_type: o.record["portal_type"].as_str().unwrap().to_owned(),
            path: o.record["path"].as_str().unwrap().to_owned(),
            v1: o.v1_error.is_none().then(|| o.record.clone()),
            v1_error: o.v1_error.clone(),
            restapi: o.restapi.clone(),
            history: o.history.clone(),
            sharing: o.sharing.clone(),
            blobs,
        }
    }

    fn round_trip(cap: ObjectCapture) {
        let blobs = cap.blobs.clone();
        let rows = object_rows(cap, ORIGIN);
        let rebuilt = site_object(&record_of(&rows), ORIGIN, None).unwrap();
        let again = object_rows(capture_of(&rebuilt, blobs), ORIGIN);
        assert_eq!(again.object, rows.object);
        assert_eq!(again.history, rows.history);
        assert_eq!(again.states, rows.states);
        assert_eq!(again.local_roles, rows.local_roles);
        assert_eq!(again.blobs, rows.blobs);
    }

    fn dx_capture() -> ObjectCapture {
        ObjectCapture {
            uid: "be1d4efe6ab24f7a833be850269fb335".into(),
            portal_type: "SampleType".into(),
            path: "/senaite/setup/sampletypes/sampletype-1".into(),
            v1: Some(json!({
                "uid": "be1d4efe6ab24f7a833be850269fb335", "portal_type": "SampleType",
                "path": "/senaite/setup/sampletypes/sampletype-1",
                "parent_path": "/senaite/setup/sampletypes", "id": "sampletype-1",
                "url": "http://127.0.0.1:9/senaite/setup/sampletypes/sampletype-1",
                "hazardous": null, "retention_period": null, "modified": "2026-11-26T15:25:07+00:00",
                "ref": {"uid": "2222", "url": "http://127.0.0.1:9/senaite/x"},
                "workflow_info": [
                    {"workflow": "w_b", "review_state": "active", "status": "Active",
                     "review_history": [
                        {"action": null, "actor": "admin", "comments": "", "review_state": "active",
                         "time": "2026-11-26 15:25:07", "custom": 3},
                        {"action": "deactivate", "actor": "admin", "comments": "x",
                         "review_state": "active", "time": "2026-11-26 15:25:09"}]},
                    {"workflow": "w_a", "review_state": "x", "status": null,
                     "review_history": [{"action": null, "review_state": "x",
                        "time": "2026-11-26 15:25:07"}]}]
            })),
            restapi: Some(json!({"@id": "x", "UID": "be1d", "hazardous": false,
                "retention_period": 2592000.0, "items": [],
                "file": {"download": "http://127.0.0.1:9/senaite/f/@@download/file",
                         "filename": "a.txt", "content-type": "text/plain", "size": 3}})),
            history: Some(json!([
                {"action": "Create", "type": "workflow", "review_state": "active",
                 "time": "2026-11-26T15:25:07.609503"},
                {"action": "Deactivate", "type": "workflow", "review_state": "active",
                 "time": "2026-11-26T15:25:09.1"}])),
            sharing: Some(json!({"inherit": false, "entries": [
                {"id": "bob", "type": "user", "roles": {"Owner": true, "Reader": "acquired"}},
                {"id": "ann", "type": "group", "roles": {"Editor": true}}]})),
            ..Default::default()
        }
    }

    #[test]
    fn dexterity_rows_come_back_unchanged() {
        let mut cap = dx_capture();
        cap.v1.as_mut().unwrap()["file"] = Value::Null;
        cap.blobs = vec![BlobRef {
            field: "file".into(),
            filename: Some("a.txt".into()),
            content_type: Some("text/plain".into()),
            sha256: "ab".repeat(32),
            size: 3,
        }];
        round_trip(cap);
    }

    #[test]
    fn restapi_only_and_marker_rows_come_back_unchanged() {
        round_trip(ObjectCapture {
            uid: "u".repeat(32),
            portal_type: "Setup".into(),
            path: "/senaite/setup".into(),
            v1_error: Some("boom".into()),
            restapi: Some(json!({"@type": "Setup", "UID": "u", "id": "setup",
                "title": "Setup", "email_body": {"data": "<p>x</p>"}, "items": [1]})),
            sharing: Some(json!({"inherit": false, "entries": []})),
            ..Default::default()
        });
    }

    #[test]
    fn without_exact_history_the_v1_times_stay() {
        let mut cap = dx_capture();
        cap.history = None;
        cap.sharing = None;
        round_trip(cap);
    }

    #[test]
    fn downloads_and_urls_are_served_from_the_origin() {
        let mut cap = dx_capture();
        cap.v1.as_mut().unwrap()["file"] = Value::Null;
        cap.blobs = vec![BlobRef {
            field: "file".into(),
            filename: None,
            content_type: None,
            sha256: "cd".repeat(32),
            size: 3,
        }];
        let rows = object_rows(cap, ORIGIN);
        let b = site_object(&record_of(&rows), "http://h:1", Some("c".into())).unwrap();
        assert_eq!(b.downloads[0].path, "/senaite/f/@@download/file");
        assert_eq!(b.downloads[0].content_type, "text/plain");
        let rest = b.object.restapi.unwrap();
        assert_eq!(
            rest["file"]["download"],
            "http://h:1/senaite/f/@@download/file"
        );
        assert!(rest["file"].get("sha256").is_none());
        assert_eq!(b.object.record["ref"]["url"], "http://h:1/senaite/x");
        assert_eq!(b.object.record["workflow_info"][0]["workflow"], "w_b");
    }

    #[test]
    fn records_without_identity_are_refused() {
        assert!(site_object(&json!([]), "", None).is_err());
        let e = site_object(&json!({"uid": "u1"}), "", None).unwrap_err();
        assert!(e.contains("u1") && e.contains("portal_type"), "{e}");
    }
}
