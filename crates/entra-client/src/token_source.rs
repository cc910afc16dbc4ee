//! Where a Graph client gets its bearer token. A wizard user may sign in and only press "Start
//! Provisioning" after the access token expired, and verification runs re-use app tokens; a
//! token source renews tokens ahead of expiry and once more when Graph answers 401.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::EntraError;
use crate::retry::OpContext;
use crate::sts::{CLIENT_CAPABILITIES, RefreshGrant, StsClient, TokenSet};
use crate::transport::BoxFuture;

/// Renew this long before the STS's stated expiry, so a token does not lapse mid-request.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// Supplies access tokens to a [`crate::GraphClient`].
pub trait TokenSource: Send + Sync {
    /// A token to use now; with `force_refresh` a new one, because Graph rejected the last.
    fn token(&self, force_refresh: bool) -> BoxFuture<'_, Result<SecretString, EntraError>>;
    /// Whether asking again can give a different token (a 401 is then worth one more try).
    fn can_refresh(&self) -> bool;
    /// A token asked for without the user, carrying `claims` (a claims challenge's request,
    /// merged with the client capabilities), to replace `refused`, the token Graph challenged.
    /// `Ok(None)`: this source cannot ask without the user (the default), so only a new
    /// sign-in answers the challenge. Concurrent callers refused with the same token share one
    /// request: whoever comes second gets the token the first one got.
    fn token_for_claims<'a>(
        &'a self,
        claims: &'a str,
        refused: &'a SecretString,
    ) -> BoxFuture<'a, Result<Option<SecretString>, EntraError>> {
        let _ = (claims, refused);
        Box::pin(async { Ok(None) })
    }
}

/// A fixed token: what [`crate::EntraClient::graph`] uses.
pub struct StaticToken(
    /// The token.
    pub SecretString,
);

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken(..)")
    }
}

impl TokenSource for StaticToken {
    fn token(&self, _force_refresh: bool) -> BoxFuture<'_, Result<SecretString, EntraError>> {
        let t = SecretString::from(self.0.expose_secret());
        Box::pin(async move { Ok(t) })
    }
    fn can_refresh(&self) -> bool {
        false
    }
}

/// How a renewing source gets a new token.
enum Grant {
    /// Redeem the user's refresh token (device-code sign-ins).
    Refresh {
        /// Public client that signed the user in.
        client_id: String,
        /// Scopes to ask for again.
        scopes: Vec<String>,
    },
    /// Client credentials with a secret (app-only).
    ClientCredentials {
        /// The app's client id.
        client_id: String,
        /// The app's secret.
        secret: SecretString,
        /// `<resource>/.default`.
        scope: String,
    },
}

/// The cached token and what is needed to renew it.
struct Cached {
    /// Current access token.
    access: SecretString,
    /// Current refresh token (user flows); the STS may rotate it on each use.
    refresh: Option<SecretString>,
    /// When to renew (expiry minus [`EXPIRY_MARGIN`]), on the client's clock.
    renew_at: Instant,
    /// Whether `access` was asked for with a claims challenge's request: only such a token
    /// may be handed to another caller refused with an older one (a plain renewal that crossed
    /// a policy change may be refused the same way).
    for_claims: bool,
}

/// A user's tokens as kept since the sign-in, for [`RenewingToken::from_user_tokens`].
pub struct UserTokens {
    /// The delegated access token.
    pub access: SecretString,
    /// The refresh token, if the STS issued one (`offline_access`); without it nothing renews.
    pub refresh: Option<SecretString>,
    /// How much longer the access token lives (zero: renew before its first use).
    pub valid_for: Duration,
}

/// A token source that renews through the STS: from a device-code sign-in's refresh token, or
/// by client credentials.
pub struct RenewingToken {
    /// Client for the token endpoint (and its clock).
    sts: StsClient,
    /// Tenant the tokens are for.
    tenant: String,
    /// How to get a new token.
    grant: Grant,
    /// Current token; the async mutex makes concurrent callers share one renewal.
    cached: Mutex<Cached>,
}

impl fmt::Debug for RenewingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenewingToken")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl RenewingToken {
    /// Keeps a device-code sign-in's tokens fresh with its refresh token.
    pub fn from_user_sign_in(
        sts: StsClient,
        tenant: &str,
        client_id: &str,
        scopes: &[&str],
        tokens: TokenSet,
    ) -> Self {
        let user = UserTokens {
            access: tokens.access_token,
            refresh: tokens.refresh_token,
            valid_for: tokens.expires_in,
        };
        Self::from_user_tokens(sts, tenant, client_id, scopes, user)
    }

    /// Keeps a user's tokens, kept since their sign-in, fresh with the refresh token: renewed
    /// first when `valid_for` has (nearly) run out, and once more when Graph answers 401.
    pub fn from_user_tokens(
        sts: StsClient,
        tenant: &str,
        client_id: &str,
        scopes: &[&str],
        tokens: UserTokens,
    ) -> Self {
        let renew_at = renew_at(&sts, tokens.valid_for);
        Self {
            sts,
            tenant: tenant.to_owned(),
            grant: Grant::Refresh {
                client_id: client_id.to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            },
            cached: Mutex::new(Cached {
                access: tokens.access,
                refresh: tokens.refresh,
                renew_at,
                for_claims: false,
            }),
        }
    }

    /// Gets an app-only token now and keeps it fresh by client credentials.
    pub async fn client_credentials(
        sts: StsClient,
        tenant: &str,
        client_id: &str,
        secret: SecretString,
        scope: &str,
        ctx: &OpContext,
    ) -> Result<Self, EntraError> {
        let tokens = sts
            .client_credentials(tenant, client_id, &secret, scope, ctx)
            .await?;
        let renew_at = renew_at(&sts, tokens.expires_in);
        Ok(Self {
            sts,
            tenant: tenant.to_owned(),
            grant: Grant::ClientCredentials {
                client_id: client_id.to_owned(),
                secret,
                scope: scope.to_owned(),
            },
            cached: Mutex::new(Cached {
                access: tokens.access_token,
                refresh: None,
                renew_at,
                for_claims: false,
            }),
        })
    }

    /// Renews the cached token; `claims`: the token request's `claims` parameter when it is not
    /// the plain client capabilities (a claims challenge's request; user sign-ins only).
    async fn renew(&self, cached: &mut Cached, claims: Option<&str>) -> Result<(), EntraError> {
        let ctx = OpContext::new();
        let tokens = match &self.grant {
            Grant::Refresh { client_id, scopes } => {
                let Some(rt) = &cached.refresh else {
                    // Without offline_access there is nothing to renew with; the caller must
                    // sign in again.
                    return Err(EntraError::InvalidInput(
                        "the sign-in has no refresh token (offline_access not granted)".into(),
                    ));
                };
                let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
                let grant = RefreshGrant {
                    tenant: &self.tenant,
                    client_id,
                    refresh_token: rt,
                    scopes: &scopes,
                };
                let claims = claims.unwrap_or(CLIENT_CAPABILITIES);
                self.sts.refresh_with_claims(grant, claims, &ctx).await?
            }
            Grant::ClientCredentials {
                client_id,
                secret,
                scope,
            } => {
                self.sts
                    .client_credentials(&self.tenant, client_id, secret, scope, &ctx)
                    .await?
            }
        };
        tracing::info!(tenant = %self.tenant, expires_in_s = tokens.expires_in.as_secs(), "access token renewed");
        cached.renew_at = renew_at(&self.sts, tokens.expires_in);
        cached.for_claims = claims.is_some();
        cached.access = tokens.access_token;
        if tokens.refresh_token.is_some() {
            cached.refresh = tokens.refresh_token;
        }
        Ok(())
    }
}

fn renew_at(sts: &StsClient, expires_in: Duration) -> Instant {
    sts.shared().clock.now() + expires_in.saturating_sub(EXPIRY_MARGIN)
}

impl TokenSource for RenewingToken {
    fn token(&self, force_refresh: bool) -> BoxFuture<'_, Result<SecretString, EntraError>> {
        Box::pin(async move {
            let mut cached = self.cached.lock().await;
            if force_refresh || self.sts.shared().clock.now() >= cached.renew_at {
                self.renew(&mut cached, None).await?;
            }
            Ok(SecretString::from(cached.access.expose_secret()))
        })
    }
    fn can_refresh(&self) -> bool {
        true
    }
    fn token_for_claims<'a>(
        &'a self,
        claims: &'a str,
        refused: &'a SecretString,
    ) -> BoxFuture<'a, Result<Option<SecretString>, EntraError>> {
        Box::pin(async move {
            // App-only tokens are not sent claims challenges; a client-credentials source
            // leaves one to its caller.
            if !matches!(self.grant, Grant::Refresh { .. }) {
                return Ok(None);
            }
            let mut cached = self.cached.lock().await;
            if !cached.for_claims || cached.access.expose_secret() == refused.expose_secret() {
                self.renew(&mut cached, Some(claims)).await?;
            }
            Ok(Some(SecretString::from(cached.access.expose_secret())))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::{fake_client, graph_err, json, token_ok};

    const ME: &str = r#"{"id":"u1","userPrincipalName":"a@contoso.test"}"#;

    /// A user sign-in through `client` holding access token `access` (and refresh token
    /// `rt-0`), renewed from now on.
    fn signed_in_source(client: &crate::EntraClient, access: &str) -> RenewingToken {
        let scopes = &["User.Read"];
        RenewingToken::from_user_sign_in(
            client.sts(),
            "organizations",
            "pub",
            scopes,
            signed_in(access),
        )
    }

    fn signed_in(access: &str) -> TokenSet {
        TokenSet {
            access_token: SecretString::from(access),
            refresh_token: Some(SecretString::from("rt-0")),
            id_token: None,
            expires_in: Duration::from_secs(3600),
            scope: None,
            token_type: "Bearer".into(),
            request_id: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renews_ahead_of_expiry_and_keeps_the_rotated_refresh_token() {
        let (client, fake) = fake_client(vec![token_ok("at-1"), token_ok("at-2")]);
        let src = signed_in_source(&client, "at-0");
        assert_eq!(src.token(false).await.unwrap().expose_secret(), "at-0");
        assert!(fake.seen().is_empty(), "a fresh token is not renewed");
        tokio::time::advance(Duration::from_secs(3600 - 300)).await;
        assert_eq!(src.token(false).await.unwrap().expose_secret(), "at-1");
        assert!(fake.seen()[0].body.contains("refresh_token=rt-0"));
        assert_eq!(src.token(true).await.unwrap().expose_secret(), "at-2");
        // token_ok rotates the refresh token to "r-<access>".
        assert!(
            fake.seen()[1].body.contains("refresh_token=r-at-1"),
            "{}",
            fake.seen()[1].body
        );
    }

    #[tokio::test(start_paused = true)]
    async fn graph_401_renews_exactly_once() {
        let (client, fake) = fake_client(vec![
            graph_err(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
            ),
            token_ok("at-new"),
            json(200, ME),
        ]);
        let src = signed_in_source(&client, "at-old");
        let g = client.graph_with_tokens(Arc::new(src));
        let me = g.me(&OpContext::new()).await.unwrap();
        assert_eq!(me.value.user_principal_name, "a@contoso.test");
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].headers["authorization"], "Bearer at-old");
        assert!(seen[1].url.ends_with("/oauth2/v2.0/token"));
        assert_eq!(seen[2].headers["authorization"], "Bearer at-new");

        let (client, fake) = fake_client(vec![
            graph_err(401, "InvalidAuthenticationToken", "no"),
            token_ok("at-new"),
            graph_err(401, "InvalidAuthenticationToken", "still no"),
        ]);
        let src = signed_in_source(&client, "at-old");
        let err = client
            .graph_with_tokens(Arc::new(src))
            .me(&OpContext::new())
            .await
            .unwrap_err();
        assert_eq!(err.graph().map(|g| g.status), Some(401));
        assert_eq!(fake.seen().len(), 3, "one renewal, no loop");
    }

    /// Graph's 401 with a claims challenge asking for a token issued after 1604106651.
    fn challenged() -> crate::testing::Scripted {
        let crate::testing::Scripted::Resp(status, mut headers, body) = graph_err(
            401,
            "InvalidAuthenticationToken",
            "Continuous access evaluation resulted in challenge",
        ) else {
            unreachable!("graph_err is an answer")
        };
        // base64 of {"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}
        let claims = "eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwidmFsdWUiOiIxNjA0MTA2NjUxIn19fQ==";
        headers.push((
            "www-authenticate",
            format!(r#"Bearer realm="", error="insufficient_claims", claims="{claims}""#),
        ));
        crate::testing::Scripted::Resp(status, headers, body)
    }

    /// The `claims` form field of a token request body, decoded.
    fn claims_sent(body: &str) -> serde_json::Value {
        let fields: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap();
        let (_, v) = fields
            .into_iter()
            .find(|(k, _)| k == "claims")
            .expect("a claims field");
        serde_json::from_str(&v).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_claims_challenge_is_answered_once_by_a_refresh_carrying_its_claims() {
        let (client, fake) = fake_client(vec![challenged(), token_ok("at-new"), json(200, ME)]);
        let g = client.graph_with_tokens(Arc::new(signed_in_source(&client, "at-old")));
        let me = g.me(&OpContext::new()).await.unwrap();
        assert_eq!(me.value.user_principal_name, "a@contoso.test");
        let seen = fake.seen();
        assert_eq!(seen.len(), 3);
        assert!(
            seen[1].body.contains("grant_type=refresh_token"),
            "{}",
            seen[1].body
        );
        // The challenge's claims request, merged with the capability every request declares.
        assert_eq!(
            claims_sent(&seen[1].body),
            serde_json::json!({"access_token": {
                "nbf": {"essential": true, "value": "1604106651"},
                "xms_cc": {"values": ["cp1"]},
            }})
        );
        assert_eq!(seen[2].headers["authorization"], "Bearer at-new");
        // A plain renewal still declares the capability alone.
        let (client, fake) = fake_client(vec![token_ok("at-1")]);
        let src = signed_in_source(&client, "at-0");
        src.token(true).await.unwrap();
        assert_eq!(
            claims_sent(&fake.seen()[0].body),
            serde_json::json!({"access_token": {"xms_cc": {"values": ["cp1"]}}})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_claims_challenge_the_sts_does_not_answer_silently_is_returned_as_it_came() {
        // The STS wants the user (interaction_required, AADSTS50076): the challenge, not the
        // STS's refusal, comes back; no loop.
        let (client, fake) = fake_client(vec![
            challenged(),
            crate::testing::sts_err(400, "interaction_required", 50076),
        ]);
        let g = client.graph_with_tokens(Arc::new(signed_in_source(&client, "at-old")));
        let err = g.me(&OpContext::new()).await.unwrap_err();
        assert!(err.is_claims_challenge(), "{err:?}");
        assert_eq!(fake.seen().len(), 2);
        // A token that satisfied nothing: the second challenge comes back, one refresh only.
        let (client, fake) = fake_client(vec![challenged(), token_ok("at-new"), challenged()]);
        let g = client.graph_with_tokens(Arc::new(signed_in_source(&client, "at-old")));
        let err = g.me(&OpContext::new()).await.unwrap_err();
        assert!(err.is_claims_challenge(), "{err:?}");
        assert_eq!(fake.seen().len(), 3, "one silent request, no loop");
        // A fixed token cannot ask: the challenge comes back after one request.
        let (client, fake) = fake_client(vec![challenged()]);
        let err = client
            .graph(SecretString::from("t"))
            .me(&OpContext::new())
            .await
            .unwrap_err();
        assert!(err.is_claims_challenge(), "{err:?}");
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn callers_refused_with_the_same_token_share_one_silent_request() {
        let (client, fake) = fake_client(vec![token_ok("at-new")]);
        let src = signed_in_source(&client, "at-old");
        let refused = SecretString::from("at-old");
        let claims = r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#;
        let first = src.token_for_claims(claims, &refused).await.unwrap();
        let second = src.token_for_claims(claims, &refused).await.unwrap();
        assert_eq!(first.unwrap().expose_secret(), "at-new");
        assert_eq!(second.unwrap().expose_secret(), "at-new");
        assert_eq!(
            fake.seen().len(),
            1,
            "the second caller reused the first's token"
        );
        // A plain renewal since the refusal is not reused: it may have crossed the change.
        let (client, fake) = fake_client(vec![token_ok("at-plain"), token_ok("at-claims")]);
        let src = signed_in_source(&client, "at-old");
        src.token(true).await.unwrap();
        let got = src.token_for_claims(claims, &refused).await.unwrap();
        assert_eq!(got.unwrap().expose_secret(), "at-claims");
        assert_eq!(fake.seen().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn static_token_does_not_renew_on_401() {
        let (client, fake) = fake_client(vec![graph_err(401, "InvalidAuthenticationToken", "no")]);
        let err = client
            .graph(SecretString::from("t"))
            .me(&OpContext::new())
            .await
            .unwrap_err();
        assert_eq!(err.graph().map(|g| g.status), Some(401));
        assert_eq!(fake.seen().len(), 1);
        assert!(!format!("{:?}", StaticToken(SecretString::from("zzz-secret"))).contains("zzz"));
    }
}
