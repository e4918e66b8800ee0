//! The sandbox as a load destination: the receiver protocol (`companion/PROTOCOL.md`) over HTTP
//! against an empty sandbox. The key property: applying the demo snapshot's records (with its
//! principals and blobs) and extracting the sandbox gives the snapshot's tables back,
//! byte for byte. Also: idempotency, isolation of a rejected record, resumable blob uploads,
//! deferred references, the scripted faults and the answer of a sandbox without the receiver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use senaite_sync::extract::{self, ExtractOptions};
use senaite_sync::progress::Progress;
use senaite_sync::sandbox::load::load_records;
use senaite_sync::sandbox::{
    FaultKind, FaultRule, Framework, Match, ReceiverOptions, Sandbox, SandboxOptions, SiteData,
};
use senaite_sync::snapshot::table::{GROUPS, TableDef, TableReader, USERS, row_to_json};
use senaite_sync::snapshot::{Snapshot, blobs};
use senaite_sync::source::retry::RetryPolicy;
use senaite_sync::source::{Credentials, Secret};

use crate::util::TestDir;

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo")
}

/// The demo's load records, containers first (depth, then path).
fn demo_records() -> Vec<Value> {
    let mut records = load_records(&Snapshot::open(&demo_dir()).unwrap()).unwrap();
    records.sort_by_key(|r| {
        let path = r["path"].as_str().unwrap().to_string();
        (path.matches('/').count(), path)
    });
    records
}

fn destination(receiver: ReceiverOptions) -> Sandbox {
    let opts = SandboxOptions {
        receiver: Some(receiver),
        ..SandboxOptions::default()
    };
    Sandbox::start(SiteData::empty("senaite"), opts).unwrap()
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn sync_url(sb: &Sandbox, route: &str) -> String {
    format!("{}/sync/{route}", sb.api_url())
}

/// `(status, body)` of a JSON POST to `sync/<route>`.
fn post(sb: &Sandbox, route: &str, body: &Value) -> (u16, Value) {
    let resp = client()
        .post(sync_url(sb, route))
        .basic_auth("admin", Some("admin"))
        .json(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

fn get(sb: &Sandbox, route: &str) -> (u16, Value) {
    let resp = client()
        .get(sync_url(sb, route))
        .basic_auth("admin", Some("admin"))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

/// One blob chunk: `(status, body)`.
fn chunk(sb: &Sandbox, sha: &str, offset: usize, size: usize, bytes: &[u8]) -> (u16, Value) {
    let resp = client()
        .post(sync_url(sb, &format!("blob/{sha}")))
        .basic_auth("admin", Some("admin"))
        .header("Content-Type", "application/octet-stream")
        .header("X-Sync-Offset", offset.to_string())
        .header("X-Sync-Size", size.to_string())
        .body(bytes.to_vec())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

fn apply(sb: &Sandbox, records: &[Value]) -> Vec<Value> {
    let (status, body) = post(sb, "apply", &json!({"records": records}));
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), records.len());
    items
}

fn statuses(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect()
}

/// Uploads every blob the records use, in chunks of `chunk_size`.
fn upload_blobs(sb: &Sandbox, records: &[Value], chunk_size: usize) {
    for r in records {
        for b in r["blobs"].as_array().unwrap() {
            let sha = b["sha256"].as_str().unwrap();
            let bytes = std::fs::read(blobs::blob_path(&demo_dir(), sha)).unwrap();
            let mut offset = 0;
            loop {
                let end = (offset + chunk_size).min(bytes.len());
                let (status, body) = chunk(sb, sha, offset, bytes.len(), &bytes[offset..end]);
                assert_eq!(status, 200, "{body}");
                offset = end;
                if body["complete"] == true {
                    break;
                }
            }
        }
    }
}

fn table_rows(def: &'static TableDef) -> Vec<Value> {
    TableReader::read_all(&demo_dir(), def)
        .unwrap()
        .into_iter()
        .map(|r| Value::Object(row_to_json(def, r)))
        .collect()
}

/// What the loader does: principals, blobs, records in batches (containers first), deferred
/// records again. Returns the records and how many were deferred.
fn load_demo(sb: &Sandbox) -> (Vec<Value>, usize) {
    let (status, body) = post(
        sb,
        "principals",
        &json!({"users": table_rows(&USERS), "groups": table_rows(&GROUPS)}),
    );
    assert_eq!(status, 200, "{body}");
    let records = demo_records();
    upload_blobs(sb, &records, 1 << 20);
    let mut pending = records.clone();
    let mut deferred = 0;
    for _pass in 0..5 {
        let mut again = Vec::new();
        for batch in pending.chunks(40) {
            for (r, item) in batch.iter().zip(apply(sb, batch)) {
                match item["status"].as_str().unwrap() {
                    "created" | "updated" | "unchanged" => {}
                    "deferred" => again.push(r.clone()),
                    other => panic!("{other}: {item}"),
                }
            }
        }
        if again.is_empty() {
            return (records, deferred);
        }
        deferred += again.len();
        pending = again;
    }
    panic!("deferred records never resolved: {pending:?}");
}

fn extract_to(sb: &Sandbox, out: &Path) {
    let creds = Credentials {
        user: "admin".into(),
        password: Secret::new("admin"),
    };
    let mut o = ExtractOptions::new(&sb.site_url(), out.to_path_buf(), creds);
    o.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(1),
    };
    extract::run(&o, &Progress::hidden()).unwrap();
}

const ROUND_TRIP_TABLES: &[&str] = &[
    "objects",
    "workflow_history",
    "workflow_states",
    "local_roles",
    "blobs",
    "users",
    "groups",
];

#[test]
fn applying_the_demo_to_an_empty_sandbox_and_extracting_it_gives_its_tables_back() {
    let sb = destination(ReceiverOptions::default());
    let (records, deferred) = load_demo(&sb);
    assert_eq!(sb.object_count(), records.len());
    // Depth order alone leaves references to later objects: the round trip covers deferral.
    assert!(deferred > 0);
    let dir = TestDir::new("receiver-roundtrip");
    let out = dir.join("snap");
    extract_to(&sb, &out);
    for t in ROUND_TRIP_TABLES {
        let rel = format!("tables/{t}.parquet");
        let a = std::fs::read(demo_dir().join(&rel)).unwrap();
        let b = std::fs::read(out.join(&rel)).unwrap();
        assert!(a == b, "{rel} differs after apply + extract");
    }
    let snap = Snapshot::open(&out).unwrap();
    let demo = Snapshot::open(&demo_dir()).unwrap();
    assert_eq!(snap.manifest.blobs, demo.manifest.blobs);
    assert_eq!(sb.panics(), 0);
}

#[test]
fn a_second_apply_is_unchanged_until_the_destination_edits_an_object() {
    let sb = destination(ReceiverOptions::default());
    let (records, _) = load_demo(&sb);
    let items = apply(&sb, &records[..50]);
    assert!(
        statuses(&items).iter().all(|s| *s == "unchanged"),
        "{items:?}"
    );
    let uid = records[10]["uid"].as_str().unwrap();
    let (_, found) = post(&sb, "lookup", &json!({"uids": [uid, "f".repeat(32)]}));
    let state = &found["uids"][0];
    assert_eq!(state["exists"], true);
    assert_eq!(state["applied_hash"], records[10]["load_hash"]);
    assert_eq!(state["changed_since_apply"], false);
    assert_eq!(state["path"], records[10]["path"]);
    assert_eq!(
        found["uids"][1],
        json!({"uid": "f".repeat(32), "exists": false})
    );
    assert!(sb.touch(uid, "2030-01-01T00:00:00+00:00"));
    let (_, found) = post(&sb, "lookup", &json!({"uids": [uid]}));
    assert_eq!(found["uids"][0]["changed_since_apply"], true);
    assert_eq!(found["uids"][0]["modified"], "2030-01-01T00:00:00+00:00");
    let items = apply(&sb, &records[10..11]);
    assert_eq!(statuses(&items), ["updated"]);
    assert_eq!(items[0]["modified"], records[10]["modified"]);
    let (_, found) = post(&sb, "lookup", &json!({"uids": [uid]}));
    assert_eq!(found["uids"][0]["changed_since_apply"], false);
}

#[test]
fn a_rejected_record_leaves_no_trace_and_the_rest_commits() {
    let sb = destination(ReceiverOptions::default());
    let records = demo_records();
    // Top-level containers only: all of them can be created in one batch.
    let top: Vec<Value> = records
        .iter()
        .filter(|r| r["parent_path"] == "/senaite")
        .cloned()
        .collect();
    let bad = top[1]["uid"].as_str().unwrap().to_string();
    sb.add_fault(FaultRule::reject_record(
        &bad,
        "ConflictingIdError: nope",
        1,
    ));
    let field_uid = top[2]["uid"].as_str().unwrap().to_string();
    sb.add_fault(FaultRule::reject_field(&field_uid, "title", "too long", 1));
    let mut batch = top.clone();
    let mut moved = top[0].clone();
    moved["path"] = json!("/senaite/elsewhere");
    let mut orphan = records
        .iter()
        .find(|r| r["path"].as_str().unwrap().matches('/').count() == 4)
        .unwrap()
        .clone();
    orphan["uid"] = json!("e".repeat(32));
    batch.push(orphan);
    let items = apply(&sb, &batch);
    assert_eq!(items[1]["status"], "failed");
    assert_eq!(items[1]["error"], "ConflictingIdError: nope");
    assert_eq!(items[2]["status"], "partial");
    assert_eq!(items[2]["field_errors"], json!({"title": "too long"}));
    assert_eq!(items[0]["status"], "created");
    let last = items.last().unwrap();
    assert_eq!(last["status"], "failed");
    assert!(
        last["error"].as_str().unwrap().contains("does not exist"),
        "{last}"
    );
    let (_, found) = post(&sb, "lookup", &json!({"uids": [bad, field_uid]}));
    assert_eq!(found["uids"][0]["exists"], false);
    assert_eq!(found["uids"][1]["exists"], true);
    assert_eq!(found["uids"][1]["applied_hash"], Value::Null);
    // The same uid at another path: moved there in place (protocol 2), not duplicated.
    let items = apply(&sb, &[moved]);
    assert_eq!(items[0]["status"], "updated", "{}", items[0]);
    assert_eq!(items[0]["moved_from"], top[0]["path"]);
    assert_eq!(items[0]["path"], "/senaite/elsewhere");
    // The fault is used up: the record goes through now, the partial one is completed.
    let items = apply(&sb, &top[1..3]);
    assert_eq!(statuses(&items), ["created", "updated"]);
    assert_eq!(sb.object_count(), top.len());
}

#[test]
fn references_to_missing_objects_are_deferred_then_resolved() {
    let sb = destination(ReceiverOptions::default());
    let records = demo_records();
    let by_uid = |u: &str| records.iter().find(|r| r["uid"] == u).unwrap().clone();
    // A sample type referencing sample points (a DX list of UIDs) or a contact referencing...
    // any record whose fields reference another record; applied before its target.
    let path_of = |r: &Value| r["path"].as_str().unwrap().to_string();
    let (referrer, field, target) = records
        .iter()
        .find_map(|r| {
            r["fields"].as_object().unwrap().iter().find_map(|(k, v)| {
                let u = v.get("uid").and_then(Value::as_str)?;
                let t = records
                    .iter()
                    .find(|x| x["uid"] == u && x["uid"] != r["uid"])?;
                let related = path_of(r).starts_with(&format!("{}/", path_of(t)))
                    || path_of(t).starts_with(&format!("{}/", path_of(r)));
                (!related).then(|| (r.clone(), k.clone(), u.to_string()))
            })
        })
        .unwrap();
    let target = by_uid(&target);
    // Containers of both first.
    let needed: Vec<Value> = records
        .iter()
        .filter(|r| {
            let p = r["path"].as_str().unwrap();
            let under = |x: &Value| x["path"].as_str().unwrap().starts_with(&format!("{p}/"));
            (under(&referrer) || under(&target)) && r["uid"] != referrer["uid"]
        })
        .cloned()
        .collect();
    for r in &needed {
        let items = apply(&sb, std::slice::from_ref(r));
        assert_ne!(items[0]["status"], "failed", "{}", items[0]);
    }
    let items = apply(&sb, std::slice::from_ref(&referrer));
    assert_eq!(items[0]["status"], "deferred", "{}", items[0]);
    assert!(
        items[0]["deferred_fields"]
            .as_array()
            .unwrap()
            .contains(&json!(field)),
        "{}",
        items[0]
    );
    let uid = referrer["uid"].as_str().unwrap();
    let (_, found) = post(&sb, "lookup", &json!({"uids": [uid]}));
    assert_eq!(found["uids"][0]["applied_hash"], Value::Null);
    assert_eq!(sb.object_record(uid).unwrap()[&field], Value::Null);
    if sb.object_record(target["uid"].as_str().unwrap()).is_none() {
        assert_ne!(
            apply(&sb, std::slice::from_ref(&target))[0]["status"],
            "failed"
        );
    }
    let items = apply(&sb, std::slice::from_ref(&referrer));
    assert_eq!(items[0]["status"], "updated", "{}", items[0]);
    assert_eq!(items[0]["deferred_fields"], json!([]));
    assert_eq!(
        sb.applied_hash(uid).as_deref(),
        referrer["load_hash"].as_str()
    );
    assert_eq!(sb.object_record(uid).unwrap()[&field]["uid"], target["uid"]);
}

#[test]
fn blob_uploads_resume_and_check_their_sha256() {
    let sb = destination(ReceiverOptions {
        max_chunk_bytes: 1024,
        ..ReceiverOptions::default()
    });
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let sha = senaite_sync::jsonx::sha256_hex(&bytes);
    let (status, body) = get(&sb, &format!("blob/{sha}"));
    assert_eq!(
        (status, body["received"].clone(), body["complete"].clone()),
        (200, json!(0), json!(false))
    );
    assert_eq!(chunk(&sb, &sha, 0, 3000, &bytes[..1000]).0, 200);
    // A chunk that skips ahead: 409, naming what the receiver holds.
    let (status, body) = chunk(&sb, &sha, 2000, 3000, &bytes[2000..]);
    assert_eq!(status, 409);
    assert!(
        body["message"].as_str().unwrap().contains("received=1000"),
        "{body}"
    );
    // Too large a chunk: 413.
    assert_eq!(chunk(&sb, &sha, 1000, 3000, &bytes[1000..]).0, 413);
    // Resume from the state the receiver reports.
    let (_, state) = get(&sb, &format!("blob/{sha}"));
    let from = state["received"].as_u64().unwrap() as usize;
    assert_eq!(from, 1000);
    assert_eq!(
        chunk(&sb, &sha, from, 3000, &bytes[from..2000]).1["complete"],
        false
    );
    let (status, body) = chunk(&sb, &sha, 2000, 3000, &bytes[2000..]);
    assert_eq!((status, body["complete"].clone()), (200, json!(true)));
    assert_eq!(body["received"], 3000);
    // Bytes that do not hash to the name: discarded at completion.
    let wrong = "0".repeat(64);
    let (status, body) = chunk(&sb, &wrong, 0, 10, &bytes[..10]);
    assert_eq!(status, 400, "{body}");
    assert_eq!(get(&sb, &format!("blob/{wrong}")).1["received"], 0);
}

#[test]
fn a_sandbox_without_the_receiver_answers_like_an_unknown_route() {
    let plain = Sandbox::start(SiteData::empty("senaite"), SandboxOptions::default()).unwrap();
    let (status, body) = get(&plain, "info");
    assert_eq!(status, 404);
    assert_eq!(body["success"], false);
    assert_eq!(body["type"], "NotFoundError");
    assert_eq!(body["message"], "No route matches senaite/v1/sync/info");
    assert_eq!(post(&plain, "apply", &json!({"records": []})).0, 404);
    let old = Sandbox::start(
        SiteData::empty("senaite"),
        SandboxOptions {
            framework: Framework::V07,
            ..SandboxOptions::default()
        },
    )
    .unwrap();
    let (status, body) = get(&old, "info");
    assert_eq!(status, 200);
    assert_eq!(body["success"], false);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("404 Not Found: "),
        "{body}"
    );
}

#[test]
fn info_credentials_lookup_and_finalize() {
    let sb = destination(ReceiverOptions {
        portal_types: Some(vec!["ClientFolder".into(), "Client".into()]),
        max_batch: 3,
        ..ReceiverOptions::default()
    });
    let (status, info) = get(&sb, "info");
    assert_eq!(status, 200);
    assert_eq!(info["protocol"], 2);
    assert_eq!(info["site_path"], "/senaite");
    assert_eq!(info["max_batch"], 3);
    assert_eq!(info["portal_types"], json!(["ClientFolder", "Client"]));
    assert_eq!(info["user"], "admin");
    let anonymous = client().get(sync_url(&sb, "info")).send().unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let wrong = client()
        .get(sync_url(&sb, "info"))
        .basic_auth("admin", Some("nope"))
        .send()
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let records = demo_records();
    let of_type = |t: &'static str| {
        records
            .iter()
            .filter(move |r| r["portal_type"] == t)
            .cloned()
    };
    let mut batch: Vec<Value> = of_type("ClientFolder").chain(of_type("Client")).collect();
    assert_eq!(batch.len(), 3);
    let items = apply(&sb, &batch);
    assert_eq!(statuses(&items), ["created", "created", "created"]);
    batch.push(batch[0].clone());
    assert_eq!(post(&sb, "apply", &json!({"records": batch})).0, 400);
    let sample_type = of_type("SampleType").next().unwrap();
    let items = apply(&sb, &[sample_type]);
    assert!(
        items[0]["error"]
            .as_str()
            .unwrap()
            .contains("no portal_type SampleType")
    );
    let (_, found) = post(
        &sb,
        "lookup",
        &json!({"paths": ["/senaite", "/senaite/clients", "/senaite/nothing"]}),
    );
    assert_eq!(found["paths"][0]["exists"], true);
    assert_eq!(found["paths"][1]["portal_type"], "ClientFolder");
    assert_eq!(found["paths"][2]["exists"], false);
    let (status, first) = post(&sb, "finalize", &json!({}));
    assert_eq!(status, 200);
    assert_eq!(
        first["counters"],
        json!([{"key": "Client-client", "old": null, "new": 2}])
    );
    let (_, second) = post(&sb, "finalize", &json!({}));
    assert_eq!(second["counters"][0]["old"], 2);
    assert_eq!(sb.id_counters()["Client-client"], 2);
}

#[test]
fn principals_are_created_once_and_flag_new_passwords() {
    let sb = destination(ReceiverOptions::default());
    let body = json!({"users": table_rows(&USERS), "groups": table_rows(&GROUPS)});
    let (_, first) = post(&sb, "principals", &body);
    let items = first["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        table_rows(&USERS).len() + table_rows(&GROUPS).len()
    );
    assert!(items.iter().all(|i| i["status"] == "created"), "{first}");
    let users: Vec<&Value> = items.iter().filter(|i| i["kind"] == "user").collect();
    assert!(users.iter().all(|u| u["needs_password_reset"] == true));
    let (_, second) = post(&sb, "principals", &body);
    let items = second["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["status"] == "unchanged"), "{second}");
    let (_, bad) = post(&sb, "principals", &json!({"users": [{"fullname": "x"}]}));
    assert_eq!(bad["items"][0]["status"], "failed");
}

#[test]
fn apply_faults_drop_after_commit_and_503() {
    let sb = destination(ReceiverOptions::default());
    let records = demo_records();
    let top: Vec<Value> = records
        .iter()
        .filter(|r| r["parent_path"] == "/senaite")
        .cloned()
        .collect();
    let apply_path = Match::PathContains("/sync/apply".into());
    sb.add_fault(FaultRule::new(
        apply_path.clone(),
        FaultKind::Status(503),
        1,
    ));
    // The third apply request (every matching request counts, the faulted first one too).
    sb.add_fault(FaultRule::new(apply_path, FaultKind::DropAfterCommit, 1).after(2));
    // 1st apply: 503, nothing written.
    let (status, _) = post(&sb, "apply", &json!({"records": &top[..2]}));
    assert_eq!(status, 503);
    assert_eq!(sb.object_count(), 0);
    // 2nd: answered normally.
    assert_eq!(statuses(&apply(&sb, &top[..2])), ["created", "created"]);
    // 3rd: committed, but the client sees a dropped connection.
    let sent = client()
        .post(sync_url(&sb, "apply"))
        .basic_auth("admin", Some("admin"))
        .json(&json!({"records": &top[2..4]}))
        .send();
    assert!(sent.is_err(), "{sent:?}");
    assert_eq!(sb.object_count(), 4);
    // The retry finds the work done.
    assert_eq!(
        statuses(&apply(&sb, &top[2..4])),
        ["unchanged", "unchanged"]
    );
}

#[test]
fn bodies_over_the_limits_are_refused_with_413() {
    let sb = destination(ReceiverOptions {
        max_request_bytes: 2048,
        max_batch: 1000,
        ..ReceiverOptions::default()
    });
    let uids: Vec<String> = (0..200).map(|i| format!("{i:032x}")).collect();
    let (status, body) = post(&sb, "lookup", &json!({"uids": uids}));
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_request_bytes")
    );
    let (status, _) = post(&sb, "lookup", &json!({"uids": &uids[..10]}));
    assert_eq!(status, 200);
    let not_json = client()
        .post(sync_url(&sb, "apply"))
        .basic_auth("admin", Some("admin"))
        .body("{nope")
        .send()
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);
}
