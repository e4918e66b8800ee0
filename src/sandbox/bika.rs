//! A test double of BIKA LIMS 3.1's legacy JSON API, answering with objects recorded from a real
//! bika.lims 3.1.15 (`data/fixtures/bika/`, bodies byte for byte). It serves what extract reads:
//! `@@API/read` over four catalogs (filters on any key, `sort_on=UID` paging, `include_fields`),
//! the quirks of the real one (a full read of `bika_analysis_catalog` answers HTTP 200
//! `{"success": false, "message": "'Ca'"}` as recorded; only an `include_fields` read works;
//! `@@API/getusers` answers the recorded "No roles specified" error; senaite.jsonapi routes
//! answer the plone.jsonapi.core 200 "404 Not Found" error), plone.jsonapi.routes `version`
//! and `users`, and `at_download` of an attachment it can be given. Loopback only, basic auth.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::http::{self, Outcome, Request, Response};

use crate::error::{Error, Result};

/// A recorded body: (name, text).
const RECORDED: &[(&str, &str)] = &[
    (
        "legacy_read_clients",
        include_str!("../../data/fixtures/bika/legacy_read_clients.json"),
    ),
    (
        "legacy_read_sampletypes",
        include_str!("../../data/fixtures/bika/legacy_read_sampletypes.json"),
    ),
    (
        "legacy_read_sampleconditions",
        include_str!("../../data/fixtures/bika/legacy_read_sampleconditions.json"),
    ),
    (
        "legacy_read_sample_complete",
        include_str!("../../data/fixtures/bika/legacy_read_sample_complete.json"),
    ),
    (
        "legacy_read_sample_objects",
        include_str!("../../data/fixtures/bika/legacy_read_sample_objects.json"),
    ),
    (
        "legacy_read_analyses",
        include_str!("../../data/fixtures/bika/legacy_read_analyses.json"),
    ),
    (
        "legacy_read_analyses_include_fields",
        include_str!("../../data/fixtures/bika/legacy_read_analyses_include_fields.json"),
    ),
    (
        "legacy_getusers",
        include_str!("../../data/fixtures/bika/legacy_getusers.json"),
    ),
    (
        "version",
        include_str!("../../data/fixtures/bika/version.json"),
    ),
    ("users", include_str!("../../data/fixtures/bika/users.json")),
    (
        "legacy_read_partitioned_ar",
        include_str!("../../data/fixtures/bika/legacy_read_partitioned_ar.json"),
    ),
    (
        "legacy_read_partitioned_client",
        include_str!("../../data/fixtures/bika/legacy_read_partitioned_client.json"),
    ),
    (
        "legacy_read_partitioned_sample",
        include_str!("../../data/fixtures/bika/legacy_read_partitioned_sample.json"),
    ),
    (
        "legacy_read_partitions",
        include_str!("../../data/fixtures/bika/legacy_read_partitions.json"),
    ),
    (
        "legacy_read_partition_setup",
        include_str!("../../data/fixtures/bika/legacy_read_partition_setup.json"),
    ),
];

/// The recorded body of `name`.
pub fn recorded(name: &str) -> Option<&'static str> {
    RECORDED.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The objects of a recorded read.
fn objects(name: &str) -> Vec<Map<String, Value>> {
    recorded(name)
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|v| v.get("objects").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| o.as_object().cloned())
        .collect()
}

/// The analyses analysis requests inline, each with its path (as `bika_analysis_catalog`
/// would list them).
fn inlined_analyses(ars: &[Map<String, Value>]) -> Vec<Map<String, Value>> {
    let mut analyses = Vec::new();
    for ar in ars {
        let ar_path = ar.get("path").and_then(Value::as_str).unwrap_or("");
        for a in ar
            .get("Analyses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(mut m) = a.as_object().cloned() {
                let id = m
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                m.insert("path".into(), Value::from(format!("{ar_path}/{id}")));
                analyses.push(m);
            }
        }
    }
    analyses
}

/// The recorded objects by catalog, as the real site answered full reads of them (the
/// analyses: as its analysis request inlines them, which is all a full read would give).
pub fn recorded_catalogs() -> BTreeMap<String, Vec<Map<String, Value>>> {
    let ars = objects("legacy_read_sample_complete");
    let analyses = inlined_analyses(&ars);
    let mut out = BTreeMap::new();
    out.insert("portal_catalog".into(), objects("legacy_read_clients"));
    let mut bika = ars;
    bika.extend(objects("legacy_read_sample_objects"));
    out.insert("bika_catalog".into(), bika);
    let mut setup = objects("legacy_read_sampletypes");
    setup.extend(objects("legacy_read_sampleconditions"));
    out.insert("bika_setup_catalog".into(), setup);
    out.insert("bika_analysis_catalog".into(), analyses);
    out
}

/// The recorded sample in two partitions (tests/e2e/seed_bika.py's `seed-partitioned`, recorded
/// by tests/e2e/record_bika_partitions.py from a real BIKA 3.1.15): its AnalysisRequest (two
/// analyses, one per partition) and Sample in `bika_catalog`, its client and the two
/// SamplePartitions in `portal_catalog`, their containers and preservation in `bika_setup_catalog`.
pub fn recorded_partitioned_catalogs() -> BTreeMap<String, Vec<Map<String, Value>>> {
    let ars = objects("legacy_read_partitioned_ar");
    let analyses = inlined_analyses(&ars);
    let mut out = BTreeMap::new();
    let mut portal = objects("legacy_read_partitioned_client");
    portal.extend(objects("legacy_read_partitions"));
    out.insert("portal_catalog".into(), portal);
    let mut bika = ars;
    bika.extend(objects("legacy_read_partitioned_sample"));
    out.insert("bika_catalog".into(), bika);
    out.insert(
        "bika_setup_catalog".into(),
        objects("legacy_read_partition_setup"),
    );
    out.insert("bika_analysis_catalog".into(), analyses);
    out
}

/// A running double; dropping it stops the server.
#[derive(Debug)]
pub struct BikaDouble {
    server: http::Server,
}

/// What the double serves.
#[derive(Debug, Clone, Default)]
pub struct BikaData {
    /// Objects per catalog.
    pub catalogs: BTreeMap<String, Vec<Map<String, Value>>>,
    /// File bytes by `path/at_download/Field` (site-relative to the origin).
    pub files: BTreeMap<String, Vec<u8>>,
}

impl BikaDouble {
    /// Starts serving `data` on 127.0.0.1 (a free port), site `/lims`, admin:admin.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(data: BikaData) -> Result<BikaDouble> {
        let handler: Arc<http::Handler> = Arc::new(move |req: &mut Request<'_>| {
            let (status, body, json) = answer(&data, req);
            let ctype = if json {
                "application/json"
            } else {
                "application/octet-stream"
            };
            Outcome::Respond(Response::bytes(status, ctype, body))
        });
        // One request at a time, as the single-threaded recording setup answered.
        let server = http::Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), 1, handler)
            .map_err(|e| Error::Usage(format!("cannot start the BIKA double: {e}")))?;
        Ok(BikaDouble { server })
    }

    /// The site URL (`http://127.0.0.1:PORT/lims`).
    pub fn site_url(&self) -> String {
        format!("http://{}/lims", self.server.addr())
    }
}

fn authorized(req: &Request<'_>) -> bool {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:admin")
    );
    req.header("Authorization") == Some(want.as_str())
}

fn query_of(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (form_decode(k), form_decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space, `%XX` a byte).
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && s.is_char_boundary(i + 1) && s.is_char_boundary(i + 3) => {
                match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (status, body, is JSON).
fn answer(data: &BikaData, req: &Request<'_>) -> (u16, Vec<u8>, bool) {
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    if !authorized(req) {
        return (401, b"Unauthorized".to_vec(), false);
    }
    let text = |s: &str| (200, s.as_bytes().to_vec(), true);
    match path.as_str() {
        "/lims/@@API/read" => read(data, &query_of(&url)),
        "/lims/@@API/getusers" => text(recorded("legacy_getusers").unwrap_or("{}")),
        "/lims/@@API/plone/api/1.0/version" => text(recorded("version").unwrap_or("{}")),
        "/lims/@@API/plone/api/1.0/users" => text(recorded("users").unwrap_or("{}")),
        p if p.starts_with("/lims/@@API/senaite/") => text(
            r#"{"message": "404 Not Found: The requested URL was not found on the server.", "success": false}"#,
        ),
        p => match data.files.get(p) {
            Some(bytes) => (200, bytes.clone(), false),
            None => (404, b"Not Found".to_vec(), false),
        },
    }
}

fn read(data: &BikaData, q: &[(String, String)]) -> (u16, Vec<u8>, bool) {
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let catalog = get("catalog_name").unwrap_or("portal_catalog");
    let include: Vec<&str> = get("include_fields")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let Some(objects) = data.catalogs.get(catalog) else {
        let body = json!({"message": catalog, "success": false});
        return (200, body.to_string().into_bytes(), true);
    };
    let control = [
        "catalog_name",
        "include_fields",
        "page_size",
        "page_nr",
        "sort_on",
        "sort_order",
    ];
    // `index[]=a&index[]=b` filters on any of the values, as bika's read does.
    let mut any_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in q {
        if let Some(base) = k.strip_suffix("[]") {
            any_of.entry(base).or_default().push(v.as_str());
        }
    }
    let mut matched: Vec<&Map<String, Value>> = objects
        .iter()
        .filter(|o| {
            let value = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("\u{0}");
            q.iter()
                .filter(|(k, _)| !control.contains(&k.as_str()) && !k.ends_with("[]"))
                .all(|(k, v)| value(k) == v.as_str())
                && any_of.iter().all(|(k, vs)| vs.contains(&value(k)))
        })
        .collect();
    matched.sort_by(|a, b| {
        let uid = |o: &Map<String, Value>| {
            o.get("UID")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        uid(a).cmp(&uid(b))
    });
    if catalog == "bika_analysis_catalog" && include.is_empty() && !matched.is_empty() {
        // The real site's analysis `specification` adapter fails without include_fields.
        return (
            200,
            recorded("legacy_read_analyses")
                .unwrap_or("{}")
                .as_bytes()
                .to_vec(),
            true,
        );
    }
    let total = matched.len();
    let size: usize = get("page_size").and_then(|s| s.parse().ok()).unwrap_or(10);
    let size = if size == 0 { total } else { size };
    let nr: usize = get("page_nr").and_then(|s| s.parse().ok()).unwrap_or(0);
    let first = if size * nr > total { 0 } else { size * nr };
    let page: Vec<Value> = matched
        .into_iter()
        .skip(first)
        .take(size)
        .map(|o| {
            if include.is_empty() {
                Value::Object(o.clone())
            } else {
                Value::Object(
                    o.iter()
                        .filter(|(k, _)| {
                            // A reference's `<Field>_uid` comes with its field, as on the real
                            // site (`load_field_values`).
                            let base = k.strip_suffix("_uid").unwrap_or(k);
                            k.as_str() == "path"
                                || include.contains(&k.as_str())
                                || include.contains(&base)
                        })
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            }
        })
        .collect();
    let n = page.len();
    let body = json!({
        "objects": page, "total_objects": total, "first_object_nr": first,
        "last_object_nr": (first + n).min(total), "success": true, "error": false,
        "url": "http://127.0.0.1/lims/@@API/read", "_authenticator": "x"
    });
    (200, body.to_string().into_bytes(), true)
}
