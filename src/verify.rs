//! `verify`: proof that a load arrived. Re-reads the destination with the same extractor and the
//! same request as the snapshot (types, paths, history precision, local roles) into a fresh
//! snapshot under the state directory, then compares it with the loaded snapshot object by object
//! (`compare`): every object, attribute, field, workflow state, history entry, local role and blob
//! byte (by sha256), plus users and groups. The fresh extract stays on disk as evidence.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::compare::{self, Difference, Summary};
use crate::error::Result;
use crate::extract::{self, ExtractOptions, HistoryMode, LocalRolesMode};
use crate::load::{self, records};
use crate::progress::Progress;
use crate::snapshot::Snapshot;
use crate::source::Credentials;

/// What `verify` does.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The loaded snapshot.
    pub snapshot: PathBuf,
    /// Destination site URL.
    pub url: String,
    /// Destination credentials.
    pub credentials: Credentials,
    /// Where the destination's extract goes (default: `<state dir>/verify`).
    pub out: Option<PathBuf>,
    /// State directory (as for `load`).
    pub state_dir: Option<PathBuf>,
    /// Concurrent requests while re-reading.
    pub jobs: usize,
    /// diff's rules to compare under (`--rules`), else verify's built-in ignores only.
    pub rules: Option<crate::diff::Rules>,
}

/// The outcome of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Destination URL.
    pub destination: String,
    /// The loaded snapshot's id.
    pub snapshot_id: String,
    /// The destination extract (evidence).
    pub destination_snapshot: String,
    /// Its id.
    pub destination_snapshot_id: String,
    /// Totals.
    pub summary: Summary,
    /// Users or groups that differ (`user <id>: ...`).
    pub principals: Vec<String>,
    /// Every difference.
    pub differences: Vec<Difference>,
    /// Fields left out of the comparison, with the reason.
    pub ignored_fields: Vec<(String, String)>,
}

impl VerifyReport {
    /// Whether the destination holds the snapshot exactly.
    pub fn is_equal(&self) -> bool {
        self.differences.is_empty() && self.principals.is_empty()
    }
}

/// Runs `verify`.
///
/// # Errors
/// A corrupt snapshot, an unreachable destination or a failed re-read.
pub fn run(opts: &VerifyOptions, progress: &Progress) -> Result<VerifyReport> {
    let snap = Snapshot::open(&opts.snapshot)?;
    let state_dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| load::default_state_dir(&opts.snapshot, &opts.url));
    let out = opts.out.clone().unwrap_or_else(|| state_dir.join("verify"));
    let req = &snap.manifest.request;
    let mut x = ExtractOptions::new(&opts.url, out.clone(), opts.credentials.clone());
    x.include_types = req.include_types.clone();
    x.exclude_types = req.exclude_types.clone();
    x.history = if req.history == "v1" {
        HistoryMode::V1
    } else {
        HistoryMode::Exact
    };
    x.local_roles = match req.local_roles.as_str() {
        "all" => LocalRolesMode::All,
        "none" => LocalRolesMode::None,
        _ => LocalRolesMode::Containers,
    };
    x.site_records = req.site_records;
    x.jobs = opts.jobs.max(1);
    x.force = true;
    x.restart = true;
    let extracted = extract::run(&x, progress)?;
    let actual_snap = Snapshot::open(&out)?;
    let dest_site = crate::snapshot::manifest_site_path(&actual_snap.manifest);
    let expected = records::read(&snap, &dest_site)?;
    let actual = records::read(&actual_snap, &dest_site)?;
    let (summary, differences) = compare::compare_with(&expected, &actual, opts.rules.as_ref());
    let principals = compare_principals(&expected, &actual);
    Ok(VerifyReport {
        destination: opts.url.clone(),
        snapshot_id: snap.manifest.snapshot_id.clone(),
        destination_snapshot: out.display().to_string(),
        destination_snapshot_id: extracted.manifest.snapshot_id.clone(),
        summary,
        principals,
        differences,
        ignored_fields: compare::IGNORED_FIELDS
            .iter()
            .map(|(k, why)| ((*k).to_string(), (*why).to_string()))
            .chain(
                opts.rules
                    .iter()
                    .flat_map(|r| r.ignored())
                    .map(|i| (i.name, i.reason)),
            )
            .collect(),
    })
}

/// Users and groups of the snapshot against the destination's: roles, groups, names, emails
/// and members. Login times are not compared (they change with every login).
fn compare_principals(expected: &records::RecordSet, actual: &records::RecordSet) -> Vec<String> {
    let mut out = Vec::new();
    let key_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let sorted = |v: &Value, k: &str| {
        let mut list: Vec<String> = v
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        list.sort();
        list
    };
    for (kind, id_key, rows, other, cols) in [
        (
            "user",
            "username",
            &expected.users,
            &actual.users,
            &["fullname", "email"][..],
        ),
        (
            "group",
            "id",
            &expected.groups,
            &actual.groups,
            &["title", "description", "email"][..],
        ),
    ] {
        for e in rows {
            let id = key_of(e, id_key);
            let Some(a) = other.iter().find(|a| key_of(a, id_key) == id) else {
                out.push(format!("{kind} {id}: missing in the destination"));
                continue;
            };
            for col in cols {
                if key_of(e, col) != key_of(a, col) {
                    out.push(format!(
                        "{kind} {id}: {col} {:?} != {:?}",
                        key_of(e, col),
                        key_of(a, col)
                    ));
                }
            }
            let lists: &[&str] = if kind == "user" {
                &["roles", "groups"]
            } else {
                &["roles", "members"]
            };
            for col in lists {
                if sorted(e, col) != sorted(a, col) {
                    out.push(format!(
                        "{kind} {id}: {col} {:?} != {:?}",
                        sorted(e, col),
                        sorted(a, col)
                    ));
                }
            }
        }
    }
    out
}
