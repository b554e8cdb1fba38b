//! The catalog is a Delta Lake table: the `deltalake` Python package (a real, independent
//! Delta reader) sees exactly the rows `pixelquery info` shows, at every version of a
//! warehouse built by appends (with checkpoints and part merges), a killed writer, a
//! compaction and a vacuum. Runs with `.ci/run`'s Python environment (`PIXELQUERY_PYTHON`).

mod store_support;

use pixelquery::store::*;
use std::process::{Command, Stdio};
use std::time::Duration;
use store_support::*;

/// Entry point of the child writer that the test kills (a no-op in a normal run).
#[test]
fn delta_child_entry() {
    if let Ok(dir) = std::env::var("PQ_DELTA_CHILD") {
        let wh = Warehouse::open(&dir).unwrap();
        ingest(&wh, "killed", 0..1000).unwrap();
    }
}

fn all_versions(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let latest = Warehouse::open(dir).unwrap().latest_version().unwrap();
    (0..=latest).map(|v| (dir.to_path_buf(), v)).collect()
}

#[test]
fn deltalake_sees_the_live_catalog_at_every_version() {
    let Some(python) = common::python() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let wh = Warehouse::create(&dir, WarehouseConfig::new(grid())).unwrap();
    // 23 appends: checkpoints at 10 and 20, merged catalog parts in between.
    assert_eq!(ingest(&wh, "a", 0..23).unwrap(), 23);
    assert!(dir
        .join("catalog/_delta_log/00000000000000000010.checkpoint.parquet")
        .is_file());
    assert!(dir.join("catalog/_delta_log/_last_checkpoint").is_file());
    let history = wh.history().unwrap();
    assert!(
        history.iter().any(|c| c.operation == Operation::Merge),
        "small parts were merged"
    );

    // A killed writer: whatever it leaves (orphan fragments and parts, or a whole commit).
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "delta_child_entry",
            "--test-threads=1",
            "--quiet",
        ])
        .env("PQ_DELTA_CHILD", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    // And a part written by a run killed before its commit: Delta readers must not see it.
    let parts = wh.snapshot(None).unwrap().parts().to_vec();
    // (named as the writer names parts: vacuum deletes only names PixelQuery writes)
    let orphan = dir.join("catalog/kind=fragment/part-20240101T000000Z-00000000000000cc.parquet");
    std::fs::copy(dir.join(&parts[0].path), &orphan).unwrap();

    let compared = assert_delta_agrees(&python, &all_versions(&dir));
    assert!(compared > 23, "{compared}");

    compact(&wh, CompactPeriod::All).unwrap();
    ingest(&wh, "b", 0..3).unwrap();
    assert_delta_agrees(&python, &all_versions(&dir));

    // Vacuum: old versions become unreadable for both, the rest still agree.
    let report = vacuum(&wh, Duration::ZERO).unwrap();
    assert!(report.log_files_deleted > 0);
    assert!(!orphan.exists(), "vacuum removes the orphan part");
    ingest(&wh, "c", 0..2).unwrap();
    let pairs = all_versions(&dir);
    let compared = assert_delta_agrees(&python, &pairs);
    assert!(compared >= 3 && compared < pairs.len(), "{compared}");
    assert!(verify(&wh).is_healthy());
}

/// Vacuum deletes commit 0 once a checkpoint replaces it; a writer killed before writing
/// `_last_checkpoint` must not make the next open think the table is new and create a
/// second commit 0 (found by the SIGKILL test).
#[test]
fn a_vacuumed_log_without_checkpoint_hint_is_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wh");
    let wh = Warehouse::create(&path, WarehouseConfig::new(grid())).unwrap();
    ingest(&wh, "a", 0..3).unwrap();
    compact(&wh, CompactPeriod::All).unwrap();
    vacuum(&wh, Duration::ZERO).unwrap();
    let latest = wh.latest_version().unwrap();
    let log = path.join("catalog/_delta_log");
    assert!(!log.join(format!("{:020}.json", 0)).exists());
    std::fs::remove_file(log.join("_last_checkpoint")).unwrap();
    drop(wh);

    let wh = Warehouse::open(&path).unwrap();
    assert!(!log.join(format!("{:020}.json", 0)).exists());
    assert_eq!(wh.latest_version().unwrap(), latest);
    assert!(verify(&wh).is_healthy());
    assert_eq!(check_snapshot(&wh.snapshot(None).unwrap()).len(), 3);
}
