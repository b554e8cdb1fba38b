//! `pixelquery verify`.

use super::{CliResult, Outcome};
use pixelquery::store::{verify, Warehouse};
use std::path::PathBuf;

/// Arguments of `pixelquery verify`.
#[derive(clap::Args)]
pub struct Args {
    /// The warehouse: a folder or s3://bucket/prefix.
    pub warehouse: PathBuf,
}

/// Runs the command: exit 0 when healthy, 1 when problems were found.
pub fn run(args: Args) -> CliResult {
    let wh = Warehouse::open(&args.warehouse)?;
    let r = verify(&wh);
    for p in &r.problems {
        println!("problem: {p}");
    }
    println!(
        "version {}: {} catalog parts, {} fragments ({} bytes) checked, {} unreferenced files, {} problems",
        r.version.map_or("?".to_string(), |v| v.to_string()),
        r.parts_checked,
        r.fragments_checked,
        r.bytes_checked,
        r.unreferenced_files,
        r.problems.len()
    );
    Ok(if r.is_healthy() {
        Outcome::Ok
    } else {
        Outcome::Unhealthy
    })
}
