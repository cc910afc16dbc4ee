//! Durability against the Entra emulator: resume after a simulated crash, retry after a failure,
//! replication lag and throttling, cancel, and many onboardings at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use entra_sim::Faults;
use onboard_core::HookAction;
use provision::{
    Admin, EventKind, EventStream, ListFilter, PlanRequest, ProvisionError, Status, StepHook,
};
use testkit::engine::{EngineEnv, aborted, collect, completion, hook_once};
use testkit::sim::{TOKEN_APP, assert_rode_out_faults, calm};
use testkit::snapshot::{apps_named, grants_of, no_duplicates, roles_of, sps_where};

/// A calm emulator and a signed-in global administrator; then the emulator turns to `faults`.
async fn signed_in_then(faults: Faults) -> Result<(EngineEnv, Admin)> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("globaladmin").await?;
    env.sim.set_faults(faults);
    Ok((env, admin))
}

/// Neither an app nor a service principal named `name` is left in the tenant.
fn nothing_left(env: &EngineEnv, name: &str) -> Result<()> {
    let snap = env.snapshot();
    ensure!(apps_named(&snap, name).is_empty(), "app left behind");
    ensure!(
        snap["service_principals"]
            .as_array()
            .is_some_and(|a| !a.iter().any(|s| s["display_name"] == name)),
        "SP left behind"
    );
    Ok(())
}

/// Provisions with a hook that halts the run at `point` (as if the process died there), then
/// closes everything, reopens the same audit and sled directories, resumes, and checks that the
/// tenant holds exactly one of each object.
async fn crash_at_and_resume(point: &'static str) -> Result<()> {
    let env = EngineEnv::start(calm(), Some(hook_once(point, HookAction::Halt))).await?;
    let admin = env.signed_in("globaladmin").await?;
    let id = "onb-crash";
    let events = env.run(env.request(id, "Sbc-Crash"), admin).await?;
    ensure!(
        !events.iter().any(|e| e.kind.is_terminal()),
        "{point}: the halted run must end without a terminal event: {events:#?}"
    );

    // "Process exit" and restart on the same audit and store directories.
    let env = env.restart(None).await?;
    let engine = &env.engine;
    let rec = engine.get(id)?.context("record survived")?;
    ensure!(rec.status == Status::Running, "{:?}", rec.status);
    let resumed = engine.resume_all().await?;
    ensure!(resumed == [id], "{resumed:?}");
    let events = collect(engine.watch(id, 1)?, 120).await?;
    let c = completion(&events).with_context(|| point)?;
    ensure!(c.secret.is_none(), "watchers never see the secret");

    let (app_id, _) = no_duplicates(&env.snapshot(), "Sbc-Crash").with_context(|| point)?;
    ensure!(app_id == c.client_id);
    ensure!(
        env.authenticates(&c.client_id, &engine.secret(id)?).await,
        "{point}: the resumed onboarding's secret does not authenticate"
    );
    // The resumed part was audited too, by `system`, and every intent has its outcome.
    let entries = env.audit_entries(id)?;
    ensure!(
        entries
            .iter()
            .any(|e| e["phase"] == "succeeded" && e["actor"] == "system"),
        "{point}"
    );
    // A crash after addPassword loses the new secret's value: the resumed run removes that
    // orphan (audited; the entry is checked against the published schema like every other
    // one `audit_entries` reads) before it adds the secret it keeps.
    if point == "client_secret:changed" {
        ensure!(
            entries
                .iter()
                .any(|e| e["action"] == "client_secret.remove" && e["phase"] == "succeeded"),
            "the orphan secret's removal is not audited: {entries:#?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_crash_between_steps_makes_no_duplicates() -> Result<()> {
    crash_at_and_resume("client_secret").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_crash_inside_each_step_makes_no_duplicates() -> Result<()> {
    // Each point is right after Entra changed and the outcome was audited, but before the step
    // was confirmed: only checking Entra first avoids a second app, SP, secret or grant.
    for point in [
        "app_registration:changed",
        "service_principal:changed",
        "client_secret:changed",
        "grant:Microsoft Graph/User.Read.All:changed",
        "role:Teams Administrator:changed",
    ] {
        crash_at_and_resume(point).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_run_retried_with_same_id_converges() -> Result<()> {
    let env = EngineEnv::start(
        calm(),
        Some(hook_once("permissions_and_roles", HookAction::Fail)),
    )
    .await?;
    let admin = env.signed_in("globaladmin").await?;
    let events = env
        .run(env.request("onb-retry", "Sbc-Retry"), admin.clone())
        .await?;
    aborted(&events)?;
    let rec = env.engine.get("onb-retry")?.context("record")?;
    ensure!(rec.status == Status::Failed && rec.error.is_some());

    // A retry keeps its name (any letter case): Provision and its Plan refuse another alike.
    let plan = |name: &str| PlanRequest {
        app_name: name.into(),
        profile: "direct-routing".into(),
        platform_version: None,
    };
    let renamed = env
        .engine
        .plan_for("onb-retry", &admin, &plan("Sbc-Other"))
        .await;
    ensure!(
        matches!(renamed, Err(ProvisionError::InvalidState { .. })),
        "{renamed:?}"
    );
    let renamed = env
        .run(env.request("onb-retry", "Sbc-Other"), admin.clone())
        .await;
    ensure!(
        renamed
            .as_ref()
            .is_err_and(|e| e.to_string().contains("same tenant and name")),
        "{renamed:?}"
    );
    env.engine
        .plan_for("onb-retry", &admin, &plan("SBC-RETRY"))
        .await?;

    // Retry with the same id: runs the remaining steps only, converging on the same objects.
    let events = env
        .run(env.request("onb-retry", "Sbc-Retry"), admin.clone())
        .await?;
    completion(&events)?;
    ensure!(
        !events.iter().any(|e| e.step == "app_registration"),
        "a confirmed step ran again"
    );
    no_duplicates(&env.snapshot(), "Sbc-Retry")?;

    // A new onboarding with the same name after cancelling reuses nothing stale and stays single.
    env.engine.cancel("onb-retry", "tester").await?;
    let events = env
        .run(env.request("onb-retry-2", "sbc-retry"), admin)
        .await?;
    completion(&events)?;
    no_duplicates(&env.snapshot(), "sbc-retry")?;
    ensure!(apps_named(&env.snapshot(), "Sbc-Retry").is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_lag_and_throttling_complete_with_retrying_events() -> Result<()> {
    let (env, admin) = signed_in_then(Faults {
        replication_lag_ms: 1500,
        throttle_rate: 0.25,
        throttle_retry_after_s: 1,
        seed: Some(11),
        // Below the client's retry budget: the run completes whatever the draws.
        max_faults_per_operation: Some(3),
        device_code_interval_s: Some(1),
        ..Faults::default()
    })
    .await?;
    let events = env.run(env.request("onb-lag", "Sbc-Lag"), admin).await?;
    completion(&events)?;
    let (reasons, waits): (Vec<&str>, Vec<u64>) = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Retrying {
                reason, wait_ms, ..
            } => Some((reason.as_str(), *wait_ms)),
            _ => None,
        })
        .unzip();
    assert_rode_out_faults(&reasons, &waits)?;
    no_duplicates(&env.snapshot(), "Sbc-Lag")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_undoes_what_was_made_audited() -> Result<()> {
    let (env, c) = EngineEnv::with_onboarding("onb-c", "Sbc-Cancel").await?;
    let (app_id, sp_id) = no_duplicates(&env.snapshot(), "Sbc-Cancel")?;

    // Completed: the refresh token (issued to the temporary app, now removed) is forgotten;
    // the access token stays for day-two reads and an undo while it lasts.
    ensure!(env.engine.admin_session("onb-c")?.is_some());
    ensure!(
        !stored(&env, "onb-c", REFRESH)?,
        "a completed onboarding keeps its refresh token"
    );

    let watch = env.engine.watch("onb-c", c.events.len() as u64 + 1)?;
    let done = env.engine.cancel("onb-c", "tester").await?;
    ensure!(done.status == Status::Cancelled && done.client_id.is_none());
    ends_cancelled(watch).await?;
    // Cancelled: nothing of the admin's sign-in is kept.
    ensure!(env.engine.admin_session("onb-c")?.is_none());
    ensure!(
        !stored(&env, "onb-c", ACCESS)?,
        "a cancelled onboarding keeps its access token"
    );

    let snap = env.snapshot();
    ensure!(apps_named(&snap, "Sbc-Cancel").is_empty(), "app left");
    ensure!(sps_where(&snap, "app_id", &app_id).is_empty(), "SP left");
    ensure!(grants_of(&snap, &sp_id).is_empty(), "grants left");
    ensure!(roles_of(&snap, &sp_id).is_empty(), "roles left");
    ensure!(
        !env.authenticates(&c.client_id, &c.secret).await,
        "the old secret still works"
    );
    let entries = env.audit_entries("onb-c")?;
    for (action, n) in [
        ("directory_role_assignment.delete", 1),
        ("app_role_assignment.delete", 4),
        ("service_principal.delete", 1),
        ("app_registration.delete", 1),
    ] {
        let intents = entries
            .iter()
            .filter(|e| e["action"] == action && e["phase"] == "intent")
            .count();
        let ok = entries
            .iter()
            .filter(|e| e["action"] == action && e["phase"] == "succeeded")
            .count();
        ensure!(
            intents == n && ok == n,
            "{action}: {intents} intents, {ok} succeeded"
        );
        ensure!(
            entries
                .iter()
                .all(|e| e["action"] != action || e["actor"] == "tester")
        );
    }
    // Cancelling again is a no-op.
    ensure!(env.engine.cancel("onb-c", "tester").await?.status == Status::Cancelled);
    ensure!(matches!(
        env.engine.cancel("nope", "tester").await,
        Err(ProvisionError::NotFound(_))
    ));
    Ok(())
}

/// A failed undo ends the streams that follow the onboarding (its step failure, then the
/// terminal Aborted), leaves it being cancelled, and a second cancel finishes it; a Watch from
/// after the failure follows that to Cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_undo_ends_the_streams_and_a_second_cancel_finishes_it() -> Result<()> {
    let (env, onboarded) = EngineEnv::with_onboarding("onb-u", "Sbc-Undo").await?;
    let watch = env
        .engine
        .watch("onb-u", onboarded.events.len() as u64 + 1)?;
    // Every Graph call fails until the retry budget is spent: the undo fails.
    env.sim.set_faults(Faults {
        error_rate: 1.0,
        error_status: Some(503),
        ..calm()
    });
    ensure!(
        env.engine.cancel("onb-u", "tester").await.is_err(),
        "the undo succeeded against a failing Graph"
    );
    let tail = collect(watch, 60).await?;
    let kinds: Vec<_> = tail.iter().map(|e| (e.step.as_str(), &e.kind)).collect();
    ensure!(
        matches!(
            kinds.as_slice(),
            [
                ..,
                ("cancel", EventKind::Failed { .. }),
                ("", EventKind::Aborted { .. })
            ]
        ),
        "{tail:#?}"
    );
    let rec = env.engine.get("onb-u")?.context("record")?;
    ensure!(
        rec.status == Status::Cancelling && rec.error.is_some(),
        "{rec:?}"
    );

    env.sim.set_faults(calm());
    let next = tail.last().map_or(0, |e| e.seq) + 1;
    let retry = env.engine.watch("onb-u", next)?;
    ensure!(env.engine.cancel("onb-u", "tester").await?.status == Status::Cancelled);
    ends_cancelled(retry).await?;
    nothing_left(&env, "Sbc-Undo")
}

/// A sealed refresh token in a stored record, as JSON writes it.
const REFRESH: &str = "\"sealed_admin_refresh\":\"";
/// A sealed access token in a stored record, as JSON writes it.
const ACCESS: &str = "\"sealed_admin_token\":\"";

/// Whether onboarding `id`'s stored record holds `field` (as the bytes on disk read).
fn stored(env: &EngineEnv, id: &str, field: &str) -> Result<bool> {
    let tree = env.db.open_tree("provision")?;
    let rec = tree.get(format!("o/{id}"))?.context("no record")?;
    Ok(String::from_utf8_lossy(&rec).contains(field))
}

/// Reads `watch` to its end (within 30 s), which must be the onboarding's Cancelled event.
async fn ends_cancelled(watch: EventStream) -> Result<()> {
    let tail = collect(watch, 30).await?;
    ensure!(
        matches!(
            tail.last().map(|e| &e.kind),
            Some(EventKind::Cancelled { .. })
        ),
        "{tail:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_onboardings_in_one_engine() -> Result<()> {
    let env = EngineEnv::start(calm(), None).await?;
    let admin = env.signed_in("globaladmin").await?;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let engine = env.engine.clone();
        let req = env.request(&format!("onb-{i:02}"), &format!("Sbc-{i:02}"));
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            let s = engine.provision(req, admin).await?;
            collect(s, 240).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let events = match t.await? {
            Ok(e) => e,
            Err(e) => bail!("onboarding {i}: {e:#}"),
        };
        completion(&events).with_context(|| format!("onboarding {i}"))?;
    }
    let snap = env.snapshot();
    for i in 0..20 {
        no_duplicates(&snap, &format!("Sbc-{i:02}")).with_context(|| format!("Sbc-{i:02}"))?;
    }
    ensure!(sps_where(&snap, "display_name", TOKEN_APP).is_empty());
    let listed = env.engine.list(&ListFilter {
        status: Some(Status::Completed),
        ..Default::default()
    })?;
    ensure!(listed.len() == 20, "{}", listed.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_failure_mid_run_stops_before_the_next_change() -> Result<()> {
    // The hook closes the audit log once the app is confirmed: the intent entries of the
    // service principal and the secret (which run at once) cannot be written, so neither
    // call may be made.
    let slot: Arc<std::sync::Mutex<Option<audit_log::AuditLog>>> = Arc::default();
    let for_hook = slot.clone();
    let hook: StepHook = Arc::new(move |_id: &str, step: &str| {
        if step == "app_registration"
            && let Some(log) = for_hook.lock().ok().and_then(|mut g| g.take())
        {
            log.close();
        }
        HookAction::Continue
    });
    let env = EngineEnv::start(calm(), Some(hook)).await?;
    *slot.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(env.audit.clone());
    let admin = env.signed_in("globaladmin").await?;
    let events = env.run(env.request("onb-a", "Sbc-Audit"), admin).await?;
    match events.last().map(|e| &e.kind) {
        Some(EventKind::Aborted { error, .. }) => ensure!(error.contains("audit"), "{error}"),
        other => bail!("expected Aborted, got {other:?}"),
    }
    for step in ["service_principal", "client_secret"] {
        ensure!(
            events
                .iter()
                .any(|e| e.step == step && matches!(e.kind, EventKind::Failed { .. })),
            "{step} did not fail"
        );
    }
    let snap = env.snapshot();
    let apps = apps_named(&snap, "Sbc-Audit");
    ensure!(apps.len() == 1);
    ensure!(
        apps[0]["passwords"].as_array().map(Vec::len) == Some(0),
        "a secret was added"
    );
    let app_id = apps[0]["app_id"].as_str().context("app_id")?;
    ensure!(
        sps_where(&snap, "app_id", app_id).is_empty(),
        "a service principal was created"
    );
    ensure!(
        sps_where(&snap, "display_name", TOKEN_APP).len() == 1,
        "token app removed"
    );
    let rec = env.engine.get("onb-a")?.context("record")?;
    ensure!(rec.status == Status::Failed && rec.secret_key_id.is_none());
    Ok(())
}

/// A failed onboarding undone hours later, and a run resumed after a long outage: the
/// admin's access token (about an hour) has expired by then, its refresh token has not, and
/// the temporary app it was issued to is still there (removing it is the last step).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_admin_access_token_is_renewed_for_a_late_cancel_and_a_late_resume() -> Result<()>
{
    let env = EngineEnv::start(
        calm(),
        Some(hook_once("permissions_and_roles", HookAction::Fail)),
    )
    .await?;
    let admin = env.signed_in("globaladmin").await?;
    aborted(&env.run(env.request("onb-late", "Sbc-Late"), admin).await?)?;
    // A failed onboarding keeps its sign-in: a cancel, or a retry, may need it.
    ensure!(stored(&env, "onb-late", REFRESH)? && stored(&env, "onb-late", ACCESS)?);
    env.sim.expire_access_tokens().await;
    let done = env.engine.cancel("onb-late", "tester").await?;
    ensure!(done.status == Status::Cancelled, "{done:?}");
    ensure!(!stored(&env, "onb-late", REFRESH)? && !stored(&env, "onb-late", ACCESS)?);
    ensure!(
        apps_named(&env.snapshot(), "Sbc-Late").is_empty(),
        "app left"
    );

    let env = env
        .restart(Some(hook_once("permissions_and_roles", HookAction::Halt)))
        .await?;
    let admin = env.signed_in("globaladmin").await?;
    env.run(env.request("onb-out", "Sbc-Outage"), admin).await?;
    env.sim.expire_access_tokens().await;
    let env = env.restart(None).await?;
    ensure!(env.engine.resume_all().await? == ["onb-out"]);
    completion(&collect(env.engine.watch("onb-out", 1)?, 120).await?)?;
    no_duplicates(&env.snapshot(), "Sbc-Outage")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_running_stops_and_undoes() -> Result<()> {
    // Slow answers keep the run busy long enough to cancel it half-way.
    let (env, admin) = signed_in_then(Faults {
        latency_ms: 300,
        device_code_interval_s: Some(1),
        ..Faults::default()
    })
    .await?;
    let mut stream = env
        .engine
        .provision(env.request("onb-mid", "Sbc-Mid"), admin)
        .await?;
    use tokio_stream::StreamExt;
    loop {
        let e = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await?
            .context("stream ended early")?;
        if e.step == "service_principal" && matches!(e.kind, EventKind::Done { .. }) {
            break;
        }
    }
    let done = env.engine.cancel("onb-mid", "tester").await?;
    ensure!(done.status == Status::Cancelled);
    // The aborted run's stream ends without completing.
    let rest = collect(stream, 30).await?;
    ensure!(
        !rest
            .iter()
            .any(|e| matches!(e.kind, EventKind::Completed(_))),
        "{rest:#?}"
    );
    nothing_left(&env, "Sbc-Mid")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_interrupted_half_way_is_finished_by_resume() -> Result<()> {
    let env = EngineEnv::start(calm(), Some(hook_once("cancel:changed", HookAction::Halt))).await?;
    let admin = env.signed_in("globaladmin").await?;
    let events = env.run(env.request("onb-h", "Sbc-Half"), admin).await?;
    completion(&events)?;
    // The first removal happens, then the "process" stops.
    ensure!(matches!(
        env.engine.cancel("onb-h", "tester").await,
        Err(ProvisionError::Halted(_))
    ));
    ensure!(env.engine.get("onb-h")?.context("record")?.status == Status::Cancelling);
    ensure!(apps_named(&env.snapshot(), "Sbc-Half").len() == 1);

    ensure!(env.engine.resume_all().await? == ["onb-h"]);
    let limit = Duration::from_secs(30);
    testkit::wait::until_true("the cancel resumed to its end", limit, async || {
        Ok(env.engine.get("onb-h")?.context("record")?.status == Status::Cancelled)
    })
    .await?;
    nothing_left(&env, "Sbc-Half")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_whose_answers_are_lost_are_made_once_and_lost_secrets_are_removed_audited()
-> Result<()> {
    // Every operation's first Graph request answers 500, and a write lands first (its answer
    // is lost). Reads retry, and creates look before sending again. Each secret add is an
    // operation of its own, so every one loses its answer: the step removes each lost secret
    // (its value went with the answer) and gives up after its attempts.
    let (env, admin) = signed_in_then(Faults {
        error_rate: 1.0,
        error_status: Some(500),
        errors_after_write: true,
        max_faults_per_operation: Some(1),
        device_code_interval_s: Some(1),
        ..Faults::default()
    })
    .await?;
    let req = || env.request("onb-lost", "Sbc-Lost");
    let events = env.run(req(), admin.clone()).await?;
    aborted(&events)?;
    // Each secret added again came after a wait, reported (no request at once after a 500).
    let waits: Vec<u64> = (events.iter())
        .filter_map(|e| match &e.kind {
            EventKind::Retrying {
                operation, wait_ms, ..
            } if operation == "add_password" => Some(*wait_ms),
            _ => None,
        })
        .collect();
    ensure!(
        waits.len() == 3 && waits.iter().all(|w| *w > 0),
        "{waits:?}"
    );
    let why = env
        .engine
        .get("onb-lost")?
        .and_then(|r| r.error)
        .unwrap_or_default();
    ensure!(
        why.contains("client_secret") && why.contains("500"),
        "{why}"
    );
    // The app and its service principal were made once, though every create lost its answer.
    let snap = env.snapshot();
    ensure!(apps_named(&snap, "Sbc-Lost").len() == 1);
    let app_id = apps_named(&snap, "Sbc-Lost")[0]["app_id"]
        .as_str()
        .context("app id")?
        .to_owned();
    ensure!(sps_where(&snap, "app_id", &app_id).len() == 1);

    // Microsoft answers again: the retry removes the last lost secret and completes, once.
    env.sim.set_faults(calm());
    completion(&env.run(req(), admin).await?)?;
    no_duplicates(&env.snapshot(), "Sbc-Lost")?;
    let entries = env.audit_entries("onb-lost")?;
    let count = |action: &str, phase: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["phase"] == phase)
            .count()
    };
    // 1 + 3 attempts lost their answers; each one's secret was removed, audited.
    ensure!(count("client_secret.add", "failed") == 4, "{entries:#?}");
    ensure!(
        count("client_secret.remove", "succeeded") == 4,
        "{entries:#?}"
    );
    ensure!(count("client_secret.add", "succeeded") == 1, "{entries:#?}");
    Ok(())
}
