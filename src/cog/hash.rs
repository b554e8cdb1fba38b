//! The corpus pixel hash: SHA-256 over the pixels (native type, little-endian,
//! band-sequential), first 16 hex digits.

use super::{Cog, Result, Window};
use sha2::{Digest, Sha256};

/// Hex digits kept of the SHA-256 (the manifest's `pixels_sha256_16`).
pub const PIXEL_HASH_DIGITS: usize = 16;

/// Output bytes read per piece when hashing a large image band by band.
const PIECE_BYTES: u64 = 256 << 20;

pub(super) fn pixel_hash(cog: &Cog, level: usize) -> Result<String> {
    let meta = cog.meta();
    let lvl = cog.level(level)?;
    let (w, h) = (lvl.width, lvl.height);
    let bands = meta.band_count();
    let row_bytes = w as u64 * meta.dtype().size() as u64;
    let mut hasher = Sha256::new();
    let mut bytes = Vec::new();
    if row_bytes * h as u64 * bands as u64 <= PIECE_BYTES {
        let all: Vec<usize> = (0..bands).collect();
        cog.read_window_any(level, Window::full(w, h), &all)?
            .extend_le_bytes(&mut bytes);
        hasher.update(&bytes);
    } else {
        // Band-sequential order forces band-by-band reads of row pieces.
        let rows_per_piece = (PIECE_BYTES / row_bytes.max(1)).clamp(1, h as u64) as u32;
        for band in 0..bands {
            let mut row = 0;
            while row < h {
                let n = rows_per_piece.min(h - row);
                bytes.clear();
                cog.read_window_any(level, Window::new(0, row, w, n), &[band])?
                    .extend_le_bytes(&mut bytes);
                hasher.update(&bytes);
                row += n;
            }
        }
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(hex[..PIXEL_HASH_DIGITS].to_string())
}
