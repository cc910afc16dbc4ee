//! Rotations and their callers: a new secret is made current only once a RotateSecret caller
//! confirmed it was sent it, and a caller slow to confirm holds up no other change; a rotation
//! whose caller went away waits before the hand-over for the next caller, auto-rotation
//! finishes it, and revoking its new secret ends it.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use credentials::{Credentials, CredentialsError, RegistrationRef, RotationEvent, RotationStage};
use onboard_core::{Hook, HookAction};
use secrecy::ExposeSecret;
use testkit::creds::{manager, start_ready};
use testkit::engine::EngineEnv;

const REMOVES: &str = "POST removePassword";
/// The operator of day-two changes.
const ACTOR: &str = "spiffe://platform.test/operator";

/// A rotation of `svc` whose caller stops listening once the new secret is validated (a hook
/// drops its receiver then): it stops before the hand-over.
async fn caller_gone_after_validate(env: &EngineEnv, r: &RegistrationRef, svc: &str) -> Result<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<RotationEvent>();
    let listener = std::sync::Mutex::new(Some(rx));
    let hook: Hook = std::sync::Arc::new(move |_: &str, point: &str| {
        if point == "validate" {
            drop(listener.lock().map(|mut l| l.take()));
        }
        HookAction::Continue
    });
    let e = manager(env, Some(hook))?
        .rotate(r, svc, Duration::ZERO, ACTOR, Some(tx))
        .await
        .err();
    ensure!(
        matches!(e, Some(CredentialsError::AwaitsCaller(_))),
        "{e:?}"
    );
    Ok(())
}

/// A RotateSecret of `svc` (overlap 0) by a caller, run in a task: the task, and the events
/// the caller is sent (it must answer the hand-over's `confirm`).
fn rotate_by_caller(
    creds: &Credentials,
    r: &RegistrationRef,
    svc: &'static str,
) -> (
    tokio::task::JoinHandle<Result<(), CredentialsError>>,
    tokio::sync::mpsc::UnboundedReceiver<RotationEvent>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<RotationEvent>();
    let (creds, r) = (creds.clone(), r.clone());
    let run =
        tokio::spawn(async move { creds.rotate(&r, svc, Duration::ZERO, ACTOR, Some(tx)).await });
    (run, rx)
}

/// The new key of `svc`'s rotation, checked to be waiting before its hand-over with the secret
/// `old` still current.
fn waiting(creds: &Credentials, r: &RegistrationRef, svc: &str, old: &str) -> Result<String> {
    let state = creds.registration(r)?.rotations.get(svc).cloned();
    let state = state.context("the rotation stays stored")?;
    ensure!(state.stage == RotationStage::HandingOver, "{state:?}");
    let (cur, _) = creds.current_secret(r, svc)?;
    ensure!(cur.key_id == old, "made current without a caller");
    state.new_key.context("the new secret is stored")
}

/// A caller that goes away before the hand-over (its stream broke) is not handed a secret it may
/// never have got: the rotation stops there with the old secret current and working, a restart
/// leaves it so, and the next caller resumes it, gets the same new secret and hands it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_caller_went_away_waits_for_the_next_caller_to_hand_over() -> Result<()> {
    let (env, creds, r) = start_ready("gone").await?;
    let svc = "svc-gone";
    let (old, old_value) = creds.current_secret(&r, svc)?;
    let removes_before = env.sim.calls(REMOVES);
    caller_gone_after_validate(&env, &r, svc).await?;
    let new_key = waiting(&creds, &r, svc, &old.key_id)?;
    // A restarted server drives what is left up to the same point, not past it.
    let failed = manager(&env, None)?.resume_all().await?;
    ensure!(failed.is_empty(), "{failed:?}");
    ensure!(waiting(&creds, &r, svc, &old.key_id)? == new_key);
    ensure!(env.authenticates(&r.client_id, &old_value).await);
    ensure!(env.sim.calls(REMOVES) == removes_before, "the old one went");

    // The next caller follows the events as they come and confirms the hand-over.
    let (run, mut rx) = rotate_by_caller(&creds, &r, svc);
    let mut stages = Vec::new();
    let mut handed = None;
    while let Some(mut ev) = rx.recv().await {
        stages.push((ev.stage, ev.done));
        if let Some(confirm) = ev.confirm.take() {
            let _ = confirm.send(());
        }
        handed = ev.new_secret.or(handed);
    }
    run.await??;
    ensure!(
        stages.ends_with(&[
            ("hand_over", true),
            ("remove_old", false),
            ("remove_old", true)
        ]),
        "{stages:?}"
    );
    let handed = handed.context("the resuming caller gets the new secret")?;
    ensure!(
        handed.info.key_id.eq_ignore_ascii_case(&new_key),
        "{handed:?}"
    );
    let (cur, cur_value) = creds.current_secret(&r, svc)?;
    ensure!(cur.key_id.eq_ignore_ascii_case(&new_key));
    ensure!(cur_value.expose_secret() == handed.value.expose_secret());
    ensure!(env.authenticates(&r.client_id, &cur_value).await);
    ensure!(!env.authenticates(&r.client_id, &old_value).await);
    ensure!(env.sim.calls(REMOVES) == removes_before + 1);
    Ok(())
}

/// RevokeSecret of a rotation's new secret before the hand-over is how a rotation that cannot
/// finish (Conditional Access refusing its validation, say) is ended: refused while the rotation
/// is driven, it then ends the rotation (recorded under its id, by the revoker), removes the new
/// secret, and leaves the old one current; the next rotation starts afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_rotations_new_secret_before_the_hand_over_ends_the_rotation() -> Result<()> {
    let (env, _, r) = start_ready("end").await?;
    let (svc, revoker) = ("svc-end", "spiffe://platform.test/other-operator");
    // The first driver stops after the add until the test lets it go on, then halts (a crash).
    let (reached, at_add) = std::sync::mpsc::channel();
    let (go_on, release) = std::sync::mpsc::channel::<()>();
    let release = std::sync::Mutex::new(release);
    let fired = std::sync::atomic::AtomicBool::new(false);
    let hook: Hook = std::sync::Arc::new(move |_: &str, point: &str| {
        if point != "add" || fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return HookAction::Continue;
        }
        let _ = reached.send(());
        let _ = release.lock().map(|r| r.recv());
        HookAction::Halt
    });
    // One manager, as in the server: it knows which rotations it drives.
    let creds = manager(&env, Some(hook))?;
    let driver = creds.clone();
    let reg_id = creds.registration(&r)?.id;
    let (old, old_value) = creds.current_secret(&r, svc)?;
    let (r2, svc2) = (r.clone(), svc.to_owned());
    let run =
        tokio::spawn(async move { driver.rotate(&r2, &svc2, Duration::ZERO, ACTOR, None).await });
    let at_add = tokio::task::spawn_blocking(move || at_add.recv());
    tokio::time::timeout(Duration::from_secs(60), at_add).await???;
    let new_key = creds.registration(&r)?.rotations[svc]
        .new_key
        .clone()
        .context("the new secret is stored")?;
    let e = creds.revoke(&r, &new_key, revoker).await.err();
    ensure!(
        matches!(&e, Some(CredentialsError::FailedPrecondition(m)) if m.contains("running now")),
        "{e:?}"
    );
    go_on.send(())?;
    ensure!(matches!(run.await?, Err(CredentialsError::Halted(_))));
    // Stored before its hand-over, which would replace a secret added now: refused.
    let e = creds.add_secret(&r, svc, None, ACTOR).await.err();
    ensure!(
        matches!(&e, Some(CredentialsError::FailedPrecondition(m)) if m.contains(&new_key)),
        "{e:?}"
    );

    let removes_before = env.sim.calls(REMOVES);
    let seq = creds.revoke(&r, &new_key, revoker).await?;
    ensure!(seq.is_some(), "the new secret's removal is audited");
    ensure!(creds.pending_rotations()?.is_empty());
    ensure!(env.sim.calls(REMOVES) == removes_before + 1);
    let (cur, _) = creds.current_secret(&r, svc)?;
    ensure!(cur.key_id == old.key_id);
    ensure!(env.authenticates(&r.client_id, &old_value).await);
    let listed: Vec<_> = creds
        .list_secrets(&r)?
        .into_iter()
        .map(|s| s.key_id)
        .collect();
    ensure!(listed == [old.key_id.clone()], "{listed:?}");
    let entries = env.audit_entries(&reg_id)?;
    let ended = entries
        .iter()
        .filter(|e| e["action"] == "secret.rotate" && e["phase"] == "failed")
        .collect::<Vec<_>>();
    ensure!(
        ended.len() == 1
            && ended[0]["actor"] == revoker
            && ended[0]["error"]
                .as_str()
                .is_some_and(|m| m.contains("revoked")),
        "{ended:?}"
    );
    // Its intent and this end pair under the rotation's id (no intent is left open).
    let pairs = testkit::audit::change_pairs(&entries, &reg_id)?;
    ensure!(!pairs.contains_key("secret.rotate"), "{pairs:?}");

    creds.rotate(&r, svc, Duration::ZERO, ACTOR, None).await?;
    let (cur, _) = creds.current_secret(&r, svc)?;
    ensure!(cur.key_id != old.key_id && cur.key_id != new_key);
    Ok(())
}

/// Auto-rotation (no caller) finishes a rotation a caller left waiting, so a waiting rotation
/// never keeps an expiring secret current: the platform joins it during the overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_rotation_takes_over_a_rotation_left_waiting_for_its_caller() -> Result<()> {
    let (env, creds, r) = start_ready("auto").await?;
    let svc = "svc-auto";
    let (old, _) = creds.current_secret(&r, svc)?;
    caller_gone_after_validate(&env, &r, svc).await?;
    let new_key = waiting(&creds, &r, svc, &old.key_id)?;
    creds
        .rotate(&r, svc, Duration::ZERO, "system:auto-rotate", None)
        .await?;
    ensure!(creds.pending_rotations()?.is_empty());
    let (cur, _) = creds.current_secret(&r, svc)?;
    ensure!(cur.key_id.eq_ignore_ascii_case(&new_key) && cur.key_id != old.key_id);
    Ok(())
}

/// A caller slow to confirm the hand-over holds up no other change of the registration: while
/// the rotation waits for the answer (up to 30 s), another service gets a new secret at once
/// (the add takes the registration's lock), the old secret stays current, and the rotation
/// hands over when the caller answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_slow_to_confirm_holds_up_no_other_change_of_the_registration() -> Result<()> {
    let (env, creds, r) = start_ready("slow").await?;
    let svc = "svc-slow";
    let (old, _) = creds.current_secret(&r, svc)?;
    let (run, mut rx) = rotate_by_caller(&creds, &r, svc);
    // The caller reads up to the hand-over's question and keeps its answer back.
    let confirm = loop {
        let mut ev = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await?
            .context("the rotation ended before its hand-over")?;
        if let Some(confirm) = ev.confirm.take() {
            break confirm;
        }
    };
    let other = tokio::time::timeout(
        Duration::from_secs(10),
        creds.add_secret(&r, "svc-other", None, ACTOR),
    )
    .await
    .context("the add waited for the rotation's caller")??;
    ensure!(env.authenticates(&r.client_id, &other.value).await);
    let (cur, _) = creds.current_secret(&r, svc)?;
    ensure!(
        cur.key_id == old.key_id,
        "made current before the caller answered"
    );
    let _ = confirm.send(());
    while rx.recv().await.is_some() {}
    run.await??;
    let (cur, _) = creds.current_secret(&r, svc)?;
    ensure!(cur.key_id != old.key_id, "not handed over after the answer");
    Ok(())
}
