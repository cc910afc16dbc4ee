//! Day-two management of the Entra app registrations Onboard manages: secrets per service
//! (add, resumable rotation with overlap, revoke, list, expiry), application permissions and
//! directory roles, and attaching registrations the customer made by hand.
//!
//! ```text
//! let creds = Credentials::new(CredentialsConfig::new(entra, audit, db.open_tree("credentials")?, key))?;
//! creds.import_provisioned(&engine).await?;   // completed onboardings (any `Provisioned`)
//! creds.resume_all().await?;                                // rotations cut short by a crash
//! creds.store_admin_session(tenant, upn, public_client_id, &scopes, &tokens).await?;  // from SignIn
//! let s = creds.add_secret(&reg, "svc-1", None, actor).await?;   // s.value: hand over once
//! creds.rotate(&reg, "svc-1", overlap, actor, |ev| ..).await?;    // add → validate → hand over → remove old
//! creds.list_secrets(&reg)?;  creds.expiring(horizon)?;  creds.revoke(&reg, key_id, actor).await?;
//! creds.list_grants(&reg).await?;  creds.update_roles(..).await?;  creds.update_permissions(..).await?;
//! creds.attach(AttachRequest { .. }).await?;           // an operator's
//! creds.attach_for_invitation(req, |id| redeem(id)).await?;  // the wizard's, for one service
//! ```
//!
//! Every Entra change is audited (intent → call → outcome, fail closed) through
//! `onboard_core::audit`. Secret values exist in clear only in [`secrecy::SecretString`]s handed
//! to the caller once; at rest they are sealed with the state store's
//! [`onboard_core::SealingKey`]. Completed onboardings come in through the narrow
//! [`onboard_core::provisioned::Provisioned`] seam, not the workflow engine.

#![warn(missing_docs)]

mod attach;
mod audit;
pub mod error;
mod grants;
mod held;
mod import;
pub mod model;
mod rotate;
mod secrets;
mod session;
pub mod store;
pub mod targets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use audit_log::AuditLog;
use entra_client::EntraClient;
use onboard_core::{Hook, HookAction, ProfileSet, Purpose, SealingKey, Shutdown};
use secrecy::SecretString;

pub use attach::{ATTACHED_ID_PREFIX, AttachRequest, AttachResult, Attached, Attachment, Gated};
pub use error::CredentialsError;
pub use grants::{Grants, UpdateRequest};
pub use model::{AuthMode, Registration, RegistrationView, SecretInfo, Source, StoredSecret};
pub use rotate::{RotationEvent, RotationStage, RotationState};
pub use secrets::{ExpiringSecret, NewSecret};
pub use session::{AdminSessionInfo, EndedSession};

/// How to build [`Credentials`].
pub struct CredentialsConfig {
    /// Talks to the identity platform and Graph.
    pub entra: EntraClient,
    /// Where every change is recorded first.
    pub audit: AuditLog,
    /// The credential store: a sled tree the caller opened (`db.open_tree("credentials")`).
    pub tree: sled::Tree,
    /// Seals secrets and admin refresh tokens at rest (the same key as the onboarding store).
    pub sealing_key: Zeroizing<[u8; 32]>,
    /// Permission profiles, for attaching and for the required-role rule.
    pub profiles: ProfileSet,
    /// Lifetime of new secrets; `None` leaves Graph's default (two years).
    pub secret_lifetime: Option<time::Duration>,
    /// Scope of the client-credentials token that proves a secret works.
    pub validate_scope: String,
    /// Test hook (simulated crashes); `None` in production. Called with `(registration id,
    /// point)` at each durable rotation step (`add`, `validate`, `hand_over`, `remove_old`,
    /// `done`) and right after each audited Entra change (`add:changed`, `remove_old:changed`);
    /// [`HookAction::Halt`] stops the work there as a crash would.
    pub hook: Option<Hook>,
    /// The server's shutdown signal: rotations start no new stage once it fires, and tasks
    /// started with [`Credentials::spawn`] get its grace, then stop where they stand.
    pub shutdown: Shutdown,
    /// The MAC every stored record carries; `None`: derived from `sealing_key` (the server
    /// passes its one instance, see `provision::EngineConfig::record_mac`).
    pub record_mac: Option<onboard_core::store::RecordMac>,
    /// How long a self-rotating registration's changes wait for `Application.ReadWrite.OwnedBy`
    /// to appear in the app's tokens (Entra issues tokens from grants that may take minutes
    /// to propagate after provisioning); then the change fails with what to do.
    pub self_rotation_wait: std::time::Duration,
}

impl CredentialsConfig {
    /// Defaults: shipped profiles, 180-day secrets, Graph `.default` validation, no hook.
    pub fn new(
        entra: EntraClient,
        audit: AuditLog,
        tree: sled::Tree,
        sealing_key: impl Into<Zeroizing<[u8; 32]>>,
    ) -> Result<Self, CredentialsError> {
        Ok(Self {
            entra,
            audit,
            tree,
            sealing_key: sealing_key.into(),
            profiles: ProfileSet::defaults()?,
            secret_lifetime: Some(time::Duration::days(180)),
            validate_scope: "https://graph.microsoft.com/.default".into(),
            hook: None,
            shutdown: Shutdown::never(),
            record_mac: None,
            self_rotation_wait: std::time::Duration::from_secs(300),
        })
    }
}

/// What the manager's clones share.
pub(crate) struct Inner {
    /// Identity platform and Graph.
    pub entra: EntraClient,
    /// The signed audit log.
    pub audit: AuditLog,
    /// Registrations, rotations and admin sessions.
    pub store: store::Store,
    /// Seals values at rest.
    pub key: SealingKey,
    /// Profiles by name.
    pub profiles: ProfileSet,
    /// Lifetime of new secrets.
    pub secret_lifetime: Option<time::Duration>,
    /// Scope of validation tokens.
    pub validate_scope: String,
    /// Test hook.
    pub hook: Option<Hook>,
    /// One lock per registration id: changes to one registration run one at a time, so two
    /// rotations cannot both remove the same old secret.
    pub locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Rotations this process is driving now.
    pub driving: rotate::Driving,
    /// The server's shutdown signal (see [`CredentialsConfig::shutdown`]).
    pub shutdown: Shutdown,
    /// See [`CredentialsConfig::self_rotation_wait`].
    pub self_rotation_wait: std::time::Duration,
}

/// The day-two manager. Cheap to clone.
#[derive(Clone)]
pub struct Credentials {
    /// Shared state.
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

/// Names a registration: tenant id and client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRef {
    /// Customer tenant id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
}

impl RegistrationRef {
    /// A reference from its two ids.
    pub fn new(tenant_id: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
        }
    }
}

impl Credentials {
    /// Builds the manager. Call [`Credentials::import_provisioned`] and
    /// [`Credentials::resume_all`] after start-up.
    pub fn new(cfg: CredentialsConfig) -> Result<Self, CredentialsError> {
        let key = SealingKey::new(cfg.sealing_key);
        Ok(Self {
            inner: Arc::new(Inner {
                entra: cfg.entra,
                audit: cfg.audit,
                store: store::Store::new(
                    cfg.tree,
                    cfg.record_mac.unwrap_or_else(|| key.record_mac()),
                ),
                key,
                profiles: cfg.profiles,
                secret_lifetime: cfg.secret_lifetime,
                validate_scope: cfg.validate_scope,
                hook: cfg.hook,
                locks: Mutex::new(HashMap::new()),
                driving: rotate::Driving::default(),
                shutdown: cfg.shutdown,
                self_rotation_wait: cfg.self_rotation_wait,
            }),
        })
    }

    /// Runs `fut` on its own task, tracked by the shutdown primitive (rotations outlive the
    /// RPC that started them, e.g. through a long overlap): once shutdown begins a rotation
    /// stops at its next durable point, and whatever still runs after the grace is cut off.
    /// Stored rotations continue with the next process's `resume_all`. `None` (nothing
    /// started) once shutdown has begun.
    pub fn spawn<F>(&self, fut: F) -> Option<tokio::task::JoinHandle<Option<F::Output>>>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.shutdown.spawn(fut)
    }

    /// Stops the work here when shutdown has begun (a durable point: it resumes later).
    pub(crate) fn check_not_stopping(&self) -> Result<(), CredentialsError> {
        if self.inner.shutdown.is_shutdown() {
            return Err(CredentialsError::Halted("shutdown".into()));
        }
        Ok(())
    }

    /// The registration `r` names, or NOT_FOUND.
    pub fn registration(&self, r: &RegistrationRef) -> Result<Registration, CredentialsError> {
        check_ref(r)?;
        self.inner
            .store
            .get(&store::registration_key(&r.tenant_id, &r.client_id))?
            .ok_or_else(|| {
                CredentialsError::NotFound(format!(
                    "no managed registration {} in tenant {}",
                    r.client_id, r.tenant_id
                ))
            })
    }

    /// The registration with client id `client_id`, in any tenant (for the Verification service).
    pub fn find(&self, client_id: &str) -> Result<Option<RegistrationView>, CredentialsError> {
        Ok(self
            .views_where(|r| r.client_id.eq_ignore_ascii_case(client_id))?
            .into_iter()
            .next())
    }

    /// The registration service `service_id` uses (its current secret belongs to it). A
    /// service with a current secret on more than one registration (a separate QoE
    /// registration, an attached one beside the provisioned one) is FAILED_PRECONDITION naming
    /// them: which one to check is the caller's choice (by client id), never the store's order.
    pub fn find_by_service(
        &self,
        service_id: &str,
    ) -> Result<Option<RegistrationView>, CredentialsError> {
        let mut found = self.views_where(|r| r.current.contains_key(service_id))?;
        if found.len() > 1 {
            let ids: Vec<&str> = found.iter().map(|v| v.client_id.as_str()).collect();
            return Err(CredentialsError::FailedPrecondition(format!(
                "service {service_id:?} holds secrets of {} registrations ({}); name the \
                 client_id to verify",
                found.len(),
                ids.join(", ")
            )));
        }
        Ok(found.pop())
    }

    /// The views of the registrations `which` picks, in store order.
    fn views_where(
        &self,
        which: impl Fn(&Registration) -> bool,
    ) -> Result<Vec<RegistrationView>, CredentialsError> {
        let now = time::OffsetDateTime::now_utc();
        Ok(self
            .all()?
            .iter()
            .filter(|r| which(r))
            .map(|r| RegistrationView::of(r, now))
            .collect())
    }

    /// Every managed registration.
    pub fn list(&self) -> Result<Vec<RegistrationView>, CredentialsError> {
        self.views_where(|_| true)
    }

    /// The current secret of `service_id` on `r`, opened. Never log it.
    pub fn current_secret(
        &self,
        r: &RegistrationRef,
        service_id: &str,
    ) -> Result<(StoredSecret, SecretString), CredentialsError> {
        let reg = self.registration(r)?;
        let s = reg.current_secret(service_id).cloned().ok_or_else(|| {
            CredentialsError::NotFound(format!(
                "service {service_id} has no secret on registration {}",
                reg.client_id
            ))
        })?;
        let v = self.open(&reg, &s)?;
        Ok((s, v))
    }

    /// Secret `key_id` of the registration (a key id, or a storage key such as
    /// [`Attachment::secret_key`]) and its value, while the registration has it (not removed by
    /// a revoke or a rotation).
    pub fn secret(
        &self,
        r: &RegistrationRef,
        key_id: &str,
    ) -> Result<Option<(StoredSecret, SecretString)>, CredentialsError> {
        let reg = self.registration(r)?;
        // A storage key as recorded (`hint:` keys keep their case), else a key id in any case.
        let found = reg
            .secrets
            .get(key_id)
            .or_else(|| reg.secrets.get(&key_id.to_ascii_lowercase()));
        let Some(s) = found.cloned() else {
            return Ok(None);
        };
        let v = self.open(&reg, &s)?;
        Ok(Some((s, v)))
    }

    pub(crate) fn all(&self) -> Result<Vec<Registration>, CredentialsError> {
        self.inner.store.scan("r/")
    }

    pub(crate) async fn save(&self, reg: &Registration) -> Result<(), CredentialsError> {
        self.inner
            .store
            .put(
                &store::registration_key(&reg.tenant_id, &reg.client_id),
                reg,
            )
            .await
    }

    pub(crate) fn seal(
        &self,
        reg_id: &str,
        value: &SecretString,
    ) -> Result<String, CredentialsError> {
        Ok(self.inner.key.seal(reg_id, Purpose::ClientSecret, value)?)
    }

    pub(crate) fn open(
        &self,
        reg: &Registration,
        s: &StoredSecret,
    ) -> Result<SecretString, CredentialsError> {
        Ok(self
            .inner
            .key
            .open(&reg.id, Purpose::ClientSecret, &s.sealed)?)
    }

    /// Registration `r`, read under its lock (held until the guard is dropped), so a change
    /// starts from the record as the previous change left it.
    pub(crate) async fn locked(
        &self,
        r: &RegistrationRef,
    ) -> Result<(tokio::sync::OwnedMutexGuard<()>, Registration), CredentialsError> {
        let guard = self.lock_for(&self.registration(r)?.id).lock_owned().await;
        Ok((guard, self.registration(r)?))
    }

    /// The lock serialising changes to registration `id`.
    pub(crate) fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_owned()).or_default().clone()
    }

    /// Asks the test hook what to do at `point`.
    pub(crate) fn hook(&self, reg_id: &str, point: &str) -> Result<(), CredentialsError> {
        match &self.inner.hook {
            None => Ok(()),
            Some(h) => match h(reg_id, point) {
                HookAction::Continue => Ok(()),
                HookAction::Halt | HookAction::Fail => {
                    Err(CredentialsError::Halted(point.to_owned()))
                }
            },
        }
    }
}

/// Checks the ids of a reference: non-empty, no `/`, bounded.
pub(crate) fn check_ref(r: &RegistrationRef) -> Result<(), CredentialsError> {
    for (field, v) in [
        ("registration.tenant_id", &r.tenant_id),
        ("registration.client_id", &r.client_id),
    ] {
        if v.is_empty() || v.len() > 128 || v.contains('/') || v.chars().any(char::is_control) {
            return Err(CredentialsError::InvalidArgument {
                field,
                reason: "required: an id of 1-128 characters without '/'".into(),
            });
        }
    }
    Ok(())
}

/// Checks a service id by the one rule ([`onboard_core::platform::service_id`]: 1-128 bytes
/// after trimming, no `/`, visible characters in NFKC form; INVALID_ARGUMENT on `service_id`)
/// and answers
/// it trimmed, as it is stored and looked up. The server checks it before looking anything up,
/// so a malformed id is refused for what it is, never reported as not found.
pub fn check_service(service_id: &str) -> Result<&str, CredentialsError> {
    onboard_core::platform::service_id(service_id).map_err(|rule| {
        CredentialsError::InvalidArgument {
            field: "service_id",
            reason: rule,
        }
    })
}
