//! SENAITE 1.x composite records to their SENAITE 2.6 shapes, for `map_values` functions that
//! rebuild whole records rather than single values: the per-service `hidden` flags of 1.x
//! `AnalysisServicesSettings`, ARTemplate `Partitions` rows, Supplier addresses,
//! WorksheetTemplate `Layout` rows and SampleType `AdmittedStickerTemplates`. Each
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

/// A 1.x whole number as Archetypes records hold it (`"3"` from a form, or a number); None
/// when empty or not a whole number.
fn whole_number(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A non-empty trimmed string, or None.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// 1.x WorksheetTemplate `Layout` rows `{pos, type, blank_ref, control_ref, dup}` to 2.6
/// `template_layout` rows `{pos, type, blank_ref, control_ref, reference_proxy, dup_proxy,
/// dup}`, as senaite.core 2.6's migrate_ws_template_to_dx rebuilds them.
///
/// `pos` becomes a number (the row's place, from 1, when it has none) and `type` defaults to
/// `"a"`. 1.3.5's layout widget submits every row's blank, control and duplicate selects,
/// hidden or not, so only the one the row's type names counts: a blank (`b`) keeps its
/// `blank_ref`, a control (`c`) its `control_ref`, each also as `reference_proxy`, and a
/// duplicate (`d`) its `dup` (a number, also as `dup_proxy`); the others are empty. A kept
/// reference is a list of one uid, as 2.6's own form (its UIDReferenceWidget converter) and
/// setup-data import store it (the upgrade step keeps the bare 1.x string); an empty one is
/// `[]`. A null value becomes `[]` (a template without positions); other values stay.
pub(crate) fn worksheet_layout(v: Value) -> Value {
    let rows = match v {
        Value::Null => return Value::Array(Vec::new()),
        Value::Array(rows) => rows,
        other => return other,
    };
    let mut out = Vec::with_capacity(rows.len());
    for (num, row) in rows.into_iter().enumerate() {
        let Value::Object(r) = row else {
            out.push(row);
            continue;
        };
        let kind = text(r.get("type")).unwrap_or("a");
        let reference = |key: &str| text(r.get(key)).map(Value::from);
        let (blank, control) = match kind {
            "b" => (reference("blank_ref"), None),
            "c" => (None, reference("control_ref")),
            _ => (None, None),
        };
        let dup = match kind {
            "d" => whole_number(r.get("dup")).filter(|d| *d != 0),
            _ => None,
        };
        let pos = whole_number(r.get("pos")).unwrap_or(num as i64 + 1);
        let as_list = |x: &Option<Value>| Value::Array(x.iter().cloned().collect());
        let mut p = Map::new();
        p.insert("pos".into(), Value::from(pos));
        p.insert("type".into(), Value::from(kind));
        p.insert("blank_ref".into(), as_list(&blank));
        p.insert("control_ref".into(), as_list(&control));
        p.insert(
            "reference_proxy".into(),
            blank.or(control).unwrap_or(Value::Null),
        );
        p.insert("dup_proxy".into(), dup.map_or(Value::Null, Value::from));
        p.insert("dup".into(), dup.map_or(Value::Null, Value::from));
        out.push(Value::Object(p));
    }
    Value::Array(out)
}

/// 2.6's default `admitted_sticker_templates`: one record admitting nothing
/// (senaite.core content/sampletype.py DEFAULT_ADMITTED_STICKER_TEMPLATES).
fn default_sticker_templates() -> Value {
    serde_json::json!([{"admitted": [], "large_default": null, "small_default": null}])
}

/// 1.x SampleType `AdmittedStickerTemplates` to 2.6 `admitted_sticker_templates`.
///
/// 1.3.5 keeps one record `{admitted, small_default, large_default}` (its RecordsField
/// subfields, the same names 2.6 uses), plus a `value` key its records widget adds; 2.6's rows
/// hold only the three (IStickersRecordSchema). Each dict record keeps `admitted` as a list of
/// template ids (a lone id becomes a list of one, empty ids are dropped) and the two defaults
/// (an empty one becomes null); other keys are dropped. As 2.6's setter does
/// (SampleType.setAdmittedStickerTemplates), empty records are left out and, when none is
/// left (1.x null, `[]` or its default `[{}]`), the value is 2.6's default record. A dict
/// alone counts as a list of one; other values stay.
pub(crate) fn sticker_templates(v: Value) -> Value {
    let records = match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a,
        Value::Object(m) => vec![Value::Object(m)],
        other => return other,
    };
    let mut out = Vec::new();
    for rec in records {
        let Value::Object(r) = rec else {
            if !rec.is_null() {
                out.push(rec);
            }
            continue;
        };
        let admitted: Vec<Value> = match r.get("admitted") {
            Some(Value::Array(ids)) => ids
                .iter()
                .filter_map(|x| text(Some(x)))
                .map(Value::from)
                .collect(),
            other => text(other).map(Value::from).into_iter().collect(),
        };
        let small = text(r.get("small_default")).map(Value::from);
        let large = text(r.get("large_default")).map(Value::from);
        if admitted.is_empty() && small.is_none() && large.is_none() {
            continue;
        }
        let mut p = Map::new();
        p.insert("admitted".into(), Value::Array(admitted));
        p.insert("large_default".into(), large.unwrap_or(Value::Null));
        p.insert("small_default".into(), small.unwrap_or(Value::Null));
        out.push(Value::Object(p));
    }
    if out.is_empty() {
        return default_sticker_templates();
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

    #[test]
    fn worksheet_layout_keeps_the_reference_or_duplicate_the_type_names() {
        let (b, c) = (
            "287242630e1f42cbb7a78140f0f29b37",
            "8f654bbc58e648868069ab7133d0e913",
        );
        // As 1.3.5's widget stores it: every select submitted on every row.
        let rows = json!([
            {"blank_ref": b, "control_ref": c, "pos": "1", "type": "a"},
            {"blank_ref": b, "control_ref": c, "dup": "1", "pos": "2", "type": "b"},
            {"blank_ref": b, "control_ref": c, "dup": "1", "pos": "3", "type": "c"},
            {"blank_ref": b, "control_ref": c, "dup": "1", "pos": "4", "type": "d"},
            {"type": "b", "blank_ref": ""},
            {"dup": "x", "type": "d", "pos": 6}
        ]);
        let row = |pos: i64, t: &str, blank: Value, control: Value, proxy: Value, dup: Value| {
            json!({"pos": pos, "type": t, "blank_ref": blank, "control_ref": control,
                   "reference_proxy": proxy, "dup_proxy": dup.clone(), "dup": dup})
        };
        let none = Value::Null;
        assert_eq!(
            worksheet_layout(rows),
            json!([
                row(1, "a", json!([]), json!([]), none.clone(), none.clone()),
                row(2, "b", json!([b]), json!([]), json!(b), none.clone()),
                row(3, "c", json!([]), json!([c]), json!(c), none.clone()),
                row(4, "d", json!([]), json!([]), none.clone(), json!(1)),
                row(5, "b", json!([]), json!([]), none.clone(), none.clone()),
                row(6, "d", json!([]), json!([]), none.clone(), none)
            ])
        );
        assert_eq!(worksheet_layout(Value::Null), json!([]));
        assert_eq!(worksheet_layout(json!("x")), json!("x"));
    }

    #[test]
    fn sticker_templates_keep_the_three_subfields_or_become_the_default() {
        // A real 1.3.5 record saved through its edit form.
        let v = json!([{"value": "", "small_default": "Code_128_1x48mm.pt",
                        "large_default": "QR_1x14mmx39mm.pt",
                        "admitted": ["Code_128_1x48mm.pt", "QR_1x14mmx39mm.pt"]}]);
        assert_eq!(
            sticker_templates(v),
            json!([{"admitted": ["Code_128_1x48mm.pt", "QR_1x14mmx39mm.pt"],
                    "large_default": "QR_1x14mmx39mm.pt", "small_default": "Code_128_1x48mm.pt"}])
        );
        let default = json!([{"admitted": [], "large_default": null, "small_default": null}]);
        for empty in [
            Value::Null,
            json!([]),
            json!([{}]),
            json!([{"value": "", "admitted": [""], "small_default": ""}]),
        ] {
            assert_eq!(sticker_templates(empty), default);
        }
        assert_eq!(
            sticker_templates(json!({"admitted": "QR_1x14mmx39mm.pt"})),
            json!([{"admitted": ["QR_1x14mmx39mm.pt"], "large_default": null,
                    "small_default": null}])
        );
        assert_eq!(sticker_templates(json!("x")), json!("x"));
    }
}
