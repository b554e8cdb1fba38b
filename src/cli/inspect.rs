//! `pixelquery inspect`.

use super::{CliResult, Outcome};
use std::path::PathBuf;

/// Arguments of `pixelquery inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The GeoTIFF/COG to describe.
    pub file: PathBuf,
}

/// Runs the command.
pub fn run(_args: Args) -> CliResult {
    Ok(Outcome::Ok)
}
