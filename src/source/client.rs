//! The one HTTP client for a SENAITE site: basic auth on every request, timeouts, a user agent,
//! and GETs retried per [`RetryPolicy`]. It knows the three channels extract reads: the
//! senaite.jsonapi v1 routes (`SITE/@@API/senaite/v1/...`), plone.restapi (`SITE/<path>` with
//! `Accept: application/json`) and file downloads (`Accept: */*`). It judges every answer the
//! same way: a 2xx status, a JSON body, and not an API error dict (`success: false` with a
//! `message`), so an HTTP 200 error is never taken for data. Its public methods only read; the
//! destination side (`load`) POSTs to the receiver's idempotent routes through the crate-private
//! `post_json` / `post_bytes`, which `extract` never calls (CI greps for it).
//!
//! Requests run on the shared HTTP engine of `source::transport` (an async client on a tokio
//! runtime of its own, two worker threads); the calling thread blocks until the whole answer is
//! there, and retries and backoff happen on the calling thread.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::HeaderValue;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::jsonx;
use crate::source::credentials::Credentials;
use crate::source::retry::{self, RetryPolicy};
use crate::source::transport::{self, Answer, Body, Engine, Failure};

/// Settings of a [`SenaiteClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Site URL, e.g. `http://127.0.0.1:8081/senaite` (no trailing slash needed).
    pub site_url: String,
    /// Credentials (basic auth on every request).
    pub credentials: Credentials,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout for one whole request (a large complete page can take a while).
    pub timeout: Duration,
    /// Retry policy for GETs.
    pub retry: RetryPolicy,
}

impl ClientOptions {
    /// Options with default timeouts and retries.
    pub fn new(site_url: &str, credentials: Credentials) -> Self {
        ClientOptions {
            site_url: site_url.trim_end_matches('/').to_string(),
            credentials,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
            retry: RetryPolicy::default(),
        }
    }
}

/// A client for one SENAITE site. Cheap to clone.
#[derive(Clone)]
pub struct SenaiteClient {
    engine: Arc<Engine>,
    /// `Basic ...` of the credentials, encoded once (marked sensitive: never logged).
    authorization: HeaderValue,
    site_url: String,
    api_url: String,
    origin: String,
    credentials: Credentials,
    retry: RetryPolicy,
}

/// How an answer's body is judged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Json,
    Bytes,
}

impl SenaiteClient {
    /// Builds the client.
    ///
    /// # Errors
    /// When the URL is not http(s) or the HTTP client cannot be built.
    pub fn new(opts: ClientOptions) -> Result<Self> {
        let site_url = opts.site_url.trim_end_matches('/').to_string();
        let origin = origin_of(&site_url).ok_or_else(|| {
            Error::Usage(format!(
                "{site_url} is not an http(s) URL of a SENAITE site"
            ))
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.timeout)
            .user_agent(concat!("senaite-sync/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|source| Error::Http {
                method: "GET",
                url: site_url.clone(),
                source,
            })?;
        let engine = Engine::start(http).map_err(|source| Error::Read {
            path: format!("{site_url} (starting the HTTP client's thread)").into(),
            source,
        })?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            opts.credentials.user,
            opts.credentials.password.expose()
        ));
        let mut authorization = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
            Error::Credentials(format!(
                "the credentials of user {:?} cannot be sent in an HTTP header",
                opts.credentials.user
            ))
        })?;
        authorization.set_sensitive(true);
        Ok(SenaiteClient {
            engine: Arc::new(engine),
            authorization,
            api_url: format!("{site_url}/@@API/senaite/v1"),
            site_url,
            origin,
            credentials: opts.credentials,
            retry: opts.retry,
        })
    }

    /// The site URL.
    pub fn site_url(&self) -> &str {
        &self.site_url
    }

    /// The senaite.jsonapi v1 base URL.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// `scheme://host[:port]` of the site.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `host[:port]` of the site (for netrc look-ups and messages).
    pub fn host(&self) -> &str {
        self.origin.split("://").nth(1).unwrap_or(&self.origin)
    }

    /// The user name in use.
    pub fn user(&self) -> &str {
        &self.credentials.user
    }

    /// GET a senaite.jsonapi v1 route (relative to the API base, e.g. `search`).
    ///
    /// # Errors
    /// Transport errors after retries, non-2xx statuses, non-JSON bodies and API error dicts.
    pub fn api_get(&self, route: &str, query: &[(&str, String)]) -> Result<Value> {
        let url = format!("{}/{}", self.api_url, route.trim_start_matches('/'));
        self.get_json(&url, query)
    }

    /// GET a plone.restapi resource: `path` is a physical path (`/senaite/clients/c-1`) or a
    /// site-relative endpoint such as `@users`.
    ///
    /// # Errors
    /// As [`SenaiteClient::api_get`].
    pub fn rest_get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.get_json(&self.rest_url(path), query)
    }

    /// The URL [`SenaiteClient::rest_get`] reads for `path`.
    pub fn rest_url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{}", self.origin, path)
        } else {
            format!("{}/{}", self.site_url, path)
        }
    }

    /// GET any JSON URL with retries.
    ///
    /// # Errors
    /// As [`SenaiteClient::api_get`].
    pub fn get_json(&self, url: &str, query: &[(&str, String)]) -> Result<Value> {
        self.json_request(Method::Get, url, query)
    }

    /// POSTs a JSON body to an idempotent route and returns the JSON answer. Retried like a GET:
    /// only for routes that may be repeated without effect (the receiver's, keyed by UID).
    ///
    /// # Errors
    /// As [`SenaiteClient::api_get`].
    pub(crate) fn post_json(&self, url: &str, body: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::BadResponse {
            url: url.to_string(),
            message: format!("request body cannot be encoded: {e}"),
        })?;
        self.json_request(Method::Post(Payload::Json(&bytes)), url, &[])
    }

    /// POSTs an already serialized JSON body to an idempotent route (as [`Self::post_json`]).
    ///
    /// # Errors
    /// As [`SenaiteClient::api_get`].
    pub(crate) fn post_json_bytes(&self, url: &str, body: &[u8]) -> Result<Value> {
        self.json_request(Method::Post(Payload::Json(body)), url, &[])
    }

    /// POSTs raw bytes (with extra headers) to an idempotent route; returns the JSON answer.
    ///
    /// # Errors
    /// As [`SenaiteClient::api_get`].
    pub(crate) fn post_bytes(
        &self,
        url: &str,
        bytes: &[u8],
        headers: &[(&'static str, String)],
    ) -> Result<Value> {
        self.json_request(Method::Post(Payload::Octet(bytes, headers)), url, &[])
    }

    fn json_request(
        &self,
        method: Method<'_>,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<Value> {
        let shown = display_url(url, query);
        let body = self.json_bytes(method, url, query, &shown)?;
        json_value(&body, &shown)
    }

    /// The body of a 2xx answer to a JSON request, not yet parsed (retried like
    /// [`SenaiteClient::get_json`]); callers that parse it themselves must also refuse API error
    /// dicts ([`api_error_message`]).
    ///
    /// # Errors
    /// Transport errors after retries and non-2xx statuses.
    pub(crate) fn get_json_bytes(&self, url: &str, query: &[(&str, String)]) -> Result<Vec<u8>> {
        let shown = display_url(url, query);
        self.json_bytes(Method::Get, url, query, &shown)
    }

    fn json_bytes(
        &self,
        method: Method<'_>,
        url: &str,
        query: &[(&str, String)],
        shown: &str,
    ) -> Result<Vec<u8>> {
        self.with_retry(method, url, query, Expect::Json, shown, |body| match body {
            Body::Whole(bytes) => Ok(Vec::from(bytes)),
            Body::Stream(mut reader) => {
                let mut bytes = Vec::new();
                reader
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::read(shown, e))?;
                Ok(bytes)
            }
        })
    }

    /// Streams a download into `sink`. The whole download is retried when the transfer fails
    /// part way, so `sink` must start over on each call (the blob store does).
    ///
    /// # Errors
    /// Transport errors after retries, non-2xx statuses, or the sink's error.
    pub fn download<T>(
        &self,
        url: &str,
        mut sink: impl FnMut(&mut dyn Read) -> Result<T>,
    ) -> Result<T> {
        let shown = display_url(url, &[]);
        self.with_retry(
            Method::Get,
            url,
            &[],
            Expect::Bytes,
            &shown,
            |body| match body {
                Body::Whole(bytes) => sink(&mut bytes.as_ref()),
                Body::Stream(mut reader) => sink(&mut reader),
            },
        )
    }

    fn with_retry<T>(
        &self,
        method: Method<'_>,
        url: &str,
        query: &[(&str, String)],
        expect: Expect,
        shown: &str,
        mut consume: impl FnMut(Body) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let sent = self
                .request(method, url, query, expect)
                .map_err(Failure::Transport)
                .and_then(|request| self.engine.send(request, expect == Expect::Bytes));
            let (err, retry_after) = match judge(&self.credentials.user, method.name(), shown, sent)
            {
                Verdict::Done(body) => match consume(body) {
                    Ok(v) => {
                        debug!(method = method.name(), url = %shown, elapsed_ms = started.elapsed().as_millis() as u64, "Request done.");
                        return Ok(v);
                    }
                    // A body cut off mid-transfer is a transport failure: retry.
                    Err(e) if is_io_failure(&e) => (e, None),
                    Err(e) => return Err(e),
                },
                Verdict::Retry(err, retry_after) => (err, retry_after),
                Verdict::Fail(err) => return Err(err),
            };
            if attempt >= self.retry.max_attempts {
                return Err(err);
            }
            let delay = self.retry.delay(attempt, retry_after);
            warn!(url = %shown, attempt, ?delay, error = %err, "Retrying transient failure.");
            std::thread::sleep(delay);
        }
    }

    /// GETs many JSON URLs (as [`SenaiteClient::get_json`], with the same retries, backoff,
    /// `Retry-After`, timeouts and errors) as tasks on the HTTP engine, at most as many at once as
    /// `in_flight` has permits (shared by every batch that is given it); returns the answers in
    /// the order of `urls`. The calling thread sleeps once for the whole batch instead of once per
    /// request: with a page's `@history` and `@sharing` reads this halves the thread wake-ups of
    /// extract's default mode.
    pub(crate) fn get_json_batch(
        &self,
        urls: Vec<String>,
        in_flight: &Arc<Semaphore>,
    ) -> Vec<Result<Value>> {
        let n = urls.len();
        let jobs: Vec<(
            String,
            std::result::Result<reqwest::Request, reqwest::Error>,
        )> = urls
            .iter()
            .map(|url| {
                let request = self.request(Method::Get, url, &[], Expect::Json);
                (url.clone(), request)
            })
            .collect();
        let http = self.engine.http().clone();
        let user: Arc<str> = Arc::from(self.credentials.user.as_str());
        let retry = self.retry;
        let permits = Arc::clone(in_flight);
        let work = async move {
            let mut tasks = JoinSet::new();
            for (i, (shown, request)) in jobs.into_iter().enumerate() {
                // INVARIANT: the semaphore is never closed; a closed one would only stop limiting.
                let permit = Arc::clone(&permits).acquire_owned().await.ok();
                let http = http.clone();
                let user = Arc::clone(&user);
                tasks.spawn(async move {
                    let answer = get_json_async(&http, request, &shown, &user, retry).await;
                    drop(permit);
                    (i, answer)
                });
            }
            let mut answers: Vec<Option<Result<Value>>> = (0..n).map(|_| None).collect();
            while let Some(done) = tasks.join_next().await {
                if let Ok((i, answer)) = done
                    && let Some(slot) = answers.get_mut(i)
                {
                    *slot = Some(answer);
                }
            }
            answers
        };
        let lost = |url: &str| Error::BadResponse {
            url: url.to_string(),
            message: "the HTTP client stopped before the answer arrived".into(),
        };
        // A task that panicked or a runtime that stopped leaves its answer missing.
        let answers = self.engine.run(work).unwrap_or_default();
        let mut answers = answers.into_iter();
        urls.iter()
            .map(|url| answers.next().flatten().unwrap_or_else(|| Err(lost(url))))
            .collect()
    }

    /// Builds one attempt's request (on the calling thread; the engine only sends it).
    fn request(
        &self,
        method: Method<'_>,
        url: &str,
        query: &[(&str, String)],
        expect: Expect,
    ) -> std::result::Result<reqwest::Request, reqwest::Error> {
        let http = self.engine.http();
        let accept = match expect {
            Expect::Json => "application/json",
            Expect::Bytes => "*/*",
        };
        let builder = match method {
            Method::Get => http.get(url),
            Method::Post(Payload::Json(bytes)) => http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.to_vec()),
            Method::Post(Payload::Octet(bytes, headers)) => {
                let mut b = http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
                for (name, value) in headers {
                    b = b.header(*name, value.as_str());
                }
                b.body(bytes.to_vec())
            }
        };
        builder
            .query(query)
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .header(reqwest::header::ACCEPT, accept)
            .build()
    }
}

/// The HTTP method of a request, with its body.
#[derive(Clone, Copy)]
enum Method<'a> {
    Get,
    Post(Payload<'a>),
}

/// A POST body.
#[derive(Clone, Copy)]
enum Payload<'a> {
    Json(&'a [u8]),
    Octet(&'a [u8], &'a [(&'static str, String)]),
}

impl Method<'_> {
    fn name(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post(_) => "POST",
        }
    }
}

/// What one attempt's outcome calls for.
enum Verdict<B> {
    /// A 2xx answer.
    Done(B),
    /// A transient failure, with the server's `Retry-After`.
    Retry(Error, Option<Duration>),
    /// A failure a retry cannot fix.
    Fail(Error),
}

/// Judges one attempt the same way for the blocking and the batched requests: statuses and
/// transport errors worth retrying, and the error naming the URL otherwise.
fn judge<B>(
    user: &str,
    method: &'static str,
    shown: &str,
    sent: std::result::Result<Answer<B>, Failure>,
) -> Verdict<B> {
    match sent {
        Ok(Answer::Success(body)) => Verdict::Done(body),
        Ok(Answer::Status {
            status,
            retry_after,
            body,
        }) => {
            let err = status_error(user, method, shown, status, &body);
            let api_body = jsonx::parse_lenient(&body)
                .ok()
                .is_some_and(|v| is_application_error_body(&v));
            if retry::is_retryable_status(status, api_body) {
                Verdict::Retry(err, retry_after)
            } else {
                Verdict::Fail(err)
            }
        }
        Err(Failure::Transport(source)) => {
            let retryable = retry::is_retryable_transport(&source);
            let err = Error::Http {
                method,
                url: shown.to_string(),
                source,
            };
            if retryable {
                Verdict::Retry(err, None)
            } else {
                Verdict::Fail(err)
            }
        }
        Err(Failure::Lost) => Verdict::Fail(Error::BadResponse {
            url: shown.to_string(),
            message: "the HTTP client stopped before the answer arrived".into(),
        }),
    }
}

/// One GET of a JSON URL on the runtime, retried as [`SenaiteClient::get_json`] retries (the
/// backoff sleeps on the runtime's timer), its body parsed and judged as `get_json` judges it.
async fn get_json_async(
    http: &reqwest::Client,
    request: std::result::Result<reqwest::Request, reqwest::Error>,
    shown: &str,
    user: &str,
    policy: RetryPolicy,
) -> Result<Value> {
    let request = match request {
        Ok(r) => r,
        Err(source) => {
            return Err(Error::Http {
                method: "GET",
                url: shown.to_string(),
                source,
            });
        }
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let started = Instant::now();
        let sent = match request.try_clone() {
            Some(r) => transport::whole(http, r).await.map_err(Failure::Transport),
            // A GET has no body, so it always clones.
            None => Err(Failure::Lost),
        };
        let (err, retry_after) = match judge(user, "GET", shown, sent) {
            Verdict::Done(body) => {
                debug!(method = "GET", url = %shown, elapsed_ms = started.elapsed().as_millis() as u64, "Request done.");
                return json_value(&body, shown);
            }
            Verdict::Retry(err, retry_after) => (err, retry_after),
            Verdict::Fail(err) => return Err(err),
        };
        if attempt >= policy.max_attempts {
            return Err(err);
        }
        let delay = policy.delay(attempt, retry_after);
        warn!(url = %shown, attempt, ?delay, error = %err, "Retrying transient failure.");
        tokio::time::sleep(delay).await;
    }
}

/// A 2xx body as JSON: not JSON, or an API error dict, is an error naming the URL.
fn json_value(body: &[u8], shown: &str) -> Result<Value> {
    let value = jsonx::parse_lenient(body).map_err(|e| Error::BadResponse {
        url: shown.to_string(),
        message: format!("body is not JSON ({e}): {}", snippet(body)),
    })?;
    if let Some(message) = api_error_message(&value) {
        return Err(Error::Api {
            url: shown.to_string(),
            message,
        });
    }
    Ok(value)
}

/// The error of a non-2xx answer.
fn status_error(user: &str, method: &'static str, shown: &str, status: u16, body: &[u8]) -> Error {
    if status == 401 {
        return Error::Unauthorized {
            url: shown.to_string(),
            user: user.to_string(),
        };
    }
    let detail = jsonx::parse_lenient(body)
        .ok()
        .and_then(|v| {
            api_error_message(&v)
                .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_string))
        })
        .or_else(|| (!body.is_empty()).then(|| snippet(body)));
    Error::HttpStatus {
        method,
        url: shown.to_string(),
        status,
        detail,
    }
}

fn is_io_failure(e: &Error) -> bool {
    matches!(e, Error::Read { .. })
}

/// The message of an API error dict: `success == false` together with a `message` key
/// (plone.restapi errors have `type` + `message` and no `success`; they arrive with a 4xx/5xx).
pub fn api_error_message(v: &Value) -> Option<String> {
    let obj = v.as_object()?;
    if obj.get("success") == Some(&Value::Bool(false)) {
        let msg = obj.get("message")?;
        return Some(
            msg.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| msg.to_string()),
        );
    }
    None
}

/// Whether an error body comes from the application (senaite.jsonapi's error dict, or
/// plone.restapi's `{"type", "message"}`), i.e. a deterministic error a retry cannot fix, as
/// opposed to a proxy's or an overloaded server's page.
pub fn is_application_error_body(v: &Value) -> bool {
    api_error_message(v).is_some()
        || v.get("type").and_then(Value::as_str).is_some() && v.get("message").is_some()
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    if host.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

/// A URL with its query, for messages and logs (never carries credentials: they travel in a
/// header, and URLs with user info are refused).
fn display_url(url: &str, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return url.to_string();
    }
    let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{url}?{}", q.join("&"))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = one_line.chars().take(160).collect();
    if one_line.chars().count() > 160 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_errors_are_recognised_in_both_framework_styles() {
        assert_eq!(
            api_error_message(&json!({"success": false, "message": "boom", "_runtime": 0.1})),
            Some("boom".into())
        );
        assert_eq!(
            api_error_message(&json!({"success": false, "message": "x", "type": "APIError"})),
            Some("x".into())
        );
        assert_eq!(api_error_message(&json!({"success": false})), None);
        assert_eq!(
            api_error_message(&json!({"success": true, "message": "x"})),
            None
        );
        assert_eq!(api_error_message(&json!({"items": []})), None);
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("http://127.0.0.1:8081/senaite"),
            Some("http://127.0.0.1:8081".into())
        );
        assert_eq!(
            origin_of("https://lims.example/x/"),
            Some("https://lims.example".into())
        );
        assert_eq!(origin_of("ftp://x/y"), None);
        assert_eq!(origin_of("http://admin:pw@host/senaite"), None);
    }

    #[test]
    fn snippets_are_short_single_lines() {
        let s = snippet(format!("<html>\n{}\n</html>", "x".repeat(500)).as_bytes());
        assert!(s.len() < 200 && !s.contains('\n'));
    }
}
