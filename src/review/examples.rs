//! Example records for the review page: a handful of fields with a value per record, each as
//! a short text (references as the target's path, files as name and size, lists as their
//! length). Pure functions over a record's `fields`.

use serde_json::Value;

use crate::review::scan::ExampleField;

pub(crate) use crate::jsonx::has_value;

/// Fields an example does not repeat: identity columns shown on their own, copies and
/// catalog internals.
const NOT_IN_EXAMPLES: &[&str] = &[
    "uid",
    "path",
    "id",
    "title",
    "portal_type",
    "review_state",
    "created",
    "modified",
    "parent_uid",
    "parent_path",
    "parent_id",
    "creation_date",
    "modification_date",
    "allowedRolesAndUsers",
    "state_title",
    "effective",
    "sortable_title",
];

/// Fields shown per example record.
const EXAMPLE_FIELDS: usize = 6;
/// Characters of a value shown in an example.
const EXAMPLE_CHARS: usize = 80;

pub(crate) fn example_fields(map: Option<&serde_json::Map<String, Value>>) -> Vec<ExampleField> {
    let mut out = Vec::new();
    for (k, v) in map.into_iter().flatten() {
        if out.len() >= EXAMPLE_FIELDS {
            break;
        }
        if NOT_IN_EXAMPLES.contains(&k.as_str()) || k.starts_with("get") || k.starts_with('_') {
            continue;
        }
        if let Some(text) = value_text(v) {
            out.push(ExampleField {
                name: k.clone(),
                value: cut(&text, EXAMPLE_CHARS),
            });
        }
    }
    out
}

/// A short text for a value with content; references show their target's path, files their
/// name and size, lists their length.
fn value_text(v: &Value) -> Option<String> {
    if !has_value(v) {
        return None;
    }
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            if let Some(name) = o.get("filename").and_then(Value::as_str) {
                let size = o.get("size").and_then(Value::as_u64).unwrap_or(0);
                format!("{name} ({size} bytes)")
            } else if let Some(u) = o.get("uid").and_then(Value::as_str) {
                let to = o.get("url").and_then(Value::as_str).unwrap_or(u);
                format!("-> {to}")
            } else {
                return None;
            }
        }
        Value::Array(a) => format!("{} items", a.len()),
        other => other.to_string(),
    })
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_values_are_short_texts() {
        let v = serde_json::json!({
            "Client": {"uid": "a".repeat(32), "url": "/senaite/clients/client-1"},
            "File": {"filename": "x.pdf", "size": 3},
            "Remarks": "x".repeat(200),
            "getClientTitle": "copy",
            "Empty": "",
            "title": "t",
        });
        let f = example_fields(v.as_object());
        let names: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["Client", "File", "Remarks"]);
        assert_eq!(f[0].value, "-> /senaite/clients/client-1");
        assert_eq!(f[1].value, "x.pdf (3 bytes)");
        assert_eq!(f[2].value.chars().count(), EXAMPLE_CHARS + 1);
    }
}
