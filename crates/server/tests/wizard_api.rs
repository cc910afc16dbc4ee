//! The wizard's JSON API over plain HTTP, as its page calls it, where a browser adds nothing
//! (the page itself is tested in Chromium: `tests/wizard_browser`).

use anyhow::{Context, Result, ensure};
use entra_client::OpContext;
use testkit::sim::users;
use testkit::sim_server::SimServer;

/// The JSON body of a wizard answer (after the blank line), which must be a 200.
fn body_of(answer: &str) -> Result<serde_json::Value> {
    ensure!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, body) = answer.split_once("\r\n\r\n").context("no body")?;
    Ok(serde_json::from_str(body)?)
}

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
