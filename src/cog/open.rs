//! Reading a GeoTIFF header into [`CogMeta`]: directories through the `tiff` crate, then
//! levels, masks, georeferencing and GDAL metadata.

use super::cursor::SourceCursor;
use super::gdal_metadata::{self, Item};
use super::georef::{self, RawGeoTags};
use super::ifd::{LayoutProblem, Level, RawIfd};
use super::{BandInfo, CogMeta, Error, Result};
use crate::source::ByteSource;
use crate::time::parse_datetime;
use std::collections::{BTreeMap, HashSet};
use tiff::decoder::{ifd::Value, Decoder, IfdDecoder, Limits};
use tiff::tags::Tag;

/// Most directories the reader walks; real files have a handful.
const MAX_DIRECTORIES: usize = 4096;

/// Metadata keys that carry an acquisition time, most specific first.
const ACQUISITION_KEYS: [&str; 9] = [
    "ACQUISITION_DATETIME",
    "ACQUISITIONDATETIME",
    "ACQUISITION_DATE",
    "SENSING_TIME",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "DATE_ACQUIRED",
    "DATETIME",
    "TIFFTAG_DATETIME",
];

/// Parses the header of the TIFF behind `source`.
pub(super) fn read_meta(source: &dyn ByteSource) -> Result<CogMeta> {
    let file = source.name().to_string();
    let size = source.size();
    let (big_endian, bigtiff) = check_header(source)?;

    let structure = |e: tiff::TiffError| Error::Structure {
        file: file.clone(),
        reason: e.to_string(),
    };
    let mut limits = Limits::default();
    // Tag arrays (block offsets) can never be larger than the file itself.
    limits.ifd_value_size = usize::try_from(size).unwrap_or(usize::MAX).max(1 << 20);
    let mut warnings = Vec::new();
    let loop_pointer = find_directory_loop(source, big_endian, bigtiff, &mut warnings);
    let mut decoder = Decoder::new(SourceCursor::new(source).with_zeroed(loop_pointer))
        .map_err(|e| match e {
            tiff::TiffError::FormatError(tiff::TiffFormatError::CycleInOffsets) => {
                Error::Structure {
                    file: file.clone(),
                    reason: "the chain of image directories loops back on itself".into(),
                }
            }
            e => structure(e),
        })?
        .with_limits(limits);
    let first = decoder.ifd_pointer().ok_or_else(|| Error::Structure {
        file: file.clone(),
        reason: "no image directory".into(),
    })?;

    let mut seen = HashSet::new();
    let mut next = Some(first);
    let mut directories = Vec::new();
    let mut geo = RawGeoTags::default();
    let mut extra = FirstIfdExtras::default();
    while let Some(ptr) = next {
        let index = directories.len();
        if !seen.insert(ptr.0) {
            warnings.push(format!(
                "image directory {} links back to the directory at offset {}; the rest of the chain is ignored",
                index.saturating_sub(1),
                ptr.0
            ));
            break;
        }
        if index >= MAX_DIRECTORIES {
            warnings.push(format!(
                "more than {MAX_DIRECTORIES} image directories; the rest are ignored"
            ));
            break;
        }
        let dir = match decoder.read_directory(ptr) {
            Ok(d) => d,
            Err(e) if index == 0 => return Err(structure(e)),
            Err(e) => {
                warnings.push(format!("image directory {index} is unreadable ({e}); it and the rest of the chain are ignored"));
                break;
            }
        };
        next = dir.next();
        let mut tags = decoder.read_directory_tags(&dir);
        let raw = match read_raw_ifd(&mut tags) {
            Ok(r) => r,
            Err(e) if index == 0 => return Err(structure(e)),
            Err(e) => {
                warnings.push(format!(
                    "image directory {index} has unreadable tags ({e}); ignored"
                ));
                continue;
            }
        };
        if index == 0 {
            geo = read_geo_tags(&mut tags).map_err(structure)?;
            extra = read_first_ifd_extras(&mut tags);
        }
        directories.push(raw);
    }

    let mut levels: Vec<Level> = Vec::new();
    let mut mask_dirs: Vec<Level> = Vec::new();
    for (index, raw) in directories.into_iter().enumerate() {
        match Level::from_raw(index, raw) {
            Ok(level) if index == 0 => {
                if level.dtype.is_none() {
                    return Err(Error::Unsupported {
                        file,
                        what: "sample type",
                        value: format!("{}-bit samples", level.bits_per_sample),
                    });
                }
                levels.push(level);
            }
            Ok(level) if level.is_mask() => mask_dirs.push(level),
            Ok(level)
                if level.is_reduced()
                    && level.samples_per_pixel == levels[0].samples_per_pixel
                    && level.dtype == levels[0].dtype =>
            {
                levels.push(level)
            }
            Ok(_) => warnings.push(format!(
                "image directory {index} is neither an overview nor a mask of the main image; ignored"
            )),
            Err(problem) if index == 0 => {
                return Err(Error::Layout {
                    file,
                    ifd: 0,
                    reason: describe(problem),
                })
            }
            Err(problem) => warnings.push(format!(
                "image directory {index} is unusable ({}); ignored",
                describe(problem)
            )),
        }
    }
    levels[1..].sort_by_key(|l| std::cmp::Reverse(l.width));
    let masks = levels
        .iter()
        .map(|l| {
            mask_dirs
                .iter()
                .find(|m| m.width == l.width && m.height == l.height)
                .cloned()
        })
        .collect();

    let band_count = levels[0].samples_per_pixel as usize;
    let items = extra
        .gdal_metadata
        .as_deref()
        .map(gdal_metadata::parse_items)
        .unwrap_or_default();
    let (bands, mut metadata) = band_and_dataset_metadata(&items, band_count);
    if let Some(dt) = extra.datetime.as_deref() {
        metadata
            .entry("TIFFTAG_DATETIME".to_string())
            .or_insert_with(|| dt.trim_end_matches('\0').to_string());
    }
    let acquired = ACQUISITION_KEYS
        .iter()
        .filter_map(|k| metadata.get(*k))
        .find_map(|v| parse_datetime(v));

    Ok(CogMeta {
        name: file,
        file_size: size,
        bigtiff,
        big_endian,
        levels,
        masks,
        georef: georef::parse(&geo),
        bands,
        nodata: extra
            .nodata
            .as_deref()
            .and_then(gdal_metadata::parse_nodata),
        metadata,
        acquired,
        warnings,
    })
}

/// Checks the 8-byte header before handing the file to the TIFF parser, so that the common
/// "this is not a TIFF" cases get a precise message.
fn check_header(source: &dyn ByteSource) -> Result<(bool, bool)> {
    let file = source.name().to_string();
    let not_tiff = |reason: String| Error::NotTiff {
        file: file.clone(),
        reason,
    };
    let size = source.size();
    if size < 8 {
        return Err(not_tiff(format!(
            "the file is {size} bytes long, too short for a TIFF header"
        )));
    }
    let head = source.read_at(0, 8)?;
    let big_endian = match &head[..2] {
        b"II" => false,
        b"MM" => true,
        other => {
            return Err(not_tiff(format!(
                "it starts with bytes {:02x} {:02x}, not the TIFF byte-order mark II or MM",
                other[0], other[1]
            )))
        }
    };
    let version = if big_endian {
        u16::from_be_bytes([head[2], head[3]])
    } else {
        u16::from_le_bytes([head[2], head[3]])
    };
    match version {
        42 => Ok((big_endian, false)),
        43 => Ok((big_endian, true)),
        v => Err(not_tiff(format!(
            "TIFF version {v} is neither 42 (classic TIFF) nor 43 (BigTIFF)"
        ))),
    }
}

/// Follows the chain of next-directory pointers without parsing the directories, and returns
/// the byte range of the pointer that closes a loop, if any. Reading problems are left to the
/// real parser, which reports them with context.
fn find_directory_loop(
    source: &dyn ByteSource,
    big_endian: bool,
    bigtiff: bool,
    warnings: &mut Vec<String>,
) -> Option<std::ops::Range<u64>> {
    let uint = |bytes: &[u8]| -> u64 {
        let mut v = 0u64;
        for i in 0..bytes.len() {
            let b = if big_endian {
                bytes[i]
            } else {
                bytes[bytes.len() - 1 - i]
            };
            v = (v << 8) | b as u64;
        }
        v
    };
    let (pointer_len, count_len, entry_len) = if bigtiff { (8, 8, 20) } else { (4, 2, 12) };
    let first_at = if bigtiff { 8 } else { 4 };
    let mut offset = uint(&source.read_at(first_at, pointer_len as usize).ok()?);
    let mut seen = HashSet::new();
    for index in 0..MAX_DIRECTORIES {
        if offset == 0 {
            return None;
        }
        seen.insert(offset);
        let count = uint(&source.read_at(offset, count_len as usize).ok()?);
        let next_at = offset
            .checked_add(count_len)?
            .checked_add(count.checked_mul(entry_len)?)?;
        let next = uint(&source.read_at(next_at, pointer_len as usize).ok()?);
        if seen.contains(&next) {
            warnings.push(format!(
                "image directory {index} links back to the directory at offset {next}; the chain is cut there (as GDAL does)"
            ));
            return Some(next_at..next_at + pointer_len);
        }
        offset = next;
    }
    None
}

fn describe(problem: LayoutProblem) -> String {
    match problem {
        LayoutProblem::Missing(tag) => format!("required tag {tag} is missing"),
        LayoutProblem::Invalid(reason) => reason,
    }
}

fn unsigned(tags: &mut IfdDecoder<'_>, tag: Tag) -> tiff::TiffResult<Option<u64>> {
    tags.find_tag(tag)?.map(|v| v.into_u64()).transpose()
}

fn unsigned_vec(tags: &mut IfdDecoder<'_>, tag: Tag) -> tiff::TiffResult<Option<Vec<u64>>> {
    tags.find_tag(tag)?.map(|v| v.into_u64_vec()).transpose()
}

fn short_vec(tags: &mut IfdDecoder<'_>, tag: Tag) -> tiff::TiffResult<Vec<u16>> {
    Ok(unsigned_vec(tags, tag)?
        .unwrap_or_default()
        .into_iter()
        .map(|v| u16::try_from(v).unwrap_or(u16::MAX))
        .collect())
}

fn short(tags: &mut IfdDecoder<'_>, tag: Tag) -> tiff::TiffResult<Option<u16>> {
    Ok(unsigned(tags, tag)?.map(|v| u16::try_from(v).unwrap_or(u16::MAX)))
}

fn read_raw_ifd(tags: &mut IfdDecoder<'_>) -> tiff::TiffResult<RawIfd> {
    let tiled = tags.find_entry(Tag::TileWidth).is_some();
    let (offsets_tag, counts_tag) = if tiled {
        (Tag::TileOffsets, Tag::TileByteCounts)
    } else {
        (Tag::StripOffsets, Tag::StripByteCounts)
    };
    Ok(RawIfd {
        width: unsigned(tags, Tag::ImageWidth)?,
        height: unsigned(tags, Tag::ImageLength)?,
        bits_per_sample: short_vec(tags, Tag::BitsPerSample)?,
        samples_per_pixel: short(tags, Tag::SamplesPerPixel)?,
        sample_format: short_vec(tags, Tag::SampleFormat)?,
        compression: short(tags, Tag::Compression)?,
        predictor: short(tags, Tag::Predictor)?,
        planar: short(tags, Tag::PlanarConfiguration)?,
        photometric: short(tags, Tag::PhotometricInterpretation)?,
        subfile_type: unsigned(tags, Tag::NewSubfileType)?.map(|v| v as u32),
        tile_width: unsigned(tags, Tag::TileWidth)?,
        tile_height: unsigned(tags, Tag::TileLength)?,
        rows_per_strip: unsigned(tags, Tag::RowsPerStrip)?,
        offsets: unsigned_vec(tags, offsets_tag)?,
        byte_counts: unsigned_vec(tags, counts_tag)?,
        jpeg_tables: tags
            .find_tag(Tag::JPEGTables)?
            .map(|v| v.into_u8_vec())
            .transpose()?,
        ycbcr_subsampling: short_vec(tags, Tag::ChromaSubsampling)?,
    })
}

fn doubles(tags: &mut IfdDecoder<'_>, tag: Tag) -> tiff::TiffResult<Option<Vec<f64>>> {
    tags.find_tag(tag)?.map(|v| v.into_f64_vec()).transpose()
}

fn read_geo_tags(tags: &mut IfdDecoder<'_>) -> tiff::TiffResult<RawGeoTags> {
    Ok(RawGeoTags {
        pixel_scale: doubles(tags, Tag::ModelPixelScaleTag)?,
        tiepoints: doubles(tags, Tag::ModelTiepointTag)?,
        transformation: doubles(tags, Tag::ModelTransformationTag)?,
        geokeys: unsigned_vec(tags, Tag::GeoKeyDirectoryTag)?
            .map(|v| v.into_iter().map(|k| k as u16).collect()),
        double_params: doubles(tags, Tag::GeoDoubleParamsTag)?,
        ascii_params: ascii(tags, Tag::GeoAsciiParamsTag),
    })
}

/// Text tags of the first directory; a malformed one is treated as absent.
#[derive(Default)]
struct FirstIfdExtras {
    gdal_metadata: Option<String>,
    nodata: Option<String>,
    datetime: Option<String>,
}

fn ascii(tags: &mut IfdDecoder<'_>, tag: Tag) -> Option<String> {
    match tags.find_tag(tag) {
        Ok(Some(Value::Ascii(s))) => Some(s),
        Ok(Some(Value::List(list))) => {
            let bytes: Vec<u8> = list.into_iter().filter_map(|v| v.into_u8().ok()).collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        Ok(Some(Value::Byte(b))) => Some((b as char).to_string()),
        _ => None,
    }
}

fn read_first_ifd_extras(tags: &mut IfdDecoder<'_>) -> FirstIfdExtras {
    FirstIfdExtras {
        gdal_metadata: ascii(tags, Tag::Unknown(super::tags::code::GDAL_METADATA)),
        nodata: ascii(tags, Tag::GdalNodata),
        datetime: ascii(tags, Tag::DateTime),
    }
}

fn band_and_dataset_metadata(
    items: &[Item],
    band_count: usize,
) -> (Vec<BandInfo>, BTreeMap<String, String>) {
    let mut bands = vec![BandInfo::default(); band_count];
    let mut dataset = BTreeMap::new();
    for item in items.iter().filter(|i| i.domain.is_none()) {
        match item.sample {
            None => {
                dataset.insert(item.name.clone(), item.value.clone());
            }
            Some(b) if b < band_count => {
                let band = &mut bands[b];
                let number = item.value.trim().parse::<f64>().ok();
                match item.role.as_deref() {
                    Some("description") => band.description = Some(item.value.clone()),
                    Some("scale") => band.scale = number,
                    Some("offset") => band.offset = number,
                    Some("unittype") => band.unit = Some(item.value.clone()),
                    _ => {
                        band.metadata.insert(item.name.clone(), item.value.clone());
                    }
                }
            }
            Some(_) => {}
        }
    }
    (bands, dataset)
}
