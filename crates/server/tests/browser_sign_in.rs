//! The browser sign-in (SignIn with `SIGN_IN_METHOD_BROWSER`: OAuth 2.0 authorization code with
//! PKCE), over gRPC against the emulator, for tenants whose Conditional Access blocks the
//! device code flow: the admin opens Microsoft's page, Microsoft sends the browser back to the
//! wizard's `/wizard/signed-in`, and the server redeems the code and goes on as after a device
//! code. The emulator's `block_device_code` fault is that policy.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use pb::sign_in_event::Event as SE;
use testkit::sim::{authorize, users};
use testkit::sim_server::SimServer;
use testkit::wizard::start_sign_in_by;
use tonic::Code;

/// Where the test configuration's activation URL (`ACTIVATION_URL`) has Microsoft send the
/// browser back.
const BACK: &str = "https://wizard.example.net/wizard/signed-in";

/// The emulator with the server's return address registered on the token app, and a server.
async fn start() -> Result<SimServer> {
    let env = SimServer::start().await?;
    env.sim.set_token_app_redirect_uris(vec![BACK.to_owned()]);
    Ok(env)
}

/// A browser sign-in with invitation `token` for `nick`: the open stream and its first event.
async fn started(
    env: &SimServer,
    token: &str,
    nick: &str,
) -> Result<(tonic::Streaming<pb::SignInEvent>, pb::BrowserSignIn)> {
    let mut stream = start_sign_in_by(
        env.server.channel().await?,
        token,
        &env.upn(nick),
        pb::SignInMethod::Browser,
    )
    .await?;
    match stream.message().await?.and_then(|e| e.event) {
        Some(SE::BrowserSignIn(b)) => Ok((stream, b)),
        other => anyhow::bail!("first event {other:?}"),
    }
}

/// The wizard's return page for Microsoft's redirect `location` (which names the wizard's
/// public origin), fetched from the test server.
async fn come_back(env: &SimServer, location: &str) -> Result<String> {
    let path = location
        .strip_prefix("https://wizard.example.net")
        .with_context(|| format!("redirected elsewhere: {location}"))?;
    env.server.wizard_get(path).await
}

/// The stream's end: the SignedIn event, or the status.
async fn outcome(
    stream: &mut tonic::Streaming<pb::SignInEvent>,
) -> Result<Result<pb::SignedIn, tonic::Status>> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .context("the sign-in stalled")?;
        match next {
            Ok(Some(pb::SignInEvent {
                event: Some(SE::SignedIn(s)),
            })) => return Ok(Ok(s)),
            Ok(Some(_)) => {}
            Ok(None) => anyhow::bail!("the stream ended without an outcome"),
            Err(status) => return Ok(Err(status)),
        }
    }
}

/// The `google.rpc.ErrorInfo` reason of `status`.
fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_blocks_device_codes_signs_in_with_the_browser() -> Result<()> {
    let env = start().await?;
    let mut faults = testkit::sim::calm();
    faults.block_device_code = true;
    env.sim.set_faults(faults);

    // The device code: Microsoft's page refuses it (AADSTS53003), and the sign-in ends
    // PERMISSION_DENIED SIGN_IN_REFUSED; the invitation stays unspent.
    let (token, _) = env.invite(None).await?;
    let upn = env.upn(users::GLOBAL_ADMIN);
    let mut stream = start_sign_in_by(
        env.server.channel().await?,
        &token,
        &upn,
        pb::SignInMethod::DeviceCode,
    )
    .await?;
    let Some(SE::DeviceCode(code)) = stream.message().await?.and_then(|e| e.event) else {
        anyhow::bail!("no device code");
    };
    let blocked = env.sim.complete_device_login(&code.user_code, &upn).await;
    ensure!(
        blocked
            .as_ref()
            .is_err_and(|e| e.to_string().contains("53003")),
        "{blocked:?}"
    );
    let status = outcome(&mut stream).await?.err().context("signed in")?;
    ensure!(status.code() == Code::PermissionDenied, "{status:?}");
    ensure!(reason(&status) == "SIGN_IN_REFUSED", "{status:?}");

    // The browser: the URL asks for a code with PKCE for this admin, and comes back here.
    let (mut stream, b) = started(&env, &token, users::GLOBAL_ADMIN).await?;
    let url = reqwest::Url::parse(&b.authorization_url)?;
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    ensure!(
        q["redirect_uri"] == BACK && q["code_challenge_method"] == "S256",
        "{url}"
    );
    ensure!(q["login_hint"] == env.upn(users::GLOBAL_ADMIN), "{url}");
    ensure!(
        !b.onboarding_id.is_empty() && b.expires_at.is_some(),
        "{b:?}"
    );
    let location = authorize(&env.sim, &b.authorization_url, users::GLOBAL_ADMIN, true).await?;
    ensure!(
        location.starts_with(BACK) && location.contains("code="),
        "{location}"
    );
    let page = come_back(&env, &location).await?;
    ensure!(page.starts_with("HTTP/1.1 200"), "{page}");
    ensure!(page.contains("Go back to the invitation wizard"), "{page}");
    let code = location.split("code=").nth(1).unwrap_or_default();
    let code = code.split('&').next().unwrap_or_default();
    ensure!(!page.contains(code), "the page repeats the code");
    let signed_in = outcome(&mut stream)
        .await?
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;
    ensure!(
        signed_in.upn == env.upn(users::GLOBAL_ADMIN),
        "{signed_in:?}"
    );
    ensure!(signed_in.onboarding_id == b.onboarding_id, "{signed_in:?}");

    // It goes on as after a device code: the onboarding completes.
    let events = env
        .provision(&token, &signed_in.onboarding_id, "browserapp")
        .await?
        .map_err(|s| anyhow::anyhow!("provision refused: {s:?}"))?;
    testkit::wizard::completed(&events)?;

    // The same redirect again: nobody waits for it any more.
    let again = come_back(&env, &location).await?;
    ensure!(again.starts_with("HTTP/1.1 404"), "{again}");
    ensure!(again.contains("no longer open"), "{again}");
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_or_wrong_browser_sign_in_ends_as_a_device_code_one_does() -> Result<()> {
    let env = start().await?;
    // Cancelled at Microsoft: PERMISSION_DENIED SIGN_IN_DECLINED; the link works again.
    let (token, _) = env.invite(None).await?;
    let (mut stream, b) = started(&env, &token, users::GLOBAL_ADMIN).await?;
    let location = authorize(&env.sim, &b.authorization_url, users::GLOBAL_ADMIN, false).await?;
    ensure!(location.contains("error=access_denied"), "{location}");
    let page = come_back(&env, &location).await?;
    ensure!(page.contains("ended the sign-in (AADSTS65004)"), "{page}");
    let status = outcome(&mut stream).await?.err().context("signed in")?;
    ensure!(status.code() == Code::PermissionDenied, "{status:?}");
    ensure!(reason(&status) == "SIGN_IN_DECLINED", "{status:?}");

    // Another account than the invitation's: FAILED_PRECONDITION WRONG_ACCOUNT.
    let (mut stream, b) = started(&env, &token, users::GLOBAL_ADMIN).await?;
    let location = authorize(&env.sim, &b.authorization_url, users::APP_ADMIN, true).await?;
    come_back(&env, &location).await?;
    let status = outcome(&mut stream).await?.err().context("signed in")?;
    ensure!(status.code() == Code::FailedPrecondition, "{status:?}");
    ensure!(status.message().contains("appadmin"), "{status:?}");

    // A forged return (a state no sign-in has) reaches nobody.
    let forged = env
        .server
        .wizard_get("/wizard/signed-in?code=x&state=forged")
        .await?;
    ensure!(forged.starts_with("HTTP/1.1 404"), "{forged}");

    // The audit log: each attempt is an intent and an outcome, the same action as a device
    // code's; no entry holds a code.
    let entries = env.server.entries()?;
    let sign_ins: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "onboarding.sign_in")
        .map(|e| e["phase"].as_str().unwrap_or_default().to_owned())
        .collect();
    ensure!(
        sign_ins == ["intent", "failed", "intent", "failed"],
        "{sign_ins:?}"
    );
    ensure!(
        entries
            .iter()
            .filter(|e| e["action"] == "onboarding.sign_in")
            .all(|e| e["method"] == "browser"),
        "an entry does not say how the admin signed in"
    );
    testkit::audit::check_schema(&entries)?;
    let text = serde_json::to_string(&entries)?;
    ensure!(
        !text.contains("code_verifier") && !text.contains("code="),
        "{text}"
    );
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sign_in_needs_an_https_wizard_origin_and_a_known_method() -> Result<()> {
    let env =
        SimServer::start_with(|b| Ok(b.activation_base_url("http://wizard.example.net/activate")))
            .await?;
    let (token, _) = env.invite(None).await?;
    let upn = env.upn(users::GLOBAL_ADMIN);
    let status = start_sign_in_by(
        env.server.channel().await?,
        &token,
        &upn,
        pb::SignInMethod::Browser,
    )
    .await
    .err()
    .context("started")?;
    ensure!(status.code() == Code::FailedPrecondition, "{status:?}");
    ensure!(status.message().contains("https"), "{status:?}");
    // A forged token is judged first: the request's own fault, before the server's.
    let channel = env.server.channel().await?;
    let forged = start_sign_in_by(channel, "forged", &upn, pb::SignInMethod::Browser).await;
    let status = forged.err().context("started")?;
    ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    let mut client = env.server.onboarding(None).await?;
    let status = client
        .sign_in(pb::SignInRequest {
            invitation_token: token,
            admin_upn: upn,
            method: 7,
        })
        .await
        .err()
        .context("started")?;
    ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    ensure!(status.message().contains("method"), "{status:?}");
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sign_in_nobody_finishes_ends_sign_in_expired() -> Result<()> {
    let env = SimServer::start_with(|b| Ok(b.limit("browser_sign_in_secs", 1))).await?;
    env.sim.set_token_app_redirect_uris(vec![BACK.to_owned()]);
    let (token, _) = env.invite(None).await?;
    let (mut stream, b) = started(&env, &token, users::GLOBAL_ADMIN).await?;
    let status = outcome(&mut stream).await?.err().context("signed in")?;
    ensure!(status.code() == Code::DeadlineExceeded, "{status:?}");
    ensure!(reason(&status) == "SIGN_IN_EXPIRED", "{status:?}");
    // Microsoft's redirect after that reaches nobody: the code is never redeemed.
    let location = authorize(&env.sim, &b.authorization_url, users::GLOBAL_ADMIN, true).await?;
    let late = come_back(&env, &location).await?;
    ensure!(late.starts_with("HTTP/1.1 404"), "{late}");
    env.server.stop().await
}
