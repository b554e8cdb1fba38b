//! A cube as one Cloud-Optimized GeoTIFF: one band per (time, band), in that order, in the
//! cube's sample type with its nodata value; band descriptions `YYYY-MM-DD band` and per-band
//! metadata (`TIME`, `ACQUISITION_DATETIME`, `BAND`, `STORED_BAND`, `SCENES`, `PRODUCT`) as
//! GDAL reads them; blocks streamed window by window (band-interleaved, so any run of time
//! steps writes alone).

use super::source::{CubeInfo, Source};
use super::{io_error, type_name, ExportOptions, OutputCompression, Written};
use crate::cog::{CogWriter, Interleave, WriteCompression, WriteOptions};
use crate::query::budget::Alignment;
use crate::store::Pixel;
use chrono::{DateTime, Utc};
use std::path::Path;

/// COG block size for an image: one block when it fits in 512 x 512 (no padding to encode),
/// else 256.
pub(super) fn block_size(width: usize, height: usize) -> u32 {
    let side = width.max(height);
    if side <= 512 {
        (side.div_ceil(16) * 16).max(16) as u32
    } else {
        256
    }
}

/// `2023-06-11T02:16:59Z`.
pub(super) fn time_text(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Writer options shared by the cube COG and per-date COGs.
pub(super) fn base_options(info: &CubeInfo, options: &ExportOptions) -> WriteOptions {
    WriteOptions {
        block_size: block_size(info.width, info.height),
        compression: match options.compression {
            OutputCompression::Auto | OutputCompression::Deflate => WriteCompression::Deflate,
            OutputCompression::None => WriteCompression::None,
        },
        overviews: options.overviews,
        interleave: Interleave::Band,
        transform: Some(info.transform),
        epsg: Some(info.epsg),
        nodata: Some(info.nodata),
        ..Default::default()
    }
}

/// Metadata of one band of one step.
pub(super) fn band_items(info: &CubeInfo, t: usize, b: usize) -> Vec<(String, String)> {
    let time = time_text(&info.times[t]);
    vec![
        ("TIME".into(), time.clone()),
        ("ACQUISITION_DATETIME".into(), time),
        ("BAND".into(), info.bands[b].clone()),
        ("STORED_BAND".into(), info.band_sources[b].clone()),
        ("SCENES".into(), info.scenes[t].join(",")),
        ("PRODUCT".into(), info.products[t].clone()),
    ]
}

pub(super) fn write<T: Pixel>(
    src: &dyn Source<T>,
    path: &Path,
    options: &ExportOptions,
) -> Result<Written, super::Error> {
    let info = src.info();
    let (t, b, h, w) = info.dim();
    // Dates name bands unless two steps share one.
    let dates: Vec<String> = info
        .times
        .iter()
        .map(|x| x.format("%Y-%m-%d").to_string())
        .collect();
    let unique = {
        let mut d = dates.clone();
        d.dedup();
        d.len() == dates.len()
    };
    let mut descriptions = Vec::with_capacity(t * b);
    let mut band_metadata = Vec::with_capacity(t * b);
    for (ti, date) in dates.iter().enumerate().take(t) {
        let when = if unique {
            date.clone()
        } else {
            time_text(&info.times[ti])
        };
        for bi in 0..b {
            descriptions.push(format!("{when} {}", info.bands[bi]));
            band_metadata.push(band_items(info, ti, bi));
        }
    }
    let times: Vec<String> = info.times.iter().map(time_text).collect();
    let wopts = WriteOptions {
        band_descriptions: descriptions,
        band_metadata,
        metadata: vec![
            ("TIMES".into(), times.join(",")),
            ("BANDS".into(), info.bands.join(",")),
            ("STORED_BANDS".into(), info.band_sources.join(",")),
            ("VALUES".into(), info.values.describe()),
            ("LAYOUT".into(), "bands ordered (time, band)".into()),
        ],
        datetime: (t == 1).then(|| info.times[0].format("%Y:%m:%d %H:%M:%S").to_string()),
        ..base_options(info, options)
    };
    let mut writer = CogWriter::<T>::create(path, w, h, t * b, &wopts)?;
    let bs = writer.block_size();
    for win in src.windows(Alignment { rows: bs, cols: bs }) {
        let data = src.read(&win)?;
        let (s, nb, r, c) = data.dim();
        let data =
            data.into_shape_with_order((s * nb, r, c))
                .map_err(|e| super::Error::Unsuitable {
                    file: path.display().to_string(),
                    reason: e.to_string(),
                })?;
        writer.write(
            win.steps.start * b,
            win.rows.start,
            win.cols.start,
            data.view(),
        )?;
        crate::query::recycle::give_array(data);
    }
    writer.finish()?;
    let bytes = std::fs::metadata(path).map_err(io_error(path))?.len();
    Ok(Written {
        path: path.to_path_buf(),
        what: format!(
            "one COG of {} {} bands ({t} times x {b} bands {}), {w} x {h} px, EPSG:{}{}",
            t * b,
            type_name(info.dtype),
            info.bands.join(","),
            info.epsg,
            if options.overviews {
                ", with overviews"
            } else {
                ""
            }
        ),
        bytes,
    })
}
