//! The client-credentials grant: an application authenticating with its own secret.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;

use crate::http::{ReqIds, sts_error};
use crate::model::Password;
use crate::state::{Inner, Shared, sha256_hex, unix_now};
use crate::sts::{
    Grant, TokenRequest, app_not_found, missing_param, missing_secret, param, server_error,
};
use crate::tokens::{issued_access_token, resource_for, token_response};

/// Client id and secret from an `Authorization: Basic` header (RFC 6749 §2.3.1).
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |x: &str| {
        form_urlencoded::parse(format!("v={x}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// `grant_type=client_credentials`: form `client_id` (or HTTP Basic), `scope` and
/// `client_secret` (or HTTP Basic).
pub(crate) fn client_credentials(req: &TokenRequest, inner: &mut Inner) -> Grant {
    let TokenRequest {
        s, ids, headers, p, ..
    } = *req;
    let basic = basic_credentials(headers);
    let client_id = p
        .get("client_id")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.0.clone()))
        .ok_or_else(|| missing_param(ids, "client_id"))?;
    let scope = param(p, ids, "scope")?;
    let secret = p
        .get("client_secret")
        .cloned()
        .or_else(|| basic.map(|b| b.1));
    let dir = &inner.dir;
    let tenant_name = dir.tenant.domain.clone();
    let Some(prefix) = scope.trim().strip_suffix("/.default") else {
        return Err(sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    };
    let app = dir
        .app_by_app_id(&client_id)
        .filter(|a| s.visible(a.visible_at_ms));
    let sp = dir
        .sp_by_app_id(&client_id)
        .filter(|x| s.visible(x.visible_at_ms));
    let (app, sp) = match (app, sp) {
        (Some(a), Some(sp)) => (a, sp),
        (Some(_), None) if dir.sp_by_app_id(&client_id).is_none() => {
            return Err(sts_error(
                ids,
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000229,
                &format!(
                    "The client application {client_id} is missing service principal in the tenant {}.",
                    dir.tenant.id
                ),
            ));
        }
        (None, Some(_)) if client_id.eq_ignore_ascii_case(&s.token_app_id) => {
            // The provider's token app is a public client: it has no secrets to present.
            return Err(sts_error(
                ids,
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
            ));
        }
        _ => return Err(app_not_found(ids, &client_id, &tenant_name)),
    };
    // The application's secrets, or the service principal's own in this tenant.
    let passwords = app.passwords.iter().chain(&sp.passwords);
    check_secret(s, ids, &client_id, passwords, secret.as_deref())?;
    let Some(resource) = resource_for(dir, prefix) else {
        return Err(sts_error(
            ids,
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {prefix} was not found in the tenant named {tenant_name}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        ));
    };
    let roles = dir.granted_roles(&sp.id, &resource.sp_id, s.now_ms());
    let lifetime = inner.faults.access_token_lifetime();
    let without_wids = inner.faults.app_tokens_without_wids;
    let token = s
        .app_access_token(dir, sp, &resource, &roles, lifetime, without_wids)
        .map_err(|e| server_error(ids, e))?;
    let token = issued_access_token(token, &resource, inner.faults.opaque_access_tokens);
    Ok(token_response(lifetime, token, None, None, None, None))
}

/// A confidential client's secret checked against its `passwords`: AADSTS7000218 when none
/// was presented, 7000215 when it is none of them, 7000222 when it has expired.
pub(crate) fn check_secret<'a>(
    s: &Shared,
    ids: &ReqIds,
    client_id: &str,
    mut passwords: impl Iterator<Item = &'a Password>,
    secret: Option<&str>,
) -> Result<(), Response> {
    let Some(secret) = secret.filter(|x| !x.is_empty()) else {
        return Err(missing_secret(ids));
    };
    let hash = sha256_hex(secret);
    let Some(pw) = passwords.find(|pw| pw.sha256 == hash && s.visible(pw.visible_at_ms)) else {
        return Err(sts_error(
            ids,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        ));
    };
    if pw.end_unix <= unix_now() {
        return Err(sts_error(
            ids,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            &format!(
                "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
            ),
        ));
    }
    Ok(())
}
