//! Observations waiting to be written, gathered per (tile, band) so that one run's
//! observations of a tile-band become one fragment, and written a few fragments at a time so
//! that their encode buffers stay within what the budget sets aside.

use super::budget::encode_bytes;
use super::cut::{TileCut, TileLayout};
use crate::grid::GridSpec;
use crate::store::{Batch, FragmentData, Observation};
use crate::{Bounds, TileId};
use chrono::{DateTime, Utc};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The observations of one (tile, band).
pub(crate) struct Entry {
    layout: TileLayout,
    observations: Vec<Observation>,
    bytes: u64,
}

/// Observations waiting to be written, keyed by (tile, band).
pub(crate) type Entries = BTreeMap<(TileId, String), Entry>;

/// Adds one scene's cuts to `entries`; returns the bytes added.
pub(crate) fn add_cuts(
    entries: &mut Entries,
    scene_id: &str,
    time: DateTime<Utc>,
    cuts: Vec<TileCut>,
) -> u64 {
    let mut added = 0;
    for cut in cuts {
        let bytes = cut.heap_bytes();
        added += bytes;
        let entry = entries
            .entry((cut.tile, cut.band))
            .or_insert_with(|| Entry {
                layout: cut.layout,
                observations: Vec::new(),
                bytes: 0,
            });
        entry.bytes += bytes;
        entry.observations.push(Observation {
            time,
            scene_id: scene_id.to_string(),
            pixels: cut.pixels,
            valid: cut.valid,
        });
    }
    added
}

/// Entries shared by the scenes of a batch.
#[derive(Default)]
pub(crate) struct Shared {
    entries: Mutex<Entries>,
}

impl Shared {
    /// Merges one scene's entries in; returns their bytes.
    pub fn merge(&self, scene: Entries) -> u64 {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut bytes = 0;
        for (key, e) in scene {
            bytes += e.bytes;
            match entries.entry(key) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(e);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    let o = o.get_mut();
                    o.observations.extend(e.observations);
                    o.bytes += e.bytes;
                }
            }
        }
        bytes
    }

    /// Takes every entry (to write them).
    pub fn take(&self) -> Entries {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What writing produced.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    /// Fragment files written.
    pub fragments: usize,
    /// Their bytes.
    pub bytes: u64,
}

fn ring(b: &Bounds) -> Vec<(f64, f64)> {
    vec![
        (b.min_x, b.min_y),
        (b.max_x, b.min_y),
        (b.max_x, b.max_y),
        (b.min_x, b.max_y),
        (b.min_x, b.min_y),
    ]
}

/// Writes each entry as one fragment of `batch`, in parallel waves whose encode buffers fit
/// in `encode_room` bytes (a wave has at least one fragment). `done(bytes)` is told the
/// observation bytes of each wave once it is written and dropped.
pub(crate) fn write_entries(
    batch: &Batch<'_>,
    entries: Entries,
    product: &str,
    grid: &GridSpec,
    compressed: bool,
    encode_room: u64,
    done: &(dyn Fn(u64) + Sync),
) -> Result<Written, crate::store::Error> {
    let mut written = Written::default();
    let mut wave: Vec<((TileId, String), Entry)> = Vec::new();
    let mut room = 0u64;
    let mut first_error = None;
    let mut flush_wave = |wave: &mut Vec<((TileId, String), Entry)>| {
        let raw: u64 = wave.iter().map(|(_, e)| e.bytes).sum();
        let results: Vec<Result<u64, crate::store::Error>> = std::mem::take(wave)
            .into_par_iter()
            .map(|((tile, band), e)| {
                let footprint = grid
                    .tile_lonlat_bounds(tile)
                    .map(|b| ring(&b))
                    .unwrap_or_default();
                let l = e.layout;
                let data = FragmentData {
                    tile,
                    band,
                    product: product.to_string(),
                    dtype: e.observations[0].pixels.dtype(),
                    nodata: l.nodata,
                    scale: l.scale,
                    offset: l.offset,
                    tile_transform: l.transform,
                    width: l.size,
                    height: l.size,
                    footprint_lonlat: footprint,
                    resolution: l.resolution,
                    observations: e.observations,
                };
                Ok(batch.write_fragment(data)?.bytes)
            })
            .collect();
        done(raw);
        for r in results {
            match r {
                Ok(bytes) => {
                    written.fragments += 1;
                    written.bytes += bytes;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    };
    for (key, entry) in entries {
        let need = encode_bytes(compressed, entry.bytes);
        if !wave.is_empty() && room + need > encode_room {
            flush_wave(&mut wave);
            room = 0;
        }
        room += need;
        wave.push((key, entry));
    }
    if !wave.is_empty() {
        flush_wave(&mut wave);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PixelBuffer;
    use crate::GeoTransform;

    fn cut(tile: TileId, band: &str) -> TileCut {
        TileCut {
            tile,
            band: band.into(),
            layout: TileLayout {
                transform: GeoTransform::north_up(0.0, 40.0, 10.0, 10.0),
                size: 4,
                resolution: 10.0,
                nodata: None,
                scale: 1.0,
                offset: 0.0,
            },
            pixels: PixelBuffer::from(vec![1u16; 16]),
            valid: None,
        }
    }

    #[test]
    fn a_tile_band_gathers_the_observations_of_every_scene() {
        let t = TileId::new(0, 0);
        let mut entries = Entries::new();
        let day = |d| chrono::TimeZone::with_ymd_and_hms(&Utc, 2023, 1, d, 0, 0, 0).unwrap();
        assert_eq!(
            add_cuts(
                &mut entries,
                "a",
                day(1),
                vec![cut(t, "B04"), cut(t, "B08")]
            ),
            64
        );
        add_cuts(&mut entries, "b", day(2), vec![cut(t, "B04")]);
        assert_eq!(entries.len(), 2);
        let e = &entries[&(t, "B04".to_string())];
        assert_eq!((e.observations.len(), e.bytes), (2, 64));
    }
}
