//! Writing Cloud-Optimized GeoTIFFs: tiled, DEFLATE-compressed (with predictor), with
//! overviews, georeferencing, nodata and band descriptions.
//!
//! The layout follows what GDAL's COG validator checks: all directories right after the
//! header (main image first, then overviews from largest to smallest), then tag data, then
//! block data from the smallest overview to the full-resolution image, each level's blocks
//! in row-major order. Blocks are encoded in parallel.

use crate::{GeoTransform, Sample};
use bytemuck::Pod;
use ndarray::{Array3, ArrayView3};
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

/// Errors from writing a GeoTIFF.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The file could not be created or written.
    #[error("{file}: {source}")]
    Io {
        /// The output path.
        file: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The raster or options cannot be written.
    #[error("{file}: cannot write: {reason}")]
    Invalid {
        /// The output path.
        file: String,
        /// Why.
        reason: String,
    },
}

/// Block compression of a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCompression {
    /// No compression.
    None,
    /// DEFLATE with a predictor (2 for integers, 3 for floats), zlib level 6.
    Deflate,
}

/// Options for [`write_cog`].
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Tile width and height in pixels (a multiple of 16).
    pub block_size: u32,
    /// Block compression.
    pub compression: WriteCompression,
    /// Build overviews (2x averages, nodata-aware) until the image fits in one block.
    pub overviews: bool,
    /// Pixel-to-map transform of the full-resolution image.
    pub transform: Option<GeoTransform>,
    /// EPSG code of the CRS (projected codes are written as projected, 4326-style codes as
    /// geographic).
    pub epsg: Option<u32>,
    /// Nodata value (written as `GDAL_NODATA`, skipped when averaging overviews).
    pub nodata: Option<f64>,
    /// Band descriptions, one per band (or empty).
    pub band_descriptions: Vec<String>,
    /// Dataset metadata items written to `GDAL_METADATA`.
    pub metadata: Vec<(String, String)>,
    /// TIFF `DateTime` tag (`YYYY:MM:DD HH:MM:SS`).
    pub datetime: Option<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            block_size: 256,
            compression: WriteCompression::Deflate,
            overviews: true,
            transform: None,
            epsg: None,
            nodata: None,
            band_descriptions: Vec::new(),
            metadata: Vec::new(),
            datetime: None,
        }
    }
}

/// Writes a `(band, row, col)` array as a Cloud-Optimized GeoTIFF.
pub fn write_cog<T: Sample + Pod>(
    path: impl AsRef<Path>,
    data: ArrayView3<'_, T>,
    options: &WriteOptions,
) -> Result<(), WriteError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let bytes = encode_cog(data, options).map_err(|reason| WriteError::Invalid {
        file: file.clone(),
        reason,
    })?;
    let io = |source| WriteError::Io {
        file: file.clone(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// Encodes a `(band, row, col)` array as the bytes of a Cloud-Optimized GeoTIFF.
pub fn encode_cog<T: Sample + Pod>(
    data: ArrayView3<'_, T>,
    options: &WriteOptions,
) -> Result<Vec<u8>, String> {
    let (bands, height, width) = data.dim();
    let bs = options.block_size;
    if bands == 0 || height == 0 || width == 0 {
        return Err(format!("empty raster ({bands} bands, {width}x{height})"));
    }
    if bands > u16::MAX as usize || width > u32::MAX as usize || height > u32::MAX as usize {
        return Err(format!(
            "raster too large ({bands} bands, {width}x{height})"
        ));
    }
    if bs < 16 || !bs.is_multiple_of(16) {
        return Err(format!("block size {bs} is not a multiple of 16"));
    }
    if !options.band_descriptions.is_empty() && options.band_descriptions.len() != bands {
        return Err(format!(
            "{} band descriptions for {bands} bands",
            options.band_descriptions.len()
        ));
    }
    let mut levels = vec![data.to_owned()];
    if options.overviews {
        while {
            let (_, h, w) = levels.last().map(|l| l.dim()).unwrap_or((0, 0, 0));
            h > bs as usize || w > bs as usize
        } {
            let next = downsample(
                levels.last().map(|l| l.view()).unwrap_or(data),
                options.nodata,
            );
            levels.push(next);
        }
    }
    let encoded: Vec<Vec<Vec<u8>>> = levels
        .iter()
        .map(|level| encode_blocks(level.view(), bs as usize, options.compression))
        .collect();
    let data_bytes: u64 = encoded.iter().flatten().map(|b| b.len() as u64).sum();
    let bigtiff = data_bytes > 3_900_000_000;
    Ok(assemble(&levels, &encoded, options, bigtiff))
}

/// Halves a raster with 2x2 averages of valid pixels (nodata where none is valid).
fn downsample<T: Sample>(src: ArrayView3<'_, T>, nodata: Option<f64>) -> Array3<T> {
    let (bands, h, w) = src.dim();
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    let mut out = Array3::<T>::default((bands, oh, ow));
    let is_nodata = |v: f64| match nodata {
        Some(n) if n.is_nan() => v.is_nan(),
        Some(n) => v == n,
        None => false,
    };
    for b in 0..bands {
        for y in 0..oh {
            for x in 0..ow {
                let (mut sum, mut n) = (0.0f64, 0u32);
                for (yy, xx) in [
                    (2 * y, 2 * x),
                    (2 * y, 2 * x + 1),
                    (2 * y + 1, 2 * x),
                    (2 * y + 1, 2 * x + 1),
                ] {
                    if yy < h && xx < w {
                        let v = src[[b, yy, xx]].to_f64();
                        if !is_nodata(v) && !v.is_nan() {
                            sum += v;
                            n += 1;
                        }
                    }
                }
                out[[b, y, x]] = if n > 0 {
                    T::from_f64(sum / n as f64)
                } else {
                    T::from_f64(nodata.unwrap_or(0.0))
                };
            }
        }
    }
    out
}

/// Compresses every block of one level (row-major), in parallel.
fn encode_blocks<T: Sample + Pod>(
    level: ArrayView3<'_, T>,
    bs: usize,
    compression: WriteCompression,
) -> Vec<Vec<u8>> {
    let (bands, h, w) = level.dim();
    let (across, down) = (w.div_ceil(bs), h.div_ceil(bs));
    (0..across * down)
        .into_par_iter()
        .map(|i| {
            let (bx, by) = (i % across, i / across);
            // Pixel-interleaved block, zero-padded at the right and bottom edges.
            let mut block = vec![T::default(); bs * bs * bands];
            for y in 0..bs.min(h - by * bs) {
                for x in 0..bs.min(w - bx * bs) {
                    for b in 0..bands {
                        block[(y * bs + x) * bands + b] = level[[b, by * bs + y, bx * bs + x]];
                    }
                }
            }
            let mut bytes: Vec<u8> = bytemuck::cast_slice(&block).to_vec();
            if cfg!(target_endian = "big") {
                crate::cog::predictor::swap_bytes(&mut bytes, T::DTYPE.size());
            }
            match compression {
                WriteCompression::None => bytes,
                WriteCompression::Deflate => {
                    if T::DTYPE.is_float() {
                        apply_float_predictor(&mut bytes, T::DTYPE.size(), bands, bs * bands);
                    } else {
                        apply_horizontal_predictor(&mut bytes, T::DTYPE.size(), bands, bs * bands);
                    }
                    miniz_oxide::deflate::compress_to_vec_zlib(&bytes, 6)
                }
            }
        })
        .collect()
}

/// Horizontal differencing on little-endian integer samples, row by row.
fn apply_horizontal_predictor(buf: &mut [u8], width: usize, spp: usize, row_samples: usize) {
    for row in buf.chunks_exact_mut(row_samples * width) {
        for i in (spp..row_samples).rev() {
            let (cur, prev) = (i * width, (i - spp) * width);
            match width {
                1 => row[cur] = row[cur].wrapping_sub(row[prev]),
                2 => {
                    let v = u16::from_le_bytes([row[cur], row[cur + 1]])
                        .wrapping_sub(u16::from_le_bytes([row[prev], row[prev + 1]]));
                    row[cur..cur + 2].copy_from_slice(&v.to_le_bytes());
                }
                4 => {
                    let c = u32::from_le_bytes(row[cur..cur + 4].try_into().unwrap_or([0; 4]));
                    let p = u32::from_le_bytes(row[prev..prev + 4].try_into().unwrap_or([0; 4]));
                    row[cur..cur + 4].copy_from_slice(&c.wrapping_sub(p).to_le_bytes());
                }
                _ => {
                    let c = u64::from_le_bytes(row[cur..cur + 8].try_into().unwrap_or([0; 8]));
                    let p = u64::from_le_bytes(row[prev..prev + 8].try_into().unwrap_or([0; 8]));
                    row[cur..cur + 8].copy_from_slice(&c.wrapping_sub(p).to_le_bytes());
                }
            }
        }
    }
}

/// The floating-point predictor: byte planes most significant first, then byte-wise
/// differencing with a stride of `spp` bytes (libtiff's layout).
fn apply_float_predictor(buf: &mut [u8], width: usize, spp: usize, row_samples: usize) {
    let mut shuffled = vec![0u8; row_samples * width];
    for row in buf.chunks_exact_mut(row_samples * width) {
        for s in 0..row_samples {
            for k in 0..width {
                // Samples are little-endian: byte width-1-k is the k-th most significant.
                shuffled[k * row_samples + s] = row[s * width + (width - 1 - k)];
            }
        }
        for i in (spp..shuffled.len()).rev() {
            shuffled[i] = shuffled[i].wrapping_sub(shuffled[i - spp]);
        }
        row.copy_from_slice(&shuffled);
    }
}

/// A tag value as written.
enum TagValue {
    Short(Vec<u16>),
    Long(Vec<u32>),
    /// LONG in classic TIFF, LONG8 in BigTIFF (block offsets and counts).
    Offsets(Vec<u64>),
    Double(Vec<f64>),
    Ascii(String),
}

impl TagValue {
    fn type_and_count(&self, bigtiff: bool) -> (u16, u64) {
        match self {
            TagValue::Short(v) => (3, v.len() as u64),
            TagValue::Long(v) => (4, v.len() as u64),
            TagValue::Offsets(v) => (if bigtiff { 16 } else { 4 }, v.len() as u64),
            TagValue::Double(v) => (12, v.len() as u64),
            TagValue::Ascii(s) => (2, s.len() as u64 + 1),
        }
    }

    fn bytes(&self, bigtiff: bool) -> Vec<u8> {
        match self {
            TagValue::Short(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TagValue::Long(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TagValue::Offsets(v) if bigtiff => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TagValue::Offsets(v) => v.iter().flat_map(|x| (*x as u32).to_le_bytes()).collect(),
            TagValue::Double(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TagValue::Ascii(s) => {
                let mut b = s.as_bytes().to_vec();
                b.push(0);
                b
            }
        }
    }
}

/// Tags of one level; offsets are patched in once the layout is known.
fn level_tags<T: Sample>(
    level: &Array3<T>,
    index: usize,
    encoded: &[Vec<u8>],
    options: &WriteOptions,
) -> Vec<(u16, TagValue)> {
    let (bands, h, w) = level.dim();
    let dtype = T::DTYPE;
    let bits = (dtype.size() * 8) as u16;
    let format = if dtype.is_float() {
        3
    } else if matches!(
        dtype,
        crate::DataType::I8 | crate::DataType::I16 | crate::DataType::I32
    ) {
        2
    } else {
        1
    };
    let (compression, predictor) = match options.compression {
        WriteCompression::None => (1, 1),
        WriteCompression::Deflate => (8, if dtype.is_float() { 3 } else { 2 }),
    };
    let mut tags = vec![
        (254, TagValue::Long(vec![if index == 0 { 0 } else { 1 }])),
        (256, TagValue::Long(vec![w as u32])),
        (257, TagValue::Long(vec![h as u32])),
        (258, TagValue::Short(vec![bits; bands])),
        (259, TagValue::Short(vec![compression])),
        (262, TagValue::Short(vec![1])),
        (277, TagValue::Short(vec![bands as u16])),
        (284, TagValue::Short(vec![1])),
        (317, TagValue::Short(vec![predictor])),
        (322, TagValue::Long(vec![options.block_size])),
        (323, TagValue::Long(vec![options.block_size])),
        (324, TagValue::Offsets(vec![0; encoded.len()])),
        (
            325,
            TagValue::Offsets(encoded.iter().map(|b| b.len() as u64).collect()),
        ),
        (339, TagValue::Short(vec![format; bands])),
    ];
    if bands > 1 {
        tags.push((338, TagValue::Short(vec![0; bands - 1])));
    }
    if index == 0 {
        if let Some(dt) = &options.datetime {
            tags.push((306, TagValue::Ascii(dt.clone())));
        }
        tags.extend(geo_tags(options));
        let xml = gdal_metadata_xml(options);
        if !xml.is_empty() {
            tags.push((42112, TagValue::Ascii(xml)));
        }
    }
    if let Some(nodata) = options.nodata {
        let text = if nodata.is_nan() {
            "nan".to_string()
        } else {
            format!("{nodata}")
        };
        tags.push((42113, TagValue::Ascii(text)));
    }
    tags.sort_by_key(|(tag, _)| *tag);
    tags
}

fn geo_tags(options: &WriteOptions) -> Vec<(u16, TagValue)> {
    let mut tags = Vec::new();
    if let Some(t) = options.transform {
        if t.is_north_up() {
            tags.push((
                33550,
                TagValue::Double(vec![t.pixel_width, -t.pixel_height, 0.0]),
            ));
            tags.push((
                33922,
                TagValue::Double(vec![0.0, 0.0, 0.0, t.origin_x, t.origin_y, 0.0]),
            ));
        } else {
            tags.push((
                34264,
                TagValue::Double(vec![
                    t.pixel_width,
                    t.row_rotation,
                    0.0,
                    t.origin_x, //
                    t.col_rotation,
                    t.pixel_height,
                    0.0,
                    t.origin_y, //
                    0.0,
                    0.0,
                    0.0,
                    0.0, //
                    0.0,
                    0.0,
                    0.0,
                    1.0,
                ]),
            ));
        }
    }
    if let Some(code) = options.epsg {
        let geographic = (4000..5000).contains(&code);
        let (model, key) = if geographic { (2, 2048) } else { (1, 3072) };
        let code = u16::try_from(code).unwrap_or(32767);
        tags.push((
            34735,
            TagValue::Short(vec![
                1, 1, 0, 3, //
                1024, 0, 1, model, // GTModelTypeGeoKey
                1025, 0, 1, 1, // GTRasterTypeGeoKey = PixelIsArea
                key, 0, 1, code,
            ]),
        ));
    }
    tags
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn gdal_metadata_xml(options: &WriteOptions) -> String {
    let mut items = String::new();
    for (k, v) in &options.metadata {
        items += &format!(
            "  <Item name=\"{}\">{}</Item>\n",
            xml_escape(k),
            xml_escape(v)
        );
    }
    for (i, d) in options.band_descriptions.iter().enumerate() {
        items += &format!(
            "  <Item name=\"DESCRIPTION\" sample=\"{i}\" role=\"description\">{}</Item>\n",
            xml_escape(d)
        );
    }
    if items.is_empty() {
        String::new()
    } else {
        format!("<GDALMetadata>\n{items}</GDALMetadata>\n")
    }
}

/// Lays out header, directories, tag data and blocks, and returns the file bytes.
fn assemble<T: Sample>(
    levels: &[Array3<T>],
    encoded: &[Vec<Vec<u8>>],
    options: &WriteOptions,
    bigtiff: bool,
) -> Vec<u8> {
    let mut tag_sets: Vec<Vec<(u16, TagValue)>> = levels
        .iter()
        .zip(encoded)
        .enumerate()
        .map(|(i, (l, e))| level_tags(l, i, e, options))
        .collect();
    let (header_len, entry_len, count_len, ptr_len) = if bigtiff {
        (16, 20, 8, 8)
    } else {
        (8, 12, 2, 4)
    };
    let inline_max = ptr_len;
    let ifd_len =
        |tags: &Vec<(u16, TagValue)>| (count_len + tags.len() * entry_len + ptr_len) as u64;
    let extra_len = |tags: &Vec<(u16, TagValue)>| -> u64 {
        tags.iter()
            .map(|(_, v)| v.bytes(bigtiff).len())
            .filter(|&n| n > inline_max)
            .map(|n| (n + n % 2) as u64)
            .sum()
    };
    // Directories first, then each level's out-of-line tag data, then blocks.
    let mut ifd_offsets = Vec::new();
    let mut pos = header_len as u64;
    for tags in &tag_sets {
        ifd_offsets.push(pos);
        pos += ifd_len(tags);
    }
    let mut extra_offsets = Vec::new();
    for tags in &tag_sets {
        extra_offsets.push(pos);
        pos += extra_len(tags);
    }
    // Blocks: smallest overview first, full resolution last.
    for (level, blocks) in encoded.iter().enumerate().rev() {
        let mut offsets = Vec::with_capacity(blocks.len());
        for b in blocks {
            offsets.push(pos);
            pos += b.len() as u64;
        }
        if let Some((_, TagValue::Offsets(o))) = tag_sets[level].iter_mut().find(|(t, _)| *t == 324)
        {
            *o = offsets;
        }
    }
    let mut out = Vec::with_capacity(pos as usize);
    if bigtiff {
        out.extend_from_slice(b"II");
        out.extend_from_slice(&43u16.to_le_bytes());
        out.extend_from_slice(&8u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&ifd_offsets[0].to_le_bytes());
    } else {
        out.extend_from_slice(b"II");
        out.extend_from_slice(&42u16.to_le_bytes());
        out.extend_from_slice(&(ifd_offsets[0] as u32).to_le_bytes());
    }
    let mut extras: Vec<u8> = Vec::new();
    for (i, tags) in tag_sets.iter().enumerate() {
        let mut extra_pos = extra_offsets[i];
        let mut extra = Vec::new();
        if bigtiff {
            out.extend_from_slice(&(tags.len() as u64).to_le_bytes());
        } else {
            out.extend_from_slice(&(tags.len() as u16).to_le_bytes());
        }
        for (tag, value) in tags {
            let (ty, count) = value.type_and_count(bigtiff);
            let bytes = value.bytes(bigtiff);
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&ty.to_le_bytes());
            if bigtiff {
                out.extend_from_slice(&count.to_le_bytes());
            } else {
                out.extend_from_slice(&(count as u32).to_le_bytes());
            }
            let mut field = vec![0u8; ptr_len];
            if bytes.len() <= inline_max {
                field[..bytes.len()].copy_from_slice(&bytes);
            } else {
                let p = extra_pos.to_le_bytes();
                field.copy_from_slice(&p[..ptr_len]);
                extra.extend_from_slice(&bytes);
                if bytes.len() % 2 == 1 {
                    extra.push(0);
                }
                extra_pos += (bytes.len() + bytes.len() % 2) as u64;
            }
            out.extend_from_slice(&field);
        }
        let next = ifd_offsets.get(i + 1).copied().unwrap_or(0);
        out.extend_from_slice(&next.to_le_bytes()[..ptr_len]);
        extras.extend_from_slice(&extra);
    }
    out.extend_from_slice(&extras);
    for blocks in encoded.iter().rev() {
        for b in blocks {
            out.extend_from_slice(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cog::{Cog, Window};
    use crate::source::InMemory;
    use std::sync::Arc;

    fn ramp<T: Sample>(bands: usize, h: usize, w: usize) -> Array3<T> {
        Array3::from_shape_fn((bands, h, w), |(b, y, x)| {
            T::from_f64(((b * 7919 + y * 131 + x * 17) % 251) as f64)
        })
    }

    fn round_trip<T: Sample + Pod>(compression: WriteCompression) {
        let data = ramp::<T>(3, 70, 45);
        let options = WriteOptions {
            block_size: 32,
            compression,
            transform: Some(GeoTransform::north_up(500000.0, 4000000.0, 10.0, 10.0)),
            epsg: Some(32652),
            nodata: Some(0.0),
            band_descriptions: vec!["B02".into(), "B03".into(), "B04".into()],
            metadata: vec![("ACQUISITION_DATETIME".into(), "2023-06-11T02:16:59Z".into())],
            ..Default::default()
        };
        let bytes = encode_cog(data.view(), &options).unwrap();
        let cog = Cog::from_source(Arc::new(InMemory::new("mem.tif", bytes))).unwrap();
        let m = cog.meta();
        assert_eq!((m.width(), m.height(), m.band_count()), (45, 70, 3));
        assert_eq!(m.dtype(), T::DTYPE);
        assert_eq!(m.epsg(), Some(32652));
        assert_eq!(m.transform(), options.transform);
        assert_eq!(m.nodata, Some(0.0));
        assert_eq!(m.bands[2].description.as_deref(), Some("B04"));
        assert!(m.acquired.is_some());
        assert_eq!(m.overview_count(), 2, "70 -> 35 -> 18 px");
        let back = cog
            .read_window::<T>(0, Window::full(45, 70), &[0, 1, 2])
            .unwrap();
        assert_eq!(back, data);
        let ovr = cog.read_window::<T>(1, Window::full(23, 35), &[0]).unwrap();
        assert_eq!(ovr.dim(), (1, 35, 23));
    }

    #[test]
    fn round_trips_every_type_through_the_reader() {
        round_trip::<u8>(WriteCompression::Deflate);
        round_trip::<i8>(WriteCompression::Deflate);
        round_trip::<u16>(WriteCompression::Deflate);
        round_trip::<i16>(WriteCompression::None);
        round_trip::<u32>(WriteCompression::Deflate);
        round_trip::<i32>(WriteCompression::Deflate);
        round_trip::<f32>(WriteCompression::Deflate);
        round_trip::<f64>(WriteCompression::Deflate);
    }

    #[test]
    fn overviews_average_valid_pixels_only() {
        let mut data = Array3::<u16>::from_elem((1, 2, 2), 0);
        data[[0, 0, 0]] = 10;
        data[[0, 1, 1]] = 20;
        assert_eq!(downsample(data.view(), Some(0.0))[[0, 0, 0]], 15);
        assert_eq!(downsample(data.view(), None)[[0, 0, 0]], 8);
    }

    #[test]
    fn rejects_bad_options() {
        let data = ramp::<u16>(2, 10, 10);
        let bad_block = WriteOptions {
            block_size: 20,
            ..Default::default()
        };
        assert!(encode_cog(data.view(), &bad_block).is_err());
        let bad_desc = WriteOptions {
            band_descriptions: vec!["only one".into()],
            ..Default::default()
        };
        assert!(encode_cog(data.view(), &bad_desc).is_err());
    }
}
