//! Microsoft may issue its APIs' access tokens as opaque strings ("access tokens must be
//! treated as opaque strings … Clients should use the token response data", Learn
//! access-tokens). An onboarding reads nothing from them: it completes with the emulator's
//! `opaque_access_tokens` on, and the admin token it keeps carries the expiry of the token
//! response, which day two uses instead of the token's `exp` claim.

use anyhow::{Context, Result, ensure};
use onboard_core::provisioned::Provisioned;
use secrecy::ExposeSecret;
use testkit::engine::EngineEnv;
use testkit::sim::calm;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_onboarding_completes_with_opaque_tokens_and_keeps_the_token_expiry() -> Result<()> {
    let mut faults = calm();
    faults.opaque_access_tokens = true;
    let env = EngineEnv::start(faults, None).await?;
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let done = env.onboarded("ob-opaque", "lp-opaque").await?;
    ensure!(
        !done.admin_token.expose_secret().contains('.'),
        "the emulator issued an opaque token"
    );
    let kept = env
        .engine
        .admin_access_token(&done.tenant_id, &done.client_id)?
        .context("the admin token is kept")?;
    ensure!(kept.token.expose_secret() == done.admin_token.expose_secret());
    let expires_at = kept.expires_at.context("the expiry is kept")?;
    let after = time::OffsetDateTime::now_utc().unix_timestamp();
    // Our client declares `cp1`, so its tokens are a Continuous Access Evaluation session's:
    // the emulator's `expires_in` is a day, inside Entra's "up to 28 hours".
    let day = entra_sim::CAE_ACCESS_TOKEN_LIFETIME;
    ensure!(
        (before + day..=after + day).contains(&expires_at),
        "{expires_at} not within [{before}, {after}] + {day}"
    );
    Ok(())
}
