//! Fetching objects: one unit per page of complete records of a portal type (`search` with
//! `complete=yes&workflow=yes`, sorted on `created`), and units of single-object reads for what
//! the pages missed or could not read. For each object it adds what v1 loses: the plone.restapi
//! serialization of Dexterity objects, `@history` (microsecond review-history times), `@sharing`
//! (local roles) and the bytes of every file field, streamed into the blob store. Requests in
//! flight are bounded by the rayon pool the caller runs this in.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::extract::listing::Listed;
use crate::extract::since;
use crate::extract::staging::Staging;
use crate::extract::{ExtractOptions, HistoryMode, LocalRolesMode};
use crate::jsonx;
use crate::snapshot::blobs;
use crate::snapshot::record::{BlobRef, ObjectCapture};
use crate::source::client::api_error_message;
use crate::source::{SenaiteClient, paging};

/// Key prefix of note lines inside unit files.
pub(crate) const NOTE_KEY: &str = "!note";

/// What every unit needs.
pub(crate) struct FetchContext<'a> {
    pub client: &'a SenaiteClient,
    pub staging: &'a Staging,
    pub out: &'a Path,
    pub opts: &'a ExtractOptions,
    /// UIDs of objects that contain other objects (their local roles are read).
    pub containers: &'a BTreeSet<String>,
    /// The base of an incremental extract (`--since`): records equal to its own keep its data.
    pub old: Option<&'a crate::extract::since::OldSnapshot>,
    /// Bounds the per-object requests of pages in flight at once ([`SenaiteClient::get_json_batch`])
    /// to `-j`, across all pages.
    pub in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

/// A unit of work.
#[derive(Debug, Clone)]
pub(crate) enum Unit {
    /// One page of complete records of a type.
    Page { portal_type: String, b_start: u64 },
    /// Objects read one by one.
    Singles { objects: Vec<Listed> },
    /// Objects the base of an incremental extract serves as they are (local roles read again).
    Reused { objects: Vec<Listed> },
}

impl Unit {
    /// The unit's file name in the staging area.
    pub fn name(&self) -> String {
        match self {
            Unit::Page {
                portal_type,
                b_start,
            } => format!("units/pages/{}/{b_start:012}.jsonl.zst", safe(portal_type)),
            Unit::Singles { objects } => format!(
                "units/singles/{}.jsonl.zst",
                objects.first().map(|o| o.uid.as_str()).unwrap_or("none")
            ),
            Unit::Reused { objects } => format!(
                "units/reused/{}.jsonl.zst",
                objects.first().map(|o| o.uid.as_str()).unwrap_or("none")
            ),
        }
    }
}

fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A finished unit: objects stored and notes made.
#[derive(Debug, Default)]
pub(crate) struct UnitOutcome {
    pub objects: u64,
}

/// Runs a unit and stages its result.
///
/// # Errors
/// Errors that a re-run may fix (transport failures after retries, disk errors).
pub(crate) fn run_unit(ctx: &FetchContext, unit: &Unit) -> Result<UnitOutcome> {
    let mut lines: Vec<(String, String)> = Vec::new();
    match unit {
        Unit::Page {
            portal_type,
            b_start,
        } => page_unit(ctx, portal_type, *b_start, &mut lines)?,
        Unit::Singles { objects } => singles_unit(ctx, objects, &mut lines)?,
        Unit::Reused { objects } => reused_unit(ctx, objects, &mut lines)?,
    }
    let objects = lines.iter().filter(|(k, _)| !k.starts_with('!')).count() as u64;
    ctx.staging.write_unit(&unit.name(), &lines)?;
    Ok(UnitOutcome { objects })
}

fn page_unit(
    ctx: &FetchContext,
    portal_type: &str,
    b_start: u64,
    lines: &mut Vec<(String, String)>,
) -> Result<()> {
    let query = vec![
        ("portal_type", portal_type.to_string()),
        ("complete", "yes".to_string()),
        ("workflow", "yes".to_string()),
        ("sort_on", "created".to_string()),
        ("sort_order", "ascending".to_string()),
    ];
    let page = match read_page(ctx, &query, b_start) {
        Ok(p) => p,
        Err(e) if is_application_error(&e) => {
            // A type whose complete search fails (the real `Setup` answers 500): its objects
            // are read one by one in the reconciliation pass.
            warn!(portal_type, b_start, error = %e, "Complete search failed; objects will be read one by one.");
            lines.push(note(
                "fallback",
                portal_type,
                &format!("complete search failed ({e}); read one by one"),
            ));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    debug!(
        portal_type,
        b_start,
        items = page.items.len(),
        count = page.count,
        "Read page."
    );
    let started: Vec<Started> = page
        .items
        .into_par_iter()
        .filter_map(|item| {
            let head = item.head();
            let selected = !head.uid.is_empty() && ctx.opts.path_selected(&head.path);
            selected.then(|| start_v1(ctx, item.into_raw(), head))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut captures = finish_page(ctx, started)?;
    captures.sort_by(|a, b| a.cap.uid.cmp(&b.cap.uid));
    lines.push(note_count(portal_type, b_start, page.count));
    for c in captures {
        push_fetched(lines, c);
    }
    Ok(())
}

/// Stages a fetched object, with the marker saying it was found unchanged.
fn push_fetched(lines: &mut Vec<(String, String)>, c: Fetched) {
    if c.rechecked {
        lines.push(since::marker(&c.cap.uid, "rechecked"));
    }
    lines.push((c.cap.uid.clone(), c.to_json()));
}

/// Objects of the base taken as they are: their records from the base, local roles read again.
fn reused_unit(
    ctx: &FetchContext,
    objects: &[Listed],
    lines: &mut Vec<(String, String)>,
) -> Result<()> {
    let Some(old) = ctx.old else {
        return Ok(());
    };
    let results: Vec<Result<ObjectCapture>> = objects
        .par_iter()
        .map(|o| {
            let mut cap = since::reused_capture(old, o)?;
            refresh_reused(ctx, old, &mut cap)?;
            Ok(cap)
        })
        .collect();
    for r in results {
        let cap = r?;
        lines.push(since::marker(&cap.uid, "reused"));
        let json = serde_json::to_string(&cap).map_err(|source| Error::JsonFile {
            path: ctx.staging.root().to_path_buf(),
            source,
        })?;
        lines.push((cap.uid.clone(), json));
    }
    Ok(())
}

/// What a reused object needs from the source: its local roles (they change without a trace in
/// the record), and its files linked from the base.
fn refresh_reused(
    ctx: &FetchContext,
    old: &since::OldSnapshot,
    cap: &mut ObjectCapture,
) -> Result<()> {
    if since::wants_sharing(ctx.opts, ctx.containers, &cap.uid) {
        match ctx.client.rest_get(&format!("{}/@sharing", cap.path), &[]) {
            Ok(v) => cap.sharing = Some(v),
            Err(e) if is_application_error(&e) => {
                debug!(uid = %cap.uid, error = %e, "Local roles unreadable.");
            }
            Err(e) => return Err(e),
        }
    }
    old.link_blobs(ctx.out, &cap.blobs)
}

/// A page of complete records, its items kept as the server's JSON text.
struct RawPage {
    count: u64,
    items: Vec<PageItem>,
}

/// One record of a page: its text, and where the text could not be read as a page of raw
/// items (non-finite numbers, duplicate keys), the parsed value.
enum PageItem {
    Raw(Box<RawValue>),
    Parsed(Value),
}

impl PageItem {
    fn head(&self) -> Head {
        match self {
            PageItem::Raw(raw) => Head::of_raw(raw).unwrap_or_else(|| {
                Head::of_value(&serde_json::from_str(raw.get()).unwrap_or(Value::Null))
            }),
            PageItem::Parsed(v) => Head::of_value(v),
        }
    }

    fn into_raw(self) -> Box<RawValue> {
        match self {
            PageItem::Raw(raw) => raw,
            PageItem::Parsed(v) => to_raw(&v),
        }
    }
}

/// The envelope of a search page, borrowing its items' text.
#[derive(Deserialize)]
struct Envelope<'a> {
    count: u64,
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
    #[serde(default)]
    success: Option<Value>,
}

/// Reads one page of `search`. The records stay JSON text until assembly parses them once
/// (parsing 2 MB pages into values here and serializing them again for staging was a fifth of
/// extract's CPU time in perf). Answers the fast path cannot take (an API error dict,
/// non-finite numbers, an odd envelope) go the general way, with the same errors as
/// [`paging::read_page`].
fn read_page(ctx: &FetchContext, query: &[(&str, String)], b_start: u64) -> Result<RawPage> {
    let limit = ctx.opts.page_size;
    let mut q: Vec<(&str, String)> = query.to_vec();
    q.push(("b_start", b_start.to_string()));
    q.push(("limit", limit.to_string()));
    let url = format!("{}/search", ctx.client.api_url());
    let body = ctx.client.get_json_bytes(&url, &q)?;
    if let Ok(env) = serde_json::from_slice::<Envelope>(&body)
        && env.success.is_none()
    {
        return Ok(RawPage {
            count: env.count,
            items: env
                .items
                .into_iter()
                .map(|i| PageItem::Raw(i.to_owned()))
                .collect(),
        });
    }
    let shown = format!(
        "{url}?{}",
        q.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let value = jsonx::parse_lenient(&body).map_err(|e| Error::BadResponse {
        url: shown.clone(),
        message: format!("body is not JSON ({e})"),
    })?;
    if let Some(message) = api_error_message(&value) {
        return Err(Error::Api {
            url: shown,
            message,
        });
    }
    let page = paging::parse_page("search", b_start, limit, value, ctx.client.api_url())?;
    Ok(RawPage {
        count: page.count,
        items: page.items.into_iter().map(PageItem::Parsed).collect(),
    })
}

fn singles_unit(
    ctx: &FetchContext,
    objects: &[Listed],
    lines: &mut Vec<(String, String)>,
) -> Result<()> {
    let results: Vec<Result<Option<Fetched>>> =
        objects.par_iter().map(|o| read_single(ctx, o)).collect();
    for (o, r) in objects.iter().zip(results) {
        match r? {
            Some(c) => push_fetched(lines, c),
            None => lines.push(note(
                "vanished",
                &o.uid,
                &format!("{} ({}) was listed but is gone", o.path, o.portal_type),
            )),
        }
    }
    Ok(())
}

/// Reads one object by UID; falls back to plone.restapi when v1 cannot read it.
fn read_single(ctx: &FetchContext, o: &Listed) -> Result<Option<Fetched>> {
    let q = [
        ("complete", "yes".to_string()),
        ("workflow", "yes".to_string()),
    ];
    let v1_error = match ctx.client.api_get(&o.uid, &q) {
        Ok(mut v) if v.get("uid").and_then(Value::as_str) == Some(o.uid.as_str()) => {
            // `_runtime` is the time the server took, not data: without it the raw stream of
            // an object read alone equals that of the same object read on a page.
            if let Value::Object(m) = &mut v {
                m.remove("_runtime");
            }
            let head = Head::of_value(&v);
            return capture_v1(ctx, to_raw(&v), head).map(Some);
        }
        Ok(_) => "senaite.jsonapi answered an empty record (object not in its catalog)".to_string(),
        Err(Error::HttpStatus { status: 404, .. }) => return Ok(None),
        Err(e) if is_application_error(&e) => e.to_string(),
        Err(e) => return Err(e),
    };
    let restapi = match ctx.client.rest_get(&o.path, &[]) {
        Ok(v) => v,
        Err(Error::HttpStatus { status: 404, .. }) => return Ok(None),
        Err(e) => {
            return Err(Error::BadResponse {
                url: o.path.clone(),
                message: format!(
                    "neither senaite.jsonapi ({v1_error}) nor plone.restapi ({e}) can read {}",
                    o.uid
                ),
            });
        }
    };
    // An object only plone.restapi reads: its serialization is its complete record, compared
    // with the base's like a v1 record.
    if let Some(old) = ctx.old
        && let Some(mut cap) = old.reusable_restapi(&o.uid, &o.path, &restapi)
    {
        cap.v1_error = Some(v1_error);
        refresh_reused(ctx, old, &mut cap)?;
        return Ok(Some(Fetched {
            cap,
            v1: None,
            rechecked: true,
        }));
    }
    let mut cap = ObjectCapture {
        uid: o.uid.clone(),
        portal_type: o.portal_type.clone(),
        path: o.path.clone(),
        v1_error: Some(v1_error),
        restapi: Some(restapi),
        ..Default::default()
    };
    read_extras(ctx, &mut cap)?;
    Ok(Some(Fetched {
        cap,
        v1: None,
        rechecked: false,
    }))
}

/// What was read about one object, ready to stage: its v1 record stays the server's text.
struct Fetched {
    /// Everything but the v1 record.
    cap: ObjectCapture,
    v1: Option<Box<RawValue>>,
    /// Found equal to the base of an incremental extract (its other data is the base's).
    rechecked: bool,
}

/// A staged line: the fields of [`ObjectCapture`] (which assembly reads it back as), with the
/// v1 record written verbatim.
#[derive(Serialize)]
struct StagedLine<'a> {
    uid: &'a str,
    portal_type: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    v1: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v1_error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restapi: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sharing: Option<&'a Value>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    blobs: &'a [BlobRef],
}

impl Fetched {
    fn to_json(&self) -> String {
        let c = &self.cap;
        let line = StagedLine {
            uid: &c.uid,
            portal_type: &c.portal_type,
            path: &c.path,
            v1: self.v1.as_deref(),
            v1_error: c.v1_error.as_deref(),
            restapi: c.restapi.as_ref(),
            history: c.history.as_ref(),
            sharing: c.sharing.as_ref(),
            blobs: &c.blobs,
        };
        // INVARIANT: a capture holds only JSON values and strings; serializing cannot fail.
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// What fetching needs to know of a v1 record.
struct Head {
    uid: String,
    portal_type: String,
    path: String,
    has_workflow: bool,
    archetypes: bool,
}

/// A key that is present, whatever its value.
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// The keys of a v1 record [`Head`] reads, borrowed from its text.
#[derive(Deserialize)]
#[allow(non_snake_case)]
struct RawHead<'a> {
    #[serde(borrow, default)]
    uid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    portal_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    workflow_info: Option<&'a RawValue>,
    #[serde(default)]
    creation_date: Present,
    #[serde(default)]
    modification_date: Present,
    #[serde(default)]
    allowDiscussion: Present,
    #[serde(default)]
    expirationDate: Present,
}

impl Head {
    fn of_value(item: &Value) -> Head {
        let s = |k: &str| {
            item.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Head {
            uid: s("uid"),
            portal_type: s("portal_type"),
            path: s("path"),
            has_workflow: item
                .get("workflow_info")
                .and_then(Value::as_array)
                .is_some_and(|w| !w.is_empty()),
            archetypes: is_archetypes(Some(item)),
        }
    }

    /// `None` when the text does not fit (a key given twice, a non-string uid): the caller
    /// parses it instead.
    fn of_raw(raw: &RawValue) -> Option<Head> {
        let h: RawHead = serde_json::from_str(raw.get()).ok()?;
        let has_workflow = match h.workflow_info {
            Some(w) => !serde_json::from_str::<Vec<serde::de::IgnoredAny>>(w.get())
                .unwrap_or_default()
                .is_empty(),
            None => false,
        };
        let at = [
            h.creation_date.0,
            h.modification_date.0,
            h.allowDiscussion.0,
            h.expirationDate.0,
        ];
        let text = |c: Option<Cow<'_, str>>| c.map(Cow::into_owned).unwrap_or_default();
        Some(Head {
            uid: text(h.uid),
            portal_type: text(h.portal_type),
            path: text(h.path),
            has_workflow,
            archetypes: at.iter().filter(|p| **p).count() >= 2,
        })
    }
}

fn to_raw(v: &Value) -> Box<RawValue> {
    // INVARIANT: a serialized value is valid JSON; neither step can fail.
    serde_json::value::to_raw_value(v)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
}

/// One object read alone: [`start_v1`] and [`finish_page`] for a page of one, so a single read
/// makes the same plone.restapi reads and judges them the same way as a page does.
fn capture_v1(ctx: &FetchContext, raw: Box<RawValue>, head: Head) -> Result<Fetched> {
    let uid = head.uid.clone();
    finish_page(ctx, vec![start_v1(ctx, raw, head)?])?
        .pop()
        .ok_or_else(|| Error::BadResponse {
            url: uid,
            message: "the object's plone.restapi reads gave no capture".into(),
        })
}

/// A page's object before its per-object reads: taken from the base of an incremental
/// extract, or waiting for its plone.restapi reads.
enum Started {
    Done(Fetched),
    Pending {
        cap: ObjectCapture,
        raw: Box<RawValue>,
        has_workflow: bool,
        archetypes: bool,
    },
}

/// An object of a page up to its plone.restapi reads, which [`finish_page`] makes for the whole
/// page.
fn start_v1(ctx: &FetchContext, raw: Box<RawValue>, head: Head) -> Result<Started> {
    if let Some(old) = ctx.old
        && let Ok(v1) = jsonx::parse_lenient(raw.get().as_bytes())
        && let Some(mut cap) = old.reusable(&head.uid, &head.path, &v1)
    {
        refresh_reused(ctx, old, &mut cap)?;
        return Ok(Started::Done(Fetched {
            cap,
            v1: Some(raw),
            rechecked: true,
        }));
    }
    Ok(Started::Pending {
        cap: ObjectCapture {
            uid: head.uid,
            portal_type: head.portal_type,
            path: head.path,
            ..Default::default()
        },
        raw,
        has_workflow: head.has_workflow,
        archetypes: head.archetypes,
    })
}

/// Which plone.restapi read of an object an answer belongs to.
#[derive(Clone, Copy)]
enum Extra {
    Restapi,
    History,
    Sharing,
}

/// The plone.restapi reads of a page's objects (serialization of Dexterity objects, `@history`,
/// `@sharing`), made as one batch on the HTTP engine, then judged per object ([`take_extra`]);
/// then each object's files.
fn finish_page(ctx: &FetchContext, started: Vec<Started>) -> Result<Vec<Fetched>> {
    let mut wanted: Vec<(usize, Extra)> = Vec::new();
    let mut urls: Vec<String> = Vec::new();
    for (i, s) in started.iter().enumerate() {
        let Started::Pending {
            cap,
            has_workflow,
            archetypes,
            ..
        } = s
        else {
            continue;
        };
        for (extra, path) in extras_of(ctx, cap, *has_workflow, *archetypes) {
            wanted.push((i, extra));
            urls.push(ctx.client.rest_url(&path));
        }
    }
    let mut answers: Vec<Vec<(Extra, Result<Value>)>> =
        started.iter().map(|_| Vec::new()).collect();
    if !urls.is_empty() {
        let got = ctx.client.get_json_batch(urls, &ctx.in_flight);
        for ((i, extra), answer) in wanted.into_iter().zip(got) {
            if let Some(a) = answers.get_mut(i) {
                a.push((extra, answer));
            }
        }
    }
    started
        .into_par_iter()
        .zip(answers)
        .map(|(s, answers)| match s {
            Started::Done(f) => Ok(f),
            Started::Pending { mut cap, raw, .. } => {
                for (extra, answer) in answers {
                    take_extra(&mut cap, extra, answer)?;
                }
                cap.blobs = fetch_blobs(ctx, &cap, Some(&raw))?;
                Ok(Fetched {
                    cap,
                    v1: Some(raw),
                    rechecked: false,
                })
            }
        })
        .collect()
}

/// The plone.restapi reads an object needs: its serialization (Dexterity), `@history` (exact
/// review history), `@sharing` (local roles).
fn extras_of(
    ctx: &FetchContext,
    cap: &ObjectCapture,
    has_workflow: bool,
    archetypes: bool,
) -> Vec<(Extra, String)> {
    let mut out = Vec::new();
    if !archetypes {
        out.push((Extra::Restapi, cap.path.clone()));
    }
    if ctx.opts.history == HistoryMode::Exact && has_workflow {
        out.push((Extra::History, format!("{}/@history", cap.path)));
    }
    if wants_sharing(ctx, cap) {
        out.push((Extra::Sharing, format!("{}/@sharing", cap.path)));
    }
    out
}

/// Keeps one plone.restapi answer, or judges its error: an object plone.restapi cannot
/// serialize, or whose history or local roles it cannot read (an application error), is kept
/// without them; any other failure stops the unit.
fn take_extra(cap: &mut ObjectCapture, extra: Extra, answer: Result<Value>) -> Result<()> {
    match (extra, answer) {
        (Extra::Restapi, Ok(v)) => cap.restapi = Some(v),
        (Extra::Restapi, Err(e)) => {
            debug!(uid = %cap.uid, error = %e, "plone.restapi cannot serialize object.");
        }
        (Extra::History, Ok(v)) => cap.history = Some(v),
        (Extra::History, Err(e)) if is_application_error(&e) => {
            debug!(uid = %cap.uid, error = %e, "No exact review history; whole seconds kept.");
        }
        (Extra::Sharing, Ok(v)) => cap.sharing = Some(v),
        (Extra::Sharing, Err(e)) if is_application_error(&e) => {
            debug!(uid = %cap.uid, error = %e, "Local roles unreadable.");
        }
        (_, Err(e)) => return Err(e),
    }
    Ok(())
}

/// Whether the local roles of `cap` are read.
fn wants_sharing(ctx: &FetchContext, cap: &ObjectCapture) -> bool {
    match ctx.opts.local_roles {
        LocalRolesMode::All => true,
        LocalRolesMode::Containers => ctx.containers.contains(&cap.uid),
        LocalRolesMode::None => false,
    }
}

/// Fields of the Archetypes base schema that every complete AT record carries and no Dexterity
/// record has. (The catalogs' type lists cannot tell: `senaite_catalog_setup` lists Dexterity
/// types too.)
const AT_BASE_FIELDS: &[&str] = &[
    "creation_date",
    "modification_date",
    "allowDiscussion",
    "expirationDate",
];

/// Whether a complete v1 record is of an Archetypes object. Dexterity records are the ones whose
/// values v1 may read back as null (booleans, durations, multi-valued references).
pub(crate) fn is_archetypes(record: Option<&Value>) -> bool {
    let Some(Value::Object(r)) = record else {
        return false;
    };
    AT_BASE_FIELDS
        .iter()
        .filter(|k| r.contains_key(**k))
        .count()
        >= 2
}

/// Reads `@history` and `@sharing` of an object plone.restapi serialized (as the options ask;
/// one batch, judged by [`take_extra`]), then its files.
fn read_extras(ctx: &FetchContext, cap: &mut ObjectCapture) -> Result<()> {
    let (extras, urls): (Vec<Extra>, Vec<String>) = extras_of(ctx, cap, true, true)
        .into_iter()
        .map(|(extra, path)| (extra, ctx.client.rest_url(&path)))
        .unzip();
    if !urls.is_empty() {
        let answers = ctx.client.get_json_batch(urls, &ctx.in_flight);
        for (extra, answer) in extras.into_iter().zip(answers) {
            take_extra(cap, extra, answer)?;
        }
    }
    cap.blobs = fetch_blobs(ctx, cap, None)?;
    Ok(())
}

/// File field values are dicts with a `download` URL (AT `at_download`, DX `@@download`).
fn file_fields(v1: Option<&Value>, restapi: Option<&Value>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for source in [v1, restapi].into_iter().flatten() {
        if let Value::Object(m) = source {
            for (k, v) in m {
                let is_file = v.get("download").and_then(Value::as_str).is_some();
                if is_file && !out.iter().any(|(f, _)| f == k) {
                    out.push((k.clone(), v.clone()));
                }
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn fetch_blobs(
    ctx: &FetchContext,
    cap: &ObjectCapture,
    v1: Option<&RawValue>,
) -> Result<Vec<BlobRef>> {
    let mut refs = Vec::new();
    // Only records that mention a download URL are parsed here (Python's JSON never escapes
    // ASCII letters, so the key shows as written).
    let parsed = v1
        .filter(|r| r.get().contains("download"))
        .and_then(|r| serde_json::from_str::<Value>(r.get()).ok());
    let fields = if v1.is_some() {
        file_fields(parsed.as_ref(), cap.restapi.as_ref())
    } else {
        file_fields(cap.v1.as_ref(), cap.restapi.as_ref())
    };
    for (field, info) in fields {
        let download = info.get("download").and_then(Value::as_str).unwrap_or("");
        let url = if download.starts_with("http://") || download.starts_with("https://") {
            download.to_string()
        } else {
            format!("{}{}", ctx.client.origin(), download)
        };
        let stored = ctx
            .client
            .download(&url, |r| blobs::store_stream(ctx.out, r, &url))?;
        let text = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_string);
        refs.push(BlobRef {
            field,
            filename: text("filename"),
            content_type: text("content_type").or_else(|| text("content-type")),
            sha256: stored.sha256,
            size: stored.size,
        });
    }
    Ok(refs)
}

/// Errors the server gives deterministically for an object (a 5xx or 4xx with an API error
/// body, an HTTP 200 error dict): retrying cannot help, another channel might.
fn is_application_error(e: &Error) -> bool {
    match e {
        Error::Api { .. } => true,
        // 5xx other than 500 (502-504 after retries) mean the server is unavailable, not that
        // this object is unreadable: the unit fails and a re-run resumes it.
        Error::HttpStatus { status, .. } => {
            (400..=500).contains(status) && ![401, 408, 429].contains(status)
        }
        _ => false,
    }
}

fn note(kind: &str, subject: &str, message: &str) -> (String, String) {
    (
        NOTE_KEY.to_string(),
        json!({"kind": kind, "subject": subject, "message": message}).to_string(),
    )
}

/// A staged line announcing the count of a type (checked against the objects written).
pub(crate) fn count_line(portal_type: &str, count: u64) -> (String, String) {
    note_count(portal_type, 0, count)
}

fn note_count(portal_type: &str, b_start: u64, count: u64) -> (String, String) {
    (
        "!count".to_string(),
        json!({"portal_type": portal_type, "b_start": b_start, "count": count}).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_stable_and_safe() {
        let u = Unit::Page {
            portal_type: "Plone Site".into(),
            b_start: 500,
        };
        assert_eq!(u.name(), "units/pages/Plone_Site/000000000500.jsonl.zst");
        let s = Unit::Singles {
            objects: vec![Listed {
                uid: "abc".into(),
                portal_type: "Setup".into(),
                path: "/s/setup".into(),
            }],
        };
        assert_eq!(s.name(), "units/singles/abc.jsonl.zst");
    }

    #[test]
    fn archetypes_records_are_told_from_dexterity_ones() {
        let at = serde_json::json!({"creation_date": "x", "modification_date": "y", "Title": "t"});
        let dx = serde_json::json!({"title": "t", "hazardous": null, "created": "x"});
        assert!(is_archetypes(Some(&at)));
        assert!(!is_archetypes(Some(&dx)));
        assert!(!is_archetypes(None));
    }

    #[test]
    fn raw_heads_read_what_parsed_values_read() {
        let texts = [
            r#"{"uid": "u1", "path": "/s/c", "portal_type": "Client", "workflow_info": [{"a": 1}],
                "creation_date": null, "modification_date": "x", "Title": "t\u00e9"}"#,
            r#"{"uid": "u2", "path": "/s/d", "portal_type": "Dx", "workflow_info": [ ],
                "created": "x"}"#,
            r#"{"uid": null, "workflow_info": null, "expirationDate": 1}"#,
            r#"{"uid": "u\"3", "path": "/s/\u00e9"}"#,
        ];
        for t in texts {
            let raw = RawValue::from_string(t.to_string()).unwrap();
            let a = Head::of_raw(&raw).unwrap();
            let b = Head::of_value(&serde_json::from_str(t).unwrap());
            assert_eq!(
                (a.uid, a.portal_type, a.path, a.has_workflow, a.archetypes),
                (b.uid, b.portal_type, b.path, b.has_workflow, b.archetypes),
                "{t}"
            );
        }
        // A key given twice does not fit the borrowed reading; the caller parses instead.
        let twice = RawValue::from_string(r#"{"uid": "a", "uid": "b"}"#.into()).unwrap();
        assert!(Head::of_raw(&twice).is_none());
        assert_eq!(PageItem::Raw(twice).head().uid, "b");
    }

    #[test]
    fn staged_lines_read_back_as_captures() {
        let raw = RawValue::from_string(r#"{"uid": "u", "x": [1, 2.5]}"#.into()).unwrap();
        let f = Fetched {
            cap: ObjectCapture {
                uid: "u".into(),
                portal_type: "T".into(),
                path: "/s/u".into(),
                history: Some(serde_json::json!([{"time": "t"}])),
                ..Default::default()
            },
            v1: Some(raw),
            rechecked: false,
        };
        let back: ObjectCapture = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(
            back.v1,
            Some(serde_json::json!({"uid": "u", "x": [1, 2.5]}))
        );
        assert_eq!(back.history, f.cap.history);
        assert_eq!(back.path, "/s/u");
    }

    #[test]
    fn file_fields_are_found_by_download_url() {
        let cap = ObjectCapture {
            v1: Some(serde_json::json!({
                "AttachmentFile": {"download": "http://h/s/a/at_download/AttachmentFile",
                                   "filename": "r.pdf", "content_type": "application/pdf"},
                "Other": {"uid": "x"}, "Title": "t"})),
            ..Default::default()
        };
        let f = file_fields(cap.v1.as_ref(), cap.restapi.as_ref());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "AttachmentFile");
    }
}
