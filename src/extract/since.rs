//! Incremental extract (`extract --since OLD`): a complete snapshot of the source that takes
//! from OLD every object the source proves unchanged and reads the rest. OLD must be a complete,
//! verified full snapshot of the same site, made with the same request by the same tool version.
//!
//! What proves an object unchanged (all of it, else it is read again):
//! - it is listed (uid_catalog) with the portal type and path it had in OLD, and OLD holds its
//!   complete v1 record;
//! - for types whose catalog honours `modified_since` (probed per type: a far-future value must
//!   find nothing; on SENAITE 2.6 the sample catalog and `portal_catalog`, at minute
//!   resolution), it is not among the objects modified since OLD's start minus [`OVERLAP_SECS`],
//!   and its modification date in OLD is older than that too;
//! - for the other types the complete records are read page by page as a full extract reads
//!   them and compared with OLD's: an equal record keeps OLD's review history (`@history`),
//!   plone.restapi serialization and files; a different one is read completely.
//!
//! Local roles (`@sharing`) change without a trace in the record (no `modified` bump on the
//! real 2.6, and acquired roles change below a container), so they are read again for every
//! object the request covers; users, groups, registry and settings are always read again.
//! Never touches OLD: blob files are linked (or copied) into the new snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use crate::error::{Error, Result};
use crate::extract::listing::Listed;
use crate::extract::staging::Staging;
use crate::extract::{ExtractOptions, LocalRolesMode};
use crate::jsonx;
use crate::snapshot::Snapshot;
use crate::snapshot::jsonl::JsonlReader;
use crate::snapshot::manifest::{Manifest, SourceInfo};
use crate::snapshot::record::{BlobRef, ObjectCapture};
use crate::snapshot::table::{BLOBS, OBJECTS, TableReader};
use crate::source::SenaiteClient;

/// How far before OLD's start a modification still counts as "after OLD": covers edits made
/// while OLD was read, the minute resolution of SENAITE's `modified` DateIndex and clock skew
/// between this machine and the source.
pub const OVERLAP_SECS: i64 = 3600;

/// Key of the staged marker lines that say how an object was obtained.
pub(crate) const SINCE_KEY: &str = "!since";

/// What OLD knew about one object.
#[derive(Debug, Clone)]
pub(crate) struct OldObject {
    portal_type: String,
    path: String,
    modified: Option<i64>,
    /// sha256 of the canonical text of the complete v1 record (without `_runtime`).
    v1_hash: Option<String>,
    /// That text, zstd-compressed (records are held for the whole run: a tenth of the memory).
    v1: Option<Vec<u8>>,
    /// `{"content", "history"}` of the plone.restapi stream, canonical and compressed.
    rest: Option<Vec<u8>>,
    blobs: Vec<BlobRef>,
}

/// zstd level of the records held in memory.
const HELD_ZSTD_LEVEL: i32 = 1;

fn squeeze(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, HELD_ZSTD_LEVEL).unwrap_or_else(|_| bytes.to_vec())
}

fn unsqueeze(bytes: &[u8]) -> Option<Value> {
    let text = zstd::stream::decode_all(bytes).ok()?;
    serde_json::from_slice(&text).ok()
}

/// OLD, opened and checked, with its objects indexed by uid.
#[derive(Debug)]
pub struct OldSnapshot {
    dir: PathBuf,
    /// OLD's manifest.
    pub manifest: Manifest,
    objects: HashMap<String, OldObject>,
    /// Objects modified at or after this time (unix seconds) are read again.
    pub threshold: i64,
}

impl OldSnapshot {
    /// Opens OLD and checks it can serve as the base of `opts` against `source`.
    ///
    /// # Errors
    /// A delta snapshot, an incomplete or corrupt one (naming the file), another site, request,
    /// source or tool version, or a snapshot without its raw streams.
    pub fn open(dir: &Path, opts: &ExtractOptions, source: &SourceInfo) -> Result<OldSnapshot> {
        let manifest = Manifest::read(dir)?;
        if manifest.base.is_some() {
            return Err(Error::snapshot(
                crate::snapshot::layout::manifest_path(dir),
                "is a delta snapshot (its manifest names a base); --since needs a complete \
                 snapshot written by extract",
            ));
        }
        let snap = Snapshot::open(dir)?;
        check_compatible(dir, &snap.manifest, opts, source)?;
        let objects = read_objects(&snap)?;
        let started = unix_seconds(&snap.manifest.started_at).ok_or_else(|| {
            Error::snapshot(
                crate::snapshot::layout::manifest_path(dir),
                format!("started_at {:?} is not a time", snap.manifest.started_at),
            )
        })?;
        Ok(OldSnapshot {
            dir: dir.to_path_buf(),
            manifest: snap.manifest,
            objects,
            threshold: started - OVERLAP_SECS,
        })
    }

    /// The `modified_since` value sent to the source.
    pub fn threshold_text(&self) -> String {
        crate::snapshot::writer::rfc3339_from_unix(self.threshold.max(0) as u64)
    }

    /// OLD's uids under the request's filters.
    fn uids(&self) -> impl Iterator<Item = &String> {
        self.objects.keys()
    }

    /// A capture of `uid` made of OLD's data and `v1` (the record just read, or OLD's own),
    /// when OLD has the object at `path` with an equal v1 record.
    pub(crate) fn reusable(&self, uid: &str, path: &str, v1: &Value) -> Option<ObjectCapture> {
        let old = self.objects.get(uid)?;
        let hash = jsonx::sha256_hex(&canonical_v1(v1));
        if old.path != path || old.v1_hash.as_deref() != Some(hash.as_str()) {
            return None;
        }
        Some(old.capture(uid, None))
    }

    /// The same for an object v1 cannot read: OLD read it through plone.restapi too, and its
    /// serialization then was equal to `restapi`.
    pub(crate) fn reusable_restapi(
        &self,
        uid: &str,
        path: &str,
        restapi: &Value,
    ) -> Option<ObjectCapture> {
        let old = self.objects.get(uid)?;
        if old.path != path || old.v1.is_some() || old.restapi().as_ref() != Some(restapi) {
            return None;
        }
        Some(old.capture(uid, None))
    }

    /// Links OLD's files of `blobs` into `out`.
    pub(crate) fn link_blobs(&self, out: &Path, blobs: &[BlobRef]) -> Result<()> {
        for b in blobs {
            let from = crate::snapshot::blobs::blob_path(&self.dir, &b.sha256);
            let to = crate::snapshot::blobs::blob_path(out, &b.sha256);
            crate::snapshot::blobs::link_blob(&from, &to)?;
        }
        Ok(())
    }
}

impl OldObject {
    /// `(content, history)` of the plone.restapi stream.
    fn rest(&self) -> (Option<Value>, Option<Value>) {
        let Some(mut rest) = self.rest.as_deref().and_then(unsqueeze) else {
            return (None, None);
        };
        let mut take = |k: &str| match rest.get_mut(k).map(Value::take) {
            Some(Value::Null) | None => None,
            some => some,
        };
        (take("content"), take("history"))
    }

    fn restapi(&self) -> Option<Value> {
        self.rest().0
    }

    /// The v1 record.
    fn v1(&self) -> Option<Value> {
        self.v1.as_deref().and_then(unsqueeze)
    }

    fn capture(&self, uid: &str, v1: Option<Value>) -> ObjectCapture {
        let (restapi, history) = self.rest();
        ObjectCapture {
            uid: uid.to_string(),
            portal_type: self.portal_type.clone(),
            path: self.path.clone(),
            v1,
            v1_error: None,
            restapi,
            history,
            sharing: None,
            blobs: self.blobs.clone(),
        }
    }
}

/// The canonical text of a v1 record as the raw stream stores it, `_runtime` left out (single
/// reads carry the time the server took).
fn canonical_v1(v1: &Value) -> Vec<u8> {
    match v1 {
        Value::Object(m) if m.contains_key("_runtime") => {
            let mut m = m.clone();
            m.remove("_runtime");
            jsonx::canonical(&Value::Object(m))
        }
        other => jsonx::canonical(other),
    }
}

fn check_compatible(
    dir: &Path,
    m: &Manifest,
    opts: &ExtractOptions,
    source: &SourceInfo,
) -> Result<()> {
    let refuse = |what: String| {
        Err(Error::Usage(format!(
            "cannot extract --since {}: {what}; run a full extract instead",
            dir.display()
        )))
    };
    if m.source.kind != "senaite" {
        return refuse(format!("it is a {:?} snapshot", m.source.kind));
    }
    if m.source.site_url.trim_end_matches('/') != opts.site_url {
        return refuse(format!(
            "it was extracted from {}, not {}",
            m.source.site_url, opts.site_url
        ));
    }
    let want = opts.request_info();
    if m.request != want {
        let old = serde_json::to_value(&m.request).unwrap_or_default();
        let new = serde_json::to_value(&want).unwrap_or_default();
        let diffs: Vec<String> = match (old, new) {
            (Value::Object(o), Value::Object(n)) => n
                .iter()
                .filter(|(k, v)| o.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k} {} (OLD: {})", v, o.get(k).unwrap_or(&Value::Null)))
                .collect(),
            _ => vec!["the request".into()],
        };
        return refuse(format!(
            "its request differs: {} (give the same filters and modes)",
            diffs.join(", ")
        ));
    }
    if m.source.jsonapi_version != source.jsonapi_version || m.source.versions != source.versions {
        return refuse(format!(
            "the source's versions changed since (OLD: senaite.jsonapi {:?}, {:?}; now {:?}, {:?})",
            m.source.jsonapi_version, m.source.versions, source.jsonapi_version, source.versions
        ));
    }
    let tool = env!("CARGO_PKG_VERSION");
    if m.tool.version != tool {
        return refuse(format!(
            "it was written by senaite-sync {}, this is {tool}",
            m.tool.version
        ));
    }
    let has_objects = m.counts.values().any(|n| *n > 0);
    for stream in ["jsonapi", "restapi"] {
        let rel = crate::snapshot::layout::raw_rel(stream);
        if has_objects && stream == "jsonapi" && m.file(&rel).is_none() {
            return refuse(format!(
                "it lacks {rel} (a transformed snapshot?): records cannot be reused"
            ));
        }
    }
    Ok(())
}

/// Reads OLD's objects: identity from `objects`, records from the raw streams, files from
/// `blobs`.
fn read_objects(snap: &Snapshot) -> Result<HashMap<String, OldObject>> {
    let mut objects: HashMap<String, OldObject> = HashMap::new();
    for row in TableReader::read_all(&snap.dir, &OBJECTS)? {
        let text = |i: usize| row[i].as_str().unwrap_or("").to_string();
        let modified = row[8].as_str().and_then(unix_seconds);
        objects.insert(
            text(0),
            OldObject {
                portal_type: text(1),
                path: text(2),
                modified,
                v1_hash: None,
                v1: None,
                rest: None,
                blobs: Vec::new(),
            },
        );
    }
    let jsonapi = snap.raw_path("jsonapi");
    if jsonapi.is_file() {
        for line in JsonlReader::open(&jsonapi)? {
            let v1 = line?;
            let uid = v1.get("uid").and_then(Value::as_str).unwrap_or("");
            if let Some(o) = objects.get_mut(uid) {
                let text = canonical_v1(&v1);
                o.v1_hash = Some(jsonx::sha256_hex(&text));
                o.v1 = Some(squeeze(&text));
            }
        }
    }
    let restapi = snap.raw_path("restapi");
    if restapi.is_file() {
        for line in JsonlReader::open(&restapi)? {
            let line = line?;
            let uid = line.get("uid").and_then(Value::as_str).unwrap_or("");
            if let Some(o) = objects.get_mut(uid) {
                let rest = serde_json::json!({"content": line.get("content"),
                                              "history": line.get("history")});
                o.rest = Some(squeeze(&jsonx::canonical(&rest)));
            }
        }
    }
    for row in TableReader::read_all(&snap.dir, &BLOBS)? {
        let uid = row[0].as_str().unwrap_or("");
        if let Some(o) = objects.get_mut(uid) {
            o.blobs.push(BlobRef {
                field: row[1].as_str().unwrap_or("").to_string(),
                filename: row[2].as_str().map(str::to_string),
                content_type: row[3].as_str().map(str::to_string),
                size: row[4].as_int().unwrap_or(0).max(0) as u64,
                sha256: row[5].as_str().unwrap_or("").to_string(),
            });
        }
    }
    Ok(objects)
}

/// How the changes of one portal type are found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum TypeMode {
    /// `modified_since` works: these uids changed (and the type holds `count` objects).
    Filter {
        changed: BTreeSet<String>,
        count: u64,
    },
    /// Complete pages compared with OLD.
    Rescan,
}

/// The staged plan of an incremental extract.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(crate) struct Plan {
    /// Mode per portal type.
    pub modes: BTreeMap<String, TypeMode>,
}

/// Page size of the catalog-only listings of changed objects.
const CHANGED_PAGE: u64 = 1000;
/// A `modified_since` value no object can reach: a type whose search still finds something
/// does not honour the filter.
const FAR_FUTURE: &str = "2999-01-01T00:00:00Z";

/// Decides, per selected type, how its changes are found.
///
/// # Errors
/// Client errors other than a type's search failing.
pub(crate) fn plan(
    client: &SenaiteClient,
    old: &OldSnapshot,
    types: &BTreeSet<String>,
) -> Result<Plan> {
    let mut plan = Plan::default();
    let since = old.threshold_text();
    for t in types {
        let without_v1 = old
            .objects
            .values()
            .any(|o| &o.portal_type == t && o.v1.is_none());
        let mode = if without_v1 {
            TypeMode::Rescan
        } else {
            match filtered(client, t, FAR_FUTURE, 1)? {
                Some((0, _)) => match changed_uids(client, old, t, &since)? {
                    Some(mode) => mode,
                    None => TypeMode::Rescan,
                },
                _ => TypeMode::Rescan,
            }
        };
        plan.modes.insert(t.clone(), mode);
    }
    let filter = plan
        .modes
        .values()
        .filter(|m| matches!(m, TypeMode::Filter { .. }))
        .count();
    info!(
        types = plan.modes.len(),
        filtered = filter,
        since = %since,
        "Planned the incremental extract."
    );
    Ok(plan)
}

/// `(count, uids)` of a catalog-only search of `portal_type` modified since `since`; `None`
/// when the search fails for the type.
fn filtered(
    client: &SenaiteClient,
    portal_type: &str,
    since: &str,
    limit: u64,
) -> Result<Option<(u64, Vec<String>)>> {
    let query = vec![
        ("portal_type", portal_type.to_string()),
        ("modified_since", since.to_string()),
        ("sort_on", "modified".to_string()),
        ("sort_order", "descending".to_string()),
    ];
    match crate::source::paging::read_page(client, "search", &query, 0, limit) {
        Ok(p) => Ok(Some((p.count, uids_of(&p.items)))),
        Err(e) if is_type_failure(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_type_failure(e: &Error) -> bool {
    matches!(e, Error::Api { .. })
        || matches!(e, Error::HttpStatus { status, .. } if (400..=500).contains(status) && ![401, 408, 429].contains(status))
}

fn uids_of(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i.get("uid").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The uids of `portal_type` modified since `since`, read until they add up; plus the type's
/// whole count (what a full extract's pages announce).
fn changed_uids(
    client: &SenaiteClient,
    old: &OldSnapshot,
    t: &str,
    since: &str,
) -> Result<Option<TypeMode>> {
    let Some((count, _)) = filtered(client, t, "1970-01-02T00:00:00Z", 1)? else {
        return Ok(None);
    };
    let Some(mut stale) = metadata_changes(client, old, t, count)? else {
        return Ok(None);
    };
    for _ in 0..3 {
        let query = vec![
            ("portal_type", t.to_string()),
            ("modified_since", since.to_string()),
            ("sort_on", "modified".to_string()),
            ("sort_order", "descending".to_string()),
        ];
        let first =
            match crate::source::paging::read_page(client, "search", &query, 0, CHANGED_PAGE) {
                Ok(p) => p,
                Err(e) if is_type_failure(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
        let mut changed: BTreeSet<String> = uids_of(&first.items).into_iter().collect();
        let mut b = CHANGED_PAGE;
        while b < first.count {
            let p = crate::source::paging::read_page(client, "search", &query, b, CHANGED_PAGE)?;
            changed.extend(uids_of(&p.items));
            b += CHANGED_PAGE;
        }
        if changed.len() as u64 >= first.count {
            changed.append(&mut stale);
            return Ok(Some(TypeMode::Filter { changed, count }));
        }
    }
    Ok(None)
}

/// The uids of `portal_type` whose catalog metadata differs from OLD's record: values the
/// catalog recomputes when an object is reindexed without a modification date (a sample's
/// progress when one of its analyses is submitted, roles allowed to view it after a local role
/// change) are in its complete record too. `None` when the type cannot be listed.
fn metadata_changes(
    client: &SenaiteClient,
    old: &OldSnapshot,
    t: &str,
    count: u64,
) -> Result<Option<BTreeSet<String>>> {
    let query = vec![
        ("portal_type", t.to_string()),
        ("sort_on", "created".to_string()),
        ("sort_order", "ascending".to_string()),
    ];
    let mut stale = BTreeSet::new();
    let mut b = 0;
    while b < count.max(1) {
        let page = match crate::source::paging::read_page(client, "search", &query, b, CHANGED_PAGE)
        {
            Ok(p) => p,
            Err(e) if is_type_failure(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        for item in &page.items {
            let Some(uid) = item.get("uid").and_then(Value::as_str) else {
                continue;
            };
            let same = old
                .objects
                .get(uid)
                .and_then(OldObject::v1)
                .is_some_and(|v1| {
                    item.as_object().is_some_and(|m| {
                        m.iter()
                            .filter(|(k, _)| {
                                !crate::source::MAPPED_CATALOG_KEYS.contains(&k.as_str())
                            })
                            .all(|(k, v)| v1.get(k) == Some(v))
                    })
                });
            if !same {
                stale.insert(uid.to_string());
            }
        }
        b += CHANGED_PAGE;
    }
    Ok(Some(stale))
}

/// Objects of filtered types that OLD serves as they are, and the rest (to read one by one).
pub(crate) fn split_filtered<'a>(
    plan: &Plan,
    old: &OldSnapshot,
    selected: &[&'a Listed],
) -> (Vec<&'a Listed>, Vec<&'a Listed>) {
    let (mut reuse, mut read) = (Vec::new(), Vec::new());
    for o in selected {
        let Some(TypeMode::Filter { changed, .. }) = plan.modes.get(&o.portal_type) else {
            continue;
        };
        let unchanged = !changed.contains(&o.uid)
            && old.objects.get(&o.uid).is_some_and(|p| {
                p.path == o.path
                    && p.portal_type == o.portal_type
                    && p.v1_hash.is_some()
                    && p.modified.is_some_and(|m| m < old.threshold)
            });
        if unchanged {
            reuse.push(*o);
        } else {
            read.push(*o);
        }
    }
    (reuse, read)
}

/// The staged line of an object OLD serves as it is (its v1 record is OLD's).
pub(crate) fn reused_capture(old: &OldSnapshot, o: &Listed) -> Result<ObjectCapture> {
    let prev = old.objects.get(&o.uid).ok_or_else(|| Error::BadResponse {
        url: o.path.clone(),
        message: format!("{} is not in the base snapshot", o.uid),
    })?;
    let v1 = match &prev.v1 {
        Some(_) => Some(prev.v1().ok_or_else(|| {
            Error::snapshot(
                old.dir.join(crate::snapshot::layout::raw_rel("jsonapi")),
                format!("the record of {} cannot be read back", o.uid),
            )
        })?),
        None => None,
    };
    Ok(prev.capture(&o.uid, v1))
}

/// Whether the request reads the local roles of `uid`.
pub(crate) fn wants_sharing(
    opts: &ExtractOptions,
    containers: &BTreeSet<String>,
    uid: &str,
) -> bool {
    match opts.local_roles {
        LocalRolesMode::All => true,
        LocalRolesMode::Containers => containers.contains(uid),
        LocalRolesMode::None => false,
    }
}

/// What an incremental extract took from OLD and what it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinceCounts {
    /// Objects whose records came from OLD (wholesale or after an equal re-read).
    pub reused: u64,
    /// Of those, objects whose complete record was read again and found equal.
    pub rechecked: u64,
    /// Objects read completely (new, changed, moved, or not provably unchanged).
    pub refetched: u64,
    /// Objects of OLD the source no longer lists.
    pub deleted: u64,
}

/// Counts the staged markers and objects; `deleted` from OLD's uids missing in the new snapshot.
///
/// # Errors
/// When a unit cannot be read.
pub(crate) fn count(staging: &Staging, old: &OldSnapshot) -> Result<SinceCounts> {
    let mut objects: BTreeSet<String> = BTreeSet::new();
    let mut how: BTreeMap<String, String> = BTreeMap::new();
    for unit in staging.units_under("units")? {
        for (k, json) in staging.read_unit_lines(&unit)? {
            if k == SINCE_KEY {
                let v: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                if let (Some(u), Some(h)) = (v["uid"].as_str(), v["how"].as_str()) {
                    how.insert(u.to_string(), h.to_string());
                }
            } else if !k.starts_with('!') {
                objects.insert(k);
            }
        }
    }
    let mut c = SinceCounts::default();
    for uid in &objects {
        match how.get(uid).map(String::as_str) {
            Some("reused") => c.reused += 1,
            Some("rechecked") => {
                c.reused += 1;
                c.rechecked += 1;
            }
            _ => c.refetched += 1,
        }
    }
    // The request equals OLD's, so an object of OLD that is not in the new snapshot is gone
    // from the source (or was listed and vanished before it could be read: noted as such).
    c.deleted = old.uids().filter(|u| !objects.contains(*u)).count() as u64;
    Ok(c)
}

/// A staged marker line.
pub(crate) fn marker(uid: &str, how: &str) -> (String, String) {
    (
        SINCE_KEY.to_string(),
        serde_json::json!({"uid": uid, "how": how}).to_string(),
    )
}

/// Seconds since the epoch of an ISO 8601 / RFC 3339 time (`2026-11-26T22:22:27+00:00`,
/// `...Z`, fractions ignored); `None` if it is not one.
pub fn unix_seconds(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        std::str::from_utf8(b.get(r)?).ok()?.parse::<i64>().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        rest = &rest[1 + digits..];
    }
    let offset = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let v = |a: u8, b: u8| i64::from(a - b'0') * 10 + i64::from(b - b'0');
            let o = v(*h1, *h2) * 3600 + v(*m1, *m2) * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    // Howard Hinnant's days-from-civil.
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_with_offsets() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2026-11-18T11:06:40Z"), Some(1_795_000_000));
        assert_eq!(
            unix_seconds("2026-11-18T13:06:40+02:00"),
            Some(1_795_000_000)
        );
        assert_eq!(
            unix_seconds("2026-11-18T11:06:40.123456+00:00"),
            Some(1_795_000_000)
        );
        assert_eq!(unix_seconds("2026-11-18 11:06"), None);
        assert_eq!(unix_seconds("garbage-garbage-x"), None);
    }

    #[test]
    fn runtime_is_not_part_of_the_compared_record() {
        let a = serde_json::json!({"uid": "u", "_runtime": 0.1, "x": 1});
        let b = serde_json::json!({"x": 1, "uid": "u"});
        assert_eq!(canonical_v1(&a), canonical_v1(&b));
    }
}
