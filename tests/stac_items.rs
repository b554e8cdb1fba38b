//! Real published STAC Items (`fixtures/stac/`, see its README for sources and licences) from
//! Earth Search, Planetary Computer and USGS ingest with only the assets of the requested
//! bands reachable, and give physical values by each item's own rules.
//!
//! Each item's red, NIR and cloud-band hrefs are pointed at local COGs (served over HTTP on
//! 127.0.0.1) and its projection and footprint at theirs; every other asset keeps its
//! published href, which would fail (or reach the internet) if it were opened.

mod common;
mod support;

use pixelquery::store::{BandScaling, Warehouse};
use serde_json::{json, Value};
use std::path::Path;
use support::stac_api::*;
use support::stac_data::*;

/// A fixture: file, product, asset keys of red, NIR and the cloud band, and the scale and
/// offset of red by the item's own rules.
struct Case {
    file: &'static str,
    product: &'static str,
    assets: [&'static str; 3],
    red: (f64, f64),
    why: &'static str,
}

const CASES: [Case; 7] = [
    Case {
        file: "earth-search_sentinel-2-l2a_S2B_20EPT_20250731_0_L2A.json",
        product: "sentinel2_l2a",
        assets: ["red", "nir", "scl"],
        red: (1e-4, 0.0),
        why: "baseline 05.11, but earthsearch:boa_offset_applied: the declared -0.1 is already in the pixels",
    },
    Case {
        file: "earth-search_sentinel-2-l2a_S2A_13TDE_20231008_0_L2A.json",
        product: "sentinel2_l2a",
        assets: ["red", "nir", "scl"],
        red: (1e-4, 0.0),
        why: "baseline 05.09 with the offset applied by Earth Search",
    },
    Case {
        file: "earth-search_sentinel-2-c1-l2a_S2B_T20EPT_20250731T131905_L2A.json",
        product: "sentinel2_l2a",
        assets: ["red", "nir", "scl"],
        red: (1e-4, -0.1),
        why: "Collection 1 keeps the baseline offset: raster:bands as declared",
    },
    Case {
        file: "earth-search_landsat-c2-l2_LC08_L2SP_033032_20231008_02_T1.json",
        product: "landsat8_c2l2",
        assets: ["red", "nir08", "qa_pixel"],
        red: (2.75e-5, -0.2),
        why: "raster:bands",
    },
    Case {
        file: "planetary-computer_sentinel-2-l2a_S2A_MSIL2A_20190101T000001_R116_T58UFE_20201007T214651.json",
        product: "sentinel2_l2a",
        assets: ["B04", "B08", "SCL"],
        red: (1e-4, 0.0),
        why: "nothing declared; baseline 02.12 carries no offset",
    },
    Case {
        file: "planetary-computer_landsat-c2-l2_LC09_L2SR_084074_20250722_02_T1.json",
        product: "landsat9_c2l2",
        assets: ["red", "nir08", "qa_pixel"],
        red: (2.75e-5, -0.2),
        why: "raster:bands",
    },
    Case {
        file: "usgs_landsat-c2l2-sr_LE07_L2SP_044033_20210329_20210424_02_T1_SR.json",
        product: "landsat7_c2l2",
        assets: ["red", "nir08", "qa_pixel"],
        red: (2.75e-5, -0.2),
        why: "nothing declared: the Landsat 7 profile (red is band 3)",
    },
];

/// Points the item's asset `key` at `href`, its projection at the local files', and its
/// footprint at theirs.
fn localise(item: &mut Value, keys: &[&str], base: &str, files: [&str; 3]) {
    let b = lonlat_bounds();
    item["bbox"] = json!([b.min_x, b.min_y, b.max_x, b.max_y]);
    item["geometry"] = json!({"type": "Polygon", "coordinates": [[[b.min_x, b.min_y], [b.max_x, b.min_y], [b.max_x, b.max_y], [b.min_x, b.max_y], [b.min_x, b.min_y]]]});
    let props = item["properties"].as_object_mut().unwrap();
    if props.contains_key("proj:code") || !props.contains_key("proj:epsg") {
        props.insert("proj:code".into(), json!(format!("EPSG:{EPSG}")));
    }
    if props.contains_key("proj:epsg") {
        props.insert("proj:epsg".into(), json!(EPSG));
    }
    for (key, file) in keys.iter().zip(files) {
        let a = item["assets"][*key].as_object_mut().unwrap();
        a.insert("href".into(), json!(format!("{base}/{file}")));
        for k in ["proj:epsg", "proj:code"] {
            if a.contains_key(k) {
                a.insert(
                    k.into(),
                    if k == "proj:epsg" {
                        json!(EPSG)
                    } else {
                        json!(format!("EPSG:{EPSG}"))
                    },
                );
            }
        }
    }
}

fn fixture(name: &str) -> Value {
    let path = common::fixtures().join("stac").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn real_items_ingest_with_only_the_requested_assets_and_their_own_scale_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    // Sentinel-2 files at 10 m, Landsat files at 30 m.
    write_scene(&root.join("s2"), 0, 0, SIZE);
    write_scene(&root.join("landsat"), 0, 0, SIZE / 3);
    let server = HttpServer::start(files(root.clone(), Require::default()));
    for case in &CASES {
        let landsat = case.product.starts_with("landsat");
        let folder = if landsat { "landsat" } else { "s2" };
        let mut item = fixture(case.file);
        let id = item["id"].as_str().unwrap().to_string();
        let published: Vec<String> = item["assets"]
            .as_object()
            .unwrap()
            .values()
            .map(|a| a["href"].as_str().unwrap().to_string())
            .collect();
        let base = format!("{}/{folder}", server.base());
        localise(
            &mut item,
            &case.assets,
            &base,
            ["B04.tif", "B08.tif", "SCL.tif"],
        );
        let path = dir.path().join(format!("{id}.json"));
        std::fs::write(&path, serde_json::to_vec(&item).unwrap()).unwrap();
        let wh = dir.path().join(format!("wh_{id}"));
        let before = server.log().len();
        let (code, stdout, stderr) = common::run_cli(
            &[
                "ingest",
                &wh.display().to_string(),
                &path.display().to_string(),
                "--product",
                case.product,
                "--bands",
                "red,nir",
                "--json",
            ],
            &[],
        );
        assert_eq!(code, 0, "{}: {stderr}\n{stdout}", case.file);
        let report: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["scenes_ingested"], 1, "{}: {stdout}", case.file);
        // Only the three local files were read; no published href was touched (they would
        // fail here, without the internet).
        for p in &server.paths()[before..] {
            assert!(
                ["B04.tif", "B08.tif", "SCL.tif"]
                    .iter()
                    .any(|f| *p == format!("/{folder}/{f}")),
                "{}: {p}",
                case.file
            );
        }
        assert!(published.len() > 3);

        // Physical red is the file's DN by the item's own scale and offset.
        let wh = Warehouse::open(&wh).unwrap();
        let snap = wh.snapshot(None).unwrap();
        let scene = &snap.scenes()[0].scene;
        assert_eq!(scene.scene_id, id);
        let red_band = red_band(case.product);
        assert_eq!(
            scene.scaling.get(red_band).copied().unwrap_or(BandScaling {
                scale: profile_scale(case.product).0,
                offset: profile_scale(case.product).1
            }),
            BandScaling {
                scale: case.red.0,
                offset: case.red.1
            },
            "{}: {}",
            case.file,
            case.why
        );
        // Pixel (column 2, row 1) at the files' resolution.
        let k = if landsat { 3 } else { 1 };
        let res = 10.0 * k as f64;
        let cube = wh
            .query()
            .crs(EPSG)
            .point(ORIGIN.0 + res * 2.5, ORIGIN.1 - res * 1.5)
            .bands(&["red"])
            .physical(true)
            .run()
            .unwrap();
        let want = true_dn(0, 0, k, 2 * k) as f64 * case.red.0 + case.red.1;
        let got = cube.data[[0, 0, 0, 0]] as f64;
        assert!(
            (got - want).abs() < 1e-5,
            "{}: {got} != {want} ({})",
            case.file,
            case.why
        );
        assert_eq!(
            cube.times[0],
            chrono::DateTime::parse_from_rfc3339(item["properties"]["datetime"].as_str().unwrap())
                .unwrap()
                .with_timezone(&chrono::Utc)
        );
    }
}

/// The profile's red band.
fn red_band(product: &str) -> &'static str {
    match product {
        "sentinel2_l2a" => "B04",
        "landsat7_c2l2" | "landsat5_c2l2" => "SR_B3",
        _ => "SR_B4",
    }
}

/// The profile's scale and offset of reflectance.
fn profile_scale(product: &str) -> (f64, f64) {
    if product.starts_with("landsat") {
        (2.75e-5, -0.2)
    } else {
        (1e-4, 0.0)
    }
}

#[test]
fn an_item_whose_projection_or_footprint_disagrees_with_its_file_fails_or_warns() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    write_scene(&root, 0, 0, SIZE);
    let server = HttpServer::start(files(root.clone(), Require::default()));
    let mut item = fixture(CASES[0].file);
    localise(
        &mut item,
        &CASES[0].assets,
        &server.base(),
        ["B04.tif", "B08.tif", "SCL.tif"],
    );
    // The published projection (EPSG:32720) over files in EPSG:32652.
    item["properties"]["proj:epsg"] = json!(32720);
    let path = dir.path().join("item.json");
    std::fs::write(&path, serde_json::to_vec(&item).unwrap()).unwrap();
    let run = |wh: &Path, extra: &[&str]| {
        let (w, p) = (wh.display().to_string(), path.display().to_string());
        let mut args = vec![
            "ingest",
            &w,
            &p,
            "--product",
            "sentinel2_l2a",
            "--bands",
            "red",
        ];
        args.extend_from_slice(extra);
        common::run_cli(&args, &[])
    };
    let (code, _, stderr) = run(&dir.path().join("a"), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("EPSG:32720")
            && stderr.contains("EPSG:32652")
            && stderr.contains("--allow-mismatch"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&dir.path().join("b"), &["--allow-mismatch"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("EPSG:32720"),
        "{stderr}"
    );

    // A footprint elsewhere (the published one, in the Antarctic).
    let mut item = fixture(CASES[0].file);
    let published_bbox = item["bbox"].clone();
    localise(
        &mut item,
        &CASES[0].assets,
        &server.base(),
        ["B04.tif", "B08.tif", "SCL.tif"],
    );
    item["bbox"] = published_bbox;
    std::fs::write(&path, serde_json::to_vec(&item).unwrap()).unwrap();
    let (code, _, stderr) = run(&dir.path().join("c"), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("footprint") && stderr.contains("does not overlap"),
        "{stderr}"
    );
}
