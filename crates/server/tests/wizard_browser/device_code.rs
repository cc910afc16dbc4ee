//! The device-code screens (wizard.md screens 2a and 3): the admin's UPN prefilled when the
//! invitation names it, "Copy code and open page in new tab" opening Microsoft's sign-in page,
//! and Microsoft's `slow_down` said calmly while the page waits.

use anyhow::{Context, Result, ensure};
use testkit::server::OPERATOR;
use testkit::sim::users;
use testkit::sim_server::SERVICE;

use crate::Wiz;

#[tokio::test]
async fn the_code_screen_prefills_the_admin_opens_the_sign_in_page_and_says_slow_down_calmly()
-> Result<()> {
    // Microsoft answers the first poll `slow_down` (RFC 8628 §3.5), whatever its pace.
    let mut faults = testkit::sim::calm();
    faults.slow_down_polls = 1;
    let w = Wiz::start_with(Some("device-code"), faults).await?;
    let upn = w.upn(users::GLOBAL_ADMIN);
    let mut req = testkit::wizard::contoso(SERVICE, "direct-routing");
    req.admin_upn = upn.clone();
    let token = w
        .env
        .server
        .invitations(Some(OPERATOR))
        .await?
        .create_invitation(req)
        .await?
        .into_inner()
        .token;
    w.open(&token).await?;
    w.chrome.wait_screen("s-landing").await?;
    w.chrome.click("btn-create").await?;
    w.step("s-upn", "02-upn-prefilled").await?;
    let prefilled = w
        .chrome
        .js("return document.getElementById('upn').value")
        .await?;
    ensure!(prefilled.as_str() == Some(upn.as_str()), "{prefilled:?}");
    w.chrome.click("btn-auth").await?;
    let code = w.code().await?;

    // The one button copies the code and opens Microsoft's page in a new tab: the page asks
    // for the verification URI it was given, and the browser has a second window.
    let windows = w.chrome.client.windows().await?.len();
    w.chrome
        .js("window.__opened = []; const o = window.open; \
             window.open = (...a) => { window.__opened.push(a[0]); return o.apply(window, a); };")
        .await?;
    w.chrome.click("btn-copy-open").await?;
    w.chrome
        .wait_js("window.__opened.length === 1", "the sign-in page opened")
        .await?;
    let opened = w.chrome.js("return window.__opened[0]").await?;
    let uri = w
        .chrome
        .js("return document.getElementById('code-uri').href")
        .await?;
    ensure!(
        opened == uri && opened.as_str().is_some_and(|u| u.ends_with("/devicelogin")),
        "opened {opened:?}, the page names {uri:?}"
    );
    let now = w.chrome.client.windows().await?;
    ensure!(now.len() == windows + 1, "{} windows", now.len());
    // Back to the wizard's window (the new tab took the focus).
    let first = now.first().context("a window")?.clone();
    w.chrome.client.switch_to_window(first).await?;

    // slow_down: still waiting, calmly, with the longer interval (1 s + 5 s).
    w.wait_text("code-status", "check less often", "the slow-down words")
        .await?;
    let status = w.chrome.text("#code-status").await?;
    ensure!(
        status.contains("every 6 s") && status.contains("nothing is wrong"),
        "{status}"
    );
    w.shoot("03b-device-code-slow-down").await?;
    w.env.sim.complete_device_login(&code, &upn).await?;
    w.chrome.wait_screen("s-connected").await?;
    w.chrome.close().await
}
