//! Comparing two snapshots object by object (offline): every object of the expected side is
//! looked up by UID on the actual side and compared column by column, field by field, history
//! entry by history entry, and blob by blob (sha256). Fields that legitimately differ between two
//! sites holding the same data ([`IGNORED_FIELDS`]) are left out, each with its reason. `verify`
//! uses it on a snapshot and a fresh extract of the destination.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::load::records::RecordSet;

/// Fields whose values differ between two sites holding the same data, and why.
pub const IGNORED_FIELDS: &[(&str, &str)] = &[
    (
        "api_url",
        "the API URL of the object on the site that answered",
    ),
    ("url", "the URL of the object on the site that answered"),
    (
        "_runtime",
        "server time spent on the request, not object data",
    ),
    (
        "allowedRolesAndUsers",
        "catalog security index derived from workflow role mappings and local roles (both \
         compared themselves); a source's is stale after a sharing change it did not reindex",
    ),
    (
        "getAnalysesNum",
        "catalog metadata of a sample counted from its analyses when the sample was last \
         indexed; a source's can be stale, the destination's is counted afresh",
    ),
    (
        "getProgress",
        "catalog metadata of a sample computed from its analyses' states when the sample was \
         last indexed (stale in a source as getAnalysesNum)",
    ),
];

/// One difference.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Difference {
    /// UID.
    pub uid: String,
    /// Path (expected side).
    pub path: String,
    /// Portal type (expected side).
    pub portal_type: String,
    /// `missing`, `attribute`, `field`, `workflow_history`, `workflow_states`, `local_roles`,
    /// `blobs`.
    pub kind: String,
    /// The column or field name.
    pub key: String,
    /// Expected value.
    pub expected: Value,
    /// Actual value.
    pub actual: Value,
}

/// Totals of a comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Objects compared.
    pub objects: u64,
    /// Objects equal.
    pub equal: u64,
    /// Objects with differences.
    pub different: u64,
    /// Objects missing on the actual side.
    pub missing: u64,
    /// Objects on the actual side only (not differences: the destination may hold more).
    pub extra: u64,
    /// Differences per portal type.
    pub by_type: BTreeMap<String, u64>,
}

/// Top-level record keys compared as attributes (the `objects` columns).
const ATTRIBUTES: &[&str] = &[
    "portal_type",
    "path",
    "parent_uid",
    "parent_path",
    "id",
    "title",
    "created",
    "modified",
    "review_state",
];

/// The parts compared as lists of rows.
const PARTS: &[&str] = &[
    "workflow_history",
    "workflow_states",
    "local_roles",
    "blobs",
];

/// Compares every record of `expected` with the record of the same uid in `actual`.
pub fn compare(expected: &RecordSet, actual: &RecordSet) -> (Summary, Vec<Difference>) {
    let mut diffs = Vec::new();
    let mut s = Summary::default();
    for e in &expected.records {
        s.objects += 1;
        let before = diffs.len();
        let push = |diffs: &mut Vec<Difference>, kind: &str, key: &str, ev: Value, av: Value| {
            diffs.push(Difference {
                uid: e.uid.clone(),
                path: e.path.clone(),
                portal_type: e.portal_type.clone(),
                kind: kind.into(),
                key: key.into(),
                expected: ev,
                actual: av,
            });
        };
        let Some(a) = actual.get(&e.uid) else {
            s.missing += 1;
            push(&mut diffs, "missing", "", Value::Bool(true), Value::Null);
            *s.by_type.entry(e.portal_type.clone()).or_default() += 1;
            continue;
        };
        let get = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        let (ev_all, av_all) = (e.value(), a.value());
        for key in ATTRIBUTES {
            let (ev, av) = (get(&ev_all, key), get(&av_all, key));
            if ev != av {
                push(&mut diffs, "attribute", key, ev, av);
            }
        }
        let empty = serde_json::Map::new();
        let ef = ev_all
            .get("fields")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let af = av_all
            .get("fields")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut keys: Vec<&String> = ef.keys().chain(af.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            if IGNORED_FIELDS.iter().any(|(k, _)| k == key) {
                continue;
            }
            let ev = ef.get(key).cloned().unwrap_or(Value::Null);
            let av = af.get(key).cloned().unwrap_or(Value::Null);
            if !same_value(&ev, &av) {
                push(&mut diffs, "field", key, ev, av);
            }
        }
        for part in PARTS {
            let (ev, av) = (get(&ev_all, part), get(&av_all, part));
            if !same_value(&ev, &av) {
                push(&mut diffs, part, part, ev, av);
            }
        }
        if diffs.len() == before {
            s.equal += 1;
        } else {
            s.different += 1;
            *s.by_type.entry(e.portal_type.clone()).or_default() += (diffs.len() - before) as u64;
        }
    }
    s.extra = actual
        .records
        .iter()
        .filter(|a| expected.get(&a.uid).is_none())
        .count() as u64;
    (s, diffs)
}

/// Equality where JSON `null`, a missing key, `{}` (an empty reference) and `[]` are all "no
/// value", and numbers compare by value (`1` and `1.0`).
fn same_value(a: &Value, b: &Value) -> bool {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Array(x) => x.is_empty(),
        Value::Object(x) => x.is_empty(),
        _ => false,
    };
    if empty(a) && empty(b) {
        return true;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().all(|k| {
                same_value(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_values_and_numbers_compare_loosely() {
        assert!(same_value(&json!(null), &json!({})));
        assert!(same_value(&json!([]), &json!(null)));
        assert!(same_value(&json!(1), &json!(1.0)));
        assert!(same_value(
            &json!({"a": null, "b": [1]}),
            &json!({"b": [1.0]})
        ));
        assert!(!same_value(&json!("a"), &json!("b")));
        assert!(!same_value(&json!([1, 2]), &json!([2, 1])));
        assert!(!same_value(&json!(false), &json!(null)));
    }
}
