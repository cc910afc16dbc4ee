//! The client against the emulator where Microsoft's behaviour is easy to get wrong
//! (docs/microsoft.md): recycle-bin keys, stripped directory roles, permission pairs, query
//! options Graph refuses.

use entra_client::graph::ApplicationSpec;
use entra_client::graph::roles::template;
use entra_client::{EntraError, GraphClient, OpContext};
use testkit::sim::{SimEnv, calm};

/// Signs in as `nick` asking for exactly `scopes` (plus the OpenID ones).
async fn graph_with_scopes(env: &SimEnv, nick: &str, scopes: &[&str]) -> GraphClient {
    let mut all: Vec<&str> = scopes.to_vec();
    all.extend(["offline_access", "openid", "profile"]);
    let mut flow = env
        .client
        .sts()
        .start_device_code(
            &env.info.tenant_domain,
            &env.info.token_app_client_id,
            &all,
            &OpContext::new(),
        )
        .await
        .unwrap();
    env.sim
        .complete_device_login(&flow.authorization().user_code, &env.upn(nick))
        .await
        .unwrap();
    let tokens = flow.poll_until_done(|_| {}).await.unwrap();
    env.client.graph(tokens.access_token)
}

fn spec(name: &str) -> ApplicationSpec {
    ApplicationSpec {
        display_name: name.into(),
        sign_in_audience: Some("AzureADMyOrg".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_deleted_app_holds_its_unique_name_until_restored_or_purged() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = env.graph_as("globaladmin").await.unwrap();
    let ctx = OpContext::new;
    let made = g
        .upsert_application("onboard-held", &spec("held"), &ctx())
        .await
        .unwrap()
        .value
        .application;
    g.delete_application(&made.id, &ctx()).await.unwrap();

    let err = g
        .upsert_application("onboard-held", &spec("held"), &ctx())
        .await
        .unwrap_err();
    assert!(err.is_unique_name_taken(), "{err}");
    assert!(!err.is_not_found());
    let binned = g
        .find_deleted_application_by_unique_name("ONBOARD-held", &ctx())
        .await
        .unwrap()
        .value
        .expect("in the bin");
    assert_eq!(binned.id, made.id);
    assert!(binned.extra["deletedDateTime"].is_string());

    // Restored: the upsert updates it again.
    g.restore_deleted_item(&made.id, &ctx()).await.unwrap();
    let again = g
        .upsert_application("onboard-held", &spec("held"), &ctx())
        .await
        .unwrap();
    assert!(!again.value.created);
    assert_eq!(again.value.application.id, made.id);

    // Purged: the key is free and a new app is made.
    g.delete_application(&made.id, &ctx()).await.unwrap();
    g.delete_deleted_item_permanently(&made.id, &ctx())
        .await
        .unwrap();
    assert!(
        g.list_deleted_applications(&ctx())
            .await
            .unwrap()
            .value
            .is_empty()
    );
    let fresh = g
        .upsert_application("onboard-held", &spec("held"), &ctx())
        .await
        .unwrap();
    assert!(fresh.value.created);
    assert_ne!(fresh.value.application.id, made.id);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn stripped_directory_roles_are_a_missing_permission_not_no_roles() {
    let env = SimEnv::start(calm()).await.unwrap();
    let narrow = graph_with_scopes(&env, "globaladmin", &["User.Read"]).await;
    let err = narrow
        .my_directory_roles(&OpContext::new())
        .await
        .unwrap_err();
    match &err {
        EntraError::InsufficientScope { needed, .. } => {
            assert!(needed.starts_with("RoleManagement.Read.Directory"), "{err}")
        }
        other => panic!("expected InsufficientScope, got {other}"),
    }
    assert!(!err.is_authorization_denied());

    let enough = graph_with_scopes(
        &env,
        "globaladmin",
        &["User.Read", "RoleManagement.Read.Directory"],
    )
    .await;
    let roles = enough
        .my_directory_roles(&OpContext::new())
        .await
        .unwrap()
        .value;
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].role_template_id, template::GLOBAL_ADMINISTRATOR);
    // A user without roles still gets an empty list, not an error.
    let plain = graph_with_scopes(&env, "user", &["User.Read"]).await;
    assert!(
        plain
            .my_directory_roles(&OpContext::new())
            .await
            .unwrap()
            .value
            .is_empty()
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn role_assignments_are_listed_without_top_whatever_the_page_size() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = env.graph_as("globaladmin").await.unwrap().with_page_size(2);
    let me = g.me(&OpContext::new()).await.unwrap().value;
    let held = g
        .list_directory_role_assignments(&me.id, &OpContext::new())
        .await
        .unwrap()
        .value;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].role_definition_id, template::GLOBAL_ADMINISTRATOR);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn granting_a_graph_app_role_needs_the_documented_pair() {
    let env = SimEnv::start(calm()).await.unwrap();
    // Everything consented for the token app lands in later tokens' scp, so this tenant never
    // consents more than the test needs.
    let admin = graph_with_scopes(
        &env,
        "globaladmin",
        &["User.Read", "Application.ReadWrite.All"],
    )
    .await;
    let ctx = OpContext::new;
    let app = admin
        .upsert_application("onboard-pair", &spec("pair"), &ctx())
        .await
        .unwrap()
        .value
        .application;
    let sp = admin
        .create_service_principal(&app.app_id, &ctx().after_create())
        .await
        .unwrap()
        .value;
    let graph_sp = admin
        .resource_service_principal(entra_client::MICROSOFT_GRAPH_APP_ID, &ctx())
        .await
        .unwrap()
        .value;
    let role = graph_sp.app_role("User.Read.All").unwrap().id.clone();

    let without = graph_with_scopes(
        &env,
        "globaladmin",
        &[
            "AppRoleAssignment.ReadWrite.All",
            "Application.ReadWrite.All",
        ],
    )
    .await;
    let err = without
        .grant_app_role(&graph_sp.id, &sp.id, &role, &ctx())
        .await
        .unwrap_err();
    assert!(err.is_authorization_denied(), "{err}");
    let with = graph_with_scopes(
        &env,
        "globaladmin",
        &["AppRoleAssignment.ReadWrite.All", "Application.Read.All"],
    )
    .await;
    with.grant_app_role(&graph_sp.id, &sp.id, &role, &ctx())
        .await
        .unwrap();
    env.sim.shutdown().await;
}
