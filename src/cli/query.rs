//! `pixelquery query WAREHOUSE (--point | --bbox | --geojson) ...`.

use super::{parse_epsg, CliResult, Outcome};
use pixelquery::query::export::{self, ExportOptions, OutputType, PngKind};
use pixelquery::query::{Period, Reducer, Region};
use pixelquery::store::Warehouse;
use pixelquery::time::parse_time_range;
use std::path::PathBuf;

/// Arguments of `pixelquery query`.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("where").required(true).args(["point", "bbox", "geojson"]))]
pub struct Args {
    /// The warehouse: a folder or s3://bucket/prefix.
    pub warehouse: PathBuf,
    /// One location: LON,LAT (or X,Y in --crs).
    #[arg(long, allow_hyphen_values = true)]
    pub point: Option<String>,
    /// A box: MINX,MINY,MAXX,MAXY (lon/lat unless --crs).
    #[arg(long, allow_hyphen_values = true)]
    pub bbox: Option<String>,
    /// A GeoJSON file with Polygon/MultiPolygon geometries (pixels outside are masked).
    #[arg(long)]
    pub geojson: Option<PathBuf>,
    /// CRS of the coordinates (EPSG:N; default EPSG:4326 lon/lat).
    #[arg(long, value_parser = parse_epsg, default_value = "EPSG:4326")]
    pub crs: u32,
    /// Time range START..END (dates YYYY-MM-DD or RFC 3339; inclusive; either side may be empty).
    #[arg(long)]
    pub time: Option<String>,
    /// Bands (names or aliases such as red,nir).
    #[arg(long, value_delimiter = ',')]
    pub bands: Option<Vec<String>>,
    /// Product id(s): one, or several (a,b) for one multi-sensor time axis; default: every
    /// product that has the requested bands.
    #[arg(long, value_delimiter = ',')]
    pub product: Option<Vec<String>>,
    /// Leave out products that lack a requested band (or their cloud band) instead of failing.
    #[arg(long)]
    pub skip_missing: bool,
    /// Kernel resampling stored tiles onto the query grid: near, bilinear, cubic, average or
    /// mode (default: nearest where the output is as fine or finer, average where coarser).
    #[arg(long)]
    pub resampling: Option<pixelquery::warp::Resampling>,
    /// With --group-by solar-day: mosaic the products of one solar day too (first valid
    /// pixel in acquisition order wins); by default days are mosaicked within a product.
    #[arg(long)]
    pub across_products: bool,
    /// Band math, e.g. '(nir - red) / (nir + red)'.
    #[arg(long, conflicts_with = "index")]
    pub expr: Option<String>,
    /// A named index: ndvi, evi, ndwi or nbr.
    #[arg(long)]
    pub index: Option<String>,
    /// Mask clouds with the product's rule (`--mask clouds`).
    #[arg(long)]
    pub mask: Option<String>,
    /// Apply scale/offset to physical values.
    #[arg(long)]
    pub physical: bool,
    /// Temporal composite: median, mean, min, max, count, first, last.
    #[arg(long)]
    pub composite: Option<Reducer>,
    /// Composite period: month, year or Nd (default: the whole range).
    #[arg(long)]
    pub period: Option<Period>,
    /// Mosaic scenes of one solar day into one time step (`--group-by solar-day`).
    #[arg(long)]
    pub group_by: Option<String>,
    /// Output resolution in grid units (default: the finest selected band).
    #[arg(long)]
    pub resolution: Option<f64>,
    /// Read snapshot VERSION instead of the latest.
    #[arg(long)]
    pub as_of: Option<u64>,
    /// Write the result: .tif (one COG, bands by time and band), DIR/ (one COG per date),
    /// .zarr (Zarr v3), .parquet or .csv (pixels as a long table), .json, .png (chart or picture).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sample type of files: native (the bands' own type), float32, float64, or an integer
    /// type that holds the bands' values (default: native unless band math, --physical or a
    /// median/mean/count composite need floats).
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Tables (.csv, .json, .parquet) hold per-date statistics of the area instead of pixels.
    #[arg(long)]
    pub stats: bool,
    /// Drop time steps without a single valid pixel (by default every observation whose
    /// scene covers the place is a time step, so queries over one place share a time axis).
    #[arg(long)]
    pub drop_empty: bool,
    /// Add overviews to GeoTIFFs (2x averages; costs a pass over the written blocks).
    #[arg(long)]
    pub overviews: bool,
    /// Block compression: auto (GeoTIFF: DEFLATE with predictor; Zarr: none), deflate
    /// (Zarr: gzip) or none.
    #[arg(long, default_value = "auto", value_parser = ["auto", "deflate", "none"])]
    pub compress: String,
    /// Memory budget in MB: files are written in chunks that fit, and cubes held whole
    /// (points, PNGs, printed statistics) must fit (default: a quarter of the RAM).
    #[arg(long)]
    pub memory_budget: Option<u64>,
    /// Print to stderr, as JSON, the requests and bytes the query exchanged with an
    /// object-storage warehouse (catalog and fragments).
    #[arg(long)]
    pub io_stats: bool,
}

/// Where the query looks, for chart titles.
fn place(args: &Args) -> Option<String> {
    let crs = if args.crs == 4326 {
        String::new()
    } else {
        format!(" (EPSG:{})", args.crs)
    };
    if let Some(p) = &args.point {
        let v: Vec<&str> = p.split(',').map(str::trim).collect();
        return Some(if args.crs == 4326 && v.len() == 2 {
            format!("lon {}, lat {}", v[0], v[1])
        } else {
            format!("{p}{crs}")
        });
    }
    if let Some(b) = &args.bbox {
        return Some(format!("box {b}{crs}"));
    }
    args.geojson
        .as_ref()
        .and_then(|g| g.file_name())
        .map(|n| n.to_string_lossy().into_owned())
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let warehouse = Warehouse::open(&args.warehouse)?;
    let (region, png) = match (&args.point, &args.bbox, &args.geojson) {
        (Some(p), _, _) => (Region::parse_point(p)?, PngKind::Chart),
        (_, Some(b), _) => (Region::parse_bbox(b)?, PngKind::Image),
        (_, _, Some(g)) => (Region::from_geojson_file(g)?, PngKind::Chart),
        _ => return Err("give --point, --bbox or --geojson".into()),
    };
    let mut q = warehouse
        .query()
        .region(region)
        .crs(args.crs)
        .physical(args.physical);
    if let Some(t) = &args.time {
        let (start, end) = parse_time_range(t)?;
        q = q.time(start, end);
    }
    if let Some(b) = &args.bands {
        q = q.bands(b);
    }
    if let Some(p) = &args.product {
        q = q.products(p);
    }
    q = q
        .skip_missing(args.skip_missing)
        .across_products(args.across_products);
    if let Some(r) = args.resampling {
        q = q.resampling(r);
    }
    if let Some(e) = &args.expr {
        q = q.expr(e);
    }
    if let Some(i) = &args.index {
        q = q.index(i)?;
    }
    match args.mask.as_deref() {
        None => {}
        Some("clouds") => q = q.mask_clouds(true),
        Some(other) => {
            return Err(format!("invalid --mask {other:?}: the only mask is 'clouds'").into())
        }
    }
    match args.group_by.as_deref() {
        None => {}
        Some("solar-day" | "solar_day") => q = q.group_by_solar_day(true),
        Some(other) => return Err(format!("invalid --group-by {other:?}: use solar-day").into()),
    }
    if let Some(r) = args.composite {
        q = q.composite(r, args.period.unwrap_or(Period::All));
    } else if args.period.is_some() {
        return Err("--period needs --composite".into());
    }
    if let Some(r) = args.resolution {
        q = q.resolution(r);
    }
    if let Some(v) = args.as_of {
        q = q.as_of(v);
    }
    if let Some(mb) = args.memory_budget {
        if mb == 0 {
            return Err("invalid --memory-budget 0: give megabytes, e.g. 1024".into());
        }
        q = q.memory_budget(mb.saturating_mul(1 << 20));
    }
    if let Some(out) = &args.out {
        // Fail on a bad output name before any work.
        export::Format::of(out)?;
    }
    let dtype: OutputType = args.dtype.parse()?;
    let mut plan = q.prepare()?;
    if args.drop_empty {
        plan.drop_empty_steps()?;
    }
    if plan.source_products().len() > 1 {
        eprintln!(
            "note: {} products ({}): values are physical, each product's own scale and offset \
             (its own surface reflectance, not harmonised across sensors)",
            plan.source_products().len(),
            plan.source_products().join(", ")
        );
    }
    let (t, b, h, w) = plan.dim();
    if t == 0 {
        eprintln!(
            "note: no observation {}covers this place{}: the result has no time steps",
            if args.drop_empty {
                "with valid pixels "
            } else {
                ""
            },
            args.time
                .as_deref()
                .map(|t| format!(" in {t}"))
                .unwrap_or_default()
        );
    }
    let point = h * w == 1;
    if let Some(out) = &args.out {
        let options = ExportOptions {
            dtype,
            stats: args.stats,
            overviews: args.overviews,
            compression: export::OutputCompression::parse(&args.compress).unwrap_or_default(),
            png: Some(png),
            place: place(&args),
        };
        match export::write_plan(&plan, out, &options)? {
            Some(written) => eprintln!("{written}"),
            None => eprintln!(
                "note: {} not written: there is nothing to put in it ({t} times x {b} bands)",
                out.display()
            ),
        }
    }
    if point {
        print!("{}", export::print_point_table(&plan.cube()?));
    } else if args.out.is_none() {
        // An area on the terminal: its per-date statistics.
        print!("{}", export::statistics_csv(&plan)?);
    }
    if args.io_stats {
        let stats = warehouse.storage().transfer_stats();
        let json = serde_json::json!({
            "warehouse": warehouse.location().display(),
            "requests": stats.requests,
            "bytes": stats.bytes,
            "retries": stats.retries,
        });
        eprintln!("{json}");
    }
    // The process ends here: the system takes its memory back at once, without the
    // snapshot's decoded batches being freed one by one (2 ms for a pixel over 5 years).
    std::mem::forget(plan);
    Ok(Outcome::Ok)
}
