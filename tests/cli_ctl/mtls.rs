//! `onboard ctl` over TLS with client certificates (the production set-up): the CA, certificate
//! and key settings, roles by certificate, and what a wrong CA or a missing certificate gives.

use anyhow::{Context, Result, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::ctl_support::{self as s, ServerFiles, ServerProc, parse_json};

/// A CA and certificates signed by it, written as PEM files into `dir`.
fn pki(dir: &std::path::Path, tag: &str) -> Result<()> {
    let ca_params = || -> Result<CertificateParams> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, format!("{tag} CA"));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(p)
    };
    let ca_key = KeyPair::generate()?;
    std::fs::write(
        dir.join(format!("{tag}-ca.pem")),
        ca_params()?.self_signed(&ca_key)?.pem(),
    )?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let leaf = |name: &str, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose| -> Result<()> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        std::fs::write(
            dir.join(format!("{tag}-{name}.pem")),
            p.signed_by(&key, &issuer)?.pem(),
        )?;
        std::fs::write(
            dir.join(format!("{tag}-{name}-key.pem")),
            key.serialize_pem(),
        )?;
        Ok(())
    };
    let dns = |s: &str| -> Result<SanType> { Ok(SanType::DnsName(s.try_into()?)) };
    leaf(
        "server",
        vec![dns("localhost")?, SanType::IpAddress([127, 0, 0, 1].into())],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    leaf(
        "operator",
        vec![dns("ops.example.net")?],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    leaf(
        "auditor",
        vec![dns("audit.example.net")?],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_choose_the_role_over_mtls() -> Result<()> {
    let certs = tempfile::tempdir()?;
    pki(certs.path(), "good")?;
    pki(certs.path(), "other")?;
    let f = |name: &str| certs.path().join(name).display().to_string();
    let sim = s::start_sim(Faults::default()).await?;
    let files = ServerFiles::with_extra(
        &sim,
        &format!(
            "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\
             [[auth.callers]]\nname = \"ops.example.net\"\nrole = \"operator\"\nidentity = \"ops-mtls\"\n\
             [[auth.callers]]\nname = \"audit.example.net\"\nrole = \"auditor\"\n",
            f("good-server.pem"),
            f("good-server-key.pem"),
            f("good-ca.pem"),
        ),
    )?;
    let server = ServerProc::spawn(&files).await?;
    let port = server.addr.port();
    let https = format!("https://localhost:{port}");
    let bare = format!("localhost:{port}");
    let as_ = |who: &str, addr: &str, ca: &str| -> Vec<(String, String)> {
        let mut v = vec![
            ("ONBOARD_ADDR".to_owned(), addr.to_owned()),
            ("ONBOARD_CA".to_owned(), f(ca)),
        ];
        if !who.is_empty() {
            v.push(("ONBOARD_CERT".to_owned(), f(&format!("good-{who}.pem"))));
            v.push(("ONBOARD_KEY".to_owned(), f(&format!("good-{who}-key.pem"))));
        }
        v
    };
    let run = |env: Vec<(String, String)>, args: Vec<&'static str>| async move {
        let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let mut all = vec!["ctl"];
        all.extend(args);
        s::onboard(&all, &env, None).await
    };

    // The operator's certificate: invitations work, and the audit actor is its identity.
    let r = run(
        as_("operator", &https, "good-ca.pem"),
        vec![
            "invitations",
            "create",
            "--customer",
            "Contoso",
            "--service-id",
            "dr-1",
            "-o",
            "json",
        ],
    )
    .await?;
    ensure!(r.code == Some(0), "{r}\n{}", s::log_tail(&server.log));
    let created: pb::CreateInvitationResponse =
        parse_json(&r.stdout, "onboard.v1.CreateInvitationResponse")?;
    ensure!(created.invitation.context("invitation")?.created_by == "ops-mtls");
    // host:port means https.
    let r = run(
        as_("operator", &bare, "good-ca.pem"),
        vec!["invitations", "list"],
    )
    .await?;
    ensure!(r.code == Some(0) && r.stdout.contains("Contoso"), "{r}");

    // The auditor's certificate: the audit log yes, invitations no (exit 4).
    let r = run(
        as_("auditor", &https, "good-ca.pem"),
        vec!["audit", "checkpoint"],
    )
    .await?;
    ensure!(
        r.code == Some(0) && r.stdout.starts_with("onboard.test/audit\n"),
        "{r}"
    );
    let r = run(
        as_("auditor", &https, "good-ca.pem"),
        vec!["invitations", "list"],
    )
    .await?;
    ensure!(
        r.code == Some(4) && r.stderr.contains("PERMISSION_DENIED"),
        "{r}"
    );

    // A server certificate from another CA, or no client certificate: the TLS handshake
    // fails, which is exit 3 with the reason.
    let r = run(
        as_("operator", &https, "other-ca.pem"),
        vec!["invitations", "list"],
    )
    .await?;
    ensure!(r.code == Some(3), "{r}");
    let r = run(as_("", &https, "good-ca.pem"), vec!["invitations", "list"]).await?;
    ensure!(r.code == Some(3), "{r}");
    Ok(())
}
