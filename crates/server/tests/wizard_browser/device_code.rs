//! The sign-in screens (wizard.md screens 2a and 3): the admin's UPN prefilled when the
//! invitation names it (and the tenant the sign-in is at, when it names that), "Copy code and open page in new tab" opening Microsoft's sign-in page,
//! Microsoft's `slow_down` said calmly while the page waits; a declined sign-in, another
//! account's and one without the rights, each tried again with the same link; and the browser
//! sign-in for tenants whose Conditional Access blocks device codes.

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
    // The invitation names the customer's tenant too (docs/microsoft.md §30).
    let domain = w.env.info.tenant_domain.to_ascii_lowercase();
    req.tenant = domain.clone();
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
    // The server signs in no other account for this invitation: the field cannot be changed.
    let fixed = w
        .chrome
        .js("return document.getElementById('upn').readOnly")
        .await?;
    ensure!(
        fixed.as_bool() == Some(true),
        "the named admin's field is editable"
    );
    // The screen says which tenant the sign-in is at.
    let tenant = w
        .chrome
        .js("const p = document.getElementById('upn-tenant'); \
             return p.hidden ? null : document.getElementById('tenant-name').textContent")
        .await?;
    ensure!(tenant.as_str() == Some(domain.as_str()), "{tenant:?}");
    let described = w
        .chrome
        .js("return document.getElementById('upn').getAttribute('aria-describedby')")
        .await?;
    ensure!(
        described.as_str().is_some_and(|d| d.contains("upn-tenant")),
        "the tenant is not part of the field's description: {described:?}"
    );
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

#[tokio::test]
async fn a_blocked_device_code_is_refused_and_the_browser_sign_in_gets_through() -> Result<()> {
    let mut faults = testkit::sim::calm();
    faults.block_device_code = true;
    let w = Wiz::start_with(Some("browser-sign-in"), faults).await?;
    let back = "https://wizard.example.net/wizard/signed-in";
    w.env.sim.set_token_app_redirect_uris(vec![back.to_owned()]);
    let upn = w.upn(users::GLOBAL_ADMIN);
    let token = w.invite().await?;
    w.open(&token).await?;
    w.chrome.wait_screen("s-landing").await?;
    w.chrome.click("btn-create").await?;
    w.chrome.wait_screen("s-upn").await?;
    w.chrome.type_into("upn", &upn).await?;
    w.chrome.click("btn-auth").await?;

    // Either way can be switched to while the other waits (the server lets go of the first:
    // one sign-in per link at a time).
    let first = w.code().await?;
    w.chrome.click("btn-to-browser").await?;
    w.step("s-browser", "03c-browser-sign-in").await?;
    w.chrome.click("btn-to-code").await?;
    w.chrome
        .wait_js(
            &format!("document.getElementById('code').textContent !== '{first}'"),
            "a new code",
        )
        .await?;

    // The tenant blocks device codes: Microsoft refuses the code, and the page offers the
    // browser sign-in instead, as the way on.
    let code = w.code().await?;
    let blocked = w.env.sim.complete_device_login(&code, &upn).await;
    ensure!(
        blocked.is_err(),
        "the emulator let a blocked device code through"
    );
    w.step("s-signin-failed", "03x-device-code-blocked").await?;
    let text = w.chrome.text("#signin-failed-text").await?;
    ensure!(text.contains("sign in with this browser instead"), "{text}");
    ensure!(
        w.chrome.text("#btn-retry-other").await? == "Sign in with this browser instead",
        "the other way is not offered"
    );
    let primary = w
        .chrome
        .js("return document.getElementById('btn-retry-other').classList.contains('primary')")
        .await?;
    ensure!(primary == true, "the browser sign-in is not the way on");

    // The browser sign-in: one link to Microsoft's page, for this admin, in a new tab.
    w.chrome.click("btn-retry-other").await?;
    w.chrome.wait_screen("s-browser").await?;
    let href = w
        .chrome
        .js("const a = document.getElementById('browser-open'); return [a.href, a.target, a.rel]")
        .await?;
    let url = href[0].as_str().context("href")?.to_owned();
    ensure!(
        url.contains("/oauth2/v2.0/authorize?") && url.contains("code_challenge="),
        "{url}"
    );
    ensure!(
        href[1] == "_blank" && href[2].as_str().is_some_and(|r| r.contains("noopener")),
        "{href}"
    );
    let countdown = w.chrome.text("#browser-countdown").await?;
    ensure!(
        countdown.starts_with("The sign-in page works for 1"),
        "{countdown}"
    );

    // Microsoft sends the browser back to the wizard's origin in that tab: shown through the
    // proxy (so its headers are checked with the rest), then back to the wizard's tab.
    let location = testkit::sim::authorize(&w.env.sim, &url, users::GLOBAL_ADMIN, true).await?;
    let path = location
        .strip_prefix("https://wizard.example.net")
        .context("origin")?;
    let wizard_tab = w.chrome.client.window().await?;
    let tab = w.chrome.client.new_window(true).await?;
    w.chrome.client.switch_to_window(tab.handle).await?;
    w.chrome
        .client
        .goto(&format!("{}{path}", w.proxy.url))
        .await?;
    let page = w.chrome.text("h1").await?;
    ensure!(page == "Go back to the invitation wizard", "{page}");
    w.shoot("03d-browser-returned").await?;
    w.chrome.client.close_window().await?;
    w.chrome.client.switch_to_window(wizard_tab).await?;
    w.step("s-connected", "04-browser-signed-in").await?;
    ensure!(
        w.chrome.text("#who").await? == upn,
        "another admin is shown"
    );
    w.chrome.close().await
}

#[tokio::test]
async fn a_declined_or_wrong_account_sign_in_is_offered_a_retry_with_the_same_link() -> Result<()> {
    let w = Wiz::start(Some("declined")).await?;
    let (token, upn, code) = w.code_for_new_link(users::GLOBAL_ADMIN).await?;
    w.env.sim.decline_device_login(&code, &upn).await?;
    w.step("s-signin-failed", "03x-sign-in-declined").await?;
    let t = w.chrome.text("#s-signin-failed").await?;
    ensure!(t.contains("declined") && t.contains("try again"), "{t}");
    // Worded by the ErrorInfo reason (SIGN_IN_DECLINED), not guessed from the message.
    let words = w.chrome.text("#signin-failed-text").await?;
    ensure!(words == "The sign-in was declined.", "{words}");
    w.chrome.click("btn-retry").await?;
    w.chrome.wait_screen("s-upn").await?;
    // Someone else signs in at Microsoft: the page says so in plain words.
    let second = w
        .device_sign_in(users::GLOBAL_ADMIN, users::APP_ADMIN)
        .await?;
    ensure!(second != code, "a new code");
    w.step("s-signin-failed", "03y-sign-in-wrong-account")
        .await?;
    let t = w.chrome.text("#signin-failed-text").await?;
    ensure!(
        t.contains("another account than the one entered") && t.contains(&upn),
        "{t}"
    );
    // An account without Application Administrator: told so in words (Microsoft did complete
    // the sign-in), with the roles it holds in the details, not a Rust list.
    w.chrome.click("btn-retry").await?;
    w.device_sign_in(users::USER, users::USER).await?;
    w.step("s-signin-failed", "03v-sign-in-missing-rights")
        .await?;
    let t = w.chrome.text("#signin-failed-text").await?;
    ensure!(
        t.contains("does not hold Application Administrator")
            && t.contains("Nothing has been changed"),
        "{t}"
    );
    let details = w.chrome.text("#signin-failed-detail").await?;
    ensure!(
        details.contains("holds no administrator role") && !details.contains('['),
        "{details}"
    );
    w.chrome.click("btn-retry").await?;
    w.sign_in_from_upn(users::GLOBAL_ADMIN).await?;
    w.check_exchanges(&token)?;
    w.chrome.close().await
}
