//! The `onboard.v1.Credentials` service (operators only) over [`credentials::Credentials`]:
//! secrets per service (add, rotate with overlap, revoke, list, expiring), application
//! permissions and directory roles, and attaching hand-made registrations.
//!
//! Registrations made by onboardings are imported when the server starts and, lazily, on a
//! lookup that misses. Entra changes are audited by the manager (intent → call → outcome, fail
//! closed); reads are one `succeeded` entry each, appended before the answer. A secret value
//! appears only in the response of the call that made it.

mod convert;
mod sessions;

pub use sessions::SESSION_IDLE_ACTOR;

use std::time::Duration;

use credentials::{AttachRequest, NewSecret, RegistrationRef, RotationEvent, UpdateRequest};
use onboard_core::audit::{Action, AuditEntry, Phase, Scope, Target, TargetKind};
use onboard_proto::v1 as pb;
use onboard_proto::v1::credentials_server::Credentials as CredentialsRpc;
use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::App;
use crate::BoxStream;
use crate::auth::Role;
use crate::clock::optional_duration;
use crate::error::{Result, ServerError};
use crate::sealing::Delivery;
use convert::{
    expiring_pb, grants_pb, new_secret_pb, reg_ref, registration_pb, rotation_pb, secret_pb,
};

/// The audit actor of automatic rotations.
pub const AUTO_ROTATE_ACTOR: &str = "system:auto-rotate";

/// The longest `valid_for` of a new secret: far past any tenant policy, and short of the year
/// 9999 where time arithmetic ends.
const MAX_SECRET_VALIDITY: time::Duration = time::Duration::days(36_500);
/// The longest rotation overlap: the old secret stays valid this long after the hand-over.
const MAX_OVERLAP: Duration = Duration::from_secs(365 * 24 * 3600);
/// The most services an attached registration may name: each is recorded (twice) in the
/// attach's audit entries, which must stay well under the log's 65,535-byte entry limit.
const MAX_SERVICES: usize = 64;
/// The longest service id, as the credential manager allows it.
const MAX_SERVICE_ID: usize = 128;
/// The longest platform version, as CreateInvitation allows it.
const MAX_PLATFORM_VERSION: usize = 64;

/// Serves credentials from the shared [`App`].
#[derive(Clone)]
pub struct CredentialsService {
    /// Authentication, the credential manager, the engine (imports) and the audit log.
    app: App,
}

impl std::fmt::Debug for CredentialsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsService").finish_non_exhaustive()
    }
}

impl CredentialsService {
    /// A service over `app`.
    pub fn new(app: App) -> Self {
        Self { app }
    }

    /// Operators only (a call taken from the caller's bucket of expensive calls): the audit
    /// actor and the request's message.
    fn operator<T>(&self, req: Request<T>) -> Result<(String, T)> {
        let id = self.app.auth().authorize(&req, &[Role::Operator])?.identity;
        // Changes and Graph reads take from the caller's bucket (`[limits]`).
        self.app.guards().expensive_call(&req, &id)?;
        Ok((id, req.into_inner()))
    }

    /// The registration, importing completed onboardings first if it is not managed yet.
    async fn managed(&self, r: Option<&pb::RegistrationRef>) -> Result<RegistrationRef> {
        let r = reg_ref(r)?;
        self.app
            .credentials()
            .ensure_imported(self.app.engine(), &r)
            .await?;
        Ok(r)
    }

    /// One `succeeded` entry for a read, appended before the answer (fail closed).
    async fn record_read(
        &self,
        actor: &str,
        action: Action,
        r: Option<&RegistrationRef>,
    ) -> Result<u64> {
        let mut scope = Scope::actor(actor);
        let mut entry = AuditEntry::new(action, Phase::Succeeded, &scope);
        if let Some(r) = r {
            let app_object_id = self.app.credentials().registration(r)?.app_object_id;
            scope.tenant_id = Some(r.tenant_id.clone());
            scope.client_id = Some(r.client_id.clone());
            entry = AuditEntry::new(action, Phase::Succeeded, &scope)
                .with_target(Target::new(TargetKind::Application, app_object_id));
        }
        Ok(entry.append(self.app.audit()).await?)
    }

    async fn add(&self, req: Request<pb::AddServiceSecretRequest>) -> Result<pb::NewSecret> {
        let (actor, r) = self.operator(req)?;
        ServerError::required("service_id", &r.service_id)?;
        let service = credentials::check_service(&r.service_id)?.to_owned();
        let delivery = Delivery::from_request(r.seal_to.as_ref())?;
        let valid_for = optional_duration(r.valid_for.as_ref(), "valid_for")?
            .map(|d| time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
        if valid_for.is_some_and(|d| d.whole_seconds() < 3600) {
            return Err(ServerError::invalid("valid_for", "at least one hour"));
        }
        if valid_for.is_some_and(|d| d > MAX_SECRET_VALIDITY) {
            return Err(ServerError::invalid(
                "valid_for",
                "at most 100 years (36,500 days); a tenant policy may allow less",
            ));
        }
        let reg = self.managed(r.registration.as_ref()).await?;
        // A caller that goes away (a deadline, a disconnect) does not stop it (`guard_layer`):
        // the secret Entra made is stored, listed and revocable; only its value is lost.
        let s = self
            .app
            .credentials()
            .add_secret(&reg, &service, valid_for, &actor)
            .await?;
        self.change_done(&reg, false, &actor).await;
        self.hand_over(&reg, &s, &actor, &delivery).await
    }

    /// `s` as the answer to `actor` carries it (`delivery`), once a `secret.hand_over` entry
    /// naming the caller, the secret and the delivery is in the log (fail closed: no value
    /// leaves unrecorded; a refused one stays stored, listed and revocable).
    async fn hand_over(
        &self,
        reg: &RegistrationRef,
        s: &NewSecret,
        actor: &str,
        delivery: &Delivery,
    ) -> Result<pb::NewSecret> {
        let scope = self
            .app
            .credentials()
            .registration(reg)?
            .audit_scope(&s.info.service_id, actor);
        let target = Target::new(TargetKind::PasswordCredential, s.info.key_id.clone());
        let seq = delivery
            .hand_over_entry(Phase::Succeeded, &scope, target)
            .append(self.app.audit())
            .await?;
        new_secret_pb(s, delivery, seq)
    }

    /// A rotation's stage as the caller's stream carries it; the new secret's value only
    /// through [`Self::hand_over`].
    async fn rotation_event(
        &self,
        reg: &RegistrationRef,
        e: &RotationEvent,
        actor: &str,
        delivery: &Delivery,
    ) -> Result<pb::RotateSecretEvent> {
        let new_secret = match &e.new_secret {
            Some(s) => Some(self.hand_over(reg, s, actor, delivery).await?),
            None => None,
        };
        Ok(rotation_pb(e, new_secret))
    }

    async fn rotate(
        &self,
        req: Request<pb::RotateSecretRequest>,
    ) -> Result<BoxStream<pb::RotateSecretEvent>> {
        let (actor, r) = self.operator(req)?;
        ServerError::required("service_id", &r.service_id)?;
        // Malformed before unknown: the lookup below would call it NOT_FOUND.
        let service = credentials::check_service(&r.service_id)?.to_owned();
        let delivery = Delivery::from_request(r.seal_to.as_ref())?;
        let overlap = optional_duration(r.overlap.as_ref(), "overlap")?.unwrap_or(Duration::ZERO);
        if overlap > MAX_OVERLAP {
            return Err(ServerError::invalid(
                "overlap",
                "at most 365 days (the old secret stays valid that long after the hand-over)",
            ));
        }
        let reg = self.managed(r.registration.as_ref()).await?;
        // Refuse what cannot start before the stream opens (unknown service, running already).
        let view = self.app.credentials().registration(&reg)?;
        if !view.current.contains_key(&service) {
            return Err(ServerError::NotFound(format!(
                "service {service} has no secret on registration {}",
                reg.client_id
            )));
        }
        let (etx, mut erx) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::channel(16);
        let creds = self.app.credentials().clone();
        let svc = self.clone();
        let (caller, to) = (actor.clone(), reg.clone());
        // The rotation is durable: it goes on if the caller goes away, up to the hand-over
        // before it was handed over, to its end after.
        let run = self
            .app
            .credentials()
            .spawn(async move {
                let done = creds
                    .rotate(&reg, &service, overlap, &actor, Some(etx))
                    .await;
                if done.is_ok() {
                    svc.change_done(&reg, false, &actor).await;
                }
                done
            })
            .ok_or_else(|| ServerError::Unavailable("the server is shutting down".into()))?;
        let stop = self.app.shutdown();
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = erx.recv() => match ev {
                        Some(mut ev) => {
                            let confirm = ev.confirm.take();
                            let ev = svc.rotation_event(&to, &ev, &caller, &delivery).await;
                            let undelivered = ev.is_err();
                            // A caller gone, or a value it could not be given: stop listening
                            // (dropping `erx`), so the rotation waits before the hand-over.
                            if tx.send(ev.map_err(Into::into)).await.is_err() || undelivered {
                                return;
                            }
                            // All before it is in the caller's stream: the hand-over may go on.
                            if let Some(confirm) = confirm {
                                let _ = confirm.send(());
                            }
                        }
                        None => break,
                    },
                    // The caller went away (a deadline, a disconnect): the rotation goes on
                    // without it to the hand-over, and waits there for the next RotateSecret,
                    // so no secret becomes current that nobody was sent.
                    () = tx.closed() => return,
                    // Graceful shutdown waits for open calls; an overlap can be long. The
                    // stream ends here; the rotation is durable and resumes at the next start.
                    () = stop.recv() => {
                        let e = ServerError::Unavailable(
                            "the server is shutting down; the rotation continues after restart"
                                .into(),
                        );
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
            let result = match run.await {
                Ok(Some(r)) => r.map_err(ServerError::from),
                Ok(None) => Err(ServerError::Unavailable(
                    "the server is shutting down; the rotation continues after restart".into(),
                )),
                Err(e) => Err(ServerError::Internal(format!("rotation task: {e}"))),
            };
            if let Err(e) = result {
                let _ = tx.send(Err(e.into())).await;
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn revoke(
        &self,
        req: Request<pb::RevokeSecretRequest>,
    ) -> Result<pb::RevokeSecretResponse> {
        let (actor, r) = self.operator(req)?;
        ServerError::uuid("key_id", &r.key_id)?;
        let reg = self.managed(r.registration.as_ref()).await?;
        let seq = self
            .app
            .credentials()
            .revoke(&reg, &r.key_id, &actor)
            .await?;
        self.change_done(&reg, false, &actor).await;
        Ok(pb::RevokeSecretResponse {
            audit_seq: seq.unwrap_or(0),
        })
    }

    async fn list(&self, req: Request<pb::ListSecretsRequest>) -> Result<pb::ListSecretsResponse> {
        let (actor, r) = self.operator(req)?;
        let reg = self.managed(r.registration.as_ref()).await?;
        let secrets = self.app.credentials().list_secrets(&reg)?;
        self.record_read(&actor, Action::CredentialsListSecrets, Some(&reg))
            .await?;
        Ok(pb::ListSecretsResponse {
            secrets: secrets.iter().map(secret_pb).collect(),
        })
    }

    async fn grants(&self, req: Request<pb::ListGrantsRequest>) -> Result<pb::Grants> {
        let (actor, r) = self.operator(req)?;
        let reg = self.managed(r.registration.as_ref()).await?;
        let g = self.app.credentials().list_grants(&reg).await?;
        self.record_read(&actor, Action::CredentialsListGrants, Some(&reg))
            .await?;
        Ok(grants_pb(g))
    }

    /// UpdateRoles and UpdatePermissions: the role check, at least one name to add or remove
    /// (`parts` reads the request's registration, names to add, to remove, and whether the
    /// profile's required ones may go), the change through the credential manager, then the
    /// admin session's end.
    async fn update_grants<T>(
        &self,
        req: Request<T>,
        grant: Grant,
        parts: impl FnOnce(T) -> (Option<pb::RegistrationRef>, Vec<String>, Vec<String>, bool),
    ) -> Result<pb::Grants> {
        let (actor, r) = self.operator(req)?;
        let (registration, add, remove, override_required) = parts(r);
        let update = UpdateRequest {
            add,
            remove,
            override_required,
            actor,
        };
        if update.add.is_empty() && update.remove.is_empty() {
            return Err(ServerError::invalid(
                "add",
                format!("name at least one {} to add or remove", grant.noun()),
            ));
        }
        let reg = self.managed(registration.as_ref()).await?;
        let credentials = self.app.credentials();
        let g = match grant {
            Grant::Roles => credentials.update_roles(&reg, &update).await?,
            Grant::Permissions => credentials.update_permissions(&reg, &update).await?,
        };
        self.change_done(&reg, true, &update.actor).await;
        Ok(grants_pb(g))
    }

    async fn attach(
        &self,
        req: Request<pb::AttachRegistrationRequest>,
    ) -> Result<pb::Registration> {
        let (actor, r) = self.operator(req)?;
        // The attach's own rules (a tenant, a UUID client id), before anything is recorded.
        let registration = reg_ref(r.registration.as_ref())?.checked_for_attach()?;
        ServerError::required("client_secret", &r.client_secret)?;
        ServerError::required("profile", &r.profile)?;
        // Bounded before anything is recorded: an oversized request is refused for its field,
        // not for the audit entry it would make.
        if r.service_ids.len() > MAX_SERVICES {
            return Err(ServerError::invalid(
                "service_ids",
                format!("at most {MAX_SERVICES} services"),
            ));
        }
        for s in &r.service_ids {
            // After trimming, as the service id rule reads it.
            ServerError::at_most("service_ids", s.trim(), MAX_SERVICE_ID)?;
        }
        ServerError::at_most(
            "platform_version",
            &r.platform_version,
            MAX_PLATFORM_VERSION,
        )?;
        // A registration Onboard provisioned since the last import is managed already
        // (ALREADY_EXISTS), not attached over its provisioned record.
        self.app
            .credentials()
            .ensure_imported(self.app.engine(), &registration)
            .await?;
        let view = self
            .app
            .credentials()
            .attach(AttachRequest {
                registration,
                client_secret: SecretString::from(r.client_secret),
                profile: r.profile,
                platform_version: Some(r.platform_version).filter(|v| !v.is_empty()),
                service_ids: r.service_ids,
                actor,
            })
            .await?;
        Ok(registration_pb(&view))
    }

    async fn end_session(
        &self,
        req: Request<pb::EndAdminSessionRequest>,
    ) -> Result<pb::EndAdminSessionResponse> {
        let (actor, r) = self.operator(req)?;
        // One value throughout: the one checked is the one acted on. Sessions are kept by the
        // tenant id (a GUID) the sign-in named, compared without regard to case.
        let tenant_id = &ServerError::uuid("tenant_id", r.tenant_id.trim())?;
        let temporary_app = self.app.config().platform.token_app_name();
        let ended = self
            .app
            .credentials()
            .end_admin_session(tenant_id, &temporary_app, &actor)
            .await?;
        Ok(pb::EndAdminSessionResponse {
            temporary_apps_removed: ended.temporary_apps_removed,
            session_was_usable: ended.session_was_usable,
            audit_seqs: ended.audit_seqs,
        })
    }

    async fn expiring(
        &self,
        req: Request<pb::ListExpiringRequest>,
    ) -> Result<pb::ListExpiringResponse> {
        let (actor, r) = self.operator(req)?;
        let horizon = match r.horizon_days {
            0 => self.app.config().credentials.expiry_horizon_days,
            d => d,
        };
        self.app
            .credentials()
            .import_provisioned(self.app.engine())
            .await?;
        let list = self.app.credentials().expiring(i64::from(horizon))?;
        self.record_read(&actor, Action::CredentialsListExpiring, None)
            .await?;
        Ok(pb::ListExpiringResponse {
            secrets: list.iter().map(expiring_pb).collect(),
            horizon_days: horizon,
        })
    }
}

/// What UpdateRoles or UpdatePermissions changes.
#[derive(Clone, Copy, Debug)]
enum Grant {
    /// Directory roles.
    Roles,
    /// Graph application permissions.
    Permissions,
}

impl Grant {
    /// The word for one of them, in messages.
    fn noun(self) -> &'static str {
        match self {
            Grant::Roles => "role",
            Grant::Permissions => "permission",
        }
    }
}

#[tonic::async_trait]
impl CredentialsRpc for CredentialsService {
    type RotateSecretStream = BoxStream<pb::RotateSecretEvent>;

    async fn add_service_secret(
        &self,
        request: Request<pb::AddServiceSecretRequest>,
    ) -> Result<Response<pb::NewSecret>, Status> {
        Ok(Response::new(self.add(request).await?))
    }

    async fn rotate_secret(
        &self,
        request: Request<pb::RotateSecretRequest>,
    ) -> Result<Response<Self::RotateSecretStream>, Status> {
        Ok(Response::new(self.rotate(request).await?))
    }

    async fn revoke_secret(
        &self,
        request: Request<pb::RevokeSecretRequest>,
    ) -> Result<Response<pb::RevokeSecretResponse>, Status> {
        Ok(Response::new(self.revoke(request).await?))
    }

    async fn list_secrets(
        &self,
        request: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::Grants>, Status> {
        Ok(Response::new(self.grants(request).await?))
    }

    async fn update_roles(
        &self,
        request: Request<pb::UpdateRolesRequest>,
    ) -> Result<Response<pb::Grants>, Status> {
        let parts = |r: pb::UpdateRolesRequest| {
            (r.registration, r.add, r.remove, r.override_required_roles)
        };
        Ok(Response::new(
            self.update_grants(request, Grant::Roles, parts).await?,
        ))
    }

    async fn update_permissions(
        &self,
        request: Request<pb::UpdatePermissionsRequest>,
    ) -> Result<Response<pb::Grants>, Status> {
        let parts = |r: pb::UpdatePermissionsRequest| {
            (
                r.registration,
                r.add,
                r.remove,
                r.override_required_permissions,
            )
        };
        Ok(Response::new(
            self.update_grants(request, Grant::Permissions, parts)
                .await?,
        ))
    }

    async fn attach_registration(
        &self,
        request: Request<pb::AttachRegistrationRequest>,
    ) -> Result<Response<pb::Registration>, Status> {
        Ok(Response::new(self.attach(request).await?))
    }

    async fn list_expiring(
        &self,
        request: Request<pb::ListExpiringRequest>,
    ) -> Result<Response<pb::ListExpiringResponse>, Status> {
        Ok(Response::new(self.expiring(request).await?))
    }

    async fn end_admin_session(
        &self,
        request: Request<pb::EndAdminSessionRequest>,
    ) -> Result<Response<pb::EndAdminSessionResponse>, Status> {
        Ok(Response::new(self.end_session(request).await?))
    }
}

/// At start-up: imports completed onboardings and finishes rotations a previous process left
/// (in the background, so serving does not wait for overlaps). With `auto_rotate`, rotates
/// expiring secrets every `check_interval_secs`.
pub fn spawn_background(app: &App) {
    sessions::spawn_idle_sessions(app);
    let a = app.clone();
    app.credentials().spawn(async move {
        let creds = a.credentials();
        if let Err(e) = creds.import_provisioned(a.engine()).await {
            tracing::warn!(error = %e, "importing completed onboardings failed");
        }
        match creds.resume_all().await {
            Ok(failed) => {
                for (what, e) in failed {
                    tracing::warn!(rotation = %what, error = %e, "resumed rotation failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "resuming rotations failed"),
        }
    });
    let cfg = app.config().credentials.clone();
    if !cfg.auto_rotate {
        return;
    }
    let a = app.clone();
    app.credentials().spawn(async move {
        let stop = a.shutdown();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(cfg.check_interval_secs)) => {}
                () = stop.recv() => return,
            }
            let creds = a.credentials();
            let _ = creds.import_provisioned(a.engine()).await;
            // One tracked task per check: the rotations wait out their overlaps there, while
            // this loop goes on checking; a rotation already running for a service is refused
            // (and logged), never started twice.
            let c = creds.clone();
            let overlap = Duration::from_secs(cfg.auto_rotate_overlap_secs);
            let horizon = i64::from(cfg.expiry_horizon_days);
            creds.spawn(async move {
                match c.rotate_expiring(horizon, overlap, AUTO_ROTATE_ACTOR).await {
                    Ok(done) => {
                        for (e, r) in done {
                            if let Err(err) = r {
                                tracing::warn!(client_id = %e.registration.client_id, service = %e.secret.service_id, error = %err, "automatic rotation failed");
                            }
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "expiry check failed"),
                }
            });
        }
    });
}
