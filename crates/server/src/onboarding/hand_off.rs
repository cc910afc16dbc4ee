//! The hand-off to a privileged admin, the service's side (the engine's is
//! `provision::hand_off`): the single-use link a Global Administrator or Privileged Role
//! Administrator opens to finish an onboarding that waits (`IssueHandOffLink`), and the timer
//! that undoes the onboardings nobody finished in time.
//!
//! The link is an invitation with `hand_off_of` set: the same token rules (hashed at rest,
//! single use, MAC-checked), the same wizard, and `invitation:<id>` as the audit actor of
//! everything its holder does. Its SignIn joins the waiting onboarding instead of starting one
//! (`signin.rs`), and its Provision continues the run with that admin's token.
//!
//! A link lives as long as the wait it was issued for, and no longer (`invitations.proto`,
//! INVITATION_STATE_REVOKED): a newer link replaces it, pending or used (its holder signed in
//! but did not finish), and when the wait ends otherwise than through it ([`wait_ended`]) it is
//! revoked, `invitation.revoke` with a reason saying how the wait ended, by whoever ended it: a
//! CancelOnboarding (the canceller; not the canceller's own link), the expiry's undo
//! (`system:hand-off-expired`; a link nobody signed in with has expired with the wait by then,
//! and is left so), the grants seen from Microsoft's admin-consent page
//! (`entra:admin-consent`) or another Provision that went on with the run (its caller). Who
//! ended the wait, and how, is on the onboarding's record (`provision::store::WaitEnd`), noted
//! as it ends; a record written before that was noted, or a link of a wait since replaced, is
//! revoked as [`ENDED_ACTOR`]. Its holder is then cut off as any revoked invitation's: open
//! streams end, calls are PERMISSION_DENIED, its sign-in is not kept. The link whose holder's
//! Provision continued the run is not touched: it stays USED, for Watch and GetOnboarding as the
//! capability table allows.
//!
//! Ordering: a link is issued and revoked under the revocation lock (`Guards::revoking`), and
//! IssueHandOffLink looks at the wait again under it, so it never leaves a link for an
//! onboarding that does not wait; a Provision claims its start under the lock's other side, so
//! a reissue either revokes the link first (the holder's Provision is then refused) or finds
//! the start claimed and is refused. A wait's end whose revocation failed, or was cut off by a
//! stop, is made good by [`sweep`] at start-up and on every tick of the expiry loop.

use std::collections::BTreeMap;
use std::time::Duration;

use invitations::InvitationRecord;
use onboard_core::HookAction;
use onboard_core::time::{ms_of, parse};
use onboard_proto::v1 as pb;
use provision::store::{WaitEnd, WaitEndHow};
use provision::{HandOff, Onboarding, Status};
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
        waiting(&id, &o)?;
        let first = invitations.get(&self.invitation_of(&id)?)?;
        // A new link revokes the one before it, also once its holder signed in: ordered with
        // sign-ins as any revocation, and its holder cut off as any revoked invitation's.
        let mut replaced = Vec::new();
        // A test holds the call here, between the first look at the wait and the lock.
        let _ = self
            .app
            .engine()
            .at_hook_point(&id, "hand_off_link:revoking");
        let created: Result<_> = async {
            let _revoking = self.app.guards().revoking().await;
            // Looked at again under the lock: a wait that ended meanwhile (its links revoked
            // under it after the record said so) gets no new link, nor one whose holder's
            // Provision is going on with the run (its start is claimed under the lock's other
            // side, `start.rs`): a link is never left for an onboarding that does not wait.
            let hand_off = self.still_waits(&id)?;
            let expires_ms = parse(&hand_off.expires_at).map_or(0, ms_of);
            let created = invitations
                .create_hand_off(&actor, &id, &first, expires_ms, |r| {
                    self.app.guards().revoked(&r.id);
                    replaced.push(r.id.clone());
                })
                .await?;
            Ok((created, hand_off, expires_ms))
        }
        .await;
        self.drop_sessions_of(&id, &replaced);
        let (created, hand_off, expires_ms) = created?;
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

    /// The wait of onboarding `id` as it is now, with the revocation lock held: refused while a
    /// Provision starts it or its run goes on (looked at in that order, the record last: a
    /// start that ends meanwhile has put the record out of the wait first).
    fn still_waits(&self, id: &str) -> Result<HandOff> {
        let engine = self.app.engine();
        if self.starts.is_starting(id) || engine.refuse_running(id).is_err() {
            return Err(ServerError::FailedPrecondition(format!(
                "onboarding {id} is being provisioned now (a privileged admin's Provision, or \
                 another, is going on with it), so it no longer waits for one; only a waiting \
                 onboarding has a hand-off link"
            )));
        }
        match engine.get(id)? {
            Some(o) => waiting(id, &o),
            None => Err(ServerError::NotFound(format!("no onboarding {id:?}"))),
        }
    }
}

/// Onboarding `o`'s wait for a privileged admin, or FAILED_PRECONDITION when it does not wait.
fn waiting(id: &str, o: &Onboarding) -> Result<HandOff> {
    match &o.hand_off {
        Some(h) if waits(o) => Ok(h.clone()),
        _ => Err(ServerError::FailedPrecondition(format!(
            "onboarding {id} is {}, not waiting for a privileged admin; only a waiting one has \
             a hand-off link",
            o.status.as_str()
        ))),
    }
}

/// Whether onboarding `o` waits for a privileged admin (its wait's end not noted).
fn waits(o: &Onboarding) -> bool {
    o.status == Status::AwaitingAdmin
        && o.hand_off
            .as_ref()
            .is_some_and(|h| h.ended.is_none() && h.ended_by.is_none())
}

/// The least time between two looks for admin consents, however often admins come back from
/// Microsoft's page (`/wizard/consented` nudges the loop, and needs no credential).
const NUDGE_GAP: Duration = Duration::from_secs(2);

/// Undoes, as `system:hand-off-expired`, every onboarding whose wait for a privileged admin
/// has expired; checks at a quarter of `limits.hand_off_wait_secs` (1 s to 60 s) until the
/// server stops, and once at start-up (a wait that expired while the server was down). While a
/// wait offers Microsoft's admin-consent page it also looks for the grants made there every
/// `limits.consent_poll_secs`, and at once (but [`NUDGE_GAP`] after the last look) when an admin
/// comes back from that page. Each check (the first at start-up) also sweeps the hand-off links
/// a wait's end left live ([`sweep`]); with hand-offs off, once at start-up.
pub(crate) fn spawn_expiry(app: &App) {
    let limits = &app.config().limits;
    if limits.hand_off_wait_secs == 0 {
        // No wait begins; links of waits from before, when there were, still end.
        let a = app.clone();
        let _ = app.shutdown().spawn(async move { sweep(&a).await });
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
                // The links of the waits that expired now (also of one whose undo began but
                // failed: its wait has ended all the same, its record says how), and those a
                // wait's end left live (its revocation failed, or the process stopped before
                // it): at start-up and on every tick.
                sweep(&a).await;
                next_expiry = tokio::time::Instant::now() + every;
            }
            let checked = tokio::time::Instant::now();
            match engine.check_admin_consents().await {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(onboardings = ?ids, "admin consent seen; onboardings moved on");
                    // A directory role still left keeps the wait, and its links.
                    for id in ids {
                        wait_ended(&a, &id).await;
                    }
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

/// The `reason` of the links revoked when a CancelOnboarding ends the wait.
const CANCELLED: &str =
    "the onboarding's wait for a privileged admin ended: the onboarding was cancelled";
/// The `reason` of the links revoked when the wait expires (and the onboarding is undone).
const EXPIRED: &str =
    "the onboarding's wait for a privileged admin ended: nobody finished it in time";
/// The `reason` of the links revoked when the grants made on Microsoft's admin-consent page
/// leave nothing to wait for.
const CONSENTED: &str = "the onboarding's wait for a privileged admin ended: the permissions were \
                         granted on Microsoft's admin-consent page, and the run goes on";
/// The `reason` of the links revoked when another Provision went on with the run.
const PROVISIONED: &str = "the onboarding's wait for a privileged admin ended: another Provision \
                           went on with the run";
/// The audit actor of the links revoked when the record does not say who ended their wait
/// (written before it did, or a wait since replaced by a newer one).
pub(crate) const ENDED_ACTOR: &str = "system:hand-off-ended";

/// The `reason` of those.
const ENDED: &str = "the onboarding's wait for a privileged admin that this link was issued for \
                     ended: the onboarding no longer waits for it";

/// Whether onboarding `id` has stopped waiting for a privileged admin (it runs, finished, was
/// cancelled or undone): a revoked hand-off link of it then has nothing left to do, and the
/// wizard says so rather than "ask for the current link", which it says while the onboarding
/// still waits (the link was replaced by a newer one, or withdrawn by itself). Judged by the
/// onboarding as it is now, not by who revoked the link: a link ended because the first admin's
/// own Provision went on with the run was revoked by that admin, yet nothing waits for it. An
/// onboarding that is gone waits for nobody; one that cannot be read counts as waiting (the
/// page then points to the colleague, who sees the onboarding), logged.
pub(crate) fn stopped_waiting(app: &App, id: &str) -> bool {
    match app.engine().get(id) {
        Ok(Some(o)) => !waits(&o),
        Ok(None) => true,
        Err(e) => {
            tracing::warn!(onboarding_id = %id, error = %e, "hand-off link's onboarding not read");
            false
        }
    }
}

/// What becomes of hand-off link `link` of onboarding `o` (`None`: no run), `started_by` the
/// actor of the Provision that started its last run: `None` while the wait it was issued for
/// lasts (the link's expiry is the wait's), and for the link whose holder went on with the run
/// or cancelled it; else revoked, as and for what the record says ended the wait
/// ([`provision::store::WaitEnd`]), or as [`ENDED_ACTOR`] when it does not say.
fn fate(
    link: &InvitationRecord,
    o: Option<&Onboarding>,
    started_by: Option<&str>,
) -> Option<(String, String)> {
    // A link is only issued for an onboarding that runs; none is judged without one.
    let o = o?;
    let holder = format!("invitation:{}", link.id);
    if started_by == Some(holder.as_str()) {
        return None;
    }
    let h = o.hand_off.as_ref();
    let its_wait = h
        .and_then(|h| parse(&h.expires_at))
        .is_some_and(|t| ms_of(t) == link.expires_at_ms);
    if its_wait && waits(o) {
        return None;
    }
    match h.and_then(|h| h.ended_by.as_ref()).filter(|_| its_wait) {
        Some(WaitEnd { actor, how }) => {
            let reason = match how {
                // A link holder who cancels keeps their own (as the one who went on with it).
                WaitEndHow::Provisioned | WaitEndHow::Cancelled if *actor == holder => {
                    return None;
                }
                WaitEndHow::Provisioned => PROVISIONED,
                WaitEndHow::Cancelled => CANCELLED,
                WaitEndHow::Expired => EXPIRED,
                WaitEndHow::Consented => CONSENTED,
            };
            Some((actor.clone(), reason.to_owned()))
        }
        None => Some((ENDED_ACTOR.to_owned(), ENDED.to_owned())),
    }
}

/// Announces that hand-off link `r` of onboarding `id` was revoked: its holder's open streams
/// end, and the capability check refuses their calls, as on any revocation
/// (`Invitations.RevokeInvitation`).
fn announce(app: &App, id: &str, r: &InvitationRecord) {
    app.guards().revoked(&r.id);
    let actor = r.revoked_by.as_deref().unwrap_or_default();
    tracing::info!(onboarding_id = %id, invitation_id = %r.id, actor, "hand-off link revoked");
}

/// Revokes the hand-off links of onboarding `id` whose wait ended ([`fate`], by the record as
/// it is now), or those of `only` among them. Ordered with sign-ins as any revocation: a
/// sign-in of the link finishing now is logged wholly before, or refused; and with
/// IssueHandOffLink, which looks at the wait under the same lock: a link it made before the
/// record said the wait ended is listed here, and after that it makes none.
async fn end_links(app: &App, id: &str, only: Option<&[String]>) -> Result<usize> {
    let _revoking = app.guards().revoking().await;
    let engine = app.engine();
    let o = engine.get(id)?;
    let started_by = engine.started_by(id)?;
    let revoke_as = |l: &InvitationRecord| fate(l, o.as_ref(), started_by.as_deref());
    let invitations = app.invitations();
    let revoked = |r: &InvitationRecord| announce(app, id, r);
    Ok(match only {
        Some(ids) => invitations.revoke_links(ids, revoke_as, revoked).await?,
        None => {
            invitations
                .revoke_hand_off_links(id, revoke_as, revoked)
                .await?
        }
    })
}

/// After onboarding `id`'s wait may have ended (a CancelOnboarding of it, its expiry, the grants
/// seen from Microsoft's admin-consent page): its links end, as and for what its record says
/// ended the wait ([`fate`]); nothing while it still waits. A failure is logged, not returned:
/// the wait has ended either way, and [`sweep`] revokes what is left at its next tick.
pub(super) async fn wait_ended(app: &App, id: &str) {
    // A test stops here, as a process stopping between the wait's end and the revocation.
    if app.engine().at_hook_point(id, "hand_off:links_end") == HookAction::Halt {
        return;
    }
    if let Err(e) = end_links(app, id, None).await {
        tracing::warn!(onboarding_id = %id, error = %e, "hand-off links not revoked; the next sweep tries again");
    }
}

/// Revokes every live hand-off link (pending, or used by a holder who signed in) whose wait
/// ended ([`fate`]) and that is not revoked yet: its revocation failed, or the process stopped
/// between the wait's end and it (a cancel cut off in its undo, an expiry or a consent seen just
/// before a crash). Only onboardings with such a link take the revocation lock.
pub(crate) async fn sweep(app: &App) {
    let links = match app.invitations().all_live_hand_off_links() {
        Ok(links) => links,
        Err(e) => {
            tracing::warn!(error = %e, "hand-off links not swept");
            return;
        }
    };
    let mut by_onboarding: BTreeMap<String, Vec<InvitationRecord>> = BTreeMap::new();
    for link in links {
        if let Some(id) = link.hand_off_of.clone() {
            by_onboarding.entry(id).or_default().push(link);
        }
    }
    let engine = app.engine();
    let mut over = Vec::new();
    for (id, links) in by_onboarding {
        let (o, started_by) = match (engine.get(&id), engine.started_by(&id)) {
            (Ok(o), Ok(s)) => (o, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(onboarding_id = %id, error = %e, "hand-off links not swept");
                continue;
            }
        };
        let ended: Vec<String> = (links.into_iter())
            .filter(|l| fate(l, o.as_ref(), started_by.as_deref()).is_some())
            .map(|l| l.id)
            .collect();
        if !ended.is_empty() {
            over.push((id, ended));
        }
    }
    for (id, links) in over {
        match end_links(app, &id, Some(&links)).await {
            Ok(n) if n > 0 => {
                tracing::info!(onboarding_id = %id, revoked = n, "hand-off links of an ended wait swept");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(onboarding_id = %id, error = %e, "hand-off links not swept"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An onboarding in `status` whose wait (expiring at 2030-01-01) ended as `ended_by` says.
    fn onboarding(status: Status, ended_by: Option<(&str, WaitEndHow)>) -> Onboarding {
        Onboarding {
            id: "o-1".into(),
            service_id: "dr-1".into(),
            tenant_id: "t".into(),
            app_name: "Sbc".into(),
            profile: "direct-routing".into(),
            status,
            client_id: None,
            app_object_id: None,
            sp_id: None,
            secret_key_id: None,
            secret_hint: None,
            secret_expires: None,
            grants: Default::default(),
            role_assignments: Default::default(),
            steps_done: vec![],
            error: None,
            created_at: String::new(),
            updated_at: String::new(),
            hand_off: Some(HandOff {
                rights: vec![],
                left: vec![],
                since: "2029-12-25T00:00:00Z".into(),
                expires_at: "2030-01-01T00:00:00Z".into(),
                first_actor: "invitation:first".into(),
                ended: None,
                ended_by: ended_by.map(|(actor, how)| WaitEnd {
                    actor: actor.into(),
                    how,
                }),
                admin_consent_url: None,
            }),
            admin_upn: String::new(),
        }
    }

    /// Hand-off link `id`, issued for the wait above (or, `older`, for one before it).
    fn link(id: &str, older: bool) -> InvitationRecord {
        let wait = parse("2030-01-01T00:00:00Z").map_or(0, ms_of);
        InvitationRecord {
            id: id.into(),
            customer: "Contoso".into(),
            service_id: "dr-1".into(),
            provider_name: String::new(),
            platform_server_name: String::new(),
            platform_version: String::new(),
            profile: "direct-routing".into(),
            admin_upn: String::new(),
            created_at_ms: 0,
            expires_at_ms: if older { wait - 1000 } else { wait },
            created_by: "invitation:first".into(),
            used_at_ms: None,
            onboarding_id: None,
            revoked_at_ms: None,
            revoked_by: None,
            hand_off_of: Some("o-1".into()),
            tenant: None,
            idempotency: None,
        }
    }

    fn actor_of(fate: Option<(String, String)>) -> Option<String> {
        fate.map(|(actor, _)| actor)
    }

    #[test]
    fn a_link_ends_as_its_waits_record_says_and_the_one_that_went_on_is_kept() {
        let first = Some("invitation:first");
        let waits = onboarding(Status::AwaitingAdmin, None);
        assert_eq!(fate(&link("l", false), Some(&waits), first), None);
        assert_eq!(fate(&link("l", false), None, first), None);
        // A link of a wait before this one ends, though the onboarding waits again.
        let older = actor_of(fate(&link("l", true), Some(&waits), first));
        assert_eq!(older.as_deref(), Some(ENDED_ACTOR));
        for (status, how, by, holder_kept) in [
            (Status::Cancelled, WaitEndHow::Cancelled, "operator", false),
            (
                Status::Cancelled,
                WaitEndHow::Expired,
                "system:hand-off-expired",
                false,
            ),
            (
                Status::Running,
                WaitEndHow::Consented,
                "entra:admin-consent",
                false,
            ),
            (
                Status::Running,
                WaitEndHow::Provisioned,
                "invitation:first",
                false,
            ),
            (
                Status::Cancelling,
                WaitEndHow::Cancelled,
                "invitation:l",
                true,
            ),
            (
                Status::Running,
                WaitEndHow::Provisioned,
                "invitation:l",
                true,
            ),
        ] {
            let o = onboarding(status, Some((by, how)));
            let got = actor_of(fate(&link("l", false), Some(&o), first));
            let want = (!holder_kept).then(|| by.to_owned());
            assert_eq!(got, want, "{status:?} {how:?} by {by}");
            // Another link of the same wait ends as the record says.
            let other = actor_of(fate(&link("m", false), Some(&o), first));
            assert_eq!(other.as_deref(), Some(by), "{status:?} {how:?} by {by}");
        }
        // A record from before who ended the wait was noted: the holder who started the last
        // run keeps theirs; any other link ends, neutrally.
        let legacy = onboarding(Status::Completed, None);
        let holder = Some("invitation:l");
        assert_eq!(fate(&link("l", false), Some(&legacy), holder), None);
        let other = actor_of(fate(&link("m", false), Some(&legacy), holder));
        assert_eq!(other.as_deref(), Some(ENDED_ACTOR));
    }
}
