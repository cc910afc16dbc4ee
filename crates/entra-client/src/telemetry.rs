//! What every request to Microsoft leaves behind: one log line (operation, HTTP status,
//! Microsoft's `request-id` and our `client-request-id`, duration) and the metrics of
//! docs/operations.md#metrics, through the `metrics` facade (no-ops without a recorder).
//!
//! Labels are bounded by construction: `operation` is the call site's fixed name (never a URL,
//! which carries object ids), `status` an HTTP status code or `transport_error`, `reason` one
//! of `reason_label`'s names. Nothing from a request or answer body is ever recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::error::EntraError;
use crate::retry::{OpContext, RetryEvent, RetryReason};
use crate::transport::{HttpRequest, HttpResponse, Transport, TransportFailure};

/// Sends `req` for `operation` through `transport`, then logs and counts the answer.
pub(crate) async fn send(
    transport: Arc<dyn Transport>,
    req: HttpRequest,
    operation: &'static str,
) -> Result<HttpResponse, TransportFailure> {
    let sent_crid = header(&req.headers, "client-request-id");
    let started = Instant::now();
    // One span per request (a child of the step or RPC that made it). Only fixed names and
    // Microsoft's ids are recorded: never a URL (object ids), a body or a header value.
    let span = tracing::info_span!(
        "microsoft",
        otel.name = operation,
        otel.kind = "client",
        operation,
        http.response.status_code = tracing::field::Empty,
        request_id = tracing::field::Empty,
        client_request_id = sent_crid.as_deref().unwrap_or(""),
    );
    let result = transport.send(req).instrument(span.clone()).await;
    let took = started.elapsed();
    if let Ok(resp) = &result {
        span.record("http.response.status_code", resp.status.as_u16());
        let id = header(&resp.headers, "request-id")
            .or_else(|| header(&resp.headers, "x-ms-request-id"));
        if let Some(id) = id {
            span.record("request_id", id.as_str());
        }
    }
    drop(span);
    metrics::histogram!("onboard_entra_request_duration_seconds", "operation" => operation)
        .record(took.as_secs_f64());
    let duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    match &result {
        Ok(resp) => {
            let status = resp.status.as_u16();
            metrics::counter!(
                "onboard_entra_requests_total",
                "operation" => operation,
                "status" => status_label(status)
            )
            .increment(1);
            if status == 429 {
                metrics::counter!("onboard_entra_throttled_total", "operation" => operation)
                    .increment(1);
            }
            // Graph answers `request-id`, the identity platform `x-ms-request-id`.
            let request_id = header(&resp.headers, "request-id")
                .or_else(|| header(&resp.headers, "x-ms-request-id"));
            let client_request_id = header(&resp.headers, "client-request-id").or(sent_crid);
            tracing::info!(
                operation,
                status,
                request_id = request_id.as_deref().unwrap_or(""),
                client_request_id = client_request_id.as_deref().unwrap_or(""),
                duration_ms,
                "microsoft call"
            );
        }
        Err(f) => {
            metrics::counter!(
                "onboard_entra_requests_total",
                "operation" => operation,
                "status" => "transport_error"
            )
            .increment(1);
            tracing::info!(
                operation,
                status = "transport_error",
                kind = ?f.kind,
                client_request_id = sent_crid.as_deref().unwrap_or(""),
                duration_ms,
                "microsoft call"
            );
        }
    }
    result
}

/// Tells everyone that `operation` is tried again after `wait`: the log line, the retry
/// metric, and the caller's observer (progress events). Every retry goes through here, the
/// retry loop's and `GraphClient::write_once`'s alike.
pub(crate) fn announce(
    operation: &'static str,
    ctx: &OpContext,
    attempt: u32,
    reason: RetryReason,
    wait: Duration,
    err: &EntraError,
) {
    let event = RetryEvent {
        operation,
        attempt,
        reason,
        wait,
        request_id: err.request_id().map(str::to_owned),
        client_request_id: ctx.client_request_id.to_string(),
    };
    tracing::info!(
        operation,
        attempt,
        wait_ms = wait.as_millis() as u64,
        request_id = event.request_id.as_deref().unwrap_or(""),
        client_request_id = %event.client_request_id,
        reason = %event.reason,
        "retrying"
    );
    retried(&event.reason, wait);
    if let Some(obs) = &ctx.observer {
        obs.on_retry(&event);
    }
}

/// Counts one retry and, when the wait is the server's `Retry-After`, the seconds waited.
fn retried(reason: &RetryReason, wait: Duration) {
    metrics::counter!("onboard_entra_retries_total", "reason" => reason_label(reason)).increment(1);
    if reason.retry_after().is_some() {
        // Retry-After is whole seconds (delta-seconds or an HTTP-date), so nothing is lost.
        metrics::counter!("onboard_entra_retry_after_seconds_total").increment(wait.as_secs());
    }
}

/// The reason as a metric label (`onboard_entra_retries_total{reason}`): a fixed name.
fn reason_label(reason: &RetryReason) -> &'static str {
    match reason {
        RetryReason::Throttled { .. } => "throttled",
        RetryReason::ServerError { .. } => "server_error",
        RetryReason::ReplicationLag { .. } => "replication_lag",
        RetryReason::CredentialPropagation { .. } => "credential_propagation",
        RetryReason::Transport { .. } => "transport",
    }
}

/// A status code as a label value without allocating for the common ones.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        412 => "412",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
