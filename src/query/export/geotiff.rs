//! A cube as a Cloud-Optimized GeoTIFF: one band per (time, band), float32, NaN nodata,
//! descriptions `YYYY-MM-DD band`.

use crate::cog::{encode_cog, WriteOptions};
use crate::query::cube::Cube;
use ndarray::Array3;

pub(super) fn encode(cube: &Cube) -> Result<Vec<u8>, String> {
    let (t, b, h, w) = cube.dim();
    if t * b == 0 || h * w == 0 {
        return Err("the query returned no data to write".into());
    }
    let data = cube
        .data
        .to_shape((t * b, h, w))
        .map_err(|e| e.to_string())?
        .to_owned();
    let data: Array3<f32> = data;
    let descriptions = (0..t)
        .flat_map(|ti| {
            (0..b).map(move |bi| {
                if t == 1 {
                    cube.bands[bi].clone()
                } else {
                    format!("{} {}", cube.times[ti].format("%Y-%m-%d"), cube.bands[bi])
                }
            })
        })
        .collect();
    let options = WriteOptions {
        transform: Some(cube.transform),
        epsg: Some(cube.epsg),
        nodata: Some(f64::NAN),
        band_descriptions: descriptions,
        metadata: vec![(
            "PIXELQUERY_TIMES".into(),
            cube.times
                .iter()
                .map(|t| t.to_rfc3339())
                .collect::<Vec<_>>()
                .join(","),
        )],
        ..Default::default()
    };
    encode_cog(data.view(), &options)
}
