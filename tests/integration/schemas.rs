//! The machine-checked descriptions in `schemas/`: `tables.json` must equal the schemas the code
//! writes (regenerate with `SENAITE_SYNC_BLESS=1 cargo test schemas`), and every manifest the
//! code writes must validate against `manifest.schema.json` (a small validator for the JSON
//! Schema subset that file uses: type, const, enum, required, properties, additionalProperties,
//! items).

use std::path::Path;

use serde_json::Value;

use senaite_sync::diff::delta;
use senaite_sync::snapshot::{digest, table};

fn schemas_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
}

#[test]
fn tables_json_matches_the_code() {
    let path = schemas_dir().join("tables.json");
    let generated = serde_json::to_string_pretty(&table::schemas_json()).unwrap() + "\n";
    if std::env::var_os("SENAITE_SYNC_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == generated,
        "schemas/tables.json is out of date with src/snapshot/table.rs; \
         run SENAITE_SYNC_BLESS=1 cargo test schemas"
    );
}

#[test]
fn the_derived_and_delta_tables_schema_files_match_the_code() {
    let extra = [
        ("object_digests.json", &digest::OBJECT_DIGESTS),
        ("tombstones.json", &delta::TOMBSTONES),
        ("changes.json", &delta::CHANGES),
    ];
    for (file, def) in extra {
        let path = schemas_dir().join(file);
        let generated = serde_json::to_string_pretty(&def.schema_json()).unwrap() + "\n";
        if std::env::var_os("SENAITE_SYNC_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "schemas/{file} is out of date with the code; run SENAITE_SYNC_BLESS=1 cargo test schemas"
        );
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

/// Validates `v` against `schema`; pushes every violation (with its JSON pointer) to `errs`.
fn validate(schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(c) = schema.get("const")
        && c != v
    {
        errs.push(format!("{at}: expected {c}, found {v}"));
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(v)
    {
        errs.push(format!("{at}: {v} is not one of {options:?}"));
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_ok(t, v) => errs.push(format!("{at}: not {t}")),
        Some(Value::Array(ts)) if !ts.iter().any(|t| type_ok(t.as_str().unwrap_or(""), v)) => {
            errs.push(format!("{at}: not any of {ts:?}"))
        }
        _ => {}
    }
    if let Value::Object(obj) = v {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                errs.push(format!("{at}: missing {r}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(s, val, &format!("{at}/{k}"), errs),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errs.push(format!("{at}: unexpected key {k}")),
                    Some(s @ Value::Object(_)) => validate(s, val, &format!("{at}/{k}"), errs),
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (v, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(s, item, &format!("{at}/{i}"), errs);
        }
    }
}

fn manifest_schema() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(schemas_dir().join("manifest.schema.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn the_demo_manifest_validates() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo/manifest.json");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(demo).unwrap()).unwrap();
    let mut errs = Vec::new();
    validate(&manifest_schema(), &m, "", &mut errs);
    assert!(errs.is_empty(), "{errs:#?}");
}

#[test]
fn the_validator_catches_violations() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo/manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(demo).unwrap()).unwrap();
    m["format_version"] = 2.into();
    m["source"]["password"] = "x".into();
    m["files"][0].as_object_mut().unwrap().remove("sha256");
    m["request"]["history"] = "sometimes".into();
    let mut errs = Vec::new();
    validate(&manifest_schema(), &m, "", &mut errs);
    assert_eq!(errs.len(), 4, "{errs:#?}");
}
