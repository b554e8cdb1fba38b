//! `pixelquery inspect URL` against the crate's test server on 127.0.0.1.

mod common;
mod support;

use support::server::{Behaviour, Server};

fn inspect(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    common::run_cli(&all, env)
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn inspect_over_http_matches_the_local_file_and_reports_transfer() {
    let path = common::fixtures().join("cog/u16_deflate_pred2_tiled16_pixel_ovr2.tif");
    let data = std::fs::read(&path).unwrap();
    let size = data.len() as u64;
    let server = Server::start(data, Behaviour::default());
    let url = server.url("/u16_deflate_pred2_tiled16_pixel_ovr2.tif");

    let (code, stdout, stderr) = inspect(&[&url, "--json"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let remote = json(&stdout);
    assert_eq!(remote["file"], url.as_str());
    assert_eq!(remote["transfer"]["requests"], 1, "header in one request");
    assert_eq!(remote["transfer"]["bytes"], size.min(64 << 10));

    let (code, stdout, stderr) = inspect(&[&url, "--json", "--pixel-hash"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let mut remote = json(&stdout);
    let (code, stdout, _) = inspect(&[path.to_str().unwrap(), "--json", "--pixel-hash"], &[]);
    assert_eq!(code, 0);
    let mut local = json(&stdout);
    assert!(local.get("transfer").is_none());
    assert!(remote["transfer"]["requests"].as_u64().unwrap() >= 1);
    for v in [&mut remote, &mut local] {
        let obj = v.as_object_mut().unwrap();
        obj.remove("file");
        obj.remove("transfer");
    }
    assert_eq!(remote, local);

    // Text output says what it cost too.
    let (code, stdout, _) = inspect(&[&url], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("transfer: 1 requests"), "{stdout}");
}

#[test]
fn inspect_s3_through_an_endpoint_override() {
    let path = common::fixtures().join("cog/u16_deflate_pred2_tiled16_pixel.tif");
    let server = Server::start(std::fs::read(&path).unwrap(), Behaviour::default());
    let env = [
        ("AWS_ENDPOINT_URL", server.base()),
        ("AWS_REGION", "us-west-2".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, stdout, stderr) = inspect(&["s3://bucket/scenes/a.tif", "--json"], &env);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&stdout)["file"], "s3://bucket/scenes/a.tif");
    let request = &server.log()[0];
    assert_eq!(request.path, "/bucket/scenes/a.tif");
    assert!(
        request.header("authorization").is_none(),
        "anonymous without credentials"
    );
}

#[test]
fn remote_errors_are_one_line_naming_the_url() {
    let server = Server::start(
        Vec::new(),
        Behaviour {
            status: Some(404),
            ..Default::default()
        },
    );
    let url = server.url("/missing.tif");
    let (code, _, stderr) = inspect(&[&url], &[]);
    assert_eq!(code, 2);
    assert_eq!(stderr, format!("error: {url}: HTTP 404 Not Found\n"));
}
