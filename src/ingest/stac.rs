//! STAC Items (and ItemCollections) as scene descriptions: one asset per band, `datetime`,
//! `eo:cloud_cover`, projection info — the way odc-stac and stackstac users describe scenes.

use super::discover::{Asset, SceneSource};
use crate::time::parse_datetime;
use serde_json::Value;
use std::path::Path;

/// Errors from reading STAC JSON.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a STAC Item or ItemCollection.
    #[error("{file}: not a STAC Item: {reason}")]
    NotStac {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
}

/// Roles of assets that are never pixels to ingest.
const SKIPPED_ROLES: [&str; 4] = ["thumbnail", "overview", "metadata", "visual"];

/// Reads a STAC Item, ItemCollection or FeatureCollection of Items from a file.
pub fn read_items(path: &Path) -> Result<Vec<SceneSource>, Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        file: file.clone(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::NotStac {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let items: Vec<&Value> = match value.get("type").and_then(Value::as_str) {
        Some("Feature") => vec![&value],
        Some("FeatureCollection") => value
            .get("features")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => {
            return Err(Error::NotStac {
                file,
                reason: "expected \"type\": \"Feature\" or \"FeatureCollection\"".into(),
            })
        }
    };
    items
        .into_iter()
        .map(|item| {
            parse_item(item, base).map_err(|reason| Error::NotStac {
                file: file.clone(),
                reason,
            })
        })
        .collect()
}

/// Turns one STAC Item into a scene; relative hrefs resolve against `base`.
pub fn parse_item(item: &Value, base: &Path) -> Result<SceneSource, String> {
    let id = item
        .get("id")
        .and_then(Value::as_str)
        .ok_or("the item has no \"id\"")?
        .to_string();
    let props = item
        .get("properties")
        .ok_or_else(|| format!("item {id} has no \"properties\""))?;
    let when = props
        .get("datetime")
        .and_then(Value::as_str)
        .or_else(|| props.get("start_datetime").and_then(Value::as_str));
    let acquired = match when {
        Some(t) => Some(
            parse_datetime(t).ok_or_else(|| format!("item {id}: datetime {t:?} is not a date"))?,
        ),
        None => None,
    };
    let cloud_cover = props.get("eo:cloud_cover").and_then(Value::as_f64);
    let epsg = props
        .get("proj:epsg")
        .and_then(Value::as_u64)
        .or_else(|| {
            props
                .get("proj:code")
                .and_then(Value::as_str)
                .and_then(|c| c.strip_prefix("EPSG:"))
                .and_then(|c| c.parse().ok())
        })
        .and_then(|c| u32::try_from(c).ok());
    let assets_obj = item
        .get("assets")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("item {id} has no \"assets\""))?;
    let mut assets = Vec::new();
    for (key, asset) in assets_obj {
        let Some(href) = asset.get("href").and_then(Value::as_str) else {
            continue;
        };
        let roles: Vec<&str> = asset
            .get("roles")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if roles.iter().any(|r| SKIPPED_ROLES.contains(r)) {
            continue;
        }
        let media = asset.get("type").and_then(Value::as_str).unwrap_or("");
        let lower = href.to_ascii_lowercase();
        let is_tiff = media.contains("tiff") || lower.ends_with(".tif") || lower.ends_with(".tiff");
        if !is_tiff {
            continue;
        }
        let band_list = asset
            .get("eo:bands")
            .or_else(|| asset.get("bands"))
            .and_then(Value::as_array);
        // Without a band list the asset key names a single-band file; a multi-band file
        // takes its names from --bands, its band descriptions or the profile.
        let band_names = match band_list {
            Some(list) if !list.is_empty() => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, b)| {
                        b.get("name")
                            .or_else(|| b.get("common_name"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .unwrap_or_else(|| {
                                if list.len() == 1 {
                                    key.clone()
                                } else {
                                    format!("{key}_{}", i + 1)
                                }
                            })
                    })
                    .collect(),
            ),
            _ => None,
        };
        assets.push(Asset {
            location: resolve_href(href, base),
            single_band_name: band_names.is_none().then(|| key.clone()),
            band_names,
        });
    }
    if assets.is_empty() {
        return Err(format!("item {id} has no GeoTIFF data assets"));
    }
    assets.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(SceneSource {
        id,
        assets,
        acquired,
        cloud_cover,
        epsg,
    })
}

fn resolve_href(href: &str, base: &Path) -> String {
    if href.contains("://") {
        href.to_string()
    } else if let Some(p) = href.strip_prefix("file://") {
        p.to_string()
    } else if Path::new(href).is_absolute() {
        href.to_string()
    } else {
        base.join(href).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_an_earth_search_style_item() {
        let item = json!({
            "type": "Feature", "stac_version": "1.0.0", "id": "S2B_52SDG_20230611_0_L2A",
            "properties": {"datetime": "2023-06-11T02:16:59Z", "eo:cloud_cover": 3.5, "proj:epsg": 32652},
            "assets": {
                "red": {"href": "B04.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                        "roles": ["data"], "eo:bands": [{"name": "B04", "common_name": "red"}]},
                "nir": {"href": "https://example.invalid/B08.tif", "roles": ["data"]},
                "thumbnail": {"href": "thumb.jpg", "roles": ["thumbnail"]},
                "visual": {"href": "TCI.tif", "roles": ["visual"]},
                "metadata": {"href": "meta.xml", "roles": ["metadata"]}
            }
        });
        let s = parse_item(&item, Path::new("/data/items")).unwrap();
        assert_eq!(s.id, "S2B_52SDG_20230611_0_L2A");
        assert_eq!(s.cloud_cover, Some(3.5));
        assert_eq!(s.epsg, Some(32652));
        assert_eq!(
            s.acquired.unwrap().to_rfc3339(),
            "2023-06-11T02:16:59+00:00"
        );
        assert_eq!(s.assets.len(), 2);
        let red = s
            .assets
            .iter()
            .find(|a| a.location.ends_with("B04.tif"))
            .unwrap();
        assert_eq!(red.location, "/data/items/B04.tif");
        assert_eq!(red.band_names.as_deref(), Some(&["B04".to_string()][..]));
        let nir = s
            .assets
            .iter()
            .find(|a| a.location.starts_with("https"))
            .unwrap();
        assert_eq!(nir.band_names, None);
        assert_eq!(nir.single_band_name.as_deref(), Some("nir"));
    }

    #[test]
    fn rejects_what_is_not_an_item() {
        let no_assets = json!({"type": "Feature", "id": "x", "properties": {"datetime": "2023-01-01T00:00:00Z"}, "assets": {}});
        assert!(parse_item(&no_assets, Path::new("."))
            .unwrap_err()
            .contains("no GeoTIFF"));
        let bad_time =
            json!({"type": "Feature", "id": "x", "properties": {"datetime": "soon"}, "assets": {}});
        assert!(parse_item(&bad_time, Path::new("."))
            .unwrap_err()
            .contains("soon"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, "{\"type\": \"Catalog\"}").unwrap();
        let err = read_items(&p).unwrap_err().to_string();
        assert!(err.contains("x.json") && err.contains("Feature"), "{err}");
        std::fs::write(&p, "not json").unwrap();
        assert!(read_items(&p).unwrap_err().to_string().contains("x.json"));
    }
}
