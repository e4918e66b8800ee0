//! The data pass of `transform`: objects stream from a reader thread through the steps (rayon,
//! one chunk of rows at a time) to a writer thread; then the per-object tables follow, each on
//! its own thread, and the output's manifest is written last. The output is staged beside its
//! target and renamed into place when complete. Offline: local files only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use rayon::prelude::*;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::snapshot::Snapshot;
use crate::snapshot::blobs;
use crate::snapshot::layout;
use crate::snapshot::manifest::{
    BlobTotals, FORMAT_NAME, FORMAT_VERSION, FileEntry, Manifest, Note, SourceInfo, ToolInfo,
};
use crate::snapshot::table::{
    ALL_TABLES, BLOBS, Cell, OBJECTS, TableDef, TableReader, TableWriter, USERS, WORKFLOW_HISTORY,
    WORKFLOW_STATES,
};
use crate::snapshot::writer::now_rfc3339;

use super::ops::{self, BlobEffect, Context, Obj, StateRow};
use super::paths::PrefixSet;
use super::prepare::{self, ContextBuilder};
use super::spec::Pipeline;
use super::{DANGLING_SHOWN, DanglingRef, TransformOptions, TransformReport};

/// Rows per chunk handed to the parallel step.
const CHUNK_ROWS: usize = 4096;
/// Chunks buffered between the threads.
const AHEAD: usize = 2;
/// Raw streams carried verbatim: site-wide records (catalogs, users, groups, registry,
/// settings) that no step changes. The per-object streams (`jsonapi`, `restapi`) hold the
/// input's records as the source answered them; after a transform they would contradict the
/// tables, so they are left out (and the manifest says so).
const RAW_CARRIED: &[&str] = &["site"];

/// Per-object tables (keyed by `uid` in their first column).
const SIDE_TABLES: &[&str] = &[
    "workflow_history",
    "workflow_states",
    "local_roles",
    "blobs",
];

/// What the objects pass found.
#[derive(Default)]
struct ObjectsPass {
    objects_in: u64,
    objects_out: u64,
    changed: u64,
    counts: BTreeMap<String, u64>,
    dropped_by_type: BTreeMap<String, u64>,
    /// Objects merged into others, per type (their uids are in `dropped` too: their rows go).
    merged_by_type: BTreeMap<String, u64>,
    dropped: HashSet<String>,
    blob_effects: HashMap<String, Vec<BlobEffect>>,
    /// `map_states`: each object's one `workflow_states` row (workflow, state), by uid.
    state_effects: StateEffects,
}

/// The set rows of [`StateEffects`], read back in uid order.
type Effects = Box<dyn Iterator<Item = Result<(String, StateRow)>> + Send>;

/// The rows `map_states` sets, spilled to a file in the staging directory as objects are
/// transformed (in uid order), so memory does not grow with the number of mapped objects;
/// read back in uid order when `workflow_states` is written.
#[derive(Debug, Default)]
struct StateEffects {
    /// The spill file (JSON lines `[uid, workflow, state]`).
    path: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    last: Option<String>,
    /// Whether every uid arrived after the one before (else they are sorted when read).
    unsorted: bool,
    count: u64,
}

impl StateEffects {
    fn new(staging: &Path) -> StateEffects {
        StateEffects {
            path: staging.join(".state-effects.jsonl.tmp"),
            ..StateEffects::default()
        }
    }

    fn insert(&mut self, uid: String, (wf, state): StateRow) -> Result<()> {
        use std::io::Write;
        if self.out.is_none() {
            let f = std::fs::File::create(&self.path).map_err(|e| Error::write(&self.path, e))?;
            self.out = Some(std::io::BufWriter::new(f));
        }
        if let Some(out) = self.out.as_mut() {
            let line = serde_json::json!([uid, wf, state]).to_string();
            writeln!(out, "{line}").map_err(|e| Error::write(&self.path, e))?;
        }
        self.unsorted |= self.last.as_ref().is_some_and(|l| *l >= uid);
        self.last = Some(uid);
        self.count += 1;
        Ok(())
    }

    /// Ends the writing (after the objects pass).
    fn finish(&mut self) -> Result<()> {
        use std::io::Write;
        if let Some(mut out) = self.out.take() {
            out.flush().map_err(|e| Error::write(&self.path, e))?;
        }
        Ok(())
    }

    /// Every effect in uid order (a later one for the same uid wins).
    fn read(&self) -> Result<Effects> {
        use std::io::BufRead;
        if self.count == 0 {
            return Ok(Box::new(std::iter::empty()));
        }
        let path = self.path.clone();
        let f = std::fs::File::open(&path).map_err(|e| Error::read(&path, e))?;
        let parse = move |line: std::io::Result<String>| -> Result<(String, StateRow)> {
            let line = line.map_err(|e| Error::read(&path, e))?;
            let (uid, wf, state): (String, String, Option<String>) = serde_json::from_str(&line)
                .map_err(|source| Error::JsonFile {
                    path: path.clone(),
                    source,
                })?;
            Ok((uid, (wf, state)))
        };
        let lines = std::io::BufReader::new(f).lines().map(parse);
        if !self.unsorted {
            return Ok(Box::new(lines));
        }
        let mut all = BTreeMap::new();
        for r in lines {
            let (uid, row) = r?;
            all.insert(uid, row);
        }
        Ok(Box::new(all.into_iter().map(Ok)))
    }
}

/// One object's result.
enum Done {
    Kept {
        row: Vec<Cell>,
        changed: bool,
        effects: Vec<BlobEffect>,
        state: Option<StateRow>,
    },
    Dropped {
        uid: String,
        portal_type: String,
        /// Merged into another object rather than dropped.
        merged: bool,
    },
}

pub(super) fn run(
    opts: &TransformOptions,
    pipeline: &Pipeline,
    salts: HashMap<usize, Vec<u8>>,
) -> Result<TransformReport> {
    let started = Instant::now();
    let input = Snapshot::open(&opts.input)?;
    if opts.out.exists() && !opts.force {
        return Err(Error::snapshot(
            &opts.out,
            "already exists; choose another --out or add --force to replace it",
        ));
    }
    if same_dir(&opts.input, &opts.out) {
        return Err(Error::snapshot(&opts.out, "is the input snapshot itself"));
    }
    let name = opts
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "transformed".into());
    let staging = opts
        .out
        .with_file_name(format!(".{name}.partial-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::write(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| Error::write(&staging, e))?;
    let result = write_output(&input, pipeline, salts, &staging, opts, started);
    if result.is_err() {
        // Best effort: the staging directory is also replaced by the next run.
        let _ignored = std::fs::remove_dir_all(&staging);
    }
    result
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn write_output(
    input: &Snapshot,
    pipeline: &Pipeline,
    salts: HashMap<usize, Vec<u8>>,
    staging: &Path,
    opts: &TransformOptions,
    started: Instant,
) -> Result<TransformReport> {
    let mut builder = ContextBuilder::new(pipeline, salts);
    if prepare::needs_scan(pipeline) {
        prepare::scan_identities(&input.dir, |i| builder.add(&i))?;
    }
    if prepare::needs_fold_scan(pipeline) {
        prepare::scan_fold_sources(&input.dir, &mut builder)?;
    }
    prepare::scan_partitions(&input.dir, &mut builder)?;
    let ctx = builder.finish();
    let pass = objects_pass(&input.dir, staging, pipeline, &ctx)?;
    let mut report = TransformReport {
        out: opts.out.display().to_string(),
        input_snapshot_id: input.manifest.snapshot_id.clone(),
        pipeline: pipeline.path.display().to_string(),
        pipeline_sha256: pipeline.sha256.clone(),
        objects_in: pass.objects_in,
        objects_out: pass.objects_out,
        objects_changed: pass.changed,
        dropped: pass.dropped_by_type.clone(),
        merged: pass.merged_by_type.clone(),
        ..TransformReport::default()
    };
    report.rows.insert(OBJECTS.name.into(), pass.objects_out);
    let renames: Vec<(String, String)> = pipeline
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            super::spec::Op::RenameWorkflow { from, to } => Some((from.clone(), to.clone())),
            _ => None,
        })
        .collect();
    let side = side_tables(&input.dir, staging, &pass, ctx.prefix.as_ref(), &renames)?;
    let mut shas = BTreeSet::new();
    for (name, rows, dropped, table_shas) in side {
        report.rows.insert(name.to_string(), rows);
        if dropped > 0 {
            report.rows_dropped.insert(name.to_string(), dropped);
        }
        shas.extend(table_shas);
    }
    if !pass.dropped.is_empty() {
        dangling_pass(staging, &pass.dropped, &mut report)?;
    }
    let blob_totals = link_blobs(&input.dir, staging, &shas)?;
    let mut files = Vec::new();
    for def in ALL_TABLES {
        let rel = layout::table_rel(def.name);
        let (sha256, bytes) = blobs::hash_file(&staging.join(&rel))?;
        files.push(FileEntry {
            path: rel,
            kind: "table".into(),
            rows: report.rows.get(def.name).copied().unwrap_or(0),
            bytes,
            sha256,
        });
    }
    files.extend(crate::snapshot::digest::write(staging)?);
    for f in input.manifest.files.iter().filter(|f| f.kind == "raw") {
        let carried = RAW_CARRIED.iter().any(|s| layout::raw_rel(s) == f.path);
        if carried {
            let (src, dst) = (input.dir.join(&f.path), staging.join(&f.path));
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
            }
            std::fs::copy(&src, &dst).map_err(|e| Error::write(&dst, e))?;
            files.push(f.clone());
            report.raw_carried.push(f.path.clone());
        } else {
            report.raw_dropped.push(f.path.clone());
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut notes = input.manifest.notes.clone();
    notes.extend(provenance(&report));
    let source = moved_site(&input.manifest.source, pipeline);
    if source.site_url != input.manifest.source.site_url {
        notes.push(Note {
            kind: "transform".into(),
            subject: "site_root".into(),
            message: format!(
                "a move of the site root: paths are under {} (source site {}); a load maps \
                 that root onto the destination's",
                crate::snapshot::site_path(&source.site_url),
                input.manifest.source.site_url
            ),
        });
    }
    notes.sort();
    notes.dedup();
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        snapshot_id: Manifest::compute_id(&files),
        tool: ToolInfo::current(),
        source,
        started_at: input.manifest.started_at.clone(),
        finished_at: now_rfc3339(),
        request: input.manifest.request.clone(),
        files,
        counts: pass.counts,
        blobs: blob_totals,
        notes,
        base: input.manifest.base.clone(),
    };
    manifest.write(staging)?;
    if opts.out.exists() {
        std::fs::remove_dir_all(&opts.out).map_err(|e| Error::write(&opts.out, e))?;
    }
    std::fs::rename(staging, &opts.out).map_err(|e| Error::write(&opts.out, e))?;
    report.snapshot_id = manifest.snapshot_id;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The source as the output's manifest states it: a `move` of the site root itself (its `from`
/// is the path of `site_url`, e.g. `/lims` to `/senaite`) moves the site URL's path too, so
/// that `load` (which maps the snapshot's site root onto the destination's) finds the objects
/// under the new root. Every other source is kept as it is.
fn moved_site(src: &SourceInfo, pipeline: &Pipeline) -> SourceInfo {
    let mut out = src.clone();
    for s in &pipeline.steps {
        if let super::spec::Op::Move { from, to } = &s.op {
            let root = crate::snapshot::site_path(&out.site_url);
            if *from == root
                && let Some(base) = out.site_url.strip_suffix(root.as_str())
            {
                out.site_url = format!("{base}{to}");
            }
        }
    }
    out
}

/// The transform's provenance as manifest notes (kind `transform`).
fn provenance(r: &TransformReport) -> Vec<Note> {
    let note = |subject: &str, message: String| Note {
        kind: "transform".into(),
        subject: subject.into(),
        message,
    };
    let mut out = vec![
        note("input_snapshot_id", r.input_snapshot_id.clone()),
        note("pipeline", r.pipeline.clone()),
        note("pipeline_sha256", r.pipeline_sha256.clone()),
    ];
    let dropped: u64 = r.dropped.values().sum();
    if dropped > 0 {
        let per: Vec<String> = r.dropped.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        out.push(note(
            "dropped_objects",
            format!("{dropped} objects dropped ({})", per.join(" ")),
        ));
    }
    let merged: u64 = r.merged.values().sum();
    if merged > 0 {
        let per: Vec<String> = r.merged.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        out.push(note(
            "merged_objects",
            format!(
                "{merged} objects merged into others, their fields kept there ({})",
                per.join(" ")
            ),
        ));
    }
    if r.dangling_total > 0 {
        let first: Vec<String> = r
            .dangling
            .iter()
            .take(10)
            .map(|d| format!("{} {} -> {}", d.uid, d.field, d.target))
            .collect();
        out.push(note(
            "dangling_references",
            format!(
                "{} references to dropped objects (first: {})",
                r.dangling_total,
                first.join("; ")
            ),
        ));
    }
    for raw in &r.raw_dropped {
        out.push(note(
            raw,
            "left out: the input's verbatim records, stale after the transform (the tables \
             hold the transformed data)"
                .into(),
        ));
    }
    out
}

fn objects_pass(
    input: &Path,
    staging: &Path,
    pipeline: &Pipeline,
    ctx: &Context,
) -> Result<ObjectsPass> {
    let src_path = input.join(layout::table_rel(OBJECTS.name));
    let reader = TableReader::open(input, &OBJECTS)?;
    let mut writer = TableWriter::create(staging, &OBJECTS)?;
    let mut pass = ObjectsPass {
        state_effects: StateEffects::new(staging),
        ..ObjectsPass::default()
    };
    std::thread::scope(|scope| -> Result<()> {
        let (read_tx, read_rx) = sync_channel::<Result<Vec<Vec<Cell>>>>(AHEAD);
        let (write_tx, write_rx) = sync_channel::<Vec<Vec<Cell>>>(AHEAD);
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(CHUNK_ROWS);
            for row in reader {
                match row {
                    Ok(r) => chunk.push(r),
                    Err(e) => {
                        let _closed = read_tx.send(Err(e));
                        return;
                    }
                }
                if chunk.len() >= CHUNK_ROWS {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
                    if read_tx.send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            if !chunk.is_empty() {
                let _closed = read_tx.send(Ok(chunk));
            }
        });
        let writing = scope.spawn(move || -> Result<u64> {
            for rows in write_rx {
                for r in rows {
                    writer.push(r)?;
                }
            }
            writer.finish()
        });
        let mut failure = None;
        for chunk in read_rx {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            pass.objects_in += chunk.len() as u64;
            let done: Vec<std::result::Result<Done, String>> = chunk
                .into_par_iter()
                .map(|row| transform_row(row, pipeline, ctx))
                .collect();
            let mut kept = Vec::with_capacity(done.len());
            for d in done {
                match d {
                    Ok(Done::Kept {
                        row,
                        changed,
                        effects,
                        state,
                    }) => {
                        if let Some(st) = state {
                            let uid = row[0].as_str().unwrap_or_default().to_string();
                            if let Err(e) = pass.state_effects.insert(uid, st) {
                                failure = Some(e);
                                break;
                            }
                        }
                        let pt = row[1].as_str().unwrap_or_default();
                        *pass.counts.entry(pt.to_string()).or_default() += 1;
                        pass.changed += u64::from(changed);
                        if !effects.is_empty() {
                            let uid = row[0].as_str().unwrap_or_default().to_string();
                            pass.blob_effects.insert(uid, effects);
                        }
                        kept.push(row);
                    }
                    Ok(Done::Dropped {
                        uid,
                        portal_type,
                        merged,
                    }) => {
                        let per = if merged {
                            &mut pass.merged_by_type
                        } else {
                            &mut pass.dropped_by_type
                        };
                        *per.entry(portal_type).or_default() += 1;
                        pass.dropped.insert(uid);
                    }
                    Err(m) => {
                        failure = Some(Error::snapshot(&src_path, m));
                        break;
                    }
                }
            }
            if failure.is_some() {
                break;
            }
            pass.objects_out += kept.len() as u64;
            if write_tx.send(kept).is_err() {
                break;
            }
        }
        drop(write_tx);
        let written = writing
            .join()
            .map_err(|_| Error::snapshot(staging, "the table writer thread panicked"))?;
        if let Some(e) = failure {
            return Err(e);
        }
        written?;
        Ok(())
    })?;
    pass.state_effects.finish()?;
    Ok(pass)
}

fn transform_row(
    row: Vec<Cell>,
    pipeline: &Pipeline,
    ctx: &Context,
) -> std::result::Result<Done, String> {
    let mut o = Obj::from_row(row).ok_or("an objects row does not have the objects schema")?;
    if pipeline.steps.is_empty() {
        return Ok(Done::Kept {
            row: o.into_row(),
            changed: false,
            effects: Vec::new(),
            state: None,
        });
    }
    let before = (
        o.portal_type.clone(),
        o.path.clone(),
        o.parent_uid.clone(),
        o.title.clone(),
    );
    let outcome = ops::apply(&pipeline.steps, ctx, &mut o)?;
    if !outcome.keep {
        return Ok(Done::Dropped {
            uid: o.uid,
            portal_type: o.portal_type,
            merged: outcome.merged_into.is_some(),
        });
    }
    let changed = o.dirty
        || before
            != (
                o.portal_type.clone(),
                o.path.clone(),
                o.parent_uid.clone(),
                o.title.clone(),
            );
    Ok(Done::Kept {
        row: o.into_row(),
        changed,
        effects: outcome.blob_effects,
        state: outcome.state,
    })
}

type SideResult = (&'static str, u64, u64, BTreeSet<String>);

/// Copies the other tables, each on its own thread: rows of dropped objects are left out,
/// `blobs` rows follow renamed or removed file fields.
fn side_tables(
    input: &Path,
    staging: &Path,
    pass: &ObjectsPass,
    groups: Option<&PrefixSet>,
    renames: &[(String, String)],
) -> Result<Vec<SideResult>> {
    let groups = groups.filter(|p| p.groups);
    let defs: Vec<&'static TableDef> = ALL_TABLES
        .iter()
        .copied()
        .filter(|d| d.name != OBJECTS.name)
        .collect();
    let results: Vec<Result<SideResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = defs
            .iter()
            .map(|def| scope.spawn(move || copy_table(input, staging, def, pass, groups, renames)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::snapshot(staging, "a table thread panicked")))
            })
            .collect()
    });
    if pass.state_effects.count > 0 {
        let spill = &pass.state_effects.path;
        std::fs::remove_file(spill).map_err(|e| Error::write(spill, e))?;
    }
    results.into_iter().collect()
}

fn copy_table(
    input: &Path,
    staging: &Path,
    def: &'static TableDef,
    pass: &ObjectsPass,
    groups: Option<&PrefixSet>,
    renames: &[(String, String)],
) -> Result<SideResult> {
    let per_object = SIDE_TABLES.contains(&def.name);
    let is_blobs = def.name == BLOBS.name;
    let (field_col, sha_col) = (
        BLOBS.col("field").unwrap_or(1),
        BLOBS.col("sha256").unwrap_or(5),
    );
    let mut w = TableWriter::create(staging, def)?;
    let mut renamer = GroupRenamer::new(def);
    let mut workflows = (def.name == WORKFLOW_HISTORY.name && !renames.is_empty())
        .then(|| WorkflowRenamer::new(renames, staging));
    let mut dropped = 0u64;
    let mut shas = BTreeSet::new();
    let mut states = match def.name == WORKFLOW_STATES.name {
        true => Some(StateMerge::new(pass)?),
        false => None,
    };
    for row in TableReader::open(input, def)? {
        let mut row = row?;
        if let Some(m) = &mut states {
            m.push(&mut w, row)?;
            continue;
        }
        if per_object {
            let uid = row.first().and_then(Cell::as_str).unwrap_or_default();
            if pass.dropped.contains(uid) {
                dropped += 1;
                continue;
            }
            if is_blobs && let Some(effects) = pass.blob_effects.get(uid) {
                let field = row
                    .get(field_col)
                    .and_then(Cell::as_str)
                    .unwrap_or_default();
                match effects.iter().find(|(old, _)| old == field) {
                    Some((_, None)) => {
                        dropped += 1;
                        continue;
                    }
                    Some((_, Some(new))) => row[field_col] = Cell::s(new.as_str()),
                    None => {}
                }
            }
        }
        if is_blobs && let Some(sha) = row.get(sha_col).and_then(Cell::as_str) {
            shas.insert(sha.to_string());
        }
        if let Some(r) = &mut workflows {
            r.push(&mut w, row)?;
            continue;
        }
        match groups {
            Some(g) => renamer.push(&mut w, row, g)?,
            None => w.push(row)?,
        }
    }
    renamer.flush(&mut w)?;
    if let Some(r) = &mut workflows {
        r.flush(&mut w)?;
    }
    if let Some(m) = &mut states {
        m.finish(&mut w)?;
        dropped += m.replaced;
    }
    let rows = w.finish()?;
    Ok((def.name, rows, dropped, shas))
}

/// Copies `workflow_states` (sorted by uid, workflow) with the rows of objects `map_states`
/// set replaced by their one row, merged in uid order; rows of dropped objects are left out.
struct StateMerge<'a> {
    pass: &'a ObjectsPass,
    pending: Effects,
    next: Option<(String, StateRow)>,
    /// The last uid whose rows a set row replaced (its later input rows are left out too).
    replacing: Option<String>,
    /// Input rows of dropped objects left out.
    replaced: u64,
}

impl<'a> StateMerge<'a> {
    fn new(pass: &'a ObjectsPass) -> Result<StateMerge<'a>> {
        let mut pending = pass.state_effects.read()?;
        let next = pending.next().transpose()?;
        Ok(StateMerge {
            pass,
            pending,
            next,
            replacing: None,
            replaced: 0,
        })
    }

    /// Writes the set rows of uids sorting before `bound` (`inclusive`: up to and including
    /// it; all when `None`).
    fn flush(&mut self, w: &mut TableWriter, bound: Option<&str>, inclusive: bool) -> Result<()> {
        while let Some((uid, (wf, state))) = &self.next {
            if let Some(b) = bound
                && (uid.as_str() > b || (!inclusive && uid.as_str() == b))
            {
                break;
            }
            w.push(vec![
                Cell::s(uid.as_str()),
                Cell::s(wf.as_str()),
                Cell::Str(state.clone()),
                Cell::Str(None),
            ])?;
            self.next = self.pending.next().transpose()?;
        }
        Ok(())
    }

    fn push(&mut self, w: &mut TableWriter, row: Vec<Cell>) -> Result<()> {
        let uid = row
            .first()
            .and_then(Cell::as_str)
            .unwrap_or_default()
            .to_string();
        if self.replacing.as_deref() == Some(uid.as_str()) {
            return Ok(());
        }
        let dropped = self.pass.dropped.contains(&uid);
        self.flush(w, Some(&uid), false)?;
        if self.next.as_ref().is_some_and(|(u, _)| *u == uid) {
            self.replacing = Some(uid.clone());
            return self.flush(w, Some(&uid), true);
        }
        if dropped {
            self.replaced += 1;
            return Ok(());
        }
        w.push(row)
    }

    fn finish(&mut self, w: &mut TableWriter) -> Result<()> {
        self.flush(w, None, true)
    }
}

/// Renames the groups `prefix_ids` renames (`groups = true`: the Plone group of each prefixed
/// client) wherever a group id appears: `groups.id`, `users.groups`, `local_roles.principal`.
/// Renamed rows keep each table's order: `groups` is re-sorted whole (it is small),
/// `local_roles` per object (sorted by uid, then principal).
struct GroupRenamer {
    table: &'static str,
    pending: Vec<Vec<Cell>>,
}

impl GroupRenamer {
    fn new(def: &'static TableDef) -> GroupRenamer {
        GroupRenamer {
            table: def.name,
            pending: Vec::new(),
        }
    }

    fn push(&mut self, w: &mut TableWriter, mut row: Vec<Cell>, g: &PrefixSet) -> Result<()> {
        match self.table {
            "groups" => {
                if let Some(new) = row[0].as_str().and_then(|id| g.group(id)) {
                    row[0] = Cell::s(new);
                }
                self.pending.push(row);
                Ok(())
            }
            "users" => {
                let col = USERS.col("groups").unwrap_or(4);
                if let Cell::StrList(list) = &mut row[col] {
                    for name in list.iter_mut() {
                        if let Some(new) = g.group(name) {
                            *name = new;
                        }
                    }
                }
                w.push(row)
            }
            "local_roles" => {
                if let Some(new) = row[1].as_str().and_then(|p| g.group(p)) {
                    row[1] = Cell::s(new);
                }
                if self.pending.first().is_some_and(|p| p[0] != row[0]) {
                    self.flush(w)?;
                }
                self.pending.push(row);
                Ok(())
            }
            _ => w.push(row),
        }
    }

    fn flush(&mut self, w: &mut TableWriter) -> Result<()> {
        let col = if self.table == "local_roles" { 1 } else { 0 };
        let mut rows = std::mem::take(&mut self.pending);
        rows.sort_by(|a, b| a[col].as_str().cmp(&b[col].as_str()));
        for r in rows {
            w.push(r)?;
        }
        Ok(())
    }
}

/// `rename_workflow` over `workflow_history` (sorted by uid, workflow, seq): each object's rows
/// are gathered, their workflow ids renamed through the steps in order, and sorted again (a new
/// name can sort elsewhere among the object's other workflows). Two rows of one object ending
/// under the same workflow and position are an error naming the object: a pipeline must not
/// merge two histories silently.
struct WorkflowRenamer<'a> {
    renames: &'a [(String, String)],
    staging: &'a Path,
    pending: Vec<Vec<Cell>>,
}

impl<'a> WorkflowRenamer<'a> {
    fn new(renames: &'a [(String, String)], staging: &'a Path) -> WorkflowRenamer<'a> {
        WorkflowRenamer {
            renames,
            staging,
            pending: Vec::new(),
        }
    }

    fn push(&mut self, w: &mut TableWriter, mut row: Vec<Cell>) -> Result<()> {
        if self.pending.first().is_some_and(|p| p[0] != row[0]) {
            self.flush(w)?;
        }
        let col = WORKFLOW_HISTORY.col("workflow").unwrap_or(1);
        let mut name = row[col].as_str().unwrap_or_default().to_string();
        for (from, to) in self.renames {
            if &name == from {
                name = to.clone();
            }
        }
        row[col] = Cell::s(name);
        self.pending.push(row);
        Ok(())
    }

    fn flush(&mut self, w: &mut TableWriter) -> Result<()> {
        let (wf, seq) = (
            WORKFLOW_HISTORY.col("workflow").unwrap_or(1),
            WORKFLOW_HISTORY.col("seq").unwrap_or(2),
        );
        let mut rows = std::mem::take(&mut self.pending);
        rows.sort_by(|a, b| {
            (a[wf].as_str(), a[seq].as_int()).cmp(&(b[wf].as_str(), b[seq].as_int()))
        });
        for pair in rows.windows(2) {
            if pair[0][wf] == pair[1][wf] && pair[0][seq] == pair[1][seq] {
                return Err(Error::snapshot(
                    self.staging.join(layout::table_rel(WORKFLOW_HISTORY.name)),
                    format!(
                        "rename_workflow: object {} would have two review-history entries {} \
                         of workflow {} (it has a history under both names)",
                        pair[0][0].as_str().unwrap_or_default(),
                        pair[0][seq].as_int().unwrap_or_default(),
                        pair[0][wf].as_str().unwrap_or_default()
                    ),
                ));
            }
        }
        for r in rows {
            w.push(r)?;
        }
        Ok(())
    }
}

/// References from kept objects to dropped ones, and kept objects whose parent was dropped.
fn dangling_pass(
    staging: &Path,
    dropped: &HashSet<String>,
    report: &mut TransformReport,
) -> Result<()> {
    use arrow::array::Array;

    let mut found: Vec<DanglingRef> = Vec::new();
    // Only the three columns this pass reads, straight from the Arrow buffers.
    prepare::scan_object_columns(staging, &["uid", "parent_uid", "fields"], 4096, |c| {
        let (uids, parents, fields) = (c[0], c[1], c[2]);
        report.orphans += (0..uids.len())
            .filter(|&r| !parents.is_null(r) && dropped.contains(parents.value(r)))
            .count() as u64;
        // The scan in parallel; the few objects that name a dropped uid are parsed in order.
        let hits: Vec<usize> = (0..uids.len())
            .into_par_iter()
            .filter(|&r| !fields.is_null(r) && mentions_any(fields.value(r), dropped))
            .collect();
        for r in hits {
            let Ok(Value::Object(map)) = crate::jsonx::parse_lenient(fields.value(r).as_bytes())
            else {
                continue;
            };
            for (field, v) in map {
                if field == "parent_uid" {
                    continue;
                }
                let mut targets = Vec::new();
                reference_targets(&v, &mut targets);
                for t in targets {
                    if dropped.contains(&t) {
                        report.dangling_total += 1;
                        if found.len() < DANGLING_SHOWN {
                            found.push(DanglingRef {
                                uid: uids.value(r).to_string(),
                                field: field.clone(),
                                target: t,
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    })?;
    found.sort();
    report.dangling = found;
    Ok(())
}

/// Whether JSON `text` holds a string that is exactly one of the `uids` (32 hex digits): every
/// reference [`reference_targets`] finds is such a string, so an object for which this is false
/// references none of them (a cheap scan of the quotes instead of a parse).
fn mentions_any(text: &str, uids: &HashSet<String>) -> bool {
    let b = text.as_bytes();
    memchr::memchr_iter(b'"', b).any(|i| {
        b.get(i + 33) == Some(&b'"')
            && b[i + 1..i + 33].iter().all(u8::is_ascii_hexdigit)
            && text.get(i + 1..i + 33).is_some_and(|u| uids.contains(u))
    })
}

/// UIDs a field value references: reference dicts `{"uid": ...}` at any depth, and bare
/// 32-hex strings (Dexterity UID reference fields and `*UID` copies hold plain uids).
pub(super) fn reference_targets(v: &Value, out: &mut Vec<String>) {
    let is_uid = |u: &str| u.len() == 32 && u.bytes().all(|b| b.is_ascii_hexdigit());
    match v {
        Value::String(s) if is_uid(s) => out.push(s.clone()),
        Value::Object(m) => m.values().for_each(|x| reference_targets(x, out)),
        Value::Array(a) => a.iter().for_each(|x| reference_targets(x, out)),
        _ => {}
    }
}

/// Links (or copies) the blob files the output's rows name.
fn link_blobs(from: &Path, to: &Path, shas: &BTreeSet<String>) -> Result<BlobTotals> {
    let mut totals = BlobTotals::default();
    for sha in shas {
        let (src, dst): (PathBuf, PathBuf) =
            (blobs::blob_path(from, sha), blobs::blob_path(to, sha));
        if !src.is_file() {
            return Err(Error::snapshot(src, "blob file named by a row is missing"));
        }
        totals.count += 1;
        totals.bytes += blobs::link_blob(&src, &dst)?;
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::table::LOCAL_ROLES;

    #[test]
    fn mentions_any_finds_exactly_the_strings_reference_targets_finds() {
        let (a, b) = ("a".repeat(32), "0123456789abcdef".repeat(2));
        let dropped: HashSet<String> = [a.clone()].into();
        let cases = [
            (format!(r#"{{"X":{{"uid":"{a}","url":"/s/x"}}}}"#), true),
            (format!(r#"{{"X":["{b}","{a}"]}}"#), true),
            (format!(r#"{{"X":"{b}"}}"#), false),
            (format!(r#"{{"X":"{a}a"}}"#), false),
            (format!(r#"{{"X":"/v1/{a}"}}"#), false),
            (r#"{"X":""}"#.to_string(), false),
        ];
        for (text, want) in cases {
            assert_eq!(mentions_any(&text, &dropped), want, "{text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            let mut targets = Vec::new();
            reference_targets(&v, &mut targets);
            assert_eq!(targets.iter().any(|t| dropped.contains(t)), want, "{text}");
        }
    }

    #[test]
    fn a_move_of_the_site_root_moves_the_site_url() {
        let p = super::super::spec::parse(
            Path::new("p.toml"),
            b"name = \"x\"\n[[steps]]\nop = \"move\"\nfrom = \"/lims\"\nto = \"/senaite\"\n",
        )
        .unwrap();
        let src = SourceInfo {
            kind: "bika".into(),
            site_url: "http://127.0.0.1:8095/lims".into(),
            ..SourceInfo::default()
        };
        assert_eq!(
            moved_site(&src, &p).site_url,
            "http://127.0.0.1:8095/senaite"
        );
        let other = SourceInfo {
            site_url: "http://127.0.0.1:8095/lab".into(),
            ..src
        };
        assert_eq!(moved_site(&other, &p).site_url, "http://127.0.0.1:8095/lab");
    }

    #[test]
    fn set_states_replace_an_objects_rows_in_uid_order() {
        let spill = tempfile::tempdir().unwrap();
        let mut pass = ObjectsPass {
            state_effects: StateEffects::new(spill.path()),
            ..ObjectsPass::default()
        };
        pass.dropped.insert("c".into());
        // Out of order on purpose: read back sorted.
        pass.state_effects
            .insert("e".into(), ("new_wf".into(), Some("inactive".into())))
            .unwrap();
        pass.state_effects
            .insert("b".into(), ("new_wf".into(), Some("cancelled".into())))
            .unwrap();
        pass.state_effects.finish().unwrap();
        let row = |uid: &str, wf: &str, st: &str| {
            vec![Cell::s(uid), Cell::s(wf), Cell::s(st), Cell::Str(None)]
        };
        let dir = tempfile::tempdir().unwrap();
        let mut w = TableWriter::create(dir.path(), &WORKFLOW_STATES).unwrap();
        let mut m = StateMerge::new(&pass).unwrap();
        for r in [
            row("a", "wf", "active"),
            row("b", "bika_ar_workflow", "sample_due"),
            row("b", "bika_cancellation_workflow", "cancelled"),
            row("c", "wf", "active"),
            row("d", "wf", "active"),
        ] {
            m.push(&mut w, r).unwrap();
        }
        m.finish(&mut w).unwrap();
        assert_eq!(m.replaced, 1);
        w.finish().unwrap();
        let back: Vec<(String, String, String)> =
            TableReader::read_all(dir.path(), &WORKFLOW_STATES)
                .unwrap()
                .into_iter()
                .map(|r| {
                    (
                        r[0].as_str().unwrap().into(),
                        r[1].as_str().unwrap().into(),
                        r[2].as_str().unwrap().into(),
                    )
                })
                .collect();
        let want: Vec<(String, String, String)> = [
            ("a", "wf", "active"),
            ("b", "new_wf", "cancelled"),
            ("d", "wf", "active"),
            ("e", "new_wf", "inactive"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        assert_eq!(back, want);
    }

    #[test]
    fn renamed_workflows_keep_history_sorted_and_refuse_to_merge_two_histories() {
        let dir = tempfile::tempdir().unwrap();
        let row = |uid: &str, wf: &str, seq: i64| {
            let mut r: Vec<Cell> = WORKFLOW_HISTORY
                .columns
                .iter()
                .map(|_| Cell::opt(None::<String>))
                .collect();
            r[0] = Cell::s(uid);
            r[1] = Cell::s(wf);
            r[2] = Cell::Int(Some(seq));
            r[9] = Cell::s("{}");
            r
        };
        let renames = vec![
            (
                "bika_ar_workflow".to_string(),
                "senaite_sample_workflow".to_string(),
            ),
            (
                "senaite_sample_workflow".to_string(),
                "x_chained".to_string(),
            ),
        ];
        let mut w = TableWriter::create(dir.path(), &WORKFLOW_HISTORY).unwrap();
        let mut r = WorkflowRenamer::new(&renames, dir.path());
        for (u, wf, seq) in [
            ("a", "bika_ar_workflow", 0),
            ("a", "bika_ar_workflow", 1),
            ("a", "bika_cancellation_workflow", 0),
            ("b", "bika_ar_workflow", 0),
        ] {
            r.push(&mut w, row(u, wf, seq)).unwrap();
        }
        r.flush(&mut w).unwrap();
        w.finish().unwrap();
        let back: Vec<(String, String, i64)> = TableReader::read_all(dir.path(), &WORKFLOW_HISTORY)
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().into(),
                    r[1].as_str().unwrap().into(),
                    r[2].as_int().unwrap(),
                )
            })
            .collect();
        let want = [
            ("a", "bika_cancellation_workflow", 0),
            ("a", "x_chained", 0),
            ("a", "x_chained", 1),
            ("b", "x_chained", 0),
        ];
        let want: Vec<(String, String, i64)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
            .collect();
        assert_eq!(back, want, "renamed in step order, re-sorted per object");
        // An object with histories under both names: an error naming it.
        let mut w = TableWriter::create(dir.path(), &WORKFLOW_HISTORY).unwrap();
        let mut r = WorkflowRenamer::new(&renames[..1], dir.path());
        r.push(&mut w, row("c", "bika_ar_workflow", 0)).unwrap();
        r.push(&mut w, row("c", "senaite_sample_workflow", 0))
            .unwrap();
        let e = r.flush(&mut w).unwrap_err().to_string();
        assert!(e.contains("object c") && e.contains("both names"), "{e}");
    }

    #[test]
    fn renamed_group_principals_keep_local_roles_sorted_per_object() {
        let dir = tempfile::tempdir().unwrap();
        let g = PrefixSet {
            prefix: "LABB-".into(),
            ids: ["client-1".to_string()].into(),
            groups: true,
            ..PrefixSet::default()
        };
        let row = |uid: &str, p: &str| {
            vec![
                Cell::s(uid),
                Cell::s(p),
                Cell::s("group"),
                Cell::StrList(vec!["Owner".into()]),
                Cell::StrList(vec![]),
                Cell::Bool(Some(true)),
            ]
        };
        let mut w = TableWriter::create(dir.path(), &LOCAL_ROLES).unwrap();
        let mut r = GroupRenamer::new(&LOCAL_ROLES);
        for (u, p) in [
            ("a", "Analysts"),
            ("a", "client-1"),
            ("a", "Zed"),
            ("b", "client-1"),
        ] {
            r.push(&mut w, row(u, p), &g).unwrap();
        }
        r.flush(&mut w).unwrap();
        w.finish().unwrap();
        let back: Vec<(String, String)> = TableReader::read_all(dir.path(), &LOCAL_ROLES)
            .unwrap()
            .into_iter()
            .map(|r| (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()))
            .collect();
        let want = [
            ("a", "Analysts"),
            ("a", "LABB-client-1"),
            ("a", "Zed"),
            ("b", "LABB-client-1"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(back, want);
    }
}
