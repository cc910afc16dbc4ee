//! The authorization endpoint of the OAuth 2.0 authorization code flow,
//! `GET|POST /{tenant}/oauth2/v2.0/authorize`, as Learn "Microsoft identity platform and OAuth
//! 2.0 authorization code flow" (v2-oauth2-auth-code-flow, "Request an authorization code")
//! describes it, with PKCE (RFC 7636): the emulator's sign-in page instead of Microsoft's, then
//! a single-use code sent back to the app's registered redirect URI (`code_grant.rs` redeems it).
//!
//! Entra checks the tenant, the client and the redirect URI first and shows its own error page
//! for those (AADSTS90002, 700016, 900971, 50011): it never redirects to a URI the app did not
//! register. Every later refusal goes back to that URI as `error`, `error_description`
//! (`AADSTSnnnn: …`) and `state`, in the `response_mode` asked for (`query`, `fragment` or
//! `form_post`). Learn reference-error-codes names 70005 / 700054 (response type), 70007
//! (response mode), 50149 and 501491 (code challenge method and size), 50058 (`prompt=none`
//! without a session) and 65004 (declined). Not confirmed: which of those carry which `error`
//! beyond the doc's table, and AADSTS50147 (the number the reference names MissingCodeChallenge)
//! for a `code_challenge_method` without a `code_challenge`. The hybrid flow (`id_token` in
//! `response_type`) needs implicit-grant settings the emulator does not model: it is refused.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::code_grant::{PkceMethod, well_formed};
use crate::consent::RedirectKind;
use crate::sim_page::{account_choice, error_page, escape, hidden, redirect, redirect_with};
use crate::state::{Inner, Shared, random_key, sha256_hex};
use crate::sts::{Params, resolve_tenant};
use crate::tokens::parse_scopes;

/// Codes are forgotten this long after they expire.
const FORGET_AFTER_MS: u64 = 3_600_000;

/// An authorization code issued by `/authorize` (kept under its SHA-256 in `Inner`).
#[derive(Debug, Clone)]
pub struct AuthCode {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI it was sent to; redemption must name the same one.
    pub redirect_uri: String,
    /// Where that URI is registered (how the code is redeemed).
    pub kind: RedirectKind,
    /// Scopes of the request, as sent.
    pub scopes: Vec<String>,
    /// The PKCE challenge and its method, if the request had one.
    pub challenge: Option<(String, PkceMethod)>,
    /// The user who signed in.
    pub user_id: String,
    /// The user's tenant, which issues the tokens.
    pub tenant_id: String,
    /// The tenant named by the authority it was issued at; `None` for organizations/common.
    /// It is redeemed at the same one (AADSTS700005).
    pub authority: Option<String>,
    /// Emulator clock (ms) from which it has expired (AADSTS70008).
    pub expires_at_ms: u64,
    /// Redeemed (or spent by a failed PKCE check): never again (AADSTS54005).
    pub redeemed: bool,
}

/// How the answer goes back to the app (`response_mode`).
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// In the redirect URI's query (the default for a code).
    Query,
    /// In its fragment.
    Fragment,
    /// As a form the browser posts to it.
    FormPost,
}

/// A request that passed the checks made before the sign-in page: the app, where to answer it.
struct Checked {
    /// The client's app id.
    client_id: String,
    /// Its name, for the page.
    app_name: String,
    /// The registered redirect URI.
    redirect_uri: String,
    /// Where it is registered.
    kind: RedirectKind,
    /// How to answer.
    mode: Mode,
    /// The app's `state`, echoed in every answer.
    state: Option<String>,
    /// Requested scopes.
    scopes: Vec<String>,
    /// PKCE challenge and method.
    challenge: Option<(String, PkceMethod)>,
    /// The specific tenant of the authority, if any.
    authority: Option<String>,
}

impl Checked {
    /// The answer to the app: `pairs` and `state`, as `response_mode` says.
    fn back(&self, pairs: &[(&str, &str)]) -> Response {
        let mut all = pairs.to_vec();
        if let Some(st) = &self.state {
            all.push(("state", st));
        }
        let uri = &self.redirect_uri;
        match self.mode {
            Mode::Query => redirect(uri, &all),
            Mode::Fragment => redirect_with(uri, '#', &all),
            Mode::FormPost => {
                let fields: String = all.iter().map(|(k, v)| hidden(k, v)).collect();
                Html(format!(
                    "<!doctype html><html><head><title>Working...</title></head><body onload=\"document.forms[0].submit()\">\
<form method=\"post\" action=\"{}\">{fields}<noscript><p>Script is disabled. Click Submit to continue.</p>\
<input type=\"submit\" value=\"Submit\"></noscript></form></body></html>",
                    escape(uri)
                ))
                .into_response()
            }
        }
    }

    /// A refusal sent back to the app.
    fn refuse(&self, error: &str, code: u32, text: &str) -> Response {
        let description = format!("AADSTS{code}: {text}");
        self.back(&[("error", error), ("error_description", &description)])
    }
}

/// Entra's checks, in its order: page errors until the redirect URI is known to be the app's,
/// then errors sent back to it.
fn check(s: &Shared, inner: &mut Inner, tenant: &str, p: &Params) -> Result<Checked, Response> {
    let page = |text: String| error_page(StatusCode::BAD_REQUEST, &text);
    let Some(tref) = resolve_tenant(inner, tenant) else {
        return Err(page(format!(
            "AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        )));
    };
    let authority = tref.tenant_id(inner);
    let Some(client_id) = p.get("client_id").filter(|c| !c.is_empty()) else {
        return Err(page(
            "AADSTS900144: The request body must contain the following parameter: 'client_id'."
                .into(),
        ));
    };
    if authority.is_none()
        && let Some(home) = inner.tenant_of_app(client_id)
    {
        // A local app asked through organizations/common: look it up in its own tenant.
        inner.select(&home);
    }
    let Some(client) = s.client_app(inner, client_id) else {
        return Err(page(format!(
            "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            inner.dir.tenant.domain
        )));
    };
    let Some(redirect_uri) = p.get("redirect_uri").filter(|u| !u.is_empty()) else {
        return Err(page("AADSTS900971: No reply address provided.".into()));
    };
    let Some(kind) = s.redirect_kind(inner, &client.app_id, redirect_uri) else {
        return Err(page(format!(
            "AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this."
        )));
    };
    let mut c = Checked {
        client_id: client.app_id,
        app_name: client.display_name,
        redirect_uri: redirect_uri.clone(),
        kind,
        mode: Mode::Query,
        state: p.get("state").cloned(),
        scopes: Vec::new(),
        challenge: None,
        authority,
    };
    c.mode = match p.get("response_mode").map(String::as_str) {
        None | Some("query") => Mode::Query,
        Some("fragment") => Mode::Fragment,
        Some("form_post") => Mode::FormPost,
        Some(other) => {
            let text =
                format!("The app returned an unsupported value of 'response_mode': '{other}'.");
            return Err(c.refuse("invalid_request", 70007, &text));
        }
    };
    let response_type = p.get("response_type").map(String::as_str).unwrap_or("");
    let types: Vec<&str> = response_type.split_whitespace().collect();
    match types.as_slice() {
        [] => {
            let text = "The request body must contain the following parameter: 'response_type'.";
            return Err(c.refuse("invalid_request", 900144, text));
        }
        ["code"] => {}
        t if t.contains(&"id_token") => {
            let text = "The provided value for the input parameter 'response_type' is not allowed for this client. Expected value is 'code'. Response_type 'id_token' is not enabled for the application.";
            return Err(c.refuse("unsupported_response_type", 700054, text));
        }
        _ => {
            let text = format!("The app returned an unsupported response type '{response_type}'.");
            return Err(c.refuse("unsupported_response_type", 70005, &text));
        }
    }
    let scope = p.get("scope").map(|x| x.trim()).unwrap_or("");
    if scope.is_empty() {
        let text = "The request body must contain the following parameter: 'scope'.";
        return Err(c.refuse("invalid_request", 900144, text));
    }
    if let Err(bad) = parse_scopes(&inner.dir, scope) {
        let text = format!(
            "The provided value for the input parameter 'scope' is not valid. The scope '{bad}' does not exist."
        );
        return Err(c.refuse("invalid_scope", 70011, &text));
    }
    c.scopes = scope.split_whitespace().map(str::to_string).collect();
    let method = p.get("code_challenge_method").map(String::as_str);
    c.challenge = match (p.get("code_challenge").filter(|x| !x.is_empty()), method) {
        (None, None) => None,
        (None, Some(_)) => {
            let text =
                "The code_challenge parameter is required when code_challenge_method is included.";
            return Err(c.refuse("invalid_request", 50147, text));
        }
        (Some(challenge), method) => {
            let Some(method) = PkceMethod::parse(method) else {
                let text = "Invalid Code_Challenge_method parameter.";
                return Err(c.refuse("invalid_request", 50149, text));
            };
            if !well_formed(challenge) {
                let text = "Invalid size of Code_Challenge parameter.";
                return Err(c.refuse("invalid_request", 501491, text));
            }
            Some((challenge.clone(), method))
        }
    };
    if p.get("prompt").map(String::as_str) == Some("none") {
        // The emulator keeps no browser session, so nothing can be completed silently.
        let text = "A silent sign-in request was sent but no user is signed in.";
        return Err(c.refuse("login_required", 50058, text));
    }
    Ok(c)
}

/// `GET /{tenant}/oauth2/v2.0/authorize?client_id=…&response_type=code&redirect_uri=…&scope=…
/// &state=…&code_challenge=…&code_challenge_method=S256` (optional `response_mode`,
/// `login_hint`, `prompt`): the sign-in page, every parameter carried as a hidden field.
pub async fn page(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    let mut inner = s.lock();
    let c = match check(&s, &mut inner, &tenant, &p) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let hint = p.get("login_hint").map(String::as_str).unwrap_or("");
    // The accounts people sign in with: a guest's is its home account; through
    // organizations/common every member, in its home tenant.
    let users: Vec<&str> = match c.authority {
        Some(_) => inner.dir.users.iter().map(|u| u.sign_in_name()).collect(),
        None => (inner.tenants())
            .flat_map(|d| d.users.iter().filter(|u| u.home.is_none()))
            .map(|u| u.upn.as_str())
            .collect(),
    };
    let mut params: Vec<(&String, &String)> = p
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "upn" | "action"))
        .collect();
    params.sort();
    let fields: String = params.iter().map(|(k, v)| hidden(k, v)).collect();
    account_choice(
        "Sign in to your account",
        &format!(
            "<p><b>{}</b> wants to sign you in and access: <code>{}</code></p>",
            escape(&c.app_name),
            escape(&c.scopes.join(" ")),
        ),
        &fields,
        "Account",
        &users,
        hint,
    )
}

/// `POST /{tenant}/oauth2/v2.0/authorize` (the page's form: the request's parameters, `upn`,
/// `action=accept|cancel`): consent as the device sign-in's approval does, then a 302 to the
/// redirect URI with `code` and `state`, or `error=access_denied` (AADSTS65004).
pub async fn submit(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(p): Form<Params>,
) -> Response {
    let mut inner = s.lock();
    let c = match check(&s, &mut inner, &tenant, &p) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if p.get("action").map(String::as_str) != Some("accept") || inner.faults.decline_all_signins {
        return c.refuse(
            "access_denied",
            65004,
            "User declined to consent to access the app.",
        );
    }
    let upn = p.get("upn").map(String::as_str).unwrap_or("");
    let user = match s.signing_in_user(&mut inner, c.authority.as_deref(), upn, &c.client_id) {
        Ok(u) => u,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // A user who may not consent stays on Entra's "Need admin approval" page.
    if let Err(e) = s.consent(&mut inner, &user, &c.client_id, &c.scopes) {
        return error_page(StatusCode::FORBIDDEN, &e.to_string());
    }
    let now = s.now_ms();
    inner
        .auth_codes
        .retain(|_, code| code.expires_at_ms + FORGET_AFTER_MS > now);
    let code = random_key(96);
    let expires_at_ms = now + inner.faults.auth_code_ttl() * 1000;
    let issued = AuthCode {
        client_id: c.client_id.clone(),
        redirect_uri: c.redirect_uri.clone(),
        kind: c.kind,
        scopes: c.scopes.clone(),
        challenge: c.challenge.clone(),
        user_id: user.id.clone(),
        tenant_id: inner.dir.tenant.id.clone(),
        authority: c.authority.clone(),
        expires_at_ms,
        redeemed: false,
    };
    inner.auth_codes.insert(sha256_hex(&code), issued);
    s.persist(&inner);
    c.back(&[("code", &code)])
}
