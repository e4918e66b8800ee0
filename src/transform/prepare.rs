//! What a pipeline needs before the data pass: the redaction salts (from the environment or a
//! file, never from the pipeline, never written anywhere), the input paths and ids that
//! `prefix_ids` selects, and the uids of the folders `move` puts objects into. The identities
//! come from a projected scan of the `objects` table (uid, portal_type, path, id; no fields).
//! Offline: reads only local files.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use arrow::array::{Array, StringArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::snapshot::layout;
use crate::snapshot::table::OBJECTS;
use crate::snapshot::table::{Cell, TableReader};

use super::ops::{Context, Obj};
use super::partitions::PlanBuilder;
use super::paths::PrefixSet;
use super::spec::{Op, Pipeline, Problem, SaltSource};

/// The identity of one input object.
pub(crate) struct Identity<'a> {
    pub uid: &'a str,
    pub portal_type: &'a str,
    pub path: &'a str,
    pub id: &'a str,
}

/// Whether the pipeline needs the identity scan.
pub(crate) fn needs_scan(p: &Pipeline) -> bool {
    p.steps
        .iter()
        .any(|s| matches!(s.op, Op::Move { .. } | Op::PrefixIds { .. }))
}

/// Resolves the salts of the hash redactions; `fixed` replaces every source (inline tests).
///
/// # Errors
/// Every salt that cannot be had, as problems naming the step and key.
pub(crate) fn salts(
    p: &Pipeline,
    fixed: Option<&str>,
) -> std::result::Result<HashMap<usize, Vec<u8>>, Vec<Problem>> {
    let mut out = HashMap::new();
    let mut problems = Vec::new();
    for s in &p.steps {
        let Op::Redact {
            salt: Some(src), ..
        } = &s.op
        else {
            continue;
        };
        let problem = |key: &str, message: String| Problem {
            file: p.path.display().to_string(),
            step: Some(s.index),
            step_name: Some(s.label.clone()),
            key: key.into(),
            message,
        };
        let got = match (fixed, src) {
            (Some(f), _) => Ok(f.as_bytes().to_vec()),
            (None, SaltSource::Env(name)) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(v.into_bytes()),
                _ => Err(problem(
                    "salt_env",
                    format!("environment variable {name} is not set (the redaction salt)"),
                )),
            },
            (None, SaltSource::File(f)) => match std::fs::read(f) {
                Ok(b) if !b.trim_ascii().is_empty() => Ok(b.trim_ascii().to_vec()),
                Ok(_) => Err(problem("salt_file", format!("{} is empty", f.display()))),
                Err(e) => Err(problem("salt_file", format!("{}: {e}", f.display()))),
            },
        };
        match got {
            Ok(b) => {
                out.insert(s.index, b);
            }
            Err(pr) => problems.push(pr),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Builds the context from the input identities, one at a time.
pub(crate) struct ContextBuilder {
    /// Per `fold_fields` step: (step index, source types, source fields).
    folds: Vec<(usize, Vec<String>, Vec<String>)>,
    wanted_parents: HashSet<String>,
    prefix_types: Vec<String>,
    prefix: Option<PrefixSet>,
    /// Per `split_partitions` step: (step index, its plan in the making).
    partitions: Vec<(usize, PlanBuilder)>,
    ctx: Context,
}

impl ContextBuilder {
    /// Starts from the pipeline's steps and the resolved salts.
    pub fn new(p: &Pipeline, salts: HashMap<usize, Vec<u8>>) -> ContextBuilder {
        let mut b = ContextBuilder {
            folds: Vec::new(),
            wanted_parents: HashSet::new(),
            prefix_types: Vec::new(),
            prefix: None,
            partitions: Vec::new(),
            ctx: Context {
                salts,
                ..Context::default()
            },
        };
        for s in &p.steps {
            match &s.op {
                Op::Move { to, .. } => {
                    if let Some((parent, _)) = to.rsplit_once('/') {
                        b.wanted_parents.insert(parent.to_string());
                    }
                }
                Op::PrefixIds {
                    types,
                    prefix: pre,
                    groups,
                    ..
                } => {
                    b.prefix_types = types.clone();
                    b.prefix = Some(PrefixSet {
                        prefix: pre.clone(),
                        groups: *groups,
                        ..PrefixSet::default()
                    });
                }
                Op::FoldFields {
                    from_types, fields, ..
                } => b.folds.push((
                    s.index,
                    from_types.clone(),
                    fields.iter().map(|(from, _)| from.clone()).collect(),
                )),
                Op::SplitPartitions(spec) => b.partitions.push((s.index, PlanBuilder::new(spec))),
                _ => {}
            }
        }
        b
    }

    /// Whether `fold_fields` reads the fields of objects of this (input) type.
    pub fn folds_type(&self, portal_type: &str) -> bool {
        self.folds
            .iter()
            .any(|(_, types, _)| types.iter().any(|t| t == portal_type))
    }

    /// Takes the fields of one input object of a type `fold_fields` reads.
    pub fn add_fold_source(&mut self, uid: &str, portal_type: &str, fields: &Map<String, Value>) {
        for (index, types, names) in &self.folds {
            if !types.iter().any(|t| t == portal_type) {
                continue;
            }
            let kept: Map<String, Value> = names
                .iter()
                .filter_map(|n| fields.get(n).map(|v| (n.clone(), v.clone())))
                .collect();
            self.ctx
                .fold
                .entry(*index)
                .or_default()
                .insert(uid.to_string(), kept);
        }
    }

    /// Takes one input object into account.
    pub fn add(&mut self, i: &Identity<'_>) {
        if self.wanted_parents.contains(i.path) {
            self.ctx
                .move_parents
                .insert(i.path.to_string(), i.uid.to_string());
        }
        if let Some(set) = &mut self.prefix
            && self.prefix_types.iter().any(|t| t == i.portal_type)
        {
            set.paths.insert(i.path.to_string());
            set.ids.insert(i.id.to_string());
        }
    }

    /// Whether a `split_partitions` step needs the partitions scan.
    pub fn has_partitions(&self) -> bool {
        !self.partitions.is_empty()
    }

    /// Whether pass `second` (false: the first) of the partitions scan reads this type.
    pub fn partitions_read(&self, second: bool, portal_type: &str) -> bool {
        self.partitions.iter().any(|(_, b)| {
            if second {
                b.second_reads(portal_type)
            } else {
                b.first_reads(portal_type)
            }
        })
    }

    /// One input object through pass `second` (false: the first) of the partitions scan.
    ///
    /// # Errors
    /// When the object's fields are not a JSON object (naming the uid).
    pub fn add_partitions(&mut self, second: bool, o: &mut Obj) -> std::result::Result<(), String> {
        for (_, b) in &mut self.partitions {
            if second {
                b.second(o)?;
            } else {
                b.first(o)?;
            }
        }
        Ok(())
    }

    /// Between the two passes of the partitions scan.
    pub fn partitions_chosen(&mut self) {
        for (_, b) in &mut self.partitions {
            b.chosen();
        }
    }

    /// The context.
    pub fn finish(mut self) -> Context {
        self.ctx.prefix = self.prefix;
        for (index, b) in self.partitions {
            self.ctx.partitions.insert(index, b.finish());
        }
        self.ctx
    }
}

/// Whether the pipeline reads source objects' fields before the data pass (`fold_fields`).
pub(crate) fn needs_fold_scan(p: &Pipeline) -> bool {
    p.steps
        .iter()
        .any(|s| matches!(s.op, Op::FoldFields { .. }))
}

/// Feeds the fields of every input object of a type `fold_fields` reads to the builder.
///
/// # Errors
/// When the table cannot be read or an object's fields are not a JSON object (naming the
/// file and the uid).
pub(crate) fn scan_fold_sources(snap: &Path, b: &mut ContextBuilder) -> Result<()> {
    let path = snap.join(layout::table_rel(OBJECTS.name));
    let (c_uid, c_type, c_fields) = (
        OBJECTS.col("uid").unwrap_or(0),
        OBJECTS.col("portal_type").unwrap_or(1),
        OBJECTS.col("fields").unwrap_or(11),
    );
    for row in TableReader::open(snap, &OBJECTS)? {
        let row = row?;
        let pt = row.get(c_type).and_then(Cell::as_str).unwrap_or_default();
        if !b.folds_type(pt) {
            continue;
        }
        let uid = row.get(c_uid).and_then(Cell::as_str).unwrap_or_default();
        let text = row.get(c_fields).and_then(Cell::as_str).unwrap_or("{}");
        match crate::jsonx::parse_lenient(text.as_bytes()) {
            Ok(Value::Object(m)) => b.add_fold_source(uid, pt, &m),
            _ => {
                return Err(Error::snapshot(
                    &path,
                    format!("object {uid}: fields are not a JSON object"),
                ));
            }
        }
    }
    Ok(())
}

/// The two passes `split_partitions` makes over the input before the data pass (nothing when
/// the pipeline has no such step): partitions and primaries first, then the chosen primaries'
/// fields and their members.
///
/// # Errors
/// When the table cannot be read or an object's fields are not a JSON object (naming the
/// file and the uid).
pub(crate) fn scan_partitions(snap: &Path, b: &mut ContextBuilder) -> Result<()> {
    if !b.has_partitions() {
        return Ok(());
    }
    let path = snap.join(layout::table_rel(OBJECTS.name));
    let c_type = OBJECTS.col("portal_type").unwrap_or(1);
    for second in [false, true] {
        if second {
            b.partitions_chosen();
        }
        for row in TableReader::open(snap, &OBJECTS)? {
            let row = row?;
            let pt = row.get(c_type).and_then(Cell::as_str).unwrap_or_default();
            if !b.partitions_read(second, pt) {
                continue;
            }
            let mut o = Obj::from_row(row).ok_or_else(|| {
                Error::snapshot(&path, "an objects row does not have the objects schema")
            })?;
            b.add_partitions(second, &mut o)
                .map_err(|m| Error::snapshot(&path, m))?;
        }
    }
    Ok(())
}

/// Calls `f` with each batch of the string columns `names` of a snapshot's `objects` table (in
/// that order), read straight from Arrow with only those columns decoded.
///
/// # Errors
/// When the table cannot be read or a column is not a string column (naming the file), or
/// what `f` returns.
pub(crate) fn scan_object_columns(
    snap: &Path,
    names: &[&str],
    batch_rows: usize,
    mut f: impl FnMut(&[&StringArray]) -> Result<()>,
) -> Result<()> {
    let path = snap.join(layout::table_rel(OBJECTS.name));
    let file = std::fs::File::open(&path).map_err(|e| Error::read(&path, e))?;
    let perr = |e| Error::Parquet {
        path: path.clone(),
        source: e,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
    let cols: Vec<usize> = names.iter().filter_map(|c| OBJECTS.col(c)).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), cols);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows)
        .build()
        .map_err(perr)?;
    for batch in reader {
        let batch = batch.map_err(|source| Error::Arrow {
            table: path.display().to_string(),
            source,
        })?;
        let arrays: Option<Vec<&StringArray>> = (0..names.len())
            .map(|i| {
                batch
                    .columns()
                    .get(i)
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            })
            .collect();
        match arrays {
            Some(a) => f(&a)?,
            None => return Err(Error::snapshot(&path, "objects has an unexpected schema")),
        }
    }
    Ok(())
}

/// Calls `f` with the identity of every object of a snapshot, reading only those columns.
///
/// # Errors
/// When the table cannot be read (naming the file).
pub(crate) fn scan_identities(snap: &Path, mut f: impl FnMut(Identity<'_>)) -> Result<()> {
    scan_object_columns(snap, &["uid", "portal_type", "path", "id"], 8192, |c| {
        let (u, t, p, id) = (c[0], c[1], c[2], c[3]);
        for r in 0..u.len() {
            if u.is_null(r) {
                continue;
            }
            f(Identity {
                uid: u.value(r),
                portal_type: t.value(r),
                path: p.value(r),
                id: id.value(r),
            });
        }
        Ok(())
    })
}
