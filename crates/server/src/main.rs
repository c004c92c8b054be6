//! The `gatehouse` binary. Everything lives in the library; this only turns an error
//! into one readable line and an exit code (no panic, no backtrace).

use std::process::ExitCode;

fn main() -> ExitCode {
    match gatehouse_server::cli::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gatehouse: error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
