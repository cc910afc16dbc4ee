//! The token endpoint's `authorization_code` grant, as Learn "Microsoft identity platform and
//! OAuth 2.0 authorization code flow" (v2-oauth2-auth-code-flow, "Redeem a code for an access
//! token") and RFC 7636 (PKCE) describe it: a code from `/authorize` (`authorize.rs`) is
//! redeemed once, by its client, at the authority that issued it, with the same redirect URI
//! and the PKCE verifier, for tokens issued exactly as the device code grant issues them.
//!
//! Where the numbers come from. Learn reference-error-codes: AADSTS54005 (already redeemed),
//! 700005 (redeemed against another tenant), 501481 (verifier does not match), 9002313
//! (malformed), 7000218 / 700025 (secret missing / presented by a public client). Observed in
//! public reports, not documented: 70008's text for an expired code (Azure/azure-sdk-for-java
//! #33235), 50148 for a missing verifier (django-allauth#2916), 9002325 / 9002326 / 9002327 for
//! PKCE and `Origin` rules of `spa` and other redirect URIs (MSAL.js #2482, msgraph-sdk-php
//! #1057, fastapi-azure-auth #47), and 50011 "does not match the reply address … provided when
//! requesting Authorization code" for another redirect URI (PartnerCenterSamples/Reseller-Web-
//! Application#73, a v1 report where it came wrapped in AADSTS70002). Not confirmed: the
//! `error` value for that redirect URI mismatch and for another client's code (RFC 6749 §5.2's
//! `invalid_grant`; AADSTS70000 "InvalidGrant" is the emulator's choice for the latter), and
//! whether a failed redemption spends the code: the emulator spends it once the code's own
//! client presented it (same client, authority and redirect URI, client authenticated),
//! whatever PKCE then says; requests that fail before that leave it redeemable.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use sha2::Digest;

use crate::authorize::AuthCode;
use crate::client_credentials::{basic_credentials, check_secret};
use crate::consent::RedirectKind;
use crate::http::{ReqIds, sts_error};
use crate::state::{Inner, Shared, sha256_hex};
use crate::sts::{Grant, Params, TokenRequest, issue_user_tokens, param};
use crate::tokens::parse_scopes;

/// How a PKCE `code_challenge` was made from the verifier (RFC 7636 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkceMethod {
    /// The challenge is the verifier.
    Plain,
    /// The challenge is BASE64URL(SHA256(verifier)).
    S256,
}

impl PkceMethod {
    /// `code_challenge_method` as sent; absent is `plain` (RFC 7636 §4.3; Microsoft: "If
    /// excluded, code_challenge is assumed to be plaintext"); an unknown method is `None`.
    pub fn parse(method: Option<&str>) -> Option<PkceMethod> {
        match method {
            None | Some("plain") => Some(PkceMethod::Plain),
            Some("S256") => Some(PkceMethod::S256),
            Some(_) => None,
        }
    }

    /// Whether `verifier` is the one `challenge` was made from.
    pub fn verifies(self, challenge: &str, verifier: &str) -> bool {
        match self {
            PkceMethod::Plain => challenge == verifier,
            PkceMethod::S256 => {
                let digest = sha2::Sha256::digest(verifier.as_bytes());
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) == challenge
            }
        }
    }
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`
/// (a verifier, and so a plain challenge; an S256 challenge is 43 of them).
pub fn well_formed(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn invalid(ids: &ReqIds, error: &str, code: u32, text: &str) -> Response {
    sts_error(ids, StatusCode::BAD_REQUEST, error, code, text)
}

/// `grant_type=authorization_code` at `tref`: form `client_id`, `code`, `redirect_uri`,
/// `code_verifier`, optional `scope`, and `client_secret` (or HTTP Basic) for `web` URIs.
pub(crate) fn redeem(req: &TokenRequest, inner: &mut Inner) -> Grant {
    let TokenRequest {
        s,
        ids,
        headers,
        p,
        tref,
        ..
    } = *req;
    let authority = tref.tenant_id(inner);
    let client_id = param(p, ids, "client_id")?;
    let code = param(p, ids, "code")?;
    let redirect_uri = param(p, ids, "redirect_uri")?;
    let key = sha256_hex(code);
    let Some(grant) = inner.auth_codes.get(&key).cloned() else {
        let text = "Invalid request. Request is malformed or invalid.";
        return Err(invalid(ids, "invalid_grant", 9002313, text));
    };
    if grant.redeemed {
        let text = "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.";
        return Err(invalid(ids, "invalid_grant", 54005, text));
    }
    if s.now_ms() >= grant.expires_at_ms {
        let text = "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.";
        return Err(invalid(ids, "invalid_grant", 70008, text));
    }
    if !grant.client_id.eq_ignore_ascii_case(client_id) {
        let text = "The provided access grant is invalid or malformed: the authorization code was issued to another client.";
        return Err(invalid(ids, "invalid_grant", 70000, text));
    }
    if grant.authority != authority {
        let text =
            "Provided Authorization Code is intended to use against other tenant, thus rejected.";
        return Err(invalid(ids, "invalid_grant", 700005, text));
    }
    if grant.redirect_uri != *redirect_uri {
        let text = format!(
            "The reply address '{redirect_uri}' does not match the reply address '{}' provided when requesting Authorization code.",
            grant.redirect_uri
        );
        return Err(invalid(ids, "invalid_grant", 50011, &text));
    }
    inner.select(&grant.tenant_id);
    authenticate(s, inner, ids, headers, p, &grant)?;
    if let Some(c) = inner.auth_codes.get_mut(&key) {
        c.redeemed = true;
    }
    check_verifier(ids, &grant, p)?;
    let scopes = match p.get("scope").filter(|v| !v.trim().is_empty()) {
        // Microsoft's extension: name the resource at redemption. What the code signed in for
        // (its OpenID scopes: refresh and id tokens) stays.
        Some(req) => {
            let mut asked = consented_request(s, inner, ids, client_id, &grant.user_id, req)?;
            let oidc = parse_scopes(&inner.dir, &grant.scopes.join(" ")).map(|g| g.oidc);
            for o in oidc.unwrap_or_default() {
                if !asked.contains(&o) {
                    asked.push(o);
                }
            }
            asked
        }
        None => grant.scopes.clone(),
    };
    issue_user_tokens(req, inner, &grant.user_id, client_id, &scopes)
}

/// The client authentication the code's redirect URI calls for: a `web` app's secret; none
/// from a public client or an SPA; `Origin` (a browser's cross-origin call) only for an SPA.
fn authenticate(
    s: &Shared,
    inner: &Inner,
    ids: &ReqIds,
    headers: &HeaderMap,
    p: &Params,
    grant: &AuthCode,
) -> Result<(), Response> {
    let cross_origin = headers.contains_key("origin");
    let secret = p
        .get("client_secret")
        .cloned()
        .or_else(|| basic_credentials(headers).map(|b| b.1))
        .filter(|x| !x.is_empty());
    let presented = secret.is_some() || p.contains_key("client_assertion");
    match grant.kind {
        RedirectKind::Spa if !cross_origin => Err(invalid(
            ids,
            "invalid_request",
            9002327,
            "Tokens issued for the 'Single-Page Application' client-type may only be redeemed via cross-origin requests.",
        )),
        RedirectKind::Web | RedirectKind::PublicClient if cross_origin => Err(invalid(
            ids,
            "invalid_request",
            9002326,
            "Cross-origin token redemption is permitted only for the 'Single-Page Application' client-type.",
        )),
        RedirectKind::PublicClient | RedirectKind::Spa if presented => Err(sts_error(
            ids,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        )),
        RedirectKind::Web => {
            let app = inner.dir.app_by_app_id(&grant.client_id);
            let sp = inner.dir.sp_by_app_id(&grant.client_id);
            let passwords = app
                .into_iter()
                .flat_map(|a| &a.passwords)
                .chain(sp.into_iter().flat_map(|x| &x.passwords));
            check_secret(s, ids, &grant.client_id, passwords, secret.as_deref())
        }
        RedirectKind::PublicClient | RedirectKind::Spa => Ok(()),
    }
}

/// PKCE (RFC 7636 §4.6): a code issued with a challenge needs the verifier it was made from;
/// Microsoft requires PKCE for `spa` redirect URIs only.
fn check_verifier(ids: &ReqIds, grant: &AuthCode, p: &Params) -> Result<(), Response> {
    let verifier = p.get("code_verifier").filter(|v| !v.is_empty());
    match (&grant.challenge, verifier) {
        (Some(_), None) => Err(invalid(
            ids,
            "invalid_grant",
            50148,
            "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
        )),
        (Some((challenge, method)), Some(v))
            if !(well_formed(v) && method.verifies(challenge, v)) =>
        {
            Err(invalid(
                ids,
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            ))
        }
        (None, _) if grant.kind == RedirectKind::Spa => Err(invalid(
            ids,
            "invalid_request",
            9002325,
            "Proof Key for Code Exchange is required for cross-origin authorization code redemption.",
        )),
        _ => Ok(()),
    }
}

/// The scopes a redemption's `scope` asks for (a refresh token's, an authorization code's),
/// when every permission it names is already consented for the client and user on its
/// resource; otherwise AADSTS65001: more needs a new interactive request.
pub(crate) fn consented_request(
    s: &Shared,
    inner: &Inner,
    ids: &ReqIds,
    client_id: &str,
    user_id: &str,
    req: &str,
) -> Result<Vec<String>, Response> {
    let covered = match parse_scopes(&inner.dir, req) {
        Ok(asked) => asked.resource.as_ref().is_some_and(|res| {
            let consented = s.consented_scopes(inner, client_id, &res.sp_id, user_id);
            consented.is_some_and(|c| asked.perms.iter().all(|p| c.contains(p)))
        }),
        Err(_) => false,
    };
    if !covered {
        let name = s
            .client_app(inner, client_id)
            .map(|c| c.display_name)
            .unwrap_or_default();
        return Err(invalid(
            ids,
            "invalid_grant",
            65001,
            &format!(
                "The user or administrator has not consented to use the application with ID '{client_id}' named '{name}'. Send an interactive authorization request for this user and resource."
            ),
        ));
    }
    Ok(req.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_follows_rfc_7636() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(PkceMethod::S256.verifies(challenge, verifier));
        assert!(!PkceMethod::S256.verifies(challenge, &verifier.replace('d', "e")));
        assert!(PkceMethod::Plain.verifies(verifier, verifier));
        assert_eq!(PkceMethod::parse(None), Some(PkceMethod::Plain));
        assert_eq!(PkceMethod::parse(Some("S256")), Some(PkceMethod::S256));
        assert_eq!(PkceMethod::parse(Some("S512")), None);
        assert!(well_formed(verifier) && well_formed(&"~".repeat(128)));
        assert!(!well_formed(&"a".repeat(42)) && !well_formed(&"a".repeat(129)));
        assert!(!well_formed(&format!("{}+", "a".repeat(50))));
    }
}
