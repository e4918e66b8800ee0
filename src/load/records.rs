//! Load records from a snapshot: one JSON record per object with its rows from every table
//! (`companion/PROTOCOL.md`, "POST sync/apply"), paths rewritten to the destination's site, a
//! `load_hash` over the whole record (what makes a re-run skip unchanged work), the UIDs it
//! references, and the order to send them in: containers before their contents, referenced objects
//! before referencing ones; a reference cycle is broken by sending the shallowest object first (the
//! receiver defers references to objects that do not exist yet, and the loader sends those
//! records again at the end).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::Result;
use crate::jsonx;
use crate::snapshot::table::{
    BLOBS, GROUPS, LOCAL_ROLES, OBJECTS, TableDef, TableReader, USERS, WORKFLOW_HISTORY,
    WORKFLOW_STATES, row_to_json,
};
use crate::snapshot::{Snapshot, manifest_site_path};

/// One object ready to send.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its UID.
    pub uid: String,
    /// Its portal type.
    pub portal_type: String,
    /// Its path in the destination.
    pub path: String,
    /// Its parent's UID, when the snapshot has one.
    pub parent_uid: Option<String>,
    /// Its parent's path in the destination.
    pub parent_path: Option<String>,
    /// The JSON record sent to the receiver (with `load_hash`), serialized: a few times smaller
    /// in memory than a `Value` tree, and sent as it is.
    pub json: Box<str>,
    /// sha256 of the canonical record without `load_hash`.
    pub load_hash: String,
    /// UIDs its fields reference (possibly outside the snapshot).
    pub refs: Vec<String>,
    /// Blobs it needs: (sha256, size).
    pub blobs: Vec<(String, u64)>,
}

/// Every record of a snapshot plus its principals.
#[derive(Debug, Default)]
pub struct RecordSet {
    /// Records in load order.
    pub records: Vec<Record>,
    /// Index of a uid in `records`.
    pub index: HashMap<String, usize>,
    /// `users` rows as JSON.
    pub users: Vec<Value>,
    /// `groups` rows as JSON.
    pub groups: Vec<Value>,
    /// The source site's path (`/senaite`).
    pub source_site_path: String,
    /// The destination site's path.
    pub dest_site_path: String,
}

impl Record {
    /// The record as a JSON value (parsed on demand).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }
}

impl RecordSet {
    /// The record of a uid.
    pub fn get(&self, uid: &str) -> Option<&Record> {
        self.index.get(uid).map(|&i| &self.records[i])
    }
}

/// Reads every record of `snap`, rewriting paths from the source's site path to `dest_site_path`,
/// and orders them for loading.
///
/// # Errors
/// When a table cannot be read.
pub fn read(snap: &Snapshot, dest_site_path: &str) -> Result<RecordSet> {
    let source_site_path = manifest_site_path(&snap.manifest);
    let mut extra: HashMap<String, Parts> = HashMap::new();
    collect(snap, &WORKFLOW_HISTORY, &mut extra, |p, row| {
        p.history.push(row)
    })?;
    collect(snap, &WORKFLOW_STATES, &mut extra, |p, row| {
        p.states.push(row)
    })?;
    collect(snap, &LOCAL_ROLES, &mut extra, |p, row| p.roles.push(row))?;
    collect(snap, &BLOBS, &mut extra, |p, row| p.blobs.push(row))?;

    let mut records = Vec::new();
    for row in TableReader::open(&snap.dir, &OBJECTS)? {
        let mut obj = row_to_json(&OBJECTS, row?);
        let uid = str_of(&obj, "uid");
        let parts = extra.remove(&uid).unwrap_or_default();
        for key in ["path", "parent_path"] {
            if let Some(Value::String(p)) = obj.get_mut(key) {
                *p = rewrite_path(p, &source_site_path, dest_site_path);
            }
        }
        let refs = references(&uid, obj.get("fields").unwrap_or(&Value::Null));
        let blobs: Vec<(String, u64)> = parts
            .blobs
            .iter()
            .filter_map(|b| {
                let sha = b.get("sha256")?.as_str()?.to_string();
                let size = b.get("size").and_then(Value::as_u64).unwrap_or(0);
                Some((sha, size))
            })
            .collect();
        let strip_uid = |rows: Vec<Map<String, Value>>| -> Value {
            Value::Array(
                rows.into_iter()
                    .map(|mut r| {
                        r.remove("uid");
                        Value::Object(r)
                    })
                    .collect(),
            )
        };
        obj.insert("workflow_history".into(), strip_uid(parts.history));
        obj.insert("workflow_states".into(), strip_uid(parts.states));
        obj.insert("local_roles".into(), strip_uid(parts.roles));
        obj.insert("blobs".into(), strip_uid(parts.blobs));
        let mut value = Value::Object(obj);
        let load_hash = jsonx::sha256_hex(&jsonx::canonical(&value));
        if let Value::Object(m) = &mut value {
            m.insert("load_hash".into(), Value::String(load_hash.clone()));
        }
        let opt = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        let json = value.to_string().into_boxed_str();
        records.push(Record {
            portal_type: opt("portal_type").unwrap_or_default(),
            path: opt("path").unwrap_or_default(),
            parent_uid: opt("parent_uid"),
            parent_path: opt("parent_path"),
            uid,
            json,
            load_hash,
            refs,
            blobs,
        });
    }
    let records = order(records);
    let index = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.uid.clone(), i))
        .collect();
    let users = all_rows(snap, &USERS)?;
    let groups = all_rows(snap, &GROUPS)?;
    Ok(RecordSet {
        records,
        index,
        users,
        groups,
        source_site_path,
        dest_site_path: dest_site_path.to_string(),
    })
}

#[derive(Default)]
struct Parts {
    history: Vec<Map<String, Value>>,
    states: Vec<Map<String, Value>>,
    roles: Vec<Map<String, Value>>,
    blobs: Vec<Map<String, Value>>,
}

fn collect(
    snap: &Snapshot,
    def: &'static TableDef,
    into: &mut HashMap<String, Parts>,
    mut add: impl FnMut(&mut Parts, Map<String, Value>),
) -> Result<()> {
    for row in TableReader::open(&snap.dir, def)? {
        let m = row_to_json(def, row?);
        let uid = str_of(&m, "uid");
        add(into.entry(uid).or_default(), m);
    }
    Ok(())
}

fn all_rows(snap: &Snapshot, def: &'static TableDef) -> Result<Vec<Value>> {
    TableReader::open(&snap.dir, def)?
        .map(|r| r.map(|row| Value::Object(row_to_json(def, row))))
        .collect()
}

fn str_of(m: &Map<String, Value>, key: &str) -> String {
    m.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Replaces the site path prefix of a physical path.
pub fn rewrite_path(path: &str, from: &str, to: &str) -> String {
    if from == to {
        return path.to_string();
    }
    match path.strip_prefix(from) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{to}{rest}"),
        _ => path.to_string(),
    }
}

/// Whether a string looks like a SENAITE UID (32 lowercase hex digits).
pub fn is_uid(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The UIDs a record's fields reference: `{"uid": ...}` objects at any depth (senaite.jsonapi's
/// reference format), UID strings in top-level keys named `...UID`/`..._uid(s)`, and top-level
/// lists of UID strings (Dexterity multi-valued references). The record's own keys `uid` and
/// `parent_uid` are not references.
pub fn references(own_uid: &str, fields: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Value::Object(m) = fields else {
        return out;
    };
    for (key, v) in m {
        if key == "uid" || key == "parent_uid" {
            continue;
        }
        match v {
            Value::String(s)
                if is_uid(s)
                    && (key.ends_with("UID")
                        || key.ends_with("_uid")
                        || key.ends_with("_uids")) =>
            {
                out.push(s.clone());
            }
            Value::Array(items) if items.iter().all(|i| i.as_str().is_some_and(is_uid)) => {
                out.extend(items.iter().filter_map(Value::as_str).map(str::to_string));
            }
            other => nested_refs(other, &mut out),
        }
    }
    out.retain(|u| u != own_uid);
    out.sort();
    out.dedup();
    out
}

fn nested_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(u) = m.get("uid").and_then(Value::as_str).filter(|u| is_uid(u)) {
                out.push(u.to_string());
            }
            for (k, x) in m {
                if k != "uid" {
                    nested_refs(x, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| nested_refs(x, out)),
        _ => {}
    }
}

fn depth(path: &str) -> usize {
    path.matches('/').count()
}

/// Orders records: dependencies (parent, referenced objects that are not descendants) first.
/// Strongly connected groups (reference cycles) are found with Tarjan's algorithm and sent
/// shallowest first, which keeps parents before children inside a cycle too. Deterministic:
/// roots and edges are visited in (depth, path) order.
fn order(records: Vec<Record>) -> Vec<Record> {
    let n = records.len();
    let index: HashMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.uid.as_str(), i))
        .collect();
    let key = |i: usize| (depth(&records[i].path), records[i].path.as_str(), i);
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(n);
    for (i, r) in records.iter().enumerate() {
        let prefix = format!("{}/", r.path);
        let mut d: Vec<usize> = r
            .refs
            .iter()
            .filter_map(|u| index.get(u.as_str()).copied())
            .filter(|&j| j != i && !records[j].path.starts_with(&prefix))
            .collect();
        if let Some(p) = r.parent_uid.as_deref().and_then(|u| index.get(u)) {
            d.push(*p);
        }
        d.sort_by_key(|&j| key(j));
        d.dedup();
        deps.push(d);
    }
    let mut roots: Vec<usize> = (0..n).collect();
    roots.sort_by_key(|&i| key(i));
    let mut out_idx = Vec::with_capacity(n);
    for mut group in strongly_connected(&deps, &roots) {
        group.sort_by_key(|&i| key(i));
        out_idx.extend(group);
    }
    let mut slots: Vec<Option<Record>> = records.into_iter().map(Some).collect();
    out_idx
        .into_iter()
        .filter_map(|i| slots[i].take())
        .collect()
}

/// Tarjan's strongly connected components, iteratively (no recursion limit), visiting `roots`
/// in order. Components come out dependencies first.
fn strongly_connected(deps: &[Vec<usize>], roots: &[usize]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = deps.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut calls: Vec<(usize, usize)> = Vec::new();
    let mut groups = Vec::new();
    let mut next = 0usize;
    for &root in roots {
        if index[root] != UNSEEN {
            continue;
        }
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(&(v, edge)) = calls.last() {
            if let Some(&w) = deps[v].get(edge) {
                if let Some(top) = calls.last_mut() {
                    top.1 += 1;
                }
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(u, _)) = calls.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                let mut group = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    group.push(w);
                    if w == v {
                        break;
                    }
                }
                groups.push(group);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(uid: &str, path: &str, parent: Option<&str>, refs: &[&str]) -> Record {
        Record {
            uid: uid.into(),
            portal_type: "X".into(),
            path: path.into(),
            parent_uid: parent.map(str::to_string),
            parent_path: None,
            json: "null".into(),
            load_hash: String::new(),
            refs: refs.iter().map(|s| s.to_string()).collect(),
            blobs: Vec::new(),
        }
    }

    fn uids(v: &[Record]) -> Vec<&str> {
        v.iter().map(|r| r.uid.as_str()).collect()
    }

    #[test]
    fn parents_and_references_come_first_and_cycles_are_broken() {
        let recs = vec![
            // A sample referencing its own analysis (a descendant: ignored) and a sample type.
            rec("s", "/x/clients/c/S-1", Some("c"), &["a", "t"]),
            rec("a", "/x/clients/c/S-1/ph", Some("s"), &["svc"]),
            rec("c", "/x/clients/c", None, &[]),
            rec("t", "/x/setup/types/t", None, &["svc"]),
            rec("svc", "/x/setup/svcs/svc", None, &["t"]), // cycle t <-> svc
        ];
        let out = order(recs);
        let o = uids(&out);
        let pos = |u: &str| o.iter().position(|x| *x == u).unwrap();
        assert_eq!(o.len(), 5);
        assert!(pos("c") < pos("s") && pos("s") < pos("a"));
        assert!(pos("t") < pos("s") && pos("svc") < pos("a"));
    }

    #[test]
    fn references_are_found_in_every_shape() {
        let a = "a".repeat(32);
        let b = "b".repeat(32);
        let c = "c".repeat(32);
        let d = "d".repeat(32);
        let fields = json!({
            "uid": a, "parent_uid": b,
            "Contact": {"uid": c, "url": "/x"},
            "sample_types": [d, c],
            "SampleTypeUID": d,
            "Remarks": [{"id": "e".repeat(32), "content": "x"}],
            "title": "f".repeat(32),
        });
        assert_eq!(references(&a, &fields), vec![c, d]);
    }

    #[test]
    fn site_paths_are_rewritten_only_at_the_front() {
        assert_eq!(
            rewrite_path("/senaite/clients", "/senaite", "/lab"),
            "/lab/clients"
        );
        assert_eq!(rewrite_path("/senaite", "/senaite", "/lab"), "/lab");
        assert_eq!(
            rewrite_path("/senaite2/x", "/senaite", "/lab"),
            "/senaite2/x"
        );
    }
}
