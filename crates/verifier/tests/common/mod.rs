//! Shared set-up: the Entra emulator, an onboarding done by the provision engine as the seeded
//! Global Administrator, a platform service answering gRPC health, and helpers that change the
//! emulator's state through its Graph API with the admin's token (as an outside change would).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use audit_log::{AuditLog, LogConfig, NoteSigner};
use entra_client::{EntraClient, EntraConfig, OpContext, TokenSet};
use entra_sim::{Faults, Sim, SimConfig, SimInfo};
use provision::{Engine, EngineConfig, EventKind, ProvisionRequest};
use secrecy::{ExposeSecret, SecretString};
use tokio_stream::StreamExt;
use verifier::{ExpectedRole, PlatformEndpoint, Probe, VerifyInput};

pub const ORIGIN: &str = "onboard.test/audit";
pub const TEMP_APP: &str = "Sandbox1-sp2-token";
pub const SERVICE: &str = "dr-1";
const SIGN_IN_SCOPES: &[&str] = &[
    "https://graph.microsoft.com/.default",
    "offline_access",
    "openid",
];

pub fn entra_config(sim: &Sim) -> EntraConfig {
    let mut c = EntraConfig::with_bases(sim.base_url(), sim.base_url()).trust_pem(sim.ca_pem());
    c.request_timeout = Duration::from_secs(15);
    c.retry.jitter = false;
    c.retry.initial_backoff = Duration::from_millis(100);
    c.retry.max_elapsed = Duration::from_secs(30);
    c.retry.replication_initial_backoff = Duration::from_millis(200);
    c.retry.replication_max_elapsed = Duration::from_secs(30);
    c
}

/// The emulator, the client, an audit log and one completed onboarding.
pub struct Env {
    pub sim: Sim,
    pub info: SimInfo,
    pub client: EntraClient,
    pub dir: tempfile::TempDir,
    pub audit: AuditLog,
    pub db: sled::Db,
    pub engine: Engine,
    /// The Global Administrator's delegated token (reads and writes roles and grants).
    pub admin_token: SecretString,
    pub tenant_id: String,
    pub client_id: String,
    pub sp_id: String,
    pub key_id: String,
    pub secret: SecretString,
    pub expires: Option<String>,
}

pub async fn onboarded() -> Result<Env> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Sim::start(
        listener,
        SimConfig {
            faults: Faults {
                device_code_interval_s: Some(1),
                seed: Some(7),
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await?;
    let info = sim.info();
    let client = EntraClient::new(&entra_config(&sim))?;
    let dir = tempfile::tempdir()?;
    let signer = NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]))?;
    let audit = AuditLog::open(LogConfig::new(dir.path().join("audit"), ORIGIN), signer)?;
    let db = sled::open(dir.path().join("state"))?;
    let mut cfg = EngineConfig::new(
        client.clone(),
        audit.clone(),
        db.open_tree("provision")?,
        [42u8; 32],
        "Sandbox1",
        "sp2",
    )?;
    cfg.secret_lifetime = Some(time::Duration::days(180));
    cfg.token_app_client_id = Some(info.token_app_client_id.clone());
    let engine = Engine::new(cfg)?;
    let upn = format!("globaladmin@{}", info.tenant_domain);
    let tokens = sign_in(&sim, &client, &info, &upn).await?;
    let admin_token = SecretString::from(tokens.access_token.expose_secret().to_owned());
    let admin = engine.sign_in(&tokens, &upn).await?;
    let mut events = engine
        .provision(
            ProvisionRequest {
                onboarding_id: "ob-1".into(),
                service_id: SERVICE.into(),
                app_name: "lp-dr1".into(),
                profile: "direct-routing".into(),
                platform_version: None,
                actor: "test".into(),
            },
            admin,
        )
        .await?;
    let mut done = None;
    while let Some(e) = tokio::time::timeout(Duration::from_secs(60), events.next()).await? {
        match e.kind {
            EventKind::Completed(c) => done = Some(c),
            EventKind::Aborted { .. } => bail!("onboarding aborted: {e:?}"),
            _ => {}
        }
    }
    let c = done.context("no Completed event")?;
    let ob = engine.get("ob-1")?.context("record")?;
    Ok(Env {
        sim,
        client,
        dir,
        audit,
        db,
        engine,
        admin_token,
        tenant_id: c.tenant_id.clone(),
        client_id: c.client_id.clone(),
        sp_id: ob.sp_id.context("sp id")?,
        key_id: c.key_id.clone(),
        secret: c.secret.clone().context("secret")?,
        expires: c.expires.clone(),
        info,
    })
}

pub async fn sign_in(
    sim: &Sim,
    client: &EntraClient,
    info: &SimInfo,
    upn: &str,
) -> Result<TokenSet> {
    let mut flow = client
        .sts()
        .start_device_code(
            &info.tenant_domain,
            &info.token_app_client_id,
            SIGN_IN_SCOPES,
            &OpContext::new(),
        )
        .await?;
    sim.complete_device_login(&flow.authorization().user_code, upn)
        .await?;
    Ok(flow.poll_until_done(|_| {}).await?)
}

impl Env {
    /// What the server would hand the verifier for this registration.
    pub fn input(&self, platform: Vec<PlatformEndpoint>) -> VerifyInput {
        VerifyInput {
            tenant_id: self.tenant_id.clone(),
            client_id: self.client_id.clone(),
            app_object_id: None,
            sp_id: self.sp_id.clone(),
            service_id: Some(SERVICE.into()),
            profile: "direct-routing".into(),
            secret: self.secret.clone(),
            secret_key_id: Some(self.key_id.clone()),
            secret_expires: self.expires.as_deref().and_then(|e| {
                time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339).ok()
            }),
            graph_permissions: vec!["Organization.Read.All".into(), "User.Read.All".into()],
            tenant_admin_permissions: vec!["application_access".into()],
            directory_roles: vec![ExpectedRole {
                name: "Teams Administrator".into(),
                template_id: entra_client::graph::roles::template::TEAMS_ADMINISTRATOR.into(),
            }],
            horizon: Duration::from_secs(30 * 86_400),
            critical: Duration::from_secs(7 * 86_400),
            temporary_app_name: TEMP_APP.into(),
            temporary_app_client_id: self.info.token_app_client_id.clone(),
            platform,
            reader_token: Some(self.admin_token.clone()),
        }
    }

    fn admin_graph(&self) -> entra_client::GraphClient {
        self.client.graph(self.admin_token.clone())
    }

    /// Removes the SP's Teams Administrator assignment, as someone in the portal would.
    pub async fn remove_role(&self) -> Result<()> {
        let g = self.admin_graph();
        let ctx = OpContext::new();
        let all = g
            .list_directory_role_assignments(&self.sp_id, &ctx)
            .await?
            .value;
        let a = all
            .iter()
            .find(|a| {
                a.role_definition_id == entra_client::graph::roles::template::TEAMS_ADMINISTRATOR
            })
            .context("no Teams Administrator assignment")?;
        g.remove_directory_role_assignment(&a.id, &ctx).await?;
        Ok(())
    }

    /// Revokes the SP's Graph `value` app role, as someone in the portal would.
    pub async fn revoke_permission(&self, value: &str) -> Result<()> {
        let g = self.admin_graph();
        let ctx = OpContext::new();
        let graph_sp = g
            .resource_service_principal(entra_client::MICROSOFT_GRAPH_APP_ID, &ctx)
            .await?
            .value;
        let role = graph_sp.app_role(value).context("no such app role")?;
        let held = g.list_app_role_assignments(&self.sp_id, &ctx).await?.value;
        let a = held
            .iter()
            .find(|a| a.app_role_id == role.id && a.resource_id == graph_sp.id)
            .context("grant not held")?;
        g.revoke_app_role(&graph_sp.id, &a.id, &ctx).await?;
        Ok(())
    }
}

impl Env {
    /// Puts the role and the Graph permission back, as an admin in the portal would.
    pub async fn restore(&self, value: &str) -> Result<()> {
        self.admin_graph()
            .assign_directory_role(
                entra_client::graph::roles::template::TEAMS_ADMINISTRATOR,
                &self.sp_id,
                &OpContext::new(),
            )
            .await?;
        self.grant_permission(value).await
    }

    /// Grants the SP Graph app role `value`, as an admin in the portal would.
    pub async fn grant_permission(&self, value: &str) -> Result<()> {
        let g = self.admin_graph();
        let ctx = OpContext::new();
        let graph_sp = g
            .resource_service_principal(entra_client::MICROSOFT_GRAPH_APP_ID, &ctx)
            .await?
            .value;
        let role = graph_sp.app_role(value).context("no such app role")?;
        g.grant_app_role(&graph_sp.id, &self.sp_id, &role.id, &ctx)
            .await?;
        Ok(())
    }
}

/// A platform service: gRPC health on 127.0.0.1:0 with `service` set to serving or not.
pub struct Platform {
    pub addr: SocketAddr,
    pub reporter: tonic_health::server::HealthReporter,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn platform(service: &str, serving: bool) -> Result<Platform> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status(service, status).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    Ok(Platform {
        addr,
        reporter,
        stop: Some(stop),
    })
}

pub fn grpc_endpoint(addr: SocketAddr, service: &str) -> PlatformEndpoint {
    PlatformEndpoint {
        probe: Probe::GrpcHealth {
            url: format!("http://{addr}"),
            service: service.into(),
        },
        ca_pem: None,
        timeout: Duration::from_secs(3),
    }
}

/// A status page on 127.0.0.1:0 answering `{"status": <status>}`.
pub async fn status_page(status: &'static str) -> Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/status",
        axum::routing::get(
            move || async move { axum::Json(serde_json::json!({"status": status})) },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
