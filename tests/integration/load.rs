//! `plan`, `load` and `verify` against sandbox destinations (an empty site with the receiver):
//! the demo snapshot loads completely and verifies equal; a second load changes nothing; a
//! rejected record is reported and `--retry-failed` replays only it; a connection dropped after
//! the destination committed, a 503 that outlasts the retries, and a SIGKILL of the binary all
//! end, after a re-run, in the same destination without duplicates; a destination without the
//! receiver is refused with install instructions; plan blocks types the destination lacks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use senaite_sync::Error;
use senaite_sync::load::{self, LoadOptions, LoadReport};
use senaite_sync::plan::{self, PlanOptions};
use senaite_sync::progress::Progress;
use senaite_sync::sandbox::{
    FaultKind, FaultRule, Match, ReceiverOptions, Sandbox, SandboxOptions, SiteData,
};
use senaite_sync::snapshot::Snapshot;
use senaite_sync::source::retry::RetryPolicy;
use senaite_sync::source::{Credentials, Secret};
use senaite_sync::verify::{self, VerifyOptions, VerifyReport};

use crate::util::TestDir;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo")
}

fn demo_objects() -> usize {
    Snapshot::open(&demo()).unwrap().object_count() as usize
}

fn creds() -> Credentials {
    Credentials {
        user: "admin".into(),
        password: Secret::new("admin"),
    }
}

fn destination_with(receiver: ReceiverOptions) -> Sandbox {
    let opts = SandboxOptions {
        receiver: Some(receiver),
        ..SandboxOptions::default()
    };
    Sandbox::start(SiteData::empty("senaite"), opts).unwrap()
}

fn destination() -> Sandbox {
    destination_with(ReceiverOptions::default())
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(5),
    }
}

fn load_opts(sb: &Sandbox, state: &Path) -> LoadOptions {
    let mut o = LoadOptions::new(demo(), &sb.site_url(), creds());
    o.state_dir = Some(state.to_path_buf());
    o.batch_size = 10;
    o.retry = fast_retry();
    o
}

fn load_into(sb: &Sandbox, state: &Path) -> LoadReport {
    load::run(&load_opts(sb, state), &Progress::hidden()).unwrap()
}

fn verify_against(sb: &Sandbox, state: &Path) -> VerifyReport {
    verify::run(
        &VerifyOptions {
            snapshot: demo(),
            url: sb.site_url(),
            credentials: creds(),
            out: None,
            state_dir: Some(state.to_path_buf()),
            jobs: 2,
            rules: None,
        },
        &Progress::hidden(),
    )
    .unwrap()
}

fn assert_equal(v: &VerifyReport) {
    assert!(
        v.is_equal(),
        "verify found differences: {:#?} {:?}",
        &v.differences[..v.differences.len().min(10)],
        v.principals
    );
    assert_eq!(v.summary.equal as usize, demo_objects());
}

fn plan_of(sb: &Sandbox) -> plan::PlanReport {
    plan::run(&PlanOptions {
        snapshot: demo(),
        url: sb.site_url(),
        credentials: creds(),
    })
    .unwrap()
}

#[test]
fn demo_loads_completely_verifies_equal_and_a_second_load_changes_nothing() {
    let sb = destination();
    let dir = TestDir::new("load-roundtrip");
    let n = demo_objects() as u64;

    let p = plan_of(&sb);
    assert_eq!(p.totals.create, n, "{:?}", p.blocked);
    assert_eq!(p.totals.blocked, 0);
    assert!(p.unresolved.is_empty(), "{:?}", p.unresolved);

    let r = load_into(&sb, &dir.join("state"));
    assert!(r.is_complete(), "{:?}", r.rejected);
    assert_eq!(r.totals.created + r.totals.updated, n);
    assert_eq!(r.users_needing_password_reset, vec!["analyst1", "labman"]);
    assert!(r.blobs_uploaded > 0 && !r.counters.is_empty());
    assert_eq!(sb.object_count() as u64, n);
    assert!(dir.join("state/report.json").is_file());
    assert_equal(&verify_against(&sb, &dir.join("state")));

    // Everything unchanged now, in the plan and in a load with a fresh ledger.
    let p = plan_of(&sb);
    assert_eq!(p.totals.unchanged, n, "{:?}", p.totals);
    let again = load_into(&sb, &dir.join("state2"));
    assert_eq!(again.totals.unchanged, n, "{:?}", again.totals);
    assert_eq!(again.blobs_uploaded, 0, "blobs were sent twice");
    // The same ledger: nothing is even sent.
    let hits = sb.hits_matching("/sync/apply");
    let resumed = load_into(&sb, &dir.join("state"));
    assert_eq!(resumed.totals.done_before, n);
    assert_eq!(sb.hits_matching("/sync/apply"), hits);
    assert_eq!(sb.object_count() as u64, n);

    // An edit in the destination makes the plan say "update" for that object only.
    let uid = "19d6c02879fa47da9685067a80024e0e";
    assert!(sb.touch(uid, "2030-01-01T00:00:00+00:00"));
    let p = plan_of(&sb);
    assert_eq!(p.totals.update, 1);
    assert_eq!(p.by_type["AnalysisRequest"].update, 1);
}

#[test]
fn a_rejected_record_is_reported_and_retry_failed_replays_only_it() {
    let sb = destination();
    let dir = TestDir::new("load-rejected");
    let state = dir.join("state");
    let bad = "0367359c393e44e1b6b583d9444bd1b6"; // an attachment
    let field = "19d6c02879fa47da9685067a80024e0e"; // a sample
    sb.add_fault(FaultRule::reject_record(
        bad,
        "Invalid value for AttachmentType",
        1,
    ));
    sb.add_fault(FaultRule::reject_field(
        field,
        "ClientSampleID",
        "ClientSampleID is not unique",
        1,
    ));
    let r = load_into(&sb, &state);
    assert!(!r.is_complete());
    assert_eq!(r.totals.failed, 1);
    assert_eq!(r.totals.partial, 1);
    assert_eq!(r.rejected.len(), 2);
    let rej = r.rejected.iter().find(|x| x.uid == bad).unwrap();
    assert_eq!(rej.status, "failed");
    assert_eq!(
        rej.error.as_deref(),
        Some("Invalid value for AttachmentType")
    );
    let part = r.rejected.iter().find(|x| x.uid == field).unwrap();
    assert_eq!(
        part.field_errors["ClientSampleID"],
        "ClientSampleID is not unique"
    );
    assert!(
        sb.object_record(bad).is_none(),
        "a failed record left a trace"
    );
    let text = senaite_sync::cli::render_load(&r);
    assert!(
        text.contains("Invalid value for AttachmentType") && text.contains("--retry-failed"),
        "{text}"
    );

    // A plain re-run does not replay failures; --retry-failed replays exactly the two.
    let hits = sb.hits_matching("/sync/apply");
    let rerun = load_into(&sb, &state);
    assert_eq!(sb.hits_matching("/sync/apply"), hits);
    assert_eq!(rerun.rejected.len(), 2);
    let mut o = load_opts(&sb, &state);
    o.retry_failed = true;
    let retried = load::run(&o, &Progress::hidden()).unwrap();
    assert!(retried.is_complete(), "{:?}", retried.rejected);
    assert_eq!(
        retried.totals.created + retried.totals.updated,
        2,
        "{:?}",
        retried.totals
    );
    assert_equal(&verify_against(&sb, &state));
}

#[test]
fn values_the_destination_has_no_field_for_are_reported_per_type_on_every_run() {
    let mut receiver = ReceiverOptions::default();
    receiver.unknown_fields.insert(
        "AnalysisRequest".into(),
        vec![
            "ClientSampleID".into(),
            "SamplePoint".into(),
            "NoSuchKey".into(),
        ],
    );
    let sb = destination_with(receiver);
    let dir = TestDir::new("load-unknown-fields");
    let state = dir.join("state");
    let n = demo_objects() as u64;
    let r = load_into(&sb, &state);
    // Written as far as the destination goes: not a rejection, and the status is unchanged.
    assert!(r.is_complete(), "{:?}", r.rejected);
    assert_eq!(r.totals.created + r.totals.updated, n);
    // Every sample holds a ClientSampleID, four a sample point; the key no record holds is not
    // listed, nor any other type.
    let want: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> = [(
        "AnalysisRequest".to_string(),
        [
            ("ClientSampleID".to_string(), 6),
            ("SamplePoint".to_string(), 4),
        ]
        .into(),
    )]
    .into();
    assert_eq!(r.unknown_fields, want);
    let sample = "19d6c02879fa47da9685067a80024e0e";
    let stored = sb.object_record(sample).unwrap();
    assert!(
        stored.get("ClientSampleID").is_none_or(|v| v.is_null()),
        "{stored}"
    );
    let text = senaite_sync::cli::render_load(&r);
    assert!(
        text.contains("AnalysisRequest: ClientSampleID (6 records), SamplePoint (4 records)")
            && text.contains("without the 2 fields listed above"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        json["unknown_fields"]["AnalysisRequest"]["ClientSampleID"],
        6
    );

    // The same ledger: nothing is sent, the report still says so (from the ledger).
    let hits = sb.hits_matching("/sync/apply");
    let again = load_into(&sb, &state);
    assert_eq!(sb.hits_matching("/sync/apply"), hits);
    assert_eq!(again.totals.done_before, n);
    assert_eq!(again.unknown_fields, want);
    // A fresh ledger: every record answers unchanged, and still lists them.
    let fresh = load_into(&sb, &dir.join("state2"));
    assert_eq!(fresh.totals.unchanged, n, "{:?}", fresh.totals);
    assert_eq!(fresh.unknown_fields, want);
    // verify shows what did not arrive.
    let v = verify_against(&sb, &state);
    assert!(
        v.differences
            .iter()
            .any(|d| d.uid == sample && d.key == "ClientSampleID"),
        "{:#?}",
        &v.differences[..v.differences.len().min(10)]
    );
}

#[test]
fn a_connection_dropped_after_commit_duplicates_nothing() {
    let sb = destination();
    let dir = TestDir::new("load-drop");
    sb.add_fault(
        FaultRule::new(
            Match::PathContains("/sync/apply".into()),
            FaultKind::DropAfterCommit,
            1,
        )
        .after(2),
    );
    let r = load_into(&sb, &dir.join("state"));
    assert!(r.is_complete(), "{:?}", r.rejected);
    // The repeated batch was answered "unchanged": every object exists once.
    assert!(r.totals.unchanged > 0, "{:?}", r.totals);
    assert_eq!(sb.object_count(), demo_objects());
    assert_equal(&verify_against(&sb, &dir.join("state")));
}

#[test]
fn a_batch_that_cannot_be_delivered_stops_the_load_and_a_rerun_resumes() {
    let sb = destination();
    let dir = TestDir::new("load-503");
    let state = dir.join("state");
    // The 4th apply request and its retries answer 503.
    sb.add_fault(
        FaultRule::new(
            Match::PathContains("/sync/apply".into()),
            FaultKind::Status(503),
            3,
        )
        .after(3),
    );
    let err = load::run(&load_opts(&sb, &state), &Progress::hidden()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Load { .. }), "{msg}");
    assert!(msg.contains("run the same command again"), "{msg}");
    assert!(msg.contains("503"), "{msg}");
    let r = load_into(&sb, &state);
    assert!(r.is_complete());
    assert_eq!(r.totals.done_before, 30, "{:?}", r.totals);
    assert_equal(&verify_against(&sb, &state));
}

#[test]
fn a_killed_load_resumes_without_redoing_or_duplicating() {
    let sb = destination();
    // Slow answers so the kill lands in the middle.
    sb.add_fault(FaultRule::new(
        Match::PathContains("/sync/apply".into()),
        FaultKind::Slow(Duration::from_millis(40)),
        u32::MAX,
    ));
    let dir = TestDir::new("load-kill");
    let state = dir.join("state");
    let cmd = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_senaite-sync"));
        c.args(["--progress", "never", "load"])
            .arg(demo())
            .args(["--url", &sb.site_url(), "--state"])
            .arg(&state)
            .args(["--batch-size", "2"])
            .env("SENAITE_USER", "admin")
            .env("SENAITE_PASSWORD", "admin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut child = cmd().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let ledger = state.join("ledger.jsonl");
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load ended before it could be killed"
        );
        let lines = std::fs::read_to_string(&ledger)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 20 {
            child.kill().unwrap();
            child.wait().unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "no progress within 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = cmd().status().unwrap();
    assert!(status.success(), "the resumed load exited {status}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("report.json")).unwrap()).unwrap();
    assert!(
        report["totals"]["done_before"].as_u64().unwrap() >= 20,
        "{}",
        report["totals"]
    );
    assert_eq!(sb.object_count(), demo_objects());
    assert_equal(&verify_against(&sb, &state));
}

#[test]
fn a_destination_without_the_receiver_is_refused_with_install_instructions() {
    let sb = Sandbox::start(SiteData::empty("senaite"), SandboxOptions::default()).unwrap();
    let dir = TestDir::new("load-no-receiver");
    let err = load::run(&load_opts(&sb, &dir.join("state")), &Progress::hidden()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Receiver { .. }), "{msg}");
    assert!(
        msg.contains("pip install") && msg.contains("companion"),
        "{msg}"
    );
    assert_eq!(sb.hits_matching("/sync/apply"), 0);
    // plan says so too, and blocks everything.
    let p = plan_of(&sb);
    assert_eq!(p.totals.blocked as usize, demo_objects());
    assert!(p.receiver_problem.is_some() && p.receiver.is_none());
}

#[test]
fn plan_blocks_types_the_destination_lacks() {
    let snap_types: Vec<String> = {
        let set = senaite_sync::load::records::read(&Snapshot::open(&demo()).unwrap(), "/senaite")
            .unwrap();
        load::portal_types(&set)
            .into_iter()
            .filter(|t| *t != "Attachment")
            .map(str::to_string)
            .collect()
    };
    let sb = destination_with(ReceiverOptions {
        portal_types: Some(snap_types),
        ..ReceiverOptions::default()
    });
    let p = plan_of(&sb);
    assert!(p.by_type["Attachment"].blocked > 0);
    assert_eq!(p.by_type["Attachment"].create, 0);
    assert!(
        p.blocked
            .iter()
            .all(|b| b.portal_type == "Attachment"
                && b.reason.contains("missing in the destination")),
        "{:?}",
        p.blocked
    );
    assert!(senaite_sync::plan::render_text(&p).contains("blocked: "));
}

#[test]
fn concurrent_batches_wait_for_their_parents_and_verify_equal() {
    let sb = destination();
    let dir = TestDir::new("load-jobs");
    let state = dir.join("state");
    // Slow answers: batches overlap for real.
    sb.add_fault(FaultRule::new(
        Match::PathContains("/sync/apply".into()),
        FaultKind::Slow(Duration::from_millis(15)),
        u32::MAX,
    ));
    let mut o = load_opts(&sb, &state);
    o.jobs = 4;
    o.batch_size = 3;
    let r = load::run(&o, &Progress::hidden()).unwrap();
    // A batch sent before its parents' batch was answered would fail ("container not found").
    assert!(r.is_complete(), "{:?}", r.rejected);
    assert_eq!(r.totals.failed, 0);
    assert_eq!(sb.object_count(), demo_objects());
    assert_equal(&verify_against(&sb, &state));
}

#[test]
fn a_failing_batch_under_concurrency_stops_the_load_and_a_rerun_resumes() {
    let sb = destination();
    let dir = TestDir::new("load-jobs-503");
    let state = dir.join("state");
    // The 6th apply request answers 503, and is not retried: its batch fails while others are
    // in flight.
    sb.add_fault(
        FaultRule::new(
            Match::PathContains("/sync/apply".into()),
            FaultKind::Status(503),
            1,
        )
        .after(5),
    );
    let mut o = load_opts(&sb, &state);
    o.jobs = 3;
    o.batch_size = 4;
    o.retry.max_attempts = 1;
    let err = load::run(&o, &Progress::hidden()).unwrap_err();
    assert!(matches!(err, Error::Load { .. }), "{err}");
    let r = load::run(&o, &Progress::hidden()).unwrap();
    assert!(r.is_complete(), "{:?}", r.rejected);
    assert!(r.totals.done_before > 0);
    assert_eq!(sb.object_count(), demo_objects());
    assert_equal(&verify_against(&sb, &state));
}
