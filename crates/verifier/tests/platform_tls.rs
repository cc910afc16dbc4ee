//! The platform probes over TLS with a CA made here: gRPC health and the HTTPS JSON probe trust
//! the configured CA, and say precisely what is wrong without it or with another CA.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use testkit::pki::{Ca, Pem};
use verifier::platform::probe;
use verifier::{PlatformEndpoint, Probe, Status};

/// A CA's certificate and a server certificate (`localhost`, `127.0.0.1`) it signed.
fn make_pki() -> Result<(String, Pem)> {
    let ca = Ca::new("Platform test CA")?;
    let server = ca.server("platform")?;
    Ok((ca.pem, server))
}

async fn grpc_tls(server: &Pem) -> Result<SocketAddr> {
    onboard_core::tls::install_crypto_provider();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("dr-1", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let tls = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(&server.cert, &server.key),
    );
    let server = tonic::transport::Server::builder()
        .tls_config(tls)?
        .add_service(health);
    tokio::spawn(server.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
    Ok(addr)
}

async fn https_status(server: &Pem) -> Result<SocketAddr> {
    onboard_core::tls::install_crypto_provider();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        server.cert.clone().into_bytes(),
        server.key.clone().into_bytes(),
    )
    .await?;
    let app = axum::Router::new().route(
        "/status",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "OK"})) }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    tokio::spawn(axum_server::from_tcp_rustls(listener, config)?.serve(app.into_make_service()));
    Ok(addr)
}

fn endpoint(probe: Probe, ca: Option<&str>) -> PlatformEndpoint {
    PlatformEndpoint {
        probe,
        ca_pem: ca.map(|c| c.as_bytes().to_vec()),
        timeout: Duration::from_secs(3),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_probes_trust_the_configured_ca_and_only_it() -> Result<()> {
    let (other_ca, _) = make_pki()?;
    let (ca, server) = make_pki()?;
    let grpc = grpc_tls(&server).await?;
    let g = |ca: Option<&str>| {
        endpoint(
            Probe::GrpcHealth {
                url: format!("https://{grpc}"),
                service: "dr-1".into(),
            },
            ca,
        )
    };
    let (s, d) = probe(&g(Some(&ca))).await;
    assert_eq!(s, Status::Ok, "{d}");
    let (s, d) = probe(&g(None)).await;
    assert_eq!(s, Status::Fail, "{d}");
    assert!(d.contains("needs a CA"), "{d}");
    let (s, d) = probe(&g(Some(&other_ca))).await;
    assert_eq!(s, Status::Fail, "{d}");
    assert!(
        d.contains(&grpc.to_string()) && d.contains("unreachable"),
        "{d}"
    );

    let web = https_status(&server).await?;
    let h = |ca: Option<&str>| {
        endpoint(
            Probe::HttpJson {
                url: format!("https://{web}/status"),
            },
            ca,
        )
    };
    let (s, d) = probe(&h(Some(&ca))).await;
    assert_eq!(s, Status::Ok, "{d}");
    let (s, d) = probe(&h(Some(&other_ca))).await;
    assert_eq!(s, Status::Fail, "{d}");
    assert!(d.contains("unreachable"), "{d}");
    Ok(())
}
