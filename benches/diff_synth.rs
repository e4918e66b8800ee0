//! Large synthetic snapshot pairs for the diff benchmark, written directly as snapshot files.
//! Real records of the demo snapshot (a client, a contact, a sample and an analysis, with their
//! review histories and workflow states) are cloned with new UIDs, ids, paths and references into
//! clients with two contacts and samples of four analyses each (the shapes of
//! `src/sandbox/synth.rs`). The pair shares every object except a deterministic 1 in `every`:
//! results entered and submitted, titles edited, contacts renamed (moved), deactivated or
//! deleted, local roles granted, catalog counters bumped (ignored by the default rules), and new
//! objects created.

use std::collections::BTreeMap;
use std::path::Path;

use senaite_sync::jsonx;
use senaite_sync::snapshot::table::{
    Cell, GROUPS, LOCAL_ROLES, OBJECTS, SETTINGS, TableReader, USERS, WORKFLOW_HISTORY,
    WORKFLOW_STATES,
};
use senaite_sync::snapshot::writer::{SnapshotParts, SnapshotWriter};

const CLIENT: &str = "6f1d98a82d7b44d29e3153f29fe73d95";
const CONTACT: &str = "2eea41b8c8c5489cb010656544d23f0b";
const SAMPLE: &str = "19d6c02879fa47da9685067a80024e0e";
const ANALYSIS: &str = "240db02c9d5d4142a65e17a4333dda7b";
const CLIENT_PATH: &str = "/senaite/clients/client-1";
const SAMPLE_ID: &str = "W-0002";
const SAMPLES_PER_CLIENT: usize = 100;
const ANALYSES_PER_SAMPLE: usize = 4;

/// A template object: its objects row and its rows of the per-object tables.
struct Template {
    row: Vec<Cell>,
    history: Vec<Vec<Cell>>,
    states: Vec<Vec<Cell>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Client,
    Contact,
    Sample,
    Analysis,
}

/// What differs for one object between OLD and NEW.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Change {
    None,
    Created,
    Vanished,
    Moved,
    Roles,
    Deactivated,
    IgnoredOnly,
    Edited,
}

struct Spec {
    uid: String,
    kind: Kind,
    client: usize,
    sample: usize,
    analysis: usize,
    client_uid: String,
    contact_uid: String,
    sample_uid: String,
    change: Change,
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uid_of(n: u64) -> String {
    format!("{:016x}{:016x}", splitmix64(n), splitmix64(n ^ 0x5eed))
}

/// The change of object `n`: 1 in `every` objects changes, in rotating kinds.
fn change_of(n: u64, kind: Kind, every: u64) -> Change {
    let h = splitmix64(n ^ 0xd1ff);
    if !h.is_multiple_of(every) {
        return Change::None;
    }
    match ((h / every) % 20, kind) {
        (0, Kind::Contact | Kind::Analysis) => Change::Vanished,
        (1, Kind::Contact | Kind::Sample) => Change::Moved,
        (2, _) => Change::Roles,
        (3, Kind::Contact | Kind::Client) => Change::Deactivated,
        (4 | 5, Kind::Sample | Kind::Analysis) => Change::IgnoredOnly,
        _ => Change::Edited,
    }
}

fn templates(demo: &Path) -> BTreeMap<&'static str, Template> {
    let objects = TableReader::read_all(demo, &OBJECTS).unwrap();
    let history = TableReader::read_all(demo, &WORKFLOW_HISTORY).unwrap();
    let states = TableReader::read_all(demo, &WORKFLOW_STATES).unwrap();
    let of = |rows: &[Vec<Cell>], uid: &str| -> Vec<Vec<Cell>> {
        rows.iter()
            .filter(|r| r[0].as_str() == Some(uid))
            .cloned()
            .collect()
    };
    [CLIENT, CONTACT, SAMPLE, ANALYSIS]
        .into_iter()
        .map(|u| {
            let t = Template {
                row: of(&objects, u).pop().expect("template object in data/demo"),
                history: of(&history, u),
                states: of(&states, u),
            };
            (u, t)
        })
        .collect()
}

/// The object specs of a pair of `n`-object snapshots, sorted by uid.
fn specs(n: usize, every: u64) -> Vec<Spec> {
    let mut out = Vec::with_capacity(n + n / 100);
    let mut next = 0u64;
    let mut c = 0usize;
    let mut push = |out: &mut Vec<Spec>, kind, client, sample, analysis, refs: [&str; 3]| {
        next += 1;
        let uid = uid_of(next);
        let change = change_of(next, kind, every);
        out.push(Spec {
            uid: uid.clone(),
            kind,
            client,
            sample,
            analysis,
            client_uid: refs[0].to_string(),
            contact_uid: refs[1].to_string(),
            sample_uid: refs[2].to_string(),
            change,
        });
        if change == Change::Edited && splitmix64(next).is_multiple_of(4) {
            // A new object beside some edited ones: a created sibling (NEW only).
            next += 1;
            out.push(Spec {
                uid: uid_of(next),
                kind,
                client,
                sample: sample + 500,
                analysis: analysis + 10,
                client_uid: refs[0].to_string(),
                contact_uid: refs[1].to_string(),
                sample_uid: refs[2].to_string(),
                change: Change::Created,
            });
        }
        uid
    };
    while out.len() < n {
        c += 1;
        let client = push(&mut out, Kind::Client, c, 0, 0, ["", "", ""]);
        let contact = push(&mut out, Kind::Contact, c, 1, 0, [&client, "", ""]);
        push(&mut out, Kind::Contact, c, 2, 0, [&client, "", ""]);
        for s in 1..=SAMPLES_PER_CLIENT {
            if out.len() >= n {
                break;
            }
            let sample = push(&mut out, Kind::Sample, c, s, 0, [&client, &contact, ""]);
            for a in 1..=ANALYSES_PER_SAMPLE {
                push(
                    &mut out,
                    Kind::Analysis,
                    c,
                    s,
                    a,
                    [&client, &contact, &sample],
                );
            }
        }
    }
    out.sort_by(|a, b| a.uid.cmp(&b.uid));
    out
}

/// Replaces every occurrence of each `from` with its `to`, longest first.
fn substitute(text: &str, pairs: &mut [(String, String)]) -> String {
    pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    let mut out = text.to_string();
    for (from, to) in pairs.iter() {
        if !from.is_empty() && out.contains(from.as_str()) {
            out = out.replace(from.as_str(), to);
        }
    }
    out
}

/// An object's row, then its history, state and local-role rows.
type ObjectRows = (Vec<Cell>, Vec<Vec<Cell>>, Vec<Vec<Cell>>, Vec<Vec<Cell>>);

/// The rows of one object in OLD (`new == false`) or NEW.
fn rows_of(spec: &Spec, t: &Template, new: bool) -> ObjectRows {
    let client_path = format!("/senaite/clients/synth-client-{}", spec.client);
    let sample_id = format!("S{:04}-{:04}", spec.client, spec.sample);
    let (tpl_uid, own_path) = match spec.kind {
        Kind::Client => (CLIENT, client_path.clone()),
        Kind::Contact => (CONTACT, format!("{client_path}/contact-{}", spec.sample)),
        Kind::Sample => (SAMPLE, format!("{client_path}/{sample_id}")),
        Kind::Analysis => (
            ANALYSIS,
            format!("{client_path}/{sample_id}/analysis-{}", spec.analysis),
        ),
    };
    let moved = new && spec.change == Change::Moved;
    let own_path = if moved {
        format!("{own_path}-renamed")
    } else {
        own_path
    };
    let tpl_path = t.row[2].as_str().unwrap_or_default().to_string();
    let mut pairs = vec![
        (tpl_uid.to_string(), spec.uid.clone()),
        (tpl_path, own_path.clone()),
        (CLIENT_PATH.to_string(), client_path),
        (SAMPLE_ID.to_string(), sample_id),
    ];
    if spec.kind != Kind::Client {
        pairs.push((CLIENT.to_string(), spec.client_uid.clone()));
    }
    if matches!(spec.kind, Kind::Sample | Kind::Analysis) {
        pairs.push((CONTACT.to_string(), spec.contact_uid.clone()));
    }
    if spec.kind == Kind::Analysis {
        pairs.push((SAMPLE.to_string(), spec.sample_uid.clone()));
    }
    let mut fields: serde_json::Value =
        serde_json::from_str(&substitute(t.row[11].as_str().unwrap_or("{}"), &mut pairs)).unwrap();
    let f = fields.as_object_mut().unwrap();
    let mut state = t.row[9].as_str().unwrap_or("active").to_string();
    let mut history: Vec<Vec<Cell>> = t
        .history
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r[0] = Cell::s(&spec.uid);
            r
        })
        .collect();
    if spec.kind == Kind::Analysis {
        f.insert(
            "Result".into(),
            serde_json::json!(format!("{}", spec.uid.len() * spec.analysis)),
        );
    }
    let mut roles = Vec::new();
    if new {
        match spec.change {
            Change::Edited if spec.kind == Kind::Analysis => {
                f.insert("Result".into(), serde_json::json!("7.25"));
                state = "to_be_verified".into();
                history.push(transition(&history, &spec.uid, "submit", &state));
            }
            Change::Edited => {
                f.insert(
                    "title".into(),
                    serde_json::json!(format!("Edited {}", spec.uid)),
                );
            }
            Change::Deactivated => {
                state = "inactive".into();
                history.push(transition(&history, &spec.uid, "deactivate", &state));
            }
            Change::IgnoredOnly => {
                f.insert("getProgress".into(), serde_json::json!(75));
            }
            Change::Roles => roles.push(vec![
                Cell::s(&spec.uid),
                Cell::s("labman"),
                Cell::s("user"),
                Cell::StrList(vec!["Owner".into()]),
                Cell::StrList(vec![]),
                Cell::Bool(Some(true)),
            ]),
            _ => {}
        }
    }
    f.insert("review_state".into(), serde_json::json!(state));
    let text = String::from_utf8(jsonx::canonical(&fields)).unwrap();
    let get = |k: &str| fields.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let mut row = t.row.clone();
    row[0] = Cell::s(&spec.uid);
    row[2] = Cell::s(&own_path);
    row[3] = Cell::opt(get("parent_uid"));
    row[4] = Cell::opt(get("parent_path"));
    row[5] = Cell::s(own_path.rsplit('/').next().unwrap_or_default());
    row[6] = Cell::opt(get("title"));
    row[9] = Cell::s(&state);
    row[10] = Cell::s(jsonx::sha256_hex(text.as_bytes()));
    row[11] = Cell::s(text);
    let states = t
        .states
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r[0] = Cell::s(&spec.uid);
            r[2] = Cell::s(&state);
            r
        })
        .collect();
    (row, history, states, roles)
}

fn transition(history: &[Vec<Cell>], uid: &str, action: &str, state: &str) -> Vec<Cell> {
    let wf = history
        .last()
        .and_then(|r| r[1].as_str())
        .unwrap_or("senaite_analysis_workflow")
        .to_string();
    vec![
        Cell::s(uid),
        Cell::s(wf),
        Cell::Int(Some(history.len() as i64)),
        Cell::s(action),
        Cell::s("analyst1"),
        Cell::s(""),
        Cell::s(state),
        Cell::s("2026-12-01T10:00:00.123456"),
        Cell::s("2026-12-01 10:00:00"),
        Cell::s("{}"),
    ]
}

/// What a generated pair holds.
pub struct Generated {
    /// Objects in OLD.
    pub old_objects: usize,
    /// Objects in NEW.
    pub new_objects: usize,
    /// Objects per kind of change.
    pub changes: BTreeMap<String, usize>,
}

/// Writes OLD and NEW of about `n` objects each, 1 in `every` changed.
pub fn generate(demo: &Path, n: usize, every: u64, old_dir: &Path, new_dir: &Path) -> Generated {
    let tpl = templates(demo);
    let mut old = SnapshotWriter::create(old_dir).unwrap();
    let mut new = SnapshotWriter::create(new_dir).unwrap();
    let mut counts = [BTreeMap::new(), BTreeMap::new()];
    let mut g = Generated {
        old_objects: 0,
        new_objects: 0,
        changes: BTreeMap::new(),
    };
    for spec in specs(n, every) {
        *g.changes.entry(format!("{:?}", spec.change)).or_default() += 1;
        let t = &tpl[match spec.kind {
            Kind::Client => CLIENT,
            Kind::Contact => CONTACT,
            Kind::Sample => SAMPLE,
            Kind::Analysis => ANALYSIS,
        }];
        let sides = [
            (spec.change != Change::Created, false),
            (spec.change != Change::Vanished, true),
        ];
        for (i, (present, is_new)) in sides.into_iter().enumerate() {
            if !present {
                continue;
            }
            let w = if is_new { &mut new } else { &mut old };
            let (row, history, states, roles) = rows_of(&spec, t, is_new);
            *counts[i]
                .entry(row[1].as_str().unwrap_or_default().to_string())
                .or_insert(0u64) += 1;
            w.table(&OBJECTS).unwrap().push(row).unwrap();
            for r in history {
                w.table(&WORKFLOW_HISTORY).unwrap().push(r).unwrap();
            }
            for r in states {
                w.table(&WORKFLOW_STATES).unwrap().push(r).unwrap();
            }
            for r in roles {
                w.table(&LOCAL_ROLES).unwrap().push(r).unwrap();
            }
        }
    }
    let manifest = senaite_sync::snapshot::Snapshot::open(demo)
        .unwrap()
        .manifest;
    for (i, mut w) in [old, new].into_iter().enumerate() {
        for def in [&USERS, &GROUPS, &SETTINGS] {
            for r in TableReader::read_all(demo, def).unwrap() {
                w.table(def).unwrap().push(r).unwrap();
            }
        }
        let c = std::mem::take(&mut counts[i]);
        if i == 0 {
            g.old_objects = c.values().sum::<u64>() as usize;
        } else {
            g.new_objects = c.values().sum::<u64>() as usize;
        }
        w.finish(SnapshotParts {
            source: manifest.source.clone(),
            request: manifest.request.clone(),
            started_at: manifest.started_at.clone(),
            counts: c,
            ..SnapshotParts::default()
        })
        .unwrap();
    }
    g
}
