//! Reading table files in bounded memory (`diff`, the digest index): each file is decoded on its
//! own thread (projected to the columns needed, optionally restricted to selected rows) and
//! handed over one record batch at a time through a small channel, so a merge never holds more
//! than a few batches of each file and decoding runs in parallel with the work on the rows.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::row::{RowConverter, Rows, SortField};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::file::metadata::PageIndexPolicy;

use crate::error::{Error, Result};
use crate::snapshot::layout;
use crate::snapshot::table::{Cell, TableDef, cell_at};

/// Rows per decoded batch. Small batches keep each decoder's buffers in cache and let the
/// allocator reuse its pages: at 1M objects 2,048 rows took about 20 % less wall time and a
/// third less system time (page faults) than 8,192; 32,768 was slower still and 1,024 no better
/// (`benches/README.md`).
const BATCH_ROWS: usize = 2048;
/// Batches decoded ahead of the consumer, per file.
const AHEAD: usize = 2;

/// A decoded batch: the projected columns, plus the comparable row encoding of every column
/// but the first (`uid`) when asked for.
pub(crate) struct Decoded {
    /// The batch (projected columns, in table order).
    pub batch: RecordBatch,
    /// Row encodings of the non-uid columns: equal bytes, equal values.
    pub rows: Option<Rows>,
}

/// What to read of one table file.
pub(crate) struct ReadSpec {
    /// The table file's snapshot.
    pub snap: PathBuf,
    /// The table.
    pub def: &'static TableDef,
    /// Columns to read (by name, `uid` first); empty for all.
    pub columns: Vec<&'static str>,
    /// Only these row ranges (sorted, disjoint); `None` for every row.
    pub ranges: Option<Vec<Range<usize>>>,
    /// Whether to encode rows for comparison.
    pub encode: bool,
}

/// A table file being decoded on a background thread.
pub(crate) struct BatchStream {
    rx: Receiver<Result<Decoded>>,
}

impl BatchStream {
    /// Starts decoding inside `scope`.
    ///
    /// # Errors
    /// When the file cannot be opened or has an unexpected schema (checked before the thread
    /// starts).
    pub fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        spec: ReadSpec,
    ) -> Result<BatchStream> {
        let path = spec.snap.join(layout::table_rel(spec.def.name));
        let reader = open(&path, &spec)?;
        let (tx, rx) = sync_channel(AHEAD);
        scope.spawn(move || {
            let mut converter: Option<RowConverter> = None;
            for batch in reader {
                let item = batch
                    .map_err(|source| arrow_err(&path, source))
                    .and_then(|batch| {
                        let rows = if spec.encode {
                            Some(encode(&mut converter, &batch, &path)?)
                        } else {
                            None
                        };
                        Ok(Decoded { batch, rows })
                    });
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    return;
                }
            }
        });
        Ok(BatchStream { rx })
    }

    /// The next batch, `None` at the end.
    pub fn next_batch(&self) -> Option<Result<Decoded>> {
        self.rx.recv().ok()
    }
}

fn open(
    path: &Path,
    spec: &ReadSpec,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let file = File::open(path).map_err(|e| Error::read(path, e))?;
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| parquet_err(path, e))?;
    if builder.schema().fields() != spec.def.schema().fields() {
        return Err(Error::snapshot(
            path,
            format!("table {} has an unexpected schema", spec.def.name),
        ));
    }
    let mut builder = builder.with_batch_size(BATCH_ROWS);
    if !spec.columns.is_empty() {
        let mut indices = Vec::new();
        for name in &spec.columns {
            let i = spec.def.col(name).ok_or_else(|| {
                Error::snapshot(
                    path,
                    format!("table {} has no column {name}", spec.def.name),
                )
            })?;
            indices.push(i);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
        builder = builder.with_projection(mask);
    }
    if let Some(ranges) = &spec.ranges {
        let total = builder.metadata().file_metadata().num_rows().max(0) as usize;
        builder = builder.with_row_selection(RowSelection::from_consecutive_ranges(
            ranges.iter().cloned(),
            total,
        ));
    }
    builder.build().map_err(|e| parquet_err(path, e))
}

fn encode(converter: &mut Option<RowConverter>, batch: &RecordBatch, path: &Path) -> Result<Rows> {
    let columns: Vec<ArrayRef> = batch.columns().iter().skip(1).cloned().collect();
    if converter.is_none() {
        let fields = columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        *converter = Some(RowConverter::new(fields).map_err(|e| arrow_err(path, e))?);
    }
    match converter {
        Some(c) => c.convert_columns(&columns).map_err(|e| arrow_err(path, e)),
        None => Err(Error::snapshot(path, "row converter missing")),
    }
}

fn parquet_err(path: &Path, source: parquet::errors::ParquetError) -> Error {
    Error::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn arrow_err(path: &Path, source: arrow::error::ArrowError) -> Error {
    Error::Arrow {
        table: path.display().to_string(),
        source,
    }
}

/// A position in a stream of rows: the current batch and row, and the row's index in the file
/// (counting selected rows only when the stream is a selection).
pub(crate) struct Cursor {
    stream: BatchStream,
    current: Option<Decoded>,
    uids: Option<StringArray>,
    pos: usize,
    /// Index of the current row among the rows the stream yields.
    pub row: u64,
}

impl Cursor {
    /// A cursor on the first row of `stream`.
    ///
    /// # Errors
    /// When the first batch cannot be decoded.
    pub fn new(stream: BatchStream) -> Result<Cursor> {
        let mut c = Cursor {
            stream,
            current: None,
            uids: None,
            pos: 0,
            row: 0,
        };
        c.load()?;
        Ok(c)
    }

    fn load(&mut self) -> Result<()> {
        loop {
            match self.stream.next_batch() {
                None => {
                    self.current = None;
                    self.uids = None;
                    return Ok(());
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(d)) if d.batch.num_rows() == 0 => continue,
                Some(Ok(d)) => {
                    self.uids = d
                        .batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .cloned();
                    self.current = Some(d);
                    self.pos = 0;
                    return Ok(());
                }
            }
        }
    }

    /// The current row's uid (the first column), `None` at the end.
    pub fn uid(&self) -> Option<&str> {
        let uids = self.uids.as_ref()?;
        (!uids.is_null(self.pos)).then(|| uids.value(self.pos))
    }

    /// The current batch and row index within it.
    pub fn at(&self) -> Option<(&Decoded, usize)> {
        self.current.as_ref().map(|d| (d, self.pos))
    }

    /// The current row's comparable encoding (when the stream encodes).
    pub fn encoded(&self) -> Option<&[u8]> {
        let d = self.current.as_ref()?;
        d.rows.as_ref().map(|r| r.row(self.pos).data())
    }

    /// A string column of the current row.
    pub fn str_col(&self, col: usize) -> Option<&str> {
        let (d, pos) = self.at()?;
        let a = d.batch.column(col).as_any().downcast_ref::<StringArray>()?;
        (!a.is_null(pos)).then(|| a.value(pos))
    }

    /// Moves to the next row.
    ///
    /// # Errors
    /// When the next batch cannot be decoded.
    pub fn advance(&mut self) -> Result<()> {
        let Some(d) = &self.current else {
            return Ok(());
        };
        self.row += 1;
        self.pos += 1;
        if self.pos >= d.batch.num_rows() {
            self.load()?;
        }
        Ok(())
    }

    /// The current row as cells of `def` (all columns read), then moves on.
    ///
    /// # Errors
    /// At the end of the stream, or when the next batch cannot be decoded.
    pub fn take_row(&mut self, def: &TableDef) -> Result<Vec<Cell>> {
        let Some((d, pos)) = self.at() else {
            return Err(Error::snapshot(
                PathBuf::from(def.name),
                "selected rows ended early",
            ));
        };
        let row = def
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind, _, _))| cell_at(*kind, d.batch.column(i), pos))
            .collect();
        self.advance()?;
        Ok(row)
    }
}
