//! BIKA LIMS 3.1 as a source, against the legacy-API test double (`sandbox::bika`) that answers
//! with objects recorded from a real bika.lims 3.1.15 (`data/fixtures/bika/`): the double is
//! pinned to the recorded bodies, then extracted (the kind detected, and forced) into a
//! snapshot whose records, references, states, files and notes are checked.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use serde_json::Value;

use senaite_sync::sandbox::bika::{BikaData, BikaDouble, recorded, recorded_catalogs};
use senaite_sync::snapshot::manifest::Manifest;
use senaite_sync::snapshot::table::{BLOBS, OBJECTS, TableReader, WORKFLOW_STATES};

use crate::util::TestDir;

fn get(url: &str, query: &[(&str, &str)]) -> Value {
    reqwest::blocking::Client::new()
        .get(url)
        .query(query)
        .basic_auth("admin", Some("admin"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn double() -> BikaDouble {
    let mut data = BikaData {
        catalogs: recorded_catalogs(),
        ..Default::default()
    };
    // The recorded client has no attachment; give the double one to download.
    let mut att = serde_json::json!({
        "UID": "a7ac4e0000000000000000000000000a", "portal_type": "Attachment", "id": "attachment-1",
        "path": "/lims/clients/client-1/attachment-1", "title": "report",
        "creation_date": "2026/11/26 14:57:0.619412 UTC", "modification_date": "2026/11/26 14:57:0.619412 UTC",
        "AttachmentType": "", "transitions": []
    });
    att["Title"] = Value::from("attachment-1");
    data.catalogs
        .get_mut("portal_catalog")
        .unwrap()
        .push(att.as_object().unwrap().clone());
    data.files.insert(
        "/lims/clients/client-1/attachment-1/at_download/AttachmentFile".into(),
        (0..=255u8).collect(),
    );
    BikaDouble::start(data).unwrap()
}

fn extract(site: &str, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_senaite-sync"));
    cmd.args(["--progress", "never", "extract", "--url", site, "--out"])
        .arg(out)
        .args(extra)
        .env("SENAITE_USER", "admin")
        .env("SENAITE_PASSWORD", "admin")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    crate::util::run_expect(cmd, 0)
}

#[test]
fn bika_double_answers_the_recorded_objects() {
    let d = double();
    let url = format!("{}/@@API/read", d.site_url());
    for (name, catalog, portal_type) in [
        (
            "legacy_read_sampletypes",
            "bika_setup_catalog",
            "SampleType",
        ),
        (
            "legacy_read_sample_complete",
            "bika_catalog",
            "AnalysisRequest",
        ),
        ("legacy_read_clients", "portal_catalog", "Client"),
    ] {
        let rec: Value = serde_json::from_str(recorded(name).unwrap()).unwrap();
        let got = get(
            &url,
            &[("catalog_name", catalog), ("portal_type", portal_type)],
        );
        assert_eq!(got["objects"], rec["objects"], "{name}");
        assert_eq!(got["total_objects"], rec["total_objects"], "{name}");
    }
    // The quirk: a full analyses read fails with HTTP 200, as recorded.
    let full = get(
        &url,
        &[
            ("catalog_name", "bika_analysis_catalog"),
            ("portal_type", "Analysis"),
        ],
    );
    let rec: Value = serde_json::from_str(recorded("legacy_read_analyses").unwrap()).unwrap();
    assert_eq!(full, rec);
    // ... and with include_fields it answers what the real one answered.
    let fields = "id,UID,Keyword,Result,review_state,ServiceUID,DateReceived";
    let inc = get(
        &url,
        &[
            ("catalog_name", "bika_analysis_catalog"),
            ("portal_type", "Analysis"),
            ("include_fields", fields),
        ],
    );
    let rec: Value =
        serde_json::from_str(recorded("legacy_read_analyses_include_fields").unwrap()).unwrap();
    assert_eq!(inc["objects"], rec["objects"]);
}

#[test]
fn bika_extract_from_the_double_gives_a_complete_snapshot() {
    let d = double();
    let dir = TestDir::new("bika-extract");
    let out = dir.join("snap");
    extract(&d.site_url(), &out, &[]);
    let m = Manifest::read(&out).unwrap();
    assert_eq!(m.source.kind, "bika");
    assert_eq!(m.source.jsonapi_version.as_deref(), Some("0.9.3"));
    let want: BTreeMap<String, u64> = [
        ("Analysis", 1),
        ("AnalysisRequest", 1),
        ("Attachment", 1),
        ("Client", 1),
        ("Sample", 1),
        ("SampleCondition", 1),
        ("SampleType", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(m.counts, want);
    let kinds: Vec<(&str, &str)> = m
        .notes
        .iter()
        .map(|n| (n.kind.as_str(), n.subject.as_str()))
        .collect();
    assert!(kinds.contains(&("partial", "Analysis")), "{kinds:?}");
    assert!(kinds.contains(&("not_available", "workflow_history")));
    assert!(
        !kinds.iter().any(|(k, _)| *k == "count_mismatch"),
        "{kinds:?}"
    );

    let rows = TableReader::read_all(&out, &OBJECTS).unwrap();
    let col = |n: &str| OBJECTS.columns.iter().position(|c| c.0 == n).unwrap();
    let by_type = |t: &str| -> (Vec<senaite_sync::snapshot::table::Cell>, Value) {
        let r = rows
            .iter()
            .find(|r| r[col("portal_type")].as_str() == Some(t))
            .unwrap();
        (
            r.clone(),
            serde_json::from_str(r[col("fields")].as_str().unwrap()).unwrap(),
        )
    };
    let (ar_row, ar) = by_type("AnalysisRequest");
    let rec: Value =
        serde_json::from_str(recorded("legacy_read_sample_complete").unwrap()).unwrap();
    let live = &rec["objects"][0];
    assert_eq!(ar["Client"]["uid"], live["Client_uid"]);
    assert_eq!(ar["Client"]["title"], live["Client"]);
    assert_eq!(ar["Client"]["url"], "/lims/clients/client-1");
    assert!(ar.get("Client_uid").is_none() && ar.get("transitions").is_none());
    let (an_row, an) = by_type("Analysis");
    assert_eq!(
        ar["Analyses"][0]["uid"],
        an_row[col("uid")].as_str().unwrap()
    );
    assert_eq!(an["Keyword"], "Ca");
    assert_eq!(
        an["SamplePartition"]["uid"],
        live["Analyses"][0]["SamplePartition_uid"]
    );
    // Zope dates, not zero-padded on the real site, in RFC 3339.
    let created = ar_row[col("created")].as_str().unwrap();
    assert!(
        created.contains('T') && created.ends_with("+00:00"),
        "{created}"
    );
    let (att_row, _) = by_type("Attachment");
    assert_eq!(
        att_row[col("created")].as_str(),
        Some("2026-11-26T14:57:00.619412+00:00")
    );

    let states = TableReader::read_all(&out, &WORKFLOW_STATES).unwrap();
    let ar_uid = ar_row[col("uid")].as_str().unwrap();
    let wf: Vec<(String, String)> = states
        .iter()
        .filter(|r| r[0].as_str() == Some(ar_uid))
        .map(|r| {
            (
                r[1].as_str().unwrap().to_string(),
                r[2].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        wf,
        [
            ("bika_ar_workflow".to_string(), "sample_due".to_string()),
            (
                "bika_cancellation_workflow".to_string(),
                "active".to_string()
            )
        ]
    );
    let blobs = TableReader::read_all(&out, &BLOBS).unwrap();
    assert_eq!(blobs.len(), 1);
    let sha = blobs[0][5].as_str().unwrap();
    let bytes = std::fs::read(out.join("blobs").join(&sha[..2]).join(sha)).unwrap();
    assert_eq!(bytes, (0..=255u8).collect::<Vec<u8>>());

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_senaite-sync"));
    cmd.args(["--progress", "never", "inspect"]).arg(&out);
    crate::util::run_expect(cmd, 0);
}

#[test]
fn bika_forced_kind_reads_the_same_and_senaite_kind_refuses() {
    let d = double();
    let dir = TestDir::new("bika-kind");
    extract(&d.site_url(), &dir.join("a"), &[]);
    extract(&d.site_url(), &dir.join("b"), &["--source-kind", "bika"]);
    let a = Manifest::read(&dir.join("a")).unwrap();
    let b = Manifest::read(&dir.join("b")).unwrap();
    assert_eq!(a.snapshot_id, b.snapshot_id);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_senaite-sync"));
    cmd.args([
        "--progress",
        "never",
        "extract",
        "--url",
        &d.site_url(),
        "--source-kind",
        "senaite",
        "--out",
    ])
    .arg(dir.join("c"))
    .env("SENAITE_USER", "admin")
    .env("SENAITE_PASSWORD", "admin")
    .stdin(Stdio::null());
    let out = crate::util::run_expect(cmd, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/@@API/senaite/v1/version"), "{err}");
}

#[test]
fn bika_small_pages_read_in_parallel_give_the_same_snapshot() {
    let d = double();
    let dir = TestDir::new("bika-pages");
    extract(&d.site_url(), &dir.join("a"), &[]);
    extract(
        &d.site_url(),
        &dir.join("b"),
        &["--page-size", "1", "-j", "4"],
    );
    let a = Manifest::read(&dir.join("a")).unwrap();
    let b = Manifest::read(&dir.join("b")).unwrap();
    assert_eq!(a.snapshot_id, b.snapshot_id);
    assert_eq!(a.notes, b.notes);
}

#[test]
fn bika_http_200_errors_name_the_url() {
    use senaite_sync::bika::legacy::{ReadQuery, read};
    use senaite_sync::source::{ClientOptions, Credentials, Secret, SenaiteClient};
    let d = double();
    let creds = Credentials {
        user: "admin".into(),
        password: Secret::new("admin"),
    };
    let client = SenaiteClient::new(ClientOptions::new(&d.site_url(), creds)).unwrap();
    let err = read(&client, &ReadQuery::page("nosuch_catalog", 10, 0)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/lims/@@API/read") && text.contains("catalog_name=nosuch_catalog"),
        "{text}"
    );
    // The recorded analyses failure, through the same path.
    let err = read(&client, &ReadQuery::page("bika_analysis_catalog", 10, 0)).unwrap_err();
    assert!(err.to_string().contains("'Ca'"), "{err}");
}
