//! RotateSecret makes the new secret current only while its caller listens, over the real gRPC
//! server and the Entra emulator: a caller whose stream breaks before the hand-over leaves the
//! old secret current, and the next call resumes the rotation and gets the same new secret.

use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use onboard_proto::v1::credentials_client::CredentialsClient;
use testkit::server::{Authed, OPERATOR};
use testkit::server_helpers::{rotate_when_free, secrets};
use testkit::sim::calm;
use testkit::sim_server::SimServer;
use tonic::Code;

/// RotateSecret of `dr-1` with no overlap (the old secret goes right after the hand-over).
fn rotate(reg: &Option<pb::RegistrationRef>) -> pb::RotateSecretRequest {
    pb::RotateSecretRequest {
        registration: reg.clone(),
        service_id: "dr-1".into(),
        overlap: None,
        seal_to: None,
    }
}

/// The key id of `dr-1`'s current secret.
async fn current(
    c: &mut CredentialsClient<Authed>,
    reg: &Option<pb::RegistrationRef>,
) -> Result<String> {
    let now = secrets(c, reg).await?;
    let cur = now.iter().find(|s| s.current && s.service_id == "dr-1");
    Ok(cur.context("no current secret")?.key_id.clone())
}

/// A registration onboarded into `env`, whose `dr-1` rotation lost its caller right after the
/// add: the old secret's key id and the new secret the caller was given, once the rotation has
/// gone on to the hand-over and the old secret is seen to stay current.
async fn caller_gone(
    env: &SimServer,
    c: &mut CredentialsClient<Authed>,
    name: &str,
) -> Result<(Option<pb::RegistrationRef>, String, pb::NewSecret)> {
    let done = env.onboarded("direct-routing", name).await?.done;
    let reg = env.registration(&done.client_id);
    let old = current(c, &reg).await?;

    // Every Entra answer takes 2 s (until the validation is done), so the new secret's
    // validation still waits for its token when the caller drops the stream right after the
    // add, and the server has long seen the stream go.
    env.sim.set_faults(Faults {
        latency_ms: 2000,
        ..calm()
    });
    let mut first = c.rotate_secret(rotate(&reg)).await?.into_inner();
    let given = loop {
        let ev = first
            .message()
            .await?
            .context("the stream ended before the add")?;
        if let Some(s) = ev.new_secret {
            break s;
        }
    };
    drop(first);
    let key = given.info.as_ref().context("info")?.key_id.clone();

    // The rotation goes on without its caller up to the hand-over: the new secret is proved,
    // then the old one stays current (it was made current, and removed, at once before).
    let proved = async || -> Result<bool> {
        Ok(env.server.entries()?.iter().any(|e| {
            e["action"] == "authentication.verify"
                && e["phase"] == "succeeded"
                && e["target"]["id"] == key
        }))
    };
    testkit::wait::until_true("the new secret proved", Duration::from_secs(60), proved).await?;
    env.sim.set_faults(calm());
    for _ in 0..10 {
        let now = secrets(c, &reg).await?;
        let current: Vec<_> = now.iter().filter(|s| s.current).collect();
        ensure!(
            current.len() == 1 && current[0].key_id == old,
            "made current with no caller: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((reg, old, given))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_gone_before_the_hand_over_leaves_the_old_secret_current_for_the_next_call()
-> Result<()> {
    let env = SimServer::start_with(|b| Ok(b.telemetry("text"))).await?;
    onboard_server::telemetry::recorder()?;
    let metrics = onboard_server::telemetry::start(&env.server.app)
        .await?
        .context("no metrics listener")?;
    let waiting = async || -> Result<f64> {
        let m = testkit::metrics::scrape_parsed(metrics).await?;
        Ok(m.sum("onboard_rotations_stored", &[("stage", "handing_over")]))
    };
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let (reg, old, given) = caller_gone(&env, &mut c, "Sbc-Gone").await?;
    let key = given.info.as_ref().context("info")?.key_id.clone();
    // Operators see it wait (OnboardRotationWaiting).
    ensure!(
        waiting().await? == 1.0,
        "the waiting rotation is not in /metrics"
    );

    // The next call: FAILED_PRECONDITION while the first call's rotation may still run, then
    // it resumes that rotation and gets its new secret.
    let wait = Duration::from_secs(60);
    let (stages, handed) = rotate_when_free(&mut c, &rotate(&reg), wait).await?;
    let handed = handed.context("the resuming call gets the new secret")?;
    ensure!(
        handed.secret == given.secret && handed.audit_seq == given.audit_seq,
        "the next call got another secret than the one the rotation added ({stages:?})"
    );
    ensure!(
        stages.ends_with(&[
            "hand_over:true".to_owned(),
            "remove_old:false".to_owned(),
            "remove_old:true".to_owned()
        ]),
        "{stages:?}"
    );
    ensure!(current(&mut c, &reg).await? == key);
    let left: Vec<_> = secrets(&mut c, &reg).await?;
    ensure!(
        !left.iter().any(|s| s.key_id == old),
        "the old secret stayed: {left:?}"
    );
    // The new secret was made current once (the entries naming a delivery are the two calls'
    // receipts of its value).
    let made_current = env
        .server
        .entries()?
        .iter()
        .filter(|e| {
            e["action"] == "secret.hand_over" && e["target"]["id"] == key && e["delivery"].is_null()
        })
        .count();
    ensure!(made_current == 1, "made current {made_current} times");
    ensure!(waiting().await? == 0.0);
    Ok(())
}

/// A rotation that waits for its caller can also be ended: RevokeSecret of its new secret
/// removes that secret, leaves the old one current, and the next RotateSecret starts afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_new_secret_of_a_waiting_rotation_ends_it() -> Result<()> {
    let env = SimServer::start().await?;
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let (reg, old, given) = caller_gone(&env, &mut c, "Sbc-End").await?;
    let key = given.info.as_ref().context("info")?.key_id.clone();
    let revoke = pb::RevokeSecretRequest {
        registration: reg.clone(),
        key_id: key.clone(),
    };
    // FAILED_PRECONDITION while the rotation may still be driven, then it ends it.
    let seq = testkit::wait::until("RevokeSecret", Duration::from_secs(60), async || {
        match c.revoke_secret(revoke.clone()).await {
            Ok(r) => Ok(ControlFlow::Break(r.into_inner().audit_seq)),
            Err(e) if e.code() == Code::FailedPrecondition => Ok(ControlFlow::Continue(e)),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    ensure!(seq > 0, "the removal is audited");
    let left = secrets(&mut c, &reg).await?;
    ensure!(
        left.len() == 1 && left[0].key_id == old && left[0].current,
        "{left:?}"
    );
    let ended = env.server.entries()?.into_iter().filter(|e| {
        e["action"] == "secret.rotate"
            && e["phase"] == "failed"
            && e["error"].as_str().is_some_and(|m| m.contains(&key))
    });
    ensure!(ended.count() == 1, "the end is not recorded");
    // The next call starts a new rotation: another new secret, made current for it.
    let mut stream = c.rotate_secret(rotate(&reg)).await?.into_inner();
    let mut handed = None;
    while let Some(ev) = stream.message().await? {
        handed = ev.new_secret.or(handed);
    }
    let handed = handed.context("the new rotation's secret")?;
    ensure!(handed.secret != given.secret);
    ensure!(current(&mut c, &reg).await? == handed.info.context("info")?.key_id);
    Ok(())
}
