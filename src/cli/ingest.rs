//! `pixelquery ingest WAREHOUSE INPUT...`.

use super::{parse_epsg, CliResult, Outcome};
use indicatif::{ProgressBar, ProgressStyle};
use pixelquery::ingest::pipeline::{ingest, IngestOptions, IngestReport, Progress};
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
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Product profile: sentinel2_l2a, landsat8_c2l2, landsat9_c2l2, planet_sr, or a .toml/.json file.
    #[arg(long)]
    pub product: Option<String>,
    /// Band names of multi-band files, in file order (e.g. B02,B03,B04,B08).
    #[arg(long, value_delimiter = ',')]
    pub bands: Option<Vec<String>>,
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
}

fn print_summary(r: &IngestReport) {
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
        product: args.product,
        bands: args.bands,
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
        ..Default::default()
    };
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
    let work = || ingest(&args.warehouse, &args.inputs, &options, &progress);
    let report = match args.jobs {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()?
            .install(work)?,
        None => work()?,
    };
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
