//! `pixelquery restore`.

use super::{CliResult, Outcome};
use pixelquery::store::{restore, OpenOptions, Warehouse};
use std::path::PathBuf;

/// Arguments of `pixelquery restore`.
#[derive(clap::Args)]
pub struct Args {
    /// The warehouse: a folder or s3://bucket/prefix.
    pub warehouse: PathBuf,
    /// The version to go back to (default: the newest one whose files all exist).
    #[arg(long)]
    pub version: Option<u64>,
    /// Write to an object store that ignores conditional creates. Safe only when this is
    /// the only process that ever writes to the warehouse.
    #[arg(long)]
    pub unsafe_single_writer: bool,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let options = OpenOptions {
        unsafe_single_writer: args.unsafe_single_writer,
        ..Default::default()
    };
    let wh = Warehouse::open_with(&args.warehouse, &options)?;
    let r = restore(&wh, args.version)?;
    match r.version {
        Some(v) => println!(
            "restored version {} as version {v} ({} catalog parts removed, {} re-added); re-run the ingest to add the scenes committed after version {}",
            r.restored, r.parts_removed, r.parts_added, r.restored
        ),
        None => println!(
            "the latest version already equals version {}: nothing to do",
            r.restored
        ),
    }
    Ok(Outcome::Ok)
}
