//! SIGTERM ends `onboard serve` cleanly even while clients hold calls open: a health `Watch`
//! (gRPC client-side health checking keeps one on every connection) is told NOT_SERVING and
//! ends, and a call that stays open past the shutdown grace (`limits.shutdown_grace_secs`) has
//! its connection dropped. The plaintext health listener (`[server] health_listen`, for
//! Kubernetes' `grpc:` probes) answers SERVING beside a TLS API, and NOT_SERVING while the
//! server drains.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use testkit::onboard_binary;
use testkit::process::ServerFiles;
use testkit::sim::calm;
use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
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

/// A reflection stream on `channel` whose client never closes its side, answered once: a call
/// held open. Dropping the sender ends it.
async fn held_open(channel: Channel) -> Result<mpsc::Sender<ServerReflectionRequest>> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    })
    .await?;
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    ensure!(
        answers.message().await?.is_some(),
        "no answer to ListServices"
    );
    // The stream's receiving side is kept open by the server's task, not by this handle.
    tokio::spawn(async move { while let Ok(Some(_)) = answers.message().await {} });
    Ok(tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_open_past_the_grace_does_not_keep_the_server_up() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let grace = CONFIGURED_GRACE.as_secs();
    let files = ServerFiles::with(&sim, |b| Ok(b.limit("shutdown_grace_secs", grace)))?;
    let server = onboard_binary!().serve(&files).await?;
    let log = server.log.clone();
    let tx = held_open(server.channel().await?).await?;
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

/// `[server] health_listen` beside a TLS API: plaintext `grpc.health.v1` (what Kubernetes'
/// `grpc:` probe speaks) answers SERVING for the server and each service, nothing else is served
/// there, and from SIGTERM until the drain ends it answers NOT_SERVING, so a readiness probe
/// takes the pod out of rotation while calls finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plaintext_health_listener_answers_probes_and_says_not_serving_while_draining()
-> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let dir = tempfile::tempdir()?;
    let ca = testkit::pki::Ca::new("graceful-stop CA")?;
    let (cert, key) = ca.server("localhost")?.write(dir.path(), "server")?;
    let grace = CONFIGURED_GRACE.as_secs();
    let files = ServerFiles::with(&sim, |b| {
        Ok(b.limit("shutdown_grace_secs", grace)
            .tls(&cert, &key, None)
            .raw("server", "health_listen", "127.0.0.1:0".into()))
    })?;
    let server = onboard_binary!().serve(&files).await?;
    let probe_addr = server.health.context("no `onboard health on` line")?;
    ensure!(probe_addr != server.addr);
    let probe = Endpoint::from_shared(format!("http://{probe_addr}"))?
        .connect()
        .await?;
    let mut health = HealthClient::new(probe.clone());
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    for service in ["", ONBOARDING] {
        let answer = health.check(check(service)).await?.into_inner();
        ensure!(status(&answer) == ServingStatus::Serving, "{service:?}");
    }
    // Only health: the API is not reachable in plaintext here.
    let listed = held_open(probe).await;
    ensure!(
        listed.is_err(),
        "reflection answered on the health listener"
    );

    onboard_core::tls::install_crypto_provider();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost");
    let api = Endpoint::from_shared(format!("https://{}", server.addr))?
        .tls_config(tls)?
        .connect()
        .await?;
    let tx = held_open(api).await?;
    let stopping = tokio::task::spawn_blocking(move || server.terminate_within(GRACE * 3));
    let mut heard = None;
    for _ in 0..100 {
        match health.check(check("")).await {
            Ok(a) if status(a.get_ref()) == ServingStatus::NotServing => {
                heard = Some(a.into_inner());
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(s) => anyhow::bail!("the health listener failed during the drain: {s:?}"),
        }
    }
    ensure!(heard.is_some(), "never NOT_SERVING during the drain");
    let took = stopping.await??;
    ensure!(
        took >= CONFIGURED_GRACE && took < GRACE,
        "the stop took {took:?}"
    );
    drop(tx);
    Ok(())
}
