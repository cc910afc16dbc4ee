//! Behaviours where the emulator follows Microsoft's documentation to the letter, because a
//! client built against a kinder emulator would break against the real service
//! (docs/microsoft.md).

use entra_sim::Faults;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::wire::Wire;

/// A device sign-in as `nick` asking for exactly `scope`; returns the access token.
async fn token_with(env: &Wire, nick: &str, scope: &str) -> String {
    let dc = env.device_code(scope).await;
    env.sim
        .complete_device_login(dc["user_code"].as_str().unwrap(), &env.upn(nick))
        .await
        .unwrap();
    let (st, body) = env.poll(dc["device_code"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn roles_in(body: &Value) -> Vec<&Value> {
    body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["@odata.type"] == "#microsoft.graph.directoryRole")
        .collect()
}

#[tokio::test]
async fn transitive_member_of_strips_directory_roles_the_token_may_not_read() {
    let env = Wire::start(Faults::default()).await;
    let narrow = token_with(&env, "globaladmin", "User.Read openid").await;
    let (st, body) = env
        .graph(Method::GET, "/me/transitiveMemberOf", &narrow, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let roles = roles_in(&body);
    assert_eq!(roles.len(), 1, "the membership is still listed: {body}");
    let r = roles[0].as_object().unwrap();
    assert!(r["id"].is_string());
    for (k, v) in r {
        if k != "@odata.type" && k != "id" {
            assert!(v.is_null(), "{k} must be null when stripped: {body}");
        }
    }

    for scope in [
        "User.Read RoleManagement.Read.Directory",
        "User.Read RoleManagement.ReadWrite.Directory",
        "User.Read Directory.Read.All",
    ] {
        let t = token_with(&env, "globaladmin", scope).await;
        let (_, body) = env
            .graph(Method::GET, "/me/transitiveMemberOf", &t, None)
            .await;
        let roles = roles_in(&body);
        assert_eq!(
            roles[0]["roleTemplateId"], "62e90394-69f5-4237-9190-012177145e10",
            "{scope}: {body}"
        );
    }
    env.sim.shutdown().await;
}

#[tokio::test]
async fn granting_an_app_role_needs_application_read_all_too() {
    let env = Wire::start(Faults::default()).await;
    // Everything consented for the token app lands in later tokens' scp, so this tenant never
    // consents more than the test needs.
    let admin = token_with(&env, "globaladmin", "User.Read Application.ReadWrite.All").await;
    let (_, sp, _) = env.provision(&admin, "pair").await;
    let graph_sp = env.graph_sp_id(&admin).await;
    let body = serde_json::json!({
        "principalId": sp["id"],
        "resourceId": graph_sp,
        "appRoleId": "df021288-bdef-4463-88db-98f22de89214",
    });
    let path = format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo");
    // AppRoleAssignment.ReadWrite.All alone, even with Application.ReadWrite.All, is not the
    // documented pair.
    let alone = token_with(
        &env,
        "globaladmin",
        "AppRoleAssignment.ReadWrite.All Application.ReadWrite.All",
    )
    .await;
    let (st, err) = env
        .graph(Method::POST, &path, &alone, Some(body.clone()))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{err}");
    testkit::wire::assert_odata_error(&err, "Authorization_RequestDenied");
    let pair = token_with(
        &env,
        "globaladmin",
        "AppRoleAssignment.ReadWrite.All Application.Read.All",
    )
    .await;
    let (st, made) = env.graph(Method::POST, &path, &pair, Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn role_assignments_refuse_top() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("globaladmin").await;
    let base = "/roleManagement/directory/roleAssignments";
    let (st, body) = env
        .graph(Method::GET, &format!("{base}?$top=5"), &t, None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    testkit::wire::assert_odata_error(&body, "BadRequest");
    assert!(body["error"]["message"].as_str().unwrap().contains("'Top'"));
    let (st, body) = env.graph(Method::GET, base, &t, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn the_device_code_grant_has_no_code_alias() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(testkit::wire::SCOPE).await;
    env.sim
        .complete_device_login(dc["user_code"].as_str().unwrap(), &env.upn("globaladmin"))
        .await
        .unwrap();
    let (st, body) = env
        .token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", env.info.token_app_client_id.as_str()),
            ("code", dc["device_code"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    testkit::wire::assert_sts_error(&body, "invalid_request", 900144);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("'device_code'")
    );
    // The same code still works under its real name.
    let (st, body) = env.poll(dc["device_code"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn delegated_scp_holds_every_scope_consented_for_the_client() {
    let env = Wire::start(Faults::default()).await;
    let first = token_with(&env, "globaladmin", "User.Read Application.Read.All").await;
    assert!(
        testkit::wire::claims(&first)["scp"]
            .as_str()
            .unwrap()
            .contains("Application.Read.All")
    );
    let later = token_with(&env, "globaladmin", "User.Read").await;
    let scp = testkit::wire::claims(&later)["scp"]
        .as_str()
        .unwrap()
        .to_owned();
    let scopes: Vec<&str> = scp.split(' ').collect();
    assert!(
        scopes.contains(&"User.Read") && scopes.contains(&"Application.Read.All"),
        "consented earlier, so present though not asked for now: {scp}"
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn app_only_tokens_carry_the_default_wid() {
    let env = Wire::start(Faults::default()).await;
    let admin = env.access_token("globaladmin").await;
    let (app, _, secret) = env.provision(&admin, "wids").await;
    let (st, tok) = env
        .client_credentials(
            app["appId"].as_str().unwrap(),
            &secret,
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{tok}");
    let wids = testkit::wire::claims(tok["access_token"].as_str().unwrap())["wids"].clone();
    assert_eq!(
        wids,
        serde_json::json!(["0997a1d0-0d1d-4acb-b408-d5ca73121e90"]),
        "no directory roles, only the default"
    );
    env.sim.shutdown().await;
}
