//! From a STAC Item to the files of one scene: only the assets of the bands asked for (and
//! the product's cloud band), named by the product profile whatever the provider calls them,
//! with the scale, offset and nodata that make each band physical by the item's own rules.

use super::item::{Item, ItemAsset, ItemBand};
use crate::ingest::discover::{Asset, BandValues, SceneSource};
use crate::profile::{BandProfile, BandRole, ProductProfile};

/// Roles of assets that are never pixels to ingest.
const SKIPPED_ROLES: [&str; 5] = ["thumbnail", "overview", "metadata", "visual", "tiles"];

/// Sentinel-2 processing baseline from which L2A values carry an offset of -1000 DN.
const S2_OFFSET_BASELINE: f64 = 4.0;
/// That offset in reflectance (-1000 DN at the scale of 1e-4).
const S2_BOA_OFFSET: f64 = -0.1;

/// Which assets of an item a scene takes, and how their bands are named.
#[derive(Debug, Clone)]
pub struct AssetRules {
    /// The product bands resolve through (asset keys and band names to the profile's names);
    /// `None` keeps the names bands come with.
    pub profile: Option<ProductProfile>,
    /// Bands asked for (`--bands`, any name the profile or the item knows); `None`: every band
    /// of the profile (every GeoTIFF data asset without a profile).
    pub bands: Option<Vec<String>>,
    /// With bands asked for, also take the profile's cloud band, so `--mask clouds` works later.
    pub cloud_band: bool,
}

impl Default for AssetRules {
    fn default() -> Self {
        Self {
            profile: None,
            bands: None,
            cloud_band: true,
        }
    }
}

/// A band to find in each item.
#[derive(Debug, Clone)]
struct Wanted {
    /// Warehouse name: the profile's canonical name, or the name asked for.
    name: String,
    /// Missing from an item is an error (asked for), not a gap (the cloud band, or every
    /// band of a profile).
    required: bool,
}

impl AssetRules {
    /// The bands to find, or why the bands asked for cannot be used with the profile.
    fn wanted(&self) -> Result<Option<Vec<Wanted>>, String> {
        let mut out: Vec<Wanted> = Vec::new();
        let mut push = |name: String, required: bool| {
            if !out.iter().any(|w| w.name.eq_ignore_ascii_case(&name)) {
                out.push(Wanted { name, required });
            }
        };
        match (&self.profile, &self.bands) {
            (Some(p), Some(bands)) => {
                for b in bands {
                    let band = p.provider_band(b).ok_or_else(|| {
                        format!(
                            "band {b:?} is not a band of product {} (bands: {})",
                            p.id,
                            band_list(p)
                        )
                    })?;
                    push(band.name.clone(), true);
                }
                if self.cloud_band {
                    if let Some(cloud) = p.cloud_mask.band().and_then(|c| p.band(c)) {
                        push(cloud.name.clone(), false);
                    }
                }
            }
            (Some(p), None) => {
                for b in &p.bands {
                    push(b.name.clone(), false);
                }
            }
            (None, Some(bands)) => {
                for b in bands {
                    push(b.trim().to_string(), true);
                }
            }
            (None, None) => return Ok(None),
        }
        Ok(Some(out))
    }

    /// Checks the bands asked for against the profile before any search or file is read.
    pub fn check(&self) -> Result<(), String> {
        self.wanted().map(|_| ())
    }
}

fn band_list(p: &ProductProfile) -> String {
    p.bands
        .iter()
        .map(|b| match b.aliases.first() {
            Some(a) => format!("{} ({a})", b.name),
            None => b.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// True for an asset that may hold pixels: a GeoTIFF (by media type, or by extension when it
/// has none) whose roles are not only descriptive. JPEG 2000 copies are never data here.
pub fn is_data_asset(a: &ItemAsset) -> bool {
    if a.roles.iter().any(|r| SKIPPED_ROLES.contains(&r.as_str())) {
        return false;
    }
    let href = a
        .href
        .split(['?', '#'])
        .next()
        .unwrap_or(&a.href)
        .to_ascii_lowercase();
    if a.media_type.is_empty() {
        href.ends_with(".tif") || href.ends_with(".tiff")
    } else {
        a.media_type.contains("tiff")
    }
}

/// The names an asset's single band goes by, best first: the asset key, then the band's
/// `name` and `common_name`.
fn single_names(a: &ItemAsset) -> Vec<&str> {
    let mut names = vec![a.key.as_str()];
    if let [b] = a.bands.as_slice() {
        names.extend(b.name.as_deref());
        names.extend(b.common_name.as_deref());
    }
    names
}

/// The names one band of a multi-band asset goes by.
fn band_names_of(b: &ItemBand) -> Vec<&str> {
    b.name
        .iter()
        .chain(&b.common_name)
        .map(String::as_str)
        .collect()
}

/// How well a name an asset or band goes by matches a wanted band: `Some(0)` it is the
/// band's own name, `Some(1)` one of the profile's aliases, `Some(2)` a provider's name for it
/// (`OLI_B4`); `None` another band. Without a profile, names compare as they are.
fn match_quality(name: &str, wanted: &str, profile: Option<&ProductProfile>) -> Option<u8> {
    let stem = name
        .rsplit_once('.')
        .filter(|(_, e)| {
            ["tif", "tiff", "jp2"]
                .iter()
                .any(|x| e.eq_ignore_ascii_case(x))
        })
        .map_or(name, |(s, _)| s);
    match profile {
        Some(p) => {
            let band = p.provider_band(name)?;
            if !band.name.eq_ignore_ascii_case(wanted) {
                return None;
            }
            Some(if band.name.eq_ignore_ascii_case(stem) {
                0
            } else if p.band(stem).is_some() {
                1
            } else {
                2
            })
        }
        None => stem.eq_ignore_ascii_case(wanted).then_some(0),
    }
}

/// Where a wanted band is in an item: the asset and the band's index in it. Single-band
/// assets come first, best match first (the band's own name over an alias over a provider's
/// name, then asset key over band name over common name: Earth Search's Landsat `qa_pixel`
/// over `qa`, which is the surface-temperature QA); then a band of a multi-band asset (a
/// true-colour composite also lists `red`).
fn find(
    data: &[&ItemAsset],
    wanted: &str,
    profile: Option<&ProductProfile>,
) -> Option<(usize, usize)> {
    let mut best: Option<(usize, (u8, usize))> = None;
    for (i, a) in data.iter().enumerate() {
        if a.bands.len() > 1 {
            continue;
        }
        let rank = single_names(a)
            .iter()
            .enumerate()
            .filter_map(|(pos, n)| Some((match_quality(n, wanted, profile)?, pos)))
            .min();
        if let Some(rank) = rank {
            if best.is_none_or(|(_, r)| rank < r) {
                best = Some((i, rank));
            }
        }
    }
    if let Some((i, _)) = best {
        return Some((i, 0));
    }
    data.iter().enumerate().find_map(|(i, a)| {
        if a.bands.len() < 2 {
            return None;
        }
        let k = a.bands.iter().position(|b| {
            band_names_of(b)
                .iter()
                .any(|n| match_quality(n, wanted, profile).is_some())
        })?;
        Some((i, k))
    })
}

/// The scale, offset and nodata that make one band of an item physical, by the item's own
/// rules:
/// - `raster:bands` `scale` and `offset` as declared;
/// - Sentinel-2 (`s2:processing_baseline`) reflectance: from baseline 04.00 the values carry
///   an offset of -1000 DN (-0.1), declared or not; before 04.00 they carry none, whatever is
///   declared; and none when Earth Search says it removed it already
///   (`earthsearch:boa_offset_applied`, whose items still declare -0.1);
/// - `nodata` as declared.
pub fn band_values(
    item: &Item,
    asset: &ItemAsset,
    band: Option<&ItemBand>,
    profile_band: Option<&BandProfile>,
) -> BandValues {
    let declared = band.cloned().unwrap_or_default();
    let mut values = BandValues {
        scale: declared.scale,
        offset: declared.offset,
        nodata: declared.nodata,
    };
    let reflectance = match profile_band {
        Some(b) => b.role == BandRole::Reflectance,
        None => asset.roles.iter().any(|r| r == "reflectance"),
    };
    let applied = item.flag("earthsearch:boa_offset_applied");
    if let (Some(baseline), true) = (item.processing_baseline(), reflectance) {
        let scale = declared.scale.or(profile_band.map(|b| b.scale));
        let carries_offset = baseline >= S2_OFFSET_BASELINE - 1e-9 && !applied;
        match (carries_offset, scale) {
            (false, Some(s)) => {
                values.scale = Some(s);
                values.offset = Some(0.0);
            }
            (false, None) => values.offset = declared.offset.map(|_| 0.0),
            (true, Some(s)) => {
                values.scale = Some(s);
                values.offset = Some(declared.offset.unwrap_or(S2_BOA_OFFSET));
            }
            // No scale known: the offset in DN.
            (true, None) => {
                values.scale = Some(1.0);
                values.offset = Some(declared.offset.map_or(-1000.0, |o| o * 1e4));
            }
        }
    } else if applied && declared.offset.is_some() {
        values.offset = Some(0.0);
    }
    values
}

/// The scene an item makes under `rules`, or why it cannot be ingested (one line naming the
/// item): its assets are only those of the wanted bands.
pub fn scene_of(item: &Item, rules: &AssetRules) -> Result<SceneSource, String> {
    let profile = rules.profile.as_ref();
    let data: Vec<&ItemAsset> = item.assets.iter().filter(|a| is_data_asset(a)).collect();
    let keys = || {
        let k: Vec<&str> = data.iter().map(|a| a.key.as_str()).collect();
        if k.is_empty() {
            "none".to_string()
        } else {
            k.join(", ")
        }
    };
    let mut picked: Vec<(usize, Vec<Option<String>>)> = Vec::new();
    let mut found: Vec<String> = Vec::new();
    match rules.wanted()? {
        Some(wanted) => {
            for w in &wanted {
                match find(&data, &w.name, profile) {
                    Some((i, k)) => {
                        let slot = match picked.iter().position(|(j, _)| *j == i) {
                            Some(p) => p,
                            None => {
                                picked.push((i, vec![None; data[i].bands.len().max(1)]));
                                picked.len() - 1
                            }
                        };
                        if let Some(name) = picked[slot].1.get_mut(k) {
                            *name = Some(w.name.clone());
                        }
                        found.push(w.name.clone());
                    }
                    None if w.required => {
                        return Err(format!(
                            "item {} has no GeoTIFF asset for band {:?} (data assets: {})",
                            item.id,
                            w.name,
                            keys()
                        ))
                    }
                    None => {}
                }
            }
            if picked.is_empty() {
                let what = match profile {
                    Some(p) => format!("a band of product {}", p.id),
                    None => "the bands asked for".to_string(),
                };
                return Err(format!(
                    "item {} has no GeoTIFF asset of {what} (data assets: {})",
                    item.id,
                    keys()
                ));
            }
        }
        None => {
            picked = (0..data.len())
                .map(|i| (i, vec![None; data[i].bands.len().max(1)]))
                .collect();
            if picked.is_empty() {
                return Err(format!("item {} has no GeoTIFF data assets", item.id));
            }
        }
    }
    let mut assets = Vec::with_capacity(picked.len());
    for (i, names) in picked {
        assets.push(asset_of(item, data[i], names, profile));
    }
    assets.sort_by(|a, b| a.location.cmp(&b.location));
    let wanted_bands = rules.wanted()?.map(|_| found);
    Ok(SceneSource {
        id: item.id.clone(),
        assets,
        acquired: item.datetime,
        cloud_cover: item.number("eo:cloud_cover"),
        epsg: item.epsg(),
        fingerprint: None,
        declared_bounds: item.bounds,
        wanted_bands,
    })
}

/// One chosen asset as a scene file. `names` holds, per band of the asset, the wanted name it
/// was chosen for; other bands keep what the item or the profile calls them.
fn asset_of(
    item: &Item,
    a: &ItemAsset,
    names: Vec<Option<String>>,
    profile: Option<&ProductProfile>,
) -> Asset {
    let multi = a.bands.len() > 1;
    let mut unnamed_single = false;
    let mut band_names = Vec::with_capacity(names.len());
    let mut values = Vec::with_capacity(names.len());
    for (k, chosen) in names.into_iter().enumerate() {
        let band = a.bands.get(k);
        let own: Vec<&str> = if multi {
            band.map(band_names_of).unwrap_or_default()
        } else {
            single_names(a)
        };
        let profile_band = profile.and_then(|p| match &chosen {
            Some(c) => p.band(c),
            None => own.iter().find_map(|n| p.provider_band(n)),
        });
        unnamed_single = chosen.is_none() && profile_band.is_none();
        let name = chosen
            .or_else(|| profile_band.map(|b| b.name.clone()))
            .or_else(|| {
                if multi {
                    own.first().map(|n| n.to_string())
                } else {
                    // Without a profile a single band is named by its list, else its key.
                    band.and_then(|b| b.name.clone().or_else(|| b.common_name.clone()))
                        .or_else(|| Some(a.key.clone()))
                }
            })
            .unwrap_or_else(|| format!("{}_{}", a.key, k + 1));
        band_names.push(name);
        values.push(band_values(item, a, band, profile_band));
    }
    let has_values = values.iter().any(|v| *v != BandValues::default());
    // An asset without a band list that nothing named: a single-band file takes its key, a
    // multi-band one the names of --bands, its band descriptions or the profile.
    let unnamed = a.bands.is_empty() && unnamed_single;
    let requester_pays = a.requester_pays.unwrap_or(false)
        || (a.href.starts_with("s3://")
            && (a.href.starts_with("s3://usgs-landsat/") || item.flag("storage:requester_pays")));
    Asset {
        location: a.href.clone(),
        band_names: (!unnamed).then_some(band_names),
        single_band_name: unnamed.then(|| a.key.clone()),
        values: if has_values { values } else { Vec::new() },
        declared_epsg: a.epsg.or(item.epsg()),
        requester_pays,
        url_query: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::item::parse;
    use super::*;
    use serde_json::json;

    fn s2_item(props: serde_json::Value) -> Item {
        let mut p = json!({"datetime": "2025-07-31T13:19:22.93Z", "proj:epsg": 32720});
        p.as_object_mut()
            .unwrap()
            .extend(props.as_object().unwrap().clone());
        let raster = json!([{"nodata": 0, "scale": 0.0001, "offset": -0.1}]);
        parse(
            &json!({
                "id": "S2B_20EPT_20250731_0_L2A", "properties": p,
                "assets": {
                    "red": {"href": "https://x/B04.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                            "eo:bands": [{"name": "B04", "common_name": "red"}], "raster:bands": raster, "roles": ["data", "reflectance"]},
                    "nir": {"href": "https://x/B08.tif", "type": "image/tiff; application=geotiff",
                            "eo:bands": [{"name": "B08", "common_name": "nir"}], "raster:bands": raster, "roles": ["data", "reflectance"]},
                    "nir08": {"href": "https://x/B8A.tif", "type": "image/tiff; application=geotiff",
                            "eo:bands": [{"name": "B8A", "common_name": "nir08"}], "roles": ["data"]},
                    "scl": {"href": "https://x/SCL.tif", "type": "image/tiff; application=geotiff",
                            "raster:bands": [{"nodata": 0, "data_type": "uint8"}], "roles": ["data"]},
                    "aot": {"href": "https://x/AOT.tif", "type": "image/tiff", "roles": ["data"]},
                    "red-jp2": {"href": "s3://x/B04.jp2", "type": "image/jp2", "eo:bands": [{"name": "B04", "common_name": "red"}], "roles": ["data"]},
                    "visual": {"href": "https://x/TCI.tif", "type": "image/tiff", "roles": ["visual"],
                               "eo:bands": [{"name": "B04", "common_name": "red"}, {"name": "B03"}, {"name": "B02"}]},
                    "thumbnail": {"href": "https://x/t.jpg", "type": "image/jpeg", "roles": ["thumbnail"]}
                }
            }),
            None,
        )
        .unwrap()
    }

    fn rules(product: &str, bands: Option<&[&str]>) -> AssetRules {
        AssetRules {
            profile: ProductProfile::built_in(product),
            bands: bands.map(|b| b.iter().map(|s| s.to_string()).collect()),
            cloud_band: true,
        }
    }

    fn locations(s: &SceneSource) -> Vec<(String, Vec<String>)> {
        s.assets
            .iter()
            .map(|a| {
                (
                    a.location.rsplit('/').next().unwrap().to_string(),
                    a.band_names.clone().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn only_the_assets_of_the_bands_asked_for_and_the_cloud_band() {
        let item = s2_item(json!({"s2:processing_baseline": "05.11"}));
        let s = scene_of(&item, &rules("sentinel2_l2a", Some(&["red", "nir"]))).unwrap();
        assert_eq!(
            locations(&s),
            [
                ("B04.tif".to_string(), vec!["B04".to_string()]),
                ("B08.tif".to_string(), vec!["B08".to_string()]),
                ("SCL.tif".to_string(), vec!["SCL".to_string()]),
            ]
        );
        assert_eq!(s.wanted_bands.as_deref().unwrap(), ["B04", "B08", "SCL"]);
        assert_eq!(s.assets[0].declared_epsg, Some(32720));
        // No cloud band when not wanted; every profile band without --bands (no AOT, no JP2).
        let mut no_cloud = rules("sentinel2_l2a", Some(&["B8A"]));
        no_cloud.cloud_band = false;
        let s = scene_of(&item, &no_cloud).unwrap();
        assert_eq!(
            locations(&s),
            [("B8A.tif".to_string(), vec!["B8A".to_string()])]
        );
        let all = scene_of(&item, &rules("sentinel2_l2a", None)).unwrap();
        assert_eq!(all.assets.len(), 4);
        // Without a profile: matched by key, band name or common name, named as asked.
        let s = scene_of(&item, &rules("none", Some(&["B04", "nir08"]))).unwrap();
        assert_eq!(
            locations(&s),
            [
                ("B04.tif".to_string(), vec!["B04".to_string()]),
                ("B8A.tif".to_string(), vec!["nir08".to_string()]),
            ]
        );
    }

    #[test]
    fn a_missing_band_or_an_unknown_band_is_one_clear_line() {
        let item = s2_item(json!({}));
        let err = scene_of(&item, &rules("sentinel2_l2a", Some(&["swir16"]))).unwrap_err();
        assert!(
            err.contains("S2B_20EPT_20250731_0_L2A") && err.contains("B11") && err.contains("aot"),
            "{err}"
        );
        let err = scene_of(&item, &rules("sentinel2_l2a", Some(&["ndvi"]))).unwrap_err();
        assert!(
            err.contains("\"ndvi\"") && err.contains("sentinel2_l2a"),
            "{err}"
        );
    }

    #[test]
    fn sentinel2_offsets_follow_the_baseline_and_earth_search_flag() {
        let red = |props: serde_json::Value| {
            let item = s2_item(props);
            let s = scene_of(&item, &rules("sentinel2_l2a", Some(&["red"]))).unwrap();
            let v = s.assets[0].values[0];
            let scl = &s.assets[1].values;
            (
                v.scale,
                v.offset,
                v.nodata,
                scl.first().map(|v| (v.scale, v.offset)),
            )
        };
        // Collection 1 (offset not removed): the declared -0.1.
        assert_eq!(
            red(json!({"s2:processing_baseline": "05.11"})),
            (Some(1e-4), Some(-0.1), Some(0.0), Some((None, None)))
        );
        // Earth Search removed it already and says so: none, though -0.1 is declared.
        assert_eq!(
            red(json!({"s2:processing_baseline": "05.11", "earthsearch:boa_offset_applied": true}))
                .1,
            Some(0.0)
        );
        // Before 04.00 there is none, whatever is declared.
        assert_eq!(red(json!({"s2:processing_baseline": "03.01"})).1, Some(0.0));
        // Not Sentinel-2: as declared.
        assert_eq!(red(json!({})).1, Some(-0.1));
        // Planetary Computer declares nothing: the baseline decides, the profile scales.
        let mut item = s2_item(json!({"s2:processing_baseline": "04.00"}));
        for a in &mut item.assets {
            for b in &mut a.bands {
                b.scale = None;
                b.offset = None;
            }
        }
        let s = scene_of(&item, &rules("sentinel2_l2a", Some(&["red"]))).unwrap();
        assert_eq!(
            (s.assets[0].values[0].scale, s.assets[0].values[0].offset),
            (Some(1e-4), Some(-0.1))
        );
    }

    #[test]
    fn landsat_names_whatever_the_provider_calls_them() {
        let item = parse(
            &json!({
                "id": "LC08", "properties": {"datetime": "2023-10-08T17:37:26Z", "platform": "landsat-8"},
                "assets": {
                    "SR_B4.TIF": {"href": "s3://usgs-landsat/x_SR_B4.TIF", "type": "image/tiff"},
                    "nir08": {"href": "s3://usgs-landsat/x_SR_B5.TIF", "type": "image/tiff",
                              "eo:bands": [{"name": "OLI_B5", "common_name": "nir08"}],
                              "raster:bands": [{"scale": 2.75e-05, "offset": -0.2}], "storage:requester_pays": true},
                    "qa": {"href": "s3://usgs-landsat/x_ST_QA.TIF", "type": "image/tiff", "roles": ["data"]},
                    "qa_pixel": {"href": "s3://usgs-landsat/x_QA_PIXEL.TIF", "type": "image/tiff", "roles": ["cloud"]},
                    "qa_aerosol": {"href": "s3://usgs-landsat/x_QA_AEROSOL.TIF", "type": "image/tiff"}
                }
            }),
            None,
        )
        .unwrap();
        let s = scene_of(&item, &rules("landsat8_c2l2", Some(&["red", "nir"]))).unwrap();
        // `qa` is an alias of QA_PIXEL too, but Earth Search's `qa` asset is ST_QA.
        let names: Vec<Vec<String>> = s
            .assets
            .iter()
            .map(|a| a.band_names.clone().unwrap())
            .collect();
        assert_eq!(names, [vec!["QA_PIXEL"], vec!["SR_B4"], vec!["SR_B5"]]);
        assert!(s.assets.iter().all(|a| a.requester_pays));
        assert_eq!(
            (s.assets[2].values[0].scale, s.assets[2].values[0].offset),
            (Some(2.75e-5), Some(-0.2))
        );
    }
}
