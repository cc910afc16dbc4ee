//! The `onboard.v1.Onboarding` service: the wizard back-end over [`provision::Engine`].
//!
//! Who may call: the customer admin with the invitation token of that onboarding (in the
//! request's `invitation_token`; SignIn needs nothing else), or an operator. Every RPC is an
//! audit entry (reads one `succeeded` entry, changes `intent` then an outcome), with actor
//! `invitation:<id>` or the operator's identity; the engine adds one pair per Entra change.
//!
//! The signed-in admin (and their delegated token) is held in memory between SignIn and
//! Provision; after a restart the admin signs in again, with the same (used) invitation, for
//! the same onboarding, as long as no run began (`signin.rs`, `sign_in_again`). Running
//! onboardings are resumed by the engine from their sealed records.

mod capability;
mod claim;
mod convert;
mod forward;
pub(crate) mod hand_off;
mod late_undo;
mod marks;
mod pending;
mod revoked;
mod signin;
mod start;

use capability::Access;
pub(crate) use capability::CustomerRpc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use invitations::InvitationRecord;
use onboard_core::audit::{Action, AuditEntry, Phase, Scope, Target, TargetKind};
use onboard_proto::v1 as pb;
use onboard_proto::v1::onboarding_server::Onboarding;
use provision::{Admin, ListFilter, PlanRequest};
use serde_json::json;
use tonic::{Request, Response, Status};

use crate::App;
use crate::BoxStream;
use crate::app::LINKS_TREE;
use crate::auth::Role;
use crate::error::{Result, ServerError};
use crate::paging::{next_page_token, page_size, page_start};
use convert::{a_run_state, info_pb, plan_pb};
use pending::Listed;

/// The longest `reason` a caller may give (it is recorded in the audit log).
pub(crate) const MAX_REASON: usize = 1024;
/// The longest `app_name` recorded before the name rules (3–15 characters) are checked.
const MAX_RECORDED_NAME: usize = 256;

/// A signed-in admin waiting for Plan and Provision.
struct Session {
    /// The redeemed invitation: profile, platform version and service id come from it.
    invitation: InvitationRecord,
    /// The checked admin; holds the delegated token (never printed).
    admin: Admin,
    /// When this sign-in finished (ms since the epoch): the onboarding's last change before its
    /// run, though the invitation was first redeemed earlier when it signed in again.
    signed_in_ms: i64,
    /// The last Provision call's idempotency key with its caller (`marks::idempotency_tag`),
    /// so the same caller's repeat resumes instead of starting again.
    idempotency_key: Option<Vec<u8>>,
}

/// Serves onboardings from the shared [`App`].
#[derive(Clone)]
pub struct OnboardingService {
    /// Authentication, invitations, the engine and the audit log.
    app: App,
    /// Signed-in admins by onboarding id.
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    /// Sign-ins under way by onboarding id, for Watch and Get before the admin signed in.
    signing_in: pending::SigningInMap,
    /// Browser sign-ins waiting for Microsoft to send the admin back (`/wizard/signed-in`).
    browser_returns: signin::Returns,
    /// Provision calls starting a run now, by onboarding id (`start.rs`).
    starts: start::Starts,
}

impl std::fmt::Debug for OnboardingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnboardingService").finish_non_exhaustive()
    }
}

/// Sends an error as the stream's last item (nobody listening is fine).
async fn send_err<T>(tx: &crate::limits::Sender<T>, e: ServerError) {
    let _ = tx.send(Err(e.into())).await;
}

impl OnboardingService {
    /// A service over `app`.
    pub fn new(app: App) -> Self {
        Self {
            app,
            sessions: Arc::new(Mutex::new(HashMap::new())),
            signing_in: pending::SigningInMap::default(),
            browser_returns: signin::Returns::default(),
            starts: start::Starts::default(),
        }
    }

    /// Browser sign-ins waiting for Microsoft's redirect, by `state`.
    pub(crate) fn browser_returns(&self) -> &signin::Returns {
        &self.browser_returns
    }

    /// Appends one audit entry; an error refuses the call (fail closed).
    async fn record(&self, entry: AuditEntry) -> Result<u64> {
        Ok(entry.append(self.app.audit()).await?)
    }

    /// An entry of `action` by `actor` about onboarding `id`.
    fn entry(actor: &str, action: Action, phase: Phase, id: &str) -> AuditEntry {
        let scope = Scope {
            actor: actor.to_owned(),
            onboarding_id: Some(id.to_owned()),
            ..Scope::default()
        };
        AuditEntry::new(action, phase, &scope)
            .with_target(Target::new(TargetKind::Onboarding, id.to_owned()))
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave a half-written map entry.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sessions_insert(&self, id: &str, s: Session) {
        self.sessions().insert(id.to_owned(), s);
    }

    /// Forgets the sign-in held for onboarding `id` when one of `invitations` made it: they
    /// were revoked, and a revoked invitation's sign-in is kept for nobody.
    fn drop_sessions_of(&self, id: &str, invitations: &[String]) {
        let mut sessions = self.sessions();
        if sessions
            .get(id)
            .is_some_and(|s| invitations.contains(&s.invitation.id))
        {
            sessions.remove(id);
        }
    }

    async fn plan(&self, req: Request<pb::PlanRequest>) -> Result<pb::PlanResponse> {
        self.plan_with(req, false).await
    }

    /// The plan before the app is named, as the wizard shows it right after the sign-in
    /// (`Engine::plan_unnamed`): Plan's checks, audit entry (`app_name` empty) and answer, the
    /// request's `app_name` ignored. Not an RPC: gRPC callers name the app.
    pub(crate) async fn plan_unnamed(
        &self,
        req: Request<pb::PlanRequest>,
    ) -> Result<pb::PlanResponse> {
        self.plan_with(req, true).await
    }

    async fn plan_with(
        &self,
        mut req: Request<pb::PlanRequest>,
        unnamed: bool,
    ) -> Result<pb::PlanResponse> {
        let actor = self.access(&mut req, CustomerRpc::Plan)?.actor;
        let mut r = req.into_inner();
        if unnamed {
            r.app_name.clear();
        }
        ServerError::at_most("app_name", &r.app_name, MAX_RECORDED_NAME)?;
        let (inv, admin) = self.session(&r.onboarding_id)?;
        // Provision uses the invitation's profile: a plan for another would not be its plan.
        if !r.profile.is_empty() && r.profile != inv.profile {
            return Err(ServerError::invalid(
                "profile",
                format!(
                    "this onboarding's invitation sets profile {:?}, which Provision uses; leave \
                     it empty or name that one",
                    inv.profile
                ),
            ));
        }
        let profile = inv.profile.clone();
        let plan_req = PlanRequest {
            app_name: r.app_name.clone(),
            profile: profile.clone(),
            platform_version: version(&inv),
        };
        let engine = self.app.engine();
        let plan = if unnamed {
            engine
                .plan_unnamed(&r.onboarding_id, &admin, &plan_req)
                .await
        } else {
            engine.plan_for(&r.onboarding_id, &admin, &plan_req).await
        }
        .map_err(|e| self.drop_refused_sign_in(&r.onboarding_id, e))?;
        let mut e = Self::entry(
            &actor,
            Action::OnboardingPlan,
            Phase::Succeeded,
            &r.onboarding_id,
        )
        .with_detail("app_name", r.app_name)
        .with_detail("profile", profile)
        .with_detail("blocked", !plan.missing_rights.is_empty());
        e.scope.service_id = Some(inv.service_id.clone());
        e.scope.tenant_id = Some(admin.tenant_id.clone());
        self.record(e).await?;
        Ok(plan_pb(&plan, self.app.engine().hands_off(&plan)))
    }

    /// The summary of one onboarding, from the engine or, before Provision, the session or
    /// the sign-in under way.
    fn info(&self, id: &str) -> Result<pb::OnboardingInfo> {
        let invitation_id = self.invitation_of(id)?;
        if let Some(o) = self.app.engine().get(id)? {
            let events = self.app.engine().event_count(id)?;
            return Ok(info_pb(&o, invitation_id, events));
        }
        match self.sessions().get(id) {
            Some(s) => Ok(pending::signed_in_info(id, s, invitation_id)),
            None => match (self.signing_in_info(id), self.cancelled_before_run(id)?) {
                (Some(info), _) => Ok(info),
                (None, Some(at)) => self.cancelled_info(id, at),
                // Signed in once (its invitation is linked), but the sign-in is gone: there is
                // no state to show until the admin signs in again, as Plan answers.
                (None, None) if !invitation_id.is_empty() => {
                    Err(pending::sign_in_lost(id, &invitation_id))
                }
                (None, None) => Err(ServerError::NotFound(format!("no onboarding {id:?}"))),
            },
        }
    }

    async fn get(&self, mut req: Request<pb::GetOnboardingRequest>) -> Result<pb::OnboardingInfo> {
        let actor = self.access(&mut req, CustomerRpc::Get)?.actor;
        let id = req.into_inner().onboarding_id;
        let info = self.info(&id)?;
        self.record(Self::entry(
            &actor,
            Action::OnboardingGet,
            Phase::Succeeded,
            &id,
        ))
        .await?;
        Ok(info)
    }

    async fn list(
        &self,
        req: Request<pb::ListOnboardingsRequest>,
    ) -> Result<pb::ListOnboardingsResponse> {
        let caller = self.app.auth().authorize(&req, &[Role::Operator])?;
        let r = req.into_inner();
        // Recorded with the read: bounded on the field (a tenant id is 36 bytes), not refused
        // later for the size of the audit entry it would make.
        ServerError::at_most("tenant_id", &r.tenant_id, 256)?;
        let size = page_size(r.page_size)?;
        let state = pb::OnboardingState::try_from(r.state)
            .map_err(|_| ServerError::invalid("state", "unknown state"))?;
        let tenant = (!r.tenant_id.is_empty()).then(|| r.tenant_id.clone());
        let wanted =
            |s: pb::OnboardingState| state == pb::OnboardingState::Unspecified || s == state;
        // The runs, filtered by the state callers see (PROVISIONING is running or being
        // cancelled), then the onboardings before their run (from memory, and the marks of
        // those cancelled then), each as GetOnboarding answers it. A session outlives the run it
        // began (a resume takes it), and a run wins.
        let mut all: Vec<Listed> = Vec::new();
        if a_run_state(state) {
            let filter = ListFilter {
                tenant_id: tenant.clone(),
                service_id: None,
                status: None,
            };
            let runs = self.app.engine().list(&filter)?.into_iter();
            let runs = runs.filter(|o| wanted(convert::state_pb(o.status)));
            all.extend(runs.map(|o| Listed::Run(Box::new(o))));
        }
        all.extend(self.listed_before_run(state, tenant.as_deref())?);
        all.sort_by(|a, b| a.id().cmp(b.id()));
        // The token is the last id handed out (ids sort by creation): the next page starts
        // after it even when that onboarding has since left the filter.
        let fields = json!({"tenant_id": r.tenant_id, "state": r.state});
        let start = match page_start(&r.page_token, &fields)? {
            None => 0,
            Some(last) => {
                uuid::Uuid::parse_str(last).map_err(|_| {
                    ServerError::invalid("page_token", "not a token this server issued")
                })?;
                all.partition_point(|o| o.id() <= last)
            }
        };
        let page: Vec<_> = all.into_iter().skip(start).collect();
        let more = page.len() > size;
        let mut onboardings = Vec::with_capacity(size.min(page.len()));
        for listed in page.into_iter().take(size) {
            onboardings.push(match listed {
                Listed::Run(o) => {
                    let events = self.app.engine().event_count(&o.id)?;
                    info_pb(&o, self.invitation_of(&o.id)?, events)
                }
                Listed::BeforeRun(info) => *info,
            });
        }
        let next = match onboardings.last() {
            Some(last) if more => next_page_token(&last.onboarding_id, &fields),
            _ => String::new(),
        };
        self.record(
            AuditEntry::new(
                Action::OnboardingList,
                Phase::Succeeded,
                &Scope::actor(&caller.identity),
            )
            .with_detail(
                "filter",
                json!({"tenant_id": r.tenant_id, "state": state.as_str_name()}),
            )
            .with_detail("count", onboardings.len()),
        )
        .await?;
        Ok(pb::ListOnboardingsResponse {
            onboardings,
            next_page_token: next,
        })
    }

    async fn cancel(
        &self,
        mut req: Request<pb::CancelOnboardingRequest>,
    ) -> Result<pb::OnboardingInfo> {
        let actor = self.access(&mut req, CustomerRpc::Cancel)?.actor;
        let r = req.into_inner();
        ServerError::at_most("reason", &r.reason, MAX_REASON)?;
        let id = r.onboarding_id;
        let onboarding = self.app.engine().get(&id)?;
        match onboarding.as_ref().map(|o| o.status) {
            Some(provision::Status::Completed) if r.reason.trim().is_empty() => {
                return Err(ServerError::invalid(
                    "reason",
                    "undoing a completed onboarding needs a reason (recorded in the audit log)",
                ));
            }
            // One undo at a time: the running one (or, after a restart, the resumed one)
            // finishes it. Without one running, the last undo failed: this one retries it.
            Some(provision::Status::Cancelling) if self.app.engine().is_undoing(&id) => {
                return Err(ServerError::FailedPrecondition(format!(
                    "onboarding {id:?} is being cancelled already; Watch it to see the end"
                )));
            }
            _ => {}
        }
        let mut details = Self::entry(&actor, Action::OnboardingCancelRequest, Phase::Intent, &id)
            .with_detail("reason", r.reason);
        if onboarding.is_none() {
            // Signed in but nothing made: forgetting the session, and marking the onboarding
            // cancelled so its invitation cannot sign in to it again, is the whole cancel.
            self.refuse_while_signing_in(&id)?;
            let at = match self.cancelled_before_run(&id)? {
                Some(at) => {
                    // Cancelled already: the same answer again, on the log as a request like
                    // any other (intent, then outcome).
                    self.record(details.clone()).await?;
                    at
                }
                None => {
                    let signed_in =
                        self.sessions().contains_key(&id) || !self.invitation_of(&id)?.is_empty();
                    if !signed_in {
                        return Err(ServerError::NotFound(format!("no onboarding {id:?}")));
                    }
                    self.record(details.clone()).await?;
                    let at = onboard_core::time::now_ms();
                    self.mark_cancelled_before_run(&id, at).await?;
                    self.sessions().remove(&id);
                    at
                }
            };
            details.phase = Phase::Succeeded;
            self.record(details).await?;
            return self.cancelled_info(&id, at);
        }
        let waiting =
            onboarding.as_ref().map(|o| o.status) == Some(provision::Status::AwaitingAdmin);
        // Looked up before the intent entry, so a failure here leaves no intent without an
        // outcome.
        // Completed, or its undo began after it completed and failed (still `Cancelling`): its
        // own sign-in cannot be renewed, the tenant's day-two session undoes it.
        let completed = onboarding
            .filter(|o| o.token_app_removed() && o.status != provision::Status::Cancelled);
        let admin = match &completed {
            Some(o) => late_undo::day_two_admin(&self.app, &o.tenant_id).await?,
            None => None,
        };
        let day_two = admin.is_some();
        self.record(details.clone()).await?;
        let cancelled = self.app.engine().cancel_as(&id, &actor, admin).await;
        if waiting {
            // The wait ended (with this cancel, also when the undo after it failed; or with
            // whatever ended it first, as its record says): its hand-off links end with it,
            // but the canceller's own and that of a holder who went on with the run.
            hand_off::wait_ended(&self.app, &id).await;
        }
        match cancelled {
            Ok(o) => {
                details.phase = Phase::Succeeded;
                self.record(details).await?;
                self.sessions().remove(&id);
                Ok(info_pb(
                    &o,
                    self.invitation_of(&id)?,
                    self.app.engine().event_count(&id)?,
                ))
            }
            Err(e) => {
                details.phase = Phase::Failed;
                self.record(details.with_error(e.to_string())).await?;
                match completed {
                    Some(o) if !day_two && late_undo::sign_in_expired(&e) => {
                        Err(late_undo::needs_sign_in(&id, &o.tenant_id, &e))
                    }
                    _ => Err(e.into()),
                }
            }
        }
    }
}

/// The invitation's platform version, `None` when it names none (the current one).
fn version(inv: &InvitationRecord) -> Option<String> {
    (!inv.platform_version.is_empty()).then(|| inv.platform_version.clone())
}

#[tonic::async_trait]
impl Onboarding for OnboardingService {
    type SignInStream = BoxStream<pb::SignInEvent>;
    type ProvisionStream = BoxStream<pb::ProvisionEvent>;
    type WatchStream = BoxStream<pb::ProvisionEvent>;

    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<Self::SignInStream>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let note = crate::telemetry::CallNote::of(&request);
        let stream = signin::start(self, request.into_inner(), peer, note).await?;
        Ok(Response::new(stream))
    }

    async fn plan(
        &self,
        request: Request<pb::PlanRequest>,
    ) -> Result<Response<pb::PlanResponse>, Status> {
        Ok(Response::new(OnboardingService::plan(self, request).await?))
    }

    async fn provision(
        &self,
        request: Request<pb::ProvisionRequest>,
    ) -> Result<Response<Self::ProvisionStream>, Status> {
        Ok(Response::new(
            OnboardingService::provision(self, request).await?,
        ))
    }

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(
            OnboardingService::watch(self, request).await?,
        ))
    }

    async fn get_onboarding(
        &self,
        request: Request<pb::GetOnboardingRequest>,
    ) -> Result<Response<pb::OnboardingInfo>, Status> {
        Ok(Response::new(self.get(request).await?))
    }

    async fn list_onboardings(
        &self,
        request: Request<pb::ListOnboardingsRequest>,
    ) -> Result<Response<pb::ListOnboardingsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }

    async fn cancel_onboarding(
        &self,
        request: Request<pb::CancelOnboardingRequest>,
    ) -> Result<Response<pb::OnboardingInfo>, Status> {
        Ok(Response::new(self.cancel(request).await?))
    }

    async fn claim_secret(
        &self,
        request: Request<pb::ClaimSecretRequest>,
    ) -> Result<Response<pb::ClaimedSecret>, Status> {
        Ok(Response::new(self.claim(request).await?))
    }

    async fn issue_hand_off_link(
        &self,
        request: Request<pb::IssueHandOffLinkRequest>,
    ) -> Result<Response<pb::HandOffLink>, Status> {
        Ok(Response::new(self.hand_off_link(request).await?))
    }
}
