//! Entry points for the `cargo fuzz` targets in `fuzz/`: every parser of input that comes
//! from the network or from a shared warehouse, callable on arbitrary bytes. Not part of the
//! supported API.

use crate::source::{s3_xml, ByteSource, HttpSource, RemoteOptions};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Every S3 XML parser on one document (listing, error body, multipart answers).
pub fn s3_xml(data: &[u8]) {
    let _ = s3_xml::parse_list(data);
    let _ = s3_xml::parse_error(data);
    let _ = s3_xml::parse_upload_id(data);
    let _ = s3_xml::complete_succeeded(data);
}

/// The DNS reply decoder of the built-in resolver (a spoofed UDP answer is anyone's input).
pub fn dns_reply(data: &[u8]) {
    let _ = crate::source::resolve::wire::decode_reply(data);
}

/// The `Content-Range` parser.
pub fn content_range(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((start, end, total)) = crate::source::http::parse_content_range(text) {
            assert!(start < end && end <= total);
        }
    }
}

/// A loopback HTTP server that answers every request with the bytes it is given.
struct Canned {
    port: u16,
    answer: Mutex<Vec<u8>>,
}

fn canned() -> &'static Canned {
    static SERVER: OnceLock<&'static Canned> = OnceLock::new();
    SERVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let server: &'static Canned = Box::leak(Box::new(Canned {
            port: listener.local_addr().expect("address").port(),
            answer: Mutex::new(Vec::new()),
        }));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let mut stream = stream;
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let answer = server
                    .answer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let _ = stream.write_all(&answer);
            }
        });
        server
    })
}

/// An HTTP answer (status line, headers, body) as the remote source receives it: opening a
/// URL (range request, `Content-Range`, validators, body length) and reading two ranges.
pub fn http_answer(data: &[u8]) {
    let server = canned();
    *server.answer.lock().unwrap_or_else(|e| e.into_inner()) = data.to_vec();
    let options = RemoteOptions {
        retries: 0,
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(1),
        readahead: 64,
        cache_bytes: 0,
        ..RemoteOptions::default()
    };
    let url = format!("http://127.0.0.1:{}/fuzz.tif", server.port);
    if let Ok(source) = HttpSource::open(&url, &options) {
        let size = source.size();
        let _ = source.read_at(0, 16.min(size as usize));
        if size > 8 {
            let _ = source.read_ranges(&[0..4, size - 4..size]);
        }
    }
}

/// A JSON commit of a warehouse's Delta log, streamed and applied to a table state.
pub fn delta_commit(data: &[u8]) {
    crate::store::fuzz::delta_commit(data);
}

/// A Delta checkpoint (Parquet), with and without tombstones.
pub fn checkpoint(data: &[u8]) {
    crate::store::fuzz::checkpoint(data);
}

/// A catalog part (GeoParquet) read as fragment rows and as scene rows.
pub fn catalog_part(data: &[u8]) {
    crate::store::fuzz::catalog_part(data);
}

/// A warehouse's `pixelquery.json`.
pub fn warehouse_config(data: &[u8]) {
    crate::store::fuzz::warehouse_config(data);
}

/// A fragment file, opened from memory and read through `Fragment`'s public accessors.
pub fn fragment(data: &[u8]) {
    crate::store::fuzz::fragment(data);
}
