//! STAC: Items and ItemCollections as scene descriptions (one asset per band, `datetime`,
//! `eo:cloud_cover`, projection info, the way odc-stac and stackstac users describe scenes),
//! and STAC APIs searched for them.
//!
//! `item` parses an Item; `assets` chooses the assets of the bands asked for, names them by
//! the product profile and works out each band's scale, offset and nodata by the item's own
//! rules; `cql2` parses filters; `search` runs an Item Search page by page (over
//! [`crate::source::api`]); `provider` knows what Earth Search and Planetary Computer need
//! (requester pays, SAS tokens); `dedup` keeps one item per acquisition; `run` ties a search
//! to the ingest pipeline and keeps searches in the warehouse for `ingest --update`.

pub mod assets;
pub mod cql2;
pub mod dedup;
pub mod item;
pub mod provider;
pub mod run;
pub mod search;

pub use assets::AssetRules;
pub use provider::SigningOptions;
pub use run::{ingest_search, update, StacReport};
pub use search::{Provider, SearchSpec};

use super::discover::SceneSource;
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

/// The Items of a parsed Item, ItemCollection or FeatureCollection.
pub fn features(value: &Value) -> Result<Vec<&Value>, String> {
    match value.get("type").and_then(Value::as_str) {
        Some("Feature") => Ok(vec![value]),
        Some("FeatureCollection") => Ok(value
            .get("features")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()),
        _ => Err("expected \"type\": \"Feature\" or \"FeatureCollection\"".into()),
    }
}

/// Items that cannot be ingested: (item id, reason naming it).
pub type Unusable = Vec<(String, String)>;

/// Reads a STAC Item, ItemCollection or FeatureCollection of Items from a file; each item
/// becomes a scene of the assets `rules` choose. An item that cannot be used (no asset for a
/// band asked for) is reported in the second list, `(item id, reason)`; the others go on.
pub fn read_items(path: &Path, rules: &AssetRules) -> Result<(Vec<SceneSource>, Unusable), Error> {
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
    let not_stac = |reason: String| Error::NotStac {
        file: file.clone(),
        reason,
    };
    let mut scenes = Vec::new();
    let mut failed = Vec::new();
    for v in features(&value).map_err(not_stac)? {
        let parsed = item::parse(v, Some(base)).map_err(not_stac)?;
        match assets::scene_of(&parsed, rules) {
            Ok(s) => scenes.push(s),
            Err(reason) => failed.push((parsed.id.clone(), reason)),
        }
    }
    Ok((scenes, failed))
}

/// Turns one STAC Item into a scene of all its GeoTIFF data assets; relative hrefs resolve
/// against `base`.
pub fn parse_item(item: &Value, base: &Path) -> Result<SceneSource, String> {
    let parsed = item::parse(item, Some(base))?;
    assets::scene_of(&parsed, &AssetRules::default())
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
        let rules = AssetRules::default();
        let err = read_items(&p, &rules).unwrap_err().to_string();
        assert!(err.contains("x.json") && err.contains("Feature"), "{err}");
        std::fs::write(&p, "not json").unwrap();
        assert!(read_items(&p, &rules)
            .unwrap_err()
            .to_string()
            .contains("x.json"));
    }
}
