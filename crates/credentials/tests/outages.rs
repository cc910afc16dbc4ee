//! Microsoft unreachable or throttling past the retries is an outage, reported as one
//! (api-sketch: UNAVAILABLE for an upstream outage), never as a property of the request: not
//! "the secret does not authenticate", not "the grants cannot be determined". A refusal stays
//! a refusal.

use anyhow::{Context, Result, ensure};
use credentials::{Credentials, CredentialsError, RegistrationRef};
use entra_sim::Faults;
use testkit::creds::{attach_req, provisioned};
use testkit::engine::EngineEnv;
use testkit::portal::DIRECT_ROUTING;
use testkit::sim::calm;

/// An error that is Microsoft's outage, as the server maps it (`Entra`, not a precondition).
fn is_outage(e: &Option<CredentialsError>) -> bool {
    e.as_ref().is_some_and(CredentialsError::is_entra_outage)
}

/// The emulator's sign-in service throttles every token request (the retries give up).
fn sts_down() -> Faults {
    Faults {
        sts_throttle_rate: 1.0,
        throttle_retry_after_s: 0,
        ..calm()
    }
}

/// Graph answers every call with 503 (the retries give up); tokens are opaque, so what a
/// registration holds must be read from Graph.
fn graph_down_opaque() -> Faults {
    Faults {
        error_rate: 1.0,
        error_status: Some(503),
        throttle_retry_after_s: 0,
        opaque_access_tokens: true,
        ..calm()
    }
}

async fn start() -> Result<(EngineEnv, Credentials)> {
    testkit::creds::start(calm()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_while_the_sign_in_service_is_down_is_an_outage_not_a_wrong_secret() -> Result<()>
{
    let (env, creds) = start().await?;
    let tenant = env.info.tenant_id.clone();
    let app = env.hand_made("Attach-Outage", &DIRECT_ROUTING).await?;

    env.sim.set_faults(sts_down());
    let e = creds
        .attach(attach_req(&tenant, &app.client_id, &app.secret))
        .await
        .err();
    ensure!(is_outage(&e), "{e:?}");
    ensure!(
        !e.as_ref()
            .is_some_and(|e| e.to_string().contains("does not authenticate")),
        "{e:?}"
    );
    let reg = RegistrationRef::new(&tenant, &app.client_id);
    ensure!(
        matches!(creds.registration(&reg), Err(CredentialsError::NotFound(_))),
        "an attach that could not check anything recorded the registration"
    );

    // Back up: the same attach succeeds (a refused secret: tests/manage.rs).
    env.sim.set_faults(calm());
    let view = creds
        .attach(attach_req(&tenant, &app.client_id, &app.secret))
        .await?;
    ensure!(view.sp_id == app.sp_id, "{view:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_down_while_reading_grants_from_graph_is_an_outage_not_undeterminable() -> Result<()>
{
    let (env, creds) = start().await?;
    let tenant = env.info.tenant_id.clone();
    let r = provisioned(&env, &creds, "go", "Sbc-Outage").await?;
    let app = env
        .hand_made("Attach-Graph-Outage", &DIRECT_ROUTING)
        .await?;

    env.sim.set_faults(graph_down_opaque());
    let e = creds.list_grants(&r).await.err();
    ensure!(is_outage(&e), "list_grants: {e:?}");
    let e = creds
        .attach(attach_req(&tenant, &app.client_id, &app.secret))
        .await
        .err();
    ensure!(is_outage(&e), "attach: {e:?}");

    // Graph answering and refusing the registration's own token the reads: said so, with the
    // way out (tests/opaque_tokens.rs covers the rest of that path).
    env.sim.set_faults(Faults {
        opaque_access_tokens: true,
        ..calm()
    });
    let e = creds.list_grants(&r).await.err().context("determinable")?;
    ensure!(
        matches!(&e, CredentialsError::FailedPrecondition(m) if m.contains("cannot be determined")),
        "{e:?}"
    );
    Ok(())
}

/// Sign-in requests the emulator answered while `f` ran.
async fn sts_requests_of<T>(env: &EngineEnv, f: impl AsyncFnOnce() -> T) -> (T, u64) {
    let before = env.sim.request_counts().sts;
    let out = f().await;
    (out, env.sim.request_counts().sts - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_ends_the_search_for_a_working_secret_at_the_first_one() -> Result<()> {
    let (env, creds) = start().await?;
    let tenant = env.info.tenant_id.clone();
    let one = provisioned(&env, &creds, "one", "Sbc-One-Secret").await?;
    let two = provisioned(&env, &creds, "two", "Sbc-Two-Secrets").await?;
    // A second current secret (for another service) on `two`; then no admin session, so the
    // grants are read with the registration's own secrets.
    testkit::creds::store_session(&env, &creds, "globaladmin").await?;
    creds
        .add_secret(&two, "svc-two-b", None, testkit::creds::ATTACH_ACTOR)
        .await?;
    creds.forget_admin_session(&tenant).await?;
    ensure!(creds.registration(&two)?.current.len() == 2);

    env.sim.set_faults(sts_down());
    let (e, one_tries) = sts_requests_of(&env, async || creds.list_grants(&one).await.err()).await;
    ensure!(is_outage(&e), "one secret: {e:?}");
    let (e, two_tries) = sts_requests_of(&env, async || creds.list_grants(&two).await.err()).await;
    ensure!(is_outage(&e), "two secrets: {e:?}");
    ensure!(
        one_tries > 0 && two_tries == one_tries,
        "the outage was met with {one_tries} sign-in requests for one secret and {two_tries} for two"
    );
    Ok(())
}
