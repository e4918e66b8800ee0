//! `extract` against the in-process senaite.jsonapi double serving the demo snapshot (a real
//! seeded SENAITE 2.6, extracted): round trips, determinism, retries of every transient fault,
//! HTTP-200 errors never taken for data, shifting pages, resumption, refusals.

use std::path::{Path, PathBuf};
use std::time::Duration;

use senaite_sync::extract::{self, ExtractOptions, HistoryMode};
use senaite_sync::progress::Progress;
use senaite_sync::sandbox::load::site_from_snapshot;
use senaite_sync::sandbox::{
    FaultKind, FaultRule, Match, Sandbox, SandboxOptions, SiteData, SiteObject,
};
use senaite_sync::snapshot::Snapshot;
use senaite_sync::snapshot::table::{OBJECTS, TableReader};
use senaite_sync::source::retry::RetryPolicy;
use senaite_sync::source::{Credentials, Secret};
use senaite_sync::{Error, inspect};

use crate::util::TestDir;

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo")
}

fn demo_site() -> SiteData {
    site_from_snapshot(&demo_dir()).unwrap()
}

fn start(data: SiteData, faults: Vec<FaultRule>) -> Sandbox {
    let opts = SandboxOptions {
        faults,
        ..SandboxOptions::default()
    };
    Sandbox::start(data, opts).unwrap()
}

fn options(sb: &Sandbox, out: &Path) -> ExtractOptions {
    let creds = Credentials {
        user: "admin".into(),
        password: Secret::new("admin"),
    };
    let mut o = ExtractOptions::new(&sb.site_url(), out.to_path_buf(), creds);
    o.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(2),
    };
    o
}

fn run(o: &ExtractOptions) -> senaite_sync::Result<extract::ExtractReport> {
    extract::run(o, &Progress::hidden())
}

/// The table files that must equal between two extracts of the same data. `settings` is left
/// out where one side is the real site: registry records the real site cannot serialize are
/// kept there as errors, which the double does not reproduce.
const OBJECT_TABLES: &[&str] = &[
    "objects",
    "workflow_history",
    "workflow_states",
    "local_roles",
    "blobs",
    "users",
    "groups",
];

fn assert_tables_equal(a: &Path, b: &Path, tables: &[&str]) {
    for t in tables {
        let rel = format!("tables/{t}.parquet");
        let fa = std::fs::read(a.join(&rel)).unwrap();
        let fb = std::fs::read(b.join(&rel)).unwrap();
        assert!(
            fa == fb,
            "{rel} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

fn uids(snap: &Path) -> Vec<String> {
    TableReader::read_all(snap, &OBJECTS)
        .unwrap()
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn serving_a_snapshot_and_extracting_it_reproduces_its_tables() {
    let sb = start(demo_site(), vec![]);
    let dir = TestDir::new("roundtrip");
    let out = dir.join("snap");
    let report = run(&options(&sb, &out)).unwrap();
    assert_eq!(
        report.objects,
        Snapshot::open(&demo_dir()).unwrap().object_count()
    );
    assert_tables_equal(&demo_dir(), &out, OBJECT_TABLES);
    let snap = Snapshot::open(&out).unwrap();
    assert_eq!(
        snap.manifest.blobs,
        Snapshot::open(&demo_dir()).unwrap().manifest.blobs
    );
    assert!(!out.join(".work").exists(), "staging area must be removed");
    let inspected = inspect::run(&inspect::InspectOptions {
        dir: out,
        verify_blobs: true,
    })
    .unwrap();
    assert!(inspected.is_intact());
    assert!(inspected.orphans.is_empty(), "{:?}", inspected.orphans);
    assert_eq!(sb.panics(), 0);
}

#[test]
fn an_unchanged_source_extracted_twice_gives_identical_files() {
    let sb = start(demo_site(), vec![]);
    let dir = TestDir::new("twice");
    let a = run(&options(&sb, &dir.join("a"))).unwrap();
    let b = run(&options(&sb, &dir.join("b"))).unwrap();
    assert_eq!(a.manifest.snapshot_id, b.manifest.snapshot_id);
    let mut all: Vec<&str> = OBJECT_TABLES.to_vec();
    all.push("settings");
    assert_tables_equal(&dir.join("a"), &dir.join("b"), &all);
}

#[test]
fn transient_faults_are_retried_and_change_nothing() {
    let faults = vec![
        FaultRule::new(
            Match::PathContains("/search".into()),
            FaultKind::Status(503),
            2,
        ),
        FaultRule::new(
            Match::QueryContains("catalog=uid_catalog".into()),
            FaultKind::TooManyRequests {
                retry_after_secs: 1,
            },
            1,
        ),
        FaultRule::new(
            Match::QueryContains("portal_type=Client".into()),
            FaultKind::Drop,
            1,
        ),
        FaultRule::new(
            Match::PathContains("@history".into()),
            FaultKind::Html500,
            2,
        ),
        FaultRule::new(
            Match::QueryContains("portal_type=Analysis&".into()),
            FaultKind::Slow(Duration::from_millis(300)),
            1,
        ),
    ];
    let sb = start(demo_site(), faults);
    let dir = TestDir::new("faults");
    let out = dir.join("snap");
    let started = std::time::Instant::now();
    run(&options(&sb, &out)).unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After must be honoured"
    );
    assert_tables_equal(&demo_dir(), &out, OBJECT_TABLES);
}

#[test]
fn an_http_200_error_is_never_data() {
    // Every complete search of samples answers 200 + success:false (the 0.7 framework style):
    // the samples are then read one by one, and the snapshot is still complete and identical.
    let faults = vec![FaultRule::new(
        Match::QueryContains("portal_type=AnalysisRequest".into()),
        FaultKind::ApiError200 {
            message: "'NoneType' object has no attribute '__getitem__'".into(),
        },
        1000,
    )];
    let sb = start(demo_site(), faults);
    let dir = TestDir::new("api200");
    let out = dir.join("snap");
    let report = run(&options(&sb, &out)).unwrap();
    assert_tables_equal(&demo_dir(), &out, &["objects", "workflow_history"]);
    assert!(
        report
            .manifest
            .notes
            .iter()
            .any(|n| n.kind == "fallback" && n.subject == "AnalysisRequest"),
        "{:?}",
        report.manifest.notes
    );
}

#[test]
fn a_page_that_shifts_under_paging_loses_nothing() {
    let data = demo_site();
    let analyses: Vec<String> = data
        .objects
        .iter()
        .filter(|o| o.record["portal_type"] == "Analysis")
        .map(|o| o.record["uid"].as_str().unwrap().to_string())
        .collect();
    let victim = analyses[0].clone();
    // After the first page of analyses is served, one analysis disappears: offset paging would
    // now skip an object; the reconciliation pass must find it.
    let faults = vec![FaultRule::new(
        Match::QueryContains("portal_type=Analysis&".into()),
        FaultKind::ShiftAfter {
            insert: None,
            remove_uid: Some(victim.clone()),
        },
        1,
    )];
    let sb = start(data, faults);
    let dir = TestDir::new("shift");
    let out = dir.join("snap");
    let mut o = options(&sb, &out);
    o.page_size = 3;
    o.jobs = 1;
    let report = run(&o).unwrap();
    let got = uids(&out);
    let mut expected = uids(&demo_dir());
    // The removed object is either captured before it vanished or reported as vanished.
    let captured_victim = got.contains(&victim);
    if !captured_victim {
        expected.retain(|u| u != &victim);
        assert!(
            report
                .manifest
                .notes
                .iter()
                .any(|n| n.kind == "vanished" && n.subject == victim)
        );
    }
    assert_eq!(got, expected);
}

#[test]
fn a_failed_extract_resumes_without_refetching_finished_work() {
    let dir = TestDir::new("resume");
    let out = dir.join("snap");
    // Samples' pages fail until the retries are used up: the run fails, others are staged.
    let faults = vec![FaultRule::new(
        Match::QueryContains("portal_type=AnalysisRequest&".into()),
        FaultKind::Status(503),
        4,
    )];
    let sb = start(demo_site(), faults);
    let o = options(&sb, &out);
    let err = run(&o).unwrap_err();
    assert!(matches!(err, Error::Resume { .. }), "{err}");
    assert!(err.to_string().contains("re-run"), "{err}");
    assert!(
        !out.join("manifest.json").exists(),
        "a failed extract must not look complete"
    );
    assert!(Snapshot::open(&out).is_err());
    let client_pages = sb.hits_matching("portal_type=Client&");
    assert!(client_pages > 0);
    let report = run(&o).unwrap();
    assert!(report.resumed_units > 0);
    assert_eq!(
        sb.hits_matching("portal_type=Client&"),
        client_pages,
        "finished pages refetched"
    );
    assert_tables_equal(&demo_dir(), &out, OBJECT_TABLES);
}

#[test]
fn resuming_with_other_arguments_is_refused() {
    let dir = TestDir::new("refuse");
    let out = dir.join("snap");
    let faults = vec![FaultRule::new(
        Match::PathContains("/search".into()),
        FaultKind::Status(503),
        100,
    )];
    let sb = start(demo_site(), faults);
    let mut o = options(&sb, &out);
    o.retry.max_attempts = 1;
    run(&o).unwrap_err();
    o.include_types = vec!["Client".into()];
    let err = run(&o).unwrap_err().to_string();
    assert!(err.contains("--restart"), "{err}");
}

#[test]
fn a_complete_snapshot_is_not_overwritten_without_force() {
    let sb = start(demo_site(), vec![]);
    let dir = TestDir::new("force");
    let out = dir.join("snap");
    let mut o = options(&sb, &out);
    o.include_types = vec!["Client".into()];
    run(&o).unwrap();
    let err = run(&o).unwrap_err().to_string();
    assert!(err.contains("--force"), "{err}");
    o.force = true;
    run(&o).unwrap();
}

#[test]
fn a_wrong_password_is_a_clear_error_without_the_password() {
    let sb = start(demo_site(), vec![]);
    let dir = TestDir::new("badpw");
    let mut o = options(&sb, &dir.join("snap"));
    o.credentials.password = Secret::new("s3cr3t-wrong");
    let err = run(&o).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, Error::Unauthorized { .. }), "{text}");
    assert!(
        text.contains("admin") && !text.contains("s3cr3t-wrong"),
        "{text}"
    );
}

#[test]
fn an_unreachable_server_names_the_url() {
    let dir = TestDir::new("unreachable");
    let creds = Credentials {
        user: "admin".into(),
        password: Secret::new("admin"),
    };
    let mut o = ExtractOptions::new("http://127.0.0.1:9/senaite", dir.join("snap"), creds);
    o.retry.max_attempts = 2;
    o.retry.base_delay = Duration::from_millis(1);
    let err = run(&o).unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:9/senaite"), "{err}");
}

#[test]
fn filters_by_type_and_path() {
    let sb = start(demo_site(), vec![]);
    let dir = TestDir::new("filters");
    let mut o = options(&sb, &dir.join("snap"));
    o.include_paths = vec!["/senaite/clients".into()];
    o.exclude_types = vec!["Analysis".into()];
    o.history = HistoryMode::V1;
    let report = run(&o).unwrap();
    let types: Vec<&String> = report.manifest.counts.keys().collect();
    assert!(types.iter().any(|t| *t == "AnalysisRequest"), "{types:?}");
    assert!(
        !types.iter().any(|t| *t == "Analysis" || *t == "SampleType"),
        "{types:?}"
    );
    for row in TableReader::read_all(&dir.join("snap"), &OBJECTS).unwrap() {
        assert!(row[2].as_str().unwrap().starts_with("/senaite/clients"));
    }
    assert_eq!(report.manifest.request.history, "v1");
}

#[test]
fn non_finite_numbers_survive_losslessly() {
    let mut data = demo_site();
    let mut obj: SiteObject = data
        .objects
        .iter()
        .find(|o| o.record["portal_type"] == "Analysis")
        .unwrap()
        .clone();
    obj.record["Uncertainty"] = serde_json::json!({"$nonfinite": "NaN"});
    obj.record["Result"] = serde_json::json!({"$nonfinite": "-Infinity"});
    let uid = obj.record["uid"].as_str().unwrap().to_string();
    data.objects.retain(|o| o.record["uid"] != uid.as_str());
    data.objects.push(obj);
    let sb = start(data, vec![]);
    let dir = TestDir::new("nan");
    let mut o = options(&sb, &dir.join("snap"));
    o.include_types = vec!["Analysis".into()];
    run(&o).unwrap();
    let row = TableReader::read_all(&dir.join("snap"), &OBJECTS)
        .unwrap()
        .into_iter()
        .find(|r| r[0].as_str() == Some(uid.as_str()))
        .unwrap();
    let fields: serde_json::Value = serde_json::from_str(row[11].as_str().unwrap()).unwrap();
    assert_eq!(
        fields["Uncertainty"],
        serde_json::json!({"$nonfinite": "NaN"})
    );
    assert_eq!(
        fields["Result"],
        serde_json::json!({"$nonfinite": "-Infinity"})
    );
}

#[test]
fn an_extract_killed_with_sigkill_resumes_to_the_same_snapshot() {
    // Every page is slow, so the kill lands in the middle of the work.
    let faults = vec![FaultRule::new(
        Match::PathContains("/search".into()),
        FaultKind::Slow(Duration::from_millis(150)),
        10_000,
    )];
    let sb = start(demo_site(), faults);
    let dir = TestDir::new("sigkill");
    let out = dir.join("snap");
    let cmd = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_senaite-sync"));
        c.args(["extract", "--url", &sb.site_url(), "--out"])
            .arg(&out)
            .args(["-j", "2", "--page-size", "2", "-q"])
            .env("SENAITE_USER", "admin")
            .env("SENAITE_PASSWORD", "admin")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let mut child = cmd().spawn().unwrap();
    let pages = out.join(".work/units/pages");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let staged = crate::util::count_staged_units(&pages);
        if staged >= 3 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("manifest.json").exists(), "killed before the end");
    let staged = crate::util::count_staged_units(&pages);
    assert!(staged >= 3, "the first run staged {staged} units");
    let status = cmd().status().unwrap();
    assert!(status.success());
    assert_tables_equal(&demo_dir(), &out, OBJECT_TABLES);
    assert!(!out.join(".work").exists());
}
