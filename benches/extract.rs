//! Extract throughput and memory against the in-process double: a synthetic site cloned from the
//! demo snapshot's real records is served on loopback, and the release binary extracts it as a
//! child process; wall time and the child's peak RSS (VmHWM) are measured side by side for each
//! size and mode in one run.
//!
//! Run: `cargo bench --bench extract` (sizes default to 10000 and 100000;
//! `cargo bench --bench extract -- 5000 20000` for others).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use senaite_sync::sandbox::load::site_from_snapshot;
use senaite_sync::sandbox::synth::synthesize;
use senaite_sync::sandbox::{Sandbox, SandboxOptions};

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("cargo")
        .args(["build", "--release", "--bin", "senaite-sync"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success());
    let bin = root.join("target/release/senaite-sync");
    let base = site_from_snapshot(&root.join("data/demo")).unwrap();
    println!(
        "{:>8} {:<22} {:>9} {:>11} {:>10}",
        "objects", "mode", "seconds", "objects/s", "peak RSS"
    );
    for n in sizes {
        let site = synthesize(&base, n);
        let sb = Sandbox::start(
            site,
            SandboxOptions {
                threads: 4,
                ..SandboxOptions::default()
            },
        )
        .unwrap();
        for (mode, args) in [
            (
                "v1 channel only",
                &["--history", "v1", "--local-roles", "none"][..],
            ),
            ("default (exact history)", &[][..]),
        ] {
            let out = tempfile::tempdir().unwrap();
            let (secs, rss_kb) = run(&bin, &sb.site_url(), &out.path().join("snap"), args);
            println!(
                "{n:>8} {mode:<22} {secs:>9.2} {:>11.0} {:>7} MB",
                n as f64 / secs,
                rss_kb / 1024
            );
        }
        sb.shutdown();
    }
}

/// Runs one extract; returns (seconds, peak RSS in kB).
fn run(bin: &Path, url: &str, out: &Path, extra: &[&str]) -> (f64, u64) {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["extract", "--url", url, "--out"])
        .arg(out)
        .args(["-j", "4", "--page-size", "500", "-q", "--progress", "never"])
        .args(extra)
        .env("SENAITE_USER", "admin")
        .env("SENAITE_PASSWORD", "admin")
        .spawn()
        .unwrap();
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
            assert!(status.success(), "extract failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (started.elapsed().as_secs_f64(), peak)
}
