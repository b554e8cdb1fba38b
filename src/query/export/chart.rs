//! A time-series chart PNG: one line per band (the pixel value for a point query, the mean
//! of valid pixels for an area), with value and date labels and a legend.

use super::encode_png;
use super::font::{draw_text, ADVANCE};
use crate::query::cube::{Cube, Stats};
use ndarray::Axis;

const W: usize = 900;
const H: usize = 450;
const LEFT: usize = 90;
const RIGHT: usize = 20;
const TOP: usize = 40;
const BOTTOM: usize = 50;
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

struct Canvas {
    rgba: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Canvas {
            rgba: vec![255; W * H * 4],
        }
    }

    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < W && y < H {
            self.rgba[(y * W + x) * 4..][..3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
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

    fn text(&mut self, s: &str, x: usize, y: usize, c: [u8; 3]) {
        let mut pts = Vec::new();
        draw_text(s, x, y, 1, |px, py| pts.push((px, py)));
        for (px, py) in pts {
            self.set(px, py, c);
        }
    }
}

fn label(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

pub(super) fn render(cube: &Cube) -> Result<Vec<u8>, String> {
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
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let t0 = cube.times[0].timestamp() as f64;
    let t1 = cube.times[t - 1].timestamp() as f64;
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let px = |ti: usize| -> i64 {
        let f = if t1 > t0 {
            (cube.times[ti].timestamp() as f64 - t0) / (t1 - t0)
        } else {
            0.5
        };
        (LEFT as f64 + f * pw).round() as i64
    };
    let py = |v: f64| -> i64 { (TOP as f64 + (hi - v) / (hi - lo) * ph).round() as i64 };

    let mut c = Canvas::new();
    let grey = [220, 220, 220];
    let black = [0, 0, 0];
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let y = py(v) as usize;
        c.rect(LEFT, y, W - LEFT - RIGHT, 1, grey);
        let text = label(v);
        c.text(
            &text,
            LEFT.saturating_sub(8 + text.len() * ADVANCE),
            y.saturating_sub(3),
            black,
        );
    }
    c.rect(LEFT, TOP, 1, H - TOP - BOTTOM, black);
    c.rect(LEFT, H - BOTTOM, W - LEFT - RIGHT, 1, black);
    let mut ticks = vec![0, t / 2, t - 1];
    ticks.dedup();
    for ti in ticks {
        let x = px(ti) as usize;
        c.rect(x, H - BOTTOM, 1, 6, black);
        let d = cube.times[ti].format("%Y-%m-%d").to_string();
        c.text(
            &d,
            x.saturating_sub(d.len() * ADVANCE / 2),
            H - BOTTOM + 12,
            black,
        );
    }
    for (bi, values) in series.iter().enumerate() {
        let color = PALETTE[bi % PALETTE.len()];
        let mut prev: Option<(i64, i64)> = None;
        for (ti, v) in values.iter().enumerate() {
            if !v.is_finite() {
                prev = None;
                continue;
            }
            let p = (px(ti), py(*v));
            if let Some(q) = prev {
                c.line(q, p, color);
            }
            c.rect(
                (p.0 - 3).max(0) as usize,
                (p.1 - 3).max(0) as usize,
                7,
                7,
                color,
            );
            prev = Some(p);
        }
        let ly = 10 + bi * 12;
        c.rect(LEFT + 10, ly, 10, 7, color);
        c.text(&cube.bands[bi], LEFT + 26, ly, black);
    }
    encode_png(W, H, &c.rgba)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::export::table::tests::sample_cube;

    #[test]
    fn draws_a_chart_with_lines_in_band_colours() {
        let cube = sample_cube(1, 1);
        let png = render(&cube).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        let has = |c: [u8; 3]| buf.chunks_exact(4).any(|p| p[..3] == c);
        assert!(has(PALETTE[0]) && has(PALETTE[1]));
        let mut empty = sample_cube(1, 1);
        empty.data.fill(f32::NAN);
        assert!(render(&empty).unwrap_err().contains("no valid"));
    }
}
