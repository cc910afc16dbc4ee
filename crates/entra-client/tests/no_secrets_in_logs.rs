//! Runs a whole flow with tracing at TRACE for this crate, captures the output, and checks
//! that no token or secret value appears in it (nor in error Display/Debug text).

use entra_client::graph::ApplicationSpec;
use entra_client::{MICROSOFT_GRAPH_APP_ID, OpContext};
use entra_sim::Faults;
use secrecy::{ExposeSecret, SecretString};
use testkit::logs::capture;
use testkit::sim::{SimEnv, calm, ok};

#[tokio::test]
async fn tokens_and_secrets_never_reach_the_logs() {
    // Current-thread test runtime: every task (client and emulator) logs through this default.
    let (capture, _guard) = capture("entra_client=trace,no_secrets_in_logs=trace");

    // Some lag and throttling so the retry paths log too.
    let env = SimEnv::start(Faults {
        replication_lag_ms: 800,
        throttle_rate: 0.2,
        throttle_retry_after_s: 1,
        seed: Some(3),
        // Below the client's retry budget: the run completes whatever the draws.
        max_faults_per_operation: Some(3),
        ..calm()
    })
    .await
    .unwrap();
    let mut flow = env.device_flow().await.unwrap();
    env.approve(&flow, "globaladmin").await.unwrap();
    let tokens = flow
        .poll_until_done(|t| tracing::info!(?t, "tick"))
        .await
        .unwrap();
    let access = tokens.access_token.expose_secret().to_string();
    let refresh_token = tokens
        .refresh_token
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_string();
    tracing::info!(?tokens, ?flow, "signed in");

    let refreshed = env
        .refresh(tokens.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    let g = env.client.graph(tokens.access_token);
    tracing::info!(?g, "graph client");
    let spec = ApplicationSpec {
        display_name: "lp-log".into(),
        sign_in_audience: Some("AzureADMyOrg".into()),
        ..Default::default()
    };
    let app = ok(g.upsert_application("lp-log", &spec, &OpContext::new()))
        .await
        .application;
    let sp = ok(g.create_service_principal(&app.app_id, &OpContext::new().after_create())).await;
    let pw = ok(g.add_password(
        &app.id,
        Some("svc-log"),
        None,
        &OpContext::new().after_create(),
    ))
    .await;
    let secret = pw.secret_text.expose_secret().to_string();
    tracing::info!(?pw, "secret made");

    let app_tokens = env
        .app_token(
            &app.app_id,
            &pw.secret_text,
            &OpContext::new().after_create(),
        )
        .await
        .unwrap();
    let app_access = app_tokens.access_token.expose_secret().to_string();

    let wrong = "wrong-secret-0123456789abcdef";
    let err = env
        .app_token(&app.app_id, &SecretString::from(wrong), &OpContext::new())
        .await
        .unwrap_err();
    tracing::error!(error = %err, debug = ?err, "expected failure");
    let graph_sp =
        ok(g.resource_service_principal(MICROSOFT_GRAPH_APP_ID, &OpContext::new())).await;
    let denied = env.client.graph(app_tokens.access_token);
    let err = denied
        .grant_app_role(
            &graph_sp.id,
            &sp.id,
            &graph_sp.app_roles[0].id,
            &OpContext::new(),
        )
        .await
        .unwrap_err();
    tracing::error!(error = %err, debug = ?err, "expected failure");

    drop(_guard);
    let logs = capture.text();
    assert!(
        logs.contains("client secret added"),
        "the flow was logged:\n{logs}"
    );
    assert!(logs.contains("device code sign-in completed"));
    for (name, value) in [
        ("access token", access.as_str()),
        ("refresh token", refresh_token.as_str()),
        (
            "refreshed access token",
            refreshed.access_token.expose_secret(),
        ),
        ("client secret", secret.as_str()),
        ("app access token", app_access.as_str()),
        ("wrong secret", wrong),
    ] {
        assert!(
            value.len() >= 16,
            "{name} is long enough to be a meaningful probe"
        );
        assert!(!logs.contains(value), "{name} leaked into the logs");
        // A token's signature part alone must not leak either.
        if let Some(sig) = value.rsplit('.').next().filter(|s| s.len() >= 16) {
            assert!(!logs.contains(sig), "{name} signature leaked");
        }
    }
}
