//! The Onboarding service's refusals end to end (server + Entra emulator on loopback): failed
//! sign-ins, an admin without the rights, and the app-name rules.

use std::time::Duration;

use anyhow::{Result, ensure};
use entra_sim::Faults;
use onboard_proto::v1 as pb;
use testkit::server::{OPERATOR, bad_fields};
use testkit::server_helpers::{Refused, plan};
use testkit::sim::{TOKEN_APP, calm};
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
    env.sign_in(&token, &ga, Browser::Declines("globaladmin"))
        .await?
        .refused(Code::PermissionDenied, &["declined"])?;
    // Someone else signs in: FAILED_PRECONDITION naming both, and a WRONG_ACCOUNT violation
    // on admin_upn for programs (the wizard words it from that).
    let other = env
        .sign_in(&token, &ga, Browser::SignsInAs("appadmin"))
        .await?
        .refused(Code::FailedPrecondition, &["appadmin", "globaladmin"])?;
    let violations = tonic_types::StatusExt::get_details_precondition_failure(&other)
        .map(|p| p.violations)
        .unwrap_or_default();
    ensure!(
        violations
            .iter()
            .any(|v| v.r#type == "WRONG_ACCOUNT" && v.subject == "admin_upn"),
        "{violations:?}"
    );
    // No admin role at all: FAILED_PRECONDITION naming the role needed.
    env.sign_in(&token, &env.upn("user"), Browser::SignsInAs("user"))
        .await?
        .refused(Code::FailedPrecondition, &["Application Administrator"])?;
    // The code expires before anyone signs in: DEADLINE_EXCEEDED.
    env.sim.set_faults(Faults {
        device_code_interval_s: Some(1),
        device_code_ttl_s: Some(2),
        ..Faults::default()
    });
    env.sign_in(&token, &ga, Browser::Idle)
        .await?
        .refused(Code::DeadlineExceeded, &[])?;
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
    env.sign_in(&short, &ga, Browser::Idle)
        .await?
        .refused(Code::FailedPrecondition, &["expired"])?;
    // A used invitation past its time says so, naming its onboarding (not only "used").
    // Valid long enough for a device-code sign-in (1 s polls) on a busy machine.
    let valid = Duration::from_secs(10);
    let asked = std::time::Instant::now();
    let (brief, _) = env.invite(Some(valid)).await?;
    let used = env.signed_in(&brief, "globaladmin").await?.onboarding_id;
    tokio::time::sleep(valid.saturating_sub(asked.elapsed())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.sign_in(&brief, &ga, Browser::Idle).await?.refused(
        Code::FailedPrecondition,
        &["expired at", &used, "new invitation"],
    )?;
    // A forged token is an invalid argument naming the field.
    let s = env
        .sign_in("forged", &ga, Browser::Idle)
        .await?
        .refused(Code::InvalidArgument, &[])?;
    ensure!(bad_fields(&s) == ["invitation_token"], "{s:?}");
    env.stop().await
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
    // The same, structured: one choice of role names per missing right.
    ensure!(
        signed.rights_missing.len() == signed.roles_missing.len()
            && signed
                .rights_missing
                .iter()
                .zip(&signed.roles_missing)
                .all(|(c, text)| !c.any_of.is_empty() && c.any_of.join(" or ") == *text)
            && signed.rights_missing.iter().any(|c| c
                .any_of
                .iter()
                .any(|r| r == "Privileged Role Administrator")),
        "{signed:?}"
    );
    let id = signed.onboarding_id;
    let plan = plan(&env.server, &token, &id, "Sbc-Two").await??;
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
    env.provision(&token, &id, "Sbc-Two")
        .await?
        .refused(Code::FailedPrecondition, &["Privileged Role Administrator"])?;
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

    // With no hand-off, the same link is the way on: it signs in again (for the same
    // onboarding) as an administrator who holds the role, and that one provisions.
    let first = testkit::wizard::get(env.server.channel().await?, &id).await?;
    let again = env.signed_in(&token, "globaladmin").await?;
    ensure!(
        again.onboarding_id == id && again.roles_missing.is_empty(),
        "{again:?}"
    );
    // The new sign-in is the onboarding's latest change.
    let now = testkit::wizard::get(env.server.channel().await?, &id).await?;
    let at = |i: &pb::OnboardingInfo| i.updated_at.as_ref().map(|t| (t.seconds, t.nanos));
    ensure!(at(&now) > at(&first), "{first:?} then {now:?}");
    let events = env.provision(&token, &id, "Sbc-Two").await?;
    testkit::wizard::completed(&events.map_err(|s| anyhow::anyhow!("provision: {s:?}"))?)?;
    // A sign-in that could make the whole plan spent the invitation.
    env.sign_in(&token, &env.upn("globaladmin"), Browser::Idle)
        .await?
        .refused(Code::FailedPrecondition, &["already been used"])?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_that_can_make_the_plan_spends_the_invitation_before_its_run() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, _) = env.invite(None).await?;
    env.signed_in(&token, "globaladmin").await?;
    env.sign_in(&token, &env.upn("appadmin"), Browser::Idle)
        .await?
        .refused(Code::FailedPrecondition, &["already been used"])?;
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_rules_are_field_violations_on_app_name() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, id) = env.invited_and_signed_in("globaladmin").await?;
    for (name, rule) in [
        ("", "3 to 15 characters"),
        ("ab", "3 to 15 characters"),
        ("abcdefghijklmnop", "3 to 15 characters"),
        ("a.bc", "dot"),
        ("a bc", "blanks"),
        ("a/bc", "must not contain '/'"),
        ("Audit", "reserved"),
    ] {
        let plan = plan(&env.server, &token, &id, name).await?;
        let plan = plan.refused(Code::InvalidArgument, &[])?;
        let prov = env.provision(&token, &id, name).await?;
        let prov = prov.refused(Code::InvalidArgument, &[])?;
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
    env.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_access_asks_for_a_new_sign_in_not_for_roles() -> Result<()> {
    use tonic_types::StatusExt;
    let env = SimServer::start().await?;
    let (token, _) = env.invite(None).await?;
    env.sim.set_faults(Faults {
        claims_challenge: true,
        ..calm()
    });
    // The Global Administrator signs in; Graph answers the first call with a claims challenge.
    let status = env
        .sign_in(
            &token,
            &env.upn("globaladmin"),
            Browser::SignsInAs("globaladmin"),
        )
        .await?
        .refused(
            Code::FailedPrecondition,
            &[
                "Conditional Access policy",
                "sign in again",
                "with a claims request",
            ],
        )?;
    ensure!(!status.message().contains("lacks"), "{status:?}");
    let violations = status
        .get_details_precondition_failure()
        .map(|p| p.violations)
        .unwrap_or_default();
    ensure!(
        violations.iter().any(|v| v.r#type == "CONDITIONAL_ACCESS"),
        "{violations:?}"
    );
    // Once the admin satisfies the policy, the same invitation signs in.
    env.sim.set_faults(calm());
    env.signed_in(&token, "globaladmin").await?;
    env.stop().await
}

/// A run that Conditional Access stops partway (the admin's sign-in revoked: a Continuous
/// Access Evaluation event) fails saying so, not as missing rights; retrying with the revoked
/// sign-in is refused the same way; the same invitation signs in again, and Provision resumes
/// the run with the new sign-in to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_by_conditional_access_resumes_after_a_new_sign_in() -> Result<()> {
    use onboard_proto::v1::provision_event::Event as PE;
    let (env, token, id, stream) = slow_run_started("CA-Resume").await?;
    env.sim.revoke_sign_in_sessions().await;
    let events = testkit::wizard::drain(stream).await?;
    let Some(PE::Failed(failed)) = events.last().and_then(|e| e.event.clone()) else {
        anyhow::bail!("the run did not fail: {events:?}");
    };
    ensure!(
        failed.reason.contains("Conditional Access") && !failed.reason.contains("lacks"),
        "{failed:?}"
    );
    // Programs decide on the cause, not on the words.
    ensure!(
        failed.cause() == onboard_proto::v1::FailureCause::SignInAgain,
        "{failed:?}"
    );
    env.sim.set_faults(calm());
    // The held sign-in is revoked: resuming with it is refused as Conditional Access.
    env.provision(&token, &id, "CA-Resume")
        .await?
        .refused(Code::FailedPrecondition, &["Conditional Access policy"])?;
    // An account of another tenant may not take the run over: the sign-in is at the run's
    // tenant, where Microsoft refuses an account that is neither member nor guest (50020).
    let fab = env.sim.add_tenant("fabrikam.onmicrosoft.com");
    let other = format!("globaladmin@{}", fab.tenant_domain);
    env.sign_in(&token, &other, Browser::Refused(&other))
        .await?
        .refused(Code::PermissionDenied, &["AADSTS50020", &other])?;
    // A new sign-in with the same invitation, then the same Provision resumes the run.
    let again = env.signed_in(&token, "globaladmin").await?;
    ensure!(again.onboarding_id == id, "{again:?}");
    let done = env.provision(&token, &id, "CA-Resume").await??;
    testkit::wizard::completed(&done)?;
    env.stop().await
}

/// A Conditional Access policy change the admin's sign-in still satisfies, partway through a
/// run: Graph's claims challenge is answered by a token asked for silently with its claims
/// request, and the run completes without the admin signing in again, each step once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_the_sign_in_satisfies_does_not_stop_a_run() -> Result<()> {
    use onboard_proto::v1::provision_event::Event as PE;
    let (env, _, _, stream) = slow_run_started("CA-Silent").await?;
    let sts_before = env.sim.request_counts().sts;
    env.sim.change_conditional_access_policies().await;
    let events = testkit::wizard::drain(stream).await?;
    ensure!(
        matches!(
            events.last().and_then(|e| e.event.clone()),
            Some(PE::Completed(_))
        ),
        "the run did not complete: {events:?}"
    );
    ensure!(
        env.sim.request_counts().sts > sts_before,
        "no token was asked for: the policy change did not reach the run"
    );
    ensure!(
        apps_named(&env.sim.snapshot(), "CA-Silent").len() == 1,
        "one app"
    );
    env.stop().await
}

/// An admin who signed in, then came back to Plan and Provision after their access token's
/// hour: the sign-in is renewed with its refresh token, and the onboarding completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_back_after_the_access_tokens_hour_goes_on() -> Result<()> {
    let env = SimServer::start().await?;
    let (token, _) = env.invite(None).await?;
    let id = env.signed_in(&token, "globaladmin").await?.onboarding_id;
    env.sim.expire_access_tokens().await;
    plan(&env.server, &token, &id, "Late-App").await??;
    let done = env.provision(&token, &id, "Late-App").await??;
    testkit::wizard::completed(&done)?;
    env.stop().await
}

/// The admin's sessions revoked, and the access token held expired meanwhile: renewing it is
/// refused by the STS (`invalid_grant`, AADSTS50173). Provision is FAILED_PRECONDITION with
/// Microsoft's code and a `SIGN_IN_AGAIN` precondition violation for programs; a new sign-in
/// with the same invitation lets Provision finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_microsoft_no_longer_renews_asks_for_a_new_one() -> Result<()> {
    use tonic_types::StatusExt;
    let env = SimServer::start().await?;
    let (token, _) = env.invite(None).await?;
    let id = env.signed_in(&token, "globaladmin").await?.onboarding_id;
    env.sim.revoke_sign_in_sessions().await;
    env.sim.expire_access_tokens().await;
    let status = env
        .provision(&token, &id, "Renew-App")
        .await?
        .refused(Code::FailedPrecondition, &["AADSTS50173"])?;
    let types: Vec<String> = status
        .get_details_precondition_failure()
        .map(|p| p.violations.into_iter().map(|v| v.r#type).collect())
        .unwrap_or_default();
    ensure!(types == ["SIGN_IN_AGAIN"], "{types:?}: {status:?}");
    // The refused sign-in is dropped: GetOnboarding says what it takes, as Plan does.
    let mut op = env.server.onboarding(Some(OPERATOR)).await?;
    let get = pb::GetOnboardingRequest {
        onboarding_id: id.clone(),
        ..Default::default()
    };
    op.get_onboarding(get).await.refused(
        Code::FailedPrecondition,
        &["no signed-in admin", "sign in again"],
    )?;
    let again = env.signed_in(&token, "globaladmin").await?;
    ensure!(again.onboarding_id == id, "{again:?}");
    let done = env.provision(&token, &id, "Renew-App").await??;
    testkit::wizard::completed(&done)?;
    env.stop().await
}

/// A Global Administrator's onboarding whose run `name` has started against an emulator
/// answering every call 300 ms late (so a change lands partway): the server, the invitation
/// token, the onboarding id and the open Provision stream.
async fn slow_run_started(
    name: &str,
) -> Result<(
    SimServer,
    String,
    String,
    tonic::Streaming<pb::ProvisionEvent>,
)> {
    use onboard_proto::v1::provision_event::Event as PE;
    let env = SimServer::start().await?;
    let (token, _) = env.invite(None).await?;
    let id = env.signed_in(&token, "globaladmin").await?.onboarding_id;
    env.sim.set_faults(Faults {
        latency_ms: 300,
        ..calm()
    });
    let ch = env.server.channel().await?;
    let mut stream = testkit::wizard::provision_stream(ch, &token, &id, name).await?;
    let first = stream.message().await?;
    ensure!(
        matches!(first.and_then(|e| e.event), Some(PE::Started(_))),
        "the run did not start"
    );
    Ok((env, token, id, stream))
}
