//! Test harness: a real server on 127.0.0.1:0 with a temporary data directory, and clients
//! that present bearer tokens.
#![allow(dead_code)]

pub mod sim;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use audit_log::NoteSigner;
use onboard_proto::v1::audit_client::AuditClient;
use onboard_proto::v1::credentials_client::CredentialsClient;
use onboard_proto::v1::invitations_client::InvitationsClient;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use onboard_server::{App, Config, token_sha256_hex};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

pub const ORIGIN: &str = "onboard.test/audit";
pub const OPERATOR: &str = "operator-token-1";
pub const AUDITOR: &str = "auditor-token-1";
pub const ADMIN: &str = "admin-token-1";

/// A running server; dropping it stops the server.
pub struct TestServer {
    /// Where clients connect (port chosen by the OS, bound before serving: no start-up race).
    pub addr: SocketAddr,
    /// The server's state, so tests can append entries and use the invitation hook directly.
    pub app: App,
    /// Holds the data directory and key files until the test ends.
    pub dir: tempfile::TempDir,
    /// Completes the shutdown future given to `serve`.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The serving task, awaited by `stop` so a failed shutdown fails the test.
    task: Option<tokio::task::JoinHandle<Result<(), onboard_server::ServerError>>>,
}

/// Writes a signing key outside the data directory and returns the base configuration.
pub fn base_config(dir: &std::path::Path, extra: &str) -> Result<String> {
    let signer = NoteSigner::generate(ORIGIN)?;
    let key_path = dir.join("signing.key");
    std::fs::write(&key_path, signer.to_pkcs8_pem()?.as_bytes())?;
    Ok(format!(
        r#"
[server]
listen = "127.0.0.1:0"
[storage]
data_dir = "{data}"
[audit]
signing_key = "{key}"
origin = "{ORIGIN}"
[platform]
provider_name = "sp2"
server_name = "Sandbox1"
[invitations]
activation_base_url = "https://wizard.example.net/activate"
service_display_name = "Teams Direct Routing"
[[auth.tokens]]
sha256 = "{op}"
identity = "portal"
role = "operator"
[[auth.tokens]]
sha256 = "{aud}"
identity = "auditor-1"
role = "auditor"
[[auth.tokens]]
sha256 = "{adm}"
identity = "admin-1"
role = "admin"
{extra}
"#,
        data = dir.join("data").display(),
        key = key_path.display(),
        op = token_sha256_hex(OPERATOR),
        aud = token_sha256_hex(AUDITOR),
        adm = token_sha256_hex(ADMIN),
    ))
}

impl TestServer {
    /// Starts a plaintext server with the three bearer tokens.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let text = base_config(dir.path(), "")?;
        Self::start_with(dir, &text).await
    }

    /// Starts a server from configuration text.
    pub async fn start_with(dir: tempfile::TempDir, text: &str) -> Result<Self> {
        let config = Config::from_toml_str(text, std::iter::empty())?;
        let app = App::open(config)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(onboard_server::serve(listener, app.clone(), async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            app,
            dir,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub async fn channel(&self) -> Result<Channel> {
        Ok(Endpoint::try_from(format!("http://{}", self.addr))?
            .timeout(Duration::from_secs(10))
            .connect()
            .await?)
    }

    pub async fn audit(&self, token: Option<&str>) -> Result<AuditClient<Authed>> {
        Ok(AuditClient::with_interceptor(
            self.channel().await?,
            Bearer::new(token),
        ))
    }

    pub async fn invitations(&self, token: Option<&str>) -> Result<InvitationsClient<Authed>> {
        Ok(InvitationsClient::with_interceptor(
            self.channel().await?,
            Bearer::new(token),
        ))
    }

    pub async fn onboarding(&self, token: Option<&str>) -> Result<OnboardingClient<Authed>> {
        Ok(OnboardingClient::with_interceptor(
            self.channel().await?,
            Bearer::new(token),
        ))
    }

    pub async fn credentials(&self, token: Option<&str>) -> Result<CredentialsClient<Authed>> {
        Ok(CredentialsClient::with_interceptor(
            self.channel().await?,
            Bearer::new(token),
        ))
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await??;
        }
        Ok(())
    }

    /// Every stored entry as JSON.
    pub fn entries(&self) -> Result<Vec<serde_json::Value>> {
        let log = self.app.audit();
        log.entries(0, log.size())
            .map(|e| Ok(serde_json::from_slice(&e?.1)?))
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Adds `authorization: Bearer <token>` when a token is set.
#[derive(Clone)]
pub struct Bearer(
    /// The token to send, or none to test anonymous calls.
    Option<String>,
);

impl Bearer {
    pub fn new(token: Option<&str>) -> Self {
        Self(token.map(str::to_owned))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            let v = format!("Bearer {t}")
                .parse()
                .map_err(|_| Status::internal("bad token"))?;
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// Appends an entry as a service would.
pub async fn append(app: &App, fields: serde_json::Value) -> Result<u64> {
    let map = fields
        .as_object()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("not an object"))?;
    Ok(app.audit().append_fields(&map).await?.seq)
}

/// The field names of a status's BadRequest violations.
pub fn bad_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}
