//! Behaviours where the emulator follows Microsoft's documentation to the letter, because a
//! client built against a kinder emulator would break against the real service
//! (docs/microsoft.md).

use entra_sim::Faults;
use serde_json::{Value, json};
use testkit::wire::ids::{DEFAULT_APP_WID, USER_READ_ALL};
use testkit::wire::{DEVICE_CODE_GRANT, Wire, access_claims, claims, str_of};

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
    let narrow = env.token_with("globaladmin", "User.Read openid").await;
    let body = env.get(&narrow, "/me/transitiveMemberOf").await.expect(200);
    // Groups are memberships too, listed first here: a client must pick the directory roles
    // by `@odata.type`. This token may not read groups either: type and id only.
    let group = &body["value"][0];
    assert_eq!(group["@odata.type"], "#microsoft.graph.group", "{body}");
    assert!(
        group["id"].is_string() && group["displayName"].is_null(),
        "{body}"
    );
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
        let t = env.token_with("globaladmin", scope).await;
        let body = env.get(&t, "/me/transitiveMemberOf").await.json();
        let template = &roles_in(&body)[0]["roleTemplateId"];
        let group_name = &body["value"][0]["displayName"];
        let readable = scope.contains("Directory.Read.All");
        assert_eq!(group_name.is_string(), readable, "{scope}: {body}");
        let want = "62e90394-69f5-4237-9190-012177145e10";
        assert_eq!(template, want, "{scope}: {body}");
    }
    env.sim.shutdown().await;
}

#[tokio::test]
async fn granting_an_app_role_needs_application_read_all_too() {
    let env = Wire::start(Faults::default()).await;
    // Everything consented for the token app lands in later tokens' scp, so this tenant never
    // consents more than the test needs.
    let admin = env
        .token_with("globaladmin", "User.Read Application.ReadWrite.All")
        .await;
    let (_, sp, _) = env.provision(&admin, "pair").await;
    let graph_sp = env.graph_sp_id(&admin).await;
    let role = USER_READ_ALL;
    // AppRoleAssignment.ReadWrite.All alone, even with Application.ReadWrite.All, is not the
    // documented pair.
    let alone = "AppRoleAssignment.ReadWrite.All Application.ReadWrite.All";
    let alone = env.token_with("globaladmin", alone).await;
    let r = env.assign_role(&alone, &graph_sp, &sp["id"], role).await;
    r.expect_error(403, "Authorization_RequestDenied");
    let pair = "AppRoleAssignment.ReadWrite.All Application.Read.All";
    let pair = env.token_with("globaladmin", pair).await;
    env.assign_role(&pair, &graph_sp, &sp["id"], role)
        .await
        .expect(201);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn assignments_need_every_documented_body_property() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let (_, sp, _) = env.provision(&t, "bodies").await;
    let graph_sp = env.graph_sp_id(&t).await;
    // appRoleAssignedTo: principalId, resourceId and appRoleId, though the URL names the resource.
    let path = format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo");
    let body = json!({"principalId": sp["id"], "appRoleId": USER_READ_ALL});
    env.post(&t, &path, body)
        .await
        .expect_error(400, "Request_BadRequest");
    let body = json!({"principalId": sp["id"], "resourceId": graph_sp, "appRoleId": USER_READ_ALL});
    env.post(&t, &path, body).await.expect(201);
    // roleAssignments: a scope (directoryScopeId) is required, not assumed.
    let path = "/roleManagement/directory/roleAssignments";
    let teams_admin = "69091246-20e8-4a56-aa4d-066075b2a7a8";
    let body = json!({"principalId": sp["id"], "roleDefinitionId": teams_admin});
    env.post(&t, path, body)
        .await
        .expect_error(400, "Request_BadRequest");
    let body =
        json!({"principalId": sp["id"], "roleDefinitionId": teams_admin, "directoryScopeId": "/"});
    env.post(&t, path, body).await.expect(201);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn role_assignments_refuse_top() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let base = "/roleManagement/directory/roleAssignments";
    let r = env.get(&t, &format!("{base}?$top=5")).await;
    let body = r.expect_error(400, "BadRequest");
    assert!(str_of(&body["error"]["message"]).contains("'Top'"));
    env.get(&t, base).await.expect(200);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn the_device_code_grant_has_no_code_alias() {
    let env = Wire::start(Faults::default()).await;
    let dc = env.device_code(testkit::wire::SCOPE).await;
    let user_code = str_of(&dc["user_code"]);
    let upn = env.upn("globaladmin");
    env.sim
        .complete_device_login(&user_code, &upn)
        .await
        .unwrap();
    let device_code = str_of(&dc["device_code"]);
    let r = env
        .token(&[
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", env.info.token_app_client_id.as_str()),
            ("code", &device_code),
        ])
        .await;
    let body = r.expect_sts_error(400, "invalid_request", 900144);
    assert!(str_of(&body["error_description"]).contains("'device_code'"));
    // The same code still works under its real name.
    env.poll(&device_code).await.expect(200);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn delegated_scp_holds_every_scope_consented_for_the_client() {
    let env = Wire::start(Faults::default()).await;
    let first = env
        .token_with("globaladmin", "User.Read Application.Read.All")
        .await;
    assert!(str_of(&claims(&first)["scp"]).contains("Application.Read.All"));
    let later = env.token_with("globaladmin", "User.Read").await;
    let scp = str_of(&claims(&later)["scp"]);
    let scopes: Vec<&str> = scp.split(' ').collect();
    assert!(
        scopes.contains(&"User.Read") && scopes.contains(&"Application.Read.All"),
        "consented earlier, so present though not asked for now: {scp}"
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn app_only_tokens_carry_the_default_wid() {
    let (env, admin) = Wire::signed_in("globaladmin").await;
    let (app, _, secret) = env.provision(&admin, "wids").await;
    let tok = env.app_token(&app, &secret).await.expect(200);
    let wids = access_claims(&tok)["wids"].clone();
    let default = json!([DEFAULT_APP_WID]);
    assert_eq!(wids, default, "no directory roles, only the default");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn read_only_and_unknown_properties_are_refused_not_skipped() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let read_only = |name: &str| format!("Property '{name}' is read-only and cannot be set.");
    // Graph answered this for disabledByMicrosoftStatus; Microsoft's application page marks the
    // others read-only.
    for (prop, value) in [
        ("disabledByMicrosoftStatus", json!("NotDisabled")),
        ("appId", json!("11111111-2222-4333-8444-555555555555")),
        ("id", json!("11111111-2222-4333-8444-555555555555")),
        ("publisherDomain", json!("contoso.onmicrosoft.com")),
        ("createdDateTime", json!("2026-01-01T00:00:00Z")),
    ] {
        let mut body = json!({"displayName": "ro"});
        body[prop] = value;
        let err = env
            .post(&t, "/applications", body.clone())
            .await
            .expect_error(400, "Request_BadRequest");
        assert_eq!(str_of(&err["error"]["message"]), read_only(prop));
        let path = "/applications(uniqueName='ro-upsert')";
        let err = env
            .upsert(&t, path, body)
            .await
            .expect_error(400, "Request_BadRequest");
        assert_eq!(str_of(&err["error"]["message"]), read_only(prop));
    }
    // OData annotations are not properties.
    let body = json!({"@odata.type": "#microsoft.graph.application", "displayName": "ro"});
    let app = env.post(&t, "/applications", body).await.expect(201);
    let app_path = format!("/applications/{}", str_of(&app["id"]));
    let err = env
        .patch(&t, &app_path, json!({"disabledByMicrosoftStatus": null}))
        .await
        .expect_error(400, "Request_BadRequest");
    assert_eq!(
        str_of(&err["error"]["message"]),
        read_only("disabledByMicrosoftStatus")
    );

    // The other creates refuse a property their type does not have, as applications do.
    let unknown = |err: &Value, ty: &str| {
        let m = str_of(&err["error"]["message"]);
        assert!(
            m.starts_with(&format!(
                "The property 'madeUp' does not exist on type 'microsoft.graph.{ty}'."
            )),
            "{m}"
        );
    };
    let body = json!({"appId": app["appId"], "madeUp": 1});
    let err = env
        .post(&t, "/servicePrincipals", body)
        .await
        .expect_error(400, "BadRequest");
    unknown(&err, "servicePrincipal");
    let sp = env
        .post(&t, "/servicePrincipals", json!({"appId": app["appId"]}))
        .await
        .expect(201);
    let graph_sp = env.graph_sp_id(&t).await;
    let path = format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo");
    let grant =
        json!({"principalId": sp["id"], "resourceId": graph_sp, "appRoleId": USER_READ_ALL});
    let mut odd = grant.clone();
    odd["madeUp"] = json!(1);
    let err = env
        .post(&t, &path, odd)
        .await
        .expect_error(400, "BadRequest");
    unknown(&err, "appRoleAssignment");
    env.post(&t, &path, grant).await.expect(201);
    let path = "/roleManagement/directory/roleAssignments";
    let teams_admin = "69091246-20e8-4a56-aa4d-066075b2a7a8";
    let role =
        json!({"principalId": sp["id"], "roleDefinitionId": teams_admin, "directoryScopeId": "/"});
    let mut odd = role.clone();
    odd["madeUp"] = json!(1);
    let err = env
        .post(&t, path, odd)
        .await
        .expect_error(400, "BadRequest");
    unknown(&err, "unifiedRoleAssignment");
    env.post(&t, path, role).await.expect(201);
    env.sim.shutdown().await;
}
