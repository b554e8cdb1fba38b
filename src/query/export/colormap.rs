//! Colour maps: values to RGBA for tiles and pictures.
//!
//! A [`Colormap`] is a named ramp (`viridis`, `magma`, `rdylgn`...; `_r` reverses it) applied
//! to values stretched between a low and a high value, or one given as JSON: a list of stops
//! `[[value, colour], ...]` interpolated in data units, or an object of classes
//! `{"4": colour, "9": colour}` matched on integer values (other values are transparent).
//! Colours are `"#rrggbb"`, `"#rrggbbaa"`, `[r, g, b]` or `[r, g, b, a]`. Invalid pixels (NaN)
//! are transparent.
//!
//! ```
//! use pixelquery::query::export::colormap::Colormap;
//! let viridis = Colormap::parse("viridis").unwrap();
//! let mut rgba = vec![0u8; 12];
//! viridis.colorize(&[0.0, 1.0, f32::NAN], (0.0, 1.0), &mut rgba);
//! assert_eq!(&rgba[..4], &[68, 1, 84, 255]);
//! assert_eq!(&rgba[4..8], &[253, 231, 37, 255]);
//! assert_eq!(rgba[11], 0, "NaN is transparent");
//! let classes = Colormap::parse(r##"{"4": "#00ff00", "9": [255, 255, 255, 128]}"##).unwrap();
//! classes.colorize(&[4.0, 9.0, 5.0], (0.0, 1.0), &mut rgba);
//! assert_eq!(rgba, [0, 255, 0, 255, 255, 255, 255, 128, 0, 0, 0, 0]);
//! ```

/// 17 evenly spaced stops of a ramp (sampled from the published colour maps: the viridis
/// family by van der Walt and Smith, CC0; the ColorBrewer ramps by Cynthia Brewer, Apache 2.0).
type Stops = [[u8; 3]; 17];

const VIRIDIS: Stops = [
    [68, 1, 84],
    [72, 24, 106],
    [71, 45, 123],
    [66, 64, 134],
    [59, 82, 139],
    [51, 99, 141],
    [44, 114, 142],
    [38, 130, 142],
    [33, 145, 140],
    [31, 160, 136],
    [40, 174, 128],
    [63, 188, 115],
    [94, 201, 98],
    [132, 212, 75],
    [173, 220, 48],
    [216, 226, 25],
    [253, 231, 37],
];
const MAGMA: Stops = [
    [0, 0, 4],
    [10, 8, 34],
    [29, 17, 71],
    [54, 16, 107],
    [81, 18, 124],
    [106, 28, 129],
    [131, 38, 129],
    [156, 46, 127],
    [183, 55, 121],
    [208, 65, 111],
    [231, 82, 99],
    [245, 107, 92],
    [252, 137, 97],
    [254, 167, 114],
    [254, 196, 136],
    [253, 226, 163],
    [252, 253, 191],
];
const PLASMA: Stops = [
    [13, 8, 135],
    [49, 5, 151],
    [76, 2, 161],
    [102, 0, 167],
    [126, 3, 168],
    [149, 17, 161],
    [170, 35, 149],
    [188, 53, 135],
    [204, 71, 120],
    [218, 90, 106],
    [230, 108, 92],
    [240, 128, 78],
    [248, 149, 64],
    [253, 172, 51],
    [253, 197, 39],
    [248, 223, 37],
    [240, 249, 33],
];
const INFERNO: Stops = [
    [0, 0, 4],
    [11, 7, 36],
    [33, 12, 74],
    [61, 9, 101],
    [87, 16, 110],
    [113, 25, 110],
    [138, 34, 106],
    [163, 44, 97],
    [188, 55, 84],
    [210, 70, 68],
    [228, 90, 49],
    [241, 115, 29],
    [249, 142, 9],
    [252, 172, 17],
    [249, 203, 53],
    [242, 234, 105],
    [252, 255, 164],
];
const CIVIDIS: Stops = [
    [0, 34, 78],
    [0, 46, 106],
    [26, 56, 111],
    [50, 67, 109],
    [67, 78, 108],
    [83, 90, 109],
    [97, 101, 111],
    [111, 112, 115],
    [125, 124, 120],
    [140, 136, 120],
    [155, 148, 118],
    [171, 160, 114],
    [188, 174, 108],
    [205, 187, 99],
    [222, 201, 88],
    [240, 216, 70],
    [254, 232, 56],
];
const GRAY: Stops = [
    [0, 0, 0],
    [16, 16, 16],
    [32, 32, 32],
    [48, 48, 48],
    [64, 64, 64],
    [80, 80, 80],
    [96, 96, 96],
    [112, 112, 112],
    [128, 128, 128],
    [144, 144, 144],
    [160, 160, 160],
    [176, 176, 176],
    [192, 192, 192],
    [208, 208, 208],
    [224, 224, 224],
    [240, 240, 240],
    [255, 255, 255],
];
const RDYLGN: Stops = [
    [165, 0, 38],
    [196, 30, 39],
    [222, 64, 46],
    [241, 102, 64],
    [249, 142, 82],
    [253, 181, 103],
    [254, 212, 129],
    [254, 236, 159],
    [254, 255, 190],
    [230, 245, 157],
    [203, 233, 130],
    [171, 219, 109],
    [132, 202, 102],
    [90, 183, 96],
    [42, 160, 84],
    [15, 132, 70],
    [0, 104, 55],
];
const YLGN: Stops = [
    [255, 255, 229],
    [251, 253, 207],
    [247, 252, 185],
    [232, 246, 174],
    [217, 240, 163],
    [195, 230, 152],
    [172, 221, 142],
    [146, 209, 131],
    [119, 198, 121],
    [92, 184, 107],
    [64, 170, 92],
    [49, 151, 79],
    [34, 131, 67],
    [17, 117, 61],
    [0, 103, 55],
    [0, 85, 48],
    [0, 69, 41],
];
const RDBU: Stops = [
    [103, 0, 31],
    [150, 15, 39],
    [187, 42, 52],
    [210, 88, 73],
    [229, 131, 104],
    [245, 172, 139],
    [251, 206, 183],
    [251, 230, 218],
    [246, 247, 247],
    [222, 235, 242],
    [192, 220, 235],
    [152, 200, 224],
    [104, 171, 208],
    [62, 140, 191],
    [40, 112, 177],
    [21, 80, 141],
    [5, 48, 97],
];
const SPECTRAL: Stops = [
    [158, 1, 66],
    [193, 39, 74],
    [221, 74, 76],
    [240, 103, 68],
    [249, 142, 82],
    [253, 181, 103],
    [254, 212, 129],
    [254, 236, 159],
    [255, 255, 190],
    [239, 249, 166],
    [214, 238, 155],
    [177, 223, 163],
    [134, 207, 165],
    [94, 185, 169],
    [61, 149, 184],
    [68, 113, 178],
    [94, 79, 162],
];
const TERRAIN: Stops = [
    [51, 51, 153],
    [30, 94, 196],
    [8, 136, 238],
    [0, 172, 196],
    [1, 204, 102],
    [65, 217, 115],
    [129, 230, 128],
    [193, 243, 141],
    [254, 254, 152],
    [222, 213, 135],
    [190, 172, 118],
    [158, 131, 101],
    [129, 94, 86],
    [161, 135, 129],
    [193, 176, 172],
    [225, 217, 215],
    [255, 255, 255],
];
const BLUES: Stops = [
    [247, 251, 255],
    [234, 243, 251],
    [222, 235, 247],
    [210, 227, 243],
    [198, 219, 239],
    [178, 210, 232],
    [157, 202, 225],
    [132, 188, 219],
    [106, 174, 214],
    [86, 160, 206],
    [65, 145, 198],
    [49, 129, 189],
    [32, 112, 180],
    [20, 96, 168],
    [8, 80, 155],
    [8, 64, 130],
    [8, 48, 107],
];

/// The named ramps.
const NAMED: [(&str, &Stops); 12] = [
    ("viridis", &VIRIDIS),
    ("magma", &MAGMA),
    ("plasma", &PLASMA),
    ("inferno", &INFERNO),
    ("cividis", &CIVIDIS),
    ("gray", &GRAY),
    ("rdylgn", &RDYLGN),
    ("ylgn", &YLGN),
    ("rdbu", &RDBU),
    ("spectral", &SPECTRAL),
    ("terrain", &TERRAIN),
    ("blues", &BLUES),
];

/// Most stops or classes a JSON colour map may have.
pub const MAX_ENTRIES: usize = 256;

/// A colour map (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub enum Colormap {
    /// A named ramp over values stretched between low and high, as 256 colours.
    Ramp {
        /// Its name as given (lowercase).
        name: String,
        /// The 256 colours.
        lut: Vec<[u8; 4]>,
    },
    /// Stops in data units, sorted by value, interpolated between and clamped beyond.
    Stops(Vec<(f64, [u8; 4])>),
    /// Colours of integer classes; other values are transparent.
    Classes(Vec<(i64, [u8; 4])>),
}

impl Colormap {
    /// Names of the built-in ramps (each also reversed with `_r`).
    pub fn names() -> Vec<&'static str> {
        NAMED.iter().map(|(n, _)| *n).collect()
    }

    /// A built-in ramp by name (any case; `_r` reverses it).
    pub fn named(name: &str) -> Option<Colormap> {
        let lower = name.to_ascii_lowercase();
        let (base, reversed) = match lower.strip_suffix("_r") {
            Some(b) => (b, true),
            None => (lower.as_str(), false),
        };
        let stops = NAMED.iter().find(|(n, _)| *n == base)?.1;
        let lut = (0..256)
            .map(|i| {
                let t = i as f64 / 255.0;
                ramp(stops, if reversed { 1.0 - t } else { t })
            })
            .collect();
        Some(Colormap::Ramp { name: lower, lut })
    }

    /// A ramp name or a JSON colour map; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Colormap, String> {
        let t = text.trim();
        if !t.starts_with(['[', '{']) {
            return Colormap::named(t).ok_or_else(|| {
                format!(
                    "unknown colour map {t:?}: use {} (add _r to reverse), or JSON stops [[value, \"#rrggbb\"], ...] or classes {{\"value\": \"#rrggbb\"}}",
                    Colormap::names().join(", ")
                )
            });
        }
        let json: serde_json::Value =
            serde_json::from_str(t).map_err(|e| format!("the colour map is not JSON: {e}"))?;
        match json {
            serde_json::Value::Array(items) => {
                check_len(items.len())?;
                let mut stops = items
                    .iter()
                    .map(|item| {
                        let pair = item
                            .as_array()
                            .filter(|p| p.len() == 2)
                            .ok_or_else(|| format!("stop {item}: expected [value, colour]"))?;
                        let value = pair[0]
                            .as_f64()
                            .filter(|v| v.is_finite())
                            .ok_or_else(|| format!("stop {item}: the value is not a number"))?;
                        Ok((value, colour(&pair[1])?))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                stops.sort_by(|a, b| a.0.total_cmp(&b.0));
                Ok(Colormap::Stops(stops))
            }
            serde_json::Value::Object(map) => {
                check_len(map.len())?;
                let mut classes = map
                    .iter()
                    .map(|(k, v)| {
                        let value = k
                            .trim()
                            .parse::<i64>()
                            .map_err(|_| format!("class {k:?}: keys are integer values"))?;
                        Ok((value, colour(v)?))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                classes.sort_by_key(|c| c.0);
                Ok(Colormap::Classes(classes))
            }
            _ => Err("a JSON colour map is a list of stops or an object of classes".into()),
        }
    }

    /// True when values are stretched between a low and a high value (ramps); stops and
    /// classes are in data units.
    pub fn uses_rescale(&self) -> bool {
        matches!(self, Colormap::Ramp { .. })
    }

    /// The colour of one value (`(low, high)` stretches ramps); NaN is transparent.
    pub fn color(&self, v: f32, (low, high): (f64, f64)) -> [u8; 4] {
        if v.is_nan() {
            return [0; 4];
        }
        match self {
            Colormap::Ramp { lut, .. } => lut[stretch_index(v, low, high)],
            Colormap::Stops(stops) => {
                let v = v as f64;
                let Some(first) = stops.first() else {
                    return [0; 4];
                };
                if v <= first.0 {
                    return first.1;
                }
                for w in stops.windows(2) {
                    let ((a, ca), (b, cb)) = (w[0], w[1]);
                    if v <= b {
                        let f = if b > a { (v - a) / (b - a) } else { 1.0 };
                        return lerp(ca, cb, f);
                    }
                }
                stops[stops.len() - 1].1
            }
            Colormap::Classes(classes) => {
                let key = v.round() as i64;
                match classes.binary_search_by_key(&key, |c| c.0) {
                    Ok(i) if (v - v.round()).abs() < 1e-6 => classes[i].1,
                    _ => [0; 4],
                }
            }
        }
    }

    /// Colours `values` into `rgba` (4 bytes per value).
    pub fn colorize(&self, values: &[f32], rescale: (f64, f64), rgba: &mut [u8]) {
        for (v, px) in values.iter().zip(rgba.chunks_exact_mut(4)) {
            px.copy_from_slice(&self.color(*v, rescale));
        }
    }
}

/// Viridis at `t` in 0..=1 (clamped), opaque.
pub(super) fn viridis(t: f32) -> [u8; 4] {
    ramp(&VIRIDIS, t as f64)
}

/// Colours three bands as red, green and blue, each stretched between its own low and high
/// value; a pixel invalid in any band is transparent.
pub fn colorize_rgb(bands: [&[f32]; 3], rescale: [(f64, f64); 3], rgba: &mut [u8]) {
    for (i, px) in rgba.chunks_exact_mut(4).enumerate() {
        let v = [bands[0][i], bands[1][i], bands[2][i]];
        if v.iter().any(|x| x.is_nan()) {
            px.copy_from_slice(&[0; 4]);
            continue;
        }
        for c in 0..3 {
            px[c] = stretch_index(v[c], rescale[c].0, rescale[c].1) as u8;
        }
        px[3] = 255;
    }
}

/// A value stretched from `[low, high]` onto 0..=255.
fn stretch_index(v: f32, low: f64, high: f64) -> usize {
    let span = high - low;
    let t = if span != 0.0 {
        (v as f64 - low) / span
    } else {
        0.0
    };
    (t.clamp(0.0, 1.0) * 255.0).round() as usize
}

fn check_len(n: usize) -> Result<(), String> {
    if n == 0 || n > MAX_ENTRIES {
        return Err(format!(
            "a JSON colour map has 1 to {MAX_ENTRIES} entries, not {n}"
        ));
    }
    Ok(())
}

/// A colour from `"#rrggbb"`, `"#rrggbbaa"`, `[r, g, b]` or `[r, g, b, a]`.
fn colour(v: &serde_json::Value) -> Result<[u8; 4], String> {
    let bad = || format!("colour {v}: use \"#rrggbb\", \"#rrggbbaa\", [r, g, b] or [r, g, b, a]");
    match v {
        serde_json::Value::String(s) => {
            let hex = s.strip_prefix('#').ok_or_else(bad)?;
            if !(hex.len() == 6 || hex.len() == 8) || !hex.is_ascii() {
                return Err(bad());
            }
            let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
            Ok([
                byte(0)?,
                byte(2)?,
                byte(4)?,
                if hex.len() == 8 { byte(6)? } else { 255 },
            ])
        }
        serde_json::Value::Array(parts) if parts.len() == 3 || parts.len() == 4 => {
            let mut c = [255u8; 4];
            for (slot, p) in c.iter_mut().zip(parts) {
                *slot = p
                    .as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(bad)?;
            }
            Ok(c)
        }
        _ => Err(bad()),
    }
}

/// The ramp's colour at `t` in 0..=1, opaque.
fn ramp(stops: &Stops, t: f64) -> [u8; 4] {
    let x = t.clamp(0.0, 1.0) * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let [r, g, b] = stops[i];
    let [r2, g2, b2] = stops[i + 1];
    lerp([r, g, b, 255], [r2, g2, b2, 255], x - i as f64)
}

fn lerp(a: [u8; 4], b: [u8; 4], f: f64) -> [u8; 4] {
    let mut c = [0u8; 4];
    for k in 0..4 {
        c[k] = (a[k] as f64 + (b[k] as f64 - a[k] as f64) * f).round() as u8;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_hit_their_published_stops() {
        let v = Colormap::named("viridis").unwrap();
        let c = |x: f32| v.color(x, (0.0, 16.0));
        assert_eq!(c(0.0), [68, 1, 84, 255]);
        assert_eq!(c(8.0), [33, 145, 140, 255], "the middle stop");
        assert_eq!(c(16.0), [253, 231, 37, 255]);
        assert_eq!(c(-5.0), c(0.0), "clamped below");
        assert_eq!(c(99.0), c(16.0), "clamped above");
        let r = Colormap::named("VIRIDIS_r").unwrap();
        assert_eq!(r.color(0.0, (0.0, 1.0)), [253, 231, 37, 255]);
        for name in Colormap::names() {
            assert!(Colormap::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn json_stops_and_classes() {
        let s =
            Colormap::parse(r##"[[1, "#000000"], [-1, [255, 0, 0]], [0, "#00ff0080"]]"##).unwrap();
        assert_eq!(s.color(-2.0, (0.0, 0.0)), [255, 0, 0, 255]);
        assert_eq!(s.color(-0.5, (0.0, 0.0)), [128, 128, 0, 192]);
        assert_eq!(s.color(0.5, (0.0, 0.0)), [0, 128, 0, 192]);
        assert_eq!(s.color(3.0, (0.0, 0.0)), [0, 0, 0, 255]);
        let c = Colormap::parse(r#"{"9": [1, 2, 3], "4": [4, 5, 6, 7]}"#).unwrap();
        assert_eq!(c.color(4.0, (0.0, 0.0)), [4, 5, 6, 7]);
        assert_eq!(c.color(9.0, (0.0, 0.0)), [1, 2, 3, 255]);
        assert_eq!(c.color(9.5, (0.0, 0.0)), [0; 4]);
        assert!(!c.uses_rescale());
    }

    #[test]
    fn bad_maps_say_why() {
        for (text, want) in [
            ("jet", "unknown colour map"),
            ("[[0, \"red\"]]", "colour \"red\""),
            ("{\"a\": [0, 0, 0]}", "integer values"),
            ("[[0, [300, 0, 0]]]", "colour [300,0,0]"),
            ("[]", "1 to 256 entries"),
            ("[1, 2", "not JSON"),
            ("42", "unknown colour map"),
        ] {
            let e = Colormap::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn rgb_stretches_each_band_and_hides_invalid_pixels() {
        let mut rgba = vec![0u8; 8];
        colorize_rgb(
            [&[0.0, 1.0], &[5.0, 1.0], &[10.0, f32::NAN]],
            [(0.0, 10.0), (0.0, 10.0), (0.0, 10.0)],
            &mut rgba,
        );
        assert_eq!(rgba, [0, 128, 255, 255, 0, 0, 0, 0]);
    }
}
