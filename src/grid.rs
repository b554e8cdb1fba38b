//! The tile grid every scene is cut onto: [`GridSpec`] and [`TileId`].

use crate::crs::{self, Crs, Transformer};
use crate::geo::{Bounds, GeoTransform};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Errors from grid definitions and tile names.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Tile size not a finite number of CRS units in [`MIN_TILE_SIZE`, `MAX_TILE_SIZE`].
    #[error("invalid tile size {}: must be a finite number of CRS units from {MIN_TILE_SIZE:e} to {MAX_TILE_SIZE:e}", short(*.tile_size))]
    TileSize {
        /// The rejected size.
        tile_size: f64,
    },
    /// Grid origin not finite or farther than [`MAX_COORDINATE`] from 0.
    #[error("invalid grid origin ({}, {}): must be finite, within {MAX_COORDINATE:e} CRS units of 0", short(*.x), short(*.y))]
    Origin {
        /// Origin x.
        x: f64,
        /// Origin y.
        y: f64,
    },
    /// A product resolution that does not divide the tile size.
    #[error("resolution {} does not divide tile size {} into a whole number of pixels", short(*.resolution), short(*.tile_size))]
    Resolution {
        /// The grid's tile size.
        tile_size: f64,
        /// The rejected resolution.
        resolution: f64,
    },
    /// A footprint covering more tiles than [`MAX_TILES`].
    #[error("footprint covers {count} tiles, more than the limit of {limit}")]
    TooManyTiles {
        /// Tiles the footprint would cover.
        count: f64,
        /// The limit.
        limit: u64,
    },
    /// CRS lookup or transform failure.
    #[error(transparent)]
    Crs(#[from] crs::Error),
    /// A tile name that is not `x{col}_y{row}`.
    #[error("invalid tile id {name:?}: expected x{{col}}_y{{row}}, e.g. x12_y-3")]
    TileName {
        /// The rejected text.
        name: String,
    },
}

/// A number as people read it: plain when moderate (`3840`, `0.5`), in scientific notation
/// when huge or tiny (`1e308` rather than 309 digits).
pub(crate) fn short(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-4..1e9).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// One tile of a grid: column and row index, written `x{col}_y{row}` (negative indices allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TileId {
    /// Column index (grows eastward).
    pub col: i64,
    /// Row index.
    pub row: i64,
}

impl TileId {
    /// A tile from its indices.
    pub fn new(col: i64, row: i64) -> Self {
        Self { col, row }
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "x{}_y{}", self.col, self.row)
    }
}

impl FromStr for TileId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Error::TileName {
            name: s.to_string(),
        };
        let rest = s.strip_prefix('x').ok_or_else(bad)?;
        let (col, row) = rest.split_once("_y").ok_or_else(bad)?;
        let parse = |t: &str| -> Result<i64, Error> {
            // Reject forms `i64::from_str` accepts but we never write ("+3", "03").
            let digits = t.strip_prefix('-').unwrap_or(t);
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || (digits.len() > 1 && digits.starts_with('0'))
            {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        Ok(TileId {
            col: parse(col)?,
            row: parse(row)?,
        })
    }
}

/// Default tile side in metres: an integer number of pixels at every built-in product
/// resolution (3 m: 1280 px, 10 m: 384, 20 m: 192, 30 m: 128, 60 m: 64).
pub const DEFAULT_TILE_SIZE: f64 = 3840.0;

/// Smallest tile side a grid may have, in CRS units (a micrometre in metres, about 10 cm in
/// degrees).
pub const MIN_TILE_SIZE: f64 = 1e-6;
/// Largest tile side a grid may have, in CRS units (10,000 km in metres).
pub const MAX_TILE_SIZE: f64 = 1e7;
/// Largest distance of a grid origin from 0 on either axis, in CRS units: far beyond any
/// projected CRS's coordinates, small enough that tile indices stay exact.
pub const MAX_COORDINATE: f64 = 1e9;

/// Most tiles a footprint may cover before [`GridSpec::tiles_covering`] refuses (a guard
/// against a degenerate footprint or a wrong CRS producing billions of tiles).
pub const MAX_TILES: u64 = 1 << 20;

/// The definition of a tile grid: CRS, origin and tile size, all in grid (CRS) units.
///
/// Stored in the warehouse (`pixelquery.json`); tile ids are stable forever for a given spec.
///
/// # Convention
/// Columns grow east and rows grow **south** from the origin, which is the top-left corner
/// of tile `x0_y0`. Tile `(col, row)` covers
/// `x in [origin_x + col*ts, origin_x + (col+1)*ts)` and
/// `y in (origin_y - (row+1)*ts, origin_y - row*ts]`, so every point of the plane belongs to
/// exactly one tile, and a north-up raster cut on the tile has its first row at the tile top.
///
/// Each product keeps its native resolution: a tile holds `tile_size / resolution` pixels per
/// side (see [`GridSpec::tile_pixels`]), so products of different resolution stack on the
/// same ground footprint without seams.
///
/// ```
/// use pixelquery::grid::{GridSpec, TileId};
/// let spec = GridSpec::new(32652, 0.0, 0.0, 3840.0).unwrap();
/// let tile = spec.tile_at(399_965.0, 4_040_035.0);
/// assert_eq!(tile.to_string(), "x104_y-1053");
/// let (gt, size) = spec.tile_geotransform(tile, 10.0).unwrap();
/// assert_eq!(size, 384);
/// assert_eq!((gt.origin_x, gt.origin_y), (399_360.0, 4_043_520.0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    /// EPSG code of the grid CRS.
    pub epsg: u32,
    /// Grid origin x (tile column 0 starts here).
    pub origin_x: f64,
    /// Grid origin y (top edge of tile row 0; rows grow southward).
    pub origin_y: f64,
    /// Tile side length in CRS units.
    pub tile_size: f64,
}

impl GridSpec {
    /// A validated spec: the CRS must be known, the origin finite and within
    /// [`MAX_COORDINATE`] of 0, the tile size within [`MIN_TILE_SIZE`, `MAX_TILE_SIZE`].
    pub fn new(epsg: u32, origin_x: f64, origin_y: f64, tile_size: f64) -> Result<Self, Error> {
        let spec = GridSpec {
            epsg,
            origin_x,
            origin_y,
            tile_size,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks a spec read from storage or built by hand (see [`GridSpec::new`]).
    pub fn validate(&self) -> Result<(), Error> {
        if !(MIN_TILE_SIZE..=MAX_TILE_SIZE).contains(&self.tile_size) {
            return Err(Error::TileSize {
                tile_size: self.tile_size,
            });
        }
        let sane = |v: f64| v.is_finite() && v.abs() <= MAX_COORDINATE;
        if !(sane(self.origin_x) && sane(self.origin_y)) {
            return Err(Error::Origin {
                x: self.origin_x,
                y: self.origin_y,
            });
        }
        self.crs()?;
        Ok(())
    }

    /// The default spec for a new warehouse, from its first scene: the scene's CRS when it is
    /// projected (UTM for Sentinel-2 and Landsat), else the WGS84 UTM zone of the scene centre;
    /// origin (0, 0) and [`DEFAULT_TILE_SIZE`]. `crs` and `tile_size` override (`--crs`,
    /// `--tile-size`).
    pub fn default_for_scene(
        scene_crs: &Crs,
        scene_bounds: &Bounds,
        crs: Option<u32>,
        tile_size: Option<f64>,
    ) -> Result<Self, Error> {
        let epsg = match crs {
            Some(code) => code,
            None if scene_crs.is_projected() => scene_crs.epsg(),
            None => {
                let ll = scene_crs.lonlat_bounds(scene_bounds)?;
                let lon = 0.5 * (ll.min_x + ll.max_x);
                let lat = 0.5 * (ll.min_y + ll.max_y);
                Crs::utm_for_lonlat(lon, lat)?.epsg()
            }
        };
        GridSpec::new(epsg, 0.0, 0.0, tile_size.unwrap_or(DEFAULT_TILE_SIZE))
    }

    /// The grid CRS.
    pub fn crs(&self) -> Result<Crs, Error> {
        Ok(Crs::from_epsg(self.epsg)?)
    }

    /// Pixels per tile side at `resolution` (CRS units per pixel): an error unless
    /// `tile_size / resolution` is an integer (within 1e-9 relative), because a fractional
    /// count would make tiles of that product overlap or leave gaps.
    pub fn tile_pixels(&self, resolution: f64) -> Result<u32, Error> {
        let bad = || Error::Resolution {
            tile_size: self.tile_size,
            resolution,
        };
        if !(resolution.is_finite() && resolution > 0.0) {
            return Err(bad());
        }
        let n = self.tile_size / resolution;
        let r = n.round();
        if r < 1.0 || r > u32::MAX as f64 || (n - r).abs() > 1e-9 * n.max(1.0) {
            return Err(bad());
        }
        Ok(r as u32)
    }

    /// The tile containing grid-CRS point (x, y) (see the type's convention).
    pub fn tile_at(&self, x: f64, y: f64) -> TileId {
        let col = ((x - self.origin_x) / self.tile_size).floor();
        // Row r covers (oy-(r+1)ts, oy-r*ts], i.e. (oy - y)/ts in [r, r+1).
        let row = ((self.origin_y - y) / self.tile_size).floor();
        TileId::new(col as i64, row as i64)
    }

    /// Bounds of a tile in the grid CRS.
    pub fn tile_bounds(&self, tile: TileId) -> Bounds {
        let ts = self.tile_size;
        let min_x = self.origin_x + tile.col as f64 * ts;
        let max_y = self.origin_y - tile.row as f64 * ts;
        Bounds::new(min_x, max_y - ts, min_x + ts, max_y)
    }

    /// Bounds of a tile in lon/lat degrees (densified edges).
    pub fn tile_lonlat_bounds(&self, tile: TileId) -> Result<Bounds, Error> {
        Ok(self.crs()?.lonlat_bounds(&self.tile_bounds(tile))?)
    }

    /// The north-up geotransform and pixel count per side of a tile at `resolution`.
    pub fn tile_geotransform(
        &self,
        tile: TileId,
        resolution: f64,
    ) -> Result<(GeoTransform, u32), Error> {
        let n = self.tile_pixels(resolution)?;
        let b = self.tile_bounds(tile);
        Ok((
            GeoTransform::north_up(b.min_x, b.max_y, resolution, resolution),
            n,
        ))
    }

    /// Tiles intersecting a rectangle given in the grid CRS (touching edges excluded), in
    /// row-major order.
    pub fn tiles_in(&self, bounds: &Bounds) -> Result<Vec<TileId>, Error> {
        if bounds.is_empty()
            || !(bounds.min_x.is_finite()
                && bounds.max_x.is_finite()
                && bounds.min_y.is_finite()
                && bounds.max_y.is_finite())
        {
            return Ok(Vec::new());
        }
        let ts = self.tile_size;
        let col0 = ((bounds.min_x - self.origin_x) / ts).floor();
        let col1 = ((bounds.max_x - self.origin_x) / ts).ceil() - 1.0;
        let row0 = ((self.origin_y - bounds.max_y) / ts).floor();
        let row1 = ((self.origin_y - bounds.min_y) / ts).ceil() - 1.0;
        let count = (col1 - col0 + 1.0).max(0.0) * (row1 - row0 + 1.0).max(0.0);
        if count > MAX_TILES as f64 {
            return Err(Error::TooManyTiles {
                count,
                limit: MAX_TILES,
            });
        }
        let (col0, col1, row0, row1) = (col0 as i64, col1 as i64, row0 as i64, row1 as i64);
        let mut out = Vec::with_capacity(count as usize);
        for row in row0..=row1 {
            for col in col0..=col1 {
                out.push(TileId::new(col, row));
            }
        }
        Ok(out)
    }

    /// Tiles covering a footprint given in any CRS: the footprint's edges are densified and
    /// transformed into the grid CRS, then every tile meeting their bounding box is returned.
    pub fn tiles_covering(&self, footprint: &Bounds, crs: &Crs) -> Result<Vec<TileId>, Error> {
        let grid_crs = self.crs()?;
        let b = Transformer::new(crs, &grid_crs).transform_bounds(footprint, 21)?;
        self.tiles_in(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_id_round_trips_including_negative() {
        for t in [TileId::new(0, 0), TileId::new(12, -3), TileId::new(-7, 41)] {
            assert_eq!(t.to_string().parse::<TileId>().unwrap(), t);
        }
        assert_eq!(TileId::new(-1, 2).to_string(), "x-1_y2");
    }

    #[test]
    fn tile_id_rejects_garbage() {
        for s in [
            "", "x1y2", "x_y", "x1_y", "y1_x2", "x1_y2/..", "x+1_y2", "x01_y2", "x1_y2 ",
        ] {
            assert!(s.parse::<TileId>().is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn default_tile_size_divides_builtin_resolutions() {
        let spec = GridSpec::new(32652, 0.0, 0.0, DEFAULT_TILE_SIZE).unwrap();
        let px: Vec<u32> = [3.0, 10.0, 20.0, 30.0, 60.0]
            .iter()
            .map(|r| spec.tile_pixels(*r).unwrap())
            .collect();
        assert_eq!(px, [1280, 384, 192, 128, 64]);
        assert!(spec.tile_pixels(7.0).is_err());
        assert!(spec.tile_pixels(0.0).is_err());
        assert!(spec.tile_pixels(f64::NAN).is_err());
        assert!(spec.tile_pixels(5000.0).is_err());
    }

    #[test]
    fn spec_validation() {
        assert!(GridSpec::new(32652, 0.0, 0.0, 0.0).is_err());
        assert!(GridSpec::new(32652, f64::NAN, 0.0, 10.0).is_err());
        for ts in [-3840.0, 1e300, f64::INFINITY, f64::NAN, 1e-300] {
            assert!(matches!(
                GridSpec::new(32652, 0.0, 0.0, ts),
                Err(Error::TileSize { .. })
            ));
        }
        assert!(matches!(
            GridSpec::new(32652, 0.0, 1e308, 3840.0),
            Err(Error::Origin { .. })
        ));
        GridSpec::new(4326, -180.0, 90.0, 0.25).unwrap();
        let e = GridSpec::new(12, 0.0, 0.0, 10.0).unwrap_err();
        assert!(e.to_string().contains("12"), "{e}");
    }

    #[test]
    fn tiles_partition_the_plane() {
        let spec = GridSpec::new(32652, 100.0, 50.0, 10.0).unwrap();
        // Tile x0_y0 covers x in [100, 110), y in (40, 50].
        assert_eq!(spec.tile_at(100.0, 50.0), TileId::new(0, 0));
        assert_eq!(spec.tile_at(109.999, 40.001), TileId::new(0, 0));
        assert_eq!(spec.tile_at(110.0, 50.0), TileId::new(1, 0));
        assert_eq!(spec.tile_at(100.0, 40.0), TileId::new(0, 1));
        assert_eq!(spec.tile_at(99.0, 51.0), TileId::new(-1, -1));
        for t in [TileId::new(0, 0), TileId::new(-3, 7), TileId::new(5, -2)] {
            let b = spec.tile_bounds(t);
            assert_eq!(b.width(), 10.0);
            assert_eq!(spec.tile_at(b.min_x, b.max_y), t);
            assert_eq!(spec.tile_at(b.max_x - 1e-6, b.min_y + 1e-6), t);
        }
    }

    #[test]
    fn tiles_in_excludes_touching_edges() {
        let spec = GridSpec::new(32652, 0.0, 0.0, 10.0).unwrap();
        let t = spec.tiles_in(&Bounds::new(0.0, -10.0, 10.0, 0.0)).unwrap();
        assert_eq!(t, vec![TileId::new(0, 0)]);
        let t = spec.tiles_in(&Bounds::new(5.0, -25.0, 15.0, -5.0)).unwrap();
        assert_eq!(t.len(), 6);
        assert_eq!(t[0], TileId::new(0, 0));
        assert_eq!(t[5], TileId::new(1, 2));
        assert!(spec
            .tiles_in(&Bounds::new(0.0, 0.0, 0.0, 5.0))
            .unwrap()
            .is_empty());
        assert!(spec.tiles_in(&Bounds::new(0.0, 0.0, 1e9, 1e9)).is_err());
    }

    #[test]
    fn tiles_covering_other_crs_footprint() {
        // The corpus S2 scene: 1024 px at 10 m from (399960, 4040040) in UTM 52N.
        let spec = GridSpec::new(32652, 0.0, 0.0, DEFAULT_TILE_SIZE).unwrap();
        let utm = Crs::from_epsg(32652).unwrap();
        let scene = Bounds::new(399_960.0, 4_029_800.0, 410_200.0, 4_040_040.0);
        let native = spec.tiles_covering(&scene, &utm).unwrap();
        // x: 399960/3840 = 104.2 .. 410200/3840 = 106.8 -> cols 104..=106;
        // rows: -4040040/3840 = -1052.1 -> row -1053 .. -4029800/3840 = -1049.4 -> -1050.
        assert_eq!(native.len(), 3 * 4);
        assert_eq!(native[0], TileId::new(104, -1053));
        // The same footprint in lon/lat covers at least those tiles.
        let ll = utm.lonlat_bounds(&scene).unwrap();
        let from_ll = spec.tiles_covering(&ll, &Crs::wgs84()).unwrap();
        assert!(native.iter().all(|t| from_ll.contains(t)));
        let tb = spec.tile_lonlat_bounds(native[0]).unwrap();
        assert!(tb.min_x > 127.8 && tb.max_x < 128.0 && tb.min_y > 36.4 && tb.max_y < 36.6);
    }

    #[test]
    fn default_spec_follows_first_scene() {
        let utm = Crs::from_epsg(32652).unwrap();
        let b = Bounds::new(399_960.0, 4_029_800.0, 410_200.0, 4_040_040.0);
        let s = GridSpec::default_for_scene(&utm, &b, None, None).unwrap();
        assert_eq!(
            (s.epsg, s.origin_x, s.origin_y, s.tile_size),
            (32652, 0.0, 0.0, 3840.0)
        );
        let ll = Bounds::new(127.9, 36.4, 128.0, 36.5);
        let s = GridSpec::default_for_scene(&Crs::wgs84(), &ll, None, Some(1920.0)).unwrap();
        assert_eq!((s.epsg, s.tile_size), (32652, 1920.0));
        let s = GridSpec::default_for_scene(&utm, &b, Some(3857), None).unwrap();
        assert_eq!(s.epsg, 3857);
    }

    #[test]
    fn spec_json_shape_is_stable() {
        let s = GridSpec::new(32652, 0.0, 0.0, 3840.0).unwrap();
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(
            j,
            r#"{"epsg":32652,"origin_x":0.0,"origin_y":0.0,"tile_size":3840.0}"#
        );
        assert_eq!(serde_json::from_str::<GridSpec>(&j).unwrap(), s);
    }
}
