//! Telemetry (`[telemetry]`): Prometheus metrics on their own listener and the log format.
//!
//! - `settings`: the section (`metrics_listen`, `log_format`, `log_level`).
//! - [`recorder`]: the one Prometheus recorder of the process (installed once; library crates
//!   only use the `metrics` facade, whose macros are no-ops until then).
//! - [`start`]: `GET /metrics` on `metrics_listen`, a task of the server's one
//!   `ShutdownController` (started by `run_from_config`).
//! - `scrape`: what is computed when Prometheus scrapes (onboardings by state, secret expiry,
//!   open drift, checkpoint age) and the process collector (`process`).
//! - `help`: the `# HELP` text of every family the recorder exports.
//! - `grpc`: the tower layer that counts and times every RPC and logs one line per call;
//!   `note`: what handlers add to that line (the caller, the onboarding).
//!
//! Metric names and labels are docs/operations.md#metrics; no label carries a string a caller
//! chose (service and method come from a fixed table, else `unknown`).

mod grpc;
mod help;
mod note;
mod process;
mod scrape;
mod settings;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::App;
use crate::error::{Result, ServerError};

pub(crate) use grpc::MetricsLayer;
pub(crate) use note::{CallNote, note_caller, note_onboarding};
pub use settings::{LogFormat, TelemetrySection};

/// How often histogram samples are folded into buckets between scrapes (keeps memory flat).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Histogram buckets by metric (seconds, or entries for the batch size).
const BUCKETS: &[(&str, &[f64])] = &[
    (
        "onboard_grpc_request_duration_seconds",
        &[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ],
    ),
    (
        "onboard_step_duration_seconds",
        &[
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
        ],
    ),
    (
        "onboard_entra_request_duration_seconds",
        &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
    ),
    (
        "onboard_audit_append_duration_seconds",
        &[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ],
    ),
    (
        "onboard_audit_batch_size",
        &[
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
        ],
    ),
];

/// The process's Prometheus recorder, installed as the global `metrics` recorder on first
/// use. Call it before opening the audit log (its writer resolves its handles when it starts).
/// Fails only when some other recorder was installed first.
pub fn recorder() -> Result<PrometheusHandle> {
    static HANDLE: OnceLock<std::result::Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, buckets) in BUCKETS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
                    .map_err(|e| format!("buckets of {name}: {e}"))?;
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|e| format!("installing the metrics recorder: {e}"))?;
            help::describe();
            zero_series();
            Ok(handle)
        })
        .clone()
        .map_err(ServerError::Internal)
}

/// Creates the series whose label values are a fixed set at 0, so dashboards and alerts see
/// 0 rather than "no data" before the first event (the label sets are the ones the recording
/// crates use: entra-client's `reason_label`, the rotation outcomes, the sign-in states).
fn zero_series() {
    for reason in [
        "throttled",
        "server_error",
        "replication_lag",
        "credential_propagation",
        "transport",
    ] {
        metrics::counter!("onboard_entra_retries_total", "reason" => reason).increment(0);
    }
    metrics::counter!("onboard_entra_retry_after_seconds_total").increment(0);
    for outcome in ["completed", "failed", "halted"] {
        metrics::counter!("onboard_rotations_total", "outcome" => outcome).increment(0);
    }
    metrics::gauge!("onboard_signins_pending").increment(0.0);
    for outcome in ["completed", "declined", "expired", "failed"] {
        metrics::counter!("onboard_signins_total", "outcome" => outcome).increment(0);
    }
}

/// Serves `GET /metrics` on `[telemetry] metrics_listen`, if set, until shutdown; returns the
/// bound address. The recorder must be installed ([`recorder`]) before the app was opened.
pub async fn start(app: &App) -> Result<Option<SocketAddr>> {
    let Some(listen) = app.config().telemetry.metrics_listen else {
        return Ok(None);
    };
    let handle = recorder()?;
    let (listener, addr) = crate::serve::bind("telemetry.metrics_listen", listen).await?;
    let router = scrape::router(app.clone(), handle.clone());
    let shutdown = app.shutdown();
    let stop = shutdown.clone();
    let _ = shutdown.spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.recv().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    let stop = shutdown.clone();
    let _ = shutdown.spawn(async move {
        loop {
            tokio::select! {
                () = stop.recv() => break,
                () = tokio::time::sleep(UPKEEP_EVERY) => handle.run_upkeep(),
            }
        }
    });
    tracing::info!(address = %addr, "metrics serving");
    Ok(Some(addr))
}
