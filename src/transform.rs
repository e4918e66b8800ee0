//! The `transform` stage: a snapshot in, a reshaped snapshot out, by a pipeline of steps read
//! from a TOML file (`pipelines/`): filter objects, rename types, rename / drop / set / map
//! field values, move folders, prefix ids for lab merges, redact personal data, fold a
//! referenced object's fields into the referencing one and put states under another workflow
//! (`fold_fields`, `map_states`: BIKA 3.1 to SENAITE 2.6). Offline: it
//! reads and writes local files only and never touches the network.
//!
//! The whole pipeline is validated (every problem at once) before any data is read. Objects
//! stream through in batches, transformed in parallel (rayon) between a reader and a writer
//! thread; the other tables follow, each on its own thread, dropping the rows of dropped
//! objects and renaming the `blobs` rows of renamed file fields. Memory holds the uids of
//! dropped objects, for `prefix_ids` the input paths and ids of the selected objects, for
//! `fold_fields` the folded fields of the source objects, for `map_states` the one state row
//! per object it sets, and for `split_partitions` (BIKA 3.1 sample partitions to SENAITE 2.x
//! partitions) the partitions' and primaries' identities and the partitioned primaries' fields.
//! The output is a snapshot of the same format; its manifest's `notes` record the input
//! snapshot id, the pipeline and its sha256, the objects dropped and the references left
//! dangling (kind `transform`).

pub mod spec;

mod check;

mod engine;
mod ops;
mod partitions;
mod paths;
mod prepare;
mod records;
mod selftest;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};

pub use selftest::{TestFailure, TestReport, run_tests};
pub use spec::{Pipeline, Problem};

/// Checked options of `transform`.
#[derive(Debug, Clone)]
pub struct TransformOptions {
    /// The input snapshot.
    pub input: PathBuf,
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// The output snapshot directory.
    pub out: PathBuf,
    /// Replace an existing output.
    pub force: bool,
}

/// A reference from a kept object to an object the transform dropped.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct DanglingRef {
    /// The referencing object.
    pub uid: String,
    /// Its field.
    pub field: String,
    /// The dropped object.
    pub target: String,
}

/// What a transform did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TransformReport {
    /// The output directory.
    pub out: String,
    /// Output snapshot id.
    pub snapshot_id: String,
    /// Input snapshot id.
    pub input_snapshot_id: String,
    /// Pipeline file.
    pub pipeline: String,
    /// sha256 of the pipeline file's bytes.
    pub pipeline_sha256: String,
    /// Objects read.
    pub objects_in: u64,
    /// Objects written.
    pub objects_out: u64,
    /// Objects whose fields or identity a step changed.
    pub objects_changed: u64,
    /// Objects dropped, per portal type (as they were when dropped).
    pub dropped: BTreeMap<String, u64>,
    /// Objects merged into another object (not lost: their fields live on there), per portal
    /// type; e.g. a BIKA sample's only partition folded into its analysis request.
    pub merged: BTreeMap<String, u64>,
    /// Rows written per table.
    pub rows: BTreeMap<String, u64>,
    /// Rows of the per-object tables dropped with their objects.
    pub rows_dropped: BTreeMap<String, u64>,
    /// References from kept objects to dropped ones (total).
    pub dangling_total: u64,
    /// The first of them.
    pub dangling: Vec<DanglingRef>,
    /// Kept objects whose parent was dropped.
    pub orphans: u64,
    /// Raw streams carried verbatim / left out.
    pub raw_carried: Vec<String>,
    /// Raw streams left out.
    pub raw_dropped: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

/// Dangling references listed in the report (all are counted).
pub const DANGLING_SHOWN: usize = 200;

fn problems_error(problems: &[Problem]) -> Error {
    let mut text = format!("{} problem(s) in the pipeline:", problems.len());
    for p in problems {
        text.push_str("\n  ");
        text.push_str(&p.to_string());
    }
    Error::Usage(text)
}

/// Reads and validates a pipeline (every problem at once).
///
/// # Errors
/// A usage error listing every problem with file, step and key.
pub fn check(path: &std::path::Path) -> Result<Pipeline> {
    spec::load(path).map_err(|p| problems_error(&p))
}

/// Runs a pipeline over a snapshot.
///
/// # Errors
/// Pipeline problems (all listed), a corrupt input, an existing output without `force`,
/// unreadable objects, or I/O failures (each naming its file).
pub fn run(opts: &TransformOptions) -> Result<TransformReport> {
    let pipeline = check(&opts.pipeline)?;
    let salts = prepare::salts(&pipeline, None).map_err(|p| problems_error(&p))?;
    engine::run(opts, &pipeline, salts)
}

/// Renders the report as text.
pub fn render_text(r: &TransformReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "transformed {} -> {}\npipeline  {} (sha256 {})\nobjects   {} in, {} out, {} changed\n",
        r.input_snapshot_id,
        r.out,
        r.pipeline,
        r.pipeline_sha256,
        r.objects_in,
        r.objects_out,
        r.objects_changed
    ));
    if !r.dropped.is_empty() {
        let d: Vec<String> = r.dropped.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        s.push_str(&format!("dropped   {}\n", d.join(" ")));
        let rd: Vec<String> = r
            .rows_dropped
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        s.push_str(&format!("  with their rows  {}\n", rd.join(" ")));
    }
    if !r.merged.is_empty() {
        let m: Vec<String> = r.merged.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        s.push_str(&format!("merged    {} (into other objects)\n", m.join(" ")));
    }
    s.push_str(&format!(
        "references to dropped objects: {}\n",
        r.dangling_total
    ));
    for d in r.dangling.iter().take(20) {
        s.push_str(&format!("  {} {} -> {}\n", d.uid, d.field, d.target));
    }
    s.push_str(&format!(
        "objects whose parent was dropped: {}\n",
        r.orphans
    ));
    if !r.raw_dropped.is_empty() {
        s.push_str(&format!(
            "raw streams left out (stale after a transform): {}\n",
            r.raw_dropped.join(", ")
        ));
    }
    s.push_str(&format!(
        "snapshot  {} ({:.1}s)\n",
        r.snapshot_id, r.seconds
    ));
    s
}

/// Validates a pipeline, its salts and the input snapshot (checksums), writing nothing.
///
/// # Errors
/// Pipeline problems (all listed), missing salts, or a corrupt input.
pub fn dry_run(input: &std::path::Path, pipeline: &std::path::Path) -> Result<Pipeline> {
    let p = check(pipeline)?;
    prepare::salts(&p, None).map_err(|e| problems_error(&e))?;
    crate::snapshot::Snapshot::open(input)?;
    Ok(p)
}
