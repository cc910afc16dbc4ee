//! Every Graph answer type Onboard uses, from the running emulator, checked against JSON
//! schemas derived from Microsoft's published OpenAPI description of Graph v1.0
//! (`tests/data/graph-v1.0/README.md`): property names and types, the properties Graph returns
//! by default present, and nothing v1.0 does not have. So the emulator cannot drift from
//! Microsoft's shapes again.

mod schema;

use std::collections::BTreeMap;
use std::path::Path;

use entra_sim::{Faults, GRAPH_APP_ID, TEAMS_APP_ID};
use serde_json::{Value, json};
use testkit::wire::ids::{TEAMS_ADMIN, USER_READ_ALL};
use testkit::wire::{Wire, str_of};

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

/// The items of collection `body` of one `@odata.type` (`#microsoft.graph.<kind>`), as a
/// collection: `memberOf` mixes groups and directory roles.
fn only(body: &Value, kind: &str) -> Value {
    let want = format!("#microsoft.graph.{kind}");
    let items: Vec<Value> = body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["@odata.type"] == want.as_str())
        .cloned()
        .collect();
    json!({ "value": items })
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
    let narrow = env.token_with("globaladmin", "User.Read").await;
    let t = env.access_token("globaladmin").await;
    let get = |path: String| {
        let (env, t) = (&env, t.clone());
        async move { env.get(&t, &path).await.expect(200) }
    };

    // Users, the organization, roles.
    let me = get("/me".into()).await;
    c.one("GET /me", "user", &me);
    let user = get(format!("/users/{}", str_of(&me["id"]))).await;
    c.one("GET /users/{id}", "user", &user);
    let member_of = get("/me/transitiveMemberOf".into()).await;
    c.each(
        "GET /me/transitiveMemberOf",
        "directoryRole",
        &only(&member_of, "directoryRole"),
    );
    for (path, kind) in [
        ("/organization", "organization"),
        ("/directoryRoles", "directoryRole"),
        (
            "/roleManagement/directory/roleDefinitions",
            "unifiedRoleDefinition",
        ),
    ] {
        c.each(&format!("GET {path}"), kind, &get(path.into()).await);
    }
    let stripped = env.get(&narrow, "/me/transitiveMemberOf").await.expect(200);
    let what = "GET /me/transitiveMemberOf (User.Read only)";
    let stripped = only(&stripped, "directoryRole");
    c.each(what, "directoryRole", &stripped);
    assert!(stripped["value"][0]["roleTemplateId"].is_null());

    // Applications: create, upsert, read, list, secrets, owners.
    let post = json!({"displayName": "shape-post", "signInAudience": "AzureADMyOrg"});
    let created = env.post(&t, "/applications", post).await.expect(201);
    c.one("POST /applications", "application", &created);
    let key = "/applications(uniqueName='onboard-shape')";
    let rra = json!([{"resourceAppId": GRAPH_APP_ID, "resourceAccess": [{"id": USER_READ_ALL, "type": "Role"}]}]);
    let upsert = json!({
        "displayName": "shape",
        "signInAudience": "AzureADMyOrg",
        "web": {"redirectUris": ["https://shape.example/cb"]},
        "requiredResourceAccess": rra,
    });
    let upserted = env.upsert(&t, key, upsert).await.expect(201);
    c.one("PATCH upsert (201)", "application", &upserted);
    let app_oid = str_of(&upserted["id"]);
    let pw = json!({"displayName": "svc"});
    let pw = env.add_password(&t, &upserted, pw).await.expect(200);
    c.one("POST addPassword", "passwordCredential", &pw);
    let app = get(format!("/applications/{app_oid}")).await;
    c.one("GET /applications/{id}", "application", &app);
    assert_eq!(app["web"]["redirectUriSettings"], json!([]));
    c.each(
        "GET /applications",
        "application",
        &get("/applications".into()).await,
    );
    let owners = get(format!("/applications/{app_oid}/owners")).await;
    c.each("GET owners", "user", &owners);

    // Service principals: ours (single tenant), a multi-tenant one, Microsoft's, the list.
    let sp = json!({"appId": upserted["appId"]});
    let sp = env.post(&t, "/servicePrincipals", sp).await.expect(201);
    c.one("POST /servicePrincipals", "servicePrincipal", &sp);
    assert_eq!(sp["signInAudience"], "AzureADMyOrg", "follows the app");
    let multi = json!({"displayName": "shape-multi", "signInAudience": "AzureADMultipleOrgs"});
    let multi = env.post(&t, "/applications", multi).await.expect(201);
    let multi_sp = json!({"appId": multi["appId"]});
    let multi_sp = env
        .post(&t, "/servicePrincipals", multi_sp)
        .await
        .expect(201);
    assert_eq!(multi_sp["signInAudience"], "AzureADMultipleOrgs");
    let sp_id = str_of(&sp["id"]);
    for res in [GRAPH_APP_ID, TEAMS_APP_ID] {
        let r = get(format!("/servicePrincipals(appId='{res}')")).await;
        c.one("GET resource SP", "servicePrincipal", &r);
    }
    let sps = get("/servicePrincipals".into()).await;
    c.each("GET /servicePrincipals", "servicePrincipal", &sps);

    // Grants: app role assignments, delegated grants, directory roles.
    let graph_sp = env.graph_sp_id(&t).await;
    let grant = env
        .assign_role(&t, &graph_sp, &sp["id"], USER_READ_ALL)
        .await;
    c.one(
        "POST appRoleAssignedTo",
        "appRoleAssignment",
        &grant.expect(201),
    );
    for p in [
        format!("/servicePrincipals/{graph_sp}/appRoleAssignedTo"),
        format!("/servicePrincipals/{sp_id}/appRoleAssignments"),
    ] {
        c.each(
            &format!("GET {p}"),
            "appRoleAssignment",
            &get(p.clone()).await,
        );
    }
    let dg = json!({"clientId": sp_id, "consentType": "AllPrincipals", "resourceId": graph_sp, "scope": "User.Read"});
    let dg = env
        .post(&t, "/oauth2PermissionGrants", dg)
        .await
        .expect(201);
    c.one("POST oauth2PermissionGrants", "oAuth2PermissionGrant", &dg);
    let dgs = get("/oauth2PermissionGrants".into()).await;
    c.each("GET oauth2PermissionGrants", "oAuth2PermissionGrant", &dgs);
    let assignments = "/roleManagement/directory/roleAssignments";
    let ra =
        json!({"roleDefinitionId": TEAMS_ADMIN, "principalId": sp_id, "directoryScopeId": "/"});
    let ra = env.post(&t, assignments, ra).await.expect(201);
    c.one("POST roleAssignments", "unifiedRoleAssignment", &ra);
    let ras = get(assignments.into()).await;
    c.each("GET roleAssignments", "unifiedRoleAssignment", &ras);
    let members = get(format!(
        "/directoryRoles(roleTemplateId='{TEAMS_ADMIN}')/members"
    ))
    .await;
    c.each("GET directoryRole members", "servicePrincipal", &members);

    // The recycle bin.
    env.delete(&t, &format!("/applications/{app_oid}"))
        .await
        .expect(204);
    for (cast, kind) in [
        ("microsoft.graph.application", "application"),
        ("microsoft.graph.servicePrincipal", "servicePrincipal"),
    ] {
        let v = get(format!("/directory/deletedItems/{cast}")).await;
        c.each(&format!("GET deletedItems/{cast}"), kind, &v);
    }

    // Errors: 404, 400 with details, 403, 401.
    let no_app = json!({"appId": "11111111-1111-1111-1111-111111111111"});
    let denied = json!({"displayName": "denied"});
    let errors = [
        env.get(&t, "/applications/00000000-0000-0000-0000-000000000000")
            .await,
        env.post(&t, "/servicePrincipals", no_app).await,
        env.post(&narrow, "/applications", denied).await,
        env.get("not-a-token", "/me").await,
    ]
    .map(|r| (r.status, r.json()));
    for (i, (st, body)) in errors.iter().enumerate() {
        assert!(st.is_client_error(), "{st} {body}");
        c.one(&format!("error {i} ({st})"), "odataError", body);
    }
    let detail = &errors[1].1["error"]["details"][0]["code"];
    assert_eq!(detail, "NoBackingApplicationObject");

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
