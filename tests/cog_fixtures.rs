//! The reader against GDAL: every fixture in `fixtures/cog` (made by GDAL, see its
//! `make_fixtures.sh`) decodes to GDAL's pixel hash, with GDAL's size, type and
//! georeferencing; every broken fixture gives a clean error naming the file.

mod common;

use common::{fixtures, read_manifest, Row};
use pixelquery::cog::{Cog, Error, Window};
use std::path::PathBuf;

fn cog_dir() -> PathBuf {
    fixtures().join("cog")
}

fn rows() -> Vec<Row> {
    read_manifest(&cog_dir().join("MANIFEST.tsv"))
}

fn is_lossy(row: &Row) -> bool {
    let path = row.path();
    path.contains("jpeg") || (path.contains("webp") && !path.contains("lossless"))
}

#[test]
fn lossless_fixtures_match_gdal_pixel_hashes() {
    let mut checked = 0;
    for row in rows().iter().filter(|r| !r.path().starts_with("broken/")) {
        let path = cog_dir().join(row.path());
        if row.path().contains("lerc") {
            let cog = Cog::open(&path).unwrap();
            let err = cog.pixel_hash().unwrap_err();
            assert!(
                matches!(err, Error::Unsupported { .. }) && err.to_string().contains("LERC"),
                "{}: {err}",
                row.path()
            );
            continue;
        }
        if is_lossy(row) {
            continue;
        }
        let cog = Cog::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let want = row.get("pixels_sha256_16").unwrap();
        let got = cog.pixel_hash().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want, "{}", row.path());
        if let Some(want_ovr) = row.get("ovr1_pixels_sha256_16") {
            assert_eq!(
                cog.level_hash(1).unwrap(),
                want_ovr,
                "{} overview 1",
                row.path()
            );
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} fixtures checked");
}

#[test]
fn header_matches_gdal() {
    for row in rows().iter().filter(|r| !r.path().starts_with("broken/")) {
        let cog = Cog::open(cog_dir().join(row.path())).unwrap();
        let m = cog.meta();
        let name = row.path();
        assert_eq!(m.width().to_string(), row.get("width").unwrap(), "{name}");
        assert_eq!(m.height().to_string(), row.get("height").unwrap(), "{name}");
        assert_eq!(
            m.band_count().to_string(),
            row.get("bands").unwrap(),
            "{name}"
        );
        let gdal_type = match row.get("pixeltype") {
            Some("SIGNEDBYTE") => "Int8",
            _ => row.get("dtype").unwrap(),
        };
        assert_eq!(m.dtype().gdal_name(), gdal_type, "{name}");
        assert_eq!(m.bigtiff, row.get("tiff") == Some("bigtiff"), "{name}");
        assert_eq!(m.big_endian, row.get("byte_order") == Some("BE"), "{name}");
        let overviews = row.get("overviews").unwrap_or("0");
        assert_eq!(m.overview_count().to_string(), overviews, "{name}");
        if let Some(sizes) = row.get("overview_sizes") {
            let ours: Vec<String> = m.levels[1..]
                .iter()
                .map(|l| format!("{}x{}", l.width, l.height))
                .collect();
            assert_eq!(ours.join(","), sizes, "{name}");
        }
        match row.get("crs") {
            Some(crs) if crs.starts_with("EPSG:") => {
                assert_eq!(Some(crs[5..].parse::<u32>().unwrap()), m.epsg(), "{name}")
            }
            _ => assert_eq!(m.epsg(), None, "{name}"),
        }
        match row.get("geotransform") {
            Some(gt) => {
                let want: Vec<f64> = gt.split(',').map(|v| v.parse().unwrap()).collect();
                let got = m
                    .transform()
                    .unwrap_or_else(|| panic!("{name}: no transform"))
                    .to_gdal();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                        "{name}: {got:?} vs {want:?}"
                    );
                }
            }
            None => assert!(m.transform().is_none(), "{name}"),
        }
        match row.get("nodata") {
            Some("nan") => assert!(m.nodata.unwrap().is_nan(), "{name}"),
            Some(v) => assert_eq!(m.nodata, Some(v.parse().unwrap()), "{name}"),
            None => assert_eq!(m.nodata, None, "{name}"),
        }
        assert_eq!(m.has_mask(), row.get("mask_sha256_16").is_some(), "{name}");
    }
}

#[test]
fn band_metadata_and_acquisition_time() {
    let cog = Cog::open(cog_dir().join("u16_deflate_pred2_tiled16_pixel.tif")).unwrap();
    let m = cog.meta();
    let names: Vec<_> = m
        .bands
        .iter()
        .map(|b| b.description.clone().unwrap_or_default())
        .collect();
    assert_eq!(names.len(), 4);
    assert!(names.iter().all(|n| !n.is_empty()), "{names:?}");
    assert_eq!(m.bands[0].scale, Some(1e-4));
    assert_eq!(m.bands[0].offset, Some(-0.1));
    assert_eq!(
        m.acquired.map(|t| t.to_rfc3339()),
        Some("2023-06-11T02:16:59+00:00".to_string())
    );
    assert_eq!(
        m.metadata.get("TIFFTAG_DATETIME").map(String::as_str),
        Some("2023:06:11 02:16:59")
    );
}

#[test]
fn masks_match_gdal() {
    for row in rows().iter().filter(|r| r.get("mask_sha256_16").is_some()) {
        let cog = Cog::open(cog_dir().join(row.path())).unwrap();
        let m = cog.meta();
        let mask = cog
            .read_mask(0, Window::full(m.width(), m.height()))
            .unwrap()
            .expect("mask");
        let bytes: Vec<u8> = mask.iter().copied().collect();
        let digest = sha256_16(&bytes);
        assert_eq!(digest, row.get("mask_sha256_16").unwrap(), "{}", row.path());
    }
}

#[test]
fn lossy_codecs_stay_close_to_the_source() {
    let source = Cog::open(cog_dir().join("u8_rgb_webp_lossless_tiled16.tif")).unwrap();
    let full = Window::full(source.meta().width(), source.meta().height());
    let want = source.read_window::<u8>(0, full, &[0, 1, 2]).unwrap();
    for lossy in [
        "u8_rgb_jpeg_ycbcr_mask_tiled16_ovr2.tif",
        "u8_rgb_webp_tiled16.tif",
    ] {
        let cog = Cog::open(cog_dir().join(lossy)).unwrap();
        let got = cog.read_window::<u8>(0, full, &[0, 1, 2]).unwrap();
        let mad: f64 = got
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / got.len() as f64;
        assert!(mad < 6.0, "{lossy}: mean abs difference {mad}");
    }
}

#[test]
fn windows_agree_with_full_reads() {
    let cog = Cog::open(cog_dir().join("u16_deflate_pred2_tiled16_band.tif")).unwrap();
    let m = cog.meta();
    let full = cog
        .read_window::<u16>(0, Window::full(m.width(), m.height()), &[0, 1, 2, 3])
        .unwrap();
    let win = cog
        .read_window::<u16>(0, Window::new(13, 7, 40, 33), &[3, 1])
        .unwrap();
    for y in 0..33 {
        for x in 0..40 {
            assert_eq!(win[[0, y, x]], full[[3, 7 + y, 13 + x]]);
            assert_eq!(win[[1, y, x]], full[[1, 7 + y, 13 + x]]);
        }
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let cog = Cog::open(cog_dir().join("u16_deflate_pred2_tiled16_pixel.tif")).unwrap();
    let cases: Vec<(Result<_, Error>, &str)> = vec![
        (
            cog.read_window::<u16>(0, Window::new(90, 0, 20, 5), &[0])
                .map(|_| ()),
            "not inside",
        ),
        (
            cog.read_window::<u16>(0, Window::new(0, 0, 0, 5), &[0])
                .map(|_| ()),
            "empty",
        ),
        (
            cog.read_window::<u16>(0, Window::new(0, 0, 5, 5), &[4])
                .map(|_| ()),
            "band index 4",
        ),
        (
            cog.read_window::<u16>(7, Window::new(0, 0, 5, 5), &[0])
                .map(|_| ()),
            "no level 7",
        ),
        (
            cog.read_window::<f32>(0, Window::new(0, 0, 5, 5), &[0])
                .map(|_| ()),
            "f32 was asked",
        ),
        (
            cog.read_window::<u16>(0, Window::new(0, 0, 5, 5), &[])
                .map(|_| ()),
            "no band",
        ),
    ];
    for (result, needle) in cases {
        let msg = result.unwrap_err().to_string();
        assert!(
            msg.contains(needle) && msg.contains("u16_deflate_pred2"),
            "{msg}"
        );
    }
}

#[test]
fn broken_files_fail_cleanly_or_read_like_gdal() {
    let readable = [
        "ok_reference.tif",
        "ifd_loop.tif",
        "tile_bytecounts_zero.tif",
    ];
    for row in rows().iter().filter(|r| r.path().starts_with("broken/")) {
        let path = cog_dir().join(row.path());
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let result = Cog::open(&path).and_then(|c| c.pixel_hash());
        if readable.contains(&name.as_str()) {
            let hash = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(hash, row.get("pixels_sha256_16").unwrap(), "{name}");
        } else {
            let msg = result.expect_err(&name).to_string();
            assert!(
                msg.contains(&name),
                "{name}: error does not name the file: {msg}"
            );
            assert!(!msg.contains('\n'), "{name}: multi-line error: {msg}");
        }
    }
}

#[test]
fn a_missing_file_or_directory_is_a_clear_error() {
    let msg = Cog::open("/nonexistent/scene.tif").unwrap_err().to_string();
    assert!(msg.contains("/nonexistent/scene.tif"), "{msg}");
    let msg = Cog::open(cog_dir()).unwrap_err().to_string();
    assert!(msg.contains("directory"), "{msg}");
}

pub fn sha256_16(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(bytes);
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
