//! Where a query looks: a point, a bounding box or (multi)polygons, in any CRS; GeoJSON
//! parsing and polygon rasterisation onto the output pixel grid.

use crate::crs::{Crs, Transformer};
use crate::{Bounds, GeoTransform};
use ndarray::Array2;
use serde_json::Value;

/// Errors from reading or projecting a region.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A coordinate text could not be parsed.
    #[error("invalid {what} {text:?}: {reason}")]
    Parse {
        /// `--point`, `--bbox`...
        what: &'static str,
        /// The text.
        text: String,
        /// Why.
        reason: String,
    },
    /// A GeoJSON file could not be used.
    #[error("{file}: {reason}")]
    GeoJson {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// Projection failed.
    #[error(transparent)]
    Crs(#[from] crate::crs::Error),
}

/// A polygon: exterior ring then holes; rings as (x, y) vertices.
pub type Polygon = Vec<Vec<(f64, f64)>>;

/// A query region.
#[derive(Debug, Clone, PartialEq)]
pub enum Region {
    /// One location.
    Point(f64, f64),
    /// A rectangle.
    BBox(Bounds),
    /// One or more polygons (pixels outside are masked).
    Polygons(Vec<Polygon>),
}

fn parse_numbers(what: &'static str, text: &str, n: usize) -> Result<Vec<f64>, Error> {
    let bad = |reason: String| Error::Parse {
        what,
        text: text.to_string(),
        reason,
    };
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() != n {
        return Err(bad(format!(
            "expected {n} comma-separated numbers, got {}",
            parts.len()
        )));
    }
    parts
        .iter()
        .map(|p| {
            p.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("{p:?} is not a number")))
        })
        .collect()
}

impl Region {
    /// Parses `--point X,Y` (longitude, latitude by default).
    pub fn parse_point(text: &str) -> Result<Region, Error> {
        let v = parse_numbers("--point", text, 2)?;
        Ok(Region::Point(v[0], v[1]))
    }

    /// Parses `--bbox MINX,MINY,MAXX,MAXY`.
    pub fn parse_bbox(text: &str) -> Result<Region, Error> {
        let v = parse_numbers("--bbox", text, 4)?;
        if v[0] >= v[2] || v[1] >= v[3] {
            return Err(Error::Parse {
                what: "--bbox",
                text: text.to_string(),
                reason: "MINX must be below MAXX and MINY below MAXY".into(),
            });
        }
        Ok(Region::BBox(Bounds::new(v[0], v[1], v[2], v[3])))
    }

    /// Reads the polygons of a GeoJSON file (Polygon, MultiPolygon, Feature or
    /// FeatureCollection of those).
    pub fn from_geojson_file(path: &std::path::Path) -> Result<Region, Error> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::GeoJson {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::GeoJson {
            file: file.clone(),
            reason: format!("not JSON: {e}"),
        })?;
        Region::from_geojson(&value, &file)
    }

    /// The polygons of a parsed GeoJSON value (Polygon, MultiPolygon, Feature,
    /// FeatureCollection or GeometryCollection of those); `name` says where it came from in
    /// errors (a file, or `geometry` for a value handed over by the Python bindings).
    pub fn from_geojson(value: &Value, name: &str) -> Result<Region, Error> {
        let bad = |reason: String| Error::GeoJson {
            file: name.to_string(),
            reason,
        };
        let mut polygons = Vec::new();
        collect_polygons(value, &mut polygons).map_err(bad)?;
        if polygons.is_empty() {
            return Err(bad("no Polygon or MultiPolygon geometry".into()));
        }
        Ok(Region::Polygons(polygons))
    }

    /// The region's bounding box.
    pub fn bounds(&self) -> Bounds {
        match self {
            Region::Point(x, y) => Bounds::new(*x, *y, *x, *y),
            Region::BBox(b) => *b,
            Region::Polygons(p) => {
                Bounds::from_points(p.iter().flat_map(|poly| poly[0].iter().copied()))
            }
        }
    }

    /// The region in another CRS (polygon edges densified so they bend like the projection).
    pub fn to_crs(&self, from: &Crs, to: &Crs) -> Result<Region, Error> {
        let t = Transformer::new(from, to);
        if t.is_identity() {
            return Ok(self.clone());
        }
        Ok(match self {
            Region::Point(x, y) => {
                let (a, b) = t.transform_point(*x, *y)?;
                Region::Point(a, b)
            }
            Region::BBox(b) => Region::BBox(t.transform_bounds(b, 21)?),
            Region::Polygons(polys) => {
                let mut out = Vec::with_capacity(polys.len());
                for poly in polys {
                    let mut rings = Vec::with_capacity(poly.len());
                    for ring in poly {
                        let dense = densify(ring, 8);
                        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = dense.into_iter().unzip();
                        t.transform_in_place(&mut xs, &mut ys)?;
                        rings.push(
                            xs.into_iter()
                                .zip(ys)
                                .filter(|(x, y)| x.is_finite() && y.is_finite())
                                .collect(),
                        );
                    }
                    out.push(rings);
                }
                Region::Polygons(out)
            }
        })
    }

    /// Which output pixels lie inside (pixel centres), for polygons; `None` for points and
    /// boxes (every pixel counts). Rows are scanned once per polygon edge (even-odd rule,
    /// holes subtract), so the cost is rows x edges plus pixels, not pixels x edges.
    pub fn raster_mask(
        &self,
        transform: &GeoTransform,
        width: usize,
        height: usize,
    ) -> Option<Array2<bool>> {
        let Region::Polygons(polys) = self else {
            return None;
        };
        let mut mask = Array2::from_elem((height, width), false);
        // Pixel-centre x of each column; the same for every row of a north-up grid.
        let xs: Vec<f64> = (0..width)
            .map(|x| transform.apply(x as f64 + 0.5, 0.5).0)
            .collect();
        let scanlines = transform.row_rotation == 0.0
            && transform.col_rotation == 0.0
            && xs.windows(2).all(|w| w[0] < w[1]);
        if !scanlines {
            for ((y, x), m) in mask.indexed_iter_mut() {
                let (px, py) = transform.apply(x as f64 + 0.5, y as f64 + 0.5);
                *m = polys.iter().any(|poly| inside_polygon(poly, px, py));
            }
            return Some(mask);
        }
        let mut crossings: Vec<f64> = Vec::new();
        for (y, mut row) in mask.rows_mut().into_iter().enumerate() {
            let py = transform.apply(0.5, y as f64 + 0.5).1;
            for poly in polys {
                crossings.clear();
                for_each_crossing(poly, py, |cx| crossings.push(cx));
                crossings.sort_unstable_by(f64::total_cmp);
                // A pixel centre `px` is inside when an odd number of crossings lie right of
                // it (`px < cx`, as in `inside_polygon`): between crossings 0 and 1, 2 and 3...
                // A closed ring crosses a line an even number of times.
                let mut x = 0;
                for pair in crossings.chunks_exact(2) {
                    while x < width && xs[x] < pair[0] {
                        x += 1;
                    }
                    while x < width && xs[x] < pair[1] {
                        row[x] = true;
                        x += 1;
                    }
                }
            }
        }
        Some(mask)
    }
}

impl Region {
    /// True when the region and the polygon `ring` (same CRS, closed or not) share any point:
    /// a point inside the ring, or a box or polygon that overlaps it (polygon holes are
    /// ignored: a region inside a hole still counts, which errs on the side of keeping a
    /// scene). Used to decide which scenes cover a query.
    pub fn intersects_ring(&self, ring: &[(f64, f64)]) -> bool {
        if ring.len() < 3 {
            return false;
        }
        let footprint: Polygon = vec![ring.to_vec()];
        let own: Vec<Vec<(f64, f64)>> = match self {
            Region::Point(x, y) => return inside_polygon(&footprint, *x, *y),
            Region::BBox(b) => vec![vec![
                (b.min_x, b.min_y),
                (b.max_x, b.min_y),
                (b.max_x, b.max_y),
                (b.min_x, b.max_y),
            ]],
            Region::Polygons(polys) => polys.iter().filter_map(|p| p.first().cloned()).collect(),
        };
        own.iter().any(|outer| rings_intersect(outer, ring))
    }
}

/// True when two polygons (exterior rings) overlap: a vertex of one inside the other, or
/// crossing edges.
fn rings_intersect(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
    if a.len() < 3 || b.len() < 3 {
        return false;
    }
    let (pa, pb): (Polygon, Polygon) = (vec![a.to_vec()], vec![b.to_vec()]);
    if a.iter().any(|&(x, y)| inside_polygon(&pb, x, y))
        || b.iter().any(|&(x, y)| inside_polygon(&pa, x, y))
    {
        return true;
    }
    let edges = |r: &[(f64, f64)]| -> Vec<((f64, f64), (f64, f64))> {
        (0..r.len()).map(|i| (r[i], r[(i + 1) % r.len()])).collect()
    };
    let (ea, eb) = (edges(a), edges(b));
    ea.iter()
        .any(|&(p, q)| eb.iter().any(|&(r, s)| segments_cross(p, q, r, s)))
}

/// True when segments `pq` and `rs` intersect (touching counts).
fn segments_cross(p: (f64, f64), q: (f64, f64), r: (f64, f64), s: (f64, f64)) -> bool {
    let orient = |a: (f64, f64), b: (f64, f64), c: (f64, f64)| {
        let v = (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0);
        if v > 0.0 {
            1
        } else if v < 0.0 {
            -1
        } else {
            0
        }
    };
    let on = |a: (f64, f64), b: (f64, f64), c: (f64, f64)| {
        c.0 >= a.0.min(b.0) && c.0 <= a.0.max(b.0) && c.1 >= a.1.min(b.1) && c.1 <= a.1.max(b.1)
    };
    let (o1, o2, o3, o4) = (
        orient(p, q, r),
        orient(p, q, s),
        orient(r, s, p),
        orient(r, s, q),
    );
    (o1 != o2 && o3 != o4)
        || (o1 == 0 && on(p, q, r))
        || (o2 == 0 && on(p, q, s))
        || (o3 == 0 && on(r, s, p))
        || (o4 == 0 && on(r, s, q))
}

/// Calls `f` with the x of every crossing of the polygon's rings (closed implicitly) with the
/// horizontal line at `y`, by the half-open rule `inside_polygon` uses.
fn for_each_crossing(poly: &Polygon, y: f64, mut f: impl FnMut(f64)) {
    for ring in poly {
        let n = ring.len();
        if n < 3 {
            continue;
        }
        let mut j = n - 1;
        for i in 0..n {
            let (xi, yi) = ring[i];
            let (xj, yj) = ring[j];
            if (yi > y) != (yj > y) {
                f((xj - xi) * (y - yi) / (yj - yi) + xi);
            }
            j = i;
        }
    }
}

fn densify(ring: &[(f64, f64)], n: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(ring.len() * n);
    for w in ring.windows(2) {
        for k in 0..n {
            let f = k as f64 / n as f64;
            out.push((
                w[0].0 + (w[1].0 - w[0].0) * f,
                w[0].1 + (w[1].1 - w[0].1) * f,
            ));
        }
    }
    if let Some(last) = ring.last() {
        out.push(*last);
    }
    out
}

/// Even-odd rule over all rings (holes subtract).
fn inside_polygon(poly: &Polygon, x: f64, y: f64) -> bool {
    let mut inside = false;
    for_each_crossing(poly, y, |cx| {
        if x < cx {
            inside = !inside;
        }
    });
    inside
}

fn ring_of(v: &Value) -> Result<Vec<(f64, f64)>, String> {
    let arr = v.as_array().ok_or("a ring is not an array of positions")?;
    arr.iter()
        .map(|p| {
            let c = p.as_array().ok_or("a position is not an array")?;
            match (
                c.first().and_then(Value::as_f64),
                c.get(1).and_then(Value::as_f64),
            ) {
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Ok((x, y)),
                _ => Err("a position needs two numbers".to_string()),
            }
        })
        .collect()
}

fn polygon_of(v: &Value) -> Result<Polygon, String> {
    let rings = v
        .as_array()
        .ok_or("Polygon coordinates are not an array of rings")?;
    let poly: Polygon = rings.iter().map(ring_of).collect::<Result<_, _>>()?;
    if poly.first().is_none_or(|r| r.len() < 4) {
        return Err("a polygon ring needs at least 4 positions".into());
    }
    Ok(poly)
}

fn collect_polygons(v: &Value, out: &mut Vec<Polygon>) -> Result<(), String> {
    match v.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => {
            for f in v
                .get("features")
                .and_then(Value::as_array)
                .ok_or("FeatureCollection without features")?
            {
                collect_polygons(f, out)?;
            }
        }
        Some("Feature") => {
            if let Some(g) = v.get("geometry").filter(|g| !g.is_null()) {
                collect_polygons(g, out)?;
            }
        }
        Some("Polygon") => out.push(polygon_of(
            v.get("coordinates").ok_or("Polygon without coordinates")?,
        )?),
        Some("MultiPolygon") => {
            for p in v
                .get("coordinates")
                .and_then(Value::as_array)
                .ok_or("MultiPolygon without coordinates")?
            {
                out.push(polygon_of(p)?);
            }
        }
        Some("GeometryCollection") => {
            for g in v
                .get("geometries")
                .and_then(Value::as_array)
                .ok_or("GeometryCollection without geometries")?
            {
                collect_polygons(g, out)?;
            }
        }
        Some(other) => {
            return Err(format!(
                "{other} geometries cannot be queried; use Polygon or MultiPolygon"
            ))
        }
        None => return Err("not GeoJSON (no \"type\")".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanline_mask_matches_the_point_in_polygon_test() {
        // Star-shaped polygons with holes, vertices on pixel centres and edges, a
        // multipolygon with overlapping parts, and a ring left open.
        let mut seed = 3u64;
        let mut rand = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let star = |cx: f64, cy: f64, r: f64, n: usize, rand: &mut dyn FnMut() -> f64| {
            let mut ring: Vec<(f64, f64)> = (0..n)
                .map(|k| {
                    let a = k as f64 / n as f64 * std::f64::consts::TAU;
                    let rr = r * (0.3 + 0.7 * rand());
                    // Snap some vertices to the 10 m lattice of pixel edges and centres.
                    let snap = |v: f64| {
                        if k % 3 == 0 {
                            (v / 5.0).round() * 5.0
                        } else {
                            v
                        }
                    };
                    (snap(cx + rr * a.cos()), snap(cy + rr * a.sin()))
                })
                .collect();
            ring.push(ring[0]);
            ring
        };
        let mut polys: Vec<Polygon> = Vec::new();
        for k in 0..4 {
            let (cx, cy) = (300.0 + 250.0 * k as f64, -400.0 - 80.0 * k as f64);
            let mut poly = vec![star(cx, cy, 300.0, 40 + 20 * k, &mut rand)];
            poly.push(star(cx, cy, 60.0, 7, &mut rand));
            polys.push(poly);
        }
        polys.push(vec![vec![(0.0, 0.0), (500.0, -20.0), (250.0, -700.0)]]);
        let region = Region::Polygons(polys.clone());
        for t in [
            GeoTransform::north_up(-50.0, 50.0, 10.0, 10.0),
            GeoTransform::north_up(3.0, -7.0, 7.5, 12.5),
        ] {
            let (w, h) = (160, 110);
            let mask = region.raster_mask(&t, w, h).unwrap();
            let mut inside = 0;
            for y in 0..h {
                for x in 0..w {
                    let (px, py) = t.apply(x as f64 + 0.5, y as f64 + 0.5);
                    let want = polys.iter().any(|p| inside_polygon(p, px, py));
                    assert_eq!(mask[[y, x]], want, "pixel ({x}, {y})");
                    inside += want as usize;
                }
            }
            assert!(inside > 1000 && inside < w * h - 1000, "{inside}");
        }
    }

    #[test]
    fn regions_intersect_footprints() {
        let square = [
            (0.0, 0.0),
            (10.0, 0.0),
            (10.0, 10.0),
            (0.0, 10.0),
            (0.0, 0.0),
        ];
        assert!(Region::Point(5.0, 5.0).intersects_ring(&square));
        assert!(!Region::Point(15.0, 5.0).intersects_ring(&square));
        // Inside, overlapping, containing, crossing without a vertex inside, apart.
        let bbox = |a, b, c, d| Region::BBox(Bounds::new(a, b, c, d));
        assert!(bbox(2.0, 2.0, 3.0, 3.0).intersects_ring(&square));
        assert!(bbox(8.0, 8.0, 12.0, 12.0).intersects_ring(&square));
        assert!(bbox(-5.0, -5.0, 15.0, 15.0).intersects_ring(&square));
        assert!(bbox(-5.0, 4.0, 15.0, 6.0).intersects_ring(&square));
        assert!(!bbox(11.0, 0.0, 12.0, 10.0).intersects_ring(&square));
        let tri = Region::Polygons(vec![vec![vec![(12.0, 0.0), (20.0, 0.0), (12.0, 8.0)]]]);
        assert!(!tri.intersects_ring(&square));
        let tri = Region::Polygons(vec![vec![vec![(9.0, 0.0), (20.0, 0.0), (9.0, 8.0)]]]);
        assert!(tri.intersects_ring(&square));
        assert!(!Region::Point(1.0, 1.0).intersects_ring(&[]));
    }

    #[test]
    fn parses_points_and_boxes() {
        assert_eq!(
            Region::parse_point("127.1, 36.5").unwrap(),
            Region::Point(127.1, 36.5)
        );
        assert!(Region::parse_point("127.1")
            .unwrap_err()
            .to_string()
            .contains("2 comma-separated"));
        assert!(Region::parse_point("a,b")
            .unwrap_err()
            .to_string()
            .contains("\"a\""));
        assert!(Region::parse_bbox("1,2,0,3")
            .unwrap_err()
            .to_string()
            .contains("MINX"));
        assert_eq!(
            Region::parse_bbox("0,0,1,1").unwrap().bounds(),
            Bounds::new(0.0, 0.0, 1.0, 1.0)
        );
    }

    #[test]
    fn geojson_polygons_with_holes_rasterise() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("field.geojson");
        std::fs::write(
            &p,
            r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},
              "geometry":{"type":"Polygon","coordinates":[[[0,0],[10,0],[10,10],[0,10],[0,0]],
                                                          [[4,4],[6,4],[6,6],[4,6],[4,4]]]}}]}"#,
        )
        .unwrap();
        let r = Region::from_geojson_file(&p).unwrap();
        assert_eq!(r.bounds(), Bounds::new(0.0, 0.0, 10.0, 10.0));
        let mask = r
            .raster_mask(&GeoTransform::north_up(0.0, 10.0, 1.0, 1.0), 10, 10)
            .unwrap();
        assert_eq!(mask.iter().filter(|&&m| m).count(), 96);
        assert!(!mask[[5, 5]] && mask[[0, 0]]);
    }

    #[test]
    fn bad_geojson_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        for (text, needle) in [
            ("nope", "not JSON"),
            (
                r#"{"type":"Point","coordinates":[1,2]}"#,
                "Point geometries",
            ),
            (
                r#"{"type":"Polygon","coordinates":[[[0,0],[1,1]]]}"#,
                "at least 4",
            ),
            (
                r#"{"type":"FeatureCollection","features":[]}"#,
                "no Polygon",
            ),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Region::from_geojson_file(&p).unwrap_err().to_string();
            assert!(e.contains("x.json") && e.contains(needle), "{e}");
        }
    }

    #[test]
    fn geojson_values_name_their_source() {
        let v: Value = serde_json::from_str(
            r#"{"type":"MultiPolygon","coordinates":[[[[0,0],[2,0],[2,2],[0,0]]]]}"#,
        )
        .unwrap();
        let r = Region::from_geojson(&v, "geometry").unwrap();
        assert_eq!(r.bounds(), Bounds::new(0.0, 0.0, 2.0, 2.0));
        let point: Value = serde_json::from_str(r#"{"type":"Point","coordinates":[1,2]}"#).unwrap();
        let e = Region::from_geojson(&point, "geometry")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("geometry: Point geometries"), "{e}");
    }

    #[test]
    fn lonlat_to_utm() {
        let wgs = Crs::wgs84();
        let utm = Crs::from_epsg(32652).unwrap();
        let Region::Point(x, y) = Region::Point(129.0, 36.0).to_crs(&wgs, &utm).unwrap() else {
            panic!()
        };
        assert!(
            (x - 500000.0).abs() < 1e-3 && (y - 3983948.0).abs() < 5.0,
            "{x} {y}"
        );
    }
}
