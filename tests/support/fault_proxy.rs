//! A fault-injecting HTTP proxy on 127.0.0.1 for the object-storage tests: it sits between
//! PixelQuery and a real S3 server (SeaweedFS) and, for the requests that match a rule,
//! misbehaves the way networks and stores do: the answer to a request the server *did* carry
//! out is lost (connection dropped, or a 500 instead), the connection is reset before the
//! request reaches the server, the answer is cut short or delayed, or the store throttles
//! (503 Slow Down, with or without `Retry-After`). Each connection carries one request and is
//! closed after its answer, so every fault hits exactly the request it was meant for.
//!
//! Rules are deterministic (the first `count` matching requests) or random with a fixed seed
//! (each matching request hit with a probability), so every failure can be replayed.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to a request a rule picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward the request, let the server carry it out, then close the connection without
    /// an answer (the client sees a dropped connection).
    DropAnswer,
    /// Forward the request, let the server carry it out, then answer 500 instead of the
    /// server's answer.
    ErrorAfter,
    /// Reset the connection before the request reaches the server.
    ResetBefore,
    /// Forward, then send only the head and half of the body of the server's answer.
    Truncate,
    /// Wait this many milliseconds, then forward normally.
    Delay(u64),
    /// Answer 503 Slow Down without forwarding (the store throttles).
    SlowDown,
    /// Answer 503 Slow Down with `Retry-After: 1` without forwarding.
    SlowDownRetryAfter,
}

/// Which requests a rule applies to.
#[derive(Debug, Clone, Default)]
pub struct Match {
    /// HTTP method (`PUT`, `GET`...), any when `None`.
    pub method: Option<&'static str>,
    /// A text the request path must contain (e.g. `_delta_log/`, `kind=fragment/`).
    pub path_contains: Option<&'static str>,
    /// A text the path must end with before the query (e.g. `.json`).
    pub path_ends_with: Option<&'static str>,
    /// A text the request body must contain (e.g. `"pixelquery.operation":"merge"`).
    pub body_contains: Option<&'static str>,
}

impl Match {
    fn matches(&self, method: &str, path: &str, body: &[u8]) -> bool {
        let bare = path.split('?').next().unwrap_or(path);
        self.method.is_none_or(|m| m == method)
            && self.path_contains.is_none_or(|p| path.contains(p))
            && self.path_ends_with.is_none_or(|e| bare.ends_with(e))
            && self
                .body_contains
                .is_none_or(|b| b.is_empty() || body.windows(b.len()).any(|w| w == b.as_bytes()))
    }
}

/// A fault and when it strikes.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The requests it concerns.
    pub when: Match,
    /// What happens to them.
    pub fault: Fault,
    /// Skip this many matching requests first.
    pub skip: u32,
    /// Strike this many matching requests (after the skipped ones); `u32::MAX` for all.
    pub count: u32,
    /// Instead of `skip`/`count`: strike each matching request with this probability.
    pub probability: Option<f64>,
}

impl Rule {
    /// The first matching request gets `fault`.
    pub fn once(when: Match, fault: Fault) -> Rule {
        Rule {
            when,
            fault,
            skip: 0,
            count: 1,
            probability: None,
        }
    }

    /// Each matching request gets `fault` with probability `p` (drawn from the proxy's seed).
    pub fn random(when: Match, fault: Fault, p: f64) -> Rule {
        Rule {
            when,
            fault,
            skip: 0,
            count: u32::MAX,
            probability: Some(p),
        }
    }
}

/// One fault the proxy injected (for test messages).
#[derive(Debug, Clone)]
pub struct Injected {
    /// The request line.
    pub request: String,
    /// The fault.
    pub fault: Fault,
}

struct State {
    rules: Vec<Rule>,
    seen: Vec<u32>,
    rng: u64,
    injected: Vec<Injected>,
    requests: u64,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`) with `rules`; `seed` drives the
    /// random ones.
    pub fn start(upstream: &str, rules: Vec<Rule>, seed: u64) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let seen = vec![0; rules.len()];
        let state = Arc::new(Mutex::new(State {
            rules,
            seen,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            injected: Vec::new(),
            requests: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, upstream, &st);
                });
            }
        });
        FaultProxy { addr, state, stop }
    }

    /// `http://127.0.0.1:PORT` of the proxy (what `AWS_ENDPOINT_URL` should be).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The faults injected so far.
    pub fn injected(&self) -> Vec<Injected> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .injected
            .clone()
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requests
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// xorshift64*: the proxy's reproducible dice.
fn next_unit(rng: &mut u64) -> f64 {
    let mut x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// The fault for this request, if a rule strikes it.
fn pick(state: &Mutex<State>, method: &str, path: &str, body: &[u8], line: &str) -> Option<Fault> {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    st.requests += 1;
    let State {
        rules,
        seen,
        rng,
        injected,
        ..
    } = &mut *st;
    for (i, rule) in rules.iter().enumerate() {
        if !rule.when.matches(method, path, body) {
            continue;
        }
        let strike = match rule.probability {
            Some(p) => next_unit(rng) < p,
            None => {
                seen[i] += 1;
                seen[i] > rule.skip && seen[i] - rule.skip <= rule.count
            }
        };
        if strike {
            injected.push(Injected {
                request: line.to_string(),
                fault: rule.fault,
            });
            return Some(rule.fault);
        }
    }
    None
}

/// Reads a message head (up to the blank line) as lines.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Head lines without `Connection`, with `Connection: close`, as bytes.
fn closing_head(head: &[String]) -> Vec<u8> {
    let mut out = String::new();
    for (i, l) in head.iter().enumerate() {
        if i > 0
            && l.split_once(':')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn answer(client: &mut TcpStream, status: &str, extra: &str) -> std::io::Result<()> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let body = if status.starts_with("503") { body } else { "" };
    write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let head = read_head(&mut reader)?;
    let line = head.first().cloned().unwrap_or_default();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let len: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let fault = pick(state, &method, &path, &body, &line);
    match fault {
        Some(Fault::ResetBefore) => {
            // SO_LINGER 0 would send an RST; closing both halves unanswered is what a
            // client sees of a reset connection (an error, no answer).
            return client.shutdown(Shutdown::Both);
        }
        Some(Fault::SlowDown) => return answer(&mut client, "503 Slow Down", ""),
        Some(Fault::SlowDownRetryAfter) => {
            return answer(&mut client, "503 Slow Down", "Retry-After: 1\r\n")
        }
        Some(Fault::Delay(ms)) => std::thread::sleep(Duration::from_millis(ms)),
        _ => {}
    }
    let mut server = TcpStream::connect(upstream)?;
    server.set_read_timeout(Some(Duration::from_secs(60)))?;
    server.write_all(&closing_head(&head))?;
    server.write_all(&body)?;
    let mut from_server = BufReader::new(server);
    let answer_head = read_head(&mut from_server)?;
    let mut answer_body = Vec::new();
    from_server.read_to_end(&mut answer_body)?;
    match fault {
        Some(Fault::DropAnswer) => client.shutdown(Shutdown::Both),
        Some(Fault::ErrorAfter) => answer(&mut client, "500 Internal Server Error", ""),
        Some(Fault::Truncate) => {
            client.write_all(&closing_head(&answer_head))?;
            client.write_all(&answer_body[..answer_body.len() / 2])?;
            client.shutdown(Shutdown::Both)
        }
        _ => {
            client.write_all(&closing_head(&answer_head))?;
            client.write_all(&answer_body)?;
            client.flush()
        }
    }
}
