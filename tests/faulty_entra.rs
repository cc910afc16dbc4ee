//! Onboarding over gRPC while Entra lags and throttles: the emulator answers 25 % of Graph
//! calls with 429 + Retry-After and hides new objects for 1.5 s (with Entra's real errors).
//! Every onboarding completes, the wizard sees why it waited (Retrying events with the reason
//! and the wait), and no object is made twice.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use onboard_proto::v1::provision_event::Event as PE;
use testkit::onboard_binary;
use testkit::process::ServerFiles;
use testkit::sim::{assert_rode_out_faults, calm, users::GLOBAL_ADMIN};
use testkit::snapshot::no_duplicates;
use testkit::wizard::{invite, provision_stream, signed_in};

const COUNT: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn onboarding_rides_out_replication_lag_and_throttling() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let onboard = onboard_binary!();
    let files = ServerFiles::new(&sim)?;
    let log = files.log.clone();
    let server = onboard.serve(&files).await?;
    let ch = server.channel().await?;
    // Sign-ins first, with a calm STS; the faults are for Graph during provisioning.
    let mut signed = Vec::new();
    for i in 0..COUNT {
        let token = invite(ch.clone(), &format!("dr-lag-{i}"), "direct-routing", None)
            .await?
            .0;
        let id = signed_in(ch.clone(), &sim, &token, GLOBAL_ADMIN)
            .await?
            .onboarding_id;
        signed.push((token, id, format!("Lag-{i}")));
    }
    sim.set_faults(Faults {
        replication_lag_ms: 1500,
        throttle_rate: 0.25,
        throttle_retry_after_s: 1,
        seed: Some(23),
        // Below the client's retry budget: the run completes whatever the draws.
        max_faults_per_operation: Some(3),
        device_code_interval_s: Some(1),
        ..Faults::default()
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (token, id, name) in signed.clone() {
        let ch = ch.clone();
        tasks.spawn(async move {
            let mut stream = provision_stream(ch, &token, &id, &name).await?;
            let mut reasons = Vec::new();
            let mut waits = Vec::new();
            let mut last = None;
            while let Some(e) =
                tokio::time::timeout(Duration::from_secs(240), stream.message()).await??
            {
                if let Some(PE::Retrying(r)) = &e.event {
                    // The kind says the same as the reason's words, for programs and the page.
                    let want = if r.reason.contains("throttled (429)") {
                        pb::RetryKind::Throttled
                    } else if r.reason.contains("directory replication") {
                        pb::RetryKind::Replication
                    } else if r.reason.contains("to propagate") {
                        pb::RetryKind::CredentialPropagation
                    } else if r.reason.contains("server error (") {
                        pb::RetryKind::MicrosoftUnavailable
                    } else if r.reason.contains("transport failure") {
                        pb::RetryKind::Network
                    } else {
                        bail!("{name}: an unexpected retry {r:?}")
                    };
                    ensure!(r.kind() == want, "{name}: {r:?} is not {want:?}");
                    reasons.push(r.reason.clone());
                    waits.push(r.wait.and_then(|d| {
                        u64::try_from(d.seconds * 1000 + i64::from(d.nanos) / 1_000_000).ok()
                    }));
                }
                last = e.event;
            }
            match last {
                Some(PE::Completed(c)) if !c.client_id.is_empty() => Ok((reasons, waits)),
                other => bail!("{name}: ended with {other:?}"),
            }
        });
    }
    let mut reasons = Vec::new();
    let mut waits = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (r, w) = r?.with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
        reasons.extend(r);
        waits.extend(w);
    }
    // Retry-After: 1 is honoured (the wizard is told it waits at least a second).
    let waits: Vec<u64> = waits.into_iter().flatten().collect();
    assert_rode_out_faults(&reasons, &waits).context("what reached the wizard")?;
    let snap = sim.snapshot();
    for (_, _, name) in &signed {
        no_duplicates(&snap, name)
            .map(drop)
            .with_context(|| format!("app {name}"))?;
    }
    server.terminate()?;
    onboard.export_and_verify(&files)
}
