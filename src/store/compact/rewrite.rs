//! Merging fragments into one, chunk run by chunk run, without decoding what need not be.
//!
//! The sources (one tile, band and product) share a chunk grid. When they follow each other
//! in time, each output run is the sources' runs of that chunk one after the other.
//! A source batch that is a full time block is copied as it is (its compressed bytes); runs of
//! small batches (the one-scene commits of a daily archive) are decoded and encoded again as
//! full blocks once they add up to one, so each observation is re-encoded once in its life and
//! otherwise only copied. A chunk a source lacks (it held no valid pixel there) is filled with
//! invalid pixels for that source's observations. Sources that overlap in time (the flushes of
//! one large batch, or writers feeding different dates at once) are interleaved instead: every
//! output block is built from the sources' rows in time order. Memory: one chunk's batches of
//! one block at a time, plus the bytes of the sources on object storage.

use crate::store::batch::{new_fragment_location, Placed};
use crate::store::catalog::FragmentEntry;
use crate::store::codec::Codec;
use crate::store::fragment::read::{ChunkedFile, DecodedBatch};
use crate::store::fragment::write::{ChunkedWriter, FragmentSettings};
use crate::store::fragment::{ChunkShape, FragmentMeta, FRAGMENT_FORMAT_VERSION};
use crate::store::ipc::{self, BatchColumns, EncodedBatch};
use crate::store::layout::io_err;
use crate::store::reader::{meta_of, open_whole};
use crate::store::{Error, Result, Warehouse};
use arrow_buffer::BooleanBufferBuilder;
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// One output time block: copied from a source, or built from rows of several.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OutBlock {
    /// Block `block` of source `source`, copied as it is.
    Copy { source: usize, block: usize },
    /// Rows of source blocks, decoded and encoded again as one block.
    Build(Vec<(usize, usize, Range<usize>)>),
}

impl OutBlock {
    fn rows(&self, sources: &[ChunkedFile]) -> usize {
        match self {
            OutBlock::Copy { source, block } => sources[*source].meta().blocks[*block] as usize,
            OutBlock::Build(parts) => parts.iter().map(|(_, _, r)| r.len()).sum(),
        }
    }
}

/// The output blocks for sources whose blocks hold `sizes` observations: full blocks of
/// copyable sources (`copyable[s]`: same chunk shape as the output) copied, the others gathered
/// into full blocks of `full` observations; what is left at the end that was never split is
/// copied too where it can be.
fn plan_blocks(sizes: &[&[u32]], copyable: &[bool], full: usize) -> Vec<OutBlock> {
    let mut out = Vec::new();
    let mut pending: Vec<(usize, usize, Range<usize>)> = Vec::new();
    let flush_as_copies = |pending: &mut Vec<(usize, usize, Range<usize>)>,
                           out: &mut Vec<OutBlock>| {
        for (s, b, rows) in pending.drain(..) {
            if copyable[s] && rows.start == 0 && rows.end == sizes[s][b] as usize {
                out.push(OutBlock::Copy {
                    source: s,
                    block: b,
                });
            } else {
                out.push(OutBlock::Build(vec![(s, b, rows)]));
            }
        }
    };
    for (s, blocks) in sizes.iter().enumerate() {
        for (b, &n) in blocks.iter().enumerate() {
            let n = n as usize;
            if n >= full && copyable[s] {
                flush_as_copies(&mut pending, &mut out);
                out.push(OutBlock::Copy {
                    source: s,
                    block: b,
                });
                continue;
            }
            let mut rows = 0..n;
            while !rows.is_empty() {
                let have: usize = pending.iter().map(|(_, _, r)| r.len()).sum();
                let take = (full - have).min(rows.len());
                pending.push((s, b, rows.start..rows.start + take));
                rows.start += take;
                if have + take == full {
                    out.push(OutBlock::Build(std::mem::take(&mut pending)));
                }
            }
        }
    }
    flush_as_copies(&mut pending, &mut out);
    out
}

/// The output blocks of sources that overlap in time: every observation of every source in
/// time order (ties by scene id, as a fragment written at once orders them), cut into blocks
/// of `full`, each built from runs of rows. `observations[s]` are source `s`'s observations'
/// times and scene ids, `sizes[s]` its blocks. Also gives each observation's place in the
/// output, by source.
fn plan_interleaved(
    observations: &[Vec<(i64, &str)>],
    sizes: &[&[u32]],
    full: usize,
) -> (Vec<OutBlock>, Vec<Vec<usize>>) {
    // (time, scene id, source, observation), sorted: the output order.
    let mut order: Vec<(i64, &str, usize, usize)> = observations
        .iter()
        .enumerate()
        .flat_map(|(s, o)| o.iter().enumerate().map(move |(j, &(t, id))| (t, id, s, j)))
        .collect();
    order.sort_unstable();
    // Each observation's (block, row in block), by source.
    let located: Vec<Vec<(usize, usize)>> = sizes
        .iter()
        .map(|blocks| {
            blocks
                .iter()
                .enumerate()
                .flat_map(|(b, &n)| (0..n as usize).map(move |r| (b, r)))
                .collect()
        })
        .collect();
    let mut place: Vec<Vec<usize>> = observations.iter().map(|o| vec![0; o.len()]).collect();
    let mut plan = Vec::with_capacity(order.len().div_ceil(full.max(1)));
    for (g, group) in order.chunks(full.max(1)).enumerate() {
        let mut parts: Vec<(usize, usize, Range<usize>)> = Vec::new();
        for (i, &(_, _, s, j)) in group.iter().enumerate() {
            place[s][j] = g * full.max(1) + i;
            let (b, r) = located[s][j];
            match parts.last_mut() {
                Some((ps, pb, rows)) if *ps == s && *pb == b && rows.end == r => rows.end += 1,
                _ => parts.push((s, b, r..r + 1)),
            }
        }
        plan.push(OutBlock::Build(parts));
    }
    (plan, place)
}

/// Checks that `sources` can be merged chunk by chunk: one tile, band, product, sample type,
/// georeferencing, nodata, scale, offset and chunk shape. True when some overlap in time
/// (taken in the order given).
fn check_sources(entries: &[&FragmentEntry]) -> std::result::Result<bool, String> {
    let first = entries.first().ok_or("nothing to merge")?;
    let (m0, i0) = (meta_of(first), &first.index);
    let same_f64 = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    for e in entries {
        let i = &e.index;
        let nodata_same = match (i.nodata, i0.nodata) {
            (Some(a), Some(b)) => same_f64(a, b),
            (None, None) => true,
            _ => false,
        };
        if e.tile != m0.tile
            || e.band != m0.band
            || e.product != m0.product
            || e.dtype != m0.dtype
            || (e.width, e.height) != (m0.width, m0.height)
            || i.transform != i0.transform
            || i.epsg != i0.epsg
            || i.shape.observations != i0.shape.observations
            || !nodata_same
            || !same_f64(i.scale, i0.scale)
            || !same_f64(i.offset, i0.offset)
        {
            return Err(format!("{} differs from {} in layout", e.path, first.path));
        }
    }
    Ok(entries.windows(2).any(|w| w[0].time_max > w[1].time_min))
}

/// What [`merge`] wrote.
pub(crate) struct MergedFragment {
    /// The new fragment's catalog row.
    pub entry: FragmentEntry,
    /// Where it went (local files still to fsync, or uploaded).
    pub placed: Placed,
    /// Bytes written.
    pub bytes: u64,
    /// Batches copied as they were, and batches encoded again.
    pub copied: usize,
    pub encoded: usize,
}

/// Merges `entries` (see the module documentation) into a new fragment with `settings`'
/// codec and block size. `None` when they cannot be merged chunk by chunk (the caller leaves
/// them as they are).
pub(crate) fn merge(
    wh: &Warehouse,
    entries: &[&FragmentEntry],
    settings: &FragmentSettings,
) -> Result<Option<MergedFragment>> {
    let overlapping = match check_sources(entries) {
        Ok(o) if entries.len() >= 2 => o,
        _ => return Ok(None),
    };
    let sources: Vec<ChunkedFile> = entries
        .iter()
        .map(|e| open_whole(wh.storage(), e, false, Some(settings.compression)))
        .collect::<Result<_>>()?;
    let full = settings.chunk.observations as usize;
    let m0 = sources[0].meta();
    let (w, h) = (m0.width, m0.height);
    // Until the observations fill a block they stay in the large chunks of new fragments;
    // then they are cut into the warehouse's chunks, once.
    let fresh = settings.chunk.fresh().for_tile(w, h);
    let total: usize = entries.iter().map(|e| e.observations as usize).sum();
    let shape = if total < full && sources.iter().all(|s| s.meta().chunk == fresh) {
        fresh
    } else {
        settings.chunk.for_tile(w, h)
    };
    if sources.iter().any(|s| !fits_into(s.meta().chunk, shape)) {
        return Ok(None);
    }
    let copyable: Vec<bool> = sources.iter().map(|s| s.meta().chunk == shape).collect();
    let sizes: Vec<&[u32]> = sources.iter().map(|s| s.meta().blocks.as_slice()).collect();
    let (plan, order) = if overlapping {
        let observations: Vec<Vec<(i64, &str)>> = sources
            .iter()
            .map(|s| {
                s.observations()
                    .map(|(t, ids)| t.iter().copied().zip(ids.iter().flatten()).collect())
            })
            .collect::<Result<_>>()?;
        let (plan, place) = plan_interleaved(&observations, &sizes, full);
        (plan, Some(place))
    } else {
        (plan_blocks(&sizes, &copyable, full), None)
    };
    let window = sources
        .iter()
        .map(|s| s.meta().window)
        .reduce(|a, b| a.union(&b))
        .unwrap_or(m0.window);
    // The output's chunks: those of the sources' present chunks (in the output grid) that
    // meet the stored window.
    let mut chunks: BTreeSet<u32> = BTreeSet::new();
    for src in &sources {
        let m = src.meta();
        for &k in &m.chunks {
            let cw = m.chunk.window(k, w, h);
            if let Some(inside) = crate::store::fragment::read::intersect(&cw, &window) {
                chunks.extend(shape.touching(&inside, w, h));
            }
        }
    }
    let meta = FragmentMeta {
        window,
        chunk: shape,
        blocks: plan.iter().map(|b| b.rows(&sources) as u32).collect(),
        chunks: chunks.iter().copied().collect(),
        format_version: FRAGMENT_FORMAT_VERSION,
        ..m0.clone()
    };
    let first = entries[0];
    let at = new_fragment_location(wh, first.tile, &first.band, &first.product, first.time_min)?;
    let name = wh.storage().locate(&at.key);
    let (out, copied, encoded, written_bytes, checksum, index) = match &at.local {
        Some((path, _)) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(io_err(path))?;
            let (w, copied, encoded, bytes, sum, index) = write_merged(
                BufWriter::with_capacity(1 << 20, file),
                &meta,
                &sources,
                (&plan, order.as_deref()),
                settings,
                &name,
            )?;
            let file = w.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
            (Out::File(file), copied, encoded, bytes, sum, index)
        }
        None => {
            let (bytes, copied, encoded, len, sum, index) = write_merged(
                Vec::new(),
                &meta,
                &sources,
                (&plan, order.as_deref()),
                settings,
                &name,
            )?;
            wh.storage().put(&at.key, &bytes)?;
            (Out::Uploaded, copied, encoded, len, sum, index)
        }
    };
    let placed = match (out, at.local) {
        (Out::File(file), Some((_, dirs))) => Placed::Local { dirs, file },
        _ => Placed::Uploaded,
    };
    let valid_count: u64 = entries.iter().map(|e| e.valid_count).sum();
    let weighted: f64 = entries
        .iter()
        .filter_map(|e| e.valid_mean.map(|m| m * e.valid_count as f64))
        .sum();
    let entry = FragmentEntry {
        tile: first.tile,
        band: first.band.clone(),
        product: first.product.clone(),
        time_min: entries
            .iter()
            .map(|e| e.time_min)
            .min()
            .unwrap_or(first.time_min),
        time_max: entries
            .iter()
            .map(|e| e.time_max)
            .max()
            .unwrap_or(first.time_max),
        observations: entries.iter().map(|e| e.observations).sum(),
        footprint_lonlat: first.footprint_lonlat.clone(),
        bbox: first.bbox,
        resolution: first.resolution,
        path: at.key,
        bytes: written_bytes,
        checksum,
        dtype: first.dtype,
        width: first.width,
        height: first.height,
        valid_count,
        // A statistic one source does not know (infinite samples) is unknown for the merge.
        valid_min: known(entries, |e| e.valid_min).and_then(|v| v.reduce(f64::min)),
        valid_max: known(entries, |e| e.valid_max).and_then(|v| v.reduce(f64::max)),
        valid_mean: known(entries, |e| e.valid_mean)
            .and_then(|_| (valid_count > 0).then(|| weighted / valid_count as f64))
            .filter(|m| m.is_finite()),
        window,
        index,
    };
    Ok(Some(MergedFragment {
        entry,
        placed,
        bytes: written_bytes,
        copied,
        encoded,
    }))
}

enum Out {
    File(std::fs::File),
    Uploaded,
}

type Written<W> = (W, usize, usize, u64, String, crate::store::ChunkIndex);

/// Writes the merged file: per output chunk, its blocks copied or built. `order` gives, for
/// interleaved sources, each source observation's place in the output.
fn write_merged<W: Write>(
    out: W,
    meta: &FragmentMeta,
    sources: &[ChunkedFile],
    (plan, order): (&[OutBlock], Option<&[Vec<usize>]>),
    settings: &FragmentSettings,
    name: &std::path::Path,
) -> Result<Written<W>> {
    let corrupt = |reason: String| Error::CorruptFragment {
        path: name.to_path_buf(),
        reason,
    };
    let arrow_err = |source: arrow_schema::ArrowError| Error::Arrow {
        path: name.to_path_buf(),
        source,
    };
    let codec = settings.codec();
    // The merged dictionary: every scene id in output order (key `i` is observation `i`'s
    // scene). Sources that follow each other keep their order, so source `s`'s keys move by
    // `bases[s]` (copied batches are re-keyed so); `keys[s][j]` is the key of its observation
    // `j`.
    let mut ids: Vec<String> = Vec::new();
    let mut bases = Vec::with_capacity(sources.len());
    let mut keys: Vec<Vec<i32>> = Vec::with_capacity(sources.len());
    for (s, src) in sources.iter().enumerate() {
        bases.push(ids.len() as i32);
        let (_, names) = src.observations()?;
        keys.push(match order {
            Some(place) => place[s].iter().map(|&p| p as i32).collect(),
            None => (0..arrow_array::Array::len(names) as i32)
                .map(|j| bases[s] + j)
                .collect(),
        });
        ids.extend(names.iter().map(|n| n.unwrap_or_default().to_string()));
    }
    if order.is_some() {
        let mut placed = vec![String::new(); ids.len()];
        let flat = keys.iter().flatten();
        for (id, &k) in ids.into_iter().zip(flat) {
            placed[k as usize] = id;
        }
        ids = placed;
    }
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut writer = ChunkedWriter::new(out, meta.clone(), &id_refs, codec).map_err(arrow_err)?;
    let decoded = Decoded::default();
    let (mut copied, mut encoded) = (0, 0);
    let group = rayon::current_num_threads().max(1) * 2;
    for chunks in meta.chunks.chunks(group) {
        // Built blocks of a few chunks encoded on all cores; copies are taken as they are.
        let built: Vec<Vec<Option<EncodedBatch>>> = chunks
            .par_iter()
            .map(|&k| {
                plan.iter()
                    .map(|b| match b {
                        OutBlock::Copy { source, block } => {
                            match run_of(&sources[*source], k) {
                                Some(_) => Ok(None),
                                // The source has nothing there: invalid rows.
                                None => build(
                                    sources,
                                    &keys,
                                    &decoded,
                                    meta,
                                    k,
                                    &[(
                                        *source,
                                        *block,
                                        0..sources[*source].meta().blocks[*block] as usize,
                                    )],
                                    codec,
                                )
                                .map(Some),
                            }
                        }
                        OutBlock::Build(parts) => {
                            build(sources, &keys, &decoded, meta, k, parts, codec).map(Some)
                        }
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        for (&k, blocks) in chunks.iter().zip(built) {
            writer.begin_chunk(k);
            for (b, done) in plan.iter().zip(blocks) {
                match (b, done) {
                    (_, Some(batch)) => {
                        writer.append(&batch).map_err(arrow_err)?;
                        encoded += 1;
                    }
                    (OutBlock::Copy { source, block }, None) => {
                        let src = &sources[*source];
                        let r = run_of(src, k)
                            .ok_or_else(|| corrupt("a copied chunk is missing".into()))?;
                        let (blk, buffer) = src.block(r, *block)?;
                        if bases[*source] == 0 {
                            let bytes = &buffer.as_slice()[blk.offset..blk.end()];
                            writer.append_raw(bytes, blk.meta_len).map_err(arrow_err)?;
                        } else {
                            let moved =
                                ipc::rekey_batch(&buffer, blk, bases[*source]).map_err(|e| {
                                    Error::CorruptFragment {
                                        path: src.path().to_path_buf(),
                                        reason: e,
                                    }
                                })?;
                            writer.append(&moved).map_err(arrow_err)?;
                        }
                        copied += 1;
                    }
                    (OutBlock::Build(_), None) => {
                        return Err(corrupt("a built block is missing".into()))
                    }
                }
            }
            writer.end_chunk().map_err(corrupt)?;
        }
    }
    let (out, bytes, checksum, index) = writer.finish().map_err(corrupt)?;
    Ok((out, copied, encoded, bytes, checksum, index))
}

/// The run index of chunk `k` in `file`, when present.
fn run_of(file: &ChunkedFile, k: u32) -> Option<usize> {
    file.meta().chunks.binary_search(&k).ok()
}

/// True when chunks of `inner` tile chunks of `outer` exactly (same or a multiple per side).
fn fits_into(outer: ChunkShape, inner: ChunkShape) -> bool {
    outer.rows.is_multiple_of(inner.rows) && outer.cols.is_multiple_of(inner.cols)
}

/// The values of a statistic of the sources holding valid pixels, `None` when one of them
/// does not know it.
fn known(
    entries: &[&FragmentEntry],
    stat: impl Fn(&FragmentEntry) -> Option<f64>,
) -> Option<impl Iterator<Item = f64>> {
    let with_pixels = || entries.iter().copied().filter(|e| e.valid_count > 0);
    if with_pixels().any(|e| stat(e).is_none()) {
        return None;
    }
    let values: Vec<f64> = with_pixels().filter_map(stat).collect();
    Some(values.into_iter())
}

/// Where output chunk `k` (of shape `out` on a `w` x `h` tile) lies in `file`: its run (when
/// the file's chunk holding it is present) and the offset of its top-left pixel in that
/// chunk (rows, columns).
fn source_of(
    file: &ChunkedFile,
    out: ChunkShape,
    k: u32,
    w: u32,
    h: u32,
) -> Option<(usize, u32, u32)> {
    let src = file.meta().chunk;
    let cw = out.window(k, w, h);
    let ks = (cw.row / src.rows) * src.across(w) + cw.col / src.cols;
    let sw = src.window(ks, w, h);
    run_of(file, ks).map(|r| (r, cw.row - sw.row, cw.col - sw.col))
}

/// Source batches decoded once for a merge: a source whose chunks are larger than the
/// output's gives each of its batches to several output chunks.
#[derive(Default)]
struct Decoded(Mutex<HashMap<(usize, usize, usize), Arc<DecodedBatch>>>);

impl Decoded {
    /// Batch `block` of run `run` of source `s`, decoded once when `shared` (else decoded
    /// for this one use).
    fn get(
        &self,
        file: &ChunkedFile,
        s: usize,
        run: usize,
        block: usize,
        shared: bool,
    ) -> Result<Arc<DecodedBatch>> {
        if !shared {
            return Ok(Arc::new(file.decode(run, block)?));
        }
        let key = (s, run, block);
        if let Some(b) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(b.clone());
        }
        let b = Arc::new(file.decode(run, block)?);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, b.clone());
        Ok(b)
    }
}

/// Encodes output chunk `k`'s rows of `parts` (source, block, rows) as one batch, cutting it
/// out of each source's (larger or equal) chunk; source `s`'s observation `i` is key
/// `keys[s][i]` of the merged dictionary.
fn build(
    sources: &[ChunkedFile],
    keys_of: &[Vec<i32>],
    decoded: &Decoded,
    out: &FragmentMeta,
    k: u32,
    parts: &[(usize, usize, Range<usize>)],
    codec: Option<Codec>,
) -> Result<EncodedBatch> {
    let shape = out.chunk;
    let (w, h) = (out.width, out.height);
    let samples = shape.samples();
    let size = out.dtype.size();
    let rows: usize = parts.iter().map(|(_, _, r)| r.len()).sum();
    let mut times = Vec::with_capacity(rows);
    let mut keys: Vec<i32> = Vec::with_capacity(rows);
    let mut values: Vec<u8> = vec![0u8; rows * samples * size];
    let mut bits = BooleanBufferBuilder::new(rows * samples);
    let mut row = 0usize;
    for (s, b, r) in parts {
        let file = &sources[*s];
        let (t, _) = file.observations()?;
        let start = file.meta().blocks[..*b]
            .iter()
            .map(|&n| n as usize)
            .sum::<usize>();
        let src_shape = file.meta().chunk;
        let found = source_of(file, shape, k, w, h);
        let batch: Option<(Arc<DecodedBatch>, u32, u32)> = match found {
            Some((run, dr, dc)) => {
                Some((decoded.get(file, *s, run, *b, src_shape != shape)?, dr, dc))
            }
            None => None,
        };
        for i in r.clone() {
            times.push(t[start + i]);
            keys.push(keys_of[*s][start + i]);
            match &batch {
                Some((d, dr, dc)) => {
                    let src = d.values.as_slice();
                    for y in 0..shape.rows as usize {
                        let from = i * src_shape.samples()
                            + (*dr as usize + y) * src_shape.cols as usize
                            + *dc as usize;
                        let to = row * samples + y * shape.cols as usize;
                        let n = shape.cols as usize;
                        values[to * size..(to + n) * size]
                            .copy_from_slice(&src[from * size..(from + n) * size]);
                        match &d.validity {
                            Some(v) => {
                                let off = v.offset() + from;
                                bits.append_packed_range(off..off + n, v.values());
                            }
                            None => bits.append_n(n, true),
                        }
                    }
                }
                None => bits.append_n(samples, false),
            }
            row += 1;
        }
    }
    let bits = bits.finish();
    let nulls = bits.len() - bits.count_set_bits();
    let packed = (nulls > 0).then(|| bits.sliced());
    let columns = BatchColumns {
        times: &times,
        scene_keys: &keys,
        pixels: &[&values],
        pixels_per_row: samples,
        validity: packed.as_ref().map(|b| (b.as_slice(), nulls)),
    };
    ipc::encode_batch(&columns, codec).map_err(|source| Error::Arrow {
        path: sources[parts[0].0].path().to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_sources_are_interleaved_in_time() {
        // Source 0: times 1, 3, 5 in blocks [2, 1]; source 1: times 2, 3, 4 in one block.
        // At time 3, scene "a" (source 1) comes before "b" (source 0).
        let observations = [
            vec![(1, "x"), (3, "b"), (5, "y")],
            vec![(2, "z"), (3, "a"), (4, "w")],
        ];
        let (plan, place) = plan_interleaved(&observations, &[&[2, 1], &[3]], 4);
        assert_eq!(
            plan,
            vec![
                OutBlock::Build(vec![(0, 0, 0..1), (1, 0, 0..2), (0, 0, 1..2)]),
                OutBlock::Build(vec![(1, 0, 2..3), (0, 1, 0..1)]),
            ]
        );
        assert_eq!(place, vec![vec![0, 3, 5], vec![1, 2, 4]]);
    }

    #[test]
    fn full_blocks_are_copied_and_small_ones_gathered() {
        let plan = plan_blocks(&[&[1], &[1], &[1], &[1, 16, 3]], &[true; 4], 4);
        assert_eq!(
            plan,
            vec![
                OutBlock::Build(vec![(0, 0, 0..1), (1, 0, 0..1), (2, 0, 0..1), (3, 0, 0..1)]),
                OutBlock::Copy {
                    source: 3,
                    block: 1
                },
                OutBlock::Copy {
                    source: 3,
                    block: 2
                },
            ]
        );
        // A remainder that was never split stays as copies.
        let plan = plan_blocks(&[&[1], &[2]], &[true; 2], 4);
        assert_eq!(
            plan,
            vec![
                OutBlock::Copy {
                    source: 0,
                    block: 0
                },
                OutBlock::Copy {
                    source: 1,
                    block: 0
                }
            ]
        );
        // Blocks split across a full one.
        let plan = plan_blocks(&[&[3], &[3], &[3]], &[true; 3], 4);
        assert_eq!(plan.len(), 3);
        assert_eq!(plan[0], OutBlock::Build(vec![(0, 0, 0..3), (1, 0, 0..1)]));
        assert_eq!(plan[1], OutBlock::Build(vec![(1, 0, 1..3), (2, 0, 0..2)]));
        assert_eq!(plan[2], OutBlock::Build(vec![(2, 0, 2..3)]));
    }
}
