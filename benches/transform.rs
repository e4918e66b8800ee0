//! `transform` speed and memory on a large synthetic snapshot (default 1,000,000 objects, the
//! diff benchmark's generator, `benches/diff_synth.rs`), side by side in one run: the I/O floor
//! (an empty pipeline: read and rewrite the same files, every table, nothing changed), the
//! shipped SENAITE 1.x-to-2.6 pipeline, and `merge-a-lab` (which parses and rewrites every
//! object's fields: the worst case). Each runs as a child process of the release binary; wall
//! time and the child's peak RSS (VmHWM, sampled from `/proc`) are reported.
//!
//! Run: `cargo bench --bench transform` (or `-- 200000` for another size). The snapshot is
//! generated once into `target/transform-bench/` (or the diff benchmark's OLD is reused).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "diff_synth.rs"]
mod diff_synth;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generator version of the diff benchmark (its cached pairs are reused when present).
const DIFF_GENERATION: u32 = 1;

#[path = "harness.rs"]
mod harness;

fn main() {
    let sizes = harness::sizes_or(&[1_000_000]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (target, bin) = harness::release_binary(root);
    let work = target.join("transform-bench");
    std::fs::create_dir_all(&work).unwrap();
    let floor = work.join("io-floor.toml");
    std::fs::write(&floor, "name = \"io-floor\"\n").unwrap();
    for n in sizes {
        let snap = input(root, &target, n);
        let objects = count_objects(&snap);
        println!("input {} ({objects} objects)", snap.display());
        println!(
            "{:<34} {:>8} {:>12} {:>10} {:>9}",
            "pipeline", "seconds", "objects/s", "peak RSS", "vs floor"
        );
        let contenders: [(&str, PathBuf); 3] = [
            ("I/O floor (no steps)", floor.clone()),
            (
                "senaite1-to-senaite26",
                root.join("pipelines/senaite1-to-senaite26.toml"),
            ),
            (
                "merge-a-lab (every object)",
                root.join("pipelines/merge-a-lab.toml"),
            ),
        ];
        let mut floor_secs = None;
        for (name, pipeline) in contenders {
            let out = work.join(format!("out-{n}"));
            let mut c = Command::new(&bin);
            c.arg("transform")
                .arg(&snap)
                .arg("--pipeline")
                .arg(&pipeline)
                .arg("--out")
                .arg(&out)
                .args(["--force", "--json", "-q"]);
            let m = measure(c);
            let base = *floor_secs.get_or_insert(m.secs);
            println!(
                "{name:<34} {:>8.2} {:>12.0} {:>7} MB {:>8.2}x",
                m.secs,
                objects as f64 / m.secs,
                m.rss_kb / 1024,
                m.secs / base
            );
        }
    }
}

/// The input snapshot of `n` objects: the diff benchmark's OLD when cached, else generated.
fn input(root: &Path, target: &Path, n: usize) -> PathBuf {
    let diff_old = target.join(format!("diff-bench/n{n}-g{DIFF_GENERATION}/old"));
    if diff_old.join("manifest.json").is_file() {
        return diff_old;
    }
    let dir = target.join(format!("transform-bench/n{n}-g{DIFF_GENERATION}"));
    let (old, new) = (dir.join("old"), dir.join("new"));
    if !old.join("manifest.json").is_file() {
        let started = Instant::now();
        let g = diff_synth::generate(&root.join("data/demo"), n, 100, &old, &new);
        println!(
            "generated {} objects in {:.1}s",
            g.old_objects,
            started.elapsed().as_secs_f64()
        );
    }
    old
}

fn count_objects(snap: &Path) -> u64 {
    let text = std::fs::read_to_string(snap.join("manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["counts"]
        .as_object()
        .map(|m| m.values().filter_map(|c| c.as_u64()).sum())
        .unwrap_or(0)
}

/// Wall time and peak RSS of one child run.
struct Measured {
    secs: f64,
    rss_kb: u64,
}

fn measure(mut cmd: Command) -> Measured {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (status, peak) = harness::wait_with_peak_rss(&mut child, Duration::from_millis(10));
    assert!(status.success(), "{cmd:?} failed: {status}");
    Measured {
        secs: started.elapsed().as_secs_f64(),
        rss_kb: peak,
    }
}
