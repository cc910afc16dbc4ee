//! The human side (the device sign-in page at `verification_uri`) and the `/_sim/*` control
//! endpoints that tests and scripts use instead of a browser.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use serde_json::json;

use crate::SimError;
use crate::faults::Faults;
use crate::state::Shared;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Entra's sign-in error page: shown in the browser, nothing sent back to the app (an unknown
/// app or a reply address it did not register).
pub fn error_page(status: StatusCode, text: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html><body><h2>Sign in error</h2><p>{}</p></body></html>",
            escape(text)
        )),
    )
        .into_response()
}

/// 302 to `uri` with `pairs` added to its query (`&` when it already has one).
pub fn redirect(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let sep = if uri.contains('?') { '&' } else { '?' };
    redirect_with(uri, sep, pairs)
}

/// A 302 to `uri`, `sep` (`?`, `&` or `#`), then `pairs` form-encoded.
pub fn redirect_with(uri: &str, sep: char, pairs: &[(&str, &str)]) -> Response {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    let location = format!("{uri}{sep}{}", ser.finish());
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// A hidden form field, name and value escaped.
pub fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

/// A page where a person picks an account (`upn`, `selected` preselected) and answers
/// `action=accept|cancel`, posting `fields` (hidden inputs) back to the same URL. `intro` is
/// HTML the caller has escaped.
pub fn account_choice(
    title: &str,
    intro: &str,
    fields: &str,
    label: &str,
    upns: &[&str],
    selected: &str,
) -> Response {
    let options: String = upns
        .iter()
        .map(|upn| {
            let on = if upn.eq_ignore_ascii_case(selected) {
                " selected"
            } else {
                ""
            };
            format!("<option value=\"{0}\"{on}>{0}</option>", escape(upn))
        })
        .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\
<h2>{title}</h2>{intro}<form method=\"post\">{fields}<label>{label}<select name=\"upn\">{options}</select></label>\
<button name=\"action\" value=\"accept\">Accept</button> <button name=\"action\" value=\"cancel\">Cancel</button></form></body></html>"
    ))
    .into_response()
}

/// Status and machine-readable code of a failed sign-in completion.
fn classify(e: &SimError) -> (StatusCode, &'static str) {
    match e {
        SimError::BadUserCode(_) => (StatusCode::BAD_REQUEST, "bad_verification_code"),
        SimError::CodeExpired => (StatusCode::BAD_REQUEST, "expired_token"),
        SimError::AlreadyCompleted => (StatusCode::CONFLICT, "already_completed"),
        SimError::UnknownUser(_) => (StatusCode::NOT_FOUND, "unknown_user"),
        SimError::ConsentRequired(_) => (StatusCode::FORBIDDEN, "consent_required"),
        SimError::BlockedByConditionalAccess => (StatusCode::FORBIDDEN, "access_blocked"),
        SimError::ExternalUserNotInTenant(_) => (StatusCode::FORBIDDEN, "user_not_in_tenant"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    }
}

fn layout(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Enter code - Entra emulator</title>\
<style>body{{font-family:Segoe UI,Arial,sans-serif;background:#f2f2f2}}main{{background:#fff;max-width:440px;margin:60px auto;padding:36px;box-shadow:0 2px 6px rgba(0,0,0,.2)}}\
label{{display:block;margin-top:14px}}input,select{{width:100%;box-sizing:border-box;padding:6px;font-size:15px}}button{{margin-top:18px;padding:8px 20px;font-size:15px}}\
.ok{{color:#107c10}}.err{{color:#a80000}}</style></head><body><main><h2>Entra emulator sign-in</h2>{body}</main></body></html>"
    ))
}

/// `GET /devicelogin`: enter the code, pick who signs in, approve or decline.
pub async fn page(State(s): State<Arc<Shared>>) -> Html<String> {
    let info = s.info();
    let options: String = info
        .users
        .iter()
        .map(|u| {
            let roles = if u.roles.is_empty() {
                "no admin role".to_string()
            } else {
                u.roles.join(", ")
            };
            format!(
                "<option value=\"{}\">{} ({})</option>",
                escape(&u.upn),
                escape(&u.upn),
                escape(&roles)
            )
        })
        .collect();
    layout(&format!(
        "<p>Enter the code displayed on your app or device to allow it to access <b>{}</b>.</p>\
<form method=\"post\" action=\"/devicelogin\">\
<label>Code<input name=\"user_code\" autocomplete=\"off\" autofocus required></label>\
<label>Sign in as<select name=\"upn\">{options}</select></label>\
<button name=\"action\" value=\"approve\" type=\"submit\">Continue and accept</button> \
<button name=\"action\" value=\"decline\" type=\"submit\">Decline</button></form>",
        escape(&info.tenant_domain)
    ))
}

/// Completes the sign-in from form fields; returns whether it was approved and the app's name.
fn complete(s: &Shared, form: &HashMap<String, String>) -> Result<(bool, String), SimError> {
    let code = form
        .get("user_code")
        .map(String::as_str)
        .unwrap_or_default();
    let upn = form.get("upn").map(String::as_str).unwrap_or_default();
    let approve = form.get("action").map(String::as_str) != Some("decline");
    let app = s.client_name_for_code(code).unwrap_or_default();
    let approved = s.complete_device_login(code, upn, approve)?;
    Ok((approved, app))
}

/// `POST /devicelogin` from the page.
pub async fn page_submit(
    State(s): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    match complete(&s, &form) {
        Ok((true, app)) => layout(&format!(
            "<p class=\"ok\">You have signed in to the <b>{}</b> application on your device. You may now close this window.</p>",
            escape(&app)
        ))
        .into_response(),
        Ok((false, _)) => layout("<p>You declined the sign-in. You may now close this window.</p>").into_response(),
        Err(e) => {
            let (status, _) = classify(&e);
            (
                status,
                layout(&format!(
                    "<p class=\"err\">{}</p><p><a href=\"/devicelogin\">Try again</a></p>",
                    escape(&e.to_string())
                )),
            )
                .into_response()
        }
    }
}

/// `POST /_sim/devicelogin` with form fields `user_code`, `upn` and optionally `action=decline`.
pub async fn devicelogin(
    State(s): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    match complete(&s, &form) {
        Ok((approved, app)) => Json(json!({
            "status": if approved { "approved" } else { "declined" },
            "app": app,
        }))
        .into_response(),
        Err(e) => {
            let (status, code) = classify(&e);
            (
                status,
                Json(json!({"error": code, "error_description": e.to_string()})),
            )
                .into_response()
        }
    }
}

/// `GET /_sim/info`.
pub async fn info(State(s): State<Arc<Shared>>) -> Response {
    Json(s.info()).into_response()
}

/// `GET /_sim/faults`.
pub async fn get_faults(State(s): State<Arc<Shared>>) -> Response {
    let mut faults = s.lock().faults.clone();
    faults.stale_replica_answers = s.stale_answers_left();
    Json(faults).into_response()
}

/// `POST /_sim/faults` with a (partial) `Faults` JSON; unspecified switches reset to default.
pub async fn set_faults(State(s): State<Arc<Shared>>, Json(f): Json<Faults>) -> Response {
    s.set_faults(f.clone());
    Json(f).into_response()
}

/// `GET /_sim/snapshot`: the directory state.
pub async fn snapshot(State(s): State<Arc<Shared>>) -> Response {
    Json(s.snapshot()).into_response()
}

/// `GET /_sim/tenants`: every tenant, the primary first.
pub async fn tenants(State(s): State<Arc<Shared>>) -> Response {
    Json(s.tenants()).into_response()
}

/// `POST /_sim/tenants` with form field `domain`: seeds another tenant.
pub async fn add_tenant(
    State(s): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    match form.get("domain").map(|d| d.trim()).filter(|d| d.contains('.')) {
        Some(domain) => (StatusCode::CREATED, Json(s.add_tenant(domain))).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": "form field 'domain' (a DNS name) is required"})),
        )
            .into_response(),
    }
}
