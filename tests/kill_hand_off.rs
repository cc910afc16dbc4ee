//! `onboard serve` is SIGKILLed while an onboarding waits for a privileged admin (issue 13 item
//! 1): after the Application Administrator's part, and again after the hand-off link was
//! issued. The wait, the link and the first admin's changes survive; the Global Administrator
//! finishes through the link with no duplicate object, and the log exports and verifies.

use anyhow::{Context, Result, bail, ensure};
use onboard_proto::v1 as pb;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use onboard_proto::v1::provision_event::Event as PE;
use testkit::onboard_binary;
use testkit::server::with_token;
use testkit::sim::users::{APP_ADMIN, GLOBAL_ADMIN};
use testkit::sim::{TOKEN_APP, calm};
use testkit::snapshot::{no_duplicates, sps_where};
use testkit::wizard::{completed, drain, get, invite, provision_stream, signed_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_waiting_for_a_privileged_admin_then_the_link_finishes() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let onboard = onboard_binary!();
    let (files, server) = onboard.start(&sim).await?;
    let ch = server.channel().await?;
    let (token, _) = invite(ch.clone(), "dr-kill-hand-off", "direct-routing", None).await?;
    let id = signed_in(ch.clone(), &sim, &token, APP_ADMIN)
        .await?
        .onboarding_id;
    let events = drain(provision_stream(ch, &token, &id, "Kill-Hand").await?).await?;
    match events.last().and_then(|e| e.event.clone()) {
        Some(PE::AwaitingAdmin(_)) => {}
        other => bail!("not waiting for an admin: {other:?}"),
    }

    server.kill9()?;
    let server = onboard.serve(&files).await?;
    let ch = server.channel().await?;
    let info = get(ch.clone(), &id).await?;
    ensure!(
        info.state() == pb::OnboardingState::AwaitingAdmin && info.hand_off.is_some(),
        "{info:?}"
    );
    let link = OnboardingClient::new(with_token(ch, None))
        .issue_hand_off_link(pb::IssueHandOffLinkRequest {
            onboarding_id: id.clone(),
            invitation_token: token.clone(),
        })
        .await?
        .into_inner();

    server.kill9()?;
    let server = onboard.serve(&files).await?;
    let ch = server.channel().await?;
    let signed = signed_in(ch.clone(), &sim, &link.invitation_token, GLOBAL_ADMIN).await?;
    ensure!(signed.onboarding_id == id, "{signed:?}");
    let finish = drain(
        provision_stream(ch, &link.invitation_token, &id, "Kill-Hand")
            .await
            .context("the privileged admin's Provision")?,
    )
    .await?;
    completed(&finish)?;
    let snap = sim.snapshot();
    no_duplicates(&snap, "Kill-Hand")?;
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).is_empty(),
        "the temporary app is still there"
    );
    server.terminate()?;
    onboard.export_and_verify(&files)?;
    Ok(())
}
