//! Fault switches: replication lag with Entra's real errors, throttling, server errors,
//! latency and app management policies.

use std::time::{Duration, Instant};

use entra_sim::Faults;
use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::wire::Wire;

/// Long enough that a loaded CI machine still makes the follow-up calls inside the window.
const LAG: u64 = 1_500;
const USER_READ_ALL: &str = "df021288-bdef-4463-88db-98f22de89214";

async fn after_lag() {
    tokio::time::sleep(Duration::from_millis(LAG + 100)).await;
}

#[tokio::test]
async fn replication_lag_returns_the_real_errors_then_succeeds() {
    let env = Wire::start(Faults::default()).await;
    let ga = env.access_token("globaladmin").await;
    let graph_sp = env.graph_sp_id(&ga).await;
    env.sim.set_faults(Faults {
        replication_lag_ms: LAG,
        ..Faults::default()
    });

    let (st, app) = env
        .graph(
            Method::POST,
            "/applications",
            &ga,
            Some(json!({"displayName": "lagged"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "the write itself succeeds");
    let id = app["id"].as_str().unwrap();
    let app_id = app["appId"].as_str().unwrap();
    let (st, body) = env
        .graph(Method::GET, &format!("/applications/{id}"), &ga, None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    assert!(body["error"]["message"].as_str().unwrap().contains(id));
    let (_, list) = env
        .graph(
            Method::GET,
            &format!("/applications?$filter=appId eq '{app_id}'"),
            &ga,
            None,
        )
        .await;
    assert_eq!(
        list["value"].as_array().unwrap().len(),
        0,
        "not yet replicated to the read replica"
    );
    let (st, body) = env
        .graph(
            Method::POST,
            "/servicePrincipals",
            &ga,
            Some(json!({"appId": app_id})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_BadRequest");
    assert_eq!(
        body["error"]["details"][0]["code"],
        "NoBackingApplicationObject"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not reference a valid application object")
    );
    let (st, body) = env
        .graph(
            Method::POST,
            &format!("/applications/{id}/addPassword"),
            &ga,
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");

    after_lag().await;
    let (st, _) = env
        .graph(Method::GET, &format!("/applications/{id}"), &ga, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, sp) = env
        .graph(
            Method::POST,
            "/servicePrincipals",
            &ga,
            Some(json!({"appId": app_id})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let sp_id = sp["id"].as_str().unwrap();

    let assign = json!({"principalId": sp_id, "resourceId": graph_sp, "appRoleId": USER_READ_ALL});
    let path = format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo");
    let (st, body) = env
        .graph(Method::POST, &path, &ga, Some(assign.clone()))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["message"], "Not a valid reference update.");
    let ra = json!({"roleDefinitionId": "69091246-20e8-4a56-aa4d-066075b2a7a8", "principalId": sp_id, "directoryScopeId": "/"});
    let (st, body) = env
        .graph(
            Method::POST,
            "/roleManagement/directory/roleAssignments",
            &ga,
            Some(ra.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    let (st, body) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals(appId='{app_id}')"),
            &ga,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    let (st, pw) = env
        .graph(
            Method::POST,
            &format!("/applications/{id}/addPassword"),
            &ga,
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let secret = pw["secretText"].as_str().unwrap();
    let (st, body) = env
        .client_credentials(app_id, secret, "https://graph.microsoft.com/.default")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error_codes"][0], 700016,
        "new SP not replicated to the STS"
    );

    after_lag().await;
    let (st, _) = env.graph(Method::POST, &path, &ga, Some(assign)).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = env
        .graph(
            Method::POST,
            "/roleManagement/directory/roleAssignments",
            &ga,
            Some(ra),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, tok) = env
        .client_credentials(app_id, secret, "https://graph.microsoft.com/.default")
        .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let c = testkit::wire::claims(tok["access_token"].as_str().unwrap());
    assert!(
        c.get("roles").is_none(),
        "the fresh grant has not reached the STS yet: {c}"
    );

    // A second secret on a replicated app: the STS rejects it as wrong until it replicates.
    let (_, pw2) = env
        .graph(
            Method::POST,
            &format!("/applications/{id}/addPassword"),
            &ga,
            Some(json!({})),
        )
        .await;
    let (st, body) = env
        .client_credentials(
            app_id,
            pw2["secretText"].as_str().unwrap(),
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error_codes"][0], 7000215);
    after_lag().await;
    let (st, tok) = env
        .client_credentials(
            app_id,
            pw2["secretText"].as_str().unwrap(),
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let c = testkit::wire::claims(tok["access_token"].as_str().unwrap());
    assert_eq!(c["roles"], json!(["User.Read.All"]));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn upsert_is_consistent_even_under_lag() {
    let env = Wire::start(Faults {
        replication_lag_ms: 5_000,
        ..Faults::default()
    })
    .await;
    let t = env.access_token("appadmin").await;
    let prefer = [("Prefer", "create-if-missing")];
    let (st, _, _) = env
        .graph_full(
            Method::PATCH,
            "/applications(uniqueName='lag-svc')",
            &t,
            Some(json!({"displayName": "lag-svc"})),
            &prefer,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _, _) = env
        .graph_full(
            Method::PATCH,
            "/applications(uniqueName='lag-svc')",
            &t,
            Some(json!({"displayName": "lag-svc"})),
            &prefer,
        )
        .await;
    assert_eq!(
        st,
        StatusCode::NO_CONTENT,
        "a retried upsert updates, never duplicates"
    );
    assert_eq!(
        env.sim.snapshot()["applications"].as_array().unwrap().len(),
        1
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn throttling_sends_429_with_retry_after_deterministically() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("globaladmin").await;
    let faults = Faults {
        throttle_rate: 0.5,
        throttle_retry_after_s: 3,
        seed: Some(42),
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        env.sim.set_faults(faults.clone());
        let mut seq = Vec::new();
        for _ in 0..20 {
            let (st, h, body) = env
                .graph_full(Method::GET, "/organization", &t, None, &[])
                .await;
            if st == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(h["retry-after"], "3");
                assert_eq!(body["error"]["code"], "TooManyRequests");
                assert!(body["error"]["innerError"]["request-id"].is_string());
            } else {
                assert_eq!(st, StatusCode::OK);
            }
            seq.push(st.as_u16());
        }
        runs.push(seq);
    }
    assert_eq!(runs[0], runs[1], "same seed, same sequence");
    assert!(
        runs[0].contains(&429) && runs[0].contains(&200),
        "{:?}",
        runs[0]
    );
    // The STS is not throttled by this switch.
    env.sim.set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    });
    let dc = env.device_code(testkit::wire::SCOPE).await;
    assert!(dc["user_code"].is_string());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_cycle_503_500_504() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("globaladmin").await;
    env.sim.set_faults(Faults {
        error_rate: 1.0,
        throttle_retry_after_s: 4,
        seed: Some(1),
        ..Faults::default()
    });
    let mut got = Vec::new();
    for _ in 0..3 {
        let (st, h, body) = env.graph_full(Method::GET, "/me", &t, None, &[]).await;
        if st == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(h["retry-after"], "4");
        }
        assert!(body["error"]["code"].is_string());
        got.push(st.as_u16());
    }
    assert_eq!(got, vec![503, 500, 504]);
    env.sim.set_faults(Faults::default());
    let (st, _) = env.graph(Method::GET, "/me", &t, None).await;
    assert_eq!(st, StatusCode::OK);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("globaladmin").await;
    env.sim.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let t0 = Instant::now();
    let (st, _) = env.graph(Method::GET, "/me", &t, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn app_management_policy_errors() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("appadmin").await;
    let (_, app) = env
        .graph(
            Method::POST,
            "/applications",
            &t,
            Some(json!({"displayName": "policy"})),
        )
        .await;
    let path = format!("/applications/{}/addPassword", app["id"].as_str().unwrap());

    env.sim.set_faults(Faults {
        forbid_passwords: true,
        ..Faults::default()
    });
    let (st, body) = env.graph(Method::POST, &path, &t, Some(json!({}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["code"],
        "CredentialTypeNotAllowedAsPerAppPolicy"
    );

    env.sim.set_faults(Faults {
        password_lifetime_max_days: Some(180),
        ..Faults::default()
    });
    let (st, body) = env.graph(Method::POST, &path, &t, Some(json!({}))).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "the default two-year lifetime exceeds the cap"
    );
    assert_eq!(
        body["error"]["code"],
        "CredentialInvalidLifetimeAsPerAppPolicy"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().starts_with(
            "Credential lifetime exceeds the max value allowed as per assigned policy"
        )
    );
    let end = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    let end = end
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (st, pw) = env
        .graph(
            Method::POST,
            &path,
            &t,
            Some(json!({"passwordCredential": {"endDateTime": end}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{pw}");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn app_only_sp_creation_under_lag_gets_the_local_tenant_403() {
    let env = Wire::start(Faults::default()).await;
    let ga = env.access_token("globaladmin").await;
    let (app, sp, secret) = env.provision(&ga, "automation").await;
    let graph_sp = env.graph_sp_id(&ga).await;
    let role = "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9"; // Application.ReadWrite.All
    let (st, _) = env
        .graph(
            Method::POST,
            &format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo"),
            &ga,
            Some(json!({"principalId": sp["id"], "resourceId": graph_sp, "appRoleId": role})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, tok) = env
        .client_credentials(
            app["appId"].as_str().unwrap(),
            &secret,
            "https://graph.microsoft.com/.default",
        )
        .await;
    let app_token = tok["access_token"].as_str().unwrap();
    env.sim.set_faults(Faults {
        replication_lag_ms: LAG,
        ..Faults::default()
    });
    let (st, new_app) = env
        .graph(
            Method::POST,
            "/applications",
            app_token,
            Some(json!({"displayName": "made-by-app"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, body) = env
        .graph(
            Method::POST,
            "/servicePrincipals",
            app_token,
            Some(json!({"appId": new_app["appId"]})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(body["error"]["message"].as_str().unwrap().contains(
        "backing application of the service principal being created must in the local tenant"
    ));
    after_lag().await;
    let (st, _) = env
        .graph(
            Method::POST,
            "/servicePrincipals",
            app_token,
            Some(json!({"appId": new_app["appId"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn sts_throttling_is_plain_text_429_with_retry_after() {
    let env = Wire::start(Faults {
        sts_throttle_rate: 1.0,
        throttle_retry_after_s: 9,
        ..Faults::default()
    })
    .await;
    let r = env
        .http
        .post(env.url(&format!("/{}/oauth2/v2.0/token", env.info.tenant_id)))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "x"),
            ("client_secret", "y"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "9");
    assert_eq!(r.text().await.unwrap(), "Too Many Requests");
    // Discovery is not throttled, and lifting the switch restores service.
    let r = env
        .http
        .get(env.url(&format!(
            "/{}/v2.0/.well-known/openid-configuration",
            env.info.tenant_id
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    env.sim.set_faults(Faults::default());
    assert!(env.device_code(testkit::wire::SCOPE).await["device_code"].is_string());
    env.sim.shutdown().await;
}
