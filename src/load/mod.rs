//! `load`: writes a snapshot into a destination SENAITE through the receiver add-on
//! (`companion/`), keeping UIDs, ids, paths, field values, files, review history, states, dates,
//! local roles and users. Principals go first, then every file the records need (chunked,
//! resumable), then the records in dependency order (`records`), in batches; records whose
//! references were deferred are sent again at the end; finally the ID server's counters are
//! advanced. Every outcome lands in the ledger (`ledger`) before the next batch, so a killed run
//! re-run with the same arguments skips finished work; `--retry-failed` replays only failures.
//! Nothing is ever sent to the source: a load only reads the snapshot directory.

pub mod delta;
pub mod ledger;
pub mod receiver;
pub mod records;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::snapshot::writer::{now_rfc3339, write_atomic};
use crate::snapshot::{Snapshot, blobs};
use crate::source::retry::RetryPolicy;
use crate::source::{ClientOptions, Credentials, SenaiteClient};

use ledger::{Binding, Entry, Ledger};
use receiver::{ApplyItem, Counter, PrincipalItem, Receiver};
use records::{Record, RecordSet};

pub use delta::{Conflicts, Deletions};

/// What `load` does.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The snapshot directory.
    pub snapshot: PathBuf,
    /// The destination site URL.
    pub url: String,
    /// Destination credentials.
    pub credentials: Credentials,
    /// State directory (ledger, report); default beside the snapshot.
    pub state_dir: Option<PathBuf>,
    /// Records per apply request (capped by the receiver's `max_batch`).
    pub batch_size: usize,
    /// Replay only the records that failed (or were partly rejected) before.
    pub retry_failed: bool,
    /// Apply requests in flight (a batch waits for the batches holding its parents).
    pub jobs: usize,
    /// Skip users and groups.
    pub skip_principals: bool,
    /// Request timeout.
    pub timeout: Duration,
    /// Retries of requests that failed in transit (every receiver route may be repeated).
    pub retry: RetryPolicy,
    /// Delta snapshots: what happens to the objects the delta deletes.
    pub deletions: Deletions,
    /// Delta snapshots: what happens to objects changed on both sides.
    pub conflicts: Conflicts,
}

impl LoadOptions {
    /// Defaults for a snapshot and destination.
    pub fn new(snapshot: PathBuf, url: &str, credentials: Credentials) -> Self {
        LoadOptions {
            snapshot,
            url: url.trim_end_matches('/').to_string(),
            credentials,
            state_dir: None,
            batch_size: 50,
            retry_failed: false,
            jobs: 1,
            skip_principals: false,
            timeout: Duration::from_secs(600),
            retry: RetryPolicy::default(),
            deletions: Deletions::default(),
            conflicts: Conflicts::default(),
        }
    }

    /// The state directory in use.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| default_state_dir(&self.snapshot, &self.url))
    }
}

/// The default state directory of a destination: `<snapshot parent>/.senaite-sync-state/<host_port_site>`.
pub fn default_state_dir(snapshot: &Path, url: &str) -> PathBuf {
    let key: String = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let parent = snapshot
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.join(".senaite-sync-state").join(key)
}

/// Counts per status.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StatusCounts {
    /// Created in the destination.
    pub created: u64,
    /// Updated in the destination.
    pub updated: u64,
    /// Already as in the snapshot.
    pub unchanged: u64,
    /// Written, but with references whose targets exist neither in the snapshot nor in the
    /// destination.
    pub deferred: u64,
    /// Written, but some fields rejected.
    pub partial: u64,
    /// Rejected as a whole.
    pub failed: u64,
    /// Finished in an earlier run (skipped).
    pub done_before: u64,
}

impl StatusCounts {
    fn add(&mut self, status: &str) {
        match status {
            "created" => self.created += 1,
            "updated" => self.updated += 1,
            "unchanged" => self.unchanged += 1,
            "deferred" => self.deferred += 1,
            "partial" => self.partial += 1,
            _ => self.failed += 1,
        }
    }
}

/// A record the destination rejected, entirely or in part.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// UID.
    pub uid: String,
    /// Type.
    pub portal_type: String,
    /// Path.
    pub path: String,
    /// Status (`failed`, `partial`, `deferred`).
    pub status: String,
    /// Why the record was rejected.
    pub error: Option<String>,
    /// Rejected fields and why.
    pub field_errors: BTreeMap<String, String>,
    /// References that could not be resolved.
    pub deferred_fields: Vec<String>,
}

/// The outcome of a load.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Destination URL.
    pub destination: String,
    /// Snapshot id.
    pub snapshot_id: String,
    /// State directory.
    pub state_dir: String,
    /// Receiver name and version.
    pub receiver: String,
    /// Records in the snapshot.
    pub records: u64,
    /// Per portal type, this run.
    pub by_type: BTreeMap<String, StatusCounts>,
    /// Totals, this run.
    pub totals: StatusCounts,
    /// Blobs uploaded (bytes sent) this run.
    pub blobs_uploaded: u64,
    /// Bytes sent.
    pub blob_bytes_sent: u64,
    /// Users and groups.
    pub principals: Vec<PrincipalItem>,
    /// Users created without a usable password (the source's cannot be read).
    pub users_needing_password_reset: Vec<String>,
    /// ID-server counters moved.
    pub counters: Vec<Counter>,
    /// Every rejected record (from the ledger: all runs).
    pub rejected: Vec<Rejected>,
    /// Per portal type, the record keys with a value that the destination has no place for
    /// (not written), each with the number of records holding it (from the ledger: all runs).
    pub unknown_fields: BTreeMap<String, BTreeMap<String, u64>>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// A delta snapshot's moves, deletions and conflicts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<delta::DeltaSummary>,
}

impl LoadReport {
    /// Whether every record is in the destination as sent (for a delta also: no conflict
    /// left unresolved, every deletion carried out or kept by policy).
    pub fn is_complete(&self) -> bool {
        self.rejected.is_empty()
            && self
                .delta
                .as_ref()
                .is_none_or(delta::DeltaSummary::is_settled)
    }
}

/// Runs a load.
///
/// # Errors
/// A corrupt snapshot, an unreachable destination, a missing receiver, wrong credentials, or a
/// batch that cannot be delivered after retries (the ledger then holds everything finished; run
/// the same command again to resume).
pub fn run(opts: &LoadOptions, progress: &Progress) -> Result<LoadReport> {
    let started = Instant::now();
    let snap = Snapshot::open(&opts.snapshot)?;
    refuse_source(&snap, &opts.url)?;
    let receiver = connect(&opts.url, &opts.credentials, opts.timeout, opts.retry)?;
    let info = receiver.info()?;
    info!(receiver = %format!("{} {}", info.name, info.version), site = %info.site_path, "Receiver found.");
    if !info.reports_unknown_fields() {
        warn!(
            receiver = %info.version,
            "This receiver does not report record values the destination has no field for \
             (0.3.0 does): upgrade it (pip install companion/) to have them listed."
        );
    }
    if snap.manifest.base.is_some() {
        return delta::run(opts, &snap, &receiver, &info, progress);
    }
    let set = records::read(&snap, &info.site_path)?;
    let state_dir = opts.state_dir();
    let mut ledger = Ledger::open(
        &state_dir,
        &Binding {
            destination: opts.url.clone(),
            snapshot_id: snap.manifest.snapshot_id.clone(),
            snapshot_dir: opts.snapshot.display().to_string(),
        },
    )?;

    let mut report = empty_report(opts, &snap, &info, &state_dir, set.records.len());

    // What to send: everything not finished with the same content, or only failures.
    let mut todo: Vec<&Record> = Vec::new();
    for r in &set.records {
        let prev = ledger.get(&r.uid);
        let same = prev.is_some_and(|e| e.load_hash == r.load_hash);
        let send = if opts.retry_failed {
            same && prev.is_some_and(Entry::is_failure)
        } else {
            !(same && prev.is_some_and(|e| e.is_done() || e.is_failure()))
        };
        if send {
            todo.push(r);
        } else if same && prev.is_some_and(Entry::is_done) {
            report.totals.done_before += 1;
            report
                .by_type
                .entry(r.portal_type.clone())
                .or_default()
                .done_before += 1;
        }
    }
    info!(
        records = set.records.len(),
        to_send = todo.len(),
        done_before = report.totals.done_before,
        "Load plan."
    );

    if !opts.skip_principals && !opts.retry_failed {
        send_principals(&receiver, &set, &mut report)?;
    }

    upload_blobs(
        &receiver,
        &snap,
        &todo,
        info.max_chunk_bytes,
        progress,
        &mut report,
    )?;

    let batch = opts.batch_size.clamp(1, info.max_batch.max(1));
    let limit = (info.max_request_bytes / 2).max(1 << 20) as usize;
    let sending = Sending {
        batch,
        byte_limit: limit,
        jobs: opts.jobs.max(1),
    };
    let bar = progress.bar(todo.len() as u64, "load", "records");
    let mut deferred: Vec<&Record> = Vec::new();
    send_pass(
        &receiver,
        &mut ledger,
        &todo,
        1,
        sending,
        &mut report,
        &mut deferred,
        &|n| bar.inc(n),
    )?;
    bar.finish_and_clear();
    if !deferred.is_empty() {
        info!(
            records = deferred.len(),
            "Second pass: references deferred in the first."
        );
        let again: Vec<&Record> = std::mem::take(&mut deferred);
        // Counts of the first pass for these records are replaced by the second's.
        for r in &again {
            let c = report.by_type.entry(r.portal_type.clone()).or_default();
            c.deferred = c.deferred.saturating_sub(1);
            report.totals.deferred = report.totals.deferred.saturating_sub(1);
        }
        send_pass(
            &receiver,
            &mut ledger,
            &again,
            2,
            sending,
            &mut report,
            &mut deferred,
            &|_| {},
        )?;
    }

    report.counters = receiver.finalize()?;
    report.rejected = rejected(&ledger, &set);
    report.unknown_fields = unknown_fields(&ledger, &set);
    report.seconds = started.elapsed().as_secs_f64();
    let text = serde_json::to_vec_pretty(&report).map_err(|source| Error::JsonFile {
        path: state_dir.join("report.json"),
        source,
    })?;
    write_atomic(&state_dir.join("report.json"), &text)?;
    Ok(report)
}

/// A report with nothing done yet.
fn empty_report(
    opts: &LoadOptions,
    snap: &Snapshot,
    info: &receiver::Info,
    state_dir: &Path,
    records: usize,
) -> LoadReport {
    LoadReport {
        destination: opts.url.clone(),
        snapshot_id: snap.manifest.snapshot_id.clone(),
        state_dir: state_dir.display().to_string(),
        receiver: format!("{} {}", info.name, info.version),
        records: records as u64,
        by_type: BTreeMap::new(),
        totals: StatusCounts::default(),
        blobs_uploaded: 0,
        blob_bytes_sent: 0,
        principals: Vec::new(),
        users_needing_password_reset: Vec::new(),
        counters: Vec::new(),
        rejected: Vec::new(),
        unknown_fields: BTreeMap::new(),
        seconds: 0.0,
        delta: None,
    }
}

/// Sends users and groups; their outcomes go into the report.
fn send_principals(receiver: &Receiver, set: &RecordSet, report: &mut LoadReport) -> Result<()> {
    let items = receiver.principals(&set.users, &set.groups)?;
    report.users_needing_password_reset = items
        .iter()
        .filter(|p| p.kind == "user" && p.needs_password_reset)
        .map(|p| p.id.clone())
        .collect();
    for p in items.iter().filter(|p| p.status == "failed") {
        warn!(kind = %p.kind, id = %p.id, error = ?p.error, "Principal rejected.");
    }
    report.principals = items;
    Ok(())
}

/// A load never writes to the site its snapshot was extracted from.
///
/// # Errors
/// [`Error::Usage`] when `url` is the snapshot's source.
pub fn refuse_source(snap: &Snapshot, url: &str) -> Result<()> {
    let norm = |u: &str| u.trim_end_matches('/').to_ascii_lowercase();
    if norm(&snap.manifest.source.site_url) == norm(url) {
        return Err(Error::Usage(format!(
            "{url} is the site snapshot {} was extracted from; senaite-sync never writes to a \
             source (load into another site)",
            snap.dir.display()
        )));
    }
    Ok(())
}

/// A client for the destination.
///
/// # Errors
/// A URL that is not http(s).
pub fn connect(
    url: &str,
    credentials: &Credentials,
    timeout: Duration,
    retry: RetryPolicy,
) -> Result<Receiver> {
    let mut copts = ClientOptions::new(url, credentials.clone());
    copts.timeout = timeout;
    copts.retry = retry;
    Ok(Receiver::new(SenaiteClient::new(copts)?))
}

fn upload_blobs(
    receiver: &Receiver,
    snap: &Snapshot,
    todo: &[&Record],
    chunk: u64,
    progress: &Progress,
    report: &mut LoadReport,
) -> Result<()> {
    let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
    for r in todo {
        for (sha, size) in &r.blobs {
            wanted.insert(sha, *size);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let total: u64 = wanted.values().sum();
    let bar = progress.bar(total, "files", "bytes");
    for (sha, size) in wanted {
        let path = blobs::blob_path(&snap.dir, sha);
        let sent = receiver.upload_blob(sha, &path, size, chunk)?;
        if sent > 0 {
            report.blobs_uploaded += 1;
            report.blob_bytes_sent += sent;
        }
        bar.inc(size);
    }
    bar.finish_and_clear();
    Ok(())
}

/// How a pass sends its records.
#[derive(Clone, Copy)]
struct Sending {
    /// Records per request.
    batch: usize,
    /// Approximate bytes per request.
    byte_limit: usize,
    /// Requests in flight.
    jobs: usize,
}

/// Cuts `todo` into batches: up to `batch` records and about `byte_limit` bytes each (at least
/// one record).
fn batches(todo: &[&Record], batch: usize, byte_limit: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < todo.len() {
        let mut end = start;
        let mut bytes = 0usize;
        while end < todo.len() && end - start < batch {
            let len = todo[end].json.len();
            if end > start && bytes + len > byte_limit {
                break;
            }
            bytes += len;
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// For each batch, the earlier batches holding parents of its records: it is sent only after
/// they are answered (a container must exist before its contents; references need no wait,
/// the receiver defers those whose target is not there yet).
fn parent_batches(todo: &[&Record], ranges: &[std::ops::Range<usize>]) -> Vec<Vec<usize>> {
    let mut batch_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (b, r) in ranges.iter().enumerate() {
        for rec in &todo[r.clone()] {
            batch_of.insert(rec.uid.as_str(), b);
        }
    }
    ranges
        .iter()
        .enumerate()
        .map(|(b, r)| {
            let mut needs: Vec<usize> = todo[r.clone()]
                .iter()
                .filter_map(|rec| rec.parent_uid.as_deref())
                .filter_map(|p| batch_of.get(p).copied())
                .filter(|&pb| pb < b)
                .collect();
            needs.sort_unstable();
            needs.dedup();
            needs
        })
        .collect()
}

/// Sends one pass: batches in order, up to `jobs` in flight, a batch only once the batches
/// holding its records' parents are answered. Every answer is in the ledger before the pass
/// goes on; a batch that cannot be delivered stops the pass (after the requests in flight are
/// answered and recorded) with an error that says how to resume.
#[allow(clippy::too_many_arguments)]
fn send_pass<'a>(
    receiver: &Receiver,
    ledger: &mut Ledger,
    todo: &[&'a Record],
    pass: u8,
    sending: Sending,
    report: &mut LoadReport,
    deferred: &mut Vec<&'a Record>,
    tick: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let ranges = batches(todo, sending.batch, sending.byte_limit);
    let needs = parent_batches(todo, &ranges);
    let jobs = sending.jobs.max(1);
    let mut answered = vec![false; ranges.len()];
    let mut first_error: Option<Error> = None;
    let mut sent_records = 0usize;
    let mut last_log = Instant::now();
    let (job_tx, job_rx) = std::sync::mpsc::channel::<usize>();
    let job_rx = std::sync::Mutex::new(job_rx);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Result<Vec<ApplyItem>>)>();
    std::thread::scope(|scope| -> Result<()> {
        // Owned by this closure: however it returns, the workers' queue closes and they end.
        let job_tx = job_tx;
        for _ in 0..jobs.min(ranges.len()) {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            let ranges = &ranges;
            scope.spawn(move || {
                loop {
                    let next = job_rx.lock().ok().and_then(|rx| rx.recv().ok());
                    let Some(b) = next else { break };
                    let chunk = &todo[ranges[b].clone()];
                    let result = receiver.apply(chunk.iter().map(|r| &*r.json));
                    if done_tx.send((b, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut next = 0usize;
        let mut in_flight = 0usize;
        loop {
            // Dispatch in order while there is room and the next batch's parents are answered.
            while first_error.is_none()
                && next < ranges.len()
                && in_flight < jobs
                && needs[next].iter().all(|&p| answered[p])
            {
                if job_tx.send(next).is_err() {
                    break;
                }
                next += 1;
                in_flight += 1;
            }
            if in_flight == 0 {
                break;
            }
            let Ok((b, result)) = done_rx.recv() else {
                break;
            };
            in_flight -= 1;
            let chunk = &todo[ranges[b].clone()];
            let items = match result {
                Ok(items) => items,
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(Error::Load {
                            message: format!(
                                "batch of {} records starting at {} ({}) was not delivered: {e}; \
                                 the ledger holds every finished record, run the same command \
                                 again to resume",
                                chunk.len(),
                                chunk[0].path,
                                chunk[0].uid
                            ),
                        });
                    }
                    continue;
                }
            };
            let at = now_rfc3339();
            let mut entries = Vec::with_capacity(items.len());
            for (r, item) in chunk.iter().zip(items) {
                let item = checked(r, item);
                let c = report.by_type.entry(r.portal_type.clone()).or_default();
                c.add(&item.status);
                report.totals.add(&item.status);
                if item.status == "deferred" && pass == 1 {
                    deferred.push(r);
                }
                entries.push(Entry {
                    uid: r.uid.clone(),
                    portal_type: r.portal_type.clone(),
                    status: item.status.clone(),
                    load_hash: r.load_hash.clone(),
                    pass,
                    result: item,
                    at: at.clone(),
                });
            }
            ledger.append(entries)?;
            answered[b] = true;
            tick(chunk.len() as u64);
            sent_records += chunk.len();
            if last_log.elapsed() > Duration::from_secs(10) {
                last_log = Instant::now();
                info!(pass, sent = sent_records, of = todo.len(), "Loading.");
            }
        }
        drop(job_tx);
        Ok(())
    })?;
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// An answer for the wrong uid is a protocol error recorded as a failure of this record.
fn checked(r: &Record, item: ApplyItem) -> ApplyItem {
    if item.uid == r.uid {
        return item;
    }
    ApplyItem {
        uid: r.uid.clone(),
        status: "failed".into(),
        error: Some(format!(
            "the receiver answered for uid {} instead of {}",
            item.uid, r.uid
        )),
        ..ApplyItem::default()
    }
}

fn rejected(ledger: &Ledger, set: &RecordSet) -> Vec<Rejected> {
    let mut out: Vec<Rejected> = ledger
        .entries()
        .filter(|e| set.get(&e.uid).is_some_and(|r| r.load_hash == e.load_hash))
        .filter(|e| e.is_failure() || e.status == "deferred")
        .map(|e| Rejected {
            uid: e.uid.clone(),
            portal_type: e.portal_type.clone(),
            path: e
                .result
                .path
                .clone()
                .or_else(|| set.get(&e.uid).map(|r| r.path.clone()))
                .unwrap_or_default(),
            status: e.status.clone(),
            error: e.result.error.clone(),
            field_errors: e.result.field_errors.clone(),
            deferred_fields: e.result.deferred_fields.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.uid.cmp(&b.uid)));
    out
}

/// Per portal type, the keys the destination answered as having no place for, with the number
/// of records of this snapshot holding each (the latest ledger entry of each record, so a re-run
/// that sends nothing still reports them). Each type is logged as a warning.
fn unknown_fields(ledger: &Ledger, set: &RecordSet) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for e in ledger
        .entries()
        .filter(|e| set.get(&e.uid).is_some_and(|r| r.load_hash == e.load_hash))
    {
        for field in &e.result.unknown_fields {
            *out.entry(e.portal_type.clone())
                .or_default()
                .entry(field.clone())
                .or_default() += 1;
        }
    }
    for (portal_type, fields) in &out {
        let names: Vec<String> = fields.iter().map(|(f, n)| format!("{f} ({n})")).collect();
        warn!(
            portal_type = %portal_type,
            fields = %names.join(", "),
            "Record values the destination has no field for were not written."
        );
    }
    out
}

/// The portal types of a record set (for plan and reports).
pub fn portal_types(set: &RecordSet) -> BTreeSet<&str> {
    set.records.iter().map(|r| r.portal_type.as_str()).collect()
}
