//! mTLS over a real socket with certificates made here by rcgen: two client certificates with
//! different SANs get different roles, a certificate nobody configured and a client without one
//! are refused, health answers over mTLS, and the customer's browser, which has no client
//! certificate, still reaches the wizard on the same listener.

use std::time::Duration;

use anyhow::{Context, Result};
use onboard_proto::v1 as pb;
use onboard_proto::v1::audit_client::AuditClient;
use onboard_proto::v1::invitations_client::InvitationsClient;
use onboard_server::Role;
use testkit::pki::{Ca, Pem, San};
use testkit::server::{AUDITOR, Bearer, TestServer};
use testkit::server_helpers::Refused;
use testkit::wizard::contoso;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Everything one test's PKI needs.
struct Pki {
    /// The CA that signs the server's and the clients' certificates.
    ca: String,
    /// The server's certificate (localhost, 127.0.0.1).
    server: Pem,
    /// An operator, named by a URI SAN.
    portal: Pem,
    /// An auditor, named by a DNS SAN.
    auditor: Pem,
    /// Signed by the CA but named by no `[[auth.callers]]` rule.
    stranger: Pem,
}

fn pki() -> Result<Pki> {
    let ca = Ca::new("Onboard test CA")?;
    Ok(Pki {
        server: ca.server("onboard server")?,
        portal: ca.client(
            "portal client",
            San::Uri("spiffe://platform.example/portal"),
        )?,
        auditor: ca.client("compliance", San::Dns("auditor.example.net"))?,
        stranger: ca.client("stranger", San::Dns("stranger.example.net"))?,
        ca: ca.pem,
    })
}

/// A server with mTLS: the portal's certificate is an operator (`portal-mtls`), the
/// auditor's an auditor; the bearer tokens stay configured.
async fn start(pki: &Pki) -> Result<TestServer> {
    TestServer::start_with(|b| {
        let (cert, key) = pki.server.write(b.dir(), "server")?;
        let ca = b.dir().join("ca.pem");
        std::fs::write(&ca, &pki.ca)?;
        Ok(b.tls(&cert, &key, Some(&ca))
            .caller(
                "spiffe://platform.example/portal",
                Role::Operator,
                Some("portal-mtls"),
            )
            .caller("auditor.example.net", Role::Auditor, None))
    })
    .await
}

async fn channel(addr: std::net::SocketAddr, pki: &Pki, client: Option<&Pem>) -> Result<Channel> {
    onboard_core::tls::install_crypto_provider();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some(c) = client {
        tls = tls.identity(Identity::from_pem(&c.cert, &c.key));
    }
    Ok(Endpoint::try_from(format!("https://{addr}"))?
        .tls_config(tls)?
        .timeout(Duration::from_secs(10))
        .connect_lazy())
}

#[tokio::test]
async fn client_certificates_map_to_roles() -> Result<()> {
    let pki = pki()?;
    let s = start(&pki).await?;

    // The portal (URI SAN) is an operator.
    let portal = channel(s.addr, &pki, Some(&pki.portal)).await?;
    let created = InvitationsClient::new(portal.clone())
        .create_invitation(contoso("svc-1", "direct-routing"))
        .await?
        .into_inner();
    assert_eq!(
        created.invitation.context("invitation")?.created_by,
        "portal-mtls"
    );
    AuditClient::new(portal)
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .refused(Code::PermissionDenied, &[])?;

    // The auditor (DNS SAN) reads the log, and its read is recorded under its name.
    let auditor = channel(s.addr, &pki, Some(&pki.auditor)).await?;
    let cp = AuditClient::new(auditor.clone())
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await?
        .into_inner();
    assert!(cp.size > 0);
    let entries = s.entries()?;
    let last = entries.last().context("no entries")?;
    assert_eq!(last["action"], "audit.read");
    assert_eq!(last["actor"], "auditor.example.net");
    InvitationsClient::new(auditor)
        .list_invitations(pb::ListInvitationsRequest::default())
        .await
        .refused(Code::PermissionDenied, &[])?;

    // A certificate from the right CA that no rule names is not a caller.
    let stranger = channel(s.addr, &pki, Some(&pki.stranger)).await?;
    let e = AuditClient::new(stranger)
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .err()
        .context("stranger read the log")?;
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("stranger.example.net"));

    // Health over mTLS.
    let mut h = tonic_health::pb::health_client::HealthClient::new(
        channel(s.addr, &pki, Some(&pki.auditor)).await?,
    );
    let st = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: "onboard.v1.Audit".into(),
        })
        .await?
        .into_inner()
        .status;
    assert_eq!(
        st,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    s.stop().await
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() -> Result<()> {
    let pki = pki()?;
    let s = start(&pki).await?;
    let none = channel(s.addr, &pki, None).await?;
    // Even with a valid bearer token: with mTLS every operator, auditor or admin call needs
    // the certificate (the handshake lets the wizard's browser in without one).
    let mut c = AuditClient::with_interceptor(none.clone(), Bearer::new(Some(AUDITOR)));
    c.get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .refused(Code::Unauthenticated, &["client certificate"])?;
    InvitationsClient::with_interceptor(none, Bearer::new(Some(testkit::server::OPERATOR)))
        .create_invitation(contoso("svc-1", "direct-routing"))
        .await
        .refused(Code::Unauthenticated, &["client certificate"])?;
    // And plaintext is not spoken at all.
    let plain = Endpoint::try_from(format!("http://{}", s.addr))?
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let r = AuditClient::with_interceptor(plain, Bearer::new(Some(AUDITOR)))
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await;
    assert!(r.is_err(), "a plaintext client was served");
    s.stop().await
}

/// The customer's browser has no client certificate: with mTLS on, the wizard's page, its
/// assets and its API (which acts through the invitation token) are served all the same.
#[tokio::test]
async fn the_wizard_is_reached_without_a_client_certificate() -> Result<()> {
    let pki = pki()?;
    let s = start(&pki).await?;
    let operator = channel(s.addr, &pki, Some(&pki.portal)).await?;
    let token = InvitationsClient::new(operator)
        .create_invitation(contoso("svc-1", "direct-routing"))
        .await?
        .into_inner()
        .token;
    let browser = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.as_bytes())?])
        .build()?;
    let base = format!("https://localhost:{}", s.addr.port());
    let css = browser.get(format!("{base}/wizard/app.css")).send().await?;
    anyhow::ensure!(css.status() == 200, "{}", css.status());
    let api = browser
        .post(format!("{base}/wizard/api/invitation"))
        .header("x-invitation-token", &token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    let status = api.status();
    let body = api.text().await?;
    anyhow::ensure!(
        status == 200 && body.contains("Contoso"),
        "{status}: {body}"
    );
    s.stop().await
}
