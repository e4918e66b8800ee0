//! The other documents `review` lays over a snapshot: the output of `plan --json` (records a load
//! would block, references that resolve nowhere), the output of `diff --json` (what changed
//! since an older snapshot) and what a `transform` recorded in the snapshot's manifest (its
//! input snapshot, pipeline hash, and what it dropped). The JSON files are read element by
//! element: long lists are counted in full but only their first entries kept. Offline; never
//! touches the network.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::review::index::UidIndex;
use crate::review::scan::Capped;
use crate::snapshot::layout;

/// Entries of a JSON list that are counted under a key (e.g. a reason class).
trait Tally {
    fn tally(&self) -> String;
}

/// A JSON list read element by element: every element counted (and tallied), the first
/// [`LISTED`](crate::review::LISTED) kept.
struct CappedSeq<T> {
    capped: Capped<T>,
    tallies: BTreeMap<String, u64>,
}

impl<T> Default for CappedSeq<T> {
    fn default() -> Self {
        CappedSeq {
            capped: Capped::default(),
            tallies: BTreeMap::new(),
        }
    }
}

impl<'de, T: Deserialize<'de> + Tally> Deserialize<'de> for CappedSeq<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Seq<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Tally> Visitor<'de> for Seq<T> {
            type Value = CappedSeq<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = CappedSeq::default();
                while let Some(item) = seq.next_element::<T>()? {
                    *out.tallies.entry(item.tally()).or_insert(0) += 1;
                    out.capped.push(item);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Seq(PhantomData))
    }
}

/// Per-type counts of a plan.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlanCounts {
    /// To create.
    #[serde(default)]
    pub create: u64,
    /// To update.
    #[serde(default)]
    pub update: u64,
    /// Unchanged.
    #[serde(default)]
    pub unchanged: u64,
    /// Blocked.
    #[serde(default)]
    pub blocked: u64,
}

/// A record the plan blocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanBlocked {
    /// UID.
    pub uid: String,
    /// Type.
    pub portal_type: String,
    /// Path.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl Tally for PlanBlocked {
    fn tally(&self) -> String {
        let r = self.reason.as_str();
        if r.starts_with("receiver missing") {
            "receiver missing or too old".into()
        } else if r.starts_with("type ") && r.ends_with("missing in the destination") {
            "type missing in the destination".into()
        } else if r.starts_with("parent ") {
            "parent missing in the snapshot and the destination".into()
        } else if r.contains(" is taken by ") {
            "path taken by an object of another type".into()
        } else {
            r.chars().take(80).collect()
        }
    }
}

/// A reference the plan could resolve nowhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanUnresolved {
    /// Referencing object.
    pub uid: String,
    /// Its path.
    pub path: String,
    /// The missing target.
    pub target: String,
}

impl Tally for PlanUnresolved {
    fn tally(&self) -> String {
        "unresolved".into()
    }
}

/// A `moved` line of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanMoved(pub String);

impl Tally for PlanMoved {
    fn tally(&self) -> String {
        "moved".into()
    }
}

#[derive(Deserialize)]
struct PlanFile {
    /// Absent in plans written before the field existed.
    #[serde(default)]
    snapshot_id: Option<String>,
    destination: String,
    #[serde(default)]
    receiver: Option<String>,
    #[serde(default)]
    receiver_problem: Option<String>,
    by_type: BTreeMap<String, PlanCounts>,
    totals: PlanCounts,
    #[serde(default)]
    blocked: CappedSeq<PlanBlocked>,
    #[serde(default)]
    unresolved: CappedSeq<PlanUnresolved>,
    #[serde(default)]
    moved: CappedSeq<PlanMoved>,
}

/// What `plan --json` says about a load of the snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    /// The plan file.
    pub file: String,
    /// The id of the snapshot the plan was made for (absent in older plans).
    pub snapshot_id: Option<String>,
    /// Whether that id is not the reviewed snapshot's: the plan belongs to another snapshot.
    pub other_snapshot: bool,
    /// Destination URL.
    pub destination: String,
    /// Receiver name and version.
    pub receiver: Option<String>,
    /// Why everything is blocked, if so.
    pub receiver_problem: Option<String>,
    /// Counts per type.
    pub by_type: BTreeMap<String, PlanCounts>,
    /// Totals.
    pub totals: PlanCounts,
    /// Blocked records (every one counted, the first listed).
    pub blocked: Capped<PlanBlocked>,
    /// Blocked records per reason class.
    pub blocked_by_reason: BTreeMap<String, u64>,
    /// References the plan resolves nowhere.
    pub unresolved: Capped<PlanUnresolved>,
    /// Objects at another path in the destination.
    pub moved: Capped<PlanMoved>,
    /// Listed blocked or unresolved entries whose uid this snapshot does not have: more than
    /// zero means the plan was made for another snapshot.
    pub foreign_uids: u64,
}

fn open_json(file: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    let f = std::fs::File::open(file).map_err(|e| Error::read(file, e))?;
    Ok(std::io::BufReader::new(f))
}

/// Reads the output of `plan --json`.
pub(crate) fn read_plan(file: &Path, index: &UidIndex, snapshot_id: &str) -> Result<PlanSummary> {
    let p: PlanFile =
        serde_json::from_reader(open_json(file)?).map_err(|source| Error::JsonFile {
            path: file.to_path_buf(),
            source,
        })?;
    let foreign = p
        .blocked
        .capped
        .items
        .iter()
        .map(|b| &b.uid)
        .chain(p.unresolved.capped.items.iter().map(|u| &u.uid))
        .filter(|u| !index.contains(u))
        .count() as u64;
    Ok(PlanSummary {
        file: file.display().to_string(),
        other_snapshot: p.snapshot_id.as_deref().is_some_and(|id| id != snapshot_id),
        snapshot_id: p.snapshot_id,
        destination: p.destination,
        receiver: p.receiver,
        receiver_problem: p.receiver_problem,
        by_type: p.by_type,
        totals: p.totals,
        blocked: p.blocked.capped,
        blocked_by_reason: p.blocked.tallies,
        unresolved: p.unresolved.capped,
        moved: p.moved.capped,
        foreign_uids: foreign,
    })
}

/// Per-type counts of a diff.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiffCounts {
    /// Created.
    #[serde(default)]
    pub created: u64,
    /// Modified.
    #[serde(default)]
    pub modified: u64,
    /// Moved.
    #[serde(default)]
    pub moved: u64,
    /// Deleted.
    #[serde(default)]
    pub deleted: u64,
    /// Unchanged.
    #[serde(default)]
    pub unchanged: u64,
}

/// One side of a diff.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffSide {
    /// Directory.
    pub dir: String,
    /// Snapshot id.
    pub snapshot_id: String,
    /// Objects.
    #[serde(default)]
    pub objects: u64,
}

#[derive(Deserialize)]
struct ChangeKey {
    kind: String,
    key: String,
}

/// An object of the diff.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffObject {
    /// UID.
    pub uid: String,
    /// Type.
    pub portal_type: String,
    /// Path.
    pub path: String,
    /// `created`, `modified`, `moved` or `deleted`.
    pub status: String,
    /// For deletions: `vanished` or `deactivated`.
    #[serde(default)]
    pub reason: Option<String>,
    /// For moves: the older path.
    #[serde(default)]
    pub old_path: Option<String>,
    /// What changed (`kind key`), the first few.
    #[serde(default, deserialize_with = "change_keys")]
    pub changes: Vec<String>,
}

/// Changes listed per diff object.
const CHANGES_SHOWN: usize = 8;

fn change_keys<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    let all: Vec<ChangeKey> = Vec::deserialize(d)?;
    let n = all.len();
    let mut out: Vec<String> = all
        .into_iter()
        .take(CHANGES_SHOWN)
        .map(|c| format!("{} {}", c.kind, c.key))
        .collect();
    if n > CHANGES_SHOWN {
        out.push(format!("… {} more", n - CHANGES_SHOWN));
    }
    Ok(out)
}

impl Tally for DiffObject {
    fn tally(&self) -> String {
        match &self.reason {
            Some(r) => format!("{} ({r})", self.status),
            None => self.status.clone(),
        }
    }
}

/// A changed user, group or setting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteChange {
    /// `users`, `groups` or `settings`.
    pub kind: String,
    /// Its key.
    pub key: String,
}

impl Tally for SiteChange {
    fn tally(&self) -> String {
        self.kind.clone()
    }
}

#[derive(Deserialize)]
struct DiffFile {
    old: DiffSide,
    new: DiffSide,
    totals: DiffCounts,
    by_type: BTreeMap<String, DiffCounts>,
    #[serde(default)]
    objects: CappedSeq<DiffObject>,
    #[serde(default)]
    site: CappedSeq<SiteChange>,
}

/// What `diff --json` says.
#[derive(Debug, Clone, Serialize)]
pub struct DiffSummary {
    /// The diff file.
    pub file: String,
    /// Older snapshot.
    pub old: DiffSide,
    /// Newer snapshot.
    pub new: DiffSide,
    /// Which side the reviewed snapshot is: `new`, `old`, or `unrelated` (neither id matches).
    pub relation: String,
    /// Totals.
    pub totals: DiffCounts,
    /// Per type.
    pub by_type: BTreeMap<String, DiffCounts>,
    /// Objects per status (`deleted (vanished)`, `deleted (deactivated)`, ...).
    pub by_status: BTreeMap<String, u64>,
    /// Changed objects (every one counted, the first listed).
    pub objects: Capped<DiffObject>,
    /// Changed users, groups and settings.
    pub site: Capped<SiteChange>,
}

/// Reads the output of `diff --json`.
pub(crate) fn read_diff(file: &Path, snapshot_id: &str) -> Result<DiffSummary> {
    let d: DiffFile =
        serde_json::from_reader(open_json(file)?).map_err(|source| Error::JsonFile {
            path: file.to_path_buf(),
            source,
        })?;
    let relation = if d.new.snapshot_id == snapshot_id {
        "new"
    } else if d.old.snapshot_id == snapshot_id {
        "old"
    } else {
        "unrelated"
    };
    Ok(DiffSummary {
        file: file.display().to_string(),
        relation: relation.to_string(),
        old: d.old,
        new: d.new,
        totals: d.totals,
        by_type: d.by_type,
        by_status: d.objects.tallies,
        objects: d.objects.capped,
        site: d.site.capped,
    })
}

/// Manifest keys of the snapshot format itself; any other top-level key was added by a later
/// stage (a `transform`'s provenance) and is shown as it is.
const MANIFEST_KEYS: &[&str] = &[
    "format",
    "format_version",
    "snapshot_id",
    "tool",
    "source",
    "started_at",
    "finished_at",
    "request",
    "files",
    "counts",
    "blobs",
    "notes",
    "base",
];

/// What a `transform` recorded in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct TransformInfo {
    /// The manifest key(s) it was read from.
    pub keys: Vec<String>,
    /// The input snapshot's id.
    pub input_snapshot_id: Option<String>,
    /// The pipeline file.
    pub pipeline: Option<String>,
    /// The pipeline's content hash.
    pub pipeline_hash: Option<String>,
    /// Objects the transform dropped, when recorded.
    pub dropped_objects: Option<u64>,
    /// References the transform left dangling, when recorded.
    pub dangling_references: Option<u64>,
    /// Every recorded value, flattened (`a.b: value`), in manifest order.
    pub entries: Vec<(String, String)>,
}

/// Entries of a transform record shown.
const ENTRIES_SHOWN: usize = 200;

/// Reads the transform's provenance from the manifest, if the snapshot was made by one: the
/// notes of kind `transform` that `transform` writes (subjects `input_snapshot_id`,
/// `pipeline`, `pipeline_sha256`, `dropped_objects`, `dangling_references`, and raw streams it
/// left out), and any top-level manifest key beyond the format's own.
pub(crate) fn transform_info(snap: &Path) -> Result<Option<TransformInfo>> {
    let path = layout::manifest_path(snap);
    let bytes = std::fs::read(&path).map_err(|e| Error::read(&path, e))?;
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|source| Error::JsonFile { path, source })?;
    let Some(m) = v.as_object() else {
        return Ok(None);
    };
    let notes: Vec<(&str, &str)> = m
        .get("notes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|n| n.get("kind").and_then(Value::as_str) == Some(TRANSFORM_NOTE))
        .map(|n| {
            let text = |k: &str| n.get(k).and_then(Value::as_str).unwrap_or("");
            (text("subject"), text("message"))
        })
        .collect();
    let extra: Vec<(&String, &Value)> = m
        .iter()
        .filter(|(k, _)| !MANIFEST_KEYS.contains(&k.as_str()))
        .collect();
    if notes.is_empty() && extra.is_empty() {
        return Ok(None);
    }
    let mut info = TransformInfo {
        keys: extra.iter().map(|(k, _)| (*k).clone()).collect(),
        input_snapshot_id: None,
        pipeline: None,
        pipeline_hash: None,
        dropped_objects: None,
        dangling_references: None,
        entries: Vec::new(),
    };
    if !notes.is_empty() {
        info.keys
            .insert(0, format!("notes (kind {TRANSFORM_NOTE})"));
    }
    for (subject, message) in notes {
        let leading = || {
            message
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        };
        match subject {
            "input_snapshot_id" => info.input_snapshot_id = Some(message.to_string()),
            "pipeline" => info.pipeline = Some(message.to_string()),
            "pipeline_sha256" => info.pipeline_hash = Some(message.to_string()),
            "dropped_objects" => info.dropped_objects = leading(),
            "dangling_references" => info.dangling_references = leading(),
            _ => {}
        }
        if info.entries.len() < ENTRIES_SHOWN {
            info.entries
                .push((subject.to_string(), message.to_string()));
        }
    }
    for (k, v) in extra {
        flatten(k, v, &mut info);
    }
    Ok(Some(info))
}

/// The kind of the manifest notes `transform` writes.
pub(crate) const TRANSFORM_NOTE: &str = "transform";

/// Walks a recorded value, picking the well-known items by name and listing every leaf.
fn flatten(key: &str, v: &Value, info: &mut TransformInfo) {
    let k = key.to_ascii_lowercase();
    let leaf = k.rsplit('.').next().unwrap_or(&k).to_string();
    let count = match v {
        Value::Number(n) => n.as_u64(),
        Value::Array(a) => Some(a.len() as u64),
        _ => None,
    };
    if k.contains("dropped") && info.dropped_objects.is_none() {
        info.dropped_objects = count;
    }
    if k.contains("dangling") && info.dangling_references.is_none() {
        info.dangling_references = count;
    }
    if let Value::String(s) = v {
        let slot = if k.contains("input") && (leaf.contains("id") || leaf.contains("input")) {
            Some(&mut info.input_snapshot_id)
        } else if k.contains("pipeline") && (leaf.contains("hash") || leaf.contains("sha")) {
            Some(&mut info.pipeline_hash)
        } else if k.contains("pipeline") && ["pipeline", "path", "file"].contains(&leaf.as_str()) {
            Some(&mut info.pipeline)
        } else {
            None
        };
        if let Some(slot) = slot.filter(|s| s.is_none()) {
            *slot = Some(s.clone());
        }
    }
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                flatten(&format!("{key}.{k}"), x, info);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{key}[{i}]"), x, info);
            }
        }
        other => {
            if info.entries.len() < ENTRIES_SHOWN {
                let text = match other {
                    Value::String(s) => s.clone(),
                    x => x.to_string(),
                };
                info.entries.push((key.to_string(), text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::LISTED;

    #[test]
    fn capped_lists_count_everything_and_keep_the_first() {
        let items: Vec<Value> = (0..LISTED + 50)
            .map(|i| {
                serde_json::json!({"uid": format!("{i}"), "portal_type": "Client",
                    "path": "/p", "reason": if i % 2 == 0 { "type Client missing in the destination" } else { "parent /x missing in the snapshot and the destination" }})
            })
            .collect();
        let s: CappedSeq<PlanBlocked> = serde_json::from_value(Value::Array(items)).unwrap();
        assert_eq!(s.capped.total, (LISTED + 50) as u64);
        assert_eq!(s.capped.items.len(), LISTED);
        assert_eq!(s.tallies["type missing in the destination"], 125);
        assert_eq!(
            s.tallies["parent missing in the snapshot and the destination"],
            125
        );
    }

    #[test]
    fn transform_provenance_is_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let m = serde_json::json!({
            "format": "senaite-sync-snapshot", "format_version": 1, "snapshot_id": "x",
            "transform": {"input_snapshot_id": "abc", "pipeline": {"path": "pipelines/x.toml",
              "sha256": "f00"}, "dropped": {"objects": 7}, "dangling_references": [1, 2]}
        });
        std::fs::write(dir.path().join("manifest.json"), m.to_string()).unwrap();
        let t = transform_info(dir.path()).unwrap().unwrap();
        assert_eq!(t.keys, ["transform"]);
        assert_eq!(t.input_snapshot_id.as_deref(), Some("abc"));
        assert_eq!(t.pipeline.as_deref(), Some("pipelines/x.toml"));
        assert_eq!(t.pipeline_hash.as_deref(), Some("f00"));
        assert_eq!(t.dropped_objects, Some(7));
        assert_eq!(t.dangling_references, Some(2));
        assert!(
            t.entries
                .iter()
                .any(|(k, v)| k == "transform.pipeline.sha256" && v == "f00")
        );
    }

    #[test]
    fn transform_notes_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let note =
            |s: &str, m: &str| serde_json::json!({"kind": "transform", "subject": s, "message": m});
        let m = serde_json::json!({
            "format": "senaite-sync-snapshot", "format_version": 1, "snapshot_id": "x",
            "notes": [
                {"kind": "fallback", "subject": "Setup", "message": "read one by one"},
                note("input_snapshot_id", "abc"), note("pipeline", "pipelines/x.toml"),
                note("pipeline_sha256", "f00"),
                note("dropped_objects", "3 objects dropped (Batch:1 Contact:2)"),
                note("dangling_references", "5 references to dropped objects (first: …)"),
            ]
        });
        std::fs::write(dir.path().join("manifest.json"), m.to_string()).unwrap();
        let t = transform_info(dir.path()).unwrap().unwrap();
        assert_eq!(t.input_snapshot_id.as_deref(), Some("abc"));
        assert_eq!(t.pipeline.as_deref(), Some("pipelines/x.toml"));
        assert_eq!(t.pipeline_hash.as_deref(), Some("f00"));
        assert_eq!(
            (t.dropped_objects, t.dangling_references),
            (Some(3), Some(5))
        );
        assert_eq!(t.entries.len(), 5);
    }

    #[test]
    fn a_plain_manifest_has_no_transform() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo");
        assert!(transform_info(&demo).unwrap().is_none());
    }
}
