//! A Sentinel-2-like series for the STAC tests and bench: scenes written with PixelQuery's own
//! COG writer (B04, B08 at 10 m, SCL at 20 m, EPSG:32652) and STAC Items describing them
//! the way Planetary Computer (`B04`, no scale declared, `s2:mgrs_tile`) and Earth Search's
//! Collection 1 (`red`, `raster:bands` scale and offset, `grid:code`) publish theirs.
//!
//! Values are known: reflectance `true_dn(..) * 1e-4`; files from processing baseline 04.00
//! on hold `true_dn + 1000`, as the real ones do.
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use ndarray::Array3;
use pixelquery::cog::{write_cog, WriteOptions};
use pixelquery::crs::Crs;
use pixelquery::{Bounds, GeoTransform};
use serde_json::{json, Value};
use std::path::Path;

/// EPSG code of the scenes.
pub const EPSG: u32 = 32652;
/// Upper-left corner (UTM).
pub const ORIGIN: (f64, f64) = (399_960.0, 4_040_040.0);
/// Side in 10 m pixels.
pub const SIZE: usize = 96;
/// Processing baseline 04.00 began on this day.
pub fn baseline_change() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2022, 1, 25, 0, 0, 0).unwrap()
}

/// Acquisition time of scene `t`: every 40 days from 2021-06-01, so scenes 0-5 are before
/// the baseline change and the rest after.
pub fn when(t: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2021, 6, 1, 2, 16, 59).unwrap() + Duration::days(40 * t as i64)
}

/// The true digital number (reflectance x 1e4) of band `b` (0 red, 1 nir) of scene `t`.
pub fn true_dn(b: usize, t: usize, y: usize, x: usize) -> u16 {
    (500 + 10 * ((x + 2 * y + 7 * t + 13 * b) % 300)) as u16
}

/// The scene's footprint in UTM.
pub fn utm_bounds() -> Bounds {
    let side = SIZE as f64 * 10.0;
    Bounds::new(ORIGIN.0, ORIGIN.1 - side, ORIGIN.0 + side, ORIGIN.1)
}

/// The scene's footprint in lon/lat.
pub fn lonlat_bounds() -> Bounds {
    Crs::from_epsg(EPSG)
        .unwrap()
        .lonlat_bounds(&utm_bounds())
        .unwrap()
}

fn options(res: f64, band: &str, t: usize) -> WriteOptions {
    WriteOptions {
        block_size: 32,
        overviews: false,
        transform: Some(GeoTransform::north_up(ORIGIN.0, ORIGIN.1, res, res)),
        epsg: Some(EPSG),
        nodata: Some(0.0),
        band_descriptions: vec![band.to_string()],
        metadata: vec![(
            "ACQUISITION_DATETIME".into(),
            when(t).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )],
        ..Default::default()
    }
}

/// Writes scene `t` into `dir` (`B04.tif`, `B08.tif`, `SCL.tif`), red and NIR shifted by
/// `offset_dn`, scaled to `side` pixels (default [`SIZE`]).
pub fn write_scene(dir: &Path, t: usize, offset_dn: u16, side: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let res = 10.0 * SIZE as f64 / side as f64;
    for (b, name) in ["B04", "B08"].iter().enumerate() {
        let px = Array3::from_shape_fn((1, side, side), |(_, y, x)| {
            true_dn(b, t, y * SIZE / side, x * SIZE / side) + offset_dn
        });
        write_cog(
            dir.join(format!("{name}.tif")),
            px.view(),
            &options(res, name, t),
        )
        .unwrap();
    }
    // Clear (4) but for a cloud (9) in the corner of scene 3.
    let half = side / 2;
    let scl = Array3::from_shape_fn((1, half, half), |(_, y, x)| {
        if t == 3 && x < half / 4 && y < half / 4 {
            9u8
        } else {
            4u8
        }
    });
    write_cog(
        dir.join("SCL.tif"),
        scl.view(),
        &options(res * 2.0, "SCL", t),
    )
    .unwrap();
}

fn footprint() -> (Value, Value) {
    let b = lonlat_bounds();
    (
        json!([b.min_x, b.min_y, b.max_x, b.max_y]),
        json!({"type": "Polygon", "coordinates": [[[b.min_x, b.min_y], [b.max_x, b.min_y], [b.max_x, b.max_y], [b.min_x, b.max_y], [b.min_x, b.min_y]]]}),
    )
}

fn tiff() -> &'static str {
    "image/tiff; application=geotiff; profile=cloud-optimized"
}

/// A Planetary-Computer-shaped `sentinel-2-l2a` item of scene `t` whose files are at
/// `{base}/B04.tif`...; assets not asked for (AOT, B8A, the 3-band visual) point at files
/// that do not exist.
pub fn pc_item(id: &str, t: usize, baseline: &str, base: &str) -> Value {
    let (bbox, geometry) = footprint();
    let band = |name: &str, common: &str| json!({"name": name, "common_name": common});
    json!({
        "type": "Feature", "stac_version": "1.0.0", "id": id, "collection": "sentinel-2-l2a",
        "bbox": bbox, "geometry": geometry, "links": [],
        "properties": {
            "datetime": when(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "platform": "Sentinel-2A", "proj:epsg": EPSG, "s2:mgrs_tile": "52SDG",
            "s2:processing_baseline": baseline, "eo:cloud_cover": 3.5,
        },
        "assets": {
            "AOT": {"href": format!("{base}/AOT.tif"), "type": tiff(), "roles": ["data"]},
            "B04": {"href": format!("{base}/B04.tif"), "type": tiff(), "roles": ["data"], "gsd": 10,
                    "eo:bands": [band("B04", "red")]},
            "B08": {"href": format!("{base}/B08.tif"), "type": tiff(), "roles": ["data"], "gsd": 10,
                    "eo:bands": [band("B08", "nir")]},
            "B8A": {"href": format!("{base}/B8A.tif"), "type": tiff(), "roles": ["data"], "gsd": 20,
                    "eo:bands": [band("B8A", "rededge")]},
            "SCL": {"href": format!("{base}/SCL.tif"), "type": tiff(), "roles": ["data"], "gsd": 20},
            "visual": {"href": format!("{base}/TCI.tif"), "type": tiff(), "roles": ["data"],
                       "eo:bands": [band("B04", "red"), band("B03", "green"), band("B02", "blue")]},
            "preview": {"href": format!("{base}/preview.tif"), "type": tiff(), "roles": ["thumbnail"]},
            "safe-manifest": {"href": format!("{base}/manifest.safe"), "type": "application/xml", "roles": ["metadata"]}
        }
    })
}

/// An Earth-Search-shaped `sentinel-2-c1-l2a` item of scene `t` (`raster:bands` with the
/// baseline's -0.1 offset), files at `{base}/...`.
pub fn es_c1_item(id: &str, t: usize, base: &str) -> Value {
    let (bbox, geometry) = footprint();
    let refl = json!([{"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}]);
    let asset = |file: &str, name: &str, common: &str| {
        json!({"href": format!("{base}/{file}"), "type": tiff(), "roles": ["data", "reflectance"],
               "eo:bands": [{"name": name, "common_name": common}], "raster:bands": refl})
    };
    json!({
        "type": "Feature", "stac_version": "1.0.0", "id": id, "collection": "sentinel-2-c1-l2a",
        "bbox": bbox, "geometry": geometry, "links": [],
        "properties": {
            "datetime": when(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "platform": "sentinel-2b", "proj:code": format!("EPSG:{EPSG}"),
            "mgrs:utm_zone": 52, "mgrs:latitude_band": "S", "mgrs:grid_square": "DG", "grid:code": "MGRS-52SDG",
            "s2:processing_baseline": "05.00", "eo:cloud_cover": 3.5,
            "updated": "2024-03-01T00:00:00Z"
        },
        "assets": {
            "red": asset("B04.tif", "B04", "red"),
            "nir": asset("B08.tif", "B08", "nir"),
            "nir08": asset("B8A.tif", "B8A", "nir08"),
            "scl": {"href": format!("{base}/SCL.tif"), "type": tiff(), "roles": ["data"],
                    "raster:bands": [{"nodata": 0, "data_type": "uint8"}]},
            "red-jp2": {"href": format!("{base}/B04.jp2"), "type": "image/jp2", "roles": ["data"]},
            "thumbnail": {"href": format!("{base}/thumb.jpg"), "type": "image/jpeg", "roles": ["thumbnail"]}
        }
    })
}

/// Planetary Computer's id of scene `t`.
pub fn pc_id(t: usize) -> String {
    format!("S2A_MSIL2A_{}_R003_T52SDG", when(t).format("%Y%m%dT%H%M%S"))
}

/// Earth Search's Collection 1 id of scene `t`.
pub fn es_id(t: usize) -> String {
    format!("S2B_T52SDG_{}_L2A", when(t).format("%Y%m%dT%H%M%S"))
}

/// Processing baseline of a Planetary Computer scene at its time.
pub fn pc_baseline(t: usize) -> &'static str {
    if when(t) >= baseline_change() {
        "04.00"
    } else {
        "03.00"
    }
}

/// The DN offset files of scene `t` carry under baseline `b` (`"04.00"` and later: 1000).
pub fn offset_for(baseline: &str) -> u16 {
    if baseline.trim().parse::<f64>().unwrap() >= 4.0 {
        1000
    } else {
        0
    }
}
