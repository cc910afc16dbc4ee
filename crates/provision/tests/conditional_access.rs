//! Microsoft refusing the admin's sign-in: Conditional Access refusing its token with a claims
//! challenge (the emulator's `claims_challenge` switch) is reported as such, not as missing
//! rights and not retried; a resumed run whose sign-in can no longer be renewed fails asking
//! for a new one, and one that outlives its renewed access token renews it again, as does a run
//! that admin consent on Microsoft's page lets go on; an undo whose sign-in cannot be renewed
//! acts with the stored access token as it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::Faults;
use onboard_core::{Hook, HookAction};
use provision::{Admin, EventKind, FailureCause, PlanRequest, ProvisionError, Status};
use secrecy::ExposeSecret;
use testkit::engine::{EngineEnv, collect, completion, hook_once};
use testkit::sim::{CONSENT_REPLY, admin_consent, calm, users};

/// An engine on an emulator whose access tokens live `secs` seconds, with `hook`, and its
/// Global Administrator signed in.
async fn tokens_of(secs: u64, hook: Option<Hook>) -> Result<(EngineEnv, Admin)> {
    let faults = Faults {
        access_token_lifetime_s: Some(secs),
        ..calm()
    };
    let env = EngineEnv::start(faults, hook).await?;
    let admin = env.signed_in("globaladmin").await?;
    Ok((env, admin))
}

fn plan_req(name: &str) -> PlanRequest {
    PlanRequest {
        app_name: name.into(),
        profile: "direct-routing".into(),
        platform_version: None,
    }
}

/// The refusal says what the admin must do, names the claims request, and shows no token.
/// `step`: the step that met it, when it is known for certain.
fn check(err: &ProvisionError, step: Option<&str>, token: &str) -> Result<()> {
    let ProvisionError::ConditionalAccess { step: s, source } = err else {
        bail!("expected ConditionalAccess, got {err:?}");
    };
    ensure!(step.is_none_or(|want| s == want) && !s.is_empty(), "{s}");
    ensure!(source.is_claims_challenge(), "{source:?}");
    ensure!(!err.is_authorization_denied(), "not a lack of rights");
    let text = err.to_string();
    for part in [
        "Conditional Access policy requires the admin to sign in again",
        "claims challenge",
        "with a claims request",
        "request-id ",
        "granting roles will not help",
    ] {
        ensure!(text.contains(part), "{part:?} missing from {text}");
    }
    ensure!(!text.contains(token), "the token is shown: {text}");
    ensure!(!format!("{err:?}").contains(token), "the token is in Debug");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claims_challenge_is_conditional_access_not_missing_rights() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let tokens = env.sign_in("globaladmin").await?;
    let token = tokens.access_token.expose_secret().to_owned();
    let admin = env
        .engine
        .sign_in(&tokens, &env.upn("globaladmin"), None)
        .await?;
    // Plan's reads, counted on a tenant without the policy: one Graph call each.
    let before = env.sim.request_counts();
    env.engine.plan(&admin, &plan_req("Sbc-Ca")).await?;
    let after = env.sim.request_counts();
    let reads = after.graph - before.graph;
    ensure!(
        reads >= 1 && after.sts == before.sts,
        "{reads} reads, token requests made"
    );
    env.sim.set_faults(Faults {
        claims_challenge: true,
        ..calm()
    });

    // Plan reads the tenant with the admin's token: refused, and said so.
    let before = env.sim.request_counts();
    let err = env.engine.plan(&admin, &plan_req("Sbc-Ca")).await.err();
    let Some(err) = err else {
        bail!("the plan succeeded under a claims challenge");
    };
    check(&err, None, &token)?;
    let after = env.sim.request_counts();
    // Each read is refused, asks for a token silently (the policy refuses that one too; reads
    // refused at once share it) and is sent once more with it, and every read ends before the
    // plan answers: no loop, no plain renewal, nothing cut off half done.
    let (sts, graph) = (after.sts - before.sts, after.graph - before.graph);
    ensure!(
        graph == 2 * reads && (1..=reads).contains(&sts),
        "{sts} token requests and {graph} Graph calls for {reads} reads"
    );

    // Provision refuses the same way, before any change.
    let err = env
        .engine
        .provision(env.request("onb-ca", "Sbc-Ca"), admin.clone())
        .await
        .err();
    let Some(err) = err else {
        bail!("provision started under a claims challenge");
    };
    check(&err, None, &token)?;
    ensure!(
        testkit::snapshot::apps_named(&env.snapshot(), "Sbc-Ca").is_empty(),
        "nothing was made"
    );

    // A new sign-in hits the same policy at its first Graph call.
    env.sim.set_faults(calm());
    let tokens = env.sign_in("globaladmin").await?;
    let fresh = tokens.access_token.expose_secret().to_owned();
    env.sim.set_faults(Faults {
        claims_challenge: true,
        ..calm()
    });
    let err = env
        .engine
        .sign_in(&tokens, &env.upn("globaladmin"), None)
        .await
        .err();
    let Some(err) = err else {
        bail!("the sign-in check succeeded under a claims challenge");
    };
    check(&err, Some("sign_in"), &fresh)?;
    Ok(())
}

/// A run resumed after its admin's sessions were revoked, with the stored access token at its
/// end: the renewal Microsoft refuses (AADSTS50173) is the run's failure, audited, with the
/// cause that asks for a new sign-in; no Graph call is made with a token known to be dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_whose_sign_in_is_not_renewed_fails_asking_for_a_new_one() -> Result<()> {
    // Tokens of 30 s: less than the minute a stored token must have left to stand in for a
    // refused renewal.
    let halt = hook_once("permissions_and_roles", HookAction::Halt);
    let (env, admin) = tokens_of(30, Some(halt)).await?;
    env.run(env.request("onb-rev", "Sbc-Revoked"), admin)
        .await?;
    env.sim.revoke_sign_in_sessions().await;
    let env = env.restart(None).await?;
    let before = env.sim.request_counts();
    ensure!(env.engine.resume_all().await? == ["onb-rev"]);
    let events = collect(env.engine.watch("onb-rev", 1)?, 60).await?;
    let Some(EventKind::Aborted { error, cause }) = events.last().map(|e| &e.kind) else {
        bail!("the resumed run did not fail: {events:#?}");
    };
    ensure!(
        *cause == FailureCause::SignInAgain
            && error.starts_with("admin_sign_in_renewal: ")
            && error.contains("AADSTS50173"),
        "{cause:?}: {error}"
    );
    ensure!(
        env.sim.request_counts().graph == before.graph,
        "Graph was called with the expired token"
    );
    let rec = env.engine.get("onb-rev")?.context("record")?;
    ensure!(rec.status == Status::Failed, "{rec:?}");
    let entries = env.audit_entries("onb-rev")?;
    let last = entries.last().context("entries")?;
    ensure!(
        last["action"] == "onboarding.finish"
            && last["phase"] == "failed"
            && last["error"] == error.as_str(),
        "{last}"
    );
    Ok(())
}

/// A resumed run that outlives the access token its start-up renewal got renews it again, as a
/// run Provision started does, and completes instead of failing on Graph's 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_that_outlives_its_access_token_renews_it() -> Result<()> {
    // Tokens of 5 s, and a pause of 6 s after the resumed run's first step.
    let halt = hook_once("app_registration", HookAction::Halt);
    let (env, admin) = tokens_of(5, Some(halt)).await?;
    env.run(env.request("onb-long", "Sbc-Long"), admin).await?;
    let pause: Hook = Arc::new(|_, point| {
        if point == "service_principal" {
            std::thread::sleep(Duration::from_secs(6));
        }
        HookAction::Continue
    });
    let env = env.restart(Some(pause)).await?;
    ensure!(env.engine.resume_all().await? == ["onb-long"]);
    completion(&collect(env.engine.watch("onb-long", 1)?, 120).await?)?;
    let rec = env.engine.get("onb-long")?.context("record")?;
    ensure!(rec.status == Status::Completed, "{rec:?}");
    Ok(())
}

/// A run that a Global Administrator's grant on Microsoft's admin-consent page lets go on (as
/// the Application Administrator who started it) renews that admin's access token when it runs
/// out, as a resumed run does, and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_continued_after_admin_consent_renews_its_access_token() -> Result<()> {
    // Tokens of 5 s, and a pause of 6 s after the first step of the continued run.
    let armed = Arc::new(AtomicBool::new(false));
    let pause: Hook = {
        let armed = armed.clone();
        Arc::new(move |_, _| {
            if armed.swap(false, Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(6));
            }
            HookAction::Continue
        })
    };
    let faults = Faults {
        access_token_lifetime_s: Some(5),
        ..calm()
    };
    let env = EngineEnv::start_configured(faults, Some(pause), |cfg| {
        cfg.hand_off_for = Some(Duration::from_secs(3600));
        cfg.consent_redirect_uri = Some(CONSENT_REPLY.into());
    })
    .await?;
    let admin = env.signed_in(users::APP_ADMIN).await?;
    let mut req = env.request("onb-consent", "Sbc-Consent");
    req.profile = "qoe".into();
    let events = env.run(req, admin).await?;
    let Some(EventKind::AwaitingAdmin {
        admin_consent_url: Some(url),
        ..
    }) = events.last().map(|e| &e.kind)
    else {
        bail!("no admin-consent page offered: {events:#?}");
    };
    let back = admin_consent(&env.sim, url, users::GLOBAL_ADMIN, true).await?;
    ensure!(
        back.starts_with(CONSENT_REPLY) && !back.contains("error="),
        "{back}"
    );

    armed.store(true, Ordering::SeqCst);
    let watch = env.engine.watch("onb-consent", 1)?;
    ensure!(env.engine.check_admin_consents().await? == ["onb-consent"]);
    completion(&collect(watch, 120).await?)?;
    ensure!(
        !armed.load(Ordering::SeqCst),
        "the continued run made no step"
    );
    let rec = env.engine.get("onb-consent")?.context("record")?;
    ensure!(rec.status == Status::Completed, "{rec:?}");
    Ok(())
}

/// Undoing a completed onboarding with its own sign-in: the temporary app its refresh token was
/// issued to is gone, so the STS refuses the renewal, and the stored access token does the undo
/// as it is, even within the minutes before its end in which a renewing client renews first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_whose_sign_in_cannot_be_renewed_uses_the_stored_token_to_its_end() -> Result<()> {
    // Tokens of 200 s: inside the 5 minutes before their end from the start.
    let (env, admin) = tokens_of(200, None).await?;
    completion(&env.run(env.request("onb-undo", "Sbc-Undo"), admin).await?)?;
    let done = env.engine.cancel("onb-undo", "tester").await?;
    ensure!(done.status == Status::Cancelled, "{done:?}");
    ensure!(
        testkit::snapshot::apps_named(&env.snapshot(), "Sbc-Undo").is_empty(),
        "app left"
    );
    Ok(())
}
