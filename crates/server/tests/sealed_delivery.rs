//! Sealed delivery (`proto/onboard/v1/delivery.proto`): a secret asked for with `seal_to`
//! comes back sealed with HPKE to that key on every answer that carries one (ClaimSecret,
//! Provision's Completed, AddServiceSecret, RotateSecret), the log says so (`secret.hand_over`
//! with `delivery`), and it opens with an HPKE implementation that shares no code with the
//! server's (pyhpke, `tests/interop/open_sealed.py`, which also made the key pair): to the
//! secret that signs in as the app, and to nothing under another key id. A key no secret can
//! be sealed to is refused, naming the field, before anything is claimed.

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use pb::provision_event::Event as PE;
use serde_json::json;
use testkit::sealed::Keys;
use testkit::server::OPERATOR;
use testkit::server_helpers::Refusal;
use testkit::sim_server::SimServer;
use testkit::wizard::{completed, drain};
use tonic::Code;

/// `sealed` opened with `keys` under `key_id` to a secret that signs in as `client_id`, and
/// under no other key id: the secret.
async fn opens(
    keys: &Keys,
    env: &SimServer,
    sealed: Option<&pb::SealedSecret>,
    key_id: &str,
    client_id: &str,
) -> Result<String> {
    let secret = keys.open(sealed, key_id)?.context("does not open")?;
    ensure!(
        env.authenticates(client_id, &secret).await?,
        "not the app's secret"
    );
    let moved = format!("{key_id}0");
    ensure!(
        keys.open(sealed, &moved)?.is_none(),
        "opens under another key id"
    );
    Ok(secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_secret_is_sealed_to_the_callers_key_and_a_bad_key_claims_nothing() -> Result<()>
{
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    let events = env.provision(&token, &id, "Sbc-Sealed").await?;
    let done = completed(&events.map_err(|s| anyhow::anyhow!("provision: {s:?}"))?)?;
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let claim = |key: Vec<u8>| pb::ClaimSecretRequest {
        onboarding_id: id.clone(),
        seal_to: Some(pb::SealTo {
            x25519_public_key: key,
        }),
    };
    let field = "seal_to.x25519_public_key";
    for (key, words) in [
        (vec![7; 31], [field, "31 bytes"]),
        (vec![], [field, "0 bytes"]),
        // The all-zero point: every shared secret with it is zero.
        (vec![0; 32], [field, "low-order"]),
    ] {
        op.claim_secret(claim(key))
            .refused(Code::InvalidArgument, &words)
            .await?;
    }
    ensure!(
        !env.server
            .entries()?
            .iter()
            .any(|e| e["action"] == "secret.hand_over"),
        "a refused key claimed the secret"
    );

    let keys = Keys::new()?;
    let got = op
        .claim_secret(claim(keys.public.clone()))
        .await?
        .into_inner();
    ensure!(got.secret.is_empty(), "the secret also went in the clear");
    let secret = opens(
        &keys,
        &env,
        got.sealed.as_ref(),
        &got.key_id,
        &done.client_id,
    )
    .await?;
    let entries = env.server.entries()?;
    ensure!(
        !entries.iter().any(|e| e.to_string().contains(&secret)),
        "the secret is in the audit log"
    );
    // The hand-over says how the secret left.
    let hand_over: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "secret.hand_over")
        .map(|e| (e["phase"].clone(), e["delivery"].clone()))
        .collect();
    ensure!(
        hand_over
            == [
                (json!("intent"), json!("sealed")),
                (json!("succeeded"), json!("sealed"))
            ],
        "{hand_over:?}"
    );
    // Handed over once, sealed or not.
    op.claim_secret(claim(keys.public.clone()))
        .refused(Code::FailedPrecondition, &["already handed over"])
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_add_and_rotate_seal_to_the_callers_key() -> Result<()> {
    let env = SimServer::start().await?;
    let keys = Keys::new()?;
    let (_token, id) = env.invited_and_signed_in("globaladmin").await?;
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let events = op
        .provision(pb::ProvisionRequest {
            onboarding_id: id,
            app_name: "Sbc-SealedOp".into(),
            seal_to: keys.seal_to(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let events = drain(events).await?;
    let done = completed(&events)?;
    ensure!(done.secret.is_empty(), "the secret also went in the clear");
    opens(
        &keys,
        &env,
        done.sealed.as_ref(),
        &done.key_id,
        &done.client_id,
    )
    .await?;
    let sealed_events = events
        .iter()
        .filter(|e| matches!(&e.event, Some(PE::Completed(c)) if c.sealed.is_some()))
        .count();
    ensure!(
        sealed_events == 1,
        "{sealed_events} sealed Completed events"
    );

    let reg = env.registration(&done.client_id);
    let mut c = env.server.credentials(Some(OPERATOR)).await?;
    let added = c
        .add_service_secret(pb::AddServiceSecretRequest {
            registration: reg.clone(),
            service_id: "dr-sealed".into(),
            seal_to: keys.seal_to(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(added.secret.is_empty(), "the secret also went in the clear");
    let key_id = added.info.as_ref().context("info")?.key_id.clone();
    opens(&keys, &env, added.sealed.as_ref(), &key_id, &done.client_id).await?;
    hand_over_says(&env, &added, "AddServiceSecret")?;

    let mut stages = c
        .rotate_secret(pb::RotateSecretRequest {
            registration: reg,
            service_id: "dr-sealed".into(),
            seal_to: keys.seal_to(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut new_secret = None;
    while let Some(e) = stages.message().await? {
        new_secret = new_secret.or(e.new_secret);
    }
    let new = new_secret.context("no new secret on the rotation's stream")?;
    ensure!(new.secret.is_empty(), "the secret also went in the clear");
    let key_id = new.info.as_ref().context("info")?.key_id.clone();
    opens(&keys, &env, new.sealed.as_ref(), &key_id, &done.client_id).await?;
    hand_over_says(&env, &new, "RotateSecret")?;
    env.stop().await
}

/// The answer's `hand_over_audit_seq` is the only `secret.hand_over` of its secret to the
/// caller, and says it left sealed.
fn hand_over_says(env: &SimServer, answer: &pb::NewSecret, rpc: &str) -> Result<()> {
    let key_id = &answer.info.as_ref().context("info")?.key_id;
    let to_caller: Vec<_> = env
        .server
        .entries()?
        .into_iter()
        .filter(|e| {
            e["action"] == "secret.hand_over"
                && e["target"]["id"] == key_id.as_str()
                && !e["delivery"].is_null()
        })
        .collect();
    ensure!(
        to_caller.len() == 1
            && to_caller[0]["seq"] == answer.hand_over_audit_seq
            && to_caller[0]["actor"] == "portal"
            && to_caller[0]["phase"] == "succeeded"
            && to_caller[0]["delivery"] == "sealed",
        "{rpc}: hand-over entry {} of {to_caller:?}",
        answer.hand_over_audit_seq
    );
    Ok(())
}
