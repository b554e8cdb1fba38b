//! The Arrow IPC file layout of a fragment, written and read by the store itself.
//!
//! The file is the standard IPC file format, as Arrow's `FileWriter` lays it out: magic,
//! schema message, one dictionary batch (the fragment's scene ids, for the
//! dictionary-encoded `scene_id` column), record-batch messages (metadata then body, every
//! buffer aligned to 8 bytes), end-of-stream marker, footer, footer length, magic. Batches are
//! encoded apart from writing ([`encode_batch`] is CPU only, [`IpcFileWriter`] only writes),
//! so they can be compressed in parallel, and a batch of another file can be copied as it is.
//!
//! Encoding takes a batch's pixels as row slices of the observations' own buffers, so they
//! are never concatenated into an Arrow array first. With a codec, each buffer is compressed
//! on its own (see [`super::codec`]) before the message that lists the buffers' sizes is
//! built.
//!
//! Reading checks every structure against the bytes at hand before touching a buffer, and
//! hands back buffers: slices of the file where they are stored as they are (zero-copy),
//! decompressed (to exactly the size the schema needs, 8-byte aligned) where they are
//! compressed.

use super::codec::Codec;
use arrow_buffer::Buffer;
use arrow_ipc::convert::IpcSchemaEncoder;
use arrow_ipc::writer::{write_message, DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
use arrow_schema::{ArrowError, Schema};
use flatbuffers::{FlatBufferBuilder, WIPOffset};
use std::io::Write;

const MAGIC: &[u8; 6] = b"ARROW1";
/// Buffer alignment: the IPC format's minimum, so small batches carry little padding.
const ALIGN: usize = 8;
const ZEROS: [u8; ALIGN] = [0; ALIGN];
const CONTINUATION: [u8; 4] = [0xff; 4];
/// Body buffers of a fragment batch: time (validity, values), scene_id (validity, dictionary
/// keys), pixels (list validity), item (validity, values).
const BUFFERS: usize = 7;
/// Most bytes of scene ids one fragment may hold.
const MAX_SCENE_ID_BYTES: usize = 64 << 20;
/// Most scene ids one fragment's dictionary may hold.
const MAX_SCENES: usize = 1 << 24;

/// The columns of one record batch of a fragment: a chunk's pixels for a run of
/// observations (already sorted by time).
pub(crate) struct BatchColumns<'a> {
    /// `time` values (microseconds since the epoch, UTC).
    pub times: &'a [i64],
    /// `scene_id` values as keys into the fragment's scene dictionary.
    pub scene_keys: &'a [i32],
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

/// A message ready to be written: its metadata (continuation marker, length, flatbuffer,
/// padding) and its body (buffers, each padded to the alignment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EncodedBatch {
    /// Continuation marker, metadata length, flatbuffer message, padding.
    pub metadata: Vec<u8>,
    /// The body: every buffer, padded.
    pub body: Vec<u8>,
}

/// A message body: each buffer (made of the given slices) compressed with `codec` when there
/// is one, laid out with padding; returns the IPC buffer descriptors and the body.
fn encode_body(parts: &[&[&[u8]]], codec: Option<Codec>) -> (Vec<arrow_ipc::Buffer>, Vec<u8>) {
    let lengths: Vec<usize> = parts
        .iter()
        .map(|p| p.iter().map(|s| s.len()).sum())
        .collect();
    let compressed: Option<Vec<Vec<u8>>> = codec.map(|c| {
        parts
            .iter()
            .zip(&lengths)
            .map(|(p, &len)| c.compress(p, len))
            .collect()
    });
    let stored: Vec<usize> = match &compressed {
        Some(c) => c.iter().map(Vec::len).collect(),
        None => lengths,
    };
    let mut buffers = Vec::with_capacity(parts.len());
    let mut body_len = 0usize;
    for &len in &stored {
        buffers.push(arrow_ipc::Buffer::new(body_len as i64, len as i64));
        body_len += len + padding(len);
    }
    let mut body = Vec::with_capacity(body_len);
    for (i, &len) in stored.iter().enumerate() {
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
    (buffers, body)
}

/// The `RecordBatch` table of a message.
fn record_batch_fb<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    rows: usize,
    nodes: &[arrow_ipc::FieldNode],
    buffers: &[arrow_ipc::Buffer],
    codec: Option<Codec>,
) -> WIPOffset<arrow_ipc::RecordBatch<'a>> {
    let fb_nodes = fbb.create_vector(nodes);
    let fb_buffers = fbb.create_vector(buffers);
    let fb_compression = codec.map(|c| {
        let mut b = arrow_ipc::BodyCompressionBuilder::new(fbb);
        b.add_codec(c.ipc_type());
        b.add_method(arrow_ipc::BodyCompressionMethod::BUFFER);
        b.finish()
    });
    let mut b = arrow_ipc::RecordBatchBuilder::new(fbb);
    b.add_length(rows as i64);
    b.add_nodes(fb_nodes);
    b.add_buffers(fb_buffers);
    if let Some(c) = fb_compression {
        b.add_compression(c);
    }
    b.finish()
}

/// A framed `RecordBatch` message with its body.
fn record_batch_message(
    rows: usize,
    nodes: &[arrow_ipc::FieldNode],
    buffers: &[arrow_ipc::Buffer],
    codec: Option<Codec>,
    body: Vec<u8>,
) -> EncodedBatch {
    let mut fbb = FlatBufferBuilder::new();
    let batch = record_batch_fb(&mut fbb, rows, nodes, buffers, codec);
    let message = {
        let mut m = arrow_ipc::MessageBuilder::new(&mut fbb);
        m.add_version(arrow_ipc::MetadataVersion::V5);
        m.add_header_type(arrow_ipc::MessageHeader::RecordBatch);
        m.add_header(batch.as_union_value());
        m.add_bodyLength(body.len() as i64);
        m.finish()
    };
    fbb.finish(message, None);
    EncodedBatch {
        metadata: framed(fbb),
        body,
    }
}

/// The message's metadata bytes: continuation marker, length (padded so the body starts
/// aligned), flatbuffer, padding.
fn framed(fbb: FlatBufferBuilder<'_>) -> Vec<u8> {
    let fb = fbb.finished_data();
    let padded = (8 + fb.len()).next_multiple_of(ALIGN) - 8;
    let mut metadata = Vec::with_capacity(8 + padded);
    metadata.extend_from_slice(&CONTINUATION);
    metadata.extend_from_slice(&(padded as i32).to_le_bytes());
    metadata.extend_from_slice(fb);
    metadata.resize(8 + padded, 0);
    metadata
}

/// Encodes one batch of `columns` (CPU only: compression, flatbuffers), each body buffer
/// compressed with `codec` when there is one.
pub(crate) fn encode_batch(
    columns: &BatchColumns<'_>,
    codec: Option<Codec>,
) -> Result<EncodedBatch, ArrowError> {
    let rows = columns.times.len();
    if columns.scene_keys.len() != rows {
        return Err(ArrowError::InvalidArgumentError(
            "one scene key per row".into(),
        ));
    }
    let times: &[u8] = bytemuck::cast_slice(columns.times);
    let keys: &[u8] = bytemuck::cast_slice(columns.scene_keys);
    let pixels = rows * columns.pixels_per_row;
    let (item_nulls, validity): (usize, Vec<&[u8]>) = match columns.validity {
        Some((bits, nulls)) => (nulls, vec![&bits[..pixels.div_ceil(8)]]),
        None => (0, vec![]),
    };
    // The body buffers in field order, each as the slices it is made of; absent validity
    // buffers are empty.
    let parts: [&[&[u8]]; BUFFERS] = [&[], &[times], &[], &[keys], &[], &validity, columns.pixels];
    let (buffers, body) = encode_body(&parts, codec);
    let nodes = [
        arrow_ipc::FieldNode::new(rows as i64, 0),
        arrow_ipc::FieldNode::new(rows as i64, 0),
        arrow_ipc::FieldNode::new(rows as i64, 0),
        arrow_ipc::FieldNode::new(pixels as i64, item_nulls as i64),
    ];
    Ok(record_batch_message(rows, &nodes, &buffers, codec, body))
}

/// Encodes the dictionary batch (id 0) of the `scene_id` column: the fragment's scene ids.
fn encode_dictionary(ids: &[&str], codec: Option<Codec>) -> Result<EncodedBatch, ArrowError> {
    let mut offsets: Vec<i32> = Vec::with_capacity(ids.len() + 1);
    offsets.push(0);
    let mut text_len = 0usize;
    for id in ids {
        text_len += id.len();
        offsets.push(
            i32::try_from(text_len)
                .map_err(|_| ArrowError::InvalidArgumentError("scene ids exceed 2 GiB".into()))?,
        );
    }
    let offset_bytes: &[u8] = bytemuck::cast_slice(&offsets);
    let text: Vec<&[u8]> = ids.iter().map(|s| s.as_bytes()).collect();
    let parts: [&[&[u8]]; 3] = [&[], &[offset_bytes], &text];
    let (buffers, body) = encode_body(&parts, codec);
    let nodes = [arrow_ipc::FieldNode::new(ids.len() as i64, 0)];
    let mut fbb = FlatBufferBuilder::new();
    let data = record_batch_fb(&mut fbb, ids.len(), &nodes, &buffers, codec);
    let dictionary = {
        let mut d = arrow_ipc::DictionaryBatchBuilder::new(&mut fbb);
        d.add_id(0);
        d.add_data(data);
        d.add_isDelta(false);
        d.finish()
    };
    let message = {
        let mut m = arrow_ipc::MessageBuilder::new(&mut fbb);
        m.add_version(arrow_ipc::MetadataVersion::V5);
        m.add_header_type(arrow_ipc::MessageHeader::DictionaryBatch);
        m.add_header(dictionary.as_union_value());
        m.add_bodyLength(body.len() as i64);
        m.finish()
    };
    fbb.finish(message, None);
    Ok(EncodedBatch {
        metadata: framed(fbb),
        body,
    })
}

/// Where one message (a record batch or the dictionary) lies in an IPC file.
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
    /// The offset just past the message.
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

/// Writes an IPC file batch by batch: magic, schema and the scene dictionary first, batches
/// as they come, footer and magic at the end. Counts bytes, so the footer's blocks (and
/// callers) know where each batch went.
pub(crate) struct IpcFileWriter<W: Write> {
    inner: W,
    written: usize,
    schema: Schema,
    dictionary: BatchBlock,
    blocks: Vec<BatchBlock>,
}

impl<W: Write> IpcFileWriter<W> {
    /// Starts the file: magic, padding, schema message, then the dictionary of `scene_ids`.
    pub fn new(
        sink: W,
        schema: &Schema,
        scene_ids: &[&str],
        codec: Option<Codec>,
    ) -> Result<IpcFileWriter<W>, ArrowError> {
        let mut w = IpcFileWriter {
            inner: sink,
            written: 0,
            schema: schema.clone(),
            dictionary: BatchBlock {
                offset: 0,
                meta_len: 0,
                body_len: 0,
            },
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
        let dictionary = encode_dictionary(scene_ids, codec)?;
        w.dictionary = BatchBlock {
            offset: w.written,
            meta_len: dictionary.metadata.len(),
            body_len: dictionary.body.len(),
        };
        w.put(&dictionary.metadata)?;
        w.put(&dictionary.body)?;
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

    /// Where the dictionary batch went.
    pub fn dictionary(&self) -> BatchBlock {
        self.dictionary
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

    /// Appends a batch copied as it is from another file (its message bytes, the first
    /// `meta_len` of them its metadata).
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
        let mut tracker = DictionaryTracker::new(false);
        let fb_schema = IpcSchemaEncoder::new()
            .with_dictionary_tracker(&mut tracker)
            .schema_to_fb_offset(&mut fbb, &self.schema);
        let block = |b: &BatchBlock| {
            arrow_ipc::Block::new(b.offset as i64, b.meta_len as i32, b.body_len as i64)
        };
        let blocks: Vec<arrow_ipc::Block> = self.blocks.iter().map(block).collect();
        let blocks = fbb.create_vector(&blocks);
        let dictionaries = fbb.create_vector(&[block(&self.dictionary)]);
        let footer = {
            let mut f = arrow_ipc::FooterBuilder::new(&mut fbb);
            f.add_version(arrow_ipc::MetadataVersion::V5);
            f.add_schema(fb_schema);
            f.add_dictionaries(dictionaries);
            f.add_recordBatches(blocks);
            f.finish()
        };
        fbb.finish(footer, None);
        let footer_offset = self.written;
        let footer = fbb.finished_data().to_vec();
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

/// A file's footer: schema, the dictionary block and the record batches' blocks.
pub(crate) struct Footer {
    pub schema: Schema,
    /// The dictionary batch, when there is exactly one.
    pub dictionary: Option<BatchBlock>,
    pub blocks: Vec<BatchBlock>,
}

/// Converts and checks a footer block against the footer's start.
fn checked_block(block: &arrow_ipc::Block, footer_start: usize) -> Result<BatchBlock, String> {
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
        .filter(|&e| e <= footer_start && block.meta_len >= 8 && block.offset >= 8)
        .ok_or("a block lies outside the file")?;
    if !(block.offset + block.meta_len).is_multiple_of(8) {
        return Err("a message body is not 8-byte aligned".into());
    }
    Ok(block)
}

/// Checks the file's magic and footer and returns its schema, dictionary block and record
/// batches' blocks (each inside the file, before the footer, in file order, not
/// overlapping).
pub(crate) fn read_footer(bytes: &[u8]) -> Result<Footer, String> {
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
    let dictionary = match footer.dictionaries() {
        Some(d) if d.len() == 1 => Some(checked_block(d.get(0), footer_start)?),
        Some(d) if d.len() > 1 => {
            return Err(format!("{} dictionary batches, expected 1", d.len()))
        }
        _ => None,
    };
    let list = footer
        .recordBatches()
        .ok_or("footer lists no record batch")?;
    let mut blocks = Vec::with_capacity(list.len());
    let mut previous_end = dictionary.map_or(8, |d| d.end());
    for block in list.iter() {
        let block = checked_block(block, footer_start)?;
        if block.offset < previous_end {
            return Err("record batch blocks overlap".into());
        }
        previous_end = block.end();
        blocks.push(block);
    }
    Ok(Footer {
        schema,
        dictionary,
        blocks,
    })
}

/// The block of the message at `offset` of `bytes` (found without a footer: from the
/// message's own length prefix and body length), checked to lie inside `bytes`.
pub(crate) fn block_at(bytes: &[u8], offset: usize) -> Result<BatchBlock, String> {
    let prefix = bytes
        .get(offset..offset + 8)
        .ok_or_else(|| format!("message at {offset} is cut short"))?;
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
        .ok_or_else(|| format!("message at {offset} is cut short"))?;
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
        return Err(format!("message at {offset} is cut short"));
    }
    if !(block.offset + block.meta_len).is_multiple_of(8) {
        return Err("a message body is not 8-byte aligned".into());
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
    /// Decode the pixel values and validity too (else only times and scene keys).
    pub pixels: bool,
}

/// A fragment batch's buffers, checked against its row count and shape.
#[derive(Debug)]
pub(crate) struct BatchBuffers {
    /// Observations.
    pub rows: usize,
    /// `rows` little-endian `i64` times (at least).
    pub times: Buffer,
    /// `rows` little-endian `i32` scene keys (at least).
    pub keys: Buffer,
    /// Pixel validity bits (at least `rows * pixels_per_row`), `None` when none is null (or
    /// pixels were not asked for).
    pub validity: Option<Buffer>,
    /// Pixel values (at least `rows * pixels_per_row * sample_size` bytes; empty when
    /// pixels were not asked for).
    pub values: Buffer,
    /// The codec the body was compressed with.
    pub codec: Option<Codec>,
}

/// The message at `block` of `file`, its header checked to be `kind`.
fn message_at<'a>(file: &'a Buffer, block: BatchBlock) -> Result<arrow_ipc::Message<'a>, String> {
    let bytes = file.as_slice();
    let msg = bytes
        .get(block.offset..block.offset + block.meta_len)
        .ok_or("a message lies outside the bytes read")?;
    let fb = if msg[..4] == CONTINUATION {
        &msg[8..]
    } else {
        &msg[4..]
    };
    arrow_ipc::root_as_message(fb).map_err(|e| format!("bad message: {e}"))
}

/// The codec a batch's body was compressed with.
fn codec_of(rb: &arrow_ipc::RecordBatch<'_>) -> Result<Option<Codec>, String> {
    match rb.compression() {
        None => Ok(None),
        Some(c) if c.method() != arrow_ipc::BodyCompressionMethod::BUFFER => {
            Err(format!("unsupported compression method {:?}", c.method()))
        }
        Some(c) => Codec::from_ipc(c.codec())
            .map(Some)
            .ok_or_else(|| format!("unsupported compression codec {:?}", c.codec())),
    }
}

/// Reads the buffers of a batch whose body starts at `body_start` of `file` and is
/// `body_len` long: buffer `i` must hold at least `need` bytes, at most `max` once
/// decompressed.
struct Body<'a> {
    file: &'a Buffer,
    body_start: usize,
    body_len: usize,
    list: flatbuffers::Vector<'a, arrow_ipc::Buffer>,
    codec: Option<Codec>,
}

impl Body<'_> {
    fn take(&self, i: usize, need: usize, max: usize) -> Result<Buffer, String> {
        let b = self.list.get(i);
        let (o, l) = (
            usize::try_from(b.offset()).map_err(|_| "negative buffer offset")?,
            usize::try_from(b.length()).map_err(|_| "negative buffer length")?,
        );
        if o.checked_add(l).is_none_or(|e| e > self.body_len) {
            return Err("a buffer lies outside the message body".into());
        }
        // The IPC format aligns every buffer to 8 bytes.
        if o % 8 != 0 {
            return Err(format!("buffer offset {o} is not 8-byte aligned"));
        }
        let stored = self.file.slice_with_length(self.body_start + o, l);
        let data = match self.codec {
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
    }
}

fn slack(need: usize) -> usize {
    need.saturating_add(64)
}

/// Reads the record batch at `block` of `file` (the IPC file or a part of it holding the
/// block, checked by [`read_footer`] or [`block_at`]): its message, field nodes and
/// buffers, decompressing compressed buffers. Stored buffers are zero-copy slices of `file`.
pub(crate) fn read_batch(
    file: &Buffer,
    block: BatchBlock,
    shape: BatchShape,
) -> Result<BatchBuffers, String> {
    let message = message_at(file, block)?;
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
    let list = rb.buffers().ok_or("record batch lists no buffers")?;
    if list.len() != BUFFERS {
        return Err(format!("{} buffers, expected {BUFFERS}", list.len()));
    }
    let body = Body {
        file,
        body_start: block.offset + block.meta_len,
        body_len,
        list,
        codec: codec_of(&rb)?,
    };
    let (times_len, keys_len, validity_len) = (rows * 8, rows * 4, pixels.div_ceil(8));
    Ok(BatchBuffers {
        rows,
        times: body.take(1, times_len, slack(times_len))?,
        keys: body.take(3, keys_len, slack(keys_len))?,
        validity: if item_nulls && shape.pixels {
            Some(body.take(5, validity_len, slack(validity_len))?)
        } else {
            None
        },
        values: if shape.pixels {
            body.take(6, value_bytes, slack(value_bytes))?
        } else {
            Buffer::from_vec(Vec::<u8>::new())
        },
        codec: body.codec,
    })
}

/// Reads the scene dictionary at `block` of `file`: its ids' offsets and bytes.
pub(crate) fn read_dictionary(
    file: &Buffer,
    block: BatchBlock,
) -> Result<(Vec<i32>, Buffer), String> {
    let message = message_at(file, block)?;
    let d = message
        .header_as_dictionary_batch()
        .ok_or("message is not a dictionary batch")?;
    if d.id() != 0 || d.isDelta() {
        return Err("unexpected dictionary id or delta".into());
    }
    let rb = d.data().ok_or("dictionary batch has no data")?;
    let rows = usize::try_from(rb.length()).map_err(|_| "negative row count")?;
    if rows > MAX_SCENES || rows > block.body_len.max(1) {
        return Err(format!("{rows} scene ids cannot fit in the dictionary"));
    }
    let nodes = rb.nodes().ok_or("dictionary has no field nodes")?;
    if nodes.len() != 1 || nodes.get(0).length() != rows as i64 || nodes.get(0).null_count() != 0 {
        return Err("dictionary node does not match its row count".into());
    }
    let list = rb.buffers().ok_or("dictionary lists no buffers")?;
    if list.len() != 3 {
        return Err(format!("{} dictionary buffers, expected 3", list.len()));
    }
    let body = Body {
        file,
        body_start: block.offset + block.meta_len,
        body_len: block.body_len,
        list,
        codec: codec_of(&rb)?,
    };
    let offsets_len = (rows + 1) * 4;
    let offsets = body.take(1, offsets_len, slack(offsets_len))?;
    let offsets: Vec<i32> = offsets.as_slice()[..offsets_len]
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap_or_default()))
        .collect();
    let text = body.take(2, 0, MAX_SCENE_ID_BYTES)?;
    if offsets[0] != 0
        || offsets.windows(2).any(|w| w[1] < w[0])
        || offsets[rows] as usize > text.len()
    {
        return Err("scene id offsets are out of order or out of range".into());
    }
    Ok((offsets, text))
}

/// A record batch of another file with its scene keys shifted by `shift` (its scene ids moved
/// in the new file's dictionary): every other buffer is copied as it is, compressed or not.
pub(crate) fn rekey_batch(
    file: &Buffer,
    block: BatchBlock,
    shift: i32,
) -> Result<EncodedBatch, String> {
    let message = message_at(file, block)?;
    let rb = message
        .header_as_record_batch()
        .ok_or("message is not a record batch")?;
    let rows = usize::try_from(rb.length()).map_err(|_| "negative row count")?;
    let list = rb.buffers().ok_or("record batch lists no buffers")?;
    if list.len() != BUFFERS {
        return Err(format!("{} buffers, expected {BUFFERS}", list.len()));
    }
    let codec = codec_of(&rb)?;
    let body = Body {
        file,
        body_start: block.offset + block.meta_len,
        body_len: block.body_len,
        list,
        codec,
    };
    let keys_len = rows * 4;
    let keys: Vec<i32> = body.take(3, keys_len, slack(keys_len))?.as_slice()[..keys_len]
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap_or_default()) + shift)
        .collect();
    let keys = bytemuck::cast_slice::<i32, u8>(&keys);
    let new_keys = match codec {
        Some(c) => c.compress(&[keys], keys.len()),
        None => keys.to_vec(),
    };
    // The other buffers' stored bytes, as they are.
    let stored = |i: usize| -> Result<&[u8], String> {
        let b = list.get(i);
        let (o, l) = (b.offset() as usize, b.length() as usize);
        file.as_slice()
            .get(body.body_start + o..body.body_start + o + l)
            .ok_or_else(|| "a buffer lies outside the message body".to_string())
    };
    let mut buffers = Vec::with_capacity(BUFFERS);
    let mut out = Vec::with_capacity(block.body_len + 64);
    for i in 0..BUFFERS {
        let bytes: &[u8] = if i == 3 { &new_keys } else { stored(i)? };
        buffers.push(arrow_ipc::Buffer::new(out.len() as i64, bytes.len() as i64));
        out.extend_from_slice(bytes);
        out.extend_from_slice(&ZEROS[..padding(bytes.len())]);
    }
    let nodes: Vec<arrow_ipc::FieldNode> = rb
        .nodes()
        .ok_or("record batch has no field nodes")?
        .iter()
        .copied()
        .collect();
    Ok(record_batch_message(rows, &nodes, &buffers, codec, out))
}
