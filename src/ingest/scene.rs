//! Preparing one scene for ingestion: open its files, name its bands, find its acquisition
//! time, and fingerprint it so a re-run can skip it.

use super::discover::{Asset, SceneSource};
use super::naming::{check_name, time_from_name, time_from_pattern};
use crate::cog::Cog;
use crate::crs::Crs;
use crate::profile::{BandProfile, BandRole, ProductProfile};
use crate::source::{self, RemoteOptions};
use crate::store::BandScaling;
use chrono::{DateTime, Utc};
use regex::Regex;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Why a scene cannot be ingested (reported per scene; other scenes go on).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the scene could not be opened or read.
    #[error(transparent)]
    Cog(#[from] crate::cog::Error),
    /// A byte source could not be opened.
    #[error(transparent)]
    Source(#[from] crate::source::Error),
    /// No acquisition time anywhere.
    #[error("{file}: no acquisition time: not in STAC, GDAL metadata or the TIFF DateTime tag, and none in the file name (use --date-pattern REGEX)")]
    NoTime {
        /// The scene's first file.
        file: String,
    },
    /// `--date-pattern` matched something that is not a date.
    #[error("{file}: {reason}")]
    BadDate {
        /// The scene's first file.
        file: String,
        /// What the pattern matched.
        reason: String,
    },
    /// Band names cannot be used.
    #[error("{file}: {reason}")]
    Bands {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The file has no georeferencing.
    #[error(
        "{file}: no georeferencing (no geotransform or no EPSG code); cannot place it on the grid"
    )]
    NoGeoref {
        /// The file.
        file: String,
    },
    /// What the input declares (a STAC item's projection or footprint) disagrees with the file.
    #[error("{file}: {reason} (--allow-mismatch ingests it with a warning)")]
    Mismatch {
        /// The file.
        file: String,
        /// What disagrees.
        reason: String,
    },
}

/// What to do when a STAC item's declared projection or footprint disagrees with its file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mismatch {
    /// The scene fails with [`Error::Mismatch`] (the default: a wrong href or a wrong item).
    #[default]
    Error,
    /// The scene is ingested by the file's own georeferencing, with a warning.
    Warn,
}

/// One band of a file, mapped to a warehouse band.
#[derive(Debug, Clone)]
pub struct BandTarget {
    /// 0-based band index in the file.
    pub index: usize,
    /// Warehouse band name (canonical profile name when the profile knows it).
    pub name: String,
    /// Profile properties (scale/offset/nodata/role/resolution); defaults for unknown bands.
    pub profile: BandProfile,
}

/// One opened file of a scene.
#[derive(Debug, Clone)]
pub struct SceneFile {
    /// The opened COG.
    pub cog: Cog,
    /// Its bands to ingest.
    pub bands: Vec<BandTarget>,
    /// EPSG code of its CRS.
    pub epsg: u32,
    /// Nodata value of its bands: the file's own, else what the input declares.
    pub nodata: Option<f64>,
}

/// A scene ready to cut into tiles.
#[derive(Debug, Clone)]
pub struct PreparedScene {
    /// Scene id (unique per acquisition and product).
    pub id: String,
    /// Where it came from (first file or STAC id), for the catalog.
    pub source: String,
    /// Acquisition time.
    pub acquired: DateTime<Utc>,
    /// Cloud cover percent, if known.
    pub cloud_cover: Option<f64>,
    /// Content fingerprint: locations, sizes and a hash of each header.
    pub fingerprint: String,
    /// Its files.
    pub files: Vec<SceneFile>,
    /// Bytes of all files.
    pub bytes: u64,
    /// Scale and offset per band, when the input declares them (STAC `raster:bands`).
    pub scaling: BTreeMap<String, BandScaling>,
    /// What did not look right but was ingested anyway (with [`Mismatch::Warn`]).
    pub warnings: Vec<String>,
}

/// What the user said about band names and dates.
#[derive(Debug, Clone, Default)]
pub struct SceneOptions {
    /// `--bands`: names for the bands of multi-band files, in file order.
    pub bands: Option<Vec<String>>,
    /// `--date-pattern`.
    pub date_pattern: Option<Regex>,
    /// Remote source settings.
    pub remote: RemoteOptions,
    /// When a STAC item's projection or footprint disagrees with its files.
    pub mismatch: Mismatch,
}

fn generic_band(name: &str, resolution: f64, nodata: Option<f64>) -> BandProfile {
    BandProfile {
        name: name.to_string(),
        aliases: Vec::new(),
        wavelength_nm: None,
        resolution,
        scale: 1.0,
        offset: 0.0,
        nodata,
        role: BandRole::Reflectance,
    }
}

/// Names the bands of one file: the input's own names (STAC band lists, band-file tokens),
/// else the input's name for a single-band file (a STAC asset key), else `--bands`, else
/// band descriptions, else the profile's band order, else `band_1..n`.
fn band_names(
    file: &str,
    cog: &Cog,
    asset: &Asset,
    options: &SceneOptions,
    profile: Option<&ProductProfile>,
) -> Result<Vec<String>, Error> {
    let n = cog.meta().band_count();
    let bad = |reason: String| Error::Bands {
        file: file.to_string(),
        reason,
    };
    if let (Some(name), 1) = (&asset.single_band_name, n) {
        if asset.band_names.is_none() {
            return Ok(vec![name.clone()]);
        }
    }
    if let Some(names) = asset.band_names.as_ref().or(options.bands.as_ref()) {
        if names.len() != n {
            return Err(bad(format!(
                "{} band names given ({}) for a file with {n} bands",
                names.len(),
                names.join(",")
            )));
        }
        return Ok(names.clone());
    }
    let descriptions: Vec<String> = cog
        .meta()
        .bands
        .iter()
        .filter_map(|b| b.description.clone())
        .filter(|d| !d.trim().is_empty())
        .collect();
    if descriptions.len() == n {
        return Ok(descriptions);
    }
    if let Some(p) = profile {
        let spectral: Vec<&BandProfile> = p
            .bands
            .iter()
            .filter(|b| b.role != BandRole::Quality)
            .collect();
        if spectral.len() == n {
            return Ok(spectral.iter().map(|b| b.name.clone()).collect());
        }
    }
    Ok((1..=n).map(|i| format!("band_{i}")).collect())
}

/// Opens the files of a scene and works out its bands, time and fingerprint.
pub fn prepare(
    scene: &SceneSource,
    profile: Option<&ProductProfile>,
    options: &SceneOptions,
) -> Result<PreparedScene, Error> {
    let mut files = Vec::new();
    let mut hasher = Sha256::new();
    let mut bytes = 0;
    let mut acquired = scene.acquired;
    let mut scaling = BTreeMap::new();
    let mut warnings = Vec::new();
    let mismatch = |warnings: &mut Vec<String>, file: &str, reason: String| -> Result<(), Error> {
        match options.mismatch {
            Mismatch::Error => Err(Error::Mismatch {
                file: file.to_string(),
                reason,
            }),
            Mismatch::Warn => {
                warnings.push(format!("{file}: {reason}"));
                Ok(())
            }
        }
    };
    let mut footprints = Vec::new();
    for asset in &scene.assets {
        let paying;
        let remote = if asset.requester_pays && !options.remote.s3_requester_pays {
            paying = RemoteOptions {
                s3_requester_pays: true,
                ..options.remote.clone()
            };
            &paying
        } else {
            &options.remote
        };
        let src = match &asset.url_query {
            Some(query) if asset.location.starts_with("http") => {
                let sep = if asset.location.contains('?') {
                    '&'
                } else {
                    '?'
                };
                let url = format!("{}{sep}{query}", asset.location);
                std::sync::Arc::new(source::HttpSource::open_as(
                    asset.location.clone(),
                    url,
                    None,
                    remote,
                )?) as std::sync::Arc<dyn source::ByteSource>
            }
            _ => source::open_with(&asset.location, remote)?,
        };
        let cog = Cog::from_source(src)?;
        let meta = cog.meta();
        let (Some(transform), Some(epsg)) = (meta.transform(), meta.epsg().or(scene.epsg)) else {
            return Err(Error::NoGeoref {
                file: asset.location.clone(),
            });
        };
        if let (Some(declared), Some(own)) = (asset.declared_epsg, meta.epsg()) {
            if declared != own {
                mismatch(
                    &mut warnings,
                    &asset.location,
                    format!("the item says EPSG:{declared} (proj:code/proj:epsg), the file is in EPSG:{own}"),
                )?;
            }
        }
        let native_res = transform.pixel_width.abs();
        let declared_nodata = asset.values.iter().find_map(|v| v.nodata);
        let nodata = match (meta.nodata, declared_nodata) {
            (Some(own), Some(declared)) if own.to_bits() != declared.to_bits() => {
                warnings.push(format!(
                    "{}: the item says nodata {declared}, the file {own}; the file's is used",
                    asset.location
                ));
                Some(own)
            }
            (own, declared) => own.or(declared),
        };
        let names = band_names(&asset.location, &cog, asset, options, profile)?;
        let mut bands = Vec::with_capacity(names.len());
        for (index, raw_name) in names.iter().enumerate() {
            let known = profile.and_then(|p| p.band(raw_name));
            let name = known
                .map(|b| b.name.clone())
                .unwrap_or_else(|| raw_name.clone());
            check_name("band name", &name).map_err(|reason| Error::Bands {
                file: asset.location.clone(),
                reason,
            })?;
            let wanted = scene
                .wanted_bands
                .as_ref()
                .is_none_or(|w| w.iter().any(|w| w.eq_ignore_ascii_case(&name)));
            if !wanted {
                continue;
            }
            let mut band = known
                .cloned()
                .unwrap_or_else(|| generic_band(&name, native_res, nodata));
            if nodata.is_some() {
                band.nodata = nodata;
            }
            if let Some(info) = meta.bands.get(index) {
                if known.is_none() {
                    band.scale = info.scale.unwrap_or(1.0);
                    band.offset = info.offset.unwrap_or(0.0);
                }
            }
            if let Some(v) = asset.values.get(index) {
                if v.scale.is_some() || v.offset.is_some() {
                    scaling.insert(
                        name.clone(),
                        BandScaling {
                            scale: v.scale.unwrap_or(1.0),
                            offset: v.offset.unwrap_or(0.0),
                        },
                    );
                }
            }
            bands.push(BandTarget {
                index,
                name,
                profile: band,
            });
        }
        if acquired.is_none() {
            acquired = meta.acquired;
        }
        if let Some(b) = meta.bounds() {
            if let Ok(lonlat) = Crs::from_epsg(epsg).and_then(|c| c.lonlat_bounds(&b)) {
                footprints.push((asset.location.clone(), lonlat));
            }
        }
        // Identity: where it is, how big, and what its header says.
        hasher.update(asset.location.as_bytes());
        hasher.update(meta.file_size.to_le_bytes());
        let head = cog
            .source()
            .read_at(0, meta.file_size.min(65536) as usize)?;
        hasher.update(&head);
        bytes += meta.file_size;
        if bands.is_empty() {
            continue;
        }
        files.push(SceneFile {
            cog,
            bands,
            epsg,
            nodata,
        });
    }
    if let Some(declared) = scene.declared_bounds {
        for (file, lonlat) in &footprints {
            if !declared.intersects(lonlat) {
                mismatch(
                    &mut warnings,
                    file,
                    format!(
                        "the item's footprint ({:.4}, {:.4}, {:.4}, {:.4}) does not overlap the file's ({:.4}, {:.4}, {:.4}, {:.4})",
                        declared.min_x, declared.min_y, declared.max_x, declared.max_y,
                        lonlat.min_x, lonlat.min_y, lonlat.max_x, lonlat.max_y
                    ),
                )?;
            }
        }
    }
    let first = scene
        .assets
        .first()
        .map(|a| a.location.clone())
        .unwrap_or_default();
    if files.is_empty() {
        return Err(Error::Bands {
            file: first,
            reason: format!(
                "none of the bands to ingest ({}) is in the scene's files",
                scene.wanted_bands.as_deref().unwrap_or_default().join(", ")
            ),
        });
    }
    let file_name = first.rsplit('/').next().unwrap_or(&first);
    let file_name = file_name.split(['?', '#']).next().unwrap_or(file_name);
    // An explicit --date-pattern that matches wins over STAC and the files' metadata.
    let from_pattern = match &options.date_pattern {
        Some(re) => match time_from_pattern(file_name, re) {
            Ok(None) => time_from_pattern(&scene.id, re),
            other => other,
        }
        .map_err(|reason| Error::BadDate {
            file: first.clone(),
            reason,
        })?,
        None => None,
    };
    let acquired = from_pattern
        .or(acquired)
        .or_else(|| time_from_name(file_name, None))
        .or_else(|| time_from_name(&scene.id, None))
        .ok_or_else(|| Error::NoTime {
            file: first.clone(),
        })?;
    let digest = hasher.finalize();
    let fingerprint = scene
        .fingerprint
        .clone()
        .unwrap_or_else(|| digest.iter().take(16).map(|b| format!("{b:02x}")).collect());
    Ok(PreparedScene {
        id: scene.id.clone(),
        source: first,
        acquired,
        cloud_cover: scene.cloud_cover,
        fingerprint,
        files,
        bytes,
        scaling,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cog::{write_cog, WriteOptions};
    use crate::GeoTransform;
    use ndarray::Array3;
    use std::path::Path;

    fn write(path: &Path, bands: usize, descriptions: &[&str], datetime: Option<&str>) {
        let data =
            Array3::from_shape_fn((bands, 32, 32), |(b, y, x)| (b * 1000 + y * 32 + x) as u16);
        let options = WriteOptions {
            block_size: 16,
            overviews: false,
            transform: Some(GeoTransform::north_up(399_960.0, 4_040_040.0, 10.0, 10.0)),
            epsg: Some(32652),
            band_descriptions: descriptions.iter().map(|d| d.to_string()).collect(),
            datetime: datetime.map(String::from),
            ..Default::default()
        };
        write_cog(path, data.view(), &options).unwrap();
    }

    fn names(p: &PreparedScene) -> Vec<String> {
        p.files[0].bands.iter().map(|b| b.name.clone()).collect()
    }

    /// A STAC item whose `data` asset is `href` and lists no bands.
    fn stac_scene(dir: &Path, href: &str) -> SceneSource {
        let item = serde_json::json!({
            "type": "Feature", "stac_version": "1.0.0", "id": "item-1",
            "properties": {"datetime": "2023-06-11T02:16:59Z"},
            "geometry": null,
            "assets": {"data": {"href": href, "type": "image/tiff; application=geotiff"}}
        });
        super::super::stac::parse_item(&item, dir).unwrap()
    }

    #[test]
    fn a_multi_band_stac_asset_without_a_band_list_is_named_by_bands_descriptions_or_profile() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("described.tif"),
            4,
            &["B02", "B03", "B04", "B08"],
            None,
        );
        write(&dir.path().join("plain.tif"), 4, &[], None);
        write(&dir.path().join("one.tif"), 1, &[], None);
        let none = SceneOptions::default();
        // --bands first.
        let given = SceneOptions {
            bands: Some(["a", "b", "c", "d"].map(String::from).to_vec()),
            ..Default::default()
        };
        let scene = stac_scene(dir.path(), "described.tif");
        assert_eq!(
            names(&prepare(&scene, None, &given).unwrap()),
            ["a", "b", "c", "d"]
        );
        // Else the file's band descriptions.
        assert_eq!(
            names(&prepare(&scene, None, &none).unwrap()),
            ["B02", "B03", "B04", "B08"]
        );
        // Else the profile's spectral bands (PlanetScope: four, plus a quality band).
        let planet = ProductProfile::built_in("planet_sr").unwrap();
        let spectral: Vec<String> = planet
            .bands
            .iter()
            .filter(|b| b.role != BandRole::Quality)
            .map(|b| b.name.clone())
            .collect();
        let plain = stac_scene(dir.path(), "plain.tif");
        assert_eq!(
            names(&prepare(&plain, Some(&planet), &none).unwrap()),
            spectral
        );
        // A single-band asset is still named by its key.
        let one = stac_scene(dir.path(), "one.tif");
        assert_eq!(names(&prepare(&one, None, &given).unwrap()), ["data"]);
    }

    #[test]
    fn an_explicit_date_pattern_wins_over_the_files_and_the_items_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("field_d20220105.tif");
        write(&path, 1, &["ndvi"], Some("2023:06:11 02:16:59"));
        let scene = SceneSource {
            id: "field_d20220105".into(),
            assets: vec![Asset {
                location: path.display().to_string(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let time = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // Without the option the file's metadata gives the time.
        let p = prepare(&scene, None, &SceneOptions::default()).unwrap();
        assert_eq!(p.acquired, time("2023-06-11T02:16:59Z"));
        let with = |pattern: &str| SceneOptions {
            date_pattern: Some(Regex::new(pattern).unwrap()),
            ..Default::default()
        };
        let p = prepare(&scene, None, &with(r"_d(\d{8})")).unwrap();
        assert_eq!(p.acquired, time("2022-01-05T00:00:00Z"));
        // It also wins over a STAC item's datetime.
        let stac = stac_scene(dir.path(), "field_d20220105.tif");
        assert_eq!(
            prepare(&stac, None, &with(r"_d(\d{8})")).unwrap().acquired,
            time("2022-01-05T00:00:00Z")
        );
        // A pattern that does not match leaves the metadata's time.
        let p = prepare(&scene, None, &with(r"_x(\d{8})")).unwrap();
        assert_eq!(p.acquired, time("2023-06-11T02:16:59Z"));
        // One that matches something that is not a date is an error naming the file.
        let err = prepare(&scene, None, &with(r"_d(\d{4})"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field_d20220105.tif") && err.contains("not a date"),
            "{err}"
        );
    }
}
