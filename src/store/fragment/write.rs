//! Writing fragments: observations checked, sorted and cut into chunk batches, encoded (CPU)
//! and written (I/O) as one Arrow IPC file whose runs are recorded in a [`ChunkIndex`].

use super::chunks::{ChunkIndex, ChunkRun, ChunkShape};
use super::stats::{validity_and_stats, PixelStats};
use super::{fragment_schema, FragmentData, FragmentMeta, PixelWindow, FRAGMENT_FORMAT_VERSION};
use crate::dtype::DataType;
use crate::store::codec::Codec;
use crate::store::ipc::{self, BatchColumns, EncodedBatch, IpcFileWriter};
use crate::store::layout::{format_checksum, io_err};
use crate::store::{bitmap, Error, FragmentCompression, Result};
use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder};
use chrono::{DateTime, Utc};
use rayon::prelude::*;
use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::io::{BufWriter, Write};
use std::path::Path;

/// How new fragments are written: the warehouse's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FragmentSettings {
    /// EPSG code of the grid.
    pub epsg: u32,
    /// Buffer compression.
    pub compression: FragmentCompression,
    /// Crop the stored window to the valid pixels.
    pub crop: bool,
    /// Chunk shape.
    pub chunk: ChunkShape,
}

impl FragmentSettings {
    pub(crate) fn codec(&self) -> Option<Codec> {
        match self.compression {
            FragmentCompression::None => None,
            FragmentCompression::Lz4 => Some(Codec::Lz4Frame),
            FragmentCompression::Zstd => Some(Codec::Zstd),
        }
    }
}

/// What writing a fragment produced (feeds the catalog row).
#[derive(Debug)]
pub(crate) struct WrittenFragment<W = File> {
    pub bytes: u64,
    pub checksum: String,
    pub time_min: DateTime<Utc>,
    pub time_max: DateTime<Utc>,
    pub observations: u64,
    /// The window of the tile the fragment stores.
    pub window: PixelWindow,
    pub stats: PixelStats,
    /// Where its chunks are.
    pub index: ChunkIndex,
    /// Where it was written: the file, still open and not yet fsynced, or the bytes.
    pub out: W,
}

impl<W> WrittenFragment<W> {
    /// The same facts with another `out`.
    pub(crate) fn with_out<V>(self, out: V) -> (WrittenFragment<V>, W) {
        let facts = WrittenFragment {
            bytes: self.bytes,
            checksum: self.checksum,
            time_min: self.time_min,
            time_max: self.time_max,
            observations: self.observations,
            window: self.window,
            stats: self.stats,
            index: self.index,
            out,
        };
        (facts, self.out)
    }
}

/// A writer that hashes (XXH3-64) and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: twox_hash::XxHash3_64,
    bytes: u64,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: twox_hash::XxHash3_64::with_seed(0),
            bytes: 0,
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.write(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a fragment chunk run by chunk run. The schema (and so the present chunks and the
/// time blocks) is fixed when it starts; runs must come in the order of `meta.chunks`, each
/// with exactly the batches of `meta.blocks`.
pub(crate) struct ChunkedWriter<W: Write> {
    ipc: IpcFileWriter<HashingWriter<W>>,
    meta: FragmentMeta,
    runs: Vec<ChunkRun>,
    open: Option<(u32, u64, usize)>,
}

impl<W: Write> ChunkedWriter<W> {
    /// Starts the file of a fragment described by `meta`, whose observations are of
    /// `scene_ids` (one per observation, in order: the `scene_id` dictionary; batches refer
    /// to observation `i`'s scene as key `i`).
    pub(crate) fn new(
        out: W,
        meta: FragmentMeta,
        scene_ids: &[&str],
        codec: Option<Codec>,
    ) -> std::result::Result<Self, arrow_schema::ArrowError> {
        let schema = fragment_schema(&meta);
        Ok(ChunkedWriter {
            ipc: IpcFileWriter::new(HashingWriter::new(out), &schema, scene_ids, codec)?,
            meta,
            runs: Vec::new(),
            open: None,
        })
    }

    /// Starts the run of chunk `k`.
    pub(crate) fn begin_chunk(&mut self, k: u32) {
        self.open = Some((k, self.ipc.position() as u64, 0));
    }

    /// Appends an encoded batch to the open run.
    pub(crate) fn append(
        &mut self,
        batch: &EncodedBatch,
    ) -> std::result::Result<(), arrow_schema::ArrowError> {
        self.ipc.append(batch)?;
        self.count_batch();
        Ok(())
    }

    /// Appends a batch copied as it is (its message bytes) to the open run.
    pub(crate) fn append_raw(
        &mut self,
        message: &[u8],
        meta_len: usize,
    ) -> std::result::Result<(), arrow_schema::ArrowError> {
        self.ipc.append_raw(message, meta_len)?;
        self.count_batch();
        Ok(())
    }

    fn count_batch(&mut self) {
        if let Some((_, _, n)) = &mut self.open {
            *n += 1;
        }
    }

    /// Ends the open run.
    pub(crate) fn end_chunk(&mut self) -> std::result::Result<(), String> {
        let (chunk, start, batches) = self.open.take().ok_or("no open chunk run")?;
        if batches != self.meta.blocks.len() {
            return Err(format!(
                "chunk {chunk} has {batches} batches, the fragment's blocks are {}",
                self.meta.blocks.len()
            ));
        }
        self.runs.push(ChunkRun {
            chunk,
            start,
            end: self.ipc.position() as u64,
        });
        Ok(())
    }

    /// Ends the file; returns the sink, its size and checksum, and the chunk index.
    pub(crate) fn finish(self) -> std::result::Result<(W, u64, String, ChunkIndex), String> {
        let expected: Vec<u32> = self.meta.chunks.clone();
        let written: Vec<u32> = self.runs.iter().map(|r| r.chunk).collect();
        if written != expected {
            return Err(format!(
                "chunk runs {written:?} differ from the present chunks {expected:?}"
            ));
        }
        let dictionary = self.ipc.dictionary();
        let (sink, footer) = self.ipc.finish().map_err(|e| e.to_string())?;
        let m = &self.meta;
        let index = ChunkIndex {
            shape: m.chunk,
            blocks: m.blocks.clone(),
            dictionary: dictionary.offset as u64..dictionary.end() as u64,
            runs: self.runs,
            footer: footer as u64,
            epsg: m.epsg,
            transform: m.transform,
            nodata: m.nodata,
            scale: m.scale,
            offset: m.offset,
        };
        let checksum = format_checksum(sink.hasher.finish());
        Ok((sink.inner, sink.bytes, checksum, index))
    }
}

/// Validates `data` against itself (sizes, dtypes), sorts its observations by time and
/// writes it to `path` (which must not exist), cropped to the window of its valid pixels
/// when the settings say so. The caller fsyncs it before committing.
pub(crate) fn write_fragment_file(
    path: &Path,
    data: &mut FragmentData,
    settings: &FragmentSettings,
) -> Result<WrittenFragment> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    let out = BufWriter::with_capacity(256 * 1024, file);
    let (written, out) = encode_fragment(out, path, data, settings)?.with_out(());
    let file = out.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    // Not fsynced here: the caller hands the file to background sync threads or fsyncs
    // it with the other files of its commit.
    Ok(written.with_out(file).0)
}

/// Like [`write_fragment_file`], into memory (for object storage, which takes whole
/// objects); `name` names the fragment in errors.
pub(crate) fn write_fragment_bytes(
    name: &Path,
    data: &mut FragmentData,
    settings: &FragmentSettings,
) -> Result<WrittenFragment<Vec<u8>>> {
    encode_fragment(Vec::new(), name, data, settings)
}

/// Checks, sorts, crops, chunks and encodes `data` into `out`; `path` names it in errors.
fn encode_fragment<W: Write>(
    out: W,
    path: &Path,
    data: &mut FragmentData,
    settings: &FragmentSettings,
) -> Result<WrittenFragment<W>> {
    let (tile, band) = (data.tile, data.band.clone());
    let invalid = move |reason: String| Error::InvalidFragment {
        tile,
        band: band.clone(),
        reason,
    };
    check(data).map_err(&invalid)?;
    settings.chunk.check().map_err(&invalid)?;
    data.observations.sort_by(|a, b| {
        a.time
            .cmp(&b.time)
            .then_with(|| a.scene_id.cmp(&b.scene_id))
    });
    let (w, h) = (data.width, data.height);
    let (validity, stats) = match data.dtype {
        DataType::U8 => validity_and_stats::<u8>(data),
        DataType::I8 => validity_and_stats::<i8>(data),
        DataType::U16 => validity_and_stats::<u16>(data),
        DataType::I16 => validity_and_stats::<i16>(data),
        DataType::U32 => validity_and_stats::<u32>(data),
        DataType::I32 => validity_and_stats::<i32>(data),
        DataType::F32 => validity_and_stats::<f32>(data),
        DataType::F64 => validity_and_stats::<f64>(data),
    };
    let parts: Vec<Option<&BooleanBuffer>> = validity.iter().map(Option::as_ref).collect();
    let window = if settings.crop {
        valid_window(&parts, w as usize, h as usize)
    } else {
        PixelWindow::full(w, h)
    };
    // Fewer observations than a full block: larger chunks until compaction gathers them.
    let n = data.observations.len();
    let shape = if n < settings.chunk.observations as usize {
        settings.chunk.fresh()
    } else {
        settings.chunk
    }
    .for_tile(w, h);
    let mut present: Vec<u32> = shape
        .touching(&window, w, h)
        .into_iter()
        .filter(|&k| {
            let cw = shape.window(k, w, h);
            parts.iter().any(|p| match p {
                None => true,
                Some(bits) => cw.rows().any(|r| {
                    let start = r * w as usize + cw.col as usize;
                    bits.slice(start, cw.width as usize).count_set_bits() > 0
                }),
            })
        })
        .collect();
    if present.is_empty() {
        // No valid pixel at all: one chunk still records the observations.
        present = shape.touching(&window, w, h).into_iter().take(1).collect();
    }
    let t = shape.observations as usize;
    let blocks: Vec<u32> = (0..n).step_by(t).map(|s| (n - s).min(t) as u32).collect();
    let meta = FragmentMeta {
        tile: data.tile,
        band: data.band.clone(),
        product: data.product.clone(),
        epsg: settings.epsg,
        transform: data.tile_transform,
        width: w,
        height: h,
        window,
        dtype: data.dtype,
        nodata: data.nodata,
        scale: data.scale,
        offset: data.offset,
        format_version: FRAGMENT_FORMAT_VERSION,
        chunk: shape,
        blocks: blocks.clone(),
        chunks: present.clone(),
    };
    let times: Vec<i64> = data
        .observations
        .iter()
        .map(|o| o.time.timestamp_micros())
        .collect();
    let scene_ids: Vec<&str> = data
        .observations
        .iter()
        .map(|o| o.scene_id.as_str())
        .collect();
    let pixels: Vec<&[u8]> = data
        .observations
        .iter()
        .map(|o| o.pixels.as_bytes())
        .collect();
    let keys: Vec<i32> = (0..n as i32).collect();
    let source = TileSource {
        width: w,
        height: h,
        size: data.dtype.size(),
        times: &times,
        scene_keys: &keys,
        pixels: &pixels,
        validity: &parts,
    };
    let arrow_err = |e: arrow_schema::ArrowError| Error::Arrow {
        path: path.to_path_buf(),
        source: e,
    };
    let corrupt = |reason: String| Error::CorruptFragment {
        path: path.to_path_buf(),
        reason,
    };
    let codec = settings.codec();
    let mut writer = ChunkedWriter::new(out, meta, &scene_ids, codec).map_err(arrow_err)?;
    let ranges: Vec<std::ops::Range<usize>> = {
        let mut start = 0;
        blocks
            .iter()
            .map(|&b| {
                let r = start..start + b as usize;
                start = r.end;
                r
            })
            .collect()
    };
    // Chunks are encoded a few at a time on all cores, then written in order.
    let group = rayon::current_num_threads().max(1) * 2;
    for chunks in present.chunks(group) {
        let encoded: Vec<Vec<EncodedBatch>> = chunks
            .par_iter()
            .map(|&k| {
                ranges
                    .iter()
                    .map(|r| source.encode(shape, k, r.clone(), codec))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(arrow_err)?;
        for (&k, batches) in chunks.iter().zip(encoded) {
            writer.begin_chunk(k);
            for b in &batches {
                writer.append(b).map_err(arrow_err)?;
            }
            writer.end_chunk().map_err(corrupt)?;
        }
    }
    let (out, bytes, checksum, index) = writer.finish().map_err(corrupt)?;
    Ok(WrittenFragment {
        out,
        bytes,
        checksum,
        time_min: data.observations[0].time,
        time_max: data.observations[n - 1].time,
        observations: n as u64,
        window,
        stats,
        index,
    })
}

/// The sizes and types of `data` agree with each other.
fn check(data: &FragmentData) -> std::result::Result<(), String> {
    let pixels = (data.width as u64) * (data.height as u64);
    if pixels == 0 || pixels > i32::MAX as u64 {
        return Err(format!(
            "tile size {}x{} is empty or too large",
            data.width, data.height
        ));
    }
    if data.observations.is_empty() {
        return Err("no observations".into());
    }
    let pixels = pixels as usize;
    for o in &data.observations {
        if o.pixels.dtype() != data.dtype {
            return Err(format!(
                "observation {} has {} pixels, fragment dtype is {}",
                o.scene_id,
                o.pixels.dtype(),
                data.dtype
            ));
        }
        if o.pixels.len() != pixels {
            return Err(format!(
                "observation {} has {} pixels, expected {}x{}={pixels}",
                o.scene_id,
                o.pixels.len(),
                data.width,
                data.height
            ));
        }
        if let Some(v) = &o.valid {
            if v.len() != pixels {
                return Err(format!(
                    "observation {} has a validity mask of {} entries, expected {pixels}",
                    o.scene_id,
                    v.len()
                ));
            }
        }
    }
    Ok(())
}

/// Whole-tile observations (row-major pixels and validity) to cut chunk batches from.
pub(crate) struct TileSource<'a> {
    pub width: u32,
    pub height: u32,
    /// Bytes per sample.
    pub size: usize,
    pub times: &'a [i64],
    /// Each observation's key in the scene dictionary.
    pub scene_keys: &'a [i32],
    /// Each observation's whole-tile pixel bytes.
    pub pixels: &'a [&'a [u8]],
    /// Each observation's validity (`None`: all valid).
    pub validity: &'a [Option<&'a BooleanBuffer>],
}

/// Zero bytes padding chunk rows past a tile's edge.
static PAD: [u8; 8 * 4096] = [0; 8 * 4096];

impl TileSource<'_> {
    /// The batch of chunk `k` for observations `obs`.
    pub(crate) fn encode(
        &self,
        shape: ChunkShape,
        k: u32,
        obs: std::ops::Range<usize>,
        codec: Option<Codec>,
    ) -> std::result::Result<EncodedBatch, arrow_schema::ArrowError> {
        let (w, size) = (self.width as usize, self.size);
        let cw = shape.window(k, self.width, self.height);
        let (cols, rows) = (shape.cols as usize, shape.rows as usize);
        let pad_cols = cols - cw.width as usize;
        let pad_rows = rows - cw.height as usize;
        let mut slices: Vec<&[u8]> = Vec::with_capacity(obs.len() * (rows + 1));
        let mut bits = BooleanBufferBuilder::new(obs.len() * shape.samples());
        for i in obs.clone() {
            let px = self.pixels[i];
            for r in cw.rows() {
                let start = r * w + cw.col as usize;
                slices.push(&px[start * size..(start + cw.width as usize) * size]);
                if pad_cols > 0 {
                    slices.push(&PAD[..pad_cols * size]);
                }
                match self.validity[i] {
                    Some(v) => {
                        let (values, offset) = (v.values(), v.offset());
                        bits.append_packed_range(
                            offset + start..offset + start + cw.width as usize,
                            values,
                        );
                    }
                    None => bits.append_n(cw.width as usize, true),
                }
                bits.append_n(pad_cols, false);
            }
            for _ in 0..pad_rows {
                slices.push(&PAD[..cols * size]);
                bits.append_n(cols, false);
            }
        }
        let bits = bits.finish();
        let nulls = bits.len() - bits.count_set_bits();
        let packed = (nulls > 0).then(|| bits.sliced());
        let columns = BatchColumns {
            times: &self.times[obs.clone()],
            scene_keys: &self.scene_keys[obs],
            pixels: &slices,
            pixels_per_row: shape.samples(),
            validity: packed.as_ref().map(|b| (b.as_slice(), nulls)),
        };
        ipc::encode_batch(&columns, codec)
    }
}

/// The union of the windows of the observations' valid pixels (`None` = all valid); a
/// single corner pixel when no observation has any.
pub(crate) fn valid_window(
    parts: &[Option<&BooleanBuffer>],
    width: usize,
    height: usize,
) -> PixelWindow {
    let mut union: Option<PixelWindow> = None;
    for part in parts {
        let Some(bits) = part else {
            return PixelWindow::full(width as u32, height as u32);
        };
        if let Some(rect) = bitmap::set_rect(bits, width) {
            let w = PixelWindow::from_ranges(rect);
            union = Some(union.map_or(w, |u| u.union(&w)));
        }
    }
    union.unwrap_or(PixelWindow::new(0, 0, 1, 1))
}
