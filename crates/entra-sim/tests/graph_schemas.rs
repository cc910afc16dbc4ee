//! Every Graph answer type Onboard uses, from the running emulator, checked against JSON
//! schemas derived from Microsoft's published OpenAPI description of Graph v1.0
//! (`tests/data/graph-v1.0/README.md`): property names and types, the properties Graph returns
//! by default present, and nothing v1.0 does not have. So the emulator cannot drift from
//! Microsoft's shapes again.

mod schema;

use std::collections::BTreeMap;
use std::path::Path;

use entra_sim::{Faults, GRAPH_APP_ID, TEAMS_APP_ID};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::wire::Wire;

fn schemas() -> BTreeMap<String, Value> {
    schema::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/graph-v1.0"))
}

/// Collects every violation instead of stopping at the first, so one run shows all drift.
struct Checker {
    /// The schemas by name.
    schemas: BTreeMap<String, Value>,
    /// `what: violation` lines.
    failures: Vec<String>,
    /// How many values were checked, by schema.
    checked: BTreeMap<String, usize>,
}

impl Checker {
    fn one(&mut self, what: &str, kind: &str, v: &Value) {
        let schema = self
            .schemas
            .get(kind)
            .unwrap_or_else(|| panic!("no schema {kind}"));
        for e in schema::check(v, schema) {
            self.failures.push(format!("{what} ({kind}): {e}"));
        }
        *self.checked.entry(kind.to_owned()).or_default() += 1;
    }

    fn each(&mut self, what: &str, kind: &str, body: &Value) {
        let items = body["value"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no value array: {body}"));
        assert!(!items.is_empty(), "{what}: empty collection");
        for (i, v) in items.iter().enumerate() {
            self.one(&format!("{what}[{i}]"), kind, v);
        }
    }
}

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

async fn ok(env: &Wire, m: Method, path: &str, t: &str, body: Option<Value>) -> Value {
    let (st, v) = env.graph(m.clone(), path, t, body).await;
    assert!(st.is_success(), "{m} {path}: {st} {v}");
    v
}

#[tokio::test]
async fn every_answer_matches_the_graph_v1_schemas() {
    let env = Wire::start(Faults::default()).await;
    let mut c = Checker {
        schemas: schemas(),
        failures: vec![],
        checked: BTreeMap::new(),
    };
    // First, before anything broader is consented (a token's scp carries every scope consented
    // for the client), a sign-in that may not read directory roles.
    let narrow = token_with(&env, "globaladmin", "User.Read").await;
    let t = env.access_token("globaladmin").await;

    // Users, the organization, roles.
    let me = ok(&env, Method::GET, "/me", &t, None).await;
    c.one("GET /me", "user", &me);
    let uid = me["id"].as_str().unwrap().to_owned();
    let user = ok(&env, Method::GET, &format!("/users/{uid}"), &t, None).await;
    c.one("GET /users/{id}", "user", &user);
    let org = ok(&env, Method::GET, "/organization", &t, None).await;
    c.each("GET /organization", "organization", &org);
    let roles = ok(&env, Method::GET, "/me/transitiveMemberOf", &t, None).await;
    c.each("GET /me/transitiveMemberOf", "directoryRole", &roles);
    let stripped = ok(&env, Method::GET, "/me/transitiveMemberOf", &narrow, None).await;
    c.each(
        "GET /me/transitiveMemberOf (User.Read only)",
        "directoryRole",
        &stripped,
    );
    assert!(stripped["value"][0]["roleTemplateId"].is_null());
    let droles = ok(&env, Method::GET, "/directoryRoles", &t, None).await;
    c.each("GET /directoryRoles", "directoryRole", &droles);
    let defs = ok(
        &env,
        Method::GET,
        "/roleManagement/directory/roleDefinitions",
        &t,
        None,
    )
    .await;
    c.each("GET roleDefinitions", "unifiedRoleDefinition", &defs);

    // Applications: create, upsert, read, list, secrets, owners.
    let created = ok(
        &env,
        Method::POST,
        "/applications",
        &t,
        Some(json!({"displayName": "shape-post", "signInAudience": "AzureADMyOrg"})),
    )
    .await;
    c.one("POST /applications", "application", &created);
    let (st, _, upserted) = env
        .graph_full(
            Method::PATCH,
            "/applications(uniqueName='onboard-shape')",
            &t,
            Some(json!({
                "displayName": "shape",
                "signInAudience": "AzureADMyOrg",
                "web": {"redirectUris": ["https://shape.example/cb"]},
                "requiredResourceAccess": [{"resourceAppId": GRAPH_APP_ID, "resourceAccess": [{"id": "df021288-bdef-4463-88db-98f22de89214", "type": "Role"}]}],
            })),
            &[("Prefer", "create-if-missing")],
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{upserted}");
    c.one("PATCH upsert (201)", "application", &upserted);
    let app_oid = upserted["id"].as_str().unwrap().to_owned();
    let app_id = upserted["appId"].as_str().unwrap().to_owned();
    let pw = ok(
        &env,
        Method::POST,
        &format!("/applications/{app_oid}/addPassword"),
        &t,
        Some(json!({"passwordCredential": {"displayName": "svc"}})),
    )
    .await;
    c.one("POST addPassword", "passwordCredential", &pw);
    let app = ok(
        &env,
        Method::GET,
        &format!("/applications/{app_oid}"),
        &t,
        None,
    )
    .await;
    c.one("GET /applications/{id}", "application", &app);
    assert_eq!(app["web"]["redirectUriSettings"], json!([]));
    let listed = ok(&env, Method::GET, "/applications", &t, None).await;
    c.each("GET /applications", "application", &listed);
    let owners = ok(
        &env,
        Method::GET,
        &format!("/applications/{app_oid}/owners"),
        &t,
        None,
    )
    .await;
    c.each("GET owners", "user", &owners);

    // Service principals: ours (single tenant), a multi-tenant one, Microsoft's, the list.
    let sp = ok(
        &env,
        Method::POST,
        "/servicePrincipals",
        &t,
        Some(json!({"appId": app_id})),
    )
    .await;
    c.one("POST /servicePrincipals", "servicePrincipal", &sp);
    assert_eq!(sp["signInAudience"], "AzureADMyOrg", "follows the app");
    let multi = ok(
        &env,
        Method::POST,
        "/applications",
        &t,
        Some(json!({"displayName": "shape-multi", "signInAudience": "AzureADMultipleOrgs"})),
    )
    .await;
    let multi_sp = ok(
        &env,
        Method::POST,
        "/servicePrincipals",
        &t,
        Some(json!({"appId": multi["appId"]})),
    )
    .await;
    assert_eq!(multi_sp["signInAudience"], "AzureADMultipleOrgs");
    let sp_id = sp["id"].as_str().unwrap().to_owned();
    for res in [GRAPH_APP_ID, TEAMS_APP_ID] {
        let r = ok(
            &env,
            Method::GET,
            &format!("/servicePrincipals(appId='{res}')"),
            &t,
            None,
        )
        .await;
        c.one("GET resource SP", "servicePrincipal", &r);
    }
    let sps = ok(&env, Method::GET, "/servicePrincipals", &t, None).await;
    c.each("GET /servicePrincipals", "servicePrincipal", &sps);

    // Grants: app role assignments, delegated grants, directory roles.
    let graph_sp = env.graph_sp_id(&t).await;
    let grant = ok(
        &env,
        Method::POST,
        &format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo"),
        &t,
        Some(json!({"principalId": sp_id, "resourceId": graph_sp, "appRoleId": "df021288-bdef-4463-88db-98f22de89214"})),
    )
    .await;
    c.one("POST appRoleAssignedTo", "appRoleAssignment", &grant);
    for p in [
        format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo"),
        format!("/servicePrincipals/{sp_id}/appRoleAssignments"),
    ] {
        let v = ok(&env, Method::GET, &p, &t, None).await;
        c.each(&format!("GET {p}"), "appRoleAssignment", &v);
    }
    let dg = ok(
        &env,
        Method::POST,
        "/oauth2PermissionGrants",
        &t,
        Some(json!({"clientId": sp_id, "consentType": "AllPrincipals", "resourceId": graph_sp, "scope": "User.Read"})),
    )
    .await;
    c.one("POST oauth2PermissionGrants", "oAuth2PermissionGrant", &dg);
    let dgs = ok(&env, Method::GET, "/oauth2PermissionGrants", &t, None).await;
    c.each("GET oauth2PermissionGrants", "oAuth2PermissionGrant", &dgs);
    let ra = ok(
        &env,
        Method::POST,
        "/roleManagement/directory/roleAssignments",
        &t,
        Some(json!({"roleDefinitionId": "69091246-20e8-4a56-aa4d-066075b2a7a8", "principalId": sp_id, "directoryScopeId": "/"})),
    )
    .await;
    c.one("POST roleAssignments", "unifiedRoleAssignment", &ra);
    let ras = ok(
        &env,
        Method::GET,
        "/roleManagement/directory/roleAssignments",
        &t,
        None,
    )
    .await;
    c.each("GET roleAssignments", "unifiedRoleAssignment", &ras);
    let members = ok(
        &env,
        Method::GET,
        "/directoryRoles(roleTemplateId='69091246-20e8-4a56-aa4d-066075b2a7a8')/members",
        &t,
        None,
    )
    .await;
    c.each("GET directoryRole members", "servicePrincipal", &members);

    // The recycle bin.
    ok(
        &env,
        Method::DELETE,
        &format!("/applications/{app_oid}"),
        &t,
        None,
    )
    .await;
    for (cast, kind) in [
        ("microsoft.graph.application", "application"),
        ("microsoft.graph.servicePrincipal", "servicePrincipal"),
    ] {
        let v = ok(
            &env,
            Method::GET,
            &format!("/directory/deletedItems/{cast}"),
            &t,
            None,
        )
        .await;
        c.each(&format!("GET deletedItems/{cast}"), kind, &v);
    }

    // Errors: 404, 400 with details, 403, 401.
    let errors = [
        env.graph(
            Method::GET,
            "/applications/00000000-0000-0000-0000-000000000000",
            &t,
            None,
        )
        .await,
        env.graph(
            Method::POST,
            "/servicePrincipals",
            &t,
            Some(json!({"appId": "11111111-1111-1111-1111-111111111111"})),
        )
        .await,
        env.graph(
            Method::POST,
            "/applications",
            &narrow,
            Some(json!({"displayName": "denied"})),
        )
        .await,
        env.graph(Method::GET, "/me", "not-a-token", None).await,
    ];
    for (i, (st, body)) in errors.iter().enumerate() {
        assert!(st.is_client_error(), "{st} {body}");
        c.one(&format!("error {i} ({st})"), "odataError", body);
    }
    assert_eq!(
        errors[1].1["error"]["details"][0]["code"],
        "NoBackingApplicationObject"
    );

    assert!(
        c.failures.is_empty(),
        "{} violations:\n{}",
        c.failures.len(),
        c.failures.join("\n")
    );
    // Every schema was used.
    for name in c.schemas.keys() {
        assert!(c.checked.contains_key(name), "schema {name} never checked");
    }
    env.sim.shutdown().await;
}

/// The checker itself must catch what it is there to catch.
#[test]
fn the_checker_catches_missing_extra_and_mistyped_properties() {
    let s = schemas();
    let user = json!({"id": "1", "businessPhones": [], "displayName": "A", "givenName": null, "jobTitle": null, "mail": null, "mobilePhone": null, "officeLocation": null, "preferredLanguage": null, "securityIdentifier": null, "surname": null, "userPrincipalName": "a@b"});
    assert!(schema::check(&user, &s["user"]).is_empty());
    let mut missing = user.clone();
    missing.as_object_mut().unwrap().remove("surname");
    assert!(schema::check(&missing, &s["user"])[0].contains("\"surname\" is missing"));
    let mut extra = user.clone();
    extra["createdDateTime"] = json!("2026-01-01T00:00:00Z");
    assert!(schema::check(&extra, &s["user"])[0].contains("not in the v1.0 schema"));
    let mut typed = user.clone();
    typed["businessPhones"] = json!("123");
    assert!(schema::check(&typed, &s["user"])[0].contains("is not of type"));
    let mut annotated = user;
    annotated["@odata.type"] = json!("#microsoft.graph.user");
    assert!(schema::check(&annotated, &s["user"]).is_empty());

    let detail_without_message = json!({"error": {"code": "Request_BadRequest", "message": "m", "details": [{"code": "NoBackingApplicationObject", "target": "appId"}]}});
    let e = schema::check(&detail_without_message, &s["odataError"]);
    assert!(
        e.iter().any(|x| x.contains("\"message\" is missing")),
        "{e:?}"
    );
    let nested = json!({"id": "x", "appScopeId": null, "condition": null, "directoryScopeId": "/", "principalId": "p", "roleDefinitionId": 5});
    assert!(!schema::check(&nested, &s["unifiedRoleAssignment"]).is_empty());
    let unsupported = json!({"type": "string", "pattern": "^a"});
    assert!(schema::check(&json!("a"), &unsupported)[0].contains("not supported"));
}
