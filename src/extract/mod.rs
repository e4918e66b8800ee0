//! The `extract` stage: a SENAITE site, read over HTTP, becomes a snapshot directory. It never
//! writes to the source. The work is split into units staged under `<out>/.work/` so a killed run
//! resumes where it stopped; the manifest is written last. See `listing` (what is there), `fetch`
//! (complete records plus what v1 loses), `site` (users, groups, registry, settings) and
//! `assemble` (staged units to tables in bounded memory).

pub mod assemble;
pub mod fetch;
pub mod listing;
pub mod senaite1;
pub mod since;
pub mod site;
pub mod staging;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::info;

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::snapshot::manifest::{Manifest, RequestInfo, SourceInfo};
use crate::snapshot::writer::{SnapshotParts, now_rfc3339};
use crate::source::retry::RetryPolicy;
use crate::source::{ClientOptions, Credentials, SenaiteClient};

use fetch::{FetchContext, Unit};
use listing::{Listed, Listing};
use staging::Staging;

/// How exact review-history times must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryMode {
    /// Microsecond times from plone.restapi `@history` (one extra request per object).
    Exact,
    /// senaite.jsonapi's whole-second times only.
    V1,
}

/// Whose local roles to read (one plone.restapi `@sharing` request each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalRolesMode {
    /// Objects that contain other objects (clients, folders, samples with analyses, ...).
    Containers,
    /// Every object.
    All,
    /// None.
    None,
}

/// Checked options of an extract.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Site URL (`http://host:port/senaite`).
    pub site_url: String,
    /// Output snapshot directory.
    pub out: PathBuf,
    /// Credentials.
    pub credentials: Credentials,
    /// Only these portal types (empty: all).
    pub include_types: Vec<String>,
    /// Never these portal types.
    pub exclude_types: Vec<String>,
    /// Only objects under these path prefixes (empty: all).
    pub include_paths: Vec<String>,
    /// Never objects under these path prefixes.
    pub exclude_paths: Vec<String>,
    /// Concurrent requests.
    pub jobs: usize,
    /// Whether `jobs` was asked for (`-j`) rather than left at its default: a BIKA source is
    /// read with one job unless asked (one Zope process serves one request at a time there).
    pub jobs_given: bool,
    /// Complete records per page.
    pub page_size: u64,
    /// Review-history precision.
    pub history: HistoryMode,
    /// Local roles to read.
    pub local_roles: LocalRolesMode,
    /// Read users, groups, registry and settings.
    pub site_records: bool,
    /// Discard a staged, unfinished extract with other arguments.
    pub restart: bool,
    /// Overwrite an existing complete snapshot in `out`.
    pub force: bool,
    /// Retry policy for reads.
    pub retry: RetryPolicy,
    /// Objects per single-read unit.
    pub singles_per_unit: usize,
    /// Which kind of site to read (`--source-kind`; BIKA LIMS 3.1: see `crate::bika`).
    pub source_kind: crate::bika::SourceKind,
    /// Incremental extract: the complete snapshot whose unchanged records are reused
    /// (`--since`; see [`since`]).
    pub since: Option<PathBuf>,
}

impl ExtractOptions {
    /// Options with the defaults of the CLI.
    pub fn new(site_url: &str, out: PathBuf, credentials: Credentials) -> Self {
        ExtractOptions {
            site_url: site_url.trim_end_matches('/').to_string(),
            out,
            credentials,
            include_types: Vec::new(),
            exclude_types: Vec::new(),
            include_paths: Vec::new(),
            exclude_paths: Vec::new(),
            jobs: 2,
            jobs_given: false,
            page_size: 250,
            history: HistoryMode::Exact,
            local_roles: LocalRolesMode::Containers,
            site_records: true,
            restart: false,
            force: false,
            retry: RetryPolicy::default(),
            singles_per_unit: 50,
            source_kind: crate::bika::SourceKind::Auto,
            since: None,
        }
    }

    fn type_selected(&self, t: &str) -> bool {
        (self.include_types.is_empty() || self.include_types.iter().any(|x| x == t))
            && !self.exclude_types.iter().any(|x| x == t)
    }

    /// Whether an object path passes the path filters.
    pub fn path_selected(&self, path: &str) -> bool {
        let under = |prefix: &String| {
            let p = prefix.trim_end_matches('/');
            path == p || path.starts_with(&format!("{p}/"))
        };
        (self.include_paths.is_empty() || self.include_paths.iter().any(under))
            && !self.exclude_paths.iter().any(under)
    }

    fn request_info(&self) -> RequestInfo {
        RequestInfo {
            include_types: self.include_types.clone(),
            exclude_types: self.exclude_types.clone(),
            include_paths: self.include_paths.clone(),
            exclude_paths: self.exclude_paths.clone(),
            history: match self.history {
                HistoryMode::Exact => "exact",
                HistoryMode::V1 => "v1",
            }
            .into(),
            local_roles: match self.local_roles {
                LocalRolesMode::Containers => "containers",
                LocalRolesMode::All => "all",
                LocalRolesMode::None => "none",
            }
            .into(),
            site_records: self.site_records,
        }
    }

    /// What identifies a resumable request (never the credentials).
    fn fingerprint(&self) -> Value {
        let mut f = json!({"site_url": self.site_url, "request": self.request_info()});
        if let Some(since) = &self.since {
            f["since"] = json!(since.to_string_lossy());
        }
        f
    }
}

/// What an extract did.
#[derive(Debug, Clone)]
pub struct ExtractReport {
    /// The snapshot's manifest.
    pub manifest: Manifest,
    /// Objects written.
    pub objects: u64,
    /// Units skipped because a previous run had finished them.
    pub resumed_units: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Prefix of the manifest note of an incremental extract (kind `since`).
pub const SINCE_NOTE_KIND: &str = "since";

/// Runs an extract.
///
/// # Errors
/// Unreachable server, refused credentials, a different staged request, or units that failed
/// after retries (the staged work is kept: re-run to resume).
pub fn run(opts: &ExtractOptions, progress: &Progress) -> Result<ExtractReport> {
    let started = Instant::now();
    if opts.out.join("manifest.json").exists() && !opts.force {
        return Err(Error::Usage(format!(
            "{} already holds a complete snapshot; choose another --out or pass --force",
            opts.out.display()
        )));
    }
    if let Some(since) = &opts.since {
        check_since_paths(since, &opts.out)?;
    }
    let mut copts = ClientOptions::new(&opts.site_url, opts.credentials.clone());
    copts.retry = opts.retry;
    let client = SenaiteClient::new(copts)?;
    // A BIKA LIMS 3.1 site has no senaite.jsonapi: read it through its legacy API instead.
    use crate::bika::SourceKind;
    let bika = |opts: &ExtractOptions| match &opts.since {
        Some(_) => Err(Error::Usage(
            "--since works on SENAITE sources only; a BIKA LIMS site is extracted in full".into(),
        )),
        None => crate::bika::extract::run(opts, progress),
    };
    if opts.source_kind == SourceKind::Bika {
        return bika(opts);
    }
    let source = match probe(&client) {
        // Only a site without senaite.jsonapi may be a BIKA site; refused credentials and an
        // unreachable server stay errors (an anonymous legacy read would answer too).
        Err(e)
            if opts.source_kind == SourceKind::Auto
                && !matches!(
                    e,
                    Error::Unauthorized { .. } | Error::Credentials(_) | Error::Http { .. }
                )
                && crate::bika::extract::is_bika(&client) =>
        {
            return bika(opts);
        }
        probed => probed?,
    };
    // A SENAITE 1.x source has no plone.restapi: the reads that need it are lowered and noted.
    let senaite1 = senaite1::is_senaite1(&source);
    let (lowered, lowered_notes) = if senaite1 {
        senaite1::lower_options(opts)
    } else {
        (opts.clone(), Vec::new())
    };
    let opts = &lowered;
    let old = match &opts.since {
        Some(dir) => Some(since::OldSnapshot::open(dir, opts, &source)?),
        None => None,
    };
    let staging = Staging::open(&opts.out, &opts.fingerprint(), opts.restart)?;
    let started_at = match staging.read_doc::<String>("started_at.json")? {
        Some(s) => s,
        None => {
            let s = now_rfc3339();
            staging.write_doc("started_at.json", &s)?;
            s
        }
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {} workers: {e}", opts.jobs)))?;
    let listing = match staging.read_doc::<Listing>("listing.json")? {
        Some(l) => l,
        None => {
            let l = if senaite1 {
                senaite1::list_site(&client, &pool)?
            } else {
                listing::list_site(&client, &pool)?
            };
            staging.write_doc("listing.json", &l)?;
            l
        }
    };
    let selected: Vec<&Listed> = listing
        .objects
        .iter()
        .filter(|o| opts.type_selected(&o.portal_type) && opts.path_selected(&o.path))
        .collect();
    let containers = containers_of(&listing.objects);
    let ctx = FetchContext {
        client: &client,
        staging: &staging,
        out: &opts.out,
        opts,
        containers: &containers,
        old: old.as_ref(),
        in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1))),
    };
    let bar = progress.bar(selected.len() as u64, "extract", "objects");
    let jsonapi_version = source.jsonapi_version.clone().unwrap_or_default();
    // Site records (users, groups, registry, settings) are read on their own thread while the
    // objects are fetched: they are a few sequential requests.
    let (fetched, site) = std::thread::scope(|scope| {
        let site = scope.spawn(|| read_site_records(opts, &staging, &client, &jsonapi_version));
        let fetched = match &old {
            Some(old) => fetch_since(&pool, &ctx, old, &selected, &bar),
            None => fetch_objects(&pool, &ctx, &selected, &bar),
        };
        let site = site
            .join()
            .unwrap_or_else(|_| Err(Error::Usage("reading the site records panicked".into())));
        (fetched, site)
    });
    let resumed = fetched?;
    let site = site?;
    bar.finish_and_clear();
    info!(
        objects = selected.len(),
        elapsed_s = started.elapsed().as_secs_f64(),
        "Fetched objects."
    );
    info!(
        elapsed_s = started.elapsed().as_secs_f64(),
        "Writing tables."
    );
    let spinner = progress.spinner("assemble");
    spinner.set_message("writing tables");
    let mut parts = SnapshotParts {
        source,
        request: opts.request_info(),
        started_at,
        notes: lowered_notes,
        ..Default::default()
    };
    if let Some(old) = &old {
        let c = since::count(&staging, old)?;
        info!(
            reused = c.reused,
            rechecked = c.rechecked,
            refetched = c.refetched,
            deleted = c.deleted,
            "Incremental extract."
        );
        parts.notes.push(crate::snapshot::manifest::Note {
            kind: SINCE_NOTE_KIND.into(),
            subject: old.manifest.snapshot_id.clone(),
            message: format!(
                "incremental extract since {} (changes from {} on): {} reused ({} of them re-read \
                 and unchanged), {} refetched, {} deleted",
                old.manifest.snapshot_id,
                old.threshold_text(),
                c.reused,
                c.rechecked,
                c.refetched,
                c.deleted
            ),
        });
    }
    let manifest = assemble::assemble(
        &staging,
        &opts.out,
        parts,
        site.as_ref(),
        &listing.catalogs,
        client.origin(),
        selected.len() as u64,
    )?;
    spinner.finish_and_clear();
    staging.remove()?;
    let objects: u64 = manifest.counts.values().sum();
    info!(objects, snapshot = %manifest.snapshot_id, "Snapshot complete.");
    Ok(ExtractReport {
        manifest,
        objects,
        resumed_units: resumed,
        elapsed: started.elapsed(),
    })
}

/// Runs the page units, then the single-object units for what the pages missed; returns how
/// many units an earlier run had finished.
fn fetch_objects(
    pool: &rayon::ThreadPool,
    ctx: &FetchContext,
    selected: &[&Listed],
    bar: &indicatif::ProgressBar,
) -> Result<usize> {
    let mut resumed = run_units(pool, ctx, &page_units(selected, ctx.opts.page_size), bar)?;
    let singles = single_units(ctx.staging, selected, ctx.opts.singles_per_unit)?;
    resumed += run_units(pool, ctx, &singles, bar)?;
    Ok(resumed)
}

/// The objects of an incremental extract: types whose changes `modified_since` finds have
/// their unchanged objects taken from the base and the rest read one by one; other types are
/// read page by page and compared with the base; then whatever the pages missed.
fn fetch_since(
    pool: &rayon::ThreadPool,
    ctx: &FetchContext,
    old: &since::OldSnapshot,
    selected: &[&Listed],
    bar: &indicatif::ProgressBar,
) -> Result<usize> {
    let plan = match ctx.staging.read_doc::<since::Plan>("since/plan.json")? {
        Some(p) => p,
        None => {
            let types: BTreeSet<String> = selected.iter().map(|o| o.portal_type.clone()).collect();
            let p = since::plan(ctx.client, old, &types)?;
            ctx.staging.write_doc("since/plan.json", &p)?;
            p
        }
    };
    let (reuse, _) = since::split_filtered(&plan, old, selected);
    let reused: Vec<Unit> = reuse
        .chunks(ctx.opts.singles_per_unit.max(1))
        .map(|c| Unit::Reused {
            objects: c.iter().map(|o| (*o).clone()).collect(),
        })
        .collect();
    let mut resumed = run_units(pool, ctx, &reused, bar)?;
    let rescan: Vec<&Listed> = selected
        .iter()
        .filter(|o| {
            matches!(
                plan.modes.get(&o.portal_type),
                Some(since::TypeMode::Rescan)
            )
        })
        .copied()
        .collect();
    resumed += run_units(pool, ctx, &page_units(&rescan, ctx.opts.page_size), bar)?;
    // Filtered types announce their whole count as a full extract's pages do.
    let counts: Vec<(String, String)> = plan
        .modes
        .iter()
        .filter_map(|(t, m)| match m {
            since::TypeMode::Filter { count, .. } => Some(fetch::count_line(t, *count)),
            since::TypeMode::Rescan => None,
        })
        .collect();
    ctx.staging
        .write_unit("units/since-counts.jsonl.zst", &counts)?;
    let singles = single_units(ctx.staging, selected, ctx.opts.singles_per_unit)?;
    resumed += run_units(pool, ctx, &singles, bar)?;
    Ok(resumed)
}

/// `--since OLD` must not be `--out` (the new snapshot would overwrite its own base).
fn check_since_paths(since: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let same = match (since.canonicalize(), out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => since == out,
    };
    if same {
        return Err(Error::Usage(format!(
            "--since {} is --out too: write the incremental snapshot elsewhere",
            since.display()
        )));
    }
    Ok(())
}

/// The site records, from the staging area when an earlier run read them.
fn read_site_records(
    opts: &ExtractOptions,
    staging: &Staging,
    client: &SenaiteClient,
    jsonapi_version: &str,
) -> Result<Option<site::SiteRecords>> {
    if !opts.site_records {
        return Ok(None);
    }
    if let Some(s) = staging.read_doc::<site::SiteRecords>("site.json")? {
        return Ok(Some(s));
    }
    let s = site::read_site(client, jsonapi_version)?;
    staging.write_doc("site.json", &s)?;
    Ok(Some(s))
}

/// Checks the server speaks senaite.jsonapi and accepts the credentials; reads versions.
fn probe(client: &SenaiteClient) -> Result<SourceInfo> {
    let version = client.api_get("version", &[]).map_err(|e| match e {
        Error::HttpStatus {
            status: 404, url, ..
        } => Error::BadResponse {
            url,
            message:
                "no senaite.jsonapi here (is the URL the site, e.g. http://host:8080/senaite?)"
                    .into(),
        },
        other => other,
    })?;
    client.api_get("auth", &[])?;
    let mut versions = BTreeMap::new();
    if let Ok(Value::Object(sys)) = client.rest_get("@system", &[]) {
        for (k, v) in sys {
            if let (Some(name), Some(v)) = (k.strip_suffix("_version"), v.as_str()) {
                versions.insert(name.to_string(), v.to_string());
            }
        }
    }
    Ok(SourceInfo {
        kind: "senaite".into(),
        site_url: client.site_url().to_string(),
        jsonapi_version: version
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_string),
        versions,
    })
}

/// UIDs of listed objects that are the parent of another listed object.
fn containers_of(objects: &[Listed]) -> BTreeSet<String> {
    let parents: BTreeSet<&str> = objects
        .iter()
        .filter_map(|o| o.path.rsplit_once('/').map(|(p, _)| p))
        .collect();
    objects
        .iter()
        .filter(|o| parents.contains(o.path.as_str()))
        .map(|o| o.uid.clone())
        .collect()
}

fn page_units(selected: &[&Listed], page_size: u64) -> Vec<Unit> {
    let mut per_type: BTreeMap<&str, u64> = BTreeMap::new();
    for o in selected {
        *per_type.entry(o.portal_type.as_str()).or_insert(0) += 1;
    }
    let mut units = Vec::new();
    for (t, n) in per_type {
        let mut b = 0;
        while b < n {
            units.push(Unit::Page {
                portal_type: t.to_string(),
                b_start: b,
            });
            b += page_size.max(1);
        }
    }
    units
}

/// Objects the page units did not capture (moved pages, types whose search fails), in units.
fn single_units(staging: &Staging, selected: &[&Listed], per_unit: usize) -> Result<Vec<Unit>> {
    let mut captured: BTreeSet<String> = BTreeSet::new();
    let mut names = staging.units_under("units/pages")?;
    names.extend(staging.units_under("units/reused")?);
    for name in names {
        for (k, _) in staging.read_unit_lines(&name)? {
            if !k.starts_with('!') {
                captured.insert(k);
            }
        }
    }
    let missing: Vec<Listed> = selected
        .iter()
        .filter(|o| !captured.contains(&o.uid))
        .map(|o| (*o).clone())
        .collect();
    Ok(missing
        .chunks(per_unit.max(1))
        .map(|c| Unit::Singles {
            objects: c.to_vec(),
        })
        .collect())
}

/// Runs the units not yet done; returns how many were already done. All units are attempted;
/// failures are reported together afterwards.
fn run_units(
    pool: &rayon::ThreadPool,
    ctx: &FetchContext,
    units: &[Unit],
    bar: &indicatif::ProgressBar,
) -> Result<usize> {
    use rayon::prelude::*;
    let todo: Vec<&Unit> = units
        .iter()
        .filter(|u| !ctx.staging.is_done(&u.name()))
        .collect();
    let done = units.len() - todo.len();
    if done > 0 {
        info!(units = done, "Resuming: skipping finished units.");
    }
    let ticker = Ticker::new(bar);
    let results: Vec<(String, Result<fetch::UnitOutcome>)> = pool.install(|| {
        todo.par_iter()
            .map(|u| {
                let r = fetch::run_unit(ctx, u);
                if let Ok(o) = &r {
                    ticker.add(o.objects);
                }
                (u.name(), r)
            })
            .collect()
    });
    let failures: Vec<(String, Error)> = results
        .into_iter()
        .filter_map(|(n, r)| r.err().map(|e| (n, e)))
        .collect();
    if let Some((name, first)) = failures.into_iter().next() {
        return Err(Error::Resume {
            path: ctx.staging.root().join(name),
            message: format!(
                "a unit of work failed ({}); finished units are kept, re-run the same command to resume",
                error_chain(&first)
            ),
        });
    }
    Ok(done)
}

/// Advances the bar, and where no bar is drawn (CI, logs to a file) logs progress every few
/// seconds instead.
struct Ticker<'a> {
    bar: &'a indicatif::ProgressBar,
    last: std::sync::Mutex<Instant>,
}

impl<'a> Ticker<'a> {
    const EVERY: Duration = Duration::from_secs(10);

    fn new(bar: &'a indicatif::ProgressBar) -> Self {
        Ticker {
            bar,
            last: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn add(&self, n: u64) {
        self.bar.inc(n);
        if !self.bar.is_hidden() {
            return;
        }
        if let Ok(mut last) = self.last.lock()
            && last.elapsed() >= Self::EVERY
        {
            *last = Instant::now();
            let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
            let rate = self.bar.per_sec();
            let eta = self.bar.eta().as_secs();
            info!(
                done = pos,
                total = len,
                per_sec = rate as u64,
                eta_s = eta,
                "Extracting objects."
            );
        }
    }
}

fn error_chain(e: &Error) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Secret;

    fn opts() -> ExtractOptions {
        ExtractOptions::new(
            "http://127.0.0.1:1/senaite/",
            PathBuf::from("/tmp/x"),
            Credentials {
                user: "u".into(),
                password: Secret::new("p"),
            },
        )
    }

    #[test]
    fn path_filters_match_whole_segments() {
        let mut o = opts();
        o.include_paths = vec!["/senaite/clients/".into()];
        o.exclude_paths = vec!["/senaite/clients/client-2".into()];
        assert!(o.path_selected("/senaite/clients/client-1/W-1"));
        assert!(!o.path_selected("/senaite/clients/client-2/W-1"));
        assert!(o.path_selected("/senaite/clients/client-20"));
        assert!(!o.path_selected("/senaite/bika_setup"));
    }

    #[test]
    fn fingerprint_never_holds_the_password() {
        let o = opts();
        assert!(!o.fingerprint().to_string().contains("\"p\""));
        assert_eq!(o.site_url, "http://127.0.0.1:1/senaite");
    }

    #[test]
    fn pages_cover_each_type() {
        let l = |t: &str, i: u32| Listed {
            uid: format!("{i}"),
            portal_type: t.into(),
            path: String::new(),
        };
        let objs = [l("A", 1), l("A", 2), l("A", 3), l("B", 4)];
        let refs: Vec<&Listed> = objs.iter().collect();
        let names: Vec<String> = page_units(&refs, 2).iter().map(Unit::name).collect();
        assert_eq!(names.len(), 3);
        assert!(names[1].ends_with("A/000000000002.jsonl.zst"));
    }

    #[test]
    fn containers_are_parents_of_listed_objects() {
        let l = |u: &str, p: &str| Listed {
            uid: u.into(),
            portal_type: "T".into(),
            path: p.into(),
        };
        let c = containers_of(&[l("a", "/s/c"), l("b", "/s/c/x"), l("d", "/s/d")]);
        assert_eq!(c.into_iter().collect::<Vec<_>>(), ["a"]);
    }
}
