//! The tile grid every scene is cut onto: [`GridSpec`] and [`TileId`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Errors from grid definitions and tile names.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A tile name that is not `x{col}_y{row}`.
    #[error("invalid tile id {name:?}: expected x{{col}}_y{{row}}, e.g. x12_y-3")]
    TileName {
        /// The rejected text.
        name: String,
    },
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

/// The definition of a tile grid: CRS, origin and tile size, all in grid (CRS) units.
///
/// Stored in the warehouse; tile ids are stable forever for a given spec.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    /// EPSG code of the grid CRS.
    pub epsg: u32,
    /// Grid origin x (tile column 0 starts here).
    pub origin_x: f64,
    /// Grid origin y.
    pub origin_y: f64,
    /// Tile side length in CRS units.
    pub tile_size: f64,
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
}
