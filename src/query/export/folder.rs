//! A cube as a folder of COGs, one per time step (`YYYYMMDDTHHMMSS.tif`), bands named as
//! requested: what GIS users load. Files are written window by window, a run of steps at a
//! time (so only that many files are open at once).

use super::geotiff::{band_items, base_options, time_text};
use super::source::Source;
use super::{io_error, type_name, ExportOptions, Written};
use crate::cog::{CogWriter, WriteOptions};
use crate::query::budget::Alignment;
use crate::query::plan::CubeWindow;
use crate::store::Pixel;
use ndarray::Axis;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Most files open at once (each also holds overview scratch files with overviews).
const MAX_OPEN: usize = 64;

/// File names of the steps: `YYYYMMDDTHHMMSS.tif`, with `_2`, `_3`... when times repeat
/// within a second.
pub(super) fn file_names(times: &[chrono::DateTime<chrono::Utc>]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    times
        .iter()
        .map(|t| {
            let stem = t.format("%Y%m%dT%H%M%S").to_string();
            let n = seen.entry(stem.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                format!("{stem}.tif")
            } else {
                format!("{stem}_{n}.tif")
            }
        })
        .collect()
}

pub(super) fn write<T: Pixel>(
    src: &dyn Source<T>,
    dir: &Path,
    options: &ExportOptions,
) -> Result<Written, super::Error> {
    let info = src.info();
    let (t, b, h, w) = info.dim();
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let names = file_names(&info.times);
    let base = base_options(info, options);
    let block = base.block_size as usize;
    // Runs of at most MAX_OPEN steps, each covering the image in row-major order.
    let mut windows: Vec<CubeWindow> = Vec::new();
    for win in src.windows(Alignment {
        rows: block,
        cols: block,
    }) {
        let mut s0 = win.steps.start;
        while s0 < win.steps.end {
            let s1 = (s0 + MAX_OPEN - s0 % MAX_OPEN).min(win.steps.end);
            windows.push(CubeWindow {
                steps: s0..s1,
                ..win.clone()
            });
            s0 = s1;
        }
    }
    windows.sort_by_key(|w| w.steps.start / MAX_OPEN);
    let mut open: BTreeMap<usize, CogWriter<T>> = BTreeMap::new();
    let mut written: Vec<PathBuf> = Vec::new();
    for win in &windows {
        let data = src.read(win)?;
        for (k, step) in data.axis_iter(Axis(0)).enumerate() {
            let ti = win.steps.start + k;
            if let std::collections::btree_map::Entry::Vacant(slot) = open.entry(ti) {
                let path = dir.join(&names[ti]);
                let opts = WriteOptions {
                    band_descriptions: info.bands.clone(),
                    band_metadata: (0..b).map(|bi| band_items(info, ti, bi)).collect(),
                    metadata: vec![
                        ("TIME".into(), time_text(&info.times[ti])),
                        ("ACQUISITION_DATETIME".into(), time_text(&info.times[ti])),
                        ("SCENES".into(), info.scenes[ti].join(",")),
                        ("PRODUCT".into(), info.products[ti].clone()),
                        ("VALUES".into(), info.values.describe()),
                    ],
                    datetime: Some(info.times[ti].format("%Y:%m:%d %H:%M:%S").to_string()),
                    ..base.clone()
                };
                slot.insert(CogWriter::create(&path, w, h, b, &opts)?);
                written.push(path);
            }
            if let Some(writer) = open.get_mut(&ti) {
                writer.write(0, win.rows.start, win.cols.start, step)?;
            }
        }
        crate::query::recycle::give_array(data);
        // A run ends when its last window reaches the bottom-right corner.
        if win.rows.end == h && win.cols.end == w {
            for ti in win.steps.clone() {
                if let Some(writer) = open.remove(&ti) {
                    writer.finish()?;
                }
            }
        }
    }
    let mut bytes = 0;
    for p in &written {
        bytes += std::fs::metadata(p).map_err(io_error(p))?.len();
    }
    Ok(Written {
        path: dir.to_path_buf(),
        what: format!(
            "{t} COGs, one per time step (YYYYMMDDTHHMMSS.tif), each {b} {} bands ({}), {w} x {h} px, EPSG:{}",
            type_name(info.dtype),
            info.bands.join(","),
            info.epsg
        ),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_times_made_unique() {
        let t = |s| crate::time::parse_datetime(s).unwrap();
        let names = file_names(&[
            t("2023-06-11T02:16:59Z"),
            t("2023-06-11T02:16:59.5Z"),
            t("2023-07-16T02:16:59Z"),
        ]);
        assert_eq!(
            names,
            [
                "20230611T021659.tif",
                "20230611T021659_2.tif",
                "20230716T021659.tif"
            ]
        );
    }
}
