//! `pixelquery inspect` as a user runs it.

mod common;

fn inspect(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    common::run_cli(&all, &[])
}

fn fixture(name: &str) -> String {
    common::fixtures()
        .join("cog")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn json_report_has_the_essentials() {
    let file = fixture("u16_deflate_pred2_tiled16_pixel_ovr2.tif");
    let (code, stdout, stderr) = inspect(&[&file, "--json", "--pixel-hash"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["crs"], "EPSG:32652");
    assert_eq!(v["width"], 100);
    assert_eq!(v["height"], 75);
    assert_eq!(v["bands"].as_array().unwrap().len(), 4);
    assert_eq!(v["bands"][0]["dtype"], "u16");
    assert_eq!(v["compression"], "DEFLATE");
    assert_eq!(v["predictor"], 2);
    assert_eq!(v["layout"], "tiled");
    assert_eq!(v["overviews"].as_array().unwrap().len(), 2);
    assert_eq!(v["pixels_sha256_16"], "ed5f4f041d4b0d63");
    assert_eq!(v["bounds"]["min_x"], 399960.0);
}

#[test]
fn text_report_names_codec_layout_and_time() {
    let (code, stdout, _) = inspect(&[&fixture("u16_deflate_pred2_tiled16_pixel.tif")]);
    assert_eq!(code, 0);
    for needle in [
        "EPSG:32652",
        "DEFLATE, predictor 2",
        "tiled, 16x16",
        "2023-06-11T02:16:59",
        "nodata=0",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
}

#[test]
fn errors_are_one_line_naming_the_file_with_nonzero_exit() {
    for (file, reason) in [
        (fixture("broken/not_a_tiff.tif"), "not a TIFF"),
        (fixture("broken/zero_width.tif"), "zero_width.tif"),
        ("/no/such/file.tif".to_string(), "No such file"),
    ] {
        let (code, stdout, stderr) = inspect(&[&file]);
        assert_ne!(code, 0);
        assert!(stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(reason),
            "{stderr}"
        );
    }
    let (code, _, stderr) = inspect(&[&fixture("broken/corrupt_deflate_tile.tif"), "--pixel-hash"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("DEFLATE") && stderr.contains("corrupt_deflate_tile.tif"),
        "{stderr}"
    );
}
