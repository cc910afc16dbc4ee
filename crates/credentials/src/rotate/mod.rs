//! Secret rotation as a durable state machine, one atomic record write per step:
//!
//! ```text
//! Adding ──addPassword──▶ Validating ──client credentials──▶ HandingOver ──▶ WaitingOverlap
//!   ▲  (leftover with our marker and no stored value: removed, then re-added)          │
//!   │                                                                                   ▼
//!   └──────────────────────────── Done ◀──removePassword (once)── RemovingOld ◀── overlap over
//! ```
//!
//! Invariants: the service's current secret is switched to the new one only after the new one
//! authenticated and, while a caller drives the rotation, after that caller confirmed it was
//! sent the new one (else the rotation waits at HandingOver for the next caller, or for
//! auto-rotation, which finishes it for nobody); the old one is removed only after that and
//! after the overlap; a new secret whose value was lost (crash between Graph's answer and our
//! write) is found by its unique `displayName` marker, removed and re-added, never handed over
//! unknown; the old secret is removed exactly once (Entra's list is checked first, and
//! "already gone" counts as done).

use std::collections::HashSet;
use std::sync::Mutex;

use onboard_core::audit::{Action, Phase, change, set};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;
use uuid::Uuid;

use crate::audit::app_target;
use crate::error::CredentialsError;
use crate::secrets::NewSecret;
use crate::{Credentials, RegistrationRef, check_service};

mod stages;

/// Where a rotation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationStage {
    /// Adding the new secret (or cleaning up one whose value was lost).
    Adding,
    /// Proving the new secret authenticates.
    Validating,
    /// Making the new secret the service's current one.
    HandingOver,
    /// Both secrets valid until `remove_after`.
    WaitingOverlap,
    /// Removing the old secret.
    RemovingOld,
}

/// A rotation in flight, stored in its registration's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationState {
    /// Rotation id (audit correlation and logs).
    pub id: String,
    /// The service whose secret rotates.
    pub service_id: String,
    /// Who asked (the audit actor of every step, also after a resume).
    pub actor: String,
    /// Key (in `Registration::secrets`) of the secret being replaced; `None` if the service had
    /// none.
    pub old_key: Option<String>,
    /// The new secret's `displayName` in Entra, unique per attempt, so a secret added just
    /// before a crash can be found again.
    pub marker: String,
    /// Current stage.
    pub stage: RotationStage,
    /// Key of the new secret once it is added and its sealed value stored.
    pub new_key: Option<String>,
    /// Overlap in seconds between hand-over and removal of the old secret.
    pub overlap_secs: u64,
    /// When the old secret may be removed (set at hand-over, RFC 3339).
    pub remove_after: Option<String>,
    /// When the rotation started.
    pub started_at: String,
    /// The audit entry of the new secret's addition, handed again with the value to a caller
    /// that resumes the rotation (`None` before the add, or in a record written before it was
    /// kept).
    #[serde(default)]
    pub add_seq: Option<u64>,
    /// Whether the new secret goes to a caller (the RotateSecret call that started or last
    /// resumed the rotation): then it is made current only once that caller confirmed it has
    /// been sent the new secret ([`RotationEvent::confirm`]), so no secret becomes current that
    /// no caller was sent. Without that the rotation stops before the hand-over and the next
    /// RotateSecret resumes it. False for a rotation the server drives for nobody
    /// (auto-rotation, which the platform joins during the overlap) and in records written
    /// before this was kept (they are handed over as before).
    #[serde(default)]
    pub hand_to_caller: bool,
}

impl RotationStage {
    /// Every stage, in order.
    pub const ALL: [Self; 5] = [
        Self::Adding,
        Self::Validating,
        Self::HandingOver,
        Self::WaitingOverlap,
        Self::RemovingOld,
    ];

    /// The stage's name as stored (snake case), for labels and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Adding => "adding",
            Self::Validating => "validating",
            Self::HandingOver => "handing_over",
            Self::WaitingOverlap => "waiting_overlap",
            Self::RemovingOld => "removing_old",
        }
    }
}

impl RotationState {
    /// Whether the new secret is the service's current one already (the old one's removal time
    /// is then fixed and recorded).
    pub fn handed_over(&self) -> bool {
        matches!(
            self.stage,
            RotationStage::WaitingOverlap | RotationStage::RemovingOld
        )
    }
}

/// One stage of a rotation, for the caller's stream.
#[derive(Debug)]
pub struct RotationEvent {
    /// `add`, `validate`, `hand_over`, `remove_old`.
    pub stage: &'static str,
    /// True when the stage finished (false when it started).
    pub done: bool,
    /// On the `add` done event: the new secret (once per call; a call that resumes a stored
    /// rotation gets its stored value again).
    pub new_secret: Option<NewSecret>,
    /// Audit entry of the stage, when it changed something.
    pub audit_seq: Option<u64>,
    /// On the `hand_over` started event: the receiver of the events answers here once every
    /// event before this one (the new secret among them) has reached its caller. A rotation a
    /// caller started makes its new secret current only after that answer (see
    /// [`RotationState::hand_to_caller`]); a receiver that never answers (or is gone) leaves
    /// the rotation waiting before the hand-over.
    pub confirm: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Rotations being driven by this process (registration id + service), so two drivers never
/// work on one rotation.
#[derive(Default)]
pub(crate) struct Driving(
    /// `<registration id>/<service id>` of each rotation being driven.
    Mutex<HashSet<String>>,
);

/// Removes the driving mark when the driver ends, however it ends.
pub(crate) struct DriveGuard<'a> {
    /// The set.
    set: &'a Driving,
    /// The mark.
    key: String,
}

impl Drop for DriveGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        s.remove(&self.key);
    }
}

fn emit(tx: &Option<UnboundedSender<RotationEvent>>, ev: RotationEvent) {
    if let Some(tx) = tx {
        let _ = tx.send(ev);
    }
}

fn ev(stage: &'static str, done: bool, audit_seq: Option<u64>) -> RotationEvent {
    RotationEvent {
        stage,
        done,
        new_secret: None,
        audit_seq,
        confirm: None,
    }
}

/// Counts a rotation that was driven to an end: `onboard_rotations_total{outcome}` is
/// `completed`, `halted` (shutdown: it resumes at the next start; or no caller confirmed the
/// hand-over: the next RotateSecret, or auto-rotation, resumes it) or `failed`.
fn count_rotation(result: &Result<(), CredentialsError>) {
    let outcome = match result {
        Ok(()) => "completed",
        Err(CredentialsError::Halted(_) | CredentialsError::AwaitsCaller(_)) => "halted",
        Err(_) => "failed",
    };
    metrics::counter!("onboard_rotations_total", "outcome" => outcome).increment(1);
}

impl Credentials {
    /// The auditor of rotation `state`'s own entries: its id is their correlation id, so an
    /// outcome written by the process that resumes the rotation pairs with the intent.
    pub(crate) fn rotation_auditor(
        &self,
        reg: &crate::model::Registration,
        state: &RotationState,
    ) -> crate::audit::Auditor<'_> {
        self.auditor(reg, &state.service_id, &state.actor)
            .correlated(&state.id)
    }

    /// Rotates `service_id`'s secret: add, validate, hand over, and remove the old one after
    /// `overlap`. Stages go to `events`, the new value on the `add` done event. A rotation
    /// already stored for the service (cut short by a crash or an error) is resumed instead:
    /// `overlap` replaces the stored one unless the new secret was handed over already, and
    /// when the new secret is stored, `events` get it again (`add` started and done) before
    /// the stages left, so whoever resumes holds the value that becomes current. A rotation
    /// driven elsewhere is joined during its overlap: this caller gets the current new secret
    /// and follows the rotation to the old one's removal.
    ///
    /// With `events`, the rotation is this caller's: its receiver must answer the `confirm` of
    /// the `hand_over` started event once it has passed on what came before it (the gRPC layer
    /// does when the events are in the caller's stream), or the rotation stops before the
    /// hand-over with [`CredentialsError::AwaitsCaller`] (30 s at most). Without `events`
    /// (auto-rotation) the new secret is made current for nobody, as for a rotation left
    /// waiting by its caller that this call finishes.
    pub async fn rotate(
        &self,
        r: &RegistrationRef,
        service_id: &str,
        overlap: std::time::Duration,
        actor: &str,
        events: Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        let service_id = check_service(service_id)?;
        let reg_id = self.registration(r)?.id;
        let _drive = match self.start_driving(&reg_id, service_id) {
            Ok(guard) => guard,
            // Driven elsewhere (a caller gone away, or the start-up resume): during the overlap
            // this caller joins; before it, the stages take seconds and the caller retries.
            Err(busy) => return self.join(r, service_id, &events, busy).await,
        };
        {
            let lock = self.lock_for(&reg_id);
            let _g = lock.lock().await;
            let mut reg = self.registration(r)?;
            if let Some(state) = reg.rotations.get(service_id).cloned() {
                self.resume_for_caller(&mut reg, state, overlap, &events)
                    .await?;
            } else {
                let old_key = reg.current.get(service_id).cloned();
                if old_key.is_none() && !reg.secrets.values().any(|s| s.service_id == service_id) {
                    return Err(CredentialsError::NotFound(format!(
                        "service {service_id} has no secret on registration {}; add one first",
                        reg.client_id
                    )));
                }
                // A rotation that cannot authenticate is not started (nothing is stored).
                self.secrets_graph(&reg).await?;
                let id = Uuid::new_v4().to_string();
                let state = RotationState {
                    marker: marker(service_id, &id),
                    id,
                    service_id: service_id.to_owned(),
                    actor: actor.to_owned(),
                    old_key: old_key.clone(),
                    stage: RotationStage::Adding,
                    new_key: None,
                    overlap_secs: overlap.as_secs(),
                    remove_after: None,
                    started_at: onboard_core::time::now(),
                    add_seq: None,
                    hand_to_caller: events.is_some(),
                };
                let aud = self.rotation_auditor(&reg, &state);
                aud.entry(
                    Action::SecretRotate,
                    Phase::Intent,
                    &app_target(&reg),
                    vec![
                        set("rotationId", json!(state.id)),
                        change("oldKeyId", json!(old_key), Value::Null),
                        set("overlapSeconds", json!(state.overlap_secs)),
                    ],
                    None,
                )
                .await?;
                reg.rotations.insert(service_id.to_owned(), state);
                self.save(&reg).await?;
            }
        }
        let result = self.drive(r, service_id, &events).await;
        count_rotation(&result);
        result
    }

    /// Rotations stored but not finished: `(registration, service id)`.
    pub fn pending_rotations(&self) -> Result<Vec<(RegistrationRef, String)>, CredentialsError> {
        let mut out = Vec::new();
        for reg in self.all()? {
            for s in reg.rotations.keys() {
                out.push((
                    RegistrationRef::new(&reg.tenant_id, &reg.client_id),
                    s.clone(),
                ));
            }
        }
        Ok(out)
    }

    /// The stage of every stored rotation (the `onboard_rotations_stored` gauge).
    pub fn stored_rotation_stages(&self) -> Result<Vec<RotationStage>, CredentialsError> {
        Ok(self
            .all()?
            .iter()
            .flat_map(|reg| reg.rotations.values().map(|s| s.stage))
            .collect())
    }

    /// Drives every stored rotation to its end (after a restart). Each runs on its own task;
    /// returns when all ended, with the failures. One that stops at a durable point (shutdown,
    /// or a hand-over that waits for its caller) is not a failure.
    pub async fn resume_all(&self) -> Result<Vec<(String, CredentialsError)>, CredentialsError> {
        let mut set = tokio::task::JoinSet::new();
        for (r, service) in self.pending_rotations()? {
            let me = self.clone();
            set.spawn(async move {
                let res = me.resume(&r, &service).await;
                (format!("{}/{service}", r.client_id), res)
            });
        }
        let mut failed = Vec::new();
        while let Some(j) = set.join_next().await {
            match j {
                Ok((_, Ok(()))) => {}
                // Stopped at a durable point (shutdown, or waiting for its caller): not failed.
                Ok((
                    what,
                    Err(e @ (CredentialsError::Halted(_) | CredentialsError::AwaitsCaller(_))),
                )) => {
                    tracing::info!(rotation = %what, reason = %e, "resumed rotation stopped");
                }
                Ok((what, Err(e))) => failed.push((what, e)),
                Err(e) => failed.push((
                    "task".into(),
                    CredentialsError::Store(format!("resume task: {e}")),
                )),
            }
        }
        Ok(failed)
    }

    /// Drives one stored rotation to its end (a no-op when there is none).
    pub async fn resume(
        &self,
        r: &RegistrationRef,
        service_id: &str,
    ) -> Result<(), CredentialsError> {
        let reg_id = self.registration(r)?.id;
        let _drive = self.start_driving(&reg_id, service_id)?;
        let result = self.drive(r, service_id, &None).await;
        count_rotation(&result);
        result
    }

    /// RevokeSecret of `key`, the new secret of a stored rotation, ends that rotation: this
    /// marks it driven so no call or resume works on it meanwhile (the guard is held through
    /// the revoke). `None` when `key` is no rotation's new secret; FAILED_PRECONDITION when the
    /// secret is current already, or a call or the server drives the rotation now.
    pub(crate) fn rotation_to_end(
        &self,
        r: &RegistrationRef,
        key: &str,
    ) -> Result<Option<DriveGuard<'_>>, CredentialsError> {
        let reg = self.registration(r)?;
        let Some(state) = reg
            .rotations
            .values()
            .find(|s| s.new_key.as_deref() == Some(key))
        else {
            return Ok(None);
        };
        let refused = |why: &str| {
            CredentialsError::FailedPrecondition(format!(
                "secret {key} is the new secret of the rotation of {}, which {why}",
                state.service_id
            ))
        };
        if state.handed_over() {
            return Err(refused(
                "made it current already; rotate again to replace it",
            ));
        }
        self.start_driving(&reg.id, &state.service_id)
            .map(Some)
            .map_err(|_| refused("is running now; revoke it once that RotateSecret call has ended"))
    }

    /// Ends `state`, a rotation not handed over, whose new secret `key` is being revoked: the
    /// end is recorded (`secret.rotate` failed, by `actor`, under the rotation's id) and the
    /// rotation dropped, so the old secret stays current and `key` is an unused secret.
    pub(crate) async fn end_rotation(
        &self,
        reg: &mut crate::model::Registration,
        state: &RotationState,
        key: &str,
        actor: &str,
    ) -> Result<(), CredentialsError> {
        let why = format!(
            "ended before the hand-over: its new secret {key} is revoked; the old secret stays current"
        );
        self.auditor(reg, &state.service_id, actor)
            .correlated(&state.id)
            .entry(
                Action::SecretRotate,
                Phase::Failed,
                &app_target(reg),
                vec![set("rotationId", json!(state.id))],
                Some(&why),
            )
            .await?;
        reg.rotations.remove(&state.service_id);
        self.save(reg).await?;
        tracing::info!(rotation = %state.id, service = %state.service_id, "rotation ended: its new secret is revoked");
        Ok(())
    }

    fn start_driving(
        &self,
        reg_id: &str,
        service_id: &str,
    ) -> Result<DriveGuard<'_>, CredentialsError> {
        let key = format!("{reg_id}/{service_id}");
        let mut s = self
            .inner
            .driving
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !s.insert(key.clone()) {
            return Err(CredentialsError::FailedPrecondition(format!(
                "a rotation of {service_id} is already running"
            )));
        }
        Ok(DriveGuard {
            set: &self.inner.driving,
            key,
        })
    }

    /// The loop: one stage per iteration, each under the registration lock, loading the record
    /// fresh; the overlap wait holds no lock.
    async fn drive(
        &self,
        r: &RegistrationRef,
        service_id: &str,
        events: &Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        loop {
            self.check_not_stopping()?;
            let Some(stored) = self.registration(r)?.rotations.get(service_id).cloned() else {
                return Ok(());
            };
            if stored.stage == RotationStage::WaitingOverlap {
                self.wait_overlap(r, service_id).await?;
            }
            // Before the lock: a caller's confirmation may take a while, and the lock holds up
            // every change to the registration. This driver's mark keeps the stage as it is.
            if stored.stage == RotationStage::HandingOver {
                self.hand_over_started(&stored, events).await?;
            }
            let (_g, mut reg) = self.locked(r).await?;
            let Some(mut state) = reg.rotations.get(service_id).cloned() else {
                return Ok(());
            };
            // A new secret that is gone from the record (never expected: revoke refuses it)
            // cannot be validated or handed over: start the add again under a new marker.
            let new_missing = state
                .new_key
                .as_ref()
                .is_none_or(|k| !reg.secrets.contains_key(k));
            if matches!(
                state.stage,
                RotationStage::Validating | RotationStage::HandingOver
            ) && new_missing
            {
                tracing::warn!(rotation = %state.id, "new secret missing from the record; adding again");
                state.stage = RotationStage::Adding;
                state.new_key = None;
                state.marker = marker(service_id, &Uuid::new_v4().to_string());
                reg.rotations.insert(service_id.to_owned(), state.clone());
                self.save(&reg).await?;
            }
            match state.stage {
                RotationStage::Adding => self.stage_add(&mut reg, state, events).await?,
                RotationStage::Validating => self.stage_validate(&mut reg, state, events).await?,
                RotationStage::HandingOver => self.stage_hand_over(&mut reg, state, events).await?,
                RotationStage::WaitingOverlap => {
                    let mut s = state;
                    s.stage = RotationStage::RemovingOld;
                    reg.rotations.insert(service_id.to_owned(), s);
                    self.save(&reg).await?;
                }
                RotationStage::RemovingOld => {
                    self.stage_remove_old(&mut reg, state, events).await?;
                    return Ok(());
                }
            }
        }
    }
}

/// The `displayName` of a rotation's new secret: the service, then the attempt.
fn marker(service_id: &str, attempt: &str) -> String {
    let short: String = attempt.chars().take(8).collect();
    format!("{service_id} rotation {short}")
}
