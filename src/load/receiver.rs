//! The client side of the receiver protocol (`companion/PROTOCOL.md`): typed requests and answers
//! for the `sync/*` routes the receiver add-on registers on the destination's senaite.jsonapi.
//! Every route is keyed by UID, so a request repeated after a dropped connection creates nothing
//! twice; that is what makes retrying POSTs here safe. Telling "receiver not installed" apart from
//! other failures is this module's job too, so the user gets install instructions, not a 404.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::source::SenaiteClient;

/// The protocol version this loader speaks (2: apply moves objects, `sync/remove`,
/// `sync/accept`, `accepted` in `sync/lookup`).
pub const PROTOCOL: u32 = 2;

/// How to install the receiver, for error messages.
pub const INSTALL_HINT: &str = "install the receiver add-on into the destination's Python \
environment (`<instance>/bin/pip install companion/` from the senaite-sync source tree, or \
`pip install senaite-sync-receiver`), restart the instance, and run again; see companion/README.md";

/// `GET sync/info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    /// Receiver name.
    pub name: String,
    /// Receiver version.
    pub version: String,
    /// Protocol version.
    pub protocol: u32,
    /// Site id, e.g. `senaite`.
    pub site_id: String,
    /// Physical path of the site, e.g. `/senaite`.
    pub site_path: String,
    /// Portal types the destination knows.
    #[serde(default)]
    pub portal_types: Vec<String>,
    /// Largest JSON body accepted.
    #[serde(default = "default_max_request")]
    pub max_request_bytes: u64,
    /// Most records per apply.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Largest blob chunk.
    #[serde(default = "default_max_chunk")]
    pub max_chunk_bytes: u64,
}

impl Info {
    /// Whether this receiver lists the values it has no place for (`unknown_fields`, 0.3.0 on).
    pub fn reports_unknown_fields(&self) -> bool {
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0));
        let major = parts.next().unwrap_or(0);
        let minor = parts.next().unwrap_or(0);
        (major, minor) >= (0, 3)
    }
}

fn default_max_request() -> u64 {
    32 << 20
}
fn default_max_batch() -> usize {
    100
}
fn default_max_chunk() -> u64 {
    4 << 20
}

/// One uid of `POST sync/lookup`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UidState {
    /// The uid asked for.
    pub uid: String,
    /// Whether an object with it exists.
    pub exists: bool,
    /// Its path.
    #[serde(default)]
    pub path: Option<String>,
    /// Its type.
    #[serde(default)]
    pub portal_type: Option<String>,
    /// Its modification date.
    #[serde(default)]
    pub modified: Option<String>,
    /// Its review state.
    #[serde(default)]
    pub review_state: Option<String>,
    /// The load hash of our last complete apply, if any.
    #[serde(default)]
    pub applied_hash: Option<String>,
    /// Edited in the destination since our last apply.
    #[serde(default)]
    pub changed_since_apply: bool,
    /// `applied_hash` was stored by `sync/accept` (the destination's version stands for that
    /// record), not by an apply.
    #[serde(default)]
    pub accepted: bool,
}

/// One path of `POST sync/lookup`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PathState {
    /// The path asked for.
    pub path: String,
    /// Whether something sits there.
    pub exists: bool,
    /// Its uid.
    #[serde(default)]
    pub uid: Option<String>,
    /// Its type.
    #[serde(default)]
    pub portal_type: Option<String>,
}

/// The answer of `POST sync/lookup`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Lookup {
    /// Per uid.
    #[serde(default)]
    pub uids: Vec<UidState>,
    /// Per path.
    #[serde(default)]
    pub paths: Vec<PathState>,
}

/// The outcome of one record of `POST sync/apply`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ApplyItem {
    /// The record's uid.
    pub uid: String,
    /// `created`, `updated`, `unchanged`, `deferred`, `partial` or `failed`.
    pub status: String,
    /// Path in the destination.
    #[serde(default)]
    pub path: Option<String>,
    /// Modification date in the destination after the apply (the destination version).
    #[serde(default)]
    pub modified: Option<String>,
    /// Reference fields not set because their targets do not exist yet.
    #[serde(default)]
    pub deferred_fields: Vec<String>,
    /// Fields the destination rejected, with its reason.
    #[serde(default)]
    pub field_errors: std::collections::BTreeMap<String, String>,
    /// Why the whole record was rolled back.
    #[serde(default)]
    pub error: Option<String>,
    /// The path the object had before this apply moved it (protocol 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
    /// Record keys holding a value that the destination has no place for: no schema field of
    /// the object's type, no catalog metadata column, no key senaite.jsonapi adds, none that
    /// another step restores (receiver 0.3.0; answered on every apply, `unchanged` included).
    /// Nothing of them was written: a mapping to a name the destination lacks, or a value a
    /// pipeline should carry elsewhere or drop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_fields: Vec<String>,
}

/// One object of `POST sync/remove` or `POST sync/accept`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RemoveItem {
    /// Its uid.
    pub uid: String,
    /// `sync/remove`: `deactivated`, `already_inactive`, `not_deactivatable`, `deleted`,
    /// `absent` or `failed`; `sync/accept`: `accepted`, `absent` or `failed`.
    pub status: String,
    /// Its path before the call.
    #[serde(default)]
    pub path: Option<String>,
    /// Its review state after the call.
    #[serde(default)]
    pub review_state: Option<String>,
    /// Its modification date after the call (`sync/accept`).
    #[serde(default)]
    pub modified: Option<String>,
    /// Why nothing was done.
    #[serde(default)]
    pub error: Option<String>,
}

/// One principal of `POST sync/principals`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PrincipalItem {
    /// `user` or `group`.
    pub kind: String,
    /// Its id.
    pub id: String,
    /// `created`, `updated`, `unchanged` or `failed`.
    pub status: String,
    /// A new user whose password nobody knows.
    #[serde(default)]
    pub needs_password_reset: bool,
    /// The destination's reason for a failure.
    #[serde(default)]
    pub error: Option<String>,
}

/// One ID-server counter moved by `POST sync/finalize`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counter {
    /// The counter key.
    pub key: String,
    /// Value before.
    #[serde(default)]
    pub old: Option<i64>,
    /// Value after.
    #[serde(default)]
    pub new: Option<i64>,
}

/// A blob's upload state.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BlobState {
    /// Bytes received so far.
    #[serde(default)]
    pub received: u64,
    /// All bytes received and checked.
    #[serde(default)]
    pub complete: bool,
}

/// The receiver's routes on one destination.
#[derive(Clone)]
pub struct Receiver {
    client: SenaiteClient,
    base: String,
}

impl Receiver {
    /// A receiver client over an authenticated site client.
    pub fn new(client: SenaiteClient) -> Self {
        let base = format!("{}/sync", client.api_url());
        Receiver { client, base }
    }

    /// The site client.
    pub fn client(&self) -> &SenaiteClient {
        &self.client
    }

    /// `GET sync/info`, checking the protocol version. A missing receiver becomes
    /// [`Error::Receiver`] with install instructions.
    ///
    /// # Errors
    /// Missing or incompatible receiver, transport errors, wrong credentials.
    pub fn info(&self) -> Result<Info> {
        let url = format!("{}/info", self.base);
        let value = match self.client.get_json(&url, &[]) {
            Ok(v) => v,
            Err(e) if is_missing_route(&e) => {
                return Err(Error::Receiver {
                    url: self.client.site_url().to_string(),
                    message: format!("no senaite-sync receiver answers at {url}; {INSTALL_HINT}"),
                });
            }
            Err(e) => return Err(e),
        };
        let info: Info = serde_json::from_value(value).map_err(|e| Error::BadResponse {
            url: url.clone(),
            message: format!("not a receiver info answer: {e}"),
        })?;
        if info.protocol != PROTOCOL {
            return Err(Error::Receiver {
                url: self.client.site_url().to_string(),
                message: format!(
                    "the receiver {} {} speaks protocol {}, this senaite-sync speaks {PROTOCOL}; \
                     upgrade the one that is older ({INSTALL_HINT})",
                    info.name, info.version, info.protocol
                ),
            });
        }
        Ok(info)
    }

    /// `POST sync/lookup`.
    ///
    /// # Errors
    /// Transport or protocol errors.
    pub fn lookup(&self, uids: &[String], paths: &[String]) -> Result<Lookup> {
        let url = format!("{}/lookup", self.base);
        let v = self
            .client
            .post_json(&url, &json!({"uids": uids, "paths": paths}))?;
        parse(&url, v)
    }

    /// `POST sync/apply` of serialized records; one item per record, in order.
    ///
    /// # Errors
    /// Transport or protocol errors, or an answer that does not match the request.
    pub fn apply<'a>(&self, records: impl IntoIterator<Item = &'a str>) -> Result<Vec<ApplyItem>> {
        let url = format!("{}/apply", self.base);
        let mut body = String::from("{\"records\":[");
        let mut n = 0usize;
        for r in records {
            if n > 0 {
                body.push(',');
            }
            body.push_str(r);
            n += 1;
        }
        body.push_str("]}");
        let v = self.client.post_json_bytes(&url, body.as_bytes())?;
        let items: Vec<ApplyItem> = parse(&url, v.get("items").cloned().unwrap_or(Value::Null))?;
        if items.len() != n {
            return Err(Error::BadResponse {
                url,
                message: format!("{} results for {n} records sent", items.len()),
            });
        }
        Ok(items)
    }

    /// `POST sync/remove`: deactivates or deletes (`policy`) each uid; one item per uid.
    ///
    /// # Errors
    /// Transport or protocol errors, or an answer that does not match the request.
    pub fn remove(&self, uids: &[String], policy: &str) -> Result<Vec<RemoveItem>> {
        let url = format!("{}/remove", self.base);
        let items: Vec<Value> = uids
            .iter()
            .map(|u| json!({"uid": u, "policy": policy}))
            .collect();
        let v = self.client.post_json(&url, &json!({ "items": items }))?;
        let out: Vec<RemoveItem> = parse(&url, v.get("items").cloned().unwrap_or(Value::Null))?;
        if out.len() != uids.len() {
            return Err(Error::BadResponse {
                url,
                message: format!("{} results for {} uids sent", out.len(), uids.len()),
            });
        }
        Ok(out)
    }

    /// `POST sync/accept`: the destination's current version of each uid stands for the
    /// record with that `load_hash` (a conflict resolved destination-wins).
    ///
    /// # Errors
    /// Transport or protocol errors, or an answer that does not match the request.
    pub fn accept(&self, items: &[(String, String)]) -> Result<Vec<RemoveItem>> {
        let url = format!("{}/accept", self.base);
        let body: Vec<Value> = items
            .iter()
            .map(|(u, h)| json!({"uid": u, "load_hash": h}))
            .collect();
        let v = self.client.post_json(&url, &json!({ "items": body }))?;
        let out: Vec<RemoveItem> = parse(&url, v.get("items").cloned().unwrap_or(Value::Null))?;
        if out.len() != items.len() {
            return Err(Error::BadResponse {
                url,
                message: format!("{} results for {} uids sent", out.len(), items.len()),
            });
        }
        Ok(out)
    }

    /// The destination's current values of an object: senaite.jsonapi's own complete read
    /// (`GET api/v1/<uid>`), as a conflict report shows them.
    ///
    /// # Errors
    /// Transport errors or an unknown uid.
    pub fn current(&self, uid: &str) -> Result<Value> {
        self.client.api_get(uid, &[("complete", "yes".to_string())])
    }

    /// `POST sync/principals`.
    ///
    /// # Errors
    /// Transport or protocol errors.
    pub fn principals(&self, users: &[Value], groups: &[Value]) -> Result<Vec<PrincipalItem>> {
        let url = format!("{}/principals", self.base);
        let v = self
            .client
            .post_json(&url, &json!({"users": users, "groups": groups}))?;
        parse(&url, v.get("items").cloned().unwrap_or(Value::Null))
    }

    /// `POST sync/finalize`.
    ///
    /// # Errors
    /// Transport or protocol errors.
    pub fn finalize(&self) -> Result<Vec<Counter>> {
        let url = format!("{}/finalize", self.base);
        let v = self.client.post_json(&url, &json!({}))?;
        parse(&url, v.get("counters").cloned().unwrap_or(Value::Null))
    }

    /// `GET sync/blob/<sha256>`.
    ///
    /// # Errors
    /// Transport or protocol errors.
    pub fn blob_state(&self, sha256: &str) -> Result<BlobState> {
        let url = format!("{}/blob/{sha256}", self.base);
        let v = self.client.get_json(&url, &[])?;
        parse(&url, v)
    }

    /// Uploads one blob from `path` in chunks of `chunk` bytes, continuing from what the
    /// receiver already holds. Never holds more than one chunk in memory.
    ///
    /// # Errors
    /// Reading the file, transport or protocol errors, a checksum the receiver rejects.
    pub fn upload_blob(&self, sha256: &str, path: &Path, size: u64, chunk: u64) -> Result<u64> {
        let state = self.blob_state(sha256)?;
        if state.complete {
            return Ok(0);
        }
        let url = format!("{}/blob/{sha256}", self.base);
        let mut file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
        let mut offset = state.received.min(size);
        if offset > 0 {
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))
                .map_err(|e| Error::read(path, e))?;
        }
        let chunk = chunk.clamp(1, 64 << 20) as usize;
        let mut buf = vec![0u8; chunk.min(size.saturating_sub(offset).max(1) as usize)];
        let mut sent = 0u64;
        loop {
            let want = ((size - offset) as usize).min(buf.len());
            let mut filled = 0;
            while filled < want {
                let n = file
                    .read(&mut buf[filled..want])
                    .map_err(|e| Error::read(path, e))?;
                if n == 0 {
                    return Err(Error::Snapshot {
                        path: path.to_path_buf(),
                        message: format!("blob is shorter than its recorded size {size}"),
                    });
                }
                filled += n;
            }
            let headers = [
                ("X-Sync-Offset", offset.to_string()),
                ("X-Sync-Size", size.to_string()),
            ];
            let v = self.client.post_bytes(&url, &buf[..want], &headers)?;
            let st: BlobState = parse(&url, v)?;
            sent += want as u64;
            offset += want as u64;
            if st.complete || offset >= size {
                if !st.complete {
                    return Err(Error::BadResponse {
                        url,
                        message: format!("all {size} bytes sent but the upload is not complete"),
                    });
                }
                return Ok(sent);
            }
            if st.received != offset {
                return Err(Error::BadResponse {
                    url,
                    message: format!("receiver holds {} bytes, {offset} sent", st.received),
                });
            }
        }
    }
}

/// Whether an error means "no such route" (the receiver is not installed): senaite.jsonapi
/// answers unmatched routes with HTTP 200 and `success: false` + "404 Not Found", or a 404.
pub fn is_missing_route(e: &Error) -> bool {
    match e {
        Error::Api { message, .. } => {
            message.contains("404") || message.contains("405") || message.contains("Not Found")
        }
        Error::HttpStatus { status, .. } => *status == 404 || *status == 405,
        _ => false,
    }
}

fn parse<T: serde::de::DeserializeOwned>(url: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::BadResponse {
        url: url.to_string(),
        message: format!("unexpected receiver answer: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_from_0_3_report_unknown_fields() {
        let info = |version: &str| -> Info {
            serde_json::from_value(json!({"name": "r", "version": version, "protocol": 2,
                "site_id": "senaite", "site_path": "/senaite"}))
            .unwrap()
        };
        assert!(!info("0.2.0").reports_unknown_fields());
        assert!(info("0.3.0").reports_unknown_fields());
        assert!(info("0.10.1").reports_unknown_fields());
        assert!(info("1.0").reports_unknown_fields());
        assert!(!info("garbage").reports_unknown_fields());
    }

    #[test]
    fn missing_routes_are_recognised() {
        let api = Error::Api {
            url: "u".into(),
            message: "404 Not Found: The requested URL was not found on the server.".into(),
        };
        assert!(is_missing_route(&api));
        let other = Error::Api {
            url: "u".into(),
            message: "boom".into(),
        };
        assert!(!is_missing_route(&other));
        let status = Error::HttpStatus {
            method: "GET",
            url: "u".into(),
            status: 404,
            detail: None,
        };
        assert!(is_missing_route(&status));
    }

    #[test]
    fn apply_items_tolerate_missing_optional_keys() {
        let item: ApplyItem =
            serde_json::from_value(json!({"uid": "a", "status": "created"})).unwrap();
        assert_eq!(item.status, "created");
        assert!(item.deferred_fields.is_empty() && item.error.is_none());
    }
}
