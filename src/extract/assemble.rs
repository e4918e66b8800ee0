//! Turning the staged units into a snapshot in bounded memory. Pass 1 routes every staged line by
//! the first two hex digits of its uid into 256 bucket files without parsing the JSON; pass 2
//! reads the buckets in order (a few at a time, in parallel), de-duplicates by uid, sorts, builds
//! rows and appends them to the table writers. Memory holds a few buckets, never the snapshot.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::extract::fetch::NOTE_KEY;
use crate::extract::site::{self, SiteRecords};
use crate::extract::staging::Staging;
use crate::jsonx;
use crate::snapshot::jsonl::compress_frame;
use crate::snapshot::manifest::{BlobTotals, Manifest, Note};
use crate::snapshot::record::{ObjectCapture, ObjectRows, object_rows};
use crate::snapshot::table::{
    BLOBS, Cell, GROUPS, LOCAL_ROLES, OBJECTS, SETTINGS, USERS, WORKFLOW_HISTORY, WORKFLOW_STATES,
};
use crate::snapshot::writer::{SnapshotParts, SnapshotWriter};

/// zstd level of the raw streams (the same as `jsonl::ZSTD_LEVEL`).
const RAW_ZSTD_LEVEL: i32 = crate::snapshot::jsonl::ZSTD_LEVEL;

/// Buckets processed in parallel per round.
const MAX_BUCKETS_PER_ROUND: usize = 16;
/// Objects held in memory per round (two rounds are in flight: one built, one written).
const OBJECTS_PER_ROUND: u64 = 1024;

/// Buckets per round for a snapshot of about `objects` objects: enough for parallel work on a
/// small site, few enough that memory stays flat as the site grows.
fn buckets_per_round(objects: u64) -> usize {
    let per_bucket = (objects / 256).max(1);
    ((OBJECTS_PER_ROUND / per_bucket) as usize).clamp(1, MAX_BUCKETS_PER_ROUND)
}

/// Builds the snapshot in `out` from the staged units; returns the manifest.
///
/// # Errors
/// Staging or writing errors.
pub(crate) fn assemble(
    staging: &Staging,
    out: &Path,
    mut parts: SnapshotParts,
    site_records: Option<&SiteRecords>,
    catalogs: &[Value],
    origin: &str,
    expected_objects: u64,
) -> Result<Manifest> {
    let started = std::time::Instant::now();
    let units = staging.units_under("units")?;
    let bucket_dir = staging.root().join("buckets");
    let mut announced: BTreeMap<String, u64> = BTreeMap::new();
    route_to_buckets(
        staging,
        &units,
        &bucket_dir,
        &mut parts.notes,
        &mut announced,
    )?;
    tracing::debug!(
        units = units.len(),
        elapsed_s = started.elapsed().as_secs_f64(),
        "Routed the staged units into buckets."
    );
    let mut writer = SnapshotWriter::create(out)?;
    let mut acc = Totals::default();
    let names: Vec<PathBuf> = (0..=255u8)
        .map(|b| bucket_dir.join(format!("{b:02x}")))
        .chain([bucket_dir.join("other")])
        .collect();
    let rounds: Vec<&[PathBuf]> = names.chunks(buckets_per_round(expected_objects)).collect();
    let build = |round: &[PathBuf]| -> Vec<Result<Bucket>> {
        round.par_iter().map(|p| build_bucket(p, origin)).collect()
    };
    // Double buffering: round k is written while round k+1 is built.
    let mut pending = rounds.first().map(|r| build(r)).unwrap_or_default();
    for k in 0..rounds.len() {
        let current = std::mem::take(&mut pending);
        let (written, next) = rayon::join(
            || write_round(&mut writer, &mut acc, current),
            || rounds.get(k + 1).map(|r| build(r)),
        );
        written?;
        pending = next.unwrap_or_default();
    }
    tracing::debug!(
        elapsed_s = started.elapsed().as_secs_f64(),
        "Built and appended every bucket."
    );
    parts.counts = acc.counts;
    parts.notes.extend(acc.notes);
    let (blob_count, blob_bytes) = (acc.blob_shas.len() as u64, acc.blob_bytes);
    check_counts(&announced, &parts.counts, &mut parts.notes);
    parts.notes = collapse_notes(std::mem::take(&mut parts.notes));
    writer
        .raw("site")?
        .write_value(&serde_json::json!({"kind": "catalogs", "items": catalogs}))?;
    if let Some(site) = site_records {
        write_site(&mut writer, site, origin)?;
    }
    parts.blobs = BlobTotals {
        count: blob_count,
        bytes: blob_bytes,
    };
    let manifest = writer.finish(parts)?;
    std::fs::remove_dir_all(&bucket_dir).map_err(|e| Error::write(&bucket_dir, e))?;
    Ok(manifest)
}

/// What the written objects add up to.
#[derive(Default)]
struct Totals {
    counts: BTreeMap<String, u64>,
    notes: Vec<Note>,
    blob_shas: HashSet<String>,
    blob_bytes: u64,
}

fn write_round(w: &mut SnapshotWriter, acc: &mut Totals, built: Vec<Result<Bucket>>) -> Result<()> {
    for bucket in built {
        let bucket = bucket?;
        for rows in bucket.rows {
            let portal_type = rows.object[1].as_str().unwrap_or("").to_string();
            let uid = rows.object[0].as_str().unwrap_or("").to_string();
            *acc.counts.entry(portal_type).or_insert(0) += 1;
            for (kind, message) in &rows.notes {
                acc.notes.push(Note {
                    kind: kind.clone(),
                    subject: uid.clone(),
                    message: message.clone(),
                });
            }
            for b in &rows.blobs {
                if let Some(sha) = b[5].as_str()
                    && acc.blob_shas.insert(sha.to_string())
                {
                    acc.blob_bytes += b[4].as_int().unwrap_or(0) as u64;
                }
            }
            write_object(w, rows)?;
        }
        for (stream, (frame, lines)) in [("jsonapi", bucket.raw_v1), ("restapi", bucket.raw_rest)] {
            if lines > 0 {
                w.raw(stream)?.append_frame(&frame, lines)?;
            }
        }
    }
    Ok(())
}

/// Units read and split in parallel per round (bounds memory to a few units).
const UNITS_PER_ROUND: usize = 8;

/// The lines of one unit split by destination.
#[derive(Default)]
struct Routed {
    notes: Vec<Note>,
    counts: Vec<(String, u64)>,
    lines: Vec<(String, String)>,
}

fn route_unit(staging: &Staging, unit: &str) -> Result<Routed> {
    let mut out = Routed::default();
    for (key, json) in staging.read_unit_lines(unit)? {
        if key == NOTE_KEY {
            if let Ok(n) = serde_json::from_str::<Note>(&json) {
                out.notes.push(n);
            }
        } else if key == "!count" {
            let v: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
            if let (Some(t), Some(c)) = (v["portal_type"].as_str(), v["count"].as_u64()) {
                out.counts.push((t.to_string(), c));
            }
        } else if key.starts_with('!') {
            // Other markers (how an incremental extract got an object) are not data.
        } else {
            out.lines.push((bucket_of(&key), json));
        }
    }
    Ok(out)
}

fn route_to_buckets(
    staging: &Staging,
    units: &[String],
    bucket_dir: &Path,
    notes: &mut Vec<Note>,
    announced: &mut BTreeMap<String, u64>,
) -> Result<()> {
    if bucket_dir.exists() {
        std::fs::remove_dir_all(bucket_dir).map_err(|e| Error::write(bucket_dir, e))?;
    }
    std::fs::create_dir_all(bucket_dir).map_err(|e| Error::write(bucket_dir, e))?;
    let mut files: BTreeMap<String, BufWriter<File>> = BTreeMap::new();
    for round in units.chunks(UNITS_PER_ROUND) {
        let routed: Vec<Result<Routed>> =
            round.par_iter().map(|u| route_unit(staging, u)).collect();
        for r in routed {
            let r = r?;
            notes.extend(r.notes);
            for (t, c) in r.counts {
                let e = announced.entry(t).or_insert(0);
                *e = (*e).max(c);
            }
            for (name, json) in r.lines {
                let p = bucket_dir.join(&name);
                if !files.contains_key(&name) {
                    let f = File::create(&p).map_err(|e| Error::write(&p, e))?;
                    files.insert(name.clone(), BufWriter::new(f));
                }
                if let Some(w) = files.get_mut(&name) {
                    w.write_all(json.as_bytes())
                        .map_err(|e| Error::write(&p, e))?;
                    w.write_all(b"\n").map_err(|e| Error::write(&p, e))?;
                }
            }
        }
    }
    for (name, mut w) in files {
        w.flush()
            .map_err(|e| Error::write(bucket_dir.join(name), e))?;
    }
    Ok(())
}

/// The bucket of a uid: its first two hex digits (uids are random hex), else `other`.
fn bucket_of(uid: &str) -> String {
    match uid.get(..2) {
        Some(p) if p.bytes().all(|b| b.is_ascii_hexdigit()) => p.to_ascii_lowercase(),
        _ => "other".to_string(),
    }
}

/// A line of the `restapi` raw stream. Fields in alphabetical order, so the serialization is
/// canonical (sorted keys) without building a JSON object first.
#[derive(serde::Serialize)]
struct RestLine<'a> {
    content: Option<&'a Value>,
    history: Option<&'a Value>,
    path: &'a str,
    sharing: Option<&'a Value>,
    uid: &'a str,
}

/// One bucket, built: rows of its objects in uid order, and its raw lines as compressed zstd
/// frames (compressed here, in parallel, and appended in order by the writer).
#[derive(Default)]
struct Bucket {
    rows: Vec<ObjectRows>,
    raw_v1: (Vec<u8>, u64),
    raw_rest: (Vec<u8>, u64),
}

fn build_bucket(path: &Path, origin: &str) -> Result<Bucket> {
    if !path.exists() {
        return Ok(Bucket::default());
    }
    let file = File::open(path).map_err(|e| Error::read(path, e))?;
    let mut lines: Vec<String> = Vec::new();
    for line in BufReader::new(file).lines() {
        lines.push(line.map_err(|e| Error::read(path, e))?);
    }
    // Units are routed in parallel: sort so that which of two equal reads wins is deterministic.
    lines.sort_unstable();
    let mut by_uid: BTreeMap<String, ObjectCapture> = BTreeMap::new();
    for line in lines {
        let cap: ObjectCapture = serde_json::from_str(&line).map_err(|source| Error::JsonFile {
            path: path.to_path_buf(),
            source,
        })?;
        match by_uid.get(&cap.uid) {
            Some(old) if !is_better(&cap, old) => {}
            _ => {
                by_uid.insert(cap.uid.clone(), cap);
            }
        }
    }
    let mut out = Bucket::default();
    let (mut v1_lines, mut rest_lines) = (Vec::new(), Vec::new());
    for cap in by_uid.into_values() {
        if cap.restapi.is_some() || cap.history.is_some() || cap.sharing.is_some() {
            let rest = RestLine {
                content: cap.restapi.as_ref(),
                history: cap.history.as_ref(),
                path: &cap.path,
                sharing: cap.sharing.as_ref(),
                uid: &cap.uid,
            };
            serde_json::to_writer(&mut rest_lines, &rest).map_err(|source| Error::JsonFile {
                path: path.to_path_buf(),
                source,
            })?;
            rest_lines.push(b'\n');
            out.raw_rest.1 += 1;
        }
        if let Some(v1) = &cap.v1 {
            v1_lines.extend_from_slice(&jsonx::canonical(v1));
            v1_lines.push(b'\n');
            out.raw_v1.1 += 1;
        }
        out.rows.push(object_rows(cap, origin));
    }
    let frame = |lines: &[u8]| -> Result<Vec<u8>> {
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        compress_frame(lines, RAW_ZSTD_LEVEL).map_err(|e| Error::write(path, e))
    };
    out.raw_v1.0 = frame(&v1_lines)?;
    out.raw_rest.0 = frame(&rest_lines)?;
    Ok(out)
}

/// Of two reads of the same object, the one with a v1 record wins, then the later `modified`.
fn is_better(new: &ObjectCapture, old: &ObjectCapture) -> bool {
    match (new.v1.is_some(), old.v1.is_some()) {
        (true, false) => true,
        (false, true) => false,
        _ => modified(new) > modified(old),
    }
}

fn modified(c: &ObjectCapture) -> &str {
    c.v1.as_ref()
        .or(c.restapi.as_ref())
        .and_then(|v| v.get("modified"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn write_object(w: &mut SnapshotWriter, mut rows: ObjectRows) -> Result<()> {
    w.table(&OBJECTS)?.push(std::mem::take(&mut rows.object))?;
    rows.history
        .sort_by(|a, b| (a[1].as_str(), a[2].as_int()).cmp(&(b[1].as_str(), b[2].as_int())));
    for r in rows.history {
        w.table(&WORKFLOW_HISTORY)?.push(r)?;
    }
    rows.states
        .sort_by(|a, b| a[1].as_str().cmp(&b[1].as_str()));
    for r in rows.states {
        w.table(&WORKFLOW_STATES)?.push(r)?;
    }
    for r in rows.local_roles {
        w.table(&LOCAL_ROLES)?.push(r)?;
    }
    for r in rows.blobs {
        w.table(&BLOBS)?.push(r)?;
    }
    Ok(())
}

fn write_site(w: &mut SnapshotWriter, site: &SiteRecords, origin: &str) -> Result<()> {
    let tables: [(&'static crate::snapshot::table::TableDef, Vec<Vec<Cell>>); 3] = [
        (&USERS, site::user_rows(site, origin)),
        (&GROUPS, site::group_rows(site, origin)),
        (&SETTINGS, site::setting_rows(site, origin)),
    ];
    for (def, rows) in tables {
        for r in rows {
            w.table(def)?.push(r)?;
        }
    }
    let raw = w.raw("site")?;
    raw.write_value(&serde_json::json!({"kind": "users", "items": site.users}))?;
    raw.write_value(&serde_json::json!({"kind": "restapi_users", "items": site.restapi_users}))?;
    raw.write_value(&serde_json::json!({"kind": "groups", "items": site.groups}))?;
    raw.write_value(&serde_json::json!({"kind": "registry", "items": site.registry}))?;
    let settings: BTreeMap<&String, Value> = site
        .settings
        .iter()
        .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or(Value::Null)))
        .collect();
    raw.write_value(&serde_json::json!({"kind": "settings", "items": settings}))?;
    Ok(())
}

/// Notes repeated for many objects (the same kind and message) collapse into one that counts
/// them, so a manifest stays readable on a site of a million objects.
fn collapse_notes(notes: Vec<Note>) -> Vec<Note> {
    const KEEP_INDIVIDUALLY: usize = 20;
    let mut groups: BTreeMap<(String, String), Vec<Note>> = BTreeMap::new();
    for n in notes {
        groups
            .entry((n.kind.clone(), n.message.clone()))
            .or_default()
            .push(n);
    }
    let mut out = Vec::new();
    for ((kind, message), mut group) in groups {
        if group.len() <= KEEP_INDIVIDUALLY {
            out.append(&mut group);
        } else {
            group.sort();
            out.push(Note {
                kind,
                subject: format!("{} objects, the first {}", group.len(), group[0].subject),
                message,
            });
        }
    }
    out
}

fn check_counts(
    announced: &BTreeMap<String, u64>,
    got: &BTreeMap<String, u64>,
    notes: &mut Vec<Note>,
) {
    for (t, a) in announced {
        let g = got.get(t).copied().unwrap_or(0);
        if g != *a {
            notes.push(Note {
                kind: "count_mismatch".into(),
                subject: t.clone(),
                message: format!("the server announced {a} objects, the snapshot holds {g}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_equal_notes_collapse_into_one() {
        let note = |s: &str| Note {
            kind: "k".into(),
            subject: s.into(),
            message: "m".into(),
        };
        let many: Vec<Note> = (0..50).map(|i| note(&format!("u{i:02}"))).collect();
        let out = collapse_notes(many);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].subject, "50 objects, the first u00");
        assert_eq!(collapse_notes(vec![note("a"), note("b")]).len(), 2);
    }

    #[test]
    fn rounds_shrink_as_sites_grow() {
        assert_eq!(buckets_per_round(100), 16);
        assert_eq!(buckets_per_round(10_000), 16);
        assert_eq!(buckets_per_round(100_000), 2);
        assert_eq!(buckets_per_round(10_000_000), 1);
    }

    #[test]
    fn buckets_by_uid_prefix() {
        assert_eq!(bucket_of("AB12"), "ab");
        assert_eq!(bucket_of("0"), "other");
        assert_eq!(bucket_of("zz"), "other");
    }

    #[test]
    fn v1_reads_win_then_newer() {
        let a = ObjectCapture {
            uid: "u".into(),
            v1: Some(serde_json::json!({"modified": "2020"})),
            ..Default::default()
        };
        let b = ObjectCapture {
            uid: "u".into(),
            v1: Some(serde_json::json!({"modified": "2021"})),
            ..Default::default()
        };
        let c = ObjectCapture {
            uid: "u".into(),
            restapi: Some(serde_json::json!({"modified": "2030"})),
            ..Default::default()
        };
        assert!(is_better(&b, &a));
        assert!(!is_better(&a, &b));
        assert!(!is_better(&c, &a));
        assert!(is_better(&a, &c));
    }
}
