//! Decode speed of the COG reader against its floor, measured in the same run.
//!
//! Scene: `corpus/ts/S2L_T52_20230611_10m.tif` (1024x1024x4 u16, DEFLATE + predictor 2,
//! 16 tiles of 256x256) when the shared corpus is present, else a small fixture.
//! Floor: inflating the same compressed tiles (bytes already in memory) with the same
//! inflater, nothing else. Full decode: `Cog::read_window` of every band, which also reads
//! the file, undoes the predictor and de-interleaves into a (band, y, x) array.
//!
//! `cargo bench --bench decode` prints criterion's figures, then a table of medians and
//! ratios on 1 and 2 threads.

mod support;

use criterion::Criterion;
use pixelquery::cog::{Cog, Window};
use rayon::prelude::*;
use std::path::PathBuf;
use zune_inflate::{DeflateDecoder, DeflateOptions};

fn scene() -> PathBuf {
    match support::corpus() {
        Some(c) => c.join("ts/S2L_T52_20230611_10m.tif"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cog/u16_deflate_pred2_tiled16_pixel.tif"),
    }
}

fn compressed_tiles(cog: &Cog) -> Vec<Vec<u8>> {
    let l = &cog.meta().levels[0];
    l.offsets
        .iter()
        .zip(&l.byte_counts)
        .map(|(&o, &n)| cog.source().read_at(o, n as usize).unwrap().to_vec())
        .collect()
}

fn inflate(tile: &[u8], expected: usize) -> usize {
    let opts = DeflateOptions::default()
        .set_limit(expected)
        .set_size_hint(expected);
    DeflateDecoder::new_with_options(tile, opts)
        .decode_zlib()
        .unwrap()
        .len()
}

fn main() {
    let path = scene();
    let cog = Cog::open(&path).unwrap();
    let m = cog.meta().clone();
    let l0 = &m.levels[0];
    let tile_bytes =
        l0.block_width as usize * l0.block_height as usize * m.band_count() * m.dtype().size();
    let tiles = compressed_tiles(&cog);
    let full = Window::full(m.width(), m.height());
    let bands: Vec<usize> = (0..m.band_count()).collect();
    let decode = || cog.read_window::<u16>(0, full, &bands).unwrap();
    let floor = || tiles.iter().map(|t| inflate(t, tile_bytes)).sum::<usize>();
    let floor_par = || {
        tiles
            .par_iter()
            .map(|t| inflate(t, tile_bytes))
            .sum::<usize>()
    };
    let (p1, p2) = (support::pool(1), support::pool(2));

    let mut c = Criterion::default().configure_from_args().sample_size(30);
    let mut g = c.benchmark_group("decode");
    g.throughput(criterion::Throughput::Bytes(
        (m.width() as u64) * (m.height() as u64) * bands.len() as u64 * 2,
    ));
    g.bench_function("inflate_floor_1t", |b| b.iter(|| p1.install(floor)));
    g.bench_function("full_decode_1t", |b| b.iter(|| p1.install(decode)));
    g.bench_function("inflate_floor_2t", |b| b.iter(|| p2.install(floor_par)));
    g.bench_function("full_decode_2t", |b| b.iter(|| p2.install(decode)));
    g.finish();

    let runs = 41;
    let f1 = support::median_secs(runs, || p1.install(floor));
    let d1 = support::median_secs(runs, || p1.install(decode));
    let f2 = support::median_secs(runs, || p2.install(floor_par));
    let d2 = support::median_secs(runs, || p2.install(decode));
    println!("\nscene: {} ({} tiles)", path.display(), tiles.len());
    println!("| threads | inflate floor | full decode | decode / floor |");
    println!("|---|---|---|---|");
    println!(
        "| 1 | {:.2} ms | {:.2} ms | {:.2}x |",
        f1 * 1e3,
        d1 * 1e3,
        d1 / f1
    );
    println!(
        "| 2 | {:.2} ms | {:.2} ms | {:.2}x |",
        f2 * 1e3,
        d2 * 1e3,
        d2 / f2
    );
    println!("2-thread speed-up of full decode: {:.2}x", d1 / d2);
}
