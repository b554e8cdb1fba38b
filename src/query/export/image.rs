//! A picture of an area: one time step (the one with the most valid pixels), as RGB when the
//! cube has red/green/blue bands (or exactly three), else the first band through a viridis
//! colour map with a colour bar showing the value range; each channel stretched between its
//! 2nd and 98th percentile; invalid pixels light grey. A title says what, when (the date, or
//! a composite's period) and where; a caption says what the values are.

use super::chart::{label, wrap, Canvas};
use super::encode_png;
use crate::query::composite::Reducer;
use crate::query::cube::Cube;
use ndarray::{ArrayView2, Axis};

const BLACK: [u8; 3] = [0, 0, 0];
const NO_DATA: [u8; 3] = [230, 230, 230];
/// Text scale.
const S: usize = 2;
/// Margins around the picture: title above, colour bar right, caption below.
const PAD: usize = 16;
const BAR: usize = 150;
/// Height of a line of text at scale `S`.
const LINE: usize = 7 * S + 8;

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

/// What a reducer keeps, in words.
fn reduced_as(reducer: Reducer) -> &'static str {
    match reducer {
        Reducer::Median => "median",
        Reducer::Mean => "mean",
        Reducer::Min => "minimum",
        Reducer::Max => "maximum",
        Reducer::Count => "count of valid values",
        Reducer::First => "first valid value",
        Reducer::Last => "last valid value",
    }
}

/// The title of the picture of `step`: what, when (its date, or the composite's period and
/// how many scenes it reduced) and where.
fn title(cube: &Cube, step: usize, what: &str, place: Option<&str>) -> String {
    let when = cube.values.step_span(cube.times[step]);
    let scenes = cube.scenes.get(step).map_or(0, Vec::len);
    let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let mut title = match cube.values.reduced {
        Some((reducer, _)) => format!(
            "{what}: {} of {}, {when}",
            reduced_as(reducer),
            plural(scenes, "scene")
        ),
        None if cube.times.len() > 1 => format!(
            "{what}, {when} (of {}, the one with the most valid pixels)",
            plural(cube.times.len(), "date")
        ),
        None => format!("{what}, {when}"),
    };
    if let Some(p) = place {
        title = format!("{title}, {p}");
    }
    title
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
    let what = if rgb_mode {
        let names: Vec<&str> = channels
            .iter()
            .map(|(b, _)| cube.bands[*b].as_str())
            .collect();
        format!("RGB {}", names.join("/"))
    } else {
        cube.bands[0].clone()
    };
    let content = ow.max(360);
    let width = PAD + content + if rgb_mode { PAD } else { BAR };
    let chars = (width - 2 * PAD) / (6 * S);
    let title = wrap(&title(cube, step, &what, place), chars, 3);
    let mut caption = cube.values.describe();
    caption.push_str(if rgb_mode {
        "; each channel stretched from its 2nd to its 98th percentile"
    } else {
        "; colours from the 2nd to the 98th percentile"
    });
    let caption = wrap(&caption, chars, 3);
    let top = 14 + title.len() * LINE + 8;
    let bh = oh.max(120);
    let height = top + bh + PAD + caption.len() * LINE + PAD;
    let mut c = Canvas::new(width, height);
    for (i, line) in title.iter().enumerate() {
        c.text(line, PAD, 14 + i * LINE, S, BLACK);
    }
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
            c.set(PAD + x, top + y, color);
        }
    }
    if !rgb_mode {
        // Colour bar: top = high end of the stretch, labels beside it.
        let (lo, hi) = channels[0].1.unwrap_or((0.0, 1.0));
        let bx = PAD + content + 16;
        for y in 0..bh {
            let f = 1.0 - y as f32 / (bh - 1).max(1) as f32;
            c.rect(bx, top + y, 18, 1, viridis(f));
        }
        for (v, y) in [(hi, top), (lo, top + bh.saturating_sub(14))] {
            c.text(&label(v as f64), bx + 24, y, S, BLACK);
        }
    }
    for (i, line) in caption.iter().enumerate() {
        c.text(line, PAD, top + bh + PAD + i * LINE, S, BLACK);
    }
    encode_png(width, height, &c.rgba)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::export::table::tests::sample_cube;

    fn decode(png: Vec<u8>) -> (usize, usize, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width as usize, info.height as usize, buf)
    }

    #[test]
    fn renders_a_picture_with_a_colour_bar() {
        let cube = sample_cube(20, 30);
        let (width, height, buf) = decode(render(&cube, Some("a field")).unwrap());
        // 30 x 20 px magnified 16x, the colour bar beside; two lines of title above, two of
        // caption below.
        assert_eq!(width, PAD + 480 + BAR);
        assert_eq!(height, 14 + 2 * LINE + 8 + 320 + PAD + 2 * LINE + PAD);
        let has = |c: [u8; 3]| buf.chunks_exact(4).any(|p| p[..3] == c);
        assert!(
            has(viridis(1.0)) && has(viridis(0.0)),
            "the bar spans the map"
        );
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        // Nothing is drawn in the outermost columns: words wrap inside.
        let dark_in_column = |x: usize| (0..height).any(|y| buf[(y * width + x) * 4] < 128);
        assert!(!dark_in_column(width - 1) && !dark_in_column(0));
    }

    #[test]
    fn titles_name_the_date_or_the_composite_and_its_period() {
        let t = |s| crate::time::parse_datetime(s).unwrap();
        let cube = sample_cube(4, 4);
        assert_eq!(
            title(&cube, 2, "red", Some("a field")),
            "red, 2023-03-18 (of 3 dates, the one with the most valid pixels), a field"
        );
        // A median over the whole range: one step, the span of its observations.
        let mut median = sample_cube(4, 4);
        median.data = std::mem::take(&mut median.data).slice_move(ndarray::s![0..1, .., .., ..]);
        median.times.truncate(1);
        median.scenes = vec![vec!["s1".into(), "s2".into(), "s3".into()]];
        median.values.expression = Some("ndvi".into());
        median.values.reduced = Some((Reducer::Median, crate::query::Period::All));
        median.values.composite = Some("median over the time range".into());
        median.values.observed = Some((t("2023-01-07T02:00:00Z"), t("2023-03-18T02:00:00Z")));
        assert_eq!(
            title(&median, 0, "ndvi", None),
            "ndvi: median of 3 scenes, 2023-01-07 to 2023-03-18"
        );
        median.values.reduced = Some((Reducer::Max, crate::query::Period::Month));
        assert_eq!(
            title(&median, 0, "ndvi", None),
            "ndvi: maximum of 3 scenes, 2023-01"
        );
        // Long words wrap below the picture instead of running off it.
        median.values.products = vec!["sentinel2_l2a".into(), "landsat8_c2l2".into()];
        let (width, height, buf) = decode(render(&median, Some("box 1,2,3,4")).unwrap());
        let dark_in_column = |x: usize| (0..height).any(|y| buf[(y * width + x) * 4] < 128);
        assert!(!dark_in_column(width - 1) && !dark_in_column(0));
    }
}
