//! `review`: one self-contained HTML page (and a `--json` document) an admin reads before a
//! load: objects per portal type and review state, samples created per month, files by size,
//! example records, and the warnings that matter — references to objects that are nowhere,
//! objects whose parent is missing, schema drift against a destination snapshot (`--against`:
//! types and fields the destination does not have), records a load would block (`--plan`, the
//! output of `plan --json`), what changed since an older snapshot (`--diff`, the output of
//! `diff --json`), what a `transform` recorded in the manifest, and the extract's notes.
//!
//! Offline: it never touches the network (no HTTP client, no source module). The objects table is
//! streamed batch by batch ([`crate::snapshot::table::TableReader`]); what stays in memory is a
//! compact index of uids and path hashes, per-type counters and field statistics, a bounded
//! number of example records per type and bounded lists of warnings (with their totals).
//! Everything taken from a snapshot or a JSON file is untrusted and HTML-escaped on output.

mod drift;
mod examples;
mod html;
mod index;
mod inputs;
mod scan;
mod sections;
mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::snapshot::Snapshot;
use crate::snapshot::manifest::Note;

pub use drift::{Drift, FieldGap, TypeGap};
pub use inputs::{DiffSummary, PlanSummary, TransformInfo};
pub use scan::{
    BlobSummary, Capped, DanglingRef, Example, GroupCount, Grouped, Orphan, TypeSummary,
};

/// Example records shown per portal type unless `--examples` says otherwise.
pub const DEFAULT_EXAMPLES: usize = 3;
/// Entries kept per warning list (the totals count every one).
pub const LISTED: usize = 200;

/// What `review` reads.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    /// The snapshot to review.
    pub snapshot: PathBuf,
    /// A snapshot of the destination, for schema drift.
    pub against: Option<PathBuf>,
    /// The output of `plan --json` for this snapshot.
    pub plan: Option<PathBuf>,
    /// The output of `diff --json` with this snapshot on one side.
    pub diff: Option<PathBuf>,
    /// Example records kept per portal type.
    pub examples: usize,
}

impl ReviewOptions {
    /// Options reviewing `snapshot` alone, with the default number of examples.
    pub fn new(snapshot: impl Into<PathBuf>) -> ReviewOptions {
        ReviewOptions {
            snapshot: snapshot.into(),
            against: None,
            plan: None,
            diff: None,
            examples: DEFAULT_EXAMPLES,
        }
    }
}

/// The reviewed snapshot's identity and totals.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    /// Directory.
    pub dir: String,
    /// Snapshot id.
    pub snapshot_id: String,
    /// Source site URL.
    pub source: String,
    /// When it was completed.
    pub finished_at: String,
    /// The tool and version that wrote it.
    pub tool: String,
    /// Objects.
    pub objects: u64,
    /// Users.
    pub users: u64,
    /// Groups.
    pub groups: u64,
    /// Review-history entries.
    pub history_entries: u64,
    /// For a delta snapshot: the id of its base.
    pub base: Option<String>,
}

/// The warnings found in the snapshot itself.
#[derive(Debug, Clone, Serialize)]
pub struct Warnings {
    /// References whose target is not in the snapshot (and, with `--against`, whether the
    /// destination snapshot has it).
    pub dangling_references: Capped<DanglingRef>,
    /// Dangling references per `portal_type.field`.
    pub dangling_by_field: Grouped,
    /// The missing targets referenced most often.
    pub dangling_targets: Grouped,
    /// Objects whose parent is neither in the snapshot nor the site root.
    pub orphans: Capped<Orphan>,
    /// The missing parents with the most children.
    pub orphan_parents: Grouped,
    /// The manifest's notes (what the extract could not read, fallbacks, transform notes).
    pub notes: Vec<Note>,
}

/// Everything `review` found; serialized as the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewReport {
    /// The reviewed snapshot.
    pub snapshot: SnapshotInfo,
    /// Objects per portal type: count, review states, number of distinct fields, examples.
    pub types: BTreeMap<String, TypeSummary>,
    /// Samples (`AnalysisRequest`) created per month (`YYYY-MM`, months without samples
    /// between the first and the last included as 0; per year when the span is very long).
    pub samples_per_period: BTreeMap<String, u64>,
    /// Files: totals, a size histogram and the largest ones.
    pub blobs: BlobSummary,
    /// Warnings from the snapshot itself.
    pub warnings: Warnings,
    /// Schema drift against the destination snapshot (`--against`).
    pub drift: Option<Drift>,
    /// What the plan says (`--plan`).
    pub plan: Option<PlanSummary>,
    /// What the diff says (`--diff`).
    pub diff: Option<DiffSummary>,
    /// Provenance and losses a `transform` recorded in the manifest.
    pub transform: Option<TransformInfo>,
}

impl ReviewReport {
    /// The number of warnings that matter, for the page header and the command's summary line.
    pub fn warning_count(&self) -> u64 {
        let w = &self.warnings;
        let mut n = w.dangling_references.total + w.orphans.total;
        if let Some(d) = &self.drift {
            n += d.types_missing_in_destination.len() as u64;
            n += d
                .fields_missing_in_destination
                .iter()
                .filter(|f| f.with_value > 0)
                .count() as u64;
        }
        if let Some(p) = &self.plan {
            n += p.blocked.total + p.unresolved.total;
        }
        if let Some(t) = &self.transform {
            n += t.dropped_objects.unwrap_or(0) + t.dangling_references.unwrap_or(0);
        }
        n
    }

    /// The page as HTML.
    pub fn to_html(&self) -> String {
        html::render(self)
    }
}

/// Reviews a snapshot.
///
/// # Errors
/// When a snapshot is missing, incomplete or corrupt (every file is checked against the
/// manifest), a table cannot be decoded, or a `--plan`/`--diff` file is unreadable or not the
/// output it should be (the error names the file).
pub fn run(opts: &ReviewOptions) -> Result<ReviewReport> {
    let snap = Snapshot::open(&opts.snapshot)?;
    let dest = match &opts.against {
        Some(dir) => Some(index::scan_destination(&Snapshot::open(dir)?)?),
        None => None,
    };
    let scanned = scan::scan_source(&snap, opts.examples, dest.as_ref())?;
    let counts: BTreeMap<String, u64> = scanned
        .types
        .iter()
        .map(|(t, s)| (t.clone(), s.count))
        .collect();
    let drift = dest
        .as_ref()
        .map(|d| drift::compare(&scanned.fields, &counts, d));
    let plan = match &opts.plan {
        Some(file) => Some(inputs::read_plan(
            file,
            &scanned.index,
            &snap.manifest.snapshot_id,
        )?),
        None => None,
    };
    let diff = match &opts.diff {
        Some(file) => Some(inputs::read_diff(file, &snap.manifest.snapshot_id)?),
        None => None,
    };
    let transform = inputs::transform_info(&snap.dir)?;
    let rows = |table: &str| {
        snap.manifest
            .file(&crate::snapshot::layout::table_rel(table))
            .map_or(0, |f| f.rows)
    };
    let m = &snap.manifest;
    Ok(ReviewReport {
        snapshot: SnapshotInfo {
            dir: display(&snap.dir),
            snapshot_id: m.snapshot_id.clone(),
            source: m.source.site_url.clone(),
            finished_at: m.finished_at.clone(),
            tool: format!("{} {}", m.tool.name, m.tool.version),
            objects: scanned.objects,
            users: rows("users"),
            groups: rows("groups"),
            history_entries: rows("workflow_history"),
            base: m.base.as_ref().map(|b| b.snapshot_id.clone()),
        },
        types: scanned.types,
        samples_per_period: scan::periods(&scanned.months),
        blobs: scanned.blobs,
        warnings: Warnings {
            dangling_references: scanned.dangling,
            dangling_by_field: scanned.dangling_fields,
            dangling_targets: scanned.dangling_targets,
            orphans: scanned.orphans,
            orphan_parents: scanned.orphan_parents,
            notes: m.notes.clone(),
        },
        drift,
        plan,
        diff,
        transform,
    })
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
