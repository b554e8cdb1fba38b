//! `pixelquery ingest WAREHOUSE INPUT...`.

use super::{parse_epsg, CliResult, Outcome};
use indicatif::{ProgressBar, ProgressStyle};
use pixelquery::ingest::pipeline::{ingest, IngestOptions, IngestReport, Progress};
use pixelquery::ingest::scene::Mismatch;
use pixelquery::ingest::stac::{self, Provider, SearchSpec, SigningOptions};
use pixelquery::store::{ChunkShape, FragmentCompression};
use pixelquery::warp::Resampling;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Arguments of `pixelquery ingest`.
#[derive(clap::Args)]
pub struct Args {
    /// The warehouse: a folder or s3://bucket/prefix (created when it does not exist).
    pub warehouse: PathBuf,
    /// COG files, folders, URLs (http(s)://, s3://), STAC Item JSON files, or .txt lists.
    #[arg(required_unless_present_any = ["stac_api", "update"], conflicts_with_all = ["stac_api", "update"])]
    pub inputs: Vec<String>,
    /// Search this STAC API (its landing page URL) and ingest the items found; the search is
    /// recorded in the warehouse for --update.
    #[arg(
        long,
        value_name = "URL",
        requires = "collections",
        conflicts_with = "update"
    )]
    pub stac_api: Option<String>,
    /// Collections to search (with --stac-api), e.g. sentinel-2-c1-l2a,landsat-c2-l2.
    #[arg(long, value_delimiter = ',', requires = "stac_api")]
    pub collections: Option<Vec<String>>,
    /// Search area W,S,E,N in degrees (with --stac-api).
    #[arg(
        long,
        value_name = "W,S,E,N",
        requires = "stac_api",
        allow_hyphen_values = true
    )]
    pub bbox: Option<String>,
    /// Search area as a GeoJSON file (a geometry, a feature, or one feature of a collection).
    #[arg(
        long,
        value_name = "FILE",
        requires = "stac_api",
        conflicts_with = "bbox"
    )]
    pub intersects: Option<PathBuf>,
    /// Search time: a date, month or year, START/END, open ends as .. (with --stac-api).
    #[arg(long, requires = "stac_api")]
    pub datetime: Option<String>,
    /// CQL2 text filter on item properties, e.g. "eo:cloud_cover < 20" (with --stac-api).
    #[arg(long, requires = "stac_api")]
    pub filter: Option<String>,
    /// Stop the search after N items (with --stac-api).
    #[arg(long, requires = "stac_api")]
    pub max_items: Option<u64>,
    /// Items per page asked of the API (default 100).
    #[arg(long, requires = "stac_api")]
    pub page_size: Option<u32>,
    /// Whose API: earth-search, planetary-computer or generic (default: from the URL).
    #[arg(long, requires = "stac_api")]
    pub provider: Option<Provider>,
    /// Run every search recorded in the warehouse again and ingest only what is new.
    #[arg(long)]
    pub update: bool,
    /// Product profile: sentinel2_l2a, landsat5_c2l2, landsat7_c2l2, landsat8_c2l2,
    /// landsat9_c2l2, planet_sr, or a .toml/.json file (STAC searches: by collection).
    #[arg(long)]
    pub product: Option<String>,
    /// Bands: for STAC items and searches, the bands to ingest (by any name the product or
    /// the item knows: red, B04, SR_B4); for multi-band files, their names in file order.
    #[arg(long, value_delimiter = ',')]
    pub bands: Option<Vec<String>>,
    /// With --bands, do not also ingest the product's cloud band (SCL, QA_PIXEL).
    #[arg(long)]
    pub no_cloud_band: bool,
    /// Ingest, with a warning, STAC items whose projection or footprint disagrees with their
    /// files (by default such a scene fails).
    #[arg(long)]
    pub allow_mismatch: bool,
    /// Only files matching this glob inside folders (e.g. '*_10m.tif').
    #[arg(long)]
    pub glob: Option<String>,
    /// Regex whose first group is the acquisition date in file names (wins over the time in
    /// STAC and the files' metadata when it matches).
    #[arg(long)]
    pub date_pattern: Option<String>,
    /// Resampling for continuous bands (quality bands always use nearest).
    #[arg(long, default_value = "nearest")]
    pub resampling: Resampling,
    /// Grid CRS of a new warehouse (EPSG:N); default: the first scene's projected CRS.
    #[arg(long, value_parser = parse_epsg)]
    pub crs: Option<u32>,
    /// Tile size of a new warehouse in grid units (default 3840).
    #[arg(long)]
    pub tile_size: Option<f64>,
    /// Commit after every N scenes (default: one commit for the run).
    #[arg(long)]
    pub commit_every: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Memory budget in MB for everything the run holds: decoded source pixels, tiles being
    /// cut, observations waiting to be written and fragment encode buffers.
    #[arg(long, default_value_t = 256)]
    pub memory_budget: u64,
    /// Fragment compression of a new warehouse: zstd, lz4 or none.
    #[arg(long, default_value = "zstd")]
    pub compression: String,
    /// Store whole tiles in a new warehouse instead of cropping fragments to their data.
    #[arg(long)]
    pub no_crop: bool,
    /// Chunks of a new warehouse's fragments: ROWSxCOLSxOBSERVATIONS (pixels of the tile by
    /// observations per block), e.g. 32x32x16 (the default).
    #[arg(long, value_parser = parse_chunk_shape)]
    pub chunk_shape: Option<ChunkShape>,
    /// Ingest only the K-th of N deterministic shards of the scenes found (K from 0), so N
    /// workers given the same inputs share them (e.g. `--shard $JOB_COMPLETION_INDEX/8`).
    #[arg(long)]
    pub shard: Option<pixelquery::ingest::shard::Shard>,
    /// Write to an object store that ignores conditional creates. Safe only when this is
    /// the only process that ever writes to the warehouse.
    #[arg(long)]
    pub unsafe_single_writer: bool,
    /// Do not merge fragments after commits (they pile up one per commit and tile-band until
    /// `pixelquery compact`).
    #[arg(long)]
    pub no_auto_compact: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A progress bar on a terminal, nothing otherwise.
struct Bar {
    bar: Option<ProgressBar>,
    bytes: AtomicU64,
    start: Instant,
}

impl Progress for Bar {
    fn begin(&self, scenes: usize) {
        if let Some(b) = &self.bar {
            b.set_length(scenes as u64);
        }
    }

    fn scene_done(&self, scene: &str, bytes: u64, _tiles: usize) {
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(b) = &self.bar {
            let mbs = total as f64 / 1e6 / self.start.elapsed().as_secs_f64().max(1e-3);
            b.set_message(format!("{mbs:.0} MB/s  {scene}"));
            b.inc(1);
        }
    }

    fn flushing(&self, fragments: usize) {
        if let Some(b) = &self.bar {
            b.set_message(format!("writing {fragments} fragments"));
        }
    }

    fn searching(&self, items: usize, matched: Option<u64>) {
        if let Some(b) = &self.bar {
            match matched {
                Some(m) => {
                    b.set_length(m);
                    b.set_position(items as u64);
                    b.set_message(format!("searching: {items} of {m} items"));
                }
                None => b.set_message(format!("searching: {items} items")),
            }
        }
    }
}

fn print_summary(r: &IngestReport) {
    for s in &r.stac {
        let matched = s
            .matched
            .map(|m| format!(" of {m} matched"))
            .unwrap_or_default();
        let filtered = if s.filtered_out > 0 {
            format!(", {} left out by the filter", s.filtered_out)
        } else {
            String::new()
        };
        println!(
            "searched {} ({}): {} items{matched} in {} pages{filtered}, {} duplicates, {:.2} s",
            s.api, s.search, s.returned, s.pages, s.duplicates, s.discovery_seconds
        );
    }
    println!(
        "ingested {} of {} scenes ({} skipped, {} failed) in {:.2} s",
        r.scenes_ingested,
        r.scenes_found,
        r.skipped.len(),
        r.failed.len(),
        r.seconds
    );
    println!(
        "{} tiles, {} tile-band observations, {} fragments; read {:.1} MB, wrote {:.1} MB; versions {:?}",
        r.tiles,
        r.tile_observations,
        r.fragments,
        r.bytes_in as f64 / 1e6,
        r.bytes_out as f64 / 1e6,
        r.versions
    );
    if r.compaction_merges > 0 {
        println!(
            "compaction: {} merges wrote {:.1} MB",
            r.compaction_merges,
            r.compaction_bytes as f64 / 1e6
        );
    }
    for e in &r.compaction_errors {
        eprintln!("compaction stopped (the commits stand): {e}");
    }
    for s in &r.skipped {
        println!("skipped {}: {}", s.scene, s.reason);
    }
    for s in &r.warnings {
        eprintln!("warning {}: {}", s.scene, s.reason);
    }
    for s in &r.failed {
        eprintln!("failed  {}: {}", s.scene, s.reason);
    }
}

/// Parses `ROWSxCOLSxOBSERVATIONS`.
fn parse_chunk_shape(text: &str) -> Result<ChunkShape, String> {
    let parts: Vec<u32> = text
        .split(['x', 'X'])
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("expected ROWSxCOLSxOBSERVATIONS, e.g. 32x32x16, not {text:?}"))?;
    let [rows, cols, observations] = parts[..] else {
        return Err(format!(
            "expected ROWSxCOLSxOBSERVATIONS, e.g. 32x32x16, not {text:?}"
        ));
    };
    let shape = ChunkShape {
        rows,
        cols,
        observations,
    };
    shape.check()?;
    Ok(shape)
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let compression = FragmentCompression::parse(&args.compression).ok_or_else(|| {
        format!(
            "invalid --compression {:?}: use zstd, lz4 or none",
            args.compression
        )
    })?;
    let options = IngestOptions {
        product: args.product.clone(),
        bands: args.bands.clone(),
        glob: args.glob,
        date_pattern: args.date_pattern,
        resampling: args.resampling,
        crs: args.crs,
        tile_size: args.tile_size,
        commit_every: args.commit_every,
        memory_budget: args.memory_budget.saturating_mul(1 << 20),
        compression,
        crop: !args.no_crop,
        chunk: args.chunk_shape.unwrap_or_default(),
        shard: args.shard,
        unsafe_single_writer: args.unsafe_single_writer,
        no_auto_compact: args.no_auto_compact,
        cloud_band: !args.no_cloud_band,
        mismatch: if args.allow_mismatch {
            Mismatch::Warn
        } else {
            Mismatch::Error
        },
        ..Default::default()
    };
    let search = match &args.stac_api {
        Some(api) => {
            let mut spec = SearchSpec::new(api, &[]);
            spec.collections = args.collections.clone().unwrap_or_default();
            spec.bbox = args
                .bbox
                .as_deref()
                .map(stac::search::parse_bbox)
                .transpose()?;
            spec.intersects = args
                .intersects
                .as_deref()
                .map(stac::search::read_geometry)
                .transpose()?;
            spec.datetime = args.datetime.clone();
            spec.filter = args.filter.clone();
            spec.max_items = args.max_items;
            spec.limit = args.page_size;
            spec.provider = args.provider;
            spec.product = args.product.clone();
            spec.bands = args.bands.clone();
            spec.cloud_band = !args.no_cloud_band;
            spec.check()?;
            Some(spec)
        }
        None => None,
    };
    if args.update && (args.product.is_some() || args.bands.is_some()) {
        return Err("--update runs the recorded searches with their own --product and --bands; leave those out".into());
    }
    let bar = (std::io::stderr().is_terminal() && !args.json).then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} scenes  {elapsed_precise} eta {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let progress = Bar {
        bar,
        bytes: AtomicU64::new(0),
        start: Instant::now(),
    };
    let signing = SigningOptions::default();
    let work = || -> Result<IngestReport, Box<dyn std::error::Error + Send + Sync>> {
        Ok(match (&search, args.update) {
            (Some(spec), _) => {
                stac::ingest_search(&args.warehouse, spec, &options, &signing, &progress)?
            }
            (None, true) => stac::update(&args.warehouse, &options, &signing, &progress)?,
            (None, false) => ingest(&args.warehouse, &args.inputs, &options, &progress)?,
        })
    };
    let report = match args.jobs {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()?
            .install(work),
        None => work(),
    }
    .map_err(|e| e as Box<dyn std::error::Error>)?;
    if let Some(b) = &progress.bar {
        b.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(if report.failed.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Unhealthy
    })
}
