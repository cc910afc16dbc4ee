//! Entra's authorization rules over real HTTPS: which admin role may grant what, app-only
//! token roles, delegated grants, and the temporary token app's cleanup.

use entra_sim::Faults;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::wire::{Wire, assert_odata_error, claims};

const USER_READ_ALL: &str = "df021288-bdef-4463-88db-98f22de89214";
const GROUP_READ_ALL: &str = "5b567255-7703-4780-807c-7be8301ae99b";
const TEAMS_ADMIN: &str = "69091246-20e8-4a56-aa4d-066075b2a7a8";

#[tokio::test]
async fn app_admin_is_denied_graph_consent_and_role_assignment_global_admin_succeeds() {
    let env = Wire::start(Faults::default()).await;
    let app_admin = env.access_token("appadmin").await;
    let (app, sp, secret) = env.provision(&app_admin, "svc-authz").await;
    let graph_sp = env.graph_sp_id(&app_admin).await;
    let sp_id = sp["id"].as_str().unwrap();
    let assign =
        |role: &str| json!({"principalId": sp_id, "resourceId": graph_sp, "appRoleId": role});

    let path = format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo");
    let (st, body) = env
        .graph(Method::POST, &path, &app_admin, Some(assign(USER_READ_ALL)))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_odata_error(&body, "Authorization_RequestDenied");
    let ra = json!({"@odata.type": "#microsoft.graph.unifiedRoleAssignment", "roleDefinitionId": TEAMS_ADMIN, "principalId": sp_id, "directoryScopeId": "/"});
    let (st, body) = env
        .graph(
            Method::POST,
            "/roleManagement/directory/roleAssignments",
            &app_admin,
            Some(ra.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_odata_error(&body, "Authorization_RequestDenied");
    // A plain user cannot even create an app (registration restricted).
    env.sign_in("appadmin").await;
    let user = env.access_token("user").await;
    let (st, _) = env
        .graph(
            Method::POST,
            "/applications",
            &user,
            Some(json!({"displayName": "nope"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let ga = env.access_token("globaladmin").await;
    let (st, a1) = env
        .graph(Method::POST, &path, &ga, Some(assign(USER_READ_ALL)))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a1}");
    assert_eq!(a1["principalType"], "ServicePrincipal");
    assert_eq!(a1["resourceDisplayName"], "Microsoft Graph");
    assert_eq!(a1["principalDisplayName"], "svc-authz");
    let (st, body) = env
        .graph(Method::POST, &path, &ga, Some(assign(USER_READ_ALL)))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "duplicate grant");
    assert_odata_error(&body, "Request_BadRequest");
    let pra = env.access_token("privroleadmin").await;
    let (st, _) = env
        .graph(
            Method::POST,
            &format!("/servicePrincipals/{sp_id}/appRoleAssignments"),
            &pra,
            Some(assign(GROUP_READ_ALL)),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, role) = env
        .graph(
            Method::POST,
            "/roleManagement/directory/roleAssignments",
            &pra,
            Some(ra.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{role}");
    assert_eq!(role["roleDefinitionId"], TEAMS_ADMIN);
    let (st, _) = env
        .graph(
            Method::POST,
            "/roleManagement/directory/roleAssignments",
            &ga,
            Some(ra),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "duplicate role assignment");

    let (_, listed) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals/{sp_id}/appRoleAssignments"),
            &ga,
            None,
        )
        .await;
    assert_eq!(listed["value"].as_array().unwrap().len(), 2);

    // The app-only token carries exactly the granted roles, and the directory role in wids
    // next to Entra's default app-only value.
    let (st, tok) = env
        .client_credentials(
            app["appId"].as_str().unwrap(),
            &secret,
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let c = claims(tok["access_token"].as_str().unwrap());
    assert_eq!(c["roles"], json!(["Group.Read.All", "User.Read.All"]));
    assert_eq!(
        c["wids"],
        json!([TEAMS_ADMIN, "0997a1d0-0d1d-4acb-b408-d5ca73121e90"])
    );
    // And Graph enforces them: User.Read.All can list users but cannot create apps.
    let app_token = tok["access_token"].as_str().unwrap();
    let (st, _) = env.graph(Method::GET, "/users", app_token, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = env
        .graph(
            Method::POST,
            "/applications",
            app_token,
            Some(json!({"displayName": "x"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_odata_error(&body, "Authorization_RequestDenied");
    let (st, _) = env.graph(Method::GET, "/me", app_token, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Revoke and check the token changes.
    let a1_id = a1["id"].as_str().unwrap();
    let (st, _) = env
        .graph(Method::DELETE, &format!("{path}/{a1_id}"), &app_admin, None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = env
        .graph(Method::DELETE, &format!("{path}/{a1_id}"), &ga, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, tok) = env
        .client_credentials(
            app["appId"].as_str().unwrap(),
            &secret,
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(
        claims(tok["access_token"].as_str().unwrap())["roles"],
        json!(["Group.Read.All"])
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn delegated_grants_and_token_app_cleanup() {
    let env = Wire::start(Faults::default()).await;
    let ga = env.access_token("globaladmin").await;
    let graph_sp = env.graph_sp_id(&ga).await;
    let (_, _, _) = env.provision(&ga, "svc-grant").await;
    let (_, sps) = env
        .graph(
            Method::GET,
            "/servicePrincipals?$filter=displayName eq 'svc-grant'",
            &ga,
            None,
        )
        .await;
    let sp_id = sps["value"][0]["id"].as_str().unwrap().to_string();
    let body = json!({"clientId": sp_id, "consentType": "AllPrincipals", "resourceId": graph_sp, "scope": "User.Read.All Group.Read.All"});
    let (st, g) = env
        .graph(
            Method::POST,
            "/oauth2PermissionGrants",
            &ga,
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    assert_eq!(g["principalId"], Value::Null);
    let (st, _) = env
        .graph(Method::POST, "/oauth2PermissionGrants", &ga, Some(body))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let gid = g["id"].as_str().unwrap();
    let (st, _) = env
        .graph(
            Method::PATCH,
            &format!("/oauth2PermissionGrants/{gid}"),
            &ga,
            Some(json!({"scope": "User.Read.All"})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, list) = env
        .graph(
            Method::GET,
            &format!("/oauth2PermissionGrants?$filter=clientId eq '{sp_id}'"),
            &ga,
            None,
        )
        .await;
    assert_eq!(list["value"][0]["scope"], "User.Read.All");
    let (st, _) = env
        .graph(
            Method::DELETE,
            &format!("/oauth2PermissionGrants/{gid}"),
            &ga,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    // The sign-in made the temporary token app; it can be found and removed.
    let name = &env.info.token_app_display_name;
    let (_, found) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals?$filter=displayName eq '{name}'"),
            &ga,
            None,
        )
        .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 1);
    let (_, grants) = env
        .graph(
            Method::GET,
            &format!(
                "/servicePrincipals/{}/oauth2PermissionGrants",
                found["value"][0]["id"].as_str().unwrap()
            ),
            &ga,
            None,
        )
        .await;
    assert_eq!(grants["value"][0]["consentType"], "AllPrincipals");
    let (st, _) = env
        .graph(
            Method::DELETE,
            &format!(
                "/servicePrincipals(appId='{}')",
                env.info.token_app_client_id
            ),
            &ga,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, found) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals?$filter=displayName eq '{name}'"),
            &ga,
            None,
        )
        .await;
    assert_eq!(found["value"].as_array().unwrap().len(), 0);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn cloud_app_admin_added_at_runtime_may_consent_teams_roles_but_not_graph_roles() {
    let env = Wire::start(Faults::default()).await;
    let cloud = env.sim.add_user(
        &env.upn("cloudadmin"),
        "Megan Bowen",
        &[entra_sim::CLOUD_APP_ADMIN],
    );
    assert_eq!(cloud.roles, vec!["Cloud Application Administrator"]);
    let t = env.access_token("cloudadmin").await;
    let (_, sp, _) = env.provision(&t, "svc-teams").await;
    let graph_sp = env.graph_sp_id(&t).await;
    let (_, teams) = env
        .graph(
            Method::GET,
            "/servicePrincipals(appId='48ac35b8-9aa8-4d74-927d-1f4a14a0b239')",
            &t,
            None,
        )
        .await;
    let teams_id = teams["id"].as_str().unwrap();
    let teams_role = teams["appRoles"][0]["id"].as_str().unwrap();
    let (st, body) = env
        .graph(
            Method::POST,
            &format!("/servicePrincipals/{teams_id}/appRoleAssignedTo"),
            &t,
            Some(json!({"principalId": sp["id"], "resourceId": teams_id, "appRoleId": teams_role})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, _) = env
        .graph(Method::POST, &format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo"), &t,
            Some(json!({"principalId": sp["id"], "resourceId": graph_sp, "appRoleId": USER_READ_ALL})))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    env.sim.shutdown().await;
}

/// Application.ReadWrite.OwnedBy (permissions reference): an app may manage the applications
/// its service principal owns (read by key, add and remove secrets) but not others, and may not
/// list `/applications`. Owners are added with `POST /applications/{id}/owners/$ref`.
#[tokio::test]
async fn owned_by_lets_an_app_manage_only_apps_it_owns() {
    const OWNED_BY: &str = "18a4783c-866b-4cc7-a460-3d5e5662c884";
    let env = Wire::start(Faults::default()).await;
    let ga = env.access_token("globaladmin").await;
    let (app, sp, secret) = env.provision(&ga, "svc-owned").await;
    let (other, _, _) = env.provision(&ga, "svc-other").await;
    let graph_sp = env.graph_sp_id(&ga).await;
    let (app_id, sp_id) = (app["id"].as_str().unwrap(), sp["id"].as_str().unwrap());
    let (st, g) = env
        .graph(
            Method::POST,
            &format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo"),
            &ga,
            Some(json!({"principalId": sp_id, "resourceId": graph_sp, "appRoleId": OWNED_BY})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g}");
    let (st, tok) = env
        .client_credentials(
            app["appId"].as_str().unwrap(),
            &secret,
            "https://graph.microsoft.com/.default",
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let t = tok["access_token"].as_str().unwrap();
    let add = |id: &str| format!("/applications/{id}/addPassword");
    let body = Some(json!({"passwordCredential": {"displayName": "self"}}));

    // Not an owner yet: denied.
    let (st, e) = env.graph(Method::POST, &add(app_id), t, body.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert_odata_error(&e, "Authorization_RequestDenied");

    // The admin makes the SP an owner; a second identical add is a 400.
    let owner_ref =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{sp_id}")});
    let owners_path = format!("/applications/{app_id}/owners/$ref");
    let (st, e) = env
        .graph(Method::POST, &owners_path, &ga, Some(owner_ref.clone()))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{e}");
    let (st, e) = env
        .graph(Method::POST, &owners_path, &ga, Some(owner_ref))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_odata_error(&e, "Request_BadRequest");
    let (st, owners) = env
        .graph(
            Method::GET,
            &format!("/applications/{app_id}/owners"),
            &ga,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let kinds: Vec<&str> = owners["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["@odata.type"].as_str().unwrap_or(""))
        .collect();
    assert!(
        kinds.contains(&"#microsoft.graph.servicePrincipal"),
        "{owners}"
    );

    // Now it may read itself by key and add and remove its own secrets.
    let (st, got) = env
        .graph(Method::GET, &format!("/applications/{app_id}"), t, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{got}");
    let (st, pw) = env.graph(Method::POST, &add(app_id), t, body.clone()).await;
    assert_eq!(st, StatusCode::OK, "{pw}");
    let (st, e) = env
        .graph(
            Method::POST,
            &format!("/applications/{app_id}/removePassword"),
            t,
            Some(json!({"keyId": pw["keyId"]})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{e}");
    assert_eq!(env.sim.calls("POST removePassword"), 1);
    // But not another app, and not the collection.
    let (st, _) = env
        .graph(Method::POST, &add(other["id"].as_str().unwrap()), t, body)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = env.graph(Method::GET, "/applications", t, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}
