//! The GeoTIFF writer against GDAL: `gdalinfo` reads what we write with the same pixels,
//! and GDAL's COG validator accepts it. Skipped (with a message) when GDAL's Python
//! bindings are not installed; `.ci/run` installs them.

use ndarray::Array3;
use pixelquery::cog::{write_cog, Cog, WriteOptions};
use pixelquery::GeoTransform;
use std::process::Command;

const VALIDATOR: &str =
    "/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py";

fn gdal_python() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "from osgeo import gdal"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// GDAL's `pixels_sha256_16` of a file, computed with GDAL's own reader.
fn gdal_pixel_hash(py: &str, path: &str) -> String {
    let script = r#"
import sys, hashlib
from osgeo import gdal
ds = gdal.Open(sys.argv[1])
h = hashlib.sha256()
for b in range(1, ds.RasterCount + 1):
    a = ds.GetRasterBand(b).ReadAsArray()
    h.update(a.astype(a.dtype.newbyteorder('<')).tobytes())
print(h.hexdigest()[:16])
"#;
    let out = Command::new(py)
        .args(["-c", script, path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn gdal_reads_and_validates_written_cogs() {
    let Some(py) = gdal_python() else {
        eprintln!("GDAL Python bindings not found; skipping the GDAL check of the writer");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = Array3::<u16>::from_shape_fn((4, 700, 610), |(b, y, x)| {
        if x < 20 && y % 3 == 0 {
            0
        } else {
            (1 + (b * 977 + y * 31 + x * 7) % 9000) as u16
        }
    });
    let options = WriteOptions {
        transform: Some(GeoTransform::north_up(399960.0, 4040040.0, 10.0, 10.0)),
        epsg: Some(32652),
        nodata: Some(0.0),
        band_descriptions: ["B02", "B03", "B04", "B08"].map(String::from).to_vec(),
        ..Default::default()
    };
    let path = dir.path().join("out.tif");
    write_cog(&path, data.view(), &options).unwrap();
    let p = path.to_str().unwrap();

    let ours = Cog::open(&path).unwrap().pixel_hash().unwrap();
    assert_eq!(gdal_pixel_hash(py, p), ours);

    let info = Command::new("gdalinfo").arg(p).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success());
    for needle in [
        "Size is 610, 700",
        "UTM zone 52N",
        "NoData Value=0",
        "Description = B08",
        "Overviews: 305x350",
    ] {
        assert!(text.contains(needle), "gdalinfo lacks {needle:?}:\n{text}");
    }
    assert!(
        !String::from_utf8_lossy(&info.stderr).contains("Warning"),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );

    let v = Command::new(py).args([VALIDATOR, p]).output().unwrap();
    let out = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && out.contains("is a valid cloud optimized GeoTIFF"),
        "{out}{}",
        String::from_utf8_lossy(&v.stderr)
    );

    let f = Array3::<f32>::from_shape_fn((1, 300, 300), |(_, y, x)| {
        (y as f32 * 0.37 - x as f32).sin()
    });
    let fpath = dir.path().join("f.tif");
    write_cog(
        &fpath,
        f.view(),
        &WriteOptions {
            nodata: Some(f64::NAN),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        gdal_pixel_hash(py, fpath.to_str().unwrap()),
        Cog::open(&fpath).unwrap().pixel_hash().unwrap()
    );
}
