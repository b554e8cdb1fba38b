//! The TIFF structure of a written COG: header, one directory per level (full resolution
//! first, then overviews from largest to smallest) and their out-of-line tag data, laid out
//! before any block so readers find everything in the first bytes. The size of this part
//! does not depend on the block offsets (they are fixed-width fields), so a writer can
//! reserve it, stream blocks after it, and write it last.

use super::{Interleave, WriteCompression, WriteOptions};
use crate::{DataType, GeoTransform};

/// One resolution level: its size and block grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Level {
    pub width: usize,
    pub height: usize,
    /// Blocks per row.
    pub across: usize,
    /// Block rows.
    pub down: usize,
}

impl Level {
    pub fn new(width: usize, height: usize, block: usize) -> Level {
        Level {
            width,
            height,
            across: width.div_ceil(block),
            down: height.div_ceil(block),
        }
    }

    /// Blocks of one plane.
    pub fn blocks(&self) -> usize {
        self.across * self.down
    }
}

/// What the directories describe besides the levels.
pub(super) struct Layout<'a> {
    pub levels: &'a [Level],
    pub bands: usize,
    pub dtype: DataType,
    pub options: &'a WriteOptions,
    pub bigtiff: bool,
}

impl Layout<'_> {
    /// Planes per level: one per band (band interleave) or one (pixel interleave).
    pub fn planes(&self) -> usize {
        match self.options.interleave {
            Interleave::Band => self.bands,
            Interleave::Pixel => 1,
        }
    }

    /// Header, directories and tag data with these block offsets and byte counts (per level,
    /// plane-major then row-major): always the same length for one layout.
    pub fn directories(&self, offsets: &[Vec<u64>], counts: &[Vec<u64>]) -> Vec<u8> {
        let tag_sets: Vec<Vec<(u16, TagValue)>> = self
            .levels
            .iter()
            .enumerate()
            .map(|(i, level)| self.level_tags(level, i, &offsets[i], &counts[i]))
            .collect();
        let bigtiff = self.bigtiff;
        let (header_len, entry_len, count_len, ptr_len) = if bigtiff {
            (16, 20, 8, 8)
        } else {
            (8, 12, 2, 4)
        };
        let ifd_len =
            |tags: &Vec<(u16, TagValue)>| (count_len + tags.len() * entry_len + ptr_len) as u64;
        let extra_len = |tags: &Vec<(u16, TagValue)>| -> u64 {
            tags.iter()
                .map(|(_, v)| v.byte_len(bigtiff))
                .filter(|&n| n > ptr_len)
                .map(|n| (n + n % 2) as u64)
                .sum()
        };
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
        let mut out = Vec::with_capacity(pos as usize);
        out.extend_from_slice(b"II");
        if bigtiff {
            out.extend_from_slice(&43u16.to_le_bytes());
            out.extend_from_slice(&8u16.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&ifd_offsets[0].to_le_bytes());
        } else {
            out.extend_from_slice(&42u16.to_le_bytes());
            out.extend_from_slice(&(ifd_offsets[0] as u32).to_le_bytes());
        }
        let mut extras: Vec<u8> = Vec::new();
        for (i, tags) in tag_sets.iter().enumerate() {
            let mut extra_pos = extra_offsets[i];
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
                if bytes.len() <= ptr_len {
                    field[..bytes.len()].copy_from_slice(&bytes);
                } else {
                    field.copy_from_slice(&extra_pos.to_le_bytes()[..ptr_len]);
                    extras.extend_from_slice(&bytes);
                    if bytes.len() % 2 == 1 {
                        extras.push(0);
                    }
                    extra_pos += (bytes.len() + bytes.len() % 2) as u64;
                }
                out.extend_from_slice(&field);
            }
            let next = ifd_offsets.get(i + 1).copied().unwrap_or(0);
            out.extend_from_slice(&next.to_le_bytes()[..ptr_len]);
        }
        out.extend_from_slice(&extras);
        out
    }

    /// Tags of one level, sorted.
    fn level_tags(
        &self,
        level: &Level,
        index: usize,
        offsets: &[u64],
        counts: &[u64],
    ) -> Vec<(u16, TagValue)> {
        let options = self.options;
        let bands = self.bands;
        let dtype = self.dtype;
        let bits = (dtype.size() * 8) as u16;
        let format = if dtype.is_float() {
            3
        } else if matches!(dtype, DataType::I8 | DataType::I16 | DataType::I32) {
            2
        } else {
            1
        };
        let (compression, predictor) = match options.compression {
            WriteCompression::None => (1, 1),
            WriteCompression::Deflate => (8, if dtype.is_float() { 3 } else { 2 }),
        };
        let planar = match options.interleave {
            Interleave::Pixel => 1,
            Interleave::Band => 2,
        };
        let mut tags = vec![
            (254, TagValue::Long(vec![if index == 0 { 0 } else { 1 }])),
            (256, TagValue::Long(vec![level.width as u32])),
            (257, TagValue::Long(vec![level.height as u32])),
            (258, TagValue::Short(vec![bits; bands])),
            (259, TagValue::Short(vec![compression])),
            (262, TagValue::Short(vec![1])),
            (277, TagValue::Short(vec![bands as u16])),
            (284, TagValue::Short(vec![planar])),
            (317, TagValue::Short(vec![predictor])),
            (322, TagValue::Long(vec![options.block_size])),
            (323, TagValue::Long(vec![options.block_size])),
            (324, TagValue::Offsets(offsets.to_vec())),
            (325, TagValue::Offsets(counts.to_vec())),
            (339, TagValue::Short(vec![format; bands])),
        ];
        if bands > 1 {
            tags.push((338, TagValue::Short(vec![0; bands - 1])));
        }
        if index == 0 {
            if let Some(dt) = &options.datetime {
                tags.push((306, TagValue::Ascii(dt.clone())));
            }
            tags.extend(geo_tags(options.transform, options.epsg));
            let xml = gdal_metadata_xml(options);
            if !xml.is_empty() {
                tags.push((42112, TagValue::Ascii(xml)));
            }
        }
        if let Some(nodata) = options.nodata {
            tags.push((42113, TagValue::Ascii(nodata_text(nodata))));
        }
        tags.sort_by_key(|(tag, _)| *tag);
        tags
    }
}

/// `GDAL_NODATA` text: GDAL writes `nan` for NaN and the shortest round-trip form otherwise.
pub(super) fn nodata_text(nodata: f64) -> String {
    if nodata.is_nan() {
        "nan".to_string()
    } else {
        format!("{nodata}")
    }
}

/// A tag value as written.
pub(super) enum TagValue {
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

    fn byte_len(&self, bigtiff: bool) -> usize {
        match self {
            TagValue::Short(v) => v.len() * 2,
            TagValue::Long(v) => v.len() * 4,
            TagValue::Offsets(v) => v.len() * if bigtiff { 8 } else { 4 },
            TagValue::Double(v) => v.len() * 8,
            TagValue::Ascii(s) => s.len() + 1,
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

/// GeoTIFF tags: pixel scale and tie point (north-up) or a transformation matrix, and the
/// GeoKey directory for an EPSG code.
fn geo_tags(transform: Option<GeoTransform>, epsg: Option<u32>) -> Vec<(u16, TagValue)> {
    let mut tags = Vec::new();
    if let Some(t) = transform {
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
    if let Some(code) = epsg {
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

/// The `GDAL_METADATA` XML: dataset items, band descriptions and per-band items.
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
    for (i, band) in options.band_metadata.iter().enumerate() {
        for (k, v) in band {
            items += &format!(
                "  <Item name=\"{}\" sample=\"{i}\">{}</Item>\n",
                xml_escape(k),
                xml_escape(v)
            );
        }
    }
    if items.is_empty() {
        String::new()
    } else {
        format!("<GDALMetadata>\n{items}</GDALMetadata>\n")
    }
}
