//! Structured logs: JSON in production (one object per line, for collectors),
//! readable text in dev.

use std::io::IsTerminal;

use gatehouse_core::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

pub fn init(config: &Config) -> Result<(), gatehouse_core::Error> {
    let filter = EnvFilter::try_new(&config.log.level)
        .map_err(|e| gatehouse_core::Error::config("log.level", e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests, repeated commands) is harmless; ignore it.
    let _ = match config.log_format() {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        _ => builder.compact().with_target(false).try_init(),
    };
    Ok(())
}
