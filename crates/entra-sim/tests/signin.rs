//! Sign-in edge cases: the browser page, the public token app, expired secrets, consent
//! on refresh and unknown users.

use entra_sim::Faults;
use serde_json::json;
use testkit::wire::ids::GRAPH;
use testkit::wire::{GRAPH_DEFAULT, SCOPE, Wire, access_claims, str_of};

#[tokio::test]
async fn the_verification_page_form_completes_a_sign_in() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(SCOPE).await;
    let code = str_of(&dc["user_code"]).to_ascii_lowercase();
    env.get_raw(&str_of(&dc["verification_uri"]))
        .await
        .expect_text(200);
    let upn = env.upn("appadmin");
    let form = [("user_code", code.as_str()), ("upn", &upn)];
    let approve = [&form[..], &[("action", "approve")]].concat();
    let html = env
        .post_form("/devicelogin", &approve)
        .await
        .expect_text(200);
    assert!(
        html.contains("You have signed in to the <b>Sandbox1-sp2-token</b> application"),
        "{html}"
    );
    env.poll(&str_of(&dc["device_code"])).await.expect(200);
    // Entering the same code again is refused (AADSTS90120).
    let again = env.post_form("/devicelogin", &form).await.expect_text(409);
    assert!(again.contains("AADSTS90120"));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn public_token_app_cannot_use_client_credentials_and_guid_audience_is_kept() {
    let (env, admin) = Wire::signed_in("globaladmin").await;
    let token_app = &env.info.token_app_client_id;
    let r = env
        .client_credentials(token_app, "anything", GRAPH_DEFAULT)
        .await;
    r.expect_sts_error(401, "invalid_client", 700025);
    let (app, _, secret) = env.provision(&admin, "guid-aud").await;
    let app_id = str_of(&app["appId"]);
    let r = env
        .client_credentials(&app_id, &secret, &format!("{GRAPH}/.default"))
        .await;
    let tok = r.expect(200);
    assert_eq!(access_claims(&tok)["aud"], GRAPH);
    // Graph accepts either audience form.
    let r = env
        .get(&str_of(&tok["access_token"]), "/applications")
        .await;
    assert_eq!(
        r.status, 403,
        "accepted as Graph token, but no roles: {}",
        r.text
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn expired_secret_unconsented_refresh_scope_and_unknown_user() {
    let (env, admin) = Wire::signed_in("globaladmin").await;
    let (app, _, _) = env.provision(&admin, "old-secret").await;
    let old =
        json!({"startDateTime": "2020-01-01T00:00:00Z", "endDateTime": "2021-01-01T00:00:00Z"});
    let pw = env.add_password(&admin, &app, old).await.expect(200);
    let r = env.app_token(&app, &str_of(&pw["secretText"])).await;
    r.expect_sts_error(401, "invalid_client", 7000222);

    // A refresh asking for a permission never consented needs a new interactive sign-in.
    let tok = env
        .sign_in_with("appadmin", "User.Read offline_access")
        .await;
    // scp carries everything consented for the client on Graph, not only what was asked now.
    assert_eq!(
        access_claims(&tok)["scp"],
        "User.Read AppRoleAssignment.ReadWrite.All Application.Read.All Application.ReadWrite.All DelegatedPermissionGrant.ReadWrite.All Directory.Read.All RoleManagement.Read.Directory RoleManagement.ReadWrite.Directory"
    );
    let cid = env.info.token_app_client_id.clone();
    let rt = str_of(&tok["refresh_token"]);
    let refresh = [
        ("grant_type", "refresh_token"),
        ("client_id", &cid),
        ("refresh_token", &rt),
        ("scope", "Domain.ReadWrite.All offline_access"),
    ];
    let r = env.token(&refresh).await;
    r.expect_sts_error(400, "invalid_grant", 65001);
    // Once an admin consents to it for the tenant, the same refresh token may ask for it.
    env.sign_in_with("globaladmin", "Domain.ReadWrite.All")
        .await;
    let body = env.token(&refresh).await.expect(200);
    let scp = str_of(&access_claims(&body)["scp"]);
    assert_eq!(scp.split(' ').next(), Some("Domain.ReadWrite.All"));

    let dc = env.device_code(SCOPE).await;
    let user_code = str_of(&dc["user_code"]);
    let err = env
        .sim
        .complete_device_login(&user_code, "ghost@contoso.onmicrosoft.com");
    let err = err.await.unwrap_err();
    assert!(matches!(err, entra_sim::SimError::UnknownUser(_)), "{err}");
    env.sim.shutdown().await;
}
