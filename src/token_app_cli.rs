//! `onboard token-app`: the provider's token app (the multi-tenant public client of every
//! customer admin's device-code sign-in). `manifest` prints the Microsoft Graph `application`
//! body that creates it; `check` signs in as an admin of the provider's tenant, reads the
//! configured app by client id and reports each rule OK/WARN/FAIL with the fix (exit 0 no
//! FAIL, 1 a FAIL, 2 the check could not run), like `onboard verify`. The rules and the
//! manifest live in `provision::token_app`; this file only parses, prints and exits.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use entra_client::{EntraClient, EntraConfig, OpContext};
use onboard_server::Config;
use provision::token_app::{self, AppFacts, Verdict};

/// Azure CLI's public client id: present in every tenant, allowed to read applications through
/// Microsoft Graph with `.default`, so the check does not depend on the app it checks.
pub const AZURE_CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// What the check's sign-in asks for: Graph with whatever the sign-in client is allowed
/// (reading applications needs `Application.Read.All` or more), and an id token for the name.
const CHECK_SCOPES: &[&str] = &["https://graph.microsoft.com/.default", "openid", "profile"];

/// `onboard token-app …`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenAppCommand {
    /// Prints the Microsoft Graph `application` JSON that creates the token app
    /// (`az rest --method POST --url https://graph.microsoft.com/v1.0/applications --body @manifest.json`).
    Manifest(ManifestArgs),
    /// Signs in as an admin of the provider's tenant and checks the configured token app
    /// against the manifest (exit 1 on any FAIL, 2 when the check could not run).
    Check(CheckArgs),
}

/// `onboard token-app manifest`.
#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    /// The app's display name (customers see it on the consent screen and as the temporary
    /// enterprise app; the vendor's convention is `<server>-<provider>-token`).
    #[arg(long, default_value = token_app::DEFAULT_NAME)]
    pub name: String,
    /// The server configuration: the manifest then also lists the server's browser sign-in
    /// address (`/wizard/signed-in` on the origin of `invitations.activation_base_url`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also list `http://127.0.0.1/wizard/signed-in`, where a browser sign-in to a server on
    /// this machine comes back (`onboard selftest --live --sign-in browser`; Microsoft ignores
    /// a loopback address's port, so one entry serves any port).
    #[arg(long)]
    pub loopback: bool,
}

/// The origin of a server on this machine, whose browser sign-in address `--loopback` lists.
const LOOPBACK_ORIGIN: &str = "http://127.0.0.1";

/// `onboard token-app check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The server configuration (`entra.token_app_client_id`, Entra URLs and trust roots).
    #[arg(long)]
    pub config: PathBuf,
    /// The admin expected to sign in; the check stops if someone else does.
    #[arg(long)]
    pub upn: Option<String>,
    /// The public client the check signs in with (default: Azure CLI's); any public client
    /// allowed `Application.Read.All` in the provider's tenant works, including the token app.
    #[arg(long, default_value = AZURE_CLI_CLIENT_ID, env = "ONBOARD_TOKEN_APP_CHECK_CLIENT_ID")]
    pub sign_in_client_id: String,
    /// The authority's tenant segment: the provider's tenant id or domain, or `organizations`.
    #[arg(long, default_value = "organizations")]
    pub tenant: String,
}

/// Runs a `token-app` command.
pub async fn run(cmd: TokenAppCommand) -> ExitCode {
    match cmd {
        TokenAppCommand::Manifest(args) => match print_manifest(&args) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        TokenAppCommand::Check(args) => match check(&args).await {
            Ok(code) => code,
            Err(e) => {
                println!("the check could not run: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

/// The manifest as JSON text, with the configured server's browser sign-in address if any.
fn print_manifest(args: &ManifestArgs) -> anyhow::Result<String> {
    let mut browser = Vec::new();
    if let Some(path) = &args.config {
        browser.push(browser_redirect_uri(&Config::load(path)?)?);
    }
    if args.loopback {
        browser.extend(onboard_server::wizard::sign_in_redirect_uri(
            LOOPBACK_ORIGIN,
        ));
    }
    let browser: Vec<&str> = browser.iter().map(String::as_str).collect();
    let m = token_app::manifest(&args.name, &browser)?;
    Ok(serde_json::to_string_pretty(&m)?)
}

/// Where a browser sign-in to the configured server comes back (the token app must list it).
fn browser_redirect_uri(config: &Config) -> anyhow::Result<String> {
    let url = &config.invitations.activation_base_url;
    onboard_server::wizard::sign_in_redirect_uri(url).ok_or_else(|| {
        anyhow::anyhow!(
            "invitations.activation_base_url {url:?} is neither https nor http on localhost or 127.0.0.1: a browser sign-in cannot come back to it"
        )
    })
}

/// The Entra client the server's configuration describes.
pub fn entra_client(config: &Config) -> anyhow::Result<EntraClient> {
    onboard_core::tls::install_crypto_provider();
    let e = &config.entra;
    let mut c = EntraConfig::with_bases(e.authority_url.clone(), e.graph_url.clone());
    for path in &e.extra_trust_roots {
        let pem = std::fs::read(path)
            .map_err(|err| anyhow::anyhow!("reading {}: {err}", path.display()))?;
        c = c.trust_pem(pem);
    }
    Ok(EntraClient::new(&c)?)
}

async fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let app_id = config.entra.token_app_client_id.trim().to_owned();
    if let Some(problem) = token_app::client_id_problem(&app_id) {
        println!("FAIL client_id: entra.token_app_client_id {problem}");
        return Ok(ExitCode::from(1));
    }
    let entra = entra_client(&config)?;
    let mut flow = entra
        .sts()
        .start_device_code(
            &args.tenant,
            &args.sign_in_client_id,
            CHECK_SCOPES,
            &OpContext::new(),
        )
        .await?;
    let auth = flow.authorization();
    let who = args.upn.as_deref().map_or(
        "an admin of the tenant that owns the token app".to_owned(),
        |u| u.to_owned(),
    );
    println!("Sign in as {who}:");
    println!("  {}", auth.message);
    println!("user code: {}", auth.user_code);
    println!("verification url: {}", auth.verification_uri);
    std::io::stdout().flush()?;
    let tokens = flow.poll_until_done(|_| {}).await?;
    let claims = tokens.id_token_claims().ok().flatten();
    let signed_in = claims
        .as_ref()
        .and_then(|c| c.preferred_username.clone())
        .unwrap_or_default();
    let tenant = claims.as_ref().map(|c| c.tid.clone()).unwrap_or_default();
    if let Some(want) = &args.upn
        && !signed_in.trim().eq_ignore_ascii_case(want.trim())
    {
        anyhow::bail!("signed in as {signed_in:?}, not {want:?}");
    }
    println!("Signed in as {signed_in} (tenant {tenant})");
    let (app, request_id) = token_app::read_app(&entra, tokens.access_token, &app_id).await?;
    let rid = request_id.unwrap_or_else(|| "-".into());
    let Some(app) = app else {
        println!(
            "FAIL exists: no application with appId {app_id} in tenant {tenant} (Graph request-id {rid}): sign in as an admin of the tenant that registered it, or fix entra.token_app_client_id"
        );
        return Ok(ExitCode::from(1));
    };
    let facts = AppFacts::from_application(&app);
    println!(
        "Token app {:?} (appId {}, Graph request-id {rid})",
        facts.display_name, facts.app_id
    );
    let browser =
        onboard_server::wizard::sign_in_redirect_uri(&config.invitations.activation_base_url);
    let results = token_app::compare(&facts, browser.as_deref());
    for r in &results {
        println!("{:<4} {:<20} {}", r.verdict.as_str(), r.rule, r.detail);
        if let Some(fix) = &r.fix {
            println!("     {:<20} fix: {fix}", "");
        }
    }
    let fails = results
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .count();
    let warns = results
        .iter()
        .filter(|r| r.verdict == Verdict::Warn)
        .count();
    println!("{fails} FAIL, {warns} WARN");
    Ok(if token_app::worst(&results) == Verdict::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
