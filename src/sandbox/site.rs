//! The served form of a [`SiteData`]: every object's answers pre-serialized once (complete record
//! with and without `workflow_info`, the catalog record of each catalog that indexes it), URLs
//! already rewritten to the sandbox's origin, and per-catalog member lists (by type, by sort key)
//! so that a page is a filter plus a concatenation of bytes. Knows nothing about HTTP.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use serde_json::{Map, Value};

use super::data::{SiteBlob, SiteData, SiteObject};
use crate::jsonx::to_string_python;

/// The catalog that indexes every object; the fallback of a search.
pub(crate) const UID_CATALOG: &str = "uid_catalog";

/// Catalog metadata columns a catalog record leaves out (senaite.jsonapi's ignore list).
const IGNORED_COLUMNS: &[&str] = &[
    "CreationDate",
    "Creator",
    "Date",
    "Description",
    "EffectiveDate",
    "ExpirationDate",
    "ModificationDate",
    "Subject",
    "Title",
    "Type",
    "UID",
    "cmf_uid",
    "getIcon",
    "getId",
    "getObjSize",
    "getRemoteUrl",
    "listCreators",
    "meta_type",
];

/// Sort indexes whose orders are kept ready (others are sorted per request).
const PRESORTED: &[&str] = &[
    "created",
    "modified",
    "UID",
    "id",
    "getId",
    "sortable_title",
];

/// Keyword indexes: a query value is split on commas.
pub(crate) const KEYWORD_INDEXES: &[&str] = &[
    "getAncestorsUIDs",
    "allowedRolesAndUsers",
    "object_provides",
    "getAnalysesUIDs",
    "getSupportedServices",
    "labels",
];

/// Replaces the recorded origin by the sandbox's own in served text.
#[derive(Debug, Clone)]
pub(crate) struct Rewrite {
    /// The origin found in recorded bodies (empty: no rewriting).
    pub(crate) from: String,
    /// The sandbox's origin.
    pub(crate) to: String,
}

impl Rewrite {
    /// Serializes a value as Python would and rewrites its URLs.
    pub(crate) fn json(&self, value: &Value) -> String {
        self.text(to_string_python(value))
    }

    /// Rewrites URLs in some text.
    pub(crate) fn text(&self, text: String) -> String {
        if self.from.is_empty() || self.from == self.to || !text.contains(&self.from) {
            return text;
        }
        text.replace(&self.from, &self.to)
    }

    /// A value with its URLs rewritten.
    pub(crate) fn value(&self, value: &Value) -> Value {
        let text = self.text(value.to_string());
        serde_json::from_str(&text).unwrap_or_else(|_| value.clone())
    }
}

/// One catalog: its description and the ordered lists of its members.
#[derive(Debug, Default)]
pub(crate) struct CatalogIndex {
    /// The `/catalogs/<id>` description (`id`, `indexes`, `schema`, `portal_types`).
    pub(crate) description: Value,
    /// Index names.
    pub(crate) indexes: HashSet<String>,
    /// Keys of this catalog's records.
    pub(crate) record_keys: Vec<String>,
    /// Members in catalog order.
    pub(crate) members: Vec<u32>,
    /// Members by portal_type, in catalog order.
    pub(crate) by_type: HashMap<String, Vec<u32>>,
    /// Members ordered by a sort index (ties by catalog order).
    pub(crate) sorted: HashMap<String, Vec<u32>>,
    /// Members of one type ordered by a sort index.
    pub(crate) sorted_by_type: HashMap<(String, String), Vec<u32>>,
}

impl CatalogIndex {
    fn new(description: Value) -> CatalogIndex {
        let names = |key: &str| -> Vec<String> {
            description[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut keys: Vec<String> = names("schema")
            .into_iter()
            .filter(|c| !IGNORED_COLUMNS.contains(&c.as_str()))
            .collect();
        keys.extend(
            crate::source::MAPPED_CATALOG_KEYS
                .iter()
                .map(|k| (*k).to_owned()),
        );
        keys.sort();
        keys.dedup();
        CatalogIndex {
            indexes: names("indexes").into_iter().collect(),
            record_keys: keys,
            description,
            ..CatalogIndex::default()
        }
    }
}

/// One object as served.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// 32-character uid.
    pub(crate) uid: String,
    /// portal_type.
    pub(crate) portal_type: String,
    /// Physical path.
    pub(crate) path: String,
    /// Primary catalog (`uid_catalog` when the type has none).
    pub(crate) catalog: String,
    /// Insertion order (the catalogs' internal order).
    pub(crate) seq: u64,
    /// The complete record without `workflow_info`, Python-serialized, URLs rewritten.
    pub(crate) complete: Vec<u8>,
    /// The serialized `workflow_info` value, if the record had one.
    pub(crate) workflow: Option<Vec<u8>>,
    /// The catalog record (metadata of the primary catalog), serialized.
    pub(crate) brief: Vec<u8>,
    /// Index terms by index name.
    pub(crate) terms: HashMap<String, Vec<String>>,
    /// Error answered by complete reads.
    pub(crate) v1_error: Option<String>,
    /// plone.restapi bodies, serialized: object, `@history`, `@sharing`.
    pub(crate) restapi: [Option<Vec<u8>>; 3],
}

impl Prepared {
    /// Appends the complete record (with `workflow_info` if asked and present) to `out`.
    pub(crate) fn write_complete(&self, workflow: bool, out: &mut Vec<u8>) {
        match (&self.workflow, workflow) {
            (Some(wf), true) if self.complete.len() >= 2 => {
                out.extend_from_slice(&self.complete[..self.complete.len() - 1]);
                if self.complete.len() > 2 {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"workflow_info\":");
                out.extend_from_slice(wf);
                out.push(b'}');
            }
            _ => out.extend_from_slice(&self.complete),
        }
    }

    /// The value this object sorts by on `index`.
    pub(crate) fn sort_value(&self, index: &str) -> &str {
        self.terms
            .get(index)
            .and_then(|t| t.first())
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Everything a running sandbox serves, ready to answer.
#[derive(Debug, Default)]
pub(crate) struct Site {
    /// Plone site id.
    pub(crate) site_id: String,
    /// senaite.jsonapi version.
    pub(crate) jsonapi_version: String,
    /// URL rewriting of recorded bodies.
    pub(crate) rewrite: Option<Rewrite>,
    /// Object slots (removed objects leave `None`).
    pub(crate) objects: Vec<Option<Prepared>>,
    /// Slot by uid.
    pub(crate) by_uid: HashMap<String, u32>,
    /// Slot by physical path.
    pub(crate) by_path: HashMap<String, u32>,
    /// Catalogs by id (`uid_catalog` included).
    pub(crate) catalogs: BTreeMap<String, CatalogIndex>,
    /// Every index name of every catalog (the record keys worth keeping as terms).
    pub(crate) index_names: HashSet<String>,
    /// Primary catalog by portal_type.
    pub(crate) type_catalog: HashMap<String, String>,
    /// portal_type by resource name (lower-cased, spaces removed).
    pub(crate) resources: HashMap<String, String>,
    /// v1 `/users` items, rewritten.
    pub(crate) users: Vec<Value>,
    /// plone.restapi `@users` items, rewritten.
    pub(crate) restapi_users: Vec<Value>,
    /// plone.restapi `@groups/<id>` bodies, rewritten.
    pub(crate) restapi_groups: Vec<Value>,
    /// plone.restapi `@registry` items.
    pub(crate) registry: Vec<Value>,
    /// v1 settings by key.
    pub(crate) settings: BTreeMap<String, Result<Value, String>>,
    /// Downloads by URL path.
    pub(crate) blobs: BTreeMap<String, SiteBlob>,
    /// What the receiver keeps besides content (applied hashes, staged blobs, counters).
    pub(crate) sync: super::receiver::SyncState,
    next_seq: u64,
}

/// `Client` -> `client`, `Plone Site` -> `plonesite`.
pub(crate) fn resource_name(portal_type: &str) -> String {
    portal_type.replace(' ', "").to_lowercase()
}

impl Site {
    /// Prepares `data` for serving at `origin` (`http://127.0.0.1:PORT`).
    pub(crate) fn build(data: SiteData, origin: &str) -> Site {
        let rewrite = Rewrite {
            from: data.recorded_origin.clone(),
            to: origin.to_owned(),
        };
        let mut site = Site {
            site_id: data.site_id,
            jsonapi_version: data.jsonapi_version,
            users: data.users.iter().map(|v| rewrite.value(v)).collect(),
            restapi_users: data
                .restapi_users
                .iter()
                .map(|v| rewrite.value(v))
                .collect(),
            restapi_groups: data
                .restapi_groups
                .iter()
                .map(|v| rewrite.value(v))
                .collect(),
            registry: data.registry,
            settings: data
                .settings
                .into_iter()
                .map(|(k, v)| (k, v.map(|v| rewrite.value(&v))))
                .collect(),
            blobs: data.blobs,
            ..Site::default()
        };
        for description in data.catalogs {
            if let Some(id) = description["id"].as_str() {
                site.catalogs
                    .insert(id.to_owned(), CatalogIndex::new(description.clone()));
            }
        }
        if !site.catalogs.contains_key(UID_CATALOG) {
            let uid = serde_json::json!({"id": UID_CATALOG, "indexes": ["Title", "Type", "UID",
                "id", "path", "portal_type"], "schema": ["Title", "Type", "UID", "id",
                "portal_type"], "portal_types": []});
            site.catalogs
                .insert(UID_CATALOG.to_owned(), CatalogIndex::new(uid));
        }
        for catalog in site.catalogs.values() {
            for pt in catalog.description["portal_types"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(pt) = pt.as_str() {
                    site.resources.insert(resource_name(pt), pt.to_owned());
                }
            }
        }
        site.index_names = site
            .catalogs
            .values()
            .flat_map(|c| c.indexes.iter().cloned())
            .collect();
        site.rewrite = Some(rewrite);
        let prepared: Vec<Prepared> = data
            .objects
            .par_iter()
            .enumerate()
            .filter_map(|(seq, obj)| site.prepare(obj, seq as u64))
            .collect();
        for p in prepared {
            site.add_prepared(p, false);
        }
        site.sort_all();
        site
    }

    /// Serializes one object; `None` when its record lacks a uid.
    fn prepare(&self, obj: &SiteObject, seq: u64) -> Option<Prepared> {
        let record = obj.record.as_object()?;
        let text = |key: &str| {
            record
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let uid = text("uid");
        if uid.is_empty() {
            return None;
        }
        let rewrite = self.rewrite.clone().unwrap_or(Rewrite {
            from: String::new(),
            to: String::new(),
        });
        let catalog = obj
            .catalog
            .clone()
            .filter(|c| self.catalogs.contains_key(c))
            .unwrap_or_else(|| UID_CATALOG.to_owned());
        let mut without_wf = record.clone();
        let workflow = without_wf
            .remove("workflow_info")
            .map(|wf| rewrite.json(&wf).into_bytes());
        // senaite.jsonapi >= 2.5 describes a catalog hit with the metadata of the object's own
        // catalog, whichever catalog the search ran on (seen on the real 2.6).
        let brief = self.catalogs.get(&catalog).map(|index| {
            let brief: Map<String, Value> = index
                .record_keys
                .iter()
                .map(|k| (k.clone(), without_wf.get(k).cloned().unwrap_or(Value::Null)))
                .collect();
            rewrite.json(&Value::Object(brief)).into_bytes()
        });
        let body = |v: &Option<Value>| v.as_ref().map(|v| rewrite.json(v).into_bytes());
        Some(Prepared {
            portal_type: text("portal_type"),
            path: text("path"),
            terms: index_terms(record, &uid, &self.index_names),
            uid,
            catalog,
            seq,
            complete: rewrite.json(&Value::Object(without_wf)).into_bytes(),
            workflow,
            brief: brief.unwrap_or_else(|| b"{}".to_vec()),
            v1_error: obj.v1_error.clone(),
            restapi: [body(&obj.restapi), body(&obj.history), body(&obj.sharing)],
        })
    }

    /// Adds a new object to the live site (replacing one with the same uid).
    pub(crate) fn insert(&mut self, obj: &SiteObject) {
        let seq = self.next_seq;
        if let Some(prepared) = self.prepare(obj, seq) {
            self.remove(&prepared.uid.clone());
            self.add_prepared(prepared, true);
        }
    }

    /// Stores a prepared object and files it in its catalogs.
    fn add_prepared(&mut self, p: Prepared, presort: bool) {
        let slot = u32::try_from(self.objects.len()).unwrap_or(u32::MAX);
        self.next_seq = self.next_seq.max(p.seq + 1);
        self.by_uid.insert(p.uid.clone(), slot);
        self.by_path.insert(p.path.clone(), slot);
        self.resources
            .insert(resource_name(&p.portal_type), p.portal_type.clone());
        if p.catalog != UID_CATALOG {
            self.type_catalog
                .entry(p.portal_type.clone())
                .or_insert_with(|| p.catalog.clone());
        }
        let mut cats = vec![p.catalog.clone()];
        if p.catalog != UID_CATALOG {
            cats.push(UID_CATALOG.to_owned());
        }
        let portal_type = p.portal_type.clone();
        self.objects.push(Some(p));
        for cat in cats {
            self.file(&cat, slot, &portal_type, presort);
        }
    }

    /// Files `slot` in the member lists of `catalog`; `presort` keeps the sorted lists sorted
    /// (live inserts), otherwise [`Site::sort_all`] sorts them once after a bulk load.
    fn file(&mut self, catalog: &str, slot: u32, portal_type: &str, presort: bool) {
        let objects = &self.objects;
        let Some(index) = self.catalogs.get_mut(catalog) else {
            return;
        };
        index.members.push(slot);
        let typed = index.by_type.entry(portal_type.to_owned()).or_default();
        typed.push(slot);
        for key in PRESORTED.iter().filter(|k| index.indexes.contains(**k)) {
            let all = index.sorted.entry((*key).to_owned()).or_default();
            let typed = index
                .sorted_by_type
                .entry((portal_type.to_owned(), (*key).to_owned()))
                .or_default();
            for list in [all, typed] {
                if presort {
                    let mine = sort_key(objects, slot, key);
                    let at = list.partition_point(|s| sort_key(objects, *s, key) <= mine);
                    list.insert(at, slot);
                } else {
                    list.push(slot);
                }
            }
        }
    }

    /// Sorts every presorted list (after a bulk load).
    fn sort_all(&mut self) {
        let objects = &self.objects;
        for index in self.catalogs.values_mut() {
            index.sorted.par_iter_mut().for_each(|(key, list)| {
                list.sort_by(|a, b| sort_key(objects, *a, key).cmp(&sort_key(objects, *b, key)));
            });
            index
                .sorted_by_type
                .par_iter_mut()
                .for_each(|((_, key), list)| {
                    list.sort_by(|a, b| {
                        sort_key(objects, *a, key).cmp(&sort_key(objects, *b, key))
                    });
                });
        }
    }

    /// Removes an object from the live site; unknown uids are ignored.
    pub(crate) fn remove(&mut self, uid: &str) {
        let Some(slot) = self.by_uid.remove(uid) else {
            return;
        };
        if let Some(Some(p)) = self.objects.get(slot as usize) {
            self.by_path.remove(&p.path);
        }
        if let Some(entry) = self.objects.get_mut(slot as usize) {
            *entry = None;
        }
        for index in self.catalogs.values_mut() {
            index.members.retain(|s| *s != slot);
            index
                .by_type
                .values_mut()
                .for_each(|l| l.retain(|s| *s != slot));
            index
                .sorted
                .values_mut()
                .for_each(|l| l.retain(|s| *s != slot));
            let typed = index.sorted_by_type.values_mut();
            typed.for_each(|l| l.retain(|s| *s != slot));
        }
    }

    /// The object in `slot`.
    pub(crate) fn object(&self, slot: u32) -> Option<&Prepared> {
        self.objects.get(slot as usize).and_then(Option::as_ref)
    }

    /// The object with this uid.
    pub(crate) fn by_uid(&self, uid: &str) -> Option<&Prepared> {
        self.by_uid.get(uid).and_then(|s| self.object(*s))
    }

    /// The object at this physical path.
    pub(crate) fn by_path(&self, path: &str) -> Option<&Prepared> {
        self.by_path.get(path).and_then(|s| self.object(*s))
    }

    /// The site's physical path (`/senaite`).
    pub(crate) fn site_path(&self) -> String {
        format!("/{}", self.site_id)
    }

    /// The catalog a new object of `portal_type` is filed in (as the snapshot loader decides);
    /// `None` when the site has no catalogs but `uid_catalog`.
    pub(crate) fn catalog_for_type(&self, portal_type: &str) -> Option<String> {
        let descriptions: Vec<Value> = self
            .catalogs
            .values()
            .map(|c| c.description.clone())
            .collect();
        let map = super::load::catalog_map(&descriptions);
        let catalog = super::load::catalog_for(&map, portal_type, &descriptions);
        self.catalogs.contains_key(&catalog).then_some(catalog)
    }

    /// The object with this uid as a [`SiteObject`] again (what [`Site::insert`] takes), from
    /// its served bytes: URLs are the sandbox's own.
    pub(crate) fn site_object(&self, uid: &str) -> Option<SiteObject> {
        let p = self.by_uid(uid)?;
        let parse = |bytes: &[u8]| crate::jsonx::parse_lenient(bytes).ok();
        let mut record = parse(&p.complete)?;
        if let (Some(wf), Value::Object(m)) = (p.workflow.as_deref().and_then(parse), &mut record) {
            m.insert("workflow_info".into(), wf);
        }
        let body = |i: usize| p.restapi[i].as_deref().and_then(parse);
        Some(SiteObject {
            record,
            catalog: (p.catalog != UID_CATALOG).then(|| p.catalog.clone()),
            v1_error: p.v1_error.clone(),
            restapi: body(0),
            history: body(1),
            sharing: body(2),
        })
    }

    /// A value with recorded URLs rewritten, serialized.
    pub(crate) fn serialize(&self, value: &Value) -> String {
        match &self.rewrite {
            Some(r) => r.json(value),
            None => to_string_python(value),
        }
    }
}

/// The sort key of `slot` on `index`: its value, then its catalog order.
fn sort_key<'a>(objects: &'a [Option<Prepared>], slot: u32, index: &str) -> (&'a str, u64) {
    match objects.get(slot as usize).and_then(Option::as_ref) {
        Some(o) => (o.sort_value(index), o.seq),
        None => ("", 0),
    }
}

/// The terms an object has in the indexes we can derive from its record.
fn index_terms(
    record: &Map<String, Value>,
    uid: &str,
    index_names: &HashSet<String>,
) -> HashMap<String, Vec<String>> {
    let mut terms: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in record {
        if !index_names.contains(key) && key != "id" && key != "created" && key != "modified" {
            continue;
        }
        let values = term_values(value);
        if !values.is_empty() {
            terms.insert(key.clone(), values);
        }
    }
    let text = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_owned);
    terms.insert("UID".into(), vec![uid.to_owned()]);
    if let Some(id) = text("id") {
        terms.insert("getId".into(), vec![id]);
    }
    if let Some(title) = text("title") {
        terms.insert("Title".into(), vec![title.clone()]);
        terms.insert("sortable_title".into(), vec![title.to_lowercase()]);
    }
    if let Some(parent) = text("parent_uid") {
        terms.insert("getParentUID".into(), vec![parent]);
    }
    if let Some(author) = text("author") {
        terms.insert("Creator".into(), vec![author]);
    }
    if !terms.contains_key("review_state") {
        let state = record
            .get("workflow_info")
            .and_then(|w| w.get(0))
            .and_then(|w| w.get("review_state"))
            .and_then(Value::as_str);
        if let Some(state) = state {
            terms.insert("review_state".into(), vec![state.to_owned()]);
        }
    }
    if !terms.contains_key("is_active") {
        let inactive = terms.get("review_state").is_some_and(|s| {
            s.iter()
                .any(|s| matches!(s.as_str(), "inactive" | "cancelled" | "invalid"))
        });
        let active = if inactive { "False" } else { "True" };
        terms.insert("is_active".into(), vec![active.to_owned()]);
    }
    terms
}

/// Index terms of one record value: strings, numbers, booleans, uids of url-info dicts.
fn term_values(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Bool(b) => vec![if *b { "True" } else { "False" }.to_owned()],
        Value::Object(o) => o
            .get("uid")
            .and_then(Value::as_str)
            .map(|u| vec![u.to_owned()])
            .unwrap_or_default(),
        Value::Array(items) => items
            .iter()
            .filter(|v| !v.is_array())
            .flat_map(term_values)
            .collect(),
        Value::Null => Vec::new(),
    }
}
