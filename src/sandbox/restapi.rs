//! The plone.restapi read routes the extractor uses as a second channel (`GET SITE/<path>` with
//! `Accept: application/json`, `@history`, `@sharing`, `@users`, `@groups[/<id>]`, `@registry`
//! with plone.restapi's `batching`), and file downloads (`.../at_download/<Field>`), streamed
//! from disk when the blob is a file.

use serde_json::{Map, Value, json};

use super::data::BlobBody;
use super::query::{first, parse_start};
use super::reply::{Body, Reply};
use super::server::Ctx;
use super::site::Site;

/// plone.restapi's default page size.
const DEFAULT_BATCH_SIZE: usize = 25;

/// Answers a request below `/<site_id>` that is not the v1 API; `rest` starts with `/` or is empty.
pub(crate) fn handle(ctx: &Ctx<'_>, site: &Site, rest: &str) -> Reply {
    if ctx.user.is_none() {
        return Reply::json(
            401,
            &json!({"message": "You are not authorized to access this resource.",
                    "type": "Unauthorized"}),
        );
    }
    let full_path = format!("/{}{}", site.site_id, rest);
    if let Some(blob) = site.blobs.get(&full_path) {
        if ctx.accept.contains("application/json") && !ctx.accept.contains("*/*") {
            return not_found(ctx);
        }
        return Reply {
            status: 200,
            content_type: blob.content_type.clone(),
            headers: Vec::new(),
            body: match &blob.body {
                BlobBody::Inline(bytes) => Body::Bytes(bytes.clone()),
                BlobBody::File(path) => Body::File(path.clone()),
            },
        };
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["@users"] => Reply::json_bytes(200, site.serialize(&json!(site.restapi_users)).into()),
        ["@groups"] => groups(site),
        ["@groups", id] => {
            let group = site
                .restapi_groups
                .iter()
                .find(|g| g["id"].as_str() == Some(id));
            match group {
                Some(g) => Reply::json_bytes(200, site.serialize(g).into()),
                None => Reply::json(404, &Value::Null),
            }
        }
        ["@registry"] => registry(ctx, site),
        [.., "@history"] => object_part(ctx, site, &segments[..segments.len() - 1], 1),
        [.., "@sharing"] => object_part(ctx, site, &segments[..segments.len() - 1], 2),
        _ => object_part(ctx, site, &segments, 0),
    }
}

/// plone.restapi's 404 body for the requested URL.
fn not_found(ctx: &Ctx<'_>) -> Reply {
    Reply::json(
        404,
        &json!({"message": format!("Resource not found: {}{}", ctx.origin, ctx.path),
                "type": "NotFound"}),
    )
}

/// The object's serialization (0), `@history` (1) or `@sharing` (2). An object without
/// recorded local roles answers `@sharing` as a real 2.6 does for one that has none: no
/// entries, inheriting.
fn object_part(ctx: &Ctx<'_>, site: &Site, segments: &[&str], part: usize) -> Reply {
    let path = format!("/{}/{}", site.site_id, segments.join("/"));
    match site.by_path(&path).map(|o| o.restapi[part].as_ref()) {
        Some(Some(body)) => Reply::json_bytes(200, body.clone()),
        Some(None) if part == 2 => Reply::json(
            200,
            &json!({"available_roles": [], "entries": [], "inherit": true}),
        ),
        _ => not_found(ctx),
    }
}

/// `@groups`: the listing form (the detail form without `users`).
fn groups(site: &Site) -> Reply {
    let listed: Vec<Value> = site
        .restapi_groups
        .iter()
        .map(|g| {
            let mut g = g.clone();
            if let Some(obj) = g.as_object_mut() {
                obj.remove("users");
            }
            g
        })
        .collect();
    Reply::json_bytes(200, site.serialize(&Value::Array(listed)).into())
}

/// `@registry?b_start=&b_size=` with plone.restapi's `batching` links.
fn registry(ctx: &Ctx<'_>, site: &Site) -> Reply {
    let base = format!("{}/{}/@registry", ctx.origin, site.site_id);
    let size_given = first(&ctx.form, "b_size").and_then(|s| s.parse::<usize>().ok());
    let size = size_given.filter(|s| *s > 0).unwrap_or(DEFAULT_BATCH_SIZE);
    let start = parse_start(first(&ctx.form, "b_start"));
    let total = site.registry.len();
    let items: Vec<Value> = site
        .registry
        .iter()
        .skip(start)
        .take(size)
        .cloned()
        .collect();
    let mut body = Map::new();
    body.insert("@id".into(), json!(base));
    body.insert("items".into(), Value::Array(items));
    body.insert("items_total".into(), json!(total));
    if let Some(batching) = registry_batching(ctx, &base, total, start, size, size_given) {
        body.insert("batching".into(), batching);
    }
    Reply::json_bytes(200, site.serialize(&Value::Object(body)).into())
}

/// The `batching` object of a plone.restapi listing; `None` when everything fits one page.
fn registry_batching(
    ctx: &Ctx<'_>,
    base: &str,
    total: usize,
    start: usize,
    size: usize,
    size_given: Option<usize>,
) -> Option<Value> {
    if total <= size {
        return None;
    }
    let link = |s: usize| match size_given {
        Some(given) => format!("{base}?b_start={s}&b_size={given}"),
        None => format!("{base}?b_start={s}"),
    };
    let last = (total.div_ceil(size) - 1) * size;
    let id = if ctx.query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", ctx.query)
    };
    let mut batching = Map::new();
    batching.insert("@id".into(), json!(id));
    batching.insert("first".into(), json!(link(0)));
    batching.insert("last".into(), json!(link(last)));
    if start + size < total {
        batching.insert("next".into(), json!(link(start + size)));
    }
    if start > 0 {
        let prev = if start >= total {
            last
        } else {
            start.saturating_sub(size)
        };
        batching.insert("prev".into(), json!(link(prev)));
    }
    Some(Value::Object(batching))
}
