//! Graph v1.0 operations over real HTTPS: happy paths, documented errors, authorization,
//! upsert idempotency and paging.

use entra_sim::{Faults, PRIV_ROLE_ADMIN};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::wire::{Wire, assert_odata_error};

const GRAPH: &str = "00000003-0000-0000-c000-000000000000";
const USER_READ_ALL: &str = "df021288-bdef-4463-88db-98f22de89214";

#[tokio::test]
async fn me_and_my_roles() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("privroleadmin").await;
    let (st, h, me) = env
        .graph_full(
            Method::GET,
            "/me",
            &t,
            None,
            &[("client-request-id", "abc-123")],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["userPrincipalName"], env.upn("privroleadmin"));
    assert!(
        me["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/v1.0/$metadata#users/$entity")
    );
    assert_eq!(h["client-request-id"], "abc-123");
    assert_eq!(h["request-id"].to_str().unwrap().len(), 36);
    let (st, roles) = env.graph(Method::GET, "/me/memberOf", &t, None).await;
    assert_eq!(st, StatusCode::OK);
    let v = roles["value"].as_array().unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["@odata.type"], "#microsoft.graph.directoryRole");
    assert_eq!(v[0]["roleTemplateId"], PRIV_ROLE_ADMIN);
    let me_id = me["id"].as_str().unwrap();
    let (st, ra) = env
        .graph(
            Method::GET,
            &format!("/roleManagement/directory/roleAssignments?$filter=principalId eq '{me_id}'"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{ra}");
    assert_eq!(ra["value"][0]["roleDefinitionId"], PRIV_ROLE_ADMIN);
    let (st, org) = env.graph(Method::GET, "/organization", &t, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(org["value"][0]["id"], env.info.tenant_id);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn missing_or_bad_tokens_get_401() {
    let env = Wire::start(Faults::default()).await;
    let r = env.http.get(env.url("/v1.0/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_odata_error(&r.json().await.unwrap(), "InvalidAuthenticationToken");
    let (st, body) = env
        .graph(Method::GET, "/me", "eyJhbGciOiJSUzI1NiJ9.e30.AAAA", None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_odata_error(&body, "InvalidAuthenticationToken");
    // A Teams API token is not a Graph token.
    let admin = env.access_token("globaladmin").await;
    let (app, _, secret) = env.provision(&admin, "aud-check").await;
    let (_, tok) = env
        .client_credentials(
            app["appId"].as_str().unwrap(),
            &secret,
            "48ac35b8-9aa8-4d74-927d-1f4a14a0b239/.default",
        )
        .await;
    let (st, body) = env
        .graph(
            Method::GET,
            "/applications",
            tok["access_token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("audience")
    );
    let (st, body) = env.graph(Method::GET, "/nonsense", &admin, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_odata_error(&body, "BadRequest");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn application_lifecycle_and_errors() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("appadmin").await;
    let (st, app) = env
        .graph(Method::POST, "/applications", &t, Some(json!({"displayName": "svc-a", "signInAudience": "AzureADMyOrg",
            "requiredResourceAccess": [{"resourceAppId": GRAPH, "resourceAccess": [{"id": USER_READ_ALL, "type": "Role"}]}]})))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{app}");
    let id = app["id"].as_str().unwrap();
    let app_id = app["appId"].as_str().unwrap();
    assert_ne!(id, app_id);
    assert_eq!(app["publisherDomain"], env.info.tenant_domain);
    assert_eq!(app["passwordCredentials"], json!([]));
    assert_eq!(
        app["requiredResourceAccess"][0]["resourceAccess"][0]["id"],
        USER_READ_ALL
    );

    let (st, got) = env
        .graph(Method::GET, &format!("/applications/{id}"), &t, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got["displayName"], "svc-a");
    let (st, got) = env
        .graph(
            Method::GET,
            &format!("/applications(appId='{app_id}')?$select=id,displayName"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got["id"], id);
    assert!(got.get("appId").is_none(), "$select projects");
    let (st, list) = env
        .graph(
            Method::GET,
            &format!("/applications?$filter=appId eq '{app_id}'"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    let (_, list) = env
        .graph(
            Method::GET,
            "/applications?$filter=displayName eq 'svc-a'&$select=id,appId,displayName",
            &t,
            None,
        )
        .await;
    assert_eq!(list["value"][0]["appId"], app_id);
    assert!(
        list["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#applications(id,appId,displayName)")
    );
    let (st, body) = env
        .graph(Method::GET, "/applications?$filter=notes eq 'x'", &t, None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_odata_error(&body, "Request_UnsupportedQuery");

    let (st, body) = env
        .graph(
            Method::POST,
            "/applications",
            &t,
            Some(json!({"signInAudience": "AzureADMyOrg"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_odata_error(&body, "Request_BadRequest");
    let (st, body) = env
        .graph(
            Method::POST,
            "/applications",
            &t,
            Some(json!({"displayName": "x", "bogus": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_odata_error(&body, "BadRequest");

    let (st, _) = env
        .graph(
            Method::PATCH,
            &format!("/applications/{id}"),
            &t,
            Some(json!({"notes": "hello"})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, got) = env
        .graph(Method::GET, &format!("/applications/{id}"), &t, None)
        .await;
    assert_eq!(got["notes"], "hello");

    // Secrets: returned once, then only the hint.
    let (st, pw) = env
        .graph(Method::POST, &format!("/applications/{id}/addPassword"), &t, Some(json!({"passwordCredential": {"displayName": "svc-1", "endDateTime": "2030-01-01T00:00:00Z"}})))
        .await;
    assert_eq!(st, StatusCode::OK, "{pw}");
    let secret = pw["secretText"].as_str().unwrap();
    assert_eq!(secret.len(), 40);
    assert_eq!(pw["hint"], &secret[..3]);
    assert_eq!(pw["endDateTime"], "2030-01-01T00:00:00Z");
    let (_, got) = env
        .graph(Method::GET, &format!("/applications/{id}"), &t, None)
        .await;
    assert_eq!(got["passwordCredentials"][0]["secretText"], Value::Null);
    assert_eq!(got["passwordCredentials"][0]["hint"], &secret[..3]);
    let key_id = pw["keyId"].as_str().unwrap();
    let (st, _) = env
        .graph(
            Method::POST,
            &format!("/applications/{id}/removePassword"),
            &t,
            Some(json!({"keyId": key_id})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = env
        .graph(
            Method::POST,
            &format!("/applications/{id}/removePassword"),
            &t,
            Some(json!({"keyId": key_id})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_odata_error(&body, "Request_BadRequest");

    // Delete goes to the recycle bin; a second delete is a 404.
    let (st, _) = env
        .graph(Method::DELETE, &format!("/applications/{id}"), &t, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = env
        .graph(Method::DELETE, &format!("/applications/{id}"), &t, None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_odata_error(&body, "Request_ResourceNotFound");
    let (st, bin) = env
        .graph(
            Method::GET,
            "/directory/deletedItems/microsoft.graph.application",
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(bin["value"][0]["id"], id);
    assert!(bin["value"][0]["deletedDateTime"].as_str().is_some());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn unique_name_upsert_never_duplicates() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("appadmin").await;
    let path = "/applications(uniqueName='lp-contoso-svc1')";
    let prefer = [("Prefer", "create-if-missing")];
    let (st, _, created) = env
        .graph_full(
            Method::PATCH,
            path,
            &t,
            Some(json!({"displayName": "svc1"})),
            &prefer,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    assert_eq!(created["uniqueName"], "lp-contoso-svc1");
    for _ in 0..3 {
        let (st, _, body) = env
            .graph_full(
                Method::PATCH,
                path,
                &t,
                Some(json!({"displayName": "svc1", "notes": "again"})),
                &prefer,
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    }
    let snap = env.sim.snapshot();
    let apps = snap["applications"].as_array().unwrap();
    assert_eq!(apps.len(), 1, "no duplicate app");
    let (st, got) = env.graph(Method::GET, path, &t, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got["id"], created["id"]);
    assert_eq!(got["notes"], "again");
    // Without the Prefer header a missing key is a 404.
    let (st, body) = env
        .graph(
            Method::PATCH,
            "/applications(uniqueName='nope')",
            &t,
            Some(json!({"displayName": "n"})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_odata_error(&body, "Request_ResourceNotFound");
    // uniqueName is immutable once set.
    let id = created["id"].as_str().unwrap();
    let (st, _) = env
        .graph(
            Method::PATCH,
            &format!("/applications/{id}"),
            &t,
            Some(json!({"uniqueName": "other"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn service_principals_and_resource_lookup() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("appadmin").await;
    let (st, graph) = env
        .graph(
            Method::GET,
            &format!(
                "/servicePrincipals(appId='{GRAPH}')?$select=id,appRoles,oauth2PermissionScopes"
            ),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let roles = graph["appRoles"].as_array().unwrap();
    let find = |v: &str| roles.iter().find(|r| r["value"] == v).unwrap()["id"].clone();
    assert_eq!(find("User.Read.All"), USER_READ_ALL);
    assert_eq!(
        find("Application.ReadWrite.All"),
        "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9"
    );
    assert_eq!(
        find("RoleManagement.Read.Directory"),
        "483bed4a-2ad3-4361-a73b-c83ccdbdc53c"
    );
    let (st, teams) = env
        .graph(
            Method::GET,
            "/servicePrincipals?$filter=appId eq '48ac35b8-9aa8-4d74-927d-1f4a14a0b239'",
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        teams["value"][0]["displayName"],
        "Skype and Teams Tenant Admin API"
    );
    assert_eq!(
        teams["value"][0]["appRoles"][0]["allowedMemberTypes"][0],
        "Application"
    );
    let (_, by_name) = env
        .graph(
            Method::GET,
            "/servicePrincipals?$filter=displayName eq 'Microsoft Graph'",
            &t,
            None,
        )
        .await;
    assert_eq!(by_name["value"][0]["appId"], GRAPH);

    let (st, app) = env
        .graph(
            Method::POST,
            "/applications",
            &t,
            Some(json!({"displayName": "svc-sp"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, sp) = env
        .graph(
            Method::POST,
            "/servicePrincipals",
            &t,
            Some(json!({"appId": app["appId"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{sp}");
    assert_eq!(sp["appId"], app["appId"]);
    assert_eq!(sp["displayName"], "svc-sp");
    assert_eq!(sp["appOwnerOrganizationId"], env.info.tenant_id);
    let (st, body) = env
        .graph(
            Method::POST,
            "/servicePrincipals",
            &t,
            Some(json!({"appId": app["appId"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_odata_error(&body, "Request_MultipleObjectsWithSameKeyValue");
    let (st, body) = env
        .graph(
            Method::POST,
            "/servicePrincipals",
            &t,
            Some(json!({"appId": "12345678-1234-1234-1234-123456789012"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["details"][0]["code"],
        "NoBackingApplicationObject"
    );
    let sp_app = app["appId"].as_str().unwrap();
    let (st, _) = env
        .graph(
            Method::DELETE,
            &format!("/servicePrincipals(appId='{sp_app}')"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals/{}", sp["id"].as_str().unwrap()),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_odata_error(&body, "Request_ResourceNotFound");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn deleted_app_can_be_restored_with_its_secret_or_purged() {
    let env = Wire::start(Faults::default()).await;
    let t = env.access_token("globaladmin").await;
    let (app, _, secret) = env.provision(&t, "phoenix").await;
    let id = app["id"].as_str().unwrap();
    let app_id = app["appId"].as_str().unwrap();
    let (st, _) = env
        .graph(Method::DELETE, &format!("/applications/{id}"), &t, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = env
        .client_credentials(app_id, &secret, "https://graph.microsoft.com/.default")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "deleted app cannot sign in");
    let (_, bin) = env
        .graph(
            Method::GET,
            "/directory/deletedItems/microsoft.graph.servicePrincipal",
            &t,
            None,
        )
        .await;
    let sp_id = bin["value"][0]["id"].as_str().unwrap().to_string();

    let (st, restored) = env
        .graph(
            Method::POST,
            &format!("/directory/deletedItems/{id}/restore"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{restored}");
    assert_eq!(restored["appId"], app_id);
    let (st, _) = env
        .graph(
            Method::POST,
            &format!("/directory/deletedItems/{sp_id}/restore"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, tok) = env
        .client_credentials(app_id, &secret, "https://graph.microsoft.com/.default")
        .await;
    assert_eq!(
        st,
        StatusCode::OK,
        "the secret came back with the app: {tok}"
    );
    let (st, _) = env
        .graph(
            Method::POST,
            &format!("/directory/deletedItems/{id}/restore"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "no longer in the bin");

    // Permanent deletion.
    let (st, _) = env
        .graph(Method::DELETE, &format!("/applications/{id}"), &t, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = env
        .graph(
            Method::DELETE,
            &format!("/directory/deletedItems/{id}"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = env
        .graph(
            Method::POST,
            &format!("/directory/deletedItems/{id}/restore"),
            &t,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_odata_error(&body, "Request_ResourceNotFound");
    env.sim.shutdown().await;
}
