//! Reading fragments: a [`ChunkedFile`] knows where each chunk's batches are (from the
//! file's footer, or from the chunk index of its catalog row) and holds the bytes it has
//! (a memory mapping of the whole file, or the runs fetched from object storage). Batches
//! are decoded one at a time ([`DecodedBatch`]), and a [`Fragment`] view of any window and
//! range of observations is assembled from the batches it needs.

use super::chunks::{ChunkIndex, ChunkRun};
use super::view::Fragment;
use super::{FragmentMeta, PixelWindow, FRAGMENT_FORMAT_VERSION};
use crate::store::codec::Codec;
use crate::store::ipc::{self, BatchBlock, BatchShape};
use crate::store::layout::io_err;
use crate::store::scene_names::SceneNames;
use crate::store::{Error, FragmentCompression, Result};
use arrow_array::StringArray;
use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder, Buffer, OffsetBuffer, ScalarBuffer};
use rayon::prelude::*;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// One decoded batch: a chunk's pixels for a block of observations.
#[derive(Debug, Clone)]
pub(crate) struct DecodedBatch {
    /// Pixel values, `rows * chunk samples`.
    pub values: Buffer,
    /// Validity bits (`None`: all valid).
    pub validity: Option<BooleanBuffer>,
    /// True when the values were decompressed (held on the heap, not the file's bytes).
    pub decompressed: bool,
}

impl DecodedBatch {
    /// Heap bytes it holds.
    pub fn heap_bytes(&self) -> u64 {
        if self.decompressed {
            self.values.len() as u64 + self.validity.as_ref().map_or(0, |v| v.inner().len() as u64)
        } else {
            0
        }
    }
}

/// The bytes of a fragment file a reader has: all of it, or some ranges of it.
#[derive(Debug, Clone)]
pub(crate) enum FileBytes {
    /// The whole file (memory-mapped, or read into memory).
    Whole(Buffer),
    /// Ranges fetched from object storage, each with its bytes.
    Ranges(Vec<(Range<u64>, Buffer)>),
}

impl FileBytes {
    /// The buffer holding `range` and the offset of its first byte in the file.
    fn holding(&self, range: &Range<u64>) -> Option<(&Buffer, u64)> {
        match self {
            FileBytes::Whole(b) => (range.end <= b.len() as u64).then_some((b, 0)),
            FileBytes::Ranges(parts) => parts
                .iter()
                .find(|(r, _)| r.start <= range.start && range.end <= r.end)
                .map(|(r, b)| (b, r.start)),
        }
    }

    /// Heap bytes held (fetched ranges; a mapping holds none).
    pub fn heap_bytes(&self) -> u64 {
        match self {
            FileBytes::Whole(_) => 0,
            FileBytes::Ranges(parts) => parts.iter().map(|(_, b)| b.len() as u64).sum(),
        }
    }
}

/// An opened fragment file: its metadata, where its chunk runs are, and its bytes.
#[derive(Debug)]
pub(crate) struct ChunkedFile {
    path: PathBuf,
    meta: FragmentMeta,
    runs: Vec<ChunkRun>,
    /// Every batch's block, run by run (from the footer), when the whole file is at hand.
    blocks: Option<Vec<BatchBlock>>,
    /// Where the scene dictionary is.
    dictionary: Range<u64>,
    bytes: FileBytes,
    codec: Option<Codec>,
    /// Names observations when the dictionary's bytes were not fetched.
    scene_names: Option<Arc<SceneNames>>,
    /// Times and scene ids of every observation, read once.
    observations: OnceLock<(ScalarBuffer<i64>, StringArray)>,
}

/// Memory-maps a whole file, checking its size when one is expected.
pub(crate) fn map_file(path: &Path, expected: Option<u64>) -> Result<Buffer> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            io_err(path)(e)
        }
    })?;
    map_opened(path, &file, expected)
}

/// Maps a file the caller opened (the warehouse opens its files without following links);
/// `path` names it in errors.
pub(crate) fn map_opened(path: &Path, file: &File, expected: Option<u64>) -> Result<Buffer> {
    let len = file.metadata().map_err(io_err(path))?.len();
    if let Some(expected) = expected.filter(|&b| b != len) {
        return Err(Error::SizeMismatch {
            path: path.to_path_buf(),
            expected,
            actual: len,
        });
    }
    let corrupt = |reason: String| Error::CorruptFragment {
        path: path.to_path_buf(),
        reason,
    };
    if len < 32 {
        return Err(corrupt(format!("only {len} bytes: truncated")));
    }
    let len = usize::try_from(len).map_err(|_| corrupt("file too large".into()))?;
    // SAFETY: warehouse files are immutable once written (the commit protocol never
    // rewrites or truncates a file; only vacuum deletes unreferenced ones), so the
    // mapping stays valid and unchanged while a buffer of it exists.
    let map = unsafe { memmap2::Mmap::map(file) }.map_err(io_err(path))?;
    let ptr = std::ptr::NonNull::new(map.as_ptr() as *mut u8)
        .ok_or_else(|| corrupt("empty mapping".into()))?;
    // SAFETY: `ptr` points to `len` readable bytes owned by `map`, which the Buffer keeps
    // alive (the Arc is its owner) for as long as any slice of it exists.
    Ok(unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(map)) })
}

/// Checks `bytes` against an XXH3 checksum (`xxh3:<hex>`).
pub(crate) fn check_checksum(path: &Path, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = crate::store::layout::checksum(bytes);
    if actual != expected {
        return Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Typed views need 8-byte alignment: a mapping is page aligned, other buffers may not be.
fn aligned(bytes: Buffer) -> Buffer {
    if bytes.as_ptr().align_offset(8) == 0 {
        bytes
    } else {
        Buffer::from_slice_ref(bytes.as_slice())
    }
}

/// Runs `f`, turning a panic on hostile bytes into an error naming the file (defence in
/// depth: structures are checked before anything is built from them).
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(Error::CorruptFragment {
            path: path.to_path_buf(),
            reason: "decoder failed on malformed data".into(),
        })
    })
}

impl ChunkedFile {
    /// Opens a whole file from its footer and schema, as any Arrow reader would: every
    /// structure is checked (batch blocks against the present chunks and time blocks the
    /// schema declares).
    pub(crate) fn from_whole(path: &Path, bytes: Buffer) -> Result<ChunkedFile> {
        let bytes = aligned(bytes);
        guarded(path, || {
            let corrupt = |reason: String| Error::CorruptFragment {
                path: path.to_path_buf(),
                reason,
            };
            let footer = ipc::read_footer(bytes.as_slice()).map_err(corrupt)?;
            let (schema, blocks) = (footer.schema, footer.blocks);
            let meta = checked_meta(path, &schema)?;
            let dictionary = footer
                .dictionary
                .ok_or_else(|| corrupt("no scene dictionary".into()))?;
            let per_run = meta.blocks.len();
            if blocks.len() != per_run * meta.chunks.len() {
                return Err(corrupt(format!(
                    "{} record batches, expected {} chunks x {per_run} blocks",
                    blocks.len(),
                    meta.chunks.len()
                )));
            }
            let runs: Vec<ChunkRun> = meta
                .chunks
                .iter()
                .zip(blocks.chunks(per_run.max(1)))
                .map(|(&chunk, b)| ChunkRun {
                    chunk,
                    start: b[0].offset as u64,
                    end: b[b.len() - 1].end() as u64,
                })
                .collect();
            let codec = first_codec(&bytes, blocks.first()).map_err(corrupt)?;
            Ok(ChunkedFile {
                path: path.to_path_buf(),
                meta,
                runs,
                blocks: Some(blocks),
                dictionary: dictionary.offset as u64..dictionary.end() as u64,
                bytes: FileBytes::Whole(bytes.clone()),
                codec,
                scene_names: None,
                observations: OnceLock::new(),
            })
        })
    }

    /// Opens a file from the chunk index of its catalog row (`meta` from the row and the
    /// index) and the bytes at hand: the whole file (its footer is then checked against the
    /// index), or fetched runs. `compression` is the warehouse's setting when known (else
    /// the file's own, from its first batch).
    pub(crate) fn from_index(
        path: &Path,
        meta: FragmentMeta,
        index: &ChunkIndex,
        bytes: FileBytes,
        compression: Option<FragmentCompression>,
    ) -> Result<ChunkedFile> {
        let corrupt = |reason: String| Error::CorruptFragment {
            path: path.to_path_buf(),
            reason,
        };
        let mut codec = compression.and_then(|c| match c {
            FragmentCompression::None => None,
            FragmentCompression::Lz4 => Some(Codec::Lz4Frame),
            FragmentCompression::Zstd => Some(Codec::Zstd),
        });
        let bytes = match bytes {
            FileBytes::Whole(b) => FileBytes::Whole(aligned(b)),
            FileBytes::Ranges(parts) => {
                FileBytes::Ranges(parts.into_iter().map(|(r, b)| (r, aligned(b))).collect())
            }
        };
        let blocks = match &bytes {
            FileBytes::Whole(b) => {
                let whole = ChunkedFile::from_whole(path, b.clone())?;
                if whole.runs != index.runs
                    || whole.meta.blocks != index.blocks
                    || whole.dictionary != index.dictionary
                {
                    return Err(corrupt(
                        "chunk runs differ from the catalog's chunk index".into(),
                    ));
                }
                match compression {
                    None => codec = whole.codec,
                    Some(_) if whole.codec.is_some() && whole.codec != codec => {
                        return Err(corrupt("compressed unlike the warehouse says".into()))
                    }
                    Some(_) => {}
                }
                whole.blocks
            }
            FileBytes::Ranges(_) => None,
        };
        Ok(ChunkedFile {
            path: path.to_path_buf(),
            meta,
            runs: index.runs.clone(),
            blocks,
            dictionary: index.dictionary.clone(),
            bytes,
            codec,
            scene_names: None,
            observations: OnceLock::new(),
        })
    }

    /// The fragment's metadata (its stored window, chunk shape, blocks).
    pub(crate) fn meta(&self) -> &FragmentMeta {
        &self.meta
    }

    /// The bytes at hand.
    pub(crate) fn bytes(&self) -> &FileBytes {
        &self.bytes
    }

    /// The path the file is named by in errors.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::CorruptFragment {
            path: self.path.clone(),
            reason,
        }
    }

    /// The block of batch `b` of run `r`, and the buffer holding it (offsets relative to it).
    pub(crate) fn block(&self, r: usize, b: usize) -> Result<(BatchBlock, Buffer)> {
        let run = self
            .runs
            .get(r)
            .ok_or_else(|| self.corrupt(format!("no chunk run {r}")))?;
        let range = run.start..run.end;
        let (buffer, base) = self.bytes.holding(&range).ok_or_else(|| {
            self.corrupt(format!("bytes {}..{} were not read", run.start, run.end))
        })?;
        let block = match &self.blocks {
            Some(blocks) => blocks[r * self.meta.blocks.len() + b],
            None => {
                // Walk the run's messages: each names its own length.
                let local = buffer.as_slice();
                let mut at = (run.start - base) as usize;
                let mut found = None;
                for i in 0..=b {
                    let block = ipc::block_at(local, at).map_err(|e| self.corrupt(e))?;
                    if block.end() as u64 + base > run.end {
                        return Err(self.corrupt(format!("chunk {} run is cut short", run.chunk)));
                    }
                    at = block.end();
                    if i == b {
                        found = Some(block);
                    }
                }
                return found
                    .map(|blk| (blk, buffer.clone()))
                    .ok_or_else(|| self.corrupt("empty run".into()));
            }
        };
        let start = block.offset as u64;
        if start < base || block.end() as u64 > base + buffer.len() as u64 {
            return Err(self.corrupt("a batch lies outside the bytes read".into()));
        }
        Ok((block.shifted_back(base as usize), buffer.clone()))
    }

    /// Decodes batch `b` of run `r` (pixels and validity, or only the index columns).
    fn read(&self, r: usize, b: usize, pixels: bool) -> Result<ipc::BatchBuffers> {
        let (block, buffer) = self.block(r, b)?;
        let shape = BatchShape {
            pixels_per_row: self.meta.chunk.samples(),
            sample_size: self.meta.dtype.size(),
            pixels,
        };
        let buffers = guarded(&self.path, || {
            ipc::read_batch(&buffer, block, shape).map_err(|e| self.corrupt(e))
        })?;
        let want = self.meta.blocks[b] as usize;
        if buffers.rows != want {
            return Err(self.corrupt(format!(
                "batch {b} of chunk {} has {} rows, its block has {want}",
                self.runs[r].chunk, buffers.rows
            )));
        }
        if buffers.codec != self.codec && buffers.codec.is_some() {
            return Err(self.corrupt("batches are compressed with different codecs".into()));
        }
        Ok(buffers)
    }

    /// Decodes the pixels of batch `b` of run `r`.
    pub(crate) fn decode(&self, r: usize, b: usize) -> Result<DecodedBatch> {
        let buffers = self.read(r, b, true)?;
        let n = buffers.rows * self.meta.chunk.samples();
        let (_, buffer) = self.block(r, b)?;
        let file = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
        let decompressed =
            !buffers.values.is_empty() && !file.contains(&(buffers.values.as_ptr() as usize));
        Ok(DecodedBatch {
            values: buffers
                .values
                .slice_with_length(0, n * self.meta.dtype.size()),
            validity: buffers.validity.map(|v| BooleanBuffer::new(v, 0, n)),
            decompressed,
        })
    }

    /// Names observations through `names` (a snapshot's scene table) when the file's scene
    /// dictionary is not at hand.
    pub(crate) fn with_scene_names(mut self, names: Option<Arc<SceneNames>>) -> Self {
        self.scene_names = names;
        self
    }

    /// True when the observations can be named with the bytes at hand: the dictionary is
    /// among them, or the scene names name every observation's time.
    pub(crate) fn can_name_observations(&self) -> Result<bool> {
        if self.observations.get().is_some() || self.bytes.holding(&self.dictionary).is_some() {
            return Ok(true);
        }
        if self.scene_names.is_none() {
            return Ok(false);
        }
        let times = self.times_and_keys()?.0;
        Ok(match self.ids_from_names(&times) {
            Some(ids) => {
                let _ = self.observations.set((ScalarBuffer::from(times), ids));
                true
            }
            None => false,
        })
    }

    /// Times and scene ids of every observation: times from the batches of a run at hand
    /// (every run holds the same observations), scene ids from the dictionary they refer to
    /// (or, without it, from the scene names).
    pub(crate) fn observations(&self) -> Result<&(ScalarBuffer<i64>, StringArray)> {
        if let Some(o) = self.observations.get() {
            return Ok(o);
        }
        let (times, keys) = self.times_and_keys()?;
        let ids = if self.bytes.holding(&self.dictionary).is_some() {
            self.ids_from_dictionary(&keys)?
        } else {
            self.ids_from_names(&times).ok_or_else(|| {
                self.corrupt(format!(
                    "bytes {}..{} (the scene dictionary) were not read",
                    self.dictionary.start, self.dictionary.end
                ))
            })?
        };
        let _ = self.observations.set((ScalarBuffer::from(times), ids));
        Ok(self.observations.get().expect("just set"))
    }

    /// Every observation's time and dictionary key, from a run at hand, checked.
    fn times_and_keys(&self) -> Result<(Vec<i64>, Vec<i32>)> {
        let total: usize = self.meta.blocks.iter().map(|&b| b as usize).sum();
        let mut times = Vec::with_capacity(total);
        let mut keys = Vec::with_capacity(total);
        let run = (0..self.runs.len())
            .find(|&r| {
                let run = &self.runs[r];
                self.bytes.holding(&(run.start..run.end)).is_some()
            })
            .unwrap_or(0);
        for b in 0..self.meta.blocks.len() {
            let buffers = self.read(run, b, false)?;
            let rows = buffers.rows;
            times.extend_from_slice(&ScalarBuffer::<i64>::new(buffers.times, 0, rows));
            keys.extend_from_slice(&ScalarBuffer::<i32>::new(buffers.keys, 0, rows));
        }
        if times.len() != total {
            return Err(self.corrupt("blocks and batches disagree".into()));
        }
        if times.windows(2).any(|w| w[1] < w[0]) {
            return Err(self.corrupt("observations are not sorted by time".into()));
        }
        Ok((times, keys))
    }

    /// The scene ids `keys` refer to in the file's dictionary.
    fn ids_from_dictionary(&self, keys: &[i32]) -> Result<StringArray> {
        let range = self.dictionary.clone();
        let (buffer, base) = self.bytes.holding(&range).ok_or_else(|| {
            self.corrupt(format!(
                "bytes {}..{} were not read",
                range.start, range.end
            ))
        })?;
        let block = ipc::block_at(buffer.as_slice(), (range.start - base) as usize)
            .map_err(|e| self.corrupt(e))?;
        let (offsets, text) = guarded(&self.path, || {
            ipc::read_dictionary(buffer, block).map_err(|e| self.corrupt(e))
        })?;
        let scenes = offsets.len() - 1;
        let mut ids: Vec<i32> = Vec::with_capacity(keys.len() + 1);
        let mut text_out = Vec::new();
        ids.push(0);
        for &key in keys {
            let k = usize::try_from(key)
                .ok()
                .filter(|&k| k < scenes)
                .ok_or_else(|| self.corrupt(format!("scene key {key} outside the dictionary")))?;
            text_out
                .extend_from_slice(&text.as_slice()[offsets[k] as usize..offsets[k + 1] as usize]);
            let end = i32::try_from(text_out.len())
                .map_err(|_| self.corrupt("scene ids exceed 2 GiB".into()))?;
            ids.push(end);
        }
        StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(ids)),
            Buffer::from_vec(text_out),
            None,
        )
        .map_err(|e| self.corrupt(format!("scene ids: {e}")))
    }

    /// The scene ids the scene names give `times`, if they name every one.
    fn ids_from_names(&self, times: &[i64]) -> Option<StringArray> {
        let names = self.scene_names.as_deref()?;
        let ids: Option<Vec<&str>> = times
            .iter()
            .map(|&t| names.get(&self.meta.product, t))
            .collect();
        Some(StringArray::from_iter_values(ids?))
    }

    /// The observations whose times fall in `[start, end]` (microseconds), as a range of
    /// indices (observations are sorted by time).
    pub(crate) fn observations_between(&self, range: Option<(i64, i64)>) -> Result<Range<usize>> {
        let (times, _) = self.observations()?;
        Ok(match range {
            None => 0..times.len(),
            Some((s, e)) => {
                let lo = times.partition_point(|&t| t < s);
                let hi = times.partition_point(|&t| t <= e);
                lo..hi.max(lo)
            }
        })
    }

    /// A view of observations `obs` over `window` (tile pixels, clipped to the tile),
    /// decoding the batches it needs with `batch(run, block)`.
    pub(crate) fn view(
        &self,
        window: PixelWindow,
        obs: Range<usize>,
        batch: &(dyn Fn(usize, usize) -> Result<Arc<DecodedBatch>> + Sync),
        decoding: Decoding,
    ) -> Result<Fragment> {
        let m = &self.meta;
        let (times, ids) = self.observations()?;
        if obs.end > times.len() || obs.start > obs.end {
            return Err(self.corrupt(format!("observations {obs:?} out of range")));
        }
        // The window as asked (inside the tile): pixels outside the stored window are
        // invalid, and chunks without a valid pixel are not stored, so they are not read.
        let tile = PixelWindow::full(m.width, m.height);
        let window = intersect(&window, &tile).unwrap_or(PixelWindow::new(0, 0, 1, 1));
        let shape = m.chunk;
        let size = m.dtype.size();
        let (ww, wh) = (window.width as usize, window.height as usize);
        let nobs = obs.len();
        let mut words = vec![0u64; (nobs * ww * wh * size).div_ceil(8)];
        let values: &mut [u8] =
            &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..nobs * ww * wh * size];
        let fill = nodata_bytes(m);
        if fill.iter().any(|&b| b != 0) {
            for px in values.chunks_exact_mut(size) {
                px.copy_from_slice(&fill[..size]);
            }
        }
        // Which blocks hold the observations.
        let ranges: Vec<Range<usize>> = {
            let mut start = 0;
            m.blocks
                .iter()
                .map(|&b| {
                    let r = start..start + b as usize;
                    start = r.end;
                    r
                })
                .collect()
        };
        let first_block = ranges.partition_point(|r| r.end <= obs.start);
        // The chunks the window meets, by chunk row, each with its run (absent chunks are
        // invalid) and the tile columns it gives the window.
        let across = shape.across(m.width).max(1);
        let mut by_row: Vec<(u32, Vec<Segment>)> = Vec::new();
        for (slot, k) in shape
            .touching(&window, m.width, m.height)
            .into_iter()
            .enumerate()
        {
            let cw = shape.window(k, m.width, m.height);
            let c0 = cw.col.max(window.col);
            let c1 = (cw.col + cw.width).min(window.col + window.width);
            let seg = Segment {
                slot,
                run: self.runs.binary_search_by_key(&k, |r| r.chunk).ok(),
                chunk: cw,
                cols: c0..c1,
            };
            match by_row.last_mut() {
                Some((r, segs)) if *r == k / across => segs.push(seg),
                _ => by_row.push((k / across, vec![seg])),
            }
        }
        let slots = by_row.iter().map(|(_, s)| s.len()).sum::<usize>();
        let mut valid = BooleanBufferBuilder::new(nobs * ww * wh);
        let mut any_invalid = false;
        // The batches of a few blocks are decoded at once (in parallel when asked), then
        // copied: a pixel's history over years is hundreds of small batches per fragment.
        let slot_runs: Vec<(usize, usize)> = by_row
            .iter()
            .flat_map(|(_, segs)| segs.iter())
            .filter_map(|seg| Some((seg.slot, seg.run?)))
            .collect();
        let blocks: Vec<usize> = (first_block..ranges.len())
            .take_while(|&b| ranges[b].start < obs.end)
            .collect();
        let batch_bytes = shape.samples() * shape.observations as usize * size;
        let per_group = (DECODE_GROUP_BYTES / (slot_runs.len() * batch_bytes).max(1)).max(1);
        for group in blocks.chunks(per_group) {
            let wanted: Vec<(usize, usize, usize)> = (0..group.len())
                .flat_map(|g| slot_runs.iter().map(move |&(slot, run)| (g, slot, run)))
                .collect();
            let decode = |&(g, _, run): &(usize, usize, usize)| batch(run, group[g]);
            let got: Vec<Arc<DecodedBatch>> = match decoding {
                Decoding::Parallel if wanted.len() >= 4 => {
                    wanted.par_iter().map(decode).collect::<Result<_>>()?
                }
                _ => wanted.iter().map(decode).collect::<Result<_>>()?,
            };
            let mut decoded: Vec<Vec<Option<Arc<DecodedBatch>>>> =
                vec![vec![None; slots]; group.len()];
            for (&(g, slot, _), d) in wanted.iter().zip(got) {
                decoded[g][slot] = Some(d);
            }
            for (&block, decoded) in group.iter().zip(&decoded) {
                let range = &ranges[block];
                for i in range.start.max(obs.start)..range.end.min(obs.end) {
                    let o = i - obs.start;
                    let row_in_block = i - range.start;
                    for (cr, segs) in &by_row {
                        let rows = (cr * shape.rows).max(window.row)
                            ..((cr + 1) * shape.rows).min(window.row + window.height);
                        for tr in rows {
                            for seg in segs {
                                let n = seg.cols.len();
                                let dst = ((o * wh + (tr - window.row) as usize) * ww
                                    + (seg.cols.start - window.col) as usize)
                                    * size;
                                let Some(d) = &decoded[seg.slot] else {
                                    valid.append_n(n, false);
                                    any_invalid = true;
                                    continue;
                                };
                                let src = row_in_block * shape.samples()
                                    + (tr - seg.chunk.row) as usize * shape.cols as usize
                                    + (seg.cols.start - seg.chunk.col) as usize;
                                let bytes = d.values.as_slice();
                                if (src + n) * size > bytes.len() {
                                    return Err(self.corrupt(
                                        "a batch holds fewer pixels than its chunk".into(),
                                    ));
                                }
                                values[dst..dst + n * size]
                                    .copy_from_slice(&bytes[src * size..(src + n) * size]);
                                match &d.validity {
                                    Some(v) => {
                                        let off = v.offset() + src;
                                        valid.append_packed_range(off..off + n, v.values());
                                        any_invalid = true;
                                    }
                                    None => valid.append_n(n, true),
                                }
                            }
                        }
                    }
                }
            }
        }
        let validity = valid.finish();
        let validity =
            (any_invalid && validity.count_set_bits() < validity.len()).then_some(validity);
        let mut view_meta = m.clone();
        view_meta.window = window;
        let compression = match self.codec {
            None => FragmentCompression::None,
            Some(Codec::Lz4Frame) => FragmentCompression::Lz4,
            Some(Codec::Zstd) => FragmentCompression::Zstd,
        };
        let values = Buffer::from_vec(words).slice_with_length(0, nobs * ww * wh * size);
        Fragment::from_parts(
            &self.path,
            view_meta,
            times.slice(obs.start, nobs),
            ids.slice(obs.start, nobs),
            values,
            validity,
            compression,
        )
        .map_err(|e| self.corrupt(e))
    }
}

/// Decoded bytes a view holds at once, at most (or one block's batches when they are more):
/// 64 batches of 32x32x16 u16 chunks. Unit tests use a few batches, so their small
/// fragments cross group edges.
const DECODE_GROUP_BYTES: usize = if cfg!(test) { 64 } else { 2 << 20 };

/// How a view decodes its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoding {
    /// On the rayon pool, a group of batches at a time.
    Parallel,
    /// On the calling thread (for callers that must not wait on the pool, such as the maker
    /// of a cache entry other tasks may wait for).
    Sequential,
}

/// The part of one chunk's columns a view takes.
struct Segment {
    /// Index among the chunks the view meets.
    slot: usize,
    /// The chunk's run, `None` when the chunk is absent (all invalid).
    run: Option<usize>,
    /// The chunk's pixels in the tile.
    chunk: PixelWindow,
    /// The tile columns the view takes from it.
    cols: Range<u32>,
}

/// The overlap of two windows, `None` when they do not meet.
pub(crate) fn intersect(a: &PixelWindow, b: &PixelWindow) -> Option<PixelWindow> {
    let c0 = a.col.max(b.col);
    let r0 = a.row.max(b.row);
    let c1 = (a.col + a.width).min(b.col + b.width);
    let r1 = (a.row + a.height).min(b.row + b.height);
    (c0 < c1 && r0 < r1).then(|| PixelWindow::new(c0, r0, c1 - c0, r1 - r0))
}

/// The nodata value (else 0) as the sample's little-endian bytes.
fn nodata_bytes(m: &FragmentMeta) -> [u8; 8] {
    use crate::dtype::DataType::*;
    let v = m.nodata.unwrap_or(0.0);
    let mut out = [0u8; 8];
    let bytes: Vec<u8> = match m.dtype {
        U8 => vec![v as u8],
        I8 => (v as i8).to_le_bytes().to_vec(),
        U16 => (v as u16).to_le_bytes().to_vec(),
        I16 => (v as i16).to_le_bytes().to_vec(),
        U32 => (v as u32).to_le_bytes().to_vec(),
        I32 => (v as i32).to_le_bytes().to_vec(),
        F32 => (v as f32).to_le_bytes().to_vec(),
        F64 => v.to_le_bytes().to_vec(),
    };
    out[..bytes.len()].copy_from_slice(&bytes);
    out
}

/// The codec of the file's first batch (all batches share it).
fn first_codec(
    bytes: &Buffer,
    block: Option<&BatchBlock>,
) -> std::result::Result<Option<Codec>, String> {
    let Some(block) = block else {
        return Ok(None);
    };
    let msg = &bytes.as_slice()[block.offset + 8..block.offset + block.meta_len];
    let message = arrow_ipc::root_as_message(msg).map_err(|e| format!("bad message: {e}"))?;
    let rb = message
        .header_as_record_batch()
        .ok_or("message is not a record batch")?;
    Ok(match rb.compression() {
        None => None,
        Some(c) => Some(
            Codec::from_ipc(c.codec())
                .ok_or_else(|| format!("unsupported compression codec {:?}", c.codec()))?,
        ),
    })
}

/// The fragment metadata a file's schema declares, checked: format version first, then the
/// metadata, then the columns against it.
fn checked_meta(path: &Path, schema: &arrow_schema::Schema) -> Result<FragmentMeta> {
    let corrupt = |reason: String| Error::CorruptFragment {
        path: path.to_path_buf(),
        reason,
    };
    let version = super::format_version(schema.metadata()).map_err(corrupt)?;
    if version != FRAGMENT_FORMAT_VERSION {
        return Err(Error::FragmentVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FRAGMENT_FORMAT_VERSION,
        });
    }
    let meta = FragmentMeta::from_metadata(schema.metadata()).map_err(corrupt)?;
    let expected = super::fragment_schema(&meta);
    if schema.fields().len() != expected.fields().len()
        || expected
            .fields()
            .iter()
            .zip(schema.fields().iter())
            .any(|(e, f)| e.name() != f.name() || e.data_type() != f.data_type())
    {
        return Err(corrupt(format!(
            "schema does not match a {} fragment of {}x{} chunks",
            meta.dtype, meta.chunk.rows, meta.chunk.cols
        )));
    }
    Ok(meta)
}
