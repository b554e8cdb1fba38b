//! Ingestion: from scenes on disk, in buckets or in STAC items to warehouse fragments.
//!
//! `discover` turns inputs into scenes, `naming` reads dates and band tokens from file
//! names and `stac` reads STAC Items; product profiles live in [`crate::profile`].

pub mod cut;
pub mod discover;
pub mod naming;
pub mod pipeline;
pub mod scene;
pub mod stac;

pub use discover::{discover, Asset, SceneSource};
