//! The identity platform endpoints: OpenID discovery, JWKS, device authorization and token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use serde_json::json;

use crate::code_grant;
use crate::http::{ReqIds, sts_error};
use crate::state::{
    DeviceSession, DeviceStatus, Inner, RefreshSession, Shared, random_key, sha256_hex,
};
use crate::tokens::{
    client_capabilities, client_info, granted_scope_string, issued_access_token, parse_scopes,
    token_response,
};

pub type Params = HashMap<String, String>;

/// Refresh tokens live 90 days (Entra's inactivity window).
const REFRESH_LIFETIME_MS: u64 = 90 * 24 * 3600 * 1000;

/// How the `{tenant}` path segment resolved.
pub(crate) enum TenantRef {
    /// Our tenant, by id or domain.
    Specific,
    /// `organizations` or `common`: the tenant is found from the user.
    Multi(String),
}

impl TenantRef {
    /// The tenant a token is issued for when the path named one: the current directory (the
    /// token or authorize handler selected it); `None` for `organizations` and `common`, where
    /// the user's home tenant decides.
    pub(crate) fn tenant_id(&self, inner: &Inner) -> Option<String> {
        match self {
            TenantRef::Specific => Some(inner.dir.tenant.id.clone()),
            TenantRef::Multi(_) => None,
        }
    }
}

/// Resolves the `{tenant}` segment; a specific tenant is selected as the current directory.
pub(crate) fn resolve_tenant(inner: &mut Inner, seg: &str) -> Option<TenantRef> {
    if inner.select(seg) {
        Some(TenantRef::Specific)
    } else if seg.eq_ignore_ascii_case("organizations") || seg.eq_ignore_ascii_case("common") {
        Some(TenantRef::Multi(seg.to_ascii_lowercase()))
    } else {
        None
    }
}

pub(crate) fn tenant_not_found(ids: &ReqIds, seg: &str) -> Response {
    sts_error(
        ids,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{seg}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

/// AADSTS50059: a tenant-independent authority (`common`, `organizations`) for a grant in
/// which no user signs in, so nothing names the tenant.
fn no_tenant(ids: &ReqIds) -> Response {
    sts_error(
        ids,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        50059,
        "No tenant-identifying information found in either the request or implied by any provided credentials.",
    )
}

pub fn missing_param(ids: &ReqIds, name: &str) -> Response {
    sts_error(
        ids,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

/// Parameter `name` of the form, or AADSTS900144 naming it.
pub fn param<'a>(p: &'a Params, ids: &ReqIds, name: &str) -> Result<&'a String, Response> {
    p.get(name).ok_or_else(|| missing_param(ids, name))
}

/// AADSTS90014 with `e`: the emulator itself failed.
pub fn server_error(ids: &ReqIds, e: impl std::fmt::Display) -> Response {
    sts_error(
        ids,
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        90014,
        &e.to_string(),
    )
}

/// AADSTS7000218: a confidential client presented neither a secret nor an assertion.
pub fn missing_secret(ids: &ReqIds) -> Response {
    sts_error(
        ids,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
}

pub fn app_not_found(ids: &ReqIds, client_id: &str, tenant_name: &str) -> Response {
    sts_error(
        ids,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
        &format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant_name}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
    )
}

/// A user code like Entra's: nine characters from an unambiguous alphabet.
fn new_user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    crate::state::random_bytes(9)
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

/// AADSTS53003's text (Learn reference-error-codes, BlockedByConditionalAccess): a device
/// sign-in Conditional Access refused (`Faults::block_device_code`).
pub const BLOCKED_BY_CONDITIONAL_ACCESS: &str = "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.";

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub async fn devicecode(
    State(s): State<Arc<Shared>>,
    Extension(ids): Extension<ReqIds>,
    Path(tenant): Path<String>,
    Form(p): Form<Params>,
) -> Response {
    let mut inner = s.lock();
    let Some(tref) = resolve_tenant(&mut inner, &tenant) else {
        return tenant_not_found(&ids, &tenant);
    };
    let path_tenant = tref.tenant_id(&inner);
    if path_tenant.is_none()
        && let Some(home) = p.get("client_id").and_then(|c| inner.tenant_of_app(c))
    {
        // A local public client asked through /organizations: look it up in its own tenant.
        inner.select(&home);
    }
    let Some(client_id) = p.get("client_id").filter(|c| !c.is_empty()) else {
        return missing_param(&ids, "client_id");
    };
    let Some(scope) = p.get("scope").filter(|c| !c.is_empty()) else {
        return missing_param(&ids, "scope");
    };
    if s.client_app(&inner, client_id).is_none() {
        return app_not_found(&ids, client_id, &inner.dir.tenant.domain);
    }
    if let Err(bad) = parse_scopes(&inner.dir, scope) {
        return sts_error(
            &ids,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            &format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope '{bad}' does not exist."
            ),
        );
    }
    // Forget requests that expired long ago so a long-running demo does not grow without bound.
    let horizon = s.now_ms().saturating_sub(3_600_000);
    inner.device_codes.retain(|_, d| d.expires_at_ms > horizon);
    let device_code = random_key(96);
    let user_code = new_user_code();
    let ttl = inner.faults.device_code_ttl();
    let interval = inner.faults.device_code_interval();
    let slow_downs_left = inner.faults.slow_down_polls;
    inner.device_codes.insert(
        device_code.clone(),
        DeviceSession {
            user_code: user_code.clone(),
            client_id: client_id.clone(),
            tenant_id: path_tenant,
            scopes: scope.split_whitespace().map(str::to_string).collect(),
            expires_at_ms: s.now_ms() + ttl * 1000,
            interval_s: interval,
            last_poll_ms: None,
            slow_downs_left,
            status: DeviceStatus::Pending,
        },
    );
    let uri = format!("{}/devicelogin", s.base_url);
    Json(json!({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": uri,
        "expires_in": ttl,
        "interval": interval,
        "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
    }))
    .into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(s): State<Arc<Shared>>,
    Extension(ids): Extension<ReqIds>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(p): Form<Params>,
) -> Response {
    // A token issued in the second of a Conditional Access policy change could not be told
    // from one made before it (`iat` counts seconds): the STS answers after that second.
    let changed = s.lock().policies_changed_through;
    crate::state::wait_past(changed).await;
    let mut inner = s.lock();
    let Some(tref) = resolve_tenant(&mut inner, &tenant) else {
        return tenant_not_found(&ids, &tenant);
    };
    let Some(grant) = p.get("grant_type") else {
        return missing_param(&ids, "grant_type");
    };
    if matches!(tref, TenantRef::Multi(_)) {
        if grant == "client_credentials" {
            // No user signs in, so `common` / `organizations` name no tenant: Entra answers
            // AADSTS50059 (docs/microsoft.md §24).
            return no_tenant(&ids);
        }
        if let Some(home) = p.get("client_id").and_then(|c| inner.tenant_of_app(c)) {
            // A client registered here: look it up in its own tenant (the user's tenant
            // comes from the device code or the refresh token).
            inner.select(&home);
        }
    }
    // Read before the grant runs, so a bad `claims` never spends a device code. Declared on
    // each user-token request (device code and refresh alike), as MSAL does.
    let caps = match client_capabilities(p.get("claims").map(String::as_str)) {
        Ok(caps) => caps,
        Err(what) => {
            return sts_error(
                &ids,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                90100,
                &format!("The request parameter 'claims' is empty or not valid: {what}."),
            );
        }
    };
    let req = TokenRequest {
        s: &s,
        ids: &ids,
        headers: &headers,
        p: &p,
        caps: &caps,
        tref: &tref,
    };
    let result = match grant.as_str() {
        "urn:ietf:params:oauth:grant-type:device_code" => device_grant(&req, &mut inner),
        "refresh_token" => refresh_grant(&req, &mut inner),
        "authorization_code" => code_grant::redeem(&req, &mut inner),
        "client_credentials" => crate::client_credentials::client_credentials(&req, &mut inner),
        other => Err(sts_error(
            &ids,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        )),
    };
    match result {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

pub type Grant = Result<serde_json::Value, Response>;

/// A token request as each grant reads it; the emulator's state (`Inner`) goes beside it,
/// locked for the request.
#[derive(Clone, Copy)]
pub(crate) struct TokenRequest<'a> {
    /// The emulator.
    pub s: &'a Shared,
    /// The request's ids, for error answers.
    pub ids: &'a ReqIds,
    /// Its headers (HTTP Basic client authentication, `Origin`).
    pub headers: &'a HeaderMap,
    /// Its form.
    pub p: &'a Params,
    /// The client capabilities its `claims` declared (the access token's `xms_cc`).
    pub caps: &'a [String],
    /// Its `{tenant}` path segment, resolved.
    pub tref: &'a TenantRef,
}

fn device_grant(req: &TokenRequest, inner: &mut Inner) -> Grant {
    let TokenRequest {
        s, ids, p, tref, ..
    } = *req;
    let authority = tref.tenant_id(inner);
    let client_id = param(p, ids, "client_id")?;
    // The v2 endpoint takes `device_code` only; there is no `code` alias (v2-oauth2-device-code).
    let code = param(p, ids, "device_code")?;
    let now = s.now_ms();
    let bad_code = || {
        sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "bad_verification_code",
            70018,
            "Invalid verification code entered.",
        )
    };
    let session = inner.device_codes.get(code).cloned().ok_or_else(bad_code)?;
    if !session.client_id.eq_ignore_ascii_case(client_id) {
        return Err(bad_code());
    }
    // "tenant | Required | The same tenant or tenant alias used in the initial request."
    // (v2-oauth2-device-code, the token request)
    if session.tenant_id != authority {
        return Err(sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            700005,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        ));
    }
    if let Some(app) = s.client_app(inner, client_id)
        && !app.public
    {
        return Err(missing_secret(ids));
    }
    if session.status == DeviceStatus::Redeemed {
        return Err(sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        ));
    }
    if now >= session.expires_at_ms {
        return Err(sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "expired_token",
            70019,
            "Verification code expired.",
        ));
    }
    let mut too_fast = session
        .last_poll_ms
        .is_some_and(|last| now + 250 < last + session.interval_s * 1000);
    if let Some(sess) = inner.device_codes.get_mut(code) {
        sess.last_poll_ms = Some(now);
        if matches!(sess.status, DeviceStatus::Pending) && sess.slow_downs_left > 0 {
            sess.slow_downs_left -= 1;
            too_fast = true;
        }
        // RFC 8628 §3.5: with `slow_down` the interval "MUST be increased by 5 seconds for this
        // and all subsequent requests": a client that does not is answered slow_down again.
        if too_fast && matches!(sess.status, DeviceStatus::Pending) {
            sess.interval_s += 5;
        }
    }
    let user_id = match &session.status {
        DeviceStatus::Declined => {
            return Err(sts_error(
                ids,
                StatusCode::BAD_REQUEST,
                "authorization_declined",
                65004,
                "User declined to consent to access the app.",
            ));
        }
        DeviceStatus::Pending if too_fast => {
            // Entra has no AADSTS number of its own for slow_down; it is a pending state polled too fast.
            return Err(sts_error(
                ids,
                StatusCode::BAD_REQUEST,
                "slow_down",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending and the client is polling faster than the interval allows. Add 5 seconds to the polling interval.",
            ));
        }
        DeviceStatus::Pending => {
            return Err(sts_error(
                ids,
                StatusCode::BAD_REQUEST,
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            ));
        }
        DeviceStatus::Approved { user_id, tenant_id } => {
            inner.select(tenant_id);
            user_id.clone()
        }
        DeviceStatus::Refused(code, text) => {
            // Conditional Access, or the tenant, refused the signed-in account.
            let (code, text) = (*code, text.as_str());
            return Err(sts_error(
                ids,
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                code,
                text,
            ));
        }
        DeviceStatus::Redeemed => return Err(bad_code()),
    };
    if let Some(sess) = inner.device_codes.get_mut(code) {
        sess.status = DeviceStatus::Redeemed;
    }
    issue_user_tokens(req, inner, &user_id, client_id, &session.scopes)
}

/// Tokens for `user_id` of client `client_id`, for `scopes`, as `req` asks (its `caps`: the
/// access token's `xms_cc`; its `client_info`).
pub(crate) fn issue_user_tokens(
    req: &TokenRequest,
    inner: &mut Inner,
    user_id: &str,
    client_id: &str,
    scopes: &[String],
) -> Grant {
    let TokenRequest {
        s, ids, p, caps, ..
    } = *req;
    let dir = &inner.dir;
    let server_error = |e: crate::SimError| server_error(ids, e);
    let user = dir.user(user_id).cloned().ok_or_else(|| {
        sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50034,
            "The user account does not exist in the directory.",
        )
    })?;
    let client = s
        .client_app(inner, client_id)
        .ok_or_else(|| app_not_found(ids, client_id, &dir.tenant.domain))?;
    let parsed = parse_scopes(dir, &scopes.join(" ")).map_err(|bad| {
        sts_error(ids, StatusCode::BAD_REQUEST, "invalid_scope", 70011, &format!("The provided value for the input parameter 'scope' is not valid. The scope '{bad}' does not exist."))
    })?;
    let resource = parsed.resource.clone().ok_or_else(|| {
        sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            "The resource principal was not found in the tenant.",
        )
    })?;
    // Entra puts every permission consented for this client and resource in `scp`, not just
    // the ones asked for this time (incremental consent accumulates).
    let mut perms = parsed.perms.clone();
    let consented = s
        .consented_scopes(inner, &client.app_id, &resource.sp_id, &user.id)
        .unwrap_or_default();
    for d in consented {
        if !perms.contains(&d) {
            perms.push(d);
        }
    }
    let lifetime = inner.faults.delegated_token_lifetime(caps);
    let access = s
        .user_access_token(
            dir,
            &user,
            &client.app_id,
            &client.display_name,
            &resource,
            &perms,
            caps,
            lifetime,
        )
        .map_err(server_error)?;
    let access = issued_access_token(access, &resource, inner.faults.opaque_access_tokens);
    let id_token = if parsed.oidc.iter().any(|o| o == "openid") {
        Some(
            s.id_token(dir, &user, &client.app_id)
                .map_err(server_error)?,
        )
    } else {
        None
    };
    let info = (p.get("client_info").map(String::as_str) == Some("1"))
        .then(|| client_info(user.home_ids(&dir.tenant.id)));
    let refresh = if parsed.oidc.iter().any(|o| o == "offline_access") {
        let rt = format!("1.{}", random_key(160));
        inner.refresh_tokens.insert(
            sha256_hex(&rt),
            RefreshSession {
                user_id: user.id.clone(),
                tenant_id: inner.dir.tenant.id.clone(),
                client_id: client.app_id.clone(),
                scopes: scopes.to_vec(),
                expires_at_ms: s.now_ms() + REFRESH_LIFETIME_MS,
                signed_in_at: crate::state::unix_now(),
            },
        );
        Some(rt)
    } else {
        None
    };
    let scope = granted_scope_string(&perms, &parsed.oidc);
    Ok(token_response(
        lifetime,
        access,
        Some(scope),
        refresh,
        id_token,
        info,
    ))
}

fn refresh_grant(req: &TokenRequest, inner: &mut Inner) -> Grant {
    let TokenRequest { s, ids, p, .. } = *req;
    let client_id = param(p, ids, "client_id")?;
    let rt = param(p, ids, "refresh_token")?;
    let invalid = || {
        sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid.",
        )
    };
    let session = inner
        .refresh_tokens
        .get(&sha256_hex(rt))
        .cloned()
        .ok_or_else(invalid)?;
    // A refresh token belongs to the tenant that issued it: its user and grants live there,
    // whatever tenant segment the request used.
    if !inner.select(&session.tenant_id) {
        return Err(invalid());
    }
    if !session.client_id.eq_ignore_ascii_case(client_id) {
        return Err(sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70000,
            "Provided grant is invalid or malformed: the refresh token was issued to a different client.",
        ));
    }
    if s.now_ms() >= session.expires_at_ms {
        return Err(sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity.",
        ));
    }
    if session.signed_in_at <= inner.sign_ins_revoked_through {
        // Microsoft's AADSTS50173 (FreshTokenNeeded): the user's sessions were revoked.
        return Err(sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.",
        ));
    }
    let scopes: Vec<String> = match p.get("scope").filter(|v| !v.trim().is_empty()) {
        Some(req) => {
            code_grant::consented_request(s, inner, ids, client_id, &session.user_id, req)?
        }
        None => session.scopes.clone(),
    };
    let mut with_offline = scopes.clone();
    if !with_offline.iter().any(|x| x == "offline_access") {
        with_offline.push("offline_access".into());
    }
    issue_user_tokens(req, inner, &session.user_id, client_id, &with_offline)
}
