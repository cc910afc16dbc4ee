//! Screen H: an Application Administrator goes as far as their roles allow, sends the link,
//! and a Global Administrator finishes in a second browser while the first page follows live.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use onboard_proto::v1::InvitationState::{Expired, Revoked};
use testkit::browser::Chrome;
use testkit::sim::{TOKEN_APP, users};
use testkit::snapshot;

use super::Wiz;

/// The token of the hand-off link screen H shows.
async fn link_shown(w: &Wiz) -> Result<String> {
    let link = w
        .chrome
        .js("return document.getElementById('ho-link').value")
        .await?;
    let link = link.as_str().context("link")?;
    Ok(link.split("#token=").nth(1).context("token")?.to_owned())
}

/// An Application Administrator's part, on the starter's invitation: signed in, app `name`
/// made as far as their roles allow, screen H. The starter's token.
async fn waiting(w: &Wiz, name: &str) -> Result<String> {
    let token = w.invite().await?;
    w.open(&token).await?;
    w.sign_in_as(users::APP_ADMIN).await?;
    w.chrome.click("btn-next").await?;
    w.chrome.wait_screen("s-name").await?;
    w.name_and_start(name).await?;
    w.after_run("s-waiting").await?;
    Ok(token)
}

/// "Create a new link" on screen H: the token of the link it shows.
async fn new_link(w: &Wiz) -> Result<String> {
    w.chrome.click("btn-link").await?;
    w.chrome
        .wait_js(
            "document.getElementById('ho-link').value.includes('#token=')",
            "the link",
        )
        .await?;
    link_shown(w).await
}

#[tokio::test]
async fn an_application_administrator_hands_off_and_a_global_administrator_finishes() -> Result<()>
{
    let mut w = Wiz::start(Some("hand-off")).await?;
    let token = w.invite().await?;
    w.open(&token).await?;
    w.sign_in_as(users::APP_ADMIN).await?;
    w.wait_shown("preview-box", "the plan on screen 4").await?;
    w.step("s-connected", "04-connected-missing-rights").await?;
    // The plan marks what this account may not do, naming the role.
    let preview = w.chrome.text("#preview-plan").await?;
    ensure!(
        preview.contains("Create the app registration, with the name you choose next")
            && preview.contains("— needs ")
            && preview.contains("Privileged Role Administrator"),
        "{preview}"
    );
    let c = w.chrome.text("#s-connected").await?;
    ensure!(
        c.contains("Application Administrator") && c.contains("lacks rights"),
        "{c}"
    );
    ensure!(
        c.contains("Privileged Role Administrator") && c.contains("Global Administrator"),
        "names the role needed: {c}"
    );
    ensure!(c.contains("link to send"), "says what happens next: {c}");
    ensure!(
        !w.chrome.disabled("btn-next").await?,
        "Next Step is enabled"
    );
    ensure!(
        snapshot::apps_named(&w.env.sim.snapshot(), "SbcHand").is_empty(),
        "nothing was created yet"
    );
    w.chrome.click("btn-next").await?;
    w.chrome.wait_screen("s-name").await?;
    w.name_and_plan("SbcHand").await?;
    let plan = w.chrome.text("#plan-box").await?;
    ensure!(
        plan.contains("needs") && plan.contains("gives you a link"),
        "{plan}"
    );
    w.shoot("05-name-plan-hand-off").await?;
    w.chrome.click("btn-provision").await?;

    // Screen H: what is left, who must act, the link.
    let h = w.step_after_run("s-waiting", "H1-waiting").await?;
    for want in [
        "SbcHand",
        "Global Administrator",
        "Privileged Role Administrator",
        "Assign the directory role Teams Administrator",
        "Grant the application permission Microsoft Graph/",
    ] {
        ensure!(h.contains(want), "screen H lacks {want}: {h}");
    }
    // What is done, as screen 6 listed it.
    let done = w.chrome.text("#wait-done").await?;
    ensure!(
        done.contains("create or update the app registration")
            && done.contains("create the service principal"),
        "{done}"
    );
    let replaced = new_link(&w).await?;
    // Microsoft's consent page is offered for the Graph permissions; the role still needs the
    // link, and the page says so.
    let consent = w
        .chrome
        .js("return document.getElementById('consent-box').hidden ? '' : document.getElementById('consent-url').value")
        .await?;
    ensure!(
        consent
            .as_str()
            .is_some_and(|u| u.contains("/adminconsent?client_id=")),
        "no consent page offered: {consent}"
    );
    ensure!(
        w.chrome
            .text("#consent-box")
            .await?
            .contains("directory role still needs the link"),
        "the consent box does not say the role needs the link"
    );
    w.shoot("H2-link").await?;
    ensure!(replaced != token);
    // "Create a new link" again: the first one stops working.
    w.chrome.click("btn-link").await?;
    let check = format!(
        "document.getElementById('ho-link').value.includes('#token=') && \
         !document.getElementById('ho-link').value.includes('{replaced}')"
    );
    w.chrome.wait_js(&check, "a newer link").await?;
    let link_token = link_shown(&w).await?;

    // The Global Administrator, in a browser of their own. The replaced link says so, and
    // sends them to the colleague who sent it, not to the provider.
    let first = std::mem::replace(&mut w.chrome, Chrome::start().await?);
    w.open(&replaced).await?;
    w.step("s-problem", "H2b-replaced-link").await?;
    let p = w.chrome.text("#s-problem").await?;
    ensure!(
        p.contains("newer link")
            && p.contains("colleague")
            && !p.contains("Your provider withdrew"),
        "{p}"
    );
    w.open(&link_token).await?;
    w.step("s-handoff", "H3-link-opened").await?;
    let l = w.chrome.text("#s-handoff").await?;
    ensure!(
        l.contains("SbcHand") && l.contains("Assign the directory role Teams Administrator"),
        "{l}"
    );
    w.chrome.click("btn-ho-start").await?;
    // An Application Administrator cannot finish: told so, and the link stays unspent.
    w.device_sign_in(users::APP_ADMIN, users::APP_ADMIN).await?;
    w.step("s-signin-failed", "H3b-link-holder-cannot-finish")
        .await?;
    let t = w.chrome.text("#signin-failed-text").await?;
    ensure!(
        t.contains("cannot finish") && t.contains("Your link was not used"),
        "{t}"
    );
    w.chrome.click("btn-retry").await?;
    w.sign_in_from_upn(users::GLOBAL_ADMIN).await?;
    w.wait_shown("preview-box", "the plan of what is left, on screen 4")
        .await?;
    w.step("s-connected", "H4-connected").await?;
    // The onboarding has its name and the first admin's changes: the plan says what is left.
    let preview = w.chrome.text("#preview-plan").await?;
    ensure!(
        preview.contains("The app registration SbcHand is in place")
            && preview.contains("Assign the directory role Teams Administrator")
            && !preview.contains("needs"),
        "{preview}"
    );
    ensure!(!w.chrome.disabled("btn-next").await?);
    w.chrome.click("btn-next").await?;
    w.chrome.wait_screen("s-finish").await?;
    w.wait_enabled("btn-finish", "the plan left").await?;
    w.step("s-finish", "H5-what-is-left").await?;
    let f = w.chrome.text("#finish-plan").await?;
    ensure!(
        f.contains("Assign the directory role Teams Administrator")
            && f.contains("The app registration SbcHand is in place"),
        "{f}"
    );
    w.chrome.click("btn-finish").await?;
    let d = w.step_after_run("s-done", "H6-done").await?;
    ensure!(
        d.contains("Teams Administrator") && d.contains(&format!("{TOKEN_APP} removed")),
        "{d}"
    );

    // The first page followed live: from H to the finished onboarding.
    first
        .wait_screen_for("s-done", Duration::from_secs(60))
        .await?;
    let snap = w.env.sim.snapshot();
    snapshot::no_duplicates(&snap, "SbcHand")?;
    ensure!(snapshot::sps_where(&snap, "display_name", TOKEN_APP).is_empty());
    w.check_exchanges(&token)?;
    w.check_exchanges(&link_token)?;
    first.close().await?;
    w.chrome.close().await
}

/// Cancel on screen H: confirm, "Keep going" back to H, then the undo; nothing is left.
#[tokio::test]
async fn an_application_administrator_cancels_while_waiting() -> Result<()> {
    let w = Wiz::start(Some("hand-off-cancel")).await?;
    let token = waiting(&w, "SbcGone").await?;
    // A link sent before the cancel: it ends with the wait.
    let link_token = new_link(&w).await?;
    w.chrome.click("btn-wait-cancel").await?;
    w.chrome.wait_screen("s-progress").await?;
    ensure!(w.chrome.focus().await? == "s-progress/h2/cancel-q");
    // Nothing is provisioning during the wait: the screen does not say it is.
    let heading = w.chrome.text("#progress-h").await?;
    ensure!(
        heading == "Waiting for an administrator",
        "heading: {heading}"
    );
    w.shoot("H7-cancel-confirm").await?;
    w.chrome.click("btn-cancel-no").await?;
    w.chrome.wait_screen("s-waiting").await?;
    ensure!(w.chrome.focus().await? == "s-waiting/button/btn-wait-cancel");
    w.chrome.click("btn-wait-cancel").await?;
    w.chrome.wait_screen("s-progress").await?;
    w.chrome.click("btn-cancel-yes").await?;
    w.wait_shown("progress-cancelled", "the cancellation")
        .await?;
    w.shows_cancelled().await?;
    w.shoot("H8-cancelled").await?;

    // The colleague who got the link opens it after the cancel: the onboarding no longer
    // waits, so there is nothing to do (not "ask for the current link", as a replaced one is).
    let p = ended_link_shown(&w, &link_token, Revoked, "H8b-link-after-a-cancel").await?;
    ensure!(
        p.contains("no longer waits for you")
            && p.contains("was cancelled")
            && p.contains("nothing to do with this link")
            && !p.contains("current one"),
        "{p}"
    );

    // Where Microsoft's admin-consent page sends an admin back: a static page, accessible,
    // with the same headers, that trusts and echoes nothing.
    for (query, want, shot) in [
        (
            "admin_consent=True&state=x",
            "Onboard now checks your tenant",
            "H9-consented",
        ),
        (
            "error=access_denied&error_description=AADSTS65004%3A%20%3Cb%3Ex",
            "not granted (AADSTS65004)",
            "H9-consent-refused",
        ),
    ] {
        let url = format!("{}/wizard/consented?{query}", w.proxy.url);
        w.chrome.client.goto(&url).await?;
        w.chrome
            .wait_js("document.querySelector('main h1') !== null", "the page")
            .await?;
        let text = w.chrome.text("main").await?;
        ensure!(text.contains(want) && !text.contains("<b>"), "{text}");
        let violations = w.chrome.axe(super::AXE).await?;
        ensure!(violations.is_empty(), "axe: {}", violations.join("\n"));
        w.shoot(shot).await?;
    }
    let snap = w.env.sim.snapshot();
    ensure!(
        snapshot::apps_named(&snap, "SbcGone").is_empty(),
        "the app outlived the cancellation"
    );
    w.check_exchanges(&token)?;
    w.chrome.close().await
}

/// Opens hand-off link `link_token` once the server has ended it (`state`, revoked or
/// expired): the problem screen's text.
async fn ended_link_shown(
    w: &Wiz,
    link_token: &str,
    state: onboard_proto::v1::InvitationState,
    shot: &str,
) -> Result<String> {
    let key = onboard_proto::v1::get_invitation_request::Key::Token(link_token.into());
    testkit::wait::until_true("the link ended", Duration::from_secs(60), async || {
        Ok(w.env.server.invitation(key.clone()).await?.state() == state)
    })
    .await?;
    w.open(link_token).await?;
    w.step("s-problem", shot).await?;
    w.chrome.text("#s-problem").await
}

/// Nobody finishes in time: the onboarding is undone when its wait expires, the first page
/// says so, and the link the Global Administrator got, which expired with the wait, says
/// nothing is left to do (not "ask for a new link").
#[tokio::test]
async fn a_link_whose_wait_expired_says_there_is_nothing_left_to_do() -> Result<()> {
    let short_wait = |b: testkit::config::ServerConfigBuilder| Ok(b.limit("hand_off_wait_secs", 5));
    let w =
        Wiz::start_configured(Some("hand-off-expired"), testkit::sim::calm(), short_wait).await?;
    waiting(&w, "SbcLate").await?;
    let link_token = new_link(&w).await?;
    // The expiry check ticks every 15 s: the undo comes within a tick of the wait's end.
    w.chrome
        .wait_js_for(
            "!document.getElementById('progress-cancelled').hidden",
            "the undo after the wait expired",
            Duration::from_secs(60),
        )
        .await?;
    let first = w.chrome.text("#cancelled-text").await?;
    w.shoot("H11-wait-expired").await?;
    let p = ended_link_shown(&w, &link_token, Expired, "H11b-link-after-the-wait").await?;
    ensure!(
        p.contains("no longer waits for you")
            && p.contains("nothing to do with this link")
            && !p.contains("newer link"),
        "{p}\nthe first page said: {first}"
    );
    ensure!(
        snapshot::apps_named(&w.env.sim.snapshot(), "SbcLate").is_empty(),
        "the app outlived the expiry"
    );
    w.chrome.close().await
}

/// The provider cancels while the page waits for a privileged admin: the page says the
/// onboarding is being undone (never that an administrator is finishing it), then who may
/// have ended it, not "You cancelled it".
#[tokio::test]
async fn a_provider_cancel_while_waiting_is_worded_as_an_undo() -> Result<()> {
    let w = Wiz::start(Some("hand-off-provider-cancel")).await?;
    waiting(&w, "SbcProvCx").await?;
    // Every text the connection line and the heading show from now on.
    w.chrome
        .js("window.__seen = []; const note = () => window.__seen.push(\
             document.getElementById('conn').textContent + ' | ' + \
             document.getElementById('progress-h').textContent); \
             new MutationObserver(note).observe(document.body, \
             {subtree: true, childList: true, characterData: true}); return true")
        .await?;
    let id = w
        .onboardings()
        .await?
        .pop()
        .context("the onboarding")?
        .onboarding_id;
    w.env
        .server
        .onboarding(Some(testkit::config::OPERATOR))
        .await?
        .cancel_onboarding(onboard_proto::v1::CancelOnboardingRequest {
            onboarding_id: id,
            reason: "the customer asked us to stop".into(),
            ..Default::default()
        })
        .await?;
    w.wait_shown("progress-cancelled", "the cancellation")
        .await?;
    w.shows_cancelled().await?;
    let seen: Vec<String> = serde_json::from_value(w.chrome.js("return window.__seen").await?)?;
    ensure!(
        !seen
            .iter()
            .any(|t| t.contains("is finishing") || t.contains("| Provisioning")),
        "worded as provisioning: {seen:?}"
    );
    let text = w.chrome.text("#cancelled-text").await?;
    ensure!(
        text.starts_with("It was cancelled (by your provider"),
        "{text}"
    );
    w.shoot("H10-cancelled-by-provider").await?;
    w.chrome.close().await
}
