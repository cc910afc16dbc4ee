//! Transport configuration against the emulator: trust roots, `https_only`, bad PEM.

mod common;

use std::time::{Duration, Instant};

use common::{calm, config_for, start};
use entra_client::{EntraClient, EntraError, OpContext, TransportErrorKind};
use secrecy::SecretString;

#[tokio::test]
async fn untrusted_server_certificate_fails_fast_as_tls() {
    let env = start(calm()).await;
    let mut config = config_for(&env.sim);
    config.extra_root_pems.clear();
    let client = EntraClient::new(&config).unwrap();
    let started = Instant::now();
    let err = client
        .graph(SecretString::from("t"))
        .me(&OpContext::new())
        .await
        .unwrap_err();
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
    let env = start(calm()).await;
    let mut config = config_for(&env.sim);
    config.graph_base = env.sim.base_url().replace("https://", "http://");
    let client = EntraClient::new(&config).unwrap();
    let err = client
        .graph(SecretString::from("t"))
        .me(&OpContext::new())
        .await
        .unwrap_err();
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
    let env = start(calm()).await;
    let config = config_for(&env.sim).trust_pem("not a pem");
    assert!(matches!(
        EntraClient::new(&config),
        Err(EntraError::Config(_))
    ));
    let mut config = config_for(&env.sim);
    config.authority_base = "not a url".into();
    assert!(matches!(
        EntraClient::new(&config),
        Err(EntraError::Config(_))
    ));
}
