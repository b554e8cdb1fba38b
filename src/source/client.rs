//! The HTTP client under remote sources: a `ureq` agent with our timeouts, TLS provider and
//! proxy policy, and the sorting of failures into "retry" and "give up".
//!
//! Host names are resolved by `ureq`'s default resolver, which is the standard library's
//! `ToSocketAddrs`, i.e. the C library's `getaddrinfo` (see `docs/remote.md` about static
//! builds).

use super::http::RemoteOptions;
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
pub(crate) fn agent(options: &RemoteOptions, loopback: bool) -> ureq::Agent {
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
    config = tls::configure(config);
    if loopback {
        config = config.proxy(None);
    }
    config.build().new_agent()
}

#[cfg(all(
    feature = "https",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod tls {
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
    /// static binary needs no certificate files on the host).
    pub(super) fn configure(config: super::AgentConfig) -> super::AgentConfig {
        static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
        if !cpu_supported() {
            return config; // https URLs are refused before any request is made
        }
        let provider = PROVIDER.get_or_init(|| Arc::new(rustls_graviola::default_provider()));
        config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::WebPki)
                .unversioned_rustls_crypto_provider(provider.clone())
                .build(),
        )
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

    pub(super) fn configure(config: super::AgentConfig) -> super::AgentConfig {
        config
    }
}
