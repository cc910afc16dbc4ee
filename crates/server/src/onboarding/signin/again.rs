//! A used invitation signing in again for the onboarding it started: after a restart lost
//! the sign-in held, with an account that holds a missing role, or to resume a failed run.

use invitations::InvitationRecord;
use onboard_core::time::now_ms;

use super::rights_missing;
use crate::onboarding::OnboardingService;

impl OnboardingService {
    /// Whether invitation `token` may sign in again now ([`Self::sign_in_again`]): what the
    /// wizard offers on a reload.
    pub(crate) fn can_sign_in_again(&self, token: &str) -> bool {
        self.sign_in_again(token).is_some()
    }

    /// A used invitation may sign in again for the onboarding it started:
    /// - when that onboarding never began a run and the server holds no sign-in for it
    ///   (sign-ins live in memory, so a restart between SignIn and Provision loses them):
    ///   otherwise the invitation would be spent with nothing to show; or holds one that lacks
    ///   a role the profile needs (an account that holds it signs in with the same link; with
    ///   hand-offs turned off there is no other way on);
    /// - when its run failed (and no undo is under way): Provision resumes a failed run with
    ///   the signed-in admin's token, so without a new sign-in a failure after a restart, or one
    ///   whose token Conditional Access now refuses (a claims challenge needs a new interactive
    ///   sign-in), could never be resumed. The new sign-in replaces the one held, and must be
    ///   in the onboarding's tenant (`Attempt::finish`).
    ///
    /// A hand-off link may sign in again for the onboarding it joined while that still waits
    /// for a privileged admin and the server holds no sign-in for it: the link is spent at its
    /// sign-in, so a restart before its holder's Provision started the run (or a crash while
    /// it started it) would otherwise leave the wait to a new link only.
    ///
    /// Not for revoked or expired invitations (a replaced link is revoked), or an onboarding in
    /// any other state (its own capabilities apply). Returns the invitation, the id and whether
    /// the onboarding has a run.
    pub(super) fn sign_in_again(&self, token: &str) -> Option<(InvitationRecord, String, bool)> {
        let inv = self.app.invitations().get_by_token(token).ok()?;
        let id = inv.onboarding_id.clone()?;
        // Only a sign-in links its onboarding to the invitation: one spent attaching a
        // registration made by hand ("Use App Registration") never signs in again.
        if self.invitation_of(&id).ok().is_none_or(|t| t.is_empty()) {
            return None;
        }
        if inv.state(now_ms()) != invitations::InvitationState::Used
            || now_ms() >= inv.expires_at_ms
        {
            return None;
        }
        let run = self.app.engine().get(&id).ok()?;
        if inv.hand_off_of.is_some() {
            let waiting = run
                .as_ref()
                .is_some_and(|o| o.status == provision::Status::AwaitingAdmin);
            let held = self.sessions().contains_key(&id);
            return (waiting && !held).then_some((inv, id, true));
        }
        let usable = match &run {
            // A sign-in that can make the whole plan spends the invitation.
            None => {
                matches!(self.cancelled_before_run(&id), Ok(None))
                    && self.sessions().get(&id).is_none_or(|s| {
                        rights_missing(&s.admin, &s.invitation, self.app.profiles())
                            .is_ok_and(|missing| !missing.is_empty())
                    })
            }
            Some(o) => o.status == provision::Status::Failed && !self.app.engine().is_undoing(&id),
        };
        usable.then_some((inv, id, run.is_some()))
    }
}
