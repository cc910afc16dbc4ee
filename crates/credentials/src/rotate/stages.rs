//! The rotation's stages, each one durable record write: add (or re-add a secret whose value
//! was lost), validate, hand over, wait out the overlap, remove the old secret exactly once.

use onboard_core::audit::{Action, Phase, TargetKind, change, set};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::mpsc::UnboundedSender;
use uuid::Uuid;

use super::{RotationEvent, RotationStage, RotationState, emit, ev, marker};
use crate::audit::{app_target, target};
use crate::error::CredentialsError;
use crate::model::{Registration, SecretInfo};
use crate::secrets::NewSecret;
use crate::{Credentials, RegistrationRef};

/// How often a caller that joined a rotation looks whether its driver finished or stopped.
const JOIN_POLL: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a hand-over waits for its caller to confirm it was sent the new secret (the
/// caller's audit entry of the value is written first, which takes an fsync).
const CONFIRM_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Credentials {
    pub(super) async fn stage_add(
        &self,
        reg: &mut Registration,
        mut state: RotationState,
        events: &Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        emit(events, ev("add", false, None));
        let graph = self.secrets_graph(reg).await?;
        let object_id = self.object_id(&graph, reg).await?;
        // A secret with our marker may exist from an attempt cut short: adopt it if its value
        // was stored, else remove it (its value is lost) and add another under a new marker.
        let leftovers: Vec<_> = self
            .entra_passwords(&graph, &object_id)
            .await?
            .into_iter()
            .filter(|p| p.display_name.as_deref() == Some(state.marker.as_str()))
            .collect();
        let mut cleaned = false;
        for p in leftovers {
            let key = p.key_id.to_ascii_lowercase();
            if reg.secrets.contains_key(&key) {
                state.new_key = Some(key);
                state.stage = RotationStage::Validating;
                self.save_rotation(reg, state.clone()).await?;
                // The caller gets the adopted value, as it would have got a fresh one.
                return self.emit_stored_add(reg, &state, events);
            }
            let lost = crate::model::StoredSecret {
                key_id: p.key_id.clone(),
                hint: p.hint.clone().unwrap_or_default(),
                service_id: state.service_id.clone(),
                start: p.start_date_time.clone().unwrap_or_default(),
                end: p.end_date_time.clone().unwrap_or_default(),
                sealed: String::new(),
            };
            tracing::warn!(key_id = %p.key_id, rotation = %state.id, "new secret's value was lost in a crash; removing it");
            self.remove_password(&graph, reg, &object_id, &lost, &state.actor)
                .await?;
            cleaned = true;
        }
        if cleaned {
            state.marker = marker(&state.service_id, &Uuid::new_v4().to_string());
            self.save_rotation(reg, state.clone()).await?;
        }
        let added = self
            .add_password(
                &graph,
                reg,
                &object_id,
                &state.service_id,
                &state.marker,
                None,
                &state.actor,
            )
            .await;
        let (stored, value, seq) = match added {
            Ok(v) => v,
            Err(e) => {
                // A definite refusal added nothing: drop the rotation, the old secret stays.
                let definite = matches!(
                    e,
                    CredentialsError::PolicyRefused { .. }
                        | CredentialsError::ConditionalAccess { .. }
                ) || matches!(&e, CredentialsError::Entra { source, .. }
                        if source.graph().is_some_and(|g| (400..500).contains(&g.status) && g.status != 429));
                if definite {
                    reg.rotations.remove(&state.service_id);
                    let aud = self.rotation_auditor(reg, &state);
                    aud.failed(
                        Action::SecretRotate,
                        &app_target(reg),
                        vec![set("rotationId", json!(state.id))],
                        &e,
                    )
                    .await?;
                    self.save(reg).await?;
                }
                return Err(e);
            }
        };
        self.hook(&reg.id, "add:changed")?;
        let key = Registration::secret_key(&stored);
        reg.secrets.insert(key.clone(), stored.clone());
        state.new_key = Some(key);
        state.add_seq = Some(seq);
        let done = add_done(&stored, false, value, Some(seq));
        self.stage_done(reg, state, RotationStage::Validating, events, done)
            .await
    }

    pub(super) async fn stage_validate(
        &self,
        reg: &mut Registration,
        state: RotationState,
        events: &Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        emit(events, ev("validate", false, None));
        let new = self.new_secret_of(reg, &state)?;
        let value: SecretString = self.open(reg, &new)?;
        let aud = self.rotation_auditor(reg, &state);
        let t = target(
            TargetKind::PasswordCredential,
            Some(new.key_id.clone()),
            &state.marker,
        );
        let changes = vec![set(
            "clientCredentials",
            json!({"key_id": new.key_id, "scope": self.inner.validate_scope}),
        )];
        aud.entry(
            Action::AuthenticationVerify,
            Phase::Intent,
            &t,
            changes.clone(),
            None,
        )
        .await?;
        let scope = self.inner.validate_scope.clone();
        let seq = match self.client_credentials(reg, &value, &scope, true).await {
            Ok(_) => {
                aud.entry(
                    Action::AuthenticationVerify,
                    Phase::Succeeded,
                    &t,
                    changes,
                    None,
                )
                .await?
            }
            Err(e) => {
                let _ = aud
                    .failed(Action::AuthenticationVerify, &t, changes, &e)
                    .await;
                return Err(e);
            }
        };
        let done = ev("validate", true, Some(seq));
        self.stage_done(reg, state, RotationStage::HandingOver, events, done)
            .await
    }

    pub(super) async fn stage_hand_over(
        &self,
        reg: &mut Registration,
        mut state: RotationState,
        events: &Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        // `hand_over` started was emitted (and, for a caller, confirmed) by `hand_over_started`.
        let new = self.new_secret_of(reg, &state)?;
        let new_key = Registration::secret_key(&new);
        // Saturating: a stored overlap too large for the calendar (the server refuses more than
        // a year) must not panic a resumed rotation on every start.
        let remove_after = OffsetDateTime::now_utc()
            .checked_add(time::Duration::seconds(
                i64::try_from(state.overlap_secs).unwrap_or(i64::MAX),
            ))
            .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc());
        let aud = self.rotation_auditor(reg, &state);
        let seq = aud
            .entry(
                Action::SecretHandOver,
                Phase::Succeeded,
                &target(
                    TargetKind::PasswordCredential,
                    Some(new.key_id.clone()),
                    &state.service_id,
                ),
                vec![
                    change("currentKeyId", json!(state.old_key), json!(new.key_id)),
                    set(
                        "oldRemovedAfter",
                        json!(onboard_core::time::format(remove_after)),
                    ),
                ],
                None,
            )
            .await?;
        reg.current.insert(state.service_id.clone(), new_key);
        state.remove_after = Some(onboard_core::time::format(remove_after));
        let done = ev("hand_over", true, Some(seq));
        self.stage_done(reg, state, RotationStage::WaitingOverlap, events, done)
            .await
    }

    /// A stage's end: `state`, moved on to `next`, is stored with what the stage changed in
    /// `reg` (one atomic write); then the stage's `done` event is emitted and the test hook
    /// runs at the point the stage is named by.
    async fn stage_done(
        &self,
        reg: &mut Registration,
        mut state: RotationState,
        next: RotationStage,
        events: &Option<UnboundedSender<RotationEvent>>,
        done: RotationEvent,
    ) -> Result<(), CredentialsError> {
        state.stage = next;
        self.save_rotation(reg, state).await?;
        let point = done.stage;
        emit(events, done);
        self.hook(&reg.id, point)
    }

    /// Keeps `state` as its service's rotation in `reg` and writes the record.
    async fn save_rotation(
        &self,
        reg: &mut Registration,
        state: RotationState,
    ) -> Result<(), CredentialsError> {
        reg.rotations.insert(state.service_id.clone(), state);
        self.save(reg).await
    }

    /// Emits `hand_over` started for rotation `state` (as stored). In a rotation for a caller,
    /// then waits, holding no lock, for the caller to confirm that everything before it (the
    /// new secret among it) was queued to its stream: the new secret is made current only
    /// then. A caller gone (its stream broke, the server restarted) or silent leaves the old
    /// secret current and the rotation stored at HandingOver ([`CredentialsError::AwaitsCaller`]);
    /// the next RotateSecret resumes it and gets the value.
    pub(super) async fn hand_over_started(
        &self,
        state: &RotationState,
        events: &Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        let (confirm, confirmed) = tokio::sync::oneshot::channel();
        emit(
            events,
            RotationEvent {
                confirm: Some(confirm),
                ..ev("hand_over", false, None)
            },
        );
        if state.hand_to_caller && !self.caller_confirms(events, confirmed).await? {
            tracing::info!(rotation = %state.id, service = %state.service_id, "no caller to hand the new secret to; the next RotateSecret resumes the rotation");
            return Err(CredentialsError::AwaitsCaller(
                "no caller confirmed it was sent the new secret".into(),
            ));
        }
        Ok(())
    }

    /// Whether the caller behind `events` confirms the `hand_over` started event (so all before
    /// it was queued to its stream) within [`CONFIRM_WAIT`]; false when there is none, it goes
    /// away or it does not answer. Shutdown halts.
    async fn caller_confirms(
        &self,
        events: &Option<UnboundedSender<RotationEvent>>,
        confirmed: tokio::sync::oneshot::Receiver<()>,
    ) -> Result<bool, CredentialsError> {
        let Some(tx) = events else {
            return Ok(false);
        };
        Ok(tokio::select! {
            biased;
            answer = confirmed => answer.is_ok(),
            () = tx.closed() => false,
            () = tokio::time::sleep(CONFIRM_WAIT) => false,
            () = self.inner.shutdown.recv() => {
                return Err(CredentialsError::Halted("shutdown".into()));
            }
        })
    }

    pub(super) async fn wait_overlap(
        &self,
        r: &RegistrationRef,
        service_id: &str,
    ) -> Result<(), CredentialsError> {
        let reg = self.registration(r)?;
        let Some(until) = reg
            .rotations
            .get(service_id)
            .and_then(|s| s.remove_after.as_deref())
            .and_then(onboard_core::time::parse)
        else {
            return Ok(());
        };
        let left = until - OffsetDateTime::now_utc();
        if left.is_positive() {
            tokio::select! {
                () = tokio::time::sleep(left.unsigned_abs()) => {}
                // Stored as WaitingOverlap: the next start waits out what is left.
                () = self.inner.shutdown.recv() => {
                    return Err(CredentialsError::Halted("shutdown".into()));
                }
            }
        }
        Ok(())
    }

    pub(super) async fn stage_remove_old(
        &self,
        reg: &mut Registration,
        state: RotationState,
        events: &Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        emit(events, ev("remove_old", false, None));
        let mut seq = None;
        if let Some(old_key) = &state.old_key
            && let Some(old) = reg.secrets.get(old_key).cloned()
        {
            let users = reg.users_of(old_key);
            if users.is_empty() {
                let graph = self.secrets_graph(reg).await?;
                let object_id = self.object_id(&graph, reg).await?;
                let new_id = state.new_key.clone().unwrap_or_default();
                let listed = self.entra_passwords(&graph, &object_id).await?;
                // Find the old one in Entra: by key id, or by hint for an attached secret whose
                // key id was never known (only when exactly one other secret matches).
                let found = if old.key_id.is_empty() {
                    let m: Vec<_> = listed
                        .iter()
                        .filter(|p| {
                            p.hint.as_deref() == Some(old.hint.as_str())
                                && !p.key_id.eq_ignore_ascii_case(&new_id)
                        })
                        .collect();
                    if m.len() == 1 {
                        m.first().map(|p| p.key_id.clone())
                    } else {
                        None
                    }
                } else {
                    listed
                        .iter()
                        .find(|p| p.key_id.eq_ignore_ascii_case(&old.key_id))
                        .map(|p| p.key_id.clone())
                };
                if let Some(key_id) = found {
                    let target = crate::model::StoredSecret {
                        key_id,
                        ..old.clone()
                    };
                    seq = self
                        .remove_password(&graph, reg, &object_id, &target, &state.actor)
                        .await?;
                    self.hook(&reg.id, "remove_old:changed")?;
                } else if old.key_id.is_empty() {
                    tracing::warn!(hint = %old.hint, "old attached secret not identifiable; left in Entra");
                }
                reg.secrets.remove(old_key);
            }
        }
        reg.rotations.remove(&state.service_id);
        let aud = self.rotation_auditor(reg, &state);
        aud.entry(
            Action::SecretRotate,
            Phase::Succeeded,
            &app_target(reg),
            vec![
                set("rotationId", json!(state.id)),
                change("currentKeyId", json!(state.old_key), json!(state.new_key)),
            ],
            None,
        )
        .await?;
        self.save(reg).await?;
        emit(events, ev("remove_old", true, seq));
        self.hook(&reg.id, "remove_old")
    }

    /// A call finds `state` stored for its service (an earlier call failed, or the server
    /// stopped) and drives it on. Until the hand-over the rotation is this caller's: its
    /// `overlap` replaces the stored one (after it, the old secret's removal time is recorded
    /// and stands), and the hand-over waits for a caller's confirmation when there is a caller
    /// (auto-rotation, which has none, finishes one a caller left waiting). When the new
    /// secret is stored, the caller gets it now, on `add` started and done events as the first
    /// call did, since it may never have had it (a client discards what a failed call
    /// returned) and it is the value that becomes current.
    pub(super) async fn resume_for_caller(
        &self,
        reg: &mut Registration,
        mut state: RotationState,
        overlap: std::time::Duration,
        events: &Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        if !state.handed_over() {
            // The rotation is this caller's now: its overlap, and whether the hand-over waits
            // for a caller (auto-rotation, with none, takes over one a caller left waiting).
            let hand_to_caller = events.is_some();
            if state.overlap_secs != overlap.as_secs() || state.hand_to_caller != hand_to_caller {
                tracing::info!(rotation = %state.id, from = state.overlap_secs, to = overlap.as_secs(), "resumed rotation takes the caller's overlap");
                state.overlap_secs = overlap.as_secs();
                state.hand_to_caller = hand_to_caller;
                self.save_rotation(reg, state.clone()).await?;
            }
        }
        let stored = state
            .new_key
            .as_ref()
            .is_some_and(|k| reg.secrets.contains_key(k));
        if state.stage != RotationStage::Adding && stored {
            emit(events, ev("add", false, None));
            self.emit_stored_add(reg, &state, events)?;
        }
        Ok(())
    }

    /// A caller's RotateSecret while the rotation is driven elsewhere and its new secret is
    /// current (the overlap): the caller gets that secret (`add` started and done) and the
    /// hand-over, then follows the rotation to the old secret's removal, driving it itself if
    /// nobody does any more. Before the hand-over, `busy` (FAILED_PRECONDITION) stands.
    pub(super) async fn join(
        &self,
        r: &RegistrationRef,
        service_id: &str,
        events: &Option<UnboundedSender<RotationEvent>>,
        busy: CredentialsError,
    ) -> Result<(), CredentialsError> {
        let reg = self.registration(r)?;
        let Some(state) = reg.rotations.get(service_id).filter(|s| s.handed_over()) else {
            return Err(busy);
        };
        emit(events, ev("add", false, None));
        self.emit_stored_add(&reg, state, events)?;
        emit(events, ev("hand_over", true, None));
        let finished = |me: &Self| -> Result<bool, CredentialsError> {
            let gone = !me.registration(r)?.rotations.contains_key(service_id);
            if gone {
                emit(events, ev("remove_old", true, None));
            }
            Ok(gone)
        };
        loop {
            self.wait_overlap(r, service_id).await?;
            if finished(self)? {
                return Ok(());
            }
            if let Ok(_drive) = self.start_driving(&reg.id, service_id) {
                if finished(self)? {
                    return Ok(());
                }
                let result = self.drive(r, service_id, events).await;
                super::count_rotation(&result);
                return result;
            }
            tokio::select! {
                () = tokio::time::sleep(JOIN_POLL) => {}
                () = self.inner.shutdown.recv() => {
                    return Err(CredentialsError::Halted("shutdown".into()));
                }
            }
        }
    }

    /// The `add` done event with the rotation's stored new secret, opened (nothing without a
    /// caller to hand it to).
    fn emit_stored_add(
        &self,
        reg: &Registration,
        state: &RotationState,
        events: &Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        if events.is_none() {
            return Ok(());
        }
        let new = self.new_secret_of(reg, state)?;
        let value = self.open(reg, &new)?;
        let current = reg.current.get(&state.service_id) == state.new_key.as_ref();
        emit(events, add_done(&new, current, value, state.add_seq));
        Ok(())
    }

    fn new_secret_of(
        &self,
        reg: &Registration,
        state: &RotationState,
    ) -> Result<crate::model::StoredSecret, CredentialsError> {
        state
            .new_key
            .as_ref()
            .and_then(|k| reg.secrets.get(k))
            .cloned()
            .ok_or_else(|| {
                CredentialsError::Store(format!("rotation {} lost its new secret", state.id))
            })
    }
}

/// The `add` done event: the new secret with its value (`current` once handed over), and the
/// add's audit entry (`None`: unknown, in a rotation stored before it was kept).
fn add_done(
    stored: &crate::model::StoredSecret,
    current: bool,
    value: SecretString,
    add_seq: Option<u64>,
) -> RotationEvent {
    RotationEvent {
        stage: "add",
        done: true,
        new_secret: Some(NewSecret {
            info: SecretInfo::of(stored, current, OffsetDateTime::now_utc()),
            value,
            audit_seq: add_seq.unwrap_or(0),
        }),
        audit_seq: add_seq,
        confirm: None,
    }
}
