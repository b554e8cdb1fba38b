//! The `pixelquery` command-line tool: a thin shell over the library.

mod cli;

/// Static musl builds allocate with TLSF (`rlsf`), which keeps freed memory for reuse: musl's
/// malloc returns every large block to the kernel, and re-faulting tile buffers made ingest
/// 1.4x slower than the glibc build (README, "Install").
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: rlsf::GlobalTlsf = rlsf::GlobalTlsf::new();

fn main() -> std::process::ExitCode {
    cli::run()
}
