//! `pixelquery ingest --stac-api`: against a real STAC API on 127.0.0.1 (`rustac serve`) loaded
//! with Planetary-Computer- and Earth-Search-shaped items whose assets are COGs served over
//! HTTP on 127.0.0.1, and a hand-written API for what rustac does not do (merge links, 429
//! with Retry-After, GET-only servers, the Filter and Query extensions, SAS tokens,
//! requester-pays buckets).

mod common;
mod support;

use pixelquery::ingest::pipeline::{IngestOptions, IngestReport, Quiet};
use pixelquery::ingest::stac::{self, Provider, SearchSpec, SigningOptions};
use pixelquery::store::Warehouse;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::stac_api::*;
use support::stac_data::*;

/// Writes `value` as JSON at `path`.
fn write_json(path: &Path, value: &Value) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec(value).unwrap()).unwrap();
    path.to_path_buf()
}

fn item_collection(items: &[Value]) -> Value {
    json!({"type": "FeatureCollection", "features": items})
}

/// Scenes 0..n of the series: Planetary Computer items (baseline 03.00, then 04.00 from the
/// change on), plus Earth Search Collection 1 duplicates (baseline 05.00) of `dups`; files
/// under `root/pc/{id}` and `root/es/{id}`, served by `files_url`.
fn series(root: &Path, files_url: &str, n: std::ops::Range<usize>, dups: &[usize]) -> Vec<Value> {
    let mut items = Vec::new();
    for t in n {
        let id = pc_id(t);
        let baseline = pc_baseline(t);
        write_scene(&root.join("pc").join(&id), t, offset_for(baseline), SIZE);
        items.push(pc_item(&id, t, baseline, &format!("{files_url}/pc/{id}")));
        if dups.contains(&t) {
            let id = es_id(t);
            write_scene(&root.join("es").join(&id), t, 1000, SIZE);
            items.push(es_c1_item(&id, t, &format!("{files_url}/es/{id}")));
        }
    }
    items
}

fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scene"].as_str().unwrap().to_string())
        .collect()
}

fn bbox_arg() -> String {
    let b = lonlat_bounds();
    format!("{},{},{},{}", b.min_x, b.min_y, b.max_x, b.max_y)
}

#[test]
fn a_search_ingests_like_files_across_pages_duplicates_and_the_baseline_change() {
    let Some(exe) = rustac() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    let server = HttpServer::start(files(root.clone(), Require::default()));
    let items = series(&root, &server.base(), 0..10, &[2, 7]);
    let api_dir = dir.path().join("api");
    let hrefs = vec![
        write_json(&api_dir.join("pc.json"), &collection("sentinel-2-l2a")),
        write_json(&api_dir.join("c1.json"), &collection("sentinel-2-c1-l2a")),
        write_json(&api_dir.join("items.json"), &item_collection(&items)),
    ];
    let api = Rustac::start(&exe, 0, &hrefs);
    let wh = dir.path().join("wh");
    let wh_arg = wh.display().to_string();
    let bbox = bbox_arg();
    let search = [
        "ingest",
        &wh_arg,
        "--stac-api",
        &api.url,
        "--collections",
        "sentinel-2-l2a,sentinel-2-c1-l2a",
        "--bbox",
        &bbox,
        "--datetime",
        "2021-01-01/2023-12-31",
        "--page-size",
        "3",
        "--bands",
        "red,nir",
        "--json",
    ];
    let (code, stdout, stderr) = common::run_cli(&search, &[]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let r = report(&stdout);
    let s = &r["stac"][0];
    assert_eq!(r["scenes_ingested"], 10, "{stdout}");
    assert!(s["pages"].as_u64().unwrap() >= 4, "{s}");
    assert_eq!(s["returned"], 12);
    assert_eq!(s["duplicates"], 2);
    assert_eq!(s["provider"], "generic");
    // The Collection 1 copies (baseline 05.00) win over 03.00 and 04.00.
    let mut skipped: Vec<&Value> = r["skipped"].as_array().unwrap().iter().collect();
    skipped.sort_by_key(|s| s["scene"].as_str().unwrap().to_string());
    assert_eq!(skipped.len(), 2);
    for (s, t) in skipped.iter().zip([2, 7]) {
        assert_eq!(s["scene"], pc_id(t));
        let why = s["reason"].as_str().unwrap();
        assert!(
            why.contains(&es_id(t)) && why.contains("baseline 05.00 over"),
            "{why}"
        );
    }
    // Only the assets of red, NIR and the cloud band were read: nothing else was asked for.
    for path in server.paths() {
        assert!(
            ["/B04.tif", "/B08.tif", "/SCL.tif"]
                .iter()
                .any(|f| path.ends_with(f)),
            "{path} was requested"
        );
    }

    // The same scenes ingested as files give the same pixels.
    let mut folders = Vec::new();
    for t in 0..10 {
        folders.push(if [2, 7].contains(&t) {
            root.join("es").join(es_id(t))
        } else {
            root.join("pc").join(pc_id(t))
        });
    }
    let files_wh = dir.path().join("files_wh");
    let args: Vec<String> = ["ingest".to_string(), files_wh.display().to_string()]
        .into_iter()
        .chain(folders.iter().map(|f| f.display().to_string()))
        .chain(["--product".into(), "sentinel2_l2a".into()])
        .collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = common::run_cli(&argv, &[]);
    assert_eq!(code, 0, "{stderr}");
    let (api_wh, file_wh) = (
        Warehouse::open(&wh).unwrap(),
        Warehouse::open(&files_wh).unwrap(),
    );
    fn query<'w>(w: &'w Warehouse, bands: &[&str]) -> pixelquery::query::Query<'w> {
        w.query().crs(EPSG).bbox(utm_bounds()).bands(bands)
    }
    let from_api = query(&api_wh, &["red", "nir"]).run_native::<u16>().unwrap();
    let from_files = query(&file_wh, &["red", "nir"])
        .run_native::<u16>()
        .unwrap();
    assert_eq!(from_api.data.dim().0, 10);
    assert_eq!(from_api.times, from_files.times);
    assert_eq!(from_api.data, from_files.data);
    let scl = |w: &Warehouse| query(w, &["scl"]).run_native::<u8>().unwrap().into_data();
    assert_eq!(scl(&api_wh), scl(&file_wh));

    // Physical values are continuous across the baseline change: every date's red is its
    // true reflectance, though the files from 2022 hold 1000 DN more.
    let cube = Warehouse::open(&wh)
        .unwrap()
        .query()
        .crs(EPSG)
        .bbox(utm_bounds())
        .bands(&["red", "nir"])
        .physical(true)
        .run()
        .unwrap();
    for t in 0..10 {
        assert_eq!(cube.times[t], when(t));
        for (b, y, x) in [(0, 0, 0), (1, 5, 7), (0, 95, 95), (1, 40, 3)] {
            let want = true_dn(b, t, y, x) as f32 * 1e-4;
            let got = cube.data[[t, b, y, x]];
            assert!(
                (got - want).abs() < 1e-5,
                "scene {t} band {b} ({x}, {y}): {got} != {want}"
            );
        }
    }
    // Raw, the change is there (1000 DN).
    let t6 = from_api.data[[6, 0, 0, 0]];
    assert_eq!(t6, true_dn(0, 6, 0, 0) + 1000);

    // The search is kept: `info` shows it, and --update ingests only what is new.
    let (code, info, _) = common::run_cli(&["info", &wh_arg], &[]);
    assert_eq!(code, 0);
    assert!(info.contains("search") && info.contains(&api.url), "{info}");
    let port = api.port;
    drop(api);
    let mut more = items.clone();
    more.extend(series(&root, &server.base(), 10..12, &[]));
    let hrefs = vec![
        hrefs[0].clone(),
        hrefs[1].clone(),
        write_json(&api_dir.join("items.json"), &item_collection(&more)),
    ];
    let api = Rustac::start(&exe, port, &hrefs);
    let before = server.log().len();
    let (code, stdout, stderr) = common::run_cli(&["ingest", &wh_arg, "--update", "--json"], &[]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let r = report(&stdout);
    assert_eq!(r["scenes_ingested"], 2, "{stdout}");
    let skipped = ids(&r, "skipped");
    assert_eq!(skipped.len(), 12);
    let already = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["reason"]
                .as_str()
                .unwrap()
                .starts_with("already ingested")
        })
        .count();
    assert_eq!(already, 10);
    // Committed items were skipped without reading their files.
    for path in &server.paths()[before..] {
        assert!(
            path.contains(&pc_id(10)) || path.contains(&pc_id(11)),
            "{path} was read again"
        );
    }
    // A second update finds nothing new and writes nothing.
    let (code, stdout, _) = common::run_cli(&["ingest", &wh_arg, "--update", "--json"], &[]);
    assert_eq!(code, 0);
    assert_eq!(report(&stdout)["scenes_ingested"], 0);
    drop(api);
}

#[test]
fn bad_input_is_one_clear_line_and_a_bad_item_does_not_lose_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    let server = HttpServer::start(files(root.clone(), Require::default()));
    let mut items = series(&root, &server.base(), 0..3, &[]);
    // An item without a NIR asset.
    items[1]["assets"].as_object_mut().unwrap().remove("B08");
    let api = MockApi::start(
        &["sentinel-2-l2a"],
        items,
        MockSettings {
            page_size: 10,
            ..Default::default()
        },
    );
    let wh = dir.path().join("wh").display().to_string();
    let url = api.url();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "ingest",
            &wh,
            "--stac-api",
            &url,
            "--collections",
            "sentinel-2-l2a",
        ];
        args.extend_from_slice(extra);
        common::run_cli(&args, &[])
    };
    let (code, stdout, stderr) = run(&["--bands", "red,nir"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("ingested 2 of 3 scenes"), "{stdout}");
    let line = stderr.lines().find(|l| l.starts_with("failed")).unwrap();
    assert!(
        line.contains(&pc_id(1)) && line.contains("no GeoTIFF asset for band \"B08\""),
        "{line}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("failed")).count(),
        1,
        "{stderr}"
    );

    for (args, words) in [
        (
            vec!["--collections", "sentinel-3"],
            vec!["no collection \"sentinel-3\"", "sentinel-2-l2a"],
        ),
        (
            vec!["--filter", "eo:cloud_cover < 10 AND"],
            vec!["--filter", "position 24"],
        ),
        (
            vec!["--filter", "S_INTERSECTS(geometry, POINT(1 2))"],
            vec!["position 1", "--bbox"],
        ),
        (vec!["--bbox", "0,95,1,96"], vec!["--bbox", "latitude 95"]),
        (
            vec!["--datetime", "2024-01-01/2023-01-01"],
            vec!["--datetime", "after the end"],
        ),
        (
            vec!["--bands", "red,ndvi"],
            vec!["\"ndvi\"", "sentinel2_l2a"],
        ),
    ] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        for w in words {
            assert!(stderr.contains(w), "{args:?}: {stderr}");
        }
    }
    // An API nobody answers.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (code, _, stderr) = common::run_cli(
        &["ingest", &wh, "--stac-api", &dead, "--collections", "x"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&dead) && stderr.contains("cannot reach"),
        "{stderr}"
    );
    // A 4xx is reported with the server's own message.
    let (code, _, stderr) = common::run_cli(
        &[
            "ingest",
            &wh,
            "--stac-api",
            &format!("{url}/nowhere"),
            "--collections",
            "x",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("HTTP 404") && stderr.contains("NotFound: no such path"),
        "{stderr}"
    );
    // --update on a warehouse... with no search kept only when none is recorded.
    let fresh = dir.path().join("fresh");
    common::run_cli(
        &[
            "ingest",
            &fresh.display().to_string(),
            &root.join("pc").join(pc_id(0)).display().to_string(),
        ],
        &[],
    );
    let (code, _, stderr) =
        common::run_cli(&["ingest", &fresh.display().to_string(), "--update"], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no STAC API search is recorded"),
        "{stderr}"
    );
}

fn options() -> IngestOptions {
    IngestOptions {
        remote: pixelquery::source::RemoteOptions {
            backoff: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn ingest(wh: &Path, spec: &SearchSpec, signing: &SigningOptions) -> IngestReport {
    stac::ingest_search(wh, spec, &options(), signing, &Quiet).unwrap()
}

#[test]
fn merge_links_throttling_and_get_only_servers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    let server = HttpServer::start(files(root.clone(), Require::default()));
    let items = series(&root, &server.base(), 0..7, &[]);
    // POST with `merge: true` next links, two 429s first (Retry-After: 1).
    let api = MockApi::start(
        &["sentinel-2-l2a"],
        items.clone(),
        MockSettings {
            page_size: 2,
            merge: true,
            matched: true,
            throttle_first: 2,
            retry_after: "1".into(),
            ..Default::default()
        },
    );
    let mut spec = SearchSpec::new(&api.url(), &["sentinel-2-l2a"]);
    spec.bands = Some(vec!["red".into()]);
    let start = Instant::now();
    let r = ingest(&dir.path().join("a"), &spec, &SigningOptions::default());
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "Retry-After was not honoured"
    );
    assert_eq!(r.scenes_ingested, 7, "{r:?}");
    let s = &r.stac[0];
    assert_eq!((s.matched, s.pages, s.returned), (Some(7), 4, 7));
    let searches = api.searches();
    assert_eq!(searches.len(), 2 + 4);
    // Pages after the first merged their token into the first request's body, and carried
    // the link's header.
    let last = &searches[5];
    assert_eq!(last.json()["token"], "6");
    assert_eq!(last.json()["collections"], json!(["sentinel-2-l2a"]));
    assert_eq!(last.json()["limit"], 100);
    assert_eq!(last.headers.get("x-page").map(String::as_str), Some("6"));

    // A server that takes GET only: the search falls back to it, pages by next hrefs.
    let api = MockApi::start(
        &["sentinel-2-l2a"],
        items,
        MockSettings {
            page_size: 2,
            get_only: true,
            ..Default::default()
        },
    );
    let mut spec = SearchSpec::new(&api.url(), &["sentinel-2-l2a"]);
    spec.bands = Some(vec!["nir".into()]);
    spec.datetime = Some("2021".into());
    let r = ingest(&dir.path().join("b"), &spec, &SigningOptions::default());
    assert_eq!(r.scenes_ingested, 6, "{r:?}"); // 2021 holds scenes 0..=5
    let gets: Vec<Req> = api
        .searches()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 3);
    assert!(
        api.searches().iter().all(|r| r.method == "GET"),
        "the landing page offers GET only"
    );
    // One that offers POST but refuses it (405): the search falls back to GET.
    let lying = MockApi::start(
        &["sentinel-2-l2a"],
        series(&root, &server.base(), 0..3, &[]),
        MockSettings {
            page_size: 2,
            get_only: true,
            offer_post: true,
            ..Default::default()
        },
    );
    let mut spec = SearchSpec::new(&lying.url(), &["sentinel-2-l2a"]);
    spec.bands = Some(vec!["nir".into()]);
    let r = ingest(&dir.path().join("c"), &spec, &SigningOptions::default());
    assert_eq!(r.scenes_ingested, 3, "{r:?}");
    let methods: Vec<String> = lying.searches().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["POST", "GET", "GET"]);
    assert_eq!(
        gets[0].param("collections").as_deref(),
        Some("sentinel-2-l2a")
    );
    assert_eq!(
        gets[0].param("datetime").as_deref(),
        Some("2021-01-01T00:00:00Z/2021-12-31T23:59:59.999Z")
    );
}

#[test]
fn filters_go_to_the_server_as_it_can_take_them_and_are_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    let server = HttpServer::start(files(root.clone(), Require::default()));
    let mut items = series(&root, &server.base(), 0..4, &[]);
    for (t, item) in items.iter_mut().enumerate() {
        item["properties"]["eo:cloud_cover"] = json!(t as f64 * 10.0);
    }
    let filter = "eo:cloud_cover < 15 AND platform LIKE 'Sentinel-2%'";
    for (conforms, mode) in [
        (
            FILTER.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "cql2-json",
        ),
        (vec![QUERY.to_string()], "query-extension"),
        (vec![], "client"),
    ] {
        // The mock returns every item whatever the filter: what passes is PixelQuery's doing.
        let api = MockApi::start(
            &["sentinel-2-l2a"],
            items.clone(),
            MockSettings {
                page_size: 10,
                conforms,
                ..Default::default()
            },
        );
        let mut spec = SearchSpec::new(&api.url(), &["sentinel-2-l2a"]);
        spec.filter = Some(filter.into());
        spec.bands = Some(vec!["red".into()]);
        let r = ingest(&dir.path().join(mode), &spec, &SigningOptions::default());
        assert_eq!(r.scenes_ingested, 2, "{mode}: {r:?}");
        let s = &r.stac[0];
        assert_eq!(serde_json::to_value(s.filter).unwrap(), mode);
        assert_eq!(s.filtered_out, 2);
        let body = api.searches()[0].json();
        match mode {
            "cql2-json" => {
                assert_eq!(body["filter-lang"], "cql2-json");
                assert_eq!(
                    body["filter"]["args"][0],
                    json!({"op": "<", "args": [{"property": "eo:cloud_cover"}, 15.0]})
                );
            }
            "query-extension" => assert_eq!(
                body["query"],
                json!({"eo:cloud_cover": {"lt": 15.0}, "platform": {"startsWith": "Sentinel-2"}})
            ),
            _ => assert!(body.get("filter").is_none() && body.get("query").is_none()),
        }
    }
}

#[test]
fn planetary_computer_assets_are_signed_with_cached_sas_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    // Blob storage that wants a SAS token on every read.
    let blobs = HttpServer::start(files(
        root.clone(),
        Require {
            sas_token: true,
            ..Default::default()
        },
    ));
    let items = series(&root, &blobs.base(), 0..3, &[]);
    let api = MockApi::start(
        &["sentinel-2-l2a"],
        items,
        MockSettings {
            page_size: 10,
            token_ttl: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let mut spec = SearchSpec::new(&api.url(), &["sentinel-2-l2a"]);
    spec.bands = Some(vec!["red".into(), "nir".into()]);
    // Unsigned, the blobs refuse (no scene opens to make the warehouse from).
    let unsigned = stac::ingest_search(
        &dir.path().join("unsigned"),
        &spec,
        &options(),
        &SigningOptions::default(),
        &Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(unsigned.contains("HTTP 403"), "{unsigned}");
    spec.provider = Some(Provider::PlanetaryComputer);
    let signing = SigningOptions {
        sas_url: Some(format!("{}/api/sas/v1/token", api.url())),
        subscription_key: Some("key-123".into()),
        blob_hosts: vec![blobs.host()],
    };
    let r = ingest(&dir.path().join("signed"), &spec, &signing);
    assert_eq!((r.scenes_ingested, r.failed.len()), (3, 0), "{r:?}");
    // One token for the collection, sent with the subscription key, on every blob read.
    assert_eq!(
        api.counts.tokens.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let token_request = api
        .server
        .log()
        .into_iter()
        .find(|r| r.path.starts_with("/api/sas"))
        .unwrap();
    assert_eq!(token_request.path, "/api/sas/v1/token/sentinel-2-l2a");
    assert_eq!(
        token_request.headers["ocp-apim-subscription-key"],
        "key-123"
    );
    let reads: Vec<Req> = blobs
        .log()
        .into_iter()
        .filter(|r| r.query.contains("sig="))
        .collect();
    assert!(!reads.is_empty());
    // The catalog keeps the unsigned location.
    let wh = Warehouse::open(dir.path().join("signed")).unwrap();
    let snap = wh.snapshot(None).unwrap();
    assert!(snap
        .scenes()
        .iter()
        .all(|s| !s.scene.source.contains("sig=")));
}

#[test]
fn requester_pays_landsat_needs_credentials_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    // An S3 endpoint (path style) that serves only requests saying the requester pays.
    let s3 = HttpServer::start(files(
        root.clone(),
        Require {
            header: Some(("x-amz-request-payer".into(), "requester".into())),
            ..Default::default()
        },
    ));
    let key = "collection02/level-2/standard/oli-tirs/2023/116/034/LC08_L2SP_116034_20230614_20230620_02_T1";
    write_scene(&root.join("usgs-landsat").join(key), 8, 0, 32);
    let (bbox, geometry) = {
        let b = lonlat_bounds();
        (
            json!([b.min_x, b.min_y, b.max_x, b.max_y]),
            json!({"type": "Point", "coordinates": [b.min_x, b.min_y]}),
        )
    };
    let asset = |file: &str, name: &str, common: &str| {
        json!({"href": format!("s3://usgs-landsat/{key}/{file}"), "type": "image/tiff; application=geotiff; profile=cloud-optimized",
               "roles": ["data", "reflectance"], "eo:bands": [{"name": name, "common_name": common}],
               "raster:bands": [{"nodata": 0, "scale": 2.75e-05, "offset": -0.2}], "storage:requester_pays": true})
    };
    let item = json!({
        "type": "Feature", "stac_version": "1.0.0", "id": "LC08_L2SP_116034_20230614_02_T1", "collection": "landsat-c2-l2",
        "bbox": bbox, "geometry": geometry, "links": [],
        "properties": {"datetime": "2023-06-14T02:05:11Z", "platform": "landsat-8", "proj:epsg": EPSG,
                       "landsat:wrs_path": "116", "landsat:wrs_row": "034"},
        "assets": {
            "red": asset("B04.tif", "OLI_B4", "red"),
            "nir08": asset("B08.tif", "OLI_B5", "nir08"),
            "qa_pixel": {"href": format!("s3://usgs-landsat/{key}/QA.tif"), "type": "image/tiff", "roles": ["cloud"]},
            "ang": {"href": format!("s3://usgs-landsat/{key}/ANG.txt"), "type": "text/plain", "roles": ["metadata"]}
        }
    });
    let api = MockApi::start(
        &["landsat-c2-l2"],
        vec![item],
        MockSettings {
            page_size: 10,
            ..Default::default()
        },
    );
    let wh = dir.path().join("wh").display().to_string();
    let args = [
        "ingest",
        &wh,
        "--stac-api",
        &api.url(),
        "--collections",
        "landsat-c2-l2",
        "--bands",
        "red,nir",
        "--no-cloud-band",
        "--provider",
        "earth-search",
        "--json",
    ];
    let endpoint = ("AWS_ENDPOINT_URL", s3.base());
    // The only scene cannot be opened, so there is no warehouse to make: one line says why.
    let (code, _, stderr) = common::run_cli(&args, &[(endpoint.0, &endpoint.1)]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("s3://usgs-landsat/")
            && stderr.contains("requester-pays")
            && stderr.contains("AWS_ACCESS_KEY_ID"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(s3.log().is_empty(), "nothing is sent without credentials");
    let (code, stdout, stderr) = common::run_cli(
        &args,
        &[
            (endpoint.0, &endpoint.1),
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    );
    assert_eq!(code, 0, "{stderr}{stdout}");
    assert_eq!(report(&stdout)["scenes_ingested"], 1);
    // Stored under the profile's names, whatever the provider calls them.
    let wh = Warehouse::open(&wh).unwrap();
    let bands: Vec<String> = wh
        .snapshot(None)
        .unwrap()
        .fragments()
        .iter()
        .map(|f| f.band.clone())
        .collect();
    assert!(
        bands.iter().all(|b| b == "SR_B4" || b == "SR_B5"),
        "{bands:?}"
    );
    let cube = wh
        .query()
        .crs(EPSG)
        .point(ORIGIN.0 + 45.0, ORIGIN.1 - 45.0)
        .bands(&["red"])
        .physical(true)
        .run()
        .unwrap();
    // The 30 m pixel (1, 1) of a 32 px scene holds true_dn at (3, 3) of the 96 px one.
    let raw = true_dn(0, 8, 3, 3) as f32;
    assert!((cube.data[[0, 0, 0, 0]] - (raw * 2.75e-5 - 0.2)).abs() < 1e-5);
}

#[test]
fn sharded_workers_share_the_items_of_one_search() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    let server = HttpServer::start(files(root.clone(), Require::default()));
    let api = MockApi::start(
        &["sentinel-2-l2a"],
        series(&root, &server.base(), 0..8, &[]),
        MockSettings {
            page_size: 3,
            ..Default::default()
        },
    );
    let mut spec = SearchSpec::new(&api.url(), &["sentinel-2-l2a"]);
    spec.bands = Some(vec!["red".into()]);
    let wh = dir.path().join("wh");
    let mut ingested = 0;
    for k in 0..3 {
        let options = IngestOptions {
            shard: Some(format!("{k}/3").parse().unwrap()),
            ..options()
        };
        let r =
            stac::ingest_search(&wh, &spec, &options, &SigningOptions::default(), &Quiet).unwrap();
        assert!(r.failed.is_empty() && r.skipped.is_empty(), "{r:?}");
        ingested += r.scenes_ingested;
    }
    assert_eq!(ingested, 8);
    let snap = Warehouse::open(&wh).unwrap().snapshot(None).unwrap();
    assert_eq!(snap.scenes().len(), 8);
    assert_eq!(snap.searches().len(), 1, "one search, recorded once");
}
