//! Provision and Watch streams: engine events mapped to proto events through a bounded buffer,
//! ended by the run, the caller, a slow reader, the shutdown or a revoked invitation.

use onboard_proto::v1 as pb;
use provision::EventStream;
use tokio_stream::StreamExt;

use super::convert::EventMapper;
use super::{OnboardingService, send_err};
use crate::BoxStream;
use crate::error::ServerError;

impl OnboardingService {
    /// Maps engine events to proto events until the run ends, the caller leaves or is too slow
    /// (bounded buffer, `[limits]`), the server stops (graceful shutdown waits for open
    /// streams, so they must end), or the caller's invitation is revoked.
    /// With `with_secret`, a Completed event carrying the secret is the hand-over: the claim
    /// is recorded once it was sent.
    pub(super) fn forward(
        &self,
        mut events: EventStream,
        with_secret: bool,
        invitation: Option<String>,
    ) -> BoxStream<pb::ProvisionEvent> {
        let (tx, stream) = self.app.guards().stream();
        let stop = self.app.shutdown();
        let mut revocations = self.app.guards().revocations();
        let app = self.app.clone();
        let svc = self.clone();
        tokio::spawn(async move {
            let mut mapper = EventMapper::default();
            let mut watching = invitation.is_some();
            loop {
                tokio::select! {
                    () = stop.recv() => {
                        send_err(&tx, ServerError::Unavailable(
                            "the server is shutting down; Watch resumes where this ended".into(),
                        )).await;
                        return;
                    }
                    r = revocations.recv(), if watching => {
                        use tokio::sync::broadcast::error::RecvError;
                        let inv = invitation.as_deref().unwrap_or_default();
                        let hit = match r {
                            Ok(id) => id == inv,
                            // Missed some: look at the record itself.
                            Err(RecvError::Lagged(_)) => app
                                .invitations()
                                .get(inv)
                                .is_ok_and(|i| i.revoked_at_ms.is_some()),
                            Err(RecvError::Closed) => {
                                watching = false;
                                false
                            }
                        };
                        if hit {
                            send_err(&tx, ServerError::PermissionDenied(format!(
                                "invitation {inv} has been revoked"
                            ))).await;
                            return;
                        }
                    }
                    next = events.next() => {
                        let Some(e) = next else { return };
                        let Some(mut p) = mapper.map(&e, with_secret) else { continue };
                        // The secret goes out only once its claim is recorded, and only to the
                        // first claimant (a ClaimSecret may have won): exactly one caller ever
                        // receives it. Without the record it stays claimable by ClaimSecret.
                        if let Some(pb::provision_event::Event::Completed(c)) = &mut p.event
                            && !c.secret.is_empty()
                        {
                            match svc.claim_once(&e.onboarding_id).await {
                                Ok(true) => {}
                                Ok(false) => c.secret.clear(),
                                Err(err) => {
                                    tracing::error!(error = %err, "the secret hand-over could not be recorded; not sent");
                                    c.secret.clear();
                                }
                            }
                        }
                        if tx.send(Ok(p)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        stream
    }
}
