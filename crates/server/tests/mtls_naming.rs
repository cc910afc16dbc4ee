//! How a client certificate names its caller (crates/server/src/auth.rs): URI SANs first, then
//! DNS SANs; the subject CN only for a certificate without SANs and only with
//! `auth.cn_fallback = true`; an extended key usage without clientAuth is refused. Over real
//! mTLS on loopback with rcgen certificates (`testkit::pki`).

use std::time::Duration;

use anyhow::{Result, bail};
use onboard_proto::v1 as pb;
use onboard_proto::v1::audit_client::AuditClient;
use onboard_server::Role;
use testkit::pki::{Ca, Eku, Pem, San};
use testkit::server::TestServer;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const URI: &str = "spiffe://platform.example/auditor";
const DNS: &str = "auditor.example.net";

/// A server with mTLS whose callers are: the URI (auditor "by-uri"), the DNS name (auditor
/// "by-dns") and the CN "legacy-auditor" (auditor "by-cn"); `cn_fallback` as given.
async fn start(ca: &Ca, cn_fallback: bool) -> Result<TestServer> {
    let server = ca.server("onboard server")?;
    let ca_pem = ca.pem.clone();
    TestServer::start_with(move |b| {
        let (cert, key) = server.write(b.dir(), "server")?;
        let ca = b.dir().join("ca.pem");
        std::fs::write(&ca, &ca_pem)?;
        Ok(b.tls(&cert, &key, Some(&ca))
            .caller(URI, Role::Auditor, Some("by-uri"))
            .caller(DNS, Role::Auditor, Some("by-dns"))
            .caller("legacy-auditor", Role::Auditor, Some("by-cn"))
            .cn_fallback(cn_fallback))
    })
    .await
}

/// Who the server says `client` is (the actor of its audit read), or the status code.
async fn who(s: &TestServer, ca: &Ca, client: &Pem) -> Result<Result<String, Code>> {
    onboard_core::tls::install_crypto_provider();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name("localhost")
        .identity(Identity::from_pem(&client.cert, &client.key));
    let ch = Endpoint::try_from(format!("https://{}", s.addr))?
        .tls_config(tls)?
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    match AuditClient::new(ch)
        .get_checkpoint(pb::GetCheckpointRequest {})
        .await
    {
        Ok(_) => {
            let entries = s.entries()?;
            let Some(last) = entries.last() else {
                bail!("no entries")
            };
            Ok(Ok(last["actor"].as_str().unwrap_or_default().to_owned()))
        }
        Err(status) => Ok(Err(status.code())),
    }
}

#[tokio::test]
async fn uri_san_then_dns_san_and_the_cn_only_without_sans_when_enabled() -> Result<()> {
    let ca = Ca::new("Onboard test CA")?;
    let client = |cn: &str, sans: &[San<'_>], ekus: &[Eku]| ca.client_with(cn, sans, ekus);
    let both = client(
        "legacy-auditor",
        &[San::Dns(DNS), San::Uri(URI)],
        &[Eku::ClientAuth],
    )?;
    let dns_only = client("legacy-auditor", &[San::Dns(DNS)], &[Eku::ClientAuth])?;
    let unknown_dns = client(
        "legacy-auditor",
        &[San::Dns("nobody.example.net")],
        &[Eku::ClientAuth],
    )?;
    let no_sans = client("legacy-auditor", &[], &[Eku::ClientAuth])?;
    let no_eku = client("x", &[San::Uri(URI)], &[])?;
    let server_eku = client("x", &[San::Uri(URI)], &[Eku::ServerAuth])?;

    let s = start(&ca, false).await?;
    // The URI SAN wins over the DNS SAN, whatever their order in the certificate.
    assert_eq!(who(&s, &ca, &both).await?, Ok("by-uri".into()));
    assert_eq!(who(&s, &ca, &dns_only).await?, Ok("by-dns".into()));
    // A CN is not a name when the certificate has SANs, and not without them by default.
    assert_eq!(
        who(&s, &ca, &unknown_dns).await?,
        Err(Code::Unauthenticated)
    );
    assert_eq!(who(&s, &ca, &no_sans).await?, Err(Code::Unauthenticated));
    // No EKU extension: fine. An EKU without clientAuth: refused (at the handshake by rustls,
    // or by the server's own check; either way not served).
    assert_eq!(who(&s, &ca, &no_eku).await?, Ok("by-uri".into()));
    assert!(who(&s, &ca, &server_eku).await?.is_err());
    s.stop().await?;

    // With the fallback on, the CN names a certificate without SANs, and only such a one.
    let s = start(&ca, true).await?;
    assert_eq!(who(&s, &ca, &no_sans).await?, Ok("by-cn".into()));
    assert_eq!(
        who(&s, &ca, &unknown_dns).await?,
        Err(Code::Unauthenticated)
    );
    s.stop().await
}
