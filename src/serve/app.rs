//! Routing: a request becomes a typed request, a library call and a response with caching
//! and CORS headers; every failure becomes a JSON error naming the parameter at fault.

use super::assets;
use super::http::{Request, Response};
use super::live::{Current, Live};
use super::params::{decode, Params, TOKEN_PARAM};
use super::render::{self, Layer, Limits, LAYER_PARAMS, MAX_PREVIEW};
use super::tms::{TileMatrixSet, WAREHOUSE_GRID, WEB_MERCATOR_QUAD};
use super::{Error, LogSink, RequestLog, ServeOptions};
use crate::query::export::{self, colormap::Colormap, Format};
use crate::query::{Period, Query, Reducer, Region};
use crate::store::Version;
use crate::time::parse_time_range;
use serde_json::{json, Value};
use std::hash::Hasher;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a request waits for a computing slot before it is answered 503.
const QUEUE_WAIT: Duration = Duration::from_secs(30);
/// The index presets the page offers.
const INDICES: [&str; 4] = ["ndvi", "evi", "ndwi", "nbr"];

/// Parameters of `/point` and `/statistics` besides the place (those of `query`).
const SERIES_PARAMS: &[&str] = &[
    "time",
    "bands",
    "product",
    "skip_missing",
    "resampling",
    "across_products",
    "expr",
    "index",
    "mask",
    "physical",
    "composite",
    "period",
    "group_by",
    "resolution",
    "drop_empty",
    "format",
];

/// The server's state shared by every connection.
pub struct App {
    live: Live,
    token: Option<String>,
    basemap: Option<String>,
    limits: Limits,
    gate: Gate,
    log: Option<LogSink>,
    assets_tag: String,
    web_mercator: TileMatrixSet,
    cache_control: String,
}

impl App {
    pub fn new(live: Live, options: &ServeOptions) -> App {
        let requests = options.memory_budget - options.memory_budget / 2;
        let cache_control = if live.is_pinned() {
            "public, max-age=86400, immutable".to_string()
        } else {
            format!("public, max-age={}", options.refresh.as_secs())
        };
        App {
            live,
            token: options.token.clone(),
            basemap: options.basemap.clone(),
            limits: Limits {
                max_tiles: options.max_tiles,
                budget: (requests / options.max_in_flight.max(1) as u64).max(4 << 20),
            },
            gate: Gate::new(options.max_in_flight),
            log: options.log.clone(),
            assets_tag: assets::tag(),
            web_mercator: TileMatrixSet::web_mercator(),
            cache_control,
        }
    }

    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Answers a request (never fails: errors become JSON responses) and logs it.
    pub fn handle(&self, req: &Request) -> Response {
        let started = Instant::now();
        let mut response = self.respond(req).unwrap_or_else(|e| error_response(&e));
        response
            .headers
            .push(("Access-Control-Allow-Origin", "*".into()));
        response
            .headers
            .push(("Access-Control-Expose-Headers", "ETag".into()));
        if let Some(log) = &self.log {
            log(&RequestLog {
                method: &req.method,
                path: &req.path,
                status: response.status,
                millis: started.elapsed().as_secs_f64() * 1e3,
                bytes: response.body.len(),
            });
        }
        response
    }

    fn respond(&self, req: &Request) -> Result<Response, Error> {
        let path = decode(&req.path).ok_or_else(|| Error::NotFound {
            path: req.path.clone(),
        })?;
        if path.contains("..") || path.contains('\\') || path.contains('\0') || path.contains("//")
        {
            return Err(Error::NotFound { path });
        }
        if req.method == "OPTIONS" {
            return Ok(Response::new(204, "text/plain", Vec::new())
                .with("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS")
                .with(
                    "Access-Control-Allow-Headers",
                    "Authorization, If-None-Match, Content-Type",
                )
                .with("Access-Control-Max-Age", "86400"));
        }
        let params = Params::parse(&req.query)?;
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if path == "/healthz" {
            method(req, false)?;
            return Ok(self.healthz());
        }
        self.authorize(req, &params)?;
        let post = segments == ["statistics"];
        method(req, post)?;
        match segments.as_slice() {
            [""] => Ok(self.page(req)),
            ["static", name] => self.asset(req, name),
            ["info"] => self.cached(req, &params, |cur| {
                params.only(&[])?;
                Ok(json_response(&self.info(cur)))
            }),
            ["tileMatrixSets"] => self.cached(req, &params, |cur| {
                params.only(&[])?;
                Ok(json_response(&self.tile_matrix_sets(cur, req)))
            }),
            ["tileMatrixSets", id] => self.cached(req, &params, |cur| {
                params.only(&[])?;
                Ok(json_response(&self.tms(cur, id)?.describe()))
            }),
            ["tilejson.json"] => self.cached(req, &params, |cur| self.tilejson(cur, req, &params)),
            ["tiles", tms, z, x, y] => self.cached(req, &params, |cur| {
                self.tile(cur, &params, self.tms(cur, tms)?, (z, x, y))
            }),
            ["tiles", z, x, y] => self.cached(req, &params, |cur| {
                self.tile(cur, &params, &self.web_mercator, (z, x, y))
            }),
            ["point"] => self.cached(req, &params, |cur| self.point(cur, &params)),
            ["statistics"] => self.cached(req, &params, |cur| self.statistics(cur, req, &params)),
            ["preview.png"] => self.cached(req, &params, |cur| self.preview(cur, &params)),
            _ => Err(Error::NotFound { path }),
        }
    }

    /// Refuses requests without the token when one is required.
    fn authorize(&self, req: &Request, params: &Params) -> Result<(), Error> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let given = req
            .header("authorization")
            .and_then(|h| {
                let (scheme, value) = h.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(value.trim())
            })
            .or_else(|| params.get(TOKEN_PARAM));
        match given {
            Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
            _ => Err(Error::Unauthorized),
        }
    }

    /// Answers from the current version: `304` when the client has this answer already,
    /// else computes it (within the limit of requests computing at once) with an `ETag`.
    fn cached(
        &self,
        req: &Request,
        params: &Params,
        compute: impl FnOnce(&Current) -> Result<Response, Error>,
    ) -> Result<Response, Error> {
        let current = self.live.current();
        let tag = etag(current.version(), &req.path, params, &req.body);
        if req
            .header("if-none-match")
            .is_some_and(|h| matches_etag(h, &tag))
        {
            return Ok(Response::new(304, "text/plain", Vec::new())
                .with("ETag", tag)
                .with("Cache-Control", self.cache_control.clone()));
        }
        let _slot = self.gate.enter(QUEUE_WAIT)?;
        let response = compute(&current)?;
        Ok(response
            .with("ETag", tag)
            .with("Cache-Control", self.cache_control.clone())
            .with("X-Warehouse-Version", current.version().to_string()))
    }

    fn healthz(&self) -> Response {
        let current = self.live.current();
        let cache = self.live.cache().stats();
        let body = json!({
            "status": "ok",
            "version": current.version(),
            "pinned": self.live.is_pinned(),
            "cache": {
                "files": cache.files,
                "entries": cache.entries,
                "bytes": cache.bytes,
                "max_bytes": cache.max_bytes,
                "hits": cache.hits,
                "misses": cache.misses,
                "evictions": cache.evictions,
            },
            "last_refresh_error": self.live.last_error(),
        });
        json_response(&body).with("Cache-Control", "no-store")
    }

    fn page(&self, req: &Request) -> Response {
        let config = json!({ "basemap": self.basemap });
        // `<` cannot end the script element the settings sit in.
        let text =
            assets::INDEX_HTML.replace("{{CONFIG}}", &config.to_string().replace('<', "\\u003c"));
        let tag = format!("\"page-{}\"", self.assets_tag);
        if req
            .header("if-none-match")
            .is_some_and(|h| matches_etag(h, &tag))
        {
            return Response::new(304, "text/plain", Vec::new()).with("ETag", tag);
        }
        Response::new(200, "text/html; charset=utf-8", text.into_bytes())
            .with("ETag", tag)
            .with("Cache-Control", "no-cache")
    }

    fn asset(&self, req: &Request, name: &str) -> Result<Response, Error> {
        let asset = assets::get(name).ok_or_else(|| Error::NotFound {
            path: format!("/static/{name}"),
        })?;
        let tag = format!("\"static-{}\"", self.assets_tag);
        if req
            .header("if-none-match")
            .is_some_and(|h| matches_etag(h, &tag))
        {
            return Ok(Response::new(304, "text/plain", Vec::new()).with("ETag", tag));
        }
        Ok(Response::new(200, asset.content_type, asset.bytes)
            .with("ETag", tag)
            .with("Cache-Control", "public, max-age=3600"))
    }

    fn info(&self, current: &Current) -> Value {
        let mut info = current.info.clone();
        let indices: serde_json::Map<String, Value> = INDICES
            .iter()
            .filter_map(|name| {
                let text = crate::query::preset(name)?;
                let vars = crate::query::Expr::parse(text).ok()?.variables();
                Some((name.to_string(), json!(vars)))
            })
            .collect();
        info["indices"] = Value::Object(indices);
        info["colormaps"] = json!(Colormap::names());
        info["composites"] = json!(["median", "mean", "min", "max", "count", "first", "last"]);
        info["max_tiles_per_request"] = json!(self.limits.max_tiles);
        info
    }

    /// The tile matrix set named `id`.
    fn tms<'c>(&'c self, current: &'c Current, id: &str) -> Result<&'c TileMatrixSet, Error> {
        match id {
            WEB_MERCATOR_QUAD => Ok(&self.web_mercator),
            WAREHOUSE_GRID => current
                .grid_tms
                .as_ref()
                .ok_or_else(|| Error::NoData("the warehouse is empty".into())),
            other => Err(Error::bad(
                "tileMatrixSetId",
                &format!("unknown tile matrix set {other:?}: use {WEB_MERCATOR_QUAD} or {WAREHOUSE_GRID}"),
            )),
        }
    }

    fn tile_matrix_sets(&self, current: &Current, req: &Request) -> Value {
        let base = base_url(req);
        let mut sets = vec![&self.web_mercator];
        sets.extend(current.grid_tms.as_ref());
        let list: Vec<Value> = sets
            .iter()
            .map(|t| {
                let d = t.describe();
                json!({
                    "id": t.id,
                    "title": d["title"],
                    "crs": d["crs"],
                    "links": [{
                        "href": format!("{base}/tileMatrixSets/{}", t.id),
                        "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme",
                        "type": "application/json",
                    }],
                })
            })
            .collect();
        json!({ "tileMatrixSets": list })
    }

    fn tilejson(
        &self,
        current: &Current,
        req: &Request,
        params: &Params,
    ) -> Result<Response, Error> {
        let mut allowed = LAYER_PARAMS.to_vec();
        allowed.push("tileMatrixSetId");
        params.only(&allowed)?;
        Layer::parse(params)?;
        let id = params.text("tileMatrixSetId")?.unwrap_or(WEB_MERCATOR_QUAD);
        let tms = self.tms(current, id)?;
        let mut query: Vec<String> = Vec::new();
        for name in LAYER_PARAMS.iter().chain([&TOKEN_PARAM]) {
            if let Some(v) = params.get(name) {
                query.push(format!("{name}={}", encode_component(v)));
            }
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        let (minzoom, maxzoom) = self.zoom_range(current, tms);
        let tiles = format!(
            "{}/tiles/{}/{{z}}/{{x}}/{{y}}.png{query}",
            base_url(req),
            tms.id
        );
        let bounds = current.lonlat.map(|b| [b.min_x, b.min_y, b.max_x, b.max_y]);
        let center = current.lonlat.map(|b| {
            json!([
                (b.min_x + b.max_x) / 2.0,
                (b.min_y + b.max_y) / 2.0,
                minzoom.max(maxzoom.saturating_sub(3))
            ])
        });
        Ok(json_response(&json!({
            "tilejson": "3.0.0",
            "name": "pixelquery",
            "description": format!("PixelQuery warehouse, version {}", current.version()),
            "version": "1.0.0",
            "scheme": "xyz",
            "tiles": [tiles],
            "minzoom": minzoom,
            "maxzoom": maxzoom,
            "bounds": bounds.unwrap_or([-180.0, -85.051_128_78, 180.0, 85.051_128_78]),
            "center": center,
        })))
    }

    /// The zooms of a tile matrix set whose tiles read at most `max_tiles` data tiles (from
    /// the data's extent), down to the one that shows the finest resolution stored.
    fn zoom_range(&self, current: &Current, tms: &TileMatrixSet) -> (u8, u8) {
        let grid = self.live.warehouse().config().grid;
        let Some(b) = current.lonlat else {
            return (0, tms.max_zoom);
        };
        // Grid units per tile CRS unit at the data (Web Mercator stretches by 1/cos(lat)).
        let ground = if tms.epsg == grid.epsg {
            1.0
        } else {
            ((b.min_y + b.max_y) / 2.0).to_radians().cos().max(0.01)
        };
        // Worst case, a tile spanning S meets ceil(S / T) + 1 data tiles a side; when even one
        // grid tile a side is too many, settle for tiles a quarter of a grid tile wide.
        let span = |z: u8| tms.tile_span(z) * ground / grid.tile_size;
        let fits = |z: u8| {
            let side = span(z).ceil() + 1.0;
            current.tiles.len() <= self.limits.max_tiles
                || side * side <= self.limits.max_tiles as f64
        };
        let minzoom = (0..=tms.max_zoom)
            .find(|&z| fits(z))
            .or_else(|| (0..=tms.max_zoom).find(|&z| span(z) <= 0.25))
            .unwrap_or(tms.max_zoom);
        let finest = current.finest;
        let maxzoom = (0..=tms.max_zoom)
            .find(|&z| tms.cell_size(z) * ground <= finest * 1.000_001)
            .unwrap_or(tms.max_zoom);
        (minzoom, maxzoom.max(minzoom))
    }

    fn tile(
        &self,
        current: &Current,
        params: &Params,
        tms: &TileMatrixSet,
        (z, x, y): (&&str, &&str, &&str),
    ) -> Result<Response, Error> {
        params.only(LAYER_PARAMS)?;
        let layer = Layer::parse(params)?;
        let (stem, scale) = match y.strip_suffix(".png") {
            Some(s) => match s.strip_suffix("@2x") {
                Some(s) => (s, 2),
                None => (s, 1),
            },
            None => {
                return Err(Error::NotFound {
                    path: format!("/tiles/{}/{z}/{x}/{y}", tms.id),
                })
            }
        };
        let z: u8 = z
            .parse()
            .map_err(|_| Error::bad("z", &format!("{z:?} is not a zoom level")))?;
        let x: u64 = x
            .parse()
            .map_err(|_| Error::bad("x", &format!("{x:?} is not a tile column")))?;
        let y: u64 = stem
            .parse()
            .map_err(|_| Error::bad("y", &format!("{stem:?} is not a tile row")))?;
        let png = render::tile(
            self.live.warehouse(),
            current,
            tms,
            (z, x, y),
            scale,
            &layer,
            self.limits,
        )?;
        Ok(Response::new(200, "image/png", png))
    }

    fn preview(&self, current: &Current, params: &Params) -> Result<Response, Error> {
        let mut allowed = LAYER_PARAMS.to_vec();
        allowed.extend(["bbox", "max_size"]);
        params.only(&allowed)?;
        let layer = Layer::parse(params)?;
        let bbox = bbox_param(params)?.ok_or_else(|| Error::bad("bbox", "required"))?;
        let max_size = match params.number("max_size")? {
            None => 1024,
            Some(n) if n >= 16.0 && n <= MAX_PREVIEW as f64 => n as usize,
            Some(_) => {
                return Err(Error::bad(
                    "max_size",
                    &format!("between 16 and {MAX_PREVIEW} pixels"),
                ))
            }
        };
        let png = render::preview(
            self.live.warehouse(),
            current,
            bbox,
            max_size,
            &layer,
            self.limits,
        )?;
        Ok(Response::new(200, "image/png", png))
    }

    fn point(&self, current: &Current, params: &Params) -> Result<Response, Error> {
        let mut allowed = SERIES_PARAMS.to_vec();
        allowed.extend(["lon", "lat", "crs"]);
        params.only(&allowed)?;
        let lon = params.required_number("lon")?;
        let lat = params.required_number("lat")?;
        let crs = epsg_param(params)?;
        if crs == 4326 && !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
            return Err(Error::bad(
                if (-180.0..=180.0).contains(&lon) {
                    "lat"
                } else {
                    "lon"
                },
                "outside -180..180 (lon) or -90..90 (lat)",
            ));
        }
        let format = table_format(params)?;
        let q = self.series_query(current, params, Region::Point(lon, lat), crs)?;
        let (q, drop) = q;
        let mut plan = q.prepare().map_err(|e| query_error(e, params))?;
        if drop {
            plan.drop_empty_steps()
                .map_err(|e| query_error(e, params))?;
        }
        let cube = plan.cube().map_err(|e| query_error(e, params))?;
        Ok(match format {
            Format::Csv => Response::new(
                200,
                "text/csv; charset=utf-8",
                export::csv(&cube).into_bytes(),
            ),
            _ => Response::new(200, "application/json", export::json(&cube).into_bytes()),
        })
    }

    fn statistics(
        &self,
        current: &Current,
        req: &Request,
        params: &Params,
    ) -> Result<Response, Error> {
        let mut allowed = SERIES_PARAMS.to_vec();
        allowed.extend(["bbox", "crs"]);
        params.only(&allowed)?;
        let crs = epsg_param(params)?;
        let region = match (bbox_param(params)?, req.body.is_empty()) {
            (Some(b), true) => Region::BBox(b),
            (None, false) => {
                let value: Value = serde_json::from_slice(&req.body)
                    .map_err(|e| Error::bad("body", &format!("not JSON: {e}")))?;
                Region::from_geojson(&value, "the request body")
                    .map_err(|e| Error::bad("body", &e.to_string()))?
            }
            (Some(_), false) => {
                return Err(Error::bad(
                    "bbox",
                    "give a bbox or a GeoJSON body, not both",
                ))
            }
            (None, true) => return Err(Error::bad(
                "bbox",
                "required (or POST a GeoJSON Polygon, MultiPolygon, Feature or FeatureCollection)",
            )),
        };
        let format = table_format(params)?;
        let grid = self.live.warehouse().config().grid;
        let in_grid = grid
            .crs()
            .ok()
            .and_then(|g| {
                let from = crate::crs::Crs::from_epsg(crs).ok()?;
                region.to_crs(&from, &g).ok()
            })
            .ok_or_else(|| Error::bad("bbox", "cannot be placed on the warehouse grid"))?;
        let tiles = current.tiles_in(&grid, &in_grid.bounds());
        if tiles > self.limits.max_tiles {
            return Err(Error::costly(
                "bbox",
                format!(
                    "the area covers {tiles} warehouse tiles with data, at most {} are read per request: ask for a smaller area",
                    self.limits.max_tiles
                ),
            ));
        }
        let (q, drop) = self.series_query(current, params, region, crs)?;
        let mut plan = q.prepare().map_err(|e| query_error(e, params))?;
        let (t, b, h, w) = plan.dim();
        let bytes = (t * b * h * w) as u64 * 4;
        if bytes > self.limits.budget {
            return Err(Error::costly(
                "bbox",
                format!(
                    "statistics of {t} dates x {b} bands x {h} x {w} px need {}, more than a request may hold ({}): ask for a smaller area or time range",
                    crate::query::human_bytes(bytes),
                    crate::query::human_bytes(self.limits.budget)
                ),
            ));
        }
        if drop {
            plan.drop_empty_steps()
                .map_err(|e| query_error(e, params))?;
        }
        let bytes = export::statistics(&plan, format)?;
        Ok(match format {
            Format::Csv => Response::new(200, "text/csv; charset=utf-8", bytes),
            _ => Response::new(200, "application/json", bytes),
        })
    }

    /// The query `query` would run for these parameters (and whether to drop empty dates).
    fn series_query<'c>(
        &'c self,
        current: &'c Current,
        p: &Params,
        region: Region,
        crs: u32,
    ) -> Result<(Query<'c>, bool), Error> {
        let wh = self.live.warehouse();
        let mut q = wh
            .query()
            .on_snapshot(&current.snapshot)
            .region(region)
            .crs(crs)
            .physical(p.flag("physical")?)
            .skip_missing(p.flag("skip_missing")?)
            .across_products(p.flag("across_products")?)
            .memory_budget(self.limits.budget);
        if let Some(t) = p.text("time")? {
            let (a, b) = parse_time_range(t).map_err(|e| Error::bad("time", &e))?;
            q = q.time(a, b);
        }
        if let Some(b) = p.list("bands")? {
            q = q.bands(&b);
        }
        if let Some(prod) = p.list("product")? {
            current.check_products(&prod)?;
            q = q.products(&prod);
        }
        if let Some(r) = p.parsed::<crate::warp::Resampling>("resampling")? {
            q = q.resampling(r);
        }
        match (p.text("expr")?, p.text("index")?) {
            (Some(_), Some(_)) => return Err(Error::bad("index", "give expr or index, not both")),
            (Some(e), None) => q = q.expr(e),
            (None, Some(i)) => q = q.index(i).map_err(|e| Error::query(e, Some("index")))?,
            (None, None) => {}
        }
        if p.choice("mask", &["clouds", "none"])?.as_deref() == Some("clouds") {
            q = q.mask_clouds(true);
        }
        if p.choice("group_by", &["solar-day", "solar_day"])?.is_some() {
            q = q.group_by_solar_day(true);
        }
        match (
            p.parsed::<Reducer>("composite")?,
            p.parsed::<Period>("period")?,
        ) {
            (Some(r), period) => q = q.composite(r, period.unwrap_or(Period::All)),
            (None, Some(_)) => return Err(Error::bad("period", "needs composite")),
            (None, None) => {}
        }
        if let Some(r) = p.number("resolution")? {
            if r <= 0.0 {
                return Err(Error::bad("resolution", "must be positive"));
            }
            q = q.resolution(r);
        }
        Ok((q, p.flag("drop_empty")?))
    }
}

/// Which parameter a query error is about, from the parameters given.
fn query_error(e: crate::query::engine::Error, p: &Params) -> Error {
    use crate::query::engine::Error as Q;
    let parameter = match &e {
        Q::UnknownBand { .. } | Q::MissingBand { .. } => ["expr", "index", "bands"]
            .into_iter()
            .find(|k| p.get(k).is_some()),
        Q::Expr(_) => Some("expr"),
        Q::Region(_) | Q::Crs(_) => Some("crs"),
        _ => None,
    };
    Error::query(e, parameter)
}

/// Only GET and HEAD (and POST where `post`).
fn method(req: &Request, post: bool) -> Result<(), Error> {
    match req.method.as_str() {
        "GET" | "HEAD" => Ok(()),
        "POST" if post => Ok(()),
        other => Err(Error::Method {
            method: other.to_string(),
            allowed: if post { "GET, HEAD, POST" } else { "GET, HEAD" },
        }),
    }
}

/// `bbox=MINLON,MINLAT,MAXLON,MAXLAT`.
fn bbox_param(p: &Params) -> Result<Option<crate::Bounds>, Error> {
    let Some(v) = p.numbers("bbox")? else {
        return Ok(None);
    };
    if v.len() != 4 {
        return Err(Error::bad("bbox", "MINX,MINY,MAXX,MAXY"));
    }
    if v[0] >= v[2] || v[1] >= v[3] {
        return Err(Error::bad(
            "bbox",
            "MINX must be below MAXX and MINY below MAXY",
        ));
    }
    Ok(Some(crate::Bounds::new(v[0], v[1], v[2], v[3])))
}

/// `crs=EPSG:N` (default 4326).
fn epsg_param(p: &Params) -> Result<u32, Error> {
    let Some(text) = p.text("crs")? else {
        return Ok(4326);
    };
    let digits = text
        .strip_prefix("EPSG:")
        .or_else(|| text.strip_prefix("epsg:"))
        .unwrap_or(text);
    let code = digits
        .parse::<u32>()
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(|| Error::bad("crs", "use EPSG:N"))?;
    crate::crs::Crs::from_epsg(code).map_err(|e| Error::bad("crs", &e.to_string()))?;
    Ok(code)
}

/// `format=json|csv` (default JSON).
fn table_format(p: &Params) -> Result<Format, Error> {
    Ok(match p.choice("format", &["json", "csv"])?.as_deref() {
        Some("csv") => Format::Csv,
        _ => Format::Json,
    })
}

/// `http://HOST` of the request (the `Host` header when it is a plain host name).
fn base_url(req: &Request) -> String {
    let host = req.header("host").filter(|h| {
        !h.is_empty()
            && h.len() < 256
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
    });
    match host {
        Some(h) => format!("http://{h}"),
        None => String::new(),
    }
}

/// What a query value must not hold as is.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Percent-encodes a query value.
fn encode_component(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, QUERY_VALUE).to_string()
}

fn json_response(value: &Value) -> Response {
    Response::new(
        200,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

fn error_response(e: &Error) -> Response {
    let status = e.status();
    let body = json!({
        "error": e.to_string(),
        "parameter": e.parameter(),
        "status": status,
    });
    let mut r = Response::new(
        status,
        "application/json",
        serde_json::to_vec(&body).unwrap_or_default(),
    )
    .with("Cache-Control", "no-store");
    if let Error::Method { allowed, .. } = e {
        r = r.with("Allow", *allowed);
    }
    if matches!(e, Error::Unauthorized) {
        r = r.with("WWW-Authenticate", "Bearer");
    }
    if matches!(e, Error::Busy(_)) {
        r = r.with("Retry-After", "1");
    }
    r
}

/// A strong ETag of a version and a normalised request.
fn etag(version: Version, path: &str, params: &Params, body: &[u8]) -> String {
    let mut h = twox_hash::XxHash3_64::with_seed(0);
    h.write(path.as_bytes());
    h.write(b"?");
    h.write(params.canonical().as_bytes());
    h.write(b"#");
    h.write(body);
    format!("\"v{version}-{:016x}\"", h.finish())
}

/// True when an `If-None-Match` value names `tag` (or is `*`); weak tags compare weakly.
fn matches_etag(header: &str, tag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A counting semaphore: at most `max` requests compute at once.
struct Gate {
    busy: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

/// A computing slot, given back when dropped.
struct Slot<'g>(&'g Gate);

impl Gate {
    fn new(max: usize) -> Gate {
        Gate {
            busy: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }
    }

    fn enter(&self, wait: Duration) -> Result<Slot<'_>, Error> {
        let deadline = Instant::now() + wait;
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= self.max {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(Error::Busy(self.max));
            };
            busy = self
                .freed
                .wait_timeout(busy, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *busy += 1;
        Ok(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(|e| e.into_inner());
        *busy -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_follow_version_and_normalised_parameters() {
        let p = |q: &str| Params::parse(q).unwrap();
        let a = etag(3, "/point", &p("lon=1&lat=2"), b"");
        assert_eq!(a, etag(3, "/point", &p("lat=2&lon=1&access_token=x"), b""));
        assert_ne!(a, etag(4, "/point", &p("lon=1&lat=2"), b""));
        assert_ne!(a, etag(3, "/point", &p("lon=1&lat=3"), b""));
        assert!(matches_etag(&format!("\"x\", W/{a}"), &a));
        assert!(matches_etag("*", &a));
        assert!(!matches_etag("\"v3-0\"", &a));
    }

    #[test]
    fn the_gate_admits_at_most_max() {
        let gate = Gate::new(2);
        let a = gate.enter(Duration::ZERO).unwrap();
        let _b = gate.enter(Duration::ZERO).unwrap();
        assert!(matches!(
            gate.enter(Duration::from_millis(10)),
            Err(Error::Busy(2))
        ));
        drop(a);
        assert!(gate.enter(Duration::ZERO).is_ok());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
