//! Inline pipeline tests: each `[[test]]` of a pipeline file lists input objects and the objects
//! expected out (in input order; dropped ones are absent), optionally a `salt` for hash
//! redactions and the number of `dangling` references to dropped objects. TOML has no null:
//! the string `"$null"` stands for JSON null in test records. They run through the
//! very step code the data pass uses. Offline.
//!
//! ```toml
//! [[test]]
//! name = "a sample type moves"
//! [[test.input]]
//! uid = "be1d4efe6ab24f7a833be850269fb335"
//! portal_type = "SampleType"
//! path = "/senaite/bika_setup/bika_sampletypes/sampletype-1"
//! fields = { Prefix = "W" }
//! [[test.expect]]
//! uid = "be1d4efe6ab24f7a833be850269fb335"
//! portal_type = "SampleType"
//! path = "/senaite/setup/sampletypes/sampletype-1"
//! fields = { prefix = "W" }
//! ```

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::snapshot::table::{Cell, OBJECTS};

use super::ops::{self, Obj};
use super::prepare::{self, ContextBuilder, Identity};
use super::spec::{PipelineTest, toml_to_json};

/// Salt of hash redactions in tests that name none.
const TEST_SALT: &str = "pipeline-test-salt";

/// One failed inline test.
#[derive(Debug, Clone, Serialize)]
pub struct TestFailure {
    /// The test's name.
    pub test: String,
    /// What differed, readably.
    pub message: String,
}

/// The outcome of a pipeline's inline tests.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    /// The pipeline file.
    pub pipeline: String,
    /// Tests run.
    pub tests: usize,
    /// Tests passed.
    pub passed: usize,
    /// Failures.
    pub failures: Vec<TestFailure>,
}

/// Runs the inline tests of a pipeline file.
///
/// # Errors
/// When the pipeline has problems (all listed).
pub fn run_tests(path: &Path) -> Result<TestReport> {
    let pipeline = super::check(path)?;
    let mut report = TestReport {
        pipeline: path.display().to_string(),
        tests: pipeline.tests.len(),
        passed: 0,
        failures: Vec::new(),
    };
    for t in &pipeline.tests {
        match run_one(&pipeline, t) {
            Ok(()) => report.passed += 1,
            Err(message) => report.failures.push(TestFailure {
                test: t.name.clone(),
                message,
            }),
        }
    }
    Ok(report)
}

fn run_one(p: &super::Pipeline, t: &PipelineTest) -> std::result::Result<(), String> {
    let input: Vec<Obj> = t
        .input
        .iter()
        .enumerate()
        .map(|(i, r)| record(r).map_err(|m| format!("input[{}]: {m}", i + 1)))
        .collect::<std::result::Result<_, _>>()?;
    let expect: Vec<Vec<Cell>> = t
        .expect
        .iter()
        .enumerate()
        .map(|(i, r)| {
            record(r)
                .map(Obj::into_row)
                .map_err(|m| format!("expect[{}]: {m}", i + 1))
        })
        .collect::<std::result::Result<_, _>>()?;
    let salt = t.salt.as_deref().unwrap_or(TEST_SALT);
    let salts = prepare::salts(p, Some(salt)).map_err(|e| format!("{e:?}"))?;
    let mut b = ContextBuilder::new(p, salts);
    for o in &input {
        b.add(&Identity {
            uid: &o.uid,
            portal_type: &o.portal_type,
            path: &o.path,
            id: &o.id,
        });
    }
    for o in &input {
        if b.folds_type(&o.portal_type) {
            let mut src = o.clone();
            let fields = src.fields()?.clone();
            b.add_fold_source(&o.uid, &o.portal_type, &fields);
        }
    }
    if b.has_partitions() {
        for second in [false, true] {
            if second {
                b.partitions_chosen();
            }
            for o in &input {
                if b.partitions_read(second, &o.portal_type) {
                    b.add_partitions(second, &mut o.clone())?;
                }
            }
        }
    }
    let ctx = b.finish();
    let mut got = Vec::new();
    let mut dropped = HashSet::new();
    for mut o in input {
        let out = ops::apply(&p.steps, &ctx, &mut o)?;
        if out.keep {
            got.push(o.into_row());
        } else {
            dropped.insert(o.uid);
        }
    }
    compare(&expect, &got)?;
    if let Some(want) = t.dangling {
        let mut n = 0u64;
        for row in &got {
            let text = row[11].as_str().unwrap_or("{}");
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            let mut targets = Vec::new();
            super::engine::reference_targets(&v, &mut targets);
            n += targets.iter().filter(|u| dropped.contains(*u)).count() as u64;
        }
        if n != want {
            return Err(format!("expected {want} dangling references, found {n}"));
        }
    }
    Ok(())
}

fn compare(expect: &[Vec<Cell>], got: &[Vec<Cell>]) -> std::result::Result<(), String> {
    let uid = |r: &Vec<Cell>| r[0].as_str().unwrap_or_default().to_string();
    if expect.len() != got.len() {
        let e: Vec<String> = expect.iter().map(uid).collect();
        let g: Vec<String> = got.iter().map(uid).collect();
        return Err(format!(
            "expected {} objects out, got {}\n  expected uids: {e:?}\n  got uids:      {g:?}",
            expect.len(),
            got.len()
        ));
    }
    let mut diffs = Vec::new();
    for (e, g) in expect.iter().zip(got) {
        for (i, (name, _, _, _)) in OBJECTS.columns.iter().enumerate() {
            if *name == "content_hash" || e[i] == g[i] {
                continue;
            }
            if *name == "fields" {
                diffs.extend(field_diffs(&uid(e), &e[i], &g[i]));
            } else {
                diffs.push(format!(
                    "object {}: {name}\n    expected {:?}\n    got      {:?}",
                    uid(e),
                    e[i],
                    g[i]
                ));
            }
        }
        let (eh, gh) = (e[10].as_str(), g[10].as_str());
        if eh != gh && e[11] == g[11] {
            diffs.push(format!(
                "object {}: content_hash is not the sha256 of fields",
                uid(e)
            ));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

fn field_diffs(uid: &str, e: &Cell, g: &Cell) -> Vec<String> {
    let parse = |c: &Cell| -> serde_json::Map<String, Value> {
        serde_json::from_str(c.as_str().unwrap_or("{}")).unwrap_or_default()
    };
    let (e, g) = (parse(e), parse(g));
    let keys: std::collections::BTreeSet<&String> = e.keys().chain(g.keys()).collect();
    keys.into_iter()
        .filter(|k| e.get(*k) != g.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), Value::to_string);
            format!(
                "object {uid}: field {k}\n    expected {}\n    got      {}",
                show(e.get(k)),
                show(g.get(k))
            )
        })
        .collect()
}

/// TOML has no null: in test records the string `"$null"` stands for JSON null.
fn nulls(v: &mut Value) {
    match v {
        Value::String(s) if s == "$null" => *v = Value::Null,
        Value::Array(a) => a.iter_mut().for_each(nulls),
        Value::Object(m) => m.values_mut().for_each(nulls),
        _ => {}
    }
}

/// An object from a test record: `uid`, `portal_type` and `path` are required; `parent_path`
/// and `id` default to the path's parent and last segment; `fields` defaults to `{}`.
fn record(r: &toml::Table) -> std::result::Result<Obj, String> {
    const KEYS: &[&str] = &[
        "uid",
        "portal_type",
        "path",
        "parent_uid",
        "parent_path",
        "id",
        "title",
        "created",
        "modified",
        "review_state",
        "fields",
    ];
    if let Some(k) = r.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key `{k}` (allowed: {})", KEYS.join(", ")));
    }
    let s = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let req = |k: &str| s(k).ok_or(format!("missing `{k}`"));
    let path = req("path")?;
    let (parent, id) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
    let mut fields = match r.get("fields") {
        Some(v) => toml_to_json(v)?,
        None => Value::Object(serde_json::Map::new()),
    };
    nulls(&mut fields);
    let text = String::from_utf8(crate::jsonx::canonical(&fields)).unwrap_or_default();
    Ok(Obj {
        uid: req("uid")?,
        portal_type: req("portal_type")?,
        parent_uid: s("parent_uid"),
        parent_path: s("parent_path").or(Some(parent.to_string())),
        id: s("id").unwrap_or(id.to_string()),
        title: s("title"),
        created: s("created"),
        modified: s("modified"),
        review_state: s("review_state"),
        content_hash: crate::jsonx::sha256_hex(text.as_bytes()),
        fields_text: text,
        sources: "{}".into(),
        fields: None,
        dirty: false,
        path,
    })
}
