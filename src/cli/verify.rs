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
    if let (Some(first), Some(last)) = (
        r.incomplete_versions.keys().next(),
        r.incomplete_versions.keys().next_back(),
    ) {
        let span = if first == last {
            format!("version {first} names")
        } else {
            format!("versions {first} to {last} name")
        };
        match r.newest_complete {
            Some(good) => println!(
                "data loss: {span} missing files; `pixelquery restore {}` goes back to version {good}, the newest complete one, then re-run the ingest to add what was lost",
                args.warehouse.display()
            ),
            None => println!("data loss: {span} missing files, and no retained version is complete"),
        }
    }
    if let (Some(first), Some(last)) = (
        r.abandoned_versions.keys().next(),
        r.abandoned_versions.keys().next_back(),
    ) {
        println!(
            "note: versions {first} to {last} were abandoned by a restore and miss files; --as-of cannot read them (vacuum expires them)"
        );
    }
    Ok(if r.is_healthy() {
        Outcome::Ok
    } else {
        Outcome::Unhealthy
    })
}
