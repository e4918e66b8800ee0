//! The streaming passes of `review` over a snapshot's tables. The source's objects table is read
//! twice, batch by batch: the first pass builds a compact index (uid -> portal type as a 128-bit
//! key, path hashes) and the per-type counters; the blobs table is read once; the second pass
//! parses `fields` for field statistics, example records, references whose target is nowhere and
//! objects whose parent is missing (resolved against the destination's index with `--against`,
//! see [`super::index`]). Nothing here keeps a record beyond the bounded example and warning
//! lists. Offline; never touches the network.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::load::records::{references, rewrite_path};
use crate::review::LISTED;
use crate::review::examples::{example_fields, has_value};
use crate::review::index::{Cols, DestScan, UidIndex, path_hash};
use crate::snapshot::table::{BLOBS, OBJECTS, TableReader};
use crate::snapshot::{Snapshot, manifest_site_path};

/// A bounded list: the first entries (in table order) and how many there were in all.
#[derive(Debug, Clone, Serialize)]
pub struct Capped<T> {
    /// Every entry counted.
    pub total: u64,
    /// The first ones (at most [`LISTED`]).
    pub items: Vec<T>,
}

impl<T> Default for Capped<T> {
    fn default() -> Self {
        Capped {
            total: 0,
            items: Vec::new(),
        }
    }
}

impl<T> Capped<T> {
    pub(crate) fn push(&mut self, item: T) {
        self.total += 1;
        if self.items.len() < LISTED {
            self.items.push(item);
        }
    }
}

/// One field of an example record, rendered as short text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExampleField {
    /// Field name.
    pub name: String,
    /// Its value as text (references as the target's path, long values cut).
    pub value: String,
}

/// An example record of a portal type.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Example {
    /// UID.
    pub uid: String,
    /// Path.
    pub path: String,
    /// Title.
    pub title: String,
    /// Review state.
    pub review_state: String,
    /// Creation date.
    pub created: String,
    /// A handful of fields with a value.
    pub fields: Vec<ExampleField>,
}

/// Objects of one portal type.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TypeSummary {
    /// Objects.
    pub count: u64,
    /// Objects per review state (`-` for none).
    pub states: BTreeMap<String, u64>,
    /// Distinct field names seen in the objects' `fields`.
    pub fields: u64,
    /// The first few records (in uid order).
    pub examples: Vec<Example>,
}

/// A reference to an object the snapshot does not hold.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DanglingRef {
    /// Referencing object.
    pub uid: String,
    /// Its type.
    pub portal_type: String,
    /// Its path.
    pub path: String,
    /// The field holding the reference.
    pub field: String,
    /// The missing target.
    pub target: String,
    /// With `--against`: whether the destination snapshot has the target.
    pub in_destination: Option<bool>,
}

/// An object whose parent is not in the snapshot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Orphan {
    /// The object.
    pub uid: String,
    /// Its type.
    pub portal_type: String,
    /// Its path.
    pub path: String,
    /// The missing parent's path.
    pub parent_path: String,
    /// With `--against`: whether the destination snapshot has the parent.
    pub in_destination: Option<bool>,
}

/// Files of one size class.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SizeBucket {
    /// Human label, e.g. `1-10 KiB`.
    pub label: String,
    /// Smallest size in the class (bytes).
    pub min: u64,
    /// File field values in the class.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One of the largest files.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BlobEntry {
    /// Owning object.
    pub uid: String,
    /// Its type.
    pub portal_type: String,
    /// Its path.
    pub path: String,
    /// File field.
    pub field: String,
    /// File name.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
}

/// Files (file field values) of the snapshot.
#[derive(Debug, Clone, Serialize, Default)]
pub struct BlobSummary {
    /// File field values.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Distinct contents stored (manifest).
    pub stored: u64,
    /// Bytes stored (manifest).
    pub stored_bytes: u64,
    /// Files per owning portal type: (count, bytes).
    pub by_type: BTreeMap<String, (u64, u64)>,
    /// Size histogram (every class, empty ones included).
    pub histogram: Vec<SizeBucket>,
    /// The largest files, largest first.
    pub largest: Vec<BlobEntry>,
}

/// Distinct keys a [`Grouped`] tells apart; occurrences of further keys are only summed.
const GROUP_KEYS: usize = 100_000;
/// Keys a [`Grouped`] lists, most frequent first.
const GROUP_TOP: usize = 20;

/// One key of a [`Grouped`] count.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupCount {
    /// The key: a missing uid or path, or `portal_type.field`.
    pub key: String,
    /// Occurrences.
    pub count: u64,
    /// With `--against`, for missing targets and parents: whether the destination has it.
    pub in_destination: Option<bool>,
}

/// Occurrences per key (which missing target is referenced how often, which fields hold
/// dangling references), bounded to 100,000 distinct keys (`GROUP_KEYS`).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Grouped {
    /// The most frequent keys, most frequent first (ties by key).
    pub top: Vec<GroupCount>,
    /// Distinct keys counted.
    pub distinct: u64,
    /// Occurrences of keys beyond the bound, not told apart.
    pub others: u64,
    #[serde(skip)]
    counts: HashMap<String, u64>,
}

impl Grouped {
    pub(crate) fn add(&mut self, key: &str) {
        if let Some(n) = self.counts.get_mut(key) {
            *n += 1;
        } else if self.counts.len() < GROUP_KEYS {
            self.counts.insert(key.to_string(), 1);
        } else {
            self.others += 1;
        }
    }

    /// Keeps the top keys and drops the rest of the counts.
    fn finish(&mut self, in_destination: impl Fn(&str) -> Option<bool>) {
        let mut all: Vec<(String, u64)> = std::mem::take(&mut self.counts).into_iter().collect();
        self.distinct = all.len() as u64;
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(GROUP_TOP);
        self.top = all
            .into_iter()
            .map(|(key, count)| GroupCount {
                in_destination: in_destination(&key),
                key,
                count,
            })
            .collect();
    }
}

/// How many of the largest files are listed.
const LARGEST: usize = 10;

/// Presence statistics of one field within one portal type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FieldStat {
    /// Objects whose fields have the key.
    pub objects: u64,
    /// Objects where its value is not empty (`null`, `""`, `[]`, `{}`).
    pub with_value: u64,
}

/// What the passes over the reviewed snapshot found.
#[derive(Debug)]
pub(crate) struct SourceScan {
    pub objects: u64,
    pub types: BTreeMap<String, TypeSummary>,
    pub fields: BTreeMap<String, BTreeMap<String, FieldStat>>,
    pub months: BTreeMap<String, u64>,
    pub blobs: BlobSummary,
    pub dangling: Capped<DanglingRef>,
    pub dangling_fields: Grouped,
    pub dangling_targets: Grouped,
    pub orphans: Capped<Orphan>,
    pub orphan_parents: Grouped,
    pub index: UidIndex,
}

/// Scans the reviewed snapshot (two passes over objects, one over blobs).
pub(crate) fn scan_source(
    snap: &Snapshot,
    examples: usize,
    dest: Option<&DestScan>,
) -> Result<SourceScan> {
    let mut out = SourceScan {
        objects: 0,
        types: BTreeMap::new(),
        fields: BTreeMap::new(),
        months: BTreeMap::new(),
        blobs: BlobSummary::default(),
        dangling: Capped::default(),
        dangling_fields: Grouped::default(),
        dangling_targets: Grouped::default(),
        orphans: Capped::default(),
        orphan_parents: Grouped::default(),
        index: UidIndex::default(),
    };
    let paths = first_pass(snap, &mut out)?;
    scan_blobs(snap, &mut out)?;
    second_pass(snap, &mut out, &paths, examples, dest)?;
    let site_path = manifest_site_path(&snap.manifest);
    out.dangling_fields.finish(|_| None);
    out.dangling_targets
        .finish(|t| dest.map(|d| d.index.contains(t)));
    out.orphan_parents
        .finish(|p| dest.map(|d| d.has_path(&rewrite_path(p, &site_path, &d.site_path))));
    Ok(out)
}

fn first_pass(snap: &Snapshot, out: &mut SourceScan) -> Result<HashSet<u64>> {
    let c = Cols::objects();
    let mut paths = HashSet::new();
    for row in TableReader::open(&snap.dir, &OBJECTS)? {
        let row = row?;
        let s = |i: usize| row[i].as_str().unwrap_or("");
        let pt = s(c.portal_type);
        out.objects += 1;
        out.index.insert(s(c.uid), pt);
        paths.insert(path_hash(s(c.path)));
        let t = out.types.entry(pt.to_string()).or_default();
        t.count += 1;
        let state = row[c.review_state].as_str().unwrap_or("-");
        *t.states.entry(state.to_string()).or_insert(0) += 1;
        if pt == "AnalysisRequest" {
            *out.months.entry(month_of(s(c.created))).or_insert(0) += 1;
        }
    }
    Ok(paths)
}

/// `YYYY-MM` of an ISO 8601 date, or `unknown`.
fn month_of(created: &str) -> String {
    let b = created.as_bytes();
    let ok = b.len() >= 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit);
    match created.get(..7) {
        Some(m) if ok => m.to_string(),
        _ => "unknown".to_string(),
    }
}

/// Months with samples spread over a continuous axis: every month between the first and the
/// last (0 where none), or every year when that would be more than ten years of months.
pub(crate) fn periods(months: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let parse = |m: &str| -> Option<(i32, u32)> {
        Some((m.get(..4)?.parse().ok()?, m.get(5..7)?.parse().ok()?))
    };
    let dated: Vec<((i32, u32), u64)> = months
        .iter()
        .filter_map(|(m, n)| parse(m).map(|k| (k, *n)))
        .collect();
    let mut out = BTreeMap::new();
    if let (Some(first), Some(last)) = (dated.first(), dated.last()) {
        let ((y0, m0), (y1, m1)) = (first.0, last.0);
        let span = (y1 - y0) * 12 + m1 as i32 - m0 as i32;
        if span > 120 {
            for y in y0..=y1 {
                out.insert(format!("{y:04}"), 0);
            }
            for ((y, _), n) in &dated {
                *out.entry(format!("{y:04}")).or_insert(0) += n;
            }
        } else {
            let (mut y, mut m) = (y0, m0);
            while (y, m) <= (y1, m1) {
                out.insert(format!("{y:04}-{m:02}"), 0);
                (y, m) = if m >= 12 { (y + 1, 1) } else { (y, m + 1) };
            }
            for ((y, m), n) in &dated {
                *out.entry(format!("{y:04}-{m:02}")).or_insert(0) += n;
            }
        }
    }
    if let Some(n) = months.get("unknown") {
        out.insert("unknown".to_string(), *n);
    }
    out
}

/// Size classes: powers of ten from 1 KiB.
const SIZE_CLASSES: &[(u64, &str)] = &[
    (0, "< 1 KiB"),
    (1 << 10, "1-10 KiB"),
    (10 << 10, "10-100 KiB"),
    (100 << 10, "100 KiB-1 MiB"),
    (1 << 20, "1-10 MiB"),
    (10 << 20, "10-100 MiB"),
    (100 << 20, "100 MiB-1 GiB"),
    (1 << 30, ">= 1 GiB"),
];

fn scan_blobs(snap: &Snapshot, out: &mut SourceScan) -> Result<()> {
    let col = |name: &str| BLOBS.col(name).unwrap_or(0);
    let (c_uid, c_field, c_name, c_type, c_size) = (
        col("uid"),
        col("field"),
        col("filename"),
        col("content_type"),
        col("size"),
    );
    let b = &mut out.blobs;
    b.stored = snap.manifest.blobs.count;
    b.stored_bytes = snap.manifest.blobs.bytes;
    b.histogram = SIZE_CLASSES
        .iter()
        .map(|(min, label)| SizeBucket {
            label: (*label).to_string(),
            min: *min,
            count: 0,
            bytes: 0,
        })
        .collect();
    for row in TableReader::open(&snap.dir, &BLOBS)? {
        let row = row?;
        let s = |i: usize| row[i].as_str().unwrap_or("").to_string();
        let size = row[c_size].as_int().unwrap_or(0).max(0) as u64;
        let uid = s(c_uid);
        let pt = out.index.type_of(&uid).unwrap_or("(no object)").to_string();
        b.files += 1;
        b.bytes += size;
        let t = b.by_type.entry(pt.clone()).or_insert((0, 0));
        t.0 += 1;
        t.1 += size;
        let class = SIZE_CLASSES.iter().rposition(|(min, _)| size >= *min);
        if let Some(bucket) = class.and_then(|i| b.histogram.get_mut(i)) {
            bucket.count += 1;
            bucket.bytes += size;
        }
        let entry = BlobEntry {
            uid,
            portal_type: pt,
            path: String::new(),
            field: s(c_field),
            filename: s(c_name),
            content_type: s(c_type),
            size,
        };
        keep_largest(&mut b.largest, entry);
    }
    Ok(())
}

/// Keeps the [`LARGEST`] biggest entries, largest first (ties by uid and field: deterministic).
fn keep_largest(list: &mut Vec<BlobEntry>, entry: BlobEntry) {
    let key = |e: &BlobEntry| (std::cmp::Reverse(e.size), e.uid.clone(), e.field.clone());
    let pos = list.partition_point(|e| key(e) < key(&entry));
    if pos < LARGEST {
        list.insert(pos, entry);
        list.truncate(LARGEST);
    }
}

fn second_pass(
    snap: &Snapshot,
    out: &mut SourceScan,
    paths: &HashSet<u64>,
    examples: usize,
    dest: Option<&DestScan>,
) -> Result<()> {
    let c = Cols::objects();
    let site_path = manifest_site_path(&snap.manifest);
    let largest: HashSet<String> = out.blobs.largest.iter().map(|b| b.uid.clone()).collect();
    for row in TableReader::open(&snap.dir, &OBJECTS)? {
        let row = row?;
        let s = |i: usize| row[i].as_str().unwrap_or("");
        let (uid, pt, path) = (s(c.uid), s(c.portal_type), s(c.path));
        let fields: Value = crate::jsonx::parse_lenient(s(c.fields).as_bytes()).unwrap_or_default();
        let map = fields.as_object();
        count_fields(out.fields.entry(pt.to_string()).or_default(), map);
        if let Some(t) = out.types.get_mut(pt)
            && t.examples.len() < examples
        {
            t.examples.push(Example {
                uid: uid.to_string(),
                path: path.to_string(),
                title: s(c.title).to_string(),
                review_state: s(c.review_state).to_string(),
                created: s(c.created).to_string(),
                fields: example_fields(map),
            });
        }
        for (field, target) in dangling_targets(uid, fields, &out.index) {
            out.dangling_fields.add(&format!("{pt}.{field}"));
            out.dangling_targets.add(&target);
            out.dangling.push(DanglingRef {
                uid: uid.to_string(),
                portal_type: pt.to_string(),
                path: path.to_string(),
                field,
                in_destination: dest.map(|d| d.index.contains(&target)),
                target,
            });
        }
        let parent = s(c.parent_path);
        if !parent.is_empty() && parent != site_path && !paths.contains(&path_hash(parent)) {
            out.orphan_parents.add(parent);
            out.orphans.push(Orphan {
                uid: uid.to_string(),
                portal_type: pt.to_string(),
                path: path.to_string(),
                parent_path: parent.to_string(),
                in_destination: dest
                    .map(|d| d.has_path(&rewrite_path(parent, &site_path, &d.site_path))),
            });
        }
        if largest.contains(uid) {
            for b in out.blobs.largest.iter_mut().filter(|b| b.uid == uid) {
                b.path = path.to_string();
            }
        }
    }
    for (pt, t) in out.types.iter_mut() {
        t.fields = out.fields.get(pt).map_or(0, |f| f.len() as u64);
    }
    Ok(())
}

fn count_fields(
    stats: &mut BTreeMap<String, FieldStat>,
    map: Option<&serde_json::Map<String, Value>>,
) {
    for (k, v) in map.into_iter().flatten() {
        let st = stats.entry(k.clone()).or_default();
        st.objects += 1;
        st.with_value += u64::from(has_value(v));
    }
}

/// The references of a record whose target is not in the index, as `(field, target)` in field
/// order. References are found with the rule `load` uses ([`references`]); only when one
/// dangles is each field looked at on its own to name it (the record is consumed, not copied).
fn dangling_targets(uid: &str, fields: Value, index: &UidIndex) -> Vec<(String, String)> {
    let mut missing: Vec<String> = references(uid, &fields)
        .into_iter()
        .filter(|t| !index.contains(t))
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let Value::Object(map) = fields else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let one = Value::Object(serde_json::Map::from_iter([(k, v)]));
        let found = references(uid, &one);
        let Some((k, _)) = one.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        for t in found {
            if let Some(i) = missing.iter().position(|m| *m == t) {
                out.push((k.clone(), missing.swap_remove(i)));
            }
        }
        if missing.is_empty() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_fill_gaps_and_fold_into_years_when_long() {
        let m = BTreeMap::from([
            ("2025-11".to_string(), 2),
            ("2026-02".to_string(), 1),
            ("unknown".to_string(), 4),
        ]);
        let p = periods(&m);
        let keys: Vec<&str> = p.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["2025-11", "2025-12", "2026-01", "2026-02", "unknown"]
        );
        assert_eq!(p["2025-12"], 0);
        assert_eq!(p["unknown"], 4);
        let long = BTreeMap::from([("1990-01".to_string(), 1), ("2026-03".to_string(), 2)]);
        let p = periods(&long);
        assert_eq!(p.len(), 37);
        assert_eq!((p["1990"], p["2000"], p["2026"]), (1, 0, 2));
    }

    #[test]
    fn month_of_rejects_what_is_not_a_date() {
        assert_eq!(month_of("2026-11-26T15:25:10+00:00"), "2026-11");
        assert_eq!(month_of("<b>2026"), "unknown");
        assert_eq!(month_of(""), "unknown");
    }

    #[test]
    fn largest_keeps_the_top_ten_in_order() {
        let mut list = Vec::new();
        for i in 0..25u64 {
            let e = BlobEntry {
                uid: format!("{:032x}", i % 7),
                portal_type: "Attachment".into(),
                path: String::new(),
                field: "f".into(),
                filename: String::new(),
                content_type: String::new(),
                size: (i * 37) % 11,
            };
            keep_largest(&mut list, e);
        }
        assert_eq!(list.len(), LARGEST);
        assert!(list.windows(2).all(|w| w[0].size >= w[1].size));
        assert_eq!(list[0].size, 10);
    }
}
