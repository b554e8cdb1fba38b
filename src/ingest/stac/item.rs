//! A STAC Item as PixelQuery reads it: id, collection, time, footprint and the assets with
//! their band lists (`eo:bands`, `raster:bands`, STAC 1.1 `bands`), projection and storage
//! facts. Parsing keeps every asset; choosing which to open is [`super::assets`]' job.

use crate::time::parse_datetime;
use crate::Bounds;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::path::Path;

/// One band of an asset, as the item lists it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemBand {
    /// `name` (`B04`, `OLI_B4`).
    pub name: Option<String>,
    /// `common_name` / `eo:common_name` (`red`).
    pub common_name: Option<String>,
    /// `raster:bands` `scale` (STAC 1.1: `raster:scale`).
    pub scale: Option<f64>,
    /// `raster:bands` `offset` (STAC 1.1: `raster:offset`).
    pub offset: Option<f64>,
    /// `raster:bands` `nodata` (STAC 1.1: `nodata`).
    pub nodata: Option<f64>,
}

/// One asset of an item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemAsset {
    /// The asset key (`red`, `B04`, `SR_B4.TIF`).
    pub key: String,
    /// Where the file is: a URL, or a local path (relative hrefs resolved).
    pub href: String,
    /// Media type, lower-cased (may be empty).
    pub media_type: String,
    /// Roles (`data`, `thumbnail`, `metadata`...).
    pub roles: Vec<String>,
    /// Its bands: `eo:bands`/`bands` merged by position with `raster:bands`.
    pub bands: Vec<ItemBand>,
    /// EPSG code from the asset's own `proj:code`/`proj:epsg`.
    pub epsg: Option<u32>,
    /// `storage:requester_pays` of the asset (or its `alternate.s3`).
    pub requester_pays: Option<bool>,
}

/// A parsed STAC Item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// `id`.
    pub id: String,
    /// `collection`, else the last path segment of its `collection` link.
    pub collection: Option<String>,
    /// `datetime`, else `start_datetime`.
    pub datetime: Option<DateTime<Utc>>,
    /// All properties, for filters and provider rules.
    pub properties: Map<String, Value>,
    /// Lon/lat bounds from `bbox`, else from the geometry; `None` across the antimeridian.
    pub bounds: Option<Bounds>,
    /// Every asset, in key order.
    pub assets: Vec<ItemAsset>,
}

impl Item {
    /// A property as text.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }

    /// A property as a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.properties.get(key).and_then(Value::as_f64)
    }

    /// A property that is `true`.
    pub fn flag(&self, key: &str) -> bool {
        self.properties.get(key).and_then(Value::as_bool) == Some(true)
    }

    /// The item's EPSG code (`proj:code` `EPSG:N` or `proj:epsg`).
    pub fn epsg(&self) -> Option<u32> {
        epsg_of(&self.properties)
    }

    /// `s2:processing_baseline` as a number (`"05.11"` is 5.11).
    pub fn processing_baseline(&self) -> Option<f64> {
        self.text("s2:processing_baseline")
            .and_then(|b| b.trim().parse().ok())
            .or_else(|| self.number("s2:processing_baseline"))
    }

    /// The platform, lower-cased with `_` as `-` (`LANDSAT_7` is `landsat-7`).
    pub fn platform(&self) -> Option<String> {
        self.text("platform")
            .map(|p| p.trim().to_ascii_lowercase().replace(['_', ' '], "-"))
    }
}

/// `proj:code` (`EPSG:N`) or `proj:epsg` of an object.
fn epsg_of(obj: &Map<String, Value>) -> Option<u32> {
    obj.get("proj:epsg")
        .and_then(Value::as_u64)
        .or_else(|| {
            obj.get("proj:code")
                .and_then(Value::as_str)
                .and_then(|c| c.strip_prefix("EPSG:").or_else(|| c.strip_prefix("epsg:")))
                .and_then(|c| c.trim().parse().ok())
        })
        .and_then(|c| u32::try_from(c).ok())
        .filter(|&c| c > 0)
}

fn f64_of(obj: &Map<String, Value>, keys: &[&str]) -> Option<f64> {
    keys.iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_f64))
        .filter(|v| v.is_finite())
}

fn str_of(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .map(str::to_string)
}

/// Parses one item; relative hrefs resolve against `base` (the item file's folder, or
/// nothing for items from an API).
pub fn parse(item: &Value, base: Option<&Path>) -> Result<Item, String> {
    let id = item
        .get("id")
        .and_then(Value::as_str)
        .ok_or("the item has no \"id\"")?
        .to_string();
    let props = item
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("item {id} has no \"properties\""))?;
    let when = props
        .get("datetime")
        .and_then(Value::as_str)
        .or_else(|| props.get("start_datetime").and_then(Value::as_str));
    let datetime = match when {
        Some(t) => Some(
            parse_datetime(t).ok_or_else(|| format!("item {id}: datetime {t:?} is not a date"))?,
        ),
        None => None,
    };
    let collection = item
        .get("collection")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            item.get("links")?
                .as_array()?
                .iter()
                .find(|l| l.get("rel").and_then(Value::as_str) == Some("collection"))?
                .get("href")?
                .as_str()?
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .map(str::to_string)
        });
    let assets_obj = item
        .get("assets")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("item {id} has no \"assets\""))?;
    let mut assets = Vec::with_capacity(assets_obj.len());
    for (key, asset) in assets_obj {
        let Some(obj) = asset.as_object() else {
            continue;
        };
        let Some(href) = obj.get("href").and_then(Value::as_str) else {
            continue;
        };
        assets.push(parse_asset(key, obj, href, base));
    }
    assets.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Item {
        id,
        collection,
        datetime,
        properties: props.clone(),
        bounds: item_bounds(item),
        assets,
    })
}

fn parse_asset(key: &str, obj: &Map<String, Value>, href: &str, base: Option<&Path>) -> ItemAsset {
    let roles = obj
        .get("roles")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let list = |k: &str| -> Vec<&Map<String, Value>> {
        obj.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default()
    };
    let eo = {
        let bands = list("bands");
        if bands.is_empty() {
            list("eo:bands")
        } else {
            bands
        }
    };
    let raster = list("raster:bands");
    let n = eo.len().max(raster.len());
    let mut bands: Vec<ItemBand> = (0..n)
        .map(|i| {
            let e = eo.get(i);
            let r = raster.get(i).or(e);
            ItemBand {
                name: e.and_then(|e| str_of(e, &["name"])),
                common_name: e.and_then(|e| str_of(e, &["common_name", "eo:common_name"])),
                scale: r.and_then(|r| f64_of(r, &["scale", "raster:scale"])),
                offset: r.and_then(|r| f64_of(r, &["offset", "raster:offset"])),
                nodata: r.and_then(|r| f64_of(r, &["nodata", "raster:nodata"])),
            }
        })
        .collect();
    // STAC 1.1 puts a single band's values on the asset itself.
    let own = ItemBand {
        name: None,
        common_name: str_of(obj, &["eo:common_name"]),
        scale: f64_of(obj, &["raster:scale"]),
        offset: f64_of(obj, &["raster:offset"]),
        nodata: f64_of(obj, &["nodata", "raster:nodata"]),
    };
    if own != ItemBand::default() {
        match bands.as_mut_slice() {
            [] => bands.push(own),
            [one] => {
                one.common_name = one.common_name.take().or(own.common_name);
                one.scale = one.scale.or(own.scale);
                one.offset = one.offset.or(own.offset);
                one.nodata = one.nodata.or(own.nodata);
            }
            _ => {}
        }
    }
    let requester_pays = obj
        .get("storage:requester_pays")
        .and_then(Value::as_bool)
        .or_else(|| {
            obj.get("alternate")?
                .get("s3")?
                .get("storage:requester_pays")?
                .as_bool()
        });
    ItemAsset {
        key: key.to_string(),
        href: resolve_href(href, base),
        media_type: obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase(),
        roles,
        bands,
        epsg: epsg_of(obj),
        requester_pays,
    }
}

/// Lon/lat bounds of an item: its `bbox` (2D or 3D), else its geometry's coordinates.
/// `None` when it has neither, when they are out of range, or across the antimeridian.
fn item_bounds(item: &Value) -> Option<Bounds> {
    let from_bbox = item.get("bbox").and_then(Value::as_array).and_then(|b| {
        let v: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
        match v.len() {
            4 => Some(Bounds::new(v[0], v[1], v[2], v[3])),
            6 => Some(Bounds::new(v[0], v[1], v[3], v[4])),
            _ => None,
        }
    });
    let b = from_bbox.or_else(|| {
        let mut points = Vec::new();
        collect_points(item.get("geometry")?.get("coordinates")?, &mut points, 0);
        (!points.is_empty()).then(|| Bounds::from_points(points))
    })?;
    let ok = b.min_x <= b.max_x
        && b.min_y <= b.max_y
        && b.min_x >= -180.0
        && b.max_x <= 180.0
        && b.min_y >= -90.0
        && b.max_y <= 90.0;
    ok.then_some(b)
}

fn collect_points(v: &Value, out: &mut Vec<(f64, f64)>, depth: usize) {
    let Some(a) = v.as_array() else { return };
    if depth > 8 {
        return;
    }
    match (
        a.first().and_then(Value::as_f64),
        a.get(1).and_then(Value::as_f64),
    ) {
        (Some(x), Some(y)) => out.push((x, y)),
        _ => a.iter().for_each(|c| collect_points(c, out, depth + 1)),
    }
}

/// A relative href resolved against `base`; URLs and absolute paths as they are.
pub fn resolve_href(href: &str, base: Option<&Path>) -> String {
    if let Some(p) = href.strip_prefix("file://") {
        p.to_string()
    } else if href.contains("://") || Path::new(href).is_absolute() {
        href.to_string()
    } else {
        match base {
            Some(b) => b.join(href).display().to_string(),
            None => href.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_bands_projection_and_storage() {
        let v = json!({
            "type": "Feature", "id": "LC08_X", "collection": "landsat-c2-l2",
            "bbox": [-105.6, 39.2, -102.8, 41.4],
            "properties": {"datetime": "2023-10-08T17:37:26.656958Z", "proj:epsg": 32613,
                           "platform": "LANDSAT_8", "s2:processing_baseline": "05.11"},
            "assets": {
                "red": {"href": "s3://usgs-landsat/a/B4.TIF", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "eo:bands": [{"name": "OLI_B4", "common_name": "red"}],
                        "raster:bands": [{"nodata": 0, "scale": 2.75e-05, "offset": -0.2}],
                        "roles": ["data"], "storage:requester_pays": true},
                "b11": {"href": "b11.tif", "type": "image/tiff",
                        "bands": [{"name": "B11", "eo:common_name": "swir16", "raster:scale": 0.0001}],
                        "proj:code": "EPSG:32652"},
                "one": {"href": "one.tif", "raster:scale": 2.0, "nodata": 7},
                "broken": "not an object"
            }
        });
        let item = parse(&v, Some(Path::new("/items"))).unwrap();
        assert_eq!(item.collection.as_deref(), Some("landsat-c2-l2"));
        assert_eq!(item.epsg(), Some(32613));
        assert_eq!(item.platform().as_deref(), Some("landsat-8"));
        assert_eq!(item.processing_baseline(), Some(5.11));
        assert_eq!(item.bounds, Some(Bounds::new(-105.6, 39.2, -102.8, 41.4)));
        let keys: Vec<&str> = item.assets.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["b11", "one", "red"]);
        let red = &item.assets[2];
        assert_eq!(red.requester_pays, Some(true));
        assert_eq!(
            red.bands,
            [ItemBand {
                name: Some("OLI_B4".into()),
                common_name: Some("red".into()),
                scale: Some(2.75e-5),
                offset: Some(-0.2),
                nodata: Some(0.0),
            }]
        );
        let b11 = &item.assets[0];
        assert_eq!(b11.href, "/items/b11.tif");
        assert_eq!(b11.epsg, Some(32652));
        assert_eq!(b11.bands[0].common_name.as_deref(), Some("swir16"));
        assert_eq!(b11.bands[0].scale, Some(1e-4));
        assert_eq!(item.assets[1].bands[0].scale, Some(2.0));
        assert_eq!(item.assets[1].bands[0].nodata, Some(7.0));
    }

    #[test]
    fn bounds_from_geometry_and_collection_from_links() {
        let v = json!({
            "id": "x", "properties": {"datetime": null, "start_datetime": "2020-01-01T00:00:00Z"},
            "geometry": {"type": "MultiPolygon", "coordinates": [[[[10, 45], [11, 45], [11, 46], [10, 45]]]]},
            "links": [{"rel": "collection", "href": "https://api/collections/naip/"}],
            "assets": {}
        });
        let item = parse(&v, None).unwrap();
        assert_eq!(item.bounds, Some(Bounds::new(10.0, 45.0, 11.0, 46.0)));
        assert_eq!(item.collection.as_deref(), Some("naip"));
        assert_eq!(
            item.datetime.unwrap().to_rfc3339(),
            "2020-01-01T00:00:00+00:00"
        );
        let bad = json!({"id": "y", "properties": {}, "bbox": [170, 0, -170, 1], "assets": {}});
        assert_eq!(parse(&bad, None).unwrap().bounds, None);
        assert!(parse(&json!({"id": "z"}), None)
            .unwrap_err()
            .contains("properties"));
    }
}
