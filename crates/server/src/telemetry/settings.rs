//! The `[telemetry]` section.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[telemetry]`: metrics and logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// Where `GET /metrics` (Prometheus text format) listens, e.g. `0.0.0.0:9090`; unset: no
    /// metrics listener and no recorder (the metrics calls are then no-ops). Its own listener
    /// so the scrape port can be opened to the monitoring network only.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// `text` (human) or `json` (one JSON object per line, for log collectors).
    #[serde(default)]
    pub log_format: LogFormat,
    /// The default log filter (a `RUST_LOG` directive such as `info` or
    /// `info,onboard_server=debug`); `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// An OpenTelemetry collector's OTLP/gRPC endpoint (e.g. `http://otel-collector:4317`):
    /// one trace per RPC, with a span per onboarding run, step and Microsoft call, and its id
    /// in every audit entry written within it. Unset: no traces. Needs a build with the `otel`
    /// feature (the release build in deploy/ has it); other builds refuse to start with it.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            log_format: LogFormat::default(),
            log_level: default_log_level(),
            otlp_endpoint: None,
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// tracing-subscriber's human format.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON formatter).
    Json,
}
