//! Preparing one scene for ingestion: open its files, name its bands, find its acquisition
//! time, and fingerprint it so a re-run can skip it.

use super::discover::{Asset, SceneSource};
use super::naming::{check_name, time_from_name, time_from_pattern};
use crate::cog::Cog;
use crate::profile::{BandProfile, BandRole, ProductProfile};
use crate::source::{self, RemoteOptions};
use chrono::{DateTime, Utc};
use regex::Regex;
use sha2::{Digest, Sha256};

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
    for asset in &scene.assets {
        let src = source::open_with(&asset.location, &options.remote)?;
        let cog = Cog::from_source(src)?;
        let meta = cog.meta();
        let (Some(transform), Some(epsg)) = (meta.transform(), meta.epsg().or(scene.epsg)) else {
            return Err(Error::NoGeoref {
                file: asset.location.clone(),
            });
        };
        let native_res = transform.pixel_width.abs();
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
            let mut band = known
                .cloned()
                .unwrap_or_else(|| generic_band(&name, native_res, meta.nodata));
            if meta.nodata.is_some() {
                band.nodata = meta.nodata;
            }
            if let Some(info) = meta.bands.get(index) {
                if known.is_none() {
                    band.scale = info.scale.unwrap_or(1.0);
                    band.offset = info.offset.unwrap_or(0.0);
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
        // Identity: where it is, how big, and what its header says.
        hasher.update(asset.location.as_bytes());
        hasher.update(meta.file_size.to_le_bytes());
        let head = cog
            .source()
            .read_at(0, meta.file_size.min(65536) as usize)?;
        hasher.update(&head);
        bytes += meta.file_size;
        files.push(SceneFile { cog, bands, epsg });
    }
    let first = scene
        .assets
        .first()
        .map(|a| a.location.clone())
        .unwrap_or_default();
    let file_name = first.rsplit('/').next().unwrap_or(&first);
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
    Ok(PreparedScene {
        id: scene.id.clone(),
        source: first,
        acquired,
        cloud_cover: scene.cloud_cover,
        fingerprint: digest.iter().take(16).map(|b| format!("{b:02x}")).collect(),
        files,
        bytes,
    })
}
