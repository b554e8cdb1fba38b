//! Product profiles: what a product's bands are called, their wavelengths, native
//! resolution, scale/offset and nodata, and how its cloud mask is read.
//!
//! Six profiles are built in (`sentinel2_l2a`, `landsat5_c2l2`, `landsat7_c2l2`,
//! `landsat8_c2l2`, `landsat9_c2l2`, `planet_sr`); others come from a TOML or JSON file with
//! the same shape. Profiles are stored in the warehouse so queries can apply scale/offset and
//! masks later. Built-in products also know the names STAC providers give their bands
//! ([`ProductProfile::provider_band`]: `OLI_B4`, `SR_B4.TIF`), kept out of the stored profile
//! so warehouses registered before keep matching it.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Errors from loading or using a profile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No built-in profile has this id and it is not a file.
    #[error("unknown product profile {id:?}: built-in profiles are {known}; or give a .toml/.json profile file")]
    Unknown {
        /// The requested id.
        id: String,
        /// The built-in ids.
        known: String,
    },
    /// A profile file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A profile file is not a valid profile.
    #[error("{file}: not a valid product profile: {reason}")]
    Parse {
        /// The file.
        file: String,
        /// What was wrong.
        reason: String,
    },
}

/// How a band is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BandRole {
    /// Surface reflectance or radiance: continuous values.
    #[default]
    Reflectance,
    /// Thermal / temperature values.
    Thermal,
    /// A quality or classification band: categorical (resampled with nearest/mode).
    Quality,
}

/// One band of a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandProfile {
    /// Canonical name, used in the warehouse (`B04`, `SR_B4`, ...).
    pub name: String,
    /// Other names users or files use (`red`, `b4`, ...); matched case-insensitively.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Centre wavelength in nanometres, when spectral.
    #[serde(default)]
    pub wavelength_nm: Option<f64>,
    /// Native resolution in metres.
    pub resolution: f64,
    /// Scale to physical values (`physical = raw * scale + offset`).
    #[serde(default = "one")]
    pub scale: f64,
    /// Offset to physical values.
    #[serde(default)]
    pub offset: f64,
    /// Nodata value of the raw band.
    #[serde(default)]
    pub nodata: Option<f64>,
    /// How the band is used.
    #[serde(default)]
    pub role: BandRole,
}

fn one() -> f64 {
    1.0
}

/// How to tell clear pixels from clouds for a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CloudMaskRule {
    /// The product has no cloud information.
    #[default]
    None,
    /// A classification band; pixels whose class is in `clear` are clear (Sentinel-2 SCL).
    ClassValues {
        /// The class band.
        band: String,
        /// Classes counted as clear.
        clear: Vec<i64>,
    },
    /// A bit-flag band; a pixel is clear when none of `cloud_bits` is set (Landsat QA_PIXEL).
    BitFlags {
        /// The flag band.
        band: String,
        /// Bit numbers that mark cloud, shadow, cirrus, fill...
        cloud_bits: Vec<u8>,
    },
    /// A band that is `clear_value` where the pixel is clear (Planet UDM2 band 1).
    ClearFlag {
        /// The flag band.
        band: String,
        /// The value meaning "clear".
        clear_value: i64,
    },
}

impl CloudMaskRule {
    /// The band the rule reads, if any.
    pub fn band(&self) -> Option<&str> {
        match self {
            CloudMaskRule::None => None,
            CloudMaskRule::ClassValues { band, .. }
            | CloudMaskRule::BitFlags { band, .. }
            | CloudMaskRule::ClearFlag { band, .. } => Some(band),
        }
    }

    /// True when a pixel with this quality value is clear.
    pub fn is_clear(&self, value: i64) -> bool {
        match self {
            CloudMaskRule::None => true,
            CloudMaskRule::ClassValues { clear, .. } => clear.contains(&value),
            CloudMaskRule::BitFlags { cloud_bits, .. } => {
                cloud_bits.iter().all(|&b| b >= 64 || (value >> b) & 1 == 0)
            }
            CloudMaskRule::ClearFlag { clear_value, .. } => value == *clear_value,
        }
    }
}

/// A product: its bands and cloud-mask rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductProfile {
    /// Product id (`sentinel2_l2a`, ...): also a warehouse path component.
    pub id: String,
    /// Human-readable name.
    #[serde(default)]
    pub description: String,
    /// Bands in the order of a multi-band file of this product.
    pub bands: Vec<BandProfile>,
    /// Cloud mask rule.
    #[serde(default)]
    pub cloud_mask: CloudMaskRule,
}

/// Ids of the built-in profiles.
pub const BUILT_IN: [&str; 6] = [
    "sentinel2_l2a",
    "landsat5_c2l2",
    "landsat7_c2l2",
    "landsat8_c2l2",
    "landsat9_c2l2",
    "planet_sr",
];

struct B<'a>(&'a str, &'a [&'a str], Option<f64>, f64);

fn bands(list: &[B<'_>], scale: f64, offset: f64, nodata: Option<f64>) -> Vec<BandProfile> {
    list.iter()
        .map(|B(name, aliases, wl, res)| BandProfile {
            name: name.to_string(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            wavelength_nm: *wl,
            resolution: *res,
            scale,
            offset,
            nodata,
            role: BandRole::Reflectance,
        })
        .collect()
}

fn quality(name: &str, aliases: &[&str], res: f64, nodata: Option<f64>) -> BandProfile {
    BandProfile {
        name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        wavelength_nm: None,
        resolution: res,
        scale: 1.0,
        offset: 0.0,
        nodata,
        role: BandRole::Quality,
    }
}

fn sentinel2_l2a() -> ProductProfile {
    let mut b = bands(
        &[
            B("B01", &["coastal", "b1"], Some(443.0), 60.0),
            B("B02", &["blue", "b2"], Some(490.0), 10.0),
            B("B03", &["green", "b3"], Some(560.0), 10.0),
            B("B04", &["red", "b4"], Some(665.0), 10.0),
            B("B05", &["rededge1", "b5"], Some(705.0), 20.0),
            B("B06", &["rededge2", "b6"], Some(740.0), 20.0),
            B("B07", &["rededge3", "b7"], Some(783.0), 20.0),
            B("B08", &["nir", "b8"], Some(842.0), 10.0),
            B("B8A", &["nir08", "b8a"], Some(865.0), 20.0),
            B("B09", &["nir09", "b9"], Some(945.0), 60.0),
            B("B11", &["swir16", "swir1", "b11"], Some(1610.0), 20.0),
            B("B12", &["swir22", "swir2", "b12"], Some(2190.0), 20.0),
        ],
        1e-4,
        0.0,
        Some(0.0),
    );
    b.push(quality(
        "SCL",
        &["scl", "scene_classification"],
        20.0,
        Some(0.0),
    ));
    ProductProfile {
        id: "sentinel2_l2a".into(),
        description:
            "Sentinel-2 Level-2A surface reflectance (DN x 1e-4; SCL scene classification)".into(),
        bands: b,
        // SCL: 4 vegetation, 5 bare soil, 6 water, 7 unclassified, 11 snow are clear;
        // 0 nodata, 1 saturated, 2 dark, 3 cloud shadow, 8-10 clouds and cirrus are not.
        cloud_mask: CloudMaskRule::ClassValues {
            band: "SCL".into(),
            clear: vec![4, 5, 6, 7, 11],
        },
    }
}

fn landsat_c2l2(id: &str, mission: &str) -> ProductProfile {
    let mut b = bands(
        &[
            B("SR_B1", &["coastal", "b1"], Some(443.0), 30.0),
            B("SR_B2", &["blue", "b2"], Some(482.0), 30.0),
            B("SR_B3", &["green", "b3"], Some(561.0), 30.0),
            B("SR_B4", &["red", "b4"], Some(655.0), 30.0),
            B("SR_B5", &["nir", "nir08", "b5"], Some(865.0), 30.0),
            B("SR_B6", &["swir16", "swir1", "b6"], Some(1609.0), 30.0),
            B("SR_B7", &["swir22", "swir2", "b7"], Some(2201.0), 30.0),
        ],
        2.75e-5,
        -0.2,
        Some(0.0),
    );
    b.push(BandProfile {
        name: "ST_B10".into(),
        aliases: vec!["lwir11".into(), "thermal".into(), "b10".into()],
        wavelength_nm: Some(10895.0),
        resolution: 30.0,
        scale: 0.00341802,
        offset: 149.0,
        nodata: Some(0.0),
        role: BandRole::Thermal,
    });
    b.push(quality("QA_PIXEL", &["qa_pixel", "qa"], 30.0, Some(1.0)));
    ProductProfile {
        id: id.into(),
        description: format!("{mission} Collection 2 Level-2 surface reflectance (DN x 2.75e-5 - 0.2; QA_PIXEL flags)"),
        bands: b,
        // QA_PIXEL bits: 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow.
        cloud_mask: CloudMaskRule::BitFlags {
            band: "QA_PIXEL".into(),
            cloud_bits: vec![0, 1, 2, 3, 4],
        },
    }
}

/// Landsat 4-5 TM and 7 ETM+ Collection 2 Level-2: bands numbered as on those sensors (red is
/// `SR_B3`, the thermal band `ST_B6`), same scale, offset and QA_PIXEL bits as OLI.
fn landsat_tm_c2l2(id: &str, mission: &str) -> ProductProfile {
    let mut b = bands(
        &[
            B("SR_B1", &["blue", "b1"], Some(485.0), 30.0),
            B("SR_B2", &["green", "b2"], Some(560.0), 30.0),
            B("SR_B3", &["red", "b3"], Some(660.0), 30.0),
            B("SR_B4", &["nir", "nir08", "b4"], Some(835.0), 30.0),
            B("SR_B5", &["swir16", "swir1", "b5"], Some(1650.0), 30.0),
            B("SR_B7", &["swir22", "swir2", "b7"], Some(2220.0), 30.0),
        ],
        2.75e-5,
        -0.2,
        Some(0.0),
    );
    b.push(BandProfile {
        name: "ST_B6".into(),
        aliases: vec![
            "lwir".into(),
            "lwir11".into(),
            "thermal".into(),
            "b6".into(),
        ],
        wavelength_nm: Some(11450.0),
        resolution: 30.0,
        scale: 0.00341802,
        offset: 149.0,
        nodata: Some(0.0),
        role: BandRole::Thermal,
    });
    b.push(quality("QA_PIXEL", &["qa_pixel", "qa"], 30.0, Some(1.0)));
    ProductProfile {
        id: id.into(),
        description: format!("{mission} Collection 2 Level-2 surface reflectance (DN x 2.75e-5 - 0.2; QA_PIXEL flags)"),
        bands: b,
        // QA_PIXEL bits: 0 fill, 1 dilated cloud, 3 cloud, 4 cloud shadow (2 is unused).
        cloud_mask: CloudMaskRule::BitFlags {
            band: "QA_PIXEL".into(),
            cloud_bits: vec![0, 1, 2, 3, 4],
        },
    }
}

/// Names STAC providers give the bands of built-in products (`eo:bands` names, asset keys)
/// beyond the profile's own names and aliases: Earth Search and Planetary Computer call
/// Landsat 8/9 red `OLI_B4` and the thermal band `TIRS_B10`; USGS numbers TM/ETM+ bands `B1`..
/// These stay out of the stored profile (a registered profile must not change).
fn provider_names(id: &str) -> &'static [(&'static str, &'static str)] {
    match id {
        "landsat8_c2l2" | "landsat9_c2l2" => &[
            ("OLI_B1", "SR_B1"),
            ("OLI_B2", "SR_B2"),
            ("OLI_B3", "SR_B3"),
            ("OLI_B4", "SR_B4"),
            ("OLI_B5", "SR_B5"),
            ("OLI_B6", "SR_B6"),
            ("OLI_B7", "SR_B7"),
            ("TIRS_B10", "ST_B10"),
            ("lwir", "ST_B10"),
        ],
        "landsat5_c2l2" | "landsat7_c2l2" => &[
            ("TM_B1", "SR_B1"),
            ("TM_B2", "SR_B2"),
            ("TM_B3", "SR_B3"),
            ("TM_B4", "SR_B4"),
            ("TM_B5", "SR_B5"),
            ("TM_B7", "SR_B7"),
            ("TM_B6", "ST_B6"),
            ("ETM_B1", "SR_B1"),
            ("ETM_B2", "SR_B2"),
            ("ETM_B3", "SR_B3"),
            ("ETM_B4", "SR_B4"),
            ("ETM_B5", "SR_B5"),
            ("ETM_B7", "SR_B7"),
            ("ETM_B6", "ST_B6"),
        ],
        _ => &[],
    }
}

fn planet_sr() -> ProductProfile {
    let mut b = bands(
        &[
            B("blue", &["b1"], Some(490.0), 3.0),
            B("green", &["b2"], Some(565.0), 3.0),
            B("red", &["b3"], Some(665.0), 3.0),
            B("nir", &["b4"], Some(865.0), 3.0),
        ],
        1e-4,
        0.0,
        Some(0.0),
    );
    b.push(quality("udm2_clear", &["clear", "udm2"], 3.0, None));
    ProductProfile {
        id: "planet_sr".into(),
        description: "PlanetScope 4-band surface reflectance (DN x 1e-4; UDM2 clear band)".into(),
        bands: b,
        cloud_mask: CloudMaskRule::ClearFlag {
            band: "udm2_clear".into(),
            clear_value: 1,
        },
    }
}

impl ProductProfile {
    /// A built-in profile by id.
    pub fn built_in(id: &str) -> Option<ProductProfile> {
        match id {
            "sentinel2_l2a" => Some(sentinel2_l2a()),
            "landsat5_c2l2" => Some(landsat_tm_c2l2(id, "Landsat 4-5 TM")),
            "landsat7_c2l2" => Some(landsat_tm_c2l2(id, "Landsat 7 ETM+")),
            "landsat8_c2l2" => Some(landsat_c2l2(id, "Landsat 8")),
            "landsat9_c2l2" => Some(landsat_c2l2(id, "Landsat 9")),
            "planet_sr" => Some(planet_sr()),
            _ => None,
        }
    }

    /// A built-in profile, or one loaded from a `.toml`/`.json` file path.
    pub fn resolve(id_or_path: &str) -> Result<ProductProfile, Error> {
        if let Some(p) = Self::built_in(id_or_path) {
            return Ok(p);
        }
        let path = Path::new(id_or_path);
        let is_file_name = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("toml" | "json")
        );
        if !is_file_name {
            return Err(Error::Unknown {
                id: id_or_path.into(),
                known: BUILT_IN.join(", "),
            });
        }
        Self::from_file(path)
    }

    /// Loads a profile from a TOML or JSON file.
    pub fn from_file(path: &Path) -> Result<ProductProfile, Error> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            file: file.clone(),
            source,
        })?;
        let parsed: Result<ProductProfile, String> =
            if path.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text).map_err(|e| e.to_string())
            } else {
                toml::from_str(&text).map_err(|e| e.to_string())
            };
        let profile = parsed.map_err(|reason| Error::Parse {
            file: file.clone(),
            reason: reason.lines().next().unwrap_or_default().to_string(),
        })?;
        profile
            .validate()
            .map_err(|reason| Error::Parse { file, reason })?;
        Ok(profile)
    }

    /// Checks names (they become warehouse paths) and values.
    pub fn validate(&self) -> Result<(), String> {
        crate::ingest::naming::check_name("product id", &self.id)?;
        if self.bands.is_empty() {
            return Err("a profile needs at least one band".into());
        }
        let mut seen = std::collections::HashSet::new();
        for b in &self.bands {
            crate::ingest::naming::check_name("band name", &b.name)?;
            if !seen.insert(b.name.to_ascii_lowercase()) {
                return Err(format!("band {:?} is listed twice", b.name));
            }
            if !(b.resolution.is_finite() && b.resolution > 0.0) {
                return Err(format!("band {:?} has resolution {}", b.name, b.resolution));
            }
            if !b.scale.is_finite() || !b.offset.is_finite() {
                return Err(format!(
                    "band {:?} has a non-finite scale or offset",
                    b.name
                ));
            }
        }
        if let Some(mask_band) = self.cloud_mask.band() {
            if self.band(mask_band).is_none() {
                return Err(format!(
                    "the cloud mask reads band {mask_band:?}, which the profile does not list"
                ));
            }
        }
        Ok(())
    }

    /// Finds a band by canonical name or alias (case-insensitive).
    pub fn band(&self, name: &str) -> Option<&BandProfile> {
        let n = name.trim();
        self.bands.iter().find(|b| {
            b.name.eq_ignore_ascii_case(n) || b.aliases.iter().any(|a| a.eq_ignore_ascii_case(n))
        })
    }

    /// Finds a band by a name a STAC provider gives it: the profile's names and aliases, then
    /// provider names of built-in products (`OLI_B4`, `TIRS_B10`), each also with a file
    /// extension dropped (`SR_B4.TIF`).
    pub fn provider_band(&self, name: &str) -> Option<&BandProfile> {
        let n = name.trim();
        let stem = n
            .rsplit_once('.')
            .filter(|(_, ext)| {
                ["tif", "tiff", "jp2"]
                    .iter()
                    .any(|e| ext.eq_ignore_ascii_case(e))
            })
            .map(|(stem, _)| stem);
        for candidate in std::iter::once(n).chain(stem) {
            if let Some(b) = self.band(candidate) {
                return Some(b);
            }
            let provider = provider_names(&self.id)
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(candidate));
            if let Some((_, canonical)) = provider {
                return self.band(canonical);
            }
        }
        None
    }

    /// The finest native resolution among the bands.
    pub fn finest_resolution(&self) -> f64 {
        self.bands
            .iter()
            .map(|b| b.resolution)
            .fold(f64::INFINITY, f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_are_valid_and_resolve_aliases() {
        for id in BUILT_IN {
            let p = ProductProfile::built_in(id).unwrap();
            p.validate().unwrap();
            assert_eq!(p.id, id);
        }
        let s2 = ProductProfile::built_in("sentinel2_l2a").unwrap();
        assert_eq!(s2.band("red").unwrap().name, "B04");
        assert_eq!(s2.band("NIR").unwrap().name, "B08");
        assert_eq!(s2.band("b8a").unwrap().name, "B8A");
        assert_eq!(s2.finest_resolution(), 10.0);
        let l8 = ProductProfile::built_in("landsat8_c2l2").unwrap();
        assert_eq!(l8.band("nir").unwrap().name, "SR_B5");
        assert_eq!(l8.band("red").unwrap().scale, 2.75e-5);
    }

    #[test]
    fn provider_names_reach_the_profile_band() {
        let l8 = ProductProfile::built_in("landsat8_c2l2").unwrap();
        for name in ["red", "OLI_B4", "SR_B4.TIF", "sr_b4", "b4"] {
            assert_eq!(l8.provider_band(name).unwrap().name, "SR_B4", "{name}");
        }
        assert_eq!(l8.provider_band("TIRS_B10").unwrap().name, "ST_B10");
        assert_eq!(l8.provider_band("lwir11").unwrap().name, "ST_B10");
        assert!(l8.provider_band("qa_aerosol").is_none());
        // TM/ETM+ number their bands differently: red is band 3.
        let l7 = ProductProfile::built_in("landsat7_c2l2").unwrap();
        for name in ["red", "B3", "ETM_B3", "SR_B3.TIF"] {
            assert_eq!(l7.provider_band(name).unwrap().name, "SR_B3", "{name}");
        }
        assert_eq!(l7.provider_band("nir08").unwrap().name, "SR_B4");
        let s2 = ProductProfile::built_in("sentinel2_l2a").unwrap();
        for (name, band) in [
            ("nir08", "B8A"),
            ("nir", "B08"),
            ("scl", "SCL"),
            ("B04.tif", "B04"),
        ] {
            assert_eq!(s2.provider_band(name).unwrap().name, band, "{name}");
        }
        assert!(s2.provider_band("aot").is_none());
        // The stored profile does not carry provider names.
        let json = serde_json::to_string(&l8).unwrap();
        assert!(!json.contains("OLI_B4"));
    }

    #[test]
    fn cloud_rules() {
        let s2 = ProductProfile::built_in("sentinel2_l2a")
            .unwrap()
            .cloud_mask;
        assert!(s2.is_clear(4) && !s2.is_clear(9) && !s2.is_clear(3));
        let l8 = ProductProfile::built_in("landsat8_c2l2")
            .unwrap()
            .cloud_mask;
        assert!(l8.is_clear(21824)); // clear + low confidences, a common clear value
        assert!(!l8.is_clear(22280)); // cloud bit 3 set
        assert!(!l8.is_clear(1)); // fill
        let ps = ProductProfile::built_in("planet_sr").unwrap().cloud_mask;
        assert!(ps.is_clear(1) && !ps.is_clear(0));
    }

    #[test]
    fn custom_profiles_from_toml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("drone.toml");
        std::fs::write(
            &toml_path,
            r#"
id = "drone_ms"
description = "five-band drone camera"
[[bands]]
name = "red"
resolution = 0.05
scale = 0.001
[[bands]]
name = "nir"
aliases = ["b5"]
resolution = 0.05
nodata = 65535
[cloud_mask]
kind = "none"
"#,
        )
        .unwrap();
        let p = ProductProfile::resolve(toml_path.to_str().unwrap()).unwrap();
        assert_eq!(p.id, "drone_ms");
        assert_eq!(p.band("b5").unwrap().nodata, Some(65535.0));
        assert_eq!(p.band("nir").unwrap().scale, 1.0);

        let json_path = dir.path().join("p.json");
        let json = serde_json::to_string(&ProductProfile::built_in("planet_sr").unwrap()).unwrap();
        std::fs::write(&json_path, json).unwrap();
        assert_eq!(
            ProductProfile::resolve(json_path.to_str().unwrap())
                .unwrap()
                .id,
            "planet_sr"
        );
    }

    #[test]
    fn bad_profiles_are_clear_errors() {
        let err = ProductProfile::resolve("sentinel3")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sentinel3") && err.contains("sentinel2_l2a"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "id = \"../evil\"\n[[bands]]\nname = \"x\"\nresolution = 1\n",
        )
        .unwrap();
        let err = ProductProfile::resolve(bad.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.toml") && err.contains("product id"),
            "{err}"
        );
        std::fs::write(&bad, "id = \"ok\"\nbands = 3\n").unwrap();
        let err = ProductProfile::resolve(bad.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml"), "{err}");
        let missing = dir.path().join("nope.json");
        let err = ProductProfile::resolve(missing.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.json"), "{err}");
    }
}
