//! SENAITE 1.x composite records to their SENAITE 2.6 shapes, for `map_values` functions that
//! rebuild whole records rather than single values: the per-service `hidden` flags of 1.x
//! `AnalysisServicesSettings`, ARTemplate `Partitions` rows and Supplier addresses. Each
//! function follows what senaite.core 2.6 stores (its content classes, z3c.form converters and
//! the 1.x-to-2.x upgrade steps in `upgrade/v02_06_000.py`); pure functions on JSON values, no
//! I/O.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// The hidden flag of each service uid in 1.x `AnalysisServicesSettings` records
/// (`[{uid, hidden}]`, set by the 1.x profile and template edit forms). A null or non-list
/// value holds no flags.
pub(crate) fn hidden_flags(settings: Option<&Value>) -> HashMap<String, bool> {
    let mut flags = HashMap::new();
    if let Some(Value::Array(records)) = settings {
        for r in records {
            if let Some(uid) = r.get("uid").and_then(Value::as_str) {
                flags.insert(uid.to_string(), r.get("hidden").is_some_and(is_true));
            }
        }
    }
    flags
}

/// A 1.x boolean as Archetypes and Zope forms leave it: a JSON boolean, a number, or a string
/// (`"on"` from a checkbox, `"true"`, `"1"`, `"yes"`, any case); anything else is false.
fn is_true(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "on" | "true" | "1" | "yes"
        ),
        _ => false,
    }
}

/// Whether a string looks like a SENAITE UID (32 lowercase hex digits).
fn is_uid(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// 1.x ARTemplate `Partitions` rows to 2.6 SampleTemplate `partitions` rows
/// `{part_id, container, preservation, sampletype}`.
///
/// A 1.x row written by its edit form holds the titles under `Container`, `Preservation` and
/// `SampleType` and the uids under `container_uid`, `preservation_uid` and `sampletype_uid`
/// (1.3.5 reads the `*_uid` keys: browser/partition_magic.py); a row written through the JSON
/// API may hold a uid under the title key, which is taken when the `*_uid` key has none. 2.6
/// stores each reference sub-field as its form does: a list of one uid, or null when empty
/// (senaite.core's UIDReferenceField is a List; SampleTemplate.getPartitions reads the first
/// item). A null value becomes `[]` (2.6's default); other values stay as they are.
pub(crate) fn template_partitions(v: Value) -> Value {
    let rows = match v {
        Value::Null => return Value::Array(Vec::new()),
        Value::Array(rows) => rows,
        other => return other,
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Value::Object(r) = row else {
            out.push(row);
            continue;
        };
        let reference = |uid_key: &str, title_key: &str| {
            [uid_key, title_key]
                .iter()
                .filter_map(|k| r.get(*k).and_then(Value::as_str))
                .map(str::trim)
                .find(|s| is_uid(s))
                .map_or(Value::Null, |uid| Value::Array(vec![Value::from(uid)]))
        };
        let mut p = Map::new();
        let part_id = r.get("part_id").and_then(Value::as_str).unwrap_or("");
        p.insert("part_id".into(), Value::from(part_id));
        p.insert("container".into(), reference("container_uid", "Container"));
        p.insert(
            "preservation".into(),
            reference("preservation_uid", "Preservation"),
        );
        p.insert(
            "sampletype".into(),
            reference("sampletype_uid", "SampleType"),
        );
        out.push(Value::Object(p));
    }
    Value::Array(out)
}

/// The address types of 2.6's Organization `address` field, in the order its getter returns
/// them (senaite.core content/organization.py, schema/addressfield.py).
const ADDRESS_TYPES: [&str; 3] = ["physical", "postal", "billing"];

/// The keys of an empty 2.6 address record besides `type` (AddressField.get_empty_address).
const ADDRESS_KEYS: [&str; 6] = [
    "address",
    "city",
    "country",
    "subdivision1",
    "subdivision2",
    "zip",
];

/// 1.x addresses keyed by their 2.6 address type (`{physical: {address, city, zip, state,
/// district, country}, postal: ..., billing: ...}`, as `nest_fields` gathers 1.x
/// `PhysicalAddress`, `PostalAddress` and `BillingAddress`) to the 2.6 `address` list.
///
/// When any address holds a non-empty value, every type becomes a record (physical, postal,
/// billing, then other keys in order), as 2.6 stores them once one is set (its getter, edit
/// form and the upgrade step's setters all write the three): `type`, the six keys of an empty
/// 2.6 address, `state` and `district` renamed `subdivision1` and `subdivision2`
/// (migrate_supplier_to_dx), other 1.x keys kept. When all are null or hold only empty
/// values, the result is null: 2.6 stores nothing for an organisation created without an
/// address. A value that is not a dict stays as it is.
pub(crate) fn address_records(v: Value) -> Value {
    let Value::Object(by_type) = v else {
        return v;
    };
    let has_value = |a: &Value| match a {
        Value::Object(m) => m.values().any(|x| match x {
            Value::Null => false,
            Value::String(s) => !s.trim().is_empty(),
            _ => true,
        }),
        _ => false,
    };
    if !by_type.values().any(has_value) {
        return Value::Null;
    }
    let mut types: Vec<&str> = ADDRESS_TYPES.to_vec();
    types.extend(
        by_type
            .keys()
            .map(String::as_str)
            .filter(|k| !ADDRESS_TYPES.contains(k)),
    );
    let mut out = Vec::with_capacity(types.len());
    for t in types {
        let mut rec = Map::new();
        rec.insert("type".into(), Value::from(t));
        for k in ADDRESS_KEYS {
            rec.insert(k.into(), Value::from(""));
        }
        if let Some(Value::Object(a)) = by_type.get(t) {
            for (k, x) in a {
                let key = match k.as_str() {
                    "state" => "subdivision1",
                    "district" => "subdivision2",
                    "type" => continue,
                    other => other,
                };
                if !x.is_null() {
                    rec.insert(key.to_string(), x.clone());
                }
            }
        }
        out.push(Value::Object(rec));
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hidden_flags_read_booleans_and_form_strings() {
        let s = json!([
            {"uid": "a", "hidden": true},
            {"uid": "b", "hidden": false},
            {"uid": "c", "hidden": "on"},
            {"uid": "d"},
            {"hidden": true}
        ]);
        let f = hidden_flags(Some(&s));
        assert_eq!(f.len(), 4);
        assert!(f["a"] && !f["b"] && f["c"] && !f["d"]);
        assert!(hidden_flags(Some(&Value::Null)).is_empty());
        assert!(hidden_flags(None).is_empty());
    }

    #[test]
    fn partitions_take_uids_from_uid_keys_then_title_keys() {
        let c = "ea5e7715a2ff4a9791779165707ff110";
        let p = "a70ff16b23de4dc0a0246ff6f511df44";
        let rows = json!([
            {"part_id": "part-1", "Container": "Glass bottle", "container_uid": c,
             "Preservation": "Cool", "preservation_uid": p, "SampleType": "Water", "value": ""},
            {"part_id": "part-2", "value": ""},
            {"part_id": "part-3", "Container": c, "Preservation": ""}
        ]);
        assert_eq!(
            template_partitions(rows),
            json!([
                {"part_id": "part-1", "container": [c], "preservation": [p], "sampletype": null},
                {"part_id": "part-2", "container": null, "preservation": null, "sampletype": null},
                {"part_id": "part-3", "container": [c], "preservation": null, "sampletype": null}
            ])
        );
        assert_eq!(template_partitions(Value::Null), json!([]));
        assert_eq!(template_partitions(json!("x")), json!("x"));
    }

    #[test]
    fn addresses_become_typed_records_or_null_when_all_empty() {
        let v = json!({
            "physical": {"address": "1 Main St", "city": "Cape Town", "zip": "8001",
                         "state": "Western Cape", "district": "City", "country": "South Africa"},
            "postal": null,
            "billing": {"address": "", "city": "", "zip": "", "state": "", "district": "", "country": ""}
        });
        let empty = |t: &str| {
            json!({"type": t, "address": "", "city": "", "country": "", "subdivision1": "",
                   "subdivision2": "", "zip": ""})
        };
        assert_eq!(
            address_records(v),
            json!([
                {"type": "physical", "address": "1 Main St", "city": "Cape Town",
                 "country": "South Africa", "subdivision1": "Western Cape", "subdivision2": "City",
                 "zip": "8001"},
                empty("postal"),
                empty("billing")
            ])
        );
        let none =
            json!({"physical": null, "postal": {"address": " ", "state": ""}, "billing": {}});
        assert_eq!(address_records(none), Value::Null);
        assert_eq!(address_records(json!([1])), json!([1]));
    }
}
