//! Tracing, OpenTelemetry and Prometheus set-up shared by every binary.

mod propagation;

use std::sync::OnceLock;

use anyhow::Context as _;
use chatmesh_config::TelemetryConfig;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use propagation::{
    TRACEPARENT, exporting, inject_trace_context, link_traceparent, set_parent_from_metadata,
    set_parent_from_traceparent, traceparent,
};

/// Flushes exported spans when dropped; keep it alive for the process.
#[derive(Debug)]
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("trace export shutdown failed: {err}");
        }
    }
}

/// Installs the global `tracing` subscriber for `service`: a log layer
/// filtered by `config.log` (or `RUST_LOG` when set), plus OTLP export when
/// an endpoint is configured. W3C trace context becomes the global
/// propagator either way, so trace IDs cross gRPC metadata, Kafka headers
/// and the fan-out payload. Spans are batched before export; the standard
/// `OTEL_BSP_*` variables (`OTEL_BSP_SCHEDULE_DELAY`, in milliseconds) tune
/// the batching.
pub fn init(service: &'static str, config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .with_context(|| format!("invalid config field `telemetry.log`: `{}`", config.log))?;
    let fmt = if config.json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        // Colours only for a person at a terminal, never in log files.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed()
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = match &config.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .context("building the OTLP span exporter")?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(service).build())
                .build();
            opentelemetry::global::set_tracer_provider(provider.clone());
            Some(provider)
        }
        None => None,
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .context("a tracing subscriber is already installed")?;
    propagation::set_exporting(provider.is_some());
    Ok(TelemetryGuard { provider })
}

/// The process-wide Prometheus recorder, installed on first use. Several
/// services share one recorder when a test runs them in one process.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness);
            // the handle then renders an empty registry, which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
