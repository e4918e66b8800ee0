//! A large synthetic snapshot grown from a small real one by cloning its clients. Every object
//! under a `Client` (the clients themselves, their contacts, samples, analyses, attachments) is
//! one unit; the unit is copied until the snapshot holds about `n` objects, each copy with new
//! UIDs, new client and sample ids (so every path and id stays unique), and every reference
//! inside the copy pointing into the same copy. Everything else (setup, folders, the lab) is kept
//! once, as in a real lab where samples and analyses dominate. The fields stay exactly as the
//! source shaped them: a template extracted from a SENAITE 1.x keeps its 1.x field names,
//! `bika_setup` paths and reference URLs, so a pipeline sees a 1.x lab of any size.
//!
//! Strings are rewritten token by token inside each JSON string value (object keys untouched,
//! so the canonical key order holds): a 32-hex run that is a cloned UID is replaced, and a path
//! segment or whole string that is a renamed id is replaced.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use senaite_sync::jsonx;
use senaite_sync::snapshot::blobs;
use senaite_sync::snapshot::manifest::BlobTotals;
use senaite_sync::snapshot::table::{
    BLOBS, Cell, GROUPS, LOCAL_ROLES, OBJECTS, SETTINGS, TableReader, USERS, WORKFLOW_HISTORY,
    WORKFLOW_STATES,
};
use senaite_sync::snapshot::writer::{SnapshotParts, SnapshotWriter};

/// Types whose ids are renamed in a copy (globally unique ids in SENAITE); every other id is
/// unique within its container, which a renamed ancestor already makes unique.
const RENAMED_TYPES: &[&str] = &["Client", "AnalysisRequest", "Sample", "Batch"];

/// Rows of the per-object tables, by uid.
type PerObject = HashMap<String, Vec<Vec<Cell>>>;

fn by_uid(rows: Vec<Vec<Cell>>) -> PerObject {
    let mut out: PerObject = HashMap::new();
    for r in rows {
        let uid = r[0].as_str().unwrap_or_default().to_string();
        out.entry(uid).or_default().push(r);
    }
    out
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The uid of `uid`'s copy number `copy`: 32 hex digits, deterministic.
fn derived_uid(uid: &str, copy: usize) -> String {
    let seed = uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let x = splitmix64(seed ^ (copy as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    format!("{:016x}{:016x}", x, splitmix64(x ^ 0x5eed))
}

/// What a copy changes: uids and ids of the unit.
struct Renames {
    uids: HashMap<String, String>,
    ids: HashMap<String, String>,
}

impl Renames {
    fn identity() -> Renames {
        Renames {
            uids: HashMap::new(),
            ids: HashMap::new(),
        }
    }

    fn of(unit: &[Vec<Cell>], copy: usize) -> Renames {
        let mut uids = HashMap::new();
        let mut ids = HashMap::new();
        for row in unit {
            let uid = row[0].as_str().unwrap_or_default();
            uids.insert(uid.to_string(), derived_uid(uid, copy));
            let ty = row[1].as_str().unwrap_or_default();
            if RENAMED_TYPES.contains(&ty) {
                let id = row[5].as_str().unwrap_or_default();
                ids.insert(id.to_string(), format!("{id}-c{copy}"));
            }
        }
        Renames { uids, ids }
    }

    /// The string `s` with cloned uids and renamed ids (whole string or path segment) replaced.
    fn string(&self, s: &str) -> String {
        if let Some(id) = self.ids.get(s) {
            return id.clone();
        }
        let mut out = String::with_capacity(s.len() + 8);
        let b = s.as_bytes();
        let mut i = 0;
        let mut seg_start = 0;
        while i < b.len() {
            if b[i].is_ascii_hexdigit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
                let mut j = i;
                while j < b.len() && b[j].is_ascii_hexdigit() {
                    j += 1;
                }
                if j - i == 32
                    && (j == b.len() || !b[j].is_ascii_alphanumeric())
                    && let Some(new) = self.uids.get(&s[i..j])
                {
                    out.push_str(&s[seg_start..i]);
                    out.push_str(new);
                    seg_start = j;
                }
                i = j.max(i + 1);
                continue;
            }
            if b[i] == b'/' {
                // A path segment that is a renamed id.
                let end = s[i + 1..]
                    .find(['/', '?', '#'])
                    .map_or(b.len(), |p| i + 1 + p);
                if let Some(new) = self.ids.get(&s[i + 1..end]) {
                    out.push_str(&s[seg_start..=i]);
                    out.push_str(new);
                    seg_start = end;
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
        out.push_str(&s[seg_start..]);
        out
    }

    /// The JSON text `text` with every string value (not the keys) rewritten.
    fn json(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 64);
        let b = text.as_bytes();
        let mut i = 0;
        let mut copied = 0;
        while i < b.len() {
            if b[i] != b'"' {
                i += 1;
                continue;
            }
            let start = i + 1;
            let mut j = start;
            let mut escaped = false;
            while j < b.len() && b[j] != b'"' {
                if b[j] == b'\\' {
                    escaped = true;
                    j += 1;
                }
                j += 1;
            }
            let end = j.min(b.len());
            let is_key = text[end..]
                .trim_start_matches(|c: char| c == '"' || c.is_ascii_whitespace())
                .starts_with(':');
            if !is_key && !escaped {
                let new = self.string(&text[start..end]);
                if new != text[start..end] {
                    out.push_str(&text[copied..start]);
                    out.push_str(&new);
                    copied = end;
                }
            }
            i = end + 1;
        }
        out.push_str(&text[copied..]);
        out
    }

    fn cell(&self, c: &Cell) -> Cell {
        match c {
            Cell::Str(Some(s)) => Cell::s(self.string(s)),
            other => other.clone(),
        }
    }
}

/// What was written.
pub struct Cloned {
    /// Objects in the snapshot.
    pub objects: usize,
    /// Copies of the client unit (the template's own is copy 0).
    pub copies: usize,
}

/// Writes `out`: `template` with its client unit copied until about `n` objects.
pub fn generate(template: &Path, n: usize, out: &Path) -> Cloned {
    let objects = TableReader::read_all(template, &OBJECTS).unwrap();
    let client_paths: Vec<String> = objects
        .iter()
        .filter(|r| r[1].as_str() == Some("Client"))
        .filter_map(|r| r[2].as_str().map(str::to_string))
        .collect();
    assert!(
        !client_paths.is_empty(),
        "{}: no Client to clone",
        template.display()
    );
    let in_unit = |path: &str| {
        client_paths
            .iter()
            .any(|c| path == c || path.starts_with(&format!("{c}/")))
    };
    let (unit, kept): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|r| in_unit(r[2].as_str().unwrap_or_default()));
    let copies = (n.saturating_sub(kept.len()) / unit.len()).max(1);
    let history = by_uid(TableReader::read_all(template, &WORKFLOW_HISTORY).unwrap());
    let states = by_uid(TableReader::read_all(template, &WORKFLOW_STATES).unwrap());
    let roles = by_uid(TableReader::read_all(template, &LOCAL_ROLES).unwrap());
    let blob_rows = by_uid(TableReader::read_all(template, &BLOBS).unwrap());

    // Copy 0 is the template's own unit; the others are renamed.
    let renames: Vec<Renames> = (0..copies)
        .map(|c| {
            if c == 0 {
                Renames::identity()
            } else {
                Renames::of(&unit, c)
            }
        })
        .collect();
    // (uid, copy, index in unit) for the copies, (uid, usize::MAX, index in kept) for the rest;
    // written in uid order, as every table is sorted by uid.
    let mut order: Vec<(String, usize, usize)> = kept
        .iter()
        .enumerate()
        .map(|(i, r)| (r[0].as_str().unwrap_or_default().to_string(), usize::MAX, i))
        .collect();
    for (copy, ren) in renames.iter().enumerate() {
        for (i, r) in unit.iter().enumerate() {
            let uid = r[0].as_str().unwrap_or_default();
            let new = ren
                .uids
                .get(uid)
                .cloned()
                .unwrap_or_else(|| uid.to_string());
            order.push((new, copy, i));
        }
    }
    order.sort_unstable();

    let mut w = SnapshotWriter::create(out).unwrap();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut shas = BTreeSet::new();
    for (_, copy, i) in &order {
        let (template_row, ren) = if *copy == usize::MAX {
            (&kept[*i], None)
        } else if *copy == 0 {
            (&unit[*i], None)
        } else {
            (&unit[*i], Some(&renames[*copy]))
        };
        let uid = template_row[0].as_str().unwrap_or_default();
        let row = match ren {
            None => template_row.clone(),
            Some(ren) => {
                let mut row: Vec<Cell> = template_row.iter().map(|c| ren.cell(c)).collect();
                let fields = ren.json(template_row[11].as_str().unwrap_or("{}"));
                row[10] = Cell::s(jsonx::sha256_hex(fields.as_bytes()));
                row[11] = Cell::s(fields);
                row[12] = Cell::s(ren.json(template_row[12].as_str().unwrap_or("{}")));
                row
            }
        };
        *counts
            .entry(row[1].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
        w.table(&OBJECTS).unwrap().push(row).unwrap();
        for (def, rows) in [
            (&WORKFLOW_HISTORY, &history),
            (&WORKFLOW_STATES, &states),
            (&LOCAL_ROLES, &roles),
            (&BLOBS, &blob_rows),
        ] {
            for r in rows.get(uid).into_iter().flatten() {
                let r: Vec<Cell> = match ren {
                    Some(ren) => r.iter().map(|c| ren.cell(c)).collect(),
                    None => r.clone(),
                };
                if def.name == BLOBS.name
                    && let Some(sha) = r[5].as_str()
                {
                    shas.insert(sha.to_string());
                }
                w.table(def).unwrap().push(r).unwrap();
            }
        }
    }
    let mut totals = BlobTotals::default();
    for sha in &shas {
        let dst = blobs::blob_path(out, sha);
        totals.bytes += blobs::link_blob(&blobs::blob_path(template, sha), &dst).unwrap();
        totals.count += 1;
    }
    for def in [&USERS, &GROUPS, &SETTINGS] {
        for r in TableReader::read_all(template, def).unwrap() {
            w.table(def).unwrap().push(r).unwrap();
        }
    }
    let manifest = senaite_sync::snapshot::Snapshot::open(template)
        .unwrap()
        .manifest;
    w.finish(SnapshotParts {
        source: manifest.source.clone(),
        request: manifest.request.clone(),
        started_at: manifest.started_at.clone(),
        counts,
        blobs: totals,
        notes: manifest.notes.clone(),
    })
    .unwrap();
    Cloned {
        objects: order.len(),
        copies,
    }
}
