//! A picture of an area: one time step (the one with the most valid pixels), as RGB when the
//! cube has red/green/blue bands (or exactly three), else the first band through a viridis
//! colour map with a colour bar showing the value range; each channel stretched between its
//! 2nd and 98th percentile; invalid pixels light grey. A title says what, when and where.

use super::chart::{fit, label, Canvas};
use super::encode_png;
use super::font::text_width;
use crate::query::cube::Cube;
use ndarray::{ArrayView2, Axis};

const BLACK: [u8; 3] = [0, 0, 0];
const NO_DATA: [u8; 3] = [230, 230, 230];
/// Text scale.
const S: usize = 2;
/// Margins around the picture: title above, colour bar right.
const TOP: usize = 44;
const PAD: usize = 16;
const BAR: usize = 150;

fn viridis(t: f32) -> [u8; 3] {
    let [r, g, b, _] = super::colormap::viridis(t);
    [r, g, b]
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
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            cube.band_index(n).or_else(|| {
                cube.band_sources
                    .iter()
                    .position(|s| s.eq_ignore_ascii_case(n))
            })
        })
    };
    let red = find(&["red", "B04", "SR_B4"]);
    let green = find(&["green", "B03", "SR_B3"]);
    let blue = find(&["blue", "B02", "SR_B2"]);
    match (red, green, blue) {
        (Some(r), Some(g), Some(b)) => Some([r, g, b]),
        _ if cube.bands.len() == 3 => Some([0, 1, 2]),
        _ => None,
    }
}

pub(super) fn render(cube: &Cube, place: Option<&str>) -> Result<Vec<u8>, String> {
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
    // Magnify small areas, shrink large ones, to about 512 px.
    let side = h.max(w) as f64;
    let zoom = (512.0 / side).clamp(1.0 / 64.0, 16.0);
    let (ow, oh) = (
        ((w as f64 * zoom).round() as usize).max(1),
        ((h as f64 * zoom).round() as usize).max(1),
    );
    let channels: Vec<(usize, Option<(f32, f32)>)> = match rgb_bands(cube) {
        Some(idx) => idx
            .iter()
            .map(|&b| (b, stretch(slab.index_axis(Axis(0), b))))
            .collect(),
        None => vec![(0, stretch(slab.index_axis(Axis(0), 0)))],
    };
    let rgb_mode = channels.len() == 3;
    let date = cube.times[step].format("%Y-%m-%d").to_string();
    let what = if rgb_mode {
        let names: Vec<&str> = channels
            .iter()
            .map(|(b, _)| cube.bands[*b].as_str())
            .collect();
        format!("RGB {}", names.join("/"))
    } else {
        cube.bands[0].clone()
    };
    let title = match place {
        Some(p) => format!("{what}, {date}, {p}"),
        None => format!("{what}, {date}"),
    };
    // Wide enough for the title (up to 1000 px), the picture and the colour bar.
    let content = ow.max(360).max((text_width(&title, S) + PAD).min(1000));
    let width = PAD + content + if rgb_mode { PAD } else { BAR };
    let height = TOP + oh.max(120) + PAD * 3;
    let mut c = Canvas::new(width, height);
    c.text(&fit(&title, (width - 2 * PAD) / (6 * S)), PAD, 14, S, BLACK);
    for y in 0..oh {
        for x in 0..ow {
            let (sy, sx) = (
                ((y as f64 / zoom) as usize).min(h - 1),
                ((x as f64 / zoom) as usize).min(w - 1),
            );
            let values: Vec<f32> = channels.iter().map(|(b, _)| slab[[*b, sy, sx]]).collect();
            let color = if values.iter().any(|v| v.is_nan()) {
                NO_DATA
            } else {
                let norm = |i: usize| match channels[i].1 {
                    Some((lo, hi)) => ((values[i] - lo) / (hi - lo)).clamp(0.0, 1.0),
                    None => 0.0,
                };
                if rgb_mode {
                    [
                        (norm(0) * 255.0) as u8,
                        (norm(1) * 255.0) as u8,
                        (norm(2) * 255.0) as u8,
                    ]
                } else {
                    viridis(norm(0))
                }
            };
            c.set(PAD + x, TOP + y, color);
        }
    }
    if !rgb_mode {
        // Colour bar: top = high end of the stretch, labels beside it.
        let (lo, hi) = channels[0].1.unwrap_or((0.0, 1.0));
        let (bx, bh) = (PAD + content + 16, oh.max(120));
        for y in 0..bh {
            let f = 1.0 - y as f32 / (bh - 1).max(1) as f32;
            c.rect(bx, TOP + y, 18, 1, viridis(f));
        }
        let units = cube.values.describe();
        for (v, y) in [(hi, TOP), (lo, TOP + bh.saturating_sub(14))] {
            let text = label(v as f64);
            c.text(&text, bx + 24, y, S, BLACK);
        }
        let short = fit(&units, (width - PAD) / (6 * S));
        let x = width.saturating_sub(PAD + text_width(&short, S));
        c.text(&short, x, TOP + bh.max(oh) + PAD, S, BLACK);
    } else {
        c.text("2-98% stretch per channel", PAD, TOP + oh + PAD, S, BLACK);
    }
    encode_png(width, height, &c.rgba)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::export::table::tests::sample_cube;

    #[test]
    fn renders_a_picture_with_a_colour_bar() {
        let cube = sample_cube(20, 30);
        let png = render(&cube, Some("a field")).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        // 30 x 20 px magnified 16x, the colour bar beside.
        assert_eq!(info.width as usize, PAD + 480 + BAR);
        assert_eq!(info.height as usize, TOP + 320 + 3 * PAD);
        let has = |c: [u8; 3]| buf.chunks_exact(4).any(|p| p[..3] == c);
        assert!(
            has(viridis(1.0)) && has(viridis(0.0)),
            "the bar spans the map"
        );
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
    }
}
