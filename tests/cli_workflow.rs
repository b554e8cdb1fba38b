//! The CLI tour as a user runs it: demo, ingest, info, query (text, CSV, JSON, PNG, GeoTIFF),
//! with one-line errors and exit codes.

mod common;

use std::path::Path;

fn pq(args: &[&str]) -> (i32, String, String) {
    common::run_cli(args, &[])
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn demo_with_landsat_charts_one_series_from_both_sensors() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let (code, out, err) = pq(&["demo", &s(&demo), "--with-landsat"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("7 Landsat-like scenes ingested"), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("2024-")).collect();
    let (s2, l8) = (pixelquery::demo::DATES, pixelquery::demo::LANDSAT_DATES);
    assert_eq!(rows.len(), s2.len() + l8.len(), "{out}");
    // One time axis in date order, each row from its own sensor.
    assert!(rows.windows(2).all(|w| w[0][..10] < w[1][..10]), "{out}");
    for row in &rows {
        let from_landsat = l8.contains(&&row[..10]);
        assert_eq!(row.contains("LDEMO_"), from_landsat, "{row}");
    }
    // Each product's clouds are masked by its own rule (SCL; QA_PIXEL).
    for cloudy in [
        pixelquery::demo::CLOUDY_DATE,
        pixelquery::demo::LANDSAT_CLOUDY_DATE,
    ] {
        let row = rows.iter().find(|r| r.starts_with(cloudy)).unwrap();
        assert!(row.contains(" - "), "{row}");
    }
    // The other Landsat dates carry NDVI values like the Sentinel-2 ones.
    let value = |r: &str| {
        r.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
    };
    for row in rows.iter().filter(|r| !r.contains(" - ")) {
        let v = value(row).unwrap_or_else(|| panic!("{row}"));
        assert!((0.2..0.9).contains(&v), "{row}");
    }
    assert!(demo.join("ndvi_fused.png").is_file());
    let (code, out, _) = pq(&["info", &s(&demo.join("warehouse")), "--json"]);
    assert_eq!(code, 0);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["scenes"], 15);
}

#[test]
fn demo_ingest_info_query() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let (code, out, err) = pq(&["demo", &s(&demo)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("8 scenes ingested"), "{out}");
    assert!(out.contains("2024-07-23") && out.contains("ndvi"), "{out}");
    for f in ["ndvi.png", "ndvi.csv", "ndvi_median.tif", "ndvi_median.png"] {
        assert!(demo.join(f).is_file(), "{f} missing");
    }
    // The cloudy date is masked in the demo's table.
    let cloudy = out.lines().find(|l| l.starts_with("2024-07-23")).unwrap();
    assert!(cloudy.contains(" - "), "{cloudy}");

    // Re-running ingest over the same scenes is a no-op.
    let wh = demo.join("warehouse");
    let (code, out, _) = pq(&[
        "ingest",
        &s(&wh),
        &s(&demo.join("scenes")),
        "--product",
        "sentinel2_l2a",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["scenes_ingested"], 0);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 8);

    let (code, out, _) = pq(&["info", &s(&wh), "--json"]);
    assert_eq!(code, 0);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["scenes"], 8);
    assert_eq!(info["grid"]["epsg"], 32652);
    let bands = info["products"]["sentinel2_l2a"].as_array().unwrap();
    assert!(bands
        .iter()
        .any(|b| b["band"] == "SCL" && b["resolution"] == 20.0));

    let (lon, lat) = pixelquery::demo::sample_point();
    let point = format!("{lon},{lat}");
    let (code, out, err) = pq(&[
        "query",
        &s(&wh),
        "--point",
        &point,
        "--bands",
        "red,nir",
        "--time",
        "2024-05-01..2024-08-31",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 5, "{out}");
    let csv = dir.path().join("p.csv");
    let (code, _, err) = pq(&[
        "query",
        &s(&wh),
        "--point",
        &point,
        "--index",
        "evi",
        "--mask",
        "clouds",
        "--out",
        &s(&csv),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("time,scene,product,band,x,y,value\n") && text.lines().count() == 9,
        "{text}"
    );

    let bbox = format!(
        "{},{},{},{}",
        lon - 0.01,
        lat - 0.01,
        lon + 0.01,
        lat + 0.01
    );
    for (ext, extra) in [
        ("tif", None),
        ("png", None),
        ("json", Some("--stats")),
        ("csv", None),
        ("parquet", Some("--stats")),
        ("zarr", None),
    ] {
        let out_file = dir.path().join(format!("area.{ext}"));
        let mut args = vec![
            "query".to_string(),
            s(&wh),
            "--bbox".into(),
            bbox.clone(),
            "--expr".into(),
            "(nir - red) / (nir + red)".into(),
            "--physical".into(),
            "--composite".into(),
            "median".into(),
            "--period".into(),
            "month".into(),
            "--out".into(),
            s(&out_file),
        ];
        args.extend(extra.map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = pq(&args);
        assert_eq!(code, 0, "{ext}: {err}");
        assert!(
            err.starts_with(&format!("wrote {}", out_file.display())),
            "{err}"
        );
        assert!(out_file.exists());
    }
    let pixels = std::fs::read_to_string(dir.path().join("area.csv")).unwrap();
    assert!(
        pixels.starts_with("time,product,band,x,y,value\n"),
        "{pixels}"
    );
    let tif = pixelquery::cog::Cog::open(dir.path().join("area.tif")).unwrap();
    assert_eq!(tif.meta().epsg(), Some(32652));
    assert!(tif.meta().band_count() >= 6, "one band per month");
}

#[test]
fn bad_input_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let wh = dir.path().join("wh");
    let demo_scenes = dir.path().join("scenes");
    pixelquery::demo::write_scenes(&demo_scenes).unwrap();
    let (code, _, err) = pq(&[
        "ingest",
        &s(&wh),
        &s(&demo_scenes),
        "--product",
        "sentinel9",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: ") && err.contains("sentinel9") && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = pq(&["ingest", &s(&wh), "/no/such/dir"]);
    assert_eq!(code, 2);
    assert!(err.contains("/no/such/dir"), "{err}");
    let (code, _, _) = pq(&[
        "ingest",
        &s(&wh),
        &s(&demo_scenes),
        "--product",
        "sentinel2_l2a",
    ]);
    assert_eq!(code, 0);
    for (args, needle) in [
        (vec!["--point", "abc"], "--point"),
        (
            vec!["--point", "127,37", "--time", "2024-13-01..2024-12-31"],
            "2024-13-01",
        ),
        (
            vec!["--point", "127,37", "--expr", "(nir - red"],
            "character",
        ),
        (vec!["--point", "127,37", "--index", "xyz"], "xyz"),
        (vec!["--point", "127,37", "--bands", "nope"], "nope"),
    ] {
        let mut full = vec!["query", wh.to_str().unwrap()];
        full.extend(args);
        let (code, _, err) = pq(&full);
        assert_ne!(code, 0);
        assert!(
            err.contains(needle) && err.lines().count() == 1,
            "{needle}: {err}"
        );
    }
    let (code, _, err) = pq(&["query", "/no/warehouse", "--point", "1,2"]);
    assert_ne!(code, 0);
    assert!(err.contains("/no/warehouse"), "{err}");
    let (code, _, err) = pq(&["info", &s(&dir.path().join("missing"))]);
    assert_ne!(code, 0);
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn a_failed_scene_makes_ingest_exit_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = dir.path().join("scenes");
    pixelquery::demo::write_scenes(&scenes).unwrap();
    std::fs::write(scenes.join("DEMO_20241201_B02_10m.tif"), b"garbage").unwrap();
    let (code, out, err) = pq(&[
        "ingest",
        &s(&dir.path().join("wh")),
        &s(&scenes),
        "--product",
        "sentinel2_l2a",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("ingested 8 of 9"), "{out}");
    assert!(
        err.contains("DEMO_20241201") && err.contains("not a TIFF"),
        "{err}"
    );
}
