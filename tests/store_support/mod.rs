//! Shared helpers for the warehouse integration tests: a small deterministic workload.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use pixelquery::store::*;
use pixelquery::{DataType, GeoTransform, GridSpec, TileId};

pub const SIZE: u32 = 16;
pub const BANDS: [&str; 2] = ["B04", "B08"];
pub const TILES: [(i64, i64); 2] = [(0, 0), (1, -1)];

pub fn grid() -> GridSpec {
    GridSpec {
        epsg: 32633,
        origin_x: 500_000.0,
        origin_y: 4_000_000.0,
        tile_size: 160.0,
    }
}

pub fn time_of(scene: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + scene as i64 * 5 * 86_400, 0).unwrap()
}

/// Pixel value of `scene` at `i` on a tile and band: recomputable by any checker.
pub fn pixel(scene: u32, tile: TileId, band: usize, i: usize) -> u16 {
    ((scene as usize * 1000 + (tile.col.unsigned_abs() as usize) * 100 + band * 10 + i) % 65_000)
        as u16
        + 1
}

pub fn scene_id(prefix: &str, scene: u32) -> String {
    format!("{prefix}-{scene:04}")
}

pub fn fragment(prefix: &str, scene: u32, tile: TileId, band: usize) -> FragmentData {
    let n = (SIZE * SIZE) as usize;
    let mut pixels: Vec<u16> = (0..n).map(|i| pixel(scene, tile, band, i)).collect();
    pixels[0] = 0; // one nodata pixel per observation
    FragmentData {
        tile,
        band: BANDS[band].to_string(),
        product: "S2".into(),
        dtype: DataType::U16,
        nodata: Some(0.0),
        scale: 1e-4,
        offset: 0.0,
        tile_transform: GeoTransform::north_up(
            500_000.0 + tile.col as f64 * 160.0,
            4_000_000.0 - tile.row as f64 * 160.0,
            10.0,
            10.0,
        ),
        width: SIZE,
        height: SIZE,
        footprint_lonlat: vec![
            (15.0 + tile.col as f64 * 0.01, 36.0),
            (15.01 + tile.col as f64 * 0.01, 36.0),
            (15.01 + tile.col as f64 * 0.01, 36.01),
            (15.0 + tile.col as f64 * 0.01, 36.01),
        ],
        resolution: 10.0,
        observations: vec![Observation {
            time: time_of(scene),
            scene_id: scene_id(prefix, scene),
            pixels: pixels.into(),
            valid: None,
        }],
    }
}

pub fn scene(prefix: &str, scene: u32) -> SceneRecord {
    SceneRecord {
        scene_id: scene_id(prefix, scene),
        source: format!("/data/{prefix}/{scene}.tif"),
        acquired: time_of(scene),
        product: "S2".into(),
        footprint_lonlat: vec![(15.0, 36.0), (15.03, 36.0), (15.03, 36.03), (15.0, 36.03)],
        cloud_cover: Some(scene as f64 % 100.0),
        fingerprint: format!("fp-{prefix}-{scene}"),
        ..Default::default()
    }
}

/// Ingests scenes `range` (one batch each, skipping committed fingerprints); returns how
/// many batches were committed.
pub fn ingest(wh: &Warehouse, prefix: &str, range: std::ops::Range<u32>) -> Result<u32> {
    let mut committed = 0;
    for s in range {
        let rec = scene(prefix, s);
        // Begin the batch first: commits after it are checked for the same scene.
        let batch = wh.begin_batch();
        if wh.snapshot(None)?.has_scene_fingerprint(&rec.fingerprint) {
            continue;
        }
        batch.register_product("S2", serde_json::json!({"bands": BANDS}))?;
        for &(c, r) in &TILES {
            for b in 0..BANDS.len() {
                batch.write_fragment(fragment(prefix, s, TileId::new(c, r), b))?;
            }
        }
        batch.add_scene(rec)?;
        // Another writer may commit the same scene meanwhile: the batch drops it (with its
        // observations), like ingest does, and creates no version.
        let c = batch.commit()?;
        if c.created {
            committed += 1;
        } else {
            assert_eq!(
                c.skipped.len(),
                1,
                "the scene was committed by another writer"
            );
        }
    }
    Ok(committed)
}

/// Checks a snapshot: every scene it lists has exactly one observation per tile and band
/// with the right pixels, and no observation belongs to an unlisted scene. Returns the
/// scene ids found.
pub fn check_snapshot(snap: &Snapshot) -> Vec<String> {
    let scenes: Vec<String> = snap
        .scenes()
        .iter()
        .map(|s| s.scene.scene_id.clone())
        .collect();
    let mut unique = scenes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), scenes.len(), "duplicate scene rows");
    let mut seen = std::collections::BTreeMap::<(String, TileId, String), usize>::new();
    for e in snap.fragments() {
        let f = snap.read_fragment_verified(e).unwrap();
        let band = BANDS.iter().position(|b| *b == e.band).unwrap();
        for k in 0..f.len() {
            let id = f.scene_id(k).to_string();
            let num: u32 = id.rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(f.time(k), time_of(num));
            let px = f.pixels::<u16>(k).unwrap();
            assert_eq!(px[0], 0);
            assert!(!f.valid_mask(k)[0] && f.valid_mask(k)[1]);
            for i in [1usize, 17, 255] {
                assert_eq!(px[i], pixel(num, e.tile, band, i), "{id} pixel {i}");
            }
            *seen.entry((id, e.tile, e.band.clone())).or_default() += 1;
        }
    }
    for ((id, tile, band), n) in &seen {
        assert_eq!(*n, 1, "{id} {tile} {band} appears {n} times");
        assert!(unique.contains(id), "observation of uncommitted scene {id}");
    }
    for id in &unique {
        for &(c, r) in &TILES {
            for b in BANDS {
                assert!(
                    seen.contains_key(&(id.clone(), TileId::new(c, r), b.to_string())),
                    "scene {id} lacks {b} on x{c}_y{r}"
                );
            }
        }
    }
    unique
}

#[path = "../common/mod.rs"]
pub mod common;

/// The catalog rows of version `v` as `pixelquery info --json --rows --as-of v` prints them
/// (fragments sorted by path, scenes by id); `Err` with the CLI's message when it fails.
pub fn pixelquery_view(
    dir: &std::path::Path,
    v: u64,
) -> std::result::Result<serde_json::Value, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pixelquery"))
        .args(["info", "--json", "--rows", "--as-of", &v.to_string()])
        .arg(dir)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rows = info["rows"].clone();
    let sort = |list: &mut serde_json::Value, key: &str| {
        let a = list.as_array_mut().unwrap();
        a.sort_by(|x, y| x[key].as_str().cmp(&y[key].as_str()));
    };
    sort(&mut rows["fragments"], "path");
    sort(&mut rows["scenes"], "scene_id");
    Ok(rows)
}

/// What the `deltalake` Python package sees at each (warehouse, version), in one Python run.
pub fn delta_views(
    python: &std::path::Path,
    pairs: &[(std::path::PathBuf, u64)],
) -> Vec<serde_json::Value> {
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/store_support/delta_view.py"),
    )
    .unwrap();
    let arg = serde_json::to_string(
        &pairs
            .iter()
            .map(|(d, v)| (d.to_str().unwrap().to_string(), *v))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let out = common::run_python(python, &script, &[&arg]);
    serde_json::from_str(&out).unwrap()
}

/// Checks that `deltalake` and `pixelquery info` agree on every version `versions` of the
/// warehouses: the same fragment and scene rows where PixelQuery can read the version, and
/// an error from both where it cannot (vacuumed). Returns how many versions were compared.
pub fn assert_delta_agrees(python: &std::path::Path, pairs: &[(std::path::PathBuf, u64)]) -> usize {
    let delta = delta_views(python, pairs);
    let mut compared = 0;
    for ((dir, v), d) in pairs.iter().zip(delta) {
        match pixelquery_view(dir, *v) {
            Ok(ours) => {
                assert!(
                    d.get("error").is_none(),
                    "{}: version {v}: pixelquery reads it, deltalake fails: {}",
                    dir.display(),
                    d["error"]
                );
                assert_eq!(
                    ours,
                    d,
                    "{}: version {v}: pixelquery and deltalake disagree",
                    dir.display()
                );
                compared += 1;
            }
            Err(e) => {
                assert!(
                    e.contains("vacuumed"),
                    "{}: version {v}: unexpected error {e}",
                    dir.display()
                );
                assert!(
                    d.get("error").is_some(),
                    "{}: version {v} is vacuumed for pixelquery but deltalake reads it",
                    dir.display()
                );
            }
        }
    }
    compared
}
