//! JSON as SENAITE speaks it. senaite.jsonapi serializes with Python's `allow_nan`, so a body may
//! hold the bare literals `NaN`, `Infinity` and `-Infinity`, which strict JSON (and serde_json)
//! rejects. [`parse_lenient`] rewrites each such literal outside strings into the tagged object
//! `{"$nonfinite": "NaN"}` (or `"Infinity"`, `"-Infinity"`), so the value survives losslessly in
//! snapshots; [`to_string_python`] turns the tags back into literals, as the real server writes them.
//! Canonical JSON (sorted keys, no whitespace) is what serde_json gives without `preserve_order`.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The key of the tagged object that stands for a non-finite float.
pub const NONFINITE_KEY: &str = "$nonfinite";

/// Parses a JSON body that may contain the non-standard literals `NaN`, `Infinity`, `-Infinity`.
///
/// # Errors
/// Returns the serde_json error when the body is not JSON even after the rewrite.
pub fn parse_lenient(body: &[u8]) -> serde_json::Result<Value> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(first) => match rewrite_nonfinite(body) {
            Some(fixed) => serde_json::from_slice(&fixed),
            None => Err(first),
        },
    }
}

/// Rewrites non-finite literals outside strings; `None` when there were none.
fn rewrite_nonfinite(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut in_string = false;
    let mut escaped = false;
    let mut changed = false;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let rest = &body[i..];
        let literal = [
            (&b"-Infinity"[..], "-Infinity"),
            (&b"Infinity"[..], "Infinity"),
            (&b"NaN"[..], "NaN"),
        ]
        .into_iter()
        .find(|(lit, _)| rest.starts_with(lit));
        if let Some((lit, name)) = literal {
            out.extend_from_slice(format!("{{\"{NONFINITE_KEY}\":\"{name}\"}}").as_bytes());
            i += lit.len();
            changed = true;
            continue;
        }
        if b == b'"' {
            in_string = true;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

/// Serializes `value` compactly with sorted keys, writing tagged non-finite floats back as the
/// bare literals Python emits.
pub fn to_string_python(value: &Value) -> String {
    let text = value.to_string();
    if !text.contains(NONFINITE_KEY) {
        return text;
    }
    let mut text = text;
    for name in ["-Infinity", "Infinity", "NaN"] {
        text = text.replace(&format!("{{\"{NONFINITE_KEY}\":\"{name}\"}}"), name);
    }
    text
}

/// Whether a field value holds something: not null, `""`, `[]` or `{}` (`false` and `0` do).
/// The receiver's `unknown_fields` and the review page's examples use the same rule.
pub fn has_value(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// Canonical bytes of a value: compact, keys sorted (serde_json's default map is a BTreeMap).
pub fn canonical(value: &Value) -> Vec<u8> {
    // INVARIANT: serializing a serde_json::Value into a Vec cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Lower-case hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nan_outside_strings_is_tagged() {
        let v = parse_lenient(br#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN \" Infinity"}"#)
            .unwrap();
        assert_eq!(v["a"], json!({"$nonfinite": "NaN"}));
        assert_eq!(v["b"][1], json!({"$nonfinite": "-Infinity"}));
        assert_eq!(v["c"], json!("NaN \" Infinity"));
    }

    #[test]
    fn python_form_round_trips() {
        let body = br#"{"a":NaN,"b":[Infinity,-Infinity],"c":"NaN"}"#;
        let v = parse_lenient(body).unwrap();
        assert_eq!(to_string_python(&v).as_bytes(), &body[..]);
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// Any JSON with non-finite literals in arbitrary places parses leniently, and writing
        /// it back in Python's form reproduces the input byte for byte.
        #[test]
        fn lenient_round_trip(words in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("NaN".to_string()),
                proptest::strategy::Just("Infinity".to_string()),
                proptest::strategy::Just("-Infinity".to_string()),
                proptest::strategy::Just("1.5".to_string()),
                "[a-zA-Z \"\\\\]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            ],
            0..8,
        )) {
            let body = format!("[{}]", words.join(","));
            let v = parse_lenient(body.as_bytes()).unwrap();
            let again = parse_lenient(to_string_python(&v).as_bytes()).unwrap();
            proptest::prop_assert_eq!(v, again);
        }
    }

    #[test]
    fn invalid_json_still_fails() {
        assert!(parse_lenient(b"{nope").is_err());
        assert!(parse_lenient(b"<html>").is_err());
    }

    #[test]
    fn canonical_sorts_keys() {
        // Guards against a dependency switching on serde_json's `preserve_order`.
        let v: Value = serde_json::from_str(r#"{"z":1,"a":{"y":2,"b":3}}"#).unwrap();
        assert_eq!(canonical(&v), br#"{"a":{"b":3,"y":2},"z":1}"#);
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let _ = json!(null);
    }
}
