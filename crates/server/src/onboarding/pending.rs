//! Onboardings before their run: signing in (a device code is out) or signed in (a session
//! waits for Provision). Neither is in the engine's store yet, and both live only in this
//! process's memory. The DeviceCode event hands out the onboarding id "for Watch and Get", so:
//! GetOnboarding answers SIGNING_IN or SIGNED_IN, and Watch waits for the run's events. A Watch
//! whose onboarding ends before any run began (the sign-in failed, was declined or expired, the
//! caller cancelled the signed-in onboarding) ends with FAILED_PRECONDITION; Plan, Provision
//! and CancelOnboarding during the sign-in are refused with FAILED_PRECONDITION too (closing the
//! SignIn call is how a sign-in is abandoned).
//!
//! A signed-in session Microsoft no longer accepts (Plan or Provision refused for a new
//! sign-in) is dropped, so the same invitation may sign in again.
//!
//! A signed-in onboarding cancelled before its run leaves a durable mark (`marks.rs`):
//! GetOnboarding answers CANCELLED, Watch FAILED_PRECONDITION, the invitation cannot sign in to
//! it again, and the capability table treats it as cancelled at that time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use onboard_core::time::now_ms;
use onboard_proto::v1 as pb;

use invitations::InvitationRecord;
use provision::{Admin, Onboarding, Status};

use super::{OnboardingService, Session};
use crate::error::{Result, ServerError};

/// How often a Watch of an onboarding without a run looks whether the run began or the
/// onboarding ended (the engine's own events wake it as soon as the run emits one).
pub(super) const BEFORE_RUN_POLL: Duration = Duration::from_millis(250);

/// Onboardings whose sign-in is under way, by onboarding id.
pub(super) type SigningInMap = Arc<Mutex<HashMap<String, SigningIn>>>;

/// One sign-in under way.
pub(super) struct SigningIn {
    /// The invitation signing in: its token may Watch and Get the onboarding meanwhile.
    invitation_id: String,
    /// When the sign-in began (ms since the epoch), answered as `created_at`.
    started_ms: i64,
}

impl SigningIn {
    /// Onboarding `id` as GetOnboarding and ListOnboardings show it.
    fn info(&self, id: &str) -> pb::OnboardingInfo {
        pb::OnboardingInfo {
            onboarding_id: id.to_owned(),
            invitation_id: self.invitation_id.clone(),
            state: pb::OnboardingState::SigningIn.into(),
            created_at: super::convert::began_at(id, Some(self.started_ms)),
            updated_at: Some(crate::clock::timestamp(self.started_ms)),
            ..Default::default()
        }
    }
}

/// Lists an onboarding as signing in until dropped; the sign-in attempt holds it, and drops it
/// after a successful sign-in stored its session.
pub(super) struct SigningInGuard {
    /// The shared map the entry is removed from.
    map: SigningInMap,
    /// The onboarding's id.
    id: String,
}

impl Drop for SigningInGuard {
    fn drop(&mut self) {
        lock(&self.map).remove(&self.id);
    }
}

fn lock(map: &SigningInMap) -> MutexGuard<'_, HashMap<String, SigningIn>> {
    // A panic while holding the lock cannot leave a half-written map entry.
    map.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a Watch of an onboarding without a run may go on waiting.
pub(super) enum BeforeRun {
    /// The run began: the engine's events follow.
    Began,
    /// Still signing in or signed in.
    Waiting,
    /// Ended without a run.
    Ended,
}

impl OnboardingService {
    /// The session's invitation and admin, or why there is none.
    pub(super) fn session(&self, id: &str) -> Result<(InvitationRecord, Admin)> {
        let held = self
            .sessions()
            .get(id)
            .map(|s| (s.invitation.clone(), s.admin.clone()));
        if let Some((invitation, admin)) = held {
            // A hand-off link revoked since its holder signed in (replaced, or its wait ended
            // otherwise): that sign-in is nobody's to use any more.
            let revoked_link = invitation.hand_off_of.is_some()
                && self
                    .app
                    .invitations()
                    .get(&invitation.id)?
                    .revoked_at_ms
                    .is_some();
            if !revoked_link {
                return Ok((invitation, admin));
            }
            self.drop_sessions_of(id, std::slice::from_ref(&invitation.id));
        }
        self.refuse_while_signing_in(id)?;
        if self.cancelled_before_run(id)?.is_some() {
            return Err(ServerError::FailedPrecondition(format!(
                "onboarding {id} was cancelled before its run began; it cannot go on (a new \
                 invitation starts a new onboarding)"
            )));
        }
        // A run that no sign-in can change (running, or ended for good: the in-memory
        // sign-in is gone after a restart) is refused for its state, as Provision with a
        // sign-in would be; "sign in again" would send the caller to a SignIn that refuses it.
        let run = self.app.engine().get(id)?;
        if let Some(o) = &run {
            let what = match o.status {
                Status::Running | Status::Cancelling => {
                    Some("it is already running; watch it instead")
                }
                Status::Completed | Status::Cancelled => Some("it cannot be provisioned again"),
                Status::Failed | Status::AwaitingAdmin => None,
            };
            if let Some(what) = what {
                return Err(provision::ProvisionError::InvalidState {
                    id: id.to_owned(),
                    state: o.status.as_str().into(),
                    what: what.into(),
                }
                .into());
            }
        }
        // An id no sign-in ever made (no link to an invitation, no run) does not exist.
        if self.invitation_of(id)?.is_empty() && run.is_none() {
            return Err(ServerError::NotFound(format!("no onboarding {id:?}")));
        }
        Err(ServerError::NoSignIn(format!(
            "onboarding {id} has no signed-in admin; sign in (again) first"
        )))
    }

    /// `e`, after dropping the held sign-in of onboarding `id` when Microsoft no longer
    /// accepts it (a claims challenge, a renewal refused): it can never succeed again, and
    /// without it the same invitation may sign in again (`sign_in_again`), as the error's
    /// SIGN_IN_AGAIN / CONDITIONAL_ACCESS detail tells the caller to.
    pub(super) fn drop_refused_sign_in(
        &self,
        id: &str,
        e: provision::ProvisionError,
    ) -> provision::ProvisionError {
        if e.cause() == provision::FailureCause::SignInAgain && self.sessions().remove(id).is_some()
        {
            tracing::info!(onboarding_id = %id, "Microsoft refused the held sign-in; dropped, so the invitation may sign in again");
        }
        e
    }

    /// Lists `id` as signing in with invitation `invitation_id` until the guard is dropped.
    pub(super) fn signing_in(&self, id: &str, invitation_id: &str) -> SigningInGuard {
        let entry = SigningIn {
            invitation_id: invitation_id.to_owned(),
            started_ms: now_ms(),
        };
        lock(&self.signing_in).insert(id.to_owned(), entry);
        SigningInGuard {
            map: self.signing_in.clone(),
            id: id.to_owned(),
        }
    }

    /// The invitation signing in to `id`, while its sign-in is under way.
    pub(super) fn signing_in_with(&self, id: &str) -> Option<String> {
        lock(&self.signing_in)
            .get(id)
            .map(|s| s.invitation_id.clone())
    }

    /// `id` as GetOnboarding shows it while its sign-in is under way.
    pub(super) fn signing_in_info(&self, id: &str) -> Option<pb::OnboardingInfo> {
        lock(&self.signing_in).get(id).map(|s| s.info(id))
    }

    /// The onboardings without a run, as GetOnboarding shows each: signed in (their tenant
    /// known), signing in (no tenant yet), and cancelled before their run (durable marks). A
    /// session wins over the sign-in that made it, listed until the SignIn call lets go of it.
    pub(super) fn before_run_infos(&self) -> Result<Vec<pb::OnboardingInfo>> {
        let mut infos: Vec<_> = self
            .sessions()
            .iter()
            .map(|(id, s)| signed_in_info(id, s, s.invitation.id.clone()))
            .collect();
        let signed_in: HashSet<String> = infos.iter().map(|i| i.onboarding_id.clone()).collect();
        let signing_in: Vec<_> = lock(&self.signing_in)
            .iter()
            .filter(|(id, _)| !signed_in.contains(*id))
            .map(|(id, s)| s.info(id))
            .collect();
        infos.extend(signing_in);
        for (id, at) in self.all_cancelled_before_run()? {
            infos.push(self.cancelled_info(&id, at)?);
        }
        Ok(infos)
    }

    /// ListOnboardings' rows for the onboardings without a run in `state` (unspecified: any)
    /// and of `tenant` (`None`: any; signing in and cancelled before the run have none).
    pub(super) fn listed_before_run(
        &self,
        state: pb::OnboardingState,
        tenant: Option<&str>,
    ) -> Result<Vec<Listed>> {
        use pb::OnboardingState as S;
        if !matches!(
            state,
            S::Unspecified | S::SigningIn | S::SignedIn | S::Cancelled
        ) {
            return Ok(Vec::new());
        }
        let mut rows = Vec::new();
        for info in self.before_run_infos()? {
            if (state == S::Unspecified || info.state() == state)
                && tenant.is_none_or(|t| t.eq_ignore_ascii_case(&info.tenant_id))
                && self.app.engine().get(&info.onboarding_id)?.is_none()
            {
                rows.push(Listed::BeforeRun(Box::new(info)));
            }
        }
        Ok(rows)
    }

    /// Refuses a change to `id` while its sign-in is under way.
    pub(super) fn refuse_while_signing_in(&self, id: &str) -> Result<()> {
        if self.signing_in_with(id).is_some() && self.sessions().get(id).is_none() {
            return Err(ServerError::FailedPrecondition(format!(
                "onboarding {id} is still signing in: Plan, Provision, CancelOnboarding and \
                 IssueHandOffLink wait for the SignIn call's SignedIn event (to abandon the sign-in, end the SignIn \
                 call)"
            )));
        }
        Ok(())
    }

    /// Whether `id` has no run yet but is signing in or signed in.
    pub(super) fn is_before_run(&self, id: &str) -> Result<bool> {
        Ok(matches!(self.before_run(id)?, BeforeRun::Waiting))
    }

    /// Where an onboarding a Watch waits on stands.
    pub(super) fn before_run(&self, id: &str) -> Result<BeforeRun> {
        let engine = self.app.engine();
        if engine.get(id)?.is_some() {
            return Ok(BeforeRun::Began);
        }
        if self.sessions().contains_key(id) || lock(&self.signing_in).contains_key(id) {
            return Ok(BeforeRun::Waiting);
        }
        // The run may have begun between the two looks (Provision takes the session).
        Ok(if engine.get(id)?.is_some() {
            BeforeRun::Began
        } else {
            BeforeRun::Ended
        })
    }

    /// `id` as GetOnboarding shows it once it was cancelled before its run.
    pub(super) fn cancelled_info(&self, id: &str, at_ms: i64) -> Result<pb::OnboardingInfo> {
        let invitation_id = self.invitation_of(id)?;
        Ok(pb::OnboardingInfo {
            onboarding_id: id.to_owned(),
            invitation_id,
            state: pb::OnboardingState::Cancelled.into(),
            created_at: super::convert::began_at(id, Some(at_ms)),
            updated_at: Some(crate::clock::timestamp(at_ms)),
            ..Default::default()
        })
    }
}

/// Signed-in onboarding `id` (session `s`, of invitation `invitation_id`) as GetOnboarding and
/// ListOnboardings show it.
pub(super) fn signed_in_info(id: &str, s: &Session, invitation_id: String) -> pb::OnboardingInfo {
    pb::OnboardingInfo {
        onboarding_id: id.to_owned(),
        invitation_id,
        tenant_id: s.admin.tenant_id.clone(),
        state: pb::OnboardingState::SignedIn.into(),
        created_at: super::convert::began_at(id, s.invitation.used_at_ms),
        updated_at: Some(crate::clock::timestamp(s.signed_in_ms)),
        ..Default::default()
    }
}

/// One row of ListOnboardings before its page is built: a run is read further (its events, its
/// invitation) only when the page holds it.
pub(super) enum Listed {
    /// An onboarding whose run began, from the engine's store.
    Run(Box<Onboarding>),
    /// One signing in or signed in (from memory) or cancelled before its run (from its mark),
    /// as GetOnboarding answers it.
    BeforeRun(Box<pb::OnboardingInfo>),
}

impl Listed {
    /// The onboarding id, by which the list is ordered (UUIDv7: by creation).
    pub(super) fn id(&self) -> &str {
        match self {
            Listed::Run(o) => &o.id,
            Listed::BeforeRun(info) => &info.onboarding_id,
        }
    }
}

/// Onboarding `id` signed in once (it is linked to `invitation_id`) but holds no sign-in and has
/// no run: the server restarted, or Microsoft refused the sign-in it held. Nothing can be shown
/// or followed until the admin signs in again, as Plan answers.
pub(super) fn sign_in_lost(id: &str, invitation_id: &str) -> ServerError {
    ServerError::NoSignIn(format!(
        "onboarding {id} has no signed-in admin and no run yet (the server restarted, or \
         Microsoft refused the sign-in it held); sign in again with invitation {invitation_id}"
    ))
}
