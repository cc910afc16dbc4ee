//! The `# HELP` text of every family the recorder exports, registered with it at install
//! ([`describe`]), so Prometheus, Grafana and `curl /metrics` say what each one is. The
//! families written at scrape time (`process_*`, the secret expiry) carry theirs where they
//! are written. docs/operations.md#metrics has the same names with more words; a test keeps
//! the two lists equal.

/// A family's kind, for the `describe_*` macro it needs.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    /// `describe_counter!`.
    Counter,
    /// `describe_gauge!`.
    Gauge,
    /// `describe_histogram!`.
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

/// Name, kind and help text of every family recorded through the `metrics` facade.
pub(super) const HELP: &[(&str, Kind, &str)] = &[
    (
        "onboard_grpc_requests_total",
        Counter,
        "gRPC calls by status code name, counted when the response ends.",
    ),
    (
        "onboard_grpc_request_duration_seconds",
        Histogram,
        "gRPC call duration, request to the end of the response (a stream's whole life).",
    ),
    (
        "onboard_grpc_streams_open",
        Gauge,
        "Server streams open now.",
    ),
    (
        "onboard_onboardings",
        Gauge,
        "Onboardings by state (computed from the store at each scrape).",
    ),
    (
        "onboard_step_duration_seconds",
        Histogram,
        "Provisioning step durations, failed ones included.",
    ),
    (
        "onboard_entra_retries_total",
        Counter,
        "Retries of Microsoft calls, by reason.",
    ),
    (
        "onboard_signins_pending",
        Gauge,
        "Sign-ins (device code or browser) waiting for the admin now.",
    ),
    (
        "onboard_signins_total",
        Counter,
        "Sign-ins (device code or browser) that ended, by outcome.",
    ),
    (
        "onboard_entra_requests_total",
        Counter,
        "Requests to Microsoft by call site and HTTP status.",
    ),
    (
        "onboard_entra_request_duration_seconds",
        Histogram,
        "One request to Microsoft's duration (each retry is a request).",
    ),
    (
        "onboard_entra_throttled_total",
        Counter,
        "429 answers from Microsoft, by call site.",
    ),
    (
        "onboard_entra_retry_after_seconds_total",
        Counter,
        "Seconds waited because Microsoft sent Retry-After.",
    ),
    (
        "onboard_audit_appends_total",
        Counter,
        "Audit entries made durable and signed.",
    ),
    (
        "onboard_audit_appends_requested_total",
        Counter,
        "Audit appends handed to the log's writer (with the checkpoint age: a stuck writer).",
    ),
    (
        "onboard_audit_append_failures_total",
        Counter,
        "Audit appends answered with an error (after a write error the log refuses every append until restart).",
    ),
    (
        "onboard_audit_append_duration_seconds",
        Histogram,
        "One audit group commit: write, fsync, sign.",
    ),
    (
        "onboard_audit_batch_size",
        Histogram,
        "Audit entries per group commit (one fsync).",
    ),
    (
        "onboard_audit_entries",
        Gauge,
        "Entries in the audit log (its tree size).",
    ),
    (
        "onboard_audit_published_entries",
        Gauge,
        "Entries the publication target's checkpoint covers.",
    ),
    (
        "onboard_audit_witnessed_entries",
        Gauge,
        "Entries the latest checkpoint cosigned by a quorum of witnesses covers.",
    ),
    (
        "onboard_audit_publish_failures_total",
        Counter,
        "Audit publication rounds that failed (each retried with backoff).",
    ),
    (
        "onboard_audit_checkpoint_age_seconds",
        Gauge,
        "Seconds since this process last signed an audit checkpoint (start-up counts).",
    ),
    (
        "onboard_rotations_total",
        Counter,
        "Secret rotations driven to an end, by outcome.",
    ),
    (
        "onboard_rotations_stored",
        Gauge,
        "Secret rotations stored and not finished, by stage (handing_over: waiting for a caller).",
    ),
    (
        "onboard_drift_open",
        Gauge,
        "Open drift items (computed from the store at each scrape).",
    ),
    (
        "onboard_tokio_tasks_alive",
        Gauge,
        "Tasks alive in the server's tokio runtime (a steady climb is a leak).",
    ),
    (
        "onboard_tokio_workers",
        Gauge,
        "The tokio runtime's worker threads.",
    ),
];

/// Registers every [`HELP`] text with the installed recorder.
pub(super) fn describe() {
    for (name, kind, help) in HELP {
        match kind {
            Counter => metrics::describe_counter!(*name, *help),
            Gauge => metrics::describe_gauge!(*name, *help),
            Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The names here and the rows of docs/operations.md's metrics table (less the families
    /// written at scrape time, which carry their own help) are the same list.
    #[test]
    fn every_documented_family_has_help_and_no_other() {
        let docs = include_str!("../../../../docs/operations.md");
        let mut documented: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .filter(|n| n.starts_with("onboard_") || n.starts_with("process_"))
            .filter(|n| {
                !n.starts_with("process_")
                    && *n != "onboard_secret_earliest_expiry_timestamp_seconds"
            })
            .collect();
        documented.sort_unstable();
        documented.dedup();
        let mut here: Vec<&str> = super::HELP.iter().map(|(n, _, _)| *n).collect();
        here.sort_unstable();
        assert_eq!(here, documented);
        assert!(
            super::HELP
                .iter()
                .all(|(_, _, h)| !h.is_empty() && !h.contains('\n'))
        );
    }
}
