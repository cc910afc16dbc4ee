//! A 404 is replication lag only for what this onboarding made moments ago (entra-reference
//! §6 and §4.3): reads of objects it did not make, or made long ago, get no lag retries; a
//! stale replica right after a run does not make the cancel take a new object for gone.

use anyhow::{Context, Result, ensure};
use entra_client::OpContext;
use provision::{EventKind, Status};
use testkit::engine::{EngineEnv, collect};
use testkit::sim::calm;

/// Someone deletes the app right after the run. The cancel's read of it meets a 404 while
/// the app is still new enough to lag, but the recycle bin holds it: deleted, so the 404 is an
/// answer and the cancel waits for no lag retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_settled_onboarding_takes_a_404_as_an_answer() -> Result<()> {
    let (env, _) = EngineEnv::with_onboarding("onb-gone", "Sbc-Gone").await?;
    let rec = env.engine.get("onb-gone")?.context("record")?;
    let oid = rec.app_object_id.context("app")?;

    // Someone deletes the app (and with it its service principal) in Entra.
    let tokens = env.sign_in("globaladmin").await?;
    env.client
        .graph(tokens.access_token)
        .delete_application(&oid, &OpContext::new())
        .await?;

    let seen = env.engine.event_count("onb-gone")?;
    let started = std::time::Instant::now();
    let done = env.engine.cancel("onb-gone", "tester").await?;
    let took = started.elapsed();
    ensure!(done.status == Status::Cancelled, "{done:?}");
    let cancel_events = collect(env.engine.watch("onb-gone", seen + 1)?, 10).await?;
    let retries: Vec<_> = cancel_events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Retrying { .. }))
        .collect();
    ensure!(
        retries.is_empty(),
        "the app this settled onboarding made is gone, not lagging: {retries:#?}"
    );
    // The harness allows 30 s of lag retries; an answer takes a few round trips.
    ensure!(took.as_secs() < 10, "cancel took {took:?}");
    Ok(())
}

/// Someone removed a role assignment and a grant in Entra moments before the cancel, and
/// Graph's lists still show them (its documented "replication delays for app role assignments
/// that were recently granted or removed"): the undo's DELETE of each is answered 404, which is
/// the goal reached, not a failure. The cancel completes; the audit log says what Graph
/// answered (intent, then `failed` with its words) for those two and `succeeded` for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_of_removals_the_lists_still_show_takes_the_404_as_done() -> Result<()> {
    let (env, onboarded) = EngineEnv::with_onboarding("onb-unlist", "Sbc-Unlist").await?;
    let sp_id = onboarded.sp_id;
    let snap = env.snapshot();
    let role = testkit::snapshot::roles_of(&snap, &sp_id)[0]["id"]
        .as_str()
        .context("role assignment id")?
        .to_owned();
    let grant = testkit::snapshot::grants_of(&snap, &sp_id)[0].clone();
    let (grant_id, resource) = (
        grant["id"].as_str().context("grant id")?,
        grant["resource_id"].as_str().context("resource")?,
    );
    let grants_before = testkit::snapshot::grants_of(&snap, &sp_id).len();

    let mut faults = calm();
    faults.assignment_list_lag_ms = 60_000;
    env.sim.set_faults(faults);
    let tokens = env.sign_in("globaladmin").await?;
    let g = env.client.graph(tokens.access_token);
    g.remove_directory_role_assignment(&role, &OpContext::new())
        .await?;
    g.revoke_app_role(resource, grant_id, &OpContext::new())
        .await?;

    let done = env.engine.cancel("onb-unlist", "tester").await?;
    ensure!(done.status == Status::Cancelled, "{done:?}");
    let snap = env.snapshot();
    ensure!(
        testkit::snapshot::apps_named(&snap, "Sbc-Unlist").is_empty(),
        "app left"
    );
    let entries = env.audit_entries("onb-unlist")?;
    let phases = |action: &str, id: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["target"]["id"] == id)
            .map(|e| e["phase"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    for (action, id) in [
        ("directory_role_assignment.delete", role.as_str()),
        ("app_role_assignment.delete", grant_id),
    ] {
        let got = phases(action, id);
        ensure!(got == ["intent", "failed"], "{action} {id}: {got:?}");
    }
    let deleted_ok = entries
        .iter()
        .filter(|e| e["action"] == "app_role_assignment.delete" && e["phase"] == "succeeded")
        .count();
    ensure!(
        deleted_ok == grants_before - 1,
        "{deleted_ok} grants removed of {grants_before}"
    );
    Ok(())
}

/// Microsoft promises no read-your-writes: right after a run, a Graph replica that has not
/// seen the app yet may answer 404 to the cancel's read of it, although the run's own reads
/// found it (and the sign-in check proved it to the sign-in service, not to every replica).
/// The cancel looks in the recycle bin and reads again, instead of taking the 404 as "gone"
/// and leaving the app in the tenant while the record says it was removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_right_after_a_run_reads_again_what_a_stale_replica_misses() -> Result<()> {
    cancel_meeting_a_stale_replica("onb-stale-get", "Sbc-Stale-Get", ("GET", None), 1).await
}

/// The same for the DELETEs: a 404 to the service principal's DELETE (twice) from a replica
/// that has not seen it is retried as replication lag, not recorded as "already removed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_right_after_a_run_deletes_again_what_a_stale_replica_misses() -> Result<()> {
    cancel_meeting_a_stale_replica("onb-stale-delete", "Sbc-Stale-Del", ("DELETE", None), 2).await
}

/// The same for a list: a replica that has not seen the service principal lists none for the
/// app's `appId`. The cancel reads the one the record knows by its id, so its role
/// assignments, grants and deletion are undone one by one and logged, not taken along
/// unrecorded when the application is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_right_after_a_run_finds_the_service_principal_a_stale_list_misses() -> Result<()>
{
    let list = ("GET", Some("servicePrincipals"));
    cancel_meeting_a_stale_replica("onb-stale-list", "Sbc-Stale-List", list, 1).await
}

/// Provisions `name`, lets the next `answers` requests with `method` (to `path`, if named)
/// that name or list a new object meet a stale replica, cancels, and checks that the app is
/// gone from the tenant and that the log shows each removal succeeded: every role assignment
/// and grant the run made, the service principal and the app.
async fn cancel_meeting_a_stale_replica(
    id: &str,
    name: &str,
    (method, path): (&str, Option<&str>),
    answers: u32,
) -> Result<()> {
    let (env, onboarded) = EngineEnv::with_onboarding(id, name).await?;
    let sp_id = onboarded.sp_id;
    let snap = env.snapshot();
    let made = [
        (
            "directory_role_assignment.delete",
            testkit::snapshot::roles_of(&snap, &sp_id).len(),
        ),
        (
            "app_role_assignment.delete",
            testkit::snapshot::grants_of(&snap, &sp_id).len(),
        ),
    ];
    let mut faults = calm();
    faults.stale_replica_answers = answers;
    faults.stale_replica_method = Some(method.to_owned());
    faults.stale_replica_path = path.map(str::to_owned);
    env.sim.set_faults(faults);

    let done = env.engine.cancel(id, "tester").await?;
    ensure!(done.status == Status::Cancelled, "{done:?}");
    let snap = env.snapshot();
    ensure!(
        testkit::snapshot::apps_named(&snap, name).is_empty(),
        "the cancel left the app in the tenant"
    );
    let entries = env.audit_entries(id)?;
    for action in ["service_principal.delete", "app_registration.delete"] {
        let phases: Vec<_> = entries
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| e["phase"].as_str().unwrap_or_default())
            .collect();
        ensure!(phases == ["intent", "succeeded"], "{action}: {phases:?}");
    }
    for (action, count) in made {
        let removed = entries
            .iter()
            .filter(|e| e["action"] == action && e["phase"] == "succeeded")
            .count();
        ensure!(
            count > 0 && removed == count,
            "{action}: {removed} logged of the {count} the run made"
        );
    }
    ensure!(
        env.sim.stale_answers_left() == 0,
        "the stale replica was not met"
    );
    Ok(())
}
