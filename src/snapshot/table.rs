//! The typed tables of a snapshot: their Arrow schemas (the single source of truth, mirrored in
//! `schemas/tables.json` and checked by a test) and a row-oriented writer/reader over Parquet.
//! Rows are vectors of [`Cell`]s in schema order; callers sort rows before writing so table files
//! are byte-identical for identical content.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Int64Array, Int64Builder, ListArray,
    ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::snapshot::layout;

/// zstd level 3: the library default level is 1; 3 compresses JSON-heavy columns noticeably
/// better at a small CPU cost.
const ZSTD_LEVEL: i32 = 3;
/// Rows per row group: small enough that a reader streams a table in bounded memory, large
/// enough for good compression of the `fields` column.
pub const ROW_GROUP_ROWS: usize = 8192;
/// Rows per row group of the digest index (narrow rows, read whole): fewer column chunks to
/// set up (each one a decompression context) when `diff` reads it.
const INDEX_ROW_GROUP_ROWS: usize = 65536;
/// Rows buffered before a batch is handed to the Parquet writer.
const BATCH_ROWS: usize = 1024;
/// Columns of random hex whose values are all distinct (the digest index's uids and hashes):
/// written plainly and uncompressed. A dictionary would only be built and thrown away (Parquet
/// falls back when it fills up), and zstd only gains the hex digits' entropy (2:1) at the cost
/// of decompressing them at every read, which is what `diff --brief` spends its time on.
const UNIQUE_COLUMNS: &[(&str, &str)] =
    &[("object_digests", "uid"), ("object_digests", "record_hash")];
/// Version of the table schemas, stored in each file's key-value metadata.
pub const SCHEMA_VERSION: &str = "1";

/// Column kinds used by the snapshot tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 string.
    Str,
    /// 64-bit signed integer.
    Int,
    /// Boolean.
    Bool,
    /// List of UTF-8 strings.
    StrList,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// A string or null.
    Str(Option<String>),
    /// An integer or null.
    Int(Option<i64>),
    /// A boolean or null.
    Bool(Option<bool>),
    /// A list of strings (never null; empty for none).
    StrList(Vec<String>),
}

impl Cell {
    /// A non-null string cell.
    pub fn s(v: impl Into<String>) -> Cell {
        Cell::Str(Some(v.into()))
    }

    /// A nullable string cell.
    pub fn opt(v: Option<impl Into<String>>) -> Cell {
        Cell::Str(v.map(Into::into))
    }

    /// The string value, if this is a non-null string cell.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(Some(s)) => Some(s),
            _ => None,
        }
    }

    /// The integer value, if any.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Cell::Int(v) => *v,
            _ => None,
        }
    }

    /// The list value (empty for other cells).
    pub fn as_list(&self) -> &[String] {
        match self {
            Cell::StrList(v) => v,
            _ => &[],
        }
    }
}

/// A table: its name and columns `(name, kind, nullable, description)`.
#[derive(Debug)]
pub struct TableDef {
    /// Table name, also the file stem under `tables/`.
    pub name: &'static str,
    /// What one row is.
    pub doc: &'static str,
    /// Columns in order.
    pub columns: &'static [(&'static str, Kind, bool, &'static str)],
}

use Kind::{Bool, Int, Str, StrList};

/// One row per object.
pub const OBJECTS: TableDef = TableDef {
    name: "objects",
    doc: "one row per content object, sorted by uid",
    columns: &[
        ("uid", Str, false, "32-hex UID (the portal's is \"0\")"),
        ("portal_type", Str, false, "portal_type name"),
        ("path", Str, false, "physical path, /<site>/..."),
        (
            "parent_uid",
            Str,
            true,
            "UID of the parent; null when not viewable",
        ),
        ("parent_path", Str, true, "physical path of the parent"),
        ("id", Str, false, "object id"),
        ("title", Str, true, "title"),
        (
            "created",
            Str,
            true,
            "creation date as the source gives it (ISO 8601)",
        ),
        (
            "modified",
            Str,
            true,
            "modification date as the source gives it (ISO 8601)",
        ),
        ("review_state", Str, true, "state of the primary workflow"),
        (
            "content_hash",
            Str,
            false,
            "sha256 of the canonical JSON of fields",
        ),
        (
            "fields",
            Str,
            false,
            "canonical JSON object of every field value (see README)",
        ),
        (
            "sources",
            Str,
            false,
            "canonical JSON: channel of each value not taken from the v1 record",
        ),
    ],
};

/// One row per review-history entry per workflow.
pub const WORKFLOW_HISTORY: TableDef = TableDef {
    name: "workflow_history",
    doc: "one row per review-history entry per workflow, sorted by uid, workflow, seq",
    columns: &[
        ("uid", Str, false, "object UID"),
        ("workflow", Str, false, "workflow id"),
        ("seq", Int, false, "0-based position, oldest first"),
        (
            "action",
            Str,
            true,
            "transition id; null for the initial entry",
        ),
        ("actor", Str, true, "user id"),
        ("comments", Str, true, "comments"),
        ("review_state", Str, true, "state after the entry"),
        (
            "time",
            Str,
            true,
            "most exact time the source gives (plone.restapi: microseconds)",
        ),
        (
            "time_v1",
            Str,
            true,
            "time as senaite.jsonapi gives it (whole seconds, no zone)",
        ),
        (
            "extra",
            Str,
            false,
            "canonical JSON of any other workflow variables",
        ),
    ],
};

/// One row per workflow of an object: its current state.
pub const WORKFLOW_STATES: TableDef = TableDef {
    name: "workflow_states",
    doc: "current state of every workflow of every object, sorted by uid, workflow",
    columns: &[
        ("uid", Str, false, "object UID"),
        ("workflow", Str, false, "workflow id"),
        ("review_state", Str, true, "state id"),
        ("status", Str, true, "state title"),
    ],
};

/// Users of the site.
pub const USERS: TableDef = TableDef {
    name: "users",
    doc: "one row per Plone user, sorted by username (passwords are never readable)",
    columns: &[
        ("username", Str, false, "user id"),
        ("fullname", Str, true, "full name"),
        ("email", Str, true, "e-mail"),
        ("roles", StrList, false, "global roles"),
        ("groups", StrList, false, "group ids"),
        (
            "properties",
            Str,
            false,
            "canonical JSON of every other property",
        ),
    ],
};

/// Groups of the site.
pub const GROUPS: TableDef = TableDef {
    name: "groups",
    doc: "one row per group, sorted by id",
    columns: &[
        ("id", Str, false, "group id"),
        ("title", Str, true, "title"),
        ("description", Str, true, "description"),
        ("email", Str, true, "e-mail"),
        ("roles", StrList, false, "global roles of the group"),
        ("members", StrList, false, "member user and group ids"),
        ("properties", Str, false, "canonical JSON of the rest"),
    ],
};

/// Local roles.
pub const LOCAL_ROLES: TableDef = TableDef {
    name: "local_roles",
    doc: "one row per object and principal with local roles, sorted by uid, principal",
    columns: &[
        ("uid", Str, false, "object UID"),
        ("principal", Str, false, "user or group id"),
        ("principal_type", Str, true, "user or group"),
        ("roles", StrList, false, "roles assigned on this object"),
        (
            "acquired_roles",
            StrList,
            false,
            "roles acquired from parents",
        ),
        (
            "inherit",
            Bool,
            true,
            "false when the object blocks role inheritance",
        ),
    ],
};

/// Blob references.
pub const BLOBS: TableDef = TableDef {
    name: "blobs",
    doc: "one row per file field value, sorted by uid, field; bytes under blobs/",
    columns: &[
        ("uid", Str, false, "object UID"),
        ("field", Str, false, "field name"),
        ("filename", Str, true, "file name"),
        ("content_type", Str, true, "MIME type"),
        ("size", Int, false, "bytes"),
        (
            "sha256",
            Str,
            false,
            "lower-case hex sha256; the file is blobs/<sha[0..2]>/<sha>",
        ),
    ],
};

/// Registry records and control-panel settings.
pub const SETTINGS: TableDef = TableDef {
    name: "settings",
    doc: "registry records and settings, sorted by source, key",
    columns: &[
        ("source", Str, false, "registry or settings"),
        ("key", Str, false, "record name or settings keyword"),
        (
            "value",
            Str,
            true,
            "canonical JSON value; null when unreadable",
        ),
        (
            "error",
            Str,
            true,
            "why the source could not give the value",
        ),
    ],
};

/// Every table, in manifest order.
pub const ALL_TABLES: &[&TableDef] = &[
    &OBJECTS,
    &WORKFLOW_HISTORY,
    &WORKFLOW_STATES,
    &USERS,
    &GROUPS,
    &LOCAL_ROLES,
    &BLOBS,
    &SETTINGS,
];

/// Looks a table definition up by name.
pub fn table_def(name: &str) -> Option<&'static TableDef> {
    ALL_TABLES.iter().copied().find(|t| t.name == name)
}

impl TableDef {
    /// The Arrow schema of this table.
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, kind, nullable, _)| Field::new(*name, data_type(*kind), *nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Index of a column by name.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.0 == name)
    }
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Str => DataType::Utf8,
        Kind::Int => DataType::Int64,
        Kind::Bool => DataType::Boolean,
        Kind::StrList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
    }
}

/// Streams rows into one Parquet table file (temp name, renamed on `finish`).
pub struct TableWriter {
    def: &'static TableDef,
    schema: SchemaRef,
    path: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    pending: Vec<Vec<Cell>>,
    rows: u64,
}

impl TableWriter {
    /// Creates `<snap>/tables/<name>.parquet` (under a temp name until `finish`).
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(snap: &Path, def: &'static TableDef) -> Result<Self> {
        let path = snap.join(layout::table_rel(def.name));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
        }
        let tmp = layout::tmp_path(&path);
        let file = File::create(&tmp).map_err(|e| Error::write(&tmp, e))?;
        let schema = def.schema();
        let level = ZstdLevel::try_new(ZSTD_LEVEL).map_err(|e| parquet_err(&path, e))?;
        let mut props = WriterProperties::builder();
        for (table, column) in UNIQUE_COLUMNS {
            if *table == def.name {
                props = props
                    .set_column_dictionary_enabled(ColumnPath::from(*column), false)
                    .set_column_compression(ColumnPath::from(*column), Compression::UNCOMPRESSED);
            }
        }
        let props = props
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(if def.name == "object_digests" {
                INDEX_ROW_GROUP_ROWS
            } else {
                ROW_GROUP_ROWS
            }))
            .set_created_by(format!("senaite-sync {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![
                KeyValue::new("senaite_sync.table".into(), def.name.to_string()),
                KeyValue::new(
                    "senaite_sync.schema_version".into(),
                    SCHEMA_VERSION.to_string(),
                ),
            ]))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| parquet_err(&path, e))?;
        Ok(TableWriter {
            def,
            schema,
            path,
            tmp,
            writer,
            pending: Vec::with_capacity(BATCH_ROWS),
            rows: 0,
        })
    }

    /// Appends one row (cells in schema order).
    ///
    /// # Errors
    /// When the row does not fit the schema or writing fails.
    pub fn push(&mut self, row: Vec<Cell>) -> Result<()> {
        if row.len() != self.def.columns.len() {
            return Err(Error::snapshot(
                &self.path,
                format!(
                    "table {} expects {} columns, got {}",
                    self.def.name,
                    self.def.columns.len(),
                    row.len()
                ),
            ));
        }
        self.pending.push(row);
        if self.pending.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let batch = rows_to_batch(self.def, &self.schema, &rows)?;
        self.rows += rows.len() as u64;
        self.writer
            .write(&batch)
            .map_err(|e| parquet_err(&self.path, e))
    }

    /// Writes the footer, renames the file into place and returns its row count.
    ///
    /// # Errors
    /// When writing or renaming fails.
    pub fn finish(mut self) -> Result<u64> {
        self.flush()?;
        let meta = self
            .writer
            .close()
            .map_err(|e| parquet_err(&self.path, e))?;
        let rows = meta.file_metadata().num_rows() as u64;
        if rows != self.rows {
            return Err(Error::snapshot(
                &self.path,
                "row count mismatch after close",
            ));
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::write(&self.path, e))?;
        Ok(rows)
    }
}

fn parquet_err(path: &Path, source: parquet::errors::ParquetError) -> Error {
    Error::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn rows_to_batch(def: &TableDef, schema: &SchemaRef, rows: &[Vec<Cell>]) -> Result<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(def.columns.len());
    for (i, (_, kind, _, _)) in def.columns.iter().enumerate() {
        let array: ArrayRef = match kind {
            Kind::Str => {
                let mut b = StringBuilder::new();
                for r in rows {
                    b.append_option(r[i].as_str());
                }
                Arc::new(b.finish())
            }
            Kind::Int => {
                let mut b = Int64Builder::new();
                for r in rows {
                    b.append_option(r[i].as_int());
                }
                Arc::new(b.finish())
            }
            Kind::Bool => {
                let mut b = BooleanBuilder::new();
                for r in rows {
                    b.append_option(match &r[i] {
                        Cell::Bool(v) => *v,
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
            Kind::StrList => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for r in rows {
                    for s in r[i].as_list() {
                        b.values().append_value(s);
                    }
                    b.append(true);
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|source| Error::Arrow {
        table: def.name.to_string(),
        source,
    })
}

/// Reads a table file back as rows, one record batch at a time.
pub struct TableReader {
    def: &'static TableDef,
    path: PathBuf,
    batches: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    current: Vec<Vec<Cell>>,
}

impl TableReader {
    /// Opens `<snap>/tables/<name>.parquet` and checks its schema against the definition.
    ///
    /// # Errors
    /// When the file is missing, not Parquet or has a different schema.
    pub fn open(snap: &Path, def: &'static TableDef) -> Result<Self> {
        let path = snap.join(layout::table_rel(def.name));
        let file = File::open(&path).map_err(|e| Error::read(&path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_err(&path, e))?;
        let expected = def.schema();
        if builder.schema().fields() != expected.fields() {
            return Err(Error::snapshot(
                &path,
                format!("table {} has an unexpected schema", def.name),
            ));
        }
        let batches = builder
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| parquet_err(&path, e))?;
        Ok(TableReader {
            def,
            path,
            batches,
            current: Vec::new(),
        })
    }

    /// Reads every row of a table (for small tables and tests).
    ///
    /// # Errors
    /// As [`TableReader::open`], or when a batch cannot be decoded.
    pub fn read_all(snap: &Path, def: &'static TableDef) -> Result<Vec<Vec<Cell>>> {
        TableReader::open(snap, def)?.collect()
    }
}

impl Iterator for TableReader {
    type Item = Result<Vec<Cell>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.current.pop() {
                return Some(Ok(row));
            }
            let batch = match self.batches.next()? {
                Ok(b) => b,
                Err(source) => {
                    return Some(Err(Error::Arrow {
                        table: format!("{} ({})", self.def.name, self.path.display()),
                        source,
                    }));
                }
            };
            let mut rows = batch_to_rows(self.def, &batch);
            rows.reverse();
            self.current = rows;
        }
    }
}

fn batch_to_rows(def: &TableDef, batch: &RecordBatch) -> Vec<Vec<Cell>> {
    let n = batch.num_rows();
    let mut rows: Vec<Vec<Cell>> = (0..n)
        .map(|_| Vec::with_capacity(def.columns.len()))
        .collect();
    for (i, (_, kind, _, _)) in def.columns.iter().enumerate() {
        let col = batch.column(i);
        for (r, row) in rows.iter_mut().enumerate() {
            row.push(cell_at(*kind, col, r));
        }
    }
    rows
}

/// One value of a decoded column as a [`Cell`].
pub(crate) fn cell_at(kind: Kind, col: &ArrayRef, r: usize) -> Cell {
    let null = col.is_null(r);
    match kind {
        Kind::Str => {
            let a = col.as_any().downcast_ref::<StringArray>();
            Cell::Str(a.filter(|_| !null).map(|a| a.value(r).to_string()))
        }
        Kind::Int => {
            let a = col.as_any().downcast_ref::<Int64Array>();
            Cell::Int(a.filter(|_| !null).map(|a| a.value(r)))
        }
        Kind::Bool => {
            let a = col.as_any().downcast_ref::<BooleanArray>();
            Cell::Bool(a.filter(|_| !null).map(|a| a.value(r)))
        }
        Kind::StrList => {
            let mut out = Vec::new();
            if let Some(a) = col.as_any().downcast_ref::<ListArray>()
                && !null
            {
                let values = a.value(r);
                if let Some(s) = values.as_any().downcast_ref::<StringArray>() {
                    for j in 0..s.len() {
                        out.push(s.value(j).to_string());
                    }
                }
            }
            Cell::StrList(out)
        }
    }
}

/// Columns that hold JSON text (parsed by [`row_to_json`]).
pub const JSON_COLUMNS: &[&str] = &["fields", "sources", "extra", "properties"];

/// One row as a JSON object keyed by column name; the JSON-text columns ([`JSON_COLUMNS`]) are
/// parsed (a value that does not parse stays a string, so nothing is lost).
pub fn row_to_json(def: &TableDef, row: Vec<Cell>) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut out = serde_json::Map::with_capacity(row.len());
    for ((name, _, _, _), cell) in def.columns.iter().zip(row) {
        let v = match cell {
            Cell::Str(Some(s)) if JSON_COLUMNS.contains(name) => {
                crate::jsonx::parse_lenient(s.as_bytes()).unwrap_or(Value::String(s))
            }
            Cell::Str(v) => v.map_or(Value::Null, Value::String),
            Cell::Int(v) => v.map_or(Value::Null, Value::from),
            Cell::Bool(v) => v.map_or(Value::Null, Value::Bool),
            Cell::StrList(v) => Value::from(v),
        };
        out.insert((*name).to_string(), v);
    }
    out
}

impl TableDef {
    /// This table's schema as JSON (one entry of `schemas/tables.json`; the derived and delta
    /// tables have a file of their own in `schemas/`).
    pub fn schema_json(&self) -> serde_json::Value {
        let cols: Vec<serde_json::Value> = self
            .columns
            .iter()
            .map(|(name, kind, nullable, doc)| {
                serde_json::json!({
                    "name": name,
                    "type": match kind {
                        Kind::Str => "utf8",
                        Kind::Int => "int64",
                        Kind::Bool => "bool",
                        Kind::StrList => "list<utf8>",
                    },
                    "nullable": nullable,
                    "doc": doc,
                })
            })
            .collect();
        serde_json::json!({"name": self.name, "doc": self.doc, "file": layout::table_rel(self.name), "columns": cols})
    }
}

/// The table schemas as a JSON document (the content of `schemas/tables.json`).
pub fn schemas_json() -> serde_json::Value {
    let tables: Vec<serde_json::Value> = ALL_TABLES.iter().map(|t| t.schema_json()).collect();
    serde_json::json!({"schema_version": SCHEMA_VERSION, "tables": tables})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_rows(n: usize) -> Vec<Vec<Cell>> {
        (0..n)
            .map(|i| {
                vec![
                    Cell::s(format!("{i:032x}")),
                    Cell::s("Principal"),
                    Cell::Str(if i % 2 == 0 {
                        Some("user".to_string())
                    } else {
                        None
                    }),
                    Cell::StrList(vec!["Owner".into(), format!("R{i}")]),
                    Cell::StrList(vec![]),
                    Cell::Bool(if i % 3 == 0 { None } else { Some(i % 2 == 0) }),
                ]
            })
            .collect()
    }

    #[test]
    fn parquet_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let rows = sample_rows(2500);
        let mut w = TableWriter::create(dir.path(), &LOCAL_ROLES).unwrap();
        for r in &rows {
            w.push(r.clone()).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 2500);
        let back = TableReader::read_all(dir.path(), &LOCAL_ROLES).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn row_groups_follow_the_constant() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TableWriter::create(dir.path(), &LOCAL_ROLES).unwrap();
        for r in sample_rows(ROW_GROUP_ROWS * 2 + 5) {
            w.push(r).unwrap();
        }
        w.finish().unwrap();
        let file = File::open(dir.path().join("tables/local_roles.parquet")).unwrap();
        let b = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(b.metadata().num_row_groups(), 3);
        let kv = b.metadata().file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().any(|k| k.key == "senaite_sync.table"));
    }

    #[test]
    fn identical_rows_give_identical_files() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            let mut w = TableWriter::create(d, &LOCAL_ROLES).unwrap();
            for r in sample_rows(100) {
                w.push(r).unwrap();
            }
            w.finish().unwrap();
        }
        let fa = std::fs::read(a.path().join("tables/local_roles.parquet")).unwrap();
        let fb = std::fs::read(b.path().join("tables/local_roles.parquet")).unwrap();
        assert_eq!(fa, fb);
    }

    proptest::proptest! {
        /// Writing rows then reading them back gives the same rows, whatever the strings.
        #[test]
        fn any_rows_round_trip(rows in proptest::collection::vec(
            (".{0,12}", proptest::option::of(".{0,12}"), proptest::collection::vec(".{0,5}", 0..3),
             proptest::option::of(proptest::bool::ANY)),
            0..40,
        )) {
            let dir = tempfile::tempdir().unwrap();
            let rows: Vec<Vec<Cell>> = rows
                .into_iter()
                .map(|(a, b, l, c)| vec![
                    Cell::s(a), Cell::s("p"), Cell::Str(b), Cell::StrList(l.clone()),
                    Cell::StrList(l), Cell::Bool(c),
                ])
                .collect();
            let mut w = TableWriter::create(dir.path(), &LOCAL_ROLES).unwrap();
            for r in &rows {
                w.push(r.clone()).unwrap();
            }
            w.finish().unwrap();
            proptest::prop_assert_eq!(TableReader::read_all(dir.path(), &LOCAL_ROLES).unwrap(), rows);
        }
    }

    #[test]
    fn wrong_arity_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TableWriter::create(dir.path(), &BLOBS).unwrap();
        assert!(w.push(vec![Cell::s("x")]).is_err());
    }
}
