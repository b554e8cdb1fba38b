//! A fragment as queries see it: some observations of some window of the tile, decoded,
//! row-major per observation, with an Arrow record batch of the same data.

use super::{arrow_type, FragmentMeta, Observation, Pixel, PixelBuffer, PixelWindow};
use crate::dtype::DataType;
use crate::store::{bitmap, Error, FragmentCompression, Result};
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int8Type, UInt16Type, UInt32Type, UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, FixedSizeListArray, PrimitiveArray, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, ScalarBuffer};
use arrow_schema::Field;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Observations of a fragment over a window of its tile, decoded: what
/// [`Snapshot::fragment`](crate::store::Snapshot::fragment) (the whole fragment) and
/// [`Snapshot::fragment_window`](crate::store::Snapshot::fragment_window) (only what a query
/// needs) return. [`Fragment::window`] is the window its pixels cover; pixels of the tile
/// outside the fragment's stored window are invalid.
#[derive(Debug, Clone)]
pub struct Fragment {
    path: PathBuf,
    meta: FragmentMeta,
    batch: RecordBatch,
    times: ScalarBuffer<i64>,
    scene_ids: StringArray,
    values: Buffer,
    validity: Option<BooleanBuffer>,
    /// Samples per observation (the window).
    pixels: usize,
    compression: FragmentCompression,
}

impl Fragment {
    /// Builds the view from its parts: `values` holds `times.len() * window pixels` samples,
    /// `validity` as many bits (`None`: all valid). `meta.window` is the view's window.
    pub(crate) fn from_parts(
        path: &Path,
        meta: FragmentMeta,
        times: ScalarBuffer<i64>,
        scene_ids: StringArray,
        values: Buffer,
        validity: Option<BooleanBuffer>,
        compression: FragmentCompression,
    ) -> std::result::Result<Fragment, String> {
        let rows = times.len();
        let pixels = meta.window.pixels();
        let n = rows * pixels;
        if scene_ids.len() != rows {
            return Err(format!(
                "{} scene ids for {rows} observations",
                scene_ids.len()
            ));
        }
        if values.len() < n * meta.dtype.size() || validity.as_ref().is_some_and(|v| v.len() != n) {
            return Err("pixel buffers are shorter than the window".into());
        }
        let values = values.slice_with_length(0, n * meta.dtype.size());
        let items = primitive_array(
            meta.dtype,
            values.clone(),
            validity.clone().map(NullBuffer::new),
        )?;
        let item = Arc::new(Field::new("item", arrow_type(meta.dtype), true));
        let list = FixedSizeListArray::try_new(item, pixels as i32, items, None)
            .map_err(|e| format!("pixels: {e}"))?;
        let time = TimestampMicrosecondArray::new(times.clone(), None).with_timezone("UTC");
        let schema = Arc::new(super::view_schema(&meta));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(time), Arc::new(scene_ids.clone()), Arc::new(list)],
        )
        .map_err(|e| e.to_string())?;
        Ok(Fragment {
            path: path.to_path_buf(),
            meta,
            batch,
            times,
            scene_ids,
            values,
            validity,
            pixels,
            compression,
        })
    }

    /// The file this fragment was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Metadata from the schema.
    pub fn meta(&self) -> &FragmentMeta {
        &self.meta
    }

    /// The window of the tile this view covers: [`Fragment::pixels`] and
    /// [`Fragment::validity`] cover it, row-major.
    pub fn window(&self) -> PixelWindow {
        self.meta.window
    }

    /// How the file's buffers are compressed.
    pub fn compression(&self) -> FragmentCompression {
        self.compression
    }

    /// Number of observations.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// True when the fragment holds no observation.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Acquisition time of observation `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`, like slice indexing.
    pub fn time(&self, i: usize) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.times[i]).unwrap_or_default()
    }

    /// All observation times as microseconds since the Unix epoch (sorted).
    pub fn times_micros(&self) -> &[i64] {
        &self.times
    }

    /// Scene id of observation `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn scene_id(&self, i: usize) -> &str {
        self.scene_ids.value(i)
    }

    /// Raw little-endian pixel bytes of observation `i`'s window.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn pixel_bytes(&self, i: usize) -> &[u8] {
        assert!(i < self.len(), "observation {i} out of range");
        let size = self.pixels * self.meta.dtype.size();
        &self.values.as_slice()[i * size..(i + 1) * size]
    }

    /// Typed pixels of observation `i`'s window (see [`Fragment::window`]), zero-copy;
    /// errors when `T` is not the fragment's dtype or `i` is out of range.
    pub fn pixels<T: Pixel>(&self, i: usize) -> Result<&[T]> {
        if T::DTYPE != self.meta.dtype {
            return Err(Error::DtypeMismatch {
                path: self.path.clone(),
                stored: self.meta.dtype,
                requested: T::DTYPE,
            });
        }
        if i >= self.len() {
            return Err(Error::ObservationIndex {
                path: self.path.clone(),
                index: i,
                len: self.len(),
            });
        }
        // Aligned: the file's bytes are (see `decode_checked`), IPC buffers are 8-byte
        // aligned in them, and decompressed buffers are allocated aligned.
        bytemuck::try_cast_slice(self.pixel_bytes(i)).map_err(|e| Error::CorruptFragment {
            path: self.path.clone(),
            reason: format!("pixel buffer cannot be viewed as {}: {e}", T::DTYPE),
        })
    }

    /// Validity bits of observation `i`'s window (`None` = every pixel valid), zero-copy.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn validity(&self, i: usize) -> Option<BooleanBuffer> {
        assert!(i < self.len(), "observation {i} out of range");
        self.validity
            .as_ref()
            .map(|v| v.slice(i * self.pixels, self.pixels))
    }

    /// Validity of observation `i`'s window as one bool per pixel.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn valid_mask(&self, i: usize) -> Vec<bool> {
        match self.validity(i) {
            Some(v) => v.iter().collect(),
            None => vec![true; self.pixels],
        }
    }

    /// Observation `i` over the whole tile (a copy): the window's pixels in place, the
    /// nodata value (else 0) and invalid bits around them. Writing it back gives the same
    /// fragment.
    pub fn observation(&self, i: usize) -> Result<Observation> {
        macro_rules! expand {
            ($t:ty) => {
                PixelBuffer::from(self.tile_pixels::<$t>(i)?)
            };
        }
        let pixels = match self.meta.dtype {
            DataType::U8 => expand!(u8),
            DataType::I8 => expand!(i8),
            DataType::U16 => expand!(u16),
            DataType::I16 => expand!(i16),
            DataType::U32 => expand!(u32),
            DataType::I32 => expand!(i32),
            DataType::F32 => expand!(f32),
            DataType::F64 => expand!(f64),
        };
        let m = &self.meta;
        let valid = if m.window.is_full(m.width, m.height) {
            self.validity(i)
        } else {
            Some(bitmap::expand(
                self.validity(i).as_ref(),
                (m.width as usize, m.height as usize),
                (m.window.cols(), m.window.rows()),
            ))
        };
        Ok(Observation {
            time: self.time(i),
            scene_id: self.scene_id(i).to_string(),
            pixels,
            valid,
        })
    }

    /// Observation `i`'s pixels over the whole tile, nodata (else 0) outside the window.
    fn tile_pixels<T: Pixel>(&self, i: usize) -> Result<Vec<T>> {
        let window = self.pixels::<T>(i)?;
        let m = &self.meta;
        let w = m.width as usize;
        let fill = T::from_f64(m.nodata.unwrap_or(0.0));
        let mut tile = vec![fill; w * m.height as usize];
        let cols = m.window.cols();
        for (src, r) in window.chunks_exact(cols.len()).zip(m.window.rows()) {
            tile[r * w + cols.start..r * w + cols.end].copy_from_slice(src);
        }
        Ok(tile)
    }

    /// The view as an Arrow record batch (`time`, `scene_id`, `pixels` of its window).
    pub fn record_batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Bytes of decoded pixels this view holds.
    pub fn heap_bytes(&self) -> u64 {
        self.values.len() as u64
    }
}

/// The pixel values as an Arrow array of the fragment's type.
fn primitive_array(
    dtype: DataType,
    values: Buffer,
    nulls: Option<NullBuffer>,
) -> std::result::Result<ArrayRef, String> {
    fn typed<A: ArrowPrimitiveType>(
        values: Buffer,
        nulls: Option<NullBuffer>,
    ) -> std::result::Result<ArrayRef, String> {
        let len = values.len() / std::mem::size_of::<A::Native>();
        PrimitiveArray::<A>::try_new(ScalarBuffer::new(values, 0, len), nulls)
            .map(|a| Arc::new(a) as ArrayRef)
            .map_err(|e| format!("pixel values: {e}"))
    }
    match dtype {
        DataType::U8 => typed::<UInt8Type>(values, nulls),
        DataType::I8 => typed::<Int8Type>(values, nulls),
        DataType::U16 => typed::<UInt16Type>(values, nulls),
        DataType::I16 => typed::<Int16Type>(values, nulls),
        DataType::U32 => typed::<UInt32Type>(values, nulls),
        DataType::I32 => typed::<Int32Type>(values, nulls),
        DataType::F32 => typed::<Float32Type>(values, nulls),
        DataType::F64 => typed::<Float64Type>(values, nulls),
    }
}
