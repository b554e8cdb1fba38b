//! Round trips of the fragment format: chunk shapes, crops, masks, compression, views,
//! Arrow's own reader, damaged files.

use super::stats::{pixel_stats, typed};
use super::write::{write_fragment_file, FragmentSettings};
use super::*;
use crate::store::{Error, FragmentCompression};
use arrow_array::types::UInt16Type;
use arrow_array::{
    Array, FixedSizeListArray, PrimitiveArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::Buffer;
use std::fs::File;

/// Small chunks (2 x 3 pixels, 1 observation per block) so every test crosses chunk and
/// block edges.
fn settings(epsg: u32, compression: FragmentCompression, crop: bool) -> FragmentSettings {
    FragmentSettings {
        epsg,
        compression,
        crop,
        chunk: ChunkShape {
            rows: 2,
            cols: 3,
            observations: 1,
        },
    }
}

const ALL: [FragmentCompression; 3] = [
    FragmentCompression::None,
    FragmentCompression::Lz4,
    FragmentCompression::Zstd,
];

fn sample(dtype_nodata: Option<f64>) -> FragmentData {
    let t = |d: u32| DateTime::from_timestamp(1_700_000_000 + d as i64 * 86_400, 0).unwrap();
    FragmentData {
        tile: TileId::new(3, -2),
        band: "B04".into(),
        product: "S2".into(),
        dtype: DataType::U16,
        nodata: dtype_nodata,
        scale: 1e-4,
        offset: -0.1,
        tile_transform: GeoTransform::north_up(500_000.0, 4_000_000.0, 10.0, 10.0),
        width: 4,
        height: 2,
        footprint_lonlat: vec![(15.0, 36.0), (15.1, 36.0), (15.1, 36.1), (15.0, 36.1)],
        resolution: 10.0,
        observations: vec![
            Observation {
                time: t(5),
                scene_id: "late".into(),
                pixels: vec![0u16, 1, 2, 3, 4, 5, 6, 7].into(),
                valid: None,
            },
            Observation {
                time: t(1),
                scene_id: "early".into(),
                pixels: vec![10u16, 11, 12, 13, 14, 15, 16, 17].into(),
                valid: None,
            },
        ],
    }
}

#[test]
fn round_trip_sorted_with_nodata_mask_and_stats() {
    for compression in ALL {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.arrow");
        let mut data = sample(Some(0.0));
        let w = write_fragment_file(&p, &mut data, &settings(32633, compression, true)).unwrap();
        assert_eq!(w.observations, 2);
        assert_eq!(w.bytes, std::fs::metadata(&p).unwrap().len());
        assert_eq!(
            w.checksum,
            super::super::layout::checksum(&std::fs::read(&p).unwrap())
        );
        // Pixel 0 of "late" is nodata: 15 valid values 1..=7 and 10..=17.
        assert_eq!(w.stats.valid_count, 15);
        assert_eq!(w.stats.min, Some(1.0));
        assert_eq!(w.stats.max, Some(17.0));
        let sum: u32 = (1..=7).sum::<u32>() + (10..=17).sum::<u32>();
        assert!((w.stats.mean.unwrap() - sum as f64 / 15.0).abs() < 1e-12);

        let f = Fragment::open(&p).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f.scene_id(0), "early");
        assert_eq!(f.scene_id(1), "late");
        assert!(f.time(0) < f.time(1));
        assert_eq!(
            f.pixels::<u16>(0).unwrap(),
            &[10, 11, 12, 13, 14, 15, 16, 17]
        );
        assert_eq!(f.pixels::<u16>(1).unwrap(), &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(f.validity(0).is_some_and(|v| v.count_set_bits() == 8));
        assert_eq!(f.valid_mask(1)[..3], [false, true, true]);
        assert_eq!(f.compression(), compression);
        assert_eq!(f.window(), PixelWindow::full(4, 2));
        assert!(f.pixels::<f32>(0).is_err());
        assert!(f.pixels::<u16>(2).is_err());
        let m = f.meta();
        assert_eq!(
            (m.tile, m.band.as_str(), m.product.as_str()),
            (TileId::new(3, -2), "B04", "S2")
        );
        assert_eq!(
            (m.epsg, m.width, m.height, m.dtype),
            (32633, 4, 2, DataType::U16)
        );
        assert_eq!((m.nodata, m.scale, m.offset), (Some(0.0), 1e-4, -0.1));
        assert_eq!(m.transform, data.tile_transform);
    }
}

#[test]
fn arrows_own_reader_sees_what_the_fragment_holds() {
    // The store writes and reads IPC itself; arrow-rs' FileReader (uncompressed and
    // LZ4: its ZSTD needs C) must read the same batch, cropped or not.
    let d = tempfile::tempdir().unwrap();
    for compression in [FragmentCompression::None, FragmentCompression::Lz4] {
        for (nodata, mask) in [(None, false), (Some(0.0), false), (None, true)] {
            let mut data = sample(nodata);
            if mask {
                // Column 0 is invalid in both observations: cropped to columns 1..4.
                data.observations[0].valid = Some(BooleanBuffer::from(vec![
                    false, true, false, true, false, true, true, true,
                ]));
                data.observations[1].valid = Some(BooleanBuffer::from(vec![
                    false, true, true, true, false, true, true, false,
                ]));
            }
            let p = d
                .path()
                .join(format!("{compression:?}{nodata:?}{mask}.arrow"));
            write_fragment_file(&p, &mut data, &settings(32633, compression, true)).unwrap();
            let reader =
                arrow_ipc::reader::FileReader::try_new(File::open(&p).unwrap(), None).unwrap();
            let got: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
            let f = Fragment::open(&p).unwrap();
            let m = f.meta().clone();
            // One batch per present chunk and block, in that order, each the chunk's pixels.
            assert_eq!(got.len(), m.chunks.len() * m.blocks.len());
            for (j, batch) in got.iter().enumerate() {
                let (k, block) = (m.chunks[j / m.blocks.len()], j % m.blocks.len());
                let cw = m.chunk.window(k, m.width, m.height);
                let times = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .unwrap();
                assert_eq!(times.value(0), f.times_micros()[block]);
                let list = batch
                    .column(2)
                    .as_any()
                    .downcast_ref::<FixedSizeListArray>()
                    .unwrap();
                let values = list
                    .values()
                    .as_any()
                    .downcast_ref::<PrimitiveArray<UInt16Type>>()
                    .unwrap();
                let obs = f.observation(block).unwrap();
                let tile = typed::<u16>(&obs.pixels);
                let tile_valid: Vec<bool> = obs.valid.map_or(vec![true; 8], |v| v.iter().collect());
                for r in 0..m.chunk.rows as usize {
                    for c in 0..m.chunk.cols as usize {
                        let at = r * m.chunk.cols as usize + c;
                        let (tr, tc) = (cw.row as usize + r, cw.col as usize + c);
                        let inside = tr < 2 && tc < 4;
                        let valid = inside && tile_valid[tr * 4 + tc];
                        assert_eq!(
                            values.is_valid(at),
                            valid,
                            "{compression:?} {nodata:?} {mask} chunk {k} ({r},{c})"
                        );
                        if valid {
                            assert_eq!(values.value(at), tile[tr * 4 + tc]);
                        }
                    }
                }
            }
            let window = if mask {
                PixelWindow::new(1, 0, 3, 2)
            } else {
                PixelWindow::full(4, 2)
            };
            assert_eq!(f.window(), window);
            // Observations come back sorted, whole-tile, with their validity.
            for (k, o) in data.observations.iter().enumerate() {
                let back = f.observation(k).unwrap();
                let want_valid: Vec<bool> = match (&o.valid, nodata) {
                    (Some(v), _) => v.iter().collect(),
                    (None, Some(nd)) => typed::<u16>(&o.pixels)
                        .iter()
                        .map(|&v| v as f64 != nd)
                        .collect(),
                    (None, None) => vec![true; 8],
                };
                let got_valid: Vec<bool> = back.valid.map_or(vec![true; 8], |v| v.iter().collect());
                assert_eq!(got_valid, want_valid);
                let (a, b) = (typed::<u16>(&back.pixels), typed::<u16>(&o.pixels));
                for i in 0..8 {
                    if want_valid[i] {
                        assert_eq!(a[i], b[i]);
                    }
                }
            }
        }
    }
}

#[test]
fn crops_to_the_union_of_valid_windows() {
    // A 7x6 tile; observation 0 valid in columns 2..5 of rows 1..3, observation 1 in
    // column 1 of row 4 only: the union is columns 1..5, rows 1..5.
    let d = tempfile::tempdir().unwrap();
    for compression in ALL {
        for crop in [true, false] {
            let mut data = sample(Some(0.0));
            (data.width, data.height) = (7, 6);
            let inside0 = |i: usize| (2..5).contains(&(i % 7)) && (1..3).contains(&(i / 7));
            let inside1 = |i: usize| i == 4 * 7 + 1;
            data.observations[0].pixels = (0..42)
                .map(|i| if inside0(i) { 100 + i as u16 } else { 0 })
                .collect::<Vec<_>>()
                .into();
            data.observations[1].pixels = (0..42)
                .map(|i| if inside1(i) { 7u16 } else { 0 })
                .collect::<Vec<_>>()
                .into();
            let p = d.path().join(format!("{compression:?}{crop}.arrow"));
            let mut copy = data.clone();
            let w = write_fragment_file(&p, &mut copy, &settings(1, compression, crop)).unwrap();
            let window = if crop {
                PixelWindow::new(1, 1, 4, 4)
            } else {
                PixelWindow::full(7, 6)
            };
            assert_eq!(w.window, window);
            assert_eq!(w.stats.valid_count, 7);
            let f = Fragment::open(&p).unwrap();
            assert_eq!(f.window(), window);
            assert_eq!(f.meta().window, window);
            assert_eq!((f.meta().width, f.meta().height), (7, 6));
            // "late" (observation 0) is second after sorting.
            let late = f.pixels::<u16>(1).unwrap();
            assert_eq!(late.len(), window.pixels());
            if crop {
                assert_eq!(late[0..4], [0, 100 + 9, 100 + 10, 100 + 11]);
                assert!(f.valid_mask(0)[3 * 4]);
                assert_eq!(f.valid_mask(0).iter().filter(|&&v| v).count(), 1);
            }
            // Back to the whole tile: nodata and invalid outside the window.
            let back = f.observation(1).unwrap();
            assert_eq!(back.pixels, data.observations[0].pixels);
            let valid: Vec<bool> = back.valid.unwrap().iter().collect();
            assert_eq!(valid, (0..42).map(inside0).collect::<Vec<_>>());
            // Rewriting the expanded observations gives the same fragment content.
            let mut again = data.clone();
            again.observations = (0..2).map(|k| f.observation(k).unwrap()).collect();
            let q = d.path().join(format!("{compression:?}{crop}again.arrow"));
            write_fragment_file(&q, &mut again, &settings(1, compression, crop)).unwrap();
            assert_eq!(Fragment::open(&q).unwrap().record_batch(), f.record_batch());
        }
    }
    // No valid pixel at all: one (invalid) corner pixel is stored.
    let mut data = sample(Some(0.0));
    for o in &mut data.observations {
        o.pixels = vec![0u16; 8].into();
    }
    let p = d.path().join("empty.arrow");
    let w =
        write_fragment_file(&p, &mut data, &settings(1, FragmentCompression::Zstd, true)).unwrap();
    assert_eq!(w.window, PixelWindow::new(0, 0, 1, 1));
    let f = Fragment::open(&p).unwrap();
    assert_eq!(f.valid_mask(0), vec![false]);
    assert!(f.observation(0).unwrap().valid.unwrap().iter().all(|v| !v));
}

#[test]
fn in_memory_buffers_read_like_files() {
    let d = tempfile::tempdir().unwrap();
    for compression in ALL {
        let p = d.path().join(format!("{compression:?}.arrow"));
        write_fragment_file(&p, &mut sample(Some(0.0)), &settings(1, compression, true)).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let f = Fragment::open(&p).unwrap();
        // A misaligned copy of the bytes (as a network read may hand over).
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let buffer = Buffer::from_vec(shifted).slice(1);
        let m = Fragment::from_buffer(Path::new("s3://bucket/f.arrow"), buffer).unwrap();
        assert_eq!(m.record_batch(), f.record_batch());
        assert_eq!(m.path(), Path::new("s3://bucket/f.arrow"));
        let e = Fragment::from_buffer(Path::new("mem"), Buffer::from_vec(bytes[..40].to_vec()))
            .unwrap_err();
        assert!(e.to_string().starts_with("mem: corrupt fragment"), "{e}");
    }
}

#[test]
fn other_format_versions_are_a_clear_error() {
    // A version 1 fragment: no window, Arrow's own writer.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("v1.arrow");
    let mut md: HashMap<String, String> = [
        ("tile", "x3_y-2"),
        ("band", "B04"),
        ("product", "S2"),
        ("crs", "EPSG:32633"),
        ("geotransform", "[0.0, 10.0, 0.0, 0.0, 0.0, -10.0]"),
        ("width", "4"),
        ("height", "2"),
        ("dtype", "uint16"),
        ("nodata", "null"),
        ("scale", "1.0"),
        ("offset", "0.0"),
        ("format_version", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{META_PREFIX}{k}"), v.to_string()))
    .collect();
    let schema = Arc::new(Schema::new_with_metadata(
        base_fields(DataType::U16, 8, ArrowType::Utf8),
        md.clone(),
    ));
    let item = Arc::new(Field::new("item", ArrowType::UInt16, true));
    let values = Arc::new(PrimitiveArray::<UInt16Type>::from(vec![1u16; 8]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![0i64]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec!["s"])),
            Arc::new(FixedSizeListArray::try_new(item, 8, values, None).unwrap()),
        ],
    )
    .unwrap();
    let write = |p: &Path, schema: &Arc<Schema>, batch: &RecordBatch| {
        let mut w =
            arrow_ipc::writer::FileWriter::try_new(File::create(p).unwrap(), schema).unwrap();
        w.write(batch).unwrap();
        w.finish().unwrap();
    };
    write(&p, &schema, &batch);
    let e = Fragment::open(&p).unwrap_err();
    assert!(
        matches!(
            e,
            Error::FragmentVersion {
                found: 1,
                supported: FRAGMENT_FORMAT_VERSION,
                ..
            }
        ),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("v1.arrow") && text.contains("format version 1"),
        "{text}"
    );
    // A newer one.
    md.insert(format!("{META_PREFIX}format_version"), "4".into());
    let schema = Arc::new(Schema::new_with_metadata(
        base_fields(DataType::U16, 8, ArrowType::Utf8),
        md,
    ));
    let q = d.path().join("v4.arrow");
    let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).unwrap();
    write(&q, &schema, &batch);
    assert!(matches!(
        Fragment::open(&q).unwrap_err(),
        Error::FragmentVersion { found: 4, .. }
    ));
}

#[test]
fn explicit_masks_and_float_nan() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f.arrow");
    let mut data = sample(None);
    data.dtype = DataType::F32;
    data.nodata = Some(f64::NAN);
    data.observations[0].pixels = vec![f32::NAN, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0].into();
    data.observations[1].pixels = vec![1.5f32; 8].into();
    data.observations[1].valid = Some(BooleanBuffer::from(vec![
        true, false, true, false, true, false, true, false,
    ]));
    let w = write_fragment_file(
        &p,
        &mut data,
        &settings(4326, FragmentCompression::None, true),
    )
    .unwrap();
    assert_eq!(w.stats.valid_count, 7 + 4);
    let f = Fragment::open(&p).unwrap();
    assert!(f.meta().nodata.unwrap().is_nan());
    assert_eq!(
        f.valid_mask(0),
        vec![true, false, true, false, true, false, true, false]
    );
    assert!(!f.valid_mask(1)[0]);
    assert_eq!(f.pixels::<f32>(1).unwrap()[7], 7.0);
}

#[test]
fn bad_input_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let mut data = sample(None);
    data.observations[0].pixels = vec![1u16; 3].into();
    let e = write_fragment_file(
        &d.path().join("a"),
        &mut data,
        &settings(1, FragmentCompression::None, true),
    )
    .unwrap_err();
    assert!(e.to_string().contains("expected 4x2=8"), "{e}");
    let mut data = sample(None);
    data.observations[1].pixels = vec![1u8; 8].into();
    assert!(write_fragment_file(
        &d.path().join("b"),
        &mut data,
        &settings(1, FragmentCompression::None, true)
    )
    .is_err());
    let mut data = sample(None);
    data.observations.clear();
    assert!(write_fragment_file(
        &d.path().join("c"),
        &mut data,
        &settings(1, FragmentCompression::None, true)
    )
    .is_err());
}

#[test]
fn every_truncation_and_many_flips_are_errors_not_panics() {
    for compression in ALL {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.arrow");
        let mut data = sample(Some(0.0));
        // Cropped: column 3 is nodata everywhere.
        for o in &mut data.observations {
            if let PixelBuffer::U16(v) = &mut o.pixels {
                (v[3], v[7]) = (0, 0);
            }
        }
        write_fragment_file(&p, &mut data, &settings(1, compression, true)).unwrap();
        let good = std::fs::read(&p).unwrap();
        let q = d.path().join("bad.arrow");
        // Remove before rewriting: ext4 flushes files replaced by truncation on close.
        let put = |b: &[u8]| {
            let _ = std::fs::remove_file(&q);
            std::fs::write(&q, b).unwrap();
        };
        for cut in 0..good.len() {
            put(&good[..cut]);
            let e = Fragment::open(&q).unwrap_err();
            assert!(e.to_string().contains("bad.arrow"), "{e}");
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x5a;
            put(&b);
            // Either an error or a readable fragment (a flipped pixel); never a panic.
            if let Ok(f) = Fragment::open(&q) {
                for k in 0..f.len() {
                    let _ = f.pixels::<u16>(k);
                    let _ = f.validity(k);
                    let _ = f.scene_id(k);
                }
            }
        }
    }
}

#[test]
fn stats_blocks_match_naive() {
    let v: Vec<i16> = (0..1000).map(|i| ((i * 37) % 211) as i16 - 100).collect();
    let mask = BooleanBuffer::collect_bool(v.len(), |i| i % 3 != 0);
    let s = pixel_stats(&v, Some(&mask));
    let kept: Vec<f64> = v
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, &x)| x as f64)
        .collect();
    assert_eq!(s.valid_count, kept.len() as u64);
    assert_eq!(s.min, kept.iter().copied().reduce(f64::min));
    assert_eq!(s.max, kept.iter().copied().reduce(f64::max));
    assert!((s.mean.unwrap() - kept.iter().sum::<f64>() / kept.len() as f64).abs() < 1e-9);
    assert_eq!(pixel_stats::<u8>(&[], None), PixelStats::default());
}

#[test]
fn views_decoded_in_parallel_equal_views_decoded_in_order() {
    let d = tempfile::tempdir().unwrap();
    let t = |d: u32| DateTime::from_timestamp(1_700_000_000 + d as i64 * 86_400, 0).unwrap();
    let mut data = sample(Some(0.0));
    // 40 observations, blocks of 1: views cross the edges of decoding groups (a few batches
    // in unit tests). Column 3 is never valid, so its chunk is absent; every third
    // observation also lacks pixel (0, 0).
    data.observations = (0..40u16)
        .map(|i| Observation {
            time: t(u32::from(i)),
            scene_id: format!("s{i}"),
            pixels: (0..8u16).map(|p| i * 8 + p + 1).collect::<Vec<_>>().into(),
            valid: Some(BooleanBuffer::from(
                (0..8)
                    .map(|p| p % 4 != 3 && !(p == 0 && i % 3 == 0))
                    .collect::<Vec<_>>(),
            )),
        })
        .collect();
    for compression in ALL {
        let p = d.path().join(format!("{compression:?}.arrow"));
        write_fragment_file(&p, &mut data.clone(), &settings(1, compression, false)).unwrap();
        let bytes = Buffer::from_vec(std::fs::read(&p).unwrap());
        let file = read::ChunkedFile::from_whole(&p, bytes).unwrap();
        let decode = |r: usize, b: usize| file.decode(r, b).map(Arc::new);
        for (window, obs) in [
            (PixelWindow::new(0, 0, 4, 2), 0..40),
            (PixelWindow::new(1, 1, 1, 1), 3..37),
            (PixelWindow::new(2, 0, 2, 2), 39..40),
        ] {
            let parallel = file
                .view(window, obs.clone(), &decode, read::Decoding::Parallel)
                .unwrap();
            let in_order = file
                .view(window, obs.clone(), &decode, read::Decoding::Sequential)
                .unwrap();
            assert_eq!(parallel.record_batch(), in_order.record_batch());
            assert_eq!(parallel.len(), obs.len());
            if window == PixelWindow::new(0, 0, 4, 2) {
                for i in 0..40 {
                    let valid = parallel.valid_mask(i);
                    assert_eq!(valid[0], i % 3 != 0, "observation {i}");
                    assert!(!valid[3] && !valid[7] && valid[5]);
                }
            }
            // Pixel (row 1, col 1) of observation i is i * 8 + 5 + 1.
            if window == PixelWindow::new(1, 1, 1, 1) {
                for (k, i) in obs.clone().enumerate() {
                    assert_eq!(parallel.pixels::<u16>(k).unwrap(), &[i as u16 * 8 + 6]);
                    assert_eq!(parallel.scene_id(k), format!("s{i}"));
                }
            }
        }
    }
}
