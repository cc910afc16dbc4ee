//! A Provision retried with the same idempotency key while the first call is still starting the
//! run (its client's deadline passed while the engine planned against Graph), over loopback gRPC
//! against the Entra emulator: the retry follows the run the first call starts, to its end,
//! instead of FAILED_PRECONDITION "already running"; another key, none, or another caller with
//! the same key is still refused as running (onboarding.proto, `ProvisionRequest`).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use testkit::audit::{phases, succeeded_by};
use testkit::hold::hold_first_at;
use testkit::server::OPERATOR;
use testkit::server_helpers::Refusal;
use testkit::sim::calm;
use testkit::sim_server::SimServer;
use testkit::snapshot::apps_named;
use testkit::wizard::{completed, drain};
use tonic::Code;

/// How long the test waits for what it is not told of before failing.
const STALL: Duration = Duration::from_secs(60);

/// The wizard's Provision of `id` (app `name`) with idempotency key `key` and invitation
/// `token` (empty: an operator's).
fn request(id: &str, name: &str, key: &str, token: &str) -> pb::ProvisionRequest {
    pb::ProvisionRequest {
        onboarding_id: id.into(),
        app_name: name.into(),
        idempotency_key: key.into(),
        invitation_token: token.into(),
        seal_to: None,
    }
}

/// Sends Provision `r` with the client deadline `within` in a task: the first call, whose
/// client gives up.
async fn with_deadline(
    env: &SimServer,
    r: pb::ProvisionRequest,
    within: Duration,
) -> Result<tokio::task::JoinHandle<Result<(), tonic::Status>>> {
    let mut c = env.server.onboarding(None).await?;
    let mut r = tonic::Request::new(r);
    r.set_timeout(within);
    Ok(tokio::spawn(async move { c.provision(r).await.map(drop) }))
}

/// Checks what must hold while the first call (with `key` and `token`) starts `id`'s run:
/// another key, none, and the operator with the same key are refused as running.
async fn others_refused(env: &SimServer, id: &str, name: &str, token: &str) -> Result<()> {
    let mut c = env.server.onboarding(None).await?;
    for key in ["another", ""] {
        c.provision(request(id, name, key, token))
            .refused(Code::FailedPrecondition, &["already running"])
            .await?;
    }
    env.server
        .onboarding(Some(OPERATOR))
        .await?
        .provision(request(id, name, "k", ""))
        .refused(Code::FailedPrecondition, &["already running"])
        .await?;
    Ok(())
}

/// Checks that `events` (the retry's stream) are the whole run, ended by Completed without the
/// secret, and that one run made one app and was started once, the retry on the log as a Watch.
fn followed_one_run(
    env: &SimServer,
    id: &str,
    name: &str,
    events: &[pb::ProvisionEvent],
) -> Result<()> {
    let done = completed(events)?;
    ensure!(done.secret.is_empty(), "the secret went to the wizard");
    ensure!(
        events.iter().zip(1..).all(|(e, i)| e.index == i),
        "not the run's events from its first: {:?}",
        events.iter().map(|e| e.index).collect::<Vec<_>>()
    );
    ensure!(
        apps_named(&env.sim.snapshot(), name).len() == 1,
        "not one app"
    );
    let entries = env.server.entries()?;
    ensure!(
        phases(&entries, "onboarding.provision", id) == ["intent", "succeeded"],
        "{:?}",
        phases(&entries, "onboarding.provision", id)
    );
    ensure!(
        !succeeded_by(&entries, "onboarding.watch", id).is_empty(),
        "the retry is not on the log as a Watch"
    );
    Ok(())
}

/// Slows Graph (every answer 2 s), sends the first Provision of `id` (app `name`, key `k`)
/// with a 500 ms client deadline, waits until it is under way (its intent on the log), and
/// sends the retry with the same key: the first call's task and the retry's stream.
async fn retry_while_planning(
    env: &SimServer,
    id: &str,
    name: &str,
    token: &str,
) -> Result<(
    tokio::task::JoinHandle<Result<(), tonic::Status>>,
    tonic::Streaming<pb::ProvisionEvent>,
)> {
    env.sim.set_faults(entra_sim::Faults {
        latency_ms: 2000,
        ..calm()
    });
    let first = with_deadline(
        env,
        request(id, name, "k", token),
        Duration::from_millis(500),
    )
    .await?;
    testkit::wait::until_true("the first call under way", STALL, async || {
        let entries = env.server.entries()?;
        Ok(!phases(&entries, "onboarding.provision", id).is_empty())
    })
    .await?;
    let retry = env
        .server
        .onboarding(None)
        .await?
        .provision(request(id, name, "k", token))
        .await
        .map_err(|s| anyhow::anyhow!("the retry with the same key was refused at once: {s:?}"))?
        .into_inner();
    Ok((first, retry))
}

/// The first call held (by the engine's test hook) after the run started and before Provision
/// answered: the window in which the key was not yet kept. The run is held too, after its first
/// step, so it is still running however the runtime schedules it. The first call's client
/// deadline passes; the retry with the same key, sent then, follows the run once both go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_first_call_starts_the_run_follows_it() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    let (entered, mut held) = tokio::sync::mpsc::unbounded_channel();
    let points = ["provision:started", "app_registration"];
    let release = hold_first_at(&env, &points, STALL, move |onboarding, point| {
        let _ = entered.send((onboarding.to_owned(), point));
    });

    let first = with_deadline(
        &env,
        request(&id, "Sbc-Retry", "k", &token),
        Duration::from_secs(1),
    )
    .await?;
    let mut at = Vec::new();
    for _ in points {
        let next = tokio::time::timeout(STALL, held.recv())
            .await
            .ok()
            .flatten();
        at.push(next.context("the first call or its run was not held")?);
    }
    let mut both = points.map(|p| (id.clone(), p));
    both.sort_unstable();
    at.sort_unstable();
    ensure!(at == both, "{at:?}");
    let gave_up = first.await?.err().context("the held call was answered")?;
    ensure!(
        matches!(gave_up.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{gave_up:?}"
    );
    let retry = env
        .server
        .onboarding(None)
        .await?
        .provision(request(&id, "Sbc-Retry", "k", &token))
        .await
        .map_err(|s| anyhow::anyhow!("the retry with the same key was refused: {s:?}"))?
        .into_inner();
    others_refused(&env, &id, "Sbc-Retry", &token).await?;
    drop(release);
    let events = drain(retry).await?;
    followed_one_run(&env, &id, "Sbc-Retry", &events)?;
    env.stop().await
}

/// The first call still planning against a slow Graph (every answer 2 s) when its client's
/// deadline passes: the retry with the same key, sent once the first call is under way (its
/// intent on the log), follows the run it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_first_call_plans_follows_the_run() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    let (first, retry) = retry_while_planning(&env, &id, "Sbc-Plan", &token).await?;
    others_refused(&env, &id, "Sbc-Plan", &token).await?;
    env.sim.set_faults(calm());
    let gave_up = first.await?.err().context("the first call was answered")?;
    ensure!(
        matches!(gave_up.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{gave_up:?}"
    );
    let events = drain(retry).await?;
    followed_one_run(&env, &id, "Sbc-Plan", &events)?;
    env.stop().await
}

/// The first call, still planning when its client's deadline passes, is then refused (an
/// Application Administrator, hand-offs off: the rights it lacks): the retry with the same key
/// that followed it gets that refusal too (FAILED_PRECONDITION with MISSING_RIGHTS), not a
/// retryable UNAVAILABLE that hides what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_call_that_is_then_refused_gets_the_same_refusal() -> Result<()> {
    let env = SimServer::start_with(|b| Ok(b.limit("hand_off_wait_secs", 0))).await?;
    let (token, _) = env.invite(None).await?;
    let id = env.signed_in(&token, "appadmin").await?.onboarding_id;
    let (first, mut retry) = retry_while_planning(&env, &id, "Sbc-Refused", &token).await?;
    env.sim.set_faults(calm());
    first.await?.err().context("the first call was answered")?;
    let refused = match tokio::time::timeout(STALL, retry.message()).await? {
        Err(s) => s,
        Ok(e) => anyhow::bail!("the retry got {e:?}, not the first call's refusal"),
    };
    ensure!(refused.code() == Code::FailedPrecondition, "{refused:?}");
    let violations = tonic_types::StatusExt::get_details_precondition_failure(&refused)
        .context("no PreconditionFailure")?
        .violations;
    ensure!(
        !violations.is_empty() && violations.iter().all(|v| v.r#type == "MISSING_RIGHTS"),
        "{violations:?}"
    );
    env.stop().await
}
