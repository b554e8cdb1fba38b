//! A time-series chart PNG: one line per band (the pixel value for a point, the mean of the
//! valid pixels for an area), with a title saying what and where, labelled axes (values and
//! their kind; dates in UTC), tick labels kept inside the picture, and a legend: bands by
//! colour and, when the steps come from several products, products by marker shape.

use super::encode_png;
use super::font::{draw_text, draw_text_up, text_width};
use crate::query::cube::{Cube, Stats};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use ndarray::Axis;

const W: usize = 1000;
/// Text scale: 5x7 glyphs drawn 2x.
const S: usize = 2;
/// The narrowest legend column.
const RIGHT: usize = 190;
const BOTTOM: usize = 80;
const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];
const BLACK: [u8; 3] = [0, 0, 0];
const GREY: [u8; 3] = [225, 225, 225];
const DARK_GREY: [u8; 3] = [90, 90, 90];
/// Marker shapes, one per product of a multi-product series.
const MARKERS: [Marker; 4] = [Marker::Square, Marker::Diamond, Marker::Ring, Marker::Cross];

/// The shape drawn on each value of a series.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Marker {
    Square,
    Diamond,
    Ring,
    Cross,
}
pub(super) struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize) -> Self {
        Canvas {
            width,
            height,
            rgba: vec![255; width * height * 4],
        }
    }

    pub fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            self.rgba[(y * self.width + x) * 4..][..3].copy_from_slice(&c);
        }
    }

    pub fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }

    /// A 9-pixel marker centred on `(x, y)`.
    fn marker(&mut self, (x, y): (i64, i64), shape: Marker, c: [u8; 3]) {
        for dy in -4i64..=4 {
            for dx in -4i64..=4 {
                let on = match shape {
                    Marker::Square => dx.abs() <= 3 && dy.abs() <= 3,
                    Marker::Diamond => dx.abs() + dy.abs() <= 4,
                    Marker::Ring => (9..=20).contains(&(dx * dx + dy * dy)),
                    Marker::Cross => dx.abs() == dy.abs() || dx.abs() + 1 == dy.abs(),
                };
                let (px, py) = (x + dx, y + dy);
                if on && px >= 0 && py >= 0 {
                    self.set(px as usize, py as usize, c);
                }
            }
        }
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            if x >= 0 && y >= 0 {
                self.rect(x as usize, y as usize, 2, 2, c);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text with its left edge at `x` (clamped so the whole text stays in the picture).
    pub fn text(&mut self, s: &str, x: usize, y: usize, scale: usize, c: [u8; 3]) {
        let x = x.min(self.width.saturating_sub(text_width(s, scale)));
        let mut pts = Vec::new();
        draw_text(s, x, y, scale, |px, py| pts.push((px, py)));
        for (px, py) in pts {
            self.set(px, py, c);
        }
    }

    /// Text centred on `cx` (kept inside the picture).
    pub fn text_centred(&mut self, s: &str, cx: usize, y: usize, scale: usize, c: [u8; 3]) {
        self.text(s, cx.saturating_sub(text_width(s, scale) / 2), y, scale, c);
    }

    /// Text reading upwards, centred on `cy`.
    fn text_up(&mut self, s: &str, x: usize, cy: usize, scale: usize, c: [u8; 3]) {
        let y0 = (cy + text_width(s, scale) / 2).min(self.height - 1);
        let mut pts = Vec::new();
        draw_text_up(s, x, y0, scale, |px, py| pts.push((px, py)));
        for (px, py) in pts {
            self.set(px, py, c);
        }
    }
}

/// Shortens `s` to at most `max` characters, with an ellipsis.
pub(super) fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max.saturating_sub(3)).collect();
        format!("{head}...")
    }
}

/// Breaks `s` into lines of at most `max` characters at spaces (words longer than a line
/// are cut), at most `lines` of them; text beyond the last line ends it with an ellipsis.
pub(super) fn wrap(s: &str, max: usize, lines: usize) -> Vec<String> {
    let max = max.max(4);
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        let mut word = word.to_string();
        loop {
            let sep = usize::from(!line.is_empty());
            if line.chars().count() + sep + word.chars().count() <= max {
                if sep == 1 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a line: cut it.
            let head: String = word.chars().take(max).collect();
            word = word.chars().skip(max).collect();
            out.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() {
        out.push(line);
    }
    if out.len() > lines.max(1) {
        // Greedy lines: what is left is longer than a line, so `fit` ends it with "...".
        let rest = out.split_off(lines.max(1) - 1).join(" ");
        out.push(fit(&rest, max));
    }
    out
}

/// A value label: integers plainly, small and large numbers in exponent form.
pub(super) fn label(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// "Nice" tick values covering `lo..hi`: steps of 1, 2 or 5 times a power of ten.
pub(super) fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut v = first;
    while v <= hi + step * 1e-9 && out.len() < 50 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

/// Date ticks across `t0..t1`: month starts (every 1, 2, 3, 6 or 12 months) or days.
fn date_ticks(t0: DateTime<Utc>, t1: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let days = (t1 - t0).num_days();
    if days < 62 {
        let step = (days / 6).max(1);
        let start = Utc
            .with_ymd_and_hms(t0.year(), t0.month(), t0.day(), 0, 0, 0)
            .single()
            .unwrap_or(t0);
        return (0..=8)
            .map(|k| start + chrono::Duration::days(k * step + 1))
            .filter(|t| *t >= t0 && *t <= t1)
            .collect();
    }
    let months = days / 30;
    let step = [1, 2, 3, 6, 12, 24, 60]
        .into_iter()
        .find(|s| months / s <= 7)
        .unwrap_or(120);
    let mut out = Vec::new();
    let (mut y, mut m) = (t0.year(), t0.month() as i64);
    loop {
        m += 1;
        if m > 12 {
            m = 1;
            y += 1;
        }
        let Some(t) = Utc.with_ymd_and_hms(y, m as u32, 1, 0, 0, 0).single() else {
            break;
        };
        if t > t1 {
            break;
        }
        if (y as i64 * 12 + m - 1) % step == 0 {
            out.push(t);
        }
    }
    out
}

/// The words of a chart: title, subtitle, value-axis title and legend entries.
#[derive(Debug, Clone, PartialEq)]
struct Labels {
    /// What is drawn and where (one or two lines).
    title: Vec<String>,
    /// Where the values come from (products), when known.
    subtitle: Vec<String>,
    /// The quantity on the value axis (one or two lines, drawn upwards).
    axis: Vec<String>,
    /// Legend entries: bands (fitted), then products, one marker shape each (when there
    /// are several).
    bands: Vec<String>,
    products: Vec<String>,
}

/// Longest legend entry, in characters.
const LEGEND_CHARS: usize = 20;
/// Height of a line of text at scale `S`.
const LINE: usize = 7 * S + 8;
/// Height of the plot area.
const PLOT_H: usize = 420;

impl Labels {
    fn of(cube: &Cube, place: Option<&str>) -> Labels {
        let chars = (W - 20) / (6 * S);
        let mut what = cube.bands.join(", ");
        if let Some(c) = &cube.values.composite {
            what = format!("{what}, {c}");
        }
        let title = match (cube.is_point(), place) {
            (true, Some(p)) => format!("{what} at {p}"),
            (true, None) => what,
            (false, Some(p)) => format!("{what}, mean of valid pixels in {p}"),
            (false, None) => format!("{what}, mean of valid pixels"),
        };
        // Products by first appearance along time (the markers' order), then any other the
        // query named.
        let mut products: Vec<String> = Vec::new();
        for p in cube.products.iter().chain(&cube.values.products) {
            if !products.contains(p) {
                products.push(p.clone());
            }
        }
        let subtitle = if products.is_empty() {
            Vec::new()
        } else {
            wrap(&format!("from {}", products.join(" + ")), chars, 2)
        };
        Labels {
            title: wrap(&title, chars, 2),
            subtitle,
            axis: wrap(&cube.values.quantity(), PLOT_H / (6 * S), 2),
            bands: cube.bands.iter().map(|b| fit(b, LEGEND_CHARS)).collect(),
            products: if products.len() > 1 {
                products
            } else {
                Vec::new()
            },
        }
    }

    /// Width of the legend column: its longest entry and the marker or swatch before it.
    fn legend_width(&self) -> usize {
        let band = self.bands.iter().map(|b| 26 + text_width(b, S));
        let product = self
            .products
            .iter()
            .map(|p| 14 + text_width(&fit(p, LEGEND_CHARS), S));
        band.chain(product)
            .chain([text_width("legend", S)])
            .max()
            .unwrap_or(0)
    }
}

pub(super) fn render(cube: &Cube, place: Option<&str>) -> Result<Vec<u8>, String> {
    let (t, b, _, _) = cube.dim();
    if t == 0 || b == 0 {
        return Err("the query returned no time steps to chart".into());
    }
    // One series per band: the value (point) or the mean of valid pixels (area).
    let series: Vec<Vec<f64>> = (0..b)
        .map(|bi| {
            (0..t)
                .map(|ti| Stats::of(cube.data.index_axis(Axis(0), ti).index_axis(Axis(0), bi)).mean)
                .collect()
        })
        .collect();
    let valid: Vec<f64> = series
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if valid.is_empty() {
        return Err("no valid value to chart".into());
    }
    let (mut lo, mut hi) = valid
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if hi - lo < 1e-12 {
        lo -= 1.0;
        hi += 1.0;
    }
    let pad = (hi - lo) * 0.06;
    let (lo, hi) = (lo - pad, hi + pad);
    let ticks_v = nice_ticks(lo, hi, 6);
    let labels = Labels::of(cube, place);

    // Layout: the margins grow with the words they hold.
    let top = 14 + (labels.title.len() + labels.subtitle.len()) * LINE + 16;
    let height = top + PLOT_H + BOTTOM;
    let widest_tick = ticks_v
        .iter()
        .map(|v| text_width(&label(*v), S))
        .max()
        .unwrap_or(0);
    let left = 8 + labels.axis.len() * LINE + 8 + widest_tick + 10;
    let right = (labels.legend_width() + 40).max(RIGHT);
    let plot_w = W - left - right;

    let (first, last) = (cube.times[0], cube.times[t - 1]);
    // A little room on both sides of the first and last dates.
    let span = (last - first).num_seconds().max(86_400) as f64;
    let t0 = first.timestamp() as f64 - span * 0.03;
    let t1 = last.timestamp() as f64 + span * 0.03;
    let (pw, ph) = (plot_w as f64, PLOT_H as f64);
    let px = |time: DateTime<Utc>| -> i64 {
        let f = (time.timestamp() as f64 - t0) / (t1 - t0);
        (left as f64 + f * pw).round() as i64
    };
    let py = |v: f64| -> i64 { (top as f64 + (hi - v) / (hi - lo) * ph).round() as i64 };

    let mut c = Canvas::new(W, height);
    // Title (what and where), subtitle (from which products).
    for (i, line) in labels.title.iter().enumerate() {
        c.text_centred(line, W / 2, 14 + i * LINE, S, BLACK);
    }
    for (i, line) in labels.subtitle.iter().enumerate() {
        let y = 14 + (labels.title.len() + i) * LINE;
        c.text_centred(line, W / 2, y, S, DARK_GREY);
    }
    // Value axis: nice ticks, grid lines, labels right-aligned left of the axis.
    for v in ticks_v {
        let y = py(v) as usize;
        c.rect(left, y, plot_w, 1, GREY);
        c.rect(left - 6, y, 6, 1, BLACK);
        let text = label(v);
        c.text(
            &text,
            left.saturating_sub(10 + text_width(&text, S)),
            y.saturating_sub(7),
            S,
            BLACK,
        );
    }
    for (i, line) in labels.axis.iter().enumerate() {
        c.text_up(line, 8 + i * LINE, top + PLOT_H / 2, S, BLACK);
    }
    // Time axis: date ticks, labels centred under them but kept inside the picture.
    c.rect(left, top, 1, PLOT_H, BLACK);
    c.rect(left, top + PLOT_H, plot_w, 1, BLACK);
    let mut ticks = date_ticks(first, last);
    if ticks.is_empty() {
        ticks = vec![first, last];
        ticks.dedup();
    }
    let mut next_free = 0usize;
    for tick in ticks {
        let x = px(tick) as usize;
        c.rect(x, top + PLOT_H, 1, 6, BLACK);
        let d = tick.format("%Y-%m-%d").to_string();
        let from = x.saturating_sub(text_width(&d, S) / 2);
        if from >= next_free {
            c.text(&d, from, top + PLOT_H + 12, S, BLACK);
            next_free = from + text_width(&d, S) + 12;
        }
    }
    c.text_centred("date (UTC)", left + plot_w / 2, top + PLOT_H + 44, S, BLACK);
    // Several products: one marker shape per product (in order of first appearance).
    let marker_of: Vec<Marker> = (0..t)
        .map(|ti| {
            let k = cube
                .products
                .get(ti)
                .and_then(|p| labels.products.iter().position(|q| q == p))
                .unwrap_or(0);
            MARKERS[k % MARKERS.len()]
        })
        .collect();
    // Series: lines between valid values, a marker on each.
    for (bi, values) in series.iter().enumerate() {
        let color = PALETTE[bi % PALETTE.len()];
        let mut prev: Option<(i64, i64)> = None;
        for (ti, v) in values.iter().enumerate() {
            if !v.is_finite() {
                prev = None;
                continue;
            }
            let p = (px(cube.times[ti]), py(*v));
            if let Some(q) = prev {
                c.line(q, p, color);
            }
            c.marker(p, marker_of[ti], color);
            prev = Some(p);
        }
    }
    // Legend, right of the plot.
    let lx = W - right + 20;
    c.text("legend", lx, top, S, BLACK);
    let shown = labels.bands.len().min(16);
    for (bi, name) in labels.bands.iter().enumerate().take(shown) {
        let ly = top + 28 + bi * 24;
        let color = PALETTE[bi % PALETTE.len()];
        c.rect(lx, ly + 3, 18, 8, color);
        c.text(name, lx + 26, ly, S, BLACK);
    }
    for (k, product) in labels.products.iter().enumerate().take(8) {
        let ly = top + 40 + (shown + k) * 24;
        c.marker(
            (lx as i64 + 4, ly as i64 + 7),
            MARKERS[k % MARKERS.len()],
            BLACK,
        );
        c.text(&fit(product, LEGEND_CHARS), lx + 14, ly, S, BLACK);
    }
    encode_png(W, height, &c.rgba)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::export::table::tests::sample_cube;

    fn decode(png: Vec<u8>) -> (usize, usize, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width as usize, info.height as usize, buf)
    }

    #[test]
    fn draws_a_chart_with_lines_in_band_colours() {
        let cube = sample_cube(1, 1);
        let (w, h, buf) = decode(render(&cube, Some("lon 127.9, lat 36.4")).unwrap());
        assert_eq!(w, W);
        assert_eq!(
            h,
            14 + 2 * LINE + 16 + PLOT_H + BOTTOM,
            "a title and a subtitle"
        );
        let has = |c: [u8; 3]| buf.chunks_exact(4).any(|p| p[..3] == c);
        assert!(has(PALETTE[0]) && has(PALETTE[1]));
        // Nothing is drawn in the outermost columns: labels stay inside.
        let dark_in_column = |x: usize| (0..h).any(|y| buf[(y * w + x) * 4] < 128);
        assert!(!dark_in_column(w - 1) && !dark_in_column(0));
        let mut empty = sample_cube(1, 1);
        empty.data.fill(f32::NAN);
        assert!(render(&empty, None).unwrap_err().contains("no valid"));
    }

    #[test]
    fn several_products_get_their_own_markers() {
        let one = sample_cube(1, 1);
        let mut two = one.clone();
        two.products = vec![
            "sentinel2_l2a".into(),
            "landsat8_c2l2".into(),
            "sentinel2_l2a".into(),
        ];
        let (w, _, a) = decode(render(&one, None).unwrap());
        let (_, h, b) = decode(render(&two, None).unwrap());
        let count = |buf: &[u8], c: [u8; 3]| buf.chunks_exact(4).filter(|p| p[..3] == c).count();
        // The second step is a diamond instead of a square (fewer coloured pixels), and the
        // legend draws one black marker per product.
        assert!(count(&b, PALETTE[0]) < count(&a, PALETTE[0]));
        let legend_black = |cube: &Cube, buf: &[u8]| {
            let right = (Labels::of(cube, None).legend_width() + 40).max(RIGHT);
            (0..h)
                .flat_map(|y| (W - right + 15..W - right + 30).map(move |x| (x, y)))
                .filter(|&(x, y)| buf[(y * w + x) * 4..][..3] == BLACK)
                .count()
        };
        assert!(legend_black(&two, &b) > legend_black(&one, &a) + 20);
    }

    #[test]
    fn labels_say_what_is_drawn_and_wrap_instead_of_cutting() {
        let mut cube = sample_cube(1, 1);
        cube.bands = vec!["ndvi".into()];
        cube.data = std::mem::take(&mut cube.data).slice_move(ndarray::s![.., 0..1, .., ..]);
        cube.products = vec![
            "sentinel2_l2a".into(),
            "landsat8_c2l2".into(),
            "sentinel2_l2a".into(),
        ];
        cube.values.expression = Some("ndvi".into());
        cube.values.products = vec!["sentinel2_l2a".into(), "landsat8_c2l2".into()];
        cube.values.composite = Some("median per month".into());
        let labels = Labels::of(&cube, Some("lon 126.99633, lat 37.55018"));
        assert_eq!(
            labels.title,
            ["ndvi, median per month at lon 126.99633, lat 37.55018"]
        );
        assert_eq!(labels.subtitle, ["from sentinel2_l2a + landsat8_c2l2"]);
        assert_eq!(labels.axis, ["ndvi"]);
        assert_eq!(labels.products, ["sentinel2_l2a", "landsat8_c2l2"]);
        // Physical values: the axis title takes two lines rather than an ellipsis.
        cube.values.expression = None;
        cube.values.physical = true;
        let labels = Labels::of(&cube, Some("a-field-with-a-long-name.geojson"));
        assert_eq!(labels.axis.join(" "), cube.values.quantity());
        assert!(labels.axis.len() == 2, "{:?}", labels.axis);
        // A polygon's chart says it shows means.
        let area = sample_cube(2, 2);
        let title = Labels::of(&area, Some("field.geojson")).title.join(" ");
        assert_eq!(title, "red, nir, mean of valid pixels in field.geojson");
        render(&cube, Some("a-field-with-a-long-name.geojson")).unwrap();
    }

    #[test]
    fn wrap_breaks_at_spaces_and_ends_with_an_ellipsis() {
        assert_eq!(
            wrap("ndvi of a + b, median", 10, 3),
            ["ndvi of a", "+ b,", "median"]
        );
        assert_eq!(wrap("abcdefghijkl", 5, 3), ["abcde", "fghij", "kl"]);
        assert_eq!(wrap("one two three four", 9, 1), ["one tw..."]);
        assert_eq!(wrap("", 9, 2), Vec::<String>::new());
    }

    #[test]
    fn ticks_are_round_numbers_and_dates() {
        let ticks = nice_ticks(0.03, 0.91, 5);
        let want = [0.2, 0.4, 0.6, 0.8];
        assert_eq!(ticks.len(), 4);
        assert!(ticks.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-9));
        assert_eq!(nice_ticks(-1.0, 1.0, 4), [-1.0, -0.5, 0.0, 0.5, 1.0]);
        let t = |s| crate::time::parse_datetime(s).unwrap();
        let ticks = date_ticks(t("2023-01-07"), t("2023-12-18"));
        assert_eq!(
            ticks.first().copied(),
            Some(t("2023-03-01")),
            "every other month"
        );
        assert!(ticks.len() >= 3 && ticks.len() <= 7, "{ticks:?}");
        assert_eq!(label(1500.0), "1500");
        assert_eq!(label(0.25), "0.250");
    }
}
