//! `pixelquery inspect FILE [--json] [--pixel-hash]`.

use super::{CliResult, Outcome};
use pixelquery::cog::{Cog, CogInfo};
use std::path::PathBuf;

/// Arguments of `pixelquery inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The GeoTIFF/COG to describe.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also decode every pixel and print `pixels_sha256_16` (SHA-256 over the full-resolution
    /// pixels, native type, little-endian, band-sequential; first 16 hex digits).
    #[arg(long)]
    pub pixel_hash: bool,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let cog = Cog::open(&args.file)?;
    let mut info = CogInfo::new(cog.meta());
    if args.pixel_hash {
        info.pixels_sha256_16 = Some(cog.pixel_hash()?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{info}");
    }
    Ok(Outcome::Ok)
}
