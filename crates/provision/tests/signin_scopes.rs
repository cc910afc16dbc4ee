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
