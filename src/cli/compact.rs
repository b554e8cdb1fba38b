//! `pixelquery compact`.

use super::{CliResult, Outcome};
use pixelquery::store::{compact, CompactPeriod, OpenOptions, Warehouse};
use std::path::PathBuf;

/// Arguments of `pixelquery compact`.
#[derive(clap::Args)]
pub struct Args {
    /// The warehouse: a folder or s3://bucket/prefix.
    pub warehouse: PathBuf,
    /// Merge the fragments of each tile, band and product per `month`, `year` or `all`.
    #[arg(long, default_value = "month")]
    pub period: String,
    /// Write to an object store that ignores conditional creates. Safe only when this is
    /// the only process that ever writes to the warehouse.
    #[arg(long)]
    pub unsafe_single_writer: bool,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let period = CompactPeriod::parse(&args.period).ok_or_else(|| {
        format!(
            "invalid period {:?}: expected month, year or all",
            args.period
        )
    })?;
    let options = OpenOptions {
        unsafe_single_writer: args.unsafe_single_writer,
        ..Default::default()
    };
    let wh = Warehouse::open_with(&args.warehouse, &options)?;
    let r = compact(&wh, period)?;
    match r.version {
        Some(v) => println!(
            "compacted {} groups: {} -> {} fragments, {} catalog parts replaced (version {v})",
            r.groups_merged, r.fragments_before, r.fragments_after, r.parts_replaced
        ),
        None => println!("nothing to compact ({} fragments)", r.fragments_before),
    }
    Ok(Outcome::Ok)
}
