//! Runs a whole onboarding (with retries, and a cancel) with tracing at TRACE, and checks that
//! neither the new client secret nor the admin's token appears in the logs, the events' Debug
//! text, or the onboarding views.

use anyhow::{Context, Result, ensure};
use entra_sim::Faults;
use secrecy::ExposeSecret;
use testkit::engine::{EngineEnv, collect, completion};
use testkit::logs::capture;
use testkit::sim::calm;

#[tokio::test]
async fn secrets_and_tokens_never_reach_logs_events_or_views() -> Result<()> {
    // Current-thread runtime: the engine's tasks log through this default too.
    let (capture, _guard) = capture("provision=trace,entra_client=trace,audit_log=trace");

    let env = EngineEnv::start(calm(), None).await?;
    let tokens = env.sign_in("globaladmin").await?;
    let admin_token = tokens.access_token.expose_secret().to_owned();
    let admin = env
        .engine
        .sign_in(&tokens, &env.upn("globaladmin"), None)
        .await?;
    env.sim.set_faults(Faults {
        replication_lag_ms: 600,
        throttle_rate: 0.2,
        throttle_retry_after_s: 1,
        seed: Some(5),
        // Below the client's retry budget: the run completes whatever the draws.
        max_faults_per_operation: Some(3),
        ..calm()
    });
    let events = env
        .run(env.request("onb-s", "Sbc-Secret"), admin.clone())
        .await?;
    let secret = completion(&events)?
        .secret
        .clone()
        .context("secret")?
        .expose_secret()
        .to_owned();
    // A failing call too, so error paths log: the name is taken now.
    let taken = env
        .engine
        .provision(env.request("onb-s2", "sbc-secret"), admin.clone())
        .await;
    ensure!(taken.is_err());
    env.engine.cancel("onb-s", "tester").await?;

    let logs = capture.text();
    ensure!(
        logs.contains("onb-s") || logs.contains("client secret added"),
        "nothing was logged"
    );
    for (what, value) in [
        ("client secret", secret.as_str()),
        ("admin token", admin_token.as_str()),
    ] {
        ensure!(!logs.contains(value), "{what} in the logs");
        ensure!(
            !format!("{events:?}").contains(value),
            "{what} in event Debug"
        );
        ensure!(
            !format!("{admin:?}").contains(value),
            "{what} in Admin Debug"
        );
        let views = format!("{:?}", env.engine.list(&Default::default())?);
        ensure!(!views.contains(value), "{what} in the views");
        let replay = collect(env.engine.watch("onb-s", 1)?, 10).await?;
        ensure!(
            !serde_json::to_string(&replay)?.contains(value),
            "{what} in persisted events"
        );
    }
    Ok(())
}
