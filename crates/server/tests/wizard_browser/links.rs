//! Links that cannot be used get a clear page (what happened, whom to ask), never a stack
//! trace; the email's link and the page agree; every response carries the security headers.

use std::time::Duration;

use anyhow::{Result, ensure};
use onboard_proto::v1 as pb;
use onboard_server::wizard::page_path;
use testkit::config::OPERATOR;
use testkit::sim::users;

use crate::Wiz;

/// The page's problem screen says `title` and names whom to ask.
async fn problem(w: &Wiz, title: &str, shot: &str) -> Result<()> {
    w.step("s-problem", shot).await?;
    let t = w.chrome.text("#s-problem").await?;
    ensure!(t.contains(title), "{t}");
    ensure!(t.contains("Ask"), "says whom to ask: {t}");
    for bad in ["panic", "error:", "Status", "at line", "{"] {
        ensure!(
            !t.contains(bad),
            "technical detail {bad:?} on the page: {t}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn expired_used_revoked_and_malformed_links_say_so() -> Result<()> {
    let w = Wiz::start(Some("links")).await?;

    let (expired, _) = w.env.invite(Some(Duration::from_secs(1))).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    w.open(&expired).await?;
    problem(&w, "This invitation has expired", "00a-expired").await?;
    ensure!(w.chrome.text("#s-problem").await?.contains("sp2"));

    // A completed onboarding's link shows what was created while the server still shows the
    // onboarding to it (`limits.customer_watch_grace_secs`): a reload on Done stays on Done.
    let done = w.env.onboarded("direct-routing", "UsedOnce").await?;
    w.open(&done.token).await?;
    w.step("s-done", "00b-used-done").await?;
    let summary = w.chrome.text("#s-done").await?;
    ensure!(summary.contains("UsedOnce"), "{summary}");
    // One whose onboarding was cancelled before its run says the link was used.
    let (cancelled, _) = w.env.invite(None).await?;
    let signed = w.env.signed_in(&cancelled, users::GLOBAL_ADMIN).await?;
    w.env.cancel(&signed.onboarding_id, "test").await?;
    w.open(&cancelled).await?;
    problem(&w, "already been used", "00b-used").await?;

    let (revoked, id) = w.env.invite(None).await?;
    w.env.revoke(&id, "test").await?;
    w.open(&revoked).await?;
    problem(&w, "withdrawn", "00c-revoked").await?;

    w.open("not-a-token").await?;
    problem(&w, "This link is not valid", "00d-malformed").await?;
    w.check_exchanges(&revoked)?;

    // A link used by a sign-in can no longer start another.
    let (token, _) = w.env.invite(None).await?;
    w.env.signed_in(&token, users::GLOBAL_ADMIN).await?;
    w.open(&token).await?;
    w.chrome.wait_screen("s-name").await?;

    // Link after link that names no invitation, from one address: once the limit answers,
    // the page says to wait (a problem of the moment), not that the link is invalid.
    let mut busy = None;
    for i in 0..20 {
        w.open(&format!("no-such-invitation-{i}")).await?;
        w.chrome.wait_screen("s-problem").await?;
        let t = w.chrome.text("#s-problem").await?;
        if t.contains("Too many attempts") {
            busy = Some(t);
            break;
        }
        ensure!(t.contains("This link is not valid"), "{t}");
    }
    let busy = busy.ok_or_else(|| anyhow::anyhow!("the limit never answered"))?;
    ensure!(
        busy.contains("Wait a few minutes") && !busy.contains("new link"),
        "{busy}"
    );
    w.shoot("00e-too-many-attempts").await?;
    w.chrome.close().await
}

#[tokio::test]
async fn the_emails_link_opens_the_page_and_every_response_is_hardened() -> Result<()> {
    let w = Wiz::start(None).await?;
    let created = w
        .env
        .server
        .invitations(Some(OPERATOR))
        .await?
        .create_invitation(pb::CreateInvitationRequest {
            customer: "<b>Contoso & Co</b>".into(),
            service_id: testkit::sim_server::SERVICE.into(),
            profile: "direct-routing".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let email = created.email.clone().unwrap_or_default();
    let href = format!("href=\"{}\"", created.activation_url.replace('&', "&amp;"));
    ensure!(
        email.html.contains(&href),
        "the email links the activation URL"
    );
    ensure!(email.text.contains(&created.activation_url));
    let fragment = created
        .activation_url
        .split_once('#')
        .map(|(_, f)| f.to_owned())
        .unwrap_or_default();
    ensure!(
        fragment.starts_with("token="),
        "the token is in the fragment"
    );
    let url = format!(
        "{}{}#{fragment}",
        w.proxy.url,
        page_path(&created.activation_url)
    );
    w.chrome.client.goto(&url).await?;
    w.chrome.wait_screen("s-landing").await?;
    // Invitation values are text, never markup.
    let bold = w
        .chrome
        .js("return document.querySelectorAll('main b').length")
        .await?;
    ensure!(
        bold.as_u64() == Some(0),
        "the customer name was parsed as HTML"
    );
    ensure!(
        w.chrome
            .text("#s-landing")
            .await?
            .contains("<b>Contoso & Co</b>")
    );
    // Unknown paths and assets carry the headers too.
    w.chrome
        .client
        .goto(&format!("{}/wizard/missing", w.proxy.url))
        .await?;
    w.chrome
        .client
        .goto(&format!("{}/wizard/icon.svg", w.proxy.url))
        .await?;
    let token = fragment.trim_start_matches("token=").to_owned();
    w.check_exchanges(&token)?;
    let lines: Vec<String> = w
        .proxy
        .exchanges()
        .iter()
        .map(|x| x.request_line.clone())
        .collect();
    for want in [
        "GET /activate",
        "GET /wizard/app.js",
        "GET /wizard/base.js",
        "GET /wizard/run.js",
        "GET /wizard/app.css",
        "POST /wizard/api/invitation",
        "GET /wizard/missing",
    ] {
        ensure!(
            lines.iter().any(|l| l == want),
            "{want} not seen: {lines:?}"
        );
    }
    w.chrome.close().await
}

/// A link that stops working while the admin signs in (withdrawn while the code is on screen,
/// or expired before the sign-in ends) gets screen 0, which says which and whom to ask, not
/// "Sign-in failed … your invitation link still works".
#[tokio::test]
async fn a_link_withdrawn_or_expired_during_the_sign_in_says_so() -> Result<()> {
    let w = Wiz::start(Some("links-during-sign-in")).await?;
    let (token, id) = w.env.invite(None).await?;
    w.open(&token).await?;
    w.chrome.wait_screen("s-landing").await?;
    w.chrome.click("btn-create").await?;
    let upn = w.upn(users::GLOBAL_ADMIN);
    w.chrome.type_into("upn", &upn).await?;
    w.chrome.click("btn-auth").await?;
    let code = w.code().await?;
    w.env.revoke(&id, "test").await?;
    w.env.sim.complete_device_login(&code, &upn).await?;
    problem(&w, "withdrawn", "00f-revoked-during-sign-in").await?;
    ensure!(!w.chrome.text("#s-problem").await?.contains("still works"));

    let (expiring, _) = w.env.invite(Some(Duration::from_secs(3))).await?;
    w.open(&expiring).await?;
    w.chrome.wait_screen("s-landing").await?;
    w.chrome.click("btn-create").await?;
    w.chrome.type_into("upn", &upn).await?;
    w.chrome.click("btn-auth").await?;
    let code = w.code().await?;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    w.env.sim.complete_device_login(&code, &upn).await?;
    problem(
        &w,
        "This invitation has expired",
        "00g-expired-during-sign-in",
    )
    .await?;
    w.chrome.close().await
}

/// A link withdrawn while its run goes on: the page, reconnecting after a network loss, is
/// refused by the server and shows screen 0 (withdrawn, whom to ask), not a raw refusal under
/// steps that look stuck.
#[tokio::test]
async fn a_link_withdrawn_during_provisioning_says_so() -> Result<()> {
    let w = Wiz::start_slow(Some("links-during-run"), 1500).await?;
    let token = w.provisioning("SbcWithdrawn", ".ok").await?;
    let key = pb::get_invitation_request::Key::Token(token);
    let inv = w.env.server.invitation(key).await?;
    w.env.revoke(&inv.id, "test").await?;
    w.proxy.cut();
    problem(&w, "withdrawn", "00h-revoked-during-provisioning").await?;
    w.chrome.close().await
}
