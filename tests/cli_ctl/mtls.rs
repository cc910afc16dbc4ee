//! `onboard ctl` over TLS with client certificates (the production set-up): the CA, certificate
//! and key settings, roles by certificate, and what a wrong CA or a missing certificate gives.

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use onboard_server::Role;
use testkit::onboard_binary;
use testkit::pki::{Ca, San};
use testkit::process::{ServerFiles, parse_json};
use testkit::sim::calm;

use crate::{create_invitation, onboard, refused, succeeded};

/// A CA (`TAG-ca.pem`) and, signed by it, the server's certificate (`TAG-server.pem`), an
/// operator's (`TAG-operator.pem`, DNS `ops.example.net`) and an auditor's
/// (`TAG-auditor.pem`, DNS `audit.example.net`), each with its `-key.pem`, in `dir`.
fn pki(dir: &std::path::Path, tag: &str) -> Result<()> {
    let ca = Ca::new(&format!("{tag} CA"))?;
    ca.write(&dir.join(format!("{tag}-ca.pem")))?;
    ca.server("server")?.write(dir, &format!("{tag}-server"))?;
    ca.client("operator", San::Dns("ops.example.net"))?
        .write(dir, &format!("{tag}-operator"))?;
    ca.client("auditor", San::Dns("audit.example.net"))?
        .write(dir, &format!("{tag}-auditor"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_choose_the_role_over_mtls() -> Result<()> {
    let certs = tempfile::tempdir()?;
    pki(certs.path(), "good")?;
    pki(certs.path(), "other")?;
    let f = |name: &str| certs.path().join(name).display().to_string();
    let sim = testkit::sim::start(calm()).await?;
    let files = ServerFiles::with(&sim, |b| {
        let p = |name: &str| certs.path().join(name);
        Ok(b.tls(
            &p("good-server.pem"),
            &p("good-server-key.pem"),
            Some(&p("good-ca.pem")),
        )
        .caller("ops.example.net", Role::Operator, Some("ops-mtls"))
        .caller("audit.example.net", Role::Auditor, None))
    })?;
    let server = onboard_binary!().serve(&files).await?;
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
        onboard(&all, &env, None).await
    };

    // The operator's certificate: invitations work, and the audit actor is its identity.
    let r = run(
        as_("operator", &https, "good-ca.pem"),
        create_invitation("Contoso", "dr-1", &["-o", "json"]),
    )
    .await?;
    ensure!(r.code == Some(0), "{r}\n{}", server.log_tail());
    let created: pb::CreateInvitationResponse =
        parse_json(&r.stdout, "onboard.v1.CreateInvitationResponse")?;
    ensure!(created.invitation.context("invitation")?.created_by == "ops-mtls");
    // host:port means https.
    let r = run(
        as_("operator", &bare, "good-ca.pem"),
        vec!["invitations", "list"],
    )
    .await?;
    succeeded(&r, "Contoso")?;

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
    refused(&r, 4, "PERMISSION_DENIED")?;

    // A server certificate from another CA: the TLS handshake fails, which is exit 3 with the
    // reason.
    let r = run(
        as_("operator", &https, "other-ca.pem"),
        vec!["invitations", "list"],
    )
    .await?;
    ensure!(r.code == Some(3), "{r}");
    // No client certificate: the handshake lets it in (the wizard's browser has none), the
    // call is refused, exit 4.
    let r = run(as_("", &https, "good-ca.pem"), vec!["invitations", "list"]).await?;
    refused(&r, 4, "UNAUTHENTICATED")?;
    ensure!(r.stderr.contains("client certificate"), "{r}");
    Ok(())
}
