//! A quick-look PNG of an area: one time step, as RGB when the cube has red/green/blue bands
//! (or exactly three), else the first band through a viridis colour map; each channel
//! stretched between its 2nd and 98th percentile; invalid pixels transparent.

use super::encode_png;
use crate::query::cube::Cube;
use ndarray::{ArrayView2, Axis};

/// Viridis at five stops.
const VIRIDIS: [[f32; 3]; 5] = [
    [68.0, 1.0, 84.0],
    [59.0, 82.0, 139.0],
    [33.0, 145.0, 140.0],
    [94.0, 201.0, 98.0],
    [253.0, 231.0, 37.0],
];

fn viridis(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (t.floor() as usize).min(VIRIDIS.len() - 2);
    let f = t - i as f32;
    let mut c = [0u8; 3];
    for k in 0..3 {
        c[k] = (VIRIDIS[i][k] + (VIRIDIS[i + 1][k] - VIRIDIS[i][k]) * f).round() as u8;
    }
    c
}

/// 2nd and 98th percentiles of the valid values.
fn stretch(band: ArrayView2<'_, f32>) -> Option<(f32, f32)> {
    let mut v: Vec<f32> = band.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f32::total_cmp);
    let at = |q: f32| v[((v.len() - 1) as f32 * q).round() as usize];
    let (lo, hi) = (at(0.02), at(0.98));
    Some(if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    })
}

fn rgb_bands(cube: &Cube) -> Option<[usize; 3]> {
    let find = |names: &[&str]| names.iter().find_map(|n| cube.band_index(n));
    let red = find(&["red", "B04", "SR_B4"]);
    let green = find(&["green", "B03", "SR_B3"]);
    let blue = find(&["blue", "B02", "SR_B2"]);
    match (red, green, blue) {
        (Some(r), Some(g), Some(b)) => Some([r, g, b]),
        _ if cube.bands.len() == 3 => Some([0, 1, 2]),
        _ => None,
    }
}

pub(super) fn render(cube: &Cube) -> Result<Vec<u8>, String> {
    let (t, _, h, w) = cube.dim();
    if t == 0 || h == 0 || w == 0 {
        return Err("the query returned no pixels to draw".into());
    }
    // The time step with the most valid pixels (the latest on ties).
    let step = (0..t)
        .max_by_key(|&ti| {
            cube.data
                .index_axis(Axis(0), ti)
                .iter()
                .filter(|v| !v.is_nan())
                .count()
        })
        .unwrap_or(0);
    let slab = cube.data.index_axis(Axis(0), step);
    let scale = (256 / h.max(w)).clamp(1, 16);
    let (ow, oh) = (w * scale, h * scale);
    let mut rgba = vec![0u8; ow * oh * 4];
    let channels: Vec<(usize, Option<(f32, f32)>)> = match rgb_bands(cube) {
        Some(idx) => idx
            .iter()
            .map(|&b| (b, stretch(slab.index_axis(Axis(0), b))))
            .collect(),
        None => vec![(0, stretch(slab.index_axis(Axis(0), 0)))],
    };
    for y in 0..oh {
        for x in 0..ow {
            let (sy, sx) = (y / scale, x / scale);
            let px = &mut rgba[(y * ow + x) * 4..][..4];
            let values: Vec<f32> = channels.iter().map(|(b, _)| slab[[*b, sy, sx]]).collect();
            if values.iter().any(|v| v.is_nan()) {
                continue;
            }
            let norm = |i: usize| match channels[i].1 {
                Some((lo, hi)) => ((values[i] - lo) / (hi - lo)).clamp(0.0, 1.0),
                None => 0.0,
            };
            let rgb = if channels.len() == 3 {
                [
                    (norm(0) * 255.0) as u8,
                    (norm(1) * 255.0) as u8,
                    (norm(2) * 255.0) as u8,
                ]
            } else {
                viridis(norm(0))
            };
            px.copy_from_slice(&[rgb[0], rgb[1], rgb[2], 255]);
        }
    }
    encode_png(ow, oh, &rgba)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::export::table::tests::sample_cube;

    #[test]
    fn renders_a_decodable_png() {
        let cube = sample_cube(20, 30);
        let png = render(&cube).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (240, 160));
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
    }
}
