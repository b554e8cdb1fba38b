//! The warehouse settings the ingest and query benches compare side by side (fragment
//! compression: none, LZ4, ZSTD; cropped to the data or whole tiles), and a full-size
//! Sentinel-2 scene for measuring bytes on a scene that fills its tiles.

#![allow(dead_code)]

use pixelquery::cog::{write_cog, Cog, Window, WriteOptions};
use pixelquery::store::FragmentCompression;
use pixelquery::GeoTransform;
use std::path::{Path, PathBuf};

/// Every setting: compression and whether fragments are cropped.
pub const SETTINGS: [(FragmentCompression, bool); 6] = [
    (FragmentCompression::None, false),
    (FragmentCompression::None, true),
    (FragmentCompression::Lz4, false),
    (FragmentCompression::Lz4, true),
    (FragmentCompression::Zstd, false),
    (FragmentCompression::Zstd, true),
];

/// "zstd, cropped", "none, whole tiles"...
pub fn label((compression, crop): (FragmentCompression, bool)) -> String {
    format!(
        "{}, {}",
        compression.name(),
        if crop { "cropped" } else { "whole tiles" }
    )
}

/// Bytes of the files directly in `files`.
pub fn file_bytes(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Side of a full Sentinel-2 tile in 10 m pixels.
pub const FULL_SIDE: usize = 10_980;

/// A full-size 10 m Sentinel-2 scene (10980 x 10980 x 4 u16, DEFLATE + predictor, 1024-pixel
/// blocks, overviews) made of real pixels: a mosaic of the corpus scenes (each 1024 x 1024
/// x 4), placed where a Sentinel-2 tile lies (origin 399960, 4100040 in EPSG:32652, so the
/// grid's edge tiles are partly empty). Written once into `bench-data/` (git-ignored) and
/// reused; `None` without the corpus.
pub fn full_scene(corpus_files: &[PathBuf]) -> Option<PathBuf> {
    if corpus_files.len() < 2 || !corpus_files[0].to_string_lossy().contains("corpus") {
        return None;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-data");
    let path = dir.join("S2_full_10980_10m.tif");
    if path.is_file() {
        return Some(path);
    }
    std::fs::create_dir_all(&dir).ok()?;
    let scenes: Vec<ndarray::Array3<u16>> = corpus_files
        .iter()
        .map(|f| {
            let cog = Cog::open(f).unwrap();
            let m = cog.meta();
            cog.read_window::<u16>(0, Window::full(m.width(), m.height()), &[0, 1, 2, 3])
                .unwrap()
        })
        .collect();
    let mut full = ndarray::Array3::<u16>::zeros((4, FULL_SIDE, FULL_SIDE));
    let side = scenes[0].dim().1;
    for by in 0..FULL_SIDE.div_ceil(side) {
        for bx in 0..FULL_SIDE.div_ceil(side) {
            let src = &scenes[(by * 7 + bx * 5) % scenes.len()];
            let (h, w) = (
                side.min(FULL_SIDE - by * side),
                side.min(FULL_SIDE - bx * side),
            );
            full.slice_mut(ndarray::s![
                ..,
                by * side..by * side + h,
                bx * side..bx * side + w
            ])
            .assign(&src.slice(ndarray::s![.., ..h, ..w]));
        }
    }
    let options = WriteOptions {
        block_size: 1024,
        transform: Some(GeoTransform::north_up(399_960.0, 4_100_040.0, 10.0, 10.0)),
        epsg: Some(32652),
        nodata: Some(0.0),
        band_descriptions: ["B02", "B03", "B04", "B08"].map(String::from).to_vec(),
        metadata: vec![("ACQUISITION_DATETIME".into(), "2023-06-11T02:16:59Z".into())],
        ..Default::default()
    };
    let tmp = dir.join("S2_full_10980_10m.tif.part");
    write_cog(&tmp, full.view(), &options).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    Some(path)
}
