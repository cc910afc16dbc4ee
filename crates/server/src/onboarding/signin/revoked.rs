//! An invitation revoked while its sign-in runs (`Invitations.RevokeInvitation`), pending or
//! used: the SignIn stream ends at once with PERMISSION_DENIED, as its holder's other streams
//! do (`forward.rs`), and a sign-in the admin finishes after that counts for nothing. `finish`
//! looks again before it redeems or keeps anything, so a revocation the stream did not hear of
//! leaves no session, no day-two admin session and no `succeeded` entry either.

use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::Attempt;
use crate::error::{Result, ServerError};

/// The refusal of a revoked invitation's holder, as on its other calls.
pub(super) fn revoked(invitation_id: &str) -> ServerError {
    ServerError::PermissionDenied(format!("invitation {invitation_id} has been revoked"))
}

impl Attempt {
    /// PERMISSION_DENIED when the invitation has been revoked (as its record says now).
    pub(super) fn refuse_if_revoked(&self) -> Result<()> {
        let inv = self.svc.app.invitations().get(&self.invitation.id)?;
        match inv.revoked_at_ms {
            Some(_) => Err(revoked(&inv.id)),
            None => Ok(()),
        }
    }

    /// Ends, with the refusal, once the invitation is revoked: at once if it is already (the
    /// record is read after `revocations` was subscribed, so none falls in between), or when
    /// `revocations` names it.
    pub(super) async fn revoked(&self, mut revocations: Receiver<String>) -> ServerError {
        if let Err(e) = self.refuse_if_revoked() {
            return e;
        }
        loop {
            match revocations.recv().await {
                Ok(id) if id == self.invitation.id => return revoked(&id),
                Ok(_) => {}
                // Missed some: the record says whether this one was.
                Err(RecvError::Lagged(_)) => {
                    if let Err(e) = self.refuse_if_revoked() {
                        return e;
                    }
                }
                // No revocation can be announced any more; `finish` still looks.
                Err(RecvError::Closed) => return std::future::pending().await,
            }
        }
    }
}
