//! `onboard selftest --live`: the whole product path against a real tenant, once, by hand.
//! It writes a configuration for Microsoft's public endpoints (or the URLs given), starts a
//! real `onboard serve` as a child process, and drives invite → sign-in (the device code, or
//! with `--sign-in browser` the URL to open, is printed for the admin) → plan → provision →
//! verify → rotate → cancel over gRPC, then prints every audit entry the server wrote with
//! Microsoft's request ids (Graph `request-id`, `client-request-id`), so a failure can be
//! taken to Microsoft support. Never run by CI; the emulator runs the same path in
//! `tests/selftest.rs`. docs/live-test.md is the guide.
//!
//! Exit codes: 0 every step passed, 1 a step failed (the rest are skipped, but the cleanup
//! still runs when the onboarding exists), 2 the selftest could not start.

mod flow;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use tonic::transport::Endpoint;

use flow::{Bearer, Flow, STEP_TIMEOUT};

/// `onboard selftest`.
#[derive(Debug, clap::Args)]
pub struct SelftestArgs {
    /// Run against a real tenant (the only mode; without it nothing runs).
    #[arg(long)]
    pub live: bool,
    /// The tenant admin who signs in (Global Administrator, or Privileged Role Administrator
    /// plus Application Administrator).
    #[arg(long, env = "ONBOARD_LIVE_UPN")]
    pub upn: String,
    /// The provider's token app (`onboard token-app manifest` creates it).
    #[arg(long, env = "ONBOARD_LIVE_TOKEN_APP_ID")]
    pub token_app_client_id: String,
    /// The test app registration's name (3–15 characters, no dot or blank); removed again by
    /// the cancel step.
    #[arg(long, env = "ONBOARD_LIVE_APP_NAME")]
    pub app_name: String,
    /// The profile. The default self-rotating one lets the rotation right after onboarding
    /// run without a second sign-in (the onboarding removes the token app's consent).
    #[arg(
        long,
        env = "ONBOARD_LIVE_PROFILE",
        default_value = "direct-routing-self-rotating"
    )]
    pub profile: String,
    /// The Direct Routing service id on the invitation.
    #[arg(long, env = "ONBOARD_LIVE_SERVICE_ID", default_value = "selftest")]
    pub service_id: String,
    /// The tenant to sign in at (its id or a domain of it), named on the invitation: needed
    /// when the admin is a guest (B2B collaboration user) there; default: the admin's own.
    #[arg(long, env = "ONBOARD_LIVE_TENANT", default_value = "")]
    pub tenant: String,
    /// The identity platform.
    #[arg(
        long,
        env = "ONBOARD_LIVE_AUTHORITY_URL",
        default_value = "https://login.microsoftonline.com"
    )]
    pub authority_url: String,
    /// Microsoft Graph.
    #[arg(
        long,
        env = "ONBOARD_LIVE_GRAPH_URL",
        default_value = "https://graph.microsoft.com"
    )]
    pub graph_url: String,
    /// An extra CA (PEM) to trust for the two URLs, next to the system's roots (the
    /// emulator's `ca.pem`; not needed for Microsoft).
    #[arg(long, env = "ONBOARD_LIVE_TRUST_ROOT")]
    pub trust_root: Option<PathBuf>,
    /// The provider name (temporary app `<server>-<provider>-token`).
    #[arg(long, env = "ONBOARD_LIVE_PROVIDER_NAME", default_value = "selftest")]
    pub provider_name: String,
    /// The Live Platform server name.
    #[arg(long, env = "ONBOARD_LIVE_SERVER_NAME", default_value = "Onboard")]
    pub server_name: String,
    /// Where the configuration, key, data and server log go (default: a new temporary
    /// directory, kept and printed).
    #[arg(long, env = "ONBOARD_LIVE_DIR")]
    pub dir: Option<PathBuf>,
    /// How the admin signs in: `device-code`, or `browser` (the authorization code flow, for a
    /// tenant whose Conditional Access blocks device codes): the printed URL is opened in a
    /// browser on this machine, and Microsoft sends it back to this run's server on
    /// 127.0.0.1, so the token app must list `http://127.0.0.1/wizard/signed-in` as a "Mobile
    /// and desktop applications" redirect URI (Microsoft ignores a loopback address's port).
    #[arg(
        long,
        env = "ONBOARD_LIVE_SIGN_IN",
        value_enum,
        default_value_t = SignInWith::DeviceCode
    )]
    pub sign_in: SignInWith,
}

/// The selftest's ways to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignInWith {
    /// The device code flow: a code typed at Microsoft's page, from any device.
    DeviceCode,
    /// The authorization code flow with PKCE, in a browser on this machine.
    Browser,
}

/// Runs the selftest.
pub async fn run(args: SelftestArgs) -> ExitCode {
    if !args.live {
        println!(
            "onboard selftest needs --live (a real tenant; docs/live-test.md). Against the emulator, use `onboard demo`, or --live with ONBOARD_LIVE_AUTHORITY_URL/GRAPH_URL/TRUST_ROOT pointing at `onboard entra-sim`."
        );
        return ExitCode::from(2);
    }
    match run_live(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            println!("selftest could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A step's outcome line: `[n/7] name ... OK (1.2 s) detail` or `FAILED`.
async fn step<F>(n: usize, name: &str, fut: F) -> anyhow::Result<String>
where
    F: std::future::Future<Output = anyhow::Result<String>>,
{
    println!("[{n}/7] {name}");
    let start = Instant::now();
    let result = match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("no answer within {STEP_TIMEOUT:?}")),
    };
    let took = start.elapsed().as_secs_f64();
    match &result {
        Ok(detail) => println!("[{n}/7] {name} OK ({took:.1} s): {detail}"),
        Err(e) => println!("[{n}/7] {name} FAILED ({took:.1} s): {e:#}"),
    }
    result
}

/// Sets up, runs the steps, cleans up and reports; `Ok(false)` when a step failed.
async fn run_live(args: &SelftestArgs) -> anyhow::Result<bool> {
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tempfile::Builder::new()
            .prefix("onboard-selftest-")
            .tempdir()?
            .keep(),
    };
    println!("onboard selftest --live in {}", dir.display());
    println!(
        "  Entra: {} and {}; token app {}; admin {}; app name {:?}; profile {}",
        args.authority_url,
        args.graph_url,
        args.token_app_client_id,
        args.upn,
        args.app_name,
        args.profile
    );
    if let Some(problem) = provision::token_app::client_id_problem(&args.token_app_client_id) {
        anyhow::bail!("ONBOARD_LIVE_TOKEN_APP_ID: {problem}");
    }
    provision::validate_name(&args.app_name)
        .map_err(|e| anyhow::anyhow!("ONBOARD_LIVE_APP_NAME: {e}"))?;
    let (config, tokens) = serve::write_config(&dir, args)?;
    let server = serve::Server::start(&dir, &config).await?;
    println!(
        "  onboard serve on {} (log {})",
        server.addr,
        server.log.display()
    );
    if args.sign_in == SignInWith::Browser {
        let origin = format!("http://{}", server.addr);
        let back = onboard_server::wizard::sign_in_redirect_uri(&origin)
            .context("no browser sign-in address on the selftest's server")?;
        println!(
            "  browser sign-in: Microsoft sends the browser back to {back}; the token app must list {} (Mobile and desktop applications), or Microsoft stops at AADSTS50011",
            provision::token_app::registered_redirect_uri(&back)
        );
    }
    let channel = Endpoint::try_from(format!("http://{}", server.addr))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .context("connecting to onboard serve")?;
    let mut flow = Flow {
        operator: Bearer::new(&tokens.operator)?,
        auditor: Bearer::new(&tokens.auditor)?,
        channel,
        service_id: args.service_id.clone(),
        profile: args.profile.clone(),
        upn: args.upn.clone(),
        tenant: args.tenant.clone(),
        app_name: args.app_name.clone(),
        sign_in: args.sign_in,
        state: flow::State::default(),
    };
    let passed = steps(&mut flow).await;
    report_request_ids(&flow).await;
    let stopped = server.stop().await;
    if let Err(e) = &stopped {
        println!("stopping onboard serve: {e:#}");
    }
    println!(
        "selftest {}; everything is in {}",
        if passed { "passed" } else { "FAILED" },
        dir.display()
    );
    Ok(passed && stopped.is_ok())
}

/// The seven steps in order; after a failure the rest are skipped, except the cancel, which
/// runs whenever an onboarding exists (so a failed run leaves no app behind).
async fn steps(flow: &mut Flow) -> bool {
    let mut ok = step(1, "invite", flow.invite()).await.is_ok();
    ok = ok && step(2, "sign-in", flow.sign_in()).await.is_ok();
    ok = ok && step(3, "plan", flow.plan()).await.is_ok();
    ok = ok && step(4, "provision", flow.provision()).await.is_ok();
    ok = ok && step(5, "verify", flow.verify()).await.is_ok();
    ok = ok && step(6, "rotate", flow.rotate()).await.is_ok();
    if flow.state.onboarding_id.is_empty() {
        println!("[7/7] cancel skipped: no onboarding was started");
        return false;
    }
    let cancelled = step(7, "cancel", flow.cancel()).await.is_ok();
    ok && cancelled
}

/// Prints one line per audit entry that called Microsoft: action, phase, and the request ids.
async fn report_request_ids(flow: &Flow) {
    let entries = match flow.audit_entries().await {
        Ok(e) => e,
        Err(e) => {
            println!("reading the audit log failed: {e:#}");
            return;
        }
    };
    println!("Microsoft request ids (from the audit log; give these to Microsoft support):");
    println!(
        "  {:>4}  {:<32} {:<10} {:<36}  client-request-id",
        "seq", "action", "phase", "graph request-id"
    );
    for e in &entries {
        let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        let (rid, crid) = (field("graph_request_id"), field("correlation_id"));
        if rid.is_empty() && crid.is_empty() {
            continue;
        }
        println!(
            "  {:>4}  {:<32} {:<10} {:<36}  {}",
            e.get("seq").and_then(Value::as_u64).unwrap_or_default(),
            field("action"),
            field("phase"),
            if rid.is_empty() { "-" } else { rid },
            if crid.is_empty() { "-" } else { crid },
        );
        if let Some(err) = e.get("error").filter(|v| !v.is_null()) {
            println!("        error: {err}");
        }
    }
}
