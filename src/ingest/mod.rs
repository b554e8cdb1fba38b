//! Ingestion: from scenes on disk, in buckets or in STAC items to warehouse fragments.
//!
//! `discover` turns inputs into scenes, `naming` reads dates and band tokens from file
//! names and `stac` reads STAC Items and searches STAC APIs; product profiles live in
//! [`crate::profile`]. `cut`
//! plans and cuts a file onto the grid, `schedule` chooses the order of its tiles within
//! the memory budget (`budget`), `pieces` keeps decoded pixels between grid rows, and
//! `buffer` gathers observations into fragments.

pub mod budget;
mod buffer;
pub mod cut;
pub mod discover;
pub mod naming;
mod pieces;
pub mod pipeline;
pub mod scene;
pub mod schedule;
pub mod shard;
pub mod stac;

pub use discover::{discover, discover_with, Asset, BandValues, Discovered, SceneSource};
