//! [`verifier::Targets`] over the Credentials registry: every managed registration, whether
//! Onboard provisioned it (completed onboardings are imported first, through the
//! [`Provisioned`] seam) or an operator attached it. The expected permissions and roles are the registration's resolved profile; the secret
//! is the service's current one; the reader and writer token is a fresh delegated token of the
//! tenant's stored admin session, when there is one that still renews. Without it, checks that
//! need it WARN and repair records that it needs an admin sign-in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use onboard_core::profiles::Resource;
use onboard_core::provisioned::Provisioned;
use secrecy::SecretString;
use verifier::{
    BoxFuture, ExpectedRole, ManagedSecret, PlatformEndpoint, Target, Targets, VerifyError,
    VerifyInput,
};

use crate::model::Registration;
use crate::{Credentials, CredentialsError, RegistrationRef};

/// What verification checks against, from the server's configuration.
#[derive(Debug, Clone, Default)]
pub struct TargetSettings {
    /// The platform service's status endpoints, by service id (CA files already read).
    pub platform: HashMap<String, Vec<PlatformEndpoint>>,
    /// A secret expiring within this is a WARN.
    pub horizon: Duration,
    /// A secret expiring within this (or expired) is a FAIL.
    pub critical: Duration,
    /// `<server>-<provider>-token`, the temporary app that must be gone.
    pub temporary_app_name: String,
    /// The token app's client id (`entra.token_app_client_id`): the temporary app's `appId`.
    pub temporary_app_client_id: String,
}

/// Managed registrations as verification targets.
pub struct RegistryTargets {
    /// Registrations, their secrets and the tenants' admin sessions.
    credentials: Credentials,
    /// Completed onboardings not imported yet become registrations before a lookup; the
    /// onboarding's stored admin token reads while no admin session does.
    provisioned: Arc<dyn Provisioned>,
    /// Endpoints, horizons and the temporary app's name.
    settings: TargetSettings,
}

/// A stored admin token is used only if it is valid for at least this long.
const TOKEN_MARGIN_SECS: i64 = 60;

/// A registry failure in verification's terms: what a caller can act on keeps its kind
/// (the server answers NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE), the rest is internal.
fn targets_err(e: CredentialsError) -> VerifyError {
    match e {
        CredentialsError::NotFound(m) => VerifyError::NotFound(m),
        // Microsoft down or throttling, or the server stopping: try again later.
        e if e.is_entra_outage() => VerifyError::Unavailable(e.to_string()),
        e @ CredentialsError::Halted(_) => VerifyError::Unavailable(e.to_string()),
        // Microsoft refused (a right, a policy, a sign-in): retrying the same will not help,
        // what the message names must change first.
        e @ (CredentialsError::FailedPrecondition(_)
        | CredentialsError::NoAdminSession { .. }
        | CredentialsError::MissingGrants { .. }
        | CredentialsError::ConditionalAccess { .. }
        | CredentialsError::PolicyRefused { .. }
        | CredentialsError::Entra { .. }) => VerifyError::NotReady(e.to_string()),
        CredentialsError::Audit(a) => VerifyError::Audit(a),
        other => VerifyError::Targets(other.to_string()),
    }
}

impl RegistryTargets {
    /// Targets over `credentials`, importing from `provisioned`.
    pub fn new(
        credentials: Credentials,
        provisioned: Arc<dyn Provisioned>,
        settings: TargetSettings,
    ) -> Self {
        Self {
            credentials,
            provisioned,
            settings,
        }
    }

    /// The registration `target` names (importing completed onboardings first) and the
    /// service whose secret is checked.
    async fn find(&self, target: &Target) -> Result<(RegistrationRef, String), VerifyError> {
        let (what, id) = match target {
            Target::ClientId(c) => ("client_id", c),
            Target::ServiceId(s) => ("service_id", s),
        };
        if id.trim().is_empty() {
            return Err(VerifyError::InvalidTarget(format!("{what} is empty")));
        }
        self.credentials
            .import_provisioned(self.provisioned.as_ref())
            .await
            .map_err(targets_err)?;
        let view = match target {
            Target::ClientId(c) => self.credentials.find(c),
            Target::ServiceId(s) => self.credentials.find_by_service(s),
        }
        .map_err(targets_err)?
        .ok_or_else(|| {
            VerifyError::NotFound(format!("no managed registration has {what} {id:?}"))
        })?;
        let service = match target {
            Target::ServiceId(s) => s.clone(),
            Target::ClientId(_) => view.services.first().cloned().ok_or_else(|| {
                VerifyError::NotReady(format!(
                    "registration {} has no service with a secret",
                    view.client_id
                ))
            })?,
        };
        Ok((
            RegistrationRef::new(view.tenant_id, view.client_id),
            service,
        ))
    }

    /// A delegated admin token for reads and repairs: a fresh one from the tenant's admin
    /// session if it still renews, else the access token stored with the onboarding that made
    /// `client_id` while it is valid (its refresh dies with the temporary app, the access token
    /// lasts about an hour).
    async fn session(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<SecretString>, VerifyError> {
        match self.credentials.admin_access_token(tenant_id).await {
            Ok(t) => return Ok(Some(t)),
            Err(CredentialsError::NoAdminSession { .. }) => {}
            Err(e) => return Err(targets_err(e)),
        }
        let Some(kept) = self
            .provisioned
            .admin_access_token(tenant_id, client_id)
            .map_err(|e| VerifyError::Targets(e.to_string()))?
        else {
            return Ok(None);
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // The expiry the token response gave. Microsoft's access tokens are opaque to clients
        // ("might not always be a JWT that can be decoded"); only a record kept before the
        // expiry was recorded falls back to the token's `exp` claim, and a token whose expiry
        // is unknown either way is not used (the checks then say no admin session).
        let expires_at = kept.expires_at.or_else(|| {
            entra_client::access_token_claims(&kept.token)
                .ok()
                .and_then(|c| c.exp)
        });
        let valid = expires_at.is_some_and(|exp| exp > now + TOKEN_MARGIN_SECS);
        Ok(valid.then_some(kept.token))
    }

    async fn input(&self, r: &RegistrationRef, service: &str) -> Result<VerifyInput, VerifyError> {
        let reg = self.credentials.registration(r).map_err(targets_err)?;
        let (stored, secret) = self
            .credentials
            .current_secret(r, service)
            .map_err(targets_err)?;
        let profile = &reg.profile;
        let pick = |res: Resource| -> Vec<String> {
            profile
                .permissions
                .iter()
                .filter(|p| p.resource == res)
                .map(|p| p.value.clone())
                .collect()
        };
        Ok(VerifyInput {
            tenant_id: reg.tenant_id.clone(),
            client_id: reg.client_id.clone(),
            app_object_id: reg.app_object_id.clone(),
            sp_id: reg.sp_id.clone(),
            service_id: Some(service.to_owned()),
            profile: profile.name.clone(),
            secret,
            secret_key_id: Some(stored.key_id.clone()),
            secret_expires: onboard_core::time::parse(&stored.end),
            graph_permissions: pick(Resource::Graph),
            tenant_admin_permissions: pick(Resource::TeamsAdminApi),
            directory_roles: profile
                .directory_roles
                .iter()
                .map(|r| ExpectedRole {
                    name: r.name.clone(),
                    template_id: r.template_id.clone(),
                })
                .collect(),
            horizon: self.settings.horizon,
            critical: self.settings.critical,
            temporary_app_name: self.settings.temporary_app_name.clone(),
            temporary_app_client_id: self.settings.temporary_app_client_id.clone(),
            platform: self
                .settings
                .platform
                .get(service)
                .cloned()
                .unwrap_or_default(),
            reader_token: self.session(&reg.tenant_id, &reg.client_id).await?,
            managed_secrets: Some(managed_secrets(&reg)),
        })
    }
}

/// Every secret Onboard holds for `reg`, and each rotation's secret being added (by its marker
/// until its key id is stored), for the `app_credentials` check.
fn managed_secrets(reg: &Registration) -> Vec<ManagedSecret> {
    let held = reg.secrets.values().map(|s| ManagedSecret {
        key_id: s.key_id.clone(),
        hint: s.hint.clone(),
        marker: None,
    });
    let adding = reg
        .rotations
        .values()
        .filter(|r| r.new_key.is_none())
        .map(|r| ManagedSecret {
            key_id: String::new(),
            hint: String::new(),
            marker: Some(r.marker.clone()),
        });
    held.chain(adding).collect()
}

impl Targets for RegistryTargets {
    fn resolve<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, verifier::Result<VerifyInput>> {
        Box::pin(async move {
            let (r, service) = self.find(target).await?;
            self.input(&r, &service).await
        })
    }

    fn all(&self) -> BoxFuture<'_, verifier::Result<Vec<Target>>> {
        Box::pin(async move {
            self.credentials
                .import_provisioned(self.provisioned.as_ref())
                .await
                .map_err(targets_err)?;
            Ok(self
                .credentials
                .list()
                .map_err(targets_err)?
                .into_iter()
                .filter(|v| !v.services.is_empty())
                .map(|v| Target::ClientId(v.client_id))
                .collect())
        })
    }

    fn writer_token<'a>(
        &'a self,
        input: &'a VerifyInput,
    ) -> BoxFuture<'a, verifier::Result<Option<SecretString>>> {
        Box::pin(self.session(&input.tenant_id, &input.client_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_failures_keep_the_kind_a_caller_can_act_on() {
        let not_ready = targets_err(CredentialsError::FailedPrecondition("no service".into()));
        assert!(
            matches!(not_ready, VerifyError::NotReady(_)),
            "{not_ready:?}"
        );
        let missing = targets_err(CredentialsError::NotFound("no registration".into()));
        assert!(matches!(missing, VerifyError::NotFound(_)), "{missing:?}");
        let store = targets_err(CredentialsError::Store("disk".into()));
        assert!(matches!(store, VerifyError::Targets(_)), "{store:?}");
        // Microsoft unreachable: try again; Microsoft refusing: fix what it names first (it
        // was UNAVAILABLE, which a client retries in vain); the server stopping: try again.
        let down = CredentialsError::entra(
            "read",
            entra_client::EntraError::Transport {
                operation: "read",
                kind: entra_client::TransportErrorKind::Connect,
                message: "refused".into(),
            },
        );
        assert!(matches!(targets_err(down), VerifyError::Unavailable(_)));
        let refused =
            CredentialsError::entra("read", entra_client::EntraError::InvalidInput("x".into()));
        let refused = targets_err(refused);
        assert!(matches!(refused, VerifyError::NotReady(_)), "{refused:?}");
        let halted = targets_err(CredentialsError::Halted("shutdown".into()));
        assert!(matches!(halted, VerifyError::Unavailable(_)), "{halted:?}");
    }
}
