//! Token endpoint tests: form bodies, answers, errors.

use super::*;

#[test]
fn tenant_segment_accepts_guid_domain_and_aliases() {
    for t in [
        "organizations",
        "contoso.onmicrosoft.com",
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
    ] {
        assert!(tenant_segment(t).is_ok(), "{t}");
    }
    for t in ["", "a/b", "../x", "a b", ".hidden"] {
        assert!(tenant_segment(t).is_err(), "{t}");
    }
}

#[test]
fn token_debug_hides_tokens() {
    let t = TokenSet {
        access_token: SecretString::from("eyJ-access-secret"),
        refresh_token: Some(SecretString::from("refresh-secret")),
        id_token: None,
        expires_in: Duration::from_secs(3599),
        scope: Some("User.Read".into()),
        token_type: "Bearer".into(),
        request_id: None,
    };
    let s = format!("{t:?}");
    assert!(
        !s.contains("access-secret") && !s.contains("refresh-secret"),
        "{s}"
    );
}

#[test]
fn expires_in_accepts_string_form() {
    let r: TokenResponse =
        serde_json::from_str(r#"{"token_type":"Bearer","expires_in":"3599","access_token":"x"}"#)
            .unwrap();
    assert_eq!(r.expires_in.get(), Duration::from_secs(3599));
}

use crate::EntraClient;
use crate::retry::RetryReason;
use crate::testing::{fake_client, sts_err, token_ok};

/// A Graph token for client `app-1` with `secret` in `tenant`, through `client`.
async fn graph_token(
    client: &EntraClient,
    tenant: &str,
    secret: &SecretString,
) -> Result<TokenSet, EntraError> {
    let scope = "https://graph.microsoft.com/.default";
    client
        .sts()
        .client_credentials(tenant, "app-1", secret, scope, &OpContext::new())
        .await
}

#[tokio::test(start_paused = true)]
async fn client_credentials_request_shape() {
    let (client, fake) = fake_client(vec![token_ok("app-token")]);
    let secret = SecretString::from("s3cr3t&=value");
    let t = graph_token(&client, "contoso.onmicrosoft.com", &secret)
        .await
        .unwrap();
    assert_eq!(t.access_token.expose_secret(), "app-token");
    assert_eq!(t.expires_in, Duration::from_secs(3599));
    let s = &fake.seen()[0];
    assert_eq!(
        s.url,
        "https://login.test/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
    assert_eq!(
        s.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        s.body,
        "grant_type=client_credentials&client_id=app-1&client_secret=s3cr3t%26%3Dvalue&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
    );
}

#[tokio::test(start_paused = true)]
async fn wrong_secret_is_a_typed_sts_error_and_never_echoed() {
    let (client, _) = fake_client(vec![sts_err(401, "invalid_client", 7_000_215)]);
    let secret = SecretString::from("wrong-secret-value");
    let err = graph_token(&client, "t", &secret).await.unwrap_err();
    assert_eq!(err.aadsts(), Some(7_000_215));
    let sts = err.sts().unwrap();
    assert_eq!(
        (sts.http_status, sts.error.as_str()),
        (401, "invalid_client")
    );
    assert_eq!(sts.trace_id.as_deref(), Some("t"));
    assert_eq!(sts.correlation_id.as_deref(), Some("c"));
    assert!(!format!("{err} {err:?}").contains("wrong-secret-value"));
}

#[tokio::test(start_paused = true)]
async fn new_secret_propagation_is_retried_when_marked() {
    let (client, fake) = fake_client(vec![
        sts_err(401, "invalid_client", 7_000_215),
        sts_err(400, "unauthorized_client", 700_016),
        token_ok("finally"),
    ]);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = OpContext::new()
        .after_create()
        .with_observer(std::sync::Arc::new(tx));
    let t = client
        .sts()
        .client_credentials("t", "app-1", &SecretString::from("x"), "s/.default", &ctx)
        .await
        .unwrap();
    assert_eq!(t.access_token.expose_secret(), "finally");
    assert_eq!(fake.seen().len(), 3);
    let first = rx.try_recv().unwrap();
    assert_eq!(
        first.reason,
        RetryReason::CredentialPropagation { aadsts: 7_000_215 }
    );
    assert_eq!(first.operation, "client_credentials");
}

#[tokio::test(start_paused = true)]
async fn refresh_sends_the_refresh_grant() {
    let (client, fake) = fake_client(vec![token_ok("new")]);
    let t = client
        .sts()
        .refresh(
            "organizations",
            "pub-1",
            &SecretString::from("rt-1"),
            &["User.Read", "offline_access"],
            &OpContext::new(),
        )
        .await
        .unwrap();
    assert_eq!(t.refresh_token.as_ref().unwrap().expose_secret(), "r-new");
    assert_eq!(
        fake.seen()[0].body,
        "grant_type=refresh_token&client_id=pub-1&refresh_token=rt-1&scope=User.Read+offline_access\
         &claims=%7B%22access_token%22%3A%7B%22xms_cc%22%3A%7B%22values%22%3A%5B%22cp1%22%5D%7D%7D%7D"
    );
}
