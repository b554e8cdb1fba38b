//! A fast ZSTD encoder for pixel buffers (RFC 8878), in pure Rust.
//!
//! Imagery has few long repeats but skewed byte statistics (the high bytes of 16-bit
//! reflectances take a few values), so what pays is entropy coding, not match finding:
//! every 32 KiB block is Huffman-coded literals and no sequences (a "compressed" block
//! with a 4-stream literals section and zero sequences), a run of one byte is an RLE block,
//! and a block Huffman coding would not shrink is stored raw. Each block has its own table
//! unless the previous one codes it as well (then it is reused, "treeless"). On the
//! corpus this comes within 1% of the order-0 entropy of the blocks and several times
//! faster than a general encoder; the frames are standard and any ZSTD decoder reads them.

/// Bytes per block: small enough for the tables to follow the statistics.
const BLOCK: usize = 32 << 10;
/// Longest Huffman code ZSTD allows.
const MAX_BITS: u32 = 11;
/// Literal sections of fewer bytes are not worth a table.
const MIN_HUFFMAN: usize = 1024;
/// FSE accuracy of the Huffman weights.
const WEIGHT_LOG: u32 = 6;

/// Bits written least-significant first, as ZSTD's bitstreams are.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    used: u32,
}

impl Bits {
    fn new(out: Vec<u8>) -> Self {
        Bits {
            out,
            acc: 0,
            used: 0,
        }
    }

    /// Appends the low `n` bits of `v` (`n` <= 32; `v` has no higher bits set).
    #[inline(always)]
    fn put(&mut self, v: u64, n: u32) {
        self.acc |= v << self.used;
        self.used += n;
        if self.used >= 32 {
            self.flush();
        }
    }

    #[inline(always)]
    fn flush(&mut self) {
        let whole = (self.used / 8) as usize;
        // All eight bytes, then keep the whole ones: a fixed-size copy is cheaper.
        let len = self.out.len();
        self.out.extend_from_slice(&self.acc.to_le_bytes());
        self.out.truncate(len + whole);
        self.acc = if whole == 8 {
            0
        } else {
            self.acc >> (whole * 8)
        };
        self.used -= whole as u32 * 8;
    }

    /// Ends a bitstream read backward: the marker bit, then the last partial byte.
    fn close(mut self) -> Vec<u8> {
        self.put(1, 1);
        self.finish()
    }

    /// Writes out the last partial byte (zero-padded).
    fn finish(mut self) -> Vec<u8> {
        self.flush();
        if self.used > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// Compresses the concatenation of `parts` (`len` bytes) into one ZSTD frame, appended
/// to `out`.
pub(crate) fn compress(parts: &[&[u8]], len: usize, out: &mut Vec<u8>) {
    // Frame header: magic; descriptor (8-byte content size, no checksum, not single
    // segment); window 128 KiB (no block refers back at all); content size.
    out.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    out.push(0b1100_0000);
    out.push((17 - 10) << 3);
    out.extend_from_slice(&(len as u64).to_le_bytes());
    let mut encoder = BlockEncoder::default();
    let mut block = Vec::with_capacity(BLOCK);
    let mut left = len;
    if len == 0 {
        // One empty raw block ends the frame.
        out.extend_from_slice(&[1, 0, 0]);
        return;
    }
    for part in parts {
        let mut part: &[u8] = part;
        while !part.is_empty() {
            let take = (BLOCK - block.len()).min(part.len());
            if block.is_empty() && take == BLOCK {
                // A whole block inside one part: no copy.
                left -= BLOCK;
                encoder.encode(&part[..BLOCK], left == 0, out);
            } else {
                block.extend_from_slice(&part[..take]);
                if block.len() == BLOCK || block.len() == left {
                    left -= block.len();
                    encoder.encode(&block, left == 0, out);
                    block.clear();
                }
            }
            part = &part[take..];
        }
    }
}

/// A Huffman code: length and value of each byte's code (length 0 = absent).
#[derive(Clone)]
struct Code {
    bits: [u8; 256],
    value: [u16; 256],
    /// The table description, as written after the literals header.
    description: Vec<u8>,
}

impl Code {
    /// Bytes the literals with these `counts` take in this code; `None` when a present byte
    /// has no code.
    fn cost(&self, counts: &[u32; 256]) -> Option<u64> {
        let mut bits = 0u64;
        let mut missing = false;
        for (&c, &b) in counts.iter().zip(&self.bits) {
            missing |= c > 0 && b == 0;
            bits += u64::from(c) * u64::from(b);
        }
        (!missing).then(|| bits.div_ceil(8))
    }
}

#[derive(Default)]
struct BlockEncoder {
    /// The previous block's code, which the next block may reuse.
    previous: Option<Code>,
}

impl BlockEncoder {
    /// Appends one block holding `data` (1..=BLOCK bytes).
    fn encode(&mut self, data: &[u8], last: bool, out: &mut Vec<u8>) {
        let header = |kind: u32, size: usize| {
            let h = last as u32 | kind << 1 | (size as u32) << 3;
            [h as u8, (h >> 8) as u8, (h >> 16) as u8]
        };
        let counts = histogram(data);
        if counts.iter().filter(|&&c| c > 0).count() == 1 {
            out.extend_from_slice(&header(1, data.len()));
            out.push(data[0]);
            return;
        }
        if data.len() >= MIN_HUFFMAN {
            let start = out.len();
            out.extend_from_slice(&header(2, 0));
            if let Some(code) = self.literals_block(data, &counts, out) {
                let size = out.len() - start - 3;
                if size < data.len() {
                    out[start..start + 3].copy_from_slice(&header(2, size));
                    // The decoder keeps the last table it read: reusable from now on.
                    self.previous = Some(code);
                    return;
                }
            }
            out.truncate(start);
        }
        out.extend_from_slice(&header(0, data.len()));
        out.extend_from_slice(data);
    }

    /// Appends a compressed block's content to `out`: Huffman literals (new or reused table)
    /// and an empty sequences section. Returns the table it used; `None`, having written
    /// nothing, when no table can be described.
    fn literals_block(&self, data: &[u8], counts: &[u32; 256], out: &mut Vec<u8>) -> Option<Code> {
        let fresh = build_code(counts);
        let fresh_cost = fresh
            .as_ref()
            .and_then(|c| c.cost(counts).map(|b| b + c.description.len() as u64));
        let reuse_cost = self.previous.as_ref().and_then(|c| c.cost(counts));
        let (code, reuse) = match (fresh, fresh_cost, reuse_cost) {
            (_, Some(f), Some(r)) if r <= f => (self.previous.clone()?, true),
            (Some(c), Some(_), _) => (c, false),
            (_, None, Some(_)) => (self.previous.clone()?, true),
            _ => return None,
        };
        // Literals section header (type 2 compressed, 3 reused table; 4 streams; sizes),
        // written once the size is known: 4 bytes when both sizes fit 14 bits, else 5.
        let regen = data.len() as u64;
        let short = data.len() < 16 << 10;
        let at = out.len();
        out.extend_from_slice(&[0; 5][..if short { 4 } else { 5 }]);
        if !reuse {
            out.extend_from_slice(&code.description);
        }
        encode_streams(data, &code, out);
        let mut size = (out.len() - at - if short { 4 } else { 5 }) as u64;
        let kind = if reuse { 3u64 } else { 2 };
        if short && size >= 16 << 10 {
            // Does not fit the short header: shift the section by one byte.
            out.insert(at + 4, 0);
            size = (out.len() - at - 5) as u64;
        }
        if short && size < 16 << 10 {
            let h = kind | 2 << 2 | regen << 4 | size << 18;
            out[at..at + 4].copy_from_slice(&h.to_le_bytes()[..4]);
        } else {
            let h = kind | 3 << 2 | regen << 4 | size << 22;
            out[at..at + 5].copy_from_slice(&h.to_le_bytes()[..5]);
        }
        // Sequences section: none.
        out.push(0);
        Some(code)
    }
}

/// Byte counts, with four interleaved tables so consecutive equal bytes do not stall.
fn histogram(data: &[u8]) -> [u32; 256] {
    let mut t = [[0u32; 256]; 4];
    let chunks = data.chunks_exact(4);
    for &b in chunks.remainder() {
        t[0][b as usize] += 1;
    }
    for c in chunks {
        t[0][c[0] as usize] += 1;
        t[1][c[1] as usize] += 1;
        t[2][c[2] as usize] += 1;
        t[3][c[3] as usize] += 1;
    }
    std::array::from_fn(|i| t[0][i] + t[1][i] + t[2][i] + t[3][i])
}

/// One backward Huffman bitstream being written into its region of a scratch buffer.
struct Stream {
    /// Bits not yet stored, least significant first, and how many.
    acc: u64,
    used: u32,
    /// Bytes stored so far.
    len: usize,
}

impl Stream {
    /// Stores the whole bytes of `acc` at `region[len..]`, keeping the rest (fewer than 8
    /// bits) pending. `region` must have 8 bytes of room past `len`.
    #[inline(always)]
    fn flush(&mut self, region: &mut [u8]) {
        // All eight bytes, then advance over the whole ones: one fixed-size store.
        region[self.len..self.len + 8].copy_from_slice(&self.acc.to_le_bytes());
        let whole = self.used >> 3;
        self.len += whole as usize;
        self.acc >>= whole * 8;
        self.used &= 7;
    }

    #[inline(always)]
    fn put(&mut self, packed: u32) {
        self.acc |= u64::from(packed >> 8) << self.used;
        self.used += packed & 0xff;
    }
}

/// Appends the four Huffman streams of `data` (at least 16 bytes) with their jump table to
/// `out`.
///
/// The decoder reads each stream backward, so each is written from its last byte. The four
/// are written in step, four bytes of each between stores, so the processor works on four
/// independent bit accumulators instead of waiting on one.
fn encode_streams(data: &[u8], code: &Code, out: &mut Vec<u8>) {
    let segment = data.len().div_ceil(4);
    // Value and length of each code in one word: one lookup per byte.
    let packed: [u32; 256] =
        std::array::from_fn(|s| u32::from(code.value[s]) << 8 | u32::from(code.bits[s]));
    let part = |k: usize| &data[(k * segment).min(data.len())..((k + 1) * segment).min(data.len())];
    let parts = [part(0), part(1), part(2), part(3)];
    // At most MAX_BITS per byte, the end marker, and the slack of an 8-byte store.
    let room = (segment * MAX_BITS as usize).div_ceil(8) + 16;
    let mut scratch = vec![0u8; 4 * room];
    let (r0, rest) = scratch.split_at_mut(room);
    let (r1, rest) = rest.split_at_mut(room);
    let (r2, r3) = rest.split_at_mut(room);
    let mut streams: [Stream; 4] = std::array::from_fn(|_| Stream {
        acc: 0,
        used: 0,
        len: 0,
    });
    // Quads every part has, from the ends (the last part may be shorter).
    let common = parts[3].len() / 4;
    let [s0, s1, s2, s3] = &mut streams;
    let quads = parts[0]
        .rchunks_exact(4)
        .zip(parts[1].rchunks_exact(4))
        .zip(parts[2].rchunks_exact(4))
        .zip(parts[3].rchunks_exact(4));
    for (((a, b), c), d) in quads {
        for i in (0..4).rev() {
            s0.put(packed[a[i] as usize]);
            s1.put(packed[b[i] as usize]);
            s2.put(packed[c[i] as usize]);
            s3.put(packed[d[i] as usize]);
        }
        // At most 4 x 11 bits were added to fewer than 8 pending bits.
        s0.flush(r0);
        s1.flush(r1);
        s2.flush(r2);
        s3.flush(r3);
    }
    let regions: [&mut [u8]; 4] = [r0, r1, r2, r3];
    let mut sizes = [0usize; 4];
    for (k, (stream, region)) in streams.iter_mut().zip(regions).enumerate() {
        let p = parts[k];
        for &b in p[..p.len() - 4 * common].iter().rev() {
            stream.put(packed[b as usize]);
            stream.flush(region);
        }
        // The end marker, then the last partial byte.
        stream.put(1 << 8 | 1);
        stream.flush(region);
        if stream.used > 0 {
            region[stream.len] = stream.acc as u8;
            stream.len += 1;
        }
        sizes[k] = stream.len;
    }
    out.reserve(6 + sizes.iter().sum::<usize>());
    for size in &sizes[..3] {
        out.extend_from_slice(&(*size as u16).to_le_bytes());
    }
    for (region, size) in scratch.chunks_exact(room).zip(sizes) {
        out.extend_from_slice(&region[..size]);
    }
}

/// A complete, length-limited Huffman code for `counts` (at least two symbols), with its
/// description; `None` when the description does not fit the format (then the block is
/// stored another way).
fn build_code(counts: &[u32; 256]) -> Option<Code> {
    let lengths = code_lengths(counts)?;
    let max = *lengths.iter().max()? as u32;
    // Canonical values: each symbol of weight w = max + 1 - length takes 2^(w-1) slots of a
    // 2^max table, lowest weights first, by symbol within a weight.
    let mut per_length = [0u32; MAX_BITS as usize + 1];
    for &l in &lengths {
        per_length[l as usize] += 1;
    }
    let mut next = [0u32; MAX_BITS as usize + 1];
    let mut slot = 0u32;
    for len in (1..=max).rev() {
        next[len as usize] = slot;
        slot += per_length[len as usize] << (max - len);
    }
    let mut value = [0u16; 256];
    for (s, &l) in lengths.iter().enumerate() {
        if l > 0 {
            let l = u32::from(l);
            value[s] = (next[l as usize] >> (max - l)) as u16;
            next[l as usize] += 1 << (max - l);
        }
    }
    debug_assert_eq!(slot, 1 << max);
    // Weights of every symbol below the last present one (the last is implied).
    let last = (0..256).rev().find(|&s| lengths[s] > 0)?;
    let weights: Vec<u8> = (0..last)
        .map(|s| {
            if lengths[s] == 0 {
                0
            } else {
                (max + 1 - lengths[s] as u32) as u8
            }
        })
        .collect();
    let description = describe_weights(&weights)?;
    Some(Code {
        bits: lengths,
        value,
        description,
    })
}

/// Huffman code lengths limited to [`MAX_BITS`], forming a complete code (the weights of a
/// ZSTD table imply the last one from that). `None` with fewer than two symbols.
fn code_lengths(counts: &[u32; 256]) -> Option<[u8; 256]> {
    // (count, symbol) packed in one key, rarest first.
    let mut symbols = [0u64; 256];
    let mut n = 0;
    for (s, &c) in counts.iter().enumerate() {
        if c > 0 {
            symbols[n] = u64::from(c) << 8 | s as u64;
            n += 1;
        }
    }
    if n < 2 {
        return None;
    }
    let symbols = &mut symbols[..n];
    symbols.sort_unstable();
    // Huffman's construction with two queues, the sorted leaves and the merged nodes in
    // the order they are made; an empty queue's head weighs u64::MAX. Nodes are numbered
    // after the leaves.
    let mut leaves = [u64::MAX; 257];
    for (w, &key) in leaves.iter_mut().zip(symbols.iter()) {
        *w = key >> 8;
    }
    let mut nodes = [u64::MAX; 256];
    let mut parent = [0u16; 511];
    let (mut leaf, mut node) = (0usize, 0usize);
    for made in 0..n - 1 {
        // Branch-free picks: which queue wins depends on the data.
        let mut pick = || {
            let from_leaf = leaves[leaf] <= nodes[node];
            let (index, weight) = if from_leaf {
                (leaf, leaves[leaf])
            } else {
                (n + node, nodes[node])
            };
            leaf += usize::from(from_leaf);
            node += usize::from(!from_leaf);
            (index, weight)
        };
        let (a, wa) = pick();
        let (b, wb) = pick();
        nodes[made] = wa + wb;
        parent[a] = (n + made) as u16;
        parent[b] = (n + made) as u16;
    }
    let mut depth = [0u32; 511];
    for i in (0..2 * n - 2).rev() {
        depth[i] = depth[parent[i] as usize] + 1;
    }
    let mut len: Vec<u32> = depth[..n].iter().map(|&d| d.min(MAX_BITS)).collect();
    // Kraft sum in units of 2^-MAX_BITS: lengthen the rarest short codes while over-full,
    // then shorten the most frequent long ones while there is room, until it is complete.
    let full = 1u64 << MAX_BITS;
    let mut kraft: u64 = len.iter().map(|&l| 1u64 << (MAX_BITS - l)).sum();
    while kraft > full {
        // Leaves are sorted by count, rarest first.
        let i = (0..n).find(|&i| len[i] < MAX_BITS)?;
        let l = (0..n)
            .filter(|&j| len[j] < MAX_BITS)
            .map(|j| len[j])
            .max()?;
        let i = (i..n).find(|&j| len[j] == l).unwrap_or(i);
        kraft -= 1 << (MAX_BITS - len[i] - 1);
        len[i] += 1;
    }
    while kraft < full {
        let longest = *len.iter().max()?;
        // The most frequent of the longest codes.
        let i = (0..n).rev().find(|&j| len[j] == longest)?;
        kraft += 1 << (MAX_BITS - len[i]);
        len[i] -= 1;
    }
    let mut lengths = [0u8; 256];
    for (k, &key) in symbols.iter().enumerate() {
        lengths[(key & 0xff) as usize] = len[k] as u8;
    }
    Some(lengths)
}

/// The Huffman tree description: weights as 4-bit values (up to 128 of them) or FSE
/// compressed, whichever is shorter; `None` when neither fits.
fn describe_weights(weights: &[u8]) -> Option<Vec<u8>> {
    let direct = (weights.len() <= 128).then(|| {
        let mut d = vec![127 + weights.len() as u8];
        for pair in weights.chunks(2) {
            d.push(pair[0] << 4 | pair.get(1).copied().unwrap_or(0));
        }
        d
    });
    let fse = fse_weights(weights).filter(|f| f.len() < 128).map(|f| {
        let mut d = vec![f.len() as u8];
        d.extend_from_slice(&f);
        d
    });
    match (direct, fse) {
        (Some(d), Some(f)) => Some(if f.len() < d.len() { f } else { d }),
        (d, f) => d.or(f),
    }
}

/// FSE-compressed Huffman weights: the table description, then the weights coded with two
/// interleaved states. `None` for fewer than three weights or a single distinct one (the
/// decoder could not tell where such a stream ends).
fn fse_weights(weights: &[u8]) -> Option<Vec<u8>> {
    let mut counts = [0u32; 13];
    for &w in weights {
        counts[w as usize] += 1;
    }
    if weights.len() < 3 || counts.iter().filter(|&&c| c > 0).count() < 2 {
        return None;
    }
    let norm = normalize(&counts, WEIGHT_LOG);
    let mut out = Bits::new(Vec::with_capacity(128));
    write_table(&norm, WEIGHT_LOG, &mut out);
    let table = Fse::new(&norm, WEIGHT_LOG);
    let mut bits = Bits::new(out.finish());
    // Decoded in order by state 1 (even positions) and state 2 (odd ones): encode from
    // the end, the last symbols of each state first.
    let mut rest = weights;
    let (mut s1, mut s2);
    if weights.len() % 2 == 1 {
        let (&a, r) = rest.split_last()?;
        let (&b, r) = r.split_last()?;
        let (&c, r) = r.split_last()?;
        s1 = table.start(a);
        s2 = table.start(b);
        table.encode(&mut s1, c, &mut bits);
        rest = r;
    } else {
        let (&a, r) = rest.split_last()?;
        let (&b, r) = r.split_last()?;
        s2 = table.start(a);
        s1 = table.start(b);
        rest = r;
    }
    for pair in rest.rchunks_exact(2) {
        table.encode(&mut s2, pair[1], &mut bits);
        table.encode(&mut s1, pair[0], &mut bits);
    }
    bits.put(u64::from(s2) & ((1 << WEIGHT_LOG) - 1), WEIGHT_LOG);
    bits.put(u64::from(s1) & ((1 << WEIGHT_LOG) - 1), WEIGHT_LOG);
    Some(bits.close())
}

/// Counts scaled to sum to `2^log`, every present symbol at least 1.
fn normalize(counts: &[u32], log: u32) -> Vec<i32> {
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let size = 1i64 << log;
    let mut norm: Vec<i32> = counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0
            } else {
                ((u64::from(c) * size as u64 + total / 2) / total).max(1) as i32
            }
        })
        .collect();
    let mut diff = size - norm.iter().map(|&n| i64::from(n)).sum::<i64>();
    while diff != 0 {
        // Adjust the largest, which the change costs least.
        let i = (0..norm.len()).max_by_key(|&i| norm[i]).unwrap_or(0);
        if diff > 0 {
            norm[i] += diff as i32;
            diff = 0;
        } else {
            let take = (-diff).min(i64::from(norm[i]) - 1) as i32;
            if take == 0 {
                break;
            }
            norm[i] -= take;
            diff += i64::from(take);
        }
    }
    norm
}

/// Writes an FSE table description (RFC 8878, 4.1.1).
fn write_table(norm: &[i32], log: u32, out: &mut Bits) {
    out.put(u64::from(log - 5), 4);
    let mut remaining = (1i32 << log) + 1;
    let mut threshold = 1i32 << log;
    let mut nb_bits = log + 1;
    let mut symbol = 0usize;
    let mut previous_zero = false;
    while remaining > 1 && symbol < norm.len() {
        if previous_zero {
            let mut start = symbol;
            while norm[symbol] == 0 {
                symbol += 1;
            }
            while symbol >= start + 24 {
                start += 24;
                out.put(0xFFFF, 16);
            }
            while symbol >= start + 3 {
                start += 3;
                out.put(3, 2);
            }
            out.put((symbol - start) as u64, 2);
        }
        let mut count = norm[symbol];
        symbol += 1;
        let max = 2 * threshold - 1 - remaining;
        remaining -= count.abs();
        count += 1;
        if count >= threshold {
            count += max;
        }
        out.put(count as u64, nb_bits - (count < max) as u32);
        previous_zero = count == 1;
        while remaining < threshold {
            nb_bits -= 1;
            threshold >>= 1;
        }
    }
}

/// An FSE encoding table (the encoder's view of the decoder's state table).
struct Fse {
    /// Next state by (symbol's first state index + sub-range).
    states: Vec<u16>,
    /// Per symbol: (delta of output bits, delta to its states).
    transforms: Vec<(i64, i64)>,
}

impl Fse {
    fn new(norm: &[i32], log: u32) -> Fse {
        let size = 1usize << log;
        let mask = size - 1;
        let step = (size >> 1) + (size >> 3) + 3;
        // Symbols of probability "less than one" take the last cells; the others are spread.
        let mut cell_symbol = vec![0u8; size];
        let mut high = size - 1;
        let mut cumul = vec![0usize; norm.len() + 1];
        for (s, &n) in norm.iter().enumerate() {
            if n == -1 {
                cumul[s + 1] = cumul[s] + 1;
                cell_symbol[high] = s as u8;
                high = high.saturating_sub(1);
            } else {
                cumul[s + 1] = cumul[s] + n.max(0) as usize;
            }
        }
        let mut pos = 0usize;
        for (s, &n) in norm.iter().enumerate() {
            for _ in 0..n.max(0) {
                cell_symbol[pos] = s as u8;
                pos = (pos + step) & mask;
                while pos > high {
                    pos = (pos + step) & mask;
                }
            }
        }
        let mut states = vec![0u16; size];
        let mut next = cumul.clone();
        for (u, &s) in cell_symbol.iter().enumerate() {
            states[next[s as usize]] = (size + u) as u16;
            next[s as usize] += 1;
        }
        let mut transforms = vec![(0i64, 0i64); norm.len()];
        let mut total = 0i64;
        for (s, &n) in norm.iter().enumerate() {
            transforms[s] = match n {
                0 => (((log as i64 + 1) << 16) - size as i64, 0),
                -1 | 1 => {
                    total += 1;
                    (((log as i64) << 16) - size as i64, total - 2)
                }
                n => {
                    let max_out = log as i64 - (31 - (n as u32 - 1).leading_zeros()) as i64;
                    let min_state_plus = (n as i64) << max_out;
                    let t = ((max_out << 16) - min_state_plus, total - n as i64);
                    total += n as i64;
                    t
                }
            };
        }
        Fse { states, transforms }
    }

    /// The state after encoding the first symbol (the last one decoded).
    fn start(&self, symbol: u8) -> u32 {
        let (delta_bits, delta_state) = self.transforms[symbol as usize];
        let out = ((delta_bits + (1 << 15)) >> 16) as u32;
        let value = ((i64::from(out) << 16) - delta_bits) >> out;
        u32::from(self.states[(value + delta_state) as usize])
    }

    fn encode(&self, state: &mut u32, symbol: u8, bits: &mut Bits) {
        let (delta_bits, delta_state) = self.transforms[symbol as usize];
        let out = ((i64::from(*state) + delta_bits) >> 16) as u32;
        bits.put(u64::from(*state) & ((1u64 << out) - 1), out);
        *state = u32::from(self.states[((i64::from(*state) >> out) + delta_state) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(frame: &[u8]) -> Vec<u8> {
        let mut input = frame;
        let mut out = Vec::new();
        ruzstd::decoding::StreamingDecoder::new(&mut input)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// 16-bit samples: a smooth field with noise, a nodata run, a constant patch.
    fn pixels(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .flat_map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = match i % 5000 {
                    0..=299 => 0,
                    300..=399 => 4242,
                    _ => 800 + ((i / 37) % 900) as u16 + (x % 64) as u16,
                };
                v.to_le_bytes()
            })
            .collect()
    }

    #[test]
    fn ruzstd_decodes_what_it_writes_across_block_and_part_edges() {
        for n in [0, 1, 3, 600, 700, 16_384, 16_385, 100_000, 300_001] {
            let data = pixels(n, n as u64 + 7);
            for split in [usize::MAX, 1000, 32 << 10, 3] {
                let parts: Vec<&[u8]> = if split == usize::MAX {
                    vec![&data]
                } else {
                    data.chunks(split.min(data.len().max(1)))
                        .take(2000)
                        .collect()
                };
                let len: usize = parts.iter().map(|p| p.len()).sum();
                let mut frame = Vec::new();
                compress(&parts, len, &mut frame);
                assert_eq!(
                    decode(&frame),
                    parts.concat(),
                    "{n} samples, parts of {split}"
                );
            }
        }
        let data = pixels(200_000, 1);
        let mut frame = Vec::new();
        compress(&[&data], data.len(), &mut frame);
        assert!(
            frame.len() < data.len() * 3 / 4,
            "{} of {}",
            frame.len(),
            data.len()
        );
    }

    #[test]
    fn special_blocks_decode() {
        // One byte repeated (RLE blocks), random bytes (raw blocks), two symbols, and a
        // distribution needing the longest codes.
        let runs = vec![9u8; 100_000];
        let mut x = 99u64;
        let noise: Vec<u8> = (0..70_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let two: Vec<u8> = (0..50_000).map(|i| (i % 3 == 0) as u8).collect();
        let skewed: Vec<u8> = (0..120_000u32)
            .map(|i| (i.trailing_zeros().min(40) * 6 + i % 2) as u8)
            .collect();
        for data in [runs, noise, two, skewed] {
            let mut frame = Vec::new();
            compress(&[&data], data.len(), &mut frame);
            assert_eq!(decode(&frame), data);
        }
    }

    #[test]
    fn codes_are_complete_and_limited() {
        // Fibonacci-like counts force lengths past the limit before limiting.
        let mut counts = [0u32; 256];
        let (mut a, mut b) = (1u32, 1u32);
        for c in counts.iter_mut().take(30) {
            *c = a;
            (a, b) = (b, a.saturating_add(b));
        }
        counts[200] = 5;
        let lengths = code_lengths(&counts).unwrap();
        let kraft: u64 = lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u64 << (MAX_BITS - l as u32))
            .sum();
        assert_eq!(kraft, 1 << MAX_BITS);
        assert!(lengths.iter().all(|&l| l as u32 <= MAX_BITS));
        assert!(
            lengths[29] <= lengths[0],
            "frequent symbols get short codes"
        );
        assert!(code_lengths(&[0; 256]).is_none());
        let norm = normalize(&[3, 0, 9, 1, 40], 6);
        assert_eq!(norm.iter().sum::<i32>(), 64);
        assert!(norm
            .iter()
            .zip([3, 0, 9, 1, 40])
            .all(|(&n, c)| (n > 0) == (c > 0)));
    }
}
