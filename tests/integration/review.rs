//! `review`: the HTML page and `--json` findings on the demo snapshot and on edited copies of it
//! (samples spread over months, a planted dangling reference, an object whose parent is
//! missing, a client titled with markup), schema drift against a destination copy with a field
//! removed and types removed, the blocked records of a real `plan --json` against a sandbox
//! that lacks a type, a real `diff --json`, and the page rendered by headless Chromium (skipped
//! with a note when Chromium is missing, unless `SENAITE_SYNC_E2E=required`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use senaite_sync::inspect::{self, InspectOptions};
use senaite_sync::jsonx;
use senaite_sync::review::{self, ReviewOptions, ReviewReport};
use senaite_sync::sandbox::{ReceiverOptions, Sandbox, SandboxOptions, SiteData};
use senaite_sync::snapshot::Snapshot;
use senaite_sync::snapshot::blobs;
use senaite_sync::snapshot::jsonl::JsonlReader;
use senaite_sync::snapshot::table::{ALL_TABLES, Cell, TableReader};
use senaite_sync::snapshot::writer::{SnapshotParts, SnapshotWriter};

use crate::util::{TestDir, run_expect};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_senaite-sync"))
}

type Tables = BTreeMap<&'static str, Vec<Vec<Cell>>>;

fn read_tables(snap: &Path) -> Tables {
    ALL_TABLES
        .iter()
        .map(|d| (d.name, TableReader::read_all(snap, d).unwrap()))
        .collect()
}

/// Writes `tables` as a snapshot with the demo's blob files, manifest parts and, if given, a
/// `site` raw stream.
fn write_tables(dir: &Path, mut tables: Tables, site: Option<Vec<Value>>) {
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
    if let Some(docs) = site {
        let raw = w.raw("site").unwrap();
        for d in &docs {
            raw.write_value(d).unwrap();
        }
    }
    for sub in std::fs::read_dir(demo().join("blobs")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            blobs::store_stream(dir, &mut &bytes[..], "test").unwrap();
        }
    }
    let m = Snapshot::open_unverified(&demo()).unwrap().manifest;
    w.finish(SnapshotParts {
        source: m.source,
        request: m.request,
        started_at: m.started_at,
        counts,
        blobs: m.blobs,
        notes: m.notes,
    })
    .unwrap();
}

const SAMPLE_W1: &str = "acc7c18bf2b140638fd6d8293872b724";
const SAMPLE_W2: &str = "19d6c02879fa47da9685067a80024e0e";
const SAMPLE_W3: &str = "d784840304664c49b251596c2e5bae0c";
const ATTACHMENT_1: &str = "0367359c393e44e1b6b583d9444bd1b6";
const CLIENT_1: &str = "6f1d98a82d7b44d29e3153f29fe73d95";
const MISSING: &str = "deadbeefdeadbeefdeadbeefdeadbeef";
const PAYLOAD: &str = "<script>document.documentElement.setAttribute('data-pwned','1')</script>\
    <img src=x onerror=\"document.documentElement.setAttribute('data-pwned','2')\">Happy Hills";

fn object<'a>(t: &'a mut Tables, uid: &str) -> &'a mut Vec<Cell> {
    t.get_mut("objects")
        .unwrap()
        .iter_mut()
        .find(|r| r[0].as_str() == Some(uid))
        .unwrap()
}

/// Edits an object's fields and the columns mirrored from them, recomputing content_hash.
fn edit_fields(row: &mut [Cell], edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let mut fields: Value = serde_json::from_str(row[11].as_str().unwrap()).unwrap();
    edit(fields.as_object_mut().unwrap());
    for (i, key) in [
        (3, "parent_uid"),
        (4, "parent_path"),
        (6, "title"),
        (7, "created"),
    ] {
        if let Some(v) = fields.get(key).and_then(Value::as_str) {
            row[i] = Cell::s(v);
        }
    }
    let text = String::from_utf8(jsonx::canonical(&fields)).unwrap();
    row[10] = Cell::s(jsonx::sha256_hex(text.as_bytes()));
    row[11] = Cell::s(text);
}

/// The demo with samples created in August and September, a reference to a missing object, an
/// attachment whose parent is missing and a client titled with markup.
fn edited_demo(dir: &Path) {
    let mut t = read_tables(&demo());
    edit_fields(object(&mut t, SAMPLE_W1), |f| {
        f.insert("created".into(), json!("2026-08-03T10:00:00+00:00"));
    });
    edit_fields(object(&mut t, SAMPLE_W2), |f| {
        f.insert("created".into(), json!("2026-09-15T10:00:00+00:00"));
    });
    edit_fields(object(&mut t, SAMPLE_W3), |f| {
        f.insert(
            "Batch".into(),
            json!({"uid": MISSING, "url": "/senaite/batches/B-404"}),
        );
    });
    edit_fields(object(&mut t, ATTACHMENT_1), |f| {
        f.insert("parent_path".into(), json!("/senaite/clients/client-9"));
        f.insert("parent_uid".into(), json!("e".repeat(32)));
    });
    edit_fields(object(&mut t, CLIENT_1), |f| {
        f.insert("title".into(), json!(PAYLOAD));
    });
    write_tables(dir, t, None);
}

fn review_of(opts: &ReviewOptions) -> (ReviewReport, String) {
    let r = review::run(opts).unwrap();
    let html = r.to_html();
    (r, html)
}

/// Asserts `needle` is in the page, showing the neighbourhood of a hint otherwise.
fn assert_has(html: &str, needle: &str) {
    assert!(html.contains(needle), "page lacks {needle:?}");
}

fn type_row(t: &str, count: u64) -> String {
    format!(r#"<tr data-type="{t}"><th scope="row">{t}</th><td class="num">{count}</td>"#)
}

fn state_chip(state: &str, n: u64) -> String {
    format!(r#"<span class="chip" data-state="{state}">{state} <b>{n}</b></span>"#)
}

fn bar(period: &str, n: u64) -> String {
    format!(r#"data-period="{period}" data-count="{n}""#)
}

#[test]
fn review_demo_counts_types_states_samples_and_files() {
    let (r, html) = review_of(&ReviewOptions::new(demo()));
    // Cross-check against inspect, which counts on its own.
    let inspected = inspect::run(&InspectOptions {
        dir: demo(),
        verify_blobs: false,
    })
    .unwrap();
    assert_eq!(r.types.len(), inspected.types.len());
    for (t, st) in &inspected.types {
        assert_eq!(r.types[t].count, st.count, "{t}");
        assert_eq!(r.types[t].states, st.states, "{t}");
        assert_has(&html, &type_row(t, st.count));
        for (state, n) in &st.states {
            assert_has(&html, &state_chip(state, *n));
        }
    }
    assert_eq!(r.snapshot.objects, 93);
    assert_has(&html, &type_row("AnalysisRequest", 6));
    assert_has(&html, &state_chip("sample_received", 2));
    // All six demo samples were created in November 2026: one bar.
    assert_eq!(
        r.samples_per_period,
        BTreeMap::from([("2026-11".into(), 6)])
    );
    assert_eq!(html.matches(r#"class="bar""#).count(), 1);
    assert_has(&html, &bar("2026-11", 6));
    // Four attachments: three under 1 KiB, one of 3 MiB.
    assert_eq!((r.blobs.files, r.blobs.bytes), (4, 3_145_923));
    assert_has(&html, r#"data-label="&lt; 1 KiB" data-count="3""#);
    assert_has(&html, r#"data-label="1-10 MiB" data-count="1""#);
    assert_eq!(r.blobs.largest[0].filename, "random-3MiB.bin");
    assert_has(&html, "random-3MiB.bin");
    // A clean snapshot: no warnings; examples for every type (at most 3 each).
    assert_eq!(r.warning_count(), 0);
    assert_has(&html, "No warnings");
    assert!(
        r.types
            .values()
            .all(|t| t.examples.len() == t.count.min(3) as usize)
    );
    assert_has(&html, r#"<details data-examples="Client">"#);
    assert_has(&html, "Happy Hills Water Board");
    // Self-contained: nothing is fetched from anywhere.
    for external in ["http://cdn", "https://", "<link", "src=\"http", "@import"] {
        assert!(!html.contains(external), "{external}");
    }
}

#[test]
fn review_edited_copy_warns_charts_months_and_escapes_markup() {
    let td = TestDir::new("review-edited");
    let snap = td.join("edited");
    edited_demo(&snap);
    let (r, html) = review_of(&ReviewOptions::new(&snap));

    // Months: August 1, September 1, October none, November 4.
    let months: Vec<(&str, u64)> = r
        .samples_per_period
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        months,
        [
            ("2026-08", 1),
            ("2026-09", 1),
            ("2026-10", 0),
            ("2026-11", 4)
        ]
    );
    assert_eq!(html.matches(r#"class="bar""#).count(), 4);
    for (p, n) in months {
        assert_has(&html, &bar(p, n));
    }

    // The planted dangling reference and the orphan, in the report and on the page.
    let d = &r.warnings.dangling_references;
    assert_eq!(d.total, 1);
    assert_eq!(
        (
            d.items[0].uid.as_str(),
            d.items[0].field.as_str(),
            d.items[0].target.as_str()
        ),
        (SAMPLE_W3, "Batch", MISSING)
    );
    assert_has(
        &html,
        r#"data-warning="dangling-references" data-count="1""#,
    );
    assert_has(&html, &format!("<td>Batch</td><td>{MISSING}</td>"));
    let w = &r.warnings;
    let top = |g: &review::Grouped| -> Vec<(String, u64)> {
        g.top.iter().map(|c| (c.key.clone(), c.count)).collect()
    };
    assert_eq!(
        top(&w.dangling_by_field),
        [("AnalysisRequest.Batch".into(), 1)]
    );
    assert_eq!(top(&w.dangling_targets), [(MISSING.into(), 1)]);
    assert_eq!(
        top(&w.orphan_parents),
        [("/senaite/clients/client-9".into(), 1)]
    );
    assert_has(
        &html,
        r#"<td>AnalysisRequest.Batch</td><td class="num">1</td>"#,
    );
    let o = &r.warnings.orphans;
    assert_eq!(o.total, 1);
    assert_eq!(o.items[0].uid, ATTACHMENT_1);
    assert_has(&html, r#"data-warning="orphans" data-count="1""#);
    assert_has(&html, "<td>/senaite/clients/client-9</td>");
    assert_eq!(r.warning_count(), 2);

    // The client's title is shown, escaped: no markup from the snapshot reaches the page.
    assert!(
        r.types["Client"]
            .examples
            .iter()
            .any(|e| e.title == PAYLOAD)
    );
    assert_has(
        &html,
        "&lt;script&gt;document.documentElement.setAttribute(&#39;data-pwned&#39;,&#39;1&#39;)&lt;/script&gt;",
    );
    assert_has(&html, "&lt;img src=x onerror=&quot;");
    assert!(!html.contains("<script>document"), "unescaped script");
    assert!(!html.contains("<img"), "unescaped img");
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
}

#[test]
fn review_cli_writes_the_page_and_json() {
    let td = TestDir::new("review-cli");
    let out = td.join("review.html");
    let o = run_expect(
        {
            let mut c = bin();
            c.arg("review").arg(demo()).arg("-o").arg(&out);
            c
        },
        0,
    );
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("93 objects of 55 types, 0 warnings"),
        "{said}"
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
    assert_has(&html, &type_row("Analysis", 13));
    // Without -o the page goes to stdout; --json prints the findings instead.
    let o = run_expect(
        {
            let mut c = bin();
            c.arg("review").arg(demo());
            c
        },
        0,
    );
    assert_eq!(String::from_utf8(o.stdout).unwrap(), html);
    let o = run_expect(
        {
            let mut c = bin();
            c.arg("review").arg(demo()).arg("--json");
            c
        },
        0,
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["types"]["AnalysisRequest"]["count"], 6);
    assert_eq!(v["samples_per_period"]["2026-11"], 6);
    assert_eq!(v["warnings"]["dangling_references"]["total"], 0);
    assert!(v["drift"].is_null());
    // A directory that is not a snapshot is an error naming it.
    let o = run_expect(
        {
            let mut c = bin();
            c.arg("review").arg(td.path());
            c
        },
        2,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("manifest.json") || err.contains("not a snapshot"),
        "{err}"
    );
}

/// The demo's `site` stream with `drop_type` removed from every catalog's portal types.
fn site_without_type(drop_type: &str) -> Vec<Value> {
    let mut docs = JsonlReader::read_all(&demo().join("raw/site.jsonl.zst")).unwrap();
    for d in &mut docs {
        if d["kind"] == "catalogs" {
            for cat in d["items"].as_array_mut().unwrap() {
                if let Some(types) = cat["portal_types"].as_array_mut() {
                    types.retain(|t| t != drop_type);
                }
            }
        }
    }
    docs
}

/// A destination: the demo without Client's Phone and Fax fields and without SamplePoint and
/// Batch objects; its catalogs (when written) know Batch but not SamplePoint.
fn destination_copy(dir: &Path, with_catalogs: bool) {
    let mut t = read_tables(&demo());
    let dropped: Vec<String> = t["objects"]
        .iter()
        .filter(|r| matches!(r[1].as_str(), Some("SamplePoint" | "Batch")))
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    for def in ALL_TABLES.iter().filter(|d| d.columns[0].0 == "uid") {
        t.get_mut(def.name)
            .unwrap()
            .retain(|r| !dropped.iter().any(|u| r[0].as_str() == Some(u)));
    }
    for row in t.get_mut("objects").unwrap() {
        if row[1].as_str() == Some("Client") {
            edit_fields(row, |f| {
                f.remove("Phone");
                f.remove("Fax");
            });
        }
    }
    write_tables(
        dir,
        t,
        with_catalogs.then(|| site_without_type("SamplePoint")),
    );
}

#[test]
fn review_against_lists_schema_drift() {
    let td = TestDir::new("review-drift");
    let dest = td.join("dest");
    destination_copy(&dest, true);
    let out = td.join("review.html");
    let o = run_expect(
        {
            let mut c = bin();
            c.arg("review")
                .arg(demo())
                .arg("--against")
                .arg(&dest)
                .arg("-o")
                .arg(&out)
                .arg("--json");
            c
        },
        0,
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = &v["drift"];
    let names = |key: &str| -> Vec<String> {
        d[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["portal_type"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("types_missing_in_destination"), ["SamplePoint"]);
    assert_eq!(d["types_missing_in_destination"][0]["objects"], 2);
    assert_eq!(names("types_without_objects_in_destination"), ["Batch"]);
    assert!(names("types_only_in_destination").is_empty());
    let fields: Vec<(String, String, u64)> = d["fields_missing_in_destination"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["portal_type"].as_str().unwrap().to_string(),
                f["field"].as_str().unwrap().to_string(),
                f["with_value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("Client".to_string(), "Fax".to_string(), 0),
            ("Client".to_string(), "Phone".to_string(), 2)
        ]
    );
    assert_eq!(d["destination"]["has_catalog_types"], true);
    let html = std::fs::read_to_string(&out).unwrap();
    assert_has(
        &html,
        r#"data-warning="types-missing-in-destination" data-count="1""#,
    );
    assert_has(
        &html,
        r#"data-warning="fields-missing-in-destination" data-count="1""#,
    );
    assert_has(
        &html,
        "<td>Client</td><td>Phone</td><td class=\"num\">2</td>",
    );
    assert_has(&html, "<td>SamplePoint</td><td class=\"num\">2</td>");

    // The same destination without its catalogs: Batch cannot be told apart from a missing type.
    let bare = td.join("bare");
    destination_copy(&bare, false);
    let mut opts = ReviewOptions::new(demo());
    opts.against = Some(bare);
    let (r, _) = review_of(&opts);
    let d = r.drift.unwrap();
    let missing: Vec<&str> = d
        .types_missing_in_destination
        .iter()
        .map(|g| g.portal_type.as_str())
        .collect();
    assert_eq!(missing, ["Batch", "SamplePoint"]);
    assert!(d.types_without_objects_in_destination.is_empty());
    assert!(!d.destination.has_catalog_types);
}

#[test]
fn review_against_resolves_warnings_in_the_destination() {
    let td = TestDir::new("review-resolve");
    let snap = td.join("edited");
    edited_demo(&snap);
    let mut opts = ReviewOptions::new(&snap);
    opts.against = Some(demo());
    let (r, html) = review_of(&opts);
    // The planted target is nowhere; the missing parent is not in the demo either.
    assert_eq!(
        r.warnings.dangling_references.items[0].in_destination,
        Some(false)
    );
    assert_eq!(r.warnings.orphans.items[0].in_destination, Some(false));
    assert_eq!(
        r.warnings.dangling_targets.top[0].in_destination,
        Some(false)
    );
    assert_eq!(r.warnings.orphan_parents.top[0].in_destination, Some(false));
    assert_has(&html, &format!("<td>{MISSING}</td><td>no</td>"));
    // A part of the demo (without its batch and the second client) against the whole demo:
    // what dangles here is in the destination.
    let part = td.join("part");
    let mut t = read_tables(&demo());
    t.get_mut("objects").unwrap().retain(|r| {
        r[1].as_str() != Some("Batch") && r[0].as_str() != Some("8429c5224a7946a687294da86dddbee9")
    });
    write_tables(&part, t, None);
    let mut opts = ReviewOptions::new(&part);
    opts.against = Some(demo());
    let (r, _) = review_of(&opts);
    let w = &r.warnings;
    assert!(w.dangling_references.total > 0);
    assert!(
        w.dangling_references
            .items
            .iter()
            .all(|d| d.in_destination == Some(true))
    );
    assert!(w.orphans.total > 0);
    assert!(w.orphans.items.iter().all(|o| o.parent_path == "/senaite/clients/client-2"
        && o.in_destination == Some(true)));
    assert_eq!(w.orphan_parents.top[0].in_destination, Some(true));
    // The reverse: the demo against the edited copy has no drift in types.
    let mut opts = ReviewOptions::new(demo());
    opts.against = Some(snap);
    let (r, _) = review_of(&opts);
    let d = r.drift.unwrap();
    assert!(d.types_missing_in_destination.is_empty());
    assert_eq!(d.compared_types, 55);
}

#[test]
fn review_plan_shows_the_records_a_load_would_block() {
    let td = TestDir::new("review-plan");
    let types: Vec<String> = {
        let snap = Snapshot::open(&demo()).unwrap();
        snap.manifest
            .counts
            .keys()
            .filter(|t| *t != "Attachment")
            .cloned()
            .collect()
    };
    let sb = Sandbox::start(
        SiteData::empty("senaite"),
        SandboxOptions {
            receiver: Some(ReceiverOptions {
                portal_types: Some(types),
                ..ReceiverOptions::default()
            }),
            ..SandboxOptions::default()
        },
    )
    .unwrap();
    let o = run_expect(
        {
            let mut c = bin();
            c.arg("plan")
                .arg(demo())
                .arg("--url")
                .arg(sb.site_url())
                .arg("--json")
                .env("SENAITE_USER", "admin")
                .env("SENAITE_PASSWORD", "admin");
            c
        },
        0,
    );
    let plan_file = td.write("plan.json", &o.stdout);
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let blocked = plan["totals"]["blocked"].as_u64().unwrap();
    assert_eq!(blocked, 4, "four attachments");

    let mut opts = ReviewOptions::new(demo());
    opts.plan = Some(plan_file);
    let (r, html) = review_of(&opts);
    let p = r.plan.as_ref().unwrap();
    assert_eq!(p.blocked.total, blocked);
    assert_eq!(p.blocked_by_reason["type missing in the destination"], 4);
    assert_eq!(p.by_type["Attachment"].blocked, 4);
    assert_eq!(p.foreign_uids, 0);
    assert!(!p.other_snapshot);
    assert_eq!(
        p.snapshot_id.as_deref(),
        plan["snapshot_id"].as_str(),
        "the plan names its snapshot"
    );
    assert!(!html.contains("plan-other-snapshot"));
    assert_has(&html, r#"data-warning="blocked" data-count="4""#);
    assert_has(
        &html,
        "<td>type missing in the destination</td><td class=\"num\">4</td>",
    );
    assert_has(
        &html,
        "<td>/senaite/clients/client-1/attachment-1</td><td>Attachment</td>",
    );
    // The plan of one snapshot laid over another is called out.
    let other = td.join("other");
    let mut t = read_tables(&demo());
    t.get_mut("objects")
        .unwrap()
        .retain(|r| r[1].as_str() != Some("Attachment"));
    write_tables(&other, t, None);
    let mut opts = ReviewOptions::new(&other);
    opts.plan = Some(td.join("plan.json"));
    let (r, html) = review_of(&opts);
    let p = r.plan.unwrap();
    assert_eq!(p.foreign_uids, 4);
    assert!(
        p.other_snapshot,
        "the plan names the demo, not this snapshot"
    );
    assert_has(&html, r#"data-warning="plan-foreign" data-count="4""#);
    assert_has(
        &html,
        r#"data-warning="plan-other-snapshot" data-count="1""#,
    );
    // Not a plan: an error naming the file.
    let bad = td.write("bad.json", b"{\"objects\": []}");
    let mut opts = ReviewOptions::new(demo());
    opts.plan = Some(bad);
    let err = review::run(&opts).unwrap_err().to_string();
    assert!(err.contains("bad.json"), "{err}");
}

#[test]
fn review_diff_shows_what_changed() {
    let td = TestDir::new("review-diff");
    let snap = td.join("edited");
    edited_demo(&snap);
    let o = run_expect(
        {
            let mut c = bin();
            c.arg("diff")
                .arg(demo())
                .arg(&snap)
                .arg("--json")
                .arg("--out")
                .arg(td.join("delta"));
            c
        },
        1,
    );
    let diff_file = td.write("diff.json", &o.stdout);
    let diff: Value = serde_json::from_slice(&o.stdout).unwrap();
    let modified =
        diff["totals"]["modified"].as_u64().unwrap() + diff["totals"]["moved"].as_u64().unwrap();
    assert!(modified >= 5, "{}", diff["totals"]);

    let mut opts = ReviewOptions::new(&snap);
    opts.diff = Some(diff_file.clone());
    let (r, html) = review_of(&opts);
    let d = r.diff.as_ref().unwrap();
    assert_eq!(d.relation, "new");
    assert_eq!(
        d.objects.total,
        diff["objects"].as_array().unwrap().len() as u64
    );
    assert_eq!(
        d.totals.modified,
        diff["totals"]["modified"].as_u64().unwrap()
    );
    assert_has(&html, "this snapshot is the newer side");
    assert!(
        d.objects
            .items
            .iter()
            .any(|o| o.uid == SAMPLE_W3 && o.changes.iter().any(|c| c == "field Batch"))
    );
    assert_has(&html, "field Batch");
    // The delta written alongside is a snapshot too: its page names the base and explains
    // why references into the base dangle.
    let (r, html) = review_of(&ReviewOptions::new(td.join("delta")));
    let demo_id = Snapshot::open(&demo()).unwrap().manifest.snapshot_id;
    assert_eq!(r.snapshot.base.as_deref(), Some(demo_id.as_str()));
    assert!(r.warnings.dangling_references.total > 0);
    assert_has(&html, "This is a delta snapshot");
    assert_has(
        &html,
        &format!("delta on base <code>{}</code>", &demo_id[..12]),
    );
    // Laid over the older side, and over an unrelated snapshot (a warning).
    let mut opts = ReviewOptions::new(demo());
    opts.diff = Some(diff_file.clone());
    assert_eq!(review::run(&opts).unwrap().diff.unwrap().relation, "old");
    let other = td.join("other");
    let mut t = read_tables(&demo());
    t.get_mut("users").unwrap().clear();
    write_tables(&other, t, None);
    let mut opts = ReviewOptions::new(&other);
    opts.diff = Some(diff_file);
    let (_, html) = review_of(&opts);
    assert_has(&html, r#"data-warning="diff-unrelated""#);
}

/// Chromium's binary, if installed: `SENAITE_SYNC_CHROMIUM` when set, else the first of the
/// usual names on PATH, else /usr/bin/chromium (the Debian package `.ci/run` installs).
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SENAITE_SYNC_CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let candidates = ["chromium", "chromium-browser", "google-chrome", "chrome"];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for c in candidates {
            let p = dir.join(c);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let fixed = PathBuf::from("/usr/bin/chromium");
    fixed.is_file().then_some(fixed)
}

/// Runs a command to completion within `limit` (killed and failed otherwise) and returns its
/// stdout; a non-zero exit fails with its stderr.
fn output_within(mut cmd: Command, limit: Duration) -> String {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The receiver is gone only after a timeout, when the output no longer matters.
        let _timed_out = tx.send(child.wait_with_output()).is_err();
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let out = out.unwrap();
            assert!(
                out.status.success(),
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
        Err(_) => {
            let killed = Command::new("kill").arg("-9").arg(id.to_string()).status();
            assert!(killed.is_ok_and(|s| s.success()), "could not kill {id}");
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

#[test]
fn review_page_renders_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        assert!(
            std::env::var("SENAITE_SYNC_E2E").as_deref() != Ok("required"),
            "SENAITE_SYNC_E2E=required but chromium is not installed (apt-get install chromium)"
        );
        eprintln!("skipped: chromium not found");
        return;
    };
    let td = TestDir::new("review-chromium");
    let snap = td.join("edited");
    edited_demo(&snap);
    let page = td.join("review.html");
    let (_, html) = review_of(&ReviewOptions::new(&snap));
    std::fs::write(&page, &html).unwrap();
    let mut c = Command::new(&chrome);
    c.args([
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", td.join("profile").display()))
    .arg("--dump-dom")
    .arg(format!("file://{}", page.display()));
    let dom = output_within(c, Duration::from_secs(120));
    // The script ran: it marked the document and built the table of contents.
    assert!(
        dom.contains(r#"data-js="ready""#),
        "script did not run:\n{}",
        &dom[..dom.len().min(2000)]
    );
    assert!(!html.contains(r##"<a href="#types">"##));
    assert_has(
        &dom,
        r##"<a href="#types">Objects per type and review state</a>"##,
    );
    assert_has(&dom, r##"<a href="#warnings">Warnings</a>"##);
    // What it shows: the counts, the month bars, the warnings, the escaped title as text.
    assert_has(&dom, &type_row("AnalysisRequest", 6));
    assert_has(&dom, &state_chip("sample_received", 2));
    for (p, n) in [
        ("2026-08", 1),
        ("2026-09", 1),
        ("2026-10", 0),
        ("2026-11", 4),
    ] {
        assert_has(&dom, &bar(p, n));
    }
    assert_has(&dom, r#"data-warning="dangling-references" data-count="1""#);
    // The planted markup never ran; it is shown as text.
    assert!(!dom.contains("data-pwned=\""), "snapshot markup executed");
    assert_has(
        &dom,
        "&lt;script&gt;document.documentElement.setAttribute('data-pwned','1')",
    );
}

#[test]
fn review_shows_what_a_transform_dropped() {
    let td = TestDir::new("review-transform");
    let pipeline = td.write(
        "drop-sample-points.toml",
        b"name = \"drop-sample-points\"\ndescription = \"drop every sample point\"\n\n\
          [[steps]]\nop = \"filter\"\naction = \"drop\"\ntypes = [\"SamplePoint\"]\n",
    );
    let out = td.join("out");
    let o = run_expect(
        {
            let mut c = bin();
            c.arg("transform")
                .arg(demo())
                .arg("--pipeline")
                .arg(&pipeline)
                .arg("--out")
                .arg(&out)
                .arg("--json");
            c
        },
        0,
    );
    let t: Value = serde_json::from_slice(&o.stdout).unwrap();
    let dropped: u64 = t["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(dropped, 2);

    let (r, html) = review_of(&ReviewOptions::new(&out));
    let info = r.transform.as_ref().unwrap();
    let demo_id = Snapshot::open(&demo()).unwrap().manifest.snapshot_id;
    assert_eq!(info.input_snapshot_id.as_deref(), Some(demo_id.as_str()));
    let sha = jsonx::sha256_hex(&std::fs::read(&pipeline).unwrap());
    assert_eq!(info.pipeline_hash.as_deref(), Some(sha.as_str()));
    assert_eq!(info.dropped_objects, Some(dropped));
    assert_eq!(info.dangling_references, t["dangling_total"].as_u64());
    assert!(info.dangling_references.unwrap() > 0);
    assert_has(&html, r#"<section id="transform">"#);
    assert_has(
        &html,
        &format!("<dt>input snapshot</dt><dd><code>{demo_id}</code></dd>"),
    );
    assert_has(
        &html,
        &format!(r#"data-warning="transform-dropped" data-count="{dropped}""#),
    );
    // The references into what was dropped show in the snapshot's own check too.
    assert!(!r.types.contains_key("SamplePoint"));
    assert!(
        r.warnings
            .dangling_by_field
            .top
            .iter()
            .any(|g| g.key == "AnalysisRequest.SamplePoint")
    );
}
