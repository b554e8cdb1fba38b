//! WebP blocks (TIFF compression 50001), with `image-webp`.

use super::{check_len, BlockShape, Error};
use image_webp::WebPDecoder;
use std::io::Cursor;

/// Decodes one WebP block (RGB or RGBA) into `expected` bytes.
pub(super) fn decode(
    input: &[u8],
    out: &mut Vec<u8>,
    expected: usize,
    shape: &BlockShape<'_>,
) -> Result<(), Error> {
    let corrupt = |e: &dyn std::fmt::Display| super::corrupt("WebP", e);
    let mut decoder = WebPDecoder::new(Cursor::new(input)).map_err(|e| corrupt(&e))?;
    let (w, h) = decoder.dimensions();
    let channels = if decoder.has_alpha() { 4 } else { 3 };
    if w as usize != shape.width || (h as usize) < shape.height {
        return Err(Error::Shape {
            codec: "WebP",
            got: format!("{w}x{h}x{channels}"),
            expected: format!("{}x{}x{}", shape.width, shape.height, shape.samples),
        });
    }
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| corrupt(&"image too large"))?;
    let mut pixels = vec![0u8; size];
    decoder.read_image(&mut pixels).map_err(|e| corrupt(&e))?;
    out.clear();
    if channels == shape.samples {
        out.extend_from_slice(&pixels);
    } else if channels == 4 && shape.samples == 3 {
        out.extend(pixels.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]));
    } else if channels == 3 && shape.samples == 4 {
        out.extend(pixels.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]));
    } else {
        return Err(Error::Unsupported(format!(
            "WebP with {} samples per pixel",
            shape.samples
        )));
    }
    check_len("WebP", out, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error() {
        let shape = BlockShape {
            width: 16,
            height: 16,
            samples: 3,
            jpeg_tables: None,
            ycbcr: false,
        };
        let mut out = Vec::new();
        assert!(decode(b"RIFF\x10\0\0\0WEBPVP8 ", &mut out, 768, &shape).is_err());
    }
}
