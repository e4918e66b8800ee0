//! The request side of the sandbox: for each request the HTTP server (`http`) hands over, check
//! basic auth, count hits, read the body (bounded), apply scripted faults, route to the v1,
//! receiver (`sync/*`) or plone.restapi handlers and turn the reply into an HTTP answer (files
//! streamed). A handler panic is caught, counted and answered with 500.

use std::collections::HashMap;
use std::io::Read as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::Instant;

use base64::Engine as _;
use serde_json::json;

use super::Framework;
use super::faults::{FaultBook, FaultKind, ZOPE_HTML_500};
use super::http::{Outcome, Request, Response};
use super::query::{Form, decode, parse_form};
use super::receiver::{self, ReceiverOptions};
use super::reply::{Body, Reply, runtime};
use super::site::Site;
use super::{restapi, v1};

/// State shared by the workers and the [`super::Sandbox`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The live site.
    pub(crate) site: RwLock<Site>,
    /// Scripted faults.
    pub(crate) faults: FaultBook,
    /// Requests received.
    pub(crate) hits: AtomicU64,
    /// Requests received by `path?query`.
    pub(crate) hit_urls: Mutex<HashMap<String, u64>>,
    /// Handler panics.
    pub(crate) panics: AtomicU64,
    /// Signalled (with `stopped == true`) when the sandbox shuts down.
    pub(crate) stopped: (Mutex<bool>, Condvar),
    /// The accepted user name.
    pub(crate) user: String,
    /// The accepted password.
    pub(crate) password: String,
    /// Error style.
    pub(crate) framework: Framework,
    /// `http://127.0.0.1:PORT`.
    pub(crate) origin: String,
    /// The receiver's settings; `None`: `sync/*` routes are unknown.
    pub(crate) receiver: Option<ReceiverOptions>,
}

impl Shared {
    /// The most body bytes a request may bring (more is read and dropped, and refused).
    fn body_limit(&self) -> u64 {
        self.receiver
            .as_ref()
            .map(|r| r.max_request_bytes.max(r.max_chunk_bytes))
            .unwrap_or(0)
            .max(1 << 20)
    }
}

/// One request as the handlers see it.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    /// HTTP method, upper case.
    pub(crate) method: &'a str,
    /// Percent-decoded URL path.
    pub(crate) path: &'a str,
    /// Raw query string (without `?`).
    pub(crate) query: &'a str,
    /// Decoded query pairs.
    pub(crate) form: Form,
    /// The authenticated user, `None` for anonymous (or wrong credentials).
    pub(crate) user: Option<&'a str>,
    /// The Accept header (empty when absent).
    pub(crate) accept: String,
    /// When the request arrived (for `_runtime`).
    pub(crate) started: Instant,
    /// Error style.
    pub(crate) framework: Framework,
    /// `http://127.0.0.1:PORT`.
    pub(crate) origin: &'a str,
    /// Request headers (names as sent).
    pub(crate) headers: Vec<(String, String)>,
    /// The request body (empty for GET); at most the sandbox's body limit.
    pub(crate) body: Vec<u8>,
    /// Whether the body was longer than the limit (its tail was dropped).
    pub(crate) body_truncated: bool,
}

impl Ctx<'_> {
    /// A request header's value (case-insensitive name).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request's body: up to `limit` bytes kept, the rest read and dropped (so the client is not
/// cut off mid-send); the flag tells whether anything was dropped.
fn read_body(request: &mut Request<'_>, limit: u64) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    let reader = request.body();
    if let Err(err) = reader.take(limit).read_to_end(&mut body) {
        tracing::debug!(error = %err, "Sandbox could not read a request body.");
    }
    let dropped = std::io::copy(reader, &mut std::io::sink()).unwrap_or(0);
    (body, dropped > 0)
}

/// Answers one request, applying a fault if one is scripted for it.
pub(crate) fn serve_one(request: &mut Request<'_>, shared: &Shared) -> Outcome {
    let started = Instant::now();
    let url = request.url().to_owned();
    let (raw_path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    shared.hits.fetch_add(1, Ordering::SeqCst);
    {
        let mut urls = shared.hit_urls.lock().unwrap_or_else(|p| p.into_inner());
        *urls.entry(url.clone()).or_insert(0) += 1;
    }
    let fault = shared.faults.take(raw_path, query);
    tracing::debug!(url = %url, fault = ?fault, "Sandbox request.");
    let body = read_body(request, shared.body_limit());
    let reply = match fault {
        Some(FaultKind::Drop) => return Outcome::Drop,
        Some(FaultKind::DropAfterCommit) => {
            let reply = answer(request, body, shared, raw_path, query, started);
            tracing::debug!(status = reply.status, "Sandbox dropped a handled request.");
            return Outcome::Drop;
        }
        Some(FaultKind::Status(status)) => Reply::json(
            status,
            &json!({"success": false, "message": format!("sandbox fault: HTTP {status}"),
                    "_runtime": runtime(started)}),
        ),
        Some(FaultKind::TooManyRequests { retry_after_secs }) => Reply::json(
            429,
            &json!({"success": false, "message": "Too Many Requests"}),
        )
        .with_header("Retry-After", retry_after_secs.to_string()),
        Some(FaultKind::Html500) => Reply {
            status: 500,
            content_type: "text/html; charset=utf-8".to_owned(),
            headers: Vec::new(),
            body: Body::Bytes(ZOPE_HTML_500.as_bytes().to_vec()),
        },
        Some(FaultKind::ApiError200 { message }) => Reply::json(
            200,
            &json!({"success": false, "message": message, "_runtime": runtime(started)}),
        ),
        Some(FaultKind::Slow(delay)) => {
            std::thread::sleep(delay);
            answer(request, body, shared, raw_path, query, started)
        }
        Some(FaultKind::ShiftAfter { insert, remove_uid }) => {
            let reply = answer(request, body, shared, raw_path, query, started);
            // The page is built; change the site before the client can ask for the next one.
            let mut site = shared.site.write().unwrap_or_else(|p| p.into_inner());
            if let Some(uid) = remove_uid {
                site.remove(&uid);
            }
            if let Some(obj) = insert {
                site.insert(&obj);
            }
            reply
        }
        // Record faults never come out of `take`; the receiver consults them.
        Some(FaultKind::RejectRecord { .. } | FaultKind::RejectField { .. }) | None => {
            answer(request, body, shared, raw_path, query, started)
        }
    };
    Outcome::Respond(Response {
        status: reply.status,
        headers: std::iter::once(("Content-Type".to_owned(), reply.content_type))
            .chain(reply.headers)
            .collect(),
        body: reply.body,
    })
}

/// Routes a request to its handler, catching panics.
fn answer(
    request: &Request<'_>,
    body: (Vec<u8>, bool),
    shared: &Shared,
    raw_path: &str,
    query: &str,
    started: Instant,
) -> Reply {
    let result = catch_unwind(AssertUnwindSafe(|| {
        route(request, body, shared, raw_path, query, started)
    }));
    match result {
        Ok(reply) => reply,
        Err(_) => {
            shared.panics.fetch_add(1, Ordering::SeqCst);
            tracing::error!(path = raw_path, "Sandbox handler panicked.");
            Reply::json(
                500,
                &json!({"success": false, "message": "sandbox handler panicked"}),
            )
        }
    }
}

/// Authenticates and dispatches to the v1 API or plone.restapi.
fn route(
    request: &Request<'_>,
    (body, body_truncated): (Vec<u8>, bool),
    shared: &Shared,
    raw_path: &str,
    query: &str,
    started: Instant,
) -> Reply {
    let header = |name: &str| request.header(name).map(str::to_owned);
    let user = header("Authorization")
        .and_then(|h| basic_credentials(&h))
        .filter(|(u, p)| *u == shared.user && *p == shared.password)
        .map(|_| shared.user.as_str());
    let path = decode(raw_path);
    let ctx = Ctx {
        method: request.method(),
        path: &path,
        query,
        form: parse_form(query),
        user,
        accept: header("Accept").unwrap_or_default(),
        started,
        framework: shared.framework,
        origin: &shared.origin,
        headers: request.headers().to_vec(),
        body,
        body_truncated,
    };
    let site = shared.site.read().unwrap_or_else(|p| p.into_inner());
    let site_prefix = format!("/{}", site.site_id);
    let api_prefix = format!("{site_prefix}/@@API/senaite/v1");
    if let Some(rest) = path.strip_prefix(&format!("{api_prefix}/sync"))
        && (rest.is_empty() || rest.starts_with('/'))
    {
        // The receiver takes the site lock itself (its writes need it exclusively).
        drop(site);
        return receiver::handle(&ctx, shared, rest);
    }
    // senaite.jsonapi's `update`, served only by destinations (a sandbox with a receiver), so
    // tests can edit an object there as a lab user would.
    if ctx.method == "POST" && shared.receiver.is_some() {
        let rest = path.strip_prefix(&format!("{api_prefix}/update"));
        if let Some(uid) = rest.filter(|r| r.is_empty() || r.starts_with('/')) {
            drop(site);
            let uid = uid.trim_matches('/');
            return receiver::jsonapi_update(&ctx, shared, (!uid.is_empty()).then_some(uid));
        }
    }
    if let Some(rest) = path.strip_prefix(&api_prefix)
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return v1::handle(&ctx, &site, rest);
    }
    match path.strip_prefix(&site_prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            restapi::handle(&ctx, &site, rest)
        }
        _ => Reply {
            status: 404,
            content_type: "text/plain".to_owned(),
            headers: Vec::new(),
            body: Body::Bytes(b"Not Found".to_vec()),
        },
    }
}

/// `(user, password)` of a `Basic` Authorization header.
pub(crate) fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}
