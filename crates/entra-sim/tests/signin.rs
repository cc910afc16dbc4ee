//! Sign-in edge cases: the browser page, the public token app, expired secrets, consent
//! on refresh and unknown users.

use entra_sim::Faults;
use reqwest::{Method, StatusCode};
use testkit::wire::{SCOPE, Wire, assert_sts_error, claims};

#[tokio::test]
async fn the_verification_page_form_completes_a_sign_in() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(SCOPE).await;
    let code = dc["user_code"].as_str().unwrap().to_ascii_lowercase();
    let page = env
        .http
        .get(dc["verification_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let r = env
        .http
        .post(env.url("/devicelogin"))
        .form(&[
            ("user_code", code.as_str()),
            ("upn", &env.upn("appadmin")),
            ("action", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("You have signed in to the <b>Sandbox1-sp2-token</b> application"),
        "{html}"
    );
    let (st, tok) = env.poll(dc["device_code"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    // Entering the same code again is refused (AADSTS90120).
    let r = env
        .http
        .post(env.url("/devicelogin"))
        .form(&[("user_code", code.as_str()), ("upn", &env.upn("appadmin"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("AADSTS90120"));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn public_token_app_cannot_use_client_credentials_and_guid_audience_is_kept() {
    let env = Wire::start(Faults::default()).await;
    let admin = env.access_token("globaladmin").await;
    let (st, body) = env
        .client_credentials(
            &env.info.token_app_client_id,
            "anything",
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_sts_error(&body, "invalid_client", 700025);
    let (app, _, secret) = env.provision(&admin, "guid-aud").await;
    let (st, tok) = env
        .client_credentials(
            app["appId"].as_str().unwrap(),
            &secret,
            "00000003-0000-0000-c000-000000000000/.default",
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let t = tok["access_token"].as_str().unwrap();
    assert_eq!(claims(t)["aud"], "00000003-0000-0000-c000-000000000000");
    // Graph accepts either audience form.
    let (st, body) = env.graph(Method::GET, "/applications", t, None).await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "accepted as Graph token, but no roles: {body}"
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn expired_secret_unconsented_refresh_scope_and_unknown_user() {
    let env = Wire::start(Faults::default()).await;
    let admin = env.access_token("globaladmin").await;
    let (app, _, _) = env.provision(&admin, "old-secret").await;
    let (st, pw) = env
        .graph(
            Method::POST,
            &format!("/applications/{}/addPassword", app["id"].as_str().unwrap()),
            &admin,
            Some(serde_json::json!({"passwordCredential": {"startDateTime": "2020-01-01T00:00:00Z", "endDateTime": "2021-01-01T00:00:00Z"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{pw}");
    let (st, body) = env
        .client_credentials(
            app["appId"].as_str().unwrap(),
            pw["secretText"].as_str().unwrap(),
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_sts_error(&body, "invalid_client", 7000222);

    // A refresh asking for a permission never consented needs a new interactive sign-in.
    let dc = env.device_code("User.Read offline_access").await;
    env.sim
        .complete_device_login(dc["user_code"].as_str().unwrap(), &env.upn("appadmin"))
        .await
        .unwrap();
    let (_, tok) = env.poll(dc["device_code"].as_str().unwrap()).await;
    // scp carries everything consented for the client on Graph, not only what was asked now.
    assert_eq!(
        claims(tok["access_token"].as_str().unwrap())["scp"],
        "User.Read AppRoleAssignment.ReadWrite.All Application.Read.All Application.ReadWrite.All DelegatedPermissionGrant.ReadWrite.All Directory.Read.All RoleManagement.Read.Directory RoleManagement.ReadWrite.Directory"
    );
    let cid = env.info.token_app_client_id.clone();
    let (st, body) = env
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &cid),
            ("refresh_token", tok["refresh_token"].as_str().unwrap()),
            ("scope", "Domain.ReadWrite.All offline_access"),
        ])
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_sts_error(&body, "invalid_grant", 65001);
    // Once an admin consents to it for the tenant, the same refresh token may ask for it.
    let dc = env.device_code("Domain.ReadWrite.All").await;
    env.sim
        .complete_device_login(dc["user_code"].as_str().unwrap(), &env.upn("globaladmin"))
        .await
        .unwrap();
    let (st, body) = env
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &cid),
            ("refresh_token", tok["refresh_token"].as_str().unwrap()),
            ("scope", "Domain.ReadWrite.All offline_access"),
        ])
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["scp"]
            .as_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("Domain.ReadWrite.All")
    );

    let dc = env.device_code(SCOPE).await;
    let err = env
        .sim
        .complete_device_login(
            dc["user_code"].as_str().unwrap(),
            "ghost@contoso.onmicrosoft.com",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, entra_sim::SimError::UnknownUser(_)), "{err}");
    env.sim.shutdown().await;
}
