//! Conditional Access refusing the admin's token with a claims challenge (the emulator's
//! `claims_challenge` switch) is reported as such, not as missing rights and not retried.

use anyhow::{Result, bail, ensure};
use entra_sim::Faults;
use provision::{PlanRequest, ProvisionError};
use secrecy::ExposeSecret;
use testkit::engine::EngineEnv;
use testkit::sim::calm;

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
    let admin = env.engine.sign_in(&tokens, &env.upn("globaladmin")).await?;
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
    // Each refused call asks once for a token silently (the policy refuses that one too) and
    // sends once more with it: no loop, no plain renewal.
    let (sts, graph) = (after.sts - before.sts, after.graph - before.graph);
    ensure!(
        sts >= 1 && 2 * sts <= graph,
        "{sts} token requests for {graph} Graph calls"
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
        .sign_in(&tokens, &env.upn("globaladmin"))
        .await
        .err();
    let Some(err) = err else {
        bail!("the sign-in check succeeded under a claims challenge");
    };
    check(&err, Some("sign_in"), &fresh)?;
    Ok(())
}
