//! The Onboarding service's refusals end to end (server + Entra emulator on loopback): failed
//! sign-ins, an admin without the rights, and the app-name rules.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use testkit::server::bad_fields;
use testkit::sim::TOKEN_APP;
use testkit::sim_server::SimServer;
use testkit::snapshot::{apps_named, sps_where};
use testkit::wizard::Browser;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_failures_are_precise_and_keep_the_invitation() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, _) = env.invite(None).await?;
    let ga = env.upn("globaladmin");

    // Declined: PERMISSION_DENIED; the invitation is still usable.
    match env
        .sign_in(&token, &ga, Browser::Declines("globaladmin"))
        .await?
    {
        Err(s) => ensure!(
            s.code() == Code::PermissionDenied && s.message().contains("declined"),
            "{s:?}"
        ),
        Ok(e) => bail!("declined sign-in succeeded: {e:?}"),
    }
    // Someone else signs in: FAILED_PRECONDITION naming both.
    match env
        .sign_in(&token, &ga, Browser::SignsInAs("appadmin"))
        .await?
    {
        Err(s) => ensure!(
            s.code() == Code::FailedPrecondition
                && s.message().contains("appadmin")
                && s.message().contains("globaladmin"),
            "{s:?}"
        ),
        Ok(e) => bail!("wrong user signed in: {e:?}"),
    }
    // No admin role at all: FAILED_PRECONDITION naming the role needed.
    match env
        .sign_in(&token, &env.upn("user"), Browser::SignsInAs("user"))
        .await?
    {
        Err(s) => ensure!(
            s.code() == Code::FailedPrecondition
                && s.message().contains("Application Administrator"),
            "{s:?}"
        ),
        Ok(e) => bail!("a user without roles signed in: {e:?}"),
    }
    // The code expires before anyone signs in: DEADLINE_EXCEEDED.
    env.sim.set_faults(Faults {
        device_code_interval_s: Some(1),
        device_code_ttl_s: Some(2),
        ..Faults::default()
    });
    match env.sign_in(&token, &ga, Browser::Idle).await? {
        Err(s) => ensure!(s.code() == Code::DeadlineExceeded, "{s:?}"),
        Ok(e) => bail!("an expired code signed in: {e:?}"),
    }
    env.sim.set_faults(Faults {
        device_code_interval_s: Some(1),
        ..Faults::default()
    });
    // Each failure was audited as a failed sign-in; none redeemed the invitation.
    let entries = env.server.entries()?;
    let failed = entries
        .iter()
        .filter(|e| e["action"] == "onboarding.sign_in" && e["phase"] == "failed")
        .count();
    ensure!(failed == 4, "{failed} failed sign-ins audited");
    ensure!(!entries.iter().any(|e| e["action"] == "invitation.redeem"));
    // After all that, the right admin still gets in with the same link.
    env.signed_in(&token, "globaladmin").await?;

    // An expired invitation never starts a sign-in.
    let (short, _) = env.invite(Some(Duration::from_secs(1))).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    match env.sign_in(&short, &ga, Browser::Idle).await? {
        Err(s) => ensure!(
            s.code() == Code::FailedPrecondition && s.message().contains("expired"),
            "{s:?}"
        ),
        Ok(e) => bail!("an expired invitation signed in: {e:?}"),
    }
    // A forged token is an invalid argument naming the field.
    match env.sign_in("forged", &ga, Browser::Idle).await? {
        Err(s) => ensure!(
            s.code() == Code::InvalidArgument && bad_fields(&s) == ["invitation_token"],
            "{s:?}"
        ),
        Ok(e) => bail!("a forged token signed in: {e:?}"),
    }
    env.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_admin_plan_shows_missing_rights_and_provision_is_refused() -> Result<()> {
    // Hand-offs off (`hand_off_wait_secs = 0`): refused up front. With them on (the default)
    // the rest waits for a privileged admin: `hand_off.rs`.
    let env = SimServer::start_with(|b| Ok(b.limit("hand_off_wait_secs", 0))).await?;
    let (token, _) = env.invite(None).await?;
    let signed = env.signed_in(&token, "appadmin").await?;
    ensure!(
        signed
            .roles_missing
            .iter()
            .any(|r| r.contains("Privileged Role Administrator")),
        "{signed:?}"
    );
    let id = signed.onboarding_id;
    let mut c = env.server.onboarding(None).await?;
    let plan = c
        .plan(pb::PlanRequest {
            onboarding_id: id.clone(),
            app_name: "Sbc-Two".into(),
            invitation_token: token.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(plan.blocked && !plan.hand_off, "{plan:?}");
    ensure!(
        plan.changes
            .iter()
            .any(|c| c.action == "directory_role_assignment.create" && !c.missing_roles.is_empty()),
        "{plan:?}"
    );
    ensure!(
        plan.changes
            .iter()
            .any(|c| c.action == "app_registration.create" && c.missing_roles.is_empty())
    );
    let before = env.server.app.audit().size();
    match env.provision(&token, &id, "Sbc-Two").await? {
        Err(s) => ensure!(
            s.code() == Code::FailedPrecondition
                && s.message().contains("Privileged Role Administrator"),
            "{s:?}"
        ),
        Ok(e) => bail!("provisioned without rights: {e:?}"),
    }
    let snap = env.sim.snapshot();
    ensure!(apps_named(&snap, "Sbc-Two").is_empty(), "an app was made");
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).len() == 1,
        "token app removed"
    );
    // Only the refused request itself was recorded (intent and failure), no Entra change.
    let entries = env.server.entries()?;
    let new: Vec<&str> = entries[before as usize..]
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    ensure!(
        new == ["onboarding.provision", "onboarding.provision"],
        "{new:?}"
    );
    env.server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_rules_are_field_violations_on_app_name() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, _) = env.invite(None).await?;
    let id = env.signed_in(&token, "globaladmin").await?.onboarding_id;
    let mut c = env.server.onboarding(None).await?;
    for (name, rule) in [
        ("ab", "3 to 15 characters"),
        ("abcdefghijklmnop", "3 to 15 characters"),
        ("a.bc", "dot"),
        ("a bc", "blanks"),
        ("a/bc", "must not contain '/'"),
        ("Audit", "reserved"),
    ] {
        let plan = c
            .plan(pb::PlanRequest {
                onboarding_id: id.clone(),
                app_name: name.into(),
                invitation_token: token.clone(),
                ..Default::default()
            })
            .await
            .err()
            .context("plan accepted a bad name")?;
        let prov = match env.provision(&token, &id, name).await? {
            Err(s) => s,
            Ok(e) => bail!("{name}: provisioned: {e:?}"),
        };
        for s in [plan, prov] {
            ensure!(s.code() == Code::InvalidArgument, "{name}: {s:?}");
            ensure!(bad_fields(&s) == ["app_name"], "{name}: {s:?}");
            use tonic_types::StatusExt;
            let d = s
                .get_details_bad_request()
                .map(|b| b.field_violations[0].description.clone())
                .unwrap_or_default();
            ensure!(d.contains(rule), "{name}: {d:?} does not name {rule:?}");
        }
    }
    ensure!(env.sim.snapshot()["applications"].as_array().map(Vec::len) == Some(0));
    env.server.stop().await?;
    Ok(())
}
