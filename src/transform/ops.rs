//! The steps themselves: pure functions over one object (its `objects` row and its fields),
//! given a read-only [`Context`] prepared before the data pass (salts, the paths and ids that
//! `prefix_ids` selects, the uids of the folders `move` puts things into). No I/O, no network,
//! no global state, so objects are transformed in parallel.
//!
//! `fields` is parsed only when a step needs it (a step on fields of the object's type, a
//! `move` whose path occurs in the text, `prefix_ids`); an untouched object keeps its fields
//! text and `content_hash` byte for byte, a touched one gets both recomputed exactly as
//! `extract` computes them (canonical JSON, sha256).

use std::collections::HashMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::snapshot::table::Cell;

use super::paths::{PrefixSet, move_object, prefix_object, under};
use super::spec::{Action, Conditions, MapFunction, Op, Redaction, Step};

/// One object in flight.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Obj {
    pub uid: String,
    pub portal_type: String,
    pub path: String,
    pub parent_uid: Option<String>,
    pub parent_path: Option<String>,
    pub id: String,
    pub title: Option<String>,
    pub created: Option<String>,
    pub modified: Option<String>,
    pub review_state: Option<String>,
    pub content_hash: String,
    pub fields_text: String,
    pub sources: String,
    /// Parsed fields, once a step needed them.
    pub fields: Option<Map<String, Value>>,
    /// Whether the fields changed (parsed, or rewritten in the canonical text).
    pub dirty: bool,
}

/// A file field of an object that a step renamed (`Some(new)`) or removed (`None`): the
/// object's `blobs` row follows.
pub(crate) type BlobEffect = (String, Option<String>);

/// The one `workflow_states` row `map_states` gives an object: (workflow, state).
pub(crate) type StateRow = (String, Option<String>);

impl Obj {
    /// An object from its `objects` row (13 cells in schema order).
    pub fn from_row(row: Vec<Cell>) -> Option<Obj> {
        let mut it = row.into_iter();
        let mut s = || match it.next() {
            Some(Cell::Str(v)) => Some(v),
            _ => None,
        };
        Some(Obj {
            uid: s()??,
            portal_type: s()??,
            path: s()??,
            parent_uid: s()?,
            parent_path: s()?,
            id: s()??,
            title: s()?,
            created: s()?,
            modified: s()?,
            review_state: s()?,
            content_hash: s()??,
            fields_text: s()??,
            sources: s()??,
            fields: None,
            dirty: false,
        })
    }

    /// The `objects` row, with fields and `content_hash` recomputed when they changed.
    pub fn into_row(mut self) -> Vec<Cell> {
        if self.dirty {
            if let Some(f) = self.fields.take() {
                let bytes = crate::jsonx::canonical(&Value::Object(f));
                self.fields_text = String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            }
            // Parsed and serialized again, or rewritten in place as canonical text (`move`).
            self.content_hash = crate::jsonx::sha256_hex(self.fields_text.as_bytes());
        }
        vec![
            Cell::s(self.uid),
            Cell::s(self.portal_type),
            Cell::s(self.path),
            Cell::Str(self.parent_uid),
            Cell::Str(self.parent_path),
            Cell::s(self.id),
            Cell::Str(self.title),
            Cell::Str(self.created),
            Cell::Str(self.modified),
            Cell::Str(self.review_state),
            Cell::s(self.content_hash),
            Cell::s(self.fields_text),
            Cell::s(self.sources),
        ]
    }

    /// The parsed fields (parsed now if needed).
    ///
    /// # Errors
    /// When the fields text is not a JSON object (names the uid).
    pub fn fields(&mut self) -> Result<&mut Map<String, Value>, String> {
        if self.fields.is_none() {
            let v = crate::jsonx::parse_lenient(self.fields_text.as_bytes())
                .map_err(|e| format!("object {}: fields are not JSON: {e}", self.uid))?;
            match v {
                Value::Object(m) => self.fields = Some(m),
                _ => return Err(format!("object {}: fields are not a JSON object", self.uid)),
            }
        }
        match self.fields.as_mut() {
            Some(f) => Ok(f),
            None => Err(format!("object {}: fields missing", self.uid)),
        }
    }

    /// Whether the fields may hold key `name` (always true once parsed; a cheap text check
    /// before).
    fn may_have(&self, name: &str) -> bool {
        match &self.fields {
            Some(f) => f.contains_key(name),
            None => self.fields_text.contains(&format!("\"{name}\":")),
        }
    }
}

/// Everything the steps read besides the object: prepared once, before the data pass.
#[derive(Debug, Default)]
pub(crate) struct Context {
    /// Salt bytes per step index (redact with hash).
    pub salts: HashMap<usize, Vec<u8>>,
    /// uid of the object at each path a `move` puts a folder into.
    pub move_parents: HashMap<String, String>,
    /// What `prefix_ids` selected on the input.
    pub prefix: Option<PrefixSet>,
    /// Per `fold_fields` step index: the folded fields of each source object, by uid.
    pub fold: HashMap<usize, HashMap<String, Map<String, Value>>>,
    /// Per `split_partitions` step index: what becomes of partitions, primaries and members.
    pub partitions: HashMap<usize, super::partitions::PartitionPlan>,
}

/// What applying the steps did to one object.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The object survives the filters.
    pub keep: bool,
    /// File fields renamed or removed.
    pub blob_effects: Vec<BlobEffect>,
    /// Set by `map_states`: the object's `workflow_states` rows become this one
    /// (workflow, state).
    pub state: Option<StateRow>,
    /// Set with `keep = false` when the object was merged into another (its uid), not
    /// dropped: `split_partitions` folds a lone partition into its primary.
    pub merged_into: Option<String>,
}

/// Applies every step to one object.
///
/// # Errors
/// When the object's fields are not JSON (a message naming the uid).
pub(crate) fn apply(steps: &[Step], ctx: &Context, o: &mut Obj) -> Result<Outcome, String> {
    let mut out = Outcome {
        keep: true,
        blob_effects: Vec::new(),
        state: None,
        merged_into: None,
    };
    let mut path_starts: Option<Vec<usize>> = None;
    for step in steps {
        match &step.op {
            Op::Filter { action, when } => {
                let hit = matches(when, o)?;
                let keep = match action {
                    Action::Keep => hit,
                    Action::Drop => !hit,
                };
                if !keep {
                    out.keep = false;
                    return Ok(out);
                }
            }
            // Rows of `workflow_history` only: the per-object tables' pass renames them.
            Op::RenameWorkflow { .. } => {}
            Op::RenameType { from, to } => {
                if &o.portal_type == from {
                    o.portal_type = to.clone();
                    set_if_present(o, "portal_type", Value::from(to.as_str()))?;
                }
            }
            Op::RenameFields { types, fields } => {
                if !of_type(types, o) {
                    continue;
                }
                for (from, to) in fields {
                    if !o.may_have(from) {
                        continue;
                    }
                    let f = o.fields()?;
                    if let Some(v) = f.remove(from) {
                        if is_file(&v) {
                            out.blob_effects.push((from.clone(), Some(to.clone())));
                        }
                        f.insert(to.clone(), v);
                        o.dirty = true;
                        sync_title(o, to)?;
                    }
                }
            }
            Op::DropFields { types, fields } => {
                if of_type(types, o) {
                    for name in fields {
                        drop_field(o, name, &mut out)?;
                    }
                }
            }
            Op::CopyFields { types, fields } => {
                if of_type(types, o) {
                    for (from, to) in fields {
                        if !o.may_have(from) {
                            continue;
                        }
                        let f = o.fields()?;
                        // A file field's bytes are one `blobs` row: not copied.
                        if let Some(v) = f.get(from).filter(|v| !is_file(v)).cloned() {
                            f.insert(to.clone(), v);
                            o.dirty = true;
                            sync_title(o, to)?;
                        }
                    }
                }
            }
            Op::SetFields { types, values } => {
                if of_type(types, o) {
                    for (k, v) in values {
                        o.fields()?.insert(k.clone(), v.clone());
                        o.dirty = true;
                        sync_title(o, k)?;
                    }
                }
            }
            Op::MapValues {
                types,
                field,
                values,
                function,
                hidden_from,
            } => {
                if of_type(types, o) && o.may_have(field) {
                    map_value(o, field, values, *function, hidden_from.as_deref())?;
                }
            }
            Op::Move { from, to } => {
                // One scan of the text finds where its path strings start; each move then
                // checks only those, instead of searching the whole text again.
                if o.fields.is_none()
                    && !under(&o.path, from)
                    && !o.parent_path.as_deref().is_some_and(|pp| under(pp, from))
                {
                    let starts =
                        path_starts.get_or_insert_with(|| string_path_starts(&o.fields_text));
                    if !starts.iter().any(|&p| path_at(&o.fields_text, p, from)) {
                        continue;
                    }
                }
                move_object(o, from, to, ctx)?;
                path_starts = None; // the text may have been rewritten
            }
            Op::PrefixIds { fields, types, .. } => {
                if let Some(p) = &ctx.prefix {
                    prefix_object(o, p, types, fields)?;
                }
            }
            Op::Redact {
                types,
                fields,
                method,
                ..
            } => {
                if of_type(types, o) {
                    let salt = ctx.salts.get(&step.index).map(Vec::as_slice);
                    for name in fields {
                        redact(o, name, method, salt, &mut out)?;
                    }
                }
            }
            Op::FoldFields {
                types, via, fields, ..
            } => {
                if of_type(types, o)
                    && o.may_have(via)
                    && let Some(sources) = ctx.fold.get(&step.index)
                {
                    fold_fields(o, via, fields, sources)?;
                }
            }
            Op::NestFields {
                types,
                fields,
                into,
                null_as,
            } => {
                if of_type(types, o) {
                    nest_fields(o, fields, into, null_as.as_ref(), &mut out)?;
                }
            }
            Op::MapStates {
                types,
                workflow,
                states,
                when,
            } => {
                if of_type(types, o)
                    && let Some(state) = map_state(o, states, when)?
                {
                    out.state = Some((workflow.clone(), Some(state)));
                }
            }
            Op::SplitPartitions(spec) => {
                if let Some(plan) = ctx.partitions.get(&step.index) {
                    super::partitions::apply(spec, plan, o, &mut out)?;
                    if !out.keep {
                        return Ok(out);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Byte offsets of every string in `text` (JSON) that starts with `/`: the `/` after `"`.
fn string_path_starts(text: &str) -> Vec<usize> {
    memchr::memmem::find_iter(text.as_bytes(), b"\"/")
        .map(|i| i + 1)
        .collect()
}

/// Whether the string starting at `p` is `path` or lies under it (its end is `"` or `/`).
fn path_at(text: &str, p: usize, path: &str) -> bool {
    text.get(p..).is_some_and(|rest| {
        rest.starts_with(path) && matches!(rest.as_bytes().get(path.len()), Some(b'/' | b'"'))
    })
}

/// `nest_fields`: moves the source fields into one dict under `into` (replacing what `into`
/// held). Nothing changes when the object has none of the source fields.
fn nest_fields(
    o: &mut Obj,
    fields: &[(String, String)],
    into: &str,
    null_as: Option<&Value>,
    out: &mut Outcome,
) -> Result<(), String> {
    if !fields.iter().any(|(from, _)| o.may_have(from)) {
        return Ok(());
    }
    let f = o.fields()?;
    if !fields.iter().any(|(from, _)| f.contains_key(from)) {
        return Ok(());
    }
    let mut dict = Map::new();
    for (from, key) in fields {
        let v = match f.remove(from) {
            Some(v) if is_file(&v) => {
                out.blob_effects.push((from.clone(), None));
                v
            }
            Some(v) => v,
            None => Value::Null,
        };
        let v = match (v, null_as) {
            (Value::Null, Some(n)) => n.clone(),
            (v, _) => v,
        };
        dict.insert(key.clone(), v);
    }
    f.insert(into.to_string(), Value::Object(dict));
    o.dirty = true;
    Ok(())
}

/// The uid a reference value names: a `{"uid": ...}` dict or a bare uid string.
fn reference_uid(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Object(m) => m.get("uid").and_then(Value::as_str),
        _ => None,
    }
}

/// `fold_fields`: copies the named fields of the object `via` references. A source value that
/// is null or empty never blanks a target value the object already has.
fn fold_fields(
    o: &mut Obj,
    via: &str,
    fields: &[(String, String)],
    sources: &HashMap<String, Map<String, Value>>,
) -> Result<(), String> {
    let f = o.fields()?;
    let Some(src) = f
        .get(via)
        .and_then(reference_uid)
        .and_then(|u| sources.get(u))
    else {
        return Ok(());
    };
    let blank = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    let mut changed = false;
    for (from, to) in fields {
        let Some(v) = src.get(from) else { continue };
        if blank(v) && f.get(to).is_some_and(|cur| !blank(cur)) {
            continue;
        }
        if f.get(to) != Some(v) {
            f.insert(to.clone(), v.clone());
            changed = true;
        }
    }
    if changed {
        o.dirty = true;
    }
    Ok(())
}

/// `map_states`: the object's new state (also written to its row and its `review_state`
/// field, when it has one); `None` for an object without a state (its rows stay).
fn map_state(
    o: &mut Obj,
    states: &std::collections::BTreeMap<String, String>,
    when: &[(String, std::collections::BTreeMap<String, String>)],
) -> Result<Option<String>, String> {
    let mut state = o
        .review_state
        .as_ref()
        .map(|s| states.get(s).cloned().unwrap_or_else(|| s.clone()));
    for (field, map) in when {
        if !o.may_have(field) {
            continue;
        }
        if let Some(new) = o
            .fields()?
            .get(field)
            .and_then(Value::as_str)
            .and_then(|v| map.get(v))
        {
            state = Some(new.clone());
        }
    }
    if state != o.review_state {
        o.review_state = state.clone();
        if let Some(s) = &state {
            set_if_present(o, "review_state", Value::from(s.as_str()))?;
        }
    }
    Ok(state)
}

fn of_type(types: &[String], o: &Obj) -> bool {
    types.is_empty() || types.iter().any(|t| t == &o.portal_type)
}

fn matches(c: &Conditions, o: &mut Obj) -> Result<bool, String> {
    if !c.types.is_empty() && !c.types.contains(&o.portal_type) {
        return Ok(false);
    }
    if !c.paths.is_empty() && !c.paths.iter().any(|p| under(&o.path, p)) {
        return Ok(false);
    }
    if !c.states.is_empty() {
        let st = o.review_state.as_deref().unwrap_or("");
        if !c.states.iter().any(|s| s == st) {
            return Ok(false);
        }
    }
    let in_range = |v: &Option<String>, after: &Option<String>, before: &Option<String>| {
        let v = v.as_deref().unwrap_or("");
        after.as_deref().is_none_or(|a| !v.is_empty() && v >= a)
            && before.as_deref().is_none_or(|b| !v.is_empty() && v < b)
    };
    if !in_range(&o.created, &c.created_after, &c.created_before)
        || !in_range(&o.modified, &c.modified_after, &c.modified_before)
    {
        return Ok(false);
    }
    if let Some((field, values)) = &c.field {
        let v = o.fields()?.get(field).cloned().unwrap_or(Value::Null);
        if !values.contains(&v) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn is_file(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key("sha256"))
}

fn set_if_present(o: &mut Obj, key: &str, v: Value) -> Result<(), String> {
    if o.may_have(key) {
        let f = o.fields()?;
        if f.contains_key(key) {
            f.insert(key.to_string(), v);
            o.dirty = true;
        }
    }
    Ok(())
}

/// A field step wrote `key`: when it is `title`, the row's title follows.
fn sync_title(o: &mut Obj, key: &str) -> Result<(), String> {
    if key == "title" {
        let t = o.fields()?.get("title").cloned();
        o.title = match t {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
    }
    Ok(())
}

fn drop_field(o: &mut Obj, name: &str, out: &mut Outcome) -> Result<(), String> {
    if o.may_have(name) {
        let f = o.fields()?;
        if let Some(v) = f.remove(name) {
            if is_file(&v) {
                out.blob_effects.push((name.to_string(), None));
            }
            o.dirty = true;
        }
    }
    Ok(())
}

fn map_value(
    o: &mut Obj,
    field: &str,
    values: &std::collections::BTreeMap<String, Value>,
    function: Option<MapFunction>,
    hidden_from: Option<&str>,
) -> Result<(), String> {
    let f = o.fields()?;
    let hidden = super::records::hidden_flags(hidden_from.and_then(|h| f.get(h)));
    let Some(v) = f.get_mut(field) else {
        return Ok(());
    };
    let key = match &*v {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    if let Some(new) = key.as_ref().and_then(|k| values.get(k)) {
        *v = new.clone();
    } else if let Some(func) = function {
        *v = apply_function(func, std::mem::take(v), &hidden);
    } else {
        return Ok(());
    }
    o.dirty = true;
    sync_title(o, field)
}

/// Applies a value function; `hidden` holds the per-service hidden flags the service functions
/// read (empty without `hidden_from`: every service visible).
fn apply_function(func: MapFunction, v: Value, hidden: &HashMap<String, bool>) -> Value {
    let is_hidden = |uid: &Value| {
        uid.as_str()
            .and_then(|u| hidden.get(u))
            .copied()
            .unwrap_or(false)
    };
    let uid_of = |r: &Value| match r {
        Value::Object(m) => m.get("uid").cloned(),
        Value::String(s) => Some(Value::from(s.as_str())),
        _ => None,
    };
    match (func, v) {
        (MapFunction::SecondsFromDuration, Value::Object(m)) => {
            let n = |k: &str| {
                m.get(k)
                    .and_then(|x| x.as_f64().or_else(|| x.as_str()?.parse().ok()))
                    .unwrap_or(0.0)
            };
            let secs = n("days") * 86_400.0 + n("hours") * 3_600.0 + n("minutes") * 60.0;
            serde_json::Number::from_f64(secs).map_or(Value::Null, Value::Number)
        }
        (MapFunction::UidsFromReferences, Value::Array(a)) => {
            Value::Array(a.iter().filter_map(uid_of).collect())
        }
        (MapFunction::UidsFromReferences, r @ Value::Object(_)) => {
            Value::Array(uid_of(&r).into_iter().collect())
        }
        (MapFunction::UidsFromReferences, Value::Null) => Value::Array(Vec::new()),
        (MapFunction::UidFromReference, r @ Value::Object(_)) => uid_of(&r).unwrap_or(Value::Null),
        (MapFunction::UidFromReference, Value::Array(a)) => {
            a.first().and_then(uid_of).unwrap_or(Value::Null)
        }
        (MapFunction::Lowercase, Value::String(s)) => Value::from(s.to_lowercase()),
        (MapFunction::ServiceRecordsFromReferences, Value::Array(a)) => Value::Array(
            a.iter()
                .filter_map(uid_of)
                .map(|uid| serde_json::json!({"hidden": is_hidden(&uid), "uid": uid}))
                .collect(),
        ),
        (MapFunction::ServiceRecordsFromReferences, Value::Null) => Value::Array(Vec::new()),
        (MapFunction::NumberFromString, Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => {
                serde_json::Number::from_f64(n).map_or(Value::String(s), Value::Number)
            }
            _ => Value::String(s),
        },
        (MapFunction::DecimalDegreesFromDms, Value::Object(m)) => decimal_degrees(&m),
        (MapFunction::TemplateServicesFromAnalyses, Value::Array(a)) => Value::Array(
            a.iter()
                .filter_map(|s| {
                    let uid = s.get("service_uid")?.as_str()?;
                    let part = s.get("partition").and_then(Value::as_str).unwrap_or("");
                    let hidden = hidden.get(uid).copied().unwrap_or(false);
                    Some(serde_json::json!({"uid": uid, "part_id": part, "hidden": hidden}))
                })
                .collect(),
        ),
        (MapFunction::TemplateServicesFromAnalyses, Value::Null) => Value::Array(Vec::new()),
        (MapFunction::TemplatePartitionsFromRecords, v) => super::records::template_partitions(v),
        (MapFunction::AddressRecordsFromTypes, v) => super::records::address_records(v),
        (MapFunction::UidRecordsFromReferences, Value::Array(a)) => Value::Array(
            a.iter()
                .filter_map(uid_of)
                .map(|uid| serde_json::json!({"uid": uid}))
                .collect(),
        ),
        (MapFunction::UidRecordsFromReferences, Value::Null) => Value::Array(Vec::new()),
        (MapFunction::Length, Value::Array(a)) => Value::from(a.len()),
        (MapFunction::Length, Value::Null) => Value::from(0),
        (MapFunction::WorksheetLayoutFromRecords, v) => super::records::worksheet_layout(v),
        (MapFunction::StickerTemplatesFromRecords, v) => super::records::sticker_templates(v),
        (_, other) => other,
    }
}

/// `{degrees, minutes, seconds, bearing}` (strings or numbers) to decimal degrees as a string
/// rounded to 7 decimals without trailing zeros; `""` when degrees, minutes and seconds are all
/// empty.
fn decimal_degrees(m: &serde_json::Map<String, Value>) -> Value {
    let part = |k: &str| -> Option<f64> {
        match m.get(k)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) if !s.trim().is_empty() => s.trim().parse().ok(),
            _ => None,
        }
    };
    let (d, mi, s) = (part("degrees"), part("minutes"), part("seconds"));
    if d.is_none() && mi.is_none() && s.is_none() {
        return Value::from("");
    }
    let mut dd = (d.unwrap_or(0.0) + mi.unwrap_or(0.0) / 60.0 + s.unwrap_or(0.0) / 3600.0).abs();
    let bearing = m.get("bearing").and_then(Value::as_str).unwrap_or("");
    if matches!(bearing.trim(), "S" | "W" | "s" | "w") {
        dd = -dd;
    }
    let text = format!("{dd:.7}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    Value::from(text)
}

/// The salted hash of a value: `h:` and the first 16 hex digits of
/// sha256(salt, 0x00, canonical JSON of the value).
pub(crate) fn salted_hash(salt: &[u8], v: &Value) -> Value {
    let mut h = Sha256::new();
    h.update(salt);
    h.update([0u8]);
    h.update(crate::jsonx::canonical(v));
    let hex = crate::jsonx::hex(&h.finalize());
    Value::from(format!("h:{}", &hex[..16]))
}

fn redact(
    o: &mut Obj,
    name: &str,
    method: &Redaction,
    salt: Option<&[u8]>,
    out: &mut Outcome,
) -> Result<(), String> {
    let replace = |v: &Value| -> Option<Value> {
        if v.is_null() || v.as_str() == Some("") {
            return None;
        }
        match method {
            Redaction::Hash => Some(salted_hash(salt.unwrap_or_default(), v)),
            Redaction::Mask(with) => Some(with.clone()),
            Redaction::Drop => None,
        }
    };
    if name == "title"
        && let Some(t) = o.title.clone()
    {
        if matches!(method, Redaction::Drop) {
            o.title = None;
        } else if let Some(v) = replace(&Value::from(t)) {
            o.title = Some(match v {
                Value::String(s) => s,
                other => other.to_string(),
            });
        }
    }
    if matches!(method, Redaction::Drop) {
        return drop_field(o, name, out);
    }
    if !o.may_have(name) {
        return Ok(());
    }
    let f = o.fields()?;
    if let Some(v) = f.get_mut(name)
        && let Some(new) = replace(v)
    {
        *v = new;
        o.dirty = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn coordinates_become_decimal_degrees_as_senaite_core_computes_them() {
        let dms = |d: &str, m: &str, s: &str, b: &str| {
            apply_function(
                MapFunction::DecimalDegreesFromDms,
                serde_json::json!({"degrees": d, "minutes": m, "seconds": s, "bearing": b}),
                &HashMap::new(),
            )
        };
        assert_eq!(dms("41", "23", "10.5", "N"), "41.38625");
        assert_eq!(dms("33", "52", "0", "S"), "-33.8666667");
        assert_eq!(dms("", "", "", ""), "");
        assert_eq!(
            apply_function(
                MapFunction::NumberFromString,
                Value::from("12.50"),
                &HashMap::new()
            ),
            12.5
        );
        assert_eq!(
            apply_function(
                MapFunction::NumberFromString,
                Value::from("n/a"),
                &HashMap::new()
            ),
            "n/a"
        );
    }

    use super::*;

    fn obj(pt: &str, path: &str, fields: Value) -> Obj {
        let (parent, id) = path.rsplit_once('/').unwrap_or(("", path));
        Obj {
            uid: "u".repeat(32),
            portal_type: pt.into(),
            path: path.into(),
            parent_uid: Some("p".repeat(32)),
            parent_path: Some(parent.into()),
            id: id.into(),
            title: Some(id.into()),
            created: Some("2025-03-01T00:00:00+00:00".into()),
            modified: None,
            review_state: Some("active".into()),
            content_hash: String::new(),
            fields_text: fields.to_string(),
            sources: "{}".into(),
            fields: None,
            dirty: false,
        }
    }

    fn step(op: Op) -> Vec<Step> {
        vec![Step {
            index: 1,
            label: "t".into(),
            op,
        }]
    }

    #[test]
    fn service_functions_read_hidden_flags_from_the_sibling_field() {
        let map = |field: &str, function| {
            step(Op::MapValues {
                types: vec![],
                field: field.into(),
                values: Default::default(),
                function: Some(function),
                hidden_from: Some("AnalysisServicesSettings".into()),
            })
        };
        let settings =
            serde_json::json!([{"uid": "a", "hidden": true}, {"uid": "b", "hidden": false}]);
        let ctx = Context::default();
        let mut p = obj(
            "AnalysisProfile",
            "/senaite/setup/analysisprofiles/analysisprofile-1",
            serde_json::json!({"Service": [{"uid": "a"}, {"uid": "b"}, {"uid": "c"}],
                               "AnalysisServicesSettings": settings}),
        );
        apply(
            &map("Service", MapFunction::ServiceRecordsFromReferences),
            &ctx,
            &mut p,
        )
        .unwrap();
        let f = p.fields().unwrap();
        assert_eq!(
            f["Service"],
            serde_json::json!([{"uid": "a", "hidden": true}, {"uid": "b", "hidden": false},
                               {"uid": "c", "hidden": false}])
        );
        assert_eq!(f["AnalysisServicesSettings"], settings, "the sibling stays");
        let mut t = obj(
            "SampleTemplate",
            "/senaite/setup/sampletemplates/artemplate-1",
            serde_json::json!({"Analyses": [{"service_uid": "a", "partition": "part-2"}],
                               "AnalysisServicesSettings": settings}),
        );
        apply(
            &map("Analyses", MapFunction::TemplateServicesFromAnalyses),
            &ctx,
            &mut t,
        )
        .unwrap();
        assert_eq!(
            t.fields().unwrap()["Analyses"],
            serde_json::json!([{"uid": "a", "part_id": "part-2", "hidden": true}])
        );
    }

    #[test]
    fn copy_fields_copies_present_values_and_leaves_the_source() {
        let steps = step(Op::CopyFields {
            types: vec!["WorksheetTemplate".into()],
            fields: vec![
                ("Layout".into(), "NumOfPositions".into()),
                ("Missing".into(), "other".into()),
                ("File".into(), "file_copy".into()),
            ],
        });
        let ctx = Context::default();
        let layout = serde_json::json!([{"pos": "1", "type": "a"}]);
        let file = serde_json::json!({"filename": "a.pdf", "sha256": "ab"});
        let mut o = obj(
            "WorksheetTemplate",
            "/senaite/bika_setup/bika_worksheettemplates/worksheettemplate-1",
            serde_json::json!({"Layout": layout, "NumOfPositions": 9, "File": file}),
        );
        apply(&steps, &ctx, &mut o).unwrap();
        let f = o.fields().unwrap().clone();
        assert_eq!(f.get("Layout"), Some(&layout));
        assert_eq!(f.get("NumOfPositions"), Some(&layout));
        assert!(!f.contains_key("other") && !f.contains_key("file_copy"));
        assert!(o.dirty);

        let mut other = obj(
            "Client",
            "/senaite/clients/client-1",
            serde_json::json!({"Layout": 1}),
        );
        apply(&steps, &ctx, &mut other).unwrap();
        assert!(!other.dirty && !other.fields().unwrap().contains_key("NumOfPositions"));
    }

    #[test]
    fn uid_records_and_length_functions() {
        let none = HashMap::new();
        let refs = serde_json::json!([{"uid": "a", "url": "/x"}, "b", 3]);
        assert_eq!(
            apply_function(MapFunction::UidRecordsFromReferences, refs, &none),
            serde_json::json!([{"uid": "a"}, {"uid": "b"}])
        );
        assert_eq!(
            apply_function(MapFunction::UidRecordsFromReferences, Value::Null, &none),
            serde_json::json!([])
        );
        let rows = serde_json::json!([{}, {}, {}]);
        assert_eq!(apply_function(MapFunction::Length, rows, &none), 3);
        assert_eq!(apply_function(MapFunction::Length, Value::Null, &none), 0);
        assert_eq!(
            apply_function(MapFunction::Length, Value::from("x"), &none),
            "x"
        );
    }

    #[test]
    fn nest_fields_gathers_fields_into_one_dict_and_reads_null_as_given() {
        let steps = step(Op::NestFields {
            types: vec!["SamplePoint".into()],
            fields: vec![
                ("Latitude".into(), "latitude".into()),
                ("Longitude".into(), "longitude".into()),
            ],
            into: "location".into(),
            null_as: Some(Value::from("")),
        });
        let ctx = Context::default();
        let mut o = obj(
            "SamplePoint",
            "/senaite/setup/samplepoints/samplepoint-1",
            serde_json::json!({"Latitude": null, "Longitude": "12.5", "location": null, "Elevation": "120 m"}),
        );
        let out = apply(&steps, &ctx, &mut o).unwrap();
        assert!(out.keep);
        let f = o.fields().unwrap().clone();
        assert_eq!(
            f.get("location"),
            Some(&serde_json::json!({"latitude": "", "longitude": "12.5"}))
        );
        assert!(!f.contains_key("Latitude") && !f.contains_key("Longitude"));
        assert_eq!(f.get("Elevation"), Some(&Value::from("120 m")));
        assert!(o.dirty);

        // Without null_as a missing source reads null; other types and objects without any
        // source field are left alone.
        let bare = step(Op::NestFields {
            types: vec![],
            fields: vec![
                ("Latitude".into(), "latitude".into()),
                ("Longitude".into(), "longitude".into()),
            ],
            into: "location".into(),
            null_as: None,
        });
        let mut half = obj("SamplePoint", "/s/p", serde_json::json!({"Latitude": "1"}));
        apply(&bare, &ctx, &mut half).unwrap();
        assert_eq!(
            half.fields().unwrap().get("location"),
            Some(&serde_json::json!({"latitude": "1", "longitude": null}))
        );
        let mut none = obj("SamplePoint", "/s/q", serde_json::json!({"location": "x"}));
        apply(&bare, &ctx, &mut none).unwrap();
        assert!(!none.dirty);
        assert_eq!(
            none.fields().unwrap().get("location"),
            Some(&Value::from("x"))
        );
        let mut other = obj("SampleType", "/s/t", serde_json::json!({"Latitude": "1"}));
        apply(&steps, &ctx, &mut other).unwrap();
        assert!(!other.dirty);
        assert_eq!(
            other.fields().unwrap().get("Latitude"),
            Some(&Value::from("1"))
        );
    }

    #[test]
    fn fold_fields_copies_the_referenced_objects_fields_without_blanking() {
        let steps = step(Op::FoldFields {
            types: vec!["AnalysisRequest".into()],
            via: "Sample".into(),
            from_types: vec!["Sample".into()],
            fields: vec![
                ("DateSampled".into(), "DateSampled".into()),
                ("StorageLocation".into(), "StorageLocation".into()),
                ("SamplingDeviation".into(), "Deviation".into()),
            ],
        });
        let mut src = Map::new();
        src.insert(
            "DateSampled".into(),
            Value::from("2026-11-26T22:27:00+00:00"),
        );
        src.insert("StorageLocation".into(), Value::Null);
        src.insert("SamplingDeviation".into(), Value::from("dev"));
        let mut ctx = Context::default();
        ctx.fold.entry(1).or_default().insert("s".repeat(32), src);
        let mut ar = obj(
            "AnalysisRequest",
            "/lims/clients/client-1/W-0001-R01",
            serde_json::json!({"Sample": {"uid": "s".repeat(32)}, "DateSampled": null,
                               "StorageLocation": "shelf"}),
        );
        apply(&steps, &ctx, &mut ar).unwrap();
        let f = ar.fields().unwrap().clone();
        assert_eq!(f["DateSampled"], "2026-11-26T22:27:00+00:00");
        assert_eq!(
            f["StorageLocation"], "shelf",
            "a null source value never blanks"
        );
        assert_eq!(f["Deviation"], "dev");
        assert!(ar.dirty);
        // An object referencing no folded source is untouched.
        let mut other = obj(
            "AnalysisRequest",
            "/lims/clients/client-1/W-0002-R01",
            serde_json::json!({"Sample": {"uid": "x".repeat(32)}}),
        );
        apply(&steps, &ctx, &mut other).unwrap();
        assert!(!other.dirty);
    }

    #[test]
    fn map_states_merges_a_parallel_workflows_state() {
        let mut when = std::collections::BTreeMap::new();
        when.insert("cancelled".to_string(), "cancelled".to_string());
        let mut states = std::collections::BTreeMap::new();
        states.insert("to_be_sampled".to_string(), "to_be_sampled".to_string());
        let steps = step(Op::MapStates {
            types: vec!["AnalysisRequest".into()],
            workflow: "senaite_sample_workflow".into(),
            states,
            when: vec![("cancellation_state".into(), when)],
        });
        let ctx = Context::default();
        let mut cancelled = obj(
            "AnalysisRequest",
            "/lims/clients/client-1/W-0004-R01",
            serde_json::json!({"review_state": "sample_due", "cancellation_state": "cancelled"}),
        );
        cancelled.review_state = Some("sample_due".into());
        let out = apply(&steps, &ctx, &mut cancelled).unwrap();
        assert_eq!(cancelled.review_state.as_deref(), Some("cancelled"));
        assert_eq!(cancelled.fields().unwrap()["review_state"], "cancelled");
        assert_eq!(
            out.state,
            Some(("senaite_sample_workflow".into(), Some("cancelled".into())))
        );
        let mut active = obj(
            "AnalysisRequest",
            "/lims/clients/client-1/W-0001-R01",
            serde_json::json!({"review_state": "sample_due", "cancellation_state": "active"}),
        );
        active.review_state = Some("sample_due".into());
        let out = apply(&steps, &ctx, &mut active).unwrap();
        assert_eq!(active.review_state.as_deref(), Some("sample_due"));
        assert!(!active.dirty);
        assert_eq!(
            out.state,
            Some(("senaite_sample_workflow".into(), Some("sample_due".into())))
        );
    }

    #[test]
    fn functions_map_1x_values_to_2x_shapes() {
        let d = serde_json::json!({"days": 30, "hours": 0, "minutes": 0});
        assert_eq!(
            apply_function(MapFunction::SecondsFromDuration, d, &HashMap::new()),
            serde_json::json!(2592000.0)
        );
        let refs = serde_json::json!([{"uid": "a", "url": "/x"}, {"uid": "b"}]);
        assert_eq!(
            apply_function(MapFunction::UidsFromReferences, refs, &HashMap::new()),
            serde_json::json!(["a", "b"])
        );
    }

    #[test]
    fn salted_hash_is_deterministic_and_salt_dependent() {
        let v = Value::from("gina@example.org");
        assert_eq!(salted_hash(b"a", &v), salted_hash(b"a", &v));
        assert_ne!(salted_hash(b"a", &v), salted_hash(b"b", &v));
    }

    fn steps(text: &str) -> Vec<Step> {
        let p = super::super::spec::parse(std::path::Path::new("t.toml"), text.as_bytes()).unwrap();
        p.steps
    }

    #[test]
    fn filter_combines_every_condition() {
        let s = steps(
            "name = \"t\"\n[[steps]]\nop = \"filter\"\naction = \"drop\"\n\
             types = [\"Contact\"]\nstates = [\"active\"]\ncreated_after = \"2025-01-01\"\n\
             field = \"Firstname\"\nvalues = [\"Gina\"]\n",
        );
        let ctx = Context::default();
        let mut gina = obj(
            "Contact",
            "/s/c/contact-1",
            serde_json::json!({"Firstname": "Gina"}),
        );
        assert!(!apply(&s, &ctx, &mut gina).unwrap().keep);
        let mut sam = obj(
            "Contact",
            "/s/c/contact-2",
            serde_json::json!({"Firstname": "Sam"}),
        );
        assert!(apply(&s, &ctx, &mut sam).unwrap().keep);
        let mut old = obj(
            "Contact",
            "/s/c/contact-3",
            serde_json::json!({"Firstname": "Gina"}),
        );
        old.created = Some("2024-12-31T00:00:00+00:00".into());
        assert!(
            apply(&s, &ctx, &mut old).unwrap().keep,
            "created before the range"
        );
        assert!(!sam.dirty && sam.fields.is_some());
    }

    #[test]
    fn field_steps_touch_only_their_types_and_keep_title_in_step() {
        let s = steps(
            "name = \"t\"\n[[steps]]\nop = \"rename_fields\"\ntypes = [\"Client\"]\n\
             fields = { Name = \"name\" }\n[[steps]]\nop = \"set_fields\"\ntypes = [\"Client\"]\n\
             values = { title = \"New\" }\n[[steps]]\nop = \"drop_fields\"\nfields = [\"Phone\"]\n",
        );
        let ctx = Context::default();
        let mut c = obj(
            "Client",
            "/s/clients/client-1",
            serde_json::json!({"Name": "A", "Phone": "1"}),
        );
        apply(&s, &ctx, &mut c).unwrap();
        assert_eq!(c.title.as_deref(), Some("New"));
        let row = c.into_row();
        assert_eq!(row[11].as_str(), Some(r#"{"name":"A","title":"New"}"#));
        let mut other = obj("Contact", "/s/x", serde_json::json!({"Name": "A"}));
        let before = other.clone();
        apply(&s, &ctx, &mut other).unwrap();
        assert_eq!(
            other.into_row(),
            before.into_row(),
            "untouched: same text and hash"
        );
    }

    #[test]
    fn redact_hashes_masks_and_drops_but_leaves_empty_values() {
        let s = steps(
            "name = \"t\"\n[[steps]]\nop = \"redact\"\nmethod = \"hash\"\nfields = [\"title\", \"E\"]\n\
             [[steps]]\nop = \"redact\"\nmethod = \"mask\"\nfields = [\"P\"]\n\
             [[steps]]\nop = \"redact\"\nmethod = \"drop\"\nfields = [\"S\"]\n",
        );
        let ctx = Context {
            salts: [(1, b"salt".to_vec())].into(),
            ..Context::default()
        };
        let mut c = obj(
            "Contact",
            "/s/c/contact-1",
            serde_json::json!({"E": "a@b", "P": "", "S": "x"}),
        );
        apply(&s, &ctx, &mut c).unwrap();
        let f = c.fields().unwrap().clone();
        assert_eq!(f["E"], salted_hash(b"salt", &Value::from("a@b")));
        assert_eq!(f["P"], "", "empty stays empty");
        assert!(!f.contains_key("S"));
        assert_eq!(
            c.title.as_deref(),
            salted_hash(b"salt", &Value::from("contact-1")).as_str()
        );
    }

    #[test]
    fn moves_found_by_one_scan_equal_moves_on_parsed_fields() {
        let pipeline = steps(
            r#"name = "moves"
[[steps]]
op = "move"
from = "/s/bika_setup/bika_sampletypes"
to = "/s/setup/sampletypes"
[[steps]]
op = "move"
from = "/s/bika_setup/bika_samplepoints"
to = "/s/setup/samplepoints"
[[steps]]
op = "move"
from = "/s/bika_setup/bika_departments"
to = "/s/setup/departments"
"#,
        );
        let fields = serde_json::json!({
            "SampleType": {"url": "/s/bika_setup/bika_sampletypes/st-1"},
            "SamplePoint": {"url": "/s/bika_setup/bika_samplepoints"},
            "Other": ["/s/bika_setup/bika_departments-old/d-1", "not /s/bika_setup/bika_departments"],
            "/s/bika_setup/bika_departments/k": "a key",
        });
        let ctx = Context::default();
        // Fast: the text as extracted. Reference: the same object with its fields parsed first,
        // which takes the parsed way in every step.
        let mut fast = obj("AnalysisRequest", "/s/clients/c/W-1", fields.clone());
        apply(&pipeline, &ctx, &mut fast).unwrap();
        let mut parsed = obj("AnalysisRequest", "/s/clients/c/W-1", fields);
        parsed.fields().unwrap();
        apply(&pipeline, &ctx, &mut parsed).unwrap();
        assert!(fast.fields.is_none(), "no step needed to parse");
        assert!(fast.dirty && parsed.dirty);
        let (fast, parsed) = (fast.into_row(), parsed.into_row());
        assert_eq!(fast, parsed);
        let text = fast[11].as_str().unwrap();
        assert!(text.contains("\"/s/setup/sampletypes/st-1\""), "{text}");
        assert!(text.contains("\"/s/setup/samplepoints\""), "{text}");
        assert!(text.contains("bika_departments-old"), "{text}");
    }
}
