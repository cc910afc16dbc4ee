//! `write_once` over the scripted transport, under paused time: a create re-sent after a lost
//! answer that Graph refuses as existing is waited for until the list shows it.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::TransportErrorKind;
use crate::error::EntraError;
use crate::retry::{OpContext, RetryLog, RetryReason};
use crate::testing::{Scripted, fake_client, graph_err, json};

const SP_ID: &str = "11111111-1111-1111-1111-111111111111";
const APP_ID: &str = "22222222-2222-2222-2222-222222222222";
const GRAPH_SP: &str = "44444444-4444-4444-4444-444444444444";
const ROLE: &str = "df021288-bdef-4463-88db-98f22de89214";
const TEAMS_ADMIN: &str = "69091246-20e8-4a56-aa4d-066075b2a7a8";
const EMPTY: &str = r#"{"value":[]}"#;
const EXISTS: &str = "Permission being assigned already exists on the object.";
const CONFLICT: &str = "A conflicting object with one or more of the specified property values is present in the directory.";

fn client(
    script: Vec<Scripted>,
    replication_max_attempts: u32,
) -> (crate::GraphClient, Arc<crate::testing::FakeTransport>) {
    let (_, fake) = fake_client(script);
    let mut config = crate::EntraConfig::with_bases("https://login.test", "https://graph.test");
    config.retry.jitter = false;
    config.retry.replication_max_attempts = replication_max_attempts;
    let c =
        crate::EntraClient::with_seams(&config, fake.clone(), Arc::new(crate::TokioClock)).unwrap();
    (c.graph(SecretString::from("t")), fake)
}

fn grant_list() -> String {
    format!(
        r#"{{"value":[{{"id":"grant-1","appRoleId":"{}","principalId":"{SP_ID}","resourceId":"{GRAPH_SP}"}}]}}"#,
        ROLE.to_ascii_uppercase()
    )
}

/// The lost attempt, the first look (empty), the re-sent create refused as existing, two more
/// empty looks while the list lags, then the list showing it.
fn lagging(lost: Scripted, refusal: Scripted, found: String) -> Vec<Scripted> {
    vec![
        lost,
        json(200, EMPTY),
        refusal,
        json(200, EMPTY),
        json(200, EMPTY),
        json(200, &found),
    ]
}

#[tokio::test(start_paused = true)]
async fn an_already_exists_answer_after_a_lost_create_waits_for_the_list_to_show_it() {
    // Each operation's look lists something else; the waits are the same.
    for op in ["grant", "role", "sp"] {
        let (script, found_id) = match op {
            "grant" => (
                lagging(
                    graph_err(500, "InternalServerError", "x"),
                    graph_err(400, "Request_BadRequest", EXISTS),
                    grant_list(),
                ),
                "grant-1",
            ),
            "role" => (
                lagging(
                    graph_err(504, "GatewayTimeout", "x"),
                    graph_err(400, "Request_BadRequest", CONFLICT),
                    format!(
                        r#"{{"value":[{{"id":"ra-1","roleDefinitionId":"{TEAMS_ADMIN}","principalId":"{SP_ID}","directoryScopeId":"/"}}]}}"#
                    ),
                ),
                "ra-1",
            ),
            _ => (
                lagging(
                    Scripted::Fail(TransportErrorKind::Timeout),
                    graph_err(409, "Request_MultipleObjectsWithSameKeyValue", "in use"),
                    format!(r#"{{"value":[{{"id":"{SP_ID}","appId":"{APP_ID}"}}]}}"#),
                ),
                SP_ID,
            ),
        };
        let (g, fake) = client(script, 20);
        let (events, ctx) = RetryLog::with_context();
        let id = match op {
            "grant" => g
                .grant_app_role(GRAPH_SP, SP_ID, ROLE, &ctx)
                .await
                .map(|r| r.value.id),
            "role" => g
                .assign_directory_role(TEAMS_ADMIN, SP_ID, &ctx)
                .await
                .map(|r| r.value.id),
            _ => g
                .create_service_principal(APP_ID, &ctx)
                .await
                .map(|r| r.value.id),
        };
        assert_eq!(id.unwrap(), found_id, "{op}");
        let seen = fake.seen();
        assert_eq!(seen.len(), 6, "{op}: nothing past the look that found it");
        let posts = seen.iter().filter(|s| s.method == reqwest::Method::POST);
        assert_eq!(
            posts.count(),
            2,
            "{op}: the create was not sent a third time"
        );
        let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].at - w[0].at).collect();
        let s = Duration::from_secs;
        // Look after the first backoff step (no request at once after a server error); re-send
        // at once when it is not there; look at once on the refusal; then the replication-lag
        // steps (1 s, 2 s).
        assert_eq!(gaps, [s(1), s(0), s(0), s(1), s(2)], "{op}");
        let events = events.events();
        let lag = events
            .iter()
            .filter(|e| matches!(e.reason, RetryReason::ReplicationLag { .. }))
            .count();
        assert_eq!(
            lag, 2,
            "{op}: each wait for the list is reported: {events:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_create_refused_as_existing_ends_with_the_replication_budget() {
    let mut script = vec![
        graph_err(500, "InternalServerError", "x"),
        json(200, EMPTY),
        graph_err(400, "Request_BadRequest", EXISTS),
    ];
    script.extend((0..3).map(|_| json(200, EMPTY)));
    let (g, fake) = client(script, 2);
    let err = g
        .grant_app_role(GRAPH_SP, SP_ID, ROLE, &OpContext::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EntraError::RetryBudgetExhausted {
                operation: "grant_app_role",
                attempts: 5,
                ..
            }
        ),
        "{err:?}"
    );
    let last = err.graph().expect("the refusal is kept");
    assert_eq!((last.status, last.message.as_str()), (400, EXISTS));
    assert_eq!(
        fake.seen().len(),
        6,
        "three looks after the refusal, then no more"
    );
}

#[tokio::test(start_paused = true)]
async fn another_refusal_after_a_lost_create_is_looked_up_once_and_not_waited_for() {
    let (g, fake) = client(
        vec![
            graph_err(500, "InternalServerError", "x"),
            json(200, EMPTY),
            graph_err(
                400,
                "Request_BadRequest",
                "One or more properties contains invalid values.",
            ),
            json(200, EMPTY),
        ],
        20,
    );
    let err = g
        .grant_app_role(GRAPH_SP, SP_ID, ROLE, &OpContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.graph().map(|g| g.status), Some(400), "{err:?}");
    assert_eq!(fake.seen().len(), 4);
    // And a first attempt refused as existing is the caller's answer: no lost attempt made it.
    let (g, fake) = client(vec![graph_err(400, "Request_BadRequest", EXISTS)], 20);
    let err = g
        .grant_app_role(GRAPH_SP, SP_ID, ROLE, &OpContext::new())
        .await
        .unwrap_err();
    assert!(err.graph().is_some_and(|g| g.status == 400), "{err:?}");
    assert_eq!(fake.seen().len(), 1);
}

/// A lost create answered 504 with `Retry-After`: the look waits what the server named
/// (reported as the retry's wait as it begins), and a day's worth is held to the policy's
/// `max_server_wait` (300 s); the create found by the look is not sent again.
#[tokio::test(start_paused = true)]
async fn a_lost_creates_look_waits_the_retry_after_it_named_and_no_longer_than_the_cap() {
    let sp_list = format!(r#"{{"value":[{{"id":"{SP_ID}","appId":"{APP_ID}"}}]}}"#);
    for (named, waited) in [(7, 7), (86_400, 300)] {
        let lost = Scripted::Resp(
            504,
            vec![("retry-after", named.to_string())],
            r#"{"error":{"code":"GatewayTimeout","message":"x"}}"#.into(),
        );
        let (g, fake) = client(vec![lost, json(200, &sp_list)], 20);
        let (events, ctx) = RetryLog::with_context();
        let sp = g.create_service_principal(APP_ID, &ctx).await.unwrap();
        assert_eq!(sp.value.id, SP_ID);
        let seen = fake.seen();
        assert_eq!(seen.len(), 2, "found by the look: not sent again");
        assert_eq!(seen[1].at - seen[0].at, Duration::from_secs(waited));
        let waits: Vec<Duration> = events.events().iter().map(|e| e.wait).collect();
        assert_eq!(
            waits,
            [Duration::from_secs(waited)],
            "reported once, as it began"
        );
    }
}
