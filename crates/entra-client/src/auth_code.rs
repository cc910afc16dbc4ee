//! OAuth 2.0 authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636) as the Microsoft
//! identity platform runs it for a public client (Microsoft's "authorization code flow" page,
//! v2-oauth2-auth-code-flow): the sign-in for tenants whose Conditional Access blocks the
//! device code flow (docs/microsoft.md §27).
//!
//! [`StsClient::start_browser_sign_in`] makes the `authorize` URL the admin's browser opens, with
//! a fresh `state` (the key the redirect comes back with) and PKCE verifier (kept here, never
//! sent until the code is redeemed); [`BrowserSignIn::answer`] reads the redirect's query
//! (`code` or `error`); [`BrowserSignIn::redeem`] trades the code for tokens at the token
//! endpoint, sending the verifier, so a code intercepted on the way is worth nothing.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::{EntraError, StsError};
use crate::retry::OpContext;
use crate::sts::{CLIENT_CAPABILITIES, StsClient, TokenSet};

/// How many random bytes make the PKCE verifier (43 characters in base64url, RFC 7636's
/// minimum length, 256 bits) and the `state`.
const RANDOM_BYTES: usize = 32;

/// One browser sign-in: where to send the admin, and what redeems the code that comes back.
pub struct BrowserSignIn {
    /// The STS the code is redeemed at.
    sts: StsClient,
    /// The authority segment (`organizations`, a tenant id or domain), the same for both calls.
    tenant: String,
    /// The public client the admin signs in to.
    client_id: String,
    /// Where Microsoft sends the browser back; sent again when redeeming (must match).
    redirect_uri: String,
    /// The scopes asked for, space-separated, sent again when redeeming.
    scope: String,
    /// The URL the admin opens.
    authorization_url: Url,
    /// Ties the redirect to this sign-in (RFC 6749 §10.12): unguessable, checked on return.
    state: String,
    /// RFC 7636's `code_verifier`: whoever holds it and the code gets the admin's tokens.
    verifier: SecretString,
}

impl fmt::Debug for BrowserSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserSignIn")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// `n` random bytes in base64url without padding.
fn random_text(n: usize) -> Result<String, EntraError> {
    let mut raw = vec![0u8; n];
    getrandom::fill(&mut raw)
        .map_err(|e| EntraError::Config(format!("the system random source failed: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

/// RFC 7636 §4.2: `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The AADSTS number at the start of a redirect's `error_description` (`AADSTS65004: …`).
fn aadsts_prefix(description: &str) -> Option<u32> {
    let rest = description.trim_start().strip_prefix("AADSTS")?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl StsClient {
    /// Starts a browser sign-in for `scopes` at `tenant` (`organizations` for any work
    /// account): the `authorize` URL asks for a code (`response_type=code`, in the redirect's
    /// query) with an S256 PKCE challenge, and names `login_hint` when given so Microsoft
    /// offers that account first. `redirect_uri` must be registered on `client_id` (for a
    /// public client, as a "Mobile and desktop applications" URI), else Microsoft shows
    /// AADSTS50011 and never comes back.
    pub fn start_browser_sign_in(
        &self,
        tenant: &str,
        client_id: &str,
        redirect_uri: &str,
        scopes: &[&str],
        login_hint: Option<&str>,
    ) -> Result<BrowserSignIn, EntraError> {
        let mut url = self.endpoint(tenant, "authorize")?;
        let scope = scopes.join(" ");
        let state = random_text(RANDOM_BYTES)?;
        let verifier = random_text(RANDOM_BYTES)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("response_mode", "query")
                .append_pair("scope", &scope)
                .append_pair("state", &state)
                .append_pair("code_challenge", &pkce_challenge(&verifier))
                .append_pair("code_challenge_method", "S256");
            if let Some(hint) = login_hint.filter(|h| !h.is_empty()) {
                q.append_pair("login_hint", hint);
            }
        }
        Ok(BrowserSignIn {
            sts: self.clone(),
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scope,
            authorization_url: url,
            state,
            verifier: SecretString::from(verifier),
        })
    }
}

impl BrowserSignIn {
    /// The URL the admin opens (Microsoft's sign-in page).
    pub fn authorization_url(&self) -> &Url {
        &self.authorization_url
    }

    /// The `state` the redirect carries back: the key a server files the waiting sign-in
    /// under. Not a secret on its own (it travels in the browser's URL), but unguessable.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// Reads the redirect's query parameters: the authorization code, or Microsoft's refusal.
    /// A `state` other than this sign-in's is refused (`InvalidInput`) before anything else.
    /// `error=access_denied` (the admin cancelled, or declined consent: AADSTS65004) is
    /// [`EntraError::DeviceCodeDeclined`], the variant every declined sign-in uses; any other
    /// `error` (a Conditional Access block, AADSTS53003; `server_error`, …) is
    /// [`EntraError::Sts`] with the redirect's `error`, AADSTS number and description
    /// (HTTP status 503 for `server_error` / `temporarily_unavailable`, else 400).
    pub fn answer(&self, query: &HashMap<String, String>) -> Result<SecretString, EntraError> {
        if query.get("state").map(String::as_str) != Some(self.state.as_str()) {
            return Err(EntraError::InvalidInput(
                "the redirect's state is not this sign-in's".into(),
            ));
        }
        if let Some(error) = query.get("error") {
            let description = query.get("error_description").cloned().unwrap_or_default();
            let code = aadsts_prefix(&description);
            let http_status = match error.as_str() {
                "server_error" | "temporarily_unavailable" => 503,
                _ => 400,
            };
            let e = Box::new(StsError {
                http_status,
                error: error.clone(),
                code,
                error_codes: code.into_iter().collect(),
                description,
                trace_id: None,
                correlation_id: None,
                timestamp: None,
                retry_after: None,
            });
            return Err(if error == "access_denied" && code != Some(53003) {
                EntraError::DeviceCodeDeclined(e)
            } else {
                EntraError::Sts(e)
            });
        }
        match query.get("code").filter(|c| !c.is_empty()) {
            Some(code) => Ok(SecretString::from(code.clone())),
            None => Err(EntraError::InvalidInput(
                "the redirect carries neither a code nor an error".into(),
            )),
        }
    }

    /// Redeems `code` (from [`Self::answer`]) for the admin's tokens, with the PKCE verifier,
    /// the same redirect URI and scopes, and the client capabilities every user-token request
    /// declares. Sent once: Microsoft redeems a code only once, so a lost answer is not
    /// repeated (the admin signs in again).
    pub async fn redeem(
        &self,
        code: &SecretString,
        ctx: &OpContext,
    ) -> Result<TokenSet, EntraError> {
        let form = [
            ("code", code.expose_secret()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", self.verifier.expose_secret()),
            ("scope", self.scope.as_str()),
            ("claims", CLIENT_CAPABILITIES),
        ];
        let tokens = self
            .sts
            .token_grant(
                "authorization_code",
                "authorization_code",
                &self.tenant,
                &self.client_id,
                &form,
                false,
                ctx,
            )
            .await?;
        tracing::info!(
            tenant = %self.tenant,
            client_id = %self.client_id,
            "browser sign-in redeemed"
        );
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests;
