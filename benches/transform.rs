//! `transform` speed and memory on a large synthetic snapshot (default 1,000,000 objects, the
//! diff benchmark's generator, `benches/diff_synth.rs`), side by side in one run: the I/O floor
//! (an empty pipeline: read and rewrite the same files, every table, nothing changed), the
//! shipped SENAITE 1.x-to-2.6 pipeline, and `merge-a-lab` (which parses and rewrites every
//! object's fields: the worst case). Each runs as a child process of the release binary; wall
//! time and the child's peak RSS (VmHWM, sampled from `/proc`) are reported.
//!
//! A second input is SENAITE 1.x-shaped (`benches/synth_clone.rs`): a real snapshot of a seeded
//! SENAITE 1.3 (`data/fixtures/senaite1/snapshot`, or `TRANSFORM_TEMPLATE_1X=<snapshot>`) with its
//! clients, contacts, samples and analyses cloned to the same size. There the 1.x-to-2.6 pipeline
//! does its real work: setup objects move and change type, and every sample and analysis refers
//! to setup by `bika_setup` URLs that the pipeline's moves rewrite.
//!
//! Run: `cargo bench --bench transform` (or `-- 200000` for another size). The snapshots are
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

#[path = "synth_clone.rs"]
mod synth_clone;

/// Generator version of the 1.x-shaped input (bump when `synth_clone.rs` changes its output).
const CLONE_GENERATION: u32 = 1;

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
        let two = root.join("pipelines/senaite1-to-senaite26.toml");
        let merge = root.join("pipelines/merge-a-lab.toml");
        run(
            &bin,
            &work,
            &snap,
            "2.6-shaped",
            &[
                (&floor, "I/O floor (no steps)"),
                (&two, "senaite1-to-senaite26"),
                (&merge, "merge-a-lab (every object)"),
            ],
        );
        match input_1x(root, &bin, &target, n) {
            Some(snap) => run(
                &bin,
                &work,
                &snap,
                "1.x-shaped",
                &[
                    (&floor, "I/O floor (no steps)"),
                    (&two, "senaite1-to-senaite26"),
                ],
            ),
            None => println!(
                "1.x-shaped input: no template (data/fixtures/senaite1/snapshot or TRANSFORM_TEMPLATE_1X)"
            ),
        }
    }
}

/// Runs each pipeline over `snap`, one child process after the other, and prints a table.
fn run(bin: &Path, work: &Path, snap: &Path, shape: &str, contenders: &[(&PathBuf, &str)]) {
    let objects = count_objects(snap);
    println!("input {} ({objects} objects, {shape})", snap.display());
    println!(
        "{:<34} {:>8} {:>12} {:>10} {:>9}",
        "pipeline", "seconds", "objects/s", "peak RSS", "vs floor"
    );
    let mut floor_secs = None;
    for (pipeline, name) in contenders {
        let out = work.join("out");
        let mut c = Command::new(bin);
        c.arg("transform")
            .arg(snap)
            .arg("--pipeline")
            .arg(pipeline)
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

/// The 1.x-shaped input of about `n` objects, cloned from the 1.x template (generated once and
/// checked: the clone has no more dangling references or orphans than its template).
fn input_1x(root: &Path, bin: &Path, target: &Path, n: usize) -> Option<PathBuf> {
    let template = std::env::var_os("TRANSFORM_TEMPLATE_1X")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("data/fixtures/senaite1/snapshot"));
    if !template.join("manifest.json").is_file() {
        return None;
    }
    let id = senaite_sync::snapshot::Snapshot::open(&template)
        .unwrap()
        .manifest
        .snapshot_id;
    let dir = target.join(format!(
        "transform-bench/senaite1-n{n}-g{CLONE_GENERATION}-{}",
        &id[..12]
    ));
    if !dir.join("manifest.json").is_file() {
        let _ignored = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        let c = synth_clone::generate(&template, n, &dir);
        println!(
            "generated {} objects ({} copies of the clients) in {:.1}s",
            c.objects,
            c.copies,
            started.elapsed().as_secs_f64()
        );
        let problems = |snap: &Path| {
            let out = Command::new(bin)
                .arg("inspect")
                .arg(snap)
                .arg("--json")
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let len = |k: &str| v[k].as_array().map_or(0, Vec::len);
            (len("dangling_references"), len("orphans"), len("corrupt"))
        };
        let (t, g) = (problems(&template), problems(&dir));
        assert!(
            g.0 <= t.0 && g.1 <= t.1 && g.2 == 0,
            "the clone of {} has problems its template has not: {g:?} vs {t:?}",
            template.display()
        );
    }
    Some(dir)
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
