//! Writing query outputs against the write floor, measured in the same run.
//!
//! Setup: the 12 scenes of `corpus/ts` (the demo series without the corpus) ingested into a
//! warehouse, and 240 dates made from them (20 copies of each scene under STAC items dated 0
//! to 19 days later) in a second one. Cases: one grid tile (384 x 384 px at 10 m) and a 2x2
//! tile box (768 x 768 px), 4 bands, over 12 and 240 dates. Each write is a whole `query
//! --out` as the CLI runs it on an open snapshot: plan, paint window by window, encode,
//! write, rename. The floor is writing the cube's bytes (its native `u16` values, uncompressed)
//! into a new file with one `write` call: no output of that cube can be cheaper. Neither
//! fsyncs. Write, floor and the query alone (the same cube painted in memory) take turns in
//! each round; medians are printed. The pixel tables (`.parquet`, `.csv`) hold other bytes
//! than the cube, so they get a second floor in the same rounds: the written file's own bytes
//! (read once into memory) written raw to a new file.
//!
//! `cargo bench --bench export` (`PQ_BENCH_QUICK=1`: one round, 12 dates only).

mod support;

use pixelquery::cog::{CogWriter, Interleave, WriteCompression, WriteOptions};
use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use pixelquery::query::export::{write_plan, ExportOptions, OutputCompression};
use pixelquery::store::{Snapshot, Warehouse};
use pixelquery::{Bounds, TileId};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Median wall times of `runs` rounds, each timing every function once in turn (after one
/// warm-up round); `prepare` runs untimed before each (to delete the previous output).
fn interleaved_medians<const N: usize>(
    runs: usize,
    prepare: &mut dyn FnMut(),
    mut fs: [&mut dyn FnMut(); N],
) -> [f64; N] {
    let mut times = [(); N].map(|_| Vec::with_capacity(runs));
    for round in 0..=runs {
        for (f, t) in fs.iter_mut().zip(times.iter_mut()) {
            prepare();
            let start = Instant::now();
            f();
            if round > 0 {
                t.push(start.elapsed().as_secs_f64());
            }
        }
    }
    times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    })
}

/// 240 dates: STAC items for 20 copies (symlinks) of each scene, 0..19 days later.
fn items_240(files: &[PathBuf], dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut features = Vec::new();
    for f in files {
        let cog = pixelquery::cog::Cog::open(f).unwrap();
        let when = cog.meta().acquired.expect("scene time");
        let bands: Vec<serde_json::Value> = cog
            .meta()
            .bands
            .iter()
            .enumerate()
            .map(|(i, b)| {
                serde_json::json!({"name": b.description.clone().unwrap_or(format!("B{i}"))})
            })
            .collect();
        for k in 0..20 {
            let name = format!("k{k:02}_{}", f.file_name().unwrap().to_string_lossy());
            let link = dir.join(&name);
            if !link.exists() {
                std::os::unix::fs::symlink(f, &link).unwrap();
            }
            let t = when + chrono::Duration::days(k);
            features.push(serde_json::json!({
                "type": "Feature",
                "id": name,
                "properties": {"datetime": t.to_rfc3339()},
                "assets": {"data": {"href": link.display().to_string(), "type": "image/tiff", "eo:bands": bands}},
            }));
        }
    }
    let path = dir.join("items.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&serde_json::json!({"type": "FeatureCollection", "features": features}))
            .unwrap(),
    )
    .unwrap();
    path
}

fn warehouse(path: &Path, inputs: &[String]) -> Warehouse {
    let options = IngestOptions {
        product: Some("sentinel2_l2a".into()),
        ..Default::default()
    };
    ingest(path, inputs, &options, &Quiet).unwrap();
    Warehouse::open(path).unwrap()
}

/// Encoders on the blocks the COG writer compresses: 256 x 256 u16 blocks of the first scene
/// after predictor 2, single-threaded; MB/s of input and compression ratio.
fn encoders(scene: &Path, quick: bool) {
    let cog = pixelquery::cog::Cog::open(scene).unwrap();
    let m = cog.meta();
    let bands: Vec<usize> = (0..m.band_count()).collect();
    let img = cog
        .read_window::<u16>(
            0,
            pixelquery::cog::Window::full(m.width(), m.height()),
            &bands,
        )
        .unwrap();
    let (nb, h, w) = img.dim();
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for b in 0..nb {
        for by in 0..h / 256 {
            for bx in 0..w / 256 {
                let mut block = Vec::with_capacity(256 * 256 * 2);
                for y in 0..256 {
                    let mut prev = 0u16;
                    for x in 0..256 {
                        let v = img[[b, by * 256 + y, bx * 256 + x]];
                        let d = if x == 0 { v } else { v.wrapping_sub(prev) };
                        prev = v;
                        block.extend_from_slice(&d.to_le_bytes());
                    }
                }
                blocks.push(block);
            }
        }
    }
    let total: usize = blocks.iter().map(Vec::len).sum();
    type Encoder<'a> = (&'a str, Box<dyn Fn(&[u8]) -> Vec<u8>>);
    let encoders: Vec<Encoder> = vec![
        ("fdeflate (used)", Box::new(fdeflate::compress_to_vec)),
        (
            "miniz_oxide level 1",
            Box::new(|b: &[u8]| miniz_oxide::deflate::compress_to_vec_zlib(b, 1)),
        ),
        (
            "miniz_oxide level 6 (before)",
            Box::new(|b: &[u8]| miniz_oxide::deflate::compress_to_vec_zlib(b, 6)),
        ),
        (
            "ruzstd fastest (ZSTD)",
            Box::new(|b: &[u8]| {
                ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest)
            }),
        ),
    ];
    println!(
        "\nencoders on {} predicted 256x256 u16 blocks ({:.1} MB), one thread",
        blocks.len(),
        total as f64 / 1e6
    );
    println!("| encoder | MB/s | ratio |");
    println!("|---|---|---|");
    for (name, f) in &encoders {
        let mut out = 0;
        let secs = support::median_secs(if quick { 1 } else { 5 }, || {
            out = blocks.iter().map(|b| f(b).len()).sum::<usize>();
        });
        println!(
            "| {name} | {:.0} | {:.2} |",
            total as f64 / secs / 1e6,
            total as f64 / out as f64
        );
    }
}

/// The encode floor of a DEFLATE COG: the cube written by `CogWriter` into memory (predictor
/// and DEFLATE of every block on all threads, the export's block size), no painting, no file.
fn encode_floor(cube: &ndarray::Array4<u16>) -> usize {
    let (t, b, h, w) = cube.dim();
    let side = h.max(w);
    let block = if side <= 512 {
        side.div_ceil(16) * 16
    } else {
        256
    };
    let options = WriteOptions {
        block_size: block as u32,
        compression: WriteCompression::Deflate,
        interleave: Interleave::Band,
        overviews: false,
        ..Default::default()
    };
    let mut writer = CogWriter::<u16>::in_memory(w, h, t * b, &options).unwrap();
    let planes = cube.view().into_shape_with_order((t * b, h, w)).unwrap();
    writer.write(0, 0, 0, planes).unwrap();
    writer.finish().unwrap().map_or(0, |bytes| bytes.len())
}

fn main() {
    let quick =
        std::env::args().any(|a| a == "--test") || std::env::var_os("PQ_BENCH_QUICK").is_some();
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = support::time_series(tmp.path())
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("_SCL_"))
        .collect();
    let inputs: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let wh12 = warehouse(&tmp.path().join("wh12"), &inputs);
    let wh240 = (!quick).then(|| {
        let items = items_240(&files, &tmp.path().join("copies"));
        warehouse(&tmp.path().join("wh240"), &[items.display().to_string()])
    });
    let grid = wh12.config().grid;
    let scene = pixelquery::cog::Cog::open(&files[0]).unwrap();
    let sb = scene.meta().bounds().unwrap();
    let centre = grid.tile_at((sb.min_x + sb.max_x) / 2.0, (sb.min_y + sb.max_y) / 2.0);
    let tile = grid.tile_bounds(centre);
    let box2 = {
        let b = grid.tile_bounds(TileId::new(centre.col + 1, centre.row + 1));
        Bounds::new(tile.min_x, b.min_y, b.max_x, tile.max_y)
    };
    encoders(&files[0], quick);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let epsg = grid.epsg;

    let mut sets: Vec<(&str, &Warehouse, Snapshot)> =
        vec![("12 dates", &wh12, wh12.snapshot(None).unwrap())];
    if let Some(w) = &wh240 {
        sets.push(("240 dates", w, w.snapshot(None).unwrap()));
    }
    println!(
        "\n{} threads; medians of interleaved rounds; floor = the cube's u16 bytes written raw to a new file",
        rayon::current_num_threads()
    );
    println!("format floor: COG rows = the cube written as a COG into memory with DEFLATE (predictor + fdeflate on all threads; nothing painted, no file) plus the floor; tables = the written file's own bytes written raw to a new file");
    println!("| case | output | size | write | floor | write / floor | query alone | format floor | write / format floor |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (dates, wh, snap) in &sets {
        let rounds = if quick {
            1
        } else if dates.starts_with("240") {
            3
        } else {
            7
        };
        for (area, bounds) in [("tile 384x384", tile), ("box 768x768", box2)] {
            let big = dates.starts_with("240");
            let mut formats: Vec<(&str, &str, ExportOptions)> = vec![
                ("cube.tif", ".tif", ExportOptions::default()),
                (
                    "cube_raw.tif",
                    ".tif --compress none",
                    ExportOptions {
                        compression: OutputCompression::None,
                        ..Default::default()
                    },
                ),
                ("dates/", "DIR/", ExportOptions::default()),
                ("cube.zarr", ".zarr", ExportOptions::default()),
            ];
            if !big {
                formats.push(("pixels.parquet", ".parquet", ExportOptions::default()));
                formats.push(("pixels.csv", ".csv", ExportOptions::default()));
                formats.push((
                    "cube_ovr.tif",
                    ".tif --overviews",
                    ExportOptions {
                        overviews: true,
                        ..Default::default()
                    },
                ));
            }
            let query = || {
                wh.query()
                    .on_snapshot(snap)
                    .bbox(bounds)
                    .crs(epsg)
                    .memory_budget(2 << 30)
            };
            let (t, b, h, w) = query().prepare().unwrap().dim();
            let raw = vec![1u8; t * b * h * w * 2];
            let cube = std::mem::take(&mut query().run_native::<u16>().unwrap().data);
            let deflate = support::median_secs(rounds, || encode_floor(&cube));
            for (name, label, options) in &formats {
                let path = out.join(name);
                let floor_path = out.join("floor.bin");
                let mut clean = || {
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_dir_all(&path);
                    let _ = std::fs::remove_file(&floor_path);
                };
                // Tables hold other bytes than the cube: their floor is the file's own bytes.
                let table = label.ends_with(".parquet") || label.ends_with(".csv");
                let own = if table {
                    let plan = query().prepare().unwrap();
                    write_plan(&plan, &path, options).unwrap();
                    std::fs::read(&path).unwrap()
                } else {
                    Vec::new()
                };
                let [write, floor, alone, file_floor] = interleaved_medians(
                    rounds,
                    &mut clean,
                    [
                        &mut || {
                            let plan = query().prepare().unwrap();
                            write_plan(&plan, &path, options).unwrap();
                        },
                        &mut || std::fs::write(&floor_path, &raw).unwrap(),
                        &mut || {
                            std::hint::black_box(query().run_native::<u16>().unwrap());
                        },
                        &mut || {
                            if table {
                                std::fs::write(&floor_path, &own).unwrap();
                            }
                        },
                    ],
                );
                drop(own);
                let plan = query().prepare().unwrap();
                let written = write_plan(&plan, &path, options).unwrap().unwrap();
                let cog = label.contains(".tif") || label.starts_with("DIR");
                let encode = (options.compression != OutputCompression::None).then_some(deflate);
                let own_floor = match (cog, encode) {
                    (true, Some(encode)) => Some(encode + floor),
                    _ if table => Some(file_floor),
                    _ => None,
                };
                let by_format = match own_floor {
                    Some(f) => format!("{:.0} ms | {:.2}x", f * 1e3, write / f),
                    None => "- | -".to_string(),
                };
                println!(
                    "| {area}, {dates} ({:.0} MB u16) | {label} | {:.0} MB | {:.0} ms | {:.0} ms | {:.2}x | {:.0} ms | {by_format} |",
                    raw.len() as f64 / 1e6,
                    written.bytes as f64 / 1e6,
                    write * 1e3,
                    floor * 1e3,
                    write / floor,
                    alone * 1e3,
                );
            }
        }
    }
}
