//! [`verifier::Targets`] over the onboarding engine's completed onboardings: until the
//! Credentials registry exists, a managed registration is a completed onboarding. The expected
//! permissions and roles are the profile as resolved when it was provisioned; the reader and
//! writer token is the admin's delegated token stored (sealed) with the onboarding, while it is
//! valid (about an hour after sign-in); after that, checks that need it WARN and repair records
//! that it needs an admin sign-in.

use std::collections::HashMap;
use std::time::Duration;

use provision::profiles::Resource;
use provision::{Engine, ListFilter, Onboarding, Status};
use secrecy::SecretString;
use verifier::{
    BoxFuture, ExpectedRole, PlatformEndpoint, Probe, Target, Targets, VerifyError, VerifyInput,
};

use crate::config::Config;
use crate::error::{Result, ServerError};

/// A stored admin token is used only if it is valid for at least this long.
const TOKEN_MARGIN_SECS: i64 = 60;

/// Completed onboardings as verification targets.
pub struct EngineTargets {
    /// Records, secrets and admin sessions.
    engine: Engine,
    /// Platform endpoints by service id (CA files read at start-up).
    platform: HashMap<String, Vec<PlatformEndpoint>>,
    /// WARN horizon for secrets.
    horizon: Duration,
    /// FAIL horizon for secrets.
    critical: Duration,
    /// `<server>-<provider>-token`.
    temporary_app_name: String,
}

impl EngineTargets {
    /// Reads the platform endpoints' CA files; an unreadable file is a configuration error.
    pub fn new(engine: Engine, config: &Config) -> Result<Self> {
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
            engine,
            platform,
            horizon: Duration::from_secs(config.verification.horizon_days * day),
            critical: Duration::from_secs(config.verification.critical_days * day),
            temporary_app_name: format!(
                "{}-{}-token",
                config.platform.server_name, config.platform.provider_name
            ),
        })
    }

    fn completed(&self) -> Result<Vec<Onboarding>, VerifyError> {
        self.engine
            .list(&ListFilter {
                status: Some(Status::Completed),
                ..ListFilter::default()
            })
            .map_err(|e| VerifyError::Targets(e.to_string()))
    }

    /// The newest completed onboarding `target` names.
    fn find(&self, target: &Target) -> Result<Onboarding, VerifyError> {
        let (what, id) = match target {
            Target::ClientId(c) => ("client_id", c),
            Target::ServiceId(s) => ("service_id", s),
        };
        if id.trim().is_empty() {
            return Err(VerifyError::InvalidTarget(format!("{what} is empty")));
        }
        self.completed()?
            .into_iter()
            .rev()
            .find(|o| match target {
                Target::ClientId(c) => o.client_id.as_deref() == Some(c.as_str()),
                Target::ServiceId(s) => o.service_id == *s,
            })
            .ok_or_else(|| {
                VerifyError::NotFound(format!("no completed onboarding has {what} {id:?}"))
            })
    }

    /// The onboarding's stored admin token, if it is still valid for a while.
    fn session(&self, onboarding_id: &str) -> Result<Option<SecretString>, VerifyError> {
        let Some(token) = self
            .engine
            .admin_session(onboarding_id)
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

    fn input(&self, o: &Onboarding) -> Result<VerifyInput, VerifyError> {
        let err = |e: provision::ProvisionError| VerifyError::Targets(e.to_string());
        let profile = self.engine.resolved_profile(&o.id).map_err(err)?;
        let secret = self.engine.secret(&o.id).map_err(err)?;
        let pick = |r: Resource| -> Vec<String> {
            profile
                .permissions
                .iter()
                .filter(|p| p.resource == r)
                .map(|p| p.value.clone())
                .collect()
        };
        let missing =
            |what: &str| VerifyError::Targets(format!("onboarding {} has no {what}", o.id));
        Ok(VerifyInput {
            tenant_id: o.tenant_id.clone(),
            client_id: o.client_id.clone().ok_or_else(|| missing("client id"))?,
            sp_id: o
                .sp_id
                .clone()
                .ok_or_else(|| missing("service principal"))?,
            service_id: (!o.service_id.is_empty()).then(|| o.service_id.clone()),
            profile: o.profile.clone(),
            secret,
            secret_key_id: o.secret_key_id.clone(),
            secret_expires: o
                .secret_expires
                .as_deref()
                .and_then(crate::clock::parse_rfc3339),
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
            platform: self
                .platform
                .get(&o.service_id)
                .cloned()
                .unwrap_or_default(),
            reader_token: self.session(&o.id)?,
        })
    }
}

impl Targets for EngineTargets {
    fn resolve<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, verifier::Result<VerifyInput>> {
        Box::pin(async move {
            let o = self.find(target)?;
            self.input(&o)
        })
    }

    fn all(&self) -> BoxFuture<'_, verifier::Result<Vec<Target>>> {
        Box::pin(async move {
            let mut seen = std::collections::BTreeSet::new();
            Ok(self
                .completed()?
                .into_iter()
                .filter_map(|o| o.client_id)
                .filter(|c| seen.insert(c.clone()))
                .map(Target::ClientId)
                .collect())
        })
    }

    fn writer_token<'a>(
        &'a self,
        input: &'a VerifyInput,
    ) -> BoxFuture<'a, verifier::Result<Option<SecretString>>> {
        Box::pin(async move {
            let o = self.find(&Target::ClientId(input.client_id.clone()))?;
            self.session(&o.id)
        })
    }
}
