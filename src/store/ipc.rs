//! The Arrow IPC file layout of a fragment, written and read by the store itself.
//!
//! Encoding takes a batch's pixels as row slices of the observations' own buffers, so they
//! are never concatenated into an Arrow array first. With a codec, each buffer is compressed
//! on its own (see [`super::codec`]) before the message that lists the buffers' sizes is
//! built.
//!
//! The file is the standard IPC file format, as Arrow's `FileWriter` lays it out: magic,
//! schema message, record-batch messages (metadata then body, every buffer aligned to 64
//! bytes), end-of-stream marker, footer, footer length, magic. Batches are encoded apart from
//! writing ([`encode_batch`] is CPU only, [`IpcFileWriter`] only writes), so they can be
//! compressed in parallel, and a batch of another file can be copied as it is.
//!
//! Reading checks that structure against the file's size before touching a buffer, and
//! hands back the batch's buffers: slices of the file where they are stored as they are
//! (zero-copy), decompressed (to exactly the size the schema needs, 8-byte aligned) where
//! they are compressed.

use super::codec::Codec;
use arrow_buffer::Buffer;
use arrow_ipc::writer::{write_message, DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
use arrow_schema::{ArrowError, Schema};
use flatbuffers::FlatBufferBuilder;
use std::io::Write;

const MAGIC: &[u8; 6] = b"ARROW1";
const ALIGN: usize = 64;
const ZEROS: [u8; ALIGN] = [0; ALIGN];
const CONTINUATION: [u8; 4] = [0xff; 4];
/// Body buffers of a fragment batch: time (validity, values), scene_id (validity, offsets,
/// data), pixels (list validity), item (validity, values).
const BUFFERS: usize = 8;
/// Most bytes of scene ids one fragment may hold.
const MAX_SCENE_ID_BYTES: usize = 64 << 20;

/// The columns of one record batch of a fragment: a chunk's pixels for a run of
/// observations (already sorted by time).
pub(crate) struct BatchColumns<'a> {
    /// `time` values (microseconds since the epoch, UTC).
    pub times: &'a [i64],
    /// `scene_id` values.
    pub scene_ids: &'a [&'a str],
    /// The pixel values as little-endian bytes: these slices concatenated, in row order.
    pub pixels: &'a [&'a [u8]],
    /// Samples per row (the fixed-size list's size).
    pub pixels_per_row: usize,
    /// Validity of every pixel of every row (packed at offset 0), and how many are null.
    pub validity: Option<(&'a [u8], usize)>,
}

fn padding(len: usize) -> usize {
    len.next_multiple_of(ALIGN) - len
}

/// A record-batch message ready to be written: its metadata (continuation marker, length,
/// flatbuffer, padding) and its body (buffers, each padded to the alignment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EncodedBatch {
    /// Observations in the batch.
    pub rows: usize,
    /// Continuation marker, metadata length, flatbuffer message, padding.
    pub metadata: Vec<u8>,
    /// The body: every buffer, padded.
    pub body: Vec<u8>,
}

impl EncodedBatch {
    /// Bytes the message takes in the file.
    pub fn len(&self) -> usize {
        self.metadata.len() + self.body.len()
    }
}

/// Encodes one batch of `columns` (CPU only: compression, flatbuffers), each body buffer
/// compressed with `codec` when there is one.
pub(crate) fn encode_batch(
    columns: &BatchColumns<'_>,
    codec: Option<Codec>,
) -> Result<EncodedBatch, ArrowError> {
    let rows = columns.times.len();
    let mut offsets: Vec<i32> = Vec::with_capacity(rows + 1);
    offsets.push(0);
    let mut text_len = 0usize;
    for id in columns.scene_ids {
        text_len += id.len();
        offsets.push(
            i32::try_from(text_len)
                .map_err(|_| ArrowError::InvalidArgumentError("scene ids exceed 2 GiB".into()))?,
        );
    }
    let times: &[u8] = bytemuck::cast_slice(columns.times);
    let offset_bytes: &[u8] = bytemuck::cast_slice(&offsets);
    let text: Vec<&[u8]> = columns.scene_ids.iter().map(|s| s.as_bytes()).collect();
    let pixels = rows * columns.pixels_per_row;
    let (item_nulls, validity): (usize, Vec<&[u8]>) = match columns.validity {
        Some((bits, nulls)) => (nulls, vec![&bits[..pixels.div_ceil(8)]]),
        None => (0, vec![]),
    };
    // The body buffers in field order, each as the slices it is made of; absent validity
    // buffers are empty.
    let parts: [&[&[u8]]; BUFFERS] = [
        &[],
        &[times],
        &[],
        &[offset_bytes],
        &text,
        &[],
        &validity,
        columns.pixels,
    ];
    let lengths = parts.map(|p| p.iter().map(|s| s.len()).sum::<usize>());
    let compressed: Option<Vec<Vec<u8>>> = codec.map(|c| {
        parts
            .iter()
            .zip(lengths)
            .map(|(p, len)| c.compress(p, len))
            .collect()
    });
    let stored: [usize; BUFFERS] = match &compressed {
        Some(c) => std::array::from_fn(|i| c[i].len()),
        None => lengths,
    };
    let mut buffers = Vec::with_capacity(BUFFERS);
    let mut body_len = 0usize;
    for len in stored {
        buffers.push(arrow_ipc::Buffer::new(body_len as i64, len as i64));
        body_len += len + padding(len);
    }
    let mut body = Vec::with_capacity(body_len);
    for (i, len) in stored.into_iter().enumerate() {
        match &compressed {
            Some(c) => body.extend_from_slice(&c[i]),
            None => {
                for p in parts[i] {
                    body.extend_from_slice(p);
                }
            }
        }
        body.extend_from_slice(&ZEROS[..padding(len)]);
    }
    debug_assert_eq!(body.len(), body_len);
    let nodes = [
        arrow_ipc::FieldNode::new(rows as i64, 0),
        arrow_ipc::FieldNode::new(rows as i64, 0),
        arrow_ipc::FieldNode::new(rows as i64, 0),
        arrow_ipc::FieldNode::new(pixels as i64, item_nulls as i64),
    ];
    let mut fbb = FlatBufferBuilder::new();
    let fb_nodes = fbb.create_vector(&nodes);
    let fb_buffers = fbb.create_vector(&buffers);
    let fb_compression = codec.map(|c| {
        let mut b = arrow_ipc::BodyCompressionBuilder::new(&mut fbb);
        b.add_codec(c.ipc_type());
        b.add_method(arrow_ipc::BodyCompressionMethod::BUFFER);
        b.finish()
    });
    let batch = {
        let mut b = arrow_ipc::RecordBatchBuilder::new(&mut fbb);
        b.add_length(rows as i64);
        b.add_nodes(fb_nodes);
        b.add_buffers(fb_buffers);
        if let Some(c) = fb_compression {
            b.add_compression(c);
        }
        b.finish()
    };
    let message = {
        let mut m = arrow_ipc::MessageBuilder::new(&mut fbb);
        m.add_version(arrow_ipc::MetadataVersion::V5);
        m.add_header_type(arrow_ipc::MessageHeader::RecordBatch);
        m.add_header(batch.as_union_value());
        m.add_bodyLength(body_len as i64);
        m.finish()
    };
    fbb.finish(message, None);
    let fb = fbb.finished_data();
    // Continuation marker, metadata length (padded so the body starts aligned), metadata.
    let padded_meta = (8 + fb.len()).next_multiple_of(ALIGN) - 8;
    let mut metadata = Vec::with_capacity(8 + padded_meta);
    metadata.extend_from_slice(&CONTINUATION);
    metadata.extend_from_slice(&(padded_meta as i32).to_le_bytes());
    metadata.extend_from_slice(fb);
    metadata.resize(8 + padded_meta, 0);
    Ok(EncodedBatch {
        rows,
        metadata,
        body,
    })
}

/// Where one record batch lies in an IPC file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchBlock {
    /// Offset of its message (the continuation marker).
    pub offset: usize,
    /// Bytes of the message's metadata, prefix and padding included.
    pub meta_len: usize,
    /// Bytes of its body.
    pub body_len: usize,
}

impl BatchBlock {
    /// The offset just past the batch.
    pub fn end(&self) -> usize {
        self.offset + self.meta_len + self.body_len
    }

    /// The same block `by` bytes earlier (for a buffer holding part of the file).
    pub fn shifted_back(&self, by: usize) -> BatchBlock {
        BatchBlock {
            offset: self.offset - by,
            ..*self
        }
    }
}

/// Writes an IPC file batch by batch: magic and schema first, batches as they come, footer
/// and magic at the end. Counts bytes, so the footer's blocks (and callers) know where each
/// batch went.
pub(crate) struct IpcFileWriter<W: Write> {
    inner: W,
    written: usize,
    schema: Schema,
    blocks: Vec<BatchBlock>,
}

impl<W: Write> IpcFileWriter<W> {
    /// Starts the file: magic, padding, schema message.
    pub fn new(sink: W, schema: &Schema) -> Result<IpcFileWriter<W>, ArrowError> {
        let mut w = IpcFileWriter {
            inner: sink,
            written: 0,
            schema: schema.clone(),
            blocks: Vec::new(),
        };
        w.put(MAGIC)?;
        w.put(&ZEROS[..padding(MAGIC.len())])?;
        let options = IpcWriteOptions::try_new(ALIGN, false, arrow_ipc::MetadataVersion::V5)?;
        let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
            schema,
            &mut DictionaryTracker::new(false),
            &options,
        );
        let (schema_len, _) = write_message(&mut w.inner, encoded, &options)?;
        w.written += schema_len;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(bytes)?;
        self.written += bytes.len();
        Ok(())
    }

    /// Bytes written so far (the offset of the next batch).
    pub fn position(&self) -> usize {
        self.written
    }

    /// Appends an encoded batch; returns where it went.
    pub fn append(&mut self, batch: &EncodedBatch) -> Result<BatchBlock, ArrowError> {
        let block = BatchBlock {
            offset: self.written,
            meta_len: batch.metadata.len(),
            body_len: batch.body.len(),
        };
        self.put(&batch.metadata)?;
        self.put(&batch.body)?;
        self.blocks.push(block);
        Ok(block)
    }

    /// Appends a batch copied as it is from another file (`metadata` and `body` are its
    /// message bytes, as [`BatchBlock`] delimits them).
    pub fn append_raw(
        &mut self,
        message: &[u8],
        meta_len: usize,
    ) -> Result<BatchBlock, ArrowError> {
        let block = BatchBlock {
            offset: self.written,
            meta_len,
            body_len: message.len() - meta_len,
        };
        self.put(message)?;
        self.blocks.push(block);
        Ok(block)
    }

    /// Ends the file (end-of-stream marker, footer, magic); returns the sink and the offset
    /// of the footer.
    pub fn finish(mut self) -> Result<(W, usize), ArrowError> {
        self.put(&CONTINUATION)?;
        self.put(&0i32.to_le_bytes())?;
        let mut fbb = FlatBufferBuilder::new();
        let fb_schema = arrow_ipc::convert::schema_to_fb_offset(&mut fbb, &self.schema);
        let blocks: Vec<arrow_ipc::Block> = self
            .blocks
            .iter()
            .map(|b| arrow_ipc::Block::new(b.offset as i64, b.meta_len as i32, b.body_len as i64))
            .collect();
        let blocks = fbb.create_vector(&blocks);
        let dictionaries = fbb.create_vector::<arrow_ipc::Block>(&[]);
        let footer = {
            let mut f = arrow_ipc::FooterBuilder::new(&mut fbb);
            f.add_version(arrow_ipc::MetadataVersion::V5);
            f.add_schema(fb_schema);
            f.add_dictionaries(dictionaries);
            f.add_recordBatches(blocks);
            f.finish()
        };
        fbb.finish(footer, None);
        let footer = fbb.finished_data();
        let footer_offset = self.written;
        let footer = footer.to_vec();
        self.put(&footer)?;
        self.put(&(footer.len() as i32).to_le_bytes())?;
        self.put(MAGIC)?;
        self.inner.flush()?;
        Ok((self.inner, footer_offset))
    }
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Checks the file's magic and footer and returns its schema and its record batches'
/// blocks (each inside the file, before the footer, in file order).
pub(crate) fn read_footer(bytes: &[u8]) -> Result<(Schema, Vec<BatchBlock>), String> {
    let len = bytes.len();
    if len < 32 {
        return Err(format!("only {len} bytes: truncated"));
    }
    if &bytes[..6] != MAGIC || &bytes[len - 6..] != MAGIC {
        return Err("missing ARROW1 magic: not an Arrow IPC file or truncated".into());
    }
    let footer_len = le_u32(bytes, len - 10).ok_or("truncated footer")? as usize;
    if footer_len == 0 || footer_len > len - 18 {
        return Err(format!("footer length {footer_len} out of range"));
    }
    let footer_start = len - 10 - footer_len;
    let footer = arrow_ipc::root_as_footer(&bytes[footer_start..len - 10])
        .map_err(|e| format!("bad footer: {e}"))?;
    let schema = footer.schema().ok_or("footer has no schema")?;
    let schema =
        arrow_ipc::convert::try_fb_to_schema(schema).map_err(|e| format!("bad schema: {e}"))?;
    let list = footer
        .recordBatches()
        .ok_or("footer lists no record batch")?;
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err("unexpected dictionary batches".into());
    }
    let mut blocks = Vec::with_capacity(list.len());
    let mut previous_end = 8;
    for block in list.iter() {
        let block = BatchBlock {
            offset: usize::try_from(block.offset()).map_err(|_| "negative block offset")?,
            meta_len: usize::try_from(block.metaDataLength())
                .map_err(|_| "negative metadata length")?,
            body_len: usize::try_from(block.bodyLength()).map_err(|_| "negative body length")?,
        };
        block
            .offset
            .checked_add(block.meta_len)
            .and_then(|e| e.checked_add(block.body_len))
            .filter(|&e| e <= footer_start && block.meta_len >= 8 && block.offset >= previous_end)
            .ok_or("record batch blocks overlap or lie outside the file")?;
        if !(block.offset + block.meta_len).is_multiple_of(8) {
            return Err("record batch body is not 8-byte aligned".into());
        }
        previous_end = block.end();
        blocks.push(block);
    }
    Ok((schema, blocks))
}

/// The block of the record-batch message at `offset` of `bytes` (found without a footer:
/// from the message's own length prefix and body length), checked to lie inside `bytes`.
pub(crate) fn block_at(bytes: &[u8], offset: usize) -> Result<BatchBlock, String> {
    let prefix = bytes
        .get(offset..offset + 8)
        .ok_or_else(|| format!("record batch at {offset} is cut short"))?;
    if prefix[..4] != CONTINUATION {
        return Err(format!("no message at offset {offset}"));
    }
    let len = i32::from_le_bytes(prefix[4..8].try_into().unwrap_or_default());
    let meta = usize::try_from(len)
        .ok()
        .filter(|&l| l > 0)
        .ok_or_else(|| format!("bad message length {len} at offset {offset}"))?;
    let fb = bytes
        .get(offset + 8..offset + 8 + meta)
        .ok_or_else(|| format!("record batch at {offset} is cut short"))?;
    let message = arrow_ipc::root_as_message(fb).map_err(|e| format!("bad message: {e}"))?;
    let body_len = usize::try_from(message.bodyLength()).map_err(|_| "negative body length")?;
    let block = BatchBlock {
        offset,
        meta_len: 8 + meta,
        body_len,
    };
    if block
        .offset
        .checked_add(block.meta_len)
        .and_then(|e| e.checked_add(body_len))
        .is_none_or(|e| e > bytes.len())
    {
        return Err(format!("record batch at {offset} is cut short"));
    }
    if !(block.offset + block.meta_len).is_multiple_of(8) {
        return Err("record batch body is not 8-byte aligned".into());
    }
    Ok(block)
}

/// The shape a fragment's batch must have: samples per row and bytes per sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchShape {
    /// Samples of one observation (a chunk's pixels).
    pub pixels_per_row: usize,
    /// Bytes of one sample.
    pub sample_size: usize,
    /// Decode the pixel values and validity too (else only times and scene ids).
    pub pixels: bool,
}

/// A fragment batch's buffers, checked against its row count and shape.
#[derive(Debug)]
pub(crate) struct BatchBuffers {
    /// Observations.
    pub rows: usize,
    /// `rows` little-endian `i64` times (at least).
    pub times: Buffer,
    /// `rows + 1` little-endian `i32` scene id offsets (at least).
    pub offsets: Buffer,
    /// Scene id bytes.
    pub text: Buffer,
    /// Pixel validity bits (at least `rows * pixels_per_row`), `None` when none is null (or
    /// pixels were not asked for).
    pub validity: Option<Buffer>,
    /// Pixel values (at least `rows * pixels_per_row * sample_size` bytes; empty when
    /// pixels were not asked for).
    pub values: Buffer,
    /// The codec the body was compressed with.
    pub codec: Option<Codec>,
}

/// Reads the record batch at `block` of `file` (the IPC file or a part of it holding the
/// block, checked by [`read_footer`] or [`block_at`]): its message, field nodes and
/// buffers, decompressing compressed buffers. Stored buffers are zero-copy slices of `file`.
pub(crate) fn read_batch(
    file: &Buffer,
    block: BatchBlock,
    shape: BatchShape,
) -> Result<BatchBuffers, String> {
    let bytes = file.as_slice();
    let msg = &bytes[block.offset..block.offset + block.meta_len];
    let fb = if msg[..4] == CONTINUATION {
        &msg[8..]
    } else {
        &msg[4..]
    };
    let message = arrow_ipc::root_as_message(fb).map_err(|e| format!("bad message: {e}"))?;
    let rb = message
        .header_as_record_batch()
        .ok_or("message is not a record batch")?;
    let rows = usize::try_from(rb.length()).map_err(|_| "negative row count")?;
    let body_len = block.body_len;
    if rows > body_len.max(1) * 8 + 1 {
        return Err(format!("{rows} rows cannot fit in {body_len} bytes"));
    }
    let pixels = rows
        .checked_mul(shape.pixels_per_row)
        .ok_or("pixel count overflows")?;
    let value_bytes = pixels
        .checked_mul(shape.sample_size)
        .ok_or("pixel bytes overflow")?;
    // Field nodes: time, scene_id, pixels (one per row) and the pixel values.
    let nodes = rb.nodes().ok_or("record batch has no field nodes")?;
    let expected_lens = [rows, rows, rows, pixels];
    if nodes.len() != expected_lens.len()
        || nodes.iter().zip(expected_lens).any(|(n, want)| {
            usize::try_from(n.length()).ok() != Some(want)
                || n.null_count() < 0
                || n.null_count() > n.length()
        })
    {
        return Err("field node lengths do not match the row count".into());
    }
    if nodes.iter().take(3).any(|n| n.null_count() != 0) {
        return Err("null time, scene id or pixel list".into());
    }
    let item_nulls = nodes.get(3).null_count() > 0;
    let codec = match rb.compression() {
        None => None,
        Some(c) if c.method() != arrow_ipc::BodyCompressionMethod::BUFFER => {
            return Err(format!("unsupported compression method {:?}", c.method()));
        }
        Some(c) => Some(
            Codec::from_ipc(c.codec())
                .ok_or_else(|| format!("unsupported compression codec {:?}", c.codec()))?,
        ),
    };
    let list = rb.buffers().ok_or("record batch lists no buffers")?;
    if list.len() != BUFFERS {
        return Err(format!("{} buffers, expected {BUFFERS}", list.len()));
    }
    let body_start = block.offset + block.meta_len;
    // Buffer `i` holding at least `need` bytes (at most `max` once decompressed).
    let take = |i: usize, need: usize, max: usize| -> Result<Buffer, String> {
        let b = list.get(i);
        let (o, l) = (
            usize::try_from(b.offset()).map_err(|_| "negative buffer offset")?,
            usize::try_from(b.length()).map_err(|_| "negative buffer length")?,
        );
        if o.checked_add(l).is_none_or(|e| e > body_len) {
            return Err("a buffer lies outside the record batch body".into());
        }
        // The IPC format aligns every buffer to 8 bytes.
        if o % 8 != 0 {
            return Err(format!("buffer offset {o} is not 8-byte aligned"));
        }
        let stored = file.slice_with_length(body_start + o, l);
        let data = match codec {
            Some(codec) if l > 0 => match Codec::announced_len(&stored)? {
                None => stored.slice(8),
                Some(n) if n < need || n > max => {
                    return Err(format!(
                        "buffer {i} announces {n} bytes uncompressed, expected {need}"
                    ))
                }
                Some(n) => {
                    // Zeroed u64s: 8-byte aligned for typed views, and fresh pages cost
                    // nothing to zero.
                    let mut words = vec![0u64; n.div_ceil(8)];
                    let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..n];
                    codec
                        .decompress(&stored.as_slice()[8..], out)
                        .map_err(|e| format!("buffer {i}: {e}"))?;
                    Buffer::from_vec(words).slice_with_length(0, n)
                }
            },
            _ => stored,
        };
        if data.len() < need {
            return Err(format!(
                "buffer {i} holds {} bytes, expected {need}",
                data.len()
            ));
        }
        Ok(data)
    };
    let slack = |need: usize| need.saturating_add(ALIGN);
    let times_len = rows * 8;
    let offsets_len = (rows + 1) * 4;
    let validity_len = pixels.div_ceil(8);
    Ok(BatchBuffers {
        rows,
        times: take(1, times_len, slack(times_len))?,
        offsets: take(3, offsets_len, slack(offsets_len))?,
        text: take(4, 0, MAX_SCENE_ID_BYTES)?,
        validity: if item_nulls && shape.pixels {
            Some(take(6, validity_len, slack(validity_len))?)
        } else {
            None
        },
        values: if shape.pixels {
            take(7, value_bytes, slack(value_bytes))?
        } else {
            Buffer::from_vec(Vec::<u8>::new())
        },
        codec,
    })
}
