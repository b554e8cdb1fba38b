//! Query outputs checked with the tools analysts read them with: GDAL reads the cube COG and
//! the per-date COGs (sample type, nodata, times, georeferencing, pixels), xarray opens the
//! Zarr store (values, coordinates, CRS), the long Parquet table pivots back to the cube, and
//! files streamed in small windows equal the cube built whole. Also the time axis (all-invalid
//! dates kept, `drop_empty`, empty ranges), requested band names and the memory budget.
//! GDAL and Python checks skip without them (`.ci/run` installs both).

mod common;

use ndarray::{Array3, Array4};
use pixelquery::cog::{write_cog, Cog, Window, WriteOptions};
use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use pixelquery::query::export::{write_plan, ExportOptions, OutputType};
use pixelquery::query::{NativeCube, Region};
use pixelquery::store::Warehouse;
use pixelquery::{Bounds, DataType, GeoTransform};
use std::path::{Path, PathBuf};
use std::process::Command;

const ORIGIN: (f64, f64) = (300000.0, 4000000.0);
const SIZE: usize = 200;
const DATES: [&str; 4] = ["2023-05-01", "2023-06-01", "2023-07-01", "2023-08-01"];

/// Pixel values; the last date has no valid pixel west of x = 180 (its scene still covers it).
fn value(t: usize, b: usize, y: usize, x: usize) -> u16 {
    if x < 3 || (t == 3 && x < 180) {
        return 0;
    }
    (100 + t * 1000 + b * 100 + (y * 7 + x * 3) % 97) as u16
}

fn write_series(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    DATES
        .iter()
        .enumerate()
        .map(|(t, date)| {
            let data = Array3::from_shape_fn((4, SIZE, SIZE), |(b, y, x)| value(t, b, y, x));
            let path = dir.join(format!("S2_{}_10m.tif", date.replace('-', "")));
            let options = WriteOptions {
                block_size: 64,
                transform: Some(GeoTransform::north_up(ORIGIN.0, ORIGIN.1, 10.0, 10.0)),
                epsg: Some(32652),
                nodata: Some(0.0),
                band_descriptions: ["B02", "B03", "B04", "B08"].map(String::from).to_vec(),
                metadata: vec![("ACQUISITION_DATETIME".into(), format!("{date}T02:16:59Z"))],
                ..Default::default()
            };
            write_cog(&path, data.view(), &options).unwrap();
            path
        })
        .collect()
}

struct Fixture {
    dir: tempfile::TempDir,
    wh: Warehouse,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    write_series(&dir.path().join("scenes"));
    let options = IngestOptions {
        product: Some("sentinel2_l2a".into()),
        ..Default::default()
    };
    let inputs = [dir.path().join("scenes").display().to_string()];
    ingest(&dir.path().join("wh"), &inputs, &options, &Quiet).unwrap();
    let wh = Warehouse::open(dir.path().join("wh")).unwrap();
    Fixture { dir, wh }
}

/// A box of 150 x 100 px (x 20..170, y 30..130 of the scenes), across grid tiles.
fn area() -> Bounds {
    Bounds::new(
        ORIGIN.0 + 200.0,
        ORIGIN.1 - 1300.0,
        ORIGIN.0 + 1700.0,
        ORIGIN.1 - 300.0,
    )
}

fn native(f: &Fixture) -> NativeCube<u16> {
    f.wh.query()
        .bbox(area())
        .crs(32652)
        .bands(&["red", "nir"])
        .run_native::<u16>()
        .unwrap()
}

fn gdal_python() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "from osgeo import gdal"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn run(py: &str, script: &str, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SHA-256 (first 16 hex digits) of little-endian samples.
fn hash_u16(values: impl Iterator<Item = u16>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    format!("{:x}", h.finalize())[..16].to_string()
}

#[test]
fn cube_keeps_requested_names_native_type_and_every_covering_date() {
    let f = fixture();
    let cube = native(&f);
    assert_eq!(cube.dim(), (4, 2, 100, 150));
    assert_eq!(cube.bands, ["red", "nir"]);
    assert_eq!(cube.band_sources, ["B04", "B08"]);
    assert_eq!(cube.products, ["sentinel2_l2a"; 4]);
    assert_eq!(cube.fill, 0);
    // The last date is all invalid here, and still a time step.
    assert!(cube
        .data
        .index_axis(ndarray::Axis(0), 3)
        .iter()
        .all(|&v| v == 0));
    assert_eq!(cube.data[[0, 0, 0, 0]], value(0, 2, 30, 20));
    let dropped =
        f.wh.query()
            .bbox(area())
            .crs(32652)
            .bands(&["red"])
            .drop_empty(true)
            .run()
            .unwrap();
    assert_eq!(dropped.times.len(), 3);
    let mut plan = f.wh.query().bbox(area()).crs(32652).prepare().unwrap();
    plan.drop_empty_steps().unwrap();
    assert_eq!(plan.dim().0, 3);
    // An empty time range is an empty cube, not an error.
    let t = |s| pixelquery::time::parse_datetime(s).unwrap();
    let empty =
        f.wh.query()
            .bbox(area())
            .crs(32652)
            .time(t("2020-01-01"), t("2020-12-31"))
            .run()
            .unwrap();
    assert_eq!(empty.dim(), (0, 4, 100, 150));
    // A place no scene covers is still an error.
    let err = f.wh.query().point(0.0, 0.0).run().unwrap_err();
    assert!(err.to_string().contains("no data"), "{err}");
}

#[test]
fn cubes_over_the_memory_budget_are_one_clear_error() {
    let f = fixture();
    let err =
        f.wh.query()
            .bbox(area())
            .crs(32652)
            .memory_budget(100_000)
            .run()
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("960 kB") && err.contains("memory budget") && err.contains("--out"),
        "{err}"
    );
}

#[test]
fn streamed_outputs_equal_the_cube_built_whole() {
    let f = fixture();
    let cube = native(&f);
    let whole_hash = hash_u16(cube.data.iter().copied());
    let out = f.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // 20 kB windows: several runs of steps and bands of rows.
    for budget in [1u64 << 30, 20_000] {
        let plan =
            f.wh.query()
                .bbox(area())
                .crs(32652)
                .bands(&["red", "nir"])
                .memory_budget(budget)
                .prepare()
                .unwrap();
        let tif = out.join(format!("cube_{budget}.tif"));
        let w = write_plan(&plan, &tif, &ExportOptions::default())
            .unwrap()
            .unwrap();
        assert!(
            w.what.contains("8 uint16 bands (4 times x 2 bands"),
            "{}",
            w.what
        );
        let cog = Cog::open(&tif).unwrap();
        let back = cog
            .read_window::<u16>(0, Window::full(150, 100), &(0..8).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(
            hash_u16(back.iter().copied()),
            whole_hash,
            "budget {budget}"
        );
        let zarr = out.join(format!("cube_{budget}.zarr"));
        write_plan(&plan, &zarr, &ExportOptions::default()).unwrap();
        let mut z = Vec::new();
        for t in 0..4 {
            for b in 0..2 {
                let bytes = std::fs::read(zarr.join(format!("cube/{t}/{b}/0/0"))).unwrap();
                let chunk: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                z.extend_from_slice(&chunk);
            }
        }
        assert_eq!(hash_u16(z.into_iter()), whole_hash, "zarr, budget {budget}");
    }
}

#[test]
fn long_parquet_table_pivots_back_to_the_cube() {
    use arrow_array::{Array, Float64Array, StringArray, TimestampMicrosecondArray, UInt16Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let f = fixture();
    let cube = native(&f);
    let (t, b, h, w) = cube.dim();
    let path = f.dir.path().join("pixels.parquet");
    let plan =
        f.wh.query()
            .bbox(area())
            .crs(32652)
            .bands(&["red", "nir"])
            .memory_budget(50_000)
            .prepare()
            .unwrap();
    let written = write_plan(&plan, &path, &ExportOptions::default())
        .unwrap()
        .unwrap();
    assert!(written.what.contains("long table"), "{}", written.what);
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut back = Array4::<u16>::from_elem((t, b, h, w), 7);
    let mut rows = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let col = |n: &str| batch.column_by_name(n).unwrap().clone();
        let time = col("time");
        let time = time
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let band = col("band");
        let band = band.as_any().downcast_ref::<StringArray>().unwrap();
        let product = col("product");
        let product = product.as_any().downcast_ref::<StringArray>().unwrap();
        let (x, y) = (col("x"), col("y"));
        let x = x.as_any().downcast_ref::<Float64Array>().unwrap();
        let y = y.as_any().downcast_ref::<Float64Array>().unwrap();
        let value = col("value");
        let value = value.as_any().downcast_ref::<UInt16Array>().unwrap();
        for i in 0..batch.num_rows() {
            let ti = cube
                .times
                .iter()
                .position(|c| c.timestamp_micros() == time.value(i))
                .unwrap();
            let bi = cube.bands.iter().position(|n| n == band.value(i)).unwrap();
            assert_eq!(product.value(i), cube.products[ti]);
            let col = ((x.value(i) - cube.transform.origin_x) / 10.0 - 0.5).round() as usize;
            let row = ((cube.transform.origin_y - y.value(i)) / 10.0 - 0.5).round() as usize;
            back[[ti, bi, row, col]] = if value.is_null(i) { 0 } else { value.value(i) };
            rows += 1;
        }
    }
    assert_eq!(rows, t * b * h * w);
    assert_eq!(back, cube.data);
    // A polygon's table holds only the pixels inside it.
    let tri = Region::Polygons(vec![vec![vec![
        (ORIGIN.0 + 200.0, ORIGIN.1 - 300.0),
        (ORIGIN.0 + 1700.0, ORIGIN.1 - 300.0),
        (ORIGIN.0 + 200.0, ORIGIN.1 - 1300.0),
        (ORIGIN.0 + 200.0, ORIGIN.1 - 300.0),
    ]]]);
    let plan =
        f.wh.query()
            .region(tri)
            .crs(32652)
            .bands(&["red"])
            .prepare()
            .unwrap();
    let csv = f.dir.path().join("tri.csv");
    write_plan(&plan, &csv, &ExportOptions::default()).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "time,product,band,x,y,value");
    let per_date = (lines.len() - 1) / 4;
    assert!(
        (7000..8000).contains(&per_date),
        "{per_date} pixels in the triangle"
    );
    assert!(
        lines[1].starts_with(&format!("2023-05-01T02:16:59Z,{},red,", cube.products[0])),
        "{}",
        lines[1]
    );
}

#[test]
fn gdal_reads_the_cube_cog_and_the_per_date_cogs() {
    let Some(py) = gdal_python() else {
        eprintln!("GDAL Python bindings not found; skipping");
        return;
    };
    let f = fixture();
    let cube = native(&f);
    let plan =
        f.wh.query()
            .bbox(area())
            .crs(32652)
            .bands(&["red", "nir"])
            .prepare()
            .unwrap();
    let tif = f.dir.path().join("cube.tif");
    let options = ExportOptions {
        overviews: true,
        ..Default::default()
    };
    write_plan(&plan, &tif, &options).unwrap();
    let dates = f.dir.path().join("dates/");
    write_plan(&plan, &dates, &ExportOptions::default()).unwrap();
    let script = r#"
import sys, json, hashlib
from osgeo import gdal
gdal.UseExceptions()
out = []
for path in sys.argv[1:]:
    ds = gdal.Open(path)
    h = hashlib.sha256()
    bands = []
    for i in range(1, ds.RasterCount + 1):
        b = ds.GetRasterBand(i)
        h.update(b.ReadAsArray().astype('<u2').tobytes())
        bands.append({"type": gdal.GetDataTypeName(b.DataType), "nodata": b.GetNoDataValue(),
                      "desc": b.GetDescription(), "md": b.GetMetadata(), "ovr": b.GetOverviewCount()})
    out.append({"gt": ds.GetGeoTransform(), "epsg": ds.GetSpatialRef().GetAuthorityCode(None),
                "size": [ds.RasterXSize, ds.RasterYSize], "md": ds.GetMetadata(),
                "bands": bands, "hash": h.hexdigest()[:16]})
print(json.dumps(out))
"#;
    let mut files = vec![tif.display().to_string()];
    let mut names: Vec<String> = std::fs::read_dir(&dates)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "20230501T021659.tif",
            "20230601T021659.tif",
            "20230701T021659.tif",
            "20230801T021659.tif"
        ]
    );
    files.extend(names.iter().map(|n| dates.join(n).display().to_string()));
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let v: serde_json::Value = serde_json::from_str(&run(py, script, &args)).unwrap();
    let gt = cube.transform.to_gdal();
    for (i, ds) in v.as_array().unwrap().iter().enumerate() {
        assert_eq!(ds["epsg"], "32652");
        assert_eq!(ds["size"], serde_json::json!([150, 100]));
        for k in 0..6 {
            assert!((ds["gt"][k].as_f64().unwrap() - gt[k]).abs() < 1e-9, "{ds}");
        }
        for b in ds["bands"].as_array().unwrap() {
            assert_eq!(b["type"], "UInt16");
            assert_eq!(b["nodata"], 0.0);
        }
        if i == 0 {
            // One COG: (time, band) bands, times in band metadata, the same pixels.
            let bands = ds["bands"].as_array().unwrap();
            assert_eq!(bands.len(), 8);
            assert_eq!(bands[3]["desc"], "2023-06-01 nir");
            assert_eq!(bands[3]["md"]["TIME"], "2023-06-01T02:16:59Z");
            assert_eq!(bands[3]["md"]["STORED_BAND"], "B08");
            // 150 x 100 px fit in one block: no overview level is needed.
            assert_eq!(bands[0]["ovr"], 0);
            assert_eq!(ds["hash"], hash_u16(cube.data.iter().copied()));
            assert!(ds["md"]["TIMES"]
                .as_str()
                .unwrap()
                .starts_with("2023-05-01T02:16:59Z,"));
        } else {
            let t = i - 1;
            let bands = ds["bands"].as_array().unwrap();
            assert_eq!(bands[0]["desc"], "red");
            assert_eq!(bands[1]["desc"], "nir");
            assert_eq!(ds["md"]["TIME"], format!("{}T02:16:59Z", DATES[t]));
            let slab = cube.data.index_axis(ndarray::Axis(0), t);
            assert_eq!(ds["hash"], hash_u16(slab.iter().copied()));
        }
    }
    // GDAL's COG validator accepts both layouts.
    let validator =
        "/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py";
    if Path::new(validator).is_file() {
        for file in [&files[0], &files[1]] {
            let out = Command::new(py).args([validator, file]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{file}: {text}");
        }
    }
}

#[test]
fn gdal_validates_band_interleaved_cogs_with_overviews() {
    let Some(py) = gdal_python() else {
        eprintln!("GDAL Python bindings not found; skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = Array3::<u16>::from_shape_fn((3, 700, 610), |(b, y, x)| {
        if x < 20 {
            0
        } else {
            (1 + (b * 977 + y * 31 + x * 7) % 9000) as u16
        }
    });
    let path = dir.path().join("band.tif");
    let options = WriteOptions {
        interleave: pixelquery::cog::Interleave::Band,
        transform: Some(GeoTransform::north_up(399960.0, 4040040.0, 10.0, 10.0)),
        epsg: Some(32652),
        nodata: Some(0.0),
        ..Default::default()
    };
    write_cog(&path, data.view(), &options).unwrap();
    let p = path.to_str().unwrap();
    let validator =
        "/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py";
    if Path::new(validator).is_file() {
        let out = Command::new(py).args([validator, p]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let script = r#"
import sys, json
from osgeo import gdal
gdal.UseExceptions()
ds = gdal.Open(sys.argv[1])
b = ds.GetRasterBand(3)
o = b.GetOverview(0)
print(json.dumps({"interleave": ds.GetMetadata("IMAGE_STRUCTURE").get("INTERLEAVE"),
  "ovr": b.GetOverviewCount(), "osize": [o.XSize, o.YSize], "o00": int(o.ReadAsArray()[0, 20]),
  "sum": int(b.ReadAsArray().astype('int64').sum())}))
"#;
    let v: serde_json::Value = serde_json::from_str(run(py, script, &[p]).trim()).unwrap();
    assert_eq!(v["interleave"], "BAND");
    assert_eq!(v["ovr"], 2, "700 -> 350 -> 175 px");
    assert_eq!(v["osize"], serde_json::json!([305, 350]));
    let cell = [[0, 40], [0, 41], [1, 40], [1, 41]].map(|[y, x]| data[[2, y, x]] as f64);
    assert_eq!(v["o00"], (cell.iter().sum::<f64>() / 4.0).round() as i64);
    let sum: u64 = data
        .index_axis(ndarray::Axis(0), 2)
        .iter()
        .map(|&v| v as u64)
        .sum();
    assert_eq!(v["sum"], sum);
}

#[test]
fn xarray_opens_the_zarr_store_with_values_coordinates_and_crs() {
    let f = fixture();
    let cube = native(&f);
    let plan =
        f.wh.query()
            .bbox(area())
            .crs(32652)
            .bands(&["red", "nir"])
            .prepare()
            .unwrap();
    let zarr = f.dir.path().join("cube.zarr");
    let w = write_plan(&plan, &zarr, &ExportOptions::default())
        .unwrap()
        .unwrap();
    assert!(w.what.starts_with("a Zarr v3 store"), "{}", w.what);
    let want_hash = hash_u16(cube.data.iter().copied());
    let x0 = cube.transform.origin_x + 5.0;
    let y0 = cube.transform.origin_y - 5.0;
    if let Some(py) = common::python() {
        let script = r#"
import sys, json, hashlib, warnings
warnings.simplefilter("error")
import numpy as np, xarray as xr
warnings.simplefilter("default")
import rioxarray
ds = xr.open_zarr(sys.argv[1])
raw = xr.open_zarr(sys.argv[1], mask_and_scale=False)
cube = ds["cube"]
print(json.dumps({
  "dims": list(cube.dims), "shape": list(cube.shape),
  "hash": hashlib.sha256(raw["cube"].values.astype('<u2').tobytes()).hexdigest()[:16],
  "nan": int(np.isnan(cube.values).sum()), "zeros": int((raw["cube"].values == 0).sum()),
  "time": [str(t)[:19] for t in ds.time.values], "band": [str(b) for b in ds.band.values],
  "stored": [str(b) for b in ds.stored_band.values],
  "x0": float(ds.x.values[0]), "y0": float(ds.y.values[0]),
  "epsg": cube.rio.crs.to_epsg(), "transform": list(cube.rio.transform())[:6],
}))
"#;
        let out = common::run_python(&py, script, &[zarr.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["dims"], serde_json::json!(["time", "band", "y", "x"]));
        assert_eq!(v["shape"], serde_json::json!([4, 2, 100, 150]));
        assert_eq!(v["hash"], want_hash);
        let zeros = cube.data.iter().filter(|&&x| x == 0).count();
        assert_eq!(
            (v["nan"].as_u64(), v["zeros"].as_u64()),
            (Some(zeros as u64), Some(zeros as u64))
        );
        assert_eq!(v["time"][0], "2023-05-01T02:16:59");
        assert_eq!(v["band"], serde_json::json!(["red", "nir"]));
        assert_eq!(v["stored"], serde_json::json!(["B04", "B08"]));
        assert_eq!((v["x0"].as_f64(), v["y0"].as_f64()), (Some(x0), Some(y0)));
        assert_eq!(v["epsg"], 32652);
        let gt = cube.transform;
        assert_eq!(
            v["transform"],
            serde_json::json!([
                gt.pixel_width,
                0.0,
                gt.origin_x,
                0.0,
                gt.pixel_height,
                gt.origin_y
            ])
        );
    }
    if let Some(py) = gdal_python() {
        // GDAL's Zarr driver: the slab of time 1, band "nir", georeferenced.
        let script = r#"
import sys, json, hashlib
from osgeo import gdal
gdal.UseExceptions()
ds = gdal.Open('ZARR:"%s":/cube:1:1' % sys.argv[1])
a = ds.GetRasterBand(1).ReadAsArray()
print(json.dumps({"gt": ds.GetGeoTransform(), "epsg": ds.GetSpatialRef().GetAuthorityCode(None),
  "type": gdal.GetDataTypeName(ds.GetRasterBand(1).DataType),
  "hash": hashlib.sha256(a.astype('<u2').tobytes()).hexdigest()[:16]}))
"#;
        let v: serde_json::Value =
            serde_json::from_str(run(py, script, &[zarr.to_str().unwrap()]).trim()).unwrap();
        let slab = cube
            .data
            .index_axis(ndarray::Axis(0), 1)
            .index_axis(ndarray::Axis(0), 1)
            .to_owned();
        assert_eq!(v["hash"], hash_u16(slab.iter().copied()));
        assert_eq!(v["type"], "UInt16");
        assert_eq!(v["epsg"], "32652");
        let gt = cube.transform.to_gdal();
        for k in 0..6 {
            assert!((v["gt"][k].as_f64().unwrap() - gt[k]).abs() < 1e-9, "{v}");
        }
    } else {
        eprintln!("GDAL Python bindings not found; skipping GDAL's Zarr check");
    }
}

#[test]
fn sample_types_follow_the_query_and_dtype() {
    let f = fixture();
    let dir = f.dir.path();
    let plan = |physical: bool| {
        f.wh.query()
            .bbox(area())
            .crs(32652)
            .bands(&["red"])
            .physical(physical)
            .prepare()
            .unwrap()
    };
    let dtype_of = |p: &Path| Cog::open(p).unwrap().meta().dtype();
    let cases = [
        (false, OutputType::Auto, Some(DataType::U16)),
        (true, OutputType::Auto, Some(DataType::F32)),
        (false, OutputType::Exact(DataType::F32), Some(DataType::F32)),
        (false, OutputType::Exact(DataType::I32), Some(DataType::I32)),
        (false, OutputType::Exact(DataType::U8), None),
        (true, OutputType::Native, None),
    ];
    for (i, (physical, dtype, want)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("t{i}.tif"));
        let options = ExportOptions {
            dtype,
            ..Default::default()
        };
        let result = write_plan(&plan(physical), &path, &options);
        match want {
            Some(d) => {
                result.unwrap();
                assert_eq!(dtype_of(&path), d, "case {i}");
            }
            None => {
                let err = result.unwrap_err().to_string();
                assert!(err.contains("--dtype") || err.contains("float"), "{err}");
            }
        }
    }
    // f32 outputs mark invalid pixels NaN; i32 keeps the nodata value 0.
    let cog = Cog::open(dir.join("t2.tif")).unwrap();
    assert!(cog.meta().nodata.unwrap().is_nan());
    let v = cog
        .read_window::<f32>(0, Window::full(150, 100), &[3])
        .unwrap();
    assert!(v.iter().all(|x| x.is_nan()), "the last date is all invalid");
    let cog = Cog::open(dir.join("t3.tif")).unwrap();
    assert_eq!(cog.meta().nodata, Some(0.0));
}

#[test]
fn the_cli_writes_and_says_what_it_wrote() {
    let f = fixture();
    let wh = f.dir.path().join("wh");
    let wh = wh.to_str().unwrap();
    let bbox = "300200,3998700,301700,3999700";
    let out = f.dir.path().join("q.tif");
    let (code, stdout, err) = common::run_cli(
        &[
            "query",
            wh,
            "--bbox",
            bbox,
            "--crs",
            "EPSG:32652",
            "--bands",
            "red,nir",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.is_empty());
    assert!(
        err.contains("one COG of 8 uint16 bands (4 times x 2 bands red,nir), 150 x 100 px"),
        "{err}"
    );
    // An empty time range: exit 0, a note, nothing written.
    let out2 = f.dir.path().join("none.tif");
    let (code, _, err) = common::run_cli(
        &[
            "query",
            wh,
            "--bbox",
            bbox,
            "--crs",
            "EPSG:32652",
            "--time",
            "2020-01-01..2020-02-01",
            "--out",
            out2.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no time steps") && !out2.exists(), "{err}");
    // Statistics moved to --stats; JSON of an area asks for it.
    let stats = f.dir.path().join("s.csv");
    let (code, _, err) = common::run_cli(
        &[
            "query",
            wh,
            "--bbox",
            bbox,
            "--crs",
            "EPSG:32652",
            "--bands",
            "red",
            "--stats",
            "--out",
            stats.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&stats).unwrap();
    assert!(
        text.starts_with("time,scene,product,band,count,mean"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5);
    for (args, needle) in [
        (vec!["--dtype", "complex"], "--dtype"),
        (
            vec!["--physical", "--dtype", "native", "--out", "x.tif"],
            "float32",
        ),
        (vec!["--out", "x.json"], "--stats"),
        (vec!["--out", "x.xyz"], "unknown output format"),
        (vec!["--memory-budget", "0"], "--memory-budget"),
    ] {
        let mut full = vec!["query", wh, "--bbox", bbox, "--crs", "EPSG:32652"];
        let dir_args: Vec<String> = args
            .iter()
            .map(|a| {
                if a.starts_with("x.") {
                    f.dir.path().join(a).display().to_string()
                } else {
                    a.to_string()
                }
            })
            .collect();
        full.extend(dir_args.iter().map(String::as_str));
        let (code, _, err) = common::run_cli(&full, &[]);
        assert_ne!(code, 0, "{args:?}");
        assert!(
            err.contains(needle) && err.lines().count() == 1,
            "{needle}: {err}"
        );
    }
    // A folder that is not a Zarr store of ours is not replaced.
    let foreign = f.dir.path().join("mine.zarr");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    let (code, _, err) = common::run_cli(
        &[
            "query",
            wh,
            "--bbox",
            bbox,
            "--crs",
            "EPSG:32652",
            "--out",
            foreign.to_str().unwrap(),
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("not a Zarr store written by PixelQuery"),
        "{err}"
    );
    assert!(foreign.join("notes.txt").is_file());
}
