//! Where Microsoft's admin-consent page sends the admin back (`GET /wizard/consented`): a
//! static page that says what happens next, and a nudge for the engine to look at once.
//!
//! Nothing in the request is trusted or shown: anyone can open this URL with any query. The
//! engine reads the grants from Microsoft Graph itself (`provision::consent`); the page only
//! says which way Microsoft sent the admin (the `error` parameter present or not) and, on a
//! refusal, the AADSTS number (digits only).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Wizard;

/// The reply address of Microsoft's admin-consent page: this page on the wizard's origin.
/// `None` when the activation URL has no `https` origin (Microsoft accepts `http` only on a
/// loopback host, `localhost` or `127.0.0.1`).
pub fn redirect_uri(activation_base_url: &str) -> Option<String> {
    on_wizard_origin(activation_base_url, "/wizard/consented")
}

/// `path` on the wizard's origin (that of `activation_base_url`), as an address Microsoft
/// sends a browser back to: `None` unless `https`, or `http` on a loopback host (`localhost`
/// or `127.0.0.1`: Microsoft's localhost exceptions; not `[::1]`, which it does not support).
pub(super) fn on_wizard_origin(activation_base_url: &str, path: &str) -> Option<String> {
    let (scheme, rest) = activation_base_url.split_once("://")?;
    let host = rest
        .split(['/', '?', '#'])
        .next()
        .filter(|h| !h.is_empty())?;
    let name = host.rsplit_once(':').map_or(host, |(name, _port)| name);
    let local = name == "localhost" || name == "127.0.0.1";
    (scheme == "https" || (scheme == "http" && local)).then(|| format!("{scheme}://{host}{path}"))
}

/// The AADSTS number in Microsoft's `error_description`, digits only.
pub(super) fn aadsts(description: &str) -> Option<&str> {
    let at = description.find("AADSTS")? + "AADSTS".len();
    let digits = &description[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    (end > 0).then(|| &digits[..end])
}

/// `GET /wizard/consented?…`: the page, and a nudge to the engine's consent watch.
pub(super) async fn page(
    State(w): State<Wizard>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (title, body) = match q.get("error") {
        None => {
            w.app.engine().nudge_consents();
            (
                "Thank you",
                "<p class=\"box ok\">Microsoft reports that you granted the permissions.</p>\
                 <p>Onboard now checks your tenant and finishes the onboarding on its own. The \
                 administrator who sent you the link sees the progress. You can close this \
                 page.</p>"
                    .to_owned(),
            )
        }
        Some(_) => {
            let code = q
                .get("error_description")
                .and_then(|d| aadsts(d))
                .map(|c| format!(" (AADSTS{c})"))
                .unwrap_or_default();
            (
                "The permissions were not granted",
                format!(
                    "<p class=\"box warn\">Microsoft reports that the permissions were not \
                     granted{code}.</p><p>Granting Microsoft Graph application permissions needs \
                     a Global Administrator or Privileged Role Administrator. Nothing was \
                     changed; the link you were sent still works until it expires.</p>"
                ),
            )
        }
    };
    static_page(StatusCode::OK, title, &body)
}

/// A page of the wizard's look that is not the wizard: `title` as its one heading, then `body`
/// (trusted HTML: callers put nothing from the request in it but digits).
pub(super) fn static_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>{title}</title>\n\
         <link rel=\"icon\" href=\"/wizard/icon.svg\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"/wizard/app.css\">\n</head>\n<body>\n\
         <header class=\"bar\"><span class=\"brand\"><img src=\"/wizard/icon.svg\" alt=\"\" \
         width=\"24\" height=\"24\"> <span>Onboard</span></span></header>\n\
         <main id=\"main\"><section><h1>{title}</h1>{body}</section></main>\n</body>\n</html>\n"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_address_is_the_wizard_origin_over_https() {
        assert_eq!(
            redirect_uri("https://wizard.example.net/activate").as_deref(),
            Some("https://wizard.example.net/wizard/consented")
        );
        assert_eq!(
            redirect_uri("https://127.0.0.1:8443").as_deref(),
            Some("https://127.0.0.1:8443/wizard/consented")
        );
        assert_eq!(
            redirect_uri("http://localhost:8080/a?b#c").as_deref(),
            Some("http://localhost:8080/wizard/consented")
        );
        assert_eq!(
            redirect_uri("http://127.0.0.1:8080/activate").as_deref(),
            Some("http://127.0.0.1:8080/wizard/consented")
        );
        assert_eq!(redirect_uri("http://wizard.example.net/activate"), None);
        assert_eq!(redirect_uri("http://localhost.example.net/activate"), None);
        assert_eq!(redirect_uri("http://[::1]:8080/activate"), None);
        assert_eq!(redirect_uri("wizard.example.net"), None);
        assert_eq!(redirect_uri("https:///x"), None);
    }

    #[test]
    fn only_the_aadsts_digits_are_taken() {
        assert_eq!(aadsts("AADSTS90094: An administrator <b>"), Some("90094"));
        assert_eq!(aadsts("AADSTS<script>"), None);
        assert_eq!(aadsts("no code"), None);
    }
}
