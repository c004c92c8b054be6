//! The `gatehouse` binary. Everything lives in the library; this only turns an error
//! into one readable line and an exit code (no panic, no backtrace).

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the policy decision point allocates and frees
/// many small objects per request (Cedar values and expressions, JSON) on several
/// threads, where glibc's arenas spent about a sixth of the server's CPU
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match gatehouse_server::cli::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gatehouse: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
