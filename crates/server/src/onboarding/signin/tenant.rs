//! Which tenant the admin signs in at (the authority segment of the sign-in's URLs).
//!
//! Microsoft signs an account in at its home tenant under `organizations`; a guest (B2B
//! collaboration user) reaches a resource tenant only when the authority names it ("for guest
//! scenarios … you must provide the tenant identifier", OAuth 2.0 authorization code flow).

use invitations::InvitationRecord;

use crate::error::Result;
use crate::onboarding::OnboardingService;

/// The authority segment when neither the invitation nor a run names the tenant: the admin's
/// home tenant, whichever it is.
pub(super) const HOME_TENANT: &str = "organizations";

/// Where the admin signs in: the tenant of the onboarding's run when it has one (a hand-off
/// link, a failed run signed in to again), so a privileged admin who is a guest there reaches
/// it; else the tenant the invitation names; else `None`, the admin's home tenant
/// ([`HOME_TENANT`]).
pub(super) fn authority(
    svc: &OnboardingService,
    invitation: &InvitationRecord,
    onboarding_id: &str,
) -> Result<Option<String>> {
    Ok(match svc.app.engine().get(onboarding_id)? {
        Some(run) => Some(run.tenant_id),
        None => invitation.tenant.clone(),
    })
}
