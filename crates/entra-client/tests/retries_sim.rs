//! Retry behaviour against the emulator's fault switches: 429 with Retry-After, 5xx, and
//! replication lag right after a create. Each test asserts the operation succeeds, the retries
//! were reported, and the waits really happened.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entra_client::graph::{Application, GraphClient};
use entra_client::{
    EntraClient, EntraError, MICROSOFT_GRAPH_APP_ID, OpContext, RetryEvent, RetryReason,
    observer_fn,
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

fn recorder() -> (Arc<Mutex<Vec<RetryEvent>>>, OpContext) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let ctx =
        OpContext::new().with_observer(observer_fn(move |e| sink.lock().unwrap().push(e.clone())));
    (events, ctx)
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

    let (events, ctx) = recorder();
    for _ in 0..6 {
        let sp = g
            .resource_service_principal(MICROSOFT_GRAPH_APP_ID, &ctx)
            .await
            .unwrap();
        assert_eq!(sp.value.app_id, MICROSOFT_GRAPH_APP_ID);
    }
    let events = events.lock().unwrap().clone();
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
    let (events, ctx) = recorder();
    let started = Instant::now();
    let sp = g
        .create_service_principal(&app.app_id, &ctx.after_create())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(sp.meta.status, 201);
    assert!(sp.meta.attempts >= 2, "attempts {}", sp.meta.attempts);
    let events = events.lock().unwrap().clone();
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
    let graph_sp =
        ok(g.resource_service_principal(MICROSOFT_GRAPH_APP_ID, &OpContext::new())).await;
    let role = graph_sp.app_role("User.Read.All").unwrap().id.clone();
    let (events, ctx) = recorder();
    let grant = g
        .grant_app_role(&graph_sp.id, &sp.value.id, &role, &ctx.after_create())
        .await
        .unwrap();
    assert_eq!(grant.meta.status, 201);
    let events = events.lock().unwrap().clone();
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

    let (events, rctx) = recorder();
    let made = automation
        .create_service_principal(&fresh.app_id, &rctx.after_create())
        .await
        .unwrap();
    assert_eq!(made.meta.status, 201);
    let events = events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|e| matches!(e.reason, RetryReason::ReplicationLag { status: 403, .. })),
        "{events:?}"
    );
}
