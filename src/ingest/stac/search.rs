//! STAC API Item Search: what to search for ([`SearchSpec`], checked before any request), and
//! running it page by page ([`search`]).
//!
//! The landing page gives the search endpoint and the conformance classes. The search is a
//! POST of a JSON body, or a GET with the same parameters when the server refuses POST (405).
//! Plain dates are expanded to RFC 3339 intervals (`2023-06` is the whole month), open ends
//! are `..`. Pages follow `rel=next` links with their `method`, `body` and `headers` (a
//! `merge: true` body is merged into the previous request's) and stop on an empty page, a
//! page without a next link, or `max_items`. A CQL2 filter goes to the server as cql2-json
//! where it has the Filter extension, as the older `query` extension where that is all it
//! has (what of the filter it can say), and is always applied to the items returned too, so
//! a filter is never silently dropped.

use super::cql2;
use crate::source::api::{self, JsonClient, Method, Request};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

/// Errors of a search.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A search parameter cannot be used (checked before any request).
    #[error("invalid --{option} {value:?}: {reason}")]
    Argument {
        /// The option (`bbox`, `datetime`, `intersects`, `collections`...).
        option: &'static str,
        /// As given.
        value: String,
        /// Why.
        reason: String,
    },
    /// The filter is not CQL2 this reader understands.
    #[error("--filter: {0}")]
    Filter(#[from] cql2::Error),
    /// The API could not be asked, or refused.
    #[error("STAC API: {0}")]
    Api(#[from] api::Error),
    /// A collection the API does not have.
    #[error("STAC API {api}: no collection {collection:?} (it has: {available})")]
    UnknownCollection {
        /// The API.
        api: String,
        /// The collection asked for.
        collection: String,
        /// Some of the collections it has.
        available: String,
    },
    /// An answer that is not what the STAC API specification says.
    #[error("STAC API {url}: {reason}")]
    BadAnswer {
        /// The URL asked.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// Whose API it is: what its assets need besides a plain GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Element 84's Earth Search: public https assets; Landsat in the requester-pays
    /// `usgs-landsat` bucket.
    EarthSearch,
    /// Microsoft Planetary Computer: Azure blob assets signed with SAS tokens per collection.
    PlanetaryComputer,
    /// Any other API: plain http(s) or s3 hrefs.
    #[default]
    Generic,
}

impl Provider {
    /// The provider an API URL belongs to.
    pub fn detect(api: &str) -> Provider {
        let host = api
            .split_once("://")
            .map_or(api, |(_, r)| r)
            .split(['/', '?', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if host.ends_with("earth-search.aws.element84.com") {
            Provider::EarthSearch
        } else if host.ends_with("planetarycomputer.microsoft.com") {
            Provider::PlanetaryComputer
        } else {
            Provider::Generic
        }
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Provider::EarthSearch => "earth-search",
            Provider::PlanetaryComputer => "planetary-computer",
            Provider::Generic => "generic",
        }
    }
}

impl std::str::FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Provider, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "earth-search" | "earthsearch" => Ok(Provider::EarthSearch),
            "planetary-computer" | "pc" => Ok(Provider::PlanetaryComputer),
            "generic" | "none" => Ok(Provider::Generic),
            _ => Err(format!(
                "unknown provider {s:?}: use earth-search, planetary-computer or generic"
            )),
        }
    }
}

/// A search of a STAC API and how its items are ingested: what `ingest --stac-api` runs and
/// the warehouse keeps for `ingest --update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSpec {
    /// The API's landing page (`https://earth-search.aws.element84.com/v1`).
    pub api: String,
    /// Collections to search.
    pub collections: Vec<String>,
    /// West, south, east, north in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
    /// A GeoJSON geometry the items must intersect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intersects: Option<Value>,
    /// An RFC 3339 instant or interval (`start/end`, open ends `..`), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datetime: Option<String>,
    /// A CQL2 text filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Stop after this many items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u64>,
    /// Items per page asked for (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Whose API, when not the one its URL says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// The product profile of every item; `None`: by collection and platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Bands to ingest; `None`: every band of the product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bands: Option<Vec<String>>,
    /// With bands given, also the product's cloud band.
    #[serde(default = "yes")]
    pub cloud_band: bool,
}

fn yes() -> bool {
    true
}

/// Items per page when the search does not say.
pub const DEFAULT_LIMIT: u32 = 100;

/// The most pages one search follows.
const MAX_PAGES: usize = 100_000;

impl SearchSpec {
    /// A search of `collections` at `api`, nothing else set.
    pub fn new(api: &str, collections: &[&str]) -> SearchSpec {
        SearchSpec {
            api: api.to_string(),
            collections: collections.iter().map(|c| c.to_string()).collect(),
            bbox: None,
            intersects: None,
            datetime: None,
            filter: None,
            max_items: None,
            limit: None,
            provider: None,
            product: None,
            bands: None,
            cloud_band: true,
        }
    }

    /// The provider: as set, else the one the URL says.
    pub fn provider(&self) -> Provider {
        self.provider.unwrap_or_else(|| Provider::detect(&self.api))
    }

    /// Checks every parameter and normalises the datetime; nothing is sent.
    pub fn check(&mut self) -> Result<(), Error> {
        let arg = |option, value: String, reason: String| Error::Argument {
            option,
            value,
            reason,
        };
        self.api = self.api.trim().trim_end_matches('/').to_string();
        if !(self.api.starts_with("http://") || self.api.starts_with("https://")) {
            return Err(arg(
                "stac-api",
                self.api.clone(),
                "expected an http:// or https:// URL".into(),
            ));
        }
        self.collections.retain(|c| !c.trim().is_empty());
        if self.collections.is_empty() {
            return Err(arg(
                "collections",
                String::new(),
                "name at least one collection".into(),
            ));
        }
        for c in &mut self.collections {
            *c = c.trim().to_string();
        }
        if let Some(b) = self.bbox {
            check_bbox(&b).map_err(|reason| {
                arg(
                    "bbox",
                    b.iter().map(f64::to_string).collect::<Vec<_>>().join(","),
                    reason,
                )
            })?;
        }
        if self.bbox.is_some() && self.intersects.is_some() {
            return Err(arg(
                "intersects",
                "(geometry)".into(),
                "give --bbox or --intersects, not both".into(),
            ));
        }
        if let Some(g) = &self.intersects {
            check_geometry(g).map_err(|reason| arg("intersects", "(geometry)".into(), reason))?;
        }
        if let Some(d) = &self.datetime {
            self.datetime =
                Some(normalize_datetime(d).map_err(|reason| arg("datetime", d.clone(), reason))?);
        }
        if let Some(f) = &self.filter {
            cql2::parse(f)?;
        }
        if self.max_items == Some(0) {
            return Err(arg("max-items", "0".into(), "must be at least 1".into()));
        }
        if let Some(l) = self.limit {
            if l == 0 || l > 10_000 {
                return Err(arg("limit", l.to_string(), "must be 1 to 10000".into()));
            }
        }
        Ok(())
    }

    /// A short stable id of the search (what it searches and how items are ingested).
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = serde_json::to_string(self).unwrap_or_default();
        let digest = Sha256::digest(text.as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("search-{hex}")
    }
}

/// Checks `[west, south, east, north]` (west may exceed east across the antimeridian).
pub fn check_bbox(b: &[f64; 4]) -> Result<(), String> {
    let [w, s, e, n] = *b;
    if b.iter().any(|v| !v.is_finite()) {
        return Err("every value must be a number".into());
    }
    for (v, what) in [(w, "west"), (e, "east")] {
        if !(-180.0..=180.0).contains(&v) {
            return Err(format!("{what} longitude {v} is out of -180..180"));
        }
    }
    for (v, what) in [(s, "south"), (n, "north")] {
        if !(-90.0..=90.0).contains(&v) {
            return Err(format!("{what} latitude {v} is out of -90..90"));
        }
    }
    if s > n {
        return Err(format!("south {s} is north of north {n} (order: W,S,E,N)"));
    }
    Ok(())
}

/// Parses `W,S,E,N`.
pub fn parse_bbox(text: &str) -> Result<[f64; 4], String> {
    let v: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("invalid --bbox {text:?}: expected W,S,E,N in degrees"))?;
    let b: [f64; 4] = v
        .try_into()
        .map_err(|_| format!("invalid --bbox {text:?}: expected four numbers W,S,E,N"))?;
    check_bbox(&b).map_err(|r| format!("invalid --bbox {text:?}: {r}"))?;
    Ok(b)
}

fn check_geometry(g: &Value) -> Result<(), String> {
    let t = g
        .get("type")
        .and_then(Value::as_str)
        .ok_or("not a GeoJSON geometry (no \"type\")")?;
    match t {
        "Point" | "MultiPoint" | "LineString" | "MultiLineString" | "Polygon" | "MultiPolygon" => {
            if !g.get("coordinates").is_some_and(Value::is_array) {
                return Err(format!("the {t} has no \"coordinates\""));
            }
            Ok(())
        }
        "GeometryCollection" => g
            .get("geometries")
            .and_then(Value::as_array)
            .ok_or_else(|| "the GeometryCollection has no \"geometries\"".to_string())?
            .iter()
            .try_for_each(check_geometry),
        other => Err(format!("{other:?} is not a GeoJSON geometry type")),
    }
}

/// The geometry of a GeoJSON file: a Geometry, a Feature's, or the only Feature of a
/// FeatureCollection.
pub fn read_geometry(path: &Path) -> Result<Value, Error> {
    let name = path.display().to_string();
    let arg = |reason: String| Error::Argument {
        option: "intersects",
        value: name.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| arg(e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| arg(format!("not JSON: {e}")))?;
    let g = match v.get("type").and_then(Value::as_str) {
        Some("Feature") => v.get("geometry").cloned().unwrap_or(Value::Null),
        Some("FeatureCollection") => {
            let features = v
                .get("features")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match features.as_slice() {
                [one] => one.get("geometry").cloned().unwrap_or(Value::Null),
                other => {
                    return Err(arg(format!(
                        "a FeatureCollection of {} features: give one geometry",
                        other.len()
                    )))
                }
            }
        }
        _ => v,
    };
    check_geometry(&g).map_err(arg)?;
    Ok(g)
}

/// One end of a datetime interval: an RFC 3339 instant as given, or a plain date (`YYYY`,
/// `YYYY-MM`, `YYYY-MM-DD`) expanded to the start or the end of that period.
fn interval_end(text: &str, end: bool) -> Result<Option<DateTime<Utc>>, String> {
    let t = text.trim();
    if t.is_empty() || t == ".." {
        return Ok(None);
    }
    let bad = || format!("{t:?} is not a date (YYYY, YYYY-MM, YYYY-MM-DD) or an RFC 3339 time");
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = t.split('-').collect();
    let date = match parts.as_slice() {
        [y] if y.len() == 4 && digits(y) => {
            let y: i32 = y.parse().map_err(|_| bad())?;
            let first = NaiveDate::from_ymd_opt(y, 1, 1).ok_or_else(bad)?;
            Some((first, NaiveDate::from_ymd_opt(y, 12, 31).ok_or_else(bad)?))
        }
        [y, m] if y.len() == 4 && digits(y) && m.len() == 2 && digits(m) => {
            let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
            let next = if m == 12 {
                NaiveDate::from_ymd_opt(y + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(y, m + 1, 1)
            }
            .ok_or_else(bad)?;
            Some((first, next.pred_opt().ok_or_else(bad)?))
        }
        [y, m, d]
            if y.len() == 4
                && m.len() == 2
                && d.len() == 2
                && digits(y)
                && digits(m)
                && digits(d) =>
        {
            let day = NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| bad())?;
            Some((day, day))
        }
        _ => None,
    };
    if let Some((first, last)) = date {
        let at = if end {
            last.and_hms_milli_opt(23, 59, 59, 999)
        } else {
            first.and_hms_opt(0, 0, 0)
        }
        .ok_or_else(bad)?;
        return Ok(Some(Utc.from_utc_datetime(&at)));
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| Some(d.with_timezone(&Utc)))
        .map_err(|_| bad())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A `--datetime` as the API wants it: `start/end` in RFC 3339 with open ends as `..`; plain
/// dates cover their whole day, month or year (`2023-06` is June); `..` between the ends
/// works too.
pub fn normalize_datetime(text: &str) -> Result<String, String> {
    let t = text.trim();
    let (start, end) = match t.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        // RFC 3339 times never hold "..": it can only separate two ends.
        None => match t.split_once("..") {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        },
    };
    let Some(end) = end else {
        // One date is its whole period; one instant is itself.
        let first = interval_end(start, false)?.ok_or("empty")?;
        let last = interval_end(start, true)?.ok_or("empty")?;
        return Ok(if first == last {
            rfc3339(first)
        } else {
            format!("{}/{}", rfc3339(first), rfc3339(last))
        });
    };
    let (a, b) = (interval_end(start, false)?, interval_end(end, true)?);
    if let (Some(a), Some(b)) = (a, b) {
        if a > b {
            return Err(format!(
                "the start {} is after the end {}",
                rfc3339(a),
                rfc3339(b)
            ));
        }
    }
    if a.is_none() && b.is_none() {
        return Err("both ends are open; leave --datetime out to search all times".into());
    }
    let show = |t: Option<DateTime<Utc>>| t.map_or("..".to_string(), rfc3339);
    Ok(format!("{}/{}", show(a), show(b)))
}

/// How the filter was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FilterMode {
    /// No filter.
    #[default]
    None,
    /// Sent as cql2-json (Filter extension), and checked on the items returned.
    Cql2Json,
    /// What the `query` extension can say sent with it; the whole filter applied to the
    /// items returned.
    QueryExtension,
    /// The API has neither: applied to the items returned.
    Client,
}

/// What a search found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The items, as JSON, in the API's order (after the filter, without repeated ids).
    pub items: Vec<Value>,
    /// Items matched, as the API counted them (`numberMatched`, `context.matched`).
    pub matched: Option<u64>,
    /// Pages fetched.
    pub pages: usize,
    /// Items the API returned.
    pub returned: usize,
    /// Items the API returned that do not pass the filter.
    pub filtered_out: usize,
    /// Items returned twice (same id).
    pub repeated: usize,
    /// How the filter was applied.
    pub filter_mode: FilterMode,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Told of each page: items so far, and the API's matched count when it gives one.
pub trait SearchProgress {
    /// A page arrived.
    fn page(&self, _items: usize, _matched: Option<u64>) {}
}

impl SearchProgress for () {}

/// What the landing page and conformance say.
struct Service {
    search_url: String,
    post: bool,
    get: bool,
    collections_url: String,
    conforms: Vec<String>,
}

fn link_href<'v>(v: &'v Value, rel: &str, method: Option<&str>) -> Option<&'v str> {
    v.get("links")?.as_array()?.iter().find_map(|l| {
        let r = l.get("rel")?.as_str()?;
        let m = l.get("method").and_then(Value::as_str).unwrap_or("GET");
        (r == rel && method.is_none_or(|w| w.eq_ignore_ascii_case(m)))
            .then(|| l.get("href")?.as_str())
            .flatten()
    })
}

fn service(spec: &SearchSpec, client: &JsonClient) -> Result<Service, Error> {
    let landing = client.send(&Request::get(&spec.api))?;
    let search_post = link_href(&landing, "search", Some("POST"));
    let search_get = link_href(&landing, "search", Some("GET"));
    let search_url = search_post
        .or(search_get)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}/search", spec.api));
    let collections_url = link_href(&landing, "data", None)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}/collections", spec.api));
    let mut conforms: Vec<String> = landing
        .get("conformsTo")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if conforms.is_empty() {
        let url = link_href(&landing, "conformance", None)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}/conformance", spec.api));
        if let Ok(c) = client.send(&Request::get(&url)) {
            conforms = c
                .get("conformsTo")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
        }
    }
    // Without method-specific links, try POST first (a 405 falls back to GET).
    let (post, get) = match (search_post, search_get) {
        (None, None) => (true, true),
        (p, g) => (p.is_some(), g.is_some()),
    };
    Ok(Service {
        search_url,
        post,
        get,
        collections_url,
        conforms,
    })
}

impl Service {
    fn has(&self, needle: &str) -> bool {
        self.conforms.iter().any(|c| c.contains(needle))
    }

    fn has_filter(&self) -> bool {
        self.has("item-search#filter")
            || self.has("ogcapi-features-3/1.0/conf/filter")
            || self.has("cql2/1.0/conf/cql2-json")
    }

    fn has_query(&self) -> bool {
        self.has("item-search#query")
    }
}

/// Checks that each collection exists, so a typo is one clear error, not an empty search.
fn check_collections(
    spec: &SearchSpec,
    service: &Service,
    client: &JsonClient,
) -> Result<(), Error> {
    for c in &spec.collections {
        let url = format!(
            "{}/{}",
            service.collections_url.trim_end_matches('/'),
            encode(c)
        );
        match client.send(&Request::get(&url)) {
            Ok(_) => {}
            Err(api::Error::Status { status: 404, .. }) => {
                let listed = client
                    .send(&Request::get(&service.collections_url))
                    .ok()
                    .and_then(|v| {
                        let ids: Vec<String> = v
                            .get("collections")?
                            .as_array()?
                            .iter()
                            .filter_map(|c| c.get("id")?.as_str().map(str::to_string))
                            .collect();
                        Some(ids)
                    })
                    .unwrap_or_default();
                let available = if listed.is_empty() {
                    "none listed".to_string()
                } else if listed.len() > 20 {
                    format!("{}, ... ({} in all)", listed[..20].join(", "), listed.len())
                } else {
                    listed.join(", ")
                };
                return Err(Error::UnknownCollection {
                    api: spec.api.clone(),
                    collection: c.clone(),
                    available,
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Percent-encodes a query value (keeping `,` and `:` readable).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b',' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The same search as GET parameters.
fn as_get(url: &str, body: &Map<String, Value>) -> String {
    let mut params = Vec::new();
    for (k, v) in body {
        let value = match (k.as_str(), v) {
            (_, Value::String(s)) => s.clone(),
            ("collections" | "bbox" | "ids", Value::Array(a)) => a
                .iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            (_, other) => other.to_string(),
        };
        params.push(format!("{}={}", encode(k), encode(&value)));
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", params.join("&"))
}

/// Runs a search (checked with [`SearchSpec::check`]) to its end: every page, or `max_items`.
pub fn search(
    spec: &SearchSpec,
    client: &JsonClient,
    progress: &dyn SearchProgress,
) -> Result<Found, Error> {
    let start = Instant::now();
    let service = service(spec, client)?;
    check_collections(spec, &service, client)?;
    let filter = spec.filter.as_deref().map(cql2::parse).transpose()?;
    let limit = spec.limit.unwrap_or(DEFAULT_LIMIT);
    let limit = match spec.max_items {
        Some(m) => (limit as u64).min(m).max(1) as u32,
        None => limit,
    };
    let mut body = Map::new();
    body.insert("collections".into(), json!(spec.collections));
    if let Some(b) = spec.bbox {
        body.insert("bbox".into(), json!(b));
    }
    if let Some(g) = &spec.intersects {
        body.insert("intersects".into(), g.clone());
    }
    if let Some(d) = &spec.datetime {
        body.insert("datetime".into(), json!(d));
    }
    body.insert("limit".into(), json!(limit));
    let mut found = Found::default();
    let mut get_body = body.clone();
    if let Some(f) = &filter {
        if service.has_filter() {
            found.filter_mode = FilterMode::Cql2Json;
            body.insert("filter-lang".into(), json!("cql2-json"));
            body.insert("filter".into(), f.to_json());
            get_body.insert("filter-lang".into(), json!("cql2-text"));
            get_body.insert(
                "filter".into(),
                json!(spec.filter.clone().unwrap_or_default()),
            );
        } else if let (true, (Some(q), _)) = (service.has_query(), f.to_query()) {
            found.filter_mode = FilterMode::QueryExtension;
            body.insert("query".into(), q.clone());
            get_body.insert("query".into(), json!(q.to_string()));
        } else {
            found.filter_mode = FilterMode::Client;
        }
    }
    let mut request = if service.post || !service.get {
        Request::post(&service.search_url, Value::Object(body))
    } else {
        Request::get(&as_get(&service.search_url, &get_body))
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut previous: Option<Request> = None;
    loop {
        if found.pages >= MAX_PAGES {
            return Err(Error::BadAnswer {
                url: request.url.clone(),
                reason: format!(
                    "more than {MAX_PAGES} pages; narrow the search or set --max-items"
                ),
            });
        }
        let page = match client.send(&request) {
            Err(api::Error::Status { status: 405, .. })
                if request.method == Method::Post && found.pages == 0 =>
            {
                // The server takes GET only.
                request = Request::get(&as_get(&service.search_url, &get_body));
                client.send(&request)?
            }
            other => other?,
        };
        found.pages += 1;
        let features = page
            .get("features")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::BadAnswer {
                url: request.url.clone(),
                reason: "the answer is not an ItemCollection (no \"features\")".into(),
            })?;
        if found.pages == 1 {
            found.matched = page
                .get("numberMatched")
                .and_then(Value::as_u64)
                .or_else(|| page.get("context")?.get("matched")?.as_u64());
        }
        found.returned += features.len();
        for item in features {
            if spec
                .max_items
                .is_some_and(|m| found.items.len() as u64 >= m)
            {
                break;
            }
            let id = item
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if !seen.insert(id) {
                found.repeated += 1;
                continue;
            }
            if filter.as_ref().is_some_and(|f| !f.matches(item)) {
                found.filtered_out += 1;
                continue;
            }
            found.items.push(item.clone());
        }
        progress.page(found.items.len(), found.matched);
        let full = spec
            .max_items
            .is_some_and(|m| found.items.len() as u64 >= m);
        if features.is_empty() || full {
            break;
        }
        let Some(next) = next_request(&page, &request) else {
            break;
        };
        if previous.as_ref() == Some(&next) || next == request {
            return Err(Error::BadAnswer {
                url: next.url.clone(),
                reason: "the next link asks for the same page again".into(),
            });
        }
        previous = Some(std::mem::replace(&mut request, next));
    }
    found.seconds = start.elapsed().as_secs_f64();
    Ok(found)
}

/// The request a page's `rel=next` link asks for: its `method` (GET by default), `href`,
/// `headers` and `body`; with `merge: true` the body and headers are merged into the
/// previous request's.
pub fn next_request(page: &Value, previous: &Request) -> Option<Request> {
    let link = page
        .get("links")?
        .as_array()?
        .iter()
        .find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))?;
    let href = link.get("href")?.as_str()?.to_string();
    let method = match link.get("method").and_then(Value::as_str) {
        Some(m) if m.eq_ignore_ascii_case("POST") => Method::Post,
        _ => Method::Get,
    };
    let merge = link.get("merge").and_then(Value::as_bool) == Some(true);
    let mut headers: Vec<(String, String)> = if merge {
        previous.headers.clone()
    } else {
        Vec::new()
    };
    if let Some(h) = link.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
            headers.push((k.clone(), v));
        }
    }
    let body = match method {
        Method::Get => None,
        Method::Post => {
            let given = link.get("body").and_then(Value::as_object);
            let prev = previous.body.as_ref().and_then(Value::as_object);
            Some(Value::Object(match (merge, given, prev) {
                (true, Some(g), Some(p)) => {
                    let mut b = p.clone();
                    for (k, v) in g {
                        b.insert(k.clone(), v.clone());
                    }
                    b
                }
                (_, Some(g), _) => g.clone(),
                (_, None, Some(p)) => p.clone(),
                (_, None, None) => Map::new(),
            }))
        }
    };
    Some(Request {
        method,
        url: href,
        body,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_expand_to_rfc3339_intervals() {
        for (given, want) in [
            (
                "2020-01-01/2024-12-31",
                "2020-01-01T00:00:00Z/2024-12-31T23:59:59.999Z",
            ),
            ("2023-06", "2023-06-01T00:00:00Z/2023-06-30T23:59:59.999Z"),
            ("2024-02", "2024-02-01T00:00:00Z/2024-02-29T23:59:59.999Z"),
            ("2023", "2023-01-01T00:00:00Z/2023-12-31T23:59:59.999Z"),
            (
                "2023-06-11",
                "2023-06-11T00:00:00Z/2023-06-11T23:59:59.999Z",
            ),
            ("2020-01-01/..", "2020-01-01T00:00:00Z/.."),
            ("../2020-01-01", "../2020-01-01T23:59:59.999Z"),
            ("2020-01-01/", "2020-01-01T00:00:00Z/.."),
            (
                "2023-04-01..2023-09-30",
                "2023-04-01T00:00:00Z/2023-09-30T23:59:59.999Z",
            ),
            ("2023-06-11T02:16:59Z", "2023-06-11T02:16:59Z"),
            (
                "2023-06-11T02:16:59+09:00/2023-06-12",
                "2023-06-10T17:16:59Z/2023-06-12T23:59:59.999Z",
            ),
        ] {
            assert_eq!(normalize_datetime(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "2023-13",
            "yesterday",
            "2024-01-01/2023-01-01",
            "../..",
            "2023-02-30",
        ] {
            assert!(normalize_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bbox_and_arguments_are_checked_before_any_request() {
        assert_eq!(
            parse_bbox("127.9, 36.4,128,36.5"),
            Ok([127.9, 36.4, 128.0, 36.5])
        );
        for (bad, words) in [
            ("1,2,3", "four numbers"),
            ("a,b,c,d", "W,S,E,N"),
            ("0,95,1,96", "latitude 95"),
            ("190,0,191,1", "longitude 190"),
            ("0,10,1,5", "north"),
        ] {
            let e = parse_bbox(bad).unwrap_err();
            assert!(e.contains(words) && e.contains(bad), "{e}");
        }
        let mut spec = SearchSpec::new("https://x/v1/", &["a"]);
        spec.datetime = Some("2023".into());
        spec.check().unwrap();
        assert_eq!(spec.api, "https://x/v1");
        assert_eq!(
            spec.datetime.as_deref(),
            Some("2023-01-01T00:00:00Z/2023-12-31T23:59:59.999Z")
        );
        spec.filter = Some("eo:cloud_cover <".into());
        let e = spec.check().unwrap_err().to_string();
        assert!(e.contains("--filter") && e.contains("position 17"), "{e}");
        let mut spec = SearchSpec::new("ftp://x", &["a"]);
        assert!(spec.check().unwrap_err().to_string().contains("--stac-api"));
        let mut spec = SearchSpec::new("https://x", &[]);
        assert!(spec
            .check()
            .unwrap_err()
            .to_string()
            .contains("--collections"));
    }

    #[test]
    fn providers_from_the_url_or_by_name() {
        assert_eq!(
            Provider::detect("https://earth-search.aws.element84.com/v1"),
            Provider::EarthSearch
        );
        assert_eq!(
            Provider::detect("https://planetarycomputer.microsoft.com/api/stac/v1"),
            Provider::PlanetaryComputer
        );
        assert_eq!(Provider::detect("http://127.0.0.1:8080"), Provider::Generic);
        assert_eq!("pc".parse::<Provider>(), Ok(Provider::PlanetaryComputer));
        assert!("cdse"
            .parse::<Provider>()
            .unwrap_err()
            .contains("earth-search"));
        let spec = SearchSpec::new("https://a", &["x"]);
        let mut other = spec.clone();
        other.bands = Some(vec!["red".into()]);
        assert_ne!(spec.id(), other.id());
        assert_eq!(spec.id(), SearchSpec::new("https://a", &["x"]).id());
        let back: SearchSpec =
            serde_json::from_value(serde_json::to_value(&other).unwrap()).unwrap();
        assert_eq!(back, other);
    }

    #[test]
    fn next_links_with_method_body_headers_and_merge() {
        let first = Request {
            method: Method::Post,
            url: "http://api/search".into(),
            body: Some(json!({"collections": ["a"], "limit": 10})),
            headers: vec![("X-A".into(), "1".into())],
        };
        let page = json!({"links": [{"rel": "next", "href": "http://api/search", "method": "POST",
                                      "body": {"token": "p2"}, "merge": true, "headers": {"X-B": "2"}}]});
        let next = next_request(&page, &first).unwrap();
        assert_eq!(
            next.body.unwrap(),
            json!({"collections": ["a"], "limit": 10, "token": "p2"})
        );
        assert_eq!(
            next.headers,
            vec![
                ("X-A".to_string(), "1".to_string()),
                ("X-B".into(), "2".into())
            ]
        );
        let page = json!({"links": [{"rel": "next", "href": "http://api/search", "method": "POST",
                                      "body": {"collections": ["a"], "skip": 10}}]});
        let next = next_request(&page, &first).unwrap();
        assert_eq!(
            next.body.unwrap(),
            json!({"collections": ["a"], "skip": 10})
        );
        assert!(next.headers.is_empty());
        let page = json!({"links": [{"rel": "next", "href": "http://api/search?token=abc"}]});
        let next = next_request(&page, &first).unwrap();
        assert_eq!((next.method, next.body), (Method::Get, None));
        assert!(next_request(&json!({"links": []}), &first).is_none());
    }

    #[test]
    fn get_parameters() {
        let mut body = Map::new();
        body.insert("collections".into(), json!(["a", "b"]));
        body.insert("bbox".into(), json!([1.5, 2, 3, 4]));
        body.insert("datetime".into(), json!("2023-01-01T00:00:00Z/.."));
        body.insert("filter".into(), json!("x = 'a b'"));
        assert_eq!(
            as_get("http://api/search", &body),
            "http://api/search?bbox=1.5,2,3,4&collections=a,b&datetime=2023-01-01T00:00:00Z%2F..&filter=x%20%3D%20%27a%20b%27"
        );
    }
}
