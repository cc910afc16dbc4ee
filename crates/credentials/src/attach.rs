//! Becoming managed: attaching a registration the customer made by hand, validated with its own
//! client-credentials tokens against the profile. An operator attaches over gRPC (the secret is
//! theirs already); the customer's wizard attaches for its invitation's one service, and the
//! platform then claims the secret entered, once, by the attachment's id.

use std::collections::BTreeMap;

use std::convert::Infallible;
use std::fmt::Display;

use entra_client::OpContext;
use onboard_core::ResolvedProfile;
use onboard_core::audit::{Action, Change, Phase, TargetKind, set};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{Auditor, app_target, target};
use crate::error::CredentialsError;
use crate::model::{AuthMode, Registration, RegistrationView, Source, StoredSecret};
use crate::store::registration_key;
use crate::{Credentials, RegistrationRef, check_ref};

/// The id prefix of a registration taken under management by attaching it, and of every
/// attachment an invitation makes (the prefix and a UUIDv4): an invitation spent attaching
/// names this id as its onboarding, and ClaimSecret takes it.
pub const ATTACHED_ID_PREFIX: &str = "att-";

/// What the customer entered for a hand-made registration.
pub struct AttachRequest {
    /// The registration's tenant and client id.
    pub registration: RegistrationRef,
    /// Its client secret (never logged; stored sealed).
    pub client_secret: SecretString,
    /// The profile it must satisfy.
    pub profile: String,
    /// Platform version for the profile (older versions need more).
    pub platform_version: Option<String>,
    /// The services that use it (each gets the secret as its current one).
    pub service_ids: Vec<String>,
    /// Audit actor.
    pub actor: String,
}

impl std::fmt::Debug for AttachRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachRequest")
            .field("registration", &self.registration)
            .field("profile", &self.profile)
            .field("service_ids", &self.service_ids)
            .finish_non_exhaustive()
    }
}

/// The attached registration.
pub type AttachResult = RegistrationView;

/// A recorded attachment: what the platform's ClaimSecret of its id hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The registration attached.
    pub registration: RegistrationRef,
    /// The service the secret entered was given to.
    pub service_id: String,
    /// The secret entered (its key in the registration's secrets); `None` for attachments
    /// recorded before this was kept, whose claim falls back to the service's current secret.
    pub secret_key: Option<String>,
}

/// What an invitation's attach did.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The registration, as managed now.
    pub view: RegistrationView,
    /// The attachment's id (`att-` and a UUID): the registration's own id when the attach
    /// made it managed, a new one when the service joined a registration already managed.
    /// The invitation is redeemed with it; the platform claims the secret with it.
    pub attachment_id: String,
}

/// How an invitation's attach ended when nothing in the credential store failed.
#[derive(Debug)]
pub enum Gated<E> {
    /// Validated, the gate passed, stored and audited.
    Attached(Box<Attached>),
    /// Validated, but the gate refused (e.g. the invitation could not be redeemed): nothing
    /// stored; the attach's `failed` entry says why.
    Refused(E),
}

/// Who attaches, and so what an attach may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// An operator over gRPC (AttachRegistration): a registration already managed is
    /// ALREADY_EXISTS; any number of services.
    Operator,
    /// The customer's wizard ("Use App Registration") for its invitation's one service. A
    /// registration already managed gains the service, with the secret entered as its own:
    /// the vendor's manual lets additional services reuse a registration this way, a new
    /// secret per service. The attachment is recorded for the platform's claim.
    Invitation,
}

impl Mode {
    /// The attach's audited `changes`, ending with the `attachmentId` when an invitation
    /// attaches (its intent and its outcome both name the attachment the platform claims).
    fn with_attachment(self, mut changes: Vec<Change>, attachment_id: &str) -> Vec<Change> {
        if self == Mode::Invitation {
            changes.push(set("attachmentId", json!(attachment_id)));
        }
        changes
    }
}

impl RegistrationRef {
    /// The registration an attach names, checked by the rules every caller shares, before
    /// anything is looked up, stored or recorded: the tenant as CreateInvitation takes one
    /// ([`onboard_core::text::check_tenant`]: its id, a GUID, or one of its domain names;
    /// `organizations`, `common` and `consumers` name no tenant, and Entra issues an app's own
    /// token only at its tenant's authority, AADSTS50059), and the client id a UUID, as Entra
    /// gives every application. INVALID_ARGUMENT on `registration.tenant_id` or
    /// `registration.client_id` saying the rule broken, never the value: a client secret pasted
    /// into the wrong box must reach no message, no log and no audit entry (the attach's intent
    /// names the client id). `Ok` is the reference in lower case, as registrations are kept
    /// and compared. Callers trim first if they trim (the wizard does; gRPC takes the fields
    /// as sent).
    pub fn checked_for_attach(&self) -> Result<RegistrationRef, CredentialsError> {
        let tenant = &self.tenant_id;
        if tenant.is_empty() {
            return Err(CredentialsError::InvalidArgument {
                field: "registration.tenant_id",
                reason: "required".into(),
            });
        }
        onboard_core::text::check_tenant(tenant).map_err(|reason| {
            CredentialsError::InvalidArgument {
                field: "registration.tenant_id",
                reason,
            }
        })?;
        let client = &self.client_id;
        if client.is_empty() {
            return Err(CredentialsError::InvalidArgument {
                field: "registration.client_id",
                reason: "required".into(),
            });
        }
        if !onboard_core::text::is_guid(client) {
            return Err(CredentialsError::InvalidArgument {
                field: "registration.client_id",
                reason: "must be a UUID (8-4-4-4-12 hexadecimal digits), the application \
                         (client) id Entra shows for the app registration"
                    .into(),
            });
        }
        let checked =
            RegistrationRef::new(tenant.to_ascii_lowercase(), client.to_ascii_lowercase());
        // The lookup rules (length, no '/'), which a domain of more than 128 characters breaks.
        check_ref(&checked)?;
        Ok(checked)
    }
}

impl Credentials {
    /// Validates and attaches a hand-made registration: a client-credentials token must be
    /// issued with the secret, and its `roles` (per resource) and `wids` must cover the
    /// profile's permissions and directory roles; otherwise FAILED_PRECONDITION with the precise
    /// list of what is missing. Audited; from then on it is managed like one Onboard made.
    /// One already managed is ALREADY_EXISTS.
    pub async fn attach(&self, req: AttachRequest) -> Result<AttachResult, CredentialsError> {
        let pass = |_: String| async { Ok::<(), Infallible>(()) };
        match self.attach_in(req, Mode::Operator, pass).await? {
            Gated::Attached(a) => Ok(a.view),
            Gated::Refused(never) => match never {},
        }
    }

    /// The customer's "Use App Registration" for an invitation's one service (exactly one in
    /// `service_ids`): validated as [`Credentials::attach`], then `gate` is called with the
    /// attachment id, and only when it passes is anything stored (so an invitation that can
    /// no longer be redeemed leaves no registration managed). A registration already managed
    /// (provisioned or attached; import completed onboardings first) gains the service with
    /// the secret entered; a service that already has a secret on it is ALREADY_EXISTS.
    pub async fn attach_for_invitation<E, G>(
        &self,
        req: AttachRequest,
        gate: G,
    ) -> Result<Gated<E>, CredentialsError>
    where
        E: Display,
        G: AsyncFnOnce(String) -> Result<(), E>,
    {
        self.attach_in(req, Mode::Invitation, gate).await
    }

    /// Attachment `id` (see [`Attached::attachment_id`]): its registration, service and secret.
    pub fn attachment(&self, id: &str) -> Result<Option<Attachment>, CredentialsError> {
        Ok(self.all()?.into_iter().find_map(|r| {
            let service_id = r.attachments.get(id)?.clone();
            let secret_key = r.attachment_secrets.get(id).cloned();
            Some(Attachment {
                registration: RegistrationRef::new(r.tenant_id, r.client_id),
                service_id,
                secret_key,
            })
        }))
    }

    /// The request's own checks; the profile it must satisfy.
    fn check_attach_request(
        &self,
        req: &AttachRequest,
    ) -> Result<ResolvedProfile, CredentialsError> {
        // The registration is checked (`checked_for_attach`) by `attach_in`, which keeps it.
        if req.client_secret.expose_secret().is_empty() {
            return Err(CredentialsError::InvalidArgument {
                field: "client_secret",
                reason: "required".into(),
            });
        }
        if req.service_ids.is_empty() {
            return Err(CredentialsError::InvalidArgument {
                field: "service_ids",
                reason: "at least one service uses the registration".into(),
            });
        }
        for s in &req.service_ids {
            // Trimmed already by `attach_in`.
            onboard_core::platform::service_id(s).map_err(|rule| {
                CredentialsError::InvalidArgument {
                    field: "service_ids",
                    reason: format!("{s:?}: {rule}"),
                }
            })?;
        }
        // CreateInvitation's rule: an unknown profile is `profile`'s fault; a non-empty version
        // that is not dotted numeric is `platform_version`'s, whatever the profile.
        Ok(self
            .inner
            .profiles
            .resolve_requested(&req.profile, req.platform_version.as_deref().unwrap_or(""))
            .map_err(|v| CredentialsError::InvalidArgument {
                field: if v.field == "profile" {
                    "profile"
                } else {
                    "platform_version"
                },
                reason: v.description,
            })?
            // A hand-made registration needs what the service needs; rotating itself is
            // optional for it (detected below).
            .without_self_rotation())
    }

    /// The attach: checks, validation against Microsoft, the gate, then the one write.
    async fn attach_in<E, G>(
        &self,
        mut req: AttachRequest,
        mode: Mode,
        gate: G,
    ) -> Result<Gated<E>, CredentialsError>
    where
        E: Display,
        G: AsyncFnOnce(String) -> Result<(), E>,
    {
        // Stored and looked up trimmed, as every call takes a service id.
        for s in &mut req.service_ids {
            *s = s.trim().to_owned();
        }
        // Whoever calls: nothing of a malformed reference reaches a lookup or the intent below
        // (its client id is written there). Kept in lower case, as registrations are compared.
        req.registration = req.registration.checked_for_attach()?;
        let profile = self.check_attach_request(&req)?;
        if mode == Mode::Invitation && req.service_ids.len() != 1 {
            return Err(CredentialsError::InvalidArgument {
                field: "service_ids",
                reason: "an invitation attaches for exactly one service".into(),
            });
        }
        // Kept by the tenant's id, as a provisioned registration and the admin session are: a
        // domain names the same tenant, so it must find (and be refused as) the same record.
        if !onboard_core::text::is_guid(&req.registration.tenant_id) {
            req.registration.tenant_id = self.tenant_id_of(&req.registration.tenant_id).await?;
        }
        let (tenant, client) = (&req.registration.tenant_id, &req.registration.client_id);
        // Two attaches of one registration run one after the other (the second is refused,
        // or joins what the first stored).
        let lock = self.lock_for(&registration_key(tenant, client));
        let _g = lock.lock().await;
        let managed = self
            .inner
            .store
            .get::<Registration>(&registration_key(tenant, client))?;
        let joining = managed.is_some();
        let mut reg = match managed {
            Some(_) if mode == Mode::Operator => {
                return Err(CredentialsError::AlreadyExists(format!(
                    "registration {client} in tenant {tenant} is already managed"
                )));
            }
            Some(reg) => {
                let service = &req.service_ids[0];
                if let Some(s) = reg.current_secret(service) {
                    return Err(CredentialsError::AlreadyExists(format!(
                        "service {service} already has a secret on registration {client} \
                         (hint {}); rotate it (Credentials.RotateSecret) instead",
                        s.hint
                    )));
                }
                reg
            }
            None => Registration {
                id: format!("{ATTACHED_ID_PREFIX}{}", Uuid::new_v4()),
                tenant_id: tenant.clone(),
                client_id: client.clone(),
                app_object_id: None,
                sp_id: String::new(),
                display_name: client.clone(),
                profile: profile.clone(),
                source: Source::Attached,
                auth_mode: AuthMode::AdminSession,
                secrets: BTreeMap::new(),
                current: BTreeMap::new(),
                attached_at: onboard_core::time::now(),
                rotations: BTreeMap::new(),
                attachments: BTreeMap::new(),
                attachment_secrets: BTreeMap::new(),
            },
        };
        let attachment_id = if joining {
            format!("{ATTACHED_ID_PREFIX}{}", Uuid::new_v4())
        } else {
            reg.id.clone()
        };
        let hint: String = req.client_secret.expose_secret().chars().take(3).collect();
        let aud = self.auditor(&reg, &req.service_ids.join(","), &req.actor);
        let t = if joining {
            app_target(&reg)
        } else {
            target(TargetKind::Application, None, client)
        };
        // No hint of the secret before it proved it authenticates: a value pasted by mistake
        // (a password) would leave its start, or all of a short one, in the append-only log.
        let intent = mode.with_attachment(
            vec![
                set("clientId", json!(client)),
                set("profile", json!(req.profile)),
                set("serviceIds", json!(req.service_ids)),
            ],
            &attachment_id,
        );
        aud.entry(
            Action::RegistrationAttach,
            Phase::Intent,
            &t,
            intent.clone(),
            None,
        )
        .await?;
        // Validated against the profile asked for; a registration joined keeps its own.
        let mut probe = Registration {
            profile,
            ..reg.clone()
        };
        let claims_oid = self
            .validate_attach(&aud, &t, &intent, &mut probe, &req.client_secret)
            .await?;
        if !joining {
            reg = probe;
            reg.sp_id = claims_oid;
        }
        let mut secret = StoredSecret {
            key_id: String::new(),
            hint: hint.clone(),
            service_id: req.service_ids[0].clone(),
            start: String::new(),
            end: String::new(),
            sealed: self.seal(&reg.id, &req.client_secret)?,
        };
        self.identify_secret(&mut reg, &mut secret).await;
        let key = Registration::secret_key(&secret);
        if let Some(held) = reg.secrets.get(&key) {
            let same = self
                .open(&reg, held)
                .is_ok_and(|v| v.expose_secret() == req.client_secret.expose_secret());
            if !same {
                let e = CredentialsError::FailedPrecondition(format!(
                    "registration {client} already has a secret Onboard holds under {key}; \
                     Entra's key id of the one entered could not be read to tell them apart: \
                     sign an admin in for tenant {tenant} and try again"
                ));
                aud.failed(Action::RegistrationAttach, &t, intent, &e)
                    .await?;
                return Err(e);
            }
        }
        if let Err(e) = gate(attachment_id.clone()).await {
            let why = format!("not attached: {e}");
            aud.entry(
                Action::RegistrationAttach,
                Phase::Failed,
                &t,
                intent,
                Some(&why),
            )
            .await?;
            return Ok(Gated::Refused(e));
        }
        reg.secrets
            .entry(key.clone())
            .or_insert_with(|| secret.clone());
        for s in &req.service_ids {
            reg.current.insert(s.clone(), key.clone());
        }
        if mode == Mode::Invitation {
            reg.attachments
                .insert(attachment_id.clone(), req.service_ids[0].clone());
            reg.attachment_secrets
                .insert(attachment_id.clone(), key.clone());
        }
        if !joining && self.detect_self_rotation(&reg).await {
            // It rotates itself: the permission that takes is part of what it should hold.
            reg.auth_mode = AuthMode::SelfRotation;
            reg.profile = reg.profile.clone().with_self_rotation();
        }
        self.save(&reg).await?;
        let done = mode.with_attachment(
            vec![
                set("clientId", json!(client)),
                set("servicePrincipalId", json!(reg.sp_id)),
                set("profile", json!(req.profile)),
                set("secretKeyId", json!(secret.key_id)),
                set("secretHint", json!(hint)),
                set("authMode", json!(reg.auth_mode)),
            ],
            &attachment_id,
        );
        aud.entry(
            Action::RegistrationAttach,
            Phase::Succeeded,
            &app_target(&reg),
            done,
            None,
        )
        .await?;
        Ok(Gated::Attached(Box::new(Attached {
            view: RegistrationView::of(&reg, time::OffsetDateTime::now_utc()),
            attachment_id,
        })))
    }

    /// The secret authenticates and the grants cover `probe`'s profile: the service
    /// principal's object id from the token. Otherwise the attach's `failed` entry, and the
    /// error (FAILED_PRECONDITION naming each grant missing).
    async fn validate_attach(
        &self,
        aud: &Auditor<'_>,
        t: &onboard_core::audit::Target,
        intent: &[Change],
        probe: &mut Registration,
        secret: &SecretString,
    ) -> Result<String, CredentialsError> {
        let e = match self.check_attach(probe, secret).await {
            Ok((missing, oid)) if missing.is_empty() => return Ok(oid),
            Ok((missing, _)) => CredentialsError::MissingGrants {
                profile: probe.profile.name.clone(),
                missing,
            },
            Err(e) => e,
        };
        let _ = aud
            .failed(Action::RegistrationAttach, t, intent.to_vec(), &e)
            .await;
        Err(e)
    }

    /// The tenant id (a GUID) of `tenant`, one of its domains, from its OpenID configuration:
    /// a tenant Microsoft does not know is INVALID_ARGUMENT on `registration.tenant_id`.
    async fn tenant_id_of(&self, tenant: &str) -> Result<String, CredentialsError> {
        let sts = self.inner.entra.sts();
        sts.tenant_id(tenant, &OpContext::new())
            .await
            .map_err(|e| match (e.aadsts(), e.root()) {
                (Some(90_002), _) => crate::held::unknown_tenant(tenant),
                // Checked before (`checked_for_attach`), so not expected: the client's own
                // refusal of a value it cannot put in a URL is still the field's, said without
                // the client's message, which quotes the value.
                (_, entra_client::EntraError::InvalidInput(_)) => {
                    CredentialsError::InvalidArgument {
                        field: "registration.tenant_id",
                        reason: "must be a tenant id (a GUID) or a domain name".into(),
                    }
                }
                _ => CredentialsError::entra("tenant_id", e),
            })
    }

    /// The application's object id and name, and the secret's key id and dates, read with the
    /// admin session, else with the app's own token (it works when the app owns itself with
    /// Application.ReadWrite.OwnedBy); left unknown when neither may read them. The secret is
    /// found by its hint, and only when exactly one of the app's secrets has it.
    async fn identify_secret(&self, reg: &mut Registration, secret: &mut StoredSecret) {
        let graph = match self.admin_graph(&reg.tenant_id).await {
            Ok(g) => Some(g),
            Err(_) => {
                let tmp = Registration {
                    current: BTreeMap::from([(String::new(), "tmp".to_owned())]),
                    secrets: BTreeMap::from([("tmp".to_owned(), secret.clone())]),
                    ..reg.clone()
                };
                self.app_token(&tmp, "https://graph.microsoft.com/.default")
                    .await
                    .ok()
                    .map(|t| self.inner.entra.graph(t.access_token))
            }
        };
        let Some(g) = graph else { return };
        let Ok(app) = g
            .get_application_by_app_id(&reg.client_id, &OpContext::new())
            .await
        else {
            return;
        };
        reg.app_object_id = Some(app.value.id.clone());
        if let Some(n) = app.value.display_name.clone() {
            reg.display_name = n;
        }
        let m: Vec<_> = app
            .value
            .password_credentials
            .iter()
            .filter(|p| p.hint.as_deref() == Some(secret.hint.as_str()))
            .collect();
        if let [p] = m.as_slice() {
            secret.key_id = p.key_id.clone();
            secret.start = p.start_date_time.clone().unwrap_or_default();
            secret.end = p.end_date_time.clone().unwrap_or_default();
        }
    }
}
