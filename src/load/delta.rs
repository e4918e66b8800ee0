//! Loading a delta snapshot (`diff OLD NEW --out DELTA`) into a destination that holds OLD:
//! creates, updates, moves (the receiver moves the object in place, keeping its UID, history
//! and dates), deletions by policy (`deactivate` with a real workflow transition, `delete`, or
//! `keep`), and three-way conflicts: an object the destination changed since our last load of
//! it (the receiver's `changed_since_apply`, or an `applied_hash` other than the one our ledger
//! recorded) that the delta also changes or deletes. A conflict is resolved by policy: `skip`
//! (reported, nothing written), `source-wins` (the delta's version is applied; the receiver's
//! stored hash then agrees with it again), `destination-wins` (the receiver records that the
//! destination's version stands for that record, so it is not reported again). Every conflict
//! is reported with both versions. Modification dates are never rewritten to settle a conflict.
//!
//! Everything is decided from `sync/lookup` answers, so a re-run (after a kill, or of a finished
//! load) sends only what is still to do and changes nothing else. A delta whose base was never
//! loaded here (changes to objects the destination lacks and our ledger never loaded) is
//! refused before anything is written, naming the uids; `plan` lists them as blocked.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use crate::diff::delta::{CHANGES, TOMBSTONES};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::snapshot::table::{TableReader, row_to_json};
use crate::snapshot::writer::{now_rfc3339, write_atomic};
use crate::snapshot::{Snapshot, manifest_site_path};

use super::ledger::{Binding, Entry, Ledger};
use super::receiver::{ApplyItem, Receiver, RemoveItem, UidState};
use super::records::{self, Record, RecordSet, rewrite_path};
use super::{LoadOptions, LoadReport, Sending};

/// What happens to objects a delta deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Deletions {
    /// Deactivate them (a real workflow transition with a history entry); objects that
    /// cannot be deactivated (samples, analyses) are reported.
    #[default]
    Deactivate,
    /// Delete them.
    Delete,
    /// Leave them; only report.
    Keep,
}

impl Deletions {
    fn policy(self) -> Option<&'static str> {
        match self {
            Deletions::Deactivate => Some("deactivate"),
            Deletions::Delete => Some("delete"),
            Deletions::Keep => None,
        }
    }
}

/// What happens to conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Conflicts {
    /// Report them and write nothing for them.
    #[default]
    Skip,
    /// Apply the delta's version.
    SourceWins,
    /// Keep the destination's version and record that it stands for the delta's.
    DestinationWins,
}

/// A delta's deletion: one row of its `tombstones` table.
#[derive(Debug, Clone, Serialize)]
pub struct Tombstone {
    /// UID.
    pub uid: String,
    /// Type in the base.
    pub portal_type: String,
    /// Path in the base, rewritten to the destination's site.
    pub path: String,
    /// Content hash of the deleted version.
    pub content_hash: String,
}

impl Tombstone {
    /// The hash a destination-wins decision on this deletion is recorded under.
    fn marker(&self) -> String {
        format!("tombstone:{}", self.content_hash)
    }
}

/// What the delta does to one object, given the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Not in the destination: create.
    Create,
    /// Update in place.
    Update,
    /// Move (and update) from this path.
    Move(String),
    /// Already as in the delta (or accepted before).
    Unchanged,
    /// Changed on both sides.
    Conflict(String),
    /// Cannot be loaded.
    Blocked(String),
}

/// What the delta does to one deleted object, given the destination and the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Not in the destination.
    Gone,
    /// Deactivate or delete by policy.
    Remove,
    /// Kept by policy `keep`, or by an earlier destination-wins decision.
    Keep(String),
    /// Edited in the destination since our last load.
    Conflict(String),
}

/// The classification of a delta against a destination.
#[derive(Debug, Default)]
pub struct Classified {
    /// Per record uid.
    pub actions: HashMap<String, Action>,
    /// Per tombstone uid.
    pub removals: HashMap<String, Removal>,
    /// The destination's state of every uid asked.
    pub states: HashMap<String, UidState>,
}

/// Reads a delta's tombstones (paths rewritten to `dest_site_path`).
///
/// # Errors
/// When the table cannot be read.
pub fn tombstones(snap: &Snapshot, dest_site_path: &str) -> Result<Vec<Tombstone>> {
    let site = manifest_site_path(&snap.manifest);
    let mut out = Vec::new();
    for row in TableReader::open(&snap.dir, &TOMBSTONES)? {
        let m = row_to_json(&TOMBSTONES, row?);
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        out.push(Tombstone {
            uid: s("uid"),
            portal_type: s("portal_type"),
            path: rewrite_path(&s("path"), &site, dest_site_path),
            content_hash: s("content_hash"),
        });
    }
    Ok(out)
}

/// The uids a delta carries as changed (not created) relative to its base; empty for a delta
/// written before the `changes` table existed.
///
/// # Errors
/// When the table exists but cannot be read.
pub fn changed_uids(snap: &Snapshot) -> Result<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    if snap.manifest.file("tables/changes.parquet").is_none() {
        return Ok(out);
    }
    for row in TableReader::open(&snap.dir, &CHANGES)? {
        let m = row_to_json(&CHANGES, row?);
        if m.get("change").and_then(Value::as_str) == Some("changed")
            && let Some(u) = m.get("uid").and_then(Value::as_str)
        {
            out.insert(u.to_string());
        }
    }
    Ok(out)
}

/// Whether the destination changed `s` since our last load of it: the receiver saw an edit,
/// or the hash it stored is not the one our ledger recorded.
fn edited(s: &UidState, ledger: Option<&Ledger>) -> Option<String> {
    if s.changed_since_apply {
        return Some(format!(
            "edited in the destination since our last load (modified {})",
            s.modified.as_deref().unwrap_or("?")
        ));
    }
    let ours = ledger
        .and_then(|l| l.get(&s.uid))
        .filter(|e| e.is_done() || e.status == "accepted")
        .map(|e| e.load_hash.as_str());
    match (ours, s.applied_hash.as_deref()) {
        (Some(ours), Some(theirs)) if ours != theirs && !s.accepted => Some(format!(
            "the destination holds another version than our ledger's last load \
             (applied {theirs}, ledger {ours})"
        )),
        _ => None,
    }
}

/// Classifies every record and tombstone of a delta against the destination.
///
/// # Errors
/// Transport or protocol errors of `sync/lookup`.
pub fn classify(
    receiver: &Receiver,
    chunk: usize,
    set: &RecordSet,
    tombs: &[Tombstone],
    changed: &std::collections::HashSet<String>,
    ledger: Option<&Ledger>,
    deletions: Deletions,
) -> Result<Classified> {
    let mut uids: Vec<String> = set.records.iter().map(|r| r.uid.clone()).collect();
    uids.extend(tombs.iter().map(|t| t.uid.clone()));
    let mut states = HashMap::new();
    for part in uids.chunks(chunk.max(1)) {
        for s in receiver.lookup(part, &[])?.uids {
            states.insert(s.uid.clone(), s);
        }
    }
    let mut out = Classified::default();
    for r in &set.records {
        let action = match states.get(&r.uid).filter(|s| s.exists) {
            None if changed.contains(&r.uid) => {
                if ledger
                    .and_then(|l| l.get(&r.uid))
                    .is_some_and(Entry::is_done)
                {
                    Action::Conflict(
                        "deleted in the destination since our last load; the delta changes it"
                            .into(),
                    )
                } else {
                    Action::Blocked(
                        "changed by the delta but missing in the destination: the delta's base \
                         was never loaded here"
                            .into(),
                    )
                }
            }
            None => Action::Create,
            Some(s) => {
                if s.applied_hash.as_deref() == Some(r.load_hash.as_str()) && !s.changed_since_apply
                {
                    Action::Unchanged
                } else if let Some(why) = edited(s, ledger) {
                    Action::Conflict(why)
                } else if s.path.as_deref().is_some_and(|p| p != r.path) {
                    Action::Move(s.path.clone().unwrap_or_default())
                } else {
                    Action::Update
                }
            }
        };
        out.actions.insert(r.uid.clone(), action);
    }
    for t in tombs {
        let removal = match states.get(&t.uid).filter(|s| s.exists) {
            None => Removal::Gone,
            Some(s) if s.accepted && s.applied_hash.as_deref() == Some(t.marker().as_str()) => {
                Removal::Keep("the destination's version was accepted before".into())
            }
            Some(s) => match edited(s, ledger) {
                Some(why) => Removal::Conflict(why),
                None if deletions == Deletions::Keep => Removal::Keep("--deletions keep".into()),
                None => Removal::Remove,
            },
        };
        out.removals.insert(t.uid.clone(), removal);
    }
    out.states = states;
    Ok(out)
}

/// An object moved.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    /// UID.
    pub uid: String,
    /// Type.
    pub portal_type: String,
    /// Path before.
    pub from: String,
    /// Path after.
    pub to: String,
}

/// What happened to one deleted object.
#[derive(Debug, Clone, Serialize)]
pub struct Deletion {
    /// UID.
    pub uid: String,
    /// Type.
    pub portal_type: String,
    /// Path.
    pub path: String,
    /// `deactivated`, `already_inactive`, `not_deactivatable`, `deleted`, `already_gone`,
    /// `kept`, `conflict` or `failed` (load); `deactivate`, `delete`, `keep`, `already_gone`,
    /// `conflict` (plan).
    pub outcome: String,
    /// Details (the destination's reason, the policy).
    pub detail: Option<String>,
}

/// One conflict with both versions.
#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    /// UID.
    pub uid: String,
    /// Type.
    pub portal_type: String,
    /// Path in the delta (or the base, for a deletion).
    pub path: String,
    /// `change` (the delta changes it) or `delete` (the delta deletes it).
    pub kind: String,
    /// What the destination did.
    pub reason: String,
    /// `skipped`, `source-wins` (applied) or `destination-wins` (accepted) — or, in a plan,
    /// what the policy would do.
    pub resolution: String,
    /// Fields whose values differ between the two versions.
    pub differing: Vec<String>,
    /// The delta's version: path, review state, modified, and the differing fields (every
    /// field when none differs).
    pub source: Value,
    /// The destination's current version of the same keys (senaite.jsonapi's complete read).
    pub destination: Value,
}

/// The delta part of a load or plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeltaSummary {
    /// The base snapshot id.
    pub base: String,
    /// Deletion policy.
    pub deletions: String,
    /// Conflict policy.
    pub conflicts: String,
    /// Objects moved (or to move).
    pub moved: Vec<Moved>,
    /// Deleted objects and what happened to them.
    pub deleted: Vec<Deletion>,
    /// Every conflict, with both versions.
    pub conflict_list: Vec<Conflict>,
    /// Records that cannot be loaded (uid, path, reason).
    pub blocked: Vec<(String, String, String)>,
}

/// Keys of a v1 record that never compare between sites (URLs, runtime values).
fn comparable(key: &str) -> bool {
    !(key.ends_with("url")
        || key.ends_with("_url")
        || key.ends_with("URL")
        || key.starts_with('_')
        || matches!(
            key,
            "api_url"
                | "parent_url"
                | "getURL"
                | "allowedRolesAndUsers"
                | "modified"
                | "modification_date"
        ))
}

/// The object a conflict is about.
struct Subject<'a> {
    uid: &'a str,
    portal_type: &'a str,
    path: &'a str,
    /// `change` or `delete`.
    kind: &'a str,
}

/// Builds a conflict entry, reading the destination's values.
fn conflict_entry(
    receiver: &Receiver,
    who: Subject<'_>,
    reason: &str,
    resolution: &str,
    record: Option<&Value>,
) -> Conflict {
    let Subject {
        uid,
        portal_type,
        path,
        kind,
    } = who;
    let current = receiver
        .current(uid)
        .unwrap_or_else(|e| json!({"error": e.to_string()}));
    let empty = Map::new();
    let fields = record
        .and_then(|r| r.get("fields"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let dest = current.as_object().cloned().unwrap_or_default();
    let differing: Vec<String> = fields
        .iter()
        .filter(|(k, v)| comparable(k) && dest.get(*k).is_some_and(|d| d != *v))
        .map(|(k, _)| k.clone())
        .collect();
    let pick = |from: &Map<String, Value>| -> Map<String, Value> {
        let keys: Vec<&String> = if differing.is_empty() {
            fields.keys().filter(|k| comparable(k)).collect()
        } else {
            differing.iter().collect()
        };
        keys.into_iter()
            .filter_map(|k| from.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    };
    let mut source = Map::new();
    if let Some(r) = record {
        for k in ["path", "review_state", "modified"] {
            source.insert(k.into(), r.get(k).cloned().unwrap_or(Value::Null));
        }
        source.insert("fields".into(), Value::Object(pick(fields)));
    } else {
        source.insert("deleted".into(), Value::Bool(true));
        source.insert("path".into(), Value::String(path.to_string()));
    }
    let mut destination = Map::new();
    if let Some(e) = dest.get("error").filter(|_| dest.len() == 1) {
        destination.insert("error".into(), e.clone());
    } else {
        for k in ["path", "review_state", "modified"] {
            destination.insert(k.into(), dest.get(k).cloned().unwrap_or(Value::Null));
        }
        let values = if record.is_some() {
            pick(&dest)
        } else {
            dest.iter()
                .filter(|(k, _)| comparable(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        destination.insert("fields".into(), Value::Object(values));
    }
    Conflict {
        uid: uid.to_string(),
        portal_type: portal_type.to_string(),
        path: path.to_string(),
        kind: kind.to_string(),
        reason: reason.to_string(),
        resolution: resolution.to_string(),
        differing,
        source: Value::Object(source),
        destination: Value::Object(destination),
    }
}

fn resolution_name(c: Conflicts, done: bool) -> &'static str {
    match (c, done) {
        (Conflicts::Skip, _) => "skipped",
        (Conflicts::SourceWins, true) => "source-wins",
        (Conflicts::SourceWins, false) => "source-wins (would apply the delta's version)",
        (Conflicts::DestinationWins, true) => "destination-wins",
        (Conflicts::DestinationWins, false) => {
            "destination-wins (would accept the destination's version)"
        }
    }
}

/// The plan of a delta: the summary plus per-type counts (create, update, unchanged, blocked;
/// moves count as updates, conflicts as neither).
///
/// # Errors
/// Reading the delta or the destination.
pub fn plan(
    receiver: &Receiver,
    chunk: usize,
    snap: &Snapshot,
    set: &RecordSet,
    deletions: Deletions,
    conflicts: Conflicts,
) -> Result<(DeltaSummary, Classified)> {
    let tombs = tombstones(snap, &set.dest_site_path)?;
    let changed = changed_uids(snap)?;
    let c = classify(receiver, chunk, set, &tombs, &changed, None, deletions)?;
    let mut summary = summary_head(snap, deletions, conflicts);
    for r in &set.records {
        match c.actions.get(&r.uid) {
            Some(Action::Move(from)) => summary.moved.push(Moved {
                uid: r.uid.clone(),
                portal_type: r.portal_type.clone(),
                from: from.clone(),
                to: r.path.clone(),
            }),
            Some(Action::Conflict(why)) => summary.conflict_list.push(conflict_entry(
                receiver,
                Subject {
                    uid: &r.uid,
                    portal_type: &r.portal_type,
                    path: &r.path,
                    kind: "change",
                },
                why,
                resolution_name(conflicts, false),
                Some(&r.value()),
            )),
            Some(Action::Blocked(why)) => {
                summary
                    .blocked
                    .push((r.uid.clone(), r.path.clone(), why.clone()))
            }
            _ => {}
        }
    }
    for t in &tombs {
        let (outcome, detail) = match c.removals.get(&t.uid) {
            Some(Removal::Gone) => ("already_gone", None),
            Some(Removal::Remove) => (
                deletions.policy().unwrap_or("keep"),
                Some(format!(
                    "--deletions {}",
                    deletions.policy().unwrap_or("keep")
                )),
            ),
            Some(Removal::Keep(why)) => ("keep", Some(why.clone())),
            Some(Removal::Conflict(why)) => {
                summary.conflict_list.push(conflict_entry(
                    receiver,
                    Subject {
                        uid: &t.uid,
                        portal_type: &t.portal_type,
                        path: &t.path,
                        kind: "delete",
                    },
                    why,
                    resolution_name(conflicts, false),
                    None,
                ));
                ("conflict", Some(why.clone()))
            }
            None => continue,
        };
        summary.deleted.push(Deletion {
            uid: t.uid.clone(),
            portal_type: t.portal_type.clone(),
            path: t.path.clone(),
            outcome: outcome.into(),
            detail,
        });
    }
    Ok((summary, c))
}

fn summary_head(snap: &Snapshot, deletions: Deletions, conflicts: Conflicts) -> DeltaSummary {
    DeltaSummary {
        base: snap
            .manifest
            .base
            .as_ref()
            .map(|b| b.snapshot_id.clone())
            .unwrap_or_default(),
        deletions: deletions.policy().unwrap_or("keep").into(),
        conflicts: match conflicts {
            Conflicts::Skip => "skip",
            Conflicts::SourceWins => "source-wins",
            Conflicts::DestinationWins => "destination-wins",
        }
        .into(),
        ..DeltaSummary::default()
    }
}

/// Runs the load of a delta snapshot (called by [`super::run`] for a snapshot whose manifest
/// names a base).
///
/// # Errors
/// As [`super::run`]; also a delta whose base was never loaded into the destination.
pub(super) fn run(
    opts: &LoadOptions,
    snap: &Snapshot,
    receiver: &Receiver,
    info: &super::receiver::Info,
    progress: &Progress,
) -> Result<LoadReport> {
    let started = Instant::now();
    let set = records::read(snap, &info.site_path)?;
    let tombs = tombstones(snap, &info.site_path)?;
    let changed = changed_uids(snap)?;
    let state_dir = opts.state_dir();
    let mut ledger = Ledger::open(
        &state_dir,
        &Binding {
            destination: opts.url.clone(),
            snapshot_id: snap.manifest.snapshot_id.clone(),
            snapshot_dir: opts.snapshot.display().to_string(),
        },
    )?;
    let chunk = info.max_batch.max(1);
    let c = classify(
        receiver,
        chunk,
        &set,
        &tombs,
        &changed,
        Some(&ledger),
        opts.deletions,
    )?;

    // A delta of a base this destination never received: refuse before writing anything.
    let blocked: Vec<&Record> = set
        .records
        .iter()
        .filter(|r| matches!(c.actions.get(&r.uid), Some(Action::Blocked(_))))
        .collect();
    if !blocked.is_empty() {
        let names: Vec<String> = blocked
            .iter()
            .take(20)
            .map(|r| format!("{} ({})", r.uid, r.path))
            .collect();
        let base = snap.manifest.base.as_ref().map_or("?", |b| &b.snapshot_id);
        return Err(Error::Load {
            message: format!(
                "delta {} changes {} objects the destination {} does not have, e.g. {}: its base \
                 snapshot {base} was never loaded there. Load the base (or the newer full \
                 snapshot) first; `plan` lists every blocked uid",
                opts.snapshot.display(),
                blocked.len(),
                opts.url,
                names.join(", ")
            ),
        });
    }

    let mut report = super::empty_report(opts, snap, info, &state_dir, set.records.len());
    let mut summary = summary_head(snap, opts.deletions, opts.conflicts);

    // Records to write: creates, updates, moves, and conflicts the source wins.
    let mut todo: Vec<&Record> = Vec::new();
    let mut accept: Vec<(String, String)> = Vec::new();
    let mut conflict_records: Vec<(&Record, String)> = Vec::new();
    for r in &set.records {
        match c.actions.get(&r.uid) {
            Some(Action::Create | Action::Update) => todo.push(r),
            Some(Action::Move(from)) => {
                summary.moved.push(Moved {
                    uid: r.uid.clone(),
                    portal_type: r.portal_type.clone(),
                    from: from.clone(),
                    to: r.path.clone(),
                });
                todo.push(r);
            }
            Some(Action::Unchanged) => {
                let done = ledger
                    .get(&r.uid)
                    .is_some_and(|e| e.load_hash == r.load_hash && e.is_done());
                let counts = report.by_type.entry(r.portal_type.clone()).or_default();
                if done {
                    counts.done_before += 1;
                    report.totals.done_before += 1;
                } else {
                    counts.add("unchanged");
                    report.totals.add("unchanged");
                }
            }
            Some(Action::Conflict(why)) => {
                conflict_records.push((r, why.clone()));
                match opts.conflicts {
                    Conflicts::SourceWins => todo.push(r),
                    Conflicts::DestinationWins => accept.push((r.uid.clone(), r.load_hash.clone())),
                    Conflicts::Skip => {}
                }
            }
            Some(Action::Blocked(_)) | None => {}
        }
    }
    // Both versions, read before anything is written.
    for (r, why) in &conflict_records {
        summary.conflict_list.push(conflict_entry(
            receiver,
            Subject {
                uid: &r.uid,
                portal_type: &r.portal_type,
                path: &r.path,
                kind: "change",
            },
            why,
            resolution_name(opts.conflicts, true),
            Some(&r.value()),
        ));
    }
    let mut removal_conflicts: Vec<&Tombstone> = Vec::new();
    for t in &tombs {
        if let Some(Removal::Conflict(why)) = c.removals.get(&t.uid) {
            removal_conflicts.push(t);
            summary.conflict_list.push(conflict_entry(
                receiver,
                Subject {
                    uid: &t.uid,
                    portal_type: &t.portal_type,
                    path: &t.path,
                    kind: "delete",
                },
                why,
                resolution_name(opts.conflicts, true),
                None,
            ));
        }
    }
    info!(
        to_send = todo.len(),
        conflicts = summary.conflict_list.len(),
        deletions = tombs.len(),
        "Delta load plan."
    );

    if !opts.skip_principals && !opts.retry_failed {
        super::send_principals(receiver, &set, &mut report)?;
    }
    super::upload_blobs(
        receiver,
        snap,
        &todo,
        info.max_chunk_bytes,
        progress,
        &mut report,
    )?;
    let sending = Sending {
        batch: opts.batch_size.clamp(1, chunk),
        byte_limit: (info.max_request_bytes / 2).max(1 << 20) as usize,
        jobs: opts.jobs.max(1),
    };
    let bar = progress.bar(todo.len() as u64, "load", "records");
    let mut deferred: Vec<&Record> = Vec::new();
    super::send_pass(
        receiver,
        &mut ledger,
        &todo,
        1,
        sending,
        &mut report,
        &mut deferred,
        &|n| bar.inc(n),
    )?;
    bar.finish_and_clear();
    if !deferred.is_empty() {
        let again: Vec<&Record> = std::mem::take(&mut deferred);
        for r in &again {
            let c = report.by_type.entry(r.portal_type.clone()).or_default();
            c.deferred = c.deferred.saturating_sub(1);
            report.totals.deferred = report.totals.deferred.saturating_sub(1);
        }
        super::send_pass(
            receiver,
            &mut ledger,
            &again,
            2,
            sending,
            &mut report,
            &mut deferred,
            &|_| {},
        )?;
    }

    // Conflicts: skipped ones are recorded; destination-wins ones accepted by the receiver.
    let at = now_rfc3339();
    let mut entries = Vec::new();
    for (r, why) in &conflict_records {
        if opts.conflicts == Conflicts::Skip {
            entries.push(note(
                &r.uid,
                &r.portal_type,
                "conflict",
                &r.load_hash,
                Some(why),
                &at,
            ));
        }
    }
    for t in &removal_conflicts {
        match opts.conflicts {
            Conflicts::Skip => entries.push(note(
                &t.uid,
                &t.portal_type,
                "conflict",
                &t.marker(),
                Some("the delta deletes it; edited in the destination"),
                &at,
            )),
            Conflicts::DestinationWins => accept.push((t.uid.clone(), t.marker())),
            Conflicts::SourceWins => {}
        }
    }
    for part in accept.chunks(chunk) {
        for item in receiver.accept(part)? {
            let pt = set
                .get(&item.uid)
                .map(|r| r.portal_type.clone())
                .or_else(|| {
                    tombs
                        .iter()
                        .find(|t| t.uid == item.uid)
                        .map(|t| t.portal_type.clone())
                })
                .unwrap_or_default();
            let hash = part
                .iter()
                .find(|(u, _)| *u == item.uid)
                .map(|(_, h)| h.clone())
                .unwrap_or_default();
            if item.status != "accepted" {
                warn!(uid = %item.uid, status = %item.status, error = ?item.error, "Accept failed.");
            }
            let status = if item.status == "accepted" {
                "accepted"
            } else {
                "failed"
            };
            entries.push(note(
                &item.uid,
                &pt,
                status,
                &hash,
                item.error.as_deref(),
                &at,
            ));
        }
    }
    ledger.append(std::mem::take(&mut entries))?;

    // Deletions, deepest first.
    // Removals an earlier run finished (the ledger holds this tombstone's outcome).
    let finished = |t: &Tombstone| -> Option<&Entry> {
        ledger.get(&t.uid).filter(|e| {
            e.load_hash == t.marker()
                && matches!(
                    e.status.as_str(),
                    "deactivated" | "already_inactive" | "deleted" | "absent"
                )
        })
    };
    let earlier: HashMap<String, String> = tombs
        .iter()
        .filter_map(|t| finished(t).map(|e| (t.uid.clone(), e.status.clone())))
        .collect();
    let mut to_remove: Vec<&Tombstone> = tombs
        .iter()
        .filter(|t| !earlier.contains_key(&t.uid))
        .filter(|t| match c.removals.get(&t.uid) {
            Some(Removal::Remove) => true,
            Some(Removal::Conflict(_)) => opts.conflicts == Conflicts::SourceWins,
            _ => false,
        })
        .collect();
    to_remove.sort_by(|a, b| {
        b.path
            .matches('/')
            .count()
            .cmp(&a.path.matches('/').count())
            .then(a.path.cmp(&b.path))
    });
    let mut outcomes: HashMap<String, RemoveItem> = HashMap::new();
    if let Some(policy) = opts.deletions.policy() {
        for part in to_remove.chunks(chunk) {
            let uids: Vec<String> = part.iter().map(|t| t.uid.clone()).collect();
            let items = receiver.remove(&uids, policy)?;
            let at = now_rfc3339();
            let mut entries = Vec::new();
            for (t, item) in part.iter().zip(items) {
                entries.push(note(
                    &t.uid,
                    &t.portal_type,
                    &item.status,
                    &t.marker(),
                    item.error.as_deref(),
                    &at,
                ));
                outcomes.insert(t.uid.clone(), item);
            }
            ledger.append(entries)?;
        }
    }
    for t in &tombs {
        let (outcome, detail) = match (c.removals.get(&t.uid), outcomes.get(&t.uid)) {
            (_, None) if earlier.contains_key(&t.uid) => (
                earlier[&t.uid].replace("absent", "already_gone"),
                Some("in an earlier run".to_string()),
            ),
            (_, Some(item)) => (
                if item.status == "absent" {
                    "already_gone".to_string()
                } else {
                    item.status.clone()
                },
                item.error.clone(),
            ),
            (Some(Removal::Gone), _) => ("already_gone".into(), None),
            (Some(Removal::Keep(why)), _) => ("kept".into(), Some(why.clone())),
            (Some(Removal::Conflict(why)), _) => ("conflict".into(), Some(why.clone())),
            (Some(Removal::Remove), None) => ("kept".into(), Some("--deletions keep".to_string())),
            (None, None) => continue,
        };
        summary.deleted.push(Deletion {
            uid: t.uid.clone(),
            portal_type: t.portal_type.clone(),
            path: t.path.clone(),
            outcome,
            detail,
        });
    }

    report.counters = receiver.finalize()?;
    report.rejected = super::rejected(&ledger, &set);
    report.unknown_fields = super::unknown_fields(&ledger, &set);
    report.seconds = started.elapsed().as_secs_f64();
    report.delta = Some(summary);
    let text = serde_json::to_vec_pretty(&report).map_err(|source| Error::JsonFile {
        path: state_dir.join("report.json"),
        source,
    })?;
    write_atomic(&state_dir.join("report.json"), &text)?;
    Ok(report)
}

/// A ledger entry for something other than an apply (a conflict, an acceptance, a removal).
fn note(
    uid: &str,
    portal_type: &str,
    status: &str,
    hash: &str,
    error: Option<&str>,
    at: &str,
) -> Entry {
    Entry {
        uid: uid.to_string(),
        portal_type: portal_type.to_string(),
        status: status.to_string(),
        load_hash: hash.to_string(),
        pass: 0,
        result: ApplyItem {
            uid: uid.to_string(),
            status: status.to_string(),
            error: error.map(str::to_string),
            ..ApplyItem::default()
        },
        at: at.to_string(),
    }
}

/// Counts of a delta load's outcomes, for tests and summaries.
pub fn deletion_counts(s: &DeltaSummary) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for d in &s.deleted {
        *out.entry(d.outcome.clone()).or_default() += 1;
    }
    out
}

impl DeltaSummary {
    /// Whether nothing needs attention: no conflict left unresolved and every deletion done
    /// (kept by policy or accepted counts as done).
    pub fn is_settled(&self) -> bool {
        self.conflict_list.iter().all(|c| c.resolution != "skipped")
            && self
                .deleted
                .iter()
                .all(|d| !matches!(d.outcome.as_str(), "not_deactivatable" | "failed"))
            && self.blocked.is_empty()
    }
}

/// The delta part of a load or plan report as text.
pub fn render_text(s: &DeltaSummary) -> String {
    let mut out = format!(
        "Delta of base {} (deletions: {}, conflicts: {})\n",
        &s.base[..12.min(s.base.len())],
        s.deletions,
        s.conflicts
    );
    for m in &s.moved {
        out.push_str(&format!(
            "moved {} ({}) {} -> {}\n",
            m.uid, m.portal_type, m.from, m.to
        ));
    }
    for d in &s.deleted {
        out.push_str(&format!(
            "deleted {} ({}) {}: {}{}\n",
            d.path,
            d.portal_type,
            d.uid,
            d.outcome,
            d.detail
                .as_deref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        ));
    }
    for (uid, path, why) in &s.blocked {
        out.push_str(&format!("blocked {path} {uid}: {why}\n"));
    }
    for c in &s.conflict_list {
        out.push_str(&format!(
            "CONFLICT ({}) {} ({}) {}: {}; {}\n",
            c.kind, c.path, c.portal_type, c.uid, c.reason, c.resolution
        ));
        if !c.differing.is_empty() {
            out.push_str(&format!("    differing: {}\n", c.differing.join(", ")));
        }
        out.push_str(&format!("    delta:       {}\n", c.source));
        out.push_str(&format!("    destination: {}\n", c.destination));
    }
    if s.conflict_list.is_empty() {
        out.push_str("No conflicts.\n");
    }
    out
}
