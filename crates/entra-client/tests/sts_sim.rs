//! Identity-platform flows against the emulator over loopback HTTPS.

use std::time::Duration;

use entra_client::{
    CallMeta, DeviceAuthorization, DeviceCodeFlow, EntraError, OpContext, PollOutcome,
};
use entra_sim::Faults;
use secrecy::{ExposeSecret, SecretString};
use testkit::portal::Grants;
use testkit::sim::{GRAPH_DEFAULT, SIGN_IN_SCOPES, SimEnv, calm, ok};

/// `GET /me` with `access_token` works and names the global admin; its call facts.
async fn me_is_global_admin(env: &SimEnv, access_token: SecretString) -> CallMeta {
    let me = env
        .client
        .graph(access_token)
        .me(&OpContext::new())
        .await
        .unwrap();
    assert_eq!(me.value.user_principal_name, env.upn("globaladmin"));
    me.meta
}

#[tokio::test]
async fn device_code_sign_in_yields_tokens_for_the_right_user() {
    let env = SimEnv::start(calm()).await.unwrap();
    let mut flow = env.device_flow().await.unwrap();
    let auth = flow.authorization();
    assert!(!auth.user_code.is_empty());
    assert!(
        auth.verification_uri.starts_with("https://"),
        "{}",
        auth.verification_uri
    );
    assert_eq!(flow.interval(), Duration::from_secs(1));
    assert!(auth.expires_in >= Duration::from_secs(600));

    // Before the user acts: pending.
    assert!(matches!(
        flow.poll_once().await.unwrap(),
        PollOutcome::Pending { .. }
    ));

    env.approve(&flow, "globaladmin").await.unwrap();
    let mut ticks = 0;
    let tokens = flow.poll_until_done(|_| ticks += 1).await.unwrap();
    assert!(
        tokens.refresh_token.is_some(),
        "offline_access gives a refresh token"
    );
    assert!(tokens.id_token.is_some(), "openid gives an id token");

    let me = me_is_global_admin(&env, tokens.access_token).await;
    assert_eq!(me.status, 200);
    assert!(me.request_id.is_some(), "Graph request-id captured");
}

#[tokio::test]
async fn polling_faster_than_the_interval_gets_slow_down_and_plus_five_seconds() {
    let env = SimEnv::start(calm()).await.unwrap();
    let mut flow = env.device_flow().await.unwrap();
    assert!(matches!(
        flow.poll_once().await.unwrap(),
        PollOutcome::Pending { .. }
    ));
    // Immediately again: faster than the 1 s interval.
    match flow.poll_once().await.unwrap() {
        PollOutcome::SlowDown { next_poll_in } => assert_eq!(next_poll_in, Duration::from_secs(6)),
        other => panic!("expected slow_down, got {other:?}"),
    }
    assert_eq!(flow.interval(), Duration::from_secs(6));
}

#[tokio::test]
async fn declined_sign_in_is_typed() {
    let env = SimEnv::start(calm()).await.unwrap();
    let mut flow = env.device_flow().await.unwrap();
    env.decline(&flow, "globaladmin").await.unwrap();
    let err = flow.poll_until_done(|_| {}).await.unwrap_err();
    assert!(matches!(err, EntraError::DeviceCodeDeclined(_)), "{err:?}");
    assert!(err.is_authorization_denied());
    assert!(err.sts().unwrap().trace_id.is_some());
}

#[tokio::test]
async fn expired_code_is_typed() {
    let env = SimEnv::start(Faults {
        device_code_ttl_s: Some(2),
        ..calm()
    })
    .await
    .unwrap();
    let mut flow = env.device_flow().await.unwrap();
    let mut ticks = Vec::new();
    let err = flow
        .poll_until_done(|t| ticks.push(t.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, EntraError::DeviceCodeExpired(_)), "{err:?}");
    assert!(
        !ticks.is_empty(),
        "pending ticks were reported before expiry"
    );
    // The server side says expired_token too, once past the TTL.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = flow.poll_once().await.unwrap_err();
    assert!(
        matches!(err, EntraError::DeviceCodeExpired(Some(_))),
        "{err:?}"
    );
    assert_eq!(err.aadsts(), Some(70019));
}

#[tokio::test]
async fn unknown_device_code_is_bad_verification_code() {
    let env = SimEnv::start(calm()).await.unwrap();
    let auth = DeviceAuthorization::new(
        SecretString::from("not-a-real-device-code"),
        "XXXX".into(),
        "https://example.invalid".into(),
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    let mut flow = DeviceCodeFlow::new(
        env.client.sts(),
        env.info.tenant_domain.clone(),
        env.info.token_app_client_id.clone(),
        auth,
    );
    let err = flow.poll_once().await.unwrap_err();
    assert!(matches!(err, EntraError::BadVerificationCode(_)), "{err:?}");
}

#[tokio::test]
async fn refresh_token_gives_a_working_access_token() {
    let env = SimEnv::start(calm()).await.unwrap();
    let tokens = env.sign_in("globaladmin").await.unwrap();
    let refreshed = env
        .refresh(tokens.refresh_token.as_ref().unwrap())
        .await
        .unwrap();
    assert_ne!(
        refreshed.access_token.expose_secret(),
        tokens.access_token.expose_secret()
    );
    me_is_global_admin(&env, refreshed.access_token).await;
}

#[tokio::test]
async fn client_credentials_with_a_wrong_secret_is_aadsts7000215() {
    let env = SimEnv::start(calm()).await.unwrap();
    let app = env.hand_made("cc-test", &Grants::NONE).await.unwrap();

    let wrong = SecretString::from("definitely-not-the-secret");
    let err = env
        .app_token(&app.client_id, &wrong, &OpContext::new())
        .await
        .unwrap_err();
    assert_eq!(err.aadsts(), Some(7_000_215), "{err:?}");
    let sts = err.sts().unwrap();
    assert_eq!(sts.error, "invalid_client");
    assert_eq!(sts.http_status, 401);
    assert!(sts.correlation_id.is_some() && sts.trace_id.is_some());

    let ok = env
        .app_token(
            &app.client_id,
            &app.secret,
            &OpContext::new().after_create(),
        )
        .await
        .unwrap();
    assert_eq!(ok.token_type, "Bearer");
    assert!(
        ok.refresh_token.is_none(),
        "no refresh token in client credentials"
    );
}

#[tokio::test]
async fn unknown_tenant_is_a_typed_sts_error() {
    let env = SimEnv::start(calm()).await.unwrap();
    let err = env
        .client
        .sts()
        .client_credentials(
            "nosuchtenant.onmicrosoft.com",
            "00000000-0000-0000-0000-000000000001",
            &SecretString::from("x"),
            GRAPH_DEFAULT,
            &OpContext::new(),
        )
        .await
        .unwrap_err();
    assert!(err.sts().is_some(), "{err:?}");
    assert_eq!(err.aadsts(), Some(90002), "{err:?}");
}

#[tokio::test]
async fn client_credentials_are_never_sent_to_a_tenant_independent_authority() {
    let env = SimEnv::start(calm()).await.unwrap();
    let app = env.hand_made("cc-alias", &Grants::NONE).await.unwrap();
    let sts_calls = || env.sim.request_counts().sts;
    let before = sts_calls();
    for tenant in ["organizations", "common", "Common"] {
        let err = env
            .client
            .sts()
            .client_credentials(
                tenant,
                &app.client_id,
                &app.secret,
                GRAPH_DEFAULT,
                &OpContext::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EntraError::InvalidInput(_)), "{err:?}");
    }
    assert_eq!(sts_calls(), before, "nothing was sent");
    // Entra itself refuses them there (AADSTS50059), so the tenant's own authority is the one.
    let ok = env
        .client
        .sts()
        .client_credentials(
            &env.info.tenant_id,
            &app.client_id,
            &app.secret,
            GRAPH_DEFAULT,
            &OpContext::new().after_create(),
        )
        .await
        .unwrap();
    assert_eq!(ok.token_type, "Bearer");
}

#[tokio::test]
async fn renewing_token_source_refreshes_against_the_sts() {
    use entra_client::{RenewingToken, TokenSource};
    let env = SimEnv::start(calm()).await.unwrap();
    let tokens = env.sign_in("globaladmin").await.unwrap();
    let first = tokens.access_token.expose_secret().to_string();
    let src = std::sync::Arc::new(RenewingToken::from_user_sign_in(
        env.client.sts(),
        &env.info.tenant_domain,
        &env.info.token_app_client_id,
        SIGN_IN_SCOPES,
        tokens,
    ));
    assert_eq!(
        src.token(false).await.unwrap().expose_secret(),
        first,
        "fresh token kept"
    );
    let renewed = src.token(true).await.unwrap();
    assert_ne!(renewed.expose_secret(), first);
    let g = env.client.graph_with_tokens(src.clone());
    assert_eq!(
        ok(g.me(&OpContext::new())).await.user_principal_name,
        env.upn("globaladmin")
    );
    // The rotated refresh token is used next time.
    assert!(src.token(true).await.is_ok());
}
