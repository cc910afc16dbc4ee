//! A restarted emulator keeps its tenant, objects, CA and token-signing key.

use entra_sim::SimConfig;
use reqwest::{Method, StatusCode};
use testkit::wire::Wire;

#[tokio::test]
async fn restart_with_the_same_state_dir_keeps_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..SimConfig::default()
    };
    let first = Wire::start_with(config.clone()).await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
        first.sim.ca_pem()
    );
    let token = first.access_token("globaladmin").await;
    let (app, _, secret) = first.provision(&token, "survivor").await;
    let info = first.info.clone();
    let fab = first.sim.add_tenant("fabrikam.onmicrosoft.com");
    // The last save happens while Fabrikam is the tenant in use.
    first
        .sim
        .add_user("helpdesk@fabrikam.onmicrosoft.com", "Help Desk", &[]);
    let ca = first.sim.ca_pem();
    first.sim.shutdown().await;

    let second = Wire::start_with(config).await;
    assert_eq!(second.info.tenant_id, info.tenant_id);
    let tenants = second.sim.tenants();
    assert_eq!(tenants.len(), 2);
    assert_eq!(
        tenants[1].tenant_id, fab.tenant_id,
        "extra tenants survive too"
    );
    assert_eq!(second.info.token_app_client_id, info.token_app_client_id);
    assert_eq!(second.sim.ca_pem(), ca, "clients keep trusting the same CA");
    // A token from before the restart still verifies (same signing key).
    let (st, got) = second
        .graph(
            Method::GET,
            &format!("/applications/{}", app["id"].as_str().unwrap()),
            &token,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    assert_eq!(got["displayName"], "survivor");
    let (st, _) = second
        .client_credentials(
            app["appId"].as_str().unwrap(),
            &secret,
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let snap = second.sim.snapshot();
    assert_eq!(snap["applications"].as_array().unwrap().len(), 1);
    let saved = std::fs::read_to_string(dir.path().join("directory.json")).unwrap();
    assert!(
        !saved.contains(&secret),
        "the secret is never written in clear"
    );
    second.sim.shutdown().await;
}
