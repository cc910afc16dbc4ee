//! Shared set-up: the Entra emulator on loopback HTTPS, an audit log and a sled store in a temp
//! dir, the provisioning engine (to make registrations the way Onboard does), and the
//! credentials manager over the same store. "Crashes" drop a manager mid-work and build a new
//! one over the same tree, as a restarted process would.

#![allow(dead_code)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use audit_log::{AuditLog, LogConfig, NoteSigner};
use credentials::{Credentials, CredentialsConfig, RegistrationRef};
use entra_client::graph::types::ApplicationSpec;
use entra_client::{EntraClient, EntraConfig, GraphClient, OpContext, TokenSet};
use entra_sim::{Faults, Sim, SimConfig, SimInfo};
use onboard_core::Hook;
use provision::{Engine, EngineConfig, EventKind, ProvisionRequest};
use secrecy::SecretString;
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
pub const ACTOR: &str = "spiffe://platform.test/operator";
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

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
    c.retry.max_backoff = Duration::from_secs(1);
    c.retry.max_elapsed = Duration::from_secs(30);
    c.retry.max_attempts = 10;
    c.retry.replication_initial_backoff = Duration::from_millis(200);
    c.retry.replication_max_backoff = Duration::from_secs(1);
    c.retry.replication_max_elapsed = Duration::from_secs(20);
    c
}

pub struct Env {
    pub sim: Sim,
    pub info: SimInfo,
    pub client: EntraClient,
    pub dir: tempfile::TempDir,
    pub audit: AuditLog,
    pub db: sled::Db,
    pub engine: Engine,
    pub creds: Credentials,
}

pub async fn start(faults: Faults) -> Result<Env> {
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
    let signer = NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let audit = AuditLog::open(LogConfig::new(dir.path().join("audit"), ORIGIN), signer)?;
    let db = sled::open(dir.path().join("state"))?;
    let mut ecfg = EngineConfig::new(
        client.clone(),
        audit.clone(),
        db.open_tree("provision")?,
        KEY,
        "Sandbox1",
        "sp2",
    )?;
    ecfg.secret_lifetime = Some(time::Duration::days(180));
    ecfg.token_app_client_id = Some(info.token_app_client_id.clone());
    let engine = Engine::new(ecfg)?;
    let creds = build(&client, &audit, &db, None)?;
    Ok(Env {
        sim,
        info,
        client,
        dir,
        audit,
        db,
        engine,
        creds,
    })
}

pub fn build(
    client: &EntraClient,
    audit: &AuditLog,
    db: &sled::Db,
    hook: Option<Hook>,
) -> Result<Credentials> {
    let mut cfg = CredentialsConfig::new(
        client.clone(),
        audit.clone(),
        db.open_tree("credentials")?,
        KEY,
    )?;
    cfg.hook = hook;
    Ok(Credentials::new(cfg)?)
}

impl Env {
    pub fn upn(&self, nick: &str) -> String {
        format!("{nick}@{}", self.info.tenant_domain)
    }

    /// A new manager over the same store (a restarted process), with `hook`.
    pub fn restart(&self, hook: Option<Hook>) -> Result<Credentials> {
        build(&self.client, &self.audit, &self.db, hook)
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

    /// Signs `nick` in and stores the session for day-two changes.
    pub async fn store_session(&self, creds: &Credentials, nick: &str) -> Result<()> {
        let tokens = self.sign_in(nick).await?;
        creds
            .store_admin_session(
                &self.info.tenant_id,
                &self.upn(nick),
                &self.info.token_app_client_id,
                SIGN_IN_SCOPES,
                &tokens,
            )
            .await?;
        Ok(())
    }

    /// Graph as `nick` (delegated).
    pub async fn graph_as(&self, nick: &str) -> Result<GraphClient> {
        let t = self.sign_in(nick).await?;
        Ok(self.client.graph(t.access_token))
    }

    /// A registration made by a full onboarding (service `svc-<id>`), imported.
    pub async fn provisioned(&self, id: &str, name: &str) -> Result<RegistrationRef> {
        let tokens = self.sign_in("globaladmin").await?;
        let admin = self
            .engine
            .sign_in(&tokens, &self.upn("globaladmin"))
            .await?;
        let mut events = self
            .engine
            .provision(
                ProvisionRequest {
                    onboarding_id: id.into(),
                    service_id: format!("svc-{id}"),
                    app_name: name.into(),
                    profile: "direct-routing".into(),
                    platform_version: None,
                    actor: ACTOR.into(),
                },
                admin,
            )
            .await?;
        let mut client_id = None;
        while let Some(e) = tokio::time::timeout(Duration::from_secs(60), events.next()).await? {
            match e.kind {
                EventKind::Completed(c) => {
                    client_id = Some(c.client_id.clone());
                    break;
                }
                EventKind::Failed { error } if e.step.is_empty() => bail!("failed: {error}"),
                _ => {}
            }
        }
        let client_id = client_id.context("no Completed event")?;
        self.creds.import_provisioned(&self.engine).await?;
        Ok(RegistrationRef::new(&self.info.tenant_id, client_id))
    }

    /// True when `secret` gets a client-credentials token for `client_id` now.
    pub async fn authenticates(&self, client_id: &str, secret: &SecretString) -> bool {
        self.client
            .sts()
            .client_credentials(
                &self.info.tenant_id,
                client_id,
                secret,
                GRAPH_SCOPE,
                &OpContext::new(),
            )
            .await
            .is_ok()
    }

    /// The application's passwords as the emulator holds them.
    pub fn passwords(&self, client_id: &str) -> Vec<Value> {
        let snap = self.sim.snapshot();
        snap["applications"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["app_id"] == client_id))
            .and_then(|a| a["passwords"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Audit entries (parsed) with `onboarding_id == id`.
    pub fn audit_entries(&self, id: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for r in self.audit.entries(0, u64::MAX) {
            let (_, bytes) = r?;
            let v: Value = serde_json::from_slice(&bytes)?;
            if v["onboarding_id"] == id {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// A hand-made registration (as a customer would make it in the portal), with a secret,
    /// the given Graph permissions and directory roles (by template id), made as `globaladmin`.
    pub async fn hand_made(
        &self,
        name: &str,
        graph_perms: &[&str],
        teams_perm: bool,
        role_template_ids: &[&str],
    ) -> Result<(String, String, String, SecretString)> {
        let g = self.graph_as("globaladmin").await?;
        let ctx = OpContext::new().after_create();
        let app = g
            .upsert_application(
                &format!("hand-{name}"),
                &ApplicationSpec {
                    display_name: name.into(),
                    sign_in_audience: Some("AzureADMyOrg".into()),
                    required_resource_access: vec![],
                    extra: Default::default(),
                },
                &ctx,
            )
            .await?
            .value
            .application;
        let sp = g.create_service_principal(&app.app_id, &ctx).await?.value;
        let pw = g
            .add_password(&app.id, Some("by hand"), None, &ctx)
            .await?
            .value;
        let mut resources = vec![(entra_client::MICROSOFT_GRAPH_APP_ID, graph_perms.to_vec())];
        if teams_perm {
            resources.push((
                entra_client::TEAMS_TENANT_ADMIN_API_APP_ID,
                vec!["application_access"],
            ));
        }
        for (res, perms) in resources {
            let rsp = g.resource_service_principal(res, &ctx).await?.value;
            for p in perms {
                let role = rsp.app_role(p).context("app role")?.id.clone();
                g.grant_app_role(&rsp.id, &sp.id, &role, &ctx).await?;
            }
        }
        for r in role_template_ids {
            g.assign_directory_role(r, &sp.id, &ctx).await?;
        }
        Ok((app.app_id, app.id, sp.id, pw.secret_text))
    }
}
