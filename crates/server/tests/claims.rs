//! The secret of an onboarding is handed over exactly once, audited as `secret.hand_over`
//! (intent, then succeeded or failed): by ClaimSecret, or on the operator's own Provision stream.

use anyhow::{Result, ensure};
use onboard_proto::v1 as pb;
use pb::provision_event::Event as PE;
use testkit::server::OPERATOR;
use testkit::sim_server::SimServer;
use testkit::wizard::{completed, drain};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_hand_the_secret_to_exactly_one_caller() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    let events = env.provision(&token, &id, "Sbc-Claims").await?;
    let events = events.map_err(|s| anyhow::anyhow!("provision: {s:?}"))?;
    ensure!(completed(&events)?.secret.is_empty());
    // Eight platform claims at once: one gets the value, the others are refused.
    let mut claims = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (ch, id) = (env.server.channel().await?, id.clone());
        claims.spawn(async move { testkit::wizard::claim(ch, &id).await });
    }
    let (mut got, mut refused) = (Vec::new(), 0);
    while let Some(r) = claims.join_next().await {
        match r? {
            Ok(c) => got.push(c.secret),
            Err(e) => {
                let s = e
                    .downcast::<tonic::Status>()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                ensure!(
                    s.code() == Code::FailedPrecondition
                        && s.message().contains("already handed over"),
                    "{s:?}"
                );
                refused += 1;
            }
        }
    }
    ensure!(
        got.len() == 1 && !got[0].is_empty(),
        "{} claims got the secret",
        got.len()
    );
    ensure!(refused == 7);
    Ok(())
}

/// An operator that runs Provision itself receives the secret on its stream: audited as the
/// hand-over (intent, succeeded, the operator as actor, the key as target), after which
/// ClaimSecret is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_provision_stream_hand_over_is_audited() -> Result<()> {
    let env = SimServer::start().await?;
    let (_token, id) = env.invited_and_signed_in("globaladmin").await?;
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let events = op
        .provision(pb::ProvisionRequest {
            onboarding_id: id.clone(),
            app_name: "Sbc-OpStream".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let events = drain(events).await?;
    let done = completed(&events)?;
    ensure!(!done.secret.is_empty(), "the operator gets the secret");
    ensure!(
        events
            .iter()
            .filter(|e| matches!(&e.event, Some(PE::Completed(c)) if !c.secret.is_empty()))
            .count()
            == 1
    );
    let entries = env.server.entries()?;
    let hand_over: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "secret.hand_over" && e["onboarding_id"] == id.as_str())
        .collect();
    let phases: Vec<_> = hand_over.iter().map(|e| e["phase"].clone()).collect();
    ensure!(phases == ["intent", "succeeded"], "{phases:?}");
    for e in &hand_over {
        ensure!(
            e["target"]["id"] == done.key_id.as_str()
                && e["client_id"] == done.client_id.as_str()
                && e["actor"].as_str().is_some_and(|a| !a.is_empty())
                && !e.to_string().contains(&done.secret),
            "{e}"
        );
    }
    let claim = testkit::wizard::claim(env.server.channel().await?, &id).await;
    let status = claim
        .err()
        .and_then(|e| e.downcast::<tonic::Status>().ok())
        .ok_or_else(|| anyhow::anyhow!("ClaimSecret was not refused"))?;
    ensure!(
        status.code() == Code::FailedPrecondition
            && status.message().contains("already handed over"),
        "{status:?}"
    );
    env.stop().await
}
