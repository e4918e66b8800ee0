//! What the benches share: the sizes from the command line, a release build of the binary, and
//! waiting for a child process while sampling its peak RSS (VmHWM) from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// Object counts given on the command line (`cargo bench --bench X -- N M`), else `default`.
pub fn sizes_or(default: &[usize]) -> Vec<usize> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        default.to_vec()
    } else {
        sizes
    }
}

/// Builds the release binary; returns the target directory and the binary's path.
pub fn release_binary(root: &Path) -> (PathBuf, PathBuf) {
    let status = Command::new("cargo")
        .args(["build", "--release", "--bin", "senaite-sync"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release/senaite-sync");
    (target, bin)
}

/// Waits for `child`, sampling its peak RSS every `poll`; returns its exit status and the peak
/// in kB.
pub fn wait_with_peak_rss(child: &mut Child, poll: Duration) -> (ExitStatus, u64) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    peak = peak.max(kb);
                }
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        std::thread::sleep(poll);
    }
}
