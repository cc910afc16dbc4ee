//! Service secrets against the emulator: add / list / revoke, policy refusals, rotation (happy
//! path through propagation lag) and rotation cut short at every stage, then resumed.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use credentials::{CredentialsError, RotationEvent};
use entra_sim::Faults;
use onboard_core::{Hook, HookAction};
use secrecy::ExposeSecret;
use testkit::creds::{manager, provisioned, start_ready, store_session};
use testkit::engine::hook_once;
use testkit::sim::calm;

const REMOVES: &str = "POST removePassword";
/// The operator of day-two changes.
const ACTOR: &str = "spiffe://platform.test/operator";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_list_revoke_and_the_current_secret_is_protected() -> Result<()> {
    let (env, creds) = testkit::creds::start(calm()).await?;
    let r = provisioned(&env, &creds, "one", "Sbc-One").await?;
    let svc = "svc-one";
    // Without an admin session, a change names the fix.
    let e = creds
        .add_secret(&r, svc, None, ACTOR)
        .await
        .err()
        .context("add without session must fail")?;
    ensure!(
        matches!(e, CredentialsError::NoAdminSession { .. }),
        "{e:?}"
    );
    ensure!(
        e.to_string()
            .contains("create an invitation and sign in again")
    );

    store_session(&env, &creds, "globaladmin").await?;
    let (first, first_value) = creds.current_secret(&r, svc)?;
    let added = creds
        .add_secret(&r, svc, Some(time::Duration::days(30)), ACTOR)
        .await?;
    ensure!(env.authenticates(&r.client_id, &added.value).await);
    ensure!(!format!("{added:?}").contains(added.value.expose_secret()));
    let list = creds.list_secrets(&r)?;
    ensure!(list.len() == 2, "{list:?}");
    let new = list
        .iter()
        .find(|s| s.key_id == added.info.key_id)
        .context("new listed")?;
    ensure!(
        new.current && (29..=30).contains(&new.days_until_expiry),
        "{new:?}"
    );
    ensure!(
        !list
            .iter()
            .find(|s| s.key_id == first.key_id)
            .context("old")?
            .current
    );

    // The service's current secret cannot be revoked; the previous one can, once.
    let e = creds
        .revoke(&r, &added.info.key_id, ACTOR)
        .await
        .err()
        .context("revoking the current secret must fail")?;
    ensure!(
        matches!(e, CredentialsError::FailedPrecondition(_)),
        "{e:?}"
    );
    ensure!(env.sim.calls(REMOVES) == 0);
    creds.revoke(&r, &first.key_id, ACTOR).await?;
    ensure!(env.sim.calls(REMOVES) == 1);
    ensure!(!env.authenticates(&r.client_id, &first_value).await);
    ensure!(env.passwords(&r.client_id).len() == 1);
    let e = creds.revoke(&r, &first.key_id, ACTOR).await.err();
    ensure!(matches!(e, Some(CredentialsError::NotFound(_))), "{e:?}");

    // Expiry report: the 30-day secret is inside a 30-day horizon, not a 7-day one.
    ensure!(creds.expiring(30)?.len() == 1);
    ensure!(creds.expiring(7)?.is_empty());

    // Audit: intent then outcome for both changes, no secret value anywhere.
    let entries = env.audit_entries(&creds.registration(&r)?.id)?;
    let text = serde_json::to_string(&entries)?;
    ensure!(!text.contains(added.value.expose_secret()));
    let phases: Vec<(String, String)> = entries
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .unwrap_or("")
                .starts_with("password_credential.")
        })
        .filter(|e| e["actor"] == ACTOR)
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_owned(),
                e["phase"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    ensure!(
        phases
            == vec![
                ("password_credential.create".into(), "intent".into()),
                ("password_credential.create".into(), "succeeded".into()),
                ("password_credential.delete".into(), "intent".into()),
                ("password_credential.delete".into(), "succeeded".into()),
            ],
        "{phases:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_management_policy_refusal_leaves_the_app_unchanged() -> Result<()> {
    let (env, creds, r) = start_ready("pol").await?;
    let svc = "svc-pol";
    let (old, old_value) = creds.current_secret(&r, svc)?;
    for faults in [
        Faults {
            forbid_passwords: true,
            ..calm()
        },
        Faults {
            password_lifetime_max_days: Some(30),
            ..calm()
        },
    ] {
        env.sim.set_faults(faults);
        let before = env.passwords(&r.client_id);
        let e = creds
            .rotate(&r, svc, Duration::ZERO, ACTOR, None)
            .await
            .err()
            .context("rotation must be refused")?;
        ensure!(matches!(e, CredentialsError::PolicyRefused { .. }), "{e:?}");
        ensure!(e.to_string().contains("AsPerAppPolicy"), "{e}");
        let e = creds.add_secret(&r, svc, None, ACTOR).await.err();
        ensure!(
            matches!(e, Some(CredentialsError::PolicyRefused { .. })),
            "{e:?}"
        );
        // Nothing half done: same secrets in Entra and here, no rotation pending, old works.
        ensure!(env.passwords(&r.client_id) == before);
        ensure!(creds.pending_rotations()?.is_empty());
        ensure!(creds.current_secret(&r, svc)?.0.key_id == old.key_id);
        ensure!(env.authenticates(&r.client_id, &old_value).await);
    }
    ensure!(env.sim.calls(REMOVES) == 0);
    // Each refused rotation has its intent and a failed outcome.
    let entries = env.audit_entries(&creds.registration(&r)?.id)?;
    let phases: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "secret.rotate")
        .filter_map(|e| e["phase"].as_str())
        .collect();
    ensure!(
        phases == ["intent", "failed", "intent", "failed"],
        "{phases:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_validates_through_propagation_lag_and_removes_the_old_after_overlap() -> Result<()>
{
    let (env, creds, r) = start_ready("rot").await?;
    let svc = "svc-rot";
    let (old, old_value) = creds.current_secret(&r, svc)?;
    env.sim.set_faults(Faults {
        replication_lag_ms: 1500,
        ..calm()
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RotationEvent>();
    let rotating = creds.clone();
    let r2 = r.clone();
    let run = tokio::spawn(async move {
        rotating
            // An overlap with room for the hand-over's durable writes and the check below on
            // a busy machine: the overlap's clock starts before them.
            .rotate(&r2, "svc-rot", Duration::from_secs(5), ACTOR, Some(tx))
            .await
    });
    let mut stages = Vec::new();
    let mut new_value = None;
    let mut old_checked_during_overlap = false;
    while let Some(mut ev) = rx.recv().await {
        stages.push((ev.stage, ev.done));
        // As the gRPC layer does once the events before it reached the caller.
        if let Some(confirm) = ev.confirm.take() {
            let _ = confirm.send(());
        }
        if let Some(s) = ev.new_secret {
            new_value = Some(s.value);
        }
        if ev.stage == "hand_over" && ev.done {
            // During the overlap both secrets work.
            old_checked_during_overlap = env.authenticates(&r.client_id, &old_value).await;
        }
    }
    run.await??;
    ensure!(
        old_checked_during_overlap,
        "old secret must work during the overlap"
    );
    ensure!(
        stages
            == vec![
                ("add", false),
                ("add", true),
                ("validate", false),
                ("validate", true),
                ("hand_over", false),
                ("hand_over", true),
                ("remove_old", false),
                ("remove_old", true),
            ],
        "{stages:?}"
    );
    let new_value = new_value.context("the add event carries the secret")?;
    let (cur, cur_value) = creds.current_secret(&r, svc)?;
    ensure!(cur.key_id != old.key_id);
    ensure!(cur_value.expose_secret() == new_value.expose_secret());
    ensure!(env.authenticates(&r.client_id, &new_value).await);
    ensure!(!env.authenticates(&r.client_id, &old_value).await);
    ensure!(env.sim.calls(REMOVES) == 1);
    ensure!(env.passwords(&r.client_id).len() == 1);
    ensure!(creds.list_secrets(&r)?.len() == 1);
    Ok(())
}

/// A hook that halts once at `point`.
fn halt_once(point: &'static str) -> Hook {
    hook_once(point, HookAction::Halt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_cut_short_at_every_stage_resumes_and_removes_the_old_exactly_once() -> Result<()>
{
    let (env, creds, r) = start_ready("crash").await?;
    let svc = "svc-crash";
    let reg_id = creds.registration(&r)?.id;
    for point in [
        "add:changed",
        "add",
        "validate",
        "hand_over",
        "remove_old:changed",
        "remove_old",
    ] {
        let (old, old_value) = creds.current_secret(&r, svc)?;
        let removes_before = env.sim.calls(REMOVES);
        let crashing = manager(&env, Some(halt_once(point)))?;
        let e = crashing
            .rotate(&r, svc, Duration::ZERO, ACTOR, None)
            .await
            .err()
            .with_context(|| format!("{point}: the hook must stop the rotation"))?;
        ensure!(matches!(e, CredentialsError::Halted(_)), "{point}: {e:?}");
        drop(crashing);
        // After the crash the service still has a working secret.
        let (_, v) = creds.current_secret(&r, svc)?;
        ensure!(
            env.authenticates(&r.client_id, &v).await,
            "{point}: no working secret after the crash"
        );
        // A restarted process converges.
        let restarted = manager(&env, None)?;
        let failed = restarted.resume_all().await?;
        ensure!(failed.is_empty(), "{point}: {failed:?}");
        ensure!(restarted.pending_rotations()?.is_empty(), "{point}");
        let (cur, cur_value) = restarted.current_secret(&r, svc)?;
        ensure!(cur.key_id != old.key_id, "{point}: not rotated");
        ensure!(env.authenticates(&r.client_id, &cur_value).await, "{point}");
        ensure!(
            !env.authenticates(&r.client_id, &old_value).await,
            "{point}"
        );
        // Entra holds exactly the new secret; we hold exactly it too.
        let pws = env.passwords(&r.client_id);
        ensure!(pws.len() == 1, "{point}: {pws:?}");
        ensure!(restarted.list_secrets(&r)?.len() == 1, "{point}");
        // The old one was removed exactly once (plus, after `add:changed`, the new secret
        // whose value was lost, which is removed and re-added).
        let extra = u64::from(point == "add:changed");
        let removes = env.sim.calls(REMOVES) - removes_before;
        ensure!(
            removes == 1 + extra,
            "{point}: {removes} removePassword calls"
        );
        let old_deletes = env
            .audit_entries(&reg_id)?
            .iter()
            .filter(|e| {
                e["action"] == "password_credential.delete"
                    && e["phase"] == "succeeded"
                    && e["target"]["id"]
                        .as_str()
                        .is_some_and(|k| k.eq_ignore_ascii_case(&old.key_id))
            })
            .count();
        ensure!(old_deletes == 1, "{point}: old removed {old_deletes} times");
    }
    // Across the crashes, every intent has its one outcome under the same correlation id (a
    // rotation's entries carry its id, which outlives the process that wrote the intent).
    let pairs = testkit::audit::change_pairs(&env.audit_entries(&reg_id)?, &reg_id)?;
    ensure!(pairs.get("secret.rotate") == Some(&6), "{pairs:?}");
    ensure!(
        pairs.get("authentication.verify").is_some_and(|n| *n >= 6),
        "{pairs:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_secrets_are_reported_and_rotated_automatically() -> Result<()> {
    let (env, creds, r) = start_ready("exp").await?;
    let svc = "svc-exp";
    // The onboarding made a 180-day secret; replace it with one that expires in 10 days.
    let short = creds
        .add_secret(&r, svc, Some(time::Duration::days(10)), ACTOR)
        .await?;
    let due = creds.expiring(30)?;
    ensure!(due.len() == 1, "{due:?}");
    ensure!(due[0].secret.key_id == short.info.key_id && due[0].secret.service_id == svc);
    ensure!(
        (9..=10).contains(&due[0].secret.days_until_expiry),
        "{due:?}"
    );
    let done = creds
        .rotate_expiring(30, Duration::ZERO, "system:auto-rotate")
        .await?;
    ensure!(done.len() == 1 && done[0].1.is_ok(), "{done:?}");
    ensure!(creds.expiring(30)?.is_empty());
    let (cur, v) = creds.current_secret(&r, svc)?;
    ensure!(cur.key_id != short.info.key_id);
    ensure!(env.authenticates(&r.client_id, &v).await);
    ensure!(!env.authenticates(&r.client_id, &short.value).await);
    // The onboarding's original (not current) secret is left alone: only the due one went.
    ensure!(creds.list_secrets(&r)?.len() == 2);
    ensure!(env.sim.calls(REMOVES) == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changes_when_the_audit_log_cannot_be_written() -> Result<()> {
    let (env, creds, r) = start_ready("aud").await?;
    let before = env.passwords(&r.client_id);
    env.audit.clone().close();
    let e = creds.add_secret(&r, "svc-aud", None, ACTOR).await.err();
    ensure!(matches!(e, Some(CredentialsError::Audit(_))), "{e:?}");
    let e = creds
        .rotate(&r, "svc-aud", Duration::ZERO, ACTOR, None)
        .await
        .err();
    ensure!(matches!(e, Some(CredentialsError::Audit(_))), "{e:?}");
    ensure!(creds.pending_rotations()?.is_empty());
    ensure!(env.passwords(&r.client_id) == before);
    ensure!(creds.list_secrets(&r)?.len() == 1);
    Ok(())
}

/// A rotation cut short between Entra's add and the record of the new key id leaves a secret
/// in Entra that Onboard knows only by its marker: verification does not call it a credential
/// made outside Onboard, while a secret added by hand beside it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_cut_short_after_the_add_is_not_a_foreign_credential() -> Result<()> {
    use verifier::Targets;
    let (env, creds, r) = start_ready("marker").await?;
    let crashing = manager(&env, Some(halt_once("add:changed")))?;
    let e = crashing
        .rotate(&r, "svc-marker", Duration::ZERO, ACTOR, None)
        .await
        .err()
        .context("the hook must stop the rotation")?;
    ensure!(matches!(e, CredentialsError::Halted(_)), "{e:?}");
    drop(crashing);
    ensure!(
        env.passwords(&r.client_id).len() == 2,
        "the new secret is in Entra"
    );
    let targets = credentials::targets::RegistryTargets::new(
        creds.clone(),
        std::sync::Arc::new(env.engine.clone()),
        credentials::targets::TargetSettings::default(),
    );
    let verify = async || -> Result<verifier::Report> {
        let input = targets
            .resolve(&verifier::Target::ClientId(r.client_id.clone()))
            .await?;
        Ok(verifier::Verifier::new(env.client.clone())
            .verify(&input)
            .await)
    };
    let report = verify().await?;
    let check = report
        .checks
        .iter()
        .find(|c| c.name == verifier::report::names::APP_CREDENTIALS)
        .context("the app_credentials check")?;
    ensure!(check.status == verifier::Status::Ok, "{check:?}");
    ensure!(report.findings.iter().all(|f| f.kind() != "credential"));
    // A secret added by hand beside it is reported, by its key id.
    let (key_id, _) = env.secret_by_hand(&r.client_id).await?;
    let report = verify().await?;
    let foreign: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.kind() == "credential")
        .map(verifier::Finding::key)
        .collect();
    ensure!(
        foreign == [format!("credential/{key_id}/foreign")],
        "{foreign:?}"
    );
    Ok(())
}
