//! The second pass of `diff`: reads back only the rows the scan found different (Parquet row
//! selections, so unchanged rows' `fields` are never decoded), compares them under the rules
//! field by field and row by row, classifies each object (created, modified, moved, deleted or
//! changed only in ignored values) and hands the new rows to the delta writer.

use std::ops::Range;
use std::path::Path;

use serde_json::{Map, Value};

use crate::compare::{equal_within, field_differences};
use crate::error::Result;
use crate::snapshot::table::{Cell, OBJECTS, TableDef, row_to_json};

use super::delta::DeltaWriter;
use super::rules::{Resolved, Rules};
use super::scan::{Event, EventKind, OldObject, SIDE_TABLES, Scan};
use super::{Change, ObjectDiff, Status};
use crate::snapshot::stream::{BatchStream, Cursor, ReadSpec};

pub(crate) use crate::compare::ATTRIBUTES;

/// Review states that mean "deleted" in SENAITE, which deactivates instead of deleting.
pub(crate) const INACTIVE_STATES: &[&str] = &["inactive", "deactivated"];

/// Key columns of each per-object table after `uid` ([`SIDE_TABLES`] order).
const SIDE_KEYS: [&[&str]; 4] = [
    &["workflow", "seq"],
    &["workflow"],
    &["principal"],
    &["field"],
];

/// The key columns after `uid` of a per-object table (empty for others).
pub(crate) fn side_keys(table: &str) -> &'static [&'static str] {
    SIDE_TABLES
        .iter()
        .position(|d| d.name == table)
        .map_or(&[], |t| SIDE_KEYS[t])
}

/// What the second pass found.
#[derive(Debug, Default)]
pub(crate) struct Details {
    /// Objects with meaningful differences, in uid order.
    pub objects: Vec<ObjectDiff>,
    /// Objects whose rows differ only in ignored values, per portal type.
    pub ignored_only: std::collections::BTreeMap<String, u64>,
}

/// The cursors of the second pass (each `None` when nothing is selected from its file).
struct Readers {
    old_objects: Option<Cursor>,
    new_objects: Option<Cursor>,
    old_sides: Vec<Option<Cursor>>,
    new_sides: Vec<Option<Cursor>>,
}

fn wants_new_side(e: &Event, t: usize, delta: bool) -> bool {
    delta || (e.kind == EventKind::Changed && e.side_differ & (1 << t) != 0)
}

fn wants_old_side(e: &Event, t: usize) -> bool {
    e.kind == EventKind::Changed && e.side_differ & (1 << t) != 0
}

/// A cursor over the selected rows of `def` (`columns`, empty for all; `None` when nothing is
/// selected).
fn selection<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    snap: &Path,
    def: &'static TableDef,
    columns: &[&'static str],
    ranges: Vec<Range<usize>>,
) -> Result<Option<Cursor>> {
    if ranges.iter().all(|r| r.is_empty()) {
        return Ok(None);
    }
    let stream = BatchStream::start(
        scope,
        ReadSpec {
            snap: snap.to_path_buf(),
            def,
            columns: columns.to_vec(),
            ranges: Some(ranges),
            encode: false,
        },
    )?;
    Ok(Some(Cursor::new(stream)?))
}

fn row_range(row: Option<u64>) -> Range<usize> {
    row.map_or(0..0, |r| r as usize..r as usize + 1)
}

fn to_usize(r: &Range<u64>) -> Range<usize> {
    r.start as usize..r.end as usize
}

/// Runs the second pass.
///
/// # Errors
/// When a selected row cannot be read or the delta cannot be written.
pub(crate) fn details(
    old: &Path,
    new: &Path,
    scan: &Scan,
    rules: &Rules,
    mut delta: Option<&mut DeltaWriter>,
) -> Result<Details> {
    let with_delta = delta.is_some();
    std::thread::scope(|scope| {
        let ev = &scan.events;
        let changed = |e: &&Event| e.kind == EventKind::Changed;
        let mut r = Readers {
            old_objects: selection(
                scope,
                old,
                &OBJECTS,
                &[],
                ev.iter()
                    .filter(changed)
                    .map(|e| row_range(e.old_row))
                    .collect(),
            )?,
            new_objects: selection(
                scope,
                new,
                &OBJECTS,
                &[],
                ev.iter()
                    .filter(|e| e.kind != EventKind::Vanished)
                    .map(|e| row_range(e.new_row))
                    .collect(),
            )?,
            old_sides: Vec::new(),
            new_sides: Vec::new(),
        };
        for (t, def) in SIDE_TABLES.iter().enumerate() {
            let olds = ev
                .iter()
                .filter(|e| wants_old_side(e, t))
                .map(|e| to_usize(&e.side_old[t]))
                .collect();
            r.old_sides.push(selection(scope, old, def, &[], olds)?);
            let news = ev
                .iter()
                .filter(|e| e.kind != EventKind::Vanished && wants_new_side(e, t, with_delta))
                .map(|e| to_usize(&e.side_new[t]))
                .collect();
            r.new_sides.push(selection(scope, new, def, &[], news)?);
        }
        let mut out = Details::default();
        for e in ev {
            one(e, &mut r, rules, delta.as_deref_mut(), &mut out)?;
        }
        Ok(out)
    })
}

fn take(cursor: &mut Option<Cursor>, def: &TableDef, n: u64) -> Result<Vec<Vec<Cell>>> {
    let mut rows = Vec::with_capacity(n as usize);
    if let Some(c) = cursor {
        for _ in 0..n {
            rows.push(c.take_row(def)?);
        }
    }
    Ok(rows)
}

fn one(
    e: &Event,
    r: &mut Readers,
    rules: &Rules,
    delta: Option<&mut DeltaWriter>,
    out: &mut Details,
) -> Result<()> {
    if e.kind == EventKind::Vanished {
        if let Some(d) = delta {
            d.tombstone(&e.uid, &e.old.clone().unwrap_or_default())?;
        }
        out.objects.push(vanished(e));
        return Ok(());
    }
    let with_delta = delta.is_some();
    let new_row = take(&mut r.new_objects, &OBJECTS, 1)?
        .pop()
        .unwrap_or_default();
    let mut new_sides: Vec<Vec<Vec<Cell>>> = Vec::new();
    for (t, def) in SIDE_TABLES.iter().enumerate() {
        let n = if wants_new_side(e, t, with_delta) {
            e.side_new[t].end - e.side_new[t].start
        } else {
            0
        };
        new_sides.push(take(&mut r.new_sides[t], def, n)?);
    }
    let new_json = row_to_json(&OBJECTS, new_row.clone());
    let text = |m: &Map<String, Value>, k: &str| {
        m.get(k).and_then(Value::as_str).unwrap_or("").to_string()
    };
    let (uid, portal_type, path) = (
        e.uid.clone(),
        text(&new_json, "portal_type"),
        text(&new_json, "path"),
    );
    let mut base: Option<(String, String)> = None;
    let diff = if e.kind == EventKind::Created {
        Some(ObjectDiff {
            uid,
            portal_type: portal_type.clone(),
            path,
            status: Status::Created,
            reason: None,
            old_path: None,
            changes: Vec::new(),
        })
    } else {
        let old_row = take(&mut r.old_objects, &OBJECTS, 1)?
            .pop()
            .unwrap_or_default();
        let old_json = row_to_json(&OBJECTS, old_row);
        base = Some((text(&old_json, "path"), text(&old_json, "content_hash")));
        let mut changes = object_changes(&old_json, &new_json, e.fields_differ, rules);
        for (t, def) in SIDE_TABLES.iter().enumerate() {
            if !wants_old_side(e, t) {
                continue;
            }
            let n = e.side_old[t].end - e.side_old[t].start;
            let olds = take(&mut r.old_sides[t], def, n)?;
            let to_json = |rows: &[Vec<Cell>]| -> Vec<Map<String, Value>> {
                rows.iter().map(|c| row_to_json(def, c.clone())).collect()
            };
            changes.extend(row_changes(
                def,
                SIDE_KEYS[t],
                to_json(&olds),
                to_json(&new_sides[t]),
                rules,
            ));
        }
        classify(&old_json, &new_json, uid, changes)
    };
    match diff {
        Some(d) => out.objects.push(d),
        None => *out.ignored_only.entry(portal_type).or_default() += 1,
    }
    if let Some(d) = delta {
        d.push_object(new_row, new_sides, base)?;
    }
    Ok(())
}

/// The status of a changed object, `None` when every difference was ignored.
fn classify(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    uid: String,
    changes: Vec<Change>,
) -> Option<ObjectDiff> {
    if changes.is_empty() {
        return None;
    }
    fn s<'m>(m: &'m Map<String, Value>, k: &str) -> Option<&'m str> {
        m.get(k).and_then(Value::as_str)
    }
    Some(changed(
        uid,
        Sides {
            portal_type: s(new, "portal_type"),
            old_path: s(old, "path"),
            new_path: s(new, "path"),
            old_state: s(old, "review_state"),
            new_state: s(new, "review_state"),
        },
        changes,
    ))
}

/// What the status of a changed object depends on.
struct Sides<'a> {
    portal_type: Option<&'a str>,
    old_path: Option<&'a str>,
    new_path: Option<&'a str>,
    old_state: Option<&'a str>,
    new_state: Option<&'a str>,
}

/// A changed object: deleted (newly deactivated), moved (other path) or modified.
fn changed(uid: String, x: Sides, changes: Vec<Change>) -> ObjectDiff {
    let inactive = |st: Option<&str>| st.is_some_and(|v| INACTIVE_STATES.contains(&v));
    let (status, reason) = if inactive(x.new_state) && !inactive(x.old_state) {
        (Status::Deleted, Some("deactivated".to_string()))
    } else if x.old_path != x.new_path {
        (Status::Moved, None)
    } else {
        (Status::Modified, None)
    };
    ObjectDiff {
        uid,
        portal_type: x.portal_type.unwrap_or_default().to_string(),
        path: x.new_path.unwrap_or_default().to_string(),
        status,
        reason,
        old_path: (x.old_path != x.new_path).then(|| x.old_path.unwrap_or_default().to_string()),
        changes,
    }
}

/// `objects` columns the brief pass reads.
const BRIEF_COLUMNS: [&str; 4] = ["uid", "portal_type", "path", "review_state"];

/// The second pass of `diff --brief`: each differing object's status from four narrow columns
/// of the rows the scan found (no `fields`, no per-object rows, no rules: an object whose rows
/// differ only in ignored values counts as modified).
///
/// # Errors
/// When a selected row cannot be read.
pub(crate) fn brief(old: &Path, new: &Path, scan: &mut Scan) -> Result<Details> {
    let ev = &mut scan.events;
    std::thread::scope(|scope| {
        let mut olds = selection(
            scope,
            old,
            &OBJECTS,
            &BRIEF_COLUMNS,
            ev.iter()
                .filter(|e| e.kind != EventKind::Created)
                .map(|e| row_range(e.old_row))
                .collect(),
        )?;
        let mut news = selection(
            scope,
            new,
            &OBJECTS,
            &BRIEF_COLUMNS,
            ev.iter()
                .filter(|e| e.kind != EventKind::Vanished)
                .map(|e| row_range(e.new_row))
                .collect(),
        )?;
        let mut out = Details::default();
        for e in ev.iter_mut() {
            if e.kind == EventKind::Vanished {
                if e.old.is_none() {
                    let o = brief_row(&mut olds, &e.uid, old)?;
                    e.old = Some(OldObject {
                        portal_type: o[1].clone().unwrap_or_default(),
                        path: o[2].clone().unwrap_or_default(),
                        content_hash: String::new(),
                    });
                } else if let Some(c) = &mut olds {
                    c.advance()?;
                }
                out.objects.push(vanished(e));
                continue;
            }
            let n = brief_row(&mut news, &e.uid, new)?;
            if e.kind == EventKind::Created {
                out.objects.push(ObjectDiff {
                    uid: e.uid.clone(),
                    portal_type: n[1].clone().unwrap_or_default(),
                    path: n[2].clone().unwrap_or_default(),
                    status: Status::Created,
                    reason: None,
                    old_path: None,
                    changes: Vec::new(),
                });
                continue;
            }
            let o = brief_row(&mut olds, &e.uid, old)?;
            out.objects.push(changed(
                e.uid.clone(),
                Sides {
                    portal_type: n[1].as_deref(),
                    old_path: o[2].as_deref(),
                    new_path: n[2].as_deref(),
                    old_state: o[3].as_deref(),
                    new_state: n[3].as_deref(),
                },
                Vec::new(),
            ));
        }
        Ok(out)
    })
}

/// The [`BRIEF_COLUMNS`] of the next selected row, which must be `uid`'s.
fn brief_row(cursor: &mut Option<Cursor>, uid: &str, snap: &Path) -> Result<Vec<Option<String>>> {
    let Some(c) = cursor else {
        return Err(crate::error::Error::snapshot(
            snap,
            "selected rows ended early",
        ));
    };
    if c.uid() != Some(uid) {
        return Err(crate::error::Error::snapshot(
            snap.join(crate::snapshot::layout::table_rel(OBJECTS.name)),
            format!("expected the row of uid {uid} (the digest index does not match the table)"),
        ));
    }
    let row = (0..BRIEF_COLUMNS.len())
        .map(|i| c.str_col(i).map(str::to_string))
        .collect();
    c.advance()?;
    Ok(row)
}

/// A vanished object as the report lists it.
fn vanished(e: &Event) -> ObjectDiff {
    let old = e.old.clone().unwrap_or_default();
    ObjectDiff {
        uid: e.uid.clone(),
        portal_type: old.portal_type,
        path: old.path,
        status: Status::Deleted,
        reason: Some("vanished".into()),
        old_path: None,
        changes: Vec::new(),
    }
}

/// Attribute and field changes of one object under the rules.
pub(crate) fn object_changes(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    fields_differ: bool,
    rules: &Rules,
) -> Vec<Change> {
    let mut out = Vec::new();
    for key in ATTRIBUTES {
        let Some(tol) = rules.field(key).tolerance() else {
            continue;
        };
        let (o, n) = (
            old.get(*key).unwrap_or(&Value::Null),
            new.get(*key).unwrap_or(&Value::Null),
        );
        if rules.skips_source_empty(key, o) {
            continue;
        }
        if !equal_within(o, n, &tol, &[]) {
            let kind = if *key == "review_state" {
                "review_state"
            } else {
                "attribute"
            };
            out.push(Change::new(kind, key, o.clone(), n.clone()));
        }
    }
    if fields_differ {
        let empty = Map::new();
        let fields = |m: &Map<String, Value>| -> Map<String, Value> {
            m.get("fields")
                .and_then(Value::as_object)
                .unwrap_or(&empty)
                .clone()
        };
        let (of, nf) = (fields(old), fields(new));
        let rule = |k: &str| {
            if ATTRIBUTES.contains(&k) {
                None
            } else {
                rules.field(k).tolerance()
            }
        };
        for (key, o, n) in field_differences(&of, &nf, rules.nested_ignore(), rule) {
            if rules.skips_source_empty(key, &o) {
                continue;
            }
            out.push(Change::new("field", key, o, n));
        }
    }
    out
}

/// Row-level changes of one table: rows matched by `keys`, compared column by column under the
/// column rules of `def`.
pub(crate) fn row_changes(
    def: &TableDef,
    keys: &[&str],
    old: Vec<Map<String, Value>>,
    new: Vec<Map<String, Value>>,
    rules: &Rules,
) -> Vec<Change> {
    if rules.skips_source_empty_rows(def.name, old.len()) {
        return Vec::new();
    }
    let key_of = |m: &Map<String, Value>| -> String {
        let parts: Vec<String> = keys
            .iter()
            .map(|k| match m.get(*k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            })
            .collect();
        parts.join("/")
    };
    let strip = |mut m: Map<String, Value>| {
        m.remove("uid");
        m
    };
    let mut olds: std::collections::BTreeMap<String, Map<String, Value>> =
        old.into_iter().map(|m| (key_of(&m), strip(m))).collect();
    let mut out = Vec::new();
    for n in new {
        let key = key_of(&n);
        let n = strip(n);
        match olds.remove(&key) {
            Some(o) if rows_equal(def, keys, &o, &n, rules) => {}
            Some(o) => out.push(Change::new(
                def.name,
                &key,
                Value::Object(o),
                Value::Object(n),
            )),
            None => out.push(Change::new(def.name, &key, Value::Null, Value::Object(n))),
        }
    }
    for (key, o) in olds {
        out.push(Change::new(def.name, &key, Value::Object(o), Value::Null));
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Whether two rows of `def` are equal in every compared column.
fn rows_equal(
    def: &TableDef,
    keys: &[&str],
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    rules: &Rules,
) -> bool {
    for (name, _, _, _) in def.columns {
        if *name == "uid" || keys.contains(name) {
            continue;
        }
        let Resolved::Compare(tol) = rules.column(def.name, name) else {
            continue;
        };
        let (o, n) = (
            old.get(*name).unwrap_or(&Value::Null),
            new.get(*name).unwrap_or(&Value::Null),
        );
        let equal = match (o, n) {
            (Value::Object(om), Value::Object(nm)) => {
                let rule = |k: &str| rules.column(def.name, &format!("{name}.{k}")).tolerance();
                field_differences(om, nm, rules.nested_ignore(), rule).is_empty()
            }
            _ => equal_within(o, n, &tol, &[]),
        };
        if !equal {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn source_empty_rules_leave_out_what_the_old_side_never_had() {
        let rules = Rules::from_toml(
            "[fields.review_state]\nsource_empty = \"no workflow in the source\"\n\
             [fields.VAT]\nsource_empty = \"a 2.6 default\"\n",
            std::path::Path::new("r.toml"),
        )
        .unwrap();
        let map = |v: Value| v.as_object().unwrap().clone();
        let new = map(json!({"review_state": "active", "fields": {"VAT": "14.00", "Note": "b"}}));
        let old = map(json!({"review_state": null, "fields": {"VAT": "", "Note": "a"}}));
        let keys = |c: Vec<Change>| -> Vec<String> { c.into_iter().map(|c| c.key).collect() };
        assert_eq!(keys(object_changes(&old, &new, true, &rules)), ["Note"]);
        let old = map(json!({"review_state": "inactive", "fields": {"VAT": "10.00", "Note": "b"}}));
        assert_eq!(
            keys(object_changes(&old, &new, true, &rules)),
            ["review_state", "VAT"]
        );
    }
}
