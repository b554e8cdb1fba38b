//! End-to-end warehouse behaviour: parallel writes, snapshots, plain Arrow/Parquet readers,
//! compaction, vacuum, verify and the CLI.

mod store_support;

use arrow_array::Array;
use pixelquery::store::*;
use pixelquery::TileId;
use rayon::prelude::*;
use store_support::*;

#[test]
fn parallel_batch_commit_and_snapshots() {
    let d = tempfile::tempdir().unwrap();
    // Manual compaction is what this test checks: no automatic merges.
    let options = OpenOptions {
        no_auto_compact: true,
        ..Default::default()
    };
    let wh = Warehouse::create_with(d.path(), WarehouseConfig::new(grid()), &options).unwrap();
    // Fragments written concurrently from rayon threads into one batch.
    let batch = wh.begin_batch();
    let jobs: Vec<(u32, (i64, i64), usize)> = (0..3)
        .flat_map(|s| {
            TILES
                .iter()
                .flat_map(move |&t| (0..2).map(move |b| (s, t, b)))
        })
        .collect();
    jobs.par_iter()
        .try_for_each(|&(s, (c, r), b)| {
            batch
                .write_fragment(fragment("p", s, TileId::new(c, r), b))
                .map(|_| ())
        })
        .unwrap();
    for s in 0..3 {
        batch.add_scene(scene("p", s)).unwrap();
    }
    batch.register_product("S2", profile()).unwrap();
    assert_eq!(
        wh.snapshot(None).unwrap().fragments().len(),
        0,
        "visible before commit"
    );
    let v1 = batch.commit().unwrap().version;
    assert_eq!(v1, 1);
    let snap = wh.snapshot(None).unwrap();
    assert_eq!(snap.fragments().len(), 12);
    assert_eq!(check_snapshot(&snap).len(), 3);
    assert!(snap.has_scene_fingerprint("fp-p-2"));
    assert!(!snap.has_scene_fingerprint("fp-p-3"));
    assert_eq!(snap.products()["S2"]["bands"][1]["name"], "B08");
    let e = &snap.fragments()[0];
    assert_eq!(e.valid_count, 255);
    assert_eq!(e.valid_min, Some(pixel(0, e.tile, 0, 1) as f64));
    // A window of the tile and a time range read only what they need, and give the same
    // pixels as the whole fragment.
    let whole = snap.read_fragment(e).unwrap();
    let win = pixelquery::store::PixelWindow::new(3, 2, 5, 4);
    let t0 = whole.times_micros()[0];
    let later = snap
        .fragment_window(e, Some(win), Some((t0 + 1, i64::MAX)))
        .unwrap();
    assert_eq!(later.len(), 0, "no observation after the last one");
    let part = snap
        .fragment_window(e, Some(win), Some((t0, i64::MAX)))
        .unwrap();
    assert_eq!(part.len(), whole.len());
    assert_eq!(part.window(), win);
    let (ws, w) = (whole.window(), whole.window().width as usize);
    let all = whole.pixel_bytes(0);
    let got = part.pixel_bytes(0);
    for r in 0..4usize {
        for c in 0..5usize {
            let src = ((win.row as usize - ws.row as usize + r) * w
                + (win.col as usize - ws.col as usize + c))
                * 2;
            assert_eq!(
                &got[(r * 5 + c) * 2..(r * 5 + c) * 2 + 2],
                &all[src..src + 2]
            );
        }
    }
    // Opened once per snapshot (and its clones), then shared.
    let shared = snap.fragment(e).unwrap();
    assert!(std::sync::Arc::ptr_eq(&shared, &snap.fragment(e).unwrap()));
    assert!(std::sync::Arc::ptr_eq(
        &shared,
        &snap.clone().fragment(e).unwrap()
    ));
    assert_eq!(
        shared.pixel_bytes(0),
        snap.read_fragment(e).unwrap().pixel_bytes(0)
    );

    // Filters.
    let f = FragmentFilter {
        tile: Some(TileId::new(1, -1)),
        band: Some("B08".into()),
        ..Default::default()
    };
    assert_eq!(snap.select(&f).len(), 3);
    let f = FragmentFilter {
        time: Some((time_of(1), time_of(2))),
        ..Default::default()
    };
    assert_eq!(snap.select(&f).len(), 4);
    let f = FragmentFilter {
        bbox: Some(pixelquery::Bounds::new(15.012, 35.0, 16.0, 37.0)),
        ..Default::default()
    };
    assert!(snap.select(&f).iter().all(|e| e.tile == TileId::new(1, -1)));

    // A second batch; the old version stays readable as of v1.
    ingest(&wh, "p", 3..5).unwrap();
    assert_eq!(wh.latest_version().unwrap(), 3);
    assert_eq!(wh.snapshot(Some(v1)).unwrap().scenes().len(), 3);
    assert_eq!(check_snapshot(&wh.snapshot(None).unwrap()).len(), 5);
    assert!(matches!(
        wh.snapshot(Some(99)),
        Err(Error::UnknownVersion { .. })
    ));
    // Re-running the same work is a no-op (fingerprints).
    assert_eq!(ingest(&wh, "p", 0..5).unwrap(), 0);

    // Compaction: one fragment per (tile, band), sorted by time, atomically.
    let r = compact(&wh, CompactPeriod::All).unwrap();
    assert_eq!(
        (r.groups_merged, r.fragments_before, r.fragments_after),
        (4, 20, 4)
    );
    let snap = wh.snapshot(None).unwrap();
    assert_eq!(snap.parts().len(), 2);
    assert_eq!(check_snapshot(&snap).len(), 5);
    for e in snap.fragments() {
        let f = snap.read_fragment(e).unwrap();
        assert_eq!(f.len(), 5);
        assert!(f.times_micros().windows(2).all(|w| w[0] < w[1]));
    }
    assert_eq!(check_snapshot(&wh.snapshot(Some(3)).unwrap()).len(), 5);
    let report = verify(&wh);
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!(
        report.fragments_checked, 24,
        "old and new snapshots are both checked"
    );

    // Vacuum with no retention: old snapshots expire, their files go.
    let r = vacuum(&wh, std::time::Duration::ZERO).unwrap();
    assert_eq!(
        r.deleted.len(),
        20 + 6,
        "20 fragments and 3 commits x 2 old catalog parts"
    );
    assert!(matches!(wh.snapshot(Some(3)), Err(Error::Vacuumed { .. })));
    assert_eq!(check_snapshot(&wh.snapshot(None).unwrap()).len(), 5);
    let report = verify(&wh);
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!(
        (report.fragments_checked, report.unreferenced_files),
        (4, 0)
    );
    // A vacuum with a long window keeps everything.
    let r = vacuum(&wh, std::time::Duration::from_secs(3600)).unwrap();
    assert!(r.deleted.is_empty());
}

#[test]
fn lz4_warehouse_and_product_conflicts() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = WarehouseConfig::new(grid());
    cfg.compression = FragmentCompression::Lz4;
    let wh = Warehouse::create(d.path(), cfg).unwrap();
    ingest(&wh, "z", 0..2).unwrap();
    let snap = wh.snapshot(None).unwrap();
    check_snapshot(&snap);
    let e = &snap.fragments()[0];
    let cached = snap.fragment(e).unwrap();
    assert_eq!(
        cached.pixel_bytes(0),
        snap.read_fragment(e).unwrap().pixel_bytes(0)
    );
    let b = wh.begin_batch();
    b.register_product("S2", profile_with_scale(2e-4)).unwrap();
    assert!(matches!(b.commit(), Err(Error::ProductConflict { .. })));
    // Names that would become paths are rejected.
    let b = wh.begin_batch();
    let mut f = fragment("z", 9, TileId::new(0, 0), 0);
    f.band = "../escape".into();
    let e = b.write_fragment(f).unwrap_err().to_string();
    assert!(e.contains("band") && e.contains("../escape"), "{e}");
    // A dropped batch leaves nothing behind.
    let b = wh.begin_batch();
    b.write_fragment(fragment("z", 9, TileId::new(0, 0), 0))
        .unwrap();
    drop(b);
    assert_eq!(verify(&wh).unreferenced_files, 0);
}

#[test]
fn fragments_open_with_the_plain_arrow_ipc_reader() {
    let d = tempfile::tempdir().unwrap();
    for compression in [FragmentCompression::None, FragmentCompression::Lz4] {
        let dir = d.path().join(format!("{compression:?}"));
        let mut cfg = WarehouseConfig::new(grid());
        cfg.compression = compression;
        let wh = Warehouse::create(&dir, cfg).unwrap();
        let b = wh.begin_batch();
        let mut data = fragment("r", 1, TileId::new(0, 0), 1);
        data.observations
            .extend(fragment("r", 0, TileId::new(0, 0), 1).observations);
        let e = b.write_fragment(data).unwrap();
        b.commit().unwrap();
        let file = std::fs::File::open(wh.root().join(&e.path)).unwrap();
        let reader = arrow_ipc::reader::FileReader::try_new(file, None).unwrap();
        let schema = reader.schema();
        let md = schema.metadata();
        assert_eq!(md.get("pixelquery.tile").unwrap(), "x0_y0");
        assert_eq!(md.get("pixelquery.band").unwrap(), "B08");
        assert_eq!(md.get("pixelquery.crs").unwrap(), "EPSG:32633");
        assert_eq!(md.get("pixelquery.dtype").unwrap(), "u16");
        assert_eq!(md.get("pixelquery.nodata").unwrap(), "0.0");
        assert_eq!(md.get("pixelquery.format_version").unwrap(), "3");
        assert_eq!(md.get("pixelquery.window").unwrap(), "[0, 0, 16, 16]");
        let gt: Vec<f64> =
            serde_json::from_str(md.get("pixelquery.geotransform").unwrap()).unwrap();
        assert_eq!(gt, vec![500_000.0, 10.0, 0.0, 4_000_000.0, 0.0, -10.0]);
        let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        let keys = batch
            .column(1)
            .as_any()
            .downcast_ref::<arrow_array::DictionaryArray<arrow_array::types::Int32Type>>()
            .unwrap();
        let values = keys
            .values()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        let id = |i: usize| values.value(keys.keys().value(i) as usize);
        assert_eq!((id(0), id(1)), ("r-0000", "r-0001"), "sorted by time");
        let times = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(times.value(0), time_of(0).timestamp_micros());
        let list = batch
            .column(2)
            .as_any()
            .downcast_ref::<arrow_array::FixedSizeListArray>()
            .unwrap();
        let row = list.value(1);
        let px = row
            .as_any()
            .downcast_ref::<arrow_array::UInt16Array>()
            .unwrap();
        assert_eq!(px.len(), 256);
        assert!(px.is_null(0), "nodata is a null");
        assert_eq!(px.value(5), pixel(1, TileId::new(0, 0), 1, 5));
    }
}

#[test]
fn catalog_is_geoparquet_1_1() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let d = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(d.path(), WarehouseConfig::new(grid())).unwrap();
    ingest(&wh, "g", 0..1).unwrap();
    let snap = wh.snapshot(None).unwrap();
    for part in snap.parts() {
        let file = std::fs::File::open(wh.root().join(&part.path)).unwrap();
        let r = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let kv = r.metadata().file_metadata().key_value_metadata().unwrap();
        let geo = kv
            .iter()
            .find(|k| k.key == "geo")
            .unwrap()
            .value
            .clone()
            .unwrap();
        let geo: serde_json::Value = serde_json::from_str(&geo).unwrap();
        assert_eq!(geo["version"], "1.1.0");
        assert_eq!(geo["primary_column"], "geometry");
        let col = &geo["columns"]["geometry"];
        assert_eq!(col["encoding"], "WKB");
        assert_eq!(col["geometry_types"], serde_json::json!(["Polygon"]));
        assert_eq!(
            col["covering"]["bbox"]["xmin"],
            serde_json::json!(["bbox", "xmin"])
        );
        assert_eq!(col["bbox"].as_array().unwrap().len(), 4);
        let schema = r.schema().clone();
        let geom = schema.field_with_name("geometry").unwrap();
        assert_eq!(geom.data_type(), &arrow_schema::DataType::Binary);
        let bbox = schema.field_with_name("bbox").unwrap();
        assert!(matches!(bbox.data_type(), arrow_schema::DataType::Struct(f) if f.len() == 4));
        let batch = r.build().unwrap().next().unwrap().unwrap();
        let g = batch
            .column_by_name("geometry")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::BinaryArray>()
            .unwrap();
        let ring = parse_wkb_polygon(g.value(0)).unwrap();
        assert_eq!(ring.len(), 5);
        assert_eq!(ring[0], ring[4]);
        match part.kind {
            PartKind::Fragment => {
                assert_eq!(batch.num_rows(), 4);
                for c in [
                    "tile",
                    "band",
                    "product",
                    "time_min",
                    "time_max",
                    "observations",
                    "resolution",
                    "path",
                    "bytes",
                    "checksum",
                    "valid_min",
                    "valid_max",
                    "valid_mean",
                ] {
                    assert!(batch.column_by_name(c).is_some(), "{c}");
                }
            }
            PartKind::Scene => {
                assert_eq!(batch.num_rows(), 1);
                for c in [
                    "scene_id",
                    "source",
                    "acquired",
                    "product",
                    "cloud_cover",
                    "ingested",
                    "fingerprint",
                ] {
                    assert!(batch.column_by_name(c).is_some(), "{c}");
                }
            }
        }
    }
}

#[test]
fn cli_verify_compact_vacuum_exit_codes() {
    let exe = env!("CARGO_BIN_EXE_pixelquery");
    let d = tempfile::tempdir().unwrap();
    let wh = Warehouse::create(d.path(), WarehouseConfig::new(grid())).unwrap();
    ingest(&wh, "c", 0..3).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(exe).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let root = d.path().to_str().unwrap();
    assert_eq!(run(&["verify", root]).0, Some(0));
    let (code, out) = run(&["compact", root, "--period", "year"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("12 -> 4 fragments"), "{out}");
    let (code, out) = run(&["vacuum", root, "--older-than", "0"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("deleted 18 files"), "{out}");
    assert_eq!(run(&["verify", root]).0, Some(0));
    // Damage a fragment: verify says unhealthy (exit 1) and names it.
    let e = wh.snapshot(None).unwrap().fragments()[0].clone();
    let p = d.path().join(&e.path);
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, &bytes).unwrap();
    let (code, out) = run(&["verify", root]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&e.path) && out.contains("checksum"), "{out}");
    let (code, out) = run(&["verify", d.path().join("nope").to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(run(&["vacuum", root, "--older-than", "7y"])
        .1
        .contains("invalid duration"));
}
