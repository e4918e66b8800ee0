//! Fetching objects: one unit per page of complete records of a portal type (`search` with
//! `complete=yes&workflow=yes`, sorted on `created`), and units of single-object reads for what
//! the pages missed or could not read. For each object it adds what v1 loses: the plone.restapi
//! serialization of Dexterity objects, `@history` (microsecond review-history times), `@sharing`
//! (local roles) and the bytes of every file field, streamed into the blob store. Requests in
//! flight are bounded by the rayon pool the caller runs this in.

use std::collections::BTreeSet;
use std::path::Path;

use rayon::prelude::*;
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::extract::listing::Listed;
use crate::extract::staging::Staging;
use crate::extract::{ExtractOptions, HistoryMode, LocalRolesMode};
use crate::snapshot::blobs;
use crate::snapshot::record::{BlobRef, ObjectCapture};
use crate::source::SenaiteClient;
use crate::source::paging;

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
}

/// A unit of work.
#[derive(Debug, Clone)]
pub(crate) enum Unit {
    /// One page of complete records of a type.
    Page { portal_type: String, b_start: u64 },
    /// Objects read one by one.
    Singles { objects: Vec<Listed> },
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
    let page = match paging::read_page(ctx.client, "search", &query, b_start, ctx.opts.page_size) {
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
    let mut captures: Vec<ObjectCapture> = page
        .items
        .into_par_iter()
        .filter(|it| {
            it.get("uid")
                .and_then(Value::as_str)
                .is_some_and(|u| !u.is_empty())
        })
        .filter(|it| {
            ctx.opts
                .path_selected(it.get("path").and_then(Value::as_str).unwrap_or(""))
        })
        .map(|item| capture_v1(ctx, item))
        .collect::<Result<Vec<_>>>()?;
    captures.sort_by(|a, b| a.uid.cmp(&b.uid));
    lines.push(note_count(portal_type, b_start, page.count));
    for c in captures {
        lines.push((c.uid.clone(), to_json(&c)));
    }
    Ok(())
}

fn singles_unit(
    ctx: &FetchContext,
    objects: &[Listed],
    lines: &mut Vec<(String, String)>,
) -> Result<()> {
    let results: Vec<Result<Option<ObjectCapture>>> =
        objects.par_iter().map(|o| read_single(ctx, o)).collect();
    for (o, r) in objects.iter().zip(results) {
        match r? {
            Some(c) => lines.push((c.uid.clone(), to_json(&c))),
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
fn read_single(ctx: &FetchContext, o: &Listed) -> Result<Option<ObjectCapture>> {
    let q = [
        ("complete", "yes".to_string()),
        ("workflow", "yes".to_string()),
    ];
    let v1_error = match ctx.client.api_get(&o.uid, &q) {
        Ok(v) if v.get("uid").and_then(Value::as_str) == Some(o.uid.as_str()) => {
            return capture_v1(ctx, v).map(Some);
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
    let mut cap = ObjectCapture {
        uid: o.uid.clone(),
        portal_type: o.portal_type.clone(),
        path: o.path.clone(),
        v1_error: Some(v1_error),
        restapi: Some(restapi),
        ..Default::default()
    };
    add_extras(ctx, &mut cap, true)?;
    Ok(Some(cap))
}

fn capture_v1(ctx: &FetchContext, item: Value) -> Result<ObjectCapture> {
    let s = |k: &str| {
        item.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut cap = ObjectCapture {
        uid: s("uid"),
        portal_type: s("portal_type"),
        path: s("path"),
        ..Default::default()
    };
    let has_workflow = item
        .get("workflow_info")
        .and_then(Value::as_array)
        .is_some_and(|w| !w.is_empty());
    cap.v1 = Some(item);
    if !is_archetypes(cap.v1.as_ref()) {
        match ctx.client.rest_get(&cap.path, &[]) {
            Ok(v) => cap.restapi = Some(v),
            Err(e) => debug!(uid = %cap.uid, error = %e, "plone.restapi cannot serialize object."),
        }
    }
    add_extras(ctx, &mut cap, has_workflow)?;
    Ok(cap)
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

/// Adds `@history`, `@sharing` and blobs as the options ask.
fn add_extras(ctx: &FetchContext, cap: &mut ObjectCapture, has_workflow: bool) -> Result<()> {
    if ctx.opts.history == HistoryMode::Exact && has_workflow {
        match ctx.client.rest_get(&format!("{}/@history", cap.path), &[]) {
            Ok(v) => cap.history = Some(v),
            Err(e) if is_application_error(&e) => {
                debug!(uid = %cap.uid, error = %e, "No exact review history; whole seconds kept.");
            }
            Err(e) => return Err(e),
        }
    }
    let wants_sharing = match ctx.opts.local_roles {
        LocalRolesMode::All => true,
        LocalRolesMode::Containers => ctx.containers.contains(&cap.uid),
        LocalRolesMode::None => false,
    };
    if wants_sharing {
        match ctx.client.rest_get(&format!("{}/@sharing", cap.path), &[]) {
            Ok(v) => cap.sharing = Some(v),
            Err(e) if is_application_error(&e) => {
                debug!(uid = %cap.uid, error = %e, "Local roles unreadable.");
            }
            Err(e) => return Err(e),
        }
    }
    cap.blobs = fetch_blobs(ctx, cap)?;
    Ok(())
}

/// File field values are dicts with a `download` URL (AT `at_download`, DX `@@download`).
fn file_fields(cap: &ObjectCapture) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for source in [cap.v1.as_ref(), cap.restapi.as_ref()]
        .into_iter()
        .flatten()
    {
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

fn fetch_blobs(ctx: &FetchContext, cap: &ObjectCapture) -> Result<Vec<BlobRef>> {
    let mut refs = Vec::new();
    for (field, info) in file_fields(cap) {
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

fn to_json(c: &ObjectCapture) -> String {
    // INVARIANT: a capture holds only JSON values and strings; serializing cannot fail.
    serde_json::to_string(c).unwrap_or_default()
}

fn note(kind: &str, subject: &str, message: &str) -> (String, String) {
    (
        NOTE_KEY.to_string(),
        json!({"kind": kind, "subject": subject, "message": message}).to_string(),
    )
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
    fn file_fields_are_found_by_download_url() {
        let cap = ObjectCapture {
            v1: Some(serde_json::json!({
                "AttachmentFile": {"download": "http://h/s/a/at_download/AttachmentFile",
                                   "filename": "r.pdf", "content_type": "application/pdf"},
                "Other": {"uid": "x"}, "Title": "t"})),
            ..Default::default()
        };
        let f = file_fields(&cap);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, "AttachmentFile");
    }
}
