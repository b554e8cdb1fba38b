//! Two processes writing to one warehouse at once both succeed, and nothing is lost or
//! duplicated. The test binary re-executes itself as the writers.

mod store_support;

use pixelquery::store::*;
use std::process::Command;
use store_support::*;

const BATCHES: u32 = 12;

#[test]
fn writer_child_entry() {
    if let (Ok(dir), Ok(prefix)) = (
        std::env::var("PQ_WRITER_DIR"),
        std::env::var("PQ_WRITER_ID"),
    ) {
        let wh = Warehouse::open_or_create(&dir, WarehouseConfig::new(grid())).unwrap();
        let committed = ingest(&wh, &prefix, 0..BATCHES).unwrap();
        if std::env::var("PQ_WRITER_SAME").is_err() {
            assert_eq!(committed, BATCHES);
        }
    }
}

#[test]
fn two_writer_processes_both_commit_everything() {
    let d = tempfile::tempdir().unwrap();
    let spawn = |id: &str| {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "writer_child_entry",
                "--test-threads=1",
                "--quiet",
            ])
            .env("PQ_WRITER_DIR", d.path())
            .env("PQ_WRITER_ID", id)
            .spawn()
            .unwrap()
    };
    // Both also race to create the warehouse.
    let (mut a, mut b) = (spawn("a"), spawn("b"));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let wh = Warehouse::open(d.path()).unwrap();
    let snap = wh.snapshot(None).unwrap();
    let scenes = check_snapshot(&snap);
    assert_eq!(scenes.len(), 2 * BATCHES as usize);
    // Every observation once (automatic compaction merges the writers' fragments).
    let observations: u64 = snap.fragments().iter().map(|e| e.observations).sum();
    assert_eq!(
        observations,
        (2 * BATCHES as usize * TILES.len() * BANDS.len()) as u64
    );
    assert!(snap.fragments().len() <= 2 * BATCHES as usize * TILES.len() * BANDS.len());
    // One append per batch; the rest are merges of small catalog parts and automatic
    // compactions, which keep the part and fragment counts bounded.
    let history = wh.history().unwrap();
    let appends = history
        .iter()
        .filter(|e| e.operation == Operation::Append)
        .count();
    assert_eq!(appends, 2 * BATCHES as usize);
    assert!(history.iter().skip(1).all(|e| matches!(
        e.operation,
        Operation::Append | Operation::Merge | Operation::Compact
    )));
    assert!(snap.parts().len() < 8, "{} parts", snap.parts().len());
    assert!(verify(&wh).is_healthy());
}

#[test]
fn two_writers_ingesting_the_same_scenes_commit_each_once() {
    let d = tempfile::tempdir().unwrap();
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "writer_child_entry",
                "--test-threads=1",
                "--quiet",
            ])
            .env("PQ_WRITER_DIR", d.path())
            .env("PQ_WRITER_ID", "same")
            .env("PQ_WRITER_SAME", "1")
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let wh = Warehouse::open(d.path()).unwrap();
    let snap = wh.snapshot(None).unwrap();
    assert_eq!(check_snapshot(&snap).len(), BATCHES as usize);
    let observations: u64 = snap.fragments().iter().map(|e| e.observations).sum();
    assert_eq!(
        observations,
        (BATCHES as usize * TILES.len() * BANDS.len()) as u64
    );
    let appends = wh
        .history()
        .unwrap()
        .iter()
        .filter(|e| e.operation == Operation::Append)
        .count();
    assert_eq!(appends, BATCHES as usize, "each scene committed once");
    let report = verify(&wh);
    assert!(report.is_healthy());
    assert_eq!(
        report.unreferenced_files, 0,
        "the losing batches cleaned up"
    );
}

#[test]
fn compaction_rebases_over_a_concurrent_append() {
    // Threads in one process: an append racing a compaction keeps both.
    let d = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(d.path(), WarehouseConfig::new(grid())).unwrap();
    ingest(&wh, "c", 0..4).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| ingest(&wh, "d", 0..4).unwrap());
        s.spawn(|| {
            for _ in 0..3 {
                match compact(&wh, CompactPeriod::All) {
                    Ok(_) | Err(Error::CompactionConflict { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
    });
    let snap = wh.snapshot(None).unwrap();
    assert_eq!(check_snapshot(&snap).len(), 8);
    assert!(verify(&wh).is_healthy());
}
