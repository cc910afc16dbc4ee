//! Shared by the root package's process-level tests and the onboarding benchmark: the Entra
//! emulator in this process, `onboard serve` as a child process (so it can be SIGKILLed and its
//! memory measured), and the wizard's gRPC calls.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use audit_log::NoteSigner;
use entra_sim::{Faults, Sim, SimConfig};
use onboard_proto::v1 as pb;
use onboard_proto::v1::invitations_client::InvitationsClient;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use pb::sign_in_event::Event as SE;
use serde_json::Value;
use std::collections::BTreeSet;
use tonic::transport::{Channel, Endpoint};

/// The audit log origin the configs use.
pub const ORIGIN: &str = "onboard.test/audit";
/// The operator's bearer token (its SHA-256 is in the config).
pub const OPERATOR: &str = "operator-token-process-tests";
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
    /// Writes keys, the emulator's CA and the config (listen on 127.0.0.1:0, bearer tokens).
    pub fn new(sim: &Sim) -> Result<Self> {
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
identity = "operator:process-test"
role = "operator"
"#,
                data = dir.path().join("data").display().to_string(),
                key = key.display().to_string(),
                ca = ca.display().to_string(),
                base = sim.base_url(),
                client = sim.info().token_app_client_id,
                op = onboard_server::token_sha256_hex(OPERATOR),
            ),
        )?;
        Ok(Self {
            dir,
            config,
            vkey: signer.verifier().to_string(),
        })
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// `onboard serve` running as a child process.
pub struct ServerProc {
    /// The process; killed on drop.
    child: Child,
    /// Where it listens (read from its start-up line).
    pub addr: SocketAddr,
}

impl ServerProc {
    /// Starts `onboard serve --config CONFIG` and waits for its "serving on" line. Its log goes
    /// to `log` (appended), so a failing test can show it.
    pub async fn spawn(config: &Path, log: &Path) -> Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_onboard"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting onboard serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                reader.read_line(&mut line).map(|_| line)
                // The reader is dropped here; the server writes nothing else to stdout.
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
        Ok(Self { child, addr })
    }

    /// The process id (for /proc readings).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs, as in a power cut of the process.
    pub fn kill9(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait for the graceful exit; fails if the exit is not clean.
    pub fn terminate(mut self) -> Result<()> {
        catches_sigterm(self.child.id())?;
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let exit = self.child.wait()?;
        anyhow::ensure!(exit.success(), "onboard serve exited with {exit}");
        Ok(())
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Result<Channel> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await?)
    }
}

/// Waits until process `pid` catches SIGTERM. `onboard serve` installs its handler when the
/// gRPC server first polls its shutdown signal, after the start-up line; a SIGTERM that comes
/// earlier (a test that is quick, or a machine so loaded that the serving thread is preempted
/// while another thread already answers a call) ends the process by the signal's default
/// action instead of the graceful exit.
fn catches_sigterm(pid: u32) -> Result<()> {
    const SIGTERM_BIT: u64 = 1 << (15 - 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .context("no SigCgt line in /proc/<pid>/status")?;
        if caught & SIGTERM_BIT != 0 {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "onboard serve did not install its SIGTERM handler within 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds the operator's bearer token.
pub fn operator(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let v = format!("Bearer {OPERATOR}")
        .parse()
        .map_err(|_| tonic::Status::internal("token header"))?;
    req.metadata_mut().insert("authorization", v);
    Ok(req)
}

/// A new invitation for `service_id`; returns its token.
pub async fn invite(channel: Channel, service_id: &str) -> Result<String> {
    let mut c = InvitationsClient::with_interceptor(channel, operator);
    let r = c
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

/// SignIn with `token`; the emulator completes the device login as `nick` once the code
/// arrives. Returns the onboarding id.
pub async fn sign_in(channel: Channel, sim: &Sim, token: &str, nick: &str) -> Result<String> {
    let upn = format!("{nick}@{}", sim.info().tenant_domain);
    let mut c = OnboardingClient::new(channel);
    let mut stream = c
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

/// Starts Provision for a signed-in onboarding; returns the event stream.
pub async fn provision(
    channel: Channel,
    token: &str,
    id: &str,
    name: &str,
) -> Result<tonic::Streaming<pb::ProvisionEvent>> {
    let mut c = OnboardingClient::new(channel);
    Ok(c.provision(pb::ProvisionRequest {
        onboarding_id: id.into(),
        app_name: name.into(),
        idempotency_key: format!("key-{id}"),
        invitation_token: token.into(),
    })
    .await?
    .into_inner())
}

/// The onboarding as the operator sees it.
pub async fn get(channel: Channel, id: &str) -> Result<pb::OnboardingInfo> {
    let mut c = OnboardingClient::with_interceptor(channel, operator);
    Ok(c.get_onboarding(pb::GetOnboardingRequest {
        onboarding_id: id.into(),
        invitation_token: String::new(),
    })
    .await?
    .into_inner())
}

/// Polls until the onboarding is no longer running; returns its final summary.
pub async fn wait_settled(
    channel: Channel,
    id: &str,
    limit: Duration,
) -> Result<pb::OnboardingInfo> {
    let end = tokio::time::Instant::now() + limit;
    loop {
        let info = get(channel.clone(), id).await?;
        let state = info.state();
        if !matches!(
            state,
            pb::OnboardingState::Provisioning
                | pb::OnboardingState::SignedIn
                | pb::OnboardingState::SigningIn
                | pb::OnboardingState::Unspecified
        ) {
            return Ok(info);
        }
        if tokio::time::Instant::now() > end {
            bail!("onboarding {id} still {state:?} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Peak resident set size of process `pid` (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?)
}

/// What one whole onboarding took.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// Invitation + device-code sign-in (dominated by the device-code poll interval).
    pub sign_in: Duration,
    /// From the Provision call to its Completed event.
    pub provision: Duration,
}

/// Invitation, sign-in as the Global Administrator and Provision to Completed, as the wizard
/// does it. Fails unless the stream ends with Completed carrying a secret.
pub async fn onboard_one(
    channel: Channel,
    sim: &Sim,
    service_id: &str,
    name: &str,
) -> Result<Timings> {
    use pb::provision_event::Event as PE;
    let t0 = tokio::time::Instant::now();
    let token = invite(channel.clone(), service_id).await?;
    let id = sign_in(channel.clone(), sim, &token, GLOBAL_ADMIN).await?;
    let t1 = tokio::time::Instant::now();
    let mut stream = provision(channel, &token, &id, name).await?;
    let mut last = None;
    while let Some(e) = tokio::time::timeout(Duration::from_secs(300), stream.message())
        .await
        .context("provision stalled")??
    {
        last = e.event;
    }
    match last {
        Some(PE::Completed(c)) if !c.secret.is_empty() => Ok(Timings {
            sign_in: t1 - t0,
            provision: t1.elapsed(),
        }),
        other => bail!("{name}: the stream ended with {other:?}"),
    }
}

/// The profile's three grants (Organization.Read.All, User.Read.All, Tenant Admin API
/// `application_access`) and one directory role (Teams Administrator).
pub const GRANTS: usize = 3;
pub const ROLES: usize = 1;

pub fn sps_where<'a>(snap: &'a Value, key: &str, value: &str) -> Vec<&'a Value> {
    snap["service_principals"]
        .as_array()
        .map(|a| a.iter().filter(|x| x[key] == value).collect())
        .unwrap_or_default()
}

/// One app named `name`, one secret, one service principal, and the profile's grants and
/// roles each exactly once.
pub fn no_duplicates(snap: &Value, name: &str) -> Result<()> {
    let apps: Vec<&Value> = snap["applications"]
        .as_array()
        .context("applications")?
        .iter()
        .filter(|a| a["props"]["displayName"] == name)
        .collect();
    ensure!(apps.len() == 1, "{} applications", apps.len());
    let secrets = apps[0]["passwords"].as_array().map(Vec::len).unwrap_or(0);
    ensure!(secrets == 1, "{secrets} secrets");
    let app_id = apps[0]["app_id"].as_str().context("app_id")?;
    let sps = sps_where(snap, "app_id", app_id);
    ensure!(sps.len() == 1, "{} service principals", sps.len());
    let sp = sps[0]["id"].as_str().context("sp id")?;
    for (kind, want, key) in [
        ("app_role_assignments", GRANTS, "app_role_id"),
        ("role_assignments", ROLES, "role_definition_id"),
    ] {
        let of_sp: Vec<&Value> = snap[kind]
            .as_array()
            .context("assignments")?
            .iter()
            .filter(|x| x["principal_id"] == sp)
            .collect();
        let distinct: BTreeSet<String> = of_sp.iter().map(|x| x[key].to_string()).collect();
        ensure!(
            of_sp.len() == want && distinct.len() == want,
            "{kind}: {} assignments, {} distinct, want {want}",
            of_sp.len(),
            distinct.len()
        );
    }
    Ok(())
}

/// Exports the log with the CLI and verifies it with the verifier key, as an auditor would.
pub fn verify_log(files: &ServerFiles) -> Result<()> {
    let export = files.dir.path().join("export");
    let out = Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(["audit", "export", "--data-dir"])
        .arg(files.data_dir().join("audit"))
        .arg("--out")
        .arg(&export)
        .output()?;
    ensure!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_onboard"))
        .args(["audit", "verify"])
        .arg(&export)
        .args(["--vkey", &files.vkey])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && !text.contains("INVALID"),
        "verify:\n{text}"
    );
    Ok(())
}

/// A small deterministic generator (xorshift64*), so a printed seed replays a failing run.
pub struct Rng {
    /// The seed it started from.
    pub seed: u64,
    /// The current state.
    state: u64,
}

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Rounds (`ONBOARD_KILL_ROUNDS`, else `default_rounds`) and a generator seeded from
/// `ONBOARD_KILL_SEED` (else the clock) for the kill tests; prints both for a replay.
pub fn kill_plan(default_rounds: u64) -> (u64, Rng) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let rounds = env("ONBOARD_KILL_ROUNDS").unwrap_or(default_rounds);
    let seed = env("ONBOARD_KILL_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    }) | 1;
    println!("ONBOARD_KILL_SEED={seed} ONBOARD_KILL_ROUNDS={rounds}");
    (rounds, Rng { seed, state: seed })
}
