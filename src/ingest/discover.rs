//! From command-line inputs to scenes: files, folders (recursive, with a glob), lists of
//! URLs, and STAC Items; one-file-per-band layouts (`..._B04.tif`, `..._SR_B4.TIF`) are
//! grouped into one scene.

use super::naming::split_band_token;
use super::stac::{self, AssetRules};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors from finding inputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input path does not exist or cannot be listed.
    #[error("{input}: {source}")]
    Io {
        /// The input.
        input: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The `--glob` pattern is invalid.
    #[error("invalid --glob pattern {pattern:?}: {reason}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A STAC file could not be used.
    #[error(transparent)]
    Stac(#[from] stac::Error),
    /// A STAC item cannot be ingested (no asset for a band asked for...).
    #[error("{reason}")]
    Item {
        /// The item id.
        item: String,
        /// Why, naming the item.
        reason: String,
    },
    /// Nothing to ingest was found.
    #[error("no GeoTIFF or STAC item found in {inputs}")]
    Nothing {
        /// The inputs, joined.
        inputs: String,
    },
}

/// One file of a scene.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Asset {
    /// Local path or URL.
    pub location: String,
    /// Band names of the file's bands, in order, when the input says (STAC assets,
    /// one-file-per-band names); `None` leaves it to `--bands`, band descriptions or the
    /// product profile.
    pub band_names: Option<Vec<String>>,
    /// The input's name for the file when it has a single band and no band list (a STAC
    /// asset key); a multi-band file without a band list is named like any other file.
    pub single_band_name: Option<String>,
    /// What the input says about the values of the file's bands, in file order (a STAC
    /// asset's `raster:bands` after its provider's rules); empty when it says nothing.
    pub values: Vec<BandValues>,
    /// EPSG code the input declares for this file (`proj:code`/`proj:epsg` of the STAC asset
    /// or item), checked against the file's own.
    pub declared_epsg: Option<u32>,
    /// The file is in a requester-pays bucket (`s3://`, STAC `storage:requester_pays`).
    pub requester_pays: bool,
    /// A query string added to the URL when the file is opened (a Planetary Computer SAS
    /// token); kept out of error messages, fingerprints and the catalog.
    pub url_query: Option<String>,
}

/// What an input says about one band's values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BandValues {
    /// Scale to physical values; with only an offset given, 1.
    pub scale: Option<f64>,
    /// Offset to physical values; with only a scale given, 0.
    pub offset: Option<f64>,
    /// Nodata value, used when the file declares none.
    pub nodata: Option<f64>,
}

/// One scene to ingest: one acquisition, one or more files.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SceneSource {
    /// Scene id (STAC id, or the file stem / group key).
    pub id: String,
    /// Its files.
    pub assets: Vec<Asset>,
    /// Acquisition time when the input says (STAC `datetime`).
    pub acquired: Option<DateTime<Utc>>,
    /// Cloud cover in percent, when known.
    pub cloud_cover: Option<f64>,
    /// EPSG code from STAC projection info, when known.
    pub epsg: Option<u32>,
    /// The scene's identity when the input gives it without opening files (a STAC item from
    /// an API: id, collection, `updated` and asset locations), so a committed scene is
    /// skipped before any file is read; `None`: a fingerprint of the files themselves.
    pub fingerprint: Option<String>,
    /// Lon/lat bounds the input declares (a STAC item's geometry), checked against the files.
    pub declared_bounds: Option<crate::Bounds>,
    /// The warehouse bands to ingest (asked for with `--bands`, plus the cloud band);
    /// `None`: every band of every file.
    pub wanted_bands: Option<Vec<String>>,
}

fn is_url(s: &str) -> bool {
    ["http://", "https://", "s3://"]
        .iter()
        .any(|p| s.starts_with(p))
}

fn is_tiff(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("tif" | "tiff")
    )
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Scenes found in the inputs, and the STAC items that cannot be ingested.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// Scenes, sorted by id.
    pub scenes: Vec<SceneSource>,
    /// Items of STAC files that cannot be ingested: (item id, reason naming it).
    pub failed: Vec<(String, String)>,
}

/// Expands inputs into scenes, in a stable order (sorted by id); STAC items take every
/// GeoTIFF data asset (see [`discover_with`]). An item that cannot be used is an error.
///
/// - a URL (`http(s)://`, `s3://`) or a `.tif`/`.tiff` path is one file;
/// - a `.json` file is a STAC Item or ItemCollection;
/// - a `.txt`/`.list` file lists inputs, one per line (`#` comments);
/// - a folder is walked recursively for GeoTIFFs matching `glob` (default `*.tif` / `*.tiff`),
///   matched against the path relative to the folder and against the file name.
pub fn discover(inputs: &[String], glob: Option<&str>) -> Result<Vec<SceneSource>, Error> {
    let found = discover_with(inputs, glob, &AssetRules::default())?;
    match found.failed.into_iter().next() {
        Some((item, reason)) => Err(Error::Item { item, reason }),
        None => Ok(found.scenes),
    }
}

/// Like [`discover`], with STAC items' assets chosen by `rules` (the bands asked for, named
/// by the product); items that cannot be used are listed apart, the others go on.
pub fn discover_with(
    inputs: &[String],
    glob: Option<&str>,
    rules: &AssetRules,
) -> Result<Discovered, Error> {
    let pattern = glob
        .map(|g| {
            glob::Pattern::new(g).map_err(|e| Error::Glob {
                pattern: g.into(),
                reason: e.to_string(),
            })
        })
        .transpose()?;
    let mut files: Vec<String> = Vec::new();
    let mut scenes: Vec<SceneSource> = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut queue: Vec<String> = inputs.to_vec();
    let mut depth_guard = 0;
    while let Some(input) = queue.pop() {
        depth_guard += 1;
        if depth_guard > 1_000_000 {
            break;
        }
        if is_url(&input) {
            files.push(input);
            continue;
        }
        let path = PathBuf::from(&input);
        let meta = std::fs::metadata(&path).map_err(|source| Error::Io {
            input: input.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(&path, &path, pattern.as_ref(), &mut files)?;
        } else if has_extension(&path, "json") {
            let (items, bad) = stac::read_items(&path, rules)?;
            scenes.extend(items);
            failed.extend(bad);
        } else if has_extension(&path, "txt") || has_extension(&path, "list") {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                input: input.clone(),
                source,
            })?;
            let base = path.parent().unwrap_or(Path::new("."));
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
            {
                if is_url(line) || Path::new(line).is_absolute() {
                    queue.push(line.to_string());
                } else {
                    queue.push(base.join(line).display().to_string());
                }
            }
        } else {
            files.push(input);
        }
    }
    files.sort();
    files.dedup();
    scenes.extend(group_files(&files));
    scenes.sort_by(|a, b| {
        a.id.cmp(&b.id)
            .then_with(|| a.assets[0].location.cmp(&b.assets[0].location))
    });
    if scenes.is_empty() {
        if let Some((item, reason)) = failed.into_iter().next() {
            return Err(Error::Item { item, reason });
        }
        return Err(Error::Nothing {
            inputs: inputs.join(", "),
        });
    }
    Ok(Discovered { scenes, failed })
}

fn walk(
    root: &Path,
    dir: &Path,
    pattern: Option<&glob::Pattern>,
    out: &mut Vec<String>,
) -> Result<(), Error> {
    let io = |source| Error::Io {
        input: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = entry.file_type().map_err(io)?;
        if ft.is_dir() {
            walk(root, &path, pattern, out)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let wanted = match pattern {
                Some(p) => p.matches_path(rel) || p.matches(&name.to_string_lossy()),
                None => is_tiff(&path),
            };
            if wanted {
                out.push(path.display().to_string());
            }
        }
    }
    Ok(())
}

/// Groups files into scenes: files in one folder whose names differ only by a band token
/// form one scene; every other file is a scene of its own.
fn group_files(files: &[String]) -> Vec<SceneSource> {
    let mut groups: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    let mut singles = Vec::new();
    for f in files {
        let location = f.split(['?', '#']).next().unwrap_or(f);
        let (dir, file_name) = match location.rfind('/') {
            Some(i) => (&location[..i], &location[i + 1..]),
            None => ("", location),
        };
        let stem = file_name
            .rsplit_once('.')
            .map(|(s, _)| s)
            .unwrap_or(file_name);
        match split_band_token(stem) {
            Some((key, band)) => groups
                .entry((dir.to_string(), key))
                .or_default()
                .push((band, f.clone())),
            None => singles.push(SceneSource {
                id: stem.to_string(),
                assets: vec![Asset {
                    location: f.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }
    let mut scenes = singles;
    for ((dir, key), members) in groups {
        let id = if key.is_empty() {
            dir.rsplit('/').next().unwrap_or("scene").to_string()
        } else {
            key
        };
        scenes.push(SceneSource {
            id,
            assets: members
                .into_iter()
                .map(|(band, location)| Asset {
                    location,
                    band_names: Some(vec![band]),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
    }
    scenes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, rel: &str) -> String {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
        p.display().to_string()
    }

    #[test]
    fn walks_folders_and_groups_band_files() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        touch(root, "a/S2L_T52_20230611_10m.tif");
        touch(root, "a/S2L_T52_20230716_10m.TIF");
        touch(root, "a/readme.txt.bak");
        touch(root, "b/LC08_L2SP_116034_20230614_20230620_02_T1_SR_B4.TIF");
        touch(root, "b/LC08_L2SP_116034_20230614_20230620_02_T1_SR_B5.TIF");
        touch(
            root,
            "b/LC08_L2SP_116034_20230614_20230620_02_T1_QA_PIXEL.TIF",
        );
        touch(root, "c/T52SDG_20230611T021659/B04.tif");
        touch(root, "c/T52SDG_20230611T021659/B08.tif");
        touch(root, ".hidden/x.tif");
        let scenes = discover(&[root.display().to_string()], None).unwrap();
        let ids: Vec<&str> = scenes.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "LC08_L2SP_116034_20230614_20230620_02_T1",
                "S2L_T52_20230611_10m",
                "S2L_T52_20230716_10m",
                "T52SDG_20230611T021659"
            ]
        );
        let landsat = &scenes[0];
        let bands: Vec<_> = landsat
            .assets
            .iter()
            .map(|a| a.band_names.clone().unwrap()[0].clone())
            .collect();
        assert_eq!(bands, ["QA_PIXEL", "SR_B4", "SR_B5"]);
        assert_eq!(scenes[3].assets.len(), 2);
    }

    #[test]
    fn glob_lists_and_urls() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        touch(root, "x/one_2023-01-01.tif");
        touch(root, "x/two_2023-01-02.tif");
        let only_two = discover(&[root.display().to_string()], Some("*two*")).unwrap();
        assert_eq!(only_two.len(), 1);
        let list = root.join("inputs.txt");
        std::fs::write(
            &list,
            "# scenes\nx/one_2023-01-01.tif\nhttps://example.invalid/s3.tif\n",
        )
        .unwrap();
        let scenes = discover(&[list.display().to_string()], None).unwrap();
        assert_eq!(scenes.len(), 2);
        assert!(scenes
            .iter()
            .any(|s| s.assets[0].location.starts_with("https://")));
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let err = discover(&["/no/such/dir".into()], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/dir"), "{err}");
        let d = tempfile::tempdir().unwrap();
        let err = discover(&[d.path().display().to_string()], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no GeoTIFF"), "{err}");
        let err = discover(&[d.path().display().to_string()], Some("["))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--glob"), "{err}");
    }
}
