//! `onboard serve` is SIGKILLed while an onboarding waits for a privileged admin (issue 13 item
//! 1): after the Application Administrator's part, and again after the hand-off link was
//! issued. The wait, the link and the first admin's changes survive; the Global Administrator
//! finishes through the link with no duplicate object, and the log exports and verifies. A kill
//! while the Global Administrator's call starts the run does not pass their retry off as a
//! reconnect to a run that never started.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::{Faults, Sim};
use onboard_proto::v1 as pb;
use onboard_proto::v1::onboarding_client::OnboardingClient;
use onboard_proto::v1::provision_event::Event as PE;
use testkit::onboard_binary;
use testkit::server::with_token;
use testkit::sim::users::{APP_ADMIN, GLOBAL_ADMIN};
use testkit::sim::{TOKEN_APP, calm};
use testkit::snapshot::{no_duplicates, sps_where};
use testkit::wizard::{completed, drain, get, invite, provision_stream, signed_in};
use tonic::Code;
use tonic::transport::Channel;

/// How long the test waits for the killed call to reach Graph.
const STALL: Duration = Duration::from_secs(60);

/// The Application Administrator's part: an invitation, their sign-in, and the Provision that
/// makes what they may and waits for a privileged admin. The invitation token and onboarding id.
async fn waiting_for_a_privileged_admin(
    ch: &Channel,
    sim: &Sim,
    service: &str,
    name: &str,
) -> Result<(String, String)> {
    let (token, _) = invite(ch.clone(), service, "direct-routing", None).await?;
    let id = signed_in(ch.clone(), sim, &token, APP_ADMIN)
        .await?
        .onboarding_id;
    let events = drain(provision_stream(ch.clone(), &token, &id, name).await?).await?;
    match events.last().and_then(|e| e.event.clone()) {
        Some(PE::AwaitingAdmin(_)) => Ok((token, id)),
        other => bail!("not waiting for an admin: {other:?}"),
    }
}

/// A hand-off link for `id`, issued by the invitation `token`'s holder.
async fn hand_off_link(ch: Channel, token: &str, id: &str) -> Result<pb::HandOffLink> {
    Ok(OnboardingClient::new(with_token(ch, None))
        .issue_hand_off_link(pb::IssueHandOffLinkRequest {
            onboarding_id: id.to_owned(),
            invitation_token: token.to_owned(),
        })
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_waiting_for_a_privileged_admin_then_the_link_finishes() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let onboard = onboard_binary!();
    let (files, server) = onboard.start(&sim).await?;
    let ch = server.channel().await?;
    let (token, id) =
        waiting_for_a_privileged_admin(&ch, &sim, "dr-kill-hand-off", "Kill-Hand").await?;

    server.kill9()?;
    let server = onboard.serve(&files).await?;
    let ch = server.channel().await?;
    let info = get(ch.clone(), &id).await?;
    ensure!(
        info.state() == pb::OnboardingState::AwaitingAdmin && info.hand_off.is_some(),
        "{info:?}"
    );
    let link = hand_off_link(ch, &token, &id).await?;

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

/// The privileged admin's Provision is killed while it plans against a slow Graph: after it
/// marked its idempotency key, before the run saved its record. After the restart their retry
/// with the same key is told to sign in (the sign-in went with the process); it used to be
/// taken for a reconnect to a run that had started, and only followed the wait it came to end.
/// Their link, spent at that lost sign-in, signs in again, and the retry finishes the
/// onboarding (it used to be refused as used: only a new link from the starter went on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_the_privileged_admin_starts_then_their_link_finishes() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let onboard = onboard_binary!();
    let (files, server) = onboard.start(&sim).await?;
    let ch = server.channel().await?;
    let (token, id) =
        waiting_for_a_privileged_admin(&ch, &sim, "dr-kill-start", "Kill-Start").await?;
    let link = hand_off_link(ch.clone(), &token, &id)
        .await?
        .invitation_token;
    signed_in(ch.clone(), &sim, &link, GLOBAL_ADMIN).await?;

    // Every Graph answer now takes 3 s: the call plans for a while. Its first Graph request
    // comes after the mark (`onboarding/start.rs`), so the kill lands between the two writes.
    let before = sim.request_counts().graph;
    sim.set_faults(Faults {
        latency_ms: 3_000,
        ..calm()
    });
    let (held_link, held_id) = (link.clone(), id.clone());
    let starting =
        tokio::spawn(async move { provision_stream(ch, &held_link, &held_id, "Kill-Start").await });
    testkit::wait::until_true("the privileged admin's run planning", STALL, async || {
        Ok(sim.request_counts().graph > before)
    })
    .await?;
    server.kill9()?;
    starting.abort();
    sim.set_faults(calm());

    let server = onboard.serve(&files).await?;
    let ch = server.channel().await?;
    let info = get(ch.clone(), &id).await?;
    ensure!(
        info.state() == pb::OnboardingState::AwaitingAdmin,
        "the killed start changed the record: {info:?}"
    );
    // Their retry with the same key is no reconnect to a run: none started. The sign-in it
    // needs went with the process, so it is told so (it used to get the wait's events).
    let refused = provision_stream(ch.clone(), &link, &id, "Kill-Start")
        .await
        .err()
        .context("the retry was answered as a reconnect to a run that never started")?;
    ensure!(
        refused.code() == Code::FailedPrecondition && refused.message().contains("sign in"),
        "{refused:?}"
    );
    // The link, spent at the sign-in the crash lost, signs in again while the wait lasts, and
    // the same key then starts the run.
    signed_in(ch.clone(), &sim, &link, GLOBAL_ADMIN)
        .await
        .context("the link's sign-in again")?;
    let retry = provision_stream(ch, &link, &id, "Kill-Start")
        .await
        .context("the privileged admin's Provision after signing in again")?;
    completed(&drain(retry).await?)?;
    no_duplicates(&sim.snapshot(), "Kill-Start")?;
    server.terminate()?;
    onboard.export_and_verify(&files)?;
    Ok(())
}
