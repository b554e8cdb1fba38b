//! Per (time, band) statistics of the valid pixels inside the region (count, mean, std, min,
//! median, max), computed window by window and written as CSV, JSON or Parquet: what
//! `--stats` asks for.

use super::source::Source;
use super::table::{csv_of, json_of, stats_rows};
use super::{io_error, Format, Written};
use crate::query::budget::Alignment;
use crate::query::cube::Stats;
use crate::store::Pixel;
use ndarray::Axis;
use rayon::prelude::*;
use std::path::Path;

/// Statistics of every (time, band) of a source.
pub(super) fn compute<T: Pixel>(src: &dyn Source<T>) -> Result<Vec<Vec<Stats>>, super::Error> {
    let info = src.info();
    let (t, b, h, w) = info.dim();
    // Valid values of each slab, gathered over the windows that cover it.
    let mut values: Vec<Vec<Vec<f32>>> = vec![vec![Vec::new(); b]; t];
    for win in src.windows(Alignment {
        rows: h.max(1),
        cols: w.max(1),
    }) {
        let data = src.read(&win)?;
        let mask: Option<Vec<bool>> = info.region.as_ref().and_then(|r| {
            let tr = info
                .transform
                .window(win.cols.start as f64, win.rows.start as f64, 1.0, 1.0);
            r.raster_mask(&tr, win.cols.len(), win.rows.len())
                .map(|m| m.iter().copied().collect())
        });
        let slabs: Vec<(usize, usize, Vec<f32>)> = (0..win.steps.len() * b)
            .into_par_iter()
            .map(|i| {
                let (k, bi) = (i / b, i % b);
                let slab = data.index_axis(Axis(0), k);
                let slab = slab.index_axis(Axis(0), bi);
                let v: Vec<f32> = slab
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| mask.as_ref().is_none_or(|m| m[*j]))
                    .map(|(_, v)| v.to_f64())
                    .filter(|x| !x.is_nan() && *x != info.nodata)
                    .map(|x| x as f32)
                    .collect();
                (win.steps.start + k, bi, v)
            })
            .collect();
        crate::query::recycle::give_array(data);
        for (ti, bi, v) in slabs {
            values[ti][bi].extend(v);
        }
    }
    Ok(values
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| {
                    let n = v.len();
                    Stats::of(
                        ndarray::Array2::from_shape_vec((1, n), v)
                            .unwrap_or_else(|_| ndarray::Array2::zeros((1, 0)))
                            .view(),
                    )
                })
                .collect()
        })
        .collect())
}

/// The statistics table as CSV, JSON or Parquet bytes (`file` names it in errors).
pub(super) fn encode<T: Pixel>(
    src: &dyn Source<T>,
    format: Format,
    file: &str,
) -> Result<Vec<u8>, super::Error> {
    let info = src.info();
    let stats = compute(src)?;
    let rows = stats_rows(
        &info.times,
        &info.scenes,
        &info.products,
        &info.bands,
        &stats,
    );
    Ok(match format {
        Format::Json => json_of(
            info.epsg,
            false,
            &info.bands,
            &info.band_sources,
            &info.values.describe(),
            &rows,
        )
        .into_bytes(),
        Format::Parquet => {
            super::parquet::encode_rows(&rows, false, info.epsg).map_err(|reason| {
                super::Error::Unsuitable {
                    file: file.to_string(),
                    reason,
                }
            })?
        }
        _ => csv_of(&rows, false).into_bytes(),
    })
}

/// Writes the statistics table.
pub(super) fn write<T: Pixel>(
    src: &dyn Source<T>,
    path: &Path,
    format: Format,
) -> Result<Written, super::Error> {
    let info = src.info();
    let bytes = encode(src, format, &path.display().to_string())?;
    std::fs::write(path, &bytes).map_err(io_error(path))?;
    let (t, b, _, _) = info.dim();
    Ok(Written {
        path: path.to_path_buf(),
        what: format!(
            "statistics (count, mean, std, min, median, max of valid pixels), {} rows ({t} times x {b} bands)",
            t * b
        ),
        bytes: bytes.len() as u64,
    })
}
