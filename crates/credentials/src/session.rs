//! How day-two changes authenticate: a tenant's stored admin session (a signed-in admin's
//! refresh token, sealed, renewed on each use), or the registration itself by client
//! credentials with its current secret (self-rotation).

use entra_client::{GraphClient, OpContext, TokenSet};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use serde_json::{Value, json};

use crate::audit::{Auditor, ChangeSpec, target};
use crate::error::CredentialsError;
use crate::model::{AuthMode, Registration};
use crate::store::session_key;
use crate::{Credentials, RegistrationRef};
use onboard_core::Purpose;
use onboard_core::audit::{Action, Scope, TargetKind, change};

/// What [`Credentials::end_admin_session`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndedSession {
    /// Temporary token apps removed.
    pub temporary_apps_removed: u32,
    /// False when the session no longer renewed (nothing could be removed).
    pub session_was_usable: bool,
    /// Audit entries of the removals.
    pub audit_seqs: Vec<u64>,
}

/// A tenant's admin session as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionRecord {
    /// The tenant it is for.
    tenant_id: String,
    /// Who signed in (audit and messages).
    upn: String,
    /// The public client that signed them in (the refresh token is bound to it).
    client_id: String,
    /// Scopes to ask for on renewal.
    scopes: Vec<String>,
    /// The refresh token, sealed; the STS may rotate it on each use and we keep the newest.
    sealed_refresh: String,
    /// When it was stored or last renewed.
    updated_at: String,
}

/// A stored admin session, as shown (no token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSessionInfo {
    /// The tenant.
    pub tenant_id: String,
    /// Who signed in.
    pub upn: String,
    /// When it was stored or last renewed.
    pub updated_at: String,
}

impl Credentials {
    /// Stores a signed-in admin's tokens for day-two changes in `tenant_id` (call it from the
    /// SignIn path once the admin is checked). Needs a refresh token (`offline_access`).
    pub async fn store_admin_session(
        &self,
        tenant_id: &str,
        upn: &str,
        public_client_id: &str,
        scopes: &[&str],
        tokens: &TokenSet,
    ) -> Result<(), CredentialsError> {
        let Some(refresh) = &tokens.refresh_token else {
            return Err(CredentialsError::FailedPrecondition(
                "the sign-in returned no refresh token (ask for offline_access)".into(),
            ));
        };
        let rec = SessionRecord {
            tenant_id: tenant_id.to_owned(),
            upn: upn.to_owned(),
            client_id: public_client_id.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            sealed_refresh: self
                .inner
                .key
                .seal(tenant_id, Purpose::AdminRefreshToken, refresh)?,
            updated_at: onboard_core::time::now(),
        };
        self.inner.store.put(&session_key(tenant_id), &rec).await?;
        tracing::info!(tenant_id, upn, "admin session stored for day-two changes");
        Ok(())
    }

    /// The tenant's stored admin session, if any.
    pub fn admin_session(
        &self,
        tenant_id: &str,
    ) -> Result<Option<AdminSessionInfo>, CredentialsError> {
        Ok(self
            .inner
            .store
            .get::<SessionRecord>(&session_key(tenant_id))?
            .map(|r| AdminSessionInfo {
                tenant_id: r.tenant_id,
                upn: r.upn,
                updated_at: r.updated_at,
            }))
    }

    /// Forgets the tenant's admin session.
    pub async fn forget_admin_session(&self, tenant_id: &str) -> Result<(), CredentialsError> {
        self.inner.store.remove(&session_key(tenant_id)).await
    }

    /// Ends the tenant's admin session: while it still renews, removes (audited, as
    /// `temporary_app.delete`) the enterprise app the day-two sign-in re-created (the service
    /// principal of the public client the session signed in with, found by `appId`; the
    /// consented app takes the provider app's own display name, so `temporary_app` only names
    /// it in the audit entry); then forgets the session either way.
    pub async fn end_admin_session(
        &self,
        tenant_id: &str,
        temporary_app: &str,
        actor: &str,
    ) -> Result<EndedSession, CredentialsError> {
        let public_client = self
            .inner
            .store
            .get::<SessionRecord>(&session_key(tenant_id))?
            .map(|r| r.client_id);
        let graph = match self.admin_graph(tenant_id).await {
            Ok(g) => Some(g),
            Err(CredentialsError::NoAdminSession { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut ended = EndedSession {
            session_was_usable: graph.is_some(),
            ..EndedSession::default()
        };
        if let (Some(graph), Some(app_id)) = (graph, public_client) {
            let found: Vec<_> = graph
                .find_service_principal_by_app_id(&app_id, &OpContext::new())
                .await
                .map_err(|e| CredentialsError::entra("find_temporary_app", e))?
                .value
                .into_iter()
                .collect();
            let auditor = Auditor::new(
                &self.inner.audit,
                Scope {
                    actor: actor.to_owned(),
                    tenant_id: Some(tenant_id.to_owned()),
                    ..Scope::default()
                },
            );
            for sp in found {
                let id = sp.id.clone();
                let spec = ChangeSpec {
                    action: Action::TemporaryAppDelete,
                    target: target(
                        TargetKind::ServicePrincipal,
                        Some(sp.id.clone()),
                        temporary_app,
                    ),
                    changes: vec![change("appId", json!(sp.app_id), Value::Null)],
                    after_create: false,
                };
                let g = &graph;
                match auditor
                    .change(
                        spec,
                        |ctx| async move { g.delete_service_principal(&id, &ctx).await },
                        |_| vec![],
                    )
                    .await
                {
                    Ok(((), seq)) => {
                        ended.temporary_apps_removed += 1;
                        ended.audit_seqs.push(seq);
                    }
                    // Already gone (another caller, or Entra's lag): the goal is reached.
                    Err(CredentialsError::Entra { source, .. }) if source.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.forget_admin_session(tenant_id).await?;
        tracing::info!(
            tenant_id,
            removed = ended.temporary_apps_removed,
            "admin session ended"
        );
        Ok(ended)
    }

    /// Ends (as [`Credentials::end_admin_session`]) every admin session not used for `idle`:
    /// the backstop for a day-two sign-in nobody ended. Returns the tenants whose session
    /// ended; one that fails to end is logged and tried again next time.
    pub async fn end_idle_admin_sessions(
        &self,
        idle: std::time::Duration,
        temporary_app: &str,
        actor: &str,
    ) -> Result<Vec<String>, CredentialsError> {
        let now = time::OffsetDateTime::now_utc();
        let mut ended = Vec::new();
        for rec in self.inner.store.scan::<SessionRecord>("adm/")? {
            let last = onboard_core::time::parse(&rec.updated_at).unwrap_or(now);
            if now - last < idle {
                continue;
            }
            match self
                .end_admin_session(&rec.tenant_id, temporary_app, actor)
                .await
            {
                Ok(_) => ended.push(rec.tenant_id),
                Err(e) => {
                    tracing::warn!(tenant_id = %rec.tenant_id, error = %e, "idle admin session not ended");
                }
            }
        }
        Ok(ended)
    }

    /// Graph as the tenant's signed-in admin: renews with the stored refresh token (keeping the
    /// rotated one). No session, or one the STS refuses, is [`CredentialsError::NoAdminSession`].
    pub(crate) async fn admin_graph(
        &self,
        tenant_id: &str,
    ) -> Result<GraphClient, CredentialsError> {
        Ok(self
            .inner
            .entra
            .graph(self.admin_access_token(tenant_id).await?))
    }

    /// A fresh delegated Graph access token of the tenant's signed-in admin (renewed with the
    /// stored refresh token, keeping the rotated one), e.g. for Verification to read what the
    /// app's own token may not. Errors as [`Credentials::admin_graph`]. Never log it.
    pub async fn admin_access_token(
        &self,
        tenant_id: &str,
    ) -> Result<SecretString, CredentialsError> {
        // One renewal per tenant at a time, so the newest refresh token is the one kept.
        let lock = self.lock_for(&session_key(tenant_id));
        let _g = lock.lock().await;
        let Some(mut rec) = self
            .inner
            .store
            .get::<SessionRecord>(&session_key(tenant_id))?
        else {
            return Err(CredentialsError::NoAdminSession {
                tenant_id: tenant_id.to_owned(),
                reason: "no admin has signed in for day-two changes".into(),
            });
        };
        // Sealed for the tenant as the sign-in named it: the caller may spell it otherwise
        // (tenant ids compare case-insensitively; the record was found by the lower-case key).
        let sealed_for = rec.tenant_id.clone();
        let refresh =
            self.inner
                .key
                .open(&sealed_for, Purpose::AdminRefreshToken, &rec.sealed_refresh)?;
        let scopes: Vec<&str> = rec.scopes.iter().map(String::as_str).collect();
        let tokens = self
            .inner
            .entra
            .sts()
            .refresh(
                tenant_id,
                &rec.client_id,
                &refresh,
                &scopes,
                &OpContext::new(),
            )
            .await
            .map_err(|e| match e.sts() {
                // Expired, revoked, or its consent is gone (the onboarding removed the
                // temporary token app: AADSTS65001).
                Some(s) if s.error == "invalid_grant" || s.error == "interaction_required" => {
                    CredentialsError::NoAdminSession {
                        tenant_id: tenant_id.to_owned(),
                        reason: format!(
                            "the stored sign-in of {} can no longer be renewed ({}{})",
                            rec.upn,
                            s.error,
                            s.code.map(|c| format!(", AADSTS{c}")).unwrap_or_default()
                        ),
                    }
                }
                _ => CredentialsError::entra("admin_session.refresh", e),
            })?;
        if let Some(new_refresh) = &tokens.refresh_token {
            rec.sealed_refresh =
                self.inner
                    .key
                    .seal(&sealed_for, Purpose::AdminRefreshToken, new_refresh)?;
            rec.updated_at = onboard_core::time::now();
            self.inner.store.put(&session_key(tenant_id), &rec).await?;
        }
        Ok(tokens.access_token)
    }

    /// An app-only token for the registration with one of its current secrets (the first that
    /// works), for `scope`. An outage ends the search at once.
    pub(crate) async fn app_token(
        &self,
        reg: &Registration,
        scope: &str,
    ) -> Result<TokenSet, CredentialsError> {
        let mut last = None;
        for key in reg
            .current
            .values()
            .collect::<std::collections::BTreeSet<_>>()
        {
            let Some(s) = reg.secrets.get(key) else {
                continue;
            };
            let value = self.open(reg, s)?;
            match self.client_credentials(reg, &value, scope, false).await {
                Ok(t) => return Ok(t),
                // An outage says nothing about this secret or the next: trying the others would
                // only wait through their retries and could end on a refusal that hides it.
                Err(e) if e.is_entra_outage() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            CredentialsError::FailedPrecondition(format!(
                "registration {} has no current secret to authenticate with",
                reg.client_id
            ))
        }))
    }

    /// Client credentials with `secret`; `after_create` retries while a new secret propagates.
    pub(crate) async fn client_credentials(
        &self,
        reg: &Registration,
        secret: &SecretString,
        scope: &str,
        after_create: bool,
    ) -> Result<TokenSet, CredentialsError> {
        let ctx = if after_create {
            OpContext::new().after_create()
        } else {
            OpContext::new()
        };
        self.inner
            .entra
            .sts()
            .client_credentials(&reg.tenant_id, &reg.client_id, secret, scope, &ctx)
            .await
            .map_err(|e| CredentialsError::entra("client_credentials", e))
    }

    /// Graph for changing the registration's secrets: the app itself when self-rotation is on,
    /// else the tenant's admin session.
    pub(crate) async fn secrets_graph(
        &self,
        reg: &Registration,
    ) -> Result<GraphClient, CredentialsError> {
        match reg.auth_mode {
            AuthMode::SelfRotation => {
                let t = self.self_rotation_token(reg).await?;
                Ok(self.inner.entra.graph(t.access_token))
            }
            AuthMode::AdminSession => self.admin_graph(&reg.tenant_id).await,
        }
    }

    /// The app's own Graph token once it carries `Application.ReadWrite.OwnedBy`. Right after
    /// provisioning the grant may not have reached the tokens Entra issues yet: fresh tokens
    /// are asked for, 1 s apart doubling to 30 s, for up to
    /// [`CredentialsConfig::self_rotation_wait`](crate::CredentialsConfig::self_rotation_wait).
    async fn self_rotation_token(&self, reg: &Registration) -> Result<TokenSet, CredentialsError> {
        let deadline = tokio::time::Instant::now() + self.inner.self_rotation_wait;
        let mut pause = std::time::Duration::from_secs(1);
        loop {
            let t = self
                .app_token(reg, "https://graph.microsoft.com/.default")
                .await?;
            // A token that is not a readable JWT cannot say: the write itself will (a 403
            // when the grant is missing), so it is used rather than waited on.
            if owned_by_claim(&t) != Some(false) {
                return Ok(t);
            }
            let now = tokio::time::Instant::now();
            if now + pause > deadline {
                return Err(CredentialsError::FailedPrecondition(format!(
                    "registration {} rotates its own secrets, but its token does not carry \
                     {OWNED_BY} (yet): Microsoft may still be propagating the grant, or it was \
                     removed; retry in a few minutes, or sign an admin in for this change",
                    reg.client_id
                )));
            }
            tracing::info!(
                client_id = %reg.client_id,
                wait_ms = pause.as_millis() as u64,
                "waiting for the self-rotation grant to reach the app's token"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(30));
        }
    }

    /// Whether the registration can rotate itself: its Graph token holds
    /// `Application.ReadWrite.OwnedBy` and its service principal is among the app's owners.
    /// When the token is not a readable JWT (Microsoft: access tokens are opaque to clients),
    /// the grant is read from Graph instead, with the tenant's admin session if there is one,
    /// else the app's own token; if neither may read it, the answer is no (the admin-session
    /// mode, which always works).
    pub(crate) async fn detect_self_rotation(&self, reg: &Registration) -> bool {
        let Ok(t) = self
            .app_token(reg, "https://graph.microsoft.com/.default")
            .await
        else {
            return false;
        };
        let graph = self.inner.entra.graph(t.access_token.clone());
        let granted = match owned_by_claim(&t) {
            Some(held) => held,
            None => match self
                .held_via_graph(&self.reader_graph(reg, &graph).await, reg)
                .await
            {
                Ok((permissions, _)) => {
                    permissions.iter().any(|p| p.eq_ignore_ascii_case(OWNED_BY))
                }
                Err(e) => {
                    tracing::info!(
                        client_id = %reg.client_id,
                        error = %e,
                        "the app's token is not a readable JWT and its grants could not be read \
                         from Graph; self-rotation is not assumed"
                    );
                    false
                }
            },
        };
        if !granted {
            return false;
        }
        let ctx = OpContext::new();
        let Ok(app) = graph.get_application_by_app_id(&reg.client_id, &ctx).await else {
            return false;
        };
        graph
            .list_application_owners(&app.value.id, &ctx)
            .await
            .is_ok_and(|o| {
                o.value
                    .iter()
                    .any(|x| x.id.eq_ignore_ascii_case(&reg.sp_id))
            })
    }

    /// Graph for reading what `reg` holds: the tenant's admin session when there is one, else
    /// `own` (the registration's own token).
    pub(crate) async fn reader_graph(&self, reg: &Registration, own: &GraphClient) -> GraphClient {
        match self.admin_graph(&reg.tenant_id).await {
            Ok(g) => g,
            Err(_) => own.clone(),
        }
    }

    /// Re-checks whether the registration can rotate itself and records the mode.
    pub async fn refresh_auth_mode(
        &self,
        r: &RegistrationRef,
    ) -> Result<AuthMode, CredentialsError> {
        let (_g, mut reg) = self.locked(r).await?;
        reg.auth_mode = if self.detect_self_rotation(&reg).await {
            AuthMode::SelfRotation
        } else {
            AuthMode::AdminSession
        };
        self.save(&reg).await?;
        Ok(reg.auth_mode)
    }
}

/// The Graph permission self-rotation needs.
const OWNED_BY: &str = "Application.ReadWrite.OwnedBy";

/// How messages say that an access token could not be read: Microsoft's tokens for its APIs
/// are opaque to clients.
pub(crate) const OPAQUE_TOKEN: &str = "as an opaque string, not a readable JWT (Microsoft says \
     clients must treat access tokens as opaque)";

/// Whether an app-only Graph token carries [`OWNED_BY`]; `None` when the token is not a
/// readable JWT, which Microsoft allows for its APIs' tokens ("access tokens must be treated as
/// opaque strings"): unknown, not a no.
fn owned_by_claim(t: &TokenSet) -> Option<bool> {
    t.access_token_claims()
        .ok()
        .map(|c| c.roles.iter().any(|r| r.eq_ignore_ascii_case(OWNED_BY)))
}
