//! The command line: clap `*Args` structs, their conversion into checked `*Options`, and the
//! printers of each command's report (stdout is for results, stderr for logs and progress).
//! Exit codes: 0 success, 1 "completed with differences" (reserved for diff), 2 any error.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, Result};
use crate::extract::{self, ExtractOptions, HistoryMode, LocalRolesMode};
use crate::inspect::{self, InspectOptions};
use crate::load::{self, LoadOptions};
use crate::plan::{self, PlanOptions};
use crate::progress::{Progress, ProgressMode};
use crate::sandbox::{Sandbox, SandboxOptions};
use crate::source::credentials::{self, CredentialSources};
use crate::source::{Credentials, Secret};
use crate::verify::{self, VerifyOptions};

/// Move SENAITE LIMS data between instances through inspectable snapshot directories.
#[derive(Debug, Parser)]
#[command(name = "senaite-sync", version, about, long_about = None)]
#[command(after_long_help = "Examples:\n  \
    senaite-sync demo\n  \
    SENAITE_USER=admin SENAITE_PASSWORD=... senaite-sync extract --url http://127.0.0.1:8081/senaite --out snap\n  \
    senaite-sync inspect snap --json\n\n\
Exit codes: 0 success, 1 differences found (diff), 2 error.")]
pub struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short = 'q', long = "quiet", global = true)]
    pub quiet: bool,
    /// When to draw progress bars on stderr.
    #[arg(
        long = "progress",
        value_name = "WHEN",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub progress: ProgressArg,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `--progress` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProgressArg {
    /// Bars on a terminal, plain logs otherwise.
    Auto,
    /// Always draw bars.
    Always,
    /// Never draw bars.
    Never,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a SENAITE site over its REST API into a snapshot directory.
    ///
    /// Lists every object (uid_catalog), reads complete records with workflow information page
    /// by page per portal type, adds what senaite.jsonapi loses from the site's plone.restapi
    /// (Dexterity values, microsecond review-history times, local roles), streams every file
    /// field into the blob store, and reads users, groups, registry and settings. The source is
    /// only read. An interrupted extract resumes when re-run with the same arguments.
    /// Credentials: SENAITE_USER / SENAITE_PASSWORD, a netrc entry, or a prompt.
    #[command(after_long_help = "Examples:\n  \
        SENAITE_USER=admin SENAITE_PASSWORD=secret \\\n    senaite-sync extract --url http://127.0.0.1:8081/senaite --out snap\n  \
        senaite-sync extract --url http://lims:8080/senaite --out clients --include-path /senaite/clients -j 8\n  \
        senaite-sync extract --url http://lims:8080/senaite --out fast --history v1 --local-roles none\n  \
        senaite-sync extract --url http://127.0.0.1:8095/lims --out bika-snap --source-kind bika\n  \
        senaite-sync extract --url http://127.0.0.1:8081/senaite --out tuesday --since monday")]
    Extract(ExtractArgs),
    /// Summarise a snapshot and check its integrity.
    ///
    /// Prints counts per portal type, review states, created ranges, blob totals, and checks every
    /// file and blob against its checksum, references that point outside the snapshot and objects
    /// whose parent is missing. Exits 2 when the snapshot is corrupt.
    #[command(
        after_long_help = "Examples:\n  senaite-sync inspect snap\n  senaite-sync inspect snap --json | jq .types"
    )]
    Inspect(InspectArgs),
    /// Serve a snapshot as a local senaite.jsonapi sandbox on loopback.
    ///
    /// An in-process double of a SENAITE 2.6 site (senaite.jsonapi v1 read routes, the
    /// plone.restapi routes extract uses, file downloads) answering from a snapshot, by default
    /// the demo data shipped in data/demo. Basic auth: --user (default admin) and the password in
    /// SENAITE_SANDBOX_PASSWORD (default admin). Stop with Ctrl-C.
    #[command(
        after_long_help = "Examples:\n  senaite-sync serve\n  senaite-sync serve snap --addr 127.0.0.1:8099"
    )]
    Serve(ServeArgs),
    /// Show what a load of a snapshot would do to a destination, writing nothing.
    ///
    /// Asks the destination's receiver add-on, by UID, which objects exist and classifies every
    /// record per portal type: to create, to update, unchanged (loaded before, not edited since),
    /// blocked (type missing in the destination, parent missing, receiver missing or too old).
    /// Lists every reference whose target is neither in the snapshot nor in the destination.
    #[command(after_long_help = "Examples:\n  \
        senaite-sync plan snap --url http://127.0.0.1:8082/senaite\n  \
        senaite-sync plan snap --url http://lims2:8080/senaite --json | jq .totals\n  \
        senaite-sync plan delta --url http://127.0.0.1:8082/senaite --deletions delete\n\n\
        For a delta snapshot (`diff OLD NEW --out DELTA`) the plan also lists moves, deletions \
        (by --deletions), conflicts with both versions (and what --conflicts would do), and \
        changes to objects the destination lacks (its base was never loaded there) as blocked.")]
    Plan(PlanArgs),
    /// Write a snapshot into a destination SENAITE, keeping UIDs, ids, states, history and dates.
    ///
    /// Needs the receiver add-on in the destination (companion/; `plan` tells whether it is
    /// there). Sends users and groups, then every file in resumable chunks, then the objects in
    /// dependency order (containers before contents, referenced before referencing) in batches,
    /// then advances the destination's ID counters. Every outcome is written to a ledger in the
    /// state directory: killed and re-run, a load resumes without redoing or duplicating anything;
    /// --retry-failed replays only the records the destination rejected. Exit 1 when some records
    /// or fields were rejected (all listed), 2 on errors.
    #[command(after_long_help = "Examples:\n  \
        SENAITE_USER=admin SENAITE_PASSWORD=secret \\\n    senaite-sync load snap --url http://127.0.0.1:8082/senaite\n  \
        senaite-sync load snap --url http://127.0.0.1:8082/senaite --retry-failed\n  \
        senaite-sync load snap --url http://lims2:8080/senaite --state /var/lib/migration/state --json\n  \
        senaite-sync diff snap-old snap-new --out delta && senaite-sync load delta --url http://127.0.0.1:8082/senaite\n  \
        senaite-sync load delta --url http://127.0.0.1:8082/senaite --deletions keep --conflicts source-wins\n\n\
        A delta snapshot (written by `diff OLD NEW --out DELTA`) creates, updates, moves (same UID, \
        new path: moved in place, history and dates kept) and deletes by --deletions; objects the \
        destination changed since our last load that the delta also changes are conflicts, handled \
        by --conflicts and always reported with both versions. A delta whose base was never loaded \
        into the destination is refused, naming the objects. Exit 1 also when conflicts were skipped \
        or deletions could not be carried out.")]
    Load(LoadArgs),
    /// Prove a load: re-read the destination and compare it with the snapshot.
    ///
    /// Extracts the destination with the snapshot's own request into STATE/verify (kept as
    /// evidence) and compares every object, field, workflow state, review-history entry, local
    /// role and file (sha256), plus users and groups. Fields that legitimately differ between
    /// two sites are listed in the report. Exit 0 when equal, 1 on differences.
    #[command(after_long_help = "Examples:\n  \
        senaite-sync verify snap --url http://127.0.0.1:8082/senaite\n  \
        senaite-sync verify snap --url http://127.0.0.1:8082/senaite --json > proof.json")]
    Verify(VerifyArgs),
    /// Run the main job on the shipped demo data: extract, inspect, plan, load and verify.
    ///
    /// Serves data/demo (extracted from a real SENAITE 2.6) as a sandbox source and starts an
    /// empty sandbox destination with the receiver, both on loopback; extracts the source into
    /// --out, inspects it, plans and loads it into the destination, and verifies the result.
    #[command(after_long_help = "Example:\n  senaite-sync demo --out /tmp/demo-snapshot")]
    Demo(DemoArgs),
    /// Compare two snapshots offline: what was created, modified, moved or deleted.
    ///
    /// Per portal type: created, modified, moved or renamed (same uid, other path) and deleted
    /// (vanished, or deactivated) objects; for each changed object the field changes with old
    /// and new value, review-state, review-history, local-role and file (sha256) changes; users,
    /// groups and settings. Values that change without meaning (URLs, catalog counters) and
    /// tolerances (numeric epsilon, date precision) come from rules: built-in defaults, or a
    /// TOML file laid over them. --out writes a delta snapshot (changed and new objects with all
    /// their rows and files, tombstones for vanished ones) naming OLD as its base. Never touches
    /// the network. Exit 0 when equal, 1 when different, 2 on errors.
    #[command(after_long_help = "Examples:\n  \
        senaite-sync diff snap-monday snap-tuesday\n  \
        senaite-sync diff old new --json | jq '.objects[] | select(.status == \"deleted\")'\n  \
        senaite-sync diff old new --rules diff-rules.toml --out delta\n  \
        senaite-sync diff old new --brief --json | jq .totals")]
    Diff(DiffArgs),
    /// Reshape a snapshot offline through a pipeline of steps (TOML) into a new snapshot.
    ///
    /// Steps (pipelines/ holds examples): filter (keep/drop by portal type, path, review state,
    /// created/modified range, field value), rename_type, rename_fields, drop_fields,
    /// set_fields, map_values, move (a folder and everything under it), prefix_ids (lab
    /// merges: ids, paths, titles equal to the id and id-valued fields stay consistent) and
    /// redact (salted hash, mask or drop; the salt comes from SENAITE_SYNC_SALT or the step's
    /// salt_env/salt_file, never from the pipeline, and is never written). The whole pipeline is
    /// checked before any data is read and every problem is listed with file, step and key.
    /// Every table follows: rows of dropped objects go, file rows follow renamed fields,
    /// content_hash is recomputed; references to dropped objects are reported. The manifest's
    /// notes name the input snapshot and the pipeline's sha256. --check only validates a
    /// pipeline; --dry-run also checks the input and the salts, writing nothing; --test runs
    /// the pipeline's inline [[test]] tables. Never touches the network. Exit 0 on success,
    /// 1 when inline tests fail, 2 on errors.
    #[command(after_long_help = "Examples:\n  \
        senaite-sync transform snap-1x --pipeline pipelines/senaite1-to-senaite26.toml --out snap-26\n  \
        SENAITE_SYNC_SALT=$(cat salt.txt) senaite-sync transform snap \\\n    --pipeline pipelines/redact-patients.toml --out staging\n  \
        senaite-sync transform lab-a --pipeline pipelines/merge-a-lab.toml --out lab-a-prefixed --json\n  \
        senaite-sync transform --check my-pipeline.toml\n  \
        senaite-sync transform --test pipelines/*.toml")]
    Transform(TransformArgs),
    /// Write one self-contained HTML page reviewing a snapshot before it is loaded, offline.
    ///
    /// Counts per portal type and review state, a chart of samples created per month, files by
    /// size (histogram, largest files), example records per type, and the warnings that matter:
    /// references to objects that are not in the snapshot, objects whose parent is missing, the
    /// extract's notes and what a transform recorded. --against DEST_SNAPSHOT adds schema drift:
    /// the field names per portal type compared with a snapshot of the destination, listing types
    /// the destination does not have and fields with nowhere to go. --plan adds the records a load
    /// would block (the output of `plan --json`), --diff what changed (the output of
    /// `diff --json`). The page has no external resources (inline CSS and SVG); every value from
    /// the snapshot is escaped. --json prints the same findings for scripts. Never touches the
    /// network. Exit 0 when written (warnings are findings, not failures), 2 on errors.
    #[command(after_long_help = "Examples:\n  \
        senaite-sync review snap -o review.html\n  \
        senaite-sync review snap --against dest-snap -o review.html\n  \
        senaite-sync plan snap --url http://127.0.0.1:8082/senaite --json > plan.json && \\\n    senaite-sync review snap --plan plan.json -o review.html\n  \
        senaite-sync diff snap-monday snap-tuesday --json > diff.json\n  \
        senaite-sync review snap-tuesday --diff diff.json -o review.html\n  \
        senaite-sync review snap --against dest-snap --json | jq '.drift.fields_missing_in_destination'")]
    Review(ReviewArgs),
}

/// `extract` arguments.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Site URL of the source, e.g. http://127.0.0.1:8081/senaite.
    #[arg(long = "url", value_name = "URL")]
    pub url: String,
    /// Snapshot directory to write (created; an unfinished one is resumed).
    #[arg(long = "out", short = 'o', value_name = "DIR")]
    pub out: PathBuf,
    /// User name (else SENAITE_USER, a netrc entry, or a prompt).
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// netrc-style credentials file (default ~/.netrc).
    #[arg(long = "netrc", value_name = "FILE")]
    pub netrc: Option<PathBuf>,
    /// Concurrent requests to the source [default: 2; 1 for a BIKA source]. A SENAITE served by
    /// one Zope process answers on one core: more than 2 rarely helps it; raise it for ZEO
    /// clusters.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Complete records per page.
    #[arg(long = "page-size", value_name = "N", default_value_t = 250)]
    pub page_size: u64,
    /// Only this portal type (repeatable).
    #[arg(long = "include-type", value_name = "TYPE")]
    pub include_type: Vec<String>,
    /// Never this portal type (repeatable).
    #[arg(long = "exclude-type", value_name = "TYPE")]
    pub exclude_type: Vec<String>,
    /// Only objects under this physical path (repeatable).
    #[arg(long = "include-path", value_name = "PATH")]
    pub include_path: Vec<String>,
    /// Never objects under this physical path (repeatable).
    #[arg(long = "exclude-path", value_name = "PATH")]
    pub exclude_path: Vec<String>,
    /// Review-history times: exact (microseconds, one request per object) or v1 (whole seconds).
    #[arg(
        long = "history",
        value_name = "MODE",
        value_enum,
        default_value = "exact"
    )]
    pub history: HistoryArg,
    /// Whose local roles to read.
    #[arg(
        long = "local-roles",
        value_name = "WHICH",
        value_enum,
        default_value = "containers"
    )]
    pub local_roles: LocalRolesArg,
    /// Skip users, groups, registry and settings.
    #[arg(long = "no-site-records")]
    pub no_site_records: bool,
    /// Discard an unfinished extract staged in --out with other arguments.
    #[arg(long = "restart")]
    pub restart: bool,
    /// Overwrite a complete snapshot in --out.
    #[arg(long = "force")]
    pub force: bool,
    /// Kind of source: auto (SENAITE when senaite.jsonapi answers, else BIKA LIMS 3.1 when
    /// bika.lims' legacy @@API/read answers), senaite, or bika. A BIKA 3.1 site is read through
    /// its legacy API into the same snapshot format; what it cannot give (review history,
    /// local roles, groups) is stated in the manifest's notes. Example:
    /// senaite-sync extract --url http://127.0.0.1:8095/lims --out bika-snap --source-kind bika
    #[arg(
        long = "source-kind",
        value_name = "KIND",
        value_enum,
        default_value = "auto"
    )]
    pub source_kind: SourceKindArg,
    /// Incremental extract: read only what changed since OLD, a complete snapshot of the same
    /// site made with the same filters and modes (a delta snapshot is refused), and write
    /// --out as a complete snapshot again. Unchanged objects are taken from OLD; new, changed,
    /// moved and unprovable ones are read; local roles, users, groups and settings are always
    /// read; deletions are found by the complete listing. The manifest's note of kind `since`
    /// names OLD and counts reused, refetched and deleted objects. Example:
    /// senaite-sync extract --url http://127.0.0.1:8081/senaite --out tuesday --since monday
    #[arg(long = "since", value_name = "OLD")]
    pub since: Option<PathBuf>,
}

/// `--source-kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKindArg {
    /// Detect: senaite.jsonapi first, then bika.lims' legacy API.
    Auto,
    /// A SENAITE site (senaite.jsonapi).
    Senaite,
    /// A BIKA LIMS 3.1 site (bika.lims' legacy `@@API/read`).
    Bika,
}

/// Where a snapshot goes: the arguments `plan`, `load` and `verify` share.
#[derive(Debug, Args)]
pub struct DestArgs {
    /// Snapshot directory.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: PathBuf,
    /// Site URL of the destination, e.g. http://127.0.0.1:8082/senaite.
    #[arg(long = "url", value_name = "URL")]
    pub url: String,
    /// User name (else SENAITE_USER, a netrc entry, or a prompt); must be a Manager.
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// netrc-style credentials file (default ~/.netrc).
    #[arg(long = "netrc", value_name = "FILE")]
    pub netrc: Option<PathBuf>,
    /// State directory (ledger, reports, verify extract); default
    /// SNAPSHOT_PARENT/.senaite-sync-state/DESTINATION.
    #[arg(long = "state", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long = "json")]
    pub json: bool,
}

/// `plan` arguments.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Snapshot and destination.
    #[command(flatten)]
    pub dest: DestArgs,
    /// Delta policies (as `load` would apply them).
    #[command(flatten)]
    pub delta: DeltaArgs,
}

/// Policies for loading a delta snapshot (`diff OLD NEW --out DELTA`).
#[derive(Debug, Args)]
pub struct DeltaArgs {
    /// Delta snapshots: what to do with objects the delta deletes. `deactivate` runs the
    /// deactivate transition (a real review-history entry) and reports objects that have none
    /// (samples, analyses); `delete` removes them; `keep` only reports them.
    #[arg(long = "deletions", value_enum, default_value_t = load::Deletions::Deactivate)]
    pub deletions: load::Deletions,
    /// Delta snapshots: objects the destination changed since our last load of them that the
    /// delta also changes or deletes. `skip` reports them with both versions and writes
    /// nothing; `source-wins` applies the delta's version; `destination-wins` keeps the
    /// destination's and records it as accepted, so it is not reported again.
    #[arg(long = "conflicts", value_enum, default_value_t = load::Conflicts::Skip)]
    pub conflicts: load::Conflicts,
}

/// `load` arguments.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Snapshot and destination.
    #[command(flatten)]
    pub dest: DestArgs,
    /// Records per request (the receiver may allow fewer).
    #[arg(long = "batch-size", value_name = "N", default_value_t = 50)]
    pub batch_size: usize,
    /// Replay only the records the destination rejected in earlier runs.
    #[arg(long = "retry-failed")]
    pub retry_failed: bool,
    /// Apply requests in flight. One Zope process applies one batch at a time on one core (and
    /// concurrent commits into the same catalogs conflict and are retried), so more than 1 pays
    /// off on ZEO clusters; a batch always waits for the batches holding its parents.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Do not create or update users and groups.
    #[arg(long = "no-principals")]
    pub no_principals: bool,
    /// Delta policies.
    #[command(flatten)]
    pub delta: DeltaArgs,
}

/// `verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Snapshot and destination.
    #[command(flatten)]
    pub dest: DestArgs,
    /// Concurrent requests while re-reading the destination.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 2)]
    pub jobs: usize,
    /// Compare under diff's rules (its defaults plus this TOML file: ignored fields with their
    /// reasons, tolerances, table columns) instead of verify's own short list: for a load into
    /// another SENAITE version, e.g. pipelines/verify/senaite1-to-senaite26.toml or
    /// pipelines/verify/bika31-to-senaite26.toml.
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Option<PathBuf>,
}

impl DestArgs {
    fn credentials(&self) -> Result<Credentials> {
        resolve_credentials(&self.url, self.user.clone(), self.netrc.clone())
    }
}

/// Credentials for a site URL from --user/--netrc, the environment, netrc or a prompt.
fn resolve_credentials(
    url: &str,
    user: Option<String>,
    netrc: Option<PathBuf>,
) -> Result<Credentials> {
    let origin = crate::source::client::origin_of(url.trim_end_matches('/')).ok_or_else(|| {
        Error::Usage(format!(
            "--url {url} is not an http(s) URL without user info"
        ))
    })?;
    let host = origin.split("://").nth(1).unwrap_or(&origin).to_string();
    credentials::resolve(
        &host,
        &CredentialSources {
            user,
            netrc,
            allow_prompt: true,
        },
    )
}

/// `--history` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HistoryArg {
    /// Microsecond times from plone.restapi @history.
    Exact,
    /// senaite.jsonapi's whole-second times.
    V1,
}

/// `--local-roles` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LocalRolesArg {
    /// Objects that contain others.
    Containers,
    /// Every object.
    All,
    /// None.
    None,
}

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Snapshot directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long = "json")]
    pub json: bool,
    /// Skip re-hashing every blob (file checksums are always verified).
    #[arg(long = "no-verify-blobs")]
    pub no_verify_blobs: bool,
}

/// `serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Snapshot to serve (default: the demo data in data/demo).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Loopback address to listen on.
    #[arg(long = "addr", value_name = "ADDR", default_value = "127.0.0.1:8099")]
    pub addr: SocketAddr,
    /// User name the sandbox accepts.
    #[arg(long = "user", value_name = "USER", default_value = "admin")]
    pub user: String,
    /// Requests answered at once, like a SENAITE's worker threads (each connection has a
    /// thread of its own; an idle keep-alive connection holds no worker).
    #[arg(long = "threads", value_name = "N", default_value_t = 4)]
    pub threads: usize,
    /// Grow the site to N objects with synthetic clients, samples and analyses cloned from its
    /// real records (for benchmarks and scale tests).
    #[arg(long = "synthetic", value_name = "N")]
    pub synthetic: Option<usize>,
    /// Also answer the receiver's routes (sync/*), so the sandbox can be loaded into.
    #[arg(long = "receiver")]
    pub receiver: bool,
    /// Serve an empty site (no content, no users) instead of a snapshot: a fresh destination.
    #[arg(long = "empty", conflicts_with_all = ["dir", "synthetic"])]
    pub empty: bool,
}

/// `diff` arguments.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older snapshot.
    #[arg(value_name = "OLD")]
    pub old: PathBuf,
    /// The newer snapshot.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
    /// Print the report as JSON.
    #[arg(long = "json")]
    pub json: bool,
    /// TOML rules laid over the defaults (ignored fields, tolerances; see README).
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Write a delta snapshot (NEW relative to OLD) into this directory.
    #[arg(long = "out", short = 'o', value_name = "DELTA")]
    pub out: Option<PathBuf>,
    /// Replace an existing --out directory.
    #[arg(long = "force")]
    pub force: bool,
    /// Only which objects differ and how (created, modified, moved, deleted), without field
    /// changes: reads the digest indexes and four narrow columns, fast on large snapshots.
    /// Rules are not applied to objects (one differing only in ignored values is modified).
    #[arg(long = "brief", conflicts_with = "out")]
    pub brief: bool,
}

/// `review` arguments.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The snapshot to review.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: PathBuf,
    /// A snapshot of the destination (extract it first): compare fields per portal type.
    #[arg(long = "against", value_name = "DEST_SNAPSHOT")]
    pub against: Option<PathBuf>,
    /// The output of `plan --json` for this snapshot: show blocked records.
    #[arg(long = "plan", value_name = "PLAN.json")]
    pub plan: Option<PathBuf>,
    /// The output of `diff --json` with this snapshot on one side: show what changed.
    #[arg(long = "diff", value_name = "DIFF.json")]
    pub diff: Option<PathBuf>,
    /// Write the HTML page to this file (default: stdout, unless --json).
    #[arg(long = "out", short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the findings as JSON (counts, drift, warnings) instead of the page on stdout.
    #[arg(long = "json")]
    pub json: bool,
    /// Example records shown per portal type.
    #[arg(long = "examples", value_name = "N", default_value_t = crate::review::DEFAULT_EXAMPLES)]
    pub examples: usize,
}

/// `demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the extracted snapshot.
    #[arg(
        long = "out",
        value_name = "DIR",
        default_value = "data/snapshots/demo"
    )]
    pub out: PathBuf,
}

impl ExtractArgs {
    /// Validates the arguments and resolves credentials.
    ///
    /// # Errors
    /// Bad values, or no credentials.
    pub fn into_options(self) -> Result<ExtractOptions> {
        if let Some(jobs) = self.jobs.filter(|j| *j == 0 || *j > 64) {
            return Err(Error::Usage(format!(
                "--jobs must be between 1 and 64, not {jobs}"
            )));
        }
        if self.page_size == 0 || self.page_size > 5000 {
            return Err(Error::Usage(format!(
                "--page-size must be between 1 and 5000, not {}",
                self.page_size
            )));
        }
        let creds = resolve_credentials(&self.url, self.user, self.netrc)?;
        let mut o = ExtractOptions::new(&self.url, self.out, creds);
        if let Some(jobs) = self.jobs {
            o.jobs = jobs;
            o.jobs_given = true;
        }
        o.page_size = self.page_size;
        o.include_types = self.include_type;
        o.exclude_types = self.exclude_type;
        o.include_paths = self.include_path;
        o.exclude_paths = self.exclude_path;
        o.history = match self.history {
            HistoryArg::Exact => HistoryMode::Exact,
            HistoryArg::V1 => HistoryMode::V1,
        };
        o.local_roles = match self.local_roles {
            LocalRolesArg::Containers => LocalRolesMode::Containers,
            LocalRolesArg::All => LocalRolesMode::All,
            LocalRolesArg::None => LocalRolesMode::None,
        };
        o.site_records = !self.no_site_records;
        o.restart = self.restart;
        o.force = self.force;
        o.source_kind = match self.source_kind {
            SourceKindArg::Auto => crate::bika::SourceKind::Auto,
            SourceKindArg::Senaite => crate::bika::SourceKind::Senaite,
            SourceKindArg::Bika => crate::bika::SourceKind::Bika,
        };
        o.since = self.since;
        Ok(o)
    }
}

/// Runs a parsed command line; returns the process exit code.
///
/// # Errors
/// Any stage error (mapped to exit code 2 by `main`).
pub fn run(cli: Cli) -> Result<u8> {
    let progress = Progress::new(match cli.progress {
        ProgressArg::Auto if cli.quiet => ProgressMode::Never,
        ProgressArg::Auto => ProgressMode::Auto,
        ProgressArg::Always => ProgressMode::Always,
        ProgressArg::Never => ProgressMode::Never,
    });
    crate::logging::init(cli.verbose, cli.quiet, &progress);
    match cli.command {
        Command::Extract(args) => {
            let opts = args.into_options()?;
            let report = extract::run(&opts, &progress)?;
            print_extract_summary(&report);
            Ok(0)
        }
        Command::Inspect(args) => {
            let report = inspect::run(&InspectOptions {
                dir: args.dir,
                verify_blobs: !args.no_verify_blobs,
            })?;
            if args.json {
                let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                emit(&format!("{text}\n"));
            } else {
                emit(&inspect::render_text(&report));
            }
            Ok(if report.is_intact() { 0 } else { 2 })
        }
        Command::Plan(args) => {
            let report = plan::run_with(
                &PlanOptions {
                    credentials: args.dest.credentials()?,
                    snapshot: args.dest.snapshot,
                    url: args.dest.url,
                },
                args.delta.deletions,
                args.delta.conflicts,
            )?;
            if args.dest.json {
                emit_json(&report);
            } else {
                emit(&plan::render_text(&report));
            }
            Ok(0)
        }
        Command::Load(args) => {
            let mut o = LoadOptions::new(
                args.dest.snapshot.clone(),
                &args.dest.url,
                args.dest.credentials()?,
            );
            o.state_dir = args.dest.state;
            o.batch_size = args.batch_size.max(1);
            o.retry_failed = args.retry_failed;
            if args.jobs == 0 || args.jobs > 32 {
                return Err(Error::Usage(format!(
                    "--jobs must be between 1 and 32, not {}",
                    args.jobs
                )));
            }
            o.jobs = args.jobs;
            o.skip_principals = args.no_principals;
            o.deletions = args.delta.deletions;
            o.conflicts = args.delta.conflicts;
            let report = load::run(&o, &progress)?;
            if args.dest.json {
                emit_json(&report);
            } else {
                emit(&render_load(&report));
            }
            Ok(if report.is_complete() { 0 } else { 1 })
        }
        Command::Verify(args) => {
            let report = verify::run(
                &VerifyOptions {
                    credentials: args.dest.credentials()?,
                    snapshot: args.dest.snapshot,
                    url: args.dest.url,
                    out: None,
                    state_dir: args.dest.state,
                    jobs: args.jobs,
                    rules: args
                        .rules
                        .as_deref()
                        .map(crate::diff::Rules::load)
                        .transpose()?,
                },
                &progress,
            )?;
            if args.dest.json {
                emit_json(&report);
            } else {
                emit(&render_verify(&report));
            }
            Ok(if report.is_equal() { 0 } else { 1 })
        }
        Command::Serve(args) => serve(args),
        Command::Demo(args) => demo(args, &progress),
        Command::Review(args) => review(args),
        Command::Transform(args) => transform(args),
        Command::Diff(args) => {
            let json = args.json;
            let (text, code) = crate::diff::execute(&args.into_options()?, json)?;
            emit(&text);
            Ok(code)
        }
    }
}

/// Runs `review`: the page to --out (or stdout), the findings as JSON with --json.
fn review(args: ReviewArgs) -> Result<u8> {
    let opts = crate::review::ReviewOptions {
        snapshot: args.snapshot,
        against: args.against,
        plan: args.plan,
        diff: args.diff,
        examples: args.examples,
    };
    let report = crate::review::run(&opts)?;
    match &args.out {
        Some(out) => {
            crate::snapshot::writer::write_atomic(out, report.to_html().as_bytes())?;
            if !args.json {
                emit(&format!(
                    "Review of {} written to {}: {} objects of {} types, {} warnings.\n",
                    report.snapshot.dir,
                    out.display(),
                    report.snapshot.objects,
                    report.types.len(),
                    report.warning_count()
                ));
            }
        }
        None if !args.json => emit(&report.to_html()),
        None => {}
    }
    if args.json {
        emit_json(&report);
    }
    Ok(0)
}

fn print_extract_summary(r: &extract::ExtractReport) {
    let m = &r.manifest;
    let rows: u64 = m
        .files
        .iter()
        .filter(|f| f.kind == "table" && !f.path.ends_with("/object_digests.parquet"))
        .map(|f| f.rows)
        .sum();
    let resumed = if r.resumed_units > 0 {
        format!(", {} units resumed", r.resumed_units)
    } else {
        String::new()
    };
    emit(&format!(
        "Extracted {} objects of {} types, {} table rows, {} blobs ({} bytes) in {:.1}s{resumed}; {} notes. Snapshot {} (id {}).\n",
        r.objects,
        m.counts.len(),
        rows,
        m.blobs.count,
        m.blobs.bytes,
        r.elapsed.as_secs_f64(),
        m.notes.len(),
        m.source.site_url,
        &m.snapshot_id[..12.min(m.snapshot_id.len())],
    ));
    for n in m
        .notes
        .iter()
        .filter(|n| n.kind == extract::SINCE_NOTE_KIND)
    {
        emit(&format!("Incremental: {}.\n", n.message));
    }
}

fn emit_json<T: serde::Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    emit(&format!("{text}\n"));
}

/// A load report as text.
pub fn render_load(r: &load::LoadReport) -> String {
    let mut s = format!(
        "Load of snapshot {} into {} (receiver {}; state {})\n",
        &r.snapshot_id[..12.min(r.snapshot_id.len())],
        r.destination,
        r.receiver,
        r.state_dir
    );
    s.push_str(&format!(
        "{:<28} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8}\n",
        "portal_type",
        "created",
        "updated",
        "unchanged",
        "deferred",
        "partial",
        "failed",
        "earlier"
    ));
    let line = |name: &str, c: &load::StatusCounts| {
        format!(
            "{:<28} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8}\n",
            name, c.created, c.updated, c.unchanged, c.deferred, c.partial, c.failed, c.done_before
        )
    };
    for (t, c) in &r.by_type {
        s.push_str(&line(t, c));
    }
    s.push_str(&line("TOTAL", &r.totals));
    s.push_str(&format!(
        "{} files uploaded ({} bytes); {} users/groups; {} ID counters advanced; {:.1}s\n",
        r.blobs_uploaded,
        r.blob_bytes_sent,
        r.principals.len(),
        r.counters.len(),
        r.seconds
    ));
    if !r.users_needing_password_reset.is_empty() {
        s.push_str(&format!(
            "users created without a usable password (passwords cannot be read from the source; reset them): {}\n",
            r.users_needing_password_reset.join(", ")
        ));
    }
    for p in r.principals.iter().filter(|p| p.status == "failed") {
        s.push_str(&format!(
            "rejected {} {}: {}\n",
            p.kind,
            p.id,
            p.error.as_deref().unwrap_or("")
        ));
    }
    for x in &r.rejected {
        s.push_str(&format!(
            "{} {} ({}) {}: {}\n",
            x.status,
            x.path,
            x.portal_type,
            x.uid,
            x.error.as_deref().unwrap_or("")
        ));
        for (f, why) in &x.field_errors {
            s.push_str(&format!("    field {f}: {why}\n"));
        }
        for f in &x.deferred_fields {
            s.push_str(&format!(
                "    field {f}: reference target missing in the snapshot and the destination\n"
            ));
        }
    }
    if !r.unknown_fields.is_empty() {
        s.push_str(
            "values the destination has no field for (not written; map or drop them in a \
             transform pipeline):\n",
        );
        for (t, fields) in &r.unknown_fields {
            let names: Vec<String> = fields
                .iter()
                .map(|(f, n)| format!("{f} ({n} records)"))
                .collect();
            s.push_str(&format!("    {t}: {}\n", names.join(", ")));
        }
    }
    if let Some(d) = &r.delta {
        s.push_str(&load::delta::render_text(d));
    }
    if r.rejected.is_empty() && !r.unknown_fields.is_empty() {
        let n: usize = r
            .unknown_fields
            .values()
            .map(std::collections::BTreeMap::len)
            .sum();
        s.push_str(&format!(
            "Every record is in the destination, without the {n} fields listed above.\n"
        ));
    } else if r.rejected.is_empty() {
        s.push_str("Every record is in the destination.\n");
    } else {
        s.push_str(&format!(
            "{} records rejected in whole or part; after fixing, run again with --retry-failed.\n",
            r.rejected.len()
        ));
    }
    s
}

/// A verify report as text.
pub fn render_verify(r: &verify::VerifyReport) -> String {
    let m = &r.summary;
    let mut s = format!(
        "Verify of snapshot {} against {} (destination re-read into {})\n\
         {} objects compared: {} equal, {} different, {} missing; {} other objects in the destination\n",
        &r.snapshot_id[..12.min(r.snapshot_id.len())],
        r.destination,
        r.destination_snapshot,
        m.objects,
        m.equal,
        m.different,
        m.missing,
        m.extra
    );
    for d in r.differences.iter().take(200) {
        let show = |v: &serde_json::Value| {
            let t = v.to_string();
            if t.chars().count() > 160 {
                format!("{}…", t.chars().take(160).collect::<String>())
            } else {
                t
            }
        };
        s.push_str(&format!(
            "{} {} ({}) {}: expected {} got {}\n",
            d.kind,
            d.path,
            d.portal_type,
            d.key,
            show(&d.expected),
            show(&d.actual)
        ));
    }
    if r.differences.len() > 200 {
        s.push_str(&format!(
            "... {} more (use --json)\n",
            r.differences.len() - 200
        ));
    }
    for p in &r.principals {
        s.push_str(&format!("{p}\n"));
    }
    s.push_str(if r.is_equal() {
        "No differences.\n"
    } else {
        "Differences found.\n"
    });
    s
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _closed_pipe_is_fine = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The demo snapshot: `data/demo` under the current directory, else in the source tree.
pub fn demo_snapshot_dir() -> PathBuf {
    let local = Path::new("data/demo");
    if local.join("manifest.json").is_file() {
        return local.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo")
}

fn sandbox_password() -> Secret {
    Secret::new(std::env::var("SENAITE_SANDBOX_PASSWORD").unwrap_or_else(|_| "admin".into()))
}

fn serve(args: ServeArgs) -> Result<u8> {
    let dir = args.dir.unwrap_or_else(demo_snapshot_dir);
    let mut data = if args.empty {
        crate::sandbox::SiteData::empty("senaite")
    } else {
        crate::sandbox::load::site_from_snapshot(&dir)?
    };
    if let Some(n) = args.synthetic {
        data = crate::sandbox::synth::synthesize(&data, n);
    }
    let mut opts = SandboxOptions {
        addr: args.addr,
        threads: args.threads.max(1),
        user: args.user,
        password: sandbox_password().expose().to_string(),
        ..SandboxOptions::default()
    };
    if args.receiver {
        opts = opts.with_receiver();
    }
    let sandbox = Sandbox::start(data, opts)?;
    tracing::info!(site = %sandbox.site_url(), snapshot = %dir.display(), "Sandbox serving; Ctrl-C stops it.");
    let what = if args.empty {
        "an empty site".to_string()
    } else {
        dir.display().to_string()
    };
    emit(&format!("serving {what} at {}\n", sandbox.site_url()));
    sandbox.wait();
    Ok(0)
}

fn demo(args: DemoArgs, progress: &Progress) -> Result<u8> {
    let dir = demo_snapshot_dir();
    let data = crate::sandbox::load::site_from_snapshot(&dir)?;
    let password = sandbox_password();
    let source = Sandbox::start(
        data,
        SandboxOptions {
            password: password.expose().to_string(),
            ..SandboxOptions::default()
        },
    )?;
    let dest = Sandbox::start(
        crate::sandbox::SiteData::empty("senaite"),
        SandboxOptions {
            password: password.expose().to_string(),
            ..SandboxOptions::default()
        }
        .with_receiver(),
    )?;
    emit(&format!(
        "source:      sandbox serving {} at {}\ndestination: empty sandbox with the receiver at {}\n\n",
        dir.display(),
        source.site_url(),
        dest.site_url()
    ));
    let creds = Credentials {
        user: "admin".into(),
        password,
    };

    emit("== extract\n");
    let mut opts = ExtractOptions::new(&source.site_url(), args.out.clone(), creds.clone());
    opts.force = true;
    opts.restart = true;
    let report = extract::run(&opts, progress)?;
    print_extract_summary(&report);
    source.shutdown();
    let inspected = inspect::run(&InspectOptions {
        dir: args.out.clone(),
        verify_blobs: true,
    })?;
    emit(&format!(
        "\n== inspect\n{}",
        inspect::render_text(&inspected)
    ));
    if !inspected.is_intact() {
        return Ok(2);
    }

    let state = demo_state_dir(&args.out);
    if state.exists() {
        std::fs::remove_dir_all(&state).map_err(|e| Error::write(&state, e))?;
    }
    emit("\n== plan\n");
    let planned = plan::run(&PlanOptions {
        snapshot: args.out.clone(),
        url: dest.site_url(),
        credentials: creds.clone(),
    })?;
    emit(&plan::render_text(&planned));

    emit("\n== load\n");
    let mut lo = LoadOptions::new(args.out.clone(), &dest.site_url(), creds.clone());
    lo.state_dir = Some(state.clone());
    let loaded = load::run(&lo, progress)?;
    emit(&render_load(&loaded));

    emit("\n== verify\n");
    let verified = verify::run(
        &VerifyOptions {
            snapshot: args.out.clone(),
            url: dest.site_url(),
            credentials: creds,
            out: None,
            state_dir: Some(state),
            jobs: 2,
            rules: None,
        },
        progress,
    )?;
    emit(&render_verify(&verified));
    dest.shutdown();
    Ok(if loaded.is_complete() && verified.is_equal() {
        0
    } else {
        1
    })
}

/// Where the demo keeps its load state: beside its snapshot, recreated on every run.
fn demo_state_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| format!("{}.load-state", n.to_string_lossy()))
        .unwrap_or_else(|| "demo.load-state".into());
    out.with_file_name(name)
}

/// `transform` arguments.
#[derive(Debug, Args)]
pub struct TransformArgs {
    /// The input snapshot.
    #[arg(value_name = "IN", required_unless_present_any = ["check", "test"])]
    pub input: Option<PathBuf>,
    /// The pipeline file (TOML).
    #[arg(long = "pipeline", value_name = "FILE.toml", required_unless_present_any = ["check", "test"])]
    pub pipeline: Option<PathBuf>,
    /// The output snapshot directory.
    #[arg(long = "out", value_name = "OUT", required_unless_present_any = ["check", "test", "dry_run"])]
    pub out: Option<PathBuf>,
    /// Replace an existing OUT.
    #[arg(long = "force")]
    pub force: bool,
    /// Only validate the pipeline file (every problem listed); reads no data.
    #[arg(long = "check", value_name = "FILE.toml", conflicts_with_all = ["input", "test"])]
    pub check: Option<PathBuf>,
    /// Validate the pipeline, its salts and the input snapshot; write nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Run the inline [[test]] tables of these pipeline files.
    #[arg(long = "test", value_name = "FILE.toml", num_args = 1.., conflicts_with = "input")]
    pub test: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long = "json")]
    pub json: bool,
}

fn transform(args: TransformArgs) -> Result<u8> {
    use crate::transform;
    if let Some(file) = &args.check {
        let p = transform::check(file)?;
        emit(&format!(
            "{}: ok ({} steps, {} inline tests, sha256 {})\n",
            file.display(),
            p.step_count(),
            p.test_count(),
            p.sha256
        ));
        return Ok(0);
    }
    if !args.test.is_empty() {
        let mut failed = 0;
        let mut reports = Vec::new();
        for file in &args.test {
            let r = transform::run_tests(file)?;
            failed += r.failures.len();
            if !args.json {
                let mut text = format!(
                    "{}: {} passed, {} failed\n",
                    r.pipeline,
                    r.passed,
                    r.failures.len()
                );
                for f in &r.failures {
                    text.push_str(&format!(
                        "  FAILED {}:\n    {}\n",
                        f.test,
                        f.message.replace('\n', "\n    ")
                    ));
                }
                emit(&text);
            }
            reports.push(r);
        }
        if args.json {
            emit_json(&reports);
        }
        return Ok(if failed == 0 { 0 } else { 1 });
    }
    let (Some(input), Some(pipeline)) = (args.input, args.pipeline) else {
        return Err(Error::Usage("transform needs IN and --pipeline".into()));
    };
    if args.dry_run {
        let p = transform::dry_run(&input, &pipeline)?;
        emit(&format!(
            "{}: ok ({} steps) for {}: nothing written\n",
            pipeline.display(),
            p.step_count(),
            input.display()
        ));
        return Ok(0);
    }
    let Some(out) = args.out else {
        return Err(Error::Usage("transform needs --out".into()));
    };
    let report = transform::run(&transform::TransformOptions {
        input,
        pipeline,
        out,
        force: args.force,
    })?;
    if args.json {
        emit_json(&report);
    } else {
        emit(&transform::render_text(&report));
    }
    Ok(0)
}
