//! The client against the emulator where Microsoft's behaviour is easy to get wrong
//! (docs/microsoft.md): recycle-bin keys, stripped directory roles, permission pairs, query
//! options Graph refuses.

use entra_client::graph::roles::template;
use entra_client::{EntraError, OpContext};
use testkit::sim::{SimEnv, app_spec, calm, ok};

#[tokio::test]
async fn a_deleted_app_holds_its_unique_name_until_restored_or_purged() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = env.graph_as("globaladmin").await.unwrap();
    let ctx = OpContext::new;
    let made = ok(g.upsert_application("onboard-held", &app_spec("held"), &ctx()))
        .await
        .application;
    g.delete_application(&made.id, &ctx()).await.unwrap();

    let err = g
        .upsert_application("onboard-held", &app_spec("held"), &ctx())
        .await
        .unwrap_err();
    assert!(err.is_unique_name_taken(), "{err}");
    assert!(!err.is_not_found());
    let binned = ok(g.find_deleted_application_by_unique_name("ONBOARD-held", &ctx()))
        .await
        .expect("in the bin");
    assert_eq!(binned.id, made.id);
    assert!(binned.extra["deletedDateTime"].is_string());

    // Restored: the upsert updates it again.
    g.restore_deleted_item(&made.id, &ctx()).await.unwrap();
    let again = g
        .upsert_application("onboard-held", &app_spec("held"), &ctx())
        .await
        .unwrap();
    assert!(!again.value.created);
    assert_eq!(again.value.application.id, made.id);

    // Purged: the key is free and a new app is made.
    g.delete_application(&made.id, &ctx()).await.unwrap();
    g.delete_deleted_item_permanently(&made.id, &ctx())
        .await
        .unwrap();
    assert!(ok(g.list_deleted_applications(&ctx())).await.is_empty());
    let fresh = g
        .upsert_application("onboard-held", &app_spec("held"), &ctx())
        .await
        .unwrap();
    assert!(fresh.value.created);
    assert_ne!(fresh.value.application.id, made.id);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn stripped_directory_roles_are_a_missing_permission_not_no_roles() {
    let env = SimEnv::start(calm()).await.unwrap();
    let narrow = env
        .graph_with_scopes("globaladmin", &["User.Read"])
        .await
        .unwrap();
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

    let enough = env
        .graph_with_scopes(
            "globaladmin",
            &["User.Read", "RoleManagement.Read.Directory"],
        )
        .await
        .unwrap();
    let roles = ok(enough.my_directory_roles(&OpContext::new())).await;
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].role_template_id, template::GLOBAL_ADMINISTRATOR);
    // A user without roles still gets an empty list, not an error.
    let plain = env.graph_with_scopes("user", &["User.Read"]).await.unwrap();
    assert!(
        ok(plain.my_directory_roles(&OpContext::new()))
            .await
            .is_empty()
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn role_assignments_are_listed_without_top_whatever_the_page_size() {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = env.graph_as("globaladmin").await.unwrap().with_page_size(2);
    let me = ok(g.me(&OpContext::new())).await;
    let held = ok(g.list_directory_role_assignments(&me.id, &OpContext::new())).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].role_definition_id, template::GLOBAL_ADMINISTRATOR);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn granting_a_graph_app_role_needs_the_documented_pair() {
    let env = SimEnv::start(calm()).await.unwrap();
    // Everything consented for the token app lands in later tokens' scp, so this tenant never
    // consents more than the test needs.
    let admin = env
        .graph_with_scopes("globaladmin", &["User.Read", "Application.ReadWrite.All"])
        .await
        .unwrap();
    let ctx = OpContext::new;
    let app = ok(admin.upsert_application("onboard-pair", &app_spec("pair"), &ctx()))
        .await
        .application;
    let sp = ok(admin.create_service_principal(&app.app_id, &ctx().after_create())).await;
    let graph_sp =
        ok(admin.resource_service_principal(entra_client::MICROSOFT_GRAPH_APP_ID, &ctx())).await;
    let role = graph_sp.app_role("User.Read.All").unwrap().id.clone();

    let without = env
        .graph_with_scopes(
            "globaladmin",
            &[
                "AppRoleAssignment.ReadWrite.All",
                "Application.ReadWrite.All",
            ],
        )
        .await
        .unwrap();
    let err = without
        .grant_app_role(&graph_sp.id, &sp.id, &role, &ctx())
        .await
        .unwrap_err();
    assert!(err.is_authorization_denied(), "{err}");
    let with = env
        .graph_with_scopes(
            "globaladmin",
            &["AppRoleAssignment.ReadWrite.All", "Application.Read.All"],
        )
        .await
        .unwrap();
    with.grant_app_role(&graph_sp.id, &sp.id, &role, &ctx())
        .await
        .unwrap();
    env.sim.shutdown().await;
}
