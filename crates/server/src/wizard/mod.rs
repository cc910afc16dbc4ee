//! The customer's invitation wizard: one HTML page, its script and style (embedded in the
//! binary), and a thin HTTP/JSON + server-sent-events layer over the same `Onboarding` service
//! code the gRPC clients call.
//!
//! - The page is served at the path of `invitations.activation_base_url` (so the email's link
//!   and the page agree); assets and the API live under `/wizard/`.
//! - The invitation token is the only credential. It stays in the URL fragment; the script
//!   sends it in the `x-invitation-token` header, never in a request line, so it is never in an
//!   access log or a Referer.
//! - Every handler calls the gRPC service implementation in process ([`OnboardingService`]),
//!   so the capability check, the audit entries, the name rules, the plan and the errors are
//!   the server's; this layer only translates JSON and `tonic::Status` (read, never built).
//! - Every response carries [`security_headers`]: a strict Content-Security-Policy (own origin
//!   only, no inline script), `frame-ancestors 'none'`, `Referrer-Policy: no-referrer`,
//!   `nosniff` and `no-store`.
//! - No client secret reaches the browser: the wizard's Provision is an invitation-token call,
//!   whose Completed event never carries it (the platform claims it with `ClaimSecret`).

mod api;
mod consented;
mod hand_off;
mod signed_in;
mod stream;
mod visit;

pub use consented::redirect_uri as consent_redirect_uri;
pub use signed_in::redirect_uri as sign_in_redirect_uri;
pub(crate) use stream::error_response;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::App;
use crate::onboarding::OnboardingService;

/// The page (every screen of the wizard; the script shows one at a time).
const INDEX_HTML: &str = include_str!("assets/index.html");
/// The tab icon.
const ICON_SVG: &str = include_str!("assets/icon.svg");
/// JavaScript's media type, which module scripts require.
const JS: &str = "text/javascript; charset=utf-8";
/// The icon's media type (also served as `/favicon.ico`).
const SVG: &str = "image/svg+xml";

/// The page's sub-resources, each at `/wizard/<name>`: the wizard's behaviour (plain JavaScript
/// modules, no build step: `app.js` is the entry and imports the other two) and its look.
const ASSETS: [(&str, &str, &str); 5] = [
    ("app.js", include_str!("assets/app.js"), JS),
    ("base.js", include_str!("assets/base.js"), JS),
    ("run.js", include_str!("assets/run.js"), JS),
    (
        "app.css",
        include_str!("assets/app.css"),
        "text/css; charset=utf-8",
    ),
    ("icon.svg", ICON_SVG, SVG),
];

/// Where the page is served when `activation_base_url` names no path.
const DEFAULT_PAGE_PATH: &str = "/activate";

/// The Content-Security-Policy of every wizard response: the page's own origin only (no
/// third-party origin, no inline script or style), no framing, no form posts, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// What the handlers share: the app and the one `OnboardingService` (its signed-in sessions
/// are the gRPC service's).
#[derive(Clone)]
pub(crate) struct Wizard {
    /// Configuration, invitations, the engine, the credential manager.
    app: App,
    /// The Onboarding service the gRPC server serves too.
    onboarding: OnboardingService,
}

/// The wizard's routes, to merge with the gRPC routes on the same listener.
pub fn router(app: App, onboarding: OnboardingService) -> Router {
    let page = page_path(&app.config().invitations.activation_base_url);
    let state = Wizard { app, onboarding };
    let mut router =
        Router::new().route(&page, get(|| asset(INDEX_HTML, "text/html; charset=utf-8")));
    for (name, body, content_type) in ASSETS {
        router = router.route(
            &format!("/wizard/{name}"),
            get(move || asset(body, content_type)),
        );
    }
    router
        // Browsers ask for it on their own (e.g. when showing an asset directly).
        .route("/favicon.ico", get(|| asset(ICON_SVG, SVG)))
        .route("/wizard/api/invitation", post(api::invitation))
        .route("/wizard/api/signin", post(api::sign_in))
        .route("/wizard/api/name", post(api::name))
        .route("/wizard/api/plan", post(api::plan))
        .route("/wizard/api/preview", post(api::preview))
        .route("/wizard/api/provision", post(api::provision))
        .route("/wizard/api/watch", post(api::watch))
        .route("/wizard/api/cancel", post(api::cancel))
        .route("/wizard/api/summary", post(api::summary))
        .route("/wizard/api/attach", post(api::attach))
        .route("/wizard/api/hand_off_link", post(hand_off::link))
        .route("/wizard/consented", get(consented::page))
        .route("/wizard/signed-in", get(signed_in::page))
        .route("/wizard/{*rest}", get(not_found).post(not_found))
        .with_state(state)
        .layer(axum::middleware::map_response(security_headers))
}

/// The path part of the activation base URL (`https://host/activate` → `/activate`).
pub fn page_path(activation_base_url: &str) -> String {
    let rest = activation_base_url
        .split_once("://")
        .map_or(activation_base_url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let path = path.split(['#', '?']).next().unwrap_or("");
    let path = path.trim_end_matches('/');
    if path.is_empty() || path.starts_with("/wizard/") || path.contains('{') {
        DEFAULT_PAGE_PATH.to_owned()
    } else {
        path.to_owned()
    }
}

/// Adds the security headers to every wizard response (pages, assets, API, errors).
pub async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let fixed: [(HeaderName, &'static str); 9] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store, max-age=0"),
        (header::PRAGMA, "no-cache"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}

/// A static asset with its type (the handler of the page and of each asset route).
async fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found",
    )
        .into_response()
}

/// The bytes of the whole page as a browser loads it (HTML, scripts, style, icon), for the
/// page-weight budget.
pub fn page_weight() -> usize {
    INDEX_HTML.len() + ASSETS.iter().map(|(_, body, _)| body.len()).sum::<usize>()
}

/// The paths of the page's sub-resources (`/wizard/app.js`, …), which the page loads.
pub fn asset_paths() -> impl Iterator<Item = String> {
    ASSETS.iter().map(|(name, _, _)| format!("/wizard/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_served_where_the_activation_links_point() {
        assert_eq!(
            page_path("https://onboard.example.net/activate"),
            "/activate"
        );
        assert_eq!(page_path("https://h/x/activate/"), "/x/activate");
        assert_eq!(page_path("http://127.0.0.1:1/onboard#"), "/onboard");
        assert_eq!(page_path("https://h"), "/activate");
        assert_eq!(page_path("https://h/wizard/api"), "/activate");
    }

    #[test]
    fn the_page_stays_under_its_weight_budget() {
        assert!(page_weight() < 100 * 1024, "{} bytes", page_weight());
    }
}
