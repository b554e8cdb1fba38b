//! Remote byte sources against the crate's own HTTP server on 127.0.0.1.
#![allow(clippy::single_range_in_vec_init)] // one-range reads are real calls here

mod support;

use pixelquery::source::{self, ByteSource, Error, HttpSource, RemoteOptions, ResponseProblem};
use std::time::{Duration, Instant};
use support::server::{Behaviour, Hostile, Server};

/// Deterministic, incompressible-looking content.
fn content(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Options for tests: fast retries, short timeouts.
fn quick() -> RemoteOptions {
    RemoteOptions {
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        read_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

fn serve(len: usize, behaviour: Behaviour) -> (Server, Vec<u8>) {
    let data = content(len);
    (Server::start(data.clone(), behaviour), data)
}

#[test]
fn header_is_one_request_and_close_tiles_are_merged() {
    let (server, data) = serve(1 << 20, Behaviour::default());
    let url = server.url("/scene.tif");
    let src = HttpSource::open(&url, &quick()).unwrap();
    assert_eq!(src.size(), 1 << 20);
    assert_eq!(src.etag(), Some("\"v1\""));
    let stats = src.stats().unwrap();
    assert_eq!((stats.requests, stats.bytes), (1, 64 << 10));
    assert_eq!(server.log()[0].header("range"), Some("bytes=0-65535"));

    // Header reads inside the read-ahead cost nothing.
    assert_eq!(&src.read_at(0, 8).unwrap()[..], &data[..8]);
    assert_eq!(&src.read_at(1000, 4000).unwrap()[..], &data[1000..5000]);
    assert_eq!(src.stats().unwrap().requests, 1);
    assert_eq!(src.stats().unwrap().cache_hits, 2);

    // Adjacent and close tiles: one request, and only the bytes between them as overhead.
    let tiles = [200_000..250_000, 250_000..300_000, 300_100..350_000];
    let out = src.read_ranges(&tiles).unwrap();
    for (r, b) in tiles.iter().zip(&out) {
        assert_eq!(&b[..], &data[r.start as usize..r.end as usize]);
    }
    let stats = src.stats().unwrap();
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.bytes, (64 << 10) + 150_000);
    // Every later request is conditional on the version first seen.
    let log = server.log();
    assert_eq!(log[1].header("range"), Some("bytes=200000-349999"));
    assert_eq!(log[1].header("if-match"), Some("\"v1\""));

    // Scattered tiles: one request each; the same tiles again come from the cache.
    let scattered = [900_000..910_000, 500_000..510_000, 700_000..710_000];
    let out = src.read_ranges(&scattered).unwrap();
    for (r, b) in scattered.iter().zip(&out) {
        assert_eq!(&b[..], &data[r.start as usize..r.end as usize]);
    }
    assert_eq!(src.stats().unwrap().requests, 5);
    src.read_ranges(&scattered).unwrap();
    assert_eq!(src.stats().unwrap().requests, 5);
    assert_eq!(server.requests(), 5);
}

#[test]
fn scattered_ranges_are_fetched_concurrently() {
    let delay = Duration::from_millis(300);
    let behaviour = Behaviour {
        delay,
        ..Default::default()
    };
    let (server, data) = serve(4 << 20, behaviour);
    let src = HttpSource::open(&server.url("/a.tif"), &quick()).unwrap();
    let ranges: Vec<_> = (0..8u64)
        .map(|i| (i + 1) * 400_000..(i + 1) * 400_000 + 1000)
        .collect();
    let t = Instant::now();
    let out = src.read_ranges(&ranges).unwrap();
    let took = t.elapsed();
    assert_eq!(server.requests(), 9);
    for (r, b) in ranges.iter().zip(&out) {
        assert_eq!(&b[..], &data[r.start as usize..r.end as usize]);
    }
    // Eight requests one after the other would take 2.4 s.
    assert!(took < delay * 4, "took {took:?}");
}

#[test]
fn long_runs_of_tiles_are_cut_into_concurrent_requests() {
    let (server, data) = serve(2 << 20, Behaviour::default());
    let options = RemoteOptions {
        max_request: 250_000,
        ..quick()
    };
    let src = HttpSource::open(&server.url("/run.tif"), &options).unwrap();
    let tiles: Vec<_> = (0..10u64)
        .map(|i| 100_000 + i * 100_000..200_000 + i * 100_000)
        .collect();
    let out = src.read_ranges(&tiles).unwrap();
    for (r, b) in tiles.iter().zip(&out) {
        assert_eq!(&b[..], &data[r.start as usize..r.end as usize]);
    }
    let stats = src.stats().unwrap();
    assert_eq!(stats.requests, 1 + 5, "two 100 kB tiles per request");
    assert_eq!(stats.bytes, (64 << 10) + 1_000_000);
}

#[test]
fn redirects_are_followed_with_the_range() {
    let behaviour = Behaviour {
        redirect_from: Some("/old.tif"),
        ..Default::default()
    };
    let (server, data) = serve(200_000, behaviour);
    let src = HttpSource::open(&server.url("/old.tif"), &quick()).unwrap();
    assert_eq!(src.size(), 200_000);
    assert_eq!(
        &src.read_at(150_000, 10).unwrap()[..],
        &data[150_000..150_010]
    );
    let log = server.log();
    assert_eq!(log[1].path, "/moved");
    assert_eq!(log[1].header("range"), Some("bytes=0-65535"));
}

#[test]
fn header_read_ahead_grows_for_large_headers() {
    let (server, data) = serve(1 << 20, Behaviour::default());
    let options = RemoteOptions {
        readahead: 4096,
        ..quick()
    };
    let src = HttpSource::open(&server.url("/big-ifd.tif"), &options).unwrap();
    // A parser walking sequentially through 60 KiB of IFDs in 1 KiB steps.
    for offset in (0..60 << 10).step_by(1024) {
        let got = src.read_at(offset, 1024).unwrap();
        assert_eq!(&got[..], &data[offset as usize..offset as usize + 1024]);
    }
    // 4 KiB, then 8, 16, 32 KiB windows: 60 KiB in 4 requests rather than 15.
    assert_eq!(server.requests(), 4);
    // A read straddling the end of what was fetched only fetches the rest.
    let stats = src.stats().unwrap();
    let straddle = src.read_at((60 << 10) - 512, 1024).unwrap();
    assert_eq!(&straddle[..], &data[(60 << 10) - 512..(60 << 10) + 512]);
    let range = server
        .log()
        .last()
        .unwrap()
        .header("range")
        .unwrap()
        .to_string();
    assert!(range.starts_with("bytes=61440-"), "{range}");
    assert!(src.stats().unwrap().bytes > stats.bytes);
}

#[test]
fn files_smaller_than_the_read_ahead_and_empty_files() {
    let (server, data) = serve(1000, Behaviour::default());
    let src = HttpSource::open(&server.url("/small.tif"), &quick()).unwrap();
    assert_eq!(src.size(), 1000);
    assert_eq!(&src.read_at(990, 10).unwrap()[..], &data[990..]);
    assert_eq!(src.stats().unwrap().requests, 1);
    let err = src.read_at(990, 11).unwrap_err();
    assert!(matches!(err, Error::PastEnd { .. }), "{err}");

    let (server, _) = serve(0, Behaviour::default());
    let src = HttpSource::open(&server.url("/empty.tif"), &quick()).unwrap();
    assert_eq!(src.size(), 0);
    assert!(src.read_at(0, 1).is_err());
}

#[test]
fn servers_that_ignore_range_are_refused_without_downloading() {
    let behaviour = Behaviour {
        ignore_range: true,
        ..Default::default()
    };
    let (server, _) = serve(8 << 20, behaviour.clone());
    let url = server.url("/norange.tif");
    let err = HttpSource::open(&url, &quick()).unwrap_err();
    assert!(
        matches!(err, Error::RangeNotSupported { status: 200, size: Some(s), .. } if s == 8 << 20)
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&url) && msg.contains("ignores HTTP Range"),
        "{msg}"
    );
    assert_eq!(server.requests(), 1);

    // A file no larger than the read-ahead is the whole answer anyway: that is fine.
    let (server, data) = serve(5000, behaviour);
    let src = HttpSource::open(&server.url("/tiny.tif"), &quick()).unwrap();
    assert_eq!(src.size(), 5000);
    assert_eq!(&src.read_at(4000, 1000).unwrap()[..], &data[4000..]);
}

#[test]
fn not_found_fails_at_once_naming_the_url() {
    let behaviour = Behaviour {
        status: Some(404),
        ..Default::default()
    };
    let (server, _) = serve(100, behaviour);
    let url = server.url("/missing.tif");
    let err = HttpSource::open(&url, &quick()).unwrap_err();
    assert!(matches!(
        err,
        Error::HttpStatus {
            status: 404,
            attempts: 1,
            ..
        }
    ));
    assert_eq!(err.to_string(), format!("{url}: HTTP 404 Not Found"));
    assert_eq!(server.requests(), 1, "4xx must not be retried");
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let behaviour = Behaviour {
        fail_first: 2,
        ..Default::default()
    };
    let (server, data) = serve(100_000, behaviour);
    let src = HttpSource::open(&server.url("/flaky.tif"), &quick()).unwrap();
    let stats = src.stats().unwrap();
    assert_eq!((stats.requests, stats.retries), (3, 2));
    assert_eq!(&src.read_at(0, 100).unwrap()[..], &data[..100]);

    let behaviour = Behaviour {
        fail_first: u32::MAX,
        ..Default::default()
    };
    let (server, _) = serve(100_000, behaviour);
    let url = server.url("/down.tif");
    let options = RemoteOptions {
        retries: 2,
        ..quick()
    };
    let err = HttpSource::open(&url, &options).unwrap_err();
    assert!(
        matches!(
            err,
            Error::HttpStatus {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with(&format!("{url}: HTTP 500 Internal Server Error")));
    assert_eq!(server.requests(), 3);
}

#[test]
fn retry_after_is_honoured_up_to_the_backoff_cap() {
    let behaviour = Behaviour {
        fail_first: 1,
        fail_status: 503,
        retry_after: Some(1),
        ..Default::default()
    };
    let (server, _) = serve(1000, behaviour);
    let options = RemoteOptions {
        max_backoff: Duration::from_secs(3),
        ..quick()
    };
    let t = Instant::now();
    let src = HttpSource::open(&server.url("/busy.tif"), &options).unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(src.stats().unwrap().retries, 1);
}

#[test]
fn throttling_is_retried_within_its_budget_not_a_retry_count() {
    // Six 503 Slow Down answers in a row outlast `retries: 1` but not a 20 s budget.
    let burst = Behaviour {
        fail_first: 6,
        fail_status: 503,
        ..Default::default()
    };
    let (server, _) = serve(1000, burst);
    let options = RemoteOptions {
        retries: 1,
        throttle_budget: Duration::from_secs(20),
        ..quick()
    };
    let src = HttpSource::open(&server.url("/busy.tif"), &options).unwrap();
    assert_eq!(src.stats().unwrap().retries, 6);

    // A store that never stops throttling: the budget ends it, naming the URL and attempts.
    let always = Behaviour {
        status: Some(503),
        ..Default::default()
    };
    let (server, _) = serve(1000, always);
    let url = server.url("/always.tif");
    let options = RemoteOptions {
        retries: 0,
        throttle_budget: Duration::from_millis(300),
        ..quick()
    };
    let t = Instant::now();
    let err = HttpSource::open(&url, &options).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let Error::HttpStatus {
        attempts,
        status: 503,
        ..
    } = err
    else {
        panic!("{err}")
    };
    assert!(attempts > 2, "{attempts} attempts");
    assert!(err.to_string().starts_with(&url), "{err}");
    assert!(
        err.to_string().contains(&format!("{attempts} attempts")),
        "{err}"
    );
}

#[test]
fn slow_servers_time_out_and_are_retried() {
    let slow = Behaviour {
        delay: Duration::from_secs(3),
        ..Default::default()
    };
    let (server, _) = serve(100_000, slow);
    let url = server.url("/slow.tif");
    let options = RemoteOptions {
        read_timeout: Duration::from_millis(200),
        retries: 1,
        ..quick()
    };
    let t = Instant::now();
    let err = HttpSource::open(&url, &options).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(matches!(err, Error::Timeout { attempts: 2, .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!("{url}: timed out")),
        "{err}"
    );

    // Slow only once: the retry succeeds.
    let once = Behaviour {
        delay: Duration::from_secs(3),
        delay_first: Some(1),
        ..Default::default()
    };
    let (server, _) = serve(100_000, once);
    let src = HttpSource::open(&server.url("/slow-once.tif"), &options).unwrap();
    assert_eq!(src.stats().unwrap().retries, 1);
}

#[test]
fn a_file_changed_mid_read_is_an_error() {
    // The server honours If-Match: 412.
    let behaviour = Behaviour {
        change_after: Some(1),
        ..Default::default()
    };
    let (server, _) = serve(1 << 20, behaviour.clone());
    let url = server.url("/changing.tif");
    let src = HttpSource::open(&url, &quick()).unwrap();
    let err = src.read_ranges(&[500_000..600_000]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Changed {
                what: "precondition",
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&url) && msg.contains("changed while it was being read"),
        "{msg}"
    );

    // The server ignores If-Match, but the ETag gives it away.
    let (server, _) = serve(
        1 << 20,
        Behaviour {
            honor_if_match: false,
            ..behaviour.clone()
        },
    );
    let src = HttpSource::open(&server.url("/etag.tif"), &quick()).unwrap();
    let err = src.read_at(500_000, 10).unwrap_err();
    assert!(matches!(err, Error::Changed { what: "ETag", .. }), "{err}");

    // No ETag at all: Last-Modified, sent as If-Unmodified-Since.
    let (server, _) = serve(
        1 << 20,
        Behaviour {
            etag: false,
            ..behaviour.clone()
        },
    );
    let src = HttpSource::open(&server.url("/lm.tif"), &quick()).unwrap();
    let err = src.read_at(500_000, 10).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Changed {
                what: "Last-Modified",
                ..
            }
        ),
        "{err}"
    );
    let log = server.log();
    assert_eq!(
        log[1].header("if-unmodified-since"),
        Some("Tue, 01 Jan 2030 00:00:00 GMT")
    );

    // Neither: a new size still shows.
    let (server, _) = serve(
        1 << 20,
        Behaviour {
            etag: false,
            last_modified: false,
            changed: Some(content(2 << 20)),
            ..behaviour
        },
    );
    let src = HttpSource::open(&server.url("/size.tif"), &quick()).unwrap();
    let err = src.read_at(500_000, 10).unwrap_err();
    assert!(matches!(err, Error::Changed { what: "size", .. }), "{err}");
}

#[test]
fn malformed_answers_are_errors_not_panics() {
    let cases = [
        (Hostile::NoContentRange, "no Content-Range"),
        (Hostile::WrongContentRange, "instead"),
        (Hostile::LongBody, "longer than"),
        (Hostile::ShortBody, "expected 65536"),
        (Hostile::HugeContentLength, "request failed"),
        (Hostile::Gzip, "unexpected Content-Encoding \"gzip\""),
    ];
    for (hostile, expected) in cases {
        let (server, _) = serve(
            1 << 20,
            Behaviour {
                hostile,
                ..Default::default()
            },
        );
        let url = server.url("/hostile.tif");
        let options = RemoteOptions {
            retries: 1,
            ..quick()
        };
        let err = HttpSource::open(&url, &options).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&url) && msg.contains(expected),
            "{hostile:?}: {msg}"
        );
        if hostile == Hostile::ShortBody {
            let short = ResponseProblem::ShortBody {
                expected: 65536,
                got: 32768,
            };
            assert!(matches!(err, Error::BadResponse { problem, .. } if problem == short));
            assert_eq!(server.requests(), 2, "a short body is retried");
        }
    }
}

#[test]
fn open_picks_the_source_by_location() {
    let (server, data) = serve(10_000, Behaviour::default());
    let remote = source::open(&server.url("/x.tif")).unwrap();
    assert_eq!(remote.size(), 10_000);
    assert_eq!(remote.stats().unwrap().requests, 1);
    assert_eq!(&remote.read_ranges(&[5..10]).unwrap()[0][..], &data[5..10]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("local.tif");
    std::fs::write(&path, &data).unwrap();
    let local = source::open(path.to_str().unwrap()).unwrap();
    assert_eq!(local.size(), 10_000);
    assert!(local.stats().is_none());

    let Err(err) = source::open("gs://bucket/key.tif") else {
        panic!("gs:// must be refused")
    };
    let err = err.to_string();
    assert!(
        err.contains("gs://bucket/key.tif") && err.contains("unsupported scheme"),
        "{err}"
    );

    // s3:// through an endpoint override, path-style, anonymous.
    let options = RemoteOptions {
        s3_endpoint: Some(server.base()),
        ..quick()
    };
    let s3 = source::open_with("s3://my-bucket/scenes/a b.tif", &options).unwrap();
    assert_eq!(s3.name(), "s3://my-bucket/scenes/a b.tif");
    assert_eq!(s3.size(), 10_000);
    let last = server.log().pop().unwrap();
    assert_eq!(last.path, "/my-bucket/scenes/a%20b.tif");
}

/// `cargo test --no-default-features --test http_source`: no TLS, and it says so.
#[cfg(not(feature = "https"))]
#[test]
fn https_without_the_feature_is_a_clear_error() {
    // Refused before any connection is attempted.
    let err = HttpSource::open("https://127.0.0.1:9/x.tif", &quick()).unwrap_err();
    assert!(matches!(err, Error::HttpsUnavailable { .. }), "{err}");
    assert!(
        err.to_string().contains("without the `https` feature"),
        "{err}"
    );
}
