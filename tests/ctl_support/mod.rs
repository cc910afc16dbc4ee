//! For the `onboard ctl` tests: the Entra emulator in this process, `onboard serve` as a child
//! process (copied from tests/support, which the test kit is replacing), the wizard's gRPC
//! calls to set a scene up, and a runner for `onboard ctl …` that captures exit code and
//! output.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use audit_log::NoteSigner;
use entra_sim::{Faults, Sim, SimConfig};
use onboard_proto::v1 as pb;
use onboard_proto::v1::invitations_client::InvitationsClient;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use pb::provision_event::Event as PE;
use pb::sign_in_event::Event as SE;
use prost_reflect::DescriptorPool;
use serde::de::DeserializeSeed;
use tonic::transport::{Channel, Endpoint};

/// The audit log origin the configs use.
pub const ORIGIN: &str = "onboard.test/audit";
/// The operator's bearer token.
pub const OPERATOR: &str = "operator-token-ctl-tests";
/// The auditor's bearer token.
pub const AUDITOR: &str = "auditor-token-ctl-tests";
/// The seeded Global Administrator's nickname.
pub const GLOBAL_ADMIN: &str = "globaladmin";

/// The emulator with `faults`, a 1 s device-code interval unless `faults` sets one.
pub async fn start_sim(mut faults: Faults) -> Result<Sim> {
    faults.device_code_interval_s = faults.device_code_interval_s.or(Some(1));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(Sim::start(
        listener,
        SimConfig {
            faults,
            ..SimConfig::default()
        },
    )
    .await?)
}

/// A data directory, keys and a config file for `onboard serve` pointed at `sim`.
pub struct ServerFiles {
    /// Holds everything until the test ends.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub config: PathBuf,
    /// The audit log's verifier key (`name+id+base64`).
    pub vkey: String,
}

impl ServerFiles {
    /// Keys, the emulator's CA and the config (127.0.0.1:0, operator and auditor tokens).
    pub fn new(sim: &Sim) -> Result<Self> {
        Self::with_extra(sim, "")
    }

    /// As [`ServerFiles::new`], with `extra` TOML appended to the config (e.g. `[tls]`).
    pub fn with_extra(sim: &Sim, extra: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let signer = NoteSigner::generate(ORIGIN)?;
        let key = dir.path().join("signing.key");
        std::fs::write(&key, signer.to_pkcs8_pem()?.as_bytes())?;
        let ca = dir.path().join("sim-ca.pem");
        std::fs::write(&ca, sim.ca_pem())?;
        let config = dir.path().join("onboard.toml");
        std::fs::write(
            &config,
            format!(
                r#"[server]
listen = "127.0.0.1:0"
[storage]
data_dir = {data:?}
[audit]
signing_key = {key:?}
origin = "{ORIGIN}"
[entra]
authority_url = "{base}"
graph_url = "{base}"
extra_trust_roots = [{ca:?}]
token_app_client_id = "{client}"
[platform]
provider_name = "sp2"
server_name = "Sandbox1"
[invitations]
activation_base_url = "https://wizard.example.net/activate"
service_display_name = "Teams Direct Routing"
[[auth.tokens]]
sha256 = "{op}"
identity = "operator:ctl-test"
role = "operator"
[[auth.tokens]]
sha256 = "{aud}"
identity = "auditor:ctl-test"
role = "auditor"
{extra}"#,
                data = dir.path().join("data").display().to_string(),
                key = key.display().to_string(),
                ca = ca.display().to_string(),
                base = sim.base_url(),
                client = sim.info().token_app_client_id,
                op = onboard_server::token_sha256_hex(OPERATOR),
                aud = onboard_server::token_sha256_hex(AUDITOR),
            ),
        )?;
        Ok(Self {
            dir,
            config,
            vkey: signer.verifier().to_string(),
        })
    }
}

/// `onboard serve` running as a child process; killed on drop.
pub struct ServerProc {
    /// The process.
    child: Child,
    /// Where it listens (from its start-up line).
    pub addr: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
}

impl ServerProc {
    /// Starts `onboard serve` for `files` and waits for its "serving on" line.
    pub async fn spawn(files: &ServerFiles) -> Result<Self> {
        let log = files.dir.path().join("server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_onboard"))
            .args(["serve", "--config"])
            .arg(&files.config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("starting onboard serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).map(|_| line)
            }),
        )
        .await
        .context("onboard serve did not report its address within 60 s")???;
        let addr = match line.trim().strip_prefix("onboard serving on ") {
            Some(a) => a.parse()?,
            None => {
                let _ = child.kill();
                bail!("unexpected start-up line {line:?}");
            }
        };
        Ok(Self { child, addr, log })
    }

    /// `http://ADDR`, as `--addr` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Result<Channel> {
        Ok(Endpoint::from_shared(self.url())?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await?)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds a bearer token to every call.
#[derive(Clone)]
pub struct Bearer(pub &'static str);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let v = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| tonic::Status::internal("token header"))?;
        req.metadata_mut().insert("authorization", v);
        Ok(req)
    }
}

/// A client channel with the operator's token.
pub type Authed = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

/// `ch` with `token` on every call.
pub fn with(ch: Channel, token: &'static str) -> Authed {
    tonic::service::interceptor::InterceptedService::new(ch, Bearer(token))
}

/// A new invitation for `service_id`; returns its token.
pub async fn invite(ch: Channel, service_id: &str) -> Result<String> {
    let r = InvitationsClient::new(with(ch, OPERATOR))
        .create_invitation(pb::CreateInvitationRequest {
            customer: "Contoso".into(),
            service_id: service_id.into(),
            profile: "direct-routing".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(r.token)
}

/// SignIn with `token`; the emulator completes the device login as the Global Administrator.
/// Returns the onboarding id.
pub async fn sign_in(ch: Channel, sim: &Sim, token: &str) -> Result<String> {
    let upn = format!("{GLOBAL_ADMIN}@{}", sim.info().tenant_domain);
    let mut stream = OnboardingClient::new(ch)
        .sign_in(pb::SignInRequest {
            invitation_token: token.into(),
            admin_upn: upn.clone(),
        })
        .await?
        .into_inner();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(120), stream.message())
            .await
            .context("sign-in stalled")??;
        match next.and_then(|e| e.event) {
            Some(SE::DeviceCode(code)) => sim.complete_device_login(&code.user_code, &upn).await?,
            Some(SE::SignedIn(s)) => return Ok(s.onboarding_id),
            Some(_) => {}
            None => bail!("the sign-in ended without a result"),
        }
    }
}

/// Provisions a signed-in onboarding to the end; returns Completed (with the secret).
pub async fn provision(ch: Channel, token: &str, id: &str, name: &str) -> Result<pb::Completed> {
    let mut stream = OnboardingClient::new(ch)
        .provision(pb::ProvisionRequest {
            onboarding_id: id.into(),
            app_name: name.into(),
            idempotency_key: format!("key-{id}"),
            invitation_token: token.into(),
        })
        .await?
        .into_inner();
    let mut last = None;
    while let Some(e) = tokio::time::timeout(Duration::from_secs(300), stream.message())
        .await
        .context("provision stalled")??
    {
        last = e.event;
    }
    match last {
        Some(PE::Completed(c)) if !c.secret.is_empty() => Ok(c),
        other => bail!("{name}: the stream ended with {other:?}"),
    }
}

/// What one `onboard …` run did.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `onboard ARGS` with `env` (ONBOARD_* from the test's own environment removed, and
/// HOME pointed at an empty directory so no user ctl.toml is read), feeding `stdin`.
pub async fn onboard(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Result<Run> {
    let home = tempfile::tempdir()?;
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_onboard"));
    c.args(args)
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ONBOARD_")) {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        pipe.write_all(text.as_bytes()).await?;
    }
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .context("onboard did not finish within 180 s")??;
    Ok(Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `onboard ctl ARGS` against `server` with `token` (through ONBOARD_ADDR / ONBOARD_TOKEN).
pub async fn ctl(server: &ServerProc, token: &str, args: &[&str]) -> Result<Run> {
    let mut all = vec!["ctl"];
    all.extend_from_slice(args);
    let url = server.url();
    onboard(
        &all,
        &[("ONBOARD_ADDR", &url), ("ONBOARD_TOKEN", token)],
        None,
    )
    .await
}

/// Parses protobuf canonical JSON (as `--output json` writes it) into `M`, independently of
/// the CLI's code: prost-reflect over the descriptor set the server serves.
pub fn parse_json<M: prost::Message + Default>(text: &str, full_name: &str) -> Result<M> {
    let pool = DescriptorPool::decode(onboard_proto::FILE_DESCRIPTOR_SET)?;
    let desc = pool
        .get_message_by_name(full_name)
        .with_context(|| full_name.to_owned())?;
    let mut de = serde_json::Deserializer::from_str(text);
    let dynamic = desc.deserialize(&mut de)?;
    de.end()?;
    Ok(dynamic.transcode_to::<M>()?)
}

/// The last lines of a server log, for failure messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}
