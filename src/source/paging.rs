//! Reading one page of a paged senaite.jsonapi listing. The client computes its own offsets
//! (`b_start`) rather than following `next`, which re-encodes parameters and is page-aligned
//! (jsonapi.md §3.2). A [`Page`] remembers the parameters it was read with, so failures name it.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::source::client::SenaiteClient;

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// The route read (`search`, `users`).
    pub route: String,
    /// Offset asked for.
    pub b_start: u64,
    /// Page size asked for.
    pub limit: u64,
    /// The total the server announced.
    pub count: u64,
    /// The items.
    pub items: Vec<Value>,
}

/// Reads the page at `b_start` of `route` with `query` plus `b_start` and `limit`.
///
/// # Errors
/// Client errors, or an envelope without `count` and `items`.
pub fn read_page(
    client: &SenaiteClient,
    route: &str,
    query: &[(&str, String)],
    b_start: u64,
    limit: u64,
) -> Result<Page> {
    let mut q: Vec<(&str, String)> = query.to_vec();
    q.push(("b_start", b_start.to_string()));
    q.push(("limit", limit.to_string()));
    let body = client.api_get(route, &q)?;
    parse_page(route, b_start, limit, body, client.api_url())
}

pub(crate) fn parse_page(
    route: &str,
    b_start: u64,
    limit: u64,
    body: Value,
    api: &str,
) -> Result<Page> {
    let bad = |what: &str| Error::BadResponse {
        url: format!("{api}/{route}?b_start={b_start}&limit={limit}"),
        message: format!("paged envelope without {what}"),
    };
    let count = body
        .get("count")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("count"))?;
    let items = match body {
        Value::Object(mut m) => match m.remove("items") {
            Some(Value::Array(items)) => items,
            _ => return Err(bad("items")),
        },
        _ => return Err(bad("an object")),
    };
    Ok(Page {
        route: route.to_string(),
        b_start,
        limit,
        count,
        items,
    })
}

/// Reads every page of a (small) listing sequentially and returns all items.
///
/// # Errors
/// As [`read_page`].
pub fn read_all(
    client: &SenaiteClient,
    route: &str,
    query: &[(&str, String)],
    limit: u64,
) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut b_start = 0;
    loop {
        let page = read_page(client, route, query, b_start, limit)?;
        let n = page.items.len() as u64;
        items.extend(page.items);
        b_start += limit;
        if n == 0 || b_start >= page.count {
            return Ok(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_without_count_is_named() {
        let err = parse_page("search", 50, 25, json!({"items": []}), "http://h/api").unwrap_err();
        let s = err.to_string();
        assert!(s.contains("b_start=50") && s.contains("count"), "{s}");
        let ok = parse_page(
            "search",
            0,
            25,
            json!({"count": 1, "items": [{"uid": "x"}]}),
            "a",
        )
        .unwrap();
        assert_eq!((ok.count, ok.items.len()), (1, 1));
    }
}
