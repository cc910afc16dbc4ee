//! A restarted emulator keeps its tenant, objects, CA and token-signing key.

use entra_sim::SimConfig;
use testkit::wire::{Wire, str_of};

#[tokio::test]
async fn restart_with_the_same_state_dir_keeps_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..SimConfig::default()
    };
    let first = Wire::start_with(config.clone()).await;
    let ca_file = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    assert_eq!(ca_file, first.sim.ca_pem());
    let token = first.access_token("globaladmin").await;
    let (app, _, secret) = first.provision(&token, "survivor").await;
    let info = first.info.clone();
    let fab = first.sim.add_tenant("fabrikam.onmicrosoft.com");
    // The last save happens while Fabrikam is the tenant in use.
    let helpdesk = "helpdesk@fabrikam.onmicrosoft.com";
    first.sim.add_user(helpdesk, "Help Desk", &[]);
    let ca = first.sim.ca_pem();
    first.sim.shutdown().await;

    let second = Wire::start_with(config).await;
    assert_eq!(second.info.tenant_id, info.tenant_id);
    let tenants = second.sim.tenants();
    assert_eq!(tenants.len(), 2);
    let extra = &tenants[1].tenant_id;
    assert_eq!(extra, &fab.tenant_id, "extra tenants survive too");
    assert_eq!(second.info.token_app_client_id, info.token_app_client_id);
    assert_eq!(second.sim.ca_pem(), ca, "clients keep trusting the same CA");
    // A token from before the restart still verifies (same signing key).
    let path = format!("/applications/{}", str_of(&app["id"]));
    let got = second.get(&token, &path).await.expect(200);
    assert_eq!(got["displayName"], "survivor");
    second.app_token(&app, &secret).await.expect(200);
    let snap = second.sim.snapshot();
    assert_eq!(snap["applications"].as_array().unwrap().len(), 1);
    let saved = std::fs::read_to_string(dir.path().join("directory.json")).unwrap();
    assert!(
        !saved.contains(&secret),
        "the secret is never written in clear"
    );
    second.sim.shutdown().await;
}
