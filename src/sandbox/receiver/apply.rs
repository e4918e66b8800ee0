//! `POST sync/apply`: each record of the batch finds its object by UID (moves it when the record
//! names another path; adopts one of the same type at its path, else creates it in its container), is skipped when its `load_hash` was
//! applied and the object not edited since, defers reference fields whose targets do not exist,
//! and replaces the object with the one `sandbox::rows` rebuilds. The whole batch runs under the
//! site's write lock; a record is checked completely before anything of it is written, so a
//! failing record leaves no trace (the savepoint of the real receiver) and the others commit.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::super::data::{BlobBody, SiteBlob};
use super::super::faults::FaultBook;
use super::super::reply::Reply;
use super::super::rows;
use super::super::server::{Ctx, Shared};
use super::super::site::Site;
use super::{Applied, ReceiverOptions, error, json_body, object_dates};

/// Record keys that name the record itself, never a reference.
const IDENTITY_KEYS: &[&str] = &["uid", "parent_uid"];

/// `POST sync/apply`.
pub(super) fn apply(ctx: &Ctx<'_>, shared: &Shared, opts: &ReceiverOptions) -> Reply {
    let body = match json_body(ctx, opts) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let Some(records) = body.get("records").and_then(Value::as_array) else {
        return error(ctx, 400, "the request has no records list");
    };
    if records.len() > opts.max_batch {
        let message = format!(
            "{} records sent, at most {} allowed",
            records.len(),
            opts.max_batch
        );
        return error(ctx, 400, &message);
    }
    let mut site = shared.site.write().unwrap_or_else(|p| p.into_inner());
    let env = Env {
        origin: ctx.origin,
        opts,
        faults: &shared.faults,
    };
    let items: Vec<Value> = records
        .iter()
        .map(|record| {
            let uid = record.get("uid").and_then(Value::as_str).unwrap_or("");
            match apply_one(&mut site, record, &env) {
                Ok(item) => item,
                Err(message) => {
                    tracing::debug!(uid, error = %message, "Sandbox receiver failed a record.");
                    outcome(
                        uid,
                        "failed",
                        None,
                        None,
                        &[],
                        &BTreeMap::new(),
                        Some(&message),
                    )
                }
            }
        })
        .collect();
    Reply::json(
        200,
        &json!({"items": items, "_runtime": super::runtime(ctx.started)}),
    )
}

/// What every record needs besides the site.
struct Env<'a> {
    origin: &'a str,
    opts: &'a ReceiverOptions,
    faults: &'a FaultBook,
}

/// The identity of a record.
struct Head {
    uid: String,
    portal_type: String,
    path: String,
    parent_path: Option<String>,
    load_hash: String,
}

impl Head {
    fn of(record: &Value) -> Result<Head, String> {
        let s = |k: &str| {
            record
                .get(k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let uid = s("uid").ok_or("the record has no uid")?;
        let need = |k: &str| s(k).ok_or_else(|| format!("record {uid} has no {k}"));
        Ok(Head {
            portal_type: need("portal_type")?,
            path: need("path")?,
            load_hash: need("load_hash")?,
            parent_path: s("parent_path"),
            uid,
        })
    }
}

/// An apply item.
fn outcome(
    uid: &str,
    status: &str,
    path: Option<&str>,
    modified: Option<&str>,
    deferred: &[String],
    field_errors: &BTreeMap<String, String>,
    error: Option<&str>,
) -> Value {
    json!({"uid": uid, "status": status, "path": path, "modified": modified,
        "deferred_fields": deferred, "field_errors": field_errors, "error": error})
}

/// Where a record goes: an object that has its uid, one of its type at its path (adopted), or
/// a new one in its container.
enum Target {
    Existing,
    /// The uid is at this other path: the object moves (protocol 2).
    Move(String),
    Adopt(String),
    Create,
}

fn target(site: &Site, head: &Head) -> Result<Target, String> {
    if let Some(p) = site.by_uid(&head.uid) {
        if p.portal_type != head.portal_type {
            return Err(format!(
                "{} is a {} in the destination, the record says {}",
                head.uid, p.portal_type, head.portal_type
            ));
        }
        if p.path != head.path {
            if let Some(other) = site.by_path(&head.path) {
                return Err(format!(
                    "cannot move {} to {}: taken by {}",
                    p.path, head.path, other.uid
                ));
            }
            if !container_exists(site, head) {
                return Err(format!(
                    "cannot move {} to {}: no container there",
                    p.path, head.path
                ));
            }
            return Ok(Target::Move(p.path.clone()));
        }
        return Ok(Target::Existing);
    }
    if let Some(p) = site.by_path(&head.path) {
        if p.portal_type == head.portal_type {
            return Ok(Target::Adopt(p.uid.clone()));
        }
        return Err(format!(
            "{} is taken by a {} ({})",
            head.path, p.portal_type, p.uid
        ));
    }
    if !container_exists(site, head) {
        return Err(format!(
            "the container {} of {} does not exist",
            container_of(head),
            head.uid
        ));
    }
    Ok(Target::Create)
}

fn container_of(head: &Head) -> String {
    head.parent_path
        .clone()
        .or_else(|| head.path.rsplit_once('/').map(|(p, _)| p.to_owned()))
        .unwrap_or_default()
}

fn container_exists(site: &Site, head: &Head) -> bool {
    let container = container_of(head);
    container == site.site_path() || site.by_path(&container).is_some()
}

/// Applies one record; `Err` fails it with nothing written.
fn apply_one(site: &mut Site, record: &Value, env: &Env<'_>) -> Result<Value, String> {
    let head = Head::of(record)?;
    let faults = env.faults.take_record(&head.uid);
    if let Some(message) = faults.record {
        return Err(message);
    }
    if let Some(types) = &env.opts.portal_types
        && !types.contains(&head.portal_type)
    {
        return Err(format!(
            "the destination has no portal_type {}",
            head.portal_type
        ));
    }
    let target = target(site, &head)?;
    let unknown = unknown_fields(record, &head.portal_type, env.opts);
    if matches!(target, Target::Existing)
        && let (Some(applied), Some((modified, _))) = (
            site.sync.applied.get(&head.uid),
            object_dates(site, &head.uid),
        )
        && applied.hash == head.load_hash
        && applied.modified == modified
    {
        let item = outcome(
            &head.uid,
            "unchanged",
            Some(&head.path),
            Some(&modified),
            &[],
            &BTreeMap::new(),
            None,
        );
        return Ok(with_unknown(item, &unknown));
    }
    let mut record = record.clone();
    if let Some(Value::Object(fields)) = record.get_mut("fields") {
        for field in &unknown {
            fields.remove(field);
        }
    }
    let deferred = missing_references(site, &record, &head.uid);
    let mut field_errors = faults.fields;
    field_errors.extend(missing_blobs(site, &record));
    if let Some(Value::Object(fields)) = record.get_mut("fields") {
        for field in deferred.iter().chain(field_errors.keys()) {
            if fields.contains_key(field) {
                fields.insert(field.clone(), Value::Null);
            }
        }
    }
    let catalog = site.catalog_for_type(&head.portal_type);
    let rebuilt = rows::site_object(&record, env.origin, catalog)?;
    // Everything is checked: commit. (A move takes the object to its new path; its
    // descendants move when their own records, which a delta always carries, arrive.)
    match &target {
        Target::Adopt(old) => site.remove(old),
        Target::Move(_) => site.remove(&head.uid),
        Target::Existing | Target::Create => {}
    }
    let moved_from = match &target {
        Target::Move(from) => Some(from.clone()),
        _ => None,
    };
    site.insert(&rebuilt.object);
    attach_blobs(site, rebuilt.downloads, &field_errors);
    let (modified, _) = object_dates(site, &head.uid).unwrap_or_default();
    if deferred.is_empty() && field_errors.is_empty() {
        let applied = Applied {
            hash: head.load_hash.clone(),
            modified: modified.clone(),
            accepted: false,
        };
        site.sync.applied.insert(head.uid.clone(), applied);
    } else {
        site.sync.applied.remove(&head.uid);
    }
    site.sync
        .records
        .insert(head.uid.clone(), record.to_string().into_boxed_str());
    let status = if !field_errors.is_empty() {
        "partial"
    } else if !deferred.is_empty() {
        "deferred"
    } else if matches!(target, Target::Create) {
        "created"
    } else {
        "updated"
    };
    let mut item = outcome(
        &head.uid,
        status,
        Some(&head.path),
        Some(&modified),
        &deferred,
        &field_errors,
        None,
    );
    if let (Some(from), Value::Object(m)) = (moved_from, &mut item) {
        m.insert("moved_from".into(), Value::String(from));
    }
    Ok(with_unknown(item, &unknown))
}

/// The record's field keys with a value (not null, `""`, `[]` or `{}`) that
/// [`ReceiverOptions::unknown_fields`] says this destination has no place for (sorted).
fn unknown_fields(record: &Value, portal_type: &str, opts: &ReceiverOptions) -> Vec<String> {
    let (Some(lacking), Some(Value::Object(fields))) =
        (opts.unknown_fields.get(portal_type), record.get("fields"))
    else {
        return Vec::new();
    };
    let mut out: Vec<String> = fields
        .iter()
        .filter(|(k, v)| lacking.contains(k) && crate::jsonx::has_value(v))
        .map(|(k, _)| k.clone())
        .collect();
    out.sort();
    out
}

/// The item with its `unknown_fields`.
fn with_unknown(mut item: Value, unknown: &[String]) -> Value {
    if let Value::Object(m) = &mut item {
        m.insert("unknown_fields".into(), json!(unknown));
    }
    item
}

/// File fields whose blob was not uploaded (field -> reason).
fn missing_blobs(site: &Site, record: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let rows = record.get("blobs").and_then(Value::as_array);
    for b in rows.into_iter().flatten() {
        let field = b.get("field").and_then(Value::as_str).unwrap_or("");
        let sha = b.get("sha256").and_then(Value::as_str).unwrap_or("");
        if !site.sync.uploads.get(sha).is_some_and(|u| u.complete) {
            let reason = format!("the blob {sha} was not uploaded (sync/blob/{sha})");
            out.insert(field.to_owned(), reason);
        }
    }
    out
}

/// Serves the staged bytes behind each download of a written object (rejected fields aside).
fn attach_blobs(
    site: &mut Site,
    downloads: Vec<rows::Download>,
    field_errors: &BTreeMap<String, String>,
) {
    for d in downloads {
        if field_errors.contains_key(&d.field) {
            continue;
        }
        if let Some(upload) = site.sync.uploads.get(&d.sha256) {
            let blob = SiteBlob {
                content_type: d.content_type,
                body: BlobBody::Inline(upload.bytes.clone()),
            };
            site.blobs.insert(d.path, blob);
        }
    }
}

/// The UIDs a top-level field value references: a `{"uid": ..}` dict or a list of them, a
/// UID string or a list of UID strings (Dexterity references).
fn referenced_uids(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) if is_uid(s) => vec![s.as_str()],
        Value::Object(_) => uid_of(value).into_iter().collect(),
        Value::Array(items) if !items.is_empty() => {
            let dicts: Option<Vec<&str>> = items.iter().map(uid_of).collect();
            let strings: Option<Vec<&str>> = items
                .iter()
                .map(|v| v.as_str().filter(|s| is_uid(s)))
                .collect();
            dicts.or(strings).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// The uid of a `{"uid": ..}` dict.
fn uid_of(v: &Value) -> Option<&str> {
    v.as_object()
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .filter(|u| is_uid(u))
}

/// Fields of `record` that reference an object the site does not have (sorted).
fn missing_references(site: &Site, record: &Value, own_uid: &str) -> Vec<String> {
    let Some(Value::Object(fields)) = record.get("fields") else {
        return Vec::new();
    };
    let fields: &Map<String, Value> = fields;
    let mut out: Vec<String> = fields
        .iter()
        .filter(|(k, _)| !IDENTITY_KEYS.contains(&k.as_str()))
        .filter(|(_, v)| {
            referenced_uids(v)
                .into_iter()
                .any(|u| u != own_uid && site.by_uid(u).is_none())
        })
        .map(|(k, _)| k.clone())
        .collect();
    out.sort();
    out
}

/// 32 lowercase hex digits.
fn is_uid(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The load hash of a record as the loader computes it (tests build records by hand).
#[cfg(test)]
pub(crate) fn load_hash(record: &Value) -> String {
    let mut v = record.clone();
    if let Value::Object(m) = &mut v {
        m.remove("load_hash");
    }
    crate::jsonx::sha256_hex(&crate::jsonx::canonical(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_in_every_top_level_shape() {
        let a = "a".repeat(32);
        let b = "b".repeat(32);
        assert_eq!(
            referenced_uids(&json!({"uid": a, "url": "/x"})),
            [a.as_str()]
        );
        assert_eq!(
            referenced_uids(&json!([{"uid": a}, {"uid": b}])),
            [a.as_str(), b.as_str()]
        );
        assert_eq!(referenced_uids(&json!([a, b])), [a.as_str(), b.as_str()]);
        assert_eq!(referenced_uids(&json!(a)), [a.as_str()]);
        assert!(referenced_uids(&json!("x".repeat(32))).is_empty());
        assert!(referenced_uids(&json!([a, "no"])).is_empty());
        assert!(referenced_uids(&json!({"uid": "0"})).is_empty());
        let r = json!({"uid": "c".repeat(32), "x": 1});
        assert_eq!(
            load_hash(&r),
            load_hash(&json!({"x": 1, "uid": "c".repeat(32), "load_hash": "z"}))
        );
    }
}
