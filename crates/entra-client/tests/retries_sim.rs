//! Retry behaviour against the emulator's fault switches: 429 with Retry-After, 5xx, and
//! replication lag right after a create. Each test asserts the operation succeeds, the retries
//! were reported, and the waits really happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use entra_client::graph::{Application, GraphClient};
use entra_client::{
    EntraClient, EntraError, MICROSOFT_GRAPH_APP_ID, OpContext, RetryEvent, RetryLog, RetryReason,
};
use entra_sim::Faults;
use testkit::portal::Grants;
use testkit::sim::{SimEnv, app_spec, assert_no_backing_application, calm, entra_config, ok};
use tokio::sync::mpsc;

/// The emulator with the global admin's Graph client, then `faults` switched on.
async fn admin_under(faults: Faults) -> (SimEnv, GraphClient) {
    let env = SimEnv::start(calm()).await.unwrap();
    let g = env.graph_as("globaladmin").await.unwrap();
    env.sim.set_faults(faults);
    (env, g)
}

/// A new application `name`, made without retries being asked for.
async fn new_app(g: &GraphClient, name: &str) -> Application {
    ok(g.upsert_application(name, &app_spec(name), &OpContext::new()))
        .await
        .application
}

/// Microsoft Graph's service principal in the tenant and its `User.Read.All` app role id.
async fn graph_and_role(g: &GraphClient) -> (entra_client::graph::ServicePrincipal, String) {
    let graph_sp =
        ok(g.resource_service_principal(MICROSOFT_GRAPH_APP_ID, &OpContext::new())).await;
    let role = graph_sp.app_role("User.Read.All").unwrap().id.clone();
    (graph_sp, role)
}

/// Exactly one service principal named `name` (it is `sp`), one app role grant on it
/// (`grant`) and one directory role assignment (`assignment`): nothing was made twice.
async fn exactly_one_of_each(g: &GraphClient, name: &str, sp: &str, grant: &str, assignment: &str) {
    let quiet = OpContext::new();
    let sps = ok(g.find_service_principals_by_display_name(name, &quiet)).await;
    assert_eq!(sps.len(), 1, "{sps:?}");
    assert_eq!(sps[0].id, sp);
    let grants = ok(g.list_app_role_assignments(sp, &quiet)).await;
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].id, grant);
    let roles = ok(g.list_directory_role_assignments(sp, &quiet)).await;
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0].id, assignment);
}

#[tokio::test]
async fn throttling_honours_retry_after_and_reports_each_retry() {
    let (env, g) = admin_under(Faults {
        throttle_rate: 0.5,
        throttle_retry_after_s: 1,
        seed: Some(11),
        ..calm()
    })
    .await;

    let (tx, mut rx) = mpsc::channel::<RetryEvent>(64);
    let started = Instant::now();
    for _ in 0..6 {
        let ctx = OpContext::new().with_observer(Arc::new(tx.clone()));
        let me = g.me(&ctx).await.unwrap();
        assert_eq!(me.value.user_principal_name, env.upn("globaladmin"));
    }
    let elapsed = started.elapsed();
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    assert!(
        !events.is_empty(),
        "a 50% throttle rate over 6 calls produced no retry"
    );
    for e in &events {
        assert_eq!(e.operation, "me");
        assert_eq!(
            e.reason,
            RetryReason::Throttled {
                retry_after: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(e.wait, Duration::from_secs(1), "Retry-After is the wait");
        assert!(e.request_id.is_some(), "the 429's request-id is reported");
    }
    let waited = Duration::from_secs(events.len() as u64);
    assert!(
        elapsed >= waited,
        "elapsed {elapsed:?} < announced waits {waited:?}"
    );
    assert!(
        elapsed < waited + Duration::from_secs(5),
        "no waits beyond Retry-After: {elapsed:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (_env, g) = admin_under(Faults {
        error_rate: 0.5,
        throttle_retry_after_s: 1,
        seed: Some(5),
        ..calm()
    })
    .await;

    let (events, ctx) = RetryLog::with_context();
    for _ in 0..6 {
        let sp = g
            .resource_service_principal(MICROSOFT_GRAPH_APP_ID, &ctx)
            .await
            .unwrap();
        assert_eq!(sp.value.app_id, MICROSOFT_GRAPH_APP_ID);
    }
    let events = events.events();
    let statuses: Vec<u16> = events
        .iter()
        .map(|e| match e.reason {
            RetryReason::ServerError { status, .. } => status,
            ref other => panic!("unexpected reason {other:?}"),
        })
        .collect();
    assert!(!statuses.is_empty());
    assert!(
        statuses.iter().all(|s| [500, 503, 504].contains(s)),
        "{statuses:?}"
    );
    // 503 carries Retry-After: 1 and is waited exactly; 500/504 use the 100 ms-based backoff.
    for e in &events {
        if let RetryReason::ServerError { status: 503, .. } = e.reason {
            assert_eq!(e.wait, Duration::from_secs(1));
        } else {
            assert!(e.wait <= Duration::from_secs(5));
        }
        assert_eq!(e.client_request_id, ctx.client_request_id.to_string());
    }
}

#[tokio::test]
async fn replication_lag_is_retried_only_for_dependent_calls() {
    let (_env, g) = admin_under(Faults {
        replication_lag_ms: 1500,
        ..calm()
    })
    .await;

    // Standalone (not marked): the lag error is returned as is, after one request.
    let app = new_app(&g, "lp-lag-a").await;
    let err = g
        .create_service_principal(&app.app_id, &OpContext::new())
        .await
        .unwrap_err();
    assert_no_backing_application(&err);

    // Marked as dependent: retried until the replica catches up.
    let app = new_app(&g, "lp-lag-b").await;
    let (events, ctx) = RetryLog::with_context();
    let started = Instant::now();
    let sp = g
        .create_service_principal(&app.app_id, &ctx.after_create())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(sp.meta.status, 201);
    assert!(sp.meta.attempts >= 2, "attempts {}", sp.meta.attempts);
    let events = events.events();
    assert_eq!(events.len() as u32, sp.meta.attempts - 1);
    assert!(
        events
            .iter()
            .all(|e| matches!(e.reason, RetryReason::ReplicationLag { status: 400, .. })),
        "{events:?}"
    );
    let waited: Duration = events.iter().map(|e| e.wait).sum();
    assert!(elapsed >= waited, "{elapsed:?} < {waited:?}");
    assert!(
        elapsed >= Duration::from_millis(1000),
        "the lag was waited out: {elapsed:?}"
    );

    // The next dependent call (grant on the new SP) rides out lag too.
    let (graph_sp, role) = graph_and_role(&g).await;
    let (events, ctx) = RetryLog::with_context();
    let grant = g
        .grant_app_role(&graph_sp.id, &sp.value.id, &role, &ctx.after_create())
        .await
        .unwrap();
    assert_eq!(grant.meta.status, 201);
    let events = events.events();
    assert!(!events.is_empty(), "grant right after SP creation met lag");
    for e in &events {
        match &e.reason {
            // "Not a valid reference update" (400) or a 404 on the new principal.
            RetryReason::ReplicationLag { status, .. } => {
                assert!([400, 404].contains(status), "{e:?}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn replication_budget_exhaustion_is_typed() {
    let (env, g) = admin_under(Faults {
        replication_lag_ms: 60_000,
        ..calm()
    })
    .await;
    let mut config = entra_config(&env.sim);
    config.retry.replication_max_elapsed = Duration::from_secs(2);
    let tight = EntraClient::new(&config).unwrap();
    let tokens = env.sign_in("globaladmin").await.unwrap();
    let g2 = tight.graph(tokens.access_token);

    let app = new_app(&g, "lp-lag-c").await;
    let started = Instant::now();
    let err = g2
        .create_service_principal(&app.app_id, &OpContext::new().after_create())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        EntraError::RetryBudgetExhausted {
            operation,
            attempts,
            ..
        } => {
            assert_eq!(*operation, "create_service_principal");
            assert!(*attempts >= 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.graph().map(|g| g.status),
        Some(400),
        "the last error is kept"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "the budget bounded the wait: {elapsed:?}"
    );
}

#[tokio::test]
async fn app_only_caller_gets_the_backing_application_403_which_is_lag_not_denial() {
    let env = SimEnv::start(calm()).await.unwrap();
    let ctx = OpContext::new;

    // An automation app holding Application.ReadWrite.All (app-only).
    let app = env
        .hand_made(
            "lp-automation",
            &Grants {
                graph: &["Application.ReadWrite.All"],
                ..Grants::NONE
            },
        )
        .await
        .unwrap();
    let token = env
        .app_token(&app.client_id, &app.secret, &ctx().after_create())
        .await
        .unwrap();
    let automation = env.client.graph(token.access_token);

    env.sim.set_faults(Faults {
        replication_lag_ms: 1500,
        ..calm()
    });
    let fresh = new_app(&automation, "lp-by-app").await;
    let err = automation
        .create_service_principal(&fresh.app_id, &ctx())
        .await
        .unwrap_err();
    let ge = err.graph().unwrap();
    assert_eq!(ge.status, 403);
    assert!(ge.message.contains("backing application"), "{ge:?}");
    assert!(
        !err.is_authorization_denied(),
        "replication lag is not a permission problem"
    );

    let (events, rctx) = RetryLog::with_context();
    let made = automation
        .create_service_principal(&fresh.app_id, &rctx.after_create())
        .await
        .unwrap();
    assert_eq!(made.meta.status, 201);
    let events = events.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e.reason, RetryReason::ReplicationLag { status: 403, .. })),
        "{events:?}"
    );
}

/// Teams Administrator's template id (a built-in role).
const TEAMS_ADMINISTRATOR: &str = "69091246-20e8-4a56-aa4d-066075b2a7a8";

#[tokio::test]
async fn a_write_whose_answer_is_lost_is_looked_for_and_not_made_twice() {
    let (env, g) = admin_under(calm()).await;
    let app = new_app(&g, "lp-lost-answers").await;
    let (graph_sp, role) = graph_and_role(&g).await;
    // Each operation's first Graph write lands and then answers 500 (the answer is lost).
    env.sim.set_faults(lost_answer(500));
    let (events, ctx) = RetryLog::with_context();
    let sp = ok(g.create_service_principal(&app.app_id, &ctx)).await;
    let grant = ok(g.grant_app_role(&graph_sp.id, &sp.id, &role, &OpContext::new())).await;
    let assignment =
        ok(g.assign_directory_role(TEAMS_ADMINISTRATOR, &sp.id, &OpContext::new())).await;
    ok(g.add_application_owner(&app.id, &sp.id, &OpContext::new())).await;
    // A secret's value cannot be found again: its lost answer is the caller's to clean up.
    let err = g
        .add_password(&app.id, Some("lost"), None, &OpContext::new())
        .await
        .unwrap_err();
    assert!(err.is_unanswered_write(), "{err:?}");
    env.sim.set_faults(calm());
    let landed = ok(g.get_application(&app.id, &OpContext::new())).await;
    assert_eq!(
        landed.password_credentials.len(),
        1,
        "the lost secret landed"
    );
    let key = landed.password_credentials[0].key_id.clone();
    env.sim.set_faults(lost_answer(504));
    ok(g.remove_password(&app.id, &key, &OpContext::new())).await;
    env.sim.set_faults(calm());

    // Exactly one of each: nothing was sent twice, and every call said it succeeded.
    exactly_one_of_each(&g, "lp-lost-answers", &sp.id, &grant.id, &assignment.id).await;
    let quiet = OpContext::new();
    let owners = ok(g.list_application_owners(&app.id, &quiet)).await;
    assert_eq!(owners.iter().filter(|o| o.id == sp.id).count(), 1);
    let app = ok(g.get_application(&app.id, &quiet)).await;
    assert!(app.password_credentials.is_empty());
    // Found at the first look: nothing was sent again; the one wait before the look (the
    // service principal's, the only call with this observer) was reported as it began.
    let events = events.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(
            events[0].reason,
            RetryReason::ServerError { status: 500, .. }
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_create_refused_with_500_before_landing_is_sent_again_after_looking() {
    let (env, g) = admin_under(calm()).await;
    let app = new_app(&g, "lp-refused").await;
    env.sim.set_faults(Faults {
        error_rate: 1.0,
        error_status: Some(500),
        max_faults_per_operation: Some(1),
        ..calm()
    });
    let (events, ctx) = RetryLog::with_context();
    let sp = g.create_service_principal(&app.app_id, &ctx).await.unwrap();
    assert_eq!(sp.meta.status, 201, "made by the second POST");
    let events = events.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        events[0].reason,
        RetryReason::ServerError { status: 500, .. }
    ));
    env.sim.set_faults(calm());
    let sps = ok(g.find_service_principals_by_display_name("lp-refused", &OpContext::new())).await;
    assert_eq!(sps.len(), 1);
}

#[tokio::test]
async fn a_delete_whose_answer_is_lost_is_done_when_the_retry_finds_it_gone() {
    let (env, g) = admin_under(calm()).await;
    let app = new_app(&g, "lp-lost-delete").await;
    let sp = ok(g.create_service_principal(&app.app_id, &OpContext::new())).await;
    let (graph_sp, role) = graph_and_role(&g).await;
    let grant = ok(g.grant_app_role(&graph_sp.id, &sp.id, &role, &OpContext::new())).await;
    let assignment =
        ok(g.assign_directory_role(TEAMS_ADMINISTRATOR, &sp.id, &OpContext::new())).await;

    // Each DELETE's first attempt lands and then answers 500 or 504 (the answer is lost); the
    // retry meets 404 Request_ResourceNotFound, which is the delete done.
    for status in [500, 504] {
        env.sim.set_faults(lost_answer(status));
        let (events, ctx) = RetryLog::with_context();
        let done = if status == 500 {
            g.revoke_app_role(&graph_sp.id, &grant.id, &ctx).await
        } else {
            g.remove_directory_role_assignment(&assignment.id, &ctx)
                .await
        }
        .unwrap();
        assert!(done.meta.deleted_by_earlier_attempt, "{status}");
        assert_eq!(done.meta.status, 404);
        assert_eq!(done.meta.attempts, 2);
        assert_eq!(events.events().len(), 1, "one retry reported");
    }
    env.sim.set_faults(calm());
    let quiet = OpContext::new();
    assert!(
        ok(g.list_app_role_assignments(&sp.id, &quiet))
            .await
            .is_empty()
    );
    assert!(
        ok(g.list_directory_role_assignments(&sp.id, &quiet))
            .await
            .is_empty()
    );
    // The application last (its service principal goes with it), its answer lost too.
    env.sim.set_faults(lost_answer(504));
    let done = g
        .delete_application(&app.id, &OpContext::new())
        .await
        .unwrap();
    assert!(done.meta.deleted_by_earlier_attempt);
    env.sim.set_faults(calm());
    // A 404 on the first attempt is still an error: nothing of ours removed it.
    let err = g.delete_application(&app.id, &quiet).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn a_lost_create_refused_as_existing_while_the_lists_lag_is_waited_for() {
    let (env, g) = admin_under(calm()).await;
    let app = new_app(&g, "lp-lost-lagging").await;
    let (graph_sp, role) = graph_and_role(&g).await;
    // Each write lands and its answer is lost; the look that follows finds nothing yet (the
    // lists lag), so the create is sent again and refused as existing ("Permission being
    // assigned already exists on the object", a conflicting object, a second service
    // principal of the appId): that refusal proves it was made.
    const LAG: u64 = 1_500;
    env.sim.set_faults(Faults {
        replication_lag_ms: LAG,
        assignment_list_lag_ms: LAG,
        ..lost_answer(500)
    });
    // One context per operation: the emulator loses the first answer of each.
    let (sp_events, ctx) = RetryLog::with_context();
    let started = Instant::now();
    let sp = ok(g.create_service_principal(&app.app_id, &ctx)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(LAG),
        "waited for the list"
    );
    let (grant_events, ctx) = RetryLog::with_context();
    let started = Instant::now();
    let grant = ok(g.grant_app_role(&graph_sp.id, &sp.id, &role, &ctx)).await;
    assert!(started.elapsed() >= Duration::from_millis(LAG));
    let (role_events, ctx) = RetryLog::with_context();
    let started = Instant::now();
    let assignment = ok(g.assign_directory_role(TEAMS_ADMINISTRATOR, &sp.id, &ctx)).await;
    assert!(started.elapsed() >= Duration::from_millis(LAG));
    for events in [sp_events, grant_events, role_events] {
        let events = events.events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e.reason, RetryReason::ReplicationLag { .. })),
            "the wait for the list is reported: {events:?}"
        );
    }
    env.sim.set_faults(calm());
    tokio::time::sleep(Duration::from_millis(LAG)).await;

    // Exactly one of each, and the ids returned are theirs.
    exactly_one_of_each(&g, "lp-lost-lagging", &sp.id, &grant.id, &assignment.id).await;
}

/// Each operation's first Graph write lands and is then answered `status` (500 or 504): its
/// answer is lost, the change is made.
fn lost_answer(status: u16) -> Faults {
    Faults {
        error_rate: 1.0,
        error_status: Some(status),
        errors_after_write: true,
        max_faults_per_operation: Some(1),
        ..calm()
    }
}
