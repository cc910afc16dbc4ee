//! Hand-off links: the invitations a privileged admin finishes a waiting onboarding with
//! (`hand_off_of` set), and their end. A link lives as long as the wait it was issued for: a
//! newer link replaces it, and the onboarding service revokes it when the wait ends otherwise
//! than through it (`invitations.proto`, INVITATION_STATE_REVOKED).

use onboard_core::time::now_ms;

use crate::error::{InvitationError, Result};
use crate::store::InvitationRecord;
use crate::{Created, Invitations};

/// The `reason` of a hand-off link's revocation when a newer link replaces it.
pub const REPLACED: &str = "replaced by a new hand-off link";

impl Invitations {
    /// A hand-off link for onboarding `onboarding_id` (started with invitation `from`, now
    /// waiting for a privileged admin), valid until `expires_at_ms`: single use like any
    /// invitation, for the same customer, service and profile, for whichever admin signs in.
    /// Earlier links for the same onboarding that still unlock it (pending, or used by a holder
    /// who signed in) are revoked first, each handed to `replaced` as soon as it is (one live
    /// link: the caller ends the replaced holders' streams and sign-ins); when one cannot be,
    /// no new link is made.
    pub async fn create_hand_off(
        &self,
        actor: &str,
        onboarding_id: &str,
        from: &InvitationRecord,
        expires_at_ms: i64,
        replaced: impl FnMut(&InvitationRecord),
    ) -> Result<Created> {
        let now = now_ms();
        if expires_at_ms <= now {
            return Err(InvitationError::FailedPrecondition(format!(
                "the wait of onboarding {onboarding_id} has already expired"
            )));
        }
        let replace = |_: &InvitationRecord| Some((actor.to_owned(), REPLACED.to_owned()));
        self.revoke_hand_off_links(onboarding_id, replace, replaced)
            .await?;
        let record = InvitationRecord {
            id: uuid::Uuid::now_v7().to_string(),
            customer: from.customer.clone(),
            service_id: from.service_id.clone(),
            provider_name: from.provider_name.clone(),
            platform_server_name: from.platform_server_name.clone(),
            platform_version: from.platform_version.clone(),
            profile: from.profile.clone(),
            admin_upn: String::new(),
            created_at_ms: now,
            expires_at_ms,
            created_by: actor.to_owned(),
            used_at_ms: None,
            onboarding_id: None,
            revoked_at_ms: None,
            revoked_by: None,
            hand_off_of: Some(onboarding_id.to_owned()),
            // The run's tenant is what the hand-off signs in at (the server's choice); the
            // original invitation's is kept for the record.
            tenant: from.tenant.clone(),
            idempotency: None,
        };
        let minted = self.key.mint()?;
        self.insert_minted(actor, record, minted).await
    }

    /// The hand-off links of onboarding `onboarding_id` that still unlock it: pending, or used
    /// by a holder who signed in (what [`InvitationRecord::require_revocable`] accepts). A
    /// record that cannot be read is logged and passed over (it unlocks nothing: every read of
    /// it fails), so it hides none of the others.
    pub fn live_hand_off_links(&self, onboarding_id: &str) -> Result<Vec<InvitationRecord>> {
        let now = now_ms();
        self.store.scan(|r| {
            r.hand_off_of.as_deref() == Some(onboarding_id) && r.require_revocable(now).is_ok()
        })
    }

    /// Every hand-off link, of any onboarding, that still unlocks it
    /// ([`Invitations::live_hand_off_links`]).
    pub fn all_live_hand_off_links(&self) -> Result<Vec<InvitationRecord>> {
        let now = now_ms();
        self.store
            .scan(|r| r.hand_off_of.is_some() && r.require_revocable(now).is_ok())
    }

    /// Revokes each hand-off link of onboarding `onboarding_id` that still unlocks it
    /// ([`Invitations::live_hand_off_links`]) and that `revoke_as` names an actor and a reason
    /// for ([`Invitations::revoke_links`]). Used when a newer link replaces them, and when the
    /// onboarding's wait ends otherwise than through them.
    pub async fn revoke_hand_off_links(
        &self,
        onboarding_id: &str,
        revoke_as: impl FnMut(&InvitationRecord) -> Option<(String, String)>,
        revoked: impl FnMut(&InvitationRecord),
    ) -> Result<usize> {
        let ids: Vec<String> = (self.live_hand_off_links(onboarding_id)?.into_iter())
            .map(|r| r.id)
            .collect();
        self.revoke_links(&ids, revoke_as, revoked).await
    }

    /// Revokes each of the invitations `ids` that `revoke_as` (shown the record as it is now)
    /// names an actor and a reason for, and hands each revoked to `revoked` as soon as it is (so
    /// a later failure leaves none unannounced). One revoked or expired meanwhile is passed
    /// over. One whose revocation fails after its record was changed (its outcome entry could
    /// not be written) is revoked all the same, and handed to `revoked` too: its holder is cut
    /// off. A failure does not stop the others: the first is returned once all were tried (the
    /// rest logged), else how many were revoked.
    pub async fn revoke_links(
        &self,
        ids: &[String],
        mut revoke_as: impl FnMut(&InvitationRecord) -> Option<(String, String)>,
        mut revoked: impl FnMut(&InvitationRecord),
    ) -> Result<usize> {
        let mut count = 0;
        let mut first = None;
        for id in ids {
            let decided = self.get(id).and_then(|link| {
                link.require_revocable(now_ms())?;
                Ok(revoke_as(&link))
            });
            let (actor, reason) = match decided {
                Ok(Some(how)) => how,
                Ok(None) => continue,
                // Revoked or expired since it was listed: nothing of it is left to end.
                Err(InvitationError::FailedPrecondition(_)) => continue,
                Err(e) => {
                    tracing::warn!(invitation_id = %id, error = %e, "hand-off link not read, so not revoked");
                    first.get_or_insert(e);
                    continue;
                }
            };
            match self.revoke(&actor, id, &reason).await {
                Ok(rec) => {
                    count += 1;
                    revoked(&rec);
                }
                Err(InvitationError::FailedPrecondition(_)) => {}
                Err(e) => {
                    if let Some(rec) = self.revoked_anyway(id) {
                        count += 1;
                        revoked(&rec);
                    }
                    tracing::warn!(invitation_id = %id, error = %e, "hand-off link revocation failed");
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }

    /// Invitation `id` as stored, when it is revoked: after a revocation that failed, whether
    /// its record was changed all the same (only its outcome entry failed), so its holder must
    /// be cut off as on any revocation.
    pub fn revoked_anyway(&self, id: &str) -> Option<InvitationRecord> {
        self.get(id).ok().filter(|r| r.revoked_at_ms.is_some())
    }
}
