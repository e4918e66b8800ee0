//! Query strings as senaite.jsonapi reads them: form decoding, the truthy flags, the search
//! parameters of `/search` and `/<resource>`, and the Plone `Batch` arithmetic of the paging
//! envelope (spec §3.2, pinned against recorded answers). Pure functions, no I/O.

/// Decoded query-string pairs, in request order (repeated keys kept).
pub(crate) type Form = Vec<(String, String)>;

/// Parameters that steer the search instead of naming an index.
const CONTROL_KEYS: &[&str] = &[
    "limit",
    "b_start",
    "complete",
    "workflow",
    "children",
    "filedata",
    "catalog",
    "sharing",
    "sort_on",
    "sort_order",
    "sort_limit",
    "depth",
    "path",
    "portal_type",
    "q",
];

/// Decodes `a=1&b=x+y&c=%2F` into pairs; malformed escapes are kept literally.
pub(crate) fn parse_form(query: &str) -> Form {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// Percent- and plus-decoding of one form component.
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
            {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Python's `quote_plus`, as `urlencode` applies it to the `next`/`previous` URLs.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The first value of `key`, if present.
pub(crate) fn first<'a>(form: &'a Form, key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// All values of `key`, empty ones dropped.
pub(crate) fn all<'a>(form: &'a Form, key: &str) -> Vec<&'a str> {
    form.iter()
        .filter(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A truthy flag (`y`, `yes`, `1`, `true`, any case; the first value counts); `None` if absent.
pub(crate) fn flag(form: &Form, key: &str) -> Option<bool> {
    first(form, key).map(|v| matches!(v.to_ascii_lowercase().as_str(), "y" | "yes" | "1" | "true"))
}

/// How the `path` index is queried.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Depth {
    /// Levels `1..=n` below the path; `0` is the object itself.
    Levels(u32),
    /// The object and everything below (a non-numeric `depth`, e.g. `-1`).
    Subtree,
}

/// A search as `/search` or `/<resource>` receives it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SearchRequest {
    /// `catalog=`, if given.
    pub(crate) catalog: Option<String>,
    /// `portal_type` values (the resource's type for `/<resource>`).
    pub(crate) portal_types: Vec<String>,
    /// `path` values and depth.
    pub(crate) path: Option<(Vec<String>, Depth)>,
    /// Other parameters, candidates for index terms (kept only if the catalog has the index).
    pub(crate) terms: Vec<(String, Vec<String>)>,
    /// `sort_on`, if given.
    pub(crate) sort_on: Option<String>,
    /// `sort_order` asks for descending order.
    pub(crate) descending: bool,
    /// Page size.
    pub(crate) limit: usize,
    /// Offset of the first item.
    pub(crate) b_start: usize,
    /// `complete` flag, if given.
    pub(crate) complete: Option<bool>,
    /// `workflow` flag.
    pub(crate) workflow: bool,
    /// `created_since` / `modified_since` (senaite.jsonapi 2.6): a `min` range on that index,
    /// as `(index, unix seconds)`; applied only where the catalog has the index.
    pub(crate) since: Vec<(String, i64)>,
}

impl SearchRequest {
    /// Reads a search from the form.
    pub(crate) fn from_form(form: &Form) -> SearchRequest {
        let mut terms: Vec<(String, Vec<String>)> = Vec::new();
        for (key, value) in form {
            if CONTROL_KEYS.contains(&key.as_str())
                || key.starts_with("recent_")
                || key.ends_with("_since")
            {
                continue;
            }
            match terms.iter_mut().find(|(k, _)| k == key) {
                Some((_, values)) => values.push(value.clone()),
                None => terms.push((key.clone(), vec![value.clone()])),
            }
        }
        let paths: Vec<String> = all(form, "path").into_iter().map(str::to_owned).collect();
        let depth = match first(form, "depth") {
            None => Depth::Levels(0),
            Some(d) => d
                .parse::<u32>()
                .map(Depth::Levels)
                .unwrap_or(Depth::Subtree),
        };
        SearchRequest {
            catalog: first(form, "catalog")
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            portal_types: all(form, "portal_type")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            path: (!paths.is_empty()).then_some((paths, depth)),
            terms,
            sort_on: first(form, "sort_on")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            descending: first(form, "sort_order").is_some_and(is_descending),
            limit: parse_limit(first(form, "limit")),
            b_start: parse_start(first(form, "b_start")),
            complete: flag(form, "complete"),
            workflow: flag(form, "workflow").unwrap_or(false),
            since: ["created", "modified"]
                .iter()
                .filter_map(|index| {
                    let value = first(form, &format!("{index}_since"))?;
                    let secs = crate::extract::since::unix_seconds(value)?;
                    Some(((*index).to_owned(), secs))
                })
                .collect(),
        }
    }
}

/// The `sort_order` spellings that mean descending.
fn is_descending(order: &str) -> bool {
    matches!(
        order,
        "desc" | "DESC" | "descending" | "d" | "down" | "low" | "reverse"
    )
}

/// `limit`: missing, zero, negative or non-numeric means 25; no maximum.
pub(crate) fn parse_limit(value: Option<&str>) -> usize {
    match value.and_then(|v| v.trim().parse::<i64>().ok()) {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(25),
        _ => 25,
    }
}

/// `b_start`: missing, negative or non-numeric means 0.
pub(crate) fn parse_start(value: Option<&str>) -> usize {
    match value.and_then(|v| v.trim().parse::<i64>().ok()) {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(0),
        _ => 0,
    }
}

/// The numbers of one page (plone.batching `Batch`, orphan 0).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    /// Total number of results.
    pub(crate) count: usize,
    /// Page size.
    pub(crate) pagesize: usize,
    /// 1-based page number.
    pub(crate) page: usize,
    /// Number of pages (at least 1).
    pub(crate) pages: usize,
    /// Index range of the items on this page (empty when `b_start` is beyond the end).
    pub(crate) items: std::ops::Range<usize>,
    /// `b_start` of the `next` URL, if there is one.
    pub(crate) next_start: Option<usize>,
    /// `b_start` of the `previous` URL, if there is one.
    pub(crate) previous_start: Option<usize>,
}

/// Computes the envelope numbers of §3.2 for `count` results, page size `limit`, offset `b_start`.
pub(crate) fn batch(count: usize, limit: usize, b_start: usize) -> Batch {
    let size = limit.max(1);
    let pages = count.div_ceil(size).max(1);
    let page = ((b_start.saturating_add(1)).min(count).div_ceil(size))
        .max(1)
        .min(pages);
    let items = if b_start >= count {
        count..count
    } else {
        b_start..b_start.saturating_add(size).min(count)
    };
    let next_start = (b_start.saturating_add(size) < count).then_some(page * size);
    let previous_start = (page > 1).then_some(page.saturating_sub(2) * size);
    Batch {
        count,
        pagesize: size,
        page,
        pages,
        items,
        next_start,
        previous_start,
    }
}

/// `base?<form with b_start replaced>` as `urlencode(form, doseq)` builds it.
pub(crate) fn page_url(base: &str, form: &Form, b_start: usize) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(form.len() + 1);
    let mut replaced = false;
    for (key, value) in form {
        if key == "b_start" {
            if !replaced {
                parts.push(format!("b_start={b_start}"));
                replaced = true;
            }
            continue;
        }
        parts.push(format!("{}={}", encode(key), encode(value)));
    }
    if !replaced {
        parts.insert(0, format!("b_start={b_start}"));
    }
    format!("{base}?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_first_page_of_two() {
        // paging_limit_1: client?limit=1 with 2 clients.
        let b = batch(2, 1, 0);
        assert_eq!((b.count, b.pagesize, b.page, b.pages), (2, 1, 1, 2));
        assert_eq!(b.items, 0..1);
        assert_eq!(b.next_start, Some(1));
        assert_eq!(b.previous_start, None);
    }

    #[test]
    fn batch_beyond_the_end_is_empty_on_the_last_page() {
        // paging_beyond: b_start=5&limit=1 with 2 results.
        let b = batch(2, 1, 5);
        assert_eq!((b.page, b.pages), (2, 2));
        assert!(b.items.is_empty());
        assert_eq!(b.next_start, None);
        assert_eq!(b.previous_start, Some(0));
    }

    #[test]
    fn batch_unaligned_start_points_next_at_page_boundary() {
        let b = batch(4, 2, 1);
        assert_eq!(b.page, 1);
        assert_eq!(b.items, 1..3);
        assert_eq!(b.next_start, Some(2));
        assert_eq!(b.previous_start, None);
        let last = batch(4, 1, 3);
        assert_eq!(
            (last.page, last.previous_start, last.next_start),
            (4, Some(2), None)
        );
    }

    #[test]
    fn batch_of_nothing_is_page_one_of_one() {
        let b = batch(0, 25, 0);
        assert_eq!(
            (b.page, b.pages, b.next_start, b.previous_start),
            (1, 1, None, None)
        );
        assert!(b.items.is_empty());
    }

    #[test]
    fn batch_large_numbers() {
        let b = batch(100_000, 500, 99_500);
        assert_eq!((b.page, b.pages), (200, 200));
        assert_eq!(b.items, 99_500..100_000);
        assert_eq!(b.previous_start, Some(99_000));
        assert_eq!(b.next_start, None);
    }

    #[test]
    fn limit_and_start_defaults() {
        assert_eq!(parse_limit(None), 25);
        assert_eq!(parse_limit(Some("0")), 25);
        assert_eq!(parse_limit(Some("-3")), 25);
        assert_eq!(parse_limit(Some("x")), 25);
        assert_eq!(parse_limit(Some("5000")), 5000);
        assert_eq!(parse_start(Some("-10")), 0);
        assert_eq!(parse_start(Some("abc")), 0);
        assert_eq!(parse_start(Some("7")), 7);
    }

    #[test]
    fn form_round_trip_and_page_urls() {
        let form = parse_form("portal_type=Client&path=%2Fsenaite%2Fclients&q=a+b&limit=1");
        assert_eq!(form[1], ("path".into(), "/senaite/clients".into()));
        assert_eq!(form[2].1, "a b");
        let url = page_url("http://h/x", &form, 1);
        assert_eq!(
            url,
            "http://h/x?b_start=1&portal_type=Client&path=%2Fsenaite%2Fclients&q=a+b&limit=1"
        );
        let again = parse_form("b_start=3&limit=1");
        assert_eq!(page_url("u", &again, 4), "u?b_start=4&limit=1");
    }

    #[test]
    fn search_request_reads_depth_and_flags() {
        let form = parse_form("path=/a&depth=1&complete=YES&workflow=0&getId=x&getId=y");
        let req = SearchRequest::from_form(&form);
        assert_eq!(req.path, Some((vec!["/a".to_string()], Depth::Levels(1))));
        assert_eq!(req.complete, Some(true));
        assert!(!req.workflow);
        assert_eq!(
            req.terms,
            vec![("getId".to_string(), vec!["x".into(), "y".into()])]
        );
        let sub = SearchRequest::from_form(&parse_form("path=/a&depth=-1"));
        assert_eq!(sub.path.map(|p| p.1), Some(Depth::Subtree));
        let none = SearchRequest::from_form(&parse_form("path=/a"));
        assert_eq!(none.path.map(|p| p.1), Some(Depth::Levels(0)));
    }
}
