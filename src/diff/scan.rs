//! The first pass of `diff`: a merge join of both snapshots by uid over the `objects` table
//! (without its `fields` and `sources` columns) and the four per-object tables, every file
//! streamed in uid order. It compares `content_hash` and the other columns byte for byte and
//! each object's rows of the per-object tables as groups, and keeps only what differs (an
//! [`Event`] per created, deleted or changed object, with the row positions the second pass
//! reads). Equal objects are counted and forgotten, so memory follows the number of changes,
//! not the size of the snapshots.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, Int64Array, StringArray};

use crate::error::Result;
use crate::snapshot::digest::OBJECT_DIGESTS;
use crate::snapshot::table::{OBJECTS, TableDef};

use crate::snapshot::stream::{BatchStream, Cursor, ReadSpec};

/// The per-object tables, in the order of [`Event::side_old`] and [`Event::side_new`].
pub(crate) const SIDE_TABLES: [&TableDef; 4] = crate::snapshot::digest::PER_OBJECT_TABLES;

/// `objects` columns read by the scan, `uid` first: the ones a record hash covers.
const SCAN_COLUMNS: &[&str] = crate::snapshot::digest::HASHED_OBJECT_COLUMNS;
const COL_PORTAL_TYPE: usize = 1;
const COL_PATH: usize = 2;
const COL_CONTENT_HASH: usize = 10;

/// How an object differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// Only in NEW.
    Created,
    /// Only in OLD.
    Vanished,
    /// In both, with some row different.
    Changed,
}

/// What the scan knows of a deleted object (its rows are not read again).
#[derive(Debug, Clone, Default)]
pub(crate) struct OldObject {
    pub portal_type: String,
    pub path: String,
    pub content_hash: String,
}

/// An object that differs, with where its rows are.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub uid: String,
    pub kind: EventKind,
    /// Row index in OLD's `objects`.
    pub old_row: Option<u64>,
    /// Row index in NEW's `objects`.
    pub new_row: Option<u64>,
    /// Whether `content_hash` differs (the fields must be compared).
    pub fields_differ: bool,
    /// Row ranges in OLD's per-object tables ([`SIDE_TABLES`] order).
    pub side_old: [Range<u64>; 4],
    /// Row ranges in NEW's per-object tables.
    pub side_new: [Range<u64>; 4],
    /// Bit `t` set: the rows of [`SIDE_TABLES`]`[t]` differ.
    pub side_differ: u8,
    /// For vanished objects: what OLD said.
    pub old: Option<OldObject>,
}

impl Event {
    /// An event whose fields must be compared (`fields_differ`), not yet knowing the deleted
    /// object's details.
    fn new(
        uid: &str,
        kind: EventKind,
        (old_row, new_row): (Option<u64>, Option<u64>),
        (side_old, side_new): (&[Range<u64>; 4], &[Range<u64>; 4]),
        side_differ: u8,
    ) -> Event {
        Event {
            uid: uid.to_string(),
            kind,
            old_row,
            new_row,
            fields_differ: true,
            side_old: side_old.clone(),
            side_new: side_new.clone(),
            side_differ,
            old: None,
        }
    }
}

/// The outcome of the scan.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Differing objects in uid order.
    pub events: Vec<Event>,
    /// Equal objects per portal type.
    pub unchanged: BTreeMap<String, u64>,
    /// Objects in OLD.
    pub old_objects: u64,
    /// Objects in NEW.
    pub new_objects: u64,
    /// Per-object rows whose uid has no object on either side (not compared).
    pub orphan_rows: u64,
}

/// One side's cursors: objects, then the per-object tables.
struct Side {
    objects: Cursor,
    tables: Vec<Cursor>,
    /// Encoded rows of the current uid's group, per table.
    groups: Vec<Vec<u8>>,
}

impl Side {
    fn start<'s>(scope: &'s std::thread::Scope<'s, '_>, snap: &Path) -> Result<Side> {
        let objects = Cursor::new(BatchStream::start(
            scope,
            ReadSpec {
                snap: snap.to_path_buf(),
                def: &OBJECTS,
                columns: SCAN_COLUMNS.to_vec(),
                ranges: None,
                encode: true,
            },
        )?)?;
        let mut tables = Vec::new();
        for def in SIDE_TABLES {
            tables.push(Cursor::new(BatchStream::start(
                scope,
                ReadSpec {
                    snap: snap.to_path_buf(),
                    def,
                    columns: Vec::new(),
                    ranges: None,
                    encode: true,
                },
            )?)?);
        }
        Ok(Side {
            objects,
            tables,
            groups: vec![Vec::new(); SIDE_TABLES.len()],
        })
    }

    /// The smallest uid at any cursor.
    fn min_uid<'a>(&'a self, mut best: Option<&'a str>) -> Option<&'a str> {
        for c in std::iter::once(&self.objects).chain(&self.tables) {
            if let Some(u) = c.uid()
                && best.is_none_or(|b| u < b)
            {
                best = Some(u);
            }
        }
        best
    }

    /// Gathers the rows of `uid` in every per-object table; returns their ranges.
    fn take_groups(&mut self, uid: &str) -> Result<[Range<u64>; 4]> {
        let mut ranges: [Range<u64>; 4] = Default::default();
        for (t, c) in self.tables.iter_mut().enumerate() {
            let buf = &mut self.groups[t];
            buf.clear();
            let start = c.row;
            while c.uid() == Some(uid) {
                let bytes = c.encoded().unwrap_or_default();
                buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                buf.extend_from_slice(bytes);
                c.advance()?;
            }
            ranges[t] = start..c.row;
        }
        Ok(ranges)
    }
}

/// Scans OLD and NEW.
///
/// # Errors
/// When a table cannot be read or has an unexpected schema.
pub(crate) fn scan(old: &Path, new: &Path) -> Result<Scan> {
    std::thread::scope(|scope| {
        let mut a = Side::start(scope, old)?;
        let mut b = Side::start(scope, new)?;
        let mut out = Scan::default();
        while let Some(uid) = b.min_uid(a.min_uid(None)).map(str::to_string) {
            step(&uid, &mut a, &mut b, &mut out)?;
        }
        Ok(out)
    })
}

fn step(uid: &str, a: &mut Side, b: &mut Side, out: &mut Scan) -> Result<()> {
    let in_old = a.objects.uid() == Some(uid);
    let in_new = b.objects.uid() == Some(uid);
    let side_old = a.take_groups(uid)?;
    let side_new = b.take_groups(uid)?;
    let mut side_differ = 0u8;
    for t in 0..SIDE_TABLES.len() {
        if a.groups[t] != b.groups[t] {
            side_differ |= 1 << t;
        }
    }
    let event = |kind, fields_differ| Event {
        fields_differ,
        ..Event::new(
            uid,
            kind,
            (
                in_old.then_some(a.objects.row),
                in_new.then_some(b.objects.row),
            ),
            (&side_old, &side_new),
            side_differ,
        )
    };
    match (in_old, in_new) {
        (false, false) => {
            let rows: u64 = side_old
                .iter()
                .chain(&side_new)
                .map(|r| r.end - r.start)
                .sum();
            out.orphan_rows += rows;
        }
        (false, true) => {
            out.events.push(event(EventKind::Created, true));
            out.new_objects += 1;
            b.objects.advance()?;
        }
        (true, false) => {
            let mut e = event(EventKind::Vanished, true);
            e.old = Some(OldObject {
                portal_type: a.objects.str_col(COL_PORTAL_TYPE).unwrap_or("").into(),
                path: a.objects.str_col(COL_PATH).unwrap_or("").into(),
                content_hash: a.objects.str_col(COL_CONTENT_HASH).unwrap_or("").into(),
            });
            out.events.push(e);
            out.old_objects += 1;
            a.objects.advance()?;
        }
        (true, true) => {
            let same_row = a.objects.encoded() == b.objects.encoded();
            if same_row && side_differ == 0 {
                let pt = b.objects.str_col(COL_PORTAL_TYPE).unwrap_or("");
                match out.unchanged.get_mut(pt) {
                    Some(n) => *n += 1,
                    None => {
                        out.unchanged.insert(pt.to_string(), 1);
                    }
                }
            } else {
                let fields_differ =
                    a.objects.str_col(COL_CONTENT_HASH) != b.objects.str_col(COL_CONTENT_HASH);
                out.events.push(event(EventKind::Changed, fields_differ));
            }
            out.old_objects += 1;
            out.new_objects += 1;
            a.objects.advance()?;
            b.objects.advance()?;
        }
    }
    Ok(())
}

/// Whether both snapshots carry the per-object digest index (`tables/object_digests.parquet`):
/// then [`scan_digests`] can stand in for [`scan`].
pub(crate) fn has_digests(snap: &crate::snapshot::Snapshot) -> bool {
    let rel = crate::snapshot::layout::table_rel(OBJECT_DIGESTS.name);
    snap.manifest.files.iter().any(|f| f.path == rel)
}

/// One decoded batch of a digest index, its columns downcast once.
struct DigestBatch {
    uid: StringArray,
    in_objects: BooleanArray,
    portal_type: StringArray,
    record_hash: StringArray,
    counts: [Int64Array; 4],
}

impl DigestBatch {
    fn new(batch: &arrow::array::RecordBatch, path: &Path) -> Result<DigestBatch> {
        fn col<T: Clone + 'static>(
            batch: &arrow::array::RecordBatch,
            i: usize,
            path: &Path,
        ) -> Result<T> {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<T>()
                .cloned()
                .ok_or_else(|| crate::error::Error::snapshot(path, "unexpected column type"))
        }
        Ok(DigestBatch {
            uid: col(batch, 0, path)?,
            in_objects: col(batch, 1, path)?,
            portal_type: col(batch, 2, path)?,
            record_hash: col(batch, 3, path)?,
            counts: [
                col(batch, 4, path)?,
                col(batch, 5, path)?,
                col(batch, 6, path)?,
                col(batch, 7, path)?,
            ],
        })
    }
}

/// One side's position in its digest index, with the positions it implies: the row of the
/// current uid in `objects` and its first row in each per-object table.
struct DigestSide {
    path: PathBuf,
    stream: BatchStream,
    batch: Option<DigestBatch>,
    pos: usize,
    object_row: u64,
    side_row: [u64; 4],
}

impl DigestSide {
    fn start<'s>(scope: &'s std::thread::Scope<'s, '_>, snap: &Path) -> Result<DigestSide> {
        let stream = BatchStream::start(
            scope,
            ReadSpec {
                snap: snap.to_path_buf(),
                def: &OBJECT_DIGESTS,
                columns: Vec::new(),
                ranges: None,
                encode: false,
            },
        )?;
        let mut side = DigestSide {
            path: snap.join(crate::snapshot::layout::table_rel(OBJECT_DIGESTS.name)),
            stream,
            batch: None,
            pos: 0,
            object_row: 0,
            side_row: [0; 4],
        };
        side.load()?;
        Ok(side)
    }

    fn load(&mut self) -> Result<()> {
        self.pos = 0;
        self.batch = None;
        while let Some(next) = self.stream.next_batch() {
            let d = next?;
            if d.batch.num_rows() > 0 {
                self.batch = Some(DigestBatch::new(&d.batch, &self.path)?);
                break;
            }
        }
        Ok(())
    }

    fn uid(&self) -> Option<&str> {
        self.batch.as_ref().map(|b| b.uid.value(self.pos))
    }

    fn in_objects(&self) -> bool {
        self.batch
            .as_ref()
            .is_some_and(|b| b.in_objects.value(self.pos))
    }

    fn portal_type(&self) -> &str {
        self.batch.as_ref().map_or("", |b| {
            if b.portal_type.is_null(self.pos) {
                ""
            } else {
                b.portal_type.value(self.pos)
            }
        })
    }

    fn record_hash(&self) -> Option<&str> {
        self.batch.as_ref().map(|b| b.record_hash.value(self.pos))
    }

    /// The current uid's row ranges in the per-object tables.
    fn ranges(&self) -> [Range<u64>; 4] {
        std::array::from_fn(|t| {
            let n = self
                .batch
                .as_ref()
                .map_or(0, |b| b.counts[t].value(self.pos).max(0) as u64);
            self.side_row[t]..self.side_row[t] + n
        })
    }

    /// Moves past the current uid.
    fn advance(&mut self, ranges: &[Range<u64>; 4], in_objects: bool) -> Result<()> {
        for (t, r) in ranges.iter().enumerate() {
            self.side_row[t] = r.end;
        }
        if in_objects {
            self.object_row += 1;
        }
        let Some(b) = &self.batch else {
            return Ok(());
        };
        self.pos += 1;
        if self.pos >= b.uid.len() {
            self.load()?;
        }
        Ok(())
    }
}

/// The scan over both snapshots' digest indexes: objects are equal exactly when their record
/// hashes are (the hash covers every column and row [`scan`] compares), so only the two narrow
/// index files are read in full. A changed object's per-object tables are all marked for the
/// second pass (which compares them row by row and finds the equal ones equal), and what the
/// report says of a deleted object is left for the pass after it ([`fill_vanished`], or the
/// brief pass, which reads OLD's rows anyway). The events are the ones [`scan`] finds, in the
/// same order.
///
/// # Errors
/// When an index or the selected rows cannot be read.
pub(crate) fn scan_digests(old: &Path, new: &Path) -> Result<Scan> {
    let mut out = Scan::default();
    std::thread::scope(|scope| -> Result<()> {
        let mut a = DigestSide::start(scope, old)?;
        let mut b = DigestSide::start(scope, new)?;
        let mut uid = String::new();
        loop {
            uid.clear();
            match (a.uid(), b.uid()) {
                (None, None) => break,
                (Some(x), Some(y)) => uid.push_str(x.min(y)),
                (Some(x), None) | (None, Some(x)) => uid.push_str(x),
            }
            let on_a = a.uid() == Some(uid.as_str());
            let on_b = b.uid() == Some(uid.as_str());
            let in_old = on_a && a.in_objects();
            let in_new = on_b && b.in_objects();
            let empty: [Range<u64>; 4] = std::array::from_fn(|t| a.side_row[t]..a.side_row[t]);
            let side_old = if on_a { a.ranges() } else { empty };
            let empty: [Range<u64>; 4] = std::array::from_fn(|t| b.side_row[t]..b.side_row[t]);
            let side_new = if on_b { b.ranges() } else { empty };
            let same = on_a && on_b && a.record_hash() == b.record_hash();
            let mut side_differ = 0u8;
            if !same {
                for t in 0..SIDE_TABLES.len() {
                    if !side_old[t].is_empty() || !side_new[t].is_empty() {
                        side_differ |= 1 << t;
                    }
                }
            }
            let event = |kind| {
                Event::new(
                    &uid,
                    kind,
                    (
                        in_old.then_some(a.object_row),
                        in_new.then_some(b.object_row),
                    ),
                    (&side_old, &side_new),
                    side_differ,
                )
            };
            match (in_old, in_new) {
                (false, false) => {
                    out.orphan_rows += side_old
                        .iter()
                        .chain(&side_new)
                        .map(|r| r.end - r.start)
                        .sum::<u64>();
                }
                (false, true) => {
                    out.events.push(event(EventKind::Created));
                    out.new_objects += 1;
                }
                (true, false) => {
                    out.events.push(event(EventKind::Vanished));
                    out.old_objects += 1;
                }
                (true, true) => {
                    if same {
                        let pt = b.portal_type();
                        match out.unchanged.get_mut(pt) {
                            Some(n) => *n += 1,
                            None => {
                                out.unchanged.insert(pt.to_string(), 1);
                            }
                        }
                    } else {
                        out.events.push(event(EventKind::Changed));
                    }
                    out.old_objects += 1;
                    out.new_objects += 1;
                }
            }
            if on_a {
                a.advance(&side_old, in_old)?;
            }
            if on_b {
                b.advance(&side_new, in_new)?;
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Reads portal type, path and content hash of the vanished objects from OLD's `objects` (what
/// [`scan`] keeps of them, and [`scan_digests`] leaves out for the pass after it).
///
/// # Errors
/// When the rows cannot be read or do not match the events.
pub(crate) fn fill_vanished(old: &Path, events: &mut [Event]) -> Result<()> {
    let ranges: Vec<std::ops::Range<usize>> = events
        .iter()
        .filter(|e| e.kind == EventKind::Vanished)
        .filter_map(|e| e.old_row.map(|r| r as usize..r as usize + 1))
        .collect();
    if ranges.is_empty() {
        return Ok(());
    }
    std::thread::scope(|scope| -> Result<()> {
        let mut c = Cursor::new(BatchStream::start(
            scope,
            ReadSpec {
                snap: old.to_path_buf(),
                def: &OBJECTS,
                columns: vec!["uid", "portal_type", "path", "content_hash"],
                ranges: Some(ranges),
                encode: false,
            },
        )?)?;
        for e in events.iter_mut().filter(|e| e.kind == EventKind::Vanished) {
            if c.uid() != Some(e.uid.as_str()) {
                return Err(crate::error::Error::snapshot(
                    old.join(crate::snapshot::layout::table_rel(OBJECTS.name)),
                    format!(
                        "object_digests does not match objects: expected uid {} at row {:?}",
                        e.uid, e.old_row
                    ),
                ));
            }
            e.old = Some(OldObject {
                portal_type: c.str_col(1).unwrap_or("").into(),
                path: c.str_col(2).unwrap_or("").into(),
                content_hash: c.str_col(3).unwrap_or("").into(),
            });
            c.advance()?;
        }
        Ok(())
    })
}
