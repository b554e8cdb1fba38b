//! Ingestion: from scenes on disk, in buckets or in STAC items to warehouse fragments.
//!
//! `discover` turns inputs into scenes, `naming` reads dates and band tokens from file
//! names, `stac` reads STAC Items, and `profile` describes products.

pub mod cut;
pub mod discover;
pub mod naming;
pub mod pipeline;
pub mod profile;
pub mod scene;
pub mod stac;

pub use discover::{discover, Asset, SceneSource};
pub use profile::{BandProfile, BandRole, CloudMaskRule, ProductProfile};
