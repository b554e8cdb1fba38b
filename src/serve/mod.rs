//! `pixelquery serve`: the warehouse over HTTP, for web maps, apps and people.
//!
//! A thin shell over the query library: an HTTP request becomes a typed request, a library
//! call ([`Warehouse::query`](crate::store::Warehouse::query), [`export`](crate::query::export)),
//! and bytes with caching headers. Synchronous and small: std sockets, `httparse`, one thread
//! per connection (up to a limit), a bounded number of requests computing at once.
//!
//! | endpoint | answers |
//! |---|---|
//! | `/` | the map page (Leaflet and uPlot embedded, no CDN) |
//! | `/tiles/{tms}/{z}/{x}/{y}.png` (`@2x`) | an RGBA PNG tile (`WebMercatorQuad`, `WarehouseGrid`) |
//! | `/tilejson.json` | TileJSON 3 for the same parameters |
//! | `/tileMatrixSets`, `/tileMatrixSets/{id}` | the tile matrix sets (OGC 2.0 JSON) |
//! | `/point?lon=&lat=` | a pixel's time series (JSON or CSV), as `query --point` |
//! | `/statistics?bbox=` (or POST GeoJSON) | per-date statistics, as `query --stats` |
//! | `/preview.png?bbox=` | a picture of a box |
//! | `/info`, `/healthz` | what the warehouse holds; liveness |
//!
//! Responses carry an `ETag` made of the warehouse version and the normalised request (a
//! matching `If-None-Match` gets `304`), `Cache-Control`, and CORS headers. New commits
//! become visible within the refresh interval; [`ServeOptions::as_of`] pins a version.
//! Errors are JSON `{"error", "parameter", "status"}`.

mod app;
mod assets;
pub mod http;
mod live;
mod params;
mod render;
pub mod signal;
pub mod tms;

pub use live::{Current, Live};
pub use params::Params;

use crate::store::{Version, Warehouse};
use std::collections::HashMap;
use std::net::{Shutdown as SocketShutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Errors of the server: starting it, and every way a request can fail (each with its HTTP
/// status and, when a parameter is at fault, its name).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Opening or reading the warehouse failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// A request parameter is missing or invalid.
    #[error("{parameter}: {reason}")]
    BadParameter {
        /// The parameter (`time`, `z`, `bands`, ...).
        parameter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request would read more of the warehouse, or hold more memory, than one request
    /// may (a tile zoomed too far out, a box too large).
    #[error("{parameter}: {reason}")]
    TooCostly {
        /// The parameter to change.
        parameter: String,
        /// What it would cost and what is allowed.
        reason: String,
    },
    /// The query found nothing at this place or time.
    #[error("no data: {0}")]
    NoData(String),
    /// No such endpoint or file.
    #[error("{path}: not found")]
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// The endpoint does not answer this method.
    #[error("{method} is not allowed here (allowed: {allowed})")]
    Method {
        /// The method used.
        method: String,
        /// The methods allowed.
        allowed: &'static str,
    },
    /// The server requires a token and the request has none or a wrong one.
    #[error(
        "this server requires a token: send Authorization: Bearer TOKEN (or access_token=TOKEN)"
    )]
    Unauthorized,
    /// Too many requests are computing; the client should retry.
    #[error("busy: {0} requests are being computed; retry shortly")]
    Busy(usize),
    /// The query engine refused the request (the message names what is wrong).
    #[error("{}{source}", parameter.as_deref().map(|p| format!("{p}: ")).unwrap_or_default())]
    Query {
        /// The parameter at fault, when known.
        parameter: Option<String>,
        /// The engine's error.
        source: crate::query::engine::Error,
    },
    /// Rendering or encoding the answer failed.
    #[error(transparent)]
    Export(#[from] crate::query::export::Error),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A bad parameter.
    pub fn bad(parameter: &str, reason: &str) -> Error {
        Error::BadParameter {
            parameter: parameter.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A request too costly to answer.
    pub fn costly(parameter: &str, reason: impl Into<String>) -> Error {
        Error::TooCostly {
            parameter: parameter.to_string(),
            reason: reason.into(),
        }
    }

    /// A query engine error, attributed to `parameter` when it is about one.
    pub fn query(source: crate::query::engine::Error, parameter: Option<&str>) -> Error {
        use crate::query::engine::Error as Q;
        match source {
            Q::NoData(what) => Error::NoData(what),
            Q::TooLarge { .. } => Error::TooCostly {
                parameter: parameter.unwrap_or("bbox").to_string(),
                reason: source.to_string(),
            },
            source => Error::Query {
                parameter: parameter.map(str::to_string),
                source,
            },
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        use crate::query::engine::Error as Q;
        match self {
            Error::BadParameter { .. } | Error::TooCostly { .. } => 400,
            Error::NoData(_) | Error::NotFound { .. } => 404,
            Error::Method { .. } => 405,
            Error::Unauthorized => 401,
            Error::Busy(_) => 503,
            Error::Query { source, .. } => match source {
                Q::Store(_) => 500,
                _ => 400,
            },
            Error::Bind { .. } | Error::Store(_) | Error::Export(_) | Error::Internal(_) => 500,
        }
    }

    /// The request parameter at fault, if one is.
    pub fn parameter(&self) -> Option<&str> {
        match self {
            Error::BadParameter { parameter, .. } | Error::TooCostly { parameter, .. } => {
                Some(parameter)
            }
            Error::Query { parameter, .. } => parameter.as_deref(),
            _ => None,
        }
    }
}

/// One served request, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLog<'a> {
    /// The method.
    pub method: &'a str,
    /// The path (without the query string, which may hold a token).
    pub path: &'a str,
    /// The status answered.
    pub status: u16,
    /// Time from the request's arrival to its answer being ready.
    pub millis: f64,
    /// Body bytes.
    pub bytes: usize,
}

impl std::fmt::Display for RequestLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {:.1} ms {} B",
            self.method, self.path, self.status, self.millis, self.bytes
        )
    }
}

/// Where request log lines go (the CLI prints them on stderr; the library never prints).
pub type LogSink = Arc<dyn Fn(&RequestLog<'_>) + Send + Sync>;

/// How to serve. Defaults: `127.0.0.1:8080`, the latest version checked every 2 s, 512 MiB
/// of memory, no token.
#[derive(Clone)]
pub struct ServeOptions {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Serve this version only (`--as-of`); else follow new commits.
    pub as_of: Option<Version>,
    /// Require `Authorization: Bearer TOKEN` (or `access_token=TOKEN`) on every request but
    /// `/healthz`.
    pub token: Option<String>,
    /// Bytes the server may hold for data: half for the fragment cache, half shared by the
    /// requests computing at once.
    pub memory_budget: u64,
    /// How often the latest version is checked (at most once per interval).
    pub refresh: Duration,
    /// A tile URL template (`https://.../{z}/{x}/{y}.png`) the page shows under the data.
    pub basemap: Option<String>,
    /// Most warehouse tiles with data one request may read (tiles zoomed out further, boxes
    /// larger, are refused with a 400 naming the zoom or box that works).
    pub max_tiles: usize,
    /// Most open connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// Most requests computing at once; more wait (up to the request timeout) for a slot.
    pub max_in_flight: usize,
    /// Socket timeouts (idle keep-alive, receiving a request, writing an answer).
    pub timeouts: http::Timeouts,
    /// Where one line per request goes.
    pub log: Option<LogSink>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("addr", &self.addr)
            .field("as_of", &self.as_of)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("memory_budget", &self.memory_budget)
            .field("refresh", &self.refresh)
            .field("basemap", &self.basemap)
            .field("max_tiles", &self.max_tiles)
            .field("max_connections", &self.max_connections)
            .field("max_in_flight", &self.max_in_flight)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            as_of: None,
            token: None,
            memory_budget: 512 << 20,
            refresh: Duration::from_secs(2),
            basemap: None,
            max_tiles: 32,
            max_connections: 256,
            max_in_flight: (2 * cores).max(4),
            timeouts: http::Timeouts::default(),
            log: None,
        }
    }
}

impl ServeOptions {
    /// Listens on `addr`.
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Pins a version.
    pub fn with_as_of(mut self, version: Option<Version>) -> Self {
        self.as_of = version;
        self
    }

    /// Requires a token.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Sets the memory budget in bytes.
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Sets the refresh interval.
    pub fn with_refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// Sets the page's basemap.
    pub fn with_basemap(mut self, url: Option<String>) -> Self {
        self.basemap = url;
        self
    }

    /// Sets the most data tiles one request may read.
    pub fn with_max_tiles(mut self, tiles: usize) -> Self {
        self.max_tiles = tiles.max(1);
        self
    }

    /// Sets the most open connections.
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets the most requests computing at once.
    pub fn with_max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// Sets the socket timeouts.
    pub fn with_timeouts(mut self, timeouts: http::Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sends one line per request to `sink`.
    pub fn with_log(mut self, sink: LogSink) -> Self {
        self.log = Some(sink);
        self
    }

    /// Checks the settings before anything is opened.
    fn check(&self) -> Result<(), Error> {
        if self.memory_budget < 16 << 20 {
            return Err(Error::bad(
                "memory-budget",
                "at least 16 MB: the cache and one request need room",
            ));
        }
        if self.basemap.as_deref().is_some_and(|b| {
            !(b.starts_with("http://") || b.starts_with("https://")) || !b.contains("{z}")
        }) {
            return Err(Error::bad(
                "basemap",
                "a tile URL template such as https://tile.openstreetmap.org/{z}/{x}/{y}.png",
            ));
        }
        Ok(())
    }
}

/// A handle that stops a running server (from another thread or a signal handler thread).
#[derive(Debug, Clone)]
pub struct Shutdown {
    stopping: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl Shutdown {
    /// Stops accepting connections, finishes the requests being answered, closes the rest.
    pub fn stop(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) {
            // Wake the accept loop.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        }
    }

    /// True once [`Shutdown::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    app: Arc<app::App>,
    shutdown: Shutdown,
    options: ServeOptions,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({})", self.addr)
    }
}

impl Server {
    /// Opens the warehouse's snapshot (pinned or latest) and binds the address (port 0 picks
    /// a free one; see [`Server::local_addr`]).
    pub fn bind(warehouse: Warehouse, options: ServeOptions) -> Result<Server, Error> {
        options.check()?;
        let cache_bytes = options.memory_budget / 2;
        let live = Live::open(warehouse, options.as_of, cache_bytes, options.refresh)?;
        let listener = TcpListener::bind(options.addr).map_err(|source| Error::Bind {
            addr: options.addr,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: options.addr,
            source,
        })?;
        let app = Arc::new(app::App::new(live, &options));
        Ok(Server {
            listener,
            addr,
            app,
            shutdown: Shutdown {
                stopping: Arc::new(AtomicBool::new(false)),
                addr,
            },
            options,
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to stop the server.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The followed warehouse (its current version, cache statistics).
    pub fn live(&self) -> &Live {
        self.app.live()
    }

    /// Serves until [`Shutdown::stop`]: accepts connections, one thread each, then lets the
    /// requests being answered finish (up to the write timeout) and returns.
    pub fn run(self) -> Result<(), Error> {
        let connections = Arc::new(Connections::default());
        for stream in self.listener.incoming() {
            if self.shutdown.is_stopping() {
                break;
            }
            let Ok(stream) = stream else {
                // Out of file descriptors and the like: let a connection close first.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let Some(id) = connections.register(&stream, self.options.max_connections) else {
                let busy = http::Response::new(
                    503,
                    "application/json",
                    b"{\"error\":\"too many connections\",\"status\":503}\n".to_vec(),
                );
                let mut s = stream;
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = http::write_response(&mut s, &busy, false, false);
                continue;
            };
            let app = self.app.clone();
            let conns = connections.clone();
            let stopping = self.shutdown.stopping.clone();
            let timeouts = self.options.timeouts;
            let spawned = std::thread::Builder::new()
                .name("pq-serve".into())
                .spawn(move || {
                    http::serve_connection(stream, timeouts, &stopping, |r| app.handle(r));
                    conns.unregister(id);
                });
            if spawned.is_err() {
                connections.unregister(id);
            }
        }
        connections.close_all(self.options.timeouts.write);
        Ok(())
    }

    /// Runs the server on a thread of its own (tests, benchmarks).
    pub fn spawn(self) -> Running {
        let addr = self.addr;
        let shutdown = self.shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("pq-serve-accept".into())
            .spawn(move || self.run())
            .expect("spawn the server thread");
        Running {
            addr,
            shutdown,
            thread: Some(thread),
        }
    }
}

/// A server running on its own thread; stopped when dropped.
#[derive(Debug)]
pub struct Running {
    /// Its address.
    pub addr: SocketAddr,
    shutdown: Shutdown,
    thread: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl Running {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it and waits for it to finish.
    pub fn stop(mut self) -> Result<(), Error> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), Error> {
        self.shutdown.stop();
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Internal("the server thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Open connections, so that shutting down can wake the idle ones.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, TcpStream>>,
    closed: Condvar,
    next: AtomicU64,
}

impl Connections {
    fn register(&self, stream: &TcpStream, max: usize) -> Option<u64> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= max {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            open.insert(id, clone);
        }
        Some(id)
    }

    fn unregister(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(&id);
        self.closed.notify_all();
    }

    /// Ends reading on every connection (idle ones close at once; busy ones answer the
    /// request in hand) and waits up to `grace` for them to finish.
    fn close_all(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for s in open.values() {
            let _ = s.shutdown(SocketShutdown::Read);
        }
        while !open.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            open = self
                .closed
                .wait_timeout(open, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
