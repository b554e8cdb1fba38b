//! Pixel data types shared by the reader, the warper and the warehouse.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The numeric type of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 32-bit integer.
    I32,
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
}

impl DataType {
    /// Bytes per sample.
    pub fn size(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::F64 => 8,
        }
    }

    /// True for `F32` and `F64`.
    pub fn is_float(self) -> bool {
        matches!(self, DataType::F32 | DataType::F64)
    }

    /// Lower-case short name (`u16`, `f32`, ...), also used in file metadata.
    pub fn name(self) -> &'static str {
        match self {
            DataType::U8 => "u8",
            DataType::I8 => "i8",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
        }
    }

    /// GDAL's name for the type (`UInt16`, `Float32`, ...).
    pub fn gdal_name(self) -> &'static str {
        match self {
            DataType::U8 => "Byte",
            DataType::I8 => "Int8",
            DataType::U16 => "UInt16",
            DataType::I16 => "Int16",
            DataType::U32 => "UInt32",
            DataType::I32 => "Int32",
            DataType::F32 => "Float32",
            DataType::F64 => "Float64",
        }
    }

    /// Parses a short name (`u16`) or a GDAL name (`UInt16`), case-insensitively.
    pub fn parse(name: &str) -> Option<DataType> {
        let n = name.to_ascii_lowercase();
        Some(match n.as_str() {
            "u8" | "byte" | "uint8" => DataType::U8,
            "i8" | "int8" => DataType::I8,
            "u16" | "uint16" => DataType::U16,
            "i16" | "int16" => DataType::I16,
            "u32" | "uint32" => DataType::U32,
            "i32" | "int32" => DataType::I32,
            "f32" | "float32" => DataType::F32,
            "f64" | "float64" => DataType::F64,
            _ => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust type that can hold one sample of a [`DataType`].
///
/// Implemented for `u8, i8, u16, i16, u32, i32, f32, f64`; lets generic code (warp kernels,
/// array reads) convert between raw little-endian bytes, typed slices and `f64`.
pub trait Sample: Copy + Default + PartialEq + Send + Sync + 'static + fmt::Debug {
    /// The matching data type.
    const DTYPE: DataType;
    /// Decodes one sample from little-endian bytes (`bytes.len() == size`).
    fn from_le_slice(bytes: &[u8]) -> Self;
    /// Widens to `f64` exactly (every supported type fits).
    fn to_f64(self) -> f64;
    /// Converts from `f64`, rounding to nearest and saturating for integer types.
    fn from_f64(v: f64) -> Self;
}

macro_rules! int_sample {
    ($t:ty, $d:expr) => {
        impl Sample for $t {
            const DTYPE: DataType = $d;
            #[inline]
            fn from_le_slice(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f64(v: f64) -> Self {
                // `as` saturates and maps NaN to 0.
                v.round() as $t
            }
        }
    };
}

int_sample!(u8, DataType::U8);
int_sample!(i8, DataType::I8);
int_sample!(u16, DataType::U16);
int_sample!(i16, DataType::I16);
int_sample!(u32, DataType::U32);
int_sample!(i32, DataType::I32);

impl Sample for f32 {
    const DTYPE: DataType = DataType::F32;
    #[inline]
    fn from_le_slice(bytes: &[u8]) -> Self {
        f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Sample for f64 {
    const DTYPE: DataType = DataType::F64;
    #[inline]
    fn from_le_slice(bytes: &[u8]) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        f64::from_le_bytes(b)
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in [
            DataType::U8,
            DataType::I8,
            DataType::U16,
            DataType::I16,
            DataType::U32,
            DataType::I32,
            DataType::F32,
            DataType::F64,
        ] {
            assert_eq!(DataType::parse(t.name()), Some(t));
            assert_eq!(DataType::parse(t.gdal_name()), Some(t));
        }
        assert_eq!(DataType::parse("complex"), None);
    }

    #[test]
    fn integer_conversion_rounds_and_saturates() {
        assert_eq!(u16::from_f64(2.5), 3);
        assert_eq!(u16::from_f64(-4.0), 0);
        assert_eq!(u8::from_f64(300.0), 255);
        assert_eq!(i16::from_f64(f64::NAN), 0);
    }
}
