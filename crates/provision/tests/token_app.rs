//! The temporary enterprise app is the service principal the sign-in's consent made for the
//! provider's token app. It carries the provider app's own display name (which need not be
//! `<server>-<provider>-token`), so it is found by `appId`.

use anyhow::{Context, Result, ensure};
use entra_client::EntraClient;
use entra_sim::{Sim, SimConfig};
use provision::Engine;
use provision::{PlanRequest, ProvisionRequest};
use testkit::engine::{collect, completion, engine_config, open_audit};
use testkit::sim::{SIGN_IN_SCOPES, calm, entra_config, sign_in_with};
use testkit::snapshot::sps_where;

const PROVIDER_APP_NAME: &str = "Fabrikam Voice Onboarding";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_app_with_the_provider_apps_own_name_is_found_and_removed() -> Result<()> {
    let sim = Sim::start(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        SimConfig {
            faults: calm(),
            token_app_display_name: Some(PROVIDER_APP_NAME.into()),
            ..SimConfig::default()
        },
    )
    .await?;
    let info = sim.info();
    let client = EntraClient::new(&entra_config(&sim))?;
    let dir = tempfile::tempdir()?;
    let audit = open_audit(dir.path())?;
    let db = sled::open(dir.path().join("state"))?;
    let engine = Engine::new(engine_config(
        &client,
        &audit,
        &db,
        &info.token_app_client_id,
        None,
    )?)?;

    let upn = format!("globaladmin@{}", info.tenant_domain);
    let tokens = sign_in_with(&sim, &client, &upn, SIGN_IN_SCOPES).await?;
    let admin = engine.sign_in(&tokens, &upn, None).await?;
    let consented = sps_where(&sim.snapshot(), "app_id", &info.token_app_client_id)
        .first()
        .and_then(|s| s["display_name"].as_str().map(str::to_owned))
        .context("the sign-in made the temporary app")?;
    ensure!(consented == PROVIDER_APP_NAME, "{consented}");

    let plan = engine
        .plan(
            &admin,
            &PlanRequest {
                app_name: "Sbc-Named".into(),
                profile: "direct-routing".into(),
                platform_version: None,
            },
        )
        .await?;
    let removal = plan
        .changes
        .iter()
        .find(|c| c.action == "temporary_app.delete")
        .context("removal planned")?;
    ensure!(
        removal.operation == "delete" && removal.target == PROVIDER_APP_NAME,
        "{removal:?}"
    );

    let events = collect(
        engine
            .provision(
                ProvisionRequest {
                    onboarding_id: "onb-named".into(),
                    service_id: "svc".into(),
                    app_name: "Sbc-Named".into(),
                    profile: "direct-routing".into(),
                    platform_version: None,
                    actor: "tester".into(),
                },
                admin,
            )
            .await?,
        60,
    )
    .await?;
    completion(&events)?;
    ensure!(
        sps_where(&sim.snapshot(), "app_id", &info.token_app_client_id).is_empty(),
        "the temporary app is still there"
    );
    sim.shutdown().await;
    Ok(())
}
