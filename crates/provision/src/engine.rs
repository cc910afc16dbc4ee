//! The engine: starts, resumes, watches and cancels onboardings. One per process; it owns the
//! workflow store and shares the Entra client and the audit log with the rest of the service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use entra_client::{GraphClient, TokenSet};
use onboard_core::audit::{Action, AuditEntry, Phase, Target, TargetKind, set};
use onboard_core::roles::Right;
use onboard_core::{HookAction, Purpose, ResolvedProfile, SealingKey};
use secrecy::SecretString;
use tokio::sync::{broadcast, mpsc};
use zeroize::Zeroizing;

pub(crate) use crate::config::Inner;
pub use crate::config::{EngineConfig, PlanRequest, ProvisionRequest, StepHook};
use crate::driver::{drive, drive_unless, scope_of};
use crate::error::ProvisionError;
use crate::events::{self, Emitter, EventStream};
use crate::hand_off::{AdminToken, Stored};
use crate::names::{self, validate_name};
use crate::plan;
use crate::signin::{Admin, check_sign_in};
use crate::steps::{Run, Seed};
use crate::store::{OnboardingRecord, Status, Store, WaitEndHow};
use crate::view::{ListFilter, Onboarding};

/// The onboarding workflow engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    /// Shared state.
    pub(crate) inner: Arc<Inner>,
}

fn check_id(id: &str) -> Result<(), ProvisionError> {
    if id.is_empty() || id.len() > 128 || id.contains('/') || id.chars().any(char::is_control) {
        return Err(ProvisionError::InvalidState {
            id: id.to_owned(),
            state: "invalid".into(),
            what: "onboarding ids are 1-128 characters without '/'".into(),
        });
    }
    Ok(())
}

impl Engine {
    /// Builds an engine. Call [`Engine::resume_all`] after start-up.
    pub fn new(mut cfg: EngineConfig) -> Result<Self, ProvisionError> {
        let (hub, _) = broadcast::channel(1024);
        // The sealing key holds it from here on; the configuration keeps zeros.
        let key = SealingKey::new(std::mem::replace(
            &mut cfg.secret_key,
            Zeroizing::new([0; 32]),
        ));
        let mac = cfg.record_mac.take().unwrap_or_else(|| key.record_mac());
        cfg.concurrency = cfg.concurrency.max(1);
        cfg.token_app_client_id = cfg.token_app_client_id.filter(|c| !c.trim().is_empty());
        cfg.consent_redirect_uri = cfg.consent_redirect_uri.filter(|u| !u.trim().is_empty());
        Ok(Self {
            inner: Arc::new(Inner {
                store: Store::new(cfg.store.clone(), mac),
                key,
                hub,
                running: Mutex::new(HashMap::new()),
                undoing: Mutex::new(Default::default()),
                names: tokio::sync::Mutex::new(()),
                consent_nudge: tokio::sync::Notify::new(),
                hook: std::sync::RwLock::new(cfg.hook.take()),
                cfg,
            }),
        })
    }

    /// Checks a device-code sign-in (see [`check_sign_in`]).
    pub async fn sign_in(
        &self,
        tokens: &TokenSet,
        expected_upn: &str,
        expected_tenant: Option<&str>,
    ) -> Result<Admin, ProvisionError> {
        check_sign_in(&self.inner.cfg.entra, tokens, expected_upn, expected_tenant).await
    }

    /// [`ProvisionError::InvalidState`] ("already running; watch it instead") when onboarding
    /// `id` runs now: a Provision that is not a repeat of the one that started it.
    pub fn refuse_running(&self, id: &str) -> Result<(), ProvisionError> {
        if self.is_running(id) {
            return Err(ProvisionError::InvalidState {
                id: id.to_owned(),
                state: "running".into(),
                what: "it is already running; watch it instead".into(),
            });
        }
        Ok(())
    }

    /// Starts (or retries a failed) onboarding and returns its live events, the secret included
    /// in the final `Completed`. Refuses before any change when a name rule is broken or the
    /// admin lacks a right the plan needs (fail closed), and when the start cannot be audited.
    pub async fn provision(
        &self,
        req: ProvisionRequest,
        admin: Admin,
    ) -> Result<EventStream, ProvisionError> {
        check_id(&req.onboarding_id)?;
        // A running onboarding is said to be one before the request's other faults, which a
        // watch would not have (checked again below, under the lock, for a start racing this).
        self.refuse_running(&req.onboarding_id)?;
        validate_name(&req.app_name)?;
        // The key of this onboarding's app: a retry keeps the one its record holds.
        let unique = match self.inner.store.get(&req.onboarding_id)? {
            Some(r) => r.unique_name,
            None => plan::unique_name(&admin.tenant_id, &req.app_name, &req.onboarding_id),
        };
        let (plan, seed) = self
            .plan_and_seed(
                &admin,
                &PlanRequest {
                    app_name: req.app_name.clone(),
                    profile: req.profile.clone(),
                    platform_version: req.platform_version.clone(),
                },
                Some(unique),
            )
            .await?;
        // What the admin lacks is left for a privileged admin when it can be handed off.
        let lacking: Vec<Right> = plan.missing_rights.iter().map(|m| m.right).collect();
        if !lacking.is_empty() && !self.hands_off(&plan) {
            return Err(ProvisionError::MissingRights {
                missing: plan.missing_lines(),
            });
        }
        let guard = self.inner.names.lock().await;
        self.refuse_running(&req.onboarding_id)?;
        self.check_name_free(&req.onboarding_id, &admin.tenant_id, &req.app_name)?;
        let name_key = names::name_key(&req.app_name);
        let now = onboard_core::time::now();
        let mut rec = match self.inner.store.get(&req.onboarding_id)? {
            Some(r)
                if matches!(
                    r.status,
                    Status::Failed | Status::Running | Status::AwaitingAdmin
                ) =>
            {
                if r.tenant_id != admin.tenant_id || r.name_key != name_key {
                    return Err(ProvisionError::InvalidState {
                        id: r.id,
                        state: r.status.as_str().into(),
                        what: "a retry must use the same tenant and name".into(),
                    });
                }
                r
            }
            Some(r) => {
                return Err(ProvisionError::InvalidState {
                    id: r.id,
                    state: r.status.as_str().into(),
                    what: "it cannot be provisioned again".into(),
                });
            }
            None => OnboardingRecord {
                id: req.onboarding_id.clone(),
                service_id: req.service_id.clone(),
                tenant_id: admin.tenant_id.clone(),
                app_name: req.app_name.clone(),
                name_key,
                unique_name: plan.unique_name.clone(),
                profile: plan.profile.clone(),
                actor: req.actor.clone(),
                admin_upn: admin.upn.clone(),
                status: Status::Running,
                created_at: now.clone(),
                updated_at: now.clone(),
                app_object_id: None,
                client_id: None,
                sp_id: None,
                secret: None,
                grants: Default::default(),
                role_assignments: Default::default(),
                steps_done: vec![],
                fresh_app: false,
                app_may_be_new: false,
                made_at_ms: None,
                attempted: Default::default(),
                sealed_admin_token: None,
                admin_token_expires_at: None,
                sealed_admin_refresh: None,
                lacking: vec![],
                hand_off: None,
                consent_redirect_uri: None,
                error: None,
            },
        };
        if rec.status == Status::AwaitingAdmin {
            // This Provision ends the wait: its hand-off links end with it, but the caller's.
            crate::hand_off::note_end(&mut rec, &req.actor, WaitEndHow::Provisioned);
        }
        rec.status = Status::Running;
        rec.error = None;
        rec.actor = req.actor.clone();
        rec.admin_upn = admin.upn.clone();
        rec.updated_at = now;
        self.seal_admin_tokens(
            &mut rec,
            &admin.access_token,
            admin.refresh_token.as_ref(),
            admin.access_expires_at,
        )?;
        rec.lacking = lacking;
        let scope = scope_of(&rec, &req.actor);
        // Fail closed: no record and no change unless the start is on the audit log.
        let planned: Vec<String> = plan
            .changes
            .iter()
            .filter(|c| c.operation != "none")
            .map(|c| format!("{} {}", c.action, c.target))
            .collect();
        AuditEntry::new(Action::OnboardingStart, Phase::Intent, &scope)
            .with_target(Target::new(TargetKind::Onboarding, rec.id.clone()).named(&rec.app_name))
            .with_changes(vec![set("plan", planned)])
            .with_request_ids(None, Some(rec.id.clone()))
            .append(&self.inner.cfg.audit)
            .await?;
        self.inner.store.put(&rec).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.spawn(self.run_for(
            rec,
            self.admin_graph(&admin),
            &req.actor,
            Some(tx),
            Some(seed),
        )?)?;
        drop(guard);
        if let Some(hook) = self.inner.hook() {
            hook(&req.onboarding_id, "provision:started");
        }
        Ok(EventStream::new(rx))
    }

    /// Replaces the test hook ([`EngineConfig::hook`]) of this engine: a test of a program that
    /// builds its engine itself (the server) sets it afterwards. `None` in production.
    pub fn set_hook(&self, hook: Option<StepHook>) {
        let mut slot = self
            .inner
            .hook
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = hook;
    }

    /// Asks the test hook ([`EngineConfig::hook`]) about `point` of onboarding `id` outside
    /// a run: for a program's own points (the server's `sign_in:outcome`), so its tests can
    /// hold it there. `Continue` without a hook, as in production.
    pub fn at_hook_point(&self, id: &str, point: &str) -> HookAction {
        self.inner
            .hook()
            .map_or(HookAction::Continue, |hook| hook(id, point))
    }

    /// Whether `id`'s undo runs now. A record `Cancelling` without one is an undo that failed
    /// (or was cut off by a crash): cancelling it again finishes it.
    pub fn is_undoing(&self, id: &str) -> bool {
        self.inner
            .undoing
            .lock()
            .map(|s| s.contains(id))
            .unwrap_or(false)
    }

    pub(crate) fn is_running(&self, id: &str) -> bool {
        self.inner
            .running
            .lock()
            .map(|m| m.get(id).is_some_and(|h| !h.is_finished()))
            .unwrap_or(false)
    }

    /// A Graph client acting as `admin`, renewing its sign-in as needed ([`Admin::graph`]).
    pub(crate) fn admin_graph(&self, admin: &Admin) -> GraphClient {
        let token_app = self.inner.cfg.token_app_client_id.as_deref();
        admin.graph(&self.inner.cfg.entra, token_app)
    }

    /// A Graph client acting with the fixed access `token` (renewed by the caller).
    pub(crate) fn token_graph(&self, token: SecretString) -> GraphClient {
        self.inner.cfg.entra.graph(token)
    }

    /// A Graph client acting as `rec`'s admin with `token` (the record's own, just read or
    /// redeemed), renewed from the record's sealed refresh token as it runs out, as a run
    /// Provision started is ([`Admin::graph`]): a resumed or continued run may outlive it.
    pub(crate) fn record_graph(
        &self,
        rec: &OnboardingRecord,
        token: AdminToken,
    ) -> Result<GraphClient, ProvisionError> {
        let refresh = rec
            .sealed_admin_refresh
            .as_deref()
            .filter(|_| token.renewable)
            .map(|sealed| {
                self.inner
                    .key
                    .open(&rec.id, Purpose::AdminRefreshToken, sealed)
            })
            .transpose()?;
        let cfg = &self.inner.cfg;
        Ok(crate::signin::user_graph(
            &cfg.entra,
            cfg.token_app_client_id.as_deref(),
            &rec.tenant_id,
            token.access,
            refresh,
            rec.admin_token_expires_at.unwrap_or(0),
        ))
    }

    pub(crate) fn run_for(
        &self,
        rec: OnboardingRecord,
        graph: GraphClient,
        actor: &str,
        direct: Option<mpsc::UnboundedSender<events::Event>>,
        seed: Option<Seed>,
    ) -> Result<Arc<Run>, ProvisionError> {
        let emitter = Emitter::new(
            &rec.id,
            self.inner.store.clone(),
            self.inner.hub.clone(),
            direct,
        )?;
        Ok(Arc::new(Run {
            id: rec.id.clone(),
            inner: self.inner.clone(),
            graph,
            scope: scope_of(&rec, actor),
            emitter,
            rec: tokio::sync::Mutex::new(rec),
            seed,
        }))
    }

    /// Starts `run` (made by [`Self::run_for`]) as a tracked task.
    pub(crate) fn spawn(&self, run: Arc<Run>) -> Result<(), ProvisionError> {
        let (id, actor) = (run.id.clone(), run.scope.actor.clone());
        self.spawn_task(id, &actor, drive(run))
    }

    /// Starts `task`, the run of onboarding `id` (or what leads to it), as that run.
    fn spawn_task(
        &self,
        id: String,
        actor: &str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ProvisionError> {
        let mut map = self
            .inner
            .running
            .lock()
            .map_err(|_| ProvisionError::Store("running map poisoned".into()))?;
        // Tracked by the shutdown primitive: a stop gives the run its grace to finish calls in
        // flight, then cuts it off; the record stays `running` for the next start.
        // The run's span: a child of the call that started it (Provision, a resume, the
        // consent watch), so its steps and Microsoft calls are in that trace.
        let span = tracing::info_span!("onboarding", onboarding_id = %id, actor = %actor);
        let Some(handle) = self
            .inner
            .cfg
            .shutdown
            .spawn(tracing::Instrument::instrument(task, span))
        else {
            return Err(ProvisionError::Halted("shutdown".into()));
        };
        map.insert(id, handle);
        Ok(())
    }

    /// Continues `rec`'s run (left running by a previous process) with its admin's access
    /// token renewed; a sign-in that cannot be renewed fails the run, recorded as a step's
    /// failure is, rather than leaving it running with nothing to run it.
    async fn resume(&self, mut rec: OnboardingRecord) -> Result<(), ProvisionError> {
        let token = self.fresh_admin_token(&mut rec, Stored::WhileValid).await;
        self.inner.store.put(&rec).await?;
        let (graph, failed) = match token.and_then(|t| self.record_graph(&rec, t)) {
            Ok(graph) => (graph, None),
            // No Graph call is made: the run ends before its first step.
            Err(e) => (self.token_graph(SecretString::default()), Some(e)),
        };
        drive_unless(self.run_for(rec, graph, "system", None, None)?, failed).await;
        Ok(())
    }

    /// Replays `id`'s events from number `from` (1 = all), then follows live ones until the
    /// onboarding ends. The secret never appears here.
    pub fn watch(&self, id: &str, from: u64) -> Result<EventStream, ProvisionError> {
        if self.inner.store.get(id)?.is_none() {
            return Err(ProvisionError::NotFound(id.to_owned()));
        }
        self.watch_ahead(id, from)
    }

    /// Like [`Engine::watch`] for an onboarding whose run has not begun yet (its admin is
    /// signing in or signed in): its events from number `from` once the run begins. The
    /// stream does not end by itself if no run ever begins; the caller ends it.
    pub fn watch_ahead(&self, id: &str, from: u64) -> Result<EventStream, ProvisionError> {
        events::watch(self.inner.store.clone(), &self.inner.hub, id, from)
    }

    /// Continues every onboarding a previous process left running or cancelling; returns their
    /// ids. Each resumed run re-checks Entra before each unconfirmed step. Records an earlier
    /// release left holding a sign-in they have no more use for forget it
    /// ([`OnboardingRecord::forget_sign_in`]).
    pub async fn resume_all(&self) -> Result<Vec<String>, ProvisionError> {
        let mut resumed = Vec::new();
        for mut rec in self.inner.store.all()? {
            if self.is_running(&rec.id) {
                continue;
            }
            if rec.forget_sign_in() {
                self.inner.store.put(&rec).await?;
                tracing::info!(onboarding_id = %rec.id, status = rec.status.as_str(), "forgot the admin sign-in the onboarding no longer needs");
                continue;
            }
            match rec.status {
                Status::Running => {
                    // The process may have been down for longer than the access token lives:
                    // the run renews it first, in its own task, so a slow STS delays that run
                    // and not the server's start.
                    let id = rec.id.clone();
                    let engine = self.clone();
                    self.spawn_task(id.clone(), "system", async move {
                        if let Err(e) = engine.resume(rec).await {
                            tracing::error!(error = %e, "resuming the onboarding failed");
                        }
                    })?;
                    resumed.push(id);
                }
                Status::Cancelling => {
                    let engine = self.clone();
                    let id = rec.id.clone();
                    self.inner.cfg.shutdown.spawn(async move {
                        if let Err(e) = engine.cancel(&id, "system").await {
                            tracing::error!(onboarding_id = %id, error = %e, "resumed cancel failed");
                        }
                    });
                    resumed.push(rec.id);
                }
                _ => {}
            }
        }
        Ok(resumed)
    }

    /// Seals a sign-in's tokens into `rec`: the access token with its expiry (seconds since
    /// the Unix epoch, from the token response), and the refresh token when the STS issued one
    /// (else the one sealed before stays).
    pub(crate) fn seal_admin_tokens(
        &self,
        rec: &mut OnboardingRecord,
        access: &SecretString,
        refresh: Option<&SecretString>,
        access_expires_at: i64,
    ) -> Result<(), ProvisionError> {
        rec.sealed_admin_token = Some(self.inner.key.seal(&rec.id, Purpose::AdminToken, access)?);
        rec.admin_token_expires_at = Some(access_expires_at);
        if let Some(r) = refresh {
            rec.sealed_admin_refresh = Some(self.inner.key.seal(
                &rec.id,
                Purpose::AdminRefreshToken,
                r,
            )?);
        }
        Ok(())
    }

    pub(crate) fn admin_token(
        &self,
        rec: &OnboardingRecord,
    ) -> Result<SecretString, ProvisionError> {
        let sealed =
            rec.sealed_admin_token
                .as_deref()
                .ok_or_else(|| ProvisionError::InvalidState {
                    id: rec.id.clone(),
                    state: rec.status.as_str().into(),
                    what: "no stored admin sign-in to continue with".into(),
                })?;
        Ok(self.inner.key.open(&rec.id, Purpose::AdminToken, sealed)?)
    }

    /// One onboarding's state (no secrets).
    pub fn get(&self, id: &str) -> Result<Option<Onboarding>, ProvisionError> {
        Ok(self.inner.store.get(id)?.as_ref().map(Onboarding::from))
    }

    /// The audit actor of the Provision that started onboarding `id`'s last run (the first
    /// admin's, or a hand-off link's holder who went on with it), if it has a record.
    pub fn started_by(&self, id: &str) -> Result<Option<String>, ProvisionError> {
        Ok(self.inner.store.get(id)?.map(|r| r.actor))
    }

    /// Every event `id` has recorded so far, in order (what Watch from 1 replays).
    pub fn events(&self, id: &str) -> Result<Vec<crate::Event>, ProvisionError> {
        self.inner.store.events(id, 1)
    }

    /// How many events `id` has recorded so far (Watch from 1 replays them all).
    pub fn event_count(&self, id: &str) -> Result<u64, ProvisionError> {
        self.inner.store.last_event_seq(id)
    }

    /// Onboardings matching `filter`, oldest first.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Onboarding>, ProvisionError> {
        let mut v: Vec<Onboarding> = self
            .inner
            .store
            .all()?
            .iter()
            .filter(|r| filter.matches(r))
            .map(Onboarding::from)
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// The client secret of a completed onboarding, for handing over when the live `Completed`
    /// event was missed (e.g. finished by `resume_all`). Never log it.
    pub fn secret(&self, id: &str) -> Result<SecretString, ProvisionError> {
        let rec = self
            .inner
            .store
            .get(id)?
            .ok_or_else(|| ProvisionError::NotFound(id.to_owned()))?;
        let s = rec
            .secret
            .as_ref()
            .ok_or_else(|| ProvisionError::InvalidState {
                id: id.to_owned(),
                state: rec.status.as_str().into(),
                what: "no secret has been made".into(),
            })?;
        Ok(self.inner.key.open(id, Purpose::ClientSecret, &s.sealed)?)
    }

    /// The resolved profile (permissions and roles) an onboarding was made with, for day-two
    /// management of its registration.
    pub fn profile_of(&self, id: &str) -> Result<Option<ResolvedProfile>, ProvisionError> {
        Ok(self.inner.store.get(id)?.map(|r| r.profile))
    }

    /// The admin's delegated access token stored (sealed) with onboarding `id`, if any. It may
    /// have expired; callers check. Day-two verification reads and repairs with it while it
    /// lasts. Never log it.
    pub fn admin_session(&self, id: &str) -> Result<Option<SecretString>, ProvisionError> {
        Ok(self.admin_session_with_expiry(id)?.map(|(t, _)| t))
    }

    /// [`Self::admin_session`] with the token's expiry (seconds since the Unix epoch) when the
    /// record kept it.
    pub fn admin_session_with_expiry(
        &self,
        id: &str,
    ) -> Result<Option<(SecretString, Option<i64>)>, ProvisionError> {
        let rec = self
            .inner
            .store
            .get(id)?
            .ok_or_else(|| ProvisionError::NotFound(id.to_owned()))?;
        match rec.sealed_admin_token {
            Some(_) => Ok(Some((self.admin_token(&rec)?, rec.admin_token_expires_at))),
            None => Ok(None),
        }
    }
}
