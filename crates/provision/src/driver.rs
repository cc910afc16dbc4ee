//! One onboarding's run from start to end: the steps in order, then the outcome recorded in
//! the store, the audit log and the events.

use std::sync::Arc;

use onboard_core::Purpose;
use onboard_core::audit::{Action, AuditEntry, Phase, Scope, Target, TargetKind};
use onboard_core::permissions::resolve_permissions;
use onboard_core::roles::Right;

use crate::error::ProvisionError;
use crate::events::{Completion, EventKind};
use crate::steps::{Run, ids};
use crate::store::{OnboardingRecord, Status};

/// The fields every audit entry of onboarding `rec` carries, with `actor` as the actor.
pub(crate) fn scope_of(rec: &OnboardingRecord, actor: &str) -> Scope {
    Scope {
        actor: actor.to_owned(),
        tenant_id: Some(rec.tenant_id.clone()),
        onboarding_id: Some(rec.id.clone()),
        service_id: Some(rec.service_id.clone()),
        client_id: rec.client_id.clone(),
    }
}

/// Runs the steps, then records the outcome.
pub(crate) async fn drive(run: Arc<Run>) {
    drive_unless(run, None).await;
}

/// [`drive`]; with `failed`, what stopped the run before its first step (a resumed run whose
/// admin sign-in could not be renewed), recorded as a step's failure is: audited, the run
/// `Failed`, the streams ended with the cause.
pub(crate) async fn drive_unless(run: Arc<Run>, failed: Option<ProvisionError>) {
    let id = run.id.clone();
    let result = match failed {
        Some(e) => Err(e),
        None => steps(&run).await,
    };
    let finish = |phase, error: Option<String>| {
        let run = run.clone();
        async move {
            let rec = run.snapshot().await;
            let mut entry = AuditEntry::new(
                Action::OnboardingFinish,
                phase,
                &scope_of(&rec, &run.scope.actor),
            )
            .with_target(Target::new(TargetKind::Onboarding, rec.id.clone()).named(rec.app_name))
            .with_request_ids(None, Some(rec.id.clone()));
            entry.error = error;
            entry.append(&run.inner.cfg.audit).await
        }
    };
    match result {
        Ok(Finish::AwaitingAdmin(rights)) => {
            if let Err(e) = crate::hand_off::begin(&run, rights).await {
                let _ = finish(Phase::Failed, Some(e.to_string())).await;
                fail(&run, e).await;
            }
        }
        Ok(Finish::Completed(mut completion)) => {
            let done = async {
                let mut rec = run.snapshot().await;
                if rec.hand_off.as_ref().is_some_and(|h| h.ended.is_none()) {
                    crate::hand_off::end(&run.inner, &mut rec, &run.scope.actor, true).await?;
                    run.update(|r| r.hand_off = rec.hand_off).await?;
                }
                finish(Phase::Succeeded, None).await?;
                run.update(|r| {
                    r.status = Status::Completed;
                    r.forget_sign_in();
                })
                .await
            };
            match done.await {
                Ok(()) => {
                    let rec = run.snapshot().await;
                    completion.secret = rec.secret.as_ref().and_then(|s| {
                        run.inner
                            .key
                            .open(&rec.id, Purpose::ClientSecret, &s.sealed)
                            .ok()
                    });
                    run.emitter.emit("", EventKind::Completed(completion));
                }
                Err(e) => fail(&run, e).await,
            }
        }
        // Shutdown, or a test's simulated crash: stop without another write; resumed later.
        Err(ProvisionError::Halted(step)) => {
            tracing::info!(onboarding_id = %id, step, "run stopped; it resumes at the next start");
        }
        Err(e) => {
            let _ = finish(Phase::Failed, Some(e.to_string())).await;
            fail(&run, e).await;
        }
    }
    // Forget our own handle (a later retry of the same id may already have replaced it).
    if let Ok(mut m) = run.inner.running.lock()
        && m.get(&id)
            .is_some_and(|h| h.is_finished() || h.id() == tokio::task::id())
    {
        m.remove(&id);
    }
}

async fn fail(run: &Run, e: ProvisionError) {
    let text = e.to_string();
    tracing::warn!(onboarding_id = %run.id, error = %text, "onboarding failed");
    if let Err(se) = run
        .update(|r| {
            r.status = Status::Failed;
            r.error = Some(text.clone());
        })
        .await
    {
        tracing::error!(error = %se, "could not record the failure");
    }
    run.emitter.emit("", EventKind::aborted(&e));
}

/// How a run's steps ended without an error.
enum Finish {
    /// Every step is confirmed.
    Completed(Completion),
    /// What the admin may do is done; the changes needing these rights wait for another admin.
    AwaitingAdmin(Vec<Right>),
}

async fn steps(run: &Arc<Run>) -> Result<Finish, ProvisionError> {
    let perms = match &run.seed {
        Some(seed) => seed.perms.clone(),
        None => {
            let profile = run.snapshot().await.profile;
            resolve_permissions(&run.graph, &profile, &run.read_ctx(ids::RESOLVE, false)).await?
        }
    };
    run.step(ids::APP, "create or update the app registration", || {
        run.app_registration(&perms)
    })
    .await?;
    // The service principal and the secret both need only the app; the grants need the service
    // principal and the sign-in check needs the secret (and a service principal to sign in as).
    // Each pair runs at once; both halves always finish (no change is cut off mid-call), then
    // the first error wins.
    let (sp, secret) = tokio::join!(
        run.step(ids::SP, "create the service principal", || {
            run.service_principal()
        }),
        run.step(ids::SECRET, "add the client secret", || run.client_secret())
    );
    sp.and(secret)?;
    let (self_rotation, lacking) = {
        let rec = run.snapshot().await;
        (rec.profile.self_rotation, rec.lacking)
    };
    // An admin who may do only part of the plan makes what they may; the rest waits.
    let (access_id, access_what) = if lacking.is_empty() {
        (
            ids::ACCESS,
            "grant permissions with admin consent and assign directory roles",
        )
    } else {
        (
            ids::ACCESS_ALLOWED,
            "grant the permissions and roles the signed-in admin may",
        )
    };
    let (access, verify, owner) = tokio::join!(
        run.step(access_id, access_what, || run
            .permissions_and_roles(&perms, &lacking)),
        run.step(ids::VERIFY, "check the new app authenticates", || {
            run.verify_authentication()
        }),
        async {
            if !self_rotation {
                return Ok(());
            }
            run.step(
                ids::OWNER,
                "make the app's service principal an owner of the app",
                || run.app_owner(),
            )
            .await
        }
    );
    access.and(verify).and(owner)?;
    if !lacking.is_empty() {
        // The temporary app stays: the privileged admin signs in through it too.
        return Ok(Finish::AwaitingAdmin(lacking));
    }
    // The admin-consent page's reply address served the wait only.
    if run.snapshot().await.consent_redirect_uri.is_some() {
        run.step(
            ids::CONSENT_REPLY,
            "remove the admin-consent reply address from the app",
            || run.remove_consent_reply(),
        )
        .await?;
    }
    // Last, as the vendor's flow does: the admin's token was issued to this app.
    run.step(ids::TOKEN_APP, "remove the temporary token app", || {
        run.remove_token_app()
    })
    .await?;
    let rec = run.snapshot().await;
    let secret = rec.secret.as_ref();
    Ok(Finish::Completed(Completion {
        tenant_id: rec.tenant_id.clone(),
        client_id: rec.client_id.clone().unwrap_or_default(),
        key_id: secret.map(|s| s.key_id.clone()).unwrap_or_default(),
        secret_hint: secret.and_then(|s| s.hint.clone()),
        expires: secret.and_then(|s| s.end_date_time.clone()),
        secret: None,
    }))
}
