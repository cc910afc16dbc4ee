//! Transport configuration against the emulator: trust roots, `https_only`, bad PEM.

use entra_client::{EntraClient, EntraConfig, EntraError, RetryLog, TransportErrorKind};
use secrecy::SecretString;
use testkit::sim::{SimEnv, calm, entra_config};

/// `GET /me` through a client built from `config`, which must fail below HTTP with `kind`;
/// the retries it made.
async fn me_fails_with(config: &EntraConfig, kind: TransportErrorKind) -> RetryLog {
    let client = EntraClient::new(config).unwrap();
    let g = client.graph(SecretString::from("t"));
    let (retries, ctx) = RetryLog::with_context();
    let err = g.me(&ctx).await.unwrap_err();
    assert!(
        matches!(
            &err,
            EntraError::Transport { kind: k, operation: "me", .. } if *k == kind
        ),
        "{err:?}"
    );
    retries
}

/// Building a client from `config` must fail as a configuration error.
fn build_fails(config: &EntraConfig) {
    let built = EntraClient::new(config);
    assert!(matches!(built, Err(EntraError::Config(_))), "{built:?}");
}

#[tokio::test]
async fn untrusted_server_certificate_fails_fast_as_tls() {
    let env = SimEnv::start(calm()).await.unwrap();
    let mut config = entra_config(&env.sim);
    config.extra_root_pems.clear();
    let retries = me_fails_with(&config, TransportErrorKind::Tls)
        .await
        .events();
    assert!(retries.is_empty(), "not retried: {retries:?}");
}

#[tokio::test]
async fn https_only_refuses_plain_http() {
    let env = SimEnv::start(calm()).await.unwrap();
    let mut config = entra_config(&env.sim);
    config.graph_base = env.sim.base_url().replace("https://", "http://");
    me_fails_with(&config, TransportErrorKind::Refused).await;
}

#[tokio::test]
async fn bad_configuration_is_reported_when_building() {
    let env = SimEnv::start(calm()).await.unwrap();
    build_fails(&entra_config(&env.sim).trust_pem("not a pem"));
    let mut config = entra_config(&env.sim);
    config.authority_base = "not a url".into();
    build_fails(&config);
}
