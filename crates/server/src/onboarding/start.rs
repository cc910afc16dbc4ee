//! Provision: starts (or resumes) an onboarding's run, or, repeated with the same idempotency
//! key by the same caller, follows it.
//!
//! A repeat is known by its caller's tag (`marks::idempotency_tag`): the session's, the durable
//! `idempotency/` mark, and, while a start is under way, [`Starts`]. A call takes its place in
//! [`Starts`] (one start per onboarding) once it decides to start, and writes the mark before
//! the engine plans against Graph (seconds against Microsoft) and starts the run; so its repeat
//! (a client whose deadline passed meanwhile, calling again) follows that run in every window
//! instead of being refused as running, and a crash mid-start leaves a mark that a repeat after
//! the restart follows. Another key, none, or another caller is refused as running in that
//! window too, before the request's other fields are judged. A start that does not start the
//! run puts the mark back as it was, and ends the streams of the repeats that waited for it with
//! UNAVAILABLE (calling again starts it anew).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use onboard_core::audit::{Action, Phase};
use onboard_proto::v1 as pb;
use provision::{ProvisionError, ProvisionRequest};
use tokio::sync::watch;
use tonic::Request;

use super::capability::Access;
use super::forward::Source;
use super::{CustomerRpc, MAX_RECORDED_NAME, OnboardingService, marks, version};
use crate::BoxStream;
use crate::error::{Result, ServerError};
use crate::sealing::Delivery;

/// What a start came to: `None` while under way; then the run started, or the status its
/// call got.
type Outcome = Option<std::result::Result<(), tonic::Status>>;

/// Provision calls starting a run now, by onboarding id (in memory: a restart ends them, and
/// the mark written before the start stands for them).
#[derive(Clone, Default)]
pub(super) struct Starts(Arc<Mutex<HashMap<String, Starting>>>);

/// One start under way.
struct Starting {
    /// Its caller's tag; `None`: the call named no idempotency key (nothing repeats it).
    tag: Option<Vec<u8>>,
    /// The index of the first event of the run it starts.
    from: u64,
    /// How it ends.
    outcome: watch::Receiver<Outcome>,
}

/// A start under way that a repeat of its call follows.
pub(super) struct Follow {
    /// The index of the first event of the run it starts: a repeat follows that run, not the
    /// failed one it may resume.
    pub(super) from: u64,
    /// How the start ends.
    outcome: watch::Receiver<Outcome>,
}

impl Follow {
    /// Waits for the start to end: the run is under way, or the status the starting call got
    /// (`None`: that call ended before it had one).
    pub(super) async fn started(&mut self) -> std::result::Result<(), Option<tonic::Status>> {
        match self.outcome.wait_for(Option::is_some).await {
            Ok(o) => o.clone().unwrap_or(Ok(())).map_err(Some),
            Err(_) => Err(None),
        }
    }
}

/// A call's place as the one start of an onboarding, given up when dropped (its followers then
/// hear that the start failed unless [`Claim::finish`] said otherwise).
struct Claim {
    /// Where it is held.
    starts: Starts,
    /// The onboarding.
    id: String,
    /// Tells the followers how the start ended.
    outcome: watch::Sender<Outcome>,
}

impl Claim {
    /// Tells the followers how the start ended, and gives the place up.
    fn finish(self, outcome: std::result::Result<(), tonic::Status>) {
        self.outcome.send_replace(Some(outcome));
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.starts.map().remove(&self.id);
    }
}

/// Where a call that would start a run stands.
enum Place {
    /// It starts the run.
    Claimed(Claim),
    /// Its earlier self starts it: it follows.
    Follow(Follow),
}

impl Starting {
    fn follow(&self) -> Follow {
        Follow {
            from: self.from,
            outcome: self.outcome.clone(),
        }
    }
}

impl Starts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Starting>> {
        // A panic while holding the lock cannot leave a half-written entry.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The start of `id` under way by the call `tag` names, to follow.
    fn following(&self, id: &str, tag: &[u8]) -> Option<Follow> {
        let map = self.map();
        let s = map.get(id)?;
        (s.tag.as_deref() == Some(tag)).then(|| s.follow())
    }

    /// Refuses while some call starts `id`'s run, as the engine refuses a running one.
    fn refuse_starting(&self, id: &str) -> Result<()> {
        match self.is_starting(id) {
            true => Err(running(id)),
            false => Ok(()),
        }
    }

    /// Whether some call starts `id`'s run now.
    pub(super) fn is_starting(&self, id: &str) -> bool {
        self.map().contains_key(id)
    }

    /// Takes the place of `id`'s one start for the call `tag` names (the run's first event will
    /// be `from`); a start under way already is followed by the same call's repeat and refused
    /// to any other.
    fn claim(&self, id: &str, tag: Option<&[u8]>, from: u64) -> Result<Place> {
        let mut map = self.map();
        if let Some(s) = map.get(id) {
            return match (s.tag.as_deref(), tag) {
                (Some(theirs), Some(ours)) if theirs == ours => Ok(Place::Follow(s.follow())),
                _ => Err(running(id)),
            };
        }
        let (tx, rx) = watch::channel(None);
        map.insert(
            id.to_owned(),
            Starting {
                tag: tag.map(<[u8]>::to_vec),
                from,
                outcome: rx,
            },
        );
        Ok(Place::Claimed(Claim {
            starts: self.clone(),
            id: id.to_owned(),
            outcome: tx,
        }))
    }
}

/// The refusal of a Provision while another call starts the run: the engine's, for a running
/// one (FAILED_PRECONDITION).
fn running(id: &str) -> ServerError {
    ProvisionError::InvalidState {
        id: id.to_owned(),
        state: "running".into(),
        what: "it is already running (another Provision call is starting it); watch it instead"
            .into(),
    }
    .into()
}

impl OnboardingService {
    pub(super) async fn provision(
        &self,
        mut req: Request<pb::ProvisionRequest>,
    ) -> Result<BoxStream<pb::ProvisionEvent>> {
        // The same call again (a reconnect, same idempotency key) only follows the run, so the
        // capability table treats it as Watch; but a run that failed is resumed by it, as a
        // Provision (the proto: FAILED "can be resumed with Provision").
        // The key is kept with the session, durably (`marks.rs`) from before the run starts,
        // and in `starts` while it starts: a reconnect at any point, and after a server
        // restart, is a repeat too.
        // The key is the caller's own: another caller's call with it is not a repeat.
        let tag = {
            let r = req.get_ref();
            let caller = match r.invitation_token.as_str() {
                "" => match self.app.auth().authenticate(&req) {
                    Ok(c) => format!("operator {}", c.identity),
                    // Refused by the access check below.
                    Err(_) => String::new(),
                },
                token => token.to_owned(),
            };
            (!r.idempotency_key.is_empty())
                .then(|| marks::idempotency_tag(&caller, &r.idempotency_key))
        };
        let id = req.get_ref().onboarding_id.to_ascii_lowercase();
        // Its start under way (the run not started yet, or not yet marked so): follow it,
        // whatever the onboarding's state says until then (a failed run it resumes, say).
        let following = tag.as_deref().and_then(|t| self.starts.following(&id, t));
        let repeat = following.is_some() || {
            let failed = matches!(
                self.app.engine().get(&id),
                Ok(Some(o)) if o.status == provision::Status::Failed
            );
            match &tag {
                Some(tag) if !failed => {
                    self.sessions()
                        .get(&id)
                        .and_then(|s| s.idempotency_key.as_ref())
                        == Some(tag)
                        || self.started_with_idempotency_key(&id, tag)?
                }
                _ => false,
            }
        };
        let rpc = if repeat {
            CustomerRpc::Watch
        } else {
            CustomerRpc::Provision
        };
        let Access { actor, invitation } = self.access(&mut req, rpc)?;
        let r = req.into_inner();
        if let Some(follow) = following {
            return self
                .follow_start(&actor, &r.onboarding_id, follow, invitation)
                .await;
        }
        if !repeat {
            self.app.engine().refuse_running(&r.onboarding_id)?;
            self.starts.refuse_starting(&r.onboarding_id)?;
        }
        ServerError::at_most("app_name", &r.app_name, MAX_RECORDED_NAME)?;
        let delivery = Delivery::from_request(r.seal_to.as_ref())?;
        // The secret goes to an operator (the platform) only; the customer's wizard, which
        // calls with the invitation token, never receives it (the platform claims it).
        let secret_to = r
            .invitation_token
            .is_empty()
            .then(|| (actor.clone(), delivery));
        let id = r.onboarding_id.clone();
        let engine = self.app.engine();
        if repeat && engine.get(&id)?.is_some() {
            // The same call again (a reconnect): follow the run instead of starting another.
            self.record(Self::entry(
                &actor,
                Action::OnboardingWatch,
                Phase::Succeeded,
                &id,
            ))
            .await?;
            let stored = engine.watch(&id, 1)?;
            return Ok(self.forward(stored, None, invitation, Source::Stored(Default::default())));
        }
        // Ordered with revocations (a newer hand-off link, a wait's end): the caller's
        // invitation and the session's are looked at, and the start claimed, with none
        // written meanwhile. A revocation written first refuses this call here; one after it
        // sees the start claimed (IssueHandOffLink then refuses to replace the link), so a
        // revoked link never starts a run.
        let (inv, admin, place) = {
            let _not_revoking = self.app.guards().not_revoking().await;
            if let Some(caller) = &invitation {
                super::revoked::refuse_if_revoked(&self.app, caller)?;
            }
            let (inv, admin) = self.session(&id)?;
            // From here this call is the onboarding's one start, and its repeat follows it.
            let from = engine.event_count(&id)? + 1;
            (inv, admin, self.starts.claim(&id, tag.as_deref(), from)?)
        };
        let claim = match place {
            Place::Claimed(claim) => claim,
            // Its earlier self got here first (a repeat sent at once).
            Place::Follow(follow) => {
                return self.follow_start(&actor, &id, follow, invitation).await;
            }
        };
        let mut details = Self::entry(&actor, Action::OnboardingProvision, Phase::Intent, &id)
            .with_detail("app_name", r.app_name.clone())
            .with_detail("profile", inv.profile.clone());
        details.scope.service_id = Some(inv.service_id.clone());
        details.scope.tenant_id = Some(admin.tenant_id.clone());
        self.record(details.clone()).await?;
        let previous = match self.mark_start(&id, tag.as_deref()).await {
            Ok(previous) => previous,
            Err(e) => {
                details.phase = Phase::Failed;
                self.record(details.with_error(e.to_string())).await?;
                return Err(e);
            }
        };
        // Going on with a wait for a privileged admin ends it (the engine notes this caller
        // as who did).
        let waited = matches!(
            engine.get(&id),
            Ok(Some(o)) if o.status == provision::Status::AwaitingAdmin
        );
        let started = engine
            .provision(
                ProvisionRequest {
                    onboarding_id: id.clone(),
                    service_id: inv.service_id.clone(),
                    app_name: r.app_name,
                    profile: inv.profile.clone(),
                    platform_version: version(&inv),
                    actor: actor.clone(),
                },
                admin,
            )
            .await;
        match started {
            Ok(stream) => {
                // The run is under way, its mark written: a repeat from now on finds it.
                if let Some(s) = self.sessions().get_mut(&id) {
                    s.idempotency_key = tag;
                }
                claim.finish(Ok(()));
                details.phase = Phase::Succeeded;
                self.record(details).await?;
                if waited {
                    // The wait's other links end with it (this caller's own is kept).
                    super::hand_off::wait_ended(&self.app, &id).await;
                }
                Ok(self.forward(stream, secret_to, invitation, Source::Run(id)))
            }
            Err(e) => {
                // Put back before the place is given up: a repeat after that starts anew.
                if let Err(err) = self.unmark_start(&id, previous).await {
                    tracing::warn!(error = %err, onboarding_id = %id, "idempotency key not put back");
                }
                let why = e.to_string();
                // Its repeats get the same answer (a refusal they cannot retry away).
                let refused =
                    tonic::Status::from(ServerError::from(self.drop_refused_sign_in(&id, e)));
                claim.finish(Err(refused.clone()));
                details.phase = Phase::Failed;
                self.record(details.with_error(why)).await?;
                Err(ServerError::Made(refused))
            }
        }
    }

    /// A repeat of the call that starts `id`'s run: on the audit log as a Watch, it follows that
    /// run's events once it started (`forward.rs`, [`Source::Starting`]).
    async fn follow_start(
        &self,
        actor: &str,
        id: &str,
        follow: Follow,
        invitation: Option<String>,
    ) -> Result<BoxStream<pb::ProvisionEvent>> {
        self.record(Self::entry(
            actor,
            Action::OnboardingWatch,
            Phase::Succeeded,
            id,
        ))
        .await?;
        // No events until the run started: `forward` then follows the stored ones.
        let none = provision::EventStream::new(tokio::sync::mpsc::unbounded_channel().1);
        Ok(self.forward(
            none,
            None,
            invitation,
            Source::Starting(id.to_owned(), follow),
        ))
    }
}
