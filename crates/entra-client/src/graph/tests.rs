//! Retry-loop and request-shape tests over the scripted transport, under paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::TransportErrorKind;
use crate::error::EntraError;
use crate::retry::{OpContext, RetryEvent, RetryReason, observer_fn};
use crate::testing::{Scripted, fake_client, graph_err, json, throttled};

const SP: &str = r#"{"id":"11111111-1111-1111-1111-111111111111","appId":"22222222-2222-2222-2222-222222222222","displayName":"lp-app"}"#;
const APP_ID: &str = "22222222-2222-2222-2222-222222222222";

fn graph(script: Vec<Scripted>) -> (crate::GraphClient, Arc<crate::testing::FakeTransport>) {
    let (c, fake) = fake_client(script);
    (c.graph(SecretString::from("graph-token-xyz")), fake)
}

#[tokio::test(start_paused = true)]
async fn throttled_call_waits_retry_after_and_reports_it() {
    let (g, fake) = graph(vec![throttled(7), json(201, SP)]);
    let (tx, mut rx) = mpsc::unbounded_channel::<RetryEvent>();
    let ctx = OpContext::new().with_observer(Arc::new(tx));
    let start = Instant::now();
    let sp = g.create_service_principal(APP_ID, &ctx).await.unwrap();
    assert_eq!(sp.value.id, "11111111-1111-1111-1111-111111111111");
    assert_eq!(sp.meta.attempts, 2);
    assert_eq!(sp.meta.status, 201);
    assert_eq!(sp.meta.request_id.as_deref(), Some("rid-201"));
    let seen = fake.seen();
    assert_eq!(seen[1].at - seen[0].at, Duration::from_secs(7));
    assert_eq!(start.elapsed(), Duration::from_secs(7));
    let ev = rx.try_recv().unwrap();
    assert_eq!(ev.operation, "create_service_principal");
    assert_eq!(ev.attempt, 1);
    assert_eq!(ev.wait, Duration::from_secs(7));
    assert_eq!(
        ev.reason,
        RetryReason::Throttled {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(ev.request_id.as_deref(), Some("rid-429"));
    assert_eq!(ev.client_request_id, ctx.client_request_id.to_string());
    assert!(rx.try_recv().is_err(), "exactly one retry");
}

#[tokio::test(start_paused = true)]
async fn one_client_request_id_for_all_attempts_and_auth_header_sent() {
    let (g, fake) = graph(vec![
        graph_err(503, "ServiceUnavailable", "busy"),
        json(200, SP),
    ]);
    let ctx = OpContext::new();
    g.get_service_principal("11111111-1111-1111-1111-111111111111", &ctx)
        .await
        .unwrap();
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(
            s.headers["client-request-id"],
            ctx.client_request_id.to_string().as_str()
        );
        assert_eq!(s.headers["authorization"], "Bearer graph-token-xyz");
        assert!(
            s.url
                .starts_with("https://graph.test/v1.0/servicePrincipals/11111111-"),
            "{}",
            s.url
        );
    }
    // No Retry-After: first backoff step (1 s, jitter off).
    assert_eq!(seen[1].at - seen[0].at, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_exponentially() {
    let (g, fake) = graph(vec![
        graph_err(500, "InternalServerError", "x"),
        graph_err(502, "BadGateway", "x"),
        graph_err(504, "GatewayTimeout", "x"),
        json(200, SP),
    ]);
    g.get_service_principal("11111111-1111-1111-1111-111111111111", &OpContext::new())
        .await
        .unwrap();
    let at: Vec<Duration> = fake.seen().windows(2).map(|w| w[1].at - w[0].at).collect();
    assert_eq!(
        at,
        vec![
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(4)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn not_found_is_final_without_after_create() {
    let (g, fake) = graph(vec![graph_err(
        404,
        "Request_ResourceNotFound",
        "Resource 'x' does not exist",
    )]);
    let err = g
        .get_service_principal("11111111-1111-1111-1111-111111111111", &OpContext::new())
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    let ge = err.graph().unwrap();
    assert_eq!(ge.code, "Request_ResourceNotFound");
    assert_eq!(
        ge.request_id.as_deref(),
        Some("rid-404"),
        "header request-id wins over innerError"
    );
    let crid = fake.seen()[0].headers["client-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ge.client_request_id.as_deref(),
        Some(crid.as_str()),
        "our id, even if not echoed"
    );
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn replication_lag_after_create_is_retried_and_reported() {
    let (g, fake) = graph(vec![
        graph_err(
            400,
            "Request_BadRequest",
            "The appId of the service principal does not reference a valid application object.",
        ),
        graph_err(
            403,
            "Authorization_RequestDenied",
            "the backing application of the service principal being created must in the local tenant",
        ),
        json(201, SP),
    ]);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let ctx = OpContext::new()
        .after_create()
        .with_observer(observer_fn(move |e| sink.lock().unwrap().push(e.clone())));
    let sp = g.create_service_principal(APP_ID, &ctx).await.unwrap();
    assert_eq!(sp.meta.attempts, 3);
    let ev = events.lock().unwrap().clone();
    assert_eq!(ev.len(), 2);
    assert!(matches!(
        &ev[0].reason,
        RetryReason::ReplicationLag { status: 400, .. }
    ));
    assert!(matches!(
        &ev[1].reason,
        RetryReason::ReplicationLag { status: 403, .. }
    ));
    assert_eq!(
        (ev[0].wait, ev[1].wait),
        (Duration::from_secs(1), Duration::from_secs(2))
    );
    assert_eq!(fake.seen()[0].body, format!(r#"{{"appId":"{APP_ID}"}}"#));
}

#[tokio::test(start_paused = true)]
async fn replication_budget_exhaustion_keeps_the_last_error() {
    let script = (0..30)
        .map(|_| graph_err(404, "Request_ResourceNotFound", "gone"))
        .collect();
    let (c, fake) = fake_client(script);
    // Budget of 3 lag retries.
    let mut config = crate::EntraConfig::with_bases("https://login.test", "https://graph.test");
    config.retry.jitter = false;
    config.retry.replication_max_attempts = 3;
    let client =
        crate::EntraClient::with_seams(&config, fake.clone(), Arc::new(crate::TokioClock)).unwrap();
    drop(c);
    let g = client.graph(SecretString::from("t"));
    let err = g
        .get_service_principal(
            "11111111-1111-1111-1111-111111111111",
            &OpContext::new().after_create(),
        )
        .await
        .unwrap_err();
    match &err {
        EntraError::RetryBudgetExhausted {
            operation,
            attempts,
            elapsed,
            ..
        } => {
            assert_eq!(*operation, "get_service_principal");
            assert_eq!(*attempts, 4);
            assert_eq!(*elapsed, Duration::from_secs(1 + 2 + 4));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_not_found());
    assert_eq!(fake.seen().len(), 4);
}

/// Graph's throttling guidance: "If the request fails again with a 429 error code, you are
/// still being throttled. Continue to use the recommended Retry-After delay and retry the
/// request until it succeeds." A wait the server names is not counted against `max_attempts`
/// (only against `max_server_wait`): the tenth request, after nine 1 s waits, succeeds.
#[tokio::test(start_paused = true)]
async fn throttling_with_retry_after_is_waited_out_past_the_attempt_count() {
    let mut script: Vec<Scripted> = (0..9).map(|_| throttled(1)).collect();
    script.push(json(201, SP));
    let (g, fake) = graph(script);
    let sp = g
        .create_service_principal(APP_ID, &OpContext::new())
        .await
        .unwrap();
    assert_eq!(sp.meta.attempts, 10);
    assert_eq!(fake.seen().len(), 10);
}

/// Throttling that never lets up ends once the server's waits would pass `max_server_wait`
/// (300 s): requests at 0, 1, …, 300 s, the last one's wait past it.
#[tokio::test(start_paused = true)]
async fn persistent_throttling_ends_in_throttled() {
    let script = (0..400).map(|_| throttled(1)).collect();
    let (g, fake) = graph(script);
    let err = g.me(&OpContext::new()).await.unwrap_err();
    assert!(
        matches!(err, EntraError::Throttled { attempts: 301, .. }),
        "{err:?}"
    );
    assert_eq!(fake.seen().len(), 301);
}

#[tokio::test(start_paused = true)]
async fn post_timeout_is_not_retried_but_connect_failure_is() {
    let (g, fake) = graph(vec![Scripted::Fail(TransportErrorKind::Timeout)]);
    let err = g
        .add_password(
            "11111111-1111-1111-1111-111111111111",
            None,
            None,
            &OpContext::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        EntraError::Transport {
            kind: TransportErrorKind::Timeout,
            ..
        }
    ));
    assert_eq!(fake.seen().len(), 1);

    let body = r#"{"keyId":"33333333-3333-3333-3333-333333333333","hint":"abc","displayName":"svc-1","endDateTime":"2027-01-01T00:00:00Z","secretText":"abc-very-secret-value"}"#;
    let (g, fake) = graph(vec![
        Scripted::Fail(TransportErrorKind::Connect),
        json(200, body),
    ]);
    let pw = g
        .add_password(
            "11111111-1111-1111-1111-111111111111",
            Some("svc-1"),
            Some("2027-01-01T00:00:00Z"),
            &OpContext::new(),
        )
        .await
        .unwrap();
    assert_eq!(pw.value.info.key_id, "33333333-3333-3333-3333-333333333333");
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&pw.value.secret_text),
        "abc-very-secret-value"
    );
    assert!(!format!("{:?}", pw.value).contains("very-secret"));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].body,
        r#"{"passwordCredential":{"displayName":"svc-1","endDateTime":"2027-01-01T00:00:00Z"}}"#
    );
}

#[tokio::test(start_paused = true)]
async fn upsert_distinguishes_created_from_updated() {
    let app = r#"{"id":"44444444-4444-4444-4444-444444444444","appId":"22222222-2222-2222-2222-222222222222","displayName":"lp","uniqueName":"lp-t-svc"}"#;
    let spec = crate::graph::ApplicationSpec {
        display_name: "lp".into(),
        sign_in_audience: Some("AzureADMyOrg".into()),
        ..Default::default()
    };
    let (g, fake) = graph(vec![json(201, app)]);
    let r = g
        .upsert_application("lp-t-svc", &spec, &OpContext::new())
        .await
        .unwrap();
    assert!(r.value.created);
    assert_eq!(r.meta.status, 201);
    let s = &fake.seen()[0];
    assert_eq!(s.method, reqwest::Method::PATCH);
    assert_eq!(
        s.url,
        "https://graph.test/v1.0/applications(uniqueName='lp-t-svc')"
    );
    assert_eq!(s.headers["prefer"], "create-if-missing");
    assert_eq!(
        s.body,
        r#"{"displayName":"lp","signInAudience":"AzureADMyOrg"}"#
    );

    let (g, fake) = graph(vec![json(204, ""), json(200, app)]);
    let r = g
        .upsert_application("lp-t-svc", &spec, &OpContext::new())
        .await
        .unwrap();
    assert!(!r.value.created);
    assert_eq!(r.meta.status, 204);
    assert_eq!(r.value.application.app_id, APP_ID);
    assert_eq!(fake.seen()[1].method, reqwest::Method::GET);
}

#[tokio::test(start_paused = true)]
async fn paging_follows_next_link_on_the_same_host_only() {
    let p1 = r#"{"value":[{"id":"a1","appRoleId":"r1","principalId":"p","resourceId":"res"}],"@odata.nextLink":"https://graph.test/v1.0/servicePrincipals/res/appRoleAssignedTo?$skiptoken=X"}"#;
    let p2 = r#"{"value":[{"id":"a2","appRoleId":"r2","principalId":"p","resourceId":"res"}]}"#;
    let (g, fake) = graph(vec![json(200, p1), json(200, p2)]);
    let r = g
        .list_app_role_assigned_to("res", &OpContext::new())
        .await
        .unwrap();
    let ids: Vec<&str> = r.value.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, vec!["a1", "a2"]);
    assert_eq!(r.meta.attempts, 2);
    assert!(fake.seen()[1].url.ends_with("$skiptoken=X"));

    let evil = r#"{"value":[],"@odata.nextLink":"https://evil.test/steal"}"#;
    let (g, fake) = graph(vec![json(200, evil)]);
    let err = g
        .list_app_role_assigned_to("res", &OpContext::new())
        .await
        .unwrap_err();
    assert!(matches!(err, EntraError::Decode { .. }));
    assert_eq!(
        fake.seen().len(),
        1,
        "the token never went to the other host"
    );
}

#[tokio::test(start_paused = true)]
async fn my_directory_roles_keeps_only_roles() {
    let body = r##"{"value":[
        {"@odata.type":"#microsoft.graph.group","id":"g1","displayName":"Group"},
        {"@odata.type":"#microsoft.graph.directoryRole","id":"d1","displayName":"Application Administrator","roleTemplateId":"9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"}]}"##;
    let (g, fake) = graph(vec![json(200, body)]);
    let roles = g.my_directory_roles(&OpContext::new()).await.unwrap().value;
    assert_eq!(roles.len(), 1);
    assert_eq!(
        roles[0].role_template_id,
        crate::graph::roles::template::APPLICATION_ADMINISTRATOR
    );
    assert_eq!(
        fake.seen()[0].url,
        "https://graph.test/v1.0/me/transitiveMemberOf"
    );
}

#[tokio::test(start_paused = true)]
async fn role_assignment_body_and_filter_shape() {
    let ra = r#"{"id":"ra1","roleDefinitionId":"69091246-20e8-4a56-aa4d-066075b2a7a8","principalId":"11111111-1111-1111-1111-111111111111","directoryScopeId":"/"}"#;
    let (g, fake) = graph(vec![
        json(201, ra),
        json(200, &format!(r#"{{"value":[{ra}]}}"#)),
    ]);
    let ctx = OpContext::new();
    g.assign_directory_role(
        crate::graph::roles::template::TEAMS_ADMINISTRATOR,
        "11111111-1111-1111-1111-111111111111",
        &ctx,
    )
    .await
    .unwrap();
    let list = g
        .list_directory_role_assignments("11111111-1111-1111-1111-111111111111", &ctx)
        .await
        .unwrap();
    assert_eq!(list.value.len(), 1);
    let seen = fake.seen();
    assert_eq!(
        seen[0].body,
        r##"{"@odata.type":"#microsoft.graph.unifiedRoleAssignment","roleDefinitionId":"69091246-20e8-4a56-aa4d-066075b2a7a8","principalId":"11111111-1111-1111-1111-111111111111","directoryScopeId":"/"}"##
    );
    assert_eq!(
        seen[1].url,
        "https://graph.test/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20%2711111111-1111-1111-1111-111111111111%27"
    );
}

#[tokio::test(start_paused = true)]
async fn page_size_adds_top_once() {
    let (g, fake) = graph(vec![json(200, r#"{"value":[]}"#)]);
    let g = g.with_page_size(5000);
    g.find_applications_by_display_name("x", &OpContext::new())
        .await
        .unwrap();
    let url = &fake.seen()[0].url;
    assert!(url.ends_with("&$top=999"), "{url}");
    assert_eq!(url.matches("$top").count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_budget_but_within_the_server_wait_is_waited_out() {
    // 270 s in all is more than the 3-minute budget of our own backoff, but the server asked
    // for it and it fits Graph's 5-minute throttling window: waited, then retried.
    let (g, fake) = graph(vec![throttled(120), throttled(150), json(200, SP)]);
    let start = Instant::now();
    let sp = g
        .get_service_principal("11111111-1111-1111-1111-111111111111", &OpContext::new())
        .await
        .unwrap();
    assert_eq!(sp.meta.attempts, 3);
    assert_eq!(start.elapsed(), Duration::from_secs(270));
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_budget_gives_up_without_waiting() {
    let (g, fake) = graph(vec![throttled(600)]);
    let start = Instant::now();
    let err = g.me(&OpContext::new()).await.unwrap_err();
    assert!(
        matches!(err, EntraError::Throttled { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no 10-minute sleep past the 5-minute bound of server-asked waits"
    );
    assert_eq!(fake.seen().len(), 1);
    assert_eq!(
        err.graph().and_then(|g| g.retry_after),
        Some(Duration::from_secs(600)),
        "the caller can still see what the server asked for"
    );
}

const GONE: &str =
    "Resource 'x' does not exist or one of its queried reference-property objects are not present.";
const APP_OBJECT: &str = "33333333-3333-3333-3333-333333333333";

#[tokio::test(start_paused = true)]
async fn a_delete_retried_after_a_lost_answer_and_then_not_found_is_done() {
    let lost = [
        Scripted::Fail(TransportErrorKind::Timeout),
        Scripted::Fail(TransportErrorKind::Other),
        graph_err(500, "InternalServerError", "x"),
        graph_err(502, "BadGateway", "x"),
        graph_err(503, "ServiceUnavailable", "x"),
        graph_err(504, "GatewayTimeout", "x"),
    ];
    for first in lost {
        let (g, fake) = graph(vec![
            first,
            graph_err(404, "Request_ResourceNotFound", GONE),
        ]);
        // Marked as after a create too: the 404 must not be waited out as replication lag.
        let done = g
            .delete_application(APP_OBJECT, &OpContext::new().after_create())
            .await
            .unwrap();
        assert!(done.meta.deleted_by_earlier_attempt);
        assert_eq!(done.meta.status, 404);
        assert_eq!(done.meta.attempts, 2);
        assert_eq!(done.meta.request_id.as_deref(), Some("rid-404"));
        assert_eq!(fake.seen().len(), 2);
        assert!(
            fake.seen()
                .iter()
                .all(|s| s.method == reqwest::Method::DELETE)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_delete_not_found_without_an_earlier_lost_attempt_stays_an_error() {
    let not_found = || graph_err(404, "Request_ResourceNotFound", GONE);
    let cases = [
        vec![not_found()],
        // A 429 was not processed; a failed connect never reached Graph.
        vec![throttled(1), not_found()],
        vec![Scripted::Fail(TransportErrorKind::Connect), not_found()],
    ];
    for script in cases {
        let n = script.len();
        let (g, fake) = graph(script);
        let err = g
            .delete_application(APP_OBJECT, &OpContext::new())
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert_eq!(fake.seen().len(), n);
    }
    // Only a DELETE: a read retried after a timeout that meets 404 reports the 404.
    let (g, _) = graph(vec![
        Scripted::Fail(TransportErrorKind::Timeout),
        not_found(),
    ]);
    let err = g
        .get_service_principal("11111111-1111-1111-1111-111111111111", &OpContext::new())
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    // A successful delete says nothing of earlier attempts.
    let (g, _) = graph(vec![graph_err(504, "GatewayTimeout", "x"), json(204, "")]);
    let done = g
        .delete_application(APP_OBJECT, &OpContext::new())
        .await
        .unwrap();
    assert!(!done.meta.deleted_by_earlier_attempt);
    assert_eq!(done.meta.status, 204);
}

#[tokio::test(start_paused = true)]
async fn a_delete_retried_after_a_lost_answer_is_done_on_any_404() {
    // Graph's code is not promised on every 404 (a gateway's page, another code): once an
    // earlier attempt may have deleted it, "not there" is the goal reached.
    let not_found = [
        graph_err(404, "ResourceNotFound", GONE),
        Scripted::Resp(404, vec![], "<html>Not Found</html>".into()),
    ];
    for answer in not_found {
        let (g, fake) = graph(vec![graph_err(500, "InternalServerError", "x"), answer]);
        let done = g
            .delete_application(APP_OBJECT, &OpContext::new())
            .await
            .unwrap();
        assert!(done.meta.deleted_by_earlier_attempt);
        assert_eq!(done.meta.status, 404);
        assert_eq!(fake.seen().len(), 2);
    }
}
