//! Claims of the id token issued to our own sign-in app: tenant, user and `wids` (directory
//! role template ids). Read without signature checking: the token came straight from the STS
//! over TLS to us, and it only feeds a cheap pre-check and display; `GET /me` and
//! `/me/transitiveMemberOf` stay the authoritative answers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::EntraError;
use crate::sts::TokenSet;

/// The value Entra adds to the `wids` of every app-only token, next to the service principal's
/// directory roles. It is not an assignable directory role: no role definition has it as its
/// template id and no role assignment lists it.
pub const APP_ONLY_DEFAULT_WID: &str = "0997a1d0-0d1d-4acb-b408-d5ca73121e90";

/// The value Entra adds to the `wids` of every member user's token (the default user
/// permissions); not an assignable directory role either.
pub const USER_DEFAULT_WID: &str = "b79fbf4d-3ef9-4689-8143-76b194e85509";

/// A name for the implicit `wids` values above, so that they are shown by name rather than as a
/// raw id wherever `wids` are shown as roles. Microsoft's published role list
/// (permissions-reference) names neither; these names say what they stand for.
pub fn implicit_wid_name(id: &str) -> Option<&'static str> {
    if id.eq_ignore_ascii_case(APP_ONLY_DEFAULT_WID) {
        Some("Default service principal permissions (implicit)")
    } else if id.eq_ignore_ascii_case(USER_DEFAULT_WID) {
        Some("Default user permissions (implicit)")
    } else {
        None
    }
}

/// What the id token says about the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdTokenClaims {
    /// Tenant id: where the user signed in, even when the flow used `organizations`.
    pub tid: String,
    /// The user's object id.
    #[serde(default)]
    pub oid: Option<String>,
    /// Sign-in name, to compare with the UPN the admin typed.
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// Template ids of the user's active directory roles (plus the member role); absent when
    /// the app is not configured to emit them.
    #[serde(default)]
    pub wids: Vec<String>,
}

impl TokenSet {
    /// Decodes the id token's claims; `None` when no id token was issued (no `openid` scope).
    pub fn id_token_claims(&self) -> Result<Option<IdTokenClaims>, EntraError> {
        let Some(token) = &self.id_token else {
            return Ok(None);
        };
        decode_claims(token.expose_secret()).map(Some)
    }
}

/// What an access token says about its holder (read unverified: a hint for checks and display;
/// the resource itself enforces). For app-only tokens `roles` holds the application permissions
/// granted for the token's resource (Entra omits the claim when nothing is granted) and `wids`
/// the service principal's directory role template ids.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccessTokenClaims {
    /// Tenant id.
    #[serde(default)]
    pub tid: Option<String>,
    /// Audience: the resource the token is for.
    #[serde(default)]
    pub aud: Option<String>,
    /// Application (client) id of the caller (v1 tokens).
    #[serde(default)]
    pub appid: Option<String>,
    /// Object id of the caller (the service principal, for app-only tokens).
    #[serde(default)]
    pub oid: Option<String>,
    /// Application permissions granted (app-only tokens); empty when absent.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Template ids of the caller's directory roles.
    #[serde(default)]
    pub wids: Vec<String>,
    /// The calling app's display name.
    #[serde(default)]
    pub app_displayname: Option<String>,
    /// Delegated scopes (space-separated), for user tokens.
    #[serde(default)]
    pub scp: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    #[serde(default)]
    pub exp: Option<i64>,
}

/// Decodes an access token's claims without checking its signature (see [`AccessTokenClaims`]).
/// Errors name the problem, never the token.
///
/// Only ever a hint. Microsoft: "access tokens must be treated as opaque strings … Tokens that
/// a Microsoft API receives might not always be a JWT that can be decoded. Clients should use
/// the token response data." (Learn, access-tokens). So an error here means "unknown", never a
/// reason to fail: the expiry is [`TokenSet::expires_in`], and what a token grants is Graph's
/// to say (docs/microsoft.md §19).
pub fn access_token_claims(token: &SecretString) -> Result<AccessTokenClaims, EntraError> {
    decode_payload(token.expose_secret(), "access_token_claims")
}

impl TokenSet {
    /// [`access_token_claims`] of this token set's access token.
    pub fn access_token_claims(&self) -> Result<AccessTokenClaims, EntraError> {
        access_token_claims(&self.access_token)
    }
}

fn decode_claims(jwt: &str) -> Result<IdTokenClaims, EntraError> {
    decode_payload(jwt, "id_token_claims")
}

fn decode_payload<T: serde::de::DeserializeOwned>(
    jwt: &str,
    operation: &'static str,
) -> Result<T, EntraError> {
    let bad = |m: &str| EntraError::Decode {
        operation,
        status: 200,
        message: m.to_owned(),
        request_id: None,
    };
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| bad("token is not a JWT"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad("token payload is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(&format!("token claims: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!("eyJhbGciOiJub25lIn0.{}.sig", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn reads_tid_and_wids() {
        let c = decode_claims(&jwt(
            r#"{"tid":"t-1","oid":"o-1","preferred_username":"a@b.c","wids":["62e90394-69f5-4237-9190-012177145e10"],"aud":"x"}"#,
        ))
        .unwrap();
        assert_eq!(c.tid, "t-1");
        assert_eq!(c.preferred_username.as_deref(), Some("a@b.c"));
        assert_eq!(
            c.wids,
            vec!["62e90394-69f5-4237-9190-012177145e10".to_string()]
        );
    }

    #[test]
    fn reads_access_token_roles() {
        let t = SecretString::from(jwt(
            r#"{"tid":"t-1","aud":"https://graph.microsoft.com","roles":["User.Read.All"],"exp":5}"#,
        ));
        let c = access_token_claims(&t).unwrap();
        assert_eq!(c.roles, vec!["User.Read.All".to_string()]);
        assert_eq!(c.exp, Some(5));
        let none = access_token_claims(&SecretString::from(jwt(r#"{"tid":"t"}"#))).unwrap();
        assert!(none.roles.is_empty());
    }

    #[test]
    fn implicit_wids_have_names() {
        assert_eq!(
            implicit_wid_name("0997A1D0-0D1D-4ACB-B408-D5CA73121E90"),
            Some("Default service principal permissions (implicit)")
        );
        assert!(implicit_wid_name(USER_DEFAULT_WID).is_some());
        assert_eq!(
            implicit_wid_name("62e90394-69f5-4237-9190-012177145e10"),
            None
        );
    }

    #[test]
    fn malformed_tokens_are_decode_errors() {
        assert!(matches!(
            decode_claims("nodots"),
            Err(EntraError::Decode { .. })
        ));
        assert!(matches!(
            decode_claims("a.!!!.c"),
            Err(EntraError::Decode { .. })
        ));
        assert!(matches!(
            decode_claims(&jwt(r#"{"no_tid":1}"#)),
            Err(EntraError::Decode { .. })
        ));
    }
}
