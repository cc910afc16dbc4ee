//! [`verifier::Targets`] over the Credentials registry: every managed registration, whether
//! Onboard provisioned it (completed onboardings are imported first) or an operator attached
//! it. The expected permissions and roles are the registration's resolved profile; the secret
//! is the service's current one; the reader and writer token is a fresh delegated token of the
//! tenant's stored admin session, when there is one that still renews. Without it, checks that
//! need it WARN and repair records that it needs an admin sign-in.

use std::collections::HashMap;
use std::time::Duration;

use credentials::{Credentials, CredentialsError, RegistrationRef};
use provision::profiles::Resource;
use provision::{Engine, ListFilter, Status};
use secrecy::SecretString;
use verifier::{
    BoxFuture, ExpectedRole, PlatformEndpoint, Probe, Target, Targets, VerifyError, VerifyInput,
};

use crate::config::Config;
use crate::error::{Result, ServerError};

/// Managed registrations as verification targets.
pub struct RegistryTargets {
    /// Registrations, their secrets and the tenants' admin sessions.
    credentials: Credentials,
    /// Completed onboardings not imported yet become registrations before a lookup.
    engine: Engine,
    /// Platform endpoints by service id (CA files read at start-up).
    platform: HashMap<String, Vec<PlatformEndpoint>>,
    /// WARN horizon for secrets.
    horizon: Duration,
    /// FAIL horizon for secrets.
    critical: Duration,
    /// `<server>-<provider>-token`.
    temporary_app_name: String,
    /// The token app's client id (`entra.token_app_client_id`): the temporary app's `appId`.
    temporary_app_client_id: String,
}

/// A stored admin token is used only if it is valid for at least this long.
const TOKEN_MARGIN_SECS: i64 = 60;

fn targets_err(e: CredentialsError) -> VerifyError {
    VerifyError::Targets(e.to_string())
}

impl RegistryTargets {
    /// Reads the platform endpoints' CA files; an unreadable file is a configuration error.
    pub fn new(credentials: Credentials, engine: Engine, config: &Config) -> Result<Self> {
        let mut platform: HashMap<String, Vec<PlatformEndpoint>> = HashMap::new();
        for s in &config.platform.services {
            let ca_pem = match &s.ca {
                Some(p) => Some(
                    std::fs::read(p)
                        .map_err(|e| ServerError::io(format!("reading {}", p.display()), e))?,
                ),
                None => None,
            };
            let probe = match (&s.grpc_health, &s.http_probe) {
                (Some(url), _) => Probe::GrpcHealth {
                    url: url.clone(),
                    service: s.id.clone(),
                },
                (None, Some(url)) => Probe::HttpJson { url: url.clone() },
                (None, None) => continue,
            };
            platform
                .entry(s.id.clone())
                .or_default()
                .push(PlatformEndpoint {
                    probe,
                    ca_pem,
                    timeout: Duration::from_millis(s.timeout_ms),
                });
        }
        let day = 86_400;
        Ok(Self {
            credentials,
            engine,
            platform,
            horizon: Duration::from_secs(u64::from(config.credentials.expiry_horizon_days) * day),
            critical: Duration::from_secs(config.verification.critical_days * day),
            temporary_app_name: provision::plan::token_app_name(
                &config.platform.server_name,
                &config.platform.provider_name,
            ),
            temporary_app_client_id: config.entra.token_app_client_id.clone(),
        })
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
            .import_provisioned(&self.engine)
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
                VerifyError::Targets(format!(
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
        let onboarding = self
            .engine
            .list(&ListFilter {
                status: Some(Status::Completed),
                ..ListFilter::default()
            })
            .map_err(|e| VerifyError::Targets(e.to_string()))?
            .into_iter()
            .rev()
            .find(|o| o.tenant_id == tenant_id && o.client_id.as_deref() == Some(client_id));
        let Some(o) = onboarding else {
            return Ok(None);
        };
        let Some(token) = self
            .engine
            .admin_session(&o.id)
            .map_err(|e| VerifyError::Targets(e.to_string()))?
        else {
            return Ok(None);
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let valid = entra_client::access_token_claims(&token)
            .ok()
            .and_then(|c| c.exp)
            .is_some_and(|exp| exp > now + TOKEN_MARGIN_SECS);
        Ok(valid.then_some(token))
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
            sp_id: reg.sp_id.clone(),
            service_id: Some(service.to_owned()),
            profile: profile.name.clone(),
            secret,
            secret_key_id: Some(stored.key_id.clone()),
            secret_expires: crate::clock::parse_rfc3339(&stored.end),
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
            horizon: self.horizon,
            critical: self.critical,
            temporary_app_name: self.temporary_app_name.clone(),
            temporary_app_client_id: self.temporary_app_client_id.clone(),
            platform: self.platform.get(service).cloned().unwrap_or_default(),
            reader_token: self.session(&reg.tenant_id, &reg.client_id).await?,
        })
    }
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
                .import_provisioned(&self.engine)
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
