//! The browser sign-in (`SIGN_IN_METHOD_BROWSER`): OAuth 2.0's authorization code flow with
//! PKCE, for tenants whose Conditional Access blocks the device code flow.
//!
//! The sign-in task files itself under its `state` in [`Returns`] and waits; Microsoft sends
//! the admin's browser to `/wizard/signed-in` (`crate::wizard`), which hands the redirect's
//! query to the waiting task ([`Returns::deliver`]) and never reads the code itself. The task
//! checks the state, redeems the code with its PKCE verifier and goes on as a device-code
//! sign-in does. A redirect nobody waits for (unknown, finished or timed-out state) is
//! dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use entra_client::{BrowserSignIn, EntraError, OpContext, TokenSet};
use provision::ProvisionError;
use tokio::sync::oneshot;

use super::Attempt;
use crate::error::{Result, ServerError};
use crate::limits::Sender;
use onboard_proto::v1 as pb;

/// The redirect's query parameters (`code` or `error`, and `state`).
type Query = HashMap<String, String>;

/// Browser sign-ins waiting for Microsoft's redirect, by the `state` of their authorize URL.
#[derive(Clone, Default)]
pub(crate) struct Returns(Arc<Mutex<HashMap<String, oneshot::Sender<Query>>>>);

/// Takes a sign-in off [`Returns`] when its wait ends, however it ends.
struct Filed {
    /// Where it is filed.
    returns: Returns,
    /// Under which state.
    state: String,
}

impl Drop for Filed {
    fn drop(&mut self) {
        self.returns.map().remove(&self.state);
    }
}

impl Returns {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Query>>> {
        // A panic while holding the lock cannot leave a half-written entry.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files a sign-in under `state`: the receiver gets the redirect's query.
    fn file(&self, state: &str) -> (oneshot::Receiver<Query>, Filed) {
        let (tx, rx) = oneshot::channel();
        self.map().insert(state.to_owned(), tx);
        let filed = Filed {
            returns: self.clone(),
            state: state.to_owned(),
        };
        (rx, filed)
    }

    /// Hands a redirect to the sign-in its `state` names; false when none waits for it.
    pub(crate) fn deliver(&self, query: Query) -> bool {
        let Some(state) = query.get("state") else {
            return false;
        };
        let Some(waiting) = self.map().remove(state) else {
            return false;
        };
        waiting.send(query).is_ok()
    }
}

/// How long a browser sign-in waits for Microsoft to send the admin back
/// (`limits.browser_sign_in_secs`).
pub(super) fn wait(svc: &super::OnboardingService) -> std::time::Duration {
    std::time::Duration::from_secs(svc.app.config().limits.browser_sign_in_secs)
}

/// The event that sends the admin to Microsoft.
pub(super) fn first_event(
    sign_in: &BrowserSignIn,
    expires_at: prost_types::Timestamp,
    onboarding_id: &str,
) -> pb::sign_in_event::Event {
    pb::sign_in_event::Event::BrowserSignIn(pb::BrowserSignIn {
        authorization_url: sign_in.authorization_url().to_string(),
        expires_at: Some(expires_at),
        onboarding_id: onboarding_id.to_owned(),
    })
}

impl Attempt {
    /// Waits for Microsoft to send the admin back, then redeems the code; ends early when the
    /// caller leaves or the server stops, and with `SignInExpired` after [`wait`].
    pub(super) async fn wait_browser(
        &self,
        sign_in: BrowserSignIn,
        tx: &Sender<pb::SignInEvent>,
    ) -> Result<TokenSet> {
        let entra = |e| ServerError::from(ProvisionError::entra("sign_in", e));
        let (back, _filed) = self.svc.browser_returns().file(sign_in.state());
        let returned = async {
            match tokio::time::timeout(wait(&self.svc), back).await {
                Err(_) => Err(entra(EntraError::SignInExpired)),
                Ok(q) => q.map_err(|_| ServerError::Unavailable("the sign-in was dropped".into())),
            }
        };
        let query = self.unless_ended(tx, returned).await?;
        let code = sign_in.answer(&query).map_err(entra)?;
        sign_in
            .redeem(&code, &OpContext::new())
            .await
            .map_err(entra)
    }
}
