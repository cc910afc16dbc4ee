//! The wizard's JSON API over plain HTTP, as its page calls it, where a browser adds nothing
//! (the page itself is tested in Chromium: `tests/wizard_browser`).

use anyhow::{Context, Result, ensure};
use entra_client::OpContext;
use testkit::server::json_body as body_of;
use testkit::sim::users;
use testkit::sim_server::SimServer;

/// Done says the temporary `<server>-<provider>-token` app was removed only when the run
/// removed it: a run that found none (the customer deleted it first) says it was not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_says_removed_only_when_the_run_removed_the_temporary_app() -> Result<()> {
    let env = SimServer::start().await?;
    let client = testkit::sim::entra_client(&env.sim)?;
    let admin = testkit::sim::sign_in(&env.sim, &client, users::GLOBAL_ADMIN).await?;
    let portal = client.graph(admin.access_token);
    for (name, delete_first) in [("Sbc-Present", false), ("Sbc-Absent", true)] {
        let (token, id) = env.invited_and_signed_in("globaladmin").await?;
        if delete_first {
            let ctx = OpContext::new();
            let sp = portal
                .find_service_principal_by_app_id(&env.info.token_app_client_id, &ctx)
                .await?
                .value
                .context("the sign-in made the temporary app")?;
            portal.delete_service_principal(&sp.id, &ctx).await?;
        }
        let run = env.provision(&token, &id, name).await?;
        run.map_err(|s| anyhow::anyhow!("provision: {s:?}"))?;
        let body = format!(r#"{{"onboarding_id":"{id}"}}"#);
        let answer = env
            .server
            .wizard_post("/wizard/api/summary", &token, &body)
            .await?;
        let summary = body_of(&answer)?;
        ensure!(
            summary["temporary_app_removed"] == !delete_first,
            "{name}: {summary}"
        );
    }
    env.stop().await
}

/// The landing's facts when the service cannot read the invitation (here its stored record
/// fails the integrity check): an error the page words as "could not be reached", not
/// `{"state": "invalid"}`, which tells the admin their link was changed. A link that is not
/// genuine is still "invalid".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_reading_the_invitation_is_not_called_an_invalid_link() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invite(None).await?;
    let landing = |token: String| {
        let server = &env.server;
        async move {
            server
                .wizard_post("/wizard/api/invitation", &token, "{}")
                .await
        }
    };
    let fine = body_of(&landing(token.clone()).await?)?;
    ensure!(fine["state"] == "pending", "{fine}");
    let forged = body_of(&landing(format!("{token}x")).await?)?;
    ensure!(forged["state"] == "invalid", "{forged}");
    env.server
        .app
        .state_db()
        .open_tree(invitations::store::INVITATIONS_TREE)?
        .insert(id.as_bytes(), &b"not a record"[..])?;
    let answer = landing(token).await?;
    ensure!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    ensure!(!answer.contains("invalid"), "{answer}");
    env.stop().await
}
