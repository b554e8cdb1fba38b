//! `pixelquery vacuum`.

use super::{CliResult, Outcome};
use pixelquery::store::{parse_duration, vacuum, Warehouse};
use std::path::PathBuf;

/// Arguments of `pixelquery vacuum`.
#[derive(clap::Args)]
pub struct Args {
    /// The warehouse: a folder or s3://bucket/prefix.
    pub warehouse: PathBuf,
    /// Keep versions (and unreferenced files) younger than this, e.g. `7d`, `12h`, `0`.
    #[arg(long, default_value = "7d")]
    pub older_than: String,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let older_than = parse_duration(&args.older_than)?;
    let wh = Warehouse::open(&args.warehouse)?;
    let r = vacuum(&wh, older_than)?;
    for s in &r.skipped {
        println!("skipped: {s}");
    }
    println!(
        "deleted {} files ({} bytes) and {} log files; versions before {} expired; {} recent unreferenced files kept; {} names skipped (not PixelQuery's: links are never followed)",
        r.deleted.len(),
        r.bytes_freed,
        r.log_files_deleted,
        r.expire_before,
        r.kept_recent,
        r.skipped.len()
    );
    Ok(Outcome::Ok)
}
