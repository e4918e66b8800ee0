//! The snapshot's tables open as they are in the everyday Python tools: pyarrow (and pandas or
//! DuckDB when importable) read every `tables/*.parquet` of `data/demo` (when present) and of a
//! snapshot extracted here from the sandbox, and each row count equals manifest.json's `rows`
//! (`tests/python/read_snapshot.py`).
//!
//! The interpreter is `SENAITE_SYNC_PYTHON`, else `~/.cache/senaite-sync/pyenv/bin/python3`
//! (the venv `.ci/run` makes) when it exists, else `python3`. Without pyarrow the test prints a
//! skip message, or fails when `SENAITE_SYNC_REQUIRE_PYARROW=1` (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use senaite_sync::sandbox::fixtures::site_from_fixtures;
use senaite_sync::sandbox::{Sandbox, SandboxOptions};
use senaite_sync::snapshot::Snapshot;

use crate::util::{TestDir, fixture_path, python};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the interpreter imports pyarrow; otherwise fails (CI) or says why it skips.
fn have_pyarrow(py: &Path) -> bool {
    let ok = Command::new(py)
        .args(["-c", "import pyarrow"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("SENAITE_SYNC_REQUIRE_PYARROW").as_deref() != Ok("1"),
            "SENAITE_SYNC_REQUIRE_PYARROW=1 but `{} -c 'import pyarrow'` fails",
            py.display()
        );
        eprintln!(
            "skipped: `{} -c 'import pyarrow'` fails (install pyarrow, or set SENAITE_SYNC_PYTHON)",
            py.display()
        );
    }
    ok
}

/// Runs read_snapshot.py on `snap` and asserts it agrees with the manifest.
fn python_reads(py: &Path, snap: &Path) {
    let script = repo().join("tests/python/read_snapshot.py");
    let out = Command::new(py)
        .arg(&script)
        .arg(snap)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "read_snapshot.py {} failed ({}):\n{stdout}\n{stderr}",
        snap.display(),
        out.status
    );
    eprintln!("{stdout}");
    let manifest = Snapshot::open(snap).unwrap().manifest;
    let tables = manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with("tables/"))
        .count();
    assert!(tables > 0, "{} lists no tables", snap.display());
    assert!(
        stdout.contains(&format!(
            "read_snapshot: {tables} tables, all row counts equal"
        )),
        "unexpected summary:\n{stdout}"
    );
}

/// A snapshot extracted by the built binary from the sandbox serving the recorded fixture site.
fn extract_fixture_site(dir: &TestDir) -> PathBuf {
    let data = site_from_fixtures(&fixture_path("senaite/site")).unwrap();
    let sb = Sandbox::start(data, SandboxOptions::default()).unwrap();
    let out = dir.join("snap");
    let res = Command::new(env!("CARGO_BIN_EXE_senaite-sync"))
        .args([
            "--progress",
            "never",
            "extract",
            "--url",
            &sb.site_url(),
            "--out",
        ])
        .arg(&out)
        .env("SENAITE_USER", "admin")
        .env("SENAITE_PASSWORD", "admin")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "extract from the sandbox failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    sb.shutdown();
    out
}

#[test]
fn python_tools_read_every_table_with_the_manifest_row_counts() {
    let py = python();
    if !have_pyarrow(&py) {
        return;
    }
    let demo = repo().join("data/demo");
    if demo.join("manifest.json").is_file() {
        python_reads(&py, &demo);
    } else {
        eprintln!("data/demo holds no snapshot yet; reading a fresh extract only");
    }
    let dir = TestDir::new("formats-python");
    let snap = extract_fixture_site(&dir);
    python_reads(&py, &snap);
}

#[test]
fn read_snapshot_py_reports_a_row_count_mismatch() {
    let py = python();
    if !have_pyarrow(&py) {
        return;
    }
    let dir = TestDir::new("formats-mismatch");
    let snap = extract_fixture_site(&dir);
    let path = snap.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let files = manifest["files"].as_array_mut().unwrap();
    let objects = files
        .iter_mut()
        .find(|f| f["path"] == "tables/objects.parquet")
        .unwrap();
    let rows = objects["rows"].as_u64().unwrap();
    objects["rows"] = (rows + 1).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let out = Command::new(&py)
        .arg(repo().join("tests/python/read_snapshot.py"))
        .arg(&snap)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("MISMATCH tables/objects.parquet"),
        "{stdout}"
    );
}
