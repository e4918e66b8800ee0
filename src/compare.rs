//! Comparing two snapshots object by object (offline): every object of the expected side is
//! looked up by UID on the actual side and compared column by column, field by field, history
//! entry by history entry, and blob by blob (sha256). Fields that legitimately differ between two
//! sites holding the same data ([`IGNORED_FIELDS`]) are left out, each with its reason. `verify`
//! uses it on a snapshot and a fresh extract of the destination; `diff` uses its value equality
//! ([`equal_within`], [`field_differences`]) with per-field tolerances from its rules file.

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

/// Top-level record keys compared as attributes (the `objects` columns; the rest is in
/// `fields`). Shared with `diff`.
pub(crate) const ATTRIBUTES: &[&str] = &[
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
    compare_with(expected, actual, None)
}

/// [`compare`], with `rules` (diff's rules: defaults plus a file) laid over the built-in
/// ignores: fields and attributes they leave out are not compared, the others within their
/// tolerances, and the per-object tables row by row under their column rules. For a load
/// whose destination legitimately differs in more than [`IGNORED_FIELDS`] (another SENAITE
/// version computes other metadata).
pub fn compare_with(
    expected: &RecordSet,
    actual: &RecordSet,
    rules: Option<&crate::diff::Rules>,
) -> (Summary, Vec<Difference>) {
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
            if rules.is_some_and(|r| r.skips_source_empty(key, &ev)) {
                continue;
            }
            let differs = match rules.map(|r| r.field(key).tolerance()) {
                None => ev != av,
                Some(None) => false,
                Some(Some(tol)) => !equal_within(&ev, &av, &tol, &[]),
            };
            if differs {
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
        let exact = Tolerance::EXACT;
        let rule = |key: &str| {
            if IGNORED_FIELDS.iter().any(|(k, _)| *k == key) {
                return None;
            }
            match rules {
                // As `diff`: a field named like an attribute is compared as the attribute.
                Some(_) if ATTRIBUTES.contains(&key) => None,
                Some(r) => r.field(key).tolerance(),
                None => Some(exact),
            }
        };
        let nested: &[String] = rules.map_or(&[], |r| r.nested_ignore());
        for (key, ev, av) in field_differences(ef, af, nested, rule) {
            if rules.is_some_and(|r| r.skips_source_empty(key, &ev)) {
                continue;
            }
            push(&mut diffs, "field", key, ev, av);
        }
        for part in PARTS {
            let (ev, av) = (get(&ev_all, part), get(&av_all, part));
            let differs = match (rules, crate::snapshot::table::table_def(part)) {
                (Some(r), Some(def)) => {
                    let rows = |v: &Value| -> Vec<serde_json::Map<String, Value>> {
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|x| x.as_object().cloned())
                            .collect()
                    };
                    !crate::diff::row_changes_of(def, rows(&ev), rows(&av), r).is_empty()
                }
                _ => !same_value(&ev, &av),
            };
            if differs {
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
    equal_within(a, b, &Tolerance::EXACT, &[])
}

/// How far two values may be apart and still count as equal (`diff`'s per-field tolerances).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Numbers this close (absolute difference) are equal. When positive, strings that both
    /// parse as numbers (SENAITE keeps results and prices as strings) are compared as numbers.
    pub epsilon: f64,
    /// Date strings equal at this precision are equal.
    pub date_precision: DatePrecision,
    /// `false` counts as no value (equal to `null`): an unset Archetypes boolean that one
    /// side reads as `false` and the other as `null`. `true` is still compared.
    pub false_is_null: bool,
}

impl Tolerance {
    /// No tolerance: what `verify` uses.
    pub const EXACT: Tolerance = Tolerance {
        epsilon: 0.0,
        date_precision: DatePrecision::Exact,
        false_is_null: false,
    };
}

/// The precision at which two date strings are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatePrecision {
    /// The strings must be equal.
    Exact,
    /// Equal to the millisecond.
    Millisecond,
    /// Equal to the second.
    Second,
    /// Equal to the minute.
    Minute,
    /// Equal to the day.
    Day,
}

impl DatePrecision {
    /// Parses `exact`, `millisecond`, `second`, `minute` or `day`.
    pub fn parse(text: &str) -> Option<DatePrecision> {
        Some(match text {
            "exact" => DatePrecision::Exact,
            "millisecond" => DatePrecision::Millisecond,
            "second" => DatePrecision::Second,
            "minute" => DatePrecision::Minute,
            "day" => DatePrecision::Day,
            _ => return None,
        })
    }
}

/// The field-level differences of two `fields` objects: every key of either side for which
/// `rule` gives a tolerance (`None` leaves the key out), in key order, with both values (a
/// missing key reads as `null`). `skip_keys` are dropped at any depth inside the values.
pub fn field_differences<'a>(
    old: &'a serde_json::Map<String, Value>,
    new: &'a serde_json::Map<String, Value>,
    skip_keys: &[String],
    rule: impl Fn(&str) -> Option<Tolerance>,
) -> Vec<(&'a str, Value, Value)> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let Some(tol) = rule(key) else {
            continue;
        };
        let ov = old.get(key).unwrap_or(&Value::Null);
        let nv = new.get(key).unwrap_or(&Value::Null);
        if !equal_within(ov, nv, &tol, skip_keys) {
            out.push((key.as_str(), ov.clone(), nv.clone()));
        }
    }
    out
}

/// Equality of two JSON values within a tolerance: `null`, a missing key, `{}` and `[]` are all
/// "no value"; numbers compare by value (within `epsilon`); date strings at `date_precision`;
/// keys named in `skip_keys` are left out of objects at any depth; a reference written as its
/// uid equals a reference object with that uid and nothing else left once `skip_keys` are out
/// (a pipeline maps 1.x references to uids, 2.6 reads them back as `{uid, url, api_url}`).
pub fn equal_within(a: &Value, b: &Value, tol: &Tolerance, skip_keys: &[String]) -> bool {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Array(x) => x.is_empty(),
        Value::Object(x) => x.is_empty(),
        Value::Bool(false) => tol.false_is_null,
        _ => false,
    };
    if empty(a) && empty(b) {
        return true;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= tol.epsilon,
            _ => x == y,
        },
        (Value::String(x), Value::String(y)) => x == y || equal_strings(x, y, tol),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| equal_within(p, q, tol, skip_keys))
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| !skip_keys.iter().any(|s| s == *k))
                .all(|k| {
                    equal_within(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        tol,
                        skip_keys,
                    )
                })
        }
        (Value::String(uid), Value::Object(r)) | (Value::Object(r), Value::String(uid)) => {
            reference_uid(r, skip_keys) == Some(uid.as_str())
        }
        _ => a == b,
    }
}

/// The uid of a reference object: its `uid`, when every other key is skipped or empty.
fn reference_uid<'a>(
    r: &'a serde_json::Map<String, Value>,
    skip_keys: &[String],
) -> Option<&'a str> {
    let uid = r.get("uid")?.as_str()?;
    let others_gone = r.iter().all(|(k, v)| {
        k == "uid"
            || skip_keys.iter().any(|s| s == k)
            || matches!(v, Value::Null)
            || v.as_str().is_some_and(str::is_empty)
    });
    others_gone.then_some(uid)
}

/// Two different strings that are still equal: numbers within epsilon (only when it is
/// positive), or dates at the tolerated precision.
fn equal_strings(x: &str, y: &str, tol: &Tolerance) -> bool {
    if tol.epsilon > 0.0
        && let (Ok(p), Ok(q)) = (x.trim().parse::<f64>(), y.trim().parse::<f64>())
        && p.is_finite()
        && q.is_finite()
    {
        return (p - q).abs() <= tol.epsilon;
    }
    if tol.date_precision == DatePrecision::Exact {
        return false;
    }
    match (DateParts::parse(x), DateParts::parse(y)) {
        (Some(p), Some(q)) => p.equal_at(&q, tol.date_precision),
        _ => false,
    }
}

/// An ISO 8601 date-time as SENAITE writes them: `2026-11-26T15:25:07.609503+00:00`,
/// `2026-11-26 15:25:07`, `2026-11-26`.
struct DateParts<'a> {
    date: &'a str,
    /// `HH:MM:SS`, or empty for a date alone.
    time: &'a str,
    /// Fraction digits (without the dot).
    fraction: &'a str,
    /// Zone suffix (`+00:00`, `Z`), when given.
    zone: Option<&'a str>,
}

impl<'a> DateParts<'a> {
    fn parse(s: &'a str) -> Option<DateParts<'a>> {
        let b = s.as_bytes();
        let digits =
            |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
        if !(digits(0..4)
            && b.get(4) == Some(&b'-')
            && digits(5..7)
            && b.get(7) == Some(&b'-')
            && digits(8..10))
        {
            return None;
        }
        let date = &s[..10];
        if s.len() == 10 {
            return Some(DateParts {
                date,
                time: "",
                fraction: "",
                zone: None,
            });
        }
        let time_ok = matches!(b.get(10), Some(b'T' | b' '))
            && digits(11..13)
            && b.get(13) == Some(&b':')
            && digits(14..16)
            && b.get(16) == Some(&b':')
            && digits(17..19);
        if !time_ok {
            return None;
        }
        let time = &s[11..19];
        let mut rest = &s[19..];
        let mut fraction = "";
        if let Some(f) = rest.strip_prefix('.') {
            let n = f.bytes().take_while(u8::is_ascii_digit).count();
            fraction = &f[..n];
            rest = &f[n..];
        }
        let zone = (!rest.is_empty()).then_some(rest);
        Some(DateParts {
            date,
            time,
            fraction,
            zone,
        })
    }

    fn equal_at(&self, other: &DateParts<'_>, precision: DatePrecision) -> bool {
        if self.date != other.date {
            return false;
        }
        if let (Some(a), Some(b)) = (self.zone, other.zone)
            && a != b
            && !(is_utc(a) && is_utc(b))
        {
            return false;
        }
        let time_len = match precision {
            DatePrecision::Day => return true,
            DatePrecision::Minute => 5,
            _ => 8,
        };
        let prefix = |t: &str| t.get(..time_len).unwrap_or(t).to_string();
        if prefix(self.time) != prefix(other.time) {
            return false;
        }
        let digits = match precision {
            DatePrecision::Millisecond => 3,
            DatePrecision::Exact => 9,
            _ => return true,
        };
        let frac = |f: &str| {
            let mut d: String = f.chars().take(digits).collect();
            while d.len() < digits {
                d.push('0');
            }
            d
        };
        frac(self.fraction) == frac(other.fraction)
    }
}

fn is_utc(zone: &str) -> bool {
    matches!(zone, "Z" | "+00:00" | "-00:00" | "+0000" | "UTC" | "GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record set of one record with these fields.
    fn one_record(
        uid: &str,
        portal_type: &str,
        path: &str,
        fields: &Value,
    ) -> crate::load::records::RecordSet {
        let mut s = crate::load::records::RecordSet::default();
        s.index.insert(uid.into(), 0);
        s.records.push(crate::load::records::Record {
            uid: uid.into(),
            portal_type: portal_type.into(),
            path: path.into(),
            parent_uid: None,
            parent_path: None,
            json: fields.to_string().into(),
            load_hash: String::new(),
            refs: Vec::new(),
            blobs: Vec::new(),
        });
        s
    }
    use serde_json::json;

    #[test]
    fn rules_leave_out_and_widen_what_verify_compares() {
        let set = |v: Value| {
            one_record(
                "u1",
                "SamplePoint",
                "/senaite/setup/samplepoints/samplepoint-1",
                &v,
            )
        };
        let expected = set(json!({"parent_uid": null, "title": "River",
            "fields": {"location": {"latitude": "41.38625"}, "sortable_title": null, "Note": "a"},
            "workflow_states": [{"workflow": "w", "review_state": "active", "status": null}]}));
        let actual = set(json!({"parent_uid": "setup-uid", "title": "River",
            "fields": {"location": {"latitude": "41.3862500"}, "sortable_title": "river", "Note": "b"},
            "workflow_states": [{"workflow": "w", "review_state": "active", "status": "Active"}]}));
        let keys = |d: Vec<Difference>| -> Vec<String> { d.into_iter().map(|d| d.key).collect() };
        let (_, plain) = compare(&expected, &actual);
        assert_eq!(
            keys(plain),
            [
                "parent_uid",
                "Note",
                "location",
                "sortable_title",
                "workflow_states"
            ]
        );
        let rules = crate::diff::Rules::from_toml(
            "[fields.parent_uid]\nignore = \"no Setup object\"\n\
             [fields.sortable_title]\nignore = \"derived\"\n\
             [fields.location]\nepsilon = 1e-9\n",
            std::path::Path::new("rules.toml"),
        )
        .unwrap();
        // The state title is left out by diff's default rules; `Note` still differs.
        let (s, with_rules) = compare_with(&expected, &actual, Some(&rules));
        assert_eq!(keys(with_rules), ["Note"]);
        assert_eq!(s.different, 1);
    }

    #[test]
    fn source_empty_rules_compare_only_what_the_source_holds() {
        let set = |uid: &str, v: Value| one_record(uid, "BatchFolder", "/senaite/batches", &v);
        let rules = crate::diff::Rules::from_toml(
            "[fields.review_state]\nsource_empty = \"no workflow in the source\"\n\
             [fields.VAT]\nsource_empty = \"a 2.6 default\"\n\
             [tables.workflow_history]\nsource_empty = \"the source gives no history\"\n",
            std::path::Path::new("rules.toml"),
        )
        .unwrap();
        let row = json!([{"workflow": "w", "review_state": "active", "seq": 0, "actor": "admin"}]);
        let actual = set(
            "u1",
            json!({"review_state": "active", "fields": {"VAT": "14.00"}, "workflow_history": row}),
        );
        // The source has no state, no VAT, no history: nothing to compare.
        let empty = set("u1", json!({"review_state": null, "fields": {"VAT": ""}}));
        let (s, d) = compare_with(&empty, &actual, Some(&rules));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(s.equal, 1);
        // Where the source has values they are compared: another state, VAT and history differ.
        let other =
            json!([{"workflow": "w", "review_state": "inactive", "seq": 0, "actor": "admin"}]);
        let held = set(
            "u1",
            json!({"review_state": "inactive", "fields": {"VAT": "10.00"}, "workflow_history": other}),
        );
        let (_, d) = compare_with(&held, &actual, Some(&rules));
        let keys: Vec<&str> = d.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["review_state", "VAT", "workflow_history"]);
        assert!(
            rules
                .ignored()
                .iter()
                .any(|i| i.name == "workflow_history rows (where the source object has none)")
        );
    }

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

    #[test]
    fn tolerances_widen_equality() {
        let eps = Tolerance {
            epsilon: 0.01,
            date_precision: DatePrecision::Exact,
            false_is_null: false,
        };
        assert!(equal_within(&json!(1.004), &json!(1.0), &eps, &[]));
        assert!(equal_within(&json!("12.50"), &json!("12.5"), &eps, &[]));
        assert!(!equal_within(
            &json!("12.50"),
            &json!("12.5"),
            &Tolerance::EXACT,
            &[]
        ));
        assert!(!equal_within(&json!(1.02), &json!(1.0), &eps, &[]));
        let unset = Tolerance {
            false_is_null: true,
            ..Tolerance::EXACT
        };
        assert!(equal_within(&json!(false), &json!(null), &unset, &[]));
        assert!(!equal_within(&json!(true), &json!(null), &unset, &[]));
        assert!(!equal_within(&json!(false), &json!(true), &unset, &[]));
        assert!(!equal_within(
            &json!(false),
            &json!(null),
            &Tolerance::EXACT,
            &[]
        ));
        let second = Tolerance {
            epsilon: 0.0,
            date_precision: DatePrecision::Second,
            false_is_null: false,
        };
        let exact = "2026-11-26T15:25:07.609503";
        assert!(equal_within(
            &json!(exact),
            &json!("2026-11-26 15:25:07"),
            &second,
            &[]
        ));
        assert!(equal_within(
            &json!("2026-11-26T15:25:07+00:00"),
            &json!("2026-11-26T15:25:07Z"),
            &second,
            &[]
        ));
        assert!(!equal_within(
            &json!("2026-11-26T15:25:07+02:00"),
            &json!("2026-11-26T15:25:07Z"),
            &second,
            &[]
        ));
        assert!(!equal_within(
            &json!(exact),
            &json!("2026-11-26 15:25:08"),
            &second,
            &[]
        ));
        let day = Tolerance {
            epsilon: 0.0,
            date_precision: DatePrecision::Day,
            false_is_null: false,
        };
        assert!(equal_within(
            &json!("2026-11-26T23:59:59"),
            &json!("2026-11-26"),
            &day,
            &[]
        ));
        let skip = vec!["api_url".to_string()];
        assert!(equal_within(
            &json!([{"uid": "a", "api_url": "/x"}]),
            &json!([{"uid": "a", "api_url": "/y"}]),
            &Tolerance::EXACT,
            &skip
        ));
        // A reference as its uid against the object 2.6 reads back: equal by uid once the
        // skipped keys are out, not when another key remains or the uid differs.
        let reference = json!({"uid": "a", "api_url": "/x", "url": ""});
        assert!(equal_within(
            &json!("a"),
            &reference,
            &Tolerance::EXACT,
            &skip
        ));
        assert!(equal_within(
            &reference,
            &json!("a"),
            &Tolerance::EXACT,
            &skip
        ));
        assert!(!equal_within(
            &json!("b"),
            &reference,
            &Tolerance::EXACT,
            &skip
        ));
        assert!(!equal_within(
            &json!("a"),
            &reference,
            &Tolerance::EXACT,
            &[]
        ));
        assert!(!equal_within(
            &json!("a"),
            &json!({"uid": "a", "title": "T"}),
            &Tolerance::EXACT,
            &skip
        ));
    }

    #[test]
    fn field_differences_skip_ignored_keys() {
        let old = json!({"a": 1, "b": "x", "c": null});
        let new = json!({"a": 2, "b": "x", "d": []});
        let (old, new) = (old.as_object().unwrap(), new.as_object().unwrap());
        let d = field_differences(old, new, &[], |k| (k != "a").then_some(Tolerance::EXACT));
        assert!(d.is_empty());
        let d = field_differences(old, new, &[], |_| Some(Tolerance::EXACT));
        assert_eq!(d, vec![("a", json!(1), json!(2))]);
    }
}
