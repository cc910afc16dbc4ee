//! Idempotent creates (AEP-155): a CreateInvitation retried with the same idempotency key,
//! after its answer was lost, gets the invitation the first call made, with the same token,
//! link and email, instead of a second invitation and a second email to the customer.
//!
//! Nothing is stored for it beyond the record's key and request digest. A keyed create's token
//! is derived from the server's token key, the caller and the key ([`TokenKey::mint_for`]), so
//! a retry derives the same token and finds the invitation by the token hash the store keeps
//! anyway; the digest of the request refuses a retry that asks for something else. The key is
//! honoured for as long as the invitation is kept and the token key stays the same.
//!
//! [`TokenKey::mint_for`]: crate::token::TokenKey::mint_for

use onboard_core::audit::{Action, Phase};
use onboard_core::time::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{InvitationError, Result};
use crate::token::MintedToken;
use crate::{Created, InvitationRecord, Invitations, NewInvitation, entry};

/// The longest key accepted, in bytes (a UUID is 36).
pub const MAX_KEY_BYTES: usize = 128;

/// What a keyed create keeps on its record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Idempotency {
    /// The caller's key.
    pub key: String,
    /// SHA-256 (hex) of the request as it was made ([`request_digest`]): a retry must ask
    /// for the same.
    pub request_sha256: String,
}

/// The rule a key must meet: 1 to [`MAX_KEY_BYTES`] bytes of visible ASCII (no blank, no
/// control character), e.g. a UUID.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "at most {MAX_KEY_BYTES} bytes of visible ASCII (no blanks or control characters), \
             e.g. a UUID"
        ));
    }
    Ok(())
}

/// The digest of everything a create asks for (the key aside), as the caller sent it.
pub fn request_digest(req: &NewInvitation) -> String {
    let canonical = json!([
        req.customer,
        req.service_id,
        req.provider_name,
        req.platform_server_name,
        req.platform_version,
        req.profile,
        req.admin_upn,
        req.valid_for.map(|d| d.as_millis().to_string()),
        req.tenant,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

impl Invitations {
    /// A keyed create: the invitation the key made, when there is one (a retry), else
    /// `record` with the key. One keyed create at a time, so a retry racing its first call
    /// finds its invitation.
    pub(crate) async fn create_keyed(
        &self,
        actor: &str,
        keyed: Idempotency,
        record: InvitationRecord,
    ) -> Result<Created> {
        let _one = self.keyed.lock().await;
        let minted = self.key.mint_for(actor, &keyed.key)?;
        match self.store.get_by_token_hash(&minted.hash) {
            Ok(made) => self.replay(actor, made, minted, &keyed).await,
            Err(InvitationError::NotFound(_)) => {
                let record = InvitationRecord {
                    idempotency: Some(keyed),
                    ..record
                };
                self.insert_minted(actor, record, minted).await
            }
            Err(e) => Err(e),
        }
    }

    /// The answer to a retry: the invitation `made` with its token again, if the retry asks
    /// for what the first call did and the invitation is still pending. Audited (intent,
    /// outcome), as the token is handed out again.
    async fn replay(
        &self,
        actor: &str,
        made: InvitationRecord,
        minted: MintedToken,
        keyed: &Idempotency,
    ) -> Result<Created> {
        if made.idempotency.as_ref() != Some(keyed) {
            return Err(InvitationError::invalid(
                "idempotency_key",
                format!(
                    "already used for a different request (invitation {}); a new invitation \
                     needs a new key",
                    made.id
                ),
            ));
        }
        made.require_pending(now_ms()).map_err(|e| {
            InvitationError::FailedPrecondition(format!(
                "{e}: it was made with this idempotency key; a new invitation needs a new key"
            ))
        })?;
        let mut detail = crate::detail(&made);
        detail["replayed"] = json!(true);
        let entry = |phase| {
            entry(Action::InvitationCreate, phase, actor, &made, None)
                .with_detail("invitation", detail.clone())
        };
        self.record(entry(Phase::Intent)).await?;
        self.record(entry(Phase::Succeeded)).await?;
        Ok(self.created(made, minted.token))
    }
}
