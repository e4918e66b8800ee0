//! What extract does differently for a SENAITE 1.x source (senaite.jsonapi 1.x on Plone 4.3, e.g.
//! SENAITE 1.3.5 with senaite.jsonapi 1.2.4), in one place:
//!
//! - **Detection**: the `version` route answers a `1.` version.
//! - **Listing**: 1.x's search does not know `uid_catalog` (HTTP 200 `success:false` with the
//!   message `'uid_catalog'`), so the site is listed as the union, by UID, of the catalogs
//!   `/catalogs` names (`portal_catalog`, `bika_setup_catalog`, `bika_analysis_catalog`,
//!   `bika_catalog_analysisrequest_listing`, ...). `auditlog_catalog` is left out: its brains
//!   carry the catalog's own class as `portal_type`. An object no catalog indexes is not found.
//! - **No plone.restapi** (Plone 4.3): every plone.restapi path answers Plone's HTML page, so
//!   exact review-history times (`@history`), local roles (`@sharing`), `@users`, `@groups` and
//!   `@registry` cannot be read. They are not asked for; each option that wanted them is lowered
//!   (history to v1's whole seconds, local roles to none) and a `fallback` / `unreadable` note
//!   in the manifest says so. Users come from v1 `/users` (username, name, e-mail, roles, group
//!   names); groups, their roles and the registry are recorded as not readable.
//!
//! The 1.x envelope (errors as HTTP 200 `success:false` without `type`, no `success` key on
//! good bodies) is what the client already accepts; `review_state: null` with the state in
//! `workflow_info` is read by the record code (`snapshot::record`).

use std::collections::BTreeMap;

use serde_json::Value;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::extract::listing::{self, Listed, Listing};
use crate::extract::{ExtractOptions, HistoryMode, LocalRolesMode};
use crate::snapshot::manifest::{Note, SourceInfo};
use crate::source::SenaiteClient;

/// Manifest note kind of a read lowered because the 1.x source cannot serve it.
pub const FALLBACK_NOTE_KIND: &str = "fallback";
/// Manifest note kind of records a 1.x source cannot serve at all.
pub const UNREADABLE_NOTE_KIND: &str = "unreadable";

/// Catalogs whose brains do not describe the indexed objects (never used to list).
const NOT_LISTING_CATALOGS: &[&str] = &["auditlog_catalog", "uid_catalog", "reference_catalog"];

/// Whether the probed source is a SENAITE 1.x (senaite.jsonapi 1.x).
pub fn is_senaite1(source: &SourceInfo) -> bool {
    source
        .jsonapi_version
        .as_deref()
        .is_some_and(|v| v.starts_with("1."))
}

/// The options a 1.x source can honour, and the notes that say what was lowered.
pub fn lower_options(opts: &ExtractOptions) -> (ExtractOptions, Vec<Note>) {
    let mut lowered = opts.clone();
    let mut notes = Vec::new();
    if opts.history == HistoryMode::Exact {
        lowered.history = HistoryMode::V1;
        notes.push(Note {
            kind: FALLBACK_NOTE_KIND.into(),
            subject: "review_history".into(),
            message: "SENAITE 1.x source without plone.restapi: exact review-history times \
                      (@history) cannot be read; the whole-second times of senaite.jsonapi 1.x \
                      are kept"
                .into(),
        });
    }
    if opts.local_roles != LocalRolesMode::None {
        lowered.local_roles = LocalRolesMode::None;
        notes.push(Note {
            kind: UNREADABLE_NOTE_KIND.into(),
            subject: "local_roles".into(),
            message: "SENAITE 1.x source without plone.restapi: local roles (@sharing) cannot \
                      be read; the local_roles table is empty"
                .into(),
        });
    }
    if opts.site_records {
        notes.push(Note {
            kind: UNREADABLE_NOTE_KIND.into(),
            subject: "groups".into(),
            message: "SENAITE 1.x source without plone.restapi: groups, their roles and members \
                      (@groups) and the registry (@registry) cannot be read; users come from \
                      senaite.jsonapi /users (username, fullname, email, roles, group names)"
                .into(),
        });
    }
    (lowered, notes)
}

/// The catalog ids to list a 1.x site from, in the order `/catalogs` gives them.
pub fn listing_catalogs(catalogs: &[Value]) -> Vec<String> {
    catalogs
        .iter()
        .filter_map(|c| c.get("id").and_then(Value::as_str))
        .filter(|id| !NOT_LISTING_CATALOGS.contains(id))
        .map(str::to_string)
        .collect()
}

/// Lists a 1.x site: every listing catalog read in full, merged by UID (the first catalog that
/// indexes an object gives its type and path).
///
/// # Errors
/// Client errors, or no catalog to list from.
pub fn list_site(client: &SenaiteClient, pool: &rayon::ThreadPool) -> Result<Listing> {
    let catalogs = listing::catalogs(client)?;
    let ids = listing_catalogs(&catalogs);
    if ids.is_empty() {
        return Err(Error::BadResponse {
            url: format!("{}/catalogs", client.api_url()),
            message: "no catalog to list a SENAITE 1.x site from".into(),
        });
    }
    let site_path = crate::snapshot::site_path(client.site_url());
    let mut merged: BTreeMap<String, Listed> = BTreeMap::new();
    let mut announced = 0;
    for id in &ids {
        let query = vec![
            ("catalog", id.clone()),
            ("path", site_path.clone()),
            ("depth", "100".to_string()),
            ("sort_on", "UID".to_string()),
        ];
        match listing::read_listing(client, pool, &query) {
            Ok((objects, _, count)) => {
                announced += count;
                for o in objects {
                    merged.entry(o.uid.clone()).or_insert(o);
                }
            }
            // A catalog 1.x cannot search (an add-on's) is skipped; the others still list.
            Err(e @ (Error::Api { .. } | Error::BadResponse { .. })) => {
                warn!(catalog = %id, error = %e, "SENAITE 1.x catalog cannot be searched.");
            }
            Err(e) => return Err(e),
        }
    }
    let objects: Vec<Listed> = merged.into_values().collect();
    info!(
        objects = objects.len(),
        catalogs = ids.len(),
        catalog_entries = announced,
        "Listed the SENAITE 1.x site."
    );
    Ok(Listing {
        // The union has no single announced count: what was merged is what is complete.
        announced: objects.len() as u64,
        objects,
        catalogs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Credentials;
    use std::path::PathBuf;

    fn recorded(name: &str) -> Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("data/fixtures/senaite1")
            .join(format!("{name}.json"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    #[test]
    fn version_1x_is_detected_from_the_recorded_answer() {
        let v = recorded("version");
        let source = SourceInfo {
            kind: "senaite".into(),
            site_url: "http://h/senaite".into(),
            jsonapi_version: v["version"].as_str().map(str::to_string),
            versions: BTreeMap::new(),
        };
        assert!(is_senaite1(&source));
        let two = SourceInfo {
            jsonapi_version: Some("2.6.0".into()),
            ..source
        };
        assert!(!is_senaite1(&two));
    }

    #[test]
    fn recorded_catalogs_list_without_the_audit_log() {
        let c = recorded("catalogs");
        let ids = listing_catalogs(c["items"].as_array().unwrap());
        assert!(ids.contains(&"bika_setup_catalog".to_string()), "{ids:?}");
        assert!(ids.contains(&"bika_analysis_catalog".to_string()));
        assert!(ids.contains(&"portal_catalog".to_string()));
        assert!(!ids.iter().any(|i| i == "auditlog_catalog"));
    }

    #[test]
    fn lowered_options_are_noted() {
        let o = ExtractOptions::new(
            "http://127.0.0.1:1/senaite",
            PathBuf::from("/tmp/x"),
            Credentials {
                user: "u".into(),
                password: crate::source::Secret::new("p"),
            },
        );
        let (l, notes) = lower_options(&o);
        assert_eq!(l.history, HistoryMode::V1);
        assert_eq!(l.local_roles, LocalRolesMode::None);
        let subjects: Vec<&str> = notes.iter().map(|n| n.subject.as_str()).collect();
        assert_eq!(subjects, ["review_history", "local_roles", "groups"]);
        let mut quiet = o.clone();
        quiet.history = HistoryMode::V1;
        quiet.local_roles = LocalRolesMode::None;
        quiet.site_records = false;
        assert!(lower_options(&quiet).1.is_empty());
    }
}
