//! Extracting a BIKA LIMS 3.1 site into a snapshot of the same format as a SENAITE extract.
//!
//! Channels: bika.lims' legacy `@@API/read` for every object of every catalog (all schema fields,
//! catalog metadata, references as titles plus `<Field>_uid`, every workflow's state),
//! `@@API/getusers` for the users of each role, plone.jsonapi.routes for the Plone users and
//! the names of file fields, and `<object>/at_download/<Field>` for file bytes.
//!
//! Every catalog is listed by portal type (a cheap `include_fields=UID,portal_type` read) and
//! paged per type with `sort_on=UID` (unique and unchanging, so pages do not shift), `--jobs`
//! pages at a time, each page staged under `<out>/.work/reads/` so that a re-run of an
//! interrupted extract reads only what is missing; the objects read in several catalogs are
//! merged by UID (the union of their metadata). Reading per type keeps a type whose objects the
//! server cannot serialize (e.g. a folder's broken `constrainTypesMode`) from failing the pages
//! of every other type: the server serializes each object about once, as the floor of
//! `benches/real_bika/extract.sh` does. An analysis request's inlined analyses are cut down to
//! their reference keys once their field names are learnt. A page
//! the server cannot serialize whole (`success: false`, e.g. a field's broken default method,
//! or the analysis `specification` adapter's `KeyError`) is re-read object by object, and an
//! object that still fails is read with `include_fields` set to the field names learnt from
//! its type's other reads (an analysis request inlines its analyses whole); fields that still
//! break are isolated by halving and named in the manifest. Each catalog's objects are checked
//! against its `total_objects`. What the source cannot give is stated in the manifest's notes
//! (kind `not_available`), never silently dropped. Records are staged and assembled by the same
//! code as a SENAITE extract (`extract::assemble`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::{info, warn};

use crate::bika::legacy::{self, ReadQuery};
use crate::bika::record::{self, Known};
use crate::error::{Error, Result};
use crate::extract::assemble;
use crate::extract::fetch::NOTE_KEY;
use crate::extract::site::SiteRecords;
use crate::extract::staging::Staging;
use crate::extract::{ExtractOptions, ExtractReport};
use crate::progress::Progress;
use crate::snapshot::blobs;
use crate::snapshot::manifest::{Note, RequestInfo, SourceInfo};
use crate::snapshot::record::{BlobRef, ObjectCapture};
use crate::snapshot::writer::{SnapshotParts, now_rfc3339};
use crate::source::{ClientOptions, SenaiteClient};

/// The catalogs of a bika.lims 3.1 site (`setuphandlers.py`, `setCatalogsByType`).
pub const CATALOGS: &[&str] = &[
    "portal_catalog",
    "bika_catalog",
    "bika_setup_catalog",
    "bika_analysis_catalog",
];

/// File fields of bika.lims 3.1.15's content types. The legacy read leaves a file field out
/// when it holds a file (and writes `""` when empty), so its absence says there are bytes.
pub const FILE_FIELDS: &[(&str, &str)] = &[
    ("ARImport", "OriginalFile"),
    ("ARPriority", "bigIcon"),
    ("ARPriority", "smallIcon"),
    ("ARReport", "Pdf"),
    ("Attachment", "AttachmentFile"),
    ("Instrument", "InstallationCertificate"),
    ("Instrument", "Photo"),
    ("InstrumentCertification", "Document"),
    ("LabContact", "Signature"),
    ("Laboratory", "AccreditationBodyLogo"),
    ("Method", "MethodDocument"),
    ("Multifile", "File"),
    ("ReferenceAnalysis", "RetractedAnalysesPdfReport"),
    ("Report", "ReportFile"),
    ("SamplePoint", "AttachmentFile"),
];

/// Roles whose users `@@API/getusers` is asked for (Plone's and bika.lims 3.1's).
pub const ROLES: &[&str] = &[
    "Manager",
    "Site Administrator",
    "LabManager",
    "LabClerk",
    "Analyst",
    "Verifier",
    "Sampler",
    "Preserver",
    "Publisher",
    "Reviewer",
    "Editor",
    "Contributor",
    "Reader",
    "Member",
    "Client",
    "RegulatoryInspector",
];

/// What the legacy API cannot give at all; written to every BIKA snapshot's notes.
pub const NOT_AVAILABLE: &[(&str, &str)] = &[
    (
        "workflow_history",
        "review history is not readable through bika.lims 3.1's legacy API nor \
         plone.jsonapi.routes 0.9.3: the workflow_history table is empty",
    ),
    (
        "local_roles",
        "local roles are not readable through either channel: the local_roles table is empty",
    ),
    (
        "groups",
        "groups are not readable through either channel: the groups table is empty",
    ),
    (
        "settings",
        "the registry and control-panel settings are not readable; the BikaSetup and \
         Laboratory objects carry the lab's settings",
    ),
    (
        "worksheetanalysis_review_state",
        "the bika_worksheetanalysis_workflow state of analyses and requests is neither a \
         field nor catalog metadata: not read",
    ),
    (
        "users",
        "users are read per role (@@API/getusers, no e-mail or groups) and from \
         plone.jsonapi.routes /users; the Zope-root users are not site users and are missing",
    ),
];

/// Lines per staged unit of records.
const UNIT_LINES: usize = 1000;

/// Keys every `include_fields` read asks for.
const IDENTITY: &[&str] = &[
    "UID",
    "portal_type",
    "id",
    "title",
    "review_state",
    "inactive_state",
    "cancellation_state",
    "transitions",
];

/// The message of an API error without its URL (stable across objects, so notes collapse).
fn api_message(e: &Error) -> String {
    match e {
        Error::Api { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Whether the site answers bika.lims' legacy read (a BIKA LIMS 3.x).
pub fn is_bika(client: &SenaiteClient) -> bool {
    let q = ReadQuery {
        include_fields: vec!["UID".into()],
        ..ReadQuery::page("portal_catalog", 1, 0)
    };
    legacy::read(client, &q).is_ok()
}

/// One object as read, with the catalogs it was found in.
struct Read {
    raw: Map<String, Value>,
    catalogs: BTreeSet<String>,
}

/// An object no full read could serve.
#[derive(Debug, Serialize, Deserialize)]
struct Failed {
    uid: String,
    catalog: String,
    portal_type: String,
    error: String,
}

/// Runs an extract of a BIKA LIMS 3.1 site.
///
/// # Errors
/// Unreachable server, refused credentials, a site that is no BIKA, and transport failures
/// after retries. Objects the server cannot serialize are read in part and named in notes.
pub fn run(opts: &ExtractOptions, progress: &Progress) -> Result<ExtractReport> {
    let started = Instant::now();
    if opts.out.join("manifest.json").exists() && !opts.force {
        return Err(Error::Usage(format!(
            "{} already holds a complete snapshot; choose another --out or pass --force",
            opts.out.display()
        )));
    }
    let mut copts = ClientOptions::new(&opts.site_url, opts.credentials.clone());
    copts.retry = opts.retry;
    let client = SenaiteClient::new(copts)?;
    let source = probe(&client)?;
    let request = request_info(opts);
    let staging = Staging::open(
        &opts.out,
        &json!({"site_url": opts.site_url, "kind": "bika", "request": request,
                "page_size": opts.page_size}),
        opts.restart,
    )?;
    let units_dir = staging.root().join("units");
    if units_dir.exists() {
        // The staged catalog pages (`reads/`) are resumed; the units built from them are
        // written again.
        std::fs::remove_dir_all(&units_dir).map_err(|e| Error::write(&units_dir, e))?;
    }
    let started_at = match staging.read_doc::<String>("started_at.json")? {
        Some(s) => s,
        None => {
            let s = now_rfc3339();
            staging.write_doc("started_at.json", &s)?;
            s
        }
    };
    // One Zope process serves one Python request at a time: two large reads in flight cost
    // the server more CPU than they save (benches/README.md), so one job unless asked.
    let jobs = if opts.jobs_given { opts.jobs.max(1) } else { 1 };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {jobs} workers: {e}")))?;
    let pages = Pages {
        client: &client,
        staging: &staging,
        size: opts.page_size.max(1),
        pool: &pool,
    };
    let spinner = progress.spinner("extract");
    let mut notes: Vec<Note> = NOT_AVAILABLE
        .iter()
        .map(|(s, m)| Note {
            kind: "not_available".into(),
            subject: (*s).into(),
            message: (*m).into(),
        })
        .collect();
    let mut objects: BTreeMap<String, Read> = BTreeMap::new();
    let mut failed: Vec<Failed> = Vec::new();
    let mut catalogs_info = Vec::new();
    let mut learnt = Learnt::new();
    for catalog in CATALOGS {
        spinner.set_message(format!("reading {catalog}"));
        let info = read_catalog(
            &pages,
            catalog,
            &mut objects,
            &mut learnt,
            &mut failed,
            &mut notes,
        )?;
        catalogs_info.push(info);
    }
    spinner.set_message("reading objects the catalog pages could not serialize");
    read_failed(&client, failed, &mut objects, &learnt, &mut notes)?;
    let catalogs_info = check_totals(catalogs_info, &objects, &mut notes);
    let known = Known {
        path_of: objects
            .iter()
            .filter_map(|(u, r)| Some((u.clone(), r.raw.get("path")?.as_str()?.to_string())))
            .collect(),
        uid_of: objects
            .iter()
            .filter_map(|(u, r)| Some((r.raw.get("path")?.as_str()?.to_string(), u.clone())))
            .collect(),
    };
    spinner.set_message("reading files");
    // Records are written in units of 1,000 as they are built, and each object's read is freed
    // once its record is: the merged reads are the only thing held for the whole extract.
    let expected = objects.len() as u64;
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut unit_nr = 0;
    let mut per_type: BTreeMap<String, u64> = BTreeMap::new();
    for (uid, r) in objects {
        let uid = &uid;
        let portal_type = text(&r.raw, "portal_type");
        let path = text(&r.raw, "path");
        if !type_selected(opts, &portal_type) || !opts.path_selected(&path) {
            continue;
        }
        let blobs = read_blobs(&client, opts, &portal_type, &path, uid, &r.raw)?;
        let mut rec = record::normalize(&r.raw, &known);
        rec.insert(
            "catalogs".into(),
            Value::from(r.catalogs.iter().cloned().collect::<Vec<_>>()),
        );
        let cap = ObjectCapture {
            uid: uid.clone(),
            portal_type: portal_type.clone(),
            path,
            v1: Some(Value::Object(rec)),
            blobs,
            ..Default::default()
        };
        *per_type.entry(portal_type).or_insert(0) += 1;
        let line = serde_json::to_string(&cap).map_err(|source| Error::JsonFile {
            path: staging.root().to_path_buf(),
            source,
        })?;
        lines.push((uid.clone(), line));
        if lines.len() == UNIT_LINES {
            staging.write_unit(&format!("units/bika/{unit_nr:06}.jsonl.zst"), &lines)?;
            unit_nr += 1;
            lines.clear();
        }
    }
    for (t, c) in &per_type {
        lines.push((
            "!count".into(),
            json!({"portal_type": t, "count": c}).to_string(),
        ));
    }
    for n in &notes {
        lines.push((
            NOTE_KEY.into(),
            serde_json::to_string(n).unwrap_or_default(),
        ));
    }
    for chunk in lines.chunks(UNIT_LINES) {
        staging.write_unit(&format!("units/bika/{unit_nr:06}.jsonl.zst"), chunk)?;
        unit_nr += 1;
    }
    let site = if opts.site_records {
        spinner.set_message("reading users");
        Some(read_users(&client)?)
    } else {
        None
    };
    spinner.set_message("writing tables");
    let parts = SnapshotParts {
        source,
        request,
        started_at,
        ..Default::default()
    };
    let manifest = assemble::assemble(
        &staging,
        &opts.out,
        parts,
        site.as_ref(),
        &catalogs_info,
        client.origin(),
        expected,
    )?;
    spinner.finish_and_clear();
    staging.remove()?;
    let written: u64 = manifest.counts.values().sum();
    info!(objects = written, snapshot = %manifest.snapshot_id, "BIKA snapshot complete.");
    Ok(ExtractReport {
        manifest,
        objects: written,
        resumed_units: 0,
        elapsed: started.elapsed(),
    })
}

fn text(m: &Map<String, Value>, k: &str) -> String {
    m.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

fn type_selected(opts: &ExtractOptions, t: &str) -> bool {
    (opts.include_types.is_empty() || opts.include_types.iter().any(|x| x == t))
        && !opts.exclude_types.iter().any(|x| x == t)
}

fn request_info(opts: &ExtractOptions) -> RequestInfo {
    RequestInfo {
        include_types: opts.include_types.clone(),
        exclude_types: opts.exclude_types.clone(),
        include_paths: opts.include_paths.clone(),
        exclude_paths: opts.exclude_paths.clone(),
        history: "none".into(),
        local_roles: "none".into(),
        site_records: opts.site_records,
    }
}

/// Checks the site is a BIKA (the legacy read answers) and reads the routes version.
fn probe(client: &SenaiteClient) -> Result<SourceInfo> {
    let q = ReadQuery {
        include_fields: vec!["UID".into()],
        ..ReadQuery::page("portal_catalog", 1, 0)
    };
    legacy::read(client, &q).map_err(|e| match e {
        Error::HttpStatus {
            status: 404, url, ..
        } => Error::BadResponse {
            url,
            message: "no bika.lims legacy API here (is the URL the site, e.g. \
                      http://host:8080/lims?)"
                .into(),
        },
        other => other,
    })?;
    let mut versions = BTreeMap::new();
    let routes = client
        .get_json(&format!("{}/version", legacy::routes_url(client)), &[])
        .ok()
        .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_string));
    if let Some(v) = &routes {
        versions.insert("plone.jsonapi.routes".to_string(), v.clone());
    }
    Ok(SourceInfo {
        kind: "bika".into(),
        site_url: client.site_url().to_string(),
        jsonapi_version: routes,
        versions,
    })
}

/// What reading pages needs.
struct Pages<'a> {
    client: &'a SenaiteClient,
    staging: &'a Staging,
    size: u64,
    pool: &'a rayon::ThreadPool,
}

/// One page of a catalog, as read (and staged under `reads/`, so a re-run of an interrupted
/// extract does not read it again).
#[derive(Debug, Default, Serialize, Deserialize)]
struct PageRead {
    total: u64,
    objects: Vec<Map<String, Value>>,
    /// The `include_fields` the page was read with, when its full read failed and the fields
    /// learnt for its types served.
    #[serde(default)]
    fields: Vec<String>,
    failed: Vec<Failed>,
    notes: Vec<Note>,
}

/// A page of a catalog read: one portal type's (or, when the catalog cannot be listed by type,
/// the whole catalog's) `page_nr`-th page.
#[derive(Debug, Clone)]
struct Unit {
    portal_type: Option<String>,
    page_nr: u64,
}

impl Unit {
    /// The read of this page (`include_fields` empty: every field).
    fn query(&self, catalog: &str, size: u64) -> ReadQuery {
        let mut q = ReadQuery::page(catalog, size, self.page_nr);
        if let Some(t) = &self.portal_type {
            q.filters.push(("portal_type".into(), t.clone()));
        }
        q
    }

    /// The staging name of this page.
    fn staged(&self, catalog: &str) -> String {
        match &self.portal_type {
            Some(t) => {
                let t: String = t
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                format!("reads/{catalog}/{t}/{:09}.json", self.page_nr)
            }
            None => format!("reads/{catalog}/{:09}.json", self.page_nr),
        }
    }
}

/// Reads a page, or takes it from the staging area. `fields`: the `include_fields` an earlier
/// page of the same type needed (its full read failed); tried first, so that the later pages of
/// a type whose full read fails cost one request, not three.
fn page(
    ctx: &Pages,
    catalog: &str,
    unit: &Unit,
    learnt: &Learnt,
    fields: Option<&Vec<String>>,
) -> Result<PageRead> {
    let name = unit.staged(catalog);
    if let Some(p) = ctx.staging.read_doc::<PageRead>(&name)? {
        return Ok(p);
    }
    let mut direct = None;
    if let (Some(fields), Some(t)) = (fields, &unit.portal_type) {
        let q = ReadQuery {
            include_fields: fields.clone(),
            ..unit.query(catalog, ctx.size)
        };
        match legacy::read(ctx.client, &q) {
            Ok(p) if p.objects.iter().all(|o| text(o, "portal_type") == *t) => {
                direct = Some(PageRead {
                    total: p.total,
                    objects: p.objects,
                    fields: fields.clone(),
                    ..Default::default()
                });
            }
            Ok(_) => {}
            Err(e) if is_object_error(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let p = match direct {
        Some(p) => p,
        None => match legacy::read(ctx.client, &unit.query(catalog, ctx.size)) {
            Ok(p) => PageRead {
                total: p.total,
                objects: p.objects,
                ..Default::default()
            },
            Err(e) if is_object_error(&e) => {
                warn!(catalog, portal_type = unit.portal_type.as_deref().unwrap_or(""),
                      page_nr = unit.page_nr, error = %e,
                      "Page unreadable whole; reading it with include_fields.");
                read_page_fallback(ctx, catalog, unit, learnt, &e)?
            }
            Err(e) => return Err(e),
        },
    };
    ctx.staging.write_doc(&name, &p)?;
    Ok(p)
}

/// Field names per portal type.
type Learnt = BTreeMap<String, BTreeSet<String>>;

/// Objects per portal type of a catalog: a cheap `include_fields=UID,portal_type` read in
/// pages of [`LIST_PAGE`], staged. `None` when an object has no `portal_type` (the catalog is
/// then paged whole) or the listing fails.
fn list_types(ctx: &Pages, catalog: &str) -> Result<Option<(u64, BTreeMap<String, u64>)>> {
    let name = format!("reads/{catalog}/types.json");
    if let Some(t) = ctx.staging.read_doc(&name)? {
        return Ok(Some(t));
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut total;
    let mut nr = 0;
    loop {
        let q = ReadQuery {
            include_fields: vec!["UID".into(), "portal_type".into()],
            ..ReadQuery::page(catalog, LIST_PAGE, nr)
        };
        let p = match legacy::read(ctx.client, &q) {
            Ok(p) => p,
            Err(e) if is_object_error(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        total = p.total;
        for o in &p.objects {
            let t = text(o, "portal_type");
            if t.is_empty() {
                return Ok(None);
            }
            *counts.entry(t).or_insert(0) += 1;
        }
        nr += 1;
        if p.objects.is_empty() || nr * LIST_PAGE >= total {
            break;
        }
    }
    let listed = (total, counts);
    ctx.staging.write_doc(&name, &listed)?;
    Ok(Some(listed))
}

/// Page size of the type listing (only UID and portal_type per object: cheap).
const LIST_PAGE: u64 = 5000;

/// Reads every page of a catalog, by portal type: a failure to serialize an object (a broken
/// field of one type) then costs a failed page of that type only, and a type whose full read
/// fails is read with `include_fields` from its second page on directly. First the first page
/// of every type, then the others, in parallel (the pool's size is `--jobs`). Pages that fail
/// whole are read again with `include_fields` or object by object (see
/// [`read_page_fallback`]). Returns the catalog's entry for the `site` raw stream.
fn read_catalog(
    ctx: &Pages,
    catalog: &str,
    objects: &mut BTreeMap<String, Read>,
    learnt_so_far: &mut Learnt,
    failed: &mut Vec<Failed>,
    notes: &mut Vec<Note>,
) -> Result<Value> {
    use rayon::prelude::*;
    let learnt = learnt_so_far.clone();
    let size = ctx.size.max(1);
    // (unit, objects expected by the listing) for the first pages, then the rest.
    type Planned = Vec<(Unit, u64)>;
    let (firsts, rests, total): (Planned, Planned, u64) = match list_types(ctx, catalog)? {
        Some((total, counts)) => {
            let mut firsts = Vec::new();
            let mut rests = Vec::new();
            for (t, c) in counts {
                for nr in 0..c.div_ceil(size).max(1) {
                    let u = Unit {
                        portal_type: Some(t.clone()),
                        page_nr: nr,
                    };
                    if nr == 0 {
                        firsts.push((u, c));
                    } else {
                        rests.push((u, c));
                    }
                }
            }
            (firsts, rests, total)
        }
        None => {
            let whole = |nr| Unit {
                portal_type: None,
                page_nr: nr,
            };
            let first = page(ctx, catalog, &whole(0), &learnt, None)?;
            let total = first.total;
            let rests = (1..total.div_ceil(size).max(1))
                .map(|nr| (whole(nr), total))
                .collect();
            (vec![(whole(0), total)], rests, total)
        }
    };
    let first_pages: Vec<Result<PageRead>> = ctx.pool.install(|| {
        firsts
            .par_iter()
            .map(|(u, _)| page(ctx, catalog, u, &learnt, None))
            .collect()
    });
    let first_pages: Vec<PageRead> = first_pages.into_iter().collect::<Result<_>>()?;
    // A type whose first page needed include_fields: its later pages ask for them at once.
    let direct: BTreeMap<String, Vec<String>> = firsts
        .iter()
        .zip(&first_pages)
        .filter(|(_, p)| !p.fields.is_empty())
        .filter_map(|((u, _), p)| Some((u.portal_type.clone()?, p.fields.clone())))
        .collect();
    let rest_pages: Vec<Result<PageRead>> = ctx.pool.install(|| {
        rests
            .par_iter()
            .map(|(u, _)| {
                let fields = u.portal_type.as_ref().and_then(|t| direct.get(t));
                page(ctx, catalog, u, &learnt, fields)
            })
            .collect()
    });
    let mut uids: BTreeSet<String> = BTreeSet::new();
    let units = firsts.iter().chain(&rests);
    let reads = first_pages.into_iter().map(Ok).chain(rest_pages);
    for ((unit, expected), p) in units.zip(reads) {
        let p = p?;
        if p.total != *expected {
            notes.push(Note {
                kind: "catalog_changed".into(),
                subject: catalog.into(),
                message: format!(
                    "{} objects{} announced, {} while paging: the site changed during the \
                     extract",
                    expected,
                    unit.portal_type
                        .as_ref()
                        .map(|t| format!(" of {t}"))
                        .unwrap_or_default(),
                    p.total
                ),
            });
        }
        failed.extend(p.failed);
        notes.extend(p.notes);
        for mut o in p.objects {
            let uid = text(&o, "UID");
            if uid.is_empty() {
                continue;
            }
            learn(learnt_so_far, &o);
            slim_inline(&mut o);
            uids.insert(uid.clone());
            merge(objects, uid, o, catalog);
        }
    }
    info!(catalog, objects = uids.len(), total, "Read catalog.");
    Ok(json!({"catalog": catalog, "total_objects": total}))
}

/// Adds a read to the merged objects (first read's values win; later catalogs add keys).
fn merge(objects: &mut BTreeMap<String, Read>, uid: String, o: Map<String, Value>, catalog: &str) {
    match objects.get_mut(&uid) {
        Some(r) => {
            for (k, v) in o {
                r.raw.entry(k).or_insert(v);
            }
            r.catalogs.insert(catalog.to_string());
        }
        None => {
            objects.insert(
                uid,
                Read {
                    raw: o,
                    catalogs: BTreeSet::from([catalog.to_string()]),
                },
            );
        }
    }
}

/// A failed page: its UIDs and types (a cheap `include_fields=UID,portal_type` read of the same
/// page); when every type on it has field names learnt from earlier reads (an analysis
/// request inlines its analyses whole), the page again with `include_fields` set to them (one
/// request, as fast as the full read); else, or when that fails too, full reads of halves of
/// the page's UIDs down to the single objects that fail, which are returned in `failed`.
fn read_page_fallback(
    ctx: &Pages,
    catalog: &str,
    unit: &Unit,
    learnt: &Learnt,
    page_error: &Error,
) -> Result<PageRead> {
    let client = ctx.client;
    let page_nr = unit.page_nr;
    let mut out = PageRead::default();
    let q = ReadQuery {
        include_fields: vec!["UID".into(), "portal_type".into()],
        ..unit.query(catalog, ctx.size)
    };
    let listed = legacy::read(client, &q).map_err(|e| Error::BadResponse {
        url: legacy::read_url(client),
        message: format!("{catalog} page {page_nr} cannot be read ({page_error}) nor listed ({e})"),
    })?;
    let types: BTreeSet<String> = listed
        .objects
        .iter()
        .map(|o| text(o, "portal_type"))
        .collect();
    if types.iter().all(|t| learnt.contains_key(t)) {
        let mut fields: BTreeSet<String> = types
            .iter()
            .filter_map(|t| learnt.get(t))
            .flatten()
            .cloned()
            .collect();
        fields.extend(IDENTITY.iter().map(|k| k.to_string()));
        fields.retain(|k| k != "path" && !k.ends_with("_uid"));
        let fields: Vec<String> = fields.into_iter().collect();
        let q = ReadQuery {
            include_fields: fields.clone(),
            ..unit.query(catalog, ctx.size)
        };
        match legacy::read(client, &q) {
            Ok(p) if p.objects.len() == listed.objects.len() => {
                for t in &types {
                    out.notes.push(Note {
                        kind: "partial".into(),
                        subject: t.clone(),
                        message: format!(
                            "{catalog}: the full read fails ({}); read with include_fields \
                             naming the fields learnt from other reads of the type (what only \
                             the failing read adds is missing)",
                            api_message(page_error)
                        ),
                    });
                }
                out.total = p.total;
                out.objects = p.objects;
                out.fields = fields;
                return Ok(out);
            }
            Ok(_) => {}
            Err(e) if is_object_error(&e) => {}
            Err(e) => return Err(e),
        }
    }
    out.total = listed.total;
    // Halve the page's UID list (`UID[]` filters) until each unreadable object stands alone:
    // k failures among n objects cost about 2k·log2(n) requests, not n.
    let mut stack: Vec<Vec<Map<String, Value>>> = vec![listed.objects];
    while let Some(set) = stack.pop() {
        let q = ReadQuery {
            catalog: catalog.into(),
            filters: set
                .iter()
                .map(|o| ("UID[]".to_string(), text(o, "UID")))
                .collect(),
            page_size: set.len() as u64,
            ..Default::default()
        };
        match legacy::read(client, &q) {
            Ok(p) => out.objects.extend(p.objects),
            Err(e) if is_object_error(&e) && set.len() == 1 => {
                let o = &set[0];
                out.failed.push(Failed {
                    uid: text(o, "UID"),
                    catalog: catalog.into(),
                    portal_type: text(o, "portal_type"),
                    error: api_message(&e),
                });
            }
            Err(e) if is_object_error(&e) => {
                let mut a = set;
                let b = a.split_off(a.len() / 2);
                stack.push(b);
                stack.push(a);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Errors the server gives for an object it cannot serialize (retrying cannot help).
fn is_object_error(e: &Error) -> bool {
    matches!(e, Error::Api { .. }) || matches!(e, Error::HttpStatus { status: 500, .. })
}

/// Adds the field names of a read object, and of the analyses it inlines, to `learnt`.
fn learn(learnt: &mut Learnt, m: &Map<String, Value>) {
    let mut add = |m: &Map<String, Value>| {
        let e = learnt.entry(text(m, "portal_type")).or_default();
        for k in m.keys() {
            if !e.contains(k) {
                e.insert(k.clone());
            }
        }
    };
    add(m);
    if let Some(Value::Array(inline)) = m.get("Analyses") {
        for a in inline.iter().filter_map(Value::as_object) {
            add(a);
        }
    }
}

/// Keys of an inlined object that its reference keeps (see `record::normalize`).
const INLINE_KEEP: &[&str] = &["UID", "title", "Title"];

/// Drops all but the reference keys of the analyses an analysis request inlines whole (they are
/// objects of their own, read from `bika_analysis_catalog`; their field names are learnt
/// before): an analysis request then holds a fraction of its read in memory.
fn slim_inline(m: &mut Map<String, Value>) {
    if let Some(Value::Array(inline)) = m.get_mut("Analyses") {
        for a in inline.iter_mut() {
            if let Value::Object(o) = a {
                o.retain(|k, _| INLINE_KEEP.contains(&k.as_str()));
            }
        }
    }
}

/// Reads the objects no full read could serve with `include_fields`.
fn read_failed(
    client: &SenaiteClient,
    failed: Vec<Failed>,
    objects: &mut BTreeMap<String, Read>,
    learnt: &Learnt,
    notes: &mut Vec<Note>,
) -> Result<()> {
    for f in failed {
        let mut fields: Vec<String> = learnt
            .get(&f.portal_type)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default();
        if fields.is_empty() {
            fields = routes_keys(client, &f.uid);
        }
        for k in IDENTITY {
            if !fields.iter().any(|x| x == k) {
                fields.push((*k).into());
            }
        }
        fields.retain(|k| k != "path" && !k.ends_with("_uid"));
        let mut dropped = Vec::new();
        let rec = read_with_fields(client, &f.catalog, &f.uid, fields, &mut dropped)?;
        let Some(rec) = rec else {
            notes.push(Note {
                kind: "unreadable".into(),
                subject: f.uid.clone(),
                message: format!("{} in {}: {}", f.portal_type, f.catalog, f.error),
            });
            continue;
        };
        dropped.sort();
        notes.push(Note {
            kind: "partial".into(),
            subject: f.uid.clone(),
            message: format!(
                "{} in {}: a full read fails ({}); read with include_fields{}",
                f.portal_type,
                f.catalog,
                f.error,
                if dropped.is_empty() {
                    String::new()
                } else {
                    format!("; fields that cannot be read: {}", dropped.join(", "))
                }
            ),
        });
        merge(objects, f.uid, rec, &f.catalog);
    }
    Ok(())
}

/// Schema field names of an object from plone.jsonapi.routes (portal_catalog objects only).
fn routes_keys(client: &SenaiteClient, uid: &str) -> Vec<String> {
    let url = format!("{}/{uid}", legacy::routes_url(client));
    match client.get_json(&url, &[("complete", "yes".to_string())]) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Reads one object with `include_fields`; fields that break the read are found by halving
/// and left out (added to `dropped`). `None` when not even the bare identity reads.
fn read_with_fields(
    client: &SenaiteClient,
    catalog: &str,
    uid: &str,
    fields: Vec<String>,
    dropped: &mut Vec<String>,
) -> Result<Option<Map<String, Value>>> {
    let try_read = |fields: &[String]| -> Result<Option<Map<String, Value>>> {
        let q = ReadQuery {
            include_fields: fields.to_vec(),
            ..ReadQuery::uid(catalog, uid)
        };
        match legacy::read(client, &q) {
            Ok(p) => Ok(p.objects.into_iter().next()),
            Err(e) if is_object_error(&e) => Ok(None),
            Err(e) => Err(e),
        }
    };
    if let Some(r) = try_read(&fields)? {
        return Ok(Some(r));
    }
    // Halve: keep every half that reads, recurse into the ones that do not.
    let mut good: Vec<String> = Vec::new();
    let mut stack = vec![fields];
    while let Some(set) = stack.pop() {
        if set.len() == 1 {
            if try_read(&set)?.is_some() {
                good.extend(set);
            } else {
                dropped.extend(set);
            }
            continue;
        }
        let (a, b) = set.split_at(set.len() / 2);
        for half in [a.to_vec(), b.to_vec()] {
            if try_read(&half)?.is_some() {
                good.extend(half);
            } else {
                stack.push(half);
            }
        }
    }
    if good.is_empty() {
        return Ok(None);
    }
    try_read(&good)
}

/// Compares each catalog's `total_objects` with the UIDs read from it; returns the catalog
/// entries without their UID lists.
fn check_totals(
    infos: Vec<Value>,
    objects: &BTreeMap<String, Read>,
    notes: &mut Vec<Note>,
) -> Vec<Value> {
    infos
        .into_iter()
        .map(|mut info| {
            let catalog = info["catalog"].as_str().unwrap_or("").to_string();
            let total = info["total_objects"].as_u64().unwrap_or(0);
            let got = objects
                .values()
                .filter(|r| r.catalogs.contains(&catalog))
                .count() as u64;
            if got != total {
                notes.push(Note {
                    kind: "count_mismatch".into(),
                    subject: catalog.clone(),
                    message: format!(
                        "the catalog announced {total} objects, the snapshot holds {got}"
                    ),
                });
            }
            if let Value::Object(m) = &mut info {
                m.remove("uids");
                m.insert("objects_read".into(), Value::from(got));
            }
            info
        })
        .collect()
}

/// Downloads the file fields of an object that the read left out (they hold bytes).
fn read_blobs(
    client: &SenaiteClient,
    opts: &ExtractOptions,
    portal_type: &str,
    path: &str,
    uid: &str,
    raw: &Map<String, Value>,
) -> Result<Vec<BlobRef>> {
    let fields: Vec<&str> = FILE_FIELDS
        .iter()
        .filter(|(t, f)| *t == portal_type && !is_empty_file(raw.get(*f)))
        .map(|(_, f)| *f)
        .collect();
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    // File names and types: plone.jsonapi.routes knows them for portal_catalog objects.
    let info = match client.get_json(
        &format!("{}/{uid}", legacy::routes_url(client)),
        &[("complete", "yes".to_string())],
    ) {
        Ok(v) => v,
        Err(_) => Value::Null,
    };
    let mut out = Vec::new();
    for field in fields {
        let url = format!("{}{path}/at_download/{field}", client.origin());
        let stored = match client.download(&url, |r| blobs::store_stream(&opts.out, r, &url)) {
            Ok(s) => s,
            Err(Error::HttpStatus { status: 404, .. }) => continue,
            Err(e) => return Err(e),
        };
        if stored.size == 0 {
            continue;
        }
        let meta = info.get(field);
        let s = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        out.push(BlobRef {
            field: field.to_string(),
            filename: s("filename"),
            content_type: s("content_type"),
            sha256: stored.sha256,
            size: stored.size,
        });
    }
    Ok(out)
}

/// A file field the read wrote (empty) rather than left out.
fn is_empty_file(v: Option<&Value>) -> bool {
    match v {
        None => false,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Null) => true,
        Some(_) => false,
    }
}

/// Users per role (`@@API/getusers`) merged with plone.jsonapi.routes `/users`, in the shape
/// of senaite.jsonapi's `/users` items (`username`, `fullname`, `roles`, ...).
fn read_users(client: &SenaiteClient) -> Result<SiteRecords> {
    let mut users: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for role in ROLES {
        let found = match legacy::getusers(client, role) {
            Ok(f) => f,
            Err(e) if is_object_error(&e) || matches!(e, Error::HttpStatus { .. }) => {
                warn!(role, error = %e, "getusers failed for a role.");
                continue;
            }
            Err(e) => return Err(e),
        };
        for (id, fullname) in found {
            let u = users.entry(id.clone()).or_insert_with(|| {
                let mut m = Map::new();
                m.insert("username".into(), Value::from(id.clone()));
                m.insert("fullname".into(), Value::from(fullname));
                m.insert("roles".into(), Value::Array(Vec::new()));
                m
            });
            if let Some(Value::Array(r)) = u.get_mut("roles") {
                r.push(Value::from(*role));
            }
        }
    }
    if let Ok(v) = client.get_json(&format!("{}/users", legacy::routes_url(client)), &[]) {
        for item in v
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(id) = item
                .get("username")
                .or(item.get("id"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let u = users.entry(id.to_string()).or_insert_with(|| {
                let mut m = Map::new();
                m.insert("username".into(), Value::from(id));
                m.insert("roles".into(), Value::Array(Vec::new()));
                m
            });
            if let Value::Object(extra) = item {
                merge_user(u, extra);
            }
        }
    }
    Ok(SiteRecords {
        users: users.into_values().map(Value::Object).collect(),
        ..Default::default()
    })
}

/// Adds a routes `/users` item to a user read from `getusers`: keys it lacks are added, and
/// its `roles` (the user's whole `getRoles()`, with the implicit `Authenticated` that
/// `getusers` never lists, as senaite.jsonapi's `/users` lists it) are joined to the roles
/// found per role, sorted.
fn merge_user(user: &mut Map<String, Value>, item: &Map<String, Value>) {
    for (k, v) in item {
        if k == "roles" {
            let mut roles: Vec<String> = user
                .get("roles")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .chain(v.as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            roles.sort();
            roles.dedup();
            user.insert(
                "roles".into(),
                Value::Array(roles.into_iter().map(Value::from).collect()),
            );
        } else {
            user.entry(k.clone()).or_insert(v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_roles_join_the_roles_found_per_role() {
        let mut user = json!({"username": "analyst1", "fullname": "A", "roles": ["Analyst"]})
            .as_object()
            .unwrap()
            .clone();
        let item = json!({"username": "analyst1", "fullname": "", "email": "a@example.com",
            "roles": ["Authenticated", "Analyst"]});
        merge_user(&mut user, item.as_object().unwrap());
        assert_eq!(user["roles"], json!(["Analyst", "Authenticated"]));
        assert_eq!(user["fullname"], "A", "getusers' full name is kept");
        assert_eq!(user["email"], "a@example.com");
    }

    #[test]
    fn file_fields_left_out_mean_bytes() {
        assert!(!is_empty_file(None));
        assert!(is_empty_file(Some(&json!(""))));
        assert!(!is_empty_file(Some(&json!("data"))));
    }

    #[test]
    fn merged_reads_keep_first_values_and_add_keys() {
        let mut objs = BTreeMap::new();
        let a = json!({"UID": "u", "x": 1}).as_object().unwrap().clone();
        let b = json!({"UID": "u", "x": 2, "y": 3})
            .as_object()
            .unwrap()
            .clone();
        merge(&mut objs, "u".into(), a, "portal_catalog");
        merge(&mut objs, "u".into(), b, "bika_catalog");
        let r = &objs["u"];
        assert_eq!(
            (r.raw["x"].clone(), r.raw["y"].clone()),
            (json!(1), json!(3))
        );
        assert_eq!(r.catalogs.len(), 2);
    }
}
