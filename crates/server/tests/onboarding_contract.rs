//! What `onboarding.proto` (and the audit read) promise a client built only from them, checked
//! over the real gRPC server and the Entra emulator: one test per promise a review found broken.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use testkit::server::OPERATOR;
use testkit::server_helpers::{Refusal, Refused};
use testkit::sim::calm;
use testkit::sim_server::{SERVICE, SimServer};
use testkit::wizard::{Browser, completed, provision_stream};
use tonic::Code;

/// A completed onboarding of app `name` whose secret nobody has claimed yet: its id and
/// Completed event.
async fn unclaimed(env: &SimServer, name: &str) -> Result<(String, pb::Completed)> {
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    let done = completed(&env.provision(&token, &id, name).await??)?;
    Ok((id, done))
}

/// Adds a secret for the onboarded service: it becomes the service's current one.
async fn add_secret(env: &SimServer, client_id: &str) -> Result<pb::NewSecret> {
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let add = pb::AddServiceSecretRequest {
        registration: env.registration(client_id),
        service_id: SERVICE.into(),
        valid_for: None,
        seal_to: None,
    };
    Ok(c.add_service_secret(add).await?.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_secret_hands_over_the_onboardings_own_secret_never_one_handed_out_already()
-> Result<()> {
    let env = SimServer::start().await?;
    let mut ob = env.server.onboarding(Some(OPERATOR)).await?;
    let claim = |id: &str| pb::ClaimSecretRequest {
        onboarding_id: id.into(),
        seal_to: None,
    };
    // Signed in, no run yet: an onboarding that has not completed, not an unknown one.
    let (_, signed_in) = env.invited_and_signed_in("globaladmin").await?;
    ob.claim_secret(claim(&signed_in))
        .refused(Code::FailedPrecondition, &["has not completed"])
        .await?;
    // Another secret became the service's current one since (AddServiceSecret's caller holds
    // it): the claim is still of the onboarding's own, which still works. The id is taken in
    // upper case too (RFC 9562: case-insensitive on input).
    let (id, done) = unclaimed(&env, "Sbc-Own").await?;
    let added = add_secret(&env, &done.client_id).await?;
    let claimed = ob
        .claim_secret(claim(&id.to_ascii_uppercase()))
        .await?
        .into_inner();
    let added_key = added.info.context("info")?.key_id;
    ensure!(
        claimed.key_id == done.key_id && claimed.key_id != added_key,
        "claimed {} (the onboarding's is {}, the added one {added_key})",
        claimed.key_id,
        done.key_id
    );
    ensure!(env.authenticates(&done.client_id, &claimed.secret).await?);
    // Once the onboarding's secret is gone (revoked), there is nothing of its own to hand over.
    let (id, done) = unclaimed(&env, "Sbc-Gone").await?;
    add_secret(&env, &done.client_id).await?;
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    c.revoke_secret(pb::RevokeSecretRequest {
        registration: env.registration(&done.client_id),
        key_id: done.key_id.clone(),
    })
    .await?;
    ob.claim_secret(claim(&id))
        .refused(Code::FailedPrecondition, &["no longer on the registration"])
        .await?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_taken_in_either_case() -> Result<()> {
    let (env, done) = SimServer::with_onboarding("direct-routing", "Sbc-Case").await?;
    let mut ob = env.server.onboarding(Some(OPERATOR)).await?;
    let upper = done.onboarding_id.to_ascii_uppercase();
    ensure!(upper != done.onboarding_id, "no letter in {upper}");
    let info = ob
        .get_onboarding(pb::GetOnboardingRequest {
            onboarding_id: upper.clone(),
            invitation_token: String::new(),
        })
        .await?
        .into_inner();
    ensure!(info.onboarding_id == done.onboarding_id, "{info:?}");
    // With the invitation's token, the upper-case id is the one the token unlocks.
    let info = ob
        .get_onboarding(pb::GetOnboardingRequest {
            onboarding_id: upper,
            invitation_token: done.token.clone(),
        })
        .await?
        .into_inner();
    ensure!(info.onboarding_id == done.onboarding_id, "{info:?}");
    let mut inv = env.server.invitations(Some(OPERATOR)).await?;
    let got = inv
        .get_invitation(pb::GetInvitationRequest {
            key: Some(pb::get_invitation_request::Key::Id(
                done.invitation_id.to_ascii_uppercase(),
            )),
        })
        .await?
        .into_inner();
    ensure!(got.id == done.invitation_id, "{got:?}");
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_onboarding_is_said_to_run_and_an_idempotency_key_is_its_callers_own()
-> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    // Slow Graph: the run lasts while the calls below are made.
    env.sim.set_faults(Faults {
        latency_ms: 1000,
        ..calm()
    });
    let mut run = provision_stream(env.server.channel().await?, &token, &id, "Sbc-Key")
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;
    let first = run.message().await?.context("no first event")?;
    ensure!(first.event.is_some(), "{first:?}");
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let provision = |key: &str, token: &str, name: &str| pb::ProvisionRequest {
        onboarding_id: id.clone(),
        app_name: name.into(),
        idempotency_key: key.into(),
        invitation_token: token.into(),
        seal_to: None,
    };
    // The customer's key, sent by an operator: not the operator's repeat (it followed the run,
    // as the customer's own reconnect does).
    let key = format!("key-{id}");
    op.provision(provision(&key, "", "Sbc-Key"))
        .refused(Code::FailedPrecondition, &["already running"])
        .await?;
    // Running is what is wrong, not the name (it was INVALID_ARGUMENT on `app_name`).
    op.provision(provision("another", &token, ""))
        .refused(Code::FailedPrecondition, &["already running"])
        .await?;
    // The customer's own repeat still follows the run.
    let again = op
        .provision(provision(&key, &token, "Sbc-Key"))
        .await?
        .into_inner();
    drop(again);
    env.sim.set_faults(calm());
    let mut last = None;
    while let Some(e) = tokio::time::timeout(Duration::from_secs(120), run.message()).await?? {
        last = e.event;
    }
    ensure!(
        matches!(last, Some(pb::provision_event::Event::Completed(_))),
        "{last:?}"
    );
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_entries_asks_who_before_what() -> Result<()> {
    let env = SimServer::start().await?;
    let mut anonymous = env.server.audit(None).await?;
    anonymous
        .list_entries(pb::ListEntriesRequest {
            page_token: "x".repeat(4096),
            ..Default::default()
        })
        .refused(Code::Unauthenticated, &[])
        .await?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_whose_profile_is_no_longer_configured_is_failed_precondition() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, _) = env.invite(None).await?;
    // The server comes back with profiles that no longer have the invitation's.
    let dir = tempfile::tempdir()?;
    let profiles = dir.path().join("profiles.toml");
    std::fs::write(
        &profiles,
        "version = 2\n[[profile]]\nname = \"call-quality-only\"\ndescription = \"QOE\"\n\
         graph_permissions = [\"CallRecords.Read.All\"]\nteams_admin_api_permissions = []\n\
         directory_roles = []\n",
    )?;
    let env = env
        .restart_with(|c| c.platform.profiles_path = Some(profiles.clone()))
        .await?;
    // Not the server's fault (INTERNAL) but a state an operator mends, naming the profile.
    let ga = env.upn("globaladmin");
    env.sign_in(&token, &ga, Browser::SignsInAs("globaladmin"))
        .await?
        .refused(Code::FailedPrecondition, &["direct-routing"])?;
    env.stop().await
}
