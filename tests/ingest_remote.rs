//! `ingest` reads scenes over HTTP exactly like local files: a COG served by the crate's test
//! server on 127.0.0.1 ingests and queries to the same pixels as the local copy.

mod common;
mod support;

use pixelquery::ingest::pipeline::{ingest, IngestOptions, Quiet};
use pixelquery::store::Warehouse;
use support::server::{Behaviour, Server};

#[test]
fn a_url_ingests_like_a_file() {
    let local = common::fixtures().join("cog/u16_deflate_pred2_tiled16_pixel.tif");
    let bytes = std::fs::read(&local).unwrap();
    let server = Server::start(bytes, Behaviour::default());
    let url = server.url("/S2_20230611_scene.tif");
    let dir = tempfile::tempdir().unwrap();
    let options = IngestOptions {
        product: Some("sentinel2_l2a".into()),
        ..Default::default()
    };
    let remote = ingest(&dir.path().join("remote"), &[url], &options, &Quiet).unwrap();
    let local_report = ingest(
        &dir.path().join("local"),
        &[local.display().to_string()],
        &options,
        &Quiet,
    )
    .unwrap();
    assert_eq!((remote.scenes_ingested, remote.failed.len()), (1, 0));
    assert_eq!(remote.tile_observations, local_report.tile_observations);
    assert!(
        server.requests() >= 2,
        "header and tiles were fetched by range"
    );

    let query = |name: &str| {
        Warehouse::open(dir.path().join(name))
            .unwrap()
            .query()
            .point(400_105.0, 4_039_905.0)
            .crs(32652)
            .run()
            .unwrap()
    };
    let (a, b) = (query("remote"), query("local"));
    assert_eq!(a.data, b.data);
    assert_eq!(a.bands, ["B02", "B03", "B04", "B08"]);
}

#[test]
fn an_unreachable_url_fails_that_scene_only() {
    let server = Server::start(
        Vec::new(),
        Behaviour {
            status: Some(404),
            ..Behaviour::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let local = common::fixtures().join("cog/u16_deflate_pred2_tiled16_pixel.tif");
    let options = IngestOptions {
        product: Some("sentinel2_l2a".into()),
        ..Default::default()
    };
    let report = ingest(
        &dir.path().join("wh"),
        &[
            local.display().to_string(),
            server.url("/missing_20230101.tif"),
        ],
        &options,
        &Quiet,
    )
    .unwrap();
    assert_eq!(report.scenes_ingested, 1);
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed[0].reason.contains("404"),
        "{}",
        report.failed[0].reason
    );
}
