//! Writes an uncompressed fragment as an Arrow IPC file straight from the observations'
//! own pixel buffers: the record batch's body is streamed buffer by buffer, so the pixels
//! are never concatenated into one array first (Arrow's writer needs a contiguous values
//! buffer for the fixed-size list, which cost a full copy of every fragment).
//!
//! The file is the standard IPC file format, as Arrow's `FileWriter` lays it out: magic,
//! schema message, one record-batch message (metadata then body, every buffer aligned to
//! 64 bytes), end-of-stream marker, footer, footer length, magic.

use arrow_buffer::BooleanBuffer;
use arrow_ipc::writer::{write_message, DictionaryTracker, IpcDataGenerator, IpcWriteOptions};
use arrow_schema::{ArrowError, Schema};
use flatbuffers::FlatBufferBuilder;
use std::io::Write;

const MAGIC: &[u8; 6] = b"ARROW1";
const ALIGN: usize = 64;
const ZEROS: [u8; ALIGN] = [0; ALIGN];
const CONTINUATION: [u8; 4] = [0xff; 4];

/// The columns of one fragment, borrowed from its observations (already sorted by time).
pub(crate) struct FragmentColumns<'a> {
    /// `time` values (microseconds since the epoch, UTC).
    pub times: &'a [i64],
    /// `scene_id` values.
    pub scene_ids: &'a [&'a str],
    /// Each observation's pixels as little-endian bytes, in row order.
    pub pixels: &'a [&'a [u8]],
    /// Samples per observation.
    pub pixels_per_row: usize,
    /// Validity of every pixel of every observation, and how many are null.
    pub validity: Option<(&'a BooleanBuffer, usize)>,
}

fn padding(len: usize) -> usize {
    len.next_multiple_of(ALIGN) - len
}

/// A `Write` that counts bytes, for the footer's block offsets.
struct Counting<W> {
    inner: W,
    written: usize,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(bytes)?;
        self.written += bytes.len();
        Ok(())
    }

    fn pad(&mut self, len: usize) -> std::io::Result<()> {
        self.put(&ZEROS[..padding(len)])
    }
}

/// Writes `columns` with `schema` (the fragment schema: time, scene_id, pixels) to `sink`.
pub(crate) fn write_fragment_ipc<W: Write>(
    sink: W,
    schema: &Schema,
    columns: &FragmentColumns<'_>,
) -> Result<(), ArrowError> {
    let rows = columns.times.len();
    let mut w = Counting {
        inner: sink,
        written: 0,
    };
    w.put(MAGIC)?;
    w.pad(MAGIC.len())?;

    let options = IpcWriteOptions::try_new(ALIGN, false, arrow_ipc::MetadataVersion::V5)?;
    let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut DictionaryTracker::new(false),
        &options,
    );
    let (schema_len, _) = write_message(&mut w.inner, encoded, &options)?;
    w.written += schema_len;

    // Body buffers in field order: time (validity, values), scene_id (validity, offsets,
    // data), pixels (list validity), item (validity, values). Absent validity = length 0.
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
    let pixel_bytes: usize = columns.pixels.iter().map(|p| p.len()).sum();
    let (item_nulls, validity_bytes) = match columns.validity {
        Some((bits, nulls)) => (nulls, bits.len().div_ceil(8)),
        None => (0, 0),
    };
    let lengths = [
        0,
        rows * 8,
        0,
        (rows + 1) * 4,
        text_len,
        0,
        validity_bytes,
        pixel_bytes,
    ];
    let mut buffers = Vec::with_capacity(lengths.len());
    let mut body_len = 0usize;
    for len in lengths {
        buffers.push(arrow_ipc::Buffer::new(body_len as i64, len as i64));
        body_len += len + padding(len);
    }
    let nodes = [
        arrow_ipc::FieldNode::new(rows as i64, 0),
        arrow_ipc::FieldNode::new(rows as i64, 0),
        arrow_ipc::FieldNode::new(rows as i64, 0),
        arrow_ipc::FieldNode::new((rows * columns.pixels_per_row) as i64, item_nulls as i64),
    ];
    let mut fbb = FlatBufferBuilder::new();
    let fb_nodes = fbb.create_vector(&nodes);
    let fb_buffers = fbb.create_vector(&buffers);
    let batch = {
        let mut b = arrow_ipc::RecordBatchBuilder::new(&mut fbb);
        b.add_length(rows as i64);
        b.add_nodes(fb_nodes);
        b.add_buffers(fb_buffers);
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
    let metadata = fbb.finished_data();
    // Continuation marker, metadata length (padded so the body starts aligned), metadata.
    let batch_offset = w.written;
    let padded_meta = (8 + metadata.len()).next_multiple_of(ALIGN) - 8;
    w.put(&CONTINUATION)?;
    w.put(&(padded_meta as i32).to_le_bytes())?;
    w.put(metadata)?;
    w.put(&ZEROS[..padded_meta - metadata.len()])?;
    let meta_len = w.written - batch_offset;

    let body_start = w.written;
    let times: Vec<u8> = columns.times.iter().flat_map(|t| t.to_le_bytes()).collect();
    w.put(&times)?;
    w.pad(times.len())?;
    let offset_bytes: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
    w.put(&offset_bytes)?;
    w.pad(offset_bytes.len())?;
    for id in columns.scene_ids {
        w.put(id.as_bytes())?;
    }
    w.pad(text_len)?;
    if let Some((bits, _)) = columns.validity {
        // Built by this crate at offset 0; `sliced` re-packs anything else.
        let packed = bits.sliced();
        w.put(&packed.as_slice()[..validity_bytes])?;
        w.pad(validity_bytes)?;
    }
    for p in columns.pixels {
        w.put(p)?;
    }
    w.pad(pixel_bytes)?;
    debug_assert_eq!(w.written - body_start, body_len);

    // End-of-stream marker, then the footer naming the schema and the one batch.
    w.put(&CONTINUATION)?;
    w.put(&0i32.to_le_bytes())?;
    let mut fbb = FlatBufferBuilder::new();
    let fb_schema = arrow_ipc::convert::schema_to_fb_offset(&mut fbb, schema);
    let blocks = fbb.create_vector(&[arrow_ipc::Block::new(
        batch_offset as i64,
        meta_len as i32,
        body_len as i64,
    )]);
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
    w.put(footer)?;
    w.put(&(footer.len() as i32).to_le_bytes())?;
    w.put(MAGIC)?;
    w.inner.flush()?;
    Ok(())
}
