//! What a handler answers, before it is written to the socket: status, content type, extra
//! headers and a body in memory or a file to stream. Also the error bodies of both
//! plone.jsonapi.core styles (0.7: HTTP 200 + `success:false`; 0.8: real status + `type`).

use std::time::Instant;

use serde_json::{Value, json};

use super::Framework;
use crate::jsonx::to_string_python;

pub(crate) use super::http::Body;

/// A response to write.
#[derive(Debug)]
pub(crate) struct Reply {
    /// HTTP status.
    pub(crate) status: u16,
    /// Content-Type.
    pub(crate) content_type: String,
    /// Extra headers.
    pub(crate) headers: Vec<(String, String)>,
    /// The body.
    pub(crate) body: Body,
}

impl Reply {
    /// A JSON reply from already serialized bytes.
    pub(crate) fn json_bytes(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type: "application/json".to_owned(),
            headers: Vec::new(),
            body: Body::Bytes(body),
        }
    }

    /// A JSON reply, serialized as Python would (bare `NaN`).
    pub(crate) fn json(status: u16, value: &Value) -> Reply {
        Reply::json_bytes(status, to_string_python(value).into_bytes())
    }

    /// Adds a header.
    pub(crate) fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// Seconds since `started`, the `_runtime` of a body.
pub(crate) fn runtime(started: Instant) -> f64 {
    started.elapsed().as_secs_f64().max(1e-6)
}

/// The kinds of senaite.jsonapi errors the double produces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ApiErrorKind {
    /// An `APIError` with a status (`No object found` 404): keeps its status in both styles.
    Api(u16),
    /// Any other Python exception (`AttributeError`, `KeyError`, ...): 500 on 0.8, 200 on 0.7.
    Exception(&'static str),
    /// No route matched: 404 `NotFoundError` on 0.8, 200 on 0.7.
    NoRoute,
    /// The route exists for other methods: 405 `MethodNotAllowedError` on 0.8, 200 on 0.7.
    Method,
}

/// An error body in the style of `framework`.
pub(crate) fn api_error(
    framework: Framework,
    kind: ApiErrorKind,
    message: &str,
    started: Instant,
) -> Reply {
    let (status, type_name) = match kind {
        ApiErrorKind::Api(status) => (status, "APIError"),
        ApiErrorKind::Exception(name) => (500, name),
        ApiErrorKind::NoRoute => (404, "NotFoundError"),
        ApiErrorKind::Method => (405, "MethodNotAllowedError"),
    };
    match framework {
        Framework::V08 => Reply::json(
            status,
            &json!({"success": false, "message": message, "type": type_name,
                    "_runtime": runtime(started)}),
        ),
        Framework::V07 => {
            let (status, message) = match kind {
                ApiErrorKind::Api(status) => (status, message.to_owned()),
                ApiErrorKind::Exception(_) => (200, message.to_owned()),
                ApiErrorKind::NoRoute => (200, format!("404 Not Found: {message}")),
                ApiErrorKind::Method => (200, format!("405 Method Not Allowed: {message}")),
            };
            Reply::json(
                status,
                &json!({"success": false, "message": message, "_runtime": runtime(started)}),
            )
        }
    }
}
