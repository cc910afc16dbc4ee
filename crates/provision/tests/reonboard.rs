//! A deleted application keeps its `uniqueName` for the 30 days it sits in Entra's recycle bin
//! (microsoftgraph/msgraph-bicep-types#137). Cancelling deletes the app, so the next onboarding
//! of the same name must not reuse the key; and a retry whose app someone deleted in Entra must
//! say what happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, ensure};
use entra_client::OpContext;
use onboard_core::HookAction;
use provision::{EventKind, Status, StepHook};
use testkit::engine::{EngineEnv, aborted, completion};
use testkit::sim::calm;
use testkit::snapshot::{GRANTS, ROLES, apps_named, provisioned_once};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_then_onboard_the_same_name_again_completes_without_duplicates() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("globaladmin").await?;
    let first = env
        .provision("onb-first", "Sbc-Again", admin.clone())
        .await?;
    completion(&first)?;
    let cancelled = env.engine.cancel("onb-first", "tester").await?;
    ensure!(cancelled.status == Status::Cancelled, "{cancelled:?}");
    let snap = env.snapshot();
    ensure!(apps_named(&snap, "Sbc-Again").is_empty(), "app not deleted");
    let binned = snap["deleted_applications"]
        .as_array()
        .context("deleted_applications")?;
    ensure!(
        binned.len() == 1,
        "the cancelled app sits in the bin: {binned:?}"
    );

    let second = env.provision("onb-second", "Sbc-Again", admin).await?;
    completion(&second)?;
    // Exactly one live app of that name, one SP, its grants and role: no duplicates.
    let (app_id, _) = provisioned_once(&env.snapshot(), "Sbc-Again", GRANTS, ROLES)?;
    ensure!(
        binned[0]["app_id"] != app_id.as_str(),
        "a new app, not the deleted one"
    );
    let (a, b) = (
        env.engine.get("onb-first")?.context("first")?,
        env.engine.get("onb-second")?.context("second")?,
    );
    ensure!(a.app_name == b.app_name);
    ensure!(
        env.snapshot()["deleted_applications"][0]["props"]["uniqueName"]
            != env.snapshot()["applications"][0]["props"]["uniqueName"],
        "each onboarding has its own key"
    );
    Ok(())
}

fn fail_once_after(step: &'static str) -> StepHook {
    let fired = Arc::new(AtomicBool::new(false));
    Arc::new(move |_id: &str, s: &str| {
        if s == step && !fired.swap(true, Ordering::SeqCst) {
            HookAction::Fail
        } else {
            HookAction::Continue
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_the_app_was_deleted_in_entra_says_what_to_do() -> Result<()> {
    // Fails right after the app was made, before the step is confirmed: the retry upserts again.
    let env = EngineEnv::start(calm(), Some(fail_once_after("app_registration:changed"))).await?;
    let admin = env.signed_in("globaladmin").await?;
    let events = env
        .provision("onb-del", "Sbc-Deleted", admin.clone())
        .await?;
    aborted(&events)?;
    let made = apps_named(&env.snapshot(), "Sbc-Deleted")
        .first()
        .and_then(|a| a["id"].as_str().map(str::to_owned))
        .context("app made")?;
    let oid = made;

    // Someone deletes the app in Entra; it goes to the recycle bin with our key.
    let tokens = env.sign_in("globaladmin").await?;
    env.client
        .graph(tokens.access_token)
        .delete_application(&oid, &OpContext::new())
        .await?;

    let events = env.provision("onb-del", "Sbc-Deleted", admin).await?;
    let Some(EventKind::Aborted { error, .. }) = events.last().map(|e| &e.kind) else {
        anyhow::bail!("expected Aborted: {events:#?}");
    };
    ensure!(
        error.contains(&oid) && error.contains("deleted items") && error.contains("restore"),
        "not precise: {error}"
    );
    ensure!(apps_named(&env.snapshot(), "Sbc-Deleted").is_empty());
    Ok(())
}
