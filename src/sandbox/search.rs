//! Catalog searches over the prepared site, as senaite.jsonapi 2.6 runs them: the catalog is
//! chosen (explicit `catalog=`, else the types' common catalog, else `uid_catalog`), query keys
//! that are not indexes of that catalog are dropped silently, `sort_on` applies only when it is
//! an index, and an empty query on `uid_catalog` finds nothing. Pure, no HTTP.

use std::collections::HashSet;

use super::query::{Depth, SearchRequest};
use super::site::{KEYWORD_INDEXES, Prepared, Site, UID_CATALOG};

/// The message the real site gives for a `portal_type` it does not know (HTTP 500).
pub(crate) const UNKNOWN_TYPE_MESSAGE: &str = "'NoneType' object has no attribute 'product'";

/// The result of a search: the matching slots, in order.
#[derive(Debug)]
pub(crate) struct Found {
    /// Matching object slots in result order.
    pub(crate) slots: Vec<u32>,
}

/// One index term kept for filtering.
struct Term<'a> {
    index: &'a str,
    values: Vec<&'a str>,
}

impl Site {
    /// The catalog a search uses.
    fn choose_catalog(&self, req: &SearchRequest) -> String {
        if let Some(cat) = req
            .catalog
            .as_ref()
            .filter(|c| self.catalogs.contains_key(*c))
        {
            return cat.clone();
        }
        let mut chosen: Option<&String> = None;
        for pt in &req.portal_types {
            match (self.type_catalog.get(pt), chosen) {
                (Some(cat), None) => chosen = Some(cat),
                (Some(cat), Some(prev)) if cat == prev => {}
                _ => return UID_CATALOG.to_owned(),
            }
        }
        chosen.cloned().unwrap_or_else(|| UID_CATALOG.to_owned())
    }

    /// Runs a search.
    ///
    /// # Errors
    /// The real site's message when a `portal_type` is unknown.
    pub(crate) fn search(&self, req: &SearchRequest) -> Result<Found, String> {
        let known: HashSet<&String> = self.resources.values().collect();
        if req.portal_types.iter().any(|pt| !known.contains(pt)) {
            return Err(UNKNOWN_TYPE_MESSAGE.to_owned());
        }
        let catalog = self.choose_catalog(req);
        let Some(index) = self.catalogs.get(&catalog) else {
            return Ok(Found { slots: Vec::new() });
        };
        let has = |name: &str| index.indexes.contains(name);
        let types: Vec<&str> = if has("portal_type") {
            req.portal_types.iter().map(String::as_str).collect()
        } else {
            Vec::new()
        };
        let site_root = format!("/{}", self.site_id);
        // A query for the whole site (the listing every extract starts with) matches every
        // object: skip the per-object path test, which made that listing O(N) per page.
        let path = req
            .path
            .as_ref()
            .filter(|_| has("path"))
            .filter(|(paths, depth)| !(paths.contains(&site_root) && covers_all(depth)));
        let terms: Vec<Term<'_>> = req
            .terms
            .iter()
            .filter(|(k, _)| has(k))
            .map(|(k, values)| Term {
                index: k.as_str(),
                values: split_values(k, values),
            })
            .collect();
        let asked_path = req.path.is_some() && has("path");
        if catalog == UID_CATALOG && types.is_empty() && !asked_path && terms.is_empty() {
            return Ok(Found { slots: Vec::new() });
        }
        let sort_on = req.sort_on.as_deref().filter(|s| has(s));
        let (base, sorted) = match (types.as_slice(), sort_on) {
            ([one], Some(key)) => match index
                .sorted_by_type
                .get(&((*one).to_owned(), key.to_owned()))
            {
                Some(list) => (list.as_slice(), true),
                None => (
                    index.by_type.get(*one).map(Vec::as_slice).unwrap_or(&[]),
                    false,
                ),
            },
            ([one], None) => (
                index.by_type.get(*one).map(Vec::as_slice).unwrap_or(&[]),
                true,
            ),
            (_, Some(key)) => match index.sorted.get(key) {
                Some(list) => (list.as_slice(), true),
                None => (index.members.as_slice(), false),
            },
            (_, None) => (index.members.as_slice(), true),
        };
        // `*_since` ranges on indexes this catalog has; a DateIndex keeps minutes, so the
        // range starts at the minute of the value (seen on the real 2.6).
        let ranges: Vec<(&str, i64)> = req
            .since
            .iter()
            .filter(|(index, _)| has(index))
            .map(|(index, secs)| (index.as_str(), secs.div_euclid(60)))
            .collect();
        if types.len() <= 1 && path.is_none() && terms.is_empty() && ranges.is_empty() && sorted {
            // The per-type (or per-catalog) list is the answer: no per-object work.
            let mut slots = base.to_vec();
            if sort_on.is_some() && req.descending {
                slots.reverse();
            }
            return Ok(Found { slots });
        }
        let type_set: HashSet<&str> = types.iter().copied().collect();
        let mut slots: Vec<u32> = Vec::new();
        for slot in base {
            let Some(obj) = self.object(*slot) else {
                continue;
            };
            if types.len() > 1 && !type_set.contains(obj.portal_type.as_str()) {
                continue;
            }
            if let Some((paths, depth)) = path
                && !paths.iter().any(|p| path_matches(&obj.path, p, depth))
            {
                continue;
            }
            let in_range = |(index, minute): &(&str, i64)| {
                crate::extract::since::unix_seconds(obj.sort_value(index))
                    .is_some_and(|t| t.div_euclid(60) >= *minute)
            };
            if !ranges.iter().all(in_range) {
                continue;
            }
            if terms.iter().all(|t| self.term_matches(obj, t)) {
                slots.push(*slot);
            }
        }
        if let (Some(key), false) = (sort_on, sorted) {
            slots.sort_by(|a, b| self.sort_pair(*a, key).cmp(&self.sort_pair(*b, key)));
        }
        if sort_on.is_some() && req.descending {
            slots.reverse();
        }
        Ok(Found { slots })
    }

    /// The sort key of a slot.
    fn sort_pair(&self, slot: u32, key: &str) -> (&str, u64) {
        self.object(slot)
            .map(|o| (o.sort_value(key), o.seq))
            .unwrap_or(("", 0))
    }

    /// Whether an object has one of the term's values in that index.
    fn term_matches(&self, obj: &Prepared, term: &Term<'_>) -> bool {
        match term.index {
            "getAncestorsUIDs" => {
                let mut path = obj.path.as_str();
                while let Some((parent, _)) = path.rsplit_once('/') {
                    if let Some(p) = self.by_path(parent)
                        && term.values.contains(&p.uid.as_str())
                    {
                        return true;
                    }
                    path = parent;
                }
                false
            }
            "is_active" => {
                // BooleanIndex: any non-empty string is True.
                let wanted = if term.values.is_empty() {
                    "False"
                } else {
                    "True"
                };
                obj.terms
                    .get("is_active")
                    .is_some_and(|v| v.iter().any(|s| s == wanted))
            }
            index => obj
                .terms
                .get(index)
                .is_some_and(|have| have.iter().any(|h| term.values.contains(&h.as_str()))),
        }
    }
}

/// Query values of one index: keyword indexes split on commas.
fn split_values<'a>(index: &str, values: &'a [String]) -> Vec<&'a str> {
    if KEYWORD_INDEXES.contains(&index) {
        values.iter().flat_map(|v| v.split(',')).collect()
    } else {
        values.iter().map(String::as_str).collect()
    }
}

/// Whether a depth reaches every object below a path (SENAITE paths are a few levels deep).
fn covers_all(depth: &Depth) -> bool {
    match depth {
        Depth::Subtree => true,
        Depth::Levels(n) => *n >= 32,
    }
}

/// ExtendedPathIndex: depth 0 is the object itself, `n` the levels `1..=n` below it, a
/// non-numeric depth the object and its whole subtree.
pub(crate) fn path_matches(object_path: &str, query: &str, depth: &Depth) -> bool {
    if object_path == query {
        return matches!(depth, Depth::Levels(0) | Depth::Subtree);
    }
    let Some(rest) = object_path
        .strip_prefix(query)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    match depth {
        Depth::Subtree => true,
        Depth::Levels(n) => {
            let levels = rest.split('/').count();
            levels >= 1 && levels <= *n as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_depth_rules() {
        let d0 = Depth::Levels(0);
        let d1 = Depth::Levels(1);
        let d2 = Depth::Levels(2);
        let c1 = "/senaite/clients/client-1";
        assert!(path_matches(c1, c1, &d0));
        assert!(!path_matches(&format!("{c1}/contact-1"), c1, &d0));
        assert!(!path_matches(c1, c1, &d1));
        assert!(path_matches(&format!("{c1}/contact-1"), c1, &d1));
        assert!(!path_matches(&format!("{c1}/W-1/Ca"), c1, &d1));
        assert!(path_matches(&format!("{c1}/W-1/Ca"), c1, &d2));
        assert!(path_matches(c1, c1, &Depth::Subtree));
        assert!(path_matches(&format!("{c1}/W-1/Ca"), c1, &Depth::Subtree));
        assert!(!path_matches(
            "/senaite/clients/client-10",
            c1,
            &Depth::Subtree
        ));
        assert!(!path_matches(
            &format!("{c1}/contact-1"),
            &format!("{c1}/"),
            &d1
        ));
    }
}
