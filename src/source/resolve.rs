//! Host name → IP addresses, in pure Rust, without the C library's `getaddrinfo`.
//!
//! PixelQuery ships as static musl binaries (whose musl 1.2.3 drops truncated DNS answers
//! instead of asking again over TCP), as wheels on the host's glibc (NSS, search lists) and as
//! source builds on whatever C library the host has. This small stub resolver does the one
//! thing remote sources need, the same way in all of them (see `docs/name-resolution.md`):
//!
//! 1. IP literals (`192.0.2.1`, `::1`, `[::1]`) are returned as they are, and `localhost` is
//!    `127.0.0.1` and `::1`;
//! 2. `/etc/hosts`: exact, case-insensitive match of a name or alias;
//! 3. DNS: A and AAAA queries over UDP to the `nameserver`s of `/etc/resolv.conf` (at most
//!    three, tried in order, `options timeout:N attempts:N` honoured), retried over TCP when
//!    the answer is truncated. CNAME chains are followed within the answer.
//!
//! The name is queried as given: `search`/`domain` lists and `ndots` are ignored, so a short
//! name such as `tiles` resolves only through `/etc/hosts`. IPv4 addresses come first.
//!
//! It is the default for every remote source; `PIXELQUERY_RESOLVER=system` switches back to
//! the standard library's resolver (`getaddrinfo`).
//!
//! ```no_run
//! use pixelquery::source::resolve::Resolver;
//! let addrs = Resolver::new().lookup("sentinel-cogs.s3.us-west-2.amazonaws.com")?;
//! # Ok::<(), pixelquery::source::resolve::Error>(())
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

mod conf;
pub(crate) mod wire;

use conf::ResolvConf;
pub use wire::{Malformed, NameProblem, Rcode};
use wire::{Name, RecordData, RecordType, Reply};

/// The environment variable that chooses the resolver of remote sources: `system` for the
/// standard library's (`getaddrinfo`), `builtin` (or unset) for [`Resolver`].
pub const RESOLVER_ENV: &str = "PIXELQUERY_RESOLVER";

/// Longest CNAME chain followed within one answer.
const MAX_CNAMES: usize = 8;
/// Receive buffer for UDP answers: we send no EDNS, so servers keep to 512 bytes; a bigger
/// datagram is cut here and decodes as malformed.
const UDP_BUFFER: usize = 1232;

/// Errors of name resolution. Every message starts with the host name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name cannot be looked up as written.
    #[error("{host}: not a valid host name: {problem}")]
    InvalidName {
        /// The host name.
        host: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// `resolv.conf` (or the hosts file) cannot be read.
    #[error("{host}: cannot read {path}: {source}")]
    Config {
        /// The host name being resolved.
        host: String,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// `resolv.conf` names no usable nameserver.
    #[error("{host}: no nameserver in {path} (and not in the hosts file)")]
    NoNameservers {
        /// The host name.
        host: String,
        /// The resolv.conf file.
        path: PathBuf,
    },
    /// The DNS says the name does not exist (NXDOMAIN).
    #[error("{host}: no such host (NXDOMAIN from {server})")]
    NotFound {
        /// The host name.
        host: String,
        /// The nameserver that said so.
        server: SocketAddr,
    },
    /// The name exists but has no address of the kind asked for.
    #[error("{host}: the name has no {wanted} address (answer from {server})")]
    NoAddress {
        /// The host name.
        host: String,
        /// `IPv4`, `IPv6` or `IPv4 or IPv6`.
        wanted: &'static str,
        /// The nameserver that answered.
        server: SocketAddr,
    },
    /// No nameserver answered in time.
    #[error("{host}: no answer from {servers} ({attempts} attempts, {timeout:?} each)")]
    Timeout {
        /// The host name.
        host: String,
        /// The nameservers asked, comma-separated.
        servers: String,
        /// Queries sent to each of them (fewer when the caller's deadline came first).
        attempts: u32,
        /// Time allowed for each.
        timeout: Duration,
    },
    /// A nameserver answered with an error code (SERVFAIL, REFUSED, ...).
    #[error("{host}: nameserver {server} answered {rcode}")]
    ServerFailure {
        /// The host name.
        host: String,
        /// The nameserver.
        server: SocketAddr,
        /// Its response code.
        rcode: Rcode,
    },
    /// A nameserver sent an answer that cannot be decoded.
    #[error("{host}: bad answer from nameserver {server}: {problem}")]
    BadAnswer {
        /// The host name.
        host: String,
        /// The nameserver.
        server: SocketAddr,
        /// What is wrong with it.
        problem: Malformed,
    },
    /// A nameserver cannot be reached (UDP refused, TCP failed, network unreachable).
    #[error("{host}: nameserver {server} over {transport}: {source}")]
    Network {
        /// The host name.
        host: String,
        /// The nameserver.
        server: SocketAddr,
        /// `UDP` or `TCP`.
        transport: &'static str,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// `PIXELQUERY_RESOLVER` has a value other than `builtin` or `system`.
    #[error("{host}: {RESOLVER_ENV}={value:?} is neither `builtin` nor `system`")]
    UnknownSetting {
        /// The host name.
        host: String,
        /// The value found.
        value: String,
    },
}

impl Error {
    /// Whether asking again later may help (timeouts, unreachable or failing nameservers),
    /// as opposed to answers that will not change (no such host, invalid name, bad setup).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. } | Error::ServerFailure { .. } | Error::Network { .. }
        )
    }

    fn io_kind(&self) -> std::io::ErrorKind {
        use std::io::ErrorKind;
        match self {
            Error::Timeout { .. } => ErrorKind::TimedOut,
            Error::NotFound { .. } | Error::NoAddress { .. } => ErrorKind::NotFound,
            Error::InvalidName { .. } | Error::UnknownSetting { .. } => ErrorKind::InvalidInput,
            Error::Config { source, .. } | Error::Network { source, .. } => source.kind(),
            Error::NoNameservers { .. } => ErrorKind::NotFound,
            Error::ServerFailure { .. } | Error::BadAnswer { .. } => ErrorKind::Other,
        }
    }
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Which address families to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    fn wants(self, ip: &IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }

    fn types(self) -> &'static [RecordType] {
        match self {
            Family::Any => &[RecordType::A, RecordType::Aaaa],
            Family::V4 => &[RecordType::A],
            Family::V6 => &[RecordType::Aaaa],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Family::Any => "IPv4 or IPv6",
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// A stub resolver reading a hosts file and a `resolv.conf`, both re-read at each lookup (they
/// are small, and DHCP may rewrite them). See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    hosts: PathBuf,
    resolv_conf: PathBuf,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    /// The resolver of this machine: `/etc/hosts` and `/etc/resolv.conf`.
    pub fn new() -> Self {
        Self::with_files("/etc/hosts", "/etc/resolv.conf")
    }

    /// A resolver reading other files (tests, containers with their own configuration). A
    /// missing hosts file is the same as an empty one; a missing `resolv.conf` is an error
    /// once a name is not in the hosts file.
    pub fn with_files(hosts: impl Into<PathBuf>, resolv_conf: impl Into<PathBuf>) -> Self {
        Self {
            hosts: hosts.into(),
            resolv_conf: resolv_conf.into(),
        }
    }

    /// The addresses of `host`, IPv4 first. An IP literal or `localhost` is answered
    /// directly, then the hosts file, then DNS.
    pub fn lookup(&self, host: &str) -> Result<Vec<IpAddr>> {
        self.lookup_family(host, Family::Any, None)
    }

    fn lookup_family(
        &self,
        host: &str,
        family: Family,
        deadline: Option<Instant>,
    ) -> Result<Vec<IpAddr>> {
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let bare = host.strip_suffix('.').unwrap_or(host);
        if bare.eq_ignore_ascii_case("localhost") {
            let all = [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ];
            return Ok(all.into_iter().filter(|ip| family.wants(ip)).collect());
        }
        let name = Name::parse(host).map_err(|problem| Error::InvalidName {
            host: host.to_string(),
            problem,
        })?;
        let hosts = match std::fs::read_to_string(&self.hosts) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(Error::Config {
                    host: host.to_string(),
                    path: self.hosts.clone(),
                    source,
                })
            }
        };
        let mut listed = conf::hosts_lookup(&hosts, host);
        if !listed.is_empty() {
            listed.sort_by_key(|ip| ip.is_ipv6()); // stable: file order within a family
            listed.retain(|ip| family.wants(ip));
            return Ok(listed);
        }
        let text = std::fs::read_to_string(&self.resolv_conf).map_err(|source| Error::Config {
            host: host.to_string(),
            path: self.resolv_conf.clone(),
            source,
        })?;
        let conf = ResolvConf::parse(&text);
        if conf.nameservers.is_empty() {
            return Err(Error::NoNameservers {
                host: host.to_string(),
                path: self.resolv_conf.clone(),
            });
        }
        Lookup {
            host,
            name: &name,
            family,
            conf: &conf,
            deadline,
        }
        .run()
    }
}

/// One DNS lookup: rounds over the nameservers until one gives a definite answer.
struct Lookup<'a> {
    host: &'a str,
    name: &'a Name,
    family: Family,
    conf: &'a ResolvConf,
    deadline: Option<Instant>,
}

/// What one query of one type got from one server.
enum Answer {
    /// The addresses of that type (possibly none: the name exists, without such address).
    Addresses(Vec<IpAddr>),
    /// The name does not exist.
    NxDomain,
}

impl Lookup<'_> {
    fn run(&self) -> Result<Vec<IpAddr>> {
        let mut last: Option<Error> = None;
        let mut rounds = 0;
        'rounds: for _ in 0..self.conf.attempts {
            rounds += 1;
            for &server in &self.conf.nameservers {
                let Some(timeout) = self.time_left(self.conf.timeout) else {
                    break 'rounds;
                };
                match self.ask(server, timeout) {
                    Ok(addresses) => return Ok(addresses),
                    Err(e @ (Error::NotFound { .. } | Error::NoAddress { .. })) => return Err(e),
                    Err(e) => {
                        // A timeout is reported only if no server said anything more useful.
                        if !matches!(e, Error::Timeout { .. }) || last.is_none() {
                            last = Some(e);
                        }
                    }
                }
            }
        }
        Err(match last {
            Some(Error::Timeout { .. }) | None => Error::Timeout {
                host: self.host.to_string(),
                servers: self
                    .conf
                    .nameservers
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                attempts: rounds,
                timeout: self.conf.timeout,
            },
            Some(other) => other,
        })
    }

    /// `wanted`, shortened to what is left before the caller's deadline (`None`: no time left).
    fn time_left(&self, wanted: Duration) -> Option<Duration> {
        let Some(deadline) = self.deadline else {
            return Some(wanted);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| left.min(wanted))
    }

    /// Queries one server for every wanted type, over UDP (both queries in flight at once, as
    /// glibc does), then over TCP for any truncated answer.
    fn ask(&self, server: SocketAddr, timeout: Duration) -> Result<Vec<IpAddr>> {
        let types = self.family.types();
        let mut answers: Vec<Option<Answer>> = types.iter().map(|_| None).collect();
        let until = Instant::now() + timeout;
        if !self.conf.use_tcp {
            self.ask_udp(server, types, &mut answers, until)?;
        }
        for (i, &rtype) in types.iter().enumerate() {
            if answers[i].is_none() {
                answers[i] = Some(self.ask_tcp(server, rtype, until)?);
            }
        }
        let mut addresses = Vec::new();
        for answer in answers.into_iter().flatten() {
            match answer {
                Answer::NxDomain => {
                    return Err(Error::NotFound {
                        host: self.host.to_string(),
                        server,
                    })
                }
                Answer::Addresses(a) => addresses.extend(a),
            }
        }
        if addresses.is_empty() {
            return Err(Error::NoAddress {
                host: self.host.to_string(),
                wanted: self.family.describe(),
                server,
            });
        }
        Ok(addresses)
    }

    /// Fills `answers` from UDP; entries left `None` were truncated (ask over TCP). A timeout
    /// with some answers in hand keeps them (a middlebox that drops AAAA queries must not make
    /// IPv4 fail), and asks no more.
    fn ask_udp(
        &self,
        server: SocketAddr,
        types: &[RecordType],
        answers: &mut [Option<Answer>],
        until: Instant,
    ) -> Result<()> {
        let net = |source| Error::Network {
            host: self.host.to_string(),
            server,
            transport: "UDP",
            source,
        };
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        // A connected socket on a random port: the kernel drops datagrams from elsewhere.
        let socket = UdpSocket::bind(local).map_err(net)?;
        socket.connect(server).map_err(net)?;
        let ids: Vec<u16> = types.iter().map(|_| random_id()).collect();
        for (&rtype, &id) in types.iter().zip(&ids) {
            socket
                .send(&wire::encode_query(id, self.name, rtype))
                .map_err(net)?;
        }
        let mut pending = vec![true; types.len()];
        let mut buf = [0u8; UDP_BUFFER];
        while pending.iter().any(|&p| p) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.udp_timed_out(server, answers, &pending);
            }
            socket.set_read_timeout(Some(left)).map_err(net)?;
            let len = match socket.recv(&mut buf) {
                Ok(len) => len,
                Err(e) if is_timeout(&e) => return self.udp_timed_out(server, answers, &pending),
                Err(e) => return Err(net(e)),
            };
            let packet = &buf[..len];
            // Not one of ours: ignored, as a late answer to an earlier query would be.
            let Some(i) = wire::peek_id(packet)
                .and_then(|id| ids.iter().position(|&ours| ours == id))
                .filter(|&i| pending[i])
            else {
                continue;
            };
            let reply = wire::decode_reply(packet).map_err(|problem| Error::BadAnswer {
                host: self.host.to_string(),
                server,
                problem,
            })?;
            if !self.answers_question(&reply, types[i]) {
                continue;
            }
            pending[i] = false;
            if !reply.truncated {
                answers[i] = Some(self.interpret(server, &reply, types[i])?);
            }
        }
        Ok(())
    }

    fn udp_timed_out(
        &self,
        server: SocketAddr,
        answers: &mut [Option<Answer>],
        pending: &[bool],
    ) -> Result<()> {
        let any_address = answers
            .iter()
            .any(|a| matches!(a, Some(Answer::Addresses(v)) if !v.is_empty()));
        if any_address {
            for (a, _) in answers.iter_mut().zip(pending).filter(|(_, &p)| p) {
                *a = Some(Answer::Addresses(Vec::new()));
            }
            return Ok(());
        }
        Err(Error::Timeout {
            host: self.host.to_string(),
            servers: server.to_string(),
            attempts: 1,
            timeout: self.conf.timeout,
        })
    }

    /// One query over TCP (RFC 1035 §4.2.2: a two-byte length, then the message).
    fn ask_tcp(&self, server: SocketAddr, rtype: RecordType, until: Instant) -> Result<Answer> {
        let net = |source| Error::Network {
            host: self.host.to_string(),
            server,
            transport: "TCP",
            source,
        };
        let timed_out = || Error::Timeout {
            host: self.host.to_string(),
            servers: format!("{server} (TCP)"),
            attempts: 1,
            timeout: self.conf.timeout,
        };
        let check = |e: std::io::Error| if is_timeout(&e) { timed_out() } else { net(e) };
        let left = || {
            let d = until.saturating_duration_since(Instant::now());
            (!d.is_zero()).then_some(d).ok_or_else(timed_out)
        };
        let mut stream = TcpStream::connect_timeout(&server, left()?).map_err(check)?;
        let id = random_id();
        let query = wire::encode_query(id, self.name, rtype);
        let mut framed = (query.len() as u16).to_be_bytes().to_vec(); // a query is < 300 bytes
        framed.extend_from_slice(&query);
        stream.set_write_timeout(Some(left()?)).map_err(check)?;
        stream.write_all(&framed).map_err(check)?;
        loop {
            let mut len = [0u8; 2];
            stream.set_read_timeout(Some(left()?)).map_err(check)?;
            stream.read_exact(&mut len).map_err(check)?;
            // At most 64 KiB, which the length field bounds.
            let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.set_read_timeout(Some(left()?)).map_err(check)?;
            stream.read_exact(&mut packet).map_err(check)?;
            if wire::peek_id(&packet) != Some(id) {
                continue; // not ours; the deadline bounds this loop
            }
            let reply = wire::decode_reply(&packet).map_err(|problem| Error::BadAnswer {
                host: self.host.to_string(),
                server,
                problem,
            })?;
            if !self.answers_question(&reply, rtype) {
                continue;
            }
            return self.interpret(server, &reply, rtype);
        }
    }

    /// Whether a reply is to our question (same name, same type), not to another query.
    fn answers_question(&self, reply: &Reply, rtype: RecordType) -> bool {
        reply.question.as_ref() == Some(&(self.name.clone(), rtype))
    }

    /// The outcome of a complete (not truncated) reply, following CNAMEs from the name asked.
    fn interpret(&self, server: SocketAddr, reply: &Reply, rtype: RecordType) -> Result<Answer> {
        match reply.rcode {
            Rcode::NoError => {}
            Rcode::NameError => return Ok(Answer::NxDomain),
            rcode => {
                return Err(Error::ServerFailure {
                    host: self.host.to_string(),
                    server,
                    rcode,
                })
            }
        }
        let mut owner = self.name;
        for _ in 0..=MAX_CNAMES {
            let addresses: Vec<IpAddr> = reply
                .answers
                .iter()
                .filter(|r| &r.owner == owner)
                .filter_map(|r| match (&r.data, rtype) {
                    (RecordData::A(ip), RecordType::A) => Some(IpAddr::V4(*ip)),
                    (RecordData::Aaaa(ip), RecordType::Aaaa) => Some(IpAddr::V6(*ip)),
                    _ => None,
                })
                .collect();
            if !addresses.is_empty() {
                return Ok(Answer::Addresses(addresses));
            }
            let alias = reply.answers.iter().find_map(|r| match &r.data {
                RecordData::Cname(target) if &r.owner == owner => Some(target),
                _ => None,
            });
            match alias {
                Some(target) => owner = target,
                None => break,
            }
        }
        // The name exists (NOERROR) but the answer holds no address for it, or a chain too
        // long (or looping) to follow.
        Ok(Answer::Addresses(Vec::new()))
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A query id that an off-path attacker cannot guess: std's `RandomState` is keyed from the
/// operating system's randomness, and each call hashes a fresh counter value and the time.
fn random_id() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u16
}

/// The process-wide resolver of remote sources, when set by [`set_default`].
static DEFAULT: RwLock<Option<Arc<Resolver>>> = RwLock::new(None);

/// Makes `resolver` the one used by remote sources opened from now on (instead of
/// [`Resolver::new`]), for programs and tests that keep their configuration elsewhere than
/// `/etc`. `PIXELQUERY_RESOLVER=system` still takes precedence.
pub fn set_default(resolver: Resolver) {
    let mut slot = DEFAULT.write().unwrap_or_else(|e| e.into_inner());
    *slot = Some(Arc::new(resolver));
}

/// The resolver remote sources use now: what [`set_default`] set, else [`Resolver::new`].
fn current_default() -> Arc<Resolver> {
    let slot = DEFAULT.read().unwrap_or_else(|e| e.into_inner());
    slot.clone().unwrap_or_else(|| Arc::new(Resolver::new()))
}

/// The resolver handed to `ureq`, chosen when an agent is built.
#[derive(Debug)]
pub(crate) enum ForUreq {
    Builtin(Arc<Resolver>),
    System(ureq::unversioned::resolver::DefaultResolver),
    /// `PIXELQUERY_RESOLVER` holds this unknown value: every lookup fails saying so.
    Unknown(String),
}

/// The resolver for a new agent, from `PIXELQUERY_RESOLVER` and [`set_default`].
pub(crate) fn for_agent() -> ForUreq {
    choose(std::env::var(RESOLVER_ENV))
}

/// The resolver a value of `PIXELQUERY_RESOLVER` asks for.
fn choose(setting: std::result::Result<String, std::env::VarError>) -> ForUreq {
    match setting {
        Err(std::env::VarError::NotPresent) => ForUreq::Builtin(current_default()),
        Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("builtin") => {
            ForUreq::Builtin(current_default())
        }
        Ok(v) if v.eq_ignore_ascii_case("system") => ForUreq::System(Default::default()),
        Ok(v) => ForUreq::Unknown(v),
        Err(std::env::VarError::NotUnicode(v)) => ForUreq::Unknown(v.to_string_lossy().into()),
    }
}

/// Whether a `ureq` I/O error is one of ours that retrying cannot fix.
pub(crate) fn is_permanent(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|e| !e.is_transient())
}

impl ureq::unversioned::resolver::Resolver for ForUreq {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> std::result::Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let resolver = match self {
            ForUreq::System(system) => return system.resolve(uri, config, timeout),
            ForUreq::Builtin(resolver) => resolver,
            ForUreq::Unknown(value) => {
                let host = uri.host().unwrap_or_default().to_string();
                let e = Error::UnknownSetting {
                    host,
                    value: value.clone(),
                };
                return Err(ureq::Error::Io(std::io::Error::new(e.io_kind(), e)));
            }
        };
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(ureq::Error::BadUri(format!("{uri}: no scheme or host")));
        };
        let port = ureq::unversioned::resolver::DefaultResolver::host_and_port(scheme, authority)
            .and_then(|hp| hp.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()))
            .ok_or_else(|| ureq::Error::BadUri(format!("{uri}: unknown default port")))?;
        let family = match config.ip_family() {
            ureq::config::IpFamily::Ipv4Only => Family::V4,
            ureq::config::IpFamily::Ipv6Only => Family::V6,
            _ => Family::Any,
        };
        let deadline = match timeout.after {
            ureq::unversioned::transport::time::Duration::Exact(d) => Instant::now().checked_add(d),
            _ => None,
        };
        let host = authority.host();
        let ips = resolver
            .lookup_family(host, family, deadline)
            .map_err(|e| ureq::Error::Io(std::io::Error::new(e.io_kind(), e)))?;
        let mut out = self.empty();
        for ip in ips {
            if out.try_push(SocketAddr::new(ip, port)).is_err() {
                break; // ureq keeps at most 16
            }
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::wire::tests::{ReplyBuilder, QNAME};
    use super::*;
    use ureq::unversioned::resolver::Resolver as _;

    /// A resolver whose files do not exist: only literals and `localhost` work.
    fn nowhere() -> Resolver {
        Resolver::with_files("/nonexistent/hosts", "/nonexistent/resolv.conf")
    }

    #[test]
    fn literals_and_localhost_need_no_files() {
        let r = nowhere();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(r.lookup("192.0.2.1").unwrap(), vec![ip("192.0.2.1")]);
        assert_eq!(r.lookup("[2001:db8::1]").unwrap(), vec![ip("2001:db8::1")]);
        assert_eq!(
            r.lookup("LocalHost.").unwrap(),
            vec![ip("127.0.0.1"), ip("::1")]
        );
        let v6 = r.lookup_family("localhost", Family::V6, None).unwrap();
        assert_eq!(v6, vec![ip("::1")]);
        let err = r.lookup("tiles.example").unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(err
            .to_string()
            .starts_with("tiles.example: cannot read /nonexistent/resolv.conf"));
        assert!(is_permanent(&std::io::Error::new(err.io_kind(), err)));
    }

    fn lookup<'a>(name: &'a Name, conf: &'a ResolvConf) -> Lookup<'a> {
        Lookup {
            host: "www.example.test",
            name,
            family: Family::Any,
            conf,
            deadline: None,
        }
    }

    #[test]
    fn only_records_on_the_cname_chain_count() {
        let name = Name::parse("www.example.test").unwrap();
        let conf = ResolvConf::parse("nameserver 127.0.0.1");
        let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let l = lookup(&name, &conf);
        // An address for another name, not reached by any CNAME: ignored.
        let b = ReplyBuilder::new(1, 0x8180, "www.example.test", RecordType::A, 2)
            .record(b"\x04evil\x04test\x00", RecordType::A, &[192, 0, 2, 66])
            .record(QNAME, RecordType::Aaaa, &[0; 16]);
        let reply = wire::decode_reply(&b.buf).unwrap();
        assert!(l.answers_question(&reply, RecordType::A));
        assert!(!l.answers_question(&reply, RecordType::Aaaa));
        match l.interpret(server, &reply, RecordType::A).unwrap() {
            Answer::Addresses(a) => assert!(a.is_empty(), "{a:?}"),
            Answer::NxDomain => panic!("not NXDOMAIN"),
        }
        // Through a CNAME: counted.
        let b = ReplyBuilder::new(1, 0x8180, "www.example.test", RecordType::A, 2)
            .record(QNAME, RecordType::Cname, b"\x04edge\x04test\x00")
            .record(b"\x04EDGE\x04test\x00", RecordType::A, &[192, 0, 2, 7]);
        let reply = wire::decode_reply(&b.buf).unwrap();
        match l.interpret(server, &reply, RecordType::A).unwrap() {
            Answer::Addresses(a) => assert_eq!(a, vec![IpAddr::from([192, 0, 2, 7])]),
            Answer::NxDomain => panic!("not NXDOMAIN"),
        }
        // SERVFAIL is an error naming the host and the server.
        let b = ReplyBuilder::new(1, 0x8182, "www.example.test", RecordType::A, 0);
        let reply = wire::decode_reply(&b.buf).unwrap();
        let err = l.interpret(server, &reply, RecordType::A).err().unwrap();
        assert_eq!(
            err.to_string(),
            "www.example.test: nameserver 127.0.0.1:53 answered SERVFAIL"
        );
        assert!(err.is_transient());
    }

    #[test]
    fn ureq_adapter_fills_in_default_ports_and_family() {
        let adapter = ForUreq::Builtin(Arc::new(nowhere()));
        let timeout = ureq::unversioned::transport::NextTimeout::default();
        let config = ureq::Agent::config_builder().build();
        let resolve = |uri: &str, config: &ureq::config::Config| {
            let uri: ureq::http::Uri = uri.parse().unwrap();
            adapter
                .resolve(&uri, config, timeout)
                .map(|addrs| addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            resolve("http://localhost/x", &config).unwrap(),
            ["127.0.0.1:80", "[::1]:80"]
        );
        assert_eq!(resolve("https://[::1]/x", &config).unwrap(), ["[::1]:443"]);
        assert_eq!(
            resolve("http://127.0.0.1:8080/", &config).unwrap(),
            ["127.0.0.1:8080"]
        );
        let v4 = ureq::Agent::config_builder()
            .ip_family(ureq::config::IpFamily::Ipv4Only)
            .build();
        assert_eq!(resolve("http://localhost/", &v4).unwrap(), ["127.0.0.1:80"]);
        let err = resolve("http://tiles.example/", &config).unwrap_err();
        assert!(
            err.to_string().contains("tiles.example: cannot read"),
            "{err}"
        );

        let system = ForUreq::System(Default::default());
        let uri: ureq::http::Uri = "http://127.0.0.1:81/".parse().unwrap();
        let addrs = system.resolve(&uri, &config, timeout).unwrap();
        assert_eq!(
            addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["127.0.0.1:81"]
        );

        let unknown = ForUreq::Unknown("getaddrinfo".into());
        let uri: ureq::http::Uri = "http://tiles.example/".parse().unwrap();
        let err = unknown.resolve(&uri, &config, timeout).unwrap_err();
        assert!(
            err.to_string()
                .contains("tiles.example: PIXELQUERY_RESOLVER=\"getaddrinfo\" is neither"),
            "{err}"
        );
    }

    #[test]
    fn setting_chooses_the_resolver() {
        use std::env::VarError;
        assert!(matches!(
            choose(Err(VarError::NotPresent)),
            ForUreq::Builtin(_)
        ));
        assert!(matches!(choose(Ok(String::new())), ForUreq::Builtin(_)));
        assert!(matches!(choose(Ok("BuiltIn".into())), ForUreq::Builtin(_)));
        assert!(matches!(choose(Ok("system".into())), ForUreq::System(_)));
        assert!(matches!(choose(Ok("glibc".into())), ForUreq::Unknown(v) if v == "glibc"));
    }
}
