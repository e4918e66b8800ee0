//! The receiver routes a delta load needs besides `apply` (protocol 2): `sync/remove`
//! (deactivate with a review-history entry, or delete with everything below) and `sync/accept`
//! (the destination's version stands for a record); plus senaite.jsonapi's `POST update`, served
//! by a sandbox with a receiver so that tests can edit an object "in the destination" the way a
//! lab user would (the receiver's `lookup` then reports `changed_since_apply`).

use serde_json::{Map, Value, json};

use super::super::reply::{Reply, runtime};
use super::super::rows;
use super::super::server::{Ctx, Shared};
use super::super::site::Site;
use super::{Applied, ReceiverOptions, error, json_body};

/// Workflows whose objects can be deactivated (a `deactivate` transition from `active`).
const DEACTIVATABLE: &[&str] = &[
    "senaite_deactivable_type_workflow",
    "senaite_clientcontact_workflow",
    "senaite_labcontact_workflow",
    "senaite_client_workflow",
    "senaite_supplier_workflow",
];

/// The current time as the sandbox serves dates (`2026-11-26T15:25:13+00:00`).
fn now() -> String {
    let z = crate::snapshot::writer::now_rfc3339();
    match z.strip_suffix('Z') {
        Some(t) => format!("{t}+00:00"),
        None => z,
    }
}

/// The `items` of a request body, each with a `uid`.
fn items(ctx: &Ctx<'_>, opts: &ReceiverOptions) -> Result<Vec<Map<String, Value>>, Reply> {
    let body = json_body(ctx, opts)?;
    let Some(list) = body.get("items").and_then(Value::as_array) else {
        return Err(error(ctx, 400, "the request has no items list"));
    };
    if list.len() > opts.max_batch {
        let message = format!("{} items, at most {} allowed", list.len(), opts.max_batch);
        return Err(error(ctx, 400, &message));
    }
    Ok(list
        .iter()
        .map(|v| v.as_object().cloned().unwrap_or_default())
        .collect())
}

fn text<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

/// `POST sync/remove`.
pub(super) fn remove(ctx: &Ctx<'_>, shared: &Shared, opts: &ReceiverOptions) -> Reply {
    let list = match items(ctx, opts) {
        Ok(l) => l,
        Err(reply) => return reply,
    };
    let mut site = shared.site.write().unwrap_or_else(|p| p.into_inner());
    let user = ctx.user.unwrap_or("admin");
    let out: Vec<Value> = list
        .iter()
        .map(|item| {
            let uid = text(item, "uid");
            match text(item, "policy") {
                "delete" => delete(&mut site, uid),
                "deactivate" => deactivate(&mut site, uid, ctx.origin, user),
                other => json!({"uid": uid, "status": "failed",
                    "error": format!("unknown policy {other:?}")}),
            }
        })
        .collect();
    Reply::json(
        200,
        &json!({"items": out, "_runtime": runtime(ctx.started)}),
    )
}

fn delete(site: &mut Site, uid: &str) -> Value {
    let Some(path) = site.by_uid(uid).map(|p| p.path.clone()) else {
        return json!({"uid": uid, "status": "absent"});
    };
    let prefix = format!("{path}/");
    let below: Vec<String> = site
        .objects
        .iter()
        .flatten()
        .filter(|p| p.path.starts_with(&prefix))
        .map(|p| p.uid.clone())
        .collect();
    for u in below.iter().map(String::as_str).chain([uid]) {
        site.remove(u);
        site.sync.applied.remove(u);
        site.sync.records.remove(u);
    }
    json!({"uid": uid, "status": "deleted", "path": path})
}

fn deactivate(site: &mut Site, uid: &str, origin: &str, user: &str) -> Value {
    let Some(path) = site.by_uid(uid).map(|p| p.path.clone()) else {
        return json!({"uid": uid, "status": "absent"});
    };
    let Some(mut record) = site
        .sync
        .records
        .get(uid)
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
    else {
        return json!({"uid": uid, "status": "failed", "path": path,
            "error": "the sandbox can only deactivate objects the receiver applied"});
    };
    let state = record
        .get("review_state")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if state == "inactive" {
        return json!({"uid": uid, "status": "already_inactive", "path": path,
            "review_state": state});
    }
    let states = record
        .get("workflow_states")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let wf = states.iter().find_map(|s| {
        let w = s.get("workflow").and_then(Value::as_str)?;
        (DEACTIVATABLE.contains(&w)
            && s.get("review_state").and_then(Value::as_str) == Some("active"))
        .then(|| w.to_string())
    });
    let Some(wf) = wf else {
        let workflows: Vec<&str> = states
            .iter()
            .filter_map(|s| s.get("workflow").and_then(Value::as_str))
            .collect();
        return json!({"uid": uid, "status": "not_deactivatable", "path": path,
            "review_state": state,
            "error": format!("no deactivate transition from {state} (workflows {})",
                workflows.join(", "))});
    };
    let when = now();
    let Value::Object(m) = &mut record else {
        return json!({"uid": uid, "status": "failed", "error": "stored record is not an object"});
    };
    if let Some(Value::Array(rows)) = m.get_mut("workflow_states") {
        for s in rows.iter_mut() {
            if s.get("workflow").and_then(Value::as_str) == Some(wf.as_str())
                && let Value::Object(s) = s
            {
                s.insert("review_state".into(), json!("inactive"));
                s.insert("status".into(), json!("Inactive"));
            }
        }
    }
    let history = m
        .entry("workflow_history")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(rows) = history {
        let seq = rows
            .iter()
            .filter(|h| h.get("workflow").and_then(Value::as_str) == Some(wf.as_str()))
            .filter_map(|h| h.get("seq").and_then(Value::as_i64))
            .max()
            .map_or(0, |n| n + 1);
        let v1_time = when.replace('T', " ").replace("+00:00", "");
        rows.push(
            json!({"workflow": wf, "seq": seq, "action": "deactivate", "actor": user,
            "comments": "", "review_state": "inactive", "time": v1_time, "time_v1": v1_time,
            "extra": {}}),
        );
    }
    m.insert("review_state".into(), json!("inactive"));
    m.insert("modified".into(), json!(when));
    if let Some(Value::Object(f)) = m.get_mut("fields") {
        f.insert("review_state".into(), json!("inactive"));
        f.insert("modified".into(), json!(when));
    }
    let pt = text(m, "portal_type").to_string();
    let catalog = site.catalog_for_type(&pt);
    let rebuilt = match rows::site_object(&record, origin, catalog) {
        Ok(r) => r,
        Err(e) => return json!({"uid": uid, "status": "failed", "path": path, "error": e}),
    };
    site.remove(uid);
    site.insert(&rebuilt.object);
    let modified = super::object_dates(site, uid)
        .map(|(m, _)| m)
        .unwrap_or_default();
    site.sync.applied.insert(
        uid.to_string(),
        Applied {
            hash: "deactivated".into(),
            modified,
            accepted: false,
        },
    );
    site.sync
        .records
        .insert(uid.to_string(), record.to_string().into_boxed_str());
    json!({"uid": uid, "status": "deactivated", "path": path, "review_state": "inactive"})
}

/// `POST sync/accept`.
pub(super) fn accept(ctx: &Ctx<'_>, shared: &Shared, opts: &ReceiverOptions) -> Reply {
    let list = match items(ctx, opts) {
        Ok(l) => l,
        Err(reply) => return reply,
    };
    let mut site = shared.site.write().unwrap_or_else(|p| p.into_inner());
    let out: Vec<Value> = list
        .iter()
        .map(|item| {
            let uid = text(item, "uid");
            let hash = text(item, "load_hash");
            if hash.is_empty() {
                return json!({"uid": uid, "status": "failed", "error": "no load_hash"});
            }
            let Some((modified, _)) = super::object_dates(&site, uid) else {
                return json!({"uid": uid, "status": "absent"});
            };
            site.sync.applied.insert(
                uid.to_string(),
                Applied {
                    hash: hash.to_string(),
                    modified: modified.clone(),
                    accepted: true,
                },
            );
            json!({"uid": uid, "status": "accepted", "modified": modified})
        })
        .collect();
    Reply::json(
        200,
        &json!({"items": out, "_runtime": runtime(ctx.started)}),
    )
}

/// senaite.jsonapi's `POST update` (`{"uid": .., "Field": value, ..}`, or `POST update/<uid>`):
/// sets the posted keys on the served record and bumps its modification date, as an edit by a
/// lab user in the destination does. Answers like the real route: `{"count": 1, "items": [..]}`.
pub(crate) fn jsonapi_update(ctx: &Ctx<'_>, shared: &Shared, uid_in_path: Option<&str>) -> Reply {
    let Some(opts) = &shared.receiver else {
        return error(ctx, 404, "No route matches senaite/v1/update");
    };
    if ctx.user.is_none() {
        return error(ctx, 401, "You are not allowed to update objects");
    }
    let body = match json_body(ctx, opts) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let uid = uid_in_path
        .map(str::to_string)
        .or_else(|| body.get("uid").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let mut site = shared.site.write().unwrap_or_else(|p| p.into_inner());
    let Some(mut obj) = site.site_object(&uid) else {
        return error(ctx, 404, &format!("No object found for uid {uid}"));
    };
    let when = now();
    if let (Value::Object(m), Value::Object(record)) = (&body, &mut obj.record) {
        for (k, v) in m {
            if k != "uid" {
                record.insert(k.clone(), v.clone());
            }
        }
        record.insert("modified".into(), json!(when));
    }
    if let Some(Value::Object(r)) = obj.restapi.as_mut()
        && r.contains_key("modified")
    {
        r.insert("modified".into(), json!(when));
    }
    site.insert(&obj);
    let served = site
        .site_object(&uid)
        .map(|o| o.record)
        .unwrap_or(Value::Null);
    Reply::json(
        200,
        &json!({"count": 1, "items": [served], "_runtime": runtime(ctx.started)}),
    )
}
