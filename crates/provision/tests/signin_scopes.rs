//! The sign-in asks for the permissions the role check needs. With a minimal token app, a
//! `.default` sign-in gets directory roles without `roleTemplateId`: that must be reported as
//! the permission the token app lacks, not as an admin without roles.

use anyhow::{Result, ensure};
use entra_client::EntraClient;
use entra_sim::{Sim, SimConfig};
use provision::{ProvisionError, SIGN_IN_SCOPES, check_sign_in};
use testkit::sim::{calm, entra_config, sign_in_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_cannot_read_roles_names_the_missing_permission() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Sim::start(
        listener,
        SimConfig {
            faults: calm(),
            // A provider token app configured with less than Onboard needs.
            token_app_scopes: Some(vec!["User.Read".into(), "Application.ReadWrite.All".into()]),
            ..SimConfig::default()
        },
    )
    .await?;
    let client = EntraClient::new(&entra_config(&sim))?;
    let upn = format!("globaladmin@{}", sim.info().tenant_domain);

    let minimal = sign_in_with(
        &sim,
        &client,
        &upn,
        &["https://graph.microsoft.com/.default", "openid"],
    )
    .await?;
    let err = check_sign_in(&client, &minimal, &upn, None)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a stripped role list was accepted"))?;
    ensure!(
        matches!(err, ProvisionError::Entra { .. })
            && err.to_string().contains("RoleManagement.Read.Directory"),
        "not precise: {err}"
    );

    // The sign-in Onboard makes asks for the permissions by name and gets them by consent.
    let full = sign_in_with(&sim, &client, &upn, SIGN_IN_SCOPES).await?;
    let admin = check_sign_in(&client, &full, &upn, None).await?;
    ensure!(admin.role_names() == ["Global Administrator"], "{admin:?}");
    sim.shutdown().await;
    Ok(())
}

/// A provider token app registered with the scopes Onboard asked for before `Directory.Read.All`
/// joined them: the sign-in asks for it by name, consent grants it, and the token may make a
/// service principal an owner of its app (application-post-owners needs it next to
/// Application.ReadWrite.All), as the self-rotating profile's `app_owner` step does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_token_may_add_an_app_owner_whatever_the_token_app_lists() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    // The Graph permissions of the sign-in without the one added last (the OpenID Connect
    // scopes are no token app permissions).
    let before: Vec<String> = SIGN_IN_SCOPES
        .iter()
        .filter(|s| !["Directory.Read.All", "offline_access", "openid", "profile"].contains(s))
        .map(|s| (*s).to_owned())
        .collect();
    let config = SimConfig {
        faults: calm(),
        token_app_scopes: Some(before),
        ..SimConfig::default()
    };
    let sim = Sim::start(listener, config).await?;
    let client = EntraClient::new(&entra_config(&sim))?;
    let upn = format!("globaladmin@{}", sim.info().tenant_domain);
    let tokens = sign_in_with(&sim, &client, &upn, SIGN_IN_SCOPES).await?;
    let graph = client.graph(tokens.access_token);
    let none = testkit::portal::Grants {
        graph: &[],
        teams_api: false,
        role_template_ids: &[],
    };
    let app = testkit::portal::hand_made(&graph, "Sbc-Owner", &none).await?;
    graph
        .add_application_owner(&app.object_id, &app.sp_id, &entra_client::OpContext::new())
        .await?;
    sim.shutdown().await;
    Ok(())
}
