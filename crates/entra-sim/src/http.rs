//! Routing, the per-request id and fault layer, and the two error dialects
//! (Graph's OData errors and the STS's OAuth errors).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};

use crate::faults::Injected;
use crate::state::{Shared, new_guid, now_rfc3339};

/// Request correlation ids, echoed in headers and error bodies as Graph and the STS do.
#[derive(Debug, Clone)]
pub struct ReqIds {
    /// Server-side id (`request-id` header, `innerError.request-id`, STS `trace_id`).
    pub request_id: String,
    /// The client's `client-request-id` if it sent one, else a fresh one (STS `correlation_id`).
    pub client_request_id: String,
}

/// All routes of the emulator.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(crate::discovery::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(crate::discovery::jwks))
        .route("/{tenant}/discovery/keys", get(crate::discovery::jwks))
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(crate::sts::devicecode),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(crate::sts::token))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(crate::authorize::page).post(crate::authorize::submit),
        )
        .route(
            "/{tenant}/adminconsent",
            get(crate::admin_consent::page).post(crate::admin_consent::submit),
        )
        .route(
            "/devicelogin",
            get(crate::sim_page::page).post(crate::sim_page::page_submit),
        )
        .route("/_sim/info", get(crate::sim_page::info))
        .route("/_sim/devicelogin", post(crate::sim_page::devicelogin))
        .route(
            "/_sim/faults",
            get(crate::sim_page::get_faults).post(crate::sim_page::set_faults),
        )
        .route("/_sim/snapshot", get(crate::sim_page::snapshot))
        .route(
            "/_sim/tenants",
            get(crate::sim_page::tenants).post(crate::sim_page::add_tenant),
        )
        .route("/v1.0/{*rest}", any(crate::graph::dispatch))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            ids_and_faults,
        ))
        .with_state(shared)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// Assigns request ids, applies latency to every call and throttling / server errors to
/// Graph calls, and stamps the id headers on the answer.
async fn ids_and_faults(
    State(shared): State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let client_request_id = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(new_guid);
    let ids = ReqIds {
        request_id: new_guid(),
        client_request_id,
    };
    req.extensions_mut().insert(ids.clone());
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let control = path.starts_with("/_sim/");
    let graph = path.starts_with("/v1.0/");
    let sts_grant = req.method() == axum::http::Method::POST
        && (path.ends_with("/oauth2/v2.0/token") || path.ends_with("/oauth2/v2.0/devicecode"));
    if graph {
        shared.counts.graph.fetch_add(1, Ordering::Relaxed);
    } else if !control {
        shared.counts.sts.fetch_add(1, Ordering::Relaxed);
    }
    let (latency, injected, after_write) = {
        let mut inner = shared.lock();
        let faults = inner.faults.clone();
        let mut injected = if graph {
            inner.rng.decide(&faults)
        } else if sts_grant {
            inner.rng.decide_sts(&faults)
        } else {
            Injected::None
        };
        if let (Some(cap), false) = (faults.max_faults_per_operation, injected == Injected::None) {
            let n = inner
                .faults_per_operation
                .entry(ids.client_request_id.clone())
                .or_insert(0);
            if *n >= cap {
                injected = Injected::None;
            } else {
                *n += 1;
            }
        }
        (faults.latency_ms, injected, faults.errors_after_write)
    };
    // A write whose answer is lost: it lands first (see `Faults::errors_after_write`).
    let lands_first = graph
        && after_write
        && matches!(injected, Injected::ServerError(500 | 504, _))
        && matches!(
            method,
            axum::http::Method::POST | axum::http::Method::PATCH | axum::http::Method::DELETE
        );
    if !control && latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let mut resp = match injected {
        // A panicking handler must answer 500 like Graph would rather than drop the
        // connection; running it as its own task turns the panic into a JoinError.
        Injected::None => match tokio::spawn(next.run(req)).await {
            Ok(r) => r,
            Err(_) => odata_error(
                &ids,
                StatusCode::INTERNAL_SERVER_ERROR,
                "generalException",
                "An unspecified error has occurred.",
            ),
        },
        Injected::Throttle(after) if !graph => {
            // Entra's STS throttles with a bare text body, not its JSON error format.
            let mut r = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
            set_header(r.headers_mut(), "retry-after", &after.to_string());
            r
        }
        Injected::Throttle(after) => {
            let mut r = odata_error(
                &ids,
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests. Please retry after the time given in the Retry-After header.",
            );
            set_header(r.headers_mut(), "retry-after", &after.to_string());
            r
        }
        Injected::ServerError(status, after) => {
            if lands_first {
                let _ = tokio::spawn(next.run(req)).await;
            }
            let (code, msg) = match status {
                503 => (
                    "serviceNotAvailable",
                    "The service is temporarily unavailable. You may repeat the request after a delay, which may be specified in a Retry-After header.",
                ),
                504 => (
                    "timeout",
                    "The operation timed out before it could be completed.",
                ),
                _ => ("generalException", "An unspecified error has occurred."),
            };
            let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = odata_error(&ids, st, code, msg);
            if status == 503 {
                set_header(r.headers_mut(), "retry-after", &after.to_string());
            }
            r
        }
    };
    // Method, path and status only: query strings and bodies may carry secrets or tokens.
    tracing::debug!(
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        request_id = %ids.request_id,
        "entra-sim request"
    );
    let h = resp.headers_mut();
    if graph {
        set_header(h, "request-id", &ids.request_id);
        set_header(h, "client-request-id", &ids.client_request_id);
        set_header(
            h,
            "x-ms-ags-diagnostic",
            r#"{"ServerInfo":{"DataCenter":"Loopback","Slice":"E","Ring":"SIM","ScaleUnit":"000","RoleInstance":"SIM"}}"#,
        );
    } else if !control {
        set_header(h, "x-ms-request-id", &ids.request_id);
        set_header(h, "client-request-id", &ids.client_request_id);
        set_header(h, "x-ms-ests-server", "2.1.0 - SIM - loopback");
    }
    set_header(h, "cache-control", "no-store, no-cache");
    resp
}

fn set_header(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Graph's JSON content type.
const ODATA_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// A Graph JSON answer.
pub fn graph_json(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ODATA_JSON));
    r
}

/// 204 No Content.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Graph's error body: `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.
pub fn odata_error(ids: &ReqIds, status: StatusCode, code: &str, message: &str) -> Response {
    odata_error_details(ids, status, code, message, &[])
}

/// One entry of an OData error's `details`. `microsoft.graph.ODataErrors.ErrorDetails`
/// requires `code` and `message`; `target` is optional.
pub struct ErrorDetail<'a> {
    /// The more specific code (e.g. `NoBackingApplicationObject`).
    pub code: &'a str,
    /// Human text (required by the published schema).
    pub message: &'a str,
    /// The property it is about, if any.
    pub target: Option<&'a str>,
}

/// An OData error that also carries `details` (directory errors such as NoBackingApplicationObject).
pub fn odata_error_details(
    ids: &ReqIds,
    status: StatusCode,
    code: &str,
    message: &str,
    details: &[ErrorDetail<'_>],
) -> Response {
    let details: Option<Value> = (!details.is_empty()).then(|| {
        Value::Array(
            details
                .iter()
                .map(|d| json!({"code": d.code, "message": d.message, "target": d.target}))
                .collect(),
        )
    });
    let mut err = json!({
        "code": code,
        "message": message,
        "innerError": {
            "date": now_rfc3339(),
            "request-id": ids.request_id,
            "client-request-id": ids.client_request_id,
        }
    });
    if let Some(d) = details {
        err["details"] = d;
    }
    let mut r = graph_json(status, &json!({ "error": err }));
    if status == StatusCode::UNAUTHORIZED {
        set_header(
            r.headers_mut(),
            "www-authenticate",
            r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#,
        );
    }
    r
}

/// Graph refusing a delegated token under Conditional Access with a claims challenge, in the
/// form Microsoft documents ("Claims challenges, claims requests and client capabilities";
/// "How to use Continuous Access Evaluation enabled APIs"): 401, a `Bearer` challenge with
/// `error="insufficient_claims"` and `claims` = base64 of a claims request for a token issued
/// after now (`nbf`), and the OData body Graph sends with it (`InvalidAuthenticationToken`,
/// "Continuous access evaluation resulted in challenge with result: InteractionRequired and
/// code: …", as recorded in Graph SDK issues).
pub fn claims_challenge(ids: &ReqIds, now: i64, code: &str) -> Response {
    use base64::Engine;
    let message = format!(
        "Continuous access evaluation resulted in challenge with result: InteractionRequired \
         and code: {code}"
    );
    let mut r = odata_error(
        ids,
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        &message,
    );
    let request = format!(r#"{{"access_token":{{"nbf":{{"essential":true, "value":"{now}"}}}}}}"#);
    let claims = base64::engine::general_purpose::STANDARD.encode(request);
    set_header(
        r.headers_mut(),
        "www-authenticate",
        &format!(
            r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", error_description="{message}", error="insufficient_claims", claims="{claims}""#
        ),
    );
    r
}

/// An STS error: `error`, `error_description` starting `AADSTSnnnn:`, `error_codes`,
/// `timestamp`, `trace_id`, `correlation_id`, `error_uri`.
pub fn sts_error(ids: &ReqIds, status: StatusCode, error: &str, code: u32, text: &str) -> Response {
    let ts = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    let timestamp = ts.format(&f).unwrap_or_default();
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {timestamp}",
            ids.request_id, ids.client_request_id
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": ids.request_id,
        "correlation_id": ids.client_request_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    let mut r = (status, axum::Json(body)).into_response();
    set_header(r.headers_mut(), "cache-control", "no-store, no-cache");
    r
}
