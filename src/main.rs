//! The `pixelquery` command-line tool: a thin shell over the library.

mod cli;

/// Static musl builds allocate with TLSF (`rlsf`), which keeps freed memory for reuse: musl's
/// malloc returns every large block to the kernel, and re-faulting tile buffers made ingest
/// up to 1.8x slower than the glibc build (README, "Release builds").
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: rlsf::GlobalTlsf = rlsf::GlobalTlsf::new();

fn main() -> std::process::ExitCode {
    cli::run()
}
