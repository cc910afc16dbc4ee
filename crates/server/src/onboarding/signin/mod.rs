//! SignIn: the customer admin's sign-in for one invitation, streamed to the wizard: a device
//! code, or a browser sign-in (`browser.rs`) for tenants that block device codes.
//!
//! The invitation is checked (genuine, pending, for this admin) before anything else, and
//! redeemed only after the sign-in succeeded and passed the engine's checks, so a declined or
//! expired code can be tried again with the same link while a used one never works twice.

mod again;
mod browser;
mod tenant;

pub(crate) use browser::Returns;
use tenant::{HOME_TENANT, authority};

use entra_client::{BrowserSignIn, DeviceCodeFlow, OpContext, PollOutcome, TokenSet};
use invitations::{InvitationError, InvitationRecord};
use onboard_core::ProfileSet;
use onboard_core::audit::{Action, AuditEntry, Phase};
use onboard_core::time::now_ms;
use onboard_proto::v1 as pb;
use provision::{Admin, ProvisionError};
use zeroize::Zeroizing;

use super::{OnboardingService, Session, send_err};
use crate::BoxStream;
use crate::clock::{proto_duration, timestamp};
use crate::error::{Result, ServerError};
use crate::limits::{Sender, SignInSlot};

/// Scopes of the admin's sign-in: the delegated Graph permissions the engine's calls need
/// (named, not `.default`, so a token app configured with less still gets them by consent),
/// a refresh token, and an id token for the tenant id.
const SCOPES: &[&str] = provision::SIGN_IN_SCOPES;

/// How the admin signs in: polling for a device code, or waiting for the browser's return.
enum Flow {
    /// `SIGN_IN_METHOD_DEVICE_CODE` (and unspecified).
    Device(DeviceCodeFlow),
    /// `SIGN_IN_METHOD_BROWSER`.
    Browser(BrowserSignIn),
}

/// What the sign-in task needs once the stream is returned.
struct Attempt {
    /// The sign-in slot (one flow per invitation, the caps), freed when the attempt ends.
    _slot: SignInSlot,
    /// The service, for the engine, the invitations and the audit log.
    svc: OnboardingService,
    /// The checked invitation.
    invitation: InvitationRecord,
    /// The invitation token, to redeem it at the end; zeroed when dropped.
    token: Zeroizing<String>,
    /// The UPN the admin entered.
    upn: String,
    /// The tenant the sign-in must land in (`authority`): the run's tenant id, or the one the
    /// invitation names; `None` for the admin's home tenant.
    tenant: Option<String>,
    /// The onboarding this sign-in creates (or signs in to again).
    onboarding_id: String,
    /// The invitation was redeemed (and linked) when this onboarding first signed in: a sign-in
    /// again after a restart (`OnboardingService::sign_in_again`) redeems nothing.
    redeemed: bool,
    /// `invitation:<id>`, the audit actor.
    actor: String,
    /// The audit fields shared by the intent and the outcome.
    details: AuditEntry,
    /// Counts the sign-in in `onboard_signins_pending` while the code is out.
    _pending: Option<PendingSignIn>,
    /// Lists an onboarding that has no run yet as signing in, for Watch and Get
    /// (`pending.rs`); `None` when its onboarding has a run (a hand-off link's sign-in, a
    /// failed run signed in to again).
    _listed: Option<super::pending::SigningInGuard>,
}

/// `onboard_signins_pending` while a sign-in waits for the admin; how sign-ins ended is
/// the counter `onboard_signins_total{outcome}` (`completed`, `declined`, `expired`, `failed`).
struct PendingSignIn;

impl PendingSignIn {
    fn new() -> Self {
        metrics::gauge!("onboard_signins_pending").increment(1.0);
        Self
    }
}

impl Drop for PendingSignIn {
    fn drop(&mut self) {
        metrics::gauge!("onboard_signins_pending").decrement(1.0);
    }
}

/// Counts how a sign-in ended.
fn count_ending(result: &Result<pb::SignedIn>) {
    use entra_client::EntraError;
    let state = match result {
        Ok(_) => "completed",
        Err(ServerError::Provision(ProvisionError::Entra { source, .. })) => match source {
            EntraError::DeviceCodeDeclined(_) => "declined",
            EntraError::DeviceCodeExpired(_) | EntraError::SignInExpired => "expired",
            _ => "failed",
        },
        Err(_) => "failed",
    };
    metrics::counter!("onboard_signins_total", "outcome" => state).increment(1);
}

/// Checks the request and the invitation, audits the intent, asks for a device code (or makes
/// the browser sign-in) and returns the event stream; the polling (or the wait for the
/// browser's return) runs in a task that ends with the stream.
pub(super) async fn start(
    svc: &OnboardingService,
    r: pb::SignInRequest,
    peer: Option<std::net::IpAddr>,
    note: Option<crate::telemetry::CallNote>,
) -> Result<BoxStream<pb::SignInEvent>> {
    let guards = svc.app.guards().clone();
    let token = Zeroizing::new(r.invitation_token);
    ServerError::required("invitation_token", &token)?;
    let method = pb::SignInMethod::try_from(r.method).map_err(|_| {
        ServerError::invalid(
            "method",
            format!("{} is not a SignInMethod (0, 1 or 2)", r.method),
        )
    })?;
    // The request's own fields are judged before any state (the invitation, then the
    // server's configuration).
    let upn = r.admin_upn.trim().to_owned();
    if let Err(rule) = onboard_core::text::check_upn(&upn) {
        return Err(ServerError::invalid("admin_upn", rule));
    }
    guards.token_gate(peer)?;
    let (invitation, again) = match svc.app.invitations().verify_token(&token) {
        Ok(inv) => (inv, None),
        Err(InvitationError::FailedPrecondition(why)) => match svc.sign_in_again(&token) {
            Some((inv, id, has_run)) => (inv, Some((id, has_run))),
            None => {
                // A used invitation since revoked: its holder is cut off, as on every other
                // call (`invitations.proto`); any other spent invitation is a state problem.
                if let Ok(inv) = svc.app.invitations().get_by_token(&token)
                    && inv.used_at_ms.is_some()
                {
                    if inv.revoked_at_ms.is_some() {
                        return Err(super::revoked::revoked(&inv.id));
                    }
                    // Used, and past its time: say which limit stops it, not only "used".
                    if now_ms() >= inv.expires_at_ms
                        && let Some(id) = &inv.onboarding_id
                    {
                        return Err(ServerError::FailedPrecondition(format!(
                            "invitation {} was used for onboarding {id} and expired at {}: it \
                             can no longer sign in, so that onboarding cannot go on with it; \
                             ask your provider for a new invitation",
                            inv.id,
                            onboard_core::time::format_ms(inv.expires_at_ms)
                        )));
                    }
                }
                return Err(ServerError::FailedPrecondition(why));
            }
        },
        Err(InvitationError::InvalidArgument(_)) => {
            return Err(guards.token_failed(peer).unwrap_or_else(|| {
                ServerError::invalid("invitation_token", "not a valid invitation token")
            }));
        }
        Err(e @ InvitationError::NotFound(_)) => {
            return Err(guards.token_failed(peer).unwrap_or_else(|| e.into()));
        }
        Err(other) => return Err(other.into()),
    };
    let redeemed = again.is_some();
    // A failed run signed in to again: the new sign-in must be in its tenant (`finish`).
    let resumes = again.as_ref().is_some_and(|(_, has_run)| *has_run);
    if !invitation.admin_upn.is_empty() && !invitation.admin_upn.eq_ignore_ascii_case(&upn) {
        return Err(ServerError::FailedPrecondition(format!(
            "invitation {} is for {}, not {upn}",
            invitation.id, invitation.admin_upn
        )));
    }
    let client_id = svc.app.config().entra.token_app_client_id.clone();
    if client_id.is_empty() {
        return Err(ServerError::FailedPrecondition(
            "the server has no entra.token_app_client_id configured".into(),
        ));
    }
    // Where Microsoft sends the browser back: the wizard's origin, which must be https (or
    // http on a loopback host, Microsoft's localhost exceptions).
    let redirect_uri = match method {
        pb::SignInMethod::Browser => Some(
            crate::wizard::sign_in_redirect_uri(&svc.app.config().invitations.activation_base_url)
                .ok_or_else(|| {
                    ServerError::FailedPrecondition(
                        "a browser sign-in needs an https invitations.activation_base_url, or http \
                         on localhost or 127.0.0.1 (the wizard's origin, where Microsoft sends the \
                         admin back); use the device code"
                            .into(),
                    )
                })?,
        ),
        pb::SignInMethod::Unspecified | pb::SignInMethod::DeviceCode => None,
    };
    guards.expensive(&format!("invitation:{}", invitation.id), "SignIn")?;
    // One sign-in (device code or browser) per invitation, and the caps on sign-ins to
    // Microsoft; the slot is held until the sign-in ends.
    let slot = guards.sign_in(&invitation.id, &upn)?;
    // A hand-off link joins the onboarding that waits for a privileged admin; any other
    // invitation starts one.
    let onboarding_id = match (&invitation.hand_off_of, again) {
        // The onboarding this used invitation started, signed in again (`sign_in_again`).
        (_, Some((id, _))) => id,
        (Some(id), None) => {
            let status = svc.app.engine().get(id)?.map(|o| o.status);
            if status != Some(provision::Status::AwaitingAdmin) {
                return Err(ServerError::FailedPrecondition(format!(
                    "onboarding {id} is not waiting for a privileged admin ({})",
                    status.map_or("unknown", provision::Status::as_str)
                )));
            }
            id.clone()
        }
        (None, None) => uuid::Uuid::now_v7().to_string(),
    };
    let tenant = authority(svc, &invitation, &onboarding_id)?;
    let actor = format!("invitation:{}", invitation.id);
    if let Some(n) = &note {
        n.set(&actor, &onboarding_id);
    }
    let mut details = OnboardingService::entry(
        &actor,
        Action::OnboardingSignIn,
        Phase::Intent,
        &onboarding_id,
    )
    .with_detail("invitation_id", invitation.id.clone())
    .with_detail("admin_upn", upn.clone())
    .with_detail(
        "method",
        if redirect_uri.is_some() {
            "browser"
        } else {
            "device_code"
        },
    );
    details.scope.service_id = Some(invitation.service_id.clone());
    if let Some(t) = &mut details.target {
        t.display_name = Some(invitation.customer.clone());
    }
    svc.record(details.clone()).await?;
    let listed = (invitation.hand_off_of.is_none() && !resumes)
        .then(|| svc.signing_in(&onboarding_id, &invitation.id));
    let mut p = Attempt {
        _pending: None,
        _listed: listed,
        _slot: slot,
        svc: svc.clone(),
        invitation,
        redeemed,
        token,
        upn,
        tenant,
        onboarding_id,
        actor,
        details,
    };
    let sts = svc.app.entra().sts();
    let at = p.tenant.as_deref().unwrap_or(HOME_TENANT);
    let flow = match &redirect_uri {
        Some(back) => sts
            .start_browser_sign_in(at, &client_id, back, SCOPES, Some(&p.upn))
            .map(Flow::Browser),
        None => sts
            .start_device_code(at, &client_id, SCOPES, &OpContext::new())
            .await
            .map(Flow::Device),
    };
    let flow = match flow {
        Ok(f) => f,
        Err(e) => {
            let err = ServerError::from(ProvisionError::entra("sign_in", e));
            p.failed(&err).await;
            metrics::counter!("onboard_signins_total", "outcome" => "failed").increment(1);
            return Err(err);
        }
    };
    p._pending = Some(PendingSignIn::new());
    let (tx, stream) = guards.stream();
    tokio::spawn(async move { p.run(flow, tx).await });
    Ok(stream)
}

impl Attempt {
    /// Streams the code (or the sign-in URL) and the ticks, then finishes the sign-in; every
    /// ending is audited. The invitation's revocation ends it at once (`super::revoked`).
    async fn run(self, flow: Flow, tx: Sender<pb::SignInEvent>) {
        let revocations = self.svc.app.guards().revocations();
        let after = |d: std::time::Duration| {
            timestamp(now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        };
        let first = match &flow {
            Flow::Device(flow) => {
                let auth = flow.authorization();
                pb::sign_in_event::Event::DeviceCode(pb::DeviceCode {
                    user_code: auth.user_code.clone(),
                    verification_uri: auth.verification_uri.clone(),
                    expires_at: Some(after(auth.expires_in)),
                    message: auth.message.clone(),
                    onboarding_id: self.onboarding_id.clone(),
                })
            }
            Flow::Browser(b) => {
                browser::first_event(b, after(browser::wait(&self.svc)), &self.onboarding_id)
            }
        };
        let sign_in = async {
            if tx.send(Ok(event(first))).await.is_err() {
                return Err(caller_gone());
            }
            match flow {
                Flow::Device(mut flow) => self.poll(&mut flow, &tx).await,
                Flow::Browser(b) => self.wait_browser(b, &tx).await,
            }
        };
        // The revocation first: a sign-in finished after it never counts.
        let tokens = tokio::select! {
            biased;
            e = super::revoked::until_revoked(&self.svc.app, &self.invitation.id, revocations) => Err(e),
            tokens = sign_in => tokens,
        };
        let result = match tokens {
            Ok(tokens) => self.finish(&tokens).await,
            Err(e) => Err(e),
        };
        count_ending(&result);
        match result {
            Ok(signed_in) => {
                let _ = tx
                    .send(Ok(event(pb::sign_in_event::Event::SignedIn(signed_in))))
                    .await;
            }
            Err(e) => {
                self.failed(&e).await;
                send_err(&tx, e).await;
            }
        }
    }

    /// `wait` unless the caller leaves or the server stops first (UNAVAILABLE).
    async fn unless_ended<T>(
        &self,
        tx: &Sender<pb::SignInEvent>,
        wait: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let stop = self.svc.app.shutdown();
        tokio::select! {
            () = stop.recv() => Err(ServerError::Unavailable("the server is shutting down".into())),
            () = tx.closed() => Err(caller_gone()),
            r = wait => r,
        }
    }

    /// Polls until the admin finishes, the code expires, the caller leaves or the server stops.
    async fn poll(
        &self,
        flow: &mut DeviceCodeFlow,
        tx: &Sender<pb::SignInEvent>,
    ) -> Result<TokenSet> {
        // Before each poll: the interval, then what the last poll's outcome said.
        let mut wait = flow.interval();
        loop {
            let remaining = flow.remaining();
            if remaining.is_zero() {
                return Err(ProvisionError::entra(
                    "sign_in",
                    entra_client::EntraError::DeviceCodeExpired(None),
                )
                .into());
            }
            let sleep = async {
                tokio::time::sleep(wait.min(remaining)).await;
                Ok(())
            };
            self.unless_ended(tx, sleep).await?;
            let (slow_down, interval) = match flow.poll_once().await {
                Ok(PollOutcome::Done(tokens)) => return Ok(tokens),
                Ok(PollOutcome::Pending { next_poll_in }) => (false, next_poll_in),
                Ok(PollOutcome::SlowDown { next_poll_in }) => (true, next_poll_in),
                Err(e) => return Err(ProvisionError::entra("sign_in", e).into()),
            };
            wait = interval;
            let tick = pb::sign_in_event::Event::Pending(pb::Pending {
                slow_down,
                interval: Some(proto_duration(interval)),
            });
            if tx.send(Ok(event(tick))).await.is_err() {
                return Err(caller_gone());
            }
        }
    }

    /// Checks who signed in, redeems the invitation, and keeps the session for Plan/Provision.
    async fn finish(&self, tokens: &TokenSet) -> Result<pb::SignedIn> {
        let admin = self
            .svc
            .app
            .engine()
            .sign_in(tokens, &self.upn, self.tenant.as_deref())
            .await?;
        if let Some(run) = self.svc.app.engine().get(&self.onboarding_id)?
            && run.tenant_id != admin.tenant_id
        {
            return Err(ServerError::FailedPrecondition(format!(
                "{} signed in to tenant {}, but onboarding {} is in tenant {}: sign in with an \
                 account of that tenant",
                admin.upn, admin.tenant_id, self.onboarding_id, run.tenant_id
            )));
        }
        let rights_missing = rights_missing(&admin, &self.invitation, self.svc.app.profiles())?;
        // A hand-off link is for someone who can finish: one who cannot leaves it unspent, so
        // it can still be sent to an administrator who can.
        if self.invitation.hand_off_of.is_some() && !rights_missing.is_empty() {
            return Err(ProvisionError::MissingRights {
                missing: rights_missing
                    .iter()
                    .map(|c| c.any_of.join(" or "))
                    .collect(),
            }
            .into());
        }
        // Revoked while the admin signed in: nothing is redeemed, kept or recorded as signed in.
        // A revocation from this look until the session is kept waits, and is logged after the
        // outcome, never between this look and `succeeded` (`Guards::not_revoking`).
        let not_revoking = self.svc.app.guards().not_revoking().await;
        let refuse_if_revoked =
            || super::revoked::refuse_if_revoked(&self.svc.app, &self.invitation.id);
        refuse_if_revoked()?;
        let inv = if self.redeemed {
            // Redeemed when this onboarding first signed in; linked then too.
            self.invitation.clone()
        } else {
            self.svc
                .app
                .invitations()
                .redeem(&self.actor, &self.token, &self.onboarding_id)
                .await
                .map_err(|e| refuse_if_revoked().err().unwrap_or_else(|| e.into()))?
        };
        if inv.hand_off_of.is_none() && !self.redeemed {
            // The onboarding stays linked to the invitation that started it.
            self.svc.link(&self.onboarding_id, &inv.id)?;
        }
        let signed_in = pb::SignedIn {
            upn: admin.upn.clone(),
            tenant_id: admin.tenant_id.clone(),
            roles_held: admin.role_names(),
            roles_missing: rights_missing
                .iter()
                .map(|c| c.any_of.join(" or "))
                .collect(),
            rights_missing,
            onboarding_id: self.onboarding_id.clone(),
        };
        let mut details = self
            .details
            .clone()
            .with_detail("roles_held", admin.role_names());
        details.phase = Phase::Succeeded;
        details.scope.tenant_id = Some(admin.tenant_id.clone());
        // A test holds the sign-in here, where a revocation fell between look and outcome.
        let _ = self
            .svc
            .app
            .engine()
            .at_hook_point(&self.onboarding_id, "sign_in:outcome");
        self.svc.record(details).await?;
        self.svc.sessions_insert(
            &self.onboarding_id,
            Session {
                invitation: inv,
                admin,
                signed_in_ms: now_ms(),
                idempotency_key: None,
            },
        );
        drop(not_revoking);
        // The same sign-in authorises day-two changes in this tenant (a new invitation and
        // sign-in renews it, as "Reinitiate Authentication Flow" does). Best effort: the
        // onboarding does not depend on it.
        if let Err(e) = self
            .svc
            .app
            .credentials()
            .store_admin_session(
                &signed_in.tenant_id,
                &signed_in.upn,
                &self.svc.app.config().entra.token_app_client_id,
                SCOPES,
                tokens,
            )
            .await
        {
            tracing::warn!(error = %e, "the admin session for day-two changes was not stored");
        }
        tracing::info!(onboarding_id = %self.onboarding_id, actor = %self.actor, "admin signed in");
        Ok(signed_in)
    }

    /// Records a failed sign-in (best effort: the caller hears the error either way).
    async fn failed(&self, e: &ServerError) {
        let mut details = self.details.clone().with_error(e.to_string());
        details.phase = Phase::Failed;
        if let Err(err) = self.svc.record(details).await {
            tracing::error!(error = %err, "a failed sign-in could not be audited");
        }
    }
}

/// The rights the invitation's profile needs that the admin lacks: for each, the roles that
/// would grant it (each choice once).
fn rights_missing(
    admin: &Admin,
    inv: &InvitationRecord,
    profiles: &ProfileSet,
) -> Result<Vec<pb::RoleChoice>> {
    let version = (!inv.platform_version.is_empty()).then_some(inv.platform_version.as_str());
    // The server's profiles changed since the invitation was made: not a fault of the server
    // (INTERNAL) but a state an operator mends, as Plan and Provision say.
    let profile = profiles.resolve(&inv.profile, version).map_err(|e| {
        ServerError::FailedPrecondition(format!(
            "invitation {}'s profile {:?} cannot be used: {e}; configure it again or issue a \
             new invitation",
            inv.id, inv.profile
        ))
    })?;
    let mut out: Vec<pb::RoleChoice> = Vec::new();
    for check in admin.rights_for(&profile) {
        if !check.held {
            let choice = pb::RoleChoice {
                any_of: super::convert::role_names(check.right),
            };
            if !out.contains(&choice) {
                out.push(choice);
            }
        }
    }
    Ok(out)
}

/// The sign-in's stream was closed by its caller.
fn caller_gone() -> ServerError {
    ServerError::FailedPrecondition("the caller went away".into())
}

fn event(e: pb::sign_in_event::Event) -> pb::SignInEvent {
    pb::SignInEvent { event: Some(e) }
}
