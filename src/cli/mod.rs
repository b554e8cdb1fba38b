//! Argument parsing and dispatch. Each subcommand lives in its own file and only calls the
//! library and prints; errors become one line `error: <reason>` and a non-zero exit.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod compact;
mod demo;
mod info;
mod ingest;
mod inspect;
mod query;
mod restore;
mod serve;
mod vacuum;
mod verify;

/// PixelQuery: Cloud-Optimized GeoTIFFs in, analysis-ready time-series cube out.
#[derive(Parser)]
#[command(name = "pixelquery", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic time series, ingest it and query NDVI: a tour that needs nothing else.
    Demo(demo::Args),
    /// Describe a GeoTIFF/COG: CRS, size, bands, codec, layout, overviews, bounds, time.
    Inspect(inspect::Args),
    /// Ingest COGs (files, folders, URLs, STAC items, a STAC API search) into a warehouse.
    Ingest(ingest::Args),
    /// Summarise a warehouse: grid, products, bands, scenes, time span, storage, snapshots.
    Info(info::Args),
    /// Time series and cubes by point, bbox or polygon, with band math and composites.
    Query(query::Args),
    /// Serve the warehouse over HTTP: map tiles, point series, statistics and a map page.
    Serve(serve::Args),
    /// Merge each tile's small fragments per period into one (atomic commit).
    Compact(compact::Args),
    /// Delete files that no retained snapshot references.
    Vacuum(vacuum::Args),
    /// Go back to an earlier (by default the newest complete) version in a new commit.
    Restore(restore::Args),
    /// Check every referenced file's existence, checksum and schema (exit 0 only if healthy).
    Verify(verify::Args),
}

/// What a subcommand reports back: success, or "ran but found problems" (exit 1),
/// distinct from an error that stopped it (exit 2).
pub enum Outcome {
    /// Everything went fine.
    Ok,
    /// The command ran and reports an unhealthy result (for example `verify`).
    Unhealthy,
}

/// Parses the command line, runs the command and turns its result into an exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Info(args) => info::run(args),
        Command::Query(args) => query::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Compact(args) => compact::run(args),
        Command::Vacuum(args) => vacuum::run(args),
        Command::Restore(args) => restore::run(args),
        Command::Verify(args) => verify::run(args),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Unhealthy) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Any library error, boxed: the CLI only prints it.
pub type CliResult = Result<Outcome, Box<dyn std::error::Error>>;

/// Parses `EPSG:32652` or `32652`.
pub fn parse_epsg(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = t
        .strip_prefix("EPSG:")
        .or_else(|| t.strip_prefix("epsg:"))
        .unwrap_or(t);
    digits
        .parse::<u32>()
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(|| format!("invalid CRS {text:?}: use EPSG:N, e.g. EPSG:32652"))
}
