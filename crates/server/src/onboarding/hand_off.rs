//! The hand-off to a privileged admin, the service's side (the engine's is
//! `provision::hand_off`): the single-use link a Global Administrator or Privileged Role
//! Administrator opens to finish an onboarding that waits (`IssueHandOffLink`), and the timer
//! that undoes the onboardings nobody finished in time.
//!
//! The link is an invitation with `hand_off_of` set: the same token rules (hashed at rest,
//! single use, MAC-checked), the same wizard, and `invitation:<id>` as the audit actor of
//! everything its holder does. Its SignIn joins the waiting onboarding instead of starting one
//! (`signin.rs`), and its Provision continues the run with that admin's token.

use std::time::Duration;

use onboard_core::time::{ms_of, parse};
use onboard_proto::v1 as pb;
use provision::Status;
use tonic::Request;

use super::{Access, CustomerRpc, OnboardingService};
use crate::App;
use crate::clock::timestamp;
use crate::error::{Result, ServerError};

impl OnboardingService {
    /// Issues (or replaces) the hand-off link of a waiting onboarding.
    pub(super) async fn hand_off_link(
        &self,
        mut req: Request<pb::IssueHandOffLinkRequest>,
    ) -> Result<pb::HandOffLink> {
        let Access { actor, invitation } = self.access(&mut req, CustomerRpc::IssueHandOffLink)?;
        let id = req.into_inner().onboarding_id;
        let invitations = self.app.invitations();
        if let Some(inv) = &invitation
            && invitations.get(inv)?.hand_off_of.is_some()
        {
            return Err(ServerError::PermissionDenied(
                "a hand-off link cannot issue another; the admin who started the onboarding (or an operator) can".into(),
            ));
        }
        let Some(o) = self.app.engine().get(&id)? else {
            // No run yet: signing in or signed in is FAILED_PRECONDITION (the capability
            // table's "wait"), an id no sign-in made is NOT_FOUND.
            self.refuse_while_signing_in(&id)?;
            if self.invitation_of(&id)?.is_empty() {
                return Err(ServerError::NotFound(format!("no onboarding {id:?}")));
            }
            return Err(ServerError::FailedPrecondition(format!(
                "onboarding {id} has not started provisioning, so it is not waiting for a \
                 privileged admin; only a waiting one has a hand-off link"
            )));
        };
        let hand_off = match (o.status, &o.hand_off) {
            (Status::AwaitingAdmin, Some(h)) => h.clone(),
            (s, _) => {
                return Err(ServerError::FailedPrecondition(format!(
                    "onboarding {id} is {}, not waiting for a privileged admin; only a waiting one has a hand-off link",
                    s.as_str()
                )));
            }
        };
        let first = invitations.get(&self.invitation_of(&id)?)?;
        let expires_ms = parse(&hand_off.expires_at).map_or(0, ms_of);
        // A new link revokes the one before it: ordered with sign-ins as any revocation.
        let created = {
            let _revoking = self.app.guards().revoking().await;
            invitations
                .create_hand_off(&actor, &id, &first, expires_ms)
                .await?
        };
        tracing::info!(onboarding_id = %id, invitation_id = %created.record.id, "hand-off link issued");
        Ok(pb::HandOffLink {
            activation_url: created.activation_url.to_string(),
            invitation_token: created.token.to_string(),
            invitation_id: created.record.id,
            expires_at: Some(timestamp(expires_ms)),
            roles: provision::hand_off::roles_for(&hand_off.rights),
            admin_consent_url: hand_off.admin_consent_url.clone().unwrap_or_default(),
        })
    }
}

/// The least time between two looks for admin consents, however often admins come back from
/// Microsoft's page (`/wizard/consented` nudges the loop, and needs no credential).
const NUDGE_GAP: Duration = Duration::from_secs(2);

/// Undoes, as `system:hand-off-expired`, every onboarding whose wait for a privileged admin
/// has expired; checks at a quarter of `limits.hand_off_wait_secs` (1 s to 60 s) until the
/// server stops, and once at start-up (a wait that expired while the server was down). While a
/// wait offers Microsoft's admin-consent page it also looks for the grants made there every
/// `limits.consent_poll_secs`, and at once (but [`NUDGE_GAP`] after the last look) when an admin
/// comes back from that page.
pub(crate) fn spawn_expiry(app: &App) {
    let limits = &app.config().limits;
    if limits.hand_off_wait_secs == 0 {
        return;
    }
    let every = (Duration::from_secs(limits.hand_off_wait_secs) / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let poll = Duration::from_secs(limits.consent_poll_secs.max(1));
    let a = app.clone();
    let _ = app.shutdown().spawn(async move {
        let stop = a.shutdown();
        let engine = a.engine();
        let mut next_expiry = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_expiry {
                match engine.expire_hand_offs().await {
                    Ok(ids) if !ids.is_empty() => {
                        tracing::info!(onboardings = ?ids, "expired hand-offs undone");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "expired hand-offs not checked"),
                }
                next_expiry = tokio::time::Instant::now() + every;
            }
            let checked = tokio::time::Instant::now();
            match engine.check_admin_consents().await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(onboardings = ?ids, "admin consent seen; onboardings moved on");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "admin consents not checked"),
            }
            let pending = engine.consent_pending().unwrap_or(false);
            let until_expiry = next_expiry.saturating_duration_since(tokio::time::Instant::now());
            let wait = if pending {
                poll.min(until_expiry)
            } else {
                until_expiry
            };
            tokio::select! {
                () = engine.consent_nudged(wait) => {}
                () = stop.recv() => return,
            }
            // Anyone may load the page that nudges: however many nudges come, the sweeps (one
            // Graph read per waiting onboarding) stay `NUDGE_GAP` apart.
            let rest = (checked + poll.min(NUDGE_GAP))
                .saturating_duration_since(tokio::time::Instant::now());
            tokio::select! {
                () = tokio::time::sleep(rest) => {}
                () = stop.recv() => return,
            }
        }
    });
}
