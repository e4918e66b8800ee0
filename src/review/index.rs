//! The compact indexes `review` keeps while it streams a snapshot: uid -> portal type with
//! SENAITE uids as 128-bit keys, and 64-bit path hashes; and the single pass over a destination
//! snapshot (`--against`) that collects its uids, paths, object counts and field names per
//! portal type, plus the portal types its catalogs are set up for. Offline; never touches the
//! network.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::Value;

use crate::error::Result;
use crate::snapshot::table::{OBJECTS, TableReader};
use crate::snapshot::{Snapshot, layout, manifest_site_path};

/// uid -> portal type, compact: SENAITE uids (32 lower-case hex digits) as 128-bit keys.
#[derive(Debug, Default)]
pub(crate) struct UidIndex {
    types: Vec<String>,
    type_ids: HashMap<String, u32>,
    hex: HashMap<u128, u32>,
    other: HashMap<String, u32>,
}

impl UidIndex {
    /// Adds a uid of a portal type.
    pub(crate) fn insert(&mut self, uid: &str, portal_type: &str) {
        let next = self.types.len() as u32;
        let id = *self.type_ids.entry(portal_type.to_string()).or_insert(next);
        if id == next {
            self.types.push(portal_type.to_string());
        }
        match uid_key(uid) {
            Some(k) => self.hex.insert(k, id),
            None => self.other.insert(uid.to_string(), id),
        };
    }

    /// The portal type of a uid in the index.
    pub(crate) fn type_of(&self, uid: &str) -> Option<&str> {
        let id = match uid_key(uid) {
            Some(k) => self.hex.get(&k),
            None => self.other.get(uid),
        }?;
        self.types.get(*id as usize).map(String::as_str)
    }

    /// Whether the uid is in the index.
    pub(crate) fn contains(&self, uid: &str) -> bool {
        self.type_of(uid).is_some()
    }
}

pub(crate) fn uid_key(uid: &str) -> Option<u128> {
    let hex = uid.len() == 32
        && uid
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex {
        u128::from_str_radix(uid, 16).ok()
    } else {
        None
    }
}

/// A 64-bit hash of a path. A collision could only hide an orphan, never invent one.
pub(crate) fn path_hash(path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// Column positions in the objects table.
pub(crate) struct Cols {
    pub(crate) uid: usize,
    pub(crate) portal_type: usize,
    pub(crate) path: usize,
    pub(crate) parent_path: usize,
    pub(crate) title: usize,
    pub(crate) created: usize,
    pub(crate) review_state: usize,
    pub(crate) fields: usize,
}

impl Cols {
    /// The positions in [`OBJECTS`].
    pub(crate) fn objects() -> Cols {
        let c = |name: &str| OBJECTS.col(name).unwrap_or(0);
        Cols {
            uid: c("uid"),
            portal_type: c("portal_type"),
            path: c("path"),
            parent_path: c("parent_path"),
            title: c("title"),
            created: c("created"),
            review_state: c("review_state"),
            fields: c("fields"),
        }
    }
}

/// What the destination snapshot holds, for drift and for resolving warnings.
#[derive(Debug)]
pub(crate) struct DestScan {
    /// Directory.
    pub dir: String,
    /// Snapshot id.
    pub snapshot_id: String,
    /// Site URL.
    pub source: String,
    /// Site root path.
    pub site_path: String,
    /// Objects.
    pub objects: u64,
    /// Objects per type.
    pub types: BTreeMap<String, u64>,
    /// Objects per type and field name.
    pub fields: BTreeMap<String, BTreeMap<String, u64>>,
    /// The portal types the destination's catalogs are set up for (`raw/site`), when recorded.
    pub catalog_types: Option<BTreeSet<String>>,
    /// Its uids.
    pub(crate) index: UidIndex,
    /// Hashes of its paths.
    pub(crate) paths: HashSet<u64>,
}

#[cfg(test)]
impl DestScan {
    /// A destination with these fields per type (one object per field count) and catalogs.
    pub(crate) fn for_test(
        fields: BTreeMap<String, BTreeMap<String, u64>>,
        catalog_types: Option<BTreeSet<String>>,
    ) -> DestScan {
        DestScan {
            dir: "dest".into(),
            snapshot_id: "d".into(),
            source: "http://127.0.0.1:1/senaite".into(),
            site_path: "/senaite".into(),
            objects: 0,
            types: fields
                .iter()
                .map(|(t, f)| (t.clone(), f.values().copied().max().unwrap_or(0)))
                .collect(),
            fields,
            catalog_types,
            index: UidIndex::default(),
            paths: HashSet::new(),
        }
    }
}

impl DestScan {
    /// Whether the destination has an object at `path` (or it is the site root).
    pub(crate) fn has_path(&self, path: &str) -> bool {
        path == self.site_path || self.paths.contains(&path_hash(path))
    }
}

/// Reads a destination snapshot once: types, field names per type, uids, paths.
pub(crate) fn scan_destination(snap: &Snapshot) -> Result<DestScan> {
    let c = Cols::objects();
    let mut out = DestScan {
        dir: snap.dir.display().to_string(),
        snapshot_id: snap.manifest.snapshot_id.clone(),
        source: snap.manifest.source.site_url.clone(),
        site_path: manifest_site_path(&snap.manifest),
        objects: 0,
        types: BTreeMap::new(),
        fields: BTreeMap::new(),
        catalog_types: catalog_types(snap)?,
        index: UidIndex::default(),
        paths: HashSet::new(),
    };
    for row in TableReader::open(&snap.dir, &OBJECTS)? {
        let row = row?;
        let s = |i: usize| row[i].as_str().unwrap_or("");
        let pt = s(c.portal_type);
        out.objects += 1;
        *out.types.entry(pt.to_string()).or_insert(0) += 1;
        out.index.insert(s(c.uid), pt);
        out.paths.insert(path_hash(s(c.path)));
        let keys: BTreeMap<String, serde::de::IgnoredAny> =
            serde_json::from_str(s(c.fields)).unwrap_or_default();
        let per_type = out.fields.entry(pt.to_string()).or_default();
        for k in keys.into_keys() {
            *per_type.entry(k).or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// The union of the `portal_types` of every catalog in the `site` raw stream; `None` when the
/// snapshot carries no such stream (deltas and transformed snapshots may not).
fn catalog_types(snap: &Snapshot) -> Result<Option<BTreeSet<String>>> {
    if snap.manifest.file(&layout::raw_rel("site")).is_none() {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    let mut found = false;
    for doc in crate::snapshot::jsonl::JsonlReader::open(&snap.raw_path("site"))? {
        let doc = doc?;
        if doc.get("kind").and_then(Value::as_str) != Some("catalogs") {
            continue;
        }
        found = true;
        for cat in doc
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let types = cat.get("portal_types").and_then(Value::as_array);
            for t in types.into_iter().flatten().filter_map(Value::as_str) {
                out.insert(t.to_string());
            }
        }
    }
    Ok(found.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_index_keeps_hex_and_other_uids_apart() {
        let mut i = UidIndex::default();
        i.insert("0", "Plone Site");
        i.insert(&"a".repeat(32), "Client");
        i.insert(&"A".repeat(32), "Contact");
        assert_eq!(i.type_of("0"), Some("Plone Site"));
        assert_eq!(i.type_of(&"a".repeat(32)), Some("Client"));
        assert_eq!(i.type_of(&"A".repeat(32)), Some("Contact"));
        assert!(!i.contains(&"b".repeat(32)));
        // A leading '+' parses as a number but is not a uid.
        assert!(uid_key(&format!("+{}", "0".repeat(31))).is_none());
    }
}
