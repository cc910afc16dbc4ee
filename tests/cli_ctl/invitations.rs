//! `onboard ctl invitations create|list|get|revoke`, and how refusals are reported.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use onboard_proto::v1::invitations_client::InvitationsClient;

use testkit::config::{AUDITOR, OPERATOR, OPERATOR_IDENTITY};
use testkit::onboard_binary;
use testkit::server::with_token;
use testkit::sim::calm;

use crate::{create_invitation, ctl, ctl_json, has_line, onboard, refused, same_as_grpc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_created_listed_shown_and_revoked() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let (files, server) = onboard_binary!().start(&sim).await?;
    let mut grpc = InvitationsClient::new(with_token(server.channel().await?, Some(OPERATOR)));
    let email = files.dir.path().join("mail.txt");
    let html = files.dir.path().join("mail.html");

    // create: the link on stdout, the email in a private file.
    let r = ctl(
        &server,
        OPERATOR,
        &create_invitation(
            "Zürich Telecom AG",
            "dr-1",
            &[
                "--valid-for",
                "3d",
                "--email-out",
                email.to_str().context("path")?,
                "--email-html",
                html.to_str().context("path")?,
            ],
        ),
    )
    .await?;
    ensure!(r.code == Some(0), "{r}");
    let link = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("activation link: "))
        .with_context(|| r.to_string())?
        .to_owned();
    ensure!(
        link.starts_with("https://wizard.example.net/activate#token="),
        "{r}"
    );
    let mail = std::fs::read_to_string(&email)?;
    ensure!(
        mail.starts_with("Subject: ") && mail.contains(&link),
        "{mail}"
    );
    ensure!(
        std::fs::read_to_string(&html)?.contains("Z&uuml;rich")
            || std::fs::read_to_string(&html)?.contains("Zürich")
    );
    for f in [&email, &html] {
        ensure!(std::fs::metadata(f)?.permissions().mode() & 0o077 == 0);
    }
    let id = r
        .stdout
        .split_whitespace()
        .nth(1)
        .context("invitation id")?
        .to_owned();

    // create --output json: the whole answer, token included (a script sends the email).
    let (_, created) = ctl_json::<pb::CreateInvitationResponse>(
        &server,
        OPERATOR,
        &create_invitation("Fabrikam", "dr-2", &["--output", "json"]),
        "onboard.v1.CreateInvitationResponse",
    )
    .await?;
    let inv = created.invitation.clone().context("invitation")?;
    ensure!(created.activation_url.ends_with(&created.token) && !created.token.is_empty());
    let got = grpc
        .get_invitation(pb::GetInvitationRequest {
            key: Some(pb::get_invitation_request::Key::Id(inv.id.clone())),
        })
        .await?
        .into_inner();
    ensure!(got == inv, "json {inv:?}\ngrpc {got:?}");

    // list: table and JSON equal to ListInvitations.
    let r = ctl(&server, OPERATOR, &["invitations", "list"]).await?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.stdout.starts_with("ID "), "{r}");
    ensure!(
        r.stdout.contains(&id)
            && r.stdout.contains("Zürich Telecom AG")
            && r.stdout.contains("pending"),
        "{r}"
    );
    let list = ["-o", "json", "invitations", "list", "--state", "pending"];
    let r = ctl(&server, OPERATOR, &list).await?;
    let req = pb::ListInvitationsRequest {
        state: pb::InvitationState::Pending.into(),
        ..Default::default()
    };
    let listed = same_as_grpc(
        &r,
        "onboard.v1.ListInvitationsResponse",
        grpc.list_invitations(req),
    )
    .await?;
    ensure!(listed.invitations.len() == 2, "{listed:?}");
    // --limit below what exists: the first ones, and a word that more exist; at or above it,
    // no such word.
    let r = ctl(&server, OPERATOR, &["invitations", "list", "--limit", "1"]).await?;
    ensure!(r.code == Some(0) && r.stderr.contains("more exist"), "{r}");
    let r = ctl(&server, OPERATOR, &["invitations", "list", "--limit", "50"]).await?;
    ensure!(r.code == Some(0) && !r.stderr.contains("more exist"), "{r}");
    // `… | head` once head has gone: status 141 and no panic, as a Unix tool ends.
    let url = server.url();
    let env = [("ONBOARD_ADDR", url.as_str()), ("ONBOARD_TOKEN", OPERATOR)];
    let r = onboard_binary!()
        .run_reader_gone(&["ctl", "invitations", "list"], &env)
        .await?;
    ensure!(r.code == Some(141) && r.stderr.is_empty(), "{r}");

    // get and revoke.
    let r = ctl(&server, OPERATOR, &["invitations", "get", &id]).await?;
    has_line(&r, |l| l.starts_with("state: ") && l.ends_with(" pending"))?;
    let (_, revoked) = ctl_json::<pb::Invitation>(
        &server,
        OPERATOR,
        &[
            "invitations",
            "revoke",
            &id,
            "--reason",
            "wrong customer",
            "-o",
            "json",
        ],
        "onboard.v1.Invitation",
    )
    .await?;
    ensure!(
        revoked.state() == pb::InvitationState::Revoked && revoked.revoked_by == OPERATOR_IDENTITY
    );

    // Refusals: state (1), not found (1), bad field (2, with the field), role (4), no token (4).
    let r = ctl(&server, OPERATOR, &["invitations", "revoke", &id]).await?;
    refused(&r, 1, "RevokeInvitation: FAILED_PRECONDITION")?;
    let r = ctl(
        &server,
        OPERATOR,
        &["invitations", "get", "0192e0a4-0000-7000-8000-000000000000"],
    )
    .await?;
    refused(&r, 1, "GetInvitation: NOT_FOUND")?;
    let r = ctl(&server, OPERATOR, &create_invitation("", "dr-1", &[])).await?;
    ensure!(
        r.code == Some(2)
            && r.stderr.contains("CreateInvitation: INVALID_ARGUMENT")
            && r.stderr.contains("\n  field `customer`: "),
        "{r}"
    );
    let r = ctl(&server, AUDITOR, &["invitations", "list"]).await?;
    refused(&r, 4, "PERMISSION_DENIED")?;
    let r = ctl(&server, "", &["invitations", "list"]).await?;
    refused(&r, 4, "UNAUTHENTICATED")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_a_client_config_file() -> Result<()> {
    let sim = testkit::sim::start(calm()).await?;
    let (_files, server) = onboard_binary!().start(&sim).await?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("operator.token");
    std::fs::write(&token_file, format!("{OPERATOR}\n"))?;
    let conf = dir.path().join("ctl.toml");
    std::fs::write(
        &conf,
        format!(
            "addr = \"{}\"\ntoken_file = \"operator.token\"\n",
            server.url()
        ),
    )?;
    let r = onboard(
        &[
            "ctl",
            "--ctl-config",
            conf.to_str().context("path")?,
            "invitations",
            "list",
        ],
        &[],
        None,
    )
    .await?;
    ensure!(r.code == Some(0) && r.stdout.starts_with("ID "), "{r}");
    // The environment wins over the file: the auditor may not list invitations.
    let r = onboard(
        &["ctl", "invitations", "list"],
        &[
            ("ONBOARD_CTL_CONFIG", conf.to_str().context("path")?),
            ("ONBOARD_TOKEN", AUDITOR),
        ],
        None,
    )
    .await?;
    ensure!(r.code == Some(4), "{r}");
    Ok(())
}
