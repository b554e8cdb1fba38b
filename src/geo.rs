//! Affine georeferencing shared by every stage: [`GeoTransform`] and [`Bounds`].

use serde::{Deserialize, Serialize};

/// An affine pixel-to-map transform in GDAL order.
///
/// `x = origin_x + col * pixel_width + row * row_rotation`,
/// `y = origin_y + col * col_rotation + row * pixel_height`,
/// where (col, row) is the top-left corner of a pixel for `(0.0, 0.0)` and pixel centres
/// are at half-integers. `pixel_height` is negative for north-up images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoTransform {
    /// Map x of the top-left corner of the top-left pixel.
    pub origin_x: f64,
    /// Map x step per column.
    pub pixel_width: f64,
    /// Map x step per row (0 for north-up).
    pub row_rotation: f64,
    /// Map y of the top-left corner of the top-left pixel.
    pub origin_y: f64,
    /// Map y step per column (0 for north-up).
    pub col_rotation: f64,
    /// Map y step per row (negative for north-up).
    pub pixel_height: f64,
}

impl GeoTransform {
    /// A north-up transform from its top-left corner and pixel size (`res_y` positive).
    pub fn north_up(origin_x: f64, origin_y: f64, res_x: f64, res_y: f64) -> Self {
        Self {
            origin_x,
            pixel_width: res_x,
            row_rotation: 0.0,
            origin_y,
            col_rotation: 0.0,
            pixel_height: -res_y,
        }
    }

    /// The six coefficients in GDAL's order `[c, a, b, f, d, e]`.
    pub fn to_gdal(&self) -> [f64; 6] {
        [
            self.origin_x,
            self.pixel_width,
            self.row_rotation,
            self.origin_y,
            self.col_rotation,
            self.pixel_height,
        ]
    }

    /// Builds a transform from GDAL's six coefficients.
    pub fn from_gdal(c: [f64; 6]) -> Self {
        Self {
            origin_x: c[0],
            pixel_width: c[1],
            row_rotation: c[2],
            origin_y: c[3],
            col_rotation: c[4],
            pixel_height: c[5],
        }
    }

    /// True when the transform has no rotation or shear terms.
    pub fn is_north_up(&self) -> bool {
        self.row_rotation == 0.0 && self.col_rotation == 0.0
    }

    /// Map coordinates of a (fractional) pixel position.
    pub fn apply(&self, col: f64, row: f64) -> (f64, f64) {
        (
            self.origin_x + col * self.pixel_width + row * self.row_rotation,
            self.origin_y + col * self.col_rotation + row * self.pixel_height,
        )
    }

    /// The inverse transform (map to pixel), or `None` when the matrix is singular.
    pub fn inverse(&self) -> Option<GeoTransform> {
        let det = self.pixel_width * self.pixel_height - self.row_rotation * self.col_rotation;
        if det == 0.0 || !det.is_finite() {
            return None;
        }
        let a = self.pixel_height / det;
        let b = -self.row_rotation / det;
        let d = -self.col_rotation / det;
        let e = self.pixel_width / det;
        Some(GeoTransform {
            origin_x: -(a * self.origin_x + b * self.origin_y),
            pixel_width: a,
            row_rotation: b,
            origin_y: -(d * self.origin_x + e * self.origin_y),
            col_rotation: d,
            pixel_height: e,
        })
    }

    /// Bounds in map units of a `width` x `height` pixel raster.
    pub fn bounds(&self, width: u64, height: u64) -> Bounds {
        let corners = [
            self.apply(0.0, 0.0),
            self.apply(width as f64, 0.0),
            self.apply(0.0, height as f64),
            self.apply(width as f64, height as f64),
        ];
        Bounds::from_points(corners.iter().copied())
    }

    /// The transform of a window starting at pixel (`col_off`, `row_off`) and sampled with a
    /// step of `factor` source pixels per output pixel (overviews use factor > 1).
    pub fn window(&self, col_off: f64, row_off: f64, factor_x: f64, factor_y: f64) -> GeoTransform {
        let (x, y) = self.apply(col_off, row_off);
        GeoTransform {
            origin_x: x,
            pixel_width: self.pixel_width * factor_x,
            row_rotation: self.row_rotation * factor_y,
            origin_y: y,
            col_rotation: self.col_rotation * factor_x,
            pixel_height: self.pixel_height * factor_y,
        }
    }
}

/// An axis-aligned rectangle in some CRS (`min_x <= max_x`, `min_y <= max_y`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Smallest x (west for geographic / most projected CRSs).
    pub min_x: f64,
    /// Smallest y (south).
    pub min_y: f64,
    /// Largest x (east).
    pub max_x: f64,
    /// Largest y (north).
    pub max_y: f64,
}

impl Bounds {
    /// A rectangle from its corners.
    pub fn new(min_x: f64, min_y: f64, max_x: f64, max_y: f64) -> Self {
        Self {
            min_x,
            min_y,
            max_x,
            max_y,
        }
    }

    /// The smallest rectangle containing every point (an empty iterator gives an inverted,
    /// empty rectangle).
    pub fn from_points(points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let mut b = Bounds::new(
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        );
        for (x, y) in points {
            if x.is_finite() && y.is_finite() {
                b.min_x = b.min_x.min(x);
                b.min_y = b.min_y.min(y);
                b.max_x = b.max_x.max(x);
                b.max_y = b.max_y.max(y);
            }
        }
        b
    }

    /// Width in map units.
    pub fn width(&self) -> f64 {
        self.max_x - self.min_x
    }

    /// Height in map units.
    pub fn height(&self) -> f64 {
        self.max_y - self.min_y
    }

    /// True when the rectangle has no area (or is inverted).
    pub fn is_empty(&self) -> bool {
        !(self.max_x > self.min_x && self.max_y > self.min_y)
    }

    /// True when the two rectangles share some area.
    pub fn intersects(&self, other: &Bounds) -> bool {
        self.min_x < other.max_x
            && other.min_x < self.max_x
            && self.min_y < other.max_y
            && other.min_y < self.max_y
    }

    /// The overlap of two rectangles (possibly empty).
    pub fn intersection(&self, other: &Bounds) -> Bounds {
        Bounds::new(
            self.min_x.max(other.min_x),
            self.min_y.max(other.min_y),
            self.max_x.min(other.max_x),
            self.max_y.min(other.max_y),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_round_trips() {
        let gt = GeoTransform::north_up(399960.0, 4040040.0, 10.0, 10.0);
        let inv = gt.inverse().unwrap();
        let (x, y) = gt.apply(12.5, 7.25);
        let (c, r) = inv.apply(x, y);
        assert!((c - 12.5).abs() < 1e-9 && (r - 7.25).abs() < 1e-9);
    }

    #[test]
    fn bounds_of_north_up_raster() {
        let gt = GeoTransform::north_up(100.0, 200.0, 10.0, 10.0);
        assert_eq!(gt.bounds(3, 2), Bounds::new(100.0, 180.0, 130.0, 200.0));
    }

    #[test]
    fn singular_transform_has_no_inverse() {
        let gt = GeoTransform::from_gdal([0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(gt.inverse().is_none());
    }
}
