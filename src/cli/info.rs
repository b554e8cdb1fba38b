//! `pixelquery info WAREHOUSE [--json]`.

use super::{CliResult, Outcome};
use pixelquery::store::Warehouse;
use std::path::PathBuf;

/// Arguments of `pixelquery info`.
#[derive(clap::Args)]
pub struct Args {
    /// The warehouse directory.
    pub warehouse: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let info = Warehouse::open(&args.warehouse)?.info()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{info}");
    }
    Ok(Outcome::Ok)
}
