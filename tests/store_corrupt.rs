//! Damaged files: clear errors naming the file (never a panic), and `verify` reports them.

mod store_support;

use pixelquery::store::*;
use std::path::Path;
use store_support::*;

fn setup() -> (tempfile::TempDir, Warehouse) {
    let d = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(d.path(), WarehouseConfig::new(grid())).unwrap();
    ingest(&wh, "x", 0..2).unwrap();
    (d, wh)
}

/// Replaces a file's content (new inode, as a careless tool would).
fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, b).unwrap();
}

fn assert_reported(wh: &Warehouse, file: &str, kind: ProblemKind) {
    let r = verify(wh);
    assert!(!r.is_healthy());
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == kind && p.path.ends_with(file) && p.detail.contains(file)),
        "{kind:?} for {file} not in {:?}",
        r.problems
    );
}

#[test]
fn damaged_fragments() {
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage); 4] = [
        ("truncated", |b| b.truncate(b.len() / 2)),
        ("flipped", |b| {
            let n = b.len();
            b[n / 2] ^= 0x40
        }),
        ("empty", |b| b.clear()),
        ("garbage", |b| b.iter_mut().for_each(|x| *x = 0xAB)),
    ];
    for (what, damage) in cases {
        let (_d, wh) = setup();
        let snap = wh.snapshot(None).unwrap();
        let e = snap.fragments()[1].clone();
        rewrite(&wh.root().join(&e.path), damage);
        let err = snap.read_fragment_verified(&e).unwrap_err().to_string();
        assert!(err.contains(&e.path), "{what}: {err}");
        if what != "flipped" {
            // Even without the checksum, structure checks catch it.
            let err = snap.read_fragment(&e).unwrap_err().to_string();
            assert!(err.contains(&e.path), "{what}: {err}");
        }
        let kind = if what == "flipped" || what == "garbage" {
            ProblemKind::Checksum
        } else {
            ProblemKind::Size
        };
        assert_reported(&wh, &e.path, kind);
        // The rest of the warehouse is still readable.
        assert_eq!(wh.snapshot(None).unwrap().scenes().len(), 2);
    }
    let (_d, wh) = setup();
    let e = wh.snapshot(None).unwrap().fragments()[0].clone();
    std::fs::remove_file(wh.root().join(&e.path)).unwrap();
    assert_reported(&wh, &e.path, ProblemKind::Missing);
}

#[test]
fn damaged_catalog_parts() {
    for truncate in [true, false] {
        let (_d, wh) = setup();
        let part = wh.snapshot(None).unwrap().parts()[0].path.clone();
        rewrite(&wh.root().join(&part), |b| {
            if truncate {
                b.truncate(b.len() - 9)
            } else {
                let n = b.len();
                b[n / 3] ^= 0x01
            }
        });
        let err = wh.snapshot(None).unwrap_err().to_string();
        assert!(err.contains(&part), "{err}");
        assert_reported(
            &wh,
            &part,
            if truncate {
                ProblemKind::Size
            } else {
                ProblemKind::Checksum
            },
        );
        // Older snapshots that do not reference it stay readable.
        assert!(wh.snapshot(Some(0)).is_ok());
    }
}

#[test]
fn damaged_log_entries() {
    let (_d, wh) = setup();
    let entry = wh
        .root()
        .join("catalog/_delta_log/00000000000000000002.json");
    // Cut inside the second line (a cut that happens to fall on a line's end leaves whole
    // actions, which is no damage a reader can see).
    rewrite(&entry, |b| {
        let first = b.iter().position(|&c| c == b'\n').unwrap();
        b.truncate(first + 20);
    });
    let err = wh.snapshot(None).unwrap_err().to_string();
    assert!(err.contains("00000000000000000002.json"), "{err}");
    assert_reported(&wh, "00000000000000000002.json", ProblemKind::Log);
    rewrite(&entry, |b| *b = b"{\"add\": {\"path\": 5}}".to_vec());
    assert_reported(&wh, "00000000000000000002.json", ProblemKind::Log);
    std::fs::remove_file(&entry).unwrap();
    // Removing the last entry is indistinguishable from it never being committed; removing
    // a middle one is a gap.
    let (_d, wh) = setup();
    std::fs::remove_file(
        wh.root()
            .join("catalog/_delta_log/00000000000000000001.json"),
    )
    .unwrap();
    let err = wh.snapshot(None).unwrap_err().to_string();
    assert!(
        err.contains("00000000000000000001.json") && err.contains("gap"),
        "{err}"
    );
    assert_reported(&wh, "00000000000000000001.json", ProblemKind::Log);
}

#[test]
fn damaged_config() {
    let (_d, wh) = setup();
    let p = wh.root().join("pixelquery.json");
    rewrite(&p, |b| b.truncate(10));
    let err = Warehouse::open(wh.root()).unwrap_err().to_string();
    assert!(err.contains("pixelquery.json"), "{err}");
}
