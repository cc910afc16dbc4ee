//! GetOnboarding and ListOnboardings say why an onboarding stopped, over loopback gRPC against
//! the Entra emulator: a failed run is FAILED with its `error`; a failed undo leaves it
//! PROVISIONING with `cancelling` and the undo's `error` (the Failed event's promise), and a
//! second CancelOnboarding that succeeds clears both. A run's failure is not shown as the
//! undo's once a cancel begins. An undo goes on to its end when its caller stops waiting (the
//! guard layer runs each call on a task of its own), and its outcome is still audited.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use testkit::audit::phases;
use testkit::server::{OPERATOR, connect, with_token};
use testkit::sim::calm;
use testkit::sim_server::SimServer;

/// Every Graph call fails (503) until the retry budget is spent: an undo fails, after seconds
/// of retries.
fn graph_down() -> Faults {
    Faults {
        error_rate: 1.0,
        error_status: Some(503),
        ..calm()
    }
}

/// CancelOnboarding as the operator over a channel that gives up after one second, long
/// before an undo against [`graph_down`] ends: the caller goes away mid-undo.
async fn cancel_and_leave(env: &SimServer, id: &str) -> Result<()> {
    let ch = connect(&env.server.url(), Some(Duration::from_secs(1))).await?;
    let answer = OnboardingClient::new(with_token(ch, Some(OPERATOR)))
        .cancel_onboarding(pb::CancelOnboardingRequest {
            onboarding_id: id.into(),
            reason: "the customer left".into(),
            invitation_token: String::new(),
        })
        .await;
    match answer {
        Err(s) if s.message().contains("Timeout") => Ok(()),
        other => bail!("the cancel ended before its caller left: {other:?}"),
    }
}

/// GetOnboarding until the failed undo shows (its `error`), at most a minute and a half.
async fn undo_failed(env: &SimServer, id: &str) -> Result<pb::OnboardingInfo> {
    for _ in 0..180 {
        let info = get(env, id).await?;
        if !info.error.is_empty() {
            return Ok(info);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the undo's failure never showed: {:?}", get(env, id).await?)
}

/// GetOnboarding as the operator.
async fn get(env: &SimServer, id: &str) -> Result<pb::OnboardingInfo> {
    Ok(env
        .server
        .onboarding(Some(OPERATOR))
        .await?
        .get_onboarding(pb::GetOnboardingRequest {
            onboarding_id: id.into(),
            invitation_token: String::new(),
        })
        .await?
        .into_inner())
}

/// The same onboarding as ListOnboardings shows it.
async fn listed(env: &SimServer, id: &str) -> Result<pb::OnboardingInfo> {
    env.server
        .onboarding(Some(OPERATOR))
        .await?
        .list_onboardings(pb::ListOnboardingsRequest::default())
        .await?
        .into_inner()
        .onboardings
        .into_iter()
        .find(|o| o.onboarding_id == id)
        .context("not listed")
}

/// CancelOnboarding as the operator.
async fn cancel(env: &SimServer, id: &str) -> Result<pb::OnboardingInfo, tonic::Status> {
    let mut c = env
        .server
        .onboarding(Some(OPERATOR))
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    c.cancel_onboarding(pb::CancelOnboardingRequest {
        onboarding_id: id.into(),
        reason: "the customer left".into(),
        invitation_token: String::new(),
    })
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_undo_is_shown_as_cancelling_with_its_error_until_a_cancel_succeeds() -> Result<()>
{
    let (env, onboarding) = SimServer::with_onboarding("direct-routing", "Sbc-Undo-Shown").await?;
    let id = onboarding.onboarding_id;
    let done = get(&env, &id).await?;
    ensure!(
        done.state() == pb::OnboardingState::Completed && done.error.is_empty() && !done.cancelling,
        "{done:?}"
    );
    // The caller leaves after a second; the undo goes on, fails, and says so.
    env.sim.set_faults(graph_down());
    cancel_and_leave(&env, &id).await?;
    undo_failed(&env, &id).await?;
    for info in [get(&env, &id).await?, listed(&env, &id).await?] {
        ensure!(
            info.state() == pb::OnboardingState::Provisioning && info.cancelling,
            "{info:?}"
        );
        ensure!(info.error.contains("503"), "{info:?}");
    }
    // Its request is on the log with its outcome although nobody waited for it.
    let requests = phases(&env.server.entries()?, "onboarding.cancel_request", &id);
    ensure!(requests == ["intent", "failed"], "{requests:?}");

    env.sim.set_faults(calm());
    let info = cancel(&env, &id)
        .await
        .map_err(|s| anyhow::anyhow!("the second cancel: {s:?}"))?;
    ensure!(info.state() == pb::OnboardingState::Cancelled, "{info:?}");
    for info in [get(&env, &id).await?, listed(&env, &id).await?] {
        ensure!(
            info.state() == pb::OnboardingState::Cancelled
                && !info.cancelling
                && info.error.is_empty(),
            "{info:?}"
        );
    }
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_shows_its_error_and_a_failed_undo_of_it_shows_the_undos() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    // The tenant refuses passwords: the secret step fails for good.
    env.sim.set_faults(Faults {
        forbid_passwords: true,
        ..calm()
    });
    let _ = env.provision(&token, &id, "Sbc-Run-Fails").await?;
    let failed = get(&env, &id).await?;
    ensure!(
        failed.state() == pb::OnboardingState::Failed && !failed.cancelling,
        "{failed:?}"
    );
    ensure!(!failed.error.is_empty(), "{failed:?}");
    ensure!(listed(&env, &id).await?.error == failed.error);

    // The undo fails too: what is shown is the undo's failure, not the run's, and not the
    // run's while the undo runs.
    env.sim.set_faults(graph_down());
    cancel_and_leave(&env, &id).await?;
    let during = get(&env, &id).await?;
    ensure!(
        during.cancelling && during.error != failed.error,
        "{during:?}"
    );
    undo_failed(&env, &id).await?;
    let info = get(&env, &id).await?;
    ensure!(
        info.cancelling && info.error.contains("503") && info.error != failed.error,
        "{info:?}\nthe run's: {failed:?}"
    );
    env.sim.set_faults(calm());
    ensure!(cancel(&env, &id).await.is_ok());
    env.stop().await
}
