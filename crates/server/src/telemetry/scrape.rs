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
    match app.credentials().expiring(i64::MAX) {
        Ok(secrets) => {
            // The earliest current secret per registration; labels are registrations' ids,
            // bounded by what was onboarded or attached.
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
            for ((tenant_id, client_id), t) in earliest {
                metrics::gauge!(
                    "onboard_secret_earliest_expiry_timestamp_seconds",
                    "tenant_id" => tenant_id,
                    "client_id" => client_id
                )
                .set(t as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: registrations not readable"),
    }
    match app.drift().open_drift(None) {
        Ok(items) => metrics::gauge!("onboard_drift_open").set(items.len() as f64),
        Err(e) => tracing::warn!(error = %e, "metrics: drift items not readable"),
    }
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
