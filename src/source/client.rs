//! The HTTP client under remote sources: a `ureq` agent with our timeouts, TLS provider and
//! proxy policy, and the sorting of failures into "retry" and "give up".
//!
//! Host names are resolved by [`super::resolve`] (pure Rust, no NSS), or by the C library's
//! `getaddrinfo` with `PIXELQUERY_RESOLVER=system` (see `docs/name-resolution.md`).

use super::http::RemoteOptions;
use super::Result;
use std::time::Duration;

/// What a failed request means for the caller.
pub(crate) enum Failure {
    /// No answer in time: worth retrying.
    Timeout(ureq::Error),
    /// Connection refused or dropped, I/O error: worth retrying.
    Transient(ureq::Error),
    /// Retrying cannot help (bad URL, unknown host, TLS failure, too many redirects).
    Fatal(ureq::Error),
}

/// Sorts a `ureq` error.
pub(crate) fn classify(e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Timeout(_) => Failure::Timeout(e),
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut => Failure::Timeout(e),
        // No such host, invalid name, bad resolver setup: the same answer next time.
        ureq::Error::Io(ref io) if super::resolve::is_permanent(io) => Failure::Fatal(e),
        // rustls reports certificate and handshake failures this way: retrying cannot help.
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::InvalidData => {
            Failure::Fatal(e)
        }
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_) => {
            Failure::Transient(e)
        }
        _ => Failure::Fatal(e),
    }
}

/// Sorts an I/O error met while reading a response body (`ureq` wraps its own errors in it).
/// A body that breaks off is always worth another try.
pub(crate) fn classify_io(e: std::io::Error) -> Failure {
    match classify(ureq::Error::from(e)) {
        Failure::Fatal(e) => Failure::Transient(e),
        other => other,
    }
}

/// Why HTTPS cannot be used here, or `None` when it can.
pub(crate) fn https_unavailable() -> Option<&'static str> {
    tls::unavailable()
}

type AgentConfig = ureq::config::ConfigBuilder<ureq::typestate::AgentScope>;

/// An agent for one host. Proxies come from the usual environment variables (`HTTPS_PROXY`,
/// `NO_PROXY`, ...) except for loopback hosts, which are always reached directly.
/// TLS trusts Mozilla's roots (compiled in), or only the PEM certificates of
/// [`RemoteOptions::ca_file`] / `SSL_CERT_FILE` when one is given.
pub(crate) fn agent(options: &RemoteOptions, loopback: bool) -> Result<ureq::Agent> {
    let timeout = |d: Duration| (!d.is_zero()).then_some(d);
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("pixelquery/", env!("CARGO_PKG_VERSION")))
        .max_redirects(5)
        .timeout_connect(timeout(options.connect_timeout))
        .timeout_recv_response(timeout(options.read_timeout))
        .timeout_per_read(timeout(options.read_timeout))
        .timeout_global(timeout(options.request_timeout))
        .max_idle_connections_per_host(options.concurrency.max(1) * 2);
    config = tls::configure(config, options)?;
    if loopback {
        config = config.proxy(None);
    }
    Ok(ureq::Agent::with_parts(
        config.build(),
        ureq::unversioned::transport::DefaultConnector::new(),
        super::resolve::for_agent(),
    ))
}

#[cfg(all(
    feature = "https",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod tls {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, OnceLock};

    /// graviola asserts these at first use; checking first turns a panic into an error.
    fn cpu_supported() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
                && std::arch::is_x86_feature_detected!("bmi1")
                && std::arch::is_x86_feature_detected!("bmi2")
                && std::arch::is_x86_feature_detected!("adx")
                && std::arch::is_x86_feature_detected!("avx")
                && std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("aes")
                && std::arch::is_aarch64_feature_detected!("sha2")
                && std::arch::is_aarch64_feature_detected!("pmull")
                && std::arch::is_aarch64_feature_detected!("neon")
        }
    }

    pub(super) fn unavailable() -> Option<&'static str> {
        (!cpu_supported()).then_some(
            "the pure-Rust TLS crypto (graviola) needs AES, carry-less multiply and, on x86_64, \
             AVX2/BMI2/ADX (most CPUs since 2014); this CPU lacks one of them",
        )
    }

    /// rustls with graviola's crypto and Mozilla's root certificates (compiled in, so a
    /// static binary needs no certificate files on the host), or the given CA file's.
    pub(super) fn configure(
        config: super::AgentConfig,
        options: &super::RemoteOptions,
    ) -> super::Result<super::AgentConfig> {
        static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
        if !cpu_supported() {
            return Ok(config); // https URLs are refused before any request is made
        }
        let provider = PROVIDER.get_or_init(|| Arc::new(rustls_graviola::default_provider()));
        let ca_file = options
            .ca_file
            .clone()
            .or_else(|| std::env::var_os("SSL_CERT_FILE").map(PathBuf::from));
        let roots = match ca_file {
            Some(path) => ureq::tls::RootCerts::new_with_certs(&read_pem_certs(&path)?),
            None => ureq::tls::RootCerts::WebPki,
        };
        Ok(config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(roots)
                .unversioned_rustls_crypto_provider(provider.clone())
                .build(),
        ))
    }

    /// The certificates of a PEM file (other items, such as keys, are skipped).
    fn read_pem_certs(path: &Path) -> super::Result<Vec<ureq::tls::Certificate<'static>>> {
        let name = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| super::super::Error::Io {
            name: name.clone(),
            source,
        })?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
                Ok(_) => {}
                Err(_) => {
                    return Err(super::super::Error::CaFile {
                        path: name,
                        problem: "unreadable PEM",
                    })
                }
            }
        }
        if certs.is_empty() {
            return Err(super::super::Error::CaFile {
                path: name,
                problem: "no certificates in it",
            });
        }
        Ok(certs)
    }
}

#[cfg(not(all(
    feature = "https",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod tls {
    pub(super) fn unavailable() -> Option<&'static str> {
        if cfg!(feature = "https") {
            Some("the pure-Rust TLS crypto (graviola) supports only x86_64 and aarch64")
        } else {
            Some("this build was made without the `https` feature (see docs/remote.md)")
        }
    }

    pub(super) fn configure(
        config: super::AgentConfig,
        _options: &super::RemoteOptions,
    ) -> super::Result<super::AgentConfig> {
        Ok(config)
    }
}
