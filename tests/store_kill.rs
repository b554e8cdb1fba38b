//! Crash safety: a writer child process is SIGKILLed at random points, hundreds of times.
//! After every kill the warehouse opens, `verify` passes, every retained snapshot is whole
//! (each committed scene has all its fragments, no partial batch is visible) and running
//! the same work again finishes it.
//!
//! The test binary re-executes itself (`current_exe`) with `PQ_KILL_CHILD` set to act as
//! the writer: ingest 6 batches, compact, vacuum. After every kill the catalog is also kept
//! (hard links: files are immutable), and at the end the `deltalake` Python package must see
//! in each kept catalog exactly the rows `pixelquery info` shows (when `.ci/run`'s Python
//! environment is there).

mod store_support;

use pixelquery::store::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use store_support::*;

const SCENES: u32 = 6;

/// The writer's work; idempotent, so a killed run can simply be restarted.
fn work(dir: &std::path::Path) {
    let wh = Warehouse::open_or_create(dir, WarehouseConfig::new(grid())).unwrap();
    ingest(&wh, "k", 0..SCENES).unwrap();
    compact(&wh, CompactPeriod::All).unwrap();
    vacuum(&wh, Duration::ZERO).unwrap();
}

/// Entry point of the child process (a no-op in a normal test run).
#[test]
fn kill_child_entry() {
    if let Ok(dir) = std::env::var("PQ_KILL_CHILD") {
        work(std::path::Path::new(&dir));
    }
}

/// xorshift64*: a reproducible random sequence without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn spawn(dir: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_child_entry", "--test-threads=1", "--quiet"])
        .env("PQ_KILL_CHILD", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Verifies the warehouse and checks the latest snapshot (every retained one if `all`);
/// returns the number of scenes in the latest.
fn check(dir: &std::path::Path, last_version: &mut u64, all: bool) -> (usize, usize) {
    let wh = Warehouse::open(dir).unwrap();
    let report = verify(&wh);
    assert!(report.is_healthy(), "after kill: {:?}", report.problems);
    let latest = wh.latest_version().unwrap();
    assert!(latest >= *last_version, "committed version went backwards");
    // The last committed snapshot (and every earlier retained one) is whole.
    let oldest = if all {
        report.oldest_version.unwrap()
    } else {
        latest
    };
    let mut scenes = 0;
    for v in oldest..=latest {
        scenes = check_snapshot(&wh.snapshot(Some(v)).unwrap()).len();
    }
    *last_version = latest;
    (scenes, report.unreferenced_files)
}

#[test]
fn sigkill_at_random_points_never_loses_or_corrupts() {
    let seed = std::env::var("PQ_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill test seed {seed} (set PQ_KILL_SEED to replay)");
    let mut rng = Rng(seed);
    // A SIGKILL loses nothing that reached the page cache, so tmpfs (where fsync is free)
    // exercises exactly the same crash states, many times faster. Falls back to /tmp.
    let base = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();

    // Time one uninterrupted run, so kill delays cover the whole of it.
    let t = Instant::now();
    let dir = base.path().join("timing");
    assert!(spawn(&dir).wait().unwrap().success());
    let full = t.elapsed();
    let mut v = 0;
    assert_eq!(check(&dir, &mut v, true).0, SCENES as usize);
    eprintln!("one full run: {full:?}");

    let budget = Duration::from_secs(45);
    let start = Instant::now();
    let (mut kills, mut runs, mut cycles, mut mid_write) = (0u32, 0u32, 0u32, 0u32);
    let mut delta_checks = Vec::new();
    while kills < 500 && start.elapsed() < budget {
        // One cycle: a fresh warehouse, up to 3 kills at random points, then the same work
        // run again to completion.
        let dir = base.path().join(format!("w{cycles}"));
        cycles += 1;
        let mut last_version = 0;
        for _ in 0..3 {
            let mut child = spawn(&dir);
            runs += 1;
            std::thread::sleep(Duration::from_micros(
                rng.next() % (full.as_micros() as u64 + 1),
            ));
            let done = child.try_wait().unwrap().is_some();
            if !done {
                let _ = child.kill(); // SIGKILL on Unix
                kills += 1;
            }
            child.wait().unwrap();
            if dir.join("pixelquery.json").exists() {
                let (_, orphans) = check(&dir, &mut last_version, kills % 10 == 0);
                if !done && orphans > 0 {
                    mid_write += 1;
                }
                if !done {
                    let kept = base.path().join(format!("delta/k{kills}"));
                    keep_catalog(&dir, &kept);
                    delta_checks.push((kept, last_version));
                }
            }
            if done {
                break;
            }
        }
        runs += 1;
        assert!(
            spawn(&dir).wait().unwrap().success(),
            "rerun after kills failed"
        );
        assert_eq!(check(&dir, &mut last_version, false).0, SCENES as usize);
        assert!(verify_compacted(&dir), "rerun did not finish the work");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "{kills} kills ({mid_write} left uncommitted files behind) in {runs} runs \
         ({cycles} cycles) in {:?}",
        start.elapsed()
    );
    assert!(kills >= 100, "only {kills} kills in the time budget");
    if let Some(python) = common::python() {
        let compared = assert_delta_agrees(&python, &delta_checks);
        eprintln!("deltalake agreed with pixelquery on {compared} catalogs left by kills");
    }
}

/// Keeps the catalog (and configuration) of a warehouse as it is now, by hard links.
fn keep_catalog(dir: &std::path::Path, kept: &std::path::Path) {
    fn link_tree(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                link_tree(&e.path(), &target);
            } else {
                // A file deleted by a concurrent vacuum just is not kept.
                let _ = std::fs::hard_link(e.path(), &target);
            }
        }
    }
    link_tree(&dir.join("catalog"), &kept.join("catalog"));
    std::fs::copy(dir.join("pixelquery.json"), kept.join("pixelquery.json")).unwrap();
}

/// True when the final compaction and vacuum happened: one fragment per tile and band,
/// nothing unreferenced.
fn verify_compacted(dir: &std::path::Path) -> bool {
    let wh = Warehouse::open(dir).unwrap();
    let snap = wh.snapshot(None).unwrap();
    snap.fragments().len() == TILES.len() * BANDS.len() && verify(&wh).unreferenced_files == 0
}
