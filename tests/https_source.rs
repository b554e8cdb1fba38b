//! HTTPS with the default TLS stack (rustls + graviola) against the test server on 127.0.0.1,
//! with the test CA of `tests/tls/` (made by `tests/tls/make.sh`).
#![cfg(all(
    feature = "https",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]

mod support;

use pixelquery::source::{ByteSource, Error, HttpSource, RemoteOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use support::server::{Behaviour, Server};

fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls")
}

fn server(content: Vec<u8>) -> Server {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(tls_dir().join("server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(tls_dir().join("server.key")).unwrap();
    let provider = Arc::new(rustls_graviola::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Server::start_tls(content, Behaviour::default(), Arc::new(config))
}

#[test]
fn https_range_reads_with_a_trusted_ca() {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let server = server(data.clone());
    let url = server.url("/scene.tif");
    assert!(url.starts_with("https://127.0.0.1:"));
    let options = RemoteOptions {
        ca_file: Some(tls_dir().join("ca.pem")),
        ..Default::default()
    };
    let src = HttpSource::open(&url, &options).unwrap();
    assert_eq!(src.size(), 300_000);
    let out = src
        .read_ranges(&[100_000..150_000, 250_000..300_000])
        .unwrap();
    assert_eq!(&out[0][..], &data[100_000..150_000]);
    assert_eq!(&out[1][..], &data[250_000..300_000]);
    assert_eq!(src.stats().unwrap().requests, 3);
}

#[test]
fn an_untrusted_certificate_fails_at_once() {
    let server = server(vec![1; 1000]);
    let url = server.url("/scene.tif");
    let options = RemoteOptions {
        ca_file: Some(tls_dir().join("other-ca.pem")),
        ..Default::default()
    };
    let err = HttpSource::open(&url, &options).unwrap_err();
    assert!(matches!(err, Error::Transport { attempts: 1, .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&url) && msg.contains("certificate"),
        "{msg}"
    );
}

#[test]
fn a_bad_ca_file_is_an_error_naming_it() {
    let server = server(vec![1; 1000]);
    let url = server.url("/scene.tif");
    for (file, expected) in [
        ("missing.pem", "No such file"),
        ("make.sh", "no certificates"),
    ] {
        let path = tls_dir().join(file);
        let options = RemoteOptions {
            ca_file: Some(path.clone()),
            ..Default::default()
        };
        let err = HttpSource::open(&url, &options).unwrap_err().to_string();
        assert!(
            err.starts_with(&path.display().to_string()) && err.contains(expected),
            "{err}"
        );
    }
    assert_eq!(server.requests(), 0);
}
