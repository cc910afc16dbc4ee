//! Entra's authorization rules over real HTTPS: which admin role may grant what, app-only
//! token roles, delegated grants, and the temporary token app's cleanup.

use entra_sim::Faults;
use serde_json::{Value, json};
use testkit::wire::ids::{DEFAULT_APP_WID, GROUP_READ_ALL, TEAMS, TEAMS_ADMIN, USER_READ_ALL};
use testkit::wire::{Wire, access_claims, count, str_of};

const DENIED: &str = "Authorization_RequestDenied";
const ROLE_ASSIGNMENTS: &str = "/roleManagement/directory/roleAssignments";

#[tokio::test]
async fn app_admin_is_denied_graph_consent_and_role_assignment_global_admin_succeeds() {
    let (env, app_admin) = Wire::signed_in("appadmin").await;
    let (app, sp, secret) = env.provision(&app_admin, "svc-authz").await;
    let graph_sp = env.graph_sp_id(&app_admin).await;
    let sp_id = &sp["id"];

    let r = env
        .assign_role(&app_admin, &graph_sp, sp_id, USER_READ_ALL)
        .await;
    r.expect_error(403, DENIED);
    let ra = json!({"@odata.type": "#microsoft.graph.unifiedRoleAssignment", "roleDefinitionId": TEAMS_ADMIN, "principalId": sp_id, "directoryScopeId": "/"});
    let r = env.post(&app_admin, ROLE_ASSIGNMENTS, ra.clone()).await;
    r.expect_error(403, DENIED);
    // A plain user cannot even create an app (registration restricted).
    env.sign_in("appadmin").await;
    let user = env.access_token("user").await;
    let r = env
        .post(&user, "/applications", json!({"displayName": "nope"}))
        .await;
    r.expect(403);

    let ga = env.access_token("globaladmin").await;
    let a1 = env
        .assign_role(&ga, &graph_sp, sp_id, USER_READ_ALL)
        .await
        .expect(201);
    assert_eq!(a1["principalType"], "ServicePrincipal");
    assert_eq!(a1["resourceDisplayName"], "Microsoft Graph");
    assert_eq!(a1["principalDisplayName"], "svc-authz");
    let r = env.assign_role(&ga, &graph_sp, sp_id, USER_READ_ALL).await;
    assert_eq!(r.status, 400, "duplicate grant");
    r.expect_error(400, "Request_BadRequest");
    let pra = env.access_token("privroleadmin").await;
    let assignments = format!("/servicePrincipals/{}/appRoleAssignments", str_of(sp_id));
    let assign = json!({"principalId": sp_id, "resourceId": graph_sp, "appRoleId": GROUP_READ_ALL});
    env.post(&pra, &assignments, assign).await.expect(201);
    let role = env
        .post(&pra, ROLE_ASSIGNMENTS, ra.clone())
        .await
        .expect(201);
    assert_eq!(role["roleDefinitionId"], TEAMS_ADMIN);
    let r = env.post(&ga, ROLE_ASSIGNMENTS, ra).await;
    assert_eq!(r.status, 400, "duplicate role assignment");

    assert_eq!(count(&env.get(&ga, &assignments).await.expect(200)), 2);

    // The app-only token carries exactly the granted roles, and the directory role in wids
    // next to Entra's default app-only value.
    let tok = env.app_token(&app, &secret).await.expect(200);
    let c = access_claims(&tok);
    assert_eq!(c["roles"], json!(["Group.Read.All", "User.Read.All"]));
    let wids = json!([TEAMS_ADMIN, DEFAULT_APP_WID]);
    assert_eq!(c["wids"], wids);
    // And Graph enforces them: User.Read.All can list users but cannot create apps.
    let app_token = str_of(&tok["access_token"]);
    env.get(&app_token, "/users").await.expect(200);
    let r = env
        .post(&app_token, "/applications", json!({"displayName": "x"}))
        .await;
    r.expect_error(403, DENIED);
    env.get(&app_token, "/me").await.expect(400);

    // Revoke and check the token changes.
    let a1 = format!(
        "/servicePrincipals/{graph_sp}/appRoleAssignedTo/{}",
        str_of(&a1["id"])
    );
    env.delete(&app_admin, &a1).await.expect(403);
    env.delete(&ga, &a1).await.expect(204);
    let tok = env.app_token(&app, &secret).await.expect(200);
    assert_eq!(access_claims(&tok)["roles"], json!(["Group.Read.All"]));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn delegated_grants_and_token_app_cleanup() {
    let (env, ga) = Wire::signed_in("globaladmin").await;
    let graph_sp = env.graph_sp_id(&ga).await;
    let (_, _, _) = env.provision(&ga, "svc-grant").await;
    let by_name = |name: &str| format!("/servicePrincipals?$filter=displayName eq '{name}'");
    let sps = env.get(&ga, &by_name("svc-grant")).await.expect(200);
    let sp_id = str_of(&sps["value"][0]["id"]);
    let body = json!({"clientId": sp_id, "consentType": "AllPrincipals", "resourceId": graph_sp, "scope": "User.Read.All Group.Read.All"});
    let g = env.post(&ga, "/oauth2PermissionGrants", body.clone()).await;
    let g = g.expect(201);
    assert_eq!(g["principalId"], Value::Null);
    env.post(&ga, "/oauth2PermissionGrants", body)
        .await
        .expect(409);
    let grant = format!("/oauth2PermissionGrants/{}", str_of(&g["id"]));
    let scope = json!({"scope": "User.Read.All"});
    env.patch(&ga, &grant, scope).await.expect(204);
    let path = format!("/oauth2PermissionGrants?$filter=clientId eq '{sp_id}'");
    let list = env.get(&ga, &path).await.expect(200);
    assert_eq!(list["value"][0]["scope"], "User.Read.All");
    env.delete(&ga, &grant).await.expect(204);

    // The sign-in made the temporary token app; it can be found and removed.
    let name = &env.info.token_app_display_name;
    let found = env.get(&ga, &by_name(name)).await.expect(200);
    assert_eq!(count(&found), 1);
    let token_sp = str_of(&found["value"][0]["id"]);
    let path = format!("/servicePrincipals/{token_sp}/oauth2PermissionGrants");
    let grants = env.get(&ga, &path).await.expect(200);
    assert_eq!(grants["value"][0]["consentType"], "AllPrincipals");
    let path = format!(
        "/servicePrincipals(appId='{}')",
        env.info.token_app_client_id
    );
    env.delete(&ga, &path).await.expect(204);
    assert_eq!(count(&env.get(&ga, &by_name(name)).await.expect(200)), 0);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn cloud_app_admin_added_at_runtime_may_consent_teams_roles_but_not_graph_roles() {
    let env = Wire::start(Faults::default()).await;
    let upn = env.upn("cloudadmin");
    let cloud = env
        .sim
        .add_user(&upn, "Megan Bowen", &[entra_sim::CLOUD_APP_ADMIN]);
    assert_eq!(cloud.roles, vec!["Cloud Application Administrator"]);
    let t = env.access_token("cloudadmin").await;
    let (_, sp, _) = env.provision(&t, "svc-teams").await;
    let graph_sp = env.graph_sp_id(&t).await;
    let path = &format!("/servicePrincipals(appId='{TEAMS}')");
    let teams = env.get(&t, path).await.expect(200);
    let (teams_id, teams_role) = (str_of(&teams["id"]), str_of(&teams["appRoles"][0]["id"]));
    let r = env.assign_role(&t, &teams_id, &sp["id"], &teams_role).await;
    r.expect(201);
    let r = env
        .assign_role(&t, &graph_sp, &sp["id"], USER_READ_ALL)
        .await;
    r.expect(403);
    env.sim.shutdown().await;
}

/// Application.ReadWrite.OwnedBy (permissions reference): an app may manage the applications
/// its service principal owns (read by key, add and remove secrets) but not others, and may not
/// list `/applications`. Owners are added with `POST /applications/{id}/owners/$ref`.
#[tokio::test]
async fn owned_by_lets_an_app_manage_only_apps_it_owns() {
    const OWNED_BY: &str = "18a4783c-866b-4cc7-a460-3d5e5662c884";
    let (env, ga) = Wire::signed_in("globaladmin").await;
    let (app, sp, secret) = env.provision(&ga, "svc-owned").await;
    let (other, _, _) = env.provision(&ga, "svc-other").await;
    let graph_sp = env.graph_sp_id(&ga).await;
    let (app_id, sp_id) = (str_of(&app["id"]), str_of(&sp["id"]));
    env.assign_role(&ga, &graph_sp, &sp["id"], OWNED_BY)
        .await
        .expect(201);
    let t = env.app_token(&app, &secret).await.access_token();
    let cred = json!({"displayName": "self"});

    // Not an owner yet: denied.
    let r = env.add_password(&t, &app, cred.clone()).await;
    r.expect_error(403, DENIED);

    // The admin makes the SP an owner; a second identical add is a 400.
    let owner_ref =
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{sp_id}")});
    let owners_path = format!("/applications/{app_id}/owners/$ref");
    env.post(&ga, &owners_path, owner_ref.clone())
        .await
        .expect(204);
    let r = env.post(&ga, &owners_path, owner_ref).await;
    r.expect_error(400, "Request_BadRequest");
    let owners = env
        .get(&ga, &format!("/applications/{app_id}/owners"))
        .await;
    let owners = owners.expect(200);
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
    env.get(&t, &format!("/applications/{app_id}"))
        .await
        .expect(200);
    let pw = env.add_password(&t, &app, cred.clone()).await.expect(200);
    let remove = format!("/applications/{app_id}/removePassword");
    env.post(&t, &remove, json!({"keyId": pw["keyId"]}))
        .await
        .expect(204);
    assert_eq!(env.sim.calls("POST removePassword"), 1);
    // But not another app, and not the collection.
    env.add_password(&t, &other, cred).await.expect(403);
    env.get(&t, "/applications").await.expect(403);
}

/// application-post-owners: a delegated caller needs "Application.ReadWrite.All and
/// Directory.Read.All": the write permission alone is refused (403), with the read one next to
/// it the owner is added (204).
#[tokio::test]
async fn adding_an_owner_needs_directory_read_next_to_the_write() {
    // A token app configured with the write permission only: `.default` holds no read one.
    let env = Wire::start_with(entra_sim::SimConfig {
        token_app_scopes: Some(vec!["User.Read".into(), "Application.ReadWrite.All".into()]),
        ..entra_sim::SimConfig::default()
    })
    .await;
    let ga = env.access_token("globaladmin").await;
    let (app, sp, _) = env.provision(&ga, "svc-owner").await;
    let owners = format!("/applications/{}/owners/$ref", str_of(&app["id"]));
    let owner = json!({
        "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", str_of(&sp["id"]))
    });
    env.post(&ga, &owners, owner.clone())
        .await
        .expect_error(403, DENIED);
    let both = env
        .token_with(
            "globaladmin",
            "Application.ReadWrite.All Directory.Read.All",
        )
        .await;
    env.post(&both, &owners, owner).await.expect(204);
    env.sim.shutdown().await;
}
