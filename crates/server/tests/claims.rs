//! The secret of an onboarding is handed over exactly once, audited as `secret.hand_over`
//! (intent, then succeeded or failed): by ClaimSecret, or on the operator's own Provision stream;
//! and so is the secret a customer entered on the wizard's "Use App Registration".

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use pb::provision_event::Event as PE;
use secrecy::ExposeSecret;
use testkit::portal::DIRECT_ROUTING;
use testkit::server::OPERATOR;
use testkit::sim::users;
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
    let hand_over = hand_over_entries(&env, &id)?;
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

/// The customer's wizard "Use App Registration" (over HTTP, as the page calls it) spends the
/// invitation on an attachment id, and the platform claims the secret the customer entered
/// with that id, once, audited; a second service of the customer reuses the registration with
/// a secret of its own, claimed the same way even after another secret was added to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_entered_on_use_app_registration_is_claimed_once_by_its_attachment_id()
-> Result<()> {
    let env = SimServer::start().await?;
    let client = testkit::sim::entra_client(&env.sim)?;
    let admin = testkit::sim::sign_in(&env.sim, &client, users::GLOBAL_ADMIN).await?;
    let portal = client.graph(admin.access_token);
    let app = testkit::portal::hand_made(&portal, "ByHand", &DIRECT_ROUTING).await?;
    let attach = |token: String, secret: String| {
        let body = serde_json::json!({
            "tenant_id": env.info.tenant_id,
            "client_id": app.client_id,
            "client_secret": secret,
        })
        .to_string();
        let server = &env.server;
        async move {
            server
                .wizard_post("/wizard/api/attach", &token, &body)
                .await
        }
    };
    let server = &env.server;
    let attachment_of = |invitation_id: String| async move {
        let key = pb::get_invitation_request::Key::Id(invitation_id);
        let inv = server.invitation(key).await?;
        anyhow::Ok(inv.onboarding_id)
    };

    let (token, invitation_id) = env.invite(None).await?;
    let answer = attach(token, app.secret.expose_secret().to_owned()).await?;
    ensure!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    ensure!(!answer.contains(app.secret.expose_secret()));
    let att = attachment_of(invitation_id).await?;
    ensure!(att.starts_with(credentials::ATTACHED_ID_PREFIX), "{att}");
    let got = testkit::wizard::claim(env.server.channel().await?, &att).await?;
    ensure!(got.secret == app.secret.expose_secret());
    ensure!(got.client_id == app.client_id && got.service_id == testkit::sim_server::SERVICE);
    // No admin session, and the app may not read itself: Entra's key id is unknown here.
    ensure!(got.tenant_id == env.info.tenant_id && got.key_id.is_empty());
    let again = testkit::wizard::claim(env.server.channel().await?, &att).await;
    let status = refusal(again)?;
    ensure!(
        status.code() == Code::FailedPrecondition
            && status.message().contains("already handed over"),
        "{status:?}"
    );
    let hand_over = hand_over_entries(&env, &att)?;
    // The key id unknown, the secret is named by its first characters, never its value.
    let hint = &app.secret.expose_secret()[..3];
    for e in &hand_over {
        ensure!(
            e["target"]["type"] == "passwordCredential"
                && e["target"].get("id").is_none()
                && e["target"]["display_name"] == format!("secret {hint}…").as_str()
                && e["service_id"] == testkit::sim_server::SERVICE
                && !e.to_string().contains(app.secret.expose_secret()),
            "{e}"
        );
    }
    ensure!(
        env.server
            .entries()?
            .iter()
            .any(|e| e["action"] == "invitation.redeem"
                && e["phase"] == "succeeded"
                && e.to_string().contains(&att)),
        "the invitation's redeem names the attachment"
    );

    // Another service of the customer: the registration is managed already; its own secret.
    let (token2, invitation2) =
        testkit::wizard::invite(env.server.channel().await?, "dr-2", "direct-routing", None)
            .await?;
    let (_, second) = testkit::portal::add_secret(&portal, &app.client_id).await?;
    let answer = attach(token2, second.expose_secret().to_owned()).await?;
    ensure!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let att2 = attachment_of(invitation2).await?;
    ensure!(att2 != att && att2.starts_with(credentials::ATTACHED_ID_PREFIX));
    // A secret added to that service before the claim went to the caller who added it: the
    // claim still hands over the one the customer entered, never that one a second time.
    env.day_two_sign_in().await?;
    let added = env.add_secret(&app.client_id, "dr-2").await?;
    let got2 = testkit::wizard::claim(env.server.channel().await?, &att2).await?;
    ensure!(got2.secret == second.expose_secret() && got2.service_id == "dr-2");
    let added_key = added.info.context("the added secret's info")?.key_id;
    ensure!(got2.secret != added.secret && got2.key_id != added_key);
    ensure!(got2.client_id == app.client_id);

    // Ids that name no attachment.
    let malformed = refusal(testkit::wizard::claim(env.server.channel().await?, "att-1").await)?;
    ensure!(
        malformed.code() == Code::InvalidArgument
            && testkit::server::bad_fields(&malformed) == ["onboarding_id"],
        "{malformed:?}"
    );
    let unknown = format!("att-{}", uuid::Uuid::new_v4());
    let unknown = refusal(testkit::wizard::claim(env.server.channel().await?, &unknown).await)?;
    ensure!(unknown.code() == Code::NotFound, "{unknown:?}");
    env.stop().await
}

/// The `secret.hand_over` entries of onboarding (or attachment) `id`, which must be one
/// intent and its success.
fn hand_over_entries(env: &SimServer, id: &str) -> Result<Vec<serde_json::Value>> {
    let hand_over: Vec<_> = env
        .server
        .entries()?
        .into_iter()
        .filter(|e| e["action"] == "secret.hand_over" && e["onboarding_id"] == id)
        .collect();
    let phases: Vec<_> = hand_over.iter().map(|e| e["phase"].clone()).collect();
    ensure!(phases == ["intent", "succeeded"], "{phases:?}");
    Ok(hand_over)
}

/// The status a refused call ended with.
fn refusal<T: std::fmt::Debug>(answer: Result<T>) -> Result<tonic::Status> {
    match answer {
        Ok(v) => anyhow::bail!("not refused: {v:?}"),
        Err(e) => e
            .downcast::<tonic::Status>()
            .map_err(|e| anyhow::anyhow!("{e}")),
    }
}
