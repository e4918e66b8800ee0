//! Site-wide records: users (senaite.jsonapi `/users` and plone.restapi `@users`), groups with
//! roles and members (plone.restapi `@groups`), the registry (plone.restapi `@registry`, paged;
//! a page that cannot be serialized is split until the one bad record is isolated and named) and
//! the control-panel settings (v1 `/settings/<key>`). Unreadable records are kept as errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::jsonx;
use crate::snapshot::table::Cell;
use crate::source::SenaiteClient;
use crate::source::paging;

/// Registry page size.
const REGISTRY_PAGE: u64 = 200;
/// Settings keywords of senaite.jsonapi 2.x (jsonapi.md §2.7).
const SETTINGS_KEYS_2X: &[&str] = &[
    "mail",
    "language",
    "dateandtime",
    "usergroups",
    "maintenance",
];
/// Settings keywords of senaite.jsonapi 1.x (jsonapi.md §10.1).
const SETTINGS_KEYS_1X: &[&str] = &[
    "mail",
    "calendar",
    "ram",
    "language",
    "editing",
    "usergroups",
    "search",
    "filter",
    "maintenance",
    "markup",
    "navigation",
    "security",
    "site",
    "skins",
];

/// Everything site-wide, as read (verbatim answers).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct SiteRecords {
    /// v1 `/users` items.
    pub users: Vec<Value>,
    /// plone.restapi `@users` items.
    pub restapi_users: Vec<Value>,
    /// plone.restapi `@groups/<id>` answers.
    pub groups: Vec<Value>,
    /// plone.restapi `@registry` items.
    pub registry: Vec<Value>,
    /// Registry positions that could not be read, with the error.
    pub registry_errors: Vec<(u64, String)>,
    /// Settings answers (`items[0]`) or errors by keyword.
    pub settings: BTreeMap<String, SettingAnswer>,
}

/// A settings keyword's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum SettingAnswer {
    /// The value.
    Value(Value),
    /// Why it could not be read.
    Error(String),
}

/// Reads every site-wide record.
///
/// # Errors
/// Transport errors after retries; application errors are recorded, not returned.
pub fn read_site(client: &SenaiteClient, jsonapi_version: &str) -> Result<SiteRecords> {
    let mut site = SiteRecords {
        users: paging::read_all(client, "users", &[], 500)?,
        ..Default::default()
    };
    // senaite.jsonapi 1.x runs on Plone 4.3, without plone.restapi (every `@...` path answers
    // an HTML page): only the v1 reads apply (see `extract::senaite1`, which notes the rest).
    let senaite1 = jsonapi_version.starts_with('1');
    if !senaite1 {
        read_restapi_records(client, &mut site)?;
    }
    let keys = if senaite1 {
        SETTINGS_KEYS_1X
    } else {
        SETTINGS_KEYS_2X
    };
    for key in keys {
        let answer = match client.api_get(&format!("settings/{key}"), &[]) {
            Ok(v) => {
                let item = v
                    .get("items")
                    .and_then(|i| i.get(0))
                    .cloned()
                    .unwrap_or(Value::Null);
                SettingAnswer::Value(item)
            }
            Err(e) if is_soft(&e) => SettingAnswer::Error(stable_error_text(&e.to_string())),
            Err(e) => return Err(e),
        };
        site.settings.insert((*key).to_string(), answer);
    }
    let withheld = withhold_secrets(&mut site);
    info!(
        users = site.users.len(),
        groups = site.groups.len(),
        registry = site.registry.len(),
        secrets_withheld = withheld,
        "Read site records."
    );
    Ok(site)
}

/// What a secret value (an SMTP password, a token) becomes in a snapshot.
pub const WITHHELD: &str = "[withheld by senaite-sync: secret]";

/// Whether a setting or registry record named `name` holds a secret: a password, a secret, a
/// token or an API key (`smtp_pass`, `plone.smtp_pass`, `..._password`), not a flag about one
/// (`autologin_after_password_reset`).
fn is_secret_name(name: &str) -> bool {
    let last = name
        .rsplit(['.', '/'])
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase();
    [
        "pass", "passwd", "password", "secret", "token", "api_key", "apikey",
    ]
    .iter()
    .any(|s| last == *s || last.ends_with(&format!("_{s}")) || last.ends_with(s) && *s != "pass")
}

/// Replaces every non-empty string under a secret name with [`WITHHELD`]: secrets never reach
/// a snapshot (tables, raw records, staging). Returns how many were withheld.
fn withhold_secrets(site: &mut SiteRecords) -> usize {
    fn walk(v: &mut Value, secret: bool) -> usize {
        match v {
            Value::String(s) if secret && !s.is_empty() => {
                *s = WITHHELD.to_string();
                1
            }
            Value::Object(m) => m
                .iter_mut()
                .map(|(k, x)| walk(x, secret || is_secret_name(k)))
                .sum(),
            Value::Array(a) => a.iter_mut().map(|x| walk(x, secret)).sum(),
            _ => 0,
        }
    }
    let mut n = 0;
    for r in &mut site.registry {
        let secret = r
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(is_secret_name);
        if let Some(v) = r.get_mut("value") {
            n += walk(v, secret);
        }
    }
    for answer in site.settings.values_mut() {
        if let SettingAnswer::Value(v) = answer {
            n += walk(v, false);
        }
    }
    n
}

/// plone.restapi's users, groups and registry.
fn read_restapi_records(client: &SenaiteClient, site: &mut SiteRecords) -> Result<()> {
    match client.rest_get("@users", &[]) {
        Ok(Value::Array(items)) => site.restapi_users = items,
        Ok(_) => {}
        Err(e) => warn!(error = %e, "plone.restapi @users unavailable."),
    }
    site.groups = read_groups(client);
    read_registry(client, site)
}

fn is_soft(e: &Error) -> bool {
    matches!(
        e,
        Error::Api { .. } | Error::HttpStatus { .. } | Error::BadResponse { .. }
    )
}

fn read_groups(client: &SenaiteClient) -> Vec<Value> {
    let list = match client.rest_get("@groups", &[]) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return Vec::new(),
        Err(e) => {
            warn!(error = %e, "plone.restapi @groups unavailable.");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for g in list {
        let Some(id) = g.get("id").and_then(Value::as_str) else {
            continue;
        };
        match client.rest_get(&format!("@groups/{id}"), &[]) {
            Ok(detail) => out.push(detail),
            Err(_) => out.push(g),
        }
    }
    out
}

fn read_registry(client: &SenaiteClient, site: &mut SiteRecords) -> Result<()> {
    let mut b_start = 0;
    loop {
        let total = read_registry_range(client, b_start, REGISTRY_PAGE, site)?;
        b_start += REGISTRY_PAGE;
        match total {
            Some(t) if b_start < t => {}
            _ => return Ok(()),
        }
    }
}

/// Reads `[b_start, b_start+size)`; on failure splits the range. Returns `items_total`.
fn read_registry_range(
    client: &SenaiteClient,
    b_start: u64,
    size: u64,
    site: &mut SiteRecords,
) -> Result<Option<u64>> {
    let q = [
        ("b_start", b_start.to_string()),
        ("b_size", size.to_string()),
    ];
    match client.rest_get("@registry", &q) {
        Ok(v) => {
            if let Some(items) = v.get("items").and_then(Value::as_array) {
                site.registry.extend(items.iter().cloned());
            }
            Ok(v.get("items_total").and_then(Value::as_u64))
        }
        Err(e) if is_soft(&e) => {
            if size == 1 {
                site.registry_errors
                    .push((b_start, stable_error_text(&e.to_string())));
                return Ok(None);
            }
            let half = size / 2;
            let a = read_registry_range(client, b_start, half, site)?;
            let b = read_registry_range(client, b_start + half, size - half, site)?;
            Ok(a.or(b))
        }
        Err(e) => Err(e),
    }
}

/// An error text without the volatile parts some errors carry (the real site's message for an
/// unserializable registry record embeds the current time: `datetime.datetime(2026, 11, 26, ...)
/// is not JSON serializable`), so extracting an unchanged site twice gives equal tables.
pub fn stable_error_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("datetime.datetime(") {
        let (head, tail) = rest.split_at(i + "datetime.datetime(".len());
        out.push_str(head);
        match tail.find(')') {
            Some(j) => {
                out.push_str("...)");
                rest = &tail[j + 1..];
            }
            None => {
                rest = tail;
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn rest_of(v: &Value, skip: &[&str], origin: &str) -> String {
    let mut m = Map::new();
    if let Value::Object(o) = v {
        for (k, val) in o {
            if !skip.contains(&k.as_str()) {
                m.insert(k.clone(), val.clone());
            }
        }
    }
    let mut value = Value::Object(m);
    crate::snapshot::record::strip_origin(&mut value, origin);
    String::from_utf8_lossy(&jsonx::canonical(&value)).into_owned()
}

/// Rows of the `users` table, sorted by username.
pub fn user_rows(site: &SiteRecords, origin: &str) -> Vec<Vec<Cell>> {
    let mut rows: Vec<Vec<Cell>> = site
        .users
        .iter()
        .filter_map(|u| {
            let name = text(u, "username")?;
            Some(vec![
                Cell::s(name),
                Cell::opt(text(u, "fullname")),
                Cell::opt(text(u, "email")),
                Cell::StrList(strings(u, "roles")),
                Cell::StrList(strings(u, "groups")),
                Cell::s(rest_of(
                    u,
                    &[
                        "username",
                        "fullname",
                        "email",
                        "roles",
                        "groups",
                        "api_url",
                        "authenticated",
                    ],
                    origin,
                )),
            ])
        })
        .collect();
    rows.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
    rows
}

/// Rows of the `groups` table, sorted by id.
pub fn group_rows(site: &SiteRecords, origin: &str) -> Vec<Vec<Cell>> {
    let mut rows: Vec<Vec<Cell>> = site
        .groups
        .iter()
        .filter_map(|g| {
            let id = text(g, "id")?;
            let mut members: Vec<String> = g
                .get("users")
                .and_then(|u| u.get("items"))
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|m| m.get("id").and_then(Value::as_str).or(m.as_str()))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            members.sort();
            Some(vec![
                Cell::s(id),
                Cell::opt(text(g, "title")),
                Cell::opt(text(g, "description")),
                Cell::opt(text(g, "email")),
                Cell::StrList(strings(g, "roles")),
                Cell::StrList(members),
                Cell::s(rest_of(
                    g,
                    &[
                        "@id",
                        "id",
                        "title",
                        "description",
                        "email",
                        "roles",
                        "users",
                    ],
                    origin,
                )),
            ])
        })
        .collect();
    rows.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
    rows
}

/// Rows of the `settings` table, sorted by source and key.
pub fn setting_rows(site: &SiteRecords, origin: &str) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    for r in &site.registry {
        if let Some(name) = text(r, "name") {
            let mut v = r.get("value").cloned().unwrap_or(Value::Null);
            crate::snapshot::record::strip_origin(&mut v, origin);
            let value = String::from_utf8_lossy(&jsonx::canonical(&v)).into_owned();
            rows.push(vec![
                Cell::s("registry"),
                Cell::s(name),
                Cell::s(value),
                Cell::opt(None::<String>),
            ]);
        }
    }
    for (pos, err) in &site.registry_errors {
        rows.push(vec![
            Cell::s("registry"),
            Cell::s(format!("#{pos}")),
            Cell::opt(None::<String>),
            Cell::s(err.clone()),
        ]);
    }
    for (key, answer) in &site.settings {
        let (value, error) = match answer {
            SettingAnswer::Value(v) => (Some(rest_of(v, &["api_url"], origin)), None),
            SettingAnswer::Error(e) => (None, Some(e.clone())),
        };
        rows.push(vec![
            Cell::s("settings"),
            Cell::s(key),
            Cell::opt(value),
            Cell::opt(error),
        ]);
    }
    rows.sort_by(|a, b| (a[0].as_str(), a[1].as_str()).cmp(&(b[0].as_str(), b[1].as_str())));
    rows.dedup_by(|a, b| a[0] == b[0] && a[1] == b[1]);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_withheld_and_flags_about_them_kept() {
        let mut site = SiteRecords {
            registry: vec![
                json!({"name": "plone.smtp_pass", "value": "hunter2"}),
                json!({"name": "plone.smtp_pass_empty", "value": ""}),
                json!({"name": "plone.autologin_after_password_reset", "value": true}),
                json!({"name": "plone.smtp_host", "value": "mail.example"}),
            ],
            settings: BTreeMap::from([(
                "mail".to_string(),
                SettingAnswer::Value(json!({"mail": {"IMailSchema": {
                    "smtp_pass": "hunter3", "smtp_userid": "lab", "smtp_port": 25,
                    "api_token": "t0k", "email_from_name": null}}})),
            )]),
            ..Default::default()
        };
        assert_eq!(withhold_secrets(&mut site), 3);
        let text = serde_json::to_string(&site).unwrap();
        for secret in ["hunter2", "hunter3", "t0k"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let rows = setting_rows(&site, "");
        let flat = format!("{rows:?}");
        assert!(
            flat.contains("mail.example") && flat.contains("lab"),
            "{flat}"
        );
        assert!(flat.contains(WITHHELD));
        assert!(!is_secret_name("autologin_after_password_reset"));
        assert!(!is_secret_name("smtp_passive_mode") && !is_secret_name("bypass"));
        assert!(is_secret_name("smtp_pass") && is_secret_name("ldap.bind_password"));
    }

    #[test]
    fn volatile_times_leave_error_texts() {
        let a = "HTTP 500: datetime.datetime(2026, 11, 26, 15, 2, 3, 4) is not JSON serializable";
        assert_eq!(
            stable_error_text(a),
            "HTTP 500: datetime.datetime(...) is not JSON serializable"
        );
        assert_eq!(stable_error_text("plain"), "plain");
    }

    #[test]
    fn rows_from_recorded_shapes() {
        let site = SiteRecords {
            users: vec![
                json!({"username": "labman", "fullname": "Lisa", "email": "l@x",
                "roles": ["LabManager", "Authenticated"], "groups": ["LabManagers"],
                "api_url": "http://h:1/s/@@API/senaite/v1/users/labman", "authenticated": false,
                "login_time": "2000-01-01T00:00:00"}),
            ],
            groups: vec![
                json!({"@id": "http://h:1/s/@groups/Analysts", "id": "Analysts",
                "title": "Analysts", "roles": ["Analyst", "Authenticated"], "groupname": "Analysts",
                "users": {"items": [{"id": "analyst1"}], "items_total": 1}}),
            ],
            registry: vec![json!({"name": "a.b", "value": 5, "schema": {}})],
            registry_errors: vec![(7, "boom".into())],
            settings: BTreeMap::from([("mail".to_string(), SettingAnswer::Error("x".into()))]),
            ..Default::default()
        };
        let u = user_rows(&site, "http://h:1");
        assert_eq!(u[0][3].as_list(), ["Authenticated", "LabManager"]);
        assert_eq!(
            u[0][5].as_str(),
            Some(r#"{"login_time":"2000-01-01T00:00:00"}"#)
        );
        let g = group_rows(&site, "http://h:1");
        assert_eq!(g[0][5].as_list(), ["analyst1"]);
        assert_eq!(g[0][6].as_str(), Some(r#"{"groupname":"Analysts"}"#));
        let s = setting_rows(&site, "");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0][1].as_str(), Some("#7"));
        assert_eq!(s[2][3].as_str(), Some("x"));
    }
}
