//! The hand-off to a privileged admin (issue 13 item 1), over gRPC against the emulator: an
//! Application Administrator makes what they may and the onboarding waits; a Global
//! Administrator finishes it through the single-use link; both are the actors of what each did;
//! the wait survives a restart and, when nobody acts, expires into an audited undo. A link lives
//! no longer than its wait: a newer link, a cancel or the expiry revokes it, also once its
//! holder signed in, and cuts that holder off.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use onboard_proto::v1 as pb;
use serde_json::Value;
use testkit::hand_off::{
    cancel_with, get_with, invitation, issue_link, revoked_by, says_wait_ended, until_revoked,
};
use testkit::server::OPERATOR;
use testkit::server_helpers::{Refusal, Refused, plan};
use testkit::sim::TOKEN_APP;
use testkit::sim_server::SimServer;
use testkit::snapshot::{apps_named, no_duplicates, provisioned_once, sps_where};
use testkit::wizard::{completed, get};
use tonic::{Code, Status};

/// The Application Administrator's part: sign in, see the hand-off in the plan, provision what
/// they may. The onboarding id and the events.
async fn first_part(
    env: &SimServer,
    token: &str,
    name: &str,
) -> Result<(String, Vec<pb::ProvisionEvent>)> {
    let signed = env.signed_in(token, "appadmin").await?;
    let id = signed.onboarding_id;
    let plan = plan(&env.server, token, &id, name).await??;
    ensure!(plan.blocked && plan.hand_off, "{plan:?}");
    ensure!(
        plan.hand_off_roles
            == ["Global Administrator", "Privileged Role Administrator"].map(String::from),
        "{plan:?}"
    );
    let events = env
        .provision(token, &id, name)
        .await?
        .map_err(|s| anyhow::anyhow!("provision refused: {s:?}"))?;
    Ok((id, events))
}

fn waiting(events: &[pb::ProvisionEvent]) -> Result<pb::HandOff> {
    let h = testkit::wizard::awaiting_admin(events)?;
    // Who made the changes so far: the first admin's audit actor (the invitation).
    ensure!(h.started_by.starts_with("invitation:"), "{h:?}");
    Ok(h)
}

/// The status a Global Administrator's SignIn with `token` (`what`, for the message) is
/// refused with.
async fn refused_sign_in(env: &SimServer, token: &str, what: &str) -> Result<tonic::Status> {
    let ga = env.upn("globaladmin");
    match env
        .sign_in(
            token,
            &ga,
            testkit::wizard::Browser::SignsInAs("globaladmin"),
        )
        .await?
    {
        Err(s) => Ok(s),
        Ok(e) => bail!("{what} signed in: {e:?}"),
    }
}

/// Watch of `id` from its first event with the invitation `token`.
fn watch_request(token: &str, id: &str) -> pb::WatchRequest {
    pb::WatchRequest {
        onboarding_id: id.into(),
        from_event: 0,
        invitation_token: token.into(),
    }
}

/// A Watch of `id` opened with `token`: its stream, read to the end in a task.
async fn watch_to_end(
    env: &SimServer,
    token: &str,
    id: &str,
) -> Result<tokio::task::JoinHandle<Result<Vec<pb::ProvisionEvent>, Status>>> {
    let mut c = env.server.onboarding(None).await?;
    let mut stream = c.watch(watch_request(token, id)).await?.into_inner();
    Ok(tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = stream.message().await? {
            events.push(e);
        }
        Ok(events)
    }))
}

/// Entries of `action` about onboarding `id`: (phase, actor).
fn entries_of(env: &SimServer, action: &str, id: &str) -> Result<Vec<(String, String)>> {
    Ok(testkit::audit::phases_and_actors(
        &env.server.entries()?,
        action,
        id,
    ))
}

/// The actors of the succeeded entries of `action` about `id`.
fn actors_of(env: &SimServer, action: &str, id: &str) -> Result<Vec<String>> {
    Ok(testkit::audit::succeeded_by(
        &env.server.entries()?,
        action,
        id,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_administrator_starts_and_a_global_administrator_finishes_through_the_link()
-> Result<()> {
    let env = SimServer::start().await?;
    let (token, first_invitation) = env.invite(None).await?;
    let (id, events) = first_part(&env, &token, "Sbc-Hand").await?;

    // What the Application Administrator may do is done; the rest waits, and says so.
    let h = waiting(&events)?;
    ensure!(
        h.roles == ["Global Administrator", "Privileged Role Administrator"].map(String::from),
        "{h:?}"
    );
    ensure!(
        h.changes_left
            .iter()
            .any(|c| c == "directory_role_assignment.create Teams Administrator")
            && h.changes_left
                .iter()
                .any(|c| c.starts_with("app_role_assignment.create Microsoft Graph/")),
        "{h:?}"
    );
    let info = get(env.server.channel().await?, &id).await?;
    ensure!(
        info.state() == pb::OnboardingState::AwaitingAdmin,
        "{info:?}"
    );
    let held = info.hand_off.context("no hand-off in GetOnboarding")?;
    ensure!(held.changes_left == h.changes_left);
    ensure!(held.started_by == format!("invitation:{first_invitation}"));
    // One app, secret and service principal; only the Teams API grant (which an application
    // administrator may make); no Graph grant, no role.
    let snap = env.sim.snapshot();
    let (app_id, sp_id) = provisioned_once(&snap, "Sbc-Hand", 1, 0)?;
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).len() == 1,
        "the temporary app went before the privileged admin could use it"
    );

    // The link: the starter (or an operator) issues it, a new one replaces the old, and a
    // link cannot issue another.
    let old = issue_link(&env, &token, &id).await?;
    let link = issue_link(&env, &token, &id).await?;
    ensure!(
        link.activation_url
            .ends_with(&format!("#token={}", link.invitation_token))
    );
    ensure!(link.roles == h.roles);
    // A hand-off link cannot issue another.
    issue_link(&env, &link.invitation_token, &id)
        .refused(Code::PermissionDenied, &[])
        .await?;
    let s = refused_sign_in(&env, &old.invitation_token, "a replaced link").await?;
    ensure!(
        s.code() == Code::FailedPrecondition && s.message().contains("revoked"),
        "{s:?}"
    );

    // An Application Administrator cannot finish: refused with the rights missing, the link
    // left unspent for someone who can.
    let refused = env
        .sign_in(
            &link.invitation_token,
            &env.upn("appadmin"),
            testkit::wizard::Browser::SignsInAs("appadmin"),
        )
        .await?
        .refused(
            Code::FailedPrecondition,
            &["lacks rights", "Global Administrator"],
        )?;
    let violations = tonic_types::StatusExt::get_details_precondition_failure(&refused)
        .map(|p| p.violations)
        .unwrap_or_default();
    ensure!(
        !violations.is_empty() && violations.iter().all(|v| v.r#type == "MISSING_RIGHTS"),
        "{violations:?}"
    );
    // (The Global Administrator's sign-in below would be refused had it been spent.)

    // The Global Administrator joins the same onboarding, sees only what is left, finishes.
    let signed = env.signed_in(&link.invitation_token, "globaladmin").await?;
    ensure!(
        signed.onboarding_id == id && signed.roles_missing.is_empty(),
        "{signed:?}"
    );
    let plan = plan(&env.server, &link.invitation_token, &id, "Sbc-Hand").await??;
    ensure!(!plan.blocked && !plan.hand_off, "{plan:?}");
    for (done, words) in [
        (
            "client_secret.add",
            "Sbc-Hand already has its client secret",
        ),
        (
            "service_principal.create",
            "Its enterprise application (Sbc-Hand) exists",
        ),
    ] {
        ensure!(
            plan.changes
                .iter()
                .any(|c| c.action == done && c.description == words),
            "{done} is planned again: {plan:?}"
        );
    }
    let finish = env
        .provision(&link.invitation_token, &id, "Sbc-Hand")
        .await?
        .map_err(|s| anyhow::anyhow!("the privileged admin was refused: {s:?}"))?;
    let done = completed(&finish)?;
    ensure!(
        done.secret.is_empty(),
        "a customer's stream carried the secret"
    );

    let snap = env.sim.snapshot();
    ensure!(
        no_duplicates(&snap, "Sbc-Hand")? == (app_id, sp_id),
        "a second app or service principal was made"
    );
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).is_empty(),
        "the temporary app is still there"
    );
    ensure!(apps_named(&snap, "Sbc-Hand").len() == 1);
    let secret = testkit::wizard::claim(env.server.channel().await?, &id).await?;
    ensure!(env.authenticates(&secret.client_id, &secret.secret).await?);

    // Each admin is the actor of what they did.
    let first = format!("invitation:{first_invitation}");
    let second = format!("invitation:{}", link.invitation_id);
    ensure!(actors_of(&env, "app_registration.create", &id)? == std::slice::from_ref(&first));
    ensure!(
        actors_of(&env, "directory_role_assignment.create", &id)? == std::slice::from_ref(&second)
    );
    ensure!(actors_of(&env, "temporary_app.delete", &id)? == std::slice::from_ref(&second));
    ensure!(
        entries_of(&env, "onboarding.hand_off", &id)?
            == [
                ("intent".to_owned(), first.clone()),
                ("succeeded".to_owned(), second.clone())
            ],
        "{:?}",
        entries_of(&env, "onboarding.hand_off", &id)?
    );
    let links: Vec<Value> = env
        .server
        .entries()?
        .into_iter()
        .filter(|e| {
            e["action"] == "invitation.create"
                && e["phase"] == "succeeded"
                && e["invitation"]["hand_off_of"] == id.as_str()
        })
        .collect();
    ensure!(links.len() == 2 && links.iter().all(|e| e["actor"] == first.as_str()));
    testkit::audit::check_schema(&env.server.entries()?)?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_survives_a_restart_and_nobody_acting_undoes_it_when_it_expires() -> Result<()> {
    let env = SimServer::start_with(|b| Ok(b.limit("hand_off_wait_secs", 4))).await?;
    let (token, _) = env.invite(None).await?;
    let (id, events) = first_part(&env, &token, "Sbc-Expire").await?;
    waiting(&events)?;
    let link = issue_link(&env, &token, &id).await?;
    ensure!(!apps_named(&env.sim.snapshot(), "Sbc-Expire").is_empty());

    // A restart while waiting: still waiting, the link still names it.
    let env = env.restart().await?;
    let info = get(env.server.channel().await?, &id).await?;
    ensure!(
        info.state() == pb::OnboardingState::AwaitingAdmin
            || info.state() == pb::OnboardingState::Cancelled,
        "{info:?}"
    );

    // Nobody acts: undone when the wait expires, everything it made removed.
    testkit::wizard::wait_for(
        env.server.channel().await?,
        &id,
        Duration::from_secs(30),
        |i| i.state() == pb::OnboardingState::Cancelled,
    )
    .await?;
    let snap = env.sim.snapshot();
    ensure!(
        apps_named(&snap, "Sbc-Expire").is_empty(),
        "the app is still there"
    );
    let s = refused_sign_in(&env, &link.invitation_token, "an expired hand-off link").await?;
    ensure!(s.code() == Code::FailedPrecondition, "{s:?}");
    let expiry = "system:hand-off-expired".to_owned();
    let hand_off = entries_of(&env, "onboarding.hand_off", &id)?;
    ensure!(
        hand_off.last() == Some(&("failed".to_owned(), expiry.clone())),
        "{hand_off:?}"
    );
    ensure!(actors_of(&env, "onboarding.cancel", &id)? == std::slice::from_ref(&expiry));
    ensure!(actors_of(&env, "app_registration.delete", &id)? == [expiry]);
    testkit::audit::check_schema(&env.server.entries()?)?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_starter_can_cancel_a_wait_and_without_hand_offs_provision_is_refused() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, first_invitation) = env.invite(None).await?;
    let (id, events) = first_part(&env, &token, "Sbc-Cancel").await?;
    waiting(&events)?;
    let link = issue_link(&env, &token, &id).await?;
    let info = cancel_with(&env, &token, &id, "changed my mind").await?;
    ensure!(info.state() == pb::OnboardingState::Cancelled, "{info:?}");
    ensure!(apps_named(&env.sim.snapshot(), "Sbc-Cancel").is_empty());
    let hand_off = entries_of(&env, "onboarding.hand_off", &id)?;
    ensure!(
        hand_off.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>() == ["intent", "failed"],
        "{hand_off:?}"
    );
    // The link ended with the wait: revoked by the canceller, its sign-in refused as revoked.
    let starter = format!("invitation:{first_invitation}");
    revoked_by(&env, &link.invitation_id, &id, &starter, "cancelled").await?;
    // Its holder's page says nothing is left to do, not "ask for the current link".
    ensure!(says_wait_ended(&env, &link.invitation_token).await?);
    let s = refused_sign_in(&env, &link.invitation_token, "a cancelled wait's link").await?;
    ensure!(
        s.code() == Code::FailedPrecondition && s.message().contains("revoked"),
        "{s:?}"
    );
    // No link for a cancelled onboarding, neither for its customer nor for an operator.
    let e = issue_link(&env, &token, &id).refusal().await?;
    ensure!(
        e.code() == Code::PermissionDenied || e.code() == Code::FailedPrecondition,
        "{e:?}"
    );
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let r = pb::IssueHandOffLinkRequest {
        onboarding_id: id.clone(),
        invitation_token: String::new(),
    };
    op.issue_hand_off_link(r)
        .refused(Code::FailedPrecondition, &[])
        .await?;
    testkit::audit::check_schema(&env.server.entries()?)?;
    env.server.stop().await?;

    // `hand_off_wait_secs = 0`: no hand-off, refused before any change as before.
    let env = SimServer::start_with(|b| Ok(b.limit("hand_off_wait_secs", 0))).await?;
    let (token, id) = env.invited_and_signed_in("appadmin").await?;
    env.provision(&token, &id, "Sbc-Never")
        .await?
        .refused(Code::FailedPrecondition, &["Privileged Role Administrator"])?;
    ensure!(apps_named(&env.sim.snapshot(), "Sbc-Never").is_empty());
    env.stop().await
}

/// IssueHandOffLink replaces the link before it also once its holder signed in (the proto: "the
/// earlier one stops working"): that holder's open Watch ends, and Plan, Provision, Watch and
/// GetOnboarding are PERMISSION_DENIED, as for any revoked invitation; the new link's holder
/// finishes, and that link, used to finish, stays USED for its holder's Get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_link_cuts_off_the_holder_of_the_one_before_it_who_signed_in() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, first_invitation) = env.invite(None).await?;
    let (id, events) = first_part(&env, &token, "Sbc-Relink").await?;
    waiting(&events)?;
    let old = issue_link(&env, &token, &id).await?;
    env.signed_in(&old.invitation_token, "globaladmin").await?;
    let watch = watch_to_end(&env, &old.invitation_token, &id).await?;

    let link = issue_link(&env, &token, &id).await?;
    let ended = tokio::time::timeout(Duration::from_secs(20), watch)
        .await
        .context("the replaced link's Watch goes on")??;
    ended.refused(Code::PermissionDenied, &["revoked"])?;
    let starter = format!("invitation:{first_invitation}");
    revoked_by(&env, &old.invitation_id, &id, &starter, "replaced").await?;
    // The onboarding still waits: its holder's page sends them to the colleague for the current
    // link (once the new link's holder finished, it says nothing is left to do; below).
    ensure!(!says_wait_ended(&env, &old.invitation_token).await?);
    let old_token = old.invitation_token.as_str();
    plan(&env.server, old_token, &id, "Sbc-Relink")
        .await?
        .refused(Code::PermissionDenied, &["revoked"])?;
    env.provision(old_token, &id, "Sbc-Relink")
        .await?
        .refused(Code::PermissionDenied, &["revoked"])?;
    let mut c = env.server.onboarding(None).await?;
    c.watch(watch_request(old_token, &id))
        .refused(Code::PermissionDenied, &["revoked"])
        .await?;
    get_with(&env, old_token, &id)
        .await?
        .refused(Code::PermissionDenied, &["revoked"])?;

    // The new link's holder finishes; the link that did stays USED, and sees the end.
    env.signed_in(&link.invitation_token, "globaladmin").await?;
    let finish = env
        .provision(&link.invitation_token, &id, "Sbc-Relink")
        .await?
        .map_err(|s| anyhow::anyhow!("the new link's holder was refused: {s:?}"))?;
    completed(&finish)?;
    // The replaced link's page, judged by the onboarding as it is now: nothing left to do.
    ensure!(says_wait_ended(&env, old_token).await?);
    let used = invitation(&env, &link.invitation_id).await?;
    ensure!(used.state() == pb::InvitationState::Used, "{used:?}");
    get_with(&env, &link.invitation_token, &id)
        .await?
        .map_err(|s| anyhow::anyhow!("the finishing link may not Get: {s:?}"))?;
    ensure!(
        actors_of(&env, "temporary_app.delete", &id)?
            == [format!("invitation:{}", link.invitation_id)]
    );
    testkit::audit::check_schema(&env.server.entries()?)?;
    env.stop().await
}

/// A link whose holder signed in and never provisioned ends with the wait's expiry: revoked as
/// `system:hand-off-expired`, its holder refused (not let in for the grace after the end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_link_is_revoked_when_the_wait_expires() -> Result<()> {
    let env = SimServer::start_with(|b| Ok(b.limit("hand_off_wait_secs", 12))).await?;
    let (token, _) = env.invite(None).await?;
    let (id, events) = first_part(&env, &token, "Sbc-Lapse").await?;
    waiting(&events)?;
    let link = issue_link(&env, &token, &id).await?;
    env.signed_in(&link.invitation_token, "globaladmin").await?;

    let ch = env.server.channel().await?;
    testkit::wizard::wait_for(ch, &id, Duration::from_secs(60), |i| {
        i.state() == pb::OnboardingState::Cancelled
    })
    .await?;
    until_revoked(&env, &link.invitation_id, Duration::from_secs(20)).await?;
    let expiry = "system:hand-off-expired";
    revoked_by(&env, &link.invitation_id, &id, expiry, "in time").await?;
    get_with(&env, &link.invitation_token, &id)
        .await?
        .refused(Code::PermissionDenied, &["revoked"])?;
    let s = refused_sign_in(&env, &link.invitation_token, "an expired wait's link").await?;
    ensure!(
        s.code() == Code::PermissionDenied && s.message().contains("revoked"),
        "{s:?}"
    );
    testkit::audit::check_schema(&env.server.entries()?)?;
    env.stop().await
}
