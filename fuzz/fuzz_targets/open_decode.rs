//! Open arbitrary bytes as a GeoTIFF and decode every level and mask: any input must give
//! `Ok` or a clean `Err`, never a panic, hang or runaway allocation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pixelquery::cog::{Cog, Window};
use pixelquery::source::InMemory;
use std::sync::Arc;

/// Skip decoding images whose output alone would exceed this many samples.
const MAX_SAMPLES: u64 = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let source = Arc::new(InMemory::new("fuzz.tif", data.to_vec()));
    let Ok(cog) = Cog::from_source(source) else {
        return;
    };
    let meta = cog.meta().clone();
    let bands: Vec<usize> = (0..meta.band_count()).collect();
    for (i, level) in meta.levels.iter().enumerate() {
        let samples = level.width as u64 * level.height as u64 * bands.len() as u64;
        if samples > MAX_SAMPLES {
            continue;
        }
        let full = Window::full(level.width, level.height);
        let _ = cog.read_window_any(i, full, &bands);
        let _ = cog.read_mask(i, full);
    }
    let _ = pixelquery::cog::CogInfo::new(&meta).to_string();
});
