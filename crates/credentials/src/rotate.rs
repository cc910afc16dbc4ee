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
//! authenticated; the old one is removed only after that and after the overlap; a new secret
//! whose value was lost (crash between Graph's answer and our write) is found by its unique
//! `displayName` marker, removed and re-added, never handed over unknown; the old secret is
//! removed exactly once (Entra's list is checked first, and "already gone" counts as done).

use std::collections::HashSet;
use std::sync::Mutex;

use provision::audit::Phase;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc::UnboundedSender;
use uuid::Uuid;

use crate::audit::{change, target};
use crate::error::CredentialsError;
use crate::model::{Registration, SecretInfo, now_rfc3339, rfc3339};
use crate::secrets::NewSecret;
use crate::{Credentials, RegistrationRef, check_service};

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
}

/// One stage of a rotation, for the caller's stream.
#[derive(Debug)]
pub struct RotationEvent {
    /// `add`, `validate`, `hand_over`, `remove_old`.
    pub stage: &'static str,
    /// True when the stage finished (false when it started).
    pub done: bool,
    /// On the `add` done event of a live run: the new secret (its only appearance).
    pub new_secret: Option<NewSecret>,
    /// Audit entry of the stage, when it changed something.
    pub audit_seq: Option<u64>,
}

/// Rotations being driven by this process (registration id + service), so two drivers never
/// work on one rotation.
#[derive(Default)]
pub(crate) struct Driving(
    /// `<registration id>/<service id>` of each rotation being driven.
    Mutex<HashSet<String>>,
);

/// Removes the driving mark when the driver ends, however it ends.
struct DriveGuard<'a> {
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
    }
}

impl Credentials {
    /// Rotates `service_id`'s secret: add, validate, hand over, and remove the old one after
    /// `overlap`. Stages go to `events`; the new value only on the live `add` event. A rotation
    /// already stored for the service (cut short by a crash or an error) is resumed instead.
    pub async fn rotate(
        &self,
        r: &RegistrationRef,
        service_id: &str,
        overlap: std::time::Duration,
        actor: &str,
        events: Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        check_service(service_id)?;
        let reg_id = self.registration(r)?.id;
        let _drive = self.start_driving(&reg_id, service_id)?;
        {
            let lock = self.lock_for(&reg_id);
            let _g = lock.lock().await;
            let mut reg = self.registration(r)?;
            if !reg.rotations.contains_key(service_id) {
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
                    started_at: now_rfc3339(),
                };
                let aud = self.auditor(&reg, service_id, actor);
                aud.entry(
                    "secret.rotate",
                    Phase::Intent,
                    &target("application", reg.app_object_id.clone(), &reg.display_name),
                    json!([
                        change("rotationId", Value::Null, json!(state.id)),
                        change("oldKeyId", json!(old_key), Value::Null),
                        change("overlapSeconds", Value::Null, json!(state.overlap_secs)),
                    ]),
                    None,
                )
                .await?;
                reg.rotations.insert(service_id.to_owned(), state);
                self.save(&reg).await?;
            }
        }
        self.drive(r, service_id, &events).await
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

    /// Drives every stored rotation to its end (after a restart). Each runs on its own task;
    /// returns when all ended, with the failures.
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
        self.drive(r, service_id, &None).await
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
            let stage = match self.registration(r)?.rotations.get(service_id) {
                None => return Ok(()),
                Some(s) => s.stage,
            };
            if stage == RotationStage::WaitingOverlap {
                self.wait_overlap(r, service_id).await?;
            }
            let reg_id = self.registration(r)?.id;
            let lock = self.lock_for(&reg_id);
            let _g = lock.lock().await;
            let mut reg = self.registration(r)?;
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

    async fn stage_add(
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
                reg.rotations.insert(state.service_id.clone(), state);
                self.save(reg).await?;
                return Ok(());
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
            reg.rotations
                .insert(state.service_id.clone(), state.clone());
            self.save(reg).await?;
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
                let definite = matches!(e, CredentialsError::PolicyRefused { .. })
                    || matches!(&e, CredentialsError::Entra { source, .. }
                        if source.graph().is_some_and(|g| (400..500).contains(&g.status) && g.status != 429));
                if definite {
                    reg.rotations.remove(&state.service_id);
                    let text = e.to_string();
                    self.auditor(reg, &state.service_id, &state.actor)
                        .entry(
                            "secret.rotate",
                            Phase::Failed,
                            &target("application", reg.app_object_id.clone(), &reg.display_name),
                            json!([change("rotationId", Value::Null, json!(state.id))]),
                            Some(&text),
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
        state.stage = RotationStage::Validating;
        reg.rotations.insert(state.service_id.clone(), state);
        self.save(reg).await?;
        emit(
            events,
            RotationEvent {
                stage: "add",
                done: true,
                new_secret: Some(NewSecret {
                    info: SecretInfo::of(&stored, false, OffsetDateTime::now_utc()),
                    value,
                    audit_seq: seq,
                }),
                audit_seq: Some(seq),
            },
        );
        self.hook(&reg.id, "add")
    }

    async fn stage_validate(
        &self,
        reg: &mut Registration,
        mut state: RotationState,
        events: &Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        emit(events, ev("validate", false, None));
        let new = self.new_secret_of(reg, &state)?;
        let value: SecretString = self.open(reg, &new)?;
        let aud = self.auditor(reg, &state.service_id, &state.actor);
        let t = target(
            "passwordCredential",
            Some(new.key_id.clone()),
            &state.marker,
        );
        let changes = json!([change(
            "clientCredentials",
            Value::Null,
            json!({"key_id": new.key_id, "scope": self.inner.validate_scope})
        )]);
        aud.entry(
            "authentication.verify",
            Phase::Intent,
            &t,
            changes.clone(),
            None,
        )
        .await?;
        let scope = self.inner.validate_scope.clone();
        let seq = match self.client_credentials(reg, &value, &scope, true).await {
            Ok(_) => {
                aud.entry("authentication.verify", Phase::Succeeded, &t, changes, None)
                    .await?
            }
            Err(e) => {
                let text = e.to_string();
                let _ = aud
                    .entry(
                        "authentication.verify",
                        Phase::Failed,
                        &t,
                        changes,
                        Some(&text),
                    )
                    .await;
                return Err(e);
            }
        };
        state.stage = RotationStage::HandingOver;
        reg.rotations.insert(state.service_id.clone(), state);
        self.save(reg).await?;
        emit(events, ev("validate", true, Some(seq)));
        self.hook(&reg.id, "validate")
    }

    async fn stage_hand_over(
        &self,
        reg: &mut Registration,
        mut state: RotationState,
        events: &Option<UnboundedSender<RotationEvent>>,
    ) -> Result<(), CredentialsError> {
        emit(events, ev("hand_over", false, None));
        let new = self.new_secret_of(reg, &state)?;
        let new_key = Registration::secret_key(&new);
        let remove_after = OffsetDateTime::now_utc()
            + time::Duration::seconds(i64::try_from(state.overlap_secs).unwrap_or(i64::MAX / 2));
        let aud = self.auditor(reg, &state.service_id, &state.actor);
        let seq = aud
            .entry(
                "secret.hand_over",
                Phase::Succeeded,
                &target(
                    "passwordCredential",
                    Some(new.key_id.clone()),
                    &state.service_id,
                ),
                json!([
                    change("currentKeyId", json!(state.old_key), json!(new.key_id)),
                    change("oldRemovedAfter", Value::Null, json!(rfc3339(remove_after))),
                ]),
                None,
            )
            .await?;
        reg.current.insert(state.service_id.clone(), new_key);
        state.remove_after = Some(rfc3339(remove_after));
        state.stage = RotationStage::WaitingOverlap;
        reg.rotations.insert(state.service_id.clone(), state);
        self.save(reg).await?;
        emit(events, ev("hand_over", true, Some(seq)));
        self.hook(&reg.id, "hand_over")
    }

    async fn wait_overlap(
        &self,
        r: &RegistrationRef,
        service_id: &str,
    ) -> Result<(), CredentialsError> {
        let reg = self.registration(r)?;
        let Some(until) = reg
            .rotations
            .get(service_id)
            .and_then(|s| s.remove_after.as_deref())
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        else {
            return Ok(());
        };
        let left = until - OffsetDateTime::now_utc();
        if left.is_positive() {
            tokio::time::sleep(left.unsigned_abs()).await;
        }
        Ok(())
    }

    async fn stage_remove_old(
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
        let aud = self.auditor(reg, &state.service_id, &state.actor);
        aud.entry(
            "secret.rotate",
            Phase::Succeeded,
            &target("application", reg.app_object_id.clone(), &reg.display_name),
            json!([
                change("rotationId", Value::Null, json!(state.id)),
                change("currentKeyId", json!(state.old_key), json!(state.new_key)),
            ]),
            None,
        )
        .await?;
        self.save(reg).await?;
        emit(events, ev("remove_old", true, seq));
        self.hook(&reg.id, "remove_old")
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

/// The `displayName` of a rotation's new secret: the service, then the attempt.
fn marker(service_id: &str, attempt: &str) -> String {
    let short: String = attempt.chars().take(8).collect();
    format!("{service_id} rotation {short}")
}
