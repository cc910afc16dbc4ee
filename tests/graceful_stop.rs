//! SIGTERM ends `onboard serve` cleanly even while clients hold calls open: a health `Watch`
//! (gRPC client-side health checking keeps one on every connection) is told NOT_SERVING and
//! ends, and a call that stays open past the shutdown grace (`limits.shutdown_grace_secs`) has
//! its connection dropped.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use testkit::onboard_binary;
use testkit::process::ServerFiles;
use testkit::sim::calm;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

/// How long open calls may take after SIGTERM when the configuration does not say.
const GRACE: Duration = onboard_core::shutdown::DEFAULT_GRACE;

/// A configured grace, shorter than the default.
const CONFIGURED_GRACE: Duration = Duration::from_secs(3);

const ONBOARDING: &str = "onboard.v1.Onboarding";

fn status(m: &HealthCheckResponse) -> ServingStatus {
    ServingStatus::try_from(m.status).unwrap_or(ServingStatus::Unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watchers_hear_not_serving_and_their_streams_end() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let files = ServerFiles::with(&sim, Ok)?;
    let server = onboard_binary!().serve(&files).await?;
    let mut health = HealthClient::new(server.channel().await?);
    let mut watches = Vec::new();
    for service in ["", ONBOARDING] {
        let request = HealthCheckRequest {
            service: service.into(),
        };
        let answer = health.check(request.clone()).await?.into_inner();
        ensure!(status(&answer) == ServingStatus::Serving, "{service:?}");
        let mut w = health.watch(request).await?.into_inner();
        let first = w.message().await?.context("no first status")?;
        ensure!(status(&first) == ServingStatus::Serving, "{service:?}");
        watches.push((service, w));
    }
    let stopping = tokio::task::spawn_blocking(move || server.terminate_within(GRACE * 3));
    for (service, mut w) in watches {
        let next = tokio::time::timeout(GRACE, w.message())
            .await
            .context("no word within the grace")??;
        let next = next.context("the stream ended without saying NOT_SERVING")?;
        ensure!(
            status(&next) == ServingStatus::NotServing,
            "{service:?}: {next:?}"
        );
        let end = tokio::time::timeout(GRACE, w.message())
            .await
            .context("the stream stayed open")??;
        ensure!(end.is_none(), "{service:?}: {end:?}");
    }
    let took = stopping.await??;
    // The watchers do not hold the process: it ends well before the grace would cut them off.
    ensure!(took < GRACE, "the exit took {took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_open_past_the_grace_does_not_keep_the_server_up() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let grace = CONFIGURED_GRACE.as_secs();
    let files = ServerFiles::with(&sim, |b| Ok(b.limit("shutdown_grace_secs", grace)))?;
    let server = onboard_binary!().serve(&files).await?;
    let log = server.log.clone();
    let mut reflection = ServerReflectionClient::new(server.channel().await?);
    // A reflection stream whose client never closes its side.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    })
    .await?;
    let mut answers = reflection
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    ensure!(
        answers.message().await?.is_some(),
        "no answer to ListServices"
    );
    let took = tokio::task::spawn_blocking(move || server.terminate_within(GRACE * 3)).await??;
    ensure!(
        took >= CONFIGURED_GRACE,
        "the open call got less than its grace: {took:?}"
    );
    // The configured grace, not the default, bounded the wait.
    ensure!(took < GRACE, "the stop took {took:?}");
    let text = std::fs::read_to_string(&log)?;
    ensure!(
        text.contains("calls still open after the shutdown grace"),
        "the log does not say why the stop took the grace:\n{text}"
    );
    drop(tx);
    // The state closed cleanly: the same files serve again.
    let again = onboard_binary!().serve(&files).await?;
    let answer = HealthClient::new(again.channel().await?)
        .check(HealthCheckRequest::default())
        .await?
        .into_inner();
    ensure!(status(&answer) == ServingStatus::Serving);
    again.terminate()
}
