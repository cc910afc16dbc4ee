//! The wizard's main paths: a Global Administrator from the link to Done (every step
//! photographed, the secret claimed by the platform and never seen by the browser), an
//! Application Administrator told before any change, a reload in the middle of provisioning,
//! on Done and after the sign-in ended, "Use App Registration", a cancellation from the page,
//! and a sign-in Microsoft no longer accepts renewed from the name screen.

use std::time::Duration;

use anyhow::{Result, ensure};
use onboard_proto::v1 as pb;
use secrecy::ExposeSecret;
use testkit::config::OPERATOR;
use testkit::portal::{DIRECT_ROUTING, Grants, HandMade};
use testkit::sim::users;
use testkit::snapshot;

use crate::{Wiz, settle};

#[tokio::test]
async fn a_global_administrator_goes_from_the_link_to_done() -> Result<()> {
    let w = Wiz::start(Some("global-admin")).await?;
    let token = w.invite().await?;
    w.open(&token).await?;
    w.step("s-landing", "01-landing").await?;
    let landing = w.chrome.text("#s-landing").await?;
    for want in ["Invitation wizard", "sp2", "Contoso", "Link expires"] {
        ensure!(landing.contains(want), "landing lacks {want}: {landing}");
    }

    // Keyboard only: Tab to "Create New App Registration", Enter.
    // (Each check right after an action waits for the page: a loaded machine may lag.)
    w.chrome.keys("\u{E004}").await?;
    w.chrome
        .wait_js(
            "document.activeElement && document.activeElement.id === 'btn-create'",
            "the focus on Create New App Registration after Tab",
        )
        .await?;
    w.chrome.keys("\u{E007}").await?;
    w.step("s-upn", "02-upn").await?;
    w.chrome.click("btn-auth").await?;
    w.wait_text(
        "upn-error",
        "Enter the admin account",
        "an empty UPN refused next to the field",
    )
    .await?;
    let upn = w.upn(users::GLOBAL_ADMIN);
    w.chrome.type_into("upn", &upn).await?;
    // The computer's clock two hours fast: the countdown still counts the server's time.
    w.chrome
        .js("const real = Date.now; Date.now = () => real() + 7200000; return true")
        .await?;
    w.chrome.keys("\u{E007}").await?;

    let code = w.code().await?;
    w.step("s-code", "03-device-code").await?;
    let screen = w.chrome.text("#s-code").await?;
    ensure!(screen.contains("Copy code and open page in new tab") && screen.contains(&upn));
    ensure!(
        w.chrome
            .text("#code-countdown")
            .await?
            .contains("The code expires in")
    );
    ensure!(w.chrome.text("#code-uri").await?.ends_with("/devicelogin"));
    w.env.sim.complete_device_login(&code, &upn).await?;

    // Screen 4 lists the plan (wizard.md), the app not yet named.
    w.wait_shown("preview-box", "the plan on screen 4").await?;
    w.step("s-connected", "04-connected").await?;
    w.wait_enabled("btn-next", "Next Step enabled").await?;
    let c = w.chrome.text("#s-connected").await?;
    ensure!(c.contains("The token connection has been successfully established"));
    let preview = w.chrome.text("#preview-plan").await?;
    for part in [
        "Create the app registration, with the name you choose next",
        "Create its enterprise application",
        "Grant the application permission",
        "Assign the directory role",
        "Remove the temporary app Sandbox1-sp2-token",
    ] {
        ensure!(
            preview.contains(part),
            "{part:?} not in the plan: {preview}"
        );
    }
    ensure!(
        !preview.contains("needs"),
        "a Global Administrator lacks nothing: {preview}"
    );
    ensure!(
        c.contains(&upn) && c.contains("Global Administrator"),
        "{c}"
    );
    ensure!(!w.chrome.disabled("btn-next").await?);
    w.chrome.click("btn-next").await?;

    w.step("s-name", "05-name").await?;
    ensure!(w.chrome.disabled("btn-provision").await?);
    w.chrome.type_into("app-name", "sbc.one").await?;
    w.wait_text("name-msg", "dot", "the dot rule").await?;
    w.shoot("05b-name-rule-broken").await?;
    w.name_and_plan("SbcOne").await?;
    let plan = w.chrome.text("#plan").await?;
    ensure!(
        plan.contains("SbcOne") && plan.contains("Sandbox1-sp2-token"),
        "{plan}"
    );
    ensure!(
        w.env.sim.snapshot().to_string().matches("SbcOne").count() == 0,
        "nothing made yet"
    );
    w.shoot("05c-name-plan").await?;
    w.record_screens().await?;
    w.chrome.click("btn-provision").await?;

    // The progress screen, then Done. Against a calm emulator the run may finish within one
    // poll of the screen, so what the page showed is recorded, not polled for.
    let done = w.step_after_run("s-done", "07-done").await?;
    let shown = w.screens_shown().await?;
    let at = |id: &str| shown.iter().position(|s| s == id);
    ensure!(
        matches!((at("s-progress"), at("s-done")), (Some(p), Some(d)) if p < d),
        "screens shown after Start Provisioning: {shown:?}"
    );
    ensure!(
        done.contains("SbcOne") && done.contains("Sandbox1-sp2-token removed"),
        "{done}"
    );
    ensure!(
        done.contains("Your provider completes the onboarding of the service."),
        "{done}"
    );
    // A reload on Done shows the summary again, not "already used".
    w.chrome.client.refresh().await?;
    w.chrome.wait_screen("s-done").await?;
    let again = w.chrome.text("#s-done").await?;
    ensure!(again.contains("SbcOne"), "{again}");

    // The platform claims the secret once; the browser never received it.
    let list = w.onboardings().await?;
    ensure!(list.len() == 1, "one onboarding: {list:?}");
    let oid = list[0].onboarding_id.clone();
    let claimed = w
        .env
        .server
        .onboarding(Some(OPERATOR))
        .await?
        .claim_secret(pb::ClaimSecretRequest {
            onboarding_id: oid.clone(),
            seal_to: None,
        })
        .await?
        .into_inner();
    ensure!(claimed.secret.len() > 10 && claimed.client_id == list[0].client_id);
    ensure!(done.contains(&claimed.client_id));
    let again = w
        .env
        .server
        .onboarding(Some(OPERATOR))
        .await?
        .claim_secret(pb::ClaimSecretRequest {
            onboarding_id: oid,
            seal_to: None,
        })
        .await;
    ensure!(
        again.as_ref().err().map(tonic::Status::code) == Some(tonic::Code::FailedPrecondition),
        "a second claim is refused: {again:?}"
    );
    for x in w.proxy.exchanges() {
        ensure!(
            !x.body_text().contains(&claimed.secret),
            "the secret reached the browser in {}",
            x.request_line
        );
    }
    w.check_exchanges(&token)?;
    ensure!(
        w.proxy
            .exchanges()
            .iter()
            .any(|x| x.request_line.starts_with("POST /wizard/api/provision"))
    );
    w.chrome.close().await
}

#[tokio::test]
async fn a_reload_during_provisioning_follows_the_same_onboarding() -> Result<()> {
    let w = Wiz::start_slow(Some("reload"), 1500).await?;
    let token = w.provisioning("SbcReload", "").await?;
    // The replication lag makes a step wait; the page says why in plain words.
    let waits = "[...document.querySelectorAll('#steps li.wait')]\
                 .some(li => li.textContent.includes('waiting for Microsoft to replicate the new app — retry'))";
    w.chrome
        .wait_js(waits, "a step waiting for replication")
        .await?;
    w.step("s-progress", "06-progress").await?;
    w.chrome.client.refresh().await?;
    w.chrome.wait_screen("s-progress").await?;
    w.wait_step("", "the replayed steps").await?;
    w.shoot("06b-progress-after-reload").await?;
    w.after_run("s-done").await?;
    let snap = w.env.sim.snapshot();
    snapshot::no_duplicates(&snap, "SbcReload")?;
    let list = w.onboardings().await?;
    ensure!(list.len() == 1, "one onboarding after the reload: {list:?}");
    let watches = w
        .proxy
        .exchanges()
        .iter()
        .filter(|x| x.request_line.starts_with("POST /wizard/api/watch"))
        .count();
    ensure!(watches >= 1, "the reloaded page watched");
    w.check_exchanges(&token)?;
    w.chrome.close().await
}

/// The network drops in the middle of provisioning (the stream of steps breaks off): the page
/// says it reconnects, follows the same run with Watch from the last event it saw, and
/// reaches Done with each step once; one onboarding, one app.
#[tokio::test]
async fn a_network_loss_during_provisioning_reconnects_from_the_last_event() -> Result<()> {
    let w = Wiz::start_slow(Some("network-loss"), 1500).await?;
    let token = w.provisioning("SbcNetLoss", ".ok").await?;
    let watches = |w: &Wiz| {
        w.proxy
            .exchanges()
            .iter()
            .filter(|x| x.request_line.starts_with("POST /wizard/api/watch"))
            .count()
    };
    ensure!(watches(&w) == 0, "watched before the loss");
    w.proxy.cut();
    w.wait_text("conn", "Reconnecting", "the reconnecting words")
        .await?;
    w.shoot("06c-progress-reconnecting").await?;
    w.after_run("s-done").await?;
    ensure!(watches(&w) >= 1, "no Watch after the loss");
    let names: Vec<String> = serde_json::from_value(
        w.chrome
            .js("return [...document.querySelectorAll('#steps li')].map(li => li.textContent)")
            .await?,
    )?;
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    ensure!(unique.len() == names.len(), "a step twice: {names:?}");
    snapshot::no_duplicates(&w.env.sim.snapshot(), "SbcNetLoss")?;
    ensure!(w.onboardings().await?.len() == 1, "one onboarding");
    w.check_exchanges(&token)?;
    w.chrome.close().await
}

/// On the attach screen: the client id and secret of `app` typed, "Validate" clicked.
async fn validate(w: &Wiz, app: &HandMade) -> Result<()> {
    w.chrome.type_into("att-client", &app.client_id).await?;
    w.chrome
        .type_into("att-secret", app.secret.expose_secret())
        .await?;
    w.chrome.click("btn-validate").await
}

#[tokio::test]
async fn use_app_registration_says_what_is_missing_then_connects() -> Result<()> {
    let w = Wiz::start(Some("use-app-registration")).await?;
    let client = w.env.entra_client()?;
    let admin = testkit::sim::sign_in(&w.env.sim, &client, users::GLOBAL_ADMIN).await?;
    let graph = client.graph(admin.access_token);
    let bare = testkit::portal::hand_made(&graph, "HandMade1", &Grants::NONE).await?;
    let full = testkit::portal::hand_made(&graph, "HandMade2", &DIRECT_ROUTING).await?;
    let token = w.invite().await?;
    w.open(&token).await?;
    w.chrome.wait_screen("s-landing").await?;
    w.chrome.click("btn-use").await?;
    w.step("s-attach", "02b-use-app-registration").await?;
    // An empty field is named, not only marked.
    w.chrome.click("btn-validate").await?;
    w.wait_text(
        "attach-error-text",
        "Enter the Directory (tenant) ID",
        "the empty field named",
    )
    .await?;
    let tenant = w.env.info.tenant_id.clone();
    w.chrome.type_into("att-tenant", &tenant).await?;
    // A secret pasted as the client id: the server's rule said for that box, marked, focused.
    let pasted = "abc8Q~Zk9.Lm_Z-2pQrT7vWxYz0aBcDeFgHiJkLm";
    w.chrome.type_into("att-client", pasted).await?;
    w.chrome.type_into("att-secret", "not-a-secret").await?;
    w.chrome.click("btn-validate").await?;
    let rule = "Application (client) ID must be a UUID";
    w.wait_text("attach-error-text", rule, "the box's rule")
        .await?;
    let focus = w.chrome.focus().await?;
    ensure!(focus == "s-attach/input/att-client", "{focus}");
    let marked = "return document.getElementById('att-client').getAttribute('aria-invalid')";
    ensure!(
        w.chrome.js(marked).await? == "true",
        "the box is not marked"
    );
    w.shoot("02b2-use-app-registration-client-id-refused")
        .await?;
    validate(&w, &bare).await?;
    w.wait_shown("attach-error", "the error").await?;
    settle().await;
    let e = w.chrome.text("#attach-error").await?;
    let missing = w
        .chrome
        .js("return document.querySelectorAll('#attach-missing li').length")
        .await?;
    ensure!(
        missing.as_u64().unwrap_or(0) >= 1,
        "each missing grant listed: {e}"
    );
    ensure!(e.contains("What to do"), "{e}");
    ensure!(w.chrome.focus().await?.ends_with("/attach-error"));
    w.shoot("02c-use-app-registration-missing").await?;
    // Microsoft's sign-in service out of service: said so, not "a wrong secret".
    let mut down = testkit::sim::calm();
    (down.sts_throttle_rate, down.throttle_retry_after_s) = (1.0, 0);
    w.env.sim.set_faults(down);
    validate(&w, &full).await?;
    w.wait_text(
        "attach-error-text",
        "The onboarding service or Microsoft is not available just now",
        "the outage in words",
    )
    .await?;
    w.shoot("02e-use-app-registration-microsoft-unavailable")
        .await?;
    w.env.sim.set_faults(testkit::sim::calm());
    validate(&w, &full).await?;
    w.step("s-attached", "02d-use-app-registration-connected")
        .await?;
    ensure!(
        w.chrome
            .text("#s-attached")
            .await?
            .contains(&full.client_id)
    );
    // A reload: the link was spent attaching; it says so and offers no new sign-in.
    w.chrome.client.refresh().await?;
    w.chrome.wait_screen("s-problem").await?;
    let p = w.chrome.text("#s-problem").await?;
    ensure!(p.contains("already been used"), "{p}");
    // The same registration for the same service from a second link: said in the page's
    // words, not the server's (which name the gRPC call an operator would use).
    let again = w.invite().await?;
    w.open(&again).await?;
    w.chrome.wait_screen("s-landing").await?;
    w.chrome.click("btn-use").await?;
    w.chrome.wait_screen("s-attach").await?;
    w.chrome.type_into("att-tenant", &tenant).await?;
    validate(&w, &full).await?;
    w.wait_text("attach-error-text", "already connected", "the page's words")
        .await?;
    let e = w.chrome.text("#attach-error-text").await?;
    ensure!(!e.contains("Credentials.") && !e.contains("hint"), "{e}");
    w.check_exchanges(&token)?;
    for x in w.proxy.exchanges() {
        let body = x.body_text();
        ensure!(!body.contains(full.secret.expose_secret()));
    }
    w.chrome.close().await
}

/// Screen 6's Cancel: asked to confirm (keyboard focus on the question), then the undo runs
/// on the same page and ends on "Onboarding cancelled" (heading and title); nothing is left in
/// the tenant and the audit log has the customer's cancellation.
#[tokio::test]
async fn the_customer_cancels_during_provisioning_and_nothing_is_left() -> Result<()> {
    let w = Wiz::start_slow(Some("cancel"), 3000).await?;
    let token = w.provisioning("SbcCancel", ".ok").await?;
    // "Keep going" changes nothing and gives the focus back to Cancel.
    w.chrome.click("btn-cancel").await?;
    ensure!(w.chrome.focus().await? == "s-progress/h2/cancel-q");
    w.shoot("06c-cancel-confirm").await?;
    w.chrome.click("btn-cancel-no").await?;
    ensure!(w.chrome.focus().await? == "s-progress/button/btn-cancel");
    w.chrome.click("btn-cancel").await?;
    w.chrome.click("btn-cancel-yes").await?;
    testkit::wait::until(
        "the cancelled notice",
        Duration::from_secs(120),
        async || {
            let shown = w
                .chrome
                .js("return !document.getElementById('progress-cancelled').hidden")
                .await?;
            let main = w.chrome.text("main").await?;
            Ok(testkit::wait::settled(
                shown.as_bool() == Some(true),
                (),
                main,
            ))
        },
    )
    .await?;
    ensure!(w.chrome.focus().await? == "s-progress/h2/cancelled-h");
    w.shows_cancelled().await?;
    ensure!(
        w.chrome
            .js("return document.getElementById('cancel-area').hidden")
            .await?
            .as_bool()
            == Some(true),
        "Cancel is still offered after the cancellation"
    );
    w.shoot("06d-cancelled").await?;
    let snap = w.env.sim.snapshot();
    ensure!(
        snapshot::apps_named(&snap, "SbcCancel").is_empty(),
        "the app outlived the cancellation"
    );
    let entries = w.env.server.entries()?;
    ensure!(
        entries
            .iter()
            .any(|e| e["action"] == "onboarding.cancel_request"
                && e["actor"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("invitation:"))),
        "no cancellation by the customer in the audit log"
    );
    w.check_exchanges(&token)?;
    w.chrome.close().await
}

/// A run that Conditional Access stops partway (the admin's sign-ins revoked): screen 6 says
/// so and offers to sign in again; after a new sign-in with the same link the run goes on
/// where it stopped, to Done.
#[tokio::test]
async fn a_run_stopped_by_conditional_access_goes_on_after_a_new_sign_in() -> Result<()> {
    let w = Wiz::start_slow(Some("resume"), 300).await?;
    let token = w.provisioning("SbcResume", ".ok").await?;
    w.env.sim.revoke_sign_in_sessions().await;
    w.chrome
        .wait_js(
            "!document.getElementById('progress-failed').hidden",
            "the run stopped",
        )
        .await?;
    let stopped = w.chrome.text("#progress-failed").await?;
    ensure!(
        stopped.contains("Conditional Access") && stopped.contains("Sign in again and continue"),
        "{stopped}"
    );
    // Plain words first; the step named in the details is the one whose error is shown (two
    // steps run at once; both may fail).
    let plain = w.chrome.text("#failed-text").await?;
    ensure!(
        plain.starts_with(
            "Your organisation’s Conditional Access policy asks the admin to sign in again"
        ),
        "{plain}"
    );
    let detail = w.chrome.text("#failed-detail").await?;
    let failed_step = "return [...document.querySelectorAll('#steps li.bad')].length";
    ensure!(
        w.chrome.js(failed_step).await?.as_u64() == Some(1),
        "{detail}"
    );
    ensure!(detail.starts_with("Details: "), "{detail}");
    let running = "return document.querySelectorAll('#steps li.run, #steps li.wait').length";
    ensure!(
        w.chrome.js(running).await?.as_u64() == Some(0),
        "a step still shows as running after the run stopped"
    );
    w.shoot("06e-stopped-by-conditional-access").await?;
    w.chrome.click("btn-resume").await?;
    w.sign_in_from_upn(users::GLOBAL_ADMIN).await?;
    let c = w.chrome.text("#s-connected").await?;
    ensure!(c.contains("Part of it was made before it stopped"), "{c}");
    w.chrome.click("btn-next").await?;
    let done = w
        .step_after_run("s-done", "07b-done-after-sign-in-again")
        .await?;
    ensure!(done.contains("SbcResume"), "{done}");
    ensure!(
        snapshot::apps_named(&w.env.sim.snapshot(), "SbcResume").len() == 1,
        "one app, made once"
    );
    w.check_exchanges(&token)?;
    w.chrome.close().await
}

/// The admin names the app after Microsoft stopped accepting their sign-in (the sessions
/// revoked, the access token's hour over): the plan is refused with the sign-in-again words and
/// a button, nothing can be started; after a new sign-in with the same link the name is checked
/// again and provisioning runs to Done.
#[tokio::test]
async fn a_sign_in_microsoft_no_longer_accepts_is_renewed_from_the_name_screen() -> Result<()> {
    let w = Wiz::start(Some("signin-again")).await?;
    let token = w.plan_after_the_sign_in_ended("SbcAgain").await?;
    let status = w.chrome.text("#plan-status").await?;
    ensure!(
        status.starts_with("Your organisation’s Conditional Access policy asks the admin")
            && status.contains("Nothing has been changed"),
        "{status}"
    );
    ensure!(w.chrome.disabled("btn-provision").await?, "startable");
    // The server let go of that sign-in: another name gets the same offer (the onboarding
    // holds no sign-in now), not the server's words about the onboarding.
    w.chrome.type_into("app-name", "SbcAgain2").await?;
    w.wait_shown(
        "plan-signin",
        "the offer to sign in again, for another name",
    )
    .await?;
    let status = w.chrome.text("#plan-status").await?;
    ensure!(
        status.starts_with("Your organisation’s Conditional Access policy asks the admin"),
        "{status}"
    );
    w.shoot("05f-name-sign-in-again").await?;
    w.chrome.click("btn-plan-signin").await?;
    w.sign_in_from_upn(users::GLOBAL_ADMIN).await?;
    let c = w.chrome.text("#s-connected").await?;
    ensure!(
        c.contains("Nothing has been changed in your tenant yet"),
        "{c}"
    );
    w.chrome.click("btn-next").await?;
    w.chrome.wait_screen("s-name").await?;
    w.wait_enabled("btn-provision", "the name checked again")
        .await?;
    let offer = "return document.getElementById('plan-signin').hidden";
    ensure!(
        w.chrome.js(offer).await?.as_bool() == Some(true),
        "offer still shown"
    );
    w.chrome.click("btn-provision").await?;
    let done = w
        .step_after_run("s-done", "07c-done-after-a-new-sign-in")
        .await?;
    ensure!(done.contains("SbcAgain"), "{done}");
    w.check_exchanges(&token)?;
    w.chrome.close().await
}

/// A reload after Microsoft stopped accepting the sign-in, before any change: the page offers
/// a new sign-in with the same link (not "already used"), and the onboarding goes on from it.
#[tokio::test]
async fn a_reload_after_the_sign_in_ended_offers_a_new_one() -> Result<()> {
    let w = Wiz::start(Some("sign-in-ended")).await?;
    let token = w.plan_after_the_sign_in_ended("SbcEnded").await?;
    w.chrome.client.refresh().await?;
    w.step("s-signin-failed", "03z-sign-in-ended").await?;
    let t = w.chrome.text("#s-signin-failed").await?;
    ensure!(
        t.contains("Your sign-in has ended") && t.contains("Nothing has been changed"),
        "{t}"
    );
    w.chrome.click("btn-retry").await?;
    w.sign_in_from_upn(users::GLOBAL_ADMIN).await?;
    w.chrome.click("btn-next").await?;
    w.name_and_start("SbcEnded").await?;
    w.after_run("s-done").await?;
    let list = w.onboardings().await?;
    ensure!(list.len() == 1, "the same onboarding: {list:?}");
    w.check_exchanges(&token)?;
    w.chrome.close().await
}

/// The device code runs out before anyone signs in: the countdown says so, the sign-in fails
/// with plain words, and the same link tries again.
#[tokio::test]
async fn a_device_code_that_runs_out_is_said_and_tried_again() -> Result<()> {
    let w = Wiz::start_with(
        Some("code-expired"),
        entra_sim::Faults {
            device_code_ttl_s: Some(3),
            device_code_interval_s: Some(1),
            ..testkit::sim::calm()
        },
    )
    .await?;
    let (token, _, _) = w.code_for_new_link(users::GLOBAL_ADMIN).await?;
    w.step("s-signin-failed", "03w-code-expired").await?;
    let t = w.chrome.text("#signin-failed-text").await?;
    ensure!(
        t.contains("The code expired before the sign-in was finished"),
        "{t}"
    );
    w.chrome.click("btn-retry").await?;
    w.chrome.wait_screen("s-upn").await?;
    w.check_exchanges(&token)?;
    w.chrome.close().await
}
