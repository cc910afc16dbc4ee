//! Shared set-up: the Entra emulator on loopback HTTPS, a client trusting its CA with short retry
//! budgets, an audit log and a sled store in a temp dir, and an engine over them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use audit_log::{AuditLog, LogConfig, NoteSigner};
use entra_client::{EntraClient, EntraConfig, OpContext, TokenSet};
use entra_sim::{Faults, Sim, SimConfig, SimInfo};
use provision::{
    Admin, Engine, EngineConfig, Event, EventKind, EventStream, ProvisionRequest, StepHook,
};
use serde_json::Value;
use tokio_stream::StreamExt;

pub const ORIGIN: &str = "onboard.test/audit";
pub const KEY: [u8; 32] = [42u8; 32];
pub const SIGN_IN_SCOPES: &[&str] = &[
    "https://graph.microsoft.com/.default",
    "offline_access",
    "openid",
    "profile",
];

/// A calm emulator with a 1 s device-code interval.
pub fn calm() -> Faults {
    Faults {
        device_code_interval_s: Some(1),
        seed: Some(7),
        ..Faults::default()
    }
}

pub fn entra_config(sim: &Sim) -> EntraConfig {
    let mut c = EntraConfig::with_bases(sim.base_url(), sim.base_url()).trust_pem(sim.ca_pem());
    c.request_timeout = Duration::from_secs(15);
    c.connect_timeout = Duration::from_secs(5);
    c.retry.jitter = false;
    c.retry.initial_backoff = Duration::from_millis(100);
    c.retry.max_backoff = Duration::from_secs(3);
    c.retry.max_elapsed = Duration::from_secs(60);
    c.retry.max_attempts = 10;
    c.retry.replication_initial_backoff = Duration::from_millis(200);
    c.retry.replication_max_backoff = Duration::from_secs(1);
    c.retry.replication_max_elapsed = Duration::from_secs(30);
    c
}

fn signer() -> Result<NoteSigner> {
    NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]))
        .map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn open_audit(dir: &Path) -> Result<AuditLog> {
    Ok(AuditLog::open(
        LogConfig::new(dir.join("audit"), ORIGIN),
        signer()?,
    )?)
}

/// Everything a test needs.
pub struct Env {
    pub sim: Sim,
    pub info: SimInfo,
    pub client: EntraClient,
    pub dir: tempfile::TempDir,
    pub audit: AuditLog,
    pub db: sled::Db,
    pub engine: Engine,
    /// Stops the engine's runs as the server's shutdown would.
    pub shutdown: onboard_core::ShutdownController,
}

pub async fn start(faults: Faults, hook: Option<StepHook>) -> Result<Env> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Sim::start(
        listener,
        SimConfig {
            faults,
            ..SimConfig::default()
        },
    )
    .await?;
    let client = EntraClient::new(&entra_config(&sim))?;
    let info = sim.info();
    let dir = tempfile::tempdir()?;
    let audit = open_audit(dir.path())?;
    let db = sled::open(dir.path().join("state"))?;
    let shutdown = onboard_core::ShutdownController::default();
    let mut engine = build_engine_config(&client, &audit, &db, &info.token_app_client_id, hook)?;
    engine.shutdown = shutdown.handle();
    let engine = Engine::new(engine)?;
    Ok(Env {
        shutdown,
        sim,
        info,
        client,
        dir,
        audit,
        db,
        engine,
    })
}

pub fn build_engine(
    client: &EntraClient,
    audit: &AuditLog,
    db: &sled::Db,
    token_app_client_id: &str,
    hook: Option<StepHook>,
) -> Result<Engine> {
    Ok(Engine::new(build_engine_config(
        client,
        audit,
        db,
        token_app_client_id,
        hook,
    )?)?)
}

pub fn build_engine_config(
    client: &EntraClient,
    audit: &AuditLog,
    db: &sled::Db,
    token_app_client_id: &str,
    hook: Option<StepHook>,
) -> Result<EngineConfig> {
    let mut cfg = EngineConfig::new(
        client.clone(),
        audit.clone(),
        db.open_tree("provision")?,
        KEY,
        "Sandbox1",
        "sp2",
    )?;
    cfg.hook = hook;
    cfg.token_app_client_id = Some(token_app_client_id.to_owned());
    cfg.secret_lifetime = Some(time::Duration::days(180));
    Ok(cfg)
}

impl Env {
    pub fn upn(&self, nick: &str) -> String {
        format!("{nick}@{}", self.info.tenant_domain)
    }

    /// The wizard's device-code sign-in as `nick`.
    pub async fn sign_in(&self, nick: &str) -> Result<TokenSet> {
        let mut flow = self
            .client
            .sts()
            .start_device_code(
                &self.info.tenant_domain,
                &self.info.token_app_client_id,
                SIGN_IN_SCOPES,
                &OpContext::new(),
            )
            .await?;
        self.sim
            .complete_device_login(&flow.authorization().user_code, &self.upn(nick))
            .await?;
        Ok(flow.poll_until_done(|_| {}).await?)
    }

    pub async fn admin(&self, nick: &str) -> Result<Admin> {
        let tokens = self.sign_in(nick).await?;
        Ok(self.engine.sign_in(&tokens, &self.upn(nick)).await?)
    }

    pub fn req(&self, id: &str, name: &str) -> ProvisionRequest {
        ProvisionRequest {
            onboarding_id: id.into(),
            service_id: format!("svc-{id}"),
            app_name: name.into(),
            profile: "direct-routing".into(),
            platform_version: None,
            actor: "spiffe://platform.test/portal".into(),
        }
    }

    /// Audit entries (parsed) for one onboarding, in log order, with their index as `seq`.
    pub fn audit_entries(&self, onboarding_id: &str) -> Result<Vec<Value>> {
        audit_entries(&self.audit, onboarding_id)
    }

    pub fn snapshot(&self) -> Value {
        self.sim.snapshot()
    }

    pub fn sim_state_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

pub fn audit_entries(audit: &AuditLog, onboarding_id: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for r in audit.entries(0, u64::MAX) {
        let (_, bytes) = r?;
        let v: Value = serde_json::from_slice(&bytes)?;
        if v["onboarding_id"] == onboarding_id {
            out.push(v);
        }
    }
    Ok(out)
}

/// Reads a stream to its end (or fails after `secs`).
pub async fn collect(mut s: EventStream, secs: u64) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, s.next()).await {
            Ok(Some(e)) => out.push(e),
            Ok(None) => return Ok(out),
            Err(_) => bail!("stream did not end within {secs}s; got {:#?}", out),
        }
    }
}

pub fn completion(events: &[Event]) -> Result<&provision::Completion> {
    match events.last().map(|e| &e.kind) {
        Some(EventKind::Completed(c)) => Ok(c),
        other => bail!("last event is not Completed: {other:?}\nall: {events:#?}"),
    }
}

/// Applications in the emulator whose display name is `name`.
pub fn apps_named<'a>(snap: &'a Value, name: &str) -> Vec<&'a Value> {
    snap["applications"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["props"]["displayName"] == name)
                .collect()
        })
        .unwrap_or_default()
}

pub fn sps_for_app<'a>(snap: &'a Value, app_id: &str) -> Vec<&'a Value> {
    snap["service_principals"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["app_id"] == app_id).collect())
        .unwrap_or_default()
}

pub fn sps_named<'a>(snap: &'a Value, name: &str) -> Vec<&'a Value> {
    snap["service_principals"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["display_name"] == name).collect())
        .unwrap_or_default()
}

pub fn grants_of<'a>(snap: &'a Value, sp_id: &str) -> Vec<&'a Value> {
    snap["app_role_assignments"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["principal_id"] == sp_id).collect())
        .unwrap_or_default()
}

pub fn roles_of<'a>(snap: &'a Value, sp_id: &str) -> Vec<&'a Value> {
    snap["role_assignments"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["principal_id"] == sp_id).collect())
        .unwrap_or_default()
}

/// Checks the emulator holds exactly one app named `name` with one SP, exactly one secret, the
/// profile's grants and roles; returns (app_id, sp_id).
pub fn assert_provisioned(
    snap: &Value,
    name: &str,
    grants: usize,
    roles: usize,
) -> Result<(String, String)> {
    let apps = apps_named(snap, name);
    if apps.len() != 1 {
        bail!("expected one app named {name}, found {}", apps.len());
    }
    let app = apps[0];
    let app_id = app["app_id"].as_str().context("app_id")?.to_owned();
    if app["props"]["signInAudience"] != "AzureADMyOrg" {
        bail!("not single tenant: {}", app["props"]["signInAudience"]);
    }
    let pw = app["passwords"].as_array().map(Vec::len).unwrap_or(0);
    if pw != 1 {
        bail!("expected one secret, found {pw}");
    }
    let sps = sps_for_app(snap, &app_id);
    if sps.len() != 1 {
        bail!("expected one service principal, found {}", sps.len());
    }
    let sp_id = sps[0]["id"].as_str().context("sp id")?.to_owned();
    let g = grants_of(snap, &sp_id).len();
    if g != grants {
        bail!("expected {grants} app role grants, found {g}");
    }
    let r = roles_of(snap, &sp_id).len();
    if r != roles {
        bail!("expected {roles} role assignments, found {r}");
    }
    Ok((app_id, sp_id))
}
