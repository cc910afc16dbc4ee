//! Claims of the id token issued to our own sign-in app: tenant, user and `wids` (directory
//! role template ids). Read without signature checking: the token came straight from the STS
//! over TLS to us, and it only feeds a cheap pre-check and display; `GET /me` and
//! `/me/transitiveMemberOf` stay the authoritative answers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::error::EntraError;
use crate::sts::TokenSet;

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

/// What an app-only access token says about the app: its application permissions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccessTokenClaims {
    /// Tenant the token was issued in.
    #[serde(default)]
    pub tid: Option<String>,
    /// Object id of the calling service principal (app-only tokens).
    #[serde(default)]
    pub oid: Option<String>,
    /// Application permissions (app role values) granted to the app for the token's resource.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Template ids of the service principal's directory roles.
    #[serde(default)]
    pub wids: Vec<String>,
    /// The app's display name.
    #[serde(default)]
    pub app_displayname: Option<String>,
}

impl TokenSet {
    /// Decodes the access token's claims without checking its signature: a hint about what the
    /// app was granted (the token came straight from the STS; the resource enforces). Graph
    /// tokens are JWTs; an opaque token gives [`EntraError::Decode`].
    pub fn access_token_claims(&self) -> Result<AccessTokenClaims, EntraError> {
        decode_jwt_payload(self.access_token.expose_secret())
    }
}

fn decode_claims(jwt: &str) -> Result<IdTokenClaims, EntraError> {
    decode_jwt_payload(jwt)
}

fn decode_jwt_payload<T: serde::de::DeserializeOwned>(jwt: &str) -> Result<T, EntraError> {
    let bad = |m: &str| EntraError::Decode {
        operation: "token_claims",
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
