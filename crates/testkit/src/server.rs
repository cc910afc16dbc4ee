//! The server in this process on `127.0.0.1:0` with a temporary data directory, gRPC clients
//! that present the operator's, auditor's or admin's bearer token, and what tests read back
//! (audit entries, `google.rpc.BadRequest` fields).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use onboard_proto::v1::audit_client::AuditClient;
use onboard_proto::v1::credentials_client::CredentialsClient;
use onboard_proto::v1::invitations_client::InvitationsClient;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use onboard_proto::v1::verification_client::VerificationClient;
use onboard_server::{App, Config, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

pub use crate::config::{ADMIN, AUDITOR, Edit, OPERATOR, ServerConfigBuilder};

/// How long [`TestServer::open`] waits for the server's start-up work.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A running server; dropping it stops the server.
pub struct TestServer {
    /// Where clients connect (port chosen by the OS, bound before serving: no start-up race).
    pub addr: SocketAddr,
    /// The server's state, so tests can append entries and reach the services' back-ends.
    pub app: App,
    /// Holds the data directory and key files until the test ends.
    pub dir: tempfile::TempDir,
    /// The configuration it runs with, to start it again on the same data directory.
    config: Config,
    /// Completes the shutdown future given to `serve`.
    stop: Option<oneshot::Sender<()>>,
    /// The serving task, awaited by `stop` so a failed shutdown fails the test.
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// A plaintext server with the three bearer tokens and no Entra.
    pub async fn start() -> Result<Self> {
        Self::start_with(Ok).await
    }

    /// A server with the local set-up changed by `edit`.
    pub async fn start_with(edit: impl Edit) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = edit(ServerConfigBuilder::new(dir.path())?)?.build()?;
        Self::open(dir, config).await
    }

    /// A server with `config`, keeping `dir` until it ends. Returns once the server has done
    /// its start-up work (records migrated, generated keys moved out, onboardings resumed), so
    /// a test that reads `app` at once sees what a client's first call would; a start-up that
    /// fails is this call's error.
    pub async fn open(dir: tempfile::TempDir, config: Config) -> Result<Self> {
        let app = App::open(config.clone())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let mut task = tokio::spawn(onboard_server::serve(listener, app.clone(), async {
            let _ = stopped.await;
        }));
        tokio::select! {
            () = app.started() => {}
            ended = &mut task => {
                ended??;
                anyhow::bail!("the server stopped before it started serving");
            }
            () = tokio::time::sleep(START_LIMIT) => {
                task.abort();
                anyhow::bail!("the server's start-up work took over {START_LIMIT:?}");
            }
        }
        Ok(Self {
            addr,
            app,
            dir,
            config,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops the server (graceful: open streams end, running work stops where it is) and
    /// starts a new one on the same data directory, as a process restart would.
    pub async fn restart(self) -> Result<Self> {
        self.restart_with(|_| {}).await
    }

    /// [`TestServer::restart`] with `change` made to its configuration first (an operator
    /// editing the file between two runs).
    pub async fn restart_with(mut self, change: impl FnOnce(&mut Config)) -> Result<Self> {
        self.shut_down().await?;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        let mut config = self.config.clone();
        change(&mut config);
        // Every handle on the state databases goes with it, so they can be opened again.
        drop(self);
        Self::open(dir, config).await
    }

    /// Sends the stop signal and waits for the serving task, then closes the audit log and
    /// records its anchor, as `onboard serve` does at exit.
    async fn shut_down(&mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await??;
        }
        let app = self.app.clone();
        tokio::task::spawn_blocking(move || app.close()).await?;
        Ok(())
    }

    /// Stops the server and waits for it (see `shut_down`).
    pub async fn stop(mut self) -> Result<()> {
        self.shut_down().await
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A plaintext channel to the server; each call may take 10 s.
    pub async fn channel(&self) -> Result<Channel> {
        connect(&self.url(), Some(Duration::from_secs(10))).await
    }

    /// The raw HTTP/1.1 answer (status line, headers, body) to the wizard's `POST path` with
    /// invitation `token` and JSON `body`, over a plain loopback connection, as a browser
    /// sends it.
    pub async fn wizard_post(&self, path: &str, token: &str, body: &str) -> Result<String> {
        self.http(&format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\nx-invitation-token: {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        ))
        .await
    }

    /// The raw HTTP/1.1 answer to `GET path` (path and query), as a browser sends it (a page
    /// Microsoft sends the browser back to, e.g. `/wizard/signed-in?code=…&state=…`).
    pub async fn wizard_get(&self, path: &str) -> Result<String> {
        self.http(&format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            self.addr
        ))
        .await
    }

    /// Sends one raw HTTP/1.1 request over a plain loopback connection; the whole answer.
    async fn http(&self, request: &str) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(self.addr).await?;
        c.write_all(request.as_bytes()).await?;
        let mut out = Vec::new();
        c.read_to_end(&mut out).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// `channel()` with `token` as the bearer (none: anonymous).
    async fn authed(&self, token: Option<&str>) -> Result<Authed> {
        Ok(with_token(self.channel().await?, token))
    }

    /// An Audit client presenting `token`.
    pub async fn audit(&self, token: Option<&str>) -> Result<AuditClient<Authed>> {
        Ok(AuditClient::new(self.authed(token).await?))
    }

    /// An Invitations client presenting `token`.
    pub async fn invitations(&self, token: Option<&str>) -> Result<InvitationsClient<Authed>> {
        Ok(InvitationsClient::new(self.authed(token).await?))
    }

    /// An Onboarding client presenting `token`.
    pub async fn onboarding(&self, token: Option<&str>) -> Result<OnboardingClient<Authed>> {
        Ok(OnboardingClient::new(self.authed(token).await?))
    }

    /// The invitation `key` names (`Key::Id` or `Key::Token`), as an operator reads it.
    pub async fn invitation(
        &self,
        key: onboard_proto::v1::get_invitation_request::Key,
    ) -> Result<onboard_proto::v1::Invitation> {
        let mut c = self.invitations(Some(OPERATOR)).await?;
        let req = onboard_proto::v1::GetInvitationRequest { key: Some(key) };
        Ok(c.get_invitation(req).await?.into_inner())
    }

    /// A Credentials client presenting `token`.
    pub async fn credentials(&self, token: Option<&str>) -> Result<CredentialsClient<Authed>> {
        Ok(CredentialsClient::new(self.authed(token).await?))
    }

    /// A Verification client presenting `token`.
    pub async fn verification(&self, token: Option<&str>) -> Result<VerificationClient<Authed>> {
        Ok(VerificationClient::new(self.authed(token).await?))
    }

    /// Every stored audit entry as JSON, each checked against the published schema.
    pub fn entries(&self) -> Result<Vec<serde_json::Value>> {
        crate::audit::typed_entries(self.app.audit())
    }

    /// Every stored audit entry as JSON, unchecked: for tests that [`append`]ed free-form
    /// fields of their own beside what the server wrote.
    pub fn raw_entries(&self) -> Result<Vec<serde_json::Value>> {
        crate::audit::entries(self.app.audit())
    }

    /// The stored entries of `action`, each checked against the published schema: as
    /// [`crate::audit::with_action`], among entries of other kinds a test [`append`]ed
    /// free-form, or an earlier release wrote, which are not checked.
    pub fn entries_with_action(&self, action: &str) -> Result<Vec<serde_json::Value>> {
        let of: Vec<_> = self
            .raw_entries()?
            .into_iter()
            .filter(|e| e["action"] == action)
            .collect();
        crate::audit::check_schema(&of)?;
        Ok(of)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The JSON body of a wizard answer ([`TestServer::wizard_post`]), which must be a 200.
pub fn json_body(answer: &str) -> Result<serde_json::Value> {
    anyhow::ensure!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no body: {answer}"))?;
    Ok(serde_json::from_str(body)?)
}

/// A plaintext channel to `url` (`http://ADDR`), connected within 10 s; each call limited to
/// `call_timeout` when given.
pub async fn connect(url: &str, call_timeout: Option<Duration>) -> Result<Channel> {
    let mut e = Endpoint::from_shared(url.to_owned())?.connect_timeout(Duration::from_secs(10));
    if let Some(t) = call_timeout {
        e = e.timeout(t);
    }
    Ok(e.connect().await?)
}

/// Adds `authorization: Bearer <token>` when a token is set.
#[derive(Clone)]
pub struct Bearer(
    /// The token to send, or none to test anonymous calls.
    Option<String>,
);

impl Bearer {
    /// Sends `token` (none: nothing).
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

/// A channel whose calls carry a bearer token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// `channel` with `token` on every call (none: anonymous).
pub fn with_token(channel: Channel, token: Option<&str>) -> Authed {
    InterceptedService::new(channel, Bearer::new(token))
}

/// Appends an entry with `fields` (a JSON object) as a service would; returns its seq.
pub async fn append(app: &App, fields: serde_json::Value) -> Result<u64> {
    let map = fields
        .as_object()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("not an object"))?;
    Ok(app.audit().append_fields(&map).await?.seq)
}

/// The field names of a status's `google.rpc.BadRequest` violations.
pub fn bad_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}
