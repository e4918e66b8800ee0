//! `diff` speed and memory on two large synthetic snapshots, side by side with DuckDB computing
//! the same diff over the same Parquet files in the same run. The pair (default 1,000,000
//! objects each, 1 % changed; `benches/diff_synth.rs`) is generated once into
//! `target/diff-bench/` and reused. Each contender runs as a child process; wall time and the
//! child's peak RSS (VmHWM, sampled from `/proc`) are reported.
//!
//! Run: `cargo bench --bench diff` (or `-- 200000` for another size). DuckDB for Python is
//! taken from `SENAITE_SYNC_PYTHON`, else `~/.cache/senaite-sync/pyenv/bin/python`; without it
//! the DuckDB rows are skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "diff_synth.rs"]
mod diff_synth;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generator version: bump when the generated data changes, so cached pairs are rebuilt.
const GENERATION: u32 = 4;

/// DuckDB: full outer join on uid comparing content_hash (objects only), as the issue states it.
const DUCKDB_OBJECTS: &str = r#"
import duckdb, json, sys
old, new = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
rows = con.sql(f"""
  SELECT coalesce(n.uid, o.uid) AS uid, coalesce(n.portal_type, o.portal_type) AS portal_type,
         CASE WHEN o.uid IS NULL THEN 'created' WHEN n.uid IS NULL THEN 'deleted'
              WHEN o.path <> n.path THEN 'moved' ELSE 'modified' END AS status
  FROM '{old}/tables/objects.parquet' o FULL OUTER JOIN '{new}/tables/objects.parquet' n
    ON o.uid = n.uid
  WHERE o.uid IS NULL OR n.uid IS NULL OR o.content_hash <> n.content_hash
  ORDER BY 1""").fetchall()
counts = {}
for _, _, s in rows:
    counts[s] = counts.get(s, 0) + 1
print(json.dumps({"objects": len(rows), **counts}))
"#;

/// DuckDB: the same, plus every per-object table compared row for row (EXCEPT ALL both ways),
/// which is what `diff` compares too.
const DUCKDB_ALL: &str = r#"
import duckdb, json, sys
old, new = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
parts = [f"""SELECT coalesce(n.uid, o.uid) AS uid
  FROM '{old}/tables/objects.parquet' o FULL OUTER JOIN '{new}/tables/objects.parquet' n
    ON o.uid = n.uid
  WHERE o.uid IS NULL OR n.uid IS NULL OR o.content_hash <> n.content_hash
     OR o.path IS DISTINCT FROM n.path OR o.review_state IS DISTINCT FROM n.review_state"""]
for t in ["workflow_history", "workflow_states", "local_roles", "blobs"]:
    a, b = f"'{old}/tables/{t}.parquet'", f"'{new}/tables/{t}.parquet'"
    parts.append(f"SELECT uid FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})")
    parts.append(f"SELECT uid FROM (SELECT * FROM {b} EXCEPT ALL SELECT * FROM {a})")
rows = con.sql("SELECT DISTINCT uid FROM (" + " UNION ALL ".join(parts) + ") ORDER BY 1").fetchall()
print(json.dumps({"objects": len(rows)}))
"#;

/// DuckDB: full outer join on uid comparing `record_hash` over the digest index, the same
/// comparison `diff` starts from (every object and per-object row covered; no field detail).
const DUCKDB_DIGESTS: &str = r#"
import duckdb, json, sys
old, new = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
rows = con.sql(f"""
  SELECT coalesce(n.uid, o.uid) AS uid
  FROM '{old}/tables/object_digests.parquet' o
  FULL OUTER JOIN '{new}/tables/object_digests.parquet' n ON o.uid = n.uid
  WHERE (o.in_objects OR n.in_objects)
    AND (o.uid IS NULL OR n.uid IS NULL OR o.in_objects IS DISTINCT FROM n.in_objects
         OR o.record_hash <> n.record_hash)
  ORDER BY 1""").fetchall()
print(json.dumps({"objects": len(rows)}))
"#;

#[path = "harness.rs"]
mod harness;

/// `snap` as a snapshot written before the digest index existed: its files hard-linked into
/// `to`, the index left out of the manifest.
fn without_digests(snap: &Path, to: &Path) {
    use senaite_sync::snapshot::Manifest;
    if to.join("manifest.json").is_file() {
        return;
    }
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    let index = "tables/object_digests.parquet";
    let mut m = Manifest::read(snap).unwrap();
    m.files.retain(|f| f.path != index);
    for f in &m.files {
        let dst = to.join(&f.path);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::hard_link(snap.join(&f.path), &dst).unwrap();
    }
    m.snapshot_id = Manifest::compute_id(&m.files);
    m.write(to).unwrap();
}

fn main() {
    let sizes = harness::sizes_or(&[1_000_000]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (target, bin) = harness::release_binary(root);
    let python = python();
    for n in sizes {
        let dir = target.join(format!("diff-bench/n{n}-g{GENERATION}"));
        let (old, new) = (dir.join("old"), dir.join("new"));
        if !old.join("manifest.json").is_file() || !new.join("manifest.json").is_file() {
            let started = Instant::now();
            let g = diff_synth::generate(&root.join("data/demo"), n, 100, &old, &new);
            println!(
                "generated {} / {} objects in {:.1}s: {:?}",
                g.old_objects,
                g.new_objects,
                started.elapsed().as_secs_f64(),
                g.changes
            );
        }
        let size = |p: &Path| {
            let m = std::fs::metadata(p.join("tables/objects.parquet"))
                .unwrap()
                .len();
            m / (1 << 20)
        };
        println!(
            "pair {} (objects.parquet {} MB / {} MB)",
            dir.display(),
            size(&old),
            size(&new)
        );
        println!(
            "{:<46} {:>8} {:>10} {:>10}",
            "contender", "seconds", "peak RSS", "objects"
        );
        let report = |name: &str, m: Measured, objects: String| {
            println!(
                "{name:<46} {:>8.2} {:>7} MB {objects:>10}",
                m.secs,
                m.rss_kb / 1024
            );
        };
        let mut c = Command::new(&bin);
        c.arg("diff").arg(&old).arg(&new).args(["--json", "-q"]);
        let (m, out) = measure(c);
        report("senaite-sync diff --json", m, json_objects(&out));
        let mut c = Command::new(&bin);
        c.arg("diff")
            .arg(&old)
            .arg(&new)
            .args(["--json", "-q", "--brief"]);
        let (m, out) = measure(c);
        report("senaite-sync diff --json --brief", m, json_objects(&out));
        let (old_plain, new_plain) = (dir.join("old-no-index"), dir.join("new-no-index"));
        without_digests(&old, &old_plain);
        without_digests(&new, &new_plain);
        let mut c = Command::new(&bin);
        c.arg("diff")
            .arg(&old_plain)
            .arg(&new_plain)
            .args(["--json", "-q"]);
        let (m, out) = measure(c);
        report(
            "senaite-sync diff --json (no digest index)",
            m,
            json_objects(&out),
        );
        let delta = dir.join("delta");
        let mut c = Command::new(&bin);
        c.arg("diff")
            .arg(&old)
            .arg(&new)
            .args(["--json", "-q", "--force", "--out"])
            .arg(&delta);
        let (m, out) = measure(c);
        report(
            "senaite-sync diff --json --out DELTA",
            m,
            json_objects(&out),
        );
        let Some(py) = &python else {
            println!("(no python with duckdb: DuckDB rows skipped)");
            continue;
        };
        for (name, script) in [
            ("duckdb: object_digests.record_hash join", DUCKDB_DIGESTS),
            ("duckdb: objects.content_hash join", DUCKDB_OBJECTS),
            ("duckdb: + per-object tables (EXCEPT ALL)", DUCKDB_ALL),
        ] {
            let mut c = Command::new(py);
            c.arg("-c").arg(script).arg(&old).arg(&new);
            let (m, out) = measure(c);
            let last = out.lines().last().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
            report(name, m, v["objects"].to_string());
        }
    }
}

fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("SENAITE_SYNC_PYTHON").map(PathBuf::from),
        std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".cache/senaite-sync/pyenv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", "import duckdb"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Objects listed in a diff report plus those that differ only in ignored values.
fn json_objects(out: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(out).unwrap_or_default();
    let listed = v["objects"].as_array().map_or(0, Vec::len);
    let ignored = v["totals"]["ignored_only"].as_u64().unwrap_or(0);
    format!("{}", listed as u64 + ignored)
}

/// Wall time and peak RSS of one child run.
struct Measured {
    secs: f64,
    rss_kb: u64,
}

fn measure(mut cmd: Command) -> (Measured, String) {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let mut child = cmd
        .stdout(out_file.reopen().unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (status, peak) = harness::wait_with_peak_rss(&mut child, Duration::from_millis(10));
    assert!(
        status.code().is_some_and(|c| c <= 1),
        "{cmd:?} failed: {status}"
    );
    let secs = started.elapsed().as_secs_f64();
    let out = std::fs::read_to_string(out_file.path()).unwrap();
    (Measured { secs, rss_kb: peak }, out)
}
