//! Loading delta snapshots into sandbox destinations: load A, `diff A B --out D`, load D, and
//! the destination verifies equal to B (a result entered and submitted, a contact deactivated,
//! a contact deleted, an attachment moved and another replaced, a client created, a user
//! edited); the move keeps the uid; deletion policies (`deactivate` leaves a review-history
//! entry and reports samples that cannot be deactivated, `delete`, `keep`); every conflict
//! policy after an edit made in the destination through senaite.jsonapi's `update`, with both
//! versions in the report; a delta whose base was never loaded is refused; re-runs change
//! nothing; a load that fails half way resumes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use senaite_sync::diff::{self, DiffOptions, Rules};
use senaite_sync::load::delta::{Conflict, DeltaSummary, deletion_counts};
use senaite_sync::load::{self, Conflicts, Deletions, LoadOptions, LoadReport};
use senaite_sync::plan::{self, PlanOptions};
use senaite_sync::progress::Progress;
use senaite_sync::sandbox::{
    FaultKind, FaultRule, Match, ReceiverOptions, Sandbox, SandboxOptions, SiteData,
};
use senaite_sync::source::retry::RetryPolicy;
use senaite_sync::source::{Credentials, Secret};
use senaite_sync::verify::{self, VerifyOptions};

use crate::diff::{
    ATTACHMENT_3, ATTACHMENT_4, CLIENT_1, CONTACT_1, CONTACT_3, ECOLI, LABCONTACT_1, NEW_CLIENT,
    SAMPLE_W1, edit_fields, edited_demo, object, read_tables, write_tables,
};
use crate::util::TestDir;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo")
}

fn creds() -> Credentials {
    Credentials {
        user: "admin".into(),
        password: Secret::new("admin"),
    }
}

fn destination() -> Sandbox {
    let opts = SandboxOptions {
        receiver: Some(ReceiverOptions::default()),
        ..SandboxOptions::default()
    };
    Sandbox::start(SiteData::empty("senaite"), opts).unwrap()
}

fn opts(snap: &Path, sb: &Sandbox, state: &Path) -> LoadOptions {
    let mut o = LoadOptions::new(snap.to_path_buf(), &sb.site_url(), creds());
    o.state_dir = Some(state.to_path_buf());
    o.batch_size = 10;
    o.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(5),
    };
    o
}

fn load_with(
    snap: &Path,
    sb: &Sandbox,
    state: &Path,
    deletions: Deletions,
    conflicts: Conflicts,
) -> LoadReport {
    let mut o = opts(snap, sb, state);
    o.deletions = deletions;
    o.conflicts = conflicts;
    load::run(&o, &Progress::hidden()).unwrap()
}

fn delta_of(r: &LoadReport) -> &DeltaSummary {
    r.delta
        .as_ref()
        .expect("a delta load reports its delta part")
}

/// B: `diff`'s edited demo (a result entered and submitted, a contact deactivated and another
/// deleted, an attachment moved and another replaced, a client created, a user edited), made
/// extractable: the replaced file keeps its download URL, and the local role granted on a lab
/// contact (not a container: the demo's extract request does not read its roles) is left out.
fn lab_edits(b: &Path) {
    let tmp = b.with_file_name(format!("{}-raw", b.file_name().unwrap().to_string_lossy()));
    edited_demo(&tmp);
    let mut t = read_tables(&tmp);
    let a = read_tables(&demo());
    let fields_of = |t: &crate::diff::Tables, uid: &str| -> Value {
        let row = t["objects"]
            .iter()
            .find(|r| r[0].as_str() == Some(uid))
            .unwrap();
        serde_json::from_str(row[11].as_str().unwrap()).unwrap()
    };
    let mut file = fields_of(&a, ATTACHMENT_3)["AttachmentFile"].clone();
    assert!(file["download"].is_string());
    edit_fields(object(&mut t, ATTACHMENT_3), |f| {
        for k in ["filename", "sha256", "size"] {
            file[k] = f["AttachmentFile"][k].clone();
        }
        f.insert("AttachmentFile".into(), file);
    });
    t.get_mut("local_roles")
        .unwrap()
        .retain(|r| !(r[0].as_str() == Some(LABCONTACT_1) && r[1].as_str() == Some("labman")));
    write_tables(b, t, &tmp, &[]);
}

/// A (the demo), B (edited like a live lab), D = diff A B, and a destination holding A.
struct Setup {
    dir: TestDir,
    b: PathBuf,
    d: PathBuf,
    sb: Sandbox,
}

impl Setup {
    fn new(name: &str) -> Setup {
        Setup::with(name, lab_edits)
    }

    fn with(name: &str, make_b: impl FnOnce(&Path)) -> Setup {
        let dir = TestDir::new(name);
        let b = dir.join("b");
        make_b(&b);
        let d = dir.join("d");
        diff::run(&DiffOptions {
            old: demo(),
            new: b.clone(),
            rules: Rules::default(),
            out: Some(d.clone()),
            force: false,
            brief: false,
        })
        .unwrap();
        let sb = destination();
        let a = load_with(
            &demo(),
            &sb,
            &dir.join("state"),
            Deletions::Deactivate,
            Conflicts::Skip,
        );
        assert!(a.is_complete(), "{:?}", a.rejected);
        Setup { dir, b, d, sb }
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn load(&self, deletions: Deletions, conflicts: Conflicts) -> LoadReport {
        load_with(&self.d, &self.sb, &self.state(), deletions, conflicts)
    }

    fn plan(&self) -> plan::PlanReport {
        plan::run(&PlanOptions {
            snapshot: self.d.clone(),
            url: self.sb.site_url(),
            credentials: creds(),
        })
        .unwrap()
    }

    /// An edit in the destination, as a lab user makes it: senaite.jsonapi's `update`.
    fn edit_in_destination(&self, uid: &str, values: Value) {
        let mut body = values;
        body["uid"] = json!(uid);
        let answer: Value = reqwest::blocking::Client::new()
            .post(format!("{}/update", self.sb.api_url()))
            .basic_auth("admin", Some("admin"))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(answer["count"], 1, "{answer}");
    }

    fn verify_b(&self) -> verify::VerifyReport {
        verify::run(
            &VerifyOptions {
                snapshot: self.b.clone(),
                url: self.sb.site_url(),
                credentials: creds(),
                out: None,
                state_dir: Some(self.dir.join("verify-state")),
                jobs: 2,
                rules: None,
            },
            &Progress::hidden(),
        )
        .unwrap()
    }

    fn record(&self, uid: &str) -> Value {
        self.sb.object_record(uid).unwrap()
    }
}

fn assert_equal(v: &verify::VerifyReport) {
    assert!(
        v.is_equal(),
        "verify found differences: {:#?} {:?}",
        &v.differences[..v.differences.len().min(10)],
        v.principals
    );
}

fn history_actions(record: &Value) -> Vec<(String, String)> {
    record["workflow_info"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["review_history"].as_array().cloned().unwrap_or_default())
        .map(|h| {
            (
                h["action"].as_str().unwrap_or("").to_string(),
                h["actor"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_delta_load_reproduces_the_newer_snapshot_and_a_rerun_changes_nothing() {
    let s = Setup::new("delta-roundtrip");
    let old_path = s.record(ATTACHMENT_4)["path"].as_str().unwrap().to_string();

    let p = s.plan();
    assert_eq!(p.totals.create, 1, "{:?}", p.totals);
    assert_eq!(p.totals.conflict, 0, "{:?}", p.delta);
    assert_eq!(p.totals.blocked, 0, "{:?}", p.blocked);
    let pd = p.delta.as_ref().unwrap();
    assert_eq!(pd.moved.len(), 1, "{:?}", pd.moved);
    assert_eq!(pd.moved[0].uid, ATTACHMENT_4);
    assert_eq!(pd.moved[0].from, old_path);
    assert_eq!(deletion_counts(pd)["deactivate"], 1);
    assert!(plan::render_text(&p).contains(&format!("moved {ATTACHMENT_4}")));
    // plan wrote nothing.
    assert_eq!(s.record(ATTACHMENT_4)["path"].as_str().unwrap(), old_path);

    let r = s.load(Deletions::Delete, Conflicts::Skip);
    assert!(r.is_complete(), "{:?} {:?}", r.rejected, r.delta);
    let d = delta_of(&r);
    assert_eq!(r.totals.created, 1, "{:?}", r.totals);
    assert!(d.conflict_list.is_empty());
    assert_eq!(d.moved.len(), 1);
    assert_eq!(deletion_counts(d)["deleted"], 1);
    assert!(s.sb.object_record(CONTACT_1).is_none());
    assert!(s.sb.object_record(NEW_CLIENT).is_some());
    // Moved in place: same uid, the new path.
    let moved = s.record(ATTACHMENT_4);
    assert_eq!(
        moved["path"].as_str().unwrap(),
        "/senaite/clients/client-1/attachment-4"
    );
    assert_eq!(moved["parent_uid"].as_str(), Some(CLIENT_1));
    assert_eq!(
        s.record(ECOLI)["review_state"].as_str(),
        Some("to_be_verified")
    );
    assert_equal(&s.verify_b());

    // A re-run of the finished delta sends nothing.
    let applies = s.sb.hits_matching("/sync/apply");
    let removes = s.sb.hits_matching("/sync/remove");
    let again = s.load(Deletions::Delete, Conflicts::Skip);
    assert!(again.is_complete());
    assert_eq!(s.sb.hits_matching("/sync/apply"), applies);
    assert_eq!(s.sb.hits_matching("/sync/remove"), removes);
    assert_eq!(again.totals.created + again.totals.updated, 0);
    assert_eq!(
        again.totals.done_before + again.totals.unchanged,
        again.records
    );
    assert_equal(&s.verify_b());
    assert_eq!(s.plan().totals.unchanged, again.records);
}

#[test]
fn deactivation_writes_history_and_what_cannot_be_deactivated_is_reported() {
    // B also loses a whole sample (it and its analyses vanish).
    let s = Setup::with("delta-deactivate", |b| {
        let tmp = b.with_file_name("b-edited");
        lab_edits(&tmp);
        let mut t = read_tables(&tmp);
        let sample_path = t["objects"]
            .iter()
            .find(|r| r[0].as_str() == Some(SAMPLE_W1))
            .and_then(|r| r[2].as_str().map(str::to_string))
            .unwrap();
        let gone: Vec<String> = t["objects"]
            .iter()
            .filter(|r| {
                r[2].as_str()
                    .is_some_and(|p| p == sample_path || p.starts_with(&format!("{sample_path}/")))
            })
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect();
        for rows in t.values_mut() {
            rows.retain(|r| !r[0].as_str().is_some_and(|u| gone.contains(&u.to_string())));
        }
        write_tables(b, t, &tmp, &[]);
    });
    let before = history_actions(&s.record(CONTACT_1)).len();
    let r = s.load(Deletions::Deactivate, Conflicts::Skip);
    let d = delta_of(&r);
    let counts = deletion_counts(d);
    assert_eq!(counts["deactivated"], 1, "{:?}", d.deleted);
    assert!(counts["not_deactivatable"] >= 1, "{:?}", d.deleted);
    let sample = d.deleted.iter().find(|x| x.uid == SAMPLE_W1).unwrap();
    assert_eq!(sample.outcome, "not_deactivatable");
    assert!(
        sample
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("deactivate"),
        "{sample:?}"
    );
    // Reported, not silently skipped: the load is not complete.
    assert!(!r.is_complete());
    let text = senaite_sync::cli::render_load(&r);
    assert!(text.contains("not_deactivatable"), "{text}");
    // The contact is inactive with a real history entry by the loading user.
    let contact = s.record(CONTACT_1);
    assert_eq!(contact["review_state"].as_str(), Some("inactive"));
    let actions = history_actions(&contact);
    assert_eq!(actions.len(), before + 1);
    assert!(
        actions.contains(&("deactivate".into(), "admin".into())),
        "{actions:?}"
    );
    // The sample is still there, untouched.
    assert!(s.sb.object_record(SAMPLE_W1).is_some());
    // A contact the source deactivated arrives deactivated with the source's history.
    assert_eq!(
        s.record(CONTACT_3)["review_state"].as_str(),
        Some("inactive")
    );

    // Re-run: nothing deactivated twice.
    let again = s.load(Deletions::Deactivate, Conflicts::Skip);
    let d2 = delta_of(&again);
    let c2 = deletion_counts(d2);
    assert_eq!(c2.get("deactivated"), Some(&1), "{:?}", d2.deleted);
    assert_eq!(history_actions(&s.record(CONTACT_1)).len(), before + 1);
}

#[test]
fn keep_leaves_deleted_objects_and_reports_them() {
    let s = Setup::new("delta-keep");
    let r = s.load(Deletions::Keep, Conflicts::Skip);
    assert!(r.is_complete(), "{:?}", r.delta);
    let d = delta_of(&r);
    assert_eq!(deletion_counts(d)["kept"], 1);
    assert_eq!(s.record(CONTACT_1)["review_state"].as_str(), Some("active"));
    assert_eq!(s.sb.hits_matching("/sync/remove"), 0);
}

fn only_conflict(d: &DeltaSummary) -> &Conflict {
    assert_eq!(d.conflict_list.len(), 1, "{:#?}", d.conflict_list);
    &d.conflict_list[0]
}

const EDIT: &str = "99.9";

#[test]
fn a_conflict_is_skipped_by_default_and_reported_with_both_versions() {
    let s = Setup::new("delta-conflict-skip");
    s.edit_in_destination(ECOLI, json!({"Result": EDIT}));

    let p = s.plan();
    assert_eq!(p.totals.conflict, 1);
    let pc = only_conflict(p.delta.as_ref().unwrap());
    assert_eq!(pc.uid, ECOLI);

    let r = s.load(Deletions::Delete, Conflicts::Skip);
    assert!(!r.is_complete(), "a skipped conflict needs attention");
    let c = only_conflict(delta_of(&r));
    assert_eq!((c.uid.as_str(), c.kind.as_str()), (ECOLI, "change"));
    assert_eq!(c.resolution, "skipped");
    assert!(
        c.reason.contains("edited in the destination"),
        "{}",
        c.reason
    );
    assert!(
        c.differing.contains(&"Result".to_string()),
        "{:?}",
        c.differing
    );
    assert_eq!(c.source["fields"]["Result"], json!("12.5"));
    assert_eq!(c.destination["fields"]["Result"], json!(EDIT));
    let text = senaite_sync::cli::render_load(&r);
    assert!(text.contains("CONFLICT") && text.contains(EDIT), "{text}");
    let json_text = serde_json::to_string(&r).unwrap();
    assert!(json_text.contains(EDIT) && json_text.contains("12.5"));
    // Nothing written for it: the destination's edit stands, the rest of the delta arrived.
    assert_eq!(s.record(ECOLI)["Result"], json!(EDIT));
    assert!(s.sb.object_record(NEW_CLIENT).is_some());
    // Still reported on a re-run (nothing was decided), and still nothing written.
    let again = s.load(Deletions::Delete, Conflicts::Skip);
    assert_eq!(only_conflict(delta_of(&again)).uid, ECOLI);
    assert_eq!(s.record(ECOLI)["Result"], json!(EDIT));
}

#[test]
fn source_wins_applies_the_delta_and_the_states_agree_again() {
    let s = Setup::new("delta-conflict-source");
    s.edit_in_destination(ECOLI, json!({"Result": EDIT}));
    let r = s.load(Deletions::Delete, Conflicts::SourceWins);
    assert!(r.is_complete(), "{:?} {:?}", r.rejected, r.delta);
    let c = only_conflict(delta_of(&r));
    assert_eq!(c.resolution, "source-wins");
    assert_eq!(c.destination["fields"]["Result"], json!(EDIT));
    assert_eq!(s.record(ECOLI)["Result"], json!("12.5"));
    assert_equal(&s.verify_b());
    // No conflict any more, under any policy.
    let p = s.plan();
    assert_eq!(p.totals.conflict, 0);
    let again = s.load(Deletions::Delete, Conflicts::Skip);
    assert!(delta_of(&again).conflict_list.is_empty());
    assert!(again.is_complete());
}

#[test]
fn destination_wins_keeps_the_edit_and_is_not_reported_again() {
    let s = Setup::new("delta-conflict-destination");
    s.edit_in_destination(ECOLI, json!({"Result": EDIT}));
    let r = s.load(Deletions::Delete, Conflicts::DestinationWins);
    assert!(r.is_complete(), "{:?} {:?}", r.rejected, r.delta);
    let c = only_conflict(delta_of(&r));
    assert_eq!(c.resolution, "destination-wins");
    assert_eq!(c.source["fields"]["Result"], json!("12.5"));
    assert_eq!(s.record(ECOLI)["Result"], json!(EDIT));
    // Accepted: neither a plan nor a re-run (even under skip) reports it again.
    let p = s.plan();
    assert_eq!(p.totals.conflict, 0, "{:?}", p.delta);
    let again = s.load(Deletions::Delete, Conflicts::Skip);
    assert!(delta_of(&again).conflict_list.is_empty());
    assert!(again.is_complete());
    assert_eq!(s.record(ECOLI)["Result"], json!(EDIT));
}

#[test]
fn deleting_an_object_edited_in_the_destination_is_a_conflict() {
    let s = Setup::new("delta-conflict-delete");
    s.edit_in_destination(CONTACT_1, json!({"JobTitle": "Head of QA"}));
    let r = s.load(Deletions::Deactivate, Conflicts::Skip);
    let c = only_conflict(delta_of(&r));
    assert_eq!((c.uid.as_str(), c.kind.as_str()), (CONTACT_1, "delete"));
    assert_eq!(c.source["deleted"], json!(true));
    assert_eq!(c.destination["fields"]["JobTitle"], json!("Head of QA"));
    let contact = s.record(CONTACT_1);
    assert_eq!(contact["review_state"].as_str(), Some("active"));
    // source-wins deletes (here: deactivates) it after all.
    let r = s.load(Deletions::Deactivate, Conflicts::SourceWins);
    assert_eq!(deletion_counts(delta_of(&r))["deactivated"], 1);
    assert_eq!(
        s.record(CONTACT_1)["review_state"].as_str(),
        Some("inactive")
    );
}

#[test]
fn a_delta_whose_base_was_never_loaded_is_refused_naming_the_objects() {
    let dir = TestDir::new("delta-no-base");
    let b = dir.join("b");
    edited_demo(&b);
    let d = dir.join("d");
    diff::run(&DiffOptions {
        old: demo(),
        new: b,
        rules: Rules::default(),
        out: Some(d.clone()),
        force: false,
        brief: false,
    })
    .unwrap();
    let sb = destination();
    let p = plan::run(&PlanOptions {
        snapshot: d.clone(),
        url: sb.site_url(),
        credentials: creds(),
    })
    .unwrap();
    assert!(p.totals.blocked > 0);
    assert!(
        p.blocked
            .iter()
            .any(|x| x.uid == ECOLI && x.reason.contains("base was never loaded")),
        "{:?}",
        p.blocked
    );
    let err = load::run(&opts(&d, &sb, &dir.join("state")), &Progress::hidden()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("never loaded") && msg.contains("/senaite/"),
        "{msg}"
    );
    assert_eq!(sb.object_count(), 0, "a refused delta wrote something");
    assert_eq!(sb.hits_matching("/sync/apply"), 0);
}

#[test]
fn a_delta_load_that_fails_half_way_resumes() {
    let s = Setup::new("delta-resume");
    s.sb.add_fault(
        FaultRule::new(
            Match::PathContains("/sync/apply".into()),
            FaultKind::Status(503),
            3,
        )
        .after(1),
    );
    let err = load::run(
        &{
            let mut o = opts(&s.d, &s.sb, &s.state());
            o.deletions = Deletions::Delete;
            o.batch_size = 2;
            o
        },
        &Progress::hidden(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("run the same command again"),
        "{err}"
    );
    let r = s.load(Deletions::Delete, Conflicts::Skip);
    assert!(r.is_complete(), "{:?} {:?}", r.rejected, r.delta);
    assert!(r.totals.done_before > 0, "{:?}", r.totals);
    assert!(delta_of(&r).conflict_list.is_empty());
    assert_equal(&s.verify_b());
}
