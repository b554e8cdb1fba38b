//! `pixelquery info WAREHOUSE [--as-of VERSION] [--json [--rows]]`.

use super::{CliResult, Outcome};
use pixelquery::store::{FragmentEntry, SceneEntry, Snapshot, Warehouse};
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `pixelquery info`.
#[derive(clap::Args)]
pub struct Args {
    /// The warehouse: a folder or s3://bucket/prefix.
    pub warehouse: PathBuf,
    /// Describe this version instead of the latest.
    #[arg(long)]
    pub as_of: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// With `--json`: also list every catalog row (one per fragment and per scene) of the
    /// version, as any Delta reader of `catalog/` sees them.
    #[arg(long, requires = "json")]
    pub rows: bool,
}

/// A fragment row in JSON (times in RFC 3339 with microseconds).
#[derive(Serialize)]
struct FragmentRow<'a> {
    tile: String,
    band: &'a str,
    product: &'a str,
    time_min: String,
    time_max: String,
    observations: u64,
    resolution: f64,
    path: &'a str,
    bytes: u64,
    checksum: &'a str,
    dtype: &'a str,
    width: u32,
    height: u32,
    valid_count: u64,
}

/// A scene row in JSON.
#[derive(Serialize)]
struct SceneRow<'a> {
    scene_id: &'a str,
    source: &'a str,
    acquired: String,
    product: &'a str,
    cloud_cover: Option<f64>,
    fingerprint: &'a str,
    ingested: String,
    /// The scene's own scale and offset per band, as the catalog column holds them (JSON).
    scaling: Option<String>,
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn fragment_row(f: &FragmentEntry) -> FragmentRow<'_> {
    FragmentRow {
        tile: f.tile.to_string(),
        band: &f.band,
        product: &f.product,
        time_min: time(f.time_min),
        time_max: time(f.time_max),
        observations: f.observations,
        resolution: f.resolution,
        path: &f.path,
        bytes: f.bytes,
        checksum: &f.checksum,
        dtype: f.dtype.name(),
        width: f.width,
        height: f.height,
        valid_count: f.valid_count,
    }
}

fn scene_row(s: &SceneEntry) -> SceneRow<'_> {
    SceneRow {
        scene_id: &s.scene.scene_id,
        source: &s.scene.source,
        acquired: time(s.scene.acquired),
        product: &s.scene.product,
        cloud_cover: s.scene.cloud_cover,
        fingerprint: &s.scene.fingerprint,
        ingested: time(s.ingested),
        scaling: (!s.scene.scaling.is_empty())
            .then(|| serde_json::to_string(&s.scene.scaling).unwrap_or_default()),
    }
}

fn rows_json(snapshot: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "fragments": snapshot.fragments().iter().map(fragment_row).collect::<Vec<_>>(),
        "scenes": snapshot.scenes().iter().map(scene_row).collect::<Vec<_>>(),
    })
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let wh = Warehouse::open(&args.warehouse)?;
    let snapshot = wh.snapshot(args.as_of)?;
    let info = wh.info_of(&snapshot)?;
    if args.json {
        let mut value = serde_json::to_value(&info)?;
        if args.rows {
            value["rows"] = rows_json(&snapshot);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{info}");
    }
    Ok(Outcome::Ok)
}
