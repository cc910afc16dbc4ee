//! mTLS over a real socket with certificates made here by rcgen: two client certificates with
//! different SANs get different roles, a certificate nobody configured and a client without one
//! are refused, and health answers over mTLS.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use onboard_proto::v1 as pb;
use onboard_proto::v1::audit_client::AuditClient;
use onboard_proto::v1::invitations_client::InvitationsClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A certificate and its key, PEM.
struct Pem {
    /// The certificate.
    cert: String,
    /// Its private key.
    key: String,
}

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

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "Onboard test CA");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

fn pki() -> Result<Pki> {
    let ca_key = KeyPair::generate()?;
    let ca = ca_params()?.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca_params()?, ca_key);
    let leaf = |cn: &str, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose| -> Result<Pem> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    };
    let dns = |s: &str| -> Result<SanType> { Ok(SanType::DnsName(s.try_into()?)) };
    Ok(Pki {
        server: leaf(
            "onboard server",
            vec![dns("localhost")?, SanType::IpAddress([127, 0, 0, 1].into())],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?,
        portal: leaf(
            "portal client",
            vec![SanType::URI("spiffe://platform.example/portal".try_into()?)],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?,
        auditor: leaf(
            "compliance",
            vec![dns("auditor.example.net")?],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?,
        stranger: leaf(
            "stranger",
            vec![dns("stranger.example.net")?],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?,
        ca,
    })
}

async fn start(pki: &Pki) -> Result<common::TestServer> {
    let dir = tempfile::tempdir()?;
    let write = |name: &str, text: &str| -> Result<String> {
        let p = dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p.display().to_string())
    };
    let extra = format!(
        r#"
[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"
[[auth.callers]]
name = "spiffe://platform.example/portal"
role = "operator"
identity = "portal-mtls"
[[auth.callers]]
name = "auditor.example.net"
role = "auditor"
"#,
        cert = write("server.pem", &pki.server.cert)?,
        key = write("server-key.pem", &pki.server.key)?,
        ca = write("ca.pem", &pki.ca)?,
    );
    let text = common::base_config(dir.path(), "")?;
    // `[[auth.tokens]]` tables come last in the base text; put the TLS section before them.
    let text = text.replacen("[[auth.tokens]]", &format!("{extra}\n[[auth.tokens]]"), 1);
    common::TestServer::start_with(dir, &text).await
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
        .create_invitation(pb::CreateInvitationRequest {
            customer: "Contoso".into(),
            service_id: "svc-1".into(),
            profile: "direct-routing".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        created.invitation.context("invitation")?.created_by,
        "portal-mtls"
    );
    let e = AuditClient::new(portal)
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
        .err()
        .context("operator read the log")?;
    assert_eq!(e.code(), Code::PermissionDenied);

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
    let e = InvitationsClient::new(auditor)
        .list_invitations(pb::ListInvitationsRequest::default())
        .await
        .err()
        .context("auditor listed invitations")?;
    assert_eq!(e.code(), Code::PermissionDenied);

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
    // Even with a valid bearer token: mTLS requires the certificate at the handshake.
    let mut c = AuditClient::with_interceptor(none, common::Bearer::new(Some(common::AUDITOR)));
    let r = c.get_checkpoint(pb::GetCheckpointRequest {}).await;
    assert!(r.is_err(), "a client without a certificate was served");
    // And plaintext is not spoken at all.
    let plain = Endpoint::try_from(format!("http://{}", s.addr))?
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let r = AuditClient::with_interceptor(plain, common::Bearer::new(Some(common::AUDITOR)))
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await;
    assert!(r.is_err(), "a plaintext client was served");
    s.stop().await
}
