//! `pixelquery inspect FILE [--json] [--pixel-hash]`.

use super::{CliResult, Outcome};
use pixelquery::cog::{Cog, CogInfo};
use pixelquery::source;
use std::path::PathBuf;

/// Arguments of `pixelquery inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The GeoTIFF/COG to describe: a path, an http(s):// URL or s3://bucket/key.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also decode every pixel and print `pixels_sha256_16` (SHA-256 over the full-resolution
    /// pixels, native type, little-endian, band-sequential; first 16 hex digits).
    #[arg(long)]
    pub pixel_hash: bool,
}

/// The JSON report: the file's description, plus what reading it cost when it is remote.
#[derive(serde::Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    info: &'a CogInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer: Option<pixelquery::source::TransferStats>,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let cog = match args.file.to_str() {
        Some(location) => Cog::from_source(source::open(location)?)?,
        None => Cog::open(&args.file)?, // a local path that is not UTF-8
    };
    let mut info = CogInfo::new(cog.meta());
    if args.pixel_hash {
        info.pixels_sha256_16 = Some(cog.pixel_hash()?);
    }
    let transfer = cog.source().stats(); // remote sources: requests and bytes used
    if args.json {
        let report = Report {
            info: &info,
            transfer,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{info}");
        if let Some(t) = transfer {
            println!("transfer: {} requests, {} bytes", t.requests, t.bytes);
        }
    }
    Ok(Outcome::Ok)
}
