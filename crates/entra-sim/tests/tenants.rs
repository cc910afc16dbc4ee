//! Several customer tenants in one emulator: each has its own directory, users and tokens.

use entra_sim::{Faults, SimInfo};
use testkit::wire::{GRAPH_DEFAULT, SCOPE, Wire, access_claims, claims, count, str_of};

#[tokio::test]
async fn a_second_tenant_is_isolated_from_the_first() {
    let env = Wire::start(Faults::default()).await;
    let fab = env.sim.add_tenant("fabrikam.onmicrosoft.com");
    assert_ne!(fab.tenant_id, env.info.tenant_id);
    let token_app = &fab.token_app_client_id;
    assert_eq!(
        token_app, &env.info.token_app_client_id,
        "one multi-tenant token app"
    );
    let r = env.post_form("/_sim/tenants", &[("domain", "fabrikam.onmicrosoft.com")]);
    let again: SimInfo = serde_json::from_value(r.await.expect(201)).unwrap();
    assert_eq!(
        again.tenant_id, fab.tenant_id,
        "adding a domain twice is idempotent"
    );
    let all = env.get_raw("/_sim/tenants").await.expect(200);
    let all: Vec<SimInfo> = serde_json::from_value(all).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].tenant_id, env.info.tenant_id, "primary first");

    // Discovery names the tenant it is asked about.
    let d = env.discovery("fabrikam.onmicrosoft.com").await.expect(200);
    let issuer = format!("{}/{}/v2.0", env.info.base_url, fab.tenant_id);
    assert_eq!(d["issuer"], issuer);

    // A Fabrikam admin signs in at Fabrikam's authority.
    let dc = env.device_code_at(&fab.tenant_id, SCOPE).await.expect(200);
    let user_code = str_of(&dc["user_code"]);
    let err = env
        .sim
        .complete_device_login(&user_code, &env.upn("globaladmin"))
        .await;
    let err = err.unwrap_err();
    assert!(
        matches!(err, entra_sim::SimError::ExternalUserNotInTenant(_)),
        "a Contoso user, no guest of Fabrikam, cannot sign in at Fabrikam: {err}"
    );
    // That sign-in is over (its poll reports AADSTS50020); the Fabrikam admin starts anew.
    let refused = env
        .poll_at(&fab.tenant_id, &str_of(&dc["device_code"]))
        .await;
    refused.expect_sts_error(400, "invalid_grant", 50020);
    let dc = env.device_code_at(&fab.tenant_id, SCOPE).await.expect(200);
    let user_code = str_of(&dc["user_code"]);
    let fab_admin = "globaladmin@fabrikam.onmicrosoft.com";
    env.sim
        .complete_device_login(&user_code, fab_admin)
        .await
        .unwrap();
    // Redeemed at "the same tenant or tenant alias used in the initial request" only.
    let device_code = str_of(&dc["device_code"]);
    env.poll_at(&env.info.tenant_id, &device_code)
        .await
        .expect_sts_error(400, "invalid_grant", 700005);
    let tok = env.poll_at(&fab.tenant_id, &device_code).await;
    let fab_token = tok.access_token();
    assert_eq!(claims(&fab_token)["tid"], fab.tenant_id);

    // Objects land in Fabrikam only.
    let (app, _, secret) = env.provision(&fab_token, "fab-svc").await;
    let contoso_token = env.access_token("globaladmin").await;
    let path = "/applications?$filter=displayName eq 'fab-svc'";
    assert_eq!(count(&env.get(&contoso_token, path).await.expect(200)), 0);
    assert_eq!(count(&env.get(&fab_token, path).await.expect(200)), 1);
    let primary = env.sim.snapshot()["applications"].as_array().unwrap().len();
    assert_eq!(primary, 0, "snapshot is the primary tenant");
    let org = env.get(&fab_token, "/organization").await.expect(200);
    assert_eq!(org["value"][0]["displayName"], "Fabrikam");

    // The new app authenticates at its own tenant, not at Contoso's.
    let app_id = str_of(&app["appId"]);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", &app_id),
        ("client_secret", &secret),
        ("scope", GRAPH_DEFAULT),
    ];
    let t = env.token_at(&fab.tenant_id, &form).await.expect(200);
    assert_eq!(access_claims(&t)["tid"], fab.tenant_id);
    let t = env.token_at(&env.info.tenant_id, &form).await.expect(400);
    assert_eq!(t["error_codes"][0], 700016);

    // organizations: the user's home tenant issues the token.
    let dc = env.device_code_at("organizations", SCOPE).await.expect(200);
    let fab_app_admin = "appadmin@fabrikam.onmicrosoft.com";
    let tok = env.complete_at("organizations", &dc, fab_app_admin).await;
    let tok = tok.access_token();
    assert_eq!(claims(&tok)["tid"], fab.tenant_id);
    let me = env.get(&tok, "/me").await.expect(200);
    assert_eq!(me["userPrincipalName"], fab_app_admin);
    env.sim.shutdown().await;
}
