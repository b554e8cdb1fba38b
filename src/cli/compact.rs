//! `pixelquery compact`.

use super::{CliResult, Outcome};
use pixelquery::store::{compact, CompactPeriod, Warehouse};
use std::path::PathBuf;

/// Arguments of `pixelquery compact`.
#[derive(clap::Args)]
pub struct Args {
    /// The warehouse directory.
    pub warehouse: PathBuf,
    /// Merge the fragments of each tile, band and product per `month`, `year` or `all`.
    #[arg(long, default_value = "month")]
    pub period: String,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let period = CompactPeriod::parse(&args.period).ok_or_else(|| {
        format!(
            "invalid period {:?}: expected month, year or all",
            args.period
        )
    })?;
    let wh = Warehouse::open(&args.warehouse)?;
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
