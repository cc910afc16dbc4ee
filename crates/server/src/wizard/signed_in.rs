//! Where Microsoft sends the admin back from a browser sign-in (`GET /wizard/signed-in`,
//! `SIGN_IN_METHOD_BROWSER`): the query goes, unread, to the sign-in task whose `state` it
//! names (`onboarding::signin::Returns`), which checks it, redeems the code and tells the
//! wizard's own tab the outcome. This page only sends the admin back to that tab.
//!
//! Nothing in the request is shown; the code is never logged (the access log records paths
//! only) and never answered back.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::Wizard;
use super::consented::{aadsts, on_wizard_origin, static_page};

/// Where Microsoft sends the browser back from a browser sign-in: this page on the wizard's
/// origin; `None` when the activation URL has no `https` origin. The token app must list it
/// as a "Mobile and desktop applications" redirect URI.
pub fn redirect_uri(activation_base_url: &str) -> Option<String> {
    on_wizard_origin(activation_base_url, "/wizard/signed-in")
}

/// `GET /wizard/signed-in?…`: hands the redirect to its sign-in and says where to go next.
pub(super) async fn page(
    State(w): State<Wizard>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let refused = q.contains_key("error");
    let code = q
        .get("error_description")
        .and_then(|d| aadsts(d))
        .map(|c| format!(" (AADSTS{c})"))
        .unwrap_or_default();
    if !w.onboarding.browser_returns().deliver(q) {
        return static_page(
            StatusCode::NOT_FOUND,
            "This sign-in is no longer open",
            "<p class=\"box warn\">It has finished, its time ran out, or the invitation \
             wizard that started it was closed.</p><p>Go back to the invitation wizard and \
             sign in again from there.</p>",
        );
    }
    if refused {
        return static_page(
            StatusCode::OK,
            "The sign-in did not finish",
            &format!(
                "<p class=\"box warn\">Microsoft ended the sign-in{code}.</p><p>Go back to the \
                 invitation wizard's tab: it says what happened and what you can do. You can \
                 close this tab.</p>"
            ),
        );
    }
    static_page(
        StatusCode::OK,
        "Go back to the invitation wizard",
        "<p class=\"box ok\">Microsoft sent you back to Onboard.</p><p>The invitation \
         wizard's tab now checks your sign-in and continues. You can close this tab.</p>",
    )
}
