//! `pixelquery demo [DIR]`: synthetic scenes in, NDVI time series out.

use super::{CliResult, Outcome};
use pixelquery::demo;
use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use pixelquery::query::export::{self, PngKind};
use pixelquery::store::Warehouse;
use std::path::PathBuf;

/// Arguments of `pixelquery demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to write the scenes, the warehouse and the outputs (default: ./pixelquery-demo).
    pub dir: Option<PathBuf>,
    /// Also write a Landsat-8-like 30 m series over the same place, ingest it as a second
    /// product (`landsat8_c2l2`) and chart one NDVI series fused from both sensors.
    #[arg(long)]
    pub with_landsat: bool,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("pixelquery-demo"));
    let scenes_dir = dir.join("scenes");
    let warehouse_dir = dir.join("warehouse");
    println!("1. writing a synthetic Sentinel-2-like series ({} dates, 4 bands at 10 m + SCL at 20 m) to {}", demo::DATES.len(), scenes_dir.display());
    let files = demo::write_scenes(&scenes_dir)?;
    println!(
        "   {} tiled GeoTIFFs written with PixelQuery's own COG writer",
        files.len()
    );

    println!("2. ingesting into {}", warehouse_dir.display());
    let options = IngestOptions {
        product: Some("sentinel2_l2a".into()),
        ..Default::default()
    };
    let report = ingest(
        &warehouse_dir,
        &[scenes_dir.display().to_string()],
        &options,
        &Quiet,
    )?;
    println!(
        "   {} scenes ingested ({} already there) -> {} tiles, {} fragments, {:.1} MB, in {:.2} s",
        report.scenes_ingested,
        report.skipped.len(),
        report.tiles,
        report.fragments,
        report.bytes_out as f64 / 1e6,
        report.seconds
    );
    for f in &report.failed {
        eprintln!("   failed {}: {}", f.scene, f.reason);
    }

    let mut products = vec!["sentinel2_l2a"];
    if args.with_landsat {
        let l8_dir = dir.join("scenes_landsat");
        let files = demo::write_landsat_scenes(&l8_dir)?;
        println!(
            "   + a Landsat-8-like series ({} dates, red/NIR at 30 m + QA_PIXEL, {} files) in {}",
            demo::LANDSAT_DATES.len(),
            files.len(),
            l8_dir.display()
        );
        let options = IngestOptions {
            product: Some("landsat8_c2l2".into()),
            ..Default::default()
        };
        let report = ingest(
            &warehouse_dir,
            &[l8_dir.display().to_string()],
            &options,
            &Quiet,
        )?;
        println!(
            "   {} Landsat-like scenes ingested as landsat8_c2l2 ({} already there)",
            report.scenes_ingested,
            report.skipped.len()
        );
        for f in &report.failed {
            eprintln!("   failed {}: {}", f.scene, f.reason);
        }
        products.push("landsat8_c2l2");
    }

    let (lon, lat) = demo::sample_point();
    let masks = if args.with_landsat {
        "clouds masked with each product's own rule (SCL, QA_PIXEL); 30 m resampled onto 10 m"
    } else {
        "clouds masked with the SCL band"
    };
    println!("3. NDVI time series at lon {lon:.5}, lat {lat:.5}, {masks}:");
    let warehouse = Warehouse::open(&warehouse_dir)?;
    let cube = warehouse
        .query()
        .point(lon, lat)
        .products(&products)
        .index("ndvi")?
        .mask_clouds(true)
        .run()?;
    print!("{}", export::print_point_table(&cube));
    let name = if args.with_landsat {
        "ndvi_fused"
    } else {
        "ndvi"
    };
    let chart = dir.join(format!("{name}.png"));
    let csv = dir.join(format!("{name}.csv"));
    let chart_options = export::ExportOptions {
        png: Some(PngKind::Chart),
        place: Some(format!("lon {lon:.5}, lat {lat:.5}")),
        ..Default::default()
    };
    export::write_cube(&cube, &chart, &chart_options)?;
    export::write(&cube, &csv, PngKind::Chart)?;

    let (x0, y0) = (demo::ORIGIN.0 + 1000.0, demo::ORIGIN.1 - 4000.0);
    let bbox = pixelquery::Bounds::new(x0, y0, x0 + 3000.0, y0 + 3000.0);
    let median = warehouse
        .query()
        .products(&products)
        .bbox(bbox)
        .crs(32652)
        .index("ndvi")?
        .mask_clouds(true)
        .composite(
            pixelquery::query::Reducer::Median,
            pixelquery::query::Period::All,
        )
        .run()?;
    let tif = dir.join("ndvi_median.tif");
    let png = dir.join("ndvi_median.png");
    export::write(&median, &tif, PngKind::Image)?;
    let picture_options = export::ExportOptions {
        png: Some(PngKind::Image),
        place: Some(format!(
            "box {},{},{},{} (EPSG:32652)",
            bbox.min_x, bbox.min_y, bbox.max_x, bbox.max_y
        )),
        ..Default::default()
    };
    export::write_cube(&median, &png, &picture_options)?;
    println!("4. outputs:");
    for p in [&chart, &csv, &tif, &png] {
        println!("   {}", p.display());
    }
    println!(
        "   try: pixelquery query {} --point {lon:.5},{lat:.5} --bands red,nir --mask clouds",
        warehouse_dir.display()
    );
    Ok(Outcome::Ok)
}
