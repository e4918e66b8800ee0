//! The write side of the sandbox: the receiver protocol of `companion/PROTOCOL.md` (the routes
//! the `senaite_sync_receiver` add-on registers under `SITE/@@API/senaite/v1/sync/`), so that
//! `load`, `plan` and `verify` can be tested against a destination in-process. `info`, `lookup`
//! and `finalize` live here; `apply`, blob uploads, principals, and a delta's `remove` and
//! `accept` (with the destination-side edit tests make) in their own modules. Every
//! route needs the sandbox's user (its stand-in for "Manager"); a sandbox started without
//! [`ReceiverOptions`] answers `sync/*` as senaite.jsonapi answers routes it does not know, which
//! is how the loader detects a missing receiver. Objects are rebuilt with `sandbox::rows`, the
//! code the snapshot loader uses, so applying a snapshot's records and extracting the sandbox
//! gives the snapshot's tables back.

mod apply;
mod blobs;
mod delta;
mod principals;

pub(crate) use delta::jsonapi_update;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use super::reply::{ApiErrorKind, Reply, api_error, runtime};
use super::server::{Ctx, Shared};
use super::site::Site;

/// Protocol version spoken.
pub const PROTOCOL: u32 = 2;
/// The `name` `sync/info` reports.
pub const RECEIVER_NAME: &str = "senaite.sync.receiver";
/// The `version` `sync/info` reports.
pub const RECEIVER_VERSION: &str = "0.3.0";

/// Portal types a fresh SENAITE 2.6 has (AT types its catalogs list, Dexterity types and the
/// setup folders), reported by `sync/info` when no explicit list is configured.
pub const DEFAULT_PORTAL_TYPES: &[&str] = &[
    "ARReport",
    "ARTemplate",
    "ARTemplates",
    "Analysis",
    "AnalysisCategories",
    "AnalysisCategory",
    "AnalysisProfile",
    "AnalysisProfiles",
    "AnalysisRequest",
    "AnalysisService",
    "AnalysisServices",
    "AnalysisSpec",
    "AnalysisSpecs",
    "Attachment",
    "AttachmentType",
    "AttachmentTypes",
    "AuditLog",
    "AutoImportLog",
    "Batch",
    "BatchFolder",
    "BatchLabel",
    "BatchLabels",
    "BikaSetup",
    "Calculation",
    "Calculations",
    "Client",
    "ClientFolder",
    "Contact",
    "Container",
    "ContainerType",
    "ContainerTypes",
    "Department",
    "Departments",
    "DuplicateAnalysis",
    "DynamicAnalysisSpec",
    "DynamicAnalysisSpecs",
    "Instrument",
    "InstrumentCalibration",
    "InstrumentCertification",
    "InstrumentLocation",
    "InstrumentLocations",
    "InstrumentMaintenanceTask",
    "InstrumentScheduledTask",
    "InstrumentType",
    "InstrumentTypes",
    "InstrumentValidation",
    "Instruments",
    "InterpretationTemplate",
    "InterpretationTemplates",
    "Invoice",
    "LabContact",
    "LabContacts",
    "LabProduct",
    "LabProducts",
    "Label",
    "Labels",
    "Laboratory",
    "Manufacturer",
    "Manufacturers",
    "Method",
    "Methods",
    "Multifile",
    "Preservation",
    "Pricelist",
    "PricelistFolder",
    "ReferenceAnalysis",
    "ReferenceDefinition",
    "ReferenceDefinitions",
    "ReferenceSample",
    "ReferenceSamplesFolder",
    "RejectAnalysis",
    "Report",
    "SampleCondition",
    "SampleConditions",
    "SampleContainer",
    "SampleContainers",
    "SampleMatrices",
    "SampleMatrix",
    "SamplePoint",
    "SamplePoints",
    "SamplePreservation",
    "SamplePreservations",
    "SampleTemplate",
    "SampleTemplates",
    "SampleType",
    "SampleTypes",
    "Samples",
    "SamplingDeviation",
    "SamplingDeviations",
    "Setup",
    "StorageLocation",
    "StorageLocations",
    "SubGroup",
    "SubGroups",
    "Supplier",
    "SupplierContact",
    "Suppliers",
    "Worksheet",
    "WorksheetFolder",
    "WorksheetTemplate",
    "WorksheetTemplates",
];

/// How the sandbox's receiver behaves (`SandboxOptions::receiver`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverOptions {
    /// The portal types the destination accepts; `None` accepts any, and `sync/info` lists
    /// [`DEFAULT_PORTAL_TYPES`] plus the types present.
    pub portal_types: Option<Vec<String>>,
    /// Most records per `sync/apply` (and uids or paths per `sync/lookup`).
    pub max_batch: usize,
    /// Largest blob chunk accepted (413 above).
    pub max_chunk_bytes: u64,
    /// Largest JSON body accepted (413 above).
    pub max_request_bytes: u64,
    /// Per portal type, field names this destination has no place for (a schema without
    /// them): `sync/apply` does not store them and answers those a record holds a value for in
    /// `unknown_fields`, as the real receiver does for keys outside its schema.
    pub unknown_fields: BTreeMap<String, Vec<String>>,
}

impl Default for ReceiverOptions {
    fn default() -> ReceiverOptions {
        ReceiverOptions {
            portal_types: None,
            max_batch: 200,
            max_chunk_bytes: 8 << 20,
            max_request_bytes: 32 << 20,
            unknown_fields: BTreeMap::new(),
        }
    }
}

/// What the receiver stored on an object at its last complete apply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Applied {
    /// The record's `load_hash`.
    pub(crate) hash: String,
    /// The object's modification date right after the apply.
    pub(crate) modified: String,
    /// Stored by `sync/accept` (the destination's version stands for the record).
    pub(crate) accepted: bool,
}

/// A blob upload in progress or complete.
#[derive(Debug, Default)]
pub(crate) struct Upload {
    /// The announced total size.
    pub(crate) size: u64,
    /// Bytes received so far.
    pub(crate) bytes: Vec<u8>,
    /// All bytes received and the sha256 checked.
    pub(crate) complete: bool,
}

/// The receiver's state besides content, kept with the site (under the same lock).
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    /// By uid: the annotation of the last complete apply.
    pub(crate) applied: HashMap<String, Applied>,
    /// Blob uploads by sha256 (the staging area; in memory).
    pub(crate) uploads: HashMap<String, Upload>,
    /// ID-server counters by key (`AnalysisRequest-W`).
    pub(crate) counters: BTreeMap<String, i64>,
    /// Users the receiver created (their password is unknown).
    pub(crate) password_reset: BTreeSet<String>,
    /// By uid: the last record applied (serialized), from which `sync/remove` rebuilds a
    /// deactivated object.
    pub(crate) records: HashMap<String, Box<str>>,
}

/// Answers `SITE/@@API/senaite/v1/sync<rest>`.
pub(crate) fn handle(ctx: &Ctx<'_>, shared: &Shared, rest: &str) -> Reply {
    let Some(opts) = &shared.receiver else {
        let message = format!("No route matches senaite/v1/sync{rest}");
        return api_error(ctx.framework, ApiErrorKind::NoRoute, &message, ctx.started);
    };
    if ctx.user.is_none() {
        return error(
            ctx,
            401,
            "the receiver's routes need a user with the Manager role",
        )
        .with_header("WWW-Authenticate", "basic realm=\"Zope\"");
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (ctx.method, segments.as_slice()) {
        ("GET" | "HEAD", ["info"]) => info(ctx, shared, opts),
        ("POST", ["lookup"]) => lookup(ctx, shared, opts),
        ("POST", ["apply"]) => apply::apply(ctx, shared, opts),
        ("GET" | "HEAD", ["blob", sha]) => blobs::state(ctx, shared, sha),
        ("POST", ["blob", sha]) => blobs::upload(ctx, shared, opts, sha),
        ("POST", ["principals"]) => principals::apply(ctx, shared, opts),
        ("POST", ["finalize"]) => finalize(ctx, shared),
        ("POST", ["remove"]) => delta::remove(ctx, shared, opts),
        ("POST", ["accept"]) => delta::accept(ctx, shared, opts),
        (
            _,
            ["info" | "lookup" | "apply" | "principals" | "finalize" | "remove" | "accept"]
            | ["blob", _],
        ) => {
            let message = format!("Method {} not allowed on senaite/v1/sync{rest}", ctx.method);
            api_error(ctx.framework, ApiErrorKind::Method, &message, ctx.started)
        }
        _ => {
            let message = format!("No route matches senaite/v1/sync{rest}");
            api_error(ctx.framework, ApiErrorKind::NoRoute, &message, ctx.started)
        }
    }
}

/// senaite.jsonapi's error envelope with a real status.
pub(crate) fn error(ctx: &Ctx<'_>, status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"success": false, "message": message, "_runtime": runtime(ctx.started)}),
    )
}

/// The request's JSON body, or the error reply (413 too large, 400 not JSON / not an object).
pub(crate) fn json_body(ctx: &Ctx<'_>, opts: &ReceiverOptions) -> Result<Value, Reply> {
    if ctx.body_truncated || ctx.body.len() as u64 > opts.max_request_bytes {
        let message = format!(
            "request body larger than max_request_bytes ({}) at {}",
            opts.max_request_bytes, ctx.path
        );
        return Err(error(ctx, 413, &message));
    }
    match crate::jsonx::parse_lenient(&ctx.body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(error(ctx, 400, "the request body must be a JSON object")),
        Err(e) => Err(error(
            ctx,
            400,
            &format!("the request body is not JSON: {e}"),
        )),
    }
}

/// The strings of `body[key]` (absent: none), or the error reply when it is not a list of
/// strings or longer than `max_batch`.
fn string_list(
    ctx: &Ctx<'_>,
    body: &Value,
    key: &str,
    max_batch: usize,
) -> Result<Vec<String>, Reply> {
    let items = match body.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(error(ctx, 400, &format!("{key} must be a list"))),
    };
    if items.len() > max_batch {
        let message = format!("{} {key} asked, at most {max_batch} allowed", items.len());
        return Err(error(ctx, 400, &message));
    }
    let strings: Option<Vec<String>> = items
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect();
    strings.ok_or_else(|| error(ctx, 400, &format!("{key} must be a list of strings")))
}

/// `GET sync/info`.
fn info(ctx: &Ctx<'_>, shared: &Shared, opts: &ReceiverOptions) -> Reply {
    let site = shared.site.read().unwrap_or_else(|p| p.into_inner());
    let portal_types: Vec<String> = match &opts.portal_types {
        Some(list) => list.clone(),
        None => {
            let mut all: BTreeSet<String> = DEFAULT_PORTAL_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect();
            all.extend(site.resources.values().cloned());
            all.into_iter().collect()
        }
    };
    Reply::json(
        200,
        &json!({"name": RECEIVER_NAME, "version": RECEIVER_VERSION, "protocol": PROTOCOL,
            "site_id": site.site_id, "site_path": site.site_path(),
            "portal_types": portal_types, "max_request_bytes": opts.max_request_bytes,
            "max_batch": opts.max_batch, "max_chunk_bytes": opts.max_chunk_bytes,
            "user": ctx.user, "_runtime": runtime(ctx.started)}),
    )
}

/// The modification date and review state the site serves for an object.
pub(crate) fn object_dates(site: &Site, uid: &str) -> Option<(String, Option<String>)> {
    let p = site.by_uid(uid)?;
    let state = p.terms.get("review_state").and_then(|t| t.first()).cloned();
    Some((p.sort_value("modified").to_owned(), state))
}

/// One uid of `sync/lookup`.
fn lookup_uid(site: &Site, uid: &str) -> Value {
    let Some(p) = site.by_uid(uid) else {
        return json!({"uid": uid, "exists": false});
    };
    let (modified, review_state) = object_dates(site, uid).unwrap_or_default();
    let applied = site.sync.applied.get(uid);
    json!({"uid": uid, "exists": true, "path": p.path, "portal_type": p.portal_type,
        "modified": (!modified.is_empty()).then_some(&modified), "review_state": review_state,
        "applied_hash": applied.map(|a| &a.hash),
        "changed_since_apply": applied.is_some_and(|a| a.modified != modified),
        "accepted": applied.is_some_and(|a| a.accepted)})
}

/// One path of `sync/lookup`; the site root exists.
fn lookup_path(site: &Site, path: &str) -> Value {
    if path == site.site_path() {
        return json!({"path": path, "exists": true, "uid": null, "portal_type": "Plone Site"});
    }
    match site.by_path(path) {
        Some(p) => json!({"path": path, "exists": true, "uid": p.uid,
                          "portal_type": p.portal_type}),
        None => json!({"path": path, "exists": false}),
    }
}

/// `POST sync/lookup`.
fn lookup(ctx: &Ctx<'_>, shared: &Shared, opts: &ReceiverOptions) -> Reply {
    let body = match json_body(ctx, opts) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let lists = string_list(ctx, &body, "uids", opts.max_batch)
        .and_then(|u| string_list(ctx, &body, "paths", opts.max_batch).map(|p| (u, p)));
    let (uids, paths) = match lists {
        Ok(l) => l,
        Err(reply) => return reply,
    };
    let site = shared.site.read().unwrap_or_else(|p| p.into_inner());
    let uids: Vec<Value> = uids.iter().map(|u| lookup_uid(&site, u)).collect();
    let paths: Vec<Value> = paths.iter().map(|p| lookup_path(&site, p)).collect();
    Reply::json(
        200,
        &json!({"uids": uids, "paths": paths, "_runtime": runtime(ctx.started)}),
    )
}

/// `W-0001` -> (`W`, 1): the prefix and sequence number of an ID-server id.
pub(crate) fn id_sequence(id: &str) -> Option<(&str, i64)> {
    let (prefix, number) = id.rsplit_once('-')?;
    if prefix.is_empty() || number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((prefix, number.parse().ok()?))
}

/// `POST sync/finalize`: per `<portal_type>-<prefix>`, the counter moves to the highest
/// sequence number present (never back). Idempotent.
fn finalize(ctx: &Ctx<'_>, shared: &Shared) -> Reply {
    let mut site = shared.site.write().unwrap_or_else(|p| p.into_inner());
    let mut highest: BTreeMap<String, i64> = BTreeMap::new();
    for p in site.objects.iter().flatten() {
        let id = p.path.rsplit('/').next().unwrap_or("");
        if let Some((prefix, n)) = id_sequence(id) {
            let slot = highest
                .entry(format!("{}-{prefix}", p.portal_type))
                .or_insert(0);
            *slot = (*slot).max(n);
        }
    }
    let mut counters = Vec::new();
    for (key, n) in highest {
        let old = site.sync.counters.get(&key).copied();
        let new = old.unwrap_or(0).max(n);
        site.sync.counters.insert(key.clone(), new);
        counters.push(json!({"key": key, "old": old, "new": new}));
    }
    Reply::json(
        200,
        &json!({"counters": counters, "_runtime": runtime(ctx.started)}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_sequences() {
        assert_eq!(id_sequence("W-0001"), Some(("W", 1)));
        assert_eq!(id_sequence("client-12"), Some(("client", 12)));
        assert_eq!(id_sequence("WS-2-0003"), Some(("WS-2", 3)));
        assert_eq!(id_sequence("bika_setup"), None);
        assert_eq!(id_sequence("x-"), None);
        assert_eq!(id_sequence("-3"), None);
        assert_eq!(id_sequence("a-1b"), None);
    }

    #[test]
    fn default_types_are_sorted_and_unique() {
        let mut sorted = DEFAULT_PORTAL_TYPES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, DEFAULT_PORTAL_TYPES);
    }
}
