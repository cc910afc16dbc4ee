//! `onboard token-app`: the manifest names exactly `provision::SIGN_IN_SCOPES` and Graph (the
//! emulator) accepts it as a `POST /applications` body; `check` signs in with a device code as
//! the provider tenant's admin and reads the app by `appId`: a matching app exits 0, one missing
//! a scope or with public client flows off exits 1 naming what is wrong.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use provision::token_app::graph_scope_name;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::onboard_binary;
use testkit::process::{Run, ServerFiles};
use testkit::sim::calm;
use testkit::wire::Wire;

/// Where a browser sign-in to the test configuration's server comes back.
const BROWSER_BACK: &str = "https://wizard.example.net/wizard/signed-in";

/// `onboard token-app manifest --name NAME`, parsed.
async fn manifest(name: &str) -> Result<Value> {
    manifest_with(&["--name", name]).await
}

/// `onboard token-app manifest ARGS…`, parsed.
async fn manifest_with(args: &[&str]) -> Result<Value> {
    let mut all = vec!["token-app", "manifest"];
    all.extend_from_slice(args);
    let run = onboard_binary!().run(&all, &[], None).await?;
    ensure!(run.code == Some(0), "{run}");
    Ok(serde_json::from_str(&run.stdout)?)
}

#[tokio::test]
async fn the_manifest_names_exactly_the_sign_in_scopes() -> Result<()> {
    let m = manifest("Fabrikam Voice").await?;
    assert_eq!(m["displayName"], "Fabrikam Voice");
    assert_eq!(m["signInAudience"], "AzureADMultipleOrgs");
    assert_eq!(m["isFallbackPublicClient"], true);
    let rra = m["requiredResourceAccess"].as_array().context("rra")?;
    assert_eq!(rra.len(), 1);
    assert_eq!(
        rra[0]["resourceAppId"],
        "00000003-0000-0000-c000-000000000000"
    );
    let names: Vec<&str> = rra[0]["resourceAccess"]
        .as_array()
        .context("resourceAccess")?
        .iter()
        .map(|a| {
            assert_eq!(a["type"], "Scope");
            a["id"].as_str().and_then(graph_scope_name).unwrap_or("?")
        })
        .collect();
    assert_eq!(names, provision::SIGN_IN_SCOPES);
    assert_eq!(
        m["publicClient"]["redirectUris"],
        json!(["https://login.microsoftonline.com/common/oauth2/nativeclient"])
    );
    Ok(())
}

/// `--loopback` adds the address a browser sign-in to a server on 127.0.0.1 comes back to,
/// without a port (Microsoft ignores it there).
#[tokio::test]
async fn the_manifest_lists_the_loopback_address_once_without_a_port() -> Result<()> {
    let m = manifest_with(&["--loopback"]).await?;
    let uris = json!([
        "https://login.microsoftonline.com/common/oauth2/nativeclient",
        "http://127.0.0.1/wizard/signed-in"
    ]);
    assert_eq!(m["publicClient"]["redirectUris"], uris);
    Ok(())
}

/// The server's browser sign-in address (its wizard's `/wizard/signed-in`) with `--config`.
async fn manifest_for_server(wire: &Wire, name: &str) -> Result<Value> {
    let files = ServerFiles::with(&wire.sim, Ok)?;
    let config = files.config.display().to_string();
    let m = manifest_with(&["--name", name, "--config", &config]).await?;
    ensure!(
        m["publicClient"]["redirectUris"]
            == json!([
                "https://login.microsoftonline.com/common/oauth2/nativeclient",
                BROWSER_BACK
            ]),
        "{m}"
    );
    Ok(m)
}

/// Creates an application in the emulator's tenant from `body` as the Global Administrator
/// (as `az rest --method POST …/applications --body @manifest.json` would); its `appId`.
async fn create_app(wire: &Wire, token: &str, body: Value) -> Result<String> {
    let a = wire.post(token, "/applications", body).await;
    ensure!(
        a.status == StatusCode::CREATED,
        "POST /applications: {} {}",
        a.status,
        a.text
    );
    let app = a.json();
    Ok(app["appId"].as_str().context("appId")?.to_owned())
}

/// `onboard token-app check` for `token_app` with `checker` as the sign-in client; the
/// emulator's "browser" signs the Global Administrator in when the code appears.
async fn check(wire: &Wire, token_app: &str, checker: &str) -> Result<Run> {
    let files = ServerFiles::with(&wire.sim, |b| Ok(b.token_app(token_app)))?;
    let upn = wire.upn("globaladmin");
    let config = files.config.display().to_string();
    let mut run = onboard_binary!().spawn(
        &[
            "token-app",
            "check",
            "--config",
            &config,
            "--upn",
            &upn,
            "--sign-in-client-id",
            checker,
            "--tenant",
            &wire.info.tenant_domain,
        ],
        &[],
    )?;
    let code = run.after("user code:", Duration::from_secs(60)).await?;
    wire.sim.complete_device_login(&code, &upn).await?;
    run.finish(Duration::from_secs(60)).await
}

#[tokio::test]
async fn check_passes_a_matching_app_and_names_what_a_broken_one_lacks() -> Result<()> {
    let wire = Wire::start(calm()).await;
    let admin = wire.access_token("globaladmin").await;
    // The operator's own sign-in client for the check: reads applications, nothing more.
    let checker = create_app(
        &wire,
        &admin,
        json!({
            "displayName": "Provider admin tools",
            "signInAudience": "AzureADMyOrg",
            "isFallbackPublicClient": true,
            "requiredResourceAccess": [{
                "resourceAppId": "00000003-0000-0000-c000-000000000000",
                "resourceAccess": [
                    {"id": "e1fe6dd8-ba31-4d61-89e7-88639da4683d", "type": "Scope"},
                    {"id": "c79f8feb-a9db-4090-85f9-90d820caa0eb", "type": "Scope"},
                ],
            }],
        }),
    )
    .await?;

    let good = create_app(
        &wire,
        &admin,
        manifest_for_server(&wire, "Fabrikam Voice").await?,
    )
    .await?;
    let run = check(&wire, &good, &checker).await?;
    assert_eq!(run.code, Some(0), "{run}");
    for rule in [
        "public_client_flows",
        "sign_in_audience",
        "graph_scopes",
        "redirect_uri",
        "browser_redirect_uri",
    ] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with("OK") && l.contains(rule)),
            "{rule}: {run}"
        );
    }
    assert!(run.stdout.contains("0 FAIL, 0 WARN"), "{run}");

    // Missing AppRoleAssignment.ReadWrite.All, public client flows off.
    let mut broken = manifest("Fabrikam Broken").await?;
    broken["isFallbackPublicClient"] = json!(false);
    broken["requiredResourceAccess"][0]["resourceAccess"]
        .as_array_mut()
        .context("resourceAccess")?
        .retain(|a| a["id"] != "84bccea3-f856-4a8a-967b-dbe0a3d53a64");
    let bad = create_app(&wire, &admin, broken).await?;
    let run = check(&wire, &bad, &checker).await?;
    assert_eq!(run.code, Some(1), "{run}");
    let line = |rule: &str| {
        run.stdout
            .lines()
            .find(|l| l.contains(rule) && !l.contains("fix:"))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("public_client_flows").starts_with("FAIL"), "{run}");
    let scopes = line("graph_scopes");
    assert!(scopes.starts_with("FAIL"), "{run}");
    assert!(scopes.contains("AppRoleAssignment.ReadWrite.All"), "{run}");
    assert!(!scopes.contains("Application.Read.All"), "{run}");
    assert!(
        run.stdout.contains("--is-fallback-public-client true"),
        "{run}"
    );
    // Made without the server's browser sign-in address: a warning naming it.
    let browser = line("browser_redirect_uri");
    assert!(
        browser.starts_with("WARN") && browser.contains(BROWSER_BACK),
        "{run}"
    );

    // An app id the signed-in tenant does not have: FAIL, exit 1, with Graph's request id.
    let run = check(&wire, "1f2e3d4c-0000-4000-8000-00000000abcd", &checker).await?;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.contains("FAIL exists"), "{run}");
    Ok(())
}

#[tokio::test]
async fn check_refuses_the_placeholder_without_signing_in() -> Result<()> {
    let wire = Wire::start(calm()).await;
    let run = check_no_sign_in(&wire, "00000000-0000-0000-0000-000000000000").await?;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.contains("placeholder"), "{run}");
    Ok(())
}

/// `check` when it should stop before the device code.
async fn check_no_sign_in(wire: &Wire, token_app: &str) -> Result<Run> {
    let files = ServerFiles::with(&wire.sim, |b| Ok(b.token_app(token_app)))?;
    let config = files.config.display().to_string();
    onboard_binary!()
        .run(&["token-app", "check", "--config", &config], &[], None)
        .await
}
