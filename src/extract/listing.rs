//! Discovering what a site holds: a cheap complete listing of `(uid, portal_type, path)` from
//! `uid_catalog` (which indexes every Archetypes and Dexterity object), sorted on `UID` and
//! de-duplicated, re-read when its unique count falls short of the announced count (objects moved
//! under paging); plus the catalog map that tells which types are Archetypes-mapped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::source::SenaiteClient;
use crate::source::paging;

/// Page size of the cheap listing (catalog metadata only, a few hundred bytes per item).
const LISTING_PAGE: u64 = 1000;
/// How often a listing that did not add up is re-read before we accept it with a note.
const LISTING_TRIES: u32 = 3;
/// `uid_catalog` also lists Archetypes relationship objects, rendered `{}`: not content.
const SKIPPED_TYPES: &[&str] = &["Reference"];

/// One listed object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    /// UID.
    pub uid: String,
    /// portal_type.
    pub portal_type: String,
    /// Physical path.
    pub path: String,
}

/// The result of listing a site.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Listing {
    /// Objects sorted by uid.
    pub objects: Vec<Listed>,
    /// The count `uid_catalog` announced.
    pub announced: u64,
    /// The catalogs as `/catalogs` describes them, plus `uid_catalog`.
    #[serde(default)]
    pub catalogs: Vec<Value>,
}

/// Reads the complete listing of the site.
///
/// # Errors
/// Client errors.
pub fn list_site(client: &SenaiteClient, pool: &rayon::ThreadPool) -> Result<Listing> {
    let site_path = crate::snapshot::site_path(client.site_url());
    // An empty query on uid_catalog answers count 0; a path term with a deep depth lists all.
    let query = vec![
        ("catalog", "uid_catalog".to_string()),
        ("path", site_path),
        ("depth", "100".to_string()),
        ("sort_on", "UID".to_string()),
    ];
    let mut last = Listing::default();
    for attempt in 1..=LISTING_TRIES {
        let (objects, skipped, announced) = read_listing(client, pool, &query)?;
        let complete = objects.len() as u64 + skipped >= announced;
        last = Listing {
            objects,
            announced,
            catalogs: Vec::new(),
        };
        if complete {
            break;
        }
        warn!(
            attempt,
            announced,
            listed = last.objects.len(),
            "Listing did not add up; reading it again."
        );
    }
    last.catalogs = catalogs(client)?;
    info!(objects = last.objects.len(), "Listed the site.");
    Ok(last)
}

/// Reads the first page for the count, then the others concurrently: the objects, how many
/// items were not content, and the announced count.
pub(crate) fn read_listing(
    client: &SenaiteClient,
    pool: &rayon::ThreadPool,
    query: &[(&str, String)],
) -> Result<(Vec<Listed>, u64, u64)> {
    use rayon::prelude::*;
    let first = paging::read_page(client, "search", query, 0, LISTING_PAGE)?;
    let announced = first.count;
    let starts: Vec<u64> = (1..announced.div_ceil(LISTING_PAGE))
        .map(|p| p * LISTING_PAGE)
        .collect();
    // Each page is reduced to (uid, type, path) as it arrives: the listing of a large site
    // never sits in memory as JSON.
    let rest: Vec<Result<(Vec<Listed>, u64)>> = pool.install(|| {
        starts
            .par_iter()
            .map(|b| {
                paging::read_page(client, "search", query, *b, LISTING_PAGE)
                    .map(|p| to_listed(&p.items))
            })
            .collect()
    });
    let (mut objects, mut skipped) = to_listed(&first.items);
    for page in rest {
        let (o, s) = page?;
        objects.extend(o);
        skipped += s;
    }
    Ok((dedupe(objects), skipped, announced))
}

/// The listed objects of a page, and how many items were not content (relationship objects).
fn to_listed(items: &[Value]) -> (Vec<Listed>, u64) {
    let mut out = Vec::with_capacity(items.len());
    let mut skipped = 0;
    for it in items {
        let s = |k: &str| it.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (uid, portal_type, path) = (s("uid"), s("portal_type"), s("path"));
        if uid.is_empty() || portal_type.is_empty() || SKIPPED_TYPES.contains(&portal_type.as_str())
        {
            skipped += 1;
            continue;
        }
        out.push(Listed {
            uid,
            portal_type,
            path,
        });
    }
    (out, skipped)
}

fn dedupe(objects: Vec<Listed>) -> Vec<Listed> {
    let by_uid: BTreeMap<String, Listed> =
        objects.into_iter().map(|l| (l.uid.clone(), l)).collect();
    by_uid.into_values().collect()
}

pub(crate) fn catalogs(client: &SenaiteClient) -> Result<Vec<Value>> {
    let body = client.api_get("catalogs", &[])?;
    let mut items = match body {
        Value::Object(mut m) => match m.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if items.is_empty() {
        return Err(Error::BadResponse {
            url: format!("{}/catalogs", client.api_url()),
            message: "no catalogs listed".into(),
        });
    }
    // `/catalogs` hides uid_catalog; it is readable by id.
    if let Ok(mut uid_catalog) = client.api_get("catalogs/uid_catalog", &[]) {
        if let Value::Object(m) = &mut uid_catalog {
            m.remove("_runtime");
        }
        items.push(uid_catalog);
    }
    for c in &mut items {
        if let Value::Object(m) = c {
            m.remove("_runtime");
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::site_path;
    use serde_json::json;

    #[test]
    fn site_paths() {
        assert_eq!(site_path("http://127.0.0.1:8081/senaite"), "/senaite");
        assert_eq!(site_path("http://h/a/b/"), "/a/b");
        assert_eq!(site_path("http://h"), "/");
    }

    #[test]
    fn listing_dedupes_and_skips_relationships() {
        let items = vec![
            json!({"uid": "b", "portal_type": "Client", "path": "/s/c"}),
            json!({"uid": "a", "portal_type": "Client", "path": "/s/d"}),
            json!({"uid": "b", "portal_type": "Client", "path": "/s/c"}),
            json!({}),
            json!({"uid": "r", "portal_type": "Reference", "path": "/s/at_references/r"}),
        ];
        let got = dedupe(to_listed(&items).0);
        assert_eq!(
            got.iter().map(|l| l.uid.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
