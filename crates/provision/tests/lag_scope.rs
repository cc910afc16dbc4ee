//! A 404 is replication lag only right after a create (entra-reference §6): reads of objects
//! this run did not just make get no lag retries.

use anyhow::{Context, Result, ensure};
use entra_client::OpContext;
use provision::{EventKind, Status};
use testkit::engine::{EngineEnv, collect, completion};
use testkit::sim::calm;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_settled_onboarding_takes_a_404_as_an_answer() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("globaladmin").await?;
    let events = env.provision("onb-gone", "Sbc-Gone", admin).await?;
    completion(&events)?;
    let rec = env.engine.get("onb-gone")?.context("record")?;
    let oid = rec.app_object_id.context("app")?;

    // Someone deletes the app (and with it its service principal) in Entra.
    let tokens = env.sign_in("globaladmin").await?;
    env.client
        .graph(tokens.access_token)
        .delete_application(&oid, &OpContext::new())
        .await?;

    let seen = env.engine.event_count("onb-gone")?;
    let started = std::time::Instant::now();
    let done = env.engine.cancel("onb-gone", "tester").await?;
    let took = started.elapsed();
    ensure!(done.status == Status::Cancelled, "{done:?}");
    let cancel_events = collect(env.engine.watch("onb-gone", seen + 1)?, 10).await?;
    let retries: Vec<_> = cancel_events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Retrying { .. }))
        .collect();
    ensure!(
        retries.is_empty(),
        "the app this settled onboarding made is gone, not lagging: {retries:#?}"
    );
    // The harness allows 30 s of lag retries; an answer takes a few round trips.
    ensure!(took.as_secs() < 10, "cancel took {took:?}");
    Ok(())
}
