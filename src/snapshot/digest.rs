//! Per-object digests: `tables/object_digests.parquet`, an index derived from the other tables
//! and written with them, just before the manifest. One row per uid that any per-object table
//! mentions (in uid order), with a `record_hash` over everything of that object a comparison
//! looks at (its `objects` row but `fields`, which `content_hash` stands for, and `sources`, which
//! says where values came from; and all its rows in `workflow_history`, `workflow_states`,
//! `local_roles` and `blobs`) and its row count in each per-object table. Two snapshots' objects
//! are equal exactly when their record hashes are, so `diff` reads two narrow files instead of
//! every row of both snapshots, and the row counts give it the row ranges to read back for the
//! few objects that differ.
//!
//! The hash is the first 128 bits of a sha256 over a fixed byte encoding of the cells (see
//! [`hash_cell`]), independent
//! of Parquet's page layout and of the Arrow version; the README documents it. The table is
//! optional: snapshots written before it existed have none, and readers then compare the
//! tables themselves.

use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, ListArray, StringArray};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::snapshot::layout;
use crate::snapshot::manifest::FileEntry;
use crate::snapshot::stream::{BatchStream, Cursor, ReadSpec};
use crate::snapshot::table::{
    BLOBS, Cell, Kind, LOCAL_ROLES, OBJECTS, TableDef, TableReader, TableWriter, WORKFLOW_HISTORY,
    WORKFLOW_STATES,
};

/// The per-object tables a record hash covers, in hashing order.
pub const PER_OBJECT_TABLES: [&TableDef; 4] =
    [&WORKFLOW_HISTORY, &WORKFLOW_STATES, &LOCAL_ROLES, &BLOBS];

/// `objects` columns a record hash covers, in hashing order (all but `fields` and `sources`).
pub const HASHED_OBJECT_COLUMNS: &[&str] = &[
    "uid",
    "portal_type",
    "path",
    "parent_uid",
    "parent_path",
    "id",
    "title",
    "created",
    "modified",
    "review_state",
    "content_hash",
];

/// The digest index.
pub const OBJECT_DIGESTS: TableDef = TableDef {
    name: "object_digests",
    doc: "derived index: one row per uid of the per-object tables, sorted by uid",
    columns: &[
        ("uid", Kind::Str, false, "object UID"),
        (
            "in_objects",
            Kind::Bool,
            false,
            "whether `objects` has a row for the uid (false: rows of other tables only)",
        ),
        (
            "portal_type",
            Kind::Str,
            true,
            "the object's portal_type (null when not in `objects`)",
        ),
        (
            "record_hash",
            Kind::Str,
            false,
            "first 128 bits (32 hex) of the sha256 of the object's objects row (but fields and sources) and per-object rows",
        ),
        (
            "history_rows",
            Kind::Int,
            false,
            "rows of the uid in workflow_history",
        ),
        (
            "states_rows",
            Kind::Int,
            false,
            "rows of the uid in workflow_states",
        ),
        (
            "local_roles_rows",
            Kind::Int,
            false,
            "rows of the uid in local_roles",
        ),
        ("blobs_rows", Kind::Int, false, "rows of the uid in blobs"),
    ],
};

/// Bytes of the sha256 kept as `record_hash` (as hex: 32 characters). 128 bits: two different
/// versions of one object get the same hash with probability 2^-128, and the index stays narrow
/// enough to read a million rows in a fraction of a second.
pub const RECORD_HASH_BYTES: usize = 16;

/// Writes `tables/object_digests.parquet` from the snapshot's other tables (which must be
/// complete) and returns its manifest entry. A snapshot without an `objects` table gets none
/// (`Ok(None)`).
///
/// # Errors
/// When a table cannot be read, is not sorted by uid, or the index cannot be written.
pub fn write(snap: &Path) -> Result<Option<FileEntry>> {
    if !snap.join(layout::table_rel(OBJECTS.name)).is_file() {
        return Ok(None);
    }
    let mut w = TableWriter::create(snap, &OBJECT_DIGESTS)?;
    compute(snap, |row| w.push(row))?;
    let rows = w.finish()?;
    let rel = layout::table_rel(OBJECT_DIGESTS.name);
    let (sha256, bytes) = crate::snapshot::blobs::hash_file(&snap.join(&rel))?;
    Ok(Some(FileEntry {
        path: rel,
        kind: "table".into(),
        rows,
        bytes,
        sha256,
    }))
}

/// Checks a snapshot's digest index against its tables: `Ok(None)` when it matches (or the
/// snapshot has none), else the first uid whose index row is wrong, missing or extra.
///
/// # Errors
/// When a table or the index cannot be read.
pub fn check(snap: &Path) -> Result<Option<String>> {
    if !snap.join(layout::table_rel(OBJECT_DIGESTS.name)).is_file() {
        return Ok(None);
    }
    let mut stored = TableReader::open(snap, &OBJECT_DIGESTS)?;
    let mut first_bad: Option<String> = None;
    compute(snap, |row| {
        if first_bad.is_none() {
            let uid = row[0].as_str().unwrap_or_default().to_string();
            match stored.next().transpose()? {
                Some(s) if s == row => {}
                _ => first_bad = Some(uid),
            }
        }
        Ok(())
    })?;
    if first_bad.is_none()
        && let Some(extra) = stored.next().transpose()?
    {
        first_bad = Some(extra[0].as_str().unwrap_or_default().to_string());
    }
    Ok(first_bad)
}

/// Computes the index rows in uid order, handing each to `sink`.
fn compute(snap: &Path, mut sink: impl FnMut(Vec<Cell>) -> Result<()>) -> Result<()> {
    std::thread::scope(|scope| {
        let mut objects = Stream::start(scope, snap, &OBJECTS, HASHED_OBJECT_COLUMNS)?;
        let mut sides = Vec::new();
        for def in PER_OBJECT_TABLES {
            sides.push(Stream::start(scope, snap, def, &[])?);
        }
        loop {
            let mut next: Option<String> = objects.uid().map(str::to_string);
            for s in &sides {
                if let Some(u) = s.uid()
                    && next.as_deref().is_none_or(|n| u < n)
                {
                    next = Some(u.to_string());
                }
            }
            let Some(uid) = next else { break };
            let mut h = Sha256::new();
            let in_objects = objects.uid() == Some(uid.as_str());
            let mut portal_type = None;
            if in_objects {
                h.update([0xA0]);
                objects.hash_row(&mut h);
                portal_type = objects.str_at(1).map(str::to_string);
                objects.advance(&uid)?;
            } else {
                h.update([0xA1]);
            }
            let mut counts = [0i64; 4];
            for (t, s) in sides.iter_mut().enumerate() {
                h.update([0xB0 + t as u8]);
                while s.uid() == Some(uid.as_str()) {
                    h.update([0xC0]);
                    s.hash_row(&mut h);
                    counts[t] += 1;
                    s.advance(&uid)?;
                }
                h.update(counts[t].to_le_bytes());
            }
            let hash = crate::jsonx::hex(&h.finalize()[..RECORD_HASH_BYTES]);
            let mut row = vec![
                Cell::s(uid),
                Cell::Bool(Some(in_objects)),
                Cell::opt(portal_type),
                Cell::s(hash),
            ];
            row.extend(counts.iter().map(|n| Cell::Int(Some(*n))));
            sink(row)?;
        }
        Ok(())
    })
}

/// Feeds one cell to the hash: a tag byte, then the value (strings as length (u64, little
/// endian) and UTF-8 bytes; integers as i64 little endian; booleans as one byte; lists as their
/// length and each string). Nulls are their own tags, so null, `""` and `[]` differ.
pub fn hash_cell(h: &mut Sha256, kind: Kind, col: &ArrayRef, r: usize) {
    if col.is_null(r) {
        h.update([match kind {
            Kind::Str => 0x00,
            Kind::Int => 0x02,
            Kind::Bool => 0x04,
            Kind::StrList => 0x06,
        }]);
        return;
    }
    let text = |h: &mut Sha256, s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    match kind {
        Kind::Str => {
            h.update([0x01]);
            if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
                text(h, a.value(r));
            }
        }
        Kind::Int => {
            h.update([0x03]);
            if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
                h.update(a.value(r).to_le_bytes());
            }
        }
        Kind::Bool => {
            h.update([0x05]);
            if let Some(a) = col.as_any().downcast_ref::<BooleanArray>() {
                h.update([u8::from(a.value(r))]);
            }
        }
        Kind::StrList => {
            h.update([0x07]);
            if let Some(a) = col.as_any().downcast_ref::<ListArray>() {
                let values = a.value(r);
                if let Some(s) = values.as_any().downcast_ref::<StringArray>() {
                    h.update((s.len() as u64).to_le_bytes());
                    for j in 0..s.len() {
                        text(h, s.value(j));
                    }
                }
            }
        }
    }
}

/// One table file in uid order (decoded on its own thread, [`crate::snapshot::stream`]),
/// checking the order.
struct Stream {
    path: PathBuf,
    kinds: Vec<Kind>,
    cursor: Cursor,
}

impl Stream {
    fn start<'s>(
        scope: &'s std::thread::Scope<'s, '_>,
        snap: &Path,
        def: &'static TableDef,
        columns: &[&'static str],
    ) -> Result<Stream> {
        let kinds = if columns.is_empty() {
            def.columns.iter().map(|c| c.1).collect()
        } else {
            columns
                .iter()
                .filter_map(|n| def.col(n).map(|i| def.columns[i].1))
                .collect()
        };
        let cursor = Cursor::new(BatchStream::start(
            scope,
            ReadSpec {
                snap: snap.to_path_buf(),
                def,
                columns: columns.to_vec(),
                ranges: None,
                encode: false,
            },
        )?)?;
        Ok(Stream {
            path: snap.join(layout::table_rel(def.name)),
            kinds,
            cursor,
        })
    }

    fn uid(&self) -> Option<&str> {
        self.cursor
            .at()
            .map(|_| self.cursor.uid().unwrap_or_default())
    }

    fn str_at(&self, col: usize) -> Option<&str> {
        self.cursor.str_col(col)
    }

    fn hash_row(&self, h: &mut Sha256) {
        if let Some((d, pos)) = self.cursor.at() {
            for (i, kind) in self.kinds.iter().enumerate() {
                hash_cell(h, *kind, d.batch.column(i), pos);
            }
        }
    }

    /// Moves past the current row, checking that the next uid does not sort before `uid`.
    fn advance(&mut self, uid: &str) -> Result<()> {
        self.cursor.advance()?;
        match self.uid() {
            Some(next) if next < uid => Err(Error::snapshot(
                &self.path,
                format!("rows are not sorted by uid: {next:?} follows {uid:?}"),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uid: &str, title: &str) -> Vec<Cell> {
        let mut row: Vec<Cell> = OBJECTS
            .columns
            .iter()
            .map(|_| Cell::opt(None::<String>))
            .collect();
        row[0] = Cell::s(uid);
        row[1] = Cell::s("Client");
        row[2] = Cell::s(format!("/senaite/clients/{uid}"));
        row[5] = Cell::s(uid);
        row[6] = Cell::s(title);
        row[10] = Cell::s("h");
        row[11] = Cell::s(format!("{{\"title\":\"{title}\"}}"));
        row[12] = Cell::s("{}");
        row
    }

    fn role(uid: &str, principal: &str, roles: &[&str]) -> Vec<Cell> {
        vec![
            Cell::s(uid),
            Cell::s(principal),
            Cell::s("user"),
            Cell::StrList(roles.iter().map(|r| r.to_string()).collect()),
            Cell::StrList(vec![]),
            Cell::Bool(Some(true)),
        ]
    }

    /// Writes the tables (each in the order given), then the index; returns its rows.
    fn digests(objects: &[Vec<Cell>], roles: &[Vec<Cell>]) -> Result<Vec<Vec<Cell>>> {
        let dir = tempfile::tempdir().unwrap();
        for def in [&OBJECTS, &WORKFLOW_HISTORY, &WORKFLOW_STATES, &BLOBS] {
            let mut w = TableWriter::create(dir.path(), def).unwrap();
            if def.name == "objects" {
                for r in objects {
                    w.push(r.clone()).unwrap();
                }
            }
            w.finish().unwrap();
        }
        let mut w = TableWriter::create(dir.path(), &LOCAL_ROLES).unwrap();
        for r in roles {
            w.push(r.clone()).unwrap();
        }
        w.finish().unwrap();
        write(dir.path())?;
        Ok(TableReader::read_all(dir.path(), &OBJECT_DIGESTS).unwrap())
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccc";

    #[test]
    fn the_hash_follows_every_compared_row_and_only_those() {
        let base = digests(
            &[object(A, "One"), object(B, "Two")],
            &[role(A, "bob", &["Owner"])],
        )
        .unwrap();
        assert_eq!(base.len(), 2);
        assert_eq!(base[0][5], Cell::Int(Some(0)), "no states rows");
        assert_eq!(base[0][6], Cell::Int(Some(1)), "one local_roles row");
        assert_eq!(base[1][6], Cell::Int(Some(0)));
        // A local role only: A's hash changes, B's does not.
        let roles = digests(
            &[object(A, "One"), object(B, "Two")],
            &[role(A, "bob", &["Owner", "Editor"])],
        )
        .unwrap();
        assert_ne!(roles[0][3], base[0][3]);
        assert_eq!(roles[1][3], base[1][3]);
        // A title: B's hash changes.
        let title = digests(
            &[object(A, "One"), object(B, "Two!")],
            &[role(A, "bob", &["Owner"])],
        )
        .unwrap();
        assert_eq!(title[0][3], base[0][3]);
        assert_ne!(title[1][3], base[1][3]);
        // `fields` and `sources` are not hashed (content_hash stands for fields).
        let mut quiet = object(B, "Two");
        quiet[11] = Cell::s("{\"title\":\"other\"}");
        quiet[12] = Cell::s("{\"title\":\"restapi\"}");
        let same = digests(&[object(A, "One"), quiet], &[role(A, "bob", &["Owner"])]).unwrap();
        assert_eq!(same, base);
        // Null and empty differ.
        let mut empty = object(B, "Two");
        empty[3] = Cell::s("");
        let e = digests(&[object(A, "One"), empty], &[role(A, "bob", &["Owner"])]).unwrap();
        assert_ne!(e[1][3], base[1][3]);
    }

    #[test]
    fn rows_without_an_object_get_their_own_index_row() {
        let d = digests(&[object(A, "One")], &[role(C, "bob", &["Owner"])]).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[1][0], Cell::s(C));
        assert_eq!(d[1][1], Cell::Bool(Some(false)));
        assert_eq!(d[1][2], Cell::opt(None::<String>));
        assert_eq!(d[1][6], Cell::Int(Some(1)));
    }

    #[test]
    fn check_finds_an_index_that_does_not_match_its_tables() {
        let dir = tempfile::tempdir().unwrap();
        for def in [
            &OBJECTS,
            &WORKFLOW_HISTORY,
            &WORKFLOW_STATES,
            &LOCAL_ROLES,
            &BLOBS,
        ] {
            let mut w = TableWriter::create(dir.path(), def).unwrap();
            if def.name == "objects" {
                w.push(object(A, "One")).unwrap();
                w.push(object(B, "Two")).unwrap();
            }
            w.finish().unwrap();
        }
        assert_eq!(
            check(dir.path()).unwrap(),
            None,
            "no index: nothing to check"
        );
        write(dir.path()).unwrap();
        assert_eq!(check(dir.path()).unwrap(), None);
        let mut w = TableWriter::create(dir.path(), &OBJECTS).unwrap();
        w.push(object(A, "One")).unwrap();
        w.push(object(B, "Two, edited")).unwrap();
        w.finish().unwrap();
        assert_eq!(check(dir.path()).unwrap(), Some(B.to_string()));
        let mut w = TableWriter::create(dir.path(), &OBJECTS).unwrap();
        w.push(object(A, "One")).unwrap();
        w.finish().unwrap();
        assert_eq!(
            check(dir.path()).unwrap(),
            Some(B.to_string()),
            "extra index row"
        );
    }

    #[test]
    fn an_unsorted_table_is_an_error_naming_it() {
        let e = digests(&[object(B, "Two"), object(A, "One")], &[]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("objects.parquet") && text.contains("not sorted by uid"),
            "{text}"
        );
    }
}
