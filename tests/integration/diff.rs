//! `diff` and delta snapshots: the demo snapshot against a copy edited the way a live lab edits
//! (a result entered, a sample transitioned, a contact deleted and another deactivated, an
//! attachment moved and another replaced, local roles granted, a client created, a user edited),
//! the command line's output and exit codes, the rules file, the delta (a valid snapshot naming
//! its base; base + delta reproduces the newer snapshot), and properties over random snapshots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use serde_json::{Value, json};

use senaite_sync::diff::{self, DiffOptions, DiffReport, Rules, Status, apply_delta};
use senaite_sync::jsonx;
use senaite_sync::snapshot::Snapshot;
use senaite_sync::snapshot::blobs;
use senaite_sync::snapshot::manifest::Manifest;
use senaite_sync::snapshot::table::{
    ALL_TABLES, BLOBS, Cell, LOCAL_ROLES, OBJECTS, TableReader, USERS, WORKFLOW_HISTORY,
    WORKFLOW_STATES,
};
use senaite_sync::snapshot::writer::{SnapshotParts, SnapshotWriter};

use crate::util::{TestDir, run_expect};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_senaite-sync"))
}

pub(crate) type Tables = BTreeMap<&'static str, Vec<Vec<Cell>>>;

pub(crate) fn read_tables(snap: &Path) -> Tables {
    ALL_TABLES
        .iter()
        .map(|d| (d.name, TableReader::read_all(snap, d).unwrap()))
        .collect()
}

/// Writes `tables` as a snapshot (rows re-sorted by uid, stable), with the blob files of `blobs_from`
/// plus `extra_blobs`.
pub(crate) fn write_tables(
    dir: &Path,
    mut tables: Tables,
    blobs_from: &Path,
    extra_blobs: &[&[u8]],
) {
    let mut w = SnapshotWriter::create(dir).unwrap();
    let mut counts = BTreeMap::new();
    for def in ALL_TABLES {
        let rows = tables.get_mut(def.name).unwrap();
        rows.sort_by(|a, b| a[0].as_str().cmp(&b[0].as_str()));
        for r in rows.iter() {
            if def.name == "objects" {
                *counts
                    .entry(r[1].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
            w.table(def).unwrap().push(r.clone()).unwrap();
        }
    }
    let src = blobs_from.join("blobs");
    if src.is_dir() {
        for sub in std::fs::read_dir(&src).unwrap() {
            for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
                let bytes = std::fs::read(f.unwrap().path()).unwrap();
                blobs::store_stream(dir, &mut &bytes[..], "test").unwrap();
            }
        }
    }
    for b in extra_blobs {
        blobs::store_stream(dir, &mut &b[..], "test").unwrap();
    }
    let m = Snapshot::open_unverified(blobs_from).unwrap().manifest;
    w.finish(SnapshotParts {
        source: m.source,
        request: m.request,
        started_at: m.started_at,
        counts,
        blobs: Default::default(),
        notes: m.notes,
    })
    .unwrap();
}

pub(crate) const ECOLI: &str = "240db02c9d5d4142a65e17a4333dda7b";
pub(crate) const CONTACT_1: &str = "3826b58bf2604ce788eaa9f7a1e10f6b";
pub(crate) const CONTACT_3: &str = "570c144365224186bd48dd1e446f42bf";
pub(crate) const ATTACHMENT_3: &str = "5fe5f0627c8b4360bbc79741e02fe538";
pub(crate) const ATTACHMENT_4: &str = "23d1be7c9e2b43b5b72db7aad4d9eb29";
pub(crate) const SAMPLE_W1: &str = "acc7c18bf2b140638fd6d8293872b724";
pub(crate) const LABCONTACT_1: &str = "0932f6de96f1435fb30befd632d7e47e";
pub(crate) const CLIENT_1: &str = "6f1d98a82d7b44d29e3153f29fe73d95";
pub(crate) const NEW_CLIENT: &str = "ffffffffffffffffffffffffffffffff";

pub(crate) fn object<'a>(t: &'a mut Tables, uid: &str) -> &'a mut Vec<Cell> {
    t.get_mut("objects")
        .unwrap()
        .iter_mut()
        .find(|r| r[0].as_str() == Some(uid))
        .unwrap()
}

/// Edits an object's fields (and the columns mirrored from them), recomputing content_hash.
pub(crate) fn edit_fields(
    row: &mut [Cell],
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) {
    let mut fields: Value = serde_json::from_str(row[11].as_str().unwrap()).unwrap();
    edit(fields.as_object_mut().unwrap());
    for (i, key) in [
        (2, "path"),
        (3, "parent_uid"),
        (4, "parent_path"),
        (5, "id"),
        (6, "title"),
        (9, "review_state"),
    ] {
        if let Some(v) = fields.get(key).and_then(Value::as_str) {
            row[i] = Cell::s(v);
        }
    }
    let text = String::from_utf8(jsonx::canonical(&fields)).unwrap();
    row[10] = Cell::s(jsonx::sha256_hex(text.as_bytes()));
    row[11] = Cell::s(text);
}

fn history_row(uid: &str, wf: &str, seq: i64, action: &str, state: &str) -> Vec<Cell> {
    vec![
        Cell::s(uid),
        Cell::s(wf),
        Cell::Int(Some(seq)),
        Cell::s(action),
        Cell::s("admin"),
        Cell::s(""),
        Cell::s(state),
        Cell::s("2026-12-01T10:00:00.000001"),
        Cell::s("2026-12-01 10:00:00"),
        Cell::s("{}"),
    ]
}

pub(crate) fn append_history(t: &mut Tables, uid: &str, action: &str, state: &str) {
    let rows = t.get_mut("workflow_history").unwrap();
    let last = rows
        .iter()
        .rposition(|r| r[0].as_str() == Some(uid))
        .unwrap();
    let wf = rows[last][1].as_str().unwrap().to_string();
    let seq = rows[last][2].as_int().unwrap() + 1;
    rows.insert(last + 1, history_row(uid, &wf, seq, action, state));
    for s in t.get_mut("workflow_states").unwrap() {
        if s[0].as_str() == Some(uid) {
            s[2] = Cell::s(state);
        }
    }
}

pub(crate) const NEW_BLOB: &[u8] = b"%PDF-1.4 a corrected report";

/// The demo edited as a lab would between two extracts.
pub(crate) fn edited_demo(dir: &Path) {
    let mut t = read_tables(&demo());
    edit_fields(object(&mut t, ECOLI), |f| {
        f.insert("Result".into(), json!("12.5"));
        f.insert("review_state".into(), json!("to_be_verified"));
    });
    append_history(&mut t, ECOLI, "submit", "to_be_verified");
    edit_fields(object(&mut t, CONTACT_3), |f| {
        f.insert("review_state".into(), json!("inactive"));
    });
    append_history(&mut t, CONTACT_3, "deactivate", "inactive");
    for def in ALL_TABLES.iter().filter(|d| d.columns[0].0 == "uid") {
        t.get_mut(def.name)
            .unwrap()
            .retain(|r| r[0].as_str() != Some(CONTACT_1));
    }
    edit_fields(object(&mut t, ATTACHMENT_4), |f| {
        f.insert(
            "path".into(),
            json!("/senaite/clients/client-1/attachment-4"),
        );
        f.insert("parent_path".into(), json!("/senaite/clients/client-1"));
        f.insert("parent_uid".into(), json!(CLIENT_1));
        f.insert(
            "getPhysicalPath".into(),
            json!(["", "senaite", "clients", "client-1", "attachment-4"]),
        );
    });
    let sha = jsonx::sha256_hex(NEW_BLOB);
    edit_fields(object(&mut t, ATTACHMENT_3), |f| {
        f.insert(
            "AttachmentFile".into(),
            json!({"filename": "report.pdf", "sha256": sha, "size": NEW_BLOB.len()}),
        );
    });
    for b in t.get_mut("blobs").unwrap() {
        if b[0].as_str() == Some(ATTACHMENT_3) {
            b[4] = Cell::Int(Some(NEW_BLOB.len() as i64));
            b[5] = Cell::s(&sha);
        }
    }
    edit_fields(object(&mut t, SAMPLE_W1), |f| {
        f.insert("getProgress".into(), json!(42));
    });
    t.get_mut("local_roles").unwrap().push(vec![
        Cell::s(LABCONTACT_1),
        Cell::s("labman"),
        Cell::s("user"),
        Cell::StrList(vec!["Owner".into()]),
        Cell::StrList(vec![]),
        Cell::Bool(Some(true)),
    ]);
    let mut client = object(&mut t, CLIENT_1).clone();
    client[0] = Cell::s(NEW_CLIENT);
    edit_fields(&mut client, |f| {
        f.insert("uid".into(), json!(NEW_CLIENT));
        f.insert("path".into(), json!("/senaite/clients/client-9"));
        f.insert("id".into(), json!("client-9"));
        f.insert("title".into(), json!("Created Later Ltd"));
    });
    t.get_mut("objects").unwrap().push(client);
    for u in t.get_mut("users").unwrap() {
        if u[0].as_str() == Some("labman") {
            u[2] = Cell::s("lisa@new.example");
        }
    }
    write_tables(dir, t, &demo(), &[NEW_BLOB]);
}

fn run_diff(old: &Path, new: &Path, out: Option<PathBuf>) -> DiffReport {
    diff::run(&DiffOptions {
        old: old.to_path_buf(),
        new: new.to_path_buf(),
        rules: Rules::default(),
        out,
        force: false,
        brief: false,
    })
    .unwrap()
}

fn status_of(r: &DiffReport, uid: &str) -> Option<(Status, Option<String>)> {
    r.objects
        .iter()
        .find(|o| o.uid == uid)
        .map(|o| (o.status, o.reason.clone()))
}

#[test]
fn a_snapshot_equals_itself() {
    let out = run_expect(
        {
            let mut c = bin();
            c.arg("diff").arg(demo()).arg(demo());
            c
        },
        0,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No differences."), "{text}");
}

#[test]
fn an_edited_copy_shows_every_kind_of_change() {
    let dir = TestDir::new("diff-edited");
    let new = dir.join("new");
    edited_demo(&new);
    let r = run_diff(&demo(), &new, None);
    assert_eq!(status_of(&r, NEW_CLIENT), Some((Status::Created, None)));
    assert_eq!(
        status_of(&r, CONTACT_1),
        Some((Status::Deleted, Some("vanished".into())))
    );
    assert_eq!(
        status_of(&r, CONTACT_3),
        Some((Status::Deleted, Some("deactivated".into())))
    );
    assert_eq!(status_of(&r, ATTACHMENT_4), Some((Status::Moved, None)));
    assert_eq!(status_of(&r, ECOLI), Some((Status::Modified, None)));
    assert_eq!(status_of(&r, ATTACHMENT_3), Some((Status::Modified, None)));
    assert_eq!(status_of(&r, LABCONTACT_1), Some((Status::Modified, None)));
    assert_eq!(
        status_of(&r, SAMPLE_W1),
        None,
        "getProgress alone is ignored"
    );
    assert_eq!(r.totals.ignored_only, 1);
    assert_eq!(
        (
            r.totals.created,
            r.totals.deleted,
            r.totals.moved,
            r.totals.modified
        ),
        (1, 2, 1, 3)
    );
    assert_eq!(r.totals.unchanged, 93 - 2 - 1 - 3 - 1);

    let ecoli = r.objects.iter().find(|o| o.uid == ECOLI).unwrap();
    let kinds: Vec<(&str, &str)> = ecoli
        .changes
        .iter()
        .map(|c| (c.kind.as_str(), c.key.as_str()))
        .collect();
    assert!(kinds.contains(&("field", "Result")), "{kinds:?}");
    assert!(
        kinds.contains(&("review_state", "review_state")),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|(k, _)| *k == "workflow_history"),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("workflow_states", "senaite_analysis_workflow")),
        "{kinds:?}"
    );
    let result = ecoli.changes.iter().find(|c| c.key == "Result").unwrap();
    assert_eq!((&result.old, &result.new), (&Value::Null, &json!("12.5")));
    let moved = r.objects.iter().find(|o| o.uid == ATTACHMENT_4).unwrap();
    assert_eq!(
        moved.old_path.as_deref(),
        Some("/senaite/clients/client-2/attachment-4")
    );
    assert!(
        !moved.changes.iter().any(|c| c.key == "getPhysicalPath"),
        "derived from path, ignored by default"
    );
    let att = r.objects.iter().find(|o| o.uid == ATTACHMENT_3).unwrap();
    let blob = att.changes.iter().find(|c| c.kind == "blobs").unwrap();
    assert_eq!(blob.new["sha256"], json!(jsonx::sha256_hex(NEW_BLOB)));
    let roles = r.objects.iter().find(|o| o.uid == LABCONTACT_1).unwrap();
    assert_eq!(roles.changes.len(), 1);
    assert_eq!(
        (
            roles.changes[0].kind.as_str(),
            roles.changes[0].key.as_str()
        ),
        ("local_roles", "labman")
    );
    assert_eq!(r.site.len(), 1);
    assert_eq!(
        (r.site[0].kind.as_str(), r.site[0].key.as_str()),
        ("users", "labman")
    );
    assert!(!r.is_equal());
}

#[test]
fn the_command_line_reports_text_and_json_and_exits_1() {
    let dir = TestDir::new("diff-cli");
    let new = dir.join("new");
    edited_demo(&new);
    let mut c = bin();
    c.arg("diff").arg(demo()).arg(&new);
    let out = run_expect(c, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "+ created Client /senaite/clients/client-9",
        "- deleted Contact /senaite/clients/client-1/contact-1 (vanished)",
        "(deactivated)",
        "> moved Attachment /senaite/clients/client-1/attachment-4 (from /senaite/clients/client-2/attachment-4)",
        "    field Result: (none) -> \"12.5\"",
        "users labman:",
        "1 objects differ only in ignored values",
        "Differences found.",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let mut c = bin();
    c.arg("diff").arg(demo()).arg(&new).arg("--json");
    let out = run_expect(c, 1);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["totals"]["created"], json!(1));
    assert_eq!(v["by_type"]["Contact"]["deleted"], json!(2));
    assert!(
        v["ignored"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "getProgress")
    );
}

#[test]
fn rules_files_widen_or_narrow_the_comparison() {
    let dir = TestDir::new("diff-rules");
    let new = dir.join("new");
    edited_demo(&new);
    let rules = dir.write(
        "rules.toml",
        b"[fields.getProgress]\nignore = false\n[fields.Result]\nignore = \"results are checked elsewhere\"\n",
    );
    let r = diff::run(&DiffOptions {
        old: demo(),
        new: new.clone(),
        rules: Rules::load(&rules).unwrap(),
        out: None,
        force: false,
        brief: false,
    })
    .unwrap();
    assert_eq!(status_of(&r, SAMPLE_W1), Some((Status::Modified, None)));
    let ecoli = r.objects.iter().find(|o| o.uid == ECOLI).unwrap();
    assert!(!ecoli.changes.iter().any(|c| c.key == "Result"));
    assert_eq!(r.rules_file.as_deref(), Some(rules.to_str().unwrap()));

    let bad = dir.write("bad.toml", b"[fields.Price]\nepsilom = 0.1\n");
    let mut c = bin();
    c.arg("diff").arg(demo()).arg(&new).arg("--rules").arg(&bad);
    let out = run_expect(c, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(bad.to_str().unwrap()) && err.contains("`fields.Price.epsilom`"),
        "{err}"
    );
}

#[test]
fn a_corrupt_table_is_an_error_naming_the_file() {
    let dir = TestDir::new("diff-corrupt");
    let new = dir.join("new");
    edited_demo(&new);
    let table = new.join("tables/workflow_states.parquet");
    let mut bytes = std::fs::read(&table).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&table, bytes).unwrap();
    let mut c = bin();
    c.arg("diff").arg(demo()).arg(&new);
    let out = run_expect(c, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("workflow_states.parquet"), "{err}");
}

/// Table files of two snapshots, by name: (rows, sha256).
fn table_files(snap: &Path) -> BTreeMap<String, (u64, String)> {
    Snapshot::open(snap)
        .unwrap()
        .manifest
        .files
        .into_iter()
        .filter(|f| f.kind == "table" && f.path != "tables/tombstones.parquet")
        .map(|f| (f.path, (f.rows, f.sha256)))
        .collect()
}

#[test]
fn the_delta_is_a_snapshot_and_reproduces_the_newer_one() {
    let dir = TestDir::new("diff-delta");
    let new = dir.join("new");
    edited_demo(&new);
    let delta = dir.join("delta");
    let r = run_diff(&demo(), &new, Some(delta.clone()));
    let d = r.delta.as_ref().unwrap();
    let snap = Snapshot::open(&delta).unwrap();
    let demo_id = Snapshot::open(&demo()).unwrap().manifest.snapshot_id;
    assert_eq!(snap.manifest.base.as_ref().unwrap().snapshot_id, demo_id);
    assert_eq!(d.base, demo_id);
    // created + modified + moved + deactivated + the ignored-only one (the delta is exact)
    assert_eq!(d.objects, 1 + 3 + 1 + 1 + 1);
    assert_eq!(d.tombstones, 1);
    assert!(snap.manifest.file("tables/tombstones.parquet").is_some());
    assert!(blobs::blob_path(&delta, &jsonx::sha256_hex(NEW_BLOB)).is_file());
    let history = TableReader::read_all(&delta, &WORKFLOW_HISTORY).unwrap();
    assert!(
        history
            .iter()
            .any(|h| h[0].as_str() == Some(ECOLI) && h[3].as_str() == Some("submit"))
    );

    let applied = dir.join("applied");
    apply_delta(&demo(), &delta, &applied).unwrap();
    assert_eq!(table_files(&applied), table_files(&new));
    let again = run_diff(&new, &applied, None);
    assert!(
        again.is_equal() && again.totals.ignored_only == 0,
        "{again:?}"
    );

    // The wrong base is refused; an existing --out is refused without --force.
    let err = apply_delta(&new, &delta, &dir.join("x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is a delta of"), "{err}");
    let mut c = bin();
    c.arg("diff").arg(demo()).arg(&new).arg("--out").arg(&delta);
    let out = run_expect(c, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let mut c = bin();
    c.arg("diff")
        .arg(demo())
        .arg(&new)
        .arg("--out")
        .arg(&delta)
        .arg("--force");
    run_expect(c, 1);
    Snapshot::open(&delta).unwrap();
}

// ---- properties over small random snapshots -------------------------------------------------

/// One object of a random snapshot.
#[derive(Debug, Clone)]
struct Obj {
    uid: u8,
    path: u8,
    state: u8,
    result: u8,
    history: u8,
    role: bool,
    blob: Option<u8>,
    /// Rows in the per-object tables only (no `objects` row), as `inspect` reports them.
    orphan: bool,
}

fn uid(n: u8) -> String {
    format!("{n:02x}{}", "a".repeat(30))
}

const STATES: [&str; 3] = ["active", "inactive", "to_be_verified"];

fn write_random(dir: &Path, objs: &[Obj]) {
    let mut t: Tables = ALL_TABLES.iter().map(|d| (d.name, Vec::new())).collect();
    let mut extra: Vec<Vec<u8>> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for o in objs.iter().filter(|o| seen.insert(o.uid)) {
        let u = uid(o.uid);
        let path = format!("/senaite/clients/c/obj-{}", o.path);
        let state = STATES[o.state as usize % 3];
        let fields = json!({"uid": u, "path": path, "review_state": state,
            "Result": format!("{}", o.result), "getProgress": o.result % 2});
        let text = String::from_utf8(jsonx::canonical(&fields)).unwrap();
        let objects = if o.orphan { "orphans" } else { "objects" };
        t.entry(objects).or_default().push(vec![
            Cell::s(&u),
            Cell::s("Analysis"),
            Cell::s(&path),
            Cell::opt(None::<String>),
            Cell::s("/senaite/clients/c"),
            Cell::s(format!("obj-{}", o.path)),
            Cell::s("t"),
            Cell::opt(None::<String>),
            Cell::opt(None::<String>),
            Cell::s(state),
            Cell::s(jsonx::sha256_hex(text.as_bytes())),
            Cell::s(text),
            Cell::s("{}"),
        ]);
        for seq in 0..o.history {
            t.get_mut("workflow_history")
                .unwrap()
                .push(history_row(&u, "wf", seq as i64, "a", state));
        }
        t.get_mut("workflow_states").unwrap().push(vec![
            Cell::s(&u),
            Cell::s("wf"),
            Cell::s(state),
            Cell::s("S"),
        ]);
        if o.role {
            t.get_mut("local_roles").unwrap().push(vec![
                Cell::s(&u),
                Cell::s("bob"),
                Cell::s("user"),
                Cell::StrList(vec!["Owner".into()]),
                Cell::StrList(vec![]),
                Cell::Bool(Some(true)),
            ]);
        }
        if let Some(b) = o.blob {
            let bytes = vec![b; 3];
            t.get_mut("blobs").unwrap().push(vec![
                Cell::s(&u),
                Cell::s("File"),
                Cell::s("f.txt"),
                Cell::s("text/plain"),
                Cell::Int(Some(3)),
                Cell::s(jsonx::sha256_hex(&bytes)),
            ]);
            extra.push(bytes);
        }
    }
    t.remove("orphans");
    let refs: Vec<&[u8]> = extra.iter().map(Vec::as_slice).collect();
    write_tables(dir, t, &demo_without_blobs(), &refs);
}

/// A manifest source for random snapshots (the demo's; its blobs are not copied).
fn demo_without_blobs() -> PathBuf {
    static DIR: std::sync::OnceLock<TestDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = TestDir::new("diff-manifest-only");
        std::fs::copy(demo().join("manifest.json"), d.join("manifest.json")).unwrap();
        d
    })
    .path()
    .to_path_buf()
}

fn obj() -> impl Strategy<Value = Obj> {
    (
        0u8..12,
        0u8..3,
        0u8..3,
        0u8..3,
        0u8..3,
        any::<bool>(),
        proptest::option::of(0u8..2),
        proptest::bool::weighted(0.05),
    )
        .prop_map(
            |(uid, path, state, result, history, role, blob, orphan)| Obj {
                uid,
                path,
                state,
                result,
                history,
                role,
                blob,
                orphan,
            },
        )
}

fn uids_with(r: &DiffReport, status: Status, reason: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = r
        .objects
        .iter()
        .filter(|o| o.status == status && o.reason.as_deref() == reason)
        .map(|o| o.uid.clone())
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// diff(A, A) is empty; created(A, B) = deleted(B, A) (vanished); base + delta = B.
    #[test]
    fn diff_properties(a in proptest::collection::vec(obj(), 0..10),
                       b in proptest::collection::vec(obj(), 0..10)) {
        let dir = TestDir::new("diff-prop");
        let (pa, pb) = (dir.join("a"), dir.join("b"));
        write_random(&pa, &a);
        write_random(&pb, &b);
        let same = run_diff(&pa, &pa, None);
        prop_assert!(same.is_equal() && same.objects.is_empty() && same.totals.ignored_only == 0);
        let ab = run_diff(&pa, &pb, Some(dir.join("delta")));
        let ba = run_diff(&pb, &pa, None);
        prop_assert_eq!(
            uids_with(&ab, Status::Created, None),
            uids_with(&ba, Status::Deleted, Some("vanished"))
        );
        prop_assert_eq!(
            uids_with(&ba, Status::Created, None),
            uids_with(&ab, Status::Deleted, Some("vanished"))
        );
        let applied = dir.join("applied");
        apply_delta(&pa, &dir.join("delta"), &applied).unwrap();
        // Rows without an object are not compared, so a delta does not carry them.
        let orphans = a.iter().chain(&b).any(|o| o.orphan);
        for def in [&OBJECTS, &WORKFLOW_HISTORY, &WORKFLOW_STATES, &LOCAL_ROLES, &BLOBS, &USERS] {
            if orphans && def.name != "objects" && def.name != "users" {
                continue;
            }
            prop_assert_eq!(
                TableReader::read_all(&applied, def).unwrap(),
                TableReader::read_all(&pb, def).unwrap(),
                "table {}", def.name
            );
        }
        if !orphans {
            prop_assert_eq!(table_files(&applied), table_files(&pb));
        }
        // The digest index stands in for reading every row: without it, the same findings.
        let (na, nb) = (dir.join("a-nodigest"), dir.join("b-nodigest"));
        without_digests(&pa, &na);
        without_digests(&pb, &nb);
        let full = run_diff(&na, &nb, Some(dir.join("delta-full")));
        prop_assert_eq!(findings(&full), findings(&ab));
        prop_assert_eq!(table_files(&dir.join("delta-full")), table_files(&dir.join("delta")));
        prop_assert_eq!(findings(&run_diff(&pa, &nb, None)), findings(&ab));
        let (with_index, without) = (brief_diff(&pa, &pb), brief_diff(&na, &nb));
        prop_assert_eq!(findings(&with_index), findings(&without));
        brief_agrees(&with_index, &ab);
    }
}

fn brief_diff(old: &Path, new: &Path) -> DiffReport {
    diff::run(&DiffOptions {
        old: old.to_path_buf(),
        new: new.to_path_buf(),
        rules: Rules::default(),
        out: None,
        force: false,
        brief: true,
    })
    .unwrap()
}

/// `--brief` lists the objects the full diff lists, with the same status, plus those the full
/// diff found different only in ignored values (as modified), and no changes.
fn brief_agrees(brief: &DiffReport, full: &DiffReport) {
    let key = |o: &diff::ObjectDiff| {
        (
            o.uid.clone(),
            o.status,
            o.reason.clone(),
            o.path.clone(),
            o.old_path.clone(),
        )
    };
    let listed: std::collections::BTreeSet<_> = brief.objects.iter().map(key).collect();
    for o in &full.objects {
        assert!(listed.contains(&key(o)), "{o:?} missing from --brief");
    }
    assert_eq!(
        brief.objects.len() as u64,
        full.objects.len() as u64 + full.totals.ignored_only
    );
    let full_uids: std::collections::BTreeSet<_> = full.objects.iter().map(|o| &o.uid).collect();
    for o in &brief.objects {
        assert!(o.changes.is_empty());
        if !full_uids.contains(&o.uid) {
            assert_eq!(o.status, Status::Modified, "{o:?}");
        }
    }
    assert!(brief.brief && !full.brief);
    assert_eq!(brief.totals.ignored_only, 0);
}

/// What a diff found (everything but the snapshots' names and ids).
fn findings(r: &DiffReport) -> Value {
    json!({
        "totals": r.totals, "by_type": r.by_type, "objects": r.objects,
        "site": r.site, "orphan_rows": r.orphan_rows,
    })
}

/// A copy of `snap` without its digest index, as snapshots written before the index existed.
fn without_digests(snap: &Path, to: &Path) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    copy_dir(snap, to);
    let rel = "tables/object_digests.parquet";
    std::fs::remove_file(to.join(rel)).unwrap();
    let mut m = Manifest::read(to).unwrap();
    m.files.retain(|f| f.path != rel);
    m.snapshot_id = Manifest::compute_id(&m.files);
    m.write(to).unwrap();
}

#[test]
fn the_digest_index_and_the_full_scan_find_the_same_changes() {
    let dir = TestDir::new("diff-digests");
    let new = dir.join("new");
    edited_demo(&new);
    let old = dir.join("old");
    write_tables(&old, read_tables(&demo()), &demo(), &[]);
    let fast = run_diff(&old, &new, Some(dir.join("delta")));
    assert!(!fast.objects.is_empty());
    let (na, nb) = (dir.join("old-nodigest"), dir.join("new-nodigest"));
    without_digests(&old, &na);
    without_digests(&new, &nb);
    let full = run_diff(&na, &nb, Some(dir.join("delta-full")));
    assert_eq!(findings(&full), findings(&fast));
    assert!(
        fast.totals.ignored_only > 0,
        "the edits include an ignored-only change"
    );
    brief_agrees(&brief_diff(&old, &new), &fast);
    assert_eq!(
        findings(&brief_diff(&na, &nb)),
        findings(&brief_diff(&old, &new))
    );
    let mut c = bin();
    c.arg("diff")
        .arg(&old)
        .arg(&new)
        .args(["--brief", "--json"]);
    let out = run_expect(c, 1);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["brief"], json!(true));
    let mut c = bin();
    c.arg("diff")
        .arg(&old)
        .arg(&new)
        .args(["--brief", "--out"])
        .arg(dir.join("nope"));
    run_expect(c, 2);
    let delta_files = table_files(&dir.join("delta"));
    assert!(delta_files.contains_key("tables/object_digests.parquet"));
    assert_eq!(table_files(&dir.join("delta-full")), delta_files);
}

#[test]
fn inspect_reports_a_digest_index_that_does_not_match_its_tables() {
    let dir = TestDir::new("diff-stale-index");
    let (old, new) = (dir.join("old"), dir.join("new"));
    write_tables(&old, read_tables(&demo()), &demo(), &[]);
    edited_demo(&new);
    // NEW's tables with OLD's index, the manifest made to agree: only the recomputation sees it.
    let rel = "tables/object_digests.parquet";
    std::fs::copy(old.join(rel), new.join(rel)).unwrap();
    let mut m = Manifest::read(&new).unwrap();
    let (sha256, bytes) = blobs::hash_file(&new.join(rel)).unwrap();
    let rows = Manifest::read(&old).unwrap().file(rel).unwrap().rows;
    for f in m.files.iter_mut().filter(|f| f.path == rel) {
        (f.sha256, f.bytes, f.rows) = (sha256.clone(), bytes, rows);
    }
    m.snapshot_id = Manifest::compute_id(&m.files);
    m.write(&new).unwrap();
    let mut c = bin();
    c.arg("inspect").arg(&new);
    let out = run_expect(c, 2);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("object_digests.parquet: does not match the other tables"),
        "{text}"
    );
    let mut c = bin();
    c.arg("inspect").arg(&old);
    run_expect(c, 0);
}
