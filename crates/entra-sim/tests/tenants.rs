//! Several customer tenants in one emulator: each has its own directory, users and tokens.

use entra_sim::Faults;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::wire::{SCOPE, Wire, claims};

async fn device_code_at(env: &Wire, tenant: &str) -> Value {
    env.http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/devicecode")))
        .form(&[
            ("client_id", env.info.token_app_client_id.as_str()),
            ("scope", SCOPE),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn poll_at(env: &Wire, tenant: &str, device_code: &str) -> (StatusCode, Value) {
    let r = env
        .http
        .post(env.url(&format!("/{tenant}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", env.info.token_app_client_id.as_str()),
            ("device_code", device_code),
        ])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_second_tenant_is_isolated_from_the_first() {
    let env = Wire::start(Faults::default()).await;
    let fab = env.sim.add_tenant("fabrikam.onmicrosoft.com");
    assert_ne!(fab.tenant_id, env.info.tenant_id);
    assert_eq!(
        fab.token_app_client_id, env.info.token_app_client_id,
        "one multi-tenant token app"
    );
    let r = env
        .http
        .post(env.url("/_sim/tenants"))
        .form(&[("domain", "fabrikam.onmicrosoft.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let again: entra_sim::SimInfo = r.json().await.unwrap();
    assert_eq!(
        again.tenant_id, fab.tenant_id,
        "adding a domain twice is idempotent"
    );
    let all: Vec<entra_sim::SimInfo> = env
        .http
        .get(env.url("/_sim/tenants"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].tenant_id, env.info.tenant_id, "primary first");

    // Discovery names the tenant it is asked about.
    let d: Value = env
        .http
        .get(env.url("/fabrikam.onmicrosoft.com/v2.0/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["issuer"],
        format!("{}/{}/v2.0", env.info.base_url, fab.tenant_id)
    );

    // A Fabrikam admin signs in at Fabrikam's authority.
    let dc = device_code_at(&env, &fab.tenant_id).await;
    let fab_admin = "globaladmin@fabrikam.onmicrosoft.com";
    let err = env
        .sim
        .complete_device_login(dc["user_code"].as_str().unwrap(), &env.upn("globaladmin"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, entra_sim::SimError::UnknownUser(_)),
        "a Contoso user cannot sign in at Fabrikam: {err}"
    );
    env.sim
        .complete_device_login(dc["user_code"].as_str().unwrap(), fab_admin)
        .await
        .unwrap();
    let (st, tok) = poll_at(&env, &fab.tenant_id, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let fab_token = tok["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&fab_token)["tid"], fab.tenant_id);

    // Objects land in Fabrikam only.
    let (app, _, secret) = env.provision(&fab_token, "fab-svc").await;
    let contoso_token = env.access_token("globaladmin").await;
    let (_, mine) = env
        .graph(
            Method::GET,
            "/applications?$filter=displayName eq 'fab-svc'",
            &contoso_token,
            None,
        )
        .await;
    assert_eq!(mine["value"].as_array().unwrap().len(), 0);
    let (_, theirs) = env
        .graph(
            Method::GET,
            "/applications?$filter=displayName eq 'fab-svc'",
            &fab_token,
            None,
        )
        .await;
    assert_eq!(theirs["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        env.sim.snapshot()["applications"].as_array().unwrap().len(),
        0,
        "snapshot is the primary tenant"
    );
    let (_, org) = env
        .graph(Method::GET, "/organization", &fab_token, None)
        .await;
    assert_eq!(org["value"][0]["displayName"], "Fabrikam");

    // The new app authenticates at its own tenant, not at Contoso's.
    let app_id = app["appId"].as_str().unwrap();
    let cc = |tenant: String| {
        let env = &env;
        let secret = secret.clone();
        async move {
            let r = env
                .http
                .post(env.url(&format!("/{tenant}/oauth2/v2.0/token")))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", app_id),
                    ("client_secret", secret.as_str()),
                    ("scope", "https://graph.microsoft.com/.default"),
                ])
                .send()
                .await
                .unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    let (st, t) = cc(fab.tenant_id.clone()).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(
        claims(t["access_token"].as_str().unwrap())["tid"],
        fab.tenant_id
    );
    let (st, t) = cc(env.info.tenant_id.clone()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(t["error_codes"][0], 700016);

    // organizations: the user's home tenant issues the token.
    let dc = device_code_at(&env, "organizations").await;
    env.sim
        .complete_device_login(
            dc["user_code"].as_str().unwrap(),
            "appadmin@fabrikam.onmicrosoft.com",
        )
        .await
        .unwrap();
    let (st, tok) = poll_at(&env, "organizations", dc["device_code"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    assert_eq!(
        claims(tok["access_token"].as_str().unwrap())["tid"],
        fab.tenant_id
    );
    let (st, me) = env
        .graph(
            Method::GET,
            "/me",
            tok["access_token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["userPrincipalName"], "appadmin@fabrikam.onmicrosoft.com");
    env.sim.shutdown().await;
}
