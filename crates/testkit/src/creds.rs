//! The credentials manager over the engine's store and audit log. "Crashes" drop a manager
//! mid-work and build a new one over the same tree ([`manager`]), as a restarted process
//! would.

use anyhow::{Context, Result, bail};
use credentials::{
    AttachRequest, Credentials, CredentialsConfig, CredentialsError, RegistrationRef,
};
use entra_sim::Faults;
use onboard_core::Hook;
use secrecy::{ExposeSecret, SecretString};

use crate::engine::EngineEnv;
use crate::keys::SEALING_KEY;
use crate::sim::SIGN_IN_SCOPES;

/// The emulator with `faults`, an engine, and a manager without a hook over the same store.
pub async fn start(faults: Faults) -> Result<(EngineEnv, Credentials)> {
    let env = EngineEnv::start(faults, None).await?;
    let creds = manager(&env, None)?;
    Ok((env, creds))
}

/// [`start`] with a calm emulator, a registration made by onboarding `id` ([`provisioned`],
/// app `Sbc-<id>`) and a stored admin session of the global admin, for day-two changes.
pub async fn start_ready(id: &str) -> Result<(EngineEnv, Credentials, RegistrationRef)> {
    let (env, creds) = start(crate::sim::calm()).await?;
    let r = provisioned(&env, &creds, id, &format!("Sbc-{id}")).await?;
    store_session(&env, &creds, "globaladmin").await?;
    Ok((env, creds, r))
}

/// A manager over `env`'s store (tree `credentials`) with the fixed sealing key and `hook`: a
/// new one over the same store is a restarted process.
pub fn manager(env: &EngineEnv, hook: Option<Hook>) -> Result<Credentials> {
    let mut cfg = CredentialsConfig::new(
        env.client.clone(),
        env.audit.clone(),
        env.db.open_tree("credentials")?,
        SEALING_KEY,
    )?;
    cfg.hook = hook;
    Ok(Credentials::new(cfg)?)
}

/// Signs `nick` in and stores the session in `creds` for day-two changes.
pub async fn store_session(env: &EngineEnv, creds: &Credentials, nick: &str) -> Result<()> {
    let tokens = env.sign_in(nick).await?;
    creds
        .store_admin_session(
            &env.info.tenant_id,
            &env.upn(nick),
            &env.info.token_app_client_id,
            SIGN_IN_SCOPES,
            &tokens,
        )
        .await?;
    Ok(())
}

/// The profile of [`provisioned`]: without self-rotation, so secret changes go through the
/// tenant's admin session (the mode these tests exercise; the default profile rotates itself).
pub const LEAST_PRIVILEGE: &str = "direct-routing-least-privilege";

/// A registration made by a whole onboarding `id` (service `svc-<id>`, app `name`, profile
/// [`LEAST_PRIVILEGE`]), imported into `creds`.
pub async fn provisioned(
    env: &EngineEnv,
    creds: &Credentials,
    id: &str,
    name: &str,
) -> Result<RegistrationRef> {
    let mut req = env.request(id, name);
    req.profile = LEAST_PRIVILEGE.into();
    let done = env.onboard(req).await?;
    creds.import_provisioned(&env.engine).await?;
    Ok(RegistrationRef::new(&env.info.tenant_id, done.client_id))
}

/// The operator the attach tests act as.
pub const ATTACH_ACTOR: &str = "spiffe://platform.test/operator";

/// What a hand-made registration holding only `User.Read.All` lacks for the direct-routing
/// profile, as an attach refusal lists it.
pub const PARTIAL_MISSING: [&str; 3] = [
    "application permission Organization.Read.All of Microsoft Graph (with admin consent)",
    "application permission application_access of Skype and Teams Tenant Admin API (with admin consent)",
    "directory role Teams Administrator assigned to the service principal",
];

/// Attaching `client` (with `secret`) in `tenant` under the direct-routing profile for service
/// `svc-hand`, as [`ATTACH_ACTOR`].
pub fn attach_req(tenant: &str, client: &str, secret: &SecretString) -> AttachRequest {
    AttachRequest {
        registration: RegistrationRef::new(tenant, client),
        client_secret: SecretString::from(secret.expose_secret().to_owned()),
        profile: "direct-routing".into(),
        platform_version: None,
        service_ids: vec!["svc-hand".into()],
        actor: ATTACH_ACTOR.into(),
    }
}

/// The `missing` list of an attach refused for missing grants.
pub fn missing_grants<T>(answer: Result<T, CredentialsError>) -> Result<Vec<String>> {
    match answer.err().context("attach must be refused")? {
        CredentialsError::MissingGrants { missing, .. } => Ok(missing),
        e => bail!("{e:?}"),
    }
}
