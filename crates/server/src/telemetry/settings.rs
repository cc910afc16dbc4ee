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
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            log_format: LogFormat::default(),
            log_level: default_log_level(),
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
