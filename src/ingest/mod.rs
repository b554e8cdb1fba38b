//! Ingestion: from scenes on disk, in buckets or in STAC items to warehouse fragments.
//!
//! `discover` turns inputs into scenes, `naming` reads dates and band tokens from file
//! names, `stac` reads STAC Items, and `profile` describes products.

pub mod discover;
pub mod naming;
pub mod profile;
pub mod stac;

pub use discover::{discover, Asset, SceneSource};
pub use profile::{BandProfile, BandRole, CloudMaskRule, ProductProfile};
