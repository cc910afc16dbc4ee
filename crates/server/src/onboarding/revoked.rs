//! An invitation revoked (`Invitations.RevokeInvitation`) while its holder has a stream open:
//! a SignIn, a Watch or a Provision ends at once with PERMISSION_DENIED, the refusal the
//! holder's other calls get (`capability.rs`). A sign-in also looks again before it redeems or
//! keeps anything (`signin::Attempt::finish`), so a revocation its stream did not hear of leaves
//! no session, no day-two admin session and no `succeeded` entry either.

use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use crate::App;
use crate::error::{Result, ServerError};

/// The refusal of a revoked invitation's holder.
pub(super) fn revoked(invitation_id: &str) -> ServerError {
    ServerError::PermissionDenied(format!("invitation {invitation_id} has been revoked"))
}

/// PERMISSION_DENIED when invitation `id` has been revoked (as its record says now).
pub(super) fn refuse_if_revoked(app: &App, id: &str) -> Result<()> {
    match app.invitations().get(id)?.revoked_at_ms {
        Some(_) => Err(revoked(id)),
        None => Ok(()),
    }
}

/// Ends, with the refusal, once invitation `id` is revoked: at once if it is already (the
/// record is read after `revocations` was subscribed, so none falls in between), or when
/// `revocations` names it; never once no revocation can be announced any more.
pub(super) async fn until_revoked(
    app: &App,
    id: &str,
    mut revocations: Receiver<String>,
) -> ServerError {
    if let Err(e) = refuse_if_revoked(app, id) {
        return e;
    }
    loop {
        match revocations.recv().await {
            Ok(named) if named == id => return revoked(id),
            Ok(_) => {}
            // Missed some: the record says whether this one was.
            Err(RecvError::Lagged(_)) => {
                if let Err(e) = refuse_if_revoked(app, id) {
                    return e;
                }
            }
            Err(RecvError::Closed) => return std::future::pending().await,
        }
    }
}
