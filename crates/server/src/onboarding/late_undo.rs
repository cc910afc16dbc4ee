//! Undoing a completed onboarding after its admin sign-in has expired.
//!
//! The last step of an onboarding removes the temporary `<server>-<provider>-token` app, the
//! app the admin's refresh token was issued to; Entra then refuses to renew that sign-in
//! (AADSTS65001, no consent), so the onboarding's own access token undoes it for about an hour
//! and no longer. Later the tenant's day-two admin session (a new invitation signed in:
//! "Reinitiate Authentication Flow") does the undo; without one, CancelOnboarding answers
//! FAILED_PRECONDITION saying so.

use credentials::CredentialsError;
use provision::ProvisionError;
use secrecy::SecretString;

use crate::App;
use crate::error::{Result, ServerError};

/// The tenant's day-two admin token, renewed; `None` when no admin session is stored or the
/// STS no longer renews it.
pub(super) async fn day_two_admin(app: &App, tenant_id: &str) -> Result<Option<SecretString>> {
    match app.credentials().admin_access_token(tenant_id).await {
        Ok(token) => Ok(Some(token)),
        Err(CredentialsError::NoAdminSession { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether Graph refused the token the undo ran with (401: expired or otherwise invalid).
pub(super) fn sign_in_expired(e: &ProvisionError) -> bool {
    matches!(e, ProvisionError::Entra { source, .. } if source.graph().is_some_and(|g| g.status == 401))
}

/// The refusal of an undo that needs a new admin sign-in, saying how to get one.
pub(super) fn needs_sign_in(id: &str, tenant_id: &str, e: &ProvisionError) -> ServerError {
    ServerError::FailedPrecondition(format!(
        "undoing completed onboarding {id:?} needs an admin sign-in: the one it was made with \
         has expired and cannot be renewed (its temporary app was removed when it completed), \
         and tenant {tenant_id} has no day-two admin session. Send the customer a new \
         invitation (`onboard ctl invitations create`) so their admin signs in again, then \
         cancel again; end the session afterwards (`onboard ctl end-admin-session`). Graph \
         said: {e}"
    ))
}
