//! Small helpers shared by the integration tests: a temporary work directory per test and the
//! path of the repository's fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A temporary directory named after the test, removed when dropped.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// A fresh directory whose name starts with `name`.
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("senaite-sync-{name}-"))
            .tempdir()
            .unwrap();
        TestDir { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the directory.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file (creating parents) and returns its path.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// `data/fixtures/<rel>` of the repository.
pub fn fixture_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/fixtures")
        .join(rel)
}

/// Complete staged unit files (`*.jsonl.zst`, not temp files) anywhere under `dir`.
pub fn count_staged_units(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_staged_units(&p)
            } else {
                usize::from(p.to_string_lossy().ends_with(".jsonl.zst"))
            }
        })
        .sum()
}

/// The Python for helper scripts: `SENAITE_SYNC_PYTHON`, else the venv `.ci/run` makes
/// (`~/.cache/senaite-sync/pyenv/bin/python3`) when it exists, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SENAITE_SYNC_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(".cache/senaite-sync/pyenv/bin/python3");
        if venv.is_file() {
            return venv;
        }
    }
    PathBuf::from("python3")
}

/// A directory under the target's tmp dir, emptied first (kept after the run for a look).
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command and asserts its exit code, showing its output otherwise.
pub fn run_expect(mut cmd: std::process::Command, code: i32) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?} exited {:?}:\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A source and a destination SENAITE of a real-instance test tier, with the credentials.
pub struct InstancePair {
    pub src: String,
    pub dst: String,
    pub user: String,
    pub password: String,
}

/// The instance pair named by the env vars `src_var` and `dst_var` (URLs of the sites), or
/// `None` after printing "skipped: ..." when either is unset; with `SENAITE_SYNC_E2E=required`
/// (CI) an unset variable fails the test instead.
pub fn instance_pair(src_var: &str, dst_var: &str) -> Option<InstancePair> {
    let get = |k: &str| {
        std::env::var(k)
            .ok()
            .map(|v| v.trim().trim_end_matches('/').to_string())
            .filter(|v| !v.is_empty())
    };
    let (Some(src), Some(dst)) = (get(src_var), get(dst_var)) else {
        assert!(
            std::env::var("SENAITE_SYNC_E2E").as_deref() != Ok("required"),
            "SENAITE_SYNC_E2E=required but {src_var} / {dst_var} are not both set"
        );
        eprintln!(
            "skipped: set {src_var} (seeded source) and {dst_var} (fresh destination with the \
             receiver) to run this test"
        );
        return None;
    };
    Some(InstancePair {
        src,
        dst,
        user: std::env::var("SENAITE_USER").unwrap_or_else(|_| "admin".into()),
        password: std::env::var("SENAITE_PASSWORD").unwrap_or_else(|_| "admin".into()),
    })
}

impl InstancePair {
    /// The binary with `args`, the pair's credentials in the environment, no progress bars.
    pub fn bin(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_senaite-sync"));
        cmd.args(["--progress", "never"])
            .args(args)
            .env("SENAITE_USER", &self.user)
            .env("SENAITE_PASSWORD", &self.password)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        cmd
    }
}

/// The stdout of a command as JSON (panics with the text when it is not).
pub fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The `report.json` a load wrote into its state directory.
pub fn load_report(state: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(state.join("report.json")).unwrap()).unwrap()
}

/// The values a finished load's destination had no field for, from its report: one
/// `Type.field (records)` line each, sorted.
pub fn unknown_fields(state: &Path) -> Vec<String> {
    let report = load_report(state);
    let mut out = Vec::new();
    for (t, fields) in report["unknown_fields"].as_object().unwrap() {
        for (f, n) in fields.as_object().unwrap() {
            out.push(format!("{t}.{f} ({n})"));
        }
    }
    out.sort();
    out
}

/// The records a finished load rejected (uid -> "type path error"), from its report; asserts
/// the load exited 0 or 1, and 1 exactly when it rejected something.
pub fn load_rejections(
    out: &std::process::Output,
    state: &Path,
) -> std::collections::BTreeMap<String, String> {
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "load exit {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rejected: std::collections::BTreeMap<String, String> = load_report(state)["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["uid"].as_str().unwrap().to_string(),
                format!("{} {} {}", r["portal_type"], r["path"], r["error"]),
            )
        })
        .collect();
    assert_eq!(
        code == Some(1),
        !rejected.is_empty(),
        "exit 1 exactly when the report lists rejected records"
    );
    rejected
}
