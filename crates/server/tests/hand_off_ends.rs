//! How a hand-off link ends with its wait where two things race, or a stop falls between the
//! wait's end and the link's (over gRPC against the emulator): a new link asked for while the
//! holder's Provision starts the run, or just as the wait ends, is refused (or wins outright:
//! the holder's Provision then starts nothing), and never left for an onboarding that does not
//! wait; a wait whose end left its links live (the revocation skipped, as a process stopping
//! there would) has them revoked by the server's sweep within one tick of its expiry check, as
//! whoever the onboarding's record says ended the wait.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use onboard_proto::v1 as pb;
use testkit::audit::phases_and_actors;
use testkit::hand_off::{cancel_with, get_with, invitation, issue_link, revoked_by, until_revoked};
use testkit::hold::{halt_at, hold_at};
use testkit::server_helpers::Refused;
use testkit::sim::calm;
use testkit::sim_server::SimServer;
use testkit::wizard::{awaiting_admin, completed, provision_stream};
use tonic::{Code, Status};

/// How long the test waits for what it is not told of before failing.
const STALL: Duration = Duration::from_secs(60);

/// The Application Administrator's part: invited, signed in, provisioned what they may, the
/// rest waiting. The starter's token and invitation id, and the onboarding id.
async fn waiting(env: &SimServer, name: &str) -> Result<(String, String, String)> {
    let (token, invitation) = env.invite(None).await?;
    let id = env.signed_in(&token, "appadmin").await?.onboarding_id;
    let events = env
        .provision(&token, &id, name)
        .await?
        .map_err(|s| anyhow::anyhow!("provision refused: {s:?}"))?;
    awaiting_admin(&events)?;
    Ok((token, invitation, id))
}

/// The pending hand-off links of onboarding `id`, from the server's own store.
fn pending_links(env: &SimServer, id: &str) -> Result<Vec<String>> {
    Ok((env
        .server
        .app
        .invitations()
        .live_hand_off_links(id)?
        .into_iter())
    .filter(|r| r.used_at_ms.is_none())
    .map(|r| r.id)
    .collect())
}

/// Checks that no pending hand-off link is left for onboarding `id` unless it waits.
async fn no_pending_link_unless_waiting(env: &SimServer, id: &str) -> Result<()> {
    let info = testkit::wizard::get(env.server.channel().await?, id).await?;
    let pending = pending_links(env, id)?;
    ensure!(
        info.state() == pb::OnboardingState::AwaitingAdmin || pending.is_empty(),
        "pending hand-off links {pending:?} left for a {:?} onboarding",
        info.state()
    );
    Ok(())
}

/// Provision of `id` (app `name`) with `token`, read to the end of its stream: every event, or
/// the status it was refused or ended with.
async fn provision_to_end(
    env: &SimServer,
    token: &str,
    id: &str,
    name: &str,
) -> Result<tokio::task::JoinHandle<Result<Vec<pb::ProvisionEvent>, Status>>> {
    let ch = env.server.channel().await?;
    let (token, id, name) = (token.to_owned(), id.to_owned(), name.to_owned());
    Ok(tokio::spawn(async move {
        let mut stream = provision_stream(ch, &token, &id, &name).await?;
        let mut events = Vec::new();
        while let Some(e) = tokio::time::timeout(STALL, stream.message())
            .await
            .map_err(|_| Status::deadline_exceeded("the Provision stream stalled"))??
        {
            events.push(e);
        }
        Ok(events)
    }))
}

/// The holder of a link who signed in starts Provision, which plans for seconds against a slow
/// Graph once it claimed the start, and the starter asks for a new link meanwhile: either the
/// new link is refused (FAILED_PRECONDITION) and the holder's Provision goes on with the run, its
/// link staying USED; or the old link is revoked first and the holder's Provision is refused
/// (PERMISSION_DENIED) before it starts anything. Never a run started by a revoked link
/// (`onboarding.start` by it), nor a pending link left for an onboarding that does not wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_link_while_the_holders_provision_starts_is_refused_or_cuts_it_off_first()
-> Result<()> {
    let env = SimServer::start().await?;
    let (token, _, id) = waiting(&env, "Sbc-Race").await?;
    let link = issue_link(&env, &token, &id).await?;
    env.signed_in(&link.invitation_token, "globaladmin").await?;
    let holder = format!("invitation:{}", link.invitation_id);

    // Every Graph answer takes 2 s: the holder's Provision plans for seconds after its intent.
    env.sim.set_faults(entra_sim::Faults {
        latency_ms: 2000,
        ..calm()
    });
    let provision = provision_to_end(&env, &link.invitation_token, &id, "Sbc-Race").await?;
    testkit::wait::until_true("the holder's Provision under way", STALL, async || {
        let entries = env.server.entries()?;
        Ok(phases_and_actors(&entries, "onboarding.provision", &id)
            .iter()
            .any(|(phase, actor)| phase == "intent" && *actor == holder))
    })
    .await?;
    let reissued = issue_link(&env, &token, &id).await;
    env.sim.set_faults(calm());
    let provisioned = provision.await?;

    let entries = env.server.entries()?;
    let started_by_holder = phases_and_actors(&entries, "onboarding.start", &id)
        .iter()
        .any(|(_, actor)| *actor == holder);
    match (&reissued, &provisioned) {
        (Err(refused), Ok(events)) => {
            ensure!(refused.code() == Code::FailedPrecondition, "{refused:?}");
            completed(events)?;
            let used = invitation(&env, &link.invitation_id).await?;
            ensure!(used.state() == pb::InvitationState::Used, "{used:?}");
        }
        (Ok(_), Err(refused)) => {
            ensure!(refused.code() == Code::PermissionDenied, "{refused:?}");
            ensure!(!started_by_holder, "the revoked link started the run");
        }
        (reissued, provisioned) => {
            bail!(
                "neither outcome: the new link {reissued:?}, the holder's Provision {provisioned:?}"
            )
        }
    }
    no_pending_link_unless_waiting(&env, &id).await?;
    testkit::audit::check_schema(&entries)?;
    env.stop().await
}

/// The starter asks for a new link just as the wait ends: the call is held after its first look
/// at the wait (still waiting) while an operator cancels the onboarding. The call is refused
/// (FAILED_PRECONDITION), and no link is left for the cancelled onboarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_link_asked_for_as_the_wait_ends_is_refused() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, _, id) = waiting(&env, "Sbc-Late").await?;
    let (mut entered, release) = hold_at(&env, "hand_off_link:revoking", STALL);
    let ch = env.server.channel().await?;
    let (t, i) = (token.clone(), id.clone());
    let reissue = tokio::spawn(async move { testkit::wizard::hand_off_link(ch, &t, &i).await });
    let at = tokio::time::timeout(STALL, entered.recv())
        .await
        .context("IssueHandOffLink did not get to the lock")?;
    ensure!(at.as_deref() == Some(id.as_str()), "{at:?}");
    let info = env.cancel(&id, "withdrawn").await?;
    ensure!(info.state() == pb::OnboardingState::Cancelled, "{info:?}");
    release.send(())?;
    reissue.await?.refused(Code::FailedPrecondition, &[])?;
    no_pending_link_unless_waiting(&env, &id).await?;
    ensure!(pending_links(&env, &id)?.is_empty());
    env.stop().await
}

/// The starter cancels a wait whose link's holder signed in, and the revocation after the
/// wait's end is skipped (the test hook halts there, as a process stopping there would): the
/// holder may still look at the cancelled onboarding, until the sweep of the expiry check's
/// next tick (every 15 s here) revokes the link, as the canceller for "cancelled" (what the
/// onboarding's record says ended the wait); the holder is refused from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_a_cancel_left_live_is_revoked_by_the_next_sweep_as_the_canceller() -> Result<()> {
    // A 60 s wait (not over before the cancel): the expiry check ticks every 15 s.
    let env = SimServer::start_with(|b| Ok(b.limit("hand_off_wait_secs", 60))).await?;
    let (token, first, id) = waiting(&env, "Sbc-Sweep").await?;
    let link = issue_link(&env, &token, &id).await?;
    env.signed_in(&link.invitation_token, "globaladmin").await?;

    let mut halted = halt_at(&env, "hand_off:links_end");
    let cancelled = cancel_with(&env, &token, &id, "changed my mind").await?;
    ensure!(
        cancelled.state() == pb::OnboardingState::Cancelled,
        "{cancelled:?}"
    );
    ensure!(halted.try_recv().ok().as_deref() == Some(id.as_str()));
    let live = invitation(&env, &link.invitation_id).await?;
    ensure!(live.state() == pb::InvitationState::Used, "{live:?}");
    get_with(&env, &link.invitation_token, &id)
        .await?
        .map_err(|s| anyhow::anyhow!("the link was cut off before the sweep: {s:?}"))?;

    until_revoked(&env, &link.invitation_id, Duration::from_secs(25)).await?;
    let starter = format!("invitation:{first}");
    revoked_by(&env, &link.invitation_id, &id, &starter, "cancelled").await?;
    get_with(&env, &link.invitation_token, &id)
        .await?
        .refused(Code::PermissionDenied, &["revoked"])?;
    env.stop().await
}

/// One unreadable invitation record (another customer's, damaged in the store) does not keep
/// a wait's end from revoking its link at once: the record is passed over when the links are
/// looked for, not the end of the look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_invitation_does_not_keep_a_link_from_ending_with_its_wait() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, first, id) = waiting(&env, "Sbc-Damaged").await?;
    let link = issue_link(&env, &token, &id).await?;
    let (_, other) = env.invite(None).await?;
    env.server
        .app
        .state_db()
        .open_tree(invitations::store::INVITATIONS_TREE)?
        .insert(other.as_bytes(), &b"not a record"[..])?;
    let cancelled = cancel_with(&env, &token, &id, "").await?;
    ensure!(
        cancelled.state() == pb::OnboardingState::Cancelled,
        "{cancelled:?}"
    );
    let starter = format!("invitation:{first}");
    revoked_by(&env, &link.invitation_id, &id, &starter, "cancelled").await?;
    env.stop().await
}
