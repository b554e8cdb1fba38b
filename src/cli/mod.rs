//! Argument parsing and dispatch. Each subcommand lives in its own file and only calls the
//! library and prints; errors become one line `error: <reason>` and a non-zero exit.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod compact;
mod inspect;
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
    /// Describe a GeoTIFF/COG: CRS, size, bands, codec, layout, overviews, bounds, time.
    Inspect(inspect::Args),
    /// Merge each tile's small fragments per period into one (atomic commit).
    Compact(compact::Args),
    /// Delete files that no retained snapshot references.
    Vacuum(vacuum::Args),
    /// Check every referenced file's existence, checksum and schema (exit 0 only if healthy).
    Verify(verify::Args),
}

/// What a subcommand reports back: success, or "ran but found problems" (exit 1),
/// distinct from an error that stopped it (exit 2).
pub enum Outcome {
    /// Everything went fine.
    Ok,
    /// The command ran and reports an unhealthy result (for example `verify`).
    #[allow(dead_code)]
    Unhealthy,
}

/// Parses the command line, runs the command and turns its result into an exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Compact(args) => compact::run(args),
        Command::Vacuum(args) => vacuum::run(args),
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
