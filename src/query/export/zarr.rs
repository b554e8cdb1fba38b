//! A cube as a Zarr v3 store, written by PixelQuery itself (the small subset needed: regular
//! chunks, the `bytes` codec, optional `gzip`, `vlen-utf8` strings), chunk by chunk in
//! parallel:
//!
//! ```text
//! cube.zarr/
//!   zarr.json                 group (CF attributes) with consolidated metadata
//!   cube/                     (time, band, y, x) in the cube's sample type, fill = nodata
//!   time/                     int64 microseconds since 1970-01-01 (CF units)
//!   band/, stored_band/       band names as requested, and the stored bands (strings)
//!   scene/, product/          per time step (strings)
//!   y/, x/                    pixel centres in the grid CRS
//!   spatial_ref/              CF grid mapping: EPSG code and GDAL geotransform
//! ```
//!
//! `xarray.open_zarr` reads it as a Dataset with those coordinates (CRS through rioxarray or
//! odc-geo from `spatial_ref`). Chunk keys use the `v2` encoding (`cube/0/1/2/3`) and the
//! store also carries Zarr v2 consolidated metadata (`.zmetadata`) over the same chunks for
//! the numeric arrays, because GDAL before 3.8 (Debian 12 ships 3.6) only knows a pre-release
//! draft of Zarr v3: GDAL opens `ZARR:"cube.zarr":/cube:T:B` with its georeferencing.

use super::source::{CubeInfo, Source};
use super::{io_error, type_name, ExportOptions, OutputCompression, Written};
use crate::query::budget::Alignment;
use crate::store::Pixel;
use crate::DataType;
use ndarray::s;
use rayon::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

/// Largest chunk side in pixels.
const CHUNK: usize = 512;

/// How chunks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    None,
    Gzip,
}

impl Codec {
    /// The v3 codec and the v2 compressor describing it (`None`: no entry).
    fn describe(self) -> Option<(Value, Value)> {
        match self {
            Codec::None => None,
            Codec::Gzip => Some((
                json!({"name": "gzip", "configuration": {"level": 1}}),
                json!({"id": "gzip", "level": 1}),
            )),
        }
    }

    fn encode(self, raw: Vec<u8>) -> Vec<u8> {
        match self {
            Codec::None => raw,
            Codec::Gzip => gzip(&raw),
        }
    }
}

/// Chunk side for an axis of `len` pixels: as few chunks as [`CHUNK`] allows, of equal size,
/// so edge chunks (stored whole, as Zarr's regular grid does) carry almost no padding.
fn chunk_side(len: usize) -> usize {
    let n = len.div_ceil(CHUNK).max(1);
    len.div_ceil(n).max(1)
}
/// Marks stores written by PixelQuery (which it may replace).
const MARK: &str = "pixelquery";

/// Zarr v3 `data_type` and v2 `dtype` names.
fn type_names(d: DataType) -> (&'static str, &'static str) {
    match d {
        DataType::U8 => ("uint8", "|u1"),
        DataType::I8 => ("int8", "|i1"),
        DataType::U16 => ("uint16", "<u2"),
        DataType::I16 => ("int16", "<i2"),
        DataType::U32 => ("uint32", "<u4"),
        DataType::I32 => ("int32", "<i4"),
        DataType::F32 => ("float32", "<f4"),
        DataType::F64 => ("float64", "<f8"),
    }
}

/// A fill value as JSON: a number, or `"NaN"`.
fn fill_json(v: f64, d: DataType) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if d.is_float() {
        json!(v)
    } else {
        json!(v as i64)
    }
}

/// xarray's `_FillValue` attribute for Zarr v3: integers as numbers, floats as the base64 of
/// their little-endian bytes (JSON has no NaN).
fn xarray_fill(v: f64, d: DataType) -> Value {
    match d {
        DataType::F32 => json!(base64(&(v as f32).to_le_bytes())),
        DataType::F64 => json!(base64(&v.to_le_bytes())),
        _ => json!(v as i64),
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// numcodecs' `vlen-utf8` encoding: item count, then length-prefixed UTF-8 strings.
fn vlen_utf8(items: &[String]) -> Vec<u8> {
    let mut out = (items.len() as u32).to_le_bytes().to_vec();
    for s in items {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// One array: its v3 metadata, v2 metadata (numeric arrays) and chunks.
struct ArrayDef {
    name: &'static str,
    v3: Value,
    v2: Option<(Value, Value)>,
}

/// A numeric array of `types` (v3 and v2 names, see [`type_names`]).
#[allow(clippy::too_many_arguments)]
fn numeric_array(
    name: &'static str,
    shape: &[usize],
    chunks: &[usize],
    (v3t, v2t): (&str, &str),
    fill: Value,
    dims: &[&str],
    attrs: Map<String, Value>,
    codec: Codec,
) -> ArrayDef {
    let mut codecs = vec![json!({"name": "bytes", "configuration": {"endian": "little"}})];
    let described = codec.describe();
    if let Some((v3, _)) = &described {
        codecs.push(v3.clone());
    }
    let v3 = json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": v3t,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": {"name": "v2", "configuration": {"separator": "/"}},
        "fill_value": fill.clone(),
        "codecs": codecs,
        "attributes": attrs,
        "dimension_names": dims,
    });
    let v2 = json!({
        "zarr_format": 2,
        "shape": shape,
        "chunks": chunks,
        "dtype": v2t,
        "compressor": described.map_or(Value::Null, |(_, v2)| v2),
        "fill_value": fill,
        "order": "C",
        "filters": null,
        "dimension_separator": "/",
    });
    let mut v2_attrs = attrs;
    v2_attrs.insert("_ARRAY_DIMENSIONS".into(), json!(dims));
    ArrayDef {
        name,
        v3,
        v2: Some((v2, Value::Object(v2_attrs))),
    }
}

fn string_array(name: &'static str, len: usize, dim: &str) -> ArrayDef {
    ArrayDef {
        name,
        v3: json!({
            "zarr_format": 3,
            "node_type": "array",
            "shape": [len],
            "data_type": "string",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [len.max(1)]}},
            "chunk_key_encoding": {"name": "v2", "configuration": {"separator": "/"}},
            "fill_value": "",
            "codecs": [{"name": "vlen-utf8", "configuration": {}}],
            "attributes": {},
            "dimension_names": [dim],
        }),
        v2: None,
    }
}

fn attrs(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Compresses a chunk with gzip (DEFLATE body from fdeflate, CRC-32 from crc32fast).
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let zlib = fdeflate::compress_to_vec(bytes);
    // The zlib stream is a 2-byte header, raw DEFLATE, a 4-byte Adler-32.
    let raw = &zlib[2..zlib.len().saturating_sub(4).max(2)];
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend_from_slice(raw);
    out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out
}

fn write_json(path: &Path, v: &Value) -> Result<(), super::Error> {
    let text = serde_json::to_vec_pretty(v).unwrap_or_default();
    std::fs::write(path, text).map_err(io_error(path))
}

/// Writes one chunk file, creating its folders.
fn put(path: &Path, bytes: &[u8]) -> Result<(), super::Error> {
    let mut f = match std::fs::File::create(path) {
        Ok(f) => f,
        Err(_) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            }
            std::fs::File::create(path).map_err(io_error(path))?
        }
    };
    f.write_all(bytes).map_err(io_error(path))
}

/// Refuses to overwrite anything but a store PixelQuery wrote.
fn check_target(path: &Path) -> Result<(), super::Error> {
    if !path.exists() {
        return Ok(());
    }
    let ours = std::fs::read(path.join("zarr.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v["attributes"].get(MARK).is_some());
    if ours {
        Ok(())
    } else {
        Err(super::Error::Unsuitable {
            file: path.display().to_string(),
            reason: "exists and is not a Zarr store written by PixelQuery: remove it or choose another name".into(),
        })
    }
}

pub(super) fn write<T: Pixel>(
    src: &dyn Source<T>,
    path: &Path,
    options: &ExportOptions,
) -> Result<Written, super::Error> {
    check_target(path)?;
    let info = src.info();
    let (t, b, h, w) = info.dim();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cube.zarr".into());
    let part = path.with_file_name(format!(".{name}.part"));
    if part.exists() {
        std::fs::remove_dir_all(&part).map_err(io_error(&part))?;
    }
    std::fs::create_dir_all(&part).map_err(io_error(&part))?;
    let codec = match options.compression {
        OutputCompression::Auto | OutputCompression::None => Codec::None,
        OutputCompression::Deflate => Codec::Gzip,
    };
    let (ch, cw) = (chunk_side(h), chunk_side(w));
    let defs = definitions(info, (ch, cw), codec);
    let result = (|| -> Result<u64, super::Error> {
        // Metadata first: v3 per array, consolidated into the root, and v2 consolidated.
        let mut v3_meta = Map::new();
        let mut v2_meta = Map::new();
        v2_meta.insert(".zgroup".into(), json!({"zarr_format": 2}));
        v2_meta.insert(".zattrs".into(), Value::Object(root_attrs(info)));
        for d in &defs {
            let dir = part.join(d.name);
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            write_json(&dir.join("zarr.json"), &d.v3)?;
            v3_meta.insert(d.name.into(), d.v3.clone());
            if let Some((zarray, zattrs)) = &d.v2 {
                v2_meta.insert(format!("{}/.zarray", d.name), zarray.clone());
                v2_meta.insert(format!("{}/.zattrs", d.name), zattrs.clone());
            }
        }
        write_json(
            &part.join("zarr.json"),
            &json!({
                "zarr_format": 3,
                "node_type": "group",
                "attributes": root_attrs(info),
                "consolidated_metadata": {"kind": "inline", "must_understand": false, "metadata": v3_meta},
            }),
        )?;
        write_json(
            &part.join(".zmetadata"),
            &json!({"zarr_consolidated_format": 1, "metadata": v2_meta}),
        )?;
        let mut bytes = 0u64;
        // Coordinates.
        let enc = |raw: Vec<u8>| codec.encode(raw);
        let times: Vec<u8> = info
            .times
            .iter()
            .flat_map(|x| x.timestamp_micros().to_le_bytes())
            .collect();
        let xs: Vec<u8> = (0..w)
            .flat_map(|x| info.transform.apply(x as f64 + 0.5, 0.5).0.to_le_bytes())
            .collect();
        let ys: Vec<u8> = (0..h)
            .flat_map(|y| info.transform.apply(0.5, y as f64 + 0.5).1.to_le_bytes())
            .collect();
        let scenes: Vec<String> = info.scenes.iter().map(|s| s.join("+")).collect();
        let mut coords: Vec<(&str, Vec<u8>)> = vec![
            ("x/0", enc(xs)),
            ("y/0", enc(ys)),
            (
                "spatial_ref/0",
                enc((info.epsg as i32).to_le_bytes().to_vec()),
            ),
            ("band/0", vlen_utf8(&info.bands)),
            ("stored_band/0", vlen_utf8(&info.band_sources)),
        ];
        if t > 0 {
            coords.push(("time/0", enc(times)));
            coords.push(("scene/0", vlen_utf8(&scenes)));
            coords.push(("product/0", vlen_utf8(&info.products)));
        }
        for (key, data) in &coords {
            put(&part.join(key), data)?;
            bytes += data.len() as u64;
        }
        // The cube, window by window; chunks of each window in parallel.
        let fill = T::from_f64(info.nodata);
        let mut dirs: BTreeSet<(usize, usize, usize)> = BTreeSet::new();
        for win in src.windows(Alignment { rows: ch, cols: cw }) {
            let data = src.read(&win)?;
            let (cy0, cx0) = (win.rows.start / ch, win.cols.start / cw);
            let (ny, nx) = (win.rows.len().div_ceil(ch), win.cols.len().div_ceil(cw));
            for s in win.steps.clone() {
                for bi in 0..b {
                    for cy in cy0..cy0 + ny {
                        if dirs.insert((s, bi, cy)) {
                            let dir = part.join(format!("cube/{s}/{bi}/{cy}"));
                            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
                        }
                    }
                }
            }
            let jobs: Vec<(usize, usize, usize, usize)> = win
                .steps
                .clone()
                .flat_map(|s| {
                    (0..b).flat_map(move |bi| {
                        (0..ny).flat_map(move |y| (0..nx).map(move |x| (s, bi, y, x)))
                    })
                })
                .collect();
            let written: Vec<u64> = jobs
                .par_iter()
                .map(|&(s, bi, y, x)| -> Result<u64, super::Error> {
                    let (r0, c0) = (y * ch, x * cw);
                    let (r1, c1) = ((r0 + ch).min(win.rows.len()), (c0 + cw).min(win.cols.len()));
                    let part_view = data.slice(s![s - win.steps.start, bi, r0..r1, c0..c1]);
                    let mut chunk = vec![fill; ch * cw];
                    for (yy, row) in part_view.outer_iter().enumerate() {
                        let dst = &mut chunk[yy * cw..yy * cw + (c1 - c0)];
                        match row.as_slice() {
                            Some(sl) => dst.copy_from_slice(sl),
                            None => dst.iter_mut().zip(row.iter()).for_each(|(d, v)| *d = *v),
                        }
                    }
                    let mut raw: Vec<u8> = bytemuck::cast_slice(&chunk).to_vec();
                    if cfg!(target_endian = "big") {
                        raw.chunks_exact_mut(T::DTYPE.size())
                            .for_each(|c| c.reverse());
                    }
                    let raw = enc(raw);
                    let key = format!("cube/{s}/{bi}/{}/{}", cy0 + y, cx0 + x);
                    put(&part.join(key), &raw)?;
                    Ok(raw.len() as u64)
                })
                .collect::<Result<_, _>>()?;
            crate::query::recycle::give_array(data);
            bytes += written.iter().sum::<u64>();
        }
        Ok(bytes)
    })();
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&part);
            return Err(e);
        }
    };
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(io_error(path))?;
    }
    std::fs::rename(&part, path).map_err(io_error(path))?;
    Ok(Written {
        path: path.to_path_buf(),
        what: format!(
            "a Zarr v3 store: cube (time {t}, band {b}, y {h}, x {w}) {} in {ch} x {cw} chunks{}, bands {}, EPSG:{}",
            type_name(info.dtype),
            match codec {
                Codec::None => "",
                Codec::Gzip => " (gzip)",
            },
            info.bands.join(","),
            info.epsg
        ),
        bytes,
    })
}

/// Global attributes: CF conventions, what the values are, and the mark of PixelQuery.
fn root_attrs(info: &CubeInfo) -> Map<String, Value> {
    attrs(&[
        ("Conventions", json!("CF-1.8")),
        (
            "title",
            json!(format!("PixelQuery cube: {}", info.values.describe())),
        ),
        (
            MARK,
            json!({"layout": "cube (time, band, y, x)", "values": info.values.describe()}),
        ),
    ])
}

/// Every array of the store.
fn definitions(info: &CubeInfo, (ch, cw): (usize, usize), codec: Codec) -> Vec<ArrayDef> {
    let (t, b, h, w) = info.dim();
    let geographic = (4000..5000).contains(&info.epsg);
    let (xname, yname, unit) = if geographic {
        ("longitude", "latitude", "degrees")
    } else {
        ("projection_x_coordinate", "projection_y_coordinate", "m")
    };
    let gt = info.transform.to_gdal();
    let crs_url = format!("http://www.opengis.net/def/crs/EPSG/0/{}", info.epsg);
    let epsg = format!("EPSG:{}", info.epsg);
    let cube_attrs = attrs(&[
        ("_FillValue", xarray_fill(info.nodata, info.dtype)),
        ("grid_mapping", json!("spatial_ref")),
        (
            "coordinates",
            json!("spatial_ref stored_band scene product"),
        ),
        ("long_name", json!(info.values.describe())),
        ("_CRS", json!({"url": crs_url})),
    ]);
    vec![
        numeric_array(
            "cube",
            &[t, b, h, w],
            &[1, 1, ch, cw],
            type_names(info.dtype),
            fill_json(info.nodata, info.dtype),
            &["time", "band", "y", "x"],
            cube_attrs,
            codec,
        ),
        numeric_array(
            "time",
            &[t],
            &[t.max(1)],
            ("int64", "<i8"),
            json!(0),
            &["time"],
            attrs(&[
                ("units", json!("microseconds since 1970-01-01T00:00:00Z")),
                ("calendar", json!("proleptic_gregorian")),
                ("standard_name", json!("time")),
            ]),
            codec,
        ),
        numeric_array(
            "x",
            &[w],
            &[w],
            ("float64", "<f8"),
            json!("NaN"),
            &["x"],
            attrs(&[
                ("standard_name", json!(xname)),
                ("units", json!(unit)),
                ("axis", json!("X")),
            ]),
            codec,
        ),
        numeric_array(
            "y",
            &[h],
            &[h],
            ("float64", "<f8"),
            json!("NaN"),
            &["y"],
            attrs(&[
                ("standard_name", json!(yname)),
                ("units", json!(unit)),
                ("axis", json!("Y")),
            ]),
            codec,
        ),
        numeric_array(
            "spatial_ref",
            &[],
            &[],
            ("int32", "<i4"),
            json!(0),
            &[],
            attrs(&[
                ("spatial_ref", json!(epsg)),
                ("crs_wkt", json!(epsg)),
                (
                    "GeoTransform",
                    json!(format!(
                        "{} {} {} {} {} {}",
                        gt[0], gt[1], gt[2], gt[3], gt[4], gt[5]
                    )),
                ),
                ("epsg_code", json!(epsg)),
            ]),
            codec,
        ),
        string_array("band", b, "band"),
        string_array("stored_band", b, "band"),
        string_array("scene", t, "time"),
        string_array("product", t, "time"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_an_axis_evenly() {
        // Edge chunks are stored whole: equal chunks leave next to no padding.
        for (len, side) in [
            (1, 1),
            (384, 384),
            (512, 512),
            (513, 257),
            (768, 384),
            (1000, 500),
            (9072, 504),
        ] {
            assert_eq!(chunk_side(len), side, "{len}");
            assert!(side <= CHUNK);
            assert!(len.div_ceil(side) * side - len < len.div_ceil(CHUNK));
        }
    }

    #[test]
    fn encodings_match_their_specs() {
        assert_eq!(base64(&f64::NAN.to_le_bytes()), "AAAAAAAA+H8=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            vlen_utf8(&["red".into()]),
            [1, 0, 0, 0, 3, 0, 0, 0, b'r', b'e', b'd']
        );
        let g = gzip(b"hello hello hello");
        let mut d = miniz_oxide::inflate::decompress_to_vec(&g[10..g.len() - 8]).unwrap();
        assert_eq!(d, b"hello hello hello");
        d.clear();
    }
}
