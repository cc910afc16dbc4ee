//! The identity platform's token endpoint: client credentials, refresh, and the raw form POST
//! that the device-code flow builds on.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::Shared;
use crate::device_code::{DeviceAuthorization, DeviceCodeFlow};
use crate::error::{EntraError, StsError, parse_sts_error};
use crate::retry::{OpContext, Retrier};
use crate::transport::{HttpRequest, HttpResponse, parse_retry_after};

/// The `claims` request every user-token request carries (the device-code poll and refresh):
/// it declares the `cp1` client capability (Microsoft's "Claims challenges, claims requests
/// and client capabilities"; MSAL sends the same on each token request). Graph sends
/// Continuous Access Evaluation's claims challenges (a revoked sign-in, a Conditional Access
/// policy the token no longer meets) only to clients that declare it; this client recognises
/// them ([`EntraError::is_claims_challenge`]), answers each once with a token asked for
/// silently with the challenge's claims request, never renews plainly or retries into them, and
/// the service answers what is left by asking the admin to sign in again. Without it Graph
/// would keep accepting such a token until it expires.
pub const CLIENT_CAPABILITIES: &str = r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#;

/// What a refresh-token grant names: whose sign-in, for which scopes.
#[derive(Clone, Copy)]
pub struct RefreshGrant<'a> {
    /// The tenant (or `organizations`) the sign-in was in.
    pub tenant: &'a str,
    /// The public client that signed the user in.
    pub client_id: &'a str,
    /// The refresh token to redeem.
    pub refresh_token: &'a SecretString,
    /// The scopes to ask for again.
    pub scopes: &'a [&'a str],
}

/// Tokens issued by the STS.
pub struct TokenSet {
    /// Bearer token for the resource the scope named.
    pub access_token: SecretString,
    /// Present for user flows that asked for `offline_access`; never for client credentials.
    pub refresh_token: Option<SecretString>,
    /// Present when `openid` was asked for; its claims (`tid`, `wids`) are for our own app.
    pub id_token: Option<SecretString>,
    /// Lifetime of the access token from issue.
    pub expires_in: Duration,
    /// Granted scopes as the STS reported them (space-separated).
    pub scope: Option<String>,
    /// Always `Bearer` in practice; kept to reject anything else early.
    pub token_type: String,
    /// The STS's `x-ms-request-id` header, for the audit log.
    pub request_id: Option<String>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    /// `Bearer`.
    token_type: String,
    /// Granted scopes.
    #[serde(default)]
    scope: Option<String>,
    /// Access token lifetime.
    expires_in: DurationSecs,
    /// Moved into a `SecretString` at once.
    access_token: String,
    /// Moved into a `SecretString` at once.
    #[serde(default)]
    refresh_token: Option<String>,
    /// Moved into a `SecretString` at once.
    #[serde(default)]
    id_token: Option<String>,
}

/// Some STS versions send `expires_in` as a string; accept both.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
pub(crate) enum DurationSecs {
    /// The documented numeric form.
    Num(u64),
    /// The string form some STS versions send.
    Text(#[serde(deserialize_with = "de_num_str")] u64),
}

/// The longest lifetime or interval we take from the identity platform. Its tokens live about
/// an hour (at most a day with lifetime policies) and a device code 15 minutes; a larger number
/// is treated as a day, so deadlines computed from it (`now + expires_in`, an interval plus
/// `slow_down` steps) cannot overflow.
pub(crate) const MAX_SERVER_DURATION: Duration = Duration::from_secs(86_400);

impl DurationSecs {
    pub(crate) fn get(self) -> Duration {
        match self {
            DurationSecs::Num(n) | DurationSecs::Text(n) => {
                Duration::from_secs(n).min(MAX_SERVER_DURATION)
            }
        }
    }
}

fn de_num_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(serde::de::Error::custom)
}

/// Client for the token and device-authorization endpoints.
#[derive(Clone)]
pub struct StsClient {
    /// HTTP, clock, policy and base URL.
    shared: Arc<Shared>,
}

impl fmt::Debug for StsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsClient")
            .field("authority", &self.shared.authority.as_str())
            .finish()
    }
}

/// Checks a tenant given as GUID, domain, or `organizations`/`common`, so it can go in a path.
fn tenant_segment(tenant: &str) -> Result<&str, EntraError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 256
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !tenant.starts_with('.');
    if ok {
        Ok(tenant)
    } else {
        Err(EntraError::InvalidInput(format!(
            "not a tenant id or domain: {tenant:?}"
        )))
    }
}

/// Whether `tenant` is a tenant-independent authority (`common`, `organizations`): fine for a
/// user's sign-in, which finds the tenant from the user, but no tenant for an application's
/// own token (Entra answers AADSTS50059; docs/microsoft.md §24).
pub fn is_tenant_independent(tenant: &str) -> bool {
    ["common", "organizations"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tenant.trim()))
}

/// Whether `s` has a GUID's shape (8-4-4-4-12 hex digits).
fn is_guid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

impl StsClient {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn endpoint(&self, tenant: &str, leaf: &str) -> Result<Url, EntraError> {
        self.at_authority(tenant, &format!("oauth2/v2.0/{leaf}"))
    }

    /// `{authority}/{tenant}/{path}`, the tenant checked as a path segment.
    fn at_authority(&self, tenant: &str, path: &str) -> Result<Url, EntraError> {
        let tenant = tenant_segment(tenant)?;
        let base = self.shared.authority.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{tenant}/{path}"))
            .map_err(|e| EntraError::Config(format!("authority URL: {e}")))
    }

    /// The tenant id (a GUID, lower case) of `tenant`, a tenant id or one of its domains, as
    /// the tenant's OpenID configuration names it (`GET {authority}/{tenant}/v2.0/.well-known/
    /// openid-configuration`, Learn v2-protocols-oidc: its `issuer` is
    /// `https://login.microsoftonline.com/{tenant id}/v2.0`). A tenant Microsoft does not
    /// know is a 400 AADSTS90002, as at the token endpoint.
    pub async fn tenant_id(&self, tenant: &str, ctx: &OpContext) -> Result<String, EntraError> {
        const OP: &str = "openid_configuration";
        if is_tenant_independent(tenant) {
            return Err(EntraError::InvalidInput(format!(
                "{tenant:?} names no tenant"
            )));
        }
        let url = self.at_authority(tenant, "v2.0/.well-known/openid-configuration")?;
        let (resp, _) = self.send(OP, url, None, true, ctx).await?;
        #[derive(Deserialize)]
        struct Configuration {
            issuer: String,
        }
        let bad = |message: String| EntraError::Decode {
            operation: OP,
            status: resp.status.as_u16(),
            message,
            request_id: None,
        };
        let issuer = serde_json::from_slice::<Configuration>(&resp.body)
            .map_err(|e| bad(e.to_string()))?
            .issuer;
        issuer
            .trim_end_matches('/')
            .strip_suffix("/v2.0")
            .and_then(|rest| rest.rsplit('/').next())
            .filter(|id| is_guid(id))
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| bad(format!("an issuer without a tenant id: {issuer:?}")))
    }

    /// Starts a device authorization grant: asks for a user code for `scopes` (space-separated
    /// in the request). Show the answer's `message` / `verification_uri` + `user_code` to the
    /// user, then poll the returned flow.
    pub async fn start_device_code(
        &self,
        tenant: &str,
        client_id: &str,
        scopes: &[&str],
        ctx: &OpContext,
    ) -> Result<DeviceCodeFlow, EntraError> {
        let url = self.endpoint(tenant, "devicecode")?;
        let scope = scopes.join(" ");
        let form = [("client_id", client_id), ("scope", scope.as_str())];
        let body = encode_form(&form)?;
        let (resp, _) = self
            .post_form("device_code_request", url, body, true, ctx)
            .await?;
        let auth = DeviceAuthorization::from_body(&resp)?;
        tracing::info!(
            tenant,
            client_id,
            expires_in_s = auth.expires_in.as_secs(),
            interval_s = auth.interval.as_secs(),
            "device code issued"
        );
        let flow = DeviceCodeFlow::new(self.clone(), tenant.to_owned(), client_id.to_owned(), auth);
        // The polls belong to the same logical sign-in: same client-request-id and observer.
        Ok(flow.with_context(ctx.clone()))
    }

    /// Client-credentials grant with a client secret (`scope` is one `<resource>/.default`).
    /// Mark `ctx` as [`OpContext::after_create`] when the secret or app was just created, so
    /// AADSTS700016 / 7000215 are retried while the credential propagates. `tenant` must name
    /// the tenant: `common` / `organizations` are refused here, before any request.
    pub async fn client_credentials(
        &self,
        tenant: &str,
        client_id: &str,
        client_secret: &SecretString,
        scope: &str,
        ctx: &OpContext,
    ) -> Result<TokenSet, EntraError> {
        if is_tenant_independent(tenant) {
            return Err(EntraError::InvalidInput(format!(
                "client credentials need the tenant's id or domain, not {tenant:?}"
            )));
        }
        let secret = client_secret.expose_secret();
        let form = [("client_secret", secret), ("scope", scope)];
        let tokens = self
            .token_grant(
                "client_credentials",
                "client_credentials",
                tenant,
                client_id,
                &form,
                true,
                ctx,
            )
            .await?;
        tracing::info!(
            tenant,
            client_id,
            scope,
            expires_in_s = tokens.expires_in.as_secs(),
            "app token issued"
        );
        Ok(tokens)
    }

    /// Redeems a refresh token for new tokens (the STS may rotate the refresh token too),
    /// declaring [`CLIENT_CAPABILITIES`] as the device-code poll does.
    pub async fn refresh(
        &self,
        tenant: &str,
        client_id: &str,
        refresh_token: &SecretString,
        scopes: &[&str],
        ctx: &OpContext,
    ) -> Result<TokenSet, EntraError> {
        let grant = RefreshGrant {
            tenant,
            client_id,
            refresh_token,
            scopes,
        };
        self.refresh_with_claims(grant, CLIENT_CAPABILITIES, ctx)
            .await
    }

    /// [`Self::refresh`] with another `claims` parameter: a claims challenge's request merged
    /// with the client capabilities ([`crate::ClaimsChallenge::token_request_claims`]), the
    /// silent answer to a challenge that Microsoft recommends before an interactive sign-in
    /// (some Conditional Access policies need no user interaction). The STS refuses it
    /// (`invalid_grant`, `interaction_required`) when only a new sign-in can satisfy them.
    pub async fn refresh_with_claims(
        &self,
        grant: RefreshGrant<'_>,
        claims: &str,
        ctx: &OpContext,
    ) -> Result<TokenSet, EntraError> {
        let RefreshGrant {
            tenant,
            client_id,
            refresh_token,
            scopes,
        } = grant;
        let scope = scopes.join(" ");
        let form = [
            ("refresh_token", refresh_token.expose_secret()),
            ("scope", scope.as_str()),
            ("claims", claims),
        ];
        self.token_grant(
            "refresh_token",
            "refresh_token",
            tenant,
            client_id,
            &form,
            true,
            ctx,
        )
        .await
    }

    /// One device-code token poll (no interval logic; see [`DeviceCodeFlow`]). Sent once: a
    /// poll whose answer is lost may have redeemed the code, which Microsoft redeems only once
    /// (`invalid_grant` afterwards), so only the flow's next scheduled poll asks again.
    pub(crate) async fn poll_device_code(
        &self,
        tenant: &str,
        client_id: &str,
        device_code: &SecretString,
        ctx: &OpContext,
    ) -> Result<TokenSet, EntraError> {
        let form = [
            ("device_code", device_code.expose_secret()),
            ("claims", CLIENT_CAPABILITIES),
        ];
        let grant_type = "urn:ietf:params:oauth:grant-type:device_code";
        self.token_grant(
            "device_code_poll",
            grant_type,
            tenant,
            client_id,
            &form,
            false,
            ctx,
        )
        .await
    }

    /// One token request to `tenant`'s token endpoint: `grant_type`, `client_id`, then the
    /// grant's own `fields`. `repeatable`: see [`Self::post_form`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn token_grant(
        &self,
        operation: &'static str,
        grant_type: &str,
        tenant: &str,
        client_id: &str,
        fields: &[(&str, &str)],
        repeatable: bool,
        ctx: &OpContext,
    ) -> Result<TokenSet, EntraError> {
        let url = self.endpoint(tenant, "token")?;
        let mut form = vec![("grant_type", grant_type), ("client_id", client_id)];
        form.extend_from_slice(fields);
        let body = encode_form(&form)?;
        let (resp, _) = self
            .post_form(operation, url, body, repeatable, ctx)
            .await?;
        parse_tokens(operation, &resp)
    }

    /// POSTs a form with transient retries; non-2xx answers become [`EntraError::Sts`].
    /// `repeatable`: sending it again after a lost answer (timeout, broken connection, 500,
    /// 502, 504) is harmless. True for device-code requests, refresh and client credentials
    /// (a second answer is just another token); false for a device-code poll, which may have
    /// redeemed its single-use code before its answer was lost. A 429, a 503 and a failed
    /// connect were not acted on and are retried either way.
    async fn post_form(
        &self,
        operation: &'static str,
        url: Url,
        body: Vec<u8>,
        repeatable: bool,
        ctx: &OpContext,
    ) -> Result<(HttpResponse, u32), EntraError> {
        self.send(operation, url, Some(body), repeatable, ctx).await
    }

    /// One request to the identity platform, retried by the policy: a form POST with `body`,
    /// else a GET.
    async fn send(
        &self,
        operation: &'static str,
        url: Url,
        body: Option<Vec<u8>>,
        repeatable: bool,
        ctx: &OpContext,
    ) -> Result<(HttpResponse, u32), EntraError> {
        let retrier = Retrier {
            policy: &self.shared.policy,
            clock: self.shared.clock.as_ref(),
        };
        retrier
            .run(operation, ctx, repeatable, || {
                let mut headers = HeaderMap::new();
                if body.is_some() {
                    headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    );
                }
                headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
                if let Ok(v) = HeaderValue::from_str(&ctx.client_request_id.to_string()) {
                    headers.insert("client-request-id", v);
                }
                let req = HttpRequest {
                    method: if body.is_some() {
                        Method::POST
                    } else {
                        Method::GET
                    },
                    url: url.clone(),
                    headers,
                    body: body.clone(),
                };
                let transport = self.shared.transport.clone();
                async move {
                    let resp = crate::telemetry::send(transport, req, operation)
                        .await
                        .map_err(|f| f.into_error(operation))?;
                    if resp.status.is_success() {
                        return Ok(resp);
                    }
                    let err = sts_error(&resp);
                    tracing::debug!(
                        operation,
                        status = resp.status.as_u16(),
                        error = %err.error,
                        aadsts = err.code.unwrap_or(0),
                        "token endpoint refused"
                    );
                    Err(EntraError::Sts(Box::new(err)))
                }
            })
            .await
    }
}

/// Builds an [`StsError`] from any non-2xx STS answer, HTML gateway pages included.
fn sts_error(resp: &HttpResponse) -> StsError {
    let status = resp.status.as_u16();
    let mut err = parse_sts_error(status, &resp.body).unwrap_or_else(|| StsError {
        http_status: status,
        error: format!("http_{status}"),
        code: None,
        error_codes: Vec::new(),
        description: String::new(),
        trace_id: None,
        correlation_id: None,
        timestamp: None,
        retry_after: None,
    });
    err.retry_after = parse_retry_after(&resp.headers);
    err
}

fn encode_form(form: &[(&str, &str)]) -> Result<Vec<u8>, EntraError> {
    serde_urlencoded::to_string(form)
        .map(String::into_bytes)
        .map_err(|e| EntraError::InvalidInput(format!("form encoding: {e}")))
}

pub(crate) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(crate) fn parse_tokens(
    operation: &'static str,
    resp: &HttpResponse,
) -> Result<TokenSet, EntraError> {
    let t: TokenResponse = serde_json::from_slice(&resp.body).map_err(|e| EntraError::Decode {
        operation,
        status: resp.status.as_u16(),
        message: e.to_string(),
        request_id: None,
    })?;
    if !t.token_type.eq_ignore_ascii_case("bearer") {
        return Err(EntraError::Decode {
            operation,
            status: resp.status.as_u16(),
            message: format!("unexpected token_type {:?}", t.token_type),
            request_id: None,
        });
    }
    Ok(TokenSet {
        access_token: SecretString::from(t.access_token),
        refresh_token: t.refresh_token.map(SecretString::from),
        id_token: t.id_token.map(SecretString::from),
        expires_in: t.expires_in.get(),
        scope: t.scope,
        token_type: t.token_type,
        request_id: header_str(&resp.headers, "x-ms-request-id"),
    })
}

#[cfg(test)]
mod tests;
