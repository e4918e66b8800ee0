//! `plan`: what a load of a snapshot would do to a destination, without writing anything. Reads
//! the destination through the receiver's `sync/lookup` (by UID, and by path for the site
//! structure a fresh SENAITE already has) and classifies every record: to create, to update,
//! unchanged (loaded before with the same content and not edited since), or blocked (type
//! missing in the destination, parent missing, receiver missing or too old); it also lists every
//! reference whose target is neither in the snapshot nor in the destination. For a delta
//! snapshot it also shows moves, deletions (by policy) and conflicts with both versions
//! (`load::delta`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::load::delta::Action;
use crate::load::receiver::{PathState, UidState};
use crate::load::records::{self, Record};
use crate::load::{self, Conflicts, Deletions};
use crate::snapshot::{Snapshot, manifest_site_path};
use crate::source::Credentials;
use crate::source::retry::RetryPolicy;

/// What `plan` reads.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The snapshot.
    pub snapshot: PathBuf,
    /// Destination site URL.
    pub url: String,
    /// Destination credentials.
    pub credentials: Credentials,
}

/// Counts per portal type.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PlanCounts {
    /// Not in the destination.
    pub create: u64,
    /// In the destination, different or edited since.
    pub update: u64,
    /// In the destination as in the snapshot.
    pub unchanged: u64,
    /// Cannot be loaded (see `blocked`).
    pub blocked: u64,
    /// Delta snapshots: changed on both sides (see `delta.conflict_list`).
    pub conflict: u64,
}

/// A record that cannot be loaded, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Blocked {
    /// UID.
    pub uid: String,
    /// Type.
    pub portal_type: String,
    /// Path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// A reference to an object that is neither in the snapshot nor in the destination.
#[derive(Debug, Clone, Serialize)]
pub struct Unresolved {
    /// The referencing object.
    pub uid: String,
    /// Its path.
    pub path: String,
    /// The missing target.
    pub target: String,
}

/// The plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// The snapshot planned (its directory as given).
    pub snapshot: String,
    /// Its snapshot id: `review --plan` checks the plan belongs to the snapshot it reviews.
    pub snapshot_id: String,
    /// Destination URL.
    pub destination: String,
    /// Receiver name and version, when installed.
    pub receiver: Option<String>,
    /// Why everything is blocked (no receiver), if so.
    pub receiver_problem: Option<String>,
    /// Per portal type.
    pub by_type: BTreeMap<String, PlanCounts>,
    /// Totals.
    pub totals: PlanCounts,
    /// Every blocked record.
    pub blocked: Vec<Blocked>,
    /// Every unresolvable reference.
    pub unresolved: Vec<Unresolved>,
    /// Objects that exist at another path in the destination (a load moves them there).
    pub moved: Vec<String>,
    /// A delta snapshot's moves, deletions and conflicts (with both versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<load::delta::DeltaSummary>,
}

/// Computes the plan.
///
/// # Errors
/// A corrupt snapshot, an unreachable destination or wrong credentials. A missing receiver is
/// not an error: every record is then blocked, with the reason.
pub fn run(opts: &PlanOptions) -> Result<PlanReport> {
    run_with(opts, Deletions::default(), Conflicts::default())
}

/// Computes the plan; for a delta snapshot, with these deletion and conflict policies.
///
/// # Errors
/// As [`run`].
pub fn run_with(
    opts: &PlanOptions,
    deletions: Deletions,
    conflicts: Conflicts,
) -> Result<PlanReport> {
    let snap = Snapshot::open(&opts.snapshot)?;
    let receiver = load::connect(
        &opts.url,
        &opts.credentials,
        Duration::from_secs(600),
        RetryPolicy::default(),
    )?;
    let mut report = PlanReport {
        snapshot: opts.snapshot.display().to_string(),
        snapshot_id: snap.manifest.snapshot_id.clone(),
        destination: opts.url.clone(),
        receiver: None,
        receiver_problem: None,
        by_type: BTreeMap::new(),
        totals: PlanCounts::default(),
        blocked: Vec::new(),
        unresolved: Vec::new(),
        moved: Vec::new(),
        delta: None,
    };
    let info = match receiver.info() {
        Ok(i) => i,
        Err(Error::Receiver { message, .. }) => {
            let set = records::read(&snap, &manifest_site_path(&snap.manifest))?;
            for r in &set.records {
                block(&mut report, r, &format!("receiver missing: {message}"));
            }
            report.receiver_problem = Some(message);
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    report.receiver = Some(format!("{} {}", info.name, info.version));
    let set = records::read(&snap, &info.site_path)?;
    let chunk = info.max_batch.max(1);

    if snap.manifest.base.is_some() {
        let (summary, c) = load::delta::plan(&receiver, chunk, &snap, &set, deletions, conflicts)?;
        for r in &set.records {
            match c.actions.get(&r.uid) {
                Some(Action::Create) => count(&mut report, r, "create"),
                Some(Action::Update | Action::Move(_)) => count(&mut report, r, "update"),
                Some(Action::Unchanged) => count(&mut report, r, "unchanged"),
                Some(Action::Conflict(_)) => count(&mut report, r, "conflict"),
                Some(Action::Blocked(why)) => block(&mut report, r, why),
                None => {}
            }
        }
        for m in &summary.moved {
            report
                .moved
                .push(format!("{} is at {} in the destination", m.to, m.from));
        }
        report.delta = Some(summary);
        return Ok(report);
    }
    let uids: Vec<String> = set.records.iter().map(|r| r.uid.clone()).collect();
    let by_uid = lookup_uids(&receiver, &uids, chunk)?;
    // Paths of records absent by uid (adoption of site structure), and of parents outside the
    // snapshot.
    let mut paths: Vec<String> = Vec::new();
    for r in &set.records {
        if !by_uid.get(&r.uid).is_some_and(|s| s.exists) {
            paths.push(r.path.clone());
            if let Some(pp) = &r.parent_path
                && r.parent_uid.as_deref().is_none_or(|p| set.get(p).is_none())
            {
                paths.push(pp.clone());
            }
        }
    }
    paths.sort();
    paths.dedup();
    let by_path = lookup_paths(&receiver, &paths, chunk)?;
    // Targets outside the snapshot.
    let mut outside: Vec<String> = set
        .records
        .iter()
        .flat_map(|r| r.refs.iter())
        .filter(|u| set.get(u).is_none())
        .cloned()
        .collect();
    outside.sort();
    outside.dedup();
    let outside_state = lookup_uids(&receiver, &outside, chunk)?;

    let snapshot_paths: std::collections::HashSet<&str> =
        set.records.iter().map(|r| r.path.as_str()).collect();
    for r in &set.records {
        for t in &r.refs {
            if set.get(t).is_none() && !outside_state.get(t).is_some_and(|s| s.exists) {
                report.unresolved.push(Unresolved {
                    uid: r.uid.clone(),
                    path: r.path.clone(),
                    target: t.clone(),
                });
            }
        }
        if !info.portal_types.is_empty() && !info.portal_types.contains(&r.portal_type) {
            block(
                &mut report,
                r,
                &format!("type {} missing in the destination", r.portal_type),
            );
            continue;
        }
        if let Some(s) = by_uid.get(&r.uid).filter(|s| s.exists) {
            if s.path.as_deref().is_some_and(|p| p != r.path) {
                report.moved.push(format!(
                    "{} is at {} in the destination",
                    r.path,
                    s.path.as_deref().unwrap_or("")
                ));
            }
            let unchanged =
                s.applied_hash.as_deref() == Some(r.load_hash.as_str()) && !s.changed_since_apply;
            count(
                &mut report,
                r,
                if unchanged { "unchanged" } else { "update" },
            );
            continue;
        }
        if let Some(p) = by_path.get(&r.path).filter(|p| p.exists) {
            if p.portal_type.as_deref() == Some(r.portal_type.as_str()) {
                count(&mut report, r, "update");
            } else {
                block(
                    &mut report,
                    r,
                    &format!(
                        "{} is taken by a {} in the destination",
                        r.path,
                        p.portal_type.as_deref().unwrap_or("?")
                    ),
                );
            }
            continue;
        }
        let parent_ok = match (&r.parent_uid, &r.parent_path) {
            (Some(pu), _) if set.get(pu).is_some() => true,
            (Some(pu), _) if by_uid.get(pu).is_some_and(|s| s.exists) => true,
            (_, Some(pp)) => {
                by_path.get(pp).is_some_and(|p| p.exists) || snapshot_paths.contains(pp.as_str())
            }
            (_, None) => false,
        };
        if !parent_ok {
            block(
                &mut report,
                r,
                &format!(
                    "parent {} missing in the snapshot and the destination",
                    r.parent_path.as_deref().unwrap_or("?")
                ),
            );
            continue;
        }
        count(&mut report, r, "create");
    }
    Ok(report)
}

fn count(report: &mut PlanReport, r: &Record, what: &str) {
    for c in [
        report.by_type.entry(r.portal_type.clone()).or_default(),
        &mut report.totals,
    ] {
        match what {
            "create" => c.create += 1,
            "update" => c.update += 1,
            "unchanged" => c.unchanged += 1,
            "conflict" => c.conflict += 1,
            _ => c.blocked += 1,
        }
    }
}

fn block(report: &mut PlanReport, r: &Record, reason: &str) {
    count(report, r, "blocked");
    report.blocked.push(Blocked {
        uid: r.uid.clone(),
        portal_type: r.portal_type.clone(),
        path: r.path.clone(),
        reason: reason.to_string(),
    });
}

fn lookup_uids(
    receiver: &load::receiver::Receiver,
    uids: &[String],
    chunk: usize,
) -> Result<HashMap<String, UidState>> {
    let mut out = HashMap::new();
    for part in uids.chunks(chunk) {
        for s in receiver.lookup(part, &[])?.uids {
            out.insert(s.uid.clone(), s);
        }
    }
    Ok(out)
}

fn lookup_paths(
    receiver: &load::receiver::Receiver,
    paths: &[String],
    chunk: usize,
) -> Result<HashMap<String, PathState>> {
    let mut out = HashMap::new();
    for part in paths.chunks(chunk) {
        for s in receiver.lookup(&[], part)?.paths {
            out.insert(s.path.clone(), s);
        }
    }
    Ok(out)
}

/// The plan as text.
pub fn render_text(r: &PlanReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Plan for {} (receiver: {})\nsnapshot {} ({})\n",
        r.destination,
        r.receiver.as_deref().unwrap_or("missing"),
        r.snapshot,
        r.snapshot_id
    ));
    if let Some(p) = &r.receiver_problem {
        s.push_str(&format!("BLOCKED: {p}\n"));
    }
    s.push_str(&format!(
        "{:<32} {:>8} {:>8} {:>10} {:>8}\n",
        "portal_type", "create", "update", "unchanged", "blocked"
    ));
    for (t, c) in &r.by_type {
        s.push_str(&format!(
            "{:<32} {:>8} {:>8} {:>10} {:>8}\n",
            t, c.create, c.update, c.unchanged, c.blocked
        ));
    }
    let t = &r.totals;
    s.push_str(&format!(
        "{:<32} {:>8} {:>8} {:>10} {:>8}\n",
        "TOTAL", t.create, t.update, t.unchanged, t.blocked
    ));
    if r.receiver_problem.is_none() {
        for b in &r.blocked {
            s.push_str(&format!(
                "blocked: {} ({}) {}: {}\n",
                b.path, b.portal_type, b.uid, b.reason
            ));
        }
    }
    for u in &r.unresolved {
        s.push_str(&format!(
            "unresolved reference: {} ({}) -> {}\n",
            u.path, u.uid, u.target
        ));
    }
    match &r.delta {
        Some(d) => {
            if r.totals.conflict > 0 {
                s.push_str(&format!("{} conflicts\n", r.totals.conflict));
            }
            s.push_str(&load::delta::render_text(d));
        }
        None => {
            for m in &r.moved {
                s.push_str(&format!("moved: {m}\n"));
            }
        }
    }
    s
}
