//! The admin-consent variant of the hand-off (issue 13 item 1), over gRPC against the
//! emulator: an Application Administrator makes what they may; a Global Administrator grants
//! the Microsoft Graph permissions on Microsoft's admin-consent page for the new app, without
//! signing in to Onboard; Onboard sees the grants by itself and goes on. With no directory
//! role in the profile it finishes as the first admin; with one, the link is still needed for
//! it. The app's reply address for that page is gone afterwards. A link of a wait the consent
//! ended is revoked; one of a wait that goes on for the role is not.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use serde_json::Value;
use testkit::audit::{check_schema, phases_and_actors, succeeded_by};
use testkit::hand_off::{invitation, revoked_by, until_revoked};
use testkit::hold::halt_at;
use testkit::server_helpers::Refused;
use testkit::sim::{CONSENT_REPLY as REPLY, TOKEN_APP, admin_consent, users};
use testkit::sim_server::SimServer;
use testkit::snapshot::{apps_named, no_duplicates, provisioned_once, sps_where};
use testkit::wizard::{awaiting_admin, completed, hand_off_link, wait_for};

async fn start() -> Result<SimServer> {
    SimServer::start_with(|b| Ok(b.limit("consent_poll_secs", 1))).await
}

/// The Application Administrator's part for `profile`: the onboarding id, the first admin's
/// actor, the wait and the hand-off link issued for it.
async fn first_part(
    env: &SimServer,
    profile: &str,
    name: &str,
) -> Result<(String, String, pb::HandOff, pb::HandOffLink)> {
    let (token, invitation) = env.invite_for(None, profile).await?;
    let id = env.signed_in(&token, users::APP_ADMIN).await?.onboarding_id;
    let events = env
        .provision(&token, &id, name)
        .await?
        .map_err(|s| anyhow::anyhow!("provision refused: {s:?}"))?;
    let h = awaiting_admin(&events)?;
    ensure!(
        h.admin_consent_url.contains("/adminconsent?")
            && h.admin_consent_url.contains(&format!("state={id}")),
        "{h:?}"
    );
    ensure!(
        reply_uris(env, name) == serde_json::json!([REPLY]),
        "the app has no reply address for the consent page"
    );
    let link = hand_off_link(env.server.channel().await?, &token, &id).await?;
    ensure!(link.admin_consent_url == h.admin_consent_url, "{link:?}");
    Ok((id, format!("invitation:{invitation}"), h, link))
}

/// The app's reply addresses now.
fn reply_uris(env: &SimServer, name: &str) -> Value {
    let snap = env.sim.snapshot();
    let apps = apps_named(&snap, name);
    match apps.as_slice() {
        [app] => app["props"]["web"]["redirectUris"].clone(),
        _ => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_administrator_consents_on_microsofts_page_and_the_onboarding_finishes_itself()
-> Result<()> {
    let env = start().await?;
    let (id, first, h, link) = first_part(&env, "qoe", "Qoe-Consent").await?;
    ensure!(
        !h.changes_left.is_empty()
            && h.changes_left
                .iter()
                .all(|c| c.starts_with("app_role_assignment.create Microsoft Graph/")),
        "{h:?}"
    );

    // An Application Administrator cannot grant Graph app roles there: refused, nothing moves.
    let refused = admin_consent(&env.sim, &h.admin_consent_url, users::APP_ADMIN, true).await?;
    ensure!(
        refused.starts_with(REPLY) && refused.contains("error=permission_denied"),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let info = testkit::wizard::get(env.server.channel().await?, &id).await?;
    ensure!(
        info.state() == pb::OnboardingState::AwaitingAdmin,
        "{info:?}"
    );

    // The Global Administrator accepts; the browser's return is not needed (never followed).
    let back = admin_consent(&env.sim, &h.admin_consent_url, users::GLOBAL_ADMIN, true).await?;
    ensure!(
        back.starts_with(REPLY)
            && back.contains("admin_consent=True")
            && back.contains(&format!("state={id}")),
        "{back}"
    );
    let ch = env.server.channel().await?;
    let done = wait_for(ch, &id, Duration::from_secs(60), |i| {
        i.state() == pb::OnboardingState::Completed
    })
    .await?;
    ensure!(done.hand_off.is_none(), "{done:?}");

    // The link ended with the wait: revoked as the consent seen, its sign-in refused so.
    until_revoked(&env, &link.invitation_id, Duration::from_secs(20)).await?;
    let (consent, why) = ("entra:admin-consent", "admin-consent page");
    revoked_by(&env, &link.invitation_id, &id, consent, why).await?;
    env.sign_in(
        &link.invitation_token,
        &env.upn(users::GLOBAL_ADMIN),
        testkit::wizard::Browser::SignsInAs(users::GLOBAL_ADMIN),
    )
    .await?
    .refused(tonic::Code::FailedPrecondition, &["revoked"])?;
    // The page tells its holder the onboarding no longer waits, not to ask for a newer link.
    ensure!(testkit::hand_off::says_wait_ended(&env, &link.invitation_token).await?);

    // One app and service principal, every permission, no reply address, no temporary app.
    let snap = env.sim.snapshot();
    provisioned_once(&snap, "Qoe-Consent", 2, 0)?;
    ensure!(reply_uris(&env, "Qoe-Consent") == serde_json::json!([]));
    ensure!(sps_where(&snap, "display_name", TOKEN_APP).is_empty());
    let secret = testkit::wizard::claim(env.server.channel().await?, &id).await?;
    ensure!(env.authenticates(&secret.client_id, &secret.secret).await?);

    // The audit log: the grants as observed (Microsoft does not say who), the rest as the
    // first admin, the wait intended and finished.
    let entries = env.server.entries()?;
    check_schema(&entries)?;
    let observed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "admin_consent.observed" && e["onboarding_id"] == id.as_str())
        .collect();
    ensure!(observed.len() == 1, "{observed:?}");
    ensure!(observed[0]["actor"] == "entra:admin-consent");
    let mut granted: Vec<&str> = observed[0]["granted"]
        .as_array()
        .context("granted")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut left: Vec<&str> = h
        .changes_left
        .iter()
        .map(|c| c.trim_start_matches("app_role_assignment.create "))
        .collect();
    granted.sort_unstable();
    left.sort_unstable();
    ensure!(granted == left, "granted {granted:?}, left {left:?}");
    ensure!(
        phases_and_actors(&entries, "onboarding.hand_off", &id)
            == [
                ("intent".to_owned(), first.clone()),
                ("succeeded".to_owned(), first.clone())
            ]
    );
    let intent = entries
        .iter()
        .find(|e| e["action"] == "onboarding.hand_off" && e["onboarding_id"] == id.as_str())
        .context("no hand-off entry")?;
    ensure!(intent["admin_consent_url"] == h.admin_consent_url.as_str());
    ensure!(succeeded_by(&entries, "app_registration.update", &id) == std::slice::from_ref(&first));
    ensure!(succeeded_by(&entries, "temporary_app.delete", &id) == std::slice::from_ref(&first));
    ensure!(
        succeeded_by(&entries, "app_role_assignment.create", &id).is_empty(),
        "Onboard claims grants an admin made on Microsoft's page"
    );

    // The wizard's return page: says what happens, echoes nothing but an AADSTS number.
    let page = env
        .server
        .wizard_get(&format!("/wizard/consented?admin_consent=True&state={id}"))
        .await?;
    ensure!(
        page.contains("200 OK") && page.contains("granted the permissions"),
        "{page}"
    );
    let page = env.server.wizard_get(
        "/wizard/consented?error=permission_denied&error_description=AADSTS90094%3A%20%3Cscript%3E",
    )
    .await?;
    ensure!(
        page.contains("not granted (AADSTS90094)") && !page.contains("<script"),
        "{page}"
    );
    env.server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_leaves_the_directory_role_to_the_link() -> Result<()> {
    let env = start().await?;
    let (token, id) = env.invited_and_signed_in(users::APP_ADMIN).await?;
    let h = awaiting_admin(
        &env.provision(&token, &id, "Sbc-Consent")
            .await?
            .map_err(|s| anyhow::anyhow!("provision refused: {s:?}"))?,
    )?;
    ensure!(!h.admin_consent_url.is_empty(), "{h:?}");
    let early = hand_off_link(env.server.channel().await?, &token, &id).await?;
    admin_consent(&env.sim, &h.admin_consent_url, users::GLOBAL_ADMIN, true).await?;

    // The Graph permissions are seen; the role is left, and the page is no longer offered.
    let role = "directory_role_assignment.create Teams Administrator";
    let info = wait_for(
        env.server.channel().await?,
        &id,
        Duration::from_secs(60),
        |i| {
            i.hand_off
                .as_ref()
                .is_some_and(|h| h.changes_left == [role.to_owned()])
        },
    )
    .await?;
    ensure!(
        info.state() == pb::OnboardingState::AwaitingAdmin,
        "{info:?}"
    );
    let held = info.hand_off.context("no hand-off")?;
    ensure!(held.admin_consent_url.is_empty(), "{held:?}");
    ensure!(
        held.expires_at == h.expires_at,
        "the wait was extended: {held:?}"
    );
    // The wait goes on, and so does its link (until the starter replaces it below).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let inv = invitation(&env, &early.invitation_id).await?;
    ensure!(inv.state() == pb::InvitationState::Pending, "{inv:?}");

    // The link finishes the role; the reply address goes, as the link holder's change.
    let link = hand_off_link(env.server.channel().await?, &token, &id).await?;
    ensure!(link.admin_consent_url.is_empty(), "{link:?}");
    env.signed_in(&link.invitation_token, users::GLOBAL_ADMIN)
        .await?;
    let events = env
        .provision(&link.invitation_token, &id, "Sbc-Consent")
        .await?
        .map_err(|s| anyhow::anyhow!("the privileged admin was refused: {s:?}"))?;
    completed(&events)?;
    ensure!(reply_uris(&env, "Sbc-Consent") == serde_json::json!([]));
    no_duplicates(&env.sim.snapshot(), "Sbc-Consent")?;
    let entries = env.server.entries()?;
    check_schema(&entries)?;
    let second = format!("invitation:{}", link.invitation_id);
    ensure!(
        succeeded_by(&entries, "app_registration.update", &id) == std::slice::from_ref(&second)
    );
    ensure!(succeeded_by(&entries, "directory_role_assignment.create", &id) == [second]);
    ensure!(succeeded_by(&entries, "admin_consent.observed", &id) == ["entra:admin-consent"]);
    env.server.stop().await
}

/// `/wizard/consented` needs no credential and wakes the consent look at once; a flood of
/// visits must not turn into a flood of Graph reads for every waiting onboarding: the looks
/// stay two seconds apart however many visits come (`onboarding::hand_off::NUDGE_GAP`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_to_the_consent_page_do_not_drive_the_graph_reads() -> Result<()> {
    // Polling far off, so every look in the test is one a visit asked for.
    let env = SimServer::start_with(|b| Ok(b.limit("consent_poll_secs", 600))).await?;
    first_part(&env, "qoe", "Qoe-Nudged").await?;
    let graph = || env.sim.request_counts().graph;
    let visit = || {
        env.server
            .wizard_get("/wizard/consented?admin_consent=True")
    };
    // One visit: one look, its reads counted (nothing else reads Graph now).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = graph();
    visit().await?;
    testkit::wait::until_true(
        "a look started by the visit",
        Duration::from_secs(20),
        async || Ok(graph() != before),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_look = graph() - before;
    // Forty visits over two seconds or more, past the gap of that look: one look at once, one
    // per two seconds the visits went on, and one more if a visit came in the last instant
    // (three when the visits take two seconds; counted from the time they took, since a busy
    // machine stretches them).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = graph();
    let started = std::time::Instant::now();
    for _ in 0..40 {
        visit().await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let looks = 2 + started.elapsed().as_secs() / 2;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads = graph() - before;
    ensure!(
        reads >= per_look && reads <= looks * per_look,
        "{reads} Graph reads for 40 visits, {per_look} a look, at most {looks} looks"
    );
    env.server.stop().await
}

/// The consent seen ends the wait, and the server stops between that and the revocation of the
/// wait's link (the test hook halts there, as a process stopping there would): the link is
/// still pending; at the next start the sweep revokes it, as `entra:admin-consent` for the
/// grants (what the onboarding's record says ended the wait), and the run goes on to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_a_stop_left_live_after_the_consent_is_revoked_at_the_next_start() -> Result<()> {
    let env = start().await?;
    let (id, _, h, link) = first_part(&env, "qoe", "Qoe-Stopped").await?;
    let mut heard = halt_at(&env, "hand_off:links_end");
    admin_consent(&env.sim, &h.admin_consent_url, users::GLOBAL_ADMIN, true).await?;
    let at = tokio::time::timeout(Duration::from_secs(60), heard.recv())
        .await
        .context("the consent was not seen")?;
    ensure!(at.as_deref() == Some(id.as_str()), "{at:?}");
    let inv = invitation(&env, &link.invitation_id).await?;
    ensure!(inv.state() == pb::InvitationState::Pending, "{inv:?}");

    let env = env.restart().await?;
    until_revoked(&env, &link.invitation_id, Duration::from_secs(20)).await?;
    let (consent, why) = ("entra:admin-consent", "admin-consent page");
    // Waits for the outcome entry (the intent is appended before the record changes).
    revoked_by(&env, &link.invitation_id, &id, consent, why).await?;
    // Both entries (intent and outcome): by the consent, about the onboarding, for the grants.
    let entries = env.server.entries()?;
    let revoked: Vec<&Value> = (entries.iter())
        .filter(|e| {
            e["action"] == "invitation.revoke" && e["target"]["id"] == link.invitation_id.as_str()
        })
        .collect();
    ensure!(
        revoked.len() == 2
            && revoked.iter().all(|e| {
                e["actor"] == consent
                    && e["onboarding_id"] == id.as_str()
                    && e["reason"].as_str().is_some_and(|r| r.contains(why))
            }),
        "{revoked:?}"
    );
    wait_for(
        env.server.channel().await?,
        &id,
        Duration::from_secs(60),
        |i| i.state() == pb::OnboardingState::Completed,
    )
    .await?;
    check_schema(&env.server.entries()?)?;
    env.server.stop().await
}
