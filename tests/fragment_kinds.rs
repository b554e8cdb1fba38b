//! Every kind of fragment (uncompressed, LZ4, ZSTD; cropped or whole tiles; several sample
//! types; incompressible and multi-block buffers) is read by pyarrow with the right values,
//! and queries return bit-identical cubes whatever the warehouse's settings.

mod common;

use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use pixelquery::store::{
    BooleanBuffer, ChunkShape, FragmentCompression, FragmentData, FragmentEntry, Observation,
    PixelBuffer, Warehouse, WarehouseConfig,
};
use pixelquery::{DataType, GeoTransform, GridSpec, TileId};

/// Compression, cropping and chunk shape (the default, small chunks and blocks, one chunk
/// the size of a tile with blocks longer than any series).
const SETTINGS: [(FragmentCompression, bool, ChunkShape); 8] = [
    (FragmentCompression::None, true, ChunkShape::DEFAULT),
    (FragmentCompression::Lz4, true, ChunkShape::DEFAULT),
    (FragmentCompression::Zstd, true, ChunkShape::DEFAULT),
    (FragmentCompression::None, false, ChunkShape::DEFAULT),
    (FragmentCompression::Lz4, false, ChunkShape::DEFAULT),
    (FragmentCompression::Zstd, false, ChunkShape::DEFAULT),
    (FragmentCompression::Zstd, true, SMALL),
    (FragmentCompression::Lz4, false, WHOLE),
];
const SMALL: ChunkShape = ChunkShape {
    rows: 7,
    cols: 5,
    observations: 3,
};
const WHOLE: ChunkShape = ChunkShape {
    rows: 4096,
    cols: 4096,
    observations: 4096,
};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// A fragment of `obs` observations on a `w` x `h` tile whose valid pixels lie in a
/// rectangle that differs per observation (so cropping keeps their union).
fn data(
    band: &str,
    w: u32,
    h: u32,
    obs: usize,
    pixels: &dyn Fn(usize, usize) -> PixelBuffer,
) -> FragmentData {
    let nodata = match pixels(0, 1).dtype() {
        DataType::U16 => Some(0.0),
        DataType::F32 => Some(f64::NAN),
        _ => None,
    };
    let observations = (0..obs)
        .map(|o| {
            let (x0, x1, y0, y1) = (2 + o, w as usize - 3, 1, h as usize - 2 - o);
            let valid = BooleanBuffer::from(
                (0..(w * h) as usize)
                    .map(|i| {
                        let (x, y) = (i % w as usize, i / w as usize);
                        (x0..x1).contains(&x) && (y0..y1).contains(&y) && (i * 7 + o) % 11 != 0
                    })
                    .collect::<Vec<bool>>(),
            );
            Observation {
                time: chrono::DateTime::from_timestamp(1_600_000_000 + o as i64 * 86_400, 0)
                    .unwrap(),
                scene_id: format!("scene-{o}"),
                pixels: pixels(o, (w * h) as usize),
                valid: Some(valid),
            }
        })
        .collect();
    FragmentData {
        tile: TileId::new(0, 0),
        band: band.into(),
        product: "P".into(),
        dtype: pixels(0, 1).dtype(),
        nodata,
        scale: 1.0,
        offset: 0.0,
        tile_transform: GeoTransform::north_up(0.0, 4000.0, 10.0, 10.0),
        width: w,
        height: h,
        footprint_lonlat: vec![(1.0, 1.0), (1.1, 1.0), (1.1, 1.1), (1.0, 1.1)],
        resolution: 10.0,
        observations,
    }
}

fn kinds() -> Vec<FragmentData> {
    vec![
        // Smooth u16 over several ZSTD blocks.
        data("smooth", 300, 200, 3, &|o, n| {
            (0..n)
                .map(|i| (1000 + (i % 300) + (i / 300) * 2 + o * 5) as u16)
                .collect::<Vec<u16>>()
                .into()
        }),
        // Random bytes: compression cannot shrink them (buffers stored as they are).
        data("noise", 64, 48, 2, &|o, n| {
            let mut r = Lcg(o as u64 + 1);
            (0..n).map(|_| r.next() as u8).collect::<Vec<u8>>().into()
        }),
        // Floats with NaN as nodata, a 5 x 7 tile (rows not byte aligned).
        data("float", 5, 7, 2, &|o, n| {
            (0..n)
                .map(|i| {
                    if i % 9 == 4 {
                        f32::NAN
                    } else {
                        i as f32 * 0.5 - o as f32
                    }
                })
                .collect::<Vec<f32>>()
                .into()
        }),
        // Signed bytes without nodata.
        data("signed", 33, 9, 4, &|o, n| {
            (0..n)
                .map(|i| (i as i64 * 3 - 50 + o as i64) as i8)
                .collect::<Vec<i8>>()
                .into()
        }),
    ]
}

/// What pyarrow must read for observation `k` of `d` stored in `e`'s window: the value, or
/// `None` where invalid.
fn expected(d: &FragmentData, e: &FragmentEntry, k: usize) -> Vec<Option<f64>> {
    let o = &d.observations[k];
    let valid: Vec<bool> = o.valid.as_ref().unwrap().iter().collect();
    let values: Vec<f64> = match &o.pixels {
        PixelBuffer::U16(v) => v.iter().map(|&x| x as f64).collect(),
        PixelBuffer::U8(v) => v.iter().map(|&x| x as f64).collect(),
        PixelBuffer::I8(v) => v.iter().map(|&x| x as f64).collect(),
        PixelBuffer::F32(v) => v.iter().map(|&x| x as f64).collect(),
        p => panic!("untested {}", p.dtype()),
    };
    let w = &e.window;
    let mut out = Vec::new();
    for r in w.row..w.row + w.height {
        for c in w.col..w.col + w.width {
            let i = (r * d.width + c) as usize;
            out.push(valid[i].then_some(values[i]));
        }
    }
    out
}

/// Reads fragment files with pyarrow alone, as a user would: every record batch is one chunk
/// of the tile for one block of observations (the schema metadata says which), put back
/// together into each observation's stored window.
const READ_WITH_PYARROW: &str = r#"
import json, math, sys
import pyarrow.ipc
out = []
for path in sys.argv[1:]:
    reader = pyarrow.ipc.open_file(path)
    md = {k.decode(): v.decode() for k, v in reader.schema.metadata.items()}
    crow, ccol, _ = json.loads(md["pixelquery.chunk"])
    blocks = json.loads(md["pixelquery.blocks"])
    chunks = json.loads(md["pixelquery.chunks"])
    wc, wr, ww, wh = json.loads(md["pixelquery.window"])
    across = -(-int(md["pixelquery.width"]) // ccol)
    starts = [sum(blocks[:b]) for b in range(len(blocks))]
    n = sum(blocks)
    pixels = [[None] * (ww * wh) for _ in range(n)]
    scenes = [None] * n
    assert reader.num_record_batches == len(chunks) * len(blocks)
    for j in range(reader.num_record_batches):
        batch = reader.get_batch(j)
        k, b = chunks[j // len(blocks)], j % len(blocks)
        cr, cc = divmod(k, across)
        ids = batch.column(1).to_pylist()
        for i, row in enumerate(batch.column(2).to_pylist()):
            o = starts[b] + i
            scenes[o] = ids[i]
            for r in range(crow):
                for c in range(ccol):
                    y, x = cr * crow + r - wr, cc * ccol + c - wc
                    if 0 <= y < wh and 0 <= x < ww:
                        v = row[r * ccol + c]
                        pixels[o][y * ww + x] = None if v is None else ("nan" if isinstance(v, float) and math.isnan(v) else v)
    out.append({"window": [wc, wr, ww, wh], "version": md["pixelquery.format_version"],
                "scenes": scenes, "pixels": pixels})
print(json.dumps(out))
"#;

#[test]
fn pyarrow_reads_every_fragment_kind() {
    let Some(python) = common::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    let mut want = Vec::new();
    for (k, (compression, crop, chunk)) in SETTINGS.into_iter().enumerate() {
        let mut config = WarehouseConfig::new(GridSpec::new(32633, 0.0, 0.0, 4000.0).unwrap());
        (config.compression, config.crop, config.chunk) = (compression, crop, chunk);
        let wh = Warehouse::create(dir.path().join(format!("wh{k}")), config).unwrap();
        let batch = wh.begin_batch();
        for d in kinds() {
            let e = batch.write_fragment(d.clone()).unwrap();
            assert_eq!(e.window.is_full(e.width, e.height), !crop, "{}", d.band);
            let f = pixelquery::store::Fragment::open(&wh.root().join(&e.path)).unwrap();
            if d.band == "smooth" {
                assert_eq!(f.compression(), compression);
            }
            paths.push(wh.root().join(&e.path).display().to_string());
            want.push((d, e));
        }
        batch.commit().unwrap();
    }
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let got: serde_json::Value =
        serde_json::from_str(&common::run_python(&python, READ_WITH_PYARROW, &args)).unwrap();
    for ((d, e), g) in want.iter().zip(got.as_array().unwrap()) {
        let w = e.window;
        assert_eq!(
            g["window"],
            serde_json::json!([w.col, w.row, w.width, w.height])
        );
        assert_eq!(g["version"], "3");
        let rows = g["pixels"].as_array().unwrap();
        assert_eq!(rows.len(), d.observations.len());
        for (k, row) in rows.iter().enumerate() {
            assert_eq!(g["scenes"][k], format!("scene-{k}"));
            let row: Vec<Option<f64>> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|v| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) if s == "nan" => Some(f64::NAN),
                    v => v.as_f64(),
                })
                .collect();
            let exp = expected(d, e, k);
            assert_eq!(row.len(), exp.len(), "{} {k}", d.band);
            for (i, (a, b)) in row.iter().zip(&exp).enumerate() {
                let same = match (a, b) {
                    (Some(a), Some(b)) => a == b || (a.is_nan() && b.is_nan()),
                    (None, None) => true,
                    _ => false,
                };
                assert!(
                    same,
                    "{} observation {k} pixel {i}: pyarrow {a:?}, written {b:?}",
                    d.band
                );
            }
        }
    }
}

#[test]
fn queries_are_bit_identical_across_settings() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = pixelquery::demo::write_scenes(&dir.path().join("scenes")).unwrap();
    let inputs = vec![dir.path().join("scenes").display().to_string()];
    let mut cubes = Vec::new();
    for (k, (compression, crop, chunk)) in SETTINGS.into_iter().enumerate() {
        let options = IngestOptions {
            product: Some("sentinel2_l2a".into()),
            compression,
            crop,
            chunk,
            ..Default::default()
        };
        let path = dir.path().join(format!("wh{k}"));
        ingest(&path, &inputs, &options, &Quiet).unwrap();
        let wh = Warehouse::open(&path).unwrap();
        let snap = wh.snapshot(None).unwrap();
        assert_eq!(
            snap.fragments()
                .iter()
                .any(|e| !e.window.is_full(e.width, e.height)),
            crop,
            "the demo scenes leave tiles partly empty"
        );
        // The whole scene (past its edges), a point, native samples, a cloud-masked index.
        let scene = pixelquery::cog::Cog::open(&scenes[0]).unwrap();
        let b = scene.meta().bounds().unwrap();
        let epsg = wh.config().grid.epsg;
        let bbox = pixelquery::Bounds::new(
            b.min_x - 500.0,
            b.min_y - 500.0,
            b.max_x + 500.0,
            b.max_y + 500.0,
        );
        let q = || wh.query().on_snapshot(&snap).crs(epsg);
        let full = q().bbox(bbox).run().unwrap();
        let point = q().point(b.min_x + 1234.0, b.max_y - 2345.0).run().unwrap();
        let native = q()
            .bbox(bbox)
            .bands(&["red", "nir"])
            .run_native::<u16>()
            .unwrap();
        let (lon, lat) = pixelquery::demo::sample_point();
        let ndvi = wh
            .query()
            .on_snapshot(&snap)
            .point(lon, lat)
            .index("ndvi")
            .unwrap()
            .mask_clouds(true)
            .run()
            .unwrap();
        let bits = |a: &ndarray::Array4<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        cubes.push((
            bits(&full.data),
            bits(&point.data),
            native.data.iter().copied().collect::<Vec<u16>>(),
            bits(&ndvi.data),
            full.times.clone(),
        ));
    }
    assert!(cubes[0].0.iter().any(|&v| !f32::from_bits(v).is_nan()));
    for (k, c) in cubes.iter().enumerate().skip(1) {
        assert!(
            c == &cubes[0],
            "setting {:?} differs from {:?}",
            SETTINGS[k],
            SETTINGS[0]
        );
    }
}

#[test]
fn compaction_keeps_the_union_of_windows() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WarehouseConfig::new(GridSpec::new(32633, 0.0, 0.0, 4000.0).unwrap());
    config.compression = FragmentCompression::Zstd;
    let wh = Warehouse::create(dir.path().join("wh"), config).unwrap();
    let smooth = &kinds()[0];
    // Two writes of the tile with different windows (observations 0 and 2 of `smooth`).
    let mut windows = Vec::new();
    for k in [0, 2] {
        let mut d = smooth.clone();
        d.observations = vec![smooth.observations[k].clone()];
        let batch = wh.begin_batch();
        windows.push(batch.write_fragment(d).unwrap().window);
        batch.commit().unwrap();
    }
    assert_ne!(windows[0], windows[1]);
    let before = wh.snapshot(None).unwrap();
    let read = |snap: &pixelquery::store::Snapshot| -> Vec<Observation> {
        let mut v: Vec<Observation> = snap
            .fragments()
            .iter()
            .flat_map(|e| {
                let f = snap.read_fragment(e).unwrap();
                (0..f.len()).map(move |k| f.observation(k).unwrap())
            })
            .collect();
        v.sort_by_key(|o| o.time);
        v
    };
    let old = read(&before);
    pixelquery::store::compact(&wh, pixelquery::store::CompactPeriod::All).unwrap();
    let after = wh.snapshot(None).unwrap();
    assert_eq!(after.fragments().len(), 1);
    assert_eq!(after.fragments()[0].window, windows[0].union(&windows[1]));
    let new = read(&after);
    assert_eq!(old.len(), new.len());
    for (a, b) in old.iter().zip(&new) {
        let (va, vb) = (a.valid.as_ref().unwrap(), b.valid.as_ref().unwrap());
        assert_eq!(va, vb);
        let (PixelBuffer::U16(pa), PixelBuffer::U16(pb)) = (&a.pixels, &b.pixels) else {
            panic!("u16 expected");
        };
        assert!(va.iter().enumerate().all(|(i, v)| !v || pa[i] == pb[i]));
    }
}

#[test]
fn cli_compression_and_crop_options() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = pixelquery::demo::write_scenes(&dir.path().join("scenes")).unwrap();
    let scene = scenes[0].display().to_string();
    let wh = dir.path().join("wh").display().to_string();
    let (code, _, err) = common::run_cli(&["ingest", &wh, &scene, "--compression", "brotli"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("invalid --compression \"brotli\": use zstd, lz4 or none"),
        "{err}"
    );
    let (code, _, err) = common::run_cli(
        &["ingest", &wh, &scene, "--compression", "LZ4", "--no-crop"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let wh = Warehouse::open(&wh).unwrap();
    assert_eq!(
        (wh.config().compression, wh.config().crop),
        (FragmentCompression::Lz4, false)
    );
    let snap = wh.snapshot(None).unwrap();
    assert!(snap
        .fragments()
        .iter()
        .all(|e| e.window.is_full(e.width, e.height)));
    // The default: ZSTD, cropped.
    let other = dir.path().join("wh2").display().to_string();
    assert_eq!(common::run_cli(&["ingest", &other, &scene], &[]).0, 0);
    let wh = Warehouse::open(&other).unwrap();
    assert_eq!(
        (wh.config().compression, wh.config().crop),
        (FragmentCompression::Zstd, true)
    );
}
