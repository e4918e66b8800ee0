//! The `inspect` stage: what a snapshot holds and whether it is intact. Per portal type: counts,
//! review states, created/modified ranges; blob totals; and an integrity check (every file's
//! checksum, every blob's bytes, references that point outside the snapshot, objects whose parent
//! is missing). Offline: never touches the network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::snapshot::blobs;
use crate::snapshot::manifest::Note;
use crate::snapshot::table::{
    BLOBS, GROUPS, LOCAL_ROLES, OBJECTS, TableDef, TableReader, USERS, WORKFLOW_HISTORY,
};
use crate::snapshot::{Snapshot, layout};

/// Checked options of `inspect`.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// The snapshot directory.
    pub dir: PathBuf,
    /// Re-hash every blob (slower on large snapshots).
    pub verify_blobs: bool,
}

/// Per portal type statistics.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct TypeStats {
    /// Objects.
    pub count: u64,
    /// Objects per review state (`-` for none).
    pub states: BTreeMap<String, u64>,
    /// Earliest and latest `created`.
    pub created: Option<(String, String)>,
    /// Earliest and latest `modified`.
    pub modified: Option<(String, String)>,
}

/// A reference from a field to an object the snapshot does not hold.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dangling {
    /// Referencing object.
    pub uid: String,
    /// Field.
    pub field: String,
    /// Referenced UID.
    pub target: String,
}

/// An object whose parent is not in the snapshot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Orphan {
    /// The object.
    pub uid: String,
    /// Its path.
    pub path: String,
    /// The missing parent's path.
    pub parent_path: String,
}

/// The result of `inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// Snapshot directory.
    pub dir: PathBuf,
    /// Content id.
    pub snapshot_id: String,
    /// Source site.
    pub source: String,
    /// When the extract finished.
    pub finished_at: String,
    /// Objects in total.
    pub objects: u64,
    /// Per type.
    pub types: BTreeMap<String, TypeStats>,
    /// Review-history entries.
    pub history_entries: u64,
    /// Users.
    pub users: u64,
    /// Groups.
    pub groups: u64,
    /// Local-role assignments.
    pub local_roles: u64,
    /// Distinct blobs.
    pub blob_count: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Largest blob (bytes).
    pub blob_largest: u64,
    /// File problems (missing, checksum) and blob problems: these make the snapshot unusable.
    pub corrupt: Vec<String>,
    /// References to objects not in the snapshot.
    pub dangling_references: Vec<Dangling>,
    /// Objects whose parent is not in the snapshot.
    pub orphans: Vec<Orphan>,
    /// The manifest's notes.
    pub notes: Vec<Note>,
}

impl InspectReport {
    /// Whether the snapshot is intact (no corrupt or missing files or blobs).
    pub fn is_intact(&self) -> bool {
        self.corrupt.is_empty()
    }
}

/// Inspects a snapshot.
///
/// # Errors
/// When the manifest is missing or invalid, or a table cannot be decoded at all.
pub fn run(opts: &InspectOptions) -> Result<InspectReport> {
    let snap = Snapshot::open_unverified(&opts.dir)?;
    let mut corrupt: Vec<String> = snap
        .verify_files()?
        .into_iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    let tables_ok = corrupt.is_empty();
    let mut report = InspectReport {
        dir: opts.dir.clone(),
        snapshot_id: snap.manifest.snapshot_id.clone(),
        source: snap.manifest.source.site_url.clone(),
        finished_at: snap.manifest.finished_at.clone(),
        objects: 0,
        types: BTreeMap::new(),
        history_entries: 0,
        users: 0,
        groups: 0,
        local_roles: 0,
        blob_count: 0,
        blob_bytes: 0,
        blob_largest: 0,
        corrupt: Vec::new(),
        dangling_references: Vec::new(),
        orphans: Vec::new(),
        notes: snap.manifest.notes.clone(),
    };
    if tables_ok {
        scan_objects(&snap, &mut report)?;
        // The files were just verified against the manifest, so its row counts are the tables'.
        let count = |def: &TableDef| {
            snap.manifest
                .file(&layout::table_rel(def.name))
                .map_or(0, |f| f.rows)
        };
        report.history_entries = count(&WORKFLOW_HISTORY);
        report.users = count(&USERS);
        report.groups = count(&GROUPS);
        report.local_roles = count(&LOCAL_ROLES);
        scan_blobs(&snap, opts.verify_blobs, &mut report, &mut corrupt)?;
        if let Some(uid) = crate::snapshot::digest::check(&snap.dir)? {
            corrupt.push(format!(
                "{}: does not match the other tables (first at uid {uid}); `diff` would trust it",
                layout::table_rel(crate::snapshot::digest::OBJECT_DIGESTS.name)
            ));
        }
    }
    report.corrupt = corrupt;
    Ok(report)
}

fn scan_objects(snap: &Snapshot, report: &mut InspectReport) -> Result<()> {
    let site_path = crate::snapshot::manifest_site_path(&snap.manifest);
    let mut uids: BTreeSet<String> = BTreeSet::new();
    let mut paths: BTreeSet<String> = BTreeSet::new();
    let (c_uid, c_pt, c_path, c_parent, c_created, c_modified, c_state) = (
        col("uid"),
        col("portal_type"),
        col("path"),
        col("parent_path"),
        col("created"),
        col("modified"),
        col("review_state"),
    );
    let mut parents: Vec<(String, String, String)> = Vec::new();
    for row in TableReader::open(&snap.dir, &OBJECTS)? {
        let row = row?;
        let s = |i: usize| row[i].as_str().unwrap_or("").to_string();
        uids.insert(s(c_uid));
        paths.insert(s(c_path));
        parents.push((s(c_uid), s(c_path), s(c_parent)));
        let st = report.types.entry(s(c_pt)).or_default();
        st.count += 1;
        let state = row[c_state].as_str().unwrap_or("-").to_string();
        *st.states.entry(state).or_insert(0) += 1;
        widen(&mut st.created, row[c_created].as_str());
        widen(&mut st.modified, row[c_modified].as_str());
        report.objects += 1;
    }
    for (uid, path, parent) in parents {
        if !parent.is_empty() && parent != site_path && !paths.contains(&parent) {
            report.orphans.push(Orphan {
                uid,
                path,
                parent_path: parent,
            });
        }
    }
    let c_fields = col("fields");
    for row in TableReader::open(&snap.dir, &OBJECTS)? {
        let row = row?;
        let uid = row[c_uid].as_str().unwrap_or("");
        let fields: Value =
            serde_json::from_str(row[c_fields].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
        if let Value::Object(m) = fields {
            for (field, v) in m {
                let mut targets = Vec::new();
                reference_targets(&v, &mut targets);
                for t in targets {
                    if !uids.contains(&t) {
                        report.dangling_references.push(Dangling {
                            uid: uid.to_string(),
                            field: field.clone(),
                            target: t,
                        });
                    }
                }
            }
        }
    }
    report.dangling_references.sort();
    report.orphans.sort();
    Ok(())
}

fn col(name: &str) -> usize {
    OBJECTS.col(name).unwrap_or(0)
}

fn widen(range: &mut Option<(String, String)>, v: Option<&str>) {
    let Some(v) = v else { return };
    match range {
        None => *range = Some((v.to_string(), v.to_string())),
        Some((lo, hi)) => {
            if v < lo.as_str() {
                *lo = v.to_string();
            }
            if v > hi.as_str() {
                *hi = v.to_string();
            }
        }
    }
}

/// UIDs referenced by a field value: url-info dicts `{"uid": <32 hex>, ...}`, at any depth.
fn reference_targets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(u)) = m.get("uid")
                && u.len() == 32
                && u.bytes().all(|b| b.is_ascii_hexdigit())
            {
                out.push(u.clone());
            }
            m.values().for_each(|x| reference_targets(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| reference_targets(x, out)),
        _ => {}
    }
}

fn scan_blobs(
    snap: &Snapshot,
    verify: bool,
    report: &mut InspectReport,
    corrupt: &mut Vec<String>,
) -> Result<()> {
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for row in TableReader::open(&snap.dir, &BLOBS)? {
        let row = row?;
        let sha = row[5].as_str().unwrap_or("").to_string();
        let size = row[4].as_int().unwrap_or(0) as u64;
        seen.insert(sha, size);
    }
    for (sha, size) in &seen {
        report.blob_count += 1;
        report.blob_bytes += size;
        report.blob_largest = report.blob_largest.max(*size);
        let path = blobs::blob_path(&snap.dir, sha);
        let rel = layout::blob_rel(sha);
        if !path.is_file() {
            corrupt.push(format!(
                "{rel}: blob listed in tables/blobs.parquet is missing"
            ));
        } else if verify {
            let (got, got_size) = blobs::hash_file(&path)?;
            if &got != sha || got_size != *size {
                corrupt.push(format!("{rel}: blob content does not match its sha256"));
            }
        }
    }
    Ok(())
}

/// Renders the report as a human-readable text block.
pub fn render_text(r: &InspectReport) -> String {
    let mut s = String::new();
    s.push_str(&format!("snapshot  {}\n", r.dir.display()));
    s.push_str(&format!("id        {}\n", r.snapshot_id));
    s.push_str(&format!(
        "source    {} (finished {})\n\n",
        r.source, r.finished_at
    ));
    let w = r.types.keys().map(String::len).max().unwrap_or(10).max(11);
    s.push_str(&format!(
        "{:<w$}  {:>7}  {:<25}  {}\n",
        "portal_type", "objects", "created", "review states"
    ));
    for (t, st) in &r.types {
        let created = st
            .created
            .as_ref()
            .map(|(a, b)| format!("{}..{}", a.get(..10).unwrap_or(a), b.get(..10).unwrap_or(b)))
            .unwrap_or_default();
        let states: Vec<String> = st.states.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        s.push_str(&format!(
            "{t:<w$}  {:>7}  {created:<25}  {}\n",
            st.count,
            states.join(" ")
        ));
    }
    s.push_str(&format!(
        "\n{} objects, {} history entries, {} users, {} groups, {} local-role assignments\n",
        r.objects, r.history_entries, r.users, r.groups, r.local_roles
    ));
    s.push_str(&format!(
        "{} blobs, {} bytes (largest {} bytes)\n",
        r.blob_count, r.blob_bytes, r.blob_largest
    ));
    s.push_str(&format!(
        "\nintegrity: {}\n",
        if r.is_intact() {
            "ok (every file and blob matches its checksum)"
        } else {
            "CORRUPT"
        }
    ));
    for c in &r.corrupt {
        s.push_str(&format!("  corrupt: {c}\n"));
    }
    s.push_str(&format!(
        "  references outside the snapshot: {}\n",
        r.dangling_references.len()
    ));
    for d in r.dangling_references.iter().take(10) {
        s.push_str(&format!("    {} {} -> {}\n", d.uid, d.field, d.target));
    }
    s.push_str(&format!(
        "  objects whose parent is missing: {}\n",
        r.orphans.len()
    ));
    for o in r.orphans.iter().take(10) {
        s.push_str(&format!(
            "    {} {} (parent {})\n",
            o.uid, o.path, o.parent_path
        ));
    }
    if !r.notes.is_empty() {
        s.push_str(&format!("\nnotes ({}):\n", r.notes.len()));
        for n in r.notes.iter().take(20) {
            s.push_str(&format!("  {} {}: {}\n", n.kind, n.subject, n.message));
        }
    }
    s
}
