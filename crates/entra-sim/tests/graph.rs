//! Graph v1.0 operations over real HTTPS: happy paths, documented errors, authorization,
//! upsert idempotency and paging.

use entra_sim::{Faults, PRIV_ROLE_ADMIN};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::wire::ids::{APPLICATION_READ_WRITE_ALL, GRAPH, TEAMS, USER_READ_ALL};
use testkit::wire::{GRAPH_DEFAULT, Wire, count, str_of};

const NOT_FOUND: &str = "Request_ResourceNotFound";

#[tokio::test]
async fn me_and_my_roles() {
    let (env, t) = Wire::signed_in("privroleadmin").await;
    let r = env
        .call(
            Method::GET,
            "/me",
            &t,
            None,
            &[("client-request-id", "abc-123")],
        )
        .await;
    assert_eq!(r.headers["client-request-id"], "abc-123");
    assert_eq!(r.headers["request-id"].to_str().unwrap().len(), 36);
    let me = r.expect(200);
    assert_eq!(me["userPrincipalName"], env.upn("privroleadmin"));
    let context = str_of(&me["@odata.context"]);
    assert!(context.ends_with("/v1.0/$metadata#users/$entity"));
    // Every membership is listed: the tenant's group, then the directory role.
    let roles = env.get(&t, "/me/memberOf").await.expect(200);
    assert_eq!(count(&roles), 2);
    assert_eq!(roles["value"][0]["@odata.type"], "#microsoft.graph.group");
    assert_eq!(
        roles["value"][1]["@odata.type"],
        "#microsoft.graph.directoryRole"
    );
    assert_eq!(roles["value"][1]["roleTemplateId"], PRIV_ROLE_ADMIN);
    let me_id = str_of(&me["id"]);
    let path =
        format!("/roleManagement/directory/roleAssignments?$filter=principalId eq '{me_id}'");
    let ra = env.get(&t, &path).await.expect(200);
    assert_eq!(ra["value"][0]["roleDefinitionId"], PRIV_ROLE_ADMIN);
    let org = env.get(&t, "/organization").await.expect(200);
    assert_eq!(org["value"][0]["id"], env.info.tenant_id);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn missing_or_bad_tokens_get_401() {
    let env = Wire::start(Faults::default()).await;
    let r = env.get_raw("/v1.0/me").await;
    assert!(r.headers.contains_key("www-authenticate"));
    r.expect_error(401, "InvalidAuthenticationToken");
    let r = env.get("eyJhbGciOiJSUzI1NiJ9.e30.AAAA", "/me").await;
    r.expect_error(401, "InvalidAuthenticationToken");
    // A Teams API token is not a Graph token.
    let admin = env.access_token("globaladmin").await;
    let (app, _, secret) = env.provision(&admin, "aud-check").await;
    let teams = format!("{TEAMS}/.default");
    let tok = env
        .client_credentials(&str_of(&app["appId"]), &secret, &teams)
        .await;
    let body = env
        .get(&tok.access_token(), "/applications")
        .await
        .expect(401);
    assert!(str_of(&body["error"]["message"]).contains("audience"));
    env.get(&admin, "/nonsense")
        .await
        .expect_error(400, "BadRequest");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn application_lifecycle_and_errors() {
    let (env, t) = Wire::signed_in("appadmin").await;
    let rra = json!([{"resourceAppId": GRAPH, "resourceAccess": [{"id": USER_READ_ALL, "type": "Role"}]}]);
    let body = json!({"displayName": "svc-a", "signInAudience": "AzureADMyOrg", "requiredResourceAccess": rra});
    let app = env.post(&t, "/applications", body).await.expect(201);
    let (id, app_id) = (str_of(&app["id"]), str_of(&app["appId"]));
    let by_id = format!("/applications/{id}");
    assert_ne!(id, app_id);
    assert_eq!(app["publisherDomain"], env.info.tenant_domain);
    assert_eq!(app["passwordCredentials"], json!([]));
    let access = &app["requiredResourceAccess"][0]["resourceAccess"][0];
    assert_eq!(access["id"], USER_READ_ALL);

    let got = env.get(&t, &by_id).await.expect(200);
    assert_eq!(got["displayName"], "svc-a");
    let path = format!("/applications(appId='{app_id}')?$select=id,displayName");
    let got = env.get(&t, &path).await.expect(200);
    assert_eq!(got["id"], id);
    assert!(got.get("appId").is_none(), "$select projects");
    let list = env
        .get(&t, &format!("/applications?$filter=appId eq '{app_id}'"))
        .await;
    assert_eq!(count(&list.expect(200)), 1);
    let path = "/applications?$filter=displayName eq 'svc-a'&$select=id,appId,displayName";
    let list = env.get(&t, path).await.expect(200);
    assert_eq!(list["value"][0]["appId"], app_id);
    let context = str_of(&list["@odata.context"]);
    assert!(context.ends_with("#applications(id,appId,displayName)"));
    let r = env.get(&t, "/applications?$filter=notes eq 'x'").await;
    r.expect_error(400, "Request_UnsupportedQuery");

    for (body, code) in [
        (
            json!({"signInAudience": "AzureADMyOrg"}),
            "Request_BadRequest",
        ),
        (json!({"displayName": "x", "bogus": 1}), "BadRequest"),
    ] {
        env.post(&t, "/applications", body)
            .await
            .expect_error(400, code);
    }

    env.patch(&t, &by_id, json!({"notes": "hello"}))
        .await
        .expect(204);
    assert_eq!(env.get(&t, &by_id).await.expect(200)["notes"], "hello");

    // Secrets: returned once, then only the hint.
    let end = "2030-01-01T00:00:00Z";
    let pw = json!({"displayName": "svc-1", "endDateTime": end});
    let pw = env.add_password(&t, &app, pw).await.expect(200);
    let secret = str_of(&pw["secretText"]);
    assert_eq!(secret.len(), 40);
    assert_eq!(pw["hint"], &secret[..3]);
    assert_eq!(pw["endDateTime"], end);
    let got = env.get(&t, &by_id).await.expect(200);
    assert_eq!(got["passwordCredentials"][0]["secretText"], Value::Null);
    assert_eq!(got["passwordCredentials"][0]["hint"], &secret[..3]);
    let remove = format!("/applications/{id}/removePassword");
    let key = json!({"keyId": pw["keyId"]});
    env.post(&t, &remove, key.clone()).await.expect(204);
    env.post(&t, &remove, key)
        .await
        .expect_error(400, "Request_BadRequest");

    // Delete goes to the recycle bin; a second delete is a 404.
    env.delete(&t, &by_id).await.expect(204);
    env.delete(&t, &by_id).await.expect_error(404, NOT_FOUND);
    let bin = "/directory/deletedItems/microsoft.graph.application";
    let bin = env.get(&t, bin).await.expect(200);
    assert_eq!(bin["value"][0]["id"], id);
    assert!(bin["value"][0]["deletedDateTime"].as_str().is_some());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn unique_name_upsert_never_duplicates() {
    let (env, t) = Wire::signed_in("appadmin").await;
    let path = "/applications(uniqueName='lp-contoso-svc1')";
    let created = env.upsert(&t, path, json!({"displayName": "svc1"})).await;
    let created = created.expect(201);
    assert_eq!(created["uniqueName"], "lp-contoso-svc1");
    for _ in 0..3 {
        let again = json!({"displayName": "svc1", "notes": "again"});
        env.upsert(&t, path, again).await.expect(204);
    }
    let snap = env.sim.snapshot();
    assert_eq!(
        snap["applications"].as_array().unwrap().len(),
        1,
        "no duplicate app"
    );
    let got = env.get(&t, path).await.expect(200);
    assert_eq!(got["id"], created["id"]);
    assert_eq!(got["notes"], "again");
    // Without the Prefer header a missing key is a 404.
    let r = env.patch(
        &t,
        "/applications(uniqueName='nope')",
        json!({"displayName": "n"}),
    );
    r.await.expect_error(404, NOT_FOUND);
    // uniqueName is immutable once set.
    let by_id = format!("/applications/{}", str_of(&created["id"]));
    env.patch(&t, &by_id, json!({"uniqueName": "other"}))
        .await
        .expect(400);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn service_principals_and_resource_lookup() {
    let (env, t) = Wire::signed_in("appadmin").await;
    let path =
        format!("/servicePrincipals(appId='{GRAPH}')?$select=id,appRoles,oauth2PermissionScopes");
    let graph = env.get(&t, &path).await.expect(200);
    let roles = graph["appRoles"].as_array().unwrap();
    let find = |v: &str| roles.iter().find(|r| r["value"] == v).unwrap()["id"].clone();
    assert_eq!(find("User.Read.All"), USER_READ_ALL);
    assert_eq!(
        find("Application.ReadWrite.All"),
        APPLICATION_READ_WRITE_ALL
    );
    assert_eq!(
        find("RoleManagement.Read.Directory"),
        "483bed4a-2ad3-4361-a73b-c83ccdbdc53c"
    );
    let path = &format!("/servicePrincipals?$filter=appId eq '{TEAMS}'");
    let teams = &env.get(&t, path).await.expect(200)["value"][0];
    assert_eq!(teams["displayName"], "Skype and Teams Tenant Admin API");
    assert_eq!(teams["appRoles"][0]["allowedMemberTypes"][0], "Application");
    let path = "/servicePrincipals?$filter=displayName eq 'Microsoft Graph'";
    let by_name = env.get(&t, path).await.expect(200);
    assert_eq!(by_name["value"][0]["appId"], GRAPH);

    let app = env
        .post(&t, "/applications", json!({"displayName": "svc-sp"}))
        .await;
    let app = app.expect(201);
    let for_app = json!({"appId": app["appId"]});
    let sp = env
        .post(&t, "/servicePrincipals", for_app.clone())
        .await
        .expect(201);
    assert_eq!(sp["appId"], app["appId"]);
    assert_eq!(sp["displayName"], "svc-sp");
    assert_eq!(sp["appOwnerOrganizationId"], env.info.tenant_id);
    let r = env.post(&t, "/servicePrincipals", for_app).await;
    r.expect_error(409, "Request_MultipleObjectsWithSameKeyValue");
    let no_app = json!({"appId": "12345678-1234-1234-1234-123456789012"});
    let body = env.post(&t, "/servicePrincipals", no_app).await.expect(400);
    assert_eq!(
        body["error"]["details"][0]["code"],
        "NoBackingApplicationObject"
    );
    let by_app_id = format!("/servicePrincipals(appId='{}')", str_of(&app["appId"]));
    env.delete(&t, &by_app_id).await.expect(204);
    let by_id = format!("/servicePrincipals/{}", str_of(&sp["id"]));
    env.get(&t, &by_id).await.expect_error(404, NOT_FOUND);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn deleted_app_can_be_restored_with_its_secret_or_purged() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let (app, _, secret) = env.provision(&t, "phoenix").await;
    let (id, app_id) = (str_of(&app["id"]), str_of(&app["appId"]));
    let restore = |id: &str| format!("/directory/deletedItems/{id}/restore");
    env.delete(&t, &format!("/applications/{id}"))
        .await
        .expect(204);
    let r = env
        .client_credentials(&app_id, &secret, GRAPH_DEFAULT)
        .await;
    assert_eq!(r.status, 400, "deleted app cannot sign in");
    let bin = "/directory/deletedItems/microsoft.graph.servicePrincipal";
    let sp_id = str_of(&env.get(&t, bin).await.expect(200)["value"][0]["id"]);

    // "Do not supply a request body for this method": an empty JSON object is one.
    env.post(&t, &restore(&id), json!({})).await.expect(400);
    let restored = env.post(&t, &restore(&id), Value::Null).await.expect(200);
    assert_eq!(restored["appId"], app_id);
    env.post(&t, &restore(&sp_id), Value::Null)
        .await
        .expect(200);
    let r = env
        .client_credentials(&app_id, &secret, GRAPH_DEFAULT)
        .await;
    assert_eq!(
        r.status, 200,
        "the secret came back with the app: {}",
        r.text
    );
    let r = env.post(&t, &restore(&id), Value::Null).await;
    assert_eq!(r.status, 404, "no longer in the bin");

    // Permanent deletion.
    env.delete(&t, &format!("/applications/{id}"))
        .await
        .expect(204);
    env.delete(&t, &format!("/directory/deletedItems/{id}"))
        .await
        .expect(204);
    let r = env.post(&t, &restore(&id), Value::Null).await;
    r.expect_error(404, NOT_FOUND);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn unserved_methods_and_segments_are_refused() {
    let (env, t) = Wire::signed_in("globaladmin").await;
    let sp = "/servicePrincipals/00000000-0000-0000-0000-000000000001";
    let not_allowed = "Specified HTTP method is not allowed for the request target.";
    // A method no route serves below a known collection: 405, decided before any lookup.
    for (method, path) in [
        (
            Method::POST,
            "/roleManagement/directory/roleDefinitions".to_string(),
        ),
        (
            Method::PATCH,
            "/roleManagement/directory/roleAssignments".to_string(),
        ),
        (
            Method::PUT,
            "/roleManagement/directory/roleAssignments/x".to_string(),
        ),
        (Method::PATCH, format!("{sp}/appRoleAssignedTo")),
        (Method::GET, format!("{sp}/appRoleAssignments/x")),
        (Method::DELETE, format!("{sp}/appRoleAssignments(a='b')")),
    ] {
        let r = env.call(method.clone(), &path, &t, None, &[]).await;
        let body = r.expect_error(405, "Request_BadRequest");
        assert_eq!(body["error"]["message"], not_allowed, "{method} {path}");
    }
    // An unknown first segment: 400 naming it.
    let body = env
        .get(&t, "/nosuch/x")
        .await
        .expect_error(400, "BadRequest");
    let want = "Resource not found for the segment 'nosuch'.";
    assert_eq!(body["error"]["message"], want);
    env.sim.shutdown().await;
}
