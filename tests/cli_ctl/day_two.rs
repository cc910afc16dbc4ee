//! Day two with `onboard ctl`: secrets list|add|rotate|revoke|expiring, grants list|update,
//! attach, verify, drift, end-admin-session.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, ensure};
use onboard_proto::v1 as pb;
use onboard_proto::v1::credentials_client::CredentialsClient;
use onboard_proto::v1::verification_client::VerificationClient;

use testkit::config::OPERATOR;
use testkit::onboard_binary;
use testkit::process::{ServerFiles, parse_json};
use testkit::server::with_token;
use testkit::wizard::day_two_sign_in;

use crate::{
    DayTwo, ROTATE_DR_1, ctl, ctl_json, has_line, json_lines, refused, same_as_grpc, succeeded,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_grants_attach_and_verify_work_from_the_command_line() -> Result<()> {
    let d = DayTwo::start("Ctl-Day-Two").await?;
    let (sim, files, server, done) = (&d.sim, &d.files, &d.server, &d.done);
    let ch = server.channel().await?;
    let tenant = sim.info().tenant_id;
    let client = done.client_id.clone();
    let reg = ["--tenant", tenant.as_str(), "--client", client.as_str()];
    let reg_pb = pb::RegistrationRef {
        tenant_id: tenant.clone(),
        client_id: client.clone(),
    };
    let mut grpc = CredentialsClient::new(with_token(ch.clone(), Some(OPERATOR)));

    // secrets list: the onboarding's secret is dr-1's current one.
    let r = d.ctl(&["secrets", "list"]).await?;
    has_line(&r, |l| {
        l.starts_with(&done.key_id) && l.contains("dr-1") && l.contains("yes")
    })?;
    let r = d.ctl(&["secrets", "list", "-o", "json"]).await?;
    let req = pb::ListSecretsRequest {
        registration: Some(reg_pb.clone()),
    };
    same_as_grpc(&r, "onboard.v1.ListSecretsResponse", grpc.list_secrets(req)).await?;

    // secrets add: to a file that cannot be written: refused before a secret is made (it
    // would be lost, shown nowhere).
    let add = ["secrets", "add", "--service-id", "dr-extra"];
    let nowhere = files.dir.path().join("no-such-dir/extra.secret");
    let r = d
        .ctl(
            &[
                &add[..],
                &["--secret-out", nowhere.to_str().context("path")?],
            ]
            .concat(),
        )
        .await?;
    refused(&r, 2, "no-such-dir")?;
    let r = d.ctl(&["secrets", "list"]).await?;
    ensure!(!r.stdout.contains("dr-extra"), "a secret was made: {r}");
    // To a private file (made 0600 also when it existed readable by others), then as JSON
    // (value inside the answer).
    let out = files.dir.path().join("extra.secret");
    std::fs::write(&out, "old")?;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644))?;
    let to_file = ["--secret-out", out.to_str().context("path")?];
    let r = d.ctl(&[&add[..], &to_file].concat()).await?;
    succeeded(&r, "secret value written to")?;
    ensure!(std::fs::metadata(&out)?.permissions().mode() & 0o077 == 0);
    let first_value = std::fs::read_to_string(&out)?;
    ensure!(first_value.len() >= 16 && !r.stdout.contains(&first_value));
    let first_key = r
        .stdout
        .split_whitespace()
        .nth(2)
        .context("key id")?
        .to_owned();
    let as_json = ["-o", "json", "--valid-for", "90d"];
    let r = d.ctl(&[&add[..], &as_json].concat()).await?;
    ensure!(r.code == Some(0), "{r}");
    let added: pb::NewSecret = parse_json(&r.stdout, "onboard.v1.NewSecret")?;
    let info = added.info.clone().context("info")?;
    ensure!(!added.secret.is_empty() && info.current && info.service_id == "dr-extra");
    ensure!((88..=90).contains(&info.days_until_expiry), "{info:?}");

    // secrets revoke: the replaced one goes; the current one is refused.
    let r = d
        .ctl(&["secrets", "revoke", "--key-id", &first_key])
        .await?;
    succeeded(&r, &format!("revoked secret {first_key}"))?;
    let r = d
        .ctl(&["secrets", "revoke", "--key-id", &info.key_id])
        .await?;
    refused(&r, 1, "RevokeSecret: FAILED_PRECONDITION")?;

    // secrets expiring: everything within 10000 days, as ListExpiring has it.
    let (r, expiring) = ctl_json::<pb::ListExpiringResponse>(
        server,
        OPERATOR,
        &[
            "secrets",
            "expiring",
            "--horizon-days",
            "10000",
            "-o",
            "json",
        ],
        "onboard.v1.ListExpiringResponse",
    )
    .await?;
    let want = grpc
        .list_expiring(pb::ListExpiringRequest {
            horizon_days: 10000,
        })
        .await?
        .into_inner();
    ensure!(expiring == want && expiring.secrets.len() == 2, "{r}");
    let r = ctl(server, OPERATOR, &["secrets", "expiring"]).await?;
    ensure!(
        r.code == Some(0)
            && r.stdout
                .starts_with("current secrets expiring within 30 days:"),
        "{r}"
    );

    // attach on a second server that never saw the registration, with dr-extra's secret from
    // standard input.
    let other_files = ServerFiles::new(sim)?;
    let other = onboard_binary!().serve(&other_files).await?;
    let mut attach = vec![
        "ctl",
        "attach",
        "--profile",
        "direct-routing",
        "--service-id",
        "dr-attached",
    ];
    attach.extend_from_slice(&reg);
    attach.extend_from_slice(&["--secret-file", "-", "-o", "json"]);
    let url = other.url();
    let r = crate::onboard(
        &attach,
        &[("ONBOARD_ADDR", &url), ("ONBOARD_TOKEN", OPERATOR)],
        Some(&added.secret),
    )
    .await?;
    ensure!(r.code == Some(0), "{r}\n{}", other.log_tail());
    let attached: pb::Registration = parse_json(&r.stdout, "onboard.v1.Registration")?;
    ensure!(
        attached.registration.as_ref() == Some(&reg_pb)
            && attached.source == "attached"
            && attached.service_ids == ["dr-attached"],
        "{attached:?}"
    );
    drop(other);

    // secrets rotate --wait: every stage, the new value once.
    let rotate = ROTATE_DR_1;
    let r = d.ctl(&[&rotate[..], &["--wait"]].concat()).await?;
    ensure!(r.code == Some(0), "{r}\n{}", server.log_tail());
    for stage in ["add", "validate", "hand_over", "remove_old"] {
        has_line(&r, |l| l.starts_with(stage) && l.contains(" done")).context(stage)?;
    }
    ensure!(
        r.stdout.matches("secret value (shown once): ").count() == 1,
        "{r}"
    );
    // rotate -o json without --wait: the stream's events up to the hand-over, one per line.
    let r = d.ctl(&[&rotate[..], &["-o", "json"]].concat()).await?;
    let events: Vec<pb::RotateSecretEvent> = json_lines(&r, "onboard.v1.RotateSecretEvent")?;
    let last = events.last().context("no events")?;
    ensure!(last.stage == "hand_over" && last.done, "{r}");
    ensure!(
        events.iter().filter_map(|e| e.new_secret.as_ref()).count() == 1,
        "{r}"
    );

    // grants list and update (roles and permissions, the override rule).
    let r = d.ctl(&["grants", "list"]).await?;
    has_line(&r, |l| {
        l.starts_with("role") && l.contains("Teams Administrator")
    })?;
    let r = d.ctl(&["grants", "list", "-o", "json"]).await?;
    let req = pb::ListGrantsRequest {
        registration: Some(reg_pb.clone()),
    };
    let want = same_as_grpc(&r, "onboard.v1.Grants", grpc.list_grants(req)).await?;
    // Removing what the profile requires, without --override: refused.
    for (flag, name, rpc) in [
        ("--remove-role", "Teams Administrator", "UpdateRoles"),
        ("--remove-permission", "User.Read.All", "UpdatePermissions"),
    ] {
        let r = d.ctl(&["grants", "update", flag, name]).await?;
        refused(&r, 1, &format!("{rpc}: FAILED_PRECONDITION"))?;
    }
    let r = d
        .ctl(&[
            "grants",
            "update",
            "--remove-role",
            "Teams Administrator",
            "--override",
        ])
        .await?;
    ensure!(
        r.code == Some(0)
            && !r.stdout.contains("Teams Administrator")
            && r.stdout.contains("audit entries: "),
        "{r}"
    );
    // That change ended the admin session it used (by design): the next one needs a new
    // sign-in, and the CLI says so until there is one.
    let add_role = ["grants", "update", "--add-role", "Teams Administrator"];
    let r = d.ctl(&add_role).await?;
    refused(&r, 1, "UpdateRoles: FAILED_PRECONDITION")?;
    day_two_sign_in(ch.clone(), sim, "dr-1").await?;
    let r = d.ctl(&[&add_role[..], &["-o", "json"]].concat()).await?;
    let back: pb::Grants = parse_json(&r.stdout, "onboard.v1.Grants")?;
    ensure!(
        back.roles == want.roles
            && back.permissions == want.permissions
            && back.audit_seqs.len() == 1,
        "{r}"
    );
    let r = d.ctl(&["grants", "update"]).await?;
    refused(&r, 2, "nothing to change")?;

    // verify: the report's table, and JSON with the same checks as a gRPC Verify; the exit
    // code follows the worst status.
    let r = ctl(server, OPERATOR, &["verify", "--client-id", &client]).await?;
    ensure!(
        r.stdout.starts_with("CHECK ") && r.stdout.contains("\noverall: "),
        "{r}"
    );
    let failed = r.stdout.contains("overall: FAIL");
    ensure!(r.code == Some(if failed { 1 } else { 0 }), "{r}");
    let r = ctl(
        server,
        OPERATOR,
        &["verify", "--client-id", &client, "-o", "json"],
    )
    .await?;
    let report: pb::VerifyReport = parse_json(&r.stdout, "onboard.v1.VerifyReport")?;
    let mut verification = VerificationClient::new(with_token(ch.clone(), Some(OPERATOR)));
    let want = verification
        .verify(pb::VerifyRequest {
            target: Some(pb::verify_request::Target::ClientId(client.clone())),
        })
        .await?
        .into_inner();
    let names = |r: &pb::VerifyReport| -> Vec<(String, i32)> {
        r.checks
            .iter()
            .map(|c| (c.name.clone(), c.status))
            .collect()
    };
    ensure!(
        report.client_id == want.client_id
            && names(&report) == names(&want)
            && report.audit_seq < want.audit_seq,
        "{r}"
    );
    let (r, drift) = ctl_json::<pb::ListDriftResponse>(
        server,
        OPERATOR,
        &["drift", "-o", "json"],
        "onboard.v1.ListDriftResponse",
    )
    .await?;
    let want = verification
        .list_drift(pb::ListDriftRequest::default())
        .await?
        .into_inner();
    ensure!(r.code == Some(0) && drift == want, "{r}");

    // Roles and permissions in one command are two calls, and the first one's change ends
    // the admin session the second needs: what the first did is shown, then the refusal.
    day_two_sign_in(ch.clone(), sim, "dr-1").await?;
    let also = ["--add-permission", "User.Read.All"];
    let r = d.ctl(&[&add_role[..], &also].concat()).await?;
    ensure!(
        r.code == Some(1)
            && r.stdout.contains("Teams Administrator")
            && r.stderr.contains("the role change above was made")
            && r.stderr.contains("UpdatePermissions: FAILED_PRECONDITION"),
        "{r}"
    );

    // end-admin-session: the temporary app a day-two sign-in re-created goes (a sign-in that
    // made no change yet; the last one ended with its change).
    day_two_sign_in(ch.clone(), sim, "dr-1").await?;
    let r = ctl(
        server,
        OPERATOR,
        &["end-admin-session", "--tenant", &tenant],
    )
    .await?;
    ensure!(
        r.code == Some(0)
            && r.stdout.starts_with(&format!(
                "admin session of {tenant} ended: 1 temporary app(s) removed"
            )),
        "{r}"
    );
    Ok(())
}
