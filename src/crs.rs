//! Coordinate reference systems in pure Rust: [`Crs`] (an EPSG code resolved with `proj4rs`)
//! and [`Transformer`] (batch transforms between two CRSs, densified bounds).
//!
//! Geographic CRSs (EPSG:4326, ...) use GIS axis order and **degrees**: `x` is longitude and
//! `y` latitude, as in GDAL geotransforms and GeoTIFF files; `proj4rs` works in radians and the
//! conversion happens here, once per batch.
//!
//! ```
//! use pixelquery::crs::{Crs, Transformer};
//! let utm = Crs::from_epsg(32652).unwrap();
//! let t = Transformer::new(&utm, &Crs::wgs84());
//! let (lon, lat) = t.transform_point(500_000.0, 4_000_000.0).unwrap();
//! assert!((lon - 129.0).abs() < 1e-9 && (lat - 36.14).abs() < 0.01);
//! assert!(Crs::from_epsg(99_999).is_err());
//! ```

use crate::geo::Bounds;
use proj4rs::proj::Proj;
use std::fmt;
use std::sync::Arc;

/// Errors from CRS lookup and coordinate transforms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The EPSG code is not in the built-in definition table.
    #[error("unknown EPSG code {code}: not in the built-in CRS definitions")]
    UnknownEpsg {
        /// The rejected code.
        code: u32,
    },
    /// The EPSG code is known but its definition could not be set up.
    #[error("EPSG:{code}: cannot use its definition {definition:?}: {source}")]
    Definition {
        /// The EPSG code.
        code: u32,
        /// The proj4 string that failed.
        definition: String,
        /// What proj4rs reported.
        #[source]
        source: proj4rs::errors::Error,
    },
    /// A point could not be transformed (outside the projection's domain).
    #[error("cannot transform ({x}, {y}) from EPSG:{from} to EPSG:{to}")]
    Point {
        /// Input x.
        x: f64,
        /// Input y.
        y: f64,
        /// Source EPSG code.
        from: u32,
        /// Target EPSG code.
        to: u32,
    },
    /// No point of a rectangle could be transformed.
    #[error("no point of bounds {bounds:?} can be transformed from EPSG:{from} to EPSG:{to}")]
    Bounds {
        /// The input rectangle.
        bounds: Bounds,
        /// Source EPSG code.
        from: u32,
        /// Target EPSG code.
        to: u32,
    },
    /// The x and y slices of a batch differ in length.
    #[error("coordinate slices differ in length: {xs} x values, {ys} y values")]
    Lengths {
        /// Number of x values.
        xs: usize,
        /// Number of y values.
        ys: usize,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

/// EPSG:3857 as PROJ defines it today: `webmerc` on WGS84, not `merc +nadgrids=@null`
/// (which skips datum shifts and is what the definition table returns).
const WEBMERC: &str =
    "+proj=webmerc +ellps=WGS84 +lat_0=0 +lon_0=0 +x_0=0 +y_0=0 +towgs84=0,0,0,0,0,0,0";

/// A coordinate reference system identified by its EPSG code.
///
/// Cheap to clone (the projection is shared). Two values are equal when their codes are.
#[derive(Clone)]
pub struct Crs {
    epsg: u32,
    definition: &'static str,
    proj: Arc<Proj>,
}

impl Crs {
    /// Looks up an EPSG code in the built-in table (pure Rust, no PROJ database).
    ///
    /// Web Mercator (3857, and its old aliases 3785 and 900913) uses the `webmerc` definition.
    pub fn from_epsg(code: u32) -> Result<Crs> {
        let definition: &'static str = match code {
            3857 | 3785 | 900913 => WEBMERC,
            _ => {
                let short = u16::try_from(code).map_err(|_| Error::UnknownEpsg { code })?;
                crs_definitions::from_code(short)
                    .ok_or(Error::UnknownEpsg { code })?
                    .proj4
            }
        };
        let proj = Proj::from_proj_string(definition).map_err(|source| Error::Definition {
            code,
            definition: definition.to_string(),
            source,
        })?;
        Ok(Crs {
            epsg: code,
            definition,
            proj: Arc::new(proj),
        })
    }

    /// WGS84 longitude/latitude in degrees (EPSG:4326).
    pub fn wgs84() -> Crs {
        // The 4326 entry is part of the compiled-in table; its absence would be a build error
        // of the dependency, not bad input.
        Crs::from_epsg(4326).expect("EPSG:4326 is in the built-in table")
    }

    /// The WGS84 UTM zone (EPSG:326zz north, 327zz south) containing a lon/lat point.
    pub fn utm_for_lonlat(lon: f64, lat: f64) -> Result<Crs> {
        if !(lon.is_finite() && lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
            return Err(Error::Point {
                x: lon,
                y: lat,
                from: 4326,
                to: 32600,
            });
        }
        let lon = (lon + 180.0).rem_euclid(360.0) - 180.0;
        let zone = (((lon + 180.0) / 6.0).floor() as u32).clamp(0, 59) + 1;
        Crs::from_epsg(if lat >= 0.0 { 32600 } else { 32700 } + zone)
    }

    /// The EPSG code.
    pub fn epsg(&self) -> u32 {
        self.epsg
    }

    /// The proj4 definition in use.
    pub fn definition(&self) -> &'static str {
        self.definition
    }

    /// True for longitude/latitude CRSs (coordinates in degrees).
    pub fn is_geographic(&self) -> bool {
        self.proj.is_latlong()
    }

    /// True for projected CRSs (coordinates in linear units, e.g. metres for UTM).
    pub fn is_projected(&self) -> bool {
        !self.proj.is_latlong() && !self.proj.is_geocent()
    }

    /// Bounds in lon/lat degrees of a rectangle given in this CRS, from densified edges
    /// (21 points per edge, like GDAL's `OCTTransformBounds`), so curved edges are covered.
    ///
    /// Rectangles crossing the antimeridian are not split: their longitude range spans the globe.
    pub fn lonlat_bounds(&self, bounds: &Bounds) -> Result<Bounds> {
        Transformer::new(self, &Crs::wgs84()).transform_bounds(bounds, 21)
    }
}

impl fmt::Debug for Crs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Crs(EPSG:{})", self.epsg)
    }
}

impl fmt::Display for Crs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EPSG:{}", self.epsg)
    }
}

impl PartialEq for Crs {
    fn eq(&self, other: &Self) -> bool {
        self.epsg == other.epsg
    }
}

impl Eq for Crs {}

/// Transforms coordinates from one CRS to another, in batches.
#[derive(Clone, Debug)]
pub struct Transformer {
    src: Crs,
    dst: Crs,
}

/// Two coordinate slices seen by proj4rs as one batch; failed points become NaN instead of
/// stopping the batch.
struct Batch<'a> {
    xs: &'a mut [f64],
    ys: &'a mut [f64],
}

impl proj4rs::transform::Transform for Batch<'_> {
    fn transform_coordinates<F: proj4rs::transform::TransformClosure>(
        &mut self,
        f: &mut F,
    ) -> proj4rs::errors::Result<()> {
        for (x, y) in self.xs.iter_mut().zip(self.ys.iter_mut()) {
            if x.is_nan() || y.is_nan() {
                continue;
            }
            match f(*x, *y, 0.0) {
                Ok((nx, ny, _)) => {
                    *x = nx;
                    *y = ny;
                }
                Err(_) => {
                    *x = f64::NAN;
                    *y = f64::NAN;
                }
            }
        }
        Ok(())
    }
}

impl Transformer {
    /// A transformer from `src` to `dst`.
    pub fn new(src: &Crs, dst: &Crs) -> Transformer {
        Transformer {
            src: src.clone(),
            dst: dst.clone(),
        }
    }

    /// The source CRS.
    pub fn source(&self) -> &Crs {
        &self.src
    }

    /// The target CRS.
    pub fn target(&self) -> &Crs {
        &self.dst
    }

    /// True when source and target are the same CRS (transforms are then no-ops).
    pub fn is_identity(&self) -> bool {
        self.src == self.dst
    }

    /// Transforms points in place. Points that cannot be transformed (outside the projection
    /// domain) become NaN; returns how many did.
    pub fn transform_in_place(&self, xs: &mut [f64], ys: &mut [f64]) -> Result<usize> {
        if xs.len() != ys.len() {
            return Err(Error::Lengths {
                xs: xs.len(),
                ys: ys.len(),
            });
        }
        if self.is_identity() {
            return Ok(xs
                .iter()
                .zip(ys.iter())
                .filter(|(x, y)| !(x.is_finite() && y.is_finite()))
                .count());
        }
        if self.src.is_geographic() {
            xs.iter_mut().for_each(|v| *v = v.to_radians());
            ys.iter_mut().for_each(|v| *v = v.to_radians());
        }
        let mut batch = Batch {
            xs: &mut *xs,
            ys: &mut *ys,
        };
        // Per-point failures are absorbed by `Batch`; an error here is a whole-CRS problem
        // (no inverse/forward defined): report it on the first point.
        if proj4rs::transform::transform(&self.src.proj, &self.dst.proj, &mut batch).is_err() {
            let (x, y) = (
                xs.first().copied().unwrap_or(f64::NAN),
                ys.first().copied().unwrap_or(f64::NAN),
            );
            return Err(Error::Point {
                x,
                y,
                from: self.src.epsg,
                to: self.dst.epsg,
            });
        }
        if self.dst.is_geographic() {
            xs.iter_mut().for_each(|v| *v = v.to_degrees());
            ys.iter_mut().for_each(|v| *v = v.to_degrees());
        }
        let mut failed = 0;
        for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
            if !(x.is_finite() && y.is_finite()) {
                *x = f64::NAN;
                *y = f64::NAN;
                failed += 1;
            }
        }
        Ok(failed)
    }

    /// Transforms one point; an error when it is outside the projection domain.
    pub fn transform_point(&self, x: f64, y: f64) -> Result<(f64, f64)> {
        let (mut xs, mut ys) = ([x], [y]);
        if self.transform_in_place(&mut xs, &mut ys)? > 0 {
            return Err(Error::Point {
                x,
                y,
                from: self.src.epsg,
                to: self.dst.epsg,
            });
        }
        Ok((xs[0], ys[0]))
    }

    /// Bounds in the target CRS of a rectangle in the source CRS, from `densify` points per
    /// edge plus the corners (and a coarse interior lattice, which catches extrema inside the
    /// rectangle, e.g. a pole). Points that fail are skipped; an error when all do.
    pub fn transform_bounds(&self, bounds: &Bounds, densify: usize) -> Result<Bounds> {
        if self.is_identity() {
            return Ok(*bounds);
        }
        let n = densify.max(2);
        let mut xs = Vec::with_capacity(n * n);
        let mut ys = Vec::with_capacity(n * n);
        for j in 0..n {
            let fy = j as f64 / (n - 1) as f64;
            for i in 0..n {
                let fx = i as f64 / (n - 1) as f64;
                xs.push(bounds.min_x + fx * bounds.width());
                ys.push(bounds.min_y + fy * bounds.height());
            }
        }
        self.transform_in_place(&mut xs, &mut ys)?;
        let out = Bounds::from_points(xs.into_iter().zip(ys));
        if out.min_x > out.max_x || out.min_y > out.max_y {
            return Err(Error::Bounds {
                bounds: *bounds,
                from: self.src.epsg,
                to: self.dst.epsg,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_code_names_the_code() {
        let e = Crs::from_epsg(99_999).unwrap_err();
        assert!(e.to_string().contains("99999"), "{e}");
        assert!(Crs::from_epsg(4_000_000).is_err());
    }

    #[test]
    fn utm_round_trip_and_known_point() {
        let utm = Crs::from_epsg(32652).unwrap();
        assert!(utm.is_projected() && !utm.is_geographic());
        let to_ll = Transformer::new(&utm, &Crs::wgs84());
        // Central meridian of zone 52 is 129E; x = 500000 lies on it.
        let (lon, lat) = to_ll.transform_point(500_000.0, 0.0).unwrap();
        assert!((lon - 129.0).abs() < 1e-9 && lat.abs() < 1e-9);
        // GDAL 3.6 / PROJ: (399960, 4040040) in 32652 -> (127.882938583, 36.500466910).
        let (lon, lat) = to_ll.transform_point(399_960.0, 4_040_040.0).unwrap();
        assert!((lon - 127.882_938_583_1).abs() < 1e-9 && (lat - 36.500_466_909_9).abs() < 1e-9);
        let back = Transformer::new(&Crs::wgs84(), &utm)
            .transform_point(lon, lat)
            .unwrap();
        assert!((back.0 - 399_960.0).abs() < 1e-6 && (back.1 - 4_040_040.0).abs() < 1e-6);
    }

    #[test]
    fn web_mercator_matches_proj() {
        let wm = Crs::from_epsg(3857).unwrap();
        assert!(wm.definition().contains("webmerc"));
        let t = Transformer::new(&Crs::wgs84(), &wm);
        // GDAL 3.6 / PROJ (osr.CoordinateTransformation 4326 -> 3857, GIS order).
        let (x, y) = t.transform_point(128.0, 36.0).unwrap();
        assert!((x - 14_248_894.821_539).abs() < 1e-4, "{x}");
        assert!((y - 4_300_621.372_044).abs() < 1e-4, "{y}");
    }

    #[test]
    fn batch_marks_failures_as_nan() {
        let t = Transformer::new(&Crs::wgs84(), &Crs::from_epsg(3857).unwrap());
        let mut xs = [10.0, 10.0, f64::NAN];
        let mut ys = [10.0, 95.0, 0.0];
        let failed = t.transform_in_place(&mut xs, &mut ys).unwrap();
        assert_eq!(failed, 2);
        assert!(xs[0].is_finite() && xs[1].is_nan() && xs[2].is_nan());
        assert!(t.transform_in_place(&mut [1.0], &mut []).is_err());
    }

    #[test]
    fn densified_bounds_cover_curved_edges() {
        let utm = Crs::from_epsg(32652).unwrap();
        let b = Bounds::new(300_000.0, 4_000_000.0, 700_000.0, 4_400_000.0);
        let ll = utm.lonlat_bounds(&b).unwrap();
        // The northern edge bulges: the middle point (x=500000) lies further north than the
        // corners, so the max latitude must come from the densified edge.
        let t = Transformer::new(&utm, &Crs::wgs84());
        let (_, lat_mid) = t.transform_point(500_000.0, 4_400_000.0).unwrap();
        let (_, lat_corner) = t.transform_point(700_000.0, 4_400_000.0).unwrap();
        assert!(lat_mid > lat_corner);
        assert!((ll.max_y - lat_mid).abs() < 1e-9);
    }

    #[test]
    fn utm_zone_lookup() {
        assert_eq!(Crs::utm_for_lonlat(128.3, 36.2).unwrap().epsg(), 32652);
        assert_eq!(Crs::utm_for_lonlat(-70.0, -33.0).unwrap().epsg(), 32719);
        assert_eq!(Crs::utm_for_lonlat(180.0, 0.0).unwrap().epsg(), 32601);
        assert!(Crs::utm_for_lonlat(f64::NAN, 0.0).is_err());
    }
}
