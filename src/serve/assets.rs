//! The map page and its static files, embedded in the binary (no CDN: it works offline).
//!
//! Leaflet 1.9.4 (BSD-2-Clause) and uPlot 1.6.32 (MIT) are vendored unmodified from their npm
//! packages (`npm pack leaflet@1.9.4 uplot@1.6.32`; the minified dist files and licences are in
//! `assets/vendor/`).

/// A static file: its bytes and content type.
pub struct Asset {
    /// The bytes.
    pub bytes: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

/// The page; `{{CONFIG}}` is replaced by the page's settings as JSON.
pub const INDEX_HTML: &str = include_str!("assets/index.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Files under `/static/`, by name.
const FILES: [(&str, Asset); 9] = [
    (
        "app.js",
        Asset {
            bytes: include_bytes!("assets/app.js"),
            content_type: JS,
        },
    ),
    (
        "app.css",
        Asset {
            bytes: include_bytes!("assets/app.css"),
            content_type: CSS,
        },
    ),
    (
        "leaflet.js",
        Asset {
            bytes: include_bytes!("assets/vendor/leaflet-1.9.4/leaflet.js"),
            content_type: JS,
        },
    ),
    (
        "leaflet.css",
        Asset {
            bytes: include_bytes!("assets/vendor/leaflet-1.9.4/leaflet.css"),
            content_type: CSS,
        },
    ),
    (
        "LICENSE.leaflet.txt",
        Asset {
            bytes: include_bytes!("assets/vendor/leaflet-1.9.4/LICENSE"),
            content_type: TEXT,
        },
    ),
    (
        "uPlot.iife.min.js",
        Asset {
            bytes: include_bytes!("assets/vendor/uplot-1.6.32/uPlot.iife.min.js"),
            content_type: JS,
        },
    ),
    (
        "uPlot.min.css",
        Asset {
            bytes: include_bytes!("assets/vendor/uplot-1.6.32/uPlot.min.css"),
            content_type: CSS,
        },
    ),
    (
        "LICENSE.uplot.txt",
        Asset {
            bytes: include_bytes!("assets/vendor/uplot-1.6.32/LICENSE"),
            content_type: TEXT,
        },
    ),
    (
        "favicon.svg",
        Asset {
            bytes: b"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><rect width='16' height='16' fill='#1b7837'/><rect x='4' y='4' width='8' height='8' fill='#d9f0d3'/></svg>",
            content_type: "image/svg+xml",
        },
    ),
];

/// The static file `name`, if there is one (exact names only: nothing is read from disk).
pub fn get(name: &str) -> Option<&'static Asset> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, a)| a)
}

/// A version tag of the embedded files (for their ETags).
pub fn tag() -> String {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::with_seed(0);
    h.write(INDEX_HTML.as_bytes());
    for (name, a) in &FILES {
        h.write(name.as_bytes());
        h.write(a.bytes);
    }
    format!("{:016x}", h.finish())
}
