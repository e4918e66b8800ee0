//! `diff`: what changed between two snapshots, offline (it never touches the network). Per
//! portal type: created, modified, moved or renamed (same uid, other path), and deleted objects
//! (vanished, or deactivated: SENAITE deactivates instead of deleting); for each changed object
//! its field changes (old and new value), review-state, review-history, workflow-state, local-role
//! and blob (sha256) changes; plus users, groups and settings. Values that change without meaning
//! and per-field tolerances come from the rules ([`rules`]). `--out` writes a delta snapshot
//! ([`delta`]).
//!
//! Both snapshots are streamed, never held: a first pass merge-joins them by uid comparing
//! `content_hash` and the other rows byte for byte (`scan`); a second pass reads back only
//! the rows that differ and compares them under the rules (`detail`).

pub mod delta;
mod detail;
pub mod rules;
mod scan;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::cli::DiffArgs;
use crate::error::Result;
use crate::snapshot::Snapshot;
use crate::snapshot::table::{GROUPS, SETTINGS, TableDef, TableReader, USERS, row_to_json};

pub use delta::{DeltaInfo, apply_delta};
pub use rules::Rules;

/// What `diff` does.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// The older snapshot.
    pub old: PathBuf,
    /// The newer snapshot.
    pub new: PathBuf,
    /// The rules (defaults, or defaults with a `--rules` file laid over them).
    pub rules: Rules,
    /// Where to write a delta snapshot, if anywhere.
    pub out: Option<PathBuf>,
    /// Replace an existing `out`.
    pub force: bool,
    /// Only which objects differ and how, from record hashes (no field detail, no rules).
    pub brief: bool,
}

impl DiffArgs {
    /// Checks the arguments and loads the rules.
    ///
    /// # Errors
    /// When the rules file is unreadable or invalid.
    pub fn into_options(self) -> Result<DiffOptions> {
        let rules = match &self.rules {
            Some(file) => Rules::load(file)?,
            None => Rules::default(),
        };
        Ok(DiffOptions {
            old: self.old,
            new: self.new,
            rules,
            out: self.out,
            force: self.force,
            brief: self.brief,
        })
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Only in the newer snapshot.
    Created,
    /// Changed in place.
    Modified,
    /// Changed path or id (and possibly more).
    Moved,
    /// Vanished, or deactivated.
    Deleted,
}

/// One difference of an object or a site record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    /// `attribute`, `field`, `review_state`, or the table: `workflow_history`,
    /// `workflow_states`, `local_roles`, `blobs`, `users`, `groups`, `settings`.
    pub kind: String,
    /// The field or column, or the row key (`workflow/seq`, workflow, principal, field,
    /// username, group id, `source/key`).
    pub key: String,
    /// The older value (`null`: absent).
    pub old: Value,
    /// The newer value (`null`: absent).
    pub new: Value,
}

impl Change {
    fn new(kind: &str, key: &str, old: Value, new: Value) -> Change {
        Change {
            kind: kind.to_string(),
            key: key.to_string(),
            old,
            new,
        }
    }
}

/// An object that differs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ObjectDiff {
    /// UID.
    pub uid: String,
    /// Portal type (newer side; older for vanished objects).
    pub portal_type: String,
    /// Path (newer side; older for vanished objects).
    pub path: String,
    /// What happened.
    pub status: Status,
    /// For deletions: `vanished` or `deactivated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For moves: the older path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    /// Every meaningful difference (empty for created and vanished objects).
    pub changes: Vec<Change>,
}

/// Counts per portal type (and in total).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Counts {
    /// Created.
    pub created: u64,
    /// Modified in place.
    pub modified: u64,
    /// Moved or renamed.
    pub moved: u64,
    /// Deleted (vanished or deactivated).
    pub deleted: u64,
    /// Equal.
    pub unchanged: u64,
    /// Different only in values the rules ignore (counted as equal).
    pub ignored_only: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.created += other.created;
        self.modified += other.modified;
        self.moved += other.moved;
        self.deleted += other.deleted;
        self.unchanged += other.unchanged;
        self.ignored_only += other.ignored_only;
    }

    /// Whether anything differs.
    pub fn has_differences(&self) -> bool {
        self.created + self.modified + self.moved + self.deleted > 0
    }
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRef {
    /// Directory.
    pub dir: String,
    /// Snapshot id.
    pub snapshot_id: String,
    /// Objects.
    pub objects: u64,
}

/// The outcome of `diff`.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// The older snapshot.
    pub old: SnapshotRef,
    /// The newer snapshot.
    pub new: SnapshotRef,
    /// Totals.
    pub totals: Counts,
    /// Counts per portal type.
    pub by_type: BTreeMap<String, Counts>,
    /// Every object that differs, by portal type, then path.
    pub objects: Vec<ObjectDiff>,
    /// Users, groups and settings that differ.
    pub site: Vec<Change>,
    /// The rules file laid over the defaults, if any.
    pub rules_file: Option<String>,
    /// Fields and columns left out, with the reason.
    pub ignored: Vec<rules::Ignored>,
    /// Per-object rows without an object on either side (not compared).
    pub orphan_rows: u64,
    /// The delta written with `--out`.
    pub delta: Option<DeltaInfo>,
    /// `--brief`: objects compared as wholes (no `changes`, rules not applied to them).
    pub brief: bool,
}

impl DiffReport {
    /// Whether the snapshots hold the same data under the rules.
    pub fn is_equal(&self) -> bool {
        !self.totals.has_differences() && self.site.is_empty()
    }

    /// The exit code: 0 equal, 1 different (as diff(1)).
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.is_equal())
    }
}

/// Runs `diff`.
///
/// # Errors
/// When a snapshot is missing, incomplete or corrupt (the tables it reads are checked against
/// their sha256 while they are compared), or the delta cannot be written.
pub fn run(opts: &DiffOptions) -> Result<DiffReport> {
    let old = Snapshot::open_unverified(&opts.old)?;
    let new = Snapshot::open_unverified(&opts.new)?;
    let mut writer = match &opts.out {
        Some(out) => Some(delta::DeltaWriter::create(out, opts.force)?),
        None => None,
    };
    let outcome = std::thread::scope(|s| {
        let brief = opts.brief && scan::has_digests(&old) && scan::has_digests(&new);
        let (o, n) = (&old, &new);
        let checks =
            s.spawn(move || verify_tables(o, brief).and_then(|()| verify_tables(n, brief)));
        let compared = compare(&old, &new, opts, writer.as_mut());
        let checked = checks.join().unwrap_or_else(|_| {
            Err(crate::error::Error::snapshot(
                &opts.old,
                "table check panicked",
            ))
        });
        checked.and(compared)
    });
    let (scan, details, site) = match outcome {
        Ok(v) => v,
        Err(e) => {
            if let Some(w) = writer {
                w.abandon();
            }
            return Err(e);
        }
    };
    let delta = match writer {
        Some(w) => Some(w.finish(&old, &new)?),
        None => None,
    };
    Ok(report(opts, &old, &new, scan, details, site, delta))
}

type Compared = (scan::Scan, detail::Details, Vec<Change>);

/// The row changes of one object's rows of a per-object table under `rules` (rows matched by
/// the table's key columns), as `diff` finds them; `verify --rules` uses it.
pub(crate) fn row_changes_of(
    def: &TableDef,
    old: Vec<serde_json::Map<String, Value>>,
    new: Vec<serde_json::Map<String, Value>>,
    rules: &Rules,
) -> Vec<Change> {
    detail::row_changes(def, detail::side_keys(def.name), old, new, rules)
}

fn compare(
    old: &Snapshot,
    new: &Snapshot,
    opts: &DiffOptions,
    writer: Option<&mut delta::DeltaWriter>,
) -> Result<Compared> {
    let mut scan = if scan::has_digests(old) && scan::has_digests(new) {
        let mut scan = scan::scan_digests(&old.dir, &new.dir)?;
        if !opts.brief {
            scan::fill_vanished(&old.dir, &mut scan.events)?;
        }
        scan
    } else {
        scan::scan(&old.dir, &new.dir)?
    };
    tracing::info!(
        old = scan.old_objects,
        new = scan.new_objects,
        differing = scan.events.len(),
        "Scanned both snapshots."
    );
    let details = if opts.brief {
        detail::brief(&old.dir, &new.dir, &mut scan)?
    } else {
        detail::details(&old.dir, &new.dir, &scan, &opts.rules, writer)?
    };
    let site = site_changes(old, new, &opts.rules)?;
    Ok((scan, details, site))
}

/// Checks the sha256 of every table file the manifest lists (the files `diff` reads; raw
/// streams are not read); with `index_only` (`--brief` with digest indexes), of the files read
/// whole: the digest index and the small site tables (`objects` is only sampled at the rows
/// that differ; `inspect` checks every file).
fn verify_tables(snap: &Snapshot, index_only: bool) -> Result<()> {
    let sampled = |path: &str| {
        std::iter::once(&crate::snapshot::table::OBJECTS)
            .chain(crate::snapshot::digest::PER_OBJECT_TABLES)
            .any(|d| crate::snapshot::layout::table_rel(d.name) == path)
    };
    let read_whole = |path: &str| !index_only || !sampled(path);
    for f in snap
        .manifest
        .files
        .iter()
        .filter(|f| f.kind == "table" && read_whole(&f.path))
    {
        let path = snap.dir.join(&f.path);
        let (sha, bytes) = crate::snapshot::blobs::hash_file(&path)?;
        if sha != f.sha256 || bytes != f.bytes {
            return Err(crate::error::Error::snapshot(
                path,
                format!(
                    "checksum mismatch: manifest says sha256 {} ({} bytes), file has {sha} ({bytes} bytes)",
                    f.sha256, f.bytes
                ),
            ));
        }
    }
    Ok(())
}

/// Users, groups and settings (small tables, compared in memory).
fn site_changes(old: &Snapshot, new: &Snapshot, rules: &Rules) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    let tables: [(&'static TableDef, &[&str]); 3] = [
        (&USERS, &["username"]),
        (&GROUPS, &["id"]),
        (&SETTINGS, &["source", "key"]),
    ];
    for (def, keys) in tables {
        let read = |snap: &Snapshot| -> Result<Vec<serde_json::Map<String, Value>>> {
            TableReader::open(&snap.dir, def)?
                .map(|r| r.map(|row| row_to_json(def, row)))
                .collect()
        };
        out.extend(detail::row_changes(
            def,
            keys,
            read(old)?,
            read(new)?,
            rules,
        ));
    }
    Ok(out)
}

fn report(
    opts: &DiffOptions,
    old: &Snapshot,
    new: &Snapshot,
    scan: scan::Scan,
    details: detail::Details,
    site: Vec<Change>,
    delta: Option<DeltaInfo>,
) -> DiffReport {
    let mut by_type: BTreeMap<String, Counts> = BTreeMap::new();
    for (pt, n) in &scan.unchanged {
        by_type.entry(pt.clone()).or_default().unchanged += n;
    }
    for (pt, n) in &details.ignored_only {
        by_type.entry(pt.clone()).or_default().ignored_only += n;
    }
    for o in &details.objects {
        let c = by_type.entry(o.portal_type.clone()).or_default();
        match o.status {
            Status::Created => c.created += 1,
            Status::Modified => c.modified += 1,
            Status::Moved => c.moved += 1,
            Status::Deleted => c.deleted += 1,
        }
    }
    let mut totals = Counts::default();
    for c in by_type.values() {
        totals.add(c);
    }
    let mut objects = details.objects;
    objects
        .sort_by(|a, b| (&a.portal_type, &a.path, &a.uid).cmp(&(&b.portal_type, &b.path, &b.uid)));
    let side = |s: &Snapshot, n: u64| SnapshotRef {
        dir: s.dir.display().to_string(),
        snapshot_id: s.manifest.snapshot_id.clone(),
        objects: n,
    };
    DiffReport {
        old: side(old, scan.old_objects),
        new: side(new, scan.new_objects),
        totals,
        by_type,
        objects,
        site,
        rules_file: opts.rules.file.as_ref().map(|p| p.display().to_string()),
        ignored: opts.rules.ignored(),
        orphan_rows: scan.orphan_rows,
        delta,
        brief: opts.brief,
    }
}

/// Objects listed in the text report before it points to `--json`.
const TEXT_LIMIT: usize = 200;

/// The report as text for people.
pub fn render_text(r: &DiffReport) -> String {
    let id = |s: &str| s.chars().take(12).collect::<String>();
    let mut s = format!(
        "diff {} (id {}, {} objects) -> {} (id {}, {} objects)\n",
        r.old.dir,
        id(&r.old.snapshot_id),
        r.old.objects,
        r.new.dir,
        id(&r.new.snapshot_id),
        r.new.objects
    );
    let line = |name: &str, c: &Counts| {
        format!(
            "{:<28} {:>8} {:>8} {:>6} {:>8} {:>10} {:>8}\n",
            name, c.created, c.modified, c.moved, c.deleted, c.unchanged, c.ignored_only
        )
    };
    s.push_str(&format!(
        "{:<28} {:>8} {:>8} {:>6} {:>8} {:>10} {:>8}\n",
        "portal_type", "created", "modified", "moved", "deleted", "unchanged", "ignored"
    ));
    for (t, c) in r.by_type.iter().filter(|(_, c)| c.has_differences()) {
        s.push_str(&line(t, c));
    }
    s.push_str(&line("TOTAL", &r.totals));
    for o in r.objects.iter().take(TEXT_LIMIT) {
        render_object(&mut s, o);
    }
    if r.objects.len() > TEXT_LIMIT {
        s.push_str(&format!(
            "... {} more objects (use --json)\n",
            r.objects.len() - TEXT_LIMIT
        ));
    }
    for c in &r.site {
        s.push_str(&format!(
            "{} {}: {} -> {}\n",
            c.kind,
            c.key,
            short(&c.old),
            short(&c.new)
        ));
    }
    if r.brief {
        s.push_str(
            "--brief: objects compared as wholes; field changes not listed, rules not applied \
             to objects (one differing only in ignored values counts as modified).\n",
        );
    }
    if r.totals.ignored_only > 0 {
        s.push_str(&format!(
            "{} objects differ only in ignored values (see --json \"ignored\").\n",
            r.totals.ignored_only
        ));
    }
    if r.orphan_rows > 0 {
        s.push_str(&format!(
            "{} per-object rows have no object on either side and were not compared.\n",
            r.orphan_rows
        ));
    }
    if let Some(d) = &r.delta {
        s.push_str(&format!(
            "Delta written to {} (id {}): {} objects, {} tombstones, {} blobs, base {}.\n",
            d.dir,
            id(&d.snapshot_id),
            d.objects,
            d.tombstones,
            d.blobs,
            id(&d.base)
        ));
    }
    s.push_str(if r.is_equal() {
        "No differences.\n"
    } else {
        "Differences found.\n"
    });
    s
}

fn render_object(s: &mut String, o: &ObjectDiff) {
    let sign = match o.status {
        Status::Created => '+',
        Status::Modified => '~',
        Status::Moved => '>',
        Status::Deleted => '-',
    };
    let status = serde_json::to_value(o.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut head = format!("{sign} {status} {} {}", o.portal_type, o.path);
    if let Some(from) = &o.old_path {
        head.push_str(&format!(" (from {from})"));
    }
    if let Some(why) = &o.reason {
        head.push_str(&format!(" ({why})"));
    }
    s.push_str(&format!("{head} [{}]\n", o.uid));
    for c in &o.changes {
        s.push_str(&format!(
            "    {} {}: {} -> {}\n",
            c.kind,
            c.key,
            short(&c.old),
            short(&c.new)
        ));
    }
}

/// A value on one line, cut at 120 characters.
fn short(v: &Value) -> String {
    let t = match v {
        Value::Null => "(none)".to_string(),
        other => other.to_string(),
    };
    if t.chars().count() > 120 {
        format!("{}…", t.chars().take(120).collect::<String>())
    } else {
        t
    }
}

/// Runs `diff` for the command line: the rendered report (text or JSON) and the exit code.
///
/// # Errors
/// As [`run`].
pub fn execute(opts: &DiffOptions, json: bool) -> Result<(String, u8)> {
    let report = run(opts)?;
    let text = if json {
        let mut t = serde_json::to_string_pretty(&report).unwrap_or_default();
        t.push('\n');
        t
    } else {
        render_text(&report)
    };
    Ok((text, report.exit_code()))
}
