//! Tile matrix sets (OGC TileMatrixSet 2.0): `WebMercatorQuad`, and `WarehouseGrid`, the
//! warehouse's own grid, whose finest tiles are the warehouse's tiles.
//!
//! `WarehouseGrid` is in the grid's CRS. At its finest zoom a tile is one warehouse tile at the
//! finest resolution stored (384 px for 3840 m tiles at 10 m); each zoom out doubles the cell
//! size and the tile's span. Its origin lies far enough up and left of the grid's origin
//! (a power of two of tiles, covering 20,000 km) that every tile of a projected CRS has
//! non-negative indices: warehouse tile `x{col}_y{row}` is `(col + 2^K, row + 2^K)` at the
//! finest zoom `K + 1`.

use super::Error;
use crate::geo::Bounds;
use crate::grid::GridSpec;
use serde_json::{json, Value};

/// Half the side of the Web Mercator square (metres).
const WEB_MERCATOR_HALF: f64 = 20_037_508.342_789_244;
/// Deepest Web Mercator zoom served.
const WEB_MERCATOR_MAX_ZOOM: u8 = 24;
/// Span `WarehouseGrid` covers on each side of the grid origin, at least.
const WAREHOUSE_HALF_SPAN: f64 = 2.0e7;
/// OGC's standard rendering pixel size (metres) for scale denominators.
const PIXEL_SIZE: f64 = 0.00028;

/// Identifier of the Web Mercator set.
pub const WEB_MERCATOR_QUAD: &str = "WebMercatorQuad";
/// Identifier of the warehouse grid's set.
pub const WAREHOUSE_GRID: &str = "WarehouseGrid";

/// A tile matrix set of square tiles whose cell size halves at each zoom.
#[derive(Debug, Clone, PartialEq)]
pub struct TileMatrixSet {
    /// `WebMercatorQuad` or `WarehouseGrid`.
    pub id: &'static str,
    /// EPSG code of its CRS.
    pub epsg: u32,
    /// Top-left corner of every matrix.
    pub origin: (f64, f64),
    /// Cell size at zoom 0 (CRS units).
    pub cell_size_0: f64,
    /// Tile width and height in pixels.
    pub tile_pixels: usize,
    /// Deepest zoom.
    pub max_zoom: u8,
}

impl TileMatrixSet {
    /// The Web Mercator quadtree of web maps (EPSG:3857, 256 px tiles).
    pub fn web_mercator() -> TileMatrixSet {
        TileMatrixSet {
            id: WEB_MERCATOR_QUAD,
            epsg: 3857,
            origin: (-WEB_MERCATOR_HALF, WEB_MERCATOR_HALF),
            cell_size_0: 2.0 * WEB_MERCATOR_HALF / 256.0,
            tile_pixels: 256,
            max_zoom: WEB_MERCATOR_MAX_ZOOM,
        }
    }

    /// The warehouse grid's set, at the finest resolution `resolution` the warehouse stores.
    pub fn warehouse(grid: &GridSpec, resolution: f64) -> Result<TileMatrixSet, Error> {
        let pixels = grid
            .tile_pixels(resolution)
            .map_err(|e| Error::Internal(format!("warehouse grid: {e}")))?;
        let levels = (WAREHOUSE_HALF_SPAN / grid.tile_size)
            .log2()
            .ceil()
            .max(0.0) as i32;
        let half = grid.tile_size * 2f64.powi(levels);
        let max_zoom = (levels + 1) as u8;
        Ok(TileMatrixSet {
            id: WAREHOUSE_GRID,
            epsg: grid.epsg,
            origin: (grid.origin_x - half, grid.origin_y + half),
            cell_size_0: resolution * 2f64.powi(max_zoom as i32),
            tile_pixels: pixels as usize,
            max_zoom,
        })
    }

    /// Cell size at zoom `z`.
    pub fn cell_size(&self, z: u8) -> f64 {
        self.cell_size_0 / 2f64.powi(z as i32)
    }

    /// Tiles per row (and column) at zoom `z`.
    pub fn matrix_size(&self, z: u8) -> u64 {
        1u64 << z
    }

    /// Ground span of one tile at zoom `z`.
    pub fn tile_span(&self, z: u8) -> f64 {
        self.cell_size(z) * self.tile_pixels as f64
    }

    /// Bounds of tile (`x`, `y`) at zoom `z`, or which of them is out of range.
    pub fn tile_bounds(&self, z: u8, x: u64, y: u64) -> Result<Bounds, Error> {
        if z > self.max_zoom {
            return Err(Error::bad(
                "z",
                &format!("zoom {z} is past {}'s deepest, {}", self.id, self.max_zoom),
            ));
        }
        let n = self.matrix_size(z);
        for (name, v) in [("x", x), ("y", y)] {
            if v >= n {
                return Err(Error::bad(
                    name,
                    &format!("{v} is outside zoom {z}'s 0..{}", n - 1),
                ));
            }
        }
        let span = self.tile_span(z);
        let min_x = self.origin.0 + x as f64 * span;
        let max_y = self.origin.1 - y as f64 * span;
        Ok(Bounds::new(min_x, max_y - span, min_x + span, max_y))
    }

    /// The set as OGC TileMatrixSet 2.0 JSON.
    pub fn describe(&self) -> Value {
        let matrices: Vec<Value> = (0..=self.max_zoom)
            .map(|z| {
                let cell = self.cell_size(z);
                json!({
                    "id": z.to_string(),
                    "scaleDenominator": cell / PIXEL_SIZE,
                    "cellSize": cell,
                    "cornerOfOrigin": "topLeft",
                    "pointOfOrigin": [self.origin.0, self.origin.1],
                    "tileWidth": self.tile_pixels,
                    "tileHeight": self.tile_pixels,
                    "matrixWidth": self.matrix_size(z),
                    "matrixHeight": self.matrix_size(z),
                })
            })
            .collect();
        let title = match self.id {
            WEB_MERCATOR_QUAD => "Google Maps Compatible for the World".to_string(),
            _ => format!(
                "The warehouse's tile grid (EPSG:{}); its finest tiles are the warehouse's tiles",
                self.epsg
            ),
        };
        json!({
            "id": self.id,
            "title": title,
            "crs": format!("http://www.opengis.net/def/crs/EPSG/0/{}", self.epsg),
            "orderedAxes": ["E", "N"],
            "tileMatrices": matrices,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_mercator_matches_the_standard() {
        let t = TileMatrixSet::web_mercator();
        let b = t.tile_bounds(0, 0, 0).unwrap();
        assert_eq!((b.min_x, b.max_y), (-WEB_MERCATOR_HALF, WEB_MERCATOR_HALF));
        assert!((t.cell_size(0) - 156_543.033_928_041).abs() < 1e-6);
        let d = t.describe();
        assert!(
            (d["tileMatrices"][0]["scaleDenominator"].as_f64().unwrap() - 559_082_264.028_717_8)
                .abs()
                < 1e-3
        );
        // z=1: the north-east quarter.
        let ne = t.tile_bounds(1, 1, 0).unwrap();
        assert_eq!((ne.min_x, ne.min_y), (0.0, 0.0));
        for (z, x, y, name) in [(25, 0, 0, "z"), (1, 2, 0, "x"), (1, 0, 2, "y")] {
            let e = t.tile_bounds(z, x, y).unwrap_err();
            assert_eq!(e.parameter(), Some(name));
        }
    }

    #[test]
    fn warehouse_grid_finest_tiles_are_warehouse_tiles() {
        let grid = GridSpec::new(32652, 0.0, 0.0, 3840.0).unwrap();
        let t = TileMatrixSet::warehouse(&grid, 10.0).unwrap();
        assert_eq!(t.tile_pixels, 384);
        let z = t.max_zoom;
        let k = 1u64 << (z - 1);
        // Warehouse tile x83_y-1085 (a corner of the demo) at the finest zoom.
        let tile = crate::TileId::new(83, -1085);
        let b = t
            .tile_bounds(
                z,
                (tile.col + k as i64) as u64,
                (tile.row + k as i64) as u64,
            )
            .unwrap();
        assert_eq!(b, grid.tile_bounds(tile));
        assert_eq!(t.cell_size(z), 10.0);
        assert_eq!(t.cell_size(z - 1), 20.0);
        assert!(t.tile_span(0) >= 4.0e7);
    }
}
