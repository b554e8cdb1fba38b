//! `pixelquery serve` over real sockets on 127.0.0.1: every endpoint's status codes, ETag and
//! 304, bad parameters, path traversal, the token, tiles against the query engine, `/point`
//! and `/statistics` against the CLI, new versions, pinning, limits and a clean stop.

mod common;
mod serve_support;

use chrono::{DateTime, Utc};
use pixelquery::crs::{Crs, Transformer};
use pixelquery::query::export::colormap::Colormap;
use pixelquery::serve::tms::TileMatrixSet;
use pixelquery::serve::ServeOptions;
use pixelquery::store::Warehouse;
use pixelquery::Bounds;
use serve_support::*;

fn day(d: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = pixelquery::time::parse_datetime(d).unwrap();
    (
        start,
        start + chrono::Duration::days(1) - chrono::Duration::microseconds(1),
    )
}

#[test]
fn every_endpoint_answers() {
    let server = serve(demo_warehouse(), ServeOptions::default());
    let a = server.addr;
    let (lon, lat) = pixelquery::demo::sample_point();
    let (x, y) = tile_of(lon, lat, 14);
    let bbox = format!(
        "{},{},{},{}",
        lon - 0.01,
        lat - 0.01,
        lon + 0.01,
        lat + 0.01
    );
    for (target, status, content_type) in [
        ("/", 200, "text/html; charset=utf-8"),
        ("/static/app.js", 200, "text/javascript; charset=utf-8"),
        ("/static/leaflet.js", 200, "text/javascript; charset=utf-8"),
        (
            "/static/uPlot.iife.min.js",
            200,
            "text/javascript; charset=utf-8",
        ),
        (
            "/static/LICENSE.leaflet.txt",
            200,
            "text/plain; charset=utf-8",
        ),
        ("/healthz", 200, "application/json"),
        ("/info", 200, "application/json"),
        ("/tileMatrixSets", 200, "application/json"),
        ("/tileMatrixSets/WebMercatorQuad", 200, "application/json"),
        ("/tileMatrixSets/WarehouseGrid", 200, "application/json"),
        ("/tilejson.json?index=ndvi", 200, "application/json"),
        (
            &format!("/tiles/WebMercatorQuad/14/{x}/{y}.png"),
            200,
            "image/png",
        ),
        (
            &format!("/tiles/14/{x}/{y}@2x.png?index=ndvi"),
            200,
            "image/png",
        ),
        (
            &format!("/point?lon={lon}&lat={lat}&index=ndvi"),
            200,
            "application/json",
        ),
        (
            &format!("/point?lon={lon}&lat={lat}&format=csv"),
            200,
            "text/csv; charset=utf-8",
        ),
        (
            &format!("/statistics?bbox={bbox}&bands=red"),
            200,
            "application/json",
        ),
        (
            &format!("/preview.png?bbox={bbox}&index=ndvi&max_size=64"),
            200,
            "image/png",
        ),
        ("/nope", 404, "application/json"),
        ("/tiles/WebMercatorQuad/14/1/2.jpg", 404, "application/json"),
        (
            "/tileMatrixSets/LINZAntarticaMapTilegrid",
            400,
            "application/json",
        ),
        (
            &format!("/point?lon={lon}&lat=0.0001"),
            404,
            "application/json",
        ),
    ] {
        let r = get(a, target);
        assert_eq!(r.status, status, "{target}: {}", r.text());
        assert_eq!(r.header("content-type"), Some(content_type), "{target}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("*"),
            "{target}"
        );
        if status >= 400 {
            let j = r.json();
            assert_eq!(j["status"], status, "{target}");
            assert!(
                j["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{target}"
            );
        }
    }
    // @2x doubles the pixels; a NaN-free NDVI tile over the data is opaque somewhere.
    let (w, h, rgba) = get(a, &format!("/tiles/14/{x}/{y}@2x.png?index=ndvi")).png();
    assert_eq!((w, h), (512, 512));
    assert!(rgba.chunks(4).any(|p| p[3] == 255));
    // Tiles away from the data are transparent, not errors.
    let (w, _, rgba) = get(a, "/tiles/WebMercatorQuad/14/100/100.png").png();
    assert_eq!(w, 256);
    assert!(rgba.iter().all(|&v| v == 0));
    // The page embeds its settings and the vendored libraries.
    let page = get(a, "/").text();
    assert!(page.contains("static/leaflet.js") && page.contains(r#"{"basemap":null}"#));
    // HEAD: the headers of GET, no body.
    let r = request(a, "HEAD", "/info", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 100
    );
    // Methods and CORS preflight.
    let r = request(a, "POST", "/info", &[], b"{}");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let r = request(a, "OPTIONS", "/tiles/1/2/3.png", &[], b"");
    assert_eq!(r.status, 204);
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    // Info describes the warehouse; tile matrix sets follow OGC 2.0.
    let info = get(a, "/info").json();
    assert_eq!(info["dates"].as_array().unwrap().len(), 8);
    assert_eq!(info["products"]["sentinel2_l2a"]["cloud_mask"], true);
    let tms = get(a, "/tileMatrixSets/WarehouseGrid").json();
    assert_eq!(tms["crs"], "http://www.opengis.net/def/crs/EPSG/0/32652");
    let last = tms["tileMatrices"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["cellSize"].as_f64(), last["tileWidth"].as_u64()),
        (Some(10.0), Some(384))
    );
    let tj = get(a, "/tilejson.json?index=ndvi&mask=clouds&time=2024-06-18").json();
    assert_eq!(tj["tilejson"], "3.0.0");
    let url = tj["tiles"][0].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "http://{a}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?"
        )) && url.contains("index=ndvi")
            && url.contains("time=2024-06-18"),
        "{url}"
    );
    assert!(tj["maxzoom"].as_u64().unwrap() >= 14);
    server.stop().unwrap();
}

#[test]
fn etags_answer_304_and_follow_new_versions() {
    let dir = tempfile::tempdir().unwrap();
    let wh = demo_copy(dir.path());
    let server = serve(&wh, ServeOptions::default());
    let a = server.addr;
    let (lon, lat) = pixelquery::demo::sample_point();
    let (x, y) = tile_of(lon, lat, 13);
    let target = format!("/tiles/WebMercatorQuad/13/{x}/{y}.png?index=ndvi");
    let first = get(a, &target);
    let tag = first.header("etag").unwrap().to_string();
    assert!(tag.starts_with("\"v1-"), "{tag}");
    assert_eq!(first.header("cache-control"), Some("public, max-age=0"));
    let again = request(a, "GET", &target, &[("If-None-Match", &tag)], b"");
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    // Parameter order does not matter; their values do.
    let swapped = format!("/tiles/WebMercatorQuad/13/{x}/{y}.png?index=ndvi&mask=none");
    assert_ne!(get(a, &swapped).header("etag"), Some(tag.as_str()));
    // A commit (the Landsat-like series as a second product) shows up without a restart:
    // new version, new ETag, a 200 for the old tag.
    let landsat = dir.path().join("landsat");
    pixelquery::demo::write_landsat_scenes(&landsat).unwrap();
    let options = pixelquery::ingest::pipeline::IngestOptions {
        product: Some("landsat8_c2l2".into()),
        ..Default::default()
    };
    pixelquery::ingest::pipeline::ingest(
        &wh,
        &[landsat.display().to_string()],
        &options,
        &pixelquery::ingest::pipeline::Quiet,
    )
    .unwrap();
    let latest = Warehouse::open(&wh).unwrap().latest_version().unwrap();
    let after = request(a, "GET", &target, &[("If-None-Match", &tag)], b"");
    assert_eq!(after.status, 200);
    assert!(after
        .header("etag")
        .unwrap()
        .starts_with(&format!("\"v{latest}-")));
    assert_eq!(get(a, "/info").json()["version"], latest);
    assert!(get(a, "/info").json()["products"]["landsat8_c2l2"].is_object());
    server.stop().unwrap();

    // Pinned at version 1: the old answers, cacheable for a day.
    let pinned = serve(&wh, ServeOptions::default().with_as_of(Some(1)));
    let r = get(pinned.addr, &target);
    assert_eq!(r.header("etag"), Some(tag.as_str()));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=86400, immutable")
    );
    let info = get(pinned.addr, "/info").json();
    assert_eq!(
        (info["version"].as_u64(), info["pinned"].as_bool()),
        (Some(1), Some(true))
    );
    assert!(info["products"]["landsat8_c2l2"].is_null());
}

#[test]
fn bad_parameters_name_themselves() {
    let server = serve(demo_warehouse(), ServeOptions::default());
    let (lon, lat) = pixelquery::demo::sample_point();
    let (x, y) = tile_of(lon, lat, 14);
    let tile = format!("/tiles/WebMercatorQuad/14/{x}/{y}.png");
    for (target, parameter) in [
        (format!("{tile}?time=yesterday"), "time"),
        (format!("{tile}?time=2024-09-01..2024-01-01"), "time"),
        (format!("{tile}?bands=red,nir"), "bands"),
        (format!("{tile}?bands=B99"), "bands"),
        (format!("{tile}?expr=(nir-"), "expr"),
        (format!("{tile}?expr=nir-foo"), "expr"),
        (format!("{tile}?index=ndsi"), "index"),
        (format!("{tile}?index=ndvi&composite=mode"), "composite"),
        (format!("{tile}?index=ndvi&colormap=jet"), "colormap"),
        (
            format!("{tile}?index=ndvi&colormap=%5B%5B0%2C%22red%22%5D%5D"),
            "colormap",
        ),
        (format!("{tile}?index=ndvi&rescale=1"), "rescale"),
        (format!("{tile}?index=ndvi&mask=snow"), "mask"),
        (
            format!("{tile}?index=ndvi&product=landsat9_c2l2"),
            "product",
        ),
        (format!("{tile}?index=ndvi&index=evi"), "index"),
        (format!("{tile}?index=ndvi&zoom=3"), "zoom"),
        (format!("/tiles/WebMercatorQuad/99/{x}/{y}.png"), "z"),
        (
            format!("/tiles/WebMercatorQuad/14/{}/{y}.png", 1u64 << 14),
            "x",
        ),
        (format!("/tiles/WebMercatorQuad/14/{x}/-3.png"), "y"),
        ("/tiles/Mars/1/0/0.png".into(), "tileMatrixSetId"),
        ("/point?lat=37.5".into(), "lon"),
        (format!("/point?lon={lon}&lat=north"), "lat"),
        (format!("/point?lon=500&lat={lat}"), "lon"),
        (format!("/point?lon={lon}&lat={lat}&crs=EPSG:1"), "crs"),
        (format!("/point?lon={lon}&lat={lat}&period=month"), "period"),
        (format!("/point?lon={lon}&lat={lat}&format=xml"), "format"),
        (format!("/point?lon={lon}&lat={lat}&bands=nope"), "bands"),
        (
            format!("/point?lon={lon}&lat={lat}&resolution=-1"),
            "resolution",
        ),
        ("/statistics".into(), "bbox"),
        ("/statistics?bbox=1,2,3".into(), "bbox"),
        ("/statistics?bbox=3,2,1,4".into(), "bbox"),
        (
            "/preview.png?bbox=126.9,37.5,127.1,37.6&max_size=99999".into(),
            "max_size",
        ),
        (
            "/tilejson.json?tileMatrixSetId=Moon".into(),
            "tileMatrixSetId",
        ),
        ("/info?verbose=1".into(), "verbose"),
    ] {
        let r = get(server.addr, &target);
        assert_eq!(r.status, 400, "{target}: {}", r.text());
        let j = r.json();
        assert_eq!(j["parameter"], parameter, "{target}: {}", r.text());
        assert!(
            j["error"].as_str().unwrap().starts_with(parameter),
            "{target}: {}",
            r.text()
        );
    }
    // A POSTed body that is not GeoJSON.
    let r = request(
        server.addr,
        "POST",
        "/statistics?bands=red",
        &[],
        b"{\"type\": \"Point\"}",
    );
    assert_eq!(
        (r.status, r.json()["parameter"].as_str()),
        (400, Some("body"))
    );
}

#[test]
fn paths_never_reach_files() {
    let server = serve(demo_warehouse(), ServeOptions::default());
    for target in [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fCargo.toml",
        "/static/%2E%2E%5C%2E%2E%5Cpixelquery.json",
        "/static//etc/passwd",
        "/static/app.js%00.png",
        "/../pixelquery.json",
        "/pixelquery.json",
        "/catalog/_delta_log/00000000000000000000.json",
        "/fragments",
        "/static/",
        "/static/index.html",
        "/%ff%fe",
    ] {
        let r = get(server.addr, target);
        assert_eq!(r.status, 404, "{target}: {}", r.text());
        let text = r.text();
        assert!(
            !text.contains("root:") && !text.contains("[package]") && !text.contains("grid"),
            "{target}: {text}"
        );
    }
}

#[test]
fn a_token_guards_everything_but_healthz() {
    let server = serve(
        demo_warehouse(),
        ServeOptions::default().with_token(Some("s3cret-token".into())),
    );
    let a = server.addr;
    assert_eq!(get(a, "/healthz").status, 200);
    for target in ["/", "/info", "/tiles/14/0/0.png", "/static/app.js"] {
        let r = get(a, target);
        assert_eq!(r.status, 401, "{target}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let wrong = request(
            a,
            "GET",
            target,
            &[("Authorization", "Bearer s3cret-tokeN")],
            b"",
        );
        assert_eq!(wrong.status, 401, "{target}");
        let right = request(
            a,
            "GET",
            target,
            &[("Authorization", "Bearer s3cret-token")],
            b"",
        );
        assert_eq!(right.status, 200, "{target}");
    }
    let sep = |t: &str| if t.contains('?') { '&' } else { '?' };
    for target in ["/info", "/tilejson.json?index=ndvi"] {
        let r = get(
            a,
            &format!("{target}{}access_token=s3cret-token", sep(target)),
        );
        assert_eq!(r.status, 200, "{target}");
    }
    // TileJSON passes the token on to its tile URLs, so a map page keeps working.
    let tj = get(a, "/tilejson.json?index=ndvi&access_token=s3cret-token").json();
    assert!(tj["tiles"][0]
        .as_str()
        .unwrap()
        .contains("access_token=s3cret-token"));
}

/// The tile of the warehouse grid at its finest zoom is the warehouse tile: its pixels are
/// the query engine's values for that tile through the colour map, one for one.
#[test]
fn grid_tiles_are_the_query_engine_s_pixels() {
    let path = demo_warehouse();
    let server = serve(path, ServeOptions::default());
    let wh = Warehouse::open(path).unwrap();
    let grid = wh.config().grid;
    let snap = wh.snapshot(None).unwrap();
    let tile = snap
        .fragments()
        .iter()
        .max_by_key(|f| f.valid_count)
        .unwrap()
        .tile;
    let tms = TileMatrixSet::warehouse(&grid, 10.0).unwrap();
    let z = tms.max_zoom;
    let k = 1i64 << (z - 1);
    let (x, y) = (tile.col + k, tile.row + k);
    let viridis = Colormap::parse("viridis").unwrap();
    for date in ["2024-07-23", "2024-08-27"] {
        let target = format!(
            "/tiles/WarehouseGrid/{z}/{x}/{y}.png?index=ndvi&mask=clouds&time={date}&colormap=viridis&rescale=0,1"
        );
        let (w, h, rgba) = get(server.addr, &target).png();
        assert_eq!((w, h), (384, 384));
        let (start, end) = day(date);
        let cube = wh
            .query()
            .crs(grid.epsg)
            .bbox(grid.tile_bounds(tile))
            .index("ndvi")
            .unwrap()
            .mask_clouds(true)
            .time(start, end)
            .run()
            .unwrap();
        assert_eq!(cube.dim(), (1, 1, 384, 384));
        let values: Vec<f32> = cube.data.iter().copied().collect();
        let mut want = vec![0u8; values.len() * 4];
        viridis.colorize(&values, (0.0, 1.0), &mut want);
        assert!(
            rgba == want,
            "{date}: the tile differs from the engine's pixels"
        );
        let transparent = rgba.chunks(4).filter(|p| p[3] == 0).count();
        let nan = values.iter().filter(|v| v.is_nan()).count();
        assert_eq!(transparent, nan);
        if date == "2024-07-23" {
            assert!(nan > 1000, "the cloud is masked: {nan}");
        }
    }
}

/// A Web Mercator tile samples the engine's pixels at each tile pixel's centre, projected
/// exactly (pixels within 0.15 of a source pixel's edge are skipped: the tile warp projects
/// approximately, within 0.125 px, like GDAL).
#[test]
fn web_mercator_tiles_sample_the_engine_s_pixels() {
    let path = demo_warehouse();
    let server = serve(path, ServeOptions::default());
    let wh = Warehouse::open(path).unwrap();
    let grid = wh.config().grid;
    let (lon, lat) = pixelquery::demo::sample_point();
    let z = 15u8;
    let (x, y) = tile_of(lon, lat, z);
    let target =
        format!("/tiles/WebMercatorQuad/{z}/{x}/{y}.png?index=ndvi&time=2024-06-18&colormap=magma&rescale=-0.2,0.9");
    let (w, _, rgba) = get(server.addr, &target).png();
    assert_eq!(w, 256);
    let tms = TileMatrixSet::web_mercator();
    let b = tms.tile_bounds(z, x, y).unwrap();
    let merc = Crs::from_epsg(3857).unwrap();
    let utm = grid.crs().unwrap();
    let to_utm = Transformer::new(&merc, &utm);
    let area = to_utm.transform_bounds(&b, 21).unwrap();
    let pad = 30.0;
    let (start, end) = day("2024-06-18");
    let cube = wh
        .query()
        .crs(grid.epsg)
        .bbox(Bounds::new(
            area.min_x - pad,
            area.min_y - pad,
            area.max_x + pad,
            area.max_y + pad,
        ))
        .index("ndvi")
        .unwrap()
        .time(start, end)
        .run()
        .unwrap();
    let (_, _, ch, cw) = cube.dim();
    let inv = cube.transform.inverse().unwrap();
    let magma = Colormap::parse("magma").unwrap();
    let cell = tms.cell_size(z);
    let (mut checked, mut skipped) = (0, 0);
    for j in 0..256 {
        for i in 0..256 {
            let mx = b.min_x + (i as f64 + 0.5) * cell;
            let my = b.max_y - (j as f64 + 0.5) * cell;
            let (ux, uy) = to_utm.transform_point(mx, my).unwrap();
            let (col, row) = inv.apply(ux, uy);
            let near_edge = |v: f64| {
                let f = v - v.floor();
                !(0.15..=0.85).contains(&f)
            };
            if near_edge(col) || near_edge(row) {
                skipped += 1;
                continue;
            }
            let v = if col < 0.0 || row < 0.0 || col as usize >= cw || row as usize >= ch {
                f32::NAN
            } else {
                cube.data[[0, 0, row as usize, col as usize]]
            };
            let want = magma.color(v, (-0.2, 0.9));
            let at = (j * 256 + i) * 4;
            assert_eq!(&rgba[at..at + 4], &want, "pixel ({i}, {j})");
            checked += 1;
        }
    }
    assert!(
        checked > 256 * 256 / 3,
        "checked {checked}, skipped {skipped}"
    );
}

/// `/point` answers exactly what `pixelquery query --point ... --out FILE` writes.
#[test]
fn point_and_statistics_equal_the_cli() {
    let path = demo_warehouse();
    let server = serve(path, ServeOptions::default());
    let (lon, lat) = pixelquery::demo::sample_point();
    let dir = tempfile::tempdir().unwrap();
    let wh = path.display().to_string();
    for (params, args) in [
        (
            "index=ndvi&mask=clouds",
            vec!["--index", "ndvi", "--mask", "clouds"],
        ),
        ("bands=red,nir", vec!["--bands", "red,nir"]),
        (
            "bands=nir&composite=median&period=month&time=2024-04-01..2024-09-30",
            vec![
                "--bands",
                "nir",
                "--composite",
                "median",
                "--period",
                "month",
                "--time",
                "2024-04-01..2024-09-30",
            ],
        ),
        (
            "expr=nir%2Fred&drop_empty=true&mask=clouds",
            vec!["--expr", "nir/red", "--drop-empty", "--mask", "clouds"],
        ),
    ] {
        for format in ["json", "csv"] {
            let out = dir.path().join(format!("p.{format}"));
            let point = format!("{lon},{lat}");
            let mut cli = vec!["query", &wh, "--point", &point];
            cli.extend(args.iter().copied());
            let out_s = out.display().to_string();
            cli.extend(["--out", &out_s]);
            let (code, _, err) = common::run_cli(&cli, &[]);
            assert_eq!(code, 0, "{err}");
            let r = get(
                server.addr,
                &format!("/point?lon={lon}&lat={lat}&{params}&format={format}"),
            );
            assert_eq!(r.status, 200, "{params}: {}", r.text());
            assert_eq!(
                r.text(),
                std::fs::read_to_string(&out).unwrap(),
                "{params} {format}"
            );
        }
    }
    let bbox = format!(
        "{},{},{},{}",
        lon - 0.01,
        lat - 0.008,
        lon + 0.012,
        lat + 0.01
    );
    let cases: [(&str, Vec<&str>); 2] = [
        ("bands=red,nir", vec!["--bands", "red,nir"]),
        (
            "index=ndvi&mask=clouds",
            vec!["--index", "ndvi", "--mask", "clouds"],
        ),
    ];
    for (params, args) in cases {
        for format in ["json", "csv"] {
            let out = dir.path().join(format!("s.{format}"));
            let out_s = out.display().to_string();
            let mut cli = vec!["query", &wh, "--bbox", &bbox, "--stats", "--out", &out_s];
            cli.extend(args.iter().copied());
            let (code, _, err) = common::run_cli(&cli, &[]);
            assert_eq!(code, 0, "{err}");
            let r = get(
                server.addr,
                &format!("/statistics?bbox={bbox}&{params}&format={format}"),
            );
            assert_eq!(r.status, 200, "{params}: {}", r.text());
            assert_eq!(
                r.text(),
                std::fs::read_to_string(&out).unwrap(),
                "{params} {format}"
            );
        }
    }
    // A polygon POSTed as GeoJSON: what --geojson gives.
    let field = serde_json::json!({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon",
        "coordinates": [[[lon - 0.005, lat - 0.004], [lon + 0.006, lat - 0.004], [lon, lat + 0.005], [lon - 0.005, lat - 0.004]]]}});
    let file = dir.path().join("field.geojson");
    std::fs::write(&file, field.to_string()).unwrap();
    let out = dir.path().join("g.csv");
    let (code, _, err) = common::run_cli(
        &[
            "query",
            &wh,
            "--geojson",
            &file.display().to_string(),
            "--index",
            "ndvi",
            "--stats",
            "--out",
            &out.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let r = request(
        server.addr,
        "POST",
        "/statistics?index=ndvi&format=csv",
        &[("Content-Type", "application/geo+json")],
        field.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), std::fs::read_to_string(&out).unwrap());
}

#[test]
fn requests_are_bounded() {
    let server = serve(demo_warehouse(), ServeOptions::default().with_max_tiles(1));
    let a = server.addr;
    let (lon, lat) = pixelquery::demo::sample_point();
    // The demo's 4 tiles at zoom 10 fit in one map tile: more than one data tile is refused.
    let (x, y) = tile_of(lon, lat, 10);
    let r = get(a, &format!("/tiles/WebMercatorQuad/10/{x}/{y}.png"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["parameter"], "z");
    assert!(r.text().contains("too far out"), "{}", r.text());
    // TileJSON says where tiles start working.
    let tj = get(a, "/tilejson.json").json();
    let minzoom = tj["minzoom"].as_u64().unwrap() as u8;
    assert!(minzoom > 10, "{tj}");
    let (x, y) = tile_of(lon, lat, minzoom + 1);
    let r = get(a, &format!("/tiles/{}/{x}/{y}.png", minzoom + 1));
    assert_eq!(r.status, 200, "minzoom {minzoom}: {}", r.text());
    let r = get(a, "/statistics?bbox=126.9,37.5,127.1,37.6&bands=red");
    assert_eq!(
        (r.status, r.json()["parameter"].as_str()),
        (400, Some("bbox"))
    );
    let r = get(a, "/preview.png?bbox=126.9,37.5,127.1,37.6");
    assert_eq!(
        (r.status, r.json()["parameter"].as_str()),
        (400, Some("bbox"))
    );
    // A request line larger than the head limit, a body larger than 1 MiB.
    let long = format!("/info?x={}", "a".repeat(20_000));
    assert_eq!(get(a, &long).status, 431);
    let big = vec![b' '; (1 << 20) + 1];
    assert_eq!(request(a, "POST", "/statistics", &[], &big).status, 413);
}

/// The binary serves on a port it picks, logs one line per request, and stops on SIGTERM.
#[test]
fn the_cli_serves_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let wh = demo_warehouse().display().to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pixelquery"))
        .args(["serve", &wh, "--addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ServerProcess(child);
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: std::net::SocketAddr = first
        .split("http://")
        .nth(1)
        .and_then(|s| s.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    assert!(
        first.contains("version 1, following new commits"),
        "{first}"
    );
    assert_eq!(get(addr, "/healthz").status, 200);
    assert_eq!(get(addr, "/nope").status, 404);
    let logged = [
        lines.next().unwrap().unwrap(),
        lines.next().unwrap().unwrap(),
    ];
    assert!(logged[0].starts_with("GET /healthz 200 "), "{logged:?}");
    assert!(
        logged[1].starts_with("GET /nope 404 ") && logged[1].ends_with(" B"),
        "{logged:?}"
    );
    let status = child.terminate();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(rest.last().map(String::as_str), Some("stopped"), "{rest:?}");
}

#[test]
fn connections_beyond_the_limit_are_turned_away() {
    let server = serve(
        demo_warehouse(),
        ServeOptions::default().with_max_connections(2),
    );
    let idle: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = get(server.addr, "/healthz");
    assert_eq!(r.status, 503, "{}", r.text());
    drop(idle);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(get(server.addr, "/healthz").status, 200);
}

/// A server follows hundreds of versions: each superseded snapshot is released once no
/// request holds it, and the fragment cache stays within its budget, holding only fragments
/// the current version names.
#[test]
fn following_versions_releases_superseded_snapshots() {
    use pixelquery::serve::Live;
    use pixelquery::store::{FragmentData, Observation, WarehouseConfig};
    use pixelquery::{DataType, GeoTransform, GridSpec, TileId};
    use std::sync::{Arc, Weak};
    let dir = tempfile::tempdir().unwrap();
    let grid = GridSpec {
        epsg: 32633,
        origin_x: 500_000.0,
        origin_y: 0.0,
        tile_size: 40.0,
    };
    let wh = Warehouse::create(dir.path(), WarehouseConfig::new(grid)).unwrap();
    let budget = 48 << 10;
    let live = Live::open(wh.clone(), None, budget, std::time::Duration::ZERO).unwrap();
    let mut previous: Option<Weak<pixelquery::serve::Current>> = None;
    for i in 0..150i64 {
        let batch = wh.begin_batch();
        let tile = TileId::new(i % 12, -(i / 12) - 1);
        let b = grid.tile_bounds(tile);
        batch
            .write_fragment(FragmentData {
                tile,
                band: "B04".into(),
                product: "S2".into(),
                dtype: DataType::U16,
                nodata: Some(0.0),
                scale: 1.0,
                offset: 0.0,
                tile_transform: GeoTransform::north_up(b.min_x, b.max_y, 10.0, 10.0),
                width: 4,
                height: 4,
                footprint_lonlat: vec![(15.0, 0.0), (15.1, 0.0), (15.1, 0.1), (15.0, 0.1)],
                resolution: 10.0,
                observations: vec![Observation {
                    time: chrono::DateTime::from_timestamp(1_700_000_000 + i * 86_400, 0).unwrap(),
                    scene_id: format!("scene-{i}"),
                    pixels: vec![i as u16 + 1; 16].into(),
                    valid: None,
                }],
            })
            .unwrap();
        let version = batch.commit().unwrap().version;
        let current = live.current();
        // (Automatic catalog merges may have committed after the batch.)
        assert!(current.version() >= version);
        // Requests read every fragment of the version through the shared cache.
        for entry in current.snapshot.fragments() {
            current.snapshot.fragment(entry).unwrap();
        }
        if let Some(weak) = previous.take() {
            assert!(
                weak.upgrade().is_none(),
                "the version before {version} is still held"
            );
        }
        let stats = live.cache().stats();
        assert!(stats.bytes <= budget, "{stats:?}");
        assert!(stats.files <= current.snapshot.fragments().len());
        previous = Some(Arc::downgrade(&current));
    }
    let stats = live.cache().stats();
    assert!(stats.evictions > 0 && stats.hits > 0, "{stats:?}");
}

/// An `s3://` warehouse (SeaweedFS from `.ci/run`) serves what the same data serves locally.
#[test]
fn an_s3_warehouse_serves_like_a_local_one() {
    use std::io::{BufRead, BufReader};
    let Some(s3) = common::s3_server() else {
        return;
    };
    let env = [
        ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", s3.key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret.as_str()),
    ];
    let bucket = std::env::var("PIXELQUERY_TEST_S3_BUCKET").unwrap_or_else(|_| "pqtest".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("s3://{bucket}/serve-{nanos}-{}", std::process::id());
    let local = demo_warehouse();
    let scenes = local.parent().unwrap().join("scenes").display().to_string();
    let (code, _, err) = common::run_cli(
        &["ingest", &url, &scenes, "--product", "sentinel2_l2a"],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pixelquery"))
        .args(["serve", &url, "--addr", "127.0.0.1:0", "--quiet"])
        .envs(env)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ServerProcess(child);
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let remote: std::net::SocketAddr = first
        .split("http://")
        .nth(1)
        .and_then(|s| s.trim().trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    let here = serve(local, ServeOptions::default());
    let (lon, lat) = pixelquery::demo::sample_point();
    let (x, y) = tile_of(lon, lat, 14);
    for target in [
        format!("/point?lon={lon}&lat={lat}&index=ndvi&mask=clouds"),
        format!("/tiles/WebMercatorQuad/14/{x}/{y}.png?index=ndvi&time=2024-06-18"),
        format!(
            "/statistics?bbox={},{},{},{}&bands=red",
            lon - 0.01,
            lat - 0.01,
            lon + 0.01,
            lat + 0.01
        ),
    ] {
        let (a, b) = (get(remote, &target), get(here.addr, &target));
        assert_eq!((a.status, b.status), (200, 200), "{target}: {}", a.text());
        assert!(
            a.body == b.body,
            "{target}: the s3:// answer differs from the local one"
        );
    }
    assert!(child.terminate().success());
}
