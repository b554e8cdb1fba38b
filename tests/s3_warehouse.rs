//! Warehouses in object storage, against a real S3 server (SeaweedFS, started on 127.0.0.1
//! by `.ci/run` through `.ci/s3-server`; the tests skip without `PIXELQUERY_TEST_S3` unless
//! `PIXELQUERY_REQUIRE_S3` is set, as CI does).

mod common;

use pixelquery::source::s3::Credentials;
use pixelquery::source::RemoteOptions;
use pixelquery::store::*;
use pixelquery::{GridSpec, TileId};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

/// The test server's settings, or `None` (skip) when there is none.
fn s3() -> Option<OpenOptions> {
    let server = common::s3_server()?;
    Some(OpenOptions {
        remote: RemoteOptions {
            s3_endpoint: Some(server.endpoint),
            s3_region: Some("us-east-1".into()),
            s3_credentials: Some(Credentials {
                access_key_id: server.key,
                secret_access_key: server.secret,
                session_token: None,
            }),
            ..RemoteOptions::default()
        },
        ..OpenOptions::default()
    })
}

/// A fresh warehouse URL in the test bucket.
fn url(name: &str) -> String {
    let bucket = std::env::var("PIXELQUERY_TEST_S3_BUCKET").unwrap_or_else(|_| "pqtest".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3://{bucket}/{name}-{nanos}-{}", std::process::id())
}

fn grid() -> GridSpec {
    GridSpec {
        epsg: 32633,
        origin_x: 500_000.0,
        origin_y: 4_000_000.0,
        tile_size: 160.0,
    }
}

fn scene(prefix: &str, i: u32) -> SceneRecord {
    SceneRecord {
        scene_id: format!("{prefix}-{i:03}"),
        source: format!("/data/{prefix}/{i}.tif"),
        acquired: chrono::DateTime::from_timestamp(1_700_000_000 + i64::from(i) * 86_400, 0)
            .unwrap(),
        product: "S2".into(),
        footprint_lonlat: vec![(15.0, 36.0), (15.1, 36.0), (15.1, 36.1), (15.0, 36.1)],
        cloud_cover: Some(f64::from(i)),
        fingerprint: format!("fp-{prefix}-{i}"),
        ..Default::default()
    }
}

/// Commits one scene per batch, skipping committed ones; returns how many it committed.
fn commit_scenes(wh: &Warehouse, prefix: &str, range: std::ops::Range<u32>) -> u32 {
    let mut committed = 0;
    for i in range {
        let batch = wh.begin_batch();
        let rec = scene(prefix, i);
        if wh
            .snapshot(None)
            .unwrap()
            .has_scene_fingerprint(&rec.fingerprint)
        {
            continue;
        }
        batch.add_scene(rec).unwrap();
        // Another writer may commit the same scene meanwhile: the batch drops it.
        let c = batch.commit().unwrap();
        if c.created {
            committed += 1;
        }
    }
    committed
}

#[test]
fn a_warehouse_in_a_bucket_commits_checkpoints_and_vacuums() {
    let Some(options) = s3() else { return };
    let location = url("basic");
    let wh = Warehouse::create_with(&location, WarehouseConfig::new(grid()), &options).unwrap();
    assert_eq!(wh.location(), &Location::S3(location.clone()));
    assert!(matches!(
        Warehouse::create_with(&location, WarehouseConfig::new(grid()), &options),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(commit_scenes(&wh, "a", 0..23), 23);
    let wh = Warehouse::open_with(&location, &options).unwrap();
    let snap = wh.snapshot(None).unwrap();
    assert_eq!(snap.scenes().len(), 23);
    assert!(
        snap.parts().len() < 8,
        "parts were merged: {}",
        snap.parts().len()
    );
    let listed = wh.storage().list("catalog/_delta_log").unwrap();
    assert!(listed
        .iter()
        .any(|f| f.key.ends_with("00000000000000000010.checkpoint.parquet")));
    assert!(listed.iter().any(|f| f.key.ends_with("_last_checkpoint")));
    // Time travel, then vacuum everything older than now.
    assert_eq!(wh.snapshot(Some(3)).unwrap().scenes().len(), 3);
    let report = vacuum(&wh, std::time::Duration::ZERO).unwrap();
    assert!(report.log_files_deleted > 0 && !report.deleted.is_empty());
    assert!(matches!(wh.snapshot(Some(3)), Err(Error::Vacuumed { .. })));
    assert_eq!(wh.snapshot(None).unwrap().scenes().len(), 23);
    let v = verify(&wh);
    assert!(v.is_healthy(), "{:?}", v.problems);
    assert_eq!(v.unreferenced_files, 0);
}

/// On object storage a read names its observations from the snapshot's scene table, so it
/// fetches a fragment's chunk runs and not its scene dictionary; where two scenes of the
/// product share a time in the fragment's span the table cannot say which is which, and the
/// dictionary is fetched with the runs. The ids are the dictionary's either way.
#[test]
fn observations_are_named_by_the_scene_table_or_the_dictionary() {
    let Some(options) = s3() else { return };
    let location = url("names");
    let wh = Warehouse::create_with(&location, WarehouseConfig::new(grid()), &options).unwrap();
    let at = |day: i64| chrono::DateTime::from_timestamp(1_700_000_000 + day * 86_400, 0).unwrap();
    // Tile (0, 0): three scenes on three days; tile (1, 0): two scenes of one moment.
    let tiles = [
        (TileId::new(0, 0), vec![("a", 0), ("b", 1), ("c", 2)]),
        (TileId::new(1, 0), vec![("d", 5), ("e", 5)]),
    ];
    let batch = wh.begin_batch();
    for (tile, scenes) in &tiles {
        let (tile_transform, n) = grid().tile_geotransform(*tile, 10.0).unwrap();
        for &(id, day) in scenes {
            batch
                .add_scene(SceneRecord {
                    scene_id: id.into(),
                    acquired: at(day),
                    fingerprint: format!("fp-{id}"),
                    ..scene("names", 0)
                })
                .unwrap();
        }
        let observations = scenes
            .iter()
            .map(|&(id, day)| Observation {
                time: at(day),
                scene_id: id.into(),
                pixels: vec![day as u16 + 1; (n * n) as usize].into(),
                valid: None,
            })
            .collect();
        batch
            .write_fragment(FragmentData {
                tile: *tile,
                band: "red".into(),
                product: "S2".into(),
                dtype: pixelquery::DataType::U16,
                nodata: Some(0.0),
                scale: 1.0,
                offset: 0.0,
                tile_transform,
                width: n,
                height: n,
                footprint_lonlat: vec![(15.0, 36.0), (15.1, 36.0), (15.1, 36.1), (15.0, 36.1)],
                resolution: 10.0,
                observations,
            })
            .unwrap();
    }
    batch.commit().unwrap();
    let snap = Warehouse::open_with(&location, &options)
        .unwrap()
        .snapshot(None)
        .unwrap();
    assert_eq!(snap.fragments().len(), 2);
    for entry in snap.fragments() {
        let (_, scenes) = tiles.iter().find(|(t, _)| *t == entry.tile).unwrap();
        let before = snap.transfer_stats();
        let named = snap.fragment_observations(entry, None, None).unwrap();
        let after = snap.transfer_stats();
        let want: Vec<(i64, String)> = scenes
            .iter()
            .map(|&(id, day)| (at(day).timestamp_micros(), id.to_string()))
            .collect();
        assert_eq!(named, want, "tile {:?}", entry.tile);
        // One request per fragment (one chunk run); the dictionary in it only where a time is
        // shared (it lies just before the run, so the two ranges merge).
        assert_eq!(after.requests - before.requests, 1, "tile {:?}", entry.tile);
        let run = &entry.index.runs[0];
        let shared = scenes.windows(2).any(|w| w[0].1 == w[1].1);
        let fetched = after.bytes - before.bytes;
        if shared {
            assert_eq!(fetched, run.end - entry.index.dictionary.start);
        } else {
            assert_eq!(fetched, run.end - run.start);
        }
        let view = snap.fragment_window(entry, None, None).unwrap();
        assert_eq!(view.len(), scenes.len());
        for (i, &(id, day)) in scenes.iter().enumerate() {
            assert_eq!(view.scene_id(i), id);
            assert_eq!(view.pixel_bytes(i)[..2], (day as u16 + 1).to_le_bytes());
        }
    }
}

#[test]
fn concurrent_writers_commit_every_scene_once() {
    let Some(options) = s3() else { return };
    let location = url("race");
    Warehouse::create_with(&location, WarehouseConfig::new(grid()), &options).unwrap();
    // 4 writers: two with their own scenes, two racing on the same ones.
    let counts: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = ["a", "b", "same", "same"]
            .into_iter()
            .map(|p| {
                let (location, options) = (location.clone(), options.clone());
                s.spawn(move || {
                    let wh = Warehouse::open_with(&location, &options).unwrap();
                    commit_scenes(&wh, p, 0..6)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(counts[0] + counts[1], 12);
    assert_eq!(counts[2] + counts[3], 6, "each shared scene committed once");
    let wh = Warehouse::open_with(&location, &options).unwrap();
    let snap = wh.snapshot(None).unwrap();
    assert_eq!(snap.scenes().len(), 18);
    let mut ids: Vec<_> = snap.scenes().iter().map(|s| &s.scene.scene_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 18);
    assert!(verify(&wh).is_healthy());
}

type Objects = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>;

/// Serves one connection of the careless store until the client closes it.
fn serve(stream: std::net::TcpStream, objects: Objects) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let (status, reply) = {
            let mut objects = objects.lock().unwrap();
            match method.as_str() {
                "PUT" => {
                    objects.insert(path, body);
                    (200, Vec::new())
                }
                "GET" | "HEAD" => match objects.get(&path) {
                    Some(b) => (200, b.clone()),
                    None => (404, Vec::new()),
                },
                "DELETE" => {
                    objects.remove(&path);
                    (204, Vec::new())
                }
                _ => (400, Vec::new()),
            }
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        stream.write_all(head.as_bytes())?;
        if method != "HEAD" {
            stream.write_all(&reply)?;
        }
    }
}

/// A store that ignores `If-None-Match`: every PUT succeeds.
fn careless_store() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let objects = Objects::default();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let objects = objects.clone();
            std::thread::spawn(move || serve(stream, objects));
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_store_without_conditional_writes_is_refused_unless_single_writer() {
    let endpoint = careless_store();
    let mut options = OpenOptions {
        remote: RemoteOptions {
            s3_endpoint: Some(endpoint),
            s3_region: Some("us-east-1".into()),
            s3_credentials: Some(Credentials {
                access_key_id: "k".into(),
                secret_access_key: "s".into(),
                session_token: None,
            }),
            ..RemoteOptions::default()
        },
        ..OpenOptions::default()
    };
    let e = Warehouse::create_with("s3://careless/wh", WarehouseConfig::new(grid()), &options)
        .unwrap_err();
    assert!(matches!(e, Error::NoConditionalWrites { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("s3://careless/wh") && text.contains("--unsafe-single-writer"),
        "{text}"
    );
    options.unsafe_single_writer = true;
    let wh =
        Warehouse::create_with("s3://careless/wh", WarehouseConfig::new(grid()), &options).unwrap();
    assert_eq!(commit_scenes(&wh, "x", 0..3), 3);
    assert_eq!(wh.snapshot(None).unwrap().scenes().len(), 3);
}

#[test]
fn other_schemes_are_errors_not_local_folders() {
    let d = tempfile::tempdir().unwrap();
    for bad in [
        "gs://bucket/wh",
        "az://container/wh",
        "https://example.com/wh",
    ] {
        let e = Warehouse::open(bad).unwrap_err().to_string();
        assert!(e.contains("unsupported warehouse location"), "{e}");
        let e = Warehouse::create(bad, WarehouseConfig::new(grid()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(bad), "{e}");
    }
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    let _ = common::fixtures();
}
