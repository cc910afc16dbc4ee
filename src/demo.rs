//! `onboard demo`: the whole onboarding, in process and on loopback. It starts the Entra
//! emulator and the gRPC server pointed at it, creates an invitation, signs in the seeded
//! Global Administrator with a device code (completing the login through the emulator, as the
//! person at the browser would), provisions the app registration with the default profile while
//! printing each step as it happens, then exports the audit log, writes the verifier key and
//! verifies the export.
//!
//! Contract kept by later versions: the export is in DIR/export, the verifier key (one line) in
//! DIR/audit.vkey, the server's data directory is DIR/data (the audit log in DIR/data/audit).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use audit_log::NoteSigner;
use entra_sim::{Faults, Sim, SimConfig};
use onboard_proto::v1 as pb;
use onboard_proto::v1::invitations_client::InvitationsClient;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use onboard_server::{App, Config, Role};
use pb::provision_event::Event as PE;
use pb::sign_in_event::Event as SE;
use tonic::transport::{Channel, Endpoint};

use crate::audit_cli;
use crate::local_server::{LocalServer, TokenRule};

/// The origin the demo log uses.
pub(crate) const ORIGIN: &str = "onboard.demo.invalid/audit";
/// The operator's bearer token; the server listens on loopback only, for this process.
pub(crate) const OPERATOR_TOKEN: &str = "demo-operator";
/// The `authorization` header carrying [`OPERATOR_TOKEN`].
const OPERATOR_BEARER: &str = "Bearer demo-operator";
/// The seeded Global Administrator of the emulator's tenant.
const ADMIN_NICK: &str = "globaladmin";

/// `onboard demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to put everything (default: a new temporary directory, kept and printed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Instead of playing the customer, serve the wizard and print an activation link for a
    /// person to open; the emulator's device-login page signs them in as a seeded admin.
    /// Runs until Ctrl-C.
    #[arg(long)]
    pub web: bool,
    /// With `--web`: the address the server listens on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", requires = "web")]
    pub listen: std::net::SocketAddr,
}

/// The server configuration for the demo: loopback, plaintext, one operator token, Entra at
/// the emulator.
pub(crate) fn server_config(
    dir: &Path,
    sim: &Sim,
    token_app: &str,
    activation_base_url: &str,
) -> anyhow::Result<Config> {
    let ca = dir.join("entra-sim-ca.pem");
    std::fs::write(&ca, sim.ca_pem())?;
    let base = sim.base_url();
    LocalServer {
        listen: "127.0.0.1:0",
        data_dir: &dir.join("data"),
        signing_key: &dir.join("audit.key"),
        origin: ORIGIN,
        authority_url: &base,
        graph_url: &base,
        trust_roots: &[ca],
        token_app_client_id: token_app,
        provider_name: "sp2",
        server_name: "Sandbox1",
        activation_base_url,
        tokens: &[TokenRule {
            token: OPERATOR_TOKEN,
            identity: "demo-portal",
            role: Role::Operator,
        }],
    }
    .config()
}

/// Adds the operator's bearer token to every call.
pub(crate) fn operator(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    req.metadata_mut().insert(
        "authorization",
        tonic::metadata::MetadataValue::from_static(OPERATOR_BEARER),
    );
    Ok(req)
}

/// The demo's invitation: Contoso, service `dr-demo`, the default profile (created as the
/// operator).
pub(crate) async fn demo_invitation(
    channel: Channel,
) -> anyhow::Result<pb::CreateInvitationResponse> {
    Ok(InvitationsClient::with_interceptor(channel, operator)
        .create_invitation(pb::CreateInvitationRequest {
            customer: "Contoso".into(),
            service_id: "dr-demo".into(),
            profile: "direct-routing".into(),
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// `abc…` for a secret: enough to recognise it, not to use it.
fn mask(secret: &str) -> String {
    let head: String = secret.chars().take(3).collect();
    format!(
        "{head}… ({} characters, shown once)",
        secret.chars().count()
    )
}

/// The client side: invitation, sign-in, plan and provision, printing as it goes.
async fn onboard(channel: Channel, sim: &Sim) -> anyhow::Result<()> {
    let info = sim.info();
    let upn = format!("{ADMIN_NICK}@{}", info.tenant_domain);
    let created = demo_invitation(channel.clone()).await?;
    let invitation = created.invitation.context("no invitation")?;
    println!(
        "1. Operator created invitation {} for {}",
        invitation.id, invitation.customer
    );

    let mut wizard = OnboardingClient::new(channel);
    let mut stream = wizard
        .sign_in(pb::SignInRequest {
            invitation_token: created.token.clone(),
            admin_upn: upn.clone(),
            method: pb::SignInMethod::DeviceCode.into(),
        })
        .await?
        .into_inner();
    println!("2. The customer admin opens the link and signs in as {upn}");
    let signed = loop {
        match stream.message().await? {
            Some(pb::SignInEvent {
                event: Some(SE::DeviceCode(code)),
            }) => {
                println!("   {}", code.message);
                println!("   (the emulator completes the login as {upn})");
                sim.complete_device_login(&code.user_code, &upn).await?;
            }
            Some(pb::SignInEvent {
                event: Some(SE::Pending(p)),
            }) => {
                let slow = if p.slow_down { " (slow down)" } else { "" };
                println!("   ... waiting for the sign-in{slow}");
            }
            Some(pb::SignInEvent {
                event: Some(SE::SignedIn(s)),
            }) => break s,
            Some(_) => {}
            None => bail!("the sign-in ended without a result"),
        }
    };
    println!(
        "   Signed in: {} in tenant {}, roles: {}",
        signed.upn,
        signed.tenant_id,
        signed.roles_held.join(", ")
    );
    let id = signed.onboarding_id;

    // A name not used before in this data directory (the demo can run again with --dir).
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let app_name = format!("LP-Demo-{:04}", secs % 10_000);
    let plan = wizard
        .plan(pb::PlanRequest {
            onboarding_id: id.clone(),
            app_name: app_name.clone(),
            invitation_token: created.token.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!("3. Plan for app registration {app_name:?} (changes nothing):");
    for c in &plan.changes {
        println!("   - {}", c.description);
    }

    println!("4. Provisioning (every change is written to the audit log first):");
    let mut events = wizard
        .provision(pb::ProvisionRequest {
            onboarding_id: id.clone(),
            app_name,
            idempotency_key: format!("demo-{id}"),
            invitation_token: created.token,
            seal_to: None,
        })
        .await?
        .into_inner();
    while let Some(e) = events.message().await? {
        match e.event {
            Some(PE::Started(s)) => println!("   [{:>2}] {:<40} started", e.index, s.step),
            Some(PE::Retrying(r)) => {
                println!("   [{:>2}] {:<40} retrying: {}", e.index, r.step, r.reason)
            }
            Some(PE::Done(d)) => {
                let what = if d.unchanged { "already there" } else { "done" };
                println!("   [{:>2}] {:<40} {what}", e.index, d.step);
            }
            Some(PE::Completed(c)) => {
                println!("5. Completed:");
                println!("   tenant id  {}", c.tenant_id);
                println!("   client id  {}", c.client_id);
                println!("   key id     {}", c.key_id);
                println!("   secret     {}", mask(&c.secret));
                if let Some(t) = c.expires_at {
                    println!("   expires    {}s after the Unix epoch", t.seconds);
                }
            }
            Some(PE::Failed(f)) => bail!("provisioning failed at {}: {}", f.step, f.reason),
            Some(PE::Cancelled(_)) => bail!("the onboarding was cancelled"),
            Some(PE::AwaitingAdmin(h)) => bail!(
                "the onboarding waits for an admin holding one of {:?}",
                h.roles
            ),
            None => {}
        }
    }
    Ok(())
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("onboard-demo-")
            .tempdir()?
            .keep(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let export = dir.join("export");
    let key_path = dir.join("audit.key");
    let vkey_path = dir.join("audit.vkey");
    println!("Onboard demo in {}", dir.display());

    // Keep the key across runs with the same --dir; the key never lives in the data directory.
    let signer = if key_path.exists() {
        audit_cli::read_key(&key_path, ORIGIN)?
    } else {
        let signer = NoteSigner::generate(ORIGIN)?;
        audit_cli::write_private(&key_path, signer.to_go_private_key().as_bytes())?;
        signer
    };
    let vkey = signer.verifier().to_string();
    std::fs::write(&vkey_path, format!("{vkey}\n"))?;

    let sim = Sim::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        SimConfig {
            faults: Faults {
                device_code_interval_s: Some(1),
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await?;
    println!("Entra emulator on {}", sim.base_url());
    if args.web {
        return crate::demo_web::run(&dir, sim, args.listen).await;
    }
    let config = server_config(
        &dir,
        &sim,
        &sim.info().token_app_client_id,
        "https://wizard.demo.invalid/activate",
    )?;
    let app = tokio::task::spawn_blocking(move || App::open(config)).await??;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(onboard_server::serve(listener, app.clone(), async {
        let _ = stopped.await;
    }));
    println!("Onboard server on {addr}");
    let channel = Endpoint::try_from(format!("http://{addr}"))?
        .timeout(Duration::from_secs(120))
        .connect()
        .await?;
    let result = onboard(channel, &sim).await;
    let _ = stop.send(());
    server.await??;
    sim.shutdown().await;
    result?;

    let log = app.audit().clone();
    let cp = log.checkpoint();
    println!();
    println!(
        "Audit log: {} entries, latest checkpoint (C2SP signed note):",
        cp.checkpoint.size
    );
    for line in cp.note.lines() {
        println!("  | {line}");
    }
    let summary = log.export_tiles(&export)?;
    let proof_path = dir.join("entry-0.tlog-proof");
    std::fs::write(&proof_path, log.tlog_proof(0)?.to_text())?;
    tokio::task::spawn_blocking(move || app.close()).await?;
    println!(
        "Exported {} entries to {} (C2SP tlog-tiles); proof of entry 0 in {}",
        summary.size,
        export.display(),
        proof_path.display()
    );
    println!("Verifier key ({}): {vkey}", vkey_path.display());
    println!();
    println!(
        "$ onboard audit verify {} --vkey {}",
        export.display(),
        vkey_path.display()
    );
    if audit_cli::verify(&export, &[vkey_path.display().to_string()], None)?
        != crate::audit_verdict::Verdict::Verified
    {
        bail!("the demo's own export did not verify");
    }
    Ok(())
}
