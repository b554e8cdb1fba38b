#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod cog;
pub mod dtype;
pub mod geo;
pub mod grid;
pub mod source;
pub mod store;

pub use dtype::{DataType, Sample};
pub use geo::{Bounds, GeoTransform};
pub use grid::{GridSpec, TileId};
