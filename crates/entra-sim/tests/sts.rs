//! Identity platform endpoints over real HTTPS: discovery, JWKS, device code, refresh,
//! client credentials, and the /_sim control endpoints.

use entra_sim::{APP_ADMIN, Faults, GLOBAL_ADMIN};
use serde_json::{Value, json};
use testkit::wire::ids::TEAMS;
use testkit::wire::{GRAPH_DEFAULT, SCOPE, Wire, access_claims, claims, str_of};

/// Signs in `dc`'s user code as `upn` through the emulator's API, which must refuse: why.
async fn refused_login(env: &Wire, dc: &Value, upn: &str) -> entra_sim::SimError {
    let user_code = str_of(&dc["user_code"]);
    env.sim
        .complete_device_login(&user_code, upn)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn discovery_and_jwks_describe_the_emulator() {
    let env = Wire::start(Faults::default()).await;
    let tid = &env.info.tenant_id;
    for seg in [
        tid.as_str(),
        &env.info.tenant_domain,
        "organizations",
        "common",
    ] {
        let d = env.discovery(seg).await.expect(200);
        let device = str_of(&d["device_authorization_endpoint"]);
        assert!(
            device.ends_with("/oauth2/v2.0/devicecode"),
            "{seg}: {device}"
        );
        let token = str_of(&d["token_endpoint"]);
        assert!(token.starts_with(&env.info.base_url), "{seg}: {token}");
    }
    let d = env.discovery(tid).await.expect(200);
    assert_eq!(d["issuer"], format!("{}/{tid}/v2.0", env.info.base_url));
    let jwks = env.get_raw(&str_of(&d["jwks_uri"])).await.expect(200);
    let token = env.access_token("globaladmin").await;
    let header: Value = {
        use base64::Engine;
        let h = token.split('.').next().unwrap();
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h);
        serde_json::from_slice(&h.unwrap()).unwrap()
    };
    assert_eq!(header["alg"], "RS256");
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);

    let r = env.discovery("nosuchtenant.example").await;
    r.expect_sts_error(400, "invalid_request", 90002);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn device_flow_pending_then_success_with_entra_claims() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(SCOPE).await;
    assert_eq!(dc["expires_in"], 900);
    assert_eq!(dc["interval"], 5);
    let uri = format!("{}/devicelogin", env.info.base_url);
    assert_eq!(dc["verification_uri"], uri);
    let user_code = str_of(&dc["user_code"]);
    assert!(str_of(&dc["message"]).contains(&user_code));
    assert!(dc.get("verification_uri_complete").is_none());
    let device_code = str_of(&dc["device_code"]);

    let r = env.poll(&device_code).await;
    r.expect_sts_error(400, "authorization_pending", 70016);

    // The script path: POST /_sim/devicelogin.
    let r = env
        .sim_login(&user_code, &env.upn("globaladmin"), None)
        .await;
    r.expect(200);

    let tok = env.poll(&device_code).await.expect(200);
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok["refresh_token"].as_str().is_some());
    assert!(tok["id_token"].as_str().is_some());
    let c = access_claims(&tok);
    let ga = env
        .info
        .users
        .iter()
        .find(|u| u.upn == env.upn("globaladmin"));
    let ga = ga.unwrap();
    assert_eq!(c["tid"], env.info.tenant_id);
    assert_eq!(c["oid"], ga.id);
    assert_eq!(c["upn"], ga.upn);
    assert_eq!(c["aud"], "https://graph.microsoft.com");
    let iss = format!("https://sts.windows.net/{}/", env.info.tenant_id);
    assert_eq!(c["iss"], iss);
    assert_eq!(c["appid"], env.info.token_app_client_id);
    assert_eq!(c["ver"], "1.0");
    assert!(
        c["wids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w == GLOBAL_ADMIN)
    );
    let scp = str_of(&c["scp"]);
    assert!(
        scp.split(' ').any(|s| s == "Application.ReadWrite.All"),
        "{scp}"
    );
    assert!(c.get("roles").is_none());
    assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());
    let id = claims(&str_of(&tok["id_token"]));
    assert_eq!(id["aud"], env.info.token_app_client_id);
    assert_eq!(id["ver"], "2.0");
    assert_eq!(id["preferred_username"], ga.upn);

    // Redeemed codes cannot be reused.
    let r = env.poll(&device_code).await;
    r.expect_sts_error(400, "invalid_grant", 54005);

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
    let code = str_of(&dc["device_code"]);
    let first = env.poll(&code).await.json();
    assert_eq!(first["error"], "authorization_pending");
    let second = env.poll(&code).await.expect(400);
    assert_eq!(second["error"], "slow_down");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn slow_down_makes_the_interval_five_seconds_longer_for_every_later_poll() {
    // RFC 8628 §3.5: the interval "MUST be increased by 5 seconds for this and all subsequent
    // requests". Announced interval 1 s: after a slow_down, a poll 1.5 s later is still too fast.
    let env = Wire::start(Faults {
        device_code_interval_s: Some(1),
        ..Faults::default()
    })
    .await;
    let dc = env.device_code(SCOPE).await;
    let code = str_of(&dc["device_code"]);
    assert_eq!(
        env.poll(&code).await.json()["error"],
        "authorization_pending"
    );
    assert_eq!(env.poll(&code).await.expect(400)["error"], "slow_down");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(env.poll(&code).await.expect(400)["error"], "slow_down");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn device_flow_declined_by_page_and_by_fault() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(SCOPE).await;
    let user_code = str_of(&dc["user_code"]);
    let r = env
        .sim_login(&user_code, &env.upn("appadmin"), Some("decline"))
        .await;
    r.expect(200);
    let r = env.poll(&str_of(&dc["device_code"])).await;
    r.expect_sts_error(400, "authorization_declined", 65004);

    env.sim.set_faults(Faults {
        decline_all_signins: true,
        ..Faults::default()
    });
    let dc = env.device_code(SCOPE).await;
    let r = env
        .complete_at(&env.info.tenant_id, &dc, &env.upn("globaladmin"))
        .await;
    assert_eq!(r.json()["error"], "authorization_declined");
    // The control endpoint reports what really happened.
    let dc = env.device_code(SCOPE).await;
    let user_code = str_of(&dc["user_code"]);
    let r = env
        .sim_login(&user_code, &env.upn("globaladmin"), None)
        .await
        .json();
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
    let r = env.poll(&str_of(&dc["device_code"])).await;
    r.expect_sts_error(400, "expired_token", 70019);
    let err = refused_login(&env, &dc, &env.upn("globaladmin")).await;
    assert!(matches!(err, entra_sim::SimError::CodeExpired));

    let r = env.poll("not-a-device-code").await;
    r.expect_sts_error(400, "bad_verification_code", 70018);
    env.sim_login("NOPE12345", "x", None).await.expect_text(400);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn device_code_request_errors() {
    let env = Wire::start(Faults::default()).await;
    let path = format!("/{}/oauth2/v2.0/devicecode", env.info.tenant_id);
    let cid = env.info.token_app_client_id.as_str();
    for (form, status, error, code) in [
        (
            vec![
                ("client_id", "11111111-2222-3333-4444-555555555555"),
                ("scope", "User.Read"),
            ],
            400,
            "unauthorized_client",
            700016,
        ),
        (
            vec![("client_id", cid), ("scope", "Not.A.Permission")],
            400,
            "invalid_scope",
            70011,
        ),
        (vec![("client_id", cid)], 400, "invalid_request", 900144),
    ] {
        let r = env.post_form(&path, &form).await;
        r.expect_sts_error(status, error, code);
    }
    env.sim.shutdown().await;
}

#[tokio::test]
async fn plain_user_cannot_consent_admin_scopes() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(SCOPE).await;
    let err = refused_login(&env, &dc, &env.upn("user")).await;
    assert!(
        matches!(err, entra_sim::SimError::ConsentRequired(_)),
        "{err}"
    );
    // Once an admin consented for everyone, the same user can sign in.
    env.sign_in("appadmin").await;
    let c = access_claims(&env.sign_in("user").await);
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
    let rt = str_of(&tok["refresh_token"]);
    let cid = env.info.token_app_client_id.clone();
    let refresh = [("grant_type", "refresh_token"), ("client_id", &cid)];
    let form = [&refresh[..], &[("refresh_token", &rt), ("scope", SCOPE)]].concat();
    let fresh = env.token(&form).await.expect(200);
    let c = access_claims(&fresh);
    assert_eq!(c["upn"], env.upn("appadmin"));
    assert!(c["wids"].as_array().unwrap().iter().any(|w| w == APP_ADMIN));
    assert_ne!(fresh["refresh_token"], tok["refresh_token"]);
    let form = [&refresh[..], &[("refresh_token", "1.garbage")]].concat();
    let r = env.token(&form).await;
    r.expect_sts_error(400, "invalid_grant", 9002313);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn an_expired_access_token_is_refused_and_its_refresh_token_still_redeems() {
    let env = Wire::start(Faults::default()).await;
    let tok = env.sign_in("globaladmin").await;
    let old = str_of(&tok["access_token"]);
    env.get(&old, "/applications").await.expect(200);
    env.sim.expire_access_tokens().await;
    let r = env.get(&old, "/applications").await;
    let body = r.expect_error(401, "InvalidAuthenticationToken");
    assert_eq!(
        body["error"]["message"],
        "Lifetime validation failed, the token is expired."
    );
    let fresh = env.refresh(&tok).await.access_token();
    env.get(&fresh, "/applications").await.expect(200);
    env.sim.shutdown().await;
}

/// A revoked sign-in (Continuous Access Evaluation's critical event): Graph answers its access
/// token with a claims challenge, its refresh token is refused with AADSTS50173, app-only
/// tokens still work, and a new sign-in's tokens work.
#[tokio::test]
async fn a_revoked_sign_in_gets_a_claims_challenge_and_its_refresh_token_is_refused() {
    let (env, admin) = Wire::signed_in("globaladmin").await;
    let (app, _, secret) = env.provision(&admin, "svc-cae").await;
    let tok = env.sign_in("globaladmin").await;
    let old = str_of(&tok["access_token"]);
    assert_eq!(access_claims(&tok)["xms_cc"], json!(["cp1"]));
    // A client that declares no capability gets no claims challenge from Graph.
    let plain = env.sign_in_without_capabilities("globaladmin").await;
    assert!(access_claims(&plain).get("xms_cc").is_none());
    env.sim.revoke_sign_in_sessions().await;
    let r = env.get(&old, "/applications").await;
    let challenge = r
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.contains(r#"error="insufficient_claims""#),
        "{challenge}"
    );
    let body = r.expect_error(401, "InvalidAuthenticationToken");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("code: TokenIssuedBeforeRevocationTimestamp"),
        "{body}"
    );
    env.refresh(&tok)
        .await
        .expect_sts_error(400, "invalid_grant", 50173);
    // Without `cp1` the revoked sign-in's access token works until it expires (no Continuous
    // Access Evaluation); its refresh token is refused all the same.
    env.get(&str_of(&plain["access_token"]), "/applications")
        .await
        .expect(200);
    env.refresh(&plain)
        .await
        .expect_sts_error(400, "invalid_grant", 50173);
    let app_only = env.app_token(&app, &secret).await.access_token();
    // Accepted (no challenge); refused only because the app holds no permission yet.
    env.get(&app_only, "/organization")
        .await
        .expect_error(403, "Authorization_RequestDenied");
    let fresh = str_of(&env.sign_in("globaladmin").await["access_token"]);
    env.get(&fresh, "/applications").await.expect(200);
    env.sim.shutdown().await;
}

/// A `claims` parameter that is not a JSON object is refused before the grant runs, so the
/// device code stays redeemable.
#[tokio::test]
async fn a_malformed_claims_parameter_is_refused_and_spends_nothing() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(SCOPE).await;
    let upn = env.upn("globaladmin");
    env.sim
        .complete_device_login(&str_of(&dc["user_code"]), &upn)
        .await
        .unwrap();
    let tenant = env.info.tenant_id.clone();
    let code = str_of(&dc["device_code"]);
    for bad in ["not json", "[\"cp1\"]"] {
        env.poll_with_claims(&tenant, &code, Some(bad))
            .await
            .expect_sts_error(400, "invalid_request", 90100);
    }
    env.poll_at(&tenant, &code).await.expect(200);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn client_credentials_ok_wrong_secret_unknown_client() {
    let (env, admin) = Wire::signed_in("globaladmin").await;
    let (app, sp, secret) = env.provision(&admin, "svc-cc").await;
    let app_id = str_of(&app["appId"]);
    let (app_id, secret) = (app_id.as_str(), secret.as_str());

    let tok = env.app_token(&app, secret).await.expect(200);
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok.get("refresh_token").is_none());
    let c = access_claims(&tok);
    assert_eq!(c["appid"], app_id);
    assert_eq!(c["oid"], sp["id"]);
    assert_eq!(c["idtyp"], "app");
    assert!(
        c.get("roles").is_none(),
        "nothing granted yet: no roles claim"
    );

    let unknown = "99999999-8888-7777-6666-555555555555";
    for (client, secret, scope, status, error, code) in [
        (
            app_id,
            "wrong-secret",
            GRAPH_DEFAULT,
            401,
            "invalid_client",
            7000215,
        ),
        (
            unknown,
            secret,
            GRAPH_DEFAULT,
            400,
            "unauthorized_client",
            700016,
        ),
        (
            app_id,
            secret,
            "https://graph.microsoft.com/User.Read.All",
            400,
            "invalid_scope",
            1002012,
        ),
        (
            app_id,
            secret,
            "api://nothing-here/.default",
            400,
            "invalid_resource",
            500011,
        ),
    ] {
        let r = env.client_credentials(client, secret, scope).await;
        r.expect_sts_error(status, error, code);
    }

    // Basic auth is accepted too.
    let rb = env
        .http
        .post(env.url(&format!("/{}/oauth2/v2.0/token", env.info.tenant_domain)))
        .basic_auth(app_id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", &format!("{TEAMS}/.default")),
        ]);
    let v = env.send("POST token (basic)".into(), rb).await.expect(200);
    assert_eq!(access_claims(&v)["aud"], TEAMS);

    // Secrets are stored hashed, never in clear.
    let snap = env.sim.snapshot().to_string();
    assert!(!snap.contains(secret));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn sim_info_and_faults_endpoints() {
    let env = Wire::start(Faults::default()).await;
    let info = env.get_raw("/_sim/info").await.expect(200);
    let info: entra_sim::SimInfo = serde_json::from_value(info).unwrap();
    assert_eq!(info, env.sim.info());
    assert_eq!(info.tenant_domain, "contoso.onmicrosoft.com");
    let roles: Vec<(String, Vec<String>)> = info
        .users
        .iter()
        .map(|u| (u.upn.clone(), u.roles.clone()))
        .collect();
    for (nick, role) in [
        ("globaladmin", Some("Global Administrator")),
        ("privroleadmin", Some("Privileged Role Administrator")),
        ("appadmin", Some("Application Administrator")),
        ("user", None),
    ] {
        let want = (env.upn(nick), role.into_iter().map(String::from).collect());
        assert!(roles.contains(&want), "{want:?}");
    }

    let faults = serde_json::json!({"replication_lag_ms": 1234, "throttle_rate": 0.5, "seed": 7});
    let rb = env.http.post(env.url("/_sim/faults")).json(&faults);
    env.send("POST /_sim/faults".into(), rb)
        .await
        .expect_text(200);
    let f = env.get_raw("/_sim/faults").await.expect(200);
    let f: Faults = serde_json::from_value(f).unwrap();
    assert_eq!(f.replication_lag_ms, 1234);
    assert_eq!(f.seed, Some(7));

    // The human page renders the form with the seeded users.
    let page = env.get_raw("/devicelogin").await.text;
    assert!(page.contains("<form") && page.contains("appadmin@contoso.onmicrosoft.com"));
    let _ = env.get("x", "/me").await;
    env.sim.shutdown().await;
}
