//! Admin sessions by design (issue 13 item 2), over gRPC against the emulator: the default
//! profile rotates itself, so a secret is added right after an onboarding with no sign-in;
//! the least-privilege profile needs one and says so; an idle day-two sign-in ends by itself;
//! a completed onboarding undone after its sign-in expired needs a day-two sign-in and says so.
//! (A session ending after the change it was made for: `credentials.rs`.)

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use testkit::server::OPERATOR;
use testkit::server_helpers::Refusal;
use testkit::sim::TOKEN_APP;
use testkit::sim_server::SimServer;
use testkit::snapshot::{apps_named, sps_where};
use tonic::Code;

/// Issue 13, admin sessions by design: with the default profile (self-rotating), a secret can
/// be added right after the onboarding, with no admin signed in; with the least-privilege
/// profile the same call needs a sign-in and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_added_right_after_an_onboarding_without_a_sign_in() -> Result<()> {
    let (env, onboarding) = SimServer::with_onboarding("direct-routing", "Sbc-Right-After").await?;
    let done = onboarding.done;
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let added = env.add_secret(&done.client_id, "dr-2").await?;
    ensure!(env.authenticates(&done.client_id, &added.secret).await?);
    ensure!(env.authenticates(&done.client_id, &done.secret).await?);
    let view = env
        .server
        .app
        .credentials()
        .find(&done.client_id)?
        .context("managed")?;
    ensure!(
        format!("{:?}", view.auth_mode) == "SelfRotation",
        "{view:?}"
    );

    let least = env
        .onboarded("direct-routing-least-privilege", "Sbc-Least")
        .await?
        .done;
    // A least-privilege registration cannot change its secrets without a sign-in.
    let add = pb::AddServiceSecretRequest {
        registration: env.registration(&least.client_id),
        service_id: "dr-3".into(),
        valid_for: None,
        seal_to: None,
    };
    c.add_service_secret(add)
        .refused(Code::FailedPrecondition, &["sign in"])
        .await?;
    Ok(())
}

/// The backstop: a day-two sign-in nobody used is ended after `admin_session_idle_secs`, its
/// temporary app removed and audited as the idle timeout's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_admin_session_ends_by_itself() -> Result<()> {
    let env =
        SimServer::start_with(|b| Ok(b.raw("credentials", "admin_session_idle_secs", 2i64.into())))
            .await?;
    env.onboarded("direct-routing", "Sbc-Idle").await?;
    env.day_two_sign_in().await?;
    ensure!(!sps_where(&env.sim.snapshot(), "display_name", TOKEN_APP).is_empty());
    // The app is gone from the tenant a moment before the outcome entry is written: wait for
    // both.
    let what = "the idle session ended: its app removed and that audited as the idle timeout's";
    testkit::wait::until(what, Duration::from_secs(30), async || {
        let gone = sps_where(&env.sim.snapshot(), "display_name", TOKEN_APP).is_empty();
        let by_idle = env.server.entries()?.into_iter().any(|e| {
            e["action"] == "temporary_app.delete"
                && e["phase"] == "succeeded"
                && e["actor"] == onboard_server::credentials::SESSION_IDLE_ACTOR
        });
        Ok(testkit::wait::settled(
            gone && by_idle,
            (),
            (("removed", gone), ("audited", by_idle)),
        ))
    })
    .await
}

/// A completed onboarding undone hours later: its own sign-in has expired and cannot be renewed
/// (the temporary app its refresh token was issued to is gone), so the cancel is refused with
/// what to do, and left cancelling; after a day-two sign-in the same cancel undoes it with that
/// session (the onboarding's record no longer holds a refresh token that could stand in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_undo_of_a_completed_onboarding_uses_a_day_two_sign_in() -> Result<()> {
    let (env, onboarding) = SimServer::with_onboarding("direct-routing", "Sbc-Undo").await?;
    let id = onboarding.onboarding_id;
    env.sim.expire_access_tokens().await;
    let cancel = pb::CancelOnboardingRequest {
        onboarding_id: id.clone(),
        reason: "the customer left".into(),
        ..Default::default()
    };
    let mut o = env.server.onboarding(Some(OPERATOR)).await?;
    o.cancel_onboarding(cancel.clone())
        .refused(
            Code::FailedPrecondition,
            &["needs an admin sign-in", "new invitation"],
        )
        .await?;
    ensure!(!apps_named(&env.sim.snapshot(), "Sbc-Undo").is_empty());

    env.day_two_sign_in().await?;
    let info = o.cancel_onboarding(cancel).await?.into_inner();
    ensure!(
        info.state == i32::from(pb::OnboardingState::Cancelled),
        "{info:?}"
    );
    ensure!(
        apps_named(&env.sim.snapshot(), "Sbc-Undo").is_empty(),
        "app left"
    );
    testkit::audit::check_schema(&env.server.entries()?)?;
    env.stop().await
}
