//! Adding, revoking and listing service secrets, and the expiry report.

use entra_client::GraphClient;
use entra_client::graph::types::PasswordCredentialInfo;
use onboard_core::audit::{Action, TargetKind, change, set};
use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::audit::{Auditor, ChangeSpec, target};
use crate::error::CredentialsError;
use crate::model::{Registration, SecretInfo, StoredSecret, graph_time};
use crate::{Credentials, RegistrationRef, check_service};
use entra_client::is_policy_code;

/// A secret just made: its metadata and, once, its value.
pub struct NewSecret {
    /// Metadata.
    pub info: SecretInfo,
    /// The value: hand it over once, never log or store it in clear.
    pub value: SecretString,
    /// The audit entry recording the addition.
    pub audit_seq: u64,
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecret")
            .field("info", &self.info)
            .field("audit_seq", &self.audit_seq)
            .finish_non_exhaustive()
    }
}

/// A current secret that expires within the horizon.
#[derive(Debug, Clone)]
pub struct ExpiringSecret {
    /// The registration.
    pub registration: RegistrationRef,
    /// Its stable id.
    pub registration_id: String,
    /// The secret.
    pub secret: SecretInfo,
}

impl Credentials {
    /// Audit fields for `reg` and `service_id`, and a new correlation id for one operation.
    pub(crate) fn auditor(&self, reg: &Registration, service_id: &str, actor: &str) -> Auditor<'_> {
        Auditor::new(&self.inner.audit, reg.audit_scope(service_id, actor))
    }

    /// The application's object id, read once through `graph` when not yet known.
    pub(crate) async fn object_id(
        &self,
        graph: &GraphClient,
        reg: &mut Registration,
    ) -> Result<String, CredentialsError> {
        if let Some(id) = &reg.app_object_id {
            return Ok(id.clone());
        }
        let app = graph
            .get_application_by_app_id(&reg.client_id, &entra_client::OpContext::new())
            .await
            .map_err(|e| CredentialsError::entra("get_application", e))?
            .value;
        reg.app_object_id = Some(app.id.clone());
        self.save(reg).await?;
        Ok(app.id)
    }

    /// The secrets Entra lists for the application now (metadata only).
    pub(crate) async fn entra_passwords(
        &self,
        graph: &GraphClient,
        object_id: &str,
    ) -> Result<Vec<PasswordCredentialInfo>, CredentialsError> {
        Ok(graph
            .get_application(object_id, &entra_client::OpContext::new())
            .await
            .map_err(|e| CredentialsError::entra("get_application", e))?
            .value
            .password_credentials)
    }

    /// One audited `addPassword` labelled `display_name`. A tenant policy refusal becomes
    /// [`CredentialsError::PolicyRefused`] (nothing was added).
    #[allow(clippy::too_many_arguments)] // one audited call: its inputs are all distinct
    pub(crate) async fn add_password(
        &self,
        graph: &GraphClient,
        reg: &Registration,
        object_id: &str,
        service_id: &str,
        display_name: &str,
        valid_for: Option<time::Duration>,
        actor: &str,
    ) -> Result<(StoredSecret, SecretString, u64), CredentialsError> {
        let end = match valid_for.or(self.inner.secret_lifetime) {
            Some(d) => Some(graph_time(OffsetDateTime::now_utc().checked_add(d).ok_or(
                CredentialsError::InvalidArgument {
                    field: "valid_for",
                    reason: "too far in the future".into(),
                },
            )?)),
            None => None,
        };
        let aud = self.auditor(reg, service_id, actor);
        let spec = ChangeSpec {
            action: Action::PasswordCredentialCreate,
            target: target(TargetKind::PasswordCredential, None, display_name),
            changes: vec![
                set("application", json!(object_id)),
                set("displayName", json!(display_name)),
                set("endDateTime", json!(end)),
            ],
            after_create: false,
        };
        let (dn, end_s) = (display_name.to_owned(), end.clone());
        let res = aud
            .change(
                spec,
                |ctx| async move {
                    graph
                        .add_password(object_id, Some(&dn), end_s.as_deref(), &ctx)
                        .await
                },
                |p| {
                    vec![
                        set("keyId", json!(p.info.key_id)),
                        set("hint", json!(p.info.hint)),
                        set("endDateTime", json!(p.info.end_date_time)),
                    ]
                },
            )
            .await;
        let (p, seq) = match res {
            Ok(v) => v,
            Err(e) => {
                if let (Some(code), CredentialsError::Entra { source, .. }) = (e.graph_code(), &e)
                    && is_policy_code(code)
                {
                    let message = source
                        .graph()
                        .map(|g| g.message.clone())
                        .unwrap_or_default();
                    return Err(CredentialsError::PolicyRefused {
                        code: code.to_owned(),
                        message,
                    });
                }
                return Err(e);
            }
        };
        let stored = StoredSecret {
            key_id: p.info.key_id.clone(),
            hint: p.info.hint.clone().unwrap_or_default(),
            service_id: service_id.to_owned(),
            start: p
                .info
                .start_date_time
                .clone()
                .unwrap_or_else(onboard_core::time::now),
            end: p.info.end_date_time.clone().or(end).unwrap_or_default(),
            sealed: self.seal(&reg.id, &p.secret_text)?,
        };
        Ok((stored, p.secret_text, seq))
    }

    /// One audited `removePassword`. A key Entra no longer has counts as removed (the goal is
    /// reached; a refusal with 400 or 404 is followed by a read of the app's keys, since Graph's
    /// wording for an unknown key is not documented), so a repeat never fails and never removes
    /// twice. Returns the outcome's audit index, `None` when it was already gone.
    pub(crate) async fn remove_password(
        &self,
        graph: &GraphClient,
        reg: &Registration,
        object_id: &str,
        s: &StoredSecret,
        actor: &str,
    ) -> Result<Option<u64>, CredentialsError> {
        let aud = self.auditor(reg, &s.service_id, actor);
        let spec = ChangeSpec {
            action: Action::PasswordCredentialDelete,
            target: target(
                TargetKind::PasswordCredential,
                Some(s.key_id.clone()),
                &s.service_id,
            ),
            changes: vec![change(
                "passwordCredential",
                json!({"keyId": s.key_id, "hint": s.hint, "endDateTime": s.end}),
                Value::Null,
            )],
            after_create: false,
        };
        let key = s.key_id.clone();
        match aud
            .change(
                spec,
                |ctx| async move { graph.remove_password(object_id, &key, &ctx).await },
                |_| vec![],
            )
            .await
        {
            Ok(((), seq)) => Ok(Some(seq)),
            Err(e @ CredentialsError::Entra { .. })
                if e.graph_status().is_some_and(|s| matches!(s, 400 | 404)) =>
            {
                // Graph's wording for an unknown key is not documented: whether the app still
                // lists the key decides.
                let app = graph
                    .get_application(object_id, &entra_client::OpContext::new())
                    .await;
                match app {
                    Ok(app)
                        if !app
                            .value
                            .password_credentials
                            .iter()
                            .any(|p| p.key_id.eq_ignore_ascii_case(&s.key_id)) =>
                    {
                        Ok(None)
                    }
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A new secret for `service_id`, which becomes the service's current one (the previous one
    /// stays valid and listed until revoked). The value is in the result only.
    pub async fn add_secret(
        &self,
        r: &RegistrationRef,
        service_id: &str,
        valid_for: Option<time::Duration>,
        actor: &str,
    ) -> Result<NewSecret, CredentialsError> {
        let service_id = check_service(service_id)?;
        if let Some(d) = valid_for
            && d <= time::Duration::ZERO
        {
            return Err(CredentialsError::InvalidArgument {
                field: "valid_for",
                reason: "must be positive".into(),
            });
        }
        let (_g, mut reg) = self.locked(r).await?;
        // Its hand-over would replace the secret added here (and never remove it).
        if let Some(rot) = reg.rotations.get(service_id).filter(|s| !s.handed_over()) {
            let end = match &rot.new_key {
                Some(k) => format!(" or end it (RevokeSecret of its new secret {k})"),
                None => String::new(),
            };
            return Err(CredentialsError::FailedPrecondition(format!(
                "a rotation of {service_id} has not made its new secret current yet; finish it \
                 (RotateSecret){end} first"
            )));
        }
        let graph = self.secrets_graph(&reg).await?;
        let object_id = self.object_id(&graph, &mut reg).await?;
        let (stored, value, seq) = self
            .add_password(
                &graph, &reg, &object_id, service_id, service_id, valid_for, actor,
            )
            .await?;
        let key = Registration::secret_key(&stored);
        reg.secrets.insert(key.clone(), stored.clone());
        reg.current.insert(service_id.to_owned(), key);
        self.save(&reg).await?;
        Ok(NewSecret {
            info: SecretInfo::of(&stored, true, OffsetDateTime::now_utc()),
            value,
            audit_seq: seq,
        })
    }

    /// Removes secret `key_id`. A service's current secret is refused (rotate it first, with
    /// overlap 0 for a leaked one), so a revoke never leaves a service without a secret. The new
    /// secret of a rotation not handed over yet ends that rotation first (the way to end one
    /// that cannot finish, e.g. refused at `validate`); while a call or the server drives the
    /// rotation it is refused.
    pub async fn revoke(
        &self,
        r: &RegistrationRef,
        key_id: &str,
        actor: &str,
    ) -> Result<Option<u64>, CredentialsError> {
        if key_id.is_empty() {
            return Err(CredentialsError::InvalidArgument {
                field: "key_id",
                reason: "required".into(),
            });
        }
        let key = key_id.to_ascii_lowercase();
        // Marked before the lock, as a driver is: a rotation's new secret ends its rotation.
        let ending = self.rotation_to_end(r, &key)?;
        let (_g, mut reg) = self.locked(r).await?;
        let Some(s) = reg.secrets.get(&key).cloned() else {
            return Err(CredentialsError::NotFound(format!(
                "registration {} has no managed secret {key_id}",
                reg.client_id
            )));
        };
        let rotation = reg
            .rotations
            .values()
            .find(|r| r.new_key.as_deref() == Some(key.as_str()))
            .cloned();
        // Became a rotation's new secret since the look above: not this call's to end.
        if let Some(rot) = &rotation
            && (ending.is_none() || rot.handed_over())
        {
            return Err(CredentialsError::FailedPrecondition(format!(
                "secret {key_id} is the new secret of the rotation of {} in progress; retry",
                rot.service_id
            )));
        }
        let users = reg.users_of(&key);
        if !users.is_empty() {
            return Err(CredentialsError::FailedPrecondition(format!(
                "secret {key_id} is the current secret of {}; rotate it first (overlap 0 \
                 removes it at once) so the service keeps a working secret",
                users.join(", ")
            )));
        }
        // What the removal needs, before the rotation is ended: one that cannot act (no
        // session, Entra down) ends nothing.
        let graph = self.secrets_graph(&reg).await?;
        let object_id = self.object_id(&graph, &mut reg).await?;
        if let Some(rot) = &rotation {
            self.end_rotation(&mut reg, rot, &key, actor).await?;
        }
        let seq = self
            .remove_password(&graph, &reg, &object_id, &s, actor)
            .await?;
        reg.secrets.remove(&key);
        self.save(&reg).await?;
        Ok(seq)
    }

    /// Every secret held for the registration (metadata only), soonest expiry first.
    pub fn list_secrets(&self, r: &RegistrationRef) -> Result<Vec<SecretInfo>, CredentialsError> {
        let reg = self.registration(r)?;
        let now = OffsetDateTime::now_utc();
        let mut v: Vec<SecretInfo> = reg
            .secrets
            .iter()
            .map(|(k, s)| SecretInfo::of(s, !reg.users_of(k).is_empty(), now))
            .collect();
        v.sort_by(|a, b| a.end.cmp(&b.end).then(a.key_id.cmp(&b.key_id)));
        Ok(v)
    }

    /// Rotates every current secret expiring within `horizon_days` (each on its own tracked
    /// task, concurrently; each waits out `overlap`). Returns each secret with its outcome.
    pub async fn rotate_expiring(
        &self,
        horizon_days: i64,
        overlap: std::time::Duration,
        actor: &str,
    ) -> Result<Vec<(ExpiringSecret, Result<(), CredentialsError>)>, CredentialsError> {
        let mut handles = Vec::new();
        for e in self.expiring(horizon_days)? {
            let me = self.clone();
            let actor = actor.to_owned();
            let (r, service) = (e.registration.clone(), e.secret.service_id.clone());
            let Some(h) =
                self.spawn(async move { me.rotate(&r, &service, overlap, &actor, None).await })
            else {
                break;
            };
            handles.push((e, h));
        }
        let mut out = Vec::new();
        for (e, h) in handles {
            let res = match h.await {
                Ok(Some(r)) => r,
                Ok(None) => Err(CredentialsError::Halted("shutdown".into())),
                Err(j) => Err(CredentialsError::Store(format!("rotation task: {j}"))),
            };
            out.push((e, res));
        }
        Ok(out)
    }

    /// Current secrets of every registration expiring within `horizon_days` (or expired).
    pub fn expiring(&self, horizon_days: i64) -> Result<Vec<ExpiringSecret>, CredentialsError> {
        let now = OffsetDateTime::now_utc();
        let mut out = Vec::new();
        for reg in self.all()? {
            for (service, key) in &reg.current {
                let Some(s) = reg.secrets.get(key) else {
                    continue;
                };
                let info = SecretInfo::of(s, true, now);
                if info.days_until_expiry <= horizon_days {
                    out.push(ExpiringSecret {
                        registration: RegistrationRef::new(&reg.tenant_id, &reg.client_id),
                        registration_id: reg.id.clone(),
                        secret: SecretInfo {
                            service_id: service.clone(),
                            ..info
                        },
                    });
                }
            }
        }
        out.sort_by(|a, b| a.secret.end.cmp(&b.secret.end));
        Ok(out)
    }
}
