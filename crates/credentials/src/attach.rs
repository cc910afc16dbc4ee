//! Becoming managed: attaching a registration the customer made by hand (validated with its own
//! client-credentials tokens against the profile), and importing completed onboardings.

use std::collections::BTreeMap;

use entra_client::{OpContext, TokenSet};
use onboard_core::audit::{Action, Phase, TargetKind, set};
use onboard_core::profiles::{PermissionRef, Resource};
use onboard_core::provisioned::Provisioned;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{app_target, target};
use crate::error::CredentialsError;
use crate::grants::permission_name;
use crate::model::{AuthMode, Registration, RegistrationView, Source, StoredSecret};
use crate::session::OPAQUE_TOKEN;
use crate::store::registration_key;
use crate::{Credentials, RegistrationRef, check_ref, check_service};

/// The id prefix of a registration taken under management by attaching it (its id is the
/// prefix and a UUIDv4); an invitation spent attaching one names this id as its onboarding.
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

impl Credentials {
    /// Validates and attaches a hand-made registration: a client-credentials token must be
    /// issued with the secret, and its `roles` (per resource) and `wids` must cover the
    /// profile's permissions and directory roles; otherwise FAILED_PRECONDITION with the precise
    /// list of what is missing. Audited; from then on it is managed like one Onboard made.
    pub async fn attach(&self, req: AttachRequest) -> Result<AttachResult, CredentialsError> {
        check_ref(&req.registration)?;
        if entra_client::sts::is_tenant_independent(&req.registration.tenant_id) {
            // Entra issues an app's own token only at its tenant's authority (AADSTS50059).
            return Err(CredentialsError::InvalidArgument {
                field: "registration.tenant_id",
                reason: "the tenant's id or domain, not a tenant-independent authority".into(),
            });
        }
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
            check_service(s).map_err(|_| CredentialsError::InvalidArgument {
                field: "service_ids",
                reason: format!("{s:?} is not a service id"),
            })?;
        }
        // CreateInvitation's rule: an unknown profile is `profile`'s fault; a non-empty version
        // that is not dotted numeric is `platform_version`'s, whatever the profile.
        let profile = self
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
            .without_self_rotation();
        let (tenant, client) = (&req.registration.tenant_id, &req.registration.client_id);
        // Two attaches of one registration run one after the other (the second is refused).
        let lock = self.lock_for(&registration_key(tenant, client));
        let _g = lock.lock().await;
        if self
            .inner
            .store
            .get::<Registration>(&registration_key(tenant, client))?
            .is_some()
        {
            return Err(CredentialsError::AlreadyExists(format!(
                "registration {client} in tenant {tenant} is already managed"
            )));
        }
        let id = format!("{ATTACHED_ID_PREFIX}{}", Uuid::new_v4());
        let hint: String = req.client_secret.expose_secret().chars().take(3).collect();
        let mut reg = Registration {
            id: id.clone(),
            tenant_id: tenant.clone(),
            client_id: client.clone(),
            app_object_id: None,
            sp_id: String::new(),
            display_name: client.clone(),
            profile,
            source: Source::Attached,
            auth_mode: AuthMode::AdminSession,
            secrets: BTreeMap::new(),
            current: BTreeMap::new(),
            attached_at: onboard_core::time::now(),
            rotations: BTreeMap::new(),
        };
        let aud = self.auditor(&reg, &req.service_ids.join(","), &req.actor);
        let t = target(TargetKind::Application, None, client);
        let intent = vec![
            set("clientId", json!(client)),
            set("profile", json!(req.profile)),
            set("secretHint", json!(hint)),
            set("serviceIds", json!(req.service_ids)),
        ];
        aud.entry(
            Action::RegistrationAttach,
            Phase::Intent,
            &t,
            intent.clone(),
            None,
        )
        .await?;
        let checked = self.check_attach(&mut reg, &req.client_secret).await;
        let (missing, claims_oid) = match checked {
            Ok(v) => v,
            Err(e) => {
                let _ = aud.failed(Action::RegistrationAttach, &t, intent, &e).await;
                return Err(e);
            }
        };
        if !missing.is_empty() {
            let e = CredentialsError::MissingGrants {
                profile: reg.profile.name.clone(),
                missing,
            };
            aud.failed(Action::RegistrationAttach, &t, intent, &e)
                .await?;
            return Err(e);
        }
        reg.sp_id = claims_oid;
        let sealed = self.seal(&reg.id, &req.client_secret)?;
        let mut secret = StoredSecret {
            key_id: String::new(),
            hint: hint.clone(),
            service_id: req.service_ids.first().cloned().unwrap_or_default(),
            start: String::new(),
            end: String::new(),
            sealed,
        };
        // Object id and the secret's key id / dates: with the admin session, else the app's own
        // token (works when it owns itself with Application.ReadWrite.OwnedBy); else unknown.
        let graph = match self.admin_graph(tenant).await {
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
        if let Some(g) = graph
            && let Ok(app) = g.get_application_by_app_id(client, &OpContext::new()).await
        {
            reg.app_object_id = Some(app.value.id.clone());
            if let Some(n) = app.value.display_name.clone() {
                reg.display_name = n;
            }
            let m: Vec<_> = app
                .value
                .password_credentials
                .iter()
                .filter(|p| p.hint.as_deref() == Some(hint.as_str()))
                .collect();
            if let [p] = m.as_slice() {
                secret.key_id = p.key_id.clone();
                secret.start = p.start_date_time.clone().unwrap_or_default();
                secret.end = p.end_date_time.clone().unwrap_or_default();
            }
        }
        let key = Registration::secret_key(&secret);
        reg.secrets.insert(key.clone(), secret.clone());
        for s in &req.service_ids {
            reg.current.insert(s.clone(), key.clone());
        }
        if self.detect_self_rotation(&reg).await {
            // It rotates itself: the permission that takes is part of what it should hold.
            reg.auth_mode = AuthMode::SelfRotation;
            reg.profile = reg.profile.clone().with_self_rotation();
        }
        self.save(&reg).await?;
        aud.entry(
            Action::RegistrationAttach,
            Phase::Succeeded,
            &app_target(&reg),
            vec![
                set("clientId", json!(client)),
                set("servicePrincipalId", json!(reg.sp_id)),
                set("profile", json!(req.profile)),
                set("secretKeyId", json!(secret.key_id)),
                set("secretHint", json!(hint)),
                set("authMode", json!(reg.auth_mode)),
            ],
            None,
        )
        .await?;
        Ok(RegistrationView::of(&reg, time::OffsetDateTime::now_utc()))
    }

    /// Gets the tokens and compares them with the profile: (missing lines, SP object id).
    async fn check_attach(
        &self,
        reg: &mut Registration,
        secret: &SecretString,
    ) -> Result<(Vec<String>, String), CredentialsError> {
        let graph_scope = "https://graph.microsoft.com/.default";
        let t = self
            .client_credentials(reg, secret, graph_scope, false)
            .await
            .map_err(|e| {
                CredentialsError::FailedPrecondition(format!(
                    "the registration does not authenticate with the secret given: {e}"
                ))
            })?;
        let held = match self.held_from_tokens(reg, secret, &t).await {
            Some(h) => h,
            None => self.held_from_graph(reg, t).await?,
        };
        if let Some(n) = &held.display_name {
            reg.display_name = n.clone();
        }
        let mut missing = Vec::new();
        for p in &reg.profile.permissions {
            let name = permission_name(p);
            if !held
                .permissions
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&name))
            {
                missing.push(format!(
                    "application permission {} of {} (with admin consent)",
                    p.value,
                    p.resource.display_name()
                ));
            }
        }
        for r in &reg.profile.directory_roles {
            if !held
                .role_ids
                .iter()
                .any(|w| w.eq_ignore_ascii_case(&r.template_id))
            {
                missing.push(format!(
                    "directory role {} assigned to the service principal",
                    r.name
                ));
            }
        }
        Ok((missing, held.sp_id))
    }

    /// What the registration holds, from the claims of its app-only tokens (`graph`, and one
    /// per other API of the profile): `None` when one is not a readable JWT, which Microsoft
    /// allows ("access tokens must be treated as opaque strings"), so Graph must be asked.
    async fn held_from_tokens(
        &self,
        reg: &Registration,
        secret: &SecretString,
        graph: &TokenSet,
    ) -> Option<Held> {
        let c = graph.access_token_claims().ok()?;
        let mut permissions: Vec<String> = c
            .roles
            .iter()
            .map(|r| name_of(Resource::Graph, r))
            .collect();
        let others: Vec<Resource> = reg
            .profile
            .permissions
            .iter()
            .map(|p| p.resource)
            .filter(|r| *r != Resource::Graph)
            .collect();
        let mut asked = Vec::new();
        for res in others {
            if asked.contains(&res) {
                continue;
            }
            asked.push(res);
            let scope = format!("{}/.default", res.app_id());
            // No token for an API (no consent there): nothing held of it.
            if let Ok(t) = self.client_credentials(reg, secret, &scope, false).await {
                let theirs = t.access_token_claims().ok()?;
                permissions.extend(theirs.roles.iter().map(|v| name_of(res, v)));
            }
        }
        Some(Held {
            permissions,
            role_ids: c.wids,
            sp_id: c.oid.unwrap_or_default(),
            display_name: c.app_displayname,
        })
    }

    /// What the registration holds, read from Graph: with the tenant's admin session if there
    /// is one, else with the registration's own Graph token `own`. When neither may read it,
    /// FAILED_PRECONDITION says the grants cannot be checked and how they can.
    async fn held_from_graph(
        &self,
        reg: &Registration,
        own: TokenSet,
    ) -> Result<Held, CredentialsError> {
        tracing::info!(
            client_id = %reg.client_id,
            "the app-only access token is not a readable JWT; reading its grants from Graph"
        );
        let graph = self
            .reader_graph(reg, &self.inner.entra.graph(own.access_token))
            .await;
        let cannot = |e: CredentialsError| {
            CredentialsError::FailedPrecondition(format!(
                "what registration {} holds cannot be checked: Microsoft issued its access \
                 token {OPAQUE_TOKEN}, and Graph did not answer the reads ({e}); sign an admin \
                 in for tenant {} and attach again",
                reg.client_id, reg.tenant_id
            ))
        };
        let sp = graph
            .find_service_principal_by_app_id(&reg.client_id, &OpContext::new())
            .await
            .map_err(|e| {
                cannot(CredentialsError::entra(
                    "find_service_principal_by_app_id",
                    e,
                ))
            })?
            .value
            .ok_or_else(|| {
                cannot(CredentialsError::FailedPrecondition(
                    "no service principal has the registration's client id".into(),
                ))
            })?;
        let with_sp = Registration {
            sp_id: sp.id.clone(),
            ..reg.clone()
        };
        let (permissions, role_ids) = self
            .held_via_graph(&graph, &with_sp)
            .await
            .map_err(cannot)?;
        Ok(Held {
            permissions,
            role_ids,
            sp_id: sp.id,
            display_name: sp.display_name,
        })
    }

    /// Makes every completed onboarding `source` knows a managed registration (once; later
    /// calls skip those already managed). Returns how many were imported.
    pub async fn import_provisioned(
        &self,
        source: &dyn Provisioned,
    ) -> Result<usize, CredentialsError> {
        let mut n = 0;
        for o in source.completed()? {
            let key = registration_key(&o.tenant_id, &o.client_id);
            if self.inner.store.get::<Registration>(&key)?.is_some() {
                continue;
            }
            let secret = StoredSecret {
                key_id: o.secret.key_id.clone(),
                hint: o.secret.hint.clone(),
                service_id: o.service_id.clone(),
                start: o.created_at.clone(),
                end: o.secret.end.clone().unwrap_or_default(),
                sealed: self.seal(&o.onboarding_id, &o.secret.value)?,
            };
            let skey = Registration::secret_key(&secret);
            let mut reg = Registration {
                id: o.onboarding_id.clone(),
                tenant_id: o.tenant_id.clone(),
                client_id: o.client_id.clone(),
                app_object_id: o.app_object_id.clone(),
                sp_id: o.sp_id.clone(),
                display_name: o.app_name.clone(),
                profile: o.profile.clone(),
                source: Source::Provisioned,
                auth_mode: AuthMode::AdminSession,
                secrets: BTreeMap::from([(skey.clone(), secret)]),
                current: BTreeMap::from([(o.service_id.clone(), skey)]),
                attached_at: onboard_core::time::now(),
                rotations: BTreeMap::new(),
            };
            // A completed run of a self-rotating profile granted Application.ReadWrite.OwnedBy
            // and made the service principal an owner (its `app_owner` step): trusted, since
            // the grant can take minutes to reach the app's tokens (changes wait for it,
            // bounded). Otherwise the customer may have made the app able to rotate itself
            // (best effort: any failure leaves the admin-session mode).
            if o.profile.self_rotation || self.detect_self_rotation(&reg).await {
                reg.auth_mode = AuthMode::SelfRotation;
            }
            self.save(&reg).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Whether the registration named by `r` is managed, importing completed onboardings first
    /// when it is not (lazy import on lookup).
    pub async fn ensure_imported(
        &self,
        source: &dyn Provisioned,
        r: &RegistrationRef,
    ) -> Result<bool, CredentialsError> {
        check_ref(r)?;
        let key = registration_key(&r.tenant_id, &r.client_id);
        if self.inner.store.get::<Registration>(&key)?.is_some() {
            return Ok(true);
        }
        self.import_provisioned(source).await?;
        Ok(self.inner.store.get::<Registration>(&key)?.is_some())
    }
}

/// What a registration holds: its application permissions by name (as [`permission_name`]
/// writes them), its directory roles' template ids, its service principal and display name.
struct Held {
    /// Permission names.
    permissions: Vec<String>,
    /// Directory role template ids (`wids`, or the role assignments' definitions).
    role_ids: Vec<String>,
    /// The service principal's object id.
    sp_id: String,
    /// The app's display name, when known.
    display_name: Option<String>,
}

/// The name of permission `value` of `resource`.
fn name_of(resource: Resource, value: &str) -> String {
    permission_name(&PermissionRef {
        resource,
        value: value.to_owned(),
    })
}
