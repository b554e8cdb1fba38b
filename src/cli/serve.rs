//! `pixelquery serve WAREHOUSE [--addr 127.0.0.1:8080]`.

use super::{CliResult, Outcome};
use pixelquery::serve::{signal, ServeOptions, Server};
use pixelquery::store::Warehouse;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `pixelquery serve`.
#[derive(clap::Args)]
pub struct Args {
    /// The warehouse: a folder or s3://bucket/prefix.
    pub warehouse: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Serve snapshot VERSION only (responses are then cacheable for a day); by default new
    /// commits are served as they come.
    #[arg(long)]
    pub as_of: Option<u64>,
    /// Require `Authorization: Bearer TOKEN` (or `?access_token=TOKEN`) on every request
    /// but /healthz. The environment variable PIXELQUERY_TOKEN is used when this is not
    /// given (and keeps the token out of the process list).
    #[arg(long)]
    pub token: Option<String>,
    /// Memory for data in MB: half caches opened fragments, half is shared by the requests
    /// being computed.
    #[arg(long, default_value_t = 512)]
    pub memory_budget: u64,
    /// Seconds between checks for a new version.
    #[arg(long, default_value_t = 2.0)]
    pub refresh: f64,
    /// A basemap tile URL template for the map page, e.g.
    /// https://tile.openstreetmap.org/{z}/{x}/{y}.png (none by default: the page works offline).
    #[arg(long)]
    pub basemap: Option<String>,
    /// Most warehouse tiles with data one request may read (tiles further out, larger boxes
    /// are refused with a 400 naming the zoom or box that works).
    #[arg(long, default_value_t = 32)]
    pub max_tiles: usize,
    /// Most requests computed at once (default: twice the cores, at least 4).
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Do not log one line per request on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    if args.memory_budget == 0 {
        return Err("invalid --memory-budget 0: give megabytes, e.g. 512".into());
    }
    if !(args.refresh.is_finite() && args.refresh >= 0.0) {
        return Err(format!("invalid --refresh {}: give seconds, e.g. 2", args.refresh).into());
    }
    let mut options = ServeOptions::default()
        .with_addr(args.addr)
        .with_as_of(args.as_of)
        .with_token(
            args.token
                .or_else(|| std::env::var("PIXELQUERY_TOKEN").ok()),
        )
        .with_memory_budget(args.memory_budget.saturating_mul(1 << 20))
        .with_refresh(Duration::from_secs_f64(args.refresh))
        .with_basemap(args.basemap)
        .with_max_tiles(args.max_tiles);
    if let Some(n) = args.max_in_flight {
        options = options.with_max_in_flight(n);
    }
    if !args.quiet {
        // A closed stderr must not take a connection's thread down.
        options = options.with_log(Arc::new(|line| {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }));
    }
    // Signals first: every thread started later (rayon's too) inherits their blocking.
    let signals = signal::block()?;
    let warehouse = Warehouse::open(&args.warehouse)?;
    let server = Server::bind(warehouse, options)?;
    signals.stop(server.shutdown_handle())?;
    let current = server.live().current();
    let _ = writeln!(
        std::io::stderr(),
        "serving {} (version {}{}) on http://{}/",
        args.warehouse.display(),
        current.version(),
        if server.live().is_pinned() {
            ", pinned"
        } else {
            ", following new commits"
        },
        server.local_addr()
    );
    drop(current);
    server.run()?;
    let _ = writeln!(std::io::stderr(), "stopped");
    Ok(Outcome::Ok)
}
