//! A fast ZSTD decoder for the frames [`super::zstd_encode`] writes: raw, RLE and
//! literals-only compressed blocks (Huffman or raw/RLE literals, no sequences), no
//! dictionary, no checksum. Any other frame is left to `ruzstd` (the general decoder), so
//! every valid ZSTD buffer still reads; this one only makes ours fast (table-driven Huffman
//! decoding, several times `ruzstd`'s speed). Hostile input is an error, never a panic or
//! an out-of-bounds read: every size is checked before use.

/// Longest Huffman code ZSTD allows.
const MAX_BITS: u32 = 11;

/// What [`decode`] made of a frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `out` holds the frame's content.
    Decoded,
    /// The frame uses something this decoder leaves to the general one.
    Unsupported,
}

/// Decodes one ZSTD frame (all of `frame`) into `out`, which must be exactly its content
/// size. Errors name what is wrong; [`Outcome::Unsupported`] means "use another decoder".
pub(crate) fn decode(frame: &[u8], out: &mut [u8]) -> Result<Outcome, String> {
    let get = |at: usize, n: usize| -> Result<&[u8], String> {
        frame
            .get(at..at + n)
            .ok_or_else(|| "ZSTD frame truncated".to_string())
    };
    if get(0, 4)? != 0xFD2F_B528u32.to_le_bytes() {
        return Ok(Outcome::Unsupported);
    }
    let descriptor = get(4, 1)?[0];
    let (fcs_flag, single, checksum, dict) = (
        descriptor >> 6,
        descriptor >> 5 & 1 == 1,
        descriptor >> 2 & 1 == 1,
        descriptor & 3,
    );
    if checksum || dict != 0 || descriptor & 0b1000 != 0 {
        return Ok(Outcome::Unsupported);
    }
    let mut at = 5 + usize::from(!single);
    let fcs_len = match (fcs_flag, single) {
        (0, true) => 1,
        (0, false) => 0,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    if fcs_len > 0 {
        let b = get(at, fcs_len)?;
        let mut v = [0u8; 8];
        v[..fcs_len].copy_from_slice(b);
        let size = u64::from_le_bytes(v) + if fcs_len == 2 { 256 } else { 0 };
        if size != out.len() as u64 {
            return Err(format!(
                "ZSTD frame holds {size} bytes, {} announced",
                out.len()
            ));
        }
        at += fcs_len;
    }
    let mut written = 0usize;
    let mut table: Option<Huffman> = None;
    loop {
        let h = get(at, 3)?;
        let h = u32::from(h[0]) | u32::from(h[1]) << 8 | u32::from(h[2]) << 16;
        let (last, kind, size) = (h & 1 == 1, h >> 1 & 3, (h >> 3) as usize);
        at += 3;
        let room = out.len() - written;
        match kind {
            0 => {
                let body = get(at, size)?;
                out.get_mut(written..written + size)
                    .ok_or("ZSTD frame holds more than announced")?
                    .copy_from_slice(body);
                at += size;
                written += size;
            }
            1 => {
                let byte = get(at, 1)?[0];
                out.get_mut(written..written + size)
                    .ok_or("ZSTD frame holds more than announced")?
                    .fill(byte);
                at += 1;
                written += size;
            }
            2 => {
                let body = get(at, size)?;
                match literals_block(body, &mut out[written..], room, &mut table)? {
                    Some(n) => written += n,
                    None => return Ok(Outcome::Unsupported),
                }
                at += size;
            }
            _ => return Err("reserved ZSTD block type".into()),
        }
        if last {
            break;
        }
    }
    if at != frame.len() {
        // More frames, or skippable ones: the general decoder handles those.
        return Ok(Outcome::Unsupported);
    }
    if written != out.len() {
        return Err(format!(
            "ZSTD frame holds {written} bytes, {} announced",
            out.len()
        ));
    }
    Ok(Outcome::Decoded)
}

/// Decodes a compressed block whose sequences section is empty; `None` when it has
/// sequences. Returns the bytes written.
fn literals_block(
    body: &[u8],
    out: &mut [u8],
    room: usize,
    table: &mut Option<Huffman>,
) -> Result<Option<usize>, String> {
    let short = || "ZSTD literals section truncated".to_string();
    let b0 = *body.first().ok_or_else(short)?;
    let (kind, format) = (b0 & 3, b0 >> 2 & 3);
    let byte = |i: usize| body.get(i).map(|&b| u64::from(b)).ok_or_else(short);
    // Literals header: sizes by type and size format (RFC 8878, 3.1.1.3.1.1).
    let (regen, compressed, streams, header) = if kind < 2 {
        match format {
            0 | 2 => ((b0 >> 3) as usize, 0, 0, 1),
            1 => (((b0 >> 4) as u64 | byte(1)? << 4) as usize, 0, 0, 2),
            _ => (
                ((b0 >> 4) as u64 | byte(1)? << 4 | byte(2)? << 12) as usize,
                0,
                0,
                3,
            ),
        }
    } else {
        let h = |n: usize| -> Result<u64, String> {
            (0..n).try_fold(0u64, |acc, i| Ok(acc | byte(i)? << (8 * i)))
        };
        match format {
            0 | 1 => {
                let v = h(3)?;
                let streams = if format == 0 { 1 } else { 4 };
                (
                    (v >> 4 & 0x3ff) as usize,
                    (v >> 14 & 0x3ff) as usize,
                    streams,
                    3,
                )
            }
            2 => {
                let v = h(4)?;
                (
                    (v >> 4 & 0x3fff) as usize,
                    (v >> 18 & 0x3fff) as usize,
                    4,
                    4,
                )
            }
            _ => {
                let v = h(5)?;
                (
                    (v >> 4 & 0x3ffff) as usize,
                    (v >> 22 & 0x3ffff) as usize,
                    4,
                    5,
                )
            }
        }
    };
    if regen > room || regen > 128 << 10 {
        return Err("ZSTD literals exceed the frame's announced size".into());
    }
    let out = &mut out[..regen];
    let rest = match kind {
        0 => {
            out.copy_from_slice(body.get(header..header + regen).ok_or_else(short)?);
            &body[header + regen..]
        }
        1 => {
            out.fill(*body.get(header).ok_or_else(short)?);
            &body[header + 1..]
        }
        _ => {
            let section = body.get(header..header + compressed).ok_or_else(short)?;
            let streams_at = if kind == 2 {
                let (t, used) = Huffman::read(section)?;
                *table = Some(t);
                used
            } else {
                0
            };
            let t = table
                .as_ref()
                .ok_or("ZSTD block reuses a Huffman table it never had")?;
            // Earlier bytes of `body` pad the streams' backward reads (see `BackBits`).
            let base = header + streams_at;
            t.decode_streams(body, base, header + compressed, streams, out)?;
            &body[header + compressed..]
        }
    };
    // The sequences section: exactly "no sequences".
    match rest {
        [0] => Ok(Some(regen)),
        [] => Err("ZSTD block lacks its sequences section".into()),
        _ => Ok(None),
    }
}

/// A Huffman decoding table: for every `max_bits`-bit prefix, the symbol (low byte) and
/// its code length (high byte). Sized for the longest codes so lookups need no bounds check.
struct Huffman {
    max_bits: u32,
    entries: Box<[u16; 1 << MAX_BITS]>,
}

impl Huffman {
    /// Reads a tree description; returns the table and the bytes it took.
    fn read(section: &[u8]) -> Result<(Huffman, usize), String> {
        let head = *section.first().ok_or("ZSTD Huffman description missing")? as usize;
        let (weights, used) = if head >= 128 {
            let n = head - 127;
            let bytes = section
                .get(1..1 + n.div_ceil(2))
                .ok_or("ZSTD Huffman weights truncated")?;
            let w: Vec<u8> = (0..n)
                .map(|i| {
                    let b = bytes[i / 2];
                    if i % 2 == 0 {
                        b >> 4
                    } else {
                        b & 15
                    }
                })
                .collect();
            (w, 1 + n.div_ceil(2))
        } else {
            let fse = section
                .get(1..1 + head)
                .ok_or("ZSTD Huffman weights truncated")?;
            (fse_weights(fse)?, 1 + head)
        };
        Ok((Huffman::from_weights(&weights)?, used))
    }

    fn from_weights(listed: &[u8]) -> Result<Huffman, String> {
        let bad = || "invalid ZSTD Huffman weights".to_string();
        if listed.len() > 255 || listed.iter().any(|&w| w > MAX_BITS as u8) {
            return Err(bad());
        }
        let total: u32 = listed
            .iter()
            .filter(|&&w| w > 0)
            .map(|&w| 1u32 << (w - 1))
            .sum();
        if total == 0 {
            return Err(bad());
        }
        let max_bits = 32 - total.leading_zeros();
        let rest = (1u32 << max_bits) - total;
        if max_bits > MAX_BITS || !rest.is_power_of_two() {
            return Err(bad());
        }
        let mut weights = listed.to_vec();
        weights.push((rest.trailing_zeros() + 1) as u8);
        let mut entries = Box::new([0u16; 1 << MAX_BITS]);
        let mut slot = 0usize;
        for w in 1..=max_bits as u8 {
            for (s, _) in weights.iter().enumerate().filter(|(_, &x)| x == w) {
                let n = 1usize << (w - 1);
                let len = (max_bits + 1 - u32::from(w)) as u16;
                entries[slot..slot + n].fill(s as u16 | len << 8);
                slot += n;
            }
        }
        Ok(Huffman { max_bits, entries })
    }

    /// Decodes `streams` (1 or 4) Huffman streams lying in `block[start..end]` into `out`.
    fn decode_streams(
        &self,
        block: &[u8],
        start: usize,
        end: usize,
        streams: usize,
        out: &mut [u8],
    ) -> Result<(), String> {
        if streams == 1 {
            return self.decode_stream(block, start, end, out);
        }
        let jump = block
            .get(start..start + 6)
            .ok_or("ZSTD jump table truncated")?;
        let size = |i: usize| usize::from(u16::from_le_bytes([jump[2 * i], jump[2 * i + 1]]));
        let (a, b, c) = (size(0), size(1), size(2));
        let s1 = start + 6;
        let (s2, s3) = (s1 + a, s1 + a + b);
        let s4 = s3 + c;
        if s4 > end {
            return Err("ZSTD jump table points past the literals".into());
        }
        let segment = out.len().div_ceil(4);
        if out.len() < 4 || segment * 3 > out.len() {
            return Err("ZSTD 4-stream literals too short".into());
        }
        let (o1, rest) = out.split_at_mut(segment);
        let (o2, rest) = rest.split_at_mut(segment);
        let (o3, o4) = rest.split_at_mut(segment);
        let mut bits = [
            BackBits::new(block, s1, s2)?,
            BackBits::new(block, s2, s3)?,
            BackBits::new(block, s3, s4)?,
            BackBits::new(block, s4, end)?,
        ];
        // The four streams interleaved, four symbols each between reloads, as far as the
        // shortest goes; then each alone.
        let common = o4.len() / 4 * 4;
        let quads = o1[..common]
            .chunks_exact_mut(4)
            .zip(o2[..common].chunks_exact_mut(4))
            .zip(o3[..common].chunks_exact_mut(4))
            .zip(o4[..common].chunks_exact_mut(4));
        for (((q1, q2), q3), q4) in quads {
            for k in 0..4 {
                q1[k] = self.symbol(&mut bits[0]);
                q2[k] = self.symbol(&mut bits[1]);
                q3[k] = self.symbol(&mut bits[2]);
                q4[k] = self.symbol(&mut bits[3]);
            }
            for b in &mut bits {
                b.reload()?;
            }
        }
        for (o, b) in [o1, o2, o3, o4].into_iter().zip(&mut bits) {
            self.decode_tail(&mut o[common..], b)?;
            b.finished()?;
        }
        Ok(())
    }

    #[inline(always)]
    fn symbol(&self, bits: &mut BackBits<'_>) -> u8 {
        let prefix = (bits.container << bits.consumed) >> (64 - self.max_bits);
        let e = self.entries[prefix as usize & ((1 << MAX_BITS) - 1)];
        bits.consumed += u32::from(e >> 8);
        e as u8
    }

    /// Decodes `out.len()` more symbols from `bits`.
    fn decode_tail(&self, out: &mut [u8], bits: &mut BackBits<'_>) -> Result<(), String> {
        let mut quads = out.chunks_exact_mut(4);
        for q in &mut quads {
            for o in q.iter_mut() {
                *o = self.symbol(bits);
            }
            bits.reload()?;
        }
        for o in quads.into_remainder() {
            *o = self.symbol(bits);
            bits.reload()?;
        }
        Ok(())
    }

    /// Decodes `out.len()` symbols from the stream `block[start..end]`, read backward.
    fn decode_stream(
        &self,
        block: &[u8],
        start: usize,
        end: usize,
        out: &mut [u8],
    ) -> Result<(), String> {
        let mut bits = BackBits::new(block, start, end)?;
        self.decode_tail(out, &mut bits)?;
        bits.finished()
    }
}

/// A bitstream read backward from its last byte (which holds the end marker), as ZSTD
/// writes them. The container holds the 64 bits ending at `pos`; `consumed` counts bits
/// taken from its top. Reads never go below byte 0 of `data`: bytes before the stream
/// (`start` >= 8 where it matters) only fill the container, and reading into them is caught
/// by [`BackBits::finished`].
struct BackBits<'a> {
    data: &'a [u8],
    start: usize,
    end: usize,
    pos: usize,
    container: u64,
    consumed: u32,
}

impl<'a> BackBits<'a> {
    fn new(data: &'a [u8], start: usize, end: usize) -> Result<Self, String> {
        let last = *data
            .get(start..end)
            .and_then(|s| s.last())
            .ok_or("empty ZSTD bitstream")?;
        if last == 0 {
            return Err("ZSTD bitstream lacks its end marker".into());
        }
        let mut b = BackBits {
            data,
            start,
            end,
            pos: end,
            container: 0,
            consumed: last.leading_zeros() + 1,
        };
        b.load();
        Ok(b)
    }

    fn load(&mut self) {
        let mut v = [0u8; 8];
        let from = self.pos.saturating_sub(8);
        v[8 - (self.pos - from)..].copy_from_slice(&self.data[from..self.pos]);
        self.container = u64::from_le_bytes(v);
    }

    /// Moves whole consumed bytes out of the container.
    #[inline(always)]
    fn reload(&mut self) -> Result<(), String> {
        let bytes = (self.consumed / 8) as usize;
        let back = bytes.min(self.pos - self.start);
        if back > 0 {
            self.pos -= back;
            self.consumed -= back as u32 * 8;
            if self.pos >= 8 {
                self.container = u64::from_le_bytes(
                    self.data[self.pos - 8..self.pos]
                        .try_into()
                        .unwrap_or([0; 8]),
                );
            } else {
                self.load();
            }
        }
        if self.consumed > 64 - MAX_BITS * 4 {
            // Only a stream read past its start gets here.
            return Err("ZSTD bitstream overrun".into());
        }
        Ok(())
    }

    /// Checks that exactly the stream's bits were read.
    fn finished(&self) -> Result<(), String> {
        let read = (self.end - self.pos) * 8 + self.consumed as usize;
        if read != (self.end - self.start) * 8 {
            return Err("ZSTD bitstream length does not match its symbols".into());
        }
        Ok(())
    }
}

/// Reads the FSE-compressed Huffman weights (RFC 8878, 4.2.1.2).
fn fse_weights(src: &[u8]) -> Result<Vec<u8>, String> {
    let (norm, log, used) = read_table(src)?;
    let table = fse_table(&norm, log)?;
    let stream = &src[used..];
    let last = *stream.last().ok_or("ZSTD weight stream missing")?;
    if last == 0 {
        return Err("ZSTD weight stream lacks its end marker".into());
    }
    // A plain bit reader: weights are few.
    let mut bits = RevBits {
        stream,
        left: (stream.len() * 8 - (last.leading_zeros() as usize + 1)) as isize,
    };
    let mut states = [bits.read(log) as usize, bits.read(log) as usize];
    let mut out = Vec::new();
    let mut k = 0;
    loop {
        if out.len() >= 255 {
            return Err("too many ZSTD Huffman weights".into());
        }
        let (symbol, n, base) = table[states[k]];
        out.push(symbol);
        states[k] = base + bits.read(u32::from(n)) as usize;
        if bits.left < 0 {
            // The stream is spent: the other state's symbol is the last one.
            out.push(table[states[1 - k]].0);
            break;
        }
        k = 1 - k;
    }
    Ok(out)
}

/// Bits read one by one backward from `left`; zeros past the start (`left` goes negative).
struct RevBits<'a> {
    stream: &'a [u8],
    left: isize,
}

impl RevBits<'_> {
    fn read(&mut self, n: u32) -> u32 {
        let mut v = 0u32;
        for _ in 0..n {
            self.left -= 1;
            let bit = if self.left >= 0 {
                let at = self.left as usize;
                (self.stream[at / 8] >> (at % 8)) & 1
            } else {
                0
            };
            v = v << 1 | u32::from(bit);
        }
        v
    }
}

/// Reads an FSE table description: normalized counts, accuracy log, bytes used.
fn read_table(src: &[u8]) -> Result<(Vec<i32>, u32, usize), String> {
    let mut pos = 0usize; // in bits
    let mut take = |n: u32| -> Result<u32, String> {
        let mut v = 0u32;
        for i in 0..n {
            let (byte, bit) = (pos / 8, pos % 8);
            let b = src.get(byte).ok_or("ZSTD FSE table truncated")?;
            v |= u32::from(b >> bit & 1) << i;
            pos += 1;
        }
        Ok(v)
    };
    let log = take(4)? + 5;
    if log > 6 {
        return Err(format!("ZSTD weight accuracy log {log} above 6"));
    }
    let size = 1i32 << log;
    let mut remaining = size + 1;
    let mut threshold = size;
    let mut nb_bits = log + 1;
    let mut norm = Vec::new();
    while remaining > 1 {
        if norm.len() > 12 {
            return Err("ZSTD FSE table has too many symbols".into());
        }
        let max = 2 * threshold - 1 - remaining;
        let low = take(nb_bits - 1)? as i32;
        let count = if low < max {
            low
        } else {
            let v = low | (take(1)? as i32) << (nb_bits - 1);
            if v >= threshold {
                v - max
            } else {
                v
            }
        } - 1;
        remaining -= count.abs();
        norm.push(count);
        if count == 0 {
            // Runs of zero probabilities.
            loop {
                let repeat = take(2)?;
                norm.extend(std::iter::repeat_n(0, repeat as usize));
                if repeat < 3 {
                    break;
                }
                if norm.len() > 13 {
                    return Err("ZSTD FSE table has too many symbols".into());
                }
            }
        }
        while remaining < threshold && threshold > 1 {
            nb_bits -= 1;
            threshold >>= 1;
        }
    }
    if remaining != 1 || norm.len() > 13 {
        return Err("ZSTD FSE table probabilities do not add up".into());
    }
    Ok((norm, log, pos.div_ceil(8)))
}

/// FSE decoding table: per state, (symbol, bits to read, base of the next state).
fn fse_table(norm: &[i32], log: u32) -> Result<Vec<(u8, u8, usize)>, String> {
    let size = 1usize << log;
    let mask = size - 1;
    let step = (size >> 1) + (size >> 3) + 3;
    let mut symbol = vec![0u8; size];
    let mut high = size - 1;
    for (s, &n) in norm.iter().enumerate() {
        if n == -1 {
            symbol[high] = s as u8;
            high = high.checked_sub(1).ok_or("ZSTD FSE table overfull")?;
        }
    }
    let mut pos = 0usize;
    for (s, &n) in norm.iter().enumerate() {
        for _ in 0..n.max(0) {
            symbol[pos] = s as u8;
            pos = (pos + step) & mask;
            while pos > high {
                pos = (pos + step) & mask;
            }
        }
    }
    if pos != 0 {
        return Err("ZSTD FSE table probabilities do not spread".into());
    }
    let mut next: Vec<u32> = norm
        .iter()
        .map(|&n| if n == -1 { 1 } else { n.max(0) as u32 })
        .collect();
    Ok(symbol
        .iter()
        .map(|&s| {
            let x = next[s as usize];
            next[s as usize] += 1;
            let bits = log - (31 - x.leading_zeros());
            (s, bits as u8, ((x << bits) as usize) - size)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(data: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        super::super::zstd_encode::compress(&[data], data.len(), &mut f);
        f
    }

    fn samples() -> Vec<Vec<u8>> {
        let mut x = 5u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let smooth: Vec<u8> = (0..150_000u32)
            .flat_map(|i| ((700 + (i / 50) % 2000 + (rnd() % 40) as u32) as u16).to_le_bytes())
            .collect();
        let noise: Vec<u8> = (0..40_000).map(|_| rnd() as u8).collect();
        let skewed: Vec<u8> = (0..90_000u32)
            .map(|i| (i.trailing_zeros().min(40) * 6 + i % 2) as u8)
            .collect();
        vec![
            smooth,
            noise,
            skewed,
            vec![3u8; 70_000],
            (0..5000).map(|i| (i % 2) as u8).collect(),
            vec![1, 2, 3],
            vec![],
        ]
    }

    #[test]
    fn decodes_what_the_encoder_writes() {
        for data in samples() {
            let frame = encode(&data);
            let mut out = vec![0u8; data.len()];
            assert_eq!(
                decode(&frame, &mut out),
                Ok(Outcome::Decoded),
                "{}",
                data.len()
            );
            assert_eq!(out, data);
        }
    }

    #[test]
    fn leaves_other_frames_to_the_general_decoder() {
        // ruzstd's own frames have sequences and a checksum.
        let data = samples().swap_remove(0);
        let frame = ruzstd::encoding::compress_to_vec(
            &data[..20_000],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut out = vec![0u8; 20_000];
        assert_eq!(decode(&frame, &mut out), Ok(Outcome::Unsupported));
        assert_eq!(
            decode(b"not a frame at all", &mut out),
            Ok(Outcome::Unsupported)
        );
    }

    #[test]
    fn damaged_frames_are_errors_or_other_bytes_never_panics() {
        let data = samples().swap_remove(0);
        let frame = encode(&data[..60_000]);
        let mut out = vec![0u8; 60_000];
        for cut in (0..frame.len()).step_by(97) {
            assert!(decode(&frame[..cut], &mut out).is_err() || cut < 4);
        }
        for i in (0..frame.len()).step_by(13) {
            let mut bad = frame.clone();
            bad[i] ^= 0x21;
            let _ = decode(&bad, &mut out);
        }
        // A wrong announced size.
        assert!(decode(&frame, &mut vec![0u8; 59_999]).is_err());
    }
}
