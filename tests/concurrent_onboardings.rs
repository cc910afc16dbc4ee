//! 100 onboardings at once against one `onboard serve` process: every one completes, each
//! app exists exactly once, and the audit log records every one of them.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use entra_sim::Faults;
use testkit::config::OPERATOR;
use testkit::onboard_binary;
use testkit::process::ServerFiles;
use testkit::server::with_token;
use testkit::sim::calm;
use testkit::wizard::onboard_timed;

const COUNT: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_onboardings_all_complete() -> Result<()> {
    let sim = testkit::sim::start(Faults {
        latency_ms: 5,
        seed: Some(11),
        ..calm()
    })
    .await?;
    let onboard = onboard_binary!();
    // All 100 sign in to the one emulated tenant at once: above `[limits]`'s default cap on
    // concurrent sign-ins per tenant, which this load test lifts.
    let files = ServerFiles::with(&sim, |b| {
        Ok(b.limit("max_sign_ins_per_tenant", COUNT as u64))
    })?;
    let log = files.log.clone();
    let server = onboard.serve(&files).await?;
    let ch = server.channel().await?;
    let sim = std::sync::Arc::new(sim);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..COUNT {
        let (ch, sim) = (ch.clone(), sim.clone());
        tasks.spawn(async move {
            onboard_timed(ch, &sim, &format!("dr-{i}"), &format!("Conc-{i:03}"))
                .await
                .map(drop)
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        r?.with_context(|| std::fs::read_to_string(&log).unwrap_or_default())?;
        done += 1;
    }
    ensure!(done == COUNT);

    let snap = sim.snapshot();
    let names: Vec<&str> = snap["applications"]
        .as_array()
        .context("applications")?
        .iter()
        .filter_map(|a| a["props"]["displayName"].as_str())
        .filter(|n| n.starts_with("Conc-"))
        .collect();
    let distinct: BTreeSet<&str> = names.iter().copied().collect();
    ensure!(
        names.len() == COUNT && distinct.len() == COUNT,
        "{} apps, {} distinct",
        names.len(),
        distinct.len()
    );
    // Every onboarding's start and completion are in the log.
    let mut audit =
        onboard_proto::v1::audit_client::AuditClient::new(with_token(ch.clone(), Some(OPERATOR)));
    // Operators may not read the log (auditor role); that refusal is itself the check that the
    // log is guarded. The entries are checked after shutdown instead.
    let refused = audit
        .get_checkpoint(onboard_proto::v1::GetCheckpointRequest::default())
        .await
        .err()
        .context("an operator read the audit log")?;
    ensure!(
        refused.code() == tonic::Code::PermissionDenied,
        "{refused:?}"
    );
    server.terminate()?;
    let log = audit_log::AuditLog::open_read_only(
        files.data_dir().join("audit"),
        audit_log::StartupCheck::Full,
    )?;
    let mut completed = 0;
    for seq in 0..log.size() {
        let e: serde_json::Value = serde_json::from_slice(&log.entry(seq)?)?;
        if e["action"] == "onboarding.finish" && e["phase"] == "succeeded" {
            completed += 1;
        }
    }
    ensure!(completed == COUNT, "{completed} onboarding.finish entries");
    Ok(())
}
