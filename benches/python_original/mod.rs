//! Ingest against the published Python PixelQuery, in the same run.
//!
//! Each round runs, in turn, a cold `pixelquery ingest` process over the scenes into a fresh
//! warehouse (process start, discovery, decode, cut, encode, write, fsync and commit: all of
//! it, timed from spawn to exit) and the peer's own harness
//! (`../shared/peers/python_pixelquery/bench.py --modes arrow`, PixelQuery 0.1.22's
//! `IngestionPipeline.ingest_cog` per file, then `flush_metadata`), which times each file
//! itself and leaves out its interpreter start and imports. Medians over the rounds.
//!
//! Runs when `PQ_PEER_PYTHON` names the Python of an environment the peer is installed in
//! (see the peer's README); `PQ_PEER_BENCH` overrides where its `bench.py` is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One round of the peer: seconds per file and the one flush at the end.
struct PeerRound {
    per_file: Vec<f64>,
    flush: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds a cold `pixelquery ingest` process takes over `dir` into a fresh warehouse.
fn cli_round(dir: &Path, wh: &Path, scenes: usize) -> f64 {
    let _ = std::fs::remove_dir_all(wh);
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pixelquery"))
        .arg("ingest")
        .arg(wh)
        .arg(dir)
        .args(["--product", "sentinel2_l2a", "--json"])
        .stderr(Stdio::inherit())
        .output()
        .expect("pixelquery ingest starts");
    let secs = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "pixelquery ingest failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["scenes_ingested"].as_u64(), Some(scenes as u64));
    let _ = std::fs::remove_dir_all(wh);
    secs
}

/// One run of the peer's harness over `dir`.
fn peer_round(python: &Path, bench: &Path, dir: &Path, work: &Path) -> PeerRound {
    let json = work.join("peer.json");
    let status = Command::new(python)
        .arg(bench)
        .arg("--cogs")
        .arg(dir)
        .args(["--modes", "arrow", "--repeat", "1"])
        .arg("--workdir")
        .arg(work)
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("the peer's Python starts");
    assert!(status.success(), "the peer's bench.py failed");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the peer's results")).unwrap();
    let arrow = &results["arrow"];
    let per_file = arrow["ingest"]["per_file_s"]
        .as_array()
        .expect("per-file times")
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    PeerRound {
        per_file,
        flush: arrow["flush_metadata_s"].as_f64().unwrap_or(0.0),
    }
}

/// Prints the comparison for the scenes in `dir`, or how to enable it.
pub fn run(dir: &Path, scenes: usize, tmp: &Path, quick: bool) {
    let Some(python) = std::env::var_os("PQ_PEER_PYTHON").map(PathBuf::from) else {
        println!(
            "\n(against the Python original: set PQ_PEER_PYTHON to the Python of its environment, see ../shared/peers/python_pixelquery)"
        );
        return;
    };
    let bench = std::env::var_os("PQ_PEER_BENCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers/python_pixelquery/bench.py")
        });
    let rounds = if quick { 1 } else { 5 };
    let wh = tmp.join("cli-wh");
    let work = tmp.join("peer");
    std::fs::create_dir_all(&work).unwrap();
    // A first CLI run brings the files and the binary into the page cache for both.
    cli_round(dir, &wh, scenes);
    let (mut cli, mut peer_files, mut peer_totals) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        cli.push(cli_round(dir, &wh, scenes) / scenes as f64);
        let round = peer_round(&python, &bench, dir, &work);
        peer_totals.push((round.per_file.iter().sum::<f64>() + round.flush) / scenes as f64);
        peer_files.extend(round.per_file);
    }
    let (cli, peer_file, peer_total) = (
        median(&mut cli),
        median(&mut peer_files),
        median(&mut peer_totals),
    );
    println!(
        "\nagainst the Python original ({scenes} scenes of {}; {rounds} rounds taking turns)",
        dir.display()
    );
    println!(
        "| per scene | Python PixelQuery 0.1.22 | `pixelquery ingest`, whole process | ratio |"
    );
    println!("|---|---|---|---|");
    println!(
        "| median file (the peer's headline) | {:.0} ms | {:.1} ms | {:.1}x |",
        peer_file * 1e3,
        cli * 1e3,
        peer_file / cli
    );
    println!(
        "| run total / scenes (its flush included) | {:.0} ms | {:.1} ms | {:.1}x |",
        peer_total * 1e3,
        cli * 1e3,
        peer_total / cli
    );
}
