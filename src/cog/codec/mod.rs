//! Block codecs: compressed block bytes in, raw block bytes out.
//!
//! Each codec is one file with one function; [`decompress`] looks the codec up by
//! [`Compression`]. Every decoder writes at most `expected` bytes: a hostile block can never
//! make the reader allocate more than the block's declared size.

mod deflate;
mod jpeg;
mod lzma;
mod lzw;
mod packbits;
mod webp;
mod zstd;

use super::tags::Compression;

/// Why a block could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The compressed stream is damaged.
    #[error("corrupt {codec} data: {reason}")]
    Corrupt {
        /// Codec name.
        codec: &'static str,
        /// What the decoder reported.
        reason: String,
    },
    /// The stream decoded to fewer bytes than the block needs.
    #[error("{codec} data decoded to {got} bytes, the block needs {expected}")]
    Short {
        /// Codec name.
        codec: &'static str,
        /// Bytes produced.
        got: usize,
        /// Bytes needed.
        expected: usize,
    },
    /// The codec is recognised but not implemented.
    #[error("compression {0} is not supported")]
    Unsupported(String),
    /// An image codec produced a picture of another shape than the block.
    #[error("{codec} block is {got}, expected {expected}")]
    Shape {
        /// Codec name.
        codec: &'static str,
        /// What the stream contained (`WxHxC`).
        got: String,
        /// What the TIFF tags promised.
        expected: String,
    },
}

/// What a codec needs to know about the block beyond its bytes.
#[derive(Debug, Clone, Copy)]
pub struct BlockShape<'a> {
    /// Pixels per row stored in the block.
    pub width: usize,
    /// Rows stored in the block.
    pub height: usize,
    /// Samples per pixel stored in the block.
    pub samples: usize,
    /// Shared JPEG tables, if any.
    pub jpeg_tables: Option<&'a [u8]>,
    /// True when JPEG data is YCbCr to be converted to RGB.
    pub ycbcr: bool,
}

/// Decompresses one block into `out` (exactly `out.len()` bytes are expected).
pub fn decompress(
    compression: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
    expected: usize,
    shape: &BlockShape<'_>,
) -> Result<(), Error> {
    match compression {
        Compression::None => {
            if input.len() < expected {
                return Err(Error::Short {
                    codec: "uncompressed",
                    got: input.len(),
                    expected,
                });
            }
            out.clear();
            out.extend_from_slice(&input[..expected]);
            Ok(())
        }
        Compression::Deflate => deflate::decode(input, out, expected),
        Compression::Lzw => lzw::decode(input, out, expected),
        Compression::PackBits => packbits::decode(input, out, expected),
        Compression::Zstd => zstd::decode(input, out, expected),
        Compression::Lzma => lzma::decode(input, out, expected),
        Compression::Jpeg => jpeg::decode(input, out, expected, shape),
        Compression::WebP => webp::decode(input, out, expected, shape),
        other => Err(Error::Unsupported(other.name())),
    }
}

/// True when the codec is implemented (so `inspect` can say so up front).
pub fn is_supported(compression: Compression) -> bool {
    matches!(
        compression,
        Compression::None
            | Compression::Deflate
            | Compression::Lzw
            | Compression::PackBits
            | Compression::Zstd
            | Compression::Lzma
            | Compression::Jpeg
            | Compression::WebP
    )
}

/// A [`Error::Corrupt`] with the decoder's message folded onto one line.
fn corrupt(codec: &'static str, reason: impl std::fmt::Display) -> Error {
    let text = reason.to_string();
    let reason = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Error::Corrupt { codec, reason }
}

/// Checks a decoded length against the block size.
fn check_len(codec: &'static str, out: &mut Vec<u8>, expected: usize) -> Result<(), Error> {
    if out.len() < expected {
        return Err(Error::Short {
            codec,
            got: out.len(),
            expected,
        });
    }
    out.truncate(expected);
    Ok(())
}

/// A `Write` sink that refuses to grow past a limit (for stream decoders without one).
struct BoundedWriter<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
}

impl std::io::Write for BoundedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.out.len());
        if room == 0 && !buf.is_empty() {
            return Err(std::io::Error::other(
                "decoded data is larger than the block",
            ));
        }
        let n = room.min(buf.len());
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
