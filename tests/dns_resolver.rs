//! The built-in resolver against a tiny DNS server (UDP and TCP) on 127.0.0.1, reached
//! through an injected `resolv.conf`, and an HTTP fetch by host name through it. Nothing
//! but 127.0.0.1 is ever contacted.

mod support;

use pixelquery::source;
use pixelquery::source::resolve::{self, Error, Resolver};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use support::server::{Behaviour, Server};

/// How the DNS server misbehaves.
#[derive(Debug, Clone, Copy, Default)]
struct Quirks {
    /// Never answer (UDP nor TCP).
    silent: bool,
    /// Before each real UDP answer, send one with another id and a bogus address.
    wrong_id_first: bool,
    /// Over UDP, answer with TC set and no records, so the client must ask over TCP.
    truncate_udp: bool,
}

/// A DNS server for the zone below, on one port of 127.0.0.1 for both UDP and TCP. Its
/// threads stop when it is dropped.
struct Dns {
    port: u16,
    udp_queries: Arc<AtomicU32>,
    tcp_queries: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The records of a name: (type, data), CNAME targets as dotted names.
fn zone(name: &str) -> Option<Vec<(u16, Vec<u8>)>> {
    let a = |ip: [u8; 4]| (1u16, ip.to_vec());
    let aaaa = |ip: &str| {
        (
            28u16,
            ip.parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec(),
        )
    };
    let cname = |target: &str| (5u16, encode_name(target));
    Some(match name {
        "example.test" | "a.example.test" => vec![a([127, 0, 0, 1])],
        "v6.example.test" => vec![aaaa("::1")],
        "both.example.test" => vec![a([127, 0, 0, 2]), aaaa("::1")],
        "alias.example.test" => vec![cname("hop.example.test")],
        "hop.example.test" => vec![cname("a.example.test")],
        "loop.example.test" => vec![cname("loop.example.test")],
        "dangling.example.test" => vec![cname("elsewhere.example.test")],
        "big.example.test" => (1..=60).map(|i| a([127, 0, 1, i])).collect(),
        "empty.example.test" => vec![],
        _ => return None,
    })
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// (id, lower-cased name, type, end of question) of a query.
fn parse_query(q: &[u8]) -> Option<(u16, String, u16, usize)> {
    let id = u16::from_be_bytes([*q.first()?, *q.get(1)?]);
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    Some((id, labels.join("."), qtype, pos + 4))
}

/// The answer to a query, as a recursive server gives it: the CNAME chain and the target's
/// records of the asked type.
fn answer(query: &[u8], truncate: bool) -> Option<Vec<u8>> {
    let (id, name, qtype, qend) = parse_query(query)?;
    let mut records: Vec<(String, u16, Vec<u8>)> = Vec::new();
    let mut rcode = 0;
    let mut current = name;
    for _ in 0..10 {
        let Some(rrs) = zone(&current) else {
            rcode = if records.is_empty() { 3 } else { 0 };
            break;
        };
        let alias = rrs.iter().find(|(t, _)| *t == 5).cloned();
        for (t, data) in rrs {
            if t == qtype || t == 5 {
                records.push((current.clone(), t, data));
            }
        }
        match alias {
            Some((_, target)) => {
                let target = parse_query(&[&[0u8; 12][..], &target, &[0, 0]].concat())?.1;
                if target == current {
                    break;
                }
                current = target;
            }
            None => break,
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    let flags: u16 = 0x8180 | rcode | if truncate { 0x0200 } else { 0 };
    out.extend_from_slice(&flags.to_be_bytes());
    let ancount = if truncate { 0 } else { records.len() as u16 };
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&ancount.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..qend]);
    if !truncate {
        for (i, (owner, t, data)) in records.iter().enumerate() {
            if i == 0 {
                out.extend_from_slice(&[0xc0, 12]); // compressed: the question's name
            } else {
                out.extend_from_slice(&encode_name(owner));
            }
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
    }
    Some(out)
}

impl Dns {
    fn start(quirks: Quirks) -> Dns {
        // One port for both transports: take a UDP port, then the same TCP port.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
                break (udp, tcp);
            }
        };
        let port = udp.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let udp_queries = Arc::new(AtomicU32::new(0));
        let tcp_queries = Arc::new(AtomicU32::new(0));
        {
            let (stop, count) = (stop.clone(), udp_queries.clone());
            udp.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((len, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    if quirks.silent {
                        continue;
                    }
                    let Some(reply) = answer(&buf[..len], quirks.truncate_udp) else {
                        continue;
                    };
                    if quirks.wrong_id_first {
                        let mut spoof = answer(&buf[..len], false).unwrap();
                        spoof[1] ^= 1;
                        // Make its addresses bogus, so accepting it would show.
                        if let Some(last) = spoof.last_mut() {
                            *last = 99;
                        }
                        let _ = udp.send_to(&spoof, peer);
                    }
                    let _ = udp.send_to(&reply, peer);
                }
            });
        }
        {
            let (stop, count) = (stop.clone(), tcp_queries.clone());
            tcp.set_nonblocking(true).unwrap();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut stream, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    count.fetch_add(1, Ordering::SeqCst);
                    if quirks.silent {
                        std::thread::sleep(Duration::from_secs(3));
                        continue;
                    }
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
                    if stream.read_exact(&mut query).is_err() {
                        continue;
                    }
                    if let Some(reply) = answer(&query, false) {
                        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        let _ = stream.write_all(&framed);
                    }
                }
            });
        }
        Dns {
            port,
            udp_queries,
            tcp_queries,
            stop,
        }
    }
}

/// A resolver whose hosts file has `hosts` and whose resolv.conf has `conf`, in a temporary
/// directory kept alive by the returned guard.
fn resolver(hosts: &str, conf: &str) -> (Resolver, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (h, c): (PathBuf, PathBuf) = (dir.path().join("hosts"), dir.path().join("resolv.conf"));
    std::fs::write(&h, hosts).unwrap();
    std::fs::write(&c, conf).unwrap();
    (Resolver::with_files(h, c), dir)
}

fn conf_for(dns: &Dns) -> String {
    format!(
        "# test\nsearch example.test\nnameserver [127.0.0.1]:{}\noptions timeout:2 attempts:2\n",
        dns.port
    )
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn a_aaaa_and_cname_answers() {
    let dns = Dns::start(Quirks::default());
    let (r, _dir) = resolver("", &conf_for(&dns));
    assert_eq!(r.lookup("a.example.test").unwrap(), ips(&["127.0.0.1"]));
    assert_eq!(r.lookup("A.Example.TEST.").unwrap(), ips(&["127.0.0.1"]));
    assert_eq!(r.lookup("v6.example.test").unwrap(), ips(&["::1"]));
    assert_eq!(
        r.lookup("both.example.test").unwrap(),
        ips(&["127.0.0.2", "::1"])
    );
    // alias -> hop -> a, all in one answer.
    assert_eq!(r.lookup("alias.example.test").unwrap(), ips(&["127.0.0.1"]));
    // Literals, localhost and the hosts file never reach the server.
    let before = dns.udp_queries.load(Ordering::SeqCst);
    assert_eq!(r.lookup("127.0.0.9").unwrap(), ips(&["127.0.0.9"]));
    assert_eq!(r.lookup("[::1]").unwrap(), ips(&["::1"]));
    assert_eq!(r.lookup("localhost").unwrap(), ips(&["127.0.0.1", "::1"]));
    assert_eq!(dns.udp_queries.load(Ordering::SeqCst), before);
    assert_eq!(dns.tcp_queries.load(Ordering::SeqCst), 0);
}

#[test]
fn hosts_file_comes_before_dns() {
    let dns = Dns::start(Quirks::default());
    let (r, _dir) = resolver("127.0.0.5 a.example.test\n", &conf_for(&dns));
    assert_eq!(r.lookup("a.example.test").unwrap(), ips(&["127.0.0.5"]));
    assert_eq!(dns.udp_queries.load(Ordering::SeqCst), 0);
}

#[test]
fn nxdomain_and_nodata_are_clear_errors() {
    let dns = Dns::start(Quirks::default());
    let (r, _dir) = resolver("", &conf_for(&dns));
    let err = r.lookup("nope.example.test").unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("nope.example.test: no such host (NXDOMAIN from 127.0.0.1:"),
        "{msg}"
    );
    assert!(!err.is_transient());
    for host in [
        "empty.example.test",
        "dangling.example.test",
        "loop.example.test",
    ] {
        let err = r.lookup(host).unwrap_err();
        assert!(matches!(err, Error::NoAddress { .. }), "{host}: {err:?}");
        assert!(err.to_string().starts_with(host), "{err}");
    }
}

#[test]
fn silent_server_times_out_with_a_clear_error() {
    let dns = Dns::start(Quirks {
        silent: true,
        ..Default::default()
    });
    let conf = format!(
        "nameserver [127.0.0.1]:{}\noptions timeout:1 attempts:2\n",
        dns.port
    );
    let (r, _dir) = resolver("", &conf);
    let t0 = Instant::now();
    let err = r.lookup("a.example.test").unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());
    let msg = err.to_string();
    assert!(
        msg.starts_with("a.example.test: no answer from 127.0.0.1:") && msg.contains("2 attempts"),
        "{msg}"
    );
    // Two rounds of one second each, and not much more.
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // A and AAAA in flight together, in each of the two rounds.
    assert_eq!(dns.udp_queries.load(Ordering::SeqCst), 4);
}

#[test]
fn answers_with_another_id_are_ignored() {
    let dns = Dns::start(Quirks {
        wrong_id_first: true,
        ..Default::default()
    });
    let (r, _dir) = resolver("", &conf_for(&dns));
    assert_eq!(r.lookup("a.example.test").unwrap(), ips(&["127.0.0.1"]));
    assert_eq!(
        r.lookup("both.example.test").unwrap(),
        ips(&["127.0.0.2", "::1"])
    );
}

#[test]
fn truncated_answers_are_asked_again_over_tcp() {
    let dns = Dns::start(Quirks {
        truncate_udp: true,
        ..Default::default()
    });
    let (r, _dir) = resolver("", &conf_for(&dns));
    let got = r.lookup("big.example.test").unwrap();
    let want: Vec<IpAddr> = (1..=60).map(|i| IpAddr::from([127, 0, 1, i])).collect();
    assert_eq!(got, want);
    // A and AAAA were both truncated: two TCP queries.
    assert_eq!(dns.tcp_queries.load(Ordering::SeqCst), 2);
}

#[test]
fn a_dead_nameserver_is_skipped() {
    let dns = Dns::start(Quirks::default());
    // A port with nothing behind it: UDP is refused (ICMP port unreachable).
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let conf = format!(
        "nameserver [127.0.0.1]:{dead_port}\nnameserver [127.0.0.1]:{}\noptions timeout:2\n",
        dns.port
    );
    let (r, _dir) = resolver("", &conf);
    let t0 = Instant::now();
    assert_eq!(r.lookup("a.example.test").unwrap(), ips(&["127.0.0.1"]));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn missing_or_empty_resolv_conf_is_a_clear_error() {
    let (r, dir) = resolver("", "# nothing\n");
    let err = r.lookup("a.example.test").unwrap_err();
    assert!(matches!(err, Error::NoNameservers { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with("a.example.test: no nameserver in "));
    let r = Resolver::with_files(dir.path().join("hosts"), dir.path().join("missing.conf"));
    let err = r.lookup("a.example.test").unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.conf"), "{err}");
    let err = r.lookup("bad..name").unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");
}

/// A proxy from the environment would receive requests for `example.test`: such runs skip
/// the HTTP tests rather than send anything anywhere but 127.0.0.1.
fn proxy_configured() -> bool {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// One DNS server for the process-wide default resolver, set once for both HTTP tests.
fn default_dns() -> &'static Dns {
    static DNS: OnceLock<(Dns, tempfile::TempDir)> = OnceLock::new();
    let (dns, _) = DNS.get_or_init(|| {
        let dns = Dns::start(Quirks::default());
        let (r, dir) = resolver("", &conf_for(&dns));
        resolve::set_default(r);
        (dns, dir)
    });
    dns
}

#[test]
fn http_fetch_by_host_name_goes_through_the_resolver() {
    if proxy_configured() {
        eprintln!("skipped: a proxy is configured in the environment");
        return;
    }
    let dns = default_dns();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let http = Server::start(data.clone(), Behaviour::default());
    let port = http.base().rsplit_once(':').unwrap().1.to_string();
    let before = dns.udp_queries.load(Ordering::SeqCst);
    let src = source::open(&format!("http://example.test:{port}/scene.tif")).unwrap();
    assert_eq!(src.size(), data.len() as u64);
    assert_eq!(
        &src.read_at(70_000, 1000).unwrap()[..],
        &data[70_000..71_000]
    );
    assert!(dns.udp_queries.load(Ordering::SeqCst) > before);
    assert!(http.requests() >= 1);
}

#[test]
fn http_fetch_of_an_unknown_host_fails_at_once_naming_it() {
    if proxy_configured() {
        eprintln!("skipped: a proxy is configured in the environment");
        return;
    }
    default_dns();
    let t0 = Instant::now();
    let err = source::open("http://nope.example.test:9/scene.tif")
        .err()
        .expect("an unknown host cannot be opened");
    let msg = err.to_string();
    assert!(
        msg.contains("nope.example.test: no such host") && msg.contains("after 1 attempts"),
        "{msg}"
    );
    // Not retried with backoff.
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}
