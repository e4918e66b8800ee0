//! Extract throughput and memory against the in-process double: a synthetic site cloned from the
//! demo snapshot's real records is served on loopback, and the release binary extracts it as a
//! child process; wall time and the child's peak RSS (VmHWM) are measured side by side for each
//! size and mode in one run.
//!
//! Run: `cargo bench --bench extract` (sizes default to 10000 and 100000;
//! `cargo bench --bench extract -- 5000 20000` for others; `-- default` or `-- v1` runs one mode
//! only). Besides wall time it reports the CPU
//! seconds each side spent (the extractor child, and this process, which is the double), since
//! on a shared machine CPU time is steadier than wall time. `EXTRACT_BASELINE_BIN=<path>` also
//! runs an older `senaite-sync` binary against the same double, row by row, for before/after
//! figures from one run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use senaite_sync::sandbox::load::site_from_snapshot;
use senaite_sync::sandbox::synth::synthesize;
use senaite_sync::sandbox::{Sandbox, SandboxOptions};

#[path = "harness.rs"]
mod harness;

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a == "default" || a == "v1")
        .collect();
    let sizes = harness::sizes_or(&[10_000, 100_000]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (_, bin) = harness::release_binary(root);
    // `EXTRACT_BASELINE_BIN=a` labels its rows "base"; `a:b:...` labels them by file name.
    let baselines: Vec<std::path::PathBuf> = std::env::var_os("EXTRACT_BASELINE_BIN")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    let mut bins: Vec<(String, std::path::PathBuf)> = baselines
        .iter()
        .map(|b| {
            let label = if baselines.len() == 1 {
                "base ".to_string()
            } else {
                format!("{} ", b.file_name().unwrap_or_default().to_string_lossy())
            };
            (label, b.clone())
        })
        .collect();
    bins.push((String::new(), bin));
    let base = site_from_snapshot(&root.join("data/demo")).unwrap();
    println!(
        "{:>8} {:<28} {:>8} {:>10} {:>9} {:>11} {:>10}",
        "objects", "mode", "seconds", "objects/s", "peak RSS", "extract CPU", "double CPU"
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
        for (key, mode, args) in [
            (
                "v1",
                "v1 channel only",
                &["--history", "v1", "--local-roles", "none"][..],
            ),
            ("default", "default (exact history)", &[][..]),
        ] {
            if !only.is_empty() && !only.iter().any(|o| o == key) {
                continue;
            }
            for (label, bin) in &bins {
                let out = tempfile::tempdir().unwrap();
                let m = run(bin, &sb.site_url(), &out.path().join("snap"), args);
                println!(
                    "{n:>8} {:<28} {:>8.2} {:>10.0} {:>6} MB {:>9.1} s {:>8.1} s",
                    format!("{label}{mode}"),
                    m.secs,
                    n as f64 / m.secs,
                    m.rss_kb / 1024,
                    m.child_cpu,
                    m.own_cpu,
                );
            }
        }
        sb.shutdown();
    }
}

/// What one extract cost.
struct Measured {
    secs: f64,
    rss_kb: u64,
    /// CPU seconds of the extractor (user + system).
    child_cpu: f64,
    /// CPU seconds of this process meanwhile: the double's server threads.
    own_cpu: f64,
}

/// CPU seconds (user + system) of this process and of its waited-for children, from
/// `/proc/self/stat` (in clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let tick = |i: usize| f.get(i).copied().unwrap_or(0.0) / 100.0;
    (tick(11) + tick(12), tick(13) + tick(14))
}

/// Runs one extract.
fn run(bin: &Path, url: &str, out: &Path, extra: &[&str]) -> Measured {
    let (own0, children0) = cpu_seconds();
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
    let (status, peak) = harness::wait_with_peak_rss(&mut child, Duration::from_millis(20));
    assert!(status.success(), "extract failed");
    let secs = started.elapsed().as_secs_f64();
    let (own1, children1) = cpu_seconds();
    Measured {
        secs,
        rss_kb: peak,
        child_cpu: children1 - children0,
        own_cpu: own1 - own0,
    }
}
