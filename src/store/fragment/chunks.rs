//! How a fragment's pixels are cut into chunks, and the chunk index its catalog row keeps.
//!
//! A tile is cut into a grid of chunks of `rows` x `cols` pixels, starting at its top-left
//! corner (chunk `k` is row `k / across`, column `k % across`); chunks on the right and bottom
//! edges of a tile whose size is not a multiple are padded with invalid pixels. Each chunk
//! that holds a valid pixel of some observation is *present* and stored as a *run* of record
//! batches, one per time block: every run has the same blocks (the same numbers of
//! observations, in time order), so observation `i` of the fragment is row `i - start` of the
//! block holding it in every run.
//!
//! The [`ChunkIndex`] is what a reader needs to go straight to the bytes of a chunk: the
//! blocks, each present chunk's byte range, and the fragment's scalar metadata. It is kept in
//! the fragment's catalog row (the `chunk_index` column), so a cold reader on object storage
//! fetches only the runs it needs, without a request for the file's footer.

use super::PixelWindow;
use crate::geo::GeoTransform;
use std::ops::Range;

/// The shape of a fragment's chunks: `rows` x `cols` pixels of the tile, and at most
/// `observations` observations per record batch once blocks are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ChunkShape {
    /// Pixel rows of a chunk.
    pub rows: u32,
    /// Pixel columns of a chunk.
    pub cols: u32,
    /// Observations of a full time block.
    pub observations: u32,
}

impl Default for ChunkShape {
    fn default() -> Self {
        ChunkShape::DEFAULT
    }
}

impl ChunkShape {
    /// The shape new warehouses use (chosen by `cargo bench --bench layout`, see the README).
    pub const DEFAULT: ChunkShape = ChunkShape {
        rows: 32,
        cols: 32,
        observations: 16,
    };

    /// How many times larger (per side) the chunks of a fragment with fewer observations than
    /// a full block are: a new fragment of a scene or two is a few large chunks (cheap to
    /// write and compact to store), cut into this shape when compaction gathers its
    /// observations into full blocks.
    pub const FRESH_FACTOR: u32 = 4;

    /// Largest side and block accepted (a hostile file or setting meets a bound).
    pub const MAX_SIDE: u32 = 4096;
    /// Largest number of observations of a full block.
    pub const MAX_OBSERVATIONS: u32 = 4096;

    /// Checks the shape's numbers.
    pub fn check(&self) -> Result<(), String> {
        let side = 1..=Self::MAX_SIDE;
        if !side.contains(&self.rows) || !side.contains(&self.cols) {
            return Err(format!(
                "chunk of {}x{} pixels: sides must be 1 to {}",
                self.rows,
                self.cols,
                Self::MAX_SIDE
            ));
        }
        if !(1..=Self::MAX_OBSERVATIONS).contains(&self.observations) {
            return Err(format!(
                "{} observations per chunk block: must be 1 to {}",
                self.observations,
                Self::MAX_OBSERVATIONS
            ));
        }
        Ok(())
    }

    /// The shape for a `width` x `height` tile: never larger than the tile.
    pub fn for_tile(self, width: u32, height: u32) -> ChunkShape {
        ChunkShape {
            rows: self.rows.min(height.max(1)),
            cols: self.cols.min(width.max(1)),
            observations: self.observations,
        }
    }

    /// The shape of fragments holding fewer than a full block of observations (see
    /// [`ChunkShape::FRESH_FACTOR`]).
    pub fn fresh(self) -> ChunkShape {
        ChunkShape {
            rows: (self.rows * Self::FRESH_FACTOR).min(Self::MAX_SIDE),
            cols: (self.cols * Self::FRESH_FACTOR).min(Self::MAX_SIDE),
            observations: self.observations,
        }
    }

    /// Samples of one observation of one chunk.
    pub fn samples(&self) -> usize {
        self.rows as usize * self.cols as usize
    }

    /// Chunks across a tile `width` pixels wide.
    pub fn across(&self, width: u32) -> u32 {
        width.div_ceil(self.cols)
    }

    /// Chunks down a tile `height` pixels high.
    pub fn down(&self, height: u32) -> u32 {
        height.div_ceil(self.rows)
    }

    /// Chunks of a `width` x `height` tile.
    pub fn count(&self, width: u32, height: u32) -> u32 {
        self.across(width) * self.down(height)
    }

    /// The pixels of the tile chunk `k` covers (clipped to the tile).
    pub fn window(&self, k: u32, width: u32, height: u32) -> PixelWindow {
        let across = self.across(width).max(1);
        let (r, c) = (k / across, k % across);
        let (col, row) = (c * self.cols, r * self.rows);
        PixelWindow::new(
            col,
            row,
            self.cols.min(width.saturating_sub(col)),
            self.rows.min(height.saturating_sub(row)),
        )
    }

    /// The chunks whose pixels meet `window`, in index order.
    pub fn touching(&self, window: &PixelWindow, width: u32, height: u32) -> Vec<u32> {
        let across = self.across(width);
        let rows = window.row / self.rows..(window.row + window.height).div_ceil(self.rows);
        let cols = window.col / self.cols..(window.col + window.width).div_ceil(self.cols);
        let down = self.down(height);
        let mut out = Vec::new();
        for r in rows.start..rows.end.min(down) {
            for c in cols.start..cols.end.min(across) {
                out.push(r * across + c);
            }
        }
        out
    }
}

/// The byte range of one present chunk's run of batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRun {
    /// The chunk's index in the tile's chunk grid.
    pub chunk: u32,
    /// Offset of its first batch.
    pub start: u64,
    /// Offset just past its last batch.
    pub end: u64,
}

/// Where a fragment's chunks are and what a reader needs to decode them without the file's
/// schema or footer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkIndex {
    /// The chunk shape.
    pub shape: ChunkShape,
    /// Observations of each time block (the batches of every run, in order).
    pub blocks: Vec<u32>,
    /// Where the scene dictionary (the `scene_id` column's values) is in the file.
    pub dictionary: std::ops::Range<u64>,
    /// Present chunks in file order (ascending chunk index), with their byte ranges.
    pub runs: Vec<ChunkRun>,
    /// Offset of the file's footer.
    pub footer: u64,
    /// EPSG code of the grid.
    pub epsg: u32,
    /// Geotransform of the tile's pixels.
    pub transform: GeoTransform,
    /// Nodata value of the band.
    pub nodata: Option<f64>,
    /// Scale to physical values.
    pub scale: f64,
    /// Offset to physical values.
    pub offset: f64,
}

/// Version byte of the encoded index.
const INDEX_VERSION: u8 = 1;
/// Most runs or blocks an index may list (a hostile row meets a bound).
const MAX_ENTRIES: u64 = 1 << 24;

impl ChunkIndex {
    /// Total observations (the sum of the blocks).
    pub fn observations(&self) -> u64 {
        self.blocks.iter().map(|&b| b as u64).sum()
    }

    /// The observations of each block as ranges.
    pub fn block_ranges(&self) -> Vec<Range<usize>> {
        let mut start = 0usize;
        self.blocks
            .iter()
            .map(|&b| {
                let r = start..start + b as usize;
                start = r.end;
                r
            })
            .collect()
    }

    /// The run of chunk `k`, when it is present.
    pub fn run(&self, k: u32) -> Option<&ChunkRun> {
        self.runs
            .binary_search_by_key(&k, |r| r.chunk)
            .ok()
            .map(|i| &self.runs[i])
    }

    /// The compact binary form kept in the catalog (little-endian varints and doubles).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.runs.len() * 4 + self.blocks.len());
        out.push(INDEX_VERSION);
        for v in [
            self.shape.rows,
            self.shape.cols,
            self.shape.observations,
            self.epsg,
        ] {
            put_varint(&mut out, v as u64);
        }
        for v in self.transform.to_gdal() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        match self.nodata {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.scale.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        put_varint(&mut out, self.blocks.len() as u64);
        for &b in &self.blocks {
            put_varint(&mut out, b as u64);
        }
        put_varint(&mut out, self.dictionary.start);
        put_varint(&mut out, self.dictionary.end - self.dictionary.start);
        put_varint(&mut out, self.runs.len() as u64);
        let mut previous_chunk = 0u64;
        let mut position = self.dictionary.end;
        for (i, run) in self.runs.iter().enumerate() {
            let chunk = run.chunk as u64;
            put_varint(
                &mut out,
                if i == 0 {
                    chunk
                } else {
                    chunk - previous_chunk
                },
            );
            put_varint(&mut out, run.start - position);
            put_varint(&mut out, run.end - run.start);
            previous_chunk = chunk;
            position = run.end;
        }
        put_varint(&mut out, self.footer - position);
        out
    }

    /// Reads [`ChunkIndex::encode`]'s form, checking every number (never panics or
    /// allocates beyond the input's own size).
    pub fn decode(bytes: &[u8]) -> Result<ChunkIndex, String> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.byte()?;
        if version != INDEX_VERSION {
            return Err(format!(
                "chunk index version {version}, expected {INDEX_VERSION}"
            ));
        }
        let shape = ChunkShape {
            rows: r.u32()?,
            cols: r.u32()?,
            observations: r.u32()?,
        };
        shape.check()?;
        let epsg = r.u32()?;
        let mut gt = [0f64; 6];
        for v in &mut gt {
            *v = r.f64()?;
        }
        let nodata = match r.byte()? {
            0 => None,
            1 => Some(r.f64()?),
            b => return Err(format!("bad nodata flag {b}")),
        };
        let (scale, offset) = (r.f64()?, r.f64()?);
        let nblocks = r.count()?;
        let mut blocks = Vec::with_capacity(nblocks.min(bytes.len()));
        for _ in 0..nblocks {
            let b = r.u32()?;
            if b == 0 {
                return Err("an empty time block".into());
            }
            blocks.push(b);
        }
        let dict_start = r.varint()?;
        let dict_end = dict_start
            .checked_add(r.varint()?)
            .ok_or("dictionary range overflows")?;
        if dict_end == dict_start {
            return Err("an empty scene dictionary".into());
        }
        let nruns = r.count()?;
        let mut runs = Vec::with_capacity(nruns.min(bytes.len()));
        let mut position = dict_end;
        let mut chunk = 0u64;
        for i in 0..nruns {
            let delta = r.varint()?;
            if i > 0 && delta == 0 {
                return Err("chunk runs are not in ascending chunk order".into());
            }
            chunk = chunk.checked_add(delta).ok_or("chunk index overflows")?;
            let start = position
                .checked_add(r.varint()?)
                .ok_or("run offset overflows")?;
            let end = start
                .checked_add(r.varint()?)
                .ok_or("run length overflows")?;
            if end == start {
                return Err("an empty chunk run".into());
            }
            runs.push(ChunkRun {
                chunk: u32::try_from(chunk).map_err(|_| "chunk index out of range")?,
                start,
                end,
            });
            position = end;
        }
        let footer = position
            .checked_add(r.varint()?)
            .ok_or("footer offset overflows")?;
        if r.at != bytes.len() {
            return Err(format!(
                "{} bytes after the chunk index",
                bytes.len() - r.at
            ));
        }
        if !gt.iter().all(|v| v.is_finite()) || !scale.is_finite() || !offset.is_finite() {
            return Err("non-finite geotransform, scale or offset".into());
        }
        Ok(ChunkIndex {
            shape,
            blocks,
            dictionary: dict_start..dict_end,
            runs,
            footer,
            epsg,
            transform: GeoTransform::from_gdal(gt),
            nodata,
            scale,
            offset,
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or("chunk index is cut short")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| "number out of range".to_string())
    }

    fn count(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        if n > MAX_ENTRIES {
            return Err(format!("{n} entries: too many"));
        }
        Ok(n as usize)
    }

    fn f64(&mut self) -> Result<f64, String> {
        let b = self
            .bytes
            .get(self.at..self.at + 8)
            .ok_or("chunk index is cut short")?;
        self.at += 8;
        Ok(f64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_grid_covers_the_tile_with_padded_edges() {
        let s = ChunkShape {
            rows: 32,
            cols: 32,
            observations: 16,
        };
        assert_eq!(
            (s.across(384), s.down(384), s.count(384, 384)),
            (12, 12, 144)
        );
        assert_eq!(s.window(13, 384, 384), PixelWindow::new(32, 32, 32, 32));
        // A 100 x 70 tile: 4 x 3 chunks, the last column 4 wide, the last row 6 high.
        assert_eq!(s.count(100, 70), 12);
        assert_eq!(s.window(11, 100, 70), PixelWindow::new(96, 64, 4, 6));
        assert_eq!(
            s.touching(&PixelWindow::new(30, 0, 5, 40), 100, 70),
            vec![0, 1, 4, 5]
        );
        assert_eq!(s.for_tile(4, 2).samples(), 8);
    }

    #[test]
    fn the_index_round_trips_and_rejects_damage() {
        let index = ChunkIndex {
            shape: ChunkShape::DEFAULT,
            blocks: vec![16, 16, 3],
            dictionary: 300..512,
            runs: vec![
                ChunkRun {
                    chunk: 0,
                    start: 512,
                    end: 9000,
                },
                ChunkRun {
                    chunk: 7,
                    start: 9000,
                    end: 20_000,
                },
            ],
            footer: 20_008,
            epsg: 32652,
            transform: GeoTransform::north_up(3840.0, 4_000_000.0, 10.0, 10.0),
            nodata: Some(0.0),
            scale: 1e-4,
            offset: -0.1,
        };
        let bytes = index.encode();
        assert_eq!(ChunkIndex::decode(&bytes).unwrap(), index);
        assert_eq!(index.observations(), 35);
        assert_eq!(index.block_ranges()[2], 32..35);
        assert_eq!(index.run(7).unwrap().start, 9000);
        assert!(index.run(3).is_none());
        for cut in 0..bytes.len() {
            assert!(ChunkIndex::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ChunkIndex::decode(&longer).is_err());
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(ChunkIndex::decode(&bad).is_err());
    }
}
