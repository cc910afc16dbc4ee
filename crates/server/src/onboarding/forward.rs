//! Provision and Watch streams: engine events mapped to proto events through a bounded buffer,
//! ended by the run, the caller, a slow reader, the shutdown, a revoked invitation, (a Watch
//! begun before the run) the onboarding ending without a run (`pending.rs`), or (a repeated
//! Provision, `start.rs`) the start it follows failing.

use onboard_core::audit::{Action, Phase};
use onboard_proto::v1 as pb;
use provision::{EventKind, EventStream};
use secrecy::SecretString;
use tokio::time::MissedTickBehavior;
use tokio_stream::StreamExt;
use tonic::Request;

use super::capability::{Access, CustomerRpc};
use super::convert::EventMapper;
use super::pending::{BEFORE_RUN_POLL, BeforeRun, sign_in_lost};
use super::{OnboardingService, send_err};
use crate::BoxStream;
use crate::error::{Result, ServerError};
use crate::sealing::Delivery;

impl OnboardingService {
    /// Watch: the events from `from_event`, replayed then live. Before the run (signing in or
    /// signed in) there are none yet: the stream waits for the run's.
    pub(super) async fn watch(
        &self,
        mut req: Request<pb::WatchRequest>,
    ) -> Result<BoxStream<pb::ProvisionEvent>> {
        let Access { actor, invitation } = self.access(&mut req, CustomerRpc::Watch)?;
        let r = req.into_inner();
        let engine = self.app.engine();
        let record = engine.get(&r.onboarding_id)?;
        let ahead = record.is_none() && self.is_before_run(&r.onboarding_id)?;
        if record.is_none() && !ahead && self.cancelled_before_run(&r.onboarding_id)?.is_some() {
            return Err(ServerError::FailedPrecondition(format!(
                "onboarding {} was cancelled before its run began: it has no events",
                r.onboarding_id
            )));
        }
        if record.is_none() && !ahead {
            let invitation_id = self.invitation_of(&r.onboarding_id)?;
            if !invitation_id.is_empty() {
                return Err(sign_in_lost(&r.onboarding_id, &invitation_id));
            }
        }
        if record.is_some() || ahead {
            // A finished onboarding has no next event; any other has at most one next: a
            // `from_event` further on would wait for ever, its terminal event included.
            let finished = record.is_some_and(|o| {
                matches!(
                    o.status,
                    provision::Status::Completed | provision::Status::Cancelled
                )
            });
            let last = engine.event_count(&r.onboarding_id)?;
            let end = if finished { last } else { last + 1 };
            if r.from_event > end {
                let state = if finished {
                    "finished with"
                } else {
                    "so far at"
                };
                return Err(ServerError::OutOfRange(format!(
                    "onboarding {} is {state} {last} events; from_event {} is past the end \
                     (at most {end})",
                    r.onboarding_id, r.from_event
                )));
            }
        }
        let from = r.from_event.max(1);
        let stream = if ahead {
            engine.watch_ahead(&r.onboarding_id, from)?
        } else {
            engine.watch(&r.onboarding_id, from)?
        };
        self.record(
            Self::entry(
                &actor,
                Action::OnboardingWatch,
                Phase::Succeeded,
                &r.onboarding_id,
            )
            .with_detail("from_event", r.from_event),
        )
        .await?;
        let source = match ahead {
            true => Source::BeforeRun(r.onboarding_id),
            // The events before `from` that a later one folds in (a step's failure, named by
            // the run's `Failed`): the mapper has seen them as a Watch from 1 would have.
            false => Source::Stored(EventMapper::primed(
                engine
                    .events(&r.onboarding_id)?
                    .iter()
                    .take_while(|e| e.seq < from),
            )),
        };
        Ok(self.forward(stream, None, invitation, source))
    }

    /// Maps engine events to proto events until the run ends, the caller leaves or is too slow
    /// (bounded buffer, `[limits]`), the server stops (graceful shutdown waits for open
    /// streams, so they must end), or the caller's invitation is revoked.
    /// With `secret_to` (the operator that called Provision), a Completed event carrying the
    /// secret is the hand-over, audited as ClaimSecret's is: `secret.hand_over` intent, the
    /// claim, the event, then succeeded (or failed when another claimant won or the stream
    /// closed before the event entered it, the claim given back). `source` says where `events` come from and what follows
    /// when they stop.
    pub(super) fn forward(
        &self,
        mut events: EventStream,
        secret_to: Option<(String, Delivery)>,
        invitation: Option<String>,
        source: Source,
    ) -> BoxStream<pb::ProvisionEvent> {
        let (mut before_run, mut run_of, mut starting, mut mapper) = match source {
            Source::Stored(mapper) => (None, None, None, mapper),
            Source::BeforeRun(id) => (Some(id), None, None, EventMapper::default()),
            Source::Run(id) => (None, Some(id), None, EventMapper::default()),
            Source::Starting(id, follow) => {
                (None, None, Some((id, follow)), EventMapper::default())
            }
        };
        let (tx, stream) = self.app.guards().stream();
        let stop = self.app.shutdown();
        let revocations = self.app.guards().revocations();
        let app = self.app.clone();
        let svc = self.clone();
        tokio::spawn(async move {
            // Ends once the caller's invitation is revoked, at once if it already is
            // (`revoked.rs`); an operator's stream has none.
            let revoked = async {
                match &invitation {
                    Some(id) => super::revoked::until_revoked(&app, id, revocations).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(revoked);
            // The last event sent, and whether it ended what this stream follows.
            let (mut last_seq, mut ended) = (0u64, false);
            let mut poll = tokio::time::interval(BEFORE_RUN_POLL);
            poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = poll.tick(), if before_run.is_some() => {
                        let id = before_run.as_deref().unwrap_or_default();
                        match svc.before_run(id) {
                            Ok(BeforeRun::Waiting) => {}
                            Ok(BeforeRun::Began) => before_run = None,
                            Ok(BeforeRun::Ended) => {
                                send_err(&tx, ServerError::FailedPrecondition(format!(
                                    "onboarding {id} ended before its run began (the sign-in \
                                     did not finish, or the signed-in onboarding was cancelled)"
                                ))).await;
                                return;
                            }
                            Err(e) => {
                                send_err(&tx, e).await;
                                return;
                            }
                        }
                    }
                    r = started(&mut starting), if starting.is_some() => {
                        let Some((id, follow)) = starting.take() else { continue };
                        match r {
                            Ok(()) => match app.engine().watch(&id, follow.from) {
                                Ok(stored) => events = stored,
                                Err(err) => {
                                    send_err(&tx, err.into()).await;
                                    return;
                                }
                            },
                            // The call it repeats was refused: the same refusal.
                            Err(Some(refused)) => {
                                send_err(&tx, ServerError::Made(refused)).await;
                                return;
                            }
                            Err(None) => {
                                send_err(&tx, ServerError::Unavailable(format!(
                                    "the Provision call this one repeats ended before it started \
                                     onboarding {id}'s run; call Provision again"
                                ))).await;
                                return;
                            }
                        }
                    }
                    () = stop.recv() => {
                        send_err(&tx, ServerError::Unavailable(
                            "the server is shutting down; Watch resumes where this ended".into(),
                        )).await;
                        return;
                    }
                    e = &mut revoked => {
                        send_err(&tx, e).await;
                        return;
                    }
                    next = events.next(), if starting.is_none() => {
                        let Some(e) = next else {
                            // A run's own channel closes without a final event when a cancel
                            // stops the run: the onboarding's stored events (the undo's
                            // included) follow from there.
                            if let Some(id) = run_of.take().filter(|_| !ended) {
                                match app.engine().watch(&id, last_seq + 1) {
                                    Ok(stored) => {
                                        events = stored;
                                        continue;
                                    }
                                    Err(err) => {
                                        send_err(&tx, err.into()).await;
                                        return;
                                    }
                                }
                            }
                            // Events stopped before the end (the store could not be read after
                            // the stream fell behind): never a clean end that looks like one.
                            if !ended {
                                send_err(&tx, ServerError::Unavailable(
                                    "the onboarding's events stopped before it ended; Watch \
                                     again from the event after the last one received"
                                        .into(),
                                )).await;
                            }
                            return;
                        };
                        last_seq = e.seq;
                        // Once the run handed off or ended, its channel's close ends this
                        // stream, whatever (if anything) it sent after that.
                        ended |= e.kind.is_terminal()
                            || matches!(e.kind, EventKind::AwaitingAdmin { .. });
                        let Some(mut p) = mapper.map(&e, secret_to.is_some()) else { continue };
                        // The secret goes out only once its claim is recorded, and only to the
                        // first claimant (a ClaimSecret may have won): exactly one caller ever
                        // receives it. Without the record it stays claimable by ClaimSecret.
                        // A caller already gone claims nothing; one whose stream closes (or
                        // stalls past the slow-reader bound) before the event enters it gives
                        // the claim back: a failed `send` dropped the value undelivered.
                        let mut claimed = None;
                        if let Some(pb::provision_event::Event::Completed(c)) = &mut p.event
                            && !c.secret.is_empty()
                            && let Some((actor, delivery)) = &secret_to
                        {
                            if tx.is_closed() {
                                return;
                            }
                            // Sealed (when asked) before the claim is recorded: nothing fails
                            // once it is; a failure here leaves the secret claimable.
                            let value = SecretString::from(std::mem::take(&mut c.secret));
                            match delivery.deliver(&value, &c.key_id) {
                                Ok((secret, sealed)) => (c.secret, c.sealed) = (secret, sealed),
                                Err(err) => {
                                    send_err(&tx, err).await;
                                    return;
                                }
                            }
                            let id = &e.onboarding_id;
                            match svc.claim_for_stream(id, actor, &c.key_id, delivery).await {
                                Some(entry) => claimed = Some(entry),
                                None => (c.secret, c.sealed) = (String::new(), None),
                            }
                        }
                        let sent = tx.send(Ok(p)).await.is_ok();
                        if let Some(entry) = claimed {
                            svc.hand_over_outcome(&e.onboarding_id, entry, sent).await;
                        }
                        if !sent {
                            return;
                        }
                    }
                }
            }
        });
        stream
    }
}

/// Where a stream's events come from, and what follows when they stop.
pub(super) enum Source {
    /// The onboarding's stored events, replayed then live (Watch, a repeated Provision): they
    /// end with the run's final event. The mapper has seen the events before the first.
    Stored(EventMapper),
    /// Nothing yet: the onboarding (this id) is signing in or signed in. The stream ends with
    /// FAILED_PRECONDITION if the onboarding ends without a run.
    BeforeRun(String),
    /// Nothing yet: a Provision call with the same idempotency key and caller starts this
    /// onboarding's run now (`start.rs`). Once it started, its events (from its first) follow,
    /// as `Stored`; if it does not start, the stream ends with the status that call got
    /// (UNAVAILABLE when it ended without one).
    Starting(String, super::start::Follow),
    /// The live events of the run Provision just started for this onboarding. If the run
    /// stops without a final event or a hand-off (a cancel aborted it), the stored events
    /// follow from the next index, so the caller still sees how it ended.
    Run(String),
}

/// How the start `starting` follows ended (never, without one).
async fn started(
    starting: &mut Option<(String, super::start::Follow)>,
) -> std::result::Result<(), Option<tonic::Status>> {
    match starting {
        Some((_, follow)) => follow.started().await,
        None => std::future::pending().await,
    }
}
