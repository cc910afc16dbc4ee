//! An invitation revoked while its SignIn stream is open, over loopback gRPC against the Entra
//! emulator: the stream ends at once with PERMISSION_DENIED ("has been revoked"), for a used
//! invitation signing in again as for a pending one signing in for the first time, and the
//! admin who then finishes the sign-in at Microsoft gets nothing: no session, no day-two admin
//! session, no `succeeded` sign-in on the audit log (onboarding.proto, invitations.proto). A
//! revocation while a sign-in writes its outcome waits for it, and is logged after it.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use onboard_proto::v1::sign_in_event::Event as SE;
use testkit::audit::phases;
use testkit::server_helpers::{Refused, plan};
use testkit::sim_server::SimServer;
use testkit::wizard::{EVENT_STALL as STALL, device_code};
use tonic::{Code, Status};

/// The rest of a SignIn stream: its events, and how it ended (Ok: cleanly).
async fn rest(
    stream: &mut tonic::Streaming<pb::SignInEvent>,
) -> Result<(Vec<SE>, Result<(), Status>)> {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(STALL, stream.message())
            .await
            .context("the sign-in stalled")?
        {
            Ok(Some(e)) => events.extend(e.event),
            Ok(None) => return Ok((events, Ok(()))),
            Err(status) => return Ok((events, Err(status))),
        }
    }
}

/// Revokes invitation `id` as the operator.
async fn revoke(env: &SimServer, id: &str) -> Result<()> {
    let revoked = env.revoke(id, "sent to the wrong customer").await?;
    ensure!(
        revoked.state() == pb::InvitationState::Revoked,
        "{revoked:?}"
    );
    Ok(())
}

/// The UPN of the tenant's day-two admin session, if one is stored.
fn day_two_upn(env: &SimServer) -> Result<Option<String>> {
    let session = env
        .server
        .app
        .credentials()
        .admin_session(&env.info.tenant_id)?;
    Ok(session.map(|s| s.upn.to_ascii_lowercase()))
}

/// Checks that a SignIn stream ended with PERMISSION_DENIED for the revocation, after ticks
/// only (no SignedIn).
#[track_caller]
fn ended_revoked(events: &[SE], end: Result<(), Status>) -> Result<()> {
    ensure!(
        events.iter().all(|e| matches!(e, SE::Pending(_))),
        "the sign-in went on after the revocation: {events:?}"
    );
    end.refused(Code::PermissionDenied, &["has been revoked"])?;
    Ok(())
}

/// A used invitation (an Application Administrator signed in, who lacks a role) signing in
/// again: the operator revokes it while the device code is out; the stream ends at once, and a
/// Global Administrator finishing the device login afterwards leaves the onboarding as it was.
/// After a used invitation's second sign-in was refused for its revocation: the day-two admin
/// session is still `app_admin`'s (the first sign-in), and the log says the second failed.
fn kept_nothing(env: &SimServer, app_admin: &str, id: &str) -> Result<()> {
    ensure!(
        day_two_upn(env)?.as_deref() == Some(app_admin),
        "the revoked sign-in replaced the day-two admin session"
    );
    let entries = env.server.entries()?;
    let seen = phases(&entries, "onboarding.sign_in", id);
    ensure!(
        seen == ["intent", "succeeded", "intent", "failed"],
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_used_invitation_ends_its_open_sign_in_and_keeps_nothing() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, invitation_id) = env.invite(None).await?;
    let first = env.signed_in(&token, "appadmin").await?;
    ensure!(!first.roles_missing.is_empty(), "{first:?}");
    let id = first.onboarding_id;
    let app_admin = env.upn("appadmin").to_ascii_lowercase();
    ensure!(day_two_upn(&env)?.as_deref() == Some(app_admin.as_str()));

    let ga = env.upn("globaladmin");
    let (mut stream, code) = device_code(env.server.channel().await?, &token, &ga).await?;
    ensure!(code.onboarding_id == id, "{code:?}");
    revoke(&env, &invitation_id).await?;
    // The admin signs in at Microsoft after the revocation: too late.
    env.sim.complete_device_login(&code.user_code, &ga).await?;
    let (events, end) = rest(&mut stream).await?;
    ended_revoked(&events, end)?;

    // Nothing of the Global Administrator's sign-in was kept.
    kept_nothing(&env, &app_admin, &id)?;
    // Its holder is cut off; the operator still sees the onboarding signed in as before.
    testkit::server_helpers::plan(&env.server, &token, &id, "Sbc-Revoked")
        .await?
        .refused(Code::PermissionDenied, &["has been revoked"])?;
    let info = testkit::wizard::get(env.server.channel().await?, &id).await?;
    ensure!(info.state() == pb::OnboardingState::SignedIn, "{info:?}");
    env.stop().await
}

/// A pending invitation revoked during its first SignIn: the device code stops at once (not
/// once the admin signed in), and the sign-in finished afterwards redeems nothing and starts
/// no onboarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_pending_invitation_ends_its_first_sign_in_at_once() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, invitation_id) = env.invite(None).await?;
    let ga = env.upn("globaladmin");
    let (mut stream, code) = device_code(env.server.channel().await?, &token, &ga).await?;
    revoke(&env, &invitation_id).await?;
    env.sim.complete_device_login(&code.user_code, &ga).await?;
    let (events, end) = rest(&mut stream).await?;
    ended_revoked(&events, end)?;

    let id = code.onboarding_id;
    ensure!(
        day_two_upn(&env)?.is_none(),
        "a day-two admin session was stored"
    );
    let entries = env.server.entries()?;
    ensure!(
        phases(&entries, "onboarding.sign_in", &id) == ["intent", "failed"],
        "{:?}",
        phases(&entries, "onboarding.sign_in", &id)
    );
    let key = pb::get_invitation_request::Key::Id(invitation_id);
    let inv = env.server.invitation(key).await?;
    ensure!(
        inv.state() == pb::InvitationState::Revoked && inv.used_at.is_none(),
        "{inv:?}"
    );
    // No onboarding was started (it is listed as signing in until the sign-in task ends).
    testkit::wait::until_true("the onboarding gone", STALL, async || {
        let got = testkit::wizard::get(env.server.channel().await?, &id).await;
        let code = got
            .err()
            .and_then(|e| e.downcast_ref::<Status>().map(Status::code));
        Ok(code == Some(Code::NotFound))
    })
    .await?;
    env.stop().await
}

/// A revocation the open stream did not hear of (made in the invitations store itself, with no
/// announcement): the sign-in finished afterwards is still refused before anything is kept,
/// because the sign-in looks at the invitation again before it stores the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_finished_after_an_unannounced_revocation_keeps_nothing() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, invitation_id) = env.invite(None).await?;
    let id = env.signed_in(&token, "appadmin").await?.onboarding_id;
    let app_admin = env.upn("appadmin").to_ascii_lowercase();

    let ga = env.upn("globaladmin");
    let (mut stream, code) = device_code(env.server.channel().await?, &token, &ga).await?;
    env.server
        .app
        .invitations()
        .revoke("test", &invitation_id, "revoked behind the stream's back")
        .await?;
    env.sim.complete_device_login(&code.user_code, &ga).await?;
    let (events, end) = rest(&mut stream).await?;
    ended_revoked(&events, end)?;
    kept_nothing(&env, &app_admin, &id)?;
    env.stop().await
}

/// The operator revokes the invitation while its holder's sign-in writes its outcome (held
/// just before it by the engine's test hook): the revocation waits for that outcome and the
/// session it keeps. The log shows the sign-in `succeeded` and then the revocation, never
/// `succeeded` then `failed` (the revocation used to fall between the sign-in's last look at
/// the invitation and its outcome); the holder is refused from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_during_a_sign_ins_outcome_is_logged_after_it() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, invitation_id) = env.invite(None).await?;
    let (mut held, release) = testkit::hold::hold_at(&env, "sign_in:outcome", STALL);
    let ga = env.upn("globaladmin");
    let (mut stream, code) = device_code(env.server.channel().await?, &token, &ga).await?;
    env.sim.complete_device_login(&code.user_code, &ga).await?;
    tokio::time::timeout(STALL, held.recv())
        .await
        .context("the sign-in did not reach its outcome")?;
    // The revocation is sent while the sign-in is held; the hold ends 2 s later (the old
    // server revoked at once, inside the sign-in's window).
    let release_later = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        release.send(())
    };
    let (revoked, released) = tokio::join!(revoke(&env, &invitation_id), release_later);
    revoked?;
    released?;
    let (events, end) = rest(&mut stream).await?;
    let signed_in = events.iter().find_map(|e| match e {
        SE::SignedIn(s) => Some(s.onboarding_id.clone()),
        _ => None,
    });
    let id = signed_in.context(format!("no SignedIn: {events:?} {end:?}"))?;
    let entries = env.server.entries()?;
    let seen = phases(&entries, "onboarding.sign_in", &id);
    ensure!(seen == ["intent", "succeeded"], "{seen:?}");
    let seq_of = |action: &str, phase: &str| {
        entries
            .iter()
            .position(|e| e["action"] == action && e["phase"] == phase)
            .with_context(|| format!("no {action} {phase}"))
    };
    ensure!(
        seq_of("onboarding.sign_in", "succeeded")? < seq_of("invitation.revoke", "intent")?,
        "the revocation is logged inside the sign-in"
    );
    // From the revocation on, the holder is refused.
    plan(&env.server, &token, &id, "Sbc-Late")
        .await?
        .refused(Code::PermissionDenied, &["has been revoked"])?;
    env.stop().await
}
