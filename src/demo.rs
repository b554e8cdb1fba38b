//! `pixelquery demo`: a self-contained tour. Writes a small synthetic Sentinel-2-like time
//! series with the crate's own GeoTIFF writer (one file per band, 10 m bands plus a 20 m
//! SCL classification with a cloud on one date), ingests it, and queries an NDVI time series.

use crate::cog::{write_cog, WriteOptions};
use crate::GeoTransform;
use chrono::{Datelike, NaiveDate};
use ndarray::Array3;
use std::path::{Path, PathBuf};

/// Side of a demo scene in 10 m pixels.
pub const SIZE: usize = 512;
/// Upper-left corner of the demo scenes (EPSG:32652).
pub const ORIGIN: (f64, f64) = (320000.0, 4160000.0);
/// Acquisition dates of the demo series.
pub const DATES: [&str; 8] = [
    "2024-03-05",
    "2024-04-09",
    "2024-05-14",
    "2024-06-18",
    "2024-07-23",
    "2024-08-27",
    "2024-10-01",
    "2024-11-05",
];
/// The date with a cloud over the middle of the scene.
pub const CLOUDY_DATE: &str = "2024-07-23";

fn hash(x: u64, y: u64, s: u64) -> f64 {
    let mut h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ y.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ s.wrapping_mul(0x1656_67B1_9E37_79F9);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 32;
    (h % 10_000) as f64 / 10_000.0
}

/// Green-up of parcel (`px`, `py`) on day of year `doy`, 0..1.
fn greenness(px: usize, py: usize, doy: f64) -> f64 {
    let kind = hash(px as u64, py as u64, 1);
    if kind < 0.15 {
        return 0.05; // built-up / bare
    }
    let peak = 150.0 + 80.0 * hash(px as u64, py as u64, 2);
    let width = 35.0 + 25.0 * hash(px as u64, py as u64, 3);
    let base = if kind > 0.8 { 0.6 } else { 0.1 }; // forest stays green
    base + (1.0 - base) * (-((doy - peak) / width).powi(2)).exp()
}

/// Writes the demo series into `dir`; returns the files written.
pub fn write_scenes(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    for date in DATES {
        let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(std::io::Error::other)?;
        let doy = day.ordinal() as f64;
        let cloudy = date == CLOUDY_DATE;
        let in_cloud = |x: usize, y: usize| {
            let (dx, dy) = (x as f64 - 300.0, y as f64 - 220.0);
            cloudy && dx * dx / 2.0 + dy * dy < 110.0 * 110.0
        };
        let stamp = day.format("%Y%m%d");
        // 10 m bands: reflectance x 10000, nodata 0 along a ragged western swath edge.
        for (band, idx) in [("B02", 0), ("B03", 1), ("B04", 2), ("B08", 3)] {
            let data = Array3::<u16>::from_shape_fn((1, SIZE, SIZE), |(_, y, x)| {
                if x < 6 + (y / 40) % 5 {
                    return 0;
                }
                if in_cloud(x, y) {
                    return (6500.0 + 800.0 * hash(x as u64, y as u64, 9)) as u16;
                }
                let f = greenness(x / 48, y / 40, doy);
                let refl = match idx {
                    0 => 0.06 - 0.02 * f,
                    1 => 0.08 + 0.02 * f,
                    2 => 0.13 - 0.09 * f,
                    _ => 0.20 + 0.30 * f,
                };
                let noise = 0.004 * (hash(x as u64, y as u64, idx as u64 + 10) - 0.5);
                ((refl + noise).max(0.0001) * 10_000.0).round() as u16
            });
            let path = dir.join(format!("DEMO_{stamp}_{band}_10m.tif"));
            write_cog(&path, data.view(), &options(10.0, band, date))
                .map_err(std::io::Error::other)?;
            files.push(path);
        }
        // 20 m scene classification: 4 vegetation, 5 bare, 9 cloud, 0 nodata.
        let half = SIZE / 2;
        let scl = Array3::<u8>::from_shape_fn((1, half, half), |(_, y, x)| {
            let (fx, fy) = (x * 2, y * 2);
            if fx < 6 + (fy / 40) % 5 {
                0
            } else if in_cloud(fx, fy) {
                9
            } else if greenness(fx / 48, fy / 40, doy) > 0.3 {
                4
            } else {
                5
            }
        });
        let path = dir.join(format!("DEMO_{stamp}_SCL_20m.tif"));
        write_cog(&path, scl.view(), &options(20.0, "SCL", date)).map_err(std::io::Error::other)?;
        files.push(path);
    }
    Ok(files)
}

fn options(res: f64, band: &str, date: &str) -> WriteOptions {
    WriteOptions {
        block_size: 128,
        transform: Some(GeoTransform::north_up(ORIGIN.0, ORIGIN.1, res, res)),
        epsg: Some(32652),
        nodata: Some(0.0),
        band_descriptions: vec![band.to_string()],
        metadata: vec![("ACQUISITION_DATETIME".into(), format!("{date}T02:16:59Z"))],
        ..Default::default()
    }
}

/// Acquisition dates of the Landsat-like demo series (a 16-day revisit between the
/// Sentinel-2-like dates).
pub const LANDSAT_DATES: [&str; 7] = [
    "2024-03-21",
    "2024-04-22",
    "2024-06-09",
    "2024-07-11",
    "2024-08-12",
    "2024-09-13",
    "2024-10-15",
];
/// The Landsat-like date with a cloud over the middle of the scene (flagged in `QA_PIXEL`).
pub const LANDSAT_CLOUDY_DATE: &str = "2024-08-12";
/// `QA_PIXEL` of a clear land pixel and of a high-confidence cloud (Collection 2 bits).
const QA_CLEAR: u16 = 21824;
const QA_CLOUD: u16 = 22280;

/// Writes a Landsat-8-like series over the demo scenes into `dir`: 30 m `SR_B4` (red) and
/// `SR_B5` (NIR) in Collection 2 digital numbers (reflectance = DN x 2.75e-5 - 0.2, nodata
/// 0) and `QA_PIXEL`, one file per band and date, following the same parcels and seasons as
/// [`write_scenes`] so a fused series lines up; returns the files written.
pub fn write_landsat_scenes(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let size = SIZE.div_ceil(3);
    let mut files = Vec::new();
    for date in LANDSAT_DATES {
        let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(std::io::Error::other)?;
        let doy = day.ordinal() as f64;
        let cloudy = date == LANDSAT_CLOUDY_DATE;
        // The 10 m demo pixel at the centre of a 30 m pixel.
        let fine = |x: usize, y: usize| (x * 3 + 1, y * 3 + 1);
        let in_cloud = |x: usize, y: usize| {
            let (fx, fy) = fine(x, y);
            let (dx, dy) = (fx as f64 - 330.0, fy as f64 - 200.0);
            cloudy && dx * dx + dy * dy < 90.0 * 90.0
        };
        let stamp = day.format("%Y%m%d");
        for (band, idx) in [("SR_B4", 0u64), ("SR_B5", 1)] {
            let data = Array3::<u16>::from_shape_fn((1, size, size), |(_, y, x)| {
                let (fx, fy) = fine(x, y);
                if fx >= SIZE || fy >= SIZE || fx < 12 {
                    return 0;
                }
                let f = greenness(fx / 48, fy / 40, doy);
                let refl = if in_cloud(x, y) {
                    0.55 + 0.05 * hash(x as u64, y as u64, 30)
                } else if idx == 0 {
                    0.125 - 0.088 * f
                } else {
                    0.205 + 0.29 * f
                };
                let noise = 0.004 * (hash(x as u64, y as u64, idx + 20) - 0.5);
                ((refl + noise + 0.2) / 2.75e-5).round() as u16
            });
            let path = dir.join(format!("LDEMO_{stamp}_{band}.tif"));
            write_cog(&path, data.view(), &landsat_options(band, date, Some(0.0)))
                .map_err(std::io::Error::other)?;
            files.push(path);
        }
        let qa = Array3::<u16>::from_shape_fn((1, size, size), |(_, y, x)| {
            if in_cloud(x, y) {
                QA_CLOUD
            } else {
                QA_CLEAR
            }
        });
        let path = dir.join(format!("LDEMO_{stamp}_QA_PIXEL.tif"));
        write_cog(&path, qa.view(), &landsat_options("QA_PIXEL", date, None))
            .map_err(std::io::Error::other)?;
        files.push(path);
    }
    Ok(files)
}

fn landsat_options(band: &str, date: &str, nodata: Option<f64>) -> WriteOptions {
    WriteOptions {
        block_size: 64,
        transform: Some(GeoTransform::north_up(ORIGIN.0, ORIGIN.1, 30.0, 30.0)),
        epsg: Some(32652),
        nodata,
        band_descriptions: vec![band.to_string()],
        metadata: vec![("ACQUISITION_DATETIME".into(), format!("{date}T01:56:12Z"))],
        ..Default::default()
    }
}

/// A location inside the demo scenes, in lon/lat: the centre of a crop parcel under the
/// cloud of [`CLOUDY_DATE`].
pub fn sample_point() -> (f64, f64) {
    // Pixel (300, 220) of the scene, converted once with the crate's own CRS code.
    let x = ORIGIN.0 + 300.5 * 10.0;
    let y = ORIGIN.1 - 220.5 * 10.0;
    let utm = crate::crs::Crs::from_epsg(32652).ok();
    let wgs = crate::crs::Crs::wgs84();
    utm.and_then(|u| {
        crate::crs::Transformer::new(&u, &wgs)
            .transform_point(x, y)
            .ok()
    })
    .unwrap_or((127.0, 37.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_readable_band_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_scenes(dir.path()).unwrap();
        assert_eq!(files.len(), DATES.len() * 5);
        let cog = crate::cog::Cog::open(&files[3]).unwrap();
        assert_eq!(cog.meta().width() as usize, SIZE);
        assert_eq!(cog.meta().bands[0].description.as_deref(), Some("B08"));
        assert!(cog.meta().acquired.is_some());
        let (lon, lat) = sample_point();
        assert!(
            (126.0..128.0).contains(&lon) && (37.0..38.0).contains(&lat),
            "{lon} {lat}"
        );
    }
}
