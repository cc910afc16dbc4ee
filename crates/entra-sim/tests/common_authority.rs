//! The tenant-independent authorities (`common`, `organizations`) over real HTTPS: a user
//! signs in through them, an application with its own secret cannot (docs/microsoft.md §24).

use serde_json::Value;
use testkit::wire::{GRAPH_DEFAULT, SCOPE, Wire, access_claims, assert_sts_error, claims, str_of};

#[tokio::test]
async fn client_credentials_need_a_tenant_specific_authority() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let (app, _sp, secret) = env.provision(&t, "daemon").await;
    let app_id = str_of(&app["appId"]);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", app_id.as_str()),
        ("client_secret", secret.as_str()),
        ("scope", GRAPH_DEFAULT),
    ];
    for authority in ["common", "organizations", "Organizations"] {
        let body: Value = env.token_at(authority, &form).await.expect(400);
        assert_sts_error(&body, "invalid_request", 50059);
        let desc = str_of(&body["error_description"]);
        assert!(
            desc.starts_with("AADSTS50059: No tenant-identifying information found in either the request or implied by any provided credentials.\r\nTrace ID: "),
            "{authority}: {desc}"
        );
        assert!(body.get("access_token").is_none(), "{body}");
    }
    // By tenant id or domain the same request gets its token.
    for authority in [&env.info.tenant_id, &env.info.tenant_domain] {
        let tok = env.token_at(authority, &form).await.expect(200);
        assert_eq!(access_claims(&tok)["tid"], env.info.tenant_id.as_str());
    }
    env.sim.shutdown().await;
}

#[tokio::test]
async fn a_user_still_signs_in_through_organizations_and_common() {
    let env = Wire::start(entra_sim::Faults::default()).await;
    for authority in ["organizations", "common"] {
        let dc = env.device_code_at(authority, SCOPE).await.expect(200);
        let upn = env.upn("globaladmin");
        let tok = env.complete_at(authority, &dc, &upn).await.expect(200);
        let access = str_of(&tok["access_token"]);
        assert_eq!(claims(&access)["tid"], env.info.tenant_id.as_str());
        // Its refresh token is redeemed there too.
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", env.info.token_app_client_id.as_str()),
            ("refresh_token", &str_of(&tok["refresh_token"])),
        ];
        env.token_at(authority, &form).await.expect(200);
    }
    env.sim.shutdown().await;
}
