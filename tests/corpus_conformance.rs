//! Conformance over the shared GDAL corpus (`../shared/corpus`), when it is present: every
//! lossless file decodes to the manifest's `pixels_sha256_16`, and every broken file either
//! errors cleanly (one line naming the file) or reads like GDAL does.

mod common;

use common::{corpus, read_manifest};
use pixelquery::cog::{Cog, Error};

#[test]
fn every_corpus_file_matches_gdal_or_fails_cleanly() {
    let Some(dir) = corpus() else {
        eprintln!("../shared/corpus not found; skipping the corpus conformance test");
        return;
    };
    let mut matched = 0;
    for row in read_manifest(&dir.join("MANIFEST.tsv")) {
        let path = dir.join(row.path());
        let name = row.path().to_string();
        let codec = row.get("compression").unwrap_or("-");
        let result = Cog::open(&path).and_then(|c| c.pixel_hash());
        match row.get("pixels_sha256_16") {
            Some(_) if codec.starts_with("LERC") => {
                let err = result.expect_err(&name);
                assert!(
                    matches!(err, Error::Unsupported { .. }) && err.to_string().contains("LERC"),
                    "{name}: {err}"
                );
            }
            Some(_) if codec.contains("JPEG") || codec == "WEBP" => {
                // Lossy: decoders may differ from libjpeg/libwebp in the last bit.
                result.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            Some(want) => {
                let got = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got, want, "{name}");
                matched += 1;
            }
            None => {
                let msg = result.expect_err(&name).to_string();
                let file = path.file_name().unwrap().to_str().unwrap();
                assert!(msg.contains(file), "{name}: {msg}");
                assert!(!msg.contains('\n'), "{name}: {msg}");
            }
        }
    }
    assert!(matched >= 30, "only {matched} corpus files matched");
}
