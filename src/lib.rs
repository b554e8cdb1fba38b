#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod cog;
pub mod crs;
pub mod demo;
pub mod dtype;
#[doc(hidden)]
pub mod fuzzing;
pub mod geo;
pub mod grid;
pub mod ingest;
pub mod profile;
pub mod query;
pub mod serve;
pub mod source;
pub mod store;
pub mod time;
pub mod warp;

pub use dtype::{DataType, Sample};
pub use geo::{Bounds, GeoTransform};
pub use grid::{GridSpec, TileId};
