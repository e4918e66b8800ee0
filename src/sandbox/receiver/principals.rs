//! `POST sync/principals`: groups, then users, from snapshot `groups`/`users` rows, kept as the
//! site answers them (plone.restapi `@groups/<id>`, v1 `/users`, plone.restapi `@users`) so
//! that extracting the sandbox gives the rows back. Users the receiver creates get a password
//! nobody knows (`needs_password_reset`); existing principals are updated, never duplicated.
//! A user's groups also list it as a member (except the virtual `AuthenticatedUsers`).

use serde_json::{Map, Value, json};

use super::super::reply::{Reply, runtime};
use super::super::server::{Ctx, Shared};
use super::super::site::Site;
use super::{ReceiverOptions, error, json_body};

/// Plone's virtual group of every logged-in user: it never lists members.
const VIRTUAL_GROUP: &str = "AuthenticatedUsers";

/// `POST sync/principals`.
pub(super) fn apply(ctx: &Ctx<'_>, shared: &Shared, opts: &ReceiverOptions) -> Reply {
    let body = match json_body(ctx, opts) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let list = |key: &str| match body.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(_) => Err(error(ctx, 400, &format!("{key} must be a list"))),
    };
    let (groups, users) = match list("groups").and_then(|g| list("users").map(|u| (g, u))) {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    let mut site = shared.site.write().unwrap_or_else(|p| p.into_inner());
    let api = format!("{}{}", ctx.origin, site.site_path());
    let mut items = Vec::new();
    for row in &groups {
        items.push(match group(&mut site, row, &api) {
            Ok(status) => item("group", row, "id", status, false, None),
            Err(e) => item("group", row, "id", "failed", false, Some(&e)),
        });
    }
    for row in &users {
        items.push(match user(&mut site, row, &api, &shared.user) {
            Ok((status, reset)) => item("user", row, "username", status, reset, None),
            Err(e) => item("user", row, "username", "failed", false, Some(&e)),
        });
    }
    Reply::json(
        200,
        &json!({"items": items, "_runtime": runtime(ctx.started)}),
    )
}

fn item(
    kind: &str,
    row: &Value,
    id_key: &str,
    status: &str,
    reset: bool,
    error: Option<&str>,
) -> Value {
    json!({"kind": kind, "id": row.get(id_key).and_then(Value::as_str).unwrap_or(""),
        "status": status, "needs_password_reset": reset, "error": error})
}

/// The row's `properties` object with the named columns laid over it.
fn with_columns(row: &Value, columns: &[&str]) -> Map<String, Value> {
    let mut out = match row.get("properties") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    for c in columns {
        out.insert((*c).to_owned(), row.get(*c).cloned().unwrap_or(Value::Null));
    }
    out
}

/// Stores `value` in `list` under `id` (matched by `key`): created, updated or unchanged.
fn upsert(list: &mut Vec<Value>, key: &str, id: &str, value: Value) -> &'static str {
    match list
        .iter_mut()
        .find(|v| v.get(key).and_then(Value::as_str) == Some(id))
    {
        Some(old) if *old == value => "unchanged",
        Some(old) => {
            *old = value;
            "updated"
        }
        None => {
            list.push(value);
            "created"
        }
    }
}

/// One group: the `@groups/<id>` body (members as the row lists them).
fn group(site: &mut Site, row: &Value, api: &str) -> Result<&'static str, String> {
    let id = row
        .get("id")
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty())
        .ok_or("the group row has no id")?;
    let mut detail = with_columns(row, &["id", "title", "description", "email", "roles"]);
    let url = format!("{api}/@groups/{id}");
    let members: Vec<Value> = row
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| json!({"id": m}))
        .collect();
    detail.insert("@id".into(), Value::String(url.clone()));
    detail.insert(
        "users".into(),
        json!({"@id": url, "items_total": members.len(), "items": members}),
    );
    Ok(upsert(
        &mut site.restapi_groups,
        "id",
        id,
        Value::Object(detail),
    ))
}

/// One user: the v1 `/users` item and the `@users` item; joins the user to its groups.
fn user(
    site: &mut Site,
    row: &Value,
    api: &str,
    login: &str,
) -> Result<(&'static str, bool), String> {
    let name = row
        .get("username")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("the user row has no username")?;
    let mut v1 = with_columns(row, &["username", "fullname", "email", "roles", "groups"]);
    v1.insert(
        "api_url".into(),
        Value::String(format!("{api}/@@API/senaite/v1/users/{name}")),
    );
    let status = upsert(&mut site.users, "username", name, Value::Object(v1));
    let roles: Vec<Value> = row
        .get("roles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.as_str() != Some("Authenticated"))
        .cloned()
        .collect();
    let rest = json!({"@id": format!("{api}/@users/{name}"), "id": name, "username": name,
        "fullname": row.get("fullname"), "email": row.get("email"), "roles": roles});
    upsert(&mut site.restapi_users, "id", name, rest);
    let groups = row.get("groups").and_then(Value::as_array);
    for g in groups.into_iter().flatten().filter_map(Value::as_str) {
        if g != VIRTUAL_GROUP {
            join(site, g, name);
        }
    }
    if status == "created" && name != login {
        site.sync.password_reset.insert(name.to_owned());
    }
    Ok((status, site.sync.password_reset.contains(name)))
}

/// Lists `user` among the members of `group`, if the group exists.
fn join(site: &mut Site, group: &str, user: &str) {
    let found = site
        .restapi_groups
        .iter_mut()
        .find(|g| g.get("id").and_then(Value::as_str) == Some(group));
    let Some(Value::Object(users)) = found.and_then(|g| g.get_mut("users")) else {
        return;
    };
    let Some(Value::Array(items)) = users.get_mut("items") else {
        return;
    };
    if !items
        .iter()
        .any(|m| m.get("id").and_then(Value::as_str) == Some(user))
    {
        items.push(json!({"id": user}));
        let total = items.len();
        users.insert("items_total".into(), json!(total));
    }
}
