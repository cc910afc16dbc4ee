//! Transport configuration against the emulator: trust roots, `https_only`, bad PEM.

use std::time::{Duration, Instant};

use entra_client::{EntraClient, EntraConfig, EntraError, OpContext, TransportErrorKind};
use secrecy::SecretString;
use testkit::sim::{SimEnv, calm, entra_config};

/// `GET /me` through a client built from `config`, which must fail: the error.
async fn me_fails(config: &EntraConfig) -> EntraError {
    let client = EntraClient::new(config).unwrap();
    let (g, ctx) = (client.graph(SecretString::from("t")), OpContext::new());
    g.me(&ctx).await.unwrap_err()
}

#[tokio::test]
async fn untrusted_server_certificate_fails_fast_as_tls() {
    let env = SimEnv::start(calm()).await.unwrap();
    let mut config = entra_config(&env.sim);
    config.extra_root_pems.clear();
    let started = Instant::now();
    let err = me_fails(&config).await;
    assert!(
        matches!(
            err,
            EntraError::Transport {
                kind: TransportErrorKind::Tls,
                operation: "me",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not retried: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn https_only_refuses_plain_http() {
    let env = SimEnv::start(calm()).await.unwrap();
    let mut config = entra_config(&env.sim);
    config.graph_base = env.sim.base_url().replace("https://", "http://");
    let err = me_fails(&config).await;
    assert!(
        matches!(
            err,
            EntraError::Transport {
                kind: TransportErrorKind::Refused,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_configuration_is_reported_when_building() {
    let env = SimEnv::start(calm()).await.unwrap();
    let config = entra_config(&env.sim).trust_pem("not a pem");
    assert!(matches!(
        EntraClient::new(&config),
        Err(EntraError::Config(_))
    ));
    let mut config = entra_config(&env.sim);
    config.authority_base = "not a url".into();
    assert!(matches!(
        EntraClient::new(&config),
        Err(EntraError::Config(_))
    ));
}
