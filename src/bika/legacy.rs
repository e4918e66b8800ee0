//! bika.lims 3.1's own JSON API (`SITE/@@API/read`, `getusers`), on the public read methods of
//! [`SenaiteClient`]: the routes accept GET as well as POST (`methods=['GET', 'POST']` in
//! `bika/lims/jsonapi/*.py`), so extract reads with retried GETs and never writes. Errors come
//! as HTTP 200 `{"success": false, "message"}`; the client turns those into
//! [`Error::Api`] naming the URL. A `read` answer is further checked for its envelope
//! (`objects`, `total_objects`).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::source::SenaiteClient;

/// One page of a legacy `read`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPage {
    /// The objects, as the server wrote them.
    pub objects: Vec<Map<String, Value>>,
    /// `total_objects`: what the catalog query matched (all pages).
    pub total: u64,
}

/// A legacy read query: catalog, index filters, paging, `include_fields`.
#[derive(Debug, Clone, Default)]
pub struct ReadQuery {
    /// `catalog_name`.
    pub catalog: String,
    /// Index filters (`portal_type`, `UID`, ...).
    pub filters: Vec<(String, String)>,
    /// `page_size` (0 would mean all: never sent by extract).
    pub page_size: u64,
    /// `page_nr`, 0-based.
    pub page_nr: u64,
    /// `include_fields` (empty: every field and metadata column).
    pub include_fields: Vec<String>,
}

impl ReadQuery {
    /// A page of `catalog`, sorted on `UID` (unique and never changing: stable paging).
    pub fn page(catalog: &str, page_size: u64, page_nr: u64) -> ReadQuery {
        ReadQuery {
            catalog: catalog.to_string(),
            page_size,
            page_nr,
            ..Default::default()
        }
    }

    /// One object of `catalog` by UID.
    pub fn uid(catalog: &str, uid: &str) -> ReadQuery {
        ReadQuery {
            catalog: catalog.to_string(),
            filters: vec![("UID".into(), uid.to_string())],
            page_size: 1,
            ..Default::default()
        }
    }

    /// The query string.
    pub fn params(&self) -> Vec<(&str, String)> {
        let mut q: Vec<(&str, String)> = vec![
            ("catalog_name", self.catalog.clone()),
            ("sort_on", "UID".into()),
            ("sort_order", "ascending".into()),
            ("page_size", self.page_size.max(1).to_string()),
            ("page_nr", self.page_nr.to_string()),
        ];
        for (k, v) in &self.filters {
            q.push((k.as_str(), v.clone()));
        }
        if !self.include_fields.is_empty() {
            q.push(("include_fields", self.include_fields.join(",")));
        }
        q
    }
}

/// The legacy read URL of a site.
pub fn read_url(client: &SenaiteClient) -> String {
    format!("{}/@@API/read", client.site_url())
}

/// The plone.jsonapi.routes base URL of a site.
pub fn routes_url(client: &SenaiteClient) -> String {
    format!("{}/@@API/plone/api/1.0", client.site_url())
}

/// Runs a legacy `read`.
///
/// # Errors
/// Transport errors after retries, non-2xx statuses, `success: false` answers (as
/// [`Error::Api`] with the URL), and answers without the read envelope.
pub fn read(client: &SenaiteClient, q: &ReadQuery) -> Result<ReadPage> {
    let url = read_url(client);
    let params = q.params();
    let v = client.get_json(&url, &params)?;
    parse_read(v).ok_or_else(|| Error::BadResponse {
        url: shown(&url, &params),
        message: "not a bika.lims read answer (no objects/total_objects)".into(),
    })
}

/// The page of a read answer (its objects moved, not copied), `None` when it has not the read
/// envelope.
pub fn parse_read(v: Value) -> Option<ReadPage> {
    let Value::Object(mut m) = v else {
        return None;
    };
    let total = m.get("total_objects")?.as_u64()?;
    let Value::Array(objects) = m.remove("objects")? else {
        return None;
    };
    let objects = objects
        .into_iter()
        .filter_map(|o| match o {
            Value::Object(o) => Some(o),
            _ => None,
        })
        .collect();
    Some(ReadPage { objects, total })
}

/// Users holding any of `roles` (`@@API/getusers`): `(userid, fullname)`.
///
/// # Errors
/// As [`read`].
pub fn getusers(client: &SenaiteClient, role: &str) -> Result<Vec<(String, String)>> {
    let url = format!("{}/@@API/getusers", client.site_url());
    let v = client.get_json(&url, &[("roles:list", role.to_string())])?;
    let users = v
        .get("users")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::BadResponse {
            url: shown(&url, &[("roles:list", role.to_string())]),
            message: "no users list".into(),
        })?;
    Ok(users
        .iter()
        .filter_map(|u| {
            let id = u.get("userid")?.as_str()?.to_string();
            let name = u
                .get("fullname")
                .and_then(Value::as_str)
                .unwrap_or(&id)
                .to_string();
            Some((id, name))
        })
        .collect())
}

/// A URL with its query, for messages.
pub fn shown(url: &str, q: &[(&str, String)]) -> String {
    let parts: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{url}?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn queries_page_stably_and_join_include_fields() {
        let mut q = ReadQuery::page("bika_catalog", 100, 2);
        q.include_fields = vec!["UID".into(), "Result".into()];
        let p = q.params();
        assert!(p.contains(&("sort_on", "UID".to_string())));
        assert!(p.contains(&("page_nr", "2".to_string())));
        assert!(p.contains(&("include_fields", "UID,Result".to_string())));
        let uq = ReadQuery::uid("portal_catalog", "abc");
        let u = uq.params();
        assert!(u.contains(&("UID", "abc".to_string())));
    }

    #[test]
    fn read_envelopes_parse() {
        let v = json!({"objects": [{"UID": "a"}], "total_objects": 7, "success": true});
        let p = parse_read(v).unwrap();
        assert_eq!((p.objects.len(), p.total), (1, 7));
        assert!(parse_read(json!({"success": true})).is_none());
        assert!(parse_read(json!({"objects": {}, "total_objects": 1})).is_none());
    }
}
