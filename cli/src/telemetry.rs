//! Logs and traces of the `meshql` process: logs to stderr (`RUST_LOG` filters them), and, with
//! `[telemetry] otlp_endpoint` set, meshql's query spans exported over OTLP/HTTP (protobuf) by a
//! batch exporter. Only meshql's own spans are exported, never those of its dependencies.

use std::time::Duration;

use meshql_catalog::TelemetryConfig;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// What is logged when `RUST_LOG` is unset: meshql at `info`, its chattier dependencies at `warn`.
const DEFAULT_LOG_FILTER: &str =
    "info,datafusion=warn,deltalake=warn,buoyant_kernel=warn,delta_kernel=warn";

/// How often finished spans are sent.
const EXPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Installs the process's subscriber; returns the tracer provider to shut down at exit (which
/// sends the spans still buffered) when traces are exported.
pub(crate) fn init(
    telemetry: Option<&TelemetryConfig>,
) -> Result<Option<SdkTracerProvider>, String> {
    let filter = match log_filter(std::env::var("RUST_LOG").ok().as_deref()) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("warning: {e}; logging with the default filter ({DEFAULT_LOG_FILTER})");
            log_filter(None)?
        }
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let Some(endpoint) = telemetry.and_then(|t| t.otlp_endpoint.as_deref()) else {
        tracing_subscriber::registry().with(fmt).init();
        return Ok(None);
    };
    let service_name = telemetry
        .map(|t| t.service_name.clone())
        .unwrap_or_else(|| "meshql".to_string());
    let endpoint = traces_url(endpoint);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint: cannot set up the OTLP exporter: {e}"))?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(EXPORT_INTERVAL)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name)
                .build(),
        )
        .build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("meshql"))
        .with_filter(
            Targets::new()
                .with_target("meshql_engine", tracing::Level::INFO)
                .with_target("meshql_http", tracing::Level::INFO)
                .with_target("meshql_flight_server", tracing::Level::INFO),
        );
    tracing_subscriber::registry().with(fmt).with(otel).init();
    tracing::info!(endpoint = %endpoint, "exporting traces over OTLP/HTTP");
    Ok(Some(provider))
}

/// The log filter of `RUST_LOG` (comma-separated `level` and `target=level` directives), or the
/// default when it is unset or empty.
///
/// This is `tracing-subscriber`'s `Targets`, not its `EnvFilter`: `EnvFilter`'s span-field
/// directives (`[span{field=value}]`) need the `matchers` crate, which turns on `regex-automata`'s
/// full-DFA builder for every regex in the process, and arrow compiles a `LIKE` pattern per batch,
/// so every batch of a `LIKE '%a%b%'` query would build a full DFA (BENCHMARKS.md item 23).
fn log_filter(rust_log: Option<&str>) -> Result<Targets, String> {
    let directives = match rust_log.map(str::trim) {
        Some(s) if !s.is_empty() => s,
        _ => DEFAULT_LOG_FILTER,
    };
    directives
        .parse::<Targets>()
        .map_err(|e| format!("RUST_LOG={directives:?} is not a log filter: {e}"))
}

/// The traces URL of an OTLP/HTTP endpoint: `/v1/traces` is added when the URL has no path.
fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    match trimmed.split_once("://") {
        Some((_, rest)) if !rest.contains('/') => format!("{trimmed}/v1/traces"),
        _ => trimmed.to_string(),
    }
}

/// Sends the spans still buffered and stops the exporter.
pub(crate) async fn shutdown(provider: Option<SdkTracerProvider>) {
    if let Some(provider) = provider {
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: exporting the last traces failed: {e}");
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    #[test]
    fn the_log_filter_comes_from_rust_log_or_the_default() {
        let default = super::log_filter(None).unwrap();
        assert!(default.would_enable("meshql_engine::session", &Level::INFO));
        assert!(!default.would_enable("datafusion::physical_plan", &Level::INFO));
        assert!(default.would_enable("datafusion::physical_plan", &Level::WARN));
        assert_eq!(
            super::log_filter(Some("  ")).unwrap().to_string(),
            default.to_string()
        );

        let user = super::log_filter(Some("warn,meshql_engine=debug")).unwrap();
        assert!(user.would_enable("meshql_engine::session", &Level::DEBUG));
        assert!(!user.would_enable("meshql_http", &Level::INFO));

        let err = super::log_filter(Some("meshql_engine=loud")).unwrap_err();
        assert!(err.contains("RUST_LOG=\"meshql_engine=loud\""), "{err}");
    }

    #[test]
    fn traces_path_is_added_to_a_bare_endpoint() {
        assert_eq!(
            super::traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://127.0.0.1:4318/"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("https://otel.example/custom/traces"),
            "https://otel.example/custom/traces"
        );
    }
}
