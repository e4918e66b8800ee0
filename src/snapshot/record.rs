//! From API answers to table rows. An [`ObjectCapture`] is everything extract read about one
//! object (the complete senaite.jsonapi record, and where v1 loses values the plone.restapi
//! serialization, `@history` and `@sharing`, plus stored blobs); [`object_rows`] turns it into the
//! rows of the `objects`, `workflow_history`, `workflow_states`, `local_roles` and `blobs` tables.
//! Pure functions: no I/O, no clock, so equal input gives equal rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::jsonx;
use crate::snapshot::table::Cell;

/// A file field value stored in the blob store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobRef {
    /// Field name.
    pub field: String,
    /// File name the source gives.
    pub filename: Option<String>,
    /// MIME type the source gives.
    pub content_type: Option<String>,
    /// Hex sha256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Everything read about one object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ObjectCapture {
    /// UID.
    pub uid: String,
    /// portal_type from the listing.
    pub portal_type: String,
    /// Physical path from the listing.
    pub path: String,
    /// The complete v1 record (`complete=yes&workflow=yes`), verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1: Option<Value>,
    /// Why the v1 record could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1_error: Option<String>,
    /// plone.restapi `GET <path>` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restapi: Option<Value>,
    /// plone.restapi `GET <path>/@history` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Value>,
    /// plone.restapi `GET <path>/@sharing` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<Value>,
    /// Stored blobs of file fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<BlobRef>,
}

/// The rows of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectRows {
    /// The `objects` row.
    pub object: Vec<Cell>,
    /// `workflow_history` rows.
    pub history: Vec<Vec<Cell>>,
    /// `workflow_states` rows.
    pub states: Vec<Vec<Cell>>,
    /// `local_roles` rows.
    pub local_roles: Vec<Vec<Cell>>,
    /// `blobs` rows.
    pub blobs: Vec<Vec<Cell>>,
    /// Statements about losses found while building the rows (kind, message).
    pub notes: Vec<(String, String)>,
}

/// Keys of a v1 record that are not field data: runtime, URLs (derivable from the path and
/// specific to the host that served them) and the workflow block (its own tables).
pub const V1_NON_FIELD_KEYS: &[&str] =
    &["_runtime", "workflow_info", "url", "api_url", "parent_url"];

/// Keys of a plone.restapi serialization that describe presentation, not data.
pub const RESTAPI_NON_FIELD_KEYS: &[&str] = &[
    "@components",
    "@id",
    "@type",
    "UID",
    "batching",
    "is_folderish",
    "items",
    "items_total",
    "lock",
    "next_item",
    "parent",
    "previous_item",
    "version",
    "layout",
    "allow_discussion",
];

/// Builds the rows of one object. `origin` is the scheme://host:port the answers' URLs use; it is
/// stripped from every string in `fields` so that equal data from different hosts hashes equal.
/// The capture is consumed: its v1 record becomes `fields` in place, without a copy (this runs
/// once per object of a snapshot).
pub fn object_rows(mut cap: ObjectCapture, origin: &str) -> ObjectRows {
    let mut out = ObjectRows::default();
    let mut sources: BTreeMap<String, Value> = BTreeMap::new();
    let v1 = cap.v1.take();
    let has_v1 = v1.is_some();
    let mut workflow_info = None;
    let mut fields = match v1 {
        Some(Value::Object(mut rec)) => {
            workflow_info = rec.remove("workflow_info");
            for k in V1_NON_FIELD_KEYS {
                rec.remove(*k);
            }
            rec
        }
        _ => {
            sources.insert("record".into(), Value::from("restapi"));
            restapi_fields(cap.restapi.as_ref())
        }
    };
    if has_v1 {
        let filled = fill_from_restapi(&mut fields, cap.restapi.as_ref());
        if !filled.is_empty() {
            sources.insert("restapi".into(), Value::from(filled));
        }
    }
    if let Some(err) = &cap.v1_error {
        out.notes.push((
            "fallback".into(),
            format!("senaite.jsonapi could not read the object ({err}); plone.restapi used"),
        ));
    }
    for b in &cap.blobs {
        let mut info = match fields.get(&b.field) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        info.insert("sha256".into(), Value::from(b.sha256.clone()));
        info.insert("size".into(), Value::from(b.size));
        fields.insert(b.field.clone(), Value::Object(info));
    }
    let mut fields = Value::Object(fields);
    strip_origin(&mut fields, origin);
    let ident = Identity::of(&cap, &fields, workflow_info.as_ref());
    let canonical = jsonx::canonical(&fields);
    let hash = jsonx::sha256_hex(&canonical);
    // serde_json writes UTF-8: the bytes move into the string without the copy (and scan) of
    // `from_utf8_lossy`.
    let text = String::from_utf8(canonical)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    out.object = vec![
        Cell::s(&cap.uid),
        Cell::s(ident.portal_type),
        Cell::s(ident.path),
        Cell::opt(ident.parent_uid),
        Cell::opt(ident.parent_path),
        Cell::s(ident.id),
        Cell::opt(ident.title),
        Cell::opt(ident.created),
        Cell::opt(ident.modified),
        Cell::opt(ident.review_state),
        Cell::s(hash),
        Cell::s(text),
        Cell::s(Value::Object(sources.into_iter().collect()).to_string()),
    ];
    workflow_rows(&cap, workflow_info.as_ref(), &mut out);
    sharing_rows(&cap, &mut out);
    for b in &cap.blobs {
        out.blobs.push(vec![
            Cell::s(&cap.uid),
            Cell::s(&b.field),
            Cell::opt(b.filename.clone()),
            Cell::opt(b.content_type.clone()),
            Cell::Int(Some(b.size as i64)),
            Cell::s(&b.sha256),
        ]);
    }
    out
}

fn restapi_fields(body: Option<&Value>) -> Map<String, Value> {
    let Some(Value::Object(m)) = body else {
        return Map::new();
    };
    let mut fields: Map<String, Value> = m
        .iter()
        .filter(|(k, _)| !RESTAPI_NON_FIELD_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(uid) = m.get("UID") {
        fields.insert("uid".into(), uid.clone());
    }
    if let Some(t) = m.get("@type") {
        fields.insert("portal_type".into(), t.clone());
    }
    fields
}

/// Where v1 answered `null` (or left a schema field out) and plone.restapi has a value, take it.
/// Returns the keys filled, sorted.
fn fill_from_restapi(fields: &mut Map<String, Value>, restapi: Option<&Value>) -> Vec<String> {
    let Some(Value::Object(rest)) = restapi else {
        return Vec::new();
    };
    let mut filled = Vec::new();
    for (k, v) in rest {
        if RESTAPI_NON_FIELD_KEYS.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        if matches!(fields.get(k), None | Some(Value::Null)) {
            fields.insert(k.clone(), v.clone());
            filled.push(k.clone());
        }
    }
    filled.sort();
    filled
}

/// Removes `origin` from the start of every string (recursively), leaving the path.
pub fn strip_origin(value: &mut Value, origin: &str) {
    if origin.is_empty() {
        return;
    }
    match value {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix(origin)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                *s = rest.to_string();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip_origin(v, origin)),
        Value::Object(m) => m.values_mut().for_each(|v| strip_origin(v, origin)),
        _ => {}
    }
}

struct Identity {
    portal_type: String,
    path: String,
    parent_uid: Option<String>,
    parent_path: Option<String>,
    id: String,
    title: Option<String>,
    created: Option<String>,
    modified: Option<String>,
    review_state: Option<String>,
}

impl Identity {
    fn of(cap: &ObjectCapture, fields: &Value, workflow_info: Option<&Value>) -> Identity {
        let s = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let path = s("path").unwrap_or_else(|| cap.path.clone());
        let parent_path = s("parent_path").or_else(|| parent_of(&path));
        Identity {
            portal_type: s("portal_type").unwrap_or_else(|| cap.portal_type.clone()),
            id: s("id").unwrap_or_else(|| path.rsplit('/').next().unwrap_or("").to_string()),
            path,
            parent_uid: s("parent_uid"),
            parent_path,
            title: s("title"),
            created: s("created"),
            modified: s("modified"),
            review_state: s("review_state").or_else(|| primary_state(workflow_info)),
        }
    }
}

fn parent_of(path: &str) -> Option<String> {
    path.rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .filter(|p| !p.is_empty())
}

fn primary_state(workflow_info: Option<&Value>) -> Option<String> {
    let wf = workflow_info?.as_array()?;
    wf.first()?
        .get("review_state")?
        .as_str()
        .map(str::to_string)
}

/// A review-history entry of plone.restapi `@history` (workflow entries only).
struct RestHistory {
    action: Option<String>,
    review_state: Option<String>,
    time: String,
}

fn rest_history(cap: &ObjectCapture) -> Vec<RestHistory> {
    let Some(Value::Array(items)) = &cap.history else {
        return Vec::new();
    };
    let mut out: Vec<RestHistory> = items
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("workflow"))
        .filter_map(|e| {
            Some(RestHistory {
                action: e.get("action").and_then(Value::as_str).map(str::to_string),
                review_state: e
                    .get("review_state")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                time: e.get("time")?.as_str()?.to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.time.cmp(&b.time));
    out
}

/// `2026-11-26T15:25:07.609503` and `2026-11-26 15:25:07` agree to the second.
fn same_second(exact: &str, v1: &str) -> bool {
    let a = exact.replace('T', " ");
    a.get(..19) == v1.get(..19)
}

fn workflow_rows(cap: &ObjectCapture, workflow_info: Option<&Value>, out: &mut ObjectRows) {
    let Some(Value::Array(wfs)) = workflow_info else {
        return;
    };
    let exact = rest_history(cap);
    for (wi, wf) in wfs.iter().enumerate() {
        let wf_id = wf.get("workflow").and_then(Value::as_str).unwrap_or("");
        out.states.push(vec![
            Cell::s(&cap.uid),
            Cell::s(wf_id),
            Cell::opt(wf.get("review_state").and_then(Value::as_str)),
            Cell::opt(wf.get("status").and_then(Value::as_str)),
        ]);
        let empty = Vec::new();
        let entries = wf
            .get("review_history")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        // plone.restapi's @history covers the primary workflow only.
        let matched = wi == 0 && cap.history.is_some() && history_matches(entries, &exact);
        if wi == 0 && cap.history.is_some() && !matched && !entries.is_empty() {
            out.notes.push((
                "history_precision".into(),
                "plone.restapi @history did not line up with the v1 review history; \
                 whole-second times kept"
                    .into(),
            ));
        }
        for (seq, e) in entries.iter().enumerate() {
            out.history.push(history_row(
                &cap.uid,
                wf_id,
                seq,
                e,
                matched.then(|| &exact[seq]),
            ));
        }
    }
}

fn history_matches(entries: &[Value], exact: &[RestHistory]) -> bool {
    entries.len() == exact.len()
        && entries.iter().zip(exact).all(|(e, x)| {
            let t = e.get("time").and_then(Value::as_str).unwrap_or("");
            let rs = e.get("review_state").and_then(Value::as_str);
            same_second(&x.time, t) && rs == x.review_state.as_deref()
        })
}

fn history_row(
    uid: &str,
    wf: &str,
    seq: usize,
    e: &Value,
    exact: Option<&RestHistory>,
) -> Vec<Cell> {
    let get = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    let time_v1 = get("time");
    let time = exact.map(|x| x.time.clone()).or_else(|| time_v1.clone());
    let mut extra = Map::new();
    if let Value::Object(m) = e {
        for (k, v) in m {
            if !["action", "actor", "comments", "review_state", "time"].contains(&k.as_str()) {
                extra.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(x) = exact
        && x.action.is_some()
        && get("action").is_none()
    {
        extra.insert(
            "restapi_action".into(),
            Value::from(x.action.clone().unwrap_or_default()),
        );
    }
    vec![
        Cell::s(uid),
        Cell::s(wf),
        Cell::Int(Some(seq as i64)),
        Cell::opt(get("action")),
        Cell::opt(get("actor")),
        Cell::opt(get("comments")),
        Cell::opt(get("review_state")),
        Cell::opt(time),
        Cell::opt(time_v1),
        Cell::s(Value::Object(extra).to_string()),
    ]
}

fn sharing_rows(cap: &ObjectCapture, out: &mut ObjectRows) {
    let Some(Value::Object(sh)) = &cap.sharing else {
        return;
    };
    let inherit = sh.get("inherit").and_then(Value::as_bool);
    let empty = Vec::new();
    let entries = sh
        .get("entries")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    for e in entries {
        let Some(principal) = e.get("id").and_then(Value::as_str) else {
            continue;
        };
        let mut roles = Vec::new();
        let mut acquired = Vec::new();
        if let Some(Value::Object(rm)) = e.get("roles") {
            for (role, v) in rm {
                match v {
                    Value::Bool(true) => roles.push(role.clone()),
                    Value::String(s) if s == "acquired" => acquired.push(role.clone()),
                    _ => {}
                }
            }
        }
        if roles.is_empty() && acquired.is_empty() {
            continue;
        }
        rows.push(vec![
            Cell::s(&cap.uid),
            Cell::s(principal),
            Cell::opt(e.get("type").and_then(Value::as_str)),
            Cell::StrList(roles),
            Cell::StrList(acquired),
            Cell::Bool(inherit),
        ]);
    }
    if rows.is_empty() && inherit == Some(false) {
        // An object that blocks inheritance without local roles of its own: one marker row.
        rows.push(vec![
            Cell::s(&cap.uid),
            Cell::s(""),
            Cell::opt(None::<String>),
            Cell::StrList(vec![]),
            Cell::StrList(vec![]),
            Cell::Bool(Some(false)),
        ]);
    }
    rows.sort_by(|a, b| a[1].as_str().cmp(&b[1].as_str()));
    out.local_roles = rows;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_cap() -> ObjectCapture {
        ObjectCapture {
            uid: "be1d4efe6ab24f7a833be850269fb335".into(),
            portal_type: "SampleType".into(),
            path: "/senaite/setup/sampletypes/sampletype-1".into(),
            v1: Some(json!({
                "uid": "be1d4efe6ab24f7a833be850269fb335",
                "portal_type": "SampleType",
                "path": "/senaite/setup/sampletypes/sampletype-1",
                "parent_path": "/senaite/setup/sampletypes",
                "parent_uid": "11111111111111111111111111111111",
                "id": "sampletype-1",
                "title": "Water",
                "created": "2026-11-26T15:25:07+00:00",
                "modified": "2026-11-26T15:25:07+00:00",
                "review_state": "active",
                "url": "http://127.0.0.1:8081/senaite/setup/sampletypes/sampletype-1",
                "hazardous": null,
                "retention_period": null,
                "prefix": "W",
                "ref": {"uid": "2222", "url": "http://127.0.0.1:8081/senaite/x"},
                "_runtime": 0.1,
                "workflow_info": [{
                    "workflow": "senaite_deactivable_type_workflow",
                    "review_state": "active", "status": "Active",
                    "review_history": [{"action": null, "actor": "admin", "comments": "",
                        "review_state": "active", "time": "2026-11-26 15:25:07"}],
                    "transitions": [{"value": "deactivate"}]
                }]
            })),
            restapi: Some(json!({"@id": "x", "UID": "be1d", "hazardous": false,
                "retention_period": 2592000.0, "prefix": "W", "items": []})),
            history: Some(json!([{"action": "Create", "type": "workflow",
                "review_state": "active", "time": "2026-11-26T15:25:07.609503"}])),
            ..Default::default()
        }
    }

    #[test]
    fn restapi_fills_values_v1_loses() {
        let rows = object_rows(sample_cap(), "http://127.0.0.1:8081");
        let fields: Value = serde_json::from_str(rows.object[11].as_str().unwrap()).unwrap();
        assert_eq!(fields["hazardous"], json!(false));
        assert_eq!(fields["retention_period"], json!(2592000.0));
        assert_eq!(fields["ref"]["url"], json!("/senaite/x"));
        assert!(fields.get("url").is_none() && fields.get("workflow_info").is_none());
        let sources: Value = serde_json::from_str(rows.object[12].as_str().unwrap()).unwrap();
        assert_eq!(
            sources,
            json!({"restapi": ["hazardous", "retention_period"]})
        );
    }

    #[test]
    fn restapi_fills_fields_v1_leaves_out() {
        // A real 2.6 Supplier: v1 leaves its e-mail, phone and address out of the record.
        let mut cap = sample_cap();
        cap.restapi = Some(json!({"@id": "x", "UID": "be1d", "hazardous": false,
            "email": "sales@acme.example", "phone": "555",
            "address": [{"type": "physical", "city": "Cape Town"}], "items": [],
            "lock": {}, "layout": "view"}));
        let rows = object_rows(cap, "");
        let fields: Value = serde_json::from_str(rows.object[11].as_str().unwrap()).unwrap();
        assert_eq!(fields["email"], json!("sales@acme.example"));
        assert_eq!(fields["address"][0]["city"], json!("Cape Town"));
        assert!(fields.get("lock").is_none() && fields.get("layout").is_none());
        let sources: Value = serde_json::from_str(rows.object[12].as_str().unwrap()).unwrap();
        assert_eq!(
            sources,
            json!({"restapi": ["address", "email", "hazardous", "phone"]})
        );
    }

    #[test]
    fn exact_history_times_replace_whole_seconds() {
        let rows = object_rows(sample_cap(), "");
        assert_eq!(rows.history.len(), 1);
        assert_eq!(
            rows.history[0][7].as_str(),
            Some("2026-11-26T15:25:07.609503")
        );
        assert_eq!(rows.history[0][8].as_str(), Some("2026-11-26 15:25:07"));
        assert_eq!(rows.states[0][2].as_str(), Some("active"));
        assert!(rows.notes.is_empty());
    }

    #[test]
    fn mismatched_history_keeps_v1_and_says_so() {
        let mut cap = sample_cap();
        cap.history = Some(json!([{"type": "workflow", "review_state": "other",
            "time": "2026-11-26T15:25:07.609503"}]));
        let rows = object_rows(cap.clone(), "");
        assert_eq!(rows.history[0][7].as_str(), Some("2026-11-26 15:25:07"));
        assert_eq!(rows.notes[0].0, "history_precision");
    }

    #[test]
    fn same_content_from_another_host_hashes_equal() {
        let a = object_rows(sample_cap(), "http://127.0.0.1:8081");
        let mut cap = sample_cap();
        let text = serde_json::to_string(&cap.v1)
            .unwrap()
            .replace("127.0.0.1:8081", "localhost:9");
        cap.v1 = serde_json::from_str(&text).unwrap();
        let b = object_rows(cap.clone(), "http://localhost:9");
        assert_eq!(a.object, b.object);
    }

    #[test]
    fn restapi_only_object_uses_its_serialization() {
        let cap = ObjectCapture {
            uid: "u".repeat(32),
            portal_type: "Setup".into(),
            path: "/senaite/setup".into(),
            v1_error: Some("'unicode' object has no attribute 'output'".into()),
            restapi: Some(
                json!({"@type": "Setup", "UID": "u", "id": "setup", "title": "Setup",
                "email_body_sample_publication": {"data": "<p>x</p>"}, "items": [1]}),
            ),
            ..Default::default()
        };
        let rows = object_rows(cap.clone(), "");
        assert_eq!(rows.object[1].as_str(), Some("Setup"));
        assert_eq!(rows.object[5].as_str(), Some("setup"));
        assert_eq!(rows.object[4].as_str(), Some("/senaite"));
        let fields: Value = serde_json::from_str(rows.object[11].as_str().unwrap()).unwrap();
        assert!(fields.get("items").is_none());
        assert_eq!(rows.notes[0].0, "fallback");
    }

    #[test]
    fn sharing_rows_keep_local_and_acquired_roles() {
        let mut cap = sample_cap();
        cap.sharing = Some(json!({"inherit": true, "entries": [
            {"id": "bob", "type": "user", "roles": {"Owner": true, "Reader": "acquired", "Editor": false}},
            {"id": "nobody", "type": "user", "roles": {"Owner": false}}]}));
        let rows = object_rows(cap.clone(), "");
        assert_eq!(rows.local_roles.len(), 1);
        assert_eq!(rows.local_roles[0][3].as_list(), ["Owner"]);
        assert_eq!(rows.local_roles[0][4].as_list(), ["Reader"]);
    }
}
