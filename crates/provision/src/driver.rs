//! One onboarding's run from start to end: the steps in order, then the outcome recorded in
//! the store, the audit log and the events.

use std::sync::Arc;

use serde_json::json;

use crate::audit::{self, AuditScope, EntryParts, Phase, Target};
use crate::error::ProvisionError;
use crate::events::{Completion, EventKind};
use crate::plan::resolve_permissions;
use crate::steps::{Run, ids};
use crate::store::{OnboardingRecord, Status};

pub(crate) fn scope_of(rec: &OnboardingRecord, actor: &str) -> AuditScope {
    AuditScope {
        actor: actor.to_owned(),
        tenant_id: rec.tenant_id.clone(),
        onboarding_id: rec.id.clone(),
        service_id: rec.service_id.clone(),
    }
}

/// Runs the steps, then records the outcome.
pub(crate) async fn drive(run: Arc<Run>) {
    let id = run.scope.onboarding_id.clone();
    let result = steps(&run).await;
    let finish = |phase, error: Option<String>| {
        let run = run.clone();
        async move {
            let target = Target {
                kind: "onboarding",
                id: Some(run.scope.onboarding_id.clone()),
                display_name: run.snapshot().await.app_name,
            };
            audit::append(
                &run.inner.audit,
                &run.scope,
                EntryParts {
                    action: "onboarding.finish",
                    phase,
                    target: &target,
                    changes: json!([]),
                    graph_request_id: None,
                    correlation_id: &run.scope.onboarding_id,
                    error: error.as_deref(),
                },
            )
            .await
        }
    };
    match result {
        Ok(mut completion) => {
            let done = async {
                finish(Phase::Succeeded, None).await?;
                run.update(|r| r.status = Status::Completed).await
            };
            match done.await {
                Ok(()) => {
                    let rec = run.snapshot().await;
                    completion.secret = rec
                        .secret
                        .as_ref()
                        .and_then(|s| run.inner.key.open(&rec.id, "client_secret", &s.sealed).ok());
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
    tracing::warn!(onboarding_id = %run.scope.onboarding_id, error = %text, "onboarding failed");
    if let Err(se) = run
        .update(|r| {
            r.status = Status::Failed;
            r.error = Some(text.clone());
        })
        .await
    {
        tracing::error!(error = %se, "could not record the failure");
    }
    run.emitter.emit("", EventKind::Aborted { error: text });
}

async fn steps(run: &Arc<Run>) -> Result<Completion, ProvisionError> {
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
    let self_rotation = run.snapshot().await.profile.self_rotation;
    let (access, verify, owner) = tokio::join!(
        run.step(
            ids::ACCESS,
            "grant permissions with admin consent and assign directory roles",
            || run.permissions_and_roles(&perms),
        ),
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
    // Last, as the vendor's flow does: the admin's token was issued to this app.
    run.step(ids::TOKEN_APP, "remove the temporary token app", || {
        run.remove_token_app()
    })
    .await?;
    let rec = run.snapshot().await;
    let secret = rec.secret.as_ref();
    Ok(Completion {
        tenant_id: rec.tenant_id.clone(),
        client_id: rec.client_id.clone().unwrap_or_default(),
        key_id: secret.map(|s| s.key_id.clone()).unwrap_or_default(),
        secret_hint: secret.and_then(|s| s.hint.clone()),
        expires: secret.and_then(|s| s.end_date_time.clone()),
        secret: None,
    })
}
