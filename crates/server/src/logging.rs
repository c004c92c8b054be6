//! Structured logs: JSON in production (one object per line, for collectors),
//! readable text in dev; and, opt-in, OpenTelemetry traces over OTLP/HTTP.

use std::io::IsTerminal;
use std::sync::OnceLock;

use gatehouse_core::config::{Config, LogFormat};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The trace pipeline, kept so that spans still batched are sent before exit.
static TRACES: OnceLock<SdkTracerProvider> = OnceLock::new();

pub fn init(config: &Config) -> Result<(), gatehouse_core::Error> {
    let filter = EnvFilter::try_new(&config.log.level)
        .map_err(|e| gatehouse_core::Error::config("log.level", e.to_string()))?;
    let traces = match &config.log.otlp_endpoint {
        Some(endpoint) => Some(tracer(endpoint)?),
        None => None,
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(traces.map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer)));
    // A second init (tests, repeated commands) is harmless; ignore it.
    let _ = match config.log_format() {
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(true).with_current_span(true))
            .try_init(),
        _ => registry.with(fmt.compact().with_target(false)).try_init(),
    };
    Ok(())
}

/// Spans go out in batches from the SDK's own thread, over the blocking HTTP client:
/// a slow or absent collector costs dropped spans, never a request's time.
fn tracer(endpoint: &str) -> Result<opentelemetry_sdk::trace::SdkTracer, gatehouse_core::Error> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| gatehouse_core::Error::config("log.otlp_endpoint", e.to_string()))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("gatehouse")
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer("gatehouse");
    let _ = TRACES.set(provider);
    Ok(tracer)
}

/// Sends the spans still batched and stops the trace pipeline (at shutdown).
pub fn flush_traces() {
    if let Some(provider) = TRACES.get()
        && let Err(error) = provider.shutdown()
    {
        tracing::warn!(%error, "traces could not all be sent at shutdown");
    }
}
