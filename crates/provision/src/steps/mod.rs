//! The workflow steps. Each step checks Entra's state first, so re-running a step after a crash
//! converges instead of duplicating. Every Entra change goes through [`Run::change`]: audit
//! intent (fail closed) → call → audit outcome → only then may the step be reported done.

mod app;
mod finish;
mod grants;
mod reserved;
mod undo;

use std::future::Future;
use std::sync::Arc;

use entra_client::{CallMeta, EntraError, GraphClient, OpContext, Reply, RetryEvent, observer_fn};
use onboard_core::HookAction;
use onboard_core::audit::{self, Action, Described, EntraChange, Scope, Target};
use onboard_core::permissions::ResolvedPermission;
use uuid::Uuid;

use crate::engine::Inner;
use crate::error::ProvisionError;
use crate::events::{Emitter, EventKind};
use crate::store::OnboardingRecord;

/// Step ids (also the names in `steps_done` and in events).
pub(crate) mod ids {
    /// Reading the resources' app roles (no change; never marked done, always re-read).
    pub const RESOLVE: &str = "resolve_permissions";
    /// The app registration upsert.
    pub const APP: &str = "app_registration";
    /// The service principal.
    pub const SP: &str = "service_principal";
    /// The client secret.
    pub const SECRET: &str = "client_secret";
    /// All grants and role assignments (each also has its own `grant:` / `role:` id).
    pub const ACCESS: &str = "permissions_and_roles";
    /// The grants and role assignments the signed-in admin may make, when a privileged admin
    /// must make the rest ([`ACCESS`] runs in full after the hand-off).
    pub const ACCESS_ALLOWED: &str = "permissions_and_roles_allowed";
    /// Removing the temporary `-token` enterprise app.
    pub const TOKEN_APP: &str = "temporary_app_removal";
    /// The client-credentials check with the new secret.
    pub const VERIFY: &str = "verify_authentication";
    /// The app's service principal as an owner of the app (self-rotating profiles only).
    pub const OWNER: &str = "app_owner";
    /// Removing the reply address the app was given for Microsoft's admin-consent page
    /// (hand-offs whose first admin could not grant Microsoft Graph permissions only).
    pub const CONSENT_REPLY: &str = "consent_reply_removal";

    /// The sub-step of [`ACCESS`] that grants permission `key`.
    pub fn grant(key: &str) -> String {
        format!("grant:{key}")
    }

    /// The sub-step of [`ACCESS`] that assigns directory role `name`.
    pub fn role(name: &str) -> String {
        format!("role:{name}")
    }

    /// The step as a metric label (`onboard_step_duration_seconds{step}`): one of the fixed
    /// top-level names above, never a sub-step's (which names a permission or a role).
    pub fn label(step: &str) -> &'static str {
        match top_level(step) {
            RESOLVE => RESOLVE,
            APP => APP,
            SP => SP,
            SECRET => SECRET,
            ACCESS => ACCESS,
            ACCESS_ALLOWED => ACCESS_ALLOWED,
            TOKEN_APP => TOKEN_APP,
            VERIFY => VERIFY,
            OWNER => OWNER,
            CONSENT_REPLY => CONSENT_REPLY,
            _ => "other",
        }
    }

    /// The top-level step a step id belongs to (a sub-step's is [`ACCESS`]).
    pub fn top_level(step: &str) -> &str {
        if step.starts_with("grant:") || step.starts_with("role:") {
            ACCESS
        } else {
            step
        }
    }
}

/// One onboarding being worked on: the engine, the admin's Graph client, the audit scope, the
/// event emitter and the record (behind a lock: grant tasks update it concurrently).
pub(crate) struct Run {
    /// Engine internals (Entra client, audit log, store, key, settings).
    pub inner: Arc<Inner>,
    /// Graph acting as the signed-in admin.
    pub graph: GraphClient,
    /// The onboarding's id.
    pub id: String,
    /// Fields every audit entry of this onboarding carries.
    pub scope: Scope,
    /// Numbered, persisted progress events.
    pub emitter: Arc<Emitter>,
    /// The durable state; written through [`Run::update`].
    pub rec: tokio::sync::Mutex<OnboardingRecord>,
    /// What the plan read just before a fresh start (absent on resume: then steps read again).
    pub seed: Option<Seed>,
}

/// Reads the plan made moments before `provision` started the run, handed over so the first
/// run does not repeat them.
pub(crate) struct Seed {
    /// The profile's permissions resolved to app role ids.
    pub perms: Vec<ResolvedPermission>,
    /// Temporary token apps found: (service principal id, app id).
    pub token_apps: Vec<(String, String)>,
    /// Their display name in the tenant (the provider app's own name), for messages.
    pub token_app_name: Option<String>,
}

/// One Entra change as the audit log describes it.
pub(crate) struct Change<'a> {
    /// Step id, for events and errors.
    pub step: &'a str,
    /// Audit action, e.g. [`Action::ServicePrincipalCreate`].
    pub action: Action,
    /// Target object (id unknown yet for creates).
    pub target: Target,
    /// Intended property changes.
    pub changes: Vec<audit::Change>,
    /// Whether the call depends on a just-made object (replication-lag retries on).
    pub after_create: bool,
}

/// What a finished step reports.
pub(crate) struct StepOutcome {
    /// Human text for the Done event.
    pub detail: String,
    /// Audit indexes of the outcome entries written.
    pub audit_seqs: Vec<u64>,
}

impl StepOutcome {
    /// A step that found nothing to change.
    pub fn unchanged(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            audit_seqs: vec![],
        }
    }
}

impl Run {
    /// An OpContext with a fresh client-request-id whose retries become `Retrying` events.
    pub fn op_ctx(&self, step: &str, crid: Uuid, after_create: bool) -> OpContext {
        let emitter = self.emitter.clone();
        let step = step.to_owned();
        let ctx = OpContext::new()
            .with_client_request_id(crid)
            .with_observer(observer_fn(move |e: &RetryEvent| {
                emitter.emit(
                    &step,
                    EventKind::Retrying {
                        operation: e.operation.to_owned(),
                        attempt: e.attempt,
                        reason: e.reason.to_string(),
                        kind: e.reason.kind(),
                        wait_ms: u64::try_from(e.wait.as_millis()).unwrap_or(u64::MAX),
                    },
                );
            }));
        if after_create {
            ctx.after_create()
        } else {
            ctx
        }
    }

    /// A read-only context for `step`. `may_lag`: the object read was created by this
    /// onboarding moments ago, so a 404 may be replication lag and is retried; otherwise a 404
    /// is an answer (entra-reference §6: lag only right after a create).
    pub fn read_ctx(&self, step: &str, may_lag: bool) -> OpContext {
        self.op_ctx(step, Uuid::new_v4(), may_lag)
    }

    /// Whether reads and writes of this onboarding's app may still meet replication lag: only
    /// when this onboarding made it (or may have: it began making it and never learnt the
    /// answer), and either no later step has proven it replicated (the sign-in check with its
    /// secret) or it was made moments ago ([`crate::store::LAG_WINDOW_MS`]): the sign-in
    /// service knowing it does not mean every Graph replica does.
    pub async fn app_may_lag(&self) -> bool {
        let rec = self.rec.lock().await;
        let made_here = rec.fresh_app
            || rec.app_may_be_new
            || (rec.app_object_id.is_none() && rec.attempted.contains(ids::APP));
        made_here && Self::unsettled(&rec)
    }

    /// Whether reads of this onboarding's service principal may still meet replication lag:
    /// only when the service principal step created it (it began a change), as for the app.
    pub async fn sp_may_lag(&self) -> bool {
        let rec = self.rec.lock().await;
        rec.attempted.contains(ids::SP) && Self::unsettled(&rec)
    }

    /// Whether what this onboarding made may not have reached every replica yet.
    fn unsettled(rec: &OnboardingRecord) -> bool {
        !rec.done(ids::VERIFY) || rec.made_recently(onboard_core::time::now_ms())
    }

    /// Applies `f` to the record and writes it to disk.
    pub async fn update(
        &self,
        f: impl FnOnce(&mut OnboardingRecord),
    ) -> Result<(), ProvisionError> {
        let mut rec = self.rec.lock().await;
        f(&mut rec);
        rec.updated_at = onboard_core::time::now();
        self.inner.store.put(&rec).await
    }

    /// Applies `f` to the record in memory only. For facts a resumed run finds again in Entra
    /// (its steps read first once attempted): the step's `mark_done` write persists them, so a
    /// step costs one disk flush instead of two.
    pub async fn note(&self, f: impl FnOnce(&mut OnboardingRecord)) {
        f(&mut *self.rec.lock().await);
    }

    /// Whether `step` must read Entra before changing it: unless the app is one this onboarding
    /// created and the step has never begun a change, something may already be there.
    pub async fn must_check(&self, step: &str) -> bool {
        let rec = self.rec.lock().await;
        !rec.fresh_app || rec.attempted.contains(step)
    }

    /// Records (durably) that `step` is about to make its first Entra change.
    pub async fn mark_attempted(&self, step: &str) -> Result<(), ProvisionError> {
        if self.rec.lock().await.attempted.contains(step) {
            return Ok(());
        }
        self.update(|r| {
            r.attempted.insert(step.to_owned());
        })
        .await
    }

    /// A copy of the record.
    pub async fn snapshot(&self) -> OnboardingRecord {
        self.rec.lock().await.clone()
    }

    /// One audited Entra change through [`audit::audited_change`]: the intent entry and the
    /// step's "attempted" mark are durable before the call; its retries become `Retrying`
    /// events; the outcome entry is durable before this returns. Returns the value and the
    /// outcome's audit index; errors after the call carry the Entra error.
    pub async fn change<T, Fut>(
        &self,
        spec: Change<'_>,
        call: impl FnOnce(OpContext) -> Fut,
        describe: impl FnOnce(&T) -> (Option<String>, Vec<audit::Change>),
    ) -> Result<(T, u64), ProvisionError>
    where
        Fut: Future<Output = Result<Reply<T>, EntraError>>,
    {
        let Change {
            step,
            action,
            target,
            changes,
            after_create,
        } = spec;
        self.check_not_stopping()?;
        // The run's scope was fixed before the app existed: its client id, once the app step
        // recorded it, goes on every later change (docs/audit-entries.md, `client_id`).
        let known = self.rec.lock().await.client_id.clone();
        let scope = Scope {
            client_id: self.scope.client_id.clone().or(known),
            ..self.scope.clone()
        };
        let done = audit::audited_change(
            &self.inner.cfg.audit,
            &scope,
            EntraChange {
                action,
                target,
                changes,
            },
            self.mark_attempted(ids::top_level(step)),
            |crid| self.op_ctx(step, crid, after_create),
            call,
            |v| {
                let (id, changes) = describe(v);
                Described { id, changes }
            },
        )
        .await;
        match done {
            Ok(out) => {
                // Lets tests simulate a crash after Entra changed but before the step is
                // confirmed: the window where only "check Entra first" prevents duplicates.
                self.hook(&format!("{step}:changed")).await?;
                Ok(out)
            }
            Err(e) => Err(e.into_error(|e| ProvisionError::entra(step, e))),
        }
    }

    /// Runs top-level step `id` unless the record says it is confirmed: Started, the work,
    /// mark done + flush, Done, then the test hook.
    pub async fn step<Fut>(
        &self,
        id: &str,
        description: &str,
        work: impl FnOnce() -> Fut,
    ) -> Result<(), ProvisionError>
    where
        Fut: Future<Output = Result<StepOutcome, ProvisionError>>,
    {
        if self.rec.lock().await.done(id) {
            return Ok(());
        }
        self.emitter.emit(
            id,
            EventKind::Started {
                description: description.to_owned(),
            },
        );
        let started = std::time::Instant::now();
        let span = tracing::info_span!("step", otel.name = id, step = id, onboarding_id = %self.id);
        let result = tracing::Instrument::instrument(work(), span).await;
        // Steps that finished, failed or not; a halted one (shutdown) is resumed, not timed.
        if !matches!(result, Err(ProvisionError::Halted(_))) {
            metrics::histogram!("onboard_step_duration_seconds", "step" => ids::label(id))
                .record(started.elapsed().as_secs_f64());
        }
        match result {
            Ok(out) => {
                self.update(|r| r.mark_done(id)).await?;
                self.emitter.emit(
                    id,
                    EventKind::Done {
                        detail: out.detail,
                        audit_seqs: out.audit_seqs,
                    },
                );
                self.hook(id).await
            }
            // A stopped run (shutdown, or a test's simulated crash) reports nothing: it has not
            // failed, it will be resumed.
            Err(e @ ProvisionError::Halted(_)) => Err(e),
            Err(e) => {
                self.emitter.emit(id, EventKind::failed(&e));
                Err(e)
            }
        }
    }

    /// Refuses to begin an Entra change once shutdown has begun.
    pub fn check_not_stopping(&self) -> Result<(), ProvisionError> {
        if self.inner.cfg.shutdown.is_shutdown() {
            return Err(ProvisionError::Halted("shutdown".into()));
        }
        Ok(())
    }

    /// Asks the test hook what to do after a confirmed step (`step`) or right after an audited
    /// Entra change (`step:changed`).
    async fn hook(&self, step: &str) -> Result<(), ProvisionError> {
        let Some(hook) = self.inner.hook() else {
            return Ok(());
        };
        match hook(&self.id, step) {
            HookAction::Continue => Ok(()),
            HookAction::Halt => Err(ProvisionError::Halted(step.to_owned())),
            HookAction::Fail => Err(ProvisionError::Store(format!(
                "injected failure after step {step}"
            ))),
        }
    }
}

/// Call facts for a change that was not a Graph call (the STS check).
pub(crate) fn sts_meta(crid: &str, request_id: Option<String>) -> CallMeta {
    CallMeta {
        status: 200,
        request_id,
        client_request_id: crid.to_owned(),
        attempts: 1,
        deleted_by_earlier_attempt: false,
    }
}
