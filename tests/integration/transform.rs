//! `transform` on the demo snapshot (extracted from a real SENAITE 2.6): round trip of an empty
//! pipeline, golden outputs of every step, error reporting, integrity of the output, lab-merge
//! prefixes without dangling references, deterministic salted redaction, file rows following
//! renamed fields, and the inline tests of every shipped pipeline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use senaite_sync::inspect::{self, InspectOptions};
use senaite_sync::snapshot::Snapshot;
use senaite_sync::snapshot::table::{
    ALL_TABLES, BLOBS, Cell, GROUPS, OBJECTS, TableReader, WORKFLOW_HISTORY,
};
use senaite_sync::transform::{self, TransformOptions, TransformReport};

use crate::util::TestDir;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn demo() -> PathBuf {
    root().join("data/demo")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_senaite-sync"))
}

fn run(dir: &TestDir, name: &str, pipeline: &str) -> (PathBuf, TransformReport) {
    let p = dir.write(&format!("{name}.toml"), pipeline.as_bytes());
    let out = dir.join(name);
    let r = transform::run(&TransformOptions {
        input: demo(),
        pipeline: p,
        out: out.clone(),
        force: false,
    })
    .unwrap();
    (out, r)
}

fn objects(snap: &Path) -> BTreeMap<String, Vec<Cell>> {
    TableReader::read_all(snap, &OBJECTS)
        .unwrap()
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r))
        .collect()
}

fn fields(row: &[Cell]) -> serde_json::Map<String, Value> {
    serde_json::from_str(row[11].as_str().unwrap()).unwrap()
}

fn col(name: &str) -> usize {
    OBJECTS.col(name).unwrap()
}

/// Every row's content_hash is the sha256 of its fields text, which is canonical JSON.
fn assert_hashes(snap: &Path) {
    for (uid, row) in objects(snap) {
        let text = row[col("fields")].as_str().unwrap();
        let canonical =
            serde_json::to_string(&serde_json::from_str::<Value>(text).unwrap()).unwrap();
        assert_eq!(text, canonical, "{uid}: fields are not canonical");
        assert_eq!(
            row[col("content_hash")].as_str().unwrap(),
            senaite_sync::jsonx::sha256_hex(text.as_bytes()),
            "{uid}: content_hash"
        );
    }
}

fn assert_intact(snap: &Path) -> inspect::InspectReport {
    Snapshot::open(snap).unwrap();
    let r = inspect::run(&InspectOptions {
        dir: snap.to_path_buf(),
        verify_blobs: true,
    })
    .unwrap();
    assert!(r.is_intact(), "{:?}", r.corrupt);
    r
}

#[test]
fn transform_empty_pipeline_reproduces_every_table_byte_for_byte() {
    let dir = TestDir::new("tf-empty");
    let (out, r) = run(&dir, "out", "name = \"identity\"\n");
    for def in ALL_TABLES {
        let rel = format!("tables/{}.parquet", def.name);
        assert_eq!(
            std::fs::read(demo().join(&rel)).unwrap(),
            std::fs::read(out.join(&rel)).unwrap(),
            "{rel} differs"
        );
    }
    assert_eq!(
        std::fs::read(demo().join("raw/site.jsonl.zst")).unwrap(),
        std::fs::read(out.join("raw/site.jsonl.zst")).unwrap()
    );
    assert!(!out.join("raw/jsonapi.jsonl.zst").exists());
    assert_eq!(r.objects_in, 93);
    assert_eq!((r.objects_out, r.objects_changed), (93, 0));
    let input = Snapshot::open(&demo()).unwrap().manifest;
    let m = Snapshot::open(&out).unwrap().manifest;
    assert_eq!(m.counts, input.counts);
    assert_eq!(m.blobs, input.blobs);
    let note = |s: &str| {
        m.notes
            .iter()
            .find(|n| n.kind == "transform" && n.subject == s)
            .map(|n| n.message.clone())
    };
    assert_eq!(note("input_snapshot_id"), Some(input.snapshot_id.clone()));
    let sha = senaite_sync::jsonx::sha256_hex(b"name = \"identity\"\n");
    assert_eq!(note("pipeline_sha256"), Some(sha));
    assert!(note("raw/jsonapi.jsonl.zst").is_some());
    assert_intact(&out);
}

/// A compact, reviewable record of what a step did to the demo snapshot: every output object
/// row that differs from its input row, the uids that went, and the row count of every table.
fn golden_record(out: &Path) -> Value {
    let before = objects(&demo());
    let after = objects(out);
    let mut changed = serde_json::Map::new();
    for (uid, row) in &after {
        if before.get(uid) == Some(row) {
            continue;
        }
        let mut o = serde_json::Map::new();
        for (i, (name, _, _, _)) in OBJECTS.columns.iter().enumerate() {
            if *name == "fields" || *name == "sources" {
                continue;
            }
            o.insert((*name).into(), json!(row[i].as_str()));
        }
        let old = before.get(uid).map(|r| fields(r)).unwrap_or_default();
        let new = fields(row);
        let mut f = serde_json::Map::new();
        let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for k in keys {
            if old.get(k) != new.get(k) {
                f.insert(k.clone(), new.get(k).cloned().unwrap_or(json!("(removed)")));
            }
        }
        o.insert("fields_changed".into(), Value::Object(f));
        changed.insert(uid.clone(), Value::Object(o));
    }
    let dropped: Vec<&String> = before.keys().filter(|u| !after.contains_key(*u)).collect();
    let m = Snapshot::open(out).unwrap().manifest;
    let rows: BTreeMap<String, u64> = m
        .files
        .iter()
        .filter(|f| f.kind == "table")
        .map(|f| (f.path.clone(), f.rows))
        .collect();
    json!({"changed": changed, "dropped": dropped, "rows": rows})
}

fn check_golden(name: &str, out: &Path) {
    let path = root().join(format!("tests/integration/transform_golden/{name}.json"));
    let got = serde_json::to_string_pretty(&golden_record(out)).unwrap() + "\n";
    if std::env::var_os("SENAITE_SYNC_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (SENAITE_SYNC_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert!(
        want == got,
        "{name}: output differs from {}:\n{got}",
        path.display()
    );
    assert_hashes(out);
    assert_intact(out);
}

const STEPS: &[(&str, &str)] = &[
    (
        "filter",
        "name = \"g\"\n[[steps]]\nop = \"filter\"\naction = \"drop\"\ntypes = [\"Analysis\"]\n\
         states = [\"unassigned\"]\n",
    ),
    (
        "filter_keep_dates",
        "name = \"g\"\n[[steps]]\nop = \"filter\"\naction = \"keep\"\n\
         created_before = \"2026-11-26T15:25:08\"\n",
    ),
    (
        "filter_field",
        "name = \"g\"\n[[steps]]\nop = \"filter\"\naction = \"drop\"\ntypes = [\"Contact\"]\n\
         field = \"Firstname\"\nvalues = [\"Gina\"]\n",
    ),
    (
        "rename_type",
        "name = \"g\"\n[[steps]]\nop = \"rename_type\"\nfrom = \"Department\"\nto = \"LabDepartment\"\n",
    ),
    (
        "fields",
        "name = \"g\"\n[[steps]]\nop = \"rename_fields\"\ntypes = [\"Client\"]\n\
         fields = { ClientID = \"client_id\", Name = \"title_name\" }\n\
         [[steps]]\nop = \"drop_fields\"\ntypes = [\"Client\"]\nfields = [\"Phone\"]\n\
         [[steps]]\nop = \"set_fields\"\ntypes = [\"Client\"]\nvalues = { BulkDiscount = true, title = \"Renamed\" }\n\
         [[steps]]\nop = \"map_values\"\ntypes = [\"AnalysisRequest\"]\nfield = \"Priority\"\nvalues = { \"3\" = \"1\" }\n",
    ),
    (
        "move",
        "name = \"g\"\n[[steps]]\nop = \"move\"\nfrom = \"/senaite/clients/client-1\"\n\
         to = \"/senaite/clients/happy-hills\"\n",
    ),
    (
        "prefix_ids",
        "name = \"g\"\n[[steps]]\nop = \"prefix_ids\"\ntypes = [\"Client\", \"AnalysisRequest\"]\n\
         prefix = \"B-\"\n",
    ),
    (
        "redact",
        "name = \"g\"\n[[steps]]\nop = \"redact\"\ntypes = [\"Contact\"]\nmethod = \"hash\"\n\
         salt_file = \"SALT\"\nfields = [\"title\", \"EmailAddress\"]\n\
         [[steps]]\nop = \"redact\"\ntypes = [\"Contact\"]\nmethod = \"mask\"\nfields = [\"BusinessPhone\"]\n\
         [[steps]]\nop = \"redact\"\ntypes = [\"Contact\"]\nmethod = \"drop\"\nfields = [\"Surname\"]\n",
    ),
];

#[test]
fn transform_golden_output_of_every_step_on_the_demo() {
    let dir = TestDir::new("tf-golden");
    let salt = dir.write("salt.txt", b"golden-salt\n");
    for (name, text) in STEPS {
        let text = text.replace("\"SALT\"", &format!("{:?}", salt.display().to_string()));
        let (out, _) = run(&dir, name, &text);
        check_golden(name, &out);
    }
}

#[test]
fn transform_filter_drops_rows_everywhere_and_reports_dangling_references() {
    let dir = TestDir::new("tf-filter");
    let (out, r) = run(&dir, "out", STEPS[0].1);
    let dropped: BTreeSet<String> = objects(&demo())
        .into_iter()
        .filter(|(_, row)| {
            row[1].as_str() == Some("Analysis")
                && row[col("review_state")].as_str() == Some("unassigned")
        })
        .map(|(u, _)| u)
        .collect();
    assert!(!dropped.is_empty());
    assert_eq!(r.dropped.values().sum::<u64>(), dropped.len() as u64);
    for def in [&WORKFLOW_HISTORY, &BLOBS] {
        for row in TableReader::read_all(&out, def).unwrap() {
            assert!(
                !dropped.contains(row[0].as_str().unwrap()),
                "{} row kept",
                def.name
            );
        }
    }
    assert!(r.rows_dropped.get("workflow_history").copied().unwrap_or(0) > 0);
    // Samples list their analyses: those references now dangle and are reported, not hidden.
    assert!(r.dangling_total > 0);
    assert!(r.dangling.iter().all(|d| dropped.contains(&d.target)));
    let m = Snapshot::open(&out).unwrap().manifest;
    assert!(m.notes.iter().any(|n| n.subject == "dangling_references"));
    assert!(m.notes.iter().any(|n| n.subject == "dropped_objects"));
}

#[test]
fn transform_reports_every_pipeline_mistake_at_once() {
    let dir = TestDir::new("tf-mistakes");
    let p = dir.write(
        "bad.toml",
        b"name = \"bad\"\nextra = 1\n\
          [[steps]]\nop = \"filter\"\naction = \"maybe\"\n\
          [[steps]]\nname = \"fields\"\nop = \"rename_fields\"\nfields = { A = 1 }\ncolour = \"x\"\n\
          [[steps]]\nop = \"move\"\nfrom = \"relative\"\nto = \"/senaite/x\"\n\
          [[steps]]\nop = \"frobnicate\"\n",
    );
    let out = bin()
        .args(["transform"])
        .arg(demo())
        .arg("--pipeline")
        .arg(&p)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    for want in [
        "key `extra`".to_string(),
        format!("{file}: step 1 (filter): key `action`"),
        format!("{file}: step 1 (filter): key `types`"),
        format!("{file}: step 2 (fields): key `fields.A`"),
        format!("{file}: step 2 (fields): key `colour`"),
        format!("{file}: step 3 (move): key `from`"),
        format!("{file}: step 4 (frobnicate): key `op`"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("7 problem(s)"), "{err}");
    assert!(!dir.join("out").exists(), "nothing is written");
    let check = bin()
        .args(["transform", "--check"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
}

#[test]
fn transform_missing_salt_is_refused_before_any_data() {
    let dir = TestDir::new("tf-salt");
    let p = dir.write(
        "r.toml",
        b"name = \"r\"\n[[steps]]\nop = \"redact\"\nmethod = \"hash\"\nfields = [\"EmailAddress\"]\n\
          salt_env = \"SENAITE_SYNC_TEST_NO_SUCH_SALT\"\n",
    );
    let out = bin()
        .arg("transform")
        .arg(demo())
        .arg("--pipeline")
        .arg(&p)
        .arg("--out")
        .arg(dir.join("out"))
        .env_remove("SENAITE_SYNC_TEST_NO_SUCH_SALT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("step 1 (redact): key `salt_env`"), "{err}");
    assert!(!dir.join("out").exists());
}

#[test]
fn transform_prefix_ids_keeps_paths_ids_and_references_consistent() {
    let dir = TestDir::new("tf-prefix");
    let text = std::fs::read_to_string(root().join("pipelines/merge-a-lab.toml")).unwrap();
    let (out, r) = run(&dir, "out", &text);
    let before = assert_intact(&demo());
    let after = assert_intact(&out);
    assert_eq!(after.dangling_references, before.dangling_references);
    assert_eq!(
        after.orphans, before.orphans,
        "every parent path still resolves"
    );
    assert_eq!(r.dangling_total, 0);
    let objs = objects(&out);
    let paths: BTreeSet<&str> = objs.values().map(|r| r[2].as_str().unwrap()).collect();
    for row in objs.values() {
        let f = fields(row);
        let path = row[2].as_str().unwrap();
        if let Some(fp) = f.get("path") {
            assert_eq!(fp.as_str(), Some(path));
        }
        if let Some(id) = f.get("id") {
            assert_eq!(id.as_str(), row[5].as_str());
        }
        if let Some(pp) = row[4].as_str()
            && pp.starts_with("/senaite/clients/")
        {
            assert!(paths.contains(pp), "{path}: parent {pp} missing");
        }
        match row[1].as_str().unwrap() {
            "AnalysisRequest" => {
                assert!(row[5].as_str().unwrap().starts_with("LABB-"));
                assert_eq!(
                    row[6].as_str(),
                    row[5].as_str(),
                    "a sample's title is its id"
                );
            }
            "Analysis" => {
                let sample = row[4].as_str().unwrap().rsplit('/').next().unwrap();
                assert_eq!(f["getRequestID"], sample);
                assert_eq!(f["getRequestURL"], row[4].as_str().unwrap());
            }
            "Client" => assert!(path.starts_with("/senaite/clients/LABB-client-")),
            _ => {}
        }
        // No reference url points to a path that no longer exists under the clients.
        let text = row[11].as_str().unwrap();
        assert!(
            !text.contains("\"/senaite/clients/client-"),
            "{path}: stale path in {text}"
        );
    }
    assert_hashes(&out);
    // The clients' Plone groups are renamed with them, and getGroupId follows.
    let in_file: Vec<String> = TableReader::read_all(&out, &GROUPS)
        .unwrap()
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    let mut sorted = in_file.clone();
    sorted.sort();
    assert_eq!(in_file, sorted, "the groups table stays sorted by id");
    let groups: BTreeSet<String> = in_file.into_iter().collect();
    assert!(
        groups.contains("LABB-client-1") && !groups.contains("client-1"),
        "{groups:?}"
    );
    for row in objs.values().filter(|r| r[1].as_str() == Some("Client")) {
        let g = fields(row)["getGroupId"].as_str().unwrap().to_string();
        assert!(groups.contains(&g), "{g}");
    }
}

#[test]
fn transform_redaction_is_deterministic_and_depends_on_the_salt() {
    let dir = TestDir::new("tf-redact");
    let pipeline = root().join("pipelines/redact-patients.toml");
    let go = |out: &str, salt: &str| {
        let o = bin()
            .arg("transform")
            .arg(demo())
            .arg("--pipeline")
            .arg(&pipeline)
            .arg("--out")
            .arg(dir.join(out))
            .env("SENAITE_SYNC_SALT", salt)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(dir.join(out).join("tables/objects.parquet")).unwrap()
    };
    let a = go("a", "salt-one-Zq81");
    let b = go("b", "salt-one-Zq81");
    let c = go("c", "salt-two-Zq81");
    assert_eq!(a, b, "same salt, same bytes");
    assert_ne!(a, c, "another salt, other hashes");
    let objs = objects(&dir.join("a"));
    let all: String = objs
        .values()
        .map(|r| r[11].as_str().unwrap().to_string())
        .collect();
    for personal in [
        "gina.grower@greenvalley.example",
        "Gina Grower",
        "+27 21 555 0202",
        "HHWB-CS-002",
    ] {
        assert!(!all.contains(personal), "{personal} survived");
    }
    for row in objs.values().filter(|r| r[1].as_str() == Some("Contact")) {
        assert!(row[6].as_str().unwrap().starts_with("h:"), "title hashed");
    }
    // The salt is nowhere in the output.
    for entry in walk(&dir.join("a")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(13).any(|w| w == b"salt-one-Zq81"),
            "{} holds the salt",
            entry.display()
        );
    }
    assert_intact(&dir.join("a"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn transform_file_rows_follow_renamed_and_dropped_file_fields() {
    let dir = TestDir::new("tf-blobs");
    let (out, _) = run(
        &dir,
        "renamed",
        "name = \"b\"\n[[steps]]\nop = \"rename_fields\"\ntypes = [\"Attachment\"]\n\
         fields = { AttachmentFile = \"attachment_file\" }\n",
    );
    let rows = TableReader::read_all(&out, &BLOBS).unwrap();
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter()
            .all(|r| r[1].as_str() == Some("attachment_file"))
    );
    assert_intact(&out);
    let (out, _) = run(
        &dir,
        "dropped",
        "name = \"b\"\n[[steps]]\nop = \"drop_fields\"\ntypes = [\"Attachment\"]\n\
         fields = [\"AttachmentFile\"]\n",
    );
    assert!(TableReader::read_all(&out, &BLOBS).unwrap().is_empty());
    let m = assert_intact(&out);
    assert_eq!(m.blob_count, 0);
}

#[test]
fn transform_senaite1_pipeline_output_is_a_valid_snapshot() {
    let dir = TestDir::new("tf-1x");
    let text =
        std::fs::read_to_string(root().join("pipelines/senaite1-to-senaite26.toml")).unwrap();
    let (out, r) = run(&dir, "out", &text);
    assert_eq!(r.objects_out, 93);
    assert_hashes(&out);
    let o = bin().arg("inspect").arg(&out).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn transform_shipped_pipelines_pass_their_inline_tests() {
    let mut seen = 0;
    for e in std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let r = transform::run_tests(&p).unwrap();
        assert!(r.tests > 0, "{} has no inline tests", p.display());
        assert!(
            r.failures.is_empty(),
            "{}:\n{}",
            p.display(),
            r.failures
                .iter()
                .map(|f| format!("{}: {}", f.test, f.message))
                .collect::<Vec<_>>()
                .join("\n")
        );
        seen += 1;
    }
    assert!(seen >= 3);
}

#[test]
fn transform_inline_test_failure_is_reported_readably() {
    let dir = TestDir::new("tf-inline");
    let p = dir.write(
        "t.toml",
        b"name = \"t\"\n[[steps]]\nop = \"set_fields\"\nvalues = { A = 1 }\n\
          [[test]]\nname = \"wrong\"\n[[test.input]]\nuid = \"u\"\nportal_type = \"X\"\npath = \"/s/x\"\n\
          [[test.expect]]\nuid = \"u\"\nportal_type = \"X\"\npath = \"/s/x\"\nfields = { A = 2 }\n",
    );
    let o = bin()
        .args(["transform", "--test"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("0 passed, 1 failed"), "{text}");
    assert!(
        text.contains("field A") && text.contains("expected 2") && text.contains("got      1"),
        "{text}"
    );
}

#[test]
fn transform_nest_fields_gathers_sample_point_fields_into_one_dict() {
    let dir = TestDir::new("tf-nest");
    let (out, r) = run(
        &dir,
        "out",
        "name = \"nest\"\n[[steps]]\nop = \"nest_fields\"\ntypes = [\"SamplePoint\"]\n\
         fields = { elevation = \"elevation\", composite = \"composite\" }\n\
         into = \"site\"\nnull_as = \"\"\n",
    );
    let before = objects(&demo());
    let after = objects(&out);
    let mut points = 0;
    for (uid, row) in &after {
        let old = &before[uid];
        if old[col("portal_type")].as_str() != Some("SamplePoint") {
            assert_eq!(old, row, "{uid}: not a sample point, must be untouched");
            continue;
        }
        points += 1;
        let (was, now) = (fields(old), fields(row));
        assert!(!now.contains_key("elevation") && !now.contains_key("composite"));
        let or_empty = |k: &str| match was.get(k) {
            None | Some(Value::Null) => json!(""),
            Some(v) => v.clone(),
        };
        assert_eq!(
            now.get("site"),
            Some(&json!({"elevation": or_empty("elevation"), "composite": or_empty("composite")})),
            "{uid}"
        );
        assert_eq!(
            now.get("location"),
            was.get("location"),
            "{uid}: location kept"
        );
    }
    assert_eq!(points, 2);
    assert_eq!((r.objects_out, r.objects_changed), (93, 2));
    assert_hashes(&out);
    assert_intact(&out);
}

#[test]
fn transform_senaite1_pipeline_puts_1x_sample_states_under_the_2x_workflow() {
    use senaite_sync::snapshot::table::WORKFLOW_STATES;
    let dir = TestDir::new("tf-1x-wf");
    // The demo with its samples' states under SENAITE 1.3's workflow id, as a 1.x extract has them.
    let mut t = crate::diff::read_tables(&demo());
    let mut samples = BTreeMap::new();
    let ars: BTreeSet<String> = t["objects"]
        .iter()
        .filter(|r| r[col("portal_type")].as_str() == Some("AnalysisRequest"))
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    for s in t.get_mut("workflow_states").unwrap() {
        if ars.contains(s[0].as_str().unwrap()) {
            assert_eq!(s[1].as_str(), Some("senaite_sample_workflow"));
            s[1] = Cell::s("bika_ar_workflow");
            samples.insert(s[0].as_str().unwrap().to_string(), s[2].clone());
        }
    }
    assert_eq!(samples.len(), 6);
    let input = dir.join("in-1x");
    crate::diff::write_tables(&input, t, &demo(), &[]);
    let out = dir.join("out");
    transform::run(&TransformOptions {
        input,
        pipeline: root().join("pipelines/senaite1-to-senaite26.toml"),
        out: out.clone(),
        force: false,
    })
    .unwrap();
    let mut seen = 0;
    for s in TableReader::read_all(&out, &WORKFLOW_STATES).unwrap() {
        if let Some(state) = samples.get(s[0].as_str().unwrap()) {
            assert_eq!(s[1].as_str(), Some("senaite_sample_workflow"));
            assert_eq!(&s[2], state, "{:?}: state kept", s[0]);
            seen += 1;
        }
    }
    assert_eq!(seen, 6);
    assert_intact(&out);
}

/// Every `{uid, url}` reference in `v` whose uid is in `paths` must have that object's path as
/// its url; returns how many were checked.
fn check_reference_urls(v: &Value, paths: &BTreeMap<String, String>, at: &str) -> usize {
    match v {
        Value::Object(m) => {
            let mut n = 0;
            if let (Some(Value::String(uid)), Some(Value::String(url))) =
                (m.get("uid"), m.get("url"))
                && let Some(path) = paths.get(uid)
            {
                assert_eq!(url, path, "{at}: reference to {uid}");
                n += 1;
            }
            n + m
                .values()
                .map(|x| check_reference_urls(x, paths, at))
                .sum::<usize>()
        }
        Value::Array(a) => a.iter().map(|x| check_reference_urls(x, paths, at)).sum(),
        _ => 0,
    }
}

#[test]
fn transform_senaite1_pipeline_on_a_real_13_snapshot_keeps_references_in_step() {
    // data/fixtures/senaite1/snapshot: extracted from a real seeded SENAITE 1.3.5.
    let input = root().join("data/fixtures/senaite1/snapshot");
    let dir = TestDir::new("tf-real-1x");
    let out = dir.join("out");
    let r = transform::run(&TransformOptions {
        input: input.clone(),
        pipeline: root().join("pipelines/senaite1-to-senaite26.toml"),
        out: out.clone(),
        force: false,
    })
    .unwrap();
    assert!(r.objects_out > 60, "{r:?}");
    assert_hashes(&out);
    assert_intact(&out);
    let rows = objects(&out);
    let paths: BTreeMap<String, String> = rows
        .iter()
        .map(|(uid, row)| (uid.clone(), row[col("path")].as_str().unwrap().to_string()))
        .collect();
    let mut checked = 0;
    for (uid, row) in &rows {
        checked += check_reference_urls(&Value::Object(fields(row)), &paths, uid);
    }
    // Samples and analyses refer to sample types, services, contacts...: every url followed
    // its object when the pipeline moved it out of bika_setup.
    assert!(checked > 50, "only {checked} references checked");
    let types: BTreeSet<&str> = rows
        .values()
        .filter_map(|r| r[col("portal_type")].as_str())
        .collect();
    for gone in ["ARTemplate", "ARTemplates", "AnalysisRequestsFolder"] {
        assert!(!types.contains(gone), "{gone} is still there");
    }
    assert!(
        types.contains("SampleTemplate")
            || !objects(&input)
                .values()
                .any(|r| r[1].as_str() == Some("ARTemplate"))
    );
    // The review history follows the 2.6 workflows, entry for entry, sorted as the format says.
    let history = |snap: &Path| TableReader::read_all(snap, &WORKFLOW_HISTORY).unwrap();
    let (before, after) = (history(&input), history(&out));
    let wf = |r: &Vec<Cell>| r[1].as_str().unwrap().to_string();
    assert!(before.iter().any(|r| wf(r) == "bika_ar_workflow"));
    assert!(
        after
            .iter()
            .all(|r| !wf(r).starts_with("bika_ar") && !wf(r).starts_with("bika_analysis")),
        "1.x workflow ids left in workflow_history"
    );
    let renamed = |r: &Vec<Cell>| match wf(r).as_str() {
        "bika_ar_workflow" => "senaite_sample_workflow".to_string(),
        "bika_analysis_workflow" => "senaite_analysis_workflow".to_string(),
        other => other.to_string(),
    };
    let kept: BTreeSet<&str> = rows.keys().map(String::as_str).collect();
    let mut expected: Vec<Vec<Cell>> = before
        .iter()
        .filter(|r| kept.contains(r[0].as_str().unwrap()))
        .map(|r| {
            let mut r = r.clone();
            r[1] = Cell::s(renamed(&r));
            r
        })
        .collect();
    expected.sort_by(|a, b| {
        (a[0].as_str(), a[1].as_str(), a[2].as_int()).cmp(&(
            b[0].as_str(),
            b[1].as_str(),
            b[2].as_int(),
        ))
    });
    assert_eq!(after, expected);
}
