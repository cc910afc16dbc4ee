//! Identity platform endpoints over real HTTPS: discovery, JWKS, device code, refresh,
//! client credentials, and the /_sim control endpoints.

use entra_sim::{APP_ADMIN, Faults, GLOBAL_ADMIN};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::wire::{SCOPE, Wire, assert_sts_error, claims};

#[tokio::test]
async fn discovery_and_jwks_describe_the_emulator() {
    let env = Wire::start(Faults::default()).await;
    let tid = &env.info.tenant_id;
    for seg in [
        tid.as_str(),
        env.info.tenant_domain.as_str(),
        "organizations",
        "common",
    ] {
        let r = env
            .http
            .get(env.url(&format!("/{seg}/v2.0/.well-known/openid-configuration")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{seg}");
        let d: Value = r.json().await.unwrap();
        assert!(
            d["device_authorization_endpoint"]
                .as_str()
                .unwrap()
                .ends_with("/oauth2/v2.0/devicecode")
        );
        assert!(
            d["token_endpoint"]
                .as_str()
                .unwrap()
                .starts_with(&env.info.base_url)
        );
    }
    let d: Value = env
        .http
        .get(env.url(&format!("/{tid}/v2.0/.well-known/openid-configuration")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], format!("{}/{tid}/v2.0", env.info.base_url));
    let jwks: Value = env
        .http
        .get(d["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = env.access_token("globaladmin").await;
    let header: Value = {
        use base64::Engine;
        let h = token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header["alg"], "RS256");
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);

    let r = env
        .http
        .get(env.url("/nosuchtenant.example/v2.0/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_sts_error(&r.json().await.unwrap(), "invalid_request", 90002);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn device_flow_pending_then_success_with_entra_claims() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(SCOPE).await;
    assert_eq!(dc["expires_in"], 900);
    assert_eq!(dc["interval"], 5);
    assert_eq!(
        dc["verification_uri"],
        format!("{}/devicelogin", env.info.base_url)
    );
    assert!(
        dc["message"]
            .as_str()
            .unwrap()
            .contains(dc["user_code"].as_str().unwrap())
    );
    assert!(dc.get("verification_uri_complete").is_none());
    let device_code = dc["device_code"].as_str().unwrap();

    let (st, body) = env.poll(device_code).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_sts_error(&body, "authorization_pending", 70016);

    // The script path: POST /_sim/devicelogin.
    let r = env
        .http
        .post(env.url("/_sim/devicelogin"))
        .form(&[
            ("user_code", dc["user_code"].as_str().unwrap()),
            ("upn", &env.upn("globaladmin")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let (st, tok) = env.poll(device_code).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok["refresh_token"].as_str().is_some());
    assert!(tok["id_token"].as_str().is_some());
    let c = claims(tok["access_token"].as_str().unwrap());
    let ga = env
        .info
        .users
        .iter()
        .find(|u| u.upn == env.upn("globaladmin"))
        .unwrap();
    assert_eq!(c["tid"], env.info.tenant_id);
    assert_eq!(c["oid"], ga.id);
    assert_eq!(c["upn"], ga.upn);
    assert_eq!(c["aud"], "https://graph.microsoft.com");
    assert_eq!(
        c["iss"],
        format!("https://sts.windows.net/{}/", env.info.tenant_id)
    );
    assert_eq!(c["appid"], env.info.token_app_client_id);
    assert_eq!(c["ver"], "1.0");
    assert!(
        c["wids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w == GLOBAL_ADMIN)
    );
    let scp = c["scp"].as_str().unwrap();
    assert!(
        scp.split(' ').any(|s| s == "Application.ReadWrite.All"),
        "{scp}"
    );
    assert!(c.get("roles").is_none());
    assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());
    let id = claims(tok["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], env.info.token_app_client_id);
    assert_eq!(id["ver"], "2.0");
    assert_eq!(id["preferred_username"], ga.upn);

    // Redeemed codes cannot be reused.
    let (st, body) = env.poll(device_code).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_sts_error(&body, "invalid_grant", 54005);

    // The consent created the temporary token app's enterprise app.
    let snap = env.sim.snapshot();
    let sps: Vec<&Value> = snap["service_principals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["app_id"] == env.info.token_app_client_id)
        .collect();
    assert_eq!(sps.len(), 1);
    assert_eq!(sps[0]["display_name"], "Sandbox1-sp2-token");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn device_flow_slow_down_when_polling_faster_than_interval() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(SCOPE).await;
    let code = dc["device_code"].as_str().unwrap();
    let (_, first) = env.poll(code).await;
    assert_eq!(first["error"], "authorization_pending");
    let (st, second) = env.poll(code).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(second["error"], "slow_down");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn device_flow_declined_by_page_and_by_fault() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(SCOPE).await;
    let r = env
        .http
        .post(env.url("/_sim/devicelogin"))
        .form(&[
            ("user_code", dc["user_code"].as_str().unwrap()),
            ("upn", &env.upn("appadmin")),
            ("action", "decline"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (st, body) = env.poll(dc["device_code"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_sts_error(&body, "authorization_declined", 65004);

    env.sim.set_faults(Faults {
        decline_all_signins: true,
        ..Faults::default()
    });
    let dc = env.device_code(SCOPE).await;
    env.sim
        .complete_device_login(dc["user_code"].as_str().unwrap(), &env.upn("globaladmin"))
        .await
        .unwrap();
    let (_, body) = env.poll(dc["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "authorization_declined");
    // The control endpoint reports what really happened.
    let dc = env.device_code(SCOPE).await;
    let r: Value = env
        .http
        .post(env.url("/_sim/devicelogin"))
        .form(&[
            ("user_code", dc["user_code"].as_str().unwrap()),
            ("upn", &env.upn("globaladmin")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "declined");
    assert_eq!(r["app"], "Sandbox1-sp2-token");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn device_flow_expired_and_bad_codes() {
    let env = Wire::start(Faults {
        device_code_ttl_s: Some(1),
        ..Faults::default()
    })
    .await;
    let dc = env.device_code(SCOPE).await;
    assert_eq!(dc["expires_in"], 1);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, body) = env.poll(dc["device_code"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_sts_error(&body, "expired_token", 70019);
    let err = env
        .sim
        .complete_device_login(dc["user_code"].as_str().unwrap(), &env.upn("globaladmin"))
        .await
        .unwrap_err();
    assert!(matches!(err, entra_sim::SimError::CodeExpired));

    let (st, body) = env.poll("not-a-device-code").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_sts_error(&body, "bad_verification_code", 70018);
    let r = env
        .http
        .post(env.url("/_sim/devicelogin"))
        .form(&[("user_code", "NOPE12345"), ("upn", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn device_code_request_errors() {
    let env = Wire::start(Faults::default()).await;
    let url = env.url(&format!("/{}/oauth2/v2.0/devicecode", env.info.tenant_id));
    let r = env
        .http
        .post(&url)
        .form(&[
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("scope", "User.Read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_sts_error(&r.json().await.unwrap(), "unauthorized_client", 700016);
    let r = env
        .http
        .post(&url)
        .form(&[
            ("client_id", env.info.token_app_client_id.as_str()),
            ("scope", "Not.A.Permission"),
        ])
        .send()
        .await
        .unwrap();
    assert_sts_error(&r.json().await.unwrap(), "invalid_scope", 70011);
    let r = env
        .http
        .post(&url)
        .form(&[("client_id", env.info.token_app_client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_sts_error(&r.json().await.unwrap(), "invalid_request", 900144);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn plain_user_cannot_consent_admin_scopes() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(SCOPE).await;
    let err = env
        .sim
        .complete_device_login(dc["user_code"].as_str().unwrap(), &env.upn("user"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, entra_sim::SimError::ConsentRequired(_)),
        "{err}"
    );
    // Once an admin consented for everyone, the same user can sign in.
    env.sign_in("appadmin").await;
    let tok = env.sign_in("user").await;
    let c = claims(tok["access_token"].as_str().unwrap());
    assert_eq!(
        c["wids"].as_array().unwrap().len(),
        1,
        "only the member role"
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn refresh_token_gives_new_tokens() {
    let env = Wire::start(Faults::default()).await;
    let tok = env.sign_in("appadmin").await;
    let rt = tok["refresh_token"].as_str().unwrap();
    let cid = env.info.token_app_client_id.clone();
    let (st, fresh) = env
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &cid),
            ("refresh_token", rt),
            ("scope", SCOPE),
        ])
        .await;
    assert_eq!(st, StatusCode::OK, "{fresh}");
    let c = claims(fresh["access_token"].as_str().unwrap());
    assert_eq!(c["upn"], env.upn("appadmin"));
    assert!(c["wids"].as_array().unwrap().iter().any(|w| w == APP_ADMIN));
    assert_ne!(fresh["refresh_token"], tok["refresh_token"]);
    let (st, body) = env
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &cid),
            ("refresh_token", "1.garbage"),
        ])
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_sts_error(&body, "invalid_grant", 9002313);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn client_credentials_ok_wrong_secret_unknown_client() {
    let env = Wire::start(Faults::default()).await;
    let admin = env.access_token("globaladmin").await;
    let (app, sp, secret) = env.provision(&admin, "svc-cc").await;
    let app_id = app["appId"].as_str().unwrap();

    let (st, tok) = env
        .client_credentials(app_id, &secret, "https://graph.microsoft.com/.default")
        .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok.get("refresh_token").is_none());
    let c = claims(tok["access_token"].as_str().unwrap());
    assert_eq!(c["appid"], app_id);
    assert_eq!(c["oid"], sp["id"]);
    assert_eq!(c["idtyp"], "app");
    assert!(
        c.get("roles").is_none(),
        "nothing granted yet: no roles claim"
    );

    let (st, body) = env
        .client_credentials(
            app_id,
            "wrong-secret",
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_sts_error(&body, "invalid_client", 7000215);

    let (st, body) = env
        .client_credentials(
            "99999999-8888-7777-6666-555555555555",
            &secret,
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_sts_error(&body, "unauthorized_client", 700016);

    let (st, body) = env
        .client_credentials(app_id, &secret, "https://graph.microsoft.com/User.Read.All")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_sts_error(&body, "invalid_scope", 1002012);

    let (st, body) = env
        .client_credentials(app_id, &secret, "api://nothing-here/.default")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_sts_error(&body, "invalid_resource", 500011);

    // Basic auth is accepted too.
    let r = env
        .http
        .post(env.url(&format!("/{}/oauth2/v2.0/token", env.info.tenant_domain)))
        .basic_auth(app_id, Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "48ac35b8-9aa8-4d74-927d-1f4a14a0b239/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        claims(v["access_token"].as_str().unwrap())["aud"],
        "48ac35b8-9aa8-4d74-927d-1f4a14a0b239"
    );

    // Secrets are stored hashed, never in clear.
    let snap = env.sim.snapshot().to_string();
    assert!(!snap.contains(&secret));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn sim_info_and_faults_endpoints() {
    let env = Wire::start(Faults::default()).await;
    let info: entra_sim::SimInfo = env
        .http
        .get(env.url("/_sim/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info, env.sim.info());
    assert_eq!(info.tenant_domain, "contoso.onmicrosoft.com");
    let roles: Vec<(String, Vec<String>)> = info
        .users
        .iter()
        .map(|u| (u.upn.clone(), u.roles.clone()))
        .collect();
    assert!(roles.contains(&(
        "globaladmin@contoso.onmicrosoft.com".into(),
        vec!["Global Administrator".into()]
    )));
    assert!(roles.contains(&(
        "privroleadmin@contoso.onmicrosoft.com".into(),
        vec!["Privileged Role Administrator".into()]
    )));
    assert!(roles.contains(&(
        "appadmin@contoso.onmicrosoft.com".into(),
        vec!["Application Administrator".into()]
    )));
    assert!(roles.contains(&("user@contoso.onmicrosoft.com".into(), vec![])));

    let r = env
        .http
        .post(env.url("/_sim/faults"))
        .json(&serde_json::json!({"replication_lag_ms": 1234, "throttle_rate": 0.5, "seed": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let f: Faults = env
        .http
        .get(env.url("/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f.replication_lag_ms, 1234);
    assert_eq!(f.seed, Some(7));

    // The human page renders the form with the seeded users.
    let page = env
        .http
        .get(env.url("/devicelogin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<form") && page.contains("appadmin@contoso.onmicrosoft.com"));
    let _ = env.graph(Method::GET, "/me", "x", None).await;
    env.sim.shutdown().await;
}
