//! JPEG blocks (TIFF compression 7), with `zune-jpeg`: shared `JPEGTables` are spliced in
//! front of each abbreviated block stream, and YCbCr data is converted to RGB like libtiff's
//! `JPEGCOLORMODE=RGB`.

use super::{check_len, BlockShape, Error};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Decodes one JPEG block into `expected` bytes of 8-bit samples.
pub(super) fn decode(
    input: &[u8],
    out: &mut Vec<u8>,
    expected: usize,
    shape: &BlockShape<'_>,
) -> Result<(), Error> {
    let stream = splice_tables(shape.jpeg_tables, input);
    let colorspace = match (shape.samples, shape.ycbcr) {
        (1, _) => ColorSpace::Luma,
        (3, true) => ColorSpace::RGB,
        // RGB stored as-is: ask for the stream's own components, no conversion.
        (3, false) => ColorSpace::YCbCr,
        (4, _) => ColorSpace::CMYK,
        (n, _) => {
            return Err(Error::Unsupported(format!(
                "JPEG with {n} samples per pixel"
            )))
        }
    };
    let options = DecoderOptions::default()
        .set_max_width(shape.width.max(1))
        .set_max_height(shape.height.max(1))
        .jpeg_set_out_colorspace(colorspace);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(&stream[..]), options);
    let corrupt = |e: &dyn std::fmt::Debug| super::corrupt("JPEG", format!("{e:?}"));
    decoder.decode_headers().map_err(|e| corrupt(&e))?;
    let info = decoder.info().ok_or_else(|| corrupt(&"no frame header"))?;
    let (w, h) = (info.width as usize, info.height as usize);
    if w != shape.width || h < shape.height {
        return Err(Error::Shape {
            codec: "JPEG",
            got: format!("{w}x{h}"),
            expected: format!("{}x{}", shape.width, shape.height),
        });
    }
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| corrupt(&"unknown output size"))?;
    out.clear();
    out.resize(size, 0);
    decoder.decode_into(out).map_err(|e| corrupt(&e))?;
    check_len("JPEG", out, expected)
}

/// Builds a complete JPEG stream from the shared tables (`SOI tables EOI`) and an abbreviated
/// block stream (`SOI scan EOI`).
fn splice_tables(tables: Option<&[u8]>, block: &[u8]) -> Vec<u8> {
    match tables {
        Some(t) if t.len() > 4 && block.len() > 2 && block.starts_with(&[0xFF, 0xD8]) => {
            let t = t.strip_suffix(&[0xFF, 0xD9]).unwrap_or(t);
            let mut s = Vec::with_capacity(t.len() + block.len());
            s.extend_from_slice(t);
            s.extend_from_slice(&block[2..]);
            s
        }
        _ => block.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_tables_before_the_scan() {
        let tables = [0xFF, 0xD8, 0xFF, 0xDB, 0x01, 0xFF, 0xD9];
        let block = [0xFF, 0xD8, 0xFF, 0xDA, 0x02, 0xFF, 0xD9];
        assert_eq!(
            splice_tables(Some(&tables), &block),
            vec![0xFF, 0xD8, 0xFF, 0xDB, 0x01, 0xFF, 0xDA, 0x02, 0xFF, 0xD9]
        );
        assert_eq!(splice_tables(None, &block), block.to_vec());
    }

    #[test]
    fn garbage_is_an_error() {
        let shape = BlockShape {
            width: 16,
            height: 16,
            samples: 3,
            jpeg_tables: None,
            ycbcr: true,
        };
        let mut out = Vec::new();
        assert!(decode(&[0xFF, 0xD8, 0, 1, 2], &mut out, 768, &shape).is_err());
    }
}
