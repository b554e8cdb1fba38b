//! Long-format tables of a cube: one row per (time, band) with the pixel value (point
//! queries) or statistics of the valid pixels (area queries); as CSV, JSON or a terminal table.

use crate::query::cube::{Cube, Stats};
use serde::Serialize;
use std::fmt::Write;

/// One row of the long format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Time (RFC 3339, UTC).
    pub time: String,
    /// Scene id(s), `+`-joined when mosaicked.
    pub scene: String,
    /// Product of the time step (`+`-joined when mosaicked across products).
    pub product: String,
    /// Band or expression name.
    pub band: String,
    /// Map x of the pixel centre (point queries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<f64>,
    /// Map y of the pixel centre (point queries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<f64>,
    /// Pixel value, `None` when invalid (point queries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Statistics of the valid pixels (area queries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
}

/// Rows of per (time, band) statistics.
pub(super) fn stats_rows(
    times: &[chrono::DateTime<chrono::Utc>],
    scenes: &[Vec<String>],
    products: &[String],
    bands: &[String],
    stats: &[Vec<Stats>],
) -> Vec<Row> {
    let mut out = Vec::with_capacity(times.len() * bands.len());
    for (ti, t) in times.iter().enumerate() {
        for (bi, band) in bands.iter().enumerate() {
            out.push(Row {
                time: t.to_rfc3339(),
                scene: scenes[ti].join("+"),
                product: products.get(ti).cloned().unwrap_or_default(),
                band: band.clone(),
                x: None,
                y: None,
                value: None,
                stats: stats.get(ti).and_then(|row| row.get(bi)).copied(),
            });
        }
    }
    out
}

/// The cube as long-format rows.
pub fn rows(cube: &Cube) -> Vec<Row> {
    let (t, b, _, _) = cube.dim();
    let point = cube.is_point();
    if !point {
        return stats_rows(
            &cube.times,
            &cube.scenes,
            &cube.products,
            &cube.bands,
            &cube.stats(),
        );
    }
    let (x, y) = cube.pixel_center(0, 0);
    let mut out = Vec::with_capacity(t * b);
    for ti in 0..t {
        for bi in 0..b {
            let v = cube.data[[ti, bi, 0, 0]];
            out.push(Row {
                time: cube.times[ti].to_rfc3339(),
                scene: cube.scenes[ti].join("+"),
                product: cube.products.get(ti).cloned().unwrap_or_default(),
                band: cube.bands[bi].clone(),
                x: Some(x),
                y: Some(y),
                value: (!v.is_nan()).then_some(v as f64),
                stats: None,
            });
        }
    }
    out
}

fn num(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        format!("{v}")
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV with a header: `time,scene,product,band,x,y,value` for points, else
/// `time,scene,product,band,count,mean,std,min,median,max`.
pub fn csv(cube: &Cube) -> String {
    csv_of(&rows(cube), cube.is_point())
}

/// CSV of rows (point values or statistics).
pub(super) fn csv_of(rows: &[Row], point: bool) -> String {
    let mut out = String::new();
    if point {
        out.push_str("time,scene,product,band,x,y,value\n");
    } else {
        out.push_str("time,scene,product,band,count,mean,std,min,median,max\n");
    }
    for r in rows {
        let head = format!(
            "{},{},{},{}",
            r.time,
            csv_field(&r.scene),
            csv_field(&r.product),
            csv_field(&r.band)
        );
        let _ = match r.stats {
            Some(s) => writeln!(
                out,
                "{head},{},{},{},{},{},{}",
                s.count,
                num(s.mean),
                num(s.std),
                num(s.min),
                num(s.median),
                num(s.max)
            ),
            None => writeln!(
                out,
                "{head},{},{},{}",
                num(r.x.unwrap_or(f64::NAN)),
                num(r.y.unwrap_or(f64::NAN)),
                r.value.map(num).unwrap_or_default()
            ),
        };
    }
    out
}

/// JSON: `{"epsg", "kind": "point"|"area", "bands", "stored_bands", "values", "rows": [...]}`
/// (NaN as null).
pub fn json(cube: &Cube) -> String {
    json_of(
        cube.epsg,
        cube.is_point(),
        &cube.bands,
        &cube.band_sources,
        &cube.values.describe(),
        &rows(cube),
    )
}

/// JSON of rows (point values or statistics).
pub(super) fn json_of(
    epsg: u32,
    point: bool,
    bands: &[String],
    sources: &[String],
    values: &str,
    rows: &[Row],
) -> String {
    let value = serde_json::json!({
        "epsg": epsg,
        "kind": if point { "point" } else { "area" },
        "bands": bands,
        "stored_bands": sources,
        "values": values,
        "rows": rows,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// A terminal table of a point cube: one line per time, one column per band.
pub fn print_point_table(cube: &Cube) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:<12}", "date");
    for b in &cube.bands {
        let _ = write!(out, " {b:>12}");
    }
    out.push_str("  scene\n");
    for (ti, t) in cube.times.iter().enumerate() {
        // A date's Display is its ISO form, without parsing a format string per line.
        let _ = write!(out, "{:<12}", t.date_naive().to_string());
        for bi in 0..cube.bands.len() {
            let v = cube.data[[ti, bi, 0, 0]];
            let _ = match v {
                v if v.is_nan() => write!(out, " {:>12}", "-"),
                v if whole(v) => write!(out, " {v:>12.0}"),
                v => write!(out, " {v:>12.4}"),
            };
        }
        out.push_str("  ");
        for (k, scene) in cube.scenes[ti].iter().enumerate() {
            if k > 0 {
                out.push('+');
            }
            out.push_str(scene);
        }
        out.push('\n');
    }
    out
}

/// True for a value printed without decimals.
fn whole(v: f32) -> bool {
    v.fract() == 0.0 && v.abs() < 1e9
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::GeoTransform;
    use ndarray::Array4;

    pub fn sample_cube(h: usize, w: usize) -> Cube {
        let times = [
            "2023-01-07T02:00:00Z",
            "2023-02-11T02:00:00Z",
            "2023-03-18T02:00:00Z",
        ]
        .iter()
        .map(|t| crate::time::parse_datetime(t).unwrap())
        .collect();
        let mut data = Array4::from_shape_fn((3, 2, h, w), |(t, b, y, x)| {
            (t * 100 + b * 10 + y + x) as f32
        });
        data[[1, 1, 0, 0]] = f32::NAN;
        Cube {
            data,
            times,
            scenes: vec![
                vec!["s1".into()],
                vec!["s2".into(), "s2b".into()],
                vec!["s3".into()],
            ],
            products: vec!["p".into(); 3],
            bands: vec!["red".into(), "nir".into()],
            band_sources: vec!["B04".into(), "B08".into()],
            values: Default::default(),
            epsg: 32652,
            transform: GeoTransform::north_up(400000.0, 4000000.0, 10.0, 10.0),
        }
    }

    #[test]
    fn point_rows_and_csv() {
        let cube = sample_cube(1, 1);
        let text = csv(&cube);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "time,scene,product,band,x,y,value");
        assert_eq!(lines.len(), 7);
        assert_eq!(
            lines[1],
            "2023-01-07T02:00:00+00:00,s1,p,red,400005,3999995,0"
        );
        assert_eq!(
            lines[4],
            "2023-02-11T02:00:00+00:00,s2+s2b,p,nir,400005,3999995,"
        );
        let table = print_point_table(&cube);
        assert!(
            table.contains("2023-03-18") && table.contains("210"),
            "{table}"
        );
    }

    #[test]
    fn area_rows_have_statistics() {
        let cube = sample_cube(2, 2);
        let text = csv(&cube);
        assert!(text.starts_with("time,scene,product,band,count,mean,std,min,median,max\n"));
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .ends_with(",4,1,0.7071067811865476,0,1,2"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&cube)).unwrap();
        assert_eq!(v["kind"], "area");
        assert_eq!(v["rows"][3]["stats"]["count"], 3);
    }
}
