//! OpenTelemetry trace export (the `otel` feature, `[telemetry] otlp_endpoint`): the spans the
//! server opens (one per RPC, per onboarding run, per step and per Microsoft call) go to an
//! OTLP/gRPC collector in batches, and every audit entry written inside one carries its trace
//! id (`onboard_core::audit::set_trace_source`).
//!
//! Only the server's own spans are exported: the HTTP/2 and gRPC crates' spans (the exporter's
//! own requests among them) are filtered out, whatever `RUST_LOG` says for the log lines.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

/// What the export needs at exit: the provider, whose shutdown sends the last batch.
pub struct Traces {
    /// Batches and sends the spans.
    provider: SdkTracerProvider,
}

/// The layer that exports spans to `endpoint`, and the handle to flush it at exit.
pub fn layer<S>(endpoint: &str) -> Result<(impl Layer<S>, Traces), String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint {endpoint:?}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("onboard").build())
        .build();
    let tracer = provider.tracer("onboard");
    onboard_core::audit::set_trace_source(current_trace_id);
    // The server's spans are at `info`; the transport crates' (and the exporter's own) are not
    // exported.
    let filter = EnvFilter::new(
        "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,\
         opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off",
    );
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter);
    Ok((layer, Traces { provider }))
}

/// The trace id of the current span (32 lowercase hex digits), when it is being traced.
fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

impl Traces {
    /// Sends what is still batched and stops the exporter (blocks; call off the async threads).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: the last traces were not sent: {e}");
        }
    }
}
