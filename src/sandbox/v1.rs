//! The senaite.jsonapi v1 read routes under `/<site>/@@API/senaite/v1`: version, auth, users,
//! catalogs, search, `/<resource>[/<uid>]`, `/<uid>`, registry and settings. Pages are built by
//! concatenating each object's pre-serialized bytes into the batch envelope. Writes
//! (`create`, `update`, `delete`) are not served and answer like unmatched routes.

use serde_json::{Value, json};

use super::query::{Batch, Form, SearchRequest, batch, first, page_url, parse_limit, parse_start};
use super::reply::{ApiErrorKind, Reply, api_error, runtime};
use super::server::Ctx;
use super::site::{Site, UID_CATALOG};

/// Static route names that win over `<resource>`.
const STATIC_ROUTES: &[&str] = &[
    "version", "auth", "users", "catalogs", "search", "registry", "settings", "login", "logout",
    "push", "create", "update", "delete",
];

/// Answers one request below the API root; `rest` is the path after `/senaite/v1`.
pub(crate) fn handle(ctx: &Ctx<'_>, site: &Site, rest: &str) -> Reply {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let route = format!("senaite/v1{rest}");
    if ctx.method != "GET" && ctx.method != "HEAD" {
        return not_routed(ctx, &segments, &route);
    }
    match segments.as_slice() {
        [] | ["version"] => version(ctx, site),
        ["auth"] | ["users", "auth"] => auth(ctx),
        ["users"] => users(ctx, site, None),
        ["users", who] => users(ctx, site, Some(who)),
        ["catalogs"] => catalogs(ctx, site),
        ["catalogs", id] => catalog(ctx, site, id),
        ["search"] => {
            let req = SearchRequest::from_form(&ctx.form);
            search_page(ctx, site, req, false)
        }
        ["registry"] => Reply::json(500, &json!({"error_type": "TypeError"})),
        ["registry", key] => registry(ctx, site, key),
        ["settings"] => api_error(
            ctx.framework,
            ApiErrorKind::Exception("ComponentLookupError"),
            &format!(
                "(<PloneSite at /{}>, <InterfaceClass Products.CMFPlone.interfaces.\
                 controlpanel.IDateAndTimeSchema>, u'')",
                site.site_id
            ),
            ctx.started,
        ),
        ["settings", key] => settings(ctx, site, key),
        [uid] if uid.len() == 32 && !STATIC_ROUTES.contains(uid) => bare_record(ctx, site, uid),
        [resource] if !matches!(*resource, "login" | "logout" | "push") => {
            resource_search(ctx, site, resource)
        }
        [resource, uid] if uid.len() == 32 => resource_uid(ctx, site, resource, uid),
        _ => api_error(
            ctx.framework,
            ApiErrorKind::NoRoute,
            &no_route(&route),
            ctx.started,
        ),
    }
}

/// The 0.8 message of an unmatched route.
fn no_route(route: &str) -> String {
    format!("No route matches {route}")
}

/// Non-GET requests: 405 where a GET route exists, else no route (writes are out of scope).
fn not_routed(ctx: &Ctx<'_>, segments: &[&str], route: &str) -> Reply {
    let writes = ["create", "update", "delete", "push", "login"];
    if segments.iter().any(|s| writes.contains(s)) || segments.len() > 2 {
        return api_error(
            ctx.framework,
            ApiErrorKind::NoRoute,
            &no_route(route),
            ctx.started,
        );
    }
    let message = format!(
        "Method {} not allowed on {route}. Allowed: GET, HEAD",
        ctx.method
    );
    api_error(ctx.framework, ApiErrorKind::Method, &message, ctx.started)
}

/// Appends `"_runtime": x` to a serialized JSON object.
pub(crate) fn with_runtime(mut body: Vec<u8>, ctx: &Ctx<'_>) -> Vec<u8> {
    if body.last() == Some(&b'}') {
        body.pop();
        if body.len() > 1 {
            body.push(b',');
        }
        body.extend_from_slice(format!("\"_runtime\":{}}}", runtime(ctx.started)).as_bytes());
    }
    body
}

/// The API root URL as the client sees it.
fn api_url(ctx: &Ctx<'_>, site: &Site) -> String {
    format!("{}/{}/@@API/senaite/v1", ctx.origin, site.site_id)
}

fn version(ctx: &Ctx<'_>, site: &Site) -> Reply {
    let date = if site.jsonapi_version == "2.6.0" {
        "2025-04-04"
    } else {
        "unreleased"
    };
    Reply::json(
        200,
        &json!({"url": format!("{}/version", api_url(ctx, site)), "date": date,
                "version": site.jsonapi_version, "_runtime": runtime(ctx.started)}),
    )
}

fn auth(ctx: &Ctx<'_>) -> Reply {
    let body = json!({"_runtime": runtime(ctx.started)});
    if ctx.user.is_some() {
        Reply::json(200, &body)
    } else {
        Reply::json(401, &body).with_header("WWW-Authenticate", "basic realm=\"JSONAPI AUTH\"")
    }
}

/// Writes a batch envelope around already serialized items.
fn envelope(ctx: &Ctx<'_>, b: &Batch, items: &[u8], url: Option<&str>) -> Vec<u8> {
    let base = format!("{}{}", ctx.origin, ctx.path);
    let link = |start: Option<usize>| match start {
        Some(s) => Value::String(page_url(&base, &ctx.form, s)).to_string(),
        None => "null".to_owned(),
    };
    let mut out = Vec::with_capacity(items.len() + 256);
    out.extend_from_slice(
        format!("{{\"count\":{},\"pagesize\":{},", b.count, b.pagesize).as_bytes(),
    );
    if let Some(url) = url {
        out.extend_from_slice(format!("\"url\":{},", Value::String(url.to_owned())).as_bytes());
    }
    out.extend_from_slice(b"\"items\":[");
    out.extend_from_slice(items);
    out.extend_from_slice(
        format!(
            "],\"page\":{},\"_runtime\":{},\"next\":{},\"pages\":{},\"previous\":{}}}",
            b.page,
            runtime(ctx.started),
            link(b.next_start),
            b.pages,
            link(b.previous_start)
        )
        .as_bytes(),
    );
    out
}

/// A page over a list of JSON values (users, settings), sliced unless `whole`.
fn value_page(
    ctx: &Ctx<'_>,
    site: &Site,
    values: &[Value],
    url: Option<&str>,
    whole: bool,
) -> Reply {
    let b = batch(
        values.len(),
        parse_limit(first(&ctx.form, "limit")),
        parse_start(first(&ctx.form, "b_start")),
    );
    let shown = if whole {
        values
    } else {
        &values[b.items.clone()]
    };
    let parts: Vec<String> = shown.iter().map(|v| site.serialize(v)).collect();
    Reply::json_bytes(200, envelope(ctx, &b, parts.join(",").as_bytes(), url))
}

fn users(ctx: &Ctx<'_>, site: &Site, who: Option<&str>) -> Reply {
    let api = api_url(ctx, site);
    let Some(me) = ctx.user else {
        let anon = json!({"username": "Anonymous User", "authenticated": false,
                          "api_url": format!("{api}/users/current"), "roles": ["Anonymous"]});
        return value_page(ctx, site, &[anon], None, false);
    };
    let mark = |u: &Value| {
        let mut u = u.clone();
        let is_me = u["username"].as_str() == Some(me);
        if let Some(obj) = u.as_object_mut() {
            obj.insert("authenticated".into(), Value::Bool(is_me));
        }
        u
    };
    let find = |name: &str| {
        site.users
            .iter()
            .find(|u| u["username"].as_str() == Some(name))
    };
    let items: Vec<Value> = match who {
        None => site.users.iter().map(mark).collect(),
        Some("current") => vec![match find(me) {
            Some(u) => mark(u),
            None => json!({"username": me, "authenticated": true, "groups": [],
                           "roles": ["Manager", "Authenticated"],
                           "api_url": format!("{api}/users/{me}")}),
        }],
        Some(name) => vec![find(name).map(mark).unwrap_or(Value::Null)],
    };
    value_page(ctx, site, &items, None, false)
}

fn catalogs(ctx: &Ctx<'_>, site: &Site) -> Reply {
    let listed: Vec<Value> = site
        .catalogs
        .iter()
        .filter(|(id, _)| *id != UID_CATALOG && *id != "reference_catalog")
        .map(|(_, c)| c.description.clone())
        .collect();
    let url = format!("{}/catalogs", api_url(ctx, site));
    value_page(ctx, site, &listed, Some(&url), true)
}

fn catalog(ctx: &Ctx<'_>, site: &Site, id: &str) -> Reply {
    match site.catalogs.get(id) {
        Some(c) => Reply::json_bytes(
            200,
            with_runtime(site.serialize(&c.description).into(), ctx),
        ),
        None => api_error(
            ctx.framework,
            ApiErrorKind::Exception("AttributeError"),
            "'object' object has no attribute 'getId'",
            ctx.started,
        ),
    }
}

fn registry(ctx: &Ctx<'_>, site: &Site, key: &str) -> Reply {
    let mut found = serde_json::Map::new();
    for item in &site.registry {
        if let Some(name) = item["name"].as_str().filter(|n| n.contains(key)) {
            found.insert(name.to_owned(), item["value"].clone());
        }
    }
    let count = found.len();
    let url = format!("{}/registry/{key}", api_url(ctx, site));
    let b = batch(count, 25, 0);
    let items = site.serialize(&Value::Object(found));
    Reply::json_bytes(
        200,
        envelope(ctx, &Batch { count, ..b }, items.as_bytes(), Some(&url)),
    )
}

fn settings(ctx: &Ctx<'_>, site: &Site, key: &str) -> Reply {
    match site.settings.get(key) {
        Some(Ok(value)) => {
            let url = format!("{}/settings/{key}", api_url(ctx, site));
            value_page(ctx, site, std::slice::from_ref(value), Some(&url), true)
        }
        Some(Err(message)) => api_error(
            ctx.framework,
            ApiErrorKind::Exception("Exception"),
            message,
            ctx.started,
        ),
        None => api_error(
            ctx.framework,
            ApiErrorKind::Exception("KeyError"),
            &format!("u'{key}'"),
            ctx.started,
        ),
    }
}

/// A single-segment resource that names no portal type: a real 404 `Not Found`.
fn unknown_resource(ctx: &Ctx<'_>) -> Reply {
    api_error(
        ctx.framework,
        ApiErrorKind::Api(404),
        "Not Found",
        ctx.started,
    )
}

/// `/<resource>`: a search over the resource's portal_type.
fn resource_search(ctx: &Ctx<'_>, site: &Site, resource: &str) -> Reply {
    let Some(portal_type) = site.resources.get(&resource.to_lowercase()) else {
        return unknown_resource(ctx);
    };
    let mut req = SearchRequest::from_form(&ctx.form);
    req.portal_types = vec![portal_type.clone()];
    search_page(ctx, site, req, false)
}

/// Runs a search and writes its page; a complete page holding a broken object answers 500.
fn search_page(ctx: &Ctx<'_>, site: &Site, req: SearchRequest, complete_default: bool) -> Reply {
    let found = if ctx.user.is_some() {
        site.search(&req)
    } else {
        Ok(super::search::Found { slots: Vec::new() })
    };
    let found = match found {
        Ok(found) => found,
        Err(message) => {
            let kind = ApiErrorKind::Exception("AttributeError");
            return api_error(ctx.framework, kind, &message, ctx.started);
        }
    };
    let b = batch(found.slots.len(), req.limit, req.b_start);
    let complete = req.complete.unwrap_or(complete_default);
    let mut items: Vec<u8> = Vec::new();
    for (n, slot) in found.slots[b.items.clone()].iter().enumerate() {
        let Some(obj) = site.object(*slot) else {
            continue;
        };
        if n > 0 {
            items.push(b',');
        }
        if !complete {
            items.extend_from_slice(&obj.brief);
        } else if let Some(message) = &obj.v1_error {
            let kind = ApiErrorKind::Exception("AttributeError");
            return api_error(ctx.framework, kind, message, ctx.started);
        } else {
            obj.write_complete(req.workflow, &mut items);
        }
    }
    Reply::json_bytes(200, envelope(ctx, &b, &items, None))
}

/// `/<resource>/<uid>`: an envelope of 0 or 1 complete records; the type is not checked.
fn resource_uid(ctx: &Ctx<'_>, site: &Site, resource: &str, uid: &str) -> Reply {
    if !site.resources.contains_key(&resource.to_lowercase()) {
        return unknown_resource(ctx);
    }
    let mut req = SearchRequest::from_form(&ctx.form);
    req.portal_types.clear();
    req.catalog = None;
    req.path = None;
    req.terms = vec![("UID".to_owned(), vec![uid.to_owned()])];
    search_page(ctx, site, req, true)
}

/// `/<uid>`: the bare record (complete by default), 404 when unknown or not visible.
fn bare_record(ctx: &Ctx<'_>, site: &Site, uid: &str) -> Reply {
    let obj = ctx.user.and_then(|_| site.by_uid(uid));
    let Some(obj) = obj else {
        return api_error(
            ctx.framework,
            ApiErrorKind::Api(404),
            "No object found",
            ctx.started,
        );
    };
    let form: &Form = &ctx.form;
    let complete = super::query::flag(form, "complete").unwrap_or(true);
    if !complete {
        return Reply::json_bytes(200, with_runtime(obj.brief.clone(), ctx));
    }
    if let Some(message) = &obj.v1_error {
        let kind = ApiErrorKind::Exception("AttributeError");
        return api_error(ctx.framework, kind, message, ctx.started);
    }
    let workflow = super::query::flag(form, "workflow").unwrap_or(false);
    let mut body = Vec::with_capacity(obj.complete.len() + 64);
    obj.write_complete(workflow, &mut body);
    Reply::json_bytes(200, with_runtime(body, ctx))
}
