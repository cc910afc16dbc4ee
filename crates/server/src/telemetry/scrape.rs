//! `GET /metrics`: the gauges computed at scrape time from the stores (so they are right after
//! a restart and never drift from what the stores hold), the recorder's series, and the
//! process collector.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use provision::{ListFilter, Status};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::App;

/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handler needs.
#[derive(Clone)]
struct Scrape {
    /// The stores the gauges are computed from.
    app: App,
    /// The recorder's series.
    handle: PrometheusHandle,
}

/// The router of the metrics listener.
pub(super) fn router(app: App, handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Scrape { app, handle })
}

async fn metrics(State(s): State<Scrape>) -> Response {
    // The stores are sled trees: read them off the async workers.
    let rendered = tokio::task::spawn_blocking(move || {
        update_gauges(&s.app);
        let mut text = s.handle.render();
        render_secret_expiry(&s.app, &mut text);
        super::process::render(&mut text);
        text
    })
    .await;
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Sets the gauges that are read from the stores. A store that cannot be read leaves its
/// gauges as they were (and logs why).
fn update_gauges(app: &App) {
    // The runtime's own counts (called on a blocking thread of the same runtime).
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let m = rt.metrics();
        metrics::gauge!("onboard_tokio_tasks_alive").set(m.num_alive_tasks() as f64);
        metrics::gauge!("onboard_tokio_workers").set(m.num_workers() as f64);
    }
    let age = SystemTime::now()
        .duration_since(app.audit().last_signed())
        .unwrap_or_default();
    metrics::gauge!("onboard_audit_checkpoint_age_seconds").set(age.as_secs_f64());
    match app.engine().list(&ListFilter::default()) {
        Ok(all) => {
            let mut by_state: BTreeMap<&'static str, u32> =
                STATES.iter().map(|s| (*s, 0)).collect();
            for o in &all {
                *by_state.entry(state_label(o.status)).or_default() += 1;
            }
            for (state, n) in by_state {
                metrics::gauge!("onboard_onboardings", "state" => state).set(f64::from(n));
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: onboardings not readable"),
    }
    match app.credentials().stored_rotation_stages() {
        Ok(stages) => {
            for stage in credentials::RotationStage::ALL {
                let n = stages.iter().filter(|s| **s == stage).count();
                metrics::gauge!("onboard_rotations_stored", "stage" => stage.as_str())
                    .set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: rotations not readable"),
    }
    match app.drift().open_drift(None) {
        Ok(items) => metrics::gauge!("onboard_drift_open").set(items.len() as f64),
        Err(e) => tracing::warn!(error = %e, "metrics: drift items not readable"),
    }
}

/// The family of each registration's earliest-expiring current secret, written from the store
/// at each scrape rather than through the recorder, whose series would outlive a registration
/// that no longer has a current secret (and keep its expiry alert firing until a restart).
/// Labels are registrations' ids, bounded by what was onboarded or attached.
fn render_secret_expiry(app: &App, out: &mut String) {
    let secrets = match app.credentials().expiring(i64::MAX) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: registrations not readable");
            return;
        }
    };
    let mut earliest: BTreeMap<(String, String), i64> = BTreeMap::new();
    for s in secrets {
        let Ok(end) = OffsetDateTime::parse(&s.secret.end, &Rfc3339) else {
            continue;
        };
        let key = (s.registration.tenant_id, s.registration.client_id);
        let t = end.unix_timestamp();
        earliest
            .entry(key)
            .and_modify(|e| *e = (*e).min(t))
            .or_insert(t);
    }
    write_secret_expiry(&earliest, out);
}

/// Appends the family in the Prometheus text format.
fn write_secret_expiry(earliest: &BTreeMap<(String, String), i64>, out: &mut String) {
    use std::fmt::Write;
    const NAME: &str = "onboard_secret_earliest_expiry_timestamp_seconds";
    super::process::header(
        out,
        NAME,
        "gauge",
        "When the earliest-expiring current client secret of a registration expires (Unix time).",
    );
    for ((tenant_id, client_id), t) in earliest {
        let _ = writeln!(
            out,
            "{NAME}{{tenant_id=\"{}\",client_id=\"{}\"}} {t}",
            label_value(tenant_id),
            label_value(client_id)
        );
    }
}

/// A label value escaped for the text format (backslash, double quote, line feed).
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every state label, so each series exists (at 0) from the first scrape.
const STATES: &[&str] = &[
    "provisioning",
    "awaiting_admin",
    "completed",
    "failed",
    "cancelling",
    "cancelled",
];

/// An onboarding's state as a label (`provisioning` for a running one, as the alerts say).
fn state_label(s: Status) -> &'static str {
    match s {
        Status::Running => "provisioning",
        other => other.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the registrations given are written: one that no longer has a current secret is
    /// gone at the next scrape. Label values are escaped.
    #[test]
    fn secret_expiry_is_written_from_what_the_store_holds() {
        let mut now = BTreeMap::new();
        now.insert(("t1".to_owned(), "c1".to_owned()), 1_800_000_000);
        now.insert(("t\"2".to_owned(), "c\\2\n".to_owned()), 1_700_000_000);
        let mut text = String::new();
        write_secret_expiry(&now, &mut text);
        assert!(text.contains(
            "onboard_secret_earliest_expiry_timestamp_seconds{tenant_id=\"t1\",client_id=\"c1\"} 1800000000\n"
        ));
        assert!(
            text.contains(r#"{tenant_id="t\"2",client_id="c\\2\n"} 1700000000"#),
            "{text}"
        );
        now.remove(&("t1".to_owned(), "c1".to_owned()));
        let mut next = String::new();
        write_secret_expiry(&now, &mut next);
        assert!(!next.contains("\"c1\""), "{next}");
        assert!(next.contains("# TYPE onboard_secret_earliest_expiry_timestamp_seconds gauge"));
    }
}
