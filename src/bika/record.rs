//! One object of BIKA LIMS 3.1's legacy `read`, turned into the record the snapshot's
//! `objects.fields` holds for a SENAITE source, so that the rest of the tool (inspect, diff,
//! transform) reads both alike. Pure functions: no I/O.
//!
//! - Identity keys the snapshot rows need are added: `uid` (from `UID`), `title` (an empty
//!   one filled from `Title`, as senaite.jsonapi's title is the object's `Title()`), `created` /
//!   `modified` (from the Archetypes `creation_date` / `modification_date`), `parent_path`
//!   and `parent_uid` (when the parent is in the snapshot).
//! - References: the legacy read writes the referenced objects' titles in the field and their
//!   UIDs in `<Field>_uid`. They become `{"uid", "title", "url"}` (a list for multi-valued
//!   fields), the shape of senaite.jsonapi's references plus the title; `url` is the
//!   referenced object's path when it is in the snapshot. The `<Field>_uid` key goes.
//! - An analysis request's `Analyses`, which the read inlines whole, becomes references to the
//!   analyses (each is an object of its own in the snapshot).
//! - Zope `DateTime` strings, anywhere in a value, become RFC 3339 (see `dates`).
//! - `transitions` (what the reading user may do now) is not data and is dropped; the states
//!   of every workflow become `workflow_info` (one entry per state variable present).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::bika::dates::zope_to_rfc3339;

/// Legacy keys that are not data of the object.
pub const NOT_DATA: &[&str] = &["transitions", "_authenticator"];

/// State variables of bika.lims 3.1's workflows, with the workflow that owns each; the
/// primary `review_state` workflow depends on the type ([`primary_workflow`]).
pub const STATE_VARIABLES: &[(&str, &str)] = &[
    ("review_state", ""),
    ("inactive_state", "bika_inactive_workflow"),
    ("cancellation_state", "bika_cancellation_workflow"),
    (
        "worksheetanalysis_review_state",
        "bika_worksheetanalysis_workflow",
    ),
];

/// The workflow whose state variable is `review_state` for `portal_type`, from bika.lims
/// 3.1.15's `profiles/default/workflows.xml`; `None` for types that file does not bind (Plone
/// folders and documents keep their site's default workflow, which the API does not name).
pub fn primary_workflow(portal_type: &str) -> Option<&'static str> {
    const SPECIAL: &[(&str, &str)] = &[
        ("ARImport", "bika_arimport_workflow"),
        ("Analysis", "bika_analysis_workflow"),
        ("AnalysisRequest", "bika_ar_workflow"),
        ("Batch", "bika_batch_workflow"),
        ("DuplicateAnalysis", "bika_duplicateanalysis_workflow"),
        ("ReferenceAnalysis", "bika_referenceanalysis_workflow"),
        ("ReferenceSample", "bika_referencesample_workflow"),
        ("RejectAnalysis", "bika_reject_analysis_workflow"),
        ("Sample", "bika_sample_workflow"),
        ("SamplePartition", "bika_sample_workflow"),
        ("SamplingRound", "bika_samplinground_workflow"),
        ("SupplyOrder", "bika_order_workflow"),
        ("Worksheet", "bika_worksheet_workflow"),
    ];
    const ONE_STATE: &[&str] = &[
        "ARPriority",
        "ARTemplate",
        "AnalysisCategory",
        "AnalysisProfile",
        "AnalysisService",
        "AnalysisSpec",
        "AttachmentType",
        "BatchLabel",
        "Calculation",
        "Client",
        "Contact",
        "Container",
        "ContainerType",
        "Department",
        "Instrument",
        "InstrumentMaintenanceTask",
        "InstrumentScheduledTask",
        "InstrumentType",
        "InvoiceBatch",
        "LabContact",
        "LabProduct",
        "Manufacturer",
        "Method",
        "Preservation",
        "Pricelist",
        "ReferenceDefinition",
        "Report",
        "SRTemplate",
        "SampleCondition",
        "SampleMatrix",
        "SamplePoint",
        "SampleType",
        "SamplingDeviation",
        "StorageLocation",
        "SubGroup",
        "Supplier",
        "SupplierContact",
        "WorksheetTemplate",
    ];
    SPECIAL
        .iter()
        .find(|(t, _)| *t == portal_type)
        .map(|(_, w)| *w)
        .or_else(|| {
            ONE_STATE
                .contains(&portal_type)
                .then_some("bika_one_state_workflow")
        })
}

/// What [`normalize`] needs to know of the rest of the snapshot.
#[derive(Debug, Default)]
pub struct Known {
    /// Path of every object by UID.
    pub path_of: HashMap<String, String>,
    /// UID of every object by path.
    pub uid_of: HashMap<String, String>,
}

/// The snapshot record of one legacy-read object.
pub fn normalize(raw: &Map<String, Value>, known: &Known) -> Map<String, Value> {
    let mut out = Map::new();
    let text = |k: &str| {
        raw.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let portal_type = text("portal_type").unwrap_or_default();
    for (k, v) in raw {
        if NOT_DATA.contains(&k.as_str()) {
            continue;
        }
        if let Some(base) = k.strip_suffix("_uid")
            && raw.contains_key(base)
        {
            continue;
        }
        let value = if let Some(uids) = raw.get(&format!("{k}_uid")) {
            reference(v, uids, known)
        } else if k == "Analyses" && portal_type == "AnalysisRequest" {
            inline_references(v, known)
        } else {
            dates_in(v.clone())
        };
        out.insert(k.clone(), value);
    }
    let uid = text("UID").unwrap_or_default();
    let path = text("path").unwrap_or_default();
    out.insert("uid".into(), Value::from(uid));
    if !out.contains_key("id") {
        let id = text("getId").unwrap_or_else(|| path.rsplit('/').next().unwrap_or("").into());
        out.insert("id".into(), Value::from(id));
    }
    // `Title()`, as senaite.jsonapi gives `title` (an Attachment's is its id in BIKA 3.1 and in
    // SENAITE 2.6 alike, whatever its stored title field holds), else the stored title.
    let title = text("Title").or_else(|| text("title"));
    out.insert("title".into(), title.map_or(Value::Null, Value::from));
    for (to, from) in [
        ("created", "creation_date"),
        ("modified", "modification_date"),
    ] {
        let v = raw
            .get(from)
            .map(|v| dates_in(v.clone()))
            .unwrap_or(Value::Null);
        out.insert(to.into(), v);
    }
    if let Some((parent, _)) = path.rsplit_once('/')
        && !parent.is_empty()
    {
        out.insert("parent_path".into(), Value::from(parent));
        if let Some(p) = known.uid_of.get(parent) {
            out.insert("parent_uid".into(), Value::from(p.clone()));
        }
    }
    out.insert(
        "workflow_info".into(),
        Value::Array(workflow_info(raw, &portal_type)),
    );
    out
}

/// One `workflow_info` entry per state variable the read has: `workflow` (the workflow id,
/// or the state variable's name where bika.lims' profile does not say), `review_state` (the
/// state) and `state_variable`. No `review_history`: the source cannot give it.
pub fn workflow_info(raw: &Map<String, Value>, portal_type: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (var, wf) in STATE_VARIABLES {
        let Some(state) = raw.get(*var).and_then(Value::as_str) else {
            continue;
        };
        let wf = if wf.is_empty() {
            primary_workflow(portal_type).unwrap_or(var)
        } else {
            wf
        };
        out.push(json!({"workflow": wf, "review_state": state, "state_variable": var}));
    }
    out
}

fn ref_value(uid: &str, title: Option<&Value>, known: &Known) -> Value {
    let mut m = Map::new();
    m.insert("uid".into(), Value::from(uid));
    m.insert("title".into(), title.cloned().unwrap_or(Value::Null));
    if let Some(p) = known.path_of.get(uid) {
        m.insert("url".into(), Value::from(p.clone()));
    }
    Value::Object(m)
}

/// `Field` (titles) + `Field_uid` (UIDs) as references.
fn reference(titles: &Value, uids: &Value, known: &Known) -> Value {
    match uids {
        Value::Array(us) => Value::Array(
            us.iter()
                .enumerate()
                .filter_map(|(i, u)| {
                    let t = match titles {
                        Value::Array(ts) => ts.get(i),
                        other if us.len() == 1 => Some(other),
                        _ => None,
                    };
                    u.as_str().map(|u| ref_value(u, t, known))
                })
                .collect(),
        ),
        Value::String(u) => ref_value(u, Some(titles), known),
        other => other.clone(),
    }
}

/// Inline objects (an AR's `Analyses`) as references to them.
fn inline_references(v: &Value, known: &Known) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter_map(|i| {
                    let uid = i.get("UID")?.as_str()?;
                    Some(ref_value(uid, i.get("title").or(i.get("Title")), known))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every Zope `DateTime` string in `v` as RFC 3339.
pub fn dates_in(v: Value) -> Value {
    match v {
        Value::String(s) => match zope_to_rfc3339(&s) {
            Some(d) => Value::String(d),
            None => Value::String(s),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(dates_in).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, dates_in(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn references_become_uids_with_titles() {
        let raw = obj(json!({
            "UID": "st1", "portal_type": "SampleType", "path": "/lims/bika_setup/bika_sampletypes/sampletype-1",
            "title": "Water", "SamplePoints": ["Well 1"], "SamplePoints_uid": ["sp1"],
            "Container": "", "Department": "Chemistry", "Department_uid": "d1",
            "creation_date": "2026/11/26 14:57:0.619412 UTC", "modification_date": null,
            "inactive_state": "active", "review_state": "active",
            "transitions": [{"id": "deactivate"}]
        }));
        let mut known = Known::default();
        known.path_of.insert(
            "sp1".into(),
            "/lims/bika_setup/bika_samplepoints/samplepoint-1".into(),
        );
        known
            .uid_of
            .insert("/lims/bika_setup/bika_sampletypes".into(), "folder".into());
        let r = normalize(&raw, &known);
        assert_eq!(
            r["SamplePoints"],
            json!([{"uid": "sp1", "title": "Well 1", "url": "/lims/bika_setup/bika_samplepoints/samplepoint-1"}])
        );
        assert_eq!(r["Department"], json!({"uid": "d1", "title": "Chemistry"}));
        assert!(!r.contains_key("SamplePoints_uid") && !r.contains_key("transitions"));
        assert_eq!(r["Container"], json!(""));
        assert_eq!(r["created"], json!("2026-11-26T14:57:00.619412+00:00"));
        assert_eq!(
            r["creation_date"],
            json!("2026-11-26T14:57:00.619412+00:00")
        );
        assert_eq!(r["parent_uid"], json!("folder"));
        assert_eq!(r["id"], json!("sampletype-1"));
        assert_eq!(
            r["workflow_info"],
            json!([
                {"workflow": "bika_one_state_workflow", "review_state": "active", "state_variable": "review_state"},
                {"workflow": "bika_inactive_workflow", "review_state": "active", "state_variable": "inactive_state"}
            ])
        );
    }

    #[test]
    fn inline_analyses_become_references() {
        let raw = obj(
            json!({"UID": "ar", "portal_type": "AnalysisRequest", "path": "/lims/c/ar",
            "Analyses": [{"UID": "a1", "title": "Calcium", "Result": "1"}]}),
        );
        let r = normalize(&raw, &Known::default());
        assert_eq!(r["Analyses"], json!([{"uid": "a1", "title": "Calcium"}]));
    }
}
