//! Every Graph operation against the emulator: an onboarding run as a Global Administrator,
//! day-two changes, cleanup, and the documented errors.

use entra_client::graph::roles::template;
use entra_client::graph::{
    ApplicationSpec, OAuth2PermissionGrant, RequiredResourceAccess, ResourceAccess,
};
use entra_client::{
    CallMeta, EntraError, MICROSOFT_GRAPH_APP_ID, OpContext, Reply, TEAMS_TENANT_ADMIN_API_APP_ID,
};
use secrecy::ExposeSecret;
use testkit::portal::{self, Grants};
use testkit::sim::{SimEnv, app_spec, assert_no_backing_application, calm, ok};

const USER_READ_ALL_ROLE: &str = "df021288-bdef-4463-88db-98f22de89214";

fn spec(name: &str) -> ApplicationSpec {
    ApplicationSpec {
        required_resource_access: vec![RequiredResourceAccess {
            resource_app_id: MICROSOFT_GRAPH_APP_ID.into(),
            resource_access: vec![ResourceAccess {
                id: USER_READ_ALL_ROLE.into(),
                kind: "Role".into(),
            }],
        }],
        ..app_spec(name)
    }
}

/// Awaits `remove`, which must succeed, then `list`, which must come back empty; the removal's
/// call facts.
async fn removed<T>(
    remove: impl Future<Output = Result<Reply<()>, EntraError>>,
    list: impl Future<Output = Result<Reply<Vec<T>>, EntraError>>,
) -> CallMeta {
    let meta = remove.await.unwrap().meta;
    assert!(ok(list).await.is_empty());
    meta
}

#[tokio::test]
async fn id_token_claims_give_tenant_and_roles_hint() {
    let env = SimEnv::start(calm()).await.unwrap();
    let tokens = env.sign_in("appadmin").await.unwrap();
    let claims = tokens
        .id_token_claims()
        .unwrap()
        .expect("openid was asked for");
    assert_eq!(claims.tid, env.info.tenant_id);
    assert_eq!(
        claims.preferred_username.as_deref(),
        Some(env.upn("appadmin").as_str())
    );
    assert!(
        claims
            .wids
            .iter()
            .any(|w| w == template::APPLICATION_ADMINISTRATOR),
        "{claims:?}"
    );
    assert!(
        !claims
            .wids
            .iter()
            .any(|w| w == template::PRIVILEGED_ROLE_ADMINISTRATOR)
    );
}

#[tokio::test]
async fn whoami_roles_and_organization() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = env.graph_as("globaladmin").await.unwrap();
    let ctx = OpContext::new();
    let me = g.me(&ctx).await.unwrap();
    assert_eq!(me.value.user_principal_name, env.upn("globaladmin"));
    assert_eq!(me.meta.client_request_id, ctx.client_request_id.to_string());

    let roles = ok(g.my_directory_roles(&ctx)).await;
    let ids: Vec<&str> = roles.iter().map(|r| r.role_template_id.as_str()).collect();
    assert_eq!(ids, vec![template::GLOBAL_ADMINISTRATOR], "{roles:?}");

    let org = ok(g.organization(&ctx)).await;
    assert_eq!(org.id, env.info.tenant_id);
    assert!(
        org.verified_domains
            .iter()
            .any(|d| d.name == env.info.tenant_domain)
    );

    let g = env.graph_as("appadmin").await.unwrap();
    let roles = ok(g.my_directory_roles(&ctx)).await;
    let ids: Vec<&str> = roles.iter().map(|r| r.role_template_id.as_str()).collect();
    assert_eq!(ids, vec![template::APPLICATION_ADMINISTRATOR]);

    let g = env.graph_as("user").await.unwrap();
    assert!(ok(g.my_directory_roles(&ctx)).await.is_empty());
}

#[tokio::test]
async fn onboarding_run_end_to_end() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = env.graph_as("globaladmin").await.unwrap();
    let ctx = OpContext::new;

    // Name check, then idempotent create.
    assert!(
        ok(g.find_applications_by_display_name("lp-svc1", &ctx()))
            .await
            .is_empty()
    );
    let up = g
        .upsert_application("lp-tenant-svc1", &spec("lp-svc1"), &ctx())
        .await
        .unwrap();
    assert!(up.value.created);
    assert_eq!(up.meta.status, 201);
    let app = up.value.application;
    assert_eq!(app.unique_name.as_deref(), Some("lp-tenant-svc1"));
    assert_eq!(app.display_name.as_deref(), Some("lp-svc1"));
    let again = g
        .upsert_application("lp-tenant-svc1", &spec("lp-svc1"), &ctx())
        .await
        .unwrap();
    assert!(!again.value.created, "second upsert updates");
    assert_eq!(again.meta.status, 204);
    assert_eq!(again.value.application.app_id, app.app_id, "no second app");
    assert_eq!(
        ok(g.find_applications_by_display_name("lp-svc1", &ctx()))
            .await
            .len(),
        1
    );
    assert_eq!(
        ok(g.get_application(&app.id, &ctx())).await.app_id,
        app.app_id
    );
    assert_eq!(
        ok(g.find_application_by_app_id(&app.app_id, &ctx()))
            .await
            .map(|a| a.id),
        Some(app.id.clone())
    );
    assert_eq!(
        ok(g.get_application_by_unique_name("lp-tenant-svc1", &ctx()))
            .await
            .map(|a| a.id),
        Some(app.id.clone())
    );
    assert!(
        ok(g.get_application_by_unique_name("lp-nope", &ctx()))
            .await
            .is_none()
    );

    // Service principal.
    assert!(
        ok(g.find_service_principal_by_app_id(&app.app_id, &ctx()))
            .await
            .is_none()
    );
    let sp = g
        .create_service_principal(&app.app_id, &ctx().after_create())
        .await
        .unwrap();
    assert_eq!(sp.meta.status, 201);
    let sp = sp.value;
    assert_eq!(sp.app_id, app.app_id);
    assert_eq!(ok(g.get_service_principal(&sp.id, &ctx())).await.id, sp.id);
    assert_eq!(
        ok(g.find_service_principal_by_app_id(&app.app_id, &ctx()))
            .await
            .map(|s| s.id),
        Some(sp.id.clone())
    );

    // Secret, and the app authenticates with it.
    let pw = ok(g.add_password(
        &app.id,
        Some("svc-1"),
        Some("2027-06-01T00:00:00Z"),
        &ctx().after_create(),
    ))
    .await;
    assert_eq!(pw.info.display_name.as_deref(), Some("svc-1"));
    assert!(pw.secret_text.expose_secret().len() >= 16);
    assert_eq!(
        pw.info.hint.as_deref(),
        Some(&pw.secret_text.expose_secret()[..3])
    );
    let listed = ok(g.get_application(&app.id, &ctx()))
        .await
        .password_credentials;
    assert!(listed.iter().any(|p| p.key_id == pw.info.key_id));

    // Resource SPs and their roles, looked up at runtime.
    let graph_sp = ok(g.resource_service_principal(MICROSOFT_GRAPH_APP_ID, &ctx())).await;
    let role = graph_sp
        .app_role("User.Read.All")
        .expect("Graph offers User.Read.All");
    assert_eq!(role.id, USER_READ_ALL_ROLE);
    let teams_sp = ok(g.resource_service_principal(TEAMS_TENANT_ADMIN_API_APP_ID, &ctx())).await;
    assert_eq!(teams_sp.app_id, TEAMS_TENANT_ADMIN_API_APP_ID);

    // Admin consent for an application permission.
    let grant = g
        .grant_app_role(&graph_sp.id, &sp.id, &role.id, &ctx().after_create())
        .await
        .unwrap();
    assert_eq!(grant.meta.status, 201);
    let grant = grant.value;
    assert_eq!(
        (grant.principal_id.as_str(), grant.app_role_id.as_str()),
        (sp.id.as_str(), USER_READ_ALL_ROLE)
    );
    let held = ok(g.list_app_role_assignments(&sp.id, &ctx())).await;
    assert_eq!(
        held.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        vec![grant.id.as_str()]
    );
    let assigned = ok(g.list_app_role_assigned_to(&graph_sp.id, &ctx())).await;
    assert!(assigned.iter().any(|a| a.id == grant.id));

    // The app token carries the granted role and the directory role assignment works.
    let app_token = env
        .app_token(&app.app_id, &pw.secret_text, &ctx().after_create())
        .await
        .unwrap();
    assert!(!app_token.access_token.expose_secret().is_empty());
    let ra = g
        .assign_directory_role(template::TEAMS_ADMINISTRATOR, &sp.id, &ctx().after_create())
        .await
        .unwrap();
    assert_eq!(ra.meta.status, 201);
    let ra = ra.value;
    assert_eq!(ra.role_definition_id, template::TEAMS_ADMINISTRATOR);
    assert_eq!(ra.directory_scope_id.as_deref(), Some("/"));
    let ras = ok(g.list_directory_role_assignments(&sp.id, &ctx())).await;
    assert_eq!(
        ras.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec![ra.id.as_str()]
    );
    let defs = ok(g.list_directory_role_definitions(&ctx())).await;
    assert!(
        defs.iter()
            .any(|d| d.template_id.as_deref() == Some(template::PRIVILEGED_ROLE_ADMINISTRATOR))
    );

    // Delegated consent (oauth2PermissionGrants).
    let og = g
        .create_oauth2_permission_grant(
            &OAuth2PermissionGrant {
                id: String::new(),
                client_id: sp.id.clone(),
                consent_type: "AllPrincipals".into(),
                principal_id: None,
                resource_id: graph_sp.id.clone(),
                scope: "User.Read".into(),
            },
            &ctx().after_create(),
        )
        .await
        .unwrap();
    assert_eq!(og.meta.status, 201);
    let listed = ok(g.list_oauth2_permission_grants(&sp.id, &ctx())).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].scope, "User.Read");
    removed(
        g.delete_oauth2_permission_grant(&og.value.id, &ctx()),
        g.list_oauth2_permission_grants(&sp.id, &ctx()),
    )
    .await;

    // Temporary token app: found by name and removed.
    let token_sps =
        ok(g.find_service_principals_by_display_name(&env.info.token_app_display_name, &ctx()))
            .await;
    assert_eq!(
        token_sps.len(),
        1,
        "the sign-in created the -token enterprise app"
    );
    let del = removed(
        g.delete_service_principal(&token_sps[0].id, &ctx()),
        g.find_service_principals_by_display_name(&env.info.token_app_display_name, &ctx()),
    )
    .await;
    assert_eq!(del.status, 204);

    // Day two: removals.
    removed(
        g.remove_directory_role_assignment(&ra.id, &ctx()),
        g.list_directory_role_assignments(&sp.id, &ctx()),
    )
    .await;
    removed(
        g.revoke_app_role(&graph_sp.id, &grant.id, &ctx()),
        g.list_app_role_assignments(&sp.id, &ctx()),
    )
    .await;
    let rm = g
        .remove_password(&app.id, &pw.info.key_id, &ctx())
        .await
        .unwrap();
    assert_eq!(rm.meta.status, 204);
    assert!(
        ok(g.get_application(&app.id, &ctx()))
            .await
            .password_credentials
            .is_empty()
    );
    let err = env
        .app_token(&app.app_id, &pw.secret_text, &ctx())
        .await
        .unwrap_err();
    assert!(
        err.aadsts().is_some(),
        "a removed secret no longer works: {err:?}"
    );

    g.update_application(
        &app.id,
        &serde_json::json!({"notes": "managed by onboard"}),
        &ctx(),
    )
    .await
    .unwrap();
    g.delete_service_principal(&sp.id, &ctx()).await.unwrap();
    g.delete_application(&app.id, &ctx()).await.unwrap();
    let err = g.get_application(&app.id, &ctx()).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    let snap = env.sim.snapshot().to_string();
    assert!(
        !snap.contains(pw.secret_text.expose_secret()),
        "the emulator stores hashes only"
    );
}

#[tokio::test]
async fn application_administrator_is_denied_app_role_grant_and_role_assignment() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = env.graph_as("appadmin").await.unwrap();
    let ctx = OpContext::new;
    // An Application Administrator may make the app, its service principal and a secret.
    let sp = portal::hand_made(&g, "lp-aa", &Grants::NONE)
        .await
        .unwrap()
        .sp_id;
    let graph_sp = ok(g.resource_service_principal(MICROSOFT_GRAPH_APP_ID, &ctx())).await;

    let err = g
        .grant_app_role(&graph_sp.id, &sp, USER_READ_ALL_ROLE, &ctx().after_create())
        .await
        .unwrap_err();
    assert!(err.is_authorization_denied(), "{err:?}");
    let ge = err.graph().unwrap();
    assert_eq!(
        (ge.status, ge.code.as_str()),
        (403, "Authorization_RequestDenied")
    );
    assert!(ge.request_id.is_some());
    assert!(ge.client_request_id.is_some());

    let err = g
        .assign_directory_role(template::TEAMS_ADMINISTRATOR, &sp, &ctx().after_create())
        .await
        .unwrap_err();
    assert!(err.is_authorization_denied(), "{err:?}");
}

#[tokio::test]
async fn documented_errors_are_typed_and_final() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = env.graph_as("globaladmin").await.unwrap();
    let missing = "6d1f1c5e-0000-4000-8000-000000000000";

    let ctx = OpContext::new();
    let err = g.get_application(missing, &ctx).await.unwrap_err();
    let ge = err.graph().unwrap();
    assert_eq!(
        (ge.status, ge.code.as_str()),
        (404, "Request_ResourceNotFound")
    );
    assert_eq!(
        ge.client_request_id.as_deref(),
        Some(ctx.client_request_id.to_string().as_str())
    );
    assert!(
        matches!(err, EntraError::Graph(_)),
        "a plain 404 is not retried: {err:?}"
    );

    let err = g
        .create_service_principal(missing, &OpContext::new())
        .await
        .unwrap_err();
    assert_no_backing_application(&err);

    let app = ok(g.upsert_application("lp-dup", &spec("lp-dup"), &OpContext::new()))
        .await
        .application;
    g.create_service_principal(&app.app_id, &OpContext::new().after_create())
        .await
        .unwrap();
    let err = g
        .create_service_principal(&app.app_id, &OpContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.graph().map(|g| g.status), Some(409), "{err:?}");

    let bad = env.graph_with(secrecy::SecretString::from("not-a-token"));
    let err = bad.me(&OpContext::new()).await.unwrap_err();
    assert_eq!(err.graph().map(|g| g.status), Some(401), "{err:?}");
}

#[tokio::test]
async fn lists_follow_next_link_across_pages() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = env.graph_as("globaladmin").await.unwrap().with_page_size(2);
    for i in 0..5 {
        g.upsert_application(
            &format!("lp-page-{i}"),
            &spec("lp-same-name"),
            &OpContext::new(),
        )
        .await
        .unwrap();
    }
    let all = g
        .find_applications_by_display_name("lp-same-name", &OpContext::new())
        .await
        .unwrap();
    let mut names: Vec<String> = all
        .value
        .iter()
        .filter_map(|a| a.unique_name.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        (0..5).map(|i| format!("lp-page-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(all.meta.attempts, 3, "5 items at 2 per page = 3 requests");
}
